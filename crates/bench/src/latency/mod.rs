//! Apply-to-Ready latency, shared by `collibra-oauth-bench
//! --mode latency` and `collibra-oauth-bench-peer --mode latency`.
//!
//! With R objects already Ready and the operator quiet, objects are applied
//! one at a time (each waited for, then a pause) and then in bursts. Two
//! watches started before the first create, one on the namespace's Secrets
//! and one on the custom resource, stamp for each object the moment its
//! Secret first holds both credential keys and the moment `Ready=True`
//! first shows; a sample is that moment minus the moment the create's
//! response arrived.
//!
//! Beside the samples, [`measure_floor`] times the requests a registration
//! cannot do without (the critical path), one after another against the
//! same API server and backend, so that the percentiles can be read as a
//! multiple of what the requests alone cost; [`post_burst`] times a burst's
//! backend POSTs at the operator's concurrency.

use std::{collections::BTreeMap, time::Duration, time::Instant};

use futures::future::BoxFuture;
use k8s_openapi::{
    api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp,
};
use kube::{Api, Client, api::DynamicObject, discovery::ApiResource};
use serde::Serialize;
use serde_json::{Value, json};

use crate::round3;

mod floor;
mod observer;
mod run;

pub use floor::{
    Backend, OPERATOR_READY_PATH, OPERATOR_SECRET_PATH, SimPost, measure_floor, post_burst,
    with_floors,
};
pub use observer::Observer;
pub use run::Latency;

/// The flags of the latency mode, shared by both benchmarks.
#[derive(clap::Args, Clone, Debug)]
pub struct LatencyArgs {
    /// Latency mode: the numbers of Ready objects (R) to measure with,
    /// ascending; residents are added between phases (the samples of
    /// earlier phases count as residents).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub resident: Vec<usize>,
    /// Latency mode: objects applied one at a time, per R.
    #[arg(long, default_value_t = 100)]
    pub samples: usize,
    /// Latency mode: pause after each single object is Ready.
    #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
    pub spacing: Duration,
    /// Latency mode: burst sizes, per R (comma-separated; empty for none).
    #[arg(long, value_delimiter = ',', default_value = "20,100")]
    pub bursts: Vec<usize>,
    /// Latency mode: iterations of the critical-path floor, per R.
    #[arg(long, default_value_t = 20)]
    pub floor_samples: usize,
    /// Latency mode: longest wait for one object to be Ready (a burst gets
    /// 1 s more per object).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub sample_timeout: Duration,
}

impl LatencyArgs {
    /// The phase parameters, with `field_manager` for the creates.
    pub fn params(&self, create_concurrency: usize, field_manager: &'static str) -> Params {
        Params {
            samples: self.samples,
            spacing: self.spacing,
            bursts: self.bursts.iter().copied().filter(|b| *b > 0).collect(),
            create_concurrency,
            sample_timeout: self.sample_timeout,
            field_manager,
        }
    }

    /// The R values in ascending order, without repeats.
    pub fn residents(&self) -> Vec<usize> {
        let mut r = self.resident.clone();
        r.sort_unstable();
        r.dedup();
        r
    }
}

/// Percentiles of a set of samples, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median (nearest rank).
    pub p50: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
    /// Smallest sample.
    pub min: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Summary {
    /// The percentiles of `samples` by the nearest-rank method (the value
    /// at rank ceil(p/100 x n)), so every figure is a measured sample; all
    /// zero when there are none. Non-finite samples are left out.
    pub fn of(samples: &[f64]) -> Summary {
        let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if s.is_empty() {
            return Summary::default();
        }
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let rank = |p: f64| {
            let r = (p / 100.0 * n as f64).ceil() as usize;
            s[r.clamp(1, n) - 1]
        };
        Summary {
            n,
            p50: round3(rank(50.0)),
            p90: round3(rank(90.0)),
            p99: round3(rank(99.0)),
            max: round3(s[n - 1]),
            min: round3(s[0]),
            mean: round3(s.iter().sum::<f64>() / n as f64),
        }
    }
}

/// Milliseconds from `from` to `to`, zero if `to` came first.
pub(crate) fn ms_between(from: Instant, to: Instant) -> f64 {
    to.checked_duration_since(from)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

/// What is measured: the custom resource, how an object of it looks, which
/// Secret keys mean "has credentials", and how its status is written.
#[derive(Clone)]
pub struct Subject {
    /// The custom resource the operator watches.
    pub resource: ApiResource,
    /// The object called `name`; its Secret must be called `name` too.
    pub object: fn(&str) -> Value,
    /// The Secret keys that hold the client id and secret.
    pub credential_keys: [&'static str; 2],
    /// The status the operator writes when it is done (for the floor), and
    /// whether it writes it by server-side apply (else a merge patch).
    pub ready_status: fn() -> Value,
    /// Whether the status write is a server-side apply.
    pub status_by_apply: bool,
}

impl Subject {
    /// This operator's OAuthClient, with its default Secret.
    pub fn oauth_client() -> Subject {
        Subject {
            resource: ApiResource {
                group: "oauth.collibra.dev".to_owned(),
                version: "v1alpha1".to_owned(),
                api_version: "oauth.collibra.dev/v1alpha1".to_owned(),
                kind: "OAuthClient".to_owned(),
                plural: "oauthclients".to_owned(),
            },
            object: |name| {
                json!({
                    "apiVersion": "oauth.collibra.dev/v1alpha1",
                    "kind": "OAuthClient",
                    "metadata": { "name": name },
                    "spec": { "clientName": format!("latency-{name}") },
                })
            },
            credential_keys: ["client_id", "client_secret"],
            ready_status: || {
                json!({
                    "clientId": "urn:sys:env:floor:i:floor",
                    "conditions": [{
                        "type": "Ready",
                        "status": "True",
                        "reason": "Registered",
                        "message": "registered in Collibra; credentials in Secret",
                        "lastTransitionTime": Time(Timestamp::now()),
                    }],
                })
            },
            status_by_apply: true,
        }
    }

    pub(crate) fn api(&self, client: &Client, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), ns, &self.resource)
    }
}

/// Whether a custom resource's JSON shows `Ready=True` (both operators
/// write a `Ready` condition in `status.conditions`).
pub fn is_ready(obj: &Value) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Whether a Secret holds both `keys`, non-empty.
pub fn has_credentials(s: &Secret, keys: &[&str; 2]) -> bool {
    keys.iter().all(|k| {
        s.data
            .as_ref()
            .and_then(|d| d.get(*k))
            .is_some_and(|v| !v.0.is_empty())
    })
}

/// How the phases run.
#[derive(Clone, Debug)]
pub struct Params {
    /// Objects applied one at a time.
    pub samples: usize,
    /// Pause after each single object is Ready, before the next.
    pub spacing: Duration,
    /// Burst sizes, in order.
    pub bursts: Vec<usize>,
    /// Creates in flight at once, for residents and bursts.
    pub create_concurrency: usize,
    /// Longest wait for one object (singles), or for one burst (plus 1 s
    /// per object).
    pub sample_timeout: Duration,
    /// Field manager of the benchmark's creates.
    pub field_manager: &'static str,
}

/// What the driver of a run supplies about the operator under test.
pub trait Probe: Sync {
    /// Returns once the operator has stopped working (steady state).
    fn settle(&self) -> BoxFuture<'_, anyhow::Result<()>>;
    /// Counters to report per phase (requests by kind), as whole numbers.
    fn counters(&self) -> BoxFuture<'_, anyhow::Result<BTreeMap<String, u64>>>;
}

/// Prints one phase's figures as a table.
pub fn print_phase(who: &str, phase: &Value) {
    let f = |v: &Value| v.as_f64().map_or("n/a".to_owned(), |x| format!("{x:.1}"));
    let sum = |v: &Value| {
        format!(
            "{:>8} {:>8} {:>8} {:>8}",
            f(&v["p50"]),
            f(&v["p90"]),
            f(&v["p99"]),
            f(&v["max"])
        )
    };
    println!(
        "{who}: R = {}, {} samples {} ms apart (watch relists: {})",
        phase["resident"],
        phase["single"]["samples"],
        phase["single"]["spacing_ms"],
        phase["watch_relists"]
    );
    println!(
        "  {:<32} {:>8} {:>8} {:>8} {:>8}",
        "ms", "p50", "p90", "p99", "max"
    );
    println!(
        "  {:<32} {}",
        "single: create -> Secret",
        sum(&phase["single"]["secret_ms"])
    );
    println!(
        "  {:<32} {}",
        "single: create -> Ready",
        sum(&phase["single"]["ready_ms"])
    );
    println!(
        "  {:<32} {}",
        "floor: path to Secret",
        sum(&phase["floor"]["secret_ms"])
    );
    println!(
        "  {:<32} {}",
        "floor: path to Ready",
        sum(&phase["floor"]["ready_ms"])
    );
    println!(
        "  p99/floor: Ready {}, Secret {}; single requests/object: {}",
        f(&phase["single"]["ready_p99_to_floor"]),
        f(&phase["single"]["secret_p99_to_floor"]),
        phase["single"]["requests_per_object"]
    );
    for b in phase["bursts"].as_array().into_iter().flatten() {
        println!(
            "  burst {:>4}: all Ready {:>7.3} s (after last create {:.3} s), {} POSTs at concurrency {}: {:.3} s, ratio {}; per object Ready {}",
            b["size"],
            b["all_ready_seconds"].as_f64().unwrap_or(f64::NAN),
            b["all_ready_after_last_create_seconds"]
                .as_f64()
                .unwrap_or(f64::NAN),
            b["size"],
            b["post_floor_concurrency"],
            b["post_floor_seconds"].as_f64().unwrap_or(f64::NAN),
            f(&b["all_ready_to_post_floor"]),
            sum(&b["ready_ms"]),
        );
    }
}

/// The operator's `--concurrency` among its flags, else its default (16,
/// `src/config.rs`).
pub fn operator_concurrency(args: &[String]) -> usize {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--concurrency" {
            if let Some(v) = it.next().and_then(|v| v.parse().ok()) {
                return v;
            }
        } else if let Some(v) = a
            .strip_prefix("--concurrency=")
            .and_then(|v| v.parse().ok())
        {
            return v;
        }
    }
    16
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&xs);
        assert_eq!(
            (s.n, s.p50, s.p90, s.p99, s.max, s.min),
            (100, 50.0, 90.0, 99.0, 100.0, 1.0)
        );
        assert_eq!(s.mean, 50.5);
        // Few samples: p99 is the largest, p50 the middle one.
        let s = Summary::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.p50, s.p90, s.p99, s.max), (2.0, 3.0, 3.0, 3.0));
        assert_eq!(Summary::of(&[]), Summary::default());
        assert_eq!(Summary::of(&[f64::NAN, 4.0]).n, 1);
    }

    #[test]
    fn ready_means_a_true_ready_condition() {
        assert!(is_ready(&json!({"status": {"conditions": [
            {"type": "Reconciling", "status": "False"}, {"type": "Ready", "status": "True"}]}})));
        assert!(!is_ready(
            &json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
        ));
        assert!(!is_ready(&json!({"spec": {}})));
    }

    #[test]
    fn credentials_need_both_keys_non_empty() {
        let secret = |kv: &[(&str, &str)]| Secret {
            data: Some(
                kv.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        };
        let keys = ["client_id", "client_secret"];
        assert!(has_credentials(
            &secret(&[("client_id", "a"), ("client_secret", "b")]),
            &keys
        ));
        assert!(!has_credentials(
            &secret(&[("client_id", "a"), ("client_secret", "")]),
            &keys
        ));
        assert!(!has_credentials(&secret(&[("client_id", "a")]), &keys));
        assert!(!has_credentials(&Secret::default(), &keys));
    }

    #[test]
    fn concurrency_flag() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(operator_concurrency(&s(&["--concurrency", "64"])), 64);
        assert_eq!(
            operator_concurrency(&s(&["--x", "1", "--concurrency=8"])),
            8
        );
        assert_eq!(operator_concurrency(&s(&[])), 16);
    }

    #[test]
    fn the_default_concurrency_is_the_operators() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Run {
            #[command(flatten)]
            run: collibra_oauth_operator::config::RunArgs,
        }
        let parsed = Run::try_parse_from(["run", "--collibra-url", "http://collibra.test"])
            .expect("the operator's flags parse");
        assert_eq!(
            operator_concurrency(&[]),
            usize::from(parsed.run.concurrency)
        );
    }

    #[test]
    fn the_ready_path_extends_the_secret_path() {
        assert!(OPERATOR_READY_PATH.starts_with(&OPERATOR_SECRET_PATH));
        assert!(OPERATOR_SECRET_PATH.contains(&"backend_post"));
    }
}

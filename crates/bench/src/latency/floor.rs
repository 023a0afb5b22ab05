//! The critical-path floor: the requests of one registration timed one
//! after another, and a burst's POSTs at the operator's concurrency.

use std::{collections::BTreeMap, time::Instant};

use futures::{StreamExt, TryStreamExt, future::BoxFuture};
use k8s_openapi::{
    ByteString,
    api::{core::v1::Secret, events::v1::Event},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource as _,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use super::{Subject, Summary, ms_between};
use crate::round3;

/// A backend registration as a client sees it: one POST, timed by the
/// caller. `i` makes names unique.
pub trait Backend: Sync {
    /// One client registration.
    fn post(&self, i: usize) -> BoxFuture<'_, anyhow::Result<()>>;
}

/// The Collibra simulator's `POST /clients`, with a static admin token
/// (the simulator's default accepts `static-admin-token`).
pub struct SimPost {
    /// Keep-alive client, as the operator's.
    pub http: reqwest::Client,
    /// The simulator's base URL.
    pub url: String,
    /// Prefix of the registered names.
    pub prefix: String,
    /// Counts POSTs, so that no name repeats (the simulator refuses a
    /// taken name).
    pub sent: std::sync::atomic::AtomicUsize,
}

impl SimPost {
    /// POSTs to the simulator at `url`, names starting with `prefix`.
    pub fn new(http: reqwest::Client, url: String, prefix: String) -> SimPost {
        SimPost {
            http,
            url,
            prefix,
            sent: Default::default(),
        }
    }
}

impl Backend for SimPost {
    fn post(&self, i: usize) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            self.http
                .post(format!("{}/rest/auth/v1/clients", self.url))
                .bearer_auth("static-admin-token")
                .json(&json!({
                    "client_name": format!(
                        "{}-{i}-{}",
                        self.prefix,
                        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    ),
                    "grant_types": ["client_credentials"],
                }))
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            Ok(())
        })
    }
}

/// Times, `iterations` times against `client` and `backend`, one after
/// another, each request a registration holds: a metadata merge patch of
/// the object (as a finalizer write), the Secret's create (the claim), the
/// backend POST, the Secret's patch (the credentials), an Event (timed for
/// reference; this operator sends it beside the status write) and the
/// status write. Runs in `ns`, which no running operator may watch; the
/// objects are deleted at the end. `secret_path` and `ready_path` name the
/// steps summed up to the Secret and to Ready.
pub async fn measure_floor(
    client: &Client,
    ns: &str,
    subject: &Subject,
    backend: &dyn Backend,
    iterations: usize,
    secret_path: &[&str],
    ready_path: &[&str],
) -> anyhow::Result<Value> {
    let api = subject.api(client, ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let manager = "collibra-oauth-bench-floor";
    // A first POST opens the connection, as the operator's is open.
    backend.post(usize::MAX).await?;
    let mut steps: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut secret_sums = Vec::with_capacity(iterations);
    let mut ready_sums = Vec::with_capacity(iterations);
    let run = format!("{:x}", Timestamp::now().as_millisecond());
    for i in 0..iterations {
        let name = format!("floor-{run}-{i:03}");
        let obj = (subject.object)(&name);
        let created = api
            .patch(
                &name,
                &PatchParams::apply(manager).force(),
                &Patch::Apply(&obj),
            )
            .await?;
        let mut took: BTreeMap<&str, f64> = BTreeMap::new();

        let t = Instant::now();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "metadata": { "annotations": { "bench.collibra.dev/floor": "1" } } }),
            ),
        )
        .await?;
        took.insert("object_metadata_patch", ms_between(t, Instant::now()));

        let mut claim = Secret::default();
        claim.metadata.name = Some(name.clone());
        claim.metadata.labels = Some(
            [(
                "app.kubernetes.io/managed-by".to_owned(),
                "bench-floor".to_owned(),
            )]
            .into(),
        );
        claim.metadata.annotations = Some(
            [(
                "oauth.collibra.dev/registering-since".to_owned(),
                Timestamp::now().to_string(),
            )]
            .into(),
        );
        claim.data = Some(
            [(
                "client_name".to_owned(),
                ByteString(name.clone().into_bytes()),
            )]
            .into(),
        );
        let t = Instant::now();
        secrets.create(&PostParams::default(), &claim).await?;
        took.insert("secret_create", ms_between(t, Instant::now()));

        let t = Instant::now();
        backend.post(i).await?;
        took.insert("backend_post", ms_between(t, Instant::now()));

        let creds = json!({
            "metadata": { "annotations": { "oauth.collibra.dev/registering-since": null } },
            "data": {
                "client_id": b64(&format!("urn:sys:env:floor:i:{i}")),
                "client_secret": b64("floor-secret-floor-secret-floor-secret"),
            },
        });
        let t = Instant::now();
        secrets
            .patch(&name, &PatchParams::default(), &Patch::Merge(&creds))
            .await?;
        took.insert("secret_patch", ms_between(t, Instant::now()));

        let mut ev = Event::default();
        ev.metadata.name = Some(format!("{name}.{i:x}"));
        ev.event_time = Some(MicroTime(Timestamp::now()));
        ev.reporting_controller = Some("collibra-oauth-bench".to_owned());
        ev.reporting_instance = Some("collibra-oauth-bench-floor".to_owned());
        ev.action = Some("Registered".to_owned());
        ev.reason = Some("Registered".to_owned());
        ev.type_ = Some("Normal".to_owned());
        ev.note = Some("registered (floor measurement)".to_owned());
        ev.regarding = Some(k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(subject.resource.api_version.clone()),
            kind: Some(subject.resource.kind.clone()),
            name: Some(name.clone()),
            namespace: Some(ns.to_owned()),
            uid: created.meta().uid.clone(),
            ..Default::default()
        });
        let t = Instant::now();
        events.create(&PostParams::default(), &ev).await?;
        took.insert("event_create", ms_between(t, Instant::now()));

        let status = json!({
            "apiVersion": subject.resource.api_version,
            "kind": subject.resource.kind,
            "status": (subject.ready_status)(),
        });
        let t = Instant::now();
        if subject.status_by_apply {
            api.patch_status(
                &name,
                &PatchParams::apply(manager).force(),
                &Patch::Apply(&status),
            )
            .await?;
        } else {
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
        }
        took.insert("status_write", ms_between(t, Instant::now()));

        let sum = |path: &[&str]| {
            path.iter()
                .map(|s| took.get(s).copied().unwrap_or(0.0))
                .sum::<f64>()
        };
        secret_sums.push(sum(secret_path));
        ready_sums.push(sum(ready_path));
        for (k, v) in took {
            steps.entry(k).or_default().push(v);
        }
    }
    // Nothing holds these objects (no finalizer), so they go at once.
    let lp = ListParams::default();
    api.delete_collection(&DeleteParams::default(), &lp).await?;
    secrets
        .delete_collection(
            &DeleteParams::default(),
            &lp.clone()
                .labels("app.kubernetes.io/managed-by=bench-floor"),
        )
        .await?;
    let secret = Summary::of(&secret_sums);
    let ready = Summary::of(&ready_sums);
    Ok(json!({
        "iterations": iterations,
        "steps_ms": steps
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Summary::of(v)))
            .collect::<BTreeMap<_, _>>(),
        "secret_path": secret_path,
        "ready_path": ready_path,
        "secret_ms": secret,
        "ready_ms": ready,
    }))
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The steps of this operator's critical path, to the Secret and to Ready
/// (docs/design.md, "Requests per registration").
pub const OPERATOR_SECRET_PATH: [&str; 4] = [
    "object_metadata_patch",
    "secret_create",
    "backend_post",
    "secret_patch",
];

/// This operator's path to Ready: the Secret's, then the status (the
/// registration's Event is sent side by side with it, so off the path).
pub const OPERATOR_READY_PATH: [&str; 5] = [
    "object_metadata_patch",
    "secret_create",
    "backend_post",
    "secret_patch",
    "status_write",
];

/// Seconds for `count` backend POSTs with `concurrency` in flight: the
/// least a burst of `count` registrations can take.
pub async fn post_burst(
    backend: &dyn Backend,
    count: usize,
    concurrency: usize,
    first_index: usize,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    futures::stream::iter(first_index..first_index + count)
        .map(|i| backend.post(i))
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(t.elapsed().as_secs_f64())
}

/// Adds, to a phase report of [`super::Latency::run_samples`], the floor
/// and the ratios: single p99 over the floor's median, each burst's time to
/// all Ready over its POSTs at the operator's concurrency.
pub async fn with_floors(
    mut phase: Value,
    floor: Value,
    backend: &dyn Backend,
    concurrency: usize,
) -> anyhow::Result<Value> {
    let ratio = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) if b > 0.0 => json!(round3(a / b)),
        _ => Value::Null,
    };
    phase["single"]["ready_p99_to_floor"] = ratio(
        &phase["single"]["ready_ms"]["p99"],
        &floor["ready_ms"]["p50"],
    );
    phase["single"]["secret_p99_to_floor"] = ratio(
        &phase["single"]["secret_ms"]["p99"],
        &floor["secret_ms"]["p50"],
    );
    phase["single"]["ready_p50_to_floor"] = ratio(
        &phase["single"]["ready_ms"]["p50"],
        &floor["ready_ms"]["p50"],
    );
    let mut index = 1_000_000;
    if let Some(bursts) = phase["bursts"].as_array_mut() {
        for b in bursts {
            let size = b["size"].as_u64().unwrap_or(0) as usize;
            let secs = post_burst(backend, size, concurrency, index).await?;
            index += size;
            b["post_floor_seconds"] = json!(round3(secs));
            b["post_floor_concurrency"] = json!(concurrency);
            b["all_ready_to_post_floor"] = ratio(&b["all_ready_seconds"], &json!(secs));
        }
    }
    phase["floor"] = floor;
    Ok(phase)
}

//! Shared pieces of the benchmarks (`collibra-oauth-bench`,
//! `collibra-oauth-bench-peer` and `collibra-oauth-bench-connections`): a
//! process's figures from /proc, Prometheus text, the machine's facts that
//! every report records, counter arithmetic, and how a rollout spreads
//! over connections; the apply-to-Ready latency mode ([`latency`]).

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::bail;
use collibra_oauth_operator::api::OAuthClient;
use futures::StreamExt;
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};
use serde::{Serialize, de::DeserializeOwned};
use test_support::Operator;

pub mod latency;

/// The flags `collibra-oauth-bench` and `collibra-oauth-bench-connections`
/// share: the rollout, the simulators, the operator and where to write.
#[derive(clap::Args, Clone, Debug)]
pub struct RolloutArgs {
    /// Number of OAuthClients to create.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// The operator's --resync-interval; also the steady-state window.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub resync: Duration,
    /// Each simulator's rate limit (requests per second, Retry-After 1 s);
    /// with connections, also each connection's `spec.rateLimit`.
    #[arg(long, default_value_t = 50)]
    pub rate_limit: u32,
    /// Each simulator's latency per request.
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// The operator binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/collibra-oauth-operator")]
    pub operator: PathBuf,
    /// Objects created at once by the benchmark (server-side apply).
    #[arg(long, default_value_t = 32)]
    pub create_concurrency: usize,
    /// Longest wait for all objects to be Ready (default: 10 x N / rate +
    /// 120 s; with connections, 10 x N / 50 + 120 s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Copy the operator's log here at the end.
    #[arg(long)]
    pub log: Option<PathBuf>,
}

/// Writes a benchmark's report as pretty JSON to `path`, if one was given;
/// `who` names the benchmark in the message.
pub fn write_report(
    path: Option<&Path>,
    report: &serde_json::Value,
    who: &str,
) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_string_pretty(report)? + "\n")?;
        eprintln!("{who}: wrote {}", path.display());
    }
    Ok(())
}

/// `sha256sum` of a file, if the tool is there.
pub fn sha256_of(path: &Path) -> String {
    std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// The commit of this repository's checkout, if git says.
pub fn git_describe() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(test_support::repo("."))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Resource use of a process, from /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct Proc {
    /// Peak resident set (VmHWM), KiB.
    pub hwm_kib: u64,
    /// Resident set now (VmRSS), KiB.
    pub rss_kib: u64,
    /// utime + stime, seconds.
    pub cpu_secs: f64,
}

impl Proc {
    /// Reads `/proc/PID/status` and `/proc/PID/stat`.
    pub fn read(pid: u32) -> anyhow::Result<Proc> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name (which may hold spaces): state is
        // field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let hz = rustix::param::clock_ticks_per_second() as f64;
        Ok(Proc {
            hwm_kib: kib("VmHWM:"),
            rss_kib: kib("VmRSS:"),
            cpu_secs: (ticks(11) + ticks(12)) as f64 / hz,
        })
    }
}

/// The samples of a Prometheus text exposition.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    samples: Vec<(String, String, f64)>,
}

impl Metrics {
    /// Parses the text format (`name{labels} value` lines; comments skipped).
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let value = value.parse::<f64>().ok()?;
                let (name, labels) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                Some((name.to_owned(), labels.to_owned(), value))
            })
            .collect();
        Metrics { samples }
    }

    /// Whether any sample of `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }

    /// The sum over all samples of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
            .sum()
    }

    /// The samples of `name` summed per value of `label`.
    pub fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let key = format!("{label}=\"");
        let mut out = BTreeMap::new();
        for (n, labels, v) in &self.samples {
            if n != name {
                continue;
            }
            let value = labels
                .split_once(&key)
                .and_then(|(_, r)| r.split_once('"'))
                .map(|(v, _)| v.to_owned())
                .unwrap_or_default();
            *out.entry(value).or_insert(0.0) += v;
        }
        out
    }
}

/// Runs a benchmark's async main on a two-thread runtime (the machine's
/// cores), with rustls' ring provider installed; Ctrl-C ends it with an
/// error instead of leaving control planes behind.
pub fn run<F>(bench: F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::select! {
            r = bench => r,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    })
}

/// Rounds to three decimals, for reports.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The load averages (1, 5, 15 minutes) as `/proc/loadavg` gives them.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// MemTotal in KiB.
pub fn meminfo_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Sends SIGTERM to `pid`.
pub fn send_sigterm(pid: u32) -> std::io::Result<std::process::ExitStatus> {
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
}

/// The operator's metrics page, parsed.
pub async fn scrape(op: &Operator, http: &reqwest::Client) -> anyhow::Result<Metrics> {
    let text = http
        .get(op.url("/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(Metrics::parse(&text))
}

/// Waits until the operator answers `/readyz`; fails if it exits first.
pub async fn wait_operator_ready(
    op: &mut Operator,
    http: &reqwest::Client,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if op.exited() {
            bail!("the operator exited; log: {}", op.log_path().display());
        }
        let ok = http
            .get(op.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the operator was not ready within {limit:?}")
}

/// Counts the objects `api` sees for which `counts` holds, published on a
/// watch channel (updated on every event, objects keyed by name).
pub fn watch_count<K>(
    api: Api<K>,
    counts: impl Fn(&K) -> bool + Send + 'static,
) -> tokio::sync::watch::Receiver<usize>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let (tx, rx) = tokio::sync::watch::channel(0usize);
    tokio::spawn(async move {
        let mut counted = HashSet::new();
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
        while let Some(ev) = events.next().await {
            let Ok(ev) = ev else { continue };
            match ev {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                    let name = o.meta().name.clone().unwrap_or_default();
                    if counts(&o) {
                        counted.insert(name);
                    } else {
                        counted.remove(&name);
                    }
                }
                watcher::Event::Delete(o) => {
                    counted.remove(&o.meta().name.clone().unwrap_or_default());
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
            if tx.send(counted.len()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Counts the Ready OAuthClients `api` sees, published on a watch channel.
pub fn watch_ready(api: Api<OAuthClient>) -> tokio::sync::watch::Receiver<usize> {
    watch_count(api, |o| {
        o.ready_condition().is_some_and(|c| c.status == "True")
    })
}

/// Counters as whole numbers, zeros left out.
pub fn counts(m: &BTreeMap<String, f64>) -> BTreeMap<String, u64> {
    m.iter()
        .filter(|(_, v)| **v >= 1.0)
        .map(|(k, v)| (k.clone(), *v as u64))
        .collect()
}

/// `after - before` per key, keys that did not grow left out (a counter
/// that went down, after a restart, counts as not grown).
pub fn diff_counts(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// Each count divided by `by` (per object, per minute), rounded to three
/// decimals; `by` of zero gives an empty map.
pub fn ratios(m: &BTreeMap<String, u64>, by: f64) -> BTreeMap<String, f64> {
    if by <= 0.0 {
        return BTreeMap::new();
    }
    m.iter()
        .map(|(k, v)| (k.clone(), round3(*v as f64 / by)))
        .collect()
}

/// Where object `i` of a rollout over `connections` connections goes, and
/// the clientName it asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Index of the connection, `0..connections`.
    pub connection: usize,
    /// The clientName.
    pub client_name: String,
}

/// Object `i` goes to connection `i % connections` (an even spread: the
/// counts differ by at most one). With two connections or more, half the
/// objects share their clientName with a neighbour on the next connection
/// (objects `4k` and `4k+1` are both `bench-shared-{4k}`): the same name in
/// two connections is two clients. The other half have names of their own
/// (`bench-own-{i}`). No name repeats within one connection.
pub fn place(i: usize, connections: usize) -> Placement {
    let connections = connections.max(1);
    let client_name = if connections >= 2 && i % 4 < 2 {
        format!("bench-shared-{:05}", i - i % 2)
    } else {
        format!("bench-own-{i:05}")
    };
    Placement {
        connection: i % connections,
        client_name,
    }
}

/// How a figure spreads over connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Spread {
    /// Smallest value.
    pub min: u64,
    /// Largest value.
    pub max: u64,
    /// Mean, three decimals.
    pub mean: f64,
    /// Sum.
    pub total: u64,
}

impl Spread {
    /// The spread of `values` (all zero when there are none).
    pub fn of(values: impl IntoIterator<Item = u64>) -> Spread {
        let values: Vec<u64> = values.into_iter().collect();
        if values.is_empty() {
            return Spread::default();
        }
        let total: u64 = values.iter().sum();
        Spread {
            min: values.iter().copied().min().unwrap_or(0),
            max: values.iter().copied().max().unwrap_or(0),
            mean: round3(total as f64 / values.len() as f64),
            total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, u64)]) -> BTreeMap<String, u64> {
        kv.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn diff_counts_keeps_what_grew() {
        let a = map(&[("GET", 10), ("PATCH", 5), ("POST", 7)]);
        let b = map(&[("GET", 12), ("PATCH", 5), ("POST", 3), ("DELETE", 1)]);
        assert_eq!(diff_counts(&a, &b), map(&[("DELETE", 1), ("GET", 2)]));
        assert!(diff_counts(&b, &b).is_empty());
    }

    #[test]
    fn counts_drop_zeros_and_ratios_divide() {
        let m: BTreeMap<String, f64> = [("GET".to_owned(), 3.0), ("PUT".to_owned(), 0.0)].into();
        assert_eq!(counts(&m), map(&[("GET", 3)]));
        let r = ratios(&map(&[("GET", 10), ("POST", 1)]), 3.0);
        assert_eq!(r.get("GET"), Some(&3.333));
        assert_eq!(r.get("POST"), Some(&0.333));
        assert!(ratios(&map(&[("GET", 1)]), 0.0).is_empty());
    }

    #[test]
    fn placement_is_even_and_names_are_unique_per_connection() {
        for (n, c) in [(1000, 10), (10_000, 100), (7, 3), (10, 1), (5, 2)] {
            let mut per_conn = vec![0usize; c];
            let mut names: Vec<HashSet<String>> = vec![HashSet::new(); c];
            let mut all = HashSet::new();
            for i in 0..n {
                let p = place(i, c);
                per_conn[p.connection] += 1;
                assert!(
                    names[p.connection].insert(p.client_name.clone()),
                    "n={n} c={c}: {} twice in connection {}",
                    p.client_name,
                    p.connection
                );
                all.insert(p.client_name);
            }
            let (lo, hi) = (
                per_conn.iter().min().copied().unwrap_or(0),
                per_conn.iter().max().copied().unwrap_or(0),
            );
            assert!(hi - lo <= 1, "n={n} c={c}: uneven {per_conn:?}");
            if c >= 2 {
                // Half the objects share a name: n objects, about 3n/4 names.
                assert!(all.len() < n, "n={n} c={c}: no name is shared");
                assert!(all.len() >= n * 3 / 4, "n={n} c={c}: {} names", all.len());
            } else {
                assert_eq!(all.len(), n, "one connection: every name is its own");
            }
        }
    }

    #[test]
    fn shared_names_are_in_two_connections() {
        let (a, b) = (place(4, 10), place(5, 10));
        assert_eq!(a.client_name, b.client_name);
        assert_ne!(a.connection, b.connection);
        assert_ne!(place(6, 10).client_name, place(7, 10).client_name);
    }

    #[test]
    fn spread_of_values() {
        let s = Spread::of([3, 1, 2]);
        assert_eq!((s.min, s.max, s.total), (1, 3, 6));
        assert_eq!(s.mean, 2.0);
        assert_eq!(Spread::of(Vec::<u64>::new()), Spread::default());
    }
}

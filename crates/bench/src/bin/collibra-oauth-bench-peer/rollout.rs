//! One configuration's run: create N objects, wait until every Secret holds
//! credentials, a steady window, a restart.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use collibra_oauth_bench::{Metrics, Proc, round3, send_sigterm};
use collibra_sim::Simulator;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams},
};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::{
    hydra::Hydra,
    subject::{self, Config, Launch},
};

/// The backend an operator talks to.
pub enum Backend {
    /// Ory Hydra (for hydra-maester).
    Hydra(Hydra),
    /// The Collibra simulator (for this operator).
    Sim(Simulator),
}

impl Backend {
    /// Requests so far by operation (`list`, `register`, `get`, ...).
    pub fn requests(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        match self {
            Backend::Hydra(h) => h.requests(),
            Backend::Sim(s) => Ok(s.handle().stats().requests),
        }
    }

    /// Stops it.
    pub async fn stop(self) -> anyhow::Result<()> {
        match self {
            Backend::Hydra(h) => h.stop().await,
            Backend::Sim(s) => {
                s.shutdown().await;
                Ok(())
            }
        }
    }
}

/// One configuration's rollout.
pub struct Rollout {
    /// Which operator, with which settings.
    pub config: Config,
    /// Objects to create.
    pub n: usize,
    /// The namespace of its objects.
    pub ns: String,
    /// How to start the operator.
    pub launch: Launch,
    /// A kubeconfig that impersonates the operator's service account.
    pub kubeconfig: PathBuf,
    /// The operator's log (appended to across the restart).
    pub log: PathBuf,
    /// Objects created at once.
    pub create_concurrency: usize,
    /// Longest wait for every Secret to hold credentials.
    pub timeout: Duration,
    /// The steady-state window.
    pub steady: Duration,
}

/// The operator as a process; killed when dropped.
pub struct Process {
    child: Child,
    pid: u32,
    metrics_addr: String,
    started: Instant,
}

/// Counters at one instant.
struct Snapshot {
    at: Instant,
    kube: BTreeMap<String, f64>,
    reconciles: f64,
    backend: BTreeMap<String, u64>,
    proc: Proc,
}

impl Rollout {
    pub(crate) fn spawn(&self) -> anyhow::Result<Process> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let metrics_addr = format!("127.0.0.1:{port}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let started = Instant::now();
        let child = Command::new(&self.launch.bin)
            .args(&self.launch.args)
            .arg(self.launch.metrics_flag)
            .arg(&metrics_addr)
            .envs(self.launch.env.iter().cloned())
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.launch.bin.display()))?;
        let pid = child.id().context("the operator exited at once")?;
        Ok(Process {
            child,
            pid,
            metrics_addr,
            started,
        })
    }

    pub(crate) async fn metrics(
        &self,
        p: &Process,
        http: &reqwest::Client,
    ) -> anyhow::Result<Metrics> {
        let text = http
            .get(format!("http://{}/metrics", p.metrics_addr))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Metrics::parse(&text))
    }

    /// Waits for `/readyz` where the operator has one, else for `/metrics`.
    pub(crate) async fn wait_up(
        &self,
        p: &mut Process,
        http: &reqwest::Client,
    ) -> anyhow::Result<()> {
        let path = self.launch.ready_path.unwrap_or("/metrics");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = p.child.try_wait()? {
                bail!(
                    "{} exited: {status}; log: {}",
                    self.config.name,
                    self.log.display()
                );
            }
            let ok = http
                .get(format!("http://{}{path}", p.metrics_addr))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("{} did not answer {path} within 60 s", self.config.name)
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub(crate) async fn stop(&self, mut p: Process) -> anyhow::Result<()> {
        let _ = send_sigterm(p.pid);
        match tokio::time::timeout(Duration::from_secs(10), p.child.wait()).await {
            Ok(r) => {
                r?;
            }
            Err(_) => p.child.kill().await?,
        }
        Ok(())
    }

    async fn snapshot(
        &self,
        p: &Process,
        http: &reqwest::Client,
        backend: &Backend,
    ) -> anyhow::Result<Snapshot> {
        let (requests, reconciles) = subject::metric_names(self.config.kind);
        let m = self.metrics(p, http).await?;
        Ok(Snapshot {
            at: Instant::now(),
            kube: m.by_label(requests, "method"),
            reconciles: m.sum(reconciles),
            backend: backend.requests()?,
            proc: Proc::read(p.pid)?,
        })
    }

    /// Waits until the reconcile count has not changed for 3 s (at most
    /// 120 s); returns how long that took.
    pub(crate) async fn settle(
        &self,
        p: &Process,
        http: &reqwest::Client,
    ) -> anyhow::Result<Duration> {
        let (_, reconciles) = subject::metric_names(self.config.kind);
        let began = Instant::now();
        let mut last = self.metrics(p, http).await?.sum(reconciles);
        let mut since = Instant::now();
        while since.elapsed() < Duration::from_secs(3) && began.elapsed() < Duration::from_secs(120)
        {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.metrics(p, http).await?.sum(reconciles);
            if now != last {
                last = now;
                since = Instant::now();
            }
        }
        Ok(since.duration_since(began))
    }

    /// Runs the phases and returns the figures.
    pub async fn run(
        &self,
        admin: &Client,
        http: &reqwest::Client,
        backend: &Backend,
    ) -> anyhow::Result<Value> {
        let n = self.n;
        let mut p = self.spawn()?;
        self.wait_up(&mut p, http).await?;
        let mut with_credentials = watch_credentials(
            Api::namespaced(admin.clone(), &self.ns),
            subject::credential_keys(self.config.kind),
        );
        let api: Api<DynamicObject> = Api::namespaced_with(
            admin.clone(),
            &self.ns,
            &subject::resource(self.config.kind),
        );

        // Rollout.
        let s0 = self.snapshot(&p, http, backend).await?;
        let t0 = Instant::now();
        eprintln!("bench-peer: {}: creating {n} objects", self.config.name);
        let kind = self.config.kind;
        futures::stream::iter(0..n)
            .map(|i| {
                let api = api.clone();
                async move {
                    let (name, obj) = subject::object(kind, i);
                    api.patch(
                        &name,
                        &PatchParams::apply("collibra-oauth-bench-peer").force(),
                        &Patch::Apply(&obj),
                    )
                    .await
                    .map(|_| ())
                }
            })
            .buffer_unordered(self.create_concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        let created_in = t0.elapsed();
        eprintln!(
            "bench-peer: {}: created in {:.1}s",
            self.config.name,
            created_in.as_secs_f64()
        );
        let deadline = t0 + self.timeout;
        let mut last_print = Instant::now();
        loop {
            if *with_credentials.borrow_and_update() >= n {
                break;
            }
            if let Some(status) = p.child.try_wait()? {
                bail!(
                    "{} exited: {status}; log: {}",
                    self.config.name,
                    self.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: only {} of {n} Secrets hold credentials after {:?}; log: {}",
                    self.config.name,
                    *with_credentials.borrow(),
                    self.timeout,
                    self.log.display()
                );
            }
            if last_print.elapsed() > Duration::from_secs(10) {
                last_print = Instant::now();
                eprintln!(
                    "bench-peer: {}: {:>6.1}s {}/{n} Secrets with credentials",
                    self.config.name,
                    t0.elapsed().as_secs_f64(),
                    *with_credentials.borrow(),
                );
            }
            let _ =
                tokio::time::timeout(Duration::from_millis(200), with_credentials.changed()).await;
        }
        let converge = t0.elapsed();
        let s1 = self.snapshot(&p, http, backend).await?;
        eprintln!(
            "bench-peer: {}: every Secret holds credentials after {:.1}s",
            self.config.name,
            converge.as_secs_f64()
        );
        let rollout = delta(&s0, &s1);

        // The last Secret is written before the last status update (and
        // hydra-maester reconciles its own status writes), so the steady
        // window starts once the reconcile count has stopped moving.
        let settled = self.settle(&p, http).await?;
        let s1 = self.snapshot(&p, http, backend).await?;
        let tail = delta(&s0, &s1);

        // Steady state.
        eprintln!(
            "bench-peer: {}: steady window of {:?}",
            self.config.name, self.steady
        );
        tokio::time::sleep(self.steady).await;
        let s2 = self.snapshot(&p, http, backend).await?;
        let mut steady = delta(&s1, &s2);
        let minutes = s2.at.duration_since(s1.at).as_secs_f64() / 60.0;
        for key in ["kubernetes_requests", "backend_requests"] {
            steady[format!("{key}_per_minute")] = per_minute(&steady[key], minutes);
        }
        steady["cpu_seconds_per_minute"] = json!(round3(
            steady["cpu_seconds"].as_f64().unwrap_or(0.0) / minutes
        ));
        let before_restart = Proc::read(p.pid)?;

        // Restart with N objects present.
        self.stop(p).await?;
        eprintln!("bench-peer: {}: restarting", self.config.name);
        let backend_before = backend.requests()?;
        let p2 = self.spawn()?;
        let (_, reconciles) = subject::metric_names(self.config.kind);
        let limit = Duration::from_secs(120) + Duration::from_millis(n as u64 * 20);
        let mut first = None;
        let mut all = None;
        while p2.started.elapsed() < limit && all.is_none() {
            if let Ok(m) = self.metrics(&p2, http).await {
                let r = m.sum(reconciles);
                if r >= 1.0 && first.is_none() {
                    first = Some(p2.started.elapsed());
                }
                if r >= n as f64 {
                    all = Some(p2.started.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let s3 = self.snapshot(&p2, http, backend).await?;
        self.stop(p2).await?;
        let restart_backend = diff_counts(&backend_before, &s3.backend);
        let restart = json!({
            "first_reconcile_seconds": first.map(|d| round3(d.as_secs_f64())),
            "all_reconciled_seconds": all.map(|d| round3(d.as_secs_f64())),
            "reconciles": s3.reconciles,
            "kubernetes_requests": counts(&s3.kube),
            "backend_requests": restart_backend,
            "peak_rss_mib": round3(s3.proc.hwm_kib as f64 / 1024.0),
            "cpu_seconds": round3(s3.proc.cpu_secs),
        });

        Ok(json!({
            "operator": format!("{:?}", self.config.kind),
            "tuned": self.config.tuned,
            "args": self.launch.args.iter().map(|a| {
                if a.starts_with("http://") { "<backend-url>".to_owned() }
                else if a.parse::<u16>().is_ok_and(|_| a.len() >= 4) { "<port>".to_owned() }
                else if a == &self.ns { "<ns>".to_owned() }
                else { a.clone() }
            }).collect::<Vec<_>>(),
            "env": self.launch.env.iter()
                // The operator's Collibra credentials are not a setting.
                .filter(|(k, _)| !k.starts_with("COLLIBRA_"))
                .map(|(k, v)| format!("{k}={}", if v == &self.ns { "<ns>" } else { v }))
                .collect::<Vec<_>>(),
            "create_seconds": round3(created_in.as_secs_f64()),
            "converge_seconds": round3(converge.as_secs_f64()),
            "rollout": rollout,
            "settled_seconds": round3(settled.as_secs_f64() + converge.as_secs_f64()),
            "rollout_until_settled": tail,
            "peak_rss_mib": round3(before_restart.hwm_kib as f64 / 1024.0),
            "cpu_seconds_total": round3(before_restart.cpu_secs),
            "steady": steady,
            "restart": restart,
        }))
    }
}

fn counts(m: &BTreeMap<String, f64>) -> BTreeMap<String, u64> {
    m.iter()
        .filter(|(_, v)| **v > 0.0)
        .map(|(k, v)| (k.clone(), *v as u64))
        .collect()
}

fn diff_counts(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    b.iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(a.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

fn delta(a: &Snapshot, b: &Snapshot) -> Value {
    let kube: BTreeMap<String, u64> = b
        .kube
        .iter()
        .filter_map(|(k, v)| {
            let d = v - a.kube.get(k).copied().unwrap_or(0.0);
            (d > 0.0).then(|| (k.clone(), d as u64))
        })
        .collect();
    json!({
        "seconds": round3(b.at.duration_since(a.at).as_secs_f64()),
        "kubernetes_requests": kube,
        "backend_requests": diff_counts(&a.backend, &b.backend),
        "reconciles": b.reconciles - a.reconciles,
        "cpu_seconds": round3(b.proc.cpu_secs - a.proc.cpu_secs),
    })
}

fn per_minute(v: &Value, minutes: f64) -> Value {
    match v.as_object() {
        Some(m) => json!(
            m.iter()
                .map(|(k, x)| (k.clone(), round3(x.as_f64().unwrap_or(0.0) / minutes)))
                .collect::<BTreeMap<_, _>>()
        ),
        None => Value::Null,
    }
}

/// Counts the Secrets in the watched namespace whose two credential keys
/// are present and non-empty, published on a watch channel.
fn watch_credentials(
    api: Api<Secret>,
    keys: [&'static str; 2],
) -> tokio::sync::watch::Receiver<usize> {
    collibra_oauth_bench::watch_count(api, move |s: &Secret| {
        keys.iter().all(|k| {
            s.data
                .as_ref()
                .and_then(|d| d.get(*k))
                .is_some_and(|v| !v.0.is_empty())
        })
    })
}

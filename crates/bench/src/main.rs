//! Rollout benchmark of the operator.
//!
//! Starts a real control plane (`test-control-plane`), the Collibra
//! simulator with latency and a rate limit, and the operator's release
//! binary as its own process watching one namespace with the RBAC of
//! `deploy/rbac.yaml`. Then it creates N OAuthClients and measures:
//!
//! 1. the rollout: time until all are Ready, Collibra requests by operation
//!    (simulator stats), API-server requests the operator made (its
//!    `collibra_oauth_kubernetes_requests_total`), its peak RSS and CPU time;
//! 2. a steady-state window of one resync period right after convergence:
//!    Collibra and API-server requests per minute;
//! 3. a restart with N objects present: time from process start to the first
//!    finished reconcile, and until every object was checked again; beside
//!    it, what a plain paged list (500 a page) of the same OAuthClients and
//!    Secrets takes from the benchmark on the same API server.
//!
//! Prints a table and writes the figures as JSON (`--json`). Every process
//! it starts is killed on every exit path (kill-on-drop, and the control
//! plane stops when dropped).
//!
//! `--mode latency` measures instead what a GitOps sync waits for (issue
//! 22): the time from an OAuthClient's create to its Secret with
//! credentials and to `Ready=True`, with R objects resident, beside the
//! critical path's floor (see `latency_mode.rs` and the library's
//! `latency` module).

mod latency_mode;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Parser;
use collibra_oauth_bench::{
    Proc, RolloutArgs, load, meminfo_total, round3, scrape, wait_operator_ready, watch_ready,
};
use collibra_oauth_operator::api::OAuthClient;
use collibra_sim::{Faults, RateLimit, SimConfig, Simulator, Stats};
use futures::{StreamExt, TryStreamExt};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};
use test_support::{Env, Operator, Rbac};

#[derive(Parser, Debug)]
#[command(about = "Rollout benchmark: N OAuthClients against the rate-limited simulator")]
struct Args {
    /// What to measure: the rollout of N objects, or apply-to-Ready
    /// latency (`latency`: no rate limit; --n, --rate-limit and the
    /// rollout's phases do not apply).
    #[arg(long, value_enum, default_value_t = Mode::Rollout)]
    mode: Mode,
    #[command(flatten)]
    rollout: RolloutArgs,
    #[command(flatten)]
    latency: collibra_oauth_bench::latency::LatencyArgs,
    /// Skip the steady-state window.
    #[arg(long)]
    no_steady: bool,
    /// Skip the restart measurement.
    #[arg(long)]
    no_restart: bool,
    /// Restarts to measure, each against a plain list taken right before
    /// it; the ratio reported for the target is their median (this
    /// machine's load moves single samples by 2x).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    restarts: u32,
    /// Extra flags for `collibra-oauth-operator run` (after `--`).
    #[arg(last = true)]
    operator_args: Vec<String>,
}

/// What a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// N objects at once: converge, steady state, restart.
    Rollout,
    /// One object at a time and bursts: create to Secret and to Ready.
    Latency,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.mode {
        Mode::Rollout => collibra_oauth_bench::run(bench(args)),
        Mode::Latency => collibra_oauth_bench::run(latency_mode::bench(args)),
    }
}

/// The running operator's resource use.
fn proc_of(op: &Operator) -> anyhow::Result<Proc> {
    Proc::read(op.pid().context("the operator is not running")?)
}

/// SIGTERM, then SIGKILL after this long.
const STOP_GRACE: Duration = Duration::from_secs(10);

const KUBE_REQUESTS: &str = "collibra_oauth_kubernetes_requests_total";

/// Counters at one instant.
#[derive(Clone, Debug)]
struct Snapshot {
    at: Instant,
    sim: Stats,
    kube: Option<BTreeMap<String, f64>>,
    reconciles: f64,
    retries: f64,
    proc: Proc,
}

async fn snapshot(
    op: &Operator,
    http: &reqwest::Client,
    sim: &collibra_sim::SimHandle,
) -> anyhow::Result<Snapshot> {
    let m = scrape(op, http).await?;
    Ok(Snapshot {
        at: Instant::now(),
        sim: sim.stats(),
        kube: m
            .has(KUBE_REQUESTS)
            .then(|| m.by_label(KUBE_REQUESTS, "method")),
        reconciles: m.sum("collibra_oauth_reconciles_total"),
        retries: m.sum("collibra_oauth_collibra_retries_total"),
        proc: proc_of(op)?,
    })
}

/// Differences between two snapshots.
fn delta(a: &Snapshot, b: &Snapshot) -> Value {
    let mut collibra = BTreeMap::new();
    for (op, n) in &b.sim.requests {
        let d = n - a.sim.requests.get(op).copied().unwrap_or(0);
        if d > 0 {
            collibra.insert(op.clone(), d);
        }
    }
    let mut responses = BTreeMap::new();
    for (k, n) in &b.sim.responses {
        let d = n - a.sim.responses.get(k).copied().unwrap_or(0);
        if d > 0 {
            responses.insert(k.clone(), d);
        }
    }
    let kube = match (&a.kube, &b.kube) {
        (Some(x), Some(y)) => {
            let mut m = BTreeMap::new();
            for (k, v) in y {
                let d = v - x.get(k).copied().unwrap_or(0.0);
                if d > 0.0 {
                    m.insert(k.clone(), d as u64);
                }
            }
            json!(m)
        }
        (None, Some(y)) => json!(
            y.iter()
                .map(|(k, v)| (k.clone(), *v as u64))
                .collect::<BTreeMap<_, _>>()
        ),
        _ => Value::Null,
    };
    json!({
        "seconds": round3(b.at.duration_since(a.at).as_secs_f64()),
        "collibra_requests": collibra,
        "collibra_responses": responses,
        "kubernetes_requests": kube,
        "reconciles": b.reconciles - a.reconciles,
        "collibra_retries": b.retries - a.retries,
        "cpu_seconds": round3(b.proc.cpu_secs - a.proc.cpu_secs),
    })
}

async fn bench(args: Args) -> anyhow::Result<()> {
    if !args.rollout.operator.exists() {
        bail!(
            "{} not found: run `cargo build --release` first (or pass --operator)",
            args.rollout.operator.display()
        );
    }
    let n = args.rollout.n;
    let began = Instant::now();
    let load_start = load();
    eprintln!("bench: N={n}, starting the control plane (load {load_start})");
    // The benchmark measures the chart's default (cluster-wide) RBAC.
    let env = Env::start_with(args.rollout.operator.clone(), Rbac::ClusterWide).await?;
    let dir = tempfile::tempdir()?;
    let ns = env.cp.create_namespace("bench").await?;

    let sim = Simulator::start(SimConfig::default()).await?;
    let collibra = sim.handle();
    collibra.set_faults(Faults {
        latency_ms: args.rollout.latency_ms,
        rate_limit: Some(RateLimit {
            requests_per_second: args.rollout.rate_limit,
            retry_after_secs: Some(1),
        }),
        ..Faults::default()
    });

    let mut op_args = vec![
        "--collibra-url".to_owned(),
        sim.url(),
        "--watch-namespaces".to_owned(),
        ns.clone(),
        "--resync-interval".to_owned(),
        humantime::format_duration(args.rollout.resync).to_string(),
    ];
    op_args.extend(args.operator_args.iter().cloned());
    let log = dir.path().join("operator.log");
    let envs =
        env.operator_env(std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "info".to_owned()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let result = async {
        let op = Operator::start(
            args.rollout.operator.clone(),
            log.clone(),
            op_args.clone(),
            envs,
        )?;
        run_phases(&args, &env.client, &ns, &collibra, op, &http).await
    }
    .await;
    if let Some(to) = &args.rollout.log {
        let _ = std::fs::copy(&log, to);
    }
    sim.shutdown().await;
    env.stop()?;
    let mut report = result?;
    report["machine"] = json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "mem_total_kib": meminfo_total(),
        "load_start": load_start,
        "load_end": load(),
    });
    report["operator_args"] = json!(
        op_args
            .iter()
            .map(|a| if a.starts_with("http://") {
                "<sim-url>".to_owned()
            } else if a == &ns {
                "<ns>".to_owned()
            } else {
                a.clone()
            })
            .collect::<Vec<_>>()
    );
    report["total_seconds"] = json!(round3(began.elapsed().as_secs_f64()));
    print_table(&report);
    collibra_oauth_bench::write_report(args.rollout.json.as_deref(), &report, "bench")?;
    Ok(())
}

async fn run_phases(
    args: &Args,
    admin: &Client,
    ns: &str,
    collibra: &collibra_sim::SimHandle,
    mut op: Operator,
    http: &reqwest::Client,
) -> anyhow::Result<Value> {
    let n = args.rollout.n;
    let rate = f64::from(args.rollout.rate_limit);
    wait_operator_ready(&mut op, http, Duration::from_secs(60)).await?;
    let api: Api<OAuthClient> = Api::namespaced(admin.clone(), ns);
    let mut ready = watch_ready(api.clone());

    // Rollout.
    let s0 = snapshot(&op, http, collibra).await?;
    let t0 = Instant::now();
    eprintln!("bench: creating {n} OAuthClients");
    let creating = {
        let api = api.clone();
        let c = args.rollout.create_concurrency.max(1);
        async move {
            futures::stream::iter(0..n)
                .map(|i| {
                    let api = api.clone();
                    async move {
                        let name = format!("bench-{i:05}");
                        let obj = json!({
                            "apiVersion": "oauth.collibra.dev/v1alpha1",
                            "kind": "OAuthClient",
                            "metadata": { "name": name },
                            "spec": { "clientName": format!("bench-client-{i:05}") },
                        });
                        api.patch(
                            &name,
                            &PatchParams::apply("collibra-oauth-bench").force(),
                            &Patch::Apply(&obj),
                        )
                        .await
                        .map(|_| ())
                    }
                })
                .buffer_unordered(c)
                .try_collect::<Vec<()>>()
                .await?;
            anyhow::Ok(t0.elapsed())
        }
    };
    let created_in = creating.await?;
    eprintln!("bench: created in {:.1}s", created_in.as_secs_f64());
    let timeout = args
        .rollout
        .timeout
        .unwrap_or_else(|| Duration::from_secs_f64(10.0 * n as f64 / rate + 120.0));
    let deadline = t0 + timeout;
    let mut last_print = Instant::now();
    loop {
        if *ready.borrow_and_update() >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} Ready after {timeout:?}; operator log: {}",
                *ready.borrow(),
                op.log_path().display()
            );
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            last_print = Instant::now();
            let st = collibra.stats();
            eprintln!(
                "bench: {:>6.1}s ready {}/{n}, Collibra register {} (429s {})",
                t0.elapsed().as_secs_f64(),
                *ready.borrow(),
                st.requests_for("register"),
                st.faults.get("429").copied().unwrap_or(0)
            );
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), ready.changed()).await;
    }
    let converge = t0.elapsed();
    let s1 = snapshot(&op, http, collibra).await?;
    eprintln!("bench: all {n} Ready after {:.1}s", converge.as_secs_f64());
    let rollout = delta(&s0, &s1);
    let limit = n as f64 / rate;
    let lists = s1.sim.requests_for("list") - s0.sim.requests_for("list");
    let registers =
        s1.sim.responses_for("register", "201") - s0.sim.responses_for("register", "201");

    // Steady state: one resync period right after convergence.
    let steady = if args.no_steady {
        Value::Null
    } else {
        eprintln!("bench: steady-state window of {:?}", args.rollout.resync);
        tokio::time::sleep(args.rollout.resync).await;
        let s2 = snapshot(&op, http, collibra).await?;
        let mut d = delta(&s1, &s2);
        let minutes = s2.at.duration_since(s1.at).as_secs_f64() / 60.0;
        let per_min = |v: &Value| -> Value {
            match v.as_object() {
                Some(m) => json!(
                    m.iter()
                        .map(|(k, x)| (k.clone(), round3(x.as_f64().unwrap_or(0.0) / minutes)))
                        .collect::<BTreeMap<_, _>>()
                ),
                None => Value::Null,
            }
        };
        d["collibra_per_minute"] = per_min(&d["collibra_requests"]);
        d["kubernetes_per_minute"] = per_min(&d["kubernetes_requests"]);
        d
    };
    let proc_before_restart = proc_of(&op)?;

    // Restart with N objects present.
    op.stop(STOP_GRACE).await?;
    let restart = if args.no_restart {
        Value::Null
    } else {
        let mut samples = Vec::new();
        for _ in 0..args.restarts {
            samples.push(restart_once(admin, ns, collibra, &op, http, n).await?);
        }
        let mut ratios: Vec<f64> = samples
            .iter()
            .filter_map(|s| s["first_reconcile_ratio_to_plain_list"].as_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let median = ratios.get(ratios.len() / 2).copied();
        let mut first = samples.first().cloned().unwrap_or(Value::Null);
        if samples.len() > 1 {
            first["median_first_reconcile_ratio_to_plain_list"] = json!(median.map(round3));
            first["samples"] = json!(
                samples
                    .iter()
                    .map(|s| json!({
                        "first_reconcile_seconds": s["first_reconcile_seconds"],
                        "plain_list_seconds": s["plain_list"]["seconds"],
                        "ratio": s["first_reconcile_ratio_to_plain_list"],
                        "peak_rss_mib": s["peak_rss_mib"],
                    }))
                    .collect::<Vec<_>>()
            );
        } else {
            first["median_first_reconcile_ratio_to_plain_list"] =
                first["first_reconcile_ratio_to_plain_list"].clone();
        }
        first
    };

    let peak_rss_mib = proc_before_restart.hwm_kib as f64 / 1024.0;
    let steady_lists = steady["collibra_requests"]["list"].as_u64().unwrap_or(0);
    let steady_writes: u64 = ["register", "update", "delete"]
        .iter()
        .map(|k| steady["collibra_requests"][*k].as_u64().unwrap_or(0))
        .sum();
    let first = restart["first_reconcile_seconds"].as_f64();
    Ok(json!({
        "n": n,
        "resync_seconds": args.rollout.resync.as_secs_f64(),
        "rate_limit_per_second": args.rollout.rate_limit,
        "latency_ms": args.rollout.latency_ms,
        "create_seconds": round3(created_in.as_secs_f64()),
        "converge_seconds": round3(converge.as_secs_f64()),
        "physical_limit_seconds": round3(limit),
        "rollout": rollout,
        "peak_rss_mib": round3(peak_rss_mib),
        "rss_mib_before_restart": round3(proc_before_restart.rss_kib as f64 / 1024.0),
        "cpu_seconds_total": round3(proc_before_restart.cpu_secs),
        "steady": steady,
        "restart": restart,
        "targets": {
            "converge_ratio": round3(converge.as_secs_f64() / limit),
            "converge_met": converge.as_secs_f64() <= 1.2 * limit,
            "converge_within_1_05": converge.as_secs_f64() <= 1.05 * limit,
            "lists_per_100_registrations": round3(lists as f64 * 100.0 / (registers.max(1)) as f64),
            "lists_met": lists as f64 * 100.0 <= registers.max(1) as f64,
            "steady_lists_per_resync": steady_lists,
            "steady_writes": steady_writes,
            "steady_met": (!args.no_steady).then_some(steady_lists <= 1 && steady_writes == 0),
            "peak_rss_kib_per_object": round3(proc_before_restart.hwm_kib as f64 / n.max(1) as f64),
            "first_reconcile_ratio_to_plain_list": restart["median_first_reconcile_ratio_to_plain_list"],
            "first_reconcile_within_1_5x_plain_list": restart["median_first_reconcile_ratio_to_plain_list"]
                .as_f64()
                .map(|r| r <= 1.5),
            "peak_rss_ratio_to_64mib": round3(peak_rss_mib / 64.0),
            "peak_rss_met": peak_rss_mib <= 64.0,
            "first_reconcile_met": first.map(|f| f <= 1.0),
        },
    }))
}

/// Starts the operator again with N objects present and times its first
/// reconcile against a plain paged list of the same objects, taken right
/// before on the same API server.
async fn restart_once(
    admin: &Client,
    ns: &str,
    collibra: &collibra_sim::SimHandle,
    op: &Operator,
    http: &reqwest::Client,
    n: usize,
) -> anyhow::Result<Value> {
    // The yardstick: what a plain paged list of the same objects takes
    // on the same API server, right before the restart.
    let plain = plain_list(admin, ns).await?;
    eprintln!(
        "bench: plain paged list of {} OAuthClients and {} Secrets took {:.3}s",
        plain.oauth_clients, plain.secrets, plain.seconds
    );
    eprintln!("bench: restarting the operator");
    let before = collibra.stats();
    // A new process on a new metrics port, appending to the same log.
    let mut op2 = op.replica(op.log_path().to_owned())?;
    let deadline = Instant::now() + Duration::from_secs(120) + Duration::from_millis(n as u64 * 20);
    let mut first = None;
    let mut all = None;
    let mut ready_at = None;
    while Instant::now() < deadline && all.is_none() {
        if ready_at.is_none()
            && http
                .get(op2.url("/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        {
            ready_at = Some(op2.started().elapsed());
        }
        if let Ok(m) = scrape(&op2, http).await {
            let r = m.sum("collibra_oauth_reconciles_total");
            if r >= 1.0 && first.is_none() {
                first = Some(op2.started().elapsed());
            }
            if r >= n as f64 {
                all = Some(op2.started().elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let m = scrape(&op2, http).await?;
    let after = collibra.stats();
    let proc2 = proc_of(&op2)?;
    let mut collibra_requests = BTreeMap::new();
    for (k, v) in &after.requests {
        let d = v - before.requests.get(k).copied().unwrap_or(0);
        if d > 0 {
            collibra_requests.insert(k.clone(), d);
        }
    }
    let kube = m.has(KUBE_REQUESTS).then(|| {
        m.by_label(KUBE_REQUESTS, "method")
            .into_iter()
            .map(|(k, v)| (k, v as u64))
            .collect::<BTreeMap<_, _>>()
    });
    op2.stop(STOP_GRACE).await?;
    Ok(json!({
        "plain_list": {
            "seconds": round3(plain.seconds),
            "oauth_clients_seconds": round3(plain.oauth_clients_seconds),
            "secrets_seconds": round3(plain.secrets_seconds),
            "oauth_clients": plain.oauth_clients,
            "secrets": plain.secrets,
            "page_size": PLAIN_LIST_PAGE,
        },
        "first_reconcile_ratio_to_plain_list": first
            .map(|d| round3(d.as_secs_f64() / plain.seconds.max(1e-6))),
        "first_reconcile_seconds": first.map(|d| round3(d.as_secs_f64())),
        "readyz_seconds": ready_at.map(|d| round3(d.as_secs_f64())),
        "all_reconciled_seconds": all.map(|d| round3(d.as_secs_f64())),
        "collibra_requests": collibra_requests,
        "kubernetes_requests": kube,
        "peak_rss_mib": round3(proc2.hwm_kib as f64 / 1024.0),
        "cpu_seconds": round3(proc2.cpu_secs),
    }))
}

/// Page size of the plain list: the operator's watches list 500 a page.
const PLAIN_LIST_PAGE: u32 = 500;

/// A plain paged list of the objects the operator lists at start.
struct PlainList {
    seconds: f64,
    oauth_clients_seconds: f64,
    secrets_seconds: f64,
    oauth_clients: usize,
    secrets: usize,
}

/// Lists the namespace's OAuthClients and the Secrets the operator watches
/// (its label), 500 a page and deserialized, both at once as the
/// operator's two watches do: the floor for a restart's first reconcile.
async fn plain_list(admin: &Client, ns: &str) -> anyhow::Result<PlainList> {
    async fn paged<K>(api: Api<K>, lp: kube::api::ListParams) -> anyhow::Result<(usize, f64)>
    where
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let t = Instant::now();
        let mut lp = lp.limit(PLAIN_LIST_PAGE);
        let mut count = 0;
        loop {
            let page = api.list(&lp).await?;
            count += page.items.len();
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => lp = lp.continue_token(&token),
                None => break,
            }
        }
        Ok((count, t.elapsed().as_secs_f64()))
    }
    let label = format!(
        "{}={}",
        collibra_oauth_operator::api::MANAGED_BY_LABEL,
        collibra_oauth_operator::api::MANAGED_BY_VALUE
    );
    let t = Instant::now();
    let (clients, secrets) = futures::future::try_join(
        paged::<OAuthClient>(Api::namespaced(admin.clone(), ns), Default::default()),
        paged::<k8s_openapi::api::core::v1::Secret>(
            Api::namespaced(admin.clone(), ns),
            kube::api::ListParams::default().labels(&label),
        ),
    )
    .await?;
    Ok(PlainList {
        seconds: t.elapsed().as_secs_f64(),
        oauth_clients_seconds: clients.1,
        secrets_seconds: secrets.1,
        oauth_clients: clients.0,
        secrets: secrets.0,
    })
}

fn print_table(r: &Value) {
    let row = |k: &str, v: String| println!("| {k:<44} | {v:>28} |");
    let s = |v: &Value| match v {
        Value::Null => "n/a".to_owned(),
        Value::Object(m) if m.is_empty() => "0".to_owned(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    println!("| {:<44} | {:>28} |", "figure", "value");
    println!("|{}|{}|", "-".repeat(46), "-".repeat(30));
    row("N", s(&r["n"]));
    row(
        "machine cpus / load start / load end",
        format!(
            "{} / {} / {}",
            s(&r["machine"]["cpus"]),
            r["machine"]["load_start"].as_str().unwrap_or(""),
            r["machine"]["load_end"].as_str().unwrap_or("")
        ),
    );
    row("create N objects (s)", s(&r["create_seconds"]));
    row("converge: all Ready (s)", s(&r["converge_seconds"]));
    row("physical limit N/rate (s)", s(&r["physical_limit_seconds"]));
    row(
        "converge ratio (target <= 1.05 on an idle machine)",
        s(&r["targets"]["converge_ratio"]),
    );
    row(
        "rollout Collibra requests",
        s(&r["rollout"]["collibra_requests"]),
    );
    row(
        "rollout Collibra responses",
        s(&r["rollout"]["collibra_responses"]),
    );
    row(
        "rollout Collibra retries (operator)",
        s(&r["rollout"]["collibra_retries"]),
    );
    row(
        "rollout lists per 100 registrations (<= 1)",
        s(&r["targets"]["lists_per_100_registrations"]),
    );
    row(
        "rollout API-server requests",
        s(&r["rollout"]["kubernetes_requests"]),
    );
    row("rollout reconciles", s(&r["rollout"]["reconciles"]));
    row("peak RSS (MiB, target <= 64 at 10k)", s(&r["peak_rss_mib"]));
    row(
        "peak RSS per object (KiB)",
        s(&r["targets"]["peak_rss_kib_per_object"]),
    );
    row(
        "CPU seconds (start to end of steady)",
        s(&r["cpu_seconds_total"]),
    );
    row("steady window (s)", s(&r["steady"]["seconds"]));
    row(
        "steady Collibra requests / min",
        s(&r["steady"]["collibra_per_minute"]),
    );
    row(
        "steady API-server requests / min",
        s(&r["steady"]["kubernetes_per_minute"]),
    );
    row("steady reconciles", s(&r["steady"]["reconciles"]));
    row(
        "steady met (<= 1 list, no writes)",
        s(&r["targets"]["steady_met"]),
    );
    row(
        "restart: first reconcile after start (s)",
        s(&r["restart"]["first_reconcile_seconds"]),
    );
    row(
        "restart: plain paged list, same objects (s)",
        s(&r["restart"]["plain_list"]["seconds"]),
    );
    row(
        "restart: first reconcile / plain list (<= 1.5)",
        s(&r["restart"]["first_reconcile_ratio_to_plain_list"]),
    );
    row(
        "restart: median ratio over --restarts",
        s(&r["restart"]["median_first_reconcile_ratio_to_plain_list"]),
    );
    row("restart: /readyz (s)", s(&r["restart"]["readyz_seconds"]));
    row(
        "restart: all N reconciled (s)",
        s(&r["restart"]["all_reconciled_seconds"]),
    );
    row(
        "restart: Collibra requests",
        s(&r["restart"]["collibra_requests"]),
    );
    row(
        "restart: API-server requests",
        s(&r["restart"]["kubernetes_requests"]),
    );
    row("restart: peak RSS (MiB)", s(&r["restart"]["peak_rss_mib"]));
}

//! `collibra-oauth-bench --mode latency`: apply-to-Ready latency of this
//! operator against the simulator (latency `--latency-ms`, no rate limit),
//! for each R of `--resident`, with the critical-path floor measured in the
//! same run.

use std::{collections::BTreeMap, time::Duration};

use anyhow::bail;
use collibra_oauth_bench::{
    latency::{self, Latency, Probe, SimPost, Subject},
    load, meminfo_total, round3, scrape, wait_operator_ready,
};
use collibra_sim::{Faults, SimConfig, SimHandle, Simulator};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use test_support::{Env, Operator, Rbac};

use crate::{Args, STOP_GRACE};

/// The operator as the latency phases see it: its metrics and the
/// simulator's counters.
struct OperatorProbe<'a> {
    op: &'a Operator,
    http: &'a reqwest::Client,
    sim: &'a SimHandle,
}

impl Probe for OperatorProbe<'_> {
    /// Quiet: the reconcile count has not moved for 2 s (at most 120 s).
    fn settle(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let began = std::time::Instant::now();
            let reconciles =
                |m: &collibra_oauth_bench::Metrics| m.sum("collibra_oauth_reconciles_total");
            let mut last = reconciles(&scrape(self.op, self.http).await?);
            let mut since = std::time::Instant::now();
            while since.elapsed() < Duration::from_secs(2)
                && began.elapsed() < Duration::from_secs(120)
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let now = reconciles(&scrape(self.op, self.http).await?);
                if now != last {
                    (last, since) = (now, std::time::Instant::now());
                }
            }
            Ok(())
        })
    }

    /// API-server requests by method and Collibra requests by operation.
    fn counters(&self) -> BoxFuture<'_, anyhow::Result<BTreeMap<String, u64>>> {
        Box::pin(async move {
            let m = scrape(self.op, self.http).await?;
            let mut out: BTreeMap<String, u64> = m
                .by_label(crate::KUBE_REQUESTS, "method")
                .into_iter()
                .map(|(k, v)| (format!("kubernetes {k}"), v as u64))
                .collect();
            for (k, v) in self.sim.stats().requests {
                out.insert(format!("collibra {k}"), v);
            }
            out.insert(
                "reconciles".to_owned(),
                m.sum("collibra_oauth_reconciles_total") as u64,
            );
            Ok(out)
        })
    }
}

pub async fn bench(args: Args) -> anyhow::Result<()> {
    let bin = args.rollout.operator.clone();
    if !bin.exists() {
        bail!(
            "{} not found: run `cargo build --release -p collibra-oauth-operator` first (or pass --operator)",
            bin.display()
        );
    }
    let began = std::time::Instant::now();
    let load_start = load();
    eprintln!(
        "bench latency: R = {:?}, simulator latency {} ms, starting the control plane (load {load_start})",
        args.latency.residents(),
        args.rollout.latency_ms
    );
    let env = Env::start_with(bin.clone(), Rbac::ClusterWide).await?;
    let dir = tempfile::tempdir()?;
    let ns = env.cp.create_namespace("bench").await?;
    // The floor's objects live where the operator does not look.
    let floor_ns = env.cp.create_namespace("bench-floor").await?;
    let sim = Simulator::start(SimConfig::default()).await?;
    let handle = sim.handle();
    handle.set_faults(Faults {
        latency_ms: args.rollout.latency_ms,
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
    let concurrency = latency::operator_concurrency(&op_args);
    let log = dir.path().join("operator.log");
    let envs =
        env.operator_env(std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "info".to_owned()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let result = async {
        let mut op = Operator::start(bin.clone(), log.clone(), op_args.clone(), envs)?;
        let phases = run(
            &args,
            &env,
            &ns,
            &floor_ns,
            &sim.url(),
            &handle,
            &mut op,
            &http,
            concurrency,
        )
        .await;
        op.stop(STOP_GRACE).await?;
        phases
    }
    .await;
    if let Some(to) = &args.rollout.log {
        let _ = std::fs::copy(&log, to);
    }
    sim.shutdown().await;
    env.stop()?;
    let phases = result?;
    let report = json!({
        "mode": "latency",
        "simulator_latency_ms": args.rollout.latency_ms,
        "simulator_rate_limit": null,
        "operator_concurrency": concurrency,
        "operator_args": op_args
            .iter()
            .map(|a| if a.starts_with("http://") { "<sim-url>".to_owned() } else if a == &ns { "<ns>".to_owned() } else { a.clone() })
            .collect::<Vec<_>>(),
        "create_concurrency": args.rollout.create_concurrency,
        "phases": phases,
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "mem_total_kib": meminfo_total(),
            "load_start": load_start,
            "load_end": load(),
        },
        "repository_commit": collibra_oauth_bench::git_describe(),
        "operator_sha256": collibra_oauth_bench::sha256_of(&bin),
        "total_seconds": round3(began.elapsed().as_secs_f64()),
    });
    for p in report["phases"].as_array().into_iter().flatten() {
        latency::print_phase("bench latency", p);
    }
    collibra_oauth_bench::write_report(args.rollout.json.as_deref(), &report, "bench")?;
    Ok(())
}

#[allow(clippy::too_many_arguments)] // one call site; the pieces of one run
async fn run(
    args: &Args,
    env: &Env,
    ns: &str,
    floor_ns: &str,
    sim_url: &str,
    sim: &SimHandle,
    op: &mut Operator,
    http: &reqwest::Client,
    concurrency: usize,
) -> anyhow::Result<Vec<Value>> {
    wait_operator_ready(op, http, Duration::from_secs(60)).await?;
    let subject = Subject::oauth_client();
    let params = args
        .latency
        .params(args.rollout.create_concurrency, "collibra-oauth-bench");
    let probe = OperatorProbe { op, http, sim };
    let mut run = Latency::start(&env.client, ns, &subject, &params, &probe).await?;
    let mut phases = Vec::new();
    for (idx, r) in args.latency.residents().into_iter().enumerate() {
        let load_start = load();
        run.ensure_resident(r).await?;
        let phase = run.run_samples(&format!("r{idx}")).await?;
        let post = SimPost::new(http.clone(), sim_url.to_owned(), format!("floor-r{idx}"));
        let floor = latency::measure_floor(
            &env.client,
            floor_ns,
            &subject,
            &post,
            args.latency.floor_samples,
            &latency::OPERATOR_SECRET_PATH,
            &latency::OPERATOR_READY_PATH,
        )
        .await?;
        let mut phase = latency::with_floors(phase, floor, &post, concurrency).await?;
        phase["requested_resident"] = json!(r);
        phase["load_start"] = json!(load_start);
        phase["load_end"] = json!(load());
        eprintln!(
            "bench latency: R={}: single Ready p50 {} p99 {} ms, floor {} ms",
            phase["resident"],
            phase["single"]["ready_ms"]["p50"],
            phase["single"]["ready_ms"]["p99"],
            phase["floor"]["ready_ms"]["p50"]
        );
        phases.push(phase);
    }
    Ok(phases)
}

//! Side-by-side rollout benchmark: ory/hydra-maester against
//! Ory Hydra, and this operator against the Collibra simulator with the
//! same latency and no rate limit, on one control plane in one invocation.
//!
//! For each configuration (each operator with its defaults and with its best
//! documented settings), in a namespace of its own and against a fresh
//! backend: N objects are created (server-side apply, 32 at a time) and it
//! measures the time until every Secret holds credentials, API-server
//! requests by verb (each operator's own client metrics), backend requests by
//! operation, peak RSS and CPU; then a steady window; then a restart with N
//! objects present (time from start to the first finished reconcile).
//!
//! `--mode latency` measures instead, per configuration, the time from an
//! object's create to its Secret with credentials and to `Ready=True`
//! (both operators write a Ready condition), with R objects resident, next
//! to the floor of each one's critical path (`latency.rs`).
//!
//! Build the peer first with `hack/peer/build.sh` (`make bench-peer` does).

mod hydra;
mod latency;
mod rollout;
mod subject;
mod table;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Parser;
use collibra_oauth_bench::{git_describe, load, meminfo_total, round3, sha256_of};
use collibra_sim::{Faults, SimConfig, Simulator};
use serde_json::{Value, json};
use test_support::{Env, Rbac};

use crate::{
    hydra::Hydra,
    rollout::{Backend, Rollout},
    subject::Kind,
};

#[derive(Parser, Debug)]
#[command(about = "Side-by-side rollout: hydra-maester + Ory Hydra vs this operator + simulator")]
struct Args {
    /// What to measure: the rollout of N objects, or apply-to-Ready
    /// latency (`latency`; --n and --steady do not apply).
    #[arg(long, value_enum, default_value_t = Mode::Rollout)]
    mode: Mode,
    #[command(flatten)]
    latency: collibra_oauth_bench::latency::LatencyArgs,
    /// Number of objects each configuration creates.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// The directory `hack/peer/build.sh` prints (hydra, hydra-maester, CRD).
    #[arg(long, env = "PEER_DIR")]
    peer_dir: PathBuf,
    /// This operator's binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/collibra-oauth-operator")]
    operator: PathBuf,
    /// Configurations to run, comma-separated, in this order.
    #[arg(long, default_value = "maester-default,maester-tuned,operator-default,operator-tuned",
          value_parser = subject::parse_list)]
    configs: subject::ConfigList,
    /// Steady-state window after convergence.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    steady: Duration,
    /// Simulator latency per request in ms (default: the median latency of
    /// a client registration in Hydra, measured at the start).
    #[arg(long)]
    latency_ms: Option<u64>,
    /// Objects created at once (server-side apply).
    #[arg(long, default_value_t = 32)]
    create_concurrency: usize,
    /// Longest wait for every Secret to hold credentials, per configuration
    /// (default: 300 s + 1 s per object).
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the operators' and Hydra's logs in this directory.
    #[arg(long)]
    logs: Option<PathBuf>,
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
    collibra_oauth_bench::run(bench(args))
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let hydra_bin = args.peer_dir.join("hydra");
    let maester_bin = args.peer_dir.join("hydra-maester");
    let maester_crd = args.peer_dir.join("hydra-maester-crd.yaml");
    let wants_operator = args.configs.0.iter().any(|c| c.kind == Kind::Operator);
    for p in [&hydra_bin, &maester_bin, &maester_crd] {
        if !p.exists() {
            bail!(
                "{} not found: --peer-dir must be the directory hack/peer/build.sh prints",
                p.display()
            );
        }
    }
    if wants_operator && !args.operator.exists() {
        bail!(
            "{} not found: run `cargo build --release` first (or pass --operator)",
            args.operator.display()
        );
    }
    if args.n == 0 {
        bail!("--n must be at least 1");
    }
    let began = Instant::now();
    let load_start = load();
    let logs = match &args.logs {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            None
        }
        None => Some(tempfile::tempdir()?),
    };
    let log_dir = args
        .logs
        .clone()
        .or_else(|| logs.as_ref().map(|d| d.path().to_path_buf()))
        .context("no log directory")?;
    eprintln!(
        "bench-peer: N={}, starting the control plane (load {load_start})",
        args.n
    );
    // The control plane with this operator's CRD and deploy/rbac.yaml.
    let env = Env::start_with(args.operator.clone(), Rbac::ClusterWide).await?;
    let result = run_all(
        &args,
        &env,
        &hydra_bin,
        &maester_bin,
        &maester_crd,
        &log_dir,
    )
    .await;
    env.stop()?;
    let mut report = result?;
    report["machine"] = json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "mem_total_kib": meminfo_total(),
        "load_start": load_start,
        "load_end": load(),
    });
    report["versions"] = json!({
        // Built from the module without version ldflags, so `hydra version`
        // says "master": the pin in hack/peer/build.sh is the version.
        "hydra": "github.com/ory/hydra/v2 v2.3.0",
        "hydra_maester_commit": "0493362896d5269d513f259580055931edca0147",
        // The checkout the benchmark ran from; the operator binary may be a
        // copy built earlier, so its own hash is recorded too.
        "repository_commit": git_describe(),
        "operator_sha256": sha256_of(&args.operator),
    });
    report["total_seconds"] = json!(round3(began.elapsed().as_secs_f64()));
    match args.mode {
        Mode::Rollout => table::print(&report),
        Mode::Latency => {
            for (name, run) in report["runs"].as_object().into_iter().flatten() {
                for phase in run["phases"].as_array().into_iter().flatten() {
                    collibra_oauth_bench::latency::print_phase(name, phase);
                }
            }
        }
    }
    collibra_oauth_bench::write_report(args.json.as_deref(), &report, "bench-peer")?;
    Ok(())
}

async fn run_all(
    args: &Args,
    env: &Env,
    hydra_bin: &Path,
    maester_bin: &Path,
    maester_crd: &Path,
    log_dir: &Path,
) -> anyhow::Result<Value> {
    let cp = &env.cp;
    cp.kubectl(&[
        "apply",
        "--server-side",
        "-f",
        &maester_crd.display().to_string(),
    ])
    .await?;
    cp.kubectl_with_stdin(
        &["apply", "--server-side", "-f", "-"],
        &subject::maester_rbac().to_string(),
    )
    .await?;
    cp.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/oauth2clients.hydra.ory.sh",
    ])
    .await?;
    let admin = &env.client;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;

    // The simulator gets Hydra's own latency, measured on a Hydra of its
    // own so the rollouts start from an empty one.
    let (latency_ms, measured) = match args.latency_ms {
        Some(ms) => (ms, Value::Null),
        None => {
            let probe = Hydra::start(hydra_bin, log_dir.join("hydra-probe.log"), &http).await?;
            // The first registrations warm Hydra up; measure after them.
            probe.register_latency_ms(&http, 10).await?;
            let ms = probe.register_latency_ms(&http, 50).await?;
            probe.stop().await?;
            eprintln!("bench-peer: Hydra registers a client in {ms:.1} ms (median of 50)");
            (ms.round().max(1.0) as u64, json!(round3(ms)))
        }
    };

    // The latency floor's objects: no configuration's objects live here.
    let floor_ns = cp.create_namespace("peer-floor").await?;
    let mut runs = serde_json::Map::new();
    for config in &args.configs.0 {
        eprintln!("bench-peer: === {} ===", config.name);
        let ns = cp.create_namespace(config.name).await?;
        let kubeconfig = log_dir.join(format!("{}.kubeconfig", config.name));
        cp.write_kubeconfig_as(&kubeconfig, subject::service_account(config.kind), &[])?;
        let (backend, url, port, post): (_, _, _, Box<dyn collibra_oauth_bench::latency::Backend>) =
            match config.kind {
                Kind::Maester => {
                    let h = Hydra::start(
                        hydra_bin,
                        log_dir.join(format!("{}-hydra.log", config.name)),
                        &http,
                    )
                    .await?;
                    let (url, port) = (h.admin_url(), h.admin_port());
                    let post = hydra::HydraPost {
                        http: http.clone(),
                        admin_url: url.clone(),
                        prefix: format!("{}-floor", config.name),
                    };
                    (Backend::Hydra(h), url, port, Box::new(post))
                }
                Kind::Operator => {
                    let sim = Simulator::start(SimConfig::default()).await?;
                    sim.handle().set_faults(Faults {
                        latency_ms,
                        ..Faults::default()
                    });
                    let url = sim.url();
                    let port = sim.addr().port();
                    let post = collibra_oauth_bench::latency::SimPost::new(
                        http.clone(),
                        url.clone(),
                        format!("{}-floor", config.name),
                    );
                    (Backend::Sim(sim), url, port, Box::new(post))
                }
            };
        let launch = subject::launch(config, &args.operator, maester_bin, &url, port, &ns);
        let rollout = Rollout {
            config: config.clone(),
            n: args.n,
            ns: ns.clone(),
            launch,
            kubeconfig,
            log: log_dir.join(format!("{}.log", config.name)),
            create_concurrency: args.create_concurrency.max(1),
            timeout: args
                .timeout
                .unwrap_or_else(|| Duration::from_secs(300 + args.n as u64)),
            steady: args.steady,
        };
        let load_before = load();
        let result = match args.mode {
            Mode::Rollout => rollout.run(admin, &http, &backend).await,
            Mode::Latency => {
                let run = latency::LatencyRun {
                    args: &args.latency,
                    floor_ns: &floor_ns,
                    post: post.as_ref(),
                };
                run.run(&rollout, admin, &http, &backend).await
            }
        };
        backend.stop().await?;
        let mut figures = result.with_context(|| format!("configuration {}", config.name))?;
        figures["load_start"] = json!(load_before);
        figures["load_end"] = json!(load());
        runs.insert(config.name.to_owned(), figures);
    }
    Ok(json!({
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "n": args.n,
        "steady_window_seconds": args.steady.as_secs_f64(),
        "simulator_latency_ms": latency_ms,
        "hydra_register_median_ms": measured,
        "create_concurrency": args.create_concurrency,
        "runs": runs,
    }))
}

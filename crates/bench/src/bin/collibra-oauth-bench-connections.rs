//! Connections at scale: N OAuthClients spread over C
//! connections, each connection its own Collibra simulator.
//!
//! Starts a real control plane (`test-control-plane`), C simulators in this
//! process (each on its own listener, with latency and a rate limit, like
//! `collibra-oauth-bench`), one more simulator as the operator's default
//! instance (`--collibra-url`, which no object uses), and the operator's
//! release binary as its own process with the RBAC of `deploy/rbac.yaml`,
//! watching one namespace. It creates C credential Secrets and C
//! connections (namespaced `CollibraConnection`s in the watched namespace by
//! default, allowed by `--namespaced-connection-hosts 127.0.0.1`; or
//! `ClusterCollibraConnection`s with `--kind cluster`), waits until all are
//! Connected, then creates N OAuthClients spread evenly over them
//! ([`collibra_oauth_bench::place`]: half the objects share a clientName
//! with an object of the next connection). It measures:
//!
//! 1. the rollout: time until all N are Ready and every Secret holds the
//!    credentials of the client in its own connection's instance; Collibra
//!    requests by operation per connection and in total (simulator stats);
//!    API-server requests by verb, in all and per object (the operator's
//!    `collibra_oauth_kubernetes_requests_total`); peak RSS and CPU seconds;
//! 2. that no registration happened twice: per instance, one client per
//!    name, exactly the names of its objects, as many 201s as clients, no
//!    register answered 400/409;
//! 3. steady-state windows of one resync period each (two by default)
//!    right after convergence:
//!    lists per connection (the bound: at most one per connection per
//!    resync period), other Collibra requests, API-server requests per
//!    minute, CPU.
//!
//! Prints a table and writes the figures as JSON (`--json`). Every process
//! it starts is killed on every exit path (kill-on-drop, and the control
//! plane stops when dropped).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use collibra_oauth_bench::{
    Metrics, Proc, RolloutArgs, Spread, counts, diff_counts, load, meminfo_total, place, ratios,
    round3, scrape, wait_operator_ready, watch_ready,
};
use collibra_oauth_operator::api::{
    OAuthClient,
    connection::{ClusterCollibraConnection, CollibraConnection},
};
use collibra_sim::{Faults, RateLimit, SimConfig, SimHandle, Simulator, Stats};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::{Value, json};
use test_support::{Env, Operator, Rbac};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// CollibraConnections in the watched namespace (the operator runs with
    /// `--namespaced-connection-hosts 127.0.0.1`).
    Namespaced,
    /// ClusterCollibraConnections, their Secrets in a namespace of their
    /// own (`--cluster-connections=true --cluster-connection-namespace`).
    Cluster,
}

#[derive(Parser, Debug)]
#[command(about = "N OAuthClients over C connections, each its own rate-limited simulator")]
struct Args {
    #[command(flatten)]
    rollout: RolloutArgs,
    /// Number of connections (and simulators).
    #[arg(long, default_value_t = 10)]
    connections: usize,
    /// Which kind of connection to create.
    #[arg(long, value_enum, default_value_t = Kind::Namespaced)]
    kind: Kind,
    /// Steady-state windows of one resync period each, one after the
    /// other (the first can still hold the status updates of the rollout's
    /// last counts); 0 skips them.
    #[arg(long, default_value_t = 2)]
    steady_windows: usize,
    /// Extra flags for `collibra-oauth-operator run` (after `--`).
    #[arg(last = true)]
    operator_args: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    collibra_oauth_bench::run(bench(args))
}

/// SIGTERM, then SIGKILL after this long.
const STOP_GRACE: Duration = Duration::from_secs(10);

const KUBE_REQUESTS: &str = "collibra_oauth_kubernetes_requests_total";

/// The connection `c`'s name (also its credentials Secret's).
fn connection_name(c: usize) -> String {
    format!("conn-{c:03}")
}

/// The objects' namespace, and where the connections' Secrets live.
struct Namespaces {
    objects: String,
    secrets: String,
}

/// Counters at one instant.
struct Snapshot {
    at: Instant,
    /// Per connection, then the default instance last.
    sims: Vec<Stats>,
    kube: BTreeMap<String, u64>,
    reconciles: f64,
    proc: Proc,
}

async fn snapshot(
    op: &Operator,
    http: &reqwest::Client,
    sims: &[SimHandle],
    default: &SimHandle,
) -> anyhow::Result<Snapshot> {
    let m: Metrics = scrape(op, http).await?;
    let mut stats: Vec<Stats> = sims.iter().map(SimHandle::stats).collect();
    stats.push(default.stats());
    Ok(Snapshot {
        at: Instant::now(),
        sims: stats,
        kube: counts(&m.by_label(KUBE_REQUESTS, "method")),
        reconciles: m.sum("collibra_oauth_reconciles_total"),
        proc: Proc::read(op.pid().context("the operator is not running")?)?,
    })
}

/// Requests (or responses) of one simulator between two snapshots.
fn sim_delta(a: &Stats, b: &Stats, responses: bool) -> BTreeMap<String, u64> {
    if responses {
        diff_counts(&a.responses, &b.responses)
    } else {
        diff_counts(&a.requests, &b.requests)
    }
}

/// Differences between two snapshots: totals, per connection, and the spread
/// of each operation over connections.
fn delta(a: &Snapshot, b: &Snapshot, connections: usize, n: usize) -> Value {
    let per_conn: Vec<BTreeMap<String, u64>> = (0..connections)
        .map(|c| sim_delta(&a.sims[c], &b.sims[c], false))
        .collect();
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    let mut responses: BTreeMap<String, u64> = BTreeMap::new();
    for (c, requests) in per_conn.iter().enumerate() {
        for (k, v) in requests {
            *total.entry(k.clone()).or_default() += v;
        }
        for (k, v) in sim_delta(&a.sims[c], &b.sims[c], true) {
            *responses.entry(k).or_default() += v;
        }
    }
    let ops: BTreeSet<&String> = per_conn.iter().flat_map(BTreeMap::keys).collect();
    let spread: BTreeMap<String, Spread> = ops
        .into_iter()
        .map(|op| {
            (
                op.clone(),
                Spread::of(per_conn.iter().map(|m| m.get(op).copied().unwrap_or(0))),
            )
        })
        .collect();
    let kube = diff_counts(&a.kube, &b.kube);
    let kube_total: u64 = kube.values().sum();
    json!({
        "seconds": round3(b.at.duration_since(a.at).as_secs_f64()),
        "collibra_requests": total,
        "collibra_responses": responses,
        "collibra_requests_per_connection_spread": spread,
        "collibra_requests_per_connection": per_conn
            .iter()
            .enumerate()
            .map(|(c, m)| (connection_name(c), json!(m)))
            .collect::<BTreeMap<_, _>>(),
        "default_instance_requests": sim_delta(&a.sims[connections], &b.sims[connections], false),
        "kubernetes_requests": kube,
        "kubernetes_requests_per_object": ratios(&kube, n as f64),
        "kubernetes_requests_per_object_total": round3(kube_total as f64 / (n.max(1)) as f64),
        "reconciles": b.reconciles - a.reconciles,
        "cpu_seconds": round3(b.proc.cpu_secs - a.proc.cpu_secs),
    })
}

/// One steady-state window: lists per connection, writes, requests per minute.
fn steady_window(a: &Snapshot, b: &Snapshot, connections: usize, n: usize) -> Value {
    let mut d = delta(a, b, connections, n);
    let minutes = b.at.duration_since(a.at).as_secs_f64() / 60.0;
    let lists: Vec<u64> = (0..connections)
        .map(|k| b.sims[k].requests_for("list") - a.sims[k].requests_for("list"))
        .collect();
    let writes: u64 = (0..connections)
        .map(|k| {
            ["register", "update", "delete"]
                .iter()
                .map(|op| b.sims[k].requests_for(op) - a.sims[k].requests_for(op))
                .sum::<u64>()
        })
        .sum();
    let kube = diff_counts(&a.kube, &b.kube);
    d["kubernetes_per_minute"] = json!(ratios(&kube, minutes));
    d["lists_per_connection"] = json!(Spread::of(lists.iter().copied()));
    d["connections_over_one_list"] = json!(lists.iter().filter(|l| **l > 1).count());
    d["connections_without_list"] = json!(lists.iter().filter(|l| **l == 0).count());
    d["collibra_writes"] = json!(writes);
    d["cpu_seconds_per_minute"] = json!(round3((b.proc.cpu_secs - a.proc.cpu_secs) / minutes));
    d
}

async fn bench(args: Args) -> anyhow::Result<()> {
    if !args.rollout.operator.exists() {
        bail!(
            "{} not found: run `cargo build --release` first (or pass --operator)",
            args.rollout.operator.display()
        );
    }
    let (n, c) = (args.rollout.n, args.connections);
    let began = Instant::now();
    let load_start = load();
    eprintln!(
        "bench-connections: N={n}, C={c} ({:?}), starting the control plane (load {load_start})",
        args.kind
    );
    let env = Env::start_with(args.rollout.operator.clone(), Rbac::ClusterWide).await?;
    let dir = tempfile::tempdir()?;
    let ns = env.cp.create_namespace("bench").await?;
    let namespaces = Namespaces {
        secrets: match args.kind {
            Kind::Namespaced => ns.clone(),
            Kind::Cluster => env.cp.create_namespace("bench-conns").await?,
        },
        objects: ns.clone(),
    };

    let faults = Faults {
        latency_ms: args.rollout.latency_ms,
        rate_limit: Some(RateLimit {
            requests_per_second: args.rollout.rate_limit,
            retry_after_secs: Some(1),
        }),
        ..Faults::default()
    };
    let default_sim = Simulator::start(SimConfig::default()).await?;
    let mut sims = Vec::with_capacity(c);
    for _ in 0..c {
        let s = Simulator::start(SimConfig::default()).await?;
        s.handle().set_faults(faults.clone());
        sims.push(s);
    }

    let mut op_args = vec![
        "--collibra-url".to_owned(),
        default_sim.url(),
        "--watch-namespaces".to_owned(),
        ns.clone(),
        "--resync-interval".to_owned(),
        humantime::format_duration(args.rollout.resync).to_string(),
    ];
    match args.kind {
        Kind::Namespaced => op_args.extend([
            "--namespaced-connection-hosts".to_owned(),
            "127.0.0.1".to_owned(),
        ]),
        Kind::Cluster => op_args.extend([
            "--cluster-connections=true".to_owned(),
            "--cluster-connection-namespace".to_owned(),
            namespaces.secrets.clone(),
        ]),
    }
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
        run_phases(
            &args,
            &env.client,
            &namespaces,
            &sims,
            &default_sim,
            op,
            &http,
        )
        .await
    }
    .await;
    if let Some(to) = &args.rollout.log {
        let _ = std::fs::copy(&log, to);
    }
    for s in sims {
        s.shutdown().await;
    }
    default_sim.shutdown().await;
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
            } else if a == &namespaces.secrets {
                "<secrets-ns>".to_owned()
            } else {
                a.clone()
            })
            .collect::<Vec<_>>()
    );
    report["total_seconds"] = json!(round3(began.elapsed().as_secs_f64()));
    print_table(&report);
    collibra_oauth_bench::write_report(args.rollout.json.as_deref(), &report, "bench-connections")?;
    Ok(())
}

/// Creates the C credential Secrets and connections, and waits until every
/// connection is Ready. Returns how long that took.
async fn create_connections(
    args: &Args,
    admin: &Client,
    namespaces: &Namespaces,
    sims: &[Simulator],
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespaces.secrets);
    let ssa = PatchParams::apply("collibra-oauth-bench").force();
    let (kind, conn_api): (&str, Api<kube::api::DynamicObject>) = match args.kind {
        Kind::Namespaced => (
            "CollibraConnection",
            Api::namespaced_with(
                admin.clone(),
                &namespaces.objects,
                &kube::api::ApiResource::erase::<CollibraConnection>(&()),
            ),
        ),
        Kind::Cluster => (
            "ClusterCollibraConnection",
            Api::all_with(
                admin.clone(),
                &kube::api::ApiResource::erase::<ClusterCollibraConnection>(&()),
            ),
        ),
    };
    futures::stream::iter(sims.iter().enumerate())
        .map(|(i, sim)| {
            let (secrets, conn_api, ssa) = (secrets.clone(), conn_api.clone(), ssa.clone());
            let name = connection_name(i);
            let secret = json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": { "name": name },
                "stringData": { "client_id": "operator", "client_secret": "operator-secret" },
            });
            let conn = json!({
                "apiVersion": "oauth.collibra.dev/v1alpha1",
                "kind": kind,
                "metadata": { "name": name },
                "spec": {
                    "url": sim.url(),
                    "auth": { "type": "oauth", "secretName": name },
                    "rateLimit": f64::from(args.rollout.rate_limit),
                },
            });
            async move {
                secrets.patch(&name, &ssa, &Patch::Apply(&secret)).await?;
                conn_api.patch(&name, &ssa, &Patch::Apply(&conn)).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.rollout.create_concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    let deadline = t0 + Duration::from_secs(120) + Duration::from_millis(200 * sims.len() as u64);
    loop {
        let ready = connections_ready(admin, args.kind, &namespaces.objects).await?;
        if ready >= sims.len() {
            return Ok(t0.elapsed());
        }
        if Instant::now() > deadline {
            bail!(
                "only {ready} of {} connections Ready after {:?}",
                sims.len(),
                t0.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How many connections of the kind have `Ready=True`.
async fn connections_ready(admin: &Client, kind: Kind, ns: &str) -> anyhow::Result<usize> {
    let ready =
        |conditions: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>| {
            conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
    Ok(match kind {
        Kind::Namespaced => {
            let api: Api<CollibraConnection> = Api::namespaced(admin.clone(), ns);
            api.list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|o| ready(o.status.as_ref().map(|s| &s.conditions)))
                .count()
        }
        Kind::Cluster => {
            let api: Api<ClusterCollibraConnection> = Api::all(admin.clone());
            api.list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|o| ready(o.status.as_ref().map(|s| &s.conditions)))
                .count()
        }
    })
}

/// The OAuthClient manifest of object `i`.
fn object(i: usize, connections: usize, kind: Kind) -> (String, Value) {
    let name = format!("bench-{i:05}");
    let p = place(i, connections);
    let kind = match kind {
        Kind::Namespaced => "CollibraConnection",
        Kind::Cluster => "ClusterCollibraConnection",
    };
    let obj = json!({
        "apiVersion": "oauth.collibra.dev/v1alpha1",
        "kind": "OAuthClient",
        "metadata": { "name": name },
        "spec": {
            "clientName": p.client_name,
            "connectionRef": { "kind": kind, "name": connection_name(p.connection) },
        },
    });
    (name, obj)
}

/// What the instances and the Secrets hold after the rollout.
#[derive(Default)]
struct Audit {
    /// Objects whose Secret holds the client_id and client_secret of the
    /// client of their name in their own connection's instance.
    verified: usize,
    /// Problems found (the first few are reported).
    failures: Vec<String>,
    /// Clients in all instances.
    clients: usize,
    /// Names registered more than once in one instance.
    duplicate_names: usize,
    /// 201s to registrations, in all instances.
    registered_201: u64,
    /// Registrations answered 400 or 409 (a name that existed).
    refused: u64,
}

async fn audit(admin: &Client, ns: &str, n: usize, sims: &[Simulator]) -> anyhow::Result<Audit> {
    let c = sims.len();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), ns);
    let mut by_name: HashMap<String, (String, String)> = HashMap::new();
    let mut continue_token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(t) = &continue_token {
            lp = lp.continue_token(t);
        }
        let page = secrets.list(&lp).await?;
        for s in page.items {
            let data = s.data.unwrap_or_default();
            let get = |k: &str| {
                data.get(k)
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                    .unwrap_or_default()
            };
            by_name.insert(
                s.metadata.name.unwrap_or_default(),
                (get("client_id"), get("client_secret")),
            );
        }
        continue_token = page.metadata.continue_.filter(|t| !t.is_empty());
        if continue_token.is_none() {
            break;
        }
    }
    let mut a = Audit::default();
    let mut expected: Vec<BTreeSet<String>> = vec![BTreeSet::new(); c];
    let clients: Vec<HashMap<String, (String, String)>> = sims
        .iter()
        .map(|s| {
            s.handle()
                .clients()
                .into_iter()
                .map(|r| (r.client_name, (r.client_id, r.client_secret)))
                .collect()
        })
        .collect();
    for (k, s) in sims.iter().enumerate() {
        let records = s.handle().clients();
        let names: BTreeSet<&str> = records.iter().map(|r| r.client_name.as_str()).collect();
        a.clients += records.len();
        a.duplicate_names += records.len() - names.len();
        let stats = s.handle().stats();
        a.registered_201 += stats.responses_for("register", "201");
        a.refused +=
            stats.responses_for("register", "400") + stats.responses_for("register", "409");
        if stats.responses_for("register", "201") != records.len() as u64 {
            a.failures.push(format!(
                "{}: {} registrations answered 201, {} clients",
                connection_name(k),
                stats.responses_for("register", "201"),
                records.len()
            ));
        }
    }
    for i in 0..n {
        let (name, _) = object(i, c, Kind::Namespaced);
        let p = place(i, c);
        expected[p.connection].insert(p.client_name.clone());
        let Some(held) = by_name.get(&name) else {
            a.failures.push(format!("{name}: no Secret"));
            continue;
        };
        match clients[p.connection].get(&p.client_name) {
            Some(client) if client == held => a.verified += 1,
            Some(_) => a.failures.push(format!(
                "{name}: its Secret does not hold {}'s client {}",
                connection_name(p.connection),
                p.client_name
            )),
            None => a.failures.push(format!(
                "{name}: no client {} in {}",
                p.client_name,
                connection_name(p.connection)
            )),
        }
    }
    for (k, names) in expected.iter().enumerate() {
        let have: BTreeSet<String> = clients[k].keys().cloned().collect();
        if &have != names {
            a.failures.push(format!(
                "{}: {} clients, {} expected names, {} unexpected",
                connection_name(k),
                have.len(),
                names.len(),
                have.difference(names).count()
            ));
        }
    }
    Ok(a)
}

async fn run_phases(
    args: &Args,
    admin: &Client,
    namespaces: &Namespaces,
    sims: &[Simulator],
    default_sim: &Simulator,
    mut op: Operator,
    http: &reqwest::Client,
) -> anyhow::Result<Value> {
    let (n, c) = (args.rollout.n, args.connections);
    let ns = &namespaces.objects;
    let handles: Vec<SimHandle> = sims.iter().map(Simulator::handle).collect();
    let default = default_sim.handle();
    wait_operator_ready(&mut op, http, Duration::from_secs(60)).await?;

    // Connections.
    let sc = snapshot(&op, http, &handles, &default).await?;
    eprintln!("bench-connections: creating {c} connections");
    let connected_in = create_connections(args, admin, namespaces, sims).await?;
    eprintln!(
        "bench-connections: {c} connections Ready after {:.1}s",
        connected_in.as_secs_f64()
    );
    let s0 = snapshot(&op, http, &handles, &default).await?;
    let setup = delta(&sc, &s0, c, c);

    // Rollout.
    let api: Api<OAuthClient> = Api::namespaced(admin.clone(), ns);
    let mut ready = watch_ready(api.clone());
    let t0 = Instant::now();
    eprintln!("bench-connections: creating {n} OAuthClients over {c} connections");
    let kind = args.kind;
    let created_in = {
        let api = api.clone();
        futures::stream::iter(0..n)
            .map(|i| {
                let api = api.clone();
                async move {
                    let (name, obj) = object(i, c, kind);
                    api.patch(
                        &name,
                        &PatchParams::apply("collibra-oauth-bench").force(),
                        &Patch::Apply(&obj),
                    )
                    .await
                    .map(|_| ())
                }
            })
            .buffer_unordered(args.rollout.create_concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        t0.elapsed()
    };
    eprintln!(
        "bench-connections: created in {:.1}s",
        created_in.as_secs_f64()
    );
    let timeout = args
        .rollout
        .timeout
        .unwrap_or_else(|| Duration::from_secs_f64(10.0 * n as f64 / 50.0 + 120.0));
    let deadline = t0 + timeout;
    let mut last_print = Instant::now();
    loop {
        if *ready.borrow_and_update() >= n {
            break;
        }
        if op.exited() {
            bail!("the operator exited; log: {}", op.log_path().display());
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
            let registered: u64 = handles
                .iter()
                .map(|h| h.stats().requests_for("register"))
                .sum();
            let limited: u64 = handles.iter().map(|h| h.stats().faults_for("429")).sum();
            eprintln!(
                "bench-connections: {:>6.1}s ready {}/{n}, Collibra register {registered} (429s {limited}), load {}",
                t0.elapsed().as_secs_f64(),
                *ready.borrow(),
                load()
            );
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), ready.changed()).await;
    }
    let all_ready = t0.elapsed();
    eprintln!(
        "bench-connections: all {n} Ready after {:.1}s; checking Secrets and instances",
        all_ready.as_secs_f64()
    );
    // Ready is written after the credentials; the Secrets are checked until
    // every one holds its own instance's client (or a minute has passed).
    let audit_deadline = Instant::now() + Duration::from_secs(60);
    let (checked, converge) = loop {
        let a = audit(admin, ns, n, sims).await?;
        if a.verified >= n || Instant::now() > audit_deadline {
            break (a, t0.elapsed());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let s1 = snapshot(&op, http, &handles, &default).await?;
    let rollout = delta(&s0, &s1, c, n);

    // Steady state: resync periods right after convergence.
    let mut windows = Vec::new();
    let mut prev = s1;
    for w in 0..args.steady_windows {
        eprintln!(
            "bench-connections: steady-state window {} of {:?}",
            w + 1,
            args.rollout.resync
        );
        tokio::time::sleep(args.rollout.resync).await;
        let next = snapshot(&op, http, &handles, &default).await?;
        windows.push(steady_window(&prev, &next, c, n));
        prev = next;
    }
    let steady = windows.first().cloned().unwrap_or(Value::Null);
    let proc_end = Proc::read(op.pid().context("the operator is not running")?)?;
    op.stop(STOP_GRACE).await?;

    let steady_met = (!windows.is_empty()).then(|| {
        windows.iter().all(|w| {
            w["lists_per_connection"]["max"]
                .as_u64()
                .unwrap_or(u64::MAX)
                <= 1
                && w["collibra_writes"].as_u64() == Some(0)
        })
    });
    Ok(json!({
        "n": n,
        "connections": c,
        "kind": format!("{:?}", args.kind),
        "resync_seconds": args.rollout.resync.as_secs_f64(),
        "rate_limit_per_second_per_connection": args.rollout.rate_limit,
        "latency_ms": args.rollout.latency_ms,
        "connections_ready_seconds": round3(connected_in.as_secs_f64()),
        "connection_setup": setup,
        "create_seconds": round3(created_in.as_secs_f64()),
        "all_ready_seconds": round3(all_ready.as_secs_f64()),
        "converge_seconds": round3(converge.as_secs_f64()),
        "physical_limit_seconds": round3(n as f64 / (f64::from(args.rollout.rate_limit) * c as f64)),
        "rollout": rollout,
        "audit": {
            "secrets_verified": checked.verified,
            "clients": checked.clients,
            "duplicate_names": checked.duplicate_names,
            "registered_201": checked.registered_201,
            "registers_refused_400_409": checked.refused,
            "failures": checked.failures.len(),
            "first_failures": checked.failures.iter().take(20).collect::<Vec<_>>(),
        },
        "peak_rss_mib": round3(proc_end.hwm_kib as f64 / 1024.0),
        "rss_mib_end": round3(proc_end.rss_kib as f64 / 1024.0),
        "cpu_seconds_total": round3(proc_end.cpu_secs),
        "steady": steady,
        "steady_windows": windows,
        "targets": {
            "converged": checked.verified == n,
            "no_registration_twice": checked.duplicate_names == 0
                && checked.refused == 0
                && checked.registered_201 == checked.clients as u64,
            "steady_met": steady_met,
            "peak_rss_ratio_to_64mib": round3(proc_end.hwm_kib as f64 / 1024.0 / 64.0),
        },
    }))
}

fn print_table(r: &Value) {
    let row = |k: &str, v: String| println!("| {k:<48} | {v:>40} |");
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
    let spread = |v: &Value| match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(op, x)| format!("{op} {}..{}", x["min"], x["max"]))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "0".to_owned(),
    };
    println!("| {:<48} | {:>40} |", "figure", "value");
    println!("|{}|{}|", "-".repeat(50), "-".repeat(42));
    row(
        "N / connections / kind",
        format!(
            "{} / {} / {}",
            r["n"],
            r["connections"],
            r["kind"].as_str().unwrap_or("")
        ),
    );
    row(
        "machine cpus / load start / load end",
        format!(
            "{} / {} / {}",
            s(&r["machine"]["cpus"]),
            r["machine"]["load_start"].as_str().unwrap_or(""),
            r["machine"]["load_end"].as_str().unwrap_or("")
        ),
    );
    row("connections Ready (s)", s(&r["connections_ready_seconds"]));
    row(
        "connection setup: Collibra requests",
        s(&r["connection_setup"]["collibra_requests"]),
    );
    row(
        "connection setup: API-server requests",
        s(&r["connection_setup"]["kubernetes_requests"]),
    );
    row("create N objects (s)", s(&r["create_seconds"]));
    row("all Ready (s)", s(&r["all_ready_seconds"]));
    row("converge: Secrets verified (s)", s(&r["converge_seconds"]));
    row(
        "physical limit N / (rate x C) (s)",
        s(&r["physical_limit_seconds"]),
    );
    row(
        "Secrets verified / clients / duplicates",
        format!(
            "{} / {} / {}",
            r["audit"]["secrets_verified"], r["audit"]["clients"], r["audit"]["duplicate_names"]
        ),
    );
    row(
        "registers 201 / refused (400, 409) / failures",
        format!(
            "{} / {} / {}",
            r["audit"]["registered_201"],
            r["audit"]["registers_refused_400_409"],
            r["audit"]["failures"]
        ),
    );
    row(
        "rollout Collibra requests (total)",
        s(&r["rollout"]["collibra_requests"]),
    );
    row(
        "rollout Collibra requests per connection",
        spread(&r["rollout"]["collibra_requests_per_connection_spread"]),
    );
    row(
        "rollout Collibra responses",
        s(&r["rollout"]["collibra_responses"]),
    );
    row(
        "rollout default instance requests",
        s(&r["rollout"]["default_instance_requests"]),
    );
    row(
        "rollout API-server requests",
        s(&r["rollout"]["kubernetes_requests"]),
    );
    row(
        "rollout API-server requests per object",
        format!(
            "{} ({})",
            s(&r["rollout"]["kubernetes_requests_per_object"]),
            r["rollout"]["kubernetes_requests_per_object_total"]
        ),
    );
    row("rollout reconciles", s(&r["rollout"]["reconciles"]));
    row("rollout CPU seconds", s(&r["rollout"]["cpu_seconds"]));
    row("peak RSS (MiB)", s(&r["peak_rss_mib"]));
    row(
        "CPU seconds (start to end of steady)",
        s(&r["cpu_seconds_total"]),
    );
    row("steady window (s)", s(&r["steady"]["seconds"]));
    row(
        "steady lists per connection (bound <= 1)",
        s(&r["steady"]["lists_per_connection"]),
    );
    row(
        "steady Collibra requests (total)",
        s(&r["steady"]["collibra_requests"]),
    );
    row(
        "steady API-server requests / min",
        s(&r["steady"]["kubernetes_per_minute"]),
    );
    row("steady reconciles", s(&r["steady"]["reconciles"]));
    row(
        "steady CPU seconds / min",
        s(&r["steady"]["cpu_seconds_per_minute"]),
    );
    let second = &r["steady_windows"][1];
    row(
        "2nd window: lists per connection",
        s(&second["lists_per_connection"]),
    );
    row(
        "2nd window: API-server requests / min",
        s(&second["kubernetes_per_minute"]),
    );
    row(
        "2nd window: Collibra requests (total)",
        s(&second["collibra_requests"]),
    );
    row(
        "steady met (<= 1 list per connection, no writes)",
        s(&r["targets"]["steady_met"]),
    );
}

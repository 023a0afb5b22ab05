//! Faults on the node during a rollout: the chart's
//! Deployment with two replicas and leader election registers OAuthClients
//! while, round after round, the leader's container is SIGKILLed through
//! containerd, the leader Pod is deleted, the node's kubelet and containerd
//! are restarted, the leader Pod's traffic to Collibra is cut in the node's
//! network namespace, and `helm upgrade` rolls the Deployment with a
//! changed value.
//!
//! The test has a simulator of its own (exposed on the node), which holds
//! each registration's 201 for a second after committing it, as the crash
//! suite's does (400 ms there): the container kill and the cut are aimed at the moment a
//! commit is announced, so a secret dies in flight. Collibra supports
//! DELETE, so every such secret must be recovered (the client deleted and
//! registered again), exactly as `crash_rounds_lose_nothing_with_delete`
//! requires of a host process.
//!
//! After each fault and at the end: every applied object Ready with the
//! credentials of its Collibra client in its Secret (the simulator accepts
//! them; a sample, and at the end all, through the token endpoint), exactly
//! one client per name, no client without a Secret, and no POST of a name
//! Collibra already listed (the simulator answers those 400).
//!
//! Sizes: 24 objects and one round of each fault (`make test`, `make node`);
//! `RELIABILITY_FULL=1` (`make reliability-node`): 200 objects, 3 rounds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use collibra_sim::{Faults, SimConfig, SimHandle, Simulator};
use serde_json::Value;
use test_support::{tail, token_accepted, tooling};
use tokio::sync::broadcast::error::TryRecvError;

use super::{RELEASE, WAIT, World, eventually};

test_support::tests!(
    World;
    node_faults_during_a_rollout_lose_and_duplicate_nothing,
);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    KillLeaderContainer,
    DeleteLeaderPod,
    RestartKubeletAndContainerd,
    CutLeaderFromCollibra,
    HelmUpgrade,
}

impl Fault {
    const ALL: [Fault; 5] = [
        Fault::KillLeaderContainer,
        Fault::DeleteLeaderPod,
        Fault::RestartKubeletAndContainerd,
        Fault::CutLeaderFromCollibra,
        Fault::HelmUpgrade,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::KillLeaderContainer => "kill-container",
            Fault::DeleteLeaderPod => "delete-pod",
            Fault::RestartKubeletAndContainerd => "restart-kubelet-containerd",
            Fault::CutLeaderFromCollibra => "cut-collibra",
            Fault::HelmUpgrade => "helm-upgrade",
        }
    }

    /// Whether it is aimed at a registration's commit (the secret is then
    /// in flight: committed in Collibra, not yet in the Secret).
    fn targeted(self) -> bool {
        matches!(
            self,
            Fault::KillLeaderContainer | Fault::CutLeaderFromCollibra
        )
    }
}

fn full() -> bool {
    std::env::var("RELIABILITY_FULL").is_ok_and(|v| v == "1" || v == "true")
}

/// What one fault did, for the report.
struct Round {
    fault: Fault,
    /// The fault itself (a kill returns at once; the cut lasts its time).
    took: Duration,
    /// From the fault until every applied object was Ready again.
    converged: Duration,
    /// From the fault until the Deployment was rolled out again.
    rolled_out: Duration,
    /// A commit was announced and the fault landed on it.
    on_commit: bool,
    /// Clients without a Secret seen right after the fault (their secret
    /// died in flight).
    lost_now: usize,
}

async fn node_faults_during_a_rollout_lose_and_duplicate_nothing(
    w: Arc<World>,
) -> anyhow::Result<()> {
    let (objects, rounds, cut) = if full() {
        (200, 3, Duration::from_secs(40))
    } else {
        (24, 1, Duration::from_secs(12))
    };
    let began = Instant::now();
    let sim = Simulator::start(SimConfig::default()).await?;
    let collibra = sim.handle();
    let port = sim.addr().port();
    let on_node = w.node.expose_host_port(port)?;
    let ns = w.namespace("faults", "operator-secret").await?;
    let result = run(&w, &ns, &sim, &collibra, on_node, objects, rounds, cut).await;
    let outcome = match result {
        Ok(rounds) => {
            report(&rounds, objects, &collibra, began.elapsed());
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("{e:#}\n{}", w.diagnose(&ns).await)),
    };
    let _ = w
        .helm(&["uninstall", RELEASE, "--namespace", &ns, "--wait"])
        .await;
    sim.shutdown().await;
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn run(
    w: &World,
    ns: &str,
    sim: &Simulator,
    collibra: &SimHandle,
    on_node: std::net::SocketAddr,
    objects: usize,
    rounds: usize,
    cut: Duration,
) -> anyhow::Result<Vec<Round>> {
    let url = format!("collibra.url=http://{on_node}");
    let installed = Instant::now();
    // A request timeout shorter than the cut: a registration whose answer
    // the cut holds ends as an unknown outcome, which the operator must
    // settle from the list (and recover), rather than arrive late.
    w.install(
        ns,
        &[
            "--set",
            "replicas=2",
            "--set",
            &url,
            "--set",
            "collibra.timeout=5s",
        ],
    )
    .await?;
    eprintln!(
        "node faults: installed with 2 replicas in {:?}",
        installed.elapsed()
    );
    collibra.set_faults(Faults {
        latency_ms: 5,
        latency_jitter_ms: 30,
        register_response_delay_ms: 1000,
        ..Faults::default()
    });
    let mut announced = collibra.on_register();
    let faults = rounds * Fault::ALL.len();
    let per_fault = objects.div_ceil(faults);
    let mut applied = 0;
    let mut done = Vec::new();
    let mut lost_in_flight: BTreeSet<String> = BTreeSet::new();
    let mut upgrades = 0;
    for round in 0..rounds {
        for fault in Fault::ALL {
            // Whom the fault hits is looked up before the batch goes in,
            // so that a targeted fault lands within the second a 201 is
            // held back.
            let leader = current_leader(w, ns).await?;
            let target = match fault {
                Fault::KillLeaderContainer => {
                    pod_field(w, ns, &leader, "{.status.containerStatuses[0].containerID}").await?
                }
                Fault::CutLeaderFromCollibra => {
                    pod_field(w, ns, &leader, "{.status.podIP}").await?
                }
                _ => String::new(),
            };
            while let Ok(_) | Err(TryRecvError::Lagged(_)) = announced.try_recv() {}
            let upto = (applied + per_fault).min(objects);
            apply(w, ns, applied..upto).await?;
            applied = upto;
            let mut on_commit = false;
            if fault.targeted() {
                on_commit = matches!(
                    tokio::time::timeout(Duration::from_secs(10), announced.recv()).await,
                    Ok(Ok(_))
                );
            } else {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let started = Instant::now();
            let mut lost_now = BTreeSet::new();
            match fault {
                Fault::KillLeaderContainer => {
                    w.node.kill_container(&target).await?;
                    // Let writes already sent land, then see which secrets
                    // died with the process (as the crash suite does).
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    lost_now = clients_without_secret(w, ns, collibra).await?;
                }
                Fault::DeleteLeaderPod => {
                    w.kubectl(&["delete", "pod", &leader, "--namespace", ns, "--wait=false"])
                        .await?;
                }
                Fault::RestartKubeletAndContainerd => {
                    let t = w.node.restart_kubelet_and_containerd(&w.cp).await?;
                    eprintln!("node faults: kubelet and containerd restarted: {t:?}");
                }
                Fault::CutLeaderFromCollibra => {
                    w.node.cut_tcp(&target, port_of(on_node)).await?;
                    tokio::time::sleep(cut).await;
                    // Before healing: registrations whose answer the cut
                    // holds (TCP may still deliver it after the heal, if
                    // the operator has not given up on it by then).
                    let seen = clients_without_secret(w, ns, collibra).await;
                    w.node.heal_tcp(&target, port_of(on_node)).await?;
                    lost_now = seen?;
                }
                Fault::HelmUpgrade => {
                    upgrades += 1;
                    // A changed value that changes the Pod template.
                    let concurrency =
                        format!("concurrency={}", if upgrades % 2 == 1 { 8 } else { 16 });
                    let chart = tooling::chart();
                    let chart = chart.to_str().context("non-UTF-8 chart path")?;
                    w.helm(&[
                        "upgrade",
                        RELEASE,
                        chart,
                        "--namespace",
                        ns,
                        "--reuse-values",
                        "--set",
                        &concurrency,
                    ])
                    .await?;
                }
            }
            let took = started.elapsed();
            lost_in_flight.extend(lost_now.iter().cloned());
            wait_all_ready(w, ns, applied).await?;
            let converged = started.elapsed();
            w.rollout(ns).await?;
            let rolled_out = started.elapsed();
            check(w, ns, collibra, &sim.url(), applied, 3)
                .await
                .with_context(|| format!("after round {} fault {}", round + 1, fault.name()))?;
            eprintln!(
                "NODE-FAULTS round={} fault={} objects={applied} on_commit={on_commit} took_secs={:.1} converged_secs={:.1} rolled_out_secs={:.1} lost_in_flight_now={}",
                round + 1,
                fault.name(),
                took.as_secs_f64(),
                converged.as_secs_f64(),
                rolled_out.as_secs_f64(),
                lost_now.len()
            );
            done.push(Round {
                fault,
                took,
                converged,
                rolled_out,
                on_commit,
                lost_now: lost_now.len(),
            });
        }
    }
    if applied < objects {
        apply(w, ns, applied..objects).await?;
        applied = objects;
    }
    wait_all_ready(w, ns, applied).await?;
    // Everything through the token endpoint at the end.
    check(w, ns, collibra, &sim.url(), applied, applied).await?;
    // Each secret seen missing right after a fault was either lost and
    // recovered (the operator deleted that client and registered the name
    // again) or only late (the cut delayed its answer, and it reached the
    // Secret). A client still without a Secret would have failed `check`.
    let now: BTreeSet<String> = collibra
        .clients()
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    let held: BTreeSet<String> = credentials(w, ns)
        .await?
        .into_values()
        .map(|(id, _)| id)
        .collect();
    let recovered = lost_in_flight
        .iter()
        .filter(|id| !now.contains(*id))
        .count();
    let late = lost_in_flight
        .iter()
        .filter(|id| held.contains(*id))
        .count();
    ensure!(
        recovered + late == lost_in_flight.len(),
        "of {} secrets missing after a fault, {recovered} were recovered and {late} arrived late",
        lost_in_flight.len()
    );
    eprintln!(
        "NODE-FAULTS secrets_missing_after_a_fault={} recovered={recovered} arrived_late={late} lost=0",
        lost_in_flight.len()
    );
    Ok(done)
}

/// The Lease holder, once it is one of the Deployment's running, Ready
/// pods (after a rollout the Lease may still name a pod that is gone until
/// a new one takes it).
async fn current_leader(w: &World, ns: &str) -> anyhow::Result<String> {
    eventually("a leader among the running pods", || async {
        let leader = w.leader(ns).await?;
        let pods = w.pods(ns).await?;
        Ok(pods
            .iter()
            .any(|p| p.name == leader && p.ready)
            .then_some(leader))
    })
    .await
}

fn port_of(addr: std::net::SocketAddr) -> u16 {
    addr.port()
}

fn object_name(i: usize) -> String {
    format!("f-{i:04}")
}

/// Applies objects `range`; clientNames carry the namespace, so they are
/// unique on the shared node.
async fn apply(w: &World, ns: &str, range: std::ops::Range<usize>) -> anyhow::Result<()> {
    if range.is_empty() {
        return Ok(());
    }
    let yaml = range
        .map(|i| {
            let n = object_name(i);
            format!(
                "apiVersion: oauth.collibra.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: {n}\nspec:\n  clientName: {ns}-{n}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match w
            .cp
            .kubectl_with_stdin(&["apply", "--namespace", ns, "-f", "-"], &yaml)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                eprintln!("apply failed, retrying: {e:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn pod_field(w: &World, ns: &str, pod: &str, jsonpath: &str) -> anyhow::Result<String> {
    let v = w
        .kubectl(&[
            "get",
            "pod",
            pod,
            "--namespace",
            ns,
            "-o",
            &format!("jsonpath={jsonpath}"),
        ])
        .await?;
    let v = v.trim().to_owned();
    ensure!(!v.is_empty(), "pod {pod} has no {jsonpath}");
    Ok(v)
}

async fn list_json(w: &World, ns: &str, kind: &str) -> anyhow::Result<Vec<Value>> {
    let text = w
        .kubectl(&["get", kind, "--namespace", ns, "-o", "json"])
        .await?;
    let v: Value = serde_json::from_str(&text)?;
    Ok(v["items"].as_array().cloned().unwrap_or_default())
}

/// Secret name -> (client_id, client_secret) of every Secret holding both.
async fn credentials(w: &World, ns: &str) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let mut out = BTreeMap::new();
    for s in list_json(w, ns, "secrets").await? {
        let key = |k: &str| -> Option<String> {
            let b64 = s["data"][k].as_str()?;
            String::from_utf8(tooling::base64_decode(b64).ok()?).ok()
        };
        if let (Some(id), Some(secret)) = (key("client_id"), key("client_secret")) {
            let name = s["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            out.insert(name, (id, secret));
        }
    }
    Ok(out)
}

/// Client ids of this namespace's names that no Secret holds.
async fn clients_without_secret(
    w: &World,
    ns: &str,
    collibra: &SimHandle,
) -> anyhow::Result<BTreeSet<String>> {
    let held: BTreeSet<String> = credentials(w, ns)
        .await?
        .into_values()
        .map(|(id, _)| id)
        .collect();
    Ok(collibra
        .clients()
        .into_iter()
        .filter(|c| c.client_name.starts_with(&format!("{ns}-")) && !held.contains(&c.client_id))
        .map(|c| c.client_id)
        .collect())
}

fn ready_reason(o: &Value) -> Option<String> {
    o["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["reason"].as_str())
        .map(str::to_owned)
}

/// Waits until `n` objects exist and all are Registered at their current
/// generation.
async fn wait_all_ready(w: &World, ns: &str, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let last = match list_json(w, ns, "oauthclients").await {
            Ok(objs) => {
                let pending: Vec<String> = objs
                    .iter()
                    .filter(|o| {
                        ready_reason(o).as_deref() != Some("Registered")
                            || o["status"]["observedGeneration"] != o["metadata"]["generation"]
                    })
                    .map(|o| {
                        format!(
                            "{}: {:?}",
                            o["metadata"]["name"].as_str().unwrap_or_default(),
                            ready_reason(o)
                        )
                    })
                    .collect();
                if objs.len() == n && pending.is_empty() {
                    return Ok(());
                }
                format!(
                    "{} objects, pending: {:?}",
                    objs.len(),
                    &pending[..pending.len().min(10)]
                )
            }
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            let logs: String = w
                .pods(ns)
                .await
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    format!(
                        "---- {}:\n{}\n",
                        p.name,
                        tail(&w.node.container_log(ns, &p.name, "operator"), 40)
                    )
                })
                .collect();
            bail!("not all {n} objects Ready after {WAIT:?}: {last}\n{logs}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The invariants: each of the `n` objects Registered with its client's
/// credentials in its Secret (accepted by the simulator; `token_sample` of
/// them through the token endpoint), status naming the same client,
/// exactly one client per name, no client without a Secret, and no POST of
/// a listed name.
async fn check(
    w: &World,
    ns: &str,
    collibra: &SimHandle,
    sim_url: &str,
    n: usize,
    token_sample: usize,
) -> anyhow::Result<()> {
    let objs = list_json(w, ns, "oauthclients").await?;
    let creds = credentials(w, ns).await?;
    let clients = collibra.clients();
    let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in &clients {
        by_name
            .entry(c.client_name.as_str())
            .or_default()
            .push(c.client_id.as_str());
    }
    let mut failures = Vec::new();
    for (name, ids) in &by_name {
        if ids.len() != 1 {
            failures.push(format!("{} clients named {name}: {ids:?}", ids.len()));
        }
    }
    let mut tokens = 0;
    for o in &objs {
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        let client_name = o["spec"]["clientName"].as_str().unwrap_or_default();
        if ready_reason(o).as_deref() != Some("Registered") {
            failures.push(format!("{name}: Ready reason {:?}", ready_reason(o)));
            continue;
        }
        let Some((id, secret)) = creds.get(name) else {
            failures.push(format!(
                "{name}: Registered but its Secret holds no credentials"
            ));
            continue;
        };
        if by_name.get(client_name).and_then(|v| v.first()) != Some(&id.as_str()) {
            failures.push(format!(
                "{name}: Secret holds {id}, Collibra's {client_name} is {:?}",
                by_name.get(client_name)
            ));
            continue;
        }
        if o["status"]["clientId"].as_str() != Some(id) {
            failures.push(format!("{name}: status.clientId differs from the Secret"));
        }
        if !collibra.verify_credentials(id, secret) {
            failures.push(format!(
                "{name}: the simulator refuses the Secret's credentials"
            ));
            continue;
        }
        if tokens < token_sample {
            tokens += 1;
            if !token_accepted(sim_url, id, secret).await? {
                failures.push(format!(
                    "{name}: the token endpoint refuses its credentials"
                ));
            }
        }
    }
    if objs.len() != n {
        failures.push(format!("{} objects, {n} applied", objs.len()));
    }
    let orphans = clients_without_secret(w, ns, collibra).await?;
    if !orphans.is_empty() {
        failures.push(format!("clients without a Secret: {orphans:?}"));
    }
    let stats = collibra.stats();
    let refused = stats.responses_for("register", "400") + stats.responses_for("register", "409");
    if refused > 0 {
        failures.push(format!("{refused} POSTs of a name Collibra already listed"));
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

fn report(rounds: &[Round], objects: usize, collibra: &SimHandle, total: Duration) {
    let stats = collibra.stats();
    let mut per_fault: BTreeMap<&str, Vec<&Round>> = BTreeMap::new();
    for r in rounds {
        per_fault.entry(r.fault.name()).or_default().push(r);
    }
    for (name, rs) in per_fault {
        let max = |f: fn(&Round) -> Duration| {
            rs.iter()
                .map(|r| f(r))
                .max()
                .unwrap_or_default()
                .as_secs_f64()
        };
        eprintln!(
            "NODE-FAULTS fault={name} rounds={} on_commit={} lost_in_flight={} max_took_secs={:.1} max_converged_secs={:.1} max_rolled_out_secs={:.1}",
            rs.len(),
            rs.iter().filter(|r| r.on_commit).count(),
            rs.iter().map(|r| r.lost_now).sum::<usize>(),
            max(|r| r.took),
            max(|r| r.converged),
            max(|r| r.rolled_out),
        );
    }
    eprintln!(
        "NODE-FAULTS total objects={objects} faults={} registers={} deletes={} lists={} duplicate_registers_refused={} total_secs={:.0}",
        rounds.len(),
        stats.requests_for("register"),
        stats.requests_for("delete"),
        stats.requests_for("list"),
        stats.responses_for("register", "400") + stats.responses_for("register", "409"),
        total.as_secs_f64()
    );
}

//! Helpers shared by the reliability suites: bulk manifests, tolerant waits
//! and the audit that counts lost and duplicated credentials.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use anyhow::bail;
use collibra_oauth_operator::api::OAuthClient;
use kube::api::ListParams;

use test_support::{Fixture, condition, ready_reason, tail, token_accepted};

/// Whether the full sizes were asked for (`RELIABILITY_FULL=1`).
pub fn full() -> bool {
    std::env::var("RELIABILITY_FULL").is_ok_and(|v| v == "1" || v == "true")
}

/// The random seed: `RELIABILITY_SEED` or the clock; printed so a run can be repeated.
pub fn seed() -> u64 {
    std::env::var("RELIABILITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        })
}

/// Object and client name of the `i`th object of a rollout.
pub fn name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:04}")
}

/// A multi-document manifest of objects `range` of a rollout.
pub fn manifests(prefix: &str, range: std::ops::Range<usize>) -> String {
    range
        .map(|i| {
            let n = name(prefix, i);
            format!(
                "apiVersion: oauth.collibra.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: {n}\nspec:\n  clientName: {n}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// `kubectl apply`, retried for up to a minute (the API server may be restarting).
pub async fn apply_retrying(f: &Fixture, yaml: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f.apply(yaml).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                eprintln!("apply failed, retrying: {e:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Every OAuthClient of the namespace (errors while the API server restarts are retried).
pub async fn list_objects(f: &Fixture) -> anyhow::Result<Vec<OAuthClient>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f.oauth().list(&ListParams::default()).await {
            Ok(l) => return Ok(l.items),
            Err(e) if Instant::now() < deadline => {
                eprintln!("listing OAuthClients failed, retrying: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Secret name -> (client_id, client_secret) for every Secret that holds credentials.
pub async fn credentials(f: &Fixture) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let secrets = loop {
        match f.secrets().list(&ListParams::default()).await {
            Ok(l) => break l.items,
            Err(e) if Instant::now() < deadline => {
                eprintln!("listing Secrets failed, retrying: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = BTreeMap::new();
    for s in secrets {
        let data = s.data.unwrap_or_default();
        let get = |k: &str| {
            data.get(k)
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        };
        if let (Some(id), Some(secret)) = (get("client_id"), get("client_secret")) {
            out.insert(s.metadata.name.unwrap_or_default(), (id, secret));
        }
    }
    Ok(out)
}

/// Whether an object reached an end state: Ready, or (when allowed) the
/// stalled `ClientExistsWithoutSecret`.
pub fn settled(o: &OAuthClient, allow_lost: bool) -> bool {
    let current = o
        .status
        .as_ref()
        .is_some_and(|s| s.observed_generation == o.metadata.generation);
    let reason = ready_reason(o);
    current
        && (reason.as_deref() == Some("Registered")
            || (allow_lost
                && reason.as_deref() == Some("ClientExistsWithoutSecret")
                && condition(o, "Stalled").as_deref() == Some("True")))
}

/// Waits until `n` objects exist and all are settled.
pub async fn wait_settled(
    f: &Fixture,
    n: usize,
    allow_lost: bool,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        let objs = list_objects(f).await?;
        let pending: Vec<String> = objs
            .iter()
            .filter(|o| !settled(o, allow_lost))
            .map(|o| {
                format!(
                    "{}: {:?} {}",
                    o.metadata.name.as_deref().unwrap_or(""),
                    ready_reason(o),
                    o.ready_condition()
                        .map(|c| c.message.as_str())
                        .unwrap_or("")
                )
            })
            .collect();
        if objs.len() == n && pending.is_empty() {
            return Ok(start.elapsed());
        }
        last = format!(
            "{} objects, {} pending, e.g.:\n{}",
            objs.len(),
            pending.len(),
            pending
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!(
        "not settled after {timeout:?}: {last}\n--- operator log (tail) ---\n{}",
        tail(&f.op.log(), 60)
    )
}

/// Copies the operator's log to `target/reliability-logs/` so a failure
/// can be studied after the fixture's directory is gone; returns the path.
pub fn keep_log(f: &Fixture, what: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/reliability-logs");
    let dest = dir.join(format!("{what}-{}.log", f.ns));
    match std::fs::create_dir_all(&dir).and_then(|_| std::fs::copy(f.op.log_path(), &dest)) {
        Ok(_) => dest.display().to_string(),
        Err(e) => format!("(log not kept: {e})"),
    }
}

/// What the final state says about the credentials.
#[derive(Debug, Default)]
pub struct Audit {
    /// OAuthClients.
    pub objects: usize,
    /// Ready with working credentials.
    pub ready: usize,
    /// Objects whose secret was lost (`ClientExistsWithoutSecret`).
    pub lost: usize,
    /// Names lost, for comparison with what the test saw.
    pub lost_names: BTreeSet<String>,
    /// Extra clients per name in Collibra (more than one client for a name).
    pub duplicated: usize,
    /// Clients in Collibra whose credentials no Secret holds (and that no
    /// object reports as lost).
    pub orphaned: usize,
    /// Credentials checked through the real token endpoint.
    pub token_checked: usize,
    /// Everything wrong, one line each.
    pub failures: Vec<String>,
}

/// Checks every object, Secret and simulator client: each object is Ready
/// with credentials that the simulator accepts, or (without DELETE) reports
/// the lost secret; exactly one client per name; no client without its Secret.
pub async fn audit(
    f: &Fixture,
    delete_supported: bool,
    token_sample: usize,
) -> anyhow::Result<Audit> {
    let objs = list_objects(f).await?;
    let creds = credentials(f).await?;
    let clients = f.collibra.clients();
    let mut a = Audit {
        objects: objs.len(),
        ..Audit::default()
    };
    let mut by_name: BTreeMap<&str, Vec<&collibra_sim::ClientRecord>> = BTreeMap::new();
    for c in &clients {
        by_name.entry(c.client_name.as_str()).or_default().push(c);
    }
    for (name, cs) in &by_name {
        if cs.len() > 1 {
            a.duplicated += cs.len() - 1;
            a.failures
                .push(format!("{} clients named {name}", cs.len()));
        }
    }
    let mut accounted: BTreeSet<String> = BTreeSet::new();
    for o in &objs {
        let obj = o.metadata.name.clone().unwrap_or_default();
        let cname = o.spec.client_name.clone();
        let client = by_name.get(cname.as_str()).and_then(|v| v.first());
        match ready_reason(o).as_deref() {
            Some("Registered") => {
                let Some((id, secret)) = creds.get(&o.secret_name()) else {
                    a.failures
                        .push(format!("{obj}: Ready but its Secret holds no credentials"));
                    continue;
                };
                let Some(client) = client else {
                    a.failures
                        .push(format!("{obj}: Ready but Collibra has no client {cname}"));
                    continue;
                };
                if &client.client_id != id {
                    a.failures.push(format!(
                        "{obj}: Secret holds {id}, Collibra's {cname} is {}",
                        client.client_id
                    ));
                    continue;
                }
                if o.status.as_ref().and_then(|s| s.client_id.as_ref()) != Some(id) {
                    a.failures
                        .push(format!("{obj}: status.clientId differs from the Secret"));
                }
                if !f.collibra.verify_credentials(id, secret) {
                    a.failures
                        .push(format!("{obj}: the Secret's credentials are rejected"));
                    continue;
                }
                if a.token_checked < token_sample {
                    if token_accepted(&f.sim.url(), id, secret).await? {
                        a.token_checked += 1;
                    } else {
                        a.failures
                            .push(format!("{obj}: the token endpoint refuses its credentials"));
                    }
                }
                a.ready += 1;
                accounted.insert(client.client_id.clone());
            }
            Some("ClientExistsWithoutSecret") if !delete_supported => {
                if condition(o, "Stalled").as_deref() != Some("True") {
                    a.failures.push(format!(
                        "{obj}: ClientExistsWithoutSecret without Stalled=True"
                    ));
                }
                match client {
                    Some(c) => {
                        accounted.insert(c.client_id.clone());
                    }
                    None => a.failures.push(format!(
                        "{obj}: ClientExistsWithoutSecret but Collibra has no {cname}"
                    )),
                }
                a.lost += 1;
                a.lost_names.insert(cname);
            }
            other => a.failures.push(format!(
                "{obj}: Ready reason {other:?}: {}",
                o.ready_condition()
                    .map(|c| c.message.as_str())
                    .unwrap_or("")
            )),
        }
    }
    for c in &clients {
        if !accounted.contains(&c.client_id) {
            a.orphaned += 1;
            a.failures.push(format!(
                "Collibra client {} ({}) has no Secret and no object reporting it",
                c.client_name, c.client_id
            ));
        }
    }
    Ok(a)
}

/// Clients in Collibra whose credentials no Secret holds: (name, id).
pub async fn clients_without_secret(f: &Fixture) -> anyhow::Result<BTreeSet<(String, String)>> {
    let creds = credentials(f).await?;
    let held: BTreeSet<&str> = creds.values().map(|(id, _)| id.as_str()).collect();
    Ok(f.collibra
        .clients()
        .into_iter()
        .filter(|c| !held.contains(c.client_id.as_str()))
        .map(|c| (c.client_name, c.client_id))
        .collect())
}

/// A metric's value (sum over its label sets) in a Prometheus text page.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

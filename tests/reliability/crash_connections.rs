//! The crash suite with two connections: the instance configured by flags
//! and a CollibraConnection to a second simulator, the same clientNames in
//! both. SIGKILLs at random moments and while a registration's 201 is held
//! back. Per instance: nothing lost (DELETE is supported), nothing
//! duplicated, nothing registered in the other instance.

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::ensure;
use collibra_sim::{Faults, SimConfig, SimHandle, Simulator};
use rand::{Rng, SeedableRng, rngs::StdRng};

use test_support::{Env, Fixture, Options};

use crate::common::{self, credentials, list_objects, name, wait_settled};

test_support::tests!(
    Env;
    crash_rounds_with_two_connections_lose_nothing,
);

/// Objects `range` of the rollout: even ones in the default instance, odd
/// ones through the connection `other`, with the clientName of the object
/// one below (so every name exists in both instances).
fn manifests(prefix: &str, range: std::ops::Range<usize>) -> String {
    range
        .map(|i| {
            let n = name(prefix, i);
            let client_name = name(prefix, i - i % 2);
            let via = if i % 2 == 1 {
                "  connectionRef:\n    kind: CollibraConnection\n    name: other\n"
            } else {
                ""
            };
            format!(
                "apiVersion: oauth.collibra.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: {n}\nspec:\n  clientName: {client_name}\n{via}"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Clients of `sim` whose id no Secret holds.
async fn unheld(f: &Fixture, sim: &SimHandle) -> anyhow::Result<BTreeSet<String>> {
    let creds = credentials(f).await?;
    let held: BTreeSet<&str> = creds.values().map(|(id, _)| id.as_str()).collect();
    Ok(sim
        .clients()
        .into_iter()
        .filter(|c| !held.contains(c.client_id.as_str()))
        .map(|c| c.client_id)
        .collect())
}

async fn crash_rounds_with_two_connections_lose_nothing(env: Arc<Env>) -> anyhow::Result<()> {
    let (objects, rounds): (usize, usize) = if common::full() { (200, 30) } else { (40, 6) };
    let seed = common::seed();
    eprintln!("crash suite with two connections: seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let prefix = "crash2";
    let mut f = Fixture::with(
        env,
        prefix,
        Options {
            start_operator: false,
            extra_args: vec![
                "--namespaced-connection-hosts".to_owned(),
                "127.0.0.1".to_owned(),
            ],
            ..Options::default()
        },
    )
    .await?;
    let other = Simulator::start(SimConfig::default()).await?;
    let result = async {
        let faults = Faults {
            latency_ms: 5,
            latency_jitter_ms: 60,
            register_response_delay_ms: 400,
            ..Faults::default()
        };
        f.collibra.set_faults(faults.clone());
        other.handle().set_faults(faults);
        f.apply(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: other\nstringData:\n  client_id: operator\n  client_secret: operator-secret\n",
        )
        .await?;
        f.apply(&format!(
            "apiVersion: oauth.collibra.dev/v1alpha1\nkind: CollibraConnection\nmetadata:\n  name: other\nspec:\n  url: {}\n  auth:\n    secretName: other\n",
            other.url()
        ))
        .await?;
        let mut announced = other.handle().on_register();
        let per_round = objects.div_ceil(rounds);
        let mut applied = 0;
        let (mut kills, mut targeted, mut in_window) = (0, 0, 0);
        let mut lost_in_flight = BTreeSet::new();
        let started = Instant::now();
        for _ in 0..rounds {
            if applied < objects {
                let upto = (applied + per_round).min(objects);
                common::apply_retrying(&f, &manifests(prefix, applied..upto)).await?;
                applied = upto;
            }
            f.op.restart().await?;
            // Half the kills land while a registration through the
            // connection is committed and its 201 held back.
            if rng.random_bool(0.5) {
                while announced.try_recv().is_ok() {}
                let wait = Duration::from_millis(rng.random_range(3000..8000));
                if let Ok(Ok(_)) = tokio::time::timeout(wait, announced.recv()).await {
                    targeted += 1;
                }
            } else {
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..2500))).await;
            }
            f.op.kill().await?;
            kills += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut lost_now = unheld(&f, &f.collibra).await?;
            lost_now.extend(unheld(&f, &other.handle()).await?);
            if lost_now.difference(&lost_in_flight).next().is_some() {
                in_window += 1;
            }
            lost_in_flight.extend(lost_now);
        }
        if applied < objects {
            common::apply_retrying(&f, &manifests(prefix, applied..objects)).await?;
        }
        f.op.restart().await?;
        let timeout = Duration::from_secs(if common::full() { 300 } else { 120 });
        let converge = match wait_settled(&f, objects, false, timeout).await {
            Ok(d) => d,
            Err(e) => anyhow::bail!("{e:#}\nfull log: {}", common::keep_log(&f, prefix)),
        };

        // Per instance: one client per name, each held by the object of that
        // connection, with credentials the instance accepts.
        let creds = credentials(&f).await?;
        let mut failures = Vec::new();
        for (sim, parity, what) in [(f.collibra.clone(), 0, "default"), (other.handle(), 1, "other")] {
            let clients = sim.clients();
            let names: BTreeSet<&str> = clients.iter().map(|c| c.client_name.as_str()).collect();
            if names.len() != clients.len() {
                failures.push(format!("{what}: {} clients for {} names", clients.len(), names.len()));
            }
            for i in (parity..objects).step_by(2) {
                let obj = name(prefix, i);
                let client_name = name(prefix, i - i % 2);
                let Some((id, secret)) = creds.get(&obj) else {
                    failures.push(format!("{what}: {obj} has no credentials"));
                    continue;
                };
                match clients.iter().find(|c| c.client_name == client_name) {
                    Some(c) if c.client_id == *id => {
                        if !sim.verify_credentials(id, secret) {
                            failures.push(format!("{what}: {obj}'s credentials are refused"));
                        }
                    }
                    Some(c) => failures.push(format!(
                        "{what}: {obj} holds {id}, the instance lists {}",
                        c.client_id
                    )),
                    None => failures.push(format!("{what}: no client {client_name} for {obj}")),
                }
            }
            let expected = objects / 2 + usize::from(parity == 0 && objects % 2 == 1);
            if clients.len() != expected {
                failures.push(format!("{what}: {} clients, want {expected}", clients.len()));
            }
        }
        let ready = list_objects(&f).await?.len();
        let stats = (f.collibra.stats(), other.handle().stats());
        let refused = |s: &collibra_sim::Stats| {
            s.responses_for("register", "400") + s.responses_for("register", "409")
        };
        println!(
            "RELIABILITY crash two-connections seed={seed} objects={objects} rounds={rounds} kills={kills} targeted_kills={targeted} kills_inside_window={in_window} secrets_lost_in_flight={} registers_default={} registers_other={} deletes={} duplicate_registers_refused={} rollout_secs={:.0} converge_after_last_start_secs={:.0}",
            lost_in_flight.len(),
            stats.0.requests_for("register"),
            stats.1.requests_for("register"),
            stats.0.requests_for("delete") + stats.1.requests_for("delete"),
            refused(&stats.0) + refused(&stats.1),
            started.elapsed().as_secs_f64(),
            converge.as_secs_f64(),
        );
        ensure!(failures.is_empty(), "audit failures:\n{}", failures.join("\n"));
        ensure!(ready == objects);
        ensure!(kills >= rounds);
        ensure!(
            refused(&stats.0) + refused(&stats.1) == 0,
            "a name that already existed was registered again"
        );
        Ok(())
    }
    .await;
    other.shutdown().await;
    f.finish().await?;
    result
}

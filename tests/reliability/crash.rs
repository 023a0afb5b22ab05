//! Crash suite: SIGKILL the operator at random moments during a rollout,
//! and on purpose between Collibra committing a client and the Secret
//! being written (the simulator holds each 201 back and announces the
//! commit first). Nothing may be lost where DELETE allows recovery, nothing
//! duplicated ever.

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::ensure;
use collibra_sim::{Faults, SimConfig};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::sync::broadcast::error::TryRecvError;

use test_support::{Env, Fixture, Options};

use crate::common::{self, audit, clients_without_secret, manifests, wait_settled};

test_support::tests!(
    Env;
    crash_rounds_lose_nothing_with_delete,
    crash_rounds_without_delete_report_every_lost_secret,
    crash_rounds_during_secret_type_changes_lose_nothing,
);

async fn crash_rounds_lose_nothing_with_delete(env: Arc<Env>) -> anyhow::Result<()> {
    crash_rounds(env, true).await
}

async fn crash_rounds_without_delete_report_every_lost_secret(env: Arc<Env>) -> anyhow::Result<()> {
    crash_rounds(env, false).await
}

struct Counts {
    rounds: usize,
    kills: usize,
    targeted: usize,
    in_window: usize,
    lost_in_flight: BTreeSet<(String, String)>,
}

async fn crash_rounds(env: Arc<Env>, delete: bool) -> anyhow::Result<()> {
    let (objects, rounds): (usize, usize) = if common::full() { (200, 30) } else { (40, 6) };
    let seed = common::seed();
    eprintln!("crash suite (delete={delete}): seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let prefix = if delete { "crash" } else { "crashnd" };
    let mut f = Fixture::with(
        env,
        prefix,
        Options {
            sim: SimConfig {
                delete_enabled: delete,
                ..SimConfig::default()
            },
            start_operator: false,
            ..Options::default()
        },
    )
    .await?;
    f.collibra.set_faults(Faults {
        latency_ms: 5,
        latency_jitter_ms: 60,
        register_response_delay_ms: 400,
        ..Faults::default()
    });
    let mut announced = f.collibra.on_register();
    let per_round = objects.div_ceil(rounds);
    let mut applied = 0;
    let mut c = Counts {
        rounds: 0,
        kills: 0,
        targeted: 0,
        in_window: 0,
        lost_in_flight: BTreeSet::new(),
    };
    let started = Instant::now();
    for _ in 0..rounds {
        c.rounds += 1;
        if applied < objects {
            let upto = (applied + per_round).min(objects);
            common::apply_retrying(&f, &manifests(prefix, applied..upto)).await?;
            applied = upto;
        }
        f.op.restart().await?;
        // Half the kills wait for Collibra to commit a registration and
        // land while its 201 is held back; the others at a random moment.
        if rng.random_bool(0.5) {
            // Forget commits announced before this start.
            while let Ok(_) | Err(TryRecvError::Lagged(_)) = announced.try_recv() {}
            let wait = Duration::from_millis(rng.random_range(0..8000));
            if let Ok(Ok(_)) =
                tokio::time::timeout(wait.max(Duration::from_secs(3)), announced.recv()).await
            {
                c.targeted += 1;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..2500))).await;
        }
        f.op.kill().await?;
        c.kills += 1;
        // Let writes already sent to the API server land, then see which
        // secrets died with the process.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let lost_now = clients_without_secret(&f).await?;
        let new: Vec<_> = lost_now.difference(&c.lost_in_flight).cloned().collect();
        if !new.is_empty() {
            c.in_window += 1;
        }
        c.lost_in_flight.extend(new);
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
    }
    // The rest of the rollout, then one last start that must finish it.
    if applied < objects {
        common::apply_retrying(&f, &manifests(prefix, applied..objects)).await?;
    }
    f.op.restart().await?;
    let timeout = Duration::from_secs(if common::full() { 300 } else { 120 });
    let converge = match wait_settled(&f, objects, !delete, timeout).await {
        Ok(d) => d,
        Err(e) => anyhow::bail!("{e:#}\nfull log: {}", common::keep_log(&f, prefix)),
    };
    let a = audit(&f, delete, if common::full() { 25 } else { 8 }).await?;
    let stats = f.collibra.stats();
    let dup_refused =
        stats.responses_for("register", "400") + stats.responses_for("register", "409");
    println!(
        "RELIABILITY crash delete={delete} seed={seed} objects={} rounds={} kills={} targeted_kills={} kills_inside_window={} secrets_lost_in_flight={} recovered={} lost={} duplicated={} orphaned={} ready={} token_checked={} registers={} deletes={} duplicate_registers_refused={} rollout_secs={:.0} converge_after_last_start_secs={:.0}",
        a.objects,
        c.rounds,
        c.kills,
        c.targeted,
        c.in_window,
        c.lost_in_flight.len(),
        c.lost_in_flight.len().saturating_sub(a.lost),
        a.lost,
        a.duplicated,
        a.orphaned,
        a.ready,
        a.token_checked,
        stats.requests_for("register"),
        stats.requests_for("delete"),
        dup_refused,
        started.elapsed().as_secs_f64(),
        converge.as_secs_f64(),
    );
    ensure!(
        a.failures.is_empty(),
        "audit failures:\n{}",
        a.failures.join("\n")
    );
    ensure!(a.objects == objects && a.duplicated == 0 && a.orphaned == 0);
    ensure!(c.kills >= rounds);
    ensure!(
        c.in_window >= 1,
        "no kill landed between a registration and its Secret write; the worst window was never hit"
    );
    ensure!(
        dup_refused == 0,
        "the operator registered a name that already existed {dup_refused} times"
    );
    if delete {
        ensure!(
            a.lost == 0,
            "{} secrets lost although DELETE is supported",
            a.lost
        );
        ensure!(a.ready == objects);
    } else {
        let seen: BTreeSet<String> = c.lost_in_flight.iter().map(|(n, _)| n.clone()).collect();
        ensure!(
            a.lost_names == seen,
            "objects reporting a lost secret {:?} differ from the secrets lost at the kills {:?}",
            a.lost_names,
            seen
        );
        ensure!(a.ready + a.lost == objects);
    }
    f.finish().await
}

/// The template flips each object's Secret between Opaque and basic-auth
/// (a delete and a create, through a backup Secret) while the operator is
/// SIGKILLed: half the kills the moment a backup appears (inside the
/// replacement), the others at random. At the end every Secret has the
/// last type and the credentials it had before the first change, nothing
/// was registered again, and no backup is left.
async fn crash_rounds_during_secret_type_changes_lose_nothing(env: Arc<Env>) -> anyhow::Result<()> {
    use collibra_oauth_operator::controller::secret::shape::stored_credentials;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::ListParams;

    let (objects, rounds): (usize, usize) = if common::full() { (100, 20) } else { (20, 6) };
    let seed = common::seed();
    eprintln!("crash suite (type changes): seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let prefix = "crashtype";
    let mut f = Fixture::new(env, prefix).await?;
    common::apply_retrying(&f, &manifests(prefix, 0..objects)).await?;
    wait_settled(&f, objects, false, Duration::from_secs(120)).await?;
    let before: std::collections::BTreeMap<String, (String, String)> = f
        .secrets()
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|s| {
            let c = stored_credentials(s)?;
            Some((
                s.metadata.name.clone().unwrap_or_default(),
                (
                    c.client_id,
                    secrecy::ExposeSecret::expose_secret(&c.client_secret).to_owned(),
                ),
            ))
        })
        .collect();
    ensure!(
        before.len() == objects,
        "{} of {objects} Secrets hold credentials",
        before.len()
    );
    let registers = f.collibra.stats().requests_for("register");
    let basic_auth = "  secretTemplate:\n    type: kubernetes.io/basic-auth\n    keys: {clientId: username, clientSecret: password}\n";
    let with_template = |tmpl: &str| {
        (0..objects)
            .map(|i| {
                let n = common::name(prefix, i);
                format!(
                    "apiVersion: oauth.collibra.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: {n}\nspec:\n  clientName: {n}\n{tmpl}"
                )
            })
            .collect::<Vec<_>>()
            .join("---\n")
    };
    let (mut kills, mut targeted, mut with_backup, mut target_missing) = (0, 0, 0, 0);
    for round in 0..rounds {
        f.op.kill().await?;
        // Odd rounds go back to Opaque; the last round is basic-auth.
        let tmpl = if (rounds - 1 - round) % 2 == 0 {
            basic_auth
        } else {
            ""
        };
        common::apply_retrying(&f, &with_template(tmpl)).await?;
        // Watched from before the restart, so the first backup is not missed.
        let backups = watch_secrets(&f).await?;
        f.op.restart().await?;
        // The first round always aims inside a replacement, so even a short
        // run has a kill there whatever the seed draws.
        if round == 0 || rng.random_bool(0.6) {
            // Kill inside a replacement: the moment a backup appears (step
            // 1 done), or the moment a Secret is deleted (step 2 done).
            let on_delete = rng.random_bool(0.5);
            if replacement_step(&f, backups, on_delete, Duration::from_secs(10)).await? {
                targeted += 1;
            }
        } else {
            drop(backups);
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..1500))).await;
        }
        f.op.kill().await?;
        kills += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now: Vec<Secret> = f.secrets().list(&ListParams::default()).await?.items;
        let names: BTreeSet<String> = now.iter().filter_map(|s| s.metadata.name.clone()).collect();
        if names.iter().any(|n| is_backup_name(n)) {
            with_backup += 1;
        }
        if before.keys().any(|n| !names.contains(n)) {
            target_missing += 1;
        }
    }
    f.op.restart().await?;
    let converge = wait_settled(&f, objects, false, Duration::from_secs(180)).await;
    if let Err(e) = converge {
        anyhow::bail!("{e:#}\nfull log: {}", common::keep_log(&f, prefix));
    }
    // Settled means Registered at the current generation; the Secret may
    // still be on its way (the watch notices the last writes).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut failures;
    loop {
        failures = Vec::new();
        let now: Vec<Secret> = f.secrets().list(&ListParams::default()).await?.items;
        let left_backups = now
            .iter()
            .filter(|s| s.metadata.name.as_deref().is_some_and(is_backup_name))
            .count();
        if left_backups > 0 {
            failures.push(format!("{left_backups} backup Secrets left"));
        }
        for (name, (id, secret)) in &before {
            let Some(s) = now
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name))
            else {
                failures.push(format!("{name}: Secret missing"));
                continue;
            };
            if s.type_.as_deref() != Some("kubernetes.io/basic-auth") {
                failures.push(format!("{name}: type {:?}", s.type_));
            }
            let data = s.data.clone().unwrap_or_default();
            let text = |k: &str| {
                data.get(k)
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            };
            if text("username").as_ref() != Some(id) || text("password").as_ref() != Some(secret) {
                failures.push(format!(
                    "{name}: credentials differ from before the changes"
                ));
            }
        }
        if failures.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let registered_again = f.collibra.stats().requests_for("register") - registers;
    let verified = before
        .values()
        .filter(|(id, secret)| f.collibra.verify_credentials(id, secret))
        .count();
    println!(
        "RELIABILITY crash type-change seed={seed} objects={objects} rounds={rounds} kills={kills} targeted_kills={targeted} kills_with_backup_present={with_backup} kills_with_secret_missing={target_missing} registered_again={registered_again} credentials_verified={verified} failures={}",
        failures.len()
    );
    ensure!(
        failures.is_empty(),
        "after the type changes:\n{}",
        failures.join("\n")
    );
    ensure!(
        registered_again == 0,
        "{registered_again} clients registered again"
    );
    ensure!(
        verified == objects,
        "{verified} of {objects} credentials still valid"
    );
    ensure!(
        with_backup >= 1,
        "no kill landed inside a replacement (with the backup present)"
    );
    f.finish().await
}

/// A watch of the fixture's Secrets from now.
async fn watch_secrets(f: &Fixture) -> anyhow::Result<SecretEvents> {
    use futures::StreamExt;
    use kube::api::{ListParams, WatchParams};
    let rv = f
        .secrets()
        .list_metadata(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    Ok(f.secrets()
        .watch(&WatchParams::default().timeout(30), &rv)
        .await?
        .boxed())
}

type SecretEvents = futures::stream::BoxStream<
    'static,
    kube::Result<kube::api::WatchEvent<k8s_openapi::api::core::v1::Secret>>,
>;

/// Waits up to `within` for a step of a Secret type change: a backup
/// Secret created, or (`on_delete`) a Secret deleted. A watch that ends
/// early is opened again: under load the API server may close one at once
/// (its watch cache behind the version the list returned), and a short run
/// would then aim no kill at all inside a replacement.
async fn replacement_step(
    f: &Fixture,
    first: SecretEvents,
    on_delete: bool,
    within: Duration,
) -> anyhow::Result<bool> {
    use futures::StreamExt;
    use kube::api::WatchEvent;
    let deadline = Instant::now() + within;
    let is_backup = |s: &k8s_openapi::api::core::v1::Secret| {
        s.metadata.name.as_deref().is_some_and(is_backup_name)
    };
    let mut events = first;
    loop {
        let seen = tokio::time::timeout_at(deadline.into(), async {
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(WatchEvent::Added(s)) if !on_delete && is_backup(&s) => return true,
                    Ok(WatchEvent::Deleted(s)) if on_delete && !is_backup(&s) => return true,
                    Ok(WatchEvent::Error(e)) => eprintln!("  Secret watch ended: {e}"),
                    Err(e) => eprintln!("  Secret watch ended: {e}"),
                    Ok(_) => {}
                }
            }
            false
        })
        .await;
        match seen {
            Ok(true) => return Ok(true),
            Err(_) => return Ok(false),
            Ok(false) if Instant::now() >= deadline => return Ok(false),
            Ok(false) => {
                // Ended early: open it again, not in a tight loop should the
                // API server keep closing it.
                tokio::time::sleep(Duration::from_millis(100)).await;
                events = watch_secrets(f).await?;
            }
        }
    }
}

/// Whether a Secret name is one of the backups a type change writes.
fn is_backup_name(name: &str) -> bool {
    name.starts_with(collibra_oauth_operator::controller::secret::type_change::BACKUP_PREFIX)
}

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

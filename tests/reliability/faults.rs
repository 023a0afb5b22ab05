//! Fault suite: a rollout against a Collibra that fails a fifth of its
//! answers, rate-limits in bursts with `Retry-After`, stalls for 2 s and
//! drops connections, with a kube-apiserver restart and an etcd restart in
//! the middle. It must converge without duplicates, without hot loops, and
//! show its backoff in /metrics.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::ensure;
use collibra_sim::{Faults, RateLimit, ScriptAction, ScriptedFault, Stats};
use rand::{Rng, SeedableRng, rngs::StdRng};

use test_support::{Env, Fixture, Options};

use crate::common::{self, audit, manifests, metric_sum, wait_settled};

test_support::tests!(Env; faulty_collibra_and_control_plane_restarts_converge);

fn total(stats: &Stats) -> u64 {
    stats.requests.values().sum()
}

async fn faulty_collibra_and_control_plane_restarts_converge(env: Arc<Env>) -> anyhow::Result<()> {
    let objects: usize = if common::full() { 200 } else { 30 };
    let seed = common::seed();
    eprintln!("fault suite: seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let prefix = "faults";
    let f = Fixture::with(
        env.clone(),
        prefix,
        Options {
            start_operator: true,
            ..Options::default()
        },
    )
    .await?;
    f.collibra.set_faults(Faults {
        latency_ms: 0,
        latency_jitter_ms: 50,
        error_rate: 0.2,
        rate_limit: Some(RateLimit {
            requests_per_second: 10,
            retry_after_secs: Some(1),
        }),
        drop_rate: 0.05,
        register_response_delay_ms: 0,
    });
    // One-shot faults spread over the rollout: 2 s latency spikes, bursts
    // of 429 with Retry-After, dropped connections, and registrations whose
    // answer is lost after Collibra committed them.
    let spikes = if common::full() { 12 } else { 4 };
    let bursts = if common::full() { 6 } else { 2 };
    for _ in 0..spikes {
        let after = rng.random_range(0..(objects as u64 * 3));
        f.collibra
            .script(ScriptedFault::any(ScriptAction::Delay { ms: 2000 }).after(after));
    }
    for _ in 0..bursts {
        // Within the first `objects` requests, so every burst fires: a
        // rollout makes at least one request per object.
        let after = rng.random_range(0..objects as u64);
        for _ in 0..5 {
            f.collibra.script(
                ScriptedFault::any(ScriptAction::Status {
                    status: 429,
                    retry_after_secs: Some(2),
                })
                .after(after),
            );
        }
    }
    for i in 0..bursts {
        f.collibra
            .script(ScriptedFault::on("register", ScriptAction::Drop).after(i as u64 * 7));
        f.collibra.script(
            ScriptedFault::on("register", ScriptAction::DropAfterCommit).after(i as u64 * 5 + 3),
        );
    }
    let scripted = f.collibra.pending_scripts().len();
    let started = Instant::now();
    let half = objects / 2;
    common::apply_retrying(&f, &manifests(prefix, 0..half)).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = Instant::now();
    env.cp.restart_apiserver().await?;
    let apiserver_restart = t.elapsed();
    common::apply_retrying(&f, &manifests(prefix, half..objects)).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = Instant::now();
    env.cp.restart_etcd().await?;
    let etcd_restart = t.elapsed();
    let timeout = Duration::from_secs(if common::full() { 420 } else { 180 });
    if let Err(e) = wait_settled(&f, objects, false, timeout).await {
        let mut f = f;
        let alive = !f.op.exited();
        anyhow::bail!(
            "{e:#}\noperator still running: {alive}; full log: {}",
            common::keep_log(&f, "faults")
        );
    }
    let converged = started.elapsed();
    let stats = f.collibra.stats();
    // No hot loop: a converged operator stays quiet (resync is 10 minutes).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let quiet = total(&f.collibra.stats()) - total(&stats);
    // The audit goes through the token endpoint: no faults from here on.
    f.collibra.set_faults(Faults::default());
    let unused_scripts = f.collibra.pending_scripts().len();
    f.collibra.clear_scripts();
    let a = audit(&f, true, if common::full() { 20 } else { 5 }).await?;
    let (code, metrics) = f.op.http_get("/metrics").await?;
    ensure!(code == 200, "/metrics answered {code}");
    let retries = metric_sum(&metrics, "collibra_oauth_collibra_retries_total");
    let backoff = metric_sum(&metrics, "collibra_oauth_collibra_backoff_seconds_total");
    let reconcile_errors = metric_sum(&metrics, "collibra_oauth_reconcile_errors_total");
    let faults_injected: u64 = stats.faults.values().sum();
    let dup_refused =
        stats.responses_for("register", "400") + stats.responses_for("register", "409");
    let n = objects as u64;
    println!(
        "RELIABILITY faults objects={} seed={seed} converged_secs={:.0} apiserver_restart_secs={:.1} etcd_restart_secs={:.1} faults_injected={faults_injected} faults={:?} scripted_queued={scripted} scripted_unused={unused_scripts} requests={:?} total_requests={} requests_per_object={:.1} quiet_after_convergence={quiet} retries_total={retries} backoff_seconds_total={backoff:.1} reconcile_errors_total={reconcile_errors} duplicate_registers_refused={dup_refused} lost={} duplicated={} orphaned={} ready={}",
        a.objects,
        converged.as_secs_f64(),
        apiserver_restart.as_secs_f64(),
        etcd_restart.as_secs_f64(),
        stats.faults,
        stats.requests,
        total(&stats),
        total(&stats) as f64 / objects as f64,
        a.lost,
        a.duplicated,
        a.orphaned,
        a.ready,
    );
    ensure!(
        a.failures.is_empty(),
        "audit failures:\n{}",
        a.failures.join("\n")
    );
    ensure!(a.ready == objects && a.duplicated == 0 && a.orphaned == 0);
    // Count what the operator met, not which switch caused it: a short run
    // may stay under the random rate limit and draw no random drop at 5%,
    // but the scripted bursts answer 429 and the scripted drops cut the
    // connection, before and after the commit.
    let answered = |outcome: &str| -> u64 {
        let suffix = format!(" {outcome}");
        stats
            .responses
            .iter()
            .filter(|(k, _)| k.ends_with(&suffix))
            .map(|(_, v)| v)
            .sum()
    };
    ensure!(
        stats.faults_for("5xx") > 0 && answered("429") > 0 && answered("dropped") > 0,
        "not every kind of fault was injected: {:?}",
        stats.faults
    );
    // Bounds: each object needs one registration; faults may cost a few
    // more (retried 429s, ambiguous answers re-checked, a recovery after a
    // lost 201). The list is shared: far fewer lists than objects.
    let registers = stats.requests_for("register");
    ensure!(
        registers <= 3 * n,
        "{registers} registrations for {n} objects"
    );
    let lists = stats.requests_for("list");
    ensure!(lists <= n + 20, "{lists} list calls for {n} objects");
    ensure!(
        total(&stats) <= 12 * n + 100,
        "{} requests for {n} objects",
        total(&stats)
    );
    ensure!(
        quiet <= 2,
        "{quiet} Collibra requests in 10 s after convergence: a hot loop"
    );
    ensure!(retries > 0.0, "no retries in /metrics:\n{metrics}");
    ensure!(backoff > 0.0, "no backoff seconds in /metrics");
    f.finish().await
}

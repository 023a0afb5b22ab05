//! Leader election: two replicas, exactly one reconciles, the other takes
//! over within the lease duration when the leader dies.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure};
use collibra_oauth_operator::controller::reasons::Reason;
use test_support::{Env, Fixture, Operator, Options, manifest};

test_support::tests!(Env; two_replicas_elect_one_leader_and_fail_over);

async fn readyz(op: &Operator) -> String {
    match op.http_get("/readyz").await {
        Ok((code, body)) => format!("{code} {body}"),
        Err(_) => "down".to_owned(),
    }
}

fn reconciles(metrics: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with("collibra_oauth_reconciles_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn two_replicas_elect_one_leader_and_fail_over(env: Arc<Env>) -> anyhow::Result<()> {
    let lease = format!("e2e-{}", std::process::id());
    let mut f = Fixture::with(
        env,
        "leader",
        Options {
            extra_args: vec![
                "--leader-elect".into(),
                "--lease-namespace".into(),
                "collibra-oauth-operator".into(),
                "--lease-name".into(),
                lease.clone(),
                "--lease-duration".into(),
                "6s".into(),
            ],
            ..Options::default()
        },
    )
    .await?;
    let log = std::env::temp_dir().join(format!("{lease}-replica.log"));
    let mut second = f.op.replica(log.clone())?;

    // Exactly one leader, one standby; readyz tells them apart.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (first_leads, states) = loop {
        let (a, b) = (readyz(&f.op).await, readyz(&second).await);
        match (a.as_str(), b.as_str()) {
            ("200 leader", "200 standby") => break (true, (a, b)),
            ("200 standby", "200 leader") => break (false, (a, b)),
            _ if Instant::now() > deadline => {
                bail!("no leader/standby pair: {a} / {b}\n{}", f.op.log())
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    for i in 0..4 {
        f.apply(&manifest(&format!("l{i}"), &format!("leader-{i}"), ""))
            .await?;
    }
    for i in 0..4 {
        f.wait_reason(&format!("l{i}"), Reason::Registered.as_str())
            .await?;
    }
    if !first_leads {
        // From here on f.op is the leader and `second` the standby.
        std::mem::swap(&mut f.op, &mut second);
    }
    let standby_metrics = second.http_get("/metrics").await?.1;
    ensure!(
        reconciles(&standby_metrics) == 0.0,
        "the standby reconciled ({states:?})"
    );
    ensure!(reconciles(&f.op.http_get("/metrics").await?.1) >= 4.0);
    ensure!(f.collibra.stats().requests_for("register") == 4);

    // The leader dies without releasing the lease: the standby takes over
    // within the lease duration (plus a renewal period of slack).
    f.op.kill().await?;
    let killed = Instant::now();
    while readyz(&second).await != "200 leader" {
        ensure!(
            killed.elapsed() < Duration::from_secs(15),
            "standby did not take over within the lease duration: {}",
            readyz(&second).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let takeover = killed.elapsed();
    f.apply(&manifest("after", "leader-after", "")).await?;
    f.wait_reason("after", Reason::Registered.as_str()).await?;
    ensure!(
        f.collibra.stats().requests_for("register") == 5,
        "nothing registered twice after fail-over"
    );
    eprintln!("leader fail-over took {takeover:?} (lease 6s)");
    ensure!(
        second.terminate().await?,
        "the new leader exits cleanly on SIGTERM"
    );
    let _ = std::fs::remove_file(&log);
    f.finish().await
}

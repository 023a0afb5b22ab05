//! Treating the Collibra side with care: replacement as a
//! choice, capabilities learned again, a young list before a POST.

use std::{sync::Arc, time::Duration};

use anyhow::ensure;
use collibra_oauth_operator::{
    api::{OAuthClient, ReplacementCause},
    controller::reasons::{EventReason, Reason},
};
use collibra_sim::SimConfig;
use kube::api::DeleteParams;

use test_support::{Env, Fixture, Options, condition, manifest, ready_reason};

test_support::tests!(
    Env;
    lost_secret_under_manual_waits_for_a_rotation,
    rotation_without_delete_always_records_an_event,
    delete_is_used_again_after_a_405_without_restart,
    client_created_shortly_before_is_not_posted,
);

/// One Event about an object: its reason, how often it was recorded
/// (an Event series counts repeats of the same reason), and its note.
#[derive(Debug)]
struct Recorded {
    reason: String,
    count: u32,
    note: String,
}

/// Every Event about `name`.
async fn events(f: &Fixture, name: &str) -> anyhow::Result<Vec<Recorded>> {
    let out = f
        .kubectl(&[
            "get",
            "events.events.k8s.io",
            "--field-selector",
            &format!("regarding.name={name}"),
            "-o",
            "jsonpath={range .items[*]}{.reason}{\"\\t\"}{.series.count}{\"\\t\"}{.note}{\"\\n\"}{end}",
        ])
        .await?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, '\t');
            let reason = parts.next()?.to_owned();
            let count = parts.next()?.parse().unwrap_or(1);
            let note = parts.next()?.to_owned();
            Some(Recorded {
                reason,
                count,
                note,
            })
        })
        .collect())
}

/// How often Events with `reason` were recorded for `name`.
async fn times_recorded(f: &Fixture, name: &str, reason: &str) -> anyhow::Result<u32> {
    Ok(events(f, name)
        .await?
        .iter()
        .filter(|e| e.reason == reason)
        .map(|e| e.count)
        .sum())
}

/// Waits for an Event with `reason` whose note contains every one of `words`.
async fn wait_event(
    f: &Fixture,
    name: &str,
    reason: &str,
    words: &[&str],
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let all = events(f, name).await?;
        if let Some(e) = all
            .iter()
            .find(|e| e.reason == reason && words.iter().all(|w| e.note.contains(w)))
        {
            return Ok(e.note.clone());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no {reason} Event naming {words:?} for {name}; Events: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn client_id(o: &OAuthClient) -> String {
    o.status
        .as_ref()
        .and_then(|s| s.client_id.clone())
        .unwrap_or_default()
}

async fn lost_secret_under_manual_waits_for_a_rotation(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "manualrepl").await?;
    f.apply(&manifest("m", "manual-client", "")).await?;
    let o = f.wait_reason("m", Reason::Registered.as_str()).await?;
    let old_id = client_id(&o);
    f.secrets().delete("m", &DeleteParams::default()).await?;
    let o = f.wait_reason("m", Reason::CredentialsLost.as_str()).await?;
    ensure!(condition(&o, "Stalled").as_deref() == Some("True"));
    let msg = o
        .ready_condition()
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ensure!(
        msg.contains(&old_id) && msg.contains("oauth.collibra.dev/rotate"),
        "the condition must name the client and what to do: {msg}"
    );
    // Nothing was deleted or registered on the operator's own initiative.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = f.collibra.stats();
    ensure!(
        stats.requests_for("delete") == 0 && stats.requests_for("register") == 1,
        "{stats:?}"
    );
    ensure!(f.secret_data("m").await?.is_none(), "no Secret was written");

    // The person decides: a rotation replaces the client.
    f.kubectl(&[
        "annotate",
        "oauthclient",
        "m",
        "oauth.collibra.dev/rotate=r1",
    ])
    .await?;
    let o = f
        .wait_for("m", "replaced", |o| {
            ready_reason(o).as_deref() == Some(Reason::Registered.as_str())
                && client_id(o) != old_id
        })
        .await?;
    let new_id = client_id(&o);
    let status = o.status.clone().unwrap_or_default();
    let repl = status
        .last_replacement
        .ok_or_else(|| anyhow::anyhow!("status.lastReplacement is missing"))?;
    ensure!(
        repl.previous_client_id == old_id
            && repl.client_id == new_id
            && repl.cause == ReplacementCause::Rotation,
        "{repl:?}"
    );
    ensure!(status.last_rotation.as_deref() == Some("r1"));
    wait_event(&f, "m", EventReason::Rotated.as_str(), &[&old_id, &new_id]).await?;
    let data = f.secret_data("m").await?.unwrap_or_default();
    ensure!(
        f.collibra
            .verify_credentials(&new_id, &data["client_secret"])
    );
    ensure!(f.collibra.clients().len() == 1);
    f.finish().await
}

async fn rotation_without_delete_always_records_an_event(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "rotnodel",
        Options {
            sim: SimConfig {
                delete_enabled: false,
                ..SimConfig::default()
            },
            ..Options::default()
        },
    )
    .await?;
    f.apply(&manifest("r", "rotnodel-client", "")).await?;
    let o = f.wait_reason("r", Reason::Registered.as_str()).await?;
    let id = client_id(&o);
    // The first request learns that DELETE is unsupported (a 405)...
    f.kubectl(&[
        "annotate",
        "oauthclient",
        "r",
        "oauth.collibra.dev/rotate=r1",
    ])
    .await?;
    wait_event(&f, "r", EventReason::RotationUnsupported.as_str(), &["r1"]).await?;
    f.wait_reason("r", Reason::Registered.as_str()).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = times_recorded(&f, "r", EventReason::RotationUnsupported.as_str()).await?;
    // ...the second is decided from what was learned, and still recorded
    // (as a repeat of the same Event: Kubernetes counts it in a series).
    f.kubectl(&[
        "annotate",
        "--overwrite",
        "oauthclient",
        "r",
        "oauth.collibra.dev/rotate=r2",
    ])
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while times_recorded(&f, "r", EventReason::RotationUnsupported.as_str()).await? <= before {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no RotationUnsupported Event for the second request: {:?}",
            events(&f, "r").await?
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let o = f.wait_reason("r", Reason::Registered.as_str()).await?;
    ensure!(client_id(&o) == id, "the credentials stay as they are");
    ensure!(
        f.collibra.stats().requests_for("delete") == 1,
        "DELETE is not tried again within the resync interval: {:?}",
        f.collibra.stats()
    );
    f.finish().await
}

async fn delete_is_used_again_after_a_405_without_restart(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "delback",
        Options {
            sim: SimConfig {
                delete_enabled: false,
                ..SimConfig::default()
            },
            resync: "3s",
            ..Options::default()
        },
    )
    .await?;
    f.apply(&manifest("d", "delback-client", "")).await?;
    let o = f.wait_reason("d", Reason::Registered.as_str()).await?;
    let old_id = client_id(&o);
    f.kubectl(&[
        "annotate",
        "oauthclient",
        "d",
        "oauth.collibra.dev/rotate=r1",
    ])
    .await?;
    wait_event(&f, "d", EventReason::RotationUnsupported.as_str(), &["r1"]).await?;
    // Collibra (or the proxy in front of it) is fixed; the operator keeps
    // running and notices within a resync interval or two.
    f.collibra.set_delete_enabled(true);
    let o = f
        .wait_for("d", "rotated", |o| {
            ready_reason(o).as_deref() == Some(Reason::Registered.as_str())
                && client_id(o) != old_id
        })
        .await?;
    let new_id = client_id(&o);
    ensure!(o.status.and_then(|s| s.last_rotation).as_deref() == Some("r1"));
    wait_event(&f, "d", EventReason::Rotated.as_str(), &[&old_id, &new_id]).await?;
    let clients = f.collibra.clients();
    ensure!(
        clients.len() == 1 && clients[0].client_id == new_id,
        "{clients:?}"
    );
    let (_, metrics) = f.op.http_get("/metrics").await?;
    ensure!(
        metrics.contains(
            r#"collibra_oauth_collibra_capability{operation="delete",state="supported"} 1"#
        ),
        "capability metric: {metrics}"
    );
    f.finish().await
}

async fn client_created_shortly_before_is_not_posted(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "younglist",
        Options {
            extra_args: vec!["--list-max-age".to_owned(), "1s".to_owned()],
            ..Options::default()
        },
    )
    .await?;
    // A first object fills the list cache (trusted for the 10m resync).
    f.apply(&manifest("first", "young-first", "")).await?;
    f.wait_reason("first", Reason::Registered.as_str()).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Someone creates a client in Collibra, then its OAuthClient: the cached
    // list does not show it, a list younger than 1 s does.
    f.collibra
        .insert_client("young-second", &["client_credentials"]);
    f.apply(&manifest("second", "young-second", "")).await?;
    let o = f
        .wait_reason("second", Reason::ClientExistsWithoutSecret.as_str())
        .await?;
    ensure!(condition(&o, "Stalled").as_deref() == Some("True"));
    let stats = f.collibra.stats();
    ensure!(
        stats.requests_for("register") == 1 && stats.responses_for("register", "400") == 0,
        "no POST for a name Collibra lists: {stats:?}"
    );
    f.finish().await
}

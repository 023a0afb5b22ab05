//! The lifecycle rules of docs/design.md, checked from outside as a user would.

use std::{sync::Arc, time::Duration};

use anyhow::{bail, ensure};
use collibra_oauth_operator::controller::reasons::{EventReason, Reason};
use collibra_sim::{Faults, ScriptAction, ScriptedFault, SimConfig};
use kube::api::{DeleteParams, Patch, PatchParams};

use test_support::{Env, Fixture, Options, condition, manifest, ready_reason, token_accepted};

test_support::tests!(
    Env;
    registers_client_and_writes_secret,
    restart_registers_nothing_new,
    delete_policy_deletes_the_client,
    orphan_policy_keeps_client_and_secret,
    deletion_without_delete_support_never_blocks,
    foreign_secret_is_a_conflict,
    younger_object_gets_name_conflict,
    pre_created_secret_is_adopted,
    existing_foreign_client_is_reported,
    rotation_replaces_credentials,
    deleted_secret_is_recovered,
    deleted_secret_without_delete_support_stalls,
    client_deleted_in_collibra_is_registered_again,
    collibra_outage_is_retried_then_converges,
    collibra_rejection_carries_its_message,
    crash_window_after_registration_is_recovered,
    grant_type_change_is_applied_with_put,
    invalid_objects_are_rejected_at_admission,
    metrics_and_health_endpoints,
);

async fn registers_client_and_writes_secret(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "register").await?;
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/billing-etl.yaml"
    ))?;
    f.apply(&example).await?;
    f.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=60s",
        "oauthclient/billing-etl",
    ])
    .await?;
    let o = f
        .wait_reason("billing-etl", Reason::Registered.as_str())
        .await?;
    let status = o.status.clone().unwrap_or_default();
    ensure!(condition(&o, "Stalled").as_deref() == Some("False"));
    ensure!(condition(&o, "Reconciling").as_deref() == Some("False"));
    ensure!(status.observed_generation == o.metadata.generation);
    ensure!(status.secret_name.as_deref() == Some("billing-etl-oauth"));

    let data = f
        .secret_data("billing-etl-oauth")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no Secret"))?;
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    ensure!(
        keys == [
            "client_id",
            "client_name",
            "client_secret",
            "token_endpoint_auth_method",
            "token_url"
        ],
        "keys {keys:?}"
    );
    ensure!(Some(&data["client_id"]) == status.client_id.as_ref());
    ensure!(data["client_name"] == "billing-etl");
    ensure!(data["token_url"] == format!("{}/rest/oauth/v2/token", f.sim.url()));
    ensure!(data["token_endpoint_auth_method"] == "client_secret_post");
    ensure!(
        token_accepted(&f.sim.url(), &data["client_id"], &data["client_secret"]).await?,
        "the simulator's token endpoint refused the Secret's credentials"
    );

    let secret = f.secrets().get("billing-etl-oauth").await?;
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    ensure!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str)
            == Some("collibra-oauth-operator")
    );
    ensure!(
        labels.get("team").map(String::as_str) == Some("billing"),
        "secretTemplate labels"
    );
    let owner = secret.metadata.owner_references.clone().unwrap_or_default();
    ensure!(
        owner.len() == 1
            && owner[0].controller == Some(true)
            && owner[0].uid == o.metadata.uid.clone().unwrap_or_default()
    );
    ensure!(secret.type_.as_deref() == Some("Opaque"));

    let clients = f.collibra.clients();
    ensure!(
        clients.len() == 1
            && clients[0].client_name == "billing-etl"
            && clients[0].software_id.as_deref() == Some("etl-suite")
    );
    ensure!(f.collibra.stats().requests_for("register") == 1);
    ensure!(
        f.event_reasons("billing-etl")
            .await?
            .contains(&EventReason::Registered.as_str().to_owned())
    );
    // The spec is never written by the operator: only kubectl manages it.
    let managers: Vec<String> = o
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.get("f:spec").is_some())
        })
        .filter_map(|m| m.manager)
        .collect();
    ensure!(
        !managers.iter().any(|m| m == "collibra-oauth-operator"),
        "spec managers: {managers:?}"
    );
    f.finish().await
}

async fn restart_registers_nothing_new(env: Arc<Env>) -> anyhow::Result<()> {
    let mut f = Fixture::new(env, "restart").await?;
    for i in 0..3 {
        f.apply(&manifest(&format!("c{i}"), &format!("restart-{i}"), ""))
            .await?;
    }
    for i in 0..3 {
        f.wait_reason(&format!("c{i}"), Reason::Registered.as_str())
            .await?;
    }
    let before = f.collibra.stats();
    f.op.restart().await?;
    // Wait for the new process to be ready and to have looked at everything.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = f.op.http_get("/readyz").await
            && f.collibra.stats().requests_for("list") > before.requests_for("list")
        {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!("restarted operator never listed clients\n{}", f.op.log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = f.collibra.stats();
    ensure!(
        after.requests_for("register") == 3,
        "registered again: {:?}",
        after.requests
    );
    ensure!(
        after.requests_for("list") - before.requests_for("list") == 1,
        "one list serves all objects after a restart: {:?}",
        after.requests
    );
    ensure!(f.collibra.clients().len() == 3);
    f.finish().await
}

async fn delete_policy_deletes_the_client(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "delete").await?;
    f.apply(&manifest("gone", "gone-client", "")).await?;
    f.wait_reason("gone", Reason::Registered.as_str()).await?;
    f.oauth().delete("gone", &DeleteParams::default()).await?;
    f.wait_gone("gone").await?;
    ensure!(f.collibra.clients().is_empty(), "client left in Collibra");
    ensure!(f.collibra.stats().requests_for("delete") == 1);
    // The Secret follows its owner (garbage collection).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while f.secrets().get_opt("gone").await?.is_some() {
        ensure!(
            std::time::Instant::now() < deadline,
            "Secret not garbage-collected"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    f.finish().await
}

async fn orphan_policy_keeps_client_and_secret(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "orphan").await?;
    f.apply(&manifest(
        "keep",
        "keep-client",
        "  deletionPolicy: Orphan\n",
    ))
    .await?;
    f.wait_reason("keep", Reason::Registered.as_str()).await?;
    f.oauth().delete("keep", &DeleteParams::default()).await?;
    f.wait_gone("keep").await?;
    ensure!(f.collibra.clients().len() == 1);
    ensure!(f.collibra.stats().requests_for("delete") == 0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = f.secrets().get("keep").await?;
    ensure!(
        s.metadata.owner_references.unwrap_or_default().is_empty(),
        "Secret still owned"
    );
    // Re-creating the object adopts the orphaned client.
    f.apply(&manifest(
        "keep",
        "keep-client",
        "  deletionPolicy: Orphan\n",
    ))
    .await?;
    f.wait_reason("keep", Reason::Registered.as_str()).await?;
    ensure!(
        f.collibra.stats().requests_for("register") == 1,
        "re-registered instead of adopting"
    );
    f.finish().await
}

async fn deletion_without_delete_support_never_blocks(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "nodelete",
        Options {
            sim: SimConfig {
                delete_enabled: false,
                ..SimConfig::default()
            },
            ..Options::default()
        },
    )
    .await?;
    f.apply(&manifest("stuck", "stuck-client", "")).await?;
    f.wait_reason("stuck", Reason::Registered.as_str()).await?;
    f.oauth().delete("stuck", &DeleteParams::default()).await?;
    f.wait_gone("stuck").await?;
    ensure!(
        f.collibra.clients().len() == 1,
        "the client cannot have been deleted"
    );
    ensure!(
        f.event_reasons("stuck")
            .await?
            .contains(&EventReason::DeleteUnsupported.as_str().to_owned())
    );
    // The credentials of the client that remains are not lost.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let data = f
        .secret_data("stuck")
        .await?
        .ok_or_else(|| anyhow::anyhow!("Secret lost"))?;
    ensure!(
        f.collibra
            .verify_credentials(&data["client_id"], &data["client_secret"])
    );
    f.finish().await
}

async fn foreign_secret_is_a_conflict(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "secretconflict").await?;
    f.kubectl(&[
        "create",
        "secret",
        "generic",
        "taken",
        "--from-literal=password=keep-me",
    ])
    .await?;
    f.apply(&manifest("taken", "taken-client", "")).await?;
    let o = f
        .wait_reason("taken", Reason::SecretConflict.as_str())
        .await?;
    ensure!(condition(&o, "Stalled").as_deref() == Some("True"));
    ensure!(
        f.collibra.stats().requests_for("register") == 0,
        "registered despite the conflict"
    );
    let data = f.secret_data("taken").await?.unwrap_or_default();
    ensure!(
        data.len() == 1 && data["password"] == "keep-me",
        "foreign Secret was modified"
    );
    ensure!(
        f.event_reasons("taken").await?.contains(
            &EventReason::Condition(Reason::SecretConflict)
                .as_str()
                .to_owned()
        )
    );
    f.finish().await
}

async fn younger_object_gets_name_conflict(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "nameconflict").await?;
    f.apply(&manifest("first", "shared-name", "")).await?;
    f.wait_reason("first", Reason::Registered.as_str()).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    f.apply(&manifest("second", "shared-name", "")).await?;
    let o = f
        .wait_reason("second", Reason::NameConflict.as_str())
        .await?;
    ensure!(condition(&o, "Stalled").as_deref() == Some("True"));
    let msg = o
        .ready_condition()
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ensure!(
        msg.contains("first"),
        "message names the older object: {msg}"
    );
    ensure!(f.collibra.clients().len() == 1);
    // Deleting the loser never touches the winner's client.
    f.apply(&manifest("third", "shared-name", "")).await?;
    f.wait_reason("third", Reason::NameConflict.as_str())
        .await?;
    f.oauth().delete("third", &DeleteParams::default()).await?;
    f.wait_gone("third").await?;
    ensure!(f.collibra.clients().len() == 1);
    ensure!(
        ready_reason(&f.oauth().get("first").await?).as_deref()
            == Some(Reason::Registered.as_str())
    );
    // When the winner goes, the next oldest takes the name over at once.
    f.oauth().delete("first", &DeleteParams::default()).await?;
    f.wait_gone("first").await?;
    let o = f.wait_reason("second", Reason::Registered.as_str()).await?;
    let clients = f.collibra.clients();
    ensure!(
        clients.len() == 1
            && Some(&clients[0].client_id) == o.status.and_then(|s| s.client_id).as_ref()
    );
    f.finish().await
}

async fn pre_created_secret_is_adopted(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "adopt").await?;
    let existing = f
        .collibra
        .insert_client("legacy-app", &["client_credentials"]);
    f.kubectl(&[
        "create",
        "secret",
        "generic",
        "legacy",
        &format!("--from-literal=client_id={}", existing.client_id),
        &format!("--from-literal=client_secret={}", existing.client_secret),
    ])
    .await?;
    f.kubectl(&[
        "label",
        "secret",
        "legacy",
        "app.kubernetes.io/managed-by=collibra-oauth-operator",
    ])
    .await?;
    f.apply(&manifest("legacy", "legacy-app", "")).await?;
    let o = f.wait_reason("legacy", Reason::Registered.as_str()).await?;
    ensure!(o.status.and_then(|s| s.client_id) == Some(existing.client_id.clone()));
    ensure!(f.collibra.stats().requests_for("register") == 0);
    let s = f.secrets().get("legacy").await?;
    ensure!(
        !s.metadata.owner_references.unwrap_or_default().is_empty(),
        "adopted Secret gets an owner"
    );
    let data = f.secret_data("legacy").await?.unwrap_or_default();
    ensure!(data["client_secret"] == existing.client_secret && data["client_name"] == "legacy-app");
    ensure!(
        f.event_reasons("legacy")
            .await?
            .contains(&EventReason::Adopted.as_str().to_owned())
    );
    f.finish().await
}

async fn existing_foreign_client_is_reported(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "foreign").await?;
    let theirs = f
        .collibra
        .insert_client("someone-elses", &["client_credentials"]);
    f.apply(&manifest("mine", "someone-elses", "")).await?;
    let o = f
        .wait_reason("mine", Reason::ClientExistsWithoutSecret.as_str())
        .await?;
    ensure!(condition(&o, "Stalled").as_deref() == Some("True"));
    let msg = o
        .ready_condition()
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ensure!(msg.contains("adopt"), "message says what to do: {msg}");
    ensure!(f.collibra.stats().requests_for("register") == 0);
    ensure!(
        f.collibra.stats().requests_for("delete") == 0,
        "a foreign client must never be deleted"
    );
    ensure!(
        f.collibra
            .clients()
            .iter()
            .any(|c| c.client_id == theirs.client_id)
    );
    f.finish().await
}

async fn rotation_replaces_credentials(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "rotate").await?;
    f.apply(&manifest("rot", "rot-client", "")).await?;
    let o = f.wait_reason("rot", Reason::Registered.as_str()).await?;
    let old_id = o.status.and_then(|s| s.client_id).unwrap_or_default();
    f.kubectl(&[
        "annotate",
        "oauthclient",
        "rot",
        "oauth.collibra.dev/rotate=2026-11-26",
    ])
    .await?;
    let o = f
        .wait_for("rot", "rotated", |o| {
            o.status.as_ref().and_then(|s| s.last_rotation.as_deref()) == Some("2026-11-26")
                && ready_reason(o).as_deref() == Some(Reason::Registered.as_str())
        })
        .await?;
    let new_id = o.status.and_then(|s| s.client_id).unwrap_or_default();
    ensure!(new_id != old_id, "client id unchanged after rotation");
    let clients = f.collibra.clients();
    ensure!(
        clients.len() == 1 && clients[0].client_id == new_id,
        "old client must be gone"
    );
    let data = f.secret_data("rot").await?.unwrap_or_default();
    ensure!(
        data["client_id"] == new_id
            && f.collibra
                .verify_credentials(&new_id, &data["client_secret"])
    );
    ensure!(
        f.event_reasons("rot")
            .await?
            .contains(&EventReason::Rotated.as_str().to_owned())
    );
    // The same value does not rotate again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(f.collibra.stats().requests_for("register") == 2);
    f.finish().await
}

async fn deleted_secret_is_recovered(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "secretdeleted").await?;
    f.apply(&manifest(
        "lost",
        "lost-client",
        "  replacementPolicy: Automatic\n",
    ))
    .await?;
    let o = f.wait_reason("lost", Reason::Registered.as_str()).await?;
    let old_id = o.status.and_then(|s| s.client_id).unwrap_or_default();
    f.secrets().delete("lost", &DeleteParams::default()).await?;
    let o = f
        .wait_for("lost", "re-registered", |o| {
            ready_reason(o).as_deref() == Some(Reason::Registered.as_str())
                && o.status.as_ref().and_then(|s| s.client_id.as_deref()) != Some(old_id.as_str())
        })
        .await?;
    let new_id = o
        .status
        .as_ref()
        .and_then(|s| s.client_id.clone())
        .unwrap_or_default();
    let data = f.secret_data("lost").await?.unwrap_or_default();
    ensure!(
        data["client_id"] == new_id
            && f.collibra
                .verify_credentials(&new_id, &data["client_secret"])
    );
    ensure!(
        f.collibra.clients().len() == 1,
        "old client must have been deleted"
    );
    let repl = o
        .status
        .and_then(|s| s.last_replacement)
        .ok_or_else(|| anyhow::anyhow!("status.lastReplacement is missing"))?;
    ensure!(
        repl.previous_client_id == old_id
            && repl.client_id == new_id
            && repl.cause == collibra_oauth_operator::api::ReplacementCause::LostSecret,
        "{repl:?}"
    );
    ensure!(
        f.event_reasons("lost")
            .await?
            .contains(&EventReason::Replaced.as_str().to_owned())
    );
    f.finish().await
}

async fn deleted_secret_without_delete_support_stalls(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "secretdeletednodel",
        Options {
            sim: SimConfig {
                delete_enabled: false,
                ..SimConfig::default()
            },
            ..Options::default()
        },
    )
    .await?;
    f.apply(&manifest(
        "lost",
        "lost-client",
        "  replacementPolicy: Automatic\n",
    ))
    .await?;
    f.wait_reason("lost", Reason::Registered.as_str()).await?;
    f.secrets().delete("lost", &DeleteParams::default()).await?;
    let o = f
        .wait_reason("lost", Reason::ClientExistsWithoutSecret.as_str())
        .await?;
    ensure!(condition(&o, "Stalled").as_deref() == Some("True"));
    let msg = o
        .ready_condition()
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ensure!(msg.contains("registered by this operator"), "{msg}");
    ensure!(f.collibra.clients().len() == 1 && f.collibra.stats().requests_for("register") == 1);
    f.finish().await
}

async fn client_deleted_in_collibra_is_registered_again(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "drift",
        Options {
            resync: "2s",
            ..Options::default()
        },
    )
    .await?;
    f.apply(&manifest("drift", "drift-client", "")).await?;
    let o = f.wait_reason("drift", Reason::Registered.as_str()).await?;
    let old_id = o.status.and_then(|s| s.client_id).unwrap_or_default();
    ensure!(f.collibra.remove_client(&old_id));
    let o = f
        .wait_for("drift", "registered again", |o| {
            ready_reason(o).as_deref() == Some(Reason::Registered.as_str())
                && o.status
                    .as_ref()
                    .and_then(|s| s.client_id.as_deref())
                    .is_some_and(|id| id != old_id)
        })
        .await?;
    let new_id = o.status.and_then(|s| s.client_id).unwrap_or_default();
    let data = f.secret_data("drift").await?.unwrap_or_default();
    ensure!(
        data["client_id"] == new_id
            && f.collibra
                .verify_credentials(&new_id, &data["client_secret"])
    );
    ensure!(
        f.event_reasons("drift")
            .await?
            .contains(&EventReason::Recreated.as_str().to_owned())
    );
    f.finish().await
}

async fn collibra_outage_is_retried_then_converges(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "outage").await?;
    f.collibra.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    f.apply(&manifest("o", "outage-client", "")).await?;
    let o = f
        .wait_reason("o", Reason::CollibraUnavailable.as_str())
        .await?;
    ensure!(condition(&o, "Reconciling").as_deref() == Some("True"));
    ensure!(condition(&o, "Stalled").as_deref() == Some("False"));
    f.collibra.set_faults(Faults::default());
    f.wait_reason("o", Reason::Registered.as_str()).await?;
    ensure!(f.collibra.clients().len() == 1);
    f.finish().await
}

async fn collibra_rejection_carries_its_message(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "rejected").await?;
    f.collibra.script(ScriptedFault {
        operation: Some("register".into()),
        after: 0,
        action: ScriptAction::Body {
            status: 400,
            body: r#"{"error":"invalid_client_metadata","error_description":"software_id etl is not allowed here"}"#.into(),
        },
    });
    f.apply(&manifest("r", "rejected-client", "")).await?;
    let o = f
        .wait_reason("r", Reason::CollibraRejected.as_str())
        .await?;
    ensure!(condition(&o, "Stalled").as_deref() == Some("True"));
    let msg = o
        .ready_condition()
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ensure!(
        msg.contains("software_id etl is not allowed here"),
        "Collibra's message: {msg}"
    );
    f.finish().await
}

async fn crash_window_after_registration_is_recovered(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "crashwindow").await?;
    // Collibra registers the client, then the connection drops before the
    // 201 reaches the operator: the secret is lost in transit.
    f.collibra.script(ScriptedFault {
        operation: Some("register".into()),
        after: 0,
        action: ScriptAction::DropAfterCommit,
    });
    f.apply(&manifest("w", "window-client", "")).await?;
    let o = f.wait_reason("w", Reason::Registered.as_str()).await?;
    let id = o.status.and_then(|s| s.client_id).unwrap_or_default();
    let clients = f.collibra.clients();
    ensure!(
        clients.len() == 1 && clients[0].client_id == id,
        "exactly one client, the one in the Secret: {clients:?}"
    );
    let data = f.secret_data("w").await?.unwrap_or_default();
    ensure!(f.collibra.verify_credentials(&id, &data["client_secret"]));
    ensure!(
        f.collibra.stats().requests_for("register") == 2
            && f.collibra.stats().requests_for("delete") == 1
    );
    f.finish().await
}

async fn grant_type_change_is_applied_with_put(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "grants").await?;
    f.apply(&manifest("g", "grants-client", "")).await?;
    f.wait_reason("g", Reason::Registered.as_str()).await?;
    f.oauth()
        .patch(
            "g",
            &PatchParams::default(),
            // A user application needs redirect URIs (admission says so).
            &Patch::Merge(serde_json::json!({"spec": {"grantTypes": ["client_credentials", "authorization_code"], "redirectUris": ["https://grants.example/cb"]}})),
        )
        .await?;
    f.wait_for("g", "updated", |o| {
        o.status.as_ref().is_some_and(|s| {
            s.grant_types.len() == 2 && s.observed_generation == o.metadata.generation
        })
    })
    .await?;
    let c = &f.collibra.clients()[0];
    let mut g = c.grant_types.clone();
    g.sort();
    ensure!(g == ["authorization_code", "client_credentials"], "{g:?}");
    ensure!(
        f.collibra.stats().requests_for("update") == 1
            && f.collibra.stats().requests_for("register") == 1
    );
    f.finish().await
}

async fn invalid_objects_are_rejected_at_admission(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "admission",
        Options {
            start_operator: false,
            ..Options::default()
        },
    )
    .await?;
    let cases: &[(&str, &str, &str)] = &[
        ("empty name", "  clientName: \"\"\n", "spec.clientName"),
        (
            "bad characters",
            "  clientName: \"bad/name!\"\n",
            "spec.clientName",
        ),
        (
            "overlong name",
            &format!("  clientName: {}\n", "a".repeat(101)),
            "spec.clientName",
        ),
        (
            "missing name",
            "  grantTypes: [client_credentials]\n",
            "spec.clientName",
        ),
        (
            "unknown grant",
            "  clientName: ok\n  grantTypes: [password]\n",
            "spec.grantTypes[0]",
        ),
        (
            "duplicate grant",
            "  clientName: ok\n  grantTypes: [client_credentials, client_credentials]\n",
            "spec.grantTypes[1]",
        ),
        (
            "empty grants",
            "  clientName: ok\n  grantTypes: []\n",
            "spec.grantTypes",
        ),
        (
            "bad secret name",
            "  clientName: ok\n  secretName: Not_Valid\n",
            "spec.secretName",
        ),
        (
            "bad policy",
            "  clientName: ok\n  deletionPolicy: Keep\n",
            "spec.deletionPolicy",
        ),
        (
            "wrong type",
            "  clientName: ok\n  grantTypes: client_credentials\n",
            "spec.grantTypes",
        ),
    ];
    let mut failures = Vec::new();
    for (what, spec, field) in cases {
        let yaml = format!(
            "apiVersion: oauth.collibra.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: bad\nspec:\n{spec}"
        );
        match f.apply(&yaml).await {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(e) if !e.to_string().contains(field) => {
                failures.push(format!("{what}: message lacks {field}: {e}"))
            }
            Err(_) => {}
        }
    }
    // Immutable fields.
    f.apply(&manifest(
        "fixed",
        "fixed-name",
        "  secretName: fixed-secret\n",
    ))
    .await?;
    for (what, yaml, field) in [
        (
            "clientName changed",
            manifest("fixed", "other-name", "  secretName: fixed-secret\n"),
            "clientName is immutable",
        ),
        (
            "secretName changed",
            manifest("fixed", "fixed-name", "  secretName: other\n"),
            "secretName is immutable",
        ),
        (
            "secretName removed",
            manifest("fixed", "fixed-name", ""),
            "secretName is immutable",
        ),
    ] {
        match f.apply(&yaml).await {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(e) if !e.to_string().contains(field) => {
                failures.push(format!("{what}: message lacks {field}: {e}"))
            }
            Err(_) => {}
        }
    }
    ensure!(
        failures.is_empty(),
        "admission gaps:\n{}",
        failures.join("\n")
    );
    f.finish().await
}

async fn metrics_and_health_endpoints(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "metrics").await?;
    f.apply(&manifest("m", "metrics-client", "")).await?;
    f.wait_reason("m", Reason::Registered.as_str()).await?;
    let (code, _) = f.op.http_get("/healthz").await?;
    ensure!(code == 200);
    let (code, body) = f.op.http_get("/readyz").await?;
    ensure!(
        code == 200,
        "/readyz answered {code} {body}\n{}",
        f.op.log()
    );
    let (code, text) = f.op.http_get("/metrics").await?;
    ensure!(code == 200);
    for needle in [
        r#"collibra_oauth_collibra_requests_total{operation="register",status="201"} 1"#,
        r#"collibra_oauth_collibra_requests_total{operation="list",status="200"} 1"#,
        r#"collibra_oauth_objects{ready="True",reason="Registered"} 1"#,
        "collibra_oauth_reconciles_total",
        "collibra_oauth_collibra_request_duration_seconds_bucket",
        r#"collibra_oauth_kubernetes_requests_total{method="PATCH"}"#,
    ] {
        ensure!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    let mut f = f;
    ensure!(
        f.op.terminate().await?,
        "SIGTERM must end the operator cleanly"
    );
    f.finish().await
}

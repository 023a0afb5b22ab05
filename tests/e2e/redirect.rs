//! `spec.redirectUris`: user applications. What admission
//! refuses (each rule, with the field named), registration with redirect
//! URIs, a change applied in place or reported, and the instances that
//! reject or ignore the field.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::ensure;
use collibra_sim::{RedirectUris, SimConfig};
use kube::api::{Patch, PatchParams};

use collibra_oauth_operator::controller::reasons::{EventReason, Reason};
use test_support::{Env, Fixture, Options, manifest, ready_reason};

test_support::tests!(
    Env;
    redirect_uris_are_checked_at_admission,
    redirect_uris_are_registered_and_updated_in_place,
    a_redirect_uri_change_without_update_support_is_reported_not_replaced,
    a_redirect_uri_change_without_update_support_replaces_under_automatic,
    an_instance_that_rejects_redirect_uris_is_collibra_rejected,
    an_instance_that_ignores_redirect_uris_keeps_the_credentials_and_says_so,
);

const CODE: &str = "  grantTypes: [authorization_code]\n";

fn user_app(name: &str, client_name: &str, uris: &[&str]) -> String {
    let list: Vec<String> = uris.iter().map(|u| format!("\"{u}\"")).collect();
    manifest(
        name,
        client_name,
        &format!("{CODE}  redirectUris: [{}]\n", list.join(", ")),
    )
}

fn ready_message(o: &collibra_oauth_operator::api::OAuthClient) -> String {
    o.ready_condition()
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

async fn redirect_uris_are_checked_at_admission(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "redirect-admission",
        Options {
            start_operator: false,
            ..Options::default()
        },
    )
    .await?;
    let many: Vec<String> = (0..21)
        .map(|i| format!("\"https://app.example/cb{i}\""))
        .collect();
    let many = format!("{CODE}  redirectUris: [{}]\n", many.join(", "));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "authorization_code without redirect URIs",
            CODE.to_owned(),
            "spec.redirectUris is required when spec.grantTypes contains authorization_code",
        ),
        (
            "redirect URIs without authorization_code",
            "  redirectUris: [\"https://app.example/cb\"]\n".to_owned(),
            "spec.redirectUris is only for clients with the authorization_code grant",
        ),
        (
            "relative URI",
            format!("{CODE}  redirectUris: [\"/callback\"]\n"),
            "spec.redirectUris: each entry must be an absolute http or https URL",
        ),
        (
            "other scheme",
            format!("{CODE}  redirectUris: [\"ftp://app.example/cb\"]\n"),
            "spec.redirectUris: each entry must be an absolute http or https URL",
        ),
        (
            "fragment",
            format!("{CODE}  redirectUris: [\"https://app.example/cb#top\"]\n"),
            "spec.redirectUris: a redirect URI must not contain a fragment",
        ),
        (
            "wildcard",
            format!("{CODE}  redirectUris: [\"https://*.app.example/cb\"]\n"),
            "spec.redirectUris: wildcards (*) are not allowed",
        ),
        (
            "plain http to a remote host",
            format!("{CODE}  redirectUris: [\"http://app.example/cb\"]\n"),
            "spec.redirectUris: http is allowed only for loopback hosts",
        ),
        ("too many", many, "spec.redirectUris"),
        (
            "twice the same",
            format!(
                "{CODE}  redirectUris: [\"https://app.example/cb\", \"https://app.example/cb\"]\n"
            ),
            "spec.redirectUris[1]",
        ),
        (
            "whitespace",
            format!("{CODE}  redirectUris: [\"https://app.example/a b\"]\n"),
            "spec.redirectUris[0]",
        ),
    ];
    let mut failures = Vec::new();
    for (what, spec, field) in &cases {
        match f.apply(&manifest("bad", "bad-name", spec)).await {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(e) if !e.to_string().contains(field) => {
                failures.push(format!("{what}: message lacks {field:?}: {e}"))
            }
            Err(_) => {}
        }
    }
    // Loopback hosts may use http; https anywhere; a query is fine.
    let good = user_app(
        "good",
        "good-name",
        &[
            "http://localhost:8080/callback",
            "http://127.0.0.1/cb",
            "http://[::1]:3000/cb",
            "https://app.example/oauth/callback?tenant=a",
        ],
    );
    if let Err(e) = f.apply(&good).await {
        failures.push(format!("valid redirect URIs refused: {e}"));
    }
    // The example the guide shows.
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/user-application.yaml"
    ))?;
    if let Err(e) = f.apply(&example).await {
        failures.push(format!("examples/user-application.yaml refused: {e}"));
    }
    // Integration applications are unchanged: no redirectUris needed.
    if let Err(e) = f.apply(&manifest("plain", "plain-name", "")).await {
        failures.push(format!("a client_credentials client was refused: {e}"));
    }
    ensure!(
        failures.is_empty(),
        "admission gaps:\n{}",
        failures.join("\n")
    );
    f.finish().await
}

async fn redirect_uris_are_registered_and_updated_in_place(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "redirect-update").await?;
    let yaml = format!(
        "{}  secretTemplate:\n    data:\n      redirect_uris: \"{{{{ redirect_uris | join(' ') }}}}\"\n",
        user_app(
            "portal",
            "portal-app",
            &["https://portal.example/cb", "http://localhost:8080/cb"]
        )
    );
    f.apply(&yaml).await?;
    let o = f.wait_reason("portal", Reason::Registered.as_str()).await?;
    let status = o.status.clone().unwrap_or_default();
    let id = status.client_id.clone().unwrap_or_default();
    ensure!(
        status.redirect_uris == ["https://portal.example/cb", "http://localhost:8080/cb"],
        "status: {status:?}"
    );
    let record = &f.collibra.clients()[0];
    ensure!(
        record.redirect_uris == ["https://portal.example/cb", "http://localhost:8080/cb"],
        "sent to Collibra: {record:?}"
    );
    let data = f.secret_data("portal").await?.unwrap_or_default();
    ensure!(
        data.get("redirect_uris").map(String::as_str)
            == Some("https://portal.example/cb http://localhost:8080/cb"),
        "rendered: {:?}",
        data.get("redirect_uris")
    );

    f.oauth()
        .patch(
            "portal",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"redirectUris": ["https://portal.example/v2/cb"]}}),
            ),
        )
        .await?;
    let o = f
        .wait_for("portal", "redirect URIs updated", |o| {
            o.status.as_ref().is_some_and(|s| {
                s.redirect_uris == ["https://portal.example/v2/cb"]
                    && s.observed_generation == o.metadata.generation
            })
        })
        .await?;
    ensure!(ready_reason(&o).as_deref() == Some(Reason::Registered.as_str()));
    let record = &f.collibra.clients()[0];
    ensure!(
        record.client_id == id && record.redirect_uris == ["https://portal.example/v2/cb"],
        "updated in place: {record:?}"
    );
    let stats = f.collibra.stats();
    ensure!(
        stats.requests_for("register") == 1
            && stats.requests_for("update") == 1
            && stats.requests_for("delete") == 0,
        "{stats:?}"
    );
    // The Secret follows the spec (a new rendered-inputs digest).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let data = f.secret_data("portal").await?.unwrap_or_default();
        if data.get("redirect_uris").map(String::as_str) == Some("https://portal.example/v2/cb") {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the Secret was not rendered again: {:?}",
            data.get("redirect_uris")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events = f.event_reasons("portal").await?;
    ensure!(
        events
            .iter()
            .any(|e| e == EventReason::RedirectUrisUpdated.as_str()),
        "{events:?}"
    );
    f.finish().await
}

async fn a_redirect_uri_change_without_update_support_is_reported_not_replaced(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "redirect-noput",
        Options {
            sim: SimConfig {
                put_enabled: false,
                ..SimConfig::default()
            },
            ..Options::default()
        },
    )
    .await?;
    f.apply(&user_app("p", "noput-app", &["https://p.example/cb"]))
        .await?;
    let o = f.wait_reason("p", Reason::Registered.as_str()).await?;
    let id = o.status.and_then(|s| s.client_id).unwrap_or_default();
    f.oauth()
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"redirectUris": ["https://p.example/v2/cb"]}}),
            ),
        )
        .await?;
    let o = f
        .wait_for("p", "drift reported", |o| {
            o.status
                .as_ref()
                .is_some_and(|s| s.observed_generation == o.metadata.generation)
                && ready_message(o).contains("does not support updates")
        })
        .await?;
    let message = ready_message(&o);
    ensure!(
        message.contains("https://p.example/v2/cb") && message.contains("by hand"),
        "says what to do: {message}"
    );
    let events = f.event_reasons("p").await?;
    ensure!(
        events
            .iter()
            .any(|e| e == EventReason::RedirectUrisDrift.as_str()),
        "{events:?}"
    );
    let clients = f.collibra.clients();
    ensure!(
        clients.len() == 1
            && clients[0].client_id == id
            && clients[0].redirect_uris == ["https://p.example/cb"],
        "never replaced: {clients:?}"
    );
    ensure!(f.collibra.stats().requests_for("register") == 1);
    f.finish().await
}

async fn a_redirect_uri_change_without_update_support_replaces_under_automatic(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "redirect-auto",
        Options {
            sim: SimConfig {
                put_enabled: false,
                ..SimConfig::default()
            },
            ..Options::default()
        },
    )
    .await?;
    let yaml = format!(
        "{}  replacementPolicy: Automatic\n",
        user_app("a", "auto-app", &["https://a.example/cb"])
    );
    f.apply(&yaml).await?;
    let o = f.wait_reason("a", Reason::Registered.as_str()).await?;
    let old = o.status.and_then(|s| s.client_id).unwrap_or_default();
    f.oauth()
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"redirectUris": ["https://a.example/v2/cb"]}}),
            ),
        )
        .await?;
    // The PUT is tried first (405), then the policy replaces the client.
    let o = f
        .wait_for("a", "replaced", |o| {
            o.status.as_ref().is_some_and(|s| {
                s.last_replacement.as_ref().is_some_and(|r| {
                    r.cause == collibra_oauth_operator::api::ReplacementCause::RedirectUrisChanged
                }) && s.redirect_uris == ["https://a.example/v2/cb"]
            })
        })
        .await?;
    let status = o.status.clone().unwrap_or_default();
    let new = status.client_id.clone().unwrap_or_default();
    let clients = f.collibra.clients();
    ensure!(
        new != old
            && clients.len() == 1
            && clients[0].client_id == new
            && clients[0].redirect_uris == ["https://a.example/v2/cb"],
        "old {old}, new {new}: {clients:?}"
    );
    let data = f.secret_data("a").await?.unwrap_or_default();
    ensure!(
        data.get("client_id") == Some(&new)
            && f.collibra
                .verify_credentials(&new, data.get("client_secret").map_or("", String::as_str)),
        "the Secret holds the new client's credentials"
    );
    let events = f.event_reasons("a").await?;
    ensure!(
        events.iter().any(|e| e == EventReason::Replaced.as_str()),
        "{events:?}"
    );
    f.finish().await
}

async fn an_instance_that_rejects_redirect_uris_is_collibra_rejected(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "redirect-rejected",
        Options {
            sim: SimConfig {
                redirect_uris: RedirectUris::Rejected,
                ..SimConfig::default()
            },
            ..Options::default()
        },
    )
    .await?;
    f.apply(&user_app("r", "rejected-app", &["https://r.example/cb"]))
        .await?;
    let o = f
        .wait_reason("r", Reason::CollibraRejected.as_str())
        .await?;
    let message = ready_message(&o);
    ensure!(
        message.contains("redirect_uris"),
        "Collibra's message, naming the field: {message}"
    );
    ensure!(f.collibra.clients().is_empty(), "nothing registered");
    // Integration applications on the same instance are unaffected.
    f.apply(&manifest("plain", "plain-app", "")).await?;
    f.wait_reason("plain", Reason::Registered.as_str()).await?;
    ensure!(f.collibra.stats().responses_for("register", "400") == 1);
    f.finish().await
}

async fn an_instance_that_ignores_redirect_uris_keeps_the_credentials_and_says_so(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "redirect-ignored",
        Options {
            sim: SimConfig {
                redirect_uris: RedirectUris::Ignored,
                ..SimConfig::default()
            },
            ..Options::default()
        },
    )
    .await?;
    f.apply(&user_app("i", "ignored-app", &["https://i.example/cb"]))
        .await?;
    let o = f
        .wait_reason("i", Reason::CollibraRejected.as_str())
        .await?;
    let message = ready_message(&o);
    ensure!(
        message.contains("ignored redirect_uris"),
        "says the field was ignored: {message}"
    );
    // The secret Collibra showed once is kept.
    let id = o.status.and_then(|s| s.client_id).unwrap_or_default();
    let data = f.secret_data("i").await?.unwrap_or_default();
    ensure!(
        f.collibra
            .verify_credentials(&id, data.get("client_secret").map_or("", String::as_str)),
        "credentials in the Secret"
    );
    // Looked at again: an update is tried (it is ignored too), nothing is
    // registered twice.
    f.oauth()
        .patch(
            "i",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                "oauth.collibra.dev/reconcile-requested-at": "now-1"
            }}})),
        )
        .await?;
    let o = f
        .wait_for("i", "update tried", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.last_handled_reconcile_at.as_deref())
                == Some("now-1")
        })
        .await?;
    ensure!(
        ready_reason(&o).as_deref() == Some(Reason::CollibraRejected.as_str()),
        "{:?}",
        o.status
    );
    let stats = f.collibra.stats();
    ensure!(
        stats.requests_for("register") == 1 && stats.requests_for("update") == 1,
        "{stats:?}"
    );
    ensure!(f.collibra.clients().len() == 1);
    f.finish().await
}

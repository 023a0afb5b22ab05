//! `spec.secretTemplate`: what the API server accepts and
//! rejects, with messages that name the problem.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{bail, ensure};
use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{WatchEvent, WatchParams};

use collibra_oauth_operator::controller::reasons::{EventReason, Reason};
use test_support::{Env, Fixture, Options, manifest, ready_reason};

test_support::tests!(
    Env;
    secret_templates_are_checked_at_admission,
    template_examples_are_accepted,
    each_shape_is_written,
    template_edits_on_a_ready_object_keep_the_credentials,
    reconcile_now_annotation_refreshes_at_once,
    invalid_templates_stall_and_keep_the_secret,
    half_done_type_change_is_finished_from_the_backup,
);

/// The Secret's data as strings.
fn data_of(s: &Secret) -> BTreeMap<String, String> {
    s.data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

fn keys_of(s: &Secret) -> Vec<String> {
    data_of(s).into_keys().collect()
}

/// Waits until the Secret `name` satisfies `pred`.
async fn wait_secret(
    f: &Fixture,
    name: &str,
    what: &str,
    pred: impl Fn(&Secret) -> bool,
) -> anyhow::Result<Secret> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(s) = f.secrets().get_opt(name).await? {
            if pred(&s) {
                return Ok(s);
            }
            last = Some(s);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "Secret {name} never became {what}; last: type {:?}, keys {:?}, labels {:?}, annotations {:?}\n--- operator log (tail) ---\n{}",
        last.as_ref().and_then(|s| s.type_.clone()),
        last.as_ref().map(keys_of),
        last.as_ref().and_then(|s| s.metadata.labels.clone()),
        last.as_ref().and_then(|s| s.metadata.annotations.clone()),
        f.op.log()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// Counts changes (modified, deleted, created) of one Secret from now on.
struct WriteCounter {
    count: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl WriteCounter {
    fn stop(self) -> usize {
        self.task.abort();
        self.count.load(Ordering::SeqCst)
    }
}

async fn count_writes(f: &Fixture, name: &str) -> anyhow::Result<WriteCounter> {
    let api = f.secrets();
    let rv = api
        .get(name)
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let stream = api
        .watch(
            &WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(120),
            &rv,
        )
        .await?;
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(Ok(event)) = stream.next().await {
            if matches!(
                event,
                WatchEvent::Added(_) | WatchEvent::Modified(_) | WatchEvent::Deleted(_)
            ) {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    Ok(WriteCounter { count, task })
}

fn example(name: &str) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(format!(
        "{}/examples/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))?)
}

fn with_template(template: &str) -> String {
    format!(
        "apiVersion: oauth.collibra.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: tmpl\nspec:\n  clientName: tmpl\n  secretTemplate:\n{template}"
    )
}

async fn secret_templates_are_checked_at_admission(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "tmpl-admission",
        Options {
            start_operator: false,
            ..Options::default()
        },
    )
    .await?;
    let rejected: &[(&str, &str, &str)] = &[
        (
            "data key with a space",
            "    data: {\"a b\": x}\n",
            "a key must be at most 253",
        ),
        (
            "data key starting with ..",
            "    data: {\"..x\": x}\n",
            "a key must be at most 253",
        ),
        (
            "data key equal to a standard key",
            "    data: {client_secret: x}\n",
            "cannot have the name of a standard key",
        ),
        (
            "data key equal to a renamed standard key",
            "    keys: {clientId: ID}\n    data: {ID: x}\n",
            "cannot have the name of a standard key",
        ),
        (
            "two standard values on one key",
            "    keys: {clientId: client_secret}\n",
            "two standard values cannot share a key name",
        ),
        (
            "key name with a slash",
            "    keys: {clientSecret: a/b}\n",
            "spec.secretTemplate.keys.clientSecret",
        ),
        (
            "key name ..",
            "    keys: {tokenUrl: ..}\n",
            "a key cannot be '.' or start with '..'",
        ),
        (
            "client secret left out",
            "    keys: {clientSecret: \"\"}\n",
            "spec.secretTemplate.keys.clientSecret",
        ),
        (
            "built-in type that does not fit",
            "    type: kubernetes.io/tls\n",
            "only Opaque and kubernetes.io/basic-auth",
        ),
        (
            "malformed type",
            "    type: \"not a type\"\n",
            "spec.secretTemplate.type",
        ),
        (
            "basic-auth without username or password",
            "    type: kubernetes.io/basic-auth\n",
            "needs a key named username or password",
        ),
        (
            "reserved annotation",
            "    annotations: {oauth.collibra.dev/registering-since: x}\n",
            "are the operator's own",
        ),
        (
            "template too long",
            &format!("    data: {{k: {}}}\n", "x".repeat(16385)),
            "spec.secretTemplate.data.k",
        ),
    ];
    let mut failures = Vec::new();
    for (what, template, needle) in rejected {
        match f.apply(&with_template(template)).await {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(e) if !e.to_string().contains(needle) => {
                failures.push(format!("{what}: message lacks {needle:?}: {e}"))
            }
            Err(_) => {}
        }
    }
    let accepted: &[(&str, &str)] = &[
        (
            "left-out key frees its name",
            "    keys: {clientName: \"\"}\n    data: {client_name: x}\n",
        ),
        (
            "basic-auth from data",
            "    type: kubernetes.io/basic-auth\n    data: {username: \"{{ client_id }}\"}\n",
        ),
        ("custom type", "    type: example.com/oauth\n"),
        ("labels only (today's template)", "    labels: {team: a}\n"),
    ];
    for (what, template) in accepted {
        if let Err(e) = f.apply(&with_template(template)).await {
            failures.push(format!("{what}: rejected: {e}"));
        }
    }
    ensure!(
        failures.is_empty(),
        "admission gaps:\n{}",
        failures.join("\n")
    );
    f.finish().await
}

async fn template_examples_are_accepted(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "tmpl-examples",
        Options {
            start_operator: false,
            ..Options::default()
        },
    )
    .await?;
    for name in ["env-keys", "spring-boot", "dotenv", "basic-auth"] {
        let path = format!("{}/examples/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
        let yaml = std::fs::read_to_string(&path)?;
        f.apply(&yaml)
            .await
            .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    }
    f.finish().await
}

async fn each_shape_is_written(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "tmpl-shapes").await?;
    for name in ["env-keys", "spring-boot", "dotenv", "basic-auth"] {
        f.apply(&example(name)?).await?;
    }
    let token_url = format!("{}/rest/oauth/v2/token", f.sim.url());
    let mut registered = 0;
    for (object, secret) in [
        ("reporting-env", "reporting-env"),
        ("lineage-service", "lineage-service"),
        ("quality-checks", "quality-checks"),
        ("metadata-export", "metadata-export"),
    ] {
        let o = f.wait_reason(object, Reason::Registered.as_str()).await?;
        registered += 1;
        let id = o
            .status
            .and_then(|s| s.client_id)
            .ok_or_else(|| anyhow::anyhow!("{object}: no client id in status"))?;
        let s = f
            .secrets()
            .get(secret)
            .await
            .map_err(|e| anyhow::anyhow!("{secret}: {e}"))?;
        let data = data_of(&s);
        let annotations = s.metadata.annotations.clone().unwrap_or_default();
        let (id_seen, secret_seen) = match object {
            "reporting-env" => {
                ensure!(
                    keys_of(&s)
                        == [
                            "CLIENT_ID",
                            "CLIENT_SECRET",
                            "TOKEN_ENDPOINT_AUTH_METHOD",
                            "TOKEN_URL"
                        ],
                    "env keys: {:?}",
                    keys_of(&s)
                );
                ensure!(data["TOKEN_URL"] == token_url);
                (data["CLIENT_ID"].clone(), data["CLIENT_SECRET"].clone())
            }
            "lineage-service" => {
                ensure!(
                    keys_of(&s)
                        == [
                            "application.yaml",
                            "client_id",
                            "client_name",
                            "client_secret",
                            "token_endpoint_auth_method",
                            "token_url"
                        ],
                    "spring keys: {:?}",
                    keys_of(&s)
                );
                let yaml: serde_yaml::Value = serde_yaml::from_str(&data["application.yaml"])?;
                let reg = &yaml["spring"]["security"]["oauth2"]["client"];
                ensure!(reg["registration"]["collibra"]["client-id"].as_str() == Some(id.as_str()));
                ensure!(
                    reg["provider"]["collibra"]["token-uri"].as_str() == Some(token_url.as_str())
                );
                ensure!(
                    yaml["collibra"]["base-url"].as_str()
                        == Some(f.sim.url().trim_end_matches('/'))
                );
                ensure!(
                    s.metadata
                        .labels
                        .clone()
                        .unwrap_or_default()
                        .get("app.kubernetes.io/part-of")
                        == Some(&"lineage".to_owned())
                );
                (
                    reg["registration"]["collibra"]["client-id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    reg["registration"]["collibra"]["client-secret"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            }
            "quality-checks" => {
                ensure!(
                    keys_of(&s) == [".env", "client_secret"],
                    "dotenv keys: {:?}",
                    keys_of(&s)
                );
                let env: BTreeMap<&str, &str> = data[".env"]
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .collect();
                ensure!(env.get("COLLIBRA_TOKEN_URL") == Some(&token_url.as_str()));
                ensure!(env.get("COLLIBRA_GRANT_TYPES") == Some(&"client_credentials"));
                ensure!(
                    annotations.get("oauth.collibra.dev/client-id") == Some(&id),
                    "the left-out client id is kept in an annotation"
                );
                ensure!(env.get("COLLIBRA_CLIENT_SECRET") == Some(&data["client_secret"].as_str()));
                (
                    env.get("COLLIBRA_CLIENT_ID")
                        .copied()
                        .unwrap_or_default()
                        .to_owned(),
                    data["client_secret"].clone(),
                )
            }
            _ => {
                ensure!(s.type_.as_deref() == Some("kubernetes.io/basic-auth"));
                ensure!(
                    keys_of(&s)
                        == [
                            "authorization",
                            "client_name",
                            "password",
                            "token_endpoint_auth_method",
                            "token_url",
                            "username"
                        ],
                    "basic-auth keys: {:?}",
                    keys_of(&s)
                );
                let header = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", data["username"], data["password"]));
                ensure!(data["authorization"] == format!("Basic {header}"));
                (data["username"].clone(), data["password"].clone())
            }
        };
        ensure!(
            id_seen == id,
            "{object}: the Secret's id is not the status's"
        );
        ensure!(
            f.collibra.verify_credentials(&id_seen, &secret_seen),
            "{object}: the credentials in the Secret are not Collibra's"
        );
    }
    ensure!(f.collibra.stats().requests_for("register") == registered);
    f.finish().await
}

/// Every kind of template edit on a Ready object: one Secret write (a type
/// change: its delete and create), no request to register, the same
/// credentials, others' labels, annotations and keys kept (but a type
/// change, which makes a new Secret).
async fn template_edits_on_a_ready_object_keep_the_credentials(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let f = Fixture::new(env, "tmpl-edits").await?;
    f.apply(&manifest("edits", "edits-client", "")).await?;
    let o = f.wait_reason("edits", Reason::Registered.as_str()).await?;
    let id = o
        .status
        .clone()
        .and_then(|s| s.client_id)
        .unwrap_or_default();
    let first = f.secrets().get("edits").await?;
    let secret_value = data_of(&first)["client_secret"].clone();
    let theirs = || async {
        f.kubectl(&["label", "secret", "edits", "theirs=1", "--overwrite"])
            .await?;
        f.kubectl(&["annotate", "secret", "edits", "theirs=1", "--overwrite"])
            .await?;
        f.kubectl(&[
            "patch",
            "secret",
            "edits",
            "--type=merge",
            "-p",
            r#"{"stringData":{"theirs":"1"}}"#,
        ])
        .await
    };
    theirs().await?;
    let register_before = f.collibra.stats().requests_for("register");

    type Check = fn(&Secret, &str, &str) -> bool;
    let steps: Vec<(&str, String, Check, usize)> = vec![
        (
            "renamed keys",
            "  secretTemplate:\n    keys: {clientId: CLIENT_ID, clientSecret: CLIENT_SECRET}\n".into(),
            |s, id, sec| {
                let d = data_of(s);
                d.get("CLIENT_ID").map(String::as_str) == Some(id)
                    && d.get("CLIENT_SECRET").map(String::as_str) == Some(sec)
                    && !d.contains_key("client_id")
                    && !d.contains_key("client_secret")
            },
            1,
        ),
        (
            "added data key, labels and annotations",
            "  secretTemplate:\n    keys: {clientId: CLIENT_ID, clientSecret: CLIENT_SECRET}\n    labels: {team: a, tier: gold}\n    annotations: {note: x}\n    data:\n      .env: \"ID={{ client_id }}\\n\"\n".into(),
            |s, id, _| {
                let labels = s.metadata.labels.clone().unwrap_or_default();
                let ann = s.metadata.annotations.clone().unwrap_or_default();
                data_of(s).get(".env") == Some(&format!("ID={id}\n"))
                    && labels.get("team").map(String::as_str) == Some("a")
                    && labels.get("tier").map(String::as_str) == Some("gold")
                    && ann.get("note").map(String::as_str) == Some("x")
            },
            1,
        ),
        (
            "removed data key, label and annotation; left-out client id",
            "  secretTemplate:\n    keys: {clientId: \"\", clientSecret: CLIENT_SECRET}\n    labels: {team: b}\n".into(),
            |s, id, sec| {
                let labels = s.metadata.labels.clone().unwrap_or_default();
                let ann = s.metadata.annotations.clone().unwrap_or_default();
                let d = data_of(s);
                !d.contains_key(".env")
                    && !d.contains_key("CLIENT_ID")
                    && d.get("CLIENT_SECRET").map(String::as_str) == Some(sec)
                    && ann.get("oauth.collibra.dev/client-id").map(String::as_str) == Some(id)
                    && labels.get("team").map(String::as_str) == Some("b")
                    && !labels.contains_key("tier")
                    && !ann.contains_key("note")
            },
            1,
        ),
        (
            "type changed to basic-auth",
            "  secretTemplate:\n    type: kubernetes.io/basic-auth\n    keys: {clientId: username, clientSecret: password}\n    labels: {team: b}\n".into(),
            |s, id, sec| {
                let d = data_of(s);
                s.type_.as_deref() == Some("kubernetes.io/basic-auth")
                    && d.get("username").map(String::as_str) == Some(id)
                    && d.get("password").map(String::as_str) == Some(sec)
                    && !d.contains_key("CLIENT_SECRET")
            },
            2,
        ),
        (
            "template removed: today's Secret again (a type change back to Opaque)",
            String::new(),
            |s, id, sec| {
                let d = data_of(s);
                let ann = s.metadata.annotations.clone().unwrap_or_default();
                let labels = s.metadata.labels.clone().unwrap_or_default();
                s.type_.as_deref() == Some("Opaque")
                    && d.get("client_id").map(String::as_str) == Some(id)
                    && d.get("client_secret").map(String::as_str) == Some(sec)
                    && !d.contains_key("password")
                    && !labels.contains_key("team")
                    && !ann.contains_key("oauth.collibra.dev/client-id")
                    && !ann.contains_key("oauth.collibra.dev/secret-shape")
            },
            2,
        ),
    ];
    for (what, spec, check, changes) in steps {
        let writes = count_writes(&f, "edits").await?;
        f.apply(&manifest("edits", "edits-client", &spec)).await?;
        let s = wait_secret(&f, "edits", what, |s| check(s, &id, &secret_value)).await?;
        f.wait_reason("edits", Reason::Registered.as_str()).await?;
        // Our own write wakes another reconcile; it must find nothing to do.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let n = writes.stop();
        ensure!(n == changes, "{what}: {n} Secret changes, want {changes}");
        let labels = s.metadata.labels.clone().unwrap_or_default();
        let ann = s.metadata.annotations.clone().unwrap_or_default();
        if changes == 1 {
            ensure!(
                labels.contains_key("theirs")
                    && ann.contains_key("theirs")
                    && data_of(&s).contains_key("theirs"),
                "{what}: another writer's label, annotation or key was removed"
            );
        } else {
            // A new Secret: nothing of others is left to keep. Add it again.
            ensure!(
                f.event_reasons("edits")
                    .await?
                    .contains(&EventReason::SecretTypeChanged.as_str().to_owned()),
                "{what}: no SecretTypeChanged Event"
            );
            theirs().await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        ensure!(
            f.collibra.stats().requests_for("register") == register_before,
            "{what}: a template edit registered a client"
        );
        ensure!(
            f.collibra.verify_credentials(&id, &secret_value),
            "{what}: credentials changed"
        );
    }
    ensure!(
        f.event_reasons("edits")
            .await?
            .contains(&EventReason::SecretReshaped.as_str().to_owned()),
        "no SecretReshaped Event"
    );
    ensure!(
        f.secrets()
            .get_opt(&collibra_oauth_operator::controller::secret::type_change::backup_name(&o))
            .await?
            .is_none(),
        "the backup Secret was left behind"
    );
    f.finish().await
}

/// A template that cannot be rendered stalls with its own reason and a
/// message naming the key: on a Ready object the Secret stays as it is; a
/// new object registers nothing. A template that fails only with the real
/// credentials says so without quoting them. Fixing the template recovers.
async fn invalid_templates_stall_and_keep_the_secret(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "tmpl-invalid").await?;
    f.apply(&manifest("ok", "ok-client", "")).await?;
    f.wait_reason("ok", Reason::Registered.as_str()).await?;
    let before = f.secrets().get("ok").await?;
    let secret_value = data_of(&before)["client_secret"].clone();
    let registers = f.collibra.stats().requests_for("register");
    for (what, data, needle) in [
        ("undefined name", "{k: \"{{ client_idd }}\"}", "undefined"),
        (
            "fails only with the real secret",
            "{k: \"{% if client_secret != 'placeholder-client-secret' %}{{ client_secret | int }}{% endif %}\"}",
            "withheld",
        ),
    ] {
        f.apply(&manifest(
            "ok",
            "ok-client",
            &format!("  secretTemplate:\n    data: {data}\n"),
        ))
        .await?;
        // The reason may be the previous case's: wait for this generation.
        let o = f
            .wait_for("ok", "stalled on this template", |o| {
                ready_reason(o).as_deref() == Some(Reason::InvalidSecretTemplate.as_str())
                    && o.status.as_ref().and_then(|s| s.observed_generation)
                        == o.metadata.generation
            })
            .await?;
        let message = o
            .ready_condition()
            .map(|c| c.message.clone())
            .unwrap_or_default();
        ensure!(
            message.contains("data[\"k\"]") && message.contains(needle),
            "{what}: message {message:?}"
        );
        ensure!(
            !message.contains(&secret_value),
            "{what}: the message quotes the secret"
        );
        ensure!(test_support::condition(&o, "Stalled").as_deref() == Some("True"));
        let now = f.secrets().get("ok").await?;
        ensure!(now.data == before.data, "{what}: the Secret changed");
    }
    f.apply(&manifest("ok", "ok-client", "")).await?;
    f.wait_reason("ok", Reason::Registered.as_str()).await?;

    f.apply(&manifest(
        "new",
        "new-client",
        "  secretTemplate:\n    data: {k: \"{{ nope }}\"}\n",
    ))
    .await?;
    f.wait_reason("new", Reason::InvalidSecretTemplate.as_str())
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(
        f.collibra.stats().requests_for("register") == registers,
        "a client was registered for an invalid template"
    );
    ensure!(
        f.secrets().get_opt("new").await?.is_none(),
        "a claim was written"
    );
    f.apply(&manifest(
        "new",
        "new-client",
        "  secretTemplate:\n    data: {k: \"{{ client_id }}\"}\n",
    ))
    .await?;
    f.wait_reason("new", Reason::Registered.as_str()).await?;
    ensure!(
        f.event_reasons("ok")
            .await?
            .contains(&Reason::InvalidSecretTemplate.as_str().to_owned()),
        "no Warning Event for the invalid template"
    );
    f.finish().await
}

/// `oauth.collibra.dev/reconcile-requested-at`: with a 10 minute resync, a
/// client deleted in Collibra is noticed only when asked, and then at once.
async fn reconcile_now_annotation_refreshes_at_once(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env, "tmpl-now").await?;
    f.apply(&manifest("now", "now-client", "")).await?;
    let o = f.wait_reason("now", Reason::Registered.as_str()).await?;
    let old_id = o.status.and_then(|s| s.client_id).unwrap_or_default();
    let lists = f.collibra.stats().requests_for("list");
    ensure!(f.collibra.remove_client(&old_id));
    // Unasked, the cached list still shows the client: nothing happens.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let o = f.oauth().get("now").await?;
    ensure!(
        o.status.as_ref().and_then(|s| s.client_id.as_deref()) == Some(old_id.as_str()),
        "the client was re-registered without a request (resync is 10m)"
    );
    f.kubectl(&[
        "annotate",
        "oauthclient",
        "now",
        "oauth.collibra.dev/reconcile-requested-at=2026-12-01T00:00:00Z",
    ])
    .await?;
    let o = f
        .wait_for("now", "registered again after the request", |o| {
            ready_reason(o).as_deref() == Some(Reason::Registered.as_str())
                && o.status.as_ref().is_some_and(|s| {
                    s.client_id.as_deref().is_some_and(|id| id != old_id)
                        && s.last_handled_reconcile_at.as_deref() == Some("2026-12-01T00:00:00Z")
                })
        })
        .await?;
    ensure!(
        f.collibra.stats().requests_for("list") > lists,
        "the request did not read Collibra's list again"
    );
    let new_id = o.status.and_then(|s| s.client_id).unwrap_or_default();
    let data = f.secret_data("now").await?.unwrap_or_default();
    ensure!(
        f.collibra
            .verify_credentials(&new_id, &data["client_secret"])
    );
    // The same value again is not a new request: no further list.
    let lists = f.collibra.stats().requests_for("list");
    f.kubectl(&["annotate", "oauthclient", "now", "unrelated=1"])
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        f.collibra.stats().requests_for("list") == lists,
        "a handled request refreshed the list again"
    );
    f.finish().await
}

/// Leaves the state of a type change cut short after its delete: the
/// backup holds the credentials, the Secret is gone. Returns its data.
async fn cut_short(f: &Fixture, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
    use collibra_oauth_operator::controller::secret::type_change;
    use kube::api::{DeleteParams, PostParams};

    let obj = f.oauth().get(name).await?;
    let secret = f.secrets().get(name).await?;
    let held = data_of(&secret);
    let backup = type_change::backup(&obj, &secret)
        .ok_or_else(|| anyhow::anyhow!("the Secret holds no credentials"))?;
    f.secrets().create(&PostParams::default(), &backup).await?;
    f.secrets().delete(name, &DeleteParams::default()).await?;
    Ok(held)
}

/// The state a crash between "delete the Secret" and "create it with the
/// new type" leaves (rule 11), made by hand while the operator is stopped:
/// only the backup holds the credentials. The next start restores the
/// Secret from it and registers nothing; with `deletionPolicy: Orphan` and
/// the object being deleted, the Secret is restored before it is let go.
async fn half_done_type_change_is_finished_from_the_backup(env: Arc<Env>) -> anyhow::Result<()> {
    use kube::api::DeleteParams;

    let mut f = Fixture::new(env, "tmpl-halfdone").await?;
    let basic = "  secretTemplate:\n    type: kubernetes.io/basic-auth\n    keys: {clientId: username, clientSecret: password}\n";
    f.apply(&manifest(
        "half",
        "half-client",
        "  deletionPolicy: Orphan\n",
    ))
    .await?;
    f.wait_reason("half", Reason::Registered.as_str()).await?;
    let registers = f.collibra.stats().requests_for("register");
    f.op.kill().await?;
    let held = cut_short(&f, "half").await?;
    let (id, secret) = if held.contains_key("username") {
        (held["username"].clone(), held["password"].clone())
    } else {
        (held["client_id"].clone(), held["client_secret"].clone())
    };
    f.apply(&manifest(
        "half",
        "half-client",
        &format!("  deletionPolicy: Orphan\n{basic}"),
    ))
    .await?;
    f.op.restart().await?;
    let s = wait_secret(&f, "half", "restored as basic-auth", |s| {
        let d = data_of(s);
        s.type_.as_deref() == Some("kubernetes.io/basic-auth")
            && d.get("username") == Some(&id)
            && d.get("password") == Some(&secret)
    })
    .await?;
    ensure!(s.metadata.owner_references.is_some_and(|r| !r.is_empty()));
    f.wait_reason("half", Reason::Registered.as_str()).await?;

    // Again, and this time the object is deleted while the operator is down.
    f.op.kill().await?;
    cut_short(&f, "half").await?;
    f.oauth().delete("half", &DeleteParams::default()).await?;
    f.op.restart().await?;
    f.wait_gone("half").await?;
    let s = wait_secret(&f, "half", "restored and kept", |s| {
        let d = data_of(s);
        d.get("username") == Some(&id) && d.get("password") == Some(&secret)
    })
    .await?;
    ensure!(
        s.metadata.owner_references.unwrap_or_default().is_empty(),
        "the kept Secret still has an owner"
    );
    ensure!(
        f.collibra.verify_credentials(&id, &secret),
        "the kept credentials are not the client's"
    );
    ensure!(
        f.collibra.stats().requests_for("register") == registers,
        "a client was registered again"
    );
    f.finish().await
}

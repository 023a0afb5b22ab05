//! Several Collibra instances: CollibraConnections next to the instance the
//! operator's flags configure, each backed by a simulator of its own.

use std::{sync::Arc, time::Duration};

use anyhow::{bail, ensure};
use collibra_oauth_operator::{
    api::connection::CollibraConnection, connection::status::ConnectionReason,
    controller::reasons::Reason,
};
use collibra_sim::{SimConfig, Simulator};
use kube::api::{Api, DeleteParams};
use tokio::time::Instant;

use test_support::{Env, Fixture, Options, manifest, tail};

test_support::tests!(
    Env;
    connection_same_client_name_in_two_instances,
    connection_wrong_credentials_then_fixed,
    connection_fixed_credentials_are_used_at_once,
    connection_missing_credentials_created_are_used_at_once,
    connection_host_not_on_the_allow_list_is_refused,
    connection_of_another_namespace_is_refused,
    connection_deleted_while_in_use_waits_for_its_users,
    connection_deleted_while_stopped_waits_for_its_users,
    connection_audit_lists_foreign_clients_only,
    connection_ref_is_immutable,
    connection_bad_specs_are_refused_at_admission,
    connection_restart_changes_nothing_settled,
    connection_namespace_label_takes_effect_at_once,
);

/// The operator allows namespaced connections to loopback, where the
/// simulators listen.
fn allowing_loopback() -> Options {
    Options {
        extra_args: vec![
            "--namespaced-connection-hosts".to_owned(),
            "127.0.0.1".to_owned(),
        ],
        ..Options::default()
    }
}

/// A CollibraConnection to `url` with OAuth credentials in Secret `secret`.
fn connection(name: &str, url: &str, secret: &str) -> String {
    format!(
        "apiVersion: oauth.collibra.dev/v1alpha1\nkind: CollibraConnection\nmetadata:\n  name: {name}\nspec:\n  url: {url}\n  auth:\n    type: oauth\n    secretName: {secret}\n"
    )
}

/// `connectionRef` to the CollibraConnection `name`, for [`manifest`].
fn via(name: &str) -> String {
    format!("  connectionRef:\n    kind: CollibraConnection\n    name: {name}\n")
}

/// Creates (or replaces) the credentials Secret `name` in the fixture's namespace.
async fn credentials(f: &Fixture, name: &str, secret: &str) -> anyhow::Result<()> {
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  client_id: operator\n  client_secret: {secret}\n"
    );
    f.apply(&yaml).await?;
    Ok(())
}

fn connections(f: &Fixture) -> Api<CollibraConnection> {
    Api::namespaced(f.env.client.clone(), &f.ns)
}

fn connection_reason(c: &CollibraConnection) -> Option<String> {
    c.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.reason.clone())
}

fn connection_message(c: &CollibraConnection) -> String {
    c.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Waits until connection `name` satisfies `pred`.
async fn wait_connection(
    f: &Fixture,
    name: &str,
    what: &str,
    pred: impl Fn(&CollibraConnection) -> bool,
) -> anyhow::Result<CollibraConnection> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(c) = connections(f).get_opt(name).await? {
            if pred(&c) {
                return Ok(c);
            }
            last = Some(c);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "connection {name} never became {what}; last: {}\n--- operator log (tail) ---\n{}",
        last.and_then(|c| c.status)
            .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default())
            .unwrap_or_else(|| "none".into()),
        tail(&f.op.log(), 40)
    )
}

async fn wait_connection_reason(
    f: &Fixture,
    name: &str,
    reason: ConnectionReason,
) -> anyhow::Result<CollibraConnection> {
    wait_connection(f, name, reason.as_str(), |c| {
        connection_reason(c).as_deref() == Some(reason.as_str())
    })
    .await
}

fn ready_message(o: &collibra_oauth_operator::api::OAuthClient) -> String {
    o.ready_condition()
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

async fn connection_same_client_name_in_two_instances(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(env, "conn-two", allowing_loopback()).await?;
    let other = Simulator::start(SimConfig::default()).await?;
    let result = async {
        credentials(&f, "sim-b", "operator-secret").await?;
        f.apply(&connection("sim-b", &other.url(), "sim-b")).await?;
        wait_connection_reason(&f, "sim-b", ConnectionReason::Connected).await?;
        f.apply(&manifest("in-default", "shared-name", "")).await?;
        f.apply(&manifest("in-b", "shared-name", &via("sim-b")))
            .await?;
        let a = f
            .wait_reason("in-default", Reason::Registered.as_str())
            .await?;
        let b = f.wait_reason("in-b", Reason::Registered.as_str()).await?;
        let id = |o: &collibra_oauth_operator::api::OAuthClient| {
            o.status.as_ref().and_then(|s| s.client_id.clone())
        };
        let in_a: Vec<_> = f.collibra.clients();
        let in_b: Vec<_> = other.handle().clients();
        ensure!(
            in_a.len() == 1 && in_b.len() == 1,
            "one client in each instance, got {} and {}",
            in_a.len(),
            in_b.len()
        );
        ensure!(in_a[0].client_name == "shared-name" && in_b[0].client_name == "shared-name");
        ensure!(id(&a) == Some(in_a[0].client_id.clone()), "{:?}", id(&a));
        ensure!(id(&b) == Some(in_b[0].client_id.clone()), "{:?}", id(&b));
        let secret = f.secret_data("in-b").await?.unwrap_or_default();
        ensure!(
            secret
                .get("token_url")
                .is_some_and(|u| u.starts_with(&other.url())),
            "in-b's Secret names the other instance's token URL: {:?}",
            secret.get("token_url")
        );
        ensure!(
            other.handle().verify_credentials(
                secret.get("client_id").map_or("", String::as_str),
                secret.get("client_secret").map_or("", String::as_str)
            ),
            "in-b's Secret holds credentials the other instance accepts"
        );
        Ok(())
    }
    .await;
    other.shutdown().await;
    f.finish().await?;
    result
}

async fn connection_wrong_credentials_then_fixed(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(env, "conn-creds", allowing_loopback()).await?;
    let other = Simulator::start(SimConfig::default()).await?;
    let result = async {
        credentials(&f, "sim-b", "wrong").await?;
        f.apply(&connection("sim-b", &other.url(), "sim-b")).await?;
        let c = wait_connection_reason(&f, "sim-b", ConnectionReason::AuthenticationFailed).await?;
        let stalled = c
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Stalled"))
            .map(|c| c.status.clone());
        ensure!(stalled.as_deref() == Some("True"), "Stalled: {stalled:?}");
        f.apply(&manifest("app", "app", &via("sim-b"))).await?;
        let o = f
            .wait_reason("app", Reason::ConnectionNotReady.as_str())
            .await?;
        let want = format!("CollibraConnection/{}/sim-b", f.ns);
        ensure!(
            ready_message(&o).contains(&want),
            "the message names the connection: {}",
            ready_message(&o)
        );
        ensure!(
            other.handle().clients().is_empty(),
            "nothing registered yet"
        );
        // Fixing the Secret is enough: no restart, no touch of the connection.
        credentials(&f, "sim-b", "operator-secret").await?;
        wait_connection_reason(&f, "sim-b", ConnectionReason::Connected).await?;
        f.wait_reason("app", Reason::Registered.as_str()).await?;
        ensure!(other.handle().clients().len() == 1);
        ensure!(
            f.collibra.clients().is_empty(),
            "nothing in the default instance"
        );
        Ok(())
    }
    .await;
    other.shutdown().await;
    f.finish().await?;
    result
}

/// Loopback allowed, and a re-check timer far longer than any test: what
/// wakes a connection is the watch of its Secret, or its own backoff.
fn watched_not_polled() -> Options {
    let mut o = allowing_loopback();
    o.extra_args
        .extend(["--connection-recheck".to_owned(), "1h".to_owned()]);
    o
}

/// How long a failing connection is left alone before its Secret is fixed,
/// and how soon after the fix it must be Connected. Its backoff doubles
/// from 2 s (±20 %), so its checks fall at most 36 s and at least 49.6 s
/// after the first failure: fixed at 40 s and Connected by 48 s, only the
/// watch can have woken it.
const LEFT_FAILING: Duration = Duration::from_secs(40);
const USED_WITHIN: Duration = Duration::from_secs(8);

/// Waits (at most `within`) until connection `name` has Ready reason `reason`.
async fn connected_within(f: &Fixture, name: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(c) = connections(f).get_opt(name).await? {
            if connection_reason(&c).as_deref() == Some(ConnectionReason::Connected.as_str()) {
                return Ok(());
            }
            last = connection_reason(&c);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "connection {name} not Connected within {within:?} of the Secret's fix (last reason {last:?}); the watch of its Secret did not wake it\n--- operator log (tail) ---\n{}",
        tail(&f.op.log(), 40)
    )
}

async fn connection_fixed_credentials_are_used_at_once(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(env, "conn-fixed", watched_not_polled()).await?;
    let other = Simulator::start(SimConfig::default()).await?;
    let result = async {
        credentials(&f, "sim-b", "wrong").await?;
        f.apply(&connection("sim-b", &other.url(), "sim-b")).await?;
        wait_connection_reason(&f, "sim-b", ConnectionReason::AuthenticationFailed).await?;
        f.apply(&manifest("app", "app", &via("sim-b"))).await?;
        tokio::time::sleep(LEFT_FAILING).await;
        let c = connections(&f).get("sim-b").await?;
        ensure!(
            connection_reason(&c).as_deref()
                == Some(ConnectionReason::AuthenticationFailed.as_str()),
            "still failing before the fix: {:?}",
            connection_reason(&c)
        );
        credentials(&f, "sim-b", "operator-secret").await?;
        connected_within(&f, "sim-b", USED_WITHIN).await?;
        f.wait_reason("app", Reason::Registered.as_str()).await?;
        ensure!(other.handle().clients().len() == 1);
        Ok(())
    }
    .await;
    other.shutdown().await;
    f.finish().await?;
    result
}

async fn connection_missing_credentials_created_are_used_at_once(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let f = Fixture::with(env, "conn-created", watched_not_polled()).await?;
    let other = Simulator::start(SimConfig::default()).await?;
    let result = async {
        f.apply(&connection("sim-b", &other.url(), "sim-b")).await?;
        let c = wait_connection_reason(&f, "sim-b", ConnectionReason::CredentialsNotFound).await?;
        let message = connection_message(&c);
        ensure!(
            message.contains("sim-b"),
            "the message names the Secret: {message}"
        );
        tokio::time::sleep(LEFT_FAILING).await;
        credentials(&f, "sim-b", "operator-secret").await?;
        connected_within(&f, "sim-b", USED_WITHIN).await?;
        // Deleted again: the watch tells the connection at once too.
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(f.env.client.clone(), &f.ns);
        secrets.delete("sim-b", &DeleteParams::default()).await?;
        let deadline = Instant::now() + USED_WITHIN;
        loop {
            let c = connections(&f).get("sim-b").await?;
            if connection_reason(&c).as_deref()
                == Some(ConnectionReason::CredentialsNotFound.as_str())
            {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the deleted Secret is not noticed within {USED_WITHIN:?}: {:?}\n{}",
                connection_reason(&c),
                tail(&f.op.log(), 40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
    .await;
    other.shutdown().await;
    f.finish().await?;
    result
}

async fn connection_host_not_on_the_allow_list_is_refused(env: Arc<Env>) -> anyhow::Result<()> {
    // The default: no --namespaced-connection-hosts.
    let f = Fixture::new(env, "conn-hosts").await?;
    let other = Simulator::start(SimConfig::default()).await?;
    let result = async {
        credentials(&f, "sim-b", "operator-secret").await?;
        f.apply(&connection("sim-b", &other.url(), "sim-b")).await?;
        let c = wait_connection_reason(&f, "sim-b", ConnectionReason::HostNotAllowed).await?;
        let message = connection_message(&c);
        ensure!(
            message.contains("--namespaced-connection-hosts"),
            "the message says what the admin controls: {message}"
        );
        f.apply(&manifest("app", "app", &via("sim-b"))).await?;
        f.wait_reason("app", Reason::ConnectionNotReady.as_str())
            .await?;
        // Not one request reached the host: not even a token request.
        let stats = other.handle().stats();
        ensure!(
            stats.requests.values().sum::<u64>() == 0,
            "requests reached a host that is not allowed: {:?}",
            stats.requests
        );
        Ok(())
    }
    .await;
    other.shutdown().await;
    f.finish().await?;
    result
}

async fn connection_of_another_namespace_is_refused(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(env.clone(), "conn-ns", allowing_loopback()).await?;
    let elsewhere = env.cp.create_namespace("conn-elsewhere").await?;
    let result = async {
        // A connection of that name exists, but in another namespace.
        env.cp
            .kubectl_with_stdin(
                &["apply", "-n", &elsewhere, "-f", "-"],
                &connection("shared", &f.sim.url(), "creds"),
            )
            .await?;
        f.apply(&manifest("app", "app", &via("shared"))).await?;
        let o = f
            .wait_reason("app", Reason::ConnectionNotReady.as_str())
            .await?;
        let want = format!("CollibraConnection/{}/shared: not found", f.ns);
        ensure!(
            ready_message(&o).contains(&want),
            "refused, naming the connection it looked for: {}",
            ready_message(&o)
        );
        ensure!(f.collibra.clients().is_empty(), "nothing registered");
        Ok(())
    }
    .await;
    let _ = env
        .cp
        .kubectl(&["delete", "namespace", &elsewhere, "--wait=false"])
        .await;
    f.finish().await?;
    result
}

async fn connection_deleted_while_in_use_waits_for_its_users(env: Arc<Env>) -> anyhow::Result<()> {
    deleted_while_in_use(env, "conn-delete", false).await
}

/// The same, the connection deleted while the operator was stopped: after
/// the start it must not take its users, still being listed, for none.
async fn connection_deleted_while_stopped_waits_for_its_users(env: Arc<Env>) -> anyhow::Result<()> {
    deleted_while_in_use(env, "conn-delete-stopped", true).await
}

async fn deleted_while_in_use(env: Arc<Env>, prefix: &str, stopped: bool) -> anyhow::Result<()> {
    let mut f = Fixture::with(env, prefix, allowing_loopback()).await?;
    let other = Simulator::start(SimConfig::default()).await?;
    let result = async {
        credentials(&f, "sim-b", "operator-secret").await?;
        f.apply(&connection("sim-b", &other.url(), "sim-b")).await?;
        wait_connection_reason(&f, "sim-b", ConnectionReason::Connected).await?;
        f.apply(&manifest("app", "app", &via("sim-b"))).await?;
        f.wait_reason("app", Reason::Registered.as_str()).await?;
        ensure!(other.handle().clients().len() == 1);

        if stopped {
            f.op.stop(Duration::from_secs(10)).await?;
        }
        connections(&f)
            .delete("sim-b", &DeleteParams::default())
            .await?;
        if stopped {
            f.op.restart().await?;
        }
        let c = wait_connection_reason(&f, "sim-b", ConnectionReason::InUse).await?;
        let message = connection_message(&c);
        ensure!(
            message.contains(&format!("{}/app", f.ns)),
            "InUse names the OAuthClient that holds it: {message}"
        );
        // Still usable: the OAuthClient's cleanup deletes its client there.
        f.oauth().delete("app", &DeleteParams::default()).await?;
        f.wait_gone("app").await?;
        ensure!(
            other.handle().clients().is_empty(),
            "the client was deleted in the connection's instance"
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while connections(&f).get_opt("sim-b").await?.is_some() {
            if Instant::now() > deadline {
                bail!(
                    "the connection stayed after its last user went\n{}",
                    tail(&f.op.log(), 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }
    .await;
    other.shutdown().await;
    f.finish().await?;
    result
}

async fn connection_audit_lists_foreign_clients_only(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(env.clone(), "conn-audit", allowing_loopback()).await?;
    let other = Simulator::start(SimConfig::default()).await?;
    let result = async {
        let foreign = other.handle().insert_client("legacy-etl", &["client_credentials"]);
        credentials(&f, "sim-b", "operator-secret").await?;
        f.apply(&connection("sim-b", &other.url(), "sim-b")).await?;
        let c = wait_connection_reason(&f, "sim-b", ConnectionReason::Connected).await?;
        let status = c.status.clone().unwrap_or_default();
        ensure!(
            status.unmanaged_clients == Some(1) && status.managed_clients == Some(0),
            "counts at the first list: {status:?}"
        );
        let (code, metrics) = f.op.http_get("/metrics").await?;
        let series = format!(
            "collibra_oauth_unmanaged_clients{{connection=\"CollibraConnection/{}/sim-b\"}} 1",
            f.ns
        );
        ensure!(
            code == 200 && metrics.contains(&series),
            "no {series} in /metrics"
        );

        f.apply(&manifest("app", "app", &via("sim-b"))).await?;
        f.wait_reason("app", Reason::Registered.as_str()).await?;
        let app_secret = f
            .secret_data("app")
            .await?
            .and_then(|d| d.get("client_secret").cloned())
            .unwrap_or_default();
        ensure!(!app_secret.is_empty());

        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_collibra-oauth-operator"))
            .args(["audit", "-n", &f.ns, "-o", "json"])
            .env("KUBECONFIG", env.cp.kubeconfig_path())
            .env("NAMESPACED_CONNECTION_HOSTS", "127.0.0.1")
            .env_remove("COLLIBRA_URL")
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "audit failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            !stdout.contains(&app_secret) && !stdout.contains(&foreign.client_secret),
            "the audit printed a secret"
        );
        let audits: serde_json::Value = serde_json::from_str(&stdout)?;
        let want = serde_json::json!([{
            "connection": format!("CollibraConnection/{}/sim-b", f.ns),
            "url": other.url(),
            "listed": 2,
            "unmanaged": [{
                "name": "legacy-etl",
                "id": foreign.client_id,
                "issuedAt": collibra_oauth_operator::controller::status::rfc3339(foreign.client_id_issued_at),
            }],
        }]);
        ensure!(audits == want, "audit: {audits:#}\nwant: {want:#}");

        let table = tokio::process::Command::new(env!("CARGO_BIN_EXE_collibra-oauth-operator"))
            .args(["audit", "-n", &f.ns])
            .env("KUBECONFIG", env.cp.kubeconfig_path())
            .env("NAMESPACED_CONNECTION_HOSTS", "127.0.0.1")
            .output()
            .await?;
        let text = String::from_utf8_lossy(&table.stdout);
        ensure!(
            text.lines().next().is_some_and(|l| l.starts_with("CONNECTION"))
                && text.contains("legacy-etl")
                && !text.contains(" app "),
            "table: {text}"
        );
        Ok(())
    }
    .await;
    other.shutdown().await;
    f.finish().await?;
    result
}

async fn connection_ref_is_immutable(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "conn-immutable",
        Options {
            start_operator: false,
            ..Options::default()
        },
    )
    .await?;
    let result = async {
        f.apply(&manifest("app", "app", &via("one"))).await?;
        for (change, spec) in [
            ("another connection", via("two")),
            ("no connection", String::new()),
        ] {
            let err = f
                .apply(&manifest("app", "app", &spec))
                .await
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            ensure!(
                err.contains("connectionRef is immutable"),
                "changing to {change} must be refused naming the field, got: {err:?}"
            );
        }
        let mut none = manifest("plain", "plain", "");
        f.apply(&none).await?;
        none.push_str(&via("one"));
        let err = f
            .apply(&none)
            .await
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        ensure!(
            err.contains("connectionRef is immutable"),
            "adding a connection later must be refused, got: {err:?}"
        );
        Ok(())
    }
    .await;
    f.finish().await?;
    result
}

async fn connection_bad_specs_are_refused_at_admission(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "conn-admission",
        Options {
            start_operator: false,
            ..Options::default()
        },
    )
    .await?;
    let result = async {
        let head = "apiVersion: oauth.collibra.dev/v1alpha1\nkind: CollibraConnection\nmetadata:\n  name: bad\nspec:\n";
        let cases = [
            (
                "  url: ftp://c.example\n  auth: {secretName: s}\n",
                "url must be an http(s) URL",
            ),
            (
                "  url: https://u:p@c.example\n  auth: {secretName: s}\n",
                "url must be an http(s) URL",
            ),
            (
                "  url: https://c.example\n  auth: {secretName: s}\n  caBundle: {configMap: a, secret: b}\n",
                "set exactly one of configMap and secret",
            ),
            (
                "  url: https://c.example\n  auth: {type: kerberos, secretName: s}\n",
                "spec.auth.type",
            ),
            (
                "  url: https://c.example\n  auth: {secretName: s}\n  connectTimeout: soon\n",
                "spec.connectTimeout",
            ),
            (
                "  url: https://c.example\n  auth: {secretName: s}\n  rateLimit: 0\n",
                "spec.rateLimit",
            ),
            ("  url: https://c.example\n  auth: {}\n", "spec.auth.secretName"),
            (
                "  url: https://c.example\n  auth: {secretName: s}\n  apiPath: rest/auth\n",
                "spec.apiPath",
            ),
        ];
        for (spec, needle) in cases {
            let err = f
                .apply(&format!("{head}{spec}"))
                .await
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            ensure!(
                err.contains(needle),
                "{spec:?} must be refused naming {needle:?}, got: {err:?}"
            );
        }
        Ok(())
    }
    .await;
    f.finish().await?;
    result
}

/// A ClusterCollibraConnection `name` to `url`, its credentials in Secret
/// `secret` of the operator's cluster-connection namespace, admitting the
/// namespaces `selector` (YAML of a label selector, indented for the spec)
/// picks.
fn cluster_connection(name: &str, url: &str, secret: &str, selector: &str) -> String {
    format!(
        "apiVersion: oauth.collibra.dev/v1alpha1\nkind: ClusterCollibraConnection\nmetadata:\n  name: {name}\nspec:\n  url: {url}\n  auth:\n    type: oauth\n    secretName: {secret}\n{selector}"
    )
}

/// `connectionRef` to the ClusterCollibraConnection `name`.
fn via_cluster(name: &str) -> String {
    format!("  connectionRef:\n    kind: ClusterCollibraConnection\n    name: {name}\n")
}

/// Deletes the ClusterCollibraConnection `name` (cluster-scoped: the
/// namespace's deletion does not take it) and waits until it is gone.
async fn delete_cluster_connection(f: &Fixture, name: &str) -> anyhow::Result<()> {
    f.kubectl(&[
        "delete",
        "clustercollibraconnection",
        name,
        "--ignore-not-found",
        "--wait=true",
        "--timeout=60s",
    ])
    .await?;
    Ok(())
}

/// Options for an operator that serves ClusterCollibraConnections when
/// `serve` (their Secrets in the fixture's namespace: see
/// [`start_with_cluster_namespace`]). With the chart's namespaced RBAC
/// (`E2E_RBAC=namespaced`) it may not watch them.
fn serving_cluster_connections(serve: bool) -> Options {
    let mut o = allowing_loopback();
    if serve {
        o.extra_args.push("--cluster-connections=true".to_owned());
    }
    o.start_operator = false;
    o
}

/// Starts the fixture's operator with its namespace as the cluster
/// connections' Secret namespace (known only once the fixture exists).
async fn start_with_cluster_namespace(f: &mut Fixture) -> anyhow::Result<()> {
    let ns = f.ns.clone();
    f.op.add_args(&["--cluster-connection-namespace".to_owned(), ns]);
    f.op.restart().await
}

/// The Ready condition and every condition's transition time, as JSON.
async fn settled_status(f: &Fixture, name: &str) -> anyhow::Result<serde_json::Value> {
    let o = f.oauth().get(name).await?;
    Ok(serde_json::to_value(o.status)?)
}

/// After a restart, a Ready OAuthClient that uses a CollibraConnection or a
/// ClusterCollibraConnection keeps its status exactly (lastTransitionTime
/// included) and gets no Event: it is not reported on before its
/// connection is loaded.
async fn connection_restart_changes_nothing_settled(env: Arc<Env>) -> anyhow::Result<()> {
    // With namespaced RBAC the cluster kind is not served; the namespaced
    // kind is checked in both runs.
    let cluster = env.rbac == test_support::Rbac::ClusterWide;
    let mut f = Fixture::with(env, "restartconn", serving_cluster_connections(cluster)).await?;
    start_with_cluster_namespace(&mut f).await?;
    let second = Simulator::start(SimConfig::default()).await?;
    credentials(&f, "second-credentials", "operator-secret").await?;
    f.apply(&connection("second", &second.url(), "second-credentials"))
        .await?;
    f.apply(&manifest(
        "via-namespaced",
        "restart-namespaced",
        &via("second"),
    ))
    .await?;
    let mut names = vec!["via-namespaced"];
    let third = Simulator::start(SimConfig::default()).await?;
    let cluster_name = format!("{}-cluster", f.ns);
    if cluster {
        f.apply(&cluster_connection(
            &cluster_name,
            &third.url(),
            "second-credentials",
            "",
        ))
        .await?;
        f.apply(&manifest(
            "via-cluster",
            "restart-cluster",
            &via_cluster(&cluster_name),
        ))
        .await?;
        names.push("via-cluster");
    }
    let mut before = Vec::new();
    for n in &names {
        f.wait_reason(n, Reason::Registered.as_str()).await?;
    }
    // Let the Events of the registration land before they are counted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in &names {
        before.push((settled_status(&f, n).await?, f.event_reasons(n).await?));
    }
    let lists_before = (
        second.handle().stats().requests_for("list"),
        third.handle().stats().requests_for("list"),
    );
    f.op.restart().await?;
    // The new process is ready and has checked both connections (a probe
    // lists each instance); then give its reconciles time to run.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let checked = second.handle().stats().requests_for("list") > lists_before.0
            && (!cluster || third.handle().stats().requests_for("list") > lists_before.1);
        if let Ok((200, _)) = f.op.http_get("/readyz").await
            && checked
            && f.op.log().contains("connections loaded")
        {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the restarted operator never checked its connections\n{}",
                tail(&f.op.log(), 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (n, (status, events)) in names.iter().zip(&before) {
        let now = settled_status(&f, n).await?;
        ensure!(
            &now == status,
            "{n}: the status changed across a restart\nbefore: {status}\nafter:  {now}\n{}",
            tail(&f.op.log(), 40)
        );
        let events_now = f.event_reasons(n).await?;
        ensure!(
            &events_now == events,
            "{n}: Events across a restart: {events:?} -> {events_now:?}"
        );
    }
    ensure!(
        !f.op.log().contains("ConnectionNotReady"),
        "no object was reported ConnectionNotReady\n{}",
        tail(&f.op.log(), 40)
    );
    if cluster {
        f.oauth()
            .delete("via-cluster", &DeleteParams::default())
            .await?;
        f.wait_gone("via-cluster").await?;
        delete_cluster_connection(&f, &cluster_name).await?;
    }
    f.finish().await
}

/// A namespace label that a ClusterCollibraConnection's namespaceSelector
/// now admits takes effect within seconds (namespaces are watched), not at
/// the next re-check or resync.
async fn connection_namespace_label_takes_effect_at_once(env: Arc<Env>) -> anyhow::Result<()> {
    let cluster = env.rbac == test_support::Rbac::ClusterWide;
    let mut f = Fixture::with(env, "nslabel", serving_cluster_connections(cluster)).await?;
    start_with_cluster_namespace(&mut f).await?;
    let other = Simulator::start(SimConfig::default()).await?;
    credentials(&f, "cluster-credentials", "operator-secret").await?;
    let label = format!("collibra-{}", f.ns);
    let name = format!("{}-selective", f.ns);
    f.apply(&cluster_connection(
        &name,
        &other.url(),
        "cluster-credentials",
        &format!("  namespaceSelector:\n    matchLabels:\n      {label}: \"yes\"\n"),
    ))
    .await?;
    f.apply(&manifest("selected", "ns-label", &via_cluster(&name)))
        .await?;
    let refused = f
        .wait_reason("selected", Reason::ConnectionNotReady.as_str())
        .await?;
    let message = refused
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    if !cluster {
        // A namespaced installation does not serve the cluster kind: the
        // object is told so, and nothing reaches the instance.
        ensure!(message.contains("not found"), "{message}");
        ensure!(other.handle().stats().requests.values().sum::<u64>() == 0);
        delete_cluster_connection(&f, &name).await?;
        return f.finish().await;
    }
    ensure!(
        message.contains("namespaceSelector"),
        "refused for its namespace: {message}"
    );
    let labelled = Instant::now();
    f.kubectl(&["label", "namespace", &f.ns, &format!("{label}=yes")])
        .await?;
    f.wait_reason("selected", Reason::Registered.as_str())
        .await?;
    let took = labelled.elapsed();
    // The re-check is 10 minutes and the resync 10 minutes: only the
    // namespace watch can have woken it this soon.
    ensure!(
        took < Duration::from_secs(20),
        "took {took:?} after the label"
    );
    ensure!(
        other.handle().clients().len() == 1,
        "registered in the selected instance"
    );
    f.oauth()
        .delete("selected", &DeleteParams::default())
        .await?;
    f.wait_gone("selected").await?;
    delete_cluster_connection(&f, &name).await?;
    f.finish().await
}

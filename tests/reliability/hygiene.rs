//! Secret hygiene: the end-to-end flows at `RUST_LOG=trace`, then every
//! credential (the operator's own, every client secret the simulator ever
//! issued, a bystander Secret's value) is searched for in the operator's
//! log, Events, status and metrics. The operator must not touch Secrets it
//! does not manage. TLS: a custom CA works, a wrong certificate is refused.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, ensure};
use base64::Engine as _;
use collibra_sim::{ScriptAction, ScriptedFault, SimConfig};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::net::{TcpListener, TcpStream};

use collibra_oauth_operator::controller::reasons::Reason;
use test_support::{Env, Fixture, Options, manifest, ready_reason};

test_support::tests!(
    Env;
    no_credential_leaks_at_trace_level,
    no_credential_leaks_from_secret_templates,
    operator_touches_no_foreign_secret,
    tls_custom_ca_accepted_wrong_certificate_refused,
);

const BYSTANDER_VALUE: &str = "bystander-value-7Qz9";
const BEARER: &str = "static-bearer-K3v8xw";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Every way a credential could show up in text.
fn needles(secrets: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for s in secrets {
        if s.len() < 8 {
            continue;
        }
        out.push(s.clone());
        out.push(b64(s));
    }
    out
}

/// Records every secret the simulator issues.
fn record_issued(f: &Fixture) -> Arc<Mutex<Vec<String>>> {
    let issued = Arc::new(Mutex::new(Vec::new()));
    let mut rx = f.collibra.on_register();
    let sink = issued.clone();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(c) => {
                    if let Ok(mut v) = sink.lock() {
                        v.push(c.client_secret);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
    });
    issued
}

async fn bystander(f: &Fixture, name: &str) -> anyhow::Result<Secret> {
    let s: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {"client_id": "not-yours", "client_secret": BYSTANDER_VALUE},
    }))?;
    Ok(f.secrets().create(&PostParams::default(), &s).await?)
}

/// Everything a user or an attacker with read access could see.
async fn haystacks(f: &Fixture) -> anyhow::Result<Vec<(&'static str, String)>> {
    let events = f
        .kubectl(&["get", "events.events.k8s.io", "-o", "yaml"])
        .await?;
    let core_events = f.kubectl(&["get", "events", "-o", "yaml"]).await?;
    let objects = f.kubectl(&["get", "oauthclients", "-o", "yaml"]).await?;
    let (_, metrics) = f.op.http_get("/metrics").await?;
    Ok(vec![
        ("operator log", f.op.log()),
        ("Events", events),
        ("core Events", core_events),
        ("OAuthClient status", objects),
        ("metrics", metrics),
    ])
}

fn leaks(hay: &[(&'static str, String)], needles: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (where_, text) in hay {
        for (i, n) in needles.iter().enumerate() {
            if text.contains(n.as_str()) {
                // Never print the credential itself.
                out.push(format!(
                    "credential #{i} ({} chars) found in {where_}",
                    n.len()
                ));
            }
        }
    }
    out
}

/// Secret templates at `RUST_LOG=trace`: every shape, every kind of edit
/// (including a type change, which passes the credentials through a backup
/// Secret), and templates that fail, with placeholders and only with the
/// real credentials. No credential, nor anything rendered from one, may
/// reach the log, Events, status or metrics.
async fn no_credential_leaks_from_secret_templates(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "hygienetmpl",
        Options {
            rust_log: Some("trace".to_owned()),
            ..Options::default()
        },
    )
    .await?;
    let issued = record_issued(&f);
    for name in ["env-keys", "spring-boot", "dotenv", "basic-auth"] {
        let path = format!("{}/examples/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
        f.apply(&std::fs::read_to_string(&path)?).await?;
    }
    for n in [
        "reporting-env",
        "lineage-service",
        "quality-checks",
        "metadata-export",
    ] {
        f.wait_reason(n, Reason::Registered.as_str()).await?;
    }
    // Edits on a Ready object: keys, data, labels, then the type.
    let edits = [
        "  secretTemplate:\n    keys: {clientId: ID, clientSecret: SECRET}\n    labels: {team: a}\n    data:\n      basic: \"{{ (client_id ~ ':' ~ client_secret) | b64encode }}\"\n",
        "  secretTemplate:\n    type: kubernetes.io/basic-auth\n    keys: {clientId: username, clientSecret: password}\n",
        "",
    ];
    f.apply(&manifest("t", "hyg-t", "")).await?;
    f.wait_reason("t", Reason::Registered.as_str()).await?;
    for spec in edits {
        f.apply(&manifest("t", "hyg-t", spec)).await?;
        f.wait_for("t", "re-rendered", |o| {
            ready_reason(o).as_deref() == Some(Reason::Registered.as_str())
                && o.status.as_ref().and_then(|s| s.observed_generation) == o.metadata.generation
        })
        .await?;
    }
    // Templates that fail: with placeholders, and only with the real secret.
    f.apply(&manifest(
        "u",
        "hyg-u",
        "  secretTemplate:\n    data: {k: \"{{ client_secret ~ no_such_name }}\"}\n",
    ))
    .await?;
    f.wait_reason("u", Reason::InvalidSecretTemplate.as_str())
        .await?;
    f.apply(&manifest(
        "t",
        "hyg-t",
        "  secretTemplate:\n    data: {k: \"{% if client_secret != 'placeholder-client-secret' %}{{ client_secret | int }}{% endif %}\"}\n",
    ))
    .await?;
    f.wait_reason("t", Reason::InvalidSecretTemplate.as_str())
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut secrets: Vec<String> = issued.lock().map(|v| v.clone()).unwrap_or_default();
    let clients = f.collibra.clients();
    secrets.extend(clients.iter().map(|c| c.client_secret.clone()));
    // What templates rendered from them: the Basic header value.
    secrets.extend(
        clients
            .iter()
            .map(|c| b64(&format!("{}:{}", c.client_id, c.client_secret))),
    );
    secrets.sort();
    secrets.dedup();
    let issued_count = clients.len();
    secrets.push("operator-secret".to_owned());
    let all = needles(&secrets);
    let hay = haystacks(&f).await?;
    let trace_lines = hay[0].1.lines().filter(|l| l.contains("TRACE")).count();
    let found = leaks(&hay, &all);
    println!(
        "RELIABILITY hygiene templates rust_log=trace clients={issued_count} needles={} trace_lines={trace_lines} leaks={}",
        all.len(),
        found.len()
    );
    ensure!(
        issued_count >= 5,
        "only {issued_count} clients: the flows did not run"
    );
    ensure!(trace_lines > 0, "the log has no TRACE lines");
    ensure!(
        found.is_empty(),
        "credentials leaked:\n{}",
        found.join("\n")
    );
    f.finish().await
}

async fn no_credential_leaks_at_trace_level(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env.clone(),
        "hygiene",
        Options {
            resync: "2s",
            rust_log: Some("trace".to_owned()),
            ..Options::default()
        },
    )
    .await?;
    let issued = record_issued(&f);
    bystander(&f, "taken").await?;
    // Registration, with a Secret template.
    f.apply(&manifest(
        "a",
        "hyg-a",
        "  secretTemplate:\n    labels: {team: a}\n",
    ))
    .await?;
    f.apply(&manifest("b", "hyg-b", "  replacementPolicy: Automatic\n"))
        .await?;
    f.apply(&manifest("c", "hyg-c", "")).await?;
    for n in ["a", "b", "c"] {
        f.wait_reason(n, "Registered").await?;
    }
    // The crash window: committed, answer lost, recovered by delete + register.
    f.collibra
        .script(ScriptedFault::on("register", ScriptAction::DropAfterCommit));
    f.apply(&manifest("d", "hyg-d", "")).await?;
    f.wait_reason("d", "Registered").await?;
    // A rejection.
    f.collibra.script(ScriptedFault::on(
        "register",
        ScriptAction::Status {
            status: 400,
            retry_after_secs: None,
        },
    ));
    f.apply(&manifest("e", "hyg-e", "")).await?;
    f.wait_reason("e", "CollibraRejected").await?;
    // Rotation.
    f.oauth()
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"oauth.collibra.dev/rotate": "1"}}})),
        )
        .await?;
    f.wait_for("a", "rotated", |o| {
        o.status.as_ref().is_some_and(|s| s.last_rotation.is_some())
    })
    .await?;
    // A deleted Secret, a client deleted in Collibra, a grant type change.
    f.secrets().delete("b", &DeleteParams::default()).await?;
    let c_id = f
        .collibra
        .clients()
        .into_iter()
        .find(|c| c.client_name == "hyg-c")
        .map(|c| c.client_id)
        .context("hyg-c")?;
    f.collibra.remove_client(&c_id);
    f.oauth()
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"grantTypes": ["client_credentials", "authorization_code"], "redirectUris": ["https://hyg.example/cb"]}})),
        )
        .await?;
    // A Secret conflict, a deletion.
    f.apply(&manifest("g", "hyg-g", "  secretName: taken\n"))
        .await?;
    f.wait_reason("g", "SecretConflict").await?;
    f.wait_for("b", "recovered", |o| {
        ready_reason(o).as_deref() == Some("Registered")
    })
    .await?;
    f.wait_for("c", "recreated", |o| {
        o.status
            .as_ref()
            .and_then(|s| s.client_id.as_ref())
            .is_some_and(|id| id != &c_id)
    })
    .await?;
    f.oauth().delete("c", &DeleteParams::default()).await?;
    f.wait_gone("c").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut secrets: Vec<String> = issued.lock().map(|v| v.clone()).unwrap_or_default();
    secrets.extend(f.collibra.clients().into_iter().map(|c| c.client_secret));
    secrets.sort();
    secrets.dedup();
    let issued_count = secrets.len();
    secrets.push("operator-secret".to_owned());
    secrets.push("operator:operator-secret".to_owned());
    secrets.push(BYSTANDER_VALUE.to_owned());
    let all = needles(&secrets);
    let hay = haystacks(&f).await?;
    let log_lines = hay[0].1.lines().count();
    let trace_lines = hay[0].1.lines().filter(|l| l.contains("TRACE")).count();
    let found = leaks(&hay, &all);
    println!(
        "RELIABILITY hygiene rust_log=trace client_secrets_issued={issued_count} needles={} log_lines={log_lines} trace_lines={trace_lines} leaks={}",
        all.len(),
        found.len()
    );
    ensure!(
        issued_count >= 6,
        "only {issued_count} secrets issued: the flows did not run"
    );
    ensure!(
        trace_lines > 0,
        "the log has no TRACE lines: the level was not applied"
    );
    ensure!(
        found.is_empty(),
        "credentials leaked:\n{}",
        found.join("\n")
    );
    f.finish().await?;

    // The same with a static bearer token as the operator's credential.
    let g = Fixture::with(
        env,
        "hygienebearer",
        Options {
            sim: SimConfig {
                admin_bearer_tokens: vec![BEARER.to_owned()],
                ..SimConfig::default()
            },
            rust_log: Some("trace".to_owned()),
            extra_env: vec![
                ("COLLIBRA_AUTH".to_owned(), "bearer".to_owned()),
                ("COLLIBRA_TOKEN".to_owned(), BEARER.to_owned()),
            ],
            ..Options::default()
        },
    )
    .await?;
    g.apply(&manifest("z", "hyg-z", "")).await?;
    g.wait_reason("z", "Registered").await?;
    let mut secrets: Vec<String> = g
        .collibra
        .clients()
        .into_iter()
        .map(|c| c.client_secret)
        .collect();
    secrets.push(BEARER.to_owned());
    let found = leaks(&haystacks(&g).await?, &needles(&secrets));
    ensure!(
        found.is_empty(),
        "credentials leaked (bearer auth):\n{}",
        found.join("\n")
    );
    g.finish().await
}

fn fingerprint(s: &Secret) -> (Option<String>, String) {
    (
        s.metadata.resource_version.clone(),
        serde_json::to_string(&s.metadata.managed_fields).unwrap_or_default(),
    )
}

async fn operator_touches_no_foreign_secret(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "foreign",
        Options {
            rust_log: Some("debug,kube=trace,kube_client=trace,tower_http=trace".to_owned()),
            ..Options::default()
        },
    )
    .await?;
    // One unrelated Secret, one whose name an OAuthClient wants, one that
    // carries a different managed-by value.
    let unrelated = bystander(&f, "unrelated").await?;
    let taken = bystander(&f, "taken").await?;
    f.apply(&manifest("mine", "foreign-mine", "")).await?;
    f.apply(&manifest("clash", "foreign-clash", "  secretName: taken\n"))
        .await?;
    f.wait_reason("mine", "Registered").await?;
    f.wait_reason("clash", "SecretConflict").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut untouched = 0;
    for (name, before) in [("unrelated", &unrelated), ("taken", &taken)] {
        let now = f.secrets().get(name).await?;
        ensure!(
            fingerprint(&now) == fingerprint(before),
            "Secret {name} was modified by someone: {:?}",
            now.metadata.managed_fields
        );
        let data: BTreeMap<_, _> = now.data.clone().unwrap_or_default();
        ensure!(
            data.get("client_secret").map(|v| v.0.as_slice()) == Some(BYSTANDER_VALUE.as_bytes())
        );
        untouched += 1;
    }
    let log = strip_ansi(&f.op.log());
    let secret_lines: Vec<&str> = log.lines().filter(|l| l.contains("/secrets")).collect();
    let filtered_watches = secret_lines
        .iter()
        .filter(|l| l.contains("http.method=GET") && l.contains("labelSelector=app.kubernetes.io"))
        .count();
    let reads_of_foreign: Vec<&&str> = secret_lines
        .iter()
        // The target name of an OAuthClient is looked at by metadata only
        // (to report SecretConflict); nothing else is read.
        .filter(|l| {
            l.contains("/secrets/unrelated")
                || (l.contains("/secrets/taken") && !l.contains("get_metadata"))
        })
        .collect();
    let unfiltered_lists: Vec<&&str> = secret_lines
        .iter()
        .filter(|l| {
            l.contains("http.method=GET")
                && l.contains("/secrets?")
                && !l.contains("labelSelector=app.kubernetes.io")
        })
        .collect();
    println!(
        "RELIABILITY foreign_secrets untouched={untouched} secret_request_log_lines={} label_filtered_list_watch_lines={filtered_watches} foreign_reads={} unfiltered_lists={}",
        secret_lines.len(),
        reads_of_foreign.len(),
        unfiltered_lists.len()
    );
    ensure!(
        !secret_lines.is_empty(),
        "the log shows no Secret requests at all; the check would prove nothing"
    );
    ensure!(
        reads_of_foreign.is_empty(),
        "requests for foreign Secrets:\n{reads_of_foreign:#?}"
    );
    ensure!(
        unfiltered_lists.is_empty(),
        "Secret lists/watches without the label filter:\n{unfiltered_lists:#?}"
    );
    ensure!(!log.contains(BYSTANDER_VALUE) && !log.contains(&b64(BYSTANDER_VALUE)));
    f.finish().await
}

/// The log without terminal colour codes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A TLS front for the simulator: terminates TLS with `cert` and pipes bytes.
struct TlsFront {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ca(name: &str) -> anyhow::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

async fn tls_front(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    backend: SocketAddr,
) -> anyhow::Result<TlsFront> {
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let cert = params.signed_by(&key, issuer)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    Ok(TlsFront { addr, task })
}

async fn tls_custom_ca_accepted_wrong_certificate_refused(env: Arc<Env>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let good_ca = ca("reliability test CA")?;
    let other_ca = ca("some other CA")?;
    let good_pem = dir.path().join("good-ca.pem");
    let other_pem = dir.path().join("other-ca.pem");
    std::fs::write(&good_pem, good_ca.pem())?;
    std::fs::write(&other_pem, other_ca.pem())?;

    let mut results = Vec::new();
    // (case, CA file given to the operator, should it work)
    for (case, ca_file, works) in [
        ("custom CA", Some(&good_pem), true),
        ("certificate from another CA", Some(&other_pem), false),
        ("no CA file (system roots)", None, false),
    ] {
        let mut extra_env = Vec::new();
        if let Some(p) = ca_file {
            extra_env.push(("COLLIBRA_CA_FILE".to_owned(), p.display().to_string()));
        }
        let f = Fixture::with(
            env.clone(),
            "tls",
            Options {
                extra_env,
                start_operator: false,
                ..Options::default()
            },
        )
        .await?;
        let front = tls_front(&good_ca, f.sim.addr()).await?;
        let url = format!("https://localhost:{}", front.addr.port());
        let mut f = f;
        f.op.set_collibra_url(&url);
        f.op.restart().await?;
        f.apply(&manifest("t", "tls-client", "")).await?;
        if works {
            f.wait_reason("t", "Registered").await?;
            let data = f.secret_data("t").await?.unwrap_or_default();
            ensure!(data.get("token_url") == Some(&format!("{url}/rest/oauth/v2/token")));
            ensure!(f.collibra.clients().len() == 1);
            results.push(format!("{case}: Registered"));
        } else {
            let o = f.wait_reason("t", "CollibraUnavailable").await?;
            let msg = o
                .ready_condition()
                .map(|c| c.message.clone())
                .unwrap_or_default();
            ensure!(
                msg.to_lowercase().contains("certificate"),
                "{case}: the condition does not say it is the certificate: {msg}"
            );
            ensure!(
                f.collibra.clients().is_empty()
                    && f.collibra.stats().requests.values().sum::<u64>() == 0
            );
            results.push(format!("{case}: refused ({msg})"));
        }
        drop(front);
        f.finish().await?;
    }
    for r in &results {
        println!("  {r}");
    }
    println!("RELIABILITY tls cases={} passed={}", 3, results.len());
    Ok(())
}

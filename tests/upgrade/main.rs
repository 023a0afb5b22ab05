//! Upgrading from the previous release, on a control plane of its own (the
//! CRD is cluster-wide, so no other suite may share it).
//!
//! The previous release (`hack/previous-release/ref`) is taken from git
//! history by `hack/previous-release/build.sh`: its CRD and chart, and its
//! operator built from the same commit. It is installed with `helm install`
//! and runs (as its chart's Deployment configures it, with exactly the
//! chart's RBAC through impersonation) until its OAuthClients are Ready.
//! Then the upgrade follows docs/src/operations/upgrading.md for Helm: the current CRD by
//! server-side apply, `helm upgrade` to the current chart, the current
//! operator in place of the old one. Every object must stay Ready with the
//! same credentials, and Collibra (the simulator) must see no new
//! registration and no deletion.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use collibra_sim::{SimConfig, Simulator};
use test_support::{
    Arguments, Env, Operator, manifest, tail, token_accepted,
    tooling::{base64_decode, chart, documents, helm, start_binary_as_chart, wait_ready_reason},
};

/// The release name and namespace of the chart's defaults (as in deploy/).
const NS: &str = "collibra-oauth-operator";

/// OAuthClients created under the previous release.
const CLIENTS: [&str; 3] = ["billing-etl", "reporting", "audit-export"];

test_support::tests!(Env; helm_upgrade_keeps_clients_ready_without_registering_again);

fn main() -> ExitCode {
    let args = Arguments::from_args();
    test_support::run(&args, tests(), "the upgrade test's control plane", || {
        // Nothing installed: the previous release's chart brings its CRD
        // and RBAC, as on a real cluster.
        Env::start_bare(PathBuf::from(env!("CARGO_BIN_EXE_collibra-oauth-operator")))
    })
}

/// The previous release's directory (see `hack/previous-release/build.sh`).
async fn previous_release() -> anyhow::Result<PathBuf> {
    let script = test_support::repo("hack/previous-release/build.sh");
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        out.status.success(),
        "{} failed ({}); the upgrade test needs the previous release (see its message above)",
        script.display(),
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout.lines().last().unwrap_or_default().trim();
    ensure!(!dir.is_empty(), "{} printed no directory", script.display());
    Ok(PathBuf::from(dir))
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

/// Each Secret's `client_id` and `client_secret`, by OAuthClient.
async fn credentials(env: &Env, ns: &str) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let mut out = BTreeMap::new();
    for name in CLIENTS {
        let secret = env
            .cp
            .kubectl(&[
                "get",
                "secret",
                "-n",
                ns,
                &format!("{name}-oauth"),
                "-o",
                "json",
            ])
            .await?;
        let secret: serde_json::Value = serde_json::from_str(&secret)?;
        let field = |key: &str| -> anyhow::Result<String> {
            let b64 = secret["data"][key]
                .as_str()
                .with_context(|| format!("Secret {name}-oauth has no {key}"))?;
            Ok(String::from_utf8(base64_decode(b64)?)?)
        };
        out.insert(
            name.to_owned(),
            (field("client_id")?, field("client_secret")?),
        );
    }
    Ok(out)
}

/// The operator's `collibra_oauth_objects` gauge for `reason`.
async fn objects_with_reason(op: &Operator, reason: &str) -> anyhow::Result<u64> {
    let (code, body) = op.http_get("/metrics").await?;
    ensure!(code == 200, "/metrics answered {code}");
    let label = format!("reason=\"{reason}\"");
    Ok(body
        .lines()
        .filter(|l| l.starts_with("collibra_oauth_objects{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

async fn helm_upgrade_keeps_clients_ready_without_registering_again(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let prev = previous_release().await?;
    let sim = Simulator::start(SimConfig::default()).await?;
    let collibra = sim.handle();
    let dir = tempfile::tempdir()?;
    let url = format!("collibra.url={}", sim.url());

    // The previous release, installed as its README says.
    let old_chart = prev.join("charts/collibra-oauth-operator");
    helm(
        &env,
        &[
            "install",
            NS,
            path_str(&old_chart)?,
            "--namespace",
            NS,
            "--create-namespace",
            "--set",
            &url,
        ],
    )
    .await
    .context("installing the previous release's chart")?;
    let old_docs = documents(&helm(&env, &["get", "manifest", NS, "--namespace", NS]).await?)?;
    std::fs::create_dir(dir.path().join("old"))?;
    let mut old_op = start_binary_as_chart(
        prev.join("collibra-oauth-operator"),
        &old_docs,
        &env.operator_kubeconfig,
        &sim.url(),
        NS,
        &dir.path().join("old"),
    )?;

    let ns = env.cp.create_namespace("upgrade").await?;
    for (i, name) in CLIENTS.iter().enumerate() {
        // One of each deletion policy and a non-default Secret name.
        let extra = format!(
            "  secretName: {name}-oauth\n  deletionPolicy: {}\n",
            if i == 1 { "Orphan" } else { "Delete" }
        );
        env.cp
            .kubectl_with_stdin(
                &["apply", "-n", &ns, "-f", "-"],
                &manifest(name, &format!("{ns}-{name}"), &extra),
            )
            .await?;
    }
    for name in CLIENTS {
        if let Err(e) = wait_ready_reason(&env, &ns, name, "Registered").await {
            bail!(
                "under the previous release: {e:#}\n--- its operator log ---\n{}",
                tail(&old_op.log(), 40)
            );
        }
    }
    let before = credentials(&env, &ns).await?;
    let registered = collibra.stats().requests_for("register");
    ensure!(
        registered == CLIENTS.len() as u64,
        "the previous release registered {registered} clients for {} objects",
        CLIENTS.len()
    );

    // The upgrade, as docs/src/operations/upgrading.md says for Helm: the CRD first (Helm
    // never upgrades it), then the chart; the old operator keeps running
    // under the new CRD until its pod is replaced.
    let crds = chart().join("crds");
    env.cp
        .kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            path_str(&crds)?,
        ])
        .await
        .context("applying the current CRD over the previous release's")?;
    env.cp
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/oauthclients.oauth.collibra.dev",
        ])
        .await?;
    let current_chart = chart();
    helm(
        &env,
        &[
            "upgrade",
            NS,
            path_str(&current_chart)?,
            "--namespace",
            NS,
            "--set",
            &url,
        ],
    )
    .await
    .context("helm upgrade to the current chart")?;
    ensure!(
        old_op.terminate().await?,
        "the previous release's operator did not exit cleanly on SIGTERM:\n{}",
        tail(&old_op.log(), 40)
    );
    let new_docs = documents(&helm(&env, &["get", "manifest", NS, "--namespace", NS]).await?)?;
    std::fs::create_dir(dir.path().join("new"))?;
    let new_op = start_binary_as_chart(
        env.operator_bin.clone(),
        &new_docs,
        &env.operator_kubeconfig,
        &sim.url(),
        NS,
        &dir.path().join("new"),
    )?;

    // The current operator has seen every object and finds it Registered.
    let mut seen = 0;
    for _ in 0..300 {
        seen = objects_with_reason(&new_op, "Registered")
            .await
            .unwrap_or(0);
        if seen == CLIENTS.len() as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(
        seen == CLIENTS.len() as u64,
        "the current operator reports {seen} of {} objects Registered after the upgrade:\n{}",
        CLIENTS.len(),
        tail(&new_op.log(), 60)
    );
    for name in CLIENTS {
        let o = wait_ready_reason(&env, &ns, name, "Registered").await?;
        ensure!(
            o["status"]["observedGeneration"] == o["metadata"]["generation"],
            "{name}: status is not of the current generation: {o}"
        );
    }
    let after = credentials(&env, &ns).await?;
    ensure!(
        after == before,
        "the upgrade changed a Secret's credentials"
    );
    for (name, (id, secret)) in &after {
        ensure!(
            token_accepted(&sim.url(), id, secret).await?,
            "{name}: Collibra no longer accepts the credentials in its Secret"
        );
    }
    let stats = collibra.stats();
    ensure!(
        stats.requests_for("register") == registered && stats.requests_for("delete") == 0,
        "the upgrade sent {} registrations and {} deletions to Collibra",
        stats.requests_for("register") - registered,
        stats.requests_for("delete")
    );
    let stored = env
        .cp
        .kubectl(&[
            "get",
            "crd",
            "oauthclients.oauth.collibra.dev",
            "-o",
            "jsonpath={.status.storedVersions}",
        ])
        .await?;
    ensure!(
        stored.trim() == r#"["v1alpha1"]"#,
        "stored versions after the upgrade: {stored}"
    );

    // And the upgraded installation still registers new clients.
    env.cp
        .kubectl_with_stdin(
            &["apply", "-n", &ns, "-f", "-"],
            &manifest("after-upgrade", &format!("{ns}-after-upgrade"), ""),
        )
        .await?;
    wait_ready_reason(&env, &ns, "after-upgrade", "Registered").await?;
    ensure!(
        collibra.stats().requests_for("register") == registered + 1,
        "one new object, {} new registrations",
        collibra.stats().requests_for("register") - registered
    );
    eprintln!(
        "upgrade from {}: {} objects Ready before and after, credentials unchanged, \
         0 registrations and 0 deletions during the upgrade, 1 registration after it",
        prev.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
        CLIENTS.len()
    );
    drop(new_op);
    sim.shutdown().await;
    Ok(())
}

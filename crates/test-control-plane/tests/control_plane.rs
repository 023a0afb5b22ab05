//! Starts the real control plane once and checks everything the operator's
//! end-to-end tests rely on: readiness, namespaces, RBAC via impersonation,
//! ownerReference garbage collection, restarts and clean shutdown.
//!
//! Never skips: if the binaries cannot be built, `start` fails with the
//! build script's stderr and so does this test.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::json;
use test_control_plane::ControlPlane;

/// Polls `check` every 500 ms until it returns `Ok(true)` or `timeout` ends.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => "condition not met".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn check_api_ready(cp: &ControlPlane) -> Result<()> {
    let readyz = cp.kubectl(&["get", "--raw", "/readyz"]).await?;
    ensure!(readyz.trim() == "ok", "/readyz answered {readyz:?}");
    ensure!(cp.server_url().starts_with("https://127.0.0.1:"));
    for bin in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kubectl",
    ] {
        ensure!(cp.bin_dir().join(bin).is_file(), "{bin} missing in bin dir");
    }
    // The admin kubeconfig must work for plain kubectl too (tests hand it to
    // the operator and to kube-rs clients).
    let out = std::process::Command::new(cp.bin_dir().join("kubectl"))
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_path())
        .args(["auth", "can-i", "*", "*", "--all-namespaces"])
        .output()?;
    ensure!(
        String::from_utf8_lossy(&out.stdout).trim() == "yes",
        "admin is not cluster-admin: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

async fn check_namespaces(cp: &ControlPlane) -> Result<(String, String)> {
    let a = cp.create_namespace("e2e-check").await?;
    let b = cp.create_namespace("e2e-check").await?;
    ensure!(a.starts_with("e2e-check-"), "unexpected name {a}");
    ensure!(a != b, "namespace names repeat: {a}");
    cp.kubectl(&["get", "namespace", &a]).await?;
    Ok((a, b))
}

async fn check_rbac(cp: &ControlPlane, ns: &str, other_ns: &str, scratch: &Path) -> Result<()> {
    let kubeconfig = scratch.join("nobody.kubeconfig");
    let user = format!("system:serviceaccount:{ns}:nobody");
    cp.write_kubeconfig_as(&kubeconfig, &user, &[])?;
    let kc = kubeconfig.to_str().context("non-UTF-8 temp path")?;

    let whoami = cp
        .kubectl(&["--kubeconfig", kc, "auth", "whoami", "-o", "json"])
        .await?;
    let review: serde_json::Value = serde_json::from_str(&whoami)?;
    ensure!(
        review["status"]["userInfo"]["username"] == json!(user),
        "impersonation not in effect: {whoami}"
    );

    let list_secrets = |namespace: &str| {
        let namespace = namespace.to_owned();
        async move {
            cp.kubectl(&["--kubeconfig", kc, "get", "secrets", "-n", &namespace])
                .await
        }
    };
    let denied = list_secrets(ns).await;
    match denied {
        Ok(out) => bail!("listing secrets as {user} was allowed: {out}"),
        Err(e) => ensure!(
            format!("{e:#}").contains("Forbidden"),
            "unexpected error: {e:#}"
        ),
    }

    let rbac = json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": { "name": "secret-reader", "namespace": ns },
                "rules": [{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"] }],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": { "name": "nobody-reads-secrets", "namespace": ns },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-reader" },
                "subjects": [{ "kind": "ServiceAccount", "name": "nobody", "namespace": ns }],
            },
        ],
    });
    cp.kubectl_with_stdin(&["apply", "-f", "-"], &rbac.to_string())
        .await?;
    // The RBAC authorizer reads from an informer cache, so allow a moment.
    eventually(
        "the RoleBinding to take effect",
        Duration::from_secs(20),
        || async { Ok(list_secrets(ns).await.is_ok()) },
    )
    .await?;
    // ...and it grants nothing outside its namespace.
    let elsewhere = list_secrets(other_ns).await;
    ensure!(
        elsewhere.is_err(),
        "RoleBinding in {ns} leaked into {other_ns}"
    );
    Ok(())
}

async fn check_garbage_collection(cp: &ControlPlane, ns: &str) -> Result<()> {
    cp.kubectl(&[
        "create",
        "configmap",
        "owner",
        "-n",
        ns,
        "--from-literal=k=v",
    ])
    .await?;
    let uid = cp
        .kubectl(&[
            "get",
            "configmap",
            "owner",
            "-n",
            ns,
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .await?;
    let dependent = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": ns,
            "ownerReferences": [{ "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid.trim() }],
        },
        "data": { "k": "v" },
    });
    cp.kubectl_with_stdin(&["create", "-f", "-"], &dependent.to_string())
        .await?;
    cp.kubectl(&["delete", "configmap", "owner", "-n", ns])
        .await?;
    eventually(
        "the garbage collector to delete the dependent ConfigMap",
        Duration::from_secs(60),
        || async {
            let out = cp
                .kubectl(&[
                    "get",
                    "configmap",
                    "dependent",
                    "-n",
                    ns,
                    "--ignore-not-found",
                    "-o",
                    "name",
                ])
                .await?;
            Ok(out.trim().is_empty())
        },
    )
    .await
}

async fn check_restarts(cp: &ControlPlane, ns: &str) -> Result<()> {
    cp.kubectl(&[
        "create",
        "configmap",
        "survivor",
        "-n",
        ns,
        "--from-literal=k=v",
    ])
    .await?;

    let before = cp.pid("kube-apiserver").context("apiserver not running")?;
    let t = Instant::now();
    cp.restart_apiserver().await?;
    eprintln!("restart_apiserver took {:?}", t.elapsed());
    let after = cp.pid("kube-apiserver").context("apiserver not running")?;
    ensure!(before != after, "apiserver pid unchanged: {before}");
    ensure!(
        !Path::new(&format!("/proc/{before}")).exists(),
        "old apiserver {before} still exists"
    );
    cp.kubectl(&["get", "configmap", "survivor", "-n", ns])
        .await?;

    let t = Instant::now();
    cp.restart_etcd().await?;
    eprintln!("restart_etcd took {:?}", t.elapsed());
    // Data survives an etcd restart, and writes work again.
    cp.kubectl(&["get", "configmap", "survivor", "-n", ns])
        .await?;
    eventually(
        "a write after the etcd restart",
        Duration::from_secs(30),
        || async {
            Ok(cp
                .kubectl(&["create", "configmap", "after-etcd-restart", "-n", ns])
                .await
                .is_ok())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_control_plane() -> Result<()> {
    let cp = ControlPlane::start().await?;
    eprintln!("control plane timings: {:?}", cp.timings());
    let scratch = tempfile::tempdir()?;

    check_api_ready(&cp).await.context("API readiness")?;
    let (ns, other_ns) = check_namespaces(&cp).await.context("namespaces")?;
    check_rbac(&cp, &ns, &other_ns, scratch.path())
        .await
        .context("RBAC via impersonation")?;
    check_garbage_collection(&cp, &ns)
        .await
        .context("garbage collection")?;
    check_restarts(&cp, &ns).await.context("restarts")?;

    let pids = cp.pids();
    ensure!(
        pids.len() == 3,
        "expected 3 running components, got {pids:?}"
    );
    let dir = cp.dir().to_path_buf();
    ensure!(dir.exists());
    let t = Instant::now();
    cp.stop()?;
    eprintln!("stop took {:?}", t.elapsed());
    for pid in pids {
        ensure!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still exists after stop"
        );
    }
    ensure!(!dir.exists(), "{} still exists after stop", dir.display());
    Ok(())
}

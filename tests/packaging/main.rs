//! The operator installed cluster-wide with the chart's defaults, on its own
//! control plane (nothing else runs there, so a cluster-wide operator touches
//! only this binary's objects).
//!
//! The operator binary runs as the chart's Deployment configures it: the
//! same arguments (leader election included) and environment, its Collibra
//! credentials from files as the mounted Secret provides them, and exactly the
//! chart's RBAC (`deploy/rbac.yaml`, rendered from the chart and checked by
//! the e2e suite) through impersonation of its ServiceAccount.

use std::{process::ExitCode, sync::Arc, time::Duration};

use anyhow::{Context as _, bail, ensure};
use collibra_sim::{SimConfig, SimHandle, Simulator};
use test_support::{
    Arguments, Env, OPERATOR_SA, Operator, manifest, tail, token_accepted,
    tooling::{
        self, base64_decode, can_i, documents, forbidden_lines, render, start_as_chart,
        wait_ready_reason,
    },
};

/// The release and namespace of the chart's defaults (as in deploy/).
const NS: &str = "collibra-oauth-operator";

/// One control plane, one simulator, one cluster-wide operator.
struct World {
    env: Env,
    sim: Simulator,
    sim_url: String,
    collibra: SimHandle,
    op: tokio::sync::Mutex<Operator>,
    _dir: tempfile::TempDir,
}

impl test_support::World for World {
    async fn teardown(self) -> anyhow::Result<()> {
        if let Err(e) = self.op.into_inner().kill().await {
            eprintln!("stopping the operator: {e:#}");
        }
        self.sim.shutdown().await;
        self.env.stop()
    }
}

test_support::tests!(
    World;
    cluster_wide_registers_in_any_namespace,
    cluster_wide_reports_a_secret_conflict,
    cluster_wide_rbac_is_what_the_chart_grants,
    cluster_wide_leads_and_is_ready,
    cluster_connection_serves_the_namespaces_its_selector_picks,
    first_install_commands_print_no_warnings,
);

async fn start() -> anyhow::Result<World> {
    let dir = tempfile::tempdir().context("no temporary directory")?;
    let env = Env::start(env!("CARGO_BIN_EXE_collibra-oauth-operator")).await?;
    let sim = Simulator::start(SimConfig::default()).await?;
    let yaml = render(&env, NS, NS, &[]).await?;
    let docs = documents(&yaml)?;
    let cfg = tooling::container_config(&docs)?;
    ensure!(
        !cfg.env.contains_key("WATCH_NAMESPACES"),
        "the chart's defaults are not cluster-wide"
    );
    let op = start_as_chart(
        &env,
        &docs,
        &env.operator_kubeconfig,
        &sim.url(),
        NS,
        dir.path(),
    )
    .await?;
    Ok(World {
        sim_url: sim.url(),
        collibra: sim.handle(),
        op: tokio::sync::Mutex::new(op),
        sim,
        env,
        _dir: dir,
    })
}

/// A ClusterCollibraConnection (credentials in the operator's namespace)
/// to a second instance, limited by a namespace selector: an admitted
/// namespace registers there, another gets ConnectionNotReady naming it.
async fn cluster_connection_serves_the_namespaces_its_selector_picks(
    w: Arc<World>,
) -> anyhow::Result<()> {
    let other = Simulator::start(SimConfig::default()).await?;
    let result = async {
        let env = &w.env;
        env.cp
            .kubectl_with_stdin(
                &["apply", "-n", NS, "-f", "-"],
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: other-instance\nstringData:\n  client_id: operator\n  client_secret: operator-secret\n",
            )
            .await?;
        env.cp
            .kubectl_with_stdin(
                &["apply", "-f", "-"],
                &format!(
                    "apiVersion: oauth.collibra.dev/v1alpha1\nkind: ClusterCollibraConnection\nmetadata:\n  name: other\nspec:\n  url: {}\n  auth:\n    secretName: other-instance\n  namespaceSelector:\n    matchLabels:\n      collibra: other\n",
                    other.url()
                ),
            )
            .await?;
        let admitted = env.cp.create_namespace("picked").await?;
        env.cp
            .kubectl(&["label", "namespace", &admitted, "collibra=other"])
            .await?;
        let refused = env.cp.create_namespace("not-picked").await?;
        let via = "  connectionRef:\n    kind: ClusterCollibraConnection\n    name: other\n";
        for ns in [&admitted, &refused] {
            env.cp
                .kubectl_with_stdin(
                    &["apply", "-n", ns, "-f", "-"],
                    &manifest("app", &format!("{ns}-app"), via),
                )
                .await?;
        }
        let o = match wait_ready_reason(env, &admitted, "app", "Registered").await {
            Ok(o) => o,
            Err(e) => bail!("{e:#}\n--- operator log ---\n{}", operator_log(&w).await),
        };
        let id = o["status"]["clientId"].as_str().unwrap_or_default();
        ensure!(
            other.handle().clients().iter().any(|c| c.client_id == id),
            "registered in the connection's instance"
        );
        ensure!(
            !w.collibra.clients().iter().any(|c| c.client_id == id),
            "not in the default instance"
        );
        let o = wait_ready_reason(env, &refused, "app", "ConnectionNotReady").await?;
        let message = o["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap_or_default();
        ensure!(
            message.contains("ClusterCollibraConnection/other")
                && message.contains(&format!("does not admit namespace {refused}")),
            "{message}"
        );
        let status = env
            .cp
            .kubectl(&[
                "get",
                "clustercollibraconnection",
                "other",
                "-o",
                "jsonpath={.status.conditions[0].reason}",
            ])
            .await?;
        ensure!(status.trim() == "Connected", "connection: {status}");
        for ns in [admitted, refused] {
            let _ = env
                .cp
                .kubectl(&["delete", "namespace", &ns, "--wait=false"])
                .await;
        }
        Ok(())
    }
    .await;
    other.shutdown().await;
    result
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    test_support::run(&args, tests(), "the cluster-wide installation", start)
}

async fn operator_log(w: &World) -> String {
    tail(&w.op.lock().await.log(), 40)
}

/// Registers `name` in a fresh namespace and checks the credentials; returns
/// the namespace.
async fn register(w: &World, prefix: &str, name: &str) -> anyhow::Result<String> {
    let ns = w.env.cp.create_namespace(prefix).await?;
    w.env
        .cp
        .kubectl_with_stdin(
            &["apply", "-n", &ns, "-f", "-"],
            &manifest(name, &format!("{ns}-{name}"), ""),
        )
        .await?;
    let o = match wait_ready_reason(&w.env, &ns, name, "Registered").await {
        Ok(o) => o,
        Err(e) => bail!("{e:#}\n--- operator log ---\n{}", operator_log(w).await),
    };
    let client_id = o["status"]["clientId"].as_str().unwrap_or_default();
    let secret = w
        .env
        .cp
        .kubectl(&[
            "get",
            "secret",
            "-n",
            &ns,
            name,
            "-o",
            "jsonpath={.data.client_secret}",
        ])
        .await?;
    let secret = String::from_utf8(base64_decode(secret.trim())?)?;
    ensure!(
        token_accepted(&w.sim_url, client_id, &secret).await?,
        "Collibra does not accept the credentials in {ns}/{name}"
    );
    Ok(ns)
}

async fn cluster_wide_registers_in_any_namespace(w: Arc<World>) -> anyhow::Result<()> {
    let a = register(&w, "team-a", "billing").await?;
    let b = register(&w, "team-b", "reports").await?;
    // Deletion through the finalizer deletes the Collibra client.
    for (ns, name) in [(&a, "billing"), (&b, "reports")] {
        w.env
            .cp
            .kubectl(&["delete", "oauthclient", "-n", ns, name, "--timeout=60s"])
            .await
            .with_context(|| format!("deleting {ns}/{name}"))?;
    }
    let left: Vec<String> = w
        .collibra
        .clients()
        .into_iter()
        .map(|c| c.client_name)
        .filter(|n| n.starts_with(&a) || n.starts_with(&b))
        .collect();
    ensure!(left.is_empty(), "Collibra clients left: {left:?}");
    for ns in [a, b] {
        let _ = w
            .env
            .cp
            .kubectl(&["delete", "namespace", &ns, "--wait=false"])
            .await;
    }
    Ok(())
}

async fn cluster_wide_reports_a_secret_conflict(w: Arc<World>) -> anyhow::Result<()> {
    let ns = w.env.cp.create_namespace("conflict").await?;
    w.env
        .cp
        .kubectl(&[
            "create",
            "secret",
            "generic",
            "taken",
            "-n",
            &ns,
            "--from-literal=x=y",
        ])
        .await?;
    w.env
        .cp
        .kubectl_with_stdin(
            &["apply", "-n", &ns, "-f", "-"],
            &manifest("app", &format!("{ns}-app"), "  secretName: taken\n"),
        )
        .await?;
    if let Err(e) = wait_ready_reason(&w.env, &ns, "app", "SecretConflict").await {
        bail!("{e:#}\n--- operator log ---\n{}", operator_log(&w).await);
    }
    let data = w
        .env
        .cp
        .kubectl(&[
            "get",
            "secret",
            "-n",
            &ns,
            "taken",
            "-o",
            "jsonpath={.data}",
        ])
        .await?;
    ensure!(
        data == r#"{"x":"eQ=="}"#,
        "the foreign Secret was changed: {data}"
    );
    let _ = w
        .env
        .cp
        .kubectl(&["delete", "namespace", &ns, "--wait=false"])
        .await;
    Ok(())
}

async fn cluster_wide_rbac_is_what_the_chart_grants(w: Arc<World>) -> anyhow::Result<()> {
    let sa = OPERATOR_SA;
    let oac = "oauthclients.oauth.collibra.dev";
    for (args, want) in [
        (vec!["watch", oac, "--all-namespaces"], true),
        (vec!["patch", oac, "--all-namespaces"], true),
        (
            vec!["patch", oac, "--all-namespaces", "--subresource=status"],
            true,
        ),
        (vec!["update", oac, "--all-namespaces"], false),
        (vec!["create", oac, "--all-namespaces"], false),
        (vec!["delete", oac, "--all-namespaces"], false),
        (vec!["watch", "secrets", "--all-namespaces"], true),
        (vec!["create", "secrets", "--all-namespaces"], true),
        // Deleted only to change a Secret's type (docs/src/guides/secret-templates.md).
        (vec!["delete", "secrets", "--all-namespaces"], true),
        (vec!["update", "secrets", "--all-namespaces"], false),
        (
            vec!["create", "events.events.k8s.io", "--all-namespaces"],
            true,
        ),
        // CA bundle ConfigMaps are read and watched by name (metadata only,
        // a field selector on metadata.name), wherever connections live;
        // a name-selected watch takes list and watch. Never written.
        (vec!["get", "configmaps", "-n", "team-a"], true),
        (vec!["list", "configmaps", "--all-namespaces"], true),
        (vec!["watch", "configmaps", "--all-namespaces"], true),
        (vec!["create", "configmaps", "--all-namespaces"], false),
        (vec!["patch", "configmaps", "--all-namespaces"], false),
        (vec!["delete", "configmaps", "--all-namespaces"], false),
        (
            vec![
                "watch",
                "collibraconnections.oauth.collibra.dev",
                "--all-namespaces",
            ],
            true,
        ),
        (
            vec![
                "create",
                "collibraconnections.oauth.collibra.dev",
                "--all-namespaces",
            ],
            false,
        ),
        (
            vec!["watch", "clustercollibraconnections.oauth.collibra.dev"],
            true,
        ),
        (
            vec![
                "patch",
                "clustercollibraconnections.oauth.collibra.dev",
                "--subresource=status",
            ],
            true,
        ),
        (
            vec!["delete", "clustercollibraconnections.oauth.collibra.dev"],
            false,
        ),
        (vec!["watch", "namespaces"], true),
        (vec!["patch", "namespaces"], false),
        (vec!["list", "pods", "--all-namespaces"], false),
        (vec!["patch", "leases.coordination.k8s.io", "-n", NS], true),
        (
            vec!["patch", "leases.coordination.k8s.io", "-n", "default"],
            false,
        ),
        (
            vec!["create", "customresourcedefinitions.apiextensions.k8s.io"],
            false,
        ),
    ] {
        let have = can_i(&w.env, sa, &args).await?;
        ensure!(
            have == want,
            "can the operator {args:?}? {have}, want {want}"
        );
    }
    Ok(())
}

async fn cluster_wide_leads_and_is_ready(w: Arc<World>) -> anyhow::Result<()> {
    let mut last = (0, String::new());
    for _ in 0..150 {
        last = w.op.lock().await.http_get("/readyz").await?;
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(
        last.0 == 200,
        "/readyz: {} {}\n--- operator log ---\n{}",
        last.0,
        last.1,
        operator_log(&w).await
    );
    let holder = w
        .env
        .cp
        .kubectl(&[
            "get",
            "lease",
            "-n",
            NS,
            NS,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .await
        .context("the Lease named by the chart")?;
    ensure!(!holder.is_empty(), "the Lease has no holder");
    let forbidden = forbidden_lines(&w.op.lock().await.log());
    ensure!(
        forbidden.is_empty(),
        "the operator was refused something:\n{}",
        forbidden.join("\n")
    );
    Ok(())
}

/// Runs kubectl as the admin, feeding `stdin`, and returns its stderr; a
/// failure is an error. [`test_support::Env`]'s kubectl drops stderr on
/// success, and stderr is where the API server's warnings go.
async fn kubectl_stderr(env: &Env, args: &[&str], stdin: &str) -> anyhow::Result<String> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(env.cp.bin_dir().join("kubectl"))
        .arg("--kubeconfig")
        .arg(env.cp.kubeconfig_path())
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawning kubectl")?;
    let mut pipe = child.stdin.take().context("kubectl's stdin")?;
    let input = stdin.as_bytes().to_vec();
    let feed = async move {
        pipe.write_all(&input).await?;
        pipe.shutdown().await
    };
    let (fed, output) = tokio::join!(feed, child.wait_with_output());
    let output = output.context("waiting for kubectl")?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ensure!(
        output.status.success(),
        "kubectl {} failed: {stderr}",
        args.join(" ")
    );
    fed.context("writing kubectl's stdin")?;
    Ok(stderr)
}

/// A user's first commands print no warnings: the CRDs as a first apply
/// creates them, the chart (with its CRDs, a PodDisruptionBudget and a
/// NetworkPolicy) and `deploy/`, all through the API server's dry run, which
/// returns the same warnings a real apply gets (a CRD field format
/// Kubernetes does not know printed `Warning: unrecognized format "uint64"`).
async fn first_install_commands_print_no_warnings(w: Arc<World>) -> anyhow::Result<()> {
    let env = &w.env;
    let mut warnings = Vec::new();
    let mut check = |what: &str, stderr: String| {
        for line in stderr.lines().filter(|l| l.contains("Warning:")) {
            warnings.push(format!("{what}: {line}"));
        }
    };

    // The API server warns about a CRD's schema when the CRD is created, and
    // on an update only about what the update introduces; the CRDs exist
    // here already, so they are created again (server dry run) under
    // another group, which makes every apply a first one. The chart's and
    // deploy/'s copies are the same CRDs (packaging tests check that).
    let mut crds = String::new();
    for kind in [
        "oauthclients",
        "collibraconnections",
        "clustercollibraconnections",
    ] {
        let path = test_support::repo(&format!("crds/{kind}.yaml"));
        let yaml = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        crds.push_str("---\n");
        crds.push_str(&yaml.replace("oauth.collibra.dev", "warnings.oauth.collibra.dev"));
    }
    check(
        "the CRDs of crds/, created",
        kubectl_stderr(env, &["create", "--dry-run=server", "-f", "-"], &crds).await?,
    );

    let ns = env.cp.create_namespace("warnings").await?;
    let chart = render(
        env,
        "warnings",
        &ns,
        &[
            "--include-crds",
            "--set",
            "podDisruptionBudget.enabled=true,networkPolicy.enabled=true",
        ],
    )
    .await?;
    check(
        "helm template | kubectl apply --dry-run=server",
        kubectl_stderr(
            env,
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--dry-run=server",
                "-f",
                "-",
            ],
            &chart,
        )
        .await?,
    );

    let deploy = test_support::repo("deploy");
    let deploy = deploy.to_str().context("non-UTF-8 path")?;
    check(
        "kubectl apply -k deploy/ --dry-run=server",
        kubectl_stderr(
            env,
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--dry-run=server",
                "-k",
                deploy,
            ],
            "",
        )
        .await?,
    );

    ensure!(warnings.is_empty(), "warnings:\n{}", warnings.join("\n"));
    Ok(())
}

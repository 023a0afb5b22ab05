//! The install paths on the real control plane: the Helm chart (lint,
//! schema, template applied server-side, install, upgrade, uninstall), the
//! kustomize manifests in `deploy/` (rendered from the chart), the operator
//! run with exactly the chart's namespaced RBAC, and the GitOps health
//! readers (kstatus, the Argo CD Lua check) on real objects.
//!
//! The cluster-wide mode runs in its own test binary (`tests/packaging`),
//! where no other test's objects exist.

use std::sync::Arc;

use anyhow::{Context as _, bail, ensure};
use collibra_oauth_operator::{connection::status::ConnectionReason, controller::reasons::Reason};
use collibra_sim::{Faults, SimConfig, Simulator};
use test_support::{
    Env, Fixture, manifest, repo, tail, token_accepted,
    tooling::{
        argocd_health, base64_decode, can_i, chart, documents, forbidden_lines, helm, helm_output,
        kinds, kstatus, render, start_as_chart, wait_ready_reason,
    },
};

test_support::tests!(
    Env;
    packaging_chart_crd_is_the_generated_crd,
    packaging_deploy_is_rendered_from_the_chart,
    packaging_helm_lint,
    packaging_helm_lint_with_chart_testing_values,
    packaging_release_workflow_passes_actionlint,
    packaging_values_schema_rejects_wrong_values,
    packaging_helm_template_applies_server_side,
    packaging_helm_install_upgrade_uninstall,
    packaging_kustomize_deploy_applies,
    packaging_namespaced_mode_with_only_the_charts_roles,
    packaging_kstatus_and_argocd_health_on_real_objects,
    packaging_kstatus_and_argocd_health_on_connections,
    packaging_argocd_health_edge_cases,
);

async fn packaging_chart_crd_is_the_generated_crd(_env: Arc<Env>) -> anyhow::Result<()> {
    for file in [
        "oauthclients.yaml",
        "collibraconnections.yaml",
        "clustercollibraconnections.yaml",
    ] {
        let generated = std::fs::read_to_string(repo(&format!("crds/{file}")))?;
        let in_chart = std::fs::read_to_string(chart().join(format!("crds/{file}")))?;
        ensure!(
            generated == in_chart,
            "charts/collibra-oauth-operator/crds/{file} differs from crds/{file}: \
             run `make crd` (it copies the CRDs into the chart) and `hack/render-deploy.sh`"
        );
    }
    Ok(())
}

async fn packaging_deploy_is_rendered_from_the_chart(_env: Arc<Env>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = tokio::process::Command::new("bash")
        .arg(repo("hack/render-deploy.sh"))
        .arg(dir.path())
        .env("HELM", test_support::tooling::helm_bin().await?)
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "hack/render-deploy.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rendered: Vec<String> = std::fs::read_dir(dir.path())?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    rendered.sort();
    ensure!(
        rendered
            == [
                "crd.yaml",
                "kustomization.yaml",
                "operator.yaml",
                "rbac.yaml"
            ],
        "unexpected files {rendered:?}"
    );
    for name in &rendered {
        let want = std::fs::read_to_string(dir.path().join(name))?;
        let have = std::fs::read_to_string(repo("deploy").join(name))
            .with_context(|| format!("reading deploy/{name}"))?;
        ensure!(
            want == have,
            "deploy/{name} is not what the chart renders: run hack/render-deploy.sh"
        );
    }
    // Nothing else in deploy/ but the Argo CD health check.
    for entry in std::fs::read_dir(repo("deploy"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        ensure!(
            rendered.contains(&name) || name == "argocd",
            "deploy/{name} is not rendered from the chart"
        );
    }
    Ok(())
}

async fn packaging_helm_lint(env: Arc<Env>) -> anyhow::Result<()> {
    let chart = chart();
    let chart = chart.to_str().context("non-UTF-8 path")?;
    helm(
        &env,
        &[
            "lint",
            "--strict",
            chart,
            "--set",
            "collibra.url=https://acme.collibra.com",
        ],
    )
    .await?;
    // Every optional part switched on.
    helm(
        &env,
        &[
            "lint",
            "--strict",
            chart,
            "--set",
            "collibra.url=https://acme.collibra.com",
            "--set-json",
            r#"watchNamespaces=["team-a","team-b"]"#,
            "--set",
            "serviceMonitor.enabled=true,podDisruptionBudget.enabled=true,networkPolicy.enabled=true",
            "--set",
            "collibra.caBundle.secret=collibra-ca,collibra.auth=basic,replicas=2",
            "--set",
            "commonLabels.team=platform,commonAnnotations.owner=platform",
        ],
    )
    .await?;
    Ok(())
}

/// chart-testing's convention: every `ci/*-values.yaml` lints (and is what
/// `ct lint` and the release workflow use).
async fn packaging_helm_lint_with_chart_testing_values(env: Arc<Env>) -> anyhow::Result<()> {
    let chart = chart();
    let mut files: Vec<_> = std::fs::read_dir(chart.join("ci"))
        .context("reading the chart's ci/ directory")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    ensure!(
        files.len() >= 2,
        "expected chart-testing values in {}/ci, found {files:?}",
        chart.display()
    );
    let chart = chart.to_str().context("non-UTF-8 path")?;
    for values in &files {
        let values = values.to_str().context("non-UTF-8 path")?;
        helm(&env, &["lint", "--strict", chart, "--values", values])
            .await
            .with_context(|| format!("helm lint with {values}"))?;
    }
    Ok(())
}

/// The release workflow passes actionlint (built from its Go module).
async fn packaging_release_workflow_passes_actionlint(_env: Arc<Env>) -> anyhow::Result<()> {
    let script = repo("hack/actionlint/build.sh");
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("running hack/actionlint/build.sh")?;
    ensure!(
        out.status.success(),
        "hack/actionlint/build.sh failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    ensure!(
        !dir.is_empty(),
        "hack/actionlint/build.sh printed no directory"
    );
    let workflows: Vec<_> = std::fs::read_dir(repo(".github/workflows"))
        .context("reading .github/workflows")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    ensure!(!workflows.is_empty(), "no workflow in .github/workflows");
    let lint = tokio::process::Command::new(std::path::Path::new(&dir).join("actionlint"))
        .arg("-no-color")
        .args(&workflows)
        .current_dir(repo(""))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("running actionlint")?;
    ensure!(
        lint.status.success(),
        "actionlint found problems:\n{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    Ok(())
}

async fn packaging_values_schema_rejects_wrong_values(env: Arc<Env>) -> anyhow::Result<()> {
    let chart = chart();
    let chart = chart.to_str().context("non-UTF-8 path")?;
    // (values, what the error must say)
    let cases: &[(&[&str], &str)] = &[
        (&[], "missing property 'url'"),
        (
            &["--set", "collibra.url=acme.collibra.com"],
            "/collibra/url",
        ),
        (
            &[
                "--set",
                "collibra.url=https://a.example.com,collibra.auth=kerberos",
            ],
            "/collibra/auth",
        ),
        (
            &["--set", "collibra.url=https://a.example.com,logFormat=xml"],
            "/logFormat",
        ),
        (
            &[
                "--set",
                "collibra.url=https://a.example.com,resyncInterval=often",
            ],
            "/resyncInterval",
        ),
        (
            &["--set", "collibra.url=https://a.example.com,listMaxAge=10"],
            "/listMaxAge",
        ),
        (
            &[
                "--set",
                "collibra.url=https://a.example.com",
                "--set-json",
                r#"watchNamespaces=["Team_A"]"#,
            ],
            "/watchNamespaces/0",
        ),
        (
            &[
                "--set",
                "collibra.url=https://a.example.com,collibra.urll=x",
            ],
            "urll",
        ),
        (
            &[
                "--set",
                "collibra.url=https://a.example.com,replicas=2,leaderElection.enabled=false",
            ],
            "needs leaderElection.enabled=true",
        ),
        (
            &[
                "--set",
                "collibra.url=https://a.example.com,collibra.caBundle.secret=a,collibra.caBundle.configMap=b",
            ],
            "configMap or secret, not both",
        ),
    ];
    for (values, message) in cases {
        // `helm install` itself (it validates before it creates anything).
        let mut args = vec!["install", "schema-check", chart, "--namespace", "default"];
        args.extend_from_slice(values);
        let out = helm_output(&env, &args).await?;
        ensure!(!out.ok, "helm install with {values:?} was accepted");
        ensure!(
            out.stderr.contains(message),
            "helm install with {values:?} failed without saying {message:?}:\n{}",
            out.stderr
        );
    }
    ensure!(
        helm_output(&env, &["status", "schema-check", "--namespace", "default"])
            .await?
            .stderr
            .contains("not found"),
        "a rejected install left a release behind"
    );
    Ok(())
}

/// Labels a namespace so the API server enforces the restricted Pod
/// Security Standard on its pods.
async fn restrict(env: &Env, ns: &str) -> anyhow::Result<()> {
    env.cp
        .kubectl(&[
            "label",
            "namespace",
            ns,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted",
            "--overwrite",
        ])
        .await?;
    Ok(())
}

/// Checks that the API server admits a pod made from the Deployment's pod
/// template in `ns`, which enforces the restricted Pod Security Standard (a
/// non-compliant pod is refused at admission). The test control plane runs
/// no Deployment controller and no kubelet, so the pod is created with
/// `--dry-run=server`: admission runs in full, nothing is stored.
async fn pod_admitted(env: &Env, ns: &str, deployment: &serde_json::Value) -> anyhow::Result<()> {
    let template = &deployment["spec"]["template"];
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "pod-security-check",
            "namespace": ns,
            "labels": template["metadata"]["labels"],
        },
        "spec": template["spec"],
    });
    let out = env
        .cp
        .kubectl_with_stdin(
            &["create", "--dry-run=server", "-o", "name", "-f", "-"],
            &pod.to_string(),
        )
        .await
        .context("a pod of the Deployment's template was refused")?;
    ensure!(out.contains("pod/pod-security-check"), "unexpected: {out}");
    Ok(())
}

/// The Deployment `name` in `ns`, as stored.
async fn deployment(env: &Env, ns: &str, name: &str) -> anyhow::Result<serde_json::Value> {
    let json = env
        .cp
        .kubectl(&["get", "deployment", "-n", ns, name, "-o", "json"])
        .await?;
    Ok(serde_json::from_str(&json)?)
}

async fn packaging_helm_template_applies_server_side(env: Arc<Env>) -> anyhow::Result<()> {
    let ns = env.cp.create_namespace("tpl").await?;
    restrict(&env, &ns).await?;
    let watched = env.cp.create_namespace("tpl-watched").await?;
    let release = ns.clone();
    let result = async {
        // Defaults (cluster-wide) and every optional part but the
        // ServiceMonitor (its CRD is not installed here), namespaced.
        let defaults = render(&env, &release, &ns, &["--include-crds"]).await?;
        let everything = render(
            &env,
            &format!("{release}-all"),
            &ns,
            &[
                "--set-json",
                &format!(r#"watchNamespaces=["{watched}"]"#),
                "--set",
                "podDisruptionBudget.enabled=true,networkPolicy.enabled=true",
                "--set",
                "collibra.caBundle.configMap=collibra-ca,replicas=2",
            ],
        )
        .await?;
        let docs = documents(&everything)?;
        let kinds_all = kinds(&docs);
        ensure!(
            !kinds_all
                .iter()
                .any(|k| k.starts_with("ClusterRole") || k.starts_with("CustomResource")),
            "namespaced mode renders cluster-wide objects: {kinds_all:?}"
        );
        for (what, yaml) in [("defaults", &defaults), ("all options", &everything)] {
            env.cp
                .kubectl_with_stdin(
                    &["apply", "--server-side", "--dry-run=server", "-f", "-"],
                    yaml,
                )
                .await
                .with_context(|| format!("server-side dry run of the chart ({what})"))?;
            env.cp
                .kubectl_with_stdin(&["apply", "--server-side", "-f", "-"], yaml)
                .await
                .with_context(|| format!("server-side apply of the chart ({what})"))?;
        }
        let objects = env
            .cp
            .kubectl(&[
                "get",
                "deployment,service,serviceaccount,role,rolebinding,poddisruptionbudget,networkpolicy",
                "-n",
                &ns,
                "-o",
                "name",
            ])
            .await?;
        for want in [
            format!("deployment.apps/{release}-collibra-oauth-operator"),
            format!("service/{release}-collibra-oauth-operator-metrics"),
            format!("serviceaccount/{release}-all-collibra-oauth-operator"),
            format!("role.rbac.authorization.k8s.io/{release}-collibra-oauth-operator-leader-election"),
            format!("poddisruptionbudget.policy/{release}-all-collibra-oauth-operator"),
            format!("networkpolicy.networking.k8s.io/{release}-all-collibra-oauth-operator"),
        ] {
            ensure!(objects.contains(&want), "{want} missing; have:\n{objects}");
        }
        env.cp
            .kubectl(&[
                "get",
                "role",
                "-n",
                &watched,
                &format!("{release}-all-collibra-oauth-operator"),
            ])
            .await
            .context("the watched namespace's Role")?;
        let plain = deployment(&env, &ns, &format!("{release}-collibra-oauth-operator")).await?;
        pod_admitted(&env, &ns, &plain).await?;
        let all = deployment(&env, &ns, &format!("{release}-all-collibra-oauth-operator")).await?;
        pod_admitted(&env, &ns, &all).await?;
        // The check has teeth: without the security contexts the same pod is
        // refused.
        let mut insecure = plain.clone();
        let spec = &mut insecure["spec"]["template"]["spec"];
        spec["securityContext"] = serde_json::json!({});
        spec["containers"][0]["securityContext"] = serde_json::json!({});
        let refused = pod_admitted(&env, &ns, &insecure).await;
        ensure!(
            refused
                .as_ref()
                .is_err_and(|e| format!("{e:#}").contains("violates PodSecurity")),
            "a pod without security contexts was not refused: {refused:?}"
        );
        Ok(())
    }
    .await;
    let selector = format!("app.kubernetes.io/instance in ({release},{release}-all)");
    let _ = env
        .cp
        .kubectl(&["delete", "clusterrole,clusterrolebinding", "-l", &selector])
        .await;
    for n in [&ns, &watched] {
        let _ = env
            .cp
            .kubectl(&["delete", "namespace", n, "--wait=false"])
            .await;
    }
    result
}

async fn packaging_helm_install_upgrade_uninstall(env: Arc<Env>) -> anyhow::Result<()> {
    let ns = env.cp.create_namespace("helm").await?;
    restrict(&env, &ns).await?;
    let release = ns.clone();
    let full = format!("{release}-collibra-oauth-operator");
    let chart = chart();
    let chart = chart.to_str().context("non-UTF-8 path")?;
    let result = async {
        let out = helm(
            &env,
            &[
                "install",
                &release,
                chart,
                "--namespace",
                &ns,
                "--set",
                "collibra.url=https://acme.collibra.com",
            ],
        )
        .await?;
        ensure!(out.contains("STATUS: deployed"), "helm install: {out}");
        ensure!(
            out.contains(&format!("create secret generic {full}-credentials")),
            "NOTES.txt does not say how to give the credentials:\n{out}"
        );
        let deployed = deployment(&env, &ns, &full).await?;
        ensure!(deployed.to_string().contains("https://acme.collibra.com"));
        ensure!(
            deployed
                .to_string()
                .contains(r#"{"name":"LIST_MAX_AGE","value":"10s"}"#),
            "LIST_MAX_AGE is not the flag's default 10s: {deployed}"
        );
        env.cp
            .kubectl(&["get", "clusterrole,clusterrolebinding", &full])
            .await
            .context("cluster-wide RBAC after install")?;
        pod_admitted(&env, &ns, &deployed).await?;

        // Upgrade: namespaced mode, another log level and list age.
        let out = helm(
            &env,
            &[
                "upgrade",
                &release,
                chart,
                "--namespace",
                &ns,
                "--reuse-values",
                "--set",
                "logLevel=debug,listMaxAge=2s",
                "--set-json",
                &format!(r#"watchNamespaces=["{ns}"]"#),
            ],
        )
        .await?;
        ensure!(out.contains("REVISION: 2"), "helm upgrade: {out}");
        let env_json = env
            .cp
            .kubectl(&[
                "get",
                "deployment",
                "-n",
                &ns,
                &full,
                "-o",
                "jsonpath={.spec.template.spec.containers[0].env}",
            ])
            .await?;
        ensure!(
            env_json.contains(r#"{"name":"RUST_LOG","value":"debug"}"#),
            "RUST_LOG not updated: {env_json}"
        );
        ensure!(
            env_json.contains(r#"{"name":"LIST_MAX_AGE","value":"2s"}"#),
            "LIST_MAX_AGE not updated: {env_json}"
        );
        ensure!(
            env_json.contains(&format!(r#"{{"name":"WATCH_NAMESPACES","value":"{ns}"}}"#)),
            "WATCH_NAMESPACES not set: {env_json}"
        );
        let cluster = env
            .cp
            .kubectl(&[
                "get",
                "clusterrole,clusterrolebinding",
                "-l",
                &format!("app.kubernetes.io/instance={release}"),
                "-o",
                "name",
            ])
            .await?;
        ensure!(
            cluster.trim().is_empty(),
            "cluster-wide RBAC left after switching to namespaced mode: {cluster}"
        );
        env.cp
            .kubectl(&["get", "role,rolebinding", "-n", &ns, &full])
            .await
            .context("namespaced RBAC after upgrade")?;

        let out = helm(&env, &["uninstall", &release, "--namespace", &ns]).await?;
        ensure!(out.contains("uninstalled"), "helm uninstall: {out}");
        let left = env
            .cp
            .kubectl(&[
                "get",
                "deployment,service,serviceaccount,role,rolebinding",
                "-n",
                &ns,
                "-l",
                &format!("app.kubernetes.io/instance={release}"),
                "-o",
                "name",
            ])
            .await?;
        ensure!(left.trim().is_empty(), "left after uninstall: {left}");
        // The CRD stays (Helm never deletes crds/), so OAuthClients survive.
        env.cp
            .kubectl(&["get", "crd", "oauthclients.oauth.collibra.dev"])
            .await?;
        Ok(())
    }
    .await;
    let _ = helm_output(&env, &["uninstall", &release, "--namespace", &ns]).await;
    let _ = env
        .cp
        .kubectl(&["delete", "namespace", &ns, "--wait=false"])
        .await;
    result
}

/// The patch of the README's kustomize overlay (section Install).
const README_OVERLAY_PATCH: &str = r#"patches:
  - patch: |
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: collibra-oauth-operator
        namespace: collibra-oauth-operator
      spec:
        template:
          spec:
            containers:
              - name: operator
                env:
                  - name: COLLIBRA_URL
                    value: https://acme.collibra.com
"#;

async fn packaging_kustomize_deploy_applies(env: Arc<Env>) -> anyhow::Result<()> {
    let deploy = repo("deploy");
    let deploy = deploy.to_str().context("non-UTF-8 path")?;
    env.cp
        .kubectl(&["apply", "--server-side", "--dry-run=server", "-k", deploy])
        .await
        .context("kubectl apply -k deploy/ (server dry run)")?;
    // The README's overlay sets the Collibra URL.
    let readme = std::fs::read_to_string(repo("README.md"))?;
    ensure!(
        readme.contains(README_OVERLAY_PATCH),
        "README.md's kustomize overlay is not the one tested here (README_OVERLAY_PATCH)"
    );
    let overlay = tempfile::tempdir()?;
    let up = "../".repeat(overlay.path().components().count() - 1);
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        format!(
            "resources:\n  - {up}{}\n{}",
            deploy.trim_start_matches('/'),
            README_OVERLAY_PATCH
        ),
    )?;
    let built = env
        .cp
        .kubectl(&[
            "kustomize",
            overlay.path().to_str().context("non-UTF-8 path")?,
        ])
        .await
        .context("kubectl kustomize of the README's overlay")?;
    ensure!(
        built.contains("- name: COLLIBRA_URL\n          value: https://acme.collibra.com\n"),
        "the README's overlay does not set COLLIBRA_URL:\n{built}"
    );
    ensure!(
        built.matches("name: COLLIBRA_URL").count() == 1,
        "COLLIBRA_URL twice"
    );
    // For real. The RBAC is what the suite already runs with (deploy/rbac.yaml);
    // the Deployment and Service are removed again afterwards.
    let result = async {
        env.cp
            .kubectl(&["apply", "--server-side", "-k", deploy])
            .await
            .context("kubectl apply -k deploy/")?;
        env.cp
            .kubectl(&[
                "get",
                "service",
                "-n",
                "collibra-oauth-operator",
                "collibra-oauth-operator-metrics",
            ])
            .await?;
        // deploy/'s namespace enforces the restricted Pod Security Standard.
        let d = deployment(&env, "collibra-oauth-operator", "collibra-oauth-operator").await?;
        pod_admitted(&env, "collibra-oauth-operator", &d).await
    }
    .await;
    let operator = repo("deploy/operator.yaml");
    let _ = env
        .cp
        .kubectl(&[
            "delete",
            "--ignore-not-found",
            "-f",
            operator.to_str().context("non-UTF-8 path")?,
        ])
        .await;
    result
}

async fn packaging_namespaced_mode_with_only_the_charts_roles(env: Arc<Env>) -> anyhow::Result<()> {
    let op_ns = env.cp.create_namespace("nsmode-op").await?;
    let watched = env.cp.create_namespace("nsmode").await?;
    let release = "nsmode";
    let sa = format!("system:serviceaccount:{op_ns}:{release}-collibra-oauth-operator");
    let sim = Simulator::start(SimConfig::default()).await?;
    let dir = tempfile::tempdir()?;
    let watch = format!(r#"watchNamespaces=["{watched}"]"#);
    let result = async {
        let yaml = render(&env, release, &op_ns, &["--set-json", &watch]).await?;
        let docs = documents(&yaml)?;
        let rbac: Vec<serde_json::Value> = docs
            .iter()
            .filter(|d| {
                [
                    "ServiceAccount",
                    "Role",
                    "RoleBinding",
                    "ClusterRole",
                    "ClusterRoleBinding",
                ]
                .contains(&d["kind"].as_str().unwrap_or_default())
            })
            .cloned()
            .collect();
        let names = kinds(&rbac);
        ensure!(
            !names.iter().any(|k| k.starts_with("Cluster")),
            "namespaced mode renders cluster-wide RBAC: {names:?}"
        );
        let rbac_yaml = rbac
            .iter()
            .map(serde_yaml::to_string)
            .collect::<Result<Vec<_>, _>>()?
            .join("---\n");
        env.cp
            .kubectl_with_stdin(&["apply", "--server-side", "-f", "-"], &rbac_yaml)
            .await?;
        // Nothing cluster-wide, everything it needs in the watched namespace.
        for (args, want) in [
            (
                vec![
                    "list",
                    "oauthclients.oauth.collibra.dev",
                    "--all-namespaces",
                ],
                false,
            ),
            (vec!["list", "secrets", "--all-namespaces"], false),
            (
                vec!["list", "oauthclients.oauth.collibra.dev", "-n", "default"],
                false,
            ),
            (
                vec!["watch", "oauthclients.oauth.collibra.dev", "-n", &watched],
                true,
            ),
            (
                vec![
                    "patch",
                    "oauthclients.oauth.collibra.dev",
                    "-n",
                    &watched,
                    "--subresource=status",
                ],
                true,
            ),
            (vec!["create", "secrets", "-n", &watched], true),
            (vec!["delete", "secrets", "-n", &watched], true),
            (
                vec![
                    "watch",
                    "collibraconnections.oauth.collibra.dev",
                    "-n",
                    &watched,
                ],
                true,
            ),
            (
                vec![
                    "list",
                    "collibraconnections.oauth.collibra.dev",
                    "-n",
                    "default",
                ],
                false,
            ),
            (
                vec!["list", "clustercollibraconnections.oauth.collibra.dev"],
                false,
            ),
            (vec!["list", "namespaces"], false),
            (vec!["get", "configmaps", "-n", &watched], true),
            // Connections' Secrets and CA bundle ConfigMaps are watched by
            // name: list and watch in the watched namespace, nowhere else.
            (vec!["watch", "configmaps", "-n", &watched], true),
            (vec!["list", "configmaps", "-n", &watched], true),
            (vec!["watch", "secrets", "-n", &watched], true),
            (vec!["list", "configmaps", "--all-namespaces"], false),
            (vec!["watch", "configmaps", "-n", "default"], false),
            (
                vec!["update", "oauthclients.oauth.collibra.dev", "-n", &watched],
                false,
            ),
            (
                vec!["patch", "leases.coordination.k8s.io", "-n", &op_ns],
                true,
            ),
            (
                vec!["patch", "leases.coordination.k8s.io", "-n", &watched],
                false,
            ),
        ] {
            let have = can_i(&env, &sa, &args).await?;
            ensure!(
                have == want,
                "can the operator {args:?}? {have}, want {want}"
            );
        }
        let kubeconfig = dir.path().join("operator.kubeconfig");
        env.cp.write_kubeconfig_as(&kubeconfig, &sa, &[])?;
        let mut op =
            start_as_chart(&env, &docs, &kubeconfig, &sim.url(), &op_ns, dir.path()).await?;
        let checked = async {
            env.cp
                .kubectl_with_stdin(
                    &["apply", "-n", &watched, "-f", "-"],
                    &manifest("svc-a", &format!("{watched}-svc-a"), ""),
                )
                .await?;
            let o = wait_ready_reason(&env, &watched, "svc-a", Reason::Registered.as_str()).await;
            let o = match o {
                Ok(o) => o,
                Err(e) => bail!("{e:#}\n--- operator log ---\n{}", tail(&op.log(), 40)),
            };
            let client_id = o["status"]["clientId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let secret = env
                .cp
                .kubectl(&[
                    "get",
                    "secret",
                    "-n",
                    &watched,
                    "svc-a",
                    "-o",
                    "jsonpath={.data.client_secret}",
                ])
                .await?;
            let secret = String::from_utf8(
                base64_decode(secret.trim()).context("client_secret is not base64")?,
            )?;
            ensure!(
                token_accepted(&sim.url(), &client_id, &secret).await?,
                "Collibra does not accept the credentials in the Secret"
            );
            // The lease, with only the chart's Role.
            env.cp
                .kubectl(&[
                    "get",
                    "lease",
                    "-n",
                    &op_ns,
                    &format!("{release}-collibra-oauth-operator"),
                ])
                .await
                .context("the leader election Lease")?;
            env.cp
                .kubectl(&[
                    "delete",
                    "oauthclient",
                    "-n",
                    &watched,
                    "svc-a",
                    "--timeout=60s",
                ])
                .await
                .context("deleting the OAuthClient (finalizer)")?;
            ensure!(
                sim.handle().clients().is_empty(),
                "the Collibra client was not deleted"
            );
            let forbidden = forbidden_lines(&op.log());
            ensure!(
                forbidden.is_empty(),
                "the operator was refused something:\n{}",
                forbidden.join("\n")
            );
            Ok(())
        }
        .await;
        op.kill().await?;
        checked
    }
    .await;
    sim.shutdown().await;
    let _ = env
        .cp
        .kubectl(&["delete", "namespace", &op_ns, &watched, "--wait=false"])
        .await;
    result
}

async fn packaging_kstatus_and_argocd_health_on_real_objects(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::new(env.clone(), "health").await?;
    let outage = Fixture::new(env, "health-outage").await?;
    let result = async {
        outage.collibra.set_faults(Faults {
            error_rate: 1.0,
            ..Faults::default()
        });
        f.apply(&manifest("ready", &format!("{}-ready", f.ns), ""))
            .await?;
        f.kubectl(&["create", "secret", "generic", "taken", "--from-literal=x=y"])
            .await?;
        f.apply(&manifest(
            "stalled",
            &format!("{}-stalled", f.ns),
            "  secretName: taken\n",
        ))
        .await?;
        outage
            .apply(&manifest("waiting", &format!("{}-waiting", outage.ns), ""))
            .await?;
        f.wait_reason("ready", Reason::Registered.as_str()).await?;
        f.wait_reason("stalled", Reason::SecretConflict.as_str())
            .await?;
        outage
            .wait_reason("waiting", Reason::CollibraUnavailable.as_str())
            .await?;

        let cases = [
            (&f, "ready", "Current", "Healthy"),
            (&outage, "waiting", "InProgress", "Progressing"),
            (&f, "stalled", "Failed", "Degraded"),
        ];
        for (fx, name, want_kstatus, want_health) in cases {
            let json = fx
                .kubectl(&["get", "oauthclient", name, "-o", "json"])
                .await?;
            let (status, message) = kstatus(&json).await?;
            ensure!(
                status == want_kstatus,
                "kstatus says {status} ({message}) for {name}, want {want_kstatus}:\n{json}"
            );
            let (health, hmessage) = argocd_health(&json).await?;
            ensure!(
                health == want_health,
                "the Argo CD health check says {health} ({hmessage}) for {name}, want {want_health}"
            );
            ensure!(!hmessage.is_empty(), "no health message for {name}");
        }
        Ok(())
    }
    .await;
    f.finish().await?;
    outage.finish().await?;
    result
}

/// The same two readers on CollibraConnections: Connected, unreachable
/// (retried) and refused by the host allow-list (a person must act).
async fn packaging_kstatus_and_argocd_health_on_connections(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "health-conn",
        test_support::Options {
            extra_args: vec![
                "--namespaced-connection-hosts".to_owned(),
                "127.0.0.1".to_owned(),
            ],
            ..test_support::Options::default()
        },
    )
    .await?;
    let result = async {
        f.apply(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  client_id: operator\n  client_secret: operator-secret\n",
        )
        .await?;
        let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let connection = |name: &str, url: &str| {
            format!(
                "apiVersion: oauth.collibra.dev/v1alpha1\nkind: CollibraConnection\nmetadata:\n  name: {name}\nspec:\n  url: {url}\n  auth:\n    secretName: creds\n  connectTimeout: 500ms\n  timeout: 2s\n"
            )
        };
        f.apply(&connection("up", &f.sim.url())).await?;
        f.apply(&connection("down", &format!("http://127.0.0.1:{closed}")))
            .await?;
        f.apply(&connection("refused", "https://collibra.example.com"))
            .await?;
        let cases = [
            ("up", ConnectionReason::Connected, "Current", "Healthy"),
            ("down", ConnectionReason::Unreachable, "InProgress", "Progressing"),
            ("refused", ConnectionReason::HostNotAllowed, "Failed", "Degraded"),
        ];
        for (name, reason, want_kstatus, want_health) in cases {
            let reason = reason.as_str();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            let json = loop {
                let json = f
                    .kubectl(&["get", "collibraconnection", name, "-o", "json"])
                    .await?;
                let v: serde_json::Value = serde_json::from_str(&json)?;
                let ready = v["status"]["conditions"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                    .and_then(|c| c["reason"].as_str())
                    .map(str::to_owned);
                if ready.as_deref() == Some(reason) {
                    break json;
                }
                if std::time::Instant::now() > deadline {
                    bail!(
                        "{name} never became {reason}: {json}\n{}",
                        tail(&f.op.log(), 30)
                    );
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            };
            let (status, message) = kstatus(&json).await?;
            ensure!(
                status == want_kstatus,
                "kstatus says {status} ({message}) for {name}, want {want_kstatus}:\n{json}"
            );
            let (health, hmessage) = argocd_health(&json).await?;
            ensure!(
                health == want_health && hmessage.starts_with(reason),
                "the Argo CD health check says {health} ({hmessage}) for {name}, want {want_health}"
            );
        }
        Ok(())
    }
    .await;
    f.finish().await?;
    result
}

/// Objects the cluster tests do not produce: not yet seen, stale status,
/// being deleted.
async fn packaging_argocd_health_edge_cases(_env: Arc<Env>) -> anyhow::Result<()> {
    let ready = serde_json::json!([
        {"type": "Ready", "status": "True", "reason": "Registered", "message": "ok"},
        {"type": "Stalled", "status": "False", "reason": "Registered", "message": ""},
    ]);
    let cases = [
        (
            serde_json::json!({"metadata": {"name": "a", "generation": 1}}),
            "Progressing",
            "Waiting for the operator",
        ),
        (
            serde_json::json!({"metadata": {"name": "a", "generation": 2},
                "status": {"observedGeneration": 1, "conditions": ready}}),
            "Progressing",
            "generation 2",
        ),
        (
            serde_json::json!({"metadata": {"name": "a", "generation": 1,
                "deletionTimestamp": "2026-11-26T00:00:00Z"},
                "status": {"observedGeneration": 1, "conditions": ready}}),
            "Progressing",
            "Deleting",
        ),
        (
            serde_json::json!({"metadata": {"name": "a", "generation": 1},
                "status": {"observedGeneration": 1, "conditions": ready}}),
            "Healthy",
            "Registered: ok",
        ),
    ];
    for (obj, want, message) in cases {
        let (status, got) = argocd_health(&obj.to_string()).await?;
        ensure!(
            status == want && got.contains(message),
            "{obj}: {status} ({got}), want {want} ({message})"
        );
    }
    Ok(())
}

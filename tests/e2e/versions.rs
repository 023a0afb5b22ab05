//! The Kubernetes version the suite runs on: the control plane reports the
//! release it was built from (so the chart's `kubeVersion` means something),
//! and the chart's constraint admits this server and refuses older ones.
//! `make test` runs the suite on the newest and the oldest supported minor
//! (`CONTROL_PLANE_VERSION`, see hack/control-plane).

use std::sync::Arc;

use anyhow::{Context as _, ensure};
use test_support::{
    Env, repo,
    tooling::{chart, helm_output},
};

test_support::tests!(
    Env;
    versions_control_plane_reports_its_release,
    versions_chart_kube_version_admits_this_server,
);

/// The `k8s.io/kubernetes` version the control plane was built from: the one
/// in `hack/control-plane/go.mod`, or in `hack/control-plane/vX.Y/go.mod` when
/// `CONTROL_PLANE_VERSION` names an older minor.
fn pinned_version() -> anyhow::Result<String> {
    let newest = repo("hack/control-plane");
    let dir = match std::env::var("CONTROL_PLANE_VERSION") {
        Ok(v) if !v.trim().is_empty() => {
            let older = newest.join(format!("v{}", v.trim().trim_start_matches('v')));
            if older.join("go.mod").is_file() {
                older
            } else {
                newest
            }
        }
        _ => newest,
    };
    let go_mod = std::fs::read_to_string(dir.join("go.mod"))
        .with_context(|| format!("reading {}/go.mod", dir.display()))?;
    go_mod
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("k8s.io/kubernetes")).then(|| words.next())?
        })
        .find(|v| v.starts_with('v'))
        .map(str::to_owned)
        .with_context(|| format!("{}/go.mod requires no k8s.io/kubernetes", dir.display()))
}

async fn versions_control_plane_reports_its_release(env: Arc<Env>) -> anyhow::Result<()> {
    let pinned = pinned_version()?;
    ensure!(
        env.cp.server_version() == pinned,
        "the API server reports {}, but it is built from k8s.io/kubernetes {pinned} \
         (hack/control-plane/build.sh stamps the version at link time)",
        env.cp.server_version()
    );
    let body = env.cp.kubectl(&["get", "--raw", "/version"]).await?;
    let info: serde_json::Value = serde_json::from_str(&body)?;
    let mut parts = pinned.trim_start_matches('v').split('.');
    let (major, minor) = (parts.next(), parts.next());
    ensure!(
        info["major"].as_str() == major && info["minor"].as_str() == minor,
        "/version says major {} minor {}, expected {major:?} {minor:?}: {body}",
        info["major"],
        info["minor"]
    );
    // The build date is the release's, not the epoch placeholder.
    ensure!(
        info["buildDate"]
            .as_str()
            .is_some_and(|d| !d.starts_with("1970")),
        "/version has no real build date: {body}"
    );
    Ok(())
}

async fn versions_chart_kube_version_admits_this_server(env: Arc<Env>) -> anyhow::Result<()> {
    let chart = chart();
    let chart = chart.to_str().context("non-UTF-8 path")?;
    let base = [
        "chart-version-check",
        chart,
        "--namespace",
        "default",
        "--set",
        "collibra.url=https://collibra.example.com",
    ];
    // Against the server itself: helm asks it for its version.
    let mut args = vec!["install", "--dry-run=server"];
    args.extend_from_slice(&base);
    let out = helm_output(&env, &args).await?;
    ensure!(
        out.ok,
        "helm install --dry-run=server refuses Kubernetes {}:\n{}",
        env.cp.server_version(),
        out.stderr
    );
    // The constraint is real: the minor below the supported range is
    // refused, naming the constraint.
    let below = format!("v1.{}.99", oldest_supported_minor()? - 1);
    let mut args = vec!["template", "--kube-version", &below];
    args.extend_from_slice(&base);
    let out = helm_output(&env, &args).await?;
    ensure!(
        !out.ok && out.stderr.contains("kubeVersion"),
        "helm template for Kubernetes {below} should fail on the chart's kubeVersion; \
         ok={} stderr: {}",
        out.ok,
        out.stderr
    );
    Ok(())
}

/// The minor of the chart's `kubeVersion: ">= 1.N.0-0"`.
fn oldest_supported_minor() -> anyhow::Result<u32> {
    let chart_yaml = std::fs::read_to_string(chart().join("Chart.yaml"))?;
    let constraint = chart_yaml
        .lines()
        .find_map(|l| l.strip_prefix("kubeVersion:"))
        .context("Chart.yaml has no kubeVersion")?;
    let minor = constraint
        .trim()
        .trim_matches('"')
        .trim_start_matches(">=")
        .trim()
        .strip_prefix("1.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("kubeVersion {constraint} is not \">= 1.N.0-0\""))?;
    Ok(minor)
}

//! The chart's PrometheusRule and Grafana dashboard, checked with the real
//! tools: `promtool check rules` and `promtool test rules` (promtool built
//! from its Go module by `hack/tools/promtool/build.sh`, cached), Prometheus'
//! own PromQL and scrape parsers (`promql-selectors`, built with it), and a
//! real operator: every metric and label an alert or a panel selects must be
//! among what the operator's `/metrics` serves.
//!
//! The world: one control plane, one simulator, the operator started as the
//! chart's Deployment configures it (leader election on) and a second replica
//! that stands by.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use collibra_sim::{Faults, SimConfig, SimHandle, Simulator};
use serde_json::Value;
use test_support::{
    Arguments, Env, Operator, manifest, repo, tail,
    tooling::{self, documents, render, start_as_chart, wait_ready_reason},
};
use tokio::{io::AsyncWriteExt as _, process::Command, sync::OnceCell};

/// The release and namespace, as in deploy/ (the unit tests' series carry
/// the job and namespace the rule selects for this release).
const NS: &str = "collibra-oauth-operator";

/// Series Prometheus makes itself rather than the operator, each with why.
const NOT_FROM_THE_OPERATOR: &[(&str, &str)] = &[(
    "up",
    "written by Prometheus for every scrape target: 1 when the scrape succeeded",
)];

/// Labels Prometheus adds to every series of a target (the ServiceMonitor's
/// target labels), which no scrape shows.
const TARGET_LABELS: &[&str] = &["job", "namespace", "instance", "pod", "service"];

struct World {
    env: Env,
    sim: Simulator,
    collibra: SimHandle,
    leader: tokio::sync::Mutex<Operator>,
    standby: tokio::sync::Mutex<Operator>,
    _dir: tempfile::TempDir,
}

impl test_support::World for World {
    async fn teardown(self) -> anyhow::Result<()> {
        for op in [self.leader, self.standby] {
            if let Err(e) = op.into_inner().kill().await {
                eprintln!("stopping an operator: {e:#}");
            }
        }
        self.sim.shutdown().await;
        self.env.stop()
    }
}

test_support::tests!(
    World;
    off_by_default,
    rules_pass_promtool_check,
    every_alert_fires_and_stays_quiet_in_promtool_unit_tests,
    runbook_links_point_at_sections_of_the_alerts_page,
    dashboard_is_a_configmap_for_the_grafana_sidecar,
    the_leader_gauge_tells_the_leader_from_a_standby,
    rules_and_dashboard_select_only_what_the_operator_exports,
);

fn main() -> ExitCode {
    let args = Arguments::from_args();
    test_support::run(&args, tests(), "the monitoring world", start)
}

async fn start() -> anyhow::Result<World> {
    let dir = tempfile::tempdir().context("no temporary directory")?;
    let env = Env::start(env!("CARGO_BIN_EXE_collibra-oauth-operator")).await?;
    let sim = Simulator::start(SimConfig::default()).await?;
    let docs = documents(&render(&env, NS, NS, &[]).await?)?;
    let leader = start_as_chart(
        &env,
        &docs,
        &env.operator_kubeconfig,
        &sim.url(),
        NS,
        dir.path(),
    )
    .await?;
    // Leading first, so the second replica is the standby.
    wait_readyz(&leader, "leader").await?;
    let standby = second_replica(&env, &docs, &sim.url(), dir.path())?;
    wait_readyz(&standby, "standby").await?;
    Ok(World {
        collibra: sim.handle(),
        sim,
        env,
        leader: tokio::sync::Mutex::new(leader),
        standby: tokio::sync::Mutex::new(standby),
        _dir: dir,
    })
}

/// Another replica of the chart's Deployment: the same arguments and
/// environment as [`start_as_chart`] gives the first (whose credential files
/// in `dir` it shares), but its own Pod name, so it competes for the Lease
/// under its own identity.
fn second_replica(
    env: &Env,
    docs: &[Value],
    collibra_url: &str,
    dir: &Path,
) -> anyhow::Result<Operator> {
    let cfg = tooling::container_config(docs)?;
    let mut envs = Vec::new();
    for (name, value) in &cfg.env {
        let value = match name.as_str() {
            "COLLIBRA_URL" => collibra_url.to_owned(),
            "METRICS_ADDR" => continue,
            n if n.ends_with("_FILE") && n != "COLLIBRA_CA_FILE" => {
                let file = Path::new(value)
                    .file_name()
                    .context("credential file path without a name")?;
                dir.join(file).display().to_string()
            }
            _ => value.clone(),
        };
        envs.push((name.clone(), value));
    }
    for (name, field) in &cfg.field_env {
        let value = match field.as_str() {
            "metadata.name" => "collibra-oauth-operator-1".to_owned(),
            "metadata.namespace" => NS.to_owned(),
            other => bail!("no local stand-in for the field {other}"),
        };
        envs.push((name.clone(), value));
    }
    envs.push((
        "KUBECONFIG".to_owned(),
        env.operator_kubeconfig.display().to_string(),
    ));
    Operator::start(
        env.operator_bin.clone(),
        dir.join("standby.log"),
        cfg.args,
        envs,
    )
}

async fn wait_readyz(op: &Operator, want: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = op.http_get("/readyz").await;
        if let Ok((200, body)) = &got
            && body.trim() == want
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "/readyz never answered {want}: {got:?}\n--- log ---\n{}",
                tail(&op.log(), 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// --- the tools ---------------------------------------------------------------

static PROMTOOL: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();

/// The directory of promtool and promql-selectors, built on first use.
async fn promtool_dir() -> anyhow::Result<PathBuf> {
    let r = PROMTOOL
        .get_or_init(|| async {
            let script = repo("hack/tools/promtool/build.sh");
            let out = Command::new("bash")
                .arg(&script)
                .stdin(Stdio::null())
                .output()
                .await
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "{} failed ({}); promtool is needed to check the chart's alerts:\n{}",
                    script.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            match stdout.lines().last().map(str::trim) {
                Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
                _ => Err(format!("{} printed no directory", script.display())),
            }
        })
        .await;
    r.clone().map_err(|e| anyhow::anyhow!(e))
}

/// Runs a tool of [`promtool_dir`] with `stdin`; returns stdout, or fails
/// with both outputs.
async fn run_tool(
    name: &str,
    args: &[&str],
    cwd: Option<&Path>,
    stdin: &str,
) -> anyhow::Result<String> {
    let bin = promtool_dir().await?.join(name);
    let mut cmd = Command::new(&bin);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "{name} {} failed ({}):\n{stdout}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

// --- what the chart renders --------------------------------------------------

/// The PrometheusRule's spec (a Prometheus rule file) with the defaults.
async fn rule_file(env: &Env, extra: &[&str]) -> anyhow::Result<Value> {
    let mut args = vec![
        "--set",
        "prometheusRule.enabled=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    ];
    args.extend_from_slice(extra);
    let docs = documents(&render(env, NS, NS, &args).await?)?;
    ensure!(docs.len() == 1, "one PrometheusRule expected: {docs:?}");
    ensure!(docs[0]["kind"] == "PrometheusRule", "{:?}", docs[0]["kind"]);
    Ok(docs[0]["spec"].clone())
}

/// The rules of a rule file.
fn rules(spec: &Value) -> Vec<&Value> {
    spec["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect()
}

/// Writes `spec` as `rules.yaml` in `dir`.
fn write_rules(dir: &Path, spec: &Value) -> anyhow::Result<PathBuf> {
    let path = dir.join("rules.yaml");
    std::fs::write(&path, serde_yaml::to_string(spec)?)?;
    Ok(path)
}

/// The dashboard as the chart ships it, from the rendered ConfigMap.
async fn dashboard_configmap(env: &Env, extra: &[&str]) -> anyhow::Result<Value> {
    let mut args = vec![
        "--set",
        "grafanaDashboard.enabled=true",
        "--show-only",
        "templates/grafana-dashboard.yaml",
    ];
    args.extend_from_slice(extra);
    let docs = documents(&render(env, NS, NS, &args).await?)?;
    ensure!(docs.len() == 1, "one ConfigMap expected: {docs:?}");
    Ok(docs[0].clone())
}

fn dashboard_json(cm: &Value) -> anyhow::Result<Value> {
    let text = cm["data"]["collibra-oauth-operator.json"]
        .as_str()
        .context("the ConfigMap has no collibra-oauth-operator.json")?;
    serde_json::from_str(text).context("the dashboard is not JSON")
}

/// Every panel's queries, nested rows included: (panel title, expression).
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push((title.clone(), expr.to_owned()));
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The dashboard's variables that query Prometheus, as (name, the selector
/// inside `label_values(selector, label)`, label).
fn variable_queries(dashboard: &Value) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().unwrap_or("?").to_owned();
        let q = v["query"]["query"]
            .as_str()
            .or_else(|| v["query"].as_str())
            .with_context(|| format!("variable {name} has no query"))?;
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .with_context(|| format!("variable {name}: not label_values(...): {q}"))?;
        let (selector, label) = inner
            .rsplit_once(',')
            .with_context(|| format!("variable {name}: label_values without a label: {q}"))?;
        out.push((name, selector.trim().to_owned(), label.trim().to_owned()));
    }
    Ok(out)
}

/// Grafana's interval variables stand for durations; PromQL needs one to
/// parse. The others (`$namespace`, `$job`) sit inside label values and
/// parse as they are.
fn as_promql(expr: &str) -> String {
    ["$__rate_interval", "$__interval", "$__range"]
        .iter()
        .fold(expr.to_owned(), |e, v| e.replace(v, "5m"))
}

// --- the tests -----------------------------------------------------------------

/// Like the ServiceMonitor, neither is rendered unless asked for (so deploy/,
/// rendered with the defaults, has neither).
async fn off_by_default(w: Arc<World>) -> anyhow::Result<()> {
    let docs = documents(&render(&w.env, NS, NS, &[]).await?)?;
    let kinds = tooling::kinds(&docs);
    ensure!(
        !kinds.iter().any(|k| k.starts_with("PrometheusRule/")),
        "{kinds:?}"
    );
    ensure!(
        !kinds.iter().any(|k| k.ends_with("-dashboard")),
        "{kinds:?}"
    );
    let deploy = std::fs::read_to_string(repo("deploy/kustomization.yaml"))?;
    for f in deploy.lines().filter_map(|l| l.trim().strip_prefix("- ")) {
        let text = std::fs::read_to_string(repo("deploy").join(f))?;
        ensure!(
            !text.contains("kind: PrometheusRule") && !text.contains("grafana_dashboard"),
            "deploy/{f} has monitoring objects"
        );
    }
    Ok(())
}

/// `promtool check rules` on the rule file, with the defaults and with every
/// value an adopter may change set; the schema refuses what would break it.
async fn rules_pass_promtool_check(w: Arc<World>) -> anyhow::Result<()> {
    for (bad, why) in [
        (
            "prometheusRule.disabled={CollibraOAuthNoSuchAlert}",
            "must be one of",
        ),
        ("prometheusRule.reconcileErrorRatio=2", "maximum"),
        (
            "prometheusRule.clientsNotReadyFor=soon",
            "does not match pattern",
        ),
    ] {
        let err = match rule_file(&w.env, &["--set", bad]).await {
            Ok(_) => bail!("the schema accepted {bad}"),
            Err(e) => format!("{e:#}"),
        };
        ensure!(err.contains(why), "{bad}: {err}");
    }
    let dir = tempfile::tempdir()?;
    for extra in [
        &[][..],
        &[
            "--set",
            "prometheusRule.selector=job=\"coo\"",
            "--set",
            "prometheusRule.clientsNotReadyFor=1h",
            "--set",
            "prometheusRule.connectionNotReadyFor=30m",
            "--set",
            "prometheusRule.reconcileErrorRatio=0.25",
            "--set",
            "prometheusRule.alertLabels.team=platform",
            "--set",
            "prometheusRule.disabled={CollibraOAuthReconcileErrors}",
        ][..],
    ] {
        let spec = rule_file(&w.env, extra).await?;
        let path = write_rules(dir.path(), &spec)?;
        let out = run_tool(
            "promtool",
            &["check", "rules", path.to_str().context("path")?],
            None,
            "",
        )
        .await?;
        let want = if extra.is_empty() { 8 } else { 7 };
        ensure!(
            out.contains(&format!("SUCCESS: {want} rules found")),
            "{extra:?}: {out}"
        );
        for rule in rules(&spec) {
            let name = rule["alert"].as_str().context("a rule without alert")?;
            ensure!(
                matches!(
                    rule["labels"]["severity"].as_str(),
                    Some("critical" | "warning")
                ),
                "{name}: severity {:?}",
                rule["labels"]["severity"]
            );
            for a in ["summary", "description", "runbook_url"] {
                ensure!(
                    rule["annotations"][a]
                        .as_str()
                        .is_some_and(|s| !s.is_empty()),
                    "{name} has no {a}"
                );
            }
            if !extra.is_empty() {
                ensure!(rule["labels"]["team"] == "platform", "{name}: {rule}");
                let expr = rule["expr"].as_str().unwrap_or_default();
                ensure!(
                    expr.contains("job=\"coo\"") && !expr.contains("namespace="),
                    "{name}: the selector is not the one given: {expr}"
                );
            }
        }
        if !extra.is_empty() {
            let by_name = |n: &str| rules(&spec).into_iter().find(|r| r["alert"] == n);
            ensure!(
                by_name("CollibraOAuthReconcileErrors").is_none(),
                "disabled"
            );
            ensure!(
                by_name("CollibraOAuthClientsNotReady").map(|r| r["for"].clone())
                    == Some(Value::from("1h")),
                "clientsNotReadyFor"
            );
            ensure!(
                by_name("CollibraOAuthConnectionNotReady").map(|r| r["for"].clone())
                    == Some(Value::from("30m")),
                "connectionNotReadyFor"
            );
        }
    }
    Ok(())
}

/// `promtool test rules` with tests/monitoring/alerts_test.yaml, and a check
/// that it holds, for every alert, a case where it fires and one where it
/// must stay quiet.
async fn every_alert_fires_and_stays_quiet_in_promtool_unit_tests(
    w: Arc<World>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let spec = rule_file(&w.env, &[]).await?;
    write_rules(dir.path(), &spec)?;
    let tests_text = std::fs::read_to_string(repo("tests/monitoring/alerts_test.yaml"))?;
    std::fs::write(dir.path().join("alerts_test.yaml"), &tests_text)?;
    let out = run_tool(
        "promtool",
        &["test", "rules", "alerts_test.yaml"],
        Some(dir.path()),
        "",
    )
    .await?;
    ensure!(out.contains("SUCCESS"), "{out}");

    let tests: Value = serde_yaml::from_str(&tests_text)?;
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for t in tests["tests"].as_array().into_iter().flatten() {
        for case in t["alert_rule_test"].as_array().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap_or_default().to_owned();
            match case["exp_alerts"].as_array() {
                Some(a) if !a.is_empty() => fires.insert(name),
                _ => quiet.insert(name),
            };
        }
    }
    for rule in rules(&spec) {
        let name = rule["alert"].as_str().unwrap_or_default();
        ensure!(fires.contains(name), "no unit test where {name} fires");
        ensure!(
            quiet.contains(name),
            "no unit test where {name} stays quiet"
        );
    }
    Ok(())
}

/// Each runbook_url is the values' base URL (by default the repository's
/// docs/src/operations/alerts.md, the repository named in Cargo.toml) and
/// the alert's name in lower case, and that page has a section of that name.
async fn runbook_links_point_at_sections_of_the_alerts_page(w: Arc<World>) -> anyhow::Result<()> {
    let cargo = std::fs::read_to_string(repo("Cargo.toml"))?;
    let repository = cargo
        .lines()
        .find_map(|l| l.strip_prefix("repository = "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .context("Cargo.toml names no repository")?;
    let base = format!("{repository}/blob/main/docs/src/operations/alerts.md");
    let page = std::fs::read_to_string(repo("docs/src/operations/alerts.md"))?;
    // mdBook's heading ids: the heading's text in lower case.
    let sections: BTreeSet<String> = page
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let spec = rule_file(&w.env, &[]).await?;
    for rule in rules(&spec) {
        let name = rule["alert"].as_str().unwrap_or_default();
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_default();
        let anchor = name.to_lowercase();
        ensure!(
            url == format!("{base}#{anchor}"),
            "{name}: runbook_url {url}"
        );
        ensure!(
            sections.contains(&anchor),
            "docs/src/operations/alerts.md has no section `## {name}`"
        );
    }
    let moved = rule_file(
        &w.env,
        &[
            "--set",
            "prometheusRule.runbookBaseUrl=https://wiki.example.com/runbooks/",
        ],
    )
    .await?;
    let first = rules(&moved)
        .first()
        .and_then(|r| r["annotations"]["runbook_url"].as_str())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        first.starts_with("https://wiki.example.com/runbooks#collibraoauth"),
        "{first}"
    );
    Ok(())
}

/// The ConfigMap carries the sidecar's label (configurable), and its data is
/// the dashboard file as shipped.
async fn dashboard_is_a_configmap_for_the_grafana_sidecar(w: Arc<World>) -> anyhow::Result<()> {
    let cm = dashboard_configmap(&w.env, &[]).await?;
    ensure!(cm["kind"] == "ConfigMap", "{cm}");
    ensure!(cm["metadata"]["namespace"] == NS, "{cm}");
    ensure!(cm["metadata"]["labels"]["grafana_dashboard"] == "1", "{cm}");
    let shipped: Value = serde_json::from_str(&std::fs::read_to_string(repo(
        "charts/collibra-oauth-operator/dashboards/collibra-oauth-operator.json",
    ))?)?;
    let d = dashboard_json(&cm)?;
    ensure!(
        d == shipped,
        "the ConfigMap's dashboard differs from the file"
    );
    ensure!(d["uid"] == "collibra-oauth-operator", "{}", d["uid"]);
    ensure!(panel_queries(&d).len() >= 15, "too few queries");
    // A valid object for the API server (size, labels, names).
    w.env
        .cp
        .kubectl_with_stdin(
            &["apply", "--server-side", "--dry-run=server", "-f", "-"],
            &serde_json::to_string(&cm)?,
        )
        .await
        .context("server-side dry run of the dashboard ConfigMap")?;

    let other = dashboard_configmap(
        &w.env,
        &[
            "--set",
            "grafanaDashboard.sidecarLabel=dashboards",
            "--set",
            "grafanaDashboard.sidecarLabelValue=collibra",
            "--set",
            "grafanaDashboard.namespace=monitoring",
            "--set",
            "grafanaDashboard.annotations.grafana_folder=Operators",
        ],
    )
    .await?;
    let meta = &other["metadata"];
    ensure!(meta["labels"]["dashboards"] == "collibra", "{meta}");
    ensure!(meta["labels"]["grafana_dashboard"].is_null(), "{meta}");
    ensure!(meta["namespace"] == "monitoring", "{meta}");
    ensure!(
        meta["annotations"]["grafana_folder"] == "Operators",
        "{meta}"
    );
    Ok(())
}

/// CollibraOAuthOperatorNoLeader and the dashboard's leader panels rest on
/// this: `collibra_oauth_leader` is 1 on the leading replica and 0 on a
/// standby (while both export collibra_oauth_reconciles_total, the series
/// the dashboard's variables read).
async fn the_leader_gauge_tells_the_leader_from_a_standby(w: Arc<World>) -> anyhow::Result<()> {
    let leader_value = leader_gauge(&*w.leader.lock().await).await?;
    let standby_value = leader_gauge(&*w.standby.lock().await).await?;
    ensure!(leader_value == Some(1), "the leader says {leader_value:?}");
    ensure!(
        standby_value == Some(0),
        "the standby says {standby_value:?}"
    );
    let leader = scrape(&*w.leader.lock().await).await?;
    let standby = scrape(&*w.standby.lock().await).await?;
    for names in [&leader, &standby] {
        ensure!(
            names.contains_key("collibra_oauth_reconciles_total"),
            "{names:?}"
        );
    }
    Ok(())
}

/// Every metric and label an alert, a panel or a dashboard variable selects
/// is one the operator serves. The series that exist only after some event
/// are made to exist first: an OAuthClient registered and one short of Ready
/// (objects, reconciles), a ClusterCollibraConnection (the connection
/// families), and a cleanup while Collibra answers 503 (reconcile errors,
/// retries, backoff).
async fn rules_and_dashboard_select_only_what_the_operator_exports(
    w: Arc<World>,
) -> anyhow::Result<()> {
    // What the alerts and the dashboard select.
    let spec = rule_file(&w.env, &[]).await?;
    let d = dashboard_json(&dashboard_configmap(&w.env, &[]).await?)?;
    let mut exprs: Vec<(String, String)> = rules(&spec)
        .into_iter()
        .map(|r| {
            (
                format!("alert {}", r["alert"].as_str().unwrap_or("?")),
                r["expr"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    exprs.extend(
        panel_queries(&d)
            .into_iter()
            .map(|(t, e)| (format!("panel {t:?}"), as_promql(&e))),
    );
    let mut labels_wanted = Vec::new();
    for (name, selector, label) in variable_queries(&d)? {
        exprs.push((format!("variable {name}"), selector.clone()));
        labels_wanted.push((format!("variable {name}"), selector, label));
    }
    let input = serde_json::to_string(&exprs.iter().map(|(_, e)| e).collect::<Vec<_>>())?;
    let parsed: Vec<Value> =
        serde_json::from_str(&run_tool("promql-selectors", &[], None, &input).await?)?;
    // metric -> (where, label names)
    let mut wanted: BTreeMap<String, Vec<(String, Vec<String>)>> = BTreeMap::new();
    // (where, `by (...)` labels, the metrics aggregated)
    let mut groupings: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str().map(str::to_owned))
            .collect()
    };
    for ((place, expr), p) in exprs.iter().zip(&parsed) {
        if let Some(e) = p["error"].as_str() {
            bail!("{place}: {expr}: does not parse: {e}");
        }
        for g in p["groupings"].as_array().into_iter().flatten() {
            groupings.push((place.clone(), strings(&g["labels"]), strings(&g["metrics"])));
        }
        let sels = p["selectors"].as_array().context("no selectors")?;
        ensure!(!sels.is_empty(), "{place}: selects nothing: {expr}");
        for s in sels {
            let metric = s["metric"].as_str().unwrap_or_default();
            ensure!(
                !metric.is_empty(),
                "{place}: a selector without a metric name: {expr}"
            );
            let labels = strings(&s["labels"]);
            wanted
                .entry(metric.to_owned())
                .or_default()
                .push((place.clone(), labels));
        }
    }
    for (place, selector, label) in labels_wanted {
        let metric = selector
            .split('{')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        wanted.entry(metric).or_default().push((place, vec![label]));
    }
    for (name, _) in NOT_FROM_THE_OPERATOR {
        wanted.remove(*name);
    }
    for m in wanted.keys() {
        ensure!(
            m.starts_with("collibra_oauth_"),
            "{m}: selected but neither the operator's (collibra_oauth_) nor listed in NOT_FROM_THE_OPERATOR"
        );
    }

    make_every_series_exist(&w).await?;

    // Scraped until every selected metric is there (some appear only after
    // the events above have been reconciled), then compared.
    let deadline = Instant::now() + Duration::from_secs(90);
    let served = loop {
        let served = scrape(&*w.leader.lock().await).await?;
        let missing: Vec<&String> = wanted.keys().filter(|m| !served.contains_key(*m)).collect();
        if missing.is_empty() {
            break served;
        }
        if Instant::now() > deadline {
            let places: Vec<String> = missing
                .iter()
                .map(|m| {
                    let used: Vec<&str> = wanted[*m].iter().map(|(p, _)| p.as_str()).collect();
                    format!("{m} (used by {})", used.join(", "))
                })
                .collect();
            bail!(
                "selected but not exported by the operator:\n  {}\nexported: {:?}",
                places.join("\n  "),
                served.keys().collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (metric, uses) in &wanted {
        let has = &served[metric];
        for (place, labels) in uses {
            for l in labels {
                ensure!(
                    has.contains(l) || TARGET_LABELS.contains(&l.as_str()),
                    "{place}: {metric} has no label {l:?} (it has {has:?})"
                );
            }
        }
    }
    // An aggregation `by (l)` groups by a label some series it aggregates
    // carry (or a target label); else every result has l empty.
    for (place, labels, metrics) in &groupings {
        let carried: BTreeSet<&String> = metrics
            .iter()
            .filter_map(|m| served.get(m))
            .flatten()
            .collect();
        if carried.is_empty() {
            continue; // only series not from the operator (up)
        }
        for l in labels {
            ensure!(
                carried.contains(l) || TARGET_LABELS.contains(&l.as_str()),
                "{place}: aggregated by {l:?}, which none of {metrics:?} carries ({carried:?})"
            );
        }
    }
    Ok(())
}

/// The events after which the families that start empty have series.
async fn make_every_series_exist(w: &World) -> anyhow::Result<()> {
    let env = &w.env;
    let ns = env.cp.create_namespace("monitoring").await?;
    // A registered OAuthClient, and one short of Ready (a foreign Secret).
    env.cp
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
    env.cp
        .kubectl_with_stdin(
            &["apply", "-n", &ns, "-f", "-"],
            &format!(
                "{}\n---\n{}",
                manifest("app", &format!("{ns}-app"), ""),
                manifest(
                    "conflict",
                    &format!("{ns}-conflict"),
                    "  secretName: taken\n"
                )
            ),
        )
        .await?;
    wait_ready_reason(env, &ns, "app", "Registered").await?;
    wait_ready_reason(env, &ns, "conflict", "SecretConflict").await?;
    // A ClusterCollibraConnection to the same simulator.
    env.cp
        .kubectl_with_stdin(
            &["apply", "-n", NS, "-f", "-"],
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: monitoring-instance\nstringData:\n  client_id: operator\n  client_secret: operator-secret\n",
        )
        .await?;
    env.cp
        .kubectl_with_stdin(
            &["apply", "-f", "-"],
            &format!(
                "apiVersion: oauth.collibra.dev/v1alpha1\nkind: ClusterCollibraConnection\nmetadata:\n  name: monitoring\nspec:\n  url: {}\n  auth:\n    secretName: monitoring-instance\n",
                w.sim.url()
            ),
        )
        .await?;
    // A cleanup while Collibra fails: retried requests, then a reconcile
    // error (CleanupPending).
    w.collibra.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let result = async {
        env.cp
            .kubectl(&["delete", "oauthclient", "-n", &ns, "app", "--wait=false"])
            .await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let served = scrape(&*w.leader.lock().await).await?;
            if served.contains_key("collibra_oauth_reconcile_errors_total") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "no reconcile error while Collibra answers 503\n--- log ---\n{}",
                    tail(&w.leader.lock().await.log(), 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    .await;
    w.collibra.set_faults(Faults::default());
    result
}

/// The leader's or standby's `/metrics`, as Prometheus' scrape parser reads
/// it: series name -> label names.
/// The value of `collibra_oauth_leader` a replica serves.
async fn leader_gauge(op: &Operator) -> anyhow::Result<Option<i64>> {
    let body = reqwest::get(op.url("/metrics")).await?.text().await?;
    Ok(body
        .lines()
        .find_map(|l| l.strip_prefix("collibra_oauth_leader "))
        .and_then(|v| v.trim().parse().ok()))
}

async fn scrape(op: &Operator) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let r = reqwest::get(op.url("/metrics")).await?;
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = r.text().await?;
    let out = run_tool(
        "promql-selectors",
        &["-exposition", &content_type],
        None,
        &body,
    )
    .await?;
    Ok(serde_json::from_str(&out)?)
}

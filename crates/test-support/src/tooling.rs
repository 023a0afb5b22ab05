//! The packaging tools the tests drive: helm and kstatus (built from the Go
//! module in `hack/tools` by its `build.sh`, cached), the Argo CD health
//! check (`deploy/argocd/health.lua`, run by `lua5.4`), and the chart's
//! rendering. Nothing is skipped: a tool that cannot be built or found is a
//! failure that says why.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use tokio::{io::AsyncWriteExt as _, process::Command, sync::OnceCell};

use crate::{Env, Operator, repo};

/// The chart's directory.
pub fn chart() -> PathBuf {
    repo("charts/collibra-oauth-operator")
}

static TOOLS: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();

/// The directory holding `helm` and `kstatus`, built on first use.
pub async fn tools_dir() -> anyhow::Result<PathBuf> {
    let r = TOOLS
        .get_or_init(|| async {
            let script = repo("hack/tools/build.sh");
            let out = Command::new("bash")
                .arg(&script)
                .stdin(Stdio::null())
                .output()
                .await
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "{} failed ({}); helm and kstatus are needed by the packaging tests:\n{}",
                    script.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            let dir = stdout.lines().last().unwrap_or_default().trim().to_owned();
            if dir.is_empty() {
                return Err(format!("{} printed no directory", script.display()));
            }
            Ok(PathBuf::from(dir))
        })
        .await;
    r.clone().map_err(|e| anyhow::anyhow!(e))
}

/// The path of the helm binary.
pub async fn helm_bin() -> anyhow::Result<PathBuf> {
    Ok(tools_dir().await?.join("helm"))
}

/// The output of a finished command.
pub struct Output {
    /// Exit status was 0.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs helm against the control plane, with its state under the control
/// plane's directory (never the user's home).
pub async fn helm_output(env: &Env, args: &[&str]) -> anyhow::Result<Output> {
    let home = env.cp.dir().join("helm-home");
    let out = Command::new(helm_bin().await?)
        .args(args)
        .env("KUBECONFIG", env.cp.kubeconfig_path())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdin(Stdio::null())
        .output()
        .await
        .context("running helm")?;
    Ok(Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs helm; fails unless it exits 0. Returns stdout.
pub async fn helm(env: &Env, args: &[&str]) -> anyhow::Result<String> {
    let out = helm_output(env, args).await?;
    ensure!(
        out.ok,
        "helm {} failed:\n{}{}",
        args.join(" "),
        out.stdout,
        out.stderr
    );
    Ok(out.stdout)
}

/// `helm template` of the chart as release `release` in `namespace`, with
/// `collibra.url` set and `extra` arguments (`--set ...`, `--show-only ...`).
pub async fn render(
    env: &Env,
    release: &str,
    namespace: &str,
    extra: &[&str],
) -> anyhow::Result<String> {
    let chart = chart();
    let chart = chart.to_str().context("non-UTF-8 path")?;
    let mut args = vec![
        "template",
        release,
        chart,
        "--namespace",
        namespace,
        "--set",
        "collibra.url=https://collibra.example.com",
    ];
    args.extend_from_slice(extra);
    helm(env, &args).await
}

/// The documents of a multi-document YAML stream, as JSON values.
pub fn documents(yaml: &str) -> anyhow::Result<Vec<Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v: Value = serde::Deserialize::deserialize(doc).context("parsing rendered YAML")?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// The `kind/namespace/name` of each document.
pub fn kinds(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| {
            format!(
                "{}/{}/{}",
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["namespace"].as_str().unwrap_or(""),
                d["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// kstatus's verdict on an object: (status, message).
pub async fn kstatus(object_json: &str) -> anyhow::Result<(String, String)> {
    let bin = tools_dir().await?.join("kstatus");
    let lines = run_with_stdin(Command::new(&bin), object_json, "kstatus").await?;
    Ok(two_lines(&lines))
}

/// The Argo CD health check's verdict on an object: (hs.status, hs.message).
pub async fn argocd_health(object_json: &str) -> anyhow::Result<(String, String)> {
    let lua = which("lua5.4").context(
        "lua5.4 is not on PATH: the Argo CD health check is tested with it \
         (Debian: apt-get install lua5.4; `make test` installs it)",
    )?;
    let obj: Value = serde_json::from_str(object_json).context("parsing the object")?;
    let script = repo("deploy/argocd/health.lua");
    // Argo CD gives the script the object as the global `obj` and reads the
    // table it returns.
    let program = format!(
        "obj = {}\nlocal hs = dofile({})\nprint(hs.status)\nprint(hs.message)\n",
        lua_literal(&obj),
        lua_string(script.to_str().context("non-UTF-8 path")?)
    );
    let mut cmd = Command::new(lua);
    cmd.arg("-");
    let lines = run_with_stdin(cmd, &program, "lua5.4").await?;
    Ok(two_lines(&lines))
}

fn two_lines(s: &str) -> (String, String) {
    let mut lines = s.lines();
    let first = lines.next().unwrap_or_default().to_owned();
    let rest = lines.collect::<Vec<_>>().join("\n");
    (first, rest)
}

async fn run_with_stdin(mut cmd: Command, stdin: &str, what: &str) -> anyhow::Result<String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A program on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// A JSON value as a Lua table constructor (null becomes nil, as Argo CD's
/// own conversion leaves such keys out).
pub fn lua_literal(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(lua_literal).collect();
            format!("{{{}}}", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_literal(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// A Lua string literal: printable ASCII as is, everything else escaped by
/// byte (`\ddd`), so any UTF-8 survives.
pub fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

/// The rendered Deployment's operator container: its args after `run`, and
/// its environment (literal values; `valueFrom` entries by their field path).
pub struct ContainerConfig {
    /// Arguments after `run`.
    pub args: Vec<String>,
    /// Literal environment values.
    pub env: BTreeMap<String, String>,
    /// Downward-API variables: name -> field path.
    pub field_env: BTreeMap<String, String>,
}

/// Reads the operator container of the Deployment among `docs`.
pub fn container_config(docs: &[Value]) -> anyhow::Result<ContainerConfig> {
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .context("no Deployment rendered")?;
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut args: Vec<String> = container["args"]
        .as_array()
        .context("container has no args")?
        .iter()
        .map(|a| a.as_str().unwrap_or_default().to_owned())
        .collect();
    ensure!(
        args.first().map(String::as_str) == Some("run"),
        "the first argument is not `run`: {args:?}"
    );
    args.remove(0);
    let mut env = BTreeMap::new();
    let mut field_env = BTreeMap::new();
    for e in container["env"]
        .as_array()
        .context("container has no env")?
    {
        let name = e["name"].as_str().context("env without name")?.to_owned();
        if let Some(v) = e["value"].as_str() {
            env.insert(name, v.to_owned());
        } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            field_env.insert(name, path.to_owned());
        } else {
            bail!("env {name} is neither a value nor a fieldRef");
        }
    }
    Ok(ContainerConfig {
        args,
        env,
        field_env,
    })
}

/// Starts the operator binary as the chart's Deployment configures it: the
/// same arguments and environment, with the mounted credential files, the
/// Collibra URL and the downward API replaced by local equivalents.
/// `kubeconfig` stands in for the pod's ServiceAccount token.
pub async fn start_as_chart(
    env: &Env,
    docs: &[Value],
    kubeconfig: &Path,
    collibra_url: &str,
    pod_namespace: &str,
    dir: &Path,
) -> anyhow::Result<Operator> {
    start_binary_as_chart(
        env.operator_bin.clone(),
        docs,
        kubeconfig,
        collibra_url,
        pod_namespace,
        dir,
    )
}

/// [`start_as_chart`] with another operator binary, such as an older
/// release's.
pub fn start_binary_as_chart(
    operator_bin: PathBuf,
    docs: &[Value],
    kubeconfig: &Path,
    collibra_url: &str,
    pod_namespace: &str,
    dir: &Path,
) -> anyhow::Result<Operator> {
    let cfg = container_config(docs)?;
    let mut envs: Vec<(String, String)> = Vec::new();
    for (name, value) in &cfg.env {
        let value = match name.as_str() {
            "COLLIBRA_URL" => collibra_url.to_owned(),
            // The operator is given a loopback --metrics-addr instead.
            "METRICS_ADDR" => continue,
            "RUST_LOG" => "info,collibra_oauth_operator=debug".to_owned(),
            n if n.ends_with("_FILE") && n != "COLLIBRA_CA_FILE" => {
                // The simulator's admin credentials, where the Secret would
                // be mounted.
                let content = match n {
                    "COLLIBRA_CLIENT_ID_FILE" => "operator",
                    "COLLIBRA_CLIENT_SECRET_FILE" => "operator-secret",
                    other => bail!("no local stand-in for {other}"),
                };
                let file_name = Path::new(value)
                    .file_name()
                    .context("credential file path without a name")?;
                let path = dir.join(file_name);
                std::fs::write(&path, content)?;
                path.display().to_string()
            }
            _ => value.clone(),
        };
        envs.push((name.clone(), value));
    }
    for (name, field) in &cfg.field_env {
        let value = match field.as_str() {
            "metadata.name" => "collibra-oauth-operator-0".to_owned(),
            "metadata.namespace" => pod_namespace.to_owned(),
            other => bail!("no local stand-in for the field {other}"),
        };
        envs.push((name.clone(), value));
    }
    envs.push(("KUBECONFIG".to_owned(), kubeconfig.display().to_string()));
    Operator::start(operator_bin, dir.join("operator.log"), cfg.args, envs)
}

/// Lines of the operator log that show a request RBAC refused (`... is
/// forbidden: User "..." cannot ...`). Other 403s, such as writing an Event
/// into a namespace that is being deleted, are not about permissions.
pub fn forbidden_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("forbidden") && l.contains(" cannot "))
        .map(str::to_owned)
        .collect()
}

/// `kubectl auth can-i` as `user`: exit 0 is yes, 1 is no.
pub async fn can_i(env: &Env, user: &str, args: &[&str]) -> anyhow::Result<bool> {
    let out = tokio::process::Command::new("kubectl")
        .args(["auth", "can-i"])
        .args(args)
        .args(["--as", user])
        .env("KUBECONFIG", env.cp.kubeconfig_path())
        .output()
        .await?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) if String::from_utf8_lossy(&out.stdout).trim() == "no" => Ok(false),
        _ => bail!(
            "kubectl auth can-i {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Waits until the object's Ready reason is `reason`; returns it as JSON.
pub async fn wait_ready_reason(
    env: &Env,
    ns: &str,
    name: &str,
    reason: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut last = String::new();
    for _ in 0..300 {
        last = env
            .cp
            .kubectl(&["get", "oauthclient", "-n", ns, name, "-o", "json"])
            .await?;
        let o: serde_json::Value = serde_json::from_str(&last)?;
        let ready = o["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .and_then(|c| c["reason"].as_str())
            .map(str::to_owned);
        if ready.as_deref() == Some(reason) {
            return Ok(o);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{ns}/{name} never reached {reason}; last:\n{last}")
}

/// Standard base64.
pub fn base64_decode(s: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::STANDARD.decode(s)?)
}

//! The test rig around one control plane: the admin client, the operator
//! process, per-test fixtures (namespace, simulator, operator) and waits.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use collibra_oauth_operator::api::OAuthClient;
use collibra_sim::{SimConfig, SimHandle, Simulator};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    config::{KubeConfigOptions, Kubeconfig},
};
use test_control_plane::ControlPlane;
use tokio::process::{Child, Command};

/// The operator's service account, as `deploy/rbac.yaml` defines it.
pub const OPERATOR_SA: &str =
    "system:serviceaccount:collibra-oauth-operator:collibra-oauth-operator";

/// Shared by every test of the run.
pub struct Env {
    /// The control plane.
    pub cp: ControlPlane,
    /// Admin client.
    pub client: Client,
    /// A kubeconfig that impersonates the operator's service account.
    pub operator_kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

impl Env {
    /// Starts the control plane and installs the CRD and the RBAC.
    pub async fn start() -> anyhow::Result<Env> {
        let cp = ControlPlane::start().await?;
        let crd = repo("crds/oauthclients.yaml");
        let rbac = repo("deploy/rbac.yaml");
        cp.kubectl(&[
            "apply",
            "--server-side",
            "-f",
            path_str(&crd)?,
            "-f",
            path_str(&rbac)?,
        ])
        .await
        .context("applying crds/ and deploy/rbac.yaml")?;
        cp.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/oauthclients.oauth.collibra.dev",
        ])
        .await?;
        if namespaced_rbac() {
            // The chart's namespaced mode: no cluster-wide rule at all; each
            // fixture's namespace gets the chart's Role (see `grant_namespace`).
            cp.kubectl(&["delete", "clusterrolebinding", "collibra-oauth-operator"])
                .await
                .context("E2E_RBAC=namespaced: removing the cluster-wide binding")?;
        }
        let dir = tempfile::tempdir()?;
        let operator_kubeconfig = dir.path().join("operator.kubeconfig");
        cp.write_kubeconfig_as(&operator_kubeconfig, OPERATOR_SA, &[])?;
        let kubeconfig = Kubeconfig::read_from(cp.kubeconfig_path())?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        let client = Client::try_from(config)?;
        Ok(Env {
            cp,
            client,
            operator_kubeconfig,
            _dir: dir,
        })
    }

    /// Stops the control plane.
    pub fn stop(self) -> anyhow::Result<()> {
        self.cp.stop()
    }
}

/// `E2E_RBAC=namespaced`: run the suite with the chart's namespaced RBAC
/// (`watchNamespaces`) instead of its cluster-wide default.
pub fn namespaced_rbac() -> bool {
    std::env::var("E2E_RBAC").as_deref() == Ok("namespaced")
}

/// Applies the chart's namespaced-mode Role and RoleBinding for `ns`
/// (rendered by helm from `charts/`, with the operator's ServiceAccount).
async fn grant_namespace(env: &Env, ns: &str) -> anyhow::Result<()> {
    let build = repo("hack/tools/build.sh");
    let out = Command::new("bash").arg(&build).output().await?;
    if !out.status.success() {
        bail!(
            "hack/tools/build.sh failed (helm is needed for E2E_RBAC=namespaced): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tools = String::from_utf8_lossy(&out.stdout);
    let helm = Path::new(tools.lines().last().unwrap_or_default().trim()).join("helm");
    let chart = repo("charts/collibra-oauth-operator");
    let home = env.cp.dir().join("helm-home");
    let out = Command::new(helm)
        .args(["template", "collibra-oauth-operator", path_str(&chart)?])
        .args(["--namespace", "collibra-oauth-operator"])
        .args(["--set", "collibra.url=https://collibra.example.com"])
        .args(["--set", "leaderElection.enabled=false"])
        .args(["--set-json", &format!(r#"watchNamespaces=["{ns}"]"#)])
        .args(["--show-only", "templates/rbac.yaml"])
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "helm template failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rbac = String::from_utf8(out.stdout)?;
    env.cp
        .kubectl_with_stdin(&["apply", "--server-side", "-f", "-"], &rbac)
        .await
        .context("applying the chart's namespaced Role")?;
    Ok(())
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

/// A free loopback port (racy in theory; fine on a test machine).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The operator binary running as its own process.
pub struct Operator {
    child: Option<Child>,
    /// Where `/metrics`, `/healthz`, `/readyz` are served.
    pub metrics_addr: String,
    log: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Operator {
    /// Starts `collibra-oauth-operator run` with `args`, logging to `log`.
    pub fn start(
        log: PathBuf,
        args: Vec<String>,
        envs: Vec<(String, String)>,
    ) -> anyhow::Result<Operator> {
        let port = free_port()?;
        let metrics_addr = format!("127.0.0.1:{port}");
        let mut op = Operator {
            child: None,
            metrics_addr,
            log,
            args,
            envs,
        };
        op.spawn()?;
        Ok(op)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_collibra-oauth-operator"))
            .arg("run")
            .args(&self.args)
            .arg("--metrics-addr")
            .arg(&self.metrics_addr)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .context("starting the operator binary")?;
        self.child = Some(child);
        Ok(())
    }

    /// Another process with the same flags and environment (its own
    /// metrics port and log), e.g. a second replica.
    pub fn replica(&self, log: PathBuf) -> anyhow::Result<Operator> {
        Operator::start(log, self.args.clone(), self.envs.clone())
    }

    /// SIGKILL, as a crash would.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().await?;
        }
        Ok(())
    }

    /// Kills and starts it again with the same flags.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await?;
        self.spawn()
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited 0.
    pub async fn terminate(&mut self) -> anyhow::Result<bool> {
        let Some(mut c) = self.child.take() else {
            return Ok(true);
        };
        if let Some(pid) = c.id() {
            Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await?;
        }
        let status = tokio::time::timeout(Duration::from_secs(20), c.wait()).await??;
        Ok(status.success())
    }

    /// Where the operator logs to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Points the next start at another Collibra URL.
    pub fn set_collibra_url(&mut self, url: &str) {
        if let Some(i) = self.args.iter().position(|a| a == "--collibra-url")
            && let Some(v) = self.args.get_mut(i + 1)
        {
            *v = url.to_owned();
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether the process was started and has exited on its own (crashed).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// Whether the process was started and not yet killed.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The operator's log so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// GET a path of the metrics server.
    pub async fn http_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let r = reqwest::get(format!("http://{}{path}", self.metrics_addr)).await?;
        Ok((r.status().as_u16(), r.text().await?))
    }
}

/// One test's world: a namespace, a simulator and an operator watching that
/// namespace only.
pub struct Fixture {
    /// Shared environment.
    pub env: Arc<Env>,
    /// The test's namespace.
    pub ns: String,
    /// The simulator.
    pub sim: Simulator,
    /// Its handle.
    pub collibra: SimHandle,
    /// The operator.
    pub op: Operator,
    _dir: tempfile::TempDir,
}

/// Options of a fixture.
pub struct Options {
    /// Simulator configuration.
    pub sim: SimConfig,
    /// Resync interval passed to the operator.
    pub resync: &'static str,
    /// Start the operator right away.
    pub start_operator: bool,
    /// `RUST_LOG` for the operator (default `info,collibra_oauth_operator=debug`).
    pub rust_log: Option<String>,
    /// The Collibra URL given to the operator (default: the simulator's).
    pub collibra_url: Option<String>,
    /// More flags for `collibra-oauth-operator run`.
    pub extra_args: Vec<String>,
    /// More environment variables for the operator.
    pub extra_env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sim: SimConfig::default(),
            resync: "10m",
            start_operator: true,
            rust_log: None,
            collibra_url: None,
            extra_args: Vec::new(),
            extra_env: Vec::new(),
        }
    }
}

impl Fixture {
    /// A fixture with default options.
    pub async fn new(env: Arc<Env>, prefix: &str) -> anyhow::Result<Fixture> {
        Fixture::with(env, prefix, Options::default()).await
    }

    /// A fixture with `opts`.
    pub async fn with(env: Arc<Env>, prefix: &str, opts: Options) -> anyhow::Result<Fixture> {
        let ns = env.cp.create_namespace(prefix).await?;
        if namespaced_rbac() {
            grant_namespace(&env, &ns).await?;
        }
        let sim = Simulator::start(opts.sim).await?;
        let collibra = sim.handle();
        let dir = tempfile::tempdir()?;
        let mut args = vec![
            "--collibra-url".to_owned(),
            opts.collibra_url.clone().unwrap_or_else(|| sim.url()),
            "--watch-namespaces".to_owned(),
            ns.clone(),
            "--resync-interval".to_owned(),
            opts.resync.to_owned(),
            "--deletion-grace".to_owned(),
            "20s".to_owned(),
        ];
        args.extend(opts.extra_args.iter().cloned());
        let mut envs = vec![
            (
                "KUBECONFIG".to_owned(),
                env.operator_kubeconfig.display().to_string(),
            ),
            ("COLLIBRA_CLIENT_ID".to_owned(), "operator".to_owned()),
            (
                "COLLIBRA_CLIENT_SECRET".to_owned(),
                "operator-secret".to_owned(),
            ),
            (
                "RUST_LOG".to_owned(),
                opts.rust_log
                    .clone()
                    .unwrap_or_else(|| "info,collibra_oauth_operator=debug".to_owned()),
            ),
        ];
        envs.extend(opts.extra_env.iter().cloned());
        let mut op = Operator::start(dir.path().join("operator.log"), args, envs)?;
        if !opts.start_operator {
            op.kill().await?;
        }
        Ok(Fixture {
            env,
            ns,
            sim,
            collibra,
            op,
            _dir: dir,
        })
    }

    /// The OAuthClient API of the namespace.
    pub fn oauth(&self) -> Api<OAuthClient> {
        Api::namespaced(self.env.client.clone(), &self.ns)
    }

    /// The Secret API of the namespace.
    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.env.client.clone(), &self.ns)
    }

    /// `kubectl apply -f -` of `yaml` in the namespace.
    pub async fn apply(&self, yaml: &str) -> anyhow::Result<String> {
        self.env
            .cp
            .kubectl_with_stdin(&["apply", "-n", &self.ns, "-f", "-"], yaml)
            .await
    }

    /// `kubectl` with `-n NS` appended.
    pub async fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["-n", &self.ns]);
        self.env.cp.kubectl(&all).await
    }

    /// Waits until `name` satisfies `pred`, returning it.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&OAuthClient) -> bool,
    ) -> anyhow::Result<OAuthClient> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(o) = self.oauth().get_opt(name).await? {
                if pred(&o) {
                    return Ok(o);
                }
                last = Some(o);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "{name} never became {what}; last status: {}\n--- operator log (tail) ---\n{}",
            last.and_then(|o| o.status)
                .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default())
                .unwrap_or_else(|| "none".into()),
            tail(&self.op.log(), 40)
        )
    }

    /// Waits for Ready's reason to be `reason`.
    pub async fn wait_reason(&self, name: &str, reason: &str) -> anyhow::Result<OAuthClient> {
        self.wait_for(name, reason, |o| ready_reason(o).as_deref() == Some(reason))
            .await
    }

    /// Waits until the object is gone.
    pub async fn wait_gone(&self, name: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.oauth().get_opt(name).await?.is_none() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "{name} was never deleted\n--- operator log ---\n{}",
            tail(&self.op.log(), 40)
        )
    }

    /// The Secret's data as strings.
    pub async fn secret_data(
        &self,
        name: &str,
    ) -> anyhow::Result<Option<std::collections::BTreeMap<String, String>>> {
        Ok(self.secrets().get_opt(name).await?.map(|s| {
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect()
        }))
    }

    /// Event reasons recorded for the object.
    pub async fn event_reasons(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let out = self
            .kubectl(&[
                "get",
                "events.events.k8s.io",
                "--field-selector",
                &format!("regarding.name={name}"),
                "-o",
                "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
            ])
            .await?;
        Ok(out
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// Stops the operator and deletes the namespace (without waiting).
    pub async fn finish(mut self) -> anyhow::Result<()> {
        self.op.kill().await?;
        let _ = self
            .env
            .cp
            .kubectl(&["delete", "namespace", &self.ns, "--wait=false"])
            .await;
        self.sim.shutdown().await;
        Ok(())
    }
}

/// Ready's reason.
pub fn ready_reason(o: &OAuthClient) -> Option<String> {
    o.ready_condition().map(|c| c.reason.clone())
}

/// A condition's status.
pub fn condition(o: &OAuthClient, type_: &str) -> Option<String> {
    o.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.status.clone())
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// An OAuthClient manifest.
pub fn manifest(name: &str, client_name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: oauth.collibra.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: {name}\nspec:\n  clientName: {client_name}\n{extra_spec}"
    )
}

/// Asks the simulator's token endpoint for a token with these credentials.
pub async fn token_accepted(
    sim_url: &str,
    client_id: &str,
    client_secret: &str,
) -> anyhow::Result<bool> {
    let r = reqwest::Client::new()
        .post(format!("{sim_url}/rest/oauth/v2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret),
        ])
        .send()
        .await?;
    Ok(r.status().is_success())
}

// ---- the libtest-mimic harness shared by the e2e, reliability and
// packaging test binaries ------------------------------------------------

/// One test of a suite run against a shared world `W`.
pub type Test<W> = (
    &'static str,
    fn(Arc<W>) -> futures::future::BoxFuture<'static, anyhow::Result<()>>,
);

/// The suite's tokio runtime, with rustls' ring provider installed.
pub fn runtime() -> Result<tokio::runtime::Runtime, std::process::ExitCode> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start a tokio runtime: {e}");
            std::process::ExitCode::FAILURE
        })
}

/// `Some(exit)` when nothing is to run (`--list`, or a filter matching no
/// test): the tests are listed without starting anything.
pub fn list_only<W>(
    args: &libtest_mimic::Arguments,
    tests: &[Test<W>],
) -> Option<std::process::ExitCode> {
    let wanted = tests
        .iter()
        .any(|(name, _)| args.filter.as_deref().is_none_or(|f| name.contains(f)));
    (args.list || !wanted).then(|| {
        let trials = tests
            .iter()
            .map(|(n, _)| libtest_mimic::Trial::test(*n, || Ok(())))
            .collect();
        libtest_mimic::run(args, trials).exit_code()
    })
}

/// Every test fails with `reason`: a world that cannot start is a failure,
/// never a skip.
pub fn fail_all<W>(
    args: &libtest_mimic::Arguments,
    tests: &[Test<W>],
    reason: &str,
) -> std::process::ExitCode {
    eprintln!("{reason}");
    let trials = tests
        .iter()
        .map(|(n, _)| {
            let reason = reason.to_owned();
            libtest_mimic::Trial::test(*n, move || Err(libtest_mimic::Failed::from(reason)))
        })
        .collect();
    libtest_mimic::run(args, trials).exit_code()
}

/// Runs `tests` against `world` on the runtime behind `handle`.
pub fn run_all<W: Send + Sync + 'static>(
    args: &libtest_mimic::Arguments,
    handle: &tokio::runtime::Handle,
    world: &Arc<W>,
    tests: Vec<Test<W>>,
) -> libtest_mimic::Conclusion {
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            let world = world.clone();
            let handle = handle.clone();
            libtest_mimic::Trial::test(name, move || {
                handle
                    .block_on(f(world))
                    .map_err(|e| libtest_mimic::Failed::from(format!("{e:#}")))
            })
        })
        .collect();
    libtest_mimic::run(args, trials)
}

/// Stops the control plane once no test holds the environment any more.
pub fn stop_env(env: Arc<Env>) {
    match Arc::try_unwrap(env) {
        Ok(env) => {
            if let Err(e) = env.stop() {
                eprintln!("stopping the control plane: {e:#}");
            }
        }
        Err(_) => {
            eprintln!("control plane still referenced; it is stopped when the process exits")
        }
    }
}

//! A real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager) on loopback for end-to-end tests.
//!
//! The binaries are built from the Go module in `hack/control-plane/` by its
//! `build.sh` (cached, so only the first run compiles); `CONTROL_PLANE_VERSION`
//! (e.g. `1.34`) picks an older Kubernetes minor's module, and the start
//! fails if the binaries report another version. Every start gets a
//! fresh temp dir with new certificates, data and logs; stopping or dropping
//! the [`ControlPlane`] kills the processes and removes the dir, and the
//! processes are also killed if the test process itself dies.

mod backup;
mod kubeconfig;
mod node;
mod pki;
mod process;

pub use backup::RestoreTimings;
pub use node::{NODE_CONTROLLERS, NODE_IP, Node, NodeTimings, POD_CIDR, RuntimeRestart, leftovers};

use std::ffi::OsString;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use crate::kubeconfig::Impersonation;
use crate::pki::Pki;
use crate::process::Component;

/// Binaries that must be in the bin dir; `kubectl` makes it a valid
/// `KUBEBUILDER_ASSETS` dir as well.
const REQUIRED_BINARIES: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
];

/// Default for how long the components get to become ready (overridable
/// with `CONTROL_PLANE_START_TIMEOUT_SECS`); building binaries is not counted.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(120);

/// Issuer of service-account tokens, as a real cluster names itself.
const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Name prefix of the per-start temp dirs (in the system temp dir).
const DIR_PREFIX: &str = "test-control-plane-";

/// File in the temp dir naming the test process that owns it.
const OWNER_FILE: &str = "owner.pid";

/// Lines of a component's log quoted in an error.
const LOG_TAIL_LINES: usize = 40;

/// SIGTERM-to-SIGKILL grace for the Kubernetes components; with
/// `--shutdown-send-retry-after` the API server exits within about 3 s.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// etcd's graceful stop waits up to 7 s (its request timeout) for the API
/// server's watch streams, which never end on their own. Killing it sooner
/// loses nothing: writes reach the kernel before etcd acknowledges them, and
/// `--unsafe-no-fsync` only skips flushing them to disk.
const ETCD_STOP_GRACE: Duration = Duration::from_secs(2);

/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// How long each phase of [`ControlPlane::start`] took.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartTimings {
    /// Locating (and, on a cold cache, building) the binaries.
    pub binaries: Duration,
    /// From spawning etcd until its `/health` answers.
    pub etcd: Duration,
    /// From spawning kube-apiserver until `/readyz` answers `ok`.
    pub apiserver: Duration,
    /// From spawning kube-controller-manager until `default/default` exists.
    pub controller_manager: Duration,
    /// The whole of `start`, binaries included.
    pub total: Duration,
}

/// What to run beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// kube-controller-manager controllers to run in addition to the rig's
    /// few (e.g. [`NODE_CONTROLLERS`] for a rig with a [`Node`]).
    pub extra_controllers: Vec<String>,
}

/// A running etcd + kube-apiserver + kube-controller-manager.
///
/// Dropping it stops everything (best effort); [`ControlPlane::stop`] does
/// the same and reports failures.
pub struct ControlPlane {
    /// `None` once stopped; dropping it removes certificates, data and logs.
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    bin_dir: PathBuf,
    kubeconfig: PathBuf,
    kubectl_cache: PathBuf,
    apiserver_port: u16,
    etcd_port: u16,
    /// etcd's peer port: a restore names it in the new member's cluster.
    etcd_peer_port: u16,
    pki: Pki,
    etcd: Component,
    apiserver: Component,
    controller_manager: Component,
    timings: StartTimings,
    server_version: String,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server", &self.server_url())
            .field("dir", &self.dir_path)
            .field("bin_dir", &self.bin_dir)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Builds or finds the binaries, starts all components and waits until
    /// the API is ready and the controller manager has created the
    /// `default` ServiceAccount.
    pub async fn start() -> Result<Self> {
        Self::start_with(Options::default()).await
    }

    /// Like [`ControlPlane::start`], with `options`.
    pub async fn start_with(options: Options) -> Result<Self> {
        let began = Instant::now();
        let bin_dir = locate_binaries().await?;
        let binaries = began.elapsed();

        remove_stale_dirs();
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .context("creating the control plane's temp dir")?;
        let dir_path = dir.path().to_path_buf();
        std::fs::write(dir_path.join(OWNER_FILE), std::process::id().to_string())
            .context("writing the temp dir's owner file")?;
        let pki = pki::generate(&dir_path)?;
        let [etcd_port, etcd_peer_port, apiserver_port] = free_ports()?;

        let etcd = Component::new(
            "etcd",
            bin_dir.join("etcd"),
            etcd_args(&dir_path, etcd_port, etcd_peer_port),
            dir_path.join("etcd.log"),
            ETCD_STOP_GRACE,
        );
        let apiserver = Component::new(
            "kube-apiserver",
            bin_dir.join("kube-apiserver"),
            apiserver_args(&dir_path, &pki, etcd_port, apiserver_port),
            dir_path.join("kube-apiserver.log"),
            STOP_GRACE,
        );
        let kubeconfig = dir_path.join("admin.kubeconfig");
        let controller_manager = Component::new(
            "kube-controller-manager",
            bin_dir.join("kube-controller-manager"),
            controller_manager_args(&pki, &kubeconfig, &options.extra_controllers),
            dir_path.join("kube-controller-manager.log"),
            STOP_GRACE,
        );

        // From here on an early return drops `cp`, which kills whatever was
        // already started and removes the temp dir.
        let mut cp = ControlPlane {
            dir: Some(dir),
            kubectl_cache: dir_path.join("kubectl-cache"),
            dir_path,
            bin_dir,
            kubeconfig,
            apiserver_port,
            etcd_port,
            etcd_peer_port,
            pki,
            etcd,
            apiserver,
            controller_manager,
            timings: StartTimings {
                binaries,
                ..StartTimings::default()
            },
            server_version: String::new(),
        };
        std::fs::write(&cp.kubeconfig, cp.render_kubeconfig(None))
            .with_context(|| format!("writing {}", cp.kubeconfig.display()))?;

        let deadline = Instant::now() + start_timeout();

        let phase = Instant::now();
        cp.etcd.start()?;
        cp.wait_for_etcd(deadline).await?;
        cp.timings.etcd = phase.elapsed();

        let phase = Instant::now();
        cp.apiserver.start()?;
        cp.wait_for_apiserver(deadline).await?;
        cp.timings.apiserver = phase.elapsed();
        cp.server_version = cp.fetch_server_version().await?;
        check_requested_version(
            std::env::var("CONTROL_PLANE_VERSION").ok().as_deref(),
            &cp.server_version,
            &cp.bin_dir,
        )?;

        // Started only now: it gives up if the API is not reachable soon.
        let phase = Instant::now();
        cp.controller_manager.start()?;
        cp.wait_until(
            "kube-controller-manager to create the default ServiceAccount",
            deadline,
            &[&cp.etcd, &cp.apiserver, &cp.controller_manager],
            || async {
                cp.kubectl(&[
                    "get",
                    "serviceaccount",
                    "default",
                    "--namespace",
                    "default",
                    "--request-timeout=5s",
                    "-o",
                    "name",
                ])
                .await
                .map(|_| ())
            },
        )
        .await?;
        cp.timings.controller_manager = phase.elapsed();
        cp.timings.total = began.elapsed();

        tracing::info!(
            server = %cp.server_url(),
            dir = %cp.dir_path.display(),
            timings = ?cp.timings,
            "control plane ready"
        );
        Ok(cp)
    }

    /// How long each phase of [`ControlPlane::start`] took.
    pub fn timings(&self) -> StartTimings {
        self.timings
    }

    /// The API server's `gitVersion` as `/version` reports it (e.g. `v1.34.4`).
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    async fn fetch_server_version(&self) -> Result<String> {
        let body = self
            .kubectl(&["get", "--raw", "/version", "--request-timeout=5s"])
            .await
            .context("reading the API server's /version")?;
        let info: serde_json::Value =
            serde_json::from_str(&body).context("parsing the API server's /version")?;
        info.get("gitVersion")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("/version has no gitVersion: {body}"))
    }

    /// The admin kubeconfig (client certificate in `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's URL, `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }

    /// The directory holding `etcd`, `kube-apiserver`,
    /// `kube-controller-manager` and `kubectl` (usable as `KUBEBUILDER_ASSETS`).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The temp dir with certificates, etcd data and component logs; removed
    /// on stop.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// The log file of `etcd`, `kube-apiserver` or `kube-controller-manager`.
    pub fn log_path(&self, component: &str) -> Option<&Path> {
        self.components()
            .into_iter()
            .find(|c| c.name == component)
            .map(Component::log_path)
    }

    /// Process id of `etcd`, `kube-apiserver` or `kube-controller-manager`
    /// while it runs.
    pub fn pid(&self, component: &str) -> Option<u32> {
        self.components()
            .into_iter()
            .find(|c| c.name == component)
            .and_then(Component::pid)
    }

    /// Process ids of the running components (for checking clean-up).
    pub fn pids(&self) -> Vec<u32> {
        self.components().iter().filter_map(|c| c.pid()).collect()
    }

    /// Writes a kubeconfig that authenticates with the admin certificate but
    /// impersonates `impersonate_user` (kubeconfig `as:`), so requests get
    /// exactly that user's RBAC. For `system:serviceaccount:NS:NAME` with no
    /// `groups`, the API server adds the service-account groups itself.
    pub fn write_kubeconfig_as(
        &self,
        path: &Path,
        impersonate_user: &str,
        groups: &[&str],
    ) -> Result<()> {
        let text = self.render_kubeconfig(Some(&Impersonation {
            user: impersonate_user,
            groups,
        }));
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Runs kubectl with the admin kubeconfig and returns its stdout; a
    /// non-zero exit is an error carrying stderr. A `--kubeconfig` in `args`
    /// overrides the admin one (the last flag wins).
    pub async fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.run_kubectl(args, None).await
    }

    /// Like [`ControlPlane::kubectl`], feeding `stdin` to kubectl (e.g.
    /// `apply -f -`).
    pub async fn kubectl_with_stdin(&self, args: &[&str], stdin: &str) -> Result<String> {
        self.run_kubectl(args, Some(stdin)).await
    }

    /// Creates a namespace named `PREFIX-xxxxx` (unique: the API server picks
    /// the suffix) and returns its name.
    pub async fn create_namespace(&self, prefix: &str) -> Result<String> {
        let manifest = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "generateName": format!("{}-", namespace_prefix(prefix)) },
        });
        let name = self
            .kubectl_with_stdin(
                &["create", "-f", "-", "-o", "jsonpath={.metadata.name}"],
                &manifest.to_string(),
            )
            .await
            .context("creating a namespace")?;
        let name = name.trim();
        if name.is_empty() {
            bail!("kubectl create namespace printed no name");
        }
        Ok(name.to_owned())
    }

    /// Stops kube-apiserver and starts it again with the same flags, waiting
    /// until `/readyz` is ok again.
    pub async fn restart_apiserver(&self) -> Result<()> {
        self.apiserver.stop().await?;
        self.apiserver.start()?;
        let deadline = Instant::now() + start_timeout();
        self.wait_for_apiserver(deadline).await
    }

    /// Stops etcd and starts it again on the same data, waiting until etcd is
    /// healthy and the API server is ready again.
    pub async fn restart_etcd(&self) -> Result<()> {
        self.etcd.stop().await?;
        self.etcd.start()?;
        let deadline = Instant::now() + start_timeout();
        self.wait_for_etcd(deadline).await?;
        self.wait_for_apiserver(deadline).await
    }

    /// Stops all components (SIGTERM, SIGKILL after a grace period), waits
    /// for them to exit and removes the temp dir. Blocks the calling thread
    /// for at most a few seconds.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn components(&self) -> [&Component; 3] {
        [&self.etcd, &self.apiserver, &self.controller_manager]
    }

    fn shutdown(&mut self) -> Result<()> {
        let mut errors = Vec::new();
        // Clients first, etcd last, so the API server can shut down cleanly
        // instead of retrying a vanished etcd.
        for wave in [
            &[&self.controller_manager, &self.apiserver][..],
            &[&self.etcd][..],
        ] {
            for c in wave {
                c.begin_stop();
            }
            let since = Instant::now();
            for c in wave {
                if let Err(e) = c.finish_stop_blocking(since) {
                    errors.push(format!("stopping {}: {e:#}", c.name));
                }
            }
        }
        if let Some(dir) = self.dir.take()
            && let Err(e) = dir.close()
        {
            errors.push(format!("removing {}: {e}", self.dir_path.display()));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(anyhow!(errors.join("; ")))
        }
    }

    fn render_kubeconfig(&self, impersonation: Option<&Impersonation<'_>>) -> String {
        kubeconfig::render(
            &self.server_url(),
            &self.pki.ca_pem,
            &self.pki.admin_cert_pem,
            &self.pki.admin_key_pem,
            impersonation,
        )
    }

    async fn run_kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut cmd = tokio::process::Command::new(self.bin_dir.join("kubectl"));
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            // Discovery caches are keyed by host:port; keeping them here
            // avoids piling up entries for ephemeral ports in ~/.kube.
            .arg("--cache-dir")
            .arg(&self.kubectl_cache)
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("spawning kubectl")?;
        let input = stdin.unwrap_or_default().as_bytes().to_vec();
        let mut pipe = child.stdin.take();
        // Feed stdin while collecting output so neither side can fill a pipe
        // and deadlock the other.
        let feed = async move {
            if let Some(pipe) = pipe.as_mut() {
                pipe.write_all(&input).await?;
                pipe.shutdown().await?;
            }
            drop(pipe);
            Ok::<_, std::io::Error>(())
        };
        let (fed, output) = tokio::join!(feed, child.wait_with_output());
        let output = output.context("waiting for kubectl")?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "kubectl {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        fed.context("writing kubectl's stdin")?;
        Ok(stdout)
    }

    async fn wait_for_etcd(&self, deadline: Instant) -> Result<()> {
        let port = self.etcd_port;
        self.wait_until("etcd to be healthy", deadline, &[&self.etcd], || {
            etcd_health(port)
        })
        .await
    }

    async fn wait_for_apiserver(&self, deadline: Instant) -> Result<()> {
        self.wait_until(
            "kube-apiserver /readyz",
            deadline,
            &[&self.etcd, &self.apiserver],
            || async {
                let out = self
                    .kubectl(&["get", "--raw", "/readyz", "--request-timeout=5s"])
                    .await?;
                if out.trim() == "ok" {
                    Ok(())
                } else {
                    Err(anyhow!("/readyz answered {out:?}"))
                }
            },
        )
        .await
    }

    /// Polls `probe` until it succeeds (see [`wait_until`]).
    async fn wait_until<F, Fut>(
        &self,
        what: &str,
        deadline: Instant,
        watched: &[&Component],
        probe: F,
    ) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        wait_until(what, deadline, watched, PROBE_INTERVAL, probe).await
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!("stopping the control plane: {e:#}");
        }
    }
}

/// Removes temp dirs of test processes that were killed: their components
/// died with them (parent-death signal), but nothing could delete the dir,
/// and etcd's preallocated WAL makes each one over 100 MB.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let path = entry.path();
        // No owner file yet means another process is just creating it.
        let Some(pid) = std::fs::read_to_string(path.join(OWNER_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(dir = %path.display(), pid, "removing a killed test's control-plane dir");
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn start_timeout() -> Duration {
    std::env::var("CONTROL_PLANE_START_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(DEFAULT_START_TIMEOUT, Duration::from_secs)
}

/// Turns `prefix` into a valid start of a namespace name (lower-case
/// alphanumerics and '-', starting with a letter, short enough for the
/// API server's random suffix).
fn namespace_prefix(prefix: &str) -> String {
    let mut out: String = prefix
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .take(50)
        .collect();
    out = out.trim_matches('-').to_owned();
    if out.is_empty() {
        out.push_str("ns");
    } else if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert_str(0, "ns-");
    }
    out
}

/// Free loopback ports, all distinct (the listeners are held until every
/// port is chosen).
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("finding free loopback ports")?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()?;
    ports
        .try_into()
        .map_err(|_| anyhow!("could not collect {N} ports"))
}

/// etcd's `/health` over plain HTTP, without pulling in an HTTP client.
async fn etcd_health(port: u16) -> Result<()> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .context("etcd /health timed out")??;
    let text = String::from_utf8_lossy(&response);
    if text.contains("\"health\":\"true\"") {
        Ok(())
    } else {
        Err(anyhow!(
            "etcd /health answered {:?}",
            text.lines().last().unwrap_or_default()
        ))
    }
}

fn os_args(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_owned()).collect()
}

fn etcd_args(dir: &Path, client_port: u16, peer_port: u16) -> Vec<OsString> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let cluster = format!("default={peer}");
    os_args(&[
        &"--name",
        &"default",
        &"--data-dir",
        &dir.join("etcd-data"),
        &"--listen-client-urls",
        &client,
        &"--advertise-client-urls",
        &client,
        &"--listen-peer-urls",
        &peer,
        &"--initial-advertise-peer-urls",
        &peer,
        &"--initial-cluster",
        &cluster,
        // Test data is disposable; fsync dominates etcd latency on slow disks.
        &"--unsafe-no-fsync",
        &"--log-level",
        &"warn",
    ])
}

fn apiserver_args(dir: &Path, pki: &Pki, etcd_port: u16, port: u16) -> Vec<OsString> {
    let etcd = format!("http://127.0.0.1:{etcd_port}");
    let port = port.to_string();
    os_args(&[
        &"--etcd-servers",
        &etcd,
        &"--bind-address",
        &"127.0.0.1",
        &"--advertise-address",
        &"127.0.0.1",
        // The default (lease) reconciler refuses a loopback advertise
        // address (it would publish it as the `kubernetes` Endpoints); no
        // pod ever dials that service here, so publish nothing.
        &"--endpoint-reconciler-type=none",
        &"--secure-port",
        &port,
        &"--cert-dir",
        &dir.join("apiserver-certs"),
        &"--tls-cert-file",
        &pki.serving_cert,
        &"--tls-private-key-file",
        &pki.serving_key,
        &"--client-ca-file",
        &pki.ca_cert,
        &"--service-account-issuer",
        &SERVICE_ACCOUNT_ISSUER,
        &"--service-account-key-file",
        &pki.sa_public_key,
        &"--service-account-signing-key-file",
        &pki.sa_private_key,
        &"--authorization-mode",
        &"RBAC",
        &"--service-cluster-ip-range",
        &"10.0.0.0/24",
        // Flow control adds bootstrap objects and controllers a test never
        // needs; off, the API server becomes ready sooner.
        &"--enable-priority-and-fairness=false",
        // On SIGTERM, drain in-flight requests and then give open watches 2 s
        // instead of the request timeout (60 s): a restart must not hang on
        // the controller manager's never-ending watches.
        &"--shutdown-send-retry-after=true",
        &"--profiling=false",
    ])
}

fn controller_manager_args(pki: &Pki, kubeconfig: &Path, extra: &[String]) -> Vec<OsString> {
    let mut controllers =
        String::from("garbagecollector,namespace,serviceaccount,serviceaccount-token");
    for c in extra {
        controllers.push(',');
        controllers.push_str(c);
    }
    os_args(&[
        &"--kubeconfig",
        &kubeconfig,
        &"--controllers",
        &controllers,
        &"--leader-elect=false",
        &"--service-account-private-key-file",
        &pki.sa_private_key,
        &"--root-ca-file",
        &pki.ca_cert,
        &"--bind-address",
        &"127.0.0.1",
        // No HTTPS endpoint at all: nothing scrapes it, and it saves a port.
        &"--secure-port=0",
        &"--profiling=false",
    ])
}

/// Fails when `requested` (`CONTROL_PLANE_VERSION`, `1.34` or `v1.34`) names
/// another minor than the running server reports, e.g. because
/// `CONTROL_PLANE_BIN_DIR` holds another version's binaries.
fn check_requested_version(requested: Option<&str>, actual: &str, bin_dir: &Path) -> Result<()> {
    let Some(requested) = requested.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(());
    };
    let want = format!("v{}.", requested.trim_start_matches('v'));
    if actual.starts_with(&want) {
        return Ok(());
    }
    bail!(
        "CONTROL_PLANE_VERSION={requested}, but the binaries in {} report {actual} \
         (is CONTROL_PLANE_BIN_DIR set to another version's binaries?)",
        bin_dir.display()
    )
}

fn all_binaries_in(dir: &Path) -> bool {
    REQUIRED_BINARIES.iter().all(|b| dir.join(b).is_file())
}

/// `CONTROL_PLANE_BIN_DIR` if it already holds every binary, otherwise
/// whatever `hack/control-plane/build.sh` prints (it builds on a cold cache
/// and honours `CONTROL_PLANE_BIN_DIR` as its output dir).
async fn locate_binaries() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CONTROL_PLANE_BIN_DIR").map(PathBuf::from)
        && all_binaries_in(&dir)
    {
        return Ok(dir);
    }
    run_build_script("hack/control-plane/build.sh", &REQUIRED_BINARIES).await
}

/// Runs a build script of the repository (path relative to its root) that
/// prints its output dir as the last line, relaying its progress, and
/// checks that the dir holds every file in `required`.
pub(crate) async fn run_build_script(relative: &str, required: &[&str]) -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    let mut child = tokio::process::Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running bash {}", script.display()))?;
    let mut stdout = child.stdout.take().context("build.sh stdout")?;
    let stderr = child.stderr.take().context("build.sh stderr")?;
    // A cold build takes minutes: relay its progress live, and keep it for
    // the error message.
    let relay = async {
        let mut lines = BufReader::new(stderr).lines();
        let mut kept = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{line}");
            kept.push(line);
        }
        kept
    };
    let read_out = async {
        let mut out = String::new();
        stdout.read_to_string(&mut out).await.map(|_| out)
    };
    let (stderr_lines, out) = tokio::join!(relay, read_out);
    let status = child.wait().await.context("waiting for build.sh")?;
    if !status.success() {
        let tail = &stderr_lines[stderr_lines.len().saturating_sub(60)..];
        bail!(
            "{} failed ({status}), so the binaries it builds are unavailable:\n{}",
            script.display(),
            tail.join("\n")
        );
    }
    let out = out.context("reading build.sh output")?;
    let dir = out
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(PathBuf::from)
        .with_context(|| format!("{} printed no directory", script.display()))?;
    if !required.iter().all(|b| dir.join(b).is_file()) {
        bail!(
            "{} printed {} but it lacks one of {:?}",
            script.display(),
            dir.display(),
            required
        );
    }
    Ok(dir)
}

/// Polls `probe` every `interval` until it succeeds, failing fast (with the
/// log tail) if a watched component exits, or at `deadline` (with every
/// watched log). Shared by the control plane and the node.
pub(crate) async fn wait_until<F, Fut>(
    what: &str,
    deadline: Instant,
    watched: &[&Component],
    interval: Duration,
    mut probe: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    loop {
        for c in watched {
            if let Some(status) = c.exit_status() {
                bail!(
                    "{} exited ({status}) while waiting for {what}; last lines of {}:\n{}",
                    c.name,
                    c.log_path().display(),
                    c.log_tail(LOG_TAIL_LINES)
                );
            }
        }
        let last_error = match probe().await {
            Ok(()) => return Ok(()),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            let logs: Vec<String> = watched
                .iter()
                .map(|c| {
                    format!(
                        "---- last lines of {}:\n{}",
                        c.log_path().display(),
                        c.log_tail(LOG_TAIL_LINES)
                    )
                })
                .collect();
            bail!(
                "timed out waiting for {what}; last probe error: {last_error}\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_prefix_is_a_valid_name_start() {
        assert_eq!(namespace_prefix("My_Test"), "my-test");
        assert_eq!(namespace_prefix("9lives"), "ns-9lives");
        assert_eq!(namespace_prefix("--"), "ns");
        assert!(namespace_prefix(&"a".repeat(100)).len() <= 50);
    }

    #[test]
    fn requested_version_must_match_the_server() {
        let dir = Path::new("/bins");
        assert!(check_requested_version(None, "v1.37.2", dir).is_ok());
        assert!(check_requested_version(Some(""), "v1.37.2", dir).is_ok());
        assert!(check_requested_version(Some("1.34"), "v1.34.4", dir).is_ok());
        assert!(check_requested_version(Some("v1.34"), "v1.34.4", dir).is_ok());
        let err = check_requested_version(Some("1.3"), "v1.34.4", dir)
            .expect_err("1.3 is not 1.34")
            .to_string();
        assert!(
            err.contains("CONTROL_PLANE_VERSION=1.3") && err.contains("v1.34.4"),
            "{err}"
        );
        assert!(check_requested_version(Some("1.34"), "v0.0.0-master+abc", dir).is_err());
    }

    #[test]
    fn free_ports_are_distinct() {
        let [a, b, c] = free_ports().expect("ports");
        assert!(a != b && b != c && a != c);
    }
}

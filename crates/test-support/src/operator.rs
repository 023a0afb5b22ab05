//! The operator binary as its own process: started with the flags and
//! environment a test or the benchmark gives it, on its own loopback metrics
//! port, logging to a file; killed, restarted, terminated or replicated on
//! demand, and killed when dropped.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::process::{Child, Command};

/// A free loopback port (racy in theory; fine on a test machine).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The operator binary running as its own process.
pub struct Operator {
    child: Option<Child>,
    /// When the current process was started.
    started: Instant,
    /// Where `/metrics`, `/healthz`, `/readyz` are served.
    pub metrics_addr: String,
    bin: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Operator {
    /// Starts `bin run` with `args` and `envs`, logging to `log`.
    pub fn start(
        bin: PathBuf,
        log: PathBuf,
        args: Vec<String>,
        envs: Vec<(String, String)>,
    ) -> anyhow::Result<Operator> {
        let port = free_port()?;
        let metrics_addr = format!("127.0.0.1:{port}");
        let mut op = Operator {
            child: None,
            started: Instant::now(),
            metrics_addr,
            bin,
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
        self.started = Instant::now();
        let child = Command::new(&self.bin)
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
            .with_context(|| format!("starting the operator binary {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Another process with the same flags and environment (its own
    /// metrics port and log), e.g. a second replica.
    pub fn replica(&self, log: PathBuf) -> anyhow::Result<Operator> {
        Operator::start(self.bin.clone(), log, self.args.clone(), self.envs.clone())
    }

    /// SIGKILL, as a crash would.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().await?;
        }
        Ok(())
    }

    /// Adds `args` to the command line of the next start.
    pub fn add_args(&mut self, args: &[String]) {
        self.args.extend(args.iter().cloned());
    }

    /// Kills the process and starts it again with the same arguments.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await?;
        self.spawn()
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited 0.
    pub async fn terminate(&mut self) -> anyhow::Result<bool> {
        let Some(mut c) = self.child.take() else {
            return Ok(true);
        };
        sigterm(&c).await?;
        let status = tokio::time::timeout(Duration::from_secs(20), c.wait()).await??;
        Ok(status.success())
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) -> anyhow::Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        // A process that is already gone cannot be signalled; waiting reaps it.
        let _ = sigterm(&c).await;
        match tokio::time::timeout(grace, c.wait()).await {
            Ok(r) => {
                r?;
            }
            Err(_) => c.kill().await?,
        }
        Ok(())
    }

    /// When the running process was started (the last start or restart).
    pub fn started(&self) -> Instant {
        self.started
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

    /// Where the metrics server's `path` is.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.metrics_addr)
    }

    /// GET a path of the metrics server.
    pub async fn http_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let r = reqwest::get(self.url(path)).await?;
        Ok((r.status().as_u16(), r.text().await?))
    }
}

/// Sends SIGTERM to the child (the operator shuts down gracefully on it).
async fn sigterm(c: &Child) -> anyhow::Result<()> {
    if let Some(pid) = c.id() {
        Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await?;
    }
    Ok(())
}

//! The control plane's child processes: spawning them so they cannot outlive
//! the test process, and stopping them (SIGTERM, then SIGKILL).

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use rustix::process::{Pid, Signal};

/// How often a stopping component is checked for having exited.
const EXIT_POLL: Duration = Duration::from_millis(25);

type SpawnJob = Box<dyn FnOnce() + Send>;

/// Runs `cmd.spawn()` on a thread that lives as long as the process.
///
/// Linux sends the parent-death signal when the *thread* that forked the
/// child ends, not the process. The test harness runs each test on a thread
/// that ends with the test and tokio retires idle blocking threads, so forking
/// from either would kill the control plane while it is still in use. Forking
/// from one immortal thread makes the signal mean "the test process died".
fn spawn_from_long_lived_thread(mut cmd: Command) -> Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        // If the thread cannot start, `rx` is dropped here and every spawn
        // below reports that instead of silently losing the guarantee.
        let _ = std::thread::Builder::new()
            .name("control-plane-spawner".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            });
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    let job: SpawnJob = Box::new(move || {
        let _ = reply_tx.send(cmd.spawn());
    });
    spawner
        .send(job)
        .map_err(|_| anyhow!("the control-plane spawner thread could not be started"))?;
    Ok(reply_rx
        .recv()
        .context("the control-plane spawner thread stopped")??)
}

/// Makes the child receive SIGKILL when the thread that forked it (see
/// [`spawn_from_long_lived_thread`]) and hence the test process dies, so a
/// killed or crashed test never leaves etcd or kube-apiserver behind.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec. It only makes
    // the prctl and getppid system calls, which are async-signal-safe, and it
    // neither allocates nor touches locks or state shared with other threads
    // (errors are built from raw errno values, which do not allocate).
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The parent may have died between fork and prctl, in which case
            // the signal was never armed; refuse to run orphaned.
            if rustix::process::getppid() != Some(parent) {
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
}

/// A child that is killed and reaped when dropped, so that no code path
/// (an early return, a cancelled future, a panic) leaks a running process.
struct OwnedChild(Child);

impl OwnedChild {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn terminate(&self) {
        // ESRCH only means it already exited; the reaping below handles that.
        let _ = rustix::process::kill_process(Pid::from_child(&self.0), Signal::TERM);
    }

    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.0.try_wait()
    }

    /// SIGKILL and reap; the process is gone when this returns.
    fn kill_and_reap(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.0.try_wait()? {
            return Ok(status);
        }
        // kill() fails only if it has exited meanwhile; wait() reaps either way.
        let _ = self.0.kill();
        self.0.wait()
    }
}

impl Drop for OwnedChild {
    fn drop(&mut self) {
        let _ = self.kill_and_reap();
    }
}

/// One long-running component (etcd, kube-apiserver, ...) with a fixed
/// command line, restartable with exactly the same flags and data.
pub(crate) struct Component {
    pub(crate) name: &'static str,
    program: PathBuf,
    args: Vec<OsString>,
    log: PathBuf,
    grace: Duration,
    child: Mutex<Option<OwnedChild>>,
}

impl Component {
    /// A component that is not yet running; its output goes to `log`, and
    /// on stop it gets `grace` after SIGTERM before it is killed.
    pub(crate) fn new(
        name: &'static str,
        program: PathBuf,
        args: Vec<OsString>,
        log: PathBuf,
        grace: Duration,
    ) -> Self {
        Self {
            name,
            program,
            args,
            log,
            grace,
            child: Mutex::new(None),
        }
    }

    fn slot(&self) -> MutexGuard<'_, Option<OwnedChild>> {
        // A panic elsewhere cannot leave the Option half-updated.
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The file that receives the component's stdout and stderr.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// Spawns the process; its output is appended to the log file, so a
    /// restart keeps the earlier run's output for diagnosis.
    pub(crate) fn start(&self) -> Result<()> {
        let mut slot = self.slot();
        if slot.is_some() {
            return Err(anyhow!("{} is already running", self.name));
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        writeln!(
            log,
            "==== test-control-plane: starting {} {}",
            self.program.display(),
            self.args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        )?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        die_with_parent(&mut cmd);
        let child = spawn_from_long_lived_thread(cmd)
            .with_context(|| format!("spawning {} ({})", self.name, self.program.display()))?;
        *slot = Some(OwnedChild(child));
        Ok(())
    }

    /// The running process's id, if it was started and not stopped.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.slot().as_ref().map(OwnedChild::pid)
    }

    /// `Some(description)` when the process was started but has exited on
    /// its own, so waiting for readiness can fail fast.
    pub(crate) fn exit_status(&self) -> Option<String> {
        let mut slot = self.slot();
        let child = slot.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown status: {e}")),
        }
    }

    /// Sends SIGTERM without waiting; pair with [`Self::finish_stop_blocking`].
    pub(crate) fn begin_stop(&self) {
        if let Some(child) = self.slot().as_ref() {
            child.terminate();
        }
    }

    /// After [`Self::begin_stop`] at `since`, waits until the grace period
    /// has passed for the process to exit, then SIGKILLs it; blocks the
    /// calling thread.
    pub(crate) fn finish_stop_blocking(&self, since: Instant) -> Result<()> {
        let deadline = since + self.grace;
        let Some(mut child) = self.slot().take() else {
            return Ok(());
        };
        // No second SIGTERM here: Kubernetes components treat a second one
        // as "exit immediately", skipping their graceful shutdown.
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    component = self.name,
                    "did not exit after SIGTERM; killing it"
                );
                child.kill_and_reap()?;
                return Ok(());
            }
            std::thread::sleep(EXIT_POLL);
        }
    }

    /// SIGTERM, then SIGKILL after the grace period; waits without blocking
    /// the async runtime. If the future is dropped midway the process is
    /// still killed and reaped (by [`OwnedChild`]'s drop).
    pub(crate) async fn stop(&self) -> Result<()> {
        let Some(mut child) = self.slot().take() else {
            return Ok(());
        };
        child.terminate();
        let deadline = Instant::now() + self.grace;
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    component = self.name,
                    "did not exit after SIGTERM; killing it"
                );
                child.kill_and_reap()?;
                return Ok(());
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
    }

    /// The last `lines` lines of the log, for error messages.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        match std::fs::read(&self.log) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", self.log.display()),
        }
    }
}

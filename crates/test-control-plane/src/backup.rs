//! etcd backup and restore of the test control plane, done the way an
//! administrator does it on a real cluster (Kubernetes' "Operating etcd
//! clusters", "Restoring an etcd cluster"): `etcdctl snapshot save` against
//! the running etcd; for the restore, stop the API server (and the
//! controller manager, which would act on state the API server no longer
//! has), stop etcd, `etcdutl snapshot restore` into a new data dir, put it
//! in place of the old one, and start etcd, the API server and the
//! controller manager again.
//!
//! etcdctl and etcdutl come from `hack/control-plane/etcd-tools/build.sh`
//! (the etcd version of the server, cached).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::ControlPlane;

/// How far the restore moves etcd's revision forward (`--bump-revision`),
/// with `--mark-compacted`: clients that watched the cluster before the
/// restore see their resource versions compacted and list again instead of
/// waiting for revisions the restored store would only reach by replaying
/// other writes. Kubernetes' documentation suggests a billion.
pub const RESTORE_REVISION_BUMP: u64 = 1_000_000_000;

/// How long each phase of [`ControlPlane::restore_etcd_snapshot`] took.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreTimings {
    /// Stopping kube-controller-manager, kube-apiserver and etcd.
    pub stop: Duration,
    /// `etcdutl snapshot restore` into a new data dir.
    pub restore: Duration,
    /// Starting etcd and kube-apiserver until `/readyz` is ok.
    pub start: Duration,
    /// The whole restore, the controller manager's start included.
    pub total: Duration,
}

impl ControlPlane {
    /// `etcdctl snapshot save PATH` against the running etcd; returns the
    /// snapshot's size in bytes.
    pub async fn etcd_snapshot_save(&self, path: &Path) -> Result<u64> {
        let tools = etcd_tools().await?;
        let endpoint = format!("http://127.0.0.1:{}", self.etcd_port);
        let path_arg = path_str(path)?;
        run_tool(
            &tools.join("etcdctl"),
            &["--endpoints", &endpoint, "snapshot", "save", path_arg],
        )
        .await?;
        Ok(std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len())
    }

    /// Restores the snapshot at `path`: stops kube-controller-manager,
    /// kube-apiserver and etcd, runs `etcdutl snapshot restore` into a new
    /// data dir that replaces the old one, and starts etcd, kube-apiserver
    /// and kube-controller-manager again, waiting until the API is ready.
    /// Clients of the API server (an operator, kubectl) see the cluster as
    /// it was at the snapshot.
    pub async fn restore_etcd_snapshot(&self, path: &Path) -> Result<RestoreTimings> {
        let began = Instant::now();
        let tools = etcd_tools().await?;
        let mut t = RestoreTimings::default();
        // Clients first, as at shutdown: the API server must not write
        // anything into the etcd about to be replaced.
        self.controller_manager.stop().await?;
        self.apiserver.stop().await?;
        self.etcd.stop().await?;
        t.stop = began.elapsed();

        let phase = Instant::now();
        let data = self.dir_path.join("etcd-data");
        let restored = self.dir_path.join("etcd-data.restored");
        if restored.exists() {
            std::fs::remove_dir_all(&restored)
                .with_context(|| format!("removing {}", restored.display()))?;
        }
        let peer = format!("http://127.0.0.1:{}", self.etcd_peer_port);
        let cluster = format!("default={peer}");
        let bump = RESTORE_REVISION_BUMP.to_string();
        run_tool(
            &tools.join("etcdutl"),
            &[
                "snapshot",
                "restore",
                path_str(path)?,
                "--data-dir",
                path_str(&restored)?,
                "--name",
                "default",
                "--initial-cluster",
                &cluster,
                "--initial-advertise-peer-urls",
                &peer,
                "--bump-revision",
                &bump,
                "--mark-compacted",
            ],
        )
        .await?;
        // The old data goes (it is what the restore undoes); etcd starts on
        // the restored dir under the same flags.
        std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
        std::fs::rename(&restored, &data)
            .with_context(|| format!("moving {} to {}", restored.display(), data.display()))?;
        t.restore = phase.elapsed();

        let phase = Instant::now();
        let deadline = Instant::now() + crate::start_timeout();
        self.etcd.start()?;
        self.wait_for_etcd(deadline).await?;
        self.apiserver.start()?;
        self.wait_for_apiserver(deadline).await?;
        t.start = phase.elapsed();
        self.controller_manager.start()?;
        t.total = began.elapsed();
        tracing::info!(snapshot = %path.display(), timings = ?t, "etcd snapshot restored");
        Ok(t)
    }

    /// The directory holding `etcdctl` and `etcdutl` (built on first use).
    pub async fn etcd_tools_dir(&self) -> Result<PathBuf> {
        etcd_tools().await
    }
}

async fn etcd_tools() -> Result<PathBuf> {
    crate::run_build_script(
        "hack/control-plane/etcd-tools/build.sh",
        &["etcdctl", "etcdutl"],
    )
    .await
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

/// Runs etcdctl or etcdutl; a non-zero exit is an error with its output.
async fn run_tool(program: &Path, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        // etcdctl reads ETCDCTL_* from the environment; none may leak in.
        .env_clear()
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({}): {}{}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

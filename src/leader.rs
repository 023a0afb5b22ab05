//! Leader election with a `coordination.k8s.io` Lease (kube-lease-manager):
//! with several replicas exactly one reconciles; the others wait, and one of
//! them takes over within the lease duration when the leader goes.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::{sync::watch, task::JoinHandle};
use tracing::info;

/// What this replica is doing, as `/readyz` reports it.
#[derive(Clone, Default)]
pub struct Role(Arc<AtomicU8>);

impl Role {
    const STARTING: u8 = 0;
    const STANDBY: u8 = 1;
    const SYNCING: u8 = 2;
    const SERVING: u8 = 3;

    /// Waiting for the lease.
    pub fn standby(&self) {
        self.0.store(Self::STANDBY, Ordering::Relaxed);
    }

    /// Leading (or alone), caches filling.
    pub fn syncing(&self) {
        self.0.store(Self::SYNCING, Ordering::Relaxed);
    }

    /// Reconciling with synced caches.
    pub fn serving(&self) {
        self.0.store(Self::SERVING, Ordering::Relaxed);
    }

    /// Shutting down.
    pub fn stopping(&self) {
        self.0.store(Self::STARTING, Ordering::Relaxed);
    }

    /// `Some(text)` when ready: "leader"/"ready" while serving, "standby"
    /// while waiting for the lease (a healthy standby is ready, so rolling
    /// updates of a two-replica Deployment never wedge).
    pub fn readiness(&self, elected: bool) -> Option<&'static str> {
        match self.0.load(Ordering::Relaxed) {
            Self::SERVING if elected => Some("leader"),
            Self::SERVING => Some("ready"),
            Self::STANDBY => Some("standby"),
            _ => None,
        }
    }

    /// Whether this replica reconciles.
    pub fn is_leading(&self) -> bool {
        matches!(
            self.0.load(Ordering::Relaxed),
            Self::SYNCING | Self::SERVING
        )
    }
}

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (the Pod name in a cluster).
    pub identity: String,
    /// How long a lease is valid after its last renewal.
    pub duration: Duration,
}

/// A held or awaited lease.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
}

impl Leadership {
    /// Starts competing for the lease.
    pub async fn start(client: Client, s: &LeaseSettings) -> anyhow::Result<Leadership> {
        let secs = s.duration.as_secs().max(3);
        let manager = LeaseManagerBuilder::new(client, &s.name)
            .with_namespace(&s.namespace)
            .with_identity(&s.identity)
            .with_duration(secs)
            .with_grace((secs / 3).max(1))
            // One field manager per replica: server-side apply detects a
            // competing claim only between different managers. With one
            // name shared by every replica, two replicas that find the
            // Lease free at the same moment both "win" and both reconcile
            // until the next renewal (seen in the e2e leader test).
            .with_field_manager(format!(
                "{}-lease-{}",
                crate::api::FIELD_MANAGER,
                s.identity
            ))
            .build()
            .await
            .with_context(|| format!("preparing Lease {}/{}", s.namespace, s.name))?;
        let (state, task) = manager.watch().await;
        info!(lease = %s.name, namespace = %s.namespace, identity = %s.identity, "waiting for leadership");
        Ok(Leadership { state, task })
    }

    /// Resolves once this replica holds the lease; `false` if the lease
    /// manager ended first.
    pub async fn acquired(&mut self) -> bool {
        self.state.wait_for(|leader| *leader).await.is_ok()
    }

    /// A receiver of the leadership state (true while leading).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.state.clone()
    }

    /// Releases the lease (if held) so another replica takes over at once.
    pub async fn release(self) {
        drop(self.state);
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(Ok(_))) => info!("lease released"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "lease task"),
            Err(_) => tracing::warn!("releasing the lease timed out"),
        }
    }
}

/// This process's identity: `POD_NAME`, else host name and pid.
pub fn default_identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "collibra-oauth-operator".to_owned());
            format!("{host}-{}", std::process::id())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_tells_leader_from_standby() {
        let r = Role::default();
        assert_eq!(r.readiness(true), None);
        r.standby();
        assert_eq!(r.readiness(true), Some("standby"));
        assert!(!r.is_leading());
        r.syncing();
        assert_eq!(r.readiness(true), None);
        assert!(r.is_leading());
        r.serving();
        assert_eq!(r.readiness(true), Some("leader"));
        assert_eq!(r.readiness(false), Some("ready"));
        r.stopping();
        assert_eq!(r.readiness(true), None);
    }
}

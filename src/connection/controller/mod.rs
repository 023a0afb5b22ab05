//! The connection controller: for each CollibraConnection and
//! ClusterCollibraConnection, read its credentials (and CA bundle), build
//! a Collibra client when any of them changed, probe the instance with a
//! list (shared with the OAuthClient reconciles through the connection's
//! cache), and report Ready, capabilities and client counts. A connection
//! that OAuthClients with `deletionPolicy: Delete` still use keeps its
//! finalizer until they are gone.
//!
//! One module per concern: [`wiring`] starts the controllers of both kinds
//! (and the default instance's counts); [`reconcile`] is the apply and
//! cleanup of one connection; [`users`] says which OAuthClients hold it,
//! wake with it and claim clients in it; [`probe`] checks it against its
//! instance;
//! [`load`] reads the credentials Secret and CA bundle it names; [`report`]
//! writes its status and Events.

mod load;
mod probe;
mod reconcile;
mod report;
mod users;
mod wiring;

use std::{sync::Arc, time::Duration};

use kube::Client;

pub use self::{
    load::{Loaded, load, read_objects, secret_namespace},
    probe::health_of,
    wiring::controllers,
};
use super::{hosts::AllowedHosts, registry::Registry};
use crate::{controller::context::Scope, events::Recorder, metrics::Metrics};

/// Everything the connection reconciles share.
pub struct ConnectionContext {
    /// Kubernetes client.
    pub client: Client,
    /// The per-connection state the OAuthClient reconciles use too.
    pub registry: Arc<Registry>,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Hosts namespaced connections may use.
    pub allowed_hosts: AllowedHosts,
    /// Where ClusterCollibraConnections' Secrets and CA bundles live.
    pub cluster_namespace: String,
    /// How often a healthy connection lists its instance again.
    pub resync: Duration,
    /// The longest a connection waits for its next check: a fallback,
    /// since the Secrets and ConfigMaps it reads are watched (see
    /// [`watches`](super::watches)).
    pub recheck: Duration,
    /// The watched scopes: who uses which connection, and how to wake them.
    pub scopes: Vec<Scope>,
}

/// Why a connection reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// OAuthClients with `deletionPolicy: Delete` still use the connection.
    #[error("{connection} is still used by OAuthClients with deletionPolicy Delete: {holders}")]
    InUse {
        /// The connection.
        connection: String,
        /// Some of the objects that hold it.
        holders: String,
    },
    /// Writing the connection's status failed.
    #[error("patching the status of {connection}: {source}")]
    PatchStatus {
        /// The connection.
        connection: String,
        /// What the API server answered.
        #[source]
        source: kube::Error,
    },
    /// Adding or removing the finalizer failed.
    #[error("finalizer of {connection}: {message}")]
    Finalizer {
        /// The connection.
        connection: String,
        /// What went wrong.
        message: String,
    },
}

//! What every reconcile shares: clients, caches, metrics, and the little
//! state that must outlive one reconcile (credentials not yet written,
//! per-object backoff, the Ready reason last reported).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use collibra_client::{CollibraClient, IssuedClient};
use k8s_openapi::{api::core::v1::Secret, jiff::Timestamp};
use kube::{
    Client, ResourceExt,
    runtime::{
        events::Recorder,
        reflector::{ObjectRef, Store},
    },
};

use super::{
    backoff::Backoffs,
    connection::Connection,
    decide::{NameClaim, name_owner},
    names::NameIndex,
    reasons::Reason,
};
use crate::{
    api::{OAuthClient, Replacement},
    connection::{
        connection_of,
        registry::{ConnectionState, Registry},
    },
    metrics::Metrics,
};

/// The caches of one watched scope: the whole cluster or one namespace.
#[derive(Clone)]
pub struct Scope {
    /// `None` for all namespaces.
    pub namespace: Option<String>,
    /// OAuthClients in the scope.
    pub oauth_clients: Store<OAuthClient>,
    /// Which OAuthClients of the scope claim each clientName.
    pub names: Arc<NameIndex>,
    /// Secrets in the scope that carry the managed-by label.
    pub secrets: Store<Secret>,
    /// Asks the scope's controller to reconcile an object now.
    pub wake: futures::channel::mpsc::UnboundedSender<ObjectRef<OAuthClient>>,
}

impl Scope {
    fn covers(&self, ns: &str) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == ns)
    }
}

/// Settings reconciles need.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often an object is checked again when nothing happens.
    pub resync: Duration,
    /// How long a failing cleanup may hold a deleted object.
    pub deletion_grace: Duration,
    /// The oldest Collibra list a decision to register may rest on.
    pub list_max_age: Duration,
}

/// Shared state of the controller.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Every Collibra instance: the one configured by flags and the
    /// connections, with what the operator keeps about each.
    pub connections: Arc<Registry>,
    /// The instance configured by flags.
    pub default_collibra: Arc<Connection>,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Watched scopes.
    pub scopes: Vec<Scope>,
    /// Settings.
    pub settings: Settings,
    /// Per-object backoff and holds.
    pub backoffs: Backoffs,
    /// Credentials issued by Collibra whose Secret write failed, by object
    /// uid: written before anything else on the next reconcile.
    unsaved: Mutex<HashMap<String, Arc<IssuedClient>>>,
    /// The Ready reason this process last reported, by object uid.
    reported: Mutex<HashMap<String, Reason>>,
    /// The last replacement this process made, by object uid: the cached
    /// object lags behind the status write that recorded it, and a status
    /// built from the cache must not drop it.
    replacements: Mutex<HashMap<String, Replacement>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each map is updated in one statement; a poisoned lock is safe to use.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Context {
    /// Builds the context.
    pub fn new(
        client: Client,
        collibra: CollibraClient,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        scopes: Vec<Scope>,
        settings: Settings,
    ) -> Self {
        let connections = Arc::new(Registry::new(settings.resync, metrics.collibra()));
        let default_instance =
            ConnectionState::default_instance(collibra, settings.resync, metrics.collibra());
        connections.insert(Arc::new(default_instance.state));
        Context {
            client,
            connections,
            default_collibra: default_instance.collibra,
            recorder,
            metrics,
            scopes,
            settings,
            backoffs: Backoffs::default(),
            unsaved: Mutex::new(HashMap::new()),
            reported: Mutex::new(HashMap::new()),
            replacements: Mutex::new(HashMap::new()),
        }
    }

    /// The managed Secret `ns/name` as last seen by the watch.
    pub fn cached_secret(&self, ns: &str, name: &str) -> Option<Arc<Secret>> {
        let key = ObjectRef::new(name).within(ns);
        self.scopes
            .iter()
            .find(|s| s.covers(ns))
            .and_then(|s| s.secrets.get(&key))
    }

    /// Whether the watch of managed Secrets covering `ns` has listed them
    /// all, so that a Secret absent from [`Context::cached_secret`] was
    /// absent when it listed (it may have been written since).
    pub fn secrets_synced(&self, ns: &str) -> bool {
        self.scopes.iter().find(|s| s.covers(ns)).is_some_and(|s| {
            futures::FutureExt::now_or_never(s.secrets.wait_until_ready())
                .is_some_and(|r| r.is_ok())
        })
    }

    /// The object that keeps `obj`'s clientName when several claim it: the
    /// oldest live one. `None` when `obj` itself does.
    pub fn name_winner(&self, obj: &OAuthClient) -> Option<NameClaim> {
        let mut claims: Vec<NameClaim> = self
            .scopes
            .iter()
            .flat_map(|s| {
                s.names
                    .claimants(&connection_of(obj), &obj.spec.client_name)
            })
            .filter(|c| !c.deleting && c.uid != obj.metadata.uid)
            .map(|c| c.claim)
            .collect();
        if claims.is_empty() {
            return None;
        }
        let me = NameClaim {
            created: obj.metadata.creation_timestamp.as_ref().map(|t| t.0),
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
        };
        claims.push(me.clone());
        name_owner(&claims).filter(|w| **w != me).cloned()
    }

    /// Wakes the other objects that claim `obj`'s clientName (after `obj`
    /// is gone, the oldest of them takes the name over at once).
    pub fn wake_name_claimants(&self, obj: &OAuthClient) {
        for s in &self.scopes {
            for c in s
                .names
                .claimants(&connection_of(obj), &obj.spec.client_name)
            {
                if c.uid != obj.metadata.uid {
                    let r = ObjectRef::new(&c.claim.name).within(&c.claim.namespace);
                    let _ = s.wake.unbounded_send(r);
                }
            }
        }
    }

    /// Keeps credentials whose Secret write failed.
    pub fn stash_unsaved(&self, uid: &str, issued: Arc<IssuedClient>) {
        lock(&self.unsaved).insert(uid.to_owned(), issued);
    }

    /// Takes credentials kept by [`Self::stash_unsaved`].
    pub fn take_unsaved(&self, uid: &str) -> Option<Arc<IssuedClient>> {
        lock(&self.unsaved).remove(uid)
    }

    /// Records the Ready reason reported for `uid` (and moves the objects
    /// gauge); returns the reason recorded before.
    pub fn record_reported(&self, uid: &str, reason: Reason) -> Option<Reason> {
        let previous = lock(&self.reported).insert(uid.to_owned(), reason);
        if previous != Some(reason) {
            self.metrics.object_moved(previous, reason);
        }
        previous
    }

    /// Remembers a replacement made for `uid`.
    pub fn remember_replacement(&self, uid: &str, replacement: Replacement) {
        lock(&self.replacements).insert(uid.to_owned(), replacement);
    }

    /// The last replacement this process made for `uid`.
    pub fn last_replacement(&self, uid: &str) -> Option<Replacement> {
        lock(&self.replacements).get(uid).cloned()
    }

    /// Forgets everything about `uid` (the object is gone).
    pub fn forget(&self, uid: &str) {
        self.backoffs.reset(uid);
        lock(&self.unsaved).remove(uid);
        lock(&self.replacements).remove(uid);
        if let Some(last) = lock(&self.reported).remove(uid) {
            self.metrics.object_gone(last);
        }
    }
}

/// Now, as Kubernetes timestamps want it.
pub fn now() -> Timestamp {
    Timestamp::now()
}

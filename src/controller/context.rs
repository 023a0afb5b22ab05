//! What every reconcile shares: clients, caches, metrics, and the little
//! state that must outlive one reconcile (credentials not yet written,
//! per-object backoff, the Ready reason last reported).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use collibra_client::{CollibraClient, IssuedClient};
use k8s_openapi::{
    api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta, jiff::Timestamp,
};
use kube::{Client, ResourceExt};

use super::{
    backoff::Backoffs,
    collibra_instance::CollibraInstance,
    decide::{NameClaim, name_owner},
    names::NameIndex,
    object_cache::ObjectCache,
    reasons::Reason,
    runtime::{Asker, Key},
    secret_cache::SecretCache,
};
use crate::{
    api::{OAuthClient, Replacement},
    connection::{
        connection_of,
        registry::{ConnectionState, Registry},
    },
    events::Recorder,
    metrics::Metrics,
};

/// The caches of one watched scope: the whole cluster or one namespace.
#[derive(Clone)]
pub struct Scope {
    /// `None` for all namespaces.
    pub namespace: Option<String>,
    /// OAuthClients in the scope.
    pub oauth_clients: Arc<ObjectCache>,
    /// Which OAuthClients of the scope claim each clientName.
    pub names: Arc<NameIndex>,
    /// Secrets in the scope that carry the managed-by label, as metadata
    /// only: their data is read when the metadata cannot tell (see
    /// `secret::settled`).
    pub secrets: Arc<SecretCache>,
    /// Asks the scope's controller to reconcile an object now.
    pub wake: Asker,
    /// The Secret versions this process wrote, whose watch events wake no
    /// reconcile (docs/design.md, "Requests per registration").
    pub own_writes: Arc<OwnWrites>,
}

/// Secret versions this process wrote and the watch has not shown yet.
/// The reconcile that wrote one already knows what it holds, so its watch
/// event need not wake another reconcile: a version someone else wrote,
/// and every deletion, still does.
/// The watch event of a write can arrive before the write's answer; an
/// event for a Secret with a write in flight is decided once the write
/// is answered ([`OwnWrites::settled`]).
#[derive(Debug, Default)]
pub struct OwnWrites {
    /// Versions written, oldest first, by namespace and name.
    written: Mutex<HashMap<(String, String), Vec<String>>>,
    /// Writes sent and not answered yet, by namespace and name.
    in_flight: Mutex<HashMap<(String, String), u32>>,
    /// Secrets someone else wrote since the operator last read or wrote
    /// their data: their metadata no longer vouches for it.
    touched: Mutex<HashSet<(String, String)>>,
}

/// A Secret write in flight ([`OwnWrites::begin`]); dropping it without
/// [`InFlight::written`] records nothing (the write failed).
pub struct InFlight {
    own: Arc<OwnWrites>,
    key: (String, String),
}

impl InFlight {
    /// The write was answered with `secret`.
    pub fn written(self, secret: &Secret) {
        self.own.record(secret);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.own.in_flight);
        if let Some(n) = in_flight.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                in_flight.remove(&self.key);
            }
        }
    }
}

/// Longest wait for a write in flight before its Secret's event counts.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(5);

/// Versions kept per Secret; more are never outstanding in practice (a
/// registration writes two), and forgetting one only costs a reconcile.
const OWN_WRITES_KEPT: usize = 4;

impl OwnWrites {
    /// Records that this process wrote `secret` (the API server's answer).
    pub fn record(&self, secret: &Secret) {
        let (Some(ns), Some(name), Some(rv)) = (
            secret.metadata.namespace.clone(),
            secret.metadata.name.clone(),
            secret.metadata.resource_version.clone(),
        ) else {
            return;
        };
        lock(&self.touched).remove(&(ns.clone(), name.clone()));
        let mut written = lock(&self.written);
        let versions = written.entry((ns, name)).or_default();
        versions.push(rv);
        if versions.len() > OWN_WRITES_KEPT {
            versions.remove(0);
        }
    }

    /// Notes that someone else wrote `ns/name` (a watch event that was not
    /// this process's write).
    pub fn touched_by_others(&self, ns: &str, name: &str) {
        lock(&self.touched).insert((ns.to_owned(), name.to_owned()));
    }

    /// Whether someone else wrote `ns/name` since it was last read or
    /// written here.
    pub fn is_touched(&self, ns: &str, name: &str) -> bool {
        lock(&self.touched).contains(&(ns.to_owned(), name.to_owned()))
    }

    /// The Secret's data is about to be read: what it holds is known again.
    pub fn reading(&self, ns: &str, name: &str) {
        lock(&self.touched).remove(&(ns.to_owned(), name.to_owned()));
    }

    /// Marks a write of `ns/name` as sent.
    pub fn begin(self: &Arc<Self>, ns: &str, name: &str) -> InFlight {
        let key = (ns.to_owned(), name.to_owned());
        *lock(&self.in_flight).entry(key.clone()).or_default() += 1;
        InFlight {
            own: self.clone(),
            key,
        }
    }

    /// [`Self::seen`], once no write of the Secret is in flight (at most
    /// a few seconds): the answer records the version the event may show.
    pub async fn settled(&self, ns: &str, name: &str, resource_version: Option<&str>) -> bool {
        let key = (ns.to_owned(), name.to_owned());
        let deadline = tokio::time::Instant::now() + IN_FLIGHT_WAIT;
        while lock(&self.in_flight).contains_key(&key) && tokio::time::Instant::now() < deadline {
            if self.seen(ns, name, resource_version) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.seen(ns, name, resource_version)
    }

    /// Whether the watch shows a version this process wrote; that version
    /// and the ones written before it are forgotten.
    pub fn seen(&self, ns: &str, name: &str, resource_version: Option<&str>) -> bool {
        let Some(rv) = resource_version else {
            return false;
        };
        let mut written = lock(&self.written);
        let key = (ns.to_owned(), name.to_owned());
        let Some(versions) = written.get_mut(&key) else {
            return false;
        };
        let Some(at) = versions.iter().position(|v| v == rv) else {
            return false;
        };
        versions.drain(..=at);
        if versions.is_empty() {
            written.remove(&key);
        }
        true
    }
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
    /// How long a reconcile waits for the Secret watch's first list before
    /// it asks the API server for the Secret instead.
    pub secrets_sync_wait: Duration,
}

/// Shared state of the controller.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Every Collibra instance: the one configured by flags and the
    /// connections, with what the operator keeps about each.
    pub connections: Arc<Registry>,
    /// The instance configured by flags.
    pub default_collibra: Arc<CollibraInstance>,
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

    /// The watched scope that covers namespace `ns`.
    fn scope(&self, ns: &str) -> Option<&Scope> {
        self.scopes.iter().find(|s| s.covers(ns))
    }

    /// The managed Secret `ns/name`'s metadata as last seen by the watch.
    pub fn cached_secret(&self, ns: &str, name: &str) -> Option<ObjectMeta> {
        self.scope(ns).and_then(|s| s.secrets.get(ns, name))
    }

    /// The [`OwnWrites`] of the scope covering `ns`.
    pub fn own_writes(&self, ns: &str) -> Option<&OwnWrites> {
        self.scope(ns).map(|s| s.own_writes.as_ref())
    }

    /// Marks a write of the Secret `ns/name` as sent (see [`OwnWrites`]).
    pub fn own_write(&self, ns: &str, name: &str) -> Option<InFlight> {
        self.scope(ns).map(|s| s.own_writes.begin(ns, name))
    }

    /// Whether the watch of managed Secrets covering `ns` has listed them
    /// all, so that a Secret absent from [`Context::cached_secret`] was
    /// absent when it listed (it may have been written since).
    pub fn secrets_synced(&self, ns: &str) -> bool {
        self.scope(ns).is_some_and(|s| s.secrets.synced())
    }

    /// Waits until the Secret watch covering `ns` has listed, at most
    /// [`Settings::secrets_sync_wait`]. After a start the OAuthClients can be
    /// listed before the Secrets; a reconcile that waited answers from the
    /// cache instead of asking the API server for each Secret. Polled: see
    /// the readiness wait in `controller::run`.
    pub async fn wait_secrets_synced(&self, ns: &str) {
        let deadline = tokio::time::Instant::now() + self.settings.secrets_sync_wait;
        while !self.secrets_synced(ns) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
                    s.wake.now(Key::new(&c.claim.namespace, &c.claim.name));
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

    /// The Ready reason this process last reported for `uid`.
    pub fn last_reported(&self, uid: &str) -> Option<Reason> {
        lock(&self.reported).get(uid).copied()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn version(name: &str, rv: &str) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = Some("team-a".to_owned());
        s.metadata.name = Some(name.to_owned());
        s.metadata.resource_version = Some(rv.to_owned());
        s
    }

    #[test]
    fn own_writes_are_seen_once_in_order() {
        let own = OwnWrites::default();
        own.record(&version("a", "11"));
        own.record(&version("a", "12"));
        // Someone else's version, or another Secret's, is not ours.
        assert!(!own.seen("team-a", "a", Some("13")));
        assert!(!own.seen("team-a", "b", Some("11")));
        assert!(!own.seen("team-a", "a", None));
        assert!(own.seen("team-a", "a", Some("11")));
        assert!(!own.seen("team-a", "a", Some("11")), "seen once");
        assert!(own.seen("team-a", "a", Some("12")));
        assert!(lock(&own.written).is_empty(), "nothing kept once seen");
        // A later version seen first settles the earlier ones too.
        own.record(&version("a", "20"));
        own.record(&version("a", "21"));
        assert!(own.seen("team-a", "a", Some("21")));
        assert!(!own.seen("team-a", "a", Some("20")));
    }

    #[test]
    fn own_writes_keep_a_few_versions_per_secret() {
        let own = OwnWrites::default();
        for rv in 0..10 {
            own.record(&version("a", &rv.to_string()));
        }
        assert!(!own.seen("team-a", "a", Some("0")));
        assert!(own.seen("team-a", "a", Some("9")));
    }
}

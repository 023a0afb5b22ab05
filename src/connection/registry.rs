//! Per-connection state, keyed by connection: the Collibra client (with
//! its token cache and rate limiter), the cached list, the capabilities
//! learned from answers, the health of the last probe and its backoff.
//! Every guarantee that used to hold for the one instance holds per entry.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, OnceLock, RwLock,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use collibra_client::CollibraClient;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    api::PartialObjectMeta,
    core::{Selector, SelectorExt},
    runtime::reflector::{ObjectRef, Store},
};
use rand::Rng;

use super::{
    status::{ConnectionReason, Health},
    watches::{Version, Watches},
};
use crate::{
    api::connection::{Capabilities, ConnectionKey},
    controller::{collibra_instance::CollibraInstance, decide::Listed},
    metrics::CollibraMetrics,
};

/// What a client was built from: a change of any part means the
/// credentials, the CA or the settings changed, and a new client is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// The connection's `metadata.generation`.
    pub generation: Option<i64>,
    /// uid and resourceVersion of the credentials Secret.
    pub credentials: Version,
    /// uid and resourceVersion of the CA bundle's object, if any.
    pub ca_bundle: Option<Version>,
}

/// One connection as the operator tracks it: the Collibra instance the
/// reconciles use (client, list, capabilities), the health of the last
/// check, its backoff, and which namespaces may use it.
pub struct ConnectionState {
    /// Which connection this is.
    pub key: ConnectionKey,
    /// URL and API path: a connection whose instance changes gets a new
    /// entry, so nothing learned about the old instance is kept.
    pub instance: String,
    resync: Duration,
    metrics: Arc<CollibraMetrics>,
    /// Rebuilt, with a fresh list, whenever the credentials change: a
    /// reconcile in flight finishes with the instance it started with.
    collibra: RwLock<Option<(Fingerprint, Arc<CollibraInstance>)>>,
    health: RwLock<Health>,
    failures: AtomicU32,
    /// Which namespaces may use it (a ClusterCollibraConnection's
    /// `namespaceSelector`); `None` admits every namespace it can reach.
    namespace_selector: RwLock<Option<Selector>>,
}

impl std::fmt::Debug for ConnectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionState")
            .field("key", &self.key)
            .field("instance", &self.instance)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn write<T>(l: &RwLock<T>, value: T) {
    *l.write().unwrap_or_else(std::sync::PoisonError::into_inner) = value;
}

impl ConnectionState {
    /// A connection with no client yet.
    pub fn new(
        key: ConnectionKey,
        instance: String,
        resync: Duration,
        metrics: Arc<CollibraMetrics>,
    ) -> ConnectionState {
        ConnectionState {
            key,
            instance,
            resync,
            metrics,
            collibra: RwLock::new(None),
            health: RwLock::new(Health::new(ConnectionReason::Connecting, "not checked yet")),
            failures: AtomicU32::new(0),
            namespace_selector: RwLock::new(None),
        }
    }

    /// The instance configured by flags: its client is built at start-up
    /// and it is usable from the start (its failures show on the objects).
    pub fn default_instance(
        client: CollibraClient,
        resync: Duration,
        metrics: Arc<CollibraMetrics>,
    ) -> DefaultInstance {
        let state = ConnectionState::new(
            ConnectionKey::Default,
            String::new(),
            resync,
            metrics.clone(),
        );
        let collibra = Arc::new(CollibraInstance::new(client, resync, metrics));
        let fingerprint = Fingerprint {
            generation: None,
            credentials: (None, None),
            ca_bundle: None,
        };
        write(&state.collibra, Some((fingerprint, collibra.clone())));
        write(
            &state.health,
            Health::new(ConnectionReason::Connected, "configured by flags"),
        );
        DefaultInstance { state, collibra }
    }

    /// The Collibra instance, once a client could be built.
    pub fn collibra(&self) -> Option<Arc<CollibraInstance>> {
        read(&self.collibra).map(|(_, c)| c)
    }

    /// Whether the client was built from exactly `fingerprint`.
    pub fn built_from(&self, fingerprint: &Fingerprint) -> bool {
        read(&self.collibra).is_some_and(|(f, _)| f == *fingerprint)
    }

    /// Uses `client` from now on, with a fresh list: the old credentials
    /// may have seen another view (or none).
    pub fn set_client(&self, fingerprint: Fingerprint, client: CollibraClient) {
        let collibra = Arc::new(CollibraInstance::new(
            client,
            self.resync,
            self.metrics.clone(),
        ));
        write(&self.collibra, Some((fingerprint, collibra)));
    }

    /// Drops the client (its credentials are gone or unusable).
    pub fn clear_client(&self) {
        write(&self.collibra, None);
    }

    /// The health of the last check.
    pub fn health(&self) -> Health {
        read(&self.health)
    }

    /// Records the outcome of a check; returns the health before.
    pub fn set_health(&self, health: Health) -> Health {
        if health.reason.is_ready() {
            self.failures.store(0, Ordering::Relaxed);
        }
        std::mem::replace(
            &mut *self
                .health
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            health,
        )
    }

    /// Limits the namespaces that may use this connection.
    pub fn set_namespace_selector(&self, selector: Option<Selector>) {
        write(&self.namespace_selector, selector);
    }

    /// Whether a namespace with these labels may use this connection.
    pub fn admits(&self, labels: &BTreeMap<String, String>) -> bool {
        read(&self.namespace_selector).is_none_or(|s| s.matches(labels))
    }

    /// What the instance is known to support.
    pub fn capabilities(&self) -> Capabilities {
        self.collibra()
            .map(|c| Capabilities {
                delete: c.delete_supported(),
                update: c.update_supported(),
            })
            .unwrap_or_default()
    }

    /// Counts a failed check and returns how long to wait before the next:
    /// capped exponential backoff (2 s doubling to 5 min) with jitter.
    pub fn backoff(&self) -> Duration {
        let n = self.failures.fetch_add(1, Ordering::Relaxed).min(8);
        let base = Duration::from_secs(2u64 << n).min(Duration::from_secs(300));
        base.mul_f64(rand::rng().random_range(0.8..1.2))
    }

    /// Every client the instance lists, from the shared list.
    pub async fn all_clients(&self) -> Result<Vec<(String, Listed)>, collibra_client::Error> {
        let collibra = self.collibra().ok_or_else(|| {
            collibra_client::Error::Config(format!(
                "{} has no usable configuration: {}",
                self.key,
                self.health().message
            ))
        })?;
        collibra.clients().await
    }
}

/// The default instance's entry and its Collibra instance, which never
/// changes while the process runs.
pub struct DefaultInstance {
    /// The registry entry.
    pub state: ConnectionState,
    /// Its Collibra instance.
    pub collibra: Arc<CollibraInstance>,
}

/// Why an OAuthClient cannot use its connection now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReady {
    /// Names the connection and says what to do.
    pub message: String,
}

/// Every connection the operator uses, by key.
pub struct Registry {
    resync: Duration,
    metrics: Arc<CollibraMetrics>,
    connections: RwLock<HashMap<ConnectionKey, Arc<ConnectionState>>>,
    /// Serialises `entry` so two reconciles never build two entries.
    creating: Mutex<()>,
    /// Namespace labels, for `namespaceSelector` (set when cluster
    /// connections are served).
    namespaces: OnceLock<Store<PartialObjectMeta<Namespace>>>,
    /// The watches of the Secrets and ConfigMaps the connections read.
    watches: Watches,
    /// Whether every connection that existed at start has been checked
    /// once ([`Registry::mark_loaded`]).
    loaded: AtomicBool,
}

impl Registry {
    /// An empty registry; lists are trusted for `resync`.
    pub fn new(resync: Duration, metrics: Arc<CollibraMetrics>) -> Registry {
        Registry {
            resync,
            metrics,
            connections: RwLock::new(HashMap::new()),
            creating: Mutex::new(()),
            namespaces: OnceLock::new(),
            watches: Watches::default(),
            loaded: AtomicBool::new(false),
        }
    }

    /// Whether the connections that existed at start have been checked
    /// once (and namespace labels listed). Until then an OAuthClient whose
    /// connection cannot be resolved is not reported on: after a restart,
    /// "not found" only means "not loaded yet", and a Ready object must not
    /// flip to `ConnectionNotReady` and back.
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Records that the connections that existed at start are loaded.
    pub fn mark_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    /// The watches of the Secrets and ConfigMaps the connections read.
    pub fn watches(&self) -> &Watches {
        &self.watches
    }

    /// Uses `store` for namespace labels (`namespaceSelector`).
    pub fn set_namespaces(&self, store: Store<PartialObjectMeta<Namespace>>) {
        let _ = self.namespaces.set(store);
    }

    /// The connection an object in `namespace` uses through `key`, when it
    /// may use it now; otherwise why not, naming the connection.
    pub fn resolve(
        &self,
        key: &ConnectionKey,
        namespace: &str,
    ) -> Result<Arc<CollibraInstance>, NotReady> {
        let not_ready = |why: String| NotReady {
            message: format!("{key}: {why}"),
        };
        let Some(conn) = self.get(key) else {
            return Err(not_ready(
                "not found (create it, or fix spec.connectionRef, which is immutable: recreate the OAuthClient)".to_owned(),
            ));
        };
        if matches!(key, ConnectionKey::Cluster { .. }) {
            let labels = self
                .namespaces
                .get()
                .and_then(|s| s.get(&ObjectRef::new(namespace)))
                .map(|n| n.metadata.labels.clone().unwrap_or_default())
                .unwrap_or_default();
            if !conn.admits(&labels) {
                return Err(not_ready(format!(
                    "its namespaceSelector does not admit namespace {namespace}"
                )));
            }
        }
        let health = conn.health();
        match conn.collibra() {
            Some(collibra) if health.reason.is_ready() => Ok(collibra),
            _ => Err(not_ready(format!(
                "not ready ({}): {}",
                health.reason.as_str(),
                health.message
            ))),
        }
    }

    /// The connection `key`, if it is known.
    pub fn get(&self, key: &ConnectionKey) -> Option<Arc<ConnectionState>> {
        self.connections
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// The entry of `key` for `instance`: the existing one, or a new one
    /// when there is none or it was for another instance.
    pub fn entry(&self, key: &ConnectionKey, instance: &str) -> Arc<ConnectionState> {
        let _one_at_a_time = self
            .creating
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = self.get(key).filter(|c| c.instance == instance) {
            return c;
        }
        let c = Arc::new(ConnectionState::new(
            key.clone(),
            instance.to_owned(),
            self.resync,
            self.metrics.clone(),
        ));
        self.insert(c.clone());
        c
    }

    /// Adds or replaces a connection.
    pub fn insert(&self, connection: Arc<ConnectionState>) {
        self.connections
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(connection.key.clone(), connection);
    }

    /// Forgets a connection that is gone.
    pub fn remove(&self, key: &ConnectionKey) -> Option<Arc<ConnectionState>> {
        self.connections
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key)
    }

    /// How many connections are known.
    pub fn len(&self) -> usize {
        self.connections
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether none is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Arc<CollibraMetrics> {
        crate::metrics::Metrics::default().collibra()
    }

    fn key(name: &str) -> ConnectionKey {
        ConnectionKey::Namespaced {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[test]
    fn an_instance_change_starts_afresh() {
        let r = Registry::new(Duration::from_secs(60), metrics());
        let a = r.entry(&key("a"), "https://one/rest/auth/v1");
        a.set_health(Health::new(ConnectionReason::Connected, "ok"));
        let again = r.entry(&key("a"), "https://one/rest/auth/v1");
        assert!(Arc::ptr_eq(&a, &again));
        let moved = r.entry(&key("a"), "https://two/rest/auth/v1");
        assert!(!Arc::ptr_eq(&a, &moved));
        assert_eq!(moved.health().reason, ConnectionReason::Connecting);
        let b = r.entry(&key("b"), "https://one/rest/auth/v1");
        assert!(!Arc::ptr_eq(&moved, &b));
        assert_eq!(r.len(), 2);
        assert!(r.remove(&key("a")).is_some());
        assert!(r.get(&key("a")).is_none());
    }

    #[test]
    fn backoff_grows_capped_and_resets_when_connected() {
        let c = ConnectionState::new(key("a"), "i".into(), Duration::from_secs(60), metrics());
        let first = c.backoff();
        assert!(first >= Duration::from_millis(1600) && first <= Duration::from_millis(2400));
        for _ in 0..20 {
            assert!(c.backoff() <= Duration::from_secs(360));
        }
        c.set_health(Health::new(ConnectionReason::Connected, "ok"));
        assert!(c.backoff() <= Duration::from_millis(2400));
    }

    #[test]
    fn resolve_names_the_connection_and_why() {
        let r = Registry::new(Duration::from_secs(60), metrics());
        let err = r.resolve(&key("a"), "ns").err().expect("unknown");
        assert!(
            err.message
                .starts_with("CollibraConnection/ns/a: not found"),
            "{err:?}"
        );
        let c = r.entry(&key("a"), "i");
        c.set_health(Health::new(
            ConnectionReason::AuthenticationFailed,
            "refused",
        ));
        let err = r.resolve(&key("a"), "ns").err().expect("not ready");
        assert!(
            err.message
                .contains("not ready (AuthenticationFailed): refused"),
            "{err:?}"
        );

        let cluster = ConnectionKey::Cluster {
            name: "prod".into(),
        };
        let c = r.entry(&cluster, "i");
        c.set_namespace_selector(Some(
            Selector::try_from(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some(BTreeMap::from([("team".into(), "a".into())])),
                    ..Default::default()
                },
            )
            .expect("selector"),
        ));
        let err = r.resolve(&cluster, "other").err().expect("not admitted");
        assert!(
            err.message.contains("does not admit namespace other"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn without_a_client_lists_say_why() {
        let c = ConnectionState::new(key("a"), "i".into(), Duration::from_secs(60), metrics());
        c.set_health(Health::new(
            ConnectionReason::CredentialsNotFound,
            "Secret ns/creds does not exist",
        ));
        let err = c.all_clients().await.expect_err("no client");
        let text = err.to_string();
        assert!(
            text.contains("CollibraConnection/ns/a") && text.contains("ns/creds"),
            "{text}"
        );
    }
}

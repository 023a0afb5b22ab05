//! What every reconcile shares: the clients, the caches of each watched
//! scope, metrics and settings. What is kept per object between reconciles
//! is in [`object_state`](super::object_state); which Secret writes are the
//! operator's own, in [`own_writes`](super::own_writes).

use std::{collections::HashMap, sync::Arc, time::Duration};

use collibra_client::CollibraClient;
use futures::channel::mpsc;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::ObjectMeta, jiff::Timestamp};
use kube::{
    Client, ResourceExt,
    runtime::reflector::{ObjectRef, Store},
};

use super::{
    collibra_instance::CollibraInstance,
    decide::{NameClaim, name_owner},
    names::NameIndex,
    object_state::ObjectStates,
    own_writes::{InFlight, OwnWrites},
    relist::ListedFlag,
    secret_cache::SecretCache,
};
use crate::{
    api::{OAuthClient, connection::ConnectionKey},
    connection::{
        connection_of,
        registry::{ConnectionState, Registry},
    },
    events::Recorder,
    metrics::Metrics,
};

/// Asks the controller of a scope to reconcile an object now (kube's
/// `Controller::reconcile_on`). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Wake(mpsc::UnboundedSender<ObjectRef<OAuthClient>>);

impl Wake {
    /// A waker and the stream of what it asks for.
    pub fn channel() -> (Wake, mpsc::UnboundedReceiver<ObjectRef<OAuthClient>>) {
        let (tx, rx) = mpsc::unbounded();
        (Wake(tx), rx)
    }

    /// Asks for `ns/name` now; a controller that stopped hears nothing.
    pub fn now(&self, ns: &str, name: &str) {
        let _ = self.0.unbounded_send(ObjectRef::new(name).within(ns));
    }
}

/// The caches of one watched scope: the whole cluster or one namespace.
#[derive(Clone)]
pub struct Scope {
    /// `None` for all namespaces.
    pub namespace: Option<String>,
    /// OAuthClients in the scope (kube's reflector store; slimmed objects,
    /// see `controller::run::slim`).
    pub oauth_clients: Store<OAuthClient>,
    /// Which OAuthClients of the scope claim each clientName.
    pub names: Arc<NameIndex>,
    /// Secrets in the scope that carry the managed-by label, as metadata
    /// only: their data is read when the metadata cannot tell (see
    /// `secret::settled`).
    pub secrets: Arc<SecretCache>,
    /// Asks the scope's controller to reconcile an object now.
    pub wake: Wake,
    /// The Secret versions this process wrote, whose watch events wake no
    /// reconcile (docs/design.md, "Requests per registration").
    pub own_writes: Arc<OwnWrites>,
    /// Whether the OAuthClient watch has listed once: until then the store
    /// and the clientName index hold only the objects seen so far
    /// (docs/design.md, "After a start").
    pub listed: ListedFlag,
}

impl Scope {
    fn covers(&self, ns: &str) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == ns)
    }

    /// The scope's objects that use `connection`.
    pub fn objects_of(&self, connection: &ConnectionKey) -> Vec<Arc<OAuthClient>> {
        self.oauth_clients
            .state_filter(|o| connection_of(o) == *connection)
    }

    /// The objects of namespace `ns` whose Secret is `secret`.
    pub fn objects_with_secret(&self, ns: &str, secret: &str) -> Vec<Arc<OAuthClient>> {
        self.oauth_clients.state_filter(|o| {
            o.metadata.namespace.as_deref() == Some(ns) && o.secret_name() == secret
        })
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
    /// What is kept per object between reconciles.
    pub objects: Arc<ObjectStates>,
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
        objects: Arc<ObjectStates>,
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
            objects,
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

    /// Whether every scope's OAuthClient watch has listed once: the
    /// complete view that rule 1 (rivals in any scope) and a connection's
    /// users need.
    pub fn all_listed(&self) -> bool {
        self.scopes.iter().all(|s| s.listed.is_set())
    }

    /// Waits until [`Context::all_listed`].
    pub async fn wait_all_listed(&self) {
        wait_listed(&self.scopes).await;
    }

    /// Wakes every object whose clientName another object also claims (in
    /// any scope or connection). Called once every scope has listed after a
    /// start: an object confirmed while the list was arriving was checked
    /// against the rivals seen so far (rule 1), so one with a rival is
    /// checked again against all of them.
    pub fn wake_contested(&self) {
        wake_contested(&self.scopes);
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
                    s.wake.now(&c.claim.namespace, &c.claim.name);
                }
            }
        }
    }
}

/// [`Context::wake_contested`] over `scopes`.
fn wake_contested(scopes: &[Scope]) {
    let mut claims: HashMap<String, usize> = HashMap::new();
    for s in scopes {
        s.names.for_each_name(|name, claimants| {
            *claims.entry(name.to_owned()).or_default() += claimants.len();
        });
    }
    for s in scopes {
        s.names.for_each_name(|name, claimants| {
            if claims.get(name).is_some_and(|n| *n > 1) {
                for c in claimants {
                    s.wake.now(&c.claim.namespace, &c.claim.name);
                }
            }
        });
    }
}

/// Waits until every one of `scopes` has listed its OAuthClients.
pub async fn wait_listed(scopes: &[Scope]) {
    for s in scopes {
        s.listed.wait().await;
    }
}

/// Now, as Kubernetes timestamps want it.
pub fn now() -> Timestamp {
    Timestamp::now()
}

#[cfg(test)]
mod tests {
    use kube::runtime::{reflector, watcher};

    use super::*;

    fn scope(namespace: &str) -> (Scope, mpsc::UnboundedReceiver<ObjectRef<OAuthClient>>) {
        let (wake, woken) = Wake::channel();
        let scope = Scope {
            namespace: Some(namespace.to_owned()),
            oauth_clients: reflector::store().0,
            names: Default::default(),
            secrets: Default::default(),
            wake,
            own_writes: Default::default(),
            listed: ListedFlag::new(true),
        };
        (scope, woken)
    }

    fn claim(scope: &Scope, name: &str, client_name: &str) {
        let mut o = OAuthClient::new(
            name,
            serde_json::from_value(serde_json::json!({ "clientName": client_name })).expect("spec"),
        );
        o.metadata.namespace = scope.namespace.clone();
        o.metadata.uid = Some(format!("uid-{name}"));
        scope.names.apply(&watcher::Event::Apply(o));
    }

    /// What `rx` was asked for so far, sorted.
    fn woken(rx: &mut mpsc::UnboundedReceiver<ObjectRef<OAuthClient>>) -> Vec<String> {
        let mut names = Vec::new();
        while let Ok(r) = rx.try_recv() {
            names.push(format!("{}/{}", r.namespace.unwrap_or_default(), r.name));
        }
        names.sort();
        names
    }

    #[test]
    fn only_objects_with_a_rival_in_any_scope_are_woken() {
        let (a, mut woken_a) = scope("team-a");
        let (b, mut woken_b) = scope("team-b");
        claim(&a, "alone", "etl");
        claim(&a, "first", "billing");
        claim(&a, "second", "billing");
        claim(&a, "here", "shared");
        claim(&b, "there", "shared");
        claim(&b, "single", "reports");
        wake_contested(&[a, b]);
        assert_eq!(
            woken(&mut woken_a),
            ["team-a/first", "team-a/here", "team-a/second"]
        );
        assert_eq!(woken(&mut woken_b), ["team-b/there"]);
    }
}

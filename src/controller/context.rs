//! What every reconcile shares: clients, caches, metrics, and the little
//! state that must outlive one reconcile (capabilities learned from
//! Collibra, credentials not yet written, per-object backoff).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use collibra_client::{ClientInfo, CollibraClient, IssuedClient};
use k8s_openapi::{api::core::v1::Secret, jiff::Timestamp};
use kube::{
    Client, ResourceExt,
    runtime::{
        events::Recorder,
        reflector::{ObjectRef, Store},
    },
};
use rand::Rng;

use super::{
    capability::Capability,
    client_list::{ClientList, Lookup},
    decide::{Listed, NameClaim, name_owner},
    names::NameIndex,
};
use crate::{api::OAuthClient, metrics::Metrics};

/// The stores of one watched scope: the whole cluster or one namespace.
#[derive(Clone)]
pub struct Scope {
    /// `None` for all namespaces.
    pub namespace: Option<String>,
    /// OAuthClients in the scope.
    pub oauth_clients: Store<OAuthClient>,
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
    /// The oldest list a decision to register may rest on.
    pub list_max_age: Duration,
}

/// Shared state of the controller.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Collibra client.
    pub collibra: CollibraClient,
    /// Cached Collibra list.
    pub list: ClientList,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Watched scopes.
    pub scopes: Vec<Scope>,
    /// clientName index of each scope (same order as `scopes`); empty when
    /// none is fed, and then the stores are scanned.
    names: Vec<Arc<NameIndex>>,
    /// Settings.
    pub settings: Settings,
    /// Whether Collibra answers DELETE; forgotten after a resync interval.
    pub delete_supported: Capability,
    /// Whether Collibra answers PUT; forgotten after a resync interval.
    pub update_supported: Capability,
    /// Credentials issued by Collibra whose Secret write failed, by object
    /// uid: written before anything else on the next reconcile.
    unsaved: Mutex<HashMap<String, Arc<IssuedClient>>>,
    /// Consecutive failures by object uid, for backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// After a Collibra failure, no new attempt for this object (at this
    /// generation) before the instant: the operator's own Secret writes
    /// wake a reconcile at once and must not bypass the backoff.
    holds: Mutex<HashMap<String, (Option<i64>, Instant)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
        let delete_supported = Capability::new("delete", settings.resync, metrics.clone());
        let update_supported = Capability::new("update", settings.resync, metrics.clone());
        Context {
            client,
            collibra,
            list: ClientList::new(settings.resync),
            recorder,
            metrics,
            scopes,
            names: Vec::new(),
            settings,
            delete_supported,
            update_supported,
            unsaved: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            holds: Mutex::new(HashMap::new()),
        }
    }

    /// Uses the clientName indexes the watches feed, one per scope in the
    /// order of `scopes`, instead of scanning the stores.
    pub fn with_name_indexes(mut self, names: Vec<Arc<NameIndex>>) -> Self {
        if names.len() == self.scopes.len() {
            self.names = names;
        }
        self
    }

    /// The Collibra list entry for `name`, from the shared cache.
    pub async fn lookup(&self, name: &str) -> Result<Lookup, collibra_client::Error> {
        self.lookup_within(name, self.settings.resync).await
    }

    /// The Collibra list entry for `name` from a list at most
    /// `--list-max-age` old: what a decision to register must rest on, so
    /// that a client created in Collibra shortly before is not POSTed again.
    pub async fn lookup_for_registration(
        &self,
        name: &str,
    ) -> Result<Lookup, collibra_client::Error> {
        self.lookup_within(name, self.settings.list_max_age).await
    }

    async fn lookup_within(
        &self,
        name: &str,
        max_age: Duration,
    ) -> Result<Lookup, collibra_client::Error> {
        self.list
            .lookup_within(name, max_age, || async {
                let clients = self.collibra.list_clients().await?;
                Ok(clients
                    .into_iter()
                    .map(|c| (c.client_name.clone(), listed(&c)))
                    .collect())
            })
            .await
    }

    /// The managed Secret `ns/name` as last seen by the watch.
    pub fn cached_secret(&self, ns: &str, name: &str) -> Option<Arc<Secret>> {
        let key = ObjectRef::new(name).within(ns);
        self.scopes
            .iter()
            .find(|s| s.covers(ns))
            .and_then(|s| s.secrets.get(&key))
    }

    /// The object that keeps `obj`'s clientName when several claim it: the
    /// oldest live one. `None` when `obj` itself does.
    pub fn name_winner(&self, obj: &OAuthClient) -> Option<NameClaim> {
        let name = &obj.spec.client_name;
        let claim = |o: &OAuthClient| NameClaim {
            created: o.metadata.creation_timestamp.as_ref().map(|t| t.0),
            namespace: o.namespace().unwrap_or_default(),
            name: o.name_any(),
        };
        let mut claims: Vec<NameClaim> = if self.names.is_empty() {
            self.scopes
                .iter()
                .flat_map(|s| {
                    s.oauth_clients.state_filter(|o| {
                        &o.spec.client_name == name && o.metadata.deletion_timestamp.is_none()
                    })
                })
                .filter(|o| o.metadata.uid != obj.metadata.uid)
                .map(|o| claim(&o))
                .collect()
        } else {
            self.names
                .iter()
                .flat_map(|i| i.claimants(name))
                .filter(|c| !c.deleting && c.uid != obj.metadata.uid)
                .map(|c| c.claim)
                .collect()
        };
        if claims.is_empty() {
            return None;
        }
        let me = claim(obj);
        claims.push(me.clone());
        name_owner(&claims).filter(|w| **w != me).cloned()
    }

    /// Wakes the other objects that claim `obj`'s clientName (after `obj`
    /// is gone, the oldest of them takes the name over at once).
    pub fn wake_name_claimants(&self, obj: &OAuthClient) {
        let name = &obj.spec.client_name;
        if !self.names.is_empty() {
            for (s, i) in self.scopes.iter().zip(&self.names) {
                for c in i.claimants(name) {
                    if c.uid != obj.metadata.uid {
                        let r = ObjectRef::new(&c.claim.name).within(&c.claim.namespace);
                        let _ = s.wake.unbounded_send(r);
                    }
                }
            }
            return;
        }
        for s in &self.scopes {
            for o in s
                .oauth_clients
                .state_filter(|o| &o.spec.client_name == name && o.metadata.uid != obj.metadata.uid)
            {
                let _ = s.wake.unbounded_send(ObjectRef::from(o.as_ref()));
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

    /// Counts a failure of `uid` and returns how long to wait before the
    /// next try: capped exponential backoff with jitter, at least `floor`.
    pub fn backoff(&self, uid: &str, floor: Option<Duration>) -> Duration {
        let n = {
            let mut f = lock(&self.failures);
            let n = f.entry(uid.to_owned()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let exp =
            Duration::from_secs(1u64 << n.min(9).saturating_sub(1)).min(Duration::from_secs(300));
        let jittered = exp.mul_f64(rand::rng().random_range(0.8..1.2));
        floor.map_or(jittered, |f| jittered.max(f))
    }

    /// Forgets failures of `uid` after a success.
    pub fn reset_backoff(&self, uid: &str) {
        lock(&self.failures).remove(uid);
        lock(&self.holds).remove(uid);
    }

    /// Holds further attempts on `uid` at `generation` for `delay`.
    pub fn hold(&self, uid: &str, generation: Option<i64>, delay: Duration) {
        lock(&self.holds).insert(uid.to_owned(), (generation, Instant::now() + delay));
    }

    /// The time left on a hold of `uid`, if it still applies to `generation`.
    pub fn held(&self, uid: &str, generation: Option<i64>) -> Option<Duration> {
        let holds = lock(&self.holds);
        let (g, until) = holds.get(uid)?;
        (*g == generation)
            .then(|| until.checked_duration_since(Instant::now()))
            .flatten()
    }

    /// Forgets everything about `uid` (the object is gone).
    pub fn forget(&self, uid: &str) {
        self.reset_backoff(uid);
        lock(&self.unsaved).remove(uid);
        self.metrics.forget(uid);
    }
}

/// A list entry in the decision table's terms.
pub fn listed(c: &ClientInfo) -> Listed {
    Listed {
        client_id: c.client_id.clone(),
        issued_at: c.client_id_issued_at,
        grant_types: c.grant_types.clone(),
    }
}

/// Now, as Kubernetes timestamps want it.
pub fn now() -> Timestamp {
    Timestamp::now()
}

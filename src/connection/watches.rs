//! The Secrets and ConfigMaps connections read, watched by name and
//! metadata only, so that a changed credential is used at once and a
//! healthy connection reads nothing from the API server between checks
//! (docs/design.md, "Connections": `watches.rs`).
//!
//! One watch per object (namespace, kind, name) however many connections
//! read it: started when the first connection names it, stopped when the
//! last one no longer does (deleted, or its spec names another object).
//! Each watch selects its object with `metadata.name=<name>` in its
//! namespace: it never lists or sees any other object, and never its data.
//!
//! A watch event whose version differs from the one a connection last used
//! (a deletion included) wakes that connection's reconcile. While a watch is
//! synced, the reconcile takes the object's version from it instead of
//! reading the metadata by name.

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
    sync::{Arc, Mutex, Weak},
};

use futures::{StreamExt, channel::mpsc::UnboundedSender};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client, Resource,
    api::PartialObjectMeta,
    runtime::{WatchStreamExt, reflector::ObjectRef, watcher},
};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::api::connection::{ClusterCollibraConnection, CollibraConnection, ConnectionKey};

/// uid and resourceVersion of an object: which version of it was read.
pub type Version = (Option<String>, Option<String>);

/// Which kind of object a connection reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A Secret (credentials, or a CA bundle).
    Secret,
    /// A ConfigMap (a CA bundle).
    ConfigMap,
}

/// One object a connection reads, by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Watched {
    /// Its namespace.
    pub namespace: String,
    /// Secret or ConfigMap.
    pub kind: Kind,
    /// Its name.
    pub name: String,
}

impl Watched {
    /// A Secret `namespace/name`.
    pub fn secret(namespace: &str, name: &str) -> Watched {
        Watched {
            namespace: namespace.to_owned(),
            kind: Kind::Secret,
            name: name.to_owned(),
        }
    }

    /// A ConfigMap `namespace/name`.
    pub fn config_map(namespace: &str, name: &str) -> Watched {
        Watched {
            namespace: namespace.to_owned(),
            kind: Kind::ConfigMap,
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
        };
        write!(f, "{kind} {}/{}", self.namespace, self.name)
    }
}

/// What a watch (or a read by name) found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The object exists, at this uid and resourceVersion.
    Present(Version),
    /// There is no such object.
    Absent,
}

impl Seen {
    /// From an object's metadata, if one was found.
    pub fn of(meta: Option<&kube::api::ObjectMeta>) -> Seen {
        meta.map_or(Seen::Absent, |m| {
            Seen::Present((m.uid.clone(), m.resource_version.clone()))
        })
    }
}

/// The watch of one object in the table: who reads it, what each last
/// used, and what the watch shows.
struct Entry<G> {
    /// Tells a stopped watch's late events from a newer watch's.
    id: u64,
    /// Each connection that reads it, with the version it last used
    /// (`None` until its reconcile recorded one).
    users: HashMap<ConnectionKey, Option<Seen>>,
    /// What the watch shows; `None` until it has listed the object, and
    /// again while it fails.
    seen: Option<Seen>,
    /// Stops the watch when dropped.
    _guard: Option<G>,
}

/// The reference counting, without the watches themselves: which objects
/// are watched for which connections, and which connections an event wakes.
/// `G` stops a watch when dropped.
pub struct Table<G> {
    objects: HashMap<Watched, Entry<G>>,
    by_connection: HashMap<ConnectionKey, BTreeSet<Watched>>,
    next_id: u64,
}

impl<G> Default for Table<G> {
    fn default() -> Self {
        Table {
            objects: HashMap::new(),
            by_connection: HashMap::new(),
            next_id: 0,
        }
    }
}

/// What [`Table::track`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Objects nobody read before: start a watch for each, with its id.
    pub started: Vec<(Watched, u64)>,
    /// Objects nobody reads any more: their watches were stopped.
    pub stopped: Vec<Watched>,
}

impl<G> Table<G> {
    /// `conn` now reads exactly `wanted`: references it dropped are
    /// released (the last one stops the watch), new ones are added (the
    /// first one asks for a watch).
    pub fn track(&mut self, conn: &ConnectionKey, wanted: &[Watched]) -> Changes {
        let wanted: BTreeSet<Watched> = wanted.iter().cloned().collect();
        let before = if wanted.is_empty() {
            self.by_connection.remove(conn).unwrap_or_default()
        } else {
            self.by_connection
                .insert(conn.clone(), wanted.clone())
                .unwrap_or_default()
        };
        let mut changes = Changes::default();
        for gone in before.difference(&wanted) {
            if let Some(entry) = self.objects.get_mut(gone) {
                entry.users.remove(conn);
                if entry.users.is_empty() {
                    // Dropping the entry drops its guard: the watch stops.
                    self.objects.remove(gone);
                    changes.stopped.push(gone.clone());
                }
            }
        }
        for new in wanted.difference(&before) {
            let entry = self.objects.entry(new.clone()).or_insert_with(|| {
                self.next_id += 1;
                changes.started.push((new.clone(), self.next_id));
                Entry {
                    id: self.next_id,
                    users: HashMap::new(),
                    seen: None,
                    _guard: None,
                }
            });
            entry.users.insert(conn.clone(), None);
        }
        changes
    }

    /// Keeps `guard` with the watch `id` of `what`; dropped (the watch
    /// stopped) at once if that watch was stopped meanwhile.
    pub fn attach(&mut self, what: &Watched, id: u64, guard: G) {
        if let Some(entry) = self.objects.get_mut(what).filter(|e| e.id == id) {
            entry._guard = Some(guard);
        }
    }

    /// What the watch of `what` shows, once it has listed the object.
    pub fn seen(&self, what: &Watched) -> Option<Seen> {
        self.objects.get(what).and_then(|e| e.seen.clone())
    }

    /// Records that `conn` used `seen` of `what`. True when the watch
    /// already shows something else (it changed while `conn` read it):
    /// `conn` is to be checked again.
    pub fn used(&mut self, conn: &ConnectionKey, what: &Watched, seen: Seen) -> bool {
        let Some(entry) = self.objects.get_mut(what) else {
            return false;
        };
        let Some(used) = entry.users.get_mut(conn) else {
            return false;
        };
        let stale = entry.seen.as_ref().is_some_and(|s| *s != seen);
        *used = Some(seen);
        stale
    }

    /// The watch `id` of `what` shows `seen` (`None`: it failed and shows
    /// nothing reliable). Returns the connections that last used another
    /// version, to be checked again.
    pub fn observe(&mut self, what: &Watched, id: u64, seen: Option<Seen>) -> Vec<ConnectionKey> {
        let Some(entry) = self.objects.get_mut(what).filter(|e| e.id == id) else {
            return Vec::new();
        };
        entry.seen = seen.clone();
        let Some(seen) = seen else {
            return Vec::new();
        };
        let mut wake: Vec<ConnectionKey> = entry
            .users
            .iter()
            .filter(|(_, used)| used.as_ref().is_some_and(|u| *u != seen))
            .map(|(k, _)| k.clone())
            .collect();
        wake.sort();
        wake
    }

    /// The objects watched now, sorted.
    pub fn watched(&self) -> Vec<Watched> {
        let mut all: Vec<Watched> = self.objects.keys().cloned().collect();
        all.sort();
        all
    }

    /// How many connections read `what`.
    pub fn users(&self, what: &Watched) -> usize {
        self.objects.get(what).map_or(0, |e| e.users.len())
    }

    /// Stops every watch.
    pub fn clear(&mut self) {
        self.objects.clear();
        self.by_connection.clear();
    }
}

/// Where a woken connection's reconcile is asked for: one channel per
/// CollibraConnection controller (by the namespace it watches, `None` for
/// all) and one for ClusterCollibraConnections.
#[derive(Default)]
struct Wakers {
    namespaced: Vec<(
        Option<String>,
        UnboundedSender<ObjectRef<CollibraConnection>>,
    )>,
    cluster: Option<UnboundedSender<ObjectRef<ClusterCollibraConnection>>>,
}

impl Wakers {
    fn wake(&self, keys: &[ConnectionKey]) {
        for key in keys {
            match key {
                ConnectionKey::Namespaced { namespace, name } => {
                    let to = self
                        .namespaced
                        .iter()
                        .find(|(ns, _)| ns.as_deref() == Some(namespace.as_str()))
                        .or_else(|| self.namespaced.iter().find(|(ns, _)| ns.is_none()));
                    if let Some((_, tx)) = to {
                        let _ = tx.unbounded_send(ObjectRef::new(name).within(namespace));
                    }
                }
                ConnectionKey::Cluster { name } => {
                    if let Some(tx) = &self.cluster {
                        let _ = tx.unbounded_send(ObjectRef::new(name));
                    }
                }
                ConnectionKey::Default => {}
            }
        }
    }
}

/// Aborts a watch's task when dropped.
struct Abort(tokio::task::AbortHandle);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Inner {
    table: Table<Abort>,
    wakers: Wakers,
}

/// The watches of every object the connections read (part of the
/// connection [`Registry`](super::registry::Registry)).
pub struct Watches {
    inner: Arc<Mutex<Inner>>,
}

impl Default for Watches {
    fn default() -> Self {
        Watches {
            inner: Arc::new(Mutex::new(Inner {
                table: Table::default(),
                wakers: Wakers::default(),
            })),
        }
    }
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Watches {
    /// Wakes CollibraConnections of `namespace` (`None`: any) through `tx`.
    pub fn wake_namespaced(
        &self,
        namespace: Option<String>,
        tx: UnboundedSender<ObjectRef<CollibraConnection>>,
    ) {
        lock(&self.inner).wakers.namespaced.push((namespace, tx));
    }

    /// Wakes ClusterCollibraConnections through `tx`.
    pub fn wake_cluster(&self, tx: UnboundedSender<ObjectRef<ClusterCollibraConnection>>) {
        lock(&self.inner).wakers.cluster = Some(tx);
    }

    /// `conn` now reads exactly `wanted`: watches start and stop to match.
    /// Must run inside the Tokio runtime (it spawns the new watches).
    pub fn track(&self, client: &Client, conn: &ConnectionKey, wanted: &[Watched]) {
        let mut inner = lock(&self.inner);
        let changes = inner.table.track(conn, wanted);
        for what in &changes.stopped {
            debug!(object = %what, "no connection reads it any more; watch stopped");
        }
        for (what, id) in changes.started {
            debug!(object = %what, connection = %conn, "watching it (metadata only, by name)");
            let task = tokio::spawn(watch(
                client.clone(),
                what.clone(),
                id,
                Arc::downgrade(&self.inner),
            ));
            inner.table.attach(&what, id, Abort(task.abort_handle()));
        }
    }

    /// `conn` reads nothing any more (it was deleted).
    pub fn forget(&self, conn: &ConnectionKey) {
        let mut inner = lock(&self.inner);
        for what in inner.table.track(conn, &[]).stopped {
            debug!(object = %what, "no connection reads it any more; watch stopped");
        }
    }

    /// What the watch of `what` shows, once it has listed the object.
    pub fn seen(&self, what: &Watched) -> Option<Seen> {
        lock(&self.inner).table.seen(what)
    }

    /// Records that `conn` used `seen` of `what`, and wakes `conn` again if
    /// the watch already shows something else.
    pub fn used(&self, conn: &ConnectionKey, what: &Watched, seen: Seen) {
        let mut inner = lock(&self.inner);
        if inner.table.used(conn, what, seen) {
            debug!(object = %what, connection = %conn, "changed while it was read; checking again");
            inner.wakers.wake(std::slice::from_ref(conn));
        }
    }

    /// Stops every watch (the controllers stopped).
    pub fn clear(&self) {
        lock(&self.inner).table.clear();
    }

    /// The objects watched now, sorted.
    pub fn watched(&self) -> Vec<Watched> {
        lock(&self.inner).table.watched()
    }

    fn observe(inner: &Mutex<Inner>, what: &Watched, id: u64, seen: Option<Seen>) {
        let mut inner = lock(inner);
        let wake = inner.table.observe(what, id, seen);
        for conn in &wake {
            info!(object = %what, connection = %conn, "changed; checking the connection again");
        }
        inner.wakers.wake(&wake);
    }
}

/// Runs the watch `id` of `what` until it is aborted or the registry is gone.
async fn watch(client: Client, what: Watched, id: u64, inner: Weak<Mutex<Inner>>) {
    match what.kind {
        Kind::Secret => {
            let api: Api<PartialObjectMeta<Secret>> = Api::namespaced(client, &what.namespace);
            watch_kind(api, &what, id, inner).await;
        }
        Kind::ConfigMap => {
            let api: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client, &what.namespace);
            watch_kind(api, &what, id, inner).await;
        }
    }
}

async fn watch_kind<K>(
    api: Api<PartialObjectMeta<K>>,
    what: &Watched,
    id: u64,
    inner: Weak<Mutex<Inner>>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
{
    // `Api<PartialObjectMeta<_>>` lists and watches metadata only; the
    // field selector keeps the watch to this one object.
    let config = watcher::Config::default().fields(&format!("metadata.name={}", what.name));
    let mut events = watcher(api, config).default_backoff().boxed();
    // While the watch (re)lists: what the list showed so far.
    let mut listing: Option<Option<Seen>> = None;
    let mut failing = false;
    while let Some(event) = events.next().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let seen = match event {
            Ok(watcher::Event::Init) => {
                listing = Some(None);
                continue;
            }
            Ok(watcher::Event::InitApply(m)) => {
                listing = Some(Some(Seen::of(Some(&m.metadata))));
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                if failing {
                    info!(object = %what, "watch works again");
                    failing = false;
                }
                listing.take().flatten().unwrap_or(Seen::Absent)
            }
            Ok(watcher::Event::Apply(m)) => Seen::of(Some(&m.metadata)),
            Ok(watcher::Event::Delete(_)) => Seen::Absent,
            Err(e) => {
                // Until it works again the reconciles read by name, and the
                // re-check timer is what notices a change.
                if failing {
                    debug!(object = %what, error = %e, "watch still failing");
                } else {
                    warn!(object = %what, error = %e, "cannot watch it (check the operator's RBAC: list and watch by name); re-reading it on the timer until this works");
                    failing = true;
                }
                Watches::observe(&inner, what, id, None);
                continue;
            }
        };
        Watches::observe(&inner, what, id, Some(seen));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn conn(name: &str) -> ConnectionKey {
        ConnectionKey::Namespaced {
            namespace: "team".into(),
            name: name.into(),
        }
    }

    fn version(rv: &str) -> Seen {
        Seen::Present((Some("uid".into()), Some(rv.into())))
    }

    /// Counts how many watches were stopped (guards dropped).
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Tracks like `Watches::track`, attaching a counted guard to each start.
    fn track(
        t: &mut Table<Counted>,
        stopped: &Arc<AtomicUsize>,
        c: &ConnectionKey,
        wanted: &[Watched],
    ) -> Changes {
        let changes = t.track(c, wanted);
        for (w, id) in &changes.started {
            t.attach(w, *id, Counted(stopped.clone()));
        }
        changes
    }

    #[test]
    fn first_reference_starts_a_watch_and_others_share_it() {
        let stopped = Arc::new(AtomicUsize::new(0));
        let mut t = Table::default();
        let creds = Watched::secret("team", "creds");
        let a = track(&mut t, &stopped, &conn("a"), std::slice::from_ref(&creds));
        assert_eq!(a.started.len(), 1);
        assert_eq!(a.started[0].0, creds);
        assert!(a.stopped.is_empty());
        let b = track(&mut t, &stopped, &conn("b"), std::slice::from_ref(&creds));
        assert_eq!(b, Changes::default(), "the second reader shares the watch");
        // Tracking the same again changes nothing either.
        assert_eq!(
            track(&mut t, &stopped, &conn("a"), std::slice::from_ref(&creds)),
            Changes::default()
        );
        assert_eq!(t.watched(), std::slice::from_ref(&creds));
        assert_eq!(t.users(&creds), 2);
        assert_eq!(stopped.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_last_reference_gone_stops_the_watch() {
        let stopped = Arc::new(AtomicUsize::new(0));
        let mut t = Table::default();
        let creds = Watched::secret("team", "creds");
        track(&mut t, &stopped, &conn("a"), std::slice::from_ref(&creds));
        track(&mut t, &stopped, &conn("b"), std::slice::from_ref(&creds));
        let a_gone = track(&mut t, &stopped, &conn("a"), &[]);
        assert_eq!(a_gone, Changes::default(), "b still reads it");
        assert_eq!(stopped.load(Ordering::SeqCst), 0);
        assert_eq!(t.users(&creds), 1);
        let b_gone = track(&mut t, &stopped, &conn("b"), &[]);
        assert_eq!(b_gone.stopped, std::slice::from_ref(&creds));
        assert_eq!(stopped.load(Ordering::SeqCst), 1, "the guard was dropped");
        assert!(t.watched().is_empty());
        // Forgetting a connection that reads nothing is harmless.
        assert_eq!(track(&mut t, &stopped, &conn("b"), &[]), Changes::default());
    }

    #[test]
    fn a_reference_moved_to_another_secret_moves_the_watch() {
        let stopped = Arc::new(AtomicUsize::new(0));
        let mut t = Table::default();
        let old = Watched::secret("team", "old");
        let new = Watched::secret("team", "new");
        let ca = Watched::config_map("team", "ca");
        track(&mut t, &stopped, &conn("a"), &[old.clone(), ca.clone()]);
        let moved = track(&mut t, &stopped, &conn("a"), &[new.clone(), ca.clone()]);
        assert_eq!(moved.stopped, std::slice::from_ref(&old));
        assert_eq!(
            moved.started.iter().map(|(w, _)| w).collect::<Vec<_>>(),
            [&new]
        );
        assert_eq!(stopped.load(Ordering::SeqCst), 1);
        assert_eq!(t.watched(), [new.clone(), ca.clone()]);
        // A Secret and a ConfigMap of the same name are two objects.
        let same_name = Watched::config_map("team", "new");
        let c = track(
            &mut t,
            &stopped,
            &conn("b"),
            std::slice::from_ref(&same_name),
        );
        assert_eq!(c.started.len(), 1);
        assert_eq!(t.watched().len(), 3);
    }

    #[test]
    fn a_late_event_of_a_stopped_watch_is_ignored() {
        let stopped = Arc::new(AtomicUsize::new(0));
        let mut t = Table::default();
        let creds = Watched::secret("team", "creds");
        let first = track(&mut t, &stopped, &conn("a"), std::slice::from_ref(&creds)).started[0].1;
        track(&mut t, &stopped, &conn("a"), &[]);
        let second = track(&mut t, &stopped, &conn("a"), std::slice::from_ref(&creds)).started[0].1;
        assert_ne!(first, second);
        t.used(&conn("a"), &creds, version("1"));
        assert!(t.observe(&creds, first, Some(version("9"))).is_empty());
        assert_eq!(t.seen(&creds), None);
        assert_eq!(t.observe(&creds, second, Some(version("2"))), [conn("a")]);
        // A guard attached to a stopped watch is dropped at once.
        t.attach(&creds, first, Counted(stopped.clone()));
        assert_eq!(stopped.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn events_wake_the_readers_of_another_version_only() {
        let mut t: Table<()> = Table::default();
        let creds = Watched::secret("team", "creds");
        let id = t.track(&conn("a"), std::slice::from_ref(&creds)).started[0].1;
        t.track(&conn("b"), std::slice::from_ref(&creds));
        t.track(&conn("c"), std::slice::from_ref(&creds));
        assert!(!t.used(&conn("a"), &creds, version("1")));
        assert!(!t.used(&conn("b"), &creds, version("1")));
        // c has not recorded a version yet: its reconcile is under way.
        // The watch lists what a and b used: nobody is woken.
        assert!(t.observe(&creds, id, Some(version("1"))).is_empty());
        assert_eq!(t.seen(&creds), Some(version("1")));
        // c read an older version than the watch shows: c again.
        assert!(t.used(&conn("c"), &creds, version("0")));
        assert!(!t.used(&conn("c"), &creds, version("1")));
        // Changed: everyone.
        assert_eq!(
            t.observe(&creds, id, Some(version("2"))),
            [conn("a"), conn("b"), conn("c")]
        );
        t.used(&conn("a"), &creds, version("2"));
        // The same version again (a relist): only those still behind.
        assert_eq!(
            t.observe(&creds, id, Some(version("2"))),
            [conn("b"), conn("c")]
        );
        // A failing watch shows nothing and wakes nobody.
        assert!(t.observe(&creds, id, None).is_empty());
        assert_eq!(t.seen(&creds), None);
        // Deleted: whoever used it.
        for c in ["a", "b", "c"] {
            t.used(&conn(c), &creds, version("2"));
        }
        assert_eq!(
            t.observe(&creds, id, Some(Seen::Absent)),
            [conn("a"), conn("b"), conn("c")]
        );
        // Created again, when it was missing: whoever found it missing.
        t.used(&conn("a"), &creds, Seen::Absent);
        assert_eq!(
            t.observe(&creds, id, Some(version("3"))),
            [conn("a"), conn("b"), conn("c")]
        );
        // A version for an object the connection does not read is ignored.
        assert!(!t.used(&conn("a"), &Watched::secret("team", "other"), version("1")));
    }

    #[test]
    fn wakers_route_by_namespace_and_kind() {
        let (all_tx, mut all_rx) = futures::channel::mpsc::unbounded();
        let (team_tx, mut team_rx) = futures::channel::mpsc::unbounded();
        let (cluster_tx, mut cluster_rx) = futures::channel::mpsc::unbounded();
        let w = Wakers {
            namespaced: vec![(None, all_tx), (Some("team".into()), team_tx)],
            cluster: Some(cluster_tx),
        };
        w.wake(&[
            conn("a"),
            ConnectionKey::Namespaced {
                namespace: "other".into(),
                name: "b".into(),
            },
            ConnectionKey::Cluster { name: "c".into() },
            ConnectionKey::Default,
        ]);
        let team = team_rx.try_recv().expect("team's controller");
        assert_eq!(
            (team.name.as_str(), team.namespace.as_deref()),
            ("a", Some("team"))
        );
        let all = all_rx.try_recv().expect("the all-namespaces controller");
        assert_eq!(
            (all.name.as_str(), all.namespace.as_deref()),
            ("b", Some("other"))
        );
        let cluster = cluster_rx.try_recv().expect("cluster controller");
        assert_eq!(cluster.name, "c");
        assert!(team_rx.try_recv().is_err() && all_rx.try_recv().is_err());
    }
}

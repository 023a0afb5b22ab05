//! The OAuthClients of one watched scope as the watch last showed them,
//! kept compact, and which watch events wake a reconcile.
//!
//! kube-runtime's typed store keeps each object as the full struct (an
//! `ObjectMeta` alone is 360 bytes before any string it points to, three
//! conditions another 400) under a key holding four more strings: about
//! 2 KiB per object at 10,000. A reconcile needs the whole object, but only
//! one at a time, and the other readers (connections counting their
//! clients, the Secret-to-owner mapping) need two fields. So each object is
//! kept as its JSON (the slimmed object, see `controller::slim`), LZ4
//! compressed against a dictionary of the keys and words every object
//! repeats, with those two fields beside it, and parsed when a reconcile
//! takes it (docs/design.md, "Memory").
//!
//! The cache also decides which events wake a reconcile, as kube-runtime's
//! predicates did: a new object, or a change of its generation (which
//! deletion also bumps), its annotations or its finalizers. The operator's
//! own status writes wake nothing. Objects of a (re)list wake once the list
//! is complete, when the cache holds them.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::{
        Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicBool, Ordering},
    },
};

use kube::{ResourceExt, runtime::watcher};
use serde::Deserialize;

use super::runtime::Key;
use crate::{
    api::{OAuthClient, connection::ConnectionKey},
    connection::connection_of,
};

/// Objects by namespace, then by name.
type Map = HashMap<Box<str>, HashMap<Box<str>, Entry>>;

/// What is kept of one object.
struct Entry {
    /// Its connection; `None` for the default instance.
    connection: Option<Box<ConnectionKey>>,
    /// `spec.secretName` when set; `None`: the object's name.
    secret_name: Option<Box<str>>,
    /// The hash of what wakes a reconcile when it changes ([`wake_hash`]).
    wake: u64,
    /// The object as JSON, compressed ([`pack`]).
    packed: Box<[u8]>,
}

/// What every object's JSON repeats, for the compression to refer to: an
/// object with the keys in the order they are written and the words the
/// operator writes. A converged 1,163-byte object packs into 266 bytes with
/// it, 624 without (the test below).
const DICTIONARY: &[u8] = br#"{"apiVersion":"oauth.collibra.dev/v1alpha1","kind":"OAuthClient","metadata":{"annotations":{"oauth.collibra.dev/rotate":"","oauth.collibra.dev/reconcile-requested-at":""},"creationTimestamp":"2026-01-01T00:00:00Z","deletionTimestamp":"","finalizers":["oauth.collibra.dev/finalizer"],"generation":1,"name":"","namespace":"","resourceVersion":"","uid":""},"spec":{"clientName":"","grantTypes":["client_credentials"],"secretName":"","deletionPolicy":"Delete","replacementPolicy":"Manual","connectionRef":{"kind":"CollibraConnection","name":""}},"status":{"clientId":"","clientIdIssuedAt":"2026-01-01T00:00:00Z","secretName":"","grantTypes":["client_credentials"],"lastRotation":"","credentialsIssuedAt":"2026-01-01T00:00:00Z","observedGeneration":1,"conditions":[{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"client registered; credentials in Secret ","observedGeneration":1,"reason":"Registered","status":"True","type":"Ready"},{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"","observedGeneration":1,"reason":"Idle","status":"False","type":"Reconciling"},{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"","observedGeneration":1,"reason":"Progressing","status":"False","type":"Stalled"}]}}"#;

/// `json` compressed, its length in front.
fn pack(json: &[u8]) -> Box<[u8]> {
    lz4_flex::block::compress_prepend_size_with_dict(json, DICTIONARY).into_boxed_slice()
}

/// The JSON [`pack`] compressed.
fn unpack(packed: &[u8]) -> Option<Vec<u8>> {
    match lz4_flex::block::decompress_size_prepended_with_dict(packed, DICTIONARY) {
        Ok(json) => Some(json),
        Err(e) => {
            tracing::error!(error = %e, "cannot unpack a cached OAuthClient");
            None
        }
    }
}

impl Entry {
    fn of(o: &OAuthClient) -> Option<Entry> {
        let json = match serde_json::to_vec(o) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(object = %o.name_any(), error = %e, "cannot cache an OAuthClient");
                return None;
            }
        };
        let connection = match connection_of(o) {
            ConnectionKey::Default => None,
            other => Some(Box::new(other)),
        };
        Some(Entry {
            connection,
            secret_name: o.spec.secret_name.as_deref().map(Into::into),
            wake: wake_hash(o),
            packed: pack(&json),
        })
    }

    fn is_of(&self, key: &ConnectionKey) -> bool {
        match &self.connection {
            None => *key == ConnectionKey::Default,
            Some(c) => **c == *key,
        }
    }
}

/// What wakes a reconcile when it changes: the uid (an object deleted and
/// created again under its name), the generation, the annotations the
/// cache keeps and the finalizers.
fn wake_hash(o: &OAuthClient) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    o.metadata.uid.hash(&mut h);
    o.metadata.generation.hash(&mut h);
    o.metadata.annotations.hash(&mut h);
    o.metadata.finalizers.hash(&mut h);
    h.finish()
}

#[derive(Default)]
struct State {
    live: Map,
    /// Built during a (re)list; replaces `live` when the list is complete.
    listing: Option<Map>,
    /// Objects of the list in progress that wake a reconcile at its end.
    woken_by_listing: Vec<Key>,
}

/// The OAuthClients of one watched scope (see the module).
#[derive(Default)]
pub struct ObjectCache {
    state: RwLock<State>,
    synced: AtomicBool,
}

fn names(o: &OAuthClient) -> Option<(String, String)> {
    Some((o.metadata.namespace.clone()?, o.metadata.name.clone()?))
}

/// Inserts `o`; whether that wakes it, judged against `previous`.
fn insert(map: &mut Map, previous: Option<&Map>, o: &OAuthClient) -> Option<Key> {
    let (ns, name) = names(o)?;
    let entry = Entry::of(o)?;
    let before = previous
        .unwrap_or(map)
        .get(ns.as_str())
        .and_then(|m| m.get(name.as_str()))
        .map(|e| e.wake);
    let wakes = before != Some(entry.wake);
    map.entry(ns.as_str().into())
        .or_default()
        .insert(name.as_str().into(), entry);
    wakes.then(|| Key::new(&ns, &name))
}

fn remove(map: &mut Map, o: &OAuthClient) {
    let Some((ns, name)) = names(o) else {
        return;
    };
    if let Some(m) = map.get_mut(ns.as_str()) {
        m.remove(name.as_str());
        if m.is_empty() {
            map.remove(ns.as_str());
        }
    }
}

/// The entries of `map` (namespace, name, entry) that use `connection`.
fn of_connection<'a>(
    map: &'a Map,
    connection: &'a ConnectionKey,
) -> impl Iterator<Item = (&'a str, &'a str, &'a Entry)> {
    map.iter()
        .flat_map(|(ns, m)| m.iter().map(move |(name, e)| (&**ns, &**name, e)))
        .filter(move |(_, _, e)| e.is_of(connection))
}

/// The two fields [`ObjectCache::claims_of`] reads, parsed without the rest.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimView {
    spec: ClaimSpec,
    #[serde(default)]
    status: Option<ClaimStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimSpec {
    client_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimStatus {
    #[serde(default)]
    client_id: Option<String>,
}

impl ObjectCache {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes one watch event; returns the objects it wakes.
    pub fn apply(&self, event: &watcher::Event<OAuthClient>) -> Vec<Key> {
        let mut guard = self.write();
        let state = &mut *guard;
        match event {
            watcher::Event::Apply(o) => insert(&mut state.live, None, o).into_iter().collect(),
            watcher::Event::Delete(o) => {
                remove(&mut state.live, o);
                Vec::new()
            }
            watcher::Event::Init => {
                state.listing = Some(Map::default());
                state.woken_by_listing.clear();
                Vec::new()
            }
            watcher::Event::InitApply(o) => {
                let listing = state.listing.get_or_insert_default();
                if let Some(k) = insert(listing, Some(&state.live), o) {
                    state.woken_by_listing.push(k);
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                if let Some(listing) = state.listing.take() {
                    state.live = listing;
                }
                self.synced.store(true, Ordering::Release);
                std::mem::take(&mut state.woken_by_listing)
            }
        }
    }

    /// Whether the watch has listed once.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The object `ns/name`, parsed.
    pub fn get(&self, ns: &str, name: &str) -> Option<Arc<OAuthClient>> {
        let state = self.read();
        let json = unpack(&state.live.get(ns)?.get(name)?.packed)?;
        drop(state);
        match serde_json::from_slice(&json) {
            Ok(o) => Some(Arc::new(o)),
            Err(e) => {
                tracing::error!(namespace = ns, object = name, error = %e, "cannot read a cached OAuthClient");
                None
            }
        }
    }

    /// The objects that use `connection`, parsed.
    pub fn objects_of(&self, connection: &ConnectionKey) -> Vec<Arc<OAuthClient>> {
        let state = self.read();
        of_connection(&state.live, connection)
            .filter_map(|(_, _, e)| unpack(&e.packed))
            .filter_map(|json| serde_json::from_slice(&json).ok().map(Arc::new))
            .collect()
    }

    /// The objects that use `connection`, by key.
    pub fn keys_of(&self, connection: &ConnectionKey) -> Vec<Key> {
        let state = self.read();
        of_connection(&state.live, connection)
            .map(|(ns, name, _)| Key::new(ns, name))
            .collect()
    }

    /// The clientName and the client id in status of each object that uses
    /// `connection`; parses only those two fields.
    pub fn claims_of(&self, connection: &ConnectionKey) -> Vec<(String, Option<String>)> {
        let state = self.read();
        of_connection(&state.live, connection)
            .filter_map(|(_, _, e)| unpack(&e.packed))
            .filter_map(|json| serde_json::from_slice::<ClaimView>(&json).ok())
            .map(|v| (v.spec.client_name, v.status.and_then(|s| s.client_id)))
            .collect()
    }

    /// The objects of namespace `ns` whose Secret is `secret`.
    pub fn keys_with_secret(&self, ns: &str, secret: &str) -> Vec<Key> {
        let state = self.read();
        state
            .live
            .get(ns)
            .map(|m| {
                m.iter()
                    .filter(|(name, e)| e.secret_name.as_deref().unwrap_or(name) == secret)
                    .map(|(name, _)| Key::new(ns, name))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.read().live.values().map(HashMap::len).sum()
    }

    /// Whether no object is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(ns: &str, name: &str) -> OAuthClient {
        let mut o: OAuthClient = serde_json::from_value(serde_json::json!({
            "apiVersion": "oauth.collibra.dev/v1alpha1", "kind": "OAuthClient",
            "metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}"), "generation": 1},
            "spec": {"clientName": format!("{name}-client")},
            "status": {"clientId": "id-1"}
        }))
        .expect("object");
        o.metadata.resource_version = Some("1".into());
        o
    }

    fn keys(v: Vec<Key>) -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(ToString::to_string).collect();
        v.sort();
        v
    }

    #[test]
    fn gives_back_the_object_it_was_given() {
        let cache = ObjectCache::default();
        let o = obj("team-a", "billing");
        cache.apply(&watcher::Event::Apply(o.clone()));
        let back = cache.get("team-a", "billing").expect("cached");
        assert_eq!(
            serde_json::to_value(&*back).expect("json"),
            serde_json::to_value(&o).expect("json")
        );
        assert!(cache.get("team-b", "billing").is_none());
    }

    #[test]
    fn a_converged_object_packs_to_under_half_its_json() {
        let mut o = obj("bench-ncnqv", "bench-client-00001");
        o.metadata.creation_timestamp =
            serde_json::from_value(serde_json::json!("2026-12-01T08:00:00Z")).ok();
        o.metadata.finalizers = Some(vec!["oauth.collibra.dev/finalizer".into()]);
        o.status = serde_json::from_value(serde_json::json!({
            "clientId": "c0a8e5d2-1111-4444-8888-000000000001",
            "clientIdIssuedAt": "2026-12-01T08:00:01Z", "secretName": "bench-client-00001",
            "grantTypes": ["client_credentials"], "credentialsIssuedAt": "2026-12-01T08:00:01Z",
            "observedGeneration": 1,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Registered", "message": "client registered; credentials in Secret bench-client-00001", "observedGeneration": 1, "lastTransitionTime": "2026-12-01T08:00:01Z"},
                {"type": "Reconciling", "status": "False", "reason": "Idle", "message": "", "observedGeneration": 1, "lastTransitionTime": "2026-12-01T08:00:01Z"},
                {"type": "Stalled", "status": "False", "reason": "Progressing", "message": "", "observedGeneration": 1, "lastTransitionTime": "2026-12-01T08:00:01Z"}
            ]
        }))
        .expect("status");
        let json = serde_json::to_vec(&o).expect("json");
        let packed = pack(&json);
        assert!(
            packed.len() * 2 < json.len(),
            "{} of {}",
            packed.len(),
            json.len()
        );
        assert_eq!(unpack(&packed).expect("unpacks"), json);
    }

    #[test]
    fn wakes_on_new_objects_and_on_changes_that_matter_only() {
        let cache = ObjectCache::default();
        let mut o = obj("a", "x");
        assert_eq!(
            keys(cache.apply(&watcher::Event::Apply(o.clone()))),
            ["a/x"]
        );
        // A status write (a new resource version, same generation): nothing.
        o.metadata.resource_version = Some("2".into());
        o.status.get_or_insert_default().client_id = Some("id-2".into());
        assert!(cache.apply(&watcher::Event::Apply(o.clone())).is_empty());
        assert_eq!(
            cache
                .get("a", "x")
                .expect("cached")
                .status
                .as_ref()
                .and_then(|s| s.client_id.clone()),
            Some("id-2".into()),
            "the cache still follows it"
        );
        o.metadata.generation = Some(2);
        assert_eq!(
            keys(cache.apply(&watcher::Event::Apply(o.clone()))),
            ["a/x"]
        );
        o.annotations_mut()
            .insert("oauth.collibra.dev/rotate".into(), "1".into());
        assert_eq!(
            keys(cache.apply(&watcher::Event::Apply(o.clone()))),
            ["a/x"]
        );
        o.finalizers_mut()
            .push("oauth.collibra.dev/finalizer".into());
        assert_eq!(
            keys(cache.apply(&watcher::Event::Apply(o.clone()))),
            ["a/x"]
        );
        o.metadata.uid = Some("recreated".into());
        assert_eq!(
            keys(cache.apply(&watcher::Event::Apply(o.clone()))),
            ["a/x"]
        );
        assert!(cache.apply(&watcher::Event::Delete(o)).is_empty());
        assert!(cache.is_empty());
    }

    #[test]
    fn a_list_wakes_its_objects_when_complete_and_only_those_that_changed() {
        let cache = ObjectCache::default();
        assert!(!cache.synced());
        assert!(cache.apply(&watcher::Event::Init).is_empty());
        assert!(
            cache
                .apply(&watcher::Event::InitApply(obj("a", "x")))
                .is_empty()
        );
        assert!(
            cache
                .apply(&watcher::Event::InitApply(obj("a", "y")))
                .is_empty()
        );
        assert!(cache.get("a", "x").is_none(), "not before the list ends");
        assert_eq!(keys(cache.apply(&watcher::Event::InitDone)), ["a/x", "a/y"]);
        assert!(cache.synced());
        // A relist after the watch was down: `y` is gone, `z` is new, `x`
        // changed only its status.
        cache.apply(&watcher::Event::Init);
        let mut x = obj("a", "x");
        x.metadata.resource_version = Some("9".into());
        cache.apply(&watcher::Event::InitApply(x));
        cache.apply(&watcher::Event::InitApply(obj("a", "z")));
        assert!(
            cache.get("a", "y").is_some(),
            "the old view answers meanwhile"
        );
        assert_eq!(keys(cache.apply(&watcher::Event::InitDone)), ["a/z"]);
        assert!(cache.get("a", "y").is_none());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn answers_connection_and_secret_questions() {
        let cache = ObjectCache::default();
        cache.apply(&watcher::Event::Apply(obj("a", "x")));
        let mut other = obj("a", "y");
        other.spec.connection_ref = Some(
            serde_json::from_value(serde_json::json!({"kind": "CollibraConnection", "name": "b"}))
                .expect("ref"),
        );
        other.spec.secret_name = Some("shared".into());
        cache.apply(&watcher::Event::Apply(other));
        let b = ConnectionKey::Namespaced {
            namespace: "a".into(),
            name: "b".into(),
        };
        assert_eq!(keys(cache.keys_of(&ConnectionKey::Default)), ["a/x"]);
        assert_eq!(keys(cache.keys_of(&b)), ["a/y"]);
        assert_eq!(cache.objects_of(&b).len(), 1);
        assert_eq!(
            cache.claims_of(&ConnectionKey::Default),
            [("x-client".to_owned(), Some("id-1".to_owned()))]
        );
        assert_eq!(keys(cache.keys_with_secret("a", "x")), ["a/x"]);
        assert_eq!(keys(cache.keys_with_secret("a", "shared")), ["a/y"]);
        assert!(cache.keys_with_secret("a", "y").is_empty());
    }
}

//! Which OAuthClients claim each `clientName`, kept by the OAuthClient watch
//! so a reconcile finds its rivals without scanning every cached object
//! (the scan was O(N) per reconcile and the operator's hottest path at
//! 10,000 objects; see BENCHMARKS.md).

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use kube::{ResourceExt, runtime::watcher};

use super::{decide::NameClaim, relist::Relisted};
use crate::{
    api::{OAuthClient, connection::ConnectionKey},
    connection::connection_of,
};

/// One object that claims a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimant {
    /// The object's uid.
    pub uid: Option<String>,
    /// Its claim (creation time, namespace, name).
    pub claim: NameClaim,
    /// Whether it is being deleted.
    pub deleting: bool,
    /// The connection whose namespace of names it claims in: the same
    /// clientName in two connections is two clients, not a conflict.
    pub connection: ConnectionKey,
}

#[derive(Default)]
struct Claims {
    by_name: HashMap<String, Vec<Claimant>>,
    /// clientName of each object, by (namespace, name).
    name_of: HashMap<(String, String), String>,
}

impl Claims {
    fn upsert(&mut self, o: &OAuthClient) {
        let key = key(o);
        self.remove(&key);
        let client_name = o.spec.client_name.clone();
        // Almost every name has one claimant: a Vec of capacity 1 (a push
        // would reserve room for four, most of this index's memory).
        self.by_name
            .entry(client_name.clone())
            .or_insert_with(|| Vec::with_capacity(1))
            .push(Claimant {
                uid: o.metadata.uid.clone(),
                claim: NameClaim {
                    created: o.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    namespace: key.0.clone(),
                    name: key.1.clone(),
                },
                deleting: o.metadata.deletion_timestamp.is_some(),
                connection: connection_of(o),
            });
        self.name_of.insert(key, client_name);
    }

    /// The uids of every claimant.
    fn uids(&self) -> HashSet<String> {
        self.by_name
            .values()
            .flatten()
            .filter_map(|c| c.uid.clone())
            .collect()
    }

    fn remove(&mut self, key: &(String, String)) {
        let Some(client_name) = self.name_of.remove(key) else {
            return;
        };
        if let Some(v) = self.by_name.get_mut(&client_name) {
            v.retain(|c| c.claim.namespace != key.0 || c.claim.name != key.1);
            if v.is_empty() {
                self.by_name.remove(&client_name);
            }
        }
    }
}

fn key(o: &OAuthClient) -> (String, String) {
    (o.namespace().unwrap_or_default(), o.name_any())
}

/// The clientName index of one watched scope.
#[derive(Default)]
pub struct NameIndex {
    claims: Mutex<Relisted<Claims>>,
}

impl NameIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, Relisted<Claims>> {
        self.claims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Follows one watch event; returns the uids of the objects it shows
    /// gone: a deleted object, or those a completed re-list no longer has.
    pub fn apply(&self, event: &watcher::Event<OAuthClient>) -> Vec<String> {
        let mut claims = self.lock();
        let before = matches!(event, watcher::Event::InitDone).then(|| claims.live().uids());
        claims.follow(event, Claims::upsert, |c, o| c.remove(&key(o)));
        match (event, before) {
            (watcher::Event::Delete(o), _) => o.metadata.uid.clone().into_iter().collect(),
            (_, Some(before)) => {
                let after = claims.live().uids();
                before.difference(&after).cloned().collect()
            }
            _ => Vec::new(),
        }
    }

    /// Calls `f` with each clientName of the live view and its claimants.
    pub fn for_each_name(&self, mut f: impl FnMut(&str, &[Claimant])) {
        for (name, claimants) in &self.lock().live().by_name {
            f(name, claimants);
        }
    }

    /// The objects that claim `client_name` in `connection`.
    pub fn claimants(&self, connection: &ConnectionKey, client_name: &str) -> Vec<Claimant> {
        self.lock()
            .live()
            .by_name
            .get(client_name)
            .map(|v| {
                v.iter()
                    .filter(|c| c.connection == *connection)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(ns: &str, name: &str, client_name: &str) -> OAuthClient {
        let mut o = OAuthClient::new(
            name,
            serde_json::from_value(serde_json::json!({ "clientName": client_name })).expect("spec"),
        );
        o.metadata.namespace = Some(ns.to_owned());
        o.metadata.uid = Some(format!("{ns}/{name}"));
        o
    }

    fn names(idx: &NameIndex, client_name: &str) -> Vec<String> {
        let mut v: Vec<String> = idx
            .claimants(&ConnectionKey::Default, client_name)
            .into_iter()
            .map(|c| format!("{}/{}", c.claim.namespace, c.claim.name))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn follows_applies_and_deletes() {
        let idx = NameIndex::default();
        idx.apply(&watcher::Event::Apply(obj("a", "x", "n")));
        idx.apply(&watcher::Event::Apply(obj("b", "y", "n")));
        idx.apply(&watcher::Event::Apply(obj("a", "z", "m")));
        assert_eq!(names(&idx, "n"), vec!["a/x", "b/y"]);
        // An update does not duplicate the entry.
        idx.apply(&watcher::Event::Apply(obj("a", "x", "n")));
        assert_eq!(names(&idx, "n"), vec!["a/x", "b/y"]);
        let gone = idx.apply(&watcher::Event::Delete(obj("a", "x", "n")));
        assert_eq!(gone, vec!["a/x"]);
        assert_eq!(names(&idx, "n"), vec!["b/y"]);
        assert_eq!(names(&idx, "m"), vec!["a/z"]);
        assert!(idx.claimants(&ConnectionKey::Default, "none").is_empty());
    }

    #[test]
    fn the_same_name_in_two_connections_is_no_rivalry() {
        let idx = NameIndex::default();
        idx.apply(&watcher::Event::Apply(obj("a", "x", "n")));
        let mut other = obj("a", "y", "n");
        other.spec.connection_ref = Some(
            serde_json::from_value(serde_json::json!({"kind": "CollibraConnection", "name": "b"}))
                .expect("ref"),
        );
        idx.apply(&watcher::Event::Apply(other));
        assert_eq!(names(&idx, "n"), vec!["a/x"]);
        let b = ConnectionKey::Namespaced {
            namespace: "a".into(),
            name: "b".into(),
        };
        let in_b: Vec<String> = idx
            .claimants(&b, "n")
            .into_iter()
            .map(|c| c.claim.name)
            .collect();
        assert_eq!(in_b, vec!["y"]);
    }

    #[test]
    fn a_relist_replaces_everything_when_done() {
        let idx = NameIndex::default();
        idx.apply(&watcher::Event::Apply(obj("a", "gone", "n")));
        idx.apply(&watcher::Event::Apply(obj("a", "kept", "k")));
        idx.apply(&watcher::Event::Init);
        idx.apply(&watcher::Event::InitApply(obj("a", "new", "n")));
        idx.apply(&watcher::Event::InitApply(obj("a", "kept", "k")));
        // Until the list is complete the old view answers.
        assert_eq!(names(&idx, "n"), vec!["a/gone"]);
        let gone = idx.apply(&watcher::Event::InitDone);
        assert_eq!(names(&idx, "n"), vec!["a/new"]);
        assert_eq!(gone, vec!["a/gone"], "the uids the list no longer shows");
    }
}

//! The managed Secrets' metadata as the watch last showed it, kept compact.
//!
//! A reconcile reads four things of a cached Secret: its name, whether it
//! carries the managed-by label, its controller owner and the operator's
//! own annotations (`secret::classify`, `secret::settled`). kube-runtime's
//! typed store would keep a whole `ObjectMeta` per Secret, about 2 KiB with
//! its two maps; this keeps those four things in about 300 bytes
//! (docs/design.md, "Memory"). A lookup rebuilds the `ObjectMeta` the
//! decisions take, so they are the same functions for a cached Secret and
//! for one read from the API server.

use std::{
    collections::HashMap,
    sync::{
        RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{core::PartialObjectMeta, runtime::watcher};

use super::{relist::Relisted, secret::SETTLED_ANNOTATIONS};
use crate::api::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// Secrets by namespace, then by name.
type Map = HashMap<Box<str>, HashMap<Box<str>, Entry>>;

/// What is kept of one Secret.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    /// Whether it carries `MANAGED_BY_LABEL=MANAGED_BY_VALUE`.
    labeled: bool,
    /// Its controller owner, if any.
    controller: Option<Box<Owner>>,
    /// The operator's annotations it carries: the index of the name in
    /// [`SETTLED_ANNOTATIONS`] and the value.
    annotations: Box<[(u8, Box<str>)]>,
}

/// A controller owner reference, as far as decisions read it.
#[derive(Debug, PartialEq, Eq)]
struct Owner {
    api_version: Box<str>,
    kind: Box<str>,
    name: Box<str>,
    uid: Box<str>,
    block_owner_deletion: Option<bool>,
}

impl Entry {
    fn of(meta: &ObjectMeta) -> Entry {
        let labeled = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(MANAGED_BY_LABEL))
            .is_some_and(|v| v == MANAGED_BY_VALUE);
        let controller = meta
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| {
                Box::new(Owner {
                    api_version: r.api_version.as_str().into(),
                    kind: r.kind.as_str().into(),
                    name: r.name.as_str().into(),
                    uid: r.uid.as_str().into(),
                    block_owner_deletion: r.block_owner_deletion,
                })
            });
        let annotations = meta
            .annotations
            .iter()
            .flatten()
            .filter_map(|(k, v)| {
                let i = SETTLED_ANNOTATIONS.iter().position(|a| a == k)?;
                Some((u8::try_from(i).ok()?, v.as_str().into()))
            })
            .collect();
        Entry {
            labeled,
            controller,
            annotations,
        }
    }

    fn metadata(&self, namespace: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: self
                .labeled
                .then(|| [(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned())].into()),
            owner_references: self.controller.as_ref().map(|o| {
                vec![OwnerReference {
                    api_version: o.api_version.to_string(),
                    kind: o.kind.to_string(),
                    name: o.name.to_string(),
                    uid: o.uid.to_string(),
                    controller: Some(true),
                    block_owner_deletion: o.block_owner_deletion,
                }]
            }),
            annotations: (!self.annotations.is_empty()).then(|| {
                self.annotations
                    .iter()
                    .map(|(i, v)| {
                        let key = SETTLED_ANNOTATIONS[usize::from(*i)];
                        (key.to_owned(), v.to_string())
                    })
                    .collect()
            }),
            ..ObjectMeta::default()
        }
    }
}

/// The managed Secrets of one watched scope, as metadata (see the module).
#[derive(Default)]
pub struct SecretCache {
    state: RwLock<Relisted<Map>>,
    synced: AtomicBool,
}

fn insert(map: &mut Map, meta: &ObjectMeta) {
    let (Some(ns), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) else {
        return;
    };
    let entry = Entry::of(meta);
    match map.get_mut(ns) {
        Some(names) => {
            names.insert(name.into(), entry);
        }
        None => {
            map.insert(ns.into(), HashMap::from([(name.into(), entry)]));
        }
    }
}

fn remove(map: &mut Map, meta: &ObjectMeta) {
    let (Some(ns), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) else {
        return;
    };
    if let Some(names) = map.get_mut(ns) {
        names.remove(name);
        if names.is_empty() {
            map.remove(ns);
        }
    }
}

impl SecretCache {
    /// Takes one watch event.
    pub fn apply(&self, event: &watcher::Event<PartialObjectMeta<Secret>>) {
        let mut state = match self.state.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let listed = state.follow(
            event,
            |m, s| insert(m, &s.metadata),
            |m, s| remove(m, &s.metadata),
        );
        if listed {
            self.synced.store(true, Ordering::Release);
        }
    }

    /// The Secret `ns/name`'s metadata as far as decisions read it: name,
    /// namespace, the managed-by label, the controller owner and the
    /// operator's annotations.
    pub fn get(&self, ns: &str, name: &str) -> Option<ObjectMeta> {
        let state = match self.state.read() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        state
            .live()
            .get(ns)
            .and_then(|names| names.get(name))
            .map(|e| e.metadata(ns, name))
    }

    /// Whether the watch has listed once.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// How many Secrets are cached.
    pub fn len(&self) -> usize {
        let state = match self.state.read() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        state.live().values().map(HashMap::len).sum()
    }

    /// Whether no Secret is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::REGISTERING_ANNOTATION, controller::secret::RENDERED_ANNOTATION};

    fn meta(ns: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            uid: Some("secret-uid".into()),
            resource_version: Some("7".into()),
            labels: Some(
                [
                    (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
                    ("team".to_owned(), "a".to_owned()),
                ]
                .into(),
            ),
            annotations: Some(
                [
                    (
                        RENDERED_ANNOTATION.to_owned(),
                        "{\"clientId\":\"id1\"}".to_owned(),
                    ),
                    ("note".to_owned(), "x".to_owned()),
                ]
                .into(),
            ),
            owner_references: Some(vec![
                OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: "other".into(),
                    uid: "u0".into(),
                    ..Default::default()
                },
                OwnerReference {
                    api_version: "oauth.collibra.dev/v1alpha1".into(),
                    kind: "OAuthClient".into(),
                    name: "billing".into(),
                    uid: "u1".into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                },
            ]),
            ..Default::default()
        }
    }

    fn event(m: ObjectMeta) -> PartialObjectMeta<Secret> {
        PartialObjectMeta {
            types: None,
            metadata: m,
            _phantom: std::marker::PhantomData,
        }
    }

    #[test]
    fn keeps_what_decisions_read_and_nothing_else() {
        let cache = SecretCache::default();
        cache.apply(&watcher::Event::Apply(event(meta("team-a", "billing"))));
        let got = cache.get("team-a", "billing").expect("cached");
        assert_eq!(got.name.as_deref(), Some("billing"));
        assert_eq!(got.namespace.as_deref(), Some("team-a"));
        assert_eq!(
            got.labels,
            Some([(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned())].into())
        );
        assert_eq!(
            got.annotations,
            Some(
                [(
                    RENDERED_ANNOTATION.to_owned(),
                    "{\"clientId\":\"id1\"}".to_owned()
                )]
                .into()
            )
        );
        let owners = got.owner_references.expect("owner");
        assert_eq!(owners.len(), 1, "only the controller owner");
        assert_eq!(owners[0].uid, "u1");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(got.uid, None);
        assert!(cache.get("team-b", "billing").is_none(), "other namespace");
    }

    #[test]
    fn an_unlabelled_ownerless_secret_stays_so() {
        let cache = SecretCache::default();
        let mut m = meta("team-a", "plain");
        m.labels = None;
        m.owner_references = None;
        m.annotations = Some([(REGISTERING_ANNOTATION.to_owned(), "t".to_owned())].into());
        cache.apply(&watcher::Event::Apply(event(m)));
        let got = cache.get("team-a", "plain").expect("cached");
        assert_eq!(got.labels, None);
        assert_eq!(got.owner_references, None);
        assert!(
            got.annotations
                .expect("kept")
                .contains_key(REGISTERING_ANNOTATION)
        );
    }

    #[test]
    fn a_relist_replaces_the_cache_when_complete_and_deletes_remove() {
        let cache = SecretCache::default();
        assert!(!cache.synced());
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(event(meta("a", "one"))));
        assert!(cache.get("a", "one").is_none(), "not before the list ends");
        cache.apply(&watcher::Event::InitDone);
        assert!(cache.synced());
        assert!(cache.get("a", "one").is_some());
        cache.apply(&watcher::Event::Apply(event(meta("b", "two"))));
        assert_eq!(cache.len(), 2);
        // A relist that no longer shows `a/one`.
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(event(meta("b", "two"))));
        assert!(cache.get("a", "one").is_some(), "kept while relisting");
        cache.apply(&watcher::Event::InitDone);
        assert!(cache.get("a", "one").is_none(), "gone after the relist");
        assert!(cache.synced(), "stays synced");
        cache.apply(&watcher::Event::Delete(event(meta("b", "two"))));
        assert!(cache.is_empty());
    }
}

//! What the operator keeps about each OAuthClient between reconciles, by
//! uid: credentials Collibra issued whose Secret write failed, the backoff,
//! the Ready reason last reported (which the objects gauge counts) and the
//! last replacement made. All of it is dropped when the watch reports the
//! object gone or a re-list no longer shows it ([`ObjectStates::forget`],
//! called with the uids the clientName index reports gone,
//! `NameIndex::apply`), whichever way it went: cleanup, a finalizer removed
//! by hand, a namespace deleted while the operator was down.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use collibra_client::IssuedClient;

use super::{backoff::Backoffs, reasons::Reason};
use crate::{api::Replacement, metrics::Metrics};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each map is updated in one statement; a poisoned lock is safe to use.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Per-object state, by uid (see the module).
pub struct ObjectStates {
    metrics: Arc<Metrics>,
    /// Per-object backoff and holds.
    pub backoffs: Backoffs,
    /// Credentials issued by Collibra whose Secret write failed: written
    /// before anything else on the next reconcile.
    unsaved: Mutex<HashMap<String, Arc<IssuedClient>>>,
    /// The Ready reason this process last reported.
    reported: Mutex<HashMap<String, Reason>>,
    /// The last replacement this process made: the cached object lags
    /// behind the status write that recorded it, and a status built from
    /// the cache must not drop it.
    replacements: Mutex<HashMap<String, Replacement>>,
}

impl ObjectStates {
    /// No state yet; the objects gauge is `metrics`'.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        ObjectStates {
            metrics,
            backoffs: Backoffs::default(),
            unsaved: Mutex::default(),
            reported: Mutex::default(),
            replacements: Mutex::default(),
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

    /// How many objects have any state kept.
    pub fn len(&self) -> usize {
        let mut uids: HashSet<String> = lock(&self.reported).keys().cloned().collect();
        uids.extend(lock(&self.unsaved).keys().cloned());
        uids.extend(lock(&self.replacements).keys().cloned());
        uids.extend(self.backoffs.uids());
        uids.len()
    }

    /// Whether no object has state kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_an_object_drops_its_state_and_its_gauge_entry() {
        let metrics = Arc::new(Metrics::default());
        let states = ObjectStates::new(metrics.clone());
        states.record_reported("u1", Reason::Registered);
        states.record_reported("u2", Reason::Registered);
        let _ = states.backoffs.next_delay("u1", None);
        assert_eq!(states.len(), 2);
        let registered = |m: &Metrics| {
            m.render()
                .lines()
                .find(|l| l.starts_with("collibra_oauth_objects{") && l.contains("\"Registered\""))
                .map(|l| l.rsplit(' ').next().unwrap_or_default().to_owned())
        };
        assert_eq!(registered(&metrics).as_deref(), Some("2"));
        states.forget("u1");
        assert_eq!(states.len(), 1);
        assert_eq!(states.last_reported("u1"), None);
        assert!(states.backoffs.uids().is_empty(), "its backoff goes too");
        assert_eq!(registered(&metrics).as_deref(), Some("1"));
    }
}

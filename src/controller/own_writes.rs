//! The Secret versions this process wrote, so that their watch events wake
//! no reconcile (the reconcile that wrote one knows what it holds), and the
//! Secrets someone else wrote since, whose metadata no longer vouches for
//! their data (docs/design.md, "Requests per registration" and "Secret
//! data").

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::core::v1::Secret;
use kube::{ResourceExt, runtime::watcher};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each map is updated in one statement; a poisoned lock is safe to use.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

/// Secret events that may wait at once for a write in flight.
pub const OWN_WRITE_EVENTS_WAITING: usize = 1024;

/// The Secret a watch event is about, unless it only shows a version this
/// process wrote. Deletions always count. A version someone else wrote
/// while the watch ran is noted: its metadata no longer vouches for its
/// data ([`OwnWrites::is_touched`]).
pub async fn not_own_write<S: kube::Resource>(
    own_writes: &OwnWrites,
    e: watcher::Event<S>,
) -> Option<S> {
    let (s, live) = match e {
        watcher::Event::Apply(s) => (s, true),
        watcher::Event::InitApply(s) => (s, false),
        watcher::Event::Delete(s) => return Some(s),
        watcher::Event::Init | watcher::Event::InitDone => return None,
    };
    let ns = s.namespace().unwrap_or_default();
    let name = s.name_any();
    let own = own_writes
        .settled(&ns, &name, s.resource_version().as_deref())
        .await;
    if own {
        return None;
    }
    if live {
        own_writes.touched_by_others(&ns, &name);
    }
    Some(s)
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

    fn secret(rv: &str) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = Some("team-a".to_owned());
        s.metadata.name = Some("billing".to_owned());
        s.metadata.resource_version = Some(rv.to_owned());
        s
    }

    #[test]
    fn own_secret_writes_wake_nothing_but_deletions_and_others_do() {
        let own = OwnWrites::default();
        own.record(&secret("11"));
        own.record(&secret("12"));
        let woken = |e| {
            futures::FutureExt::now_or_never(not_own_write(&own, e))
                .flatten()
                .is_some()
        };
        assert!(!woken(watcher::Event::Apply(secret("11"))));
        assert!(woken(watcher::Event::Apply(secret("13"))), "someone else's");
        assert!(!woken(watcher::Event::InitApply(secret("12"))));
        own.record(&secret("14"));
        assert!(woken(watcher::Event::Delete(secret("14"))), "a deletion");
        assert!(!woken(watcher::Event::Init));
        assert!(!woken(watcher::Event::InitDone));
    }

    #[test]
    fn a_live_write_by_someone_else_is_noted_until_read_or_written_again() {
        let own = OwnWrites::default();
        let event = |e| futures::FutureExt::now_or_never(not_own_write(&own, e)).flatten();
        assert!(event(watcher::Event::InitApply(secret("30"))).is_some());
        assert!(!own.is_touched("team-a", "billing"), "listed, not written");
        own.record(&secret("31"));
        assert!(event(watcher::Event::Apply(secret("31"))).is_none());
        assert!(!own.is_touched("team-a", "billing"), "our own write");
        assert!(event(watcher::Event::Apply(secret("32"))).is_some());
        assert!(own.is_touched("team-a", "billing"), "someone else's");
        own.reading("team-a", "billing");
        assert!(!own.is_touched("team-a", "billing"), "read again");
        assert!(event(watcher::Event::Apply(secret("33"))).is_some());
        own.record(&secret("34"));
        assert!(!own.is_touched("team-a", "billing"), "written again");
    }

    #[tokio::test]
    async fn an_event_waits_for_the_answer_of_a_write_in_flight() {
        let own = Arc::new(OwnWrites::default());
        let write = own.begin("team-a", "billing");
        let event = tokio::spawn({
            let own = own.clone();
            async move { not_own_write(&own, watcher::Event::Apply(secret("21"))).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(!event.is_finished(), "waits while the write is in flight");
        write.written(&secret("21"));
        assert!(event.await.expect("task").is_none(), "ours once answered");
        // A write that failed records nothing: the event counts.
        drop(own.begin("team-a", "billing"));
        assert!(
            not_own_write(&own, watcher::Event::Apply(secret("22")))
                .await
                .is_some()
        );
    }
}

//! One `GET /clients` serves many reconciles (docs/design.md, rule 7): the list is
//! cached by name, refreshed single-flight when older than the resync
//! interval or after an answer that may have changed it, and kept current
//! between refreshes with the operator's own POSTs and DELETEs. A caller
//! about to register asks for a younger list ([`ClientList::lookup_within`],
//! `--list-max-age`), so a client created in Collibra meanwhile is seen
//! instead of being POSTed again; concurrent callers still share one list.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::decide::Listed;

struct State {
    by_name: HashMap<String, Listed>,
    fetched_at: Option<Instant>,
    /// Set when an answer means the cache may be wrong; the next lookup refreshes.
    stale: bool,
    /// Counts invalidations, so a fetch that was already in flight when the
    /// cache was invalidated does not store its (possibly older) answer as
    /// fresh.
    invalidations: u64,
    /// The operator's own POSTs and DELETEs answered while a list is in
    /// flight: that list may have been read before them, so they are
    /// applied to it when it arrives (instead of distrusting it, which
    /// during a rollout made nearly every list stale on arrival).
    written_during_fetch: Option<Vec<OwnWrite>>,
}

/// A change the operator itself made and knows the outcome of.
enum OwnWrite {
    Registered(String, Listed),
    Deleted(String, String),
}

impl State {
    fn apply(&mut self, write: &OwnWrite) {
        match write {
            OwnWrite::Registered(name, client) => {
                self.by_name.insert(name.clone(), client.clone());
            }
            OwnWrite::Deleted(name, client_id) => {
                if self
                    .by_name
                    .get(name)
                    .is_some_and(|c| &c.client_id == client_id)
                {
                    self.by_name.remove(name);
                }
            }
        }
    }

    fn record(&mut self, write: OwnWrite) {
        self.apply(&write);
        if let Some(during) = self.written_during_fetch.as_mut() {
            during.push(write);
        }
    }
}

/// The cached Collibra list.
pub struct ClientList {
    max_age: Duration,
    state: Mutex<State>,
    refresh: tokio::sync::Mutex<()>,
    refreshes: AtomicU64,
}

impl ClientList {
    /// A cache whose entries are trusted for `max_age`.
    pub fn new(max_age: Duration) -> Self {
        ClientList {
            max_age,
            state: Mutex::new(State {
                by_name: HashMap::new(),
                fetched_at: None,
                stale: true,
                invalidations: 0,
                written_during_fetch: None,
            }),
            refresh: tokio::sync::Mutex::new(()),
            refreshes: AtomicU64::new(0),
        }
    }

    /// How many lists were fetched.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the map half-written
        // in a way that matters: recover the guard.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fresh(s: &State, max_age: Duration) -> bool {
        !s.stale && s.fetched_at.is_some_and(|t| t.elapsed() < max_age)
    }

    /// Looks `name` up, fetching the list with `fetch` first when the cache
    /// is stale. Concurrent callers share one fetch.
    pub async fn lookup<F, Fut, E>(&self, name: &str, fetch: F) -> Result<Option<Listed>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<(String, Listed)>, E>>,
    {
        self.lookup_within(name, self.max_age, fetch).await
    }

    /// Like [`Self::lookup`], but answered from a list at most `max_age` old
    /// (or the cache's own age, whichever is shorter). Callers waiting for a
    /// list in flight take it without fetching another.
    pub async fn lookup_within<F, Fut, E>(
        &self,
        name: &str,
        max_age: Duration,
        fetch: F,
    ) -> Result<Option<Listed>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<(String, Listed)>, E>>,
    {
        self.read(max_age, fetch, |s| s.by_name.get(name).cloned())
            .await
    }

    /// Whether a list that lookups within `max_age` read is past half that
    /// age with no refresh in flight: a refresh started now
    /// ([`Self::refresh_ahead`]) arrives before one of them has to wait for
    /// it. Only registrations look up within `--list-max-age`, so a list
    /// nobody registers against is never refreshed ahead.
    pub fn past_half(&self, max_age: Duration) -> bool {
        let max_age = max_age.min(self.max_age);
        let s = self.lock();
        Self::fresh(&s, max_age)
            && s.fetched_at.is_some_and(|t| t.elapsed() >= max_age / 2)
            && self.refresh.try_lock().is_ok()
    }

    /// Fetches the list unless one less than half of `max_age` old is
    /// stored (or arrives while this waits for a fetch in flight).
    pub async fn refresh_ahead<F, Fut, E>(&self, max_age: Duration, fetch: F) -> Result<(), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<(String, Listed)>, E>>,
    {
        self.read(max_age.min(self.max_age) / 2, fetch, |_| ())
            .await
    }

    /// Every listed client by name, from the cache or, when it is stale,
    /// from one shared fetch (a connection's check counts these).
    pub async fn all<F, Fut, E>(&self, fetch: F) -> Result<Vec<(String, Listed)>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<(String, Listed)>, E>>,
    {
        self.read(self.max_age, fetch, |s| {
            s.by_name
                .iter()
                .map(|(n, c)| (n.clone(), c.clone()))
                .collect()
        })
        .await
    }

    /// `answer` from a list at most `max_age` old (or the cache's own age),
    /// fetching the list first when the cache is older; concurrent callers
    /// share one fetch.
    async fn read<F, Fut, E, T>(
        &self,
        max_age: Duration,
        fetch: F,
        answer: impl Fn(&State) -> T,
    ) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<(String, Listed)>, E>>,
    {
        let max_age = max_age.min(self.max_age);
        if let Some(hit) = self.cached(max_age, &answer) {
            return Ok(hit);
        }
        let _single_flight = self.refresh.lock().await;
        // Someone else may have refreshed while we waited.
        if let Some(hit) = self.cached(max_age, &answer) {
            return Ok(hit);
        }
        let invalidations_before = {
            let mut s = self.lock();
            s.written_during_fetch = Some(Vec::new());
            s.invalidations
        };
        // The list shows Collibra at some moment after the request left:
        // its age counts from here, not from when the answer arrived.
        let requested = Instant::now();
        let listed = fetch().await;
        let mut s = self.lock();
        let written = s.written_during_fetch.take().unwrap_or_default();
        let listed = listed?;
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        s.by_name = listed_by_name(listed);
        for w in &written {
            s.apply(w);
        }
        s.fetched_at = Some(requested);
        // Invalidated meanwhile (say, a registration whose answer was lost
        // committed while this list was on its way): the answer may predate
        // it, so the next lookup reads the list again.
        s.stale = s.invalidations != invalidations_before;
        Ok(answer(&s))
    }

    /// `Some(answer)` when the cache is at most `max_age` old.
    fn cached<T>(&self, max_age: Duration, answer: impl Fn(&State) -> T) -> Option<T> {
        let s = self.lock();
        Self::fresh(&s, max_age).then(|| answer(&s))
    }

    /// Marks the cache stale (an answer proved wrong, or an outcome is
    /// unknown). Whatever list is stored or in flight is distrusted: it may
    /// have been requested before the event (a registration that committed
    /// while its answer was lost), and taking it as fresh would hide the new
    /// client. The price is at most one extra list per invalidation;
    /// single-flight merges concurrent ones.
    pub fn invalidate(&self) {
        let mut s = self.lock();
        s.stale = true;
        s.invalidations += 1;
    }

    /// Records a client the operator just registered.
    /// A list in flight gets it too when it arrives.
    pub fn registered(&self, name: &str, client: Listed) {
        self.lock()
            .record(OwnWrite::Registered(name.to_owned(), client));
    }

    /// Records a client the operator just deleted; a list in flight loses
    /// it too when it arrives.
    pub fn deleted(&self, name: &str, client_id: &str) {
        self.lock()
            .record(OwnWrite::Deleted(name.to_owned(), client_id.to_owned()));
    }
}

/// Indexes a list by name. Collibra guarantees unique names; should a list
/// ever repeat one, the first entry wins so the choice is stable.
fn listed_by_name(listed: Vec<(String, Listed)>) -> HashMap<String, Listed> {
    let mut map = HashMap::with_capacity(listed.len());
    for (name, client) in listed {
        map.entry(name).or_insert(client);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, atomic::AtomicUsize};

    fn entry(name: &str, id: &str) -> (String, Listed) {
        (
            name.to_owned(),
            Listed {
                client_id: id.to_owned(),
                issued_at: Some(1),
                grant_types: vec![],
                redirect_uris: None,
            },
        )
    }

    #[tokio::test]
    async fn own_writes_answered_while_a_list_is_in_flight_are_kept_in_it() {
        let list = Arc::new(ClientList::new(Duration::from_secs(60)));
        list.registered("gone", entry("gone", "9").1);
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let reading = tokio::spawn({
            let list = list.clone();
            async move {
                list.lookup("a", || async move {
                    let _ = released.await;
                    // Read before the writes below: shows "gone", not "new".
                    Ok::<_, ()>(vec![entry("a", "1"), entry("gone", "9")])
                })
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        list.registered("new", entry("new", "2").1);
        list.deleted("gone", "9");
        let _ = release.send(());
        assert!(reading.await.expect("task").expect("ok").is_some());
        let fetch = || async { Ok::<_, ()>(vec![]) };
        let new = list.lookup("new", fetch).await.expect("ok");
        assert_eq!(new.map(|c| c.client_id).as_deref(), Some("2"));
        assert_eq!(list.lookup("gone", fetch).await.expect("ok"), None);
        assert_eq!(list.refreshes(), 1, "the list stays fresh");
        // A list that failed keeps nothing of what was written meanwhile.
        list.invalidate();
        let failed = list.lookup("a", || async { Err::<Vec<(String, Listed)>, ()>(()) });
        assert!(failed.await.is_err());
        assert!(list.lock().written_during_fetch.is_none());
    }

    #[tokio::test]
    async fn a_list_past_half_its_age_is_refreshed_ahead_without_a_wait() {
        let max_age = Duration::from_millis(400);
        let list = ClientList::new(Duration::from_secs(60));
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::Relaxed);
            Ok::<_, ()>(vec![entry("a", "1")])
        };
        assert!(!list.past_half(max_age), "no list yet: a lookup must wait");
        list.lookup_within("a", max_age, fetch).await.expect("ok");
        assert!(!list.past_half(max_age), "young");
        list.refresh_ahead(max_age, fetch).await.expect("ok");
        assert_eq!(
            fetches.load(Ordering::Relaxed),
            1,
            "young: not fetched again"
        );
        tokio::time::sleep(max_age / 2).await;
        assert!(list.past_half(max_age));
        // Still answered from the stored list, at once...
        list.lookup_within("a", max_age, fetch).await.expect("ok");
        assert_eq!(fetches.load(Ordering::Relaxed), 1);
        // ...while the refresh ahead makes it young again.
        list.refresh_ahead(max_age, fetch).await.expect("ok");
        assert_eq!(fetches.load(Ordering::Relaxed), 2);
        assert!(!list.past_half(max_age));
        // Lookups that trust the list for the resync do not ask for one.
        assert!(!list.past_half(Duration::MAX));
        // A stale list is no list to refresh ahead: the next lookup waits.
        list.invalidate();
        assert!(!list.past_half(max_age));
    }

    #[tokio::test]
    async fn all_shares_the_cache_with_lookups() {
        let list = ClientList::new(Duration::from_secs(60));
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::Relaxed);
            Ok::<_, ()>(vec![entry("a", "1"), entry("b", "2")])
        };
        let mut all = list.all(fetch).await.expect("ok");
        all.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(all, vec![entry("a", "1"), entry("b", "2")]);
        let hit = list.lookup("b", fetch).await.expect("ok");
        assert_eq!(hit.map(|c| c.client_id), Some("2".to_owned()));
        assert_eq!(fetches.load(Ordering::Relaxed), 1);
        list.invalidate();
        assert_eq!(list.all(fetch).await.expect("ok").len(), 2);
        assert_eq!(fetches.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_list_in_flight_during_an_invalidation_is_not_fresh() {
        let list = Arc::new(ClientList::new(Duration::from_secs(60)));
        list.lookup("a", || async { Ok::<_, ()>(vec![]) })
            .await
            .expect("ok");
        // A slow list starts before a registration commits...
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let slow = {
            let list = list.clone();
            list.invalidate();
            tokio::spawn(async move {
                list.lookup("other", || async move {
                    let _ = wait.await;
                    Ok::<_, ()>(vec![])
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        // ...the registration's answer is lost, so the cache is invalidated
        // while that list is still on its way.
        list.invalidate();
        let _ = release.send(());
        slow.await.expect("joined").expect("ok");
        let calls = AtomicUsize::new(0);
        let again = list
            .lookup("a", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(vec![entry("a", "id-a")])
            })
            .await
            .expect("ok");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the older answer was taken as fresh"
        );
        assert!(again.is_some());
    }

    #[tokio::test]
    async fn many_concurrent_lookups_cost_one_list() {
        let list = Arc::new(ClientList::new(Duration::from_secs(60)));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..50 {
            let list = list.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                list.lookup(&format!("n{}", i % 5), || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, ()>(vec![entry("n1", "id1")])
                })
                .await
            }));
        }
        let mut found = 0;
        for t in tasks {
            if t.await.expect("joined").expect("ok").is_some() {
                found += 1;
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(found, 10);
        assert_eq!(list.refreshes(), 1);
    }

    #[tokio::test]
    async fn own_writes_update_the_cache_and_invalidate_forces_a_refresh() {
        let list = ClientList::new(Duration::from_secs(60));
        let fetch = || async { Ok::<_, ()>(vec![entry("a", "1")]) };
        let first = list.lookup("b", fetch).await.expect("ok");
        assert_eq!(first, None);
        list.registered("b", entry("b", "2").1);
        let hit = list.lookup("b", fetch).await.expect("ok");
        assert_eq!(hit.map(|c| c.client_id).as_deref(), Some("2"));
        list.deleted("b", "2");
        assert_eq!(list.lookup("b", fetch).await.expect("ok"), None);
        assert_eq!(list.refreshes(), 1);

        list.invalidate();
        let again = list.lookup("a", fetch).await.expect("ok");
        assert_eq!(list.refreshes(), 2);
        assert_eq!(again.map(|c| c.client_id).as_deref(), Some("1"));
        // Every invalidation forces one more list: the stored one may have
        // been requested before the event.
        list.invalidate();
        list.lookup("a", fetch).await.expect("ok");
        assert_eq!(list.refreshes(), 3);
        list.lookup("a", fetch).await.expect("ok");
        assert_eq!(list.refreshes(), 3);
    }

    #[tokio::test]
    async fn entries_expire_after_max_age_and_errors_keep_nothing() {
        let list = ClientList::new(Duration::from_millis(1));
        let err = list
            .lookup("a", || async { Err::<Vec<(String, Listed)>, _>("boom") })
            .await;
        assert_eq!(err, Err("boom"));
        list.lookup("a", || async { Ok::<_, ()>(vec![]) })
            .await
            .expect("ok");
        tokio::time::sleep(Duration::from_millis(5)).await;
        list.lookup("a", || async { Ok::<_, ()>(vec![]) })
            .await
            .expect("ok");
        assert_eq!(list.refreshes(), 2);
    }

    #[tokio::test]
    async fn a_registration_gets_a_young_list_shared_by_concurrent_callers() {
        let list = Arc::new(ClientList::new(Duration::from_secs(600)));
        let calls = Arc::new(AtomicUsize::new(0));
        let fetch = |calls: Arc<AtomicUsize>, names: Vec<(String, Listed)>| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, ()>(names)
        };
        let first = list
            .lookup("a", || fetch(calls.clone(), vec![]))
            .await
            .expect("ok");
        assert_eq!(first, None);
        // Within the resync interval the cache answers, however old...
        tokio::time::sleep(Duration::from_millis(60)).await;
        let cached = list
            .lookup("a", || fetch(calls.clone(), vec![entry("a", "id-a")]))
            .await
            .expect("ok");
        assert_eq!(cached, None);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // ...but a caller about to register wants one at most 50 ms old:
        // meanwhile "a" was created in Collibra, and the young list shows it.
        // Twenty such callers share one list.
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let list = list.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                list.lookup_within("a", Duration::from_millis(50), || {
                    fetch(calls, vec![entry("a", "id-a")])
                })
                .await
            }));
        }
        for t in tasks {
            let hit = t.await.expect("joined").expect("ok");
            assert_eq!(hit.map(|c| c.client_id).as_deref(), Some("id-a"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(list.refreshes(), 2);
    }

    #[tokio::test]
    async fn a_young_enough_list_is_not_fetched_again() {
        let list = ClientList::new(Duration::from_secs(600));
        let fetch = || async { Ok::<_, ()>(vec![entry("a", "1")]) };
        list.lookup("a", fetch).await.expect("ok");
        let hit = list
            .lookup_within("a", Duration::from_secs(5), fetch)
            .await
            .expect("ok");
        assert!(hit.is_some());
        assert_eq!(list.refreshes(), 1);
        // A bound longer than the cache's own age changes nothing.
        list.lookup_within("a", Duration::from_secs(6000), fetch)
            .await
            .expect("ok");
        assert_eq!(list.refreshes(), 1);
    }

    #[test]
    fn duplicate_names_keep_the_first() {
        let m = listed_by_name(vec![entry("a", "1"), entry("a", "2")]);
        assert_eq!(m["a"].client_id, "1");
    }
}

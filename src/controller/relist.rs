//! Re-lists: what happens when a watch lists its objects again (at start,
//! and after the API server expired its position).
//!
//! Two things live here:
//!
//! - [`objects_after_list`], the adapter that closes a gap in kube-runtime
//!   (5.0): a streamed list yields each object (`InitApply`) before the
//!   reflector's store swaps the new list in (`InitDone`). A `Controller`
//!   fed those objects looks each one up in the store at once, finds the
//!   objects that are new since the last list missing, and drops them
//!   (`Error::ObjectNotFound`): an OAuthClient created while the watch was
//!   re-listing (an API server restart) would wait for the next resync. The
//!   adapter holds the listed objects' references back until the list is
//!   complete, then yields them from the store. It can go once kube's
//!   `Controller` waits for the store's swap before looking objects up.
//! - [`reflect_first_list_live`], kube's reflector but for the first
//!   list: its objects go into the store as they arrive, so the process
//!   that just started reconciles them while the list is still arriving
//!   (kube holds its `Controller`'s runner until the store has swapped a
//!   whole list in). Whatever needs every object waits for the list:
//!   [`ListedFlag`].
//! - [`Relisted`], the "build the new view during the list, swap it in
//!   when the list is complete" rule, shared by the operator's own indexes
//!   (the Secret metadata cache and the clientName index), so each of them
//!   answers from a complete view at every moment, as kube's store does.

use std::{iter, sync::Arc};

use futures::{Stream, StreamExt, TryStreamExt, stream};
use kube::{
    Resource,
    runtime::{
        reflector::{ObjectRef, Store, store::Writer},
        watcher,
    },
};
use tokio::sync::watch;

/// The objects of a reflected watch, for `Controller::for_stream`: each
/// applied object at once; the objects of a (re)list only once the list is
/// complete and the store holds them (see the module). Deletions yield
/// nothing: a deleted object has no reconcile to run (cleanup runs while
/// the finalizer holds it). `events` must already have passed the store's
/// writer (`reflect`).
pub fn objects_after_list<K, S>(
    events: S,
    store: Store<K>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    events
        .scan(Vec::new(), move |listed: &mut Vec<ObjectRef<K>>, event| {
            let out: Box<dyn Iterator<Item = Result<K, watcher::Error>> + Send> = match event {
                Err(e) => Box::new(iter::once(Err(e))),
                Ok(watcher::Event::Apply(o)) => Box::new(iter::once(Ok(o))),
                Ok(watcher::Event::Delete(_)) => Box::new(iter::empty()),
                Ok(watcher::Event::Init) => {
                    listed.clear();
                    Box::new(iter::empty())
                }
                Ok(watcher::Event::InitApply(o)) => {
                    listed.push(ObjectRef::from_obj(&o));
                    Box::new(iter::empty())
                }
                // The store has swapped the list in: every listed object
                // is found. Copied lazily, one at a time as the controller
                // takes them, so no second copy of the list is held (a
                // collected copy was a third of the peak at 10,000
                // objects: BENCHMARKS.md, "Memory").
                Ok(watcher::Event::InitDone) => {
                    let store = store.clone();
                    Box::new(
                        std::mem::take(listed)
                            .into_iter()
                            .filter_map(move |r| store.get(&r))
                            .map(|o| Ok(K::clone(&o))),
                    )
                }
            };
            futures::future::ready(Some(stream::iter(out)))
        })
        .flatten()
}

/// Where a watch is in its first list (see [`reflect_first_list_live`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FirstList {
    NotStarted,
    Arriving,
    Done,
}

/// Feeds `writer` like kube's `reflect`, except for the watch's first
/// list: the store is made ready (and empty) when that list starts, and
/// each listed object is applied to it as it arrives and passed on as an
/// `Apply`. kube's `Controller` starts its runner only once its store is
/// ready and then looks up each object it is given, so after a start it
/// reconciles the first objects while the rest are still listed, rather
/// than after the whole list (BENCHMARKS.md, "Restart"). The store starts
/// empty, so applying a first list object by object ends in the same
/// store as kube's swap, and nothing has to be removed. Should that list
/// be cut off and start again, the new one is passed on as kube does
/// (the store keeps the objects seen so far until it swaps the complete
/// new list in). Downstream sees the first list as `Apply` events and its
/// `InitDone`, without its `Init`, so the operator's own views
/// ([`Relisted`]) fill as the store does.
pub fn reflect_first_list_live<K, S>(
    events: S,
    mut writer: Writer<K>,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut first = FirstList::NotStarted;
    events.try_filter_map(move |event| {
        let passed = match (first, event) {
            (FirstList::NotStarted, watcher::Event::Init) => {
                first = FirstList::Arriving;
                writer.apply_watcher_event(&watcher::Event::Init);
                writer.apply_watcher_event(&watcher::Event::InitDone);
                None
            }
            (FirstList::Arriving, watcher::Event::InitApply(o)) => {
                let applied = watcher::Event::Apply(o);
                writer.apply_watcher_event(&applied);
                Some(applied)
            }
            // The store holds the list already: kube's swap would empty it.
            (FirstList::Arriving, watcher::Event::InitDone) => {
                first = FirstList::Done;
                Some(watcher::Event::InitDone)
            }
            // Cut off and listed again: kube's swap from here on.
            (FirstList::Arriving, watcher::Event::Init) => {
                first = FirstList::Done;
                writer.apply_watcher_event(&watcher::Event::Init);
                Some(watcher::Event::Init)
            }
            (_, event) => {
                writer.apply_watcher_event(&event);
                Some(event)
            }
        };
        futures::future::ready(Ok(passed))
    })
}

/// Whether a watch has listed once, and a way to wait for it: what needs
/// every object (rule 1's rivals, a connection's users) asks it after a
/// start, while [`reflect_first_list_live`] fills the store.
#[derive(Clone, Debug)]
pub struct ListedFlag(Arc<watch::Sender<bool>>);

impl ListedFlag {
    /// A flag: `listed` or not yet.
    pub fn new(listed: bool) -> Self {
        ListedFlag(Arc::new(watch::Sender::new(listed)))
    }

    /// Marks the watch listed.
    pub fn set(&self) {
        self.0.send_replace(true);
    }

    /// Whether the watch has listed.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until the watch has listed.
    pub async fn wait(&self) {
        // The sender lives in `self`: the wait cannot fail.
        let _ = self.0.subscribe().wait_for(|l| *l).await;
    }
}

/// A view of a watch's objects, rebuilt by each (re)list: events apply to
/// the live view, except those of a list in progress, which build a new
/// view that replaces the live one when the list is complete.
#[derive(Debug, Default)]
pub struct Relisted<T> {
    live: T,
    listing: Option<T>,
}

impl<T: Default> Relisted<T> {
    /// Follows `event`: `upsert` and `remove` change a view. Returns true
    /// when the event completed a list (the new view is live).
    pub fn follow<K>(
        &mut self,
        event: &watcher::Event<K>,
        upsert: impl FnOnce(&mut T, &K),
        remove: impl FnOnce(&mut T, &K),
    ) -> bool {
        match event {
            watcher::Event::Apply(o) => upsert(&mut self.live, o),
            watcher::Event::Delete(o) => remove(&mut self.live, o),
            watcher::Event::Init => self.listing = Some(T::default()),
            watcher::Event::InitApply(o) => upsert(self.listing.get_or_insert_default(), o),
            watcher::Event::InitDone => {
                if let Some(listing) = self.listing.take() {
                    self.live = listing;
                }
                return true;
            }
        }
        false
    }

    /// The live view.
    pub fn live(&self) -> &T {
        &self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OAuthClient;
    use futures::{FutureExt, channel::mpsc};
    use kube::{
        ResourceExt,
        runtime::{WatchStreamExt, reflector},
    };

    fn obj(name: &str) -> OAuthClient {
        let mut o = OAuthClient::new(
            name,
            serde_json::from_value(serde_json::json!({ "clientName": name })).expect("spec"),
        );
        o.metadata.namespace = Some("team-a".to_owned());
        o
    }

    fn names(items: &[Result<OAuthClient, watcher::Error>]) -> Vec<String> {
        items
            .iter()
            .map(|i| {
                i.as_ref()
                    .expect("object")
                    .metadata
                    .name
                    .clone()
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The gap itself: with kube's own `applied_objects`, a listed object
    /// reaches the controller while the store does not hold it yet.
    #[tokio::test]
    async fn kube_yields_listed_objects_before_its_store_holds_them() {
        let (store, writer) = reflector::store::<OAuthClient>();
        let (tx, rx) = mpsc::unbounded();
        let mut objects = Box::pin(rx.reflect(writer).applied_objects());
        tx.unbounded_send(Ok(watcher::Event::Init)).expect("send");
        tx.unbounded_send(Ok(watcher::Event::InitApply(obj("new"))))
            .expect("send");
        let first = objects.next().await.expect("item").expect("object");
        assert!(
            store.get(&ObjectRef::from_obj(&first)).is_none(),
            "kube-runtime now waits for the swap: objects_after_list can go"
        );
    }

    #[tokio::test]
    async fn listed_objects_come_once_the_store_holds_them() {
        let (store, writer) = reflector::store::<OAuthClient>();
        let (tx, rx) = mpsc::unbounded();
        let mut objects = Box::pin(objects_after_list(rx.reflect(writer), store.clone()));
        tx.unbounded_send(Ok(watcher::Event::Init)).expect("send");
        tx.unbounded_send(Ok(watcher::Event::InitApply(obj("a"))))
            .expect("send");
        tx.unbounded_send(Ok(watcher::Event::InitApply(obj("b"))))
            .expect("send");
        assert!(objects.next().now_or_never().is_none(), "held back");
        tx.unbounded_send(Ok(watcher::Event::InitDone))
            .expect("send");
        let mut seen = Vec::new();
        for _ in 0..2 {
            let o = objects.next().await.expect("item").expect("object");
            assert!(
                store.get(&ObjectRef::from_obj(&o)).is_some(),
                "in the store"
            );
            seen.push(Ok(o));
        }
        assert_eq!(names(&seen), ["a", "b"]);
        // Live changes pass at once; deletions yield nothing.
        tx.unbounded_send(Ok(watcher::Event::Delete(obj("a"))))
            .expect("send");
        tx.unbounded_send(Ok(watcher::Event::Apply(obj("c"))))
            .expect("send");
        let c = objects.next().await.expect("item");
        assert_eq!(names(&[c]), ["c"]);
        // A re-list that misses an object does not yield it.
        tx.unbounded_send(Ok(watcher::Event::Init)).expect("send");
        tx.unbounded_send(Ok(watcher::Event::InitApply(obj("c"))))
            .expect("send");
        tx.unbounded_send(Ok(watcher::Event::InitDone))
            .expect("send");
        drop(tx);
        let rest: Vec<_> = objects.collect().await;
        assert_eq!(names(&rest), ["c"]);
        assert!(store.get(&ObjectRef::from_obj(&obj("b"))).is_none());
    }

    fn kind(e: &watcher::Event<OAuthClient>) -> String {
        match e {
            watcher::Event::Apply(o) => {
                format!("Apply {}", o.metadata.name.as_deref().unwrap_or(""))
            }
            watcher::Event::InitApply(o) => {
                format!("InitApply {}", o.metadata.name.as_deref().unwrap_or(""))
            }
            watcher::Event::Delete(o) => {
                format!("Delete {}", o.metadata.name.as_deref().unwrap_or(""))
            }
            watcher::Event::Init => "Init".to_owned(),
            watcher::Event::InitDone => "InitDone".to_owned(),
        }
    }

    type Events = std::pin::Pin<
        Box<dyn Stream<Item = Result<watcher::Event<OAuthClient>, watcher::Error>> + Send>,
    >;

    /// A store fed through [`reflect_first_list_live`], one event at a time.
    struct Fed {
        store: Store<OAuthClient>,
        tx: mpsc::UnboundedSender<Result<watcher::Event<OAuthClient>, watcher::Error>>,
        events: Events,
    }

    impl Fed {
        fn new() -> Self {
            let (store, writer) = reflector::store::<OAuthClient>();
            let (tx, rx) = mpsc::unbounded();
            Fed {
                store,
                tx,
                events: Box::pin(reflect_first_list_live(rx, writer)),
            }
        }

        /// Sends `e`; what is passed on at once (see [`kind`]).
        fn send(&mut self, e: watcher::Event<OAuthClient>) -> Option<String> {
            self.tx.unbounded_send(Ok(e)).expect("send");
            self.events
                .next()
                .now_or_never()
                .map(|e| kind(&e.expect("item").expect("event")))
        }

        fn stored(&self) -> Vec<String> {
            let mut names: Vec<String> = self.store.state().iter().map(|o| o.name_any()).collect();
            names.sort();
            names
        }
    }

    #[test]
    fn the_first_list_fills_the_store_as_it_arrives() {
        let mut fed = Fed::new();
        assert_eq!(
            fed.send(watcher::Event::Init),
            None,
            "the first Init is kept back"
        );
        assert!(
            fed.store.wait_until_ready().now_or_never().is_some(),
            "kube's Controller may run at once"
        );
        assert!(fed.store.is_empty());
        let apply = |name: &str| watcher::Event::InitApply(obj(name));
        assert_eq!(fed.send(apply("a")).as_deref(), Some("Apply a"));
        assert_eq!(fed.stored(), ["a"], "in the store before the list ends");
        assert_eq!(fed.send(apply("b")).as_deref(), Some("Apply b"));
        assert_eq!(
            fed.send(watcher::Event::InitDone).as_deref(),
            Some("InitDone")
        );
        assert_eq!(fed.stored(), ["a", "b"], "not swapped for an empty buffer");
        // Every later list is kube's: swapped in once complete.
        assert_eq!(fed.send(watcher::Event::Init).as_deref(), Some("Init"));
        assert_eq!(fed.send(apply("b")).as_deref(), Some("InitApply b"));
        assert_eq!(fed.stored(), ["a", "b"]);
        assert_eq!(
            fed.send(watcher::Event::InitDone).as_deref(),
            Some("InitDone")
        );
        assert_eq!(fed.stored(), ["b"]);
        assert_eq!(
            fed.send(watcher::Event::Delete(obj("b"))).as_deref(),
            Some("Delete b")
        );
        assert!(fed.store.is_empty());
    }

    #[test]
    fn a_first_list_started_again_ends_in_the_new_list() {
        let mut fed = Fed::new();
        assert_eq!(fed.send(watcher::Event::Init), None);
        assert_eq!(
            fed.send(watcher::Event::InitApply(obj("gone"))).as_deref(),
            Some("Apply gone")
        );
        // Cut off: the watch lists again from the start.
        assert_eq!(fed.send(watcher::Event::Init).as_deref(), Some("Init"));
        assert_eq!(
            fed.send(watcher::Event::InitApply(obj("kept"))).as_deref(),
            Some("InitApply kept")
        );
        assert_eq!(fed.stored(), ["gone"], "until the new list is complete");
        assert_eq!(
            fed.send(watcher::Event::InitDone).as_deref(),
            Some("InitDone")
        );
        assert_eq!(fed.stored(), ["kept"]);
    }

    #[tokio::test]
    async fn a_listed_flag_releases_its_waiters() {
        let flag = ListedFlag::new(false);
        let waiting = flag.clone();
        let mut wait = Box::pin(async move { waiting.wait().await });
        assert!((&mut wait).now_or_never().is_none());
        assert!(!flag.is_set());
        flag.set();
        assert!(flag.is_set());
        assert!(wait.now_or_never().is_some());
        assert!(ListedFlag::new(true).wait().now_or_never().is_some());
    }

    #[test]
    fn a_relisted_view_answers_from_the_old_list_until_the_new_one_is_complete() {
        let mut view = Relisted::<Vec<String>>::default();
        let up = |v: &mut Vec<String>, o: &OAuthClient| {
            v.push(o.metadata.name.clone().unwrap_or_default())
        };
        let rm = |v: &mut Vec<String>, o: &OAuthClient| {
            v.retain(|n| Some(n) != o.metadata.name.as_ref())
        };
        assert!(!view.follow(&watcher::Event::Apply(obj("gone")), up, rm));
        assert!(!view.follow(&watcher::Event::Init, up, rm));
        assert!(!view.follow(&watcher::Event::InitApply(obj("new")), up, rm));
        assert_eq!(view.live(), &["gone"]);
        assert!(view.follow(&watcher::Event::InitDone, up, rm));
        assert_eq!(view.live(), &["new"]);
        assert!(!view.follow(&watcher::Event::Delete(obj("new")), up, rm));
        assert!(view.live().is_empty());
    }
}

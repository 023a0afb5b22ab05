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
//! - [`Relisted`], the "build the new view during the list, swap it in
//!   when the list is complete" rule, shared by the operator's own indexes
//!   (the Secret metadata cache and the clientName index), so each of them
//!   answers from a complete view at every moment, as kube's store does.

use std::iter;

use futures::{Stream, StreamExt, stream};
use kube::{
    Resource,
    runtime::{
        reflector::{ObjectRef, Store},
        watcher,
    },
};

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
    use kube::runtime::{WatchStreamExt, reflector};

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

//! Publishing Events (`events.k8s.io/v1`), as kube's recorder does, with a
//! cache that keeps only what a repeat needs. An Event repeated for the same
//! object (same type, reason and action) within six minutes becomes a
//! series: a merge patch of its count instead of a new Event. kube's
//! recorder keeps each whole Event for that (with a copy of its key) and
//! scans them all on every publish; this one keeps, under a 64-bit hash of
//! the key, the Event's time stamp (its name is the object's name and that
//! stamp) and a count, about 60 bytes per object instead of 300, and sweeps
//! once a minute (docs/design.md, "Memory").

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as K8sEvent},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    runtime::events::{Event, EventType, Reporter},
};

/// How long a published Event can still become a series.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// What makes two Events one series: the object (its uid, or its name
/// when it has none), the type, the reason and the action. Kept as a 64-bit
/// hash ([`Key::hash`]): two keys that collided (about one chance in 10^11
/// among 10,000 objects) would count one's repeat on the other's Event.
#[derive(Hash)]
struct Key<'a> {
    namespace: Option<&'a str>,
    regarding: &'a str,
    warning: bool,
    reason: &'a str,
    action: &'a str,
}

impl Key<'_> {
    fn hash(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(self, &mut h);
        std::hash::Hasher::finish(&h)
    }
}

/// The Event last published under a key.
#[derive(Debug)]
struct Published {
    /// The nanosecond time stamp in the Event's name ([`event_name`]).
    stamp: i128,
    count: i32,
    at: Instant,
}

#[derive(Debug, Default)]
struct Recent {
    by_key: HashMap<u64, Published>,
    swept: Option<Instant>,
}

/// An Event's name: the object's name (or the controller's) and the time
/// stamp of its first occurrence, in hex.
fn event_name(regarding: &ObjectReference, controller: &str, stamp: i128) -> String {
    format!(
        "{}.{stamp:x}",
        regarding.name.as_deref().unwrap_or(controller)
    )
}

/// Publishes Events for the operator's objects. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    reporter: Arc<Reporter>,
    recent: Arc<Mutex<Recent>>,
}

impl Recorder {
    /// A recorder reporting as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Recorder {
            client,
            reporter: Arc::new(reporter),
            recent: Arc::default(),
        }
    }

    /// Publishes `ev` about `regarding`: a new Event, or the next count of
    /// the same Event published within six minutes.
    pub async fn publish(&self, ev: &Event, regarding: &ObjectReference) -> kube::Result<()> {
        let key = Key {
            namespace: regarding.namespace.as_deref(),
            regarding: regarding
                .uid
                .as_deref()
                .or(regarding.name.as_deref())
                .unwrap_or_default(),
            warning: ev.type_ == EventType::Warning,
            reason: &ev.reason,
            action: &ev.action,
        }
        .hash();
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let repeat = self.repeat_of(key);
        let now = Timestamp::now();
        let count = repeat.as_ref().map_or(1, |(_, c)| *c);
        let stamp = match repeat {
            Some((stamp, count)) => {
                let series = serde_json::json!({
                    "series": {"count": count, "lastObservedTime": MicroTime(now)}
                });
                let name = event_name(regarding, &self.reporter.controller, stamp);
                events
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                    .await?;
                stamp
            }
            None => {
                let stamp = now.as_nanosecond();
                let event = self.new_event(ev, regarding, now, stamp);
                events.create(&PostParams::default(), &event).await?;
                stamp
            }
        };
        self.lock().by_key.insert(
            key,
            Published {
                stamp,
                count,
                at: Instant::now(),
            },
        );
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        // Each update is one statement; a poisoned lock is safe to use.
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The name's time stamp and the next count of the Event `key` (a
    /// [`Key::hash`]) repeats, if it is recent; Events too old to repeat are
    /// forgotten about once a minute.
    fn repeat_of(&self, key: u64) -> Option<(i128, i32)> {
        let mut recent = self.lock();
        let now = Instant::now();
        if recent
            .swept
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(60))
        {
            recent
                .by_key
                .retain(|_, p| now.duration_since(p.at) < SERIES_WINDOW);
            recent.swept = Some(now);
        }
        recent
            .by_key
            .get(&key)
            .filter(|p| now.duration_since(p.at) < SERIES_WINDOW)
            .map(|p| (p.stamp, p.count + 1))
    }

    fn new_event(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
        now: Timestamp,
        stamp: i128,
    ) -> K8sEvent {
        let controller = &self.reporter.controller;
        K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            note: ev.note.clone(),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(event_name(regarding, controller, stamp)),
                ..ObjectMeta::default()
            },
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            type_: Some(if ev.type_ == EventType::Warning {
                "Warning".to_owned()
            } else {
                "Normal".to_owned()
            }),
            related: ev.secondary.clone(),
            ..K8sEvent::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::client::Body;

    use super::*;

    #[tokio::test]
    async fn a_repeat_within_the_window_counts_a_series() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let recorder = Recorder::new(
            Client::new(service, "default"),
            Reporter {
                controller: "collibra-oauth-operator".into(),
                instance: None,
            },
        );
        let regarding = ObjectReference {
            namespace: Some("team-a".into()),
            name: Some("billing".into()),
            uid: Some("uid-1".into()),
            ..ObjectReference::default()
        };
        let ev = |reason: &str| Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some("note".into()),
            action: "Reconcile".into(),
            secondary: None,
        };
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..4 {
                let (req, send) = handle.next_request().await.expect("a request");
                let (parts, body) = req.into_parts();
                let body: serde_json::Value =
                    serde_json::from_slice(&body.collect_bytes().await.expect("body"))
                        .expect("json");
                seen.push((
                    parts.method.to_string(),
                    parts.uri.path().to_owned(),
                    body.clone(),
                ));
                send.send_response(
                    Response::builder()
                        .status(200)
                        .body(Body::from(serde_json::to_vec(&body).expect("json")))
                        .expect("response"),
                );
            }
            seen
        });
        recorder
            .publish(&ev("SecretConflict"), &regarding)
            .await
            .expect("first");
        recorder
            .publish(&ev("SecretConflict"), &regarding)
            .await
            .expect("repeat");
        recorder
            .publish(&ev("SecretConflict"), &regarding)
            .await
            .expect("repeat");
        recorder
            .publish(&ev("NameConflict"), &regarding)
            .await
            .expect("another");
        let seen = server.await.expect("server");
        let base = "/apis/events.k8s.io/v1/namespaces/team-a/events";
        assert_eq!((seen[0].0.as_str(), seen[0].1.as_str()), ("POST", base));
        assert_eq!(seen[0].2["reason"], "SecretConflict");
        assert_eq!(seen[0].2["type"], "Warning");
        assert_eq!(seen[0].2["regarding"]["uid"], "uid-1");
        assert_eq!(seen[0].2["reportingController"], "collibra-oauth-operator");
        let name = seen[0].2["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        assert!(name.starts_with("billing."), "{name}");
        for (i, count) in [(1, 2), (2, 3)] {
            assert_eq!(seen[i].0, "PATCH");
            assert_eq!(seen[i].1, format!("{base}/{name}"));
            assert_eq!(seen[i].2["series"]["count"], count);
        }
        assert_eq!(seen[3].0, "POST", "another reason is another Event");
        assert_eq!(seen[3].2["reason"], "NameConflict");
    }
}

//! The two watches of a latency run: first sightings of a Secret with
//! credentials and of `Ready=True`, stamped on receipt.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    api::DynamicObject,
    runtime::{WatchStreamExt, watcher},
};
use tokio::task::JoinHandle;

use super::{Subject, has_credentials, is_ready};

/// When each object was first seen with credentials and Ready.
#[derive(Default)]
struct Seen {
    credentials: HashMap<String, Instant>,
    ready: HashMap<String, Instant>,
    /// Lists after the first one, summed over both watches: each is a
    /// restarted watch, whose first stamps may come late.
    relists: u64,
}

/// The two watches, stamping first sightings; stopped when dropped.
pub struct Observer {
    seen: Arc<Mutex<Seen>>,
    changed: tokio::sync::watch::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Observer {
    /// Starts both watches on `ns` and returns once each has listed.
    pub async fn start(client: &Client, ns: &str, subject: &Subject) -> anyhow::Result<Observer> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (tx, changed) = tokio::sync::watch::channel(0u64);
        let tx = Arc::new(tx);
        let (listed_tx, mut listed_rx) = tokio::sync::mpsc::channel::<()>(2);

        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let keys = subject.credential_keys;
        let secret_task = spawn_stamper(
            secrets,
            Arc::clone(&seen),
            Arc::clone(&tx),
            listed_tx.clone(),
            move |s: &Secret| has_credentials(s, &keys),
            |seen: &mut Seen| &mut seen.credentials,
        );
        let objects = subject.api(client, ns);
        let object_task = spawn_stamper(
            objects,
            Arc::clone(&seen),
            tx,
            listed_tx,
            |o: &DynamicObject| is_ready(&o.data),
            |seen: &mut Seen| &mut seen.ready,
        );
        let observer = Observer {
            seen,
            changed,
            tasks: vec![secret_task, object_task],
        };
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(120), listed_rx.recv())
                .await
                .context("the latency watches did not list within 120 s")?
                .context("a latency watch ended before it listed")?;
        }
        Ok(observer)
    }

    /// Objects seen Ready so far.
    pub fn ready_count(&self) -> usize {
        self.lock().ready.len()
    }

    /// Objects whose Secret was seen with credentials so far.
    pub fn credentials_count(&self) -> usize {
        self.lock().credentials.len()
    }

    /// Watch restarts so far.
    pub fn relists(&self) -> u64 {
        self.lock().relists
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        // A stamping task that panicked holding the lock leaves the maps
        // as they were: still the best record there is.
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When `name` was first seen with credentials and Ready, if both were.
    fn stamps(&self, name: &str) -> Option<(Instant, Instant)> {
        let seen = self.lock();
        Some((*seen.credentials.get(name)?, *seen.ready.get(name)?))
    }

    /// Waits until every object of `names` was seen with credentials and
    /// Ready, and returns their stamps in order; fails after `limit`.
    pub async fn wait_all(
        &mut self,
        names: &[String],
        limit: Duration,
    ) -> anyhow::Result<Vec<(Instant, Instant)>> {
        let deadline = Instant::now() + limit;
        loop {
            self.changed.mark_unchanged();
            let got: Vec<_> = names.iter().filter_map(|n| self.stamps(n)).collect();
            if got.len() == names.len() {
                return Ok(got);
            }
            let now = Instant::now();
            if now >= deadline {
                let missing: Vec<&str> = names
                    .iter()
                    .filter(|n| self.stamps(n).is_none())
                    .map(String::as_str)
                    .take(5)
                    .collect();
                bail!(
                    "{} of {} objects not Ready with credentials after {limit:?} (first: {})",
                    names.len() - got.len(),
                    names.len(),
                    missing.join(", ")
                );
            }
            let _ = tokio::time::timeout(deadline - now, self.changed.changed()).await;
        }
    }

    /// Waits until at least `n` objects are Ready and `n` Secrets hold
    /// credentials; fails after `limit`.
    pub async fn wait_count(&mut self, n: usize, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let mut last_print = Instant::now();
        loop {
            self.changed.mark_unchanged();
            let (ready, creds) = (self.ready_count(), self.credentials_count());
            if ready >= n && creds >= n {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "only {ready} of {n} objects Ready ({creds} Secrets with credentials) after {limit:?}"
                );
            }
            if last_print.elapsed() > Duration::from_secs(10) {
                last_print = Instant::now();
                eprintln!("latency: {ready}/{n} resident objects Ready");
            }
            let _ = tokio::time::timeout(
                (deadline - now).min(Duration::from_secs(1)),
                self.changed.changed(),
            )
            .await;
        }
    }
}

/// Watches `api`, stamping into the map `field` picks the first moment an
/// object satisfies `done`; signals `listed` after the first list.
fn spawn_stamper<K>(
    api: Api<K>,
    seen: Arc<Mutex<Seen>>,
    tx: Arc<tokio::sync::watch::Sender<u64>>,
    listed: tokio::sync::mpsc::Sender<()>,
    done: impl Fn(&K) -> bool + Send + 'static,
    field: fn(&mut Seen) -> &mut HashMap<String, Instant>,
) -> JoinHandle<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::spawn(async move {
        let mut announced = false;
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
        while let Some(ev) = events.next().await {
            // Stamped on receipt, before anything else is done with it.
            let now = Instant::now();
            let Ok(ev) = ev else { continue };
            let obj = match ev {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => o,
                watcher::Event::Init => {
                    if announced && let Ok(mut s) = seen.lock() {
                        s.relists += 1;
                    }
                    continue;
                }
                watcher::Event::InitDone => {
                    // The first complete list, even if an earlier one
                    // failed half-way.
                    if !announced {
                        announced = true;
                        let _ = listed.send(()).await;
                    }
                    tx.send_modify(|v| *v += 1);
                    continue;
                }
                watcher::Event::Delete(_) => continue,
            };
            if !done(&obj) {
                continue;
            }
            let name = obj.meta().name.clone().unwrap_or_default();
            let fresh = match seen.lock() {
                Ok(mut s) => {
                    let map = field(&mut s);
                    match map.entry(name) {
                        std::collections::hash_map::Entry::Occupied(_) => false,
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(now);
                            true
                        }
                    }
                }
                Err(_) => false,
            };
            if fresh {
                tx.send_modify(|v| *v += 1);
            }
        }
    })
}

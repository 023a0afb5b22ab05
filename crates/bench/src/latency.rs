//! Apply-to-Ready latency (issue 22), shared by `collibra-oauth-bench
//! --mode latency` and `collibra-oauth-bench-peer --mode latency`.
//!
//! With R objects already Ready and the operator quiet, objects are applied
//! one at a time (each waited for, then a pause) and then in bursts. Two
//! watches started before the first create, one on the namespace's Secrets
//! and one on the custom resource, stamp for each object the moment its
//! Secret first holds both credential keys and the moment `Ready=True`
//! first shows; a sample is that moment minus the moment the create's
//! response arrived.
//!
//! Beside the samples, [`measure_floor`] times the requests a registration
//! cannot do without (the critical path), one after another against the
//! same API server and backend, so that the percentiles can be read as a
//! multiple of what the requests alone cost; [`post_burst`] times a burst's
//! backend POSTs at the operator's concurrency.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use futures::{StreamExt, TryStreamExt, future::BoxFuture};
use k8s_openapi::{
    ByteString,
    api::{core::v1::Secret, events::v1::Event},
    apimachinery::pkg::apis::meta::v1::{MicroTime, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource as _,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    discovery::ApiResource,
    runtime::{WatchStreamExt, watcher},
};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::round3;

/// The flags of the latency mode, shared by both benchmarks.
#[derive(clap::Args, Clone, Debug)]
pub struct LatencyArgs {
    /// Latency mode: the numbers of Ready objects (R) to measure with,
    /// ascending; residents are added between phases (the samples of
    /// earlier phases count as residents).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub resident: Vec<usize>,
    /// Latency mode: objects applied one at a time, per R.
    #[arg(long, default_value_t = 100)]
    pub samples: usize,
    /// Latency mode: pause after each single object is Ready.
    #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
    pub spacing: Duration,
    /// Latency mode: burst sizes, per R (comma-separated; empty for none).
    #[arg(long, value_delimiter = ',', default_value = "20,100")]
    pub bursts: Vec<usize>,
    /// Latency mode: iterations of the critical-path floor, per R.
    #[arg(long, default_value_t = 20)]
    pub floor_samples: usize,
    /// Latency mode: longest wait for one object to be Ready (a burst gets
    /// 1 s more per object).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub sample_timeout: Duration,
}

impl LatencyArgs {
    /// The phase parameters, with `field_manager` for the creates.
    pub fn params(&self, create_concurrency: usize, field_manager: &'static str) -> Params {
        Params {
            samples: self.samples,
            spacing: self.spacing,
            bursts: self.bursts.iter().copied().filter(|b| *b > 0).collect(),
            create_concurrency,
            sample_timeout: self.sample_timeout,
            field_manager,
        }
    }

    /// The R values in ascending order, without repeats.
    pub fn residents(&self) -> Vec<usize> {
        let mut r = self.resident.clone();
        r.sort_unstable();
        r.dedup();
        r
    }
}

/// Percentiles of a set of samples, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median (nearest rank).
    pub p50: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
    /// Smallest sample.
    pub min: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Summary {
    /// The percentiles of `samples` by the nearest-rank method (the value
    /// at rank ceil(p/100 x n)), so every figure is a measured sample; all
    /// zero when there are none. Non-finite samples are left out.
    pub fn of(samples: &[f64]) -> Summary {
        let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if s.is_empty() {
            return Summary::default();
        }
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let rank = |p: f64| {
            let r = (p / 100.0 * n as f64).ceil() as usize;
            s[r.clamp(1, n) - 1]
        };
        Summary {
            n,
            p50: round3(rank(50.0)),
            p90: round3(rank(90.0)),
            p99: round3(rank(99.0)),
            max: round3(s[n - 1]),
            min: round3(s[0]),
            mean: round3(s.iter().sum::<f64>() / n as f64),
        }
    }
}

/// Milliseconds from `from` to `to`, zero if `to` came first.
fn ms_between(from: Instant, to: Instant) -> f64 {
    to.checked_duration_since(from)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

/// What is measured: the custom resource, how an object of it looks, which
/// Secret keys mean "has credentials", and how its status is written.
#[derive(Clone)]
pub struct Subject {
    /// The custom resource the operator watches.
    pub resource: ApiResource,
    /// The object called `name`; its Secret must be called `name` too.
    pub object: fn(&str) -> Value,
    /// The Secret keys that hold the client id and secret.
    pub credential_keys: [&'static str; 2],
    /// The status the operator writes when it is done (for the floor), and
    /// whether it writes it by server-side apply (else a merge patch).
    pub ready_status: fn() -> Value,
    /// Whether the status write is a server-side apply.
    pub status_by_apply: bool,
}

impl Subject {
    /// This operator's OAuthClient, with its default Secret.
    pub fn oauth_client() -> Subject {
        Subject {
            resource: ApiResource {
                group: "oauth.collibra.dev".to_owned(),
                version: "v1alpha1".to_owned(),
                api_version: "oauth.collibra.dev/v1alpha1".to_owned(),
                kind: "OAuthClient".to_owned(),
                plural: "oauthclients".to_owned(),
            },
            object: |name| {
                json!({
                    "apiVersion": "oauth.collibra.dev/v1alpha1",
                    "kind": "OAuthClient",
                    "metadata": { "name": name },
                    "spec": { "clientName": format!("latency-{name}") },
                })
            },
            credential_keys: ["client_id", "client_secret"],
            ready_status: || {
                json!({
                    "clientId": "urn:sys:env:floor:i:floor",
                    "conditions": [{
                        "type": "Ready",
                        "status": "True",
                        "reason": "Registered",
                        "message": "registered in Collibra; credentials in Secret",
                        "lastTransitionTime": Time(Timestamp::now()),
                    }],
                })
            },
            status_by_apply: true,
        }
    }

    fn api(&self, client: &Client, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), ns, &self.resource)
    }
}

/// Whether a custom resource's JSON shows `Ready=True` (both operators
/// write a `Ready` condition in `status.conditions`).
pub fn is_ready(obj: &Value) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Whether a Secret holds both `keys`, non-empty.
pub fn has_credentials(s: &Secret, keys: &[&str; 2]) -> bool {
    keys.iter().all(|k| {
        s.data
            .as_ref()
            .and_then(|d| d.get(*k))
            .is_some_and(|v| !v.0.is_empty())
    })
}

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
        let mut lists = 0u64;
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
        while let Some(ev) = events.next().await {
            // Stamped on receipt, before anything else is done with it.
            let now = Instant::now();
            let Ok(ev) = ev else { continue };
            let obj = match ev {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => o,
                watcher::Event::Init => {
                    lists += 1;
                    if lists > 1
                        && let Ok(mut s) = seen.lock()
                    {
                        s.relists += 1;
                    }
                    continue;
                }
                watcher::Event::InitDone => {
                    if lists == 1 {
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

/// How the phases run.
#[derive(Clone, Debug)]
pub struct Params {
    /// Objects applied one at a time.
    pub samples: usize,
    /// Pause after each single object is Ready, before the next.
    pub spacing: Duration,
    /// Burst sizes, in order.
    pub bursts: Vec<usize>,
    /// Creates in flight at once, for residents and bursts.
    pub create_concurrency: usize,
    /// Longest wait for one object (singles), or for one burst (plus 1 s
    /// per object).
    pub sample_timeout: Duration,
    /// Field manager of the benchmark's creates.
    pub field_manager: &'static str,
}

/// What the driver of a run supplies about the operator under test.
pub trait Probe: Sync {
    /// Returns once the operator has stopped working (steady state).
    fn settle(&self) -> BoxFuture<'_, anyhow::Result<()>>;
    /// Counters to report per phase (requests by kind), as whole numbers.
    fn counters(&self) -> BoxFuture<'_, anyhow::Result<BTreeMap<String, u64>>>;
}

/// Creates (server-side apply) `name` and returns when the response came.
async fn create(
    api: &Api<DynamicObject>,
    subject: &Subject,
    name: &str,
    manager: &str,
) -> anyhow::Result<Instant> {
    let obj = (subject.object)(name);
    api.patch(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&obj),
    )
    .await
    .with_context(|| format!("creating {name}"))?;
    Ok(Instant::now())
}

/// The samples of one phase.
fn samples_of(created: &[Instant], stamps: &[(Instant, Instant)]) -> (Vec<f64>, Vec<f64>) {
    created
        .iter()
        .zip(stamps)
        .map(|(c, (cred, ready))| (ms_between(*c, *cred), ms_between(*c, *ready)))
        .unzip()
}

/// One latency run against one operator: the watches, and what is needed
/// to create objects and settle the operator.
pub struct Latency<'a> {
    /// Admin client.
    pub client: &'a Client,
    /// The namespace the operator watches.
    pub ns: &'a str,
    /// What is created.
    pub subject: &'a Subject,
    /// How the phases run.
    pub params: &'a Params,
    /// The operator under test.
    pub probe: &'a dyn Probe,
    observer: Observer,
    next_resident: usize,
}

impl<'a> Latency<'a> {
    /// Starts the watches (before any create) and returns once they listed.
    pub async fn start(
        client: &'a Client,
        ns: &'a str,
        subject: &'a Subject,
        params: &'a Params,
        probe: &'a dyn Probe,
    ) -> anyhow::Result<Latency<'a>> {
        let observer = Observer::start(client, ns, subject).await?;
        Ok(Latency {
            client,
            ns,
            subject,
            params,
            probe,
            observer,
            next_resident: 0,
        })
    }

    /// Creates residents until `r` objects are Ready (the samples of
    /// earlier phases count), then waits for the operator to settle.
    pub async fn ensure_resident(&mut self, r: usize) -> anyhow::Result<()> {
        let have = self.observer.ready_count();
        if r > have {
            let api = self.subject.api(self.client, self.ns);
            let add = r - have;
            eprintln!("latency: creating {add} resident objects (R = {r})");
            let first = self.next_resident;
            self.next_resident += add;
            let (subject, manager) = (self.subject, self.params.field_manager);
            futures::stream::iter(first..first + add)
                .map(|i| {
                    let api = api.clone();
                    async move { create(&api, subject, &format!("res-{i:05}"), manager).await }
                })
                .buffer_unordered(self.params.create_concurrency.max(1))
                .try_collect::<Vec<_>>()
                .await?;
            let limit = Duration::from_secs(300) + Duration::from_millis(100 * r as u64);
            self.observer.wait_count(r, limit).await?;
        }
        self.probe.settle().await
    }

    /// Runs the singles and the bursts with the residents in place; `tag`
    /// keeps the names of each phase apart.
    pub async fn run_samples(&mut self, tag: &str) -> anyhow::Result<Value> {
        let (subject, params, probe) = (self.subject, self.params, self.probe);
        let api = subject.api(self.client, self.ns);
        let resident = self.observer.ready_count();
        let relists_before = self.observer.relists();

        // One at a time: create, wait for it, pause.
        eprintln!(
            "latency: R={resident}: {} single objects, {:?} apart",
            params.samples, params.spacing
        );
        let c0 = probe.counters().await?;
        let t0 = Instant::now();
        let mut created = Vec::with_capacity(params.samples);
        let mut stamps = Vec::with_capacity(params.samples);
        for k in 0..params.samples {
            let name = format!("lat-{tag}-s{k:04}");
            created.push(create(&api, subject, &name, params.field_manager).await?);
            let got = self
                .observer
                .wait_all(std::slice::from_ref(&name), params.sample_timeout)
                .await?;
            stamps.extend(got);
            tokio::time::sleep(params.spacing).await;
        }
        let singles_seconds = t0.elapsed().as_secs_f64();
        let requests = crate::diff_counts(&c0, &probe.counters().await?);
        let (secret_ms, ready_ms) = samples_of(&created, &stamps);
        let single = json!({
            "samples": params.samples,
            "spacing_ms": params.spacing.as_millis() as u64,
            "seconds": round3(singles_seconds),
            "secret_ms": Summary::of(&secret_ms),
            "ready_ms": Summary::of(&ready_ms),
            "requests_per_object": crate::ratios(&requests, params.samples as f64),
            "requests": requests,
            "raw_secret_ms": secret_ms.iter().map(|x| round3(*x)).collect::<Vec<_>>(),
            "raw_ready_ms": ready_ms.iter().map(|x| round3(*x)).collect::<Vec<_>>(),
        });

        // Bursts: all created at once (create_concurrency in flight).
        let mut bursts = Vec::new();
        for &b in &params.bursts {
            probe.settle().await?;
            eprintln!("latency: R={resident}: burst of {b}");
            let names: Vec<String> = (0..b).map(|j| format!("lat-{tag}-b{b}-{j:04}")).collect();
            let c0 = probe.counters().await?;
            let started = Instant::now();
            let created: Vec<Instant> = futures::stream::iter(names.iter())
                .map(|n| create(&api, subject, n, params.field_manager))
                .buffered(params.create_concurrency.max(1))
                .try_collect()
                .await?;
            let created_all = Instant::now();
            let limit = params.sample_timeout + Duration::from_secs(b as u64);
            let stamps = self.observer.wait_all(&names, limit).await?;
            let requests = crate::diff_counts(&c0, &probe.counters().await?);
            let (secret_ms, ready_ms) = samples_of(&created, &stamps);
            let last = |pick: fn(&(Instant, Instant)) -> Instant| {
                stamps.iter().map(pick).max().unwrap_or(started)
            };
            let (all_ready, all_secret) = (last(|s| s.1), last(|s| s.0));
            bursts.push(json!({
                "size": b,
                "create_seconds": round3(created_all.duration_since(started).as_secs_f64()),
                "all_secret_seconds": round3(ms_between(started, all_secret) / 1000.0),
                "all_ready_seconds": round3(ms_between(started, all_ready) / 1000.0),
                "all_ready_after_last_create_seconds": round3(ms_between(created_all, all_ready) / 1000.0),
                "secret_ms": Summary::of(&secret_ms),
                "ready_ms": Summary::of(&ready_ms),
                "requests": requests,
            }));
        }
        Ok(json!({
            "resident": resident,
            "single": single,
            "bursts": bursts,
            "watch_relists": self.observer.relists() - relists_before,
        }))
    }
}

/// A backend registration as a client sees it: one POST, timed by the
/// caller. `i` makes names unique.
pub trait Backend: Sync {
    /// One client registration.
    fn post(&self, i: usize) -> BoxFuture<'_, anyhow::Result<()>>;
}

/// The Collibra simulator's `POST /clients`, with a static admin token
/// (the simulator's default accepts `static-admin-token`).
pub struct SimPost {
    /// Keep-alive client, as the operator's.
    pub http: reqwest::Client,
    /// The simulator's base URL.
    pub url: String,
    /// Prefix of the registered names.
    pub prefix: String,
    /// Counts POSTs, so that no name repeats (the simulator refuses a
    /// taken name).
    pub sent: std::sync::atomic::AtomicUsize,
}

impl SimPost {
    /// POSTs to the simulator at `url`, names starting with `prefix`.
    pub fn new(http: reqwest::Client, url: String, prefix: String) -> SimPost {
        SimPost {
            http,
            url,
            prefix,
            sent: Default::default(),
        }
    }
}

impl Backend for SimPost {
    fn post(&self, i: usize) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            self.http
                .post(format!("{}/rest/auth/v1/clients", self.url))
                .bearer_auth("static-admin-token")
                .json(&json!({
                    "client_name": format!(
                        "{}-{i}-{}",
                        self.prefix,
                        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    ),
                    "grant_types": ["client_credentials"],
                }))
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            Ok(())
        })
    }
}

/// The requests of one registration, timed one after another.
const FLOOR_STEPS: [&str; 6] = [
    "object_metadata_patch",
    "secret_create",
    "backend_post",
    "secret_patch",
    "event_create",
    "status_write",
];

/// Times, `iterations` times against `client` and `backend`, each request
/// a registration's critical path holds: a metadata merge patch of the
/// object (as a finalizer write), the Secret's create (the claim), the
/// backend POST, the Secret's patch (the credentials), an Event, and the
/// status write. Runs in `ns`, which no running operator may watch; the
/// objects are deleted at the end. `secret_path` and `ready_path` name the
/// steps summed up to the Secret and to Ready.
pub async fn measure_floor(
    client: &Client,
    ns: &str,
    subject: &Subject,
    backend: &dyn Backend,
    iterations: usize,
    secret_path: &[&str],
    ready_path: &[&str],
) -> anyhow::Result<Value> {
    let api = subject.api(client, ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let manager = "collibra-oauth-bench-floor";
    // A first POST opens the connection, as the operator's is open.
    backend.post(usize::MAX).await?;
    let mut steps: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut secret_sums = Vec::with_capacity(iterations);
    let mut ready_sums = Vec::with_capacity(iterations);
    let run = format!("{:x}", Timestamp::now().as_millisecond());
    for i in 0..iterations {
        let name = format!("floor-{run}-{i:03}");
        let obj = (subject.object)(&name);
        let created = api
            .patch(
                &name,
                &PatchParams::apply(manager).force(),
                &Patch::Apply(&obj),
            )
            .await?;
        let mut took: BTreeMap<&str, f64> = BTreeMap::new();

        let t = Instant::now();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "metadata": { "annotations": { "bench.collibra.dev/floor": "1" } } }),
            ),
        )
        .await?;
        took.insert("object_metadata_patch", ms_between(t, Instant::now()));

        let mut claim = Secret::default();
        claim.metadata.name = Some(name.clone());
        claim.metadata.labels = Some(
            [(
                "app.kubernetes.io/managed-by".to_owned(),
                "bench-floor".to_owned(),
            )]
            .into(),
        );
        claim.metadata.annotations = Some(
            [(
                "oauth.collibra.dev/registering-since".to_owned(),
                Timestamp::now().to_string(),
            )]
            .into(),
        );
        claim.data = Some(
            [(
                "client_name".to_owned(),
                ByteString(name.clone().into_bytes()),
            )]
            .into(),
        );
        let t = Instant::now();
        secrets.create(&PostParams::default(), &claim).await?;
        took.insert("secret_create", ms_between(t, Instant::now()));

        let t = Instant::now();
        backend.post(i).await?;
        took.insert("backend_post", ms_between(t, Instant::now()));

        let creds = json!({
            "metadata": { "annotations": { "oauth.collibra.dev/registering-since": null } },
            "data": {
                "client_id": b64(&format!("urn:sys:env:floor:i:{i}")),
                "client_secret": b64("floor-secret-floor-secret-floor-secret"),
            },
        });
        let t = Instant::now();
        secrets
            .patch(&name, &PatchParams::default(), &Patch::Merge(&creds))
            .await?;
        took.insert("secret_patch", ms_between(t, Instant::now()));

        let mut ev = Event::default();
        ev.metadata.name = Some(format!("{name}.{i:x}"));
        ev.event_time = Some(MicroTime(Timestamp::now()));
        ev.reporting_controller = Some("collibra-oauth-bench".to_owned());
        ev.reporting_instance = Some("collibra-oauth-bench-floor".to_owned());
        ev.action = Some("Registered".to_owned());
        ev.reason = Some("Registered".to_owned());
        ev.type_ = Some("Normal".to_owned());
        ev.note = Some("registered (floor measurement)".to_owned());
        ev.regarding = Some(k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(subject.resource.api_version.clone()),
            kind: Some(subject.resource.kind.clone()),
            name: Some(name.clone()),
            namespace: Some(ns.to_owned()),
            uid: created.meta().uid.clone(),
            ..Default::default()
        });
        let t = Instant::now();
        events.create(&PostParams::default(), &ev).await?;
        took.insert("event_create", ms_between(t, Instant::now()));

        let status = json!({
            "apiVersion": subject.resource.api_version,
            "kind": subject.resource.kind,
            "status": (subject.ready_status)(),
        });
        let t = Instant::now();
        if subject.status_by_apply {
            api.patch_status(
                &name,
                &PatchParams::apply(manager).force(),
                &Patch::Apply(&status),
            )
            .await?;
        } else {
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
        }
        took.insert("status_write", ms_between(t, Instant::now()));

        let sum = |path: &[&str]| {
            path.iter()
                .map(|s| took.get(s).copied().unwrap_or(0.0))
                .sum::<f64>()
        };
        secret_sums.push(sum(secret_path));
        ready_sums.push(sum(ready_path));
        for (k, v) in took {
            steps.entry(k).or_default().push(v);
        }
    }
    // Nothing holds these objects (no finalizer), so they go at once.
    let lp = ListParams::default();
    api.delete_collection(&DeleteParams::default(), &lp).await?;
    secrets
        .delete_collection(
            &DeleteParams::default(),
            &lp.clone()
                .labels("app.kubernetes.io/managed-by=bench-floor"),
        )
        .await?;
    let secret = Summary::of(&secret_sums);
    let ready = Summary::of(&ready_sums);
    Ok(json!({
        "iterations": iterations,
        "steps_ms": steps
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Summary::of(v)))
            .collect::<BTreeMap<_, _>>(),
        "secret_path": secret_path,
        "ready_path": ready_path,
        "secret_ms": secret,
        "ready_ms": ready,
    }))
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The steps of this operator's critical path, to the Secret and to Ready
/// (docs/design.md, "Requests per registration").
pub const OPERATOR_SECRET_PATH: [&str; 4] = [
    "object_metadata_patch",
    "secret_create",
    "backend_post",
    "secret_patch",
];

/// This operator's path to Ready: the Secret's, then the Event and the
/// status.
pub const OPERATOR_READY_PATH: [&str; 6] = FLOOR_STEPS;

/// Seconds for `count` backend POSTs with `concurrency` in flight: the
/// least a burst of `count` registrations can take.
pub async fn post_burst(
    backend: &dyn Backend,
    count: usize,
    concurrency: usize,
    first_index: usize,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    futures::stream::iter(first_index..first_index + count)
        .map(|i| backend.post(i))
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(t.elapsed().as_secs_f64())
}

/// Adds, to a phase report of [`run_samples`], the floor and the ratios:
/// single p99 over the floor's median, each burst's time to all Ready over
/// its POSTs at the operator's concurrency.
pub async fn with_floors(
    mut phase: Value,
    floor: Value,
    backend: &dyn Backend,
    concurrency: usize,
) -> anyhow::Result<Value> {
    let ratio = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) if b > 0.0 => json!(round3(a / b)),
        _ => Value::Null,
    };
    phase["single"]["ready_p99_to_floor"] = ratio(
        &phase["single"]["ready_ms"]["p99"],
        &floor["ready_ms"]["p50"],
    );
    phase["single"]["secret_p99_to_floor"] = ratio(
        &phase["single"]["secret_ms"]["p99"],
        &floor["secret_ms"]["p50"],
    );
    phase["single"]["ready_p50_to_floor"] = ratio(
        &phase["single"]["ready_ms"]["p50"],
        &floor["ready_ms"]["p50"],
    );
    let mut index = 1_000_000;
    if let Some(bursts) = phase["bursts"].as_array_mut() {
        for b in bursts {
            let size = b["size"].as_u64().unwrap_or(0) as usize;
            let secs = post_burst(backend, size, concurrency, index).await?;
            index += size;
            b["post_floor_seconds"] = json!(round3(secs));
            b["post_floor_concurrency"] = json!(concurrency);
            b["all_ready_to_post_floor"] = ratio(&b["all_ready_seconds"], &json!(secs));
        }
    }
    phase["floor"] = floor;
    Ok(phase)
}

/// Prints one phase's figures as a table.
pub fn print_phase(who: &str, phase: &Value) {
    let f = |v: &Value| v.as_f64().map_or("n/a".to_owned(), |x| format!("{x:.1}"));
    let sum = |v: &Value| {
        format!(
            "{:>8} {:>8} {:>8} {:>8}",
            f(&v["p50"]),
            f(&v["p90"]),
            f(&v["p99"]),
            f(&v["max"])
        )
    };
    println!(
        "{who}: R = {}, {} samples {} ms apart (watch relists: {})",
        phase["resident"],
        phase["single"]["samples"],
        phase["single"]["spacing_ms"],
        phase["watch_relists"]
    );
    println!(
        "  {:<32} {:>8} {:>8} {:>8} {:>8}",
        "ms", "p50", "p90", "p99", "max"
    );
    println!(
        "  {:<32} {}",
        "single: create -> Secret",
        sum(&phase["single"]["secret_ms"])
    );
    println!(
        "  {:<32} {}",
        "single: create -> Ready",
        sum(&phase["single"]["ready_ms"])
    );
    println!(
        "  {:<32} {}",
        "floor: path to Secret",
        sum(&phase["floor"]["secret_ms"])
    );
    println!(
        "  {:<32} {}",
        "floor: path to Ready",
        sum(&phase["floor"]["ready_ms"])
    );
    println!(
        "  p99/floor: Ready {}, Secret {}; single requests/object: {}",
        f(&phase["single"]["ready_p99_to_floor"]),
        f(&phase["single"]["secret_p99_to_floor"]),
        phase["single"]["requests_per_object"]
    );
    for b in phase["bursts"].as_array().into_iter().flatten() {
        println!(
            "  burst {:>4}: all Ready {:>7.3} s (after last create {:.3} s), {} POSTs at concurrency {}: {:.3} s, ratio {}; per object Ready {}",
            b["size"],
            b["all_ready_seconds"].as_f64().unwrap_or(f64::NAN),
            b["all_ready_after_last_create_seconds"]
                .as_f64()
                .unwrap_or(f64::NAN),
            b["size"],
            b["post_floor_concurrency"],
            b["post_floor_seconds"].as_f64().unwrap_or(f64::NAN),
            f(&b["all_ready_to_post_floor"]),
            sum(&b["ready_ms"]),
        );
    }
}

/// The operator's `--concurrency` among its flags, else its default (16,
/// `src/config.rs`).
pub fn operator_concurrency(args: &[String]) -> usize {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--concurrency" {
            if let Some(v) = it.next().and_then(|v| v.parse().ok()) {
                return v;
            }
        } else if let Some(v) = a
            .strip_prefix("--concurrency=")
            .and_then(|v| v.parse().ok())
        {
            return v;
        }
    }
    16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&xs);
        assert_eq!(
            (s.n, s.p50, s.p90, s.p99, s.max, s.min),
            (100, 50.0, 90.0, 99.0, 100.0, 1.0)
        );
        assert_eq!(s.mean, 50.5);
        // Few samples: p99 is the largest, p50 the middle one.
        let s = Summary::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.p50, s.p90, s.p99, s.max), (2.0, 3.0, 3.0, 3.0));
        assert_eq!(Summary::of(&[]), Summary::default());
        assert_eq!(Summary::of(&[f64::NAN, 4.0]).n, 1);
    }

    #[test]
    fn ready_means_a_true_ready_condition() {
        assert!(is_ready(&json!({"status": {"conditions": [
            {"type": "Reconciling", "status": "False"}, {"type": "Ready", "status": "True"}]}})));
        assert!(!is_ready(
            &json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
        ));
        assert!(!is_ready(&json!({"spec": {}})));
    }

    #[test]
    fn credentials_need_both_keys_non_empty() {
        let secret = |kv: &[(&str, &str)]| Secret {
            data: Some(
                kv.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        };
        let keys = ["client_id", "client_secret"];
        assert!(has_credentials(
            &secret(&[("client_id", "a"), ("client_secret", "b")]),
            &keys
        ));
        assert!(!has_credentials(
            &secret(&[("client_id", "a"), ("client_secret", "")]),
            &keys
        ));
        assert!(!has_credentials(&secret(&[("client_id", "a")]), &keys));
        assert!(!has_credentials(&Secret::default(), &keys));
    }

    #[test]
    fn concurrency_flag() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(operator_concurrency(&s(&["--concurrency", "64"])), 64);
        assert_eq!(
            operator_concurrency(&s(&["--x", "1", "--concurrency=8"])),
            8
        );
        assert_eq!(operator_concurrency(&s(&[])), 16);
    }

    #[test]
    fn the_default_concurrency_is_the_operators() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Run {
            #[command(flatten)]
            run: collibra_oauth_operator::config::RunArgs,
        }
        let parsed = Run::try_parse_from(["run", "--collibra-url", "http://collibra.test"])
            .expect("the operator's flags parse");
        assert_eq!(
            operator_concurrency(&[]),
            usize::from(parsed.run.concurrency)
        );
    }

    #[test]
    fn the_ready_path_extends_the_secret_path() {
        assert!(OPERATOR_READY_PATH.starts_with(&OPERATOR_SECRET_PATH));
        assert!(OPERATOR_SECRET_PATH.contains(&"backend_post"));
    }
}

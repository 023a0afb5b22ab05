//! The phases of a latency run: residents, singles, bursts.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams},
};
use serde_json::{Value, json};

use super::{Observer, Params, Probe, Subject, Summary, ms_between};
use crate::round3;

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

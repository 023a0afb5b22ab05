//! `--mode latency`: apply-to-Ready latency of one configuration (issue
//! 22), with the floor of its own critical path measured once its operator
//! has stopped (the default configurations watch every namespace, so no
//! namespace is out of their sight while they run).

use std::collections::BTreeMap;

use collibra_oauth_bench::{
    latency::{self, Latency, Probe},
    load,
};
use futures::future::BoxFuture;
use kube::Client;
use serde_json::{Value, json};

use crate::{
    rollout::{Backend, Process, Rollout},
    subject,
};

/// One configuration's operator as the latency phases see it.
struct PeerProbe<'a> {
    rollout: &'a Rollout,
    process: &'a Process,
    http: &'a reqwest::Client,
    backend: &'a Backend,
}

impl Probe for PeerProbe<'_> {
    fn settle(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            self.rollout.settle(self.process, self.http).await?;
            Ok(())
        })
    }

    fn counters(&self) -> BoxFuture<'_, anyhow::Result<BTreeMap<String, u64>>> {
        Box::pin(async move {
            let (requests, reconciles) = subject::metric_names(self.rollout.config.kind);
            let m = self.rollout.metrics(self.process, self.http).await?;
            let mut out: BTreeMap<String, u64> = m
                .by_label(requests, "method")
                .into_iter()
                .map(|(k, v)| (format!("kubernetes {k}"), v as u64))
                .collect();
            for (k, v) in self.backend.requests()? {
                out.insert(format!("backend {k}"), v);
            }
            out.insert("reconciles".to_owned(), m.sum(reconciles) as u64);
            Ok(out)
        })
    }
}

/// What a configuration's latency run needs beyond its [`Rollout`].
pub struct LatencyRun<'a> {
    /// The phases' flags.
    pub args: &'a latency::LatencyArgs,
    /// A namespace no operator's objects live in, for the floor.
    pub floor_ns: &'a str,
    /// The backend's POST, as the operator sends it.
    pub post: &'a dyn latency::Backend,
}

impl LatencyRun<'_> {
    /// Runs every R of `--resident` against `rollout`'s operator, then
    /// stops it and measures the floor and the burst POSTs.
    pub async fn run(
        &self,
        rollout: &Rollout,
        admin: &Client,
        http: &reqwest::Client,
        backend: &Backend,
    ) -> anyhow::Result<Value> {
        let kind = rollout.config.kind;
        let subject = subject::latency_subject(kind);
        let params = self
            .args
            .params(rollout.create_concurrency, "collibra-oauth-bench-peer");
        let mut p = rollout.spawn()?;
        rollout.wait_up(&mut p, http).await?;
        let mut phases = Vec::new();
        {
            let probe = PeerProbe {
                rollout,
                process: &p,
                http,
                backend,
            };
            let mut run = Latency::start(admin, &rollout.ns, &subject, &params, &probe).await?;
            for (idx, r) in self.args.residents().into_iter().enumerate() {
                let load_start = load();
                run.ensure_resident(r).await?;
                let mut phase = run.run_samples(&format!("r{idx}")).await?;
                phase["requested_resident"] = json!(r);
                phase["load_start"] = json!(load_start);
                phase["load_end"] = json!(load());
                eprintln!(
                    "bench-peer: {}: R={}: single Ready p50 {} p99 {} ms",
                    rollout.config.name,
                    phase["resident"],
                    phase["single"]["ready_ms"]["p50"],
                    phase["single"]["ready_ms"]["p99"]
                );
                phases.push(phase);
            }
        }
        rollout.stop(p).await?;

        let (secret_path, ready_path) = subject::critical_path(kind);
        let floor = latency::measure_floor(
            admin,
            self.floor_ns,
            &subject,
            self.post,
            self.args.floor_samples,
            &secret_path,
            &ready_path,
        )
        .await?;
        let concurrency = subject::concurrency(kind, &rollout.launch);
        let mut out = Vec::new();
        for phase in phases {
            out.push(latency::with_floors(phase, floor.clone(), self.post, concurrency).await?);
        }
        Ok(json!({
            "operator": format!("{kind:?}"),
            "tuned": rollout.config.tuned,
            "concurrency": concurrency,
            "phases": out,
        }))
    }
}

//! The process: signals, leader election, the HTTP endpoints, and the
//! controllers (OAuthClients per watched scope, the connection kinds), each
//! supervised: a part that stops or panics while the process is not
//! stopping fails readiness and ends the process with an error, so
//! Kubernetes restarts it instead of leaving a deaf replica that answers
//! `/readyz`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use collibra_client::CollibraClient;
use futures::{FutureExt, future::BoxFuture};
use kube::{Client, runtime::events::Reporter};
use tokio::{sync::watch, task::JoinSet};
use tracing::{error, info, warn};

use crate::connection::{controller::ConnectionContext, hosts::AllowedHosts};
use crate::controller::{
    context::{Context, Settings},
    object_state::ObjectStates,
    run::{self as oauth, panic_message},
};
use crate::{
    api::FIELD_MANAGER,
    config::RunArgs,
    events::Recorder,
    leader::{self, Leadership, LeaseSettings, Role},
    metrics::Metrics,
    server::{self, Health},
};

/// How long a reconcile waits for the Secret watch's first list
/// ([`Context::wait_secrets_synced`]).
const SECRETS_SYNC_WAIT: Duration = Duration::from_secs(10);

/// Runs the operator until SIGTERM or Ctrl-C.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // reqwest and kube both use rustls; pick its ring provider once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Arc::new(Metrics::default());
    let client = kube_client(metrics.clone()).await?;
    // Checked before anything starts: a bad pattern is a start-up error.
    let allowed_hosts = AllowedHosts::parse(&args.connections.namespaced_connection_hosts)
        .map_err(anyhow::Error::msg)?;
    let collibra = CollibraClient::new(args.collibra_config()?)
        .context("configuring the Collibra client")?
        .with_observer(metrics.collibra());
    let role = Role::default();
    let lost_lease = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            info!("shutting down: finishing reconciles in flight");
            let _ = stop_tx.send(true);
        });
    }
    let stopped = {
        let stop_rx = stop_rx.clone();
        move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }
    };

    let health = Health {
        metrics: metrics.clone(),
        role: role.clone(),
        elected: args.leader_elect,
    };
    let server = tokio::spawn(server::serve(args.metrics_addr, health, stopped()));

    let mut leadership = None;
    if args.leader_elect {
        let settings = LeaseSettings {
            name: args.lease_name.clone(),
            namespace: args
                .lease_namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned()),
            identity: leader::default_identity(),
            duration: args.lease_duration,
        };
        let mut l = Leadership::start(client.clone(), &settings).await?;
        role.standby();
        tokio::select! {
            got = l.acquired() => if !got {
                anyhow::bail!("the lease manager stopped before this replica became leader");
            },
            () = stopped() => {
                role.stopping();
                l.release().await;
                let _ = server.await;
                info!("stopped while standing by");
                return Ok(());
            }
        }
        info!(identity = %settings.identity, "became the leader");
        let mut watch_loss = l.subscribe();
        let stop_tx = stop_tx.clone();
        let lost = lost_lease.clone();
        tokio::spawn(async move {
            if watch_loss.wait_for(|leader| !*leader).await.is_ok() {
                error!("lost the lease: stopping so that no two replicas reconcile");
                lost.store(true, Ordering::Relaxed);
                let _ = stop_tx.send(true);
            }
        });
        leadership = Some(l);
    }
    role.syncing();
    metrics.leading(true);

    let namespaces: Vec<Option<String>> = match args.namespaces() {
        Some(ns) => ns.into_iter().map(Some).collect(),
        None => vec![None],
    };
    info!(namespaces = ?namespaces, collibra = %args.collibra_url, "starting");

    let states = Arc::new(ObjectStates::new(metrics.clone()));
    let watches: Vec<oauth::ScopeWatches> = namespaces
        .iter()
        .map(|ns| oauth::watch(&client, ns.clone(), states.clone()))
        .collect();
    let scopes: Vec<_> = watches.iter().map(|w| w.scope.clone()).collect();
    let synced: Vec<_> = watches.iter().map(oauth::ScopeWatches::synced).collect();

    let reporter = Reporter {
        controller: FIELD_MANAGER.to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        collibra,
        Recorder::new(client.clone(), reporter.clone()),
        metrics.clone(),
        scopes.clone(),
        Settings {
            resync: args.resync_interval,
            deletion_grace: args.deletion_grace,
            list_max_age: args.list_max_age,
            secrets_sync_wait: SECRETS_SYNC_WAIT,
        },
        states,
    ));
    let connection_ctx = Arc::new(ConnectionContext {
        client: client.clone(),
        registry: ctx.connections.clone(),
        recorder: Recorder::new(client.clone(), reporter.clone()),
        metrics: metrics.clone(),
        allowed_hosts,
        cluster_namespace: crate::connection::cluster_namespace(&args.connections, &client),
        resync: args.resync_interval,
        recheck: args.connections.connection_recheck,
        scopes: scopes.clone(),
    });
    let mut parts: Vec<(&'static str, BoxFuture<'static, ()>)> =
        crate::connection::controller::controllers(
            connection_ctx,
            &args.connections,
            &namespaces,
            &stopped,
        )
        .await
        .into_iter()
        .map(|run| ("connection controller", run))
        .collect();

    // Ready once every watch has listed its objects.
    {
        let role = role.clone();
        let ctx = ctx.clone();
        let stop = stopped();
        parts.push((
            "readiness",
            async move {
                tokio::pin!(stop);
                let ready = async {
                    while !synced.iter().all(|s| s()) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                };
                tokio::select! {
                    () = ready => {},
                    () = &mut stop => return,
                }
                // Objects confirmed while their list was arriving, against
                // the rivals seen so far, are checked again now (rule 1).
                ctx.wake_contested();
                if role.is_leading() {
                    role.serving();
                }
                info!("caches synced; ready");
                // A part of the process as long as it runs.
                stop.await;
            }
            .boxed(),
        ));
    }
    for w in watches {
        parts.push((
            "OAuthClient controller",
            oauth::run(w, ctx.clone(), args.concurrency, stopped()).boxed(),
        ));
    }
    let failure = supervise(parts, &stop_rx, || {
        role.stopping();
        let _ = stop_tx.send(true);
    })
    .await;

    role.stopping();
    metrics.leading(false);
    if let Some(l) = leadership {
        l.release().await;
    }
    match server.await {
        Ok(r) => r?,
        Err(e) => warn!(error = %e, "metrics server task"),
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    if lost_lease.load(Ordering::Relaxed) {
        anyhow::bail!("lost the lease while leading");
    }
    info!("stopped");
    Ok(())
}

/// Runs the process's parts until each has ended; each ends when `stop`
/// is set. A part that ends or panics while `stop` is not set is a
/// failure: `fail` is called once (it fails readiness and sets `stop`, so
/// the others finish what they are doing) and the first such failure is
/// returned.
async fn supervise(
    parts: Vec<(&'static str, BoxFuture<'static, ()>)>,
    stop: &watch::Receiver<bool>,
    fail: impl Fn(),
) -> Option<anyhow::Error> {
    let mut tasks = JoinSet::new();
    let mut names = std::collections::HashMap::new();
    for (name, part) in parts {
        let handle = tasks.spawn(part);
        names.insert(handle.id(), name);
    }
    let mut failure = None;
    while let Some(ended) = tasks.join_next_with_id().await {
        let (id, what) = match ended {
            Ok((id, ())) => (id, "stopped".to_owned()),
            Err(e) => {
                let id = e.id();
                let what = match e.try_into_panic() {
                    Ok(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
                    Err(e) => format!("was cancelled: {e}"),
                };
                (id, what)
            }
        };
        let name = names.get(&id).copied().unwrap_or("a part");
        if *stop.borrow() {
            continue;
        }
        error!(
            part = name,
            "{name} {what} while the operator runs: stopping"
        );
        if failure.is_none() {
            fail();
            failure = Some(anyhow::anyhow!("{name} {what}"));
        }
    }
    failure
}

/// The Kubernetes client, counting every request it sends in the metrics.
async fn kube_client(metrics: Arc<Metrics>) -> anyhow::Result<Client> {
    let config = kube::Config::infer()
        .await
        .context("finding a kubeconfig or in-cluster config")?;
    let count = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        metrics.kubernetes_request(req.method().as_str());
        req
    });
    Ok(kube::client::ClientBuilder::try_from(config)
        .context("building the Kubernetes client")?
        .with_layer(&count)
        .build())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(
        list: Vec<(&'static str, BoxFuture<'static, ()>)>,
    ) -> Vec<(&'static str, BoxFuture<'static, ()>)> {
        list
    }

    #[tokio::test]
    async fn a_part_that_panics_stops_the_others_and_fails_the_process() {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        let failed = Arc::new(AtomicBool::new(false));
        let mut waiting = stop_rx.clone();
        let list = parts(vec![
            (
                "OAuthClient controller",
                async move {
                    let _ = waiting.wait_for(|s| *s).await;
                }
                .boxed(),
            ),
            (
                "a watch",
                async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    panic!("watch broke");
                }
                .boxed(),
            ),
            ("readiness", {
                let mut stop = stop_rx.clone();
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                }
                .boxed()
            }),
        ]);
        let failure = tokio::time::timeout(
            Duration::from_secs(5),
            supervise(list, &stop_rx, || {
                failed.store(true, Ordering::Relaxed);
                let _ = stop_tx.send(true);
            }),
        )
        .await
        .expect("the others stopped");
        let failure = failure.expect("a failure").to_string();
        assert_eq!(failure, "a watch panicked: watch broke");
        assert!(failed.load(Ordering::Relaxed), "readiness failed");
    }

    #[tokio::test]
    async fn a_part_that_ends_unasked_is_a_failure_but_not_after_stop() {
        let (stop_tx, stop_rx) = watch::channel(false);
        let failure = supervise(
            parts(vec![("connection controller", async {}.boxed())]),
            &stop_rx,
            || {},
        )
        .await;
        assert_eq!(
            failure.map(|e| e.to_string()).as_deref(),
            Some("connection controller stopped")
        );
        stop_tx.send(true).expect("send");
        let failure = supervise(
            parts(vec![
                ("connection controller", async {}.boxed()),
                ("readiness", async {}.boxed()),
            ]),
            &stop_rx,
            || panic!("no failure when asked to stop"),
        )
        .await;
        assert!(failure.is_none());
    }
}

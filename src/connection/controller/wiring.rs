//! Wiring: one kube-runtime `Controller` per watched namespace (or the
//! cluster) for CollibraConnections, one for ClusterCollibraConnections,
//! the namespace watch their `namespaceSelector` reads, and the periodic
//! count of the default instance's clients.

use std::{sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api,
    api::PartialObjectMeta,
    runtime::{
        Controller, Predicate, WatchStreamExt, predicates,
        reflector::{self, ObjectRef},
        watcher,
    },
};
use tracing::{debug, warn};

use super::{
    ConnectionContext,
    probe::listed_clients,
    reconcile::{error_policy, reconcile},
    users::claims,
};
use crate::{
    api::connection::{
        ClusterCollibraConnection, CollibraConnection, ConnectionKey, ConnectionResource,
    },
    connection::{ConnectionArgs, accounting},
};

/// The controllers for both kinds, ready to run until `stopped`.
pub async fn controllers<F, Fut>(
    ctx: Arc<ConnectionContext>,
    args: &ConnectionArgs,
    namespaces: &[Option<String>],
    stopped: F,
) -> Vec<BoxFuture<'static, ()>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + Sync + 'static,
{
    let client = ctx.client.clone();
    let mut runs = Vec::new();
    for ns in namespaces {
        let api: Api<CollibraConnection> = match ns {
            Some(n) => Api::namespaced(client.clone(), n),
            None => Api::all(client.clone()),
        };
        if !servable(&api, "collibraconnections", ns.as_deref()).await {
            continue;
        }
        let (wake, woken) = futures::channel::mpsc::unbounded();
        ctx.registry.watches().wake_namespaced(ns.clone(), wake);
        runs.push(run_one(api, woken, ctx.clone(), stopped()));
    }
    runs.push(count_default_instance(ctx.clone(), stopped()));
    let cluster_api: Api<ClusterCollibraConnection> = Api::all(client.clone());
    if args.cluster_connections(namespaces.iter().all(Option::is_none))
        && servable(&cluster_api, "clustercollibraconnections", None).await
    {
        // Namespace labels for namespaceSelector: metadata only.
        let (ns_store, ns_writer) = reflector::store();
        ctx.registry.set_namespaces(ns_store);
        let ns_api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
        let stop = stopped();
        runs.push(
            async move {
                let watch = watcher(ns_api, watcher::Config::default())
                    .default_backoff()
                    .reflect(ns_writer)
                    .for_each(|_| futures::future::ready(()));
                tokio::select! {
                    () = watch => {},
                    () = stop => {},
                }
            }
            .boxed(),
        );
        let (wake, woken) = futures::channel::mpsc::unbounded();
        ctx.registry.watches().wake_cluster(wake);
        runs.push(run_one(cluster_api, woken, ctx.clone(), stopped()));
    }
    // The watches of the connections' Secrets stop with the controllers.
    let stop = stopped();
    runs.push(
        async move {
            stop.await;
            ctx.registry.watches().clear();
        }
        .boxed(),
    );
    runs
}

fn run_one<K, S>(
    conns: Api<K>,
    woken: futures::channel::mpsc::UnboundedReceiver<ObjectRef<K>>,
    ctx: Arc<ConnectionContext>,
    stopped: S,
) -> BoxFuture<'static, ()>
where
    K: ConnectionResource,
    S: std::future::Future<Output = ()> + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    // Only spec and finalizer changes wake a reconcile: the controller's own
    // status writes do not. A change of a Secret or ConfigMap a connection
    // reads wakes it through `woken` (see [`watches`](super::watches)); the
    // timer in `apply` is the fallback.
    let stream = watcher(conns, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::finalizers),
            Default::default(),
        );
    Controller::for_stream(stream, store)
        .reconcile_on(woken)
        .graceful_shutdown_on(stopped)
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|r| {
            if let Err(e) = r {
                match e {
                    kube::runtime::controller::Error::ReconcilerFailed(..) => {}
                    // Woken by a watch for a connection deleted meanwhile.
                    kube::runtime::controller::Error::ObjectNotFound(r) => {
                        debug!(connection = %r, "woken, but gone");
                    }
                    other => warn!(error = %other, "connection controller"),
                }
            }
            futures::future::ready(())
        })
        .boxed()
}

/// The default instance has no object to report on, but its counts are
/// metrics like every connection's: taken once per resync from the shared
/// list (which the reconciles refresh anyway, so no extra request).
fn count_default_instance<S>(ctx: Arc<ConnectionContext>, stopped: S) -> BoxFuture<'static, ()>
where
    S: std::future::Future<Output = ()> + Send + Sync + 'static,
{
    async move {
        let count = async {
            // Read the list now, while the watches list their objects: the
            // first reconcile after a start then finds it read (or shares
            // the read in flight) instead of waiting for the token and the
            // list after the watches (BENCHMARKS.md, round three). The first
            // count waits for the first reconciles to index their names.
            if let Some(state) = ctx.registry.get(&ConnectionKey::Default)
                && let Err(e) = state.all_clients().await
            {
                debug!(error = %e, "reading the default instance's list at start");
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
            loop {
                if let Some(state) = ctx.registry.get(&ConnectionKey::Default) {
                    let label = ConnectionKey::Default.label();
                    match state.all_clients().await {
                        Ok(listed) => {
                            let counts = accounting::count(
                                &listed_clients(listed),
                                &claims(&ctx, &ConnectionKey::Default),
                            );
                            ctx.metrics.connections.checked(
                                &label,
                                true,
                                Some((counts.managed, counts.unmanaged)),
                            );
                        }
                        Err(e) => {
                            warn!(error = %e, "counting the default instance's clients");
                            ctx.metrics.connections.checked(&label, false, None);
                        }
                    }
                }
                tokio::time::sleep(ctx.resync).await;
            }
        };
        tokio::select! {
            () = count => {},
            () = stopped => {},
        }
    }
    .boxed()
}

/// Whether the kind's CRD is installed and the operator may list it. An
/// upgrade through Helm does not install new CRDs, and old RBAC lacks the
/// new rules: the operator then keeps serving OAuthClients with the default
/// instance and says what is missing, instead of failing watches forever.
async fn servable<K: ConnectionResource>(api: &Api<K>, plural: &str, ns: Option<&str>) -> bool {
    let scope = ns.map_or_else(|| "the cluster".to_owned(), |n| format!("namespace {n}"));
    match api
        .list_metadata(&kube::api::ListParams::default().limit(1))
        .await
    {
        Ok(_) => true,
        Err(kube::Error::Api(e)) if e.code == 404 => {
            warn!(
                "{plural} are not served: the CRD is not installed (apply crds/{plural}.yaml and restart the operator)"
            );
            false
        }
        Err(kube::Error::Api(e)) if e.code == 403 => {
            warn!(
                "{plural} are not served in {scope}: the operator may not list them (update its RBAC from the chart and restart it)"
            );
            false
        }
        // Anything else may pass: the watch retries with backoff.
        Err(_) => true,
    }
}

//! Wiring: one kube-runtime `Controller` per watched namespace (or the
//! cluster) for CollibraConnections, one for ClusterCollibraConnections,
//! the namespace watch their `namespaceSelector` reads, and the periodic
//! count of the default instance's clients.

use std::{sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, ResourceExt,
    api::PartialObjectMeta,
    runtime::{
        Controller, Predicate, WatchStreamExt, predicates,
        reflector::{self, ObjectRef},
        watcher,
    },
};
use tracing::{debug, info, warn};

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
    connection::{ConnectionArgs, accounting, connection_of, status::ConnectionReason},
    controller::relist::objects_after_list,
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
    // What must be listed and checked once before OAuthClients of
    // connections are reported on (see `Registry::loaded`).
    let mut listed: Vec<BoxFuture<'static, Vec<ConnectionKey>>> = Vec::new();
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
        let (store, writer) = reflector::store();
        listed.push(keys_once_listed(store.clone()));
        runs.push(run_one(api, store, writer, woken, ctx.clone(), stopped()));
    }
    runs.push(count_default_instance(ctx.clone(), stopped()));
    let cluster_api: Api<ClusterCollibraConnection> = Api::all(client.clone());
    if args.cluster_connections(namespaces.iter().all(Option::is_none))
        && servable(&cluster_api, "clustercollibraconnections", None).await
    {
        // Namespace labels for namespaceSelector: metadata only. A label
        // change wakes the namespace's OAuthClients that use a cluster
        // connection at once, so a namespace a selector now admits (or no
        // longer admits) takes effect within seconds.
        let (ns_store, ns_writer) = reflector::store();
        ctx.registry.set_namespaces(ns_store.clone());
        listed.push({
            let ns_store = ns_store.clone();
            async move {
                wait_listed(&ns_store).await;
                Vec::new()
            }
            .boxed()
        });
        let ns_api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
        let stop = stopped();
        let ns_ctx = ctx.clone();
        runs.push(
            async move {
                let watch = objects_after_list(
                    watcher(ns_api, watcher::Config::default())
                        .default_backoff()
                        .reflect(ns_writer),
                    ns_store,
                )
                .predicate_filter(predicates::labels, Default::default())
                .for_each(|n| {
                    if let Ok(n) = n {
                        wake_cluster_users_in(&ns_ctx, &n.name_any());
                    }
                    futures::future::ready(())
                });
                tokio::select! {
                    () = watch => {},
                    () = stop => {},
                }
            }
            .boxed(),
        );
        let (wake, woken) = futures::channel::mpsc::unbounded();
        ctx.registry.watches().wake_cluster(wake);
        let (store, writer) = reflector::store();
        listed.push(keys_once_listed(store.clone()));
        runs.push(run_one(
            cluster_api,
            store,
            writer,
            woken,
            ctx.clone(),
            stopped(),
        ));
    }
    runs.push(
        {
            let ctx = ctx.clone();
            let stop = stopped();
            async move {
                tokio::pin!(stop);
                tokio::select! {
                    () = load_connections(&ctx, listed) => {},
                    () = &mut stop => return,
                }
                // A part of the process as long as it runs (see
                // `operator::supervise`).
                stop.await;
            }
        }
        .boxed(),
    );
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

/// The longest the OAuthClients of connections wait for the connections
/// that existed at start to be checked once.
const LOAD_WAIT: Duration = Duration::from_secs(30);

/// Waits until the connections listed by `listed` have each been checked
/// once (at most [`LOAD_WAIT`]), then marks the registry loaded and wakes
/// the OAuthClients that use a connection: those that came first were put
/// off (see `Registry::loaded`).
async fn load_connections(
    ctx: &ConnectionContext,
    listed: Vec<BoxFuture<'static, Vec<ConnectionKey>>>,
) {
    let deadline = tokio::time::Instant::now() + LOAD_WAIT;
    let keys: Vec<ConnectionKey> =
        match tokio::time::timeout_at(deadline, futures::future::join_all(listed)).await {
            Ok(keys) => keys.into_iter().flatten().collect(),
            Err(_) => Vec::new(),
        };
    let checked = |k: &ConnectionKey| {
        ctx.registry
            .get(k)
            .is_some_and(|c| c.health().reason != ConnectionReason::Connecting)
    };
    while !keys.iter().all(checked) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !keys.iter().all(checked) {
        warn!(
            "connections not all checked within {LOAD_WAIT:?}; reporting on their OAuthClients anyway"
        );
    }
    ctx.registry.mark_loaded();
    info!(connections = keys.len(), "connections loaded");
    for s in &ctx.scopes {
        for o in s
            .oauth_clients
            .state_filter(|o| connection_of(o) != ConnectionKey::Default)
        {
            s.wake
                .now(&o.namespace().unwrap_or_default(), &o.name_any());
        }
    }
}

/// Waits until `store` has listed once. Polled: see the readiness wait in
/// `operator::run`.
async fn wait_listed<K>(store: &reflector::Store<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    while store.wait_until_ready().now_or_never().is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The keys of the connections in `store` once it has listed.
fn keys_once_listed<K: ConnectionResource>(
    store: reflector::Store<K>,
) -> BoxFuture<'static, Vec<ConnectionKey>> {
    async move {
        wait_listed(&store).await;
        store.state().iter().map(|c| c.key()).collect()
    }
    .boxed()
}

/// Wakes the OAuthClients of namespace `ns` that use a cluster connection.
fn wake_cluster_users_in(ctx: &ConnectionContext, ns: &str) {
    for s in &ctx.scopes {
        for o in s.oauth_clients.state_filter(|o| {
            o.metadata.namespace.as_deref() == Some(ns)
                && matches!(connection_of(o), ConnectionKey::Cluster { .. })
        }) {
            s.wake.now(ns, &o.name_any());
        }
    }
}

fn run_one<K, S>(
    conns: Api<K>,
    store: reflector::Store<K>,
    writer: reflector::store::Writer<K>,
    woken: futures::channel::mpsc::UnboundedReceiver<ObjectRef<K>>,
    ctx: Arc<ConnectionContext>,
    stopped: S,
) -> BoxFuture<'static, ()>
where
    K: ConnectionResource,
    S: std::future::Future<Output = ()> + Send + Sync + 'static,
{
    // Only spec and finalizer changes wake a reconcile: the controller's own
    // status writes do not. A change of a Secret or ConfigMap a connection
    // reads wakes it through `woken` (see [`watches`](super::watches)); the
    // timer in `apply` is the fallback.
    let stream = objects_after_list(
        watcher(conns, watcher::Config::default())
            .default_backoff()
            .reflect(writer),
        store.clone(),
    )
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

//! The connection controller: for each CollibraConnection and
//! ClusterCollibraConnection, read its credentials (and CA bundle), build
//! a Collibra client when any of them changed, probe the instance with a
//! list (shared with the OAuthClient reconciles through the connection's
//! cache), and report Ready, capabilities and client counts. A connection
//! that OAuthClients with `deletionPolicy: Delete` still use keeps its
//! finalizer until they are gone.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use collibra_client::CollibraClient;
use futures::{FutureExt, StreamExt, future::BoxFuture};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::{
    Api, Client, ResourceExt,
    api::{PartialObjectMeta, Patch, PatchParams},
    runtime::{
        Controller, Predicate, WatchStreamExt,
        controller::Action,
        events::{Event as KubeEvent, EventType},
        finalizer::{Event, finalizer},
        predicates,
        reflector::{self, ObjectRef},
        watcher,
    },
};
use serde_json::json;
use tracing::{debug, info, warn};

use super::{
    ConnectionArgs, accounting,
    client_config::{self, Material},
    hosts::AllowedHosts,
    metrics::ConnectionObserver,
    registry::{ConnectionState, Fingerprint, Registry, Version},
    status::{self, ConnectionReason, Counts, Health},
    watches::{Kind, Seen, Watched},
};
use crate::{
    api::{
        DeletionPolicy,
        connection::{
            CONNECTION_FINALIZER, ClusterCollibraConnection, CollibraConnection, ConnectionKey,
            ConnectionResource,
        },
    },
    controller::context::Scope,
    events::Recorder,
    metrics::Metrics,
};

/// Everything the connection reconciles share.
pub struct ConnectionContext {
    /// Kubernetes client.
    pub client: Client,
    /// The per-connection state the OAuthClient reconciles use too.
    pub registry: Arc<Registry>,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Hosts namespaced connections may use.
    pub allowed_hosts: AllowedHosts,
    /// Where ClusterCollibraConnections' Secrets and CA bundles live.
    pub cluster_namespace: String,
    /// How often a healthy connection lists its instance again.
    pub resync: Duration,
    /// The longest a connection waits for its next check: a fallback,
    /// since the Secrets and ConfigMaps it reads are watched (see
    /// [`watches`](super::watches)).
    pub recheck: Duration,
    /// The watched scopes: who uses which connection, and how to wake them.
    pub scopes: Vec<Scope>,
}

/// Why a connection reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// OAuthClients with `deletionPolicy: Delete` still use the connection.
    #[error("{connection} is still used by OAuthClients with deletionPolicy Delete: {holders}")]
    InUse {
        /// The connection.
        connection: String,
        /// Some of the objects that hold it.
        holders: String,
    },
    /// Writing the connection's status failed.
    #[error("patching the status of {connection}: {source}")]
    PatchStatus {
        /// The connection.
        connection: String,
        /// What the API server answered.
        #[source]
        source: kube::Error,
    },
    /// Adding or removing the finalizer failed.
    #[error("finalizer of {connection}: {message}")]
    Finalizer {
        /// The connection.
        connection: String,
        /// What went wrong.
        message: String,
    },
}

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

fn listed_clients(
    listed: Vec<(String, crate::controller::decide::Listed)>,
) -> Vec<accounting::ListedClient> {
    listed
        .into_iter()
        .map(|(name, c)| accounting::ListedClient {
            name,
            id: c.client_id,
            issued_at: c.issued_at.and_then(crate::controller::status::rfc3339),
        })
        .collect()
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

/// Where a connection's Secrets live: its own namespace, or the
/// operator's for a cluster connection.
pub fn secret_namespace<K: ConnectionResource>(c: &K, cluster_ns: &str) -> String {
    match c.key() {
        ConnectionKey::Namespaced { namespace, .. } => namespace,
        _ => cluster_ns.to_owned(),
    }
}

async fn reconcile<K: ConnectionResource>(
    obj: Arc<K>,
    ctx: Arc<ConnectionContext>,
) -> Result<Action, Error> {
    let api = obj.api(&ctx.client);
    let connection = obj.key().to_string();
    finalizer(&api, CONNECTION_FINALIZER, obj, |event| async {
        match event {
            Event::Apply(o) => apply(&api, o.as_ref(), &ctx).await,
            Event::Cleanup(o) => cleanup(&api, o.as_ref(), &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer {
            connection,
            message: other.to_string(),
        },
    })
}

fn error_policy<K: ConnectionResource>(
    obj: Arc<K>,
    err: &Error,
    ctx: Arc<ConnectionContext>,
) -> Action {
    let delay = match err {
        // Re-checked soon: the holders' deletion does not wake a connection.
        Error::InUse { .. } => Duration::from_secs(5),
        _ => ctx
            .registry
            .get(&obj.key())
            .map_or(Duration::from_secs(5), |c| c.backoff()),
    };
    warn!(connection = %obj.key(), error = %err, retry_in = ?delay, "connection reconcile failed");
    Action::requeue(delay)
}

async fn apply<K: ConnectionResource>(
    api: &Api<K>,
    obj: &K,
    ctx: &ConnectionContext,
) -> Result<Action, Error> {
    let (conn, counts) = check(obj, ctx).await;
    let health = conn.health();
    report(api, obj, ctx, &conn, &health, counts).await?;
    // A changed Secret or ConfigMap wakes the connection at once (see
    // [`watches`](super::watches)); the re-check interval bounds the wait
    // should a wake-up be lost or a watch not be allowed.
    let next = if health.reason.is_ready() {
        ctx.resync
    } else {
        conn.backoff()
    };
    Ok(Action::requeue(next.min(ctx.recheck)))
}

async fn cleanup<K: ConnectionResource>(
    api: &Api<K>,
    obj: &K,
    ctx: &ConnectionContext,
) -> Result<Action, Error> {
    let key = obj.key();
    let holders = holders(ctx, &key);
    if holders.is_empty() {
        info!(connection = %key, "connection deleted; nothing uses it any more");
        ctx.registry.remove(&key);
        ctx.registry.watches().forget(&key);
        ctx.metrics.connections.forget(&key.label());
        return Ok(Action::await_change());
    }
    // The holders need the connection to delete their Collibra clients, so
    // it stays usable (and checked) until they are gone.
    let (conn, counts) = check(obj, ctx).await;
    let shown: Vec<&str> = holders.iter().take(5).map(String::as_str).collect();
    let more = holders.len().saturating_sub(shown.len());
    let mut list = shown.join(", ");
    if more > 0 {
        list.push_str(&format!(" and {more} more"));
    }
    let health = Health::new(
        ConnectionReason::InUse,
        format!("deletion waits for OAuthClients with deletionPolicy Delete that use it: {list}"),
    );
    report(api, obj, ctx, &conn, &health, counts).await?;
    Err(Error::InUse {
        connection: key.to_string(),
        holders: list,
    })
}

/// OAuthClients (`namespace/name`) with `deletionPolicy: Delete` using `key`.
fn holders(ctx: &ConnectionContext, key: &ConnectionKey) -> Vec<String> {
    let mut names: Vec<String> = ctx
        .scopes
        .iter()
        .flat_map(|s| s.oauth_clients.objects_of(key))
        .filter(|o| o.spec.deletion_policy == DeletionPolicy::Delete)
        .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
        .collect();
    names.sort();
    names
}

/// Asks for a reconcile of every OAuthClient that uses `key`.
fn wake_users(ctx: &ConnectionContext, key: &ConnectionKey) {
    for s in &ctx.scopes {
        for k in s.oauth_clients.keys_of(key) {
            s.wake.now(k);
        }
    }
}

/// What the OAuthClients using `key` claim in its instance.
fn claims(ctx: &ConnectionContext, key: &ConnectionKey) -> Vec<accounting::Claim> {
    ctx.scopes
        .iter()
        .flat_map(|s| s.oauth_clients.claims_of(key))
        .map(|(client_name, client_id)| accounting::Claim {
            client_name,
            client_id,
        })
        .collect()
}

/// Checks a connection: its entry in the registry, with the health found
/// (also recorded there), and client counts when a list succeeded.
async fn check<K: ConnectionResource>(
    obj: &K,
    ctx: &ConnectionContext,
) -> (Arc<ConnectionState>, Option<Counts>) {
    let key = obj.key();
    let settings = obj.settings();
    let conn = ctx
        .registry
        .entry(&key, &format!("{}|{}", settings.url, settings.api_path));
    let outcome = probe(obj, ctx, &conn).await;
    let (health, counts) = match outcome {
        Ok(counts) => (
            Health::new(
                ConnectionReason::Connected,
                format!(
                    "listed {} clients at {}",
                    counts.managed + counts.unmanaged,
                    settings.url
                ),
            ),
            Some(counts),
        ),
        Err(h) => {
            if matches!(
                h.reason,
                ConnectionReason::CredentialsNotFound
                    | ConnectionReason::CaBundleNotFound
                    | ConnectionReason::InvalidSpec
                    | ConnectionReason::HostNotAllowed
            ) {
                // Nothing may be sent with a configuration that is gone or
                // not allowed any more.
                conn.clear_client();
            }
            (h, None)
        }
    };
    let before = conn.set_health(health.clone());
    if health.reason.is_ready() && !before.reason.is_ready() {
        // The OAuthClients that waited for it go on at once.
        wake_users(ctx, &key);
    }
    let counts_pair = counts.map(|c| (c.managed, c.unmanaged));
    ctx.metrics
        .connections
        .checked(&key.label(), health.reason.is_ready(), counts_pair);
    (conn, counts)
}

async fn probe<K: ConnectionResource>(
    obj: &K,
    ctx: &ConnectionContext,
    conn: &ConnectionState,
) -> Result<Counts, Health> {
    let key = obj.key();
    let settings = obj.settings();
    let ns = secret_namespace(obj, &ctx.cluster_namespace);
    if let Err(h) = usable_spec(obj, ctx, conn) {
        // Nothing is read for a connection that cannot be used.
        ctx.registry.watches().forget(&key);
        return Err(h);
    }
    track(ctx, &key, settings, &ns);
    let secret_name = &settings.auth.secret_name;
    // Metadata first: the data is read only when something changed. The
    // versions come from the watches once they have listed the objects, by
    // name from the API server until then.
    let seen = Fingerprint {
        generation: obj.meta().generation,
        credentials: credentials_version(ctx, &key, settings, &ns).await?,
        ca_bundle: ca_bundle_version(ctx, &key, settings, &ns).await?,
    };
    if !conn.built_from(&seen) {
        let loaded = load(&ctx.client, settings, &ns).await?;
        // The versions the client is built from are the ones used.
        let (creds, ca) = read_objects(settings, &ns);
        let watches = ctx.registry.watches();
        watches.used(
            &key,
            &creds,
            Seen::of(loaded.credentials.as_ref().map(|s| &s.metadata)),
        );
        if let (Some(ca), Some((_, v))) = (ca, &loaded.ca_bundle) {
            watches.used(&key, &ca, Seen::Present(v.clone()));
        }
        let fingerprint = Fingerprint {
            generation: obj.meta().generation,
            credentials: loaded
                .credentials
                .as_ref()
                .map(|s| (s.metadata.uid.clone(), s.metadata.resource_version.clone()))
                .unwrap_or_default(),
            ca_bundle: loaded.ca_bundle.as_ref().map(|(_, v)| v.clone()),
        };
        let client =
            loaded
                .client(settings, &ns)?
                .with_observer(Arc::new(ConnectionObserver::new(
                    ctx.metrics.clone(),
                    key.label(),
                )));
        info!(connection = %key, "built a Collibra client from the current spec and credentials");
        conn.set_client(fingerprint, client);
    }
    let listed = conn
        .all_clients()
        .await
        .map_err(|e| health_of(&e, &ns, secret_name))?;
    Ok(accounting::count(
        &listed_clients(listed),
        &claims(ctx, &key),
    ))
}

/// Whether the spec may be used at all: a valid URL, on the allow-list
/// for a namespaced connection, a valid namespaceSelector (recorded).
fn usable_spec<K: ConnectionResource>(
    obj: &K,
    ctx: &ConnectionContext,
    conn: &ConnectionState,
) -> Result<(), Health> {
    let url = client_config::url(obj.settings())?;
    if matches!(obj.key(), ConnectionKey::Namespaced { .. }) {
        client_config::check_host(&url, &ctx.allowed_hosts)?;
    }
    let selector = obj
        .namespace_selector()
        .map_err(|e| Health::new(ConnectionReason::InvalidSpec, e))?;
    conn.set_namespace_selector(selector);
    Ok(())
}

/// The objects a connection's configuration reads, as fetched.
pub struct Loaded {
    /// The credentials Secret, if it exists.
    pub credentials: Option<Secret>,
    /// The CA bundle's PEM and the uid/resourceVersion of its object.
    pub ca_bundle: Option<(Vec<u8>, Version)>,
}

impl Loaded {
    /// A Collibra client built from `settings` and these objects.
    pub fn client(
        &self,
        settings: &crate::api::connection::ConnectionSettings,
        ns: &str,
    ) -> Result<CollibraClient, Health> {
        let empty = BTreeMap::new();
        let data = self
            .credentials
            .as_ref()
            .map(|s| s.data.as_ref().unwrap_or(&empty));
        let material = Material {
            namespace: ns,
            credentials: data,
            ca_bundle: self.ca_bundle.as_ref().map(|(pem, _)| pem.clone()),
        };
        let config = client_config::build(settings, &settings.auth.secret_name, &material)?;
        CollibraClient::new(config)
            .map_err(|e| Health::new(ConnectionReason::InvalidSpec, e.to_string()))
    }
}

/// The objects a connection reads: its credentials Secret and, if it has
/// one, its CA bundle's ConfigMap or Secret, all in `ns`.
pub fn read_objects(
    settings: &crate::api::connection::ConnectionSettings,
    ns: &str,
) -> (Watched, Option<Watched>) {
    let credentials = Watched::secret(ns, &settings.auth.secret_name);
    let ca = settings.ca_bundle.as_ref().map(|b| match &b.config_map {
        Some(name) => Watched::config_map(ns, name),
        None => Watched::secret(ns, b.secret.as_deref().unwrap_or_default()),
    });
    (credentials, ca)
}

/// Watches what `key` reads now (and nothing it no longer reads).
fn track(
    ctx: &ConnectionContext,
    key: &ConnectionKey,
    settings: &crate::api::connection::ConnectionSettings,
    ns: &str,
) {
    let (credentials, ca) = read_objects(settings, ns);
    let wanted: Vec<Watched> = std::iter::once(credentials).chain(ca).collect();
    ctx.registry.watches().track(&ctx.client, key, &wanted);
}

/// The version of `what`: from its watch once that has listed it, else
/// read by name (metadata only). Recorded as the one `key` uses.
async fn version_of(
    ctx: &ConnectionContext,
    key: &ConnectionKey,
    what: &Watched,
) -> Result<Seen, kube::Error> {
    let watches = ctx.registry.watches();
    let seen = match watches.seen(what) {
        Some(seen) => seen,
        None => {
            let meta = match what.kind {
                Kind::Secret => Api::<Secret>::namespaced(ctx.client.clone(), &what.namespace)
                    .get_metadata_opt(&what.name)
                    .await?
                    .map(|m| m.metadata),
                Kind::ConfigMap => {
                    Api::<ConfigMap>::namespaced(ctx.client.clone(), &what.namespace)
                        .get_metadata_opt(&what.name)
                        .await?
                        .map(|m| m.metadata)
                }
            };
            Seen::of(meta.as_ref())
        }
    };
    watches.used(key, what, seen.clone());
    Ok(seen)
}

/// uid and resourceVersion of the credentials Secret (metadata only).
async fn credentials_version(
    ctx: &ConnectionContext,
    key: &ConnectionKey,
    settings: &crate::api::connection::ConnectionSettings,
    ns: &str,
) -> Result<Version, Health> {
    let name = &settings.auth.secret_name;
    let (what, _) = read_objects(settings, ns);
    match version_of(ctx, key, &what).await {
        Ok(Seen::Present(v)) => Ok(v),
        Ok(Seen::Absent) => Err(Health::new(
            ConnectionReason::CredentialsNotFound,
            format!("spec.auth.secretName: Secret {ns}/{name} does not exist"),
        )),
        Err(e) => Err(Health::new(
            ConnectionReason::CredentialsNotFound,
            format!("cannot read Secret {ns}/{name} (spec.auth.secretName): {e}"),
        )),
    }
}

/// uid and resourceVersion of the CA bundle's ConfigMap or Secret, if one
/// is configured (metadata only).
async fn ca_bundle_version(
    ctx: &ConnectionContext,
    key: &ConnectionKey,
    settings: &crate::api::connection::ConnectionSettings,
    ns: &str,
) -> Result<Option<Version>, Health> {
    let (_, Some(what)) = read_objects(settings, ns) else {
        return Ok(None);
    };
    let field = match what.kind {
        Kind::ConfigMap => "configMap",
        Kind::Secret => "secret",
    };
    let name = &what.name;
    match version_of(ctx, key, &what).await {
        Ok(Seen::Present(v)) => Ok(Some(v)),
        Ok(Seen::Absent) => Err(Health::new(
            ConnectionReason::CaBundleNotFound,
            format!("{ns}/{name} (spec.caBundle.{field}) does not exist"),
        )),
        Err(e) => Err(Health::new(
            ConnectionReason::CaBundleNotFound,
            format!("cannot read {ns}/{name} (spec.caBundle.{field}): {e}"),
        )),
    }
}

/// Reads the credentials Secret and the CA bundle a connection names, in `ns`.
pub async fn load(
    client: &Client,
    settings: &crate::api::connection::ConnectionSettings,
    ns: &str,
) -> Result<Loaded, Health> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret_name = &settings.auth.secret_name;
    let credentials = secrets.get_opt(secret_name).await.map_err(|e| {
        Health::new(
            ConnectionReason::CredentialsNotFound,
            format!("cannot read Secret {ns}/{secret_name} (spec.auth.secretName): {e}"),
        )
    })?;
    let ca_bundle = match &settings.ca_bundle {
        None => None,
        Some(b) => Some(ca_bundle(client, ns, b).await?),
    };
    Ok(Loaded {
        credentials,
        ca_bundle,
    })
}

/// The bundle's PEM and the uid/resourceVersion of the object holding it.
async fn ca_bundle(
    client: &Client,
    ns: &str,
    b: &crate::api::connection::CaBundle,
) -> Result<(Vec<u8>, Version), Health> {
    let not_found = |what: String| Health::new(ConnectionReason::CaBundleNotFound, what);
    let key = &b.key;
    if let Some(name) = &b.config_map {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let cm = api
            .get_opt(name)
            .await
            .map_err(|e| {
                not_found(format!(
                    "cannot read ConfigMap {ns}/{name} (spec.caBundle.configMap): {e}"
                ))
            })?
            .ok_or_else(|| {
                not_found(format!(
                    "ConfigMap {ns}/{name} (spec.caBundle.configMap) does not exist"
                ))
            })?;
        let pem = cm
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|s| s.as_bytes().to_vec())
            .or_else(|| {
                cm.binary_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|b| b.0.clone())
            })
            .ok_or_else(|| {
                not_found(format!(
                    "ConfigMap {ns}/{name} has no key {key:?} (spec.caBundle.key)"
                ))
            })?;
        return Ok((pem, (cm.metadata.uid, cm.metadata.resource_version)));
    }
    let name = b.secret.as_deref().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = api
        .get_opt(name)
        .await
        .map_err(|e| {
            not_found(format!(
                "cannot read Secret {ns}/{name} (spec.caBundle.secret): {e}"
            ))
        })?
        .ok_or_else(|| {
            not_found(format!(
                "Secret {ns}/{name} (spec.caBundle.secret) does not exist"
            ))
        })?;
    let pem = s
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .ok_or_else(|| {
            not_found(format!(
                "Secret {ns}/{name} has no key {key:?} (spec.caBundle.key)"
            ))
        })?;
    Ok((pem, (s.metadata.uid, s.metadata.resource_version)))
}

/// The health a failed list stands for.
pub fn health_of(e: &collibra_client::Error, ns: &str, secret: &str) -> Health {
    use collibra_client::Error as E;
    match e {
        E::Unauthorized { .. } => Health::new(
            ConnectionReason::AuthenticationFailed,
            format!("{e}; check the credentials in Secret {ns}/{secret}"),
        ),
        E::Unavailable { .. } | E::Ambiguous { .. } => {
            Health::new(ConnectionReason::Unreachable, e.to_string())
        }
        E::Config(_) => Health::new(ConnectionReason::InvalidSpec, e.to_string()),
        E::NotFound { .. } | E::Unsupported { .. } => Health::new(
            ConnectionReason::UnexpectedResponse,
            format!("{e}; check spec.url and spec.apiPath"),
        ),
        E::Rejected { .. } | E::InvalidResponse { .. } => {
            Health::new(ConnectionReason::UnexpectedResponse, e.to_string())
        }
    }
}

/// Writes the status when it changed, and an Event when Ready's reason did.
async fn report<K: ConnectionResource>(
    api: &Api<K>,
    obj: &K,
    ctx: &ConnectionContext,
    conn: &ConnectionState,
    health: &Health,
    counts: Option<Counts>,
) -> Result<(), Error> {
    let previous = obj.connection_status();
    let next = status::build(
        previous,
        obj.meta().generation,
        health,
        conn.capabilities(),
        counts,
        k8s_openapi::jiff::Timestamp::now(),
    );
    if previous == Some(&next) {
        return Ok(());
    }
    let before = previous
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.reason.clone());
    let name = obj.name_any();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": next })),
    )
    .await
    .map_err(|source| Error::PatchStatus {
        connection: obj.key().to_string(),
        source,
    })?;
    if before.as_deref() != Some(health.reason.as_str()) {
        let ev = KubeEvent {
            type_: health.reason.event_type(),
            reason: health.reason.as_str().to_owned(),
            note: Some(health.message.chars().take(1000).collect()),
            action: "Check".to_owned(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
            warn!(error = %e, "could not publish an Event");
        }
        if health.reason.event_type() == EventType::Warning {
            warn!(connection = %obj.key(), reason = health.reason.as_str(), message = %health.message, "connection not ready");
        } else {
            info!(connection = %obj.key(), message = %health.message, "connection ready");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use collibra_client::Operation;

    #[test]
    fn list_errors_map_to_reasons() {
        let cases = [
            (
                collibra_client::Error::Unauthorized {
                    operation: Operation::Token,
                    status: 401,
                    error: Some("invalid_client".into()),
                    error_description: None,
                },
                ConnectionReason::AuthenticationFailed,
                "ns/creds",
            ),
            (
                collibra_client::Error::Unavailable {
                    operation: Operation::List,
                    status: None,
                    retry_after: None,
                    message: "connection refused".into(),
                },
                ConnectionReason::Unreachable,
                "connection refused",
            ),
            (
                collibra_client::Error::NotFound {
                    operation: Operation::List,
                },
                ConnectionReason::UnexpectedResponse,
                "spec.apiPath",
            ),
        ];
        for (e, reason, needle) in cases {
            let h = health_of(&e, "ns", "creds");
            assert_eq!(h.reason, reason, "{e}");
            assert!(h.message.contains(needle), "{}", h.message);
        }
    }

    #[test]
    fn secrets_live_in_the_connection_namespace_or_the_operators() {
        let mut c = CollibraConnection::new(
            "prod",
            serde_json::from_str(
                r#"{"url":"https://c.example","auth":{"secretName":"creds"},"caBundle":{"secret":"ca"}}"#,
            )
            .expect("spec"),
        );
        c.metadata.namespace = Some("team-a".into());
        assert_eq!(secret_namespace(&c, "operator"), "team-a");
        let cc = ClusterCollibraConnection::new(
            "shared",
            serde_json::from_str(r#"{"url":"https://c.example","auth":{"secretName":"creds"}}"#)
                .expect("spec"),
        );
        assert_eq!(secret_namespace(&cc, "operator"), "operator");
    }
}

//! The controller: watches OAuthClients and the Secrets it manages, and
//! reconciles each object. Pure decisions are in [`decide`]; effects in
//! [`reconcile`]; the Secret's shape in [`secret`]; conditions in
//! [`status`] and their words in [`reasons`]; a Collibra instance, its
//! shared list and what was learned about it in [`collibra_instance`],
//! [`client_list`] and [`capability`]; state
//! shared by reconciles in [`context`] and [`backoff`]; rival claims on a
//! clientName in [`names`]. The design these follow is docs/design.md.

pub mod backoff;
pub mod capability;
pub mod client_list;
pub mod collibra_instance;
pub mod context;
pub mod decide;
pub mod names;
pub mod object_cache;
pub mod reasons;
pub mod reconcile;
pub mod runtime;
pub mod secret;
pub mod secret_cache;
pub mod status;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use anyhow::Context as _;
use collibra_client::CollibraClient;
use futures::{StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    core::PartialObjectMeta,
    runtime::{WatchStreamExt, events::Reporter, watcher},
};
use tokio::sync::watch;
use tracing::{info, warn};

use self::context::{Context, OwnWrites, Scope, Settings};
use crate::connection::{controller::ConnectionContext, hosts::AllowedHosts};
use crate::{
    api::{FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE, OAuthClient},
    config::RunArgs,
    events::Recorder,
    leader::{self, Leadership, LeaseSettings, Role},
    metrics::Metrics,
    server::{self, Health},
};

/// How long a reconcile waits for the Secret watch's first list
/// ([`Context::wait_secrets_synced`]).
const SECRETS_SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the controller until SIGTERM or Ctrl-C.
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
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
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
                tracing::error!("lost the lease: stopping so that no two replicas reconcile");
                lost.store(true, Ordering::Relaxed);
                let _ = stop_tx.send(true);
            }
        });
        leadership = Some(l);
    }
    role.syncing();

    let namespaces: Vec<Option<String>> = match args.namespaces() {
        Some(ns) => ns.into_iter().map(Some).collect(),
        None => vec![None],
    };
    info!(namespaces = ?namespaces, collibra = %args.collibra_url, "starting");

    let mut runners = Vec::new();
    let mut watches = Vec::new();
    let mut scopes = Vec::new();
    for ns in &namespaces {
        let (oauth_api, secret_api): (Api<OAuthClient>, Api<PartialObjectMeta<Secret>>) = match ns {
            Some(n) => (
                Api::namespaced(client.clone(), n),
                Api::namespaced(client.clone(), n),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        let objects = Arc::new(object_cache::ObjectCache::default());
        let names = Arc::new(names::NameIndex::default());
        let (asker, asked) = runtime::queue();
        // The cache decides which events wake a reconcile: spec changes
        // (generation, which deletion also bumps), the operator's
        // annotations (rotation) and finalizers; our own status writes do
        // not. The initial list is streamed from the API server's watch
        // cache (`sendInitialEvents`, Kubernetes 1.34 and later serve it):
        // no page requests and no large response; at 10,000 objects the
        // first reconcile after a restart came at 1.30 s instead of 1.98 s
        // with pages of 500 (BENCHMARKS.md, round two).
        let oauth_stream = watcher(oauth_api, watcher::Config::default().streaming_lists())
            .default_backoff()
            .modify(slim);
        // The clientName index and the cache take each event; the cache
        // says which objects it wakes.
        watches.push(tokio::spawn(follow(
            "OAuthClient",
            oauth_stream,
            asker.clone(),
            {
                let names = names.clone();
                let objects = objects.clone();
                move |e| {
                    names.apply(&e);
                    objects.apply(&e)
                }
            },
        )));
        let secret_cache = Arc::new(secret_cache::SecretCache::default());
        let label = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
        // A version this process wrote wakes nothing: the reconcile that
        // wrote it knows it already (docs/design.md, "Requests per
        // registration"). Deletions and everyone else's writes do.
        let own_writes = Arc::new(OwnWrites::default());
        // Metadata only: no Secret's data is held in memory (docs/design.md,
        // "Memory"); a reconcile reads it when the metadata cannot vouch
        // for it (`secret::settled`).
        let secret_stream = watcher(
            secret_api,
            watcher::Config::default().labels(&label).streaming_lists(),
        )
        .default_backoff()
        .modify(slim_secret)
        .inspect_ok({
            let cache = secret_cache.clone();
            move |e| cache.apply(e)
        })
        .map({
            let own_writes = own_writes.clone();
            move |e| {
                let own_writes = own_writes.clone();
                async move {
                    match e {
                        Ok(e) => Ok(not_own_write(&own_writes, e).await),
                        Err(e) => Err(e),
                    }
                }
            }
        })
        // Events wait for writes in flight side by side; the cache is
        // updated before.
        .buffer_unordered(OWN_WRITE_EVENTS_WAITING)
        .try_filter_map(|s| future::ready(Ok(s)));
        watches.push(tokio::spawn(follow(
            "Secret",
            secret_stream,
            asker.clone(),
            {
                let objects = objects.clone();
                move |s| secret_owners(&objects, &s)
            },
        )));
        scopes.push(Scope {
            namespace: ns.clone(),
            oauth_clients: objects.clone(),
            names,
            secrets: secret_cache,
            wake: asker,
            own_writes,
        });
        runners.push((asked, objects));
    }

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
    let connection_runs = crate::connection::controller::controllers(
        connection_ctx,
        &args.connections,
        &namespaces,
        &stopped,
    )
    .await;

    // Ready once every watch has listed its objects. Polled rather than
    // awaited: a waiter registered before the first list completes was seen
    // not to be woken (kube-runtime 5.0's DelayedInit).
    {
        let scopes = scopes.clone();
        let role = role.clone();
        tokio::spawn(async move {
            let synced = |s: &Scope| s.oauth_clients.synced() && s.secrets.synced();
            while !scopes.iter().all(synced) {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            if role.is_leading() {
                role.serving();
            }
            info!("caches synced; ready");
        });
    }

    let runs = runners.into_iter().map(|(asked, objects)| {
        let ctx = ctx.clone();
        let ready = {
            let objects = objects.clone();
            move || objects.synced()
        };
        runtime::run(
            asked,
            usize::from(args.concurrency),
            ready,
            move |key: runtime::Key| {
                let ctx = ctx.clone();
                let obj = objects.get(&key.namespace, &key.name);
                async move {
                    // Gone since it was asked for: deleted.
                    let obj = obj?;
                    Some(match reconcile::reconcile(obj.clone(), ctx.clone()).await {
                        Ok(action) => action,
                        Err(e) => reconcile::error_policy(obj, &e, ctx),
                    })
                }
            },
            stopped(),
        )
    });
    future::join(future::join_all(runs), future::join_all(connection_runs)).await;
    for w in watches {
        w.abort();
    }
    role.stopping();
    if let Some(l) = leadership {
        l.release().await;
    }
    match server.await {
        Ok(r) => r?,
        Err(e) => warn!(error = %e, "metrics server task"),
    }
    if lost_lease.load(Ordering::Relaxed) {
        anyhow::bail!("lost the lease while leading");
    }
    info!("stopped");
    Ok(())
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

/// Drops what no reconcile reads from cached OAuthClients: managedFields,
/// labels and every annotation but the operator's own (`oauth.collibra.dev/
/// rotate`, `…/reconcile-requested-at`). What tools add there (kubectl's
/// last-applied copy, Helm's and Argo CD's tracking) is often larger than
/// the object, and a change to it need not wake a reconcile. Nothing
/// writes a cached object back: status is applied and finalizers patched.
fn slim(o: &mut OAuthClient) {
    let m = &mut o.metadata;
    m.managed_fields = None;
    m.labels = None;
    if let Some(a) = m.annotations.as_mut() {
        a.retain(|k, _| is_operator_annotation(k));
        if a.is_empty() {
            m.annotations = None;
        }
    }
}

/// Whether an annotation key is in the operator's own prefix.
fn is_operator_annotation(key: &str) -> bool {
    key.strip_prefix(crate::api::GROUP)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Keeps of a cached Secret's metadata only what decisions read from the
/// cache (`secret::classify` and `secret::settled`, the owner mapping and
/// `OwnWrites`): identity, version, the managed-by label, owners and the
/// operator's own annotations. Everything else is read with the data when
/// it is needed.
fn slim_secret(s: &mut PartialObjectMeta<Secret>) {
    let m = &mut s.metadata;
    m.managed_fields = None;
    m.creation_timestamp = None;
    m.generation = None;
    if let Some(labels) = m.labels.as_mut() {
        labels.retain(|k, _| k == MANAGED_BY_LABEL);
    }
    if let Some(annotations) = m.annotations.as_mut() {
        annotations.retain(|k, _| secret::SETTLED_ANNOTATIONS.contains(&k.as_str()));
    }
}

/// Secret events that may wait at once for a write in flight.
const OWN_WRITE_EVENTS_WAITING: usize = 1024;

/// The Secret a watch event is about, unless it only shows a version this
/// process wrote. Deletions always count. A version someone else wrote
/// while the watch ran is noted: its metadata no longer vouches for its
/// data ([`OwnWrites::is_touched`]).
async fn not_own_write<S: kube::Resource>(
    own_writes: &OwnWrites,
    e: watcher::Event<S>,
) -> Option<S> {
    let (s, live) = match e {
        watcher::Event::Apply(s) => (s, true),
        watcher::Event::InitApply(s) => (s, false),
        watcher::Event::Delete(s) => return Some(s),
        watcher::Event::Init | watcher::Event::InitDone => return None,
    };
    let ns = s.namespace().unwrap_or_default();
    let name = s.name_any();
    let own = own_writes
        .settled(&ns, &name, s.resource_version().as_deref())
        .await;
    if own {
        return None;
    }
    if live {
        own_writes.touched_by_others(&ns, &name);
    }
    Some(s)
}

/// Follows a watch: `keys` takes each item and says which objects it
/// wakes; errors are logged (the watch retries with backoff).
async fn follow<T>(
    what: &'static str,
    stream: impl futures::Stream<Item = Result<T, watcher::Error>>,
    asker: runtime::Asker,
    keys: impl Fn(T) -> Vec<runtime::Key>,
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(item) => {
                for key in keys(item) {
                    asker.now(key);
                }
            }
            Err(e) => warn!(error = %e, watch = what, "watch error"),
        }
    }
}

/// Which OAuthClients a Secret event concerns: its controller owner, or,
/// for a pre-created Secret without owner, the objects that name it.
fn secret_owners(
    objects: &object_cache::ObjectCache,
    s: &PartialObjectMeta<Secret>,
) -> Vec<runtime::Key> {
    let ns = s.namespace().unwrap_or_default();
    let owner = s
        .owner_references()
        .iter()
        .find(|r| r.controller == Some(true) && r.kind == "OAuthClient");
    if let Some(r) = owner {
        return vec![runtime::Key::new(&ns, &r.name)];
    }
    objects.keys_with_secret(&ns, &s.name_any())
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

    fn secret(rv: &str) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = Some("team-a".to_owned());
        s.metadata.name = Some("billing".to_owned());
        s.metadata.resource_version = Some(rv.to_owned());
        s
    }

    #[test]
    fn own_secret_writes_wake_nothing_but_deletions_and_others_do() {
        let own = OwnWrites::default();
        own.record(&secret("11"));
        own.record(&secret("12"));
        let woken = |e| {
            futures::FutureExt::now_or_never(not_own_write(&own, e))
                .flatten()
                .is_some()
        };
        assert!(!woken(watcher::Event::Apply(secret("11"))));
        assert!(woken(watcher::Event::Apply(secret("13"))), "someone else's");
        assert!(!woken(watcher::Event::InitApply(secret("12"))));
        own.record(&secret("14"));
        assert!(woken(watcher::Event::Delete(secret("14"))), "a deletion");
        assert!(!woken(watcher::Event::Init));
        assert!(!woken(watcher::Event::InitDone));
    }

    #[test]
    fn a_live_write_by_someone_else_is_noted_until_read_or_written_again() {
        let own = OwnWrites::default();
        let event = |e| futures::FutureExt::now_or_never(not_own_write(&own, e)).flatten();
        assert!(event(watcher::Event::InitApply(secret("30"))).is_some());
        assert!(!own.is_touched("team-a", "billing"), "listed, not written");
        own.record(&secret("31"));
        assert!(event(watcher::Event::Apply(secret("31"))).is_none());
        assert!(!own.is_touched("team-a", "billing"), "our own write");
        assert!(event(watcher::Event::Apply(secret("32"))).is_some());
        assert!(own.is_touched("team-a", "billing"), "someone else's");
        own.reading("team-a", "billing");
        assert!(!own.is_touched("team-a", "billing"), "read again");
        assert!(event(watcher::Event::Apply(secret("33"))).is_some());
        own.record(&secret("34"));
        assert!(!own.is_touched("team-a", "billing"), "written again");
    }

    #[test]
    fn a_cached_oauth_client_keeps_only_the_operators_annotations() {
        let mut o: OAuthClient = serde_json::from_value(serde_json::json!({
            "apiVersion": "oauth.collibra.dev/v1alpha1", "kind": "OAuthClient",
            "metadata": {
                "name": "billing", "namespace": "team-a",
                "labels": {"app.kubernetes.io/instance": "billing"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "meta.helm.sh/release-name": "billing",
                    "oauth.collibra.dev/rotate": "2026-12-01",
                    "oauth.collibra.dev/reconcile-requested-at": "now",
                    "oauth.collibra.dev.example.com/other": "x"
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": {"clientName": "billing-etl"}
        }))
        .expect("object");
        slim(&mut o);
        assert_eq!(o.metadata.labels, None);
        assert_eq!(o.metadata.managed_fields, None);
        let kept: Vec<_> = o.annotations().keys().map(String::as_str).collect();
        assert_eq!(
            kept,
            [
                "oauth.collibra.dev/reconcile-requested-at",
                "oauth.collibra.dev/rotate"
            ]
        );
        let mut bare = OAuthClient::new("plain", o.spec.clone());
        bare.metadata.annotations = Some([("a/b".to_owned(), "c".to_owned())].into());
        slim(&mut bare);
        assert_eq!(bare.metadata.annotations, None, "no empty map kept");
    }

    #[test]
    fn a_slimmed_secret_still_tells_whether_it_is_settled() {
        let mut owner = OAuthClient::new(
            "billing",
            serde_json::from_value(serde_json::json!({
                "clientName": "billing-etl",
                "secretTemplate": {"labels": {"team": "a"}, "annotations": {"note": "x"}}
            }))
            .expect("spec"),
        );
        owner.metadata.namespace = Some("team-a".into());
        owner.metadata.uid = Some("uid-1".into());
        let endpoint = secret::Endpoint {
            token_url: "https://c/token",
            collibra_url: "https://c",
        };
        let key = secrecy::SecretString::from("s3cr3t");
        let written = secret::desired(
            &owner,
            endpoint,
            secret::Contents::Credentials {
                creds: secret::Credentials {
                    client_id: "id1",
                    client_secret: &key,
                },
                rotated_for: None,
            },
            false,
        );
        let mut cached = PartialObjectMeta::<Secret> {
            types: None,
            metadata: written.metadata.clone(),
            _phantom: std::marker::PhantomData,
        };
        slim_secret(&mut cached);
        let kept = cached.metadata.annotations.clone().unwrap_or_default();
        assert!(!kept.contains_key("note"), "template annotations go");
        assert_eq!(
            cached.metadata.labels.clone().unwrap_or_default().len(),
            1,
            "only the managed-by label stays"
        );
        // What a reconcile sees: the compact cache's copy.
        let cache = secret_cache::SecretCache::default();
        cache.apply(&watcher::Event::Apply(cached));
        let seen = cache.get("team-a", "billing").expect("cached");
        let m = secret::settled(&owner, &seen, endpoint).expect("still settled");
        assert_eq!(m.client_id.as_deref(), Some("id1"));
    }

    #[tokio::test]
    async fn an_event_waits_for_the_answer_of_a_write_in_flight() {
        let own = Arc::new(OwnWrites::default());
        let write = own.begin("team-a", "billing");
        let event = tokio::spawn({
            let own = own.clone();
            async move { not_own_write(&own, watcher::Event::Apply(secret("21"))).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(!event.is_finished(), "waits while the write is in flight");
        write.written(&secret("21"));
        assert!(event.await.expect("task").is_none(), "ours once answered");
        // A write that failed records nothing: the event counts.
        drop(own.begin("team-a", "billing"));
        assert!(
            not_own_write(&own, watcher::Event::Apply(secret("22")))
                .await
                .is_some()
        );
    }
}

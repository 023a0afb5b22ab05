//! The path of an OAuthClient into a reconcile, per watched scope (the whole
//! cluster, or one namespace): the OAuthClient watch feeds kube-runtime's
//! reflector store and its `Controller`; the managed Secrets' watch (metadata
//! only) feeds the Secret cache and wakes the Secret's OAuthClient unless
//! the event shows the operator's own write; connections and rival claims
//! wake objects through [`Wake`]. docs/design.md ("The path of one
//! OAuthClient") follows it step by step.

use std::{panic::AssertUnwindSafe, sync::Arc};

use futures::{FutureExt, Stream, StreamExt, TryStreamExt, future, stream::BoxStream};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller, Predicate, WatchStreamExt, controller,
        controller::Action,
        predicates,
        reflector::{self, ObjectRef},
        watcher,
    },
};
use tracing::{debug, warn};

use super::{
    context::{Context, Scope, Wake},
    names::NameIndex,
    object_state::ObjectStates,
    own_writes::{self, OwnWrites},
    reconcile,
    relist::{ListedFlag, objects_after_list, reflect_first_list_live},
    secret,
    secret_cache::SecretCache,
};
use crate::api::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, OAuthClient};

/// One scope's watches, ready to drive its controller.
pub struct ScopeWatches {
    /// What reconciles read of the scope.
    pub scope: Scope,
    /// OAuthClients to reconcile: every change that matters, and the whole
    /// list once it is complete.
    objects: BoxStream<'static, Result<OAuthClient, watcher::Error>>,
    /// OAuthClients whose Secret someone else changed or deleted.
    secrets: BoxStream<'static, ObjectRef<OAuthClient>>,
    /// OAuthClients asked for through the scope's [`Wake`].
    woken: BoxStream<'static, ObjectRef<OAuthClient>>,
}

impl ScopeWatches {
    /// Whether both watches of the scope have listed once.
    pub fn synced(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let listed = self.scope.listed.clone();
        let secrets = self.scope.secrets.clone();
        move || listed.is_set() && secrets.synced()
    }
}

/// Builds the watches of the scope `namespace` (`None`: all namespaces).
/// Nothing runs until [`run`] drives them.
pub fn watch(
    client: &Client,
    namespace: Option<String>,
    states: Arc<ObjectStates>,
) -> ScopeWatches {
    let (oauth_api, secret_api): (Api<OAuthClient>, Api<PartialObjectMeta<Secret>>) =
        match &namespace {
            Some(n) => (
                Api::namespaced(client.clone(), n),
                Api::namespaced(client.clone(), n),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
    let (store, writer) = reflector::store::<OAuthClient>();
    let names = Arc::new(NameIndex::default());
    let listed = ListedFlag::new(false);
    // The initial list is streamed from the API server's watch cache
    // (`sendInitialEvents`, served from Kubernetes 1.34): no pages and no
    // large response. Its objects are reconciled as they arrive
    // (BENCHMARKS.md, "Restart"; docs/design.md, "After a start").
    let events = watcher(oauth_api, watcher::Config::default().streaming_lists())
        .default_backoff()
        .modify(slim);
    let events = reflect_first_list_live(events, writer).inspect_ok({
        let names = names.clone();
        let listed = listed.clone();
        move |e| {
            // The clientName index follows every event; what it no
            // longer holds is gone, and so is the state kept for it.
            for uid in names.apply(e) {
                states.forget(&uid);
            }
            if matches!(e, watcher::Event::InitDone) {
                debug!(watch = "OAuthClient", "listed");
                listed.set();
            }
        }
    });
    // What wakes a reconcile: a new object (or one created again under its
    // name: the predicates key by uid), a spec change (generation, which
    // deletion also bumps), the operator's annotations (rotation, a
    // reconcile request; `slim` keeps no others) and finalizers. The
    // operator's own status writes wake nothing.
    let objects = objects_after_list(events, store.clone())
        .predicate_filter(
            predicates::generation
                .combine(predicates::annotations)
                .combine(predicates::finalizers),
            Default::default(),
        )
        .boxed();

    let secrets = Arc::new(SecretCache::default());
    let own_writes = Arc::new(OwnWrites::default());
    let label = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
    // Metadata only: no Secret's data is held in memory (docs/design.md,
    // "Memory"); a reconcile reads it when the metadata cannot vouch for it
    // (`secret::settled`). A version this process wrote wakes nothing: the
    // reconcile that wrote it knows it already (docs/design.md, "Requests
    // per registration"). Deletions and everyone else's writes do.
    let secret_events = watcher(
        secret_api,
        watcher::Config::default().labels(&label).streaming_lists(),
    )
    .default_backoff()
    .modify(slim_secret)
    .inspect_ok({
        let cache = secrets.clone();
        move |e| {
            if matches!(e, watcher::Event::InitDone) {
                debug!(watch = "Secret", "listed");
            }
            cache.apply(e);
        }
    })
    // The first list wakes nothing: after a start every OAuthClient is
    // reconciled as its own list brings it. A later list wakes the owners
    // of what changed while the watch was away.
    .try_filter({
        let mut first = true;
        move |e| {
            let wakes = !(first && matches!(e, watcher::Event::InitApply(_)));
            if matches!(e, watcher::Event::InitDone) {
                first = false;
            }
            future::ready(wakes)
        }
    })
    .map({
        let own_writes = own_writes.clone();
        move |e| {
            let own_writes = own_writes.clone();
            async move {
                match e {
                    Ok(e) => Ok(own_writes::not_own_write(&own_writes, e).await),
                    Err(e) => Err(e),
                }
            }
        }
    })
    // Events wait for writes in flight side by side; the cache is updated
    // before.
    .buffer_unordered(own_writes::OWN_WRITE_EVENTS_WAITING)
    .try_filter_map(|s| future::ready(Ok(s)));
    let (wake, woken) = Wake::channel();
    let scope = Scope {
        namespace,
        oauth_clients: store,
        names,
        secrets,
        wake,
        own_writes,
        listed,
    };
    let secrets = owners_of_secrets(secret_events, scope.clone()).boxed();
    ScopeWatches {
        scope,
        objects,
        secrets,
        woken: woken.boxed(),
    }
}

/// The OAuthClients each Secret event concerns; watch errors are logged
/// (the watch retries with backoff).
fn owners_of_secrets(
    events: impl Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + 'static,
    scope: Scope,
) -> impl Stream<Item = ObjectRef<OAuthClient>> + Send + 'static {
    events
        .filter_map(|e| {
            future::ready(match e {
                Ok(s) => Some(s),
                Err(e) => {
                    warn!(error = %e, watch = "Secret", "watch error");
                    None
                }
            })
        })
        .flat_map(move |s| futures::stream::iter(secret_owners(&scope, &s)))
}

/// Which OAuthClients a Secret event concerns: its controller owner, or,
/// for a pre-created Secret without owner, the objects that name it.
fn secret_owners(scope: &Scope, s: &PartialObjectMeta<Secret>) -> Vec<ObjectRef<OAuthClient>> {
    let ns = s.namespace().unwrap_or_default();
    let owner = s
        .owner_references()
        .iter()
        .find(|r| r.controller == Some(true) && r.kind == "OAuthClient");
    if let Some(r) = owner {
        return vec![ObjectRef::new(&r.name).within(&ns)];
    }
    scope
        .objects_with_secret(&ns, &s.name_any())
        .iter()
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// Runs kube-runtime's `Controller` over one scope's watches until
/// `stopped`: at most `concurrency` reconciles at once, never two of one
/// object, none before the OAuthClients are listed.
pub async fn run(
    watches: ScopeWatches,
    ctx: Arc<Context>,
    concurrency: u16,
    stopped: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ScopeWatches {
        scope,
        objects,
        secrets,
        woken,
        ..
    } = watches;
    Controller::for_stream(objects, scope.oauth_clients.clone())
        .with_config(controller::Config::default().concurrency(concurrency))
        .reconcile_on(secrets)
        .reconcile_on(woken)
        .graceful_shutdown_on(stopped)
        .run(reconcile_caught, reconcile::error_policy, ctx)
        .for_each(|r| {
            match r {
                Ok(_) => {}
                // Logged by the error policy.
                Err(controller::Error::ReconcilerFailed(..)) => {}
                // Deleted since it was asked for: nothing to do.
                Err(controller::Error::ObjectNotFound(r)) => debug!(object = %r, "gone"),
                Err(e) => warn!(error = %e, "OAuthClient controller"),
            }
            future::ready(())
        })
        .await;
}

/// A reconcile whose panic (a bug) is an error like any other: the object
/// is tried again with backoff, and the other objects go on.
async fn reconcile_caught(
    obj: Arc<OAuthClient>,
    ctx: Arc<Context>,
) -> Result<Action, reconcile::Error> {
    match AssertUnwindSafe(reconcile::reconcile(obj, ctx))
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(panic) => Err(reconcile::Error::Panicked {
            message: panic_message(panic.as_ref()),
        }),
    }
}

/// What a panic said, when it said it with a string.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

/// Drops what no reconcile reads from cached OAuthClients: managedFields,
/// labels and every annotation but the operator's own (`oauth.collibra.dev/
/// rotate`, `…/reconcile-requested-at`). What tools add there (kubectl's
/// last-applied copy, Helm's and Argo CD's tracking) is often larger than
/// the object, and a change to it need not wake a reconcile. Nothing
/// writes a cached object back: status is applied and finalizers patched.
pub fn slim(o: &mut OAuthClient) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let cache = SecretCache::default();
        cache.apply(&watcher::Event::Apply(cached));
        let seen = cache.get("team-a", "billing").expect("cached");
        let m = secret::settled(&owner, &seen, endpoint).expect("still settled");
        assert_eq!(m.client_id.as_deref(), Some("id1"));
    }

    #[tokio::test]
    async fn a_reconcile_that_panics_is_an_error_of_its_object() {
        let message = AssertUnwindSafe(async { panic!("boom") })
            .catch_unwind()
            .await
            .map_err(|p| panic_message(p.as_ref()));
        assert_eq!(message, Err("boom".to_owned()));
        let formatted = AssertUnwindSafe(async { panic!("object {}", 7) })
            .catch_unwind()
            .await
            .map_err(|p| panic_message(p.as_ref()));
        assert_eq!(formatted, Err("object 7".to_owned()));
    }
}

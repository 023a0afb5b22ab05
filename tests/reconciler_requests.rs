//! The reconciler's request sequences against a mock Kubernetes API server
//! (tower-test) and the in-process Collibra simulator: each Kubernetes
//! request is checked for method, path and body, in order.

use std::{sync::Arc, time::Duration};

use collibra_client::{Auth, CollibraClient, Config, Credential};
use collibra_oauth_operator::{
    api::{FINALIZER, OAuthClient},
    controller::{
        context::{Context, Scope, Settings, Wake},
        object_state::ObjectStates,
        reconcile::reconcile,
        relist::ListedFlag,
        secret_cache::SecretCache,
    },
    events::Recorder,
    metrics::Metrics,
};
use collibra_sim::{SimConfig, Simulator};
use http::{Request, Response, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Client, client::Body, core::PartialObjectMeta, runtime::events::Reporter};
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn object() -> OAuthClient {
    serde_json::from_value(json!({
        "apiVersion": "oauth.collibra.dev/v1alpha1",
        "kind": "OAuthClient",
        "metadata": {
            "name": "billing", "namespace": "team-a", "uid": "uid-1", "generation": 1,
            "resourceVersion": "10", "creationTimestamp": "2026-11-26T10:00:00Z",
            "finalizers": [FINALIZER]
        },
        "spec": {"clientName": "billing-etl"}
    }))
    .expect("valid object")
}

async fn context(client: Client, sim: &Simulator) -> Arc<Context> {
    context_with(client, sim, true).await
}

/// `synced`: whether the Secret watch has listed (and found none).
async fn context_with(client: Client, sim: &Simulator, synced: bool) -> Arc<Context> {
    context_showing(client, sim, synced, None).await
}

/// As [`context_showing`] with the Secret watch listed, the OAuthClient
/// watch `listed` or still listing.
async fn context_listing(
    client: Client,
    sim: &Simulator,
    secret: ObjectMeta,
    listed: bool,
) -> Arc<Context> {
    context_built(client, sim, true, Some(secret), listed).await
}

/// As [`context_with`], the Secret watch showing `secret` (metadata only).
async fn context_showing(
    client: Client,
    sim: &Simulator,
    synced: bool,
    secret: Option<ObjectMeta>,
) -> Arc<Context> {
    context_built(client, sim, synced, secret, true).await
}

async fn context_built(
    client: Client,
    sim: &Simulator,
    synced: bool,
    secret: Option<ObjectMeta>,
    listed: bool,
) -> Arc<Context> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = Config::new(
        sim.url().parse().expect("url"),
        Auth::OAuth {
            client_id: Credential::Value("operator".to_owned().into()),
            client_secret: Credential::Value("operator-secret".to_owned().into()),
        },
    );
    config.request_timeout = Duration::from_secs(5);
    let collibra = CollibraClient::new(config).expect("client");
    let (oauth_clients, _writer) = kube::runtime::reflector::store::<OAuthClient>();
    // The Secret watch has listed (and found none): the operator's state
    // once its caches synced.
    let secrets = Arc::new(SecretCache::default());
    if let Some(metadata) = secret {
        secrets.apply(&kube::runtime::watcher::Event::InitApply(
            PartialObjectMeta {
                types: None,
                metadata,
                _phantom: std::marker::PhantomData,
            },
        ));
    }
    if synced {
        secrets.apply(&kube::runtime::watcher::Event::InitDone);
    }
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "collibra-oauth-operator".into(),
            instance: None,
        },
    );
    let metrics = Arc::new(Metrics::default());
    Arc::new(Context::new(
        client,
        collibra,
        recorder,
        metrics.clone(),
        vec![Scope {
            namespace: None,
            oauth_clients,
            names: Default::default(),
            secrets,
            wake: Wake::channel().0,
            own_writes: Default::default(),
            listed: ListedFlag::new(listed),
        }],
        Settings {
            resync: Duration::from_secs(600),
            deletion_grace: Duration::from_secs(60),
            list_max_age: Duration::from_secs(5),
            secrets_sync_wait: Duration::ZERO,
        },
        Arc::new(ObjectStates::new(metrics)),
    ))
}

async fn next(
    handle: &mut Handle,
) -> (
    http::request::Parts,
    Value,
    tower_test::mock::SendResponse<Response<Body>>,
) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("a request within 10s")
        .expect("service alive");
    let (parts, body) = req.into_parts();
    let bytes = body.collect_bytes().await.expect("body");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (parts, value, send)
}

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, status: StatusCode, body: Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("response"),
    );
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

fn b64(v: &Value) -> String {
    use base64::Engine as _;
    let s = v.as_str().expect("string");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("base64"),
    )
    .expect("utf8")
}

#[tokio::test]
async fn new_object_claims_registers_writes_then_reports() {
    let sim = Simulator::start(SimConfig::default()).await.expect("sim");
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let ctx = context(client, &sim).await;
    let collibra = sim.handle();

    let server = tokio::spawn(async move {
        // 1. No GET: the Secret watch has listed and shows none, and the
        // claim's create fails on any Secret of that name.
        // 2. The claim: created (never applied over an existing Secret), no credentials yet.
        let (p, body, send) = next(&mut handle).await;
        assert_eq!(
            (p.method.as_str(), p.uri.path()),
            ("POST", "/api/v1/namespaces/team-a/secrets")
        );
        assert!(
            body["metadata"]["annotations"]["oauth.collibra.dev/registering-since"].is_string()
        );
        assert!(body["data"].get("client_secret").is_none());
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        let mut created = body.clone();
        created["metadata"]["resourceVersion"] = json!("11");
        let created_claim = created.clone();
        respond(send, StatusCode::CREATED, created);

        // 3. Right after the 201: the credentials, and the claim removed.
        let (p, body, send) = next(&mut handle).await;
        assert_eq!(p.method, "PATCH");
        assert_eq!(p.uri.path(), "/api/v1/namespaces/team-a/secrets/billing");
        assert_eq!(
            p.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/merge-patch+json")
        );
        assert_eq!(
            body["metadata"]["annotations"]["oauth.collibra.dev/registering-since"],
            Value::Null
        );
        let id = b64(&body["data"]["client_id"]);
        let secret = b64(&body["data"]["client_secret"]);
        assert_eq!(b64(&body["data"]["client_name"]), "billing-etl");
        // What the metadata-only watch relies on: the id and a digest of
        // the rendering's inputs, never the secret.
        let rendered = body["metadata"]["annotations"]["oauth.collibra.dev/rendered"]
            .as_str()
            .expect("the rendering recorded")
            .to_owned();
        assert!(
            rendered.contains(&id) && !rendered.contains(&secret),
            "{rendered}"
        );
        let mut stored = created_claim.clone();
        merge(&mut stored, &body);
        stored["metadata"]["resourceVersion"] = json!("12");
        let mut patched = body.clone();
        patched["metadata"]["annotations"] = json!({});
        patched["metadata"]["name"] = json!("billing");
        respond(send, StatusCode::OK, patched);

        // 4. and 5., side by side: an Event for the registration, and
        // status by server-side apply on the status subresource.
        let (first, second) = (next(&mut handle).await, next(&mut handle).await);
        let (event, status) = if first.0.uri.path().ends_with("/events") {
            (first, second)
        } else {
            (second, first)
        };
        let (p, body, send) = event;
        assert_eq!(p.method, "POST");
        assert_eq!(
            p.uri.path(),
            "/apis/events.k8s.io/v1/namespaces/team-a/events"
        );
        assert_eq!(body["reason"], "Registered");
        assert!(
            !body.to_string().contains(&secret),
            "the Event must not carry the secret"
        );
        respond(send, StatusCode::CREATED, body);

        let (p, body, send) = status;
        assert_eq!(p.method, "PATCH");
        assert_eq!(
            p.uri.path(),
            "/apis/oauth.collibra.dev/v1alpha1/namespaces/team-a/oauthclients/billing/status"
        );
        let query = p.uri.query().unwrap_or("");
        assert!(
            query.contains("fieldManager=collibra-oauth-operator") && query.contains("force=true"),
            "{query}"
        );
        assert_eq!(body["status"]["clientId"], Value::String(id.clone()));
        assert_eq!(body["status"]["conditions"][0]["reason"], "Registered");
        assert!(body.get("spec").is_none(), "the spec is never written");
        assert!(
            !body.to_string().contains(&secret),
            "status must not carry the secret"
        );
        respond(
            send,
            StatusCode::OK,
            json!({
                "apiVersion": "oauth.collibra.dev/v1alpha1", "kind": "OAuthClient",
                "metadata": {"name": "billing", "namespace": "team-a"},
                "spec": {"clientName": "billing-etl"}, "status": body["status"].clone()
            }),
        );
        (id, secret, stored, body["status"].clone())
    });

    let action = reconcile(Arc::new(object()), ctx.clone())
        .await
        .expect("reconciled");
    let (id, secret, stored, status) = server.await.expect("mock server assertions");
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(600))
    );
    assert!(collibra.verify_credentials(&id, &secret));
    assert_eq!(collibra.stats().requests_for("list"), 1);
    assert_eq!(collibra.stats().requests_for("register"), 1);

    // A resync once the watch shows the Secret (metadata only): its
    // metadata vouches for the data, so nothing is read or written.
    let mut ready = object();
    ready.status = Some(serde_json::from_value(status).expect("status"));
    let meta: ObjectMeta = serde_json::from_value(stored["metadata"].clone()).expect("metadata");
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context_showing(
        Client::new(service, "default"),
        &sim,
        true,
        Some(meta.clone()),
    )
    .await;
    let resync = tokio::time::timeout(
        Duration::from_secs(10),
        reconcile(Arc::new(ready.clone()), ctx.clone()),
    )
    .await
    .expect("no request left waiting for an answer")
    .expect("reconciled");
    assert_eq!(
        resync,
        kube::runtime::controller::Action::requeue(Duration::from_secs(600))
    );
    no_request(&mut handle, "a settled Secret costs no request").await;

    // Someone else wrote it since: its data is read (never from the cache),
    // found as it should be, and nothing is written.
    ctx.own_writes("team-a")
        .expect("scope")
        .touched_by_others("team-a", "billing");
    let server = tokio::spawn(async move {
        let (p, _, send) = next(&mut handle).await;
        assert_eq!(
            (p.method.as_str(), p.uri.path()),
            ("GET", "/api/v1/namespaces/team-a/secrets/billing")
        );
        let accept = p
            .headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(!accept.contains("PartialObjectMetadata"), "{accept}");
        respond(send, StatusCode::OK, stored);
        handle
    });
    let verified = tokio::time::timeout(
        Duration::from_secs(10),
        reconcile(Arc::new(ready.clone()), ctx),
    )
    .await
    .expect("nothing but the read")
    .expect("reconciled");
    assert_eq!(
        verified,
        kube::runtime::controller::Action::requeue(Duration::from_secs(600))
    );
    let mut handle = server.await.expect("mock server assertions");
    no_request(&mut handle, "the Secret was as it should be: no write").await;
    assert_eq!(collibra.stats().requests_for("register"), 1);

    // Just started, the OAuthClients still arriving: the object is in sync
    // on its own, so it is confirmed at once, with no request.
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context_listing(Client::new(service, "default"), &sim, meta, false).await;
    let early = tokio::time::timeout(
        Duration::from_secs(10),
        reconcile(Arc::new(ready.clone()), ctx.clone()),
    )
    .await
    .expect("confirmed before the list is complete")
    .expect("reconciled");
    assert_eq!(
        early,
        kube::runtime::controller::Action::requeue(Duration::from_secs(600))
    );
    no_request(&mut handle, "in sync: nothing to write").await;

    // An older object that claims the same name has arrived meanwhile: the
    // name is not this object's (rule 1), which the whole list may confirm
    // or not, so it waits for the list and then reports the conflict.
    let mut rival = object();
    rival.metadata.name = Some("billing-first".to_owned());
    rival.metadata.uid = Some("uid-0".to_owned());
    rival.metadata.creation_timestamp =
        Some(serde_json::from_value(json!("2026-11-25T10:00:00Z")).expect("timestamp"));
    ctx.scopes[0]
        .names
        .apply(&kube::runtime::watcher::Event::Apply(rival));
    let waiting = tokio::spawn(reconcile(Arc::new(ready.clone()), ctx.clone()));
    no_request(&mut handle, "held until the OAuthClients are listed").await;
    assert!(!waiting.is_finished(), "waits for the list");
    ctx.scopes[0].listed.set();
    let (p, body, send) = next(&mut handle).await;
    assert_eq!(
        (p.method.as_str(), p.uri.path()),
        (
            "PATCH",
            "/apis/oauth.collibra.dev/v1alpha1/namespaces/team-a/oauthclients/billing/status"
        )
    );
    let ready_condition = body["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Ready")
        .expect("Ready")
        .clone();
    assert_eq!(ready_condition["reason"], "NameConflict", "{body}");
    respond(
        send,
        StatusCode::OK,
        serde_json::to_value(&ready).expect("json"),
    );
    // The transition's Event.
    let (p, body, send) = next(&mut handle).await;
    assert_eq!(p.method, "POST");
    respond(send, StatusCode::CREATED, body);
    let conflict = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("done once listed")
        .expect("task")
        .expect("reconciled");
    assert_eq!(
        conflict,
        kube::runtime::controller::Action::requeue(Duration::from_secs(60))
    );

    // A deletion after a start waits for the list too: whether the client
    // is this object's to delete rests on every object's claim.
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context_listing(
        Client::new(service, "default"),
        &sim,
        ObjectMeta::default(),
        false,
    )
    .await;
    let mut deleted = ready;
    deleted.metadata.deletion_timestamp =
        Some(serde_json::from_value(json!("2026-12-01T10:00:00Z")).expect("timestamp"));
    let cleanup = tokio::spawn(reconcile(Arc::new(deleted), ctx.clone()));
    no_request(&mut handle, "a cleanup waits for the list").await;
    assert!(!cleanup.is_finished(), "waits for the list");
    ctx.scopes[0].listed.set();
    let (p, _, _send) = next(&mut handle).await;
    assert_eq!(
        (p.method.as_str(), p.uri.path()),
        (
            "PATCH",
            "/apis/oauth.collibra.dev/v1alpha1/namespaces/team-a/oauthclients/billing/status"
        ),
        "the cleanup goes on once listed (reporting it deletes)"
    );
    cleanup.abort();
    assert_eq!(collibra.stats().requests_for("delete"), 0);
}

/// Fails if a request reached the mock API server (`why`: why none should).
async fn no_request(handle: &mut Handle, why: &str) {
    if let Ok(Some((req, _))) =
        tokio::time::timeout(Duration::from_millis(100), handle.next_request()).await
    {
        panic!("{why}, yet: {} {}", req.method(), req.uri());
    }
}

/// RFC 7386 JSON merge patch of `patch` into `target`.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[tokio::test]
async fn foreign_secret_is_reported_without_reading_or_registering() {
    let sim = Simulator::start(SimConfig::default()).await.expect("sim");
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(Client::new(service, "default"), &sim).await;
    let collibra = sim.handle();
    let server = tokio::spawn(async move {
        // The watch shows no (labelled) Secret: the claim's create finds
        // the foreign one.
        let (p, _, send) = next(&mut handle).await;
        assert_eq!(
            (p.method.as_str(), p.uri.path()),
            ("POST", "/api/v1/namespaces/team-a/secrets")
        );
        respond(
            send,
            StatusCode::CONFLICT,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409, "message": "exists"}),
        );
        // Then its metadata only: a foreign Secret's data is never read.
        let (p, _, send) = next(&mut handle).await;
        assert_eq!(p.method, "GET");
        assert_eq!(p.uri.path(), "/api/v1/namespaces/team-a/secrets/billing");
        let accept = p
            .headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            accept.contains("PartialObjectMetadata"),
            "metadata-only GET, got accept {accept}"
        );
        respond(
            send,
            StatusCode::OK,
            json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {"name": "billing", "namespace": "team-a", "labels": {"team": "x"}}
            }),
        );
        // No GET of the data and no write: straight to the status and Event.
        let (p, body, send) = next(&mut handle).await;
        assert_eq!(
            p.method, "PATCH",
            "expected the status write, got {} {}",
            p.method, p.uri
        );
        assert!(p.uri.path().ends_with("/status"));
        assert_eq!(body["status"]["conditions"][0]["reason"], "SecretConflict");
        assert_eq!(body["status"]["conditions"][2]["type"], "Stalled");
        assert_eq!(body["status"]["conditions"][2]["status"], "True");
        respond(
            send,
            StatusCode::OK,
            json!({
                "apiVersion": "oauth.collibra.dev/v1alpha1", "kind": "OAuthClient",
                "metadata": {"name": "billing", "namespace": "team-a"},
                "spec": {"clientName": "billing-etl"}, "status": body["status"].clone()
            }),
        );
        let (p, body, send) = next(&mut handle).await;
        assert_eq!(p.method, "POST");
        assert_eq!(body["reason"], "SecretConflict");
        assert_eq!(body["type"], "Warning");
        respond(send, StatusCode::CREATED, body);
    });
    reconcile(Arc::new(object()), ctx)
        .await
        .expect("reconciled");
    server.await.expect("mock server assertions");
    assert_eq!(collibra.stats().requests_for("register"), 0);
}

/// After a start, before the connections that existed are loaded, an
/// object whose connection is not known yet waits without a word: no
/// request at all, no status, no Event; loading wakes it.
#[tokio::test]
async fn an_unknown_connection_before_the_connections_are_loaded_changes_nothing() {
    let sim = Simulator::start(SimConfig::default()).await.expect("sim");
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(Client::new(service, "default"), &sim).await;
    let collibra = sim.handle();
    let mut obj = object();
    obj.spec.connection_ref = Some(
        serde_json::from_value(json!({"kind": "CollibraConnection", "name": "sandbox"}))
            .expect("ref"),
    );
    let action = reconcile(Arc::new(obj), ctx).await.expect("reconciled");
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(5))
    );
    let asked = tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await;
    assert!(
        !matches!(asked, Ok(Some(_))),
        "no request to the API server"
    );
    assert_eq!(collibra.stats().requests.values().sum::<u64>(), 0);
}

#[tokio::test]
async fn missing_connection_is_reported_without_any_request_to_collibra() {
    let sim = Simulator::start(SimConfig::default()).await.expect("sim");
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(Client::new(service, "default"), &sim).await;
    // The connections that existed at start are loaded: a missing one is
    // missing.
    ctx.connections.mark_loaded();
    let collibra = sim.handle();
    let mut obj = object();
    obj.spec.connection_ref = Some(
        serde_json::from_value(json!({"kind": "CollibraConnection", "name": "sandbox"}))
            .expect("ref"),
    );
    let server = tokio::spawn(async move {
        // Straight to the status: no Secret is read or written.
        let (p, body, send) = next(&mut handle).await;
        assert_eq!(
            (p.method.as_str(), p.uri.path()),
            (
                "PATCH",
                "/apis/oauth.collibra.dev/v1alpha1/namespaces/team-a/oauthclients/billing/status"
            )
        );
        let ready = &body["status"]["conditions"][0];
        assert_eq!(ready["reason"], "ConnectionNotReady");
        assert_eq!(ready["status"], "False");
        let message = ready["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("CollibraConnection/team-a/sandbox: not found"),
            "{message}"
        );
        assert_eq!(body["status"]["conditions"][1]["type"], "Reconciling");
        assert_eq!(body["status"]["conditions"][1]["status"], "True");
        respond(
            send,
            StatusCode::OK,
            json!({
                "apiVersion": "oauth.collibra.dev/v1alpha1", "kind": "OAuthClient",
                "metadata": {"name": "billing", "namespace": "team-a"},
                "spec": {"clientName": "billing-etl"}, "status": body["status"].clone()
            }),
        );
        // An Event may follow the status; nothing else.
        if let Ok(Some((req, send))) =
            tokio::time::timeout(Duration::from_millis(500), handle.next_request()).await
        {
            assert_eq!(
                req.method(),
                "POST",
                "only an Event may follow: {}",
                req.uri()
            );
            assert!(req.uri().path().ends_with("/events"), "{}", req.uri());
            respond(send, StatusCode::CREATED, json!({}));
        }
    });
    let action = reconcile(Arc::new(obj), ctx).await.expect("reconciled");
    server.await.expect("mock server assertions");
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(60))
    );
    assert_eq!(collibra.stats().requests.values().sum::<u64>(), 0);
}

#[tokio::test]
async fn before_the_secret_watch_has_listed_the_secret_is_asked_for() {
    let sim = Simulator::start(SimConfig::default()).await.expect("sim");
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context_with(Client::new(service, "default"), &sim, false).await;
    let collibra = sim.handle();
    let server = tokio::spawn(async move {
        // The watch cannot tell yet: metadata only, then the claim.
        let (p, _, send) = next(&mut handle).await;
        assert_eq!(
            (p.method.as_str(), p.uri.path()),
            ("GET", "/api/v1/namespaces/team-a/secrets/billing")
        );
        respond(send, StatusCode::NOT_FOUND, not_found());
        // A backup from an interrupted type change is looked for too.
        let (p, _, send) = next(&mut handle).await;
        assert_eq!(p.method, "GET");
        assert_eq!(
            p.uri.path(),
            "/api/v1/namespaces/team-a/secrets/collibra-oauth-backup-uid-1"
        );
        respond(send, StatusCode::NOT_FOUND, not_found());
        let (p, _, send) = next(&mut handle).await;
        assert_eq!(
            (p.method.as_str(), p.uri.path()),
            ("POST", "/api/v1/namespaces/team-a/secrets")
        );
        // The claim cannot be written: nothing is registered.
        respond(
            send,
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "message": "etcd"}),
        );
    });
    let result = reconcile(Arc::new(object()), ctx).await;
    server.await.expect("mock server assertions");
    assert!(result.is_err(), "a failed claim fails the reconcile");
    assert_eq!(collibra.stats().requests_for("register"), 0);
}

/// A user application on an instance that ignores `redirect_uris`:
/// the client exists and its secret was shown once, so the
/// credentials are written exactly as for any registration, and then the
/// object reports `CollibraRejected` saying which field was ignored.
#[tokio::test]
async fn an_ignored_redirect_uris_field_keeps_the_credentials_and_is_reported() {
    let sim = Simulator::start(SimConfig {
        redirect_uris: collibra_sim::RedirectUris::Ignored,
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(Client::new(service, "default"), &sim).await;
    let collibra = sim.handle();
    let mut obj = object();
    obj.spec = serde_json::from_value(json!({
        "clientName": "billing-etl",
        "grantTypes": ["authorization_code"],
        "redirectUris": ["https://billing.example/cb"]
    }))
    .expect("spec");

    let server = tokio::spawn(async move {
        // The claim, then the credentials, as for every registration.
        let (p, body, send) = next(&mut handle).await;
        assert_eq!(
            (p.method.as_str(), p.uri.path()),
            ("POST", "/api/v1/namespaces/team-a/secrets")
        );
        let mut created = body.clone();
        created["metadata"]["resourceVersion"] = json!("11");
        respond(send, StatusCode::CREATED, created);
        let (p, body, send) = next(&mut handle).await;
        assert_eq!(
            (p.method.as_str(), p.uri.path()),
            ("PATCH", "/api/v1/namespaces/team-a/secrets/billing")
        );
        let id = b64(&body["data"]["client_id"]);
        let secret = b64(&body["data"]["client_secret"]);
        let mut patched = body.clone();
        patched["metadata"]["annotations"] = json!({});
        patched["metadata"]["name"] = json!("billing");
        respond(send, StatusCode::OK, patched);

        // The registration's Event, side by side with the status.
        let mut events = Vec::new();
        loop {
            let (p, body, send) = next(&mut handle).await;
            if p.uri.path().ends_with("/events") {
                events.push(body["reason"].as_str().unwrap_or("").to_owned());
                respond(send, StatusCode::CREATED, body);
                continue;
            }
            assert_eq!(
                p.uri.path(),
                "/apis/oauth.collibra.dev/v1alpha1/namespaces/team-a/oauthclients/billing/status"
            );
            let status = body["status"].clone();
            respond(
                send,
                StatusCode::OK,
                json!({
                    "apiVersion": "oauth.collibra.dev/v1alpha1", "kind": "OAuthClient",
                    "metadata": {"name": "billing", "namespace": "team-a"},
                    "spec": {"clientName": "billing-etl"}, "status": status.clone()
                }),
            );
            // Ready's move is recorded after the status write (and the
            // registration's Event, when it was not sent first).
            while events.len() < 2 {
                let (p, body, send) = next(&mut handle).await;
                assert!(p.uri.path().ends_with("/events"), "{}", p.uri);
                events.push(body["reason"].as_str().unwrap_or("").to_owned());
                respond(send, StatusCode::CREATED, body);
            }
            return (id, secret, events, status);
        }
    });

    reconcile(Arc::new(obj), ctx).await.expect("reconciled");
    let (id, secret, events, status) = server.await.expect("mock server assertions");
    assert!(
        collibra.verify_credentials(&id, &secret),
        "the credentials written are the client's"
    );
    assert_eq!(events, ["Registered", "CollibraRejected"]);
    let ready = &status["conditions"][0];
    assert_eq!(ready["reason"], "CollibraRejected");
    let message = ready["message"].as_str().unwrap_or("");
    assert!(
        message.contains("ignored redirect_uris") && message.contains(&id),
        "{message}"
    );
    assert_eq!(status["clientId"], Value::String(id));
    // Nothing confirmed: the next look tries an update.
    assert!(status.get("redirectUris").is_none(), "{status}");
    assert_eq!(collibra.stats().requests_for("register"), 1);
    assert_eq!(collibra.clients().len(), 1);
}

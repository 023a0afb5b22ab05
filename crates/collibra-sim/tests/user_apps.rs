//! User applications: redirect URIs at registration and update, the
//! switches for instances that do not know the field, and the
//! authorization code flow (authorize, then redeem the code).

mod common;

use std::time::Duration;

use collibra_sim::{RedirectUris, SimConfig, Simulator};
use common::*;
use reqwest::Client;
use serde_json::{Value, json};

const CALLBACK: &str = "https://app.example/callback";

/// A client that shows redirects instead of following them.
fn browser() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client")
}

/// Registers a user application and returns its id and secret.
async fn user_app(sim: &Simulator, http: &Client, name: &str, uris: &[&str]) -> (String, String) {
    let (status, body) = status_json(
        register(
            sim,
            http,
            json!({"client_name": name, "grant_types": ["authorization_code"], "redirect_uris": uris}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["client_id"].as_str().expect("id").to_owned(),
        body["client_secret"].as_str().expect("secret").to_owned(),
    )
}

fn authorize_url(sim: &Simulator, params: &[(&str, &str)]) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{}/rest/oauth/v2/authorize?{query}", sim.url())
}

/// Asks for a code; the Location of the 302 (or the status and body of
/// any other answer).
async fn authorize(sim: &Simulator, params: &[(&str, &str)]) -> Result<url::Url, (u16, Value)> {
    let response = browser()
        .get(authorize_url(sim, params))
        .send()
        .await
        .expect("authorize answered");
    if response.status() != 302 {
        return Err(status_json(response).await);
    }
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a Location");
    Ok(url::Url::parse(location).expect("absolute Location"))
}

fn query_param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn code_for(sim: &Simulator, id: &str, redirect_uri: &str) -> String {
    let location = authorize(
        sim,
        &[
            ("response_type", "code"),
            ("client_id", id),
            ("redirect_uri", redirect_uri),
            ("state", "s-1"),
        ],
    )
    .await
    .expect("a redirect");
    query_param(&location, "code").expect("a code")
}

/// Redeems a code with client_secret_post.
async fn redeem(
    sim: &Simulator,
    http: &Client,
    id: &str,
    secret: &str,
    code: &str,
    redirect_uri: &str,
) -> (u16, Value) {
    status_json(
        http.post(token_url(sim))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("client_id", id),
                ("client_secret", secret),
            ])
            .send()
            .await
            .expect("token answered"),
    )
    .await
}

#[tokio::test]
async fn redirect_uris_are_stored_returned_and_required_for_user_applications() {
    let (sim, http) = start().await;
    let (status, body) = status_json(
        register(
            &sim,
            &http,
            json!({"client_name": "portal", "grant_types": ["authorization_code"], "redirect_uris": [CALLBACK, "http://localhost:8080/cb"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["redirect_uris"],
        json!([CALLBACK, "http://localhost:8080/cb"])
    );
    let id = body["client_id"].as_str().expect("id");
    let (_, got) = status_json(
        admin(http.get(clients_url(&sim, Some(id))))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(got["redirect_uris"], body["redirect_uris"]);
    assert_eq!(
        sim.handle().clients()[0].redirect_uris,
        [CALLBACK, "http://localhost:8080/cb"]
    );

    // A user application without redirect URIs is refused, by name.
    let (status, body) = status_json(
        register(
            &sim,
            &http,
            json!({"client_name": "no-uris", "grant_types": ["authorization_code"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_redirect_uri");
    let description = body["error_description"].as_str().expect("description");
    assert!(
        description.contains("redirect_uris is required"),
        "{description}"
    );
    // A bad URI is refused with the URI named.
    let (status, body) = status_json(
        register(
            &sim,
            &http,
            json!({"client_name": "frag", "grant_types": ["authorization_code"], "redirect_uris": ["https://x.example/cb#top"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("https://x.example/cb#top") && d.contains("fragment")),
        "{body}"
    );
    assert_eq!(sim.handle().clients().len(), 1, "nothing else stored");
}

#[tokio::test]
async fn an_instance_that_rejects_the_field_names_it_and_stores_nothing() {
    let (sim, http) = start_with(SimConfig {
        redirect_uris: RedirectUris::Rejected,
        ..SimConfig::default()
    })
    .await;
    let (status, body) = status_json(
        register(
            &sim,
            &http,
            json!({"client_name": "portal", "grant_types": ["authorization_code"], "redirect_uris": [CALLBACK]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_client_metadata");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("redirect_uris")),
        "{body}"
    );
    assert!(sim.handle().clients().is_empty());
    // Integration applications, which do not send the field, still work.
    register_ok(&sim, &http, "etl").await;
}

#[tokio::test]
async fn an_instance_that_ignores_the_field_stores_the_client_without_it() {
    let (sim, http) = start().await;
    // Switched at run time, as the capabilities route does.
    let mode: Value = http
        .put(format!("{}/_sim/capabilities", sim.url()))
        .json(&json!({"redirect_uris": "ignored"}))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(mode["redirect_uris"], "ignored");
    let (status, body) = status_json(
        register(
            &sim,
            &http,
            json!({"client_name": "portal", "grant_types": ["authorization_code"], "redirect_uris": [CALLBACK]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(body.get("redirect_uris").is_none(), "{body}");
    assert!(sim.handle().clients()[0].redirect_uris.is_empty());
}

#[tokio::test]
async fn redirect_uris_are_updated_where_updates_are_enabled() {
    let (sim, http) = start().await;
    let (id, secret) = user_app(&sim, &http, "portal", &[CALLBACK]).await;
    let new = "https://app.example/v2/callback";
    let (status, body) = status_json(
        admin(http.put(clients_url(&sim, Some(&id))))
            .json(&json!({"client_id": id, "client_name": "portal", "grant_types": ["authorization_code"], "redirect_uris": [new]}))
            .send()
            .await
            .expect("put"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redirect_uris"], json!([new]));
    // The old URI no longer gets a code, the new one does.
    let old = authorize(
        &sim,
        &[
            ("response_type", "code"),
            ("client_id", &id),
            ("redirect_uri", CALLBACK),
        ],
    )
    .await;
    assert!(matches!(old, Err((400, _))), "{old:?}");
    let code = code_for(&sim, &id, new).await;
    let (status, _) = redeem(&sim, &http, &id, &secret, &code, new).await;
    assert_eq!(status, 200);

    // Replacement semantics: an update without the field of a user
    // application is refused rather than leaving it without URIs.
    let (status, body) = status_json(
        admin(http.put(clients_url(&sim, Some(&id))))
            .json(&json!({"client_name": "portal", "grant_types": ["authorization_code"]}))
            .send()
            .await
            .expect("put"),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    sim.handle().set_put_enabled(false);
    let response = admin(http.put(clients_url(&sim, Some(&id))))
        .json(&json!({"client_name": "portal", "grant_types": ["authorization_code"], "redirect_uris": [CALLBACK]}))
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 405);
    assert_eq!(sim.handle().clients()[0].redirect_uris, [new]);
}

#[tokio::test]
async fn the_code_flow_redirects_only_to_a_registered_uri_and_redeems_once() {
    let (sim, http) = start().await;
    let (id, secret) = user_app(
        &sim,
        &http,
        "portal",
        &[CALLBACK, "http://127.0.0.1:9000/cb"],
    )
    .await;

    let location = authorize(
        &sim,
        &[
            ("response_type", "code"),
            ("client_id", &id),
            ("redirect_uri", CALLBACK),
            ("state", "xyz 1"),
            ("scope", "openid"),
        ],
    )
    .await
    .expect("a redirect");
    assert_eq!(
        format!(
            "{}://{}{}",
            location.scheme(),
            location.host_str().unwrap_or(""),
            location.path()
        ),
        CALLBACK
    );
    assert_eq!(query_param(&location, "state").as_deref(), Some("xyz 1"));
    let code = query_param(&location, "code").expect("code");

    // Anything but an exact match is refused here, not redirected.
    for wrong in [
        "https://app.example/callback/",
        "https://app.example/callback?x=1",
        "https://app.example/call",
        "https://evil.example/callback",
        "HTTPS://app.example/callback",
    ] {
        let answer = authorize(
            &sim,
            &[
                ("response_type", "code"),
                ("client_id", &id),
                ("redirect_uri", wrong),
            ],
        )
        .await;
        let Err((status, body)) = answer else {
            panic!("{wrong} was redirected to: {answer:?}");
        };
        assert_eq!(status, 400, "{wrong}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains("not registered")),
            "{body}"
        );
    }
    // Two registered URIs: the parameter is required.
    let answer = authorize(&sim, &[("response_type", "code"), ("client_id", &id)]).await;
    assert!(matches!(answer, Err((400, _))), "{answer:?}");

    // The redirect_uri of the token request must repeat the authorization request's.
    let (status, body) = redeem(&sim, &http, &id, &secret, &code, "http://127.0.0.1:9000/cb").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // That attempt used the code up (one-time codes).
    let (status, body) = redeem(&sim, &http, &id, &secret, &code, CALLBACK).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let code = code_for(&sim, &id, CALLBACK).await;
    let (status, body) = redeem(&sim, &http, &id, &secret, &code, CALLBACK).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    let (status, body) = redeem(&sim, &http, &id, &secret, &code, CALLBACK).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "reused"
    );

    // HTTP Basic with form-encoded id and secret works as for client credentials.
    let code = code_for(&sim, &id, CALLBACK).await;
    let (status, body) = status_json(
        http.post(token_url(&sim))
            .basic_auth(encode(&id), Some(encode(&secret)))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", CALLBACK),
            ])
            .send()
            .await
            .expect("token answered"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        sim.handle().stats().token_auth_for("client_secret_basic"),
        1
    );

    // A wrong secret is no client at all.
    let code = code_for(&sim, &id, CALLBACK).await;
    let (status, body) = redeem(&sim, &http, &id, "wrong", &code, CALLBACK).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[tokio::test]
async fn codes_belong_to_their_client_and_expire() {
    let (sim, http) = start_with(SimConfig {
        code_ttl: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    let (a, a_secret) = user_app(&sim, &http, "a", &[CALLBACK]).await;
    let (b, b_secret) = user_app(&sim, &http, "b", &[CALLBACK]).await;
    let code = code_for(&sim, &a, CALLBACK).await;
    let (status, body) = redeem(&sim, &http, &b, &b_secret, &code, CALLBACK).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let code = code_for(&sim, &a, CALLBACK).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, body) = redeem(&sim, &http, &a, &a_secret, &code, CALLBACK).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "expired"
    );
}

#[tokio::test]
async fn integration_applications_get_no_code() {
    let (sim, http) = start().await;
    let inserted: Value = http
        .post(format!("{}/_sim/clients", sim.url()))
        .json(&json!({"client_name": "etl", "grant_types": ["client_credentials"], "redirect_uris": [CALLBACK]}))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    let id = inserted["client_id"].as_str().expect("id");
    let location = authorize(
        &sim,
        &[
            ("response_type", "code"),
            ("client_id", id),
            ("redirect_uri", CALLBACK),
            ("state", "s"),
        ],
    )
    .await
    .expect("errors past the redirect URI check go back to it");
    assert_eq!(
        query_param(&location, "error").as_deref(),
        Some("unauthorized_client")
    );
    assert_eq!(query_param(&location, "state").as_deref(), Some("s"));
    assert_eq!(query_param(&location, "code"), None);
    assert_eq!(sim.handle().stats().requests_for("authorize"), 1);
}

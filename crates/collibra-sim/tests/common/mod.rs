//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use collibra_sim::{SimConfig, Simulator};
use reqwest::{Client, RequestBuilder, Response};
use serde_json::Value;

pub const API: &str = "/rest/auth/v1";

/// A plain-HTTP client. reqwest is built without a TLS crypto provider, so
/// one is installed first (a second install in the same process fails; fine).
pub fn http() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client")
}

pub async fn start() -> (Simulator, Client) {
    start_with(SimConfig::default()).await
}

pub async fn start_with(config: SimConfig) -> (Simulator, Client) {
    let sim = Simulator::start(config).await.expect("simulator starts");
    (sim, http())
}

/// `{url}{API}/clients` or `{url}{API}/clients/{encoded id}`.
pub fn clients_url(sim: &Simulator, id: Option<&str>) -> String {
    match id {
        None => format!("{}{API}/clients", sim.url()),
        Some(id) => format!("{}{API}/clients/{}", sim.url(), encode(id)),
    }
}

pub fn token_url(sim: &Simulator) -> String {
    format!("{}/rest/oauth/v2/token", sim.url())
}

/// Percent-encodes everything but unreserved characters (ids contain ':').
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Adds the default admin user's HTTP Basic credentials.
pub fn admin(request: RequestBuilder) -> RequestBuilder {
    request.basic_auth("admin", Some("admin"))
}

pub async fn register(sim: &Simulator, http: &Client, body: Value) -> Response {
    admin(http.post(clients_url(sim, None)))
        .json(&body)
        .send()
        .await
        .expect("register request answered")
}

/// Registers `name` and returns the 201 body.
pub async fn register_ok(sim: &Simulator, http: &Client, name: &str) -> Value {
    let response = register(sim, http, serde_json::json!({ "client_name": name })).await;
    assert_eq!(response.status(), 201);
    response.json().await.expect("json body")
}

/// Status and JSON body of an answer.
pub async fn status_json(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// A token from the token endpoint via client_secret_post.
pub async fn token_post(sim: &Simulator, http: &Client, id: &str, secret: &str) -> Response {
    http.post(token_url(sim))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .expect("token request answered")
}

pub async fn admin_token(sim: &Simulator, http: &Client) -> String {
    let (status, body) =
        status_json(token_post(sim, http, "operator", "operator-secret").await).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

//! Admin credentials on the `/clients` routes and the token endpoint.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use collibra_sim::SimConfig;
use common::*;
use serde_json::Value;

#[tokio::test]
async fn no_credentials_get_401_with_challenges() {
    let (sim, http) = start().await;
    let response = http
        .get(clients_url(&sim, None))
        .send()
        .await
        .expect("answered");
    let challenges: Vec<String> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic")),
        "{challenges:?}"
    );
    assert!(
        challenges.iter().any(|c| c.starts_with("Bearer")),
        "{challenges:?}"
    );
    let (status, body) = status_json(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );

    // Every /clients route is protected, register included.
    let response = http
        .post(clients_url(&sim, None))
        .json(&serde_json::json!({"client_name": "sneaky"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 401);
    assert!(sim.handle().clients().is_empty());
}

#[tokio::test]
async fn basic_auth_needs_the_admin_user_and_password() {
    let (sim, http) = start().await;
    let ok = http
        .get(clients_url(&sim, None))
        .basic_auth("admin", Some("admin"))
        .send()
        .await
        .expect("ok");
    assert_eq!(ok.status(), 200);
    let wrong = http
        .get(clients_url(&sim, None))
        .basic_auth("admin", Some("nope"))
        .send()
        .await
        .expect("answered");
    let (status, body) = status_json(wrong).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let garbage = http
        .get(clients_url(&sim, None))
        .header("authorization", "Basic !!!")
        .send()
        .await
        .expect("answered");
    assert_eq!(garbage.status(), 401);
}

#[tokio::test]
async fn static_bearer_tokens_are_admin() {
    let (sim, http) = start_with(SimConfig {
        admin_bearer_tokens: vec!["t1".into(), "t2".into()],
        ..SimConfig::default()
    })
    .await;
    for token in ["t1", "t2"] {
        let response = http
            .get(clients_url(&sim, None))
            .bearer_auth(token)
            .send()
            .await
            .expect("ok");
        assert_eq!(response.status(), 200);
    }
    let response = http
        .get(clients_url(&sim, None))
        .bearer_auth("t3")
        .send()
        .await
        .expect("answered");
    let (status, body) = status_json(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    // Revoking issued tokens does not touch configured ones.
    sim.handle().revoke_tokens();
    let response = http
        .get(clients_url(&sim, None))
        .bearer_auth("t1")
        .send()
        .await
        .expect("ok");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn admin_client_gets_a_token_with_client_secret_post() {
    let (sim, http) = start().await;
    let response = token_post(&sim, &http, "operator", "operator-secret").await;
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().ok()),
        Some(Some("no-store"))
    );
    let (status, body) = status_json(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    let token = body["access_token"].as_str().expect("token");
    let response = http
        .get(clients_url(&sim, None))
        .bearer_auth(token)
        .send()
        .await
        .expect("ok");
    assert_eq!(response.status(), 200);
    let stats = sim.handle().stats();
    assert_eq!(stats.token_auth_for("client_secret_post"), 1);
    assert_eq!(stats.token_auth_for("client_secret_basic"), 0);
}

#[tokio::test]
async fn client_secret_basic_form_encodes_id_and_secret() {
    let (sim, http) = start_with(SimConfig {
        admin_client_id: "urn:sys:env:admin:i:op".into(),
        admin_client_secret: "p@ss word+".into(),
        ..SimConfig::default()
    })
    .await;
    let encoded = format!(
        "{}:{}",
        "urn%3Asys%3Aenv%3Aadmin%3Ai%3Aop",
        "p%40ss+word%2B" // '+' stands for a space in form encoding
    );
    let response = http
        .post(token_url(&sim))
        .header(
            "authorization",
            format!("Basic {}", STANDARD.encode(encoded)),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("answered");
    let (status, body) = status_json(response).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("token");
    let response = http
        .get(clients_url(&sim, None))
        .bearer_auth(token)
        .send()
        .await
        .expect("ok");
    assert_eq!(response.status(), 200);

    // Unencoded, the ':' in the id splits it in the wrong place.
    let raw = "urn:sys:env:admin:i:op:p@ss word+";
    let response = http
        .post(token_url(&sim))
        .header("authorization", format!("Basic {}", STANDARD.encode(raw)))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 401);
    // Only the authenticated request counts, under the method it used.
    let stats = sim.handle().stats();
    assert_eq!(stats.token_auth_for("client_secret_basic"), 1);
    assert_eq!(stats.token_auth_for("client_secret_post"), 0);
}

#[tokio::test]
async fn wrong_secret_is_invalid_client() {
    let (sim, http) = start().await;
    let response = token_post(&sim, &http, "operator", "wrong").await;
    assert!(response.headers().get("www-authenticate").is_some());
    let (status, body) = status_json(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    let response = http
        .post(token_url(&sim))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("answered");
    let (status, body) = status_json(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[tokio::test]
async fn token_request_errors_follow_rfc_6749() {
    let (sim, http) = start().await;
    let (status, body) = status_json(
        http.post(token_url(&sim))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "operator"),
                ("client_secret", "operator-secret"),
            ])
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );

    let (status, body) = status_json(
        http.post(token_url(&sim))
            .form(&[
                ("client_id", "operator"),
                ("client_secret", "operator-secret"),
            ])
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .expect("desc")
            .contains("grant_type")
    );

    let (status, body) = status_json(
        http.post(token_url(&sim))
            .json(&serde_json::json!({"grant_type": "client_credentials"}))
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );

    // Two authentication methods at once are refused.
    let (status, body) = status_json(
        http.post(token_url(&sim))
            .basic_auth("operator", Some("operator-secret"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_secret", "operator-secret"),
            ])
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn registered_clients_get_tokens_but_not_admin_rights() {
    let (sim, http) = start().await;
    let created = register_ok(&sim, &http, "app").await;
    let id = created["client_id"].as_str().expect("id");
    let secret = created["client_secret"].as_str().expect("secret");

    let (status, body) = status_json(token_post(&sim, &http, id, secret).await).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("token");

    let response = http
        .get(clients_url(&sim, None))
        .bearer_auth(token)
        .send()
        .await
        .expect("answered");
    let (status, body) = status_json(response).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "insufficient_scope");

    // Their tokens die with them.
    sim.handle().remove_client(id);
    let response = http
        .get(clients_url(&sim, None))
        .bearer_auth(token)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 401);
    let (status, _) = status_json(token_post(&sim, &http, id, secret).await).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn verify_credentials_checks_registered_clients() {
    let (sim, http) = start().await;
    let created = register_ok(&sim, &http, "app").await;
    let id = created["client_id"].as_str().expect("id");
    let secret = created["client_secret"].as_str().expect("secret");
    let handle = sim.handle();
    assert!(handle.verify_credentials(id, secret));
    assert!(!handle.verify_credentials(id, "wrong"));
    assert!(!handle.verify_credentials("unknown", secret));
}

#[tokio::test]
async fn tokens_expire_after_the_ttl() {
    let (sim, http) = start_with(SimConfig {
        token_ttl: Duration::from_millis(800),
        ..SimConfig::default()
    })
    .await;
    let (status, body) =
        status_json(token_post(&sim, &http, "operator", "operator-secret").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["expires_in"], 1, "rounded up, never 0");
    let token = body["access_token"].as_str().expect("token").to_owned();
    let response = http
        .get(clients_url(&sim, None))
        .bearer_auth(&token)
        .send()
        .await
        .expect("ok");
    assert_eq!(response.status(), 200);

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let response = http
        .get(clients_url(&sim, None))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answered");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    let (status, body) = status_json(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
}

#[tokio::test]
async fn revoked_tokens_stop_working() {
    let (sim, http) = start().await;
    let first = admin_token(&sim, &http).await;
    sim.handle().revoke_tokens();
    let response = http
        .get(clients_url(&sim, None))
        .bearer_auth(&first)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 401);

    let second = admin_token(&sim, &http).await;
    assert_ne!(first, second);
    let response = http
        .post(format!("{}/_sim/revoke-tokens", sim.url()))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 204);
    let (status, body): (u16, Value) = status_json(
        http.get(clients_url(&sim, None))
            .bearer_auth(&second)
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
}

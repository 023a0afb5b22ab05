//! The client management routes: happy paths, validation, uniqueness,
//! switched-off operations.

mod common;

use collibra_sim::SimConfig;
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn register_returns_the_secret_once_and_list_shows_no_secret() {
    let (sim, http) = start().await;
    let response = register(
        &sim,
        &http,
        json!({"client_name": "billing", "grant_types": ["client_credentials"], "software_id": "sw-1"}),
    )
    .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().ok()),
        Some(Some("no-store"))
    );
    let created: Value = response.json().await.expect("json");
    let id = created["client_id"].as_str().expect("client_id");
    assert!(id.starts_with("urn:sys:env:") && id.contains(":i:"), "{id}");
    let secret = created["client_secret"].as_str().expect("client_secret");
    assert!(secret.len() >= 32);
    assert!(
        secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );
    assert_eq!(created["client_name"], "billing");
    assert_eq!(created["grant_types"], json!(["client_credentials"]));
    assert_eq!(created["software_id"], "sw-1");
    let issued_at = created["client_id_issued_at"]
        .as_i64()
        .expect("int64 seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(
        (now - issued_at).abs() < 60,
        "seconds, not millis: {issued_at}"
    );

    // The simulator keeps the same secret it answered with.
    assert!(sim.handle().verify_credentials(id, secret));

    let listed: Value = admin(http.get(clients_url(&sim, None)))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let registrations = listed["registrations"].as_array().expect("registrations");
    assert_eq!(registrations.len(), 1);
    let entry = &registrations[0];
    assert_eq!(entry["client_id"], id);
    assert_eq!(entry["client_name"], "billing");
    assert_eq!(entry["client_id_issued_at"], issued_at);
    assert_eq!(entry["grant_types"], json!(["client_credentials"]));
    assert!(entry.get("client_secret").is_none());
    assert!(!listed.to_string().contains(secret));
}

#[tokio::test]
async fn list_is_in_registration_order_and_grant_types_default() {
    let (sim, http) = start().await;
    for name in ["c", "a", "b"] {
        register_ok(&sim, &http, name).await;
    }
    register(
        &sim,
        &http,
        json!({"client_name": "ui", "grant_types": ["authorization_code", "client_credentials"], "redirect_uris": ["https://ui.example/cb"]}),
    )
    .await;
    let listed: Value = admin(http.get(clients_url(&sim, None)))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = listed["registrations"]
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["client_name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["c", "a", "b", "ui"]);
    assert_eq!(
        listed["registrations"][0]["grant_types"],
        json!(["client_credentials"])
    );
    assert_eq!(
        listed["registrations"][3]["grant_types"],
        json!(["authorization_code", "client_credentials"])
    );
}

#[tokio::test]
async fn get_finds_a_client_by_percent_encoded_id() {
    let (sim, http) = start().await;
    let created = register_ok(&sim, &http, "reports").await;
    let id = created["client_id"].as_str().expect("id");

    let (status, body) = status_json(
        admin(http.get(clients_url(&sim, Some(id))))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["client_id"], id);
    assert_eq!(body["client_name"], "reports");
    assert!(body.get("client_secret").is_none());

    // ':' is also allowed raw in a path segment.
    let raw = format!("{}{API}/clients/{id}", sim.url());
    let (status, _) = status_json(admin(http.get(raw)).send().await.expect("get")).await;
    assert_eq!(status, 200);

    let (status, body) = status_json(
        admin(http.get(clients_url(&sim, Some("urn:sys:env:nope:i:0000000"))))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn put_replaces_metadata_and_keeps_id_and_secret() {
    let (sim, http) = start().await;
    let created = register(
        &sim,
        &http,
        json!({"client_name": "old", "software_id": "s"}),
    )
    .await;
    let created: Value = created.json().await.expect("json");
    let id = created["client_id"].as_str().expect("id");
    let secret = created["client_secret"].as_str().expect("secret");

    let response = admin(http.put(clients_url(&sim, Some(id))))
        .json(
            &json!({"client_id": id, "client_name": "new", "grant_types": ["authorization_code"], "redirect_uris": ["https://new.example/cb"]}),
        )
        .send()
        .await
        .expect("put");
    let (status, body) = status_json(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["client_id"], id);
    assert_eq!(body["client_name"], "new");
    assert_eq!(body["grant_types"], json!(["authorization_code"]));
    assert_eq!(body["redirect_uris"], json!(["https://new.example/cb"]));
    assert!(body.get("client_secret").is_none());
    // Replacement, not merge: software_id was not sent, so it is gone.
    assert!(body.get("software_id").is_none());

    let stored = sim.handle().clients();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].client_name, "new");
    assert_eq!(stored[0].software_id, None);
    assert_eq!(stored[0].client_secret, secret);
}

#[tokio::test]
async fn put_refuses_unknown_clients_mismatched_ids_and_taken_names() {
    let (sim, http) = start().await;
    let a = register_ok(&sim, &http, "a").await;
    register_ok(&sim, &http, "b").await;
    let a_id = a["client_id"].as_str().expect("id");

    let (status, body) = status_json(
        admin(http.put(clients_url(&sim, Some("urn:sys:env:x:i:missing"))))
            .json(&json!({"client_name": "z"}))
            .send()
            .await
            .expect("put"),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));

    let (status, body) = status_json(
        admin(http.put(clients_url(&sim, Some(a_id))))
            .json(&json!({"client_id": "someone-else", "client_name": "a"}))
            .send()
            .await
            .expect("put"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .expect("desc")
            .contains("does not match")
    );

    let (status, body) = status_json(
        admin(http.put(clients_url(&sim, Some(a_id))))
            .json(&json!({"client_name": "b"}))
            .send()
            .await
            .expect("put"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_client_metadata");
    assert_eq!(
        body["error_description"],
        "A client with name 'b' already exists"
    );

    // Keeping its own name is not a conflict.
    let (status, _) = status_json(
        admin(http.put(clients_url(&sim, Some(a_id))))
            .json(&json!({"client_name": "a"}))
            .send()
            .await
            .expect("put"),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn delete_removes_a_client() {
    let (sim, http) = start().await;
    let created = register_ok(&sim, &http, "gone").await;
    let id = created["client_id"].as_str().expect("id");

    let response = admin(http.delete(clients_url(&sim, Some(id))))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 204);
    assert!(sim.handle().clients().is_empty());

    let (status, body) = status_json(
        admin(http.delete(clients_url(&sim, Some(id))))
            .send()
            .await
            .expect("delete"),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));

    // The name is free again.
    register_ok(&sim, &http, "gone").await;
}

#[tokio::test]
async fn duplicate_names_are_refused_with_a_description() {
    let (sim, http) = start().await;
    register_ok(&sim, &http, "twice").await;
    let (status, body) =
        status_json(register(&sim, &http, json!({"client_name": "twice"})).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_client_metadata");
    assert_eq!(
        body["error_description"],
        "A client with name 'twice' already exists"
    );
    assert_eq!(sim.handle().clients().len(), 1);
}

#[tokio::test]
async fn duplicate_status_is_configurable() {
    let (sim, http) = start_with(SimConfig {
        duplicate_status: 409,
        ..SimConfig::default()
    })
    .await;
    register_ok(&sim, &http, "twice").await;
    let (status, body) =
        status_json(register(&sim, &http, json!({"client_name": "twice"})).await).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"], "invalid_client_metadata");
}

#[tokio::test]
async fn bad_registration_bodies_get_specific_errors() {
    let (sim, http) = start().await;
    let cases: [(&str, &str, &str); 10] = [
        ("", "invalid_request", "required"),
        ("{\"client_name\":", "invalid_request", "not valid JSON"),
        ("[\"a\"]", "invalid_request", "JSON object"),
        ("{}", "invalid_client_metadata", "client_name is required"),
        (
            "{\"client_name\":\"\"}",
            "invalid_client_metadata",
            "must not be empty",
        ),
        (
            "{\"client_name\":42}",
            "invalid_client_metadata",
            "must be a string",
        ),
        (
            "{\"client_name\":\"x\",\"grant_types\":[\"implicit\"]}",
            "invalid_client_metadata",
            "unsupported grant type 'implicit'",
        ),
        (
            "{\"client_name\":\"x\",\"grant_types\":[\"client_credentials\",\"client_credentials\"]}",
            "invalid_client_metadata",
            "more than once",
        ),
        (
            "{\"client_name\":\"x\",\"grant_types\":\"client_credentials\"}",
            "invalid_client_metadata",
            "array of strings",
        ),
        (
            "{\"client_name\":\"x\",\"software_id\":7}",
            "invalid_client_metadata",
            "software_id",
        ),
    ];
    for (body, error, description) in cases {
        let response = admin(http.post(clients_url(&sim, None)))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("answered");
        let (status, answer) = status_json(response).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["error"], error, "{body} -> {answer}");
        let got = answer["error_description"].as_str().expect("description");
        assert!(
            got.contains(description),
            "{body}: {got:?} lacks {description:?}"
        );
    }
    assert!(sim.handle().clients().is_empty());
}

#[tokio::test]
async fn put_and_delete_can_be_switched_off() {
    let (sim, http) = start_with(SimConfig {
        put_enabled: false,
        delete_enabled: false,
        ..SimConfig::default()
    })
    .await;
    let created = register_ok(&sim, &http, "fixed").await;
    let id = created["client_id"].as_str().expect("id");

    let response = admin(http.put(clients_url(&sim, Some(id))))
        .json(&json!({"client_name": "renamed"}))
        .send()
        .await
        .expect("put");
    assert_eq!(
        response.headers().get("allow").map(|v| v.to_str().ok()),
        Some(Some("GET"))
    );
    let (status, body) = status_json(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );

    let (status, body) = status_json(
        admin(http.delete(clients_url(&sim, Some(id))))
            .send()
            .await
            .expect("delete"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
    assert_eq!(sim.handle().clients()[0].client_name, "fixed");

    // And back on at run time.
    sim.handle().set_put_enabled(true);
    sim.handle().set_delete_enabled(true);
    let response = admin(http.put(clients_url(&sim, Some(id))))
        .json(&json!({"client_name": "renamed"}))
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 200);
    let response = admin(http.delete(clients_url(&sim, Some(id))))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 204);

    sim.handle().set_delete_enabled(false);
    let other = register_ok(&sim, &http, "other").await;
    let response = admin(http.delete(clients_url(&sim, other["client_id"].as_str())))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn api_path_is_configurable() {
    let (sim, http) = start_with(SimConfig {
        api_path: "/rest/auth/v1/platform/".to_owned(),
        ..SimConfig::default()
    })
    .await;
    let url = format!("{}/rest/auth/v1/platform/clients", sim.url());
    let response = admin(http.get(&url)).send().await.expect("list");
    assert_eq!(response.status(), 200);
    let response = admin(http.get(clients_url(&sim, None)))
        .send()
        .await
        .expect("list");
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn on_register_announces_each_committed_registration() {
    let (sim, http) = start().await;
    let mut announced = sim.handle().on_register();
    let created = register_ok(&sim, &http, "watched").await;
    let record = announced.try_recv().expect("announced before the 201");
    assert_eq!(record.client_id, created["client_id"]);
    assert_eq!(record.client_secret, created["client_secret"]);
    // Refused registrations are not announced.
    register(&sim, &http, json!({"client_name": "watched"})).await;
    assert!(announced.try_recv().is_err());
}

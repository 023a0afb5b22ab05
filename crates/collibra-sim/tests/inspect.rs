//! The `/_sim` routes, the stats and the simulator's life cycle.

mod common;

use collibra_sim::{ClientRecord, ScriptAction, ScriptedFault, Stats};
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn stats_count_requests_and_answers_by_operation() {
    let (sim, http) = start().await;
    let created = register_ok(&sim, &http, "a").await;
    let id = created["client_id"].as_str().expect("id");
    register(&sim, &http, json!({"client_name": "a"})).await; // duplicate
    admin(http.get(clients_url(&sim, None)))
        .send()
        .await
        .expect("list");
    http.get(clients_url(&sim, None))
        .send()
        .await
        .expect("list"); // 401
    admin(http.get(clients_url(&sim, Some(id))))
        .send()
        .await
        .expect("get");
    admin(http.put(clients_url(&sim, Some(id))))
        .json(&json!({"client_name": "b"}))
        .send()
        .await
        .expect("put");
    admin(http.delete(clients_url(&sim, Some(id))))
        .send()
        .await
        .expect("delete");
    admin_token(&sim, &http).await;
    // Inspection and unknown routes are not counted.
    http.get(format!("{}/_sim/clients", sim.url()))
        .send()
        .await
        .expect("inspect");
    http.get(format!("{}/nowhere", sim.url()))
        .send()
        .await
        .expect("404");

    let stats: Stats = http
        .get(format!("{}/_sim/stats", sim.url()))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats, sim.handle().stats());
    let expect_requests = [
        ("delete", 1),
        ("get", 1),
        ("list", 2),
        ("register", 2),
        ("token", 1),
        ("update", 1),
    ];
    assert_eq!(
        stats.requests,
        expect_requests
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect()
    );
    for (key, count) in [
        ("register 201", 1),
        ("register 400", 1),
        ("list 200", 1),
        ("list 401", 1),
        ("get 200", 1),
        ("update 200", 1),
        ("delete 204", 1),
        ("token 200", 1),
    ] {
        assert_eq!(
            stats.responses.get(key),
            Some(&count),
            "{key} in {:?}",
            stats.responses
        );
    }
    assert_eq!(stats.requests_for("list"), 2);
    assert_eq!(stats.requests_for("never"), 0);
    assert!(stats.faults.is_empty());

    let response = http
        .post(format!("{}/_sim/reset-stats", sim.url()))
        .send()
        .await
        .expect("reset");
    assert_eq!(response.status(), 204);
    assert_eq!(sim.handle().stats(), Stats::default());
    admin(http.get(clients_url(&sim, None)))
        .send()
        .await
        .expect("list");
    assert_eq!(sim.handle().stats().requests_for("list"), 1);
    sim.handle().reset_stats();
    assert_eq!(sim.handle().stats().requests_for("list"), 0);
}

#[tokio::test]
async fn sim_clients_show_secrets() {
    let (sim, http) = start().await;
    let created = register_ok(&sim, &http, "a").await;
    let all: Vec<ClientRecord> = http
        .get(format!("{}/_sim/clients", sim.url()))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].client_id, created["client_id"]);
    assert_eq!(all[0].client_secret, created["client_secret"]);
    assert_eq!(all, sim.handle().clients());
}

#[tokio::test]
async fn clients_can_be_inserted_and_removed_behind_the_apis_back() {
    let (sim, http) = start().await;
    let response = http
        .post(format!("{}/_sim/clients", sim.url()))
        .json(&json!({"client_name": "foreign", "grant_types": ["authorization_code"]}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 201);
    let inserted: ClientRecord = response.json().await.expect("json");
    assert_eq!(inserted.grant_types, ["authorization_code"]);
    assert!(inserted.client_secret.len() >= 32);
    assert!(
        sim.handle()
            .verify_credentials(&inserted.client_id, &inserted.client_secret)
    );

    // The API sees it, and its name is taken.
    let listed: Value = admin(http.get(clients_url(&sim, None)))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["registrations"][0]["client_id"],
        inserted.client_id.as_str()
    );
    let response = register(&sim, &http, json!({"client_name": "foreign"})).await;
    assert_eq!(response.status(), 400);
    let response = http
        .post(format!("{}/_sim/clients", sim.url()))
        .json(&json!({"client_name": "foreign"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 409);

    let url = format!("{}/_sim/clients/{}", sim.url(), encode(&inserted.client_id));
    assert_eq!(
        http.delete(&url).send().await.expect("answered").status(),
        204
    );
    assert_eq!(
        http.delete(&url).send().await.expect("answered").status(),
        404
    );
    assert!(sim.handle().clients().is_empty());
    // None of this shows in the stats.
    assert_eq!(sim.handle().stats().requests_for("register"), 1);
}

#[tokio::test]
async fn handle_insert_and_remove() {
    let (sim, http) = start().await;
    let handle = sim.handle();
    let inserted = handle.insert_client("by-hand", &[]);
    assert_eq!(inserted.grant_types, ["client_credentials"]);
    assert!(inserted.client_id.starts_with("urn:sys:env:"));
    // Names are unique: the same name gives back the same client.
    assert_eq!(
        handle.insert_client("by-hand", &["authorization_code"]),
        inserted
    );
    let other = handle.insert_client("odd", &["implicit"]);
    assert_eq!(other.grant_types, ["implicit"]);
    assert_ne!(other.client_id, inserted.client_id);

    let response = admin(http.get(clients_url(&sim, Some(&inserted.client_id))))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert!(handle.remove_client(&inserted.client_id));
    assert!(!handle.remove_client(&inserted.client_id));
    assert_eq!(handle.clients(), vec![other]);
}

#[tokio::test]
async fn capabilities_switch_over_http() {
    let (sim, http) = start().await;
    let url = format!("{}/_sim/capabilities", sim.url());
    let now: Value = http
        .put(&url)
        .json(&json!({"put": false}))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(
        now,
        json!({"put": false, "delete": true, "redirect_uris": "supported"})
    );
    let created = register_ok(&sim, &http, "a").await;
    let id = created["client_id"].as_str().expect("id");
    let response = admin(http.put(clients_url(&sim, Some(id))))
        .json(&json!({"client_name": "b"}))
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 405);

    http.put(&url)
        .json(&json!({"put": true, "delete": false}))
        .send()
        .await
        .expect("answered");
    let now: Value = http
        .get(&url)
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(
        now,
        json!({"put": true, "delete": false, "redirect_uris": "supported"})
    );
    let response = admin(http.delete(clients_url(&sim, Some(id))))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn inspection_routes_ignore_faults() {
    let (sim, http) = start().await;
    sim.handle().set_faults(collibra_sim::Faults {
        error_rate: 1.0,
        drop_rate: 0.0,
        ..Default::default()
    });
    sim.handle().script(ScriptedFault::any(ScriptAction::Drop));
    let response = http
        .get(format!("{}/_sim/stats", sim.url()))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let response = http
        .get(format!("{}/_sim/clients", sim.url()))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        sim.handle().pending_scripts().len(),
        1,
        "not consumed by /_sim"
    );
    let response = http
        .delete(format!("{}/_sim/script", sim.url()))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 204);
    assert!(sim.handle().pending_scripts().is_empty());
}

#[tokio::test]
async fn shutdown_stops_listening() {
    let (sim, http) = start().await;
    let url = clients_url(&sim, None);
    let addr = sim.addr();
    assert_eq!(sim.url(), format!("http://{addr}"));
    assert_eq!(
        admin(http.get(&url))
            .send()
            .await
            .expect("answered")
            .status(),
        200
    );
    sim.shutdown().await;
    let fresh = common::http();
    assert!(admin(fresh.get(&url)).send().await.is_err());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn dropping_the_simulator_stops_it() {
    let (sim, _http) = start().await;
    let addr = sim.addr();
    drop(sim);
    // The server task notices the stop signal on its next poll.
    let mut closed = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(closed, "still listening on {addr}");
}

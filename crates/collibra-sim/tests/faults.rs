//! Random and scripted faults.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use collibra_sim::{Faults, RateLimit, ScriptAction, ScriptedFault, Simulator};
use common::*;
use serde_json::json;

async fn list_status(sim: &Simulator, http: &reqwest::Client) -> u16 {
    admin(http.get(clients_url(sim, None)))
        .send()
        .await
        .expect("answered")
        .status()
        .as_u16()
}

/// Sends a raw request on a fresh connection and returns every byte the
/// server wrote before closing it.
async fn raw_exchange(sim: &Simulator, request: String) -> Vec<u8> {
    let addr = sim.addr();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream.write_all(request.as_bytes()).expect("write");
        let mut answer = Vec::new();
        // A reset instead of a clean close is also "no answer".
        let _ = stream.read_to_end(&mut answer);
        answer
    })
    .await
    .expect("join")
}

fn raw_list_request() -> String {
    // "admin:admin"
    format!(
        "GET {API}/clients HTTP/1.1\r\nHost: sim\r\nAuthorization: Basic YWRtaW46YWRtaW4=\r\nConnection: close\r\n\r\n"
    )
}

#[tokio::test]
async fn latency_is_added() {
    let (sim, http) = start().await;
    sim.handle().set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let started = Instant::now();
    assert_eq!(list_status(&sim, &http).await, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sim.handle().stats().faults_for("latency"), 1);

    // Inspection routes are never slowed down, and switching the fault off
    // stops it (the counter would move otherwise).
    http.get(format!("{}/_sim/stats", sim.url()))
        .send()
        .await
        .expect("stats");
    sim.handle().set_faults(Faults::default());
    assert_eq!(list_status(&sim, &http).await, 200);
    assert_eq!(sim.handle().stats().faults_for("latency"), 1);
}

#[tokio::test]
async fn error_rate_one_answers_every_request_503() {
    let (sim, http) = start().await;
    sim.handle().set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    for _ in 0..3 {
        let (status, body) = status_json(
            admin(http.get(clients_url(&sim, None)))
                .send()
                .await
                .expect("answered"),
        )
        .await;
        assert_eq!(status, 503);
        assert_eq!(
            body,
            json!({"error": "server_error", "error_description": "simulated"})
        );
    }
    // Nothing is done: a faulted registration does not commit.
    let response = register(&sim, &http, json!({"client_name": "never"})).await;
    assert_eq!(response.status(), 503);
    assert!(sim.handle().clients().is_empty());
    // The token endpoint is faulted too.
    let response = token_post(&sim, &http, "operator", "operator-secret").await;
    assert_eq!(response.status(), 503);

    let stats = sim.handle().stats();
    assert_eq!(stats.faults_for("5xx"), 5);
    assert_eq!(stats.requests_for("list"), 3);
    assert_eq!(stats.responses_for("list", "503"), 3);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let (sim, http) = start().await;
    sim.handle().set_faults(Faults {
        rate_limit: Some(RateLimit {
            requests_per_second: 1,
            retry_after_secs: Some(7),
        }),
        ..Faults::default()
    });
    assert_eq!(
        list_status(&sim, &http).await,
        200,
        "the bucket starts full"
    );
    let mut limited = None;
    for _ in 0..5 {
        let response = admin(http.get(clients_url(&sim, None)))
            .send()
            .await
            .expect("answered");
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("a request over the limit got 429");
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().ok()),
        Some(Some("7"))
    );
    let (_, body) = status_json(response).await;
    assert_eq!(body["error"], "too_many_requests");
    assert!(sim.handle().stats().faults_for("429") >= 1);

    // The bucket refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(list_status(&sim, &http).await, 200);
}

#[tokio::test]
async fn drop_rate_closes_connections_without_an_answer() {
    let (sim, http) = start().await;
    sim.handle().set_faults(Faults {
        drop_rate: 1.0,
        ..Faults::default()
    });
    let answer = raw_exchange(&sim, raw_list_request()).await;
    assert!(
        answer.is_empty(),
        "got {:?}",
        String::from_utf8_lossy(&answer)
    );

    let error = admin(http.get(clients_url(&sim, None)))
        .send()
        .await
        .expect_err("no response");
    assert!(!error.is_status() && !error.is_timeout(), "{error:?}");

    let stats = sim.handle().stats();
    assert_eq!(stats.faults_for("dropped"), 2);
    assert_eq!(stats.responses_for("list", "dropped"), 2);
    assert_eq!(stats.requests_for("list"), 2);

    // The server itself is fine.
    sim.handle().set_faults(Faults::default());
    assert_eq!(list_status(&sim, &http).await, 200);
}

#[tokio::test]
async fn register_response_delay_commits_before_answering() {
    let (sim, http) = start().await;
    let handle = sim.handle();
    handle.set_faults(Faults {
        register_response_delay_ms: 800,
        ..Faults::default()
    });
    let mut announced = handle.on_register();
    let started = Instant::now();
    let url = clients_url(&sim, None);
    let pending = tokio::spawn({
        let http = http.clone();
        async move {
            admin(http.post(url))
                .json(&json!({"client_name": "slow"}))
                .send()
                .await
                .expect("answered")
        }
    });
    let record = tokio::time::timeout(Duration::from_secs(5), announced.recv())
        .await
        .expect("announced in time")
        .expect("announced");
    assert!(!pending.is_finished(), "the 201 must still be held back");
    assert_eq!(
        handle.clients(),
        vec![record.clone()],
        "committed before the answer"
    );

    let response = pending.await.expect("join");
    assert!(started.elapsed() >= Duration::from_millis(800));
    let (status, body) = status_json(response).await;
    assert_eq!(status, 201);
    assert_eq!(body["client_id"], record.client_id);
    assert_eq!(body["client_secret"], record.client_secret);
    assert_eq!(handle.stats().faults_for("register_delay"), 1);
}

#[tokio::test]
async fn scripted_status_fires_once() {
    let (sim, http) = start().await;
    sim.handle().script(ScriptedFault::on(
        "list",
        ScriptAction::Status {
            status: 429,
            retry_after_secs: Some(3),
        },
    ));
    // Other operations do not consume it.
    register_ok(&sim, &http, "a").await;
    let response = admin(http.get(clients_url(&sim, None)))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 429);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().ok()),
        Some(Some("3"))
    );
    assert_eq!(list_status(&sim, &http).await, 200);
    assert_eq!(sim.handle().stats().faults_for("scripted"), 1);
    assert!(sim.handle().pending_scripts().is_empty());
}

#[tokio::test]
async fn scripted_status_on_register_does_nothing() {
    let (sim, http) = start().await;
    sim.handle().script(ScriptedFault::on(
        "register",
        ScriptAction::Status {
            status: 500,
            retry_after_secs: None,
        },
    ));
    let (status, body) =
        status_json(register(&sim, &http, json!({"client_name": "x"})).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (500, Some("server_error"))
    );
    assert!(sim.handle().clients().is_empty());
    register_ok(&sim, &http, "x").await;
}

#[tokio::test]
async fn scripted_after_skips_matching_requests() {
    let (sim, http) = start().await;
    sim.handle().script(
        ScriptedFault::on(
            "list",
            ScriptAction::Status {
                status: 503,
                retry_after_secs: None,
            },
        )
        .after(2),
    );
    let statuses = [
        list_status(&sim, &http).await,
        list_status(&sim, &http).await,
        list_status(&sim, &http).await,
        list_status(&sim, &http).await,
    ];
    assert_eq!(statuses, [200, 200, 503, 200]);
}

#[tokio::test]
async fn scripted_delay_then_normal() {
    let (sim, http) = start().await;
    sim.handle()
        .script(ScriptedFault::any(ScriptAction::Delay { ms: 400 }));
    let started = Instant::now();
    assert_eq!(list_status(&sim, &http).await, 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(sim.handle().pending_scripts().is_empty());
    assert_eq!(list_status(&sim, &http).await, 200);
    assert_eq!(sim.handle().stats().faults_for("scripted"), 1, "used once");
}

#[tokio::test]
async fn scripted_drop_closes_the_connection_and_does_nothing() {
    let (sim, http) = start().await;
    sim.handle()
        .script(ScriptedFault::on("register", ScriptAction::Drop));
    let body = r#"{"client_name":"dropped"}"#;
    let request = format!(
        "POST {API}/clients HTTP/1.1\r\nHost: sim\r\nAuthorization: Basic YWRtaW46YWRtaW4=\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_exchange(&sim, request).await;
    assert!(
        answer.is_empty(),
        "got {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(sim.handle().clients().is_empty());
    // Once only.
    register_ok(&sim, &http, "dropped").await;
}

#[tokio::test]
async fn scripted_drop_after_commit_registers_but_never_answers() {
    let (sim, http) = start().await;
    sim.handle()
        .script(ScriptedFault::on("register", ScriptAction::DropAfterCommit));
    let error = register_request_error(&sim, &http, "lost-secret").await;
    assert!(!error.is_status(), "{error:?}");
    let clients = sim.handle().clients();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].client_name, "lost-secret");
    assert_eq!(sim.handle().stats().responses_for("register", "dropped"), 1);
    // Once only: the retry now meets the duplicate.
    let (status, body) =
        status_json(register(&sim, &http, json!({"client_name": "lost-secret"})).await).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error_description"],
        "A client with name 'lost-secret' already exists"
    );
}

async fn register_request_error(
    sim: &Simulator,
    http: &reqwest::Client,
    name: &str,
) -> reqwest::Error {
    admin(http.post(clients_url(sim, None)))
        .json(&json!({ "client_name": name }))
        .send()
        .await
        .expect_err("no answer")
}

#[tokio::test]
async fn scripted_html_error_is_a_502_page() {
    let (sim, http) = start().await;
    sim.handle()
        .script(ScriptedFault::on("token", ScriptAction::HtmlError));
    let response = token_post(&sim, &http, "operator", "operator-secret").await;
    assert_eq!(response.status(), 502);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().ok()),
        Some(Some("text/html"))
    );
    let text = response.text().await.expect("body");
    assert!(
        text.starts_with("<html>") && text.contains("502 Bad Gateway"),
        "{text}"
    );
    let response = token_post(&sim, &http, "operator", "operator-secret").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn scripted_body_sends_raw_text() {
    let (sim, http) = start().await;
    sim.handle().script(ScriptedFault::on(
        "list",
        ScriptAction::Body {
            status: 200,
            body: r#"{"registrations": [{"client_id": "#.to_owned(),
        },
    ));
    let response = admin(http.get(clients_url(&sim, None)))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    assert_eq!(text, r#"{"registrations": [{"client_id": "#);
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
    let (status, body) = status_json(
        admin(http.get(clients_url(&sim, None)))
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"registrations": []}));
}

#[tokio::test]
async fn scripted_faults_win_over_random_ones() {
    let (sim, http) = start().await;
    sim.handle().set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    sim.handle()
        .script(ScriptedFault::any(ScriptAction::Status {
            status: 418,
            retry_after_secs: None,
        }));
    assert_eq!(list_status(&sim, &http).await, 418);
    assert_eq!(list_status(&sim, &http).await, 503);
}

#[tokio::test]
async fn faults_can_be_set_over_http_with_partial_json() {
    let (sim, http) = start().await;
    let response = http
        .put(format!("{}/_sim/faults", sim.url()))
        .json(&json!({"error_rate": 1.0}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        sim.handle().faults(),
        Faults {
            error_rate: 1.0,
            ..Faults::default()
        }
    );
    assert_eq!(list_status(&sim, &http).await, 503);
    let got: Faults = http
        .get(format!("{}/_sim/faults", sim.url()))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(got.error_rate, 1.0);

    let response = http
        .put(format!("{}/_sim/faults", sim.url()))
        .json(&json!({"drop_rate": 2.0}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 400);
    assert_eq!(
        sim.handle().faults().error_rate,
        1.0,
        "a refused update changes nothing"
    );
}

#[tokio::test]
async fn faults_can_be_scripted_over_http() {
    let (sim, http) = start().await;
    let response = http
        .post(format!("{}/_sim/script", sim.url()))
        .json(&json!({"operation": "get", "action": {"type": "status", "status": 404}}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 201);
    let pending: Vec<ScriptedFault> = http
        .get(format!("{}/_sim/script", sim.url()))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(pending.len(), 1);

    let created = register_ok(&sim, &http, "a").await;
    let id = created["client_id"].as_str().expect("id");
    let response = admin(http.get(clients_url(&sim, Some(id))))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 404);
    let response = admin(http.get(clients_url(&sim, Some(id))))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);

    for bad in [
        json!({"operation": "nope", "action": {"type": "drop"}}),
        json!({"action": {"type": "status", "status": 100}}),
        json!({"action": {"type": "explode"}}),
    ] {
        let response = http
            .post(format!("{}/_sim/script", sim.url()))
            .json(&bad)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 400, "{bad}");
    }
    assert!(sim.handle().pending_scripts().is_empty());
}

//! The `collibra-sim` executable: flags, the URL line, SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[tokio::test]
async fn binary_serves_with_flags_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_collibra-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-token",
            "tok-a",
            "--admin-token",
            "tok-b",
            "--disable-put",
            "--redirect-uris",
            "ignored",
            "--retry-after",
            "9",
        ])
        .env("SIM_RATE_LIMIT", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn collibra-sim");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read");
        line
    })
    .await
    .expect("join");
    let url = line
        .trim()
        .strip_prefix("collibra-sim listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let http = http();
    let clients = format!("{url}{API}/clients");
    let response = http
        .get(&clients)
        .bearer_auth("tok-b")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    // The default static token was replaced by the ones given.
    let response = http
        .get(&clients)
        .bearer_auth("static-admin-token")
        .send()
        .await
        .expect("answered");
    assert!(matches!(response.status().as_u16(), 401 | 429));
    // --rate-limit 1 with --retry-after 9: the bucket runs dry at once.
    let mut limited = None;
    for _ in 0..5 {
        let response = http
            .get(&clients)
            .bearer_auth("tok-a")
            .send()
            .await
            .expect("answered");
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("a 429 from --rate-limit 1");
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().ok()),
        Some(Some("9"))
    );
    let capabilities: serde_json::Value = http
        .get(format!("{url}/_sim/capabilities"))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(
        capabilities,
        serde_json::json!({"put": false, "delete": true, "redirect_uris": "ignored"})
    );

    // Register one client so its secret would be logged if anything did.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let created: serde_json::Value = http
        .post(&clients)
        .bearer_auth("tok-a")
        .json(&serde_json::json!({"client_name": "logged"}))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    let secret = created["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    assert!(output.status.success(), "{:?}", output.status);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("registered client"), "{log}");
    assert!(!log.contains(&secret), "a secret was logged");
    assert!(!log.contains("tok-a"), "a token was logged");
}

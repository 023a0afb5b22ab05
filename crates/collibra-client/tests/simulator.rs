//! The client against the project's Collibra simulator: authentication,
//! operations, error mapping, retries and the observer.

mod common;

use std::time::{Duration, Instant};

use collibra_client::{Auth, ClientUpdate, Credential, Error, ExposeSecret, NewClient, Operation};
use collibra_sim::{Faults, RateLimit, ScriptAction, ScriptedFault, SimConfig};
use common::*;

fn new_client(name: &str) -> NewClient {
    NewClient {
        client_name: name.to_owned(),
        grant_types: strings(&["client_credentials"]),
        software_id: None,
        redirect_uris: vec![],
    }
}

fn status(status: u16, retry_after_secs: Option<u64>) -> ScriptAction {
    ScriptAction::Status {
        status,
        retry_after_secs,
    }
}

// ---- authentication ----------------------------------------------------

#[tokio::test]
async fn oauth_token_is_fetched_once_for_many_calls() {
    let sim = sim().await;
    let handle = sim.handle();
    handle.insert_client("existing", &["client_credentials"]);
    let (client, recorder) = client(&sim, oauth());

    for _ in 0..5 {
        let list = client.list_clients().await.expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].client_name, "existing");
    }
    let stats = handle.stats();
    assert_eq!(stats.requests_for("token"), 1);
    assert_eq!(stats.requests_for("list"), 5);
    assert_eq!(recorder.outcomes(Operation::Token), ["200"]);
    assert_eq!(recorder.outcomes(Operation::List), vec!["200"; 5]);
}

#[tokio::test]
async fn concurrent_calls_share_one_token_fetch() {
    let sim = sim().await;
    let handle = sim.handle();
    // Keep the token request in flight while the others arrive.
    handle.script(ScriptedFault::on("token", ScriptAction::Delay { ms: 300 }));
    let (client, _) = client(&sim, oauth());

    let calls = (0..8).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.list_clients().await })
    });
    for call in futures::future::join_all(calls).await {
        call.expect("task").expect("list");
    }
    assert_eq!(handle.stats().requests_for("token"), 1);
    assert_eq!(handle.stats().requests_for("list"), 8);
}

#[tokio::test]
async fn token_is_refreshed_before_it_expires() {
    let sim = sim_with(SimConfig {
        token_ttl: Duration::from_secs(2),
        ..SimConfig::default()
    })
    .await;
    let handle = sim.handle();
    let (client, _) = client(&sim, oauth());

    client.list_clients().await.expect("list");
    client.list_clients().await.expect("list");
    assert_eq!(handle.stats().requests_for("token"), 1);

    // Refresh margin for 2 s is 0.4 s: at 1.7 s the token is replaced.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    client.list_clients().await.expect("list after refresh");
    let stats = handle.stats();
    assert_eq!(stats.requests_for("token"), 2);
    // No request was refused: the token was replaced before it expired.
    assert_eq!(stats.responses_for("list", "401"), 0);
}

#[tokio::test]
async fn revoked_token_is_replaced_and_the_request_repeated_once() {
    let sim = sim().await;
    let handle = sim.handle();
    let (client, recorder) = client(&sim, oauth());

    client.list_clients().await.expect("list");
    handle.revoke_tokens();
    client.list_clients().await.expect("list after revocation");

    let stats = handle.stats();
    assert_eq!(stats.requests_for("token"), 2);
    assert_eq!(stats.responses_for("list", "401"), 1);
    assert_eq!(recorder.outcomes(Operation::List), ["200", "401", "200"]);
}

#[tokio::test]
async fn persistent_401_is_unauthorized_after_one_refresh() {
    let sim = sim().await;
    let handle = sim.handle();
    let (client, _) = client(&sim, oauth());
    // Two 401s in a row: the first triggers a refresh, the second is final.
    handle.script(ScriptedFault::on("list", status(401, None)));
    handle.script(ScriptedFault::on("list", status(401, None)));

    let err = client.list_clients().await.expect_err("401 twice");
    assert!(
        matches!(
            err,
            Error::Unauthorized {
                operation: Operation::List,
                status: 401,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(handle.stats().requests_for("list"), 2);
    assert_eq!(handle.stats().requests_for("token"), 2);
}

#[tokio::test]
async fn wrong_oauth_secret_is_unauthorized_at_the_token_endpoint() {
    let sim = sim().await;
    let (client, _) = client(
        &sim,
        Auth::OAuth {
            client_id: value(ADMIN_ID),
            client_secret: value("not-the-secret"),
        },
    );
    let err = client.list_clients().await.expect_err("bad secret");
    let Error::Unauthorized {
        operation, error, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*operation, Operation::Token);
    assert_eq!(error.as_deref(), Some("invalid_client"));
    assert!(!format!("{err} {err:?}").contains("not-the-secret"));
    // The token endpoint's refusal is final: no retries, no API call.
    assert_eq!(sim.handle().stats().requests_for("token"), 1);
    assert_eq!(sim.handle().stats().requests_for("list"), 0);
}

#[tokio::test]
async fn basic_auth() {
    let sim = sim().await;
    let (client, _) = client(
        &sim,
        Auth::Basic {
            username: value("admin"),
            password: value("admin"),
        },
    );
    client.list_clients().await.expect("list");
    assert_eq!(sim.handle().stats().requests_for("token"), 0);

    let (wrong, _) = client_for_sim_basic(&sim, "wrong-password");
    let err = wrong.list_clients().await.expect_err("wrong password");
    assert!(
        matches!(err, Error::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("wrong-password"));
    // Basic credentials have no token to refresh: one request only.
    assert_eq!(sim.handle().stats().requests_for("list"), 2);
}

fn client_for_sim_basic(
    sim: &collibra_sim::Simulator,
    password: &str,
) -> (collibra_client::CollibraClient, std::sync::Arc<Recorder>) {
    client(
        sim,
        Auth::Basic {
            username: value("admin"),
            password: value(password),
        },
    )
}

#[tokio::test]
async fn bearer_auth() {
    let sim = sim().await;
    let (client, _) = client(
        &sim,
        Auth::Bearer {
            token: value("static-admin-token"),
        },
    );
    client.list_clients().await.expect("list");

    let (wrong, _) = common::client(
        &sim,
        Auth::Bearer {
            token: value("other-token"),
        },
    );
    let err = wrong.list_clients().await.expect_err("unknown token");
    assert!(
        matches!(err, Error::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(sim.handle().stats().requests_for("token"), 0);
}

/// Replaces `path` the way the kubelet updates a mounted Secret: a new file
/// moved into place.
fn replace_file(path: &std::path::Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test]
async fn oauth_credential_files_are_reread_and_a_change_drops_the_token() {
    let sim = sim().await;
    let handle = sim.handle();
    let dir = tempfile::tempdir().expect("tempdir");
    let id_file = dir.path().join("client_id");
    let secret_file = dir.path().join("client_secret");
    std::fs::write(&id_file, format!("{ADMIN_ID}\n")).expect("write");
    std::fs::write(&secret_file, format!("{ADMIN_SECRET}\n")).expect("write");
    let (client, _) = client(
        &sim,
        Auth::OAuth {
            client_id: Credential::File(id_file.clone()),
            client_secret: Credential::File(secret_file.clone()),
        },
    );

    client.list_clients().await.expect("list");
    client.list_clients().await.expect("list");
    assert_eq!(handle.stats().requests_for("token"), 1);

    // A rotated (here: wrong) secret is noticed at the next call, and the
    // token obtained with the old one is not used any more.
    replace_file(&secret_file, "rotated-wrong\n");
    let err = client
        .list_clients()
        .await
        .expect_err("new secret is wrong");
    assert!(
        matches!(
            err,
            Error::Unauthorized {
                operation: Operation::Token,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(handle.stats().requests_for("token"), 2);
    assert_eq!(handle.stats().requests_for("list"), 2);

    replace_file(&secret_file, ADMIN_SECRET);
    client
        .list_clients()
        .await
        .expect("list with the restored secret");
    assert_eq!(handle.stats().requests_for("token"), 3);
}

#[tokio::test]
async fn basic_password_file_is_reread() {
    let sim = sim().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("password");
    std::fs::write(&password, "wrong\n").expect("write");
    let (client, _) = client(
        &sim,
        Auth::Basic {
            username: value("admin"),
            password: Credential::File(password.clone()),
        },
    );
    let err = client.list_clients().await.expect_err("wrong password");
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");

    replace_file(&password, "admin\n");
    client
        .list_clients()
        .await
        .expect("list with the new password");
}

#[tokio::test]
async fn bearer_token_file_is_reread() {
    let sim = sim().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "stale\n").expect("write");
    let (client, _) = client(
        &sim,
        Auth::Bearer {
            token: Credential::File(token.clone()),
        },
    );
    assert!(client.list_clients().await.is_err());
    replace_file(&token, "static-admin-token\n");
    client
        .list_clients()
        .await
        .expect("list with the new token");
}

// ---- operations --------------------------------------------------------

#[tokio::test]
async fn register_list_get_update_delete() {
    let sim = sim().await;
    let handle = sim.handle();
    let (client, recorder) = client(&sim, oauth());

    let issued = client
        .register_client(&NewClient {
            client_name: "billing-etl".into(),
            grant_types: strings(&["client_credentials"]),
            software_id: Some("etl-suite".into()),
            redirect_uris: vec![],
        })
        .await
        .expect("register");
    let id = issued.info.client_id.clone();
    assert_eq!(issued.info.client_name, "billing-etl");
    assert_eq!(issued.info.grant_types, ["client_credentials"]);
    assert!(
        issued
            .info
            .client_id_issued_at
            .is_some_and(|t| t > 1_600_000_000)
    );
    assert!(handle.verify_credentials(&id, issued.client_secret.expose_secret()));
    assert!(
        !format!("{issued:?}").contains(issued.client_secret.expose_secret()),
        "Debug shows the secret"
    );

    let list = client.list_clients().await.expect("list");
    assert_eq!(list, vec![issued.info.clone()]);

    // Ids look like urn:...:i:... and must survive the path encoding.
    assert!(id.contains(':'), "{id}");
    let got = client.get_client(&id).await.expect("get");
    assert_eq!(got, issued.info);

    let updated = client
        .update_client(
            &id,
            &ClientUpdate {
                client_name: "billing-etl".into(),
                grant_types: strings(&["client_credentials", "authorization_code"]),
                software_id: None,
                redirect_uris: strings(&["https://etl.example/cb"]),
            },
        )
        .await
        .expect("update");
    assert_eq!(
        updated.redirect_uris,
        Some(strings(&["https://etl.example/cb"]))
    );
    assert_eq!(updated.client_id, id);
    assert_eq!(
        updated.grant_types,
        ["client_credentials", "authorization_code"]
    );
    assert_eq!(handle.clients()[0].grant_types, updated.grant_types);

    client.delete_client(&id).await.expect("delete");
    assert!(handle.clients().is_empty());
    let err = client.get_client(&id).await.expect_err("gone");
    assert_eq!(
        err,
        Error::NotFound {
            operation: Operation::Get
        }
    );

    for (op, outcome) in [
        (Operation::Register, "201"),
        (Operation::List, "200"),
        (Operation::Get, "200"),
        (Operation::Update, "200"),
        (Operation::Delete, "204"),
    ] {
        assert!(
            recorder.outcomes(op).first().is_some_and(|o| o == outcome),
            "{op}: {:?}",
            recorder.outcomes(op)
        );
    }
    assert_eq!(recorder.outcomes(Operation::Get), ["200", "404"]);
}

#[tokio::test]
async fn path_characters_in_ids_stay_in_one_segment() {
    let sim = sim().await;
    let (client, _) = client(&sim, oauth());
    // Unencoded, this would be routed to the list (or elsewhere).
    for id in ["x/../..", "a?b", "a#b", "../clients"] {
        let err = client.get_client(id).await.expect_err(id);
        assert_eq!(
            err,
            Error::NotFound {
                operation: Operation::Get
            },
            "{id}"
        );
    }
    assert_eq!(sim.handle().stats().requests_for("get"), 4);
    assert_eq!(sim.handle().stats().requests_for("list"), 0);
}

#[tokio::test]
async fn unknown_id_is_not_found_for_get_update_delete() {
    let sim = sim().await;
    let (client, _) = client(&sim, oauth());
    let update = ClientUpdate {
        client_name: "x".into(),
        grant_types: strings(&["client_credentials"]),
        software_id: None,
        redirect_uris: vec![],
    };
    assert_eq!(
        client.get_client("urn:nope").await,
        Err(Error::NotFound {
            operation: Operation::Get
        })
    );
    assert_eq!(
        client.update_client("urn:nope", &update).await,
        Err(Error::NotFound {
            operation: Operation::Update
        })
    );
    assert_eq!(
        client.delete_client("urn:nope").await,
        Err(Error::NotFound {
            operation: Operation::Delete
        })
    );
}

#[tokio::test]
async fn put_and_delete_switched_off_are_unsupported() {
    let sim = sim().await;
    let handle = sim.handle();
    let record = handle.insert_client("existing", &["client_credentials"]);
    handle.set_put_enabled(false);
    handle.set_delete_enabled(false);
    let (client, _) = client(&sim, oauth());

    let err = client
        .update_client(
            &record.client_id,
            &ClientUpdate {
                client_name: "existing".into(),
                grant_types: strings(&["authorization_code"]),
                software_id: None,
                redirect_uris: strings(&["https://x.example/cb"]),
            },
        )
        .await
        .expect_err("PUT off");
    assert_eq!(
        err,
        Error::Unsupported {
            operation: Operation::Update,
            status: 405
        }
    );
    assert!(!err.is_retryable());
    let err = client
        .delete_client(&record.client_id)
        .await
        .expect_err("DELETE off");
    assert_eq!(
        err,
        Error::Unsupported {
            operation: Operation::Delete,
            status: 405
        }
    );
    // Not retried, and nothing changed.
    assert_eq!(handle.stats().requests_for("update"), 1);
    assert_eq!(handle.stats().requests_for("delete"), 1);
    assert_eq!(handle.clients().len(), 1);
}

#[tokio::test]
async fn duplicate_name_is_rejected_with_collibras_description() {
    for duplicate_status in [400, 409] {
        let sim = sim_with(SimConfig {
            duplicate_status,
            ..SimConfig::default()
        })
        .await;
        sim.handle().insert_client("taken", &["client_credentials"]);
        let (client, _) = client(&sim, oauth());

        let err = client
            .register_client(&new_client("taken"))
            .await
            .expect_err("duplicate");
        let Error::Rejected {
            operation,
            status,
            error_description,
            ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(*operation, Operation::Register);
        assert_eq!(*status, duplicate_status);
        let description = error_description.as_deref().unwrap_or_default();
        assert!(description.contains("already exists"), "{description}");
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(sim.handle().stats().requests_for("register"), 1);
        assert_eq!(sim.handle().clients().len(), 1);
    }
}

// ---- retries -----------------------------------------------------------

#[tokio::test]
async fn list_is_retried_on_503_and_succeeds() {
    let sim = sim().await;
    let handle = sim.handle();
    let (client, recorder) = client(&sim, oauth());
    client.list_clients().await.expect("warm up the token");
    handle.script(ScriptedFault::on("list", status(503, None)));
    handle.script(ScriptedFault::on("list", status(503, None)));

    client.list_clients().await.expect("list after two 503s");
    assert_eq!(handle.stats().requests_for("list"), 4);
    assert_eq!(
        recorder.outcomes(Operation::List),
        ["200", "503", "503", "200"]
    );
    assert_eq!(recorder.retries(Operation::List), 2);
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let sim = sim().await;
    let handle = sim.handle();
    let (client, recorder) = client(&sim, oauth());
    client.list_clients().await.expect("warm up the token");
    handle.script(ScriptedFault::on("list", status(429, Some(1))));

    let started = Instant::now();
    client.list_clients().await.expect("list after a 429");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1),
        "retried after {elapsed:?}"
    );
    assert_eq!(handle.stats().requests_for("list"), 3);
    let delays = recorder.retries.lock().expect("lock").clone();
    assert_eq!(delays.len(), 1);
    assert!(delays[0].1 >= Duration::from_secs(1), "{delays:?}");
}

#[tokio::test]
async fn rate_limit_from_the_simulator_is_survived() {
    let sim = sim().await;
    let handle = sim.handle();
    let (client, _) = client(&sim, oauth());
    client.list_clients().await.expect("warm up the token");
    handle.set_faults(Faults {
        rate_limit: Some(RateLimit {
            requests_per_second: 2,
            retry_after_secs: Some(1),
        }),
        ..Default::default()
    });
    for _ in 0..4 {
        client
            .list_clients()
            .await
            .expect("list under a rate limit");
    }
    assert!(handle.stats().responses_for("list", "429") >= 1);
}

#[tokio::test]
async fn gives_up_after_max_attempts_with_unavailable() {
    let sim = sim().await;
    let handle = sim.handle();
    let (client, recorder) = client(&sim, oauth());
    client.list_clients().await.expect("warm up the token");
    handle.set_faults(Faults {
        error_rate: 1.0,
        ..Default::default()
    });

    let err = client.list_clients().await.expect_err("always 503");
    let Error::Unavailable {
        operation,
        status,
        message,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((*operation, *status), (Operation::List, Some(503)));
    assert!(message.contains("after 4 attempts"), "{message}");
    assert!(err.is_retryable());
    assert_eq!(err.metric_label(), "unavailable");
    assert_eq!(handle.stats().requests_for("list"), 1 + 4);
    assert_eq!(recorder.retries(Operation::List), 3);
}

#[tokio::test]
async fn retry_after_beyond_the_limit_is_returned_not_slept() {
    let sim = sim().await;
    let handle = sim.handle();
    let mut config = config_for(&sim.url(), oauth());
    config.retry.max_retry_after = Duration::from_secs(5);
    let (client, _) = client_with(config);
    client.list_clients().await.expect("warm up the token");
    handle.script(ScriptedFault::on("list", status(429, Some(120))));

    let started = Instant::now();
    let err = client.list_clients().await.expect_err("long Retry-After");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
    assert!(
        matches!(
            err,
            Error::Unavailable {
                status: Some(429),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(handle.stats().requests_for("list"), 2);
}

#[tokio::test]
async fn token_endpoint_failures_are_retried() {
    let sim = sim().await;
    let handle = sim.handle();
    handle.script(ScriptedFault::on("token", status(503, None)));
    handle.script(ScriptedFault::on("token", ScriptAction::Drop));
    let (client, recorder) = client(&sim, oauth());

    client.list_clients().await.expect("list");
    assert_eq!(handle.stats().requests_for("token"), 3);
    assert_eq!(recorder.outcomes(Operation::Token), ["503", "error", "200"]);
}

#[tokio::test]
async fn get_is_retried_on_a_dropped_connection() {
    let sim = sim().await;
    let handle = sim.handle();
    let record = handle.insert_client("existing", &[]);
    let (client, recorder) = client(&sim, oauth());
    handle.script(ScriptedFault::on("get", ScriptAction::Drop));

    let got = client.get_client(&record.client_id).await.expect("get");
    assert_eq!(got.client_name, "existing");
    assert_eq!(recorder.outcomes(Operation::Get), ["error", "200"]);
}

#[tokio::test]
async fn register_on_a_dropped_connection_is_ambiguous_and_not_repeated() {
    for action in [ScriptAction::Drop, ScriptAction::DropAfterCommit] {
        let sim = sim().await;
        let handle = sim.handle();
        let (client, recorder) = client(&sim, oauth());
        handle.script(ScriptedFault::on("register", action.clone()));

        let err = client
            .register_client(&new_client("fragile"))
            .await
            .expect_err("dropped");
        assert!(
            matches!(
                err,
                Error::Ambiguous {
                    operation: Operation::Register,
                    ..
                }
            ),
            "{action:?}: {err:?}"
        );
        assert_eq!(err.metric_label(), "ambiguous");
        assert_eq!(handle.stats().requests_for("register"), 1, "{action:?}");
        assert_eq!(recorder.retries(Operation::Register), 0);
        // The caller re-lists to learn the outcome.
        let committed = matches!(action, ScriptAction::DropAfterCommit);
        let list = client.list_clients().await.expect("list");
        assert_eq!(list.len(), usize::from(committed), "{action:?}");
    }
}

#[tokio::test]
async fn register_on_5xx_is_ambiguous_and_not_repeated() {
    let sim = sim().await;
    let handle = sim.handle();
    let (client, _) = client(&sim, oauth());
    handle.script(ScriptedFault::on("register", status(503, Some(1))));

    let err = client
        .register_client(&new_client("x"))
        .await
        .expect_err("503");
    assert!(matches!(err, Error::Ambiguous { .. }), "{err:?}");
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(handle.stats().requests_for("register"), 1);
}

#[tokio::test]
async fn register_timing_out_is_ambiguous_and_not_repeated() {
    let sim = sim().await;
    let handle = sim.handle();
    let mut config = config_for(&sim.url(), oauth());
    config.request_timeout = Duration::from_millis(500);
    let (client, _) = client_with(config);
    client.list_clients().await.expect("warm up the token");
    handle.set_faults(Faults {
        register_response_delay_ms: 2000,
        ..Default::default()
    });

    let err = client
        .register_client(&new_client("slow"))
        .await
        .expect_err("timeout");
    let Error::Ambiguous { message, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("timed out"), "{message}");
    assert_eq!(handle.stats().requests_for("register"), 1);
    // It was committed: exactly the case where re-listing matters.
    assert_eq!(handle.clients().len(), 1);
}

#[tokio::test]
async fn register_is_retried_on_429() {
    let sim = sim().await;
    let handle = sim.handle();
    let (client, recorder) = client(&sim, oauth());
    handle.script(ScriptedFault::on("register", status(429, None)));

    let issued = client
        .register_client(&new_client("patient"))
        .await
        .expect("register after 429");
    assert!(
        handle.verify_credentials(&issued.info.client_id, issued.client_secret.expose_secret())
    );
    assert_eq!(handle.stats().requests_for("register"), 2);
    assert_eq!(recorder.outcomes(Operation::Register), ["429", "201"]);
}

#[tokio::test]
async fn register_is_retried_when_the_connection_is_refused() {
    let sim = sim().await;
    let url = sim.url();
    sim.shutdown().await;
    let (client, recorder) = client_with(config_for(
        &url,
        Auth::Bearer {
            token: value("static-admin-token"),
        },
    ));

    let err = client
        .register_client(&new_client("x"))
        .await
        .expect_err("nothing listens");
    let Error::Unavailable {
        status, message, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*status, None);
    assert!(message.contains("cannot connect"), "{message}");
    // A refused connection proves the POST never arrived: safe to repeat.
    assert_eq!(recorder.outcomes(Operation::Register), vec!["error"; 4]);
    assert_eq!(recorder.retries(Operation::Register), 3);
}

// ---- unusable responses --------------------------------------------------

#[tokio::test]
async fn html_error_page_is_summarised() {
    let sim = sim().await;
    let handle = sim.handle();
    let mut config = config_for(&sim.url(), oauth());
    config.retry.max_attempts = 1;
    let (client, _) = client_with(config);
    client.list_clients().await.expect("warm up the token");
    handle.script(ScriptedFault::on("list", ScriptAction::HtmlError));

    let err = client.list_clients().await.expect_err("502 page");
    let Error::Unavailable {
        status, message, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*status, Some(502));
    assert!(
        message.contains("HTTP 502 with a non-JSON body (text/html): 502 Bad Gateway"),
        "{message}"
    );
    assert!(!message.contains('<'), "{message}");
}

#[tokio::test]
async fn html_instead_of_json_is_invalid_response() {
    let sim = sim().await;
    let handle = sim.handle();
    let (client, _) = client(&sim, oauth());
    client.list_clients().await.expect("warm up the token");
    handle.script(ScriptedFault::on(
        "list",
        ScriptAction::Body {
            status: 200,
            body: "<html><body><h1>Please sign in</h1></body></html>".into(),
        },
    ));

    let err = client.list_clients().await.expect_err("login page");
    let Error::InvalidResponse { operation, message } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*operation, Operation::List);
    assert!(message.contains("non-JSON body"), "{message}");
    assert!(message.contains("Please sign in"), "{message}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn malformed_json_is_invalid_response() {
    let sim = sim().await;
    let handle = sim.handle();
    let record = handle.insert_client("existing", &[]);
    let (client, _) = client(&sim, oauth());

    handle.script(ScriptedFault::on(
        "get",
        ScriptAction::Body {
            status: 200,
            body: r#"{"client_id": 5}"#.into(),
        },
    ));
    let err = client
        .get_client(&record.client_id)
        .await
        .expect_err("bad shape");
    let Error::InvalidResponse { message, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("unexpected JSON"), "{message}");

    handle.script(ScriptedFault::on(
        "list",
        ScriptAction::Body {
            status: 200,
            body: r#"{"registrations": [{"#.into(),
        },
    ));
    let err = client.list_clients().await.expect_err("truncated");
    assert!(
        matches!(
            err,
            Error::InvalidResponse {
                operation: Operation::List,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn malformed_registration_answer_never_quotes_the_body() {
    let sim = sim().await;
    let handle = sim.handle();
    let (client, _) = client(&sim, oauth());
    handle.script(ScriptedFault::on(
        "register",
        ScriptAction::Body {
            status: 201,
            body: r#"{"client_id":"urn:x","client_name":"n","client_secret":"LEAKED-SECRET""#
                .into(),
        },
    ));
    let err = client
        .register_client(&new_client("n"))
        .await
        .expect_err("truncated 201");
    let text = format!("{err} {err:?}");
    assert!(matches!(
        err,
        Error::InvalidResponse {
            operation: Operation::Register,
            ..
        }
    ));
    assert!(!text.contains("LEAKED-SECRET"), "{text}");
    assert!(text.contains("may exist without its secret"), "{text}");
}

#[tokio::test]
async fn body_over_the_limit_is_invalid_response() {
    let sim = sim().await;
    let handle = sim.handle();
    let mut config = config_for(&sim.url(), oauth());
    config.max_body_bytes = 4096;
    let (client, _) = client_with(config);
    client.list_clients().await.expect("warm up the token");
    handle.script(ScriptedFault::on(
        "list",
        ScriptAction::Body {
            status: 200,
            body: format!(
                r#"{{"registrations": [], "padding": "{}"}}"#,
                "x".repeat(10_000)
            ),
        },
    ));

    let err = client.list_clients().await.expect_err("too large");
    let Error::InvalidResponse { message, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("larger than the limit of 4096 bytes"),
        "{message}"
    );
    assert_eq!(handle.stats().requests_for("list"), 2, "not retried");
}

#[tokio::test]
async fn observer_sees_each_request() {
    let sim = sim().await;
    let handle = sim.handle();
    let (client, recorder) = client(&sim, oauth());
    handle.script(ScriptedFault::on("list", status(500, None)));
    client.list_clients().await.expect("list");
    let issued = client
        .register_client(&new_client("seen"))
        .await
        .expect("register");
    client
        .delete_client(&issued.info.client_id)
        .await
        .expect("delete");

    let finished = recorder.finished.lock().expect("lock").clone();
    let expected: Vec<(Operation, String)> = [
        (Operation::Token, "200"),
        (Operation::List, "500"),
        (Operation::List, "200"),
        (Operation::Register, "201"),
        (Operation::Delete, "204"),
    ]
    .into_iter()
    .map(|(op, s)| (op, s.to_owned()))
    .collect();
    assert_eq!(finished, expected);
    assert_eq!(recorder.retries(Operation::List), 1);
}

// ---- redirect URIs (an assumed field) ------------------------------------

fn user_app(name: &str, uris: &[&str]) -> NewClient {
    NewClient {
        client_name: name.to_owned(),
        grant_types: strings(&["authorization_code"]),
        software_id: None,
        redirect_uris: strings(uris),
    }
}

#[tokio::test]
async fn redirect_uris_are_sent_and_confirmed() {
    let sim = sim().await;
    let (client, _) = client(&sim, oauth());
    let issued = client
        .register_client(&user_app("portal", &["https://portal.example/cb"]))
        .await
        .expect("register");
    assert_eq!(issued.ignored, None);
    assert_eq!(
        issued.info.redirect_uris,
        Some(strings(&["https://portal.example/cb"]))
    );
    assert_eq!(
        sim.handle().clients()[0].redirect_uris,
        ["https://portal.example/cb"]
    );
    let updated = client
        .update_client(
            &issued.info.client_id,
            &ClientUpdate {
                client_name: "portal".into(),
                grant_types: strings(&["authorization_code"]),
                software_id: None,
                redirect_uris: strings(&["https://portal.example/v2/cb"]),
            },
        )
        .await
        .expect("update");
    assert_eq!(
        updated.redirect_uris,
        Some(strings(&["https://portal.example/v2/cb"]))
    );
}

#[tokio::test]
async fn an_instance_that_rejects_redirect_uris_says_so_by_name() {
    let sim = sim_with(SimConfig {
        redirect_uris: collibra_sim::RedirectUris::Rejected,
        ..SimConfig::default()
    })
    .await;
    let (client, _) = client(&sim, oauth());
    let err = client
        .register_client(&user_app("portal", &["https://portal.example/cb"]))
        .await
        .expect_err("rejected");
    let Error::Rejected {
        operation: Operation::Register,
        status: 400,
        error_description: Some(description),
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(description.contains("redirect_uris"), "{description}");
    assert!(sim.handle().clients().is_empty());
    // Other clients do not send the field and are not affected.
    client
        .register_client(&new_client("etl"))
        .await
        .expect("register");
}

#[tokio::test]
async fn an_instance_that_ignores_redirect_uris_is_caught_without_losing_the_secret() {
    let sim = sim_with(SimConfig {
        redirect_uris: collibra_sim::RedirectUris::Ignored,
        ..SimConfig::default()
    })
    .await;
    let handle = sim.handle();
    let (client, _) = client(&sim, oauth());
    let issued = client
        .register_client(&user_app("portal", &["https://portal.example/cb"]))
        .await
        .expect("registered all the same");
    // The secret is there to be stored...
    assert!(
        handle.verify_credentials(&issued.info.client_id, issued.client_secret.expose_secret())
    );
    // ...and the answer is known to have dropped the field.
    let Some(Error::Ignored {
        operation: Operation::Register,
        status: 201,
        field: "redirect_uris",
        ..
    }) = &issued.ignored
    else {
        panic!("{:?}", issued.ignored);
    };
    let err = client
        .update_client(
            &issued.info.client_id,
            &ClientUpdate {
                client_name: "portal".into(),
                grant_types: strings(&["authorization_code"]),
                software_id: None,
                redirect_uris: strings(&["https://portal.example/cb"]),
            },
        )
        .await
        .expect_err("ignored");
    assert!(
        matches!(
            err,
            Error::Ignored {
                operation: Operation::Update,
                status: 200,
                field: "redirect_uris",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("redirect_uris"), "{err}");
}

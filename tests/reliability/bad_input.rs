//! Bad input: invalid OAuthClients are refused at admission with the field
//! named; malformed or hostile Collibra answers end as a clear condition,
//! never a panic or an unbounded allocation.

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::ensure;
use collibra_sim::{ScriptAction, ScriptedFault};
use kube::api::{Patch, PatchParams};

use test_support::{Env, Fixture, Options, condition, manifest, ready_reason, tail};

test_support::tests!(
    Env;
    invalid_objects_are_refused_with_the_field_named,
    hostile_collibra_answers_end_as_clear_conditions,
);

fn object(spec: &str) -> String {
    format!(
        "apiVersion: oauth.collibra.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: bad\n{spec}"
    )
}

async fn invalid_objects_are_refused_with_the_field_named(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "badinput",
        Options {
            start_operator: false,
            ..Options::default()
        },
    )
    .await?;
    let long_secret = "a".repeat(254);
    let long_software = "s".repeat(256);
    let long_name = "n".repeat(101);
    // (what, everything after metadata, text the refusal must contain)
    let cases: Vec<(&str, String, &str)> = vec![
        ("no spec", String::new(), "spec"),
        ("spec not an object", "spec: client\n".into(), "spec"),
        ("missing clientName", "spec:\n  grantTypes: [client_credentials]\n".into(), "spec.clientName"),
        ("empty clientName", "spec:\n  clientName: \"\"\n".into(), "spec.clientName"),
        ("null clientName", "spec:\n  clientName: null\n".into(), "spec.clientName"),
        ("overlong clientName", format!("spec:\n  clientName: {long_name}\n"), "spec.clientName"),
        ("slash in clientName", "spec:\n  clientName: \"a/b\"\n".into(), "spec.clientName"),
        ("leading space", "spec:\n  clientName: \" lead\"\n".into(), "spec.clientName"),
        ("trailing space", "spec:\n  clientName: \"trail \"\n".into(), "spec.clientName"),
        ("control character", "spec:\n  clientName: \"a\\tb\"\n".into(), "spec.clientName"),
        ("clientName a list", "spec:\n  clientName: [a, b]\n".into(), "spec.clientName"),
        ("clientName a number", "spec:\n  clientName: 42\n".into(), "spec.clientName"),
        ("unknown grant type", "spec:\n  clientName: ok\n  grantTypes: [password]\n".into(), "spec.grantTypes[0]"),
        ("duplicate grant type", "spec:\n  clientName: ok\n  grantTypes: [authorization_code, authorization_code]\n".into(), "spec.grantTypes[1]"),
        ("no grant types", "spec:\n  clientName: ok\n  grantTypes: []\n".into(), "spec.grantTypes"),
        ("three grant types", "spec:\n  clientName: ok\n  grantTypes: [client_credentials, authorization_code, implicit]\n".into(), "spec.grantTypes"),
        ("grantTypes a string", "spec:\n  clientName: ok\n  grantTypes: client_credentials\n".into(), "spec.grantTypes"),
        ("grant type a number", "spec:\n  clientName: ok\n  grantTypes: [7]\n".into(), "spec.grantTypes[0]"),
        ("uppercase secretName", "spec:\n  clientName: ok\n  secretName: Not_Valid\n".into(), "spec.secretName"),
        ("overlong secretName", format!("spec:\n  clientName: ok\n  secretName: {long_secret}\n"), "spec.secretName"),
        ("secretName an object", "spec:\n  clientName: ok\n  secretName: {a: b}\n".into(), "spec.secretName"),
        ("unknown deletionPolicy", "spec:\n  clientName: ok\n  deletionPolicy: Keep\n".into(), "spec.deletionPolicy"),
        ("lowercase deletionPolicy", "spec:\n  clientName: ok\n  deletionPolicy: delete\n".into(), "spec.deletionPolicy"),
        ("overlong softwareId", format!("spec:\n  clientName: ok\n  softwareId: {long_software}\n"), "spec.softwareId"),
        ("empty softwareId", "spec:\n  clientName: ok\n  softwareId: \"\"\n".into(), "spec.softwareId"),
        ("softwareId a list", "spec:\n  clientName: ok\n  softwareId: [a]\n".into(), "spec.softwareId"),
        ("secretTemplate a string", "spec:\n  clientName: ok\n  secretTemplate: labels\n".into(), "spec.secretTemplate"),
        ("label value a list", "spec:\n  clientName: ok\n  secretTemplate:\n    labels: {team: [a]}\n".into(), "spec.secretTemplate.labels.team"),
        ("unknown spec field", "spec:\n  clientName: ok\n  clientSecret: hunter2\n".into(), "spec.clientSecret"),
        // `data` became a field; `stringData` is not one.
        ("unknown secretTemplate field", "spec:\n  clientName: ok\n  secretTemplate:\n    stringData: {a: b}\n".into(), "spec.secretTemplate.stringData"),
        ("unknown top-level field", "spec:\n  clientName: ok\nextra: 1\n".into(), "extra"),
    ];
    let mut failures = Vec::new();
    let mut refused = 0;
    for (what, body, field) in &cases {
        // kubectl's default is --validate=strict (server-side field
        // validation); it is spelled out so unknown fields are refused
        // rather than pruned with a warning.
        match f
            .env
            .cp
            .kubectl_with_stdin(
                &["apply", "--validate=strict", "-n", &f.ns, "-f", "-"],
                &object(body),
            )
            .await
        {
            Ok(out) => failures.push(format!("{what}: accepted ({out})")),
            Err(e) if !e.to_string().contains(field) => {
                failures.push(format!("{what}: the refusal does not name {field}: {e}"))
            }
            Err(_) => refused += 1,
        }
    }
    // Immutable fields, through kubectl and through a merge patch.
    f.apply(&manifest(
        "fixed",
        "fixed-name",
        "  secretName: fixed-secret\n",
    ))
    .await?;
    f.apply(&manifest("defaulted", "defaulted-name", ""))
        .await?;
    let immutable: Vec<(&str, String, &str)> = vec![
        (
            "clientName changed",
            manifest("fixed", "other-name", "  secretName: fixed-secret\n"),
            "clientName is immutable",
        ),
        (
            "secretName changed",
            manifest("fixed", "fixed-name", "  secretName: other\n"),
            "secretName is immutable",
        ),
        (
            "secretName removed",
            manifest("fixed", "fixed-name", ""),
            "secretName is immutable",
        ),
        (
            "secretName added",
            manifest("defaulted", "defaulted-name", "  secretName: later\n"),
            "secretName is immutable",
        ),
    ];
    for (what, yaml, msg) in &immutable {
        match f.apply(yaml).await {
            Ok(out) => failures.push(format!("{what}: accepted ({out})")),
            Err(e) if !e.to_string().contains(msg) => {
                failures.push(format!("{what}: the refusal lacks {msg:?}: {e}"))
            }
            Err(_) => refused += 1,
        }
    }
    for (what, patch, msg) in [
        (
            "clientName patched",
            serde_json::json!({"spec": {"clientName": "patched"}}),
            "clientName is immutable",
        ),
        (
            "secretName patched",
            serde_json::json!({"spec": {"secretName": "patched"}}),
            "secretName is immutable",
        ),
    ] {
        match f
            .oauth()
            .patch("fixed", &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(e) if !e.to_string().contains(msg) => {
                failures.push(format!("{what}: the refusal lacks {msg:?}: {e}"))
            }
            Err(_) => refused += 1,
        }
    }
    let total = cases.len() + immutable.len() + 2;
    println!(
        "RELIABILITY admission cases={total} refused_with_field_named={refused} failures={}",
        failures.len()
    );
    ensure!(
        failures.is_empty(),
        "admission gaps:\n{}",
        failures.join("\n")
    );
    ensure!(total >= 20);
    f.finish().await
}

/// One hostile answer: which operation it hits, the action, how many times
/// in a row, and whether the object is expected to end Registered.
struct Hostile {
    what: &'static str,
    op: &'static str,
    action: ScriptAction,
    times: usize,
    ends_registered: bool,
}

fn body(status: u16, body: impl Into<String>) -> ScriptAction {
    ScriptAction::Body {
        status,
        body: body.into(),
    }
}

fn hostile_cases() -> Vec<Hostile> {
    let dup = |n: &str| {
        format!(
            r#"{{"registrations":[{{"client_id":"urn:x:1","client_name":"{n}","grant_types":["client_credentials"]}},{{"client_id":"urn:x:2","client_name":"{n}","grant_types":["client_credentials"]}}]}}"#
        )
    };
    // 48 MiB, over the client's 32 MiB cap; and a 20 MiB list under it.
    let huge = format!("{{\"registrations\":[{}]}}", " ".repeat(48 * 1024 * 1024));
    let big_list = format!(
        "{{\"registrations\":[{}{{\"client_id\":\"urn:x:z\",\"client_name\":\"filler-z\"}}]}}",
        "{\"client_id\":\"urn:x:f\",\"client_name\":\"filler\",\"junk\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"},"
            .repeat(20 * 1024 * 1024 / 110)
    );
    let h = |what, op, action, times, ends_registered| Hostile {
        what,
        op,
        action,
        times,
        ends_registered,
    };
    vec![
        h(
            "list: registrations not a list",
            "list",
            body(200, r#"{"registrations":"none"}"#),
            3,
            true,
        ),
        h(
            "list: entry without client_id",
            "list",
            body(200, r#"{"registrations":[{"client_name":"x"}]}"#),
            3,
            true,
        ),
        h(
            "list: client_id a number",
            "list",
            body(
                200,
                r#"{"registrations":[{"client_id":5,"client_name":"x"}]}"#,
            ),
            3,
            true,
        ),
        h(
            "list: no registrations field",
            "list",
            body(200, r#"{"clients":[]}"#),
            3,
            true,
        ),
        h(
            "list: truncated JSON",
            "list",
            body(200, r#"{"registrations":[{"client_id":"a","client_na"#),
            3,
            true,
        ),
        h(
            "list: HTML error page",
            "list",
            ScriptAction::HtmlError,
            8,
            true,
        ),
        h("list: 48 MiB body", "list", body(200, huge), 2, true),
        h("list: 20 MiB list", "list", body(200, big_list), 1, true),
        h(
            "list: duplicate names (others)",
            "list",
            body(200, dup("someone-else")),
            2,
            true,
        ),
        h(
            "list: duplicate names (its own)",
            "list",
            body(200, dup("hostile-own-dup")),
            1,
            true,
        ),
        h("list: JSON null", "list", body(200, "null"), 3, true),
        h(
            "register: 201 with client_id a number",
            "register",
            body(
                201,
                r#"{"client_id":5,"client_name":"x","client_secret":"s"}"#,
            ),
            2,
            true,
        ),
        h(
            "register: 201 without client_secret",
            "register",
            body(201, r#"{"client_id":"urn:x:9","client_name":"x"}"#),
            2,
            true,
        ),
        h(
            "register: 201 truncated",
            "register",
            body(201, r#"{"client_id":"urn:x:9","client_sec"#),
            2,
            true,
        ),
        h(
            "register: HTML error page",
            "register",
            ScriptAction::HtmlError,
            3,
            true,
        ),
        h(
            "register: 400 HTML page",
            "register",
            body(400, "<html><body><h1>Bad Request</h1></body></html>"),
            1,
            false,
        ),
        h(
            "token: access_token a number",
            "token",
            body(
                200,
                r#"{"access_token":5,"token_type":"Bearer","expires_in":60}"#,
            ),
            3,
            true,
        ),
        h(
            "token: HTML error page",
            "token",
            ScriptAction::HtmlError,
            8,
            true,
        ),
    ]
}

async fn hostile_case(env: Arc<Env>, idx: usize, case: Hostile) -> anyhow::Result<String> {
    let f = Fixture::with(
        env,
        &format!("hostile{idx}"),
        Options {
            resync: "3s",
            ..Options::default()
        },
    )
    .await?;
    for _ in 0..case.times {
        f.collibra
            .script(ScriptedFault::on(case.op, case.action.clone()));
    }
    let client_name = if case.what.contains("its own") {
        "hostile-own-dup".to_owned()
    } else {
        format!("hostile-{idx}")
    };
    f.apply(&manifest("h", &client_name, "")).await?;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = None;
    let mut mem_peak_kib = 0;
    while Instant::now() < deadline {
        if let Some(pid) = f.op.pid() {
            mem_peak_kib = mem_peak_kib.max(peak_rss_kib(pid));
        }
        if let Some(o) = f.oauth().get_opt("h").await? {
            if let Some(c) = o.ready_condition()
                && c.status == "False"
                && c.reason != "Registering"
            {
                seen.insert(format!("{}: {}", c.reason, c.message));
            }
            let done = if case.ends_registered {
                ready_reason(&o).as_deref() == Some("Registered")
            } else {
                condition(&o, "Stalled").as_deref() == Some("True")
            };
            last = Some(o);
            if done && f.collibra.pending_scripts().is_empty() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = f.op.log();
    let mut f = f;
    ensure!(
        !f.op.exited(),
        "{}: the operator died\n{}",
        case.what,
        tail(&log, 40)
    );
    ensure!(
        !log.contains("panicked"),
        "{}: the operator panicked\n{}",
        case.what,
        tail(&log, 40)
    );
    ensure!(
        mem_peak_kib < 400 * 1024,
        "{}: the operator's peak RSS reached {mem_peak_kib} KiB",
        case.what
    );
    let o = last.ok_or_else(|| anyhow::anyhow!("{}: object vanished", case.what))?;
    let warnings = f
        .kubectl(&[
            "get",
            "events.events.k8s.io",
            "--field-selector",
            "regarding.name=h,type=Warning",
            "-o",
            "jsonpath={range .items[*]}{.reason}: {.note}{\"\\n\"}{end}",
        ])
        .await?;
    seen.extend(
        warnings
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned),
    );
    if case.ends_registered {
        ensure!(
            ready_reason(&o).as_deref() == Some("Registered"),
            "{}: never recovered: {:?}\n{}",
            case.what,
            o.status,
            tail(&log, 40)
        );
        let clients = f.collibra.clients();
        ensure!(
            clients.len() == 1,
            "{}: {} clients",
            case.what,
            clients.len()
        );
        let data = f.secret_data("h").await?.unwrap_or_default();
        ensure!(
            f.collibra.verify_credentials(
                data.get("client_id").map_or("", String::as_str),
                data.get("client_secret").map_or("", String::as_str)
            ),
            "{}: the Secret's credentials do not work",
            case.what
        );
    } else {
        ensure!(
            ready_reason(&o).as_deref() == Some("CollibraRejected"),
            "{}: {:?}",
            case.what,
            o.status
        );
    }
    let consumed = f.collibra.stats().faults_for("scripted");
    ensure!(consumed > 0, "{}: the fault never fired", case.what);
    let summary = format!(
        "{} -> {} (faults fired {consumed}, peak RSS {} MiB); seen: {}",
        case.what,
        ready_reason(&o).unwrap_or_default(),
        mem_peak_kib / 1024,
        if seen.is_empty() {
            "(retried inside the call, no failure surfaced)".to_owned()
        } else {
            seen.into_iter().collect::<Vec<_>>().join(" | ")
        }
    );
    f.finish().await?;
    Ok(summary)
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn hostile_collibra_answers_end_as_clear_conditions(env: Arc<Env>) -> anyhow::Result<()> {
    let cases = hostile_cases();
    let n = cases.len();
    let mut failures = Vec::new();
    let mut summaries = Vec::new();
    // Six at a time: each case has its own namespace, simulator and operator.
    let mut cases = cases
        .into_iter()
        .enumerate()
        .collect::<Vec<_>>()
        .into_iter();
    loop {
        let batch: Vec<_> = cases.by_ref().take(6).collect();
        if batch.is_empty() {
            break;
        }
        let results = futures::future::join_all(
            batch
                .into_iter()
                .map(|(i, c)| hostile_case(env.clone(), i, c)),
        )
        .await;
        for r in results {
            match r {
                Ok(s) => summaries.push(s),
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
    }
    for s in &summaries {
        println!("  {s}");
    }
    println!(
        "RELIABILITY hostile_answers cases={n} passed={} failed={}",
        summaries.len(),
        failures.len()
    );
    ensure!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

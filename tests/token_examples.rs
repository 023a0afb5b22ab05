//! The README's "Using the credentials" examples (`examples/using-credentials`)
//! run against the Collibra simulator with a client shaped like Collibra's
//! (its id contains ':'), as an application would with the Secret's values in
//! CLIENT_ID, CLIENT_SECRET and TOKEN_URL. Each must get a token; the token
//! endpoint counts the answers, so a pass is a 200 seen by the server.
//!
//! The tools are prerequisites, never skipped: curl, python3 with venv (the
//! packages come from PyPI, `requirements.txt`) and Go (the example module's
//! dependencies come from the Go module proxy). `hack/token-examples/prepare.sh`
//! builds the Python venv and the Go example once, cached by their inputs.

use std::{path::PathBuf, process::Output, time::Duration};

use anyhow::{Context as _, bail, ensure};
use collibra_sim::{ClientRecord, SimConfig, Simulator};
use tokio::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn examples() -> PathBuf {
    root().join("examples/using-credentials")
}

/// A simulator with one registered integration application.
async fn sim_with_client() -> anyhow::Result<(Simulator, ClientRecord)> {
    let sim = Simulator::start(SimConfig::default()).await?;
    let client = sim
        .handle()
        .insert_client("token-example", &["client_credentials"]);
    ensure!(
        client.client_id.contains(':'),
        "the simulator's ids should contain ':' like Collibra's, got {}",
        client.client_id
    );
    Ok((sim, client))
}

/// `program args...` with the Secret's values in the environment.
async fn run_with_credentials(
    sim: &Simulator,
    client: &ClientRecord,
    program: &str,
    args: &[&str],
) -> anyhow::Result<Output> {
    let run = Command::new(program)
        .args(args)
        .current_dir(examples())
        .env("CLIENT_ID", &client.client_id)
        .env("CLIENT_SECRET", &client.client_secret)
        .env("TOKEN_URL", format!("{}/rest/oauth/v2/token", sim.url()))
        .env("NO_PROXY", "127.0.0.1,localhost")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .with_context(|| format!("{program} {args:?} did not finish within 60 s"))?
        .with_context(|| format!("running {program} (is it installed and on PATH?)"))
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `hack/token-examples/prepare.sh what` and returns the path it prints.
async fn prepared(what: &str) -> anyhow::Result<String> {
    let out = Command::new("bash")
        .arg(root().join("hack/token-examples/prepare.sh"))
        .arg(what)
        .output()
        .await
        .context("running bash hack/token-examples/prepare.sh")?;
    if !out.status.success() {
        bail!(
            "preparing the {what} token example failed (a prerequisite of this test):\n{}",
            describe(&out)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .last()
        .map(str::to_owned)
        .context("prepare.sh printed no path")
}

/// The example succeeded, said it got a bearer token, and the simulator
/// answered exactly `ok` token requests with 200 and none with 401.
fn expect_token(sim: &Simulator, out: &Output, says: &str, ok: u64) -> anyhow::Result<()> {
    ensure!(
        out.status.success(),
        "the example failed: {}",
        describe(out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        stdout.contains(says),
        "unexpected output: {}",
        describe(out)
    );
    let stats = sim.handle().stats();
    ensure!(
        stats.responses_for("token", "200") == ok && stats.responses_for("token", "401") == 0,
        "the token endpoint answered {:?}",
        stats.responses
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_example_gets_a_token() -> anyhow::Result<()> {
    let (sim, client) = sim_with_client().await?;
    let out = run_with_credentials(&sim, &client, "sh", &["token.sh"]).await?;
    expect_token(&sim, &out, "\"token_type\":\"Bearer\"", 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn python_requests_example_gets_a_token_with_encoded_basic() -> anyhow::Result<()> {
    let python = prepared("python").await?;
    let (sim, client) = sim_with_client().await?;
    let out = run_with_credentials(&sim, &client, &python, &["token_requests.py"]).await?;
    expect_token(&sim, &out, "got a Bearer token", 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn python_authlib_example_gets_a_token_with_client_secret_post() -> anyhow::Result<()> {
    let python = prepared("python").await?;
    let (sim, client) = sim_with_client().await?;
    let out = run_with_credentials(&sim, &client, &python, &["token_authlib.py"]).await?;
    expect_token(&sim, &out, "got a Bearer token", 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn go_clientcredentials_example_gets_a_token() -> anyhow::Result<()> {
    let binary = prepared("go").await?;
    let (sim, client) = sim_with_client().await?;
    let out = run_with_credentials(&sim, &client, &binary, &[]).await?;
    expect_token(&sim, &out, "got a Bearer token", 1)
}

/// What the README warns about: Basic without form-encoding (authlib's
/// default, `curl -u`) is refused, because the id's first ':' ends the user
/// name.
#[tokio::test(flavor = "multi_thread")]
async fn basic_without_form_encoding_is_refused() -> anyhow::Result<()> {
    let python = prepared("python").await?;
    let (sim, client) = sim_with_client().await?;
    let authlib_default = "import os\n\
        from authlib.integrations.requests_client import OAuth2Session\n\
        s = OAuth2Session(os.environ['CLIENT_ID'], os.environ['CLIENT_SECRET'])\n\
        s.fetch_token(os.environ['TOKEN_URL'], grant_type='client_credentials')\n";
    let out = run_with_credentials(&sim, &client, &python, &["-c", authlib_default]).await?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("invalid_client"),
        "authlib's default client_secret_basic was expected to fail with invalid_client: {}",
        describe(&out)
    );
    let curl_u = "curl --silent --fail -u \"$CLIENT_ID:$CLIENT_SECRET\" \
        -d grant_type=client_credentials \"$TOKEN_URL\"";
    let out = run_with_credentials(&sim, &client, "sh", &["-c", curl_u]).await?;
    ensure!(
        !out.status.success(),
        "curl -u without encoding was expected to fail: {}",
        describe(&out)
    );
    let stats = sim.handle().stats();
    ensure!(
        stats.responses_for("token", "401") == 2 && stats.responses_for("token", "200") == 0,
        "the token endpoint answered {:?}",
        stats.responses
    );
    Ok(())
}

/// The README shows the tested files, not copies that could drift.
#[test]
fn readme_shows_the_tested_examples() -> anyhow::Result<()> {
    let readme = std::fs::read_to_string(root().join("README.md"))?;
    for file in [
        "token.sh",
        "token_requests.py",
        "token_authlib.py",
        "go/main.go",
        "spring/application.yaml",
    ] {
        let text = std::fs::read_to_string(examples().join(file))
            .with_context(|| format!("reading examples/using-credentials/{file}"))?;
        ensure!(
            readme.contains(text.trim_end()),
            "README.md does not show examples/using-credentials/{file} as it is; copy the file into its code block"
        );
    }
    Ok(())
}

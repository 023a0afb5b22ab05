//! The examples of docs/src/guides/using-credentials.md (`examples/using-credentials`)
//! run against the Collibra simulator with a client shaped like Collibra's
//! (its id contains ':'), as an application would with the Secret's values in
//! CLIENT_ID, CLIENT_SECRET and TOKEN_URL. Each must get a token; the token
//! endpoint counts the answers, so a pass is a 200 seen by the server.
//!
//! The simulator also counts which client authentication method each token
//! request used, so a test shows the method on the wire, not just a token.
//!
//! The tools are prerequisites, never skipped: curl, python3 with venv (the
//! packages come from PyPI, `requirements.txt`), Go (the example module's
//! dependencies come from the Go module proxy), and a JDK with Maven (the
//! Spring example's dependencies come from Maven Central, `spring/pom.xml`).
//! `make test-deps` installs the Debian packages;
//! `hack/token-examples/prepare.sh` builds the Python venv, the Go example and
//! the Spring example once, cached by their inputs.

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
/// answered exactly `ok` token requests with 200 and none with 401, each
/// authenticated with `method` (`client_secret_basic` or `client_secret_post`).
fn expect_token(
    sim: &Simulator,
    out: &Output,
    says: &str,
    ok: u64,
    method: &str,
) -> anyhow::Result<()> {
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
    ensure!(
        stats.token_auth_for(method) == ok && stats.token_auth.values().sum::<u64>() == ok,
        "expected {ok} token request(s) authenticated with {method}, the simulator saw {:?}",
        stats.token_auth
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_example_gets_a_token() -> anyhow::Result<()> {
    let (sim, client) = sim_with_client().await?;
    let out = run_with_credentials(&sim, &client, "sh", &["token.sh"]).await?;
    expect_token(
        &sim,
        &out,
        "\"token_type\":\"Bearer\"",
        1,
        "client_secret_post",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn python_requests_example_gets_a_token_with_encoded_basic() -> anyhow::Result<()> {
    let python = prepared("python").await?;
    let (sim, client) = sim_with_client().await?;
    let out = run_with_credentials(&sim, &client, &python, &["token_requests.py"]).await?;
    expect_token(&sim, &out, "got a Bearer token", 1, "client_secret_basic")
}

#[tokio::test(flavor = "multi_thread")]
async fn python_authlib_example_gets_a_token_with_client_secret_post() -> anyhow::Result<()> {
    let python = prepared("python").await?;
    let (sim, client) = sim_with_client().await?;
    let out = run_with_credentials(&sim, &client, &python, &["token_authlib.py"]).await?;
    expect_token(&sim, &out, "got a Bearer token", 1, "client_secret_post")
}

#[tokio::test(flavor = "multi_thread")]
async fn go_clientcredentials_example_gets_a_token() -> anyhow::Result<()> {
    let binary = prepared("go").await?;
    let (sim, client) = sim_with_client().await?;
    let out = run_with_credentials(&sim, &client, &binary, &[]).await?;
    expect_token(&sim, &out, "got a Bearer token", 1, "client_secret_basic")
}

/// The registration in `spring/application.yaml` (Spring Boot's properties,
/// shown in the guide): checks that it takes the Secret's values and returns
/// its `client-authentication-method`, which the Spring example then uses.
fn spring_boot_registration() -> anyhow::Result<String> {
    let path = examples().join("spring/application.yaml");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    let client = &yaml["spring"]["security"]["oauth2"]["client"];
    let registration = &client["registration"]["collibra"];
    let text = |v: &serde_yaml::Value| v.as_str().map(str::to_owned);
    for (key, want) in [
        ("provider", "collibra"),
        ("client-id", "${CLIENT_ID}"),
        ("client-secret", "${CLIENT_SECRET}"),
        ("authorization-grant-type", "client_credentials"),
    ] {
        ensure!(
            text(&registration[key]).as_deref() == Some(want),
            "spring/application.yaml: registration.collibra.{key} should be {want}"
        );
    }
    ensure!(
        text(&client["provider"]["collibra"]["token-uri"]).as_deref() == Some("${TOKEN_URL}"),
        "spring/application.yaml: provider.collibra.token-uri should be ${{TOKEN_URL}}"
    );
    text(&registration["client-authentication-method"]).context(
        "spring/application.yaml: registration.collibra.client-authentication-method is missing",
    )
}

/// Spring Security's OAuth 2.0 client (`spring/`, a plain Java main) with the
/// registration of `application.yaml`. The example asks its
/// `OAuth2AuthorizedClientManager` twice: one token request proves the cache.
#[tokio::test(flavor = "multi_thread")]
async fn spring_example_gets_a_token_with_the_registration_of_application_yaml()
-> anyhow::Result<()> {
    let method = spring_boot_registration()?;
    let launcher = prepared("spring").await?;
    let (sim, client) = sim_with_client().await?;
    let out = run_with_credentials(&sim, &client, &launcher, &[&method]).await?;
    expect_token(&sim, &out, "got a Bearer token", 1, &method)
}

/// What the guide says about Spring's HTTP Basic: Spring Security 7 form-encodes
/// id and secret (RFC 6749 2.3.1) by default, so `client_secret_basic` works
/// with Collibra's ids too; the simulator sees Basic, not the form body.
#[tokio::test(flavor = "multi_thread")]
async fn spring_example_gets_a_token_with_client_secret_basic() -> anyhow::Result<()> {
    let launcher = prepared("spring").await?;
    let (sim, client) = sim_with_client().await?;
    let out = run_with_credentials(&sim, &client, &launcher, &["client_secret_basic"]).await?;
    expect_token(&sim, &out, "got a Bearer token", 1, "client_secret_basic")
}

/// What the guide warns about: Basic without form-encoding (authlib's
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

/// The guide shows the tested files, not copies that could drift.
#[test]
fn guide_shows_the_tested_examples() -> anyhow::Result<()> {
    let page = "docs/src/guides/using-credentials.md";
    let guide = std::fs::read_to_string(root().join(page))?;
    for file in [
        "token.sh",
        "token_requests.py",
        "token_authlib.py",
        "go/main.go",
        "spring/application.yaml",
        "spring/src/main/java/example/TokenExample.java",
    ] {
        let text = std::fs::read_to_string(examples().join(file))
            .with_context(|| format!("reading examples/using-credentials/{file}"))?;
        ensure!(
            guide.contains(text.trim_end()),
            "{page} does not show examples/using-credentials/{file} as it is; copy the file into its code block"
        );
    }
    Ok(())
}

// ---- user applications: the authorization code grant ---------

/// The guide page that shows the user-application example.
const USER_APPS_GUIDE: &str = "docs/src/guides/user-applications.md";

/// The OAuthClient of `examples/user-application.yaml`, registered in the
/// simulator as the operator registers it (its `redirect_uris` included),
/// and the data of the Secret the operator writes for it (the operator's
/// own rendering, `secretTemplate` included), with the credentials Collibra
/// issued.
async fn user_application(
    sim: &Simulator,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    use collibra_client::{Auth, CollibraClient, Config, Credential, NewClient, SecretString};
    use collibra_oauth_operator::{api::OAuthClient, controller::secret};

    let path = root().join("examples/user-application.yaml");
    let obj: OAuthClient = serde_yaml::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    ensure!(
        !obj.spec.redirect_uris.is_empty(),
        "{} has no redirectUris",
        path.display()
    );
    let collibra = CollibraClient::new(Config::new(
        url::Url::parse(&sim.url())?,
        Auth::Basic {
            username: Credential::Value(SecretString::from("admin")),
            password: Credential::Value(SecretString::from("admin")),
        },
    ))?;
    let issued = collibra
        .register_client(&NewClient {
            client_name: obj.spec.client_name.clone(),
            grant_types: secret::grant_types(&obj),
            software_id: obj.spec.software_id.clone(),
            redirect_uris: obj.spec.redirect_uris.clone(),
        })
        .await?;
    ensure!(issued.ignored.is_none(), "{:?}", issued.ignored);
    let token_url = collibra.token_url();
    let collibra_url = collibra.base_url();
    let written = secret::desired(
        &obj,
        secret::Endpoint {
            token_url: &token_url,
            collibra_url: &collibra_url,
        },
        secret::Contents::Credentials {
            creds: secret::Credentials {
                client_id: &issued.info.client_id,
                client_secret: &issued.client_secret,
            },
            rotated_for: None,
        },
        false,
    );
    Ok(written
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect())
}

/// `python authorization_code_authlib.py` with the Secret's values, the
/// redirect URI replaced by `redirect_uri` when given.
async fn run_authorization_code(
    python: &str,
    data: &std::collections::BTreeMap<String, String>,
    redirect_uri: Option<&str>,
) -> anyhow::Result<Output> {
    let value = |key: &str| {
        data.get(key)
            .cloned()
            .with_context(|| format!("the Secret has no key {key}: {:?}", data.keys()))
    };
    let run = Command::new(python)
        .arg("authorization_code_authlib.py")
        .current_dir(examples())
        .env("CLIENT_ID", value("client_id")?)
        .env("CLIENT_SECRET", value("client_secret")?)
        .env("TOKEN_URL", value("token_url")?)
        .env("AUTHORIZE_URL", value("authorize_url")?)
        .env(
            "REDIRECT_URI",
            match redirect_uri {
                Some(uri) => uri.to_owned(),
                None => value("redirect_uri")?,
            },
        )
        .env("NO_PROXY", "127.0.0.1,localhost")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .context("the authorization code example did not finish within 60 s")?
        .with_context(|| format!("running {python}"))
}

/// authlib signs a user in against the simulator: authorization URL, the
/// redirect back with a code and `state`, and the code exchanged for a
/// token with `client_secret_post`. A redirect URI that is not registered
/// gets no code.
#[tokio::test(flavor = "multi_thread")]
async fn python_authlib_signs_a_user_in_with_the_authorization_code_grant() -> anyhow::Result<()> {
    let python = prepared("python").await?;
    let sim = Simulator::start(SimConfig::default()).await?;
    let data = user_application(&sim).await?;
    let registered = &sim.handle().clients()[0];
    ensure!(
        data.get("redirect_uri") == registered.redirect_uris.first(),
        "the Secret's redirect_uri {:?} is one the OAuthClient registered ({:?})",
        data.get("redirect_uri"),
        registered.redirect_uris
    );

    let out = run_authorization_code(&python, &data, None).await?;
    expect_token(
        &sim,
        &out,
        "got a Bearer token for the signed-in user",
        1,
        "client_secret_post",
    )?;
    let stats = sim.handle().stats();
    ensure!(
        stats.responses_for("authorize", "302") == 1,
        "{:?}",
        stats.responses
    );

    // The same app with a redirect URI the client did not register.
    sim.handle().reset_stats();
    let out =
        run_authorization_code(&python, &data, Some("http://localhost:9999/elsewhere")).await?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not registered"),
        "a wrong redirect URI was expected to be refused: {}",
        describe(&out)
    );
    let stats = sim.handle().stats();
    ensure!(
        stats.responses_for("authorize", "400") == 1 && stats.requests_for("token") == 0,
        "refused at the authorization endpoint, no code, no token: {:?}",
        stats.responses
    );
    Ok(())
}

/// The guide shows the tested files, not copies that could drift.
#[test]
fn user_applications_guide_shows_the_tested_files() -> anyhow::Result<()> {
    let guide = std::fs::read_to_string(root().join(USER_APPS_GUIDE))
        .with_context(|| format!("reading {USER_APPS_GUIDE}"))?;
    for file in [
        "examples/using-credentials/authorization_code_authlib.py",
        "examples/user-application.yaml",
    ] {
        let text = std::fs::read_to_string(root().join(file))
            .with_context(|| format!("reading {file}"))?;
        ensure!(
            guide.contains(text.trim_end()),
            "{USER_APPS_GUIDE} does not show {file} as it is; copy the file into its code block"
        );
    }
    Ok(())
}

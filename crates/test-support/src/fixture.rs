//! One test's world (a namespace, a simulator and an operator watching
//! that namespace) and the checks tests make on it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::bail;
use collibra_oauth_operator::api::OAuthClient;
use collibra_sim::{SimConfig, SimHandle, Simulator};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::{Env, Operator, Rbac};

/// One test's world: a namespace, a simulator and an operator watching that
/// namespace only.
pub struct Fixture {
    /// Shared environment.
    pub env: Arc<Env>,
    /// The test's namespace.
    pub ns: String,
    /// The simulator.
    pub sim: Simulator,
    /// Its handle.
    pub collibra: SimHandle,
    /// The operator.
    pub op: Operator,
    _dir: tempfile::TempDir,
}

/// Options of a fixture.
pub struct Options {
    /// Simulator configuration.
    pub sim: SimConfig,
    /// Resync interval passed to the operator.
    pub resync: &'static str,
    /// Start the operator right away.
    pub start_operator: bool,
    /// `RUST_LOG` for the operator (default `info,collibra_oauth_operator=debug`).
    pub rust_log: Option<String>,
    /// The Collibra URL given to the operator (default: the simulator's).
    pub collibra_url: Option<String>,
    /// More flags for `collibra-oauth-operator run`.
    pub extra_args: Vec<String>,
    /// More environment variables for the operator.
    pub extra_env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sim: SimConfig::default(),
            resync: "10m",
            start_operator: true,
            rust_log: None,
            collibra_url: None,
            extra_args: Vec::new(),
            extra_env: Vec::new(),
        }
    }
}

impl Fixture {
    /// A fixture with default options.
    pub async fn new(env: Arc<Env>, prefix: &str) -> anyhow::Result<Fixture> {
        Fixture::with(env, prefix, Options::default()).await
    }

    /// A fixture with `opts`.
    pub async fn with(env: Arc<Env>, prefix: &str, opts: Options) -> anyhow::Result<Fixture> {
        let ns = env.cp.create_namespace(prefix).await?;
        if env.rbac == Rbac::Namespaced {
            env.grant_namespace(&ns).await?;
        }
        let sim = Simulator::start(opts.sim).await?;
        let collibra = sim.handle();
        let dir = tempfile::tempdir()?;
        let mut args = vec![
            "--collibra-url".to_owned(),
            opts.collibra_url.clone().unwrap_or_else(|| sim.url()),
            "--watch-namespaces".to_owned(),
            ns.clone(),
            "--resync-interval".to_owned(),
            opts.resync.to_owned(),
            "--deletion-grace".to_owned(),
            "20s".to_owned(),
        ];
        args.extend(opts.extra_args.iter().cloned());
        let mut envs = env.operator_env(
            opts.rust_log
                .clone()
                .unwrap_or_else(|| "info,collibra_oauth_operator=debug".to_owned()),
        );
        envs.extend(opts.extra_env.iter().cloned());
        let mut op = Operator::start(
            env.operator_bin.clone(),
            dir.path().join("operator.log"),
            args,
            envs,
        )?;
        if !opts.start_operator {
            op.kill().await?;
        }
        Ok(Fixture {
            env,
            ns,
            sim,
            collibra,
            op,
            _dir: dir,
        })
    }

    /// The OAuthClient API of the namespace.
    pub fn oauth(&self) -> Api<OAuthClient> {
        Api::namespaced(self.env.client.clone(), &self.ns)
    }

    /// The Secret API of the namespace.
    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.env.client.clone(), &self.ns)
    }

    /// `kubectl apply -f -` of `yaml` in the namespace.
    pub async fn apply(&self, yaml: &str) -> anyhow::Result<String> {
        self.env
            .cp
            .kubectl_with_stdin(&["apply", "-n", &self.ns, "-f", "-"], yaml)
            .await
    }

    /// `kubectl` with `-n NS` appended.
    pub async fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["-n", &self.ns]);
        self.env.cp.kubectl(&all).await
    }

    /// Waits until `name` satisfies `pred`, returning it.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&OAuthClient) -> bool,
    ) -> anyhow::Result<OAuthClient> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(o) = self.oauth().get_opt(name).await? {
                if pred(&o) {
                    return Ok(o);
                }
                last = Some(o);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "{name} never became {what}; last status: {}\n--- operator log (tail) ---\n{}",
            last.and_then(|o| o.status)
                .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default())
                .unwrap_or_else(|| "none".into()),
            tail(&self.op.log(), 40)
        )
    }

    /// Waits for Ready's reason to be `reason`.
    pub async fn wait_reason(&self, name: &str, reason: &str) -> anyhow::Result<OAuthClient> {
        self.wait_for(name, reason, |o| ready_reason(o).as_deref() == Some(reason))
            .await
    }

    /// Waits until the object is gone.
    pub async fn wait_gone(&self, name: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.oauth().get_opt(name).await?.is_none() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "{name} was never deleted\n--- operator log ---\n{}",
            tail(&self.op.log(), 40)
        )
    }

    /// The Secret's data as strings.
    pub async fn secret_data(
        &self,
        name: &str,
    ) -> anyhow::Result<Option<std::collections::BTreeMap<String, String>>> {
        Ok(self.secrets().get_opt(name).await?.map(|s| {
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect()
        }))
    }

    /// Event reasons recorded for the object.
    pub async fn event_reasons(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let out = self
            .kubectl(&[
                "get",
                "events.events.k8s.io",
                "--field-selector",
                &format!("regarding.name={name}"),
                "-o",
                "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
            ])
            .await?;
        Ok(out
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// Stops the operator and deletes the namespace (without waiting).
    pub async fn finish(mut self) -> anyhow::Result<()> {
        self.op.kill().await?;
        let _ = self
            .env
            .cp
            .kubectl(&["delete", "namespace", &self.ns, "--wait=false"])
            .await;
        self.sim.shutdown().await;
        Ok(())
    }
}

/// Ready's reason.
pub fn ready_reason(o: &OAuthClient) -> Option<String> {
    o.ready_condition().map(|c| c.reason.clone())
}

/// A condition's status.
pub fn condition(o: &OAuthClient, type_: &str) -> Option<String> {
    o.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.status.clone())
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// An OAuthClient manifest.
pub fn manifest(name: &str, client_name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: oauth.collibra.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: {name}\nspec:\n  clientName: {client_name}\n{extra_spec}"
    )
}

/// Asks the simulator's token endpoint for a token with these credentials.
pub async fn token_accepted(
    sim_url: &str,
    client_id: &str,
    client_secret: &str,
) -> anyhow::Result<bool> {
    let r = reqwest::Client::new()
        .post(format!("{sim_url}/rest/oauth/v2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret),
        ])
        .send()
        .await?;
    Ok(r.status().is_success())
}

//! Command-line flags of `collibra-oauth-operator run`; each has an
//! environment variable of the same meaning (docs/src/reference/flags.md).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::bail;
use clap::{Args, ValueEnum};
use collibra_client::{Auth, Credential, RetryPolicy};
use secrecy::SecretString;

/// How the operator authenticates to Collibra.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// OAuth 2.0 client credentials at `/rest/oauth/v2/token`.
    Oauth,
    /// HTTP Basic with a Collibra user.
    Basic,
    /// A bearer token from the organisation's identity provider.
    Bearer,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of the `run` command.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Collibra instance URL, e.g. https://acme.collibra.com.
    #[arg(long, env = "COLLIBRA_URL")]
    pub collibra_url: url::Url,

    /// Path of the OAuth client management API under the instance URL.
    #[arg(long, env = "COLLIBRA_API_PATH", default_value = "/rest/auth/v1")]
    pub collibra_api_path: String,

    /// How to authenticate to Collibra.
    #[arg(long, env = "COLLIBRA_AUTH", value_enum, default_value = "oauth")]
    pub collibra_auth: AuthMode,

    /// PEM bundle of CAs trusted for Collibra instead of the system roots.
    #[arg(long, env = "COLLIBRA_CA_FILE")]
    pub collibra_ca_file: Option<PathBuf>,

    /// Time allowed to connect to Collibra.
    #[arg(long, env = "COLLIBRA_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub collibra_connect_timeout: Duration,

    /// Time allowed for one Collibra request, body included.
    #[arg(long, env = "COLLIBRA_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub collibra_timeout: Duration,

    /// Requests per second sent to Collibra at most, evenly spaced (set it
    /// to the instance's rate limit so no request is spent on a 429). Unset:
    /// no pacing; a 429 with Retry-After still holds every request.
    #[arg(long, env = "COLLIBRA_RATE_LIMIT", value_parser = positive_rate)]
    pub collibra_rate_limit: Option<f64>,

    /// Namespaces to watch (comma-separated); all namespaces when unset.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,

    /// Address serving /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// How often every object is checked against Collibra (drift).
    #[arg(long, env = "RESYNC_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub resync_interval: Duration,

    /// The oldest Collibra list a registration may rest on: before a POST,
    /// a list older than this is read again (once for all registrations
    /// waiting), so a client created in Collibra meanwhile is not POSTed
    /// again. 0 reads a list before every registration.
    #[arg(long, env = "LIST_MAX_AGE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub list_max_age: Duration,

    /// Objects reconciled at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// How long a failing Collibra cleanup may hold a deleted object before
    /// the finalizer is released anyway (with a Warning Event).
    #[arg(long, env = "DELETION_GRACE", default_value = "5m", value_parser = humantime::parse_duration)]
    pub deletion_grace: Duration,

    /// Run for a Lease: with several replicas exactly one reconciles.
    #[arg(long, env = "LEADER_ELECT", default_value_t = false)]
    pub leader_elect: bool,

    /// Name of the Lease used for leader election.
    #[arg(long, env = "LEASE_NAME", default_value = "collibra-oauth-operator")]
    pub lease_name: String,

    /// Namespace of the Lease; defaults to the operator's own namespace
    /// (in a cluster) or the kubeconfig's.
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long a lease stays valid without renewal; a standby takes over
    /// within this time after the leader dies.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,

    /// Log format; the level comes from RUST_LOG.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// CollibraConnection and ClusterCollibraConnection settings.
    #[command(flatten)]
    pub connections: crate::connection::ConnectionArgs,
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("expected requests per second > 0, got {s:?}")),
    }
}

impl RunArgs {
    /// The namespaces to watch, or `None` for the whole cluster.
    pub fn namespaces(&self) -> Option<Vec<String>> {
        let ns: Vec<String> = self
            .watch_namespaces
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        (!ns.is_empty()).then_some(ns)
    }

    /// The Collibra client configuration, credentials read from the environment.
    pub fn collibra_config(&self) -> anyhow::Result<collibra_client::Config> {
        self.collibra_config_from(&|name| std::env::var(name).ok())
    }

    /// As [`Self::collibra_config`], with the environment given (for tests).
    pub fn collibra_config_from(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<collibra_client::Config> {
        let credential = |name: &str| -> anyhow::Result<Credential> {
            let file_var = format!("{name}_FILE");
            match (env(name), env(&file_var)) {
                (Some(_), Some(_)) => bail!("set either {name} or {file_var}, not both"),
                (Some(v), None) => Ok(Credential::Value(SecretString::from(v))),
                (None, Some(path)) => Ok(Credential::File(PathBuf::from(path))),
                (None, None) => bail!(
                    "{name} or {file_var} is required for --collibra-auth {:?}",
                    self.collibra_auth
                ),
            }
        };
        let auth = match self.collibra_auth {
            AuthMode::Oauth => Auth::OAuth {
                client_id: credential("COLLIBRA_CLIENT_ID")?,
                client_secret: credential("COLLIBRA_CLIENT_SECRET")?,
            },
            AuthMode::Basic => Auth::Basic {
                username: credential("COLLIBRA_USERNAME")?,
                password: credential("COLLIBRA_PASSWORD")?,
            },
            AuthMode::Bearer => Auth::Bearer {
                token: credential("COLLIBRA_TOKEN")?,
            },
        };
        if !self.collibra_api_path.starts_with('/') {
            bail!(
                "--collibra-api-path must start with '/', got {:?}",
                self.collibra_api_path
            );
        }
        Ok(collibra_client::Config {
            base_url: self.collibra_url.clone(),
            api_path: self.collibra_api_path.clone(),
            auth,
            ca_file: self.collibra_ca_file.clone(),
            ca_pem: None,
            connect_timeout: self.collibra_connect_timeout,
            request_timeout: self.collibra_timeout,
            retry: RetryPolicy::default(),
            max_body_bytes: 32 * 1024 * 1024,
            rate_limit: self.collibra_rate_limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: RunArgs,
    }

    fn parse(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["x", "--collibra-url", "https://c.example"];
        argv.extend_from_slice(extra);
        Wrap::try_parse_from(argv).expect("parses").args
    }

    #[test]
    fn defaults_follow_the_readme() {
        let a = parse(&[]);
        assert_eq!(a.collibra_api_path, "/rest/auth/v1");
        assert_eq!(a.collibra_auth, AuthMode::Oauth);
        assert_eq!(a.metrics_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(a.resync_interval, Duration::from_secs(600));
        assert_eq!(a.log_format, LogFormat::Text);
        assert_eq!(a.namespaces(), None);
        assert_eq!(a.collibra_rate_limit, None);
        assert_eq!(a.list_max_age, Duration::from_secs(10));
        assert_eq!(
            parse(&["--list-max-age", "500ms"]).list_max_age,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn rate_limit_is_positive() {
        let a = parse(&["--collibra-rate-limit", "50"]);
        assert_eq!(a.collibra_rate_limit, Some(50.0));
        let mut argv = vec!["x", "--collibra-url", "https://c.example"];
        argv.extend_from_slice(&["--collibra-rate-limit", "0"]);
        assert!(Wrap::try_parse_from(argv).is_err());
    }

    #[test]
    fn namespaces_are_comma_separated() {
        let a = parse(&["--watch-namespaces", "a, b,,c"]);
        assert_eq!(
            a.namespaces(),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
    }

    #[test]
    fn credentials_come_from_value_or_file_not_both() {
        let a = parse(&["--collibra-auth", "basic"]);
        let env = |n: &str| match n {
            "COLLIBRA_USERNAME" => Some("u".to_owned()),
            "COLLIBRA_PASSWORD_FILE" => Some("/run/pw".to_owned()),
            _ => None,
        };
        let cfg = a.collibra_config_from(&env).expect("valid");
        assert!(matches!(
            cfg.auth,
            Auth::Basic {
                password: Credential::File(_),
                ..
            }
        ));

        let both = |n: &str| match n {
            "COLLIBRA_TOKEN" | "COLLIBRA_TOKEN_FILE" => Some("t".to_owned()),
            _ => None,
        };
        let err = parse(&["--collibra-auth", "bearer"])
            .collibra_config_from(&both)
            .expect_err("ambiguous");
        assert!(err.to_string().contains("not both"), "{err}");

        let none = |_: &str| None;
        let err = parse(&[]).collibra_config_from(&none).expect_err("missing");
        assert!(err.to_string().contains("COLLIBRA_CLIENT_ID"), "{err}");
    }
}

//! What the client needs to know: where Collibra is, how to authenticate, and
//! how patient to be.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

/// Default API path of the client management API.
pub const DEFAULT_API_PATH: &str = "/rest/auth/v1";
/// Path of Collibra's OAuth 2.0 token endpoint, relative to the instance URL.
pub const TOKEN_PATH: &str = "/rest/oauth/v2/token";

/// Client configuration; [`Config::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Instance URL, e.g. `https://acme.collibra.com`.
    pub base_url: url::Url,
    /// Path of the client management API below `base_url`.
    pub api_path: String,
    /// How the operator authenticates itself.
    pub auth: Auth,
    /// PEM file with extra CA certificates to trust (besides the system roots).
    pub ca_file: Option<PathBuf>,
    /// PEM CA certificates given in memory (e.g. read from a Kubernetes
    /// Secret), trusted like those of `ca_file`.
    pub ca_pem: Option<Vec<u8>>,
    /// Limit for establishing a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Limit for one whole request, body included.
    pub request_timeout: Duration,
    /// When and how often failed requests are repeated.
    pub retry: RetryPolicy,
    /// Largest response body accepted; anything longer is an error.
    pub max_body_bytes: usize,
    /// Requests per second the client sends at most (all operations, retries
    /// and token requests included), evenly spaced; `None` sends at once.
    /// Independently of it, a 429 with `Retry-After` holds every request of
    /// the client until then.
    pub rate_limit: Option<f64>,
}

impl Config {
    /// A configuration with the defaults for everything but URL and credentials.
    pub fn new(base_url: url::Url, auth: Auth) -> Config {
        Config {
            base_url,
            api_path: DEFAULT_API_PATH.to_owned(),
            auth,
            ca_file: None,
            ca_pem: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            max_body_bytes: 32 * 1024 * 1024,
            rate_limit: None,
        }
    }
}

/// How the operator authenticates to Collibra.
#[derive(Debug, Clone)]
pub enum Auth {
    /// OAuth 2.0 client credentials against `/rest/oauth/v2/token`.
    OAuth {
        /// The operator's own client id.
        client_id: Credential,
        /// The operator's own client secret.
        client_secret: Credential,
    },
    /// HTTP Basic with a Collibra user.
    Basic {
        /// User name.
        username: Credential,
        /// Password.
        password: Credential,
    },
    /// A bearer token (e.g. a JWT from the organisation's identity provider).
    Bearer {
        /// The token, sent as is.
        token: Credential,
    },
}

impl Auth {
    /// "oauth", "basic" or "bearer", as in `COLLIBRA_AUTH`.
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::OAuth { .. } => "oauth",
            Auth::Basic { .. } => "basic",
            Auth::Bearer { .. } => "bearer",
        }
    }
}

/// A secret given directly or as a file that is re-read when it changes.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The value itself.
    Value(SecretString),
    /// A file holding the value (e.g. a mounted Kubernetes Secret); a
    /// trailing newline is ignored.
    File(PathBuf),
}

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (1 disables retries).
    pub max_attempts: u32,
    /// Upper bound of the first retry's delay; doubles with each retry.
    pub base_delay: Duration,
    /// Upper bound of any retry's delay.
    pub max_delay: Duration,
    /// Longest `Retry-After` the client sleeps through; a longer one ends the
    /// call with an error that carries it.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

//! The operator's own credentials: reading them (from values or files that
//! change under a running process), turning them into an `Authorization`
//! header, and the OAuth token cache.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::{Auth, Credential};
use crate::error::Error;
use crate::observer::{Observer, Operation};
use crate::transport::Transport;

/// Lifetime assumed when the token endpoint does not say (`expires_in` is
/// only RECOMMENDED by RFC 6749).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Upper bound of how long before expiry a token is replaced.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// A credential as the client uses it: a fixed value, or a file watched for changes.
pub(crate) struct CredentialSource {
    /// Names the credential in error messages ("client id", "password", ...).
    what: &'static str,
    source: Source,
}

enum Source {
    Value(SecretString),
    File {
        path: PathBuf,
        last: Mutex<Option<FileSnapshot>>,
    },
}

struct FileSnapshot {
    fingerprint: Fingerprint,
    value: SecretString,
}

/// What `stat` says about a file; any difference means it was replaced or
/// rewritten. Mounted Secrets are swapped by a symlink change, which gives a
/// new inode even when size and mtime happen to match.
#[derive(PartialEq, Eq, Debug)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    dev_ino: (u64, u64),
}

impl Fingerprint {
    fn of(meta: &std::fs::Metadata) -> Fingerprint {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt as _;
        Fingerprint {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            dev_ino: (meta.dev(), meta.ino()),
        }
    }
}

impl CredentialSource {
    pub fn new(what: &'static str, credential: &Credential) -> CredentialSource {
        let source = match credential {
            Credential::Value(value) => Source::Value(value.clone()),
            Credential::File(path) => Source::File {
                path: path.clone(),
                last: Mutex::new(None),
            },
        };
        CredentialSource { what, source }
    }

    /// The current value. A file is stat'ed on every call (cheap) and read
    /// again only when it changed; blocking I/O is acceptable for a tiny local file.
    pub fn load(&self) -> Result<SecretString, Error> {
        let (path, last) = match &self.source {
            Source::Value(value) => return self.check(value.clone()),
            Source::File { path, last } => (path, last),
        };
        let unreadable = |e: std::io::Error| {
            Error::Config(format!(
                "cannot read the {} from {}: {e}",
                self.what,
                path.display()
            ))
        };
        let fingerprint = Fingerprint::of(&std::fs::metadata(path).map_err(unreadable)?);
        let mut last = last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(snapshot) = last.as_ref().filter(|s| s.fingerprint == fingerprint) {
            return Ok(snapshot.value.clone());
        }
        let bytes = std::fs::read(path).map_err(unreadable)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            Error::Config(format!(
                "the {} in {} is not UTF-8 text",
                self.what,
                path.display()
            ))
        })?;
        // `echo secret > file` and `kubectl create secret --from-file` leave a newline.
        let value = SecretString::from(text.trim_end_matches(['\n', '\r']));
        let value = self.check(value)?;
        if last.is_some() {
            tracing::debug!(path = %path.display(), "credential file changed; using the new value");
        }
        *last = Some(FileSnapshot {
            fingerprint,
            value: value.clone(),
        });
        Ok(value)
    }

    fn check(&self, value: SecretString) -> Result<SecretString, Error> {
        if value.expose_secret().is_empty() {
            let origin = match &self.source {
                Source::Value(_) => String::new(),
                Source::File { path, .. } => format!(" in {}", path.display()),
            };
            return Err(Error::Config(format!("the {}{origin} is empty", self.what)));
        }
        Ok(value)
    }

    /// "value" or "file /path", for Debug output.
    fn origin(&self) -> String {
        match &self.source {
            Source::Value(_) => "value".to_owned(),
            Source::File { path, .. } => format!("file {}", path.display()),
        }
    }
}

/// An `Authorization` header ready to send, and the token generation it came
/// from (OAuth only), so a 401 drops exactly that token.
pub(crate) struct Authorization {
    pub header: HeaderValue,
    pub token_generation: Option<u64>,
}

/// Produces `Authorization` headers for the configured mode.
pub(crate) enum Authenticator {
    OAuth {
        client_id: CredentialSource,
        client_secret: CredentialSource,
        token_url: String,
        // Boxed: the cache is large and only this variant has one.
        tokens: Box<TokenCache>,
    },
    Basic {
        username: CredentialSource,
        password: CredentialSource,
    },
    Bearer {
        token: CredentialSource,
    },
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Authenticator::OAuth {
                client_id,
                client_secret,
                token_url,
                ..
            } => f
                .debug_struct("OAuth")
                .field("client_id", &client_id.origin())
                .field("client_secret", &client_secret.origin())
                .field("token_url", token_url)
                .finish(),
            Authenticator::Basic { username, password } => f
                .debug_struct("Basic")
                .field("username", &username.origin())
                .field("password", &password.origin())
                .finish(),
            Authenticator::Bearer { token } => f
                .debug_struct("Bearer")
                .field("token", &token.origin())
                .finish(),
        }
    }
}

impl Authenticator {
    pub fn new(auth: &Auth, token_url: String) -> Authenticator {
        match auth {
            Auth::OAuth {
                client_id,
                client_secret,
            } => Authenticator::OAuth {
                client_id: CredentialSource::new("OAuth client id", client_id),
                client_secret: CredentialSource::new("OAuth client secret", client_secret),
                token_url,
                tokens: Box::default(),
            },
            Auth::Basic { username, password } => Authenticator::Basic {
                username: CredentialSource::new("user name", username),
                password: CredentialSource::new("password", password),
            },
            Auth::Bearer { token } => Authenticator::Bearer {
                token: CredentialSource::new("bearer token", token),
            },
        }
    }

    /// Reads every credential once, so that a missing file fails at start-up.
    pub fn check(&self) -> Result<(), Error> {
        match self {
            Authenticator::OAuth {
                client_id,
                client_secret,
                ..
            } => {
                client_id.load()?;
                client_secret.load()?;
            }
            Authenticator::Basic { username, password } => {
                username.load()?;
                password.load()?;
            }
            Authenticator::Bearer { token } => {
                token.load()?;
            }
        }
        Ok(())
    }

    /// The header for the next API request, fetching a token if needed.
    pub async fn authorization(
        &self,
        transport: &Transport,
        observer: &dyn Observer,
    ) -> Result<Authorization, Error> {
        match self {
            Authenticator::OAuth {
                client_id,
                client_secret,
                token_url,
                tokens,
            } => {
                let credentials = ClientCredentials {
                    id: client_id.load()?,
                    secret: client_secret.load()?,
                };
                let (header, generation) = tokens
                    .get(credentials, token_url, transport, observer)
                    .await?;
                Ok(Authorization {
                    header,
                    token_generation: Some(generation),
                })
            }
            Authenticator::Basic { username, password } => {
                let user = username.load()?;
                let pass = password.load()?;
                if user.expose_secret().contains(':') {
                    return Err(Error::Config(
                        "the user name contains ':', which HTTP Basic cannot carry".to_owned(),
                    ));
                }
                Ok(Authorization {
                    header: basic_header(user.expose_secret(), pass.expose_secret())?,
                    token_generation: None,
                })
            }
            Authenticator::Bearer { token } => {
                let token = token.load()?;
                let header = sensitive_header(&format!("Bearer {}", token.expose_secret()))
                    .ok_or_else(|| {
                        Error::Config(
                            "the bearer token contains characters not allowed in an HTTP header"
                                .to_owned(),
                        )
                    })?;
                Ok(Authorization {
                    header,
                    token_generation: None,
                })
            }
        }
    }

    /// Forgets the token of `generation` after the API refused it.
    pub async fn token_rejected(&self, generation: u64) {
        if let Authenticator::OAuth { tokens, .. } = self {
            tokens.invalidate(generation).await;
        }
    }
}

/// `Basic base64(user ":" password)`, marked sensitive so it is never printed.
fn basic_header(user: &str, password: &str) -> Result<HeaderValue, Error> {
    let encoded = BASE64.encode(format!("{user}:{password}"));
    sensitive_header(&format!("Basic {encoded}"))
        .ok_or_else(|| Error::Config("credentials cannot be encoded as an HTTP header".to_owned()))
}

fn sensitive_header(value: &str) -> Option<HeaderValue> {
    let mut header = HeaderValue::from_str(value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

/// The operator's OAuth client credentials, as read just now.
struct ClientCredentials {
    id: SecretString,
    secret: SecretString,
}

impl ClientCredentials {
    fn same_as(&self, other: &ClientCredentials) -> bool {
        self.id.expose_secret() == other.id.expose_secret()
            && self.secret.expose_secret() == other.secret.expose_secret()
    }

    /// `client_secret_basic` (RFC 6749 section 2.3.1): id and secret are each
    /// form-urlencoded before they are joined and base64-encoded.
    fn basic_header(&self) -> Result<HeaderValue, Error> {
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        basic_header(
            &encode(self.id.expose_secret()),
            &encode(self.secret.expose_secret()),
        )
    }
}

/// The cached access token, shared by all clones of a client.
#[derive(Default)]
pub(crate) struct TokenCache {
    state: tokio::sync::Mutex<TokenState>,
    /// Number of fetches that have finished, read without the lock.
    fetches: AtomicU64,
}

#[derive(Default)]
struct TokenState {
    token: Option<CachedToken>,
    /// The last fetch's failure and its sequence number, handed to callers that
    /// were already waiting for that fetch instead of each fetching in turn.
    last_failure: Option<(u64, Error)>,
    next_generation: u64,
}

struct CachedToken {
    header: HeaderValue,
    refresh_at: Instant,
    generation: u64,
    credentials: ClientCredentials,
}

/// What the token endpoint returns (RFC 6749 section 5.1).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl TokenCache {
    /// A valid token; at most one fetch runs at a time, and callers arriving
    /// meanwhile wait for its result.
    async fn get(
        &self,
        credentials: ClientCredentials,
        token_url: &str,
        transport: &Transport,
        observer: &dyn Observer,
    ) -> Result<(HeaderValue, u64), Error> {
        let fetches_seen = self.fetches.load(Ordering::Acquire);
        let mut state = self.state.lock().await;

        if let Some(token) = &state.token {
            if !token.credentials.same_as(&credentials) {
                tracing::debug!("OAuth client credentials changed; dropping the cached token");
                state.token = None;
            } else if Instant::now() < token.refresh_at {
                return Ok((token.header.clone(), token.generation));
            }
        }
        if let Some((sequence, error)) = &state.last_failure
            && *sequence > fetches_seen
        {
            return Err(error.clone());
        }

        let result = fetch_token(&credentials, token_url, transport, observer).await;
        let sequence = self.fetches.fetch_add(1, Ordering::AcqRel) + 1;
        match result {
            Ok((header, refresh_at)) => {
                state.last_failure = None;
                state.next_generation += 1;
                let generation = state.next_generation;
                state.token = Some(CachedToken {
                    header: header.clone(),
                    refresh_at,
                    generation,
                    credentials,
                });
                Ok((header, generation))
            }
            Err(error) => {
                state.token = None;
                state.last_failure = Some((sequence, error.clone()));
                Err(error)
            }
        }
    }

    /// Drops the token of `generation`, unless it has been replaced already.
    async fn invalidate(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state
            .token
            .as_ref()
            .is_some_and(|t| t.generation == generation)
        {
            tracing::debug!("Collibra refused the access token; fetching a new one");
            state.token = None;
        }
    }
}

/// One client-credentials grant: the header to use and when to replace it.
async fn fetch_token(
    credentials: &ClientCredentials,
    token_url: &str,
    transport: &Transport,
    observer: &dyn Observer,
) -> Result<(HeaderValue, Instant), Error> {
    let basic = credentials.basic_header()?;
    let started = Instant::now();
    let response = transport
        .execute(Operation::Token, observer, || {
            transport
                .request(reqwest::Method::POST, token_url)
                .header(http::header::AUTHORIZATION, basic.clone())
                .header(http::header::ACCEPT, "application/json")
                .header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body("grant_type=client_credentials")
        })
        .await?;
    if !response.is_success() {
        return Err(response.to_error(Operation::Token));
    }
    let (header, lifetime) = parse_token_response(&response.body)?;
    Ok((
        header,
        started + lifetime.saturating_sub(refresh_margin(lifetime)),
    ))
}

/// How long before expiry a token is replaced: a fifth of its lifetime, at
/// most a minute, so short-lived tokens are still used for most of their life.
pub(crate) fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 5).min(MAX_REFRESH_MARGIN)
}

/// The lifetime a token response grants (for `parse::token`).
pub(crate) fn parse_token_body(body: &[u8]) -> Result<Duration, Error> {
    parse_token_response(body).map(|(_, lifetime)| lifetime)
}

/// The `Authorization` header and lifetime from a token response. Error
/// messages never quote the body: it holds the token.
fn parse_token_response(body: &[u8]) -> Result<(HeaderValue, Duration), Error> {
    let invalid = |message: String| Error::InvalidResponse {
        operation: Operation::Token,
        message,
    };
    let parsed: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "the token response is not the expected JSON ({})",
            crate::model::safe_json_error(&e)
        ))
    })?;
    if let Some(kind) = &parsed.token_type
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(invalid(format!(
            "token_type {kind:?} is not supported (expected Bearer)"
        )));
    }
    let lifetime = match parsed.expires_in {
        None | Some(serde_json::Value::Null) => DEFAULT_TOKEN_LIFETIME,
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .map(Duration::from_secs)
            .or_else(|| {
                n.as_f64()
                    .filter(|f| *f >= 0.0)
                    .map(Duration::from_secs_f64)
            })
            .ok_or_else(|| invalid("expires_in is negative".to_owned()))?,
        Some(serde_json::Value::String(s)) => s
            .trim()
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| invalid("expires_in is not a number".to_owned()))?,
        Some(_) => return Err(invalid("expires_in is not a number".to_owned())),
    };
    let token = parsed.access_token.expose_secret();
    if token.is_empty() {
        return Err(invalid("access_token is empty".to_owned()));
    }
    let header = sensitive_header(&format!("Bearer {token}")).ok_or_else(|| {
        invalid("access_token contains characters not allowed in an HTTP header".to_owned())
    })?;
    Ok((header, lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> Credential {
        Credential::Value(SecretString::from(s))
    }

    #[test]
    fn refresh_margin_is_a_fifth_capped_at_a_minute() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(300)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(10)),
            Duration::from_secs(2)
        );
        assert_eq!(refresh_margin(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn client_secret_basic_form_encodes_before_base64() {
        let creds = ClientCredentials {
            id: SecretString::from("my client:1"),
            secret: SecretString::from("p&ss/w+rd"),
        };
        let header = creds.basic_header().expect("header");
        assert!(header.is_sensitive());
        let encoded = header
            .to_str()
            .expect("ascii")
            .strip_prefix("Basic ")
            .expect("basic");
        let decoded = String::from_utf8(BASE64.decode(encoded).expect("b64")).expect("utf8");
        assert_eq!(decoded, "my+client%3A1:p%26ss%2Fw%2Brd");
    }

    #[test]
    fn token_response_parsing() {
        let (header, lifetime) = parse_token_response(
            br#"{"access_token":"abc","token_type":"Bearer","expires_in":300}"#,
        )
        .expect("token");
        assert_eq!(header.to_str().expect("ascii"), "Bearer abc");
        assert!(header.is_sensitive());
        assert_eq!(lifetime, Duration::from_secs(300));

        let (_, lifetime) =
            parse_token_response(br#"{"access_token":"abc","expires_in":"120"}"#).expect("token");
        assert_eq!(lifetime, Duration::from_secs(120));
        let (_, lifetime) = parse_token_response(br#"{"access_token":"abc"}"#).expect("token");
        assert_eq!(lifetime, DEFAULT_TOKEN_LIFETIME);
    }

    #[test]
    fn token_response_errors_never_quote_the_token() {
        let cases: [&[u8]; 4] = [
            br#"{"access_token":"TOPSECRET","token_type":"mac","expires_in":1}"#,
            br#"{"access_token":"TOPSECRET","expires_in":"soon"}"#,
            br#"{"access_token":"TOPSECRET\n","expires_in":1}"#,
            br#"{"access_token":"TOPSECRET", "expires_in": 5"#,
        ];
        for body in cases {
            let err = parse_token_response(body).expect_err("must fail");
            assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
            assert!(!format!("{err} {err:?}").contains("TOPSECRET"), "{err}");
        }
        let err = parse_token_response(br#"{"token_type":"Bearer"}"#).expect_err("must fail");
        assert!(err.to_string().contains("access_token"), "{err}");
    }

    #[test]
    fn file_credential_is_trimmed_and_reread_when_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("password");
        std::fs::write(&path, "first\n").expect("write");
        let source = CredentialSource::new("password", &Credential::File(path.clone()));
        assert_eq!(source.load().expect("load").expose_secret(), "first");

        // Replace the file the way a Secret volume does: a new inode.
        let tmp = dir.path().join("password.tmp");
        std::fs::write(&tmp, "other\r\n").expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
        assert_eq!(source.load().expect("load").expose_secret(), "other");
    }

    #[test]
    fn empty_or_missing_credentials_are_config_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "\n").expect("write");
        let source = CredentialSource::new("bearer token", &Credential::File(path.clone()));
        assert!(matches!(source.load(), Err(Error::Config(m)) if m.contains("empty")));

        let missing =
            CredentialSource::new("bearer token", &Credential::File(dir.path().join("nope")));
        assert!(matches!(missing.load(), Err(Error::Config(m)) if m.contains("nope")));

        let empty = CredentialSource::new("password", &value(""));
        assert!(empty.load().is_err());
    }

    #[test]
    fn debug_shows_where_credentials_come_from_not_what_they_are() {
        let auth = Authenticator::new(
            &Auth::Basic {
                username: value("admin-user"),
                password: Credential::File("/var/run/secrets/pw".into()),
            },
            String::new(),
        );
        let text = format!("{auth:?}");
        assert!(!text.contains("admin-user"), "{text}");
        assert!(text.contains("/var/run/secrets/pw"), "{text}");

        let auth = Authenticator::new(
            &Auth::OAuth {
                client_id: value("the-id"),
                client_secret: value("the-secret"),
            },
            "https://x/rest/oauth/v2/token".into(),
        );
        let text = format!("{auth:?}");
        assert!(
            !text.contains("the-secret") && !text.contains("the-id"),
            "{text}"
        );
    }

    #[test]
    fn basic_header_is_sensitive_and_correct() {
        let header = basic_header("admin", "pw").expect("header");
        assert!(header.is_sensitive());
        assert_eq!(format!("{header:?}"), "Sensitive");
        assert_eq!(
            header.to_str().expect("ascii"),
            format!("Basic {}", BASE64.encode("admin:pw"))
        );
    }
}

//! [`CollibraClient`]: the five operations of the client management API.

use std::fmt;
use std::sync::Arc;

use http::header::{ACCEPT, AUTHORIZATION};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;

use crate::auth::Authenticator;
use crate::config::{Config, TOKEN_PATH};
use crate::error::Error;
use crate::model::{self, ClientInfo, ClientUpdate, IssuedClient, NewClient, UpdateBody};
use crate::observer::{NoopObserver, Observer, Operation};
use crate::transport::{Response, Transport};

/// Everything but RFC 3986 unreserved characters is escaped in a path
/// segment: client ids contain ':' and may contain anything else.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Client for Collibra's OAuth 2.0 Client Management API. Cheap to clone;
/// clones share connections and the token cache.
#[derive(Clone)]
pub struct CollibraClient {
    inner: Arc<Inner>,
    observer: Arc<dyn Observer>,
}

struct Inner {
    transport: Transport,
    auth: Authenticator,
    base_url: url::Url,
    api_path: String,
    /// `{base}{api_path}/clients`
    clients_url: String,
    token_url: String,
}

impl fmt::Debug for CollibraClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollibraClient")
            .field("base_url", &self.inner.base_url.as_str())
            .field("api_path", &self.inner.api_path)
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

impl CollibraClient {
    /// Validates the configuration, reads the credentials and CA file once,
    /// and builds the HTTP client. Makes no request.
    pub fn new(config: Config) -> Result<CollibraClient, Error> {
        let base = validate_base_url(&config.base_url)?;
        let api_path = normalize_api_path(&config.api_path)?;
        if config.retry.max_attempts == 0 {
            return Err(Error::Config(
                "retry.max_attempts must be at least 1".to_owned(),
            ));
        }
        if config.max_body_bytes == 0 {
            return Err(Error::Config("max_body_bytes must be positive".to_owned()));
        }
        if config.connect_timeout.is_zero() || config.request_timeout.is_zero() {
            return Err(Error::Config("timeouts must be positive".to_owned()));
        }
        if config.base_url.scheme() == "http" && !is_loopback(&config.base_url) {
            tracing::warn!(
                url = %config.base_url,
                "the Collibra URL uses plain http: credentials travel unencrypted"
            );
        }

        let token_url = format!("{base}{TOKEN_PATH}");
        let auth = Authenticator::new(&config.auth, token_url.clone());
        auth.check()?;
        let transport = Transport::new(&config)?;
        Ok(CollibraClient {
            inner: Arc::new(Inner {
                transport,
                auth,
                base_url: config.base_url,
                clients_url: format!("{base}{api_path}/clients"),
                api_path,
                token_url,
            }),
            observer: Arc::new(NoopObserver),
        })
    }

    /// Reports every request and retry to `observer` (e.g. for metrics).
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> CollibraClient {
        self.observer = observer;
        self
    }

    /// The token endpoint registered clients use: `{base_url}/rest/oauth/v2/token`.
    pub fn token_url(&self) -> String {
        self.inner.token_url.clone()
    }

    /// The Collibra base URL, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.inner
            .base_url
            .as_str()
            .trim_end_matches('/')
            .to_owned()
    }

    /// Every registration (the list is not paged).
    pub async fn list_clients(&self) -> Result<Vec<ClientInfo>, Error> {
        let url = &self.inner.clients_url;
        let response = self
            .send(Operation::List, Method::GET, url, None::<&()>)
            .await?;
        model::parse_list(&response)
    }

    /// Registers a client; the answer holds its secret, shown only this once.
    ///
    /// Never repeated after the request may have reached Collibra: such
    /// failures are [`Error::Ambiguous`], and the caller must re-read the list.
    /// An answer that shows a field ignored (`redirect_uris` missing from
    /// it) is still a registration: it comes back with
    /// [`IssuedClient::ignored`] set, since its secret must be kept.
    pub async fn register_client(&self, request: &NewClient) -> Result<IssuedClient, Error> {
        let url = &self.inner.clients_url;
        let response = self
            .send(Operation::Register, Method::POST, url, Some(request))
            .await?;
        let mut issued = model::parse_registered(&response)?;
        issued.ignored = model::check_redirect_uris(
            Operation::Register,
            response.status,
            &request.redirect_uris,
            &issued.info,
        )
        .err();
        Ok(issued)
    }

    /// One client by id.
    pub async fn get_client(&self, client_id: &str) -> Result<ClientInfo, Error> {
        let url = self.client_url(client_id);
        let response = self
            .send(Operation::Get, Method::GET, &url, None::<&()>)
            .await?;
        model::parse_client(Operation::Get, &response)
    }

    /// Replaces the writeable fields of a client (RFC 7592 style; not every
    /// server has it, see [`Error::Unsupported`]). An answer that does not
    /// show the redirect URIs sent is [`Error::Ignored`].
    pub async fn update_client(
        &self,
        client_id: &str,
        update: &ClientUpdate,
    ) -> Result<ClientInfo, Error> {
        let url = self.client_url(client_id);
        let body = UpdateBody { client_id, update };
        let response = self
            .send(Operation::Update, Method::PUT, &url, Some(&body))
            .await?;
        let info = if response.status == 204 || response.body.iter().all(u8::is_ascii_whitespace) {
            // RFC 7592 answers with the client, but a server that answers
            // with nothing has still applied the update: read it back.
            self.get_client(client_id).await?
        } else {
            model::parse_client(Operation::Update, &response)?
        };
        model::check_redirect_uris(
            Operation::Update,
            response.status,
            &update.redirect_uris,
            &info,
        )?;
        Ok(info)
    }

    /// Deletes a client (RFC 7592 style; not every server has it).
    pub async fn delete_client(&self, client_id: &str) -> Result<(), Error> {
        let url = self.client_url(client_id);
        self.send(Operation::Delete, Method::DELETE, &url, None::<&()>)
            .await?;
        Ok(())
    }

    fn client_url(&self, client_id: &str) -> String {
        format!(
            "{}/{}",
            self.inner.clients_url,
            encode_path_segment(client_id)
        )
    }

    /// Sends an authenticated API request and returns its successful
    /// response. A 401 with an OAuth token is answered once by fetching a
    /// new token and sending the request again: tokens can be revoked or
    /// expire early, and a refused request had no effect.
    async fn send<B: serde::Serialize + ?Sized>(
        &self,
        operation: Operation,
        method: Method,
        url: &str,
        body: Option<&B>,
    ) -> Result<Response, Error> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Error::Config(format!("cannot encode the {operation} request: {e}")))?;
        let inner = &self.inner;
        let observer = self.observer.as_ref();
        let mut token_refreshed = false;
        loop {
            let authorization = inner.auth.authorization(&inner.transport, observer).await?;
            let response = inner
                .transport
                .execute(operation, observer, || {
                    let mut request = inner
                        .transport
                        .request(method.clone(), url)
                        .header(AUTHORIZATION, authorization.header.clone())
                        .header(ACCEPT, "application/json");
                    if let Some(body) = &body {
                        request = request
                            .header(http::header::CONTENT_TYPE, "application/json")
                            .body(body.clone());
                    }
                    request
                })
                .await?;
            if response.is_success() {
                return Ok(response);
            }
            if response.status == 401
                && !token_refreshed
                && let Some(generation) = authorization.token_generation
            {
                inner.auth.token_rejected(generation).await;
                token_refreshed = true;
                continue;
            }
            return Err(response.to_error(operation));
        }
    }
}

/// Percent-encodes a client id for use as one path segment.
pub(crate) fn encode_path_segment(segment: &str) -> String {
    utf8_percent_encode(segment, PATH_SEGMENT).to_string()
}

/// The base URL as a string without trailing slash, after checking it can
/// serve as one.
fn validate_base_url(url: &url::Url) -> Result<String, Error> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Config(format!(
            "the Collibra URL must use https (or http), not {}",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(Error::Config("the Collibra URL has no host".to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in a URL end up in logs; they belong in the auth settings.
        return Err(Error::Config(
            "the Collibra URL must not contain credentials; configure authentication instead"
                .to_owned(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Config(
            "the Collibra URL must not have a query or fragment".to_owned(),
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// `/rest/auth/v1` from `rest/auth/v1/` and the like; "" for "/".
fn normalize_api_path(path: &str) -> Result<String, Error> {
    let trimmed = path.trim().trim_matches('/');
    if trimmed.contains(['?', '#']) || trimmed.contains("//") {
        return Err(Error::Config(format!("invalid API path {path:?}")));
    }
    Ok(if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    })
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Auth, Credential};
    use secrecy::SecretString;

    fn config(url: &str) -> Config {
        Config::new(
            url::Url::parse(url).expect("url"),
            Auth::OAuth {
                client_id: Credential::Value(SecretString::from("operator-id")),
                client_secret: Credential::Value(SecretString::from("hunter2-secret")),
            },
        )
    }

    #[test]
    fn client_ids_are_percent_encoded() {
        assert_eq!(
            encode_path_segment("urn:sys:env:2eeadf60-1:i:1cnxtsn"),
            "urn%3Asys%3Aenv%3A2eeadf60-1%3Ai%3A1cnxtsn"
        );
        assert_eq!(encode_path_segment("a/b?c#d e%f"), "a%2Fb%3Fc%23d%20e%25f");
        assert_eq!(encode_path_segment("Az09-._~"), "Az09-._~");
        assert_eq!(encode_path_segment("é"), "%C3%A9");
    }

    #[test]
    fn urls_have_no_double_slash() {
        for base in ["https://acme.collibra.com", "https://acme.collibra.com/"] {
            let client = CollibraClient::new(config(base)).expect("client");
            assert_eq!(
                client.token_url(),
                "https://acme.collibra.com/rest/oauth/v2/token"
            );
            assert_eq!(
                client.client_url("urn:x"),
                "https://acme.collibra.com/rest/auth/v1/clients/urn%3Ax"
            );
        }
        let mut c = config("https://acme.collibra.com/prefix/");
        c.api_path = "rest/auth/v1/platform/".into();
        let client = CollibraClient::new(c).expect("client");
        assert_eq!(
            client.inner.clients_url,
            "https://acme.collibra.com/prefix/rest/auth/v1/platform/clients"
        );
        assert_eq!(
            client.token_url(),
            "https://acme.collibra.com/prefix/rest/oauth/v2/token"
        );
    }

    #[test]
    fn bad_configuration_is_refused() {
        for url in ["ftp://x", "https://u:p@x", "https://x/?a=b"] {
            let err = CollibraClient::new(config(url)).expect_err(url);
            assert!(matches!(err, Error::Config(_)), "{url}: {err:?}");
        }
        let mut c = config("https://x");
        c.retry.max_attempts = 0;
        assert!(matches!(CollibraClient::new(c), Err(Error::Config(_))));

        let mut c = config("https://x");
        c.auth = Auth::Bearer {
            token: Credential::File("/nonexistent/token".into()),
        };
        let err = CollibraClient::new(c).expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/token"), "{err}");
    }

    #[test]
    fn debug_prints_no_credentials() {
        let client = CollibraClient::new(config("https://acme.collibra.com")).expect("client");
        let text = format!("{client:?}");
        assert!(text.contains("acme.collibra.com"), "{text}");
        assert!(!text.contains("hunter2-secret"), "{text}");
        assert!(!text.contains("operator-id"), "{text}");

        let text = format!("{:?}", config("https://x"));
        assert!(!text.contains("hunter2-secret"), "{text}");
    }

    #[test]
    fn client_is_send_sync_clone() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<CollibraClient>();
        fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<Error>();
    }
}

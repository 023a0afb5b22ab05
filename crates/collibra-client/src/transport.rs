//! Sending one logical request: the HTTP client, the retry loop with backoff
//! and `Retry-After`, the body size cap, and the translation of transport
//! failures into [`Error`]s.

use std::error::Error as StdError;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use rand::Rng;

use crate::config::{Config, RetryPolicy};
use crate::error::{self, Error};
use crate::limiter::Limiter;
use crate::observer::{Observer, Operation};
use crate::tls;

/// A complete response: status, the headers the client cares about, and the body.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error this (unsuccessful) response stands for.
    pub fn to_error(&self, operation: Operation) -> Error {
        error::from_status(
            operation,
            self.status,
            self.content_type.as_deref(),
            &self.body,
            self.retry_after,
        )
    }
}

/// The HTTP client plus the policies applied around each request.
pub(crate) struct Transport {
    http: reqwest::Client,
    retry: RetryPolicy,
    max_body_bytes: usize,
    limiter: Limiter,
}

/// Why one attempt produced no usable response.
enum AttemptError {
    /// Nothing (complete) came back.
    Transport {
        error: reqwest::Error,
        /// The status, when the failure happened while reading the body.
        status: Option<u16>,
    },
    /// The body exceeded the cap.
    TooLarge { status: u16 },
}

impl Transport {
    pub fn new(config: &Config) -> Result<Transport, Error> {
        let tls = tls::client_config(config.ca_file.as_deref(), config.ca_pem.as_deref())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            // A redirect means a wrong URL (or an SSO login page); following it
            // would send credentials somewhere unexpected.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("collibra-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {}", chain(&e))))?;
        Ok(Transport {
            http,
            retry: config.retry.clone(),
            max_body_bytes: config.max_body_bytes,
            limiter: Limiter::new(config.rate_limit, 1),
        })
    }

    /// Starts a request; the caller adds headers and body.
    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url)
    }

    /// Sends the request that `build` makes, repeating it as the retry policy
    /// and the operation allow. Returns the first response that is not worth
    /// repeating (success or not), or an error when none came or retries ran
    /// out.
    pub async fn execute(
        &self,
        operation: Operation,
        observer: &dyn Observer,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Response, Error> {
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let request = build().build().map_err(|e| {
                Error::Config(format!(
                    "cannot build the {operation} request: {}",
                    chain(&e)
                ))
            })?;
            let method = request.method().clone();
            let path = request.url().path().to_owned();
            self.limiter.acquire().await;
            let started = Instant::now();
            let result = self.attempt(request).await;
            let elapsed = started.elapsed();
            let outcome = match &result {
                Ok(response) => response.status.to_string(),
                Err(AttemptError::TooLarge { status }) => status.to_string(),
                Err(AttemptError::Transport { .. }) => "error".to_owned(),
            };
            observer.request_finished(operation, &outcome, elapsed);
            tracing::debug!(
                operation = operation.as_str(),
                %method,
                path,
                status = outcome,
                elapsed_ms = elapsed.as_millis() as u64,
                attempt,
                "Collibra request finished"
            );

            let delay = match result {
                Ok(response) => {
                    if !error::is_retryable_status(operation, response.status) {
                        return Ok(response);
                    }
                    let retry_after = response.retry_after;
                    if response.status == 429
                        && let Some(wait) = retry_after.filter(|w| *w <= self.retry.max_retry_after)
                    {
                        // The server's limit is shared by every call: hold them all.
                        self.limiter.pause(wait);
                    }
                    if let Some(wait) = retry_after.filter(|w| *w > self.retry.max_retry_after) {
                        return Err(Error::Unavailable {
                            operation,
                            status: Some(response.status),
                            retry_after: Some(wait),
                            message: format!(
                                "HTTP {}: Collibra asked to retry after {}s, longer than the {}s this client waits",
                                response.status,
                                wait.as_secs(),
                                self.retry.max_retry_after.as_secs()
                            ),
                        });
                    }
                    if attempt >= max_attempts {
                        return Err(gave_up(response.to_error(operation), attempt));
                    }
                    self.delay(attempt).max(retry_after.unwrap_or_default())
                }
                Err(AttemptError::TooLarge { status }) => {
                    return Err(Error::InvalidResponse {
                        operation,
                        message: format!(
                            "the HTTP {status} response body is larger than the limit of {} bytes",
                            self.max_body_bytes
                        ),
                    });
                }
                Err(AttemptError::Transport { error, status }) => {
                    let failure = classify(&error, status);
                    if let Failure::CertificateRejected(message) = failure {
                        // Repeating cannot help; the trust configuration must change.
                        return Err(Error::Unavailable {
                            operation,
                            status: None,
                            retry_after: None,
                            message,
                        });
                    }
                    let message = failure.describe();
                    // Only a refused or failed connection proves a POST never
                    // reached Collibra; anything later may have created the client.
                    if !operation.is_idempotent() && !matches!(failure, Failure::Connect(_)) {
                        return Err(Error::Ambiguous {
                            operation,
                            message: format!("{message}; the request may have reached Collibra"),
                        });
                    }
                    if attempt >= max_attempts {
                        return Err(Error::Unavailable {
                            operation,
                            status: None,
                            retry_after: None,
                            message: format!("{message} (after {attempt} attempts)"),
                        });
                    }
                    self.delay(attempt)
                }
            };

            observer.retry_scheduled(operation, delay);
            tracing::debug!(
                operation = operation.as_str(),
                delay_ms = delay.as_millis() as u64,
                attempt,
                "retrying Collibra request"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// The jittered delay after the `attempt`-th attempt failed.
    fn delay(&self, attempt: u32) -> Duration {
        let ceiling = backoff_ceiling(&self.retry, attempt.saturating_sub(1));
        full_jitter(ceiling, &mut rand::rng())
    }

    /// One request, its body read in full but never beyond the cap.
    async fn attempt(&self, request: reqwest::Request) -> Result<Response, AttemptError> {
        let mut response =
            self.http
                .execute(request)
                .await
                .map_err(|error| AttemptError::Transport {
                    error,
                    status: None,
                })?;
        let status = response.status().as_u16();
        let header = |name: http::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(http::header::CONTENT_TYPE);
        let retry_after = header(http::header::RETRY_AFTER)
            .and_then(|v| parse_retry_after(&v, SystemTime::now()));

        let limit = self.max_body_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(AttemptError::TooLarge { status });
        }
        // Pre-allocate only what a small body needs; a lying Content-Length
        // must not make the client reserve memory it will not use.
        let mut body = BytesMut::with_capacity(
            response
                .content_length()
                .map_or(0, |len| len.min(64 * 1024) as usize),
        );
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        return Err(AttemptError::TooLarge { status });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(error) => {
                    return Err(AttemptError::Transport {
                        error,
                        status: Some(status),
                    });
                }
            }
        }
        Ok(Response {
            status,
            content_type,
            retry_after,
            body: body.freeze(),
        })
    }
}

/// Adds the attempt count to the message of an error whose retries ran out.
fn gave_up(error: Error, attempts: u32) -> Error {
    match error {
        Error::Unavailable {
            operation,
            status,
            retry_after,
            message,
        } => Error::Unavailable {
            operation,
            status,
            retry_after,
            message: format!("{message} (after {attempts} attempts)"),
        },
        other => other,
    }
}

/// What kind of transport failure an attempt ran into.
enum Failure {
    /// No connection was established: the request was surely not sent.
    Connect(String),
    /// The server's certificate is not trusted.
    CertificateRejected(String),
    /// The request timed out after the connection was made.
    Timeout(String),
    /// The connection broke while sending or receiving.
    Broken(String),
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Failure::Connect(m) => format!("cannot connect: {m}"),
            Failure::CertificateRejected(m) => m.clone(),
            Failure::Timeout(m) => format!("timed out: {m}"),
            Failure::Broken(m) => format!("connection failed: {m}"),
        }
    }
}

fn classify(error: &reqwest::Error, status: Option<u16>) -> Failure {
    let text = match status {
        Some(status) => format!(
            "after HTTP {status}, reading the body failed: {}",
            chain(error)
        ),
        None => chain(error),
    };
    if let Some(tls) = tls_certificate_error(error) {
        return Failure::CertificateRejected(format!(
            "the server's TLS certificate is not trusted ({tls}); check the CA file and the host name in the URL"
        ));
    }
    if error.is_connect() && status.is_none() {
        Failure::Connect(text)
    } else if error.is_timeout() {
        Failure::Timeout(text)
    } else {
        Failure::Broken(text)
    }
}

/// A rustls certificate error somewhere in the cause chain.
fn tls_certificate_error(error: &(dyn StdError + 'static)) -> Option<String> {
    match find_rustls_error(error)? {
        err @ (rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) => {
            Some(err.to_string())
        }
        _ => None,
    }
}

/// Walks `source()` links and also into `io::Error`s, whose `source()` skips
/// the error they wrap (tokio-rustls reports rustls errors that way, nested).
fn find_rustls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    if let Some(found) = error.downcast_ref::<rustls::Error>() {
        return Some(found);
    }
    if let Some(inner) = error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        && let Some(found) = find_rustls_error(inner)
    {
        return Some(found);
    }
    error.source().and_then(find_rustls_error)
}

/// An error and its causes as one line, without the URL (short, and it keeps
/// messages stable across retries).
fn chain(error: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        let text = match e.downcast_ref::<reqwest::Error>() {
            Some(_) if parts.is_empty() => {
                if error.is_timeout() {
                    "operation timed out".to_owned()
                } else if error.is_connect() {
                    "connection error".to_owned()
                } else if error.is_body() {
                    "error reading the response body".to_owned()
                } else {
                    "request error".to_owned()
                }
            }
            _ => e.to_string(),
        };
        // Layers often repeat their cause's message; say it once.
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// The upper bound of the delay before retry number `retry` (0 for the first):
/// `base_delay * 2^retry`, capped at `max_delay`.
pub(crate) fn backoff_ceiling(policy: &RetryPolicy, retry: u32) -> Duration {
    let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
    policy
        .base_delay
        .checked_mul(factor)
        .unwrap_or(policy.max_delay)
        .min(policy.max_delay)
}

/// A uniformly random delay in `[0, ceiling]` ("full jitter"), so that many
/// clients failing together do not retry together.
pub(crate) fn full_jitter(ceiling: Duration, rng: &mut impl Rng) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 section 10.2.3);
/// a date in the past means "now".
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // An absurdly long number still means "a very long time".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn backoff_doubles_then_caps() {
        let p = policy();
        let ceilings: Vec<_> = (0..9).map(|r| backoff_ceiling(&p, r)).collect();
        assert_eq!(
            ceilings,
            [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000].map(Duration::from_millis)
        );
    }

    #[test]
    fn backoff_never_overflows() {
        let p = policy();
        for retry in [31, 32, 64, u32::MAX] {
            assert_eq!(backoff_ceiling(&p, retry), p.max_delay);
        }
        let huge = RetryPolicy {
            base_delay: Duration::MAX,
            max_delay: Duration::from_secs(3),
            ..policy()
        };
        assert_eq!(backoff_ceiling(&huge, 0), Duration::from_secs(3));
    }

    #[test]
    fn jitter_stays_within_zero_and_ceiling_and_spreads() {
        let mut rng = StdRng::seed_from_u64(7);
        let ceiling = Duration::from_millis(800);
        let samples: Vec<_> = (0..2000).map(|_| full_jitter(ceiling, &mut rng)).collect();
        assert!(samples.iter().all(|d| *d <= ceiling));
        let below_quarter = samples.iter().filter(|d| **d < ceiling / 4).count();
        let above_three_quarters = samples.iter().filter(|d| **d > ceiling * 3 / 4).count();
        // Uniform: about 500 each; a constant or capped delay would fail this.
        assert!((350..650).contains(&below_quarter), "{below_quarter}");
        assert!(
            (350..650).contains(&above_three_quarters),
            "{above_three_quarters}"
        );
        assert_eq!(full_jitter(Duration::ZERO, &mut rng), Duration::ZERO);
    }

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date already past means retry now, not "no information".
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        let now = SystemTime::now();
        for value in ["", "soon", "-5", "1.5", "3s"] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }
}

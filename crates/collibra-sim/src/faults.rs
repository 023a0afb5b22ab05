//! Fault injection: random faults that stay in force ([`Faults`]) and
//! one-shot scripted faults ([`ScriptedFault`]), and the decision taken for
//! each request before it reaches a handler.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::errors::{ApiError, error_code_for};
use crate::state::SimState;

/// Random faults applied to every Collibra request while in force.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Faults {
    /// Added to every request before it is handled.
    pub latency_ms: u64,
    /// Up to this much more latency, chosen at random per request.
    pub latency_jitter_ms: u64,
    /// Share (0..=1) of requests answered 503 `server_error`.
    pub error_rate: f64,
    /// Token-bucket limit; requests over it get 429.
    pub rate_limit: Option<RateLimit>,
    /// Share (0..=1) of requests whose connection is closed with no answer.
    pub drop_rate: f64,
    /// The registration is committed at once but its 201 is held back this
    /// long: the window in which a caller can lose the only copy of a secret.
    pub register_response_delay_ms: u64,
}

impl Faults {
    /// Checks that the rates are shares between 0 and 1.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("drop_rate", self.drop_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        Ok(())
    }
}

/// A token-bucket rate limit: `requests_per_second` sustained, bursts of as many.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained rate and bucket size; 0 refuses every request.
    pub requests_per_second: u32,
    /// Value of the `Retry-After` header on a 429, if any.
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
}

/// A fault used once, on the first matching request after `after` others.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ScriptedFault {
    /// Operation it applies to (`list`, `register`, `get`, `update`,
    /// `delete`, `token`); `None` or `"any"` matches every operation.
    #[serde(default)]
    pub operation: Option<String>,
    /// Matching requests to let through before this fault fires.
    #[serde(default)]
    pub after: u64,
    /// What happens to the request it fires on.
    pub action: ScriptAction,
}

impl ScriptedFault {
    /// A fault for the next request of operation `op`.
    pub fn on(op: &str, action: ScriptAction) -> Self {
        ScriptedFault {
            operation: Some(op.to_owned()),
            after: 0,
            action,
        }
    }

    /// A fault for the next request of any operation.
    pub fn any(action: ScriptAction) -> Self {
        ScriptedFault {
            operation: None,
            after: 0,
            action,
        }
    }

    /// The same fault, firing only after `n` matching requests went through.
    pub fn after(mut self, n: u64) -> Self {
        self.after = n;
        self
    }

    fn matches(&self, op: &str) -> bool {
        match self.operation.as_deref() {
            None | Some("any") | Some("*") => true,
            Some(wanted) => wanted == op,
        }
    }
}

/// What a scripted fault does. JSON form: `{"type": "status", "status": 503}`,
/// `{"type": "drop"}`, `{"type": "body", "status": 200, "body": "{"}`, …
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ScriptAction {
    /// Answer with this status and a JSON error body; nothing is done.
    Status {
        /// HTTP status to answer with.
        status: u16,
        /// `Retry-After` header value, if any.
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// Wait this long, then handle the request normally.
    Delay {
        /// The delay in milliseconds.
        ms: u64,
    },
    /// Close the connection without answering; nothing is done.
    Drop,
    /// Handle the request (for `register`: commit the client), then close the
    /// connection without answering.
    DropAfterCommit,
    /// Answer 502 with an HTML page, as a proxy in front of Collibra would.
    HtmlError,
    /// Answer with this status and this raw body (sent as JSON), e.g. to
    /// return malformed JSON; nothing is done.
    Body {
        /// HTTP status to answer with.
        status: u16,
        /// Body sent as is.
        body: String,
    },
}

/// What to do with one request, decided before it reaches a handler.
pub(crate) enum Decision {
    /// Handle it normally.
    Proceed,
    /// Handle it, then close the connection instead of answering.
    ProceedThenDrop,
    /// Answer with this instead of handling it.
    Respond(Response),
    /// Close the connection without handling it.
    Drop,
}

/// The fault configuration plus what it needs to remember between requests.
#[derive(Default)]
pub(crate) struct FaultState {
    faults: Faults,
    bucket: Option<TokenBucket>,
    scripts: VecDeque<ScriptedFault>,
}

impl FaultState {
    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    pub(crate) fn set_faults(&mut self, faults: Faults) {
        // A new limit starts with a full bucket, so changing faults mid-test
        // does not inherit a debt from earlier traffic.
        self.bucket = faults.rate_limit.as_ref().map(TokenBucket::full);
        self.faults = faults;
    }

    pub(crate) fn push_script(&mut self, fault: ScriptedFault) {
        self.scripts.push_back(fault);
    }

    pub(crate) fn pending_scripts(&self) -> Vec<ScriptedFault> {
        self.scripts.iter().cloned().collect()
    }

    pub(crate) fn clear_scripts(&mut self) {
        self.scripts.clear();
    }

    /// Consumes the first scripted fault due for `op`. Every other matching
    /// fault still waiting counts this request towards its `after`.
    fn take_script(&mut self, op: &str) -> Option<ScriptAction> {
        let due = self
            .scripts
            .iter()
            .position(|s| s.matches(op) && s.after == 0);
        for (i, script) in self.scripts.iter_mut().enumerate() {
            if Some(i) != due && script.matches(op) && script.after > 0 {
                script.after -= 1;
            }
        }
        due.and_then(|i| self.scripts.remove(i)).map(|s| s.action)
    }
}

/// Refills continuously at `rate` per second up to `rate` tokens.
struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn full(limit: &RateLimit) -> Self {
        let rate = f64::from(limit.requests_per_second);
        TokenBucket {
            rate,
            tokens: rate,
            last: Instant::now(),
        }
    }

    fn try_take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Decides the fate of one request of operation `op`, waiting out any
/// injected latency first. Scripted faults win over random ones; a scripted
/// fault that fires replaces the random ones for that request (latency aside).
pub(crate) async fn decide(state: &SimState, op: &str) -> Decision {
    let mut fired = Vec::new();
    let (delay, decision) = {
        let mut faults = state.fault_state();
        let mut rng = rand::rng();
        let f = faults.faults.clone();
        let mut delay = f.latency_ms;
        if f.latency_jitter_ms > 0 {
            delay += rng.random_range(0..=f.latency_jitter_ms);
        }
        if delay > 0 {
            fired.push("latency");
        }
        let decision = if let Some(action) = faults.take_script(op) {
            fired.push("scripted");
            match action {
                ScriptAction::Delay { ms } => {
                    delay += ms;
                    Decision::Proceed
                }
                ScriptAction::Status {
                    status,
                    retry_after_secs,
                } => Decision::Respond(status_response(status, retry_after_secs)),
                ScriptAction::Drop => Decision::Drop,
                ScriptAction::DropAfterCommit => Decision::ProceedThenDrop,
                ScriptAction::HtmlError => Decision::Respond(html_error()),
                ScriptAction::Body { status, body } => Decision::Respond(raw_body(status, body)),
            }
        } else if f.drop_rate > 0.0 && rng.random::<f64>() < f.drop_rate {
            fired.push("dropped");
            Decision::Drop
        } else if let Some(bucket) = faults.bucket.as_mut()
            && !bucket.try_take()
        {
            fired.push("429");
            let retry_after = f.rate_limit.as_ref().and_then(|l| l.retry_after_secs);
            Decision::Respond(status_response(429, retry_after))
        } else if f.error_rate > 0.0 && rng.random::<f64>() < f.error_rate {
            fired.push("5xx");
            Decision::Respond(
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", "simulated")
                    .into_response(),
            )
        } else {
            Decision::Proceed
        };
        (delay, decision)
    };
    for kind in fired {
        state.count_fault(kind);
    }
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    decision
}

/// A status usable as a final answer; anything else becomes 500.
fn final_status(status: u16) -> StatusCode {
    StatusCode::from_u16(status)
        .ok()
        .filter(|s| !s.is_informational())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Whether `status` can be scripted (a final status, 200..=999).
pub(crate) fn valid_status(status: u16) -> bool {
    StatusCode::from_u16(status).is_ok_and(|s| !s.is_informational())
}

fn status_response(status: u16, retry_after_secs: Option<u64>) -> Response {
    let status = final_status(status);
    let mut response = ApiError::new(status, error_code_for(status), "simulated").into_response();
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn html_error() -> Response {
    const PAGE: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
        <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    (
        StatusCode::BAD_GATEWAY,
        [(header::CONTENT_TYPE, "text/html")],
        PAGE,
    )
        .into_response()
}

fn raw_body(status: u16, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = final_status(status);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_json_fills_defaults() {
        let f: Faults = serde_json::from_str(r#"{"error_rate": 0.5}"#).expect("parses");
        assert_eq!(f.error_rate, 0.5);
        assert_eq!(f.latency_ms, 0);
        assert_eq!(f.rate_limit, None);
        let f: Faults =
            serde_json::from_str(r#"{"rate_limit": {"requests_per_second": 2}}"#).expect("parses");
        assert_eq!(
            f.rate_limit,
            Some(RateLimit {
                requests_per_second: 2,
                retry_after_secs: None
            })
        );
    }

    #[test]
    fn rates_outside_zero_one_are_refused() {
        let f = Faults {
            error_rate: 1.5,
            ..Faults::default()
        };
        assert!(f.validate().is_err());
        assert!(Faults::default().validate().is_ok());
    }

    #[test]
    fn script_actions_have_a_tagged_json_form() {
        let s: ScriptedFault = serde_json::from_str(
            r#"{"operation":"register","action":{"type":"status","status":503,"retry_after_secs":2}}"#,
        )
        .expect("parses");
        assert_eq!(
            s,
            ScriptedFault::on(
                "register",
                ScriptAction::Status {
                    status: 503,
                    retry_after_secs: Some(2)
                }
            )
        );
        let s: ScriptedFault =
            serde_json::from_str(r#"{"action":{"type":"drop_after_commit"}}"#).expect("parses");
        assert_eq!(s, ScriptedFault::any(ScriptAction::DropAfterCommit));
    }

    #[test]
    fn scripts_skip_then_fire_once() {
        let mut state = FaultState::default();
        state.push_script(ScriptedFault::on("list", ScriptAction::Drop).after(1));
        assert_eq!(state.take_script("register"), None);
        assert_eq!(state.take_script("list"), None);
        assert_eq!(state.take_script("list"), Some(ScriptAction::Drop));
        assert_eq!(state.take_script("list"), None);
    }

    #[test]
    fn each_script_counts_matching_requests_on_its_own() {
        let mut state = FaultState::default();
        state.push_script(ScriptedFault::any(ScriptAction::HtmlError));
        state.push_script(ScriptedFault::any(ScriptAction::Drop).after(1));
        assert_eq!(state.take_script("get"), Some(ScriptAction::HtmlError));
        assert_eq!(state.take_script("get"), Some(ScriptAction::Drop));
        assert!(state.pending_scripts().is_empty());
    }

    #[test]
    fn bucket_refuses_when_empty() {
        let mut bucket = TokenBucket::full(&RateLimit {
            requests_per_second: 2,
            retry_after_secs: None,
        });
        assert!(bucket.try_take());
        assert!(bucket.try_take());
        assert!(!bucket.try_take());
        let mut closed = TokenBucket::full(&RateLimit {
            requests_per_second: 0,
            retry_after_secs: None,
        });
        assert!(!closed.try_take());
    }
}

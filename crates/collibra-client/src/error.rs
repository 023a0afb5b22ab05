//! The error type, and the mapping from an HTTP status and body to it.
//!
//! Messages are built for operators reading a status condition: they name the
//! operation and say what Collibra answered. They never carry a credential:
//! bodies that can hold one (the 201 of a registration, a token response) are
//! never quoted, and other bodies only as a short, tag-stripped excerpt.

use std::time::Duration;

use crate::observer::Operation;

/// How many characters of a non-JSON body an error message quotes.
const EXCERPT_CHARS: usize = 200;

/// Everything that can go wrong talking to Collibra.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum Error {
    /// Collibra could not be reached or answered 5xx/429 (after retries).
    #[error("Collibra is unavailable ({operation}{}): {message}", status_suffix(*.status))]
    Unavailable {
        /// The request that failed.
        operation: Operation,
        /// The last HTTP status, if a response arrived at all.
        status: Option<u16>,
        /// The server's `Retry-After`, when it asked for a wait (longer than
        /// the client was willing to sleep, or the last one seen).
        retry_after: Option<Duration>,
        /// What happened, for humans.
        message: String,
    },
    /// Collibra answered 4xx: the request itself is wrong (e.g. the name exists).
    #[error("Collibra rejected the {operation} request (HTTP {status}){}", describe(.error, .error_description))]
    Rejected {
        /// The request that failed.
        operation: Operation,
        /// The HTTP status.
        status: u16,
        /// Collibra's `error` code, if it sent one.
        error: Option<String>,
        /// Collibra's `error_description` (or a body excerpt when not JSON).
        error_description: Option<String>,
    },
    /// 404 for a single client: it does not exist, or the server lacks the endpoint.
    #[error(
        "Collibra answered 404 Not Found to {operation}: no such client, or the endpoint does not exist"
    )]
    NotFound {
        /// The request that failed.
        operation: Operation,
    },
    /// 405 or 501: the server does not implement this operation.
    #[error("Collibra does not support {operation} (HTTP {status})")]
    Unsupported {
        /// The request that failed.
        operation: Operation,
        /// 405 or 501.
        status: u16,
    },
    /// The operator's own credentials were refused (401/403 even with a fresh
    /// token), or the token endpoint refused to issue a token.
    #[error("Collibra refused the operator's credentials for {operation} (HTTP {status}){}", describe(.error, .error_description))]
    Unauthorized {
        /// The request that failed (`token` when the token endpoint refused).
        operation: Operation,
        /// The HTTP status.
        status: u16,
        /// Collibra's `error` code, if it sent one.
        error: Option<String>,
        /// Collibra's `error_description`, if it sent one.
        error_description: Option<String>,
    },
    /// A response the client cannot use: not JSON, a missing field, too large.
    #[error("invalid response from Collibra to {operation}: {message}")]
    InvalidResponse {
        /// The request that failed.
        operation: Operation,
        /// What was wrong with it.
        message: String,
    },
    /// Collibra accepted a request but its answer shows that it ignored a
    /// field that was sent (`redirect_uris`, which the published schema
    /// does not have): this instance does not support the field.
    #[error(
        "Collibra accepted the {operation} request (HTTP {status}) but ignored {field}: its answer {how}, so this instance does not support {field}"
    )]
    Ignored {
        /// The request that was answered.
        operation: Operation,
        /// The (successful) HTTP status of the answer.
        status: u16,
        /// The field, as named on the wire.
        field: &'static str,
        /// What the answer showed: "does not carry it" or "shows other values".
        how: &'static str,
    },
    /// A registration whose outcome is unknown: re-read the list before deciding.
    #[error(
        "the outcome of {operation} is unknown ({message}); re-read the client list before trying again"
    )]
    Ambiguous {
        /// Always `register` today.
        operation: Operation,
        /// Why the outcome is unknown.
        message: String,
    },
    /// The client's configuration is unusable (bad URL, unreadable credential or CA file).
    #[error("invalid Collibra client configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether the same call may succeed later without any change of
    /// configuration or request (network trouble, overload, unknown outcome).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Ambiguous { .. })
    }

    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Unavailable { .. } => "unavailable",
            Error::Rejected { .. } => "rejected",
            Error::Ignored { .. } => "ignored",
            Error::NotFound { .. } => "not_found",
            Error::Unsupported { .. } => "unsupported",
            Error::Unauthorized { .. } => "unauthorized",
            Error::InvalidResponse { .. } => "invalid_response",
            Error::Ambiguous { .. } => "ambiguous",
            Error::Config(_) => "config",
        }
    }

    /// How long the server asked to wait, when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The operation that failed (`None` for configuration errors).
    pub fn operation(&self) -> Option<Operation> {
        match self {
            Error::Unavailable { operation, .. }
            | Error::Rejected { operation, .. }
            | Error::Ignored { operation, .. }
            | Error::NotFound { operation }
            | Error::Unsupported { operation, .. }
            | Error::Unauthorized { operation, .. }
            | Error::InvalidResponse { operation, .. }
            | Error::Ambiguous { operation, .. } => Some(*operation),
            Error::Config(_) => None,
        }
    }
}

fn status_suffix(status: Option<u16>) -> String {
    status.map(|s| format!(", HTTP {s}")).unwrap_or_default()
}

fn describe(error: &Option<String>, description: &Option<String>) -> String {
    match (error, description) {
        (Some(e), Some(d)) => format!(": {e}: {d}"),
        (Some(e), None) => format!(": {e}"),
        (None, Some(d)) => format!(": {d}"),
        (None, None) => String::new(),
    }
}

/// What an error body said, as far as it can be understood.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ErrorBody {
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl ErrorBody {
    /// Parses `{error, error_description}` (RFC 6749/7591), falling back to the
    /// field names of Collibra's other REST APIs, and to an excerpt of a
    /// non-JSON body so the message still says something useful.
    pub fn parse(status: u16, content_type: Option<&str>, body: &[u8]) -> ErrorBody {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) {
            let field = |names: &[&str]| {
                names.iter().find_map(|n| match map.get(*n) {
                    Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                        Some(truncate(s.trim(), EXCERPT_CHARS))
                    }
                    _ => None,
                })
            };
            let parsed = ErrorBody {
                error: field(&["error", "errorCode", "code"]),
                error_description: field(&[
                    "error_description",
                    "userMessage",
                    "message",
                    "titleMessage",
                ]),
            };
            if parsed.error.is_some() || parsed.error_description.is_some() {
                return parsed;
            }
        }
        ErrorBody {
            error: None,
            error_description: non_json_summary(status, content_type, body),
        }
    }

    /// "error: description", or whichever of them is present.
    pub fn summary(&self) -> Option<String> {
        let text = describe(&self.error, &self.error_description);
        text.strip_prefix(": ").map(str::to_owned)
    }
}

/// "HTTP 502 with a non-JSON body (text/html): Bad Gateway ..." or `None`
/// for an empty body.
pub(crate) fn non_json_summary(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Option<String> {
    let excerpt = excerpt(body);
    if excerpt.is_empty() {
        return None;
    }
    let kind = content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .filter(|ct| !ct.is_empty())
        .unwrap_or("no content type");
    let what = if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        "a JSON body without error fields"
    } else {
        "a non-JSON body"
    };
    // A body that may carry credentials (a registration's answer relayed
    // by a proxy with an error status, a token) is described, never quoted.
    if holds_credentials(body) {
        return Some(format!(
            "HTTP {status} with {what} ({kind}) that looks like it holds credentials (not shown)"
        ));
    }
    Some(format!("HTTP {status} with {what} ({kind}): {excerpt}"))
}

/// Whether a body names a credential field anywhere (any case).
fn holds_credentials(body: &[u8]) -> bool {
    const KEYS: [&[u8]; 4] = [
        b"client_secret",
        b"access_token",
        b"refresh_token",
        b"password",
    ];
    KEYS.iter()
        .any(|key| body.windows(key.len()).any(|w| w.eq_ignore_ascii_case(key)))
}

/// A readable excerpt of a body: markup tags removed, whitespace collapsed,
/// control characters dropped, at most [`EXCERPT_CHARS`] characters.
pub(crate) fn excerpt(body: &[u8]) -> String {
    // Looking at a bounded prefix keeps a 32 MiB HTML page cheap to summarise.
    let head = &body[..body.len().min(16 * 1024)];
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    let mut in_tag = false;
    let mut in_hidden = false; // inside <script> or <style>
    let mut rest = text.as_ref();
    while let Some(c) = rest.chars().next() {
        if !in_tag && c == '<' {
            let lower: String = rest
                .chars()
                .take(8)
                .collect::<String>()
                .to_ascii_lowercase();
            if lower.starts_with("<script") || lower.starts_with("<style") {
                in_hidden = true;
            } else if lower.starts_with("</script") || lower.starts_with("</style") {
                in_hidden = false;
            }
            in_tag = true;
            out.push(' ');
        } else if in_tag {
            if c == '>' {
                in_tag = false;
            }
        } else if !in_hidden {
            out.push(if c.is_control() { ' ' } else { c });
        }
        rest = &rest[c.len_utf8()..];
    }
    let collapsed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate(&collapsed, EXCERPT_CHARS)
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Whether a response with this status is worth repeating for this operation.
///
/// 429 and 5xx mean overload or a passing failure, except 501 which is
/// permanent. A registration is repeated only on 429: a 5xx may come after
/// Collibra created the client, and a blind repeat would then fail on the
/// duplicate name and lose the secret of the first one.
pub(crate) fn is_retryable_status(operation: Operation, status: u16) -> bool {
    match status {
        429 => true,
        501 => false,
        500..=599 => operation.is_idempotent(),
        _ => false,
    }
}

/// The error for a final, unsuccessful response.
pub(crate) fn from_status(
    operation: Operation,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    retry_after: Option<Duration>,
) -> Error {
    let parsed = ErrorBody::parse(status, content_type, body);
    let single_client = matches!(
        operation,
        Operation::Get | Operation::Update | Operation::Delete
    );
    match status {
        300..=399 => Error::InvalidResponse {
            operation,
            message: format!(
                "unexpected redirect (HTTP {status}); check the Collibra URL and API path"
            ),
        },
        405 | 501 => Error::Unsupported { operation, status },
        404 if single_client => Error::NotFound { operation },
        // The token endpoint answers 400 invalid_client for bad credentials
        // (RFC 6749 section 5.2); every refusal there is an auth problem.
        400..=499 if operation == Operation::Token && status != 429 => Error::Unauthorized {
            operation,
            status,
            error: parsed.error,
            error_description: parsed.error_description,
        },
        401 | 403 => Error::Unauthorized {
            operation,
            status,
            error: parsed.error,
            error_description: parsed.error_description,
        },
        429 => Error::Unavailable {
            operation,
            status: Some(status),
            retry_after,
            message: parsed
                .summary()
                .unwrap_or_else(|| "too many requests".to_owned()),
        },
        400..=499 => Error::Rejected {
            operation,
            status,
            error: parsed.error,
            error_description: parsed.error_description,
        },
        500..=599 if !operation.is_idempotent() => Error::Ambiguous {
            operation,
            message: format!(
                "HTTP {status}{}; Collibra may or may not have registered the client",
                parsed
                    .summary()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            ),
        },
        500..=599 => Error::Unavailable {
            operation,
            status: Some(status),
            retry_after,
            message: parsed
                .summary()
                .unwrap_or_else(|| format!("HTTP {status} without a body")),
        },
        _ => Error::InvalidResponse {
            operation,
            message: format!("unexpected HTTP status {status}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_display_carries_collibra_error_and_description() {
        let body = br#"{"error":"invalid_client_metadata","error_description":"Client name 'x' already exists"}"#;
        let err = from_status(
            Operation::Register,
            400,
            Some("application/json"),
            body,
            None,
        );
        assert_eq!(
            err,
            Error::Rejected {
                operation: Operation::Register,
                status: 400,
                error: Some("invalid_client_metadata".into()),
                error_description: Some("Client name 'x' already exists".into()),
            }
        );
        let text = err.to_string();
        assert!(text.contains("invalid_client_metadata"), "{text}");
        assert!(text.contains("Client name 'x' already exists"), "{text}");
        assert!(text.contains("HTTP 400"), "{text}");
        assert_eq!(err.metric_label(), "rejected");
        assert!(!err.is_retryable());
    }

    #[test]
    fn conflict_is_rejected() {
        let err = from_status(Operation::Register, 409, None, b"", None);
        assert!(
            matches!(err, Error::Rejected { status: 409, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn collibra_rest_error_fields_are_understood() {
        let body = br#"{"statusCode":400,"errorCode":"nameTaken","userMessage":"Name in use"}"#;
        let parsed = ErrorBody::parse(400, Some("application/json"), body);
        assert_eq!(parsed.error.as_deref(), Some("nameTaken"));
        assert_eq!(parsed.error_description.as_deref(), Some("Name in use"));
    }

    #[test]
    fn not_found_only_for_single_client_operations() {
        for op in [Operation::Get, Operation::Update, Operation::Delete] {
            assert_eq!(
                from_status(op, 404, None, b"", None),
                Error::NotFound { operation: op }
            );
        }
        // A 404 on the collection means a wrong API path, not a missing client.
        assert!(matches!(
            from_status(Operation::List, 404, None, b"", None),
            Error::Rejected { status: 404, .. }
        ));
    }

    #[test]
    fn unsupported_for_405_and_501() {
        for status in [405, 501] {
            assert_eq!(
                from_status(Operation::Update, status, None, b"", None),
                Error::Unsupported {
                    operation: Operation::Update,
                    status
                }
            );
        }
        assert!(!is_retryable_status(Operation::Delete, 501));
    }

    #[test]
    fn auth_failures() {
        for status in [401, 403] {
            let err = from_status(Operation::List, status, None, b"", None);
            assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
        }
        let body = br#"{"error":"invalid_client","error_description":"Bad credentials"}"#;
        let err = from_status(Operation::Token, 400, Some("application/json"), body, None);
        assert!(
            matches!(
                err,
                Error::Unauthorized {
                    operation: Operation::Token,
                    status: 400,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("Bad credentials"));
    }

    #[test]
    fn server_errors_are_unavailable_except_for_register() {
        let ra = Some(Duration::from_secs(7));
        let err = from_status(Operation::List, 503, None, b"", ra);
        assert!(matches!(
            err,
            Error::Unavailable {
                status: Some(503),
                ..
            }
        ));
        assert_eq!(err.retry_after(), ra);
        assert!(err.is_retryable());

        let err = from_status(Operation::Register, 500, None, b"", None);
        assert!(matches!(err, Error::Ambiguous { .. }), "{err:?}");
        assert!(err.is_retryable());

        let err = from_status(Operation::Register, 429, None, b"", ra);
        assert!(matches!(
            err,
            Error::Unavailable {
                status: Some(429),
                ..
            }
        ));
    }

    #[test]
    fn retryable_statuses() {
        for op in [
            Operation::List,
            Operation::Get,
            Operation::Token,
            Operation::Delete,
        ] {
            for s in [429, 500, 502, 503, 504] {
                assert!(is_retryable_status(op, s), "{op} {s}");
            }
            for s in [200, 400, 401, 404, 405, 501] {
                assert!(!is_retryable_status(op, s), "{op} {s}");
            }
        }
        assert!(is_retryable_status(Operation::Register, 429));
        for s in [500, 502, 503, 504] {
            assert!(!is_retryable_status(Operation::Register, s));
        }
    }

    #[test]
    fn html_body_is_summarised_without_markup() {
        let mut body = String::from(
            "<html><head><title>502 Bad Gateway</title><style>body{color:red}</style>\
             <script>var x = 1;</script></head>\n<body>\n<h1>Bad   Gateway</h1>",
        );
        body.push_str(&"<p>filler text</p>".repeat(100));
        body.push_str("</body></html>");
        let err = from_status(
            Operation::List,
            502,
            Some("text/html; charset=utf-8"),
            body.as_bytes(),
            None,
        );
        let Error::Unavailable { message, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(
            message.starts_with(
                "HTTP 502 with a non-JSON body (text/html): 502 Bad Gateway Bad Gateway filler"
            ),
            "{message}"
        );
        assert!(!message.contains('<'), "{message}");
        assert!(!message.contains("color:red"), "{message}");
        assert!(!message.contains("var x"), "{message}");
        // 200 characters of excerpt plus the prefix and an ellipsis.
        assert!(message.chars().count() < 260, "{}", message.len());
        assert!(message.ends_with('…'));
    }

    #[test]
    fn excerpt_truncates_on_char_boundaries() {
        let text = "é".repeat(500);
        let out = excerpt(text.as_bytes());
        assert_eq!(out.chars().count(), EXCERPT_CHARS + 1);
    }

    #[test]
    fn bodies_naming_credentials_are_described_not_quoted() {
        let relayed = br#"{"client_id":"urn:x","client_name":"n","client_secret":"s3cr3t-value"}"#;
        let m = non_json_summary(502, Some("application/json"), relayed).unwrap_or_default();
        assert!(m.contains("JSON body without error fields"), "{m}");
        assert!(!m.contains("s3cr3t-value"), "{m}");
        let truncated = br#"{"access_token":"tok-value-123"#;
        let m = non_json_summary(500, None, truncated).unwrap_or_default();
        assert!(
            m.contains("non-JSON") && !m.contains("tok-value-123"),
            "{m}"
        );
    }

    #[test]
    fn empty_body_gives_no_excerpt() {
        assert_eq!(non_json_summary(500, Some("text/plain"), b"  \n "), None);
    }

    #[test]
    fn redirect_is_invalid_response() {
        let err = from_status(Operation::List, 302, None, b"", None);
        assert!(matches!(err, Error::InvalidResponse { .. }));
        assert!(err.to_string().contains("redirect"));
    }
}

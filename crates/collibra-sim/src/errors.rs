//! The `{"error", "error_description"}` bodies shared by the client
//! management API (RFC 7591 style) and the token endpoint (RFC 6749 5.2).

use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer: status, error code, description and extra headers.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// Kept as a list (not a HeaderMap) to keep `Result<_, ApiError>` small.
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            error,
            description: description.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header; appends, so a header may be given more than once
    /// (e.g. one `WWW-Authenticate` challenge per scheme).
    pub(crate) fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub(crate) fn invalid_metadata(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            description,
        )
    }

    pub(crate) fn not_found(description: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", description)
    }

    #[cfg(test)]
    pub(crate) fn error(&self) -> &'static str {
        self.error
    }

    #[cfg(test)]
    pub(crate) fn description(&self) -> &str {
        &self.description
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({
            "error": self.error,
            "error_description": self.description,
        }));
        let mut response = (self.status, body).into_response();
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

/// The error code a simulated answer with this status carries.
pub(crate) fn error_code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        429 => "too_many_requests",
        500..=599 => "server_error",
        _ => "simulated_error",
    }
}

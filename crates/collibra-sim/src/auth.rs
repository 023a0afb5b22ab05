//! Who may call the `/clients` routes: the admin user (HTTP Basic), a static
//! admin bearer token, or a token issued to the admin OAuth client.

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::errors::ApiError;
use crate::state::{SimState, TokenOwner, constant_time_eq};

const REALM: &str = "Collibra";

/// Succeeds when the request carries admin credentials; otherwise the 401
/// or 403 to answer with.
pub(crate) fn require_admin(state: &SimState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(unauthorized("admin credentials are required"));
    };
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let config = &state.config;
        match decode_basic(credentials) {
            Some((user, password))
                if user == config.admin_username
                    && constant_time_eq(password.as_bytes(), config.admin_password.as_bytes()) =>
            {
                Ok(())
            }
            _ => Err(unauthorized("the user name or password is wrong")),
        }
    } else if scheme.eq_ignore_ascii_case("bearer") {
        let is_static = state
            .config
            .admin_bearer_tokens
            .iter()
            .any(|t| constant_time_eq(t.as_bytes(), credentials.as_bytes()));
        if is_static {
            return Ok(());
        }
        match state.token_owner(credentials) {
            Some(TokenOwner::Admin) => Ok(()),
            Some(TokenOwner::Client(client_id)) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("client '{client_id}' may not manage OAuth clients"),
            )
            .with_header(
                header::WWW_AUTHENTICATE,
                &format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\""),
            )),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the access token is unknown, expired or revoked",
            )
            .with_header(
                header::WWW_AUTHENTICATE,
                &format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""),
            )),
        }
    } else {
        Err(unauthorized("unsupported authorization scheme"))
    }
}

fn unauthorized(description: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", description)
        .with_header(
            header::WWW_AUTHENTICATE,
            &format!("Basic realm=\"{REALM}\""),
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            &format!("Bearer realm=\"{REALM}\""),
        )
}

/// Splits HTTP Basic credentials (RFC 7617) into user and password; no
/// further decoding, unlike client authentication at the token endpoint.
pub(crate) fn decode_basic(credentials: &str) -> Option<(String, String)> {
    let bytes = STANDARD.decode(credentials.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

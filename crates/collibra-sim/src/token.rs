//! The OAuth 2.0 token endpoint: the client credentials grant (Collibra's
//! integration applications) and the authorization code grant (user
//! applications, redeeming a code from [`crate::authorize`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use percent_encoding::percent_decode_str;
use serde_json::json;

use crate::auth::decode_basic;
use crate::errors::ApiError;
use crate::model::AUTHORIZATION_CODE;
use crate::state::{SimState, TokenOwner, ttl_secs};

/// Where the token endpoint lives: at the root, not under the api path.
pub(crate) const TOKEN_PATH: &str = "/rest/oauth/v2/token";

/// The token endpoint route.
pub(crate) fn router() -> Router<Arc<SimState>> {
    Router::new().route(TOKEN_PATH, post(token))
}

/// `POST /rest/oauth/v2/token`: validates the request (RFC 6749 4.4 and 5.2),
/// authenticates the client and issues a bearer token.
async fn token(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(no_store(ApiError::invalid_request(
            "the request body must be application/x-www-form-urlencoded",
        )));
    }
    let params = parse_form(&body).map_err(no_store)?;
    let Some(grant_type) = params.get("grant_type") else {
        return Err(no_store(ApiError::invalid_request(
            "grant_type is required",
        )));
    };

    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(client_basic_credentials(value).ok_or_else(|| {
            invalid_client("the Authorization header does not hold valid client credentials")
        })?),
    };
    let (method, (client_id, secret)) = match (basic, params.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(no_store(ApiError::invalid_request(
                "use only one client authentication method",
            )));
        }
        (Some((id, secret)), None) => {
            if params
                .get("client_id")
                .is_some_and(|form_id| *form_id != id)
            {
                return Err(no_store(ApiError::invalid_request(
                    "client_id in the body differs from the authenticated client",
                )));
            }
            ("client_secret_basic", (id, secret))
        }
        (None, Some(secret)) => {
            let Some(id) = params.get("client_id") else {
                return Err(no_store(ApiError::invalid_request(
                    "client_id is required with client_secret",
                )));
            };
            ("client_secret_post", (id.clone(), secret.clone()))
        }
        (None, None) => return Err(invalid_client("client authentication is required")),
    };
    let Some(owner) = state.authenticate_client(&client_id, &secret) else {
        return Err(invalid_client("client authentication failed"));
    };
    state.count_token_auth(method);
    match grant_type.as_str() {
        "client_credentials" => {}
        AUTHORIZATION_CODE => redeem_code(&state, &owner, &params).map_err(no_store)?,
        _ => {
            return Err(no_store(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!(
                    "grant type '{grant_type}' is not supported; use client_credentials or authorization_code"
                ),
            )));
        }
    }

    let access_token = state.issue_token(owner);
    tracing::info!(client_id = %client_id, "issued access token");
    let body = Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ttl_secs(state.config.token_ttl),
    }));
    Ok((StatusCode::OK, no_store_headers(), body).into_response())
}

/// RFC 6749 4.1.3: the code was issued to this client, is used once and in
/// time, and `redirect_uri` repeats the authorization request's.
fn redeem_code(
    state: &SimState,
    owner: &TokenOwner,
    params: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let invalid_grant =
        |description: &str| ApiError::new(StatusCode::BAD_REQUEST, "invalid_grant", description);
    let Some(code) = params.get("code") else {
        return Err(ApiError::invalid_request("code is required"));
    };
    let TokenOwner::Client(client_id) = owner else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "the admin client is not allowed the authorization_code grant",
        ));
    };
    let issued = state.redeem_code(code, client_id).map_err(|_| {
        invalid_grant(
            "the authorization code is unknown, expired, already used, or was issued to another client",
        )
    })?;
    if let Some(expected) = &issued.redirect_uri
        && params.get("redirect_uri") != Some(expected)
    {
        return Err(invalid_grant(
            "redirect_uri does not match the one of the authorization request",
        ));
    }
    Ok(())
}

/// Parses a form body; RFC 6749 3.2: no parameter may appear twice.
fn parse_form(body: &[u8]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut params = BTreeMap::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        if params
            .insert(name.to_string(), value.into_owned())
            .is_some()
        {
            return Err(ApiError::invalid_request(format!(
                "parameter '{name}' is given more than once"
            )));
        }
    }
    Ok(params)
}

/// `client_secret_basic` (RFC 6749 2.3.1): id and secret are each
/// form-url-encoded before being joined with ':' and base64-encoded, which is
/// what lets an id that contains ':' (all of Collibra's do) survive.
fn client_basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let (id, secret) = decode_basic(credentials)?;
    Some((form_decode(&id)?, form_decode(&secret)?))
}

fn form_decode(s: &str) -> Option<String> {
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

fn invalid_client(description: &str) -> ApiError {
    no_store(
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
            .with_header(header::WWW_AUTHENTICATE, "Basic realm=\"Collibra\""),
    )
}

/// RFC 6749 5.1/5.2: token responses must not be cached, errors included.
fn no_store(error: ApiError) -> ApiError {
    error
        .with_header(header::CACHE_CONTROL, "no-store")
        .with_header(header::PRAGMA, "no-cache")
}

fn no_store_headers() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn basic_client_credentials_are_form_decoded() {
        let raw = format!(
            "Basic {}",
            STANDARD.encode("urn%3Asys%3Aenv%3Ax:se+cret%21")
        );
        let value = HeaderValue::from_str(&raw).expect("header");
        assert_eq!(
            client_basic_credentials(&value),
            Some(("urn:sys:env:x".to_owned(), "se cret!".to_owned()))
        );
    }

    #[test]
    fn repeated_form_parameters_are_refused() {
        assert!(parse_form(b"grant_type=a&grant_type=b").is_err());
        let params = parse_form(b"grant_type=client_credentials&client_id=a%3Ab").expect("parses");
        assert_eq!(params.get("client_id").map(String::as_str), Some("a:b"));
    }
}

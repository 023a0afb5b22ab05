//! The OAuth 2.0 authorization endpoint of user applications (RFC 6749
//! 4.1.1 and 4.1.2). There is no login page: the simulator takes every
//! request as signed in and consented to by its admin user, and answers at
//! once with a redirect that carries a one-time code. What it does check is
//! what a real authorization server must: the client, and that the
//! `redirect_uri` is one the client registered, character for character.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::errors::ApiError;
use crate::model::AUTHORIZATION_CODE;
use crate::state::SimState;

/// Where the authorization endpoint lives, beside the token endpoint.
pub(crate) const AUTHORIZE_PATH: &str = "/rest/oauth/v2/authorize";

/// The authorization endpoint route.
pub(crate) fn router() -> Router<Arc<SimState>> {
    Router::new().route(AUTHORIZE_PATH, get(authorize))
}

/// `GET /rest/oauth/v2/authorize?response_type=code&client_id=…&redirect_uri=…&state=…`.
///
/// Errors about the client or the redirect URI are answered here (400 with
/// a JSON body): RFC 6749 4.1.2.1 forbids sending the user to a redirect
/// URI that is not the client's. Other errors go back to the client's
/// redirect URI as `error` and `error_description` parameters.
async fn authorize(
    State(state): State<Arc<SimState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = parse_query(query.as_deref().unwrap_or(""))?;
    let Some(client_id) = params.get("client_id") else {
        return Err(ApiError::invalid_request("client_id is required"));
    };
    let Some(client) = state.client(client_id) else {
        return Err(ApiError::invalid_request(format!(
            "no client with id '{client_id}'"
        )));
    };
    // Exact match (RFC 6749 3.1.2.3 with registered URIs; no prefix or
    // wildcard matching). Without the parameter, only a client with exactly
    // one registered URI has an unambiguous place to go back to.
    let given = params.get("redirect_uri");
    let redirect_uri = match given {
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => uri.clone(),
        Some(uri) => {
            return Err(ApiError::invalid_request(format!(
                "redirect_uri '{uri}' is not registered for client '{client_id}'"
            )));
        }
        None => match client.redirect_uris.as_slice() {
            [only] => only.clone(),
            [] => {
                return Err(ApiError::invalid_request(format!(
                    "client '{client_id}' has no registered redirect URI"
                )));
            }
            _ => {
                return Err(ApiError::invalid_request(
                    "redirect_uri is required: the client registered more than one",
                ));
            }
        },
    };
    let state_param = params.get("state").map(String::as_str);
    let response_type = params.get("response_type").map(String::as_str);
    if response_type != Some("code") {
        let (error, description) = match response_type {
            None => ("invalid_request", "response_type is required"),
            Some(_) => (
                "unsupported_response_type",
                "only response_type=code is supported",
            ),
        };
        return Ok(redirect(
            &redirect_uri,
            &[("error", error), ("error_description", description)],
            state_param,
        ));
    }
    if !client.grant_types.iter().any(|g| g == AUTHORIZATION_CODE) {
        return Ok(redirect(
            &redirect_uri,
            &[
                ("error", "unauthorized_client"),
                (
                    "error_description",
                    "the client is not allowed the authorization_code grant",
                ),
            ],
            state_param,
        ));
    }
    let code = state.issue_code(&client.client_id, given.cloned());
    tracing::info!(client_id = %client.client_id, "issued authorization code");
    Ok(redirect(
        &redirect_uri,
        &[("code", code.as_str())],
        state_param,
    ))
}

/// A 302 to `uri` with `params` (and `state`, when the request had one)
/// added to its query, which it keeps (RFC 6749 3.1.2).
fn redirect(uri: &str, params: &[(&str, &str)], state: Option<&str>) -> Response {
    let Ok(mut location) = url::Url::parse(uri) else {
        // Registered URIs were parsed at registration; only a client
        // inserted behind the API's back can get here.
        return ApiError::invalid_request(format!("redirect URI '{uri}' cannot be parsed"))
            .into_response();
    };
    {
        let mut query = location.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
    }
    let Ok(value) = HeaderValue::from_str(location.as_str()) else {
        return ApiError::invalid_request("the redirect URI cannot be sent in a header")
            .into_response();
    };
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, value),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response()
}

/// RFC 6749 3.1: a parameter may not be given more than once.
fn parse_query(query: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let mut params = BTreeMap::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_the_registered_query_and_add_state() {
        let response = redirect(
            "https://app.example/cb?tenant=a",
            &[("code", "c1")],
            Some("x y"),
        );
        assert_eq!(response.status(), StatusCode::FOUND);
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok());
        assert_eq!(
            location,
            Some("https://app.example/cb?tenant=a&code=c1&state=x+y")
        );
    }

    #[test]
    fn repeated_query_parameters_are_refused() {
        assert!(parse_query("client_id=a&client_id=b").is_err());
        assert!(parse_query("").expect("empty").is_empty());
    }
}

//! The Collibra OAuth 2.0 Client Management routes under `{api}/clients`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::auth::require_admin;
use crate::errors::ApiError;
use crate::model::{
    ClientInformation, ClientRegistration, ClientSummary, parse_registration, parse_update,
};
use crate::state::{DuplicateName, SimState, StoreError};

/// Routes of the client management API, rooted at the configured api path.
pub(crate) fn router(api_path: &str) -> Router<Arc<SimState>> {
    Router::new()
        .route(&format!("{api_path}/clients"), get(list).post(register))
        .route(
            &format!("{api_path}/clients/{{client_id}}"),
            get(get_client).put(update).delete(delete),
        )
}

/// The operation name of a request to a Collibra route, `None` for anything
/// else (inspection routes, unknown paths). Decided on the raw path, before
/// routing, so faults can be injected ahead of the handlers.
pub(crate) fn operation(method: &Method, path: &str, api_path: &str) -> Option<&'static str> {
    if path == crate::token::TOKEN_PATH {
        return (method == Method::POST).then_some("token");
    }
    if path == crate::authorize::AUTHORIZE_PATH {
        return (method == Method::GET).then_some("authorize");
    }
    let rest = path.strip_prefix(api_path)?;
    if rest == "/clients" {
        return match *method {
            Method::GET => Some("list"),
            Method::POST => Some("register"),
            _ => None,
        };
    }
    let id = rest.strip_prefix("/clients/")?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    match *method {
        Method::GET => Some("get"),
        Method::PUT => Some("update"),
        Method::DELETE => Some("delete"),
        _ => None,
    }
}

type ApiResult = Result<Response, ApiError>;

/// `GET /clients` (findClients): every registration, no paging, no secrets.
async fn list(State(state): State<Arc<SimState>>, headers: HeaderMap) -> ApiResult {
    require_admin(&state, &headers)?;
    let clients = state.clients();
    let registrations: Vec<ClientSummary<'_>> = clients.iter().map(ClientSummary::from).collect();
    Ok(Json(json!({ "registrations": registrations })).into_response())
}

/// `POST /clients` (registerClient): the only answer that carries the secret.
async fn register(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    require_admin(&state, &headers)?;
    let meta = parse_registration(&body, state.redirect_uris())?;
    let record = state
        .register(meta)
        .map_err(|DuplicateName(name)| duplicate(&state, &name))?;
    state.announce_registration(&record);
    tracing::info!(client_id = %record.client_id, client_name = %record.client_name, "registered client");
    Ok((
        StatusCode::CREATED,
        no_store(),
        Json(ClientRegistration::from(&record)),
    )
        .into_response())
}

/// `GET /clients/{client_id}` (getClient).
async fn get_client(
    State(state): State<Arc<SimState>>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    require_admin(&state, &headers)?;
    let record = state
        .client(&client_id)
        .ok_or_else(|| not_found(&client_id))?;
    Ok(Json(ClientInformation::from(&record)).into_response())
}

/// `PUT /clients/{client_id}`: assumed (RFC 7592 style), may be switched off.
async fn update(
    State(state): State<Arc<SimState>>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    require_admin(&state, &headers)?;
    if !state.put_enabled() {
        return Err(method_not_allowed(&state, "PUT"));
    }
    let current = state
        .client(&client_id)
        .ok_or_else(|| not_found(&client_id))?;
    let meta = parse_update(&body, &current, state.redirect_uris())?;
    let record = state.update(&client_id, meta).map_err(|e| match e {
        StoreError::NotFound => not_found(&client_id),
        StoreError::DuplicateName(name) => duplicate(&state, &name),
    })?;
    tracing::info!(client_id = %record.client_id, client_name = %record.client_name, "updated client");
    Ok(Json(ClientInformation::from(&record)).into_response())
}

/// `DELETE /clients/{client_id}`: assumed (RFC 7592 style), may be switched off.
async fn delete(
    State(state): State<Arc<SimState>>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    require_admin(&state, &headers)?;
    if !state.delete_enabled() {
        return Err(method_not_allowed(&state, "DELETE"));
    }
    if !state.remove_client(&client_id) {
        return Err(not_found(&client_id));
    }
    tracing::info!(client_id = %client_id, "deleted client");
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn not_found(client_id: &str) -> ApiError {
    ApiError::not_found(format!("no client with id '{client_id}'"))
}

/// Names are unique; the status is configurable because deployments differ.
pub(crate) fn duplicate(state: &SimState, name: &str) -> ApiError {
    let status =
        StatusCode::from_u16(state.config.duplicate_status).unwrap_or(StatusCode::BAD_REQUEST);
    ApiError::new(
        status,
        "invalid_client_metadata",
        format!("A client with name '{name}' already exists"),
    )
}

/// A 405 that names the methods still offered on `/clients/{id}`.
fn method_not_allowed(state: &SimState, method: &str) -> ApiError {
    let mut allow = vec!["GET"];
    if state.put_enabled() {
        allow.push("PUT");
    }
    if state.delete_enabled() {
        allow.push("DELETE");
    }
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not supported on /clients/{{client_id}} by this server"),
    )
    .with_header(header::ALLOW, &allow.join(", "))
}

/// RFC 7591 3.2.1: a response carrying a secret must not be cached.
fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_from_method_and_path() {
        let api = "/rest/auth/v1";
        assert_eq!(
            operation(&Method::GET, "/rest/auth/v1/clients", api),
            Some("list")
        );
        assert_eq!(
            operation(&Method::POST, "/rest/auth/v1/clients", api),
            Some("register")
        );
        assert_eq!(
            operation(&Method::GET, "/rest/auth/v1/clients/urn%3Asys%3Ax", api),
            Some("get")
        );
        assert_eq!(
            operation(&Method::PUT, "/rest/auth/v1/clients/a:b", api),
            Some("update")
        );
        assert_eq!(
            operation(&Method::DELETE, "/rest/auth/v1/clients/a", api),
            Some("delete")
        );
        assert_eq!(
            operation(&Method::POST, "/rest/oauth/v2/token", api),
            Some("token")
        );
        assert_eq!(
            operation(&Method::GET, "/rest/oauth/v2/authorize", api),
            Some("authorize")
        );
        assert_eq!(operation(&Method::GET, "/_sim/stats", api), None);
        assert_eq!(
            operation(&Method::GET, "/rest/auth/v1/clients/a/b", api),
            None
        );
        assert_eq!(
            operation(&Method::PATCH, "/rest/auth/v1/clients", api),
            None
        );
    }
}

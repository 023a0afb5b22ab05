//! Inspection and steering routes under `/_sim`: no auth, never faulted, not
//! counted in the stats. They are a test tool and show secrets.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::errors::ApiError;
use crate::faults::{Faults, ScriptedFault, valid_status};
use crate::model::{CLIENT_CREDENTIALS, ClientMetadata, RedirectUris};
use crate::state::{DuplicateName, SimState};
use crate::{OPERATIONS, ScriptAction};

/// The `/_sim` routes.
pub(crate) fn router() -> Router<Arc<SimState>> {
    Router::new()
        .route("/_sim/stats", get(stats))
        .route("/_sim/reset-stats", post(reset_stats))
        .route("/_sim/clients", get(clients).post(insert_client))
        .route("/_sim/clients/{client_id}", delete(remove_client))
        .route("/_sim/faults", get(faults).put(set_faults))
        .route(
            "/_sim/script",
            get(pending_scripts).post(script).delete(clear_scripts),
        )
        .route(
            "/_sim/capabilities",
            get(capabilities).put(set_capabilities),
        )
        .route("/_sim/revoke-tokens", post(revoke_tokens))
}

type SimResult = Result<Response, ApiError>;

async fn stats(State(state): State<Arc<SimState>>) -> Response {
    Json(state.stats()).into_response()
}

async fn reset_stats(State(state): State<Arc<SimState>>) -> StatusCode {
    state.reset_stats();
    StatusCode::NO_CONTENT
}

/// Every client as a JSON array, secrets included.
async fn clients(State(state): State<Arc<SimState>>) -> Response {
    Json(state.clients()).into_response()
}

#[derive(Deserialize)]
struct InsertClient {
    client_name: String,
    #[serde(default)]
    grant_types: Vec<String>,
    #[serde(default)]
    software_id: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
}

/// Registers a client without going through the API (no faults, no stats,
/// any grant type strings, redirect URIs unchecked); 409 if the name is taken.
async fn insert_client(State(state): State<Arc<SimState>>, body: Bytes) -> SimResult {
    let request: InsertClient = parse_json(&body)?;
    if request.client_name.trim().is_empty() {
        return Err(ApiError::invalid_request("client_name must not be empty"));
    }
    let grant_types = if request.grant_types.is_empty() {
        vec![CLIENT_CREDENTIALS.to_owned()]
    } else {
        request.grant_types
    };
    let meta = ClientMetadata {
        client_name: request.client_name,
        grant_types,
        software_id: request.software_id,
        redirect_uris: request.redirect_uris,
    };
    match state.register(meta) {
        Ok(record) => Ok((StatusCode::CREATED, Json(record)).into_response()),
        Err(DuplicateName(name)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("A client with name '{name}' already exists"),
        )),
    }
}

async fn remove_client(
    State(state): State<Arc<SimState>>,
    Path(client_id): Path<String>,
) -> SimResult {
    if state.remove_client(&client_id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "no client with id '{client_id}'"
        )))
    }
}

async fn faults(State(state): State<Arc<SimState>>) -> Response {
    Json(state.faults()).into_response()
}

/// Replaces the faults in force; fields left out are off.
async fn set_faults(State(state): State<Arc<SimState>>, body: Bytes) -> SimResult {
    let faults: Faults = parse_json(&body)?;
    faults.validate().map_err(ApiError::invalid_request)?;
    state.set_faults(faults.clone());
    Ok(Json(faults).into_response())
}

async fn pending_scripts(State(state): State<Arc<SimState>>) -> Response {
    Json(state.pending_scripts()).into_response()
}

/// Queues one scripted fault; answers with the number now pending.
async fn script(State(state): State<Arc<SimState>>, body: Bytes) -> SimResult {
    let fault: ScriptedFault = parse_json(&body)?;
    if let Some(op) = fault.operation.as_deref()
        && !(OPERATIONS.contains(&op) || op == "any" || op == "*")
    {
        return Err(ApiError::invalid_request(format!(
            "unknown operation '{op}'; known: {}, any",
            OPERATIONS.join(", ")
        )));
    }
    if let ScriptAction::Status { status, .. } | ScriptAction::Body { status, .. } = fault.action
        && !valid_status(status)
    {
        return Err(ApiError::invalid_request(format!(
            "status {status} cannot be used as a final answer"
        )));
    }
    state.script(fault);
    let pending = state.pending_scripts().len();
    Ok((StatusCode::CREATED, Json(json!({ "pending": pending }))).into_response())
}

async fn clear_scripts(State(state): State<Arc<SimState>>) -> StatusCode {
    state.clear_scripts();
    StatusCode::NO_CONTENT
}

#[derive(Serialize, Deserialize, Default)]
struct Capabilities {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    put: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delete: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redirect_uris: Option<RedirectUris>,
}

async fn capabilities(State(state): State<Arc<SimState>>) -> Response {
    current_capabilities(&state)
}

/// Switches PUT and DELETE on or off, and sets how `redirect_uris` is
/// treated; a field left out keeps its setting.
async fn set_capabilities(State(state): State<Arc<SimState>>, body: Bytes) -> SimResult {
    let wanted: Capabilities = parse_json(&body)?;
    if let Some(on) = wanted.put {
        state.set_put_enabled(on);
    }
    if let Some(on) = wanted.delete {
        state.set_delete_enabled(on);
    }
    if let Some(mode) = wanted.redirect_uris {
        state.set_redirect_uris(mode);
    }
    Ok(current_capabilities(&state))
}

fn current_capabilities(state: &SimState) -> Response {
    Json(Capabilities {
        put: Some(state.put_enabled()),
        delete: Some(state.delete_enabled()),
        redirect_uris: Some(state.redirect_uris()),
    })
    .into_response()
}

async fn revoke_tokens(State(state): State<Arc<SimState>>) -> StatusCode {
    state.revoke_tokens();
    StatusCode::NO_CONTENT
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))
}

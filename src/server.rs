//! The HTTP endpoints of the process: `/metrics`, `/healthz` (alive) and
//! `/readyz` (the controller's caches are synced and it is reconciling).

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use tokio::net::TcpListener;

use crate::{leader::Role, metrics::Metrics};

/// What the endpoints report on.
#[derive(Clone)]
pub struct Health {
    /// Metrics to render.
    pub metrics: Arc<Metrics>,
    /// What this replica is doing.
    pub role: Role,
    /// Whether leader election is on (then `/readyz` says leader or standby).
    pub elected: bool,
}

async fn metrics(State(h): State<Health>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics.render(),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(h): State<Health>) -> impl IntoResponse {
    match h.role.readiness(h.elected) {
        Some(what) => (StatusCode::OK, what),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: caches not synced",
        ),
    }
}

/// The router, apart from the listener so tests can drive it.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
}

/// Binds `addr` and serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, router(health))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

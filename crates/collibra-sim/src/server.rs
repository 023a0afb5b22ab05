//! The accept loop. Hyper serves each connection directly (rather than
//! `axum::serve`) so that a request can end with its connection closed and
//! no answer: the request service returns an error, and hyper then drops the
//! connection without writing anything. That is how drop faults are real.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::faults::{self, Decision};
use crate::state::SimState;
use crate::{api, authorize, inspect, token};

/// How long requests in flight may take to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Returned by the request service to make hyper close the connection.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

/// What every connection needs to serve requests.
#[derive(Clone)]
struct App {
    state: Arc<SimState>,
    router: Router,
}

/// Serves until `stop` turns true, then lets open connections finish (up to
/// [`SHUTDOWN_GRACE`]) and returns.
pub(crate) async fn run(
    listener: TcpListener,
    state: Arc<SimState>,
    mut stop: watch::Receiver<bool>,
) {
    let router = api::router(&state.config.api_path)
        .merge(token::router())
        .merge(authorize::router())
        .merge(inspect::router())
        .with_state(Arc::clone(&state));
    let app = App { state, router };
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, app.clone(), stop.clone()));
                }
                Err(e) => {
                    // Usually out of file descriptors; pause rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections so the set does not grow forever.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            "aborting {} connections still open after the grace period",
            connections.len()
        );
        connections.shutdown().await;
    }
}

/// Resolves once shutdown has been asked for (at once if it already was).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send; drop it right here. An error
    // means the Simulator is gone, which is a reason to stop as well.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

async fn serve_connection(stream: TcpStream, app: App, mut stop: watch::Receiver<bool>) {
    // Answers are small; do not let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| handle(app.clone(), request));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopped(&mut stop) => {
            // Finish the request in flight, if any, then close.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection ended: {e}");
    }
}

/// One request: name its operation, count it, apply faults, route it.
async fn handle(app: App, request: Request<Incoming>) -> Result<Response<Body>, DropConnection> {
    let started = Instant::now();
    let method = request.method().clone();
    // The path only: a query string could carry anything, secrets included.
    let path = request.uri().path().to_owned();
    let state = &app.state;
    let Some(op) = api::operation(&method, &path, &state.config.api_path) else {
        let response = route(&app.router, request).await;
        tracing::debug!(%method, %path, status = response.status().as_u16(), "request");
        return Ok(response);
    };
    state.count_request(op);

    let (response, drop_after) = match faults::decide(state, op).await {
        Decision::Drop => {
            return dropped(state, op, &method, &path, started);
        }
        Decision::Respond(response) => (response, false),
        Decision::Proceed => (route(&app.router, request).await, false),
        Decision::ProceedThenDrop => (route(&app.router, request).await, true),
    };

    if op == "register" && response.status() == StatusCode::CREATED {
        // The client is committed already; holding the 201 back opens the
        // window in which a caller that dies loses the only copy of the secret.
        let hold = state.faults().register_response_delay_ms;
        if hold > 0 {
            state.count_fault("register_delay");
            tokio::time::sleep(Duration::from_millis(hold)).await;
        }
    }
    if drop_after {
        return dropped(state, op, &method, &path, started);
    }
    let status = response.status().as_u16();
    state.count_response(op, &status.to_string());
    tracing::info!(
        %method,
        %path,
        %op,
        status,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    Ok(response)
}

fn dropped(
    state: &SimState,
    op: &str,
    method: &axum::http::Method,
    path: &str,
    started: Instant,
) -> Result<Response<Body>, DropConnection> {
    state.count_response(op, "dropped");
    tracing::info!(
        %method,
        %path,
        %op,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request: connection dropped"
    );
    Err(DropConnection)
}

async fn route(router: &Router, request: Request<Incoming>) -> Response<Body> {
    let result: Result<Response<Body>, Infallible> =
        router.clone().oneshot(request.map(Body::new)).await;
    let Ok(response) = result;
    response
}

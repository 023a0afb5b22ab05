//! In-memory simulator of Collibra's OAuth 2.0 Client Management API and
//! token endpoint, with fault injection.
//!
//! It follows `shared/collibra/API.md` and the published OpenAPI document:
//!
//! | route | operation name (for stats and scripted faults) |
//! |---|---|
//! | `GET {api}/clients` | `list` |
//! | `POST {api}/clients` | `register` |
//! | `GET {api}/clients/{client_id}` | `get` |
//! | `PUT {api}/clients/{client_id}` | `update` |
//! | `DELETE {api}/clients/{client_id}` | `delete` |
//! | `POST /rest/oauth/v2/token` | `token` |
//! | `GET /rest/oauth/v2/authorize` | `authorize` |
//!
//! `{api}` is [`SimConfig::api_path`]. The `/clients` routes need admin
//! credentials (HTTP Basic, a static bearer token, or a token issued to the
//! admin OAuth client). Faults ([`Faults`], [`ScriptedFault`]) apply to all
//! of the routes above.
//!
//! User applications (grant `authorization_code`) register `redirect_uris`
//! (RFC 7591; an assumed field, see [`RedirectUris`] for instances that do
//! not know it). The authorization endpoint signs the user in
//! automatically (there is no login page: every request is taken as the
//! admin user's consent) and redirects to the registered `redirect_uri`
//! with a one-time `code` and the `state` it was given; the token endpoint
//! exchanges that code (`grant_type=authorization_code`) for the client
//! that asked for it, authenticated as for client credentials.
//!
//! Inspection routes, for tests and people (no auth, never faulted, not
//! counted; they show secrets):
//!
//! | route | what |
//! |---|---|
//! | `GET /_sim/stats`, `POST /_sim/reset-stats` | [`Stats`] as JSON; zero them |
//! | `GET /_sim/clients` | JSON array of every [`ClientRecord`], secrets included |
//! | `POST /_sim/clients` | `{client_name, grant_types?, software_id?}`: insert behind the API's back; 201 with the record, 409 if the name is taken |
//! | `DELETE /_sim/clients/{client_id}` | remove behind the API's back; 204 or 404 |
//! | `GET`/`PUT /_sim/faults` | the [`Faults`] in force; replace them (partial JSON: the rest is off) |
//! | `GET`/`POST`/`DELETE /_sim/script` | pending [`ScriptedFault`]s; queue one; clear them |
//! | `GET`/`PUT /_sim/capabilities` | `{"put": bool, "delete": bool, "redirect_uris": "supported" \| "rejected" \| "ignored"}` |
//! | `POST /_sim/revoke-tokens` | invalidate every issued token |

#![warn(missing_docs)]

mod api;
mod auth;
mod authorize;
mod errors;
mod faults;
mod inspect;
mod model;
mod server;
mod state;
mod token;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use faults::{Faults, RateLimit, ScriptAction, ScriptedFault};
pub use model::ClientRecord;
pub use model::RedirectUris;
pub use state::Stats;

use state::SimState;

/// Operation names used in [`Stats`] and [`ScriptedFault::operation`].
pub const OPERATIONS: [&str; 7] = [
    "list",
    "register",
    "get",
    "update",
    "delete",
    "token",
    "authorize",
];

/// How a simulator instance behaves: paths, admin credentials, token lifetime
/// and which of the assumed operations (PUT, DELETE) it offers.
#[derive(Clone)]
pub struct SimConfig {
    /// Prefix of the client management routes, e.g. `/rest/auth/v1`.
    pub api_path: String,
    /// Client id of the OAuth client allowed to manage clients.
    pub admin_client_id: String,
    /// Secret of the admin OAuth client.
    pub admin_client_secret: String,
    /// User name accepted with HTTP Basic on the `/clients` routes.
    pub admin_username: String,
    /// Password accepted with HTTP Basic on the `/clients` routes.
    pub admin_password: String,
    /// Bearer tokens that are always accepted as admin (never expire, never revoked).
    pub admin_bearer_tokens: Vec<String>,
    /// Lifetime of tokens issued by the token endpoint.
    pub token_ttl: Duration,
    /// Whether `PUT {api}/clients/{id}` is offered (else 405).
    pub put_enabled: bool,
    /// Whether `DELETE {api}/clients/{id}` is offered (else 405).
    pub delete_enabled: bool,
    /// Status answered when a client name is taken (API.md: 400, some deployments 409).
    pub duplicate_status: u16,
    /// How `redirect_uris` in a registration or update is treated (an
    /// assumed field: real instances may reject or ignore it).
    pub redirect_uris: RedirectUris,
    /// Lifetime of an authorization code (RFC 6749 4.1.2: short, at most
    /// ten minutes recommended).
    pub code_ttl: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            api_path: "/rest/auth/v1".to_owned(),
            admin_client_id: "operator".to_owned(),
            admin_client_secret: "operator-secret".to_owned(),
            admin_username: "admin".to_owned(),
            admin_password: "admin".to_owned(),
            admin_bearer_tokens: vec!["static-admin-token".to_owned()],
            token_ttl: Duration::from_secs(300),
            put_enabled: true,
            delete_enabled: true,
            duplicate_status: 400,
            redirect_uris: RedirectUris::Supported,
            code_ttl: Duration::from_secs(60),
        }
    }
}

// Written by hand so that a config printed in a test failure or a log never
// shows a secret.
impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("api_path", &self.api_path)
            .field("admin_client_id", &self.admin_client_id)
            .field("admin_client_secret", &"<redacted>")
            .field("admin_username", &self.admin_username)
            .field("admin_password", &"<redacted>")
            .field(
                "admin_bearer_tokens",
                &format_args!("<{} redacted>", self.admin_bearer_tokens.len()),
            )
            .field("token_ttl", &self.token_ttl)
            .field("put_enabled", &self.put_enabled)
            .field("delete_enabled", &self.delete_enabled)
            .field("duplicate_status", &self.duplicate_status)
            .field("redirect_uris", &self.redirect_uris)
            .field("code_ttl", &self.code_ttl)
            .finish()
    }
}

/// A running simulator; dropping it stops the server (see [`Simulator::shutdown`]).
pub struct Simulator {
    addr: SocketAddr,
    handle: SimHandle,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Starts a simulator on an ephemeral port of 127.0.0.1.
    pub async fn start(config: SimConfig) -> anyhow::Result<Simulator> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts a simulator listening on `addr` (port 0 picks a free port).
    pub async fn start_on(addr: SocketAddr, config: SimConfig) -> anyhow::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SimState::new(config));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(server::run(listener, Arc::clone(&state), stopped));
        Ok(Simulator {
            addr,
            handle: SimHandle { state },
            stop,
            task: Some(task),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle to inspect and steer the simulator from the test.
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Stops accepting connections, lets requests in flight finish (for up to
    /// a few seconds) and waits for the server task to end.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::warn!("collibra-sim server task ended abnormally: {e}");
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        // Without this a simulator dropped at the end of a test would keep
        // serving (and holding its port) until the runtime goes away.
        self.stop.send_replace(true);
    }
}

/// Cheap, cloneable access to a simulator's state, for tests.
#[derive(Clone)]
pub struct SimHandle {
    state: Arc<SimState>,
}

impl SimHandle {
    /// All registered clients, secrets included, in registration order.
    pub fn clients(&self) -> Vec<ClientRecord> {
        self.state.clients()
    }

    /// Registers a client behind the API's back (no faults, no stats, no
    /// validation of grant types; none given means `client_credentials`).
    /// Names are unique: if `name` is taken, that client is returned unchanged.
    pub fn insert_client(&self, name: &str, grant_types: &[&str]) -> ClientRecord {
        self.state.insert_client(name, grant_types)
    }

    /// Removes a client (and its tokens); false if there was none with that id.
    pub fn remove_client(&self, client_id: &str) -> bool {
        self.state.remove_client(client_id)
    }

    /// Whether `client_id` is a registered client whose secret is `client_secret`.
    pub fn verify_credentials(&self, client_id: &str, client_secret: &str) -> bool {
        self.state.verify_registered(client_id, client_secret)
    }

    /// A copy of the request, response and fault counters.
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// Sets all counters back to zero.
    pub fn reset_stats(&self) {
        self.state.reset_stats()
    }

    /// Replaces the random faults in force (and refills the rate-limit bucket).
    pub fn set_faults(&self, faults: Faults) {
        self.state.set_faults(faults)
    }

    /// The random faults in force.
    pub fn faults(&self) -> Faults {
        self.state.faults()
    }

    /// Queues a one-shot fault.
    pub fn script(&self, fault: ScriptedFault) {
        self.state.script(fault)
    }

    /// Scripted faults not yet consumed, in the order they were queued.
    pub fn pending_scripts(&self) -> Vec<ScriptedFault> {
        self.state.pending_scripts()
    }

    /// Forgets all scripted faults not yet consumed.
    pub fn clear_scripts(&self) {
        self.state.clear_scripts()
    }

    /// Switches `PUT {api}/clients/{id}` on or off (off: 405).
    pub fn set_put_enabled(&self, on: bool) {
        self.state.set_put_enabled(on)
    }

    /// Switches `DELETE {api}/clients/{id}` on or off (off: 405).
    pub fn set_delete_enabled(&self, on: bool) {
        self.state.set_delete_enabled(on)
    }

    /// Decides how `redirect_uris` in registrations and updates is treated
    /// from now on (clients already stored keep theirs).
    pub fn set_redirect_uris(&self, mode: RedirectUris) {
        self.state.set_redirect_uris(mode)
    }

    /// Invalidates every token issued by the token endpoint (static admin
    /// tokens from the config stay valid).
    pub fn revoke_tokens(&self) {
        self.state.revoke_tokens()
    }

    /// Announces each client committed by `POST {api}/clients`, before its
    /// 201 is sent (useful to crash a caller inside that window).
    pub fn on_register(&self) -> broadcast::Receiver<ClientRecord> {
        self.state.subscribe_registrations()
    }
}

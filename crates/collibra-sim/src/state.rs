//! Everything the simulator remembers: clients, issued tokens, counters,
//! faults in force and the capability switches.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::SimConfig;
use crate::faults::{FaultState, Faults, ScriptedFault};
use crate::model::{CLIENT_CREDENTIALS, ClientMetadata, ClientRecord, RedirectUris};

/// Request, response and fault counters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests per operation (`list`, `register`, …), faulted ones included.
    pub requests: BTreeMap<String, u64>,
    /// Answers per operation and status, e.g. `"register 201"`; a connection
    /// closed instead of answering counts as `"<op> dropped"`.
    pub responses: BTreeMap<String, u64>,
    /// Injected faults by kind: `latency`, `5xx`, `429`, `dropped` (random
    /// faults), `register_delay` and `scripted` (one per scripted fault used).
    pub faults: BTreeMap<String, u64>,
    /// Token requests whose client authenticated, per client authentication
    /// method: `client_secret_basic` or `client_secret_post`.
    #[serde(default)]
    pub token_auth: BTreeMap<String, u64>,
}

impl Stats {
    /// Requests seen for one operation.
    pub fn requests_for(&self, op: &str) -> u64 {
        self.requests.get(op).copied().unwrap_or(0)
    }

    /// Answers given for one operation with one status (or `"dropped"`).
    pub fn responses_for(&self, op: &str, outcome: &str) -> u64 {
        self.responses
            .get(&format!("{op} {outcome}"))
            .copied()
            .unwrap_or(0)
    }

    /// Faults of one kind injected so far.
    pub fn faults_for(&self, kind: &str) -> u64 {
        self.faults.get(kind).copied().unwrap_or(0)
    }

    /// Token requests whose client authenticated with one method.
    pub fn token_auth_for(&self, method: &str) -> u64 {
        self.token_auth.get(method).copied().unwrap_or(0)
    }
}

/// Why a registration or an update could not be stored.
#[derive(Debug)]
pub(crate) enum StoreError {
    NotFound,
    DuplicateName(String),
}

/// A registration refused because the name is taken.
#[derive(Debug)]
pub(crate) struct DuplicateName(pub(crate) String);

/// Who an access token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenOwner {
    Admin,
    Client(String),
}

struct IssuedToken {
    owner: TokenOwner,
    expires_at: Instant,
}

/// An authorization code handed out by the authorization endpoint.
#[derive(Debug, Clone)]
pub(crate) struct IssuedCode {
    /// The client it was issued to; only that client may redeem it.
    pub(crate) client_id: String,
    /// The `redirect_uri` of the authorization request, if it had one: the
    /// token request must repeat it (RFC 6749 4.1.3).
    pub(crate) redirect_uri: Option<String>,
    expires_at: Instant,
}

/// Why a code cannot be redeemed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CodeError {
    /// Unknown, already used, or expired.
    Invalid,
    /// Issued to another client (it is burnt all the same).
    OtherClient,
}

#[derive(Default)]
struct Registry {
    /// In registration order, which is the order `GET /clients` lists them in.
    clients: Vec<ClientRecord>,
    tokens: HashMap<String, IssuedToken>,
    codes: HashMap<String, IssuedCode>,
}

impl Registry {
    fn position(&self, client_id: &str) -> Option<usize> {
        self.clients.iter().position(|c| c.client_id == client_id)
    }

    fn name_taken(&self, name: &str, except_id: Option<&str>) -> bool {
        self.clients
            .iter()
            .any(|c| c.client_name == name && Some(c.client_id.as_str()) != except_id)
    }

    fn remove(&mut self, client_id: &str) -> bool {
        let Some(i) = self.position(client_id) else {
            return false;
        };
        self.clients.remove(i);
        // A deleted client's tokens die with it.
        self.tokens
            .retain(|_, t| t.owner != TokenOwner::Client(client_id.to_owned()));
        self.codes.retain(|_, c| c.client_id != client_id);
        true
    }
}

/// Shared state behind every request handler and every [`crate::SimHandle`].
pub(crate) struct SimState {
    pub(crate) config: SimConfig,
    /// The "environment" part of client ids, fixed per simulator like a real instance's.
    env_id: String,
    registry: Mutex<Registry>,
    stats: Mutex<Stats>,
    faults: Mutex<FaultState>,
    put_enabled: AtomicBool,
    delete_enabled: AtomicBool,
    redirect_uris: Mutex<RedirectUris>,
    registrations: broadcast::Sender<ClientRecord>,
}

/// Locks a mutex; a panic elsewhere while it was held leaves plain data that
/// is still usable, so poisoning is ignored rather than spread.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SimState {
    pub(crate) fn new(mut config: SimConfig) -> Self {
        config.api_path = normalize_api_path(&config.api_path);
        let (registrations, _) = broadcast::channel(256);
        SimState {
            put_enabled: AtomicBool::new(config.put_enabled),
            delete_enabled: AtomicBool::new(config.delete_enabled),
            redirect_uris: Mutex::new(config.redirect_uris),
            config,
            env_id: uuid_like(),
            registry: Mutex::new(Registry::default()),
            stats: Mutex::new(Stats::default()),
            faults: Mutex::new(FaultState::default()),
            registrations,
        }
    }

    // ---- clients ----

    pub(crate) fn clients(&self) -> Vec<ClientRecord> {
        lock(&self.registry).clients.clone()
    }

    pub(crate) fn client(&self, client_id: &str) -> Option<ClientRecord> {
        let registry = lock(&self.registry);
        registry
            .position(client_id)
            .map(|i| registry.clients[i].clone())
    }

    /// Commits a new client; the name must be free.
    pub(crate) fn register(&self, meta: ClientMetadata) -> Result<ClientRecord, DuplicateName> {
        let mut registry = lock(&self.registry);
        if registry.name_taken(&meta.client_name, None) {
            return Err(DuplicateName(meta.client_name));
        }
        let record = self.new_record(&registry, meta);
        registry.clients.push(record.clone());
        Ok(record)
    }

    /// Replaces a client's writable metadata.
    pub(crate) fn update(
        &self,
        client_id: &str,
        meta: ClientMetadata,
    ) -> Result<ClientRecord, StoreError> {
        let mut registry = lock(&self.registry);
        let i = registry.position(client_id).ok_or(StoreError::NotFound)?;
        if registry.name_taken(&meta.client_name, Some(client_id)) {
            return Err(StoreError::DuplicateName(meta.client_name));
        }
        let record = &mut registry.clients[i];
        record.client_name = meta.client_name;
        record.grant_types = meta.grant_types;
        record.software_id = meta.software_id;
        record.redirect_uris = meta.redirect_uris;
        Ok(record.clone())
    }

    /// Behind-the-back insert for tests: no validation of grant types, and a
    /// taken name yields the client that has it.
    pub(crate) fn insert_client(&self, name: &str, grant_types: &[&str]) -> ClientRecord {
        let grant_types: Vec<String> = if grant_types.is_empty() {
            vec![CLIENT_CREDENTIALS.to_owned()]
        } else {
            grant_types.iter().map(|g| (*g).to_owned()).collect()
        };
        let meta = ClientMetadata {
            client_name: name.to_owned(),
            grant_types,
            software_id: None,
            redirect_uris: Vec::new(),
        };
        let mut registry = lock(&self.registry);
        if let Some(existing) = registry.clients.iter().find(|c| c.client_name == name) {
            return existing.clone();
        }
        let record = self.new_record(&registry, meta);
        registry.clients.push(record.clone());
        record
    }

    pub(crate) fn remove_client(&self, client_id: &str) -> bool {
        lock(&self.registry).remove(client_id)
    }

    pub(crate) fn verify_registered(&self, client_id: &str, secret: &str) -> bool {
        let registry = lock(&self.registry);
        registry.clients.iter().any(|c| {
            c.client_id == client_id
                && constant_time_eq(c.client_secret.as_bytes(), secret.as_bytes())
        })
    }

    fn new_record(&self, registry: &Registry, meta: ClientMetadata) -> ClientRecord {
        let mut client_id = self.new_client_id();
        while registry.position(&client_id).is_some() {
            client_id = self.new_client_id();
        }
        ClientRecord {
            client_id,
            client_name: meta.client_name,
            grant_types: meta.grant_types,
            software_id: meta.software_id,
            redirect_uris: meta.redirect_uris,
            client_id_issued_at: unix_now(),
            client_secret: random_token(30),
        }
    }

    /// Shaped like Collibra's: `urn:sys:env:<environment uuid>:i:<7 base36 chars>`.
    fn new_client_id(&self) -> String {
        const BASE36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut rng = rand::rng();
        let suffix: String = (0..7)
            .map(|_| char::from(BASE36[rng.random_range(0..BASE36.len())]))
            .collect();
        format!("urn:sys:env:{}:i:{suffix}", self.env_id)
    }

    // ---- registrations hook ----

    pub(crate) fn subscribe_registrations(&self) -> broadcast::Receiver<ClientRecord> {
        self.registrations.subscribe()
    }

    pub(crate) fn announce_registration(&self, record: &ClientRecord) {
        // No subscriber is the normal case; nothing to do then.
        let _ = self.registrations.send(record.clone());
    }

    // ---- tokens ----

    /// Who `client_id`/`secret` authenticate as at the token endpoint, if anyone.
    pub(crate) fn authenticate_client(&self, client_id: &str, secret: &str) -> Option<TokenOwner> {
        let config = &self.config;
        if client_id == config.admin_client_id
            && constant_time_eq(secret.as_bytes(), config.admin_client_secret.as_bytes())
        {
            return Some(TokenOwner::Admin);
        }
        self.verify_registered(client_id, secret)
            .then(|| TokenOwner::Client(client_id.to_owned()))
    }

    pub(crate) fn issue_token(&self, owner: TokenOwner) -> String {
        let token = random_token(32);
        let now = Instant::now();
        let mut registry = lock(&self.registry);
        // Forget expired tokens here so a long-running simulator does not grow.
        registry.tokens.retain(|_, t| t.expires_at > now);
        registry.tokens.insert(
            token.clone(),
            IssuedToken {
                owner,
                expires_at: now + self.config.token_ttl,
            },
        );
        token
    }

    /// The owner of an unexpired issued token.
    pub(crate) fn token_owner(&self, token: &str) -> Option<TokenOwner> {
        let registry = lock(&self.registry);
        registry
            .tokens
            .get(token)
            .filter(|t| t.expires_at > Instant::now())
            .map(|t| t.owner.clone())
    }

    pub(crate) fn revoke_tokens(&self) {
        lock(&self.registry).tokens.clear();
    }

    // ---- authorization codes ----

    /// A new one-time code for `client_id`, valid for the configured time.
    pub(crate) fn issue_code(&self, client_id: &str, redirect_uri: Option<String>) -> String {
        let code = random_token(24);
        let now = Instant::now();
        let mut registry = lock(&self.registry);
        registry.codes.retain(|_, c| c.expires_at > now);
        registry.codes.insert(
            code.clone(),
            IssuedCode {
                client_id: client_id.to_owned(),
                redirect_uri,
                expires_at: now + self.config.code_ttl,
            },
        );
        code
    }

    /// Takes a code for `client_id`: whatever the outcome it cannot be
    /// used again (RFC 6749 4.1.2: at most once).
    pub(crate) fn redeem_code(&self, code: &str, client_id: &str) -> Result<IssuedCode, CodeError> {
        let issued = lock(&self.registry)
            .codes
            .remove(code)
            .filter(|c| c.expires_at > Instant::now())
            .ok_or(CodeError::Invalid)?;
        if issued.client_id != client_id {
            return Err(CodeError::OtherClient);
        }
        Ok(issued)
    }

    // ---- capabilities ----

    pub(crate) fn put_enabled(&self) -> bool {
        self.put_enabled.load(Ordering::SeqCst)
    }

    pub(crate) fn delete_enabled(&self) -> bool {
        self.delete_enabled.load(Ordering::SeqCst)
    }

    pub(crate) fn set_put_enabled(&self, on: bool) {
        self.put_enabled.store(on, Ordering::SeqCst)
    }

    pub(crate) fn set_delete_enabled(&self, on: bool) {
        self.delete_enabled.store(on, Ordering::SeqCst)
    }

    pub(crate) fn redirect_uris(&self) -> RedirectUris {
        *lock(&self.redirect_uris)
    }

    pub(crate) fn set_redirect_uris(&self, mode: RedirectUris) {
        *lock(&self.redirect_uris) = mode;
    }

    // ---- faults ----

    pub(crate) fn fault_state(&self) -> MutexGuard<'_, FaultState> {
        lock(&self.faults)
    }

    pub(crate) fn faults(&self) -> Faults {
        self.fault_state().faults().clone()
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        self.fault_state().set_faults(faults)
    }

    pub(crate) fn script(&self, fault: ScriptedFault) {
        self.fault_state().push_script(fault)
    }

    pub(crate) fn pending_scripts(&self) -> Vec<ScriptedFault> {
        self.fault_state().pending_scripts()
    }

    pub(crate) fn clear_scripts(&self) {
        self.fault_state().clear_scripts()
    }

    // ---- stats ----

    pub(crate) fn stats(&self) -> Stats {
        lock(&self.stats).clone()
    }

    pub(crate) fn reset_stats(&self) {
        *lock(&self.stats) = Stats::default();
    }

    pub(crate) fn count_request(&self, op: &str) {
        *lock(&self.stats).requests.entry(op.to_owned()).or_default() += 1;
    }

    pub(crate) fn count_response(&self, op: &str, outcome: &str) {
        *lock(&self.stats)
            .responses
            .entry(format!("{op} {outcome}"))
            .or_default() += 1;
    }

    pub(crate) fn count_fault(&self, kind: &str) {
        *lock(&self.stats).faults.entry(kind.to_owned()).or_default() += 1;
    }

    pub(crate) fn count_token_auth(&self, method: &str) {
        *lock(&self.stats)
            .token_auth
            .entry(method.to_owned())
            .or_default() += 1;
    }
}

/// `/rest/auth/v1/` and `rest/auth/v1` both mean `/rest/auth/v1`; `/` or an
/// empty string put the routes at the root.
fn normalize_api_path(path: &str) -> String {
    let trimmed = path.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `bytes` random bytes as URL-safe base64 (4 characters per 3 bytes).
pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    URL_SAFE_NO_PAD.encode(buf)
}

fn uuid_like() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill(&mut b[..]);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Compares secrets without an early exit, so timing does not reveal a prefix.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How long until `ttl` runs out, in whole seconds rounded up (never 0 for a
/// positive ttl, so callers do not treat a fresh token as expired).
pub(crate) fn ttl_secs(ttl: Duration) -> u64 {
    ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_path_is_normalized() {
        assert_eq!(normalize_api_path("/rest/auth/v1"), "/rest/auth/v1");
        assert_eq!(normalize_api_path("rest/auth/v1/"), "/rest/auth/v1");
        assert_eq!(normalize_api_path("/"), "");
    }

    #[test]
    fn client_ids_look_like_collibra_ones() {
        let state = SimState::new(SimConfig::default());
        let id = state.new_client_id();
        let parts: Vec<&str> = id.split(':').collect();
        assert_eq!(parts.len(), 6, "{id}");
        assert_eq!(&parts[..3], ["urn", "sys", "env"]);
        assert_eq!(parts[3].len(), 36);
        assert_eq!(parts[4], "i");
        assert_eq!(parts[5].len(), 7);
        assert!(
            parts[5]
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        );
    }

    #[test]
    fn secrets_are_long_and_url_safe() {
        let s = random_token(30);
        assert_eq!(s.len(), 40);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn ttl_rounds_up() {
        assert_eq!(ttl_secs(Duration::from_millis(300)), 1);
        assert_eq!(ttl_secs(Duration::from_secs(300)), 300);
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

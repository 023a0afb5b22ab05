//! Hooks for metrics: which request ran, how it ended, and when a retry is
//! scheduled. The client stays free of any metrics library this way.

use std::fmt;
use std::time::Duration;

/// One kind of request the client makes; the label used in metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `GET {api}/clients`
    List,
    /// `POST {api}/clients`
    Register,
    /// `GET {api}/clients/{id}`
    Get,
    /// `PUT {api}/clients/{id}`
    Update,
    /// `DELETE {api}/clients/{id}`
    Delete,
    /// `POST {base}/rest/oauth/v2/token`
    Token,
}

impl Operation {
    /// Stable lower-case name: "list", "register", "get", "update", "delete", "token".
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::List => "list",
            Operation::Register => "register",
            Operation::Get => "get",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Token => "token",
        }
    }

    /// Whether repeating the request can never cause a second side effect.
    /// Only registration is not: a repeated POST could create a client twice or
    /// lose the secret of the first one.
    pub(crate) fn is_idempotent(self) -> bool {
        !matches!(self, Operation::Register)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Receives one call per HTTP attempt and per scheduled retry (e.g. to feed
/// Prometheus counters and histograms).
pub trait Observer: Send + Sync {
    /// An HTTP attempt ended; `outcome` is the status code ("201") or "error"
    /// when no response arrived.
    fn request_finished(&self, operation: Operation, outcome: &str, elapsed: Duration);
    /// A failed attempt will be repeated after `delay`.
    fn retry_scheduled(&self, operation: Operation, delay: Duration);
}

/// The observer used until [`crate::CollibraClient::with_observer`] sets one.
pub(crate) struct NoopObserver;

impl Observer for NoopObserver {
    fn request_finished(&self, _: Operation, _: &str, _: Duration) {}
    fn retry_scheduled(&self, _: Operation, _: Duration) {}
}

//! The Ready reasons of a connection and the status written for them
//! (kstatus conventions: Ready, Reconciling, Stalled).

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp};

use crate::{
    api::connection::{Capabilities, ConnectionStatus},
    controller::status::{KStatus, kstatus_conditions},
};

/// Why a connection is or is not Ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionReason {
    /// The instance answered a list with the configured credentials.
    Connected,
    /// Not probed yet.
    Connecting,
    /// The instance refused the credentials (401/403, or no token issued).
    AuthenticationFailed,
    /// No answer, a timeout, 5xx or 429 (retried with backoff).
    Unreachable,
    /// An answer the operator cannot use: 404 (wrong API path?), 4xx, not JSON.
    UnexpectedResponse,
    /// The credentials Secret, or a key in it, is missing or empty.
    CredentialsNotFound,
    /// The CA bundle's ConfigMap or Secret, or its key, is missing.
    CaBundleNotFound,
    /// A field cannot be used (the message names it).
    InvalidSpec,
    /// A namespaced connection's host is not on the admin's allow-list.
    HostNotAllowed,
    /// Being deleted, held until the OAuthClients that need it are gone.
    InUse,
}

impl ConnectionReason {
    /// Every reason.
    pub const ALL: [ConnectionReason; 10] = [
        ConnectionReason::Connected,
        ConnectionReason::Connecting,
        ConnectionReason::AuthenticationFailed,
        ConnectionReason::Unreachable,
        ConnectionReason::UnexpectedResponse,
        ConnectionReason::CredentialsNotFound,
        ConnectionReason::CaBundleNotFound,
        ConnectionReason::InvalidSpec,
        ConnectionReason::HostNotAllowed,
        ConnectionReason::InUse,
    ];

    /// The reason as written in conditions and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionReason::Connected => "Connected",
            ConnectionReason::Connecting => "Connecting",
            ConnectionReason::AuthenticationFailed => "AuthenticationFailed",
            ConnectionReason::Unreachable => "Unreachable",
            ConnectionReason::UnexpectedResponse => "UnexpectedResponse",
            ConnectionReason::CredentialsNotFound => "CredentialsNotFound",
            ConnectionReason::CaBundleNotFound => "CABundleNotFound",
            ConnectionReason::InvalidSpec => "InvalidSpec",
            ConnectionReason::HostNotAllowed => "HostNotAllowed",
            ConnectionReason::InUse => "InUse",
        }
    }

    /// Ready=True.
    pub fn is_ready(self) -> bool {
        self == ConnectionReason::Connected
    }

    /// Stalled: nothing changes until a person acts (fixes the spec, the
    /// Secret, the credentials in Collibra or the allow-list). The operator
    /// still re-checks, so a fix is noticed without any nudge.
    pub fn is_stalled(self) -> bool {
        matches!(
            self,
            ConnectionReason::AuthenticationFailed
                | ConnectionReason::CredentialsNotFound
                | ConnectionReason::CaBundleNotFound
                | ConnectionReason::InvalidSpec
                | ConnectionReason::HostNotAllowed
                | ConnectionReason::UnexpectedResponse
        )
    }

    /// Reconciling: the operator is working towards Ready by itself.
    pub fn is_reconciling(self) -> bool {
        matches!(
            self,
            ConnectionReason::Connecting | ConnectionReason::Unreachable | ConnectionReason::InUse
        )
    }

    /// The Event type of a transition to this reason.
    pub fn event_type(self) -> kube::runtime::events::EventType {
        if self.is_ready() {
            kube::runtime::events::EventType::Normal
        } else {
            kube::runtime::events::EventType::Warning
        }
    }
}

/// A connection's health as the operator last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Ready's reason.
    pub reason: ConnectionReason,
    /// What happened and what to do.
    pub message: String,
}

impl Health {
    /// Builds a health.
    pub fn new(reason: ConnectionReason, message: impl Into<String>) -> Health {
        Health {
            reason,
            message: message.into(),
        }
    }
}

/// Ready, Reconciling and Stalled for `health`.
pub fn conditions(
    previous: &[Condition],
    generation: Option<i64>,
    health: &Health,
    now: Timestamp,
) -> Vec<Condition> {
    let r = health.reason;
    kstatus_conditions(
        previous,
        generation,
        &KStatus {
            reason: r.as_str(),
            message: &health.message,
            ready: r.is_ready(),
            reconciling: r.is_reconciling(),
            stalled: r.is_stalled(),
        },
        now,
    )
}

/// Client counts from the last successful list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Clients an OAuthClient accounts for.
    pub managed: u64,
    /// Clients no OAuthClient accounts for.
    pub unmanaged: u64,
}

/// The whole status of a connection.
pub fn build(
    previous: Option<&ConnectionStatus>,
    generation: Option<i64>,
    health: &Health,
    capabilities: Capabilities,
    counts: Option<Counts>,
    now: Timestamp,
) -> ConnectionStatus {
    let previous_conditions = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    // Counts survive a failed probe: they describe the last list, and a
    // blip should not make the numbers flap.
    let counts = counts.or_else(|| {
        previous.and_then(|s| {
            Some(Counts {
                managed: s.managed_clients?,
                unmanaged: s.unmanaged_clients?,
            })
        })
    });
    ConnectionStatus {
        observed_generation: generation,
        conditions: conditions(previous_conditions, generation, health, now),
        capabilities: (capabilities != Capabilities::default()).then_some(capabilities),
        managed_clients: counts.map(|c| c.managed),
        unmanaged_clients: counts.map(|c| c.unmanaged),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn find<'a>(s: &'a ConnectionStatus, t: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition present")
    }

    #[test]
    fn every_reason_follows_kstatus() {
        let now = Timestamp::from_second(100).expect("ts");
        for r in ConnectionReason::ALL {
            let s = build(
                None,
                Some(2),
                &Health::new(r, "m"),
                Capabilities::default(),
                None,
                now,
            );
            assert_eq!(find(&s, "Ready").status == "True", r.is_ready(), "{r:?}");
            assert_eq!(find(&s, "Ready").reason, r.as_str());
            assert_eq!(
                find(&s, "Stalled").status == "True",
                r.is_stalled(),
                "{r:?}"
            );
            assert_eq!(
                find(&s, "Reconciling").status == "True",
                r.is_reconciling(),
                "{r:?}"
            );
            // Exactly one of Ready, Stalled and Reconciling holds.
            let on = [r.is_ready(), r.is_stalled(), r.is_reconciling()];
            assert_eq!(on.iter().filter(|b| **b).count(), 1, "{r:?}");
            assert_eq!(s.observed_generation, Some(2));
        }
    }

    #[test]
    fn counts_outlive_a_failed_probe_and_times_move_on_change() {
        let t1 = Timestamp::from_second(100).expect("ts");
        let t2 = Timestamp::from_second(200).expect("ts");
        let ok = build(
            None,
            Some(1),
            &Health::new(ConnectionReason::Connected, "ok"),
            Capabilities {
                delete: Some(true),
                update: None,
            },
            Some(Counts {
                managed: 3,
                unmanaged: 2,
            }),
            t1,
        );
        assert_eq!(ok.managed_clients, Some(3));
        assert_eq!(ok.unmanaged_clients, Some(2));
        let down = build(
            Some(&ok),
            Some(1),
            &Health::new(ConnectionReason::Unreachable, "down"),
            Capabilities::default(),
            None,
            t2,
        );
        assert_eq!(down.unmanaged_clients, Some(2));
        assert_eq!(down.capabilities, None);
        assert_eq!(find(&down, "Ready").last_transition_time, Time(t2));
        assert_eq!(find(&down, "Stalled").last_transition_time, Time(t1));
    }
}

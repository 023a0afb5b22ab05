//! The words the operator writes for people and tools to read: the reasons
//! of the Ready condition and of the Events it records. Typed, so a misspelt
//! reason does not compile; the end-to-end tests use the same enums. What
//! each one means is in docs/design.md ("Conditions" and "Events").

use strum::{EnumString, IntoStaticStr, VariantArray};

/// The reasons of the Ready condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantArray)]
pub enum Reason {
    /// The client exists and its credentials are in the Secret.
    Registered,
    /// Work in progress.
    Registering,
    /// Network error, timeout, 5xx or 429; retried with backoff.
    CollibraUnavailable,
    /// Collibra answered 4xx.
    CollibraRejected,
    /// A client with this name exists; the operator holds no credentials for it.
    ClientExistsWithoutSecret,
    /// The Secret lost the credentials of the client in use and
    /// `replacementPolicy` is `Manual`: a person decides.
    CredentialsLost,
    /// The target Secret exists and is not managed by this object.
    SecretConflict,
    /// An older OAuthClient claims this clientName.
    NameConflict,
    /// `spec.secretTemplate` cannot be rendered (rule 12).
    InvalidSecretTemplate,
    /// Cleanup in progress.
    Deleting,
    /// The connection in `spec.connectionRef` is missing, not ready, or
    /// does not admit this namespace; retried when it changes.
    ConnectionNotReady,
}

impl Reason {
    /// The reason as written in the condition.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses a condition reason.
    pub fn parse(s: &str) -> Option<Reason> {
        s.parse().ok()
    }

    /// Stalled: nothing changes until a person acts.
    pub fn is_stalled(self) -> bool {
        matches!(
            self,
            Reason::CollibraRejected
                | Reason::ClientExistsWithoutSecret
                | Reason::CredentialsLost
                | Reason::SecretConflict
                | Reason::NameConflict
                | Reason::InvalidSecretTemplate
        )
    }

    /// Reconciling: the operator is working towards Ready.
    pub fn is_reconciling(self) -> bool {
        matches!(
            self,
            Reason::Registering
                | Reason::CollibraUnavailable
                | Reason::Deleting
                | Reason::ConnectionNotReady
        )
    }
}

/// Why Collibra issued new credentials; each kind is recorded by an Event
/// of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoStaticStr, VariantArray)]
pub enum Issuance {
    /// The first registration of the name.
    Registered,
    /// The client vanished from Collibra and was registered again.
    Recreated,
    /// The rotate annotation asked for new credentials.
    Rotated,
    /// The client's secret was lost (an interrupted registration, or with
    /// `replacementPolicy: Automatic` a lost Secret); it was deleted and
    /// registered again.
    Replaced,
}

impl Issuance {
    /// The Event that records this issuance.
    pub fn event_reason(self) -> EventReason {
        match self {
            Issuance::Registered => EventReason::Registered,
            Issuance::Recreated => EventReason::Recreated,
            Issuance::Rotated => EventReason::Rotated,
            Issuance::Replaced => EventReason::Replaced,
        }
    }
}

/// The reasons of the Events the operator records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoStaticStr)]
pub enum EventReason {
    /// Ready moved to this reason (Events only on transitions).
    Condition(Reason),
    /// A client was registered and its credentials written.
    Registered,
    /// A client deleted in Collibra was registered again.
    Recreated,
    /// Credentials were rotated on request.
    Rotated,
    /// A client whose secret was lost was deleted and registered again.
    Replaced,
    /// A pre-created Secret's client was adopted.
    Adopted,
    /// Grant types were updated in Collibra (PUT).
    GrantTypesUpdated,
    /// The Secret was rendered again from the credentials it holds after
    /// a template change (rule 12).
    SecretReshaped,
    /// The Secret was replaced to change its type, credentials kept (rule 13).
    SecretTypeChanged,
    /// Grant types differ and Collibra cannot update them.
    GrantTypesDrift,
    /// Redirect URIs were updated in Collibra (PUT).
    RedirectUrisUpdated,
    /// Redirect URIs differ and Collibra cannot update them.
    RedirectUrisDrift,
    /// A rotation was requested and Collibra cannot DELETE.
    RotationUnsupported,
    /// Deletion with `deletionPolicy: Orphan`: client and Secret kept.
    Orphaned,
    /// Deletion found no client of that name in Collibra.
    ClientAlreadyGone,
    /// Deletion found a client of that name that this object did not register.
    ClientNotDeleted,
    /// The client was deleted in Collibra.
    Deleted,
    /// Collibra cannot DELETE: client left, Secret kept without owner.
    DeleteUnsupported,
    /// Cleanup failed for longer than the grace period and was given up.
    CleanupAbandoned,
}

impl EventReason {
    /// The reason as written in the Event.
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::Condition(r) => r.as_str(),
            other => other.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_and_are_stalled_or_reconciling_at_most() {
        for r in Reason::VARIANTS {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
            assert!(!(r.is_stalled() && r.is_reconciling()), "{r:?}");
        }
        assert_eq!(Reason::parse("registered"), None);
        assert_eq!(
            Reason::ClientExistsWithoutSecret.as_str(),
            "ClientExistsWithoutSecret"
        );
    }

    #[test]
    fn issuances_are_recorded_by_the_event_of_their_name() {
        for i in Issuance::VARIANTS {
            let name: &'static str = i.into();
            assert_eq!(i.event_reason().as_str(), name);
        }
        assert_eq!(
            EventReason::Condition(Reason::SecretConflict).as_str(),
            "SecretConflict"
        );
        assert_eq!(EventReason::DeleteUnsupported.as_str(), "DeleteUnsupported");
    }
}

//! The decision table: given what the operator sees (the OAuthClient, its
//! Secret and the Collibra list entry for its name), what must it do?
//!
//! Pure functions only, so every row of the table is a unit test. The
//! effects live in `reconcile/`; the rules the table follows are numbered
//! in docs/design.md.

use k8s_openapi::jiff::Timestamp;

use crate::api::{ReplacementCause, ReplacementPolicy};

/// Tolerated clock difference between Collibra and the operator when
/// deciding whether a client was registered after our claim. Small on
/// purpose: too small only turns a lost secret of ours into a Stalled
/// `ClientExistsWithoutSecret`; too large could take a foreign client
/// registered just before our claim for ours.
pub const CLOCK_SKEW_SECS: i64 = 30;

/// A Collibra client as the list reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Collibra's id.
    pub client_id: String,
    /// Seconds since the epoch, when Collibra reports it.
    pub issued_at: Option<i64>,
    /// Grant types Collibra reports.
    pub grant_types: Vec<String>,
    /// Redirect URIs, when the list shows them (the published list shape
    /// does not; then status's record of what Collibra confirmed stands in).
    pub redirect_uris: Option<Vec<String>>,
}

/// The target Secret as far as the operator may know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretView {
    /// No Secret of that name exists.
    Missing,
    /// A Secret of that name exists and is not ours: no managed-by label,
    /// or controlled by another object.
    Foreign {
        /// Why it is not ours, for the condition message.
        why: String,
    },
    /// Ours (managed-by label; controlled by this object or by nobody yet).
    Managed(ManagedSecret),
}

/// What the operator reads from a Secret it manages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagedSecret {
    /// `client_id`, when both it and `client_secret` are present and non-empty.
    pub client_id: Option<String>,
    /// When a registration was started and not yet completed.
    pub registering_since: Option<Timestamp>,
    /// The rotation request the current credentials answer.
    pub rotated_for: Option<String>,
    /// Whether this object is its controller owner (false: pre-created, adoptable).
    pub owned: bool,
}

/// Everything [`decide`] looks at.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// The Secret.
    pub secret: &'a SecretView,
    /// The Collibra client with `spec.clientName`, if listed.
    pub listed: Option<&'a Listed>,
    /// `status.clientId`: a client the operator recorded as its own.
    pub status_client_id: Option<&'a str>,
    /// The `oauth.collibra.dev/rotate` annotation.
    pub rotation_request: Option<&'a str>,
    /// Desired grant types, as Collibra spells them, sorted.
    pub grant_types: &'a [String],
    /// Desired redirect URIs (`spec.redirectUris`).
    pub redirect_uris: &'a [String],
    /// `status.redirectUris`: what Collibra last confirmed, used when the
    /// list does not show redirect URIs.
    pub confirmed_redirect_uris: &'a [String],
    /// Whether Collibra supports DELETE (`None`: not yet known).
    pub delete_supported: Option<bool>,
    /// Whether Collibra supports PUT (`None`: not yet known).
    pub update_supported: Option<bool>,
    /// `status.lastRotation`: the rotation request last acted on, which
    /// still counts when the Secret that recorded it is gone.
    pub last_rotation: Option<&'a str>,
    /// `spec.replacementPolicy`.
    pub replacement_policy: ReplacementPolicy,
    /// `metadata.creationTimestamp`: since when this object has claimed
    /// `clientName` (which is immutable).
    pub created: Option<Timestamp>,
    /// The `oauth.collibra.dev/lost-client-id` annotation: an
    /// administrator's word that this client is this object's and that its
    /// secret is lost (a restore from a backup older than the client).
    pub declared_lost: Option<&'a str>,
}

/// Why a new registration is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterReason {
    /// The name is free and nothing was registered yet.
    New,
    /// The Secret holds credentials of a client that Collibra no longer lists.
    Recreate,
}

/// Why an existing client is deleted and registered again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplaceReason {
    /// The rotate annotation changed.
    Rotation,
    /// The Secret no longer holds the credentials of the client in use
    /// (status recorded it), and `replacementPolicy` is `Automatic`.
    LostSecret,
    /// A registration of ours was interrupted between Collibra's 201 and
    /// the Secret write: the client was never used, so it is replaced
    /// whatever the policy.
    InterruptedRegistration,
    /// `spec.redirectUris` changed, Collibra cannot update them, and
    /// `replacementPolicy` is `Automatic`.
    RedirectUrisChanged,
}

impl ReplaceReason {
    /// The cause recorded in `status.lastReplacement`.
    pub fn cause(self) -> ReplacementCause {
        match self {
            ReplaceReason::Rotation => ReplacementCause::Rotation,
            ReplaceReason::LostSecret => ReplacementCause::LostSecret,
            ReplaceReason::InterruptedRegistration => ReplacementCause::InterruptedRegistration,
            ReplaceReason::RedirectUrisChanged => ReplacementCause::RedirectUrisChanged,
        }
    }
}

/// What to do about grant types that differ from the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantDrift {
    /// Send a PUT with the desired grant types.
    Update,
    /// PUT is not supported: report it.
    Unsupported { actual: Vec<String> },
}

/// What to do about redirect URIs that differ from the spec. Never a
/// replacement: a new client would lose the grants of the old one (rule 10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedirectDrift {
    /// Send a PUT with the desired redirect URIs.
    Update,
    /// PUT is not supported: report it.
    Unsupported { actual: Vec<String> },
}

/// How a client of this object came to have no secret in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lost {
    /// The Secret no longer holds the credentials of the client status
    /// records.
    FromSecret,
    /// `held`, the client status records, is gone from Collibra, and the
    /// name is held by a client registered since this object claimed it:
    /// a rotation or re-registration whose Secret and status were lost,
    /// as when the cluster is restored from an older etcd backup.
    Superseded { held: String },
    /// The lost-client annotation names the client.
    Declared,
}

/// Why a listed client is provably the operator's.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Own {
    /// It is (or was) this object's client in use.
    InUse(Lost),
    /// Our claim on the Secret predates its registration: a crash after
    /// the POST, never used.
    Interrupted,
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq, strum::IntoStaticStr)]
pub enum Plan {
    /// The client exists and the Secret holds its credentials.
    InSync {
        /// The Secret was pre-created by a user and is adopted now.
        adopt: bool,
        /// Grant types differ from the spec.
        drift: Option<GrantDrift>,
        /// Redirect URIs differ from the spec.
        redirect_drift: Option<RedirectDrift>,
        /// A rotation was requested but DELETE is not supported.
        rotation_unsupported: bool,
    },
    /// Claim the Secret, register, write the credentials.
    Register(RegisterReason),
    /// Delete `client_id` in Collibra, then register again.
    Replace {
        client_id: String,
        reason: ReplaceReason,
    },
    /// A client with this name exists and the operator holds no credentials
    /// for it. `own` says whether it is provably the operator's;
    /// `rotation_unsupported`, that a rotation was requested for it and
    /// Collibra cannot DELETE.
    ClientExistsWithoutSecret {
        client_id: String,
        own: bool,
        rotation_unsupported: bool,
    },
    /// No Secret holds the credentials of `client_id`, which is provably
    /// this object's (`how` says why), and `replacementPolicy` is `Manual`:
    /// a person decides (restore the Secret, or request a rotation).
    CredentialsLost { client_id: String, how: Lost },
    /// The Secret exists and is not ours: never overwritten.
    SecretConflict { why: String },
}

impl Plan {
    /// The plan's name, for logs.
    pub fn name(&self) -> &'static str {
        self.into()
    }
}

/// Decides what to do (docs/design.md, rules 1 to 6 and 10).
pub fn decide(o: &Observed<'_>) -> Plan {
    let managed = match o.secret {
        SecretView::Foreign { why } => return Plan::SecretConflict { why: why.clone() },
        SecretView::Missing => None,
        SecretView::Managed(m) => Some(m),
    };
    let held_id = managed.and_then(|m| m.client_id.as_deref());
    let Some(listed) = o.listed else {
        // Rule 1: the name is free. Register (again, if we held credentials).
        return Plan::Register(if held_id.is_some() {
            RegisterReason::Recreate
        } else {
            RegisterReason::New
        });
    };

    // A rotation request not yet acted on, as the Secret or, should the
    // Secret have been re-created without that record, status tells.
    let rotation_wanted = o.rotation_request.is_some()
        && o.rotation_request != managed.and_then(|m| m.rotated_for.as_deref())
        && o.rotation_request != o.last_rotation;
    if held_id == Some(listed.client_id.as_str()) {
        if rotation_wanted && o.delete_supported != Some(false) {
            return Plan::Replace {
                client_id: listed.client_id.clone(),
                reason: ReplaceReason::Rotation,
            };
        }
        let drift = (!same_grants(&listed.grant_types, o.grant_types)).then(|| {
            if o.update_supported == Some(false) {
                GrantDrift::Unsupported {
                    actual: listed.grant_types.clone(),
                }
            } else {
                GrantDrift::Update
            }
        });
        let actual_uris = listed
            .redirect_uris
            .as_deref()
            .unwrap_or(o.confirmed_redirect_uris);
        let uris_differ = !same_grants(actual_uris, o.redirect_uris);
        // Replacing is the policy's call, as for a lost Secret (rule 10),
        // and only where Collibra showed it keeps redirect URIs: on an
        // instance that ignores them a new client would differ just the
        // same, and be replaced again on every look.
        if uris_differ
            && o.update_supported == Some(false)
            && o.replacement_policy == ReplacementPolicy::Automatic
            && o.delete_supported != Some(false)
            && !actual_uris.is_empty()
        {
            return Plan::Replace {
                client_id: listed.client_id.clone(),
                reason: ReplaceReason::RedirectUrisChanged,
            };
        }
        let redirect_drift = uris_differ.then(|| {
            if o.update_supported == Some(false) {
                RedirectDrift::Unsupported {
                    actual: actual_uris.to_vec(),
                }
            } else {
                RedirectDrift::Update
            }
        });
        return Plan::InSync {
            adopt: managed.is_some_and(|m| !m.owned),
            drift,
            redirect_drift,
            rotation_unsupported: rotation_wanted,
        };
    }

    // The name is taken by a client whose secret we do not hold.
    let Some(own) = provably_own(o, managed, listed) else {
        return Plan::ClientExistsWithoutSecret {
            client_id: listed.client_id.clone(),
            own: false,
            rotation_unsupported: false,
        };
    };
    if o.delete_supported == Some(false) {
        return Plan::ClientExistsWithoutSecret {
            client_id: listed.client_id.clone(),
            own: true,
            rotation_unsupported: rotation_wanted,
        };
    }
    // A client in use is replaced on the operator's own initiative only
    // under Automatic; otherwise only a new rotation request replaces it.
    let reason = match own {
        Own::Interrupted => ReplaceReason::InterruptedRegistration,
        Own::InUse(_) if rotation_wanted => ReplaceReason::Rotation,
        Own::InUse(how) if o.replacement_policy == ReplacementPolicy::Manual => {
            return Plan::CredentialsLost {
                client_id: listed.client_id.clone(),
                how,
            };
        }
        Own::InUse(_) => ReplaceReason::LostSecret,
    };
    Plan::Replace {
        client_id: listed.client_id.clone(),
        reason,
    }
}

/// Whether a listed client is ours, and why (docs/design.md, rule 2):
/// - status recorded its id (it was in use);
/// - our claim on the Secret predates its registration (a crash after the
///   POST: never used);
/// - an administrator named it with the lost-client annotation;
/// - status recorded another client, gone now, and this one was registered
///   after this object claimed the name (`clientName` is immutable): a
///   rotation or re-registration of ours whose record was lost, which is
///   what a restore from an older etcd backup leaves.
fn provably_own(o: &Observed<'_>, managed: Option<&ManagedSecret>, listed: &Listed) -> Option<Own> {
    let id = listed.client_id.as_str();
    if o.status_client_id == Some(id) {
        return Some(Own::InUse(Lost::FromSecret));
    }
    let registered_after = |since: Timestamp| {
        listed
            .issued_at
            .is_some_and(|issued| issued >= since.as_second() - CLOCK_SKEW_SECS)
    };
    if managed
        .and_then(|m| m.registering_since)
        .is_some_and(registered_after)
    {
        return Some(Own::Interrupted);
    }
    if o.declared_lost == Some(id) {
        return Some(Own::InUse(Lost::Declared));
    }
    match (o.status_client_id, o.created) {
        (Some(held), Some(created)) if registered_after(created) => {
            Some(Own::InUse(Lost::Superseded {
                held: held.to_owned(),
            }))
        }
        _ => None,
    }
}

/// Grant types (or redirect URIs) compared as sets.
pub fn same_grants(actual: &[String], desired: &[String]) -> bool {
    let mut a: Vec<&str> = actual.iter().map(String::as_str).collect();
    let mut d: Vec<&str> = desired.iter().map(String::as_str).collect();
    a.sort_unstable();
    a.dedup();
    d.sort_unstable();
    d.dedup();
    a == d
}

/// Among objects claiming one `clientName`, the oldest keeps it; ties are
/// broken by namespace and name so every replica decides alike.
pub fn name_owner<'a, I>(claimants: I) -> Option<&'a NameClaim>
where
    I: IntoIterator<Item = &'a NameClaim>,
{
    claimants
        .into_iter()
        .min_by(|a, b| (a.created, &a.namespace, &a.name).cmp(&(b.created, &b.namespace, &b.name)))
}

/// One object's claim on a `clientName`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameClaim {
    /// Creation time.
    pub created: Option<Timestamp>,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants() -> Vec<String> {
        vec!["client_credentials".to_owned()]
    }

    fn listed(id: &str, issued_at: i64) -> Listed {
        Listed {
            client_id: id.to_owned(),
            issued_at: Some(issued_at),
            grant_types: grants(),
            redirect_uris: None,
        }
    }

    fn managed(id: Option<&str>) -> SecretView {
        SecretView::Managed(ManagedSecret {
            client_id: id.map(str::to_owned),
            owned: true,
            ..ManagedSecret::default()
        })
    }

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid")
    }

    #[derive(Clone)]
    struct Case<'a> {
        secret: SecretView,
        listed: Option<Listed>,
        status_id: Option<&'a str>,
        rotate: Option<&'a str>,
        delete: Option<bool>,
        update: Option<bool>,
        want_grants: Vec<String>,
        last_rotation: Option<&'a str>,
        policy: ReplacementPolicy,
        want_uris: Vec<String>,
        confirmed_uris: Vec<String>,
        created: Option<Timestamp>,
        declared_lost: Option<&'a str>,
    }

    impl Default for Case<'_> {
        fn default() -> Self {
            Case {
                secret: SecretView::Missing,
                listed: None,
                status_id: None,
                rotate: None,
                delete: None,
                update: None,
                want_grants: grants(),
                last_rotation: None,
                policy: ReplacementPolicy::Manual,
                want_uris: vec![],
                confirmed_uris: vec![],
                created: None,
                declared_lost: None,
            }
        }
    }

    fn run(c: &Case<'_>) -> Plan {
        decide(&Observed {
            secret: &c.secret,
            listed: c.listed.as_ref(),
            status_client_id: c.status_id,
            rotation_request: c.rotate,
            grant_types: &c.want_grants,
            redirect_uris: &c.want_uris,
            confirmed_redirect_uris: &c.confirmed_uris,
            delete_supported: c.delete,
            update_supported: c.update,
            last_rotation: c.last_rotation,
            replacement_policy: c.policy,
            created: c.created,
            declared_lost: c.declared_lost,
        })
    }

    #[test]
    fn plans_are_named_by_their_variant() {
        assert_eq!(Plan::Register(RegisterReason::New).name(), "Register");
        assert_eq!(
            Plan::SecretConflict { why: String::new() }.name(),
            "SecretConflict"
        );
        assert_eq!(
            Plan::ClientExistsWithoutSecret {
                client_id: String::new(),
                own: false,
                rotation_unsupported: false,
            }
            .name(),
            "ClientExistsWithoutSecret"
        );
    }

    #[test]
    fn free_name_and_no_secret_registers() {
        assert_eq!(run(&Case::default()), Plan::Register(RegisterReason::New));
        let c = Case {
            secret: managed(None),
            ..Case::default()
        };
        assert_eq!(run(&c), Plan::Register(RegisterReason::New));
    }

    #[test]
    fn client_deleted_behind_our_back_is_registered_again() {
        let c = Case {
            secret: managed(Some("old")),
            ..Case::default()
        };
        assert_eq!(run(&c), Plan::Register(RegisterReason::Recreate));
    }

    #[test]
    fn matching_credentials_are_in_sync() {
        let c = Case {
            secret: managed(Some("id1")),
            listed: Some(listed("id1", 10)),
            ..Case::default()
        };
        assert_eq!(
            run(&c),
            Plan::InSync {
                adopt: false,
                drift: None,
                redirect_drift: None,
                rotation_unsupported: false
            }
        );
    }

    #[test]
    fn foreign_secret_is_never_touched_whatever_collibra_says() {
        for listed_entry in [None, Some(listed("x", 1))] {
            let c = Case {
                secret: SecretView::Foreign {
                    why: "no label".into(),
                },
                listed: listed_entry,
                status_id: Some("x"),
                ..Case::default()
            };
            assert_eq!(
                run(&c),
                Plan::SecretConflict {
                    why: "no label".into()
                }
            );
        }
    }

    #[test]
    fn foreign_client_without_evidence_is_reported_not_deleted() {
        for secret in [SecretView::Missing, managed(None), managed(Some("mine"))] {
            let c = Case {
                secret,
                listed: Some(listed("theirs", 100)),
                delete: Some(true),
                ..Case::default()
            };
            assert_eq!(
                run(&c),
                Plan::ClientExistsWithoutSecret {
                    client_id: "theirs".into(),
                    own: false,
                    rotation_unsupported: false,
                }
            );
        }
    }

    #[test]
    fn crash_after_post_is_recovered_by_replacing_when_delete_works() {
        let secret = SecretView::Managed(ManagedSecret {
            registering_since: Some(ts(1_000)),
            owned: true,
            ..ManagedSecret::default()
        });
        for delete in [None, Some(true)] {
            let c = Case {
                secret: secret.clone(),
                listed: Some(listed("lost", 1_001)),
                delete,
                ..Case::default()
            };
            // Never used: replaced whatever the policy.
            for policy in [ReplacementPolicy::Manual, ReplacementPolicy::Automatic] {
                let c = Case {
                    policy,
                    ..c.clone()
                };
                assert_eq!(
                    run(&c),
                    Plan::Replace {
                        client_id: "lost".into(),
                        reason: ReplaceReason::InterruptedRegistration
                    }
                );
            }
        }
        let c = Case {
            secret,
            listed: Some(listed("lost", 1_001)),
            delete: Some(false),
            ..Case::default()
        };
        assert_eq!(
            run(&c),
            Plan::ClientExistsWithoutSecret {
                client_id: "lost".into(),
                own: true,
                rotation_unsupported: false,
            }
        );
    }

    #[test]
    fn client_registered_long_before_our_claim_is_foreign() {
        let c = Case {
            secret: SecretView::Managed(ManagedSecret {
                registering_since: Some(ts(10_000)),
                owned: true,
                ..ManagedSecret::default()
            }),
            listed: Some(listed("old", 10_000 - CLOCK_SKEW_SECS - 1)),
            delete: Some(true),
            ..Case::default()
        };
        assert!(matches!(
            run(&c),
            Plan::ClientExistsWithoutSecret { own: false, .. }
        ));
    }

    #[test]
    fn deleted_secret_of_a_client_in_use_is_replaced_only_under_automatic() {
        let mut c = Case {
            secret: SecretView::Missing,
            listed: Some(listed("id1", 5)),
            status_id: Some("id1"),
            policy: ReplacementPolicy::Automatic,
            ..Case::default()
        };
        assert_eq!(
            run(&c),
            Plan::Replace {
                client_id: "id1".into(),
                reason: ReplaceReason::LostSecret
            }
        );
        c.policy = ReplacementPolicy::Manual;
        assert_eq!(
            run(&c),
            Plan::CredentialsLost {
                client_id: "id1".into(),
                how: Lost::FromSecret,
            }
        );
        // The same with an emptied Secret of ours, and with an old claim
        // left by a replacement whose DELETE failed: the client predates it.
        for secret in [
            managed(None),
            SecretView::Managed(ManagedSecret {
                registering_since: Some(ts(1_000)),
                owned: true,
                ..ManagedSecret::default()
            }),
        ] {
            let c = Case {
                secret,
                ..c.clone()
            };
            assert_eq!(
                run(&c),
                Plan::CredentialsLost {
                    client_id: "id1".into(),
                    how: Lost::FromSecret,
                }
            );
        }
        // Without DELETE neither policy can replace it.
        for policy in [ReplacementPolicy::Manual, ReplacementPolicy::Automatic] {
            let c = Case {
                policy,
                delete: Some(false),
                ..c.clone()
            };
            assert_eq!(
                run(&c),
                Plan::ClientExistsWithoutSecret {
                    client_id: "id1".into(),
                    own: true,
                    rotation_unsupported: false,
                }
            );
        }
    }

    /// A restore from an etcd backup older than a rotation: status and the
    /// Secret hold the old client, Collibra lists the rotated one.
    #[test]
    fn successor_registered_after_our_claim_is_ours_and_lost() {
        let mut c = Case {
            secret: managed(Some("old")),
            listed: Some(listed("rotated", 5_000)),
            status_id: Some("old"),
            created: Some(ts(1_000)),
            ..Case::default()
        };
        assert_eq!(
            run(&c),
            Plan::CredentialsLost {
                client_id: "rotated".into(),
                how: Lost::Superseded { held: "old".into() },
            }
        );
        c.policy = ReplacementPolicy::Automatic;
        assert_eq!(
            run(&c),
            Plan::Replace {
                client_id: "rotated".into(),
                reason: ReplaceReason::LostSecret
            }
        );
        // Registered before this object claimed the name: not provably ours.
        c.listed = Some(listed("older", 1_000 - CLOCK_SKEW_SECS - 1));
        assert!(matches!(
            run(&c),
            Plan::ClientExistsWithoutSecret { own: false, .. }
        ));
        // Nothing ever held under the name: no evidence either, however
        // young the listed client.
        c.listed = Some(listed("young", 5_000));
        c.status_id = None;
        assert!(matches!(
            run(&c),
            Plan::ClientExistsWithoutSecret { own: false, .. }
        ));
    }

    /// A restore from an etcd backup older than the client itself: nothing
    /// in the cluster knows it, until an administrator names it.
    #[test]
    fn a_client_declared_lost_is_handled_per_policy() {
        let mut c = Case {
            listed: Some(listed("late", 5_000)),
            created: Some(ts(9_000)),
            delete: Some(true),
            ..Case::default()
        };
        assert!(matches!(
            run(&c),
            Plan::ClientExistsWithoutSecret { own: false, .. }
        ));
        c.declared_lost = Some("another");
        assert!(matches!(
            run(&c),
            Plan::ClientExistsWithoutSecret { own: false, .. }
        ));
        c.declared_lost = Some("late");
        assert_eq!(
            run(&c),
            Plan::CredentialsLost {
                client_id: "late".into(),
                how: Lost::Declared,
            }
        );
        c.policy = ReplacementPolicy::Automatic;
        assert_eq!(
            run(&c),
            Plan::Replace {
                client_id: "late".into(),
                reason: ReplaceReason::LostSecret
            }
        );
        // Once replaced, the annotation names a client that is gone, and
        // the new one is in sync.
        c.secret = managed(Some("new"));
        c.listed = Some(listed("new", 9_500));
        assert!(matches!(run(&c), Plan::InSync { .. }));
        // Without DELETE it stays reported as ours.
        c.secret = SecretView::Missing;
        c.listed = Some(listed("late", 5_000));
        c.delete = Some(false);
        assert!(matches!(
            run(&c),
            Plan::ClientExistsWithoutSecret { own: true, .. }
        ));
    }

    #[test]
    fn manual_replacement_is_a_new_rotation_request() {
        let mut c = Case {
            secret: SecretView::Missing,
            listed: Some(listed("id1", 5)),
            status_id: Some("id1"),
            rotate: Some("r1"),
            last_rotation: Some("r1"),
            ..Case::default()
        };
        // The annotation's value was acted on before the Secret was lost:
        // that old request does not replace the client again.
        assert_eq!(
            run(&c),
            Plan::CredentialsLost {
                client_id: "id1".into(),
                how: Lost::FromSecret,
            }
        );
        c.rotate = Some("r2");
        assert_eq!(
            run(&c),
            Plan::Replace {
                client_id: "id1".into(),
                reason: ReplaceReason::Rotation
            }
        );
        c.last_rotation = None;
        c.rotate = Some("r1");
        assert_eq!(
            run(&c),
            Plan::Replace {
                client_id: "id1".into(),
                reason: ReplaceReason::Rotation
            }
        );
    }

    #[test]
    fn a_restored_secret_does_not_repeat_the_last_rotation() {
        // Restored from a backup taken before the rotate record was written:
        // status remembers that "r1" was acted on.
        let c = Case {
            secret: managed(Some("id1")),
            listed: Some(listed("id1", 5)),
            status_id: Some("id1"),
            rotate: Some("r1"),
            last_rotation: Some("r1"),
            ..Case::default()
        };
        assert_eq!(
            run(&c),
            Plan::InSync {
                adopt: false,
                drift: None,
                redirect_drift: None,
                rotation_unsupported: false
            }
        );
    }

    #[test]
    fn a_rotation_of_a_lost_client_without_delete_is_reported() {
        let c = Case {
            secret: SecretView::Missing,
            listed: Some(listed("id1", 5)),
            status_id: Some("id1"),
            rotate: Some("r2"),
            last_rotation: Some("r1"),
            delete: Some(false),
            ..Case::default()
        };
        assert_eq!(
            run(&c),
            Plan::ClientExistsWithoutSecret {
                client_id: "id1".into(),
                own: true,
                rotation_unsupported: true
            }
        );
    }

    #[test]
    fn causes_name_the_three_replacements() {
        assert_eq!(ReplaceReason::Rotation.cause(), ReplacementCause::Rotation);
        assert_eq!(
            ReplaceReason::LostSecret.cause(),
            ReplacementCause::LostSecret
        );
        assert_eq!(
            ReplaceReason::InterruptedRegistration.cause(),
            ReplacementCause::InterruptedRegistration
        );
        assert_eq!(
            ReplaceReason::RedirectUrisChanged.cause(),
            ReplacementCause::RedirectUrisChanged
        );
    }

    #[test]
    fn rotation_replaces_once_per_annotation_value() {
        let mut c = Case {
            secret: managed(Some("id1")),
            listed: Some(listed("id1", 5)),
            rotate: Some("2026-11-26"),
            ..Case::default()
        };
        assert_eq!(
            run(&c),
            Plan::Replace {
                client_id: "id1".into(),
                reason: ReplaceReason::Rotation
            }
        );
        c.secret = SecretView::Managed(ManagedSecret {
            client_id: Some("id1".into()),
            rotated_for: Some("2026-11-26".into()),
            owned: true,
            ..ManagedSecret::default()
        });
        assert!(matches!(
            run(&c),
            Plan::InSync {
                rotation_unsupported: false,
                ..
            }
        ));
    }

    #[test]
    fn rotation_without_delete_is_reported() {
        let c = Case {
            secret: managed(Some("id1")),
            listed: Some(listed("id1", 5)),
            rotate: Some("r1"),
            delete: Some(false),
            ..Case::default()
        };
        assert_eq!(
            run(&c),
            Plan::InSync {
                adopt: false,
                drift: None,
                redirect_drift: None,
                rotation_unsupported: true
            }
        );
    }

    #[test]
    fn pre_created_secret_is_adopted() {
        let c = Case {
            secret: SecretView::Managed(ManagedSecret {
                client_id: Some("id1".into()),
                owned: false,
                ..ManagedSecret::default()
            }),
            listed: Some(listed("id1", 5)),
            ..Case::default()
        };
        assert!(matches!(run(&c), Plan::InSync { adopt: true, .. }));
    }

    #[test]
    fn grant_drift_updates_or_reports() {
        let mut c = Case {
            secret: managed(Some("id1")),
            listed: Some(listed("id1", 5)),
            want_grants: vec!["authorization_code".into(), "client_credentials".into()],
            ..Case::default()
        };
        assert!(matches!(
            run(&c),
            Plan::InSync {
                drift: Some(GrantDrift::Update),
                ..
            }
        ));
        c.update = Some(false);
        assert!(matches!(
            run(&c),
            Plan::InSync {
                drift: Some(GrantDrift::Unsupported { .. }),
                ..
            }
        ));
        c.want_grants = grants();
        assert!(matches!(run(&c), Plan::InSync { drift: None, .. }));
    }

    #[test]
    fn redirect_uri_drift_updates_or_reports_and_never_replaces() {
        let uri = |u: &str| vec![u.to_owned()];
        let mut c = Case {
            secret: managed(Some("id1")),
            listed: Some(listed("id1", 5)),
            want_grants: vec!["authorization_code".into()],
            want_uris: uri("https://a.example/cb"),
            confirmed_uris: uri("https://a.example/cb"),
            ..Case::default()
        };
        c.listed = Some(Listed {
            grant_types: c.want_grants.clone(),
            ..listed("id1", 5)
        });
        assert!(matches!(
            run(&c),
            Plan::InSync {
                redirect_drift: None,
                ..
            }
        ));
        // Changed in the spec: compared with what Collibra confirmed.
        c.want_uris = uri("https://b.example/cb");
        assert!(matches!(
            run(&c),
            Plan::InSync {
                redirect_drift: Some(RedirectDrift::Update),
                drift: None,
                ..
            }
        ));
        c.update = Some(false);
        assert_eq!(
            run(&c),
            Plan::InSync {
                adopt: false,
                drift: None,
                redirect_drift: Some(RedirectDrift::Unsupported {
                    actual: uri("https://a.example/cb")
                }),
                rotation_unsupported: false,
            }
        );
        // Under Automatic the policy replaces the client, where DELETE
        // may work and Collibra showed it keeps redirect URIs.
        c.policy = ReplacementPolicy::Automatic;
        assert_eq!(
            run(&c),
            Plan::Replace {
                client_id: "id1".into(),
                reason: ReplaceReason::RedirectUrisChanged
            }
        );
        for blocked in [
            Case {
                delete: Some(false),
                ..c.clone()
            },
            Case {
                confirmed_uris: vec![],
                ..c.clone()
            },
        ] {
            assert!(
                matches!(
                    run(&blocked),
                    Plan::InSync {
                        redirect_drift: Some(RedirectDrift::Unsupported { .. }),
                        ..
                    }
                ),
                "{:?}",
                run(&blocked)
            );
        }
        c.policy = ReplacementPolicy::Manual;
        // A list that shows redirect URIs wins over the record.
        c.update = None;
        c.listed = c.listed.map(|l| Listed {
            redirect_uris: Some(uri("https://b.example/cb")),
            ..l
        });
        assert!(matches!(
            run(&c),
            Plan::InSync {
                redirect_drift: None,
                ..
            }
        ));
        // Without redirect URIs on either side nothing changes (every
        // client-credentials client).
        let plain = Case {
            secret: managed(Some("id1")),
            listed: Some(listed("id1", 5)),
            ..Case::default()
        };
        assert!(matches!(
            run(&plain),
            Plan::InSync {
                redirect_drift: None,
                drift: None,
                ..
            }
        ));
    }

    #[test]
    fn grants_compare_as_sets() {
        let a = vec!["b".to_owned(), "a".to_owned()];
        let b = vec!["a".to_owned(), "b".to_owned(), "a".to_owned()];
        assert!(same_grants(&a, &b));
        assert!(!same_grants(&a, &b[..1]));
    }

    #[test]
    fn oldest_claimant_keeps_the_name_deterministically() {
        let c = |t: i64, ns: &str, n: &str| NameClaim {
            created: Some(ts(t)),
            namespace: ns.into(),
            name: n.into(),
        };
        let claims = [c(20, "a", "x"), c(10, "b", "y"), c(10, "a", "z")];
        assert_eq!(name_owner(&claims), Some(&claims[2]));
        let reversed: Vec<NameClaim> = claims.iter().rev().cloned().collect();
        assert_eq!(name_owner(&reversed), Some(&claims[2]));
    }
}

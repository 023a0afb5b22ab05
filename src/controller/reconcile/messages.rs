//! The words of conditions and Events: what happened and what a person can
//! do about it. Pure, so each message is tested without a server. No
//! message ever carries a client secret (docs/design.md, rule 9).

use std::time::Duration;

use collibra_client::Operation;

use crate::{
    api::{LOST_CLIENT_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, ROTATE_ANNOTATION},
    controller::{
        decide::{Lost, NameClaim, ReplaceReason},
        reasons::Issuance,
    },
};

/// Events longer than this are cut (the API server rejects notes over 1 kB).
pub const MAX_NOTE_BYTES: usize = 1000;

/// Ready=False, NameConflict: an older object keeps the name.
pub fn name_conflict(winner: &NameClaim, client_name: &str) -> String {
    format!(
        "OAuthClient {}/{} is older and already claims clientName {client_name:?}; choose another clientName or delete one of the two",
        winner.namespace, winner.name
    )
}

/// Ready=False, InvalidSecretTemplate: `problem` names the key and the
/// error, never a credential (`secret_template::TemplateError`).
pub fn invalid_template(problem: &impl std::fmt::Display) -> String {
    format!(
        "{problem}. The Secret is left as it is, and nothing is registered, until the template is fixed"
    )
}

/// Event SecretReshaped.
pub fn reshaped(secret_name: &str) -> String {
    format!(
        "Secret {secret_name} rendered again from the credentials it holds (secretTemplate changed); no new registration"
    )
}

/// Event SecretTypeChanged.
pub fn type_changed(secret_name: &str, type_: &str) -> String {
    format!(
        "Secret {secret_name} replaced to make its type {type_}; its credentials were kept (no new registration)"
    )
}

/// Ready=False, SecretConflict: `why` says whose Secret it is.
pub fn secret_conflict(why: &str) -> String {
    format!(
        "{why}. Delete or rename that Secret, or create this OAuthClient with another spec.secretName"
    )
}

/// Ready=False, ClientExistsWithoutSecret. `own`: the client is provably
/// this operator's, but Collibra cannot DELETE it.
pub fn exists_without_secret(
    client_name: &str,
    client_id: &str,
    secret_name: &str,
    own: bool,
) -> String {
    let adopt = format!(
        "pre-create Secret {secret_name} with its client_id and client_secret and the label {MANAGED_BY_LABEL}={MANAGED_BY_VALUE} to adopt it"
    );
    if own {
        format!(
            "Client {client_id} ({client_name:?}) was registered by this operator but its secret was lost before it reached the Secret, and Collibra does not support DELETE, so it cannot be replaced. An administrator can delete client {client_id} in Collibra (the operator then registers it again), or {adopt}"
        )
    } else {
        format!(
            "A client named {client_name:?} (id {client_id}) already exists in Collibra and this operator holds no credentials for it. To use it, {adopt}; otherwise choose another clientName, or delete that client in Collibra. If this cluster was restored from an etcd backup taken before client {client_id} was registered, it is this object's and its secret is gone for good: set the annotation {LOST_CLIENT_ANNOTATION}={client_id} on this OAuthClient and it is handled per spec.replacementPolicy"
        )
    }
}

/// Ready=True: the client and where its credentials are, then `notes`
/// (things the operator cannot fix).
pub fn registered(client_id: &str, secret_name: &str, notes: &[String]) -> String {
    let mut message = format!(
        "Client {client_id} is registered in Collibra; its credentials are in Secret {secret_name}"
    );
    for n in notes {
        message.push_str("; ");
        message.push_str(n);
    }
    message
}

/// A note on Ready: grant types differ and Collibra cannot update them.
pub fn grant_drift(actual: &[String], desired: &[String]) -> String {
    format!(
        "grant types in Collibra are {actual:?}, the spec asks for {desired:?}, and Collibra does not support updates (PUT)"
    )
}

/// A note on Ready: redirect URIs differ and Collibra cannot update them.
pub fn redirect_drift(actual: &[String], desired: &[String]) -> String {
    format!(
        "redirect URIs in Collibra are {actual:?}, spec.redirectUris asks for {desired:?}, and Collibra does not support updates (PUT): change them in Collibra by hand, or set spec.redirectUris back. The client is not replaced for this under replacementPolicy Manual, since a new client loses the grants of the old one; a rotation (oauth.collibra.dev/rotate) or replacementPolicy Automatic registers it anew with the spec's redirect URIs"
    )
}

/// Ready's message when Collibra registered a client but ignored a field
/// it was sent: the credentials are kept, the client is not what the spec
/// asks for.
pub fn registered_but_ignored(
    client_id: &str,
    secret_name: &str,
    error: &collibra_client::Error,
) -> String {
    format!(
        "{error}. Client {client_id} is registered without it and its credentials are in Secret {secret_name}; it will not be registered again. Where this Collibra instance supports redirect URIs through an update, the operator applies them on its next look; otherwise set them in Collibra by hand"
    )
}

/// A note on Ready: a rotation was asked for and cannot happen.
pub const ROTATION_UNSUPPORTED_NOTE: &str = "a rotation was requested but Collibra does not support DELETE, so credentials cannot be rotated";

/// The RotationUnsupported Event, naming the request it answers.
pub fn rotation_unsupported(request: &str, client_id: &str) -> String {
    format!(
        "Rotation {request:?} was requested, but Collibra does not support DELETE: client {client_id} and its credentials stay as they are"
    )
}

/// Ready=False, CredentialsLost (`replacementPolicy: Manual`): what was
/// lost, how the operator knows the client is this object's, and the ways
/// on.
pub fn credentials_lost(client_id: &str, secret_name: &str, how: &Lost) -> String {
    let rotate = format!(
        "set the annotation {ROTATE_ANNOTATION} to a new value to delete client {client_id} and register a new one: a new Collibra application, without the roles and permissions granted to the old one"
    );
    match how {
        Lost::FromSecret => format!(
            "Secret {secret_name} no longer holds the credentials of client {client_id}, which is in use, and Collibra shows a secret only once. replacementPolicy is Manual, so nothing was replaced. Restore the Secret with its client_id, client_secret and the label {MANAGED_BY_LABEL}={MANAGED_BY_VALUE} (it is adopted again and nothing is lost), or {rotate}"
        ),
        Lost::Superseded { held } => format!(
            "Client {held}, which this object recorded, is no longer in Collibra, and its name is held by client {client_id}, registered after this object claimed the name: a rotation or re-registration whose Secret and status were lost, as when the cluster is restored from an etcd backup taken before it. Collibra shows a secret only once, so its secret is gone for good. replacementPolicy is Manual, so nothing was replaced. To go on, {rotate}"
        ),
        Lost::Declared => format!(
            "The annotation {LOST_CLIENT_ANNOTATION} names client {client_id} as this object's, and no Secret holds its credentials (as when the cluster is restored from an etcd backup taken before it was registered). Collibra shows a secret only once, so its secret is gone for good. replacementPolicy is Manual, so nothing was replaced. To go on, {rotate}"
        ),
    }
}

/// What a deleted and re-registered client loses, for replacement Events.
const NEW_APPLICATION: &str =
    "the new Collibra application does not have the roles and permissions granted to the old one";

/// A client that was deleted and registered again: the old one and why.
#[derive(Clone, Copy, Debug)]
pub struct Replaced<'a> {
    /// The client deleted in Collibra.
    pub previous: &'a str,
    /// Why.
    pub reason: ReplaceReason,
    /// The rotate annotation's value, for a rotation.
    pub request: Option<&'a str>,
}

/// The Rotated or Replaced Event: old and new client, and what was lost.
pub fn replaced(r: Replaced<'_>, client_id: &str, secret_name: &str) -> String {
    let old = r.previous;
    match r.reason {
        ReplaceReason::Rotation => format!(
            "Rotated credentials ({ROTATE_ANNOTATION} {:?}): deleted client {old}, registered {client_id}, credentials in Secret {secret_name}; {NEW_APPLICATION}",
            r.request.unwrap_or_default()
        ),
        ReplaceReason::LostSecret => format!(
            "Replaced client {old}, whose credentials Secret {secret_name} no longer held (replacementPolicy Automatic): new client {client_id}; {NEW_APPLICATION}"
        ),
        ReplaceReason::InterruptedRegistration => format!(
            "Replaced client {old}, whose secret was lost between Collibra's answer and the first Secret write (it was never used): new client {client_id}, credentials in Secret {secret_name}"
        ),
        ReplaceReason::RedirectUrisChanged => format!(
            "Replaced client {old}, whose redirect URIs Collibra cannot update (replacementPolicy Automatic): new client {client_id} with spec.redirectUris, credentials in Secret {secret_name}; {NEW_APPLICATION}"
        ),
    }
}

/// Ready=False while the Secret the operator just created is not visible.
pub const SECRET_NOT_VISIBLE: &str = "waiting for the Secret to be visible";

/// The Event that records new credentials.
pub fn issued(kind: Issuance, client_id: &str, secret_name: &str) -> String {
    match kind {
        Issuance::Registered => format!(
            "Registered client {client_id} in Collibra, credentials in Secret {secret_name}"
        ),
        Issuance::Recreated => format!(
            "Client was missing in Collibra; registered it again as {client_id}, credentials in Secret {secret_name}"
        ),
        Issuance::Rotated => format!(
            "Rotated credentials: new client {client_id}, credentials in Secret {secret_name}"
        ),
        Issuance::Replaced => format!(
            "Replaced client whose secret was lost: new client {client_id}, credentials in Secret {secret_name}"
        ),
    }
}

/// Ready=False after a failed Collibra call: rejected (a person must act)
/// or unavailable (retried after `delay`).
pub fn collibra_failure(
    rejected: bool,
    operation: Operation,
    error: &collibra_client::Error,
    delay: Duration,
) -> String {
    let operation = operation.as_str();
    if let collibra_client::Error::Ignored { field, .. } = error {
        // Accepted, not refused: say what happened and what a person can do.
        format!(
            "{error}. Set {field} in Collibra by hand; the operator tries again after a change of the spec, or at the latest in five minutes"
        )
    } else if rejected {
        format!("Collibra rejected {operation}: {error}")
    } else {
        format!(
            "Collibra is unavailable ({operation}): {error}; retrying in {}s",
            delay.as_secs().max(1)
        )
    }
}

/// The Adopted Event.
pub fn adopted(client_id: &str, secret_name: &str) -> String {
    format!("Adopted Collibra client {client_id} from the pre-created Secret {secret_name}")
}

/// The GrantTypesUpdated Event.
pub fn grants_updated(client_id: &str, grant_types: &[String]) -> String {
    format!("Updated grant types of client {client_id} to {grant_types:?}")
}

/// The RedirectUrisUpdated Event.
pub fn redirect_uris_updated(client_id: &str, redirect_uris: &[String]) -> String {
    format!("Updated redirect URIs of client {client_id} to {redirect_uris:?}")
}

/// The RedirectUrisDrift Event.
pub fn redirect_drift_event(client_id: &str) -> String {
    format!(
        "Redirect URIs of client {client_id} differ from spec.redirectUris and Collibra does not support updates (PUT): change them in Collibra by hand; the client is not replaced"
    )
}

/// The GrantTypesDrift Event.
pub fn grants_drift_event(client_id: &str) -> String {
    format!(
        "Grant types of client {client_id} differ from the spec and Collibra does not support updates"
    )
}

/// The Orphaned Event (`deletionPolicy: Orphan`).
pub fn orphaned(secret_name: &str) -> String {
    format!(
        "deletionPolicy Orphan: the Collibra client is left in place and Secret {secret_name} is kept without an owner"
    )
}

/// The ClientAlreadyGone Event.
pub fn already_gone(client_name: &str) -> String {
    format!("No client named {client_name:?} exists in Collibra; nothing to delete")
}

/// The ClientNotDeleted Event: the name belongs to a client not ours.
pub fn not_ours(client_name: &str, client_id: &str) -> String {
    format!(
        "The client named {client_name:?} in Collibra ({client_id}) is not one this object registered; it was left in place"
    )
}

/// The Deleted Event.
pub fn deleted(client_id: &str) -> String {
    format!("Deleted client {client_id} in Collibra")
}

/// The DeleteUnsupported Event.
pub fn delete_unsupported(client_id: &str, secret_name: &str) -> String {
    format!(
        "Collibra does not support DELETE: client {client_id} remains in Collibra, and Secret {secret_name} is kept without an owner so its credentials are not lost"
    )
}

/// The CleanupAbandoned Event.
pub fn cleanup_abandoned(
    waited: Duration,
    error: &collibra_client::Error,
    secret_name: &str,
) -> String {
    format!(
        "Could not delete the client in Collibra for {}s ({error}); the finalizer is released and Secret {secret_name} is kept without an owner",
        waited.as_secs()
    )
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ignored_field_is_not_called_a_rejection() {
        let e = collibra_client::Error::Ignored {
            operation: Operation::Update,
            status: 200,
            field: "redirect_uris",
            how: "does not carry it",
        };
        let m = collibra_failure(true, Operation::Update, &e, Duration::from_secs(300));
        assert!(
            m.contains("ignored redirect_uris") && m.contains("by hand"),
            "{m}"
        );
        assert!(!m.starts_with("Collibra rejected"), "{m}");
    }

    #[test]
    fn replacement_events_name_old_and_new_client_and_what_is_lost() {
        for reason in [
            ReplaceReason::Rotation,
            ReplaceReason::LostSecret,
            ReplaceReason::InterruptedRegistration,
            ReplaceReason::RedirectUrisChanged,
        ] {
            let note = replaced(
                Replaced {
                    previous: "urn:old",
                    reason,
                    request: Some("r1"),
                },
                "urn:new",
                "s",
            );
            assert!(
                note.contains("urn:old") && note.contains("urn:new"),
                "{note}"
            );
            // A client never handed out had no grants to lose.
            assert_eq!(
                note.contains("roles and permissions"),
                reason != ReplaceReason::InterruptedRegistration,
                "{note}"
            );
        }
        assert!(
            replaced(
                Replaced {
                    previous: "a",
                    reason: ReplaceReason::Rotation,
                    request: Some("2026-12-01"),
                },
                "b",
                "s"
            )
            .contains("\"2026-12-01\"")
        );
    }

    #[test]
    fn credentials_lost_says_both_ways_on() {
        let m = credentials_lost("urn:x", "app-oauth", &Lost::FromSecret);
        for needle in [
            "urn:x",
            "Secret app-oauth",
            "Restore the Secret",
            ROTATE_ANNOTATION,
            "replacementPolicy is Manual",
        ] {
            assert!(m.contains(needle), "{needle} missing in {m}");
        }
        assert!(rotation_unsupported("r2", "urn:x").contains("\"r2\""));
    }

    #[test]
    fn a_secret_lost_with_a_restore_is_said_to_be_gone_for_good() {
        let superseded = Lost::Superseded {
            held: "urn:old".into(),
        };
        for (how, needle) in [
            (&superseded, "urn:old"),
            (&Lost::Declared, LOST_CLIENT_ANNOTATION),
        ] {
            let m = credentials_lost("urn:x", "app-oauth", how);
            for needle in [
                "urn:x",
                needle,
                "only once",
                "gone for good",
                ROTATE_ANNOTATION,
            ] {
                assert!(m.contains(needle), "{needle} missing in {m}");
            }
        }
        let foreign = exists_without_secret("app", "urn:x", "app-oauth", false);
        assert!(
            foreign.contains(&format!("{LOST_CLIENT_ANNOTATION}=urn:x")),
            "{foreign}"
        );
    }

    #[test]
    fn ready_message_lists_notes_after_the_client() {
        assert_eq!(
            registered("id-1", "s", &[]),
            "Client id-1 is registered in Collibra; its credentials are in Secret s"
        );
        let notes = vec![
            grant_drift(&["a".to_owned()], &["b".to_owned()]),
            ROTATION_UNSUPPORTED_NOTE.to_owned(),
        ];
        let m = registered("id-1", "s", &notes);
        assert!(m.starts_with("Client id-1 is registered"), "{m}");
        assert!(
            m.contains(r#"; grant types in Collibra are ["a"], the spec asks for ["b"]"#),
            "{m}"
        );
        assert!(m.ends_with("; a rotation was requested but Collibra does not support DELETE, so credentials cannot be rotated"), "{m}");
    }

    #[test]
    fn exists_without_secret_says_what_to_do_for_own_and_foreign_clients() {
        let own = exists_without_secret("n", "id-9", "s", true);
        assert!(own.contains("was registered by this operator"), "{own}");
        assert!(
            own.contains("An administrator can delete client id-9"),
            "{own}"
        );
        let foreign = exists_without_secret("n", "id-9", "s", false);
        assert!(foreign.contains("already exists in Collibra"), "{foreign}");
        for m in [own, foreign] {
            assert!(
                m.contains("pre-create Secret s with its client_id and client_secret and the label app.kubernetes.io/managed-by=collibra-oauth-operator"),
                "{m}"
            );
        }
    }

    #[test]
    fn collibra_failures_name_the_operation_and_the_wait() {
        let e = collibra_client::Error::NotFound {
            operation: Operation::Delete,
        };
        let m = collibra_failure(false, Operation::Delete, &e, Duration::from_millis(300));
        assert!(m.starts_with("Collibra is unavailable (delete): "), "{m}");
        assert!(m.ends_with("; retrying in 1s"), "{m}");
        let m = collibra_failure(true, Operation::Register, &e, Duration::from_secs(300));
        assert!(m.starts_with("Collibra rejected register: "), "{m}");
    }

    #[test]
    fn each_issuance_has_its_own_note() {
        let notes: Vec<String> = [
            Issuance::Registered,
            Issuance::Recreated,
            Issuance::Rotated,
            Issuance::Replaced,
        ]
        .into_iter()
        .map(|k| issued(k, "id-2", "s"))
        .collect();
        for (i, n) in notes.iter().enumerate() {
            assert!(n.contains("id-2") && n.contains("Secret s"), "{n}");
            assert!(!notes[..i].contains(n), "{n} repeated");
        }
    }

    #[test]
    fn truncate_cuts_on_a_character_boundary() {
        assert_eq!(truncate("abc".to_owned(), 5), "abc");
        assert_eq!(truncate("abcdef".to_owned(), 3), "abc");
        // "é" is two bytes: a cut in its middle moves before it.
        assert_eq!(truncate("aé".to_owned(), 2), "a");
        assert_eq!(truncate("x".repeat(2000), MAX_NOTE_BYTES).len(), 1000);
    }
}

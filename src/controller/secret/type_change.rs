//! Changing the Secret's type without risking its credentials.
//!
//! Kubernetes keeps a Secret's `type` fixed, so a template that asks for
//! another type needs the Secret deleted and created again, and between the
//! two the credentials (which Collibra shows once) would exist only in the
//! operator's memory. So they are first copied into a backup Secret that the
//! OAuthClient owns, and every reconcile starts by finishing a replacement
//! it finds half done (docs/design.md, rule 13):
//!
//! 1. write the backup (the target keeps its credentials too);
//! 2. delete the target, with a precondition on exactly the Secret seen;
//! 3. create the target with the new type from the backup's credentials;
//! 4. delete the backup.
//!
//! A crash after any step leaves the credentials in the target, the backup,
//! or both; [`next_step`] reads which and says how to go on. Pure: the
//! requests are made in the reconciler.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::ResourceExt;
use secrecy::ExposeSecret;

use super::{
    ROTATED_FOR_ANNOTATION, owner_reference,
    shape::{Credentials, DEFAULT_KEYS, DEFAULT_TYPE, stored_credentials, type_of},
};
use crate::api::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, OAuthClient, REGISTERING_ANNOTATION};

/// Annotation on the backup naming the Secret it keeps the credentials of.
pub const BACKUP_OF_ANNOTATION: &str = "oauth.collibra.dev/backup-of";

/// What every backup Secret's name starts with; its owner's uid follows.
pub const BACKUP_PREFIX: &str = "collibra-oauth-backup-";

/// Name of the backup Secret of `owner`: from its uid, so it is the same
/// after a restart and cannot be a name a user chose.
pub fn backup_name(owner: &OAuthClient) -> String {
    format!(
        "{BACKUP_PREFIX}{}",
        owner.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// The backup body: an Opaque Secret with the credentials under the default
/// keys, owned by `owner` (garbage-collected with it), labelled so the
/// operator's watch sees it. `None` when `current` holds no credentials
/// (then there is nothing to lose, and no backup is needed).
pub fn backup(owner: &OAuthClient, current: &Secret) -> Option<Secret> {
    let creds = stored_credentials(current)?;
    let mut annotations = BTreeMap::from([(BACKUP_OF_ANNOTATION.to_owned(), owner.secret_name())]);
    if let Some(r) = current.annotations().get(ROTATED_FOR_ANNOTATION) {
        annotations.insert(ROTATED_FOR_ANNOTATION.to_owned(), r.clone());
    }
    let keys = DEFAULT_KEYS;
    let data = BTreeMap::from([
        (
            keys.client_id.unwrap_or("client_id").to_owned(),
            ByteString(creds.client_id.into_bytes()),
        ),
        (
            keys.client_secret.to_owned(),
            ByteString(creds.client_secret.expose_secret().as_bytes().to_vec()),
        ),
    ]);
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(backup_name(owner)),
            namespace: owner.namespace(),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_owned(),
                MANAGED_BY_VALUE.to_owned(),
            )])),
            annotations: Some(annotations),
            owner_references: owner_reference(owner).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        type_: Some(DEFAULT_TYPE.to_owned()),
        data: Some(data),
        ..Secret::default()
    })
}

/// Whether `backup` is a backup of `owner`'s Secret (controlled by it, and
/// naming its Secret); anything else under that name is left alone.
pub fn is_backup_of(owner: &OAuthClient, backup: &Secret) -> bool {
    let uid = owner.metadata.uid.as_deref();
    let controlled = backup
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && Some(r.uid.as_str()) == uid);
    controlled && backup.annotations().get(BACKUP_OF_ANNOTATION) == Some(&owner.secret_name())
}

/// The credentials a backup holds, with the rotation they answered.
pub fn backed_up(backup: &Secret) -> Option<(Credentials, Option<String>)> {
    let creds = stored_credentials(backup)?;
    Some((
        creds,
        backup.annotations().get(ROTATED_FOR_ANNOTATION).cloned(),
    ))
}

/// What to do next about the Secret's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing: no type change pending, no backup left.
    Done,
    /// Step 1: write the backup.
    Backup,
    /// Step 2: delete the target (uid and resourceVersion as preconditions).
    DeleteTarget,
    /// Step 3: create the target from the backup's credentials.
    Restore,
    /// Step 4: delete the backup.
    DropBackup,
}

/// The recovery rule: given the target Secret (if it exists), the backup
/// (if it exists and is this object's) and the type the template wants,
/// the next step. Credentials are always in at least one of the two.
pub fn next_step(target: Option<&Secret>, backup: Option<&Secret>, want_type: &str) -> Step {
    let has_creds = |s: &Secret| stored_credentials(s).is_some();
    let backup_holds = backup.is_some_and(has_creds);
    match target {
        // The target is gone: only the backup can bring it back.
        None if backup_holds => Step::Restore,
        None if backup.is_some() => Step::DropBackup,
        None => Step::Done,
        // A registration in flight: its claim proves the client ours after a
        // crash, so the Secret is not replaced until the credentials are in.
        Some(t) if t.annotations().contains_key(REGISTERING_ANNOTATION) && !backup_holds => {
            Step::Done
        }
        Some(t) => {
            let right_type = type_of(t) == want_type;
            match (right_type, has_creds(t), backup.is_some()) {
                (true, true, true) => Step::DropBackup,
                (true, true, false) | (true, false, false) => Step::Done,
                // Right type, credentials only in the backup: a target
                // emptied meanwhile. Recreating it is the restore.
                (true, false, true) if backup_holds => Step::DeleteTarget,
                (true, false, true) => Step::DropBackup,
                // Wrong type: back up whatever the target holds first.
                (false, true, false) => Step::Backup,
                (false, true, true) if !backup_holds => Step::Backup,
                (false, _, _) => Step::DeleteTarget,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OAuthClientSpec;

    const SECRET: &str = "backup-me-0099";

    fn owner() -> OAuthClient {
        let mut o = OAuthClient::new(
            "billing",
            serde_json::from_value::<OAuthClientSpec>(serde_json::json!({
                "clientName": "billing-etl",
                "secretTemplate": {"type": "kubernetes.io/basic-auth",
                    "keys": {"clientId": "username", "clientSecret": "password"}}
            }))
            .expect("spec"),
        );
        o.metadata.namespace = Some("team-a".into());
        o.metadata.uid = Some("uid-1".into());
        o
    }

    fn target(type_: &str, creds: bool) -> Secret {
        let mut data = BTreeMap::from([("client_name".to_owned(), ByteString(b"n".to_vec()))]);
        if creds {
            data.insert("client_id".into(), ByteString(b"id-1".to_vec()));
            data.insert(
                "client_secret".into(),
                ByteString(SECRET.as_bytes().to_vec()),
            );
        }
        Secret {
            metadata: ObjectMeta {
                name: Some("billing".into()),
                annotations: Some(BTreeMap::from([(
                    ROTATED_FOR_ANNOTATION.to_owned(),
                    "r1".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some(type_.to_owned()),
            data: Some(data),
            ..Secret::default()
        }
    }

    const BASIC: &str = "kubernetes.io/basic-auth";

    #[test]
    fn the_backup_holds_the_credentials_and_belongs_to_the_object() {
        let o = owner();
        let b = backup(&o, &target("Opaque", true)).expect("a backup");
        assert_eq!(
            b.metadata.name.as_deref(),
            Some("collibra-oauth-backup-uid-1")
        );
        assert_eq!(b.type_.as_deref(), Some("Opaque"));
        assert!(is_backup_of(&o, &b));
        let (creds, rotated_for) = backed_up(&b).expect("credentials");
        assert_eq!(creds.client_id, "id-1");
        assert_eq!(creds.client_secret.expose_secret(), SECRET);
        assert_eq!(rotated_for.as_deref(), Some("r1"));
        assert!(
            backup(&o, &target("Opaque", false)).is_none(),
            "nothing to back up"
        );

        let mut other = o.clone();
        other.metadata.uid = Some("uid-2".into());
        assert!(
            !is_backup_of(&other, &b),
            "another object's backup is not ours"
        );
        let mut renamed = o.clone();
        renamed.spec.secret_name = Some("elsewhere".into());
        assert!(!is_backup_of(&renamed, &b));
    }

    #[test]
    fn every_crash_point_has_a_next_step_that_keeps_the_credentials() {
        let o = owner();
        let old = target("Opaque", true);
        let b = backup(&o, &old).expect("backup");
        let new = target(BASIC, true);
        // The walk: each state, the step it leads to.
        assert_eq!(next_step(Some(&old), None, BASIC), Step::Backup);
        assert_eq!(next_step(Some(&old), Some(&b), BASIC), Step::DeleteTarget);
        assert_eq!(next_step(None, Some(&b), BASIC), Step::Restore);
        assert_eq!(next_step(Some(&new), Some(&b), BASIC), Step::DropBackup);
        assert_eq!(next_step(Some(&new), None, BASIC), Step::Done);
        // No change asked for, none pending.
        assert_eq!(next_step(Some(&old), None, "Opaque"), Step::Done);
        assert_eq!(next_step(None, None, BASIC), Step::Done);
        // A Secret without credentials of the wrong type is simply replaced...
        let bare = target("Opaque", false);
        assert_eq!(next_step(Some(&bare), None, BASIC), Step::DeleteTarget);
        // ...but not a claim: it proves a registration in flight ours.
        let mut claim = target("Opaque", false);
        claim.metadata.annotations.get_or_insert_default().insert(
            REGISTERING_ANNOTATION.to_owned(),
            "2026-01-01T00:00:00Z".to_owned(),
        );
        assert_eq!(next_step(Some(&claim), None, BASIC), Step::Done);
        // A target emptied while a backup holds the credentials: recreate it.
        let emptied = target(BASIC, false);
        assert_eq!(
            next_step(Some(&emptied), Some(&b), BASIC),
            Step::DeleteTarget
        );
        // A backup without credentials is worth nothing: drop it, or write
        // it again before deleting a target that has them.
        let empty_backup = target("Opaque", false);
        assert_eq!(
            next_step(None, Some(&empty_backup), BASIC),
            Step::DropBackup
        );
        assert_eq!(
            next_step(Some(&old), Some(&empty_backup), BASIC),
            Step::Backup
        );
        assert_eq!(
            next_step(Some(&emptied), Some(&empty_backup), BASIC),
            Step::DropBackup
        );
        // The target is never deleted while it alone holds the credentials.
        for (t, bk) in [
            (Some(&old), None),
            (Some(&old), Some(&empty_backup)),
            (Some(&new), None),
        ] {
            assert_ne!(next_step(t, bk, BASIC), Step::DeleteTarget, "{t:?} {bk:?}");
        }
    }

    #[test]
    fn restoring_gives_the_backed_up_credentials() {
        let o = owner();
        let b = backup(&o, &target("Opaque", true)).expect("backup");
        let (creds, rotated_for) = backed_up(&b).expect("contents");
        assert_eq!(
            (
                creds.client_id.as_str(),
                creds.client_secret.expose_secret(),
                rotated_for.as_deref()
            ),
            ("id-1", SECRET, Some("r1"))
        );
    }
}

//! The credentials Secret: reading what the operator may know of it, and
//! building the bodies it applies (the claim before a registration, the
//! credentials right after it).

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
    jiff::Timestamp,
};
use kube::{Resource, ResourceExt};
use secrecy::{ExposeSecret, SecretString};

use super::decide::{ManagedSecret, SecretView};
use crate::api::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, OAuthClient, REGISTERING_ANNOTATION};

/// Annotation recording which rotation request the credentials answer.
pub const ROTATED_FOR_ANNOTATION: &str = "oauth.collibra.dev/rotated-for";

/// Secret data keys (docs/design.md, "The Secret").
pub const KEY_CLIENT_ID: &str = "client_id";
/// See [`KEY_CLIENT_ID`].
pub const KEY_CLIENT_SECRET: &str = "client_secret";
/// See [`KEY_CLIENT_ID`].
pub const KEY_CLIENT_NAME: &str = "client_name";
/// See [`KEY_CLIENT_ID`].
pub const KEY_TOKEN_URL: &str = "token_url";
/// How a client authenticates at `token_url`, named as in RFC 7591
/// (client metadata) and with a value from IANA's registry of token endpoint
/// authentication methods, the words libraries take as they are.
pub const KEY_TOKEN_ENDPOINT_AUTH_METHOD: &str = "token_endpoint_auth_method";
/// The method written: Collibra accepts it, and unlike `client_secret_basic`
/// it cannot be broken by a library that skips RFC 6749 2.3.1's form-encoding
/// of ids that contain ':'.
pub const TOKEN_ENDPOINT_AUTH_METHOD: &str = "client_secret_post";

/// Whether a Secret carries the managed-by label.
pub fn is_labeled(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY_VALUE)
}

/// Why a Secret without the managed-by label is not the operator's.
pub fn unlabeled(secret_name: &str) -> String {
    format!(
        "Secret {secret_name} exists without the label {MANAGED_BY_LABEL}={MANAGED_BY_VALUE}; it is never overwritten"
    )
}

/// Classifies an existing Secret from `owner`'s point of view. Only the
/// metadata decides whether it is ours; data is read only from ours.
pub fn view(owner: &OAuthClient, secret: &Secret) -> SecretView {
    let meta = &secret.metadata;
    if !is_labeled(meta) {
        return SecretView::Foreign {
            why: unlabeled(&secret.name_any()),
        };
    }
    let uid = owner.metadata.uid.as_deref();
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true));
    let owned = match controller {
        None => false,
        Some(r) if Some(r.uid.as_str()) == uid => true,
        Some(r) => {
            return SecretView::Foreign {
                why: format!(
                    "Secret {} belongs to {} {}",
                    secret.name_any(),
                    r.kind,
                    r.name
                ),
            };
        }
    };
    let text = |key: &str| -> Option<String> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .filter(|s| !s.trim().is_empty())
    };
    let has_secret = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KEY_CLIENT_SECRET))
        .is_some_and(|v| !v.0.is_empty());
    let annotations = meta.annotations.as_ref();
    SecretView::Managed(ManagedSecret {
        client_id: text(KEY_CLIENT_ID).filter(|_| has_secret),
        registering_since: annotations
            .and_then(|a| a.get(REGISTERING_ANNOTATION))
            .and_then(|v| v.parse::<Timestamp>().ok()),
        rotated_for: annotations
            .and_then(|a| a.get(ROTATED_FOR_ANNOTATION))
            .cloned(),
        owned,
    })
}

/// Credentials to put in the Secret.
pub struct Credentials<'a> {
    /// Collibra's id.
    pub client_id: &'a str,
    /// The secret Collibra showed once.
    pub client_secret: &'a SecretString,
}

/// What the Secret should hold besides metadata.
pub enum Contents<'a> {
    /// A claim: no credentials yet (or keep `keep` as they are), a
    /// registration starts at `since`.
    Claim {
        since: Timestamp,
        keep: Option<&'a Secret>,
    },
    /// Fresh credentials; the claim annotation goes away.
    Credentials {
        creds: Credentials<'a>,
        rotated_for: Option<&'a str>,
    },
    /// Keep the data of `current`, fix metadata and the descriptive keys;
    /// keep its claim annotation only if `keep_claim`.
    Refresh {
        current: &'a Secret,
        keep_claim: bool,
    },
}

/// The Secret the operator wants; [`merge_patch`] turns it into the body
/// it sends. `orphan` drops the ownerReference so the Secret outlives the
/// OAuthClient. The one place that decides what a managed Secret holds.
pub fn desired(
    owner: &OAuthClient,
    token_url: &str,
    contents: Contents<'_>,
    orphan: bool,
) -> Secret {
    let tmpl = owner.spec.secret_template.clone().unwrap_or_default();
    let mut labels = tmpl.labels;
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned());
    let mut annotations = tmpl.annotations;
    let mut data = BTreeMap::new();
    let mut put = |k: &str, v: &[u8]| {
        data.insert(k.to_owned(), ByteString(v.to_vec()));
    };
    put(KEY_CLIENT_NAME, owner.spec.client_name.as_bytes());
    put(KEY_TOKEN_URL, token_url.as_bytes());
    put(
        KEY_TOKEN_ENDPOINT_AUTH_METHOD,
        TOKEN_ENDPOINT_AUTH_METHOD.as_bytes(),
    );
    let copy_from = |s: &Secret,
                     data: &mut BTreeMap<String, ByteString>,
                     ann: &mut BTreeMap<String, String>| {
        for key in [KEY_CLIENT_ID, KEY_CLIENT_SECRET] {
            if let Some(v) = s.data.as_ref().and_then(|d| d.get(key)) {
                data.insert(key.to_owned(), v.clone());
            }
        }
        if let Some(r) = s.annotations().get(ROTATED_FOR_ANNOTATION) {
            ann.insert(ROTATED_FOR_ANNOTATION.to_owned(), r.clone());
        }
    };
    match contents {
        Contents::Claim { since, keep } => {
            annotations.insert(REGISTERING_ANNOTATION.to_owned(), since.to_string());
            if let Some(s) = keep {
                copy_from(s, &mut data, &mut annotations);
            }
        }
        Contents::Credentials { creds, rotated_for } => {
            data.insert(
                KEY_CLIENT_ID.to_owned(),
                ByteString(creds.client_id.as_bytes().to_vec()),
            );
            data.insert(
                KEY_CLIENT_SECRET.to_owned(),
                ByteString(creds.client_secret.expose_secret().as_bytes().to_vec()),
            );
            if let Some(r) = rotated_for {
                annotations.insert(ROTATED_FOR_ANNOTATION.to_owned(), r.to_owned());
            }
        }
        Contents::Refresh {
            current,
            keep_claim,
        } => {
            copy_from(current, &mut data, &mut annotations);
            if let Some(since) = current
                .annotations()
                .get(REGISTERING_ANNOTATION)
                .filter(|_| keep_claim)
            {
                annotations.insert(REGISTERING_ANNOTATION.to_owned(), since.clone());
            }
        }
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(owner.secret_name()),
            namespace: owner.namespace(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: (!orphan)
                .then(|| owner_reference(owner))
                .flatten()
                .map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

fn owner_reference(owner: &OAuthClient) -> Option<OwnerReference> {
    let mut r = owner.controller_owner_ref(&())?;
    r.block_owner_deletion = Some(true);
    Some(r)
}

/// The JSON merge patch that makes the Secret look like `want` in what the
/// operator manages: the claim annotation is removed when `want` has none,
/// the operator's ownerReference is set or removed, others' are kept.
pub fn merge_patch(want: &Secret, current: Option<&Secret>) -> serde_json::Value {
    let mut annotations = serde_json::Map::new();
    for (k, v) in want.metadata.annotations.iter().flatten() {
        annotations.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
    if !annotations.contains_key(REGISTERING_ANNOTATION) {
        annotations.insert(REGISTERING_ANNOTATION.to_owned(), serde_json::Value::Null);
    }
    let ours: Vec<OwnerReference> = want.metadata.owner_references.clone().unwrap_or_default();
    let mut owners: Vec<OwnerReference> = current
        .and_then(|c| c.metadata.owner_references.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.kind != "OAuthClient" || r.api_version != ours_api_version())
        .collect();
    owners.extend(ours);
    let data: serde_json::Map<String, serde_json::Value> = want
        .data
        .iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
            )
        })
        .collect();
    serde_json::json!({
        "metadata": {
            "labels": want.metadata.labels,
            "annotations": annotations,
            "ownerReferences": owners,
        },
        "type": want.type_,
        "data": data,
    })
}

fn ours_api_version() -> String {
    format!("{}/v1alpha1", crate::api::GROUP)
}

/// Whether applying `want` would change anything in `have` that the
/// operator manages (labels, annotations, owner, data).
pub fn needs_update(have: &Secret, want: &Secret) -> bool {
    let subset = |want: &Option<BTreeMap<String, String>>,
                  have: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    let have_ann = have.metadata.annotations.clone().unwrap_or_default();
    let stale_claim = have_ann.contains_key(REGISTERING_ANNOTATION)
        && !want
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(REGISTERING_ANNOTATION));
    let owners = |s: &Secret| -> Vec<String> {
        s.metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.controller == Some(true))
            .map(|r| r.uid.clone())
            .collect()
    };
    !subset(&want.metadata.labels, &have.metadata.labels)
        || !subset(&want.metadata.annotations, &have.metadata.annotations)
        || stale_claim
        || owners(have) != owners(want)
        || want
            .data
            .iter()
            .flatten()
            .any(|(k, v)| have.data.as_ref().and_then(|d| d.get(k)) != Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OAuthClientSpec;

    fn owner() -> OAuthClient {
        let mut o = OAuthClient::new(
            "billing",
            serde_json::from_value::<OAuthClientSpec>(serde_json::json!({
                "clientName": "billing-etl",
                "secretTemplate": {"labels": {"team": "a"}, "annotations": {"note": "x"}}
            }))
            .expect("spec"),
        );
        o.metadata.namespace = Some("team-a".into());
        o.metadata.uid = Some("uid-1".into());
        o
    }

    fn data(s: &Secret, k: &str) -> Option<String> {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
    }

    #[test]
    fn credentials_secret_has_documented_keys_owner_and_template() {
        let o = owner();
        let secret = SecretString::from("s3cr3t");
        let s = desired(
            &o,
            "https://c/rest/oauth/v2/token",
            Contents::Credentials {
                creds: Credentials {
                    client_id: "id1",
                    client_secret: &secret,
                },
                rotated_for: Some("r1"),
            },
            false,
        );
        assert_eq!(data(&s, KEY_CLIENT_ID).as_deref(), Some("id1"));
        assert_eq!(data(&s, KEY_CLIENT_SECRET).as_deref(), Some("s3cr3t"));
        assert_eq!(data(&s, KEY_CLIENT_NAME).as_deref(), Some("billing-etl"));
        assert_eq!(
            data(&s, KEY_TOKEN_URL).as_deref(),
            Some("https://c/rest/oauth/v2/token")
        );
        assert_eq!(
            data(&s, KEY_TOKEN_ENDPOINT_AUTH_METHOD).as_deref(),
            Some("client_secret_post")
        );
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        let labels = s.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get(MANAGED_BY_LABEL).map(String::as_str),
            Some(MANAGED_BY_VALUE)
        );
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        let ann = s.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get("note").map(String::as_str), Some("x"));
        assert_eq!(
            ann.get(ROTATED_FOR_ANNOTATION).map(String::as_str),
            Some("r1")
        );
        assert!(!ann.contains_key(REGISTERING_ANNOTATION));
        let r = &s.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!(
            (r.uid.as_str(), r.controller, r.kind.as_str()),
            ("uid-1", Some(true), "OAuthClient")
        );

        // Reading it back gives the credentials' id and ownership.
        match view(&o, &s) {
            SecretView::Managed(m) => {
                assert_eq!(m.client_id.as_deref(), Some("id1"));
                assert!(m.owned);
                assert_eq!(m.rotated_for.as_deref(), Some("r1"));
            }
            other => panic!("unexpected {other:?}"),
        }
        // Orphaning drops only the owner.
        let orphan = desired(
            &o,
            "u",
            Contents::Refresh {
                current: &s,
                keep_claim: false,
            },
            true,
        );
        assert!(orphan.metadata.owner_references.is_none());
        assert_eq!(data(&orphan, KEY_CLIENT_SECRET).as_deref(), Some("s3cr3t"));
    }

    #[test]
    fn claim_keeps_old_credentials_and_marks_the_attempt() {
        let o = owner();
        let secret = SecretString::from("old");
        let old = desired(
            &o,
            "u",
            Contents::Credentials {
                creds: Credentials {
                    client_id: "old-id",
                    client_secret: &secret,
                },
                rotated_for: None,
            },
            false,
        );
        let since = Timestamp::from_second(1_000).expect("ts");
        let claim = desired(
            &o,
            "u",
            Contents::Claim {
                since,
                keep: Some(&old),
            },
            false,
        );
        assert_eq!(data(&claim, KEY_CLIENT_SECRET).as_deref(), Some("old"));
        match view(&o, &claim) {
            SecretView::Managed(m) => assert_eq!(m.registering_since, Some(since)),
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            needs_update(&claim, &old),
            "the claim annotation must be removed"
        );
        assert!(!needs_update(&old, &old));
    }

    #[test]
    fn merge_patch_removes_the_claim_and_only_our_owner() {
        let o = owner();
        let since = Timestamp::from_second(5).expect("ts");
        let mut claimed = desired(&o, "u", Contents::Claim { since, keep: None }, false);
        let foreign_owner = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "d".into(),
            uid: "dep".into(),
            ..OwnerReference::default()
        };
        if let Some(refs) = claimed.metadata.owner_references.as_mut() {
            refs.push(foreign_owner.clone());
        }
        let secret = SecretString::from("s");
        let creds = desired(
            &o,
            "u",
            Contents::Credentials {
                creds: Credentials {
                    client_id: "id",
                    client_secret: &secret,
                },
                rotated_for: None,
            },
            false,
        );
        let patch = merge_patch(&creds, Some(&claimed));
        assert_eq!(
            patch["metadata"]["annotations"][REGISTERING_ANNOTATION],
            serde_json::Value::Null
        );
        assert_eq!(patch["data"][KEY_CLIENT_SECRET], serde_json::json!("cw=="));
        let uids: Vec<&str> = patch["metadata"]["ownerReferences"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|r| r["uid"].as_str())
            .collect();
        assert_eq!(uids, vec!["dep", "uid-1"]);

        let orphan = desired(
            &o,
            "u",
            Contents::Refresh {
                current: &claimed,
                keep_claim: true,
            },
            true,
        );
        let patch = merge_patch(&orphan, Some(&claimed));
        let uids: Vec<&str> = patch["metadata"]["ownerReferences"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|r| r["uid"].as_str())
            .collect();
        assert_eq!(uids, vec!["dep"], "orphaning drops only our owner");
        assert_eq!(
            patch["metadata"]["annotations"][REGISTERING_ANNOTATION],
            serde_json::json!("1970-01-01T00:00:05Z")
        );
    }

    #[test]
    fn unlabeled_or_foreign_owned_secrets_are_foreign() {
        let o = owner();
        let plain = Secret {
            metadata: ObjectMeta {
                name: Some("billing".into()),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        };
        assert!(matches!(view(&o, &plain), SecretView::Foreign { .. }));

        let mut other = o.clone();
        other.metadata.uid = Some("uid-2".into());
        other.metadata.name = Some("other".into());
        let theirs = desired(
            &other,
            "u",
            Contents::Refresh {
                current: &plain,
                keep_claim: false,
            },
            false,
        );
        match view(&o, &theirs) {
            SecretView::Foreign { why } => assert!(why.contains("other"), "{why}"),
            v => panic!("unexpected {v:?}"),
        }
    }

    #[test]
    fn empty_secret_value_counts_as_no_credentials() {
        let o = owner();
        let mut s = desired(
            &o,
            "u",
            Contents::Refresh {
                current: &Secret::default(),
                keep_claim: false,
            },
            false,
        );
        if let Some(d) = s.data.as_mut() {
            d.insert(KEY_CLIENT_ID.into(), ByteString(b"id".to_vec()));
            d.insert(KEY_CLIENT_SECRET.into(), ByteString(Vec::new()));
        }
        match view(&o, &s) {
            SecretView::Managed(m) => assert_eq!(m.client_id, None),
            v => panic!("unexpected {v:?}"),
        }
    }
}

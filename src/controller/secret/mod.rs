//! The credentials Secret, everything that decides its shape in one tree.
//! Here: whose a Secret is ([`classify`], [`view`], [`settled`]), the
//! bodies the operator applies (the claim before a registration, the
//! credentials right after it: [`desired`]) and the one [`merge_patch`]
//! that writes them. Below: [`template`] renders `spec.secretTemplate`,
//! [`shape`] is what a template decides and how it is recorded and read
//! back, [`type_change`] replaces a Secret whose type must change. The
//! requests themselves are made by the reconciler
//! (`controller/reconcile/secret_io.rs`).

pub mod shape;
pub mod template;
pub mod type_change;

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
    jiff::Timestamp,
};
use kube::{Resource, ResourceExt};
use secrecy::SecretString;

use self::{
    shape::{DEFAULT_TYPE, differs, shape_of, shape_patch, stored_credentials, type_changes},
    template::{Facts, TemplateError},
};
use super::decide::{ManagedSecret, SecretView};
use crate::api::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, OAuthClient, REGISTERING_ANNOTATION};

/// Annotation recording which rotation request the credentials answer.
pub const ROTATED_FOR_ANNOTATION: &str = "oauth.collibra.dev/rotated-for";

/// Annotation recording what the operator last rendered into the Secret:
/// the client id and a digest of every input of the rendering except the
/// secret ([`Rendered`]). With it the Secret's metadata alone tells whether
/// its data is up to date, so the watch holds no data (docs/design.md,
/// "Memory").
pub const RENDERED_ANNOTATION: &str = "oauth.collibra.dev/rendered";

/// The annotations [`settled`] reads: all a cached Secret needs to keep.
pub const SETTLED_ANNOTATIONS: [&str; 3] = [
    RENDERED_ANNOTATION,
    REGISTERING_ANNOTATION,
    ROTATED_FOR_ANNOTATION,
];

/// Bumped whenever what [`desired`] writes changes for the same inputs, so
/// that Secrets written by an older operator are read and rewritten once.
const RENDERING_VERSION: u32 = 1;

/// The value of [`RENDERED_ANNOTATION`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rendered {
    /// The client id the Secret holds.
    pub client_id: String,
    /// [`inputs_digest`] of the rendering.
    pub inputs: String,
}

impl Rendered {
    fn of(meta: &ObjectMeta) -> Option<Rendered> {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(RENDERED_ANNOTATION))
            .and_then(|v| serde_json::from_str(v).ok())
    }
}

/// A digest of what the Secret's contents are rendered from, besides the
/// secret itself: the template, the descriptive facts and the client id.
pub fn inputs_digest(owner: &OAuthClient, endpoint: Endpoint<'_>, client_id: &str) -> String {
    use sha2::Digest;
    let mut input = serde_json::json!({
        "version": RENDERING_VERSION,
        "template": owner.spec.secret_template,
        "clientName": owner.spec.client_name,
        "grantTypes": grant_types(owner),
        "tokenUrl": endpoint.token_url,
        "collibraUrl": endpoint.collibra_url,
        "tokenEndpointAuthMethod": TOKEN_ENDPOINT_AUTH_METHOD,
        "clientId": client_id,
    });
    // Only when there are any: the digest of every object without them
    // stays what it was, so an upgrade rewrites no Secret for this.
    if !owner.spec.redirect_uris.is_empty()
        && let Some(fields) = input.as_object_mut()
    {
        fields.insert(
            "redirectUris".to_owned(),
            serde_json::json!(owner.spec.redirect_uris),
        );
    }
    let digest = sha2::Sha256::digest(input.to_string().as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

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

/// Whose a Secret is, from its metadata alone: `Err` with why it is
/// foreign, or whether `owner` is its controller owner (`false`: it has
/// none, so it is pre-created or orphaned and may be adopted).
pub fn classify(owner: &OAuthClient, meta: &ObjectMeta) -> Result<bool, String> {
    let name = meta.name.as_deref().unwrap_or_default();
    if !is_labeled(meta) {
        return Err(unlabeled(name));
    }
    let uid = owner.metadata.uid.as_deref();
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true));
    match controller {
        None => Ok(false),
        Some(r) if Some(r.uid.as_str()) == uid => Ok(true),
        Some(r) => Err(format!("Secret {name} belongs to {} {}", r.kind, r.name)),
    }
}

/// Classifies an existing Secret from `owner`'s point of view. Only the
/// metadata decides whether it is ours; data is read only from ours.
pub fn view(owner: &OAuthClient, secret: &Secret) -> SecretView {
    let owned = match classify(owner, &secret.metadata) {
        Ok(owned) => owned,
        Err(why) => return SecretView::Foreign { why },
    };
    let annotations = secret.metadata.annotations.as_ref();
    SecretView::Managed(ManagedSecret {
        // Wherever the Secret's shape put them (renamed keys, the id in an
        // annotation); both must be there and non-empty.
        client_id: stored_credentials(secret).map(|c| c.client_id),
        registering_since: annotations
            .and_then(|a| a.get(REGISTERING_ANNOTATION))
            .and_then(|v| v.parse::<Timestamp>().ok()),
        rotated_for: annotations
            .and_then(|a| a.get(ROTATED_FOR_ANNOTATION))
            .cloned(),
        owned,
    })
}

/// The Secret as [`view`] would see it, from its metadata alone, when the
/// metadata shows it settled: `owner`'s, no registration under way, and
/// rendered by this operator from exactly today's inputs
/// ([`RENDERED_ANNOTATION`]). Its data is then what [`desired`] would
/// write, unless someone else changed it, which the caller rules out.
/// `None`: the data must be read to know.
pub fn settled(
    owner: &OAuthClient,
    meta: &ObjectMeta,
    endpoint: Endpoint<'_>,
) -> Option<ManagedSecret> {
    if classify(owner, meta) != Ok(true) {
        return None;
    }
    let annotations = meta.annotations.as_ref()?;
    if annotations.contains_key(REGISTERING_ANNOTATION) {
        return None;
    }
    let rendered = Rendered::of(meta)?;
    if rendered.inputs != inputs_digest(owner, endpoint, &rendered.client_id) {
        return None;
    }
    Some(ManagedSecret {
        client_id: Some(rendered.client_id),
        registering_since: None,
        rotated_for: annotations.get(ROTATED_FOR_ANNOTATION).cloned(),
        owned: true,
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

/// Where the Secret's descriptive values come from: the Collibra
/// instance the object's client lives in.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint<'a> {
    /// The token endpoint (`token_url`).
    pub token_url: &'a str,
    /// The Collibra base URL (`collibra_url` in templates).
    pub collibra_url: &'a str,
}

/// The Secret body the operator applies (a merge patch under its own field
/// manager). `orphan` drops the ownerReference so the Secret outlives the
/// OAuthClient. Its shape (key names, templated keys, type, template
/// metadata) comes from `spec.secretTemplate` via [`template`];
/// a template that cannot be rendered still gives a Secret that keeps the
/// credentials ([`template::render_lenient`]): reconciles check the
/// template first and report it.
pub fn desired(
    owner: &OAuthClient,
    endpoint: Endpoint<'_>,
    contents: Contents<'_>,
    orphan: bool,
) -> Secret {
    let grant_types = grant_types(owner);
    let facts = facts(owner, endpoint, &grant_types);
    let template = owner.spec.secret_template.as_deref();
    let mut extra = BTreeMap::new();
    let rotated_from = |s: &Secret, extra: &mut BTreeMap<String, String>| {
        if let Some(r) = s.annotations().get(ROTATED_FOR_ANNOTATION) {
            extra.insert(ROTATED_FOR_ANNOTATION.to_owned(), r.clone());
        }
    };
    let creds = match contents {
        Contents::Claim { since, keep } => {
            extra.insert(REGISTERING_ANNOTATION.to_owned(), since.to_string());
            if let Some(s) = keep {
                rotated_from(s, &mut extra);
            }
            keep.and_then(stored_credentials)
        }
        Contents::Credentials { creds, rotated_for } => {
            if let Some(r) = rotated_for {
                extra.insert(ROTATED_FOR_ANNOTATION.to_owned(), r.to_owned());
            }
            Some(shape::Credentials {
                client_id: creds.client_id.to_owned(),
                client_secret: creds.client_secret.clone(),
            })
        }
        Contents::Refresh {
            current,
            keep_claim,
        } => {
            rotated_from(current, &mut extra);
            if let Some(since) = current
                .annotations()
                .get(REGISTERING_ANNOTATION)
                .filter(|_| keep_claim)
            {
                extra.insert(REGISTERING_ANNOTATION.to_owned(), since.clone());
            }
            stored_credentials(current)
        }
    };
    // Recorded only for a rendering without problems: one with a problem
    // must be read and reported again on every reconcile.
    let rendered = creds
        .as_ref()
        .filter(|c| template::render(template, &facts, Some(c)).is_ok())
        .map(|c| Rendered {
            client_id: c.client_id.clone(),
            inputs: inputs_digest(owner, endpoint, &c.client_id),
        })
        .and_then(|r| serde_json::to_string(&r).ok());
    if let Some(r) = rendered {
        extra.insert(RENDERED_ANNOTATION.to_owned(), r);
    }
    let shape = template::render_lenient(template, &facts, creds.as_ref());
    let mut labels = shape.labels;
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned());
    let mut annotations = shape.annotations;
    annotations.extend(extra);
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
        type_: Some(shape.type_),
        data: Some(shape.data),
        ..Secret::default()
    }
}

/// What templates may read about `owner` besides its credentials.
fn facts<'a>(
    owner: &'a OAuthClient,
    endpoint: Endpoint<'a>,
    grant_types: &'a [String],
) -> Facts<'a> {
    Facts {
        client_name: &owner.spec.client_name,
        token_url: endpoint.token_url,
        token_endpoint_auth_method: TOKEN_ENDPOINT_AUTH_METHOD,
        collibra_url: endpoint.collibra_url,
        grant_types,
        redirect_uris: &owner.spec.redirect_uris,
    }
}

/// Why `owner`'s template cannot be rendered (with `creds`, the credentials
/// the Secret holds, when it holds any), or `None` when it can.
pub fn template_problem(
    owner: &OAuthClient,
    endpoint: Endpoint<'_>,
    creds: Option<&shape::Credentials>,
) -> Option<TemplateError> {
    let grant_types = grant_types(owner);
    let facts = facts(owner, endpoint, &grant_types);
    template::render(owner.spec.secret_template.as_deref(), &facts, creds).err()
}

/// The Secret type `owner`'s template asks for.
pub fn desired_type(owner: &OAuthClient) -> &str {
    owner
        .spec
        .secret_template
        .as_ref()
        .and_then(|t| t.type_.as_deref())
        .unwrap_or(DEFAULT_TYPE)
}

/// Whether writing `want` over `have` changes what the template decides
/// (keys, templated data, template metadata): a reshaping.
pub fn reshapes(have: &Secret, want: &Secret) -> bool {
    differs(have, &shape_of(want))
}

/// The spec's grant types as Collibra spells them, sorted, once each.
pub fn grant_types(owner: &OAuthClient) -> Vec<String> {
    let mut g: Vec<String> = owner
        .spec
        .grant_types
        .iter()
        .map(|g| g.as_str().to_owned())
        .collect();
    g.sort();
    g.dedup();
    g
}

/// `owner` as the controller owner of a Secret it keeps (the credentials
/// Secret, or the backup during a type change).
pub(super) fn owner_reference(owner: &OAuthClient) -> Option<OwnerReference> {
    let mut r = owner.controller_owner_ref(&())?;
    r.block_owner_deletion = Some(true);
    Some(r)
}

/// The JSON merge patch that makes the Secret look like `want` in what the
/// operator manages: the claim annotation is removed when `want` has none,
/// the operator's ownerReference is set or removed, others' are kept.
pub fn merge_patch(want: &Secret, current: Option<&Secret>) -> serde_json::Value {
    let shape = shape_of(want);
    // A Secret's type cannot change in place, so the patch never carries
    // it; while the type differs (until the Secret is replaced) nothing is
    // removed either, so the old type's required keys stay valid and a
    // credentials write always succeeds.
    let same_type = current.is_none_or(|c| !type_changes(c, &shape));
    let mut body = shape_patch(current.filter(|_| same_type), &shape);
    let ours: Vec<OwnerReference> = want.metadata.owner_references.clone().unwrap_or_default();
    let mut owners: Vec<OwnerReference> = current
        .and_then(|c| c.metadata.owner_references.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.kind != "OAuthClient" || r.api_version != ours_api_version())
        .collect();
    owners.extend(ours);
    if let Some(meta) = body.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        if let Some(ann) = meta.get_mut("annotations").and_then(|a| a.as_object_mut()) {
            for key in [REGISTERING_ANNOTATION, RENDERED_ANNOTATION] {
                ann.entry(key).or_insert(serde_json::Value::Null);
            }
        }
        meta.insert(
            "ownerReferences".to_owned(),
            serde_json::to_value(owners).unwrap_or_default(),
        );
    }
    body
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
    let stale = |key: &str| {
        have_ann.contains_key(key)
            && !want
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(key))
    };
    let stale_claim = stale(REGISTERING_ANNOTATION) || stale(RENDERED_ANNOTATION);
    let owners = |s: &Secret| -> Vec<String> {
        s.metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.controller == Some(true))
            .map(|r| r.uid.clone())
            .collect()
    };
    differs(have, &shape_of(want))
        || !subset(&want.metadata.labels, &have.metadata.labels)
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

    fn ep(token_url: &str) -> Endpoint<'_> {
        Endpoint {
            token_url,
            collibra_url: "https://c",
        }
    }

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
        let s = issued(&o, ep("https://c/rest/oauth/v2/token"));
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
            ep("u"),
            Contents::Refresh {
                current: &s,
                keep_claim: false,
            },
            true,
        );
        assert!(orphan.metadata.owner_references.is_none());
        assert_eq!(data(&orphan, KEY_CLIENT_SECRET).as_deref(), Some("s3cr3t"));
    }

    fn issued(o: &OAuthClient, endpoint: Endpoint<'_>) -> Secret {
        let secret = SecretString::from("s3cr3t");
        desired(
            o,
            endpoint,
            Contents::Credentials {
                creds: Credentials {
                    client_id: "id1",
                    client_secret: &secret,
                },
                rotated_for: Some("r1"),
            },
            false,
        )
    }

    #[test]
    fn metadata_vouches_for_data_only_while_every_input_is_unchanged() {
        let o = owner();
        let s = issued(&o, ep("https://c/token"));
        let m = settled(&o, &s.metadata, ep("https://c/token")).expect("settled");
        assert_eq!(m.client_id.as_deref(), Some("id1"));
        assert_eq!(m.rotated_for.as_deref(), Some("r1"));
        assert!(m.owned && m.registering_since.is_none());
        let rendered =
            s.metadata.annotations.as_ref().expect("annotations")[RENDERED_ANNOTATION].clone();
        assert!(!rendered.contains("s3cr3t"), "never the secret: {rendered}");

        // Another endpoint, template, name or grant: the data must be read.
        assert!(settled(&o, &s.metadata, ep("https://other/token")).is_none());
        let mut t = o.clone();
        t.spec.secret_template = None;
        assert!(settled(&t, &s.metadata, ep("https://c/token")).is_none());
        let mut n = o.clone();
        n.spec.client_name = "other".into();
        assert!(settled(&n, &s.metadata, ep("https://c/token")).is_none());
        // Another owner, no label, a claim under way: not settled either.
        let mut other = o.clone();
        other.metadata.uid = Some("uid-2".into());
        assert!(settled(&other, &s.metadata, ep("https://c/token")).is_none());
        let mut unlabeled = s.metadata.clone();
        unlabeled.labels = None;
        assert!(settled(&o, &unlabeled, ep("https://c/token")).is_none());
        let mut claim = s.metadata.clone();
        claim
            .annotations
            .get_or_insert_default()
            .insert(REGISTERING_ANNOTATION.into(), "2026-01-01T00:00:00Z".into());
        assert!(settled(&o, &claim, ep("https://c/token")).is_none());
        // A forged or garbled record vouches for nothing.
        let mut forged = s.metadata.clone();
        forged.annotations.get_or_insert_default().insert(
            RENDERED_ANNOTATION.into(),
            r#"{"clientId":"id2","inputs":"00"}"#.into(),
        );
        assert!(settled(&o, &forged, ep("https://c/token")).is_none());
    }

    #[test]
    fn redirect_uris_enter_the_digest_only_when_there_are_any() {
        use sha2::Digest;
        let o = owner();
        let endpoint = ep("https://c/token");
        // The formula before redirect URIs existed: objects without them
        // keep their digest, so no Secret is read or written for this.
        let before = serde_json::json!({
            "version": RENDERING_VERSION,
            "template": o.spec.secret_template,
            "clientName": o.spec.client_name,
            "grantTypes": grant_types(&o),
            "tokenUrl": endpoint.token_url,
            "collibraUrl": endpoint.collibra_url,
            "tokenEndpointAuthMethod": TOKEN_ENDPOINT_AUTH_METHOD,
            "clientId": "id1",
        });
        let digest = sha2::Sha256::digest(before.to_string().as_bytes());
        let before: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(inputs_digest(&o, endpoint, "id1"), before);

        let mut with = o.clone();
        with.spec.redirect_uris = vec!["https://app.example/cb".into()];
        let s = issued(&with, endpoint);
        assert!(settled(&with, &s.metadata, endpoint).is_some());
        assert_ne!(inputs_digest(&with, endpoint, "id1"), before);
        // A changed redirect URI means the data must be rendered again.
        let mut changed = with.clone();
        changed.spec.redirect_uris = vec!["https://app.example/v2/cb".into()];
        assert!(settled(&changed, &s.metadata, endpoint).is_none());
    }

    #[test]
    fn a_claim_without_credentials_records_no_rendering_and_a_patch_removes_it() {
        let o = owner();
        let done = issued(&o, ep("u"));
        let claim = desired(
            &o,
            ep("u"),
            Contents::Claim {
                since: Timestamp::now(),
                keep: None,
            },
            false,
        );
        assert!(
            !claim
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(RENDERED_ANNOTATION))
        );
        let patch = merge_patch(&claim, Some(&done));
        assert!(patch["metadata"]["annotations"][RENDERED_ANNOTATION].is_null());
        assert!(needs_update(&done, &claim));
    }

    #[test]
    fn a_template_that_cannot_be_rendered_records_no_rendering() {
        let mut o = owner();
        o.spec.secret_template = Some(
            serde_json::from_value(serde_json::json!({
                "data": {"cfg": "{{ no_such_fact.x }}"}
            }))
            .expect("template"),
        );
        assert!(
            template_problem(&o, ep("u"), None).is_some(),
            "the template is broken"
        );
        let s = issued(&o, ep("u"));
        assert!(settled(&o, &s.metadata, ep("u")).is_none());
    }

    #[test]
    fn claim_keeps_old_credentials_and_marks_the_attempt() {
        let o = owner();
        let secret = SecretString::from("old");
        let old = desired(
            &o,
            ep("u"),
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
            ep("u"),
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
        let mut claimed = desired(&o, ep("u"), Contents::Claim { since, keep: None }, false);
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
            ep("u"),
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
            ep("u"),
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
            ep("u"),
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
            ep("u"),
            Contents::Refresh {
                current: &Secret::default(),
                keep_claim: false,
            },
            false,
        );
        if let Some(d) = s.data.as_mut() {
            d.insert(
                KEY_CLIENT_ID.into(),
                k8s_openapi::ByteString(b"id".to_vec()),
            );
            d.insert(
                KEY_CLIENT_SECRET.into(),
                k8s_openapi::ByteString(Vec::new()),
            );
        }
        match view(&o, &s) {
            SecretView::Managed(m) => assert_eq!(m.client_id, None),
            v => panic!("unexpected {v:?}"),
        }
    }
}

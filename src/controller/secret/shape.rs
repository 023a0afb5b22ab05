//! The Secret's shape as stored: what the template decides in a Secret
//! ([`Shape`]: type, data, template labels and annotations), the record of
//! what the operator wrote ([`Record`], in [`SHAPE_ANNOTATION`]), reading
//! the credentials back wherever a shape put them, and the one merge patch
//! that brings a Secret to the operator's desired body
//! ([`super::merge_patch`]).
//!
//! The record is how keys, labels and annotations that leave the template
//! are removed while others' are left alone, and where the credentials are
//! after a rename. Pure functions only.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::api::SecretKeys;

/// Annotation on the Secret recording what the template wrote (JSON of
/// [`Record`]).
pub const SHAPE_ANNOTATION: &str = "oauth.collibra.dev/secret-shape";
/// Annotation holding the client id when the template leaves its key out
/// (the id is not secret, and the operator must still know it).
pub const CLIENT_ID_ANNOTATION: &str = "oauth.collibra.dev/client-id";
/// The Secret type when the template names none.
pub const DEFAULT_TYPE: &str = "Opaque";

/// Default key names (the Secret of an object without a template).
pub const DEFAULT_KEYS: StandardKeys<'static> = StandardKeys {
    client_id: Some("client_id"),
    client_secret: "client_secret",
    client_name: Some("client_name"),
    token_url: Some("token_url"),
    token_endpoint_auth_method: Some("token_endpoint_auth_method"),
};

/// The key names in effect for the five standard values; `None` leaves
/// that value out of the Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandardKeys<'a> {
    /// Key of the client id.
    pub client_id: Option<&'a str>,
    /// Key of the client secret (never left out).
    pub client_secret: &'a str,
    /// Key of the client name.
    pub client_name: Option<&'a str>,
    /// Key of the token URL.
    pub token_url: Option<&'a str>,
    /// Key of the token endpoint authentication method.
    pub token_endpoint_auth_method: Option<&'a str>,
}

impl<'a> StandardKeys<'a> {
    /// The names a template gives (defaults where it gives none; empty
    /// means left out).
    pub fn of(keys: Option<&'a SecretKeys>) -> Self {
        let pick = |given: Option<&'a String>, default: Option<&'static str>| match given {
            None => default,
            Some(s) if s.is_empty() => None,
            Some(s) => Some(s.as_str()),
        };
        let Some(k) = keys else {
            return DEFAULT_KEYS;
        };
        StandardKeys {
            client_id: pick(k.client_id.as_ref(), DEFAULT_KEYS.client_id),
            client_secret: pick(k.client_secret.as_ref(), Some(DEFAULT_KEYS.client_secret))
                .unwrap_or(DEFAULT_KEYS.client_secret),
            client_name: pick(k.client_name.as_ref(), DEFAULT_KEYS.client_name),
            token_url: pick(k.token_url.as_ref(), DEFAULT_KEYS.token_url),
            token_endpoint_auth_method: pick(
                k.token_endpoint_auth_method.as_ref(),
                DEFAULT_KEYS.token_endpoint_auth_method,
            ),
        }
    }

    /// The names in use, each with the spec field that sets it.
    pub fn named(&self) -> Vec<(&'static str, &'a str)> {
        [
            ("keys.clientId", self.client_id),
            ("keys.clientSecret", Some(self.client_secret)),
            ("keys.clientName", self.client_name),
            ("keys.tokenUrl", self.token_url),
            (
                "keys.tokenEndpointAuthMethod",
                self.token_endpoint_auth_method,
            ),
        ]
        .into_iter()
        .filter_map(|(field, name)| name.map(|n| (field, n)))
        .collect()
    }
}

/// What the template wrote on a Secret, kept in [`SHAPE_ANNOTATION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Key holding the client id (`None`: it is in [`CLIENT_ID_ANNOTATION`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_key: Option<String>,
    /// Key holding the client secret.
    pub client_secret_key: String,
    /// Every data key the operator wrote.
    pub keys: BTreeSet<String>,
    /// Labels the template set.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub labels: BTreeSet<String>,
    /// Annotations the template set.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub annotations: BTreeSet<String>,
}

impl Record {
    /// What a Secret written before templates (or pre-created for
    /// adoption) holds: the default keys, no template metadata on record.
    pub fn legacy() -> Self {
        Record {
            client_id_key: DEFAULT_KEYS.client_id.map(str::to_owned),
            client_secret_key: DEFAULT_KEYS.client_secret.to_owned(),
            keys: DEFAULT_KEYS
                .named()
                .into_iter()
                .map(|(_, k)| k.to_owned())
                .collect(),
            labels: BTreeSet::new(),
            annotations: BTreeSet::new(),
        }
    }

    /// The record on `secret`, or [`Record::legacy`] when it has none (or
    /// one that does not parse: someone edited it, and the default keys
    /// are the best guess left).
    pub fn of(secret: &Secret) -> Self {
        secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SHAPE_ANNOTATION))
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_else(Record::legacy)
    }
}

/// Credentials to render (or read back).
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Collibra's id.
    pub client_id: String,
    /// The secret Collibra showed once.
    pub client_secret: SecretString,
}

/// A rendered Secret shape: everything the template decides.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// The Secret's type.
    pub type_: String,
    /// The data the operator writes.
    pub data: BTreeMap<String, ByteString>,
    /// Template labels (the managed-by label excluded: it is not the
    /// template's to set or remove).
    pub labels: BTreeMap<String, String>,
    /// Template annotations plus the record (and the client id when its
    /// key is left out).
    pub annotations: BTreeMap<String, String>,
}

/// The credentials a Secret the operator wrote holds, wherever its shape
/// put them; `None` while it holds none (a claim, an emptied Secret).
pub fn stored_credentials(secret: &Secret) -> Option<Credentials> {
    let record = Record::of(secret);
    let value = |key: &str| secret.data.as_ref().and_then(|d| d.get(key));
    let client_secret = value(&record.client_secret_key)
        .filter(|v| !v.0.is_empty())
        .and_then(|v| String::from_utf8(v.0.clone()).ok())?;
    let client_id = match &record.client_id_key {
        Some(k) => value(k).and_then(|v| String::from_utf8(v.0.clone()).ok()),
        None => secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CLIENT_ID_ANNOTATION))
            .cloned(),
    }
    .filter(|s| !s.trim().is_empty())?;
    Some(Credentials {
        client_id,
        client_secret: SecretString::from(client_secret),
    })
}

/// The template's part of the merge patch (data, labels, annotations)
/// that makes `current` match `shape` (the whole patch is
/// [`super::merge_patch`]): sets what the shape holds and removes (`null`) what the
/// record on `current` says the operator wrote before and the shape no
/// longer has. Keys, labels and annotations others added are left alone.
/// The type is not part of it: Kubernetes keeps it fixed, see
/// [`type_changes`].
pub fn shape_patch(current: Option<&Secret>, shape: &Shape) -> serde_json::Value {
    use serde_json::{Map, Value};
    let before = current.map(Record::of);
    let mut data: Map<String, Value> = shape
        .data
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(Value::Null)))
        .collect();
    let mut labels: Map<String, Value> = shape
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut annotations: Map<String, Value> = shape
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    if let Some(before) = before {
        let drop = |map: &mut Map<String, Value>, old: &BTreeSet<String>| {
            for k in old {
                map.entry(k.clone()).or_insert(Value::Null);
            }
        };
        drop(&mut data, &before.keys);
        drop(&mut labels, &before.labels);
        drop(&mut annotations, &before.annotations);
    }
    // The record goes with the template; the client id annotation once the
    // id has a key again.
    for own in [SHAPE_ANNOTATION, CLIENT_ID_ANNOTATION] {
        if !shape.annotations.contains_key(own)
            && current
                .and_then(|c| c.metadata.annotations.as_ref())
                .is_some_and(|a| a.contains_key(own))
        {
            annotations.insert(own.to_owned(), Value::Null);
        }
    }
    serde_json::json!({
        "metadata": {"labels": labels, "annotations": annotations},
        "data": data,
    })
}

/// Whether writing `shape` would change anything in `current` that the
/// template manages (data, labels, annotations, or keys to remove).
pub fn differs(current: &Secret, shape: &Shape) -> bool {
    let before = Record::of(current);
    let data = current.data.clone().unwrap_or_default();
    let labels = current.metadata.labels.clone().unwrap_or_default();
    let annotations = current.metadata.annotations.clone().unwrap_or_default();
    fn stale<A, B>(
        old: &BTreeSet<String>,
        new: &BTreeMap<String, A>,
        have: &BTreeMap<String, B>,
    ) -> bool {
        old.iter()
            .any(|k| !new.contains_key(k) && have.contains_key(k))
    }
    shape.data.iter().any(|(k, v)| data.get(k) != Some(v))
        || shape.labels.iter().any(|(k, v)| labels.get(k) != Some(v))
        || shape
            .annotations
            .iter()
            .any(|(k, v)| annotations.get(k) != Some(v))
        || stale(&before.keys, &shape.data, &data)
        || stale(&before.labels, &shape.labels, &labels)
        || stale(&before.annotations, &shape.annotations, &annotations)
        || [SHAPE_ANNOTATION, CLIENT_ID_ANNOTATION]
            .iter()
            .any(|own| !shape.annotations.contains_key(*own) && annotations.contains_key(*own))
}

/// Whether `current` has another type than `shape`: Kubernetes cannot
/// change a Secret's type in place, so the Secret must be replaced.
pub fn type_changes(current: &Secret, shape: &Shape) -> bool {
    type_of(current) != shape.type_
}

/// The shape part of `secret` (what the template decides), to compare and
/// patch with.
pub fn shape_of(secret: &Secret) -> Shape {
    Shape {
        type_: type_of(secret).to_owned(),
        data: secret.data.clone().unwrap_or_default(),
        labels: secret.metadata.labels.clone().unwrap_or_default(),
        annotations: secret.metadata.annotations.clone().unwrap_or_default(),
    }
}

/// A Secret's type, as the API server reads a Secret that names none.
pub fn type_of(secret: &Secret) -> &str {
    secret.type_.as_deref().unwrap_or(DEFAULT_TYPE)
}

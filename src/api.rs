//! The `OAuthClient` custom resource: its Rust types are the source of the
//! CRD (`collibra-oauth-operator crd`, `crds/oauthclients.yaml`), including
//! every admission-time validation.

pub mod connection;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

/// API group of the custom resource.
pub const GROUP: &str = "oauth.collibra.dev";
/// Finalizer that holds an object until its Collibra client is cleaned up.
pub const FINALIZER: &str = "oauth.collibra.dev/finalizer";
/// Field manager of every write: the status apply, the Secret create and
/// its merge patches.
pub const FIELD_MANAGER: &str = "collibra-oauth-operator";
/// Label key set on every object the operator creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "collibra-oauth-operator";
/// Annotation whose new value requests a credential rotation.
pub const ROTATE_ANNOTATION: &str = "oauth.collibra.dev/rotate";
/// Annotation on a Secret recording a registration in flight (RFC 3339
/// time). It is written before the POST and removed with the credentials,
/// so after a crash a client registered no earlier than this time is
/// provably the operator's own.
pub const REGISTERING_ANNOTATION: &str = "oauth.collibra.dev/registering-since";

/// Which OAuth 2.0 grant a client may use.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    schemars::JsonSchema,
)]
pub enum GrantType {
    /// An "integration application": machine-to-machine tokens.
    #[serde(rename = "client_credentials")]
    ClientCredentials,
    /// A "user application": interactive sign-in.
    #[serde(rename = "authorization_code")]
    AuthorizationCode,
}

impl GrantType {
    /// The value Collibra uses on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::AuthorizationCode => "authorization_code",
        }
    }
}

/// What happens to the Collibra client when the OAuthClient is deleted.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum DeletionPolicy {
    /// Delete the client in Collibra before the object goes away.
    #[default]
    Delete,
    /// Leave the client (and its Secret, without an owner) in place.
    Orphan,
}

/// Whether the operator may replace a Collibra client on its own when the
/// Secret holding the credentials of a client in use is lost. Replacing
/// deletes the client and registers the name again: a new `client_id` and,
/// in Collibra, a new application with a system user of its own, so what an
/// administrator granted to the old one is gone.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum ReplacementPolicy {
    /// Stop with `CredentialsLost` until someone decides: restore the Secret,
    /// or set the rotate annotation to replace the client.
    #[default]
    Manual,
    /// Replace the client at once.
    Automatic,
}

/// Why the operator replaced a Collibra client.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum ReplacementCause {
    /// The rotate annotation asked for it.
    Rotation,
    /// The Secret no longer held the credentials of the client in use
    /// (`replacementPolicy: Automatic`).
    LostSecret,
    /// The operator's own registration was interrupted between Collibra's
    /// answer and the first Secret write: that client was never used.
    InterruptedRegistration,
}

/// The last replacement of the Collibra client.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Replacement {
    /// The client that was deleted in Collibra.
    pub previous_client_id: String,
    /// The client registered in its place.
    pub client_id: String,
    /// Why it was replaced.
    pub cause: ReplacementCause,
    /// When (RFC 3339).
    pub time: String,
}

/// Extra metadata copied onto the generated Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
pub struct SecretTemplate {
    /// Labels added to the Secret (the managed-by label always wins).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub annotations: BTreeMap<String, String>,
}

fn default_grant_types() -> Vec<GrantType> {
    vec![GrantType::ClientCredentials]
}

/// An OAuth client to register in Collibra, with its credentials kept in a Secret.
// The printcolumn(...) lists repeat `type_ = "string"`, which clippy takes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "oauth.collibra.dev",
    version = "v1alpha1",
    kind = "OAuthClient",
    plural = "oauthclients",
    shortname = "oac",
    category = "collibra",
    namespaced,
    status = "OAuthClientStatus",
    doc = "An OAuth client registered in Collibra whose credentials the operator keeps in a Secret.",
    printcolumn(name = "Client Name", type_ = "string", json_path = ".spec.clientName"),
    printcolumn(name = "Client ID", type_ = "string", json_path = ".status.clientId"),
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secretName"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("has(self.secretName) == has(oldSelf.secretName) && (!has(self.secretName) || self.secretName == oldSelf.secretName)").message("secretName is immutable").field_path(".secretName"))]
#[x_kube(validation = Rule::new("has(self.connectionRef) == has(oldSelf.connectionRef) && (!has(self.connectionRef) || self.connectionRef == oldSelf.connectionRef)").message("connectionRef is immutable").field_path(".connectionRef"))]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientSpec {
    /// The client's name in Collibra; unique there. Immutable.
    #[schemars(
        length(min = 1, max = 100),
        regex(pattern = r"^[A-Za-z0-9]([A-Za-z0-9._ -]*[A-Za-z0-9])?$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("clientName is immutable"))]
    pub client_name: String,

    /// OAuth grant types the client may use, each at most once.
    #[serde(default = "default_grant_types")]
    #[schemars(length(min = 1, max = 2), extend("x-kubernetes-list-type" = "set"))]
    pub grant_types: Vec<GrantType>,

    /// Passed to Collibra as `software_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub software_id: Option<String>,

    /// Name of the Secret that receives the credentials; defaults to
    /// `metadata.name`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub secret_name: Option<String>,

    /// Extra labels and annotations for the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,

    /// `Delete` removes the Collibra client with this object; `Orphan`
    /// leaves it, and keeps the Secret.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// `Manual` (default): when the Secret of a client in use is lost, stop
    /// and say so; `Automatic`: delete the client and register a new one.
    /// Either way a new client is a new Collibra application, without the
    /// grants of the old one.
    #[serde(default)]
    pub replacement_policy: ReplacementPolicy,

    /// The Collibra instance: a CollibraConnection of this namespace or a
    /// ClusterCollibraConnection. Unset: the instance the operator's flags
    /// configure. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_ref: Option<connection::ConnectionRef>,
}

/// What the operator observed and did; written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientStatus {
    /// The id Collibra assigned to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// When Collibra issued the client id (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_issued_at: Option<String>,
    /// The Secret that holds the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Grant types Collibra reports for the client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_types: Vec<String>,
    /// The last `oauth.collibra.dev/rotate` value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation: Option<String>,
    /// When the credentials were last issued (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_issued_at: Option<String>,
    /// The last time the client was deleted and registered again, naming
    /// the old and the new client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_replacement: Option<Replacement>,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled (kstatus conventions).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl OAuthClient {
    /// The Secret this object writes: `spec.secretName` or its own name.
    pub fn secret_name(&self) -> String {
        self.spec
            .secret_name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }

    /// The value of the rotation annotation, if set.
    pub fn rotation_request(&self) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ROTATE_ANNOTATION))
            .map(String::as_str)
    }

    /// The Ready condition, if the operator has written one.
    pub fn ready_condition(&self) -> Option<&Condition> {
        self.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
    }
}

/// The CRD as YAML, exactly as committed in `crds/oauthclients.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let crd = OAuthClient::crd();
    Ok(format!(
        "# Generated by `collibra-oauth-operator crd`; do not edit.\n{}",
        serde_yaml::to_string(&crd)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crd_matches_generated() {
        let committed = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crds/oauthclients.yaml"
        ))
        .expect("crds/oauthclients.yaml exists");
        assert_eq!(
            committed,
            crd_yaml().expect("serializes"),
            "crds/oauthclients.yaml is stale: run `cargo run -- crd > crds/oauthclients.yaml`"
        );
    }

    #[test]
    fn spec_defaults_apply() {
        let spec: OAuthClientSpec = serde_json::from_str(r#"{"clientName":"a"}"#).expect("parses");
        assert_eq!(spec.grant_types, vec![GrantType::ClientCredentials]);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Delete);
        assert_eq!(spec.replacement_policy, ReplacementPolicy::Manual);
    }

    #[test]
    fn schema_carries_validations() {
        let crd = serde_json::to_string(&OAuthClient::crd()).expect("serializes");
        for needle in [
            "clientName is immutable",
            "secretName is immutable",
            "connectionRef is immutable",
            "\"x-kubernetes-list-type\":\"set\"",
            "\"shortNames\":[\"oac\"]",
            "\"status\":{}",
        ] {
            assert!(crd.contains(needle), "CRD lacks {needle}");
        }
    }

    #[test]
    fn secret_name_defaults_to_object_name() {
        let mut o = OAuthClient::new(
            "billing",
            serde_json::from_str(r#"{"clientName":"b"}"#).expect("spec"),
        );
        assert_eq!(o.secret_name(), "billing");
        o.spec.secret_name = Some("other".into());
        assert_eq!(o.secret_name(), "other");
    }
}

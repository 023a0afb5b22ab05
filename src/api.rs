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
/// Annotation on an OAuthClient naming a Collibra client that is this
/// object's although nothing in the cluster records it, and whose secret is
/// therefore lost: what an administrator sets after restoring the cluster
/// from an etcd backup taken before that client was registered. The client
/// is then handled per `spec.replacementPolicy` (docs/src/operations/disaster-recovery.md).
pub const LOST_CLIENT_ANNOTATION: &str = "oauth.collibra.dev/lost-client-id";
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
    /// `spec.redirectUris` changed, Collibra cannot update a client, and
    /// `replacementPolicy` is `Automatic`.
    RedirectUrisChanged,
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

// ---- spec.secretTemplate: the shape of the generated Secret ----

/// Secret data key syntax (Kubernetes' ConfigMap/Secret key rule); the
/// "not `.`, not starting with `..`" half is a CEL rule beside it.
const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";
/// [`SECRET_KEY_PATTERN`], or empty to leave the key out.
const OPTIONAL_SECRET_KEY_PATTERN: &str = r"^([-._a-zA-Z0-9]+)?$";
/// Annotation prefix the operator keeps for itself on the Secret.
pub const RESERVED_ANNOTATION_PREFIX: &str = "oauth.collibra.dev/";
/// Secret types a template may choose by name besides custom
/// (non-`kubernetes.io`) types; the others need data or annotations an
/// OAuth client does not have.
pub const SECRET_TYPES: [&str; 2] = ["Opaque", "kubernetes.io/basic-auth"];

/// CEL: the effective name of one standard key (`field` of `self.keys`,
/// else `default`); empty means left out.
fn cel_key(field: &str, default: &str) -> String {
    format!("(has(self.keys) && has(self.keys.{field}) ? self.keys.{field} : '{default}')")
}

/// CEL: the four effective standard key names, as a list.
fn cel_standard_keys() -> String {
    format!(
        "[{}, {}, {}, {}, {}]",
        cel_key("clientId", "client_id"),
        cel_key("clientSecret", "client_secret"),
        cel_key("clientName", "client_name"),
        cel_key("tokenUrl", "token_url"),
        cel_key("tokenEndpointAuthMethod", "token_endpoint_auth_method")
    )
}

/// CEL: no two standard keys share a name (left-out ones aside).
fn cel_distinct_standard_keys() -> String {
    let k = cel_standard_keys();
    format!("{k}.filter(n, n != '').all(n, {k}.filter(m, m == n).size() == 1)")
}

/// CEL: no `data` key is also a standard key.
fn cel_data_apart_from_standard_keys() -> String {
    format!(
        "!has(self.data) || self.data.all(d, !({}.exists(n, n == d)))",
        cel_standard_keys()
    )
}

/// CEL: a basic-auth Secret has `username` or `password`.
fn cel_basic_auth_keys() -> String {
    format!(
        "!has(self.type) || self.type != 'kubernetes.io/basic-auth' || {}.exists(n, n == 'username' || n == 'password') || (has(self.data) && ('username' in self.data || 'password' in self.data))",
        cel_standard_keys()
    )
}

/// The shape of the generated Secret: its metadata, the names of its
/// standard keys, extra keys rendered from templates, and its type.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new(cel_distinct_standard_keys()).message("secretTemplate.keys: two standard values cannot share a key name").field_path(".keys"),
    validation = Rule::new(cel_data_apart_from_standard_keys()).message("secretTemplate.data: a key cannot have the name of a standard key (client_id, client_secret, client_name, token_url, token_endpoint_auth_method, or the name given in keys)").field_path(".data"),
    validation = Rule::new(cel_basic_auth_keys()).message("secretTemplate.type kubernetes.io/basic-auth needs a key named username or password (rename a standard key in keys, or add it in data)").field_path(".type")
)]
pub struct SecretTemplate {
    /// Labels added to the Secret (the managed-by label always wins).
    /// Labels the template set earlier are removed when they leave it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the Secret (not under `oauth.collibra.dev/`).
    /// Annotations the template set earlier are removed when they leave it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('oauth.collibra.dev/'))").message("secretTemplate.annotations: keys under oauth.collibra.dev/ are the operator's own"))]
    pub annotations: BTreeMap<String, String>,
    /// The Secret's type: `Opaque` (default), `kubernetes.io/basic-auth`,
    /// or a custom type outside `kubernetes.io/`. Changing it replaces
    /// the Secret (Kubernetes keeps a Secret's type fixed); the
    /// credentials are carried over, not issued again.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(
            pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?(/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"
        )
    )]
    #[x_kube(validation = Rule::new("self in ['Opaque', 'kubernetes.io/basic-auth'] || !(self.startsWith('kubernetes.io/') || self.startsWith('bootstrap.kubernetes.io/'))").message("secretTemplate.type: of the built-in types only Opaque and kubernetes.io/basic-auth fit an OAuth client; a custom type must not be under kubernetes.io/"))]
    pub type_: Option<String>,
    /// Key names of the five standard values; unset keeps the default name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<SecretKeys>,
    /// Extra keys, each rendered from a MiniJinja (Jinja2) template over
    /// `client_id`, `client_secret`, `client_name`, `token_url`,
    /// `token_endpoint_auth_method`, `collibra_url`, `grant_types` and
    /// `redirect_uris` (lists). Templates cannot read
    /// files or the environment; an undefined name is an error.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 16384}))]
    #[x_kube(validation = Rule::new("self.all(k, size(k) <= 253 && k.matches('^[-._a-zA-Z0-9]+$') && k != '.' && !k.startsWith('..'))").message("secretTemplate.data: a key must be at most 253 of letters, digits, '-', '_' and '.', and neither '.' nor start with '..'"))]
    pub data: BTreeMap<String, String>,
}

/// Key names of the standard values in the Secret. A name is a Secret key
/// (letters, digits, `-`, `_`, `.`); an empty name leaves that value out
/// (all but `clientSecret`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeys {
    /// Key of the client id (default `client_id`); empty leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = OPTIONAL_SECRET_KEY_PATTERN))]
    #[x_kube(validation = Rule::new("self != '.' && !self.startsWith('..')").message("a key cannot be '.' or start with '..'"))]
    pub client_id: Option<String>,
    /// Key of the client secret (default `client_secret`); always present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    #[x_kube(validation = Rule::new("self != '.' && !self.startsWith('..')").message("a key cannot be '.' or start with '..'"))]
    pub client_secret: Option<String>,
    /// Key of the client name (default `client_name`); empty leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = OPTIONAL_SECRET_KEY_PATTERN))]
    #[x_kube(validation = Rule::new("self != '.' && !self.startsWith('..')").message("a key cannot be '.' or start with '..'"))]
    pub client_name: Option<String>,
    /// Key of the token URL (default `token_url`); empty leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = OPTIONAL_SECRET_KEY_PATTERN))]
    #[x_kube(validation = Rule::new("self != '.' && !self.startsWith('..')").message("a key cannot be '.' or start with '..'"))]
    pub token_url: Option<String>,
    /// Key of the token endpoint authentication method (default
    /// `token_endpoint_auth_method`); empty leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = OPTIONAL_SECRET_KEY_PATTERN))]
    #[x_kube(validation = Rule::new("self != '.' && !self.startsWith('..')").message("a key cannot be '.' or start with '..'"))]
    pub token_endpoint_auth_method: Option<String>,
}

/// Annotation whose new value asks for a reconcile now, with a fresh read
/// of Collibra's list; the value handled is recorded in
/// `status.lastHandledReconcileAt`.
pub const RECONCILE_REQUESTED_ANNOTATION: &str = "oauth.collibra.dev/reconcile-requested-at";

impl OAuthClient {
    /// A reconcile request not handled yet: the annotation's value, when it
    /// differs from `status.lastHandledReconcileAt`.
    pub fn pending_reconcile_request(&self) -> Option<&str> {
        let requested = self
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RECONCILE_REQUESTED_ANNOTATION))?;
        let handled = self
            .status
            .as_ref()
            .and_then(|s| s.last_handled_reconcile_at.as_ref());
        (handled != Some(requested)).then_some(requested.as_str())
    }
}

// ---- end of spec.secretTemplate ----

// ---- spec.redirectUris user applications ----

/// At most this many redirect URIs per client. A web app or portal needs a
/// few (one per host name it is served under, plus a local one for
/// development); 20 leaves room for that and keeps CEL's cost estimate and
/// the object small. Keycloak and Hydra set no limit, but a client with
/// dozens of exact URIs is usually one that wants a wildcard, which
/// Collibra's exact matching does not offer.
pub const MAX_REDIRECT_URIS: usize = 20;
/// Longest redirect URI accepted (the de facto URL limit of browsers and
/// proxies); it also bounds the cost of the CEL rules.
pub const MAX_REDIRECT_URI_LENGTH: usize = 2048;

/// CEL: every entry is an absolute http(s) URL with a host.
const CEL_REDIRECT_ABSOLUTE: &str = "self.all(u, isURL(u) && url(u).getScheme() in ['http', 'https'] && url(u).getHostname() != '')";
/// CEL: no fragment (RFC 6749 3.1.2).
const CEL_REDIRECT_NO_FRAGMENT: &str = "self.all(u, !u.contains('#'))";
/// CEL: no wildcard: Collibra matches redirect URIs exactly.
const CEL_REDIRECT_NO_WILDCARD: &str = "self.all(u, !u.contains('*'))";
/// CEL: https, except for loopback hosts (RFC 8252 7.3, OAuth 2.0
/// Security BCP 4.1.1: http only where the traffic never leaves the
/// machine). Entries that are no URL at all fail the first rule instead.
const CEL_REDIRECT_HTTPS: &str = "self.all(u, !isURL(u) || url(u).getScheme() != 'http' || url(u).getHostname() in ['localhost', '127.0.0.1', '::1'])";
/// CEL (on the spec): a user application has redirect URIs...
const CEL_REDIRECT_REQUIRED: &str = "!self.grantTypes.exists(g, g == 'authorization_code') || (has(self.redirectUris) && size(self.redirectUris) > 0)";
/// CEL (on the spec): ...and only a user application has them.
const CEL_REDIRECT_ONLY_FOR_CODE: &str = "!has(self.redirectUris) || size(self.redirectUris) == 0 || self.grantTypes.exists(g, g == 'authorization_code')";

// ---- end of spec.redirectUris ----

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
#[x_kube(validation = Rule::new(CEL_REDIRECT_REQUIRED).message("spec.redirectUris is required when spec.grantTypes contains authorization_code (a user application): give one or more redirect URIs").field_path(".redirectUris"))]
#[x_kube(validation = Rule::new(CEL_REDIRECT_ONLY_FOR_CODE).message("spec.redirectUris is only for clients with the authorization_code grant: remove it, or add authorization_code to spec.grantTypes").field_path(".redirectUris"))]
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

    /// Where a user application may send users back after sign-in, sent
    /// to Collibra as `redirect_uris` and matched there exactly. Required
    /// when grantTypes contains authorization_code, refused otherwise. Each
    /// an absolute http(s) URL without fragment or wildcard; https unless
    /// the host is localhost, 127.0.0.1 or [::1]. At most 20. A change is
    /// applied in place where Collibra supports updates, never by
    /// replacing the client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 20),
        extend(
            "x-kubernetes-list-type" = "set",
            "items" = {"type": "string", "minLength": 1, "maxLength": 2048, "pattern": "^\\S+$"}
        )
    )]
    #[x_kube(
        validation = Rule::new(CEL_REDIRECT_ABSOLUTE).message("spec.redirectUris: each entry must be an absolute http or https URL with a host"),
        validation = Rule::new(CEL_REDIRECT_NO_FRAGMENT).message("spec.redirectUris: a redirect URI must not contain a fragment (#)"),
        validation = Rule::new(CEL_REDIRECT_NO_WILDCARD).message("spec.redirectUris: wildcards (*) are not allowed; Collibra matches redirect URIs exactly"),
        validation = Rule::new(CEL_REDIRECT_HTTPS).message("spec.redirectUris: http is allowed only for loopback hosts (localhost, 127.0.0.1, [::1]); use https")
    )]
    pub redirect_uris: Vec<String>,

    /// Name of the Secret that receives the credentials; defaults to
    /// `metadata.name`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub secret_name: Option<String>,

    /// The Secret's shape: labels, annotations, key names, extra templated
    /// keys and type. Unset gives the default Opaque Secret.
    // Boxed: most objects have none, and an unboxed one is 200 bytes of
    // every cached object (docs/design.md, "Memory").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<Box<SecretTemplate>>,

    /// `Delete` removes the Collibra client with this object; `Orphan`
    /// leaves it, and keeps the Secret.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// `Manual` (default): when the Secret of a client in use is lost, or
    /// its redirectUris change and Collibra cannot update them, stop and
    /// say so; `Automatic`: delete the client and register a new one.
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
    /// Redirect URIs Collibra confirmed for the client (its answer to the
    /// registration or the last update, or its list when that shows them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    /// The last `oauth.collibra.dev/rotate` value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation: Option<String>,
    /// When the credentials were last issued (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_issued_at: Option<String>,
    /// The last `oauth.collibra.dev/reconcile-requested-at` value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// The last time the client was deleted and registered again, naming
    /// the old and the new client.
    // Boxed, as `OAuthClientSpec::secret_template` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_replacement: Option<Box<Replacement>>,
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
            "spec.redirectUris is required when spec.grantTypes contains authorization_code",
            "spec.redirectUris is only for clients with the authorization_code grant",
            "http is allowed only for loopback hosts",
            "\"maxItems\":20",
            "\"x-kubernetes-list-type\":\"set\"",
            "\"shortNames\":[\"oac\"]",
            "\"status\":{}",
        ] {
            assert!(crd.contains(needle), "CRD lacks {needle}");
        }
    }

    #[test]
    fn a_reconcile_request_is_pending_until_handled() {
        let mut o = OAuthClient::new(
            "billing",
            serde_json::from_str(r#"{"clientName":"b"}"#).expect("spec"),
        );
        assert_eq!(o.pending_reconcile_request(), None);
        o.metadata.annotations = Some(BTreeMap::from([(
            RECONCILE_REQUESTED_ANNOTATION.to_owned(),
            "t1".to_owned(),
        )]));
        assert_eq!(o.pending_reconcile_request(), Some("t1"));
        o.status = Some(OAuthClientStatus {
            last_handled_reconcile_at: Some("t1".into()),
            ..OAuthClientStatus::default()
        });
        assert_eq!(o.pending_reconcile_request(), None);
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

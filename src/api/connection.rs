//! `CollibraConnection` (namespaced) and `ClusterCollibraConnection`
//! (cluster-scoped): one Collibra instance each, and how the operator
//! authenticates to it. The pair follows cert-manager's Issuer and
//! ClusterIssuer: a namespaced connection serves OAuthClients of its own
//! namespace and reads its credentials there; a cluster connection serves
//! every namespace (or those its selector picks) and reads its credentials
//! from the operator's own namespace.

use std::{fmt, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, CustomResourceExt, KubeSchema, core::Selector};
use serde::{Deserialize, Serialize};

/// Kind of the namespaced connection.
pub const CONNECTION_KIND: &str = "CollibraConnection";
/// Kind of the cluster-scoped connection.
pub const CLUSTER_CONNECTION_KIND: &str = "ClusterCollibraConnection";
/// Finalizer that keeps a connection while OAuthClients with
/// `deletionPolicy: Delete` still need it to clean up their Collibra clients.
pub const CONNECTION_FINALIZER: &str = "oauth.collibra.dev/connection-in-use";

/// How the operator authenticates to the instance.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AuthType {
    /// OAuth 2.0 client credentials at `/rest/oauth/v2/token`.
    #[default]
    Oauth,
    /// HTTP Basic with a Collibra user.
    Basic,
    /// A bearer token from the organisation's identity provider.
    Bearer,
}

impl AuthType {
    /// The value as written in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::Oauth => "oauth",
            AuthType::Basic => "basic",
            AuthType::Bearer => "bearer",
        }
    }
}

fn key(default: &str) -> String {
    default.to_owned()
}
fn default_client_id_key() -> String {
    key("client_id")
}
fn default_client_secret_key() -> String {
    key("client_secret")
}
fn default_username_key() -> String {
    key("username")
}
fn default_password_key() -> String {
    key("password")
}
fn default_token_key() -> String {
    key("token")
}
fn default_ca_key() -> String {
    key("ca.crt")
}
fn default_api_path() -> String {
    collibra_client::DEFAULT_API_PATH.to_owned()
}
fn default_connect_timeout() -> String {
    "5s".to_owned()
}
fn default_timeout() -> String {
    "30s".to_owned()
}

/// Key names in the credentials Secret; only those of `auth.type` are read.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialKeys {
    /// Key of the OAuth client id (`oauth`).
    #[serde(default = "default_client_id_key")]
    #[schemars(length(min = 1, max = 253))]
    pub client_id: String,
    /// Key of the OAuth client secret (`oauth`).
    #[serde(default = "default_client_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub client_secret: String,
    /// Key of the user name (`basic`).
    #[serde(default = "default_username_key")]
    #[schemars(length(min = 1, max = 253))]
    pub username: String,
    /// Key of the password (`basic`).
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub password: String,
    /// Key of the bearer token (`bearer`).
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub token: String,
}

impl Default for CredentialKeys {
    fn default() -> Self {
        CredentialKeys {
            client_id: default_client_id_key(),
            client_secret: default_client_secret_key(),
            username: default_username_key(),
            password: default_password_key(),
            token: default_token_key(),
        }
    }
}

/// The operator's own credentials for the instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionAuth {
    /// `oauth` (client credentials), `basic` (user and password) or
    /// `bearer` (token).
    #[serde(default, rename = "type")]
    pub type_: AuthType,
    /// Secret holding the credentials: in the connection's namespace for a
    /// CollibraConnection, in the operator's namespace for a
    /// ClusterCollibraConnection. Changes to it take effect at once.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub secret_name: String,
    /// Key names in that Secret (defaults: client_id, client_secret,
    /// username, password, token).
    #[serde(default)]
    pub keys: CredentialKeys,
}

/// A PEM bundle of CA certificates trusted for the instance (besides the
/// system roots), from a ConfigMap or a Secret in the same namespace as the
/// credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMap) != has(self.secret)").message("caBundle: set exactly one of configMap and secret"))]
pub struct CaBundle {
    /// Name of a ConfigMap holding the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub config_map: Option<String>,
    /// Name of a Secret holding the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret: Option<String>,
    /// Key of the bundle in the ConfigMap or Secret.
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Where a Collibra instance is and how to talk to it: everything the
/// `--collibra-*` flags configure for the operator's default instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSettings {
    /// Instance URL, e.g. https://acme.collibra.com (http or https, no
    /// user, query or fragment).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https'] && !self.contains('@') && !self.contains('?') && !self.contains('#')").message("url must be an http(s) URL without user, query or fragment"))]
    pub url: String,
    /// Path of the OAuth client management API under the URL.
    #[serde(default = "default_api_path")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/"))]
    pub api_path: String,
    /// How the operator authenticates.
    pub auth: ConnectionAuth,
    /// CA certificates trusted for the instance besides the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundle>,
    /// Time allowed to connect, e.g. 5s, 500ms, 1m.
    #[serde(default = "default_connect_timeout")]
    #[schemars(regex(pattern = r"^[1-9][0-9]{0,5}(ms|s|m)$"))]
    pub connect_timeout: String,
    /// Time allowed for one request, body included, e.g. 30s.
    #[serde(default = "default_timeout")]
    #[schemars(regex(pattern = r"^[1-9][0-9]{0,5}(ms|s|m)$"))]
    pub timeout: String,
    /// Requests per second sent to the instance at most, evenly spaced
    /// (its rate limit). Unset: no pacing; a 429 still holds every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100000.0))]
    #[x_kube(validation = Rule::new("self > 0.0").message("rateLimit must be more than 0 requests per second"))]
    pub rate_limit: Option<f64>,
}

impl ConnectionSettings {
    /// The connect timeout as a duration, or an error naming the field.
    pub fn connect_timeout(&self) -> Result<Duration, String> {
        parse_duration("connectTimeout", &self.connect_timeout)
    }

    /// The request timeout as a duration, or an error naming the field.
    pub fn timeout(&self) -> Result<Duration, String> {
        parse_duration("timeout", &self.timeout)
    }
}

fn parse_duration(field: &str, value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("spec.{field} must be positive, got {value:?}")),
        Err(e) => Err(format!(
            "spec.{field} is not a duration like 5s or 1m: {value:?} ({e})"
        )),
    }
}

/// A Collibra instance for the OAuthClients of this namespace.
// The printcolumn(...) lists repeat `type_ = "string"`, which clippy takes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "oauth.collibra.dev",
    version = "v1alpha1",
    kind = "CollibraConnection",
    plural = "collibraconnections",
    shortname = "ccon",
    category = "collibra",
    namespaced,
    status = "ConnectionStatus",
    doc = "A Collibra instance that OAuthClients of the same namespace register their clients in (spec.connectionRef).",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(name = "Auth", type_ = "string", json_path = ".spec.auth.type"),
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
        name = "Managed",
        type_ = "integer",
        json_path = ".status.managedClients"
    ),
    printcolumn(
        name = "Unmanaged",
        type_ = "integer",
        json_path = ".status.unmanagedClients"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct CollibraConnectionSpec {
    /// The instance and the credentials.
    #[serde(flatten)]
    pub settings: ConnectionSettings,
}

/// A Collibra instance for OAuthClients of any namespace.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "oauth.collibra.dev",
    version = "v1alpha1",
    kind = "ClusterCollibraConnection",
    plural = "clustercollibraconnections",
    shortname = "cccon",
    category = "collibra",
    status = "ConnectionStatus",
    doc = "A Collibra instance that OAuthClients of any namespace (or those namespaceSelector picks) register their clients in (spec.connectionRef). Its credentials Secret lives in the operator's namespace.",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(name = "Auth", type_ = "string", json_path = ".spec.auth.type"),
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
        name = "Managed",
        type_ = "integer",
        json_path = ".status.managedClients"
    ),
    printcolumn(
        name = "Unmanaged",
        type_ = "integer",
        json_path = ".status.unmanagedClients"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCollibraConnectionSpec {
    /// The instance and the credentials.
    #[serde(flatten)]
    pub settings: ConnectionSettings,
    /// Namespaces whose OAuthClients may use this connection (by their
    /// labels); unset: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// What the operator learned about the instance from its answers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// Whether the instance answers DELETE for a client; unset until known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<bool>,
    /// Whether the instance answers PUT for a client; unset until known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<bool>,
}

/// What the operator observed; written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled (kstatus conventions).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// What the instance supports, as learned from its answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// Clients in the instance that an OAuthClient using this connection
    /// accounts for, at the last list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // Kubernetes knows the integer formats int32 and int64 only; the
    // "uint64" schemars derives for u64 makes every apply of the CRD warn.
    #[schemars(extend("format" = "int64"))]
    pub managed_clients: Option<u64>,
    /// Clients in the instance that no OAuthClient using this connection
    /// accounts for (`collibra-oauth-operator audit` names them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int64"))]
    pub unmanaged_clients: Option<u64>,
}

/// The kinds an OAuthClient's `spec.connectionRef` may name.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum ConnectionRefKind {
    /// A CollibraConnection in the OAuthClient's own namespace.
    CollibraConnection,
    /// A ClusterCollibraConnection.
    ClusterCollibraConnection,
}

/// The connection an OAuthClient registers its client with.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionRef {
    /// CollibraConnection (looked up in the OAuthClient's namespace; there
    /// is no way to name another namespace) or ClusterCollibraConnection.
    pub kind: ConnectionRefKind,
    /// The connection's name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

impl ConnectionRef {
    /// The registry key this reference means for an object in `namespace`.
    pub fn key(&self, namespace: &str) -> ConnectionKey {
        match self.kind {
            ConnectionRefKind::CollibraConnection => ConnectionKey::Namespaced {
                namespace: namespace.to_owned(),
                name: self.name.clone(),
            },
            ConnectionRefKind::ClusterCollibraConnection => ConnectionKey::Cluster {
                name: self.name.clone(),
            },
        }
    }
}

/// Which connection an object means: the kind and, for a namespaced one,
/// where it lives. The operator's default instance (the `--collibra-*`
/// flags) is [`ConnectionKey::Default`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnectionKey {
    /// The instance configured by flags and environment.
    Default,
    /// A CollibraConnection.
    Namespaced {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A ClusterCollibraConnection.
    Cluster {
        /// Its name.
        name: String,
    },
}

impl ConnectionKey {
    /// The value of the `connection` label of metrics:
    /// `default`, `CollibraConnection/ns/name` or
    /// `ClusterCollibraConnection/name`.
    pub fn label(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ConnectionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionKey::Default => f.write_str("default"),
            ConnectionKey::Namespaced { namespace, name } => {
                write!(f, "{CONNECTION_KIND}/{namespace}/{name}")
            }
            ConnectionKey::Cluster { name } => write!(f, "{CLUSTER_CONNECTION_KIND}/{name}"),
        }
    }
}

/// What both kinds of connection have, so one controller serves both.
pub trait ConnectionResource:
    kube::Resource<DynamicType = ()>
    + Clone
    + fmt::Debug
    + Serialize
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The instance and credentials.
    fn settings(&self) -> &ConnectionSettings;
    /// The status, if written.
    fn connection_status(&self) -> Option<&ConnectionStatus>;
    /// The registry key of this object.
    fn key(&self) -> ConnectionKey;
    /// The API of this object's kind, in its namespace if it has one.
    fn api(&self, client: &kube::Client) -> kube::Api<Self>;
    /// The namespaces whose OAuthClients may use it, beyond what its kind
    /// allows (`namespaceSelector`); `None`: no further limit.
    fn namespace_selector(&self) -> Result<Option<Selector>, String>;
}

impl ConnectionResource for CollibraConnection {
    fn settings(&self) -> &ConnectionSettings {
        &self.spec.settings
    }
    fn connection_status(&self) -> Option<&ConnectionStatus> {
        self.status.as_ref()
    }
    fn key(&self) -> ConnectionKey {
        ConnectionKey::Namespaced {
            namespace: self.metadata.namespace.clone().unwrap_or_default(),
            name: self.metadata.name.clone().unwrap_or_default(),
        }
    }
    fn api(&self, client: &kube::Client) -> kube::Api<Self> {
        let ns = self.metadata.namespace.as_deref().unwrap_or_default();
        kube::Api::namespaced(client.clone(), ns)
    }
    fn namespace_selector(&self) -> Result<Option<Selector>, String> {
        // Only its own namespace can name it at all (connectionRef has no
        // namespace).
        Ok(None)
    }
}

impl ConnectionResource for ClusterCollibraConnection {
    fn settings(&self) -> &ConnectionSettings {
        &self.spec.settings
    }
    fn connection_status(&self) -> Option<&ConnectionStatus> {
        self.status.as_ref()
    }
    fn key(&self) -> ConnectionKey {
        ConnectionKey::Cluster {
            name: self.metadata.name.clone().unwrap_or_default(),
        }
    }
    fn api(&self, client: &kube::Client) -> kube::Api<Self> {
        kube::Api::all(client.clone())
    }
    fn namespace_selector(&self) -> Result<Option<Selector>, String> {
        self.spec
            .namespace_selector
            .clone()
            .map(Selector::try_from)
            .transpose()
            .map_err(|e| format!("spec.namespaceSelector is invalid: {e}"))
    }
}

fn document<K: CustomResourceExt>() -> Result<String, serde_yaml::Error> {
    Ok(format!(
        "# Generated by `collibra-oauth-operator crd`; do not edit.\n{}",
        serde_yaml::to_string(&K::crd())?
    ))
}

/// The CollibraConnection CRD as YAML, as committed in
/// `crds/collibraconnections.yaml`.
pub fn connection_crd_yaml() -> Result<String, serde_yaml::Error> {
    document::<CollibraConnection>()
}

/// The ClusterCollibraConnection CRD as YAML, as committed in
/// `crds/clustercollibraconnections.yaml`.
pub fn cluster_connection_crd_yaml() -> Result<String, serde_yaml::Error> {
    document::<ClusterCollibraConnection>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::SelectorExt;
    use std::collections::BTreeMap;

    fn committed(file: &str) -> String {
        std::fs::read_to_string(format!("{}/crds/{file}", env!("CARGO_MANIFEST_DIR")))
            .unwrap_or_else(|e| panic!("crds/{file}: {e}"))
    }

    #[test]
    fn committed_crds_match_generated() {
        for (file, generated) in [
            ("collibraconnections.yaml", connection_crd_yaml()),
            (
                "clustercollibraconnections.yaml",
                cluster_connection_crd_yaml(),
            ),
        ] {
            assert_eq!(
                committed(file),
                generated.expect("serializes"),
                "crds/{file} is stale: run `make crd`"
            );
        }
    }

    #[test]
    fn spec_defaults_apply() {
        let spec: CollibraConnectionSpec =
            serde_json::from_str(r#"{"url":"https://c.example","auth":{"secretName":"creds"}}"#)
                .expect("parses");
        let s = &spec.settings;
        assert_eq!(s.api_path, "/rest/auth/v1");
        assert_eq!(s.auth.type_, AuthType::Oauth);
        assert_eq!(s.auth.keys, CredentialKeys::default());
        assert_eq!(s.connect_timeout(), Ok(Duration::from_secs(5)));
        assert_eq!(s.timeout(), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn schema_is_flat_and_carries_validations() {
        for crd in [
            serde_json::to_value(CollibraConnection::crd()).expect("json"),
            serde_json::to_value(ClusterCollibraConnection::crd()).expect("json"),
        ] {
            let spec =
                &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
            for field in ["url", "apiPath", "auth", "caBundle", "timeout", "rateLimit"] {
                assert!(
                    spec["properties"].get(field).is_some(),
                    "spec.{field} missing: {spec}"
                );
            }
            let text = crd.to_string();
            for needle in [
                "set exactly one of configMap and secret",
                "url must be an http(s) URL",
                "\"status\":{}",
            ] {
                assert!(text.contains(needle), "CRD lacks {needle}");
            }
        }
        let cluster = serde_json::to_string(&ClusterCollibraConnection::crd()).expect("json");
        assert!(cluster.contains("\"scope\":\"Cluster\""));
        assert!(cluster.contains("namespaceSelector"));
    }

    #[test]
    fn durations_name_the_field() {
        let mut s: ConnectionSettings = serde_json::from_str(
            r#"{"url":"https://c.example","auth":{"secretName":"creds"},"timeout":"soon"}"#,
        )
        .expect("parses");
        let err = s.timeout().expect_err("not a duration");
        assert!(err.contains("spec.timeout"), "{err}");
        s.connect_timeout = "0s".into();
        assert!(
            s.connect_timeout()
                .expect_err("zero")
                .contains("connectTimeout")
        );
        s.connect_timeout = "250ms".into();
        assert_eq!(s.connect_timeout(), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn keys_and_labels_name_the_connection() {
        let mut c = CollibraConnection::new(
            "prod",
            serde_json::from_str(r#"{"url":"https://c.example","auth":{"secretName":"s"}}"#)
                .expect("spec"),
        );
        c.metadata.namespace = Some("team-a".into());
        assert_eq!(c.key().label(), "CollibraConnection/team-a/prod");
        assert_eq!(ConnectionKey::Default.label(), "default");
        assert_eq!(c.namespace_selector(), Ok(None));

        let mut cc = ClusterCollibraConnection::new(
            "shared",
            serde_json::from_str(r#"{"url":"https://c.example","auth":{"secretName":"s"}}"#)
                .expect("spec"),
        );
        assert_eq!(cc.key().label(), "ClusterCollibraConnection/shared");
        assert_eq!(cc.namespace_selector(), Ok(None));
        cc.spec.namespace_selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("team".into(), "a".into())])),
            ..LabelSelector::default()
        });
        let selector = cc.namespace_selector().expect("valid").expect("set");
        let labels = BTreeMap::from([("team".to_owned(), "a".to_owned())]);
        assert!(selector.matches(&labels));
        assert!(!selector.matches(&BTreeMap::new()));
        cc.spec.namespace_selector = Some(LabelSelector {
            match_expressions: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                    key: "team".into(),
                    operator: "Sometimes".into(),
                    values: None,
                },
            ]),
            ..LabelSelector::default()
        });
        let err = cc.namespace_selector().expect_err("bad operator");
        assert!(err.contains("spec.namespaceSelector"), "{err}");
    }
}

//! Loading what a connection reads: the versions (metadata only) of its
//! credentials Secret and CA bundle, from their watches or by name, and
//! the objects themselves when a client must be built from them.

use std::collections::BTreeMap;

use collibra_client::CollibraClient;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use super::ConnectionContext;
use crate::{
    api::connection::{CaBundle, ConnectionKey, ConnectionResource, ConnectionSettings},
    connection::{
        client_config::{self, Material},
        status::{ConnectionReason, Health},
        watches::{Kind, Seen, Version, Watched},
    },
};

/// Where a connection's Secrets live: its own namespace, or the
/// operator's for a cluster connection.
pub fn secret_namespace<K: ConnectionResource>(c: &K, cluster_ns: &str) -> String {
    match c.key() {
        ConnectionKey::Namespaced { namespace, .. } => namespace,
        _ => cluster_ns.to_owned(),
    }
}

/// The objects a connection's configuration reads, as fetched.
pub struct Loaded {
    /// The credentials Secret, if it exists.
    pub credentials: Option<Secret>,
    /// The CA bundle's PEM and the uid/resourceVersion of its object.
    pub ca_bundle: Option<(Vec<u8>, Version)>,
}

impl Loaded {
    /// A Collibra client built from `settings` and these objects.
    pub fn client(
        &self,
        settings: &ConnectionSettings,
        ns: &str,
    ) -> Result<CollibraClient, Health> {
        let empty = BTreeMap::new();
        let data = self
            .credentials
            .as_ref()
            .map(|s| s.data.as_ref().unwrap_or(&empty));
        let material = Material {
            namespace: ns,
            credentials: data,
            ca_bundle: self.ca_bundle.as_ref().map(|(pem, _)| pem.clone()),
        };
        let config = client_config::build(settings, &settings.auth.secret_name, &material)?;
        CollibraClient::new(config)
            .map_err(|e| Health::new(ConnectionReason::InvalidSpec, e.to_string()))
    }
}

/// The objects a connection reads: its credentials Secret and, if it has
/// one, its CA bundle's ConfigMap or Secret, all in `ns`.
pub fn read_objects(settings: &ConnectionSettings, ns: &str) -> (Watched, Option<Watched>) {
    let credentials = Watched::secret(ns, &settings.auth.secret_name);
    let ca = settings.ca_bundle.as_ref().map(|b| match &b.config_map {
        Some(name) => Watched::config_map(ns, name),
        None => Watched::secret(ns, b.secret.as_deref().unwrap_or_default()),
    });
    (credentials, ca)
}

/// Watches what `key` reads now (and nothing it no longer reads).
pub(super) fn track(
    ctx: &ConnectionContext,
    key: &ConnectionKey,
    settings: &ConnectionSettings,
    ns: &str,
) {
    let (credentials, ca) = read_objects(settings, ns);
    let wanted: Vec<Watched> = std::iter::once(credentials).chain(ca).collect();
    ctx.registry.watches().track(&ctx.client, key, &wanted);
}

/// The version of `what`: from its watch once that has listed it, else
/// read by name (metadata only). Recorded as the one `key` uses.
async fn version_of(
    ctx: &ConnectionContext,
    key: &ConnectionKey,
    what: &Watched,
) -> Result<Seen, kube::Error> {
    let watches = ctx.registry.watches();
    let seen = match watches.seen(what) {
        Some(seen) => seen,
        None => {
            let meta = match what.kind {
                Kind::Secret => Api::<Secret>::namespaced(ctx.client.clone(), &what.namespace)
                    .get_metadata_opt(&what.name)
                    .await?
                    .map(|m| m.metadata),
                Kind::ConfigMap => {
                    Api::<ConfigMap>::namespaced(ctx.client.clone(), &what.namespace)
                        .get_metadata_opt(&what.name)
                        .await?
                        .map(|m| m.metadata)
                }
            };
            Seen::of(meta.as_ref())
        }
    };
    watches.used(key, what, seen.clone());
    Ok(seen)
}

/// uid and resourceVersion of the credentials Secret (metadata only).
pub(super) async fn credentials_version(
    ctx: &ConnectionContext,
    key: &ConnectionKey,
    settings: &ConnectionSettings,
    ns: &str,
) -> Result<Version, Health> {
    let name = &settings.auth.secret_name;
    let (what, _) = read_objects(settings, ns);
    match version_of(ctx, key, &what).await {
        Ok(Seen::Present(v)) => Ok(v),
        Ok(Seen::Absent) => Err(Health::new(
            ConnectionReason::CredentialsNotFound,
            format!("spec.auth.secretName: Secret {ns}/{name} does not exist"),
        )),
        Err(e) => Err(Health::new(
            ConnectionReason::CredentialsNotFound,
            format!("cannot read Secret {ns}/{name} (spec.auth.secretName): {e}"),
        )),
    }
}

/// uid and resourceVersion of the CA bundle's ConfigMap or Secret, if one
/// is configured (metadata only).
pub(super) async fn ca_bundle_version(
    ctx: &ConnectionContext,
    key: &ConnectionKey,
    settings: &ConnectionSettings,
    ns: &str,
) -> Result<Option<Version>, Health> {
    let (_, Some(what)) = read_objects(settings, ns) else {
        return Ok(None);
    };
    let field = match what.kind {
        Kind::ConfigMap => "configMap",
        Kind::Secret => "secret",
    };
    let name = &what.name;
    match version_of(ctx, key, &what).await {
        Ok(Seen::Present(v)) => Ok(Some(v)),
        Ok(Seen::Absent) => Err(Health::new(
            ConnectionReason::CaBundleNotFound,
            format!("{ns}/{name} (spec.caBundle.{field}) does not exist"),
        )),
        Err(e) => Err(Health::new(
            ConnectionReason::CaBundleNotFound,
            format!("cannot read {ns}/{name} (spec.caBundle.{field}): {e}"),
        )),
    }
}

/// Reads the credentials Secret and the CA bundle a connection names, in `ns`.
pub async fn load(
    client: &Client,
    settings: &ConnectionSettings,
    ns: &str,
) -> Result<Loaded, Health> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret_name = &settings.auth.secret_name;
    let credentials = secrets.get_opt(secret_name).await.map_err(|e| {
        Health::new(
            ConnectionReason::CredentialsNotFound,
            format!("cannot read Secret {ns}/{secret_name} (spec.auth.secretName): {e}"),
        )
    })?;
    let ca_bundle = match &settings.ca_bundle {
        None => None,
        Some(b) => Some(ca_bundle(client, ns, b).await?),
    };
    Ok(Loaded {
        credentials,
        ca_bundle,
    })
}

/// The bundle's PEM and the uid/resourceVersion of the object holding it.
async fn ca_bundle(client: &Client, ns: &str, b: &CaBundle) -> Result<(Vec<u8>, Version), Health> {
    let not_found = |what: String| Health::new(ConnectionReason::CaBundleNotFound, what);
    let key = &b.key;
    if let Some(name) = &b.config_map {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let cm = api
            .get_opt(name)
            .await
            .map_err(|e| {
                not_found(format!(
                    "cannot read ConfigMap {ns}/{name} (spec.caBundle.configMap): {e}"
                ))
            })?
            .ok_or_else(|| {
                not_found(format!(
                    "ConfigMap {ns}/{name} (spec.caBundle.configMap) does not exist"
                ))
            })?;
        let pem = config_map_pem(&cm, key).ok_or_else(|| {
            not_found(format!(
                "ConfigMap {ns}/{name} has no key {key:?} (spec.caBundle.key)"
            ))
        })?;
        return Ok((pem, (cm.metadata.uid, cm.metadata.resource_version)));
    }
    let name = b.secret.as_deref().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = api
        .get_opt(name)
        .await
        .map_err(|e| {
            not_found(format!(
                "cannot read Secret {ns}/{name} (spec.caBundle.secret): {e}"
            ))
        })?
        .ok_or_else(|| {
            not_found(format!(
                "Secret {ns}/{name} (spec.caBundle.secret) does not exist"
            ))
        })?;
    let pem = s
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .ok_or_else(|| {
            not_found(format!(
                "Secret {ns}/{name} has no key {key:?} (spec.caBundle.key)"
            ))
        })?;
    Ok((pem, (s.metadata.uid, s.metadata.resource_version)))
}

/// The PEM under `key` of a CA bundle ConfigMap: from `data`, else from
/// `binaryData`.
fn config_map_pem(cm: &ConfigMap, key: &str) -> Option<Vec<u8>> {
    cm.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|s| s.as_bytes().to_vec())
        .or_else(|| {
            cm.binary_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| b.0.clone())
        })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::*;
    use crate::api::connection::{ClusterCollibraConnection, CollibraConnection};

    #[test]
    fn secrets_live_in_the_connection_namespace_or_the_operators() {
        let mut c = CollibraConnection::new(
            "prod",
            serde_json::from_str(
                r#"{"url":"https://c.example","auth":{"secretName":"creds"},"caBundle":{"secret":"ca"}}"#,
            )
            .expect("spec"),
        );
        c.metadata.namespace = Some("team-a".into());
        assert_eq!(secret_namespace(&c, "operator"), "team-a");
        let cc = ClusterCollibraConnection::new(
            "shared",
            serde_json::from_str(r#"{"url":"https://c.example","auth":{"secretName":"creds"}}"#)
                .expect("spec"),
        );
        assert_eq!(secret_namespace(&cc, "operator"), "operator");
    }

    fn settings(json: serde_json::Value) -> ConnectionSettings {
        serde_json::from_value(json).expect("settings")
    }

    #[test]
    fn a_connection_reads_its_secret_and_its_ca_bundle_in_one_namespace() {
        let plain =
            settings(serde_json::json!({"url": "https://c", "auth": {"secretName": "creds"}}));
        let (creds, ca) = read_objects(&plain, "team-a");
        assert_eq!(creds, Watched::secret("team-a", "creds"));
        assert_eq!(ca, None);

        let cm = settings(
            serde_json::json!({"url": "https://c", "auth": {"secretName": "creds"},
            "caBundle": {"configMap": "roots"}}),
        );
        assert_eq!(
            read_objects(&cm, "team-a").1,
            Some(Watched::config_map("team-a", "roots"))
        );
        let secret = settings(
            serde_json::json!({"url": "https://c", "auth": {"secretName": "creds"},
            "caBundle": {"secret": "roots"}}),
        );
        assert_eq!(
            read_objects(&secret, "ops").1,
            Some(Watched::secret("ops", "roots"))
        );
    }

    #[test]
    fn a_config_map_bundle_is_read_from_data_then_binary_data() {
        let mut cm = ConfigMap {
            data: Some(BTreeMap::from([("ca.crt".to_owned(), "TEXT".to_owned())])),
            binary_data: Some(BTreeMap::from([
                ("ca.crt".to_owned(), ByteString(b"BINARY".to_vec())),
                ("other.crt".to_owned(), ByteString(b"OTHER".to_vec())),
            ])),
            ..ConfigMap::default()
        };
        assert_eq!(config_map_pem(&cm, "ca.crt").as_deref(), Some(&b"TEXT"[..]));
        assert_eq!(
            config_map_pem(&cm, "other.crt").as_deref(),
            Some(&b"OTHER"[..])
        );
        assert_eq!(config_map_pem(&cm, "missing"), None);
        cm.data = None;
        assert_eq!(
            config_map_pem(&cm, "ca.crt").as_deref(),
            Some(&b"BINARY"[..])
        );
    }

    #[test]
    fn a_missing_credentials_secret_builds_no_client() {
        let s = settings(
            serde_json::json!({"url": "https://c.example", "auth": {"secretName": "creds"}}),
        );
        let loaded = Loaded {
            credentials: None,
            ca_bundle: None,
        };
        let err = loaded.client(&s, "team-a").expect_err("no credentials");
        assert_eq!(err.reason, ConnectionReason::CredentialsNotFound);
        assert!(err.message.contains("creds"), "{}", err.message);
    }
}

//! Probing a connection: is its spec usable, which credentials and CA
//! bundle does it read (a Collibra client is built again only when one of
//! them changed), and does its instance answer a list; the health found is
//! recorded in the registry and, on the way to Ready, wakes the
//! OAuthClients that waited for it.

use std::sync::Arc;

use tracing::info;

use super::{
    ConnectionContext,
    load::{ca_bundle_version, credentials_version, load, read_objects, secret_namespace, track},
    users::{claims, wake_users},
};
use crate::{
    api::connection::{ConnectionKey, ConnectionResource},
    connection::{
        accounting, client_config,
        hosts::AllowedHosts,
        metrics::ConnectionObserver,
        registry::{ConnectionState, Fingerprint},
        status::{ConnectionReason, Counts, Health},
        watches::Seen,
    },
    controller::{context::wait_listed, decide::Listed},
};

/// Checks a connection: its entry in the registry, with the health found
/// (also recorded there), and client counts when a list succeeded.
pub(super) async fn check<K: ConnectionResource>(
    obj: &K,
    ctx: &ConnectionContext,
) -> (Arc<ConnectionState>, Option<Counts>) {
    let key = obj.key();
    let settings = obj.settings();
    let conn = ctx
        .registry
        .entry(&key, &format!("{}|{}", settings.url, settings.api_path));
    let outcome = probe(obj, ctx, &conn).await;
    let health = match &outcome {
        Ok(listed) => connected(listed.len(), &settings.url),
        Err(h) => {
            if forbids_sending(h.reason) {
                conn.clear_client();
            }
            h.clone()
        }
    };
    let before = conn.set_health(health.clone());
    if health.reason.is_ready() && !before.reason.is_ready() {
        // The OAuthClients that waited for it go on at once.
        wake_users(ctx, &key);
    }
    // Which listed clients an OAuthClient accounts for: against every
    // OAuthClient, so after a start only once they are all listed (the
    // health above does not wait for that).
    let counts = match outcome {
        Ok(listed) => {
            wait_listed(&ctx.scopes).await;
            Some(accounting::count(&listed, &claims(ctx, &key)))
        }
        Err(_) => None,
    };
    let counts_pair = counts.map(|c| (c.managed, c.unmanaged));
    ctx.metrics
        .connections
        .checked(&key.label(), health.reason.is_ready(), counts_pair);
    (conn, counts)
}

/// The health of a connection whose instance listed `clients` clients.
fn connected(clients: usize, url: &str) -> Health {
    Health::new(
        ConnectionReason::Connected,
        format!("listed {clients} clients at {url}"),
    )
}

/// Whether a connection in this state must not send anything with the
/// client it has: its configuration is gone or not allowed any more.
fn forbids_sending(reason: ConnectionReason) -> bool {
    matches!(
        reason,
        ConnectionReason::CredentialsNotFound
            | ConnectionReason::CaBundleNotFound
            | ConnectionReason::InvalidSpec
            | ConnectionReason::HostNotAllowed
    )
}

/// The instance's clients, or the health that says why they could not be
/// listed.
async fn probe<K: ConnectionResource>(
    obj: &K,
    ctx: &ConnectionContext,
    conn: &ConnectionState,
) -> Result<Vec<accounting::ListedClient>, Health> {
    let key = obj.key();
    let settings = obj.settings();
    let ns = secret_namespace(obj, &ctx.cluster_namespace);
    if let Err(h) = usable_spec(obj, ctx, conn) {
        // Nothing is read for a connection that cannot be used.
        ctx.registry.watches().forget(&key);
        return Err(h);
    }
    track(ctx, &key, settings, &ns);
    let secret_name = &settings.auth.secret_name;
    // Metadata first: the data is read only when something changed. The
    // versions come from the watches once they have listed the objects, by
    // name from the API server until then.
    let seen = Fingerprint {
        generation: obj.meta().generation,
        credentials: credentials_version(ctx, &key, settings, &ns).await?,
        ca_bundle: ca_bundle_version(ctx, &key, settings, &ns).await?,
    };
    if !conn.built_from(&seen) {
        let loaded = load(&ctx.client, settings, &ns).await?;
        // The versions the client is built from are the ones used.
        let (creds, ca) = read_objects(settings, &ns);
        let watches = ctx.registry.watches();
        watches.used(
            &key,
            &creds,
            Seen::of(loaded.credentials.as_ref().map(|s| &s.metadata)),
        );
        if let (Some(ca), Some((_, v))) = (ca, &loaded.ca_bundle) {
            watches.used(&key, &ca, Seen::Present(v.clone()));
        }
        let fingerprint = Fingerprint {
            generation: obj.meta().generation,
            credentials: loaded
                .credentials
                .as_ref()
                .map(|s| (s.metadata.uid.clone(), s.metadata.resource_version.clone()))
                .unwrap_or_default(),
            ca_bundle: loaded.ca_bundle.as_ref().map(|(_, v)| v.clone()),
        };
        let client =
            loaded
                .client(settings, &ns)?
                .with_observer(Arc::new(ConnectionObserver::new(
                    ctx.metrics.clone(),
                    key.label(),
                )));
        info!(connection = %key, "built a Collibra client from the current spec and credentials");
        conn.set_client(fingerprint, client);
    }
    let listed = conn
        .all_clients()
        .await
        .map_err(|e| health_of(&e, &ns, secret_name))?;
    Ok(listed_clients(listed))
}

/// Whether the spec may be used at all: a valid URL, on the allow-list
/// for a namespaced connection, a valid namespaceSelector (recorded).
fn usable_spec<K: ConnectionResource>(
    obj: &K,
    ctx: &ConnectionContext,
    conn: &ConnectionState,
) -> Result<(), Health> {
    let selector = spec_check(obj, &ctx.allowed_hosts)?;
    conn.set_namespace_selector(selector);
    Ok(())
}

/// [`usable_spec`] without the registry: the namespaceSelector when the
/// spec may be used, or the health that says why not.
fn spec_check<K: ConnectionResource>(
    obj: &K,
    allowed_hosts: &AllowedHosts,
) -> Result<Option<kube::core::Selector>, Health> {
    let url = client_config::url(obj.settings())?;
    if matches!(obj.key(), ConnectionKey::Namespaced { .. }) {
        client_config::check_host(&url, allowed_hosts)?;
    }
    obj.namespace_selector()
        .map_err(|e| Health::new(ConnectionReason::InvalidSpec, e))
}

/// The instance's list as the accounting reads it.
pub(super) fn listed_clients(listed: Vec<(String, Listed)>) -> Vec<accounting::ListedClient> {
    listed
        .into_iter()
        .map(|(name, c)| accounting::ListedClient {
            name,
            id: c.client_id,
            issued_at: c.issued_at.and_then(crate::controller::status::rfc3339),
        })
        .collect()
}

/// The health a failed list stands for.
pub fn health_of(e: &collibra_client::Error, ns: &str, secret: &str) -> Health {
    use collibra_client::Error as E;
    match e {
        E::Unauthorized { .. } => Health::new(
            ConnectionReason::AuthenticationFailed,
            format!("{e}; check the credentials in Secret {ns}/{secret}"),
        ),
        E::Unavailable { .. } | E::Ambiguous { .. } => {
            Health::new(ConnectionReason::Unreachable, e.to_string())
        }
        E::Config(_) => Health::new(ConnectionReason::InvalidSpec, e.to_string()),
        E::NotFound { .. } | E::Unsupported { .. } => Health::new(
            ConnectionReason::UnexpectedResponse,
            format!("{e}; check spec.url and spec.apiPath"),
        ),
        E::Rejected { .. } | E::Ignored { .. } | E::InvalidResponse { .. } => {
            Health::new(ConnectionReason::UnexpectedResponse, e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use collibra_client::Operation;
    use kube::core::SelectorExt;

    use super::*;
    use crate::api::connection::{ClusterCollibraConnection, CollibraConnection};

    #[test]
    fn list_errors_map_to_reasons() {
        use collibra_client::Error as E;
        let cases = [
            (
                E::Unauthorized {
                    operation: Operation::Token,
                    status: 401,
                    error: Some("invalid_client".into()),
                    error_description: None,
                },
                ConnectionReason::AuthenticationFailed,
                "ns/creds",
            ),
            (
                E::Unavailable {
                    operation: Operation::List,
                    status: None,
                    retry_after: None,
                    message: "connection refused".into(),
                },
                ConnectionReason::Unreachable,
                "connection refused",
            ),
            (
                E::NotFound {
                    operation: Operation::List,
                },
                ConnectionReason::UnexpectedResponse,
                "spec.apiPath",
            ),
            (
                E::Unsupported {
                    operation: Operation::List,
                    status: 405,
                },
                ConnectionReason::UnexpectedResponse,
                "spec.url",
            ),
            (
                E::Rejected {
                    operation: Operation::List,
                    status: 400,
                    error: Some("bad".into()),
                    error_description: None,
                },
                ConnectionReason::UnexpectedResponse,
                "",
            ),
        ];
        for (e, reason, needle) in cases {
            let h = health_of(&e, "ns", "creds");
            assert_eq!(h.reason, reason, "{e}");
            assert!(h.message.contains(needle), "{}", h.message);
            assert!(
                h.message.contains(&e.to_string()),
                "the message keeps what Collibra said: {}",
                h.message
            );
        }
    }

    #[test]
    fn a_gone_or_refused_configuration_sends_nothing_an_outage_keeps_the_client() {
        for r in ConnectionReason::ALL {
            let expected = matches!(
                r,
                ConnectionReason::CredentialsNotFound
                    | ConnectionReason::CaBundleNotFound
                    | ConnectionReason::InvalidSpec
                    | ConnectionReason::HostNotAllowed
            );
            assert_eq!(forbids_sending(r), expected, "{r:?}");
        }
        // An instance that is down or refuses the credentials is retried
        // with the same client.
        assert!(!forbids_sending(ConnectionReason::Unreachable));
        assert!(!forbids_sending(ConnectionReason::AuthenticationFailed));
    }

    #[test]
    fn connected_counts_every_listed_client() {
        let h = connected(7, "https://c.example");
        assert_eq!(h.reason, ConnectionReason::Connected);
        assert_eq!(h.message, "listed 7 clients at https://c.example");
    }

    fn namespaced(url: &str) -> CollibraConnection {
        let mut c = CollibraConnection::new(
            "prod",
            serde_json::from_value(
                serde_json::json!({"url": url, "auth": {"secretName": "creds"}}),
            )
            .expect("spec"),
        );
        c.metadata.namespace = Some("team-a".into());
        c
    }

    fn cluster(spec: serde_json::Value) -> ClusterCollibraConnection {
        ClusterCollibraConnection::new("shared", serde_json::from_value(spec).expect("spec"))
    }

    #[test]
    fn a_spec_is_usable_only_with_a_url_an_allowed_host_and_a_valid_selector() {
        let none = AllowedHosts::parse::<&str>(&[]).expect("empty");
        let loopback = AllowedHosts::parse(&["127.0.0.1"]).expect("parses");
        // Namespaced: the allow-list decides.
        let err = spec_check(&namespaced("https://c.example"), &none).expect_err("off");
        assert_eq!(err.reason, ConnectionReason::HostNotAllowed);
        let err = spec_check(&namespaced("https://c.example"), &loopback).expect_err("other host");
        assert_eq!(err.reason, ConnectionReason::HostNotAllowed);
        assert_eq!(
            spec_check(&namespaced("http://127.0.0.1:8080"), &loopback),
            Ok(None)
        );
        let err = spec_check(&namespaced("not a url"), &loopback).expect_err("no URL");
        assert_eq!(err.reason, ConnectionReason::InvalidSpec);
        // Cluster-wide: the admin created it, any host; its selector is read.
        let any =
            cluster(serde_json::json!({"url": "https://c.example", "auth": {"secretName": "s"}}));
        assert_eq!(spec_check(&any, &none), Ok(None));
        let picky = cluster(
            serde_json::json!({"url": "https://c.example", "auth": {"secretName": "s"},
            "namespaceSelector": {"matchLabels": {"team": "a"}}}),
        );
        let selector = spec_check(&picky, &none)
            .expect("usable")
            .expect("a selector");
        assert!(selector.matches(&std::collections::BTreeMap::from([(
            "team".to_owned(),
            "a".to_owned()
        )])));
        let broken = cluster(
            serde_json::json!({"url": "https://c.example", "auth": {"secretName": "s"},
            "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Near"}]}}),
        );
        let err = spec_check(&broken, &none).expect_err("invalid selector");
        assert_eq!(err.reason, ConnectionReason::InvalidSpec);
        assert!(err.message.contains("namespaceSelector"), "{}", err.message);
    }

    #[test]
    fn the_list_is_counted_against_the_claims() {
        let listed = vec![
            (
                "billing".to_owned(),
                Listed {
                    client_id: "id-1".into(),
                    issued_at: Some(0),
                    grant_types: vec![],
                    redirect_uris: None,
                },
            ),
            (
                "stray".to_owned(),
                Listed {
                    client_id: "id-2".into(),
                    issued_at: None,
                    grant_types: vec![],
                    redirect_uris: None,
                },
            ),
        ];
        let clients = listed_clients(listed);
        assert_eq!(clients[0].name, "billing");
        assert_eq!(clients[0].id, "id-1");
        assert_eq!(
            clients[0].issued_at.as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        assert_eq!(clients[1].issued_at, None);
        let claims = [accounting::Claim {
            client_name: "billing".into(),
            client_id: Some("id-1".into()),
        }];
        assert_eq!(
            accounting::count(&clients, &claims),
            Counts {
                managed: 1,
                unmanaged: 1
            }
        );
    }
}

//! Which OAuthClients use a connection, from the watched scopes: those
//! whose deletion holds it (`deletionPolicy: Delete`), those woken when it
//! turns Ready, and what they claim in its instance (for the counts).

use std::sync::Arc;

use kube::ResourceExt;

use super::ConnectionContext;
use crate::{
    api::{DeletionPolicy, OAuthClient, connection::ConnectionKey},
    connection::accounting,
};

/// OAuthClients (`namespace/name`) with `deletionPolicy: Delete` using `key`.
pub(super) fn holders(ctx: &ConnectionContext, key: &ConnectionKey) -> Vec<String> {
    let users: Vec<Arc<OAuthClient>> = ctx.scopes.iter().flat_map(|s| s.objects_of(key)).collect();
    holders_among(users.iter().map(AsRef::as_ref))
}

/// Of `users`, those whose deletion must delete their Collibra client
/// through the connection (`deletionPolicy: Delete`), as `namespace/name`,
/// sorted.
fn holders_among<'a>(users: impl IntoIterator<Item = &'a OAuthClient>) -> Vec<String> {
    let mut names: Vec<String> = users
        .into_iter()
        .filter(|o| o.spec.deletion_policy == DeletionPolicy::Delete)
        .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
        .collect();
    names.sort();
    names
}

/// Asks for a reconcile of every OAuthClient that uses `key`.
pub(super) fn wake_users(ctx: &ConnectionContext, key: &ConnectionKey) {
    for s in &ctx.scopes {
        for o in s.objects_of(key) {
            s.wake
                .now(&o.namespace().unwrap_or_default(), &o.name_any());
        }
    }
}

/// What the OAuthClients using `key` claim in its instance.
pub(super) fn claims(ctx: &ConnectionContext, key: &ConnectionKey) -> Vec<accounting::Claim> {
    claims_from(ctx.scopes.iter().flat_map(|s| s.objects_of(key)).map(|o| {
        (
            o.spec.client_name.clone(),
            o.status.as_ref().and_then(|s| s.client_id.clone()),
        )
    }))
}

/// `(clientName, clientId)` pairs as the accounting's claims.
fn claims_from(
    pairs: impl IntoIterator<Item = (String, Option<String>)>,
) -> Vec<accounting::Claim> {
    pairs
        .into_iter()
        .map(|(client_name, client_id)| accounting::Claim {
            client_name,
            client_id,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(ns: &str, name: &str, policy: &str) -> OAuthClient {
        let mut o: OAuthClient = serde_json::from_value(serde_json::json!({
            "apiVersion": "oauth.collibra.dev/v1alpha1",
            "kind": "OAuthClient",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clientName": name, "deletionPolicy": policy}
        }))
        .expect("object");
        o.metadata.uid = Some(format!("uid-{name}"));
        o
    }

    #[test]
    fn only_users_that_delete_their_client_hold_the_connection() {
        let users = [
            user("team-b", "zeta", "Delete"),
            user("team-a", "kept", "Orphan"),
            user("team-a", "beta", "Delete"),
        ];
        assert_eq!(
            holders_among(users.iter()),
            vec!["team-a/beta".to_owned(), "team-b/zeta".to_owned()]
        );
        assert!(holders_among(users.iter().filter(|u| u.name_any() == "kept")).is_empty());
    }

    #[test]
    fn claims_keep_each_name_with_its_id() {
        let claims = claims_from([
            ("billing".to_owned(), Some("id-1".to_owned())),
            ("fresh".to_owned(), None),
        ]);
        assert_eq!(
            claims,
            vec![
                accounting::Claim {
                    client_name: "billing".into(),
                    client_id: Some("id-1".into()),
                },
                accounting::Claim {
                    client_name: "fresh".into(),
                    client_id: None,
                },
            ]
        );
    }
}

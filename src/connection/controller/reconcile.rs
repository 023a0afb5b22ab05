//! Reconciling one connection: the finalizer chooses apply (check, report,
//! requeue) or cleanup (forget the connection once no OAuthClient with
//! `deletionPolicy: Delete` holds it), and which OAuthClients hold or wake
//! with it.

use std::{sync::Arc, time::Duration};

use kube::{
    Api, ResourceExt,
    runtime::{
        controller::Action,
        finalizer::{Event, finalizer},
    },
};
use tracing::{info, warn};

use super::{ConnectionContext, Error, probe::check, report::report};
use crate::{
    api::{
        DeletionPolicy, OAuthClient,
        connection::{CONNECTION_FINALIZER, ConnectionKey, ConnectionResource},
    },
    connection::{
        accounting,
        status::{ConnectionReason, Health},
    },
};

pub(super) async fn reconcile<K: ConnectionResource>(
    obj: Arc<K>,
    ctx: Arc<ConnectionContext>,
) -> Result<Action, Error> {
    let api = obj.api(&ctx.client);
    let connection = obj.key().to_string();
    finalizer(&api, CONNECTION_FINALIZER, obj, |event| async {
        match event {
            Event::Apply(o) => apply(&api, o.as_ref(), &ctx).await,
            Event::Cleanup(o) => cleanup(&api, o.as_ref(), &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer {
            connection,
            message: other.to_string(),
        },
    })
}

pub(super) fn error_policy<K: ConnectionResource>(
    obj: Arc<K>,
    err: &Error,
    ctx: Arc<ConnectionContext>,
) -> Action {
    let delay = match err {
        // Re-checked soon: the holders' deletion does not wake a connection.
        Error::InUse { .. } => Duration::from_secs(5),
        _ => ctx
            .registry
            .get(&obj.key())
            .map_or(Duration::from_secs(5), |c| c.backoff()),
    };
    warn!(connection = %obj.key(), error = %err, retry_in = ?delay, "connection reconcile failed");
    Action::requeue(delay)
}

async fn apply<K: ConnectionResource>(
    api: &Api<K>,
    obj: &K,
    ctx: &ConnectionContext,
) -> Result<Action, Error> {
    let (conn, counts) = check(obj, ctx).await;
    let health = conn.health();
    report(api, obj, ctx, &conn, &health, counts).await?;
    // A changed Secret or ConfigMap wakes the connection at once (see
    // [`watches`](super::watches)); the re-check interval bounds the wait
    // should a wake-up be lost or a watch not be allowed.
    let next = if health.reason.is_ready() {
        ctx.resync
    } else {
        conn.backoff()
    };
    Ok(Action::requeue(next.min(ctx.recheck)))
}

async fn cleanup<K: ConnectionResource>(
    api: &Api<K>,
    obj: &K,
    ctx: &ConnectionContext,
) -> Result<Action, Error> {
    let key = obj.key();
    let holders = holders(ctx, &key);
    if holders.is_empty() {
        info!(connection = %key, "connection deleted; nothing uses it any more");
        ctx.registry.remove(&key);
        ctx.registry.watches().forget(&key);
        ctx.metrics.connections.forget(&key.label());
        return Ok(Action::await_change());
    }
    // The holders need the connection to delete their Collibra clients, so
    // it stays usable (and checked) until they are gone.
    let (conn, counts) = check(obj, ctx).await;
    let (health, list) = in_use(&holders);
    report(api, obj, ctx, &conn, &health, counts).await?;
    Err(Error::InUse {
        connection: key.to_string(),
        holders: list,
    })
}

/// OAuthClients (`namespace/name`) with `deletionPolicy: Delete` using `key`.
fn holders(ctx: &ConnectionContext, key: &ConnectionKey) -> Vec<String> {
    let users: Vec<Arc<OAuthClient>> = ctx
        .scopes
        .iter()
        .flat_map(|s| s.oauth_clients.objects_of(key))
        .collect();
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

/// The health a connection reports while its deletion waits for
/// `holders`, and the list it names them by (the first five, then how many
/// more: the message goes into a condition and an Event).
fn in_use(holders: &[String]) -> (Health, String) {
    let shown: Vec<&str> = holders.iter().take(5).map(String::as_str).collect();
    let more = holders.len().saturating_sub(shown.len());
    let mut list = shown.join(", ");
    if more > 0 {
        list.push_str(&format!(" and {more} more"));
    }
    let health = Health::new(
        ConnectionReason::InUse,
        format!("deletion waits for OAuthClients with deletionPolicy Delete that use it: {list}"),
    );
    (health, list)
}

/// Asks for a reconcile of every OAuthClient that uses `key`.
pub(super) fn wake_users(ctx: &ConnectionContext, key: &ConnectionKey) {
    for s in &ctx.scopes {
        for k in s.oauth_clients.keys_of(key) {
            s.wake.now(k);
        }
    }
}

/// What the OAuthClients using `key` claim in its instance.
pub(super) fn claims(ctx: &ConnectionContext, key: &ConnectionKey) -> Vec<accounting::Claim> {
    claims_from(
        ctx.scopes
            .iter()
            .flat_map(|s| s.oauth_clients.claims_of(key)),
    )
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
    fn a_held_deletion_names_five_holders_and_counts_the_rest() {
        let few = ["a/1".to_owned(), "a/2".to_owned()];
        let (health, list) = in_use(&few);
        assert_eq!(health.reason, ConnectionReason::InUse);
        assert_eq!(list, "a/1, a/2");
        assert!(health.message.ends_with(": a/1, a/2"), "{}", health.message);
        assert!(health.message.contains("deletionPolicy Delete"));

        let many: Vec<String> = (1..=8).map(|i| format!("a/{i}")).collect();
        let (health, list) = in_use(&many);
        assert_eq!(list, "a/1, a/2, a/3, a/4, a/5 and 3 more");
        assert!(!health.message.contains("a/6"), "{}", health.message);
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

//! Reconciling one connection: the finalizer chooses apply (check, report,
//! requeue) or cleanup (forget the connection once no OAuthClient with
//! `deletionPolicy: Delete` holds it; until then it stays checked and
//! reports `InUse`).

use std::{sync::Arc, time::Duration};

use kube::{
    Api,
    runtime::{
        controller::Action,
        finalizer::{Event, finalizer},
    },
};
use tracing::{info, warn};

use super::{ConnectionContext, Error, probe::check, report::report, users::holders};
use crate::{
    api::connection::{CONNECTION_FINALIZER, ConnectionResource},
    connection::status::{ConnectionReason, Health},
    controller::context::wait_listed,
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
    // After a start, the users still arriving must not be taken for none.
    wait_listed(&ctx.scopes).await;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

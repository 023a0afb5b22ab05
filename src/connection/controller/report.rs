//! Reporting a connection: its status (written only when it changed) and
//! an Event when Ready's reason changed.

use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::{Event as KubeEvent, EventType},
};
use serde_json::json;
use tracing::{info, warn};

use super::{ConnectionContext, Error};
use crate::{
    api::connection::{Capabilities, ConnectionResource, ConnectionStatus},
    connection::{
        registry::ConnectionState,
        status::{self, Counts, Health},
    },
};

/// Writes the status when it changed, and an Event when Ready's reason did.
pub(super) async fn report<K: ConnectionResource>(
    api: &Api<K>,
    obj: &K,
    ctx: &ConnectionContext,
    conn: &ConnectionState,
    health: &Health,
    counts: Option<Counts>,
) -> Result<(), Error> {
    let previous = obj.connection_status();
    let Some(next) = status_to_write(
        previous,
        obj.meta().generation,
        health,
        conn.capabilities(),
        counts,
        k8s_openapi::jiff::Timestamp::now(),
    ) else {
        return Ok(());
    };
    let name = obj.name_any();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": next })),
    )
    .await
    .map_err(|source| Error::PatchStatus {
        connection: obj.key().to_string(),
        source,
    })?;
    if let Some(ev) = transition_event(previous, health) {
        if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
            warn!(error = %e, "could not publish an Event");
        }
        if health.reason.event_type() == EventType::Warning {
            warn!(connection = %obj.key(), reason = health.reason.as_str(), message = %health.message, "connection not ready");
        } else {
            info!(connection = %obj.key(), message = %health.message, "connection ready");
        }
    }
    Ok(())
}

/// The status to write for `health`, or `None` when it is the one the
/// object already has (a write would only wake the watches).
fn status_to_write(
    previous: Option<&ConnectionStatus>,
    generation: Option<i64>,
    health: &Health,
    capabilities: Capabilities,
    counts: Option<Counts>,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<ConnectionStatus> {
    let next = status::build(previous, generation, health, capabilities, counts, now);
    (previous != Some(&next)).then_some(next)
}

/// The Event for `health` when Ready's reason in `previous` is another
/// one: transitions only, so a steady state records nothing.
fn transition_event(previous: Option<&ConnectionStatus>, health: &Health) -> Option<KubeEvent> {
    let before = previous
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.reason.as_str());
    (before != Some(health.reason.as_str())).then(|| KubeEvent {
        type_: health.reason.event_type(),
        reason: health.reason.as_str().to_owned(),
        // Event notes are bounded by the API server (1 kB).
        note: Some(health.message.chars().take(1000).collect()),
        action: "Check".to_owned(),
        secondary: None,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::connection::status::ConnectionReason;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("ts")
    }

    #[test]
    fn a_status_is_written_only_when_it_changes() {
        let ready = Health::new(ConnectionReason::Connected, "listed 3 clients at https://c");
        let counts = Some(Counts {
            managed: 1,
            unmanaged: 2,
        });
        let first = status_to_write(
            None,
            Some(1),
            &ready,
            Capabilities::default(),
            counts,
            at(10),
        )
        .expect("a new connection gets a status");
        let cond = first
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("True", "Connected")
        );
        assert_eq!(first.managed_clients, Some(1));
        assert_eq!(first.unmanaged_clients, Some(2));
        assert_eq!(first.observed_generation, Some(1));
        // The same check later: nothing to write, the time does not count.
        assert_eq!(
            status_to_write(
                Some(&first),
                Some(1),
                &ready,
                Capabilities::default(),
                counts,
                at(70)
            ),
            None
        );
        // A new generation, or another health, is written.
        assert!(
            status_to_write(
                Some(&first),
                Some(2),
                &ready,
                Capabilities::default(),
                counts,
                at(70)
            )
            .is_some()
        );
        let down = Health::new(ConnectionReason::Unreachable, "timed out");
        let next = status_to_write(
            Some(&first),
            Some(1),
            &down,
            Capabilities::default(),
            None,
            at(70),
        )
        .expect("written");
        assert_eq!(
            next.managed_clients,
            Some(1),
            "counts outlive a failed probe"
        );
    }

    #[test]
    fn events_mark_transitions_of_readys_reason_only() {
        let ready = Health::new(ConnectionReason::Connected, "listed 3 clients");
        let first = transition_event(None, &ready).expect("first report");
        assert_eq!(first.type_, EventType::Normal);
        assert_eq!(first.reason, "Connected");
        assert_eq!(first.action, "Check");
        let status = status::build(None, Some(1), &ready, Capabilities::default(), None, at(1));
        assert!(transition_event(Some(&status), &ready).is_none());
        // Same reason, another message: still no Event.
        let again = Health::new(ConnectionReason::Connected, "listed 4 clients");
        assert!(transition_event(Some(&status), &again).is_none());

        let long = "x".repeat(5000);
        let refused = Health::new(ConnectionReason::AuthenticationFailed, long);
        let ev = transition_event(Some(&status), &refused).expect("a transition");
        assert_eq!(ev.type_, EventType::Warning);
        assert_eq!(ev.reason, "AuthenticationFailed");
        assert_eq!(ev.note.map(|n| n.chars().count()), Some(1000));
    }
}

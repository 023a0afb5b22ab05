//! Reporting: the status write and the Events. Status is built by the pure
//! [`status::build`] and sent here with server-side apply; an Event is
//! recorded when Ready's reason moves, except where the action that caused
//! the move records its own.

use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::{Event, EventType},
};
use tracing::warn;

use super::{Error, KubeCall, Reconciler, Result, messages};
use crate::{
    api::{FIELD_MANAGER, OAuthClient},
    controller::{
        context::now,
        reasons::{EventReason, Reason},
        status::{self, Facts, Readiness},
    },
};

/// The Event for Ready moving from `previous` to `next`, if one is due:
/// Warnings for every reason short of Ready, nothing for work in progress,
/// and for Registered only when it is a recovery (a first registration is
/// recorded by the action that registered).
fn transition_event(previous: Option<Reason>, next: Reason) -> Option<EventType> {
    if previous == Some(next) {
        return None;
    }
    match next {
        Reason::Registered => (previous.is_some() && previous != Some(Reason::Registering))
            .then_some(EventType::Normal),
        Reason::Registering | Reason::Deleting => None,
        _ => Some(EventType::Warning),
    }
}

/// An Event an action asks for.
pub(super) struct Note {
    pub type_: EventType,
    pub reason: EventReason,
    pub note: String,
}

impl Reconciler<'_> {
    /// Writes status if it changed, with an Event when Ready's reason moves.
    pub(super) async fn report(&self, ready: &Readiness, facts: Facts) -> Result<()> {
        self.report_with(ready, facts, None).await
    }

    /// Like [`Self::report`], recording the action's `event` side by side
    /// with the status write.
    pub(super) async fn report_with(
        &self,
        ready: &Readiness,
        facts: Facts,
        event: Option<Note>,
    ) -> Result<()> {
        let event = async {
            if let Some(e) = event {
                self.event(e.type_, e.reason, e.note).await;
            }
        };
        let next = status::build(&self.obj, ready, facts, now());
        let last_reported = self.ctx.objects.record_reported(&self.uid, ready.reason);
        // The cached object can lag behind this process's own last status
        // write, and status changes wake no reconcile: when the reason
        // changed since the last report, write even if the cache agrees.
        if !status::differs(&self.obj, &next) && last_reported.is_none_or(|r| r == ready.reason) {
            event.await;
            return Ok(());
        }
        let previous = self
            .obj
            .ready_condition()
            .and_then(|c| Reason::parse(&c.reason));
        let api: Api<OAuthClient> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let body = serde_json::json!({
            "apiVersion": OAuthClient::api_version(&()),
            "kind": OAuthClient::kind(&()),
            "status": next,
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let name = self.obj.name_any();
        let patch = Patch::Apply(&body);
        let (patched, ()) = futures::join!(api.patch_status(&name, &params, &patch), event);
        patched.map_err(Error::kube(KubeCall::PatchStatus))?;
        if let Some(kind) = transition_event(previous, ready.reason) {
            self.event(
                kind,
                EventReason::Condition(ready.reason),
                ready.message.clone(),
            )
            .await;
        }
        Ok(())
    }

    /// Records an Event on the object. A failure is logged, never fatal:
    /// Events are a courtesy, status is the record.
    pub(super) async fn event(&self, type_: EventType, reason: EventReason, note: String) {
        let ev = Event {
            type_,
            reason: reason.as_str().to_owned(),
            note: Some(messages::truncate(note, messages::MAX_NOTE_BYTES)),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(e) = self
            .ctx
            .recorder
            .publish(&ev, &self.obj.object_ref(&()))
            .await
        {
            warn!(error = %e, "could not publish an Event");
        }
    }
}

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use super::*;

    #[test]
    fn events_follow_transitions_of_ready() {
        use Reason::*;
        // No move, no Event.
        for &r in Reason::VARIANTS {
            assert_eq!(transition_event(Some(r), r), None, "{r:?}");
        }
        // A first registration is recorded by the action, a recovery here.
        assert_eq!(transition_event(None, Registered), None);
        assert_eq!(transition_event(Some(Registering), Registered), None);
        assert_eq!(
            transition_event(Some(CollibraUnavailable), Registered),
            Some(EventType::Normal)
        );
        // Work in progress is not news.
        assert_eq!(transition_event(Some(Registered), Registering), None);
        assert_eq!(transition_event(Some(Registered), Deleting), None);
        // Everything short of Ready warns, also the first time.
        for r in [
            CollibraUnavailable,
            CollibraRejected,
            ClientExistsWithoutSecret,
            SecretConflict,
            NameConflict,
        ] {
            assert_eq!(transition_event(None, r), Some(EventType::Warning), "{r:?}");
            assert_eq!(
                transition_event(Some(Registered), r),
                Some(EventType::Warning),
                "{r:?}"
            );
        }
    }
}

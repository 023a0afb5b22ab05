//! The deletion path (docs/design.md, rule 5): delete the client in
//! Collibra when this object provably registered it, or let go of it and
//! keep the Secret; never block deletion forever.

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::EventType;

use kube::runtime::controller::Action;

use super::{Error, Reconciler, Result, messages};
use crate::{
    api::DeletionPolicy,
    controller::{
        collibra_instance::Deletion,
        context::now,
        decide::{self, SecretView},
        reasons::{EventReason, Reason},
        status::Readiness,
    },
};

impl Reconciler<'_> {
    pub(super) async fn cleanup(&self) -> Result<Action> {
        // Whether the client is this object's to delete rests on rule 1:
        // after a start, on every object, not the ones listed so far.
        self.ctx.wait_all_listed().await;
        let result = self.cleanup_inner().await;
        if result.is_ok() {
            self.ctx.objects.forget(&self.uid);
            self.ctx.wake_name_claimants(&self.obj);
        }
        result
    }

    async fn cleanup_inner(&self) -> Result<Action> {
        if self.ctx.name_winner(&self.obj).is_some() {
            // Never registered anything: the name belongs to another object.
            return Ok(Action::await_change());
        }
        let (mut view, mut current) = self.observe_secret().await?;
        // A type change cut short with the Secret deleted (rule 13): the
        // backup goes with this object, so the credentials go back into the
        // Secret before anything is let go of.
        if matches!(view, SecretView::Missing) && self.change_type(None).await? {
            (view, current) = self.observe_secret().await?;
        }
        // The Secret this object owns, the only one it may orphan.
        let owned = match &view {
            SecretView::Managed(m) if m.owned => current.as_ref(),
            _ => None,
        };
        if self.obj.spec.deletion_policy == DeletionPolicy::Orphan {
            return self
                .let_go(
                    owned,
                    EventType::Normal,
                    EventReason::Orphaned,
                    messages::orphaned(&self.secret_name),
                )
                .await;
        }
        if let Some(not_ready) = &self.blocked {
            // Its connection is needed to delete the client: wait for it as
            // for an outage, within the deletion grace.
            let e = collibra_client::Error::Unavailable {
                operation: collibra_client::Operation::List,
                status: None,
                retry_after: None,
                message: not_ready.message.clone(),
            };
            return self.cleanup_failed(owned, e).await;
        }
        let held = match &view {
            SecretView::Managed(m) if m.owned => m.client_id.clone(),
            _ => None,
        }
        .or_else(|| self.obj.status.as_ref().and_then(|s| s.client_id.clone()));
        let entry = match self.collibra.lookup(&self.obj.spec.client_name).await {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                self.event(
                    EventType::Normal,
                    EventReason::ClientAlreadyGone,
                    messages::already_gone(&self.obj.spec.client_name),
                )
                .await;
                return Ok(Action::await_change());
            }
            Err(e) => return self.cleanup_failed(owned, e).await,
        };
        let claimed_own = matches!(&view, SecretView::Managed(m) if m.owned && m.registering_since.is_some_and(|t| entry.issued_at.is_some_and(|i| i >= t.as_second() - decide::CLOCK_SKEW_SECS)));
        if held.as_deref() != Some(entry.client_id.as_str()) && !claimed_own {
            self.event(
                EventType::Warning,
                EventReason::ClientNotDeleted,
                messages::not_ours(&self.obj.spec.client_name, &entry.client_id),
            )
            .await;
            return Ok(Action::await_change());
        }
        // Best effort: the deletion goes on whether or not status says so.
        let _ = self
            .report(
                &Readiness::new(
                    Reason::Deleting,
                    format!("deleting client {} in Collibra", entry.client_id),
                ),
                self.facts(),
            )
            .await;
        match self
            .collibra
            .delete(&self.obj.spec.client_name, &entry.client_id)
            .await
        {
            Ok(Deletion::Deleted) => {
                self.event(
                    EventType::Normal,
                    EventReason::Deleted,
                    messages::deleted(&entry.client_id),
                )
                .await;
                Ok(Action::await_change())
            }
            Ok(Deletion::Unsupported) => {
                self.let_go(
                    owned,
                    EventType::Warning,
                    EventReason::DeleteUnsupported,
                    messages::delete_unsupported(&entry.client_id, &self.secret_name),
                )
                .await
            }
            Err(e) => self.cleanup_failed(owned, e).await,
        }
    }

    /// A cleanup that failed transiently waits, but never past the grace
    /// period: then the finalizer goes and the Secret stays.
    async fn cleanup_failed(
        &self,
        owned: Option<&Secret>,
        e: collibra_client::Error,
    ) -> Result<Action> {
        let since = self
            .obj
            .metadata
            .deletion_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or_else(now);
        let waited = now().duration_since(since).unsigned_abs();
        if waited >= self.ctx.settings.deletion_grace {
            return self
                .let_go(
                    owned,
                    EventType::Warning,
                    EventReason::CleanupAbandoned,
                    messages::cleanup_abandoned(waited, &e, &self.secret_name),
                )
                .await;
        }
        // Best effort, as above.
        let _ = self
            .report(
                &Readiness::new(
                    Reason::Deleting,
                    format!("waiting for Collibra to delete the client: {e}"),
                ),
                self.facts(),
            )
            .await;
        let delay = self
            .ctx
            .objects
            .backoffs
            .next_delay(&self.uid, e.retry_after());
        Err(Error::CleanupPending { delay, source: e })
    }

    /// Leaves the Collibra client in place: orphans the Secret this object
    /// owns (so its credentials outlive the object), records why, and lets
    /// the finalizer go.
    async fn let_go(
        &self,
        owned: Option<&Secret>,
        type_: EventType,
        reason: EventReason,
        note: String,
    ) -> Result<Action> {
        if let Some(secret) = owned {
            self.orphan_secret(secret).await?;
        }
        self.event(type_, reason, note).await;
        Ok(Action::await_change())
    }
}

//! The effects of a reconcile, around the pure decision table: observe (the
//! Secret, the Collibra list), decide ([`decide`]), act (claim, register,
//! write credentials, delete), report (status, Events). One module per
//! concern:
//!
//! - `secret_io`: reading and writing the Secret (its shape is in
//!   [`crate::controller::secret`]);
//! - `collibra`: registering, replacing and updating clients through the
//!   object's [`CollibraInstance`];
//! - `cleanup`: the deletion path;
//! - `report`: status and Events; `messages`: their words;
//! - `error`: what ends a reconcile early.
//!
//! Credentials are written straight after Collibra issues them and never
//! logged. The rules the code cites are numbered in docs/design.md.

mod cleanup;
mod collibra;
mod error;
mod messages;
mod report;
mod secret_io;

use std::{sync::Arc, time::Duration};

use collibra_client::{IssuedClient, Operation};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    runtime::{
        controller::Action,
        events::EventType,
        finalizer::{self, finalizer},
    },
};
use tracing::{info, warn};

pub use self::error::{Error, KubeCall};
use super::{
    collibra_instance::CollibraInstance,
    context::{Context, now},
    decide::{self, Listed, Observed, Plan, SecretView},
    reasons::{Issuance, Reason},
    status::{self, Facts, Readiness},
};
use crate::{
    api::{FINALIZER, OAuthClient, Replacement},
    connection::{connection_of, registry::NotReady},
};

type Result<T, E = Error> = std::result::Result<T, E>;

/// Entry point: the finalizer decides between apply and cleanup.
pub async fn reconcile(obj: Arc<OAuthClient>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<OAuthClient> = Api::namespaced(ctx.client.clone(), &ns);
    ctx.wait_secrets_synced(&ns).await;
    // The instance this object's client lives in; when it cannot be used
    // now, the default instance stands in untouched and `blocked` says why
    // (apply reports it, cleanup waits for it as for an outage).
    let (collibra, blocked) = match ctx.connections.resolve(&connection_of(&obj), &ns) {
        Ok(c) => (c, None),
        // Just started: the connection may only not be loaded yet. Nothing
        // is reported; loading wakes the object (`Registry::loaded`).
        Err(_) if !ctx.connections.loaded() => {
            return Ok(Action::requeue(CONNECTIONS_LOADING_RETRY));
        }
        Err(not_ready) => (ctx.default_collibra.clone(), Some(not_ready)),
    };
    // When the helper only added or removed the finalizer, the watch event
    // of that write brings the object back.
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            finalizer::Event::Apply(o) => Reconciler::new(o, &ctx, collibra, blocked).apply().await,
            finalizer::Event::Cleanup(o) => {
                Reconciler::new(o, &ctx, collibra, blocked).cleanup().await
            }
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => inner,
        other => Error::Finalizer(Box::new(other)),
    });
    ctx.metrics.reconciled(started.elapsed());
    result
}

/// When an object whose connection is not loaded yet is looked at again,
/// should the wake-up at the end of loading be missed.
const CONNECTIONS_LOADING_RETRY: Duration = Duration::from_secs(5);

/// The least wait before a reconcile that panicked runs again.
const AFTER_PANIC: Duration = Duration::from_secs(60);

/// On errors: retry with the object's backoff (or the delay the error asks for).
pub fn error_policy(obj: Arc<OAuthClient>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_error(err.metric_label());
    let uid = obj.uid().unwrap_or_default();
    let floor = match err {
        Error::CleanupPending { delay, .. } => Some(*delay),
        Error::Panicked { .. } => Some(AFTER_PANIC),
        _ => None,
    };
    let delay = ctx.objects.backoffs.next_delay(&uid, floor);
    warn!(object = %obj.name_any(), namespace = obj.namespace().as_deref().unwrap_or(""), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Readiness plus what to record and when to look again.
struct Outcome {
    ready: Readiness,
    facts: Facts,
    requeue: Duration,
    /// An Event the action asks for, recorded alongside the status write.
    event: Option<report::Note>,
}

impl Outcome {
    fn new(reason: Reason, message: impl Into<String>, facts: Facts, requeue: Duration) -> Self {
        Outcome {
            ready: Readiness::new(reason, message),
            facts,
            requeue,
            event: None,
        }
    }

    fn with_event(self, event: Option<report::Note>) -> Self {
        Outcome { event, ..self }
    }
}

/// Which outcomes [`Reconciler::in_sync_by_metadata`] may give.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quiet {
    /// Only "in sync" with nothing to change or report.
    Only,
    /// Any it finds.
    Any,
}

/// One reconcile of one object.
struct Reconciler<'a> {
    obj: Arc<OAuthClient>,
    ctx: &'a Context,
    /// The Collibra instance this object's client lives in.
    collibra: Arc<CollibraInstance>,
    /// Why the object's connection cannot be used now; then `collibra` is
    /// only a stand-in and no request may go to it.
    blocked: Option<NotReady>,
    ns: String,
    uid: String,
    secret_name: String,
}

impl<'a> Reconciler<'a> {
    fn new(
        obj: Arc<OAuthClient>,
        ctx: &'a Context,
        collibra: Arc<CollibraInstance>,
        blocked: Option<NotReady>,
    ) -> Self {
        Reconciler {
            ns: obj.namespace().unwrap_or_default(),
            uid: obj.uid().unwrap_or_default(),
            secret_name: obj.secret_name(),
            collibra,
            blocked,
            obj,
            ctx,
        }
    }

    /// The status fields as recorded; outcomes that learn nothing new keep
    /// them. A replacement this process made counts as recorded even before
    /// the cached object shows it.
    fn facts(&self) -> Facts {
        let mut facts = Facts::from_status(&self.obj);
        if let Some(r) = self.ctx.objects.last_replacement(&self.uid) {
            facts.last_replacement = Some(r);
        }
        facts
    }

    /// An outcome that keeps the recorded status fields.
    fn outcome(&self, reason: Reason, message: impl Into<String>, requeue: Duration) -> Outcome {
        Outcome::new(reason, message, self.facts(), requeue)
    }

    /// The spec's grant types as Collibra spells them, sorted, without repeats.
    fn grant_types(&self) -> Vec<String> {
        super::secret::grant_types(&self.obj)
    }

    async fn apply(&self) -> Result<Action> {
        let generation = self.obj.metadata.generation;
        if self.obj.pending_reconcile_request().is_some() {
            // Reconcile now (rule 14): whatever the backoff, with a fresh list.
            self.collibra.invalidate_list();
        } else if let Some(left) = self.ctx.objects.backoffs.held(&self.uid, generation) {
            // Woken by our own write during a backoff: keep waiting.
            return Ok(Action::requeue(left));
        }
        let outcome = self.converge().await?;
        let requeue = outcome.requeue;
        self.report_with(&outcome.ready, outcome.facts, outcome.event)
            .await?;
        match outcome.ready.reason {
            Reason::Registered => self.ctx.objects.backoffs.reset(&self.uid),
            r @ (Reason::CollibraUnavailable | Reason::CollibraRejected) => {
                self.ctx
                    .objects
                    .backoffs
                    .hold(&self.uid, generation, requeue);
                self.ctx.metrics.not_ready(r);
            }
            r => self.ctx.metrics.not_ready(r),
        }
        Ok(Action::requeue(requeue))
    }

    /// Observe, decide, act: everything but the status write.
    async fn converge(&self) -> Result<Outcome> {
        if !self.ctx.all_listed() {
            // Just started, the OAuthClients still arriving (docs/design.md,
            // "After a start"): an object in sync on its own is confirmed
            // now, as far as the rivals seen so far tell (the contested are
            // checked again once all are listed, `Context::wake_contested`);
            // anything else waits for the complete view.
            if self.blocked.is_none()
                && self.ctx.name_winner(&self.obj).is_none()
                && let Some(outcome) = self.in_sync_by_metadata(Quiet::Only).await?
            {
                return Ok(outcome);
            }
            self.ctx.wait_all_listed().await;
        }
        if let Some(outcome) = self.before_deciding().await? {
            return Ok(outcome);
        }
        if let Some(outcome) = self.in_sync_by_metadata(Quiet::Any).await? {
            return Ok(outcome);
        }
        let (mut view, mut current) = self.observe_secret().await?;
        if let Some(outcome) = self.shape_secret(&mut view, &mut current).await? {
            return Ok(outcome);
        }
        let mut listed = match self.collibra.lookup(&self.obj.spec.client_name).await {
            Ok(l) => l,
            Err(e) => return Ok(self.collibra_failure(Operation::List, &e)),
        };
        let mut plan = self.decide(&view, listed.as_ref());
        if matches!(view, SecretView::Missing)
            && !matches!(plan, Plan::Register(_) | Plan::Replace { .. })
        {
            // A missing Secret may be taken from the watch only where the
            // claim's create checks it; anything else asks the API server,
            // which also shows a Secret that is not ours.
            (view, current) = self.observe_uncached().await?;
            plan = self.decide(&view, listed.as_ref());
        }
        if matches!(plan, Plan::Register(_) | Plan::Replace { .. }) {
            // About to POST: decide again on a list at most --list-max-age
            // old, so a client created in Collibra meanwhile is found rather
            // than POSTed (rule 7). Every registration waiting shares it.
            listed = match self
                .collibra
                .lookup_within(&self.obj.spec.client_name, self.ctx.settings.list_max_age)
                .await
            {
                Ok(l) => l,
                Err(e) => return Ok(self.collibra_failure(Operation::List, &e)),
            };
            plan = self.decide(&view, listed.as_ref());
        }
        tracing::debug!(object = %self.obj.name_any(), plan = plan.name(), "decided");
        self.act(plan, current.as_ref(), listed).await
    }

    /// The outcome when the watch's metadata vouches for the Secret's data
    /// and the decision is "in sync": no read, and nothing to write unless
    /// the client needs an update or a note. `None`: look closer. With
    /// [`Quiet::Only`], also `None` when a failed list, an update or a note
    /// would be the outcome.
    async fn in_sync_by_metadata(&self, quiet: Quiet) -> Result<Option<Outcome>> {
        let Some(view) = self.observe_settled() else {
            return Ok(None);
        };
        let listed = match self.collibra.lookup(&self.obj.spec.client_name).await {
            Ok(l) => l,
            Err(_) if quiet == Quiet::Only => return Ok(None),
            Err(e) => return Ok(Some(self.collibra_failure(Operation::List, &e))),
        };
        let (
            Plan::InSync {
                adopt: false,
                drift,
                redirect_drift,
                rotation_unsupported,
            },
            Some(entry),
            SecretView::Managed(m),
        ) = (self.decide(&view, listed.as_ref()), listed, &view)
        else {
            return Ok(None);
        };
        let loud = drift.is_some() || redirect_drift.is_some() || rotation_unsupported;
        if loud && quiet == Quiet::Only {
            return Ok(None);
        }
        tracing::debug!(object = %self.obj.name_any(), plan = "InSync", "decided from the Secret's metadata");
        self.in_sync(
            None,
            m.rotated_for.as_deref(),
            &entry,
            false,
            drift,
            redirect_drift,
            rotation_unsupported,
        )
        .await
        .map(Some)
    }

    /// What settles a reconcile before any decision: a name that belongs to
    /// an older object (rule 1), and credentials still to be written (rule 2).
    async fn before_deciding(&self) -> Result<Option<Outcome>> {
        if let Some(winner) = self.ctx.name_winner(&self.obj) {
            return Ok(Some(self.outcome(
                Reason::NameConflict,
                messages::name_conflict(&winner, &self.obj.spec.client_name),
                Duration::from_secs(60),
            )));
        }
        if let Some(issued) = self.ctx.objects.take_unsaved(&self.uid) {
            // Collibra issued these before a failed Secret write: write them
            // first, whatever else is going on. Their claim is written, so
            // a Secret the watch does not show yet is asked for.
            let (view, current) = match self.observe_secret().await? {
                (SecretView::Missing, _) => self.observe_uncached().await?,
                seen => seen,
            };
            if let SecretView::Managed(m) = &view {
                let stored = self
                    .store_credentials(
                        issued,
                        current.as_ref(),
                        m.rotated_for.as_deref(),
                        None,
                        None,
                    )
                    .await?;
                return Ok(Some(stored));
            }
            self.ctx.objects.stash_unsaved(&self.uid, issued);
        }
        if let Some(not_ready) = &self.blocked {
            // Woken when the connection becomes ready; the requeue is a
            // safety net.
            return Ok(Some(self.outcome(
                Reason::ConnectionNotReady,
                not_ready.message.clone(),
                Duration::from_secs(60),
            )));
        }
        Ok(None)
    }

    /// The Secret's shape before deciding (rules 12 and 13): finish a type
    /// replacement found half done (even with a broken template: the
    /// credentials come first), stall on a template that cannot be
    /// rendered, then change the type if the template asks for another.
    /// `Some`: report that instead of deciding.
    async fn shape_secret(
        &self,
        view: &mut SecretView,
        current: &mut Option<Secret>,
    ) -> Result<Option<Outcome>> {
        if matches!(view, SecretView::Foreign { .. }) {
            return Ok(None);
        }
        if matches!(view, SecretView::Missing) && self.change_type(None).await? {
            (*view, *current) = self.observe_secret().await?;
        }
        let managed = current
            .as_ref()
            .filter(|_| matches!(view, SecretView::Managed(_)));
        if let Some(problem) = self.template_problem(managed) {
            return Ok(Some(self.outcome(
                Reason::InvalidSecretTemplate,
                messages::invalid_template(&problem),
                self.ctx.settings.resync,
            )));
        }
        if matches!(view, SecretView::Managed(_)) && self.change_type(current.as_ref()).await? {
            (*view, *current) = self.observe_secret().await?;
        }
        Ok(None)
    }

    /// The decision table's inputs from what was observed.
    fn decide(&self, secret: &SecretView, listed: Option<&Listed>) -> Plan {
        let status = self.obj.status.as_ref();
        decide::decide(&Observed {
            secret,
            listed,
            status_client_id: status.and_then(|s| s.client_id.as_deref()),
            rotation_request: self.obj.rotation_request(),
            grant_types: &self.grant_types(),
            redirect_uris: &self.obj.spec.redirect_uris,
            confirmed_redirect_uris: status.map_or(&[][..], |s| &s.redirect_uris[..]),
            delete_supported: self.collibra.delete_supported(),
            update_supported: self.collibra.update_supported(),
            last_rotation: status.and_then(|s| s.last_rotation.as_deref()),
            replacement_policy: self.obj.spec.replacement_policy,
            created: self.obj.metadata.creation_timestamp.as_ref().map(|t| t.0),
            declared_lost: self
                .obj
                .annotations()
                .get(crate::api::LOST_CLIENT_ANNOTATION)
                .map(String::as_str),
        })
    }

    /// Carries out `plan`.
    async fn act(
        &self,
        plan: Plan,
        current: Option<&Secret>,
        listed: Option<Listed>,
    ) -> Result<Outcome> {
        match plan {
            Plan::SecretConflict { why } => Ok(self.outcome(
                Reason::SecretConflict,
                messages::secret_conflict(&why),
                Duration::from_secs(60),
            )),
            Plan::ClientExistsWithoutSecret {
                client_id,
                own,
                rotation_unsupported,
            } => {
                if rotation_unsupported {
                    self.rotation_unsupported(&client_id).await;
                }
                Ok(self.exists_without_secret(&client_id, own))
            }
            Plan::CredentialsLost { client_id, how } => Ok(self.outcome(
                Reason::CredentialsLost,
                messages::credentials_lost(&client_id, &self.secret_name, &how),
                self.ctx.settings.resync,
            )),
            Plan::Register(reason) => self.register(current, reason).await,
            Plan::Replace { client_id, reason } => self.replace(current, &client_id, reason).await,
            Plan::InSync {
                adopt,
                drift,
                redirect_drift,
                rotation_unsupported,
            } => {
                let Some(entry) = listed else {
                    return Ok(self.outcome(
                        Reason::CollibraUnavailable,
                        "the client vanished from the list; retrying",
                        self.ctx.objects.backoffs.next_delay(&self.uid, None),
                    ));
                };
                self.in_sync(
                    current,
                    None,
                    &entry,
                    adopt,
                    drift,
                    redirect_drift,
                    rotation_unsupported,
                )
                .await
            }
        }
    }

    /// Writes fresh credentials (keeping them in memory if that fails),
    /// records the issuance (naming the old client of a replacement, in the
    /// Event and in `status.lastReplacement`), and reports Ready.
    async fn store_credentials(
        &self,
        issued: Arc<IssuedClient>,
        current: Option<&Secret>,
        rotated_for: Option<&str>,
        kind: Option<Issuance>,
        replaced: Option<messages::Replaced<'_>>,
    ) -> Result<Outcome> {
        self.write_credentials(&issued, current, rotated_for)
            .await?;
        let id = &issued.info.client_id;
        info!(object = %self.obj.name_any(), namespace = %self.ns, client_id = %id, "credentials written");
        // Recorded while status is written, not before it: one request
        // fewer on the way to Ready (BENCHMARKS.md, "Apply-to-Ready").
        let event = kind.map(|kind| report::Note {
            type_: EventType::Normal,
            reason: kind.event_reason(),
            note: match replaced {
                Some(r) => messages::replaced(r, id, &self.secret_name),
                None => messages::issued(kind, id, &self.secret_name),
            },
        });
        let last_replacement = match replaced {
            Some(r) => {
                let record = Replacement {
                    previous_client_id: r.previous.to_owned(),
                    client_id: id.clone(),
                    cause: r.reason.cause(),
                    time: now().to_string(),
                };
                self.ctx
                    .objects
                    .remember_replacement(&self.uid, record.clone());
                Some(record)
            }
            None => self.facts().last_replacement,
        };
        let facts = Facts {
            client_id: Some(id.clone()),
            client_id_issued_at: issued.info.client_id_issued_at.and_then(status::rfc3339),
            grant_types: issued.info.grant_types.clone(),
            // What Collibra confirmed: nothing, when it ignored the field,
            // so the next look tries to apply them with an update.
            redirect_uris: issued.info.redirect_uris.clone().unwrap_or_default(),
            last_rotation: rotated_for.map(str::to_owned),
            credentials_issued_at: Some(now().to_string()),
            last_replacement,
        };
        if let Some(ignored) = &issued.ignored {
            // Registered, credentials kept, but not the client the spec
            // describes: say so (rule 1 still holds: it is listed now, and
            // never registered again for this).
            return Ok(Outcome::new(
                Reason::CollibraRejected,
                messages::registered_but_ignored(id, &self.secret_name, ignored),
                facts,
                Duration::from_secs(300).min(self.ctx.settings.resync),
            )
            .with_event(event));
        }
        Ok(Outcome::new(
            Reason::Registered,
            messages::registered(id, &self.secret_name, &[]),
            facts,
            self.ctx.settings.resync,
        )
        .with_event(event))
    }
}

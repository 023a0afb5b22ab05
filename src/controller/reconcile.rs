//! The effects of a reconcile: observe (Secret, Collibra list), decide
//! (`decide.rs`), act (claim, register, write credentials, delete), report
//! (status, Events). Credentials are written straight after Collibra
//! issues them and never logged.

use std::{sync::Arc, time::Duration};

use collibra_client::{ClientUpdate, IssuedClient, NewClient};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{
        controller::Action,
        events::{Event, EventType},
        finalizer::{self, finalizer},
    },
};
use tracing::{info, warn};

use super::{
    context::{Context, listed, now},
    decide::{self, GrantDrift, Observed, Plan, RegisterReason, ReplaceReason, SecretView},
    secret::{self, Contents, Credentials},
    status::{self, Facts, Readiness, Reason},
    type_change,
};
use crate::{
    api::{DeletionPolicy, FIELD_MANAGER, FINALIZER, OAuthClient},
    secret_template,
};

/// Errors that end a reconcile early; the controller retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    /// Cleanup must wait (Collibra unavailable); retried after the delay.
    #[error("cleanup waits {0:?}: {1}")]
    CleanupPending(Duration, String),
    /// Credentials were issued but could not be written yet; kept in memory.
    #[error("credentials for {0} are held in memory until the Secret can be written: {1}")]
    Unsaved(String, kube::Error),
}

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApi",
            Error::Finalizer(_) => "Finalizer",
            Error::CleanupPending(..) => "CleanupPending",
            Error::Unsaved(..) => "CredentialsUnsaved",
        }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// Entry point: the finalizer decides between apply and cleanup.
pub async fn reconcile(obj: Arc<OAuthClient>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<OAuthClient> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            finalizer::Event::Apply(o) => Reconciler::new(o, &ctx).apply().await,
            finalizer::Event::Cleanup(o) => Reconciler::new(o, &ctx).cleanup().await,
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

/// On errors: retry with the object's backoff (or the delay the error asks for).
pub fn error_policy(obj: Arc<OAuthClient>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_error(err.metric_label());
    let uid = obj.uid().unwrap_or_default();
    let floor = match err {
        Error::CleanupPending(d, _) => Some(*d),
        _ => None,
    };
    let delay = ctx.backoff(&uid, floor);
    warn!(object = %obj.name_any(), namespace = obj.namespace().as_deref().unwrap_or(""), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// One reconcile of one object.
struct Reconciler<'a> {
    obj: Arc<OAuthClient>,
    ctx: &'a Context,
    ns: String,
    uid: String,
    secret_name: String,
}

/// Readiness plus what to record and when to look again.
struct Outcome {
    ready: Readiness,
    facts: Facts,
    requeue: Duration,
}

impl<'a> Reconciler<'a> {
    fn new(obj: Arc<OAuthClient>, ctx: &'a Context) -> Self {
        Reconciler {
            ns: obj.namespace().unwrap_or_default(),
            uid: obj.uid().unwrap_or_default(),
            secret_name: obj.secret_name(),
            obj,
            ctx,
        }
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }

    fn token_url(&self) -> String {
        self.ctx.collibra.token_url()
    }

    fn facts(&self) -> Facts {
        Facts::from_status(&self.obj)
    }

    fn grant_types(&self) -> Vec<String> {
        secret::grant_types(&self.obj)
    }

    // ---- apply ----------------------------------------------------------

    async fn apply(&self) -> Result<Action> {
        let generation = self.obj.metadata.generation;
        let requested = self.obj.pending_reconcile_request().is_some();
        if requested {
            // Reconcile now: whatever the backoff, with a fresh list.
            self.ctx.list.invalidate(0);
        } else if let Some(left) = self.ctx.held(&self.uid, generation) {
            // Woken by our own write during a backoff: keep waiting.
            return Ok(Action::requeue(left));
        }
        let outcome = self.converge().await?;
        let requeue = outcome.requeue;
        self.report(&outcome.ready, outcome.facts).await?;
        match outcome.ready.reason {
            Reason::Registered => self.ctx.reset_backoff(&self.uid),
            r @ (Reason::CollibraUnavailable | Reason::CollibraRejected) => {
                self.ctx.hold(&self.uid, generation, requeue);
                self.ctx.metrics.reconcile_error(r.as_str());
            }
            r => self.ctx.metrics.reconcile_error(r.as_str()),
        }
        Ok(Action::requeue(requeue))
    }

    async fn converge(&self) -> Result<Outcome> {
        if let Some(winner) = self.ctx.name_winner(&self.obj) {
            return Ok(Outcome {
                ready: Readiness::new(
                    Reason::NameConflict,
                    format!(
                        "OAuthClient {}/{} is older and already claims clientName {:?}; choose another clientName or delete one of the two",
                        winner.namespace, winner.name, self.obj.spec.client_name
                    ),
                ),
                facts: self.facts(),
                requeue: Duration::from_secs(60),
            });
        }
        if let Some(issued) = self.ctx.take_unsaved(&self.uid) {
            // Collibra issued these before a failed Secret write: write them
            // first, whatever else is going on.
            let (view, current) = self.observe_secret().await?;
            if let SecretView::Managed(m) = &view {
                return self
                    .store_credentials(issued, current.as_ref(), m.rotated_for.as_deref(), None)
                    .await;
            }
            self.ctx.stash_unsaved(&self.uid, issued);
        }
        let (mut view, mut current) = self.observe_secret().await?;
        if let Some(outcome) = self.shape_secret(&mut view, &mut current).await? {
            return Ok(outcome);
        }
        let lookup = match self.ctx.lookup(&self.obj.spec.client_name).await {
            Ok(l) => l,
            Err(e) => return Ok(self.collibra_failure("list", &e)),
        };
        let grant_types = self.grant_types();
        let status_id = self
            .obj
            .status
            .as_ref()
            .and_then(|s| s.client_id.as_deref());
        let plan = decide::decide(&Observed {
            secret: &view,
            listed: lookup.client.as_ref(),
            status_client_id: status_id,
            rotation_request: self.obj.rotation_request(),
            grant_types: &grant_types,
            delete_supported: self.ctx.delete_supported.get(),
            update_supported: self.ctx.update_supported.get(),
        });
        tracing::debug!(object = %self.obj.name_any(), plan = ?plan_name(&plan), "decided");
        match plan {
            Plan::SecretConflict { why } => Ok(Outcome {
                ready: Readiness::new(
                    Reason::SecretConflict,
                    format!(
                        "{why}. Delete or rename that Secret, or create this OAuthClient with another spec.secretName"
                    ),
                ),
                facts: self.facts(),
                requeue: Duration::from_secs(60),
            }),
            Plan::ClientExistsWithoutSecret { client_id, own } => {
                Ok(self.exists_without_secret(&client_id, own))
            }
            Plan::Register(reason) => {
                self.register(current.as_ref(), reason, lookup.generation)
                    .await
            }
            Plan::Replace { client_id, reason } => {
                self.replace(current.as_ref(), &client_id, reason, lookup.generation)
                    .await
            }
            Plan::InSync {
                adopt,
                drift,
                rotation_unsupported,
            } => {
                let Some(entry) = lookup.client else {
                    return Ok(
                        self.collibra_failure_text("the client vanished from the list; retrying")
                    );
                };
                self.in_sync(current.as_ref(), &entry, adopt, drift, rotation_unsupported)
                    .await
            }
        }
    }

    fn endpoint_strings(&self) -> (String, String) {
        (self.token_url(), self.ctx.collibra.base_url())
    }

    /// Before deciding: finish a Secret type replacement found half done
    /// (even with a broken template: the credentials come first), stall on
    /// a template that cannot be rendered, then change the type if the
    /// template asks for another. `Some`: report that instead of deciding.
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
        let held = current
            .as_ref()
            .filter(|_| matches!(view, SecretView::Managed(_)))
            .and_then(secret_template::stored_credentials);
        let (token_url, collibra_url) = self.endpoint_strings();
        let endpoint = secret::Endpoint {
            token_url: &token_url,
            collibra_url: &collibra_url,
        };
        if let Some(problem) = secret::template_problem(&self.obj, endpoint, held.as_ref()) {
            return Ok(Some(Outcome {
                ready: Readiness::new(
                    Reason::InvalidSecretTemplate,
                    format!(
                        "{problem}. The Secret is left as it is, and nothing is registered, until the template is fixed"
                    ),
                ),
                facts: self.facts(),
                requeue: self.ctx.settings.resync,
            }));
        }
        if matches!(view, SecretView::Managed(_)) && self.change_type(current.as_ref()).await? {
            (*view, *current) = self.observe_secret().await?;
        }
        Ok(None)
    }

    /// Walks the type replacement of `type_change` from wherever it stands
    /// (`target`: the Secret, `None` if missing). Returns whether anything
    /// was written. The backup is looked up only when it can matter.
    async fn change_type(&self, target: Option<&Secret>) -> Result<bool> {
        let want_type = secret::desired_type(&self.obj).to_owned();
        let backup_name = type_change::backup_name(&self.obj);
        let wrong_type = target.is_some_and(|t| {
            t.type_.as_deref().unwrap_or(secret_template::DEFAULT_TYPE) != want_type
        });
        if target.is_some()
            && !wrong_type
            && self.ctx.cached_secret(&self.ns, &backup_name).is_none()
        {
            return Ok(false);
        }
        let api = self.secrets();
        let mut target = target.cloned();
        let mut backup = api
            .get_opt(&backup_name)
            .await?
            .filter(|b| type_change::is_backup_of(&self.obj, b));
        let create = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let mut wrote = false;
        // Four steps at most; the bound only guards against a loop.
        for _ in 0..6 {
            let step = type_change::next_step(target.as_ref(), backup.as_ref(), &want_type);
            tracing::debug!(object = %self.obj.name_any(), step = ?step, "secret type");
            match step {
                type_change::Step::Done => break,
                type_change::Step::Backup => {
                    let Some(body) = target
                        .as_ref()
                        .and_then(|t| type_change::backup(&self.obj, t))
                    else {
                        break;
                    };
                    backup = Some(match api.create(&create, &body).await {
                        Ok(b) => b,
                        // Ours but stale (checked above): bring it up to date.
                        Err(kube::Error::Api(e)) if e.code == 409 => {
                            api.patch(
                                &backup_name,
                                &PatchParams {
                                    field_manager: Some(FIELD_MANAGER.to_owned()),
                                    ..PatchParams::default()
                                },
                                &Patch::Merge(serde_json::json!({
                                    "metadata": {"annotations": body.metadata.annotations},
                                    "data": body.data,
                                })),
                            )
                            .await?
                        }
                        Err(e) => return Err(e.into()),
                    });
                }
                type_change::Step::DeleteTarget => {
                    let Some(t) = target.as_ref() else { break };
                    let params = kube::api::DeleteParams {
                        preconditions: Some(kube::api::Preconditions {
                            uid: t.metadata.uid.clone(),
                            resource_version: t.metadata.resource_version.clone(),
                        }),
                        ..kube::api::DeleteParams::default()
                    };
                    api.delete(&self.secret_name, &params).await?;
                    target = None;
                }
                type_change::Step::Restore => {
                    let Some((client_id, client_secret, rotated_for)) =
                        backup.as_ref().and_then(type_change::restore_contents)
                    else {
                        break;
                    };
                    let (token_url, collibra_url) = self.endpoint_strings();
                    let want = secret::desired(
                        &self.obj,
                        secret::Endpoint {
                            token_url: &token_url,
                            collibra_url: &collibra_url,
                        },
                        Contents::Credentials {
                            creds: Credentials {
                                client_id: &client_id,
                                client_secret: &client_secret,
                            },
                            rotated_for: rotated_for.as_deref(),
                        },
                        false,
                    );
                    target = Some(api.create(&create, &want).await?);
                    self.event(
                        EventType::Normal,
                        "SecretTypeChanged",
                        format!(
                            "Secret {} replaced to make its type {want_type}; its credentials were kept (no new registration)",
                            self.secret_name
                        ),
                    )
                    .await;
                }
                type_change::Step::DropBackup => {
                    let params = kube::api::DeleteParams {
                        preconditions: Some(kube::api::Preconditions {
                            uid: backup.as_ref().and_then(|b| b.metadata.uid.clone()),
                            resource_version: None,
                        }),
                        ..kube::api::DeleteParams::default()
                    };
                    match api.delete(&backup_name, &params).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => return Err(e.into()),
                    }
                    backup = None;
                }
            }
            wrote = true;
        }
        Ok(wrote)
    }

    /// The Secret as the operator may know it. The watch cache answers when
    /// it shows credentials; otherwise the API server is asked, reading the
    /// data only of a Secret that carries the managed-by label.
    async fn observe_secret(&self) -> Result<(SecretView, Option<Secret>)> {
        if let Some(s) = self.ctx.cached_secret(&self.ns, &self.secret_name) {
            let v = secret::view(&self.obj, &s);
            if matches!(&v, SecretView::Managed(m) if m.client_id.is_some())
                || matches!(v, SecretView::Foreign { .. })
            {
                return Ok((v, Some((*s).clone())));
            }
        }
        let api = self.secrets();
        match api.get_metadata_opt(&self.secret_name).await? {
            None => Ok((SecretView::Missing, None)),
            Some(meta) if !secret::is_labeled(&meta.metadata) => Ok((
                SecretView::Foreign {
                    why: format!(
                        "Secret {} exists without the label {}={}; it is never overwritten",
                        self.secret_name,
                        crate::api::MANAGED_BY_LABEL,
                        crate::api::MANAGED_BY_VALUE
                    ),
                },
                None,
            )),
            Some(_) => match api.get_opt(&self.secret_name).await? {
                None => Ok((SecretView::Missing, None)),
                Some(s) => Ok((secret::view(&self.obj, &s), Some(s))),
            },
        }
    }

    async fn in_sync(
        &self,
        current: Option<&Secret>,
        entry: &decide::Listed,
        adopt: bool,
        drift: Option<GrantDrift>,
        rotation_unsupported: bool,
    ) -> Result<Outcome> {
        if let Some(cur) = current {
            let want = secret::desired(
                &self.obj,
                secret::Endpoint {
                    token_url: &self.token_url(),
                    collibra_url: &self.ctx.collibra.base_url(),
                },
                Contents::Refresh {
                    current: cur,
                    keep_claim: false,
                },
                false,
            );
            if secret::needs_update(cur, &want) {
                let reshaped = secret::reshapes(cur, &want);
                self.apply_secret(&want, Some(cur)).await?;
                if reshaped {
                    self.event(
                        EventType::Normal,
                        "SecretReshaped",
                        format!(
                            "Secret {} rendered again from the credentials it holds (secretTemplate changed); no new registration",
                            self.secret_name
                        ),
                    )
                    .await;
                }
            }
        }
        if adopt {
            self.event(
                EventType::Normal,
                "Adopted",
                format!(
                    "Adopted Collibra client {} from the pre-created Secret {}",
                    entry.client_id, self.secret_name
                ),
            )
            .await;
        }
        let mut facts = self.facts();
        facts.client_id = Some(entry.client_id.clone());
        facts.client_id_issued_at = entry.issued_at.and_then(status::rfc3339);
        facts.grant_types = entry.grant_types.clone();
        facts.last_rotation =
            current.and_then(|c| c.annotations().get(secret::ROTATED_FOR_ANNOTATION).cloned());
        let mut notes = Vec::new();
        match drift {
            None => {}
            Some(GrantDrift::Update) => match self.update_grants(entry).await {
                Ok(Some(updated)) => {
                    facts.grant_types = updated;
                }
                Ok(None) => notes.push(format!(
                    "grant types in Collibra are {:?}, the spec asks for {:?}, and Collibra does not support updates (PUT)",
                    entry.grant_types,
                    self.grant_types()
                )),
                Err(e) => return Ok(self.collibra_failure("update", &e)),
            },
            Some(GrantDrift::Unsupported { actual }) => notes.push(format!(
                "grant types in Collibra are {actual:?}, the spec asks for {:?}, and Collibra does not support updates (PUT)",
                self.grant_types()
            )),
        }
        if rotation_unsupported {
            notes.push("a rotation was requested but Collibra does not support DELETE, so credentials cannot be rotated".to_owned());
        }
        let mut message = format!(
            "Client {} is registered in Collibra; its credentials are in Secret {}",
            entry.client_id, self.secret_name
        );
        for n in &notes {
            message.push_str("; ");
            message.push_str(n);
        }
        Ok(Outcome {
            ready: Readiness::new(Reason::Registered, message),
            facts,
            requeue: self.ctx.settings.resync,
        })
    }

    /// Sends a PUT with the spec's grant types. `Ok(None)`: not supported.
    async fn update_grants(
        &self,
        entry: &decide::Listed,
    ) -> Result<Option<Vec<String>>, collibra_client::Error> {
        let update = ClientUpdate {
            client_name: self.obj.spec.client_name.clone(),
            grant_types: self.grant_types(),
            software_id: self.obj.spec.software_id.clone(),
        };
        match self
            .ctx
            .collibra
            .update_client(&entry.client_id, &update)
            .await
        {
            Ok(info) => {
                self.ctx.update_supported.set(true);
                self.ctx.list.registered(&info.client_name, listed(&info));
                self.event(
                    EventType::Normal,
                    "GrantTypesUpdated",
                    format!(
                        "Updated grant types of client {} to {:?}",
                        entry.client_id, info.grant_types
                    ),
                )
                .await;
                Ok(Some(info.grant_types))
            }
            Err(
                collibra_client::Error::Unsupported { .. }
                | collibra_client::Error::NotFound { .. },
            ) => {
                if self.ctx.update_supported.set(false) {
                    warn!(
                        "Collibra does not support updating clients (PUT); grant type drift is reported, not fixed"
                    );
                }
                self.event(
                    EventType::Warning,
                    "GrantTypesDrift",
                    format!(
                        "Grant types of client {} differ from the spec and Collibra does not support updates",
                        entry.client_id
                    ),
                )
                .await;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn exists_without_secret(&self, client_id: &str, own: bool) -> Outcome {
        let name = &self.obj.spec.client_name;
        let adopt = format!(
            "pre-create Secret {} with its client_id and client_secret and the label {}={} to adopt it",
            self.secret_name,
            crate::api::MANAGED_BY_LABEL,
            crate::api::MANAGED_BY_VALUE
        );
        let message = if own {
            format!(
                "Client {client_id} ({name:?}) was registered by this operator but its secret was lost before it reached the Secret, and Collibra does not support DELETE, so it cannot be replaced. An administrator can delete client {client_id} in Collibra (the operator then registers it again), or {adopt}"
            )
        } else {
            format!(
                "A client named {name:?} (id {client_id}) already exists in Collibra and this operator holds no credentials for it. To use it, {adopt}; otherwise choose another clientName, or delete that client in Collibra"
            )
        };
        Outcome {
            ready: Readiness::new(Reason::ClientExistsWithoutSecret, message),
            facts: self.facts(),
            requeue: self.ctx.settings.resync,
        }
    }

    /// Claims the Secret, registers the client, writes the credentials.
    async fn register(
        &self,
        current: Option<&Secret>,
        reason: RegisterReason,
        generation: u64,
    ) -> Result<Outcome> {
        let claimed = match self.claim(current).await? {
            Some(s) => s,
            None => {
                return Ok(Outcome {
                    ready: Readiness::new(
                        Reason::Registering,
                        "waiting for the Secret to be visible",
                    ),
                    facts: self.facts(),
                    requeue: Duration::from_secs(1),
                });
            }
        };
        let request = self.new_client();
        let issued = match self.ctx.collibra.register_client(&request).await {
            Ok(issued) => Arc::new(issued),
            Err(e @ collibra_client::Error::Ambiguous { .. }) => {
                return Ok(self.unknown_registration(&e, generation));
            }
            Err(e) => {
                // Definitely not registered: drop the claim so a client that
                // someone else registers later is never taken for ours.
                self.release_claim(&claimed).await?;
                if matches!(e, collibra_client::Error::Rejected { .. }) {
                    // Perhaps the name was taken since the cached list was
                    // read: look again before calling it a rejection.
                    self.ctx.list.invalidate(generation);
                    if let Ok(fresh) = self.ctx.lookup(&self.obj.spec.client_name).await
                        && fresh.client.is_some()
                    {
                        return Ok(Outcome {
                            ready: Readiness::new(
                                Reason::Registering,
                                "the name was taken meanwhile; deciding again",
                            ),
                            facts: self.facts(),
                            requeue: Duration::from_millis(200),
                        });
                    }
                }
                return Ok(self.collibra_failure("register", &e));
            }
        };
        self.ctx
            .list
            .registered(&issued.info.client_name, listed(&issued.info));
        let what = match reason {
            RegisterReason::New => "Registered",
            RegisterReason::Recreate => "Recreated",
        };
        self.store_credentials(
            issued,
            Some(&claimed),
            self.obj.rotation_request(),
            Some(what),
        )
        .await
    }

    /// The registration request for this object's spec.
    fn new_client(&self) -> NewClient {
        NewClient {
            client_name: self.obj.spec.client_name.clone(),
            grant_types: self.grant_types(),
            software_id: self.obj.spec.software_id.clone(),
        }
    }

    /// A POST whose outcome is unknown: the client may exist now. The claim
    /// stays (it proves the client ours) and the list is read again before
    /// deciding.
    fn unknown_registration(&self, e: &collibra_client::Error, generation: u64) -> Outcome {
        self.ctx.list.invalidate(generation);
        Outcome {
            ready: Readiness::new(
                Reason::Registering,
                format!(
                    "the outcome of the registration is unknown ({e}); checking Collibra's list again"
                ),
            ),
            facts: self.facts(),
            requeue: Duration::from_secs(1),
        }
    }

    /// Writes fresh credentials; on failure keeps them in memory and retries.
    async fn store_credentials(
        &self,
        issued: Arc<IssuedClient>,
        current: Option<&Secret>,
        rotated_for: Option<&str>,
        event: Option<&str>,
    ) -> Result<Outcome> {
        let want = secret::desired(
            &self.obj,
            secret::Endpoint {
                token_url: &self.token_url(),
                collibra_url: &self.ctx.collibra.base_url(),
            },
            Contents::Credentials {
                creds: Credentials {
                    client_id: &issued.info.client_id,
                    client_secret: &issued.client_secret,
                },
                rotated_for,
            },
            false,
        );
        let mut last_err = None;
        for attempt in 0..4u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            }
            match self.apply_secret(&want, current).await {
                Ok(_) => {
                    last_err = None;
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        if let Some(e) = last_err {
            self.ctx.stash_unsaved(&self.uid, issued.clone());
            return Err(Error::Unsaved(issued.info.client_id.clone(), e));
        }
        let id = &issued.info.client_id;
        info!(object = %self.obj.name_any(), namespace = %self.ns, client_id = %id, "credentials written");
        if let Some(reason) = event {
            let note = match reason {
                "Recreated" => format!(
                    "Client was missing in Collibra; registered it again as {id}, credentials in Secret {}",
                    self.secret_name
                ),
                "Rotated" => format!(
                    "Rotated credentials: new client {id}, credentials in Secret {}",
                    self.secret_name
                ),
                "Replaced" => format!(
                    "Replaced client whose secret was lost: new client {id}, credentials in Secret {}",
                    self.secret_name
                ),
                _ => format!(
                    "Registered client {id} in Collibra, credentials in Secret {}",
                    self.secret_name
                ),
            };
            self.event(EventType::Normal, reason, note).await;
        }
        let issued_at = issued.info.client_id_issued_at.and_then(status::rfc3339);
        Ok(Outcome {
            ready: Readiness::new(
                Reason::Registered,
                format!(
                    "Client {id} is registered in Collibra; its credentials are in Secret {}",
                    self.secret_name
                ),
            ),
            facts: Facts {
                client_id: Some(id.clone()),
                client_id_issued_at: issued_at.clone(),
                grant_types: issued.info.grant_types.clone(),
                last_rotation: rotated_for.map(str::to_owned),
                credentials_issued_at: Some(now().to_string()),
            },
            requeue: self.ctx.settings.resync,
        })
    }

    /// Deletes `client_id` and registers the name again.
    async fn replace(
        &self,
        current: Option<&Secret>,
        client_id: &str,
        reason: ReplaceReason,
        generation: u64,
    ) -> Result<Outcome> {
        let Some(claimed) = self.claim(current).await? else {
            return Ok(Outcome {
                ready: Readiness::new(Reason::Registering, "waiting for the Secret to be visible"),
                facts: self.facts(),
                requeue: Duration::from_secs(1),
            });
        };
        match self.delete_client(client_id, generation).await {
            Ok(true) => {}
            Ok(false) => {
                self.release_claim(&claimed).await?;
                return Ok(match reason {
                    ReplaceReason::LostSecret => self.exists_without_secret(client_id, true),
                    ReplaceReason::Rotation => {
                        self.event(
                            EventType::Warning,
                            "RotationUnsupported",
                            "Collibra does not support DELETE, so the credentials cannot be rotated".to_owned(),
                        )
                        .await;
                        Outcome {
                            ready: Readiness::new(
                                Reason::Registering,
                                "rotation not supported; re-checking",
                            ),
                            facts: self.facts(),
                            requeue: Duration::from_millis(100),
                        }
                    }
                });
            }
            Err(e) => {
                if matches!(e, collibra_client::Error::NotFound { .. }) {
                    // 404: gone already, or not supported. The list tells.
                    self.ctx.list.invalidate(generation);
                    return Ok(Outcome {
                        ready: Readiness::new(
                            Reason::Registering,
                            "the client was not found; re-reading the list",
                        ),
                        facts: self.facts(),
                        requeue: Duration::from_millis(200),
                    });
                }
                return Ok(self.collibra_failure("delete", &e));
            }
        }
        let request = self.new_client();
        let issued = match self.ctx.collibra.register_client(&request).await {
            Ok(i) => Arc::new(i),
            Err(e @ collibra_client::Error::Ambiguous { .. }) => {
                return Ok(self.unknown_registration(&e, generation));
            }
            // The old client is gone; with the claim still in place the next
            // reconcile registers (the name is free) or recognises ours.
            Err(e) => return Ok(self.collibra_failure("register", &e)),
        };
        self.ctx
            .list
            .registered(&issued.info.client_name, listed(&issued.info));
        let (rotated_for, event) = match reason {
            ReplaceReason::Rotation => (self.obj.rotation_request(), "Rotated"),
            ReplaceReason::LostSecret => (
                claimed
                    .annotations()
                    .get(secret::ROTATED_FOR_ANNOTATION)
                    .map(String::as_str),
                "Replaced",
            ),
        };
        let rotated_for = rotated_for.map(str::to_owned);
        self.store_credentials(issued, Some(&claimed), rotated_for.as_deref(), Some(event))
            .await
    }

    /// DELETE in Collibra. `Ok(false)`: not supported.
    async fn delete_client(
        &self,
        client_id: &str,
        generation: u64,
    ) -> Result<bool, collibra_client::Error> {
        match self.ctx.collibra.delete_client(client_id).await {
            Ok(()) => {
                self.ctx.delete_supported.set(true);
                self.ctx.list.deleted(&self.obj.spec.client_name, client_id);
                Ok(true)
            }
            Err(collibra_client::Error::Unsupported { .. }) => {
                if self.ctx.delete_supported.set(false) {
                    warn!("Collibra does not support deleting clients (DELETE)");
                }
                Ok(false)
            }
            Err(e @ collibra_client::Error::NotFound { .. }) => {
                // Gone, or DELETE is not routed. Decide with a fresh list.
                self.ctx.list.invalidate(generation);
                match self.ctx.lookup(&self.obj.spec.client_name).await {
                    Ok(l) if l.client.as_ref().is_some_and(|c| c.client_id == client_id) => {
                        if self.ctx.delete_supported.set(false) {
                            warn!(
                                "Collibra answers DELETE with 404 for a listed client: treating DELETE as unsupported"
                            );
                        }
                        Ok(false)
                    }
                    Ok(_) => Ok(true),
                    Err(_) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the claim before a registration. `None`: the Secret exists but
    /// the watch has not shown it yet; try again shortly.
    async fn claim(&self, current: Option<&Secret>) -> Result<Option<Secret>> {
        let want = secret::desired(
            &self.obj,
            secret::Endpoint {
                token_url: &self.token_url(),
                collibra_url: &self.ctx.collibra.base_url(),
            },
            Contents::Claim {
                since: now(),
                keep: current,
            },
            false,
        );
        if current.is_some() {
            return Ok(Some(self.apply_secret(&want, current).await?));
        }
        match self
            .secrets()
            .create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..PostParams::default()
                },
                &want,
            )
            .await
        {
            Ok(s) => Ok(Some(s)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the claim after a registration that certainly did not happen.
    async fn release_claim(&self, claimed: &Secret) -> Result<()> {
        let want = secret::desired(
            &self.obj,
            secret::Endpoint {
                token_url: &self.token_url(),
                collibra_url: &self.ctx.collibra.base_url(),
            },
            Contents::Refresh {
                current: claimed,
                keep_claim: false,
            },
            false,
        );
        self.apply_secret(&want, Some(claimed)).await?;
        Ok(())
    }

    /// Writes the operator's part of the Secret with a merge patch: unlike
    /// server-side apply it also removes what the claim's create set (the
    /// claim annotation, the ownerReference when orphaning), and it keeps
    /// owner references of others.
    async fn apply_secret(
        &self,
        want: &Secret,
        current: Option<&Secret>,
    ) -> Result<Secret, kube::Error> {
        let body = secret::merge_patch(want, current);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        self.secrets()
            .patch(&self.secret_name, &params, &Patch::Merge(&body))
            .await
    }

    fn collibra_failure(&self, operation: &str, e: &collibra_client::Error) -> Outcome {
        use collibra_client::Error as E;
        let (reason, requeue) = match e {
            E::Rejected { .. } | E::Unauthorized { .. } | E::Config(_) => (
                Reason::CollibraRejected,
                Some(Duration::from_secs(300).min(self.ctx.settings.resync)),
            ),
            _ => (Reason::CollibraUnavailable, None),
        };
        let delay = match requeue {
            Some(d) => d,
            None => self.ctx.backoff(&self.uid, e.retry_after()),
        };
        let message = match reason {
            Reason::CollibraRejected => format!("Collibra rejected {operation}: {e}"),
            _ => format!(
                "Collibra is unavailable ({operation}): {e}; retrying in {}s",
                delay.as_secs().max(1)
            ),
        };
        Outcome {
            ready: Readiness::new(reason, message),
            facts: self.facts(),
            requeue: delay,
        }
    }

    fn collibra_failure_text(&self, message: &str) -> Outcome {
        Outcome {
            ready: Readiness::new(Reason::CollibraUnavailable, message),
            facts: self.facts(),
            requeue: self.ctx.backoff(&self.uid, None),
        }
    }

    /// Writes status if it changed, with an Event when Ready's reason moves.
    async fn report(&self, ready: &Readiness, facts: Facts) -> Result<()> {
        let next = status::build(&self.obj, ready, facts, now());
        let last_reason = self.ctx.metrics.set_state(&self.uid, ready.reason);
        // The cached object can lag behind this process's own last status
        // write, and status changes wake no reconcile: when the reason
        // changed since the last report, write even if the cache agrees.
        if !status::differs(&self.obj, &next) && last_reason.is_none_or(|r| r == ready.reason) {
            return Ok(());
        }
        let previous = self
            .obj
            .ready_condition()
            .and_then(|c| Reason::parse(&c.reason));
        let api: Api<OAuthClient> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let body = serde_json::json!({
            "apiVersion": "oauth.collibra.dev/v1alpha1",
            "kind": "OAuthClient",
            "status": next,
        });
        api.patch_status(
            &self.obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
        if previous != Some(ready.reason) {
            let (kind, skip) = match ready.reason {
                // Registered Events come from the action that registered.
                Reason::Registered => (
                    EventType::Normal,
                    previous.is_none() || previous == Some(Reason::Registering),
                ),
                Reason::Registering | Reason::Deleting => (EventType::Normal, true),
                _ => (EventType::Warning, false),
            };
            if !skip {
                self.event(kind, ready.reason.as_str(), ready.message.clone())
                    .await;
            }
        }
        Ok(())
    }

    async fn event(&self, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate(note, 1000)),
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

    // ---- cleanup --------------------------------------------------------

    async fn cleanup(&self) -> Result<Action> {
        let result = self.cleanup_inner().await;
        if result.is_ok() {
            self.ctx.forget(&self.uid);
            self.ctx.wake_name_claimants(&self.obj);
        }
        result
    }

    async fn cleanup_inner(&self) -> Result<Action> {
        if self.ctx.name_winner(&self.obj).is_some() {
            // Never registered anything: the name belongs to another object.
            return Ok(Action::await_change());
        }
        let (view, current) = self.observe_secret().await?;
        let ours = matches!(&view, SecretView::Managed(m) if m.owned);
        if self.obj.spec.deletion_policy == DeletionPolicy::Orphan {
            if ours && let Some(cur) = &current {
                self.orphan_secret(cur).await?;
            }
            self.event(
                EventType::Normal,
                "Orphaned",
                format!(
                    "deletionPolicy Orphan: the Collibra client is left in place and Secret {} is kept without an owner",
                    self.secret_name
                ),
            )
            .await;
            return Ok(Action::await_change());
        }
        let held = match &view {
            SecretView::Managed(m) if m.owned => m.client_id.clone(),
            _ => None,
        }
        .or_else(|| self.obj.status.as_ref().and_then(|s| s.client_id.clone()));
        let lookup = match self.ctx.lookup(&self.obj.spec.client_name).await {
            Ok(l) => l,
            Err(e) => return self.cleanup_failed(current.as_ref(), ours, &e).await,
        };
        let Some(entry) = lookup.client else {
            self.event(
                EventType::Normal,
                "ClientAlreadyGone",
                format!(
                    "No client named {:?} exists in Collibra; nothing to delete",
                    self.obj.spec.client_name
                ),
            )
            .await;
            return Ok(Action::await_change());
        };
        let claimed_own = matches!(&view, SecretView::Managed(m) if m.owned && m.registering_since.is_some_and(|t| entry.issued_at.is_some_and(|i| i >= t.as_second() - decide::CLOCK_SKEW_SECS)));
        if held.as_deref() != Some(entry.client_id.as_str()) && !claimed_own {
            self.event(
                EventType::Warning,
                "ClientNotDeleted",
                format!(
                    "The client named {:?} in Collibra ({}) is not one this object registered; it was left in place",
                    self.obj.spec.client_name, entry.client_id
                ),
            )
            .await;
            return Ok(Action::await_change());
        }
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
            .delete_client(&entry.client_id, lookup.generation)
            .await
        {
            Ok(true) => {
                self.event(
                    EventType::Normal,
                    "Deleted",
                    format!("Deleted client {} in Collibra", entry.client_id),
                )
                .await;
                Ok(Action::await_change())
            }
            Ok(false) => {
                if ours && let Some(cur) = &current {
                    self.orphan_secret(cur).await?;
                }
                self.event(
                    EventType::Warning,
                    "DeleteUnsupported",
                    format!(
                        "Collibra does not support DELETE: client {} remains in Collibra, and Secret {} is kept without an owner so its credentials are not lost",
                        entry.client_id, self.secret_name
                    ),
                )
                .await;
                Ok(Action::await_change())
            }
            Err(e) => self.cleanup_failed(current.as_ref(), ours, &e).await,
        }
    }

    /// A cleanup that failed transiently waits, but never past the grace
    /// period: then the finalizer goes and the Secret stays.
    async fn cleanup_failed(
        &self,
        current: Option<&Secret>,
        ours: bool,
        e: &collibra_client::Error,
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
            if ours && let Some(cur) = current {
                self.orphan_secret(cur).await?;
            }
            self.event(
                EventType::Warning,
                "CleanupAbandoned",
                format!(
                    "Could not delete the client in Collibra for {}s ({e}); the finalizer is released and Secret {} is kept without an owner",
                    waited.as_secs(),
                    self.secret_name
                ),
            )
            .await;
            return Ok(Action::await_change());
        }
        let _ = self
            .report(
                &Readiness::new(
                    Reason::Deleting,
                    format!("waiting for Collibra to delete the client: {e}"),
                ),
                self.facts(),
            )
            .await;
        let delay = self.ctx.backoff(&self.uid, e.retry_after());
        Err(Error::CleanupPending(delay, e.to_string()))
    }

    async fn orphan_secret(&self, current: &Secret) -> Result<()> {
        let want = secret::desired(
            &self.obj,
            secret::Endpoint {
                token_url: &self.token_url(),
                collibra_url: &self.ctx.collibra.base_url(),
            },
            Contents::Refresh {
                current,
                keep_claim: true,
            },
            true,
        );
        self.apply_secret(&want, Some(current)).await?;
        Ok(())
    }
}

fn plan_name(p: &Plan) -> &'static str {
    match p {
        Plan::InSync { .. } => "InSync",
        Plan::Register(_) => "Register",
        Plan::Replace { .. } => "Replace",
        Plan::ClientExistsWithoutSecret { .. } => "ClientExistsWithoutSecret",
        Plan::SecretConflict { .. } => "SecretConflict",
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

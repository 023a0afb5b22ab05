//! Reading and writing the credentials Secret. What the Secret holds is
//! decided in [`crate::controller::secret`]; this module only moves it.
//! Every write is a JSON merge patch (or a create, for the first claim)
//! under the operator's field manager.

use std::{sync::Arc, time::Duration};

use collibra_client::IssuedClient;
use k8s_openapi::{api::core::v1::Secret, jiff::Timestamp};
use kube::{
    ResourceExt,
    api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions},
    runtime::events::EventType,
};

use super::{Error, KubeCall, Reconciler, Result, messages};
use crate::{
    api::FIELD_MANAGER,
    controller::{
        decide::SecretView,
        reasons::{EventReason, Reason},
        secret::{
            self, Contents, Credentials, shape,
            template::TemplateError,
            type_change::{self, Step},
        },
    },
};

/// Attempts of a credentials write before they are kept in memory instead.
const CREDENTIAL_WRITE_ATTEMPTS: u32 = 4;

/// What writing the claim came to.
pub(super) enum Claim {
    /// Written: the Secret as the API server stored it.
    Written(Box<Secret>),
    /// A Secret of that name exists that the watch has not shown yet.
    NotVisible,
    /// A Secret of that name exists and is not ours (why, for the message).
    Foreign(String),
}

impl Reconciler<'_> {
    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }

    /// Calls `f` with the Collibra instance's URLs, which the Secret's
    /// descriptive keys and templates read.
    fn with_endpoint<R>(&self, f: impl FnOnce(secret::Endpoint<'_>) -> R) -> R {
        let (token_url, collibra_url) = (self.collibra.token_url(), self.collibra.base_url());
        f(secret::Endpoint {
            token_url: &token_url,
            collibra_url: &collibra_url,
        })
    }

    /// The Secret body for `contents`, with the Secret's owner unless `orphan`.
    fn render(&self, contents: Contents<'_>, orphan: bool) -> Secret {
        self.with_endpoint(|endpoint| secret::desired(&self.obj, endpoint, contents, orphan))
    }

    /// Why the template cannot be rendered (with the credentials `current`
    /// holds, if any), or `None` (rule 12).
    pub(super) fn template_problem(&self, current: Option<&Secret>) -> Option<TemplateError> {
        let held = current.and_then(shape::stored_credentials);
        self.with_endpoint(|endpoint| secret::template_problem(&self.obj, endpoint, held.as_ref()))
    }

    /// The Secret as the operator may know it, with its data when it is
    /// ours or adoptable. The watch cache (metadata only) answers when it
    /// shows a foreign owner, and when it shows no Secret at all once it
    /// has listed: the watch sees only labelled Secrets, but a registration
    /// starts with creating the claim, which fails on any existing Secret
    /// ([`Self::claim`]). Otherwise the API server is asked, reading the
    /// data only of a Secret that carries the managed-by label. An object
    /// that last reported `SecretConflict` asks first, so that a foreign
    /// Secret costs no Collibra list. Where the metadata alone suffices,
    /// see [`Self::observe_settled`].
    pub(super) async fn observe_secret(&self) -> Result<(SecretView, Option<Secret>)> {
        match self.ctx.cached_secret(&self.ns, &self.secret_name) {
            Some(meta) => match secret::classify(&self.obj, &meta) {
                Err(why) => Ok((SecretView::Foreign { why }, None)),
                // Labelled, ours or adoptable: the API server has the data.
                Ok(_) => self.read_labelled().await,
            },
            None if self.ctx.secrets_synced(&self.ns) && !self.last_saw_conflict() => {
                Ok((SecretView::Missing, None))
            }
            None => self.observe_uncached().await,
        }
    }

    /// The Secret as [`Self::observe_secret`] would see it, from the watch's
    /// metadata alone, when that metadata vouches for the data
    /// ([`secret::settled`]) and nobody else wrote the Secret since the
    /// operator last read or wrote it. `None`: read it.
    pub(super) fn observe_settled(&self) -> Option<SecretView> {
        let meta = self.ctx.cached_secret(&self.ns, &self.secret_name)?;
        let own = self.ctx.own_writes(&self.ns)?;
        if own.is_touched(&self.ns, &self.secret_name) {
            return None;
        }
        // A type replacement left unfinished needs the full walk.
        let backup = type_change::backup_name(&self.obj);
        if self.ctx.cached_secret(&self.ns, &backup).is_some() {
            return None;
        }
        self.with_endpoint(|endpoint| secret::settled(&self.obj, &meta, endpoint))
            .map(SecretView::Managed)
    }

    /// Whether the last Ready reason reported was `SecretConflict`.
    fn last_saw_conflict(&self) -> bool {
        let recorded = self
            .obj
            .ready_condition()
            .and_then(|c| Reason::parse(&c.reason));
        self.ctx.objects.last_reported(&self.uid).or(recorded) == Some(Reason::SecretConflict)
    }

    /// The Secret from the API server: its metadata first, its data only
    /// when it carries the managed-by label.
    pub(super) async fn observe_uncached(&self) -> Result<(SecretView, Option<Secret>)> {
        let meta = self
            .secrets()
            .get_metadata_opt(&self.secret_name)
            .await
            .map_err(Error::kube(KubeCall::GetSecretMetadata))?;
        match meta {
            None => Ok((SecretView::Missing, None)),
            Some(meta) if !secret::is_labeled(&meta.metadata) => Ok((
                SecretView::Foreign {
                    why: secret::unlabeled(&self.secret_name),
                },
                None,
            )),
            Some(_) => self.read_labelled().await,
        }
    }

    /// Reads a Secret known to carry the managed-by label, data included.
    async fn read_labelled(&self) -> Result<(SecretView, Option<Secret>)> {
        if let Some(own) = self.ctx.own_writes(&self.ns) {
            // From here on, a write by someone else is noted again.
            own.reading(&self.ns, &self.secret_name);
        }
        match self
            .secrets()
            .get_opt(&self.secret_name)
            .await
            .map_err(Error::kube(KubeCall::GetSecret))?
        {
            None => Ok((SecretView::Missing, None)),
            Some(s) if !secret::is_labeled(&s.metadata) => Ok((
                SecretView::Foreign {
                    why: secret::unlabeled(&self.secret_name),
                },
                None,
            )),
            Some(s) => Ok((secret::view(&self.obj, &s), Some(s))),
        }
    }

    /// Writes the claim before a registration (rule 2). When the create
    /// finds a Secret the watch did not show, the Secret's metadata says
    /// why: someone else's ([`Claim::Foreign`]), or ours, not shown yet
    /// ([`Claim::NotVisible`]: try again shortly).
    /// `since` is now, except when recovering an interrupted registration:
    /// then the time of that registration's claim, which is what proves
    /// the listed client ours.
    pub(super) async fn claim(&self, current: Option<&Secret>, since: Timestamp) -> Result<Claim> {
        let want = self.render(
            Contents::Claim {
                since,
                keep: current,
            },
            false,
        );
        if current.is_some() {
            return Ok(Claim::Written(Box::new(
                self.patch_secret(&want, current).await?,
            )));
        }
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let in_flight = self.ctx.own_write(&self.ns, &self.secret_name);
        match self.secrets().create(&params, &want).await {
            Ok(s) => {
                if let Some(w) = in_flight {
                    w.written(&s);
                }
                Ok(Claim::Written(Box::new(s)))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => match self.observe_uncached().await? {
                (SecretView::Foreign { why }, _) => Ok(Claim::Foreign(why)),
                _ => Ok(Claim::NotVisible),
            },
            Err(e) => Err(Error::kube(KubeCall::CreateSecret)(e)),
        }
    }

    /// The Secret with its credentials kept as they are and everything else
    /// brought up to date; the claim annotation stays only if `keep_claim`.
    fn refreshed(&self, current: &Secret, keep_claim: bool, orphan: bool) -> Secret {
        self.render(
            Contents::Refresh {
                current,
                keep_claim,
            },
            orphan,
        )
    }

    /// Removes the claim after a registration that certainly did not happen.
    pub(super) async fn release_claim(&self, claimed: &Secret) -> Result<()> {
        let want = self.refreshed(claimed, false, false);
        self.patch_secret(&want, Some(claimed)).await?;
        Ok(())
    }

    /// Brings labels, annotations and the descriptive keys up to date,
    /// keeping the credentials; writes only when something differs.
    pub(super) async fn refresh_if_needed(&self, current: &Secret) -> Result<()> {
        let want = self.refreshed(current, false, false);
        if secret::needs_update(current, &want) {
            let reshaped = secret::reshapes(current, &want);
            self.patch_secret(&want, Some(current)).await?;
            if reshaped {
                self.event(
                    EventType::Normal,
                    EventReason::SecretReshaped,
                    messages::reshaped(&self.secret_name),
                )
                .await;
            }
        }
        Ok(())
    }

    /// Walks the type replacement (rule 13, `type_change`) from wherever it
    /// stands; `target` is the Secret, `None` when it is missing. Returns
    /// whether anything was written. The backup is read from the API
    /// server only when it can matter: the target is of another type, the
    /// watch shows a backup, or the target is missing and the watch has not
    /// listed the Secrets yet (after a restart, a backup left by a crash
    /// must be found before anything is registered).
    pub(super) async fn change_type(&self, target: Option<&Secret>) -> Result<bool> {
        let want_type = secret::desired_type(&self.obj).to_owned();
        let backup_name = type_change::backup_name(&self.obj);
        let wrong_type = target.is_some_and(|t| shape::type_of(t) != want_type);
        let cached_backup = self.ctx.cached_secret(&self.ns, &backup_name).is_some();
        let must_look = match target {
            Some(_) => wrong_type || cached_backup,
            None => cached_backup || !self.ctx.secrets_synced(&self.ns),
        };
        if !must_look {
            return Ok(false);
        }
        let api = self.secrets();
        let mut target = target.cloned();
        let mut backup = api
            .get_opt(&backup_name)
            .await
            .map_err(Error::kube(KubeCall::GetBackup))?
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
                Step::Done => break,
                Step::Backup => {
                    let Some(body) = target
                        .as_ref()
                        .and_then(|t| type_change::backup(&self.obj, t))
                    else {
                        break;
                    };
                    backup = Some(self.write_backup(&create, &body).await?);
                }
                Step::DeleteTarget => {
                    let Some(t) = target.as_ref() else { break };
                    let exactly = DeleteParams {
                        preconditions: Some(Preconditions {
                            uid: t.metadata.uid.clone(),
                            resource_version: t.metadata.resource_version.clone(),
                        }),
                        ..DeleteParams::default()
                    };
                    api.delete(&self.secret_name, &exactly)
                        .await
                        .map_err(Error::kube(KubeCall::DeleteSecret))?;
                    target = None;
                }
                Step::Restore => {
                    let Some((creds, rotated_for)) =
                        backup.as_ref().and_then(type_change::backed_up)
                    else {
                        break;
                    };
                    let want = self.render(
                        Contents::Credentials {
                            creds: Credentials {
                                client_id: &creds.client_id,
                                client_secret: &creds.client_secret,
                            },
                            rotated_for: rotated_for.as_deref(),
                        },
                        false,
                    );
                    let in_flight = self.ctx.own_write(&self.ns, &self.secret_name);
                    let created = api
                        .create(&create, &want)
                        .await
                        .map_err(Error::kube(KubeCall::CreateSecret))?;
                    if let Some(w) = in_flight {
                        w.written(&created);
                    }
                    target = Some(created);
                    self.event(
                        EventType::Normal,
                        EventReason::SecretTypeChanged,
                        messages::type_changed(&self.secret_name, &want_type),
                    )
                    .await;
                }
                Step::DropBackup => {
                    let that_one = DeleteParams {
                        preconditions: Some(Preconditions {
                            uid: backup.as_ref().and_then(|b| b.metadata.uid.clone()),
                            resource_version: None,
                        }),
                        ..DeleteParams::default()
                    };
                    match api.delete(&backup_name, &that_one).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => return Err(Error::kube(KubeCall::DeleteBackup)(e)),
                    }
                    backup = None;
                }
            }
            wrote = true;
        }
        Ok(wrote)
    }

    /// Creates the backup; one left from an earlier attempt (ours: checked
    /// by the caller's filter on the next read) is brought up to date.
    async fn write_backup(&self, create: &PostParams, body: &Secret) -> Result<Secret> {
        let api = self.secrets();
        let name = body.metadata.name.clone().unwrap_or_default();
        match api.create(create, body).await {
            Ok(b) => Ok(b),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = api
                    .get(&name)
                    .await
                    .map_err(Error::kube(KubeCall::GetBackup))?;
                if !type_change::is_backup_of(&self.obj, &existing) {
                    // Never overwrite a Secret that is not ours (rule 13).
                    return Err(Error::kube(KubeCall::WriteBackup)(kube::Error::Api(e)));
                }
                let params = PatchParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..PatchParams::default()
                };
                let patch = serde_json::json!({
                    "metadata": {"annotations": body.metadata.annotations},
                    "data": body.data,
                });
                api.patch(&name, &params, &Patch::Merge(&patch))
                    .await
                    .map_err(Error::kube(KubeCall::WriteBackup))
            }
            Err(e) => Err(Error::kube(KubeCall::WriteBackup)(e)),
        }
    }

    /// Drops this object's ownerReference so the Secret, and the
    /// credentials in it, outlive the OAuthClient (docs/design.md, "Secret
    /// ownership"). A claim stays: it still proves a registration ours.
    pub(super) async fn orphan_secret(&self, current: &Secret) -> Result<()> {
        let want = self.refreshed(current, true, true);
        self.patch_secret(&want, Some(current)).await?;
        Ok(())
    }

    /// Writes credentials Collibra just issued, retrying a few times; if
    /// the Secret still cannot be written they are kept in memory and
    /// written first on the next reconcile (rule 2).
    pub(super) async fn write_credentials(
        &self,
        issued: &Arc<IssuedClient>,
        current: Option<&Secret>,
        rotated_for: Option<&str>,
    ) -> Result<()> {
        let want = self.render(
            Contents::Credentials {
                creds: Credentials {
                    client_id: &issued.info.client_id,
                    client_secret: &issued.client_secret,
                },
                rotated_for,
            },
            false,
        );
        let mut attempt = 0;
        loop {
            match self.write_patch(&want, current).await {
                Ok(_) => return Ok(()),
                Err(source) if attempt + 1 >= CREDENTIAL_WRITE_ATTEMPTS => {
                    self.ctx.objects.stash_unsaved(&self.uid, issued.clone());
                    return Err(Error::Unsaved {
                        client_id: issued.info.client_id.clone(),
                        source,
                    });
                }
                Err(_) => {}
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
        }
    }

    async fn patch_secret(&self, want: &Secret, current: Option<&Secret>) -> Result<Secret> {
        self.write_patch(want, current)
            .await
            .map_err(Error::kube(KubeCall::PatchSecret))
    }

    /// Writes the operator's part of the Secret with a merge patch: unlike
    /// server-side apply it also removes what the claim's create set (the
    /// claim annotation, the ownerReference when orphaning), and it keeps
    /// owner references of others.
    async fn write_patch(
        &self,
        want: &Secret,
        current: Option<&Secret>,
    ) -> Result<Secret, kube::Error> {
        let body = secret::merge_patch(want, current);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let in_flight = self.ctx.own_write(&self.ns, &self.secret_name);
        let written = self
            .secrets()
            .patch(&self.secret_name, &params, &Patch::Merge(&body))
            .await?;
        if let Some(w) = in_flight {
            w.written(&written);
        }
        Ok(written)
    }
}

//! Acting on Collibra: registering, replacing (rotation, lost secret) and
//! keeping grant types in line, each followed at once by the Secret write
//! that keeps the credentials (docs/design.md, rule 2). The calls go through
//! the object's [`CollibraInstance`](crate::controller::collibra_instance::CollibraInstance),
//! which keeps the shared list and the learned capabilities current.

use std::time::Duration;

use collibra_client::{ClientUpdate, NewClient, Operation};
use k8s_openapi::api::core::v1::Secret;
use kube::{ResourceExt, runtime::events::EventType};

use super::{Outcome, Reconciler, Result, messages, secret_io::Claim};
use crate::api::ReplacementPolicy;
use crate::controller::{
    collibra_instance::Deletion,
    context::now,
    decide::{GrantDrift, Listed, RedirectDrift, RegisterReason, ReplaceReason},
    reasons::{EventReason, Issuance, Reason},
    secret, status,
};

impl From<RegisterReason> for Issuance {
    fn from(r: RegisterReason) -> Self {
        match r {
            RegisterReason::New => Issuance::Registered,
            RegisterReason::Recreate => Issuance::Recreated,
        }
    }
}

impl From<ReplaceReason> for Issuance {
    fn from(r: ReplaceReason) -> Self {
        match r {
            ReplaceReason::Rotation => Issuance::Rotated,
            ReplaceReason::LostSecret
            | ReplaceReason::InterruptedRegistration
            | ReplaceReason::RedirectUrisChanged => Issuance::Replaced,
        }
    }
}

impl Reconciler<'_> {
    /// The registration request for this object's spec.
    fn new_client(&self) -> NewClient {
        NewClient {
            client_name: self.obj.spec.client_name.clone(),
            grant_types: self.grant_types(),
            software_id: self.obj.spec.software_id.clone(),
            redirect_uris: self.obj.spec.redirect_uris.clone(),
        }
    }

    /// The claim was not written: a Secret the watch has not shown yet
    /// (look again shortly), or someone else's.
    fn not_claimed(&self, claim: Claim) -> Outcome {
        match claim {
            Claim::Foreign(why) => self.outcome(
                Reason::SecretConflict,
                messages::secret_conflict(&why),
                Duration::from_secs(60),
            ),
            Claim::NotVisible | Claim::Written(_) => self.outcome(
                Reason::Registering,
                messages::SECRET_NOT_VISIBLE,
                Duration::from_secs(1),
            ),
        }
    }

    /// Claims the Secret, registers the client, writes the credentials.
    pub(super) async fn register(
        &self,
        current: Option<&Secret>,
        reason: RegisterReason,
    ) -> Result<Outcome> {
        let claimed = match self.claim(current, now()).await? {
            Claim::Written(s) => *s,
            other => return Ok(self.not_claimed(other)),
        };
        let issued = match self.collibra.register(&self.new_client()).await {
            Ok(issued) => issued,
            Err(e @ collibra_client::Error::Ambiguous { .. }) => {
                return Ok(self.unknown_registration(&e));
            }
            Err(e) => {
                // Definitely not registered: drop the claim so a client that
                // someone else registers later is never taken for ours.
                self.release_claim(&claimed).await?;
                if matches!(e, collibra_client::Error::Rejected { .. }) {
                    // Perhaps the name was taken since the cached list was
                    // read: look again before calling it a rejection.
                    self.collibra.invalidate_list();
                    if let Ok(Some(_)) = self.collibra.lookup(&self.obj.spec.client_name).await {
                        return Ok(self.outcome(
                            Reason::Registering,
                            "the name was taken meanwhile; deciding again",
                            Duration::from_millis(200),
                        ));
                    }
                }
                return Ok(self.collibra_failure(Operation::Register, &e));
            }
        };
        self.store_credentials(
            issued,
            Some(&claimed),
            self.obj.rotation_request(),
            Some(reason.into()),
            None,
        )
        .await
    }

    /// A POST whose outcome is unknown: the client may exist now. The claim
    /// stays (it proves the client ours) and the list is read again before
    /// deciding.
    fn unknown_registration(&self, e: &collibra_client::Error) -> Outcome {
        self.collibra.invalidate_list();
        self.outcome(
            Reason::Registering,
            format!(
                "the outcome of the registration is unknown ({e}); checking Collibra's list again"
            ),
            Duration::from_secs(1),
        )
    }

    /// Deletes `client_id` and registers the name again.
    pub(super) async fn replace(
        &self,
        current: Option<&Secret>,
        client_id: &str,
        reason: ReplaceReason,
    ) -> Result<Outcome> {
        // Recovering an interrupted registration keeps that registration's
        // claim time: it proves the listed client ours, and must go on
        // proving it should the DELETE be refused (rules 2 and 10).
        let since = match reason {
            ReplaceReason::InterruptedRegistration => current
                .and_then(|s| s.annotations().get(crate::api::REGISTERING_ANNOTATION))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(now),
            ReplaceReason::Rotation
            | ReplaceReason::LostSecret
            | ReplaceReason::RedirectUrisChanged => now(),
        };
        let claimed = match self.claim(current, since).await? {
            Claim::Written(s) => *s,
            other => return Ok(self.not_claimed(other)),
        };
        match self
            .collibra
            .delete(&self.obj.spec.client_name, client_id)
            .await
        {
            Ok(Deletion::Deleted) => {}
            Ok(Deletion::Unsupported) => {
                // The claim of an interrupted registration stays: it proves
                // the client ours once DELETE works again.
                if reason != ReplaceReason::InterruptedRegistration {
                    self.release_claim(&claimed).await?;
                }
                return Ok(match reason {
                    ReplaceReason::LostSecret | ReplaceReason::InterruptedRegistration => {
                        self.exists_without_secret(client_id, true)
                    }
                    // Now known: the next look reports the difference.
                    ReplaceReason::RedirectUrisChanged => self.outcome(
                        Reason::Registering,
                        "replacement not possible (no DELETE); re-checking",
                        Duration::from_millis(100),
                    ),
                    ReplaceReason::Rotation => {
                        self.rotation_unsupported(client_id).await;
                        self.outcome(
                            Reason::Registering,
                            "rotation not supported; re-checking",
                            Duration::from_millis(100),
                        )
                    }
                });
            }
            Err(collibra_client::Error::NotFound { .. }) => {
                // 404: gone already, or not supported. The list tells.
                self.collibra.invalidate_list();
                return Ok(self.outcome(
                    Reason::Registering,
                    "the client was not found; re-reading the list",
                    Duration::from_millis(200),
                ));
            }
            Err(e) => return Ok(self.collibra_failure(Operation::Delete, &e)),
        }
        let issued = match self.collibra.register(&self.new_client()).await {
            Ok(i) => i,
            Err(e @ collibra_client::Error::Ambiguous { .. }) => {
                return Ok(self.unknown_registration(&e));
            }
            // The old client is gone; with the claim still in place the next
            // reconcile registers (the name is free) or recognises ours.
            Err(e) => return Ok(self.collibra_failure(Operation::Register, &e)),
        };
        let rotated_for = match reason {
            ReplaceReason::Rotation => self.obj.rotation_request(),
            ReplaceReason::LostSecret
            | ReplaceReason::InterruptedRegistration
            | ReplaceReason::RedirectUrisChanged => claimed
                .annotations()
                .get(secret::ROTATED_FOR_ANNOTATION)
                .map(String::as_str),
        };
        // A lost Secret also lost its record of the last rotation; status
        // keeps it, so that old request is not taken for a new one.
        let rotated_for = rotated_for.map(str::to_owned).or_else(|| {
            self.obj
                .status
                .as_ref()
                .and_then(|s| s.last_rotation.clone())
        });
        let replaced = messages::Replaced {
            previous: client_id,
            reason,
            request: self.obj.rotation_request(),
        };
        self.store_credentials(
            issued,
            Some(&claimed),
            rotated_for.as_deref(),
            Some(reason.into()),
            Some(replaced),
        )
        .await
    }

    /// Records that a rotation request cannot be carried out (every time it
    /// is looked at, so no request goes unanswered).
    pub(super) async fn rotation_unsupported(&self, client_id: &str) {
        self.event(
            EventType::Warning,
            EventReason::RotationUnsupported,
            messages::rotation_unsupported(
                self.obj.rotation_request().unwrap_or_default(),
                client_id,
            ),
        )
        .await;
    }

    /// The client exists and the Secret holds its credentials: refresh the
    /// Secret's metadata, fix or report grant type and redirect URI drift,
    /// report Ready. `current` is the Secret when its data was read (it is
    /// brought up to date); `rotated_for` what its metadata records when it
    /// was not.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn in_sync(
        &self,
        current: Option<&Secret>,
        rotated_for: Option<&str>,
        entry: &Listed,
        adopt: bool,
        drift: Option<GrantDrift>,
        redirect_drift: Option<RedirectDrift>,
        rotation_unsupported: bool,
    ) -> Result<Outcome> {
        if let Some(cur) = current {
            self.refresh_if_needed(cur).await?;
        }
        if adopt {
            self.event(
                EventType::Normal,
                EventReason::Adopted,
                messages::adopted(&entry.client_id, &self.secret_name),
            )
            .await;
        }
        let mut facts = self.facts();
        facts.client_id = Some(entry.client_id.clone());
        facts.client_id_issued_at = entry.issued_at.and_then(status::rfc3339);
        facts.grant_types = entry.grant_types.clone();
        if let Some(uris) = &entry.redirect_uris {
            facts.redirect_uris = uris.clone();
        }
        // A Secret re-created without the rotate record keeps status's.
        facts.last_rotation = current
            .and_then(|c| c.annotations().get(secret::ROTATED_FOR_ANNOTATION).cloned())
            .or(rotated_for.map(str::to_owned))
            .or(facts.last_rotation.take());
        let mut notes = Vec::new();
        let mut requeue = self.ctx.settings.resync;
        // One PUT carries the whole spec, so both kinds of drift share it.
        let grants_to_update = matches!(drift, Some(GrantDrift::Update));
        let uris_to_update = matches!(redirect_drift, Some(RedirectDrift::Update));
        if grants_to_update || uris_to_update {
            match self
                .update_client(entry, grants_to_update, uris_to_update)
                .await
            {
                Ok(Some(info)) => {
                    facts.grant_types = info.grant_types;
                    facts.redirect_uris = info
                        .redirect_uris
                        .unwrap_or_else(|| self.obj.spec.redirect_uris.clone());
                }
                Ok(None) => {
                    if grants_to_update {
                        notes.push(messages::grant_drift(
                            &entry.grant_types,
                            &self.grant_types(),
                        ));
                    }
                    if uris_to_update {
                        notes.push(messages::redirect_drift(
                            &facts.redirect_uris,
                            &self.obj.spec.redirect_uris,
                        ));
                        if self.obj.spec.replacement_policy == ReplacementPolicy::Automatic {
                            // Decide again now that PUT is known to be
                            // missing: the policy may replace the client.
                            requeue = Duration::from_millis(100);
                        }
                    }
                }
                Err(e) => return Ok(self.collibra_failure(Operation::Update, &e)),
            }
        }
        if let Some(GrantDrift::Unsupported { actual }) = drift {
            notes.push(messages::grant_drift(&actual, &self.grant_types()));
        }
        if let Some(RedirectDrift::Unsupported { actual }) = redirect_drift {
            notes.push(messages::redirect_drift(
                &actual,
                &self.obj.spec.redirect_uris,
            ));
        }
        if rotation_unsupported {
            self.rotation_unsupported(&entry.client_id).await;
            notes.push(messages::ROTATION_UNSUPPORTED_NOTE.to_owned());
        }
        Ok(Outcome::new(
            Reason::Registered,
            messages::registered(&entry.client_id, &self.secret_name, &notes),
            facts,
            requeue,
        ))
    }

    /// Sends a PUT with the spec's grant types and redirect URIs, and
    /// records what changed (or, unsupported, what could not). `Ok(None)`:
    /// not supported.
    async fn update_client(
        &self,
        entry: &Listed,
        grants: bool,
        redirect_uris: bool,
    ) -> Result<Option<collibra_client::ClientInfo>, collibra_client::Error> {
        let update = ClientUpdate {
            client_name: self.obj.spec.client_name.clone(),
            grant_types: self.grant_types(),
            software_id: self.obj.spec.software_id.clone(),
            redirect_uris: self.obj.spec.redirect_uris.clone(),
        };
        let id = &entry.client_id;
        match self.collibra.update(id, &update).await? {
            Some(info) => {
                if grants {
                    self.event(
                        EventType::Normal,
                        EventReason::GrantTypesUpdated,
                        messages::grants_updated(id, &info.grant_types),
                    )
                    .await;
                }
                if redirect_uris {
                    self.event(
                        EventType::Normal,
                        EventReason::RedirectUrisUpdated,
                        messages::redirect_uris_updated(id, &update.redirect_uris),
                    )
                    .await;
                }
                Ok(Some(info))
            }
            None => {
                if grants {
                    self.event(
                        EventType::Warning,
                        EventReason::GrantTypesDrift,
                        messages::grants_drift_event(id),
                    )
                    .await;
                }
                if redirect_uris {
                    self.event(
                        EventType::Warning,
                        EventReason::RedirectUrisDrift,
                        messages::redirect_drift_event(id),
                    )
                    .await;
                }
                Ok(None)
            }
        }
    }

    /// Stalled: a client of this name exists and no credentials are held.
    pub(super) fn exists_without_secret(&self, client_id: &str, own: bool) -> Outcome {
        self.outcome(
            Reason::ClientExistsWithoutSecret,
            messages::exists_without_secret(
                &self.obj.spec.client_name,
                client_id,
                &self.secret_name,
                own,
            ),
            self.ctx.settings.resync,
        )
    }

    /// A failed Collibra call: rejected (Stalled, looked at again after at
    /// most five minutes) or unavailable (retried with backoff).
    pub(super) fn collibra_failure(
        &self,
        operation: Operation,
        e: &collibra_client::Error,
    ) -> Outcome {
        use collibra_client::Error as E;
        let rejected = matches!(
            e,
            E::Rejected { .. } | E::Ignored { .. } | E::Unauthorized { .. } | E::Config(_)
        );
        let (reason, delay) = if rejected {
            (
                Reason::CollibraRejected,
                Duration::from_secs(300).min(self.ctx.settings.resync),
            )
        } else {
            (
                Reason::CollibraUnavailable,
                self.ctx
                    .objects
                    .backoffs
                    .next_delay(&self.uid, e.retry_after()),
            )
        };
        self.outcome(
            reason,
            messages::collibra_failure(rejected, operation, e, delay),
            delay,
        )
    }
}

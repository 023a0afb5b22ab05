//! Reading and writing the credentials Secret. What the Secret holds is
//! decided in [`crate::controller::secret`]; this module only moves it.
//! Every write is a JSON merge patch (or a create, for the first claim)
//! under the operator's field manager.

use std::{sync::Arc, time::Duration};

use collibra_client::IssuedClient;
use k8s_openapi::{api::core::v1::Secret, jiff::Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};

use super::{Error, KubeCall, Reconciler, Result};
use crate::{
    api::FIELD_MANAGER,
    controller::{
        decide::SecretView,
        secret::{self, Contents, Credentials},
    },
};

/// Attempts of a credentials write before they are kept in memory instead.
const CREDENTIAL_WRITE_ATTEMPTS: u32 = 4;

impl Reconciler<'_> {
    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }

    /// The Secret body for `contents`, with the Secret's owner unless `orphan`.
    fn render(&self, contents: Contents<'_>, orphan: bool) -> Secret {
        secret::desired(&self.obj, &self.collibra.token_url(), contents, orphan)
    }

    /// The Secret as the operator may know it. The watch cache answers when
    /// it shows credentials; otherwise the API server is asked, reading the
    /// data only of a Secret that carries the managed-by label.
    pub(super) async fn observe_secret(&self) -> Result<(SecretView, Option<Secret>)> {
        if let Some(s) = self.ctx.cached_secret(&self.ns, &self.secret_name) {
            let v = secret::view(&self.obj, &s);
            if matches!(&v, SecretView::Managed(m) if m.client_id.is_some())
                || matches!(v, SecretView::Foreign { .. })
            {
                return Ok((v, Some((*s).clone())));
            }
        }
        let api = self.secrets();
        let meta = api
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
            Some(_) => match api
                .get_opt(&self.secret_name)
                .await
                .map_err(Error::kube(KubeCall::GetSecret))?
            {
                None => Ok((SecretView::Missing, None)),
                Some(s) => Ok((secret::view(&self.obj, &s), Some(s))),
            },
        }
    }

    /// Writes the claim before a registration (rule 2). `None`: the Secret
    /// exists but the watch has not shown it yet; try again shortly.
    /// `since` is now, except when recovering an interrupted registration:
    /// then the time of that registration's claim, which is what proves
    /// the listed client ours.
    pub(super) async fn claim(
        &self,
        current: Option<&Secret>,
        since: Timestamp,
    ) -> Result<Option<Secret>> {
        let want = self.render(
            Contents::Claim {
                since,
                keep: current,
            },
            false,
        );
        if current.is_some() {
            return Ok(Some(self.patch_secret(&want, current).await?));
        }
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        match self.secrets().create(&params, &want).await {
            Ok(s) => Ok(Some(s)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
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
            self.patch_secret(&want, Some(current)).await?;
        }
        Ok(())
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
            match self.merge_patch(&want, current).await {
                Ok(_) => return Ok(()),
                Err(source) if attempt + 1 >= CREDENTIAL_WRITE_ATTEMPTS => {
                    self.ctx.stash_unsaved(&self.uid, issued.clone());
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
        self.merge_patch(want, current)
            .await
            .map_err(Error::kube(KubeCall::PatchSecret))
    }

    /// Writes the operator's part of the Secret with a merge patch: unlike
    /// server-side apply it also removes what the claim's create set (the
    /// claim annotation, the ownerReference when orphaning), and it keeps
    /// owner references of others.
    async fn merge_patch(
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
}

//! One Collibra instance as reconciles see it ([`CollibraInstance`]): the
//! HTTP client, the shared list of its clients, and what the operator
//! learned about it (whether it supports DELETE and PUT). Every Collibra
//! call of a reconcile goes through one, so the list and the capabilities
//! stay current with the operator's own writes. (A CollibraConnection, in
//! [`crate::connection`], is the resource that configures one.)

use std::{sync::Arc, time::Duration};

use collibra_client::{ClientInfo, ClientUpdate, CollibraClient, Error, IssuedClient, NewClient};
use tracing::{debug, warn};

use super::{capability::Capability, client_list::ClientList, decide::Listed};
use crate::metrics::CollibraMetrics;

/// What a DELETE achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// The client is gone (deleted now, or already).
    Deleted,
    /// Collibra does not delete clients; the client is still there.
    Unsupported,
}

/// One Collibra instance and the state the operator keeps about it.
pub struct CollibraInstance {
    client: CollibraClient,
    list: ClientList,
    delete_supported: Capability,
    update_supported: Capability,
}

impl CollibraInstance {
    /// An instance whose list, and what it learned of DELETE and PUT, are
    /// trusted for `resync` (then read, or tried, again).
    pub fn new(client: CollibraClient, resync: Duration, metrics: Arc<CollibraMetrics>) -> Self {
        CollibraInstance {
            client,
            list: ClientList::new(resync),
            delete_supported: Capability::new("delete", resync, metrics.clone()),
            update_supported: Capability::new("update", resync, metrics),
        }
    }

    /// The token endpoint applications use with the credentials.
    pub fn token_url(&self) -> String {
        self.client.token_url()
    }

    /// The Collibra base URL (`collibra_url` in Secret templates).
    pub fn base_url(&self) -> String {
        self.client.base_url()
    }

    /// Whether Collibra answers DELETE (`None`: not yet known).
    pub fn delete_supported(&self) -> Option<bool> {
        self.delete_supported.get()
    }

    /// Whether Collibra answers PUT (`None`: not yet known).
    pub fn update_supported(&self) -> Option<bool> {
        self.update_supported.get()
    }

    /// The client named `name`, from the shared list (fetched single-flight
    /// when stale).
    pub async fn lookup(&self, name: &str) -> Result<Option<Listed>, Error> {
        self.list.lookup(name, || self.fetch_list()).await
    }

    /// Like [`Self::lookup`], from a list at most `max_age` old: what a
    /// decision to register rests on (`--list-max-age`), so that a client
    /// created in Collibra shortly before is not POSTed again. Once the
    /// list is past half that age, it is fetched again in the background,
    /// so that while registrations keep coming none waits for a list
    /// (docs/design.md, rule 7); without registrations nothing is fetched.
    pub async fn lookup_within(
        self: &Arc<Self>,
        name: &str,
        max_age: Duration,
    ) -> Result<Option<Listed>, Error> {
        let hit = self
            .list
            .lookup_within(name, max_age, || self.fetch_list())
            .await?;
        if self.list.past_half(max_age) {
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.list.refresh_ahead(max_age, || this.fetch_list()).await {
                    // The next registration past the list's age fetches it
                    // and reports what fails then.
                    debug!(error = %e, "refreshing the Collibra list ahead failed");
                }
            });
        }
        Ok(hit)
    }

    /// Every client by name, from the shared list (a connection's check
    /// counts them; no extra request while the list is fresh).
    pub async fn clients(&self) -> Result<Vec<(String, Listed)>, Error> {
        self.list.all(|| self.fetch_list()).await
    }

    async fn fetch_list(&self) -> Result<Vec<(String, Listed)>, Error> {
        let clients = self.client.list_clients().await?;
        // Moved, not copied: at 10,000 clients a copy was a megabyte more at
        // the moment the old list and the new one are both held.
        Ok(clients
            .into_iter()
            .map(|c| {
                (
                    c.client_name,
                    Listed {
                        client_id: c.client_id,
                        issued_at: c.client_id_issued_at,
                        grant_types: c.grant_types,
                        redirect_uris: c.redirect_uris,
                    },
                )
            })
            .collect())
    }

    /// Makes the next lookup read the list again: an answer proved it wrong,
    /// or the outcome of a request is unknown.
    pub fn invalidate_list(&self) {
        self.list.invalidate();
    }

    /// POSTs a registration; a registered client is added to the list.
    pub async fn register(&self, request: &NewClient) -> Result<Arc<IssuedClient>, Error> {
        let issued = Arc::new(self.client.register_client(request).await?);
        self.list
            .registered(&issued.info.client_name, listed(&issued.info));
        Ok(issued)
    }

    /// PUTs new settings of `client_id`. `Ok(None)`: Collibra does not
    /// support updates.
    pub async fn update(
        &self,
        client_id: &str,
        update: &ClientUpdate,
    ) -> Result<Option<ClientInfo>, Error> {
        match self.client.update_client(client_id, update).await {
            Ok(info) => {
                self.update_supported.set(true);
                self.list.registered(&info.client_name, listed(&info));
                Ok(Some(info))
            }
            Err(Error::Unsupported { .. } | Error::NotFound { .. }) => {
                if self.update_supported.set(false) {
                    warn!(
                        "Collibra does not support updating clients (PUT); grant type and redirect URI drift is reported, not fixed"
                    );
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// DELETEs `client_id`, the client named `name`.
    pub async fn delete(&self, name: &str, client_id: &str) -> Result<Deletion, Error> {
        match self.client.delete_client(client_id).await {
            Ok(()) => {
                self.delete_supported.set(true);
                self.list.deleted(name, client_id);
                Ok(Deletion::Deleted)
            }
            Err(Error::Unsupported { .. }) => {
                if self.delete_supported.set(false) {
                    warn!("Collibra does not support deleting clients (DELETE)");
                }
                Ok(Deletion::Unsupported)
            }
            Err(e @ Error::NotFound { .. }) => {
                // Gone, or DELETE is not routed. Decide with a fresh list.
                self.list.invalidate();
                match self.lookup(name).await {
                    Ok(Some(c)) if c.client_id == client_id => {
                        if self.delete_supported.set(false) {
                            warn!(
                                "Collibra answers DELETE with 404 for a listed client: treating DELETE as unsupported"
                            );
                        }
                        Ok(Deletion::Unsupported)
                    }
                    Ok(_) => Ok(Deletion::Deleted),
                    Err(_) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// A list entry in the decision table's terms.
fn listed(c: &ClientInfo) -> Listed {
    Listed {
        client_id: c.client_id.clone(),
        issued_at: c.client_id_issued_at,
        grant_types: c.grant_types.clone(),
        redirect_uris: c.redirect_uris.clone(),
    }
}

#[cfg(test)]
mod tests {
    use collibra_client::{Auth, Config, Credential};
    use collibra_sim::{SimConfig, Simulator};

    use super::*;
    use crate::metrics::Metrics;

    async fn instance(sim: &Simulator) -> Arc<CollibraInstance> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = Config::new(
            sim.url().parse().expect("url"),
            Auth::OAuth {
                client_id: Credential::Value("operator".to_owned().into()),
                client_secret: Credential::Value("operator-secret".to_owned().into()),
            },
        );
        let client = CollibraClient::new(config).expect("client");
        let metrics = Metrics::default().collibra();
        Arc::new(CollibraInstance::new(
            client,
            Duration::from_secs(600),
            metrics,
        ))
    }

    #[tokio::test]
    async fn a_registration_past_half_the_list_age_lists_again_in_the_background() {
        let sim = Simulator::start(SimConfig::default()).await.expect("sim");
        let collibra = instance(&sim).await;
        let handle = sim.handle();
        let lists = || handle.stats().requests_for("list");
        let max_age = Duration::from_millis(600);
        handle.insert_client("a", &["client_credentials"]);
        let found = collibra.lookup_within("a", max_age).await.expect("list");
        assert!(found.is_some());
        assert_eq!(lists(), 1);
        // Young: answered from the list, nothing more fetched.
        collibra.lookup_within("a", max_age).await.expect("cached");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(lists(), 1, "a young list is not read again");
        // Past half its age: still answered from it, and the next list is
        // read without anyone asking again.
        tokio::time::sleep(max_age / 2).await;
        collibra.lookup_within("a", max_age).await.expect("cached");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lists() < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(lists(), 2, "the list is read again in the background");
        // Lookups for the resync never ask for one ahead.
        tokio::time::sleep(max_age / 2).await;
        collibra.lookup("a").await.expect("cached");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(lists(), 2, "no list ahead without a registration");
    }
}

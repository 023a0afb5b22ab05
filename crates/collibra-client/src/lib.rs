//! Client for Collibra's OAuth 2.0 Client Management API
//! (`{base}/rest/auth/v1/clients`), as used by the operator to register OAuth
//! clients and keep their credentials.
//!
//! - [`config`]: where Collibra is and how to authenticate ([`Config`], [`Auth`]).
//! - [`client`]: the operations ([`CollibraClient`]).
//! - `auth`: credential files that change at run time, the OAuth token cache.
//! - `transport`: retries with backoff and `Retry-After`, the body size cap.
//! - `tls`: rustls with ring, system roots plus an optional CA file.
//! - [`model`]: the JSON shapes; [`error`]: [`Error`] and its mapping from HTTP.
//! - [`observer`]: hooks for metrics.
//!
//! Credentials (the operator's own and the secrets of registered clients)
//! never appear in `Debug`, `Display`, logs or error messages.
//!
//! Reads, updates, deletes and token requests are retried on connection
//! errors, timeouts, 5xx and 429. A registration is retried only when it
//! surely never reached Collibra (connection refused, 429); otherwise its
//! failure is [`Error::Ambiguous`] and the caller must re-read the list,
//! because the one copy of a new secret is in the answer that was lost.
//!
//! ```no_run
//! # async fn example() -> Result<(), collibra_client::Error> {
//! use collibra_client::{Auth, CollibraClient, Config, Credential, NewClient};
//!
//! let url = url::Url::parse("https://acme.collibra.com").expect("valid URL");
//! let auth = Auth::OAuth {
//!     client_id: Credential::File("/var/run/collibra/client_id".into()),
//!     client_secret: Credential::File("/var/run/collibra/client_secret".into()),
//! };
//! let client = CollibraClient::new(Config::new(url, auth))?;
//! if !client.list_clients().await?.iter().any(|c| c.client_name == "billing-etl") {
//!     let issued = client
//!         .register_client(&NewClient {
//!             client_name: "billing-etl".into(),
//!             grant_types: vec!["client_credentials".into()],
//!             software_id: None,
//!             redirect_uris: vec![],
//!         })
//!         .await?;
//!     // Store issued.client_secret now: Collibra never shows it again.
//! #   let _ = issued;
//! }
//! # Ok(())
//! # }
//! ```

mod auth;
pub mod client;
pub mod config;
pub mod error;
mod limiter;
pub mod model;
pub mod observer;
pub mod parse;
mod tls;
mod transport;

pub use client::CollibraClient;
pub use config::{Auth, Config, Credential, DEFAULT_API_PATH, RetryPolicy, TOKEN_PATH};
pub use error::Error;
pub use model::{ClientInfo, ClientUpdate, IssuedClient, NewClient};
pub use observer::{Observer, Operation};
pub use secrecy::{ExposeSecret, SecretString};

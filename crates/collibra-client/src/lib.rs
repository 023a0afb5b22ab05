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

mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod model;
pub mod observer;
mod tls;
mod transport;

pub use client::CollibraClient;
pub use config::{Auth, Config, Credential, DEFAULT_API_PATH, RetryPolicy, TOKEN_PATH};
pub use error::Error;
pub use model::{ClientInfo, ClientUpdate, IssuedClient, NewClient};
pub use observer::{Observer, Operation};
pub use secrecy::{ExposeSecret, SecretString};

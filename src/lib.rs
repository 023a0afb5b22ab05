//! collibra-oauth-operator: registers OAuth clients in Collibra for
//! `OAuthClient` resources and keeps their credentials in Kubernetes Secrets.
//!
//! The tree follows the data: [`api`] is the custom resources, [`config`] the
//! command line, [`controller`] the reconcile loop (pure decisions apart from
//! effects), [`connection`] the Collibra instances (CollibraConnection and
//! ClusterCollibraConnection) and their audit (the Secret's shape is
//! [`controller::secret`]), [`metrics`] and [`server`] what the
//! process exposes, [`events`] the Events it records.

pub mod api;
pub mod config;
pub mod connection;
pub mod controller;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod server;
pub mod telemetry;

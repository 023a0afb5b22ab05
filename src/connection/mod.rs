//! Several Collibra instances from one operator: the connection
//! controller, the per-connection state the OAuthClient reconciles use,
//! the admin's host control for namespaced connections, and the audit of
//! clients no OAuthClient accounts for.
//!
//! - [`registry`]: per-connection state (client, list cache, capabilities,
//!   health, backoff), keyed by [`ConnectionKey`].
//! - [`client_config`]: spec + Secret + CA bundle to a client configuration.
//! - [`controller`]: watches both kinds, probes, reports.
//! - [`watches`]: the Secrets and ConfigMaps connections read, watched by
//!   name (metadata only), shared and reference-counted.
//! - [`status`]: reasons and conditions; [`accounting`]: managed or not;
//!   [`hosts`]: the allow-list; [`metrics`]: series by connection;
//!   [`audit`]: the `audit` subcommand.

pub mod accounting;
pub mod audit;
pub mod client_config;
pub mod controller;
pub mod hosts;
pub mod metrics;
pub mod registry;
pub mod status;
pub mod watches;

use clap::{ArgAction, Args};

use crate::api::{OAuthClient, connection::ConnectionKey};

/// Flags about connections (part of `run`).
#[derive(Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// Hosts a namespaced CollibraConnection may point at (comma-separated:
    /// host names, *.domain, or * for any). Empty, the default: namespaced
    /// connections are refused (HostNotAllowed), since whoever may create
    /// one could make the operator send requests anywhere.
    #[arg(long, env = "NAMESPACED_CONNECTION_HOSTS", value_delimiter = ',')]
    pub namespaced_connection_hosts: Vec<String>,

    /// Serve ClusterCollibraConnections (watching them takes a ClusterRole).
    /// Default: yes when the operator watches the whole cluster, no with
    /// --watch-namespaces (a namespaced installation has no cluster-wide rights).
    #[arg(long, env = "CLUSTER_CONNECTIONS", action = ArgAction::Set)]
    pub cluster_connections: Option<bool>,

    /// The longest a connection goes without a check. A fallback only: the
    /// credentials Secret and CA bundle a connection reads are watched (by
    /// name, metadata only), and a change is used at once (docs/design.md,
    /// "Connections").
    #[arg(long, env = "CONNECTION_RECHECK", default_value = "10m", value_parser = positive_duration)]
    pub connection_recheck: std::time::Duration,

    /// Namespace of ClusterCollibraConnections' credentials Secrets and CA
    /// bundles; defaults to the operator's own namespace.
    #[arg(long, env = "CLUSTER_CONNECTION_NAMESPACE")]
    pub cluster_connection_namespace: Option<String>,
}

fn positive_duration(s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than zero".to_owned()),
        Err(e) => Err(format!("{s:?} is not a duration like 30s or 1m: {e}")),
    }
}

impl ConnectionArgs {
    /// Whether ClusterCollibraConnections are served, given whether the
    /// operator watches the whole cluster.
    pub fn cluster_connections(&self, cluster_wide: bool) -> bool {
        self.cluster_connections.unwrap_or(cluster_wide)
    }
}

/// The connection an OAuthClient uses: its `spec.connectionRef`, or the
/// instance configured by flags.
pub fn connection_of(obj: &OAuthClient) -> ConnectionKey {
    match &obj.spec.connection_ref {
        None => ConnectionKey::Default,
        Some(r) => r.key(obj.metadata.namespace.as_deref().unwrap_or_default()),
    }
}

/// The namespace of cluster connections' Secrets: the flag, else the
/// operator's namespace (`POD_NAMESPACE`), else the kubeconfig's.
pub fn cluster_namespace(args: &ConnectionArgs, client: &kube::Client) -> String {
    args.cluster_connection_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| client.default_namespace().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: ConnectionArgs,
    }

    #[test]
    fn cluster_connections_follow_the_scope_unless_set() {
        let unset = Wrap::try_parse_from(["x"]).expect("parses").args;
        assert!(unset.cluster_connections(true));
        assert!(!unset.cluster_connections(false));
        assert!(unset.namespaced_connection_hosts.is_empty());
        assert_eq!(
            unset.connection_recheck,
            std::time::Duration::from_secs(600)
        );
        let on = Wrap::try_parse_from(["x", "--cluster-connections=true"])
            .expect("parses")
            .args;
        assert!(on.cluster_connections(false));
        let hosts = Wrap::try_parse_from(["x", "--namespaced-connection-hosts", "a.b,*.c.d"])
            .expect("parses")
            .args;
        assert_eq!(hosts.namespaced_connection_hosts, ["a.b", "*.c.d"]);
        assert!(Wrap::try_parse_from(["x", "--connection-recheck", "0s"]).is_err());
    }
}

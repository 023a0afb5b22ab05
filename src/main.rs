//! The `collibra-oauth-operator` binary: `run` the controller, print a
//! `crd`, or `audit` the clients no OAuthClient accounts for.

use clap::{Parser, Subcommand, ValueEnum};
use collibra_oauth_operator::{
    api::{self, connection},
    config::RunArgs,
    connection::audit::{self, AuditArgs},
    operator, telemetry,
};

/// jemalloc rather than glibc's malloc: with the watch caches and many
/// threads, glibc's per-thread arenas kept about 30 MiB more resident at
/// 10,000 objects for the same live heap (docs/design.md, "Memory").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "collibra-oauth-operator",
    version,
    about = "Registers OAuth clients in Collibra for OAuthClient resources"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which CustomResourceDefinition `crd` prints.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum CrdKind {
    /// OAuthClient (crds/oauthclients.yaml).
    Oauthclients,
    /// CollibraConnection (crds/collibraconnections.yaml).
    Collibraconnections,
    /// ClusterCollibraConnection (crds/clustercollibraconnections.yaml).
    Clustercollibraconnections,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(Box<RunArgs>),
    /// Print a CustomResourceDefinition as YAML (default: OAuthClient).
    Crd {
        /// The resource's plural name.
        #[arg(value_enum, default_value = "oauthclients")]
        kind: CrdKind,
    },
    /// List, per connection, the clients in Collibra that no OAuthClient
    /// accounts for (name, id, issued at; never a secret).
    Audit(Box<AuditArgs>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { kind } => {
            let yaml = match kind {
                CrdKind::Oauthclients => api::crd_yaml()?,
                CrdKind::Collibraconnections => connection::connection_crd_yaml()?,
                CrdKind::Clustercollibraconnections => connection::cluster_connection_crd_yaml()?,
            };
            print!("{yaml}");
            Ok(())
        }
        Command::Run(args) => {
            telemetry::init(args.log_format)?;
            operator::run(*args).await
        }
        Command::Audit(args) => audit::run(*args).await,
    }
}

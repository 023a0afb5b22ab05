//! The `collibra-oauth-operator` binary: `run` the controller or print the `crd`.

use clap::{Parser, Subcommand};
use collibra_oauth_operator::{api, config::RunArgs, controller, telemetry};

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

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(Box<RunArgs>),
    /// Print the OAuthClient CustomResourceDefinition as YAML.
    Crd,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", api::crd_yaml()?);
            Ok(())
        }
        Command::Run(args) => {
            telemetry::init(args.log_format)?;
            controller::run(*args).await
        }
    }
}

//! `collibra-sim`: runs the simulator as a process, to try the operator
//! without a Collibra instance. Every flag can also be set through the
//! environment variable named in `--help`.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use collibra_sim::{Faults, RateLimit, RedirectUris, SimConfig, Simulator};
use tracing_subscriber::EnvFilter;

/// In-memory simulator of Collibra's OAuth client management API and token endpoint.
#[derive(Parser, Debug)]
#[command(name = "collibra-sim", version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "SIM_LISTEN", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Prefix of the client management routes.
    #[arg(long, env = "SIM_API_PATH", default_value = "/rest/auth/v1")]
    api_path: String,
    /// Client id of the admin OAuth client (may use the token endpoint and manage clients).
    #[arg(long, env = "SIM_ADMIN_CLIENT_ID", default_value = "operator")]
    admin_client_id: String,
    /// Secret of the admin OAuth client.
    #[arg(
        long,
        env = "SIM_ADMIN_CLIENT_SECRET",
        default_value = "operator-secret",
        hide_env_values = true
    )]
    admin_client_secret: String,
    /// User name accepted with HTTP Basic.
    #[arg(long, env = "SIM_ADMIN_USERNAME", default_value = "admin")]
    admin_username: String,
    /// Password accepted with HTTP Basic.
    #[arg(
        long,
        env = "SIM_ADMIN_PASSWORD",
        default_value = "admin",
        hide_env_values = true
    )]
    admin_password: String,
    /// Static bearer token accepted as admin; repeat the flag (or separate
    /// with commas in the variable) for several.
    #[arg(
        long = "admin-token",
        env = "SIM_ADMIN_TOKEN",
        value_delimiter = ',',
        default_value = "static-admin-token",
        hide_env_values = true
    )]
    admin_tokens: Vec<String>,
    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, env = "SIM_TOKEN_TTL", default_value_t = 300)]
    token_ttl: u64,
    /// Answer 405 to PUT /clients/{id}.
    #[arg(long, env = "SIM_DISABLE_PUT")]
    disable_put: bool,
    /// Answer 405 to DELETE /clients/{id}.
    #[arg(long, env = "SIM_DISABLE_DELETE")]
    disable_delete: bool,
    /// Status answered when a client name is taken (400, or 409 as some deployments do).
    #[arg(long, env = "SIM_DUPLICATE_STATUS", default_value_t = 400)]
    duplicate_status: u16,
    /// How `redirect_uris` in a registration or update is treated:
    /// `supported`, `rejected` (400 naming the field) or `ignored` (dropped
    /// without a word), to play instances that do not know the field.
    #[arg(long, env = "SIM_REDIRECT_URIS", default_value = "supported")]
    redirect_uris: RedirectUris,
    /// Lifetime of an authorization code, in seconds.
    #[arg(long, env = "SIM_CODE_TTL", default_value_t = 60)]
    code_ttl: u64,
    /// Latency added to every request, in milliseconds.
    #[arg(long, env = "SIM_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Up to this much more latency at random, in milliseconds.
    #[arg(long, env = "SIM_LATENCY_JITTER_MS", default_value_t = 0)]
    latency_jitter_ms: u64,
    /// Share (0..=1) of requests answered 503.
    #[arg(long, env = "SIM_ERROR_RATE", default_value_t = 0.0)]
    error_rate: f64,
    /// Requests per second allowed before answering 429.
    #[arg(long, env = "SIM_RATE_LIMIT")]
    rate_limit: Option<u32>,
    /// Retry-After seconds sent with a 429.
    #[arg(long, env = "SIM_RETRY_AFTER")]
    retry_after: Option<u64>,
    /// Share (0..=1) of requests whose connection is closed without an answer.
    #[arg(long, env = "SIM_DROP_RATE", default_value_t = 0.0)]
    drop_rate: f64,
    /// Hold back the 201 of a registration this long after committing it, in milliseconds.
    #[arg(long, env = "SIM_REGISTER_RESPONSE_DELAY_MS", default_value_t = 0)]
    register_response_delay_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();

    let faults = Faults {
        latency_ms: args.latency_ms,
        latency_jitter_ms: args.latency_jitter_ms,
        error_rate: args.error_rate,
        rate_limit: args.rate_limit.map(|rps| RateLimit {
            requests_per_second: rps,
            retry_after_secs: args.retry_after,
        }),
        drop_rate: args.drop_rate,
        register_response_delay_ms: args.register_response_delay_ms,
    };
    faults.validate().map_err(anyhow::Error::msg)?;
    let config = SimConfig {
        api_path: args.api_path,
        admin_client_id: args.admin_client_id,
        admin_client_secret: args.admin_client_secret,
        admin_username: args.admin_username,
        admin_password: args.admin_password,
        admin_bearer_tokens: args
            .admin_tokens
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect(),
        token_ttl: Duration::from_secs(args.token_ttl),
        put_enabled: !args.disable_put,
        delete_enabled: !args.disable_delete,
        duplicate_status: args.duplicate_status,
        redirect_uris: args.redirect_uris,
        code_ttl: Duration::from_secs(args.code_ttl),
    };

    let sim = Simulator::start_on(args.listen, config).await?;
    sim.handle().set_faults(faults);
    // One line on stdout, so a script can wait for it and read the URL.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "collibra-sim listening on {}", sim.url())?;
    stdout.flush()?;

    wait_for_signal().await?;
    tracing::info!("stopping");
    sim.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await?;
    Ok(())
}

//! `tether-loadgen`: simulate many nodes against a core (which must auto-approve).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tether_benches::loadgen::{self, LoadgenConfig};
use tether_wire::token::JoinToken;
use tether_wire::units::parse_duration;
use tokio_util::sync::CancellationToken;

/// Simulate N nodes, each with its own QUIC connection: real enrollment (core must run with
/// --auto-approve), authentication, heartbeats, and answers to `tether exec` (true, false, echo).
#[derive(Debug, Parser)]
#[command(name = "tether-loadgen", version, about)]
struct Cli {
    /// Core's address, HOST:PORT (default: the token's).
    #[arg(long)]
    core: Option<String>,
    /// Join token (`tether-core key show`).
    #[arg(long, env = "TETHER_TOKEN", hide_env_values = true)]
    token: String,
    /// Nodes to simulate.
    #[arg(long)]
    nodes: usize,
    /// New connections per second while ramping up.
    #[arg(long, default_value_t = 500)]
    ramp: u32,
    /// Heartbeat interval (default: what core dictates), e.g. 30s.
    #[arg(long, value_parser = parse_duration)]
    heartbeat_interval: Option<Duration>,
    /// Stop after this long (default: on Ctrl-C).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Where identities are cached between runs.
    #[arg(long, default_value = "tether-loadgen-state")]
    state_dir: PathBuf,
    /// UDP endpoints to spread the connections over (default: one per 2,000 nodes).
    #[arg(long)]
    endpoints: Option<usize>,
    /// Only connect and send heartbeats, without enrolling or authenticating: for a bare quinn
    /// server (`tether-bench-server --mode bare`), to compare against.
    #[arg(long)]
    bare: bool,
    /// Send no heartbeats until this long after the start, e.g. 30s: lets all nodes connect
    /// before a fast --heartbeat-interval loads core.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    heartbeats_after: Duration,
    /// Also write the final report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tether_benches::init_tracing();
    let token = JoinToken::parse(&cli.token).context("--token")?;
    let core_text = cli.core.clone().unwrap_or_else(|| token.core_addr.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let core = tokio::net::lookup_host(&core_text)
            .await
            .with_context(|| format!("resolving {core_text}"))?
            .next()
            .with_context(|| format!("{core_text} has no address"))?;
        let config = LoadgenConfig {
            core,
            token,
            nodes: cli.nodes,
            ramp: cli.ramp,
            heartbeat_interval: cli.heartbeat_interval,
            duration: cli.duration,
            state_dir: cli.state_dir,
            endpoints: cli
                .endpoints
                .unwrap_or_else(|| cli.nodes.div_ceil(2000).max(1)),
            bare: cli.bare,
            heartbeats_after: cli.heartbeats_after,
        };
        let stop = CancellationToken::new();
        {
            let stop = stop.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                stop.cancel();
            });
        }
        let report = loadgen::run(config, stop).await?;
        let text = serde_json::to_string_pretty(&report)?;
        println!("{text}");
        if let Some(path) = cli.json {
            std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    })
}

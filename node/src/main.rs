//! `tether-node`: the agent's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tether_node::config::NodeConfigFile;
use tether_node::{NodeConfig, NodeError};
use tether_wire::token::JoinToken;
use tether_wire::units::parse_duration;

/// The version this build reports: `TETHER_VERSION` when it was built, else the crate's.
const VERSION: &str = match option_env!("TETHER_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};

/// Tether's agent: keeps one QUIC connection to core, enrolls, reports facts and metrics.
#[derive(Debug, Parser)]
#[command(name = "tether-node", version = VERSION, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How the agent logs on stderr: text, or json (one object per line, with the node's and
    /// sessions' ids as fields). TETHER_LOG filters (default info).
    #[arg(long, global = true, default_value = "text", value_name = "FORMAT", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: enroll on first start (waiting for approval), then stay connected.
    ///
    /// Exit codes: 0 stopped by a signal; 3 application rejected; 4 node deleted by an admin;
    /// 5 core's CA does not match the join token; 6 refused for good (wrong token, key mismatch,
    /// not enrolled); 7 this identity is in use by another machine (a copied state directory:
    /// give this machine a fresh one and enroll); 1 any other error. Only 0 and 1 are worth
    /// restarting.
    Run(RunArgs),
    /// Started by the agent itself during an update, from the binary it replaced: puts that
    /// binary back if the new agent has not authenticated to core in time.
    #[command(hide = true)]
    Watchdog {
        /// The agent's state directory.
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Core's address, HOST:PORT (default: from the join token, then from the enrollment).
    #[arg(long, value_name = "HOST:PORT")]
    core: Option<String>,
    /// Join token printed by `tether-core key show` (needed only to enroll).
    #[arg(
        long,
        env = "TETHER_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// State directory (default /var/lib/tether-node as root, else ~/.local/state/tether-node).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Hostname to report instead of the system's.
    #[arg(long)]
    hostname: Option<String>,
    /// Shell for terminal sessions, with arguments, e.g. "/bin/zsh --login" (default: /bin/bash
    /// --login, else /bin/sh). Commands given with `tether tty --command` run as SHELL -c COMMAND.
    #[arg(long, value_name = "COMMAND")]
    shell: Option<String>,
    /// Config file with a [node] section (core_addr, register_token, hostname, state_dir, ...).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// File with this machine's id, for the machine fingerprint that keeps one identity on one
    /// machine (default /etc/machine-id, else /var/lib/dbus/machine-id). For containers that
    /// share their host's machine id.
    #[arg(long, value_name = "FILE")]
    machine_id_file: Option<PathBuf>,
    /// QUIC keep-alive interval, e.g. 15s.
    #[arg(long, value_parser = parse_duration)]
    keep_alive: Option<std::time::Duration>,
    /// Longest delay between reconnect attempts, e.g. 30s.
    #[arg(long, value_parser = parse_duration)]
    reconnect_max: Option<std::time::Duration>,
    /// A release public key to trust (base64, as `tether release keygen` prints it); repeat
    /// for several. The agent installs only releases signed by a key it trusts; given here,
    /// it replaces the config file's `release_keys`.
    #[arg(long = "release-key", value_name = "KEY", value_parser = tether_certs::release::parse_public_key)]
    release_keys: Vec<tether_wire::releases::ReleaseKey>,
}

fn build_config(args: RunArgs) -> anyhow::Result<NodeConfig> {
    let mut config = NodeConfig::with_state_dir(NodeConfig::default_state_dir());
    if let Some(path) = &args.config {
        let file = NodeConfigFile::load(path).map_err(anyhow::Error::msg)?;
        config
            .apply_file(file)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("in {}", path.display()))?;
    }
    if let Some(core) = args.core {
        config.core_addr = Some(core);
    }
    if let Some(token) = args.token {
        config.token = Some(JoinToken::parse(&token).context("--token")?);
    }
    if let Some(dir) = args.state_dir {
        config.state_dir = dir;
    }
    if let Some(hostname) = args.hostname {
        config.hostname = Some(hostname);
    }
    if let Some(shell) = args.shell {
        config.shell = Some(shell);
    }
    if let Some(file) = args.machine_id_file {
        config.machine_id_file = Some(file);
    }
    if let Some(keep_alive) = args.keep_alive {
        config.keep_alive = keep_alive;
    }
    if let Some(max) = args.reconnect_max {
        config.reconnect_max = max;
    }
    if !args.release_keys.is_empty() {
        config.release_keys = args.release_keys;
    }
    config.agent_version = VERSION.to_string();
    // Where this binary is now: after an update the path holds another file.
    config.relaunch = std::env::current_exe()
        .ok()
        .map(|binary| tether_node::config::Relaunch {
            binary,
            args: std::env::args_os().skip(1).collect(),
        });
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    tether_log::init(cli.log_format.parse().unwrap_or_default());
    let args = match cli.command {
        Command::Run(args) => args,
        Command::Watchdog { state_dir } => {
            return match tether_node::update::watchdog(&state_dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tether-node watchdog: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    let config = match build_config(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tether-node: {e:#}");
            return ExitCode::from(2);
        }
    };
    // One thread is plenty for one connection; it keeps the agent small.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tether-node: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tether_node::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether-node: {e}");
            ExitCode::from(u8::try_from(NodeError::exit_code(&e)).unwrap_or(1))
        }
    }
}

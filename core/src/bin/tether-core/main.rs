//! `tether-core`: the server, and the local admin tasks that work on its data directory.

mod dev;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tether_core::Core;
use tether_core::config::{ConfigFile, CoreConfig, parse_duration};
use tether_core::data_dir::DataDir;

/// Tether's server: nodes dial in over QUIC, admins manage them with `tether`.
#[derive(Debug, Parser)]
#[command(name = "tether-core", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server. On first start creates the data directory (0700) with core's CA and server
    /// certificate, the enrollment secret, the database and DIR/admin.identity for the `tether` CLI.
    Serve(CoreFlags),
    /// The join token (stdout) nodes need to enroll, and rotation of its secret.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Admin identities for the `tether` CLI.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Quick start: core plus a node for this machine (auto-approved), data under ./tether-dev.
    Dev(CoreFlags),
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Print the join token alone on stdout: TOKEN=$(tether-core key show).
    Show(DataArg),
    /// Make a new enrollment secret. Tokens printed before stop working for new enrollments;
    /// enrolled nodes are not affected.
    Rotate(DataArg),
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Issue another user identity file (certificate, key, core address, CA).
    ///
    /// The role is written into the certificate: admin (everything), operator (nodes, commands,
    /// terminals on nodes that allow the user), viewer (read only).
    Issue {
        /// The user's name (letters, digits, '-', '_', '.').
        name: String,
        /// What the user may do.
        #[arg(long, default_value = "admin", value_parser = ["admin", "operator", "viewer"])]
        role: String,
        /// Where to write it (mode 0600; an existing file is never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct DataArg {
    /// Data directory (default /var/lib/tether-core as root, else ~/.local/share/tether-core).
    #[arg(long = "data", visible_alias = "data-dir", value_name = "DIR")]
    data: Option<PathBuf>,
}

/// Every config-file key as a flag; flags override the file.
#[derive(Debug, Clone, Default, clap::Args)]
struct CoreFlags {
    /// TOML config file (keys as below, in snake_case).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long = "data", visible_alias = "data-dir", value_name = "DIR")]
    data: Option<PathBuf>,
    /// UDP address to listen on [default: 0.0.0.0:4433].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// HOST:PORT to advertise in join tokens and identity files.
    #[arg(long, value_name = "HOST:PORT")]
    public_addr: Option<String>,
    /// How often nodes send heartbeats, 1s to 1h [default: 30s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    heartbeat_interval: Option<Duration>,
    /// Offline after this long without a heartbeat [default: 90s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    offline_after: Option<Duration>,
    /// Refuse timestamps further than this from core's clock [default: 120s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    max_clock_skew: Option<Duration>,
    /// Approve every valid enrollment at once [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    auto_approve: Option<bool>,
    /// Refuse new applications while this many wait [default: 1000].
    #[arg(long, value_name = "N")]
    max_pending_applications: Option<u64>,
    /// QUIC handshakes under way at once; more wait for their retransmission [default: 1024].
    #[arg(long, value_name = "N")]
    max_handshakes: Option<usize>,
    /// Close connections that do not say hello within this [default: 10s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    hello_timeout: Option<Duration>,
    /// Close connections idle for this long [default: 60s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    idle_timeout: Option<Duration>,
    /// How often last-seen times are written to disk [default: 60s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    last_seen_flush: Option<Duration>,
    /// How long the status log keeps entries [default: 30days].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    status_log_retention: Option<Duration>,
    /// Command output kept in history per node, in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    exec_output_cap: Option<u64>,
    /// Grace between SIGTERM and SIGKILL for timed-out or cancelled commands [default: 5s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    exec_kill_grace: Option<Duration>,
    /// UDP socket buffer to ask for, bytes; the kernel caps it at net.core.rmem_max [default: 8388608].
    #[arg(long, value_name = "BYTES")]
    udp_buffer: Option<usize>,
    /// Record terminal sessions: on (unless the client asks not to), off (unless the client
    /// asks), required (always) [default: on].
    #[arg(long, value_name = "POLICY")]
    tty_recording: Option<tether_core::config::RecordingPolicy>,
    /// Live terminal sessions allowed on one node [default: 16].
    #[arg(long, value_name = "N")]
    tty_max_per_node: Option<u32>,
    /// Live terminal sessions allowed to one user [default: 8].
    #[arg(long, value_name = "N")]
    tty_max_per_user: Option<u32>,
    /// Terminal authorizations one user may ask for per minute [default: 30].
    #[arg(long, value_name = "N")]
    tty_authorize_per_minute: Option<u32>,
    /// How long a terminal token is valid [default: 5m].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    tty_token_ttl: Option<Duration>,
}

fn default_data_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/tether-core");
    }
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(data).join("tether-core");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/tether-core")
}

impl CoreFlags {
    /// Defaults (given), then the config file, then the flags.
    fn build(self, mut config: CoreConfig) -> anyhow::Result<CoreConfig> {
        if let Some(path) = &self.config {
            config.apply_file(ConfigFile::load(path)?);
        }
        let set = |target: &mut Duration, value: Option<Duration>| {
            if let Some(value) = value {
                *target = value;
            }
        };
        if let Some(data) = self.data {
            config.data_dir = data;
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if self.public_addr.is_some() {
            config.public_addr = self.public_addr;
        }
        set(&mut config.heartbeat_interval, self.heartbeat_interval);
        set(&mut config.offline_after, self.offline_after);
        set(&mut config.max_clock_skew, self.max_clock_skew);
        set(&mut config.hello_timeout, self.hello_timeout);
        set(&mut config.idle_timeout, self.idle_timeout);
        set(&mut config.last_seen_flush, self.last_seen_flush);
        set(&mut config.status_log_retention, self.status_log_retention);
        set(&mut config.exec_kill_grace, self.exec_kill_grace);
        if let Some(cap) = self.exec_output_cap {
            config.exec_output_cap = cap;
        }
        if let Some(buffer) = self.udp_buffer {
            config.udp_buffer = buffer;
        }
        set(&mut config.tty_token_ttl, self.tty_token_ttl);
        if let Some(policy) = self.tty_recording {
            config.tty_recording = policy;
        }
        if let Some(n) = self.tty_max_per_node {
            config.tty_max_per_node = n;
        }
        if let Some(n) = self.tty_max_per_user {
            config.tty_max_per_user = n;
        }
        if let Some(n) = self.tty_authorize_per_minute {
            config.tty_authorize_per_minute = n;
        }
        if let Some(auto) = self.auto_approve {
            config.auto_approve = auto;
        }
        if let Some(max) = self.max_pending_applications {
            config.max_pending_applications = max;
        }
        if let Some(max) = self.max_handshakes {
            config.max_handshakes = max;
        }
        config.validate()?;
        Ok(config)
    }
}

fn data_dir(arg: DataArg) -> DataDir {
    DataDir::new(arg.data.unwrap_or_else(default_data_dir))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

pub(crate) async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn serve(flags: CoreFlags) -> anyhow::Result<()> {
    let config = flags.build(CoreConfig::with_data_dir(default_data_dir()))?;
    let data_dir = config.data_dir.clone();
    let core = Core::start(config).await.context("starting core")?;
    eprintln!(
        "tether-core listening on {} (data in {}); admin identity: {}",
        core.local_addr(),
        data_dir.display(),
        core.data_dir().admin_identity_path().display()
    );
    shutdown_signal().await;
    eprintln!("stopping…");
    core.shutdown().await;
    Ok(())
}

fn key(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Show(arg) => {
            let dir = data_dir(arg);
            let token = dir.join_token()?;
            println!("{}", token.encode());
            eprintln!(
                "Join token for core at {} (CA {}).\nStart a node with:\n  tether-node run --token <TOKEN>\n\
                 Keep it secret: whoever holds it may apply to join (an admin still approves).",
                token.core_addr, token.ca_fingerprint
            );
        }
        KeyCommand::Rotate(arg) => {
            let dir = data_dir(arg);
            dir.load_ca()?;
            dir.rotate_enrollment_secret()?;
            eprintln!(
                "New enrollment secret written; old join tokens no longer enroll new nodes.\n\
                 Print the new token with `tether-core key show --data {}`.",
                dir.root().display()
            );
        }
    }
    Ok(())
}

fn admin(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Issue {
            name,
            role,
            out,
            data,
        } => {
            let role: tether_wire::admin::Role = role.parse().map_err(anyhow::Error::msg)?;
            let identity = data_dir(data).issue_admin(&name, role, &out)?;
            eprintln!(
                "Wrote the identity of {role} {:?} to {} (mode 0600), for core at {}.\n\
                 Use it with `tether --identity {}` or TETHER_IDENTITY.",
                identity.name,
                out.display(),
                identity.core,
                out.display()
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Key(command) => key(command),
        Command::Admin(command) => admin(command),
        Command::Serve(flags) => {
            init_logging();
            runtime().and_then(|rt| rt.block_on(serve(flags)))
        }
        Command::Dev(flags) => {
            init_logging();
            runtime().and_then(|rt| rt.block_on(dev::run(flags)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether-core: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

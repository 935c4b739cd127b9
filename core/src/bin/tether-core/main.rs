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
    /// How serve and dev log on stderr: text, or json (one object per line, with the ids of
    /// the node, user and session involved as fields). TETHER_LOG filters (default info).
    #[arg(long, global = true, default_value = "text", value_name = "FORMAT", value_parser = ["text", "json"])]
    log_format: String,
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
    /// Quick start: core, a node for this machine (auto-approved) and the web bridge, data under
    /// ./tether-dev. The first start prints the web UI's address and the admin's password.
    Dev(dev::DevArgs),
    /// Lay out a backup (from `tether backup`) as a new data directory, for a new core to take
    /// over: refuses a directory that is not empty, checks every file and the database, and
    /// removes what it wrote if anything is wrong. Then start core with `serve --data DIR`.
    Restore {
        /// The backup file.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The new data directory (absent or empty).
        #[arg(long = "data", visible_alias = "data-dir", value_name = "DIR")]
        data: PathBuf,
    },
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
    /// Issue a user identity file (certificate, key, core address, CA) with core stopped.
    ///
    /// The way back in when every admin identity is lost, and the way to make a bridge's
    /// identity before core first serves. The certificate is recorded in core's database; a
    /// user of that name is created with --role if there is none (an existing user keeps its
    /// role). With core running, use `tether user add` and `tether user cert` instead.
    /// Roles: admin (everything), operator (nodes, commands, terminals on nodes that allow the
    /// user), viewer (read only), bridge (the web bridge's service identity).
    Issue {
        /// The user's name (letters, digits, '-', '_', '.').
        name: String,
        /// What the user may do, if the user is created.
        #[arg(long, default_value = "admin", value_parser = ["admin", "operator", "viewer", "bridge"])]
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
    /// Data directory [default: /var/lib/tether-core as root, else ~/.local/share/tether-core;
    /// for dev ./tether-dev].
    #[arg(long = "data", visible_alias = "data-dir", value_name = "DIR")]
    data: Option<PathBuf>,
    /// UDP address to listen on [default: 0.0.0.0:4433; for dev 127.0.0.1:4433].
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
    /// Most status log entries kept; the oldest go first [default: 1000000].
    #[arg(long, value_name = "N")]
    status_log_max_entries: Option<u64>,
    /// How long rejected applications are kept; then the machine may apply again
    /// [default: 30days].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    application_retention: Option<Duration>,
    /// Command output kept in history per node, e.g. 1MiB [default: 1MiB].
    #[arg(long, value_parser = bytes, value_name = "SIZE")]
    exec_output_cap: Option<u64>,
    /// Kept output of all executions together, at least exec-output-cap; past it the oldest
    /// executions' output is deleted, their results kept [default: 1GiB].
    #[arg(long, value_parser = bytes, value_name = "SIZE")]
    exec_output_max_total: Option<u64>,
    /// How long executions (results and output) are kept [default: 90days].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    exec_retention: Option<Duration>,
    /// Most per-node results kept across all executions; the oldest executions go first
    /// [default: 1000000].
    #[arg(long, value_name = "N")]
    exec_max_results: Option<u64>,
    /// Grace between SIGTERM and SIGKILL for timed-out or cancelled commands [default: 5s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    exec_kill_grace: Option<Duration>,
    /// UDP socket buffer to ask for; the kernel caps it at net.core.rmem_max [default: 8MiB].
    #[arg(long, value_parser = bytes, value_name = "SIZE")]
    udp_buffer: Option<u64>,
    /// Record terminal sessions: on (unless the client asks not to), off (unless the client
    /// asks), required (always) [default: on].
    #[arg(long, value_name = "POLICY")]
    tty_recording: Option<tether_core::config::RecordingPolicy>,
    /// Terminal output recorded per session, at least 4KiB; past it the recording stops with a
    /// marker and the session goes on (under `required`, it ends) [default: 64MiB].
    #[arg(long, value_parser = bytes, value_name = "SIZE")]
    tty_recording_max: Option<u64>,
    /// All recordings together on disk, at least tty-recording-max; past it the oldest are
    /// deleted [default: 10GiB].
    #[arg(long, value_parser = bytes, value_name = "SIZE")]
    tty_recordings_max_total: Option<u64>,
    /// Recordings older than this are deleted [default: 90days].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    tty_recordings_max_age: Option<Duration>,
    /// How long terminal session records are kept [default: 365days].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    tty_session_retention: Option<Duration>,
    /// How often what is kept is cut back to the limits above, at least 100ms [default: 1m].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    prune_interval: Option<Duration>,
    /// Free space kept on the data directory's disk: below it, database writes are refused
    /// with a clear error (the database stays intact) and recordings stop [default: 64MiB].
    #[arg(long, value_parser = bytes, value_name = "SIZE")]
    min_free_space: Option<u64>,
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
    /// A browser login session ends after this long without a request [default: 2h].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    session_idle_timeout: Option<Duration>,
    /// A browser login session ends this long after login, used or not [default: 7days].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    session_lifetime: Option<Duration>,
    /// Failed password logins in a row, for one user name or from one address, before logins for it are locked for `login_lockout` [default: 10].
    #[arg(long, value_name = "N")]
    login_max_failures: Option<u32>,
    /// How long logins stay locked after `login_max_failures` [default: 15m].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    login_lockout: Option<Duration>,
    /// The wait imposed after the first failed login [default: 1s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    login_delay: Option<Duration>,
    /// How long audit records are kept, at least 1 day [default: 365days].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    audit_retention: Option<Duration>,
    /// Audit records kept at most; the oldest beyond it are pruned [default: 10000000].
    #[arg(long, value_name = "N")]
    audit_max_records: Option<u64>,
    /// Metrics history: how long every heartbeat is kept, at least 10m [default: 1h].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    history_raw_span: Option<Duration>,
    /// How long 1-minute aggregates are kept, at least 1h [default: 48h].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    history_minute_span: Option<Duration>,
    /// How long 1-hour aggregates are kept, at least 1day [default: 90days].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    history_hour_span: Option<Duration>,
    /// How often heartbeats are written to the history [default: 30s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    history_flush: Option<Duration>,
    /// Serve Prometheus metrics (/metrics) and a health check (/health) over plain HTTP on this
    /// TCP address, e.g. 127.0.0.1:9464 [default: off; for dev 127.0.0.1:9464]. No secrets are
    /// served, but node names are: keep it off the internet.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Give /metrics a series per node and measurement (about 13 per node: 1.3 million at
    /// 100,000 nodes) [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    metrics_per_node: Option<bool>,
    /// A release public key uploads must be signed by (base64, as `tether release keygen`
    /// prints it); repeat for several. Given here, it replaces the file's `release_keys`
    /// [default: none, and every upload is refused].
    #[arg(long = "release-key", value_name = "KEY", value_parser = tether_certs::release::parse_public_key)]
    release_keys: Vec<tether_wire::releases::ReleaseKey>,
    /// Release files sent to nodes at once [default: 200].
    #[arg(long, value_name = "N")]
    max_downloads: Option<usize>,
    /// An alert firing again within this long of its last notification is recorded but not
    /// notified: a flapping condition tells once per window [default: 10m].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    alert_flap_window: Option<Duration>,
    /// Further attempts after a notification fails, at most 10 [default: 3].
    #[arg(long, value_name = "N")]
    alert_retries: Option<u32>,
    /// Wait before the first retry of a notification; it doubles with each [default: 2s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    alert_retry_backoff: Option<Duration>,
    /// How long a webhook or SMTP server has to answer [default: 10s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    alert_timeout: Option<Duration>,
    /// How long resolved alerts are kept, at least 1h [default: 90days].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    alert_retention: Option<Duration>,
    /// Alerts kept at most [default: 100000].
    #[arg(long, value_name = "N")]
    alert_max_records: Option<u64>,
}

/// A size flag: `1048576`, `64MiB`, `10GiB`.
fn bytes(text: &str) -> Result<u64, String> {
    tether_core::config::parse_bytes(text).map(|size| size.0)
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
        set(
            &mut config.application_retention,
            self.application_retention,
        );
        set(&mut config.exec_retention, self.exec_retention);
        set(&mut config.exec_kill_grace, self.exec_kill_grace);
        set(
            &mut config.tty_recordings_max_age,
            self.tty_recordings_max_age,
        );
        set(
            &mut config.tty_session_retention,
            self.tty_session_retention,
        );
        set(&mut config.prune_interval, self.prune_interval);
        let count = |target: &mut u64, value: Option<u64>| {
            if let Some(value) = value {
                *target = value;
            }
        };
        count(
            &mut config.status_log_max_entries,
            self.status_log_max_entries,
        );
        count(&mut config.exec_output_cap, self.exec_output_cap);
        count(
            &mut config.exec_output_max_total,
            self.exec_output_max_total,
        );
        count(&mut config.exec_max_results, self.exec_max_results);
        count(&mut config.tty_recording_max, self.tty_recording_max);
        count(&mut config.min_free_space, self.min_free_space);
        count(
            &mut config.tty_recordings_max_total,
            self.tty_recordings_max_total,
        );
        if let Some(buffer) = self.udp_buffer {
            config.udp_buffer = usize::try_from(buffer).unwrap_or(usize::MAX);
        }
        set(&mut config.tty_token_ttl, self.tty_token_ttl);
        set(&mut config.session_idle_timeout, self.session_idle_timeout);
        set(&mut config.session_lifetime, self.session_lifetime);
        if let Some(n) = self.login_max_failures {
            config.login_max_failures = n;
        }
        if let Some(n) = self.audit_max_records {
            config.audit_max_records = n;
        }
        set(&mut config.login_lockout, self.login_lockout);
        set(&mut config.history_raw_span, self.history_raw_span);
        set(&mut config.history_minute_span, self.history_minute_span);
        set(&mut config.history_hour_span, self.history_hour_span);
        set(&mut config.history_flush, self.history_flush);
        if self.metrics_listen.is_some() {
            config.metrics_listen = self.metrics_listen;
        }
        if let Some(on) = self.metrics_per_node {
            config.metrics_per_node = on;
        }
        if !self.release_keys.is_empty() {
            config.release_keys = self.release_keys;
        }
        if let Some(n) = self.max_downloads {
            config.max_downloads = n;
        }
        set(&mut config.alert_flap_window, self.alert_flap_window);
        set(&mut config.alert_retry_backoff, self.alert_retry_backoff);
        set(&mut config.alert_timeout, self.alert_timeout);
        set(&mut config.alert_retention, self.alert_retention);
        if let Some(n) = self.alert_retries {
            config.alert_retries = n;
        }
        if let Some(n) = self.alert_max_records {
            config.alert_max_records = n;
        }
        set(&mut config.login_delay, self.login_delay);
        set(&mut config.audit_retention, self.audit_retention);
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
            let dir = data_dir(data);
            let (identity, user) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(tether_core::auth::issue_offline(&dir, &name, role, &out))
                .map_err(anyhow::Error::msg)?;
            if user.role != role {
                eprintln!("User {name:?} exists with role {}; it keeps it.", user.role);
            }
            if !user.enabled {
                eprintln!(
                    "User {name:?} is disabled: the identity works once it is enabled (tether user enable {name})."
                );
            }
            eprintln!(
                "Wrote the identity of {} {:?} to {} (mode 0600), for core at {}.\n\
                 Use it with `tether --identity {}` or TETHER_IDENTITY.",
                user.role,
                identity.name,
                out.display(),
                identity.core,
                out.display()
            );
        }
    }
    Ok(())
}

fn restore(from: &std::path::Path, dir: &std::path::Path) -> anyhow::Result<()> {
    let restored = tether_core::backup::restore(from, dir)?;
    let manifest = &restored.manifest;
    eprintln!(
        "Restored the backup of core at {} taken {} (tether {}): {} nodes, {} recordings, \
         database checked ({}).\nStart it with:\n  tether-core serve --data {}\n\
         Nodes dial {}: run the new core there (or point that name at it) and they reconnect \
         by themselves; core keeps advertising that address unless --public-addr says otherwise.",
        manifest.core_addr,
        manifest.created_at,
        manifest.core_version,
        restored.database.nodes,
        restored.recordings,
        bytesize::ByteSize(restored.database.bytes),
        dir.display(),
        manifest.core_addr
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format.parse().unwrap_or_default();
    let result = match cli.command {
        Command::Key(command) => key(command),
        Command::Admin(command) => admin(command),
        Command::Restore { from, data } => restore(&from, &data),
        Command::Serve(flags) => {
            tether_log::init(log_format);
            runtime().and_then(|rt| rt.block_on(serve(flags)))
        }
        Command::Dev(flags) => {
            tether_log::init(log_format);
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

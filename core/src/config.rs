//! Core's configuration: defaults, then the TOML file, then command-line flags.
//!
//! Every key of the file is also a kebab-case flag of `serve` and `dev` (`heartbeat_interval` ↔
//! `--heartbeat-interval`), and durations are written the same way in both: `500ms`, `30s`, `2m`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Everything core can be told.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Data directory (CA, keys, database, recordings).
    pub data_dir: PathBuf,
    /// `HOST:PORT` nodes and admins should dial; goes into the join token and identity files.
    /// Default: the listen address, or this machine's hostname when listening on all addresses.
    pub public_addr: Option<String>,
    /// How often nodes send a heartbeat (1 s to 1 h).
    pub heartbeat_interval: Duration,
    /// A node with no heartbeat for this long is offline.
    pub offline_after: Duration,
    /// Timestamps further than this from core's clock are refused.
    pub max_clock_skew: Duration,
    /// Approve every valid enrollment at once.
    pub auto_approve: bool,
    /// Refuse new applications while this many wait for a decision.
    pub max_pending_applications: u64,
    /// QUIC handshakes under way at once; more are left unanswered, and their nodes retry (a
    /// lost first packet is sent again after about a second, then less often): after a restart,
    /// 100,000 nodes queue instead of starving the connections already made. Past half of it,
    /// a sender must first prove its address (QUIC retry), so forged packets cannot fill it;
    /// a handshake not finished within `hello_timeout` gives its place back.
    pub max_handshakes: usize,
    /// A connection that does not say hello within this time is closed.
    pub hello_timeout: Duration,
    /// Idle QUIC connections are closed after this (nodes keep theirs alive).
    pub idle_timeout: Duration,
    /// How often last-seen times are written to disk.
    pub last_seen_flush: Duration,
    /// How long the status log keeps entries.
    pub status_log_retention: Duration,
    /// Most status log entries kept (the oldest go first).
    pub status_log_max_entries: u64,
    /// How long rejected enrollment applications are kept (then the machine may apply again).
    pub application_retention: Duration,
    /// Output kept in the execution history per node (stdout and stderr together), bytes.
    pub exec_output_cap: u64,
    /// Kept output of all executions together, bytes; past it, the oldest executions' output
    /// is deleted (their results stay).
    pub exec_output_max_total: u64,
    /// How long executions (results and output) are kept.
    pub exec_retention: Duration,
    /// Most per-node results kept across all executions; past it, the oldest executions go.
    pub exec_max_results: u64,
    /// After SIGTERM (timeout or cancel), how long a command's process group has before SIGKILL.
    pub exec_kill_grace: Duration,
    /// UDP receive and send buffer to ask the kernel for, bytes (it grants up to
    /// `net.core.rmem_max`).
    pub udp_buffer: usize,
    /// Whether terminal sessions are recorded.
    pub tty_recording: RecordingPolicy,
    /// Terminal output recorded per session, bytes (before compression); past it the recording
    /// stops with a marker and the session goes on (ends, under `required`).
    pub tty_recording_max: u64,
    /// All recordings together on disk, bytes; past it the oldest are deleted.
    pub tty_recordings_max_total: u64,
    /// Recordings older than this are deleted.
    pub tty_recordings_max_age: Duration,
    /// How long terminal session records are kept.
    pub tty_session_retention: Duration,
    /// How often the limits above are enforced.
    pub prune_interval: Duration,
    /// Free space kept on the data directory's filesystem, bytes: below it, writes to the
    /// database are refused with a clear error (the database stays intact, and writes resume
    /// once space is freed) and recordings stop.
    pub min_free_space: u64,
    /// Live terminal sessions (pending or connected) on one node.
    pub tty_max_per_node: u32,
    /// Live terminal sessions (pending or connected) of one user.
    pub tty_max_per_user: u32,
    /// Terminal authorizations one user may ask for per minute.
    pub tty_authorize_per_minute: u32,
    /// How long a terminal token is valid.
    pub tty_token_ttl: Duration,
    /// A browser login session ends after this long without a request (seed 002's access token: 2 h).
    pub session_idle_timeout: Duration,
    /// A browser login session ends this long after login, used or not (seed 002's refresh token: 7 days).
    pub session_lifetime: Duration,
    /// Failed password logins in a row, for one user name or from one address, before logins for it are locked for `login_lockout`; each failure before that makes the next attempt wait longer (`login_delay`, doubling).
    pub login_max_failures: u32,
    /// How long logins stay locked after `login_max_failures`.
    pub login_lockout: Duration,
    /// The wait imposed after the first failed login; it doubles with each further failure (at most `login_lockout`).
    pub login_delay: Duration,
    /// How long audit records are kept; older ones are pruned from the old end and the chain stays verifiable from its new start.
    pub audit_retention: Duration,
    /// Audit records kept at most (each about 300 bytes); beyond it the oldest are pruned, as
    /// for age.
    pub audit_max_records: u64,
    /// Metrics history: how long every heartbeat is kept.
    pub history_raw_span: Duration,
    /// How long 1-minute aggregates (average, minimum, maximum) are kept.
    pub history_minute_span: Duration,
    /// How long 1-hour aggregates are kept.
    pub history_hour_span: Duration,
    /// How often heartbeats are written to the history (a crash loses at most this much).
    pub history_flush: Duration,
    /// TCP address of the HTTP listener for Prometheus (`/metrics`) and health checks
    /// (`/health`); none by default.
    pub metrics_listen: Option<SocketAddr>,
    /// Whether `/metrics` has a series per node and measurement (CPU, memory, filesystems,
    /// network, load): about 13 per node, so off by default.
    pub metrics_per_node: bool,
    /// Release public keys an uploaded agent release must be signed by (ed25519, base64 as
    /// `tether release keygen` prints them). Core holds no private release key; nodes check
    /// signatures against their own list (`release_keys` in `node.toml`) whatever core says.
    /// Empty: every upload is refused.
    pub release_keys: Vec<tether_wire::releases::ReleaseKey>,
    /// Release files sent to nodes at once; more nodes wait for their turn.
    pub max_downloads: usize,
    /// An alert that fires again within this long of its last notification is recorded but
    /// not notified (a flapping condition tells once per window).
    pub alert_flap_window: Duration,
    /// Further attempts after a notification fails.
    pub alert_retries: u32,
    /// The wait before the first retry; it doubles with each.
    pub alert_retry_backoff: Duration,
    /// How long a webhook or SMTP server has to answer.
    pub alert_timeout: Duration,
    /// How long resolved alerts (and their deliveries) are kept.
    pub alert_retention: Duration,
    /// Alerts kept at most; beyond it the oldest resolved ones are pruned.
    pub alert_max_records: u64,
}

/// Whether terminal sessions are recorded (asciicast v2 files under `DATA/recordings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingPolicy {
    /// Recorded unless the client asks for no recording (`tether tty --no-record`).
    On,
    /// Not recorded unless the client asks (`tether tty --record`).
    Off,
    /// Always recorded; asking for no recording is refused.
    Required,
}

impl std::str::FromStr for RecordingPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            "required" => Ok(Self::Required),
            other => Err(format!(
                "unknown recording policy {other:?}; expected on, off or required"
            )),
        }
    }
}

impl RecordingPolicy {
    /// Whether a session is recorded, given what the client asked for; an error if the client's
    /// wish conflicts with a `required` policy.
    pub fn decide(self, asked: Option<bool>) -> Result<bool, String> {
        match (self, asked) {
            (RecordingPolicy::Required, Some(false)) => Err(
                "core's configuration requires every terminal session to be recorded \
                 (tty_recording = \"required\")"
                    .into(),
            ),
            (RecordingPolicy::Required, _) => Ok(true),
            (_, Some(asked)) => Ok(asked),
            (RecordingPolicy::On, None) => Ok(true),
            (RecordingPolicy::Off, None) => Ok(false),
        }
    }
}

/// Seconds in a day.
const DAY: u64 = 24 * 3600;

impl CoreConfig {
    /// Defaults, with data under `data_dir`.
    pub fn with_data_dir(data_dir: PathBuf) -> Self {
        Self {
            listen: "0.0.0.0:4433".parse().expect("valid"),
            data_dir,
            public_addr: None,
            heartbeat_interval: Duration::from_secs(30),
            offline_after: Duration::from_secs(90),
            max_clock_skew: Duration::from_secs(120),
            auto_approve: false,
            max_pending_applications: 1000,
            max_handshakes: 1024,
            hello_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            last_seen_flush: Duration::from_secs(60),
            status_log_retention: Duration::from_secs(30 * DAY),
            status_log_max_entries: 1_000_000,
            application_retention: Duration::from_secs(30 * DAY),
            exec_output_cap: 1024 * 1024,
            exec_output_max_total: 1024 * 1024 * 1024,
            exec_retention: Duration::from_secs(90 * DAY),
            exec_max_results: 1_000_000,
            exec_kill_grace: Duration::from_secs(5),
            udp_buffer: 8 * 1024 * 1024,
            tty_recording: RecordingPolicy::On,
            tty_recording_max: 64 * 1024 * 1024,
            tty_recordings_max_total: 10 * 1024 * 1024 * 1024,
            tty_recordings_max_age: Duration::from_secs(90 * DAY),
            tty_session_retention: Duration::from_secs(365 * DAY),
            prune_interval: Duration::from_secs(60),
            min_free_space: 64 * 1024 * 1024,
            tty_max_per_node: 16,
            tty_max_per_user: 8,
            tty_authorize_per_minute: 30,
            tty_token_ttl: Duration::from_secs(300),
            session_idle_timeout: Duration::from_secs(2 * 3600),
            session_lifetime: Duration::from_secs(7 * DAY),
            login_max_failures: 10,
            login_lockout: Duration::from_secs(15 * 60),
            login_delay: Duration::from_secs(1),
            audit_retention: Duration::from_secs(365 * DAY),
            audit_max_records: 10_000_000,
            history_raw_span: Duration::from_secs(3600),
            history_minute_span: Duration::from_secs(2 * DAY),
            history_hour_span: Duration::from_secs(90 * DAY),
            history_flush: Duration::from_secs(30),
            metrics_listen: None,
            metrics_per_node: false,
            release_keys: Vec::new(),
            max_downloads: 200,
            alert_flap_window: Duration::from_secs(600),
            alert_retries: 3,
            alert_retry_backoff: Duration::from_secs(2),
            alert_timeout: Duration::from_secs(10),
            alert_retention: Duration::from_secs(90 * DAY),
            alert_max_records: 100_000,
        }
    }

    /// Checks the values make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| Err(ConfigError::Invalid(key.to_string(), why));
        if self.max_downloads == 0 {
            return bad("max_downloads", "must be at least 1".into());
        }
        if self.heartbeat_interval < Duration::from_secs(1)
            || self.heartbeat_interval > Duration::from_secs(3600)
        {
            return bad("heartbeat_interval", "must be between 1s and 1h".into());
        }
        if self.offline_after <= self.heartbeat_interval {
            return bad(
                "offline_after",
                format!(
                    "must be longer than heartbeat_interval ({}); three intervals is usual",
                    humantime::format_duration(self.heartbeat_interval)
                ),
            );
        }
        if self.max_clock_skew < Duration::from_secs(1) {
            return bad("max_clock_skew", "must be at least 1s".into());
        }
        if self.max_pending_applications == 0 {
            return bad("max_pending_applications", "must be at least 1".into());
        }
        if self.max_handshakes == 0 {
            return bad("max_handshakes", "must be at least 1".into());
        }
        if self.hello_timeout < Duration::from_millis(100) {
            return bad("hello_timeout", "must be at least 100ms".into());
        }
        if self.idle_timeout < Duration::from_secs(5) {
            return bad("idle_timeout", "must be at least 5s".into());
        }
        if self.last_seen_flush < Duration::from_secs(1) {
            return bad("last_seen_flush", "must be at least 1s".into());
        }
        if self.exec_output_cap > 4 * 1024 * 1024 {
            return bad(
                "exec_output_cap",
                "must be at most 4194304 bytes (4 MiB)".into(),
            );
        }
        if self.exec_kill_grace > Duration::from_secs(600) {
            return bad("exec_kill_grace", "must be at most 10m".into());
        }
        if self.tty_max_per_node == 0 || self.tty_max_per_user == 0 {
            return bad(
                "tty_max_per_node/tty_max_per_user",
                "must be at least 1".into(),
            );
        }
        if self.tty_authorize_per_minute == 0 {
            return bad("tty_authorize_per_minute", "must be at least 1".into());
        }
        if self.tty_token_ttl < Duration::from_secs(1)
            || self.tty_token_ttl > Duration::from_secs(3600)
        {
            return bad("tty_token_ttl", "must be between 1s and 1h".into());
        }
        for (key, value) in [
            ("status_log_retention", self.status_log_retention),
            ("application_retention", self.application_retention),
            ("exec_retention", self.exec_retention),
            ("tty_recordings_max_age", self.tty_recordings_max_age),
            ("tty_session_retention", self.tty_session_retention),
        ] {
            if value < Duration::from_secs(1) {
                return bad(key, "must be at least 1s".into());
            }
        }
        if self.session_idle_timeout < Duration::from_secs(1)
            || self.session_lifetime < self.session_idle_timeout
        {
            return bad(
                "session_idle_timeout/session_lifetime",
                "the idle timeout must be at least 1s and at most the lifetime".into(),
            );
        }
        if self.login_max_failures == 0 {
            return bad("login_max_failures", "must be at least 1".into());
        }
        if self.login_delay > self.login_lockout {
            return bad("login_delay", "must be at most login_lockout".into());
        }
        if self.audit_retention < Duration::from_secs(DAY) {
            return bad("audit_retention", "must be at least 1 day".into());
        }
        if self.audit_max_records < 1000 {
            return bad("audit_max_records", "must be at least 1000".into());
        }
        if self.history_raw_span < Duration::from_secs(600)
            || self.history_minute_span < Duration::from_secs(3600)
            || self.history_hour_span < Duration::from_secs(DAY)
        {
            return bad(
                "history_raw_span/history_minute_span/history_hour_span",
                "must be at least 10m, 1h and 1day (each tier's shortest window)".into(),
            );
        }
        if self.alert_retries > 10 {
            return bad("alert_retries", "must be at most 10".into());
        }
        if self.alert_retry_backoff < Duration::from_millis(10)
            || self.alert_retry_backoff > Duration::from_secs(600)
        {
            return bad("alert_retry_backoff", "must be between 10ms and 10m".into());
        }
        if self.alert_timeout < Duration::from_millis(100)
            || self.alert_timeout > Duration::from_secs(300)
        {
            return bad("alert_timeout", "must be between 100ms and 5m".into());
        }
        if self.alert_retention < Duration::from_secs(3600) {
            return bad("alert_retention", "must be at least 1h".into());
        }
        if self.history_flush < Duration::from_millis(100)
            || self.history_flush > Duration::from_secs(600)
        {
            return bad("history_flush", "must be between 100ms and 10m".into());
        }
        if self.prune_interval < Duration::from_millis(100) {
            return bad("prune_interval", "must be at least 100ms".into());
        }
        if self.status_log_max_entries == 0 || self.exec_max_results == 0 {
            return bad(
                "status_log_max_entries/exec_max_results",
                "must be at least 1".into(),
            );
        }
        if self.exec_output_max_total < self.exec_output_cap {
            return bad(
                "exec_output_max_total",
                format!(
                    "must be at least exec_output_cap ({})",
                    bytesize::ByteSize(self.exec_output_cap)
                ),
            );
        }
        if self.tty_recording_max < 4096 {
            return bad("tty_recording_max", "must be at least 4KiB".into());
        }
        if self.tty_recordings_max_total < self.tty_recording_max {
            return bad(
                "tty_recordings_max_total",
                format!(
                    "must be at least tty_recording_max ({})",
                    bytesize::ByteSize(self.tty_recording_max)
                ),
            );
        }
        Ok(())
    }

    /// The address to advertise in join tokens and identity files.
    pub fn advertised_addr(&self) -> String {
        if let Some(addr) = &self.public_addr {
            return addr.clone();
        }
        if self.listen.ip().is_unspecified() {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default();
            let host = if host.is_empty() {
                "localhost".to_string()
            } else {
                host
            };
            return format!("{host}:{}", self.listen.port());
        }
        self.listen.to_string()
    }

    /// Applies a parsed config file.
    pub fn apply_file(&mut self, file: ConfigFile) {
        let ConfigFile {
            listen,
            data_dir,
            public_addr,
            heartbeat_interval,
            offline_after,
            max_clock_skew,
            auto_approve,
            max_pending_applications,
            max_handshakes,
            hello_timeout,
            idle_timeout,
            last_seen_flush,
            status_log_retention,
            status_log_max_entries,
            application_retention,
            exec_output_cap,
            exec_output_max_total,
            exec_retention,
            exec_max_results,
            exec_kill_grace,
            udp_buffer,
            tty_recording,
            tty_recording_max,
            tty_recordings_max_total,
            tty_recordings_max_age,
            tty_session_retention,
            prune_interval,
            min_free_space,
            tty_max_per_node,
            tty_max_per_user,
            tty_authorize_per_minute,
            tty_token_ttl,
            session_idle_timeout,
            session_lifetime,
            login_max_failures,
            login_lockout,
            login_delay,
            audit_retention,
            audit_max_records,
            history_raw_span,
            history_minute_span,
            history_hour_span,
            history_flush,
            metrics_listen,
            metrics_per_node,
            release_keys,
            max_downloads,
            alert_flap_window,
            alert_retries,
            alert_retry_backoff,
            alert_timeout,
            alert_retention,
            alert_max_records,
        } = file;
        set(&mut self.listen, listen);
        set(&mut self.data_dir, data_dir);
        if public_addr.is_some() {
            self.public_addr = public_addr;
        }
        set(
            &mut self.heartbeat_interval,
            heartbeat_interval.map(|d| d.0),
        );
        set(&mut self.offline_after, offline_after.map(|d| d.0));
        set(&mut self.max_clock_skew, max_clock_skew.map(|d| d.0));
        set(&mut self.auto_approve, auto_approve);
        set(&mut self.max_pending_applications, max_pending_applications);
        set(&mut self.max_handshakes, max_handshakes);
        set(&mut self.hello_timeout, hello_timeout.map(|d| d.0));
        set(&mut self.idle_timeout, idle_timeout.map(|d| d.0));
        set(&mut self.last_seen_flush, last_seen_flush.map(|d| d.0));
        set(
            &mut self.status_log_retention,
            status_log_retention.map(|d| d.0),
        );
        set(&mut self.status_log_max_entries, status_log_max_entries);
        set(
            &mut self.application_retention,
            application_retention.map(|d| d.0),
        );
        set(&mut self.exec_output_cap, exec_output_cap.map(|b| b.0));
        set(
            &mut self.exec_output_max_total,
            exec_output_max_total.map(|b| b.0),
        );
        set(&mut self.exec_retention, exec_retention.map(|d| d.0));
        set(&mut self.exec_max_results, exec_max_results);
        set(&mut self.exec_kill_grace, exec_kill_grace.map(|d| d.0));
        set(
            &mut self.udp_buffer,
            udp_buffer.map(|b| usize::try_from(b.0).unwrap_or(usize::MAX)),
        );
        set(&mut self.tty_recording, tty_recording);
        set(&mut self.tty_recording_max, tty_recording_max.map(|b| b.0));
        set(
            &mut self.tty_recordings_max_total,
            tty_recordings_max_total.map(|b| b.0),
        );
        set(
            &mut self.tty_recordings_max_age,
            tty_recordings_max_age.map(|d| d.0),
        );
        set(
            &mut self.tty_session_retention,
            tty_session_retention.map(|d| d.0),
        );
        set(&mut self.prune_interval, prune_interval.map(|d| d.0));
        set(&mut self.min_free_space, min_free_space.map(|b| b.0));
        set(&mut self.tty_max_per_node, tty_max_per_node);
        set(&mut self.tty_max_per_user, tty_max_per_user);
        set(&mut self.tty_authorize_per_minute, tty_authorize_per_minute);
        set(&mut self.tty_token_ttl, tty_token_ttl.map(|d| d.0));
        set(
            &mut self.session_idle_timeout,
            session_idle_timeout.map(|d| d.0),
        );
        set(&mut self.session_lifetime, session_lifetime.map(|d| d.0));
        set(&mut self.login_max_failures, login_max_failures);
        set(&mut self.login_lockout, login_lockout.map(|d| d.0));
        set(&mut self.login_delay, login_delay.map(|d| d.0));
        set(&mut self.audit_retention, audit_retention.map(|d| d.0));
        set(&mut self.audit_max_records, audit_max_records);
        set(&mut self.history_raw_span, history_raw_span.map(|d| d.0));
        set(
            &mut self.history_minute_span,
            history_minute_span.map(|d| d.0),
        );
        set(&mut self.history_hour_span, history_hour_span.map(|d| d.0));
        set(&mut self.history_flush, history_flush.map(|d| d.0));
        if metrics_listen.is_some() {
            self.metrics_listen = metrics_listen;
        }
        set(&mut self.metrics_per_node, metrics_per_node);
        set(
            &mut self.release_keys,
            release_keys.map(|keys| keys.into_iter().map(|k| k.0).collect()),
        );
        set(&mut self.max_downloads, max_downloads);
        set(&mut self.alert_flap_window, alert_flap_window.map(|d| d.0));
        set(&mut self.alert_retries, alert_retries);
        set(
            &mut self.alert_retry_backoff,
            alert_retry_backoff.map(|d| d.0),
        );
        set(&mut self.alert_timeout, alert_timeout.map(|d| d.0));
        set(&mut self.alert_retention, alert_retention.map(|d| d.0));
        set(&mut self.alert_max_records, alert_max_records);
    }

    /// The history spans in the store's terms.
    pub fn history_spans(&self) -> tether_store::HistorySpans {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        tether_store::HistorySpans {
            raw_s: secs(self.history_raw_span),
            minute_s: secs(self.history_minute_span),
            hour_s: secs(self.history_hour_span),
        }
    }
}

fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *target = value;
    }
}

/// The config file, every key optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// See [`CoreConfig::listen`].
    pub listen: Option<SocketAddr>,
    /// See [`CoreConfig::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`CoreConfig::public_addr`].
    pub public_addr: Option<String>,
    /// See [`CoreConfig::heartbeat_interval`].
    pub heartbeat_interval: Option<DurationText>,
    /// See [`CoreConfig::offline_after`].
    pub offline_after: Option<DurationText>,
    /// See [`CoreConfig::max_clock_skew`].
    pub max_clock_skew: Option<DurationText>,
    /// See [`CoreConfig::auto_approve`].
    pub auto_approve: Option<bool>,
    /// See [`CoreConfig::max_pending_applications`].
    pub max_pending_applications: Option<u64>,
    /// See [`CoreConfig::max_handshakes`].
    pub max_handshakes: Option<usize>,
    /// See [`CoreConfig::hello_timeout`].
    pub hello_timeout: Option<DurationText>,
    /// See [`CoreConfig::idle_timeout`].
    pub idle_timeout: Option<DurationText>,
    /// See [`CoreConfig::last_seen_flush`].
    pub last_seen_flush: Option<DurationText>,
    /// See [`CoreConfig::status_log_retention`].
    pub status_log_retention: Option<DurationText>,
    /// See [`CoreConfig::status_log_max_entries`].
    pub status_log_max_entries: Option<u64>,
    /// See [`CoreConfig::application_retention`].
    pub application_retention: Option<DurationText>,
    /// See [`CoreConfig::exec_output_cap`].
    pub exec_output_cap: Option<ByteSize>,
    /// See [`CoreConfig::exec_output_max_total`].
    pub exec_output_max_total: Option<ByteSize>,
    /// See [`CoreConfig::exec_retention`].
    pub exec_retention: Option<DurationText>,
    /// See [`CoreConfig::exec_max_results`].
    pub exec_max_results: Option<u64>,
    /// See [`CoreConfig::exec_kill_grace`].
    pub exec_kill_grace: Option<DurationText>,
    /// See [`CoreConfig::udp_buffer`].
    pub udp_buffer: Option<ByteSize>,
    /// See [`CoreConfig::tty_recording`]: `on`, `off` or `required`.
    pub tty_recording: Option<RecordingPolicy>,
    /// See [`CoreConfig::tty_recording_max`].
    pub tty_recording_max: Option<ByteSize>,
    /// See [`CoreConfig::tty_recordings_max_total`].
    pub tty_recordings_max_total: Option<ByteSize>,
    /// See [`CoreConfig::tty_recordings_max_age`].
    pub tty_recordings_max_age: Option<DurationText>,
    /// See [`CoreConfig::tty_session_retention`].
    pub tty_session_retention: Option<DurationText>,
    /// See [`CoreConfig::prune_interval`].
    pub prune_interval: Option<DurationText>,
    /// See [`CoreConfig::min_free_space`].
    pub min_free_space: Option<ByteSize>,
    /// See [`CoreConfig::tty_max_per_node`].
    pub tty_max_per_node: Option<u32>,
    /// See [`CoreConfig::tty_max_per_user`].
    pub tty_max_per_user: Option<u32>,
    /// See [`CoreConfig::tty_authorize_per_minute`].
    pub tty_authorize_per_minute: Option<u32>,
    /// See [`CoreConfig::tty_token_ttl`].
    pub tty_token_ttl: Option<DurationText>,
    /// See [`CoreConfig::session_idle_timeout`].
    pub session_idle_timeout: Option<DurationText>,
    /// See [`CoreConfig::session_lifetime`].
    pub session_lifetime: Option<DurationText>,
    /// See [`CoreConfig::login_max_failures`].
    pub login_max_failures: Option<u32>,
    /// See [`CoreConfig::login_lockout`].
    pub login_lockout: Option<DurationText>,
    /// See [`CoreConfig::login_delay`].
    pub login_delay: Option<DurationText>,
    /// See [`CoreConfig::audit_retention`].
    pub audit_retention: Option<DurationText>,
    /// See [`CoreConfig::audit_max_records`].
    pub audit_max_records: Option<u64>,
    /// See [`CoreConfig::history_raw_span`].
    pub history_raw_span: Option<DurationText>,
    /// See [`CoreConfig::history_minute_span`].
    pub history_minute_span: Option<DurationText>,
    /// See [`CoreConfig::history_hour_span`].
    pub history_hour_span: Option<DurationText>,
    /// See [`CoreConfig::history_flush`].
    pub history_flush: Option<DurationText>,
    /// See [`CoreConfig::metrics_listen`].
    pub metrics_listen: Option<SocketAddr>,
    /// See [`CoreConfig::metrics_per_node`].
    pub metrics_per_node: Option<bool>,
    /// See [`CoreConfig::release_keys`].
    pub release_keys: Option<Vec<ReleaseKeyText>>,
    /// See [`CoreConfig::max_downloads`].
    pub max_downloads: Option<usize>,
    /// See [`CoreConfig::alert_flap_window`].
    pub alert_flap_window: Option<DurationText>,
    /// See [`CoreConfig::alert_retries`].
    pub alert_retries: Option<u32>,
    /// See [`CoreConfig::alert_retry_backoff`].
    pub alert_retry_backoff: Option<DurationText>,
    /// See [`CoreConfig::alert_timeout`].
    pub alert_timeout: Option<DurationText>,
    /// See [`CoreConfig::alert_retention`].
    pub alert_retention: Option<DurationText>,
    /// See [`CoreConfig::alert_max_records`].
    pub alert_max_records: Option<u64>,
}

impl ConfigFile {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read(path.to_path_buf(), e.to_string()))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(path.to_path_buf(), e.to_string()))
    }
}

/// A release public key written as text (base64), checked as it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseKeyText(pub tether_wire::releases::ReleaseKey);

impl<'de> Deserialize<'de> for ReleaseKeyText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        tether_certs::release::parse_public_key(&text)
            .map(ReleaseKeyText)
            .map_err(serde::de::Error::custom)
    }
}

/// A duration written as text: `500ms`, `30s`, `2m`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationText(pub Duration);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text)
            .map(DurationText)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses `500ms`, `30s`, `2m`, `1h` (a unit is required); the same rules as the node's config
/// and the CLI's flags (`tether_wire::units`).
pub use tether_wire::units::parse_duration;

/// A size in bytes, written as a number (`1048576`) or with a unit (`64MiB`, `10GiB`, `1GB`:
/// binary units are powers of 1024, decimal ones of 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(n) => Ok(ByteSize(n)),
            Written::Text(text) => parse_bytes(&text).map_err(serde::de::Error::custom),
        }
    }
}

/// Parses a byte size: `1048576`, `64MiB`, `10 GiB`, `1GB` ([`tether_wire::units::parse_bytes`]).
pub fn parse_bytes(text: &str) -> Result<ByteSize, String> {
    tether_wire::units::parse_bytes(text).map(ByteSize)
}

/// A configuration problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, String),
    /// The file is not valid.
    #[error("config file {0}: {1}")]
    Parse(PathBuf, String),
    /// A value is out of range.
    #[error("{0} (--{flag}): {1}", flag = .0.replace('_', "-").replace('/', " / --"))]
    Invalid(String, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_unknown_keys_are_refused() {
        let file: ConfigFile = toml::from_str(
            "listen = \"127.0.0.1:5000\"\nheartbeat_interval = \"5s\"\noffline_after = \"15s\"\nauto_approve = true\n",
        )
        .unwrap();
        let mut config = CoreConfig::with_data_dir("d".into());
        config.apply_file(file);
        assert_eq!(config.listen.port(), 5000);
        assert_eq!(config.heartbeat_interval, Duration::from_secs(5));
        assert!(config.auto_approve);
        assert_eq!(
            config.max_clock_skew,
            Duration::from_secs(120),
            "untouched default"
        );
        config.validate().unwrap();

        let err = toml::from_str::<ConfigFile>("hearbeat_interval = \"5s\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"));
        let err = toml::from_str::<ConfigFile>("offline_after = \"90\"").unwrap_err();
        assert!(err.to_string().contains("needs a unit"));
    }

    #[test]
    fn the_handshake_limit_comes_from_the_file_and_must_be_at_least_one() {
        let mut config = CoreConfig::with_data_dir("d".into());
        assert_eq!(config.max_handshakes, 1024, "default");
        config.apply_file(toml::from_str("max_handshakes = 64").unwrap());
        assert_eq!(config.max_handshakes, 64);
        config.validate().unwrap();
        config.apply_file(toml::from_str("max_handshakes = 0").unwrap());
        assert!(
            matches!(config.validate(), Err(ConfigError::Invalid(k, _)) if k == "max_handshakes")
        );
    }

    #[test]
    fn inconsistent_values_refused() {
        let mut config = CoreConfig::with_data_dir("d".into());
        config.offline_after = Duration::from_secs(10);
        config.heartbeat_interval = Duration::from_secs(30);
        assert!(
            matches!(config.validate(), Err(ConfigError::Invalid(k, _)) if k == "offline_after")
        );
        config.heartbeat_interval = Duration::from_millis(200);
        assert!(
            matches!(config.validate(), Err(ConfigError::Invalid(k, _)) if k == "heartbeat_interval")
        );
    }

    #[test]
    fn recording_policy() {
        assert_eq!(RecordingPolicy::On.decide(None), Ok(true));
        assert_eq!(RecordingPolicy::On.decide(Some(false)), Ok(false));
        assert_eq!(RecordingPolicy::Off.decide(None), Ok(false));
        assert_eq!(RecordingPolicy::Off.decide(Some(true)), Ok(true));
        assert_eq!(RecordingPolicy::Required.decide(None), Ok(true));
        assert!(RecordingPolicy::Required.decide(Some(false)).is_err());
        let file: ConfigFile = toml::from_str("tty_recording = \"required\"").unwrap();
        assert_eq!(file.tty_recording, Some(RecordingPolicy::Required));
        assert!(toml::from_str::<ConfigFile>("tty_recording = \"maybe\"").is_err());
    }

    #[test]
    fn sizes_and_limits_of_what_is_kept() {
        assert_eq!(parse_bytes("1048576"), Ok(ByteSize(1_048_576)));
        assert_eq!(parse_bytes("64MiB"), Ok(ByteSize(64 << 20)));
        assert_eq!(parse_bytes("10 GiB"), Ok(ByteSize(10 << 30)));
        assert_eq!(parse_bytes("1GB"), Ok(ByteSize(1_000_000_000)));
        assert!(parse_bytes("lots").unwrap_err().contains("64MiB"));
        let file: ConfigFile = toml::from_str(
            "tty_recording_max = \"1MiB\"\ntty_recordings_max_total = 8388608\nexec_retention = \"7days\"\n",
        )
        .unwrap();
        let mut config = CoreConfig::with_data_dir("d".into());
        assert_eq!(config.tty_recording_max, 64 << 20, "default");
        config.apply_file(file);
        assert_eq!(config.tty_recording_max, 1 << 20);
        assert_eq!(config.tty_recordings_max_total, 8 << 20);
        assert_eq!(config.exec_retention, Duration::from_secs(7 * DAY));
        config.validate().unwrap();
        config.tty_recordings_max_total = 1000;
        assert!(
            matches!(config.validate(), Err(ConfigError::Invalid(k, m)) if k == "tty_recordings_max_total" && m.contains("1.0 MiB"))
        );
        let mut config = CoreConfig::with_data_dir("d".into());
        config.exec_retention = Duration::ZERO;
        assert!(
            matches!(config.validate(), Err(ConfigError::Invalid(k, _)) if k == "exec_retention")
        );
    }

    #[test]
    fn advertised_address() {
        let mut config = CoreConfig::with_data_dir("d".into());
        config.listen = "127.0.0.1:7000".parse().unwrap();
        assert_eq!(config.advertised_addr(), "127.0.0.1:7000");
        config.public_addr = Some("core.example.net:4433".into());
        assert_eq!(config.advertised_addr(), "core.example.net:4433");
    }
}

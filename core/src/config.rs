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
    /// Output kept in the execution history per node (stdout and stderr together), bytes.
    pub exec_output_cap: u64,
    /// After SIGTERM (timeout or cancel), how long a command's process group has before SIGKILL.
    pub exec_kill_grace: Duration,
    /// UDP receive and send buffer to ask the kernel for, bytes (it grants up to
    /// `net.core.rmem_max`).
    pub udp_buffer: usize,
    /// Whether terminal sessions are recorded.
    pub tty_recording: RecordingPolicy,
    /// Live terminal sessions (pending or connected) on one node.
    pub tty_max_per_node: u32,
    /// Live terminal sessions (pending or connected) of one user.
    pub tty_max_per_user: u32,
    /// Terminal authorizations one user may ask for per minute.
    pub tty_authorize_per_minute: u32,
    /// How long a terminal token is valid.
    pub tty_token_ttl: Duration,
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
            status_log_retention: Duration::from_secs(30 * 24 * 3600),
            exec_output_cap: 1024 * 1024,
            exec_kill_grace: Duration::from_secs(5),
            udp_buffer: 8 * 1024 * 1024,
            tty_recording: RecordingPolicy::On,
            tty_max_per_node: 16,
            tty_max_per_user: 8,
            tty_authorize_per_minute: 30,
            tty_token_ttl: Duration::from_secs(300),
        }
    }

    /// Checks the values make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| Err(ConfigError::Invalid(key.to_string(), why));
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
            exec_output_cap,
            exec_kill_grace,
            udp_buffer,
            tty_recording,
            tty_max_per_node,
            tty_max_per_user,
            tty_authorize_per_minute,
            tty_token_ttl,
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
        set(&mut self.exec_output_cap, exec_output_cap);
        set(&mut self.exec_kill_grace, exec_kill_grace.map(|d| d.0));
        set(&mut self.udp_buffer, udp_buffer);
        set(&mut self.tty_recording, tty_recording);
        set(&mut self.tty_max_per_node, tty_max_per_node);
        set(&mut self.tty_max_per_user, tty_max_per_user);
        set(&mut self.tty_authorize_per_minute, tty_authorize_per_minute);
        set(&mut self.tty_token_ttl, tty_token_ttl.map(|d| d.0));
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
    /// See [`CoreConfig::exec_output_cap`].
    pub exec_output_cap: Option<u64>,
    /// See [`CoreConfig::exec_kill_grace`].
    pub exec_kill_grace: Option<DurationText>,
    /// See [`CoreConfig::udp_buffer`].
    pub udp_buffer: Option<usize>,
    /// See [`CoreConfig::tty_recording`]: `on`, `off` or `required`.
    pub tty_recording: Option<RecordingPolicy>,
    /// See [`CoreConfig::tty_max_per_node`].
    pub tty_max_per_node: Option<u32>,
    /// See [`CoreConfig::tty_max_per_user`].
    pub tty_max_per_user: Option<u32>,
    /// See [`CoreConfig::tty_authorize_per_minute`].
    pub tty_authorize_per_minute: Option<u32>,
    /// See [`CoreConfig::tty_token_ttl`].
    pub tty_token_ttl: Option<DurationText>,
}

impl ConfigFile {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read(path.to_path_buf(), e.to_string()))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(path.to_path_buf(), e.to_string()))
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

/// Parses `500ms`, `30s`, `2m`, `1h` (a unit is required); the same rules as the node's config.
pub use tether_node::config::parse_duration;

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
    #[error("config key {0}: {1}")]
    Invalid(String, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("30").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("soon").is_err());
    }

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
    fn advertised_address() {
        let mut config = CoreConfig::with_data_dir("d".into());
        config.listen = "127.0.0.1:7000".parse().unwrap();
        assert_eq!(config.advertised_addr(), "127.0.0.1:7000");
        config.public_addr = Some("core.example.net:4433".into());
        assert_eq!(config.advertised_addr(), "core.example.net:4433");
    }
}

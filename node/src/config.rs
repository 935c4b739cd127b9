//! The node's configuration: defaults, then `node.toml` (seed 004's `[node]` section), then flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tether_wire::policy::{ExecPolicy, NodePolicy};
use tether_wire::token::JoinToken;
use tether_wire::units::parse_duration;

/// Everything the agent can be told.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Core's `HOST:PORT`; default: the join token's address, then the one recorded at enrollment.
    pub core_addr: Option<String>,
    /// The join token (needed to enroll; not needed once enrolled).
    pub token: Option<JoinToken>,
    /// Where the node keeps its identity (0700).
    pub state_dir: PathBuf,
    /// Hostname to report instead of the system's.
    pub hostname: Option<String>,
    /// QUIC keep-alive interval (keeps NAT mappings open; core never pings).
    pub keep_alive: Duration,
    /// A connection with no traffic for this long is dead.
    pub idle_timeout: Duration,
    /// First reconnect delay bound; doubles per failure.
    pub reconnect_initial: Duration,
    /// Largest reconnect delay bound.
    pub reconnect_max: Duration,
    /// How often static facts are re-read to see if they changed.
    pub facts_refresh: Duration,
    /// Added to the system clock (tests that need a skewed node).
    pub clock_offset_ms: i64,
    /// Shell for terminal sessions, with its arguments (default `/bin/bash --login`, else `/bin/sh`).
    pub shell: Option<String>,
    /// File holding this machine's id, for the machine fingerprint (default `/etc/machine-id`,
    /// else `/var/lib/dbus/machine-id`): for containers that share their host's.
    pub machine_id_file: Option<PathBuf>,
    /// What core may make this node do (`[policy]`); enforced here, only reported to core.
    pub policy: NodePolicy,
    /// The version this agent reports (the build's: `TETHER_VERSION` at build time, else the
    /// crate's).
    pub agent_version: String,
    /// Release public keys this node trusts (`release_keys` in `[node]`, `--release-key`):
    /// it installs only agent releases signed by one of them. None: it installs none.
    pub release_keys: Vec<tether_wire::releases::ReleaseKey>,
    /// This agent's binary and the arguments it was started with, to start again after an
    /// update (none: updates are refused, as for a library embedding the agent).
    pub relaunch: Option<Relaunch>,
}

/// How to start this agent again: its binary, its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relaunch {
    /// The binary's path, as it was when the agent started (resolved: not a symlink).
    pub binary: PathBuf,
    /// The arguments after the program name.
    pub args: Vec<std::ffi::OsString>,
}

impl NodeConfig {
    /// Defaults with the given state directory.
    pub fn with_state_dir(state_dir: PathBuf) -> Self {
        Self {
            core_addr: None,
            token: None,
            state_dir,
            hostname: None,
            keep_alive: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            reconnect_initial: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            facts_refresh: Duration::from_secs(600),
            clock_offset_ms: 0,
            shell: None,
            machine_id_file: None,
            policy: NodePolicy::open(),
            agent_version: crate::AGENT_VERSION.to_string(),
            release_keys: Vec::new(),
            relaunch: None,
        }
    }

    /// The default state directory: `/var/lib/tether-node` for root, else
    /// `$XDG_STATE_HOME/tether-node` or `~/.local/state/tether-node`.
    pub fn default_state_dir() -> PathBuf {
        use std::os::unix::fs::MetadataExt;
        let is_root = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        if is_root {
            return PathBuf::from("/var/lib/tether-node");
        }
        if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
            return PathBuf::from(state).join("tether-node");
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".local/state/tether-node")
    }

    /// Applies a parsed config file.
    pub fn apply_file(&mut self, file: NodeConfigFile) -> Result<(), String> {
        if let Some(policy) = file.policy {
            self.policy = policy.into_policy()?;
        }
        let Some(node) = file.node else { return Ok(()) };
        if let Some(addr) = node.core_addr {
            self.core_addr = Some(addr);
        }
        if let Some(token) = node.register_token {
            self.token =
                Some(JoinToken::parse(&token).map_err(|e| format!("register_token: {e}"))?);
        }
        if let Some(dir) = node.state_dir {
            self.state_dir = dir;
        }
        if let Some(hostname) = node.hostname {
            self.hostname = Some(hostname);
        }
        if let Some(shell) = node.shell {
            self.shell = Some(shell);
        }
        if let Some(file) = node.machine_id_file {
            self.machine_id_file = Some(file);
        }
        if let Some(keys) = node.release_keys {
            self.release_keys = keys
                .iter()
                .map(|k| {
                    tether_certs::release::parse_public_key(k)
                        .map_err(|e| format!("release_keys: {e}"))
                })
                .collect::<Result<_, _>>()?;
        }
        let duration =
            |key: &str, text: Option<String>, target: &mut Duration| -> Result<(), String> {
                if let Some(text) = text {
                    *target = parse_duration(&text).map_err(|e| format!("{key}: {e}"))?;
                }
                Ok(())
            };
        duration("keep_alive", node.keep_alive, &mut self.keep_alive)?;
        duration("idle_timeout", node.idle_timeout, &mut self.idle_timeout)?;
        duration("reconnect_max", node.reconnect_max, &mut self.reconnect_max)?;
        Ok(())
    }

    /// Checks values make sense together.
    pub fn validate(&self) -> Result<(), String> {
        if self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return Err("keep_alive must be shorter than idle_timeout".into());
        }
        if self.reconnect_initial.is_zero() || self.reconnect_max < self.reconnect_initial {
            return Err("reconnect_max must be at least the initial reconnect delay".into());
        }
        if let Some(hostname) = &self.hostname {
            tether_wire::control::check_hostname(hostname)?;
        }
        self.policy.check().map_err(|e| format!("[policy] {e}"))?;
        if let Some(shell) = &self.shell
            && shell.split_whitespace().next().is_none()
        {
            return Err("shell is empty".into());
        }
        if let Some(file) = &self.machine_id_file {
            match std::fs::read_to_string(file) {
                Ok(id) if !id.trim().is_empty() => {}
                Ok(_) => return Err(format!("machine_id_file {} is empty", file.display())),
                Err(e) => {
                    return Err(format!("machine_id_file {}: {e}", file.display()));
                }
            }
        }
        Ok(())
    }
}

/// `node.toml`, as in seed 004:
///
/// ```toml
/// [node]
/// core_addr = "core.example.net:4433"
/// register_token = "tether1-..."
/// hostname = "node-01"
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfigFile {
    /// The `[node]` section.
    pub node: Option<NodeSection>,
    /// The `[policy]` section: what core may make this node do (see [`tether_wire::policy`]).
    pub policy: Option<PolicySection>,
}

/// Keys of the `[policy]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// `"on"` (default), `"off"` or `"allow-list"`.
    pub exec: Option<String>,
    /// Programs allowed with `exec = "allow-list"`, as absolute paths.
    pub allow: Option<Vec<String>>,
    /// `"on"` (default) or `"off"`.
    pub tty: Option<String>,
}

impl PolicySection {
    fn into_policy(self) -> Result<NodePolicy, String> {
        let exec: ExecPolicy = match self.exec.as_deref() {
            None => ExecPolicy::On,
            Some(text) => text.parse().map_err(|e| format!("[policy] {e}"))?,
        };
        let tty = match self.tty.as_deref() {
            // A terminal runs anything: left out, it follows exec.
            None => exec == ExecPolicy::On,
            Some("on") => true,
            Some("off") => false,
            Some(other) => {
                return Err(format!("[policy] tty = {other:?}: \"on\" or \"off\""));
            }
        };
        let policy = NodePolicy {
            exec,
            allow: self.allow.unwrap_or_default(),
            tty,
        };
        policy.check().map_err(|e| format!("[policy] {e}"))?;
        Ok(policy)
    }
}

/// Keys of the `[node]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Core's address.
    pub core_addr: Option<String>,
    /// The join token.
    pub register_token: Option<String>,
    /// Hostname override.
    pub hostname: Option<String>,
    /// Shell for terminal sessions, with arguments.
    pub shell: Option<String>,
    /// State directory.
    pub state_dir: Option<PathBuf>,
    /// Keep-alive interval, e.g. `15s`.
    pub keep_alive: Option<String>,
    /// Idle timeout, e.g. `60s`.
    pub idle_timeout: Option<String>,
    /// Longest reconnect delay, e.g. `30s`.
    pub reconnect_max: Option<String>,
    /// File holding this machine's id (default `/etc/machine-id`).
    pub machine_id_file: Option<PathBuf>,
    /// Release public keys to trust (base64, as `tether release keygen` prints them).
    pub release_keys: Option<Vec<String>>,
}

impl NodeConfigFile {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_004_layout_parses() {
        let file: NodeConfigFile = toml::from_str(
            "[node]\ncore_addr = \"127.0.0.1:9999\"\nhostname = \"node-01\"\nkeep_alive = \"10s\"\n",
        )
        .unwrap();
        let mut config = NodeConfig::with_state_dir("s".into());
        config.apply_file(file).unwrap();
        assert_eq!(config.core_addr.as_deref(), Some("127.0.0.1:9999"));
        assert_eq!(config.hostname.as_deref(), Some("node-01"));
        assert_eq!(config.keep_alive, Duration::from_secs(10));
        config.validate().unwrap();
    }

    #[test]
    fn release_keys_are_read_and_checked() {
        let key = tether_certs::release::ReleaseSigningKey::generate();
        let text = tether_certs::release::format_public_key(&key.public());
        let file: NodeConfigFile =
            toml::from_str(&format!("[node]\nrelease_keys = [\"{text}\"]\n")).unwrap();
        let mut config = NodeConfig::with_state_dir("s".into());
        config.apply_file(file).unwrap();
        assert_eq!(config.release_keys, vec![key.public()]);
        let bad: NodeConfigFile =
            toml::from_str("[node]\nrelease_keys = [\"not-a-key\"]\n").unwrap();
        let err = NodeConfig::with_state_dir("s".into())
            .apply_file(bad)
            .unwrap_err();
        assert!(err.starts_with("release_keys:"), "{err}");
    }

    #[test]
    fn a_machine_id_file_must_be_readable() {
        let mut config = NodeConfig::with_state_dir("s".into());
        config.machine_id_file = Some("/no/such/machine-id".into());
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("/no/such/machine-id")
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        config.machine_id_file = Some(empty);
        assert!(config.validate().unwrap_err().contains("empty"));
    }

    #[test]
    fn a_policy_section_is_read_and_checked() {
        let file: NodeConfigFile = toml::from_str(
            "[policy]\nexec = \"allow-list\"\nallow = [\"/usr/bin/uptime\"]\ntty = \"off\"\n",
        )
        .unwrap();
        let mut config = NodeConfig::with_state_dir("s".into());
        config.apply_file(file).unwrap();
        assert_eq!(config.policy.exec, ExecPolicy::AllowList);
        assert_eq!(config.policy.allow, ["/usr/bin/uptime"]);
        assert!(!config.policy.tty);
        config.validate().unwrap();
        // No section: everything allowed.
        assert_eq!(
            NodeConfig::with_state_dir("s".into()).policy,
            NodePolicy::open()
        );
        // Commands off and terminals not mentioned: terminals off too (a shell runs anything).
        let file: NodeConfigFile = toml::from_str("[policy]\nexec = \"off\"").unwrap();
        let mut config = NodeConfig::with_state_dir("s".into());
        config.apply_file(file).unwrap();
        assert!(!config.policy.tty);
        for (text, wanted) in [
            ("[policy]\nexec = \"sometimes\"", "one of"),
            ("[policy]\ntty = \"maybe\"", "tty"),
            (
                "[policy]\nexec = \"allow-list\"\nallow = [\"uptime\"]",
                "absolute path",
            ),
            ("[policy]\nallow = [\"/bin/true\"]", "only read with"),
        ] {
            let file: NodeConfigFile = toml::from_str(text).unwrap();
            let err = NodeConfig::with_state_dir("s".into())
                .apply_file(file)
                .unwrap_err();
            assert!(
                err.contains("[policy]") && err.contains(wanted),
                "{text}: {err}"
            );
        }
        assert!(toml::from_str::<NodeConfigFile>("[policy]\nshell = \"on\"").is_err());
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(toml::from_str::<NodeConfigFile>("[node]\ncore = \"x\"").is_err());
        let file: NodeConfigFile = toml::from_str("[node]\nregister_token = \"abc\"").unwrap();
        let err = NodeConfig::with_state_dir("s".into())
            .apply_file(file)
            .unwrap_err();
        assert!(err.contains("register_token"), "{err}");
    }
}

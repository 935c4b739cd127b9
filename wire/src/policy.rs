//! A node's own policy: what it lets core make it do, from `[policy]` in its `node.toml`. The
//! node enforces it and only reports it; nothing core sends changes it, so a core that is
//! compromised cannot make a node run what its policy refuses.
//!
//! ```toml
//! [policy]
//! exec = "allow-list"                        # "on" (default), "off" or "allow-list"
//! allow = ["/usr/bin/uptime", "/bin/df"]     # exact programs, for "allow-list"
//! tty = "off"                                # "on" or "off"; default "on" only with exec = "on"
//! ```
//!
//! A terminal is a shell, so it runs anything: `tty` left out is off whenever `exec` is
//! restricted, and written as `"on"` beside a restricted `exec` it is the admin's choice. Under
//! a restricted `exec` a command comes with no environment variables.

use serde::{Deserialize, Serialize};

/// Programs an allow-list may hold at most.
pub const MAX_ALLOWED_PROGRAMS: usize = 256;

/// Which commands a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecPolicy {
    /// Any command (the default).
    #[default]
    On,
    /// None.
    Off,
    /// Only the programs listed in `allow`, named exactly as listed (absolute paths: a bare name
    /// would be looked up in a `PATH` the node does not control).
    AllowList,
}

impl ExecPolicy {
    /// As written in `node.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecPolicy::On => "on",
            ExecPolicy::Off => "off",
            ExecPolicy::AllowList => "allow-list",
        }
    }
}

impl std::str::FromStr for ExecPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "on" => Ok(ExecPolicy::On),
            "off" => Ok(ExecPolicy::Off),
            "allow-list" => Ok(ExecPolicy::AllowList),
            other => Err(format!(
                "exec = {other:?}: one of \"on\", \"off\", \"allow-list\""
            )),
        }
    }
}

/// What a node lets core make it do.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodePolicy {
    /// Commands.
    pub exec: ExecPolicy,
    /// With [`ExecPolicy::AllowList`]: the programs allowed, as absolute paths.
    pub allow: Vec<String>,
    /// Interactive terminals.
    pub tty: bool,
}

impl NodePolicy {
    /// Everything allowed (what a node without `[policy]` runs).
    pub fn open() -> Self {
        NodePolicy {
            exec: ExecPolicy::On,
            allow: Vec::new(),
            tty: true,
        }
    }

    /// Checks the policy makes sense: an allow-list only with `exec = "allow-list"`, of absolute
    /// paths.
    pub fn check(&self) -> Result<(), String> {
        if self.exec != ExecPolicy::AllowList && !self.allow.is_empty() {
            return Err(format!(
                "allow is only read with exec = \"allow-list\" (exec is {:?})",
                self.exec.as_str()
            ));
        }
        if self.allow.len() > MAX_ALLOWED_PROGRAMS {
            return Err(format!(
                "allow lists {} programs; at most {MAX_ALLOWED_PROGRAMS}",
                self.allow.len()
            ));
        }
        for program in &self.allow {
            if !program.starts_with('/') || program.contains('\0') {
                return Err(format!(
                    "allow: {program:?} is not an absolute path (write the program as /usr/bin/NAME)"
                ));
            }
        }
        Ok(())
    }

    /// Whether a command may run (`program`: its first word, exactly as sent; `env`: whether
    /// core sends environment variables with it); if not, why. Under a restricted policy no
    /// variables are taken: `LD_PRELOAD`, `GIT_CONFIG_*`, `PERL5OPT` or `SYSTEMD_EDITOR` would
    /// make an allowed program run something else.
    pub fn permits_exec(&self, program: &str, env: bool) -> Result<(), String> {
        if env && self.exec != ExecPolicy::On {
            return Err(format!(
                "this node's policy takes no environment variables with a command (exec = {:?} in node.toml): they could make an allowed program run something else",
                self.exec.as_str()
            ));
        }
        match self.exec {
            ExecPolicy::On => Ok(()),
            ExecPolicy::Off => {
                Err("this node's policy refuses all commands (exec = \"off\" in node.toml)".into())
            }
            ExecPolicy::AllowList if self.allow.iter().any(|p| p == program) => Ok(()),
            ExecPolicy::AllowList => Err(format!(
                "this node's policy allows only {} (exec = \"allow-list\" in node.toml); not {program:?}",
                if self.allow.is_empty() {
                    "no program".to_string()
                } else {
                    self.allow.join(", ")
                }
            )),
        }
    }

    /// Whether a script may run (a scheduled task's `--script`); if not, why. Only under
    /// `exec = "on"`: a script is whatever program its interpreter line names, so no allow-list
    /// can vouch for it.
    pub fn permits_script(&self, name: &str) -> Result<(), String> {
        match self.exec {
            ExecPolicy::On => Ok(()),
            ExecPolicy::Off => {
                Err("this node's policy refuses all commands (exec = \"off\" in node.toml)".into())
            }
            ExecPolicy::AllowList => Err(format!(
                "this node's policy allows only listed programs (exec = \"allow-list\" in node.toml); a script ({name:?}) is not one"
            )),
        }
    }

    /// Whether terminals may open; if not, why.
    pub fn permits_tty(&self) -> Result<(), String> {
        if self.tty {
            Ok(())
        } else {
            Err("this node's policy refuses terminals (tty = \"off\" in node.toml)".into())
        }
    }

    /// One line: `exec on, tty on`, `exec allow-list (/usr/bin/uptime), tty off`.
    pub fn summary(&self) -> String {
        let exec = match self.exec {
            ExecPolicy::AllowList => format!("exec allow-list ({})", self.allow.join(", ")),
            other => format!("exec {}", other.as_str()),
        };
        format!("{exec}, tty {}", if self.tty { "on" } else { "off" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_match_programs_exactly() {
        let policy = NodePolicy {
            exec: ExecPolicy::AllowList,
            allow: vec!["/usr/bin/uptime".into()],
            tty: false,
        };
        policy.check().unwrap();
        assert!(policy.permits_exec("/usr/bin/uptime", false).is_ok());
        for refused in [
            "uptime",
            "/usr/bin/uptime ",
            "/bin/sh",
            "/usr/bin/../bin/uptime",
        ] {
            let why = policy.permits_exec(refused, false).unwrap_err();
            assert!(why.contains("allows only /usr/bin/uptime"), "{why}");
        }
        assert!(policy.permits_tty().unwrap_err().contains("tty = \"off\""));
        assert_eq!(
            policy.summary(),
            "exec allow-list (/usr/bin/uptime), tty off"
        );
        let off = NodePolicy {
            exec: ExecPolicy::Off,
            ..NodePolicy::open()
        };
        assert!(off.permits_exec("/usr/bin/uptime", false).is_err());
        assert!(NodePolicy::open().permits_exec("anything", false).is_ok());
        // An allowed program with variables (LD_PRELOAD=...) is refused too.
        let why = policy.permits_exec("/usr/bin/uptime", true).unwrap_err();
        assert!(why.contains("no environment variables"), "{why}");
        assert!(NodePolicy::open().permits_exec("/bin/x", true).is_ok());
        // A script is no listed program, whatever its name.
        let why = policy.permits_script("/usr/bin/uptime").unwrap_err();
        assert!(why.contains("a script"), "{why}");
        assert!(off.permits_script("x.sh").is_err());
        assert!(NodePolicy::open().permits_script("x.sh").is_ok());
    }

    #[test]
    fn nonsense_is_refused() {
        let relative = NodePolicy {
            exec: ExecPolicy::AllowList,
            allow: vec!["uptime".into()],
            tty: true,
        };
        assert!(relative.check().unwrap_err().contains("absolute path"));
        let unused = NodePolicy {
            allow: vec!["/bin/true".into()],
            ..NodePolicy::open()
        };
        assert!(unused.check().unwrap_err().contains("only read with"));
        assert!("sometimes".parse::<ExecPolicy>().is_err());
    }
}

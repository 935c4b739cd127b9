//! Remote execution on the wire.
//!
//! Core sends [`ExecRequest`] on the node's control stream
//! ([`CoreMessage::Exec`](crate::control::CoreMessage::Exec)). The node opens a unidirectional
//! stream of its own for that execution and sends [`ExecFrame`]s on it: `Open` (which execution),
//! any number of `Stdout`/`Stderr` chunks as the process writes them, and one `Finished`. A command
//! printing gigabytes therefore never holds up the control stream, heartbeats, or another
//! execution, and QUIC flow control reaches from the admin's terminal back to the process's pipe.
//! Cancelling is a [`CoreMessage::CancelExec`](crate::control::CoreMessage::CancelExec) on the
//! control stream; the node kills the process group and still sends `Finished`.

use serde::{Deserialize, Serialize};

use crate::bytes::ByteBuf;
use crate::ids::ExecutionId;
use crate::limits;

/// Run a command on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The execution this run belongs to.
    pub exec_id: ExecutionId,
    /// Program and arguments, run directly (no shell unless the program is one).
    pub command: Vec<String>,
    /// Environment variables added to the agent's.
    pub env: Vec<(String, String)>,
    /// Working directory (default: the agent's).
    pub cwd: Option<String>,
    /// Kill the process group after this long.
    pub timeout_ms: Option<u64>,
    /// After SIGTERM, wait this long before SIGKILL.
    pub kill_grace_ms: u64,
}

/// A frame on an execution's output stream (node → core).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ExecFrame {
    /// First frame: which execution this stream carries.
    Open {
        /// The execution.
        exec_id: ExecutionId,
    },
    /// Bytes the process wrote to its standard output.
    Stdout(ByteBuf),
    /// Bytes the process wrote to its standard error.
    Stderr(ByteBuf),
    /// The end: nothing follows.
    Finished(ExecOutcome),
    /// The node's policy refuses the command; nothing ran and nothing follows. The reason names
    /// the policy (`exec = "off"`, or the allow-list).
    Refused {
        /// A sentence for the admin.
        reason: String,
    },
}

/// How a run ended, as the node saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExecOutcome {
    /// Exit code, if the process exited.
    pub exit_code: Option<i32>,
    /// Signal number, if the process was killed by one.
    pub signal: Option<i32>,
    /// The node killed it because the timeout passed.
    pub timed_out: bool,
    /// The node killed it because core cancelled it.
    pub cancelled: bool,
    /// Why the command did not run or did not end normally. With an `exit_code` of
    /// [`EXIT_NOT_FOUND`] or [`EXIT_CANNOT_EXECUTE`] it could not be started (the program is
    /// missing, or is not executable, or `cwd` is unusable); without an exit code, the agent
    /// itself failed (too many commands, no processes left, ...).
    pub error: Option<String>,
    /// When the process started, unix ms (node's clock).
    pub started_at_ms: i64,
    /// When it ended, unix ms (node's clock).
    pub finished_at_ms: i64,
}

/// Exit status of a command that could not be found: 127, as POSIX shells, `env`, `timeout`,
/// `nohup` and `xargs` report it (and so `ssh host cmd`).
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit status of a command found but not executable (permissions, not a program, a directory)
/// or whose working directory cannot be entered: 126, as POSIX shells report it.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;

/// Which output stream bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl ExecRequest {
    /// Checks the request's shape: a program, and sizes within [`limits`].
    pub fn check(&self) -> Result<(), String> {
        check_command(&self.command, &self.env, self.cwd.as_deref())
    }
}

/// Checks a command, its environment and directory against the limits.
pub fn check_command(
    command: &[String],
    env: &[(String, String)],
    cwd: Option<&str>,
) -> Result<(), String> {
    let Some(program) = command.first() else {
        return Err("the command is empty".into());
    };
    if program.is_empty() {
        return Err("the program name is empty".into());
    }
    let size: usize = command.iter().map(String::len).sum::<usize>()
        + env.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        + cwd.map_or(0, str::len);
    if size > limits::MAX_COMMAND_BYTES {
        return Err(format!(
            "command, environment and directory take {size} bytes; the limit is {}",
            limits::MAX_COMMAND_BYTES
        ));
    }
    if command.len() > limits::MAX_COMMAND_ARGS {
        return Err(format!("more than {} arguments", limits::MAX_COMMAND_ARGS));
    }
    if env.len() > limits::MAX_ENV_VARS {
        return Err(format!(
            "more than {} environment variables",
            limits::MAX_ENV_VARS
        ));
    }
    for (key, _) in env {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(format!("environment variable name {key:?} is not valid"));
        }
    }
    if command
        .iter()
        .chain(env.iter().map(|(_, v)| v))
        .any(|s| s.contains('\0'))
    {
        return Err("arguments and values may not contain NUL bytes".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_checked() {
        let ok = |c: &[&str]| {
            check_command(
                &c.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                &[],
                None,
            )
        };
        assert!(ok(&["true"]).is_ok());
        assert!(ok(&[]).unwrap_err().contains("empty"));
        assert!(ok(&[""]).is_err());
        assert!(ok(&["echo", "a\0b"]).is_err());
        let big = "x".repeat(limits::MAX_COMMAND_BYTES + 1);
        assert!(ok(&["echo", &big]).unwrap_err().contains("limit"));
        let env = vec![("A=B".to_string(), "c".to_string())];
        assert!(check_command(&["true".into()], &env, None).is_err());
    }
}

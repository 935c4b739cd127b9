//! Interactive terminals on the wire.
//!
//! Every client (the CLI today, the web bridge later) takes the same two steps:
//!
//! 1. [`AdminRequest::AuthorizeTty`](crate::admin::AdminRequest::AuthorizeTty) with a
//!    [`TtyAuthorize`]: core checks the node and the user, creates the session record (`pending`)
//!    and answers [`TtyGrant`]: a one-time token, valid five minutes, bound to that user, node,
//!    command and window size.
//! 2. A new admin stream whose first frame is
//!    [`AdminRequest::OpenTty`](crate::admin::AdminRequest::OpenTty) with the token. From then on
//!    the client sends [`TtyInput`] frames and core answers [`TtyOutput`] frames: `Connected`
//!    first (or `Error`), then `Data` as the shell writes, and one `Exited` (or `Error`) at the end.
//!
//! Core then opens a bidirectional stream to the node whose first frame is [`TtyOpen`], followed by
//! the client's [`TtyInput`] frames; the node answers `Started` (or `Error`), `Data`, and `Exited`.
//! Core splices the two streams frame by frame, recording output and resizes as they pass: each
//! session has its own streams, so one flooding terminal never delays another's keystrokes, and
//! QUIC flow control reaches from the client's terminal back to the shell's PTY.

use serde::{Deserialize, Serialize};

use crate::bytes::ByteBuf;
use crate::error::ErrorCode;
use crate::ids::{NodeId, TtySessionId};
use crate::limits;

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WindowSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

impl WindowSize {
    /// The size used when the client has no terminal to measure.
    pub const DEFAULT: WindowSize = WindowSize { cols: 80, rows: 24 };

    /// Checks both dimensions are within 1..=[`limits::MAX_TTY_DIMENSION`].
    pub fn check(self) -> Result<(), String> {
        let ok = |n: u16| (1..=limits::MAX_TTY_DIMENSION).contains(&n);
        if ok(self.cols) && ok(self.rows) {
            Ok(())
        } else {
            Err(format!(
                "window size {}x{} is outside 1x1 to {max}x{max}",
                self.cols,
                self.rows,
                max = limits::MAX_TTY_DIMENSION
            ))
        }
    }
}

/// Step one: ask for a terminal on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtyAuthorize {
    /// Node id, unique id prefix, or hostname.
    pub node: String,
    /// A command line for the node's shell to run (`shell -c COMMAND`); none means an interactive
    /// login shell.
    pub command: Option<String>,
    /// Initial window size.
    pub size: WindowSize,
    /// The client's `TERM`, passed to the remote shell.
    pub term: Option<String>,
    /// Ask for a recording (`Some(true)`), for none (`Some(false)`), or take core's default.
    pub record: Option<bool>,
}

impl TtyAuthorize {
    /// Checks sizes and shapes.
    pub fn check(&self) -> Result<(), String> {
        self.size.check()?;
        if let Some(command) = &self.command {
            check_tty_command(command)?;
        }
        if let Some(term) = &self.term {
            check_term(term)?;
        }
        Ok(())
    }
}

/// Checks a command line for a terminal.
pub fn check_tty_command(command: &str) -> Result<(), String> {
    if command.trim().is_empty() {
        return Err("the command is empty".into());
    }
    if command.len() > limits::MAX_TTY_COMMAND_LEN {
        return Err(format!(
            "the command is {} bytes; the limit is {}",
            command.len(),
            limits::MAX_TTY_COMMAND_LEN
        ));
    }
    if command.contains('\0') {
        return Err("the command may not contain NUL bytes".into());
    }
    Ok(())
}

/// Checks a `TERM` value: 1 to 64 of letters, digits, `-`, `_`, `.`, `+`.
pub fn check_term(term: &str) -> Result<(), String> {
    let ok = !term.is_empty()
        && term.len() <= 64
        && term
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(format!("TERM value {term:?} is not acceptable"))
    }
}

/// Step one's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtyGrant {
    /// The session this token opens.
    pub session_id: TtySessionId,
    /// The one-time token (URL-safe text). Present it with `OpenTty` on a new stream.
    pub token: String,
    /// After this (core's clock, unix ms) the token is refused.
    pub expires_at_ms: i64,
    /// The node.
    pub node_id: NodeId,
    /// Its hostname.
    pub hostname: String,
    /// What will run, as recorded.
    pub command: String,
    /// Whether core will record the session.
    pub recorded: bool,
}

/// First frame of the stream core opens to a node for a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtyOpen {
    /// The session.
    pub session_id: TtySessionId,
    /// Command line for the node's shell; none means its interactive login shell.
    pub command: Option<String>,
    /// Initial window size.
    pub size: WindowSize,
    /// `TERM` for the shell.
    pub term: String,
}

/// Client → core → node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TtyInput {
    /// Keystrokes or pasted bytes, written to the PTY as they are.
    Data(ByteBuf),
    /// The client's window changed size.
    Resize(WindowSize),
    /// The client's input ended (a pipe reached its end): the node sends the terminal's
    /// end-of-file character, as a user typing Ctrl-D at the start of a line would.
    Eof,
}

/// Node → core → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TtyOutput {
    /// Core → client: the session is live.
    Connected {
        /// The session.
        session_id: TtySessionId,
        /// The node.
        node_id: NodeId,
        /// Its hostname.
        hostname: String,
        /// Whether core records it.
        recorded: bool,
    },
    /// Node → core: the PTY is open and the shell runs.
    Started {
        /// The shell's process id on the node.
        pid: u32,
        /// What runs, program and arguments, as the node chose it.
        command: Vec<String>,
    },
    /// Bytes the shell wrote to its terminal.
    Data(ByteBuf),
    /// The shell exited; nothing follows.
    Exited(TtyExit),
    /// The session failed or was ended; nothing follows.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// A sentence for the user.
        message: String,
    },
}

/// How the shell ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TtyExit {
    /// Exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Signal number, if a signal killed it.
    pub signal: Option<i32>,
}

impl TtyExit {
    /// The status a local program should exit with: the code, or 128 + the signal (as shells do),
    /// or 255 when neither is known.
    pub fn status(self) -> i32 {
        match (self.exit_code, self.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 255,
        }
    }
}

/// A terminal session's state (seed 001's `tty_sessions.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TtyStatus {
    /// Authorized; the token was not presented yet.
    Pending,
    /// The shell runs and bytes flow.
    Connected,
    /// Ended normally: the shell exited or the client left.
    Closed,
    /// Ended by a failure, an expired token, a kill, or a core restart.
    Error,
    /// The node's policy refuses terminals.
    Refused,
}

impl TtyStatus {
    /// Whether the session is still pending or connected.
    pub fn is_live(self) -> bool {
        matches!(self, TtyStatus::Pending | TtyStatus::Connected)
    }

    /// Lower-case name, as used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TtyStatus::Pending => "pending",
            TtyStatus::Connected => "connected",
            TtyStatus::Closed => "closed",
            TtyStatus::Error => "error",
            TtyStatus::Refused => "refused",
        }
    }
}

impl std::fmt::Display for TtyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A session record as an admin sees it (seed 001's `tty_sessions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtySessionView {
    /// Session id.
    pub id: TtySessionId,
    /// The node.
    pub node_id: NodeId,
    /// Its hostname at the time.
    pub hostname: String,
    /// Who asked for it.
    pub user: String,
    /// State.
    pub status: TtyStatus,
    /// What runs, as recorded (the node's login shell, or the command given).
    pub command: String,
    /// Latest window size.
    pub size: WindowSize,
    /// Authorized at, unix ms.
    pub created_at_ms: i64,
    /// The shell started at, unix ms.
    pub connected_at_ms: Option<i64>,
    /// Ended at, unix ms.
    pub closed_at_ms: Option<i64>,
    /// Address the client's connection came from.
    pub client_addr: Option<String>,
    /// Address the node's connection came from.
    pub node_addr: Option<String>,
    /// Recording file under core's data directory, if recorded.
    pub recording: Option<String>,
    /// What is unusual about the recording: stopped at its size limit, incomplete, or deleted
    /// by retention (when, and why).
    pub recording_note: Option<String>,
    /// Why it is `error`.
    pub error: Option<String>,
    /// How the shell ended, if it did.
    pub exit: Option<TtyExit>,
    /// Bytes the shell wrote.
    pub output_bytes: u64,
    /// Bytes the client sent.
    pub input_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_commands_and_terms_are_checked() {
        assert!(WindowSize { cols: 80, rows: 24 }.check().is_ok());
        assert!(WindowSize { cols: 0, rows: 24 }.check().is_err());
        assert!(
            WindowSize {
                cols: 80,
                rows: 9999
            }
            .check()
            .is_err()
        );
        assert!(check_tty_command("top").is_ok());
        assert!(check_tty_command("  ").is_err());
        assert!(check_tty_command("a\0b").is_err());
        assert!(check_tty_command(&"x".repeat(limits::MAX_TTY_COMMAND_LEN + 1)).is_err());
        assert!(check_term("xterm-256color").is_ok());
        assert!(check_term("rxvt-unicode+x").is_ok());
        assert!(check_term("").is_err());
        assert!(check_term("xterm; rm -rf /").is_err());
    }

    #[test]
    fn exit_status_follows_the_shell_convention() {
        let exit = |exit_code, signal| TtyExit { exit_code, signal }.status();
        assert_eq!(exit(Some(3), None), 3);
        assert_eq!(exit(None, Some(9)), 137);
        assert_eq!(exit(None, None), 255);
    }
}

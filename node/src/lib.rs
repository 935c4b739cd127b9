//! # tether-node
//!
//! The agent. On first start it makes its identity (UUID and RSA-2048 key, in a 0700 state
//! directory), applies to join the fleet with a join token, and waits — connected — for an admin's
//! decision. From then on it keeps exactly one QUIC connection to core: it proves itself with an
//! HMAC bound to that connection, sends heartbeats as datagrams at the interval core dictates,
//! sends its static facts only when they change, and reconnects forever with jittered exponential
//! backoff — unless core tells it it was rejected or deleted, which ends it for good.
//!
//! It must never trust a core whose CA fingerprint differs from the pinned one, never log its key
//! or secret, and never hold more than one connection.

mod agent;
pub mod backoff;
pub mod collect;
pub mod config;
mod exec;
mod session;
pub mod state;
mod tty;
pub mod update;

use std::future::Future;

use tether_wire::ErrorCode;

pub use config::NodeConfig;
pub use session::run;

/// The agent's version, reported to core.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the agent stopped for good.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// An admin rejected the application.
    #[error("core rejected this node's application{}", if .reason.is_empty() { String::new() } else { format!(": {}", .reason) })]
    Rejected {
        /// The admin's reason.
        reason: String,
    },
    /// An admin deleted the node.
    #[error("this node was deleted from the fleet ({reason}); it will not reconnect")]
    Removed {
        /// Core's reason.
        reason: String,
    },
    /// Core's certificate is not from the pinned CA.
    #[error("{0}")]
    UntrustedCore(String),
    /// Core refused in a way retrying cannot fix.
    #[error("core refused: {message} [{code}]")]
    Refused {
        /// Core's code.
        code: ErrorCode,
        /// Core's sentence.
        message: String,
    },
    /// Another machine is connected with this node's identity: this state directory was
    /// copied (a cloned VM or disk image).
    #[error(
        "core refused this agent: {message} [{code}]\nThis node's identity (its state directory, {state_dir}) \
         is in use by another machine: one of the two has a copy of the other's state directory (a cloned VM \
         or disk image). If this machine is not the node's own, give it an identity of its own: move \
         {state_dir} aside and start the agent again with --token to enroll it as a new node. If it is, stop \
         the agent on the other machine (and give that one a fresh state directory), then start this one again."
    )]
    IdentityInUse {
        /// Core's code.
        code: ErrorCode,
        /// Core's sentence (names the machine that holds the identity).
        message: String,
        /// The state directory to replace.
        state_dir: String,
    },
    /// Not enrolled and no way to enroll.
    #[error("{0}")]
    NotEnrolled(String),
    /// The state directory is unusable.
    #[error("state directory: {0}")]
    State(String),
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
}

impl NodeError {
    /// The process exit code for this error: distinct codes let a service manager tell a
    /// rejection or deletion (do not restart) from a crash.
    pub fn exit_code(&self) -> i32 {
        match self {
            NodeError::Rejected { .. } => 3,
            NodeError::Removed { .. } => 4,
            NodeError::UntrustedCore(_) => 5,
            NodeError::Refused { .. } | NodeError::NotEnrolled(_) => 6,
            NodeError::IdentityInUse { .. } => 7,
            NodeError::State(_) | NodeError::Config(_) => 1,
        }
    }
}

/// A shutdown signal the agent watches.
pub trait Shutdown: Future<Output = ()> + Send {}
impl<F: Future<Output = ()> + Send> Shutdown for F {}

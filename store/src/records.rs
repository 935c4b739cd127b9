//! What is stored. Times are unix milliseconds, passed in by the caller.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tether_wire::admin::{ApplicationStatus, ExecCounts, ExecStatus, ExecutionState, NodeStatus};
use tether_wire::tty::{TtyExit, TtyStatus, WindowSize};
use tether_wire::{ApplicationId, ExecutionId, NodeId, TtySessionId};

/// An approved node (seed 001's `assets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's UUID.
    pub id: NodeId,
    /// Hostname: from enrollment, then from the latest static facts.
    pub hostname: String,
    /// The node's RSA public key (SPKI PEM), fixed at approval.
    pub public_key_pem: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Maintenance mode.
    pub maintenance: bool,
    /// Soft-deleted: record kept, secret gone, may never connect again.
    pub deleted: bool,
    /// The application that created this node.
    pub application_id: ApplicationId,
    /// Approval time.
    pub created_at_ms: i64,
    /// Last change to this record.
    pub updated_at_ms: i64,
    /// Connectivity as last recorded: `Online` or `Offline`.
    pub connectivity: NodeStatus,
    /// When connectivity last changed.
    pub connectivity_changed_ms: i64,
    /// Address of the latest authenticated connection.
    pub public_addr: Option<String>,
    /// Agent version of the latest authenticated connection.
    pub agent_version: String,
    /// Node clock minus core clock, when last measured beyond a second.
    pub clock_skew_ms: Option<i64>,
    /// When the node was deleted.
    pub deleted_at_ms: Option<i64>,
}

/// An enrollment application (seed 001's `agent_register_apply`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplicationRecord {
    /// Application id.
    pub id: ApplicationId,
    /// The node's UUID.
    pub node_id: NodeId,
    /// Hostname sent by the node.
    pub hostname: String,
    /// Public key (SPKI PEM).
    pub public_key_pem: String,
    /// SHA-256 of the public key DER, hex.
    pub key_fingerprint: String,
    /// Agent version sent by the node.
    pub agent_version: String,
    /// Status.
    pub status: ApplicationStatus,
    /// Arrival.
    pub created_at_ms: i64,
    /// Decision time.
    pub decided_at_ms: Option<i64>,
    /// Who decided.
    pub decided_by: Option<String>,
    /// Rejection reason.
    pub reason: Option<String>,
    /// Where the application came from.
    pub remote_addr: Option<String>,
}

/// One entry of the status log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusEvent {
    /// The node.
    pub node_id: NodeId,
    /// New status (`Online`, `Offline`, or `Maintenance` on/off shown as `Maintenance`/`Offline`).
    pub status: NodeStatus,
    /// Why: `connected`, `connection closed: ...`, `no heartbeat for 90s`, `core restarted`, ...
    pub reason: String,
    /// When, unix ms.
    pub at_ms: i64,
}

/// An execution (seed 002's `tasks` / `task_executions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    /// Execution id.
    pub id: ExecutionId,
    /// Admin who ran it.
    pub admin: String,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Names of environment variables given (values are not stored: they may be secrets).
    pub env_keys: Vec<String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Timeout.
    pub timeout_ms: Option<u64>,
    /// The selection as written.
    pub selector: String,
    /// Start, unix ms.
    pub created_at_ms: i64,
    /// End, unix ms.
    pub finished_at_ms: Option<i64>,
    /// State.
    pub state: ExecutionState,
    /// Nodes targeted.
    pub node_count: u32,
    /// Per-status counts, kept up to date with each node's result.
    pub counts: ExecCounts,
    /// When its kept output was deleted to keep all kept output within its bound (the
    /// results stay).
    pub output_pruned_at_ms: Option<i64>,
    /// The task run it belongs to, if a task started it.
    pub origin: Option<tether_wire::tasks::ExecOrigin>,
}

/// One node's part in an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeExecRecord {
    /// Node id.
    pub node_id: NodeId,
    /// Hostname at the time.
    pub hostname: String,
    /// Status.
    pub status: ExecStatus,
    /// Exit code.
    pub exit_code: Option<i32>,
    /// Terminating signal.
    pub signal: Option<i32>,
    /// Start, unix ms.
    pub started_at_ms: Option<i64>,
    /// End, unix ms.
    pub finished_at_ms: Option<i64>,
    /// Why it is not ok, where there is a reason.
    pub error: Option<String>,
    /// Standard output bytes produced.
    pub stdout_bytes: u64,
    /// Standard error bytes produced.
    pub stderr_bytes: u64,
    /// Output beyond the cap was not kept.
    pub truncated: bool,
}

impl NodeExecRecord {
    /// A node not yet sent the command.
    pub fn pending(node_id: NodeId, hostname: String) -> Self {
        Self {
            node_id,
            hostname,
            status: ExecStatus::Pending,
            exit_code: None,
            signal: None,
            started_at_ms: None,
            finished_at_ms: None,
            error: None,
            stdout_bytes: 0,
            stderr_bytes: 0,
            truncated: false,
        }
    }
}

/// A terminal session (seed 001's `tty_sessions`). The token itself is never stored: it lives in
/// core's memory for its five minutes only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtySessionRecord {
    /// Session id.
    pub id: TtySessionId,
    /// The node.
    pub node_id: NodeId,
    /// Hostname at the time.
    pub hostname: String,
    /// Who asked for it.
    pub user: String,
    /// State.
    pub status: TtyStatus,
    /// What runs, as shown.
    pub command: String,
    /// Latest window size.
    pub size: WindowSize,
    /// Authorized at.
    pub created_at_ms: i64,
    /// The shell started at.
    pub connected_at_ms: Option<i64>,
    /// Ended at.
    pub closed_at_ms: Option<i64>,
    /// Client's address.
    pub client_addr: Option<String>,
    /// Node's address.
    pub node_addr: Option<String>,
    /// Recording file, relative to core's data directory.
    pub recording: Option<String>,
    /// What is unusual about the recording: stopped at its size limit, incomplete (a write
    /// failed), or deleted by retention (and when, and why).
    pub recording_note: Option<String>,
    /// Why it is `error`.
    pub error: Option<String>,
    /// How the shell ended.
    pub exit: Option<TtyExit>,
    /// Bytes the shell wrote.
    pub output_bytes: u64,
    /// Bytes the client sent.
    pub input_bytes: u64,
}

/// Another machine tried to use a node's identity while it was connected (a copied state
/// directory). One per node: the latest attempt, with when the first and last were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityConflict {
    /// Address core saw the other machine's connection come from.
    pub address: String,
    /// Hostname the other machine reported.
    pub hostname: String,
    /// Why it was judged another machine: a different machine fingerprint, or connections
    /// replacing each other from alternating addresses.
    pub reason: String,
    /// First attempt, unix ms.
    pub first_at_ms: i64,
    /// Latest attempt, unix ms.
    pub last_at_ms: i64,
    /// Attempts refused.
    pub attempts: u32,
}

impl crate::codec::Stored for NodeRecord {}
impl crate::codec::Stored for ApplicationRecord {}
impl crate::codec::Stored for StatusEvent {}
impl crate::codec::Stored for NodeExecRecord {}
impl crate::codec::Stored for IdentityConflict {}

impl crate::codec::Stored for ExecutionRecord {
    const VERSION: u8 = 4;

    fn upgrade(version: u8, bytes: &[u8]) -> Result<Self, crate::StoreError> {
        match version {
            1 => Ok(crate::codec::decode_as::<crate::legacy::ExecutionRecordV1>(bytes)?.into()),
            2 => Ok(crate::codec::decode_as::<crate::legacy::ExecutionRecordV2>(bytes)?.into()),
            3 => Ok(crate::codec::decode_as::<crate::legacy::ExecutionRecordV3>(bytes)?.into()),
            _ => Err(crate::StoreError::Corrupt(format!(
                "execution record version {version} is unknown"
            ))),
        }
    }
}

impl crate::codec::Stored for TtySessionRecord {
    const VERSION: u8 = 2;

    fn upgrade(version: u8, bytes: &[u8]) -> Result<Self, crate::StoreError> {
        match version {
            1 => Ok(crate::codec::decode_as::<crate::legacy::TtySessionRecordV1>(bytes)?.into()),
            _ => Err(crate::StoreError::Corrupt(format!(
                "terminal session record version {version} is unknown"
            ))),
        }
    }
}

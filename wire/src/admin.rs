//! The admin API: what the `tether` CLI (and later the web bridge) asks core, and what core answers.
//!
//! Each request opens its own bidirectional stream on an [`ADMIN_ALPN`](crate::ADMIN_ALPN)
//! connection, sends one [`AdminRequest`] frame and finishes its side; core answers with one or
//! more [`AdminResponse`] frames (lists come in chunks) and finishes. Frames are at most
//! [`MAX_ADMIN_FRAME_LEN`](crate::limits::MAX_ADMIN_FRAME_LEN) bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::facts::StaticFacts;
use crate::heartbeat::Metrics;
use crate::ids::{ApplicationId, NodeId};
use crate::limits;

/// A request from an admin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AdminRequest {
    /// Who am I, and is core there?
    Ping,
    /// Enrollment applications, optionally only those in one status.
    ListApplications {
        /// Filter.
        status: Option<ApplicationStatus>,
    },
    /// Approve an application (id or unique prefix).
    ApproveApplication {
        /// Application id or unique prefix.
        id: String,
    },
    /// Reject an application (id or unique prefix).
    RejectApplication {
        /// Application id or unique prefix.
        id: String,
        /// Told to the node and kept on the record.
        reason: String,
    },
    /// Nodes, filtered.
    ListNodes {
        /// Only nodes in this status.
        status: Option<NodeStatus>,
        /// Only nodes that carry all of these labels.
        labels: Vec<(String, String)>,
        /// Include soft-deleted nodes.
        include_deleted: bool,
    },
    /// One node, every fact and the latest metrics.
    ShowNode {
        /// Node id or unique prefix.
        id: String,
    },
    /// Set and remove labels.
    LabelNode {
        /// Node id or unique prefix.
        id: String,
        /// Labels to set (replacing any value a key had).
        set: Vec<(String, String)>,
        /// Label keys to remove.
        remove: Vec<String>,
    },
    /// Switch maintenance mode.
    SetMaintenance {
        /// Node id or unique prefix.
        id: String,
        /// On or off.
        on: bool,
    },
    /// Soft-delete a node: record kept, secret revoked, connection closed, node told to exit.
    DeleteNode {
        /// Node id or unique prefix.
        id: String,
    },
}

/// A response frame from core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AdminResponse {
    /// Answer to `Ping`.
    Pong {
        /// Core's version.
        core_version: String,
        /// The admin name in the client certificate.
        admin: String,
    },
    /// A chunk of applications; a list may come in several.
    Applications(Vec<ApplicationView>),
    /// One application after a decision.
    Application(ApplicationView),
    /// A chunk of nodes; a list may come in several.
    Nodes(Vec<NodeView>),
    /// One node.
    Node(NodeView),
    /// The request failed.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// A sentence for the admin.
        message: String,
    },
}

/// A node's status (seed 001's `assets.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeStatus {
    /// Connected, authenticated, heartbeats arriving.
    Online,
    /// Not connected, or no heartbeat within `offline_after`.
    Offline,
    /// Put in maintenance by an admin (whatever its connection).
    Maintenance,
}

/// An application's status (seed 001's `agent_register_apply.apply_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ApplicationStatus {
    /// Waiting for an admin.
    Pending,
    /// Approved: a node record exists.
    Approved,
    /// Rejected.
    Rejected,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident = $text:expr),* }) => {
        impl $ty {
            /// Lower-case name, as used on the command line and in JSON.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),* }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($ty::$variant),)*
                    other => Err(format!(
                        "unknown {} {other:?}; expected one of: {}",
                        stringify!($ty),
                        [$($text),*].join(", ")
                    )),
                }
            }
        }
    };
}

text_enum!(NodeStatus { Online = "online", Offline = "offline", Maintenance = "maintenance" });
text_enum!(ApplicationStatus { Pending = "pending", Approved = "approved", Rejected = "rejected" });

/// A node as an admin sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// Node id.
    pub id: NodeId,
    /// Hostname (from its latest facts, else from enrollment).
    pub hostname: String,
    /// Status.
    pub status: NodeStatus,
    /// Whether an authenticated connection is open right now.
    pub connected: bool,
    /// Maintenance mode.
    pub maintenance: bool,
    /// Soft-deleted.
    pub deleted: bool,
    /// Last heartbeat or connection event, unix ms.
    pub last_seen_ms: Option<i64>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// When the node was approved, unix ms.
    pub created_at_ms: i64,
    /// When the record last changed, unix ms.
    pub updated_at_ms: i64,
    /// Address core sees the connection coming from (the public address).
    pub public_addr: Option<String>,
    /// Node clock minus core clock, from the last refused or accepted timestamp, when beyond
    /// one second.
    pub clock_skew_ms: Option<i64>,
    /// Agent version.
    pub agent_version: String,
    /// Static facts, once received.
    pub static_facts: Option<StaticFacts>,
    /// Latest metrics, once received since core started.
    pub metrics: Option<Metrics>,
    /// When those metrics arrived, unix ms.
    pub metrics_at_ms: Option<i64>,
    /// Heartbeats accepted on the current connection.
    pub heartbeats_received: u64,
    /// Static facts messages received on the current connection (the node sends them only when
    /// they differ from what core holds).
    pub static_facts_received: u64,
    /// Datagrams on the current connection that did not decode.
    pub malformed_datagrams: u64,
    /// Heartbeats on the current connection refused for clock skew.
    pub skewed_heartbeats: u64,
}

/// An enrollment application as an admin sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplicationView {
    /// Application id.
    pub id: ApplicationId,
    /// The node's UUID.
    pub node_id: NodeId,
    /// Hostname the node sent.
    pub hostname: String,
    /// Status.
    pub status: ApplicationStatus,
    /// When the application arrived, unix ms.
    pub created_at_ms: i64,
    /// When an admin decided, unix ms.
    pub decided_at_ms: Option<i64>,
    /// Who decided (admin name, or `auto-approve`).
    pub decided_by: Option<String>,
    /// Rejection reason.
    pub reason: Option<String>,
    /// SHA-256 of the node's public key (DER), hex, so an admin can compare with the node's log.
    pub key_fingerprint: String,
    /// Address the application came from.
    pub remote_addr: Option<String>,
}

/// Checks one label key and value.
pub fn check_label(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > limits::MAX_LABEL_KEY_LEN {
        return Err(format!(
            "label key {key:?} must be 1 to {} characters",
            limits::MAX_LABEL_KEY_LEN
        ));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
    {
        return Err(format!(
            "label key {key:?} may only contain letters, digits, '-', '_', '.' and '/'"
        ));
    }
    if value.len() > limits::MAX_LABEL_VALUE_LEN {
        return Err(format!(
            "label value for {key:?} is longer than {} bytes",
            limits::MAX_LABEL_VALUE_LEN
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("label value for {key:?} has control characters"));
    }
    Ok(())
}

/// Parses `KEY=VALUE`.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("label {text:?} is not KEY=VALUE"))?;
    check_label(key, value)?;
    Ok((key.to_string(), value.to_string()))
}

//! What is stored. Times are unix milliseconds, passed in by the caller.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tether_wire::admin::{ApplicationStatus, NodeStatus};
use tether_wire::{ApplicationId, NodeId};

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

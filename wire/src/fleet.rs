//! The fleet at a glance and in pages: what a dashboard and a node list at 100,000 nodes ask
//! core for (`AdminRequest::Overview`, `AdminRequest::NodePage`), and the QUIC path core sees to
//! a node (`NodeView::path`).

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::admin::{NodeStatus, NodeView};

/// The most nodes one page holds.
pub const MAX_PAGE_LIMIT: u32 = 500;

/// The longest search text, bytes.
pub const MAX_SEARCH_LEN: usize = 256;

/// What a node list is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeSort {
    /// Hostname, then id.
    #[default]
    Hostname,
    /// Status (online, offline, maintenance), then hostname.
    Status,
    /// Last heartbeat or connection event.
    LastSeen,
    /// Agent version, then hostname.
    Version,
    /// When the node was approved.
    Created,
}

impl NodeSort {
    /// The name used in queries (`last_seen`).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeSort::Hostname => "hostname",
            NodeSort::Status => "status",
            NodeSort::LastSeen => "last_seen",
            NodeSort::Version => "version",
            NodeSort::Created => "created",
        }
    }
}

impl FromStr for NodeSort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "hostname" => NodeSort::Hostname,
            "status" => NodeSort::Status,
            "last_seen" => NodeSort::LastSeen,
            "version" => NodeSort::Version,
            "created" => NodeSort::Created,
            other => {
                return Err(format!(
                    "unknown sort {other:?}; expected one of: hostname, status, last_seen, \
                     version, created"
                ));
            }
        })
    }
}

/// One page of the node list: filtered, searched and sorted by core, so a browser never holds
/// the whole fleet.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeQuery {
    /// Case-insensitive text found in the hostname, the id, a label (`key=value`) or the
    /// address; empty matches every node.
    pub search: String,
    /// Only nodes in this status.
    pub status: Option<NodeStatus>,
    /// Only nodes that carry all of these labels.
    pub labels: Vec<(String, String)>,
    /// Order.
    pub sort: NodeSort,
    /// Descending instead of ascending.
    pub descending: bool,
    /// Nodes to skip.
    pub offset: u32,
    /// At most this many (1 to [`MAX_PAGE_LIMIT`]).
    pub limit: u32,
    /// Only nodes in this group or a group below it.
    pub group: Option<String>,
}

impl NodeQuery {
    /// Checks sizes.
    pub fn check(&self) -> Result<(), String> {
        if self.search.len() > MAX_SEARCH_LEN {
            return Err(format!(
                "search text is {} bytes; at most {MAX_SEARCH_LEN}",
                self.search.len()
            ));
        }
        if self.limit == 0 || self.limit > MAX_PAGE_LIMIT {
            return Err(format!(
                "page size {} is out of range: 1 to {MAX_PAGE_LIMIT}",
                self.limit
            ));
        }
        for (key, value) in &self.labels {
            crate::admin::check_label(key, value)?;
        }
        if let Some(group) = &self.group {
            crate::groups::check_name(group)?;
        }
        Ok(())
    }
}

/// One page of nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodePage {
    /// Nodes that match the query in all (not only on this page).
    pub total: u64,
    /// The query's offset.
    pub offset: u32,
    /// The query's limit.
    pub limit: u32,
    /// This page's nodes, without static facts (`ShowNode` has them).
    pub nodes: Vec<NodeView>,
}

/// Node counts by status (deleted nodes are not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatusCounts {
    /// Every node not deleted.
    pub total: u64,
    /// Online.
    pub online: u64,
    /// Offline.
    pub offline: u64,
    /// In maintenance.
    pub maintenance: u64,
}

/// How many nodes run one agent version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionCount {
    /// Agent version.
    pub version: String,
    /// Nodes.
    pub count: u64,
}

/// What happened to a node, for the dashboard's recent events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A status change (connected, silent, maintenance...).
    Status,
    /// An application was approved: the node exists from here on.
    Enrolled,
}

/// One recent event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetEvent {
    /// When, unix ms.
    pub at_ms: i64,
    /// What.
    pub kind: EventKind,
    /// The node.
    pub node_id: NodeId,
    /// Its hostname.
    pub hostname: String,
    /// The new status, for `Status` events.
    pub status: Option<NodeStatus>,
    /// Why, or who decided.
    pub detail: String,
}

/// The dashboard's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    /// Nodes by status.
    pub nodes: StatusCounts,
    /// Enrollment applications waiting for an admin.
    pub pending_applications: u64,
    /// Alerts firing now.
    pub alerts_firing: u64,
    /// Agents connected that reported their own state (seed 002's agents running).
    pub agents_running: u64,
    /// Nodes per agent version, most common first.
    pub versions: Vec<VersionCount>,
    /// Recent events, newest first.
    pub events: Vec<FleetEvent>,
}

/// The QUIC path core sees to a connected node (quinn's path statistics).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PathView {
    /// Smoothed round-trip time, milliseconds.
    pub rtt_ms: f64,
    /// Congestion window, bytes.
    pub congestion_window: u64,
    /// Packets sent on this path.
    pub sent_packets: u64,
    /// Of those, declared lost.
    pub lost_packets: u64,
    /// Bytes declared lost.
    pub lost_bytes: u64,
    /// Largest UDP payload in use, bytes.
    pub current_mtu: u16,
}

/// The shortest interval between two looks of a watch, milliseconds.
pub const MIN_WATCH_INTERVAL_MS: u32 = 500;
/// The longest, milliseconds.
pub const MAX_WATCH_INTERVAL_MS: u32 = 60_000;

/// What a live page watches (`AdminRequest::Watch`). Core answers on the request's stream with
/// the current `Overview`, `NodePage` and `Node` at once, then every `interval_ms` with those
/// that changed, until the client stops reading or the caller's session or certificate is no
/// longer valid (then an `Error` frame ends it). One audit record covers the whole watch.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WatchSpec {
    /// The dashboard's figures.
    pub overview: bool,
    /// A page of the node list.
    pub nodes: Option<NodeQuery>,
    /// One node (id, unique id prefix or hostname).
    pub node: Option<String>,
    /// How often core looks, milliseconds ([`MIN_WATCH_INTERVAL_MS`] to
    /// [`MAX_WATCH_INTERVAL_MS`]).
    pub interval_ms: u32,
}

impl WatchSpec {
    /// Checks sizes and the interval.
    pub fn check(&self) -> Result<(), String> {
        if !(MIN_WATCH_INTERVAL_MS..=MAX_WATCH_INTERVAL_MS).contains(&self.interval_ms) {
            return Err(format!(
                "watch interval {} ms is out of range: {MIN_WATCH_INTERVAL_MS} to \
                 {MAX_WATCH_INTERVAL_MS} ms",
                self.interval_ms
            ));
        }
        if let Some(query) = &self.nodes {
            query.check()?;
        }
        if let Some(node) = &self.node
            && (node.is_empty() || node.len() > MAX_SEARCH_LEN)
        {
            return Err("the watched node's name must be 1 to 256 bytes".into());
        }
        Ok(())
    }
}

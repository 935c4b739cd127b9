//! Turning stored records and live state into what admins see.

use tether_store::{ApplicationRecord, NodeDetail};
use tether_wire::admin::{ApplicationView, IdentityConflictView, NodeStatus, NodeView};
use tether_wire::fleet::PathView;

use crate::presence::Session;

/// A node's status: maintenance wins; otherwise online while connected and heartbeating.
pub(crate) fn status(maintenance: bool, session: Option<&Session>) -> NodeStatus {
    if maintenance {
        return NodeStatus::Maintenance;
    }
    match session {
        Some(session) if session.live.lock().expect("not poisoned").heartbeat_ok => {
            NodeStatus::Online
        }
        _ => NodeStatus::Offline,
    }
}

pub(crate) fn node_view(detail: NodeDetail, session: Option<&Session>) -> NodeView {
    let NodeDetail {
        record,
        facts,
        last_seen_ms,
        allowed_users,
        conflict,
        agent,
        group,
        policy,
    } = detail;
    let status = status(record.maintenance, session);
    let live = session.map(|s| s.live.lock().expect("not poisoned").clone());
    let last_seen_ms = live
        .as_ref()
        .and_then(|l| l.last_heartbeat_ms)
        .or(last_seen_ms);
    let clock_skew_ms = live
        .as_ref()
        .and_then(|l| l.clock_skew_ms)
        .or(record.clock_skew_ms);
    NodeView {
        id: record.id,
        hostname: record.hostname,
        status,
        connected: session.is_some(),
        maintenance: record.maintenance,
        deleted: record.deleted,
        last_seen_ms,
        labels: record.labels,
        allowed_users,
        created_at_ms: record.created_at_ms,
        updated_at_ms: record.updated_at_ms,
        public_addr: session
            .map(|s| s.connection.remote_address().to_string())
            .or(record.public_addr),
        clock_skew_ms,
        agent_version: record.agent_version,
        static_facts: facts,
        metrics: live.as_ref().and_then(|l| l.metrics.clone()),
        agent: live.as_ref().and_then(|l| l.agent.clone()).or(agent),
        metrics_at_ms: live.as_ref().and_then(|l| l.metrics_at_ms),
        heartbeats_received: live.as_ref().map_or(0, |l| l.heartbeats),
        static_facts_received: live.as_ref().map_or(0, |l| l.facts_received),
        malformed_datagrams: live.as_ref().map_or(0, |l| l.malformed),
        skewed_heartbeats: live.as_ref().map_or(0, |l| l.skewed),
        conflict: conflict.map(|c| IdentityConflictView {
            address: c.address,
            hostname: c.hostname,
            reason: c.reason,
            first_at_ms: c.first_at_ms,
            last_at_ms: c.last_at_ms,
            attempts: c.attempts,
        }),
        path: session.map(|s| path_view(&s.connection)),
        group,
        policy,
    }
}

/// The QUIC path core sees on a connection.
pub(crate) fn path_view(connection: &quinn::Connection) -> PathView {
    let path = connection.stats().path;
    PathView {
        rtt_ms: path.rtt.as_secs_f64() * 1000.0,
        congestion_window: path.cwnd,
        sent_packets: path.sent_packets,
        lost_packets: path.lost_packets,
        lost_bytes: path.lost_bytes,
        current_mtu: path.current_mtu,
    }
}

pub(crate) fn application_view(app: ApplicationRecord) -> ApplicationView {
    ApplicationView {
        id: app.id,
        node_id: app.node_id,
        hostname: app.hostname,
        status: app.status,
        created_at_ms: app.created_at_ms,
        decided_at_ms: app.decided_at_ms,
        decided_by: app.decided_by,
        reason: app.reason,
        key_fingerprint: app.key_fingerprint,
        remote_addr: app.remote_addr,
    }
}

/// A unix-ms time as RFC 3339 (UTC, seconds), for messages.
pub(crate) fn rfc3339(ms: i64) -> String {
    let time =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}

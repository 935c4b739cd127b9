//! The fleet at a glance (`Overview`) and in pages (`NodePage`): what a dashboard and a node
//! list of 100,000 nodes ask for. Both read node records without their facts and decide status
//! from presence, as `ListNodes` does; only a page's own nodes are read in full.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use tether_store::NodeRecord;
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminResponse, NodeStatus, NodeView};
use tether_wire::fleet::{
    EventKind, FleetEvent, NodePage, NodeQuery, NodeSort, Overview, StatusCounts, VersionCount,
};

use super::{Refusal, internal};
use crate::server::Shared;
use crate::views::{node_view, status};

/// Events the dashboard shows.
const RECENT_EVENTS: usize = 20;

/// A node that passed a page's filters: its record, last heartbeat (ms) and status.
type Found<'a> = (&'a NodeRecord, Option<i64>, NodeStatus);

/// One page of nodes as admins see them, without static facts or path.
pub(crate) fn page(shared: &Shared, query: &NodeQuery) -> Result<NodePage, Refusal> {
    query
        .check()
        .map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
    let needle = query.search.to_lowercase();
    let in_group = match &query.group {
        Some(name) => Some(super::groups::select(shared, std::slice::from_ref(name))?),
        None => None,
    };
    let records = shared.store.node_records_shared().map_err(internal)?;
    // Stored last-seen times matter only to sort by them (a page's own nodes are read whole).
    let stored = match query.sort {
        NodeSort::LastSeen => Some(shared.store.last_seen_all().map_err(internal)?),
        _ => None,
    };
    let by_last_seen = query.sort == NodeSort::LastSeen;
    let mut found: Vec<Found<'_>> = shared.presence.with_sessions(|sessions| {
        let mut found = Vec::new();
        for record in records.iter() {
            if record.deleted
                || !query
                    .labels
                    .iter()
                    .all(|(k, v)| record.labels.get(k) == Some(v))
                || in_group.as_ref().is_some_and(|g| !g.contains(&record.id))
            {
                continue;
            }
            let session = sessions.get(&record.id).map(Arc::as_ref);
            let current = status(record.maintenance, session);
            if query.status.is_some_and(|wanted| wanted != current) {
                continue;
            }
            // The address only for a search: asking quinn for it takes the connection's lock.
            if !needle.is_empty() {
                let address = session.map(|s| s.connection.remote_address().to_string());
                if !matches(record, address.as_deref(), &needle) {
                    continue;
                }
            }
            let last_seen = if by_last_seen {
                session
                    .and_then(|s| s.live.lock().expect("not poisoned").last_heartbeat_ms)
                    .or_else(|| stored.as_ref().and_then(|m| m.get(&record.id).copied()))
            } else {
                None
            };
            found.push((record, last_seen, current));
        }
        found
    });
    let order = |a: &Found<'_>, b: &Found<'_>| {
        let by_name = || a.0.hostname.cmp(&b.0.hostname).then(a.0.id.cmp(&b.0.id));
        let order = match query.sort {
            NodeSort::Hostname => Ordering::Equal,
            NodeSort::Status => rank(a.2).cmp(&rank(b.2)),
            NodeSort::LastSeen => a.1.cmp(&b.1),
            NodeSort::Version => a.0.agent_version.cmp(&b.0.agent_version),
            NodeSort::Created => a.0.created_at_ms.cmp(&b.0.created_at_ms),
        }
        .then_with(by_name);
        if query.descending {
            order.reverse()
        } else {
            order
        }
    };
    let total = found.len() as u64;
    let start = usize::try_from(query.offset).unwrap_or(usize::MAX);
    let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
    // Only the first offset + limit matter: selecting them is linear, and sorting 100,000
    // records by hostname on every look is not (the order is total: ids are unique).
    let end = start.saturating_add(limit).min(found.len());
    if end == 0 {
        found.clear();
    } else if end < found.len() {
        found.select_nth_unstable_by(end - 1, order);
        found.truncate(end);
    }
    found.sort_unstable_by(order);
    let mut nodes = Vec::new();
    for (record, _, _) in found.into_iter().skip(start).take(limit) {
        // Changed between the two reads (deleted and pruned): the page is one shorter.
        let Some(detail) = shared.store.node(record.id).map_err(internal)? else {
            continue;
        };
        let session = shared.presence.get(record.id);
        let mut view: NodeView = node_view(detail, session.as_deref());
        // A list has no use for facts or the path (whose round-trip time changes every look).
        view.static_facts = None;
        view.path = None;
        nodes.push(view);
    }
    Ok(NodePage {
        total,
        offset: query.offset,
        limit: query.limit,
        nodes,
    })
}

/// Whether a node matches a lower-cased search text: in its hostname, id, a label
/// (`key=value`) or the address it connects from.
fn matches(record: &NodeRecord, address: Option<&str>, needle: &str) -> bool {
    let has = |text: &str| text.to_lowercase().contains(needle);
    has(&record.hostname)
        || record.id.to_string().contains(needle)
        || record.labels.iter().any(|(k, v)| has(&format!("{k}={v}")))
        || address.or(record.public_addr.as_deref()).is_some_and(has)
}

/// Online first, then offline, then maintenance.
fn rank(status: NodeStatus) -> u8 {
    match status {
        NodeStatus::Online => 0,
        NodeStatus::Offline => 1,
        NodeStatus::Maintenance => 2,
    }
}

/// `NodePage`.
pub(crate) fn node_page(shared: &Shared, query: &NodeQuery) -> super::Reply {
    Ok(vec![AdminResponse::NodePage(page(shared, query)?)])
}

/// The dashboard's figures: counts by status, versions, pending applications, recent events.
pub(crate) fn overview(shared: &Shared) -> Result<Overview, Refusal> {
    let mut counts = StatusCounts::default();
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut hostnames: HashMap<tether_wire::NodeId, String> = HashMap::new();
    let events = shared
        .store
        .status_log(None, RECENT_EVENTS)
        .map_err(internal)?;
    for event in &events {
        hostnames.insert(event.node_id, String::new());
    }
    let records = shared.store.node_records_shared().map_err(internal)?;
    shared.presence.with_sessions(|sessions| {
        for record in records.iter() {
            if let Some(name) = hostnames.get_mut(&record.id) {
                name.clone_from(&record.hostname);
            }
            if record.deleted {
                continue;
            }
            counts.total += 1;
            let session = sessions.get(&record.id).map(Arc::as_ref);
            match status(record.maintenance, session) {
                NodeStatus::Online => counts.online += 1,
                NodeStatus::Offline => counts.offline += 1,
                NodeStatus::Maintenance => counts.maintenance += 1,
            }
            match versions.get_mut(&record.agent_version) {
                Some(n) => *n += 1,
                None => {
                    versions.insert(record.agent_version.clone(), 1);
                }
            }
        }
    });
    let mut versions: Vec<VersionCount> = versions
        .into_iter()
        .map(|(version, count)| VersionCount { version, count })
        .collect();
    versions.sort_by(|a, b| b.count.cmp(&a.count).then(a.version.cmp(&b.version)));
    let events = events
        .into_iter()
        .map(|event| {
            let enrolled = event.reason.starts_with("approved by");
            FleetEvent {
                at_ms: event.at_ms,
                kind: if enrolled {
                    EventKind::Enrolled
                } else {
                    EventKind::Status
                },
                node_id: event.node_id,
                hostname: hostnames.get(&event.node_id).cloned().unwrap_or_default(),
                status: (!enrolled).then_some(event.status),
                detail: event.reason,
            }
        })
        .collect();
    Ok(Overview {
        nodes: counts,
        pending_applications: shared.store.pending_count().map_err(internal)?,
        alerts_firing: shared.store.firing_count().map_err(internal)?,
        agents_running: shared.presence.with_sessions(|sessions| {
            sessions
                .values()
                .filter(|s| s.live.lock().expect("not poisoned").agent.is_some())
                .count() as u64
        }),
        versions,
        events,
    })
}

/// `Overview`.
pub(crate) fn overview_reply(shared: &Shared) -> super::Reply {
    Ok(vec![AdminResponse::Overview(overview(shared)?)])
}

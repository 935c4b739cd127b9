//! Who am I (`Ping`) and what this core process holds (`Status`).

use std::sync::atomic::Ordering;

use tether_wire::admin::{AdminResponse, CoreStatus};

use super::Reply;
use crate::server::Shared;
use crate::tty::Caller;

/// `Ping`.
pub(crate) fn ping(caller: &Caller) -> Reply {
    Ok(vec![AdminResponse::Pong {
        core_version: env!("CARGO_PKG_VERSION").to_string(),
        admin: caller.user.clone(),
        role: caller.role,
        permissions: super::roles::permissions(caller.role),
    }])
}

/// `Status`: counters since this process started (`tether status`).
pub(crate) fn status(shared: &Shared) -> Reply {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let presence = &shared.presence;
    Ok(vec![AdminResponse::Status(CoreStatus {
        core_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at_ms: shared.started_at_ms,
        connections: count(shared.endpoint.open_connections()),
        nodes_connected: count(presence.connected()),
        nodes_online: count(presence.online()),
        heartbeats_received: presence.heartbeats_total.load(Ordering::Relaxed),
        datagrams_malformed: presence.malformed_total.load(Ordering::Relaxed),
        enrollments_approved: presence.enrollments_total.load(Ordering::Relaxed),
        handshakes_deferred: shared.handshakes_deferred.load(Ordering::Relaxed),
    })])
}

//! Terminal sessions: authorization, one-time tokens, limits, and the splice between the client's
//! stream and the node's.
//!
//! Tokens are 32 random bytes, shown to the client once in URL-safe base64 and kept here only as
//! their SHA-256: a lookup by hash needs no secret comparison at all, so there is nothing for
//! timing to leak, and a memory dump of core yields no usable token. A used token's hash stays
//! until its expiry so a second presentation is told "already used" rather than "unknown".
//!
//! The policy parts ([`Grants`], [`RateLimit`], [`Occupancy`]) are plain data structures with the
//! time passed in, tested without sockets; [`Terminals`] puts them behind locks for core.

mod policy;
mod records;
mod splice;

pub(crate) use records::{find_session, kill, send_recording, view};
pub(crate) use splice::open;

use crate::auth::{new_token, token_hash};
use policy::{Grant, Grants, Occupancy, RateLimit};

use std::sync::Mutex;

use tether_store::TtySessionRecord;
use tether_wire::admin::Role;
use tether_wire::tty::{TtyAuthorize, TtyExit, TtyGrant, TtyStatus, WindowSize};
use tether_wire::{ErrorCode, TtySessionId};
use tracing::{info, warn};

use crate::admin::internal;
use crate::server::Shared;

pub(crate) type Refusal = (ErrorCode, String);

/// Core's terminal state.
#[derive(Debug, Default)]
pub(crate) struct Terminals {
    grants: Mutex<Grants>,
    rate: Mutex<RateLimit>,
    occupancy: Mutex<Occupancy>,
}

impl Terminals {
    fn release(&self, session_id: TtySessionId) {
        self.occupancy
            .lock()
            .expect("not poisoned")
            .live
            .remove(&session_id);
    }

    /// Tells a live session's splice to end, naming who ended it; whether it was live here.
    fn signal_kill(&self, session_id: TtySessionId, by: &str) -> bool {
        let occupancy = self.occupancy.lock().expect("not poisoned");
        let Some(live) = occupancy.live.get(&session_id) else {
            return false;
        };
        *live.killed_by.lock().expect("not poisoned") = Some(by.to_string());
        live.kill.cancel();
        true
    }

    /// Sessions pending or connected now (their recordings are being written).
    pub fn live_sessions(&self) -> std::collections::HashSet<TtySessionId> {
        self.occupancy
            .lock()
            .expect("not poisoned")
            .live
            .keys()
            .copied()
            .collect()
    }

    /// Ends sessions whose token expired unused, and forgets old rate-limit entries.
    pub async fn sweep(&self, shared: &Shared) {
        let now_ms = shared.now_ms();
        let expired = self.grants.lock().expect("not poisoned").sweep(now_ms);
        self.rate.lock().expect("not poisoned").sweep(now_ms);
        for session_id in expired {
            self.release(session_id);
            end_record(
                shared,
                session_id,
                TtyStatus::Error,
                "the token expired before it was used".into(),
                None,
                None,
            )
            .await;
        }
    }
}

pub(crate) use crate::auth::Caller;

/// Ends every live terminal session of `user` (disabled, deleted, or no longer allowed
/// terminals); how many. Each session's record says why.
pub(crate) async fn end_user_sessions(shared: &Shared, user: &str, reason: &str) -> usize {
    let live: Vec<TtySessionId> = {
        let occupancy = shared.terminals.occupancy.lock().expect("not poisoned");
        occupancy
            .live
            .iter()
            .filter(|(_, live)| live.user == user)
            .map(|(id, _)| *id)
            .collect()
    };
    for id in &live {
        shared.terminals.signal_kill(*id, reason);
        // Sessions not spliced yet (token not used) end here; spliced ones end in their splice.
        let unspliced = shared
            .store
            .tty_session(*id)
            .ok()
            .flatten()
            .is_some_and(|record| record.status == TtyStatus::Pending);
        if unspliced {
            end_unspliced(shared, *id, reason).await;
        }
    }
    live.len()
}

/// Ends a session no splice serves (pending, or left over): its record says who ended it, and
/// its token can no longer be used.
pub(crate) async fn end_unspliced(shared: &Shared, session_id: TtySessionId, by: &str) {
    shared.terminals.release(session_id);
    shared
        .terminals
        .grants
        .lock()
        .expect("not poisoned")
        .revoke(session_id);
    end_record(
        shared,
        session_id,
        TtyStatus::Error,
        format!("the session was ended by {by}"),
        None,
        None,
    )
    .await;
}

/// Step one: checks everything, reserves a place, records the session `pending`, and issues the
/// token.
pub(crate) async fn authorize(
    shared: &Shared,
    caller: &Caller,
    request: TtyAuthorize,
) -> Result<TtyGrant, Refusal> {
    if caller.role != Role::Admin && caller.role != Role::Operator {
        return Err((
            ErrorCode::PERMISSION_DENIED,
            format!(
                "user {} is {} {}; terminals need the operator or admin role",
                caller.user,
                if caller.role == Role::Admin || caller.role == Role::Operator {
                    "an"
                } else {
                    "a"
                },
                caller.role
            ),
        ));
    }
    request
        .check()
        .map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
    let now_ms = shared.now_ms();
    if let Err(wait_ms) = shared.terminals.rate.lock().expect("not poisoned").check(
        &caller.user,
        now_ms,
        shared.config.tty_authorize_per_minute,
    ) {
        return Err((
            ErrorCode::RATE_LIMITED,
            format!(
                "user {} asked for {} terminals within a minute, the most allowed \
                 (tty_authorize_per_minute); try again in {} s",
                caller.user,
                shared.config.tty_authorize_per_minute,
                (wait_ms + 999) / 1000
            ),
        ));
    }
    let node_id = crate::admin::resolve::node(shared, &request.node)?;
    let detail = shared
        .store
        .node(node_id)
        .map_err(internal)?
        .filter(|d| !d.record.deleted)
        .ok_or_else(|| {
            (
                ErrorCode::NOT_FOUND,
                format!("node {node_id} does not exist"),
            )
        })?;
    let hostname = detail.record.hostname.clone();
    if detail.record.maintenance {
        return Err((
            ErrorCode::NODE_UNAVAILABLE,
            format!("node {hostname} ({node_id}) is in maintenance"),
        ));
    }
    let online = shared
        .presence
        .get(node_id)
        .is_some_and(|s| s.live.lock().expect("not poisoned").heartbeat_ok);
    if !online {
        return Err((
            ErrorCode::NODE_UNAVAILABLE,
            format!("node {hostname} ({node_id}) is offline"),
        ));
    }
    if caller.role != Role::Admin && !detail.allowed_users.contains(&caller.user) {
        return Err((
            ErrorCode::PERMISSION_DENIED,
            format!(
                "user {} is not allowed on node {hostname}; an admin can run \
                 `tether node allow {node_id} {}`",
                caller.user, caller.user
            ),
        ));
    }
    let recorded = shared
        .config
        .tty_recording
        .decide(request.record)
        .map_err(|m| (ErrorCode::PERMISSION_DENIED, m))?;

    let session_id = TtySessionId::random();
    shared
        .terminals
        .occupancy
        .lock()
        .expect("not poisoned")
        .reserve(
            session_id,
            node_id,
            &caller.user,
            shared.config.tty_max_per_node,
            shared.config.tty_max_per_user,
        )?;
    let shown_command = request
        .command
        .clone()
        .unwrap_or_else(|| "login shell".to_string());
    let record = TtySessionRecord {
        id: session_id,
        node_id,
        hostname: hostname.clone(),
        user: caller.user.clone(),
        status: TtyStatus::Pending,
        command: shown_command.clone(),
        size: request.size,
        created_at_ms: now_ms,
        connected_at_ms: None,
        closed_at_ms: None,
        client_addr: Some(caller.addr.to_string()),
        node_addr: None,
        recording: None,
        recording_note: None,
        error: None,
        exit: None,
        output_bytes: 0,
        input_bytes: 0,
    };
    if let Err(e) = shared.store.create_tty_session(record).await {
        shared.terminals.release(session_id);
        return Err(internal(e));
    }
    let ttl_ms = i64::try_from(shared.config.tty_token_ttl.as_millis()).unwrap_or(i64::MAX);
    let expires_at_ms = now_ms.saturating_add(ttl_ms);
    let token = new_token();
    shared
        .terminals
        .grants
        .lock()
        .expect("not poisoned")
        .insert(
            token_hash(&token),
            Grant {
                session_id,
                user: caller.user.clone(),
                node_id,
                hostname: hostname.clone(),
                command: request.command,
                shown_command: shown_command.clone(),
                size: request.size,
                term: request.term.unwrap_or_else(|| "xterm-256color".into()),
                recorded,
                expires_at_ms,
            },
        );
    info!(%session_id, %node_id, user = %caller.user, recorded, "terminal authorized");
    shared.telemetry.terminal_sessions.inc();
    Ok(TtyGrant {
        session_id,
        token,
        expires_at_ms,
        node_id,
        hostname,
        command: shown_command,
        recorded,
    })
}

/// What a spliced session counted, kept on its record when it ends.
#[derive(Debug, Clone)]
struct Tally {
    input_bytes: u64,
    output_bytes: u64,
    size: WindowSize,
    /// How the recording ended, if the session was recorded.
    recording: Option<crate::recording::Outcome>,
}

/// Ends a session's record (if still live) with `status` and `error`, and what the splice
/// counted, in one write.
async fn end_record(
    shared: &Shared,
    session_id: TtySessionId,
    status: TtyStatus,
    error: String,
    exit: Option<TtyExit>,
    tally: Option<Tally>,
) {
    let now_ms = shared.now_ms();
    let result = shared
        .store
        .update_tty_session(session_id, move |r| {
            r.status = status;
            r.closed_at_ms = Some(now_ms);
            if status == TtyStatus::Error {
                r.error = Some(error);
            }
            r.exit = exit;
            if let Some(tally) = tally {
                r.input_bytes = tally.input_bytes;
                r.output_bytes = tally.output_bytes;
                r.size = tally.size;
                if let Some(note) = tally.recording.as_ref().and_then(|o| o.note()) {
                    r.recording_note = Some(note);
                }
            }
        })
        .await;
    if let Err(e) = result {
        warn!(%session_id, error = %e, "recording the end of a terminal session failed");
    }
}

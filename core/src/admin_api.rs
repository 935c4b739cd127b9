//! The admin API over QUIC: one request per bidirectional stream, answered with one or more
//! frames. Every connection must present an admin certificate issued by core's CA; its common name
//! is the admin's name in logs and records.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use quinn::{Connection, RecvStream, SendStream};
use rustls::pki_types::CertificateDer;
use tether_store::{AccessChange, Decision, DecisionOutcome, Resolved, StoreError};
use tether_wire::admin::{
    AdminRequest, AdminResponse, CoreStatus, Role, check_label, check_user_name,
};
use tether_wire::limits::{
    ADMIN_LIST_CHUNK, MAX_ADMIN_FRAME_LEN, MAX_ALLOWED_USERS, MAX_LABELS, MAX_REASON_LEN,
    MAX_TTY_FRAME_LEN,
};
use tether_wire::stream::{FramedRecv, FramedSend};
use tether_wire::{ApplicationId, ErrorCode, NodeId};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::node_conn::close;
use crate::presence::{Notice, SessionCommand};
use crate::server::Shared;
use crate::tty::Caller;
use crate::views::{application_view, node_view, status};

type Reply = Result<Vec<AdminResponse>, (ErrorCode, String)>;

/// Serves one admin connection.
pub(crate) async fn serve(shared: Arc<Shared>, connection: Connection) {
    let identity = connection
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|chain| {
            chain
                .first()
                .and_then(|cert| tether_certs::ca::user_identity(cert))
        });
    let Some((admin, role)) = identity else {
        warn!("admin connection without a user certificate core understands");
        close(
            &connection,
            ErrorCode::FORBIDDEN,
            "a user certificate issued by this core, with a known role, is required",
        );
        return;
    };
    debug!(%admin, %role, "user connected");
    loop {
        let (send, recv) = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            stream = connection.accept_bi() => match stream {
                Ok(pair) => pair,
                Err(_) => return,
            },
        };
        let shared = shared.clone();
        let span = info_span!("admin", %admin);
        let caller = Caller {
            user: admin.clone(),
            role,
            addr: connection.remote_address(),
        };
        tokio::spawn(
            async move { handle_stream(&shared, caller, send, recv).await }.instrument(span),
        );
    }
}

/// What each role may ask (seed 002 §6.1.2): viewers read; operators also edit nodes, run
/// commands and open terminals (where allowed); admins also decide enrollments, delete nodes and
/// grant access. Finer checks (whose session, which node) happen in the handlers.
pub(crate) fn permit(role: Role, request: &AdminRequest) -> Result<(), (ErrorCode, String)> {
    let needed = match request {
        AdminRequest::Ping
        | AdminRequest::Status
        | AdminRequest::ListApplications { .. }
        | AdminRequest::ListNodes { .. }
        | AdminRequest::ShowNode { .. }
        | AdminRequest::ExecHistory { .. }
        | AdminRequest::ShowExec { .. }
        | AdminRequest::ListTty { .. }
        | AdminRequest::TtyRecording { .. } => Role::Viewer,
        AdminRequest::LabelNode { .. }
        | AdminRequest::SetMaintenance { .. }
        | AdminRequest::Exec(_)
        | AdminRequest::CancelExec
        | AdminRequest::AuthorizeTty(_)
        | AdminRequest::OpenTty { .. }
        | AdminRequest::KillTty { .. } => Role::Operator,
        _ => Role::Admin,
    };
    if role >= needed {
        Ok(())
    } else {
        Err((
            ErrorCode::PERMISSION_DENIED,
            format!("this needs the {needed} role; you are {}", article(role)),
        ))
    }
}

fn article(role: Role) -> String {
    match role {
        Role::Admin | Role::Operator => format!("an {role}"),
        Role::Viewer => format!("a {role}"),
    }
}

async fn handle_stream(shared: &Arc<Shared>, caller: Caller, send: SendStream, recv: RecvStream) {
    let admin = caller.user.as_str();
    let mut recv = FramedRecv::new(recv, MAX_ADMIN_FRAME_LEN);
    let mut send = FramedSend::new(send, MAX_ADMIN_FRAME_LEN);
    let request = recv.next::<AdminRequest>().await;
    if let Ok(Some(request)) = &request
        && let Err((code, message)) = permit(caller.role, request)
    {
        warn!(role = %caller.role, "refused: {message}");
        let _ = send.send(&AdminResponse::Error { code, message }).await;
        send.finish();
        return;
    }
    let reply = match request {
        Ok(Some(AdminRequest::OpenTty { token })) => {
            // The stream becomes the terminal's: terminal frames both ways from here.
            send.set_max_len(MAX_TTY_FRAME_LEN);
            recv.set_max_len(MAX_TTY_FRAME_LEN);
            crate::tty::open(shared.clone(), caller, token, send, recv).await;
            return;
        }
        Ok(Some(AdminRequest::TtyRecording { id })) => {
            if let Err((code, message)) =
                crate::tty::send_recording(shared, &caller, &id, &mut send).await
            {
                let _ = send.send(&AdminResponse::Error { code, message }).await;
            }
            send.finish();
            return;
        }
        Ok(Some(AdminRequest::Exec(spec))) => {
            // An execution streams its answers and listens for a cancel: it takes the stream.
            crate::exec::serve(shared.clone(), admin.to_string(), spec, send, recv).await;
            return;
        }
        Ok(Some(AdminRequest::ShowExec { id })) => {
            // Output of many nodes: streamed in frames as it is read, never all in memory.
            if let Err((code, message)) = crate::exec::show(shared, &id, &mut send).await {
                let _ = send.send(&AdminResponse::Error { code, message }).await;
            }
            send.finish();
            return;
        }
        Ok(Some(request)) => handle(shared, &caller, request).await,
        Ok(None) => return,
        Err(e) => Err((
            e.protocol_code().unwrap_or(ErrorCode::MALFORMED),
            format!("bad request: {e}"),
        )),
    };
    let responses =
        reply.unwrap_or_else(|(code, message)| vec![AdminResponse::Error { code, message }]);
    for response in &responses {
        if let Err(e) = send.send(response).await {
            debug!(error = %e, "admin went away mid-answer");
            return;
        }
    }
    send.finish();
}

pub(crate) fn internal(e: StoreError) -> (ErrorCode, String) {
    warn!(error = %e, "store failure while serving an admin");
    (ErrorCode::INTERNAL, format!("core's database failed: {e}"))
}

pub(crate) fn resolve<T: std::fmt::Display>(
    kind: &str,
    text: &str,
    resolved: Resolved<T>,
) -> Result<T, (ErrorCode, String)> {
    match resolved {
        Resolved::One(id) => Ok(id),
        Resolved::NotFound => Err((ErrorCode::NOT_FOUND, format!("no {kind} matches {text:?}"))),
        Resolved::Ambiguous(ids) => Err((
            ErrorCode::AMBIGUOUS,
            format!(
                "{text:?} matches several {kind}s ({}); give more of the id",
                ids.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        Resolved::Invalid(message) => Err((ErrorCode::INVALID_ARGUMENT, message)),
    }
}

fn resolve_node(shared: &Shared, text: &str) -> Result<NodeId, (ErrorCode, String)> {
    resolve(
        "node",
        text,
        shared.store.resolve_node(text).map_err(internal)?,
    )
}

fn resolve_application(shared: &Shared, text: &str) -> Result<ApplicationId, (ErrorCode, String)> {
    resolve(
        "application",
        text,
        shared.store.resolve_application(text).map_err(internal)?,
    )
}

fn show_node(shared: &Shared, id: NodeId) -> Reply {
    let detail = shared
        .store
        .node(id)
        .map_err(internal)?
        .ok_or_else(|| (ErrorCode::NOT_FOUND, format!("node {id} does not exist")))?;
    let session = shared.presence.get(id);
    Ok(vec![AdminResponse::Node(node_view(
        detail,
        session.as_deref(),
    ))])
}

async fn handle(shared: &Shared, caller: &Caller, request: AdminRequest) -> Reply {
    let admin = caller.user.as_str();
    match request {
        AdminRequest::Ping => Ok(vec![AdminResponse::Pong {
            core_version: env!("CARGO_PKG_VERSION").to_string(),
            admin: admin.to_string(),
            role: caller.role,
        }]),
        AdminRequest::Status => Ok(vec![AdminResponse::Status(core_status(shared))]),
        AdminRequest::AuthorizeTty(request) => {
            let grant = crate::tty::authorize(shared, caller, request).await?;
            Ok(vec![AdminResponse::TtyGrant(grant)])
        }
        AdminRequest::ListTty {
            active,
            node,
            limit,
        } => {
            let node = node
                .map(|text| crate::tty::find_node(shared, &text))
                .transpose()?;
            let limit = usize::try_from(limit.clamp(1, 10_000)).unwrap_or(100);
            let records = shared
                .store
                .tty_sessions(node, active, limit)
                .map_err(internal)?;
            Ok(chunks(
                records.into_iter().map(crate::tty::view).collect(),
                AdminResponse::TtySessions,
            ))
        }
        AdminRequest::KillTty { id } => {
            let view = crate::tty::kill(shared, caller, &id).await?;
            Ok(vec![AdminResponse::TtySession(view)])
        }
        AdminRequest::SetAllowedUsers { id, add, remove } => {
            let id = resolve_node(shared, &id)?;
            if add.is_empty() && remove.is_empty() {
                return Err((
                    ErrorCode::INVALID_ARGUMENT,
                    "give at least one user to allow or disallow".into(),
                ));
            }
            for user in add.iter().chain(&remove) {
                check_user_name(user).map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
            }
            let (added, removed) = (add.clone(), remove.clone());
            match shared
                .store
                .change_allowed_users(id, add, remove, MAX_ALLOWED_USERS)
                .await
                .map_err(internal)?
            {
                AccessChange::Updated(users) => {
                    info!(node_id = %id, ?added, ?removed, now = ?users, "allowed users changed");
                    show_node(shared, id)
                }
                AccessChange::TooMany => Err((
                    ErrorCode::INVALID_ARGUMENT,
                    format!("a node may allow at most {MAX_ALLOWED_USERS} users"),
                )),
                _ => Err((ErrorCode::NOT_FOUND, format!("node {id} does not exist"))),
            }
        }
        AdminRequest::OpenTty { .. } | AdminRequest::TtyRecording { .. } => Err((
            ErrorCode::UNEXPECTED_MESSAGE,
            "this request takes a stream of its own".into(),
        )),
        AdminRequest::ListApplications { status } => {
            let apps = shared.store.applications(status).map_err(internal)?;
            let views: Vec<_> = apps.into_iter().map(application_view).collect();
            Ok(chunks(views, AdminResponse::Applications))
        }
        AdminRequest::ApproveApplication { id } => {
            let id = resolve_application(shared, &id)?;
            let mut secret = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
            let decision = Decision::Approve {
                by: admin.to_string(),
                secret,
                now_ms: shared.now_ms(),
            };
            match shared
                .store
                .decide_application(id, decision)
                .await
                .map_err(internal)?
            {
                DecisionOutcome::Approved {
                    application,
                    secret,
                    ..
                } => {
                    let pushed = shared
                        .presence
                        .notify(application.node_id, Notice::Approved { secret });
                    info!(application = %id, node_id = %application.node_id, pushed, "approved");
                    Ok(vec![AdminResponse::Application(application_view(
                        application,
                    ))])
                }
                DecisionOutcome::Conflict(application) => Err((
                    ErrorCode::CONFLICT,
                    format!("application {id} is already {}", application.status),
                )),
                _ => Err((
                    ErrorCode::NOT_FOUND,
                    format!("application {id} does not exist"),
                )),
            }
        }
        AdminRequest::RejectApplication { id, reason } => {
            if reason.len() > MAX_REASON_LEN {
                return Err((
                    ErrorCode::INVALID_ARGUMENT,
                    format!("the reason is longer than {MAX_REASON_LEN} bytes"),
                ));
            }
            let id = resolve_application(shared, &id)?;
            let decision = Decision::Reject {
                by: admin.to_string(),
                reason: reason.clone(),
                now_ms: shared.now_ms(),
            };
            match shared
                .store
                .decide_application(id, decision)
                .await
                .map_err(internal)?
            {
                DecisionOutcome::Rejected(application) => {
                    let pushed = shared
                        .presence
                        .notify(application.node_id, Notice::Rejected { reason });
                    info!(application = %id, node_id = %application.node_id, pushed, "rejected");
                    Ok(vec![AdminResponse::Application(application_view(
                        application,
                    ))])
                }
                DecisionOutcome::Conflict(application) => Err((
                    ErrorCode::CONFLICT,
                    format!(
                        "application {id} is already {}; to remove an approved node use `tether node delete`",
                        application.status
                    ),
                )),
                _ => Err((
                    ErrorCode::NOT_FOUND,
                    format!("application {id} does not exist"),
                )),
            }
        }
        AdminRequest::ListNodes {
            status: wanted,
            labels,
            include_deleted,
        } => {
            for (key, value) in &labels {
                check_label(key, value).map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
            }
            let nodes = shared.store.nodes().map_err(internal)?;
            let views: Vec<_> = nodes
                .into_iter()
                .filter(|d| include_deleted || !d.record.deleted)
                .filter(|d| {
                    labels
                        .iter()
                        .all(|(k, v)| d.record.labels.get(k) == Some(v))
                })
                .filter_map(|d| {
                    let session = shared.presence.get(d.record.id);
                    let current = status(d.record.maintenance, session.as_deref());
                    wanted
                        .is_none_or(|w| w == current)
                        .then(|| node_view(d, session.as_deref()))
                })
                .collect();
            Ok(chunks(views, AdminResponse::Nodes))
        }
        AdminRequest::ShowNode { id } => {
            let id = resolve_node(shared, &id)?;
            show_node(shared, id)
        }
        AdminRequest::LabelNode { id, set, remove } => {
            let id = resolve_node(shared, &id)?;
            for (key, value) in &set {
                check_label(key, value).map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
            }
            for key in &remove {
                check_label(key, "").map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
            }
            if set.is_empty() && remove.is_empty() {
                return Err((
                    ErrorCode::INVALID_ARGUMENT,
                    "give labels to set (KEY=VALUE) or --remove KEY".into(),
                ));
            }
            let too_many = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = too_many.clone();
            let (set_log, remove_log) = (set.clone(), remove.clone());
            let updated = shared
                .store
                .update_node(id, shared.now_ms(), move |node| {
                    let mut labels = node.labels.clone();
                    for key in &remove {
                        labels.remove(key);
                    }
                    labels.extend(set);
                    if labels.len() > MAX_LABELS {
                        flag.store(true, std::sync::atomic::Ordering::Relaxed);
                        return false;
                    }
                    let changed = labels != node.labels;
                    node.labels = labels;
                    changed
                })
                .await
                .map_err(internal)?;
            if too_many.load(std::sync::atomic::Ordering::Relaxed) {
                return Err((
                    ErrorCode::INVALID_ARGUMENT,
                    format!("a node may carry at most {MAX_LABELS} labels"),
                ));
            }
            if updated.is_none() {
                return Err((ErrorCode::NOT_FOUND, format!("node {id} does not exist")));
            }
            info!(node_id = %id, set = ?set_log, remove = ?remove_log, "labels changed");
            show_node(shared, id)
        }
        AdminRequest::SetMaintenance { id, on } => {
            let id = resolve_node(shared, &id)?;
            let updated = shared
                .store
                .update_node(id, shared.now_ms(), move |node| {
                    let changed = node.maintenance != on;
                    node.maintenance = on;
                    changed
                })
                .await
                .map_err(internal)?;
            if updated.is_none() {
                return Err((ErrorCode::NOT_FOUND, format!("node {id} does not exist")));
            }
            info!(node_id = %id, on, "maintenance");
            show_node(shared, id)
        }
        AdminRequest::DeleteNode { id } => {
            let id = resolve_node(shared, &id)?;
            let deleted = shared
                .store
                .delete_node(id, admin.to_string(), shared.now_ms())
                .await
                .map_err(internal)?;
            if deleted.is_none() {
                return Err((ErrorCode::NOT_FOUND, format!("node {id} does not exist")));
            }
            if let Some(session) = shared.presence.get(id) {
                let reason = format!("deleted by admin {admin}");
                if session
                    .commands
                    .send(SessionCommand::Remove { reason })
                    .await
                    .is_err()
                {
                    close(
                        &session.connection,
                        ErrorCode::NODE_REMOVED,
                        "this node was deleted",
                    );
                }
            }
            info!(node_id = %id, "node deleted");
            show_node(shared, id)
        }
        AdminRequest::ExecHistory { node, limit } => {
            let node = node.map(|text| resolve_node(shared, &text)).transpose()?;
            let limit = usize::try_from(limit.clamp(1, 10_000)).unwrap_or(100);
            let records = shared.store.executions(node, limit).map_err(internal)?;
            Ok(chunks(
                records
                    .into_iter()
                    .map(crate::exec::execution_view)
                    .collect(),
                AdminResponse::Executions,
            ))
        }
        AdminRequest::CancelExec => Err((
            ErrorCode::UNEXPECTED_MESSAGE,
            "CancelExec belongs on the stream of a running Exec".into(),
        )),
        _ => Err((
            ErrorCode::UNSUPPORTED,
            "this core does not know that request".into(),
        )),
    }
}

/// What this process holds now (`tether status`).
fn core_status(shared: &Shared) -> CoreStatus {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let presence = &shared.presence;
    CoreStatus {
        core_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at_ms: shared.started_at_ms,
        connections: count(shared.endpoint.open_connections()),
        nodes_connected: count(presence.connected()),
        nodes_online: count(presence.online()),
        heartbeats_received: presence.heartbeats_total.load(Ordering::Relaxed),
        datagrams_malformed: presence.malformed_total.load(Ordering::Relaxed),
        enrollments_approved: presence.enrollments_total.load(Ordering::Relaxed),
        handshakes_deferred: shared.handshakes_deferred.load(Ordering::Relaxed),
    }
}

/// Splits a list into frames of at most [`ADMIN_LIST_CHUNK`] items; an empty list is one empty
/// frame, so the client always gets an answer.
fn chunks<T>(items: Vec<T>, wrap: fn(Vec<T>) -> AdminResponse) -> Vec<AdminResponse> {
    if items.is_empty() {
        return vec![wrap(Vec::new())];
    }
    let mut out = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        out.push(wrap(items.by_ref().take(ADMIN_LIST_CHUNK).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_may_read_the_status_and_only_admins_decide_enrollments() {
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            assert!(permit(role, &AdminRequest::Status).is_ok(), "{role}");
        }
        let approve = AdminRequest::ApproveApplication { id: "x".into() };
        assert!(permit(Role::Viewer, &approve).is_err());
        assert!(permit(Role::Admin, &approve).is_ok());
    }
}

//! The admin API over QUIC: one request per bidirectional stream, answered with one or more
//! frames. Every connection must present an admin certificate issued by core's CA; its common name
//! is the admin's name in logs and records.
//!
//! Layout (as mini-redis's `cmd/`): this module accepts streams, checks the role table
//! ([`roles`]) before anything else, and routes each request to the module of its resource
//! ([`enroll`], [`nodes`], [`history`], [`status`], [`backup`]); requests that take their
//! stream over (commands, terminals, recordings, stored output) go to `crate::exec` and
//! `crate::tty`.
//! [`resolve`] names things: nodes by id, id prefix or hostname, the same for every request.

mod backup;
mod enroll;
mod history;
mod nodes;
pub(crate) mod resolve;
mod roles;
mod status;

use std::sync::Arc;

use quinn::{Connection, RecvStream, SendStream};
use rustls::pki_types::CertificateDer;
use tether_store::StoreError;
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::limits::{ADMIN_LIST_CHUNK, MAX_ADMIN_FRAME_LEN, MAX_TTY_FRAME_LEN};
use tether_wire::stream::{FramedRecv, FramedSend};
use tracing::{Instrument, debug, info_span, warn};

use crate::node_conn::close;
use crate::server::Shared;
use crate::tty::Caller;

pub(crate) use backup::COPY_PREFIX as BACKUP_COPY_PREFIX;
pub(crate) use resolve::resolve;

/// Why a request is refused: a code and a sentence for the admin.
pub(crate) type Refusal = (ErrorCode, String);
/// Frames answering a request, or its refusal.
pub(crate) type Reply = Result<Vec<AdminResponse>, Refusal>;

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

async fn handle_stream(shared: &Arc<Shared>, caller: Caller, send: SendStream, recv: RecvStream) {
    let admin = caller.user.as_str();
    let mut recv = FramedRecv::new(recv, MAX_ADMIN_FRAME_LEN);
    let mut send = FramedSend::new(send, MAX_ADMIN_FRAME_LEN);
    let request = recv.next::<AdminRequest>().await;
    if let Ok(Some(request)) = &request
        && let Err((code, message)) = roles::permit(caller.role, request)
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
        Ok(Some(AdminRequest::Backup { recordings })) => {
            // The archive is streamed as it is made: it takes the stream.
            if let Err((code, message)) =
                backup::serve(shared, &caller, recordings, &mut send).await
            {
                let _ = send.send(&AdminResponse::Error { code, message }).await;
            }
            send.finish();
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

pub(crate) fn internal(e: StoreError) -> Refusal {
    warn!(error = %e, "store failure while serving an admin");
    (ErrorCode::INTERNAL, format!("core's database failed: {e}"))
}

/// Routes a request that is answered with frames to its resource's module.
async fn handle(shared: &Shared, caller: &Caller, request: AdminRequest) -> Reply {
    let admin = caller.user.as_str();
    match request {
        AdminRequest::Ping => status::ping(caller),
        AdminRequest::Status => status::status(shared),
        AdminRequest::ListApplications { status } => enroll::list(shared, status),
        AdminRequest::ApproveApplication { id } => enroll::approve(shared, admin, &id).await,
        AdminRequest::RejectApplication { id, reason } => {
            enroll::reject(shared, admin, &id, reason).await
        }
        AdminRequest::ListNodes {
            status,
            labels,
            include_deleted,
        } => nodes::list(shared, status, &labels, include_deleted),
        AdminRequest::ShowNode { id } => nodes::show(shared, &id),
        AdminRequest::LabelNode { id, set, remove } => nodes::label(shared, &id, set, remove).await,
        AdminRequest::SetMaintenance { id, on } => nodes::maintenance(shared, &id, on).await,
        AdminRequest::DeleteNode { id } => nodes::delete(shared, admin, &id).await,
        AdminRequest::SetAllowedUsers { id, add, remove } => {
            nodes::allowed_users(shared, &id, add, remove).await
        }
        AdminRequest::ExecHistory { node, limit } => history::executions(shared, node, limit),
        AdminRequest::ListTty {
            active,
            node,
            limit,
        } => history::terminals(shared, active, node, limit),
        AdminRequest::KillTty { id } => history::kill_terminal(shared, caller, &id).await,
        AdminRequest::AuthorizeTty(request) => {
            let grant = crate::tty::authorize(shared, caller, request).await?;
            Ok(vec![AdminResponse::TtyGrant(grant)])
        }
        AdminRequest::OpenTty { .. }
        | AdminRequest::TtyRecording { .. }
        | AdminRequest::Exec(_)
        | AdminRequest::ShowExec { .. }
        | AdminRequest::Backup { .. } => Err((
            ErrorCode::UNEXPECTED_MESSAGE,
            "this request takes a stream of its own".into(),
        )),
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

/// Splits a list into frames of at most [`ADMIN_LIST_CHUNK`] items; an empty list is one empty
/// frame, so the client always gets an answer.
pub(crate) fn chunks<T>(items: Vec<T>, wrap: fn(Vec<T>) -> AdminResponse) -> Vec<AdminResponse> {
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

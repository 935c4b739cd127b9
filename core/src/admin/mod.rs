//! The admin API over QUIC: one request per bidirectional stream, answered with one or more
//! frames. Every connection must present a user certificate issued by core's CA and registered
//! with it (see [`crate::auth`]).
//!
//! Layout (as mini-redis's `cmd/`): this module accepts streams and, for every request, in this
//! order: finds out who asks now (certificate, user record, or a session through the bridge),
//! checks the role table ([`roles`]), routes the request to the module of its resource
//! ([`enroll`], [`nodes`], [`history`], [`status`], [`backup`], [`users`], [`login`],
//! [`audit`], [`tasks`]), and writes the request's audit record ([`audit`]). Requests that take their
//! stream over (commands, terminals, recordings, stored output) go to `crate::exec` and
//! `crate::tty`. [`resolve`] names things: nodes by id, id prefix or hostname, the same for
//! every request.

mod alerts;
pub(crate) mod audit;
mod backup;
mod deploys;
mod enroll;
mod fleet;
pub(crate) mod groups;
mod history;
mod login;
mod metrics;
mod nodes;
mod releases;
pub(crate) mod resolve;
pub(crate) mod roles;
mod status;
mod tasks;
mod users;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::{Connection, RecvStream, SendStream};
use tether_certs::ca::UserCertInfo;
use tether_store::StoreError;
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::limits::{ADMIN_LIST_CHUNK, MAX_ADMIN_FRAME_LEN, MAX_TTY_FRAME_LEN};
use tether_wire::stream::{FramedRecv, FramedSend};
use tether_wire::users::ClientInfo;
use tracing::{Instrument, debug, info_span, warn};

use crate::auth::{Caller, check_cert, check_session, clean_client, peer_cert};
use crate::node_conn::close;
use crate::server::Shared;

pub(crate) use audit::{Outcome, Pending};
pub(crate) use backup::COPY_PREFIX as BACKUP_COPY_PREFIX;
pub(crate) use resolve::resolve;

/// Why a request is refused: a code and a sentence for the admin.
pub(crate) type Refusal = (ErrorCode, String);
/// Frames answering a request, or its refusal.
pub(crate) type Reply = Result<Vec<AdminResponse>, Refusal>;

/// The caller as known before the user record is read (for the records of refusals).
fn unchecked(cert: &UserCertInfo, addr: SocketAddr) -> Caller {
    Caller {
        user: cert.user.clone(),
        role: cert.role.unwrap_or(tether_wire::admin::Role::Viewer),
        addr,
        serial: Some(cert.serial.clone()),
        client: ClientInfo::default(),
        bridge: None,
        session: None,
    }
}

/// Serves one admin connection.
pub(crate) async fn serve(shared: Arc<Shared>, connection: Connection) {
    let addr = connection.remote_address();
    let Some(cert) = peer_cert(&connection) else {
        warn!("admin connection without a user certificate core understands");
        close(
            &connection,
            ErrorCode::FORBIDDEN,
            "a user certificate issued by this core, with a known role, is required",
        );
        return;
    };
    let user = match check_cert(&shared, &cert) {
        Ok(user) => user,
        Err(refusal) => {
            warn!(user = %cert.user, serial = %cert.serial, "connection refused: {}", refusal.1);
            audit::record(
                &shared,
                &unchecked(&cert, addr),
                &AdminRequest::Ping,
                Outcome::Denied(&refusal),
            )
            .await;
            close(&connection, refusal.0, &refusal.1);
            return;
        }
    };
    debug!(user = %user.name, role = %user.role, "user connected");
    let _registered =
        shared
            .admin_connections
            .register(&cert.user, &cert.serial, connection.clone());
    loop {
        let (send, recv) = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            stream = connection.accept_bi() => match stream {
                Ok(pair) => pair,
                Err(_) => return,
            },
        };
        let shared = shared.clone();
        let span = info_span!("admin", user = %cert.user);
        let cert = cert.clone();
        let connection = connection.clone();
        tokio::spawn(
            async move { handle_stream(&shared, &connection, cert, send, recv).await }
                .instrument(span),
        );
    }
}

async fn refuse(send: &mut FramedSend, (code, message): Refusal) {
    let _ = send.send(&AdminResponse::Error { code, message }).await;
    send.finish();
}

async fn handle_stream(
    shared: &Arc<Shared>,
    connection: &Connection,
    cert: UserCertInfo,
    send: SendStream,
    recv: RecvStream,
) {
    let addr = connection.remote_address();
    let mut recv = FramedRecv::new(recv, MAX_ADMIN_FRAME_LEN);
    let mut send = FramedSend::new(send, MAX_ADMIN_FRAME_LEN);
    let request = match recv.next::<AdminRequest>().await {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(e) => {
            let code = e.protocol_code().unwrap_or(ErrorCode::MALFORMED);
            refuse(&mut send, (code, format!("bad request: {e}"))).await;
            return;
        }
    };
    // Who asks, now: the certificate and its user are read again for every request.
    let caller = match check_cert(shared, &cert) {
        Ok(user) => Caller {
            user: user.name,
            role: user.role,
            addr,
            serial: Some(cert.serial.clone()),
            client: ClientInfo::default(),
            bridge: None,
            session: None,
        },
        Err(refusal) => {
            audit::record(
                shared,
                &unchecked(&cert, addr),
                &request,
                Outcome::Denied(&refusal),
            )
            .await;
            close(connection, refusal.0, &refusal.1);
            refuse(&mut send, refusal).await;
            return;
        }
    };
    let (caller, request) = match request {
        AdminRequest::AsUser {
            token,
            client,
            request,
        } => {
            let outer =
                AdminRequest::as_user(token.clone(), ClientInfo::default(), &AdminRequest::Ping);
            if let Err(refusal) = roles::permit(caller.role, &caller.user, &outer) {
                audit::record(shared, &caller, &outer, Outcome::Denied(&refusal)).await;
                refuse(&mut send, refusal).await;
                return;
            }
            let request = match AdminRequest::decode_inner(&request.0) {
                Ok(request) => request,
                Err(e) => {
                    let refusal = (
                        ErrorCode::MALFORMED,
                        format!("bad request inside AsUser: {e}"),
                    );
                    audit::record(shared, &caller, &outer, Outcome::Denied(&refusal)).await;
                    refuse(&mut send, refusal).await;
                    return;
                }
            };
            let client = clean_client(client);
            let (session, user) = match check_session(shared, token.expose()).await {
                Ok(found) => found,
                Err(refusal) => {
                    let bridged = Caller {
                        client,
                        bridge: Some(caller.user.clone()),
                        ..caller.clone()
                    };
                    audit::record(shared, &bridged, &request, Outcome::Denied(&refusal)).await;
                    refuse(&mut send, refusal).await;
                    return;
                }
            };
            let inner = Caller {
                user: user.name,
                role: user.role,
                addr,
                serial: None,
                client,
                bridge: Some(caller.user.clone()),
                session: Some(session.id.clone()),
            };
            debug!(session = %session.id, user = %inner.user, "request through the bridge");
            (inner, request)
        }
        other => (caller, other),
    };
    let nested = caller.bridge.is_some()
        && matches!(
            request,
            AdminRequest::AsUser { .. } | AdminRequest::Login { .. } | AdminRequest::Logout { .. }
        );
    let permitted = if nested {
        Err((
            ErrorCode::PERMISSION_DENIED,
            "a request made as a user cannot log in, log out or act as another user".to_string(),
        ))
    } else {
        roles::permit(caller.role, &caller.user, &request)
    };
    if let Err(refusal) = permitted {
        warn!(role = %caller.role, "refused: {}", refusal.1);
        audit::record(shared, &caller, &request, Outcome::Denied(&refusal)).await;
        refuse(&mut send, refusal).await;
        return;
    }
    // A request that could not be recorded is not run.
    if let Err(refusal) = audit::writable(shared, &request) {
        warn!("refused: {}", refusal.1);
        refuse(&mut send, refusal).await;
        return;
    }
    dispatch(shared, caller, request, send, recv).await;
}

/// Runs a permitted request and records it.
async fn dispatch(
    shared: &Arc<Shared>,
    caller: Caller,
    request: AdminRequest,
    mut send: FramedSend,
    mut recv: FramedRecv,
) {
    let streamed = match &request {
        AdminRequest::OpenTty { token } => {
            // The stream becomes the terminal's: terminal frames both ways from here.
            send.set_max_len(MAX_TTY_FRAME_LEN);
            recv.set_max_len(MAX_TTY_FRAME_LEN);
            let pending = Pending::new(shared, &caller, &request);
            crate::tty::open(shared.clone(), caller, token.clone(), send, recv, pending).await;
            return;
        }
        AdminRequest::Exec(spec) => {
            // An execution streams its answers and listens for a cancel: it takes the stream.
            let pending = Pending::new(shared, &caller, &request);
            crate::exec::serve(
                shared.clone(),
                caller.user.clone(),
                spec.clone(),
                send,
                recv,
                pending,
            )
            .await;
            return;
        }
        AdminRequest::Watch(spec) => {
            // Live figures until the client stops reading: it takes the stream.
            let pending = Pending::new(shared, &caller, &request);
            watch::serve(shared.clone(), caller, spec.clone(), send, pending).await;
            return;
        }
        AdminRequest::TtyRecording { id } => {
            Some(crate::tty::send_recording(shared, &caller, id, &mut send).await)
        }
        AdminRequest::Backup { recordings } => {
            // The archive is streamed as it is made: it takes the stream.
            Some(backup::serve(shared, &caller, *recordings, &mut send).await)
        }
        AdminRequest::ShowExec { id } => {
            // Output of many nodes: streamed in frames as it is read, never all in memory.
            Some(crate::exec::show(shared, id, &mut send).await)
        }
        _ => None,
    };
    if let Some(result) = streamed {
        let outcome = match &result {
            Ok(()) => Outcome::Ok,
            Err(refusal) => Outcome::Failed(refusal),
        };
        audit::record(shared, &caller, &request, outcome).await;
        if let Err(refusal) = result {
            refuse(&mut send, refusal).await;
        } else {
            send.finish();
        }
        return;
    }
    let reply = match &request {
        // The file follows the request on this stream; then it is answered as any other.
        AdminRequest::ReleaseUpload { manifest, notes } => {
            releases::upload(shared, &caller, manifest, notes, &mut recv).await
        }
        _ => handle(shared, &caller, &request).await,
    };
    let (outcome, more) = match &reply {
        Ok(responses) => (Outcome::Ok, audit::answer_details(responses)),
        Err(refusal) => (Outcome::Failed(refusal), Vec::new()),
    };
    // The record is on disk before the answer is complete; an answer that could not be
    // recorded is not given.
    let recorded = audit::record_with(shared, &caller, &request, outcome, more).await;
    let reply = if recorded || matches!(request, AdminRequest::Ping | AdminRequest::Status) {
        reply
    } else {
        Err((
            ErrorCode::INTERNAL,
            "core could not write this request's audit record, so it does not answer it (any \
             change it made stands; see core's log)"
                .to_string(),
        ))
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
    // The caller revoked the certificate they came with: its connections close now that the
    // answer is on its way (it is refused from the next request anyway).
    if let (Some(AdminResponse::Cert(cert)), Some(own)) = (responses.first(), &caller.serial)
        && matches!(request, AdminRequest::RevokeCert { .. })
        && cert.serial == *own
    {
        let connections = shared.admin_connections.clone();
        let reason = format!(
            "certificate {own} was revoked by {} {}",
            caller.role, caller.user
        );
        let own = own.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            connections.close_cert(&own, &reason);
        });
    }
}

/// Bad input, in words the caller can act on.
pub(crate) fn invalid(message: String) -> Refusal {
    (ErrorCode::INVALID_ARGUMENT, message)
}

pub(crate) fn internal(e: StoreError) -> Refusal {
    warn!(error = %e, "store failure while serving an admin");
    (ErrorCode::INTERNAL, format!("core's database failed: {e}"))
}

/// Routes a request that is answered with frames to its resource's module.
async fn handle(shared: &Arc<Shared>, caller: &Caller, request: &AdminRequest) -> Reply {
    let admin = caller.user.as_str();
    match request.clone() {
        AdminRequest::Ping => status::ping(caller),
        AdminRequest::Status => status::status(shared),
        AdminRequest::ListApplications { status, limit } => enroll::list(shared, status, limit),
        AdminRequest::ApproveApplication { id } => enroll::approve(shared, admin, &id).await,
        AdminRequest::RejectApplication { id, reason } => {
            enroll::reject(shared, admin, &id, reason).await
        }
        AdminRequest::ListNodes {
            status,
            labels,
            group,
            include_deleted,
        } => nodes::list(shared, status, &labels, group, include_deleted),
        AdminRequest::NodePage(query) => fleet::node_page(shared, &query),
        AdminRequest::Overview => fleet::overview_reply(shared),
        AdminRequest::NodeMetrics(query) => metrics::history(shared, &query),
        AdminRequest::FleetMetrics(query) => metrics::fleet(shared, &query),
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
        AdminRequest::ShowTty { id } => history::terminal(shared, &id),
        AdminRequest::KillTty { id } => history::kill_terminal(shared, caller, &id).await,
        AdminRequest::AuthorizeTty(request) => {
            let grant = crate::tty::authorize(shared, caller, request).await?;
            Ok(vec![AdminResponse::TtyGrant(grant)])
        }
        AdminRequest::UserAdd(new) => users::add(shared, new).await,
        AdminRequest::UserList => users::list(shared),
        AdminRequest::UserShow { name } => users::show(shared, &name),
        AdminRequest::UserRole { name, role } => users::role(shared, caller, &name, role).await,
        AdminRequest::UserEnable { name, enabled } => {
            users::enable(shared, caller, &name, enabled).await
        }
        AdminRequest::UserPasswd {
            name,
            password,
            current,
        } => users::passwd(shared, caller, &name, &password, current.as_ref()).await,
        AdminRequest::UserDelete { name } => users::delete(shared, caller, &name).await,
        AdminRequest::UserCert {
            name,
            public_key,
            lifetime_secs,
        } => users::cert(shared, caller, &name, &public_key.0, lifetime_secs).await,
        AdminRequest::UserCerts { name } => users::certs(shared, &name),
        AdminRequest::RevokeCert { serial } => users::revoke(shared, caller, &serial).await,
        AdminRequest::UserSessions { name } => users::sessions(shared, &name),
        AdminRequest::UserLogout { name, session } => users::logout(shared, &name, session).await,
        AdminRequest::Login {
            user,
            password,
            client,
        } => login::login(shared, caller, &user, &password, client).await,
        AdminRequest::Logout { token } => login::logout(shared, &token).await,
        AdminRequest::Audit(query) => audit::list(shared, query).await,
        AdminRequest::AuditVerify => audit::verify(shared).await,
        request @ (AdminRequest::AlertRuleAdd { .. }
        | AdminRequest::AlertRuleList
        | AdminRequest::AlertRuleShow { .. }
        | AdminRequest::AlertRuleEnable { .. }
        | AdminRequest::AlertRuleDelete { .. }
        | AdminRequest::AlertList(_)
        | AdminRequest::AlertShow { .. }
        | AdminRequest::AlertAck { .. }
        | AdminRequest::AlertChannelAdd(_)
        | AdminRequest::AlertChannelList
        | AdminRequest::AlertChannelDelete { .. }
        | AdminRequest::AlertChannelTest { .. }) => alerts::handle(shared, caller, request).await,
        request @ (AdminRequest::GroupAdd { .. }
        | AdminRequest::GroupList
        | AdminRequest::GroupShow { .. }
        | AdminRequest::GroupMove { .. }
        | AdminRequest::GroupDelete { .. }
        | AdminRequest::NodeGroup { .. }) => groups::handle(shared, caller, request).await,
        AdminRequest::TaskRun { name } => tasks::run_now(shared, caller, &name).await,
        request @ (AdminRequest::TaskAdd(_)
        | AdminRequest::TaskEdit { .. }
        | AdminRequest::TaskList
        | AdminRequest::TaskShow { .. }
        | AdminRequest::TaskEnable { .. }
        | AdminRequest::TaskDelete { .. }
        | AdminRequest::TaskHistory { .. }
        | AdminRequest::CronPreview { .. }) => tasks::handle(shared, caller, request).await,
        request @ (AdminRequest::ReleaseList
        | AdminRequest::ReleaseShow { .. }
        | AdminRequest::ReleaseDelete { .. }) => releases::handle(shared, caller, request).await,
        AdminRequest::ReleaseDeploy(spec) => deploys::deploy(shared, caller, spec).await,
        AdminRequest::DeployList { limit } => deploys::list(shared, limit),
        AdminRequest::DeployStatus { id } => deploys::status(shared, id),
        AdminRequest::DeployControl { id, action } => {
            deploys::control(shared, caller, id, action).await
        }
        AdminRequest::DeployRollback { id } => deploys::rollback(shared, caller, id).await,
        AdminRequest::OpenTty { .. }
        | AdminRequest::Watch(_)
        | AdminRequest::TtyRecording { .. }
        | AdminRequest::Exec(_)
        | AdminRequest::ShowExec { .. }
        | AdminRequest::Backup { .. }
        | AdminRequest::ReleaseUpload { .. }
        | AdminRequest::AsUser { .. } => Err((
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

//! One node's connection, from hello to goodbye:
//!
//! 1. the node opens the control stream and says hello (`Enroll` or `Auth`) within
//!    `hello_timeout`, or the connection is closed;
//! 2. enrollment: checks, the store's atomic submission, then — while pending — waiting for an
//!    admin's decision, which is pushed over this connection the moment it is made;
//! 3. authentication: HMAC proof bound to this connection's TLS exporter, clock check, and the
//!    node's older connection, if any, is replaced;
//! 4. the session: heartbeat datagrams, static facts on the control stream, offline after
//!    `offline_after` of silence, until the connection ends or an admin deletes the node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{Connection, ConnectionError, VarInt};
use tether_certs::node_key::NodePublicKey;
use tether_store::{ConnectivityChange, NewApplication, Submission};
use tether_wire::admin::NodeStatus;
use tether_wire::bytes::ByteBuf;
use tether_wire::control::{
    AuthRequest, CoreMessage, EnrollRequest, NodeMessage, SessionParams, auth_proof_input,
};
use tether_wire::exec::ExecFrame;
use tether_wire::limits::{MAX_CONTROL_FRAME_LEN, MAX_EXEC_FRAME_LEN};
use tether_wire::stream::{FramedRecv, FramedSend, RecvError};
use tether_wire::{AUTH_EXPORTER_LABEL, AUTH_EXPORTER_LEN, ErrorCode, NodeId};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::enroll::{Refusal, check_request, describe_skew};
use crate::mailbox::Mailbox;
use crate::presence::{
    COMMAND_QUEUE, Ingested, Live, Liveness, Notice, Session, SessionCommand, ingest_datagram,
};
use crate::server::Shared;

/// How long core waits for a node to close after telling it why it must go.
const GOODBYE_GRACE: Duration = Duration::from_secs(2);

/// The node's control stream.
struct Control {
    send: FramedSend,
    recv: FramedRecv,
}

/// Closes `connection` with `code` and a short human reason.
pub(crate) fn close(connection: &Connection, code: ErrorCode, message: &str) {
    let mut end = message.len().min(200);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    connection.close(
        VarInt::from_u32(code.close_code()),
        &message.as_bytes()[..end],
    );
}

/// Tells the node why it must go, lets it read that and close, then closes if it has not.
async fn goodbye(
    connection: &Connection,
    control: &mut Control,
    message: CoreMessage,
    code: ErrorCode,
    text: &str,
) {
    if control.send.send(&message).await.is_ok() {
        control.send.finish();
        let _ = tokio::time::timeout(GOODBYE_GRACE, connection.closed()).await;
    }
    close(connection, code, text);
}

async fn refuse(connection: &Connection, control: &mut Control, (code, message): Refusal) {
    warn!(code = %code, reason = %message, "refused");
    goodbye(
        connection,
        control,
        CoreMessage::Refused {
            code,
            message: message.clone(),
        },
        code,
        &message,
    )
    .await;
}

/// Closes for a protocol violation. A transport failure (the peer went away) is not one: it is
/// only noted.
fn protocol_error(connection: &Connection, error: &RecvError) {
    match error.protocol_code() {
        Some(code) => {
            warn!(code = %code, error = %error, "protocol error on the control stream");
            close(connection, code, &error.to_string());
        }
        None => debug!(error = %error, "the control stream ended"),
    }
}

/// Serves one connection that negotiated the node ALPN.
pub(crate) async fn serve(shared: Arc<Shared>, connection: Connection) {
    // A connection's task keeps the size of its largest state for its whole life, and one core
    // holds very many: whatever is passed through once (hello, enrollment, authentication, the
    // end) is boxed, so that only the session's own state stays.
    let Some((mut control, auth)) = Box::pin(hello(&shared, &connection)).await else {
        return;
    };
    let span = info_span!("node", node_id = %auth.node_id);
    let Some(session) =
        Box::pin(authenticate(&shared, &connection, &mut control, auth).instrument(span.clone()))
            .await
    else {
        return;
    };
    async {
        let reason = {
            // Commands sent once the session stopped taking them are given back to their
            // senders, whichever way it stopped.
            let _closed = session.commands.close_on_drop();
            run_session(&shared, &connection, &mut control, &session).await
        };
        Box::pin(end_session(&shared, &session, reason)).await;
    }
    .instrument(span)
    .await
}

/// Waits for the node's first message and handles enrollment; the authentication request to go
/// on with, or `None` once the connection has been dealt with.
async fn hello(shared: &Arc<Shared>, connection: &Connection) -> Option<(Control, AuthRequest)> {
    let hello = tokio::time::timeout(shared.config.hello_timeout, async {
        let (send, recv) = connection.accept_bi().await?;
        let mut control = Control {
            send: FramedSend::new(send, MAX_CONTROL_FRAME_LEN),
            recv: FramedRecv::new(recv, MAX_CONTROL_FRAME_LEN),
        };
        let first = control.recv.next::<NodeMessage>().await;
        Ok::<_, ConnectionError>((control, first))
    })
    .await;
    let (mut control, first) = match hello {
        Err(_) => {
            warn!(timeout = ?shared.config.hello_timeout, "no hello in time");
            close(connection, ErrorCode::HELLO_TIMEOUT, "no hello in time");
            return None;
        }
        Ok(Err(e)) => {
            debug!(error = %e, "connection ended before hello");
            return None;
        }
        Ok(Ok(pair)) => pair,
    };
    match first {
        Ok(Some(NodeMessage::Enroll(request))) => {
            let node_id = request.node_id;
            let span = info_span!("enroll", node_id = %node_id);
            let approved = enroll(shared, connection, &mut control, request)
                .instrument(span)
                .await;
            if !approved {
                return None;
            }
            // An approved node proves itself on the same connection, straight away.
            match tokio::time::timeout(
                shared.config.hello_timeout,
                control.recv.next::<NodeMessage>(),
            )
            .await
            {
                Ok(Ok(Some(NodeMessage::Auth(auth)))) if auth.node_id == node_id => {
                    return Some((control, auth));
                }
                Ok(Ok(Some(_))) => {
                    refuse(
                        connection,
                        &mut control,
                        (
                            ErrorCode::UNEXPECTED_MESSAGE,
                            "expected Auth after EnrollApproved".into(),
                        ),
                    )
                    .await
                }
                Ok(Err(e)) => protocol_error(connection, &e),
                Ok(Ok(None)) => {}
                Err(_) => close(
                    connection,
                    ErrorCode::HELLO_TIMEOUT,
                    "no Auth after approval",
                ),
            }
        }
        Ok(Some(NodeMessage::Auth(auth))) => return Some((control, auth)),
        Ok(Some(_)) => {
            refuse(
                connection,
                &mut control,
                (
                    ErrorCode::UNEXPECTED_MESSAGE,
                    "the first message must be Enroll or Auth".into(),
                ),
            )
            .await
        }
        Ok(None) => debug!("control stream finished before hello"),
        Err(e) => protocol_error(connection, &e),
    }
    None
}

/// Handles an enrollment request; true if the node was approved and sent its secret.
async fn enroll(
    shared: &Arc<Shared>,
    connection: &Connection,
    control: &mut Control,
    request: EnrollRequest,
) -> bool {
    let secret = match shared.data_dir.enrollment_secret() {
        Ok(secret) => secret,
        Err(e) => {
            warn!(error = %e, "cannot read the enrollment secret");
            let refusal = (
                ErrorCode::INTERNAL,
                "core cannot read its enrollment secret".to_string(),
            );
            refuse(connection, control, refusal).await;
            return false;
        }
    };
    let max_skew = i64::try_from(shared.config.max_clock_skew.as_secs()).unwrap_or(i64::MAX);
    let public_key = match check_request(&request, &secret, shared.clock.now_secs(), max_skew) {
        Ok(key) => key,
        Err(refusal) => {
            refuse(connection, control, refusal).await;
            return false;
        }
    };
    let node_id = request.node_id;
    // Register for the decision before submitting, so a decision made in between is not missed.
    let (generation, decision) = shared.presence.wait_for_decision(node_id);
    let submission = shared
        .store
        .submit_application(NewApplication {
            node_id,
            hostname: request.hostname.clone(),
            public_key_pem: request.public_key_pem.clone(),
            key_fingerprint: public_key.fingerprint(),
            agent_version: request.agent_version.clone(),
            remote_addr: Some(connection.remote_address().to_string()),
            nonce: request.nonce.as_bytes().to_vec(),
            // After this the timestamp is outside the window, so the nonce can be forgotten.
            nonce_expires_secs: u64::try_from(
                request.timestamp.saturating_add(max_skew).saturating_add(1),
            )
            .unwrap_or(0),
            now_ms: shared.now_ms(),
            max_pending: shared.config.max_pending_applications,
            auto_approve_secret: shared.config.auto_approve.then(new_secret),
        })
        .await;
    if !matches!(submission, Ok(Submission::Pending(_))) {
        shared.presence.stop_waiting(node_id, generation);
    }
    let refusal = match submission {
        Ok(Submission::Pending(application)) => {
            info!(application = %application.id, hostname = %application.hostname,
                  key = %application.key_fingerprint, "application pending");
            let pending = CoreMessage::EnrollPending {
                application_id: application.id,
            };
            let outcome = if control.send.send(&pending).await.is_ok() {
                wait_for_decision(shared, connection, control, decision).await
            } else {
                None
            };
            shared.presence.stop_waiting(node_id, generation);
            return match outcome {
                Some(Notice::Approved { secret }) => {
                    send_secret(shared, connection, control, node_id, &public_key, secret).await
                }
                Some(Notice::Rejected { reason }) => {
                    reject(connection, control, application.id, reason).await;
                    false
                }
                None => false,
            };
        }
        Ok(Submission::Approved { node, secret }) => {
            info!(hostname = %node.hostname, "approved; sending the agent secret");
            return send_secret(shared, connection, control, node_id, &public_key, secret).await;
        }
        Ok(Submission::Rejected(application)) => {
            reject(
                connection,
                control,
                application.id,
                application.reason.unwrap_or_default(),
            )
            .await;
            return false;
        }
        Ok(Submission::ReplayedNonce) => (
            ErrorCode::REPLAYED_NONCE,
            "this enrollment nonce was used before: the request is a replay".to_string(),
        ),
        Ok(Submission::KeyMismatch) => (
            ErrorCode::KEY_MISMATCH,
            format!(
                "node id {node_id} is already known to core with a different public key; \
                 if this machine was reinstalled, remove the node's state directory so it enrolls with a new id"
            ),
        ),
        Ok(Submission::NodeRemoved) => (
            ErrorCode::NODE_REMOVED,
            format!(
                "node {node_id} was deleted by an admin and may not come back with the same id"
            ),
        ),
        Ok(Submission::TooManyPending { limit }) => (
            ErrorCode::TOO_MANY_PENDING,
            format!("{limit} applications are already waiting for an admin; try again later"),
        ),
        Ok(_) => (
            ErrorCode::INTERNAL,
            "unexpected enrollment outcome".to_string(),
        ),
        Err(e) => {
            warn!(error = %e, "storing the application failed");
            (
                ErrorCode::INTERNAL,
                "core could not store the application".to_string(),
            )
        }
    };
    refuse(connection, control, refusal).await;
    false
}

/// Waits while an application is pending. `None` if the connection ended first.
async fn wait_for_decision(
    shared: &Shared,
    connection: &Connection,
    control: &mut Control,
    decision: tokio::sync::oneshot::Receiver<Notice>,
) -> Option<Notice> {
    tokio::select! {
        notice = decision => match notice {
            Ok(notice) => Some(notice),
            Err(_) => {
                close(connection, ErrorCode::REPLACED, "a newer connection of this node is waiting instead");
                None
            }
        },
        frame = control.recv.next::<NodeMessage>() => {
            match frame {
                Ok(None) => {}
                Ok(Some(_)) => close(connection, ErrorCode::UNEXPECTED_MESSAGE, "nothing may be sent while pending"),
                Err(e) => protocol_error(connection, &e),
            }
            None
        }
        _ = shared.shutdown.cancelled() => {
            close(connection, ErrorCode::SHUTTING_DOWN, "core is shutting down");
            None
        }
    }
}

/// Sends the agent secret wrapped with RSA-OAEP to the node's key.
async fn send_secret(
    shared: &Shared,
    connection: &Connection,
    control: &mut Control,
    node_id: NodeId,
    public_key: &NodePublicKey,
    secret: [u8; 32],
) -> bool {
    let encrypted = match public_key.encrypt(&secret) {
        Ok(encrypted) => encrypted,
        Err(e) => {
            warn!(error = %e, "cannot encrypt the agent secret");
            refuse(
                connection,
                control,
                (
                    ErrorCode::INTERNAL,
                    "cannot encrypt the agent secret".into(),
                ),
            )
            .await;
            return false;
        }
    };
    let approved = CoreMessage::EnrollApproved {
        node_id,
        encrypted_secret: ByteBuf(encrypted),
    };
    let answered = control.send.send(&approved).await.is_ok();
    if answered {
        shared
            .presence
            .enrollments_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    answered
}

async fn reject(
    connection: &Connection,
    control: &mut Control,
    application_id: tether_wire::ApplicationId,
    reason: String,
) {
    info!(application = %application_id, %reason, "telling the node it was rejected");
    let text = if reason.is_empty() {
        "the application was rejected".to_string()
    } else {
        format!("the application was rejected: {reason}")
    };
    goodbye(
        connection,
        control,
        CoreMessage::EnrollRejected {
            application_id,
            reason,
        },
        ErrorCode::APPLICATION_REJECTED,
        &text,
    )
    .await;
}

/// Verifies the proof and clock, registers the session (replacing an older one) and records the
/// node online. `None` if refused.
async fn authenticate(
    shared: &Arc<Shared>,
    connection: &Connection,
    control: &mut Control,
    auth: AuthRequest,
) -> Option<Arc<Session>> {
    let node_id = auth.node_id;
    if let Err(message) = auth.check_shape() {
        refuse(connection, control, (ErrorCode::INVALID_REQUEST, message)).await;
        return None;
    }
    let lookup = shared
        .store
        .node(node_id)
        .and_then(|node| Ok((node, shared.store.secret(node_id)?)));
    let (node, secret) = match lookup {
        Ok((Some(node), Some(secret))) if !node.record.deleted => (node, secret),
        Ok((None, _)) => {
            let message = format!("core does not know node {node_id}; it must enroll");
            refuse(connection, control, (ErrorCode::UNKNOWN_NODE, message)).await;
            return None;
        }
        Ok(_) => {
            let message = format!("node {node_id} was deleted by an admin");
            refuse(connection, control, (ErrorCode::NODE_REMOVED, message)).await;
            return None;
        }
        Err(e) => {
            warn!(error = %e, "reading the node failed");
            let refusal = (
                ErrorCode::INTERNAL,
                "core could not read its database".to_string(),
            );
            refuse(connection, control, refusal).await;
            return None;
        }
    };
    let mut exporter = [0u8; AUTH_EXPORTER_LEN];
    if connection
        .export_keying_material(&mut exporter, AUTH_EXPORTER_LABEL, b"")
        .is_err()
    {
        refuse(
            connection,
            control,
            (ErrorCode::INTERNAL, "TLS exporter unavailable".into()),
        )
        .await;
        return None;
    }
    let input = auth_proof_input(node_id, auth.timestamp, &exporter);
    if !tether_certs::proof::verify(&secret, &input, auth.proof.as_bytes()) {
        let message = "the connection proof does not verify with the node's secret".to_string();
        refuse(connection, control, (ErrorCode::BAD_PROOF, message)).await;
        return None;
    }
    // The proof is authentic, so the timestamp really is the node's clock: record its skew.
    let now_ms = shared.now_ms();
    let skew_ms = auth.timestamp.saturating_mul(1000).saturating_sub(now_ms);
    let max_skew_ms = i64::try_from(shared.config.max_clock_skew.as_millis()).unwrap_or(i64::MAX);
    if skew_ms.abs() > max_skew_ms {
        if let Err(e) = shared.store.record_clock_skew(node_id, Some(skew_ms)).await {
            warn!(error = %e, "recording the clock skew failed");
        }
        let message = format!(
            "this node's clock is {} core's (±{} s allowed); fix its clock (NTP)",
            describe_skew(skew_ms / 1000),
            max_skew_ms / 1000
        );
        refuse(connection, control, (ErrorCode::CLOCK_SKEW, message)).await;
        return None;
    }

    if let Some(refusal) = Box::pin(other_machine(shared, connection, &auth)).await {
        refuse(connection, control, refusal).await;
        return None;
    }

    let session = Arc::new(Session {
        node_id,
        machine: auth.machine,
        generation: shared.presence.next_generation(),
        connection: connection.clone(),
        commands: Mailbox::new(COMMAND_QUEUE),
        exec_streams_raised: Default::default(),
        live: Mutex::new(Live {
            heartbeat_ok: true,
            last_heartbeat_ms: Some(now_ms),
            ..Default::default()
        }),
    });
    if let Some(old) = shared.presence.register(session.clone()) {
        info!(old_remote = %old.connection.remote_address(), "a newer connection replaces the older one");
        close(
            &old.connection,
            ErrorCode::REPLACED,
            "a newer connection of this node replaced this one",
        );
    }
    let change = ConnectivityChange {
        node_id,
        status: NodeStatus::Online,
        reason: "connected".into(),
        at_ms: now_ms,
        public_addr: Some(connection.remote_address().to_string()),
        agent_version: Some(auth.agent_version.clone()),
        last_seen_ms: Some(now_ms),
        clock_skew_ms: Some((skew_ms.abs() > 1000).then_some(skew_ms)),
    };
    if let Err(e) = shared.store.record_connectivity(change).await {
        warn!(error = %e, "recording the connection failed");
    }
    shared
        .alerts
        .status(shared, node_id, NodeStatus::Online, now_ms);
    let params = SessionParams {
        node_id,
        heartbeat_interval_ms: u32::try_from(shared.config.heartbeat_interval.as_millis())
            .unwrap_or(u32::MAX),
        // Now, not when the proof was checked: an identity check may have waited for a probe.
        core_time_ms: shared.now_ms(),
        max_clock_skew_secs: u32::try_from(shared.config.max_clock_skew.as_secs())
            .unwrap_or(u32::MAX),
        static_facts_digest: node.facts.as_ref().map(|f| f.digest()),
    };
    if control
        .send
        .send(&CoreMessage::AuthOk(params))
        .await
        .is_err()
    {
        shared.presence.unregister(node_id, session.generation);
        session.commands.close();
        return None;
    }
    info!(remote = %connection.remote_address(), version = %auth.agent_version, "node online");
    if shared.deploys.any() {
        let (shared, version) = (shared.clone(), auth.agent_version.clone());
        tokio::spawn(async move {
            crate::releases::deploy::on_authenticated(&shared, node_id, &version).await;
        });
    }
    Some(session)
}

/// Whether this connection is another machine using an identity that is in use: a refusal
/// (recorded on the node, and logged) if so. An identity belongs to one machine:
///
/// - no current connection: nothing to compare with; this one is the node;
/// - the same machine fingerprint: a restart, a crash, a new NAT mapping; it replaces the old
///   connection, unless the two addresses keep replacing each other ([`crate::presence::Turns`])
///   and the established connection answers a probe (identical copies, whose fingerprints cannot
///   tell them apart; a single node whose connections broke in quick succession leaves only dead
///   ones behind);
/// - another fingerprint: a reboot (new boot id), whose old connection is dead, or another
///   machine, whose is not: the old connection is probed ([`crate::probe`]).
async fn other_machine(
    shared: &Shared,
    connection: &Connection,
    auth: &AuthRequest,
) -> Option<Refusal> {
    let new_addr = connection.remote_address();
    // The node's current connection may change while it is probed: look again then.
    let mut looks = 0;
    let (old_addr, reason) = loop {
        looks += 1;
        let old = shared.presence.get(auth.node_id)?;
        let old_addr = old.connection.remote_address();
        let same_machine = old.machine == auth.machine;
        if same_machine
            && !shared
                .presence
                .hold_established(auth.node_id, Instant::now(), old_addr, new_addr)
        {
            return None;
        }
        // Another machine, or two copies taking turns — or one node whose connections broke in
        // quick succession: only a live established connection is kept.
        if !crate::probe::alive(&old.connection).await {
            let now = shared.presence.get(auth.node_id);
            if now.is_some_and(|now| now.generation != old.generation) && looks < 3 {
                continue;
            }
            debug!(%old_addr, "the node's established connection is dead; replacing it");
            return None;
        }
        let reason = if same_machine {
            format!(
                "connections from {old_addr} and {new_addr} replaced each other {} times within \
                 {} s while both were alive: two copies of one machine (same machine id and boot id)",
                crate::presence::TURNS_LIMIT,
                crate::presence::TURNS_WINDOW.as_secs()
            )
        } else {
            "another machine fingerprint (machine id and boot id), while the node's connection is \
             alive"
                .to_string()
        };
        break (old_addr, reason);
    };
    warn!(node_id = %auth.node_id, connected_from = %old_addr, other = %new_addr,
          other_hostname = %auth.hostname, %reason,
          "identity conflict: another machine uses this node's identity; refused");
    let recorded = shared
        .store
        .record_identity_conflict(
            auth.node_id,
            new_addr.to_string(),
            auth.hostname.clone(),
            reason.clone(),
            shared.now_ms(),
        )
        .await;
    if let Err(e) = recorded {
        warn!(error = %e, "recording the identity conflict failed");
    }
    Some((
        ErrorCode::IDENTITY_IN_USE,
        format!(
            "node {} is connected from {old_addr}; this connection from {new_addr} ({}) is another \
             machine with the same identity ({reason})",
            auth.node_id, auth.hostname
        ),
    ))
}

/// How a session ended, for the status log.
struct Ended {
    reason: String,
    /// Deleted nodes are not recorded offline: their record says deleted.
    deleted: bool,
}

/// The authenticated session: heartbeats, facts, silence detection, admin commands.
async fn run_session(
    shared: &Arc<Shared>,
    connection: &Connection,
    control: &mut Control,
    session: &Arc<Session>,
) -> Ended {
    let offline_after = shared.config.offline_after;
    let max_skew_ms = i64::try_from(shared.config.max_clock_skew.as_millis()).unwrap_or(i64::MAX);
    let mut liveness = Liveness::new(offline_after, Instant::now());
    let mut skew_recorded: Option<i64> = None;
    let ended = |reason: String| Ended {
        reason,
        deleted: false,
    };
    // Heartbeats are by far the most frequent event, so the loop is arranged to make each cheap:
    // the shutdown signal and the offline timer live across iterations (the timer is moved
    // only when it fires early, not on every heartbeat), and datagrams are looked at first.
    let shutdown = shared.shutdown.cancelled();
    tokio::pin!(shutdown);
    let offline_timer = tokio::time::sleep_until(liveness.deadline());
    tokio::pin!(offline_timer);
    let mut heartbeat_ok = session.live.lock().expect("not poisoned").heartbeat_ok;
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => {
                close(connection, ErrorCode::SHUTTING_DOWN, "core is shutting down");
                return ended("core shut down".into());
            }
            datagram = connection.read_datagram() => {
                let bytes = match datagram {
                    Ok(bytes) => bytes,
                    Err(e) => return ended(describe_close(&e)),
                };
                let now_ms = shared.now_ms();
                match ingest_datagram(&session.live, &bytes, now_ms, max_skew_ms) {
                    Ingested::Accepted { resumed } => {
                        liveness.heard(Instant::now());
                        {
                            let live = session.live.lock().expect("not poisoned");
                            if let Some(metrics) = &live.metrics {
                                shared.history.push(session.node_id, now_ms, metrics);
                                shared.alerts.heartbeat(shared, session.node_id, Some(metrics), live.clock_skew_ms, now_ms);
                            }
                        }
                        shared.presence.heartbeats_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if resumed {
                            heartbeat_ok = true;
                            offline_timer.as_mut().reset(liveness.deadline());
                            info!("heartbeats resumed; online");
                            Box::pin(record(shared, session.node_id, NodeStatus::Online, "heartbeats resumed".into(), now_ms)).await;
                        }
                        if skew_recorded.take().is_some()
                            && let Err(e) = Box::pin(shared.store.record_clock_skew(session.node_id, None)).await
                        {
                            warn!(error = %e, "clearing the clock skew failed");
                        }
                    }
                    Ingested::Agent { news } => {
                        let agent = session.live.lock().expect("not poisoned").agent.clone();
                        if let Some(agent) = agent {
                            shared.alerts.agent(shared, session.node_id, &agent, now_ms);
                            if news && let Err(e) = Box::pin(shared.store.save_agent_state(session.node_id, agent)).await {
                                warn!(error = %e, "keeping the agent's state failed");
                            }
                        }
                    }
                    Ingested::Ignored => {}
                    Ingested::Malformed(e) => {
                        shared.presence.malformed_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        debug!(error = %e, len = bytes.len(), "dropped a malformed datagram");
                    }
                    Ingested::Skewed { skew_ms } => {
                        warn!(skew_ms, "refused a heartbeat: the node's clock is {} core's", describe_skew(skew_ms / 1000));
                        shared.alerts.heartbeat(shared, session.node_id, None, Some(skew_ms), now_ms);
                        // Record once per episode, not once per heartbeat.
                        if skew_recorded.is_none() {
                            skew_recorded = Some(skew_ms);
                            if let Err(e) = Box::pin(shared.store.record_clock_skew(session.node_id, Some(skew_ms))).await {
                                warn!(error = %e, "recording the clock skew failed");
                            }
                        }
                    }
                }
            }
            command = session.commands.recv() => match command {
                SessionCommand::Send(message) => {
                    if let Err(e) = Box::pin(control.send.send(&message)).await {
                        return ended(match connection.close_reason() {
                            Some(reason) => describe_close(&reason),
                            None => format!("control stream write failed: {e}"),
                        });
                    }
                }
                SessionCommand::Remove { reason } => {
                    info!(%reason, "telling the node it was deleted");
                    let text = format!("this node was deleted: {reason}");
                    Box::pin(goodbye(connection, control, CoreMessage::Removed { reason }, ErrorCode::NODE_REMOVED, &text)).await;
                    return Ended { reason: "deleted".into(), deleted: true };
                }
            },
            stream = connection.accept_uni() => match stream {
                Ok(stream) => {
                    tokio::spawn(route_exec_stream(shared.clone(), session.node_id, stream).in_current_span());
                }
                Err(e) => return ended(describe_close(&e)),
            },
            // The only stream a node opens besides its control stream: a release download.
            stream = connection.accept_bi() => match stream {
                Ok((send, recv)) => {
                    tokio::spawn(crate::releases::serve_download(shared.clone(), session.node_id, send, recv).in_current_span());
                }
                Err(e) => return ended(describe_close(&e)),
            },
            frame = control.recv.next::<NodeMessage>() => match frame {
                Ok(Some(NodeMessage::StaticFacts(facts))) => {
                    debug!("static facts received");
                    if let Err(e) = Box::pin(shared.store.set_static_facts(session.node_id, facts, shared.now_ms())).await {
                        warn!(error = %e, "storing static facts failed");
                    }
                    session.live.lock().expect("not poisoned").facts_received += 1;
                }
                Ok(Some(NodeMessage::UpdateStatus(status))) => {
                    Box::pin(crate::releases::deploy::on_status(shared, session.node_id, status)).await;
                }
                Ok(Some(NodeMessage::Policy(policy))) => {
                    debug!(policy = %policy.summary(), "policy reported");
                    if let Err(e) = Box::pin(shared.store.set_node_policy(session.node_id, policy)).await {
                        warn!(error = %e, "storing the node's policy failed");
                    }
                }
                Ok(Some(_)) => {
                    close(connection, ErrorCode::UNEXPECTED_MESSAGE, "unexpected message during the session");
                    return ended("protocol error: unexpected message".into());
                }
                Ok(None) => {
                    close(connection, ErrorCode::OK, "control stream finished");
                    return ended("the node finished its control stream".into());
                }
                Err(e) => {
                    if e.protocol_code().is_some() {
                        protocol_error(connection, &e);
                        return ended(format!("protocol error: {e}"));
                    }
                    return ended(match connection.close_reason() {
                        Some(reason) => describe_close(&reason),
                        None => e.to_string(),
                    });
                }
            },
            _ = &mut offline_timer, if heartbeat_ok => {
                if !liveness.is_silent(Instant::now()) {
                    offline_timer.as_mut().reset(liveness.deadline());
                    continue;
                }
                heartbeat_ok = false;
                session.live.lock().expect("not poisoned").heartbeat_ok = false;
                let reason = format!("no heartbeat for {}", humantime::format_duration(offline_after));
                warn!("{reason}; offline");
                Box::pin(record(shared, session.node_id, NodeStatus::Offline, reason, shared.now_ms())).await;
            }
        }
    }
}

async fn record(shared: &Shared, node_id: NodeId, status: NodeStatus, reason: String, at_ms: i64) {
    shared.alerts.status(shared, node_id, status, at_ms);
    let change = ConnectivityChange {
        node_id,
        status,
        reason,
        at_ms,
        public_addr: None,
        agent_version: None,
        last_seen_ms: None,
        clock_skew_ms: None,
    };
    if let Err(e) = shared.store.record_connectivity(change).await {
        warn!(error = %e, "recording a status change failed");
    }
}

/// After the session: unless a newer connection took over, the node is offline now.
async fn end_session(shared: &Shared, session: &Session, ended: Ended) {
    let still_current = shared
        .presence
        .unregister(session.node_id, session.generation);
    if !still_current {
        debug!(reason = %ended.reason, "replaced connection ended");
        return;
    }
    info!(reason = %ended.reason, "node offline");
    if ended.deleted {
        return;
    }
    let last_seen_ms = session.live.lock().expect("not poisoned").last_heartbeat_ms;
    let at_ms = shared.now_ms();
    shared
        .alerts
        .status(shared, session.node_id, NodeStatus::Offline, at_ms);
    let change = ConnectivityChange {
        node_id: session.node_id,
        status: NodeStatus::Offline,
        reason: ended.reason,
        at_ms,
        public_addr: None,
        agent_version: None,
        last_seen_ms,
        clock_skew_ms: None,
    };
    if let Err(e) = shared.store.record_connectivity(change).await {
        warn!(error = %e, "recording the disconnection failed");
    }
}

/// Reads the first frame of a stream the node opened and hands the stream to the execution it
/// names. A stream that names nothing expected, or breaks the protocol, is stopped — the node's
/// connection is not touched.
async fn route_exec_stream(shared: Arc<Shared>, node_id: NodeId, stream: quinn::RecvStream) {
    let mut stream = FramedRecv::new(stream, MAX_EXEC_FRAME_LEN);
    let first = tokio::time::timeout(shared.config.hello_timeout, stream.next::<ExecFrame>()).await;
    let code = match first {
        Ok(Ok(Some(ExecFrame::Open { exec_id }))) => match shared
            .presence
            .deliver_exec_stream(node_id, exec_id, stream)
        {
            Ok(()) => return,
            Err(returned) => {
                debug!(%exec_id, "an output stream for an execution not waiting for it");
                stream = returned;
                ErrorCode::UNEXPECTED_MESSAGE
            }
        },
        Ok(Ok(Some(_))) => ErrorCode::UNEXPECTED_MESSAGE,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            warn!(error = %e, "a stream from the node broke the protocol");
            e.protocol_code().unwrap_or(ErrorCode::MALFORMED)
        }
        Err(_) => ErrorCode::HELLO_TIMEOUT,
    };
    let _ = stream
        .stream_mut()
        .stop(VarInt::from_u32(code.close_code()));
}

/// A human reason for a connection's end.
fn describe_close(error: &ConnectionError) -> String {
    match error {
        ConnectionError::ApplicationClosed(close) => {
            let code = ErrorCode::from_close_code(close.error_code.into_inner());
            let reason = String::from_utf8_lossy(&close.reason);
            if reason.is_empty() {
                format!("connection closed ({code})")
            } else {
                format!("connection closed ({code}): {reason}")
            }
        }
        ConnectionError::TimedOut => "connection timed out".into(),
        ConnectionError::LocallyClosed => "connection closed by core".into(),
        other => format!("connection lost: {other}"),
    }
}

fn new_secret() -> [u8; 32] {
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    secret
}

//! The connection loop: connect, enroll or authenticate, run the session, and on any loss
//! reconnect with backoff — unless the end is final (rejected, deleted, untrusted core).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{ClientConfig, Connection, ConnectionError, Endpoint, TransportConfig, VarInt};
use rand::RngCore;
use tether_certs::tls::node_client_config;
use tether_wire::bytes::{ByteBuf, FixedBytes};
use tether_wire::control::{
    AuthRequest, CoreMessage, EnrollRequest, NodeMessage, SessionParams, auth_proof_input,
};
use tether_wire::heartbeat::{Heartbeat, encode_heartbeat};
use tether_wire::limits::MAX_CONTROL_FRAME_LEN;
use tether_wire::stream::{FramedRecv, FramedSend};
use tether_wire::token::Fingerprint;
use tether_wire::{AUTH_EXPORTER_LABEL, AUTH_EXPORTER_LEN, ErrorCode, TLS_SERVER_NAME};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::collect::{Collector, collect_facts};
use crate::exec::Executions;
use crate::state::NodeState;
use crate::{NodeConfig, NodeError};

/// A session that lasted this long resets the backoff to its quick first retry.
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// How an attempt ended, when it was not final.
enum Attempt {
    Shutdown,
    Lost { reason: String, authenticated: bool },
}

struct Context {
    config: NodeConfig,
    state: NodeState,
    core_addr: String,
    pinned: Fingerprint,
    cancel: CancellationToken,
    endpoint: Option<Endpoint>,
    executions: Arc<Executions>,
    terminals: Arc<crate::tty::Terminals>,
    agent: crate::agent::Agent,
    /// The update being fetched, if any (one at a time), and what it reports.
    update: Option<tokio::task::JoinHandle<()>>,
    update_events: (
        tokio::sync::mpsc::Sender<crate::update::Event>,
        tokio::sync::mpsc::Receiver<crate::update::Event>,
    ),
}

impl Context {
    fn now_ms(&self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        now + self.config.clock_offset_ms
    }
}

/// Runs the agent until `shutdown` completes (Ok) or the end is final (Err).
pub async fn run(
    config: NodeConfig,
    shutdown: impl crate::Shutdown + 'static,
) -> Result<(), NodeError> {
    config.validate().map_err(NodeError::Config)?;
    let state = NodeState::open(&config.state_dir)?;
    let core_addr = config
        .core_addr
        .clone()
        .or_else(|| config.token.as_ref().map(|t| t.core_addr.clone()))
        .or_else(|| state.core.as_ref().map(|c| c.core_addr.clone()))
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            NodeError::NotEnrolled("no core address: pass --core HOST:PORT or --token".into())
        })?;
    let pinned = match (&config.token, &state.core) {
        (Some(token), _) => token.ca_fingerprint,
        (None, Some(core)) => core
            .ca_fingerprint
            .parse()
            .map_err(|e: String| NodeError::State(format!("core.toml: {e}")))?,
        (None, None) => {
            return Err(NodeError::NotEnrolled(
                "this node is not enrolled yet: pass --token (print one on core with `tether-core key show`)".into(),
            ));
        }
    };
    info!(node_id = %state.node_id, key = %state.key.public().fingerprint(), core = %core_addr,
          state_dir = %state.dir().display(), enrolled = state.secret().is_some(), "tether-node starting");

    let cancel = CancellationToken::new();
    let watcher = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            shutdown.await;
            cancel.cancel();
        })
    };
    // Scripts left by a run this agent did not see to its end (a crash, a kill).
    crate::exec::clear_scripts(&config.state_dir.join("scripts"));
    let agent = crate::agent::Agent::start(
        state.dir(),
        &config.agent_version,
        tether_wire::units::unix_ms(std::time::SystemTime::now()),
    );
    let mut ctx = Context {
        agent,
        config,
        state,
        core_addr,
        pinned,
        cancel,
        endpoint: None,
        executions: Arc::default(),
        terminals: Arc::default(),
        update: None,
        update_events: tokio::sync::mpsc::channel(8),
    };
    let mut backoff = Backoff::new(ctx.config.reconnect_initial, ctx.config.reconnect_max);
    let result = loop {
        let started = tokio::time::Instant::now();
        match attempt(&mut ctx).await {
            Err(fatal) => break Err(fatal),
            Ok(Attempt::Shutdown) => break Ok(()),
            Ok(Attempt::Lost {
                reason,
                authenticated,
            }) => {
                if authenticated && started.elapsed() >= STABLE_SESSION {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                warn!(%reason, retry_in = ?delay, "disconnected from core");
                ctx.agent.error(format!("disconnected from core: {reason}"));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = ctx.cancel.cancelled() => break Ok(()),
                }
            }
        }
    };
    watcher.abort();
    if let Some(endpoint) = ctx.endpoint.take() {
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    }
    result
}

fn transport(config: &NodeConfig) -> TransportConfig {
    let mut transport = TransportConfig::default();
    transport.keep_alive_interval(Some(config.keep_alive));
    if let Ok(timeout) = quinn::IdleTimeout::try_from(config.idle_timeout) {
        transport.max_idle_timeout(Some(timeout));
    }
    // The agent is tiny: modest windows and buffers, no streams opened by core yet.
    transport.stream_receive_window(VarInt::from_u32(256 * 1024));
    transport.receive_window(VarInt::from_u32(1024 * 1024));
    transport.send_window(1024 * 1024);
    transport.datagram_receive_buffer_size(Some(8 * 1024));
    transport.datagram_send_buffer_size(8 * 1024);
    // No path MTU discovery past quinn's Ethernet-sized default, unlike core and the CLI
    // (`tether_wire::quic::mtu_discovery`): on loopback 10,000 nodes reconnecting at once each
    // searched up to 16 KiB, core decrypted and acknowledged every probe, and the storm took
    // 37 s with 265 failed attempts instead of 16 s with none. Terminal output gains nothing
    // measurable from it: the node sends with segmentation offload and core receives with GRO.
    transport
}

/// The endpoint, bound for `addr`'s address family (kept across reconnects).
fn endpoint_for(ctx: &mut Context, addr: SocketAddr) -> Result<Endpoint, String> {
    if let Some(endpoint) = &ctx.endpoint
        && endpoint
            .local_addr()
            .is_ok_and(|local| local.is_ipv6() == addr.is_ipv6())
    {
        return Ok(endpoint.clone());
    }
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    }
    .parse()
    .expect("valid");
    let endpoint = Endpoint::client(bind).map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    ctx.endpoint = Some(endpoint.clone());
    Ok(endpoint)
}

/// One connection, from dial to loss.
async fn attempt(ctx: &mut Context) -> Result<Attempt, NodeError> {
    let lost = |reason: String| {
        Ok(Attempt::Lost {
            reason,
            authenticated: false,
        })
    };
    let addr = match tokio::net::lookup_host(&ctx.core_addr)
        .await
        .map(|mut a| a.next())
    {
        Ok(Some(addr)) => addr,
        Ok(None) => return lost(format!("{} resolves to no address", ctx.core_addr)),
        Err(e) => return lost(format!("cannot resolve {}: {e}", ctx.core_addr)),
    };
    let endpoint = match endpoint_for(ctx, addr) {
        Ok(endpoint) => endpoint,
        Err(reason) => return lost(reason),
    };
    let (tls, verifier) =
        node_client_config(ctx.pinned).map_err(|e| NodeError::Config(e.to_string()))?;
    let quic =
        QuicClientConfig::try_from(Arc::new(tls)).map_err(|e| NodeError::Config(e.to_string()))?;
    let mut client_config = ClientConfig::new(Arc::new(quic));
    client_config.transport_config(Arc::new(transport(&ctx.config)));

    let connecting = match endpoint.connect_with(client_config, addr, TLS_SERVER_NAME) {
        Ok(connecting) => connecting,
        Err(e) => return lost(format!("cannot connect to {addr}: {e}")),
    };
    let connection = tokio::select! {
        result = connecting => result,
        _ = ctx.cancel.cancelled() => return Ok(Attempt::Shutdown),
    };
    let connection = match connection {
        Ok(connection) => connection,
        Err(e) => {
            if let Some(mismatch) = verifier.take_mismatch() {
                return Err(NodeError::UntrustedCore(mismatch.to_string()));
            }
            return lost(format!("cannot connect to {addr}: {e}"));
        }
    };
    debug!(%addr, "connected");
    let result = converse(ctx, &connection).await;
    // Results of runs still going could reach no one now: stop them.
    ctx.executions.cancel_all();
    if matches!(result, Ok(Attempt::Shutdown)) {
        goodbye(&connection);
    } else if let Err(e) = &result {
        let code = match e {
            NodeError::Rejected { .. } => ErrorCode::APPLICATION_REJECTED,
            NodeError::Removed { .. } => ErrorCode::NODE_REMOVED,
            NodeError::Refused { code, .. } | NodeError::IdentityInUse { code, .. } => *code,
            _ => ErrorCode::OK,
        };
        connection.close(VarInt::from_u32(code.close_code()), b"");
    }
    result
}

/// Closes the connection with the agent's reason for going. Done while the control stream is still
/// open: dropping the stream first would send core a bare end-of-stream, which can reach it before
/// the reason does.
fn goodbye(connection: &Connection) -> Attempt {
    connection.close(
        VarInt::from_u32(ErrorCode::OK.close_code()),
        b"node shutting down",
    );
    Attempt::Shutdown
}

/// Says hello, handles enrollment, then runs the session.
async fn converse(ctx: &mut Context, connection: &Connection) -> Result<Attempt, NodeError> {
    let (send, recv) = match connection.open_bi().await {
        Ok(pair) => pair,
        Err(e) => return classify_close(ctx, &e, false),
    };
    let mut send = FramedSend::new(send, MAX_CONTROL_FRAME_LEN);
    let mut recv = FramedRecv::new(recv, MAX_CONTROL_FRAME_LEN);

    let hello = if ctx.state.secret().is_some() {
        NodeMessage::Auth(auth_request(ctx, connection)?)
    } else {
        NodeMessage::Enroll(enroll_request(ctx)?)
    };
    if send.send(&hello).await.is_err() {
        return closed(ctx, connection, false);
    }
    loop {
        let message = tokio::select! {
            message = recv.next::<CoreMessage>() => message,
            _ = ctx.cancel.cancelled() => return Ok(goodbye(connection)),
        };
        let message = match message {
            Ok(Some(message)) => message,
            Ok(None) | Err(_) => return closed(ctx, connection, false),
        };
        match message {
            CoreMessage::EnrollPending { application_id } => {
                info!(application = %application_id,
                      "waiting for an admin to approve this node: on core, run `tether enroll approve {application_id}`");
            }
            CoreMessage::EnrollApproved {
                node_id,
                encrypted_secret,
            } => {
                if node_id != ctx.state.node_id {
                    return Err(NodeError::Refused {
                        code: ErrorCode::UNEXPECTED_MESSAGE,
                        message: format!(
                            "core approved node {node_id}, but this node is {}",
                            ctx.state.node_id
                        ),
                    });
                }
                let secret = ctx
                    .state
                    .key
                    .decrypt(&encrypted_secret.0)
                    .ok()
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                    .ok_or_else(|| {
                        NodeError::State(
                            "the agent secret from core does not decrypt with this node's key"
                                .into(),
                        )
                    })?;
                let (core_addr, pinned) = (ctx.core_addr.clone(), ctx.pinned);
                ctx.state.save_approval(secret, &core_addr, pinned)?;
                info!("approved: agent secret stored");
                let auth = NodeMessage::Auth(auth_request(ctx, connection)?);
                if send.send(&auth).await.is_err() {
                    return closed(ctx, connection, false);
                }
            }
            CoreMessage::EnrollRejected { reason, .. } => {
                return Err(NodeError::Rejected { reason });
            }
            CoreMessage::Refused { code, message } => return classify(ctx, code, message, false),
            CoreMessage::Removed { reason } => return Err(NodeError::Removed { reason }),
            CoreMessage::AuthOk(params) => {
                return run_session(ctx, connection, send, recv, params).await;
            }
            other => debug!(
                ?other,
                "ignoring an unexpected message before authentication"
            ),
        }
    }
}

fn enroll_request(ctx: &Context) -> Result<EnrollRequest, NodeError> {
    let token = ctx.config.token.as_ref().ok_or_else(|| {
        NodeError::NotEnrolled("this node is not enrolled: pass --token (print one on core with `tether-core key show`)".into())
    })?;
    let mut nonce = [0u8; 64];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let hostname = hostname(ctx);
    let mut request = EnrollRequest {
        nonce: FixedBytes(nonce),
        timestamp: ctx.now_ms().div_euclid(1000),
        node_id: ctx.state.node_id,
        public_key_pem: ctx.state.key.public().to_pem(),
        hostname,
        join_secret: token.secret,
        agent_version: ctx.config.agent_version.clone(),
        signature: ByteBuf::default(),
    };
    request.signature = ByteBuf(ctx.state.key.sign(&request.signed_bytes()));
    Ok(request)
}

/// The hostname this agent reports: the configured one, else the system's.
fn hostname(ctx: &Context) -> String {
    ctx.config
        .hostname
        .clone()
        .or_else(|| sysinfo::System::host_name().ok())
        .filter(|name| tether_wire::control::check_hostname(name).is_ok())
        .unwrap_or_else(|| "unknown".into())
}

fn auth_request(ctx: &Context, connection: &Connection) -> Result<AuthRequest, NodeError> {
    let secret = ctx
        .state
        .secret()
        .ok_or_else(|| NodeError::State("no agent secret".into()))?;
    let mut exporter = [0u8; AUTH_EXPORTER_LEN];
    connection
        .export_keying_material(&mut exporter, AUTH_EXPORTER_LABEL, b"")
        .map_err(|_| NodeError::Config("TLS exporter unavailable".into()))?;
    let timestamp = ctx.now_ms().div_euclid(1000);
    let input = auth_proof_input(ctx.state.node_id, timestamp, &exporter);
    Ok(AuthRequest {
        node_id: ctx.state.node_id,
        timestamp,
        proof: FixedBytes(tether_certs::proof::compute(secret, &input)),
        agent_version: ctx.config.agent_version.clone(),
        machine: crate::collect::machine_fingerprint(ctx.config.machine_id_file.as_deref()),
        hostname: hostname(ctx),
    })
}

/// Decides what a refusal means: final, retry, or enroll again.
fn classify(
    ctx: &mut Context,
    code: ErrorCode,
    message: String,
    authenticated: bool,
) -> Result<Attempt, NodeError> {
    match code {
        ErrorCode::APPLICATION_REJECTED => Err(NodeError::Rejected { reason: message }),
        ErrorCode::IDENTITY_IN_USE => Err(NodeError::IdentityInUse {
            code,
            message,
            state_dir: ctx.state.dir().display().to_string(),
        }),
        ErrorCode::NODE_REMOVED => Err(NodeError::Removed { reason: message }),
        ErrorCode::WRONG_JOIN_TOKEN
        | ErrorCode::BAD_SIGNATURE
        | ErrorCode::BAD_PUBLIC_KEY
        | ErrorCode::KEY_MISMATCH
        | ErrorCode::INVALID_REQUEST
        | ErrorCode::UNSUPPORTED => Err(NodeError::Refused { code, message }),
        ErrorCode::UNKNOWN_NODE | ErrorCode::BAD_PROOF => {
            if ctx.config.token.is_none() {
                return Err(NodeError::NotEnrolled(format!(
                    "core no longer accepts this node's secret ({message}); run again with --token to enroll anew"
                )));
            }
            warn!(%message, "core no longer accepts this node's secret; enrolling again");
            ctx.state.forget_secret()?;
            Ok(Attempt::Lost {
                reason: message,
                authenticated,
            })
        }
        ErrorCode::CLOCK_SKEW => {
            error!(%message, "core refused this node's clock; retrying until it is fixed");
            Ok(Attempt::Lost {
                reason: message,
                authenticated,
            })
        }
        _ => Ok(Attempt::Lost {
            reason: format!("{message} [{code}]"),
            authenticated,
        }),
    }
}

fn classify_close(
    ctx: &mut Context,
    error: &ConnectionError,
    authenticated: bool,
) -> Result<Attempt, NodeError> {
    match error {
        ConnectionError::ApplicationClosed(close) => {
            let code = ErrorCode::from_close_code(close.error_code.into_inner());
            let message = String::from_utf8_lossy(&close.reason).into_owned();
            classify(ctx, code, message, authenticated)
        }
        other => Ok(Attempt::Lost {
            reason: other.to_string(),
            authenticated,
        }),
    }
}

/// The stream or connection ended: find out why.
fn closed(
    ctx: &mut Context,
    connection: &Connection,
    authenticated: bool,
) -> Result<Attempt, NodeError> {
    match connection.close_reason() {
        Some(reason) => classify_close(ctx, &reason, authenticated),
        None => {
            connection.close(
                VarInt::from_u32(ErrorCode::MALFORMED.close_code()),
                b"control stream ended",
            );
            Ok(Attempt::Lost {
                reason: "core ended the control stream".into(),
                authenticated,
            })
        }
    }
}

/// Tells core how the agent itself fares (a lost datagram waits for the next report).
fn send_agent_state(ctx: &mut Context, connection: &Connection) {
    let state = ctx.agent.report();
    let bytes = tether_wire::heartbeat::encode_datagram(
        &tether_wire::heartbeat::Datagram::AgentState(state),
    );
    if let Err(e) = connection.send_datagram(Bytes::from(bytes)) {
        debug!(error = %e, "agent state not sent");
    }
}

async fn run_session(
    ctx: &mut Context,
    connection: &Connection,
    mut send: FramedSend,
    mut recv: FramedRecv,
    params: SessionParams,
) -> Result<Attempt, NodeError> {
    let interval = Duration::from_millis(u64::from(params.heartbeat_interval_ms.max(1000)));
    let skew_ms = ctx.now_ms() - params.core_time_ms;
    info!(heartbeat = ?interval, clock_skew_ms = skew_ms, "online");

    let hostname = ctx.config.hostname.clone();
    let mut facts_digest = params.static_facts_digest;
    let mut collector = Collector::new();
    let mut heartbeats = tokio::time::interval(interval);
    heartbeats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut facts_check = tokio::time::interval(ctx.config.facts_refresh);
    facts_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq: u32 = 0;
    send_agent_state(ctx, connection);
    // Reported so admins see what this node allows; nothing core answers changes it.
    if send
        .send(&NodeMessage::Policy(ctx.config.policy.clone()))
        .await
        .is_err()
    {
        return closed(ctx, connection, true);
    }
    // An update that brought this agent here is confirmed; one that ended while no connection
    // could tell core is told now.
    if let Some(status) =
        crate::update::after_authentication(&ctx.config.state_dir, &ctx.config.agent_version)
        && send.send(&NodeMessage::UpdateStatus(status)).await.is_err()
    {
        return closed(ctx, connection, true);
    }
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => return Ok(goodbye(connection)),
            Some(event) = ctx.update_events.1.recv() => match event {
                crate::update::Event::Status(status) => {
                    if status.state.ended() {
                        ctx.update = None;
                    }
                    if send.send(&NodeMessage::UpdateStatus(status)).await.is_err() {
                        return closed(ctx, connection, true);
                    }
                }
                crate::update::Event::Ready(switch) => {
                    ctx.update = None;
                    return Ok(switch_agent(ctx, connection, &mut send, switch).await);
                }
            },
            _ = facts_check.tick() => {
                let mut facts = collect_facts(hostname.as_deref());
                facts.agent_version.clone_from(&ctx.config.agent_version);
                let digest = facts.digest();
                if facts_digest != Some(digest) {
                    debug!("sending static facts");
                    if send.send(&NodeMessage::StaticFacts(facts)).await.is_err() {
                        return closed(ctx, connection, true);
                    }
                    facts_digest = Some(digest);
                }
            }
            _ = heartbeats.tick() => {
                seq = seq.wrapping_add(1);
                let mut metrics = collector.metrics();
                metrics.tty_sessions = u32::try_from(ctx.terminals.running()).unwrap_or(u32::MAX);
                let heartbeat = Heartbeat { seq, timestamp_ms: ctx.now_ms(), metrics };
                let (bytes, dropped) = encode_heartbeat(heartbeat);
                if dropped > 0 {
                    debug!(dropped, "left disks out of the heartbeat to fit one datagram");
                }
                if let Err(e) = connection.send_datagram(Bytes::from(bytes)) {
                    match connection.close_reason() {
                        Some(reason) => return classify_close(ctx, &reason, true),
                        None => warn!(error = %e, "heartbeat not sent"),
                    }
                }
                if seq.is_multiple_of(tether_wire::heartbeat::AGENT_STATE_EVERY) {
                    send_agent_state(ctx, connection);
                }
            }
            stream = connection.accept_bi() => match stream {
                Ok((send, recv)) => ctx.terminals.start(
                    send,
                    recv,
                    ctx.config.shell.clone(),
                    ctx.config.policy.permits_tty().err(),
                ),
                Err(_) => return closed(ctx, connection, true),
            },
            // Core's probes: QUIC's acknowledgement was the answer; read only to free the buffer.
            datagram = connection.read_datagram() => if datagram.is_err() {
                return closed(ctx, connection, true);
            },
            message = recv.next::<CoreMessage>() => match message {
                Ok(Some(CoreMessage::Removed { reason })) => return Err(NodeError::Removed { reason }),
                Ok(Some(CoreMessage::Refused { code, message })) => return classify(ctx, code, message, true),
                Ok(Some(CoreMessage::Exec(request))) => {
                    let program = request.command.first().map_or("", String::as_str);
                    let refused = ctx.config.policy.permits_exec(program, !request.env.is_empty()).err();
                    match &refused {
                        None => info!(exec_id = %request.exec_id, command = ?request.command, "running a command for core"),
                        Some(why) => warn!(exec_id = %request.exec_id, command = ?request.command, "refused by this node's policy: {why}"),
                    }
                    ctx.executions.start(connection.clone(), request, None, refused);
                }
                Ok(Some(CoreMessage::ExecScript { request, script })) => {
                    let name = request.command.first().map_or("", String::as_str);
                    let refused = ctx.config.policy.permits_script(name).err();
                    match &refused {
                        None => info!(exec_id = %request.exec_id, script = %name, bytes = script.0.len(), "running a script for core"),
                        Some(why) => warn!(exec_id = %request.exec_id, script = %name, "refused by this node's policy: {why}"),
                    }
                    let script = crate::exec::Script { body: script.0, dir: ctx.config.state_dir.join("scripts") };
                    ctx.executions.start(connection.clone(), request, Some(script), refused);
                }
                Ok(Some(CoreMessage::CancelExec { exec_id })) => ctx.executions.cancel(exec_id),
                Ok(Some(CoreMessage::Update(order))) => {
                    let busy = ctx.update.as_ref().is_some_and(|task| !task.is_finished());
                    if busy {
                        debug!(deploy = order.deploy, "an update is being fetched already");
                    } else {
                        info!(deploy = order.deploy, version = %order.manifest.version, "core asks for an update");
                        let task = tokio::spawn(crate::update::fetch(
                            connection.clone(),
                            ctx.config.clone(),
                            order.clone(),
                            ctx.update_events.0.clone(),
                        ));
                        ctx.update = Some(task);
                    }
                }
                Ok(Some(CoreMessage::Rollback(order))) => {
                    info!(deploy = order.deploy, version = %order.to_version, "core asks to put back the kept agent");
                    match crate::update::rollback(&ctx.config, &order) {
                        Ok(switch) => return Ok(switch_agent(ctx, connection, &mut send, switch).await),
                        Err((state, error)) => {
                            warn!(deploy = order.deploy, %error, "rollback not done");
                            let status = crate::update::status(order.deploy, state, 0, Some(error));
                            if send.send(&NodeMessage::UpdateStatus(status)).await.is_err() {
                                return closed(ctx, connection, true);
                            }
                        }
                    }
                }
                Ok(Some(other)) => debug!(?other, "ignoring a message this agent does not act on"),
                Ok(None) | Err(_) => return closed(ctx, connection, true),
            },
        }
    }
}

/// Tells core the new agent is being installed, leaves the connection, and executes the new
/// agent in this process. Back here only if that failed: then the outcome is kept for the next
/// connection to report, and the agent reconnects.
async fn switch_agent(
    ctx: &mut Context,
    connection: &Connection,
    send: &mut FramedSend,
    switch: crate::update::Switch,
) -> Attempt {
    let deploy = switch.deploy();
    let installing = crate::update::status(
        deploy,
        tether_wire::deploys::UpdateState::Installing,
        0,
        None,
    );
    let _ = send.send(&NodeMessage::UpdateStatus(installing)).await;
    ctx.executions.cancel_all();
    // Core reads the control stream to its end before the connection closes: a frame still
    // in flight when it closes is lost, and this one says what happens next.
    send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(2), send.stream_mut().stopped()).await;
    connection.close(
        VarInt::from_u32(ErrorCode::OK.close_code()),
        b"node updating",
    );
    if let Some(endpoint) = &ctx.endpoint {
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    }
    ctx.state.unlock_for_exec();
    let error = switch.run();
    if !ctx.state.relock() {
        warn!(state_dir = %ctx.config.state_dir.display(), "another agent took the state directory while an update failed");
    }
    crate::update::record_failure(&ctx.config.state_dir, deploy, error.clone());
    Attempt::Lost {
        reason: format!("update failed: {error}"),
        authenticated: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the reconnect storm (see `transport`): a node searches no further than quinn's
    /// default. Read from the configuration's debug form, all quinn exposes.
    #[test]
    fn nodes_do_not_search_for_large_packets() {
        let config = NodeConfig::with_state_dir("/nonexistent".into());
        let described = format!("{:?}", transport(&config));
        assert!(
            described.contains("upper_bound: 1452"),
            "node transport: {described}"
        );
    }
}

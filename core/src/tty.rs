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

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use quinn::VarInt;
use sha2::{Digest, Sha256};
use tether_store::{Resolved, TtySessionRecord};
use tether_wire::admin::{AdminResponse, Role};
use tether_wire::bytes::ByteBuf;
use tether_wire::limits::{MAX_TTY_FRAME_LEN, MAX_TTY_TOKEN_LEN};
use tether_wire::stream::{FramedRecv, FramedSend};
use tether_wire::tty::{
    TtyAuthorize, TtyExit, TtyGrant, TtyInput, TtyOpen, TtyOutput, TtySessionView, TtyStatus,
    WindowSize,
};
use tether_wire::{ErrorCode, NodeId, TtySessionId};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::admin_api::{internal, resolve};
use crate::recording::{Recorder, RecordingInfo};
use crate::server::Shared;

type Refusal = (ErrorCode, String);

/// How long the node has to start the shell.
const NODE_START_TIMEOUT: Duration = Duration::from_secs(15);

/// What a token was issued for.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub session_id: TtySessionId,
    pub user: String,
    pub node_id: NodeId,
    pub hostname: String,
    pub command: Option<String>,
    pub shown_command: String,
    pub size: WindowSize,
    pub term: String,
    pub recorded: bool,
    pub expires_at_ms: i64,
}

#[derive(Debug)]
enum Slot {
    Unused(Grant),
    Used {
        session_id: TtySessionId,
        expires_at_ms: i64,
    },
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenRefused {
    Unknown,
    AlreadyUsed(TtySessionId),
    Expired(TtySessionId),
}

/// Outstanding tokens, by the SHA-256 of their text.
#[derive(Debug, Default)]
pub(crate) struct Grants {
    slots: HashMap<[u8; 32], Slot>,
}

pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Grants {
    pub fn insert(&mut self, hash: [u8; 32], grant: Grant) {
        self.slots.insert(hash, Slot::Unused(grant));
    }

    /// Uses a token: the grant the first time within its validity, a refusal otherwise.
    pub fn take(&mut self, hash: &[u8; 32], now_ms: i64) -> Result<Grant, TokenRefused> {
        let slot = self.slots.get_mut(hash).ok_or(TokenRefused::Unknown)?;
        let (session_id, expires_at_ms) = match slot {
            Slot::Used { session_id, .. } => return Err(TokenRefused::AlreadyUsed(*session_id)),
            Slot::Unused(grant) => (grant.session_id, grant.expires_at_ms),
        };
        let Slot::Unused(grant) = std::mem::replace(
            slot,
            Slot::Used {
                session_id,
                expires_at_ms,
            },
        ) else {
            unreachable!("matched above")
        };
        if now_ms > expires_at_ms {
            return Err(TokenRefused::Expired(session_id));
        }
        Ok(grant)
    }

    /// Makes a session's unused token worthless.
    pub fn revoke(&mut self, session_id: TtySessionId) {
        for slot in self.slots.values_mut() {
            if let Slot::Unused(grant) = slot
                && grant.session_id == session_id
            {
                *slot = Slot::Used {
                    session_id,
                    expires_at_ms: grant.expires_at_ms,
                };
            }
        }
    }

    /// Forgets tokens past their expiry; returns the sessions whose token was never used.
    pub fn sweep(&mut self, now_ms: i64) -> Vec<TtySessionId> {
        let mut unused = Vec::new();
        self.slots.retain(|_, slot| match slot {
            Slot::Unused(grant) if now_ms > grant.expires_at_ms => {
                unused.push(grant.session_id);
                false
            }
            Slot::Used { expires_at_ms, .. } => now_ms <= *expires_at_ms,
            Slot::Unused(_) => true,
        });
        unused
    }
}

/// At most `per_minute` events per user in any 60-second window.
#[derive(Debug, Default)]
pub(crate) struct RateLimit {
    recent: HashMap<String, VecDeque<i64>>,
}

impl RateLimit {
    /// Counts an event for `user`, or says how many ms until one is allowed.
    pub fn check(&mut self, user: &str, now_ms: i64, per_minute: u32) -> Result<(), i64> {
        const WINDOW_MS: i64 = 60_000;
        let times = self.recent.entry(user.to_string()).or_default();
        while times.front().is_some_and(|t| *t <= now_ms - WINDOW_MS) {
            times.pop_front();
        }
        if times.len() >= per_minute as usize {
            let oldest = times.front().copied().unwrap_or(now_ms);
            return Err(oldest + WINDOW_MS - now_ms);
        }
        times.push_back(now_ms);
        Ok(())
    }

    /// Drops users with no recent events.
    pub fn sweep(&mut self, now_ms: i64) {
        self.recent
            .retain(|_, times| times.back().is_some_and(|t| *t > now_ms - 60_000));
    }
}

/// A live (pending or connected) session, for limits and kills.
#[derive(Debug)]
struct LiveSession {
    node_id: NodeId,
    user: String,
    kill: CancellationToken,
    killed_by: Arc<Mutex<Option<String>>>,
}

/// Live sessions, counted per node and per user.
#[derive(Debug, Default)]
pub(crate) struct Occupancy {
    live: HashMap<TtySessionId, LiveSession>,
}

impl Occupancy {
    /// Reserves a place for a new session, or says which limit is reached.
    fn reserve(
        &mut self,
        session_id: TtySessionId,
        node_id: NodeId,
        user: &str,
        max_per_node: u32,
        max_per_user: u32,
    ) -> Result<(), Refusal> {
        let on_node = self.live.values().filter(|s| s.node_id == node_id).count();
        if on_node >= max_per_node as usize {
            return Err((
                ErrorCode::LIMIT_REACHED,
                format!(
                    "the node already has {on_node} terminal sessions, the most allowed \
                     (tty_max_per_node); wait for one to end"
                ),
            ));
        }
        let of_user = self.live.values().filter(|s| s.user == user).count();
        if of_user >= max_per_user as usize {
            return Err((
                ErrorCode::LIMIT_REACHED,
                format!(
                    "user {user} already has {of_user} terminal sessions, the most allowed \
                     (tty_max_per_user); end one first"
                ),
            ));
        }
        self.live.insert(
            session_id,
            LiveSession {
                node_id,
                user: user.to_string(),
                kill: CancellationToken::new(),
                killed_by: Arc::default(),
            },
        );
        Ok(())
    }
}

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
            )
            .await;
        }
    }
}

/// Who is asking, as core knows from the connection.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub user: String,
    pub role: Role,
    pub addr: SocketAddr,
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A node by id, unique id prefix, or exact hostname.
pub(crate) fn find_node(shared: &Shared, text: &str) -> Result<NodeId, Refusal> {
    match shared.store.resolve_node(text).map_err(internal)? {
        Resolved::NotFound | Resolved::Invalid(_) => {}
        other => return resolve("node", text, other),
    }
    let matches: Vec<NodeId> = shared
        .store
        .nodes()
        .map_err(internal)?
        .into_iter()
        .filter(|d| !d.record.deleted && d.record.hostname == text)
        .map(|d| d.record.id)
        .collect();
    match matches.len() {
        0 => Err((ErrorCode::NOT_FOUND, format!("no node matches {text:?}"))),
        1 => Ok(matches[0]),
        _ => resolve("node", text, Resolved::Ambiguous(matches)),
    }
}

/// Step one: checks everything, reserves a place, records the session `pending`, and issues the
/// token.
pub(crate) async fn authorize(
    shared: &Shared,
    caller: &Caller,
    request: TtyAuthorize,
) -> Result<TtyGrant, Refusal> {
    if caller.role == Role::Viewer {
        return Err((
            ErrorCode::PERMISSION_DENIED,
            format!(
                "user {} is a viewer; terminals need the operator or admin role",
                caller.user
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
    let node_id = find_node(shared, &request.node)?;
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

/// Ends a session's record (if still live) with `status` and `error`.
async fn end_record(
    shared: &Shared,
    session_id: TtySessionId,
    status: TtyStatus,
    error: String,
    exit: Option<TtyExit>,
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
        })
        .await;
    if let Err(e) = result {
        warn!(%session_id, error = %e, "recording the end of a terminal session failed");
    }
}

/// Step two, on the stream the client opened with `OpenTty`: checks the token, opens the node's
/// stream, and splices the two until the session ends.
pub(crate) async fn open(
    shared: Arc<Shared>,
    caller: Caller,
    token: String,
    mut client_send: FramedSend,
    client_recv: FramedRecv,
) {
    let refuse = |code: ErrorCode, message: String| TtyOutput::Error { code, message };
    let grant = if token.len() > MAX_TTY_TOKEN_LEN {
        Err(TokenRefused::Unknown)
    } else {
        shared
            .terminals
            .grants
            .lock()
            .expect("not poisoned")
            .take(&token_hash(&token), shared.now_ms())
    };
    let grant = match grant {
        Ok(grant) => grant,
        Err(refused) => {
            let (code, message) = match refused {
                TokenRefused::Unknown => (
                    ErrorCode::TOKEN_INVALID,
                    "this terminal token is not known to core (tokens do not survive a core \
                     restart); ask for a new one"
                        .to_string(),
                ),
                TokenRefused::AlreadyUsed(session_id) => (
                    ErrorCode::TOKEN_INVALID,
                    format!(
                        "this terminal token was already used (session {session_id}); \
                         a token opens one session only"
                    ),
                ),
                TokenRefused::Expired(session_id) => {
                    shared.terminals.release(session_id);
                    let reason = "the token expired before it was used".to_string();
                    end_record(&shared, session_id, TtyStatus::Error, reason, None).await;
                    (
                        ErrorCode::TOKEN_EXPIRED,
                        format!(
                            "this terminal token expired (they are valid for {}); ask for a new one",
                            humantime::format_duration(shared.config.tty_token_ttl)
                        ),
                    )
                }
            };
            warn!(user = %caller.user, %code, "terminal token refused");
            let _ = client_send.send(&refuse(code, message)).await;
            client_send.finish();
            return;
        }
    };
    let session_id = grant.session_id;
    let span = info_span!("tty", %session_id, node_id = %grant.node_id, user = %grant.user);
    async move {
        if grant.user != caller.user {
            shared.terminals.release(session_id);
            let reason = format!("the token was presented by another user ({})", caller.user);
            warn!("{reason}");
            end_record(&shared, session_id, TtyStatus::Error, reason, None).await;
            let message = "this terminal token was issued to another user".to_string();
            let _ = client_send
                .send(&refuse(ErrorCode::TOKEN_INVALID, message))
                .await;
            client_send.finish();
            return;
        }
        let mut client_send = Some(client_send);
        let (status, error, exit) =
            match run(&shared, &caller, &grant, &mut client_send, client_recv).await {
                Ok(exit) => (TtyStatus::Closed, String::new(), exit),
                Err((code, message)) => {
                    if let Some(send) = client_send.as_mut() {
                        let _ = send.send(&refuse(code, message.clone())).await;
                    }
                    (TtyStatus::Error, message, None)
                }
            };
        if let Some(send) = client_send.as_mut() {
            send.finish();
        }
        shared.terminals.release(session_id);
        info!(%status, error = %error, ?exit, "terminal session ended");
        end_record(&shared, session_id, status, error, exit).await;
    }
    .instrument(span)
    .await;
}

/// How the splice ended.
enum Ending {
    /// The shell exited.
    Exited(TtyExit),
    /// The node reported an error.
    NodeError(ErrorCode, String),
    /// The node's stream or connection failed.
    NodeLost(String),
    /// The client finished its side: it left.
    ClientLeft,
    /// The client's stream or connection failed.
    ClientLost(String),
}

struct Counters {
    input: AtomicU64,
    output: AtomicU64,
}

/// The live part of a session. `Ok(Some(exit))` when the shell exited, `Ok(None)` when the
/// client left; an error otherwise (already logged, to be sent to the client and recorded).
async fn run(
    shared: &Arc<Shared>,
    caller: &Caller,
    grant: &Grant,
    client_send: &mut Option<FramedSend>,
    client_recv: FramedRecv,
) -> Result<Option<TtyExit>, Refusal> {
    let node = shared.presence.get(grant.node_id).ok_or_else(|| {
        (
            ErrorCode::NODE_UNAVAILABLE,
            format!("node {} went offline", grant.hostname),
        )
    })?;
    let (kill, killed_by) = {
        let occupancy = shared.terminals.occupancy.lock().expect("not poisoned");
        let live = occupancy.live.get(&grant.session_id).ok_or_else(|| {
            (
                ErrorCode::SESSION_KILLED,
                "the session was ended before it started".to_string(),
            )
        })?;
        (live.kill.clone(), live.killed_by.clone())
    };
    let lost = |e: &dyn std::fmt::Display| {
        (
            ErrorCode::NODE_UNAVAILABLE,
            format!("cannot reach node {}: {e}", grant.hostname),
        )
    };
    let (send, recv) = node.connection.open_bi().await.map_err(|e| lost(&e))?;
    let mut node_send = FramedSend::new(send, MAX_TTY_FRAME_LEN);
    let mut node_recv = FramedRecv::new(recv, MAX_TTY_FRAME_LEN);
    node_send
        .send(&TtyOpen {
            session_id: grant.session_id,
            command: grant.command.clone(),
            size: grant.size,
            term: grant.term.clone(),
        })
        .await
        .map_err(|e| lost(&e))?;
    let first = tokio::select! {
        first = tokio::time::timeout(NODE_START_TIMEOUT, node_recv.next::<TtyOutput>()) => first,
        _ = kill.cancelled() => return Err(killed(&killed_by)),
    };
    let (pid, argv) = match first {
        Ok(Ok(Some(TtyOutput::Started { pid, command }))) => (pid, command),
        Ok(Ok(Some(TtyOutput::Error { code, message }))) => {
            return Err((code, format!("node {}: {message}", grant.hostname)));
        }
        Ok(Ok(Some(_))) => {
            return Err((
                ErrorCode::UNEXPECTED_MESSAGE,
                "the node answered out of turn".into(),
            ));
        }
        Ok(Ok(None)) | Ok(Err(_)) => return Err(lost(&"its stream ended")),
        Err(_) => {
            return Err((
                ErrorCode::NODE_UNAVAILABLE,
                format!(
                    "node {} did not start the shell within {} s",
                    grant.hostname,
                    NODE_START_TIMEOUT.as_secs()
                ),
            ));
        }
    };

    let now_ms = shared.now_ms();
    // The node knows what it runs (its configured shell); the record and recording say so.
    let shown = shown_command(&argv, &grant.shown_command);
    let recording = if grant.recorded {
        start_recording(shared, caller, grant, &shown, now_ms)
    } else {
        None
    };
    let file = recording.as_ref().map(|(name, _)| name.clone());
    let node_addr = node.connection.remote_address().to_string();
    let client_addr = caller.addr.to_string();
    shared
        .store
        .update_tty_session(grant.session_id, move |r| {
            r.status = TtyStatus::Connected;
            r.connected_at_ms = Some(now_ms);
            r.command = shown;
            r.node_addr = Some(node_addr);
            r.client_addr = Some(client_addr);
            r.recording = file;
        })
        .await
        .map_err(internal)?;
    info!(pid, "terminal connected");
    let Some(client) = client_send.as_mut() else {
        return Err((ErrorCode::INTERNAL, "the client's stream is gone".into()));
    };
    client
        .send(&TtyOutput::Connected {
            session_id: grant.session_id,
            node_id: grant.node_id,
            hostname: grant.hostname.clone(),
            recorded: recording.is_some(),
        })
        .await
        .map_err(|e| {
            (
                ErrorCode::INTERNAL,
                format!("the client went away before the session started: {e}"),
            )
        })?;

    let recorder = recording.map(|(_, recorder)| Arc::new(Mutex::new(recorder)));
    let started = Instant::now();
    let counters = Arc::new(Counters {
        input: AtomicU64::new(0),
        output: AtomicU64::new(0),
    });
    let size = Arc::new(Mutex::new(grant.size));

    // Two directions, two tasks: each waits only on its own flow control.
    let mut upstream = tokio::spawn(
        upstream(
            client_recv,
            node_send,
            recorder.clone(),
            started,
            counters.clone(),
            size.clone(),
        )
        .in_current_span(),
    );
    // The client's send half moves into the output task and comes back when it ends, so the last
    // frame (the exit, or why the session ended) goes on the same stream.
    let stop_output = CancellationToken::new();
    let placeholder = client_send.take().expect("checked above");
    let mut downstream = tokio::spawn(
        downstream(
            node_recv,
            placeholder,
            recorder.clone(),
            started,
            counters.clone(),
            stop_output.clone(),
        )
        .in_current_span(),
    );
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    let mut output_ended: Option<Ending> = None;
    let ending = loop {
        tokio::select! {
            _ = kill.cancelled() => break Err(killed(&killed_by)),
            _ = shared.shutdown.cancelled() => {
                break Err((ErrorCode::SHUTTING_DOWN, "core is shutting down".to_string()));
            }
            _ = flush.tick() => {
                if let Some(recorder) = &recorder {
                    recorder.lock().expect("not poisoned").flush();
                }
            }
            result = &mut upstream => {
                break Ok(result.unwrap_or_else(|e| Ending::ClientLost(e.to_string())));
            }
            result = &mut downstream, if output_ended.is_none() => {
                let (ending, returned) = result.unwrap_or_else(|e| {
                    (Ending::NodeLost(e.to_string()), None)
                });
                *client_send = returned;
                output_ended = Some(ending);
                break Ok(output_ended.take().expect("just set"));
            }
        }
    };
    // Dropping the input task's stream halves resets them: the node hangs up the shell.
    upstream.abort();
    if !downstream.is_finished() {
        stop_output.cancel();
        if let Ok((_, returned)) = downstream.await {
            *client_send = returned;
        }
    }
    let (input, output) = (
        counters.input.load(Ordering::Relaxed),
        counters.output.load(Ordering::Relaxed),
    );
    let final_size = *size.lock().expect("not poisoned");
    let mut complete = true;
    if let Some(recorder) = recorder
        && let Ok(recorder) = Arc::try_unwrap(recorder)
    {
        complete = recorder
            .into_inner()
            .expect("not poisoned")
            .finish(started.elapsed());
    }
    let _ = shared
        .store
        .update_tty_session(grant.session_id, move |r| {
            r.input_bytes = input;
            r.output_bytes = output;
            r.size = final_size;
            if !complete {
                r.recording = r.recording.take().map(|f| format!("{f} (incomplete)"));
            }
        })
        .await;
    // Whatever ended the session, the node's side ends too: an aborted task dropped its stream
    // halves, which resets them, and the node hangs up the shell.
    match ending? {
        Ending::Exited(exit) => {
            if let Some(client) = client_send.as_mut() {
                let _ = client.send(&TtyOutput::Exited(exit)).await;
            }
            Ok(Some(exit))
        }
        Ending::ClientLeft => Ok(None),
        Ending::NodeError(code, message) => {
            Err((code, format!("node {}: {message}", grant.hostname)))
        }
        Ending::NodeLost(reason) => Err((
            ErrorCode::NODE_UNAVAILABLE,
            format!("lost node {}: {reason}", grant.hostname),
        )),
        Ending::ClientLost(reason) => {
            Err((ErrorCode::INTERNAL, format!("lost the client: {reason}")))
        }
    }
}

fn killed(killed_by: &Mutex<Option<String>>) -> Refusal {
    let by = killed_by
        .lock()
        .expect("not poisoned")
        .clone()
        .unwrap_or_else(|| "an admin".into());
    (
        ErrorCode::SESSION_KILLED,
        format!("the session was ended by {by}"),
    )
}

/// The command as shown in records: the node's argv, shell-quoted where needed, bounded.
fn shown_command(argv: &[String], fallback: &str) -> String {
    if argv.is_empty() {
        return fallback.to_string();
    }
    let quoted: Vec<String> = argv
        .iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
            if plain {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', "'\\''"))
            }
        })
        .collect();
    let mut text = quoted.join(" ");
    if text.len() > 2 * tether_wire::limits::MAX_TTY_COMMAND_LEN {
        let mut cut = 2 * tether_wire::limits::MAX_TTY_COMMAND_LEN;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

fn start_recording(
    shared: &Shared,
    caller: &Caller,
    grant: &Grant,
    command: &str,
    now_ms: i64,
) -> Option<(String, Recorder)> {
    let dir = match crate::recording::recordings_dir(shared.data_dir.root()) {
        Ok(dir) => dir,
        Err(e) => {
            warn!(error = %e, "cannot create the recordings directory; not recording");
            return None;
        }
    };
    let name = crate::recording::file_name(grant.session_id);
    let path: PathBuf = dir.join(&name);
    let title = format!("{}@{}", caller.user, grant.hostname);
    let info = RecordingInfo {
        size: grant.size,
        started_at_secs: now_ms / 1000,
        command,
        title: &title,
        term: &grant.term,
    };
    match Recorder::create(&path, &info) {
        Ok(recorder) => Some((format!("recordings/{name}"), recorder)),
        Err(e) => {
            warn!(error = %e, path = %path.display(), "cannot create the recording; not recording");
            None
        }
    }
}

/// Client → node: keystrokes, resizes, end of input.
async fn upstream(
    mut client: FramedRecv,
    mut node: FramedSend,
    recorder: Option<Arc<Mutex<Recorder>>>,
    started: Instant,
    counters: Arc<Counters>,
    size: Arc<Mutex<WindowSize>>,
) -> Ending {
    loop {
        let frame = match client.next::<TtyInput>().await {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                node.finish();
                return Ending::ClientLeft;
            }
            Err(e) => return Ending::ClientLost(e.to_string()),
        };
        match &frame {
            TtyInput::Data(bytes) => {
                counters
                    .input
                    .fetch_add(bytes.0.len() as u64, Ordering::Relaxed);
            }
            TtyInput::Resize(new_size) => {
                if new_size.check().is_err() {
                    debug!(?new_size, "ignoring an impossible window size");
                    continue;
                }
                *size.lock().expect("not poisoned") = *new_size;
                if let Some(recorder) = &recorder {
                    recorder
                        .lock()
                        .expect("not poisoned")
                        .resize(started.elapsed(), *new_size);
                }
            }
            _ => {}
        }
        if let Err(e) = node.send(&frame).await {
            return Ending::NodeLost(e.to_string());
        }
    }
}

/// Node → client: output, then the exit. Gives the client's stream back for the last frame,
/// unless `stop` interrupted a write half-way (then the stream is reset with the session-killed
/// code: a partial frame must never be followed by another).
async fn downstream(
    mut node: FramedRecv,
    mut client: FramedSend,
    recorder: Option<Arc<Mutex<Recorder>>>,
    started: Instant,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> (Ending, Option<FramedSend>) {
    let ending = loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => return (Ending::ClientLeft, Some(client)),
            frame = node.next::<TtyOutput>() => match frame {
                Ok(Some(frame)) => frame,
                Ok(None) => break Ending::NodeLost("the node ended the stream without an exit".into()),
                Err(e) => break Ending::NodeLost(e.to_string()),
            },
        };
        match frame {
            TtyOutput::Data(bytes) => {
                counters
                    .output
                    .fetch_add(bytes.0.len() as u64, Ordering::Relaxed);
                if let Some(recorder) = &recorder {
                    recorder
                        .lock()
                        .expect("not poisoned")
                        .output(started.elapsed(), &bytes.0);
                }
                let data = TtyOutput::Data(bytes);
                let sent = tokio::select! {
                    _ = stop.cancelled() => {
                        let _ = client.stream_mut().reset(VarInt::from_u32(
                            ErrorCode::SESSION_KILLED.close_code(),
                        ));
                        return (Ending::ClientLeft, None);
                    }
                    sent = client.send(&data) => sent,
                };
                if let Err(e) = sent {
                    break Ending::ClientLost(e.to_string());
                }
            }
            TtyOutput::Exited(exit) => break Ending::Exited(exit),
            TtyOutput::Error { code, message } => break Ending::NodeError(code, message),
            other => {
                debug!(?other, "ignoring an unexpected frame from the node");
            }
        }
    };
    (ending, Some(client))
}

/// Session records as admins see them.
pub(crate) fn view(record: TtySessionRecord) -> TtySessionView {
    TtySessionView {
        id: record.id,
        node_id: record.node_id,
        hostname: record.hostname,
        user: record.user,
        status: record.status,
        command: record.command,
        size: record.size,
        created_at_ms: record.created_at_ms,
        connected_at_ms: record.connected_at_ms,
        closed_at_ms: record.closed_at_ms,
        client_addr: record.client_addr,
        node_addr: record.node_addr,
        recording: record.recording,
        error: record.error,
        exit: record.exit,
        output_bytes: record.output_bytes,
        input_bytes: record.input_bytes,
    }
}

/// Resolves a session id or unique prefix.
pub(crate) fn find_session(shared: &Shared, text: &str) -> Result<TtySessionRecord, Refusal> {
    let id = resolve(
        "terminal session",
        text,
        shared.store.resolve_tty_session(text).map_err(internal)?,
    )?;
    shared
        .store
        .tty_session(id)
        .map_err(internal)?
        .ok_or_else(|| (ErrorCode::NOT_FOUND, format!("no terminal session {id}")))
}

/// Ends a live session: the splice stops, the node hangs up the shell, the client is told.
pub(crate) async fn kill(
    shared: &Shared,
    caller: &Caller,
    text: &str,
) -> Result<TtySessionView, Refusal> {
    let record = find_session(shared, text)?;
    if caller.role != Role::Admin && record.user != caller.user {
        return Err((
            ErrorCode::PERMISSION_DENIED,
            "only admins may end other users' terminal sessions".into(),
        ));
    }
    if !record.status.is_live() {
        return Err((
            ErrorCode::CONFLICT,
            format!("session {} is already {}", record.id, record.status),
        ));
    }
    let by = format!("{} {}", caller.role, caller.user);
    let found = {
        let occupancy = shared.terminals.occupancy.lock().expect("not poisoned");
        occupancy.live.get(&record.id).map(|live| {
            *live.killed_by.lock().expect("not poisoned") = Some(by.clone());
            live.kill.cancel();
        })
    };
    info!(session_id = %record.id, %by, "terminal session killed");
    if found.is_none() || record.status == TtyStatus::Pending {
        // Not spliced by anyone (pending, or left over): end the record here, and make sure its
        // token can no longer be used.
        shared.terminals.release(record.id);
        shared
            .terminals
            .grants
            .lock()
            .expect("not poisoned")
            .revoke(record.id);
        end_record(
            shared,
            record.id,
            TtyStatus::Error,
            format!("the session was ended by {by}"),
            None,
        )
        .await;
    } else {
        // The splice records the end; wait for it briefly so the answer shows it.
        for _ in 0..50 {
            if let Ok(Some(now)) = shared.store.tty_session(record.id)
                && !now.status.is_live()
            {
                return Ok(view(now));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let record = find_session(shared, &record.id.to_string())?;
    Ok(view(record))
}

/// Streams a recording: the session record, then the file in chunks.
pub(crate) async fn send_recording(
    shared: &Shared,
    caller: &Caller,
    text: &str,
    send: &mut FramedSend,
) -> Result<(), Refusal> {
    let record = find_session(shared, text)?;
    if caller.role != Role::Admin && record.user != caller.user {
        return Err((
            ErrorCode::PERMISSION_DENIED,
            "only admins may replay other users' terminal sessions".into(),
        ));
    }
    let Some(relative) = record.recording.clone() else {
        return Err((
            ErrorCode::NOT_FOUND,
            format!("session {} was not recorded", record.id),
        ));
    };
    // Only the session's own file name is trusted, never a path from the record.
    let path = crate::recording::recordings_dir(shared.data_dir.root())
        .map_err(|e| (ErrorCode::INTERNAL, format!("recordings directory: {e}")))?
        .join(crate::recording::file_name(record.id));
    let mut file = tokio::fs::File::open(&path).await.map_err(|e| {
        (
            ErrorCode::NOT_FOUND,
            format!("the recording {relative} cannot be read: {e}"),
        )
    })?;
    let gone = |e: &dyn std::fmt::Display| (ErrorCode::INTERNAL, format!("client went away: {e}"));
    send.send(&AdminResponse::TtySession(view(record)))
        .await
        .map_err(|e| gone(&e))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        use tokio::io::AsyncReadExt;
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| (ErrorCode::INTERNAL, format!("reading the recording: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        send.send(&AdminResponse::Recording(ByteBuf(buf[..n].to_vec())))
            .await
            .map_err(|e| gone(&e))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(expires_at_ms: i64) -> Grant {
        Grant {
            session_id: TtySessionId::random(),
            user: "alice".into(),
            node_id: NodeId::random(),
            hostname: "web-1".into(),
            command: None,
            shown_command: "login shell".into(),
            size: WindowSize::DEFAULT,
            term: "xterm".into(),
            recorded: true,
            expires_at_ms,
        }
    }

    #[test]
    fn a_token_works_once_and_only_in_time() {
        let mut grants = Grants::default();
        let token = new_token();
        assert!(token.len() >= 43, "256 bits of randomness");
        let hash = token_hash(&token);
        let issued = grant(300_000);
        grants.insert(hash, issued.clone());
        assert_eq!(
            grants.take(&token_hash("guess"), 1_000).unwrap_err(),
            TokenRefused::Unknown
        );
        assert_eq!(
            grants.take(&hash, 1_000).unwrap().session_id,
            issued.session_id
        );
        assert_eq!(
            grants.take(&hash, 2_000).unwrap_err(),
            TokenRefused::AlreadyUsed(issued.session_id)
        );

        let late = grant(300_000);
        let late_hash = token_hash("late");
        grants.insert(late_hash, late.clone());
        assert_eq!(
            grants.take(&late_hash, 300_001).unwrap_err(),
            TokenRefused::Expired(late.session_id)
        );
        assert_eq!(
            grants.take(&late_hash, 300_002).unwrap_err(),
            TokenRefused::AlreadyUsed(late.session_id),
            "an expired token stays dead"
        );
    }

    #[test]
    fn sweeping_reports_unused_tokens_and_forgets_used_ones() {
        let mut grants = Grants::default();
        let unused = grant(1_000);
        grants.insert(token_hash("a"), unused.clone());
        grants.insert(token_hash("b"), grant(1_000));
        grants.take(&token_hash("b"), 500).unwrap();
        grants.insert(token_hash("c"), grant(5_000));
        assert!(grants.sweep(900).is_empty());
        assert_eq!(grants.sweep(1_001), vec![unused.session_id]);
        assert_eq!(grants.slots.len(), 1, "only the token still valid is kept");
    }

    #[test]
    fn authorizations_are_limited_per_user_per_minute() {
        let mut rate = RateLimit::default();
        for i in 0..3 {
            assert!(rate.check("alice", 1_000 + i, 3).is_ok());
        }
        let wait = rate.check("alice", 2_000, 3).unwrap_err();
        assert_eq!(wait, 59_000);
        assert!(rate.check("bob", 2_000, 3).is_ok(), "per user");
        assert!(rate.check("alice", 61_000, 3).is_ok(), "the window slides");
        rate.sweep(200_000);
        assert!(rate.recent.is_empty());
    }

    #[test]
    fn live_sessions_are_limited_per_node_and_per_user() {
        let mut occupancy = Occupancy::default();
        let (a, b) = (NodeId::random(), NodeId::random());
        let reserve = |o: &mut Occupancy, node, user: &str| {
            o.reserve(TtySessionId::random(), node, user, 2, 3)
        };
        reserve(&mut occupancy, a, "alice").unwrap();
        reserve(&mut occupancy, a, "bob").unwrap();
        let (code, message) = reserve(&mut occupancy, a, "carol").unwrap_err();
        assert_eq!(code, ErrorCode::LIMIT_REACHED);
        assert!(message.contains("tty_max_per_node"), "{message}");
        reserve(&mut occupancy, b, "alice").unwrap();
        reserve(&mut occupancy, b, "alice").unwrap();
        let (_, message) = reserve(&mut occupancy, NodeId::random(), "alice").unwrap_err();
        assert!(message.contains("tty_max_per_user"), "{message}");
    }
}

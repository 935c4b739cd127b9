//! Step two of a terminal: the token presented, the node's stream opened, and the two streams
//! spliced — one task per direction, each waiting only on its own flow control — with the
//! recording written as output passes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quinn::VarInt;
use tether_wire::ErrorCode;
use tether_wire::limits::{MAX_TTY_FRAME_LEN, MAX_TTY_TOKEN_LEN};
use tether_wire::stream::{FramedRecv, FramedSend};
use tether_wire::tty::{TtyExit, TtyInput, TtyOpen, TtyOutput, TtyStatus, WindowSize};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::policy::TokenRefused;
use super::{Caller, Grant, Refusal, Tally, end_record, token_hash};
use crate::admin::internal;
use crate::config::RecordingPolicy;
use crate::recording::{Recorder, RecordingInfo};
use crate::server::Shared;

/// How long the node has to start the shell.
const NODE_START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the node's exit report may follow its refusal of further input.
const EXIT_AFTER_INPUT_STOPPED: Duration = Duration::from_secs(2);

/// Step two, on the stream the client opened with `OpenTty`: checks the token, opens the node's
/// stream, and splices the two until the session ends.
pub(crate) async fn open(
    shared: Arc<Shared>,
    caller: Caller,
    token: String,
    mut client_send: FramedSend,
    client_recv: FramedRecv,
    audit: crate::admin::Pending,
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
                    end_record(&shared, session_id, TtyStatus::Error, reason, None, None).await;
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
            audit.done(Err(&(code, message.clone()))).await;
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
            end_record(&shared, session_id, TtyStatus::Error, reason, None, None).await;
            let message = "this terminal token was issued to another user".to_string();
            audit
                .done(Err(&(ErrorCode::TOKEN_INVALID, message.clone())))
                .await;
            let _ = client_send
                .send(&refuse(ErrorCode::TOKEN_INVALID, message))
                .await;
            client_send.finish();
            return;
        }
        audit.done(Ok(Some(session_id.to_string()))).await;
        let mut client_send = Some(client_send);
        let mut tally = None;
        let (status, error, exit) = match run(
            &shared,
            &caller,
            &grant,
            &mut client_send,
            client_recv,
            &mut tally,
        )
        .await
        {
            Ok(exit) => (TtyStatus::Closed, String::new(), exit),
            Err((code, message)) => {
                if let Some(send) = client_send.as_mut() {
                    let _ = send.send(&refuse(code, message.clone())).await;
                }
                if code == ErrorCode::POLICY_REFUSED {
                    crate::admin::audit::policy_refusal(
                        &shared,
                        &caller.user,
                        "OpenTty",
                        grant.node_id,
                        vec![("session".into(), session_id.to_string())],
                        &message,
                    )
                    .await;
                    (TtyStatus::Refused, message, None)
                } else {
                    (TtyStatus::Error, message, None)
                }
            }
        };
        if let Some(send) = client_send.as_mut() {
            send.finish();
        }
        shared.terminals.release(session_id);
        info!(%status, error = %error, ?exit, "terminal session ended");
        end_record(&shared, session_id, status, error, exit, tally).await;
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
    /// The recording stopped and core requires recordings.
    RecordingStopped(String),
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
    tally: &mut Option<Tally>,
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
        match start_recording(shared, caller, grant, &shown, now_ms) {
            Ok(recording) => Some(recording),
            Err(why) if shared.config.tty_recording == RecordingPolicy::Required => {
                return Err((
                    ErrorCode::INTERNAL,
                    format!(
                        "core cannot record this session ({why}) and requires every session to \
                         be recorded (tty_recording = \"required\")"
                    ),
                ));
            }
            Err(_) => None,
        }
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

    // Under `required`, a recording that stops (full disk, size limit) ends the session.
    let must_record =
        recorder.is_some() && shared.config.tty_recording == RecordingPolicy::Required;
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
            must_record,
        )
        .in_current_span(),
    );
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    let mut upstream_ended = false;
    let ending = loop {
        tokio::select! {
            _ = kill.cancelled() => break Err(killed(&killed_by)),
            _ = shared.shutdown.cancelled() => {
                break Err((ErrorCode::SHUTTING_DOWN, "core is shutting down".to_string()));
            }
            _ = flush.tick() => {
                if let Some(recorder) = &recorder {
                    let mut recorder = recorder.lock().expect("not poisoned");
                    // Recordings leave the database its margin of free space.
                    let keep = shared.config.min_free_space;
                    if let Some(free) = tether_store::free_space(shared.data_dir.root())
                        && free < keep
                    {
                        recorder.give_up(format!(
                            "the disk has {} free and core keeps {} free (min_free_space)",
                            bytesize::ByteSize(free),
                            bytesize::ByteSize(keep)
                        ));
                    }
                    recorder.flush();
                    if must_record && let Some(stopped) = recorder.stopped() {
                        break Ok(Ending::RecordingStopped(stopped.note().unwrap_or_default()));
                    }
                }
            }
            result = &mut upstream => {
                upstream_ended = true;
                let ending = result.unwrap_or_else(|e| Ending::ClientLost(e.to_string()));
                // A node stops reading input once its shell has exited, so input that was on
                // its way fails to send while the exit is still coming on the output stream:
                // that stream, not the input's, says how the session ended.
                if matches!(ending, Ending::NodeLost(_))
                    && let Ok(result) = tokio::time::timeout(EXIT_AFTER_INPUT_STOPPED, &mut downstream).await
                {
                    let (ending, returned) = result.unwrap_or_else(|e| {
                        (Ending::NodeLost(e.to_string()), None)
                    });
                    *client_send = returned;
                    break Ok(ending);
                }
                break Ok(ending);
            }
            result = &mut downstream => {
                let (ending, returned) = result.unwrap_or_else(|e| {
                    (Ending::NodeLost(e.to_string()), None)
                });
                *client_send = returned;
                break Ok(ending);
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
    // Both tasks gone, so the recorder is ours alone to finish (an abort takes effect when the
    // task is next polled).
    if !upstream_ended {
        let _ = upstream.await;
    }
    let recording_outcome = recorder
        .and_then(|recorder| Arc::try_unwrap(recorder).ok())
        .map(|recorder| {
            recorder
                .into_inner()
                .expect("not poisoned")
                .finish(started.elapsed())
        });
    *tally = Some(Tally {
        input_bytes: counters.input.load(Ordering::Relaxed),
        output_bytes: counters.output.load(Ordering::Relaxed),
        size: *size.lock().expect("not poisoned"),
        recording: recording_outcome,
    });
    // A kill that also closed the client's connection (a disabled user, a revoked
    // certificate) is the reason, whichever was noticed first.
    if killed_by.lock().expect("not poisoned").is_some()
        && matches!(ending, Ok(Ending::ClientLost(_) | Ending::ClientLeft))
    {
        return Err(killed(&killed_by));
    }
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
        Ending::RecordingStopped(why) => Err((
            ErrorCode::INTERNAL,
            format!(
                "the session ended because its recording stopped ({why}) and core requires every \
                 session to be recorded (tty_recording = \"required\")"
            ),
        )),
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

/// Creates the session's recording: its path relative to the data directory, and the recorder;
/// why not, if it cannot be created.
fn start_recording(
    shared: &Shared,
    caller: &Caller,
    grant: &Grant,
    command: &str,
    now_ms: i64,
) -> Result<(String, Recorder), String> {
    let dir = match crate::recording::recordings_dir(shared.data_dir.root()) {
        Ok(dir) => dir,
        Err(e) => {
            warn!(error = %e, "cannot create the recordings directory; not recording");
            return Err(e.to_string());
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
    match Recorder::create(&path, &info, shared.config.tty_recording_max) {
        Ok(recorder) => Ok((format!("recordings/{name}"), recorder)),
        Err(e) => {
            warn!(error = %e, path = %path.display(), "cannot create the recording; not recording");
            Err(e.to_string())
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
    must_record: bool,
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
                    let mut recorder = recorder.lock().expect("not poisoned");
                    recorder.output(started.elapsed(), &bytes.0);
                    if must_record && let Some(stopped) = recorder.stopped() {
                        let why = stopped.note().unwrap_or_default();
                        // Nothing unrecorded reaches the client.
                        break Ending::RecordingStopped(why);
                    }
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

#[cfg(test)]
mod tests {
    use super::shown_command;

    #[test]
    fn commands_are_shown_quoted_where_needed() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shown_command(&argv(&["/bin/bash", "--login"]), "x"),
            "/bin/bash --login"
        );
        assert_eq!(
            shown_command(&argv(&["/bin/sh", "-c", "echo it's"]), "x"),
            "/bin/sh -c 'echo it'\\''s'"
        );
        assert_eq!(shown_command(&[], "login shell"), "login shell");
    }
}

//! Terminal session records for admins: views, lookups, kills and recordings.

use std::time::Duration;

use tether_store::TtySessionRecord;
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminResponse, Role};
use tether_wire::bytes::ByteBuf;
use tether_wire::stream::FramedSend;
use tether_wire::tty::{TtySessionView, TtyStatus};
use tracing::info;

use super::{Caller, Refusal, end_unspliced};
use crate::admin::{internal, resolve};
use crate::server::Shared;

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
        recording_note: record.recording_note,
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
    let found = shared.terminals.signal_kill(record.id, &by);
    info!(session_id = %record.id, %by, "terminal session killed");
    if !found || record.status == TtyStatus::Pending {
        // Not spliced by anyone (pending, or left over).
        end_unspliced(shared, record.id, &by).await;
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
    if let Some(note) = record
        .recording_note
        .as_deref()
        .filter(|note| note.starts_with("deleted"))
    {
        return Err((
            ErrorCode::NOT_FOUND,
            format!("the recording of session {} was {note}", record.id),
        ));
    }
    // Only the session's own file names are trusted, never a path from the record: the
    // compressed one, or the plain one of a recording made before compression.
    let dir = crate::recording::recordings_dir(shared.data_dir.root())
        .map_err(|e| (ErrorCode::INTERNAL, format!("recordings directory: {e}")))?;
    let mut file =
        match tokio::fs::File::open(dir.join(crate::recording::file_name(record.id))).await {
            Ok(file) => file,
            Err(_) => tokio::fs::File::open(dir.join(crate::recording::plain_file_name(record.id)))
                .await
                .map_err(|e| {
                    let why = if e.kind() == std::io::ErrorKind::NotFound {
                        "it is not on this core (deleted by hand, or this core was restored \
                         from a backup taken without recordings)"
                            .to_string()
                    } else {
                        e.to_string()
                    };
                    (
                        ErrorCode::NOT_FOUND,
                        format!("the recording {relative} cannot be read: {why}"),
                    )
                })?,
        };
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

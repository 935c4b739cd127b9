//! Terminal sessions: list, kill, and recordings, streamed to the player as asciicast v2 text
//! while they are read from core and decompressed, never held whole.

use std::io::Read;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tether_client::Answers;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tokio::sync::mpsc;
use tracing::debug;

use super::{ApiError, AppState, QueryOf, User, first, gather, ok};

/// Sessions per answer unless asked otherwise, and at most.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

async fn sessions(
    state: &AppState,
    user: &User,
    active: bool,
    node: Option<String>,
    limit: Option<u32>,
) -> Result<Response, ApiError> {
    let limit = super::limit(limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let request = AdminRequest::ListTty {
        active,
        node: node.filter(|n| !n.is_empty()),
        limit,
    };
    let answer = state.ask(user, &request).await?;
    Ok(ok(gather(answer, |r| match r {
        AdminResponse::TtySessions(sessions) => Some(sessions),
        _ => None,
    })?))
}

/// `GET /api/v1/sessions`.
pub(crate) async fn list(
    State(state): State<AppState>,
    user: User,
    QueryOf(params): QueryOf<Params>,
) -> Result<Response, ApiError> {
    sessions(
        &state,
        &user,
        params.active.unwrap_or(false),
        params.node,
        params.limit,
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeParams {
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/v1/nodes/{id}/sessions`.
pub(crate) async fn of_node(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    QueryOf(params): QueryOf<NodeParams>,
) -> Result<Response, ApiError> {
    sessions(&state, &user, false, Some(id), params.limit.or(Some(20))).await
}

/// `GET /api/v1/sessions/{id}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let answer = state.ask(&user, &AdminRequest::ShowTty { id }).await?;
    Ok(ok(first(answer, |r| match r {
        AdminResponse::TtySession(session) => Some(session),
        _ => None,
    })?))
}

/// `POST /api/v1/sessions/{id}/kill`.
pub(crate) async fn kill(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let answer = state.ask(&user, &AdminRequest::KillTty { id }).await?;
    Ok(ok(first(answer, |r| match r {
        AdminResponse::TtySession(session) => Some(session),
        _ => None,
    })?))
}

/// `GET /api/v1/sessions/{id}/recording`: the asciicast v2 file.
pub(crate) async fn recording(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let client = state.client()?;
    let mut answers = client
        .stream(&user.wrap(&AdminRequest::TtyRecording { id }))
        .await?;
    // The session's record comes first; an error (no such session, not allowed, no
    // recording) comes instead of it, while an HTTP status can still say so.
    let session = match answers.next().await? {
        Some(AdminResponse::TtySession(session)) => session,
        _ => return Err(ApiError::unexpected()),
    };
    // Compressed chunks from core → a blocking decompressor → text chunks to the browser;
    // each channel holds a few chunks, so a slow browser slows the reading from core.
    let (compressed_tx, compressed_rx) = mpsc::channel::<Vec<u8>>(4);
    let (text_tx, text_rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::spawn(pump(answers, compressed_tx));
    tokio::task::spawn_blocking(move || decompress(compressed_rx, text_tx));
    let stream = futures_util::stream::unfold(text_rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-asciicast"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("inline; filename=\"{}.cast\"", session.id)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Reads the recording's chunks from core.
async fn pump(mut answers: Answers, tx: mpsc::Sender<Vec<u8>>) {
    loop {
        match answers.next().await {
            Ok(Some(AdminResponse::Recording(chunk))) => {
                if tx.send(chunk.0).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Ok(Some(_)) => continue,
            Err(e) => {
                debug!(error = %e, "recording cut short");
                return;
            }
        }
    }
}

/// A `Read` over the chunks arriving from core.
struct Chunks {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for Chunks {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn decompress(rx: mpsc::Receiver<Vec<u8>>, tx: mpsc::Sender<Result<Vec<u8>, std::io::Error>>) {
    let chunks = Chunks {
        rx,
        chunk: Vec::new(),
        at: 0,
    };
    let mut text = match tether_client::recording::open(chunks) {
        Ok(text) => text,
        Err(e) => {
            let _ = tx.blocking_send(Err(e));
            return;
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match text.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tx.blocking_send(Ok(buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
}

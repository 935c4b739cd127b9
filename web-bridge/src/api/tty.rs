//! `/api/v1/tty?node=ID&cols=80&rows=24`: a terminal in the page. Binary frames whose first
//! byte is the kind, as ttyd does it (see `docs/web.md`): the page sends input, resizes, pause
//! and resume; the bridge sends output bytes as the shell wrote them (a UTF-8 character may be
//! split across frames: xterm.js puts it together), then the exit.
//!
//! Flow control: while the page says pause, the bridge stops reading core's stream, so QUIC's
//! flow control stops core, which stops reading the node, whose shell then blocks on a full
//! PTY. Nothing buffers without bound on the way.

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tether_client::{TtyConnection, TtyEvent};
use tether_wire::admin::AdminRequest;
use tether_wire::tty::{TtyAuthorize, WindowSize};
use tokio::sync::watch;

use super::{ApiError, AppState, QueryOf, User};
use crate::api::live::{PING_EVERY, close_with};

/// Browser → bridge kinds.
const INPUT: u8 = b'0';
const RESIZE: u8 = b'1';
const PAUSE: u8 = b'2';
const RESUME: u8 = b'3';
/// Bridge → browser kinds.
const OUTPUT: u8 = b'0';
const CONNECTED: u8 = b'1';
const EXIT: u8 = b'2';
const ERROR: u8 = b'3';

/// The largest message a page may send (a paste arrives as one), bytes; core gets it in
/// chunks.
const MAX_MESSAGE: usize = 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    node: String,
    #[serde(default)]
    cols: Option<u16>,
    #[serde(default)]
    rows: Option<u16>,
}

/// `GET /api/v1/tty` (WebSocket).
pub(crate) async fn socket(
    State(state): State<AppState>,
    user: User,
    QueryOf(params): QueryOf<Params>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let size = WindowSize {
        cols: params.cols.unwrap_or(80),
        rows: params.rows.unwrap_or(24),
    };
    size.check().map_err(ApiError::bad_request)?;
    let guard = state.open_socket(&user)?;
    Ok(super::upgrade_counted(
        guard,
        upgrade,
        MAX_MESSAGE,
        move |socket| serve(state, user, params.node, size, socket),
    ))
}

fn framed(kind: u8, body: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(body.len() + 1);
    bytes.push(kind);
    bytes.extend_from_slice(body);
    Message::Binary(bytes.into())
}

/// Tells the page what went wrong in the terminal's own terms, then closes.
async fn fail(mut socket: WebSocket, error: ApiError) {
    let body = json!({"code": error.code, "message": error.message}).to_string();
    let _ = socket.send(framed(ERROR, body.as_bytes())).await;
    close_with(socket, &error).await;
}

async fn open(
    state: &AppState,
    user: &User,
    node: String,
    size: WindowSize,
) -> Result<TtyConnection, ApiError> {
    let client = state.client()?;
    let authorize = TtyAuthorize {
        node,
        command: None,
        size,
        term: Some("xterm-256color".to_string()),
        record: None,
    };
    let grant = client
        .request(&user.wrap(&AdminRequest::AuthorizeTty(authorize)))
        .await?;
    let token = match grant.into_iter().next() {
        Some(tether_wire::admin::AdminResponse::TtyGrant(grant)) => grant.token,
        _ => return Err(ApiError::unexpected()),
    };
    Ok(client
        .open_tty_request(&user.wrap(&AdminRequest::OpenTty { token }))
        .await?)
}

async fn serve(state: AppState, user: User, node: String, size: WindowSize, socket: WebSocket) {
    let tty = match open(&state, &user, node, size).await {
        Ok(tty) => tty,
        Err(error) => return fail(socket, error).await,
    };
    let TtyConnection {
        session_id,
        node_id,
        hostname,
        recorded,
        mut input,
        mut output,
    } = tty;
    let (mut to_page, mut from_page) = futures_util::StreamExt::split(socket);
    use futures_util::{SinkExt as _, StreamExt as _};
    let connected = json!({
        "session_id": session_id, "node_id": node_id, "hostname": hostname, "recorded": recorded,
    })
    .to_string();
    if to_page
        .send(framed(CONNECTED, connected.as_bytes()))
        .await
        .is_err()
    {
        input.close();
        return;
    }
    let (paused_tx, mut paused) = watch::channel(false);
    // Page → core: keystrokes, resizes, pause and resume.
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = from_page.next().await {
            let bytes = match message {
                Message::Binary(bytes) => bytes,
                Message::Text(text) => text.as_bytes().to_vec().into(),
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&kind, body)) = bytes.split_first() else {
                continue;
            };
            let sent = match kind {
                INPUT => input.write(body).await,
                RESIZE => match serde_json::from_slice::<WindowSize>(body) {
                    Ok(size) if size.check().is_ok() => input.resize(size).await,
                    _ => continue,
                },
                PAUSE => {
                    paused_tx.send_replace(true);
                    continue;
                }
                RESUME => {
                    paused_tx.send_replace(false);
                    continue;
                }
                _ => continue,
            };
            if sent.is_err() {
                break;
            }
        }
        // The page went away (a closed tab) or the session ended: core hangs up the shell.
        input.close();
    });
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        // Paused: nothing is read from core until the page catches up.
        while *paused.borrow_and_update() {
            tokio::select! {
                changed = paused.changed() => if changed.is_err() { break },
                _ = ping.tick() => {
                    if to_page.send(Message::Ping(Vec::new().into())).await.is_err() {
                        reader.abort();
                        return;
                    }
                }
            }
        }
        tokio::select! {
            event = output.next() => match event {
                Ok(Some(TtyEvent::Output(bytes))) => {
                    if to_page.send(framed(OUTPUT, &bytes)).await.is_err() {
                        break;
                    }
                }
                Ok(Some(TtyEvent::Exited(exit))) => {
                    let body = json!({"code": exit.exit_code, "signal": exit.signal}).to_string();
                    let _ = to_page.send(framed(EXIT, body.as_bytes())).await;
                    let _ = to_page.send(Message::Close(None)).await;
                    break;
                }
                Ok(None) => {
                    let body = json!({"code": null, "signal": null, "reason": "core ended the session"});
                    let _ = to_page.send(framed(EXIT, body.to_string().as_bytes())).await;
                    let _ = to_page.send(Message::Close(None)).await;
                    break;
                }
                Err(error) => {
                    let error: ApiError = error.into();
                    let body = json!({"code": error.code, "message": error.message}).to_string();
                    let _ = to_page.send(framed(ERROR, body.as_bytes())).await;
                    let _ = to_page.send(Message::Close(None)).await;
                    break;
                }
            },
            _ = paused.changed() => {}
            _ = ping.tick() => {
                if to_page.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    reader.abort();
}

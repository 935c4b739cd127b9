//! `/api/v1/live`: what a page watches (the overview, a page of nodes, one node), pushed as it
//! changes. The bridge holds one `Watch` stream to core per socket (core looks every interval
//! and sends only changes) and says `reconnecting` while core is away, then watches again.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use tether_client::{Answers, ClientError};
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::fleet::WatchSpec;

use super::nodes::ListParams;
use super::{ApiError, AppState, User};
use crate::LinkState;

/// Pings keep reverse proxies (nginx closes idle sockets after 60 s) from closing sockets.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(25);
/// The largest message a page may send on the live socket, bytes.
const MAX_MESSAGE: usize = 16 * 1024;

/// Sends one JSON text message.
pub(crate) async fn send_json(socket: &mut WebSocket, value: &Value) -> Result<(), axum::Error> {
    socket.send(Message::Text(value.to_string().into())).await
}

/// Sends `{"type": "error", "code", "message"}`.
async fn send_error(socket: &mut WebSocket, error: &ApiError) -> Result<(), axum::Error> {
    let mut body = error.body()["error"].clone();
    body["type"] = "error".into();
    send_json(socket, &body).await
}

/// Sends an error message, then closes (1008 for a policy refusal, 1011 otherwise).
pub(crate) async fn close_with(mut socket: WebSocket, error: &ApiError) {
    let _ = send_error(&mut socket, error).await;
    let code = if error.status.is_client_error() {
        1008
    } else {
        1011
    };
    let mut reason = error.code.clone();
    reason.truncate(120);
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchMessage {
    watch: Watched,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Watched {
    #[serde(default)]
    overview: bool,
    #[serde(default)]
    nodes: Option<ListParams>,
    #[serde(default)]
    node: Option<String>,
}

impl Watched {
    fn spec(self, interval: Duration) -> Result<Option<WatchSpec>, ApiError> {
        let nodes = self.nodes.map(ListParams::query).transpose()?;
        let node = self.node.filter(|n| !n.is_empty());
        if !self.overview && nodes.is_none() && node.is_none() {
            return Ok(None);
        }
        let spec = WatchSpec {
            overview: self.overview,
            nodes,
            node,
            interval_ms: u32::try_from(interval.as_millis()).unwrap_or(u32::MAX),
        };
        spec.check().map_err(ApiError::bad_request)?;
        Ok(Some(spec))
    }
}

/// `GET /api/v1/live` (WebSocket).
pub(crate) async fn socket(
    State(state): State<AppState>,
    user: User,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let guard = state.open_socket(&user)?;
    Ok(super::upgrade_counted(
        guard,
        upgrade,
        MAX_MESSAGE,
        move |socket| serve(state, user, socket),
    ))
}

fn frame(response: AdminResponse) -> Option<Value> {
    let (kind, data) = match response {
        AdminResponse::Overview(overview) => ("overview", serde_json::to_value(overview)),
        AdminResponse::NodePage(page) => ("nodes", serde_json::to_value(page)),
        AdminResponse::Node(node) => ("node", serde_json::to_value(node)),
        _ => return None,
    };
    Some(json!({"type": kind, "data": data.ok()?}))
}

async fn serve(state: AppState, user: User, mut socket: WebSocket) {
    let mut link = state.link.subscribe();
    let mut spec: Option<WatchSpec> = None;
    let mut answers: Option<Answers> = None;
    let mut said = None;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        let linked = *link.borrow_and_update();
        if said != Some(linked) {
            said = Some(linked);
            let message = json!({"type": "core", "state": linked.as_str()});
            if send_json(&mut socket, &message).await.is_err() {
                return;
            }
        }
        // (Re)open the watch when there is one to open and core is there.
        if answers.is_none()
            && linked == LinkState::Connected
            && let (Some(wanted), Some(client)) = (spec.clone(), state.link.client())
        {
            match client
                .stream(&user.wrap(&AdminRequest::Watch(wanted)))
                .await
            {
                Ok(stream) => answers = Some(stream),
                Err(error) => {
                    let error: ApiError = error.into();
                    if error.status.is_client_error() {
                        if error.code == "unauthenticated" {
                            return close_with(socket, &error).await;
                        }
                        spec = None;
                        if send_error(&mut socket, &error).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
        tokio::select! {
            answer = next(&mut answers) => match answer {
                Ok(Some(response)) => {
                    if let Some(message) = frame(response)
                        && send_json(&mut socket, &message).await.is_err()
                    {
                        return;
                    }
                }
                Ok(None) => answers = None,
                // Refused (the session ended, the role changed): the page is told, and closes.
                // Anything else (core shutting down) passes like a lost connection.
                Err(ClientError::Core { code, message })
                    if ApiError::from(ClientError::Core { code, message: String::new() })
                        .status
                        .is_client_error() =>
                {
                    // An ended session closes the socket (the page goes to its login); a watch
                    // refused for what it asks (no such node) is dropped, and the page told.
                    let error: ApiError = ClientError::Core { code, message }.into();
                    if error.code == "unauthenticated" {
                        return close_with(socket, &error).await;
                    }
                    answers = None;
                    spec = None;
                    if send_error(&mut socket, &error).await.is_err() {
                        return;
                    }
                }
                // Core went away: said by the link's state; the watch reopens when it is back.
                Err(_) => {
                    answers = None;
                    if state.link.state() == LinkState::Connected {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let wanted = serde_json::from_str::<WatchMessage>(&text)
                        .map_err(|e| ApiError::bad_request(format!("not a watch message: {e}")))
                        .and_then(|m| m.watch.spec(state.settings.watch_interval));
                    match wanted {
                        Ok(wanted) => {
                            // A new watch replaces the old one (dropping it tells core to stop).
                            answers = None;
                            spec = wanted;
                        }
                        Err(error) => {
                            if send_error(&mut socket, &error).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                _ => return,
            },
            changed = link.changed() => {
                if changed.is_err() {
                    return;
                }
                if *link.borrow() == LinkState::Reconnecting {
                    answers = None;
                }
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The next answer of the watch, or never while there is none.
async fn next(answers: &mut Option<Answers>) -> Result<Option<AdminResponse>, ClientError> {
    match answers {
        Some(answers) => answers.next().await,
        None => std::future::pending().await,
    }
}

//! Commands: a run over a WebSocket (output per node as it comes, cancel), the history, and
//! one run's detail with each node's kept output.

use std::collections::{BTreeMap, HashMap};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use tether_wire::NodeId;
use tether_wire::admin::{AdminRequest, AdminResponse, ExecSpec, NodeExecView};
use tether_wire::exec::OutputStream;

use super::{ApiError, AppState, QueryOf, User, gather, ok};
use crate::api::live::{PING_EVERY, close_with, send_json};

/// Executions per answer unless asked otherwise, and at most.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;
/// The largest message a page may send on the exec socket, bytes.
const MAX_MESSAGE: usize = 64 * 1024;
/// Nodes running at once (core's fan-out bound, as the CLI's default).
const CONCURRENCY: u32 = 2048;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

async fn executions(
    state: &AppState,
    user: &User,
    node: Option<String>,
    limit: Option<u32>,
) -> Result<Response, ApiError> {
    let limit = super::limit(limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let request = AdminRequest::ExecHistory {
        node: node.filter(|n| !n.is_empty()),
        limit,
    };
    let answer = state.ask(user, &request).await?;
    Ok(ok(gather(answer, |r| match r {
        AdminResponse::Executions(list) => Some(list),
        _ => None,
    })?))
}

/// `GET /api/v1/executions`.
pub(crate) async fn history(
    State(state): State<AppState>,
    user: User,
    QueryOf(params): QueryOf<Params>,
) -> Result<Response, ApiError> {
    executions(&state, &user, params.node, params.limit).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeParams {
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/v1/nodes/{id}/executions`.
pub(crate) async fn of_node(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    QueryOf(params): QueryOf<NodeParams>,
) -> Result<Response, ApiError> {
    executions(&state, &user, Some(id), params.limit.or(Some(20))).await
}

/// A node's result with its kept output as text (invalid UTF-8 shown as U+FFFD).
fn node_result(view: &NodeExecView) -> Value {
    let mut value = serde_json::to_value(view).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        for (key, bytes) in [("stdout", &view.stdout), ("stderr", &view.stderr)] {
            object.insert(
                key.to_string(),
                bytes
                    .as_ref()
                    .map_or(Value::Null, |b| String::from_utf8_lossy(&b.0).into()),
            );
        }
    }
    value
}

/// `GET /api/v1/executions/{id}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let answer = state.ask(&user, &AdminRequest::ShowExec { id }).await?;
    let mut execution = None;
    let mut nodes = Vec::new();
    for response in answer {
        match response {
            AdminResponse::Execution(detail) => {
                execution.get_or_insert(detail.execution);
                nodes.extend(detail.nodes.iter().map(node_result));
            }
            AdminResponse::ExecNodeDone(view) => nodes.push(node_result(&view)),
            _ => {}
        }
    }
    let execution = execution.ok_or_else(ApiError::unexpected)?;
    Ok(ok(json!({"execution": execution, "nodes": nodes})))
}

/// What a page asks to run.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Run {
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    argv: Option<Vec<String>>,
    #[serde(default)]
    nodes: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Group names: each selects its group and every group below it.
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    timeout_secs: Option<u64>,
}

impl Run {
    fn spec(self) -> Result<ExecSpec, ApiError> {
        let command = match (self.command, self.argv) {
            // An absolute shell: a node's allow-list names programs by path.
            (Some(line), None) if !line.trim().is_empty() => {
                vec!["/bin/sh".to_string(), "-c".to_string(), line]
            }
            (None, Some(argv)) if !argv.is_empty() => argv,
            _ => {
                return Err(ApiError::bad_request(
                    "give a command: \"command\" (a shell command line) or \"argv\" (a program \
                     and its arguments)",
                ));
            }
        };
        let targets: Vec<String> = self
            .nodes
            .into_iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        let groups: Vec<String> = self
            .groups
            .into_iter()
            .map(|g| g.trim().to_string())
            .filter(|g| !g.is_empty())
            .collect();
        if targets.is_empty() && self.labels.is_empty() && groups.is_empty() && !self.all {
            return Err(ApiError::bad_request(
                "choose where to run it: node ids or hostnames, labels, groups, or all nodes",
            ));
        }
        if self.timeout_secs == Some(0) {
            return Err(ApiError::bad_request(
                "a timeout must be at least 1 second (leave it out for none)",
            ));
        }
        Ok(ExecSpec {
            targets,
            labels: self.labels.into_iter().collect(),
            groups,
            all: self.all,
            command,
            env: Vec::new(),
            cwd: None,
            timeout_ms: self.timeout_secs.map(|s| s.saturating_mul(1000)),
            concurrency: CONCURRENCY,
        })
    }
}

/// `GET /api/v1/exec` (WebSocket).
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
        move |socket| run(state, user, socket),
    ))
}

/// Keeps UTF-8 characters whole across output chunks: what does not end a character waits for
/// the next chunk of the same node and stream.
#[derive(Default)]
struct Carry(HashMap<(NodeId, bool), Vec<u8>>);

impl Carry {
    fn text(&mut self, node: NodeId, stderr: bool, data: &[u8]) -> String {
        let pending = self.0.entry((node, stderr)).or_default();
        pending.extend_from_slice(data);
        let valid = match std::str::from_utf8(pending) {
            Ok(_) => pending.len(),
            // An incomplete character at the end waits; anything else is shown as U+FFFD.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => pending.len(),
        };
        let text = String::from_utf8_lossy(&pending[..valid]).into_owned();
        pending.drain(..valid);
        text
    }
}

async fn run(state: AppState, user: User, mut socket: WebSocket) {
    let spec = loop {
        match socket.recv().await {
            Some(Ok(Message::Text(text))) => {
                match serde_json::from_str::<Run>(&text)
                    .map_err(|e| ApiError::bad_request(format!("not a command to run: {e}")))
                    .and_then(Run::spec)
                {
                    Ok(spec) => break spec,
                    Err(error) => return close_with(socket, &error).await,
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return,
        }
    };
    let client = match state.client() {
        Ok(client) => client,
        Err(error) => return close_with(socket, &error).await,
    };
    let mut session = match client
        .exec_request(&user.wrap(&AdminRequest::Exec(spec)))
        .await
    {
        Ok(session) => session,
        Err(error) => return close_with(socket, &error.into()).await,
    };
    let mut carry = Carry::default();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            answer = session.next() => {
                let message = match answer {
                    Ok(Some(AdminResponse::ExecStarted { exec_id, nodes })) => json!({
                        "type": "started", "id": exec_id, "targets": nodes,
                    }),
                    Ok(Some(AdminResponse::ExecOutput { node_id, stream, data })) => {
                        let stderr = matches!(stream, OutputStream::Stderr);
                        let text = carry.text(node_id, stderr, &data.0);
                        if text.is_empty() {
                            continue;
                        }
                        json!({
                            "type": "output", "node_id": node_id,
                            "stream": if stderr { "stderr" } else { "stdout" }, "text": text,
                        })
                    }
                    Ok(Some(AdminResponse::ExecNodeDone(view))) => {
                        json!({"type": "node_done", "result": node_result(&view)})
                    }
                    Ok(Some(AdminResponse::ExecFinished(execution))) => {
                        let _ = send_json(&mut socket, &json!({
                            "type": "finished", "execution": execution,
                        })).await;
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => {
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                    Err(error) => return close_with(socket, &error.into()).await,
                };
                if send_json(&mut socket, &message).await.is_err() {
                    // The page went away: the run is cancelled, as when the CLI is stopped.
                    let _ = session.cancel().await;
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let cancel = serde_json::from_str::<Value>(&text)
                        .ok()
                        .is_some_and(|v| v["type"] == "cancel");
                    if cancel && let Err(error) = session.cancel().await {
                        return close_with(socket, &error.into()).await;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                _ => {
                    let _ = session.cancel().await;
                    return;
                }
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    let _ = session.cancel().await;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_across_chunks_arrives_whole() {
        let mut carry = Carry::default();
        let node = NodeId::random();
        let dash = "—".as_bytes();
        assert_eq!(carry.text(node, false, &[b'a', dash[0]]), "a");
        assert_eq!(carry.text(node, true, b"x"), "x", "streams are kept apart");
        assert_eq!(carry.text(node, false, &dash[1..]), "—");
        assert_eq!(carry.text(node, false, &[0xff, b'b']), "\u{fffd}b");
    }
}

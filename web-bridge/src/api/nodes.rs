//! Nodes: the overview, a page of the list, one node, and the changes an operator makes.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use tether_wire::admin::{AdminRequest, AdminResponse, NodeStatus, NodeView};
use tether_wire::fleet::{NodeQuery, NodeSort};

use super::{ApiError, AppState, QueryOf, User, first, json_body, ok};

/// `GET /api/v1/overview`.
pub(crate) async fn overview(
    State(state): State<AppState>,
    user: User,
) -> Result<Response, ApiError> {
    let answer = state.ask(&user, &AdminRequest::Overview).await?;
    Ok(ok(first(answer, |r| match r {
        AdminResponse::Overview(overview) => Some(overview),
        _ => None,
    })?))
}

/// The node list's query as pages write it (`?q=web&status=online&label=env=prod&group=web&sort=
/// last_seen&order=desc&offset=0&limit=50`; `label` may repeat, or be a comma-separated
/// list; `group` selects the group and every group below it) and as `/api/v1/live` watches it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    sort: Option<String>,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    offset: Option<u32>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    group: Option<String>,
}

/// Rows per page unless asked otherwise.
const DEFAULT_LIMIT: u32 = 50;

impl ListParams {
    pub(crate) fn query(self) -> Result<NodeQuery, ApiError> {
        let status = match self.status.as_deref().unwrap_or("") {
            "" => None,
            "online" | "Online" => Some(NodeStatus::Online),
            "offline" | "Offline" => Some(NodeStatus::Offline),
            "maintenance" | "Maintenance" => Some(NodeStatus::Maintenance),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown status {other:?}; expected online, offline or maintenance"
                )));
            }
        };
        let mut labels = Vec::new();
        for pair in self.label.iter().flat_map(|l| l.split(',')) {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                ApiError::bad_request(format!("label filter {pair:?} is not KEY=VALUE"))
            })?;
            labels.push((key.trim().to_string(), value.trim().to_string()));
        }
        let sort = match self.sort.as_deref() {
            None | Some("") => NodeSort::default(),
            Some(text) => text.parse().map_err(ApiError::bad_request)?,
        };
        let descending = match self.order.as_deref() {
            None | Some("") | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unknown order {other:?}; expected asc or desc"
                )));
            }
        };
        let query = NodeQuery {
            search: self.q.unwrap_or_default().trim().to_string(),
            status,
            labels,
            sort,
            descending,
            offset: self.offset.unwrap_or(0),
            limit: self.limit.unwrap_or(DEFAULT_LIMIT),
            group: self.group.filter(|g| !g.trim().is_empty()),
        };
        query.check().map_err(ApiError::bad_request)?;
        Ok(query)
    }
}

/// `GET /api/v1/groups`: every group, depth first (a tree: each with its depth and path).
pub(crate) async fn groups(
    State(state): State<AppState>,
    user: User,
) -> Result<Response, ApiError> {
    let answer = state.ask(&user, &AdminRequest::GroupList).await?;
    Ok(ok(first(answer, |r| match r {
        AdminResponse::Groups(g) => Some(g),
        _ => None,
    })?))
}

/// `GET /api/v1/nodes`.
pub(crate) async fn list(
    State(state): State<AppState>,
    user: User,
    QueryOf(params): QueryOf<ListParams>,
) -> Result<Response, ApiError> {
    let query = params.query()?;
    let answer = state.ask(&user, &AdminRequest::NodePage(query)).await?;
    Ok(ok(first(answer, |r| match r {
        AdminResponse::NodePage(page) => Some(page),
        _ => None,
    })?))
}

fn node(answer: Vec<AdminResponse>) -> Result<NodeView, ApiError> {
    first(answer, |r| match r {
        AdminResponse::Node(node) => Some(node),
        _ => None,
    })
}

/// `GET /api/v1/nodes/{id}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let answer = state.ask(&user, &AdminRequest::ShowNode { id }).await?;
    Ok(ok(node(answer)?))
}

/// `DELETE /api/v1/nodes/{id}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let answer = state.ask(&user, &AdminRequest::DeleteNode { id }).await?;
    Ok(ok(node(answer)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Labels {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
}

/// `POST /api/v1/nodes/{id}/labels`.
pub(crate) async fn labels(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let labels: Labels = json_body(body)?;
    let request = AdminRequest::LabelNode {
        id,
        set: labels.set.into_iter().collect(),
        remove: labels.remove,
    };
    Ok(ok(node(state.ask(&user, &request).await?)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Maintenance {
    on: bool,
}

/// `POST /api/v1/nodes/{id}/maintenance`.
pub(crate) async fn maintenance(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Maintenance { on } = json_body(body)?;
    let request = AdminRequest::SetMaintenance { id, on };
    Ok(ok(node(state.ask(&user, &request).await?)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AllowedUsers {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

/// `POST /api/v1/nodes/{id}/allowed-users`.
pub(crate) async fn allowed_users(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let AllowedUsers { add, remove } = json_body(body)?;
    let request = AdminRequest::SetAllowedUsers { id, add, remove };
    Ok(ok(node(state.ask(&user, &request).await?)?))
}

//! Agent releases and their deploys: what the releases page lists, the deploy form, a
//! deploy's live progress and its controls. Uploads stay with the CLI (a release is signed
//! offline, where its key is). Core decides who may (`versions.view`, `versions.deploy`,
//! `versions.delete`), checks every field and audits each request.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::deploys::{
    DEFAULT_WATCHDOG_MS, DeployAction, DeployKind, DeploySpec, DeployView, NodeUpdate,
    OfflinePolicy, Strategy,
};
use tether_wire::releases::{ReleaseView, key_id};
use tether_wire::tasks::TaskTargets;

use super::{ApiError, AppState, QueryOf, User, first, gather, json_body, ok};

fn release_json(view: &ReleaseView) -> Value {
    let r = &view.release;
    let m = &r.manifest;
    json!({
        "id": r.id, "version": m.version, "os": m.os, "arch": m.arch, "size": m.size,
        "sha256": hex::encode(m.sha256.as_bytes()), "key_id": key_id(&m.key),
        "notes": r.notes, "uploaded_by": r.uploaded_by, "uploaded_at_ms": r.uploaded_at_ms,
        "active_deploys": view.active_deploys,
    })
}

fn deploy_json(view: &DeployView) -> Value {
    let d = &view.deploy;
    let s = &d.spec;
    let (kind, of) = match d.kind {
        DeployKind::Update => ("update", None),
        DeployKind::Rollback { of } => ("rollback", Some(of)),
    };
    let c = &view.counts;
    json!({
        "id": d.id, "version": s.version, "kind": kind, "rollback_of": of,
        "state": d.state.as_str(), "reason": d.reason,
        "strategy": s.strategy.as_str(), "targets": s.targets.describe(),
        "batch": s.batch.map(|a| a.to_string()), "pause_ms": s.pause_ms,
        "canary": s.canary.map(|a| a.to_string()), "canary_wait_ms": s.canary_wait_ms,
        "max_failures": s.max_failures.map(|a| a.to_string()),
        "offline": s.offline.as_str(), "watchdog_ms": s.watchdog_ms, "rate_limit": s.rate_limit,
        "created_by": d.created_by, "created_at_ms": d.created_at_ms,
        "finished_at_ms": d.finished_at_ms, "wave": d.wave + 1, "waves": d.waves,
        "counts": {
            "total": c.total(), "pending": c.pending, "active": c.active, "success": c.success,
            "failed": c.failed, "rollback": c.rollback, "skipped": c.skipped,
            "cancelled": c.cancelled,
        },
    })
}

fn node_json(u: &NodeUpdate) -> Value {
    json!({
        "node_id": u.node.to_string(), "hostname": u.hostname, "wave": u.wave + 1,
        "from_version": u.from_version, "to_version": u.to_version, "state": u.state.as_str(),
        "bytes": u.bytes, "size": u.size, "error": u.error,
        "started_at_ms": u.started_at_ms, "finished_at_ms": u.finished_at_ms,
    })
}

fn one_deploy(answer: Vec<AdminResponse>) -> Result<Value, ApiError> {
    first(answer, |r| match r {
        AdminResponse::Deploy(view) => Some(deploy_json(&view)),
        _ => None,
    })
}

/// `GET /api/v1/releases`: every release, newest first.
pub(crate) async fn list(State(state): State<AppState>, user: User) -> Result<Response, ApiError> {
    let answer = state.ask(&user, &AdminRequest::ReleaseList).await?;
    let all = gather(answer, |r| match r {
        AdminResponse::Releases(all) => Some(all),
        _ => None,
    })?;
    Ok(ok(all.iter().map(release_json).collect::<Vec<_>>()))
}

/// `DELETE /api/v1/releases/{version}`: every build of it.
pub(crate) async fn delete(
    State(state): State<AppState>,
    user: User,
    Path(version): Path<String>,
) -> Result<Response, ApiError> {
    let request = AdminRequest::ReleaseDelete {
        version,
        os: None,
        arch: None,
    };
    let answer = state.ask(&user, &request).await?;
    let all = gather(answer, |r| match r {
        AdminResponse::Releases(all) => Some(all),
        _ => None,
    })?;
    Ok(ok(all.iter().map(release_json).collect::<Vec<_>>()))
}

/// `POST /api/v1/deploys`'s body: the CLI's flags as fields, durations in seconds, amounts as
/// the CLI writes them (`"3"`, `"10%"`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDeploy {
    version: String,
    #[serde(default)]
    nodes: Vec<String>,
    #[serde(default)]
    labels: Vec<(String, String)>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    batch: Option<String>,
    #[serde(default)]
    pause_s: Option<u64>,
    #[serde(default)]
    canary: Option<String>,
    #[serde(default)]
    canary_wait_s: Option<u64>,
    #[serde(default)]
    max_failures: Option<String>,
    /// `wait` (default) or `skip`.
    #[serde(default)]
    offline: Option<String>,
    #[serde(default)]
    watchdog_s: Option<u64>,
    /// Bytes per second per node.
    #[serde(default)]
    rate_limit: Option<u64>,
}

impl NewDeploy {
    fn spec(self) -> Result<DeploySpec, ApiError> {
        let amount = |field: &str, text: Option<String>| {
            text.map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .map(|t| {
                    t.parse()
                        .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
                })
                .transpose()
        };
        let strategy: Strategy = self
            .strategy
            .as_deref()
            .unwrap_or("all")
            .parse()
            .map_err(ApiError::bad_request)?;
        let offline: OfflinePolicy = self
            .offline
            .as_deref()
            .unwrap_or("wait")
            .parse()
            .map_err(ApiError::bad_request)?;
        let seconds = |s: Option<u64>| s.map_or(0, |s| s.saturating_mul(1000));
        Ok(DeploySpec {
            version: self.version.trim().to_string(),
            targets: TaskTargets {
                nodes: super::tasks::trimmed(self.nodes),
                labels: self.labels,
                groups: super::tasks::trimmed(self.groups),
                all: self.all,
            },
            strategy,
            batch: amount("batch", self.batch)?,
            pause_ms: seconds(self.pause_s),
            canary: amount("canary", self.canary)?,
            canary_wait_ms: seconds(self.canary_wait_s),
            max_failures: amount("max_failures", self.max_failures)?,
            offline,
            watchdog_ms: self
                .watchdog_s
                .map_or(DEFAULT_WATCHDOG_MS, |s| s.saturating_mul(1000)),
            rate_limit: self.rate_limit,
        })
    }
}

/// `POST /api/v1/deploys`: starts a deploy; answers it.
pub(crate) async fn deploy(
    State(state): State<AppState>,
    user: User,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let spec = json_body::<NewDeploy>(body)?.spec()?;
    spec.check().map_err(ApiError::bad_request)?;
    Ok(ok(one_deploy(
        state.ask(&user, &AdminRequest::ReleaseDeploy(spec)).await?,
    )?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/v1/deploys?limit=N`: newest first.
pub(crate) async fn deploys(
    State(state): State<AppState>,
    user: User,
    QueryOf(params): QueryOf<ListParams>,
) -> Result<Response, ApiError> {
    let limit = super::limit(params.limit, 20, 500)?;
    let answer = state
        .ask(&user, &AdminRequest::DeployList { limit })
        .await?;
    let all = gather(answer, |r| match r {
        AdminResponse::Deploys(all) => Some(all),
        _ => None,
    })?;
    Ok(ok(all.iter().map(deploy_json).collect::<Vec<_>>()))
}

/// `GET /api/v1/deploys/{id}`: the deploy and each node's state and progress.
pub(crate) async fn status(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    let answer = state.ask(&user, &AdminRequest::DeployStatus { id }).await?;
    let mut deploy = None;
    let mut nodes = Vec::new();
    for response in answer {
        match response {
            AdminResponse::Deploy(view) => deploy = Some(deploy_json(&view)),
            AdminResponse::DeployNodes(chunk) => nodes.extend(chunk.iter().map(node_json)),
            _ => return Err(ApiError::unexpected()),
        }
    }
    let deploy = deploy.ok_or_else(ApiError::unexpected)?;
    Ok(ok(json!({ "deploy": deploy, "nodes": nodes })))
}

/// `POST /api/v1/deploys/{id}/{action}`: `pause`, `resume`, `cancel` or `rollback` (which
/// answers the new rollback deploy).
pub(crate) async fn control(
    State(state): State<AppState>,
    user: User,
    Path((id, action)): Path<(u64, String)>,
) -> Result<Response, ApiError> {
    let request = if action == "rollback" {
        AdminRequest::DeployRollback { id }
    } else {
        let action: DeployAction = action.parse().map_err(|e: String| {
            ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", e)
        })?;
        AdminRequest::DeployControl { id, action }
    };
    Ok(ok(one_deploy(state.ask(&user, &request).await?)?))
}

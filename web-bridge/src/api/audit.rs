//! The audit log (admins): records, newest first, filtered.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::users::AuditQuery;

use super::{ApiError, AppState, QueryOf, User, gather, ok};

/// Records per answer unless asked otherwise, and at most.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    failed: Option<bool>,
    #[serde(default)]
    since_ms: Option<i64>,
    #[serde(default)]
    until_ms: Option<i64>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/v1/audit`: `until_ms` (exclusive) pages back: pass the oldest record's time plus
/// one and drop the records already shown (by `seq`), since several may share a millisecond.
pub(crate) async fn list(
    State(state): State<AppState>,
    user: User,
    QueryOf(params): QueryOf<Params>,
) -> Result<Response, ApiError> {
    let limit = super::limit(params.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let query = AuditQuery {
        user: nonempty(params.user),
        action: nonempty(params.action),
        resource: nonempty(params.resource),
        since_ms: params.since_ms,
        until_ms: params.until_ms,
        failed: params.failed.unwrap_or(false),
        limit,
        seq: None,
    };
    let answer = state.ask(&user, &AdminRequest::Audit(query)).await?;
    Ok(ok(gather(answer, |r| match r {
        AdminResponse::AuditRecords(records) => Some(records),
        _ => None,
    })?))
}

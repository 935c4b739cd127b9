//! Enrollment applications: list, approve, reject.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use tether_wire::admin::{AdminRequest, AdminResponse, ApplicationStatus};

use super::{ApiError, AppState, QueryOf, User, first, gather, json_body, ok};

/// Applications per answer unless asked otherwise, and at most.
const DEFAULT_LIMIT: u32 = 500;
const MAX_LIMIT: u32 = 5000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/v1/applications`.
pub(crate) async fn list(
    State(state): State<AppState>,
    user: User,
    QueryOf(params): QueryOf<ListParams>,
) -> Result<Response, ApiError> {
    let status = match params.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            text.to_ascii_lowercase()
                .parse::<ApplicationStatus>()
                .map_err(ApiError::bad_request)?,
        ),
    };
    let limit = super::limit(params.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let request = AdminRequest::ListApplications {
        status,
        limit: Some(limit),
    };
    let answer = state.ask(&user, &request).await?;
    Ok(ok(gather(answer, |r| match r {
        AdminResponse::Applications(apps) => Some(apps),
        _ => None,
    })?))
}

fn application(answer: Vec<AdminResponse>) -> Result<Response, ApiError> {
    Ok(ok(first(answer, |r| match r {
        AdminResponse::Application(app) => Some(app),
        _ => None,
    })?))
}

/// `POST /api/v1/applications/{id}/approve`.
pub(crate) async fn approve(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    application(
        state
            .ask(&user, &AdminRequest::ApproveApplication { id })
            .await?,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reject {
    #[serde(default)]
    reason: String,
}

/// `POST /api/v1/applications/{id}/reject`.
pub(crate) async fn reject(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Reject { reason } = json_body(body)?;
    let reason = reason.trim().to_string();
    if reason.is_empty() {
        return Err(ApiError::bad_request(
            "give a reason: the node is told it, and it is kept on the record",
        ));
    }
    application(
        state
            .ask(&user, &AdminRequest::RejectApplication { id, reason })
            .await?,
    )
}

//! Alerts, alert rules and channels: what the alerts page shows and changes. Core decides who
//! may (`alerts.view`, `alerts.ack`, `alerts.manage`) and audits each request.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::alerts::{AlertQuery, AlertRule, Condition, Field, Op, Severity, Targets};

use super::{ApiError, AppState, Enabled, QueryOf, User, first, gather, json_body, ok};

/// Alerts per answer unless asked otherwise, and at most.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    #[serde(default)]
    firing: Option<bool>,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/v1/alerts?firing=true&node=ID&limit=N`: newest first.
pub(crate) async fn list(
    State(state): State<AppState>,
    user: User,
    QueryOf(params): QueryOf<Params>,
) -> Result<Response, ApiError> {
    let limit = super::limit(params.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let query = AlertQuery {
        firing: params.firing.unwrap_or(false),
        node: params.node.filter(|n| !n.trim().is_empty()),
        limit: Some(limit),
    };
    let answer = state.ask(&user, &AdminRequest::AlertList(query)).await?;
    Ok(ok(gather(answer, |r| match r {
        AdminResponse::Alerts(alerts) => Some(alerts),
        _ => None,
    })?))
}

fn number(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("{text:?} is not an alert number")))
}

/// `GET /api/v1/alerts/{id}`: the alert and its deliveries.
pub(crate) async fn show(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let request = AdminRequest::AlertShow { id: number(&id)? };
    Ok(ok(first(state.ask(&user, &request).await?, |r| match r {
        AdminResponse::AlertDetail(d) => Some(d),
        _ => None,
    })?))
}

/// `POST /api/v1/alerts/{id}/ack`.
pub(crate) async fn ack(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let request = AdminRequest::AlertAck { id: number(&id)? };
    Ok(ok(first(state.ask(&user, &request).await?, |r| match r {
        AdminResponse::Alert(a) => Some(a),
        _ => None,
    })?))
}

/// `GET /api/v1/alert-rules`.
pub(crate) async fn rules(State(state): State<AppState>, user: User) -> Result<Response, ApiError> {
    let answer = state.ask(&user, &AdminRequest::AlertRuleList).await?;
    Ok(ok(first(answer, |r| match r {
        AdminResponse::AlertRules(rules) => Some(rules),
        _ => None,
    })?))
}

/// `POST /api/v1/alert-rules`'s body: the CLI's flags as fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRule {
    name: String,
    /// `threshold` (default), `offline` or `clock_skew`.
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metric: Option<String>,
    #[serde(default)]
    op: Option<String>,
    #[serde(default)]
    threshold: Option<f64>,
    /// For `clock_skew`: the largest skew tolerated, seconds.
    #[serde(default)]
    max_skew_s: Option<u64>,
    /// How long the condition must hold, seconds.
    #[serde(default)]
    for_s: Option<u64>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    labels: Vec<(String, String)>,
    #[serde(default)]
    nodes: Vec<String>,
    /// Group names: each watches its group and every group below it.
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    channels: Vec<String>,
}

/// `POST /api/v1/alert-rules`.
pub(crate) async fn add_rule(
    State(state): State<AppState>,
    user: User,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let new: NewRule = json_body(body)?;
    let condition = match new.kind.as_deref().unwrap_or("threshold") {
        "threshold" => {
            let field: Field = new
                .metric
                .as_deref()
                .ok_or_else(|| ApiError::bad_request("a threshold rule needs a metric"))?
                .parse()
                .map_err(ApiError::bad_request)?;
            let op: Op = new
                .op
                .as_deref()
                .ok_or_else(|| ApiError::bad_request("a threshold rule needs an operator"))?
                .parse()
                .map_err(ApiError::bad_request)?;
            let threshold = new
                .threshold
                .ok_or_else(|| ApiError::bad_request("a threshold rule needs a threshold"))?;
            Condition::Threshold {
                field,
                op,
                threshold,
            }
        }
        "offline" => Condition::Offline,
        "clock_skew" => Condition::ClockSkew {
            max_ms: new
                .max_skew_s
                .ok_or_else(|| ApiError::bad_request("a clock skew rule needs max_skew_s"))?
                .saturating_mul(1000),
        },
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown kind {other:?}: threshold, offline or clock_skew"
            )));
        }
    };
    let severity: Severity = new
        .severity
        .as_deref()
        .unwrap_or("warning")
        .parse()
        .map_err(ApiError::bad_request)?;
    let rule = AlertRule {
        name: new.name,
        condition,
        for_ms: new.for_s.unwrap_or(0).saturating_mul(1000),
        severity,
        targets: Targets {
            labels: new.labels,
            nodes: Vec::new(),
            groups: new.groups,
        },
        channels: new.channels,
        enabled: true,
        created_by: String::new(),
        created_at_ms: 0,
    };
    rule.check().map_err(ApiError::bad_request)?;
    let request = AdminRequest::AlertRuleAdd {
        rule,
        nodes: new.nodes,
    };
    Ok(ok(one_rule(state.ask(&user, &request).await?)?))
}

fn one_rule(answer: Vec<AdminResponse>) -> Result<AlertRule, ApiError> {
    first(answer, |r| match r {
        AdminResponse::AlertRule(rule) => Some(rule),
        _ => None,
    })
}

/// `POST /api/v1/alert-rules/{name}/enabled`.
pub(crate) async fn enable_rule(
    State(state): State<AppState>,
    user: User,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Enabled { enabled } = json_body(body)?;
    let request = AdminRequest::AlertRuleEnable { name, enabled };
    Ok(ok(one_rule(state.ask(&user, &request).await?)?))
}

/// `DELETE /api/v1/alert-rules/{name}`.
pub(crate) async fn delete_rule(
    State(state): State<AppState>,
    user: User,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let request = AdminRequest::AlertRuleDelete { name };
    Ok(ok(one_rule(state.ask(&user, &request).await?)?))
}

/// `GET /api/v1/alert-channels`: secrets hidden by core.
pub(crate) async fn channels(
    State(state): State<AppState>,
    user: User,
) -> Result<Response, ApiError> {
    let answer = state.ask(&user, &AdminRequest::AlertChannelList).await?;
    Ok(ok(first(answer, |r| match r {
        AdminResponse::AlertChannels(c) => Some(c),
        _ => None,
    })?))
}

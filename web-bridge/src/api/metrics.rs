//! Metrics history for charts: a node's (`NodeMetrics`) and the fleet's trend (`FleetMetrics`).

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::history::{FleetMetricsQuery, Metric, MetricsQuery};

use super::{ApiError, AppState, QueryOf, User, first, ok};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    /// How far back: `1h`, `24h`, `7days`, `90days`.
    range: String,
    /// Point width (`5m`); none lets core choose.
    #[serde(default)]
    step: Option<String>,
    /// `cpu,mem,...`; none for all.
    #[serde(default)]
    metrics: Option<String>,
    /// The end of the range, unix ms; none for now.
    #[serde(default)]
    until: Option<i64>,
}

impl Params {
    /// The range, step and series asked for; each bad one a 400 naming it.
    fn parse(self) -> Result<FleetMetricsQuery, ApiError> {
        Ok(FleetMetricsQuery {
            range_ms: millis("range", &self.range)?,
            until_ms: self.until,
            step_ms: self
                .step
                .as_deref()
                .map(|s| millis("step", s))
                .transpose()?,
            metrics: self
                .metrics
                .as_deref()
                .map(Metric::parse_list)
                .transpose()
                .map_err(ApiError::bad_request)?
                .unwrap_or_default(),
        })
    }
}

fn millis(what: &str, text: &str) -> Result<u64, ApiError> {
    let duration = tether_wire::units::parse_duration(text)
        .map_err(|e| ApiError::bad_request(format!("{what}: {e}")))?;
    Ok(tether_wire::units::duration_ms(duration))
}

/// `GET /api/v1/nodes/{id}/metrics?range=24h[&step=5m][&metrics=cpu,mem][&until=MS]`: a
/// `MetricsAnswer` (per point the average, minimum and maximum of each series).
pub(crate) async fn history(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    QueryOf(params): QueryOf<Params>,
) -> Result<Response, ApiError> {
    let FleetMetricsQuery {
        range_ms,
        until_ms,
        step_ms,
        metrics,
    } = params.parse()?;
    let query = MetricsQuery {
        node: id,
        range_ms,
        until_ms,
        step_ms,
        metrics,
    };
    let answer = state.ask(&user, &AdminRequest::NodeMetrics(query)).await?;
    Ok(ok(first(answer, |r| match r {
        AdminResponse::Metrics(m) => Some(m),
        _ => None,
    })?))
}

/// `GET /api/v1/fleet/metrics?range=24h[&step=15m][&metrics=cpu,mem][&until=MS]`: a
/// `FleetMetricsAnswer` (per point the fleet's median and 95th percentile of each series).
pub(crate) async fn fleet(
    State(state): State<AppState>,
    user: User,
    QueryOf(params): QueryOf<Params>,
) -> Result<Response, ApiError> {
    let query = params.parse()?;
    let answer = state.ask(&user, &AdminRequest::FleetMetrics(query)).await?;
    Ok(ok(first(answer, |r| match r {
        AdminResponse::FleetMetrics(m) => Some(m),
        _ => None,
    })?))
}

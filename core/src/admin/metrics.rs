//! `NodeMetrics`: one node's metrics history, read from the store at the step asked;
//! `FleetMetrics`: the fleet's trend, kept the same way.

use tether_store::{FLEET_MEDIAN, FLEET_P95, HistoryRead};
use tether_wire::ErrorCode;
use tether_wire::admin::AdminResponse;
use tether_wire::history::{FleetMetricsAnswer, FleetMetricsQuery, MetricsAnswer, MetricsQuery};

use super::{Reply, internal, resolve};
use crate::server::Shared;

/// `NodeMetrics`.
pub(crate) fn history(shared: &Shared, query: &MetricsQuery) -> Reply {
    query
        .check()
        .map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
    let id = resolve::node(shared, &query.node)?;
    let hostname = shared
        .store
        .node(id)
        .map_err(internal)?
        .map(|n| n.record.hostname)
        .unwrap_or_default();
    let now_ms = shared.now_ms();
    let until_ms = query.until_ms.unwrap_or(now_ms);
    let range_ms = i64::try_from(query.range_ms).unwrap_or(i64::MAX);
    let history = shared
        .store
        .history(
            id,
            HistoryRead {
                from_ms: until_ms.saturating_sub(range_ms),
                to_ms: until_ms,
                step_ms: query.step_ms,
                now_ms,
            },
            &query.metrics,
            shared.config.history_spans(),
        )
        .map_err(internal)?;
    Ok(vec![AdminResponse::Metrics(MetricsAnswer {
        node_id: id,
        hostname,
        from_ms: history.from_ms,
        step_ms: history.step_ms,
        resolution: history.resolution,
        samples: history.samples,
        series: history.series,
    })])
}

/// `FleetMetrics`: the fleet's medians and 95th percentiles, kept beside the nodes' history.
pub(crate) fn fleet(shared: &Shared, query: &FleetMetricsQuery) -> Reply {
    query
        .check()
        .map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
    let now_ms = shared.now_ms();
    let until_ms = query.until_ms.unwrap_or(now_ms);
    let read = HistoryRead {
        from_ms: until_ms.saturating_sub(i64::try_from(query.range_ms).unwrap_or(i64::MAX)),
        to_ms: until_ms,
        step_ms: query.step_ms,
        now_ms,
    };
    let spans = shared.config.history_spans();
    let median = shared
        .store
        .history(FLEET_MEDIAN, read, &query.metrics, spans)
        .map_err(internal)?;
    let p95 = shared
        .store
        .history(FLEET_P95, read, &query.metrics, spans)
        .map_err(internal)?;
    Ok(vec![AdminResponse::FleetMetrics(FleetMetricsAnswer {
        from_ms: median.from_ms,
        step_ms: median.step_ms,
        resolution: median.resolution,
        samples: median.samples,
        median: median.series,
        p95: p95.series,
    })])
}

//! Core's HTTP listener for Prometheus and health checks (`metrics_listen`): `GET /metrics`
//! and `GET /health`, nothing else. It carries no admin API and no secret: bind it where only
//! the scraper and the load balancer reach (loopback by default in `dev`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tracing::{info, warn};

use crate::server::Shared;

/// A health check's store probe waits at most this long: a writer stuck behind a long batch
/// is as unhealthy as a failed one.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves until core shuts down.
pub(crate) async fn serve(shared: Arc<Shared>, listener: tokio::net::TcpListener) {
    let addr = listener.local_addr().ok();
    info!(?addr, "metrics and health listening (HTTP)");
    let stop = shared.shutdown.clone();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .fallback(not_found)
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    {
        warn!(error = %e, "the metrics listener stopped");
    }
}

/// OpenMetrics to scrapers that ask for it (Prometheus does), the classic text format to
/// everyone else.
async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    // Reading every node's status is a loop over all of them: off the async threads.
    let rendered = tokio::task::spawn_blocking(move || super::render(&shared)).await;
    match rendered {
        Ok(Ok(text)) => {
            let (body, kind) = if openmetrics {
                (
                    text,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            } else {
                (
                    super::to_classic(&text),
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            };
            let mut response = body.into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            response
        }
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be rendered\n",
        )
            .into_response(),
    }
}

/// `/health`'s answer.
#[derive(Debug, Serialize)]
struct Health {
    /// `ok`, or `failing`.
    status: &'static str,
    /// The checks that failed, by name.
    failed: Vec<&'static str>,
    /// Every check: `ok` or what went wrong.
    checks: Vec<Check>,
    version: &'static str,
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let store = match tokio::time::timeout(PROBE_TIMEOUT, shared.store.probe()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the store refuses writes: {e}")),
        Err(_) => Err(format!(
            "a write did not commit within {}s",
            PROBE_TIMEOUT.as_secs()
        )),
    };
    let quic = if shared.shutdown.is_cancelled() {
        Err("core is shutting down".to_string())
    } else {
        shared
            .endpoint
            .local_addr()
            .map(|_| ())
            .map_err(|e| format!("the QUIC endpoint has no socket: {e}"))
    };
    let (code, body) = verdict([("store_writable", store), ("quic_endpoint", quic)]);
    (code, axum::Json(body)).into_response()
}

/// 200 when every check passed, else 503 naming the ones that failed.
fn verdict<const N: usize>(
    results: [(&'static str, Result<(), String>); N],
) -> (StatusCode, Health) {
    let checks: Vec<Check> = results
        .into_iter()
        .map(|(name, result)| Check {
            name,
            ok: result.is_ok(),
            detail: result.err().unwrap_or_else(|| "ok".into()),
        })
        .collect();
    let failed: Vec<&'static str> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
    let code = if failed.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: if failed.is_empty() { "ok" } else { "failing" },
        failed,
        checks,
        version: env!("CARGO_PKG_VERSION"),
    };
    (code, body)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "core's metrics listener serves /metrics and /health only\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_is_a_503_that_names_it() {
        let (code, health) = verdict([
            (
                "store_writable",
                Err("the store refuses writes: disk full".into()),
            ),
            ("quic_endpoint", Ok(())),
        ]);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(health.status, "failing");
        assert_eq!(health.failed, ["store_writable"]);
        assert!(health.checks[0].detail.contains("disk full"));
        assert_eq!(health.checks[1].detail, "ok");

        let (code, health) = verdict([("store_writable", Ok(())), ("quic_endpoint", Ok(()))]);
        assert_eq!((code, health.status), (StatusCode::OK, "ok"));
        assert!(health.failed.is_empty());
    }
}

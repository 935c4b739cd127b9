//! Core's metrics and health listener (`metrics_listen`): Prometheus's text from a real core
//! with a real agent, checked by `promtool` where it is installed (CI installs it), and
//! `/health`.

use crate::support;

use support::*;
use tether_wire::admin::AdminRequest;

/// Where to scrape a test core.
fn base(core: &TestCore) -> String {
    let addr = core
        .core
        .as_ref()
        .and_then(|c| c.metrics_addr())
        .expect("metrics_listen is set");
    format!("http://{addr}")
}

async fn get(url: &str) -> (u16, String, String) {
    get_as(url, None).await
}

/// GET with an `Accept` header (Prometheus asks for OpenMetrics).
async fn get_as(url: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.expect("the metrics listener answers");
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, kind, response.text().await.unwrap())
}

/// The value of the first sample whose line starts with `series` (name and labels as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// `promtool check metrics` (Prometheus's own linter) on `text`; skipped where promtool is
/// missing unless TETHER_REQUIRE_PROMTOOL is set (as in CI).
fn promtool_check(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            assert!(
                std::env::var_os("TETHER_REQUIRE_PROMTOOL").is_none(),
                "promtool is required here: {e}"
            );
            eprintln!("promtool is missing ({e}); not checking the format with it");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_for_prometheus_and_a_health_check() {
    let (core, admin, nodes, _tmp) = start_fleet(
        2,
        |c| {
            c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
            c.metrics_per_node = true;
        },
        |_| {},
    )
    .await;
    admin
        .request(AdminRequest::SetMaintenance {
            id: nodes[1].0.to_string(),
            on: true,
        })
        .await
        .unwrap();
    // A refused request is counted as such.
    let _ = admin
        .request(AdminRequest::SetMaintenance {
            id: "no-such-node".into(),
            on: true,
        })
        .await;
    let url = base(&core);
    let id = nodes[0].0.to_string();

    // Per-node series appear once a heartbeat with metrics arrived.
    let text = eventually("a node's CPU in /metrics", || async {
        let (_, _, text) = get(&format!("{url}/metrics")).await;
        text.contains(&format!("tether_node_cpu_usage_ratio{{node_id=\"{id}\""))
            .then_some(text)
    })
    .await;
    let (status, kind, _) = get(&format!("{url}/metrics")).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    assert!(
        text.contains("# TYPE tether_heartbeats_total counter"),
        "{text}"
    );
    assert!(!text.contains("# EOF"));
    // What Prometheus asks for.
    let (status, kind, openmetrics) = get_as(
        &format!("{url}/metrics"),
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(
        openmetrics.contains("# TYPE tether_heartbeats counter"),
        "{openmetrics}"
    );
    assert!(openmetrics.trim_end().ends_with("# EOF"));
    assert_eq!(sample(&text, "tether_nodes{status=\"online\"}"), Some(1.0));
    assert_eq!(
        sample(&text, "tether_nodes{status=\"maintenance\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "tether_nodes{status=\"offline\"}"), Some(0.0));
    assert_eq!(sample(&text, "tether_nodes_connected"), Some(2.0));
    assert!(sample(&text, "tether_heartbeats_total").unwrap() >= 2.0);
    assert!(sample(&text, "tether_connections").unwrap() >= 3.0);
    assert!(
        sample(
            &text,
            "tether_admin_requests_total{request=\"SetMaintenance\",result=\"ok\"}"
        )
        .unwrap()
            >= 1.0,
        "{text}"
    );
    assert!(text.contains("result=\"failed\""), "{text}");
    assert!(sample(&text, "tether_store_commit_duration_seconds_count").unwrap() > 0.0);
    assert!(text.contains("tether_store_commit_duration_seconds_bucket{le=\"0.0001\"}"));
    assert!(text.contains("tether_node_filesystem_used_bytes{node_id="));
    assert!(text.contains("tether_build_info{version="));
    promtool_check(&text);

    let (status, _, body) = get(&format!("{url}/health")).await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["failed"], serde_json::json!([]));
    let names: Vec<&str> = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["store_writable", "quic_endpoint"]);

    let (status, _, body) = get(&format!("{url}/nothing")).await;
    assert_eq!(status, 404);
    assert!(body.contains("/metrics and /health"));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_per_node_series_unless_asked_and_no_listener_unless_configured() {
    let (core, _admin, _nodes, _tmp) = start_fleet(
        1,
        |c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap()),
        |_| {},
    )
    .await;
    let text = eventually("a heartbeat counted", || async {
        let (_, _, text) = get(&format!("{}/metrics", base(&core))).await;
        (sample(&text, "tether_heartbeats_total").unwrap_or(0.0) >= 1.0).then_some(text)
    })
    .await;
    assert!(!text.contains("tether_node_"), "{text}");
    promtool_check(&text);

    let plain = TestCore::start(|_| {}).await;
    assert!(plain.core.as_ref().unwrap().metrics_addr().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_metrics_port_stops_core_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.metrics_listen = Some(addr);
    let error = tether_core::Core::start(config).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(&format!("cannot serve metrics on {addr}")),
        "{text}"
    );
}

//! Metrics history end to end: real agents' heartbeats written by core, read back through
//! `NodeMetrics` and `tether node metrics`.

use crate::support;

use support::*;
use tether_client::ClientError;
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminRequest, AdminResponse, Role};
use tether_wire::history::{FleetMetricsQuery, Metric, MetricsAnswer, MetricsQuery, Resolution};

fn query(node: &str, range_ms: u64, metrics: Vec<Metric>) -> MetricsQuery {
    MetricsQuery {
        node: node.into(),
        range_ms,
        until_ms: None,
        step_ms: Some(1000),
        metrics,
    }
}

async fn metrics(
    client: &tether_client::AdminClient,
    q: MetricsQuery,
) -> Result<MetricsAnswer, ClientError> {
    match client
        .request(&AdminRequest::NodeMetrics(q))
        .await?
        .remove(0)
    {
        AdminResponse::Metrics(answer) => Ok(answer),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_become_history_read_at_a_step() {
    let (core, admin, nodes, _tmp) = start_fleet(1, |_| {}, |_| {}).await;
    let (id, _) = &nodes[0];
    // A viewer may read it (nodes.view).
    let (_, viewer) = core.user(&admin.0, "vera", Role::Viewer).await;
    let answer = eventually("three heartbeats in history", || async {
        let a = metrics(
            &viewer,
            query("host-00", 600_000, vec![Metric::Cpu, Metric::Mem]),
        )
        .await
        .unwrap();
        (a.samples.iter().sum::<u32>() >= 3).then_some(a)
    })
    .await;
    assert_eq!(answer.node_id, *id);
    assert_eq!(answer.hostname, "host-00");
    assert_eq!((answer.resolution, answer.step_ms), (Resolution::Raw, 1000));
    assert_eq!(answer.samples.len(), 600);
    let names: Vec<Metric> = answer.series.iter().map(|s| s.metric).collect();
    assert_eq!(names, [Metric::Cpu, Metric::Mem]);
    let mem = &answer.series[1];
    let latest = mem.avg.iter().flatten().last().copied().unwrap();
    assert!(latest > 0.0 && latest <= 100.0, "memory {latest}%");
    for (i, &n) in answer.samples.iter().enumerate() {
        assert_eq!(
            n == 0,
            mem.avg[i].is_none(),
            "a point has values when it has heartbeats"
        );
    }

    // The fleet's trend is written with the same heartbeats.
    let fleet = eventually("the fleet's trend", || async {
        let answer = viewer
            .request(&AdminRequest::FleetMetrics(FleetMetricsQuery {
                range_ms: 600_000,
                until_ms: None,
                step_ms: Some(60_000),
                metrics: vec![Metric::Mem],
            }))
            .await
            .unwrap()
            .remove(0);
        match answer {
            AdminResponse::FleetMetrics(f) => (f.samples.iter().sum::<u32>() > 0).then_some(f),
            other => panic!("{other:?}"),
        }
    })
    .await;
    assert_eq!(fleet.step_ms, 60_000);
    let (median, p95) = (&fleet.median[0], &fleet.p95[0]);
    assert_eq!((median.metric, p95.metric), (Metric::Mem, Metric::Mem));
    // One node: its median is its 95th percentile.
    assert_eq!(median.avg, p95.avg);
    assert!(median.avg.iter().flatten().any(|&v| v > 0.0));

    // Bad input: a clear error each.
    let err = metrics(&admin.0, query("host-00", 0, vec![]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Core { code, .. } if *code == ErrorCode::INVALID_ARGUMENT),
        "{err}"
    );
    let err = metrics(&admin.0, query("no-such-node", 600_000, vec![]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Core { code, .. } if *code == ErrorCode::NOT_FOUND),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_prints_a_table_json_and_refuses_unknown_metrics() {
    let (core, admin, _nodes, _tmp) = start_fleet(1, |_| {}, |_| {}).await;
    eventually("history written", || async {
        let a = metrics(&admin.0, query("host-00", 600_000, vec![]))
            .await
            .ok()?;
        (a.samples.iter().sum::<u32>() >= 2).then_some(())
    })
    .await;
    let identity = core.data().join("admin.identity");
    let addr = core.addr.to_string();

    let json = tether_json(
        &identity,
        &addr,
        &[
            "node",
            "metrics",
            "host-00",
            "--since",
            "5m",
            "--step",
            "10s",
            "--metric",
            "cpu,procs",
            "--json",
        ],
    );
    assert_eq!(json["hostname"], "host-00");
    assert_eq!(json["step_ms"], 10_000);
    assert_eq!(json["resolution"], "raw");
    assert_eq!(json["units"]["cpu"], "percent");
    let points = json["points"].as_array().unwrap();
    assert!((30..=31).contains(&points.len()), "{}", points.len());
    let last = points
        .iter()
        .rev()
        .find(|p| p["samples"].as_u64() > Some(0))
        .expect("a point with heartbeats");
    assert!(last["procs"]["avg"].as_f64().unwrap() >= 1.0, "{last}");
    assert!(last["cpu"]["max"].as_f64().unwrap() >= last["cpu"]["min"].as_f64().unwrap());

    // Piped: a table, one row per step.
    let out = tether(
        &identity,
        &addr,
        &[
            "node", "metrics", "host-00", "--since", "2m", "--step", "1m",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("CPU") && lines[0].contains("NET_RX"),
        "{text}"
    );
    assert!((2..=4).contains(&(lines.len() - 1)), "{text}");

    let out = tether(
        &identity,
        &addr,
        &["node", "metrics", "host-00", "--metric", "cpu,ram"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown metric \"ram\"") && err.contains("mem_used"),
        "{err}"
    );
}

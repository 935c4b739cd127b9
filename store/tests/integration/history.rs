//! Metrics history on a real redb file: downsampling, reading at a step, pruning by span,
//! sweeping silent and deleted nodes.

use tether_store::*;
use tether_wire::NodeId;
use tether_wire::heartbeat::Metrics;
use tether_wire::history::{Metric, Resolution};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// A time on a day boundary, so windows line up where the tests expect.
const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % (7 * DAY_MS);

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("tether.redb")).unwrap()
}

async fn enrolled(store: &Store, nonce: u8) -> NodeId {
    let node = NodeId::random();
    let Submission::Pending(app) = store
        .submit_application(NewApplication {
            node_id: node,
            hostname: format!("host-{nonce}"),
            public_key_pem: format!("K{nonce}"),
            key_fingerprint: "ff".into(),
            agent_version: "0.1.0".into(),
            remote_addr: None,
            nonce: vec![nonce; 64],
            nonce_expires_secs: 1_000,
            now_ms: 10,
            max_pending: 100,
            auto_approve_secret: None,
        })
        .await
        .unwrap()
    else {
        panic!("pending")
    };
    let DecisionOutcome::Approved { .. } = store
        .decide_application(
            app.id,
            Decision::Approve {
                by: "alice".into(),
                secret: [nonce; 32],
                now_ms: 20,
            },
        )
        .await
        .unwrap()
    else {
        panic!("approved")
    };
    node
}

fn cpu(percent: f32) -> Metrics {
    Metrics {
        cpu_percent: percent,
        memory_used: 1 << 30,
        memory_total: 4 << 30,
        processes: 100,
        ..Metrics::default()
    }
}

/// Heartbeats every `every_ms` over `[from_ms, to_ms)`, CPU from `value(at_ms)`, written in
/// batches as core's flush would.
async fn feed(
    store: &Store,
    node: NodeId,
    from_ms: i64,
    to_ms: i64,
    every_ms: i64,
    value: impl Fn(i64) -> f32,
) {
    let spans = HistorySpans::default();
    let mut batch = Vec::new();
    let mut at = from_ms;
    while at < to_ms {
        batch.push(HistorySample::new(node, at, &cpu(value(at))));
        if batch.len() == 500 {
            store
                .append_history(std::mem::take(&mut batch), at, spans)
                .await
                .unwrap();
        }
        at += every_ms;
    }
    store.append_history(batch, at, spans).await.unwrap();
}

fn series(history: &History, metric: Metric) -> &tether_wire::history::MetricSeries {
    history.series.iter().find(|s| s.metric == metric).unwrap()
}

#[tokio::test]
async fn the_last_hour_reads_every_heartbeat_and_a_day_reads_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let node = enrolled(&store, 1).await;
    let spans = HistorySpans::default();
    // Two days at 30 s: CPU 10 % in even minutes' first half, 30 % in their second half.
    let end = T0 + 2 * DAY_MS;
    feed(&store, node, T0, end, 30_000, |at| {
        if (at / 30_000) % 2 == 0 { 10.0 } else { 30.0 }
    })
    .await;

    // The last 10 minutes, per heartbeat.
    let h = store
        .history(
            node,
            HistoryRead {
                from_ms: end - 600_000,
                to_ms: end,
                step_ms: Some(30_000),
                now_ms: end,
            },
            &[Metric::Cpu],
            spans,
        )
        .unwrap();
    assert_eq!(h.resolution, Resolution::Raw);
    assert_eq!((h.step_ms, h.samples.len()), (30_000, 20));
    assert!(h.samples.iter().all(|&n| n == 1), "{:?}", h.samples);
    let cpu = series(&h, Metric::Cpu);
    assert_eq!(cpu.avg[0], Some(10.0));
    assert_eq!(cpu.avg[1], Some(30.0));

    // The last day at 5 minutes: from 1-minute aggregates, 10 heartbeats a point.
    let h = store
        .history(
            node,
            HistoryRead {
                from_ms: end - DAY_MS,
                to_ms: end,
                step_ms: Some(300_000),
                now_ms: end,
            },
            &[],
            spans,
        )
        .unwrap();
    assert_eq!(h.resolution, Resolution::Minute);
    assert_eq!((h.step_ms, h.samples.len()), (300_000, 288));
    assert!(h.samples.iter().all(|&n| n == 10), "{:?}", h.samples);
    let cpu = series(&h, Metric::Cpu);
    assert!(
        cpu.avg.iter().all(|v| *v == Some(20.0)),
        "{:?}",
        &cpu.avg[..5]
    );
    assert!(cpu.min.iter().all(|v| *v == Some(10.0)));
    assert!(cpu.max.iter().all(|v| *v == Some(30.0)));
    assert_eq!(
        h.series.len(),
        Metric::ALL.len(),
        "every series when none is named"
    );
    let mem = series(&h, Metric::Mem);
    assert_eq!(mem.avg[0], Some(25.0));

    // A step finer than what is kept is widened to it; too many points, to MAX_POINTS.
    let h = store
        .history(
            node,
            HistoryRead {
                from_ms: end - DAY_MS,
                to_ms: end,
                step_ms: Some(1000),
                now_ms: end,
            },
            &[Metric::Cpu],
            spans,
        )
        .unwrap();
    assert_eq!(h.step_ms, 60_000);
    let h = store
        .history(
            node,
            HistoryRead {
                from_ms: end - 2 * HOUR_MS,
                to_ms: end,
                step_ms: Some(1000),
                now_ms: end,
            },
            &[Metric::Cpu],
            spans,
        )
        .unwrap();
    assert_eq!(
        h.resolution,
        Resolution::Minute,
        "raw holds only the last hour"
    );
    store.close().await;
}

#[tokio::test]
async fn old_data_is_pruned_tier_by_tier() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let node = enrolled(&store, 2).await;
    let spans = HistorySpans::default();
    // 120 days, one heartbeat every 10 minutes (enough to fill every tier quickly).
    let end = T0 + 120 * DAY_MS;
    feed(&store, node, T0, end, 600_000, |_| 50.0).await;
    let count = |from: i64, to: i64| {
        let h = store
            .history(
                node,
                HistoryRead {
                    from_ms: from,
                    to_ms: to,
                    step_ms: None,
                    now_ms: end,
                },
                &[Metric::Cpu],
                spans,
            )
            .unwrap();
        (
            h.resolution,
            h.samples.iter().map(|&n| u64::from(n)).sum::<u64>(),
        )
    };
    // 80 days ago: hours. 105 days ago: gone (past 90 days, and past the block holding the
    // 90th day, which spans at most 14 days).
    assert_eq!(
        count(end - 80 * DAY_MS, end - 79 * DAY_MS),
        (Resolution::Hour, 144)
    );
    assert_eq!(count(end - 105 * DAY_MS, end - 104 * DAY_MS).1, 0);
    assert_eq!(count(end - 119 * DAY_MS, end - 118 * DAY_MS).1, 0);
    // The minute tier keeps its 48 hours (and no more than a block beyond).
    assert_eq!(
        count(end - 47 * HOUR_MS, end - 46 * HOUR_MS),
        (Resolution::Minute, 6)
    );
    let old_minutes = store.history(
        node,
        HistoryRead {
            from_ms: end - 60 * HOUR_MS,
            to_ms: end - 59 * HOUR_MS,
            step_ms: Some(60_000),
            now_ms: end,
        },
        &[],
        spans,
    );
    assert_eq!(old_minutes.unwrap().resolution, Resolution::Hour);
    // What stays is bounded: a steady node's 90 days fit in a few KiB.
    let bytes = store.history_bytes(node).unwrap();
    assert!(bytes < 16 * 1024, "{bytes} bytes");
    store.close().await;
}

#[tokio::test]
async fn silent_nodes_are_sealed_by_the_sweep_and_deleted_ones_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let spans = HistorySpans::default();
    let quiet = enrolled(&store, 3).await;
    let gone = enrolled(&store, 4).await;
    feed(&store, quiet, T0, T0 + HOUR_MS, 30_000, |_| 5.0).await;
    feed(&store, gone, T0, T0 + HOUR_MS, 30_000, |_| 5.0).await;
    store.delete_node(gone, "alice".into(), T0).await.unwrap();

    // Three days later the quiet node's last windows are sealed and rolled up; its hour of
    // data reads the same from the hour tier.
    let later = T0 + 3 * DAY_MS;
    let swept = store.sweep_history(later, spans).await.unwrap();
    assert_eq!(swept.orphans, 1, "{swept:?}");
    assert!(swept.sealed >= 2, "{swept:?}");
    let h = store
        .history(
            quiet,
            HistoryRead {
                from_ms: T0,
                to_ms: T0 + HOUR_MS,
                step_ms: None,
                now_ms: later,
            },
            &[Metric::Cpu],
            spans,
        )
        .unwrap();
    assert_eq!(h.resolution, Resolution::Hour);
    assert_eq!(h.samples, vec![120]);
    assert_eq!(series(&h, Metric::Cpu).avg, vec![Some(5.0)]);
    assert_eq!(store.history_bytes(gone).unwrap(), 0);
    // A second sweep finds nothing to do.
    let again = store.sweep_history(later, spans).await.unwrap();
    assert_eq!((again.sealed, again.orphans), (0, 0), "{again:?}");
    store.close().await;
}

#[tokio::test]
async fn late_heartbeats_are_counted_and_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let node = enrolled(&store, 5).await;
    let spans = HistorySpans::default();
    let now = T0 + HOUR_MS;
    let first = vec![HistorySample::new(node, now, &cpu(1.0))];
    store.append_history(first, now, spans).await.unwrap();
    let late = vec![
        HistorySample::new(node, now - HOUR_MS, &cpu(99.0)),
        HistorySample::new(node, now + 1000, &cpu(3.0)),
    ];
    let wrote = store.append_history(late, now, spans).await.unwrap();
    assert_eq!((wrote.samples, wrote.late), (1, 1));
    let h = store
        .history(
            node,
            HistoryRead {
                from_ms: now - HOUR_MS,
                to_ms: now + 2000,
                step_ms: None,
                now_ms: now,
            },
            &[Metric::Cpu],
            spans,
        )
        .unwrap();
    assert_eq!(
        series(&h, Metric::Cpu)
            .max
            .iter()
            .flatten()
            .copied()
            .fold(0.0, f64::max),
        3.0
    );
    store.close().await;
}

#[tokio::test]
async fn the_fleet_trend_is_kept_beside_the_nodes_and_survives_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let spans = HistorySpans::default();
    // One flush's heartbeats: CPU 1 % to 100 % over 100 nodes.
    let beats: Vec<HistorySample> = (1..=100)
        .map(|i| HistorySample::new(NodeId::random(), T0, &cpu(i as f32)))
        .collect();
    let fleet = fleet_quantiles(&beats, T0);
    assert_eq!(fleet.len(), 2);
    assert!(fleet_quantiles(&[], T0).is_empty());
    store.append_history(fleet, T0, spans).await.unwrap();
    let read = |which: NodeId, now: i64| {
        let h = store
            .history(
                which,
                HistoryRead {
                    from_ms: T0,
                    to_ms: T0 + 1000,
                    step_ms: None,
                    now_ms: now,
                },
                &[Metric::Cpu],
                spans,
            )
            .unwrap();
        series(&h, Metric::Cpu)
            .avg
            .iter()
            .flatten()
            .copied()
            .collect::<Vec<_>>()
    };
    assert_eq!(read(FLEET_MEDIAN, T0), [50.0]);
    assert_eq!(read(FLEET_P95, T0), [95.0]);
    // No node has these ids: the sweep keeps them (sealed and rolled up like a node's).
    let later = T0 + 3 * DAY_MS;
    let swept = store.sweep_history(later, spans).await.unwrap();
    assert_eq!(swept.orphans, 0, "{swept:?}");
    let h = store
        .history(
            FLEET_P95,
            HistoryRead {
                from_ms: T0,
                to_ms: T0 + HOUR_MS,
                step_ms: None,
                now_ms: later,
            },
            &[Metric::Cpu],
            spans,
        )
        .unwrap();
    assert_eq!(h.resolution, Resolution::Hour);
    assert_eq!(series(&h, Metric::Cpu).avg, vec![Some(95.0)]);
    store.close().await;
}

/// Heartbeats a read of `[from_ms, to_ms)` at 30 s finds, and their CPU values.
fn points(store: &Store, node: NodeId, from_ms: i64, to_ms: i64) -> Vec<(u32, Option<f64>)> {
    let h = store
        .history(
            node,
            HistoryRead {
                from_ms,
                to_ms,
                step_ms: Some(30_000),
                now_ms: to_ms,
            },
            &[Metric::Cpu],
            HistorySpans::default(),
        )
        .unwrap();
    h.samples
        .iter()
        .copied()
        .zip(series(&h, Metric::Cpu).avg.iter().copied())
        .collect()
}

#[tokio::test]
async fn the_open_window_survives_a_clean_restart_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let node = enrolled(&store, 1).await;
    // 25 minutes: two windows sealed, the third (5 minutes) open, in memory.
    let mid = T0 + 25 * 60_000;
    feed(&store, node, T0, mid, 30_000, |at| {
        ((at - T0) / 30_000) as f32
    })
    .await;
    let before = points(&store, node, T0, mid);
    assert_eq!(before.len(), 50);
    assert!(before.iter().all(|&(n, _)| n == 1), "{before:?}");
    store.close().await;

    // Reopened: the open window is back, and sealing it later stores each heartbeat once.
    let store = open(&dir);
    assert_eq!(points(&store, node, T0, mid), before);
    let end = T0 + 40 * 60_000;
    feed(&store, node, mid, end, 30_000, |at| {
        ((at - T0) / 30_000) as f32
    })
    .await;
    let after = points(&store, node, T0, end);
    assert_eq!(after.len(), 80);
    assert!(after.iter().all(|&(n, _)| n == 1), "{after:?}");
    assert_eq!(&after[..50], &before[..]);
    // The minute tier has the same heartbeats, two to a minute.
    let h = store
        .history(
            node,
            HistoryRead {
                from_ms: T0,
                to_ms: end,
                step_ms: Some(60_000),
                now_ms: end + 2 * HOUR_MS,
            },
            &[Metric::Cpu],
            HistorySpans::default(),
        )
        .unwrap();
    assert_eq!(h.resolution, Resolution::Minute);
    assert!(h.samples.iter().all(|&n| n == 2), "{:?}", h.samples);
    store.close().await;
}

#[tokio::test]
async fn a_crash_loses_only_the_open_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let node = enrolled(&store, 1).await;
    let mid = T0 + 25 * 60_000;
    feed(&store, node, T0, mid, 30_000, |_| 50.0).await;
    // No close: what a killed core leaves (once its writer thread has let go of the file).
    drop(store);
    let path = dir.path().join("tether.redb");
    let mut reopened = Store::open(&path);
    for _ in 0..250 {
        if !matches!(reopened, Err(StoreError::InUse(_))) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        reopened = Store::open(&path);
    }
    let store = reopened.unwrap();
    let kept = points(&store, node, T0, mid);
    let heartbeats: u32 = kept.iter().map(|&(n, _)| n).sum();
    assert_eq!(heartbeats, 40, "the two sealed windows, not the open one");
    store.close().await;
}

#[tokio::test]
async fn windows_a_failed_write_could_not_seal_are_kept_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tether.redb");
    let store = Store::open(&path).unwrap();
    let node = enrolled(&store, 1).await;
    store.close().await;
    // Every write refused, as on a full disk: windows end and cannot be sealed.
    let store = Store::open_keeping_free(&path, u64::MAX).unwrap();
    let spans = HistorySpans::default();
    let mut failed = 0;
    for i in 0..50 {
        let at = T0 + i * 30_000;
        let sample = HistorySample::new(node, at, &cpu(i as f32));
        if store.append_history(vec![sample], at, spans).await.is_err() {
            failed += 1;
        }
    }
    assert!(
        failed >= 2,
        "the writes that would seal windows failed ({failed})"
    );
    // Every heartbeat is still there to read, each once.
    let kept = points(&store, node, T0, T0 + 25 * 60_000);
    assert_eq!(kept.len(), 50);
    assert!(kept.iter().all(|&(n, _)| n == 1), "{kept:?}");
    assert_eq!(kept[49].1, Some(49.0));
}

#[tokio::test]
async fn a_node_silent_past_every_span_keeps_no_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let spans = HistorySpans::default();
    let node = enrolled(&store, 13).await;
    let end = T0 + 3 * DAY_MS;
    feed(&store, node, T0, end, 30_000, |at| {
        ((at / 30_000) % 50) as f32
    })
    .await;
    assert!(store.history_bytes(node).unwrap() > 0);
    // Silent for longer than the hour tier's span: the sweep seals what was open, then finds
    // each tier's newest block ended before its span (read to learn so) and drops it.
    let later = end + 91 * DAY_MS;
    let swept = store.sweep_history(later, spans).await.unwrap();
    assert!(swept.pruned > 0, "{swept:?}");
    assert_eq!(store.history_bytes(node).unwrap(), 0);
    store.close().await;
}

/// Heartbeats over `[from_ms, to_ms)` every 30 s, then a sweep at `sweep_ms` (which seals what
/// the node left open).
async fn feed_and_sweep(store: &Store, node: NodeId, from_ms: i64, to_ms: i64, sweep_ms: i64) {
    feed(store, node, from_ms, to_ms, 30_000, |at| {
        ((at / 30_000) % 40) as f32
    })
    .await;
    store
        .sweep_history(sweep_ms, HistorySpans::default())
        .await
        .unwrap();
}

fn minutes_samples(store: &Store, node: NodeId, from_ms: i64, to_ms: i64, now_ms: i64) -> u64 {
    let h = store
        .history(
            node,
            HistoryRead {
                from_ms,
                to_ms,
                step_ms: Some(60_000),
                now_ms,
            },
            &[Metric::Cpu],
            HistorySpans::default(),
        )
        .unwrap();
    assert_eq!(h.resolution, Resolution::Minute);
    h.samples.iter().map(|&n| u64::from(n)).sum()
}

#[tokio::test]
async fn heartbeats_arriving_late_are_read_where_their_time_says() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let node = enrolled(&store, 14).await;
    feed_and_sweep(&store, node, T0, T0 + 20 * HOUR_MS, T0 + 20 * HOUR_MS).await;
    feed_and_sweep(
        &store,
        node,
        T0 + 24 * HOUR_MS,
        T0 + 30 * HOUR_MS,
        T0 + 31 * HOUR_MS,
    )
    .await;
    // The clock stepped back: 25 minutes at 21:00, after 30 hours were stored.
    let late = T0 + 21 * HOUR_MS;
    feed_and_sweep(&store, node, late, late + 25 * 60_000, T0 + 32 * HOUR_MS).await;
    let now = T0 + 32 * HOUR_MS;
    assert_eq!(
        minutes_samples(&store, node, late - HOUR_MS / 2, late + HOUR_MS, now),
        50
    );
    // Nothing else moved, nothing is counted twice.
    assert_eq!(
        minutes_samples(&store, node, T0 + 10 * HOUR_MS, T0 + 20 * HOUR_MS, now),
        1200
    );
    assert_eq!(
        minutes_samples(&store, node, T0 + 24 * HOUR_MS, T0 + 30 * HOUR_MS, now),
        720
    );
    store.close().await;
}

#[tokio::test]
async fn a_gap_does_not_keep_old_history_past_its_span() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let spans = HistorySpans::default();
    let node = enrolled(&store, 15).await;
    // Five days, silence until day 60, one more day; swept on day 120.
    feed(&store, node, T0, T0 + 5 * DAY_MS, 600_000, |_| 20.0).await;
    feed(
        &store,
        node,
        T0 + 60 * DAY_MS,
        T0 + 61 * DAY_MS,
        600_000,
        |_| 20.0,
    )
    .await;
    let now = T0 + 120 * DAY_MS;
    store.sweep_history(now, spans).await.unwrap();
    let hours = |from: i64, to: i64| {
        let h = store
            .history(
                node,
                HistoryRead {
                    from_ms: from,
                    to_ms: to,
                    step_ms: None,
                    now_ms: now,
                },
                &[Metric::Cpu],
                spans,
            )
            .unwrap();
        h.samples.iter().map(|&n| u64::from(n)).sum::<u64>()
    };
    // Days 0 to 5 are 115 days old: past the 90 days and the at most 14 days a block adds, though
    // the next block began only on day 60.
    assert_eq!(hours(T0, T0 + 5 * DAY_MS), 0);
    assert_eq!(hours(T0 + 60 * DAY_MS, T0 + 61 * DAY_MS), 144);
    store.close().await;
}

//! Heartbeat costs: encoding and decoding one, core's per-heartbeat work, and one heartbeat end to
//! end through a real QUIC connection into a running core.
//!
//! `cargo bench -p tether-benches --bench heartbeat`

use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tether_benches::sim::{self, SimNode};
use tether_certs::node_key::NodeKey;
use tether_core::Core;
use tether_core::config::CoreConfig;
use tether_core::presence::{Live, ingest_datagram};
use tether_wire::NodeId;
use tether_wire::heartbeat::{Datagram, Heartbeat, decode_datagram, encode_heartbeat};

fn heartbeat() -> Heartbeat {
    Heartbeat {
        seq: 42,
        timestamp_ms: 1_790_000_000_000,
        metrics: sim::sample_metrics(),
    }
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("heartbeat");
    let (bytes, _) = encode_heartbeat(heartbeat());
    group.bench_function("encode", |b| {
        b.iter(|| encode_heartbeat(std::hint::black_box(heartbeat())))
    });
    group.bench_function("decode", |b| {
        b.iter(|| decode_datagram(std::hint::black_box(&bytes)).unwrap())
    });
    let live = Mutex::new(Live {
        heartbeat_ok: true,
        ..Default::default()
    });
    group.bench_function("ingest (decode + update presence)", |b| {
        b.iter(|| {
            let outcome = ingest_datagram(
                &live,
                std::hint::black_box(&bytes),
                1_790_000_000_100,
                120_000,
            );
            std::hint::black_box(outcome)
        })
    });
    group.finish();
    eprintln!("heartbeat datagram: {} bytes", bytes.len());
    let Datagram::Heartbeat(_) = decode_datagram(&bytes).unwrap() else {
        unreachable!()
    };
}

fn now_secs() -> i64 {
    tether_wire::units::unix_ms(std::time::SystemTime::now()) / 1000
}

/// One heartbeat from send to core's presence update, through QUIC on loopback: send, then wait
/// until core has counted it.
fn end_to_end(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (core, mut node) = runtime.block_on(async {
        let mut config = CoreConfig::with_data_dir(dir.path().join("core"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.auto_approve = true;
        let core = Core::start(config).await.unwrap();
        let mut token = core.data_dir().join_token().unwrap();
        token.core_addr = core.local_addr().to_string();
        let endpoint = sim::client_endpoint(&token).unwrap();
        let key = NodeKey::generate().unwrap();
        let id = NodeId::random();
        let secret = sim::enroll(&endpoint, core.local_addr(), &token, &key, id, now_secs())
            .await
            .unwrap();
        let node = SimNode::connect(&endpoint, core.local_addr(), id, &secret, now_secs)
            .await
            .unwrap();
        (core, node)
    });
    c.bench_function(
        "heartbeat/end to end over QUIC (send → decode → presence)",
        |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iterations {
                        let before = core.heartbeats_received();
                        node.heartbeat(tether_wire::units::unix_ms(std::time::SystemTime::now()))
                            .unwrap();
                        while core.heartbeats_received() == before {
                            tokio::task::yield_now().await;
                        }
                    }
                    start.elapsed()
                })
            })
        },
    );
    runtime.block_on(core.shutdown());
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = codec, end_to_end
}
criterion_main!(benches);

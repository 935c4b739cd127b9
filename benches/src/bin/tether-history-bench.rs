//! `tether-history-bench`: the metrics history measured on the store itself (a real redb file),
//! with heartbeats shaped like busy servers' (per node: CPU wandering around its own level with
//! bursts, memory drifting, disks filling slowly, network rates spread over two orders of
//! magnitude, load following CPU, processes and sockets jittering). Prints one JSON document.
//!
//! - `size`: N nodes × D days at one heartbeat per interval, written as core writes them (a
//!   batch per flush); then bytes of history per node (the stored values) and the database
//!   file's size per node (with redb's pages and free space).
//! - `write`: N nodes' heartbeats for a while at the interval, as core's flush writes them; the
//!   process's CPU time per heartbeat and per second of fleet time.
//! - `read`: one node's 24 hours at 1-minute steps (and other ranges), timed, with N other
//!   nodes' history in the same file.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tether_benches::cpu_seconds;
use tether_store::{HistoryRead, HistorySample, HistorySpans, Store};
use tether_wire::NodeId;
use tether_wire::heartbeat::{DiskUsage, Metrics};

#[derive(Debug, Parser)]
#[command(name = "tether-history-bench", version, about)]
struct Cli {
    /// The database file (created; removed at the end unless --keep).
    #[arg(long, default_value = "/tmp/tether-history-bench.redb")]
    db: PathBuf,
    /// Keep the database file.
    #[arg(long)]
    keep: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// History on disk per node at steady state.
    Size {
        #[arg(long, default_value_t = 20)]
        nodes: usize,
        #[arg(long, default_value_t = 92)]
        days: u32,
        /// Heartbeat interval, seconds.
        #[arg(long, default_value_t = 30)]
        interval: i64,
        /// How restless the servers are: 1 is busy (CPU jitter of ±4 points and a burst every
        /// 25 minutes, sockets ±8 a heartbeat, rates spread over 10×); 0.25 a quiet server.
        #[arg(long, default_value_t = 1.0)]
        noise: f64,
        /// Seconds of fleet time per write (core flushes every 30 s; longer runs faster and
        /// makes larger transactions).
        #[arg(long, default_value_t = 3600)]
        flush: i64,
        /// How long 1-minute aggregates are kept, hours (core's default: 48).
        #[arg(long, default_value_t = 48)]
        minute_hours: i64,
        /// How long 1-hour aggregates are kept, days (core's default: 90).
        #[arg(long, default_value_t = 90)]
        hour_days: i64,
    },
    /// CPU time of writing history.
    Write {
        #[arg(long, default_value_t = 100_000)]
        nodes: usize,
        /// Fleet time simulated, minutes.
        #[arg(long, default_value_t = 60)]
        minutes: i64,
        #[arg(long, default_value_t = 30)]
        interval: i64,
        /// Flush interval, seconds (core's `history_flush`).
        #[arg(long, default_value_t = 30)]
        flush: i64,
    },
    /// Reading one node's history with many others stored.
    Read {
        /// Other nodes, each with `--filler-hours` of history at `--filler-interval`.
        #[arg(long, default_value_t = 100_000)]
        nodes: usize,
        #[arg(long, default_value_t = 26)]
        filler_hours: i64,
        #[arg(long, default_value_t = 300)]
        filler_interval: i64,
        /// Reads of each range.
        #[arg(long, default_value_t = 50)]
        runs: usize,
    },
}

/// One simulated server's state.
struct Server {
    id: NodeId,
    noise: f64,
    rng: StdRng,
    cpu_level: f64,
    cpu: f64,
    mem: f64,
    disk_used: f64,
    rx_level: f64,
    tx_level: f64,
    load: [f64; 3],
    procs: f64,
    tcp: f64,
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

impl Server {
    fn new(seed: u64) -> Server {
        Server::restless(seed, 1.0)
    }

    fn restless(seed: u64, noise: f64) -> Server {
        let mut rng = StdRng::seed_from_u64(seed);
        let cpu_level = rng.gen_range(2.0..45.0);
        Server {
            id: NodeId::random(),
            noise,
            cpu_level,
            cpu: cpu_level,
            mem: rng.gen_range(20.0..85.0),
            disk_used: rng.gen_range(20.0..300.0) * GIB,
            rx_level: 10f64.powf(rng.gen_range(3.5..6.5)),
            tx_level: 10f64.powf(rng.gen_range(3.0..6.0)),
            load: [cpu_level / 25.0; 3],
            procs: rng.gen_range(120.0..400.0),
            tcp: rng.gen_range(10.0..500.0),
            rng,
        }
    }

    /// The next heartbeat's metrics, `interval` seconds after the last.
    fn next(&mut self, interval: f64) -> Metrics {
        let r = &mut self.rng;
        let k = self.noise;
        // CPU: mean-reverting noise around the server's level, with a burst now and then.
        self.cpu += 0.3 * (self.cpu_level - self.cpu) + k * r.gen_range(-4.0..4.0);
        let burst = if r.gen_bool(0.02 * k.min(1.0)) {
            r.gen_range(20.0..60.0)
        } else {
            0.0
        };
        let cpu = (self.cpu + burst).clamp(0.0, 100.0);
        self.mem = (self.mem + k * r.gen_range(-0.2..0.2)).clamp(5.0, 98.0);
        self.disk_used += r.gen_range(0.0..2.0e5) * interval;
        // Rates spread over 10^k around the server's level.
        let spread = 10f64.powf(k);
        let rx = self.rx_level * r.gen_range(1.0..=spread) / spread.sqrt();
        let tx = self.tx_level * r.gen_range(1.0..=spread) / spread.sqrt();
        for (i, tau) in [60.0, 300.0, 900.0].into_iter().enumerate() {
            let a = (-interval / tau).exp();
            self.load[i] = a * self.load[i] + (1.0 - a) * (cpu / 25.0);
        }
        self.procs = (self.procs + k * r.gen_range(-3.0..3.0)).max(50.0);
        self.tcp = (self.tcp + k * r.gen_range(-8.0..8.0)).max(0.0);
        let total = 16.0 * GIB;
        Metrics {
            cpu_percent: cpu as f32,
            memory_used: (self.mem / 100.0 * total) as u64,
            memory_total: total as u64,
            disks: vec![
                DiskUsage {
                    mount: "/".into(),
                    used_bytes: 12 << 30,
                    total_bytes: 50 << 30,
                },
                DiskUsage {
                    mount: "/srv".into(),
                    used_bytes: self.disk_used as u64,
                    total_bytes: 1000 << 30,
                },
            ],
            net_rx_bytes_per_sec: rx as u64,
            net_tx_bytes_per_sec: tx as u64,
            load1: self.load[0] as f32,
            load5: self.load[1] as f32,
            load15: self.load[2] as f32,
            processes: self.procs as u32,
            tcp_connections: self.tcp as u32,
            ..Metrics::default()
        }
    }
}

/// Writes `servers`' heartbeats from `start_s` for `span_s` at `interval`, a batch per `flush`.
async fn feed(
    store: &Store,
    servers: &mut [Server],
    start_s: i64,
    span_s: i64,
    interval: i64,
    flush: i64,
    spans: HistorySpans,
) -> anyhow::Result<u64> {
    let mut batch = Vec::new();
    let mut written = 0u64;
    let mut t = start_s;
    let mut next_flush = start_s + flush;
    while t < start_s + span_s {
        for (i, s) in servers.iter_mut().enumerate() {
            // Nodes' heartbeats are spread over the interval, as a real fleet's are.
            let at = t * 1000 + (i as i64 * 997) % (interval * 1000);
            batch.push(HistorySample::new(s.id, at, &s.next(interval as f64)));
        }
        t += interval;
        if t >= next_flush {
            written += batch.len() as u64;
            store
                .append_history(std::mem::take(&mut batch), t * 1000, spans)
                .await?;
            next_flush += flush;
        }
    }
    written += batch.len() as u64;
    store.append_history(batch, t * 1000, spans).await?;
    Ok(written)
}

/// A day boundary in 2027, so windows line up as they would.
const START_S: i64 = 1_800_000_000 - 1_800_000_000 % 86_400;

async fn size(
    store: &Store,
    nodes: usize,
    days: u32,
    interval: i64,
    noise: f64,
    flush: i64,
    spans: HistorySpans,
) -> anyhow::Result<Value> {
    let mut servers: Vec<Server> = (0..nodes)
        .map(|i| Server::restless(i as u64, noise))
        .collect();
    let span = i64::from(days) * 86_400;
    let started = Instant::now();
    let cpu0 = cpu_seconds();
    let written = feed(store, &mut servers, START_S, span, interval, flush, spans).await?;
    let cpu = cpu_seconds() - cpu0;
    // (No sweep: these nodes are not enrolled, and the sweep drops history of unknown nodes.)
    let per_node: Vec<u64> = servers
        .iter()
        .map(|s| store.history_bytes(s.id))
        .collect::<Result<_, _>>()?;
    let mean = per_node.iter().sum::<u64>() as f64 / nodes as f64;
    let mut tiers = [0u64; 3];
    for s in &servers {
        for (t, b) in store.history_bytes_by_tier(s.id)?.iter().enumerate() {
            tiers[t] += b;
        }
    }
    let tiers = tiers.map(|b| b as f64 / nodes as f64);
    let pages = store.history_pages().await?;
    let per = |b: u64| b as f64 / nodes as f64;
    Ok(json!({
        "nodes": nodes, "days": days, "interval_s": interval, "noise": noise, "flush_s": flush,
        "spans_s": {"raw": spans.raw_s, "minute": spans.minute_s, "hour": spans.hour_s}, "heartbeats": written,
        "history_bytes_per_node": {"mean": mean, "min": per_node.iter().min(), "max": per_node.iter().max(),
            "raw": tiers[0], "minute": tiers[1], "hour": tiers[2]},
        "pages_per_node": {"open": per(pages.open_pages), "open_stored": per(pages.open_stored),
            "blocks": per(pages.chunk_pages), "blocks_stored": per(pages.chunk_stored),
            "file_allocated": per(pages.file_allocated)},
        "seconds": started.elapsed().as_secs_f64(),
        "cpu_us_per_heartbeat": cpu * 1e6 / written as f64,
    }))
}

async fn write(
    store: &Store,
    nodes: usize,
    minutes: i64,
    interval: i64,
    flush: i64,
) -> anyhow::Result<Value> {
    let mut servers: Vec<Server> = (0..nodes).map(|i| Server::new(i as u64)).collect();
    // Generating metrics is not core's work: time it alone and take it off.
    let gen_started = cpu_seconds();
    let mut probe = Server::new(u64::MAX);
    for _ in 0..1_000_000 {
        std::hint::black_box(probe.next(30.0));
    }
    // Seconds for a million calls are microseconds per call.
    let gen_us = cpu_seconds() - gen_started;
    let sample_started = cpu_seconds();
    for _ in 0..1_000_000 {
        std::hint::black_box(HistorySample::new(probe.id, 0, &probe.next(30.0)));
    }
    let sample_us = cpu_seconds() - sample_started - gen_us;
    let started = Instant::now();
    let cpu0 = cpu_seconds();
    let spans = HistorySpans::default();
    let written = feed(
        store,
        &mut servers,
        START_S,
        minutes * 60,
        interval,
        flush,
        spans,
    )
    .await?;
    let cpu = cpu_seconds() - cpu0;
    let per_heartbeat_us = cpu * 1e6 / written as f64 - gen_us;
    // At N nodes every `interval`: heartbeats per second times the cost of each.
    let fleet_rate = nodes as f64 / interval as f64;
    Ok(json!({
        "nodes": nodes, "fleet_minutes": minutes, "interval_s": interval, "flush_s": flush,
        "heartbeats": written, "seconds": started.elapsed().as_secs_f64(),
        "cpu_us_per_heartbeat_generation_taken_off": per_heartbeat_us,
        "of_which_quantize_us": sample_us,
        "generation_us": gen_us,
        "core_share_of_one_cpu_at_this_fleet": per_heartbeat_us * fleet_rate / 1e6,
    }))
}

async fn read(
    store: &Store,
    nodes: usize,
    filler_hours: i64,
    filler_interval: i64,
    runs: usize,
) -> anyhow::Result<Value> {
    // The node read: 3 days at 30 s, so its last 48 hours are full.
    let mut target = vec![Server::new(7)];
    let end_s = START_S + 3 * 86_400;
    let spans = HistorySpans::default();
    feed(store, &mut target, START_S, 3 * 86_400, 30, 3600, spans).await?;
    let started = Instant::now();
    let mut filler: Vec<Server> = (0..nodes).map(|i| Server::new(1000 + i as u64)).collect();
    let filler_written = feed(
        store,
        &mut filler,
        end_s - filler_hours * 3600,
        filler_hours * 3600,
        filler_interval,
        3600,
        spans,
    )
    .await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    let id = target[0].id;
    let mut results = Vec::new();
    for (name, range_s, step_ms) in [
        ("24h at 1m", 86_400, Some(60_000)),
        ("1h at 30s", 3600, Some(30_000)),
        ("48h at 5m", 2 * 86_400, Some(300_000)),
    ] {
        let mut times = Vec::new();
        let mut points = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let h = store.history(
                id,
                HistoryRead {
                    from_ms: (end_s - range_s) * 1000,
                    to_ms: end_s * 1000,
                    step_ms,
                    now_ms: end_s * 1000,
                },
                &[],
                HistorySpans::default(),
            )?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            points = h.samples.iter().filter(|&&n| n > 0).count();
        }
        times.sort_by(f64::total_cmp);
        results.push(json!({
            "range": name, "points_with_data": points,
            "ms": {"min": times[0], "median": times[times.len() / 2], "max": times[times.len() - 1]},
        }));
    }
    Ok(json!({
        "other_nodes": nodes, "filler_heartbeats": filler_written, "fill_seconds": fill_seconds,
        "reads": results,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _ = std::fs::remove_file(&cli.db);
    let store = Store::open(&cli.db)?;
    let mut result = match cli.command {
        Cmd::Size {
            nodes,
            days,
            interval,
            noise,
            flush,
            minute_hours,
            hour_days,
        } => {
            let spans = HistorySpans {
                minute_s: minute_hours * 3600,
                hour_s: hour_days * 86_400,
                ..HistorySpans::default()
            };
            size(&store, nodes, days, interval, noise, flush, spans).await?
        }
        Cmd::Write {
            nodes,
            minutes,
            interval,
            flush,
        } => write(&store, nodes, minutes, interval, flush).await?,
        Cmd::Read {
            nodes,
            filler_hours,
            filler_interval,
            runs,
        } => read(&store, nodes, filler_hours, filler_interval, runs).await?,
    };
    store.close().await;
    let file = std::fs::metadata(&cli.db)?.len();
    result["database_file_bytes"] = json!(file);
    if let Some(nodes) = result.get("nodes").and_then(Value::as_u64) {
        result["database_file_bytes_per_node"] = json!(file as f64 / nodes as f64);
    }
    if !cli.keep {
        let _ = std::fs::remove_file(&cli.db);
    }
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

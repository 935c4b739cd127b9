//! Metrics history: every node's heartbeats kept over time, downsampled as they age.
//!
//! Three tiers, each a resolution kept for a span ([`HistorySpans`]): every heartbeat (1 hour),
//! 1-minute aggregates (48 hours), 1-hour aggregates (90 days); an aggregate keeps the average,
//! minimum and maximum of each series and how many heartbeats it holds. A tier's newest rows
//! sit in one *open chunk* per node; when its window ends (10 minutes, 1 hour, 1 day) the chunk
//! is sealed into a compressed block (10 minutes, 6 hours, 7 days: later windows are merged
//! into the block) and rolled up into the next tier's open chunk, and blocks past the tier's
//! span are deleted. So nothing is computed on a timer across all nodes: the work is done when
//! a node's own heartbeats cross a window, and a sweep ([`Store::sweep_history`]) only seals
//! what silent nodes left open and drops what deleted nodes left behind.
//!
//! Times are unix seconds in storage; callers pass core's clock in (this crate reads none).

mod codec;
mod quantize;
mod raw;
mod rollup;

pub(crate) use raw::RawWindows;

use redb::{ReadableTable, Table};
use tether_wire::NodeId;
use tether_wire::heartbeat::Metrics;
use tether_wire::history::{MAX_POINTS, Metric, MetricSeries, Resolution};

use crate::tables::{METRICS_CHUNKS, METRICS_OPEN, NODES};
use crate::{Store, StoreError};
use codec::{Row, SERIES};
use rollup::{Acc, bucket, rollup};

/// How long each resolution is kept, seconds (`[history]` in core's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistorySpans {
    /// Every heartbeat; default 1 hour.
    pub raw_s: i64,
    /// 1-minute aggregates; default 48 hours.
    pub minute_s: i64,
    /// 1-hour aggregates; default 90 days.
    pub hour_s: i64,
}

impl Default for HistorySpans {
    fn default() -> Self {
        HistorySpans {
            raw_s: 3600,
            minute_s: 48 * 3600,
            hour_s: 90 * 86_400,
        }
    }
}

impl HistorySpans {
    fn of(&self, tier: usize) -> i64 {
        [self.raw_s, self.minute_s, self.hour_s][tier]
    }
}

/// One tier's shape.
struct Tier {
    /// Width of a row, seconds (0: one row per heartbeat).
    resolution_s: i64,
    /// The open chunk's window: sealed when a row past it arrives.
    window_s: i64,
    /// The sealed block windows are merged into (a multiple of the window).
    block_s: i64,
    /// zstd level for its blocks.
    level: i32,
    resolution: Resolution,
}

const TIERS: [Tier; 3] = [
    Tier {
        resolution_s: 0,
        window_s: 600,
        block_s: 600,
        level: 1,
        resolution: Resolution::Raw,
    },
    Tier {
        resolution_s: 60,
        window_s: 3600,
        block_s: 6 * 3600,
        level: 3,
        resolution: Resolution::Minute,
    },
    Tier {
        resolution_s: 3600,
        window_s: 86_400,
        block_s: 7 * 86_400,
        level: 3,
        resolution: Resolution::Hour,
    },
];

/// The fleet's median, kept as history of its own beside the nodes' (each series' median over
/// the heartbeats of one flush). Ids 1 and 2 are not random (version 4) UUIDs, so no node has
/// them.
pub const FLEET_MEDIAN: NodeId = NodeId(uuid::Uuid::from_u128(1));
/// The fleet's 95th percentile, likewise.
pub const FLEET_P95: NodeId = NodeId(uuid::Uuid::from_u128(2));
/// Ids below this are the fleet's series, never a node's; the sweep leaves them be.
const RESERVED_IDS: u128 = 16;

/// The fleet's median and 95th percentile of each series over `samples` (one flush's
/// heartbeats), as two samples at `at_ms` for [`FLEET_MEDIAN`] and [`FLEET_P95`]; none when
/// `samples` is empty. Quantiles by the nearest rank.
pub fn fleet_quantiles(samples: &[HistorySample], at_ms: i64) -> Vec<HistorySample> {
    if samples.is_empty() {
        return Vec::new();
    }
    let mut median = [0u32; SERIES];
    let mut p95 = [0u32; SERIES];
    let mut column: Vec<u32> = Vec::with_capacity(samples.len());
    for s in 0..SERIES {
        column.clear();
        column.extend(samples.iter().map(|x| x.values[s]));
        let n = column.len();
        let rank = |q: f64| (((n as f64) * q).ceil() as usize).clamp(1, n) - 1;
        median[s] = *column.select_nth_unstable(rank(0.5)).1;
        p95[s] = *column.select_nth_unstable(rank(0.95)).1;
    }
    let at_s = at_ms.div_euclid(1000);
    vec![
        HistorySample {
            node: FLEET_MEDIAN.0.as_u128(),
            at_s,
            values: median,
        },
        HistorySample {
            node: FLEET_P95.0.as_u128(),
            at_s,
            values: p95,
        },
    ]
}

/// One heartbeat as history keeps it.
#[derive(Debug, Clone)]
pub struct HistorySample {
    node: u128,
    at_s: i64,
    values: [u32; SERIES],
}

impl HistorySample {
    /// Node `node`'s heartbeat received at `at_ms` (core's clock).
    pub fn new(node: NodeId, at_ms: i64, metrics: &Metrics) -> Self {
        HistorySample {
            node: node.0.as_u128(),
            at_s: at_ms.div_euclid(1000),
            values: quantize::sample(metrics),
        }
    }
}

/// What a write of history did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HistoryWrite {
    /// Heartbeats stored.
    pub samples: usize,
    /// Heartbeats older than their node's open window, left out.
    pub late: usize,
    /// Windows sealed into blocks.
    pub sealed: usize,
    /// Blocks deleted past their span.
    pub pruned: usize,
    /// Nodes no longer in the store whose history was removed (sweeps only).
    pub orphans: usize,
}

/// What [`Store::history`] reads: a range, a step, and core's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRead {
    /// Start, unix ms.
    pub from_ms: i64,
    /// End (excluded), unix ms.
    pub to_ms: i64,
    /// Point width, milliseconds; none for about 200 points.
    pub step_ms: Option<u64>,
    /// Now, unix ms: decides which tier still holds `from_ms`.
    pub now_ms: i64,
}

/// One node's history over a range, at one step ([`Store::history`]).
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// The first point's start, unix ms.
    pub from_ms: i64,
    /// Width of each point, milliseconds.
    pub step_ms: u64,
    /// The stored resolution read.
    pub resolution: Resolution,
    /// Heartbeats per point.
    pub samples: Vec<u32>,
    /// Per metric asked for.
    pub series: Vec<MetricSeries>,
}

type OpenTable<'t> = Table<'t, (u128, u8), &'static [u8]>;
type ChunkTable<'t> = Table<'t, (u128, u8, i64), &'static [u8]>;

impl Store {
    /// Appends heartbeats to their nodes' history, sealing, rolling up and pruning as windows
    /// end. `now_ms` decides what is past its span. Samples of one node must come in the
    /// order they were received; a sample older than its node's open window is left out.
    pub async fn append_history(
        &self,
        mut samples: Vec<HistorySample>,
        now_ms: i64,
        spans: HistorySpans,
    ) -> Result<HistoryWrite, StoreError> {
        if samples.is_empty() {
            return Ok(HistoryWrite::default());
        }
        // Stable: a node's samples keep their order.
        samples.sort_by_key(|s| s.node);
        let mut done = HistoryWrite::default();
        self.raw_windows.push(&samples, &mut done);
        let ended = self.raw_windows.take_ended();
        if ended.is_empty() {
            return Ok(done);
        }
        let nodes: Vec<u128> = ended.iter().map(|(node, _)| *node).collect();
        let sealed = self
            .write(move |txn| {
                let mut open = txn.open_table(METRICS_OPEN)?;
                let mut chunks = txn.open_table(METRICS_CHUNKS)?;
                let mut done = HistoryWrite::default();
                let now_s = now_ms.div_euclid(1000);
                for (node, rows) in ended {
                    // A window a clean close left in the table is in these rows now.
                    open.remove((node, 0))?;
                    let mut cx = Cx {
                        open: &mut open,
                        chunks: &mut chunks,
                        node,
                        now_s,
                        spans,
                        done: &mut done,
                    };
                    cx.seal(0, rows)?;
                }
                Ok(done)
            })
            .await;
        // Failed: the windows wait for the next write instead of being lost.
        self.raw_windows.sealed(nodes, sealed.is_ok());
        let sealed = sealed?;
        done.sealed += sealed.sealed;
        done.pruned += sealed.pruned;
        Ok(done)
    }

    /// Seals open windows that ended more than a window ago (nodes that went silent), prunes
    /// their blocks past the span, and removes the history of nodes no longer in the store.
    /// A pass over one key per node and tier.
    pub async fn sweep_history(
        &self,
        now_ms: i64,
        spans: HistorySpans,
    ) -> Result<HistoryWrite, StoreError> {
        let now_s = now_ms.div_euclid(1000);
        self.raw_windows.end_stale(now_s);
        let ended = self.raw_windows.take_ended();
        let in_flight: Vec<u128> = ended.iter().map(|(node, _)| *node).collect();
        let mut stale: std::collections::HashMap<u128, Vec<Row>> = ended.into_iter().collect();
        let mut with_history: Vec<u128> = self.raw_windows.nodes();
        with_history.extend(stale.keys());
        let raw_windows = self.raw_windows.clone();
        let result = self
            .write(move |txn| {
                let mut open = txn.open_table(METRICS_OPEN)?;
                let mut chunks = txn.open_table(METRICS_CHUNKS)?;
                let nodes = txn.open_table(NODES)?;
                let mut done = HistoryWrite::default();
                // Every node with history: those with open windows or chunks, and those with only
                // blocks.
                for entry in open.iter()? {
                    let (key, _) = entry?;
                    let node = key.value().0;
                    if with_history.last() != Some(&node) {
                        with_history.push(node);
                    }
                }
                let mut next = Some(0u128);
                while let Some(from) = next {
                    let Some(entry) = chunks.range((from, 0u8, i64::MIN)..)?.next() else {
                        break;
                    };
                    let (key, _) = entry?;
                    let node = key.value().0;
                    with_history.push(node);
                    next = node.checked_add(1);
                }
                with_history.sort_unstable();
                with_history.dedup();
                for node in with_history {
                    // Deleted nodes keep their record (so they stay out), not their history; the
                    // fleet's own series belong to no node.
                    let kept = node < RESERVED_IDS
                        || match nodes.get(node)? {
                            Some(v) => {
                                !crate::codec::decode::<crate::NodeRecord>(v.value())?.deleted
                            }
                            None => false,
                        };
                    if !kept {
                        raw_windows.remove(node);
                        for tier in 0..TIERS.len() as u8 {
                            open.remove((node, tier))?;
                        }
                        let keys: Vec<(u128, u8, i64)> = chunks
                            .range((node, 0u8, i64::MIN)..=(node, u8::MAX, i64::MAX))?
                            .map(|e| e.map(|(k, _)| k.value()))
                            .collect::<Result<_, _>>()?;
                        for key in keys {
                            chunks.remove(key)?;
                        }
                        done.orphans += 1;
                        continue;
                    }
                    let mut cx = Cx {
                        open: &mut open,
                        chunks: &mut chunks,
                        node,
                        now_s,
                        spans,
                        done: &mut done,
                    };
                    if let Some(rows) = stale.remove(&node) {
                        cx.open.remove((node, 0))?;
                        cx.seal(0, rows)?;
                    }
                    // Tier 0's open windows are in memory, not in the table.
                    for tier in 1..TIERS.len() {
                        cx.seal_if_stale(tier)?;
                    }
                    for tier in 0..TIERS.len() {
                        cx.prune(tier)?;
                    }
                }
                Ok(done)
            })
            .await;
        self.raw_windows.sealed(in_flight, result.is_ok());
        result
    }

    /// Node `node`'s history over `[from_ms, to_ms)` of `read`: the finest tier still holding
    /// `from_ms` (as of `now_ms`), in points of `step_ms` (none: about 200 points), widened to
    /// that tier's resolution and to at most [`MAX_POINTS`] points. Points align to multiples
    /// of the step since the epoch. `metrics` empty means all.
    pub fn history(
        &self,
        node: NodeId,
        read: HistoryRead,
        metrics: &[Metric],
        spans: HistorySpans,
    ) -> Result<History, StoreError> {
        let HistoryRead {
            from_ms,
            to_ms,
            step_ms,
            now_ms,
        } = read;
        let node = node.0.as_u128();
        let from_s = from_ms.div_euclid(1000);
        let to_s = (to_ms.div_euclid(1000)).max(from_s + 1);
        let now_s = now_ms.div_euclid(1000);
        let range_s = to_s - from_s;
        let tier = (0..TIERS.len())
            .find(|&t| from_s >= now_s - spans.of(t))
            .unwrap_or(TIERS.len() - 1);
        let resolution_s = TIERS[tier].resolution_s.max(1);
        let asked_s = step_ms.map_or(ceil_div(range_s, 200), |ms| {
            i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX)
        });
        let least_s = ceil_div(range_s, i64::from(MAX_POINTS));
        let step_s =
            ceil_div(asked_s.max(least_s).max(1), resolution_s).saturating_mul(resolution_s);
        let first = bucket(from_s, step_s);
        let points = usize::try_from(ceil_div(to_s - first, step_s)).unwrap_or(0);

        // Memory before the database: a window sealed in between is then in both (and counted
        // once, see `rows_of`), never in neither.
        let raw = self.raw_windows.rows(node)?;
        let txn = self.read()?;
        let open = txn.open_table(METRICS_OPEN)?;
        let chunks = txn.open_table(METRICS_CHUNKS)?;
        let rows = rows_of(&open, &chunks, &raw, node, tier, first, to_s)?;
        let mut accs = vec![Acc::default(); points];
        for row in rows.iter().filter(|r| r.at_s >= first && r.at_s < to_s) {
            let i = ((bucket(row.at_s, step_s) - first) / step_s) as usize;
            if let Some(acc) = accs.get_mut(i) {
                acc.add(row);
            }
        }
        let metrics: Vec<Metric> = if metrics.is_empty() {
            Metric::ALL.to_vec()
        } else {
            metrics.to_vec()
        };
        let series = metrics
            .into_iter()
            .map(|metric| {
                let s = metric.index();
                let pick = |f: &dyn Fn(&Acc) -> f64| {
                    accs.iter()
                        .map(|a| (a.count > 0).then(|| f(a)))
                        .collect::<Vec<_>>()
                };
                MetricSeries {
                    metric,
                    avg: pick(&|a| a.average(metric)),
                    min: pick(&|a| quantize::decode(metric, a.min[s])),
                    max: pick(&|a| quantize::decode(metric, a.max[s])),
                }
            })
            .collect();
        Ok(History {
            from_ms: first * 1000,
            step_ms: u64::try_from(step_s).unwrap_or(u64::MAX) * 1000,
            resolution: TIERS[tier].resolution,
            samples: accs
                .iter()
                .map(|a| u32::try_from(a.count).unwrap_or(u32::MAX))
                .collect(),
            series,
        })
    }

    /// Writes the open raw windows into the table, for the next [`Store::open`] (a clean close).
    pub(crate) async fn keep_open_history(&self) -> Result<(), StoreError> {
        let windows = self.raw_windows.snapshot();
        if windows.is_empty() {
            return Ok(());
        }
        self.write(move |txn| {
            let mut open = txn.open_table(METRICS_OPEN)?;
            for (node, chunk) in windows {
                open.insert((node, 0), chunk.as_slice())?;
            }
            Ok(())
        })
        .await
    }

    /// Bytes of history kept for `node` (sealed blocks and open chunks), for measuring.
    pub fn history_bytes(&self, node: NodeId) -> Result<u64, StoreError> {
        Ok(self.history_bytes_by_tier(node)?.iter().sum())
    }

    /// [`Store::history_bytes`] per tier: every heartbeat, 1-minute and 1-hour aggregates.
    pub fn history_bytes_by_tier(&self, node: NodeId) -> Result<[u64; 3], StoreError> {
        let node = node.0.as_u128();
        let txn = self.read()?;
        let open = txn.open_table(METRICS_OPEN)?;
        let chunks = txn.open_table(METRICS_CHUNKS)?;
        let mut total = [0u64; 3];
        total[0] += self.raw_windows.bytes(node);
        for (tier, bytes) in total.iter_mut().enumerate() {
            if tier > 0
                && let Some(v) = open.get((node, tier as u8))?
            {
                *bytes += v.value().len() as u64;
            }
            for entry in
                chunks.range((node, tier as u8, i64::MIN)..=(node, tier as u8, i64::MAX))?
            {
                *bytes += entry?.1.value().len() as u64;
            }
        }
        Ok(total)
    }
}

/// `a / b` rounded up, for `b > 0`.
fn ceil_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b) + i64::from(a.rem_euclid(b) != 0)
}

/// Tier `tier`'s rows of `node` from `from_s` on: its blocks and open chunk, then what finer
/// tiers hold that was not rolled up yet, rolled up now. `raw` is the node's open raw window
/// (in memory, see [`RawWindows`]).
fn rows_of(
    open: &impl ReadableTable<(u128, u8), &'static [u8]>,
    chunks: &impl ReadableTable<(u128, u8, i64), &'static [u8]>,
    raw: &[Row],
    node: u128,
    tier: usize,
    from_s: i64,
    to_s: i64,
) -> Result<Vec<Row>, StoreError> {
    let t = &TIERS[tier];
    let mut rows = Vec::new();
    let first_block = bucket(from_s, t.block_s);
    for entry in chunks.range((node, tier as u8, first_block)..(node, tier as u8, to_s))? {
        rows.extend(codec::unseal(entry?.1.value())?);
    }
    if tier == 0 {
        rows.extend_from_slice(raw);
        // A window sealed between reading memory and the database is in both.
        rows.sort_by_key(|r| r.at_s);
        rows.dedup_by_key(|r| r.at_s);
        return Ok(rows);
    }
    if let Some(v) = open.get((node, tier as u8))? {
        rows.extend(codec::open_rows(v.value())?);
    }
    // What finer tiers hold and this one does not yet: their open chunks, from the end of this
    // tier's newest row on (older ones were rolled up into it, perhaps while we read).
    let covered = rows.last().map_or(i64::MIN, |r| r.at_s + t.resolution_s);
    let mut finer: Vec<Row> = raw.iter().filter(|r| r.at_s >= covered).copied().collect();
    for f in 1..tier {
        if let Some(v) = open.get((node, f as u8))? {
            finer.extend(
                codec::open_rows(v.value())?
                    .into_iter()
                    .filter(|r| r.at_s >= covered),
            );
        }
    }
    finer.sort_by_key(|r| r.at_s);
    rows.extend(rollup(&finer, t.resolution_s.max(1)));
    Ok(rows)
}

/// One node's history being written.
struct Cx<'a, 't> {
    open: &'a mut OpenTable<'t>,
    chunks: &'a mut ChunkTable<'t>,
    node: u128,
    now_s: i64,
    spans: HistorySpans,
    done: &'a mut HistoryWrite,
}

impl Cx<'_, '_> {
    /// Appends `rows` (time-ordered, at the tier's resolution) to tier `tier` (not 0, whose
    /// open windows are in memory), sealing its open chunk whenever a row starts a later window.
    fn push(&mut self, tier: usize, rows: Vec<Row>) -> Result<(), StoreError> {
        debug_assert!(tier > 0, "raw windows are kept in memory");
        let t = &TIERS[tier];
        let key = (self.node, tier as u8);
        let mut chunk: Option<Vec<u8>> = self.open.get(key)?.map(|v| v.value().to_vec());
        for row in rows {
            let window = bucket(row.at_s, t.window_s);
            if let Some(current) = &chunk {
                let start = codec::open_start(current)?;
                if window < start {
                    continue;
                }
                if window > start {
                    let sealed = codec::open_rows(current)?;
                    chunk = None;
                    self.seal(tier, sealed)?;
                }
            }
            let current = chunk.get_or_insert_with(|| codec::open_new(window, false));
            codec::open_push(current, &row);
        }
        match chunk {
            Some(chunk) => {
                self.open.insert(key, chunk.as_slice())?;
            }
            None => {
                self.open.remove(key)?;
            }
        }
        Ok(())
    }

    /// Stores a finished window's rows in their block, rolls them up into the next tier, and
    /// prunes this tier.
    fn seal(&mut self, tier: usize, rows: Vec<Row>) -> Result<(), StoreError> {
        let t = &TIERS[tier];
        // Usually one window; several after a write that failed and was tried again.
        for part in rows.chunk_by(|a, b| bucket(a.at_s, t.block_s) == bucket(b.at_s, t.block_s)) {
            let key = (self.node, tier as u8, bucket(part[0].at_s, t.block_s));
            let mut block = match self.chunks.get(key)? {
                Some(v) => codec::unseal(v.value())?,
                None => Vec::new(),
            };
            block.extend_from_slice(part);
            // In time order, each time once, however the windows arrived.
            block.sort_by_key(|r| r.at_s);
            block.dedup_by_key(|r| r.at_s);
            self.chunks
                .insert(key, codec::seal(&block, t.level).as_slice())?;
            self.done.sealed += 1;
        }
        if let Some(next) = TIERS.get(tier + 1) {
            let coarser = rollup(&rows, next.resolution_s);
            if !coarser.is_empty() {
                self.push(tier + 1, coarser)?;
            }
        }
        self.prune(tier)
    }

    /// Seals tier `tier`'s open chunk if its window ended a whole window ago.
    fn seal_if_stale(&mut self, tier: usize) -> Result<(), StoreError> {
        let t = &TIERS[tier];
        let key = (self.node, tier as u8);
        let Some(chunk) = self.open.get(key)?.map(|v| v.value().to_vec()) else {
            return Ok(());
        };
        if codec::open_start(&chunk)? + 2 * t.window_s > self.now_s {
            return Ok(());
        }
        self.open.remove(key)?;
        self.seal(tier, codec::open_rows(&chunk)?)
    }

    /// Deletes tier `tier`'s blocks that ended before its span.
    fn prune(&mut self, tier: usize) -> Result<(), StoreError> {
        let t = &TIERS[tier];
        let cutoff = self.now_s - self.spans.of(tier);
        // A block starting at `s` ends at `s + block_s`.
        let last_start = cutoff - t.block_s;
        let keys: Vec<(u128, u8, i64)> = self
            .chunks
            .range((self.node, tier as u8, i64::MIN)..=(self.node, tier as u8, last_start))?
            .map(|e| e.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()?;
        for key in keys {
            self.chunks.remove(key)?;
            self.done.pruned += 1;
        }
        Ok(())
    }
}

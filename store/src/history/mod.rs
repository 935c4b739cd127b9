//! Metrics history: every node's heartbeats kept over time, downsampled as they age.
//!
//! Three tiers, each a resolution kept for a span ([`HistorySpans`]): every heartbeat (1 hour),
//! 1-minute aggregates (48 hours), 1-hour aggregates (90 days); an aggregate keeps the average,
//! minimum and maximum of each series and how many heartbeats it holds. A tier's newest rows
//! sit in one *open chunk* per node; when its window ends (10 minutes, 1 hour, 1 day) the chunk
//! is sealed into a compressed block (later windows are merged into the newest block while it
//! fills no more than one page of the file: at most 12 hours of minutes or 14 days of hours)
//! and rolled up into the next tier's open chunk, and blocks past the tier's span are deleted.
//! So nothing is computed on a timer across all nodes: the work is done when a node's own
//! heartbeats cross a window, and a sweep ([`Store::sweep_history`]) only seals what silent
//! nodes left open and drops what deleted nodes left behind.
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
    /// How sealed windows are gathered into blocks.
    blocks: Blocks,
    /// zstd level for its blocks.
    level: i32,
    resolution: Resolution,
}

/// How a tier's sealed windows are gathered into blocks (one stored value each, keyed by a time
/// at or before its first row; its rows all precede the next block's key).
#[derive(Clone, Copy)]
enum Blocks {
    /// A block per this many seconds (a multiple of the window), starting at multiples of it.
    Every(i64),
    /// Windows are merged into the newest block while it stays within `bytes` and its rows
    /// within `span_s` seconds of its key (a quarter of the tier's span if that is less, but at
    /// least a window), and start a new block after that. Every block's rows lie within
    /// `span_s` of its key, however well they compress, so a block is known to have ended
    /// `span_s` after its key: that bounds how long past the tier's span its oldest rows are
    /// kept.
    UpTo { bytes: usize, span_s: i64 },
}

/// A block that, with its key, fills one 4 KiB redb page and no more. redb gives a value that
/// does not fit one page a power-of-two run of pages, so blocks of a fixed span (6 hours of
/// minutes: 4 to 6 KB) took 8 KiB each, half of it empty. A leaf page holding one entry takes
/// 4 bytes of header, 4 of value length and the 25-byte key.
const BLOCK_BYTES: usize = 4000;

const TIERS: [Tier; 3] = [
    Tier {
        resolution_s: 0,
        window_s: 600,
        // Small blocks (200 to 400 bytes) that share leaf pages; the tier is kept an hour.
        blocks: Blocks::Every(600),
        level: 1,
        resolution: Resolution::Raw,
    },
    Tier {
        resolution_s: 60,
        window_s: 3600,
        blocks: Blocks::UpTo {
            bytes: BLOCK_BYTES,
            span_s: 12 * 3600,
        },
        level: 3,
        resolution: Resolution::Minute,
    },
    Tier {
        resolution_s: 3600,
        window_s: 86_400,
        blocks: Blocks::UpTo {
            bytes: BLOCK_BYTES,
            span_s: 14 * 86_400,
        },
        level: 3,
        resolution: Resolution::Hour,
    },
];

/// zstd level of open chunks: rewritten at every row they gain, so kept cheap.
const OPEN_LEVEL: i32 = 1;

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

/// Pages and bytes of history in the database file ([`Store::history_pages`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryPages {
    /// The pages of the open chunks' table, bytes (what they hold, the tree's own keys and
    /// headers, and what is left empty in them).
    pub open_pages: u64,
    /// The keys and values in them, bytes.
    pub open_stored: u64,
    /// The pages of the sealed blocks' table, bytes.
    pub chunk_pages: u64,
    /// The keys and values in them, bytes.
    pub chunk_stored: u64,
    /// Pages the whole file has allocated (every table, and pages freed by the last commits
    /// not yet reusable), bytes.
    pub file_allocated: u64,
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
    /// A pass over each node's keys (a block is read only for a node silent for about a
    /// tier's span).
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

    /// What history takes in the database file, and the file as a whole, in bytes: for
    /// measuring how much of the file the stored values are.
    pub async fn history_pages(&self) -> Result<HistoryPages, StoreError> {
        self.write(|txn| {
            use redb::ReadableTableMetadata;
            let open = txn.open_table(METRICS_OPEN)?.stats()?;
            let chunks = txn.open_table(METRICS_CHUNKS)?.stats()?;
            let file = txn.stats()?;
            let pages =
                |t: &redb::TableStats| t.stored_bytes() + t.metadata_bytes() + t.fragmented_bytes();
            Ok(HistoryPages {
                open_pages: pages(&open),
                open_stored: open.stored_bytes(),
                chunk_pages: pages(&chunks),
                chunk_stored: chunks.stored_bytes(),
                file_allocated: file.allocated_pages() * file.page_size() as u64,
            })
        })
        .await
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
    let tier_u8 = tier as u8;
    // The block holding `from_s` is the last to begin at or before it.
    if let Some(entry) = chunks
        .range((node, tier_u8, i64::MIN)..=(node, tier_u8, from_s))?
        .next_back()
    {
        rows.extend(codec::unseal(entry?.1.value())?);
    }
    if from_s.saturating_add(1) < to_s {
        for entry in chunks.range((node, tier_u8, from_s + 1)..(node, tier_u8, to_s))? {
            rows.extend(codec::unseal(entry?.1.value())?);
        }
    }
    // A window tried again after a failed write may have landed in a later block.
    in_order(&mut rows);
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
        // (window start, its rows)
        let mut chunk: Option<(i64, Vec<Row>)> = match self.open.get(key)? {
            Some(v) => Some((codec::open_start(v.value())?, codec::open_rows(v.value())?)),
            None => None,
        };
        for row in rows {
            let window = bucket(row.at_s, t.window_s);
            if let Some((start, _)) = &chunk {
                if window < *start {
                    continue;
                }
                if window > *start
                    && let Some((_, ended)) = chunk.take()
                {
                    self.seal(tier, ended)?;
                }
            }
            chunk
                .get_or_insert_with(|| (window, Vec::new()))
                .1
                .push(row);
        }
        match chunk {
            Some((start, rows)) => {
                self.open
                    .insert(key, codec::open_sealed(start, &rows, OPEN_LEVEL).as_slice())?;
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
        let coarser = TIERS
            .get(tier + 1)
            .map(|next| rollup(&rows, next.resolution_s))
            .unwrap_or_default();
        match t.blocks {
            Blocks::Every(block_s) => {
                // Usually one window; several after a write that failed and was tried again.
                for part in rows.chunk_by(|a, b| bucket(a.at_s, block_s) == bucket(b.at_s, block_s))
                {
                    let key = (self.node, tier as u8, bucket(part[0].at_s, block_s));
                    let mut block = match self.chunks.get(key)? {
                        Some(v) => codec::unseal(v.value())?,
                        None => Vec::new(),
                    };
                    block.extend_from_slice(part);
                    in_order(&mut block);
                    self.chunks
                        .insert(key, codec::seal(&block, t.level).as_slice())?;
                    self.done.sealed += 1;
                }
            }
            Blocks::UpTo { bytes, span_s } => {
                // A block spans at most a quarter of the tier's span, so that what a block
                // keeps past the span stays small however the span is set.
                let span_s = span_s.min(self.spans.of(tier) / 4).max(t.window_s);
                self.append_block(tier, rows, bytes, span_s)?;
            }
        }
        if !coarser.is_empty() {
            self.push(tier + 1, coarser)?;
        }
        self.prune(tier)
    }

    /// Merges `rows` into tier `tier`'s newest block if it stays within `limit` bytes and
    /// `span_s` seconds, else stores them as a block of their own. Rows no later than the
    /// newest block's last (a clock stepped back, a window tried again after a failed write)
    /// go to the blocks holding their times instead ([`Cx::merge_late`]).
    fn append_block(
        &mut self,
        tier: usize,
        mut rows: Vec<Row>,
        limit: usize,
        span_s: i64,
    ) -> Result<(), StoreError> {
        let t = &TIERS[tier];
        let tier_u8 = tier as u8;
        in_order(&mut rows);
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(());
        };
        let (first, last) = (first.at_s, last.at_s);
        let newest = match self
            .chunks
            .range((self.node, tier_u8, i64::MIN)..=(self.node, tier_u8, i64::MAX))?
            .next_back()
        {
            Some(entry) => {
                let (key, value) = entry?;
                // Unreadable: left as it is (and pruned in time), and the rows begin a new one.
                self.readable(tier, value.value())
                    .map(|rows| (key.value().2, rows))
            }
            None => None,
        };
        if let Some((start, mut block)) = newest {
            if block.last().is_some_and(|newest| first <= newest.at_s) {
                return self.merge_late(tier, rows, span_s);
            }
            if last - start < span_s {
                block.extend_from_slice(&rows);
                let merged = codec::seal(&block, t.level);
                if merged.len() <= limit {
                    self.chunks
                        .insert((self.node, tier_u8, start), merged.as_slice())?;
                    self.done.sealed += 1;
                    return Ok(());
                }
            }
        }
        self.chunks.insert(
            (self.node, tier_u8, first),
            codec::seal(&rows, t.level).as_slice(),
        )?;
        self.done.sealed += 1;
        Ok(())
    }

    /// Merges time-ordered `rows` that are not all later than tier `tier`'s newest block into
    /// the blocks holding their times (the last block keyed at or before a row, if the row lies
    /// within `span_s` of its key), whatever their size; rows outside every block make blocks
    /// of their own. Reads find each row where its time says.
    fn merge_late(&mut self, tier: usize, rows: Vec<Row>, span_s: i64) -> Result<(), StoreError> {
        let t = &TIERS[tier];
        let tier_u8 = tier as u8;
        let mut rest = rows.as_slice();
        while let Some(first) = rest.first().map(|r| r.at_s) {
            // (its key, its rows: none if it does not read, and it is then written over)
            let holder = match self
                .chunks
                .range((self.node, tier_u8, i64::MIN)..=(self.node, tier_u8, first))?
                .next_back()
            {
                Some(entry) => {
                    let (key, value) = entry?;
                    let start = key.value().2;
                    (first - start < span_s).then(|| {
                        (
                            start,
                            self.readable(tier, value.value()).unwrap_or_default(),
                        )
                    })
                }
                None => None,
            };
            let next = self
                .chunks
                .range(
                    (self.node, tier_u8, first.saturating_add(1))..=(self.node, tier_u8, i64::MAX),
                )?
                .next()
                .map(|e| e.map(|(k, _)| k.value().2))
                .transpose()?;
            let (start, mut block) = holder.unwrap_or((first, Vec::new()));
            // Up to the next block, and (to keep every block within its span) not past it.
            let end = next.unwrap_or(i64::MAX).min(start.saturating_add(span_s));
            let take = rest.partition_point(|r| r.at_s < end).max(1);
            let (part, later) = rest.split_at(take);
            rest = later;
            block.extend_from_slice(part);
            in_order(&mut block);
            self.chunks.insert(
                (self.node, tier_u8, start),
                codec::seal(&block, t.level).as_slice(),
            )?;
            self.done.sealed += 1;
        }
        Ok(())
    }

    /// A block's rows, or none if it does not read (logged): one damaged block must not stop
    /// the node's history from being written.
    fn readable(&self, tier: usize, block: &[u8]) -> Option<Vec<Row>> {
        codec::unseal(block)
            .map_err(|e| {
                tracing::warn!(node = %uuid::Uuid::from_u128(self.node), tier, error = %e,
                    "metrics history block unreadable; writing around it");
            })
            .ok()
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

    /// Deletes tier `tier`'s blocks that ended before its span. A block's rows all precede the
    /// next block's key, so a block is gone once the next one began before the span; and one
    /// kept by size has ended `span_s` after its key (see [`Blocks::UpTo`]), so a gap in the
    /// node's history does not keep it longer. The newest block is read to learn its end only
    /// when neither says (a node silent for about the span); one that does not read is left to
    /// that bound.
    fn prune(&mut self, tier: usize) -> Result<(), StoreError> {
        let t = &TIERS[tier];
        let tier_u8 = tier as u8;
        let cutoff = self.now_s - self.spans.of(tier);
        let starts: Vec<i64> = self
            .chunks
            .range((self.node, tier_u8, i64::MIN)..=(self.node, tier_u8, cutoff))?
            .map(|e| e.map(|(k, _)| k.value().2))
            .collect::<Result<_, _>>()?;
        let Some(&last) = starts.last() else {
            return Ok(());
        };
        let resolution_s = t.resolution_s.max(1);
        let last_ended = match t.blocks {
            Blocks::Every(block_s) => last + block_s <= cutoff,
            Blocks::UpTo { span_s, .. } if last + span_s + resolution_s <= cutoff => true,
            Blocks::UpTo { .. } => {
                // With a later block, it straddles the cutoff (or may): kept until that one's
                // start passes.
                let newer = self
                    .chunks
                    .range(
                        (self.node, tier_u8, cutoff.saturating_add(1))
                            ..=(self.node, tier_u8, i64::MAX),
                    )?
                    .next()
                    .is_some();
                !newer && {
                    let rows = match self.chunks.get((self.node, tier_u8, last))? {
                        Some(v) => codec::unseal(v.value()).ok(),
                        None => Some(Vec::new()),
                    };
                    rows.is_some_and(|rows| {
                        rows.last().is_none_or(|r| r.at_s + resolution_s <= cutoff)
                    })
                }
            }
        };
        let ended = starts.len() - usize::from(!last_ended);
        for start in &starts[..ended] {
            self.chunks.remove((self.node, tier_u8, *start))?;
            self.done.pruned += 1;
        }
        Ok(())
    }
}

/// Sorts rows by time and keeps each time once (the first seen).
fn in_order(rows: &mut Vec<Row>) {
    rows.sort_by_key(|r| r.at_s);
    rows.dedup_by_key(|r| r.at_s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_wire::heartbeat::Metrics;

    /// `count` heartbeats of `node` every 30 s from `from_s`, CPU at 40 %.
    fn steady(node: NodeId, from_s: i64, count: i64) -> Vec<HistorySample> {
        let metrics = Metrics {
            cpu_percent: 40.0,
            ..Metrics::default()
        };
        (0..count)
            .map(|i| HistorySample::new(node, (from_s + 30 * i) * 1000, &metrics))
            .collect()
    }

    /// Open chunks written as fixed-width rows (before they were kept sealed) still read, and
    /// the next row turns them into the sealed form with nothing lost.
    #[tokio::test]
    async fn open_chunks_of_fixed_rows_still_read_and_are_sealed_at_the_next_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("tether.redb")).unwrap();
        let node = NodeId::random();
        let id = node.0.as_u128();
        // A day boundary; the minute tier's window is an hour.
        let hour = 1_800_000_000 - 1_800_000_000 % 86_400;
        let old: Vec<Row> = (0..3)
            .map(|m| {
                let mut row = Row::sample(hour + 60 * m, [7; SERIES]);
                row.count = 2;
                row
            })
            .collect();
        let mut legacy = codec::open_new(hour, false);
        for row in &old {
            codec::open_push(&mut legacy, row);
        }
        store
            .write(move |txn| {
                txn.open_table(METRICS_OPEN)?
                    .insert((id, 1), legacy.as_slice())?;
                Ok(())
            })
            .await
            .unwrap();
        // Heartbeats from minute 10 to 25: the raw window of minutes 10 to 20 ends and is
        // rolled up into the minute tier's open chunk.
        let samples = steady(node, hour + 600, 30);
        let spans = HistorySpans::default();
        store
            .append_history(samples, (hour + 1500) * 1000, spans)
            .await
            .unwrap();
        let chunk = store
            .read()
            .unwrap()
            .open_table(METRICS_OPEN)
            .unwrap()
            .get((id, 1))
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        assert_eq!(chunk[0], 2, "sealed now");
        let rows = codec::open_rows(&chunk).unwrap();
        assert_eq!(rows.len(), 3 + 10);
        assert_eq!(rows[..3], old[..]);
        assert!(rows[3..].iter().all(|r| r.count == 2 && r.avg[0] == 160));
        store.close().await;
    }

    /// A busy server's heartbeat (every series moving), from a xorshift generator.
    fn restless(x: &mut u64) -> Metrics {
        let mut next = || {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            (*x % 1000) as f64 / 1000.0
        };
        Metrics {
            cpu_percent: (20.0 + 30.0 * next()) as f32,
            memory_used: (6.0e9 + 2.0e8 * next()) as u64,
            memory_total: 16 << 30,
            net_rx_bytes_per_sec: (1.0e5 * (1.0 + 9.0 * next())) as u64,
            net_tx_bytes_per_sec: (1.0e4 * (1.0 + 9.0 * next())) as u64,
            load1: (1.0 + next()) as f32,
            processes: 200 + (20.0 * next()) as u32,
            tcp_connections: 50 + (40.0 * next()) as u32,
            ..Metrics::default()
        }
    }

    /// Blocks of the minute tier fill one page of the file and no more: each but the newest
    /// within a window's bytes of [`BLOCK_BYTES`], none over it. Open chunks are kept sealed,
    /// and the history reads back whole across blocks.
    #[tokio::test]
    async fn blocks_fill_one_page_each_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("tether.redb")).unwrap();
        let node = NodeId::random();
        let t0 = 1_800_000_000 - 1_800_000_000 % 86_400;
        let mut x = 1u64;
        let mut batch = Vec::new();
        let mut at = t0;
        while at < t0 + 3 * 86_400 {
            batch.push(HistorySample::new(node, at * 1000, &restless(&mut x)));
            at += 30;
            if at % 600 == 0 {
                let spans = HistorySpans::default();
                store
                    .append_history(std::mem::take(&mut batch), at * 1000, spans)
                    .await
                    .unwrap();
            }
        }
        let txn = store.read().unwrap();
        let chunks = txn.open_table(METRICS_CHUNKS).unwrap();
        let id = node.0.as_u128();
        let minutes: Vec<usize> = chunks
            .range((id, 1u8, i64::MIN)..=(id, 1u8, i64::MAX))
            .unwrap()
            .map(|e| e.unwrap().1.value().len())
            .collect();
        assert!(minutes.len() >= 8, "{minutes:?}");
        assert!(minutes.iter().all(|&n| n <= BLOCK_BYTES), "{minutes:?}");
        let (_, full) = minutes.split_last().unwrap();
        assert!(full.iter().all(|&n| n > BLOCK_BYTES - 1500), "{minutes:?}");
        drop(chunks);
        drop(txn);

        // An hour of minutes and a day of hours in a few KB (as rows of fixed width, up to
        // 9.4 KB and 3.7 KB).
        let pages = store.history_pages().await.unwrap();
        assert!(pages.open_stored < 3000, "{pages:?}");
        let end_ms = at * 1000;
        let read = |from_ms: i64, to_ms: i64, step_ms: u64, now_ms: i64| {
            let read = HistoryRead {
                from_ms,
                to_ms,
                step_ms: Some(step_ms),
                now_ms,
            };
            store
                .history(node, read, &[Metric::Cpu], HistorySpans::default())
                .unwrap()
        };
        // 23 hours of minutes (the most one read gives at 1 minute), from 46 hours ago: every
        // minute holds its two heartbeats, once, across blocks.
        let h = read(
            end_ms - 46 * 3_600_000,
            end_ms - 23 * 3_600_000,
            60_000,
            end_ms,
        );
        assert_eq!(h.resolution, Resolution::Minute);
        assert_eq!(h.samples.len(), 23 * 60);
        assert!(h.samples.iter().all(|&n| n == 2), "{:?}", h.samples);
        // The three days by the hour, read three days later: 120 heartbeats each (the last
        // hours still in finer tiers' open chunks, rolled up as they are read).
        let h = read(t0 * 1000, end_ms, 3_600_000, end_ms + 3 * 86_400_000);
        assert_eq!(h.resolution, Resolution::Hour);
        assert_eq!(h.samples.len(), 72);
        assert!(h.samples.iter().all(|&n| n == 120), "{:?}", h.samples);
        store.close().await;
    }

    /// An unreadable newest block does not stop history: windows begin a new block, and the
    /// writes go on.
    #[tokio::test]
    async fn an_unreadable_block_does_not_stop_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("tether.redb")).unwrap();
        let node = NodeId::random();
        let id = node.0.as_u128();
        let t0 = 1_800_000_000 - 1_800_000_000 % 86_400;
        store
            .write(move |txn| {
                txn.open_table(METRICS_CHUNKS)?
                    .insert((id, 1, t0 - 3600), [0x13u8, 9, 9, 9].as_slice())?;
                Ok(())
            })
            .await
            .unwrap();
        // Two hours: the minute tier's first window ends and is sealed into a block.
        let samples = steady(node, t0, 240);
        let spans = HistorySpans::default();
        let done = store
            .append_history(samples, (t0 + 7200) * 1000, spans)
            .await
            .unwrap();
        assert!(done.sealed > 0, "{done:?}");
        let txn = store.read().unwrap();
        let chunks = txn.open_table(METRICS_CHUNKS).unwrap();
        let block = chunks.get((id, 1, t0)).unwrap().expect("a new block");
        assert_eq!(codec::unseal(block.value()).unwrap().len(), 60);
        drop(block);
        drop(chunks);
        drop(txn);
        store.close().await;
    }
}

//! The open raw windows (every heartbeat of the current 10 minutes per node), kept in memory
//! instead of in redb: rewriting each node's window on every flush was most of history's write
//! cost (a copy-on-write page per few nodes, every 30 s). A window reaches the database when it
//! ends, sealed into its block; a clean close writes what is open into `METRICS_OPEN`, and the
//! next open reads it back. A crash loses at most the open windows: ten minutes of history.

use std::collections::HashMap;
use std::sync::Mutex;

use redb::{ReadableDatabase, ReadableTable};

use super::codec::{self, Row};
use super::rollup::bucket;
use super::{HistorySample, HistoryWrite, TIERS};
use crate::StoreError;
use crate::tables::METRICS_OPEN;

/// Node id → its open raw window, in `codec`'s open-chunk bytes (about 0.6 KiB on average at one
/// heartbeat every 30 s, 1.1 KiB just before a window ends); and windows that ended, until the
/// write that seals them commits: *waiting* for one, or *in flight* in one. A write that fails
/// puts its windows back to wait for the next, so nothing is lost to a full disk or a failed
/// batch; reads see all three.
#[derive(Debug, Default)]
pub(crate) struct RawWindows(Mutex<Windows>);

#[derive(Debug, Default)]
struct Windows {
    open: HashMap<u128, Vec<u8>>,
    waiting: HashMap<u128, Vec<Row>>,
    in_flight: HashMap<u128, Vec<Row>>,
}

/// A window that ended: its node and rows, to be sealed.
pub(crate) type Ended = (u128, Vec<Row>);

impl RawWindows {
    /// The windows a clean close left in `METRICS_OPEN` (tier 0). One that does not decode is
    /// left out (and said so), not allowed to stop every later write.
    pub fn load(db: &redb::Database) -> Result<Self, StoreError> {
        let txn = db.begin_read()?;
        let open = txn.open_table(METRICS_OPEN)?;
        let mut map = HashMap::new();
        for entry in open.iter()? {
            let (key, value) = entry?;
            let (node, tier) = key.value();
            if tier != 0 {
                continue;
            }
            let chunk = value.value().to_vec();
            match codec::open_start(&chunk).and_then(|_| codec::open_rows(&chunk)) {
                Ok(_) => {
                    map.insert(node, chunk);
                }
                Err(e) => {
                    tracing::warn!(node = %uuid::Uuid::from_u128(node), error = %e, "an open metrics history window does not read; left out");
                }
            }
        }
        Ok(RawWindows(Mutex::new(Windows {
            open: map,
            ..Windows::default()
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        self.0.lock().expect("not poisoned")
    }

    /// Appends `samples` (sorted by node, each node's in the order received) to their windows.
    /// Windows they end wait to be sealed ([`RawWindows::take_ended`]). Samples older than
    /// their node's window are counted late and left out.
    pub fn push(&self, samples: &[HistorySample], done: &mut HistoryWrite) {
        let window_s = TIERS[0].window_s;
        let mut w = self.lock();
        let Windows { open, waiting, .. } = &mut *w;
        for node in samples.chunk_by(|a, b| a.node == b.node) {
            let id = node[0].node;
            let chunk = open.entry(id).or_default();
            for sample in node {
                let window = bucket(sample.at_s, window_s);
                if !chunk.is_empty() {
                    // Only windows that read are kept (see `load`), so these do not fail.
                    let start = codec::open_start(chunk).unwrap_or(window);
                    if window < start {
                        done.late += 1;
                        continue;
                    }
                    if window > start {
                        let rows = codec::open_rows(chunk).unwrap_or_default();
                        waiting.entry(id).or_default().extend(rows);
                        chunk.clear();
                    }
                }
                if chunk.is_empty() {
                    *chunk = codec::open_new(window, true);
                }
                codec::open_push(chunk, &Row::sample(sample.at_s, sample.values));
                done.samples += 1;
            }
        }
    }

    /// Moves the windows that ended more than a window before `now_s` (silent nodes') to wait
    /// for sealing.
    pub fn end_stale(&self, now_s: i64) {
        let window_s = TIERS[0].window_s;
        let mut w = self.lock();
        let Windows { open, waiting, .. } = &mut *w;
        open.retain(|node, chunk| {
            let stale = codec::open_start(chunk).is_ok_and(|start| start + 2 * window_s <= now_s);
            if stale {
                waiting
                    .entry(*node)
                    .or_default()
                    .extend(codec::open_rows(chunk).unwrap_or_default());
            }
            !stale
        });
    }

    /// The windows waiting to be sealed, now in flight in the caller's write (a node already in
    /// another write waits for the next). Report the write with [`RawWindows::sealed`].
    pub fn take_ended(&self) -> Vec<Ended> {
        let mut w = self.lock();
        let Windows {
            waiting, in_flight, ..
        } = &mut *w;
        let ready: Vec<u128> = waiting
            .keys()
            .filter(|node| !in_flight.contains_key(node))
            .copied()
            .collect();
        ready
            .into_iter()
            .filter_map(|node| {
                let rows = waiting.remove(&node)?;
                in_flight.insert(node, rows.clone());
                Some((node, rows))
            })
            .collect()
    }

    /// The write that took `nodes`' windows committed (`ok`), or failed: then they wait again.
    pub fn sealed(&self, nodes: impl IntoIterator<Item = u128>, ok: bool) {
        let mut w = self.lock();
        let Windows {
            waiting, in_flight, ..
        } = &mut *w;
        for node in nodes {
            let Some(mut rows) = in_flight.remove(&node) else {
                continue;
            };
            if !ok {
                // Older than anything that ended since.
                if let Some(later) = waiting.remove(&node) {
                    rows.extend(later);
                }
                waiting.insert(node, rows);
            }
        }
    }

    /// The nodes with history in memory.
    pub fn nodes(&self) -> Vec<u128> {
        let w = self.lock();
        let mut nodes: Vec<u128> = w
            .open
            .keys()
            .chain(w.waiting.keys())
            .chain(w.in_flight.keys())
            .copied()
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }

    /// Forgets `node`'s windows (a deleted node's).
    pub fn remove(&self, node: u128) {
        let mut w = self.lock();
        w.open.remove(&node);
        w.waiting.remove(&node);
        w.in_flight.remove(&node);
    }

    /// `node`'s rows in memory, oldest first: ended windows not yet committed, then the open one.
    pub fn rows(&self, node: u128) -> Result<Vec<Row>, StoreError> {
        let w = self.lock();
        let mut rows: Vec<Row> = w.in_flight.get(&node).cloned().unwrap_or_default();
        rows.extend(w.waiting.get(&node).into_iter().flatten().copied());
        if let Some(chunk) = w.open.get(&node) {
            rows.extend(codec::open_rows(chunk)?);
        }
        Ok(rows)
    }

    /// Bytes of `node`'s open window.
    pub fn bytes(&self, node: u128) -> u64 {
        self.lock().open.get(&node).map_or(0, |c| c.len() as u64)
    }

    /// Every open window, as `METRICS_OPEN` keeps them, and ended windows not yet sealed as
    /// chunks of their own (for a clean close: the next open reads them back as open windows,
    /// and they are sealed when their node next reports or the sweep runs).
    pub fn snapshot(&self) -> Vec<(u128, Vec<u8>)> {
        let w = self.lock();
        let mut out: Vec<(u128, Vec<u8>)> = Vec::new();
        for (node, chunk) in &w.open {
            let mut rows: Vec<Row> = w.in_flight.get(node).cloned().unwrap_or_default();
            rows.extend(w.waiting.get(node).into_iter().flatten().copied());
            if rows.is_empty() {
                out.push((*node, chunk.clone()));
                continue;
            }
            rows.extend(codec::open_rows(chunk).unwrap_or_default());
            out.push((*node, as_chunk(&rows)));
        }
        for (node, rows) in w.waiting.iter().chain(w.in_flight.iter()) {
            if !w.open.contains_key(node) && !out.iter().any(|(n, _)| n == node) {
                out.push((*node, as_chunk(rows)));
            }
        }
        out
    }
}

/// Rows as one open chunk starting at the first row's window (an ended window kept at close
/// reads back as open, and is sealed whole when it is next seen to have ended).
fn as_chunk(rows: &[Row]) -> Vec<u8> {
    let start = rows
        .first()
        .map_or(0, |r| bucket(r.at_s, TIERS[0].window_s));
    let mut chunk = codec::open_new(start, true);
    for row in rows {
        codec::open_push(&mut chunk, row);
    }
    chunk
}

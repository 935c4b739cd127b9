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
/// heartbeat every 30 s, 1.1 KiB just before a window ends).
#[derive(Debug, Default)]
pub(crate) struct RawWindows(Mutex<HashMap<u128, Vec<u8>>>);

/// A window that ended: its node and rows, to be sealed.
pub(crate) type Ended = (u128, Vec<Row>);

impl RawWindows {
    /// The windows a clean close left in `METRICS_OPEN` (tier 0).
    pub fn load(db: &redb::Database) -> Result<Self, StoreError> {
        let txn = db.begin_read()?;
        let open = txn.open_table(METRICS_OPEN)?;
        let mut map = HashMap::new();
        for entry in open.iter()? {
            let (key, value) = entry?;
            let (node, tier) = key.value();
            if tier == 0 {
                map.insert(node, value.value().to_vec());
            }
        }
        Ok(RawWindows(Mutex::new(map)))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u128, Vec<u8>>> {
        self.0.lock().expect("not poisoned")
    }

    /// Appends `samples` (sorted by node, each node's in the order received) to their windows;
    /// returns the windows they ended. Samples older than their node's window are counted late
    /// and left out.
    pub fn push(
        &self,
        samples: &[HistorySample],
        done: &mut HistoryWrite,
    ) -> Result<Vec<Ended>, StoreError> {
        let window_s = TIERS[0].window_s;
        let mut ended = Vec::new();
        let mut map = self.map();
        for node in samples.chunk_by(|a, b| a.node == b.node) {
            let id = node[0].node;
            let chunk = map.entry(id).or_default();
            for sample in node {
                let window = bucket(sample.at_s, window_s);
                if !chunk.is_empty() {
                    let start = codec::open_start(chunk)?;
                    if window < start {
                        done.late += 1;
                        continue;
                    }
                    if window > start {
                        ended.push((id, codec::open_rows(chunk)?));
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
        Ok(ended)
    }

    /// Takes out the windows that ended more than a window before `now_s` (silent nodes').
    pub fn take_stale(&self, now_s: i64) -> Result<Vec<Ended>, StoreError> {
        let window_s = TIERS[0].window_s;
        let mut map = self.map();
        let mut stale = Vec::new();
        for (node, chunk) in map.iter() {
            if codec::open_start(chunk)? + 2 * window_s <= now_s {
                stale.push(*node);
            }
        }
        stale
            .into_iter()
            .map(|node| {
                let chunk = map.remove(&node).unwrap_or_default();
                Ok((node, codec::open_rows(&chunk)?))
            })
            .collect()
    }

    /// The nodes with an open window.
    pub fn nodes(&self) -> Vec<u128> {
        self.map().keys().copied().collect()
    }

    /// Forgets `node`'s open window.
    pub fn remove(&self, node: u128) {
        self.map().remove(&node);
    }

    /// `node`'s open window's rows.
    pub fn rows(&self, node: u128) -> Result<Vec<Row>, StoreError> {
        match self.map().get(&node) {
            Some(chunk) => codec::open_rows(chunk),
            None => Ok(Vec::new()),
        }
    }

    /// Bytes of `node`'s open window.
    pub fn bytes(&self, node: u128) -> u64 {
        self.map().get(&node).map_or(0, |c| c.len() as u64)
    }

    /// Every open window, as `METRICS_OPEN` keeps them (for a clean close).
    pub fn snapshot(&self) -> Vec<(u128, Vec<u8>)> {
        self.map()
            .iter()
            .map(|(node, chunk)| (*node, chunk.clone()))
            .collect()
    }
}

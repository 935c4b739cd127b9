//! Metrics history, core's side: heartbeats are queued as they are accepted and written to the
//! store every `history_flush` in batches (the store downsamples and prunes as it writes);
//! silent and deleted nodes are swept with the other pruning.

use std::sync::Mutex;

use tether_store::{HistorySample, HistoryWrite};
use tether_wire::NodeId;
use tether_wire::heartbeat::Metrics;
use tracing::{debug, warn};

use crate::server::Shared;

/// Heartbeats queued at most; past it (a store that cannot keep up, or a full disk) the
/// newest are dropped and counted, so memory stays bounded.
pub(crate) const MAX_QUEUED: usize = 1_000_000;

/// Nodes' samples written per store transaction: a big fleet's flush is several short writes,
/// not one that holds up every other write.
const SAMPLES_PER_WRITE: usize = 20_000;

/// Heartbeats waiting for the next flush.
#[derive(Debug, Default)]
pub(crate) struct HistoryQueue {
    queued: Mutex<Vec<HistorySample>>,
    /// Dropped because the queue was full, since start.
    pub dropped: std::sync::atomic::AtomicU64,
}

impl HistoryQueue {
    /// Queues node `node`'s heartbeat received at `at_ms`.
    pub fn push(&self, node: NodeId, at_ms: i64, metrics: &Metrics) {
        let sample = HistorySample::new(node, at_ms, metrics);
        let mut queued = self.queued.lock().expect("not poisoned");
        if queued.len() >= MAX_QUEUED {
            drop(queued);
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        queued.push(sample);
    }

    fn take(&self) -> Vec<HistorySample> {
        std::mem::take(&mut *self.queued.lock().expect("not poisoned"))
    }
}

/// Writes what is queued. Called every `history_flush` and once at shutdown.
pub(crate) async fn flush(shared: &Shared) {
    let mut samples = shared.history.take();
    if samples.is_empty() {
        return;
    }
    // The fleet's trend (median and 95th percentile of each series) from the same heartbeats,
    // kept as history of its own: no pass over every node for it.
    let fleet = tether_store::fleet_quantiles(&samples, shared.now_ms());
    samples.extend(fleet);
    let spans = shared.config.history_spans();
    let mut total = HistoryWrite::default();
    while !samples.is_empty() {
        let rest = samples.split_off(samples.len().min(SAMPLES_PER_WRITE));
        let batch = std::mem::replace(&mut samples, rest);
        match shared
            .store
            .append_history(batch, shared.now_ms(), spans)
            .await
        {
            Ok(done) => {
                total.samples += done.samples;
                total.late += done.late;
                total.sealed += done.sealed;
                total.pruned += done.pruned;
            }
            // A full disk or a closing store: these heartbeats are lost to history, the
            // next flush tries again with new ones.
            Err(e) => warn!(error = %e, "could not write metrics history"),
        }
    }
    debug!(
        samples = total.samples,
        late = total.late,
        sealed = total.sealed,
        pruned = total.pruned,
        "history written"
    );
}

/// Seals what silent nodes left open and forgets deleted nodes' history (with the pruning).
pub(crate) async fn sweep(shared: &Shared) {
    match shared
        .store
        .sweep_history(shared.now_ms(), shared.config.history_spans())
        .await
    {
        Ok(done) if done.sealed + done.pruned + done.orphans > 0 => debug!(
            sealed = done.sealed,
            pruned = done.pruned,
            orphans = done.orphans,
            "history swept"
        ),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "could not sweep metrics history"),
    }
}

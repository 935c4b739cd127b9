//! Bounds on what is kept: every kind of record core writes without an admin asking for it
//! has an age limit, and the kinds that can grow fast also a size or count limit. Core's chores
//! call these with the configured limits (see `docs/operations.md`); each call does a bounded
//! amount of work in one transaction, so pruning never holds the writer for long, and says how
//! much it removed so the caller can call again while there is more.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use tether_wire::TtySessionId;
use tether_wire::admin::ApplicationStatus;

use crate::records::{ApplicationRecord, ExecutionRecord, TtySessionRecord};
use crate::tables::*;
use crate::{Store, StoreError, codec};

/// Most records one pruning call removes (a batch of the writer, not a pause of it).
pub(crate) const BATCH: usize = 1000;

/// What one pruning call removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pruned {
    /// Records (executions, sessions, entries, applications) removed.
    pub records: usize,
    /// Rows beneath them removed (per-node results, output chunks).
    pub rows: usize,
    /// Bytes of kept output removed.
    pub bytes: u64,
    /// Recording files of removed terminal sessions, relative to the data directory, for the
    /// caller to delete.
    pub recordings: Vec<String>,
}

impl Pruned {
    /// Whether the call did as much as one transaction should (a batch of records or of rows),
    /// so that more may remain.
    pub fn more(&self) -> bool {
        self.records >= BATCH || self.rows >= ROW_BUDGET
    }
}

/// Most rows (results, output chunks, index entries) one pruning call removes, unless one
/// record alone has more.
const ROW_BUDGET: usize = 100_000;

/// Builds the kept-output counter and index of a database written before they existed.
pub(crate) fn count_exec_output(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    if meta.get(EXEC_WITH_OUTPUT_BUILT)?.is_some() {
        return Ok(());
    }
    let mut total = 0u64;
    let mut with_output = std::collections::BTreeSet::new();
    for entry in txn.open_table(EXEC_OUTPUT)?.iter()? {
        let (key, value) = entry?;
        total += value.value().len() as u64;
        with_output.insert(key.value().0);
    }
    let executions = txn.open_table(EXECUTIONS)?;
    let mut index = txn.open_table(EXEC_WITH_OUTPUT)?;
    for id in with_output {
        if let Some(value) = executions.get(id)?
            && let Ok(record) = codec::decode::<ExecutionRecord>(value.value())
        {
            index.insert((record.created_at_ms, id), ())?;
        }
    }
    meta.insert(EXEC_OUTPUT_BYTES, total)?;
    meta.insert(EXEC_WITH_OUTPUT_BUILT, 1)?;
    Ok(())
}

/// When a rejected application counts from: its decision.
pub(crate) fn rejected_at(app: &ApplicationRecord) -> i64 {
    app.decided_at_ms.unwrap_or(app.created_at_ms)
}

/// Builds the index of rejected applications of a database written before it existed.
pub(crate) fn index_rejected(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    if meta.get(REJECTED_BY_TIME_BUILT)?.is_some() {
        return Ok(());
    }
    let mut index = txn.open_table(REJECTED_BY_TIME)?;
    for entry in txn.open_table(APPLICATIONS)?.iter()? {
        let (key, value) = entry?;
        // An application that does not read is left to the admin who lists them.
        if let Ok(app) = codec::decode::<ApplicationRecord>(value.value())
            && app.status == ApplicationStatus::Rejected
        {
            index.insert((rejected_at(&app), key.value()), ())?;
        }
    }
    meta.insert(REJECTED_BY_TIME_BUILT, 1)?;
    Ok(())
}

/// Notes that an execution keeps output (at its first chunk).
pub(crate) fn note_output(txn: &WriteTransaction, id: u128) -> Result<(), StoreError> {
    if let Some(value) = txn.open_table(EXECUTIONS)?.get(id)? {
        let record: ExecutionRecord = codec::decode(value.value())?;
        txn.open_table(EXEC_WITH_OUTPUT)?
            .insert((record.created_at_ms, id), ())?;
    }
    Ok(())
}

/// Keeps the kept-output counter in step with a chunk written (replacing one, if any).
pub(crate) fn add_exec_output(
    txn: &WriteTransaction,
    added: u64,
    replaced: u64,
) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    let now = meta.get(EXEC_OUTPUT_BYTES)?.map_or(0, |v| v.value());
    meta.insert(
        EXEC_OUTPUT_BYTES,
        now.saturating_add(added).saturating_sub(replaced),
    )?;
    Ok(())
}

/// Removes an execution's kept output (created at `created_at_ms`); bytes and chunks removed.
fn drop_output(
    txn: &WriteTransaction,
    id: u128,
    created_at_ms: i64,
) -> Result<(u64, usize), StoreError> {
    txn.open_table(EXEC_WITH_OUTPUT)?
        .remove((created_at_ms, id))?;
    let (mut bytes, mut chunks) = (0u64, 0usize);
    txn.open_table(EXEC_OUTPUT)?.retain_in(
        (id, 0u128, 0u32)..=(id, u128::MAX, u32::MAX),
        |_, value| {
            bytes += value.len() as u64;
            chunks += 1;
            false
        },
    )?;
    add_exec_output(txn, 0, bytes)?;
    Ok((bytes, chunks))
}

/// Removes an execution whole: record, indexes, per-node results, output. How many per-node
/// results went.
fn drop_execution(
    txn: &WriteTransaction,
    record: &ExecutionRecord,
    pruned: &mut Pruned,
) -> Result<u64, StoreError> {
    let id = record.id.0.as_u128();
    let mut nodes = Vec::new();
    txn.open_table(EXEC_NODES)?
        .retain_in((id, 0u128)..=(id, u128::MAX), |(_, node), _| {
            nodes.push(node);
            false
        })?;
    let mut by_node = txn.open_table(EXEC_BY_NODE)?;
    for node in &nodes {
        by_node.remove((*node, record.created_at_ms, id))?;
    }
    let (bytes, chunks) = drop_output(txn, id, record.created_at_ms)?;
    txn.open_table(EXEC_BY_TIME)?
        .remove((record.created_at_ms, id))?;
    txn.open_table(EXECUTIONS)?.remove(id)?;
    txn.open_table(EXEC_RUNNING)?.remove(id)?;
    pruned.records += 1;
    pruned.rows += nodes.len() + chunks;
    pruned.bytes += bytes;
    Ok(nodes.len() as u64)
}

/// The oldest executions listed in `index` that are not running, oldest first, at most
/// [`BATCH`]. Records that do not read are passed over (a pruning must not fail every write
/// batched with it over one damaged record).
fn oldest_executions(
    txn: &WriteTransaction,
    index: redb::TableDefinition<'_, (i64, u128), ()>,
) -> Result<Vec<ExecutionRecord>, StoreError> {
    let executions = txn.open_table(EXECUTIONS)?;
    let running = txn.open_table(EXEC_RUNNING)?;
    let mut out = Vec::new();
    for entry in txn.open_table(index)?.iter()? {
        let (_, id) = entry?.0.value();
        if running.get(id)?.is_some() {
            continue;
        }
        if let Some(value) = executions.get(id)? {
            match codec::decode(value.value()) {
                Ok(record) => out.push(record),
                Err(e) => {
                    tracing::warn!(error = %e, "an execution record does not read; not pruned")
                }
            }
        }
        if out.len() >= BATCH {
            break;
        }
    }
    Ok(out)
}

impl Store {
    /// Bytes of execution output kept now.
    pub fn exec_output_bytes(&self) -> Result<u64, StoreError> {
        let txn = self.read()?;
        Ok(txn
            .open_table(META)?
            .get(EXEC_OUTPUT_BYTES)?
            .map_or(0, |v| v.value()))
    }

    /// Per-node results kept now, across all executions.
    pub fn exec_results(&self) -> Result<u64, StoreError> {
        let txn = self.read()?;
        Ok(txn.open_table(EXEC_NODES)?.len()?)
    }

    /// Removes whole executions, oldest first, that started before `before_ms` or that keep
    /// the per-node results above `max_results`. Running executions are kept.
    pub async fn prune_executions(
        &self,
        before_ms: i64,
        max_results: u64,
    ) -> Result<Pruned, StoreError> {
        self.write(move |txn| {
            let mut pruned = Pruned::default();
            let mut results = txn.open_table(EXEC_NODES)?.len()?;
            for record in oldest_executions(txn, EXEC_BY_TIME)? {
                if record.created_at_ms >= before_ms && results <= max_results {
                    break;
                }
                if pruned.more() {
                    break;
                }
                results = results.saturating_sub(drop_execution(txn, &record, &mut pruned)?);
            }
            Ok(pruned)
        })
        .await
    }

    /// Deletes the kept output of the oldest executions (their results stay, marked with
    /// `now_ms`) until at most `max_bytes` of output is kept.
    pub async fn prune_exec_output(
        &self,
        max_bytes: u64,
        now_ms: i64,
    ) -> Result<Pruned, StoreError> {
        self.write(move |txn| {
            let mut pruned = Pruned::default();
            let mut kept = txn
                .open_table(META)?
                .get(EXEC_OUTPUT_BYTES)?
                .map_or(0, |v| v.value());
            if kept <= max_bytes {
                return Ok(pruned);
            }
            // Only executions that still keep output are listed, so each call makes progress.
            for mut record in oldest_executions(txn, EXEC_WITH_OUTPUT)? {
                if kept <= max_bytes {
                    break;
                }
                if pruned.more() {
                    break;
                }
                let (bytes, chunks) =
                    drop_output(txn, record.id.0.as_u128(), record.created_at_ms)?;
                kept = kept.saturating_sub(bytes);
                record.output_pruned_at_ms = Some(now_ms);
                crate::exec::save_execution(txn, &record)?;
                pruned.records += 1;
                pruned.rows += chunks;
                pruned.bytes += bytes;
            }
            Ok(pruned)
        })
        .await
    }

    /// Removes status log entries older than `before_ms`, then the oldest beyond `max_entries`.
    pub async fn prune_status_log(
        &self,
        before_ms: i64,
        max_entries: u64,
    ) -> Result<Pruned, StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(STATUS_LOG)?;
            let excess = table.len()?.saturating_sub(max_entries);
            // Oldest first: stop at the first entry that is young enough and not in excess.
            let mut old = Vec::new();
            for entry in table.iter()? {
                let key = entry?.0.value();
                if old.len() >= BATCH || (key.0 >= before_ms && old.len() as u64 >= excess) {
                    break;
                }
                old.push(key);
            }
            for key in &old {
                table.remove(*key)?;
            }
            Ok(Pruned {
                records: old.len(),
                ..Default::default()
            })
        })
        .await
    }

    /// Removes rejected applications decided before `before_ms`: the node may apply again (an
    /// admin still decides). Pending and approved ones are kept.
    pub async fn prune_rejected_applications(&self, before_ms: i64) -> Result<Pruned, StoreError> {
        self.write(move |txn| {
            let old: Vec<(i64, u128)> = txn
                .open_table(REJECTED_BY_TIME)?
                .range((i64::MIN, 0)..(before_ms, 0))?
                .take(BATCH)
                .map(|entry| entry.map(|(key, _)| key.value()))
                .collect::<Result<_, _>>()?;
            let mut index = txn.open_table(REJECTED_BY_TIME)?;
            let mut apps = txn.open_table(APPLICATIONS)?;
            let mut by_node = txn.open_table(APPLICATION_BY_NODE)?;
            for key in &old {
                index.remove(*key)?;
                let id = key.1;
                let node = apps
                    .remove(id)?
                    .and_then(|value| codec::decode::<ApplicationRecord>(value.value()).ok())
                    .map(|app| app.node_id.0.as_u128());
                if let Some(node) = node
                    && by_node
                        .get(node)?
                        .is_some_and(|latest| latest.value() == id)
                {
                    by_node.remove(node)?;
                }
            }
            Ok(Pruned {
                records: old.len(),
                ..Default::default()
            })
        })
        .await
    }

    /// Removes ended terminal session records created before `before_ms`; their recording
    /// files are returned for the caller to delete.
    pub async fn prune_tty_sessions(&self, before_ms: i64) -> Result<Pruned, StoreError> {
        self.write(move |txn| {
            let old: Vec<TtySessionRecord> = {
                let sessions = txn.open_table(TTY_SESSIONS)?;
                let live = txn.open_table(TTY_LIVE)?;
                let mut old = Vec::new();
                for entry in txn
                    .open_table(TTY_BY_TIME)?
                    .range((i64::MIN, 0)..(before_ms, 0))?
                {
                    let (_, id) = entry?.0.value();
                    if live.get(id)?.is_some() {
                        continue;
                    }
                    if let Some(value) = sessions.get(id)? {
                        match codec::decode::<TtySessionRecord>(value.value()) {
                            Ok(record) => old.push(record),
                            Err(e) => tracing::warn!(error = %e, "a session record does not read; not pruned"),
                        }
                    }
                    if old.len() >= BATCH {
                        break;
                    }
                }
                old
            };
            let mut sessions = txn.open_table(TTY_SESSIONS)?;
            let mut by_time = txn.open_table(TTY_BY_TIME)?;
            let mut by_node = txn.open_table(TTY_BY_NODE)?;
            let mut pruned = Pruned::default();
            for record in old {
                let id = record.id.0.as_u128();
                sessions.remove(id)?;
                by_time.remove((record.created_at_ms, id))?;
                by_node.remove((record.node_id.0.as_u128(), record.created_at_ms, id))?;
                pruned.records += 1;
                pruned.recordings.extend(record.recording);
            }
            Ok(pruned)
        })
        .await
    }

    /// Notes something about a session's recording (it was deleted, and why), whatever the
    /// session's state. False if there is no such session.
    pub async fn note_tty_recording(
        &self,
        id: TtySessionId,
        note: String,
    ) -> Result<bool, StoreError> {
        self.write(move |txn| {
            let key = id.0.as_u128();
            let record: Option<TtySessionRecord> = {
                let table = txn.open_table(TTY_SESSIONS)?;
                let value = table.get(key)?;
                value.map(|v| codec::decode(v.value())).transpose()?
            };
            let Some(mut record) = record else {
                return Ok(false);
            };
            record.recording_note = Some(note);
            crate::tty::save_session(txn, &record)?;
            Ok(true)
        })
        .await
    }
}

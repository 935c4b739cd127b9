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
const BATCH: usize = 1000;

/// What one pruning call removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// Whether the call hit its batch size, so that more may remain.
    pub fn more(&self) -> bool {
        self.records >= BATCH
    }
}

/// Builds the kept-output counter of a database written before it existed.
pub(crate) fn count_exec_output(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    if meta.get(EXEC_OUTPUT_BYTES)?.is_some() {
        return Ok(());
    }
    let mut total = 0u64;
    for entry in txn.open_table(EXEC_OUTPUT)?.iter()? {
        total += entry?.1.value().len() as u64;
    }
    meta.insert(EXEC_OUTPUT_BYTES, total)?;
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

/// Removes an execution's kept output; bytes and chunks removed.
fn drop_output(txn: &WriteTransaction, id: u128) -> Result<(u64, usize), StoreError> {
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
    let (bytes, chunks) = drop_output(txn, id)?;
    txn.open_table(EXEC_BY_TIME)?
        .remove((record.created_at_ms, id))?;
    txn.open_table(EXECUTIONS)?.remove(id)?;
    txn.open_table(EXEC_RUNNING)?.remove(id)?;
    pruned.records += 1;
    pruned.rows += nodes.len() + chunks;
    pruned.bytes += bytes;
    Ok(nodes.len() as u64)
}

/// The oldest executions that are not running, oldest first, at most [`BATCH`].
fn oldest_executions(txn: &WriteTransaction) -> Result<Vec<ExecutionRecord>, StoreError> {
    let executions = txn.open_table(EXECUTIONS)?;
    let running = txn.open_table(EXEC_RUNNING)?;
    let mut out = Vec::new();
    for entry in txn.open_table(EXEC_BY_TIME)?.iter()? {
        let (_, id) = entry?.0.value();
        if running.get(id)?.is_some() {
            continue;
        }
        if let Some(value) = executions.get(id)? {
            out.push(codec::decode(value.value())?);
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
            for record in oldest_executions(txn)? {
                if record.created_at_ms >= before_ms && results <= max_results {
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
            for mut record in oldest_executions(txn)? {
                if kept <= max_bytes {
                    break;
                }
                if record.output_pruned_at_ms.is_some() {
                    continue;
                }
                let (bytes, chunks) = drop_output(txn, record.id.0.as_u128())?;
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
            let old: Vec<ApplicationRecord> = {
                let table = txn.open_table(APPLICATIONS)?;
                let mut old = Vec::new();
                for entry in table.iter()? {
                    let record: ApplicationRecord = codec::decode(entry?.1.value())?;
                    if record.status == ApplicationStatus::Rejected
                        && record.decided_at_ms.unwrap_or(record.created_at_ms) < before_ms
                    {
                        old.push(record);
                        if old.len() >= BATCH {
                            break;
                        }
                    }
                }
                old
            };
            let mut apps = txn.open_table(APPLICATIONS)?;
            let mut by_node = txn.open_table(APPLICATION_BY_NODE)?;
            for record in &old {
                let id = record.id.0.as_u128();
                apps.remove(id)?;
                let node = record.node_id.0.as_u128();
                if by_node
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
                        old.push(codec::decode(value.value())?);
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
            txn.open_table(TTY_SESSIONS)?
                .insert(key, codec::encode(&record).as_slice())?;
            Ok(true)
        })
        .await
    }
}

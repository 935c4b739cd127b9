//! Executions: created before anything runs, updated as each node's result arrives, output kept
//! in chunks up to a cap, and marked interrupted if core stops while they run.

use redb::{ReadableTable, WriteTransaction};
use tether_wire::admin::{ExecStatus, ExecutionState};
use tether_wire::exec::OutputStream;
use tether_wire::{ExecutionId, NodeId};
use uuid::Uuid;

use crate::nodes::Resolved;
use crate::records::{ExecutionRecord, NodeExecRecord};
use crate::tables::*;
use crate::{Store, StoreError, codec};

fn load_execution(txn: &WriteTransaction, id: u128) -> Result<Option<ExecutionRecord>, StoreError> {
    let table = txn.open_table(EXECUTIONS)?;
    let value = table.get(id)?;
    value.map(|v| codec::decode(v.value())).transpose()
}

pub(crate) fn save_execution(
    txn: &WriteTransaction,
    record: &ExecutionRecord,
) -> Result<(), StoreError> {
    let id = record.id.0.as_u128();
    txn.open_table(EXECUTIONS)?
        .insert(id, codec::encode(record).as_slice())?;
    let mut running = txn.open_table(EXEC_RUNNING)?;
    if record.state == ExecutionState::Running {
        running.insert(id, ())?;
    } else {
        running.remove(id)?;
    }
    Ok(())
}

fn stream_tag(stream: OutputStream) -> u8 {
    match stream {
        OutputStream::Stdout => 1,
        OutputStream::Stderr => 2,
    }
}

impl Store {
    /// Records an execution and every targeted node (pending) before anything runs.
    pub async fn create_execution(
        &self,
        mut record: ExecutionRecord,
        targets: Vec<(NodeId, String)>,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            let id = record.id.0.as_u128();
            record.node_count = u32::try_from(targets.len()).unwrap_or(u32::MAX);
            record.counts = Default::default();
            record.counts.unfinished = record.node_count;
            save_execution(txn, &record)?;
            txn.open_table(EXEC_BY_TIME)?
                .insert((record.created_at_ms, id), ())?;
            let mut nodes = txn.open_table(EXEC_NODES)?;
            let mut by_node = txn.open_table(EXEC_BY_NODE)?;
            for (node_id, hostname) in targets {
                let node = node_id.0.as_u128();
                let pending = NodeExecRecord::pending(node_id, hostname);
                nodes.insert((id, node), codec::encode(&pending).as_slice())?;
                by_node.insert((node, record.created_at_ms, id), ())?;
            }
            Ok(())
        })
        .await
    }

    /// Records a node's new state and keeps the execution's counts in step.
    pub async fn update_exec_node(
        &self,
        exec_id: ExecutionId,
        update: NodeExecRecord,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            let id = exec_id.0.as_u128();
            let key = (id, update.node_id.0.as_u128());
            let previous: Option<NodeExecRecord> = {
                let nodes = txn.open_table(EXEC_NODES)?;
                let value = nodes.get(key)?;
                value.map(|v| codec::decode(v.value())).transpose()?
            };
            let Some(previous) = previous else {
                return Ok(());
            };
            // Pending → running leaves the counts as they are (both are unfinished): skip the rewrite.
            let counts_change = previous.status != update.status
                && (previous.status.is_final() || update.status.is_final());
            if counts_change && let Some(mut execution) = load_execution(txn, id)? {
                execution.counts.remove(previous.status);
                execution.counts.add(update.status);
                save_execution(txn, &execution)?;
            }
            txn.open_table(EXEC_NODES)?
                .insert(key, codec::encode(&update).as_slice())?;
            Ok(())
        })
        .await
    }

    /// Keeps a chunk of a node's output.
    pub async fn append_exec_output(
        &self,
        exec_id: ExecutionId,
        node_id: NodeId,
        chunk: u32,
        stream: OutputStream,
        data: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut value = Vec::with_capacity(data.len() + 1);
            value.push(stream_tag(stream));
            value.extend_from_slice(&data);
            let replaced = txn
                .open_table(EXEC_OUTPUT)?
                .insert(
                    (exec_id.0.as_u128(), node_id.0.as_u128(), chunk),
                    value.as_slice(),
                )?
                .map_or(0, |old| old.value().len() as u64);
            if chunk == 0 {
                crate::retention::note_output(txn, exec_id.0.as_u128())?;
            }
            crate::retention::add_exec_output(txn, value.len() as u64, replaced)
        })
        .await
    }

    /// Ends an execution.
    pub async fn finish_execution(
        &self,
        exec_id: ExecutionId,
        state: ExecutionState,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            if let Some(mut execution) = load_execution(txn, exec_id.0.as_u128())? {
                execution.state = state;
                execution.finished_at_ms = Some(at_ms);
                save_execution(txn, &execution)?;
            }
            Ok(())
        })
        .await
    }

    /// At start-up: executions still running when core stopped are interrupted, and so is every
    /// node in them that was not done. Returns how many executions.
    pub async fn interrupt_running_executions(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.write(move |txn| {
            let running: Vec<u128> = txn
                .open_table(EXEC_RUNNING)?
                .iter()?
                .map(|entry| entry.map(|(key, _)| key.value()))
                .collect::<Result<_, _>>()?;
            for id in &running {
                let Some(mut execution) = load_execution(txn, *id)? else {
                    continue;
                };
                let unfinished: Vec<NodeExecRecord> = {
                    let nodes = txn.open_table(EXEC_NODES)?;
                    let mut out = Vec::new();
                    for entry in nodes.range((*id, 0)..=(*id, u128::MAX))? {
                        let (_, value) = entry?;
                        let record: NodeExecRecord = codec::decode(value.value())?;
                        if !record.status.is_final() {
                            out.push(record);
                        }
                    }
                    out
                };
                let mut nodes = txn.open_table(EXEC_NODES)?;
                for mut record in unfinished {
                    execution.counts.remove(record.status);
                    record.status = ExecStatus::Interrupted;
                    record.error = Some("core stopped while this ran; its end is unknown".into());
                    execution.counts.add(ExecStatus::Interrupted);
                    nodes.insert(
                        (*id, record.node_id.0.as_u128()),
                        codec::encode(&record).as_slice(),
                    )?;
                }
                execution.state = ExecutionState::Interrupted;
                execution.finished_at_ms = Some(now_ms);
                save_execution(txn, &execution)?;
            }
            Ok(running.len())
        })
        .await
    }

    /// Executions, newest first; only those that ran on `node`, if given.
    pub fn executions(
        &self,
        node: Option<NodeId>,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, StoreError> {
        let txn = self.read()?;
        let executions = txn.open_table(EXECUTIONS)?;
        let ids: Vec<u128> = match node {
            None => txn
                .open_table(EXEC_BY_TIME)?
                .iter()?
                .rev()
                .take(limit)
                .map(|entry| entry.map(|(key, _)| key.value().1))
                .collect::<Result<_, _>>()?,
            Some(node) => {
                let node = node.0.as_u128();
                txn.open_table(EXEC_BY_NODE)?
                    .range((node, i64::MIN, 0)..=(node, i64::MAX, u128::MAX))?
                    .rev()
                    .take(limit)
                    .map(|entry| entry.map(|(key, _)| key.value().2))
                    .collect::<Result<_, _>>()?
            }
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(value) = executions.get(id)? {
                out.push(codec::decode(value.value())?);
            }
        }
        Ok(out)
    }

    /// One execution with its nodes' records.
    pub fn execution(
        &self,
        id: ExecutionId,
    ) -> Result<Option<(ExecutionRecord, Vec<NodeExecRecord>)>, StoreError> {
        let txn = self.read()?;
        let key = id.0.as_u128();
        let Some(value) = txn.open_table(EXECUTIONS)?.get(key)? else {
            return Ok(None);
        };
        let record: ExecutionRecord = codec::decode(value.value())?;
        let mut nodes = Vec::new();
        for entry in txn
            .open_table(EXEC_NODES)?
            .range((key, 0)..=(key, u128::MAX))?
        {
            let (_, value) = entry?;
            nodes.push(codec::decode(value.value())?);
        }
        Ok(Some((record, nodes)))
    }

    /// The kept output of one node in one execution: (stdout, stderr).
    pub fn exec_output(
        &self,
        id: ExecutionId,
        node: NodeId,
    ) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        let txn = self.read()?;
        let (exec, node) = (id.0.as_u128(), node.0.as_u128());
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        for entry in txn
            .open_table(EXEC_OUTPUT)?
            .range((exec, node, 0)..=(exec, node, u32::MAX))?
        {
            let (_, value) = entry?;
            match value.value().split_first() {
                Some((1, data)) => stdout.extend_from_slice(data),
                Some((2, data)) => stderr.extend_from_slice(data),
                _ => {
                    return Err(StoreError::Corrupt(
                        "an output chunk without a stream tag".into(),
                    ));
                }
            }
        }
        Ok((stdout, stderr))
    }

    /// Resolves an execution id or unique prefix.
    pub fn resolve_execution(&self, text: &str) -> Result<Resolved<ExecutionId>, StoreError> {
        Ok(crate::nodes::resolve_in(self, EXECUTIONS, text)?
            .map(|k| ExecutionId(Uuid::from_u128(k))))
    }
}

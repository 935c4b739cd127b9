//! Terminal sessions and who may open them: session records from authorization to close (with
//! an index of live ones, marked `error` if core stops under them) and each node's allowed users.

use redb::{ReadableTable, WriteTransaction};
use tether_wire::tty::TtyStatus;
use tether_wire::{NodeId, TtySessionId};
use uuid::Uuid;

use crate::nodes::Resolved;
use crate::records::TtySessionRecord;
use crate::tables::*;
use crate::{Store, StoreError, codec};

/// What became of a change to a node's allowed users.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessChange {
    /// The list now.
    Updated(Vec<String>),
    /// No such node.
    NoNode,
    /// The list would be longer than the limit given: nothing changed.
    TooMany,
}

pub(crate) fn read_access(
    table: &impl ReadableTable<u128, &'static [u8]>,
    node: u128,
) -> Result<Vec<String>, StoreError> {
    table
        .get(node)?
        .map(|v| codec::decode(v.value()))
        .transpose()
        .map(Option::unwrap_or_default)
}

pub(crate) fn save_session(
    txn: &WriteTransaction,
    record: &TtySessionRecord,
) -> Result<(), StoreError> {
    let id = record.id.0.as_u128();
    txn.open_table(TTY_SESSIONS)?
        .insert(id, codec::encode(record).as_slice())?;
    let mut live = txn.open_table(TTY_LIVE)?;
    if record.status.is_live() {
        live.insert(id, ())?;
    } else {
        live.remove(id)?;
    }
    Ok(())
}

impl Store {
    /// Records a new session (normally `pending`).
    pub async fn create_tty_session(&self, record: TtySessionRecord) -> Result<(), StoreError> {
        self.write(move |txn| {
            let id = record.id.0.as_u128();
            save_session(txn, &record)?;
            txn.open_table(TTY_BY_TIME)?
                .insert((record.created_at_ms, id), ())?;
            txn.open_table(TTY_BY_NODE)?
                .insert((record.node_id.0.as_u128(), record.created_at_ms, id), ())?;
            Ok(())
        })
        .await
    }

    /// Changes a session's record with `change`, unless it already ended (an ended session's
    /// record is final). Returns the record as stored after the call, if the session exists.
    pub async fn update_tty_session<F>(
        &self,
        id: TtySessionId,
        change: F,
    ) -> Result<Option<TtySessionRecord>, StoreError>
    where
        F: FnOnce(&mut TtySessionRecord) + Send + 'static,
    {
        self.write(move |txn| {
            let current: Option<TtySessionRecord> = {
                let table = txn.open_table(TTY_SESSIONS)?;
                let value = table.get(id.0.as_u128())?;
                value.map(|v| codec::decode(v.value())).transpose()?
            };
            let Some(mut record) = current else {
                return Ok(None);
            };
            if record.status.is_live() {
                change(&mut record);
                save_session(txn, &record)?;
            }
            Ok(Some(record))
        })
        .await
    }

    /// At start-up: sessions still pending or connected when core stopped end in `error` with
    /// `reason`. Returns how many.
    pub async fn interrupt_live_tty_sessions(
        &self,
        now_ms: i64,
        reason: String,
    ) -> Result<usize, StoreError> {
        self.write(move |txn| {
            let live: Vec<u128> = txn
                .open_table(TTY_LIVE)?
                .iter()?
                .map(|entry| entry.map(|(key, _)| key.value()))
                .collect::<Result<_, _>>()?;
            for id in &live {
                let record: Option<TtySessionRecord> = {
                    let table = txn.open_table(TTY_SESSIONS)?;
                    let value = table.get(*id)?;
                    value.map(|v| codec::decode(v.value())).transpose()?
                };
                match record {
                    Some(mut record) => {
                        record.status = TtyStatus::Error;
                        record.error = Some(reason.clone());
                        record.closed_at_ms = Some(now_ms);
                        save_session(txn, &record)?;
                    }
                    None => {
                        txn.open_table(TTY_LIVE)?.remove(*id)?;
                    }
                }
            }
            Ok(live.len())
        })
        .await
    }

    /// One session.
    pub fn tty_session(&self, id: TtySessionId) -> Result<Option<TtySessionRecord>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(TTY_SESSIONS)?;
        let value = table.get(id.0.as_u128())?;
        value.map(|v| codec::decode(v.value())).transpose()
    }

    /// Sessions, newest first: only live ones if `live_only`, only on `node` if given.
    pub fn tty_sessions(
        &self,
        node: Option<NodeId>,
        live_only: bool,
        limit: usize,
    ) -> Result<Vec<TtySessionRecord>, StoreError> {
        let txn = self.read()?;
        let sessions = txn.open_table(TTY_SESSIONS)?;
        let live = txn.open_table(TTY_LIVE)?;
        let by_time = txn.open_table(TTY_BY_TIME)?;
        let by_node = txn.open_table(TTY_BY_NODE)?;
        let ids: Box<dyn Iterator<Item = Result<u128, redb::StorageError>>> = match node {
            None => Box::new(
                by_time
                    .iter()?
                    .rev()
                    .map(|entry| entry.map(|(key, _)| key.value().1)),
            ),
            Some(node) => {
                let node = node.0.as_u128();
                Box::new(
                    by_node
                        .range((node, i64::MIN, 0)..=(node, i64::MAX, u128::MAX))?
                        .rev()
                        .map(|entry| entry.map(|(key, _)| key.value().2)),
                )
            }
        };
        let mut out = Vec::new();
        for id in ids {
            if out.len() >= limit {
                break;
            }
            let id = id?;
            if live_only && live.get(id)?.is_none() {
                continue;
            }
            if let Some(value) = sessions.get(id)? {
                out.push(codec::decode(value.value())?);
            }
        }
        Ok(out)
    }

    /// Resolves a session id or unique prefix.
    pub fn resolve_tty_session(&self, text: &str) -> Result<Resolved<TtySessionId>, StoreError> {
        Ok(crate::nodes::resolve_in(self, TTY_SESSIONS, text)?
            .map(|k| TtySessionId(Uuid::from_u128(k))))
    }

    /// Users (besides admins) allowed to open terminals on `node`.
    pub fn allowed_users(&self, node: NodeId) -> Result<Vec<String>, StoreError> {
        let txn = self.read()?;
        read_access(&txn.open_table(NODE_ACCESS)?, node.0.as_u128())
    }

    /// Adds and removes allowed users of a node, keeping the list sorted and at most `max` long.
    pub async fn change_allowed_users(
        &self,
        node: NodeId,
        add: Vec<String>,
        remove: Vec<String>,
        max: usize,
    ) -> Result<AccessChange, StoreError> {
        self.write(move |txn| {
            let key = node.0.as_u128();
            if txn.open_table(NODES)?.get(key)?.is_none() {
                return Ok(AccessChange::NoNode);
            }
            let mut table = txn.open_table(NODE_ACCESS)?;
            let mut users = read_access(&table, key)?;
            users.retain(|u| !remove.contains(u));
            for user in add {
                if !users.contains(&user) {
                    users.push(user);
                }
            }
            if users.len() > max {
                return Ok(AccessChange::TooMany);
            }
            users.sort();
            if users.is_empty() {
                table.remove(key)?;
            } else {
                table.insert(key, codec::encode(&users).as_slice())?;
            }
            Ok(AccessChange::Updated(users))
        })
        .await
    }
}

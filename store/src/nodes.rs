//! Nodes: reads, admin changes, connectivity, facts, last-seen, status log.

use std::sync::Arc;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use tether_wire::admin::NodeStatus;
use tether_wire::facts::StaticFacts;
use tether_wire::{ApplicationId, NodeId};
use uuid::Uuid;

use crate::enroll::{load_node_w, log_status, save_node};
use crate::records::{IdentityConflict, NodeRecord, StatusEvent};
use crate::tables::*;
use crate::{Store, StoreError, codec};

/// A node with what is stored beside its record.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDetail {
    /// The record.
    pub record: NodeRecord,
    /// Static facts, once received.
    pub facts: Option<StaticFacts>,
    /// Last heartbeat flushed to disk, unix ms.
    pub last_seen_ms: Option<i64>,
    /// Users (besides admins) allowed to open terminals on the node.
    pub allowed_users: Vec<String>,
    /// Another machine's latest attempt to use this node's identity, if any is kept.
    pub conflict: Option<IdentityConflict>,
    /// The agent's own state as it last reported it on a connection (kept while offline).
    pub agent: Option<tether_wire::heartbeat::AgentState>,
    /// The path of the group it is in (`prod/eu/web`), if any.
    pub group: Option<String>,
    /// The policy it last reported (none: never reported, an older agent).
    pub policy: Option<tether_wire::policy::NodePolicy>,
}

/// Result of resolving an id or a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved<T> {
    /// Exactly one match.
    One(T),
    /// Nothing matches.
    NotFound,
    /// Several match (at most ten are listed).
    Ambiguous(Vec<T>),
    /// The text is not an id or a hex prefix of one.
    Invalid(String),
}

impl<T> Resolved<T> {
    pub(crate) fn map<U>(self, f: impl Fn(T) -> U) -> Resolved<U> {
        match self {
            Resolved::One(v) => Resolved::One(f(v)),
            Resolved::NotFound => Resolved::NotFound,
            Resolved::Ambiguous(vs) => Resolved::Ambiguous(vs.into_iter().map(f).collect()),
            Resolved::Invalid(m) => Resolved::Invalid(m),
        }
    }
}

/// Range of u128 keys whose hex text starts with `text` (dashes ignored).
fn prefix_range(text: &str) -> Result<(u128, u128), String> {
    let hex: String = text
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.is_empty() || hex.len() > 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{text:?} is not an id or the beginning of one (hexadecimal digits and dashes)"
        ));
    }
    let low = u128::from_str_radix(&format!("{hex:0<32}"), 16).expect("hex");
    let high = u128::from_str_radix(&format!("{hex:f<32}"), 16).expect("hex");
    Ok((low, high))
}

pub(crate) fn resolve_in(
    store: &Store,
    table: TableDefinition<'_, u128, &[u8]>,
    text: &str,
) -> Result<Resolved<u128>, StoreError> {
    let (low, high) = match prefix_range(text) {
        Ok(range) => range,
        Err(message) => return Ok(Resolved::Invalid(message)),
    };
    let txn = store.read()?;
    let table = txn.open_table(table)?;
    let mut found = Vec::new();
    for entry in table.range(low..=high)?.take(11) {
        found.push(entry?.0.value());
    }
    Ok(match found.len() {
        0 => Resolved::NotFound,
        1 => Resolved::One(found[0]),
        _ => {
            found.truncate(10);
            Resolved::Ambiguous(found)
        }
    })
}

/// Builds the hostname index of a database written before it existed (inside `create_all`'s
/// transaction, so a crash leaves no half index).
pub(crate) fn index_hostnames(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut index = txn.open_table(NODE_BY_HOSTNAME)?;
    let nodes = txn.open_table(NODES)?;
    if !index.is_empty()? || nodes.is_empty()? {
        return Ok(());
    }
    for entry in nodes.iter()? {
        let (key, value) = entry?;
        // A record that does not read is left out of the index, not the reason core cannot
        // start: it is found by id.
        match codec::decode::<NodeRecord>(value.value()) {
            Ok(record) => {
                index.insert((record.hostname.as_str(), key.value()), ())?;
            }
            Err(e) => tracing::warn!(error = %e, "a node record does not read; not indexed"),
        }
    }
    Ok(())
}

/// Stored static facts, or `None` if they were written in an older shape: facts are only a copy
/// of what the node reports, and a node whose facts core lacks sends them again (their digest
/// no longer matches), so an upgrade that changes their shape costs nothing but that resend.
fn decode_facts(bytes: &[u8]) -> Option<StaticFacts> {
    match codec::decode(bytes) {
        Ok(facts) => Some(facts),
        Err(e) => {
            tracing::debug!(error = %e, "stored facts of an older shape are ignored until the node resends them");
            None
        }
    }
}

fn read_conflict(
    table: &impl ReadableTable<u128, &'static [u8]>,
    key: u128,
) -> Result<Option<IdentityConflict>, StoreError> {
    table
        .get(key)?
        .map(|v| codec::decode(v.value()))
        .transpose()
}

impl Store {
    /// Records that another machine tried to use `node`'s identity at `at_ms`, from `address`
    /// (reporting `hostname`), refused for `reason`: kept with the first attempt's time and a
    /// count. Deleted or unknown nodes are left alone.
    pub async fn record_identity_conflict(
        &self,
        node: NodeId,
        address: String,
        hostname: String,
        reason: String,
        at_ms: i64,
    ) -> Result<IdentityConflict, StoreError> {
        self.write(move |txn| {
            let key = node.0.as_u128();
            let mut table = txn.open_table(NODE_CONFLICTS)?;
            let before = read_conflict(&table, key)?;
            let conflict = IdentityConflict {
                address,
                hostname,
                reason,
                first_at_ms: before.as_ref().map_or(at_ms, |b| b.first_at_ms),
                last_at_ms: at_ms,
                attempts: before.as_ref().map_or(0, |b| b.attempts).saturating_add(1),
            };
            table.insert(key, codec::encode(&conflict).as_slice())?;
            Ok(conflict)
        })
        .await
    }

    /// Forgets identity conflicts whose latest attempt is older than `before_ms`; how many.
    pub async fn prune_identity_conflicts(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(NODE_CONFLICTS)?;
            let mut old = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                let conflict: IdentityConflict = codec::decode(value.value())?;
                if conflict.last_at_ms < before_ms {
                    old.push(key.value());
                }
            }
            for key in &old {
                table.remove(*key)?;
            }
            Ok(old.len())
        })
        .await
    }

    /// Node records whose hostname is exactly `hostname` (deleted ones too), in id order.
    pub fn nodes_by_hostname(&self, hostname: &str) -> Result<Vec<NodeRecord>, StoreError> {
        let txn = self.read()?;
        let index = txn.open_table(NODE_BY_HOSTNAME)?;
        let nodes = txn.open_table(NODES)?;
        let mut out = Vec::new();
        for entry in index.range((hostname, 0)..=(hostname, u128::MAX))? {
            let id = entry?.0.value().1;
            if let Some(value) = nodes.get(id)? {
                out.push(codec::decode(value.value())?);
            }
        }
        Ok(out)
    }

    /// Resolves a node id or unique prefix.
    pub fn resolve_node(&self, text: &str) -> Result<Resolved<NodeId>, StoreError> {
        Ok(resolve_in(self, NODES, text)?.map(|k| NodeId(Uuid::from_u128(k))))
    }

    /// Resolves an application id or unique prefix.
    pub fn resolve_application(&self, text: &str) -> Result<Resolved<ApplicationId>, StoreError> {
        Ok(resolve_in(self, APPLICATIONS, text)?.map(|k| ApplicationId(Uuid::from_u128(k))))
    }

    /// Keeps the agent's latest state (seed 002's `agents`): core writes it on a connection's
    /// first report and when the agent restarted, not at every report.
    pub async fn save_agent_state(
        &self,
        node: NodeId,
        state: tether_wire::heartbeat::AgentState,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            txn.open_table(AGENTS)?
                .insert(node.0.as_u128(), codec::encode(&state).as_slice())?;
            Ok(())
        })
        .await
    }

    /// Keeps the policy `node` reported (written only when it differs from the one kept).
    pub async fn set_node_policy(
        &self,
        node: NodeId,
        policy: tether_wire::policy::NodePolicy,
    ) -> Result<(), StoreError> {
        let key = node.0.as_u128();
        {
            let txn = self.read()?;
            let kept = txn.open_table(crate::tables::NODE_POLICY)?.get(key)?;
            if let Some(kept) = kept
                && codec::decode::<tether_wire::policy::NodePolicy>(kept.value()).ok()
                    == Some(policy.clone())
            {
                return Ok(());
            }
        }
        self.write(move |txn| {
            txn.open_table(crate::tables::NODE_POLICY)?
                .insert(key, codec::encode(&policy).as_slice())?;
            Ok(())
        })
        .await
    }

    /// One node with its facts.
    pub fn node(&self, id: NodeId) -> Result<Option<NodeDetail>, StoreError> {
        let txn = self.read()?;
        let key = id.0.as_u128();
        let nodes = txn.open_table(NODES)?;
        let Some(value) = nodes.get(key)? else {
            return Ok(None);
        };
        let record: NodeRecord = codec::decode(value.value())?;
        let facts = txn
            .open_table(FACTS)?
            .get(key)?
            .and_then(|v| decode_facts(v.value()));
        let last_seen_ms = txn.open_table(LAST_SEEN)?.get(key)?.map(|v| v.value());
        let allowed_users = crate::tty::read_access(&txn.open_table(NODE_ACCESS)?, key)?;
        let conflict = read_conflict(&txn.open_table(NODE_CONFLICTS)?, key)?;
        let agent = txn
            .open_table(AGENTS)?
            .get(key)?
            .map(|v| codec::decode(v.value()))
            .transpose()?;
        let policy = txn
            .open_table(crate::tables::NODE_POLICY)?
            .get(key)?
            .map(|v| codec::decode(v.value()))
            .transpose()?;
        let group = crate::groups::node_group_path_in(&txn, key)?;
        Ok(Some(NodeDetail {
            record,
            facts,
            last_seen_ms,
            allowed_users,
            conflict,
            agent,
            group,
            policy,
        }))
    }

    /// Every node (deleted ones too), in id order.
    pub fn nodes(&self) -> Result<Vec<NodeDetail>, StoreError> {
        let txn = self.read()?;
        let nodes = txn.open_table(NODES)?;
        let facts = txn.open_table(FACTS)?;
        let last_seen = txn.open_table(LAST_SEEN)?;
        let access = txn.open_table(NODE_ACCESS)?;
        let conflicts = txn.open_table(NODE_CONFLICTS)?;
        let agents = txn.open_table(AGENTS)?;
        let node_group = txn.open_table(crate::tables::NODE_GROUP)?;
        let policies = txn.open_table(crate::tables::NODE_POLICY)?;
        let tree = crate::groups::read_groups(&txn.open_table(crate::tables::GROUPS)?)?;
        let mut out = Vec::new();
        for entry in nodes.iter()? {
            let (key, value) = entry?;
            let key = key.value();
            out.push(NodeDetail {
                record: codec::decode(value.value())?,
                facts: facts.get(key)?.and_then(|v| decode_facts(v.value())),
                last_seen_ms: last_seen.get(key)?.map(|v| v.value()),
                allowed_users: crate::tty::read_access(&access, key)?,
                conflict: read_conflict(&conflicts, key)?,
                agent: agents
                    .get(key)?
                    .map(|v| codec::decode(v.value()))
                    .transpose()?,
                group: node_group.get(key)?.map(|g| tree.path(g.value())),
                policy: policies
                    .get(key)?
                    .map(|v| codec::decode(v.value()))
                    .transpose()?,
            });
        }
        Ok(out)
    }

    /// Every node record (deleted ones too), in id order, shared: read and decoded once, then
    /// handed out again until a write changes a node record (an enrollment, a label, a status
    /// change...), so that pages and live views of 100,000 nodes do not decode 100,000
    /// records each time they look. Last-seen times are not in it ([`Store::last_seen_all`]).
    pub fn node_records_shared(&self) -> Result<Arc<Vec<NodeRecord>>, StoreError> {
        use std::sync::atomic::Ordering;
        // The generation first: records read after it are at least that new.
        let generation = self.nodes_generation.load(Ordering::Acquire);
        if let Some((cached, records)) = &*self.nodes_cache.lock().expect("not poisoned")
            && *cached == generation
        {
            return Ok(records.clone());
        }
        let txn = self.read()?;
        let nodes = txn.open_table(NODES)?;
        let mut out = Vec::with_capacity(usize::try_from(nodes.len()?).unwrap_or(0));
        for entry in nodes.iter()? {
            out.push(codec::decode::<NodeRecord>(entry?.1.value())?);
        }
        let records = Arc::new(out);
        *self.nodes_cache.lock().expect("not poisoned") = Some((generation, records.clone()));
        Ok(records)
    }

    /// Every stored last-seen time, by node.
    pub fn last_seen_all(&self) -> Result<std::collections::HashMap<NodeId, i64>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(LAST_SEEN)?;
        let mut out = std::collections::HashMap::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            out.insert(NodeId(Uuid::from_u128(key.value())), value.value());
        }
        Ok(out)
    }

    /// A node's agent secret; `None` for unknown or deleted nodes.
    pub fn secret(&self, id: NodeId) -> Result<Option<[u8; 32]>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(SECRETS)?;
        let value = table.get(id.0.as_u128())?;
        Ok(value.and_then(|v| v.value().try_into().ok()))
    }

    /// Changes a node record with `change` (which returns whether it changed anything) and stamps
    /// `updated_at_ms`. `None` if there is no such node.
    pub async fn update_node<F>(
        &self,
        id: NodeId,
        now_ms: i64,
        change: F,
    ) -> Result<Option<NodeRecord>, StoreError>
    where
        F: FnOnce(&mut NodeRecord) -> bool + Send + 'static,
    {
        self.write(move |txn| {
            let Some(mut node) = load_node_w(txn, id.0.as_u128())? else {
                return Ok(None);
            };
            let before_maintenance = node.maintenance;
            if change(&mut node) {
                node.updated_at_ms = now_ms;
                save_node(txn, &node)?;
                if node.maintenance != before_maintenance {
                    log_status(
                        txn,
                        &StatusEvent {
                            node_id: id,
                            status: if node.maintenance {
                                NodeStatus::Maintenance
                            } else {
                                node.connectivity
                            },
                            reason: format!(
                                "maintenance {}",
                                if node.maintenance { "on" } else { "off" }
                            ),
                            at_ms: now_ms,
                        },
                    )?;
                }
            }
            Ok(Some(node))
        })
        .await
    }

    /// Soft-deletes a node: the record stays with `deleted`, its secret is destroyed.
    pub async fn delete_node(
        &self,
        id: NodeId,
        by: String,
        now_ms: i64,
    ) -> Result<Option<NodeRecord>, StoreError> {
        self.write(move |txn| {
            let key = id.0.as_u128();
            let Some(mut node) = load_node_w(txn, key)? else {
                return Ok(None);
            };
            if !node.deleted {
                node.deleted = true;
                node.deleted_at_ms = Some(now_ms);
                node.updated_at_ms = now_ms;
                node.connectivity = NodeStatus::Offline;
                node.connectivity_changed_ms = now_ms;
                save_node(txn, &node)?;
                txn.open_table(SECRETS)?.remove(key)?;
                // A deleted node leaves its group (it counts nowhere and moves with nothing).
                if let Some(group) = txn
                    .open_table(crate::tables::NODE_GROUP)?
                    .remove(key)?
                    .map(|g| g.value())
                {
                    txn.open_table(crate::tables::GROUP_MEMBERS)?
                        .remove((group, key))?;
                }
                log_status(
                    txn,
                    &StatusEvent {
                        node_id: id,
                        status: NodeStatus::Offline,
                        reason: format!("deleted by {by}"),
                        at_ms: now_ms,
                    },
                )?;
            }
            Ok(Some(node))
        })
        .await
    }

    /// Records a connectivity change (online/offline) with its reason, and for a new connection the
    /// address and agent version it came with. Deleted nodes are left alone.
    pub async fn record_connectivity(&self, change: ConnectivityChange) -> Result<(), StoreError> {
        self.write(move |txn| {
            let key = change.node_id.0.as_u128();
            let Some(mut node) = load_node_w(txn, key)? else {
                return Ok(());
            };
            if node.deleted {
                return Ok(());
            }
            node.connectivity = change.status;
            node.connectivity_changed_ms = change.at_ms;
            if let Some(addr) = change.public_addr {
                node.public_addr = Some(addr);
            }
            if let Some(version) = change.agent_version {
                node.agent_version = version;
            }
            if let Some(skew) = change.clock_skew_ms {
                node.clock_skew_ms = skew;
            }
            save_node(txn, &node)?;
            if let Some(seen) = change.last_seen_ms {
                txn.open_table(LAST_SEEN)?.insert(key, seen)?;
            }
            log_status(
                txn,
                &StatusEvent {
                    node_id: change.node_id,
                    status: change.status,
                    reason: change.reason,
                    at_ms: change.at_ms,
                },
            )?;
            Ok(())
        })
        .await
    }

    /// Records a clock skew measurement (`None` clears it) without a status change.
    pub async fn record_clock_skew(
        &self,
        id: NodeId,
        skew_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            let Some(mut node) = load_node_w(txn, id.0.as_u128())? else {
                return Ok(());
            };
            if node.clock_skew_ms != skew_ms && !node.deleted {
                node.clock_skew_ms = skew_ms;
                save_node(txn, &node)?;
            }
            Ok(())
        })
        .await
    }

    /// Stores a node's static facts (and its hostname from them).
    pub async fn set_static_facts(
        &self,
        id: NodeId,
        facts: StaticFacts,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            let key = id.0.as_u128();
            let Some(mut node) = load_node_w(txn, key)? else {
                return Ok(());
            };
            if node.deleted {
                return Ok(());
            }
            if !facts.hostname.is_empty() && node.hostname != facts.hostname {
                node.hostname = facts.hostname.clone();
                node.updated_at_ms = now_ms;
                save_node(txn, &node)?;
            }
            txn.open_table(FACTS)?
                .insert(key, codec::encode(&facts).as_slice())?;
            Ok(())
        })
        .await
    }

    /// Writes last-seen times in one transaction.
    pub async fn flush_last_seen(&self, seen: Vec<(NodeId, i64)>) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        self.write(move |txn| {
            let mut table = txn.open_table(LAST_SEEN)?;
            for (id, at_ms) in seen {
                table.insert(id.0.as_u128(), at_ms)?;
            }
            Ok(())
        })
        .await
    }

    /// At start-up: every node recorded online is offline now (its connection died with the old
    /// process). Returns how many.
    pub async fn mark_all_offline(&self, now_ms: i64, reason: String) -> Result<usize, StoreError> {
        self.write(move |txn| {
            let online: Vec<NodeRecord> = {
                let nodes = txn.open_table(NODES)?;
                let mut online = Vec::new();
                for entry in nodes.iter()? {
                    let (_, value) = entry?;
                    let node: NodeRecord = codec::decode(value.value())?;
                    if node.connectivity == NodeStatus::Online {
                        online.push(node);
                    }
                }
                online
            };
            for mut node in online.iter().cloned() {
                node.connectivity = NodeStatus::Offline;
                node.connectivity_changed_ms = now_ms;
                save_node(txn, &node)?;
                log_status(
                    txn,
                    &StatusEvent {
                        node_id: node.id,
                        status: NodeStatus::Offline,
                        reason: reason.clone(),
                        at_ms: now_ms,
                    },
                )?;
            }
            Ok(online.len())
        })
        .await
    }

    /// The status log, newest first, optionally for one node, at most `limit` entries.
    pub fn status_log(
        &self,
        node: Option<NodeId>,
        limit: usize,
    ) -> Result<Vec<StatusEvent>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(STATUS_LOG)?;
        let mut out = Vec::new();
        for entry in table.iter()?.rev() {
            let (_, value) = entry?;
            let event: StatusEvent = codec::decode(value.value())?;
            if node.is_none_or(|id| id == event.node_id) {
                out.push(event);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// A connectivity change to record.
#[derive(Debug, Clone)]
pub struct ConnectivityChange {
    /// The node.
    pub node_id: NodeId,
    /// `Online` or `Offline`.
    pub status: NodeStatus,
    /// Why.
    pub reason: String,
    /// When, unix ms.
    pub at_ms: i64,
    /// Address of a new connection.
    pub public_addr: Option<String>,
    /// Agent version of a new connection.
    pub agent_version: Option<String>,
    /// Last heartbeat to record with it.
    pub last_seen_ms: Option<i64>,
    /// A skew measurement to record with it (`Some(None)` clears).
    pub clock_skew_ms: Option<Option<i64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Facts stored by an older version, in another shape, read as absent (the node resends).
    #[test]
    fn facts_of_an_older_shape_read_as_absent() {
        #[derive(serde::Serialize)]
        struct OldDisk {
            name: String,
            mount: String,
            filesystem: String,
            kind: String,
            total_bytes: u64,
        }
        #[derive(serde::Serialize)]
        struct OldFacts {
            hostname: String,
            disks: Vec<OldDisk>,
        }
        let mut old = vec![1u8];
        tether_wire::codec::encode_into(
            &OldFacts {
                hostname: "h".into(),
                disks: vec![OldDisk {
                    name: "/dev/vda".into(),
                    mount: "/".into(),
                    filesystem: "ext4".into(),
                    kind: "ssd".into(),
                    total_bytes: 1,
                }],
            },
            &mut old,
        );
        assert_eq!(decode_facts(&old), None);
        let current = StaticFacts {
            hostname: "h".into(),
            ..Default::default()
        };
        assert_eq!(decode_facts(&codec::encode(&current)), Some(current));
    }

    /// A database from before the hostname index gets one at its first open.
    #[tokio::test]
    async fn an_older_database_gets_its_hostname_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tether.redb");
        let id = NodeId::random();
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            let record = NodeRecord {
                id,
                hostname: "old-host".into(),
                public_key_pem: String::new(),
                labels: Default::default(),
                maintenance: false,
                deleted: false,
                application_id: ApplicationId::random(),
                created_at_ms: 0,
                updated_at_ms: 0,
                connectivity: NodeStatus::Offline,
                connectivity_changed_ms: 0,
                public_addr: None,
                agent_version: String::new(),
                clock_skew_ms: None,
                deleted_at_ms: None,
            };
            txn.open_table(NODES)
                .unwrap()
                .insert(id.0.as_u128(), codec::encode(&record).as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.nodes_by_hostname("old-host").unwrap()[0].id, id);
    }

    #[test]
    fn prefix_ranges() {
        let (low, high) = prefix_range("AB-c").unwrap();
        assert_eq!(low, 0xabc0_0000_0000_0000_0000_0000_0000_0000);
        assert_eq!(high, 0xabcf_ffff_ffff_ffff_ffff_ffff_ffff_ffff);
        let full = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        let (low, high) = prefix_range(full).unwrap();
        assert_eq!(low, high);
        assert!(prefix_range("").is_err());
        assert!(prefix_range("xyz").is_err());
        assert!(prefix_range(&"a".repeat(33)).is_err());
    }
}

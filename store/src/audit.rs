//! The audit log: append-only, and tamper-evident through a hash chain.
//!
//! Record `n` is stored as `hash(n) ‖ hash(n-1) ‖ entry`, where `entry` is the record's encoding
//! as written (version byte and all) and
//! `hash(n) = SHA-256("tether-audit-v1" ‖ n as 8 bytes big-endian ‖ hash(n-1) ‖ entry)`, with
//! `hash(0)` all zeros. Hashing the stored bytes, not a re-encoding, keeps old records
//! verifiable after the entry's shape changes. The head (last sequence number and hash) is kept
//! apart, so cutting records off the end is noticed too; retention removes records from the
//! old end and keeps the hash of the last one removed, so the chain stays verifiable from its
//! new start. Anyone who can rewrite the database file can recompute the whole chain: note the
//! head `audit verify` prints somewhere else to catch that.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use sha2::{Digest, Sha256};
use tether_wire::users::{AuditBreak, AuditEntry, AuditResult, AuditVerifyReport};

use crate::codec::{self, Stored};
use crate::retention::{BATCH, Pruned};
use crate::tables::{AUDIT, AUDIT_CHAIN};
use crate::{Store, StoreError};

impl Stored for AuditEntry {}

/// Domain separation for the chain's hashes.
const DOMAIN: &[u8] = b"tether-audit-v1";
/// [`AUDIT_CHAIN`] key: the last record's sequence number and hash.
const HEAD: &str = "head";
/// [`AUDIT_CHAIN`] key: the last pruned record's sequence number and hash.
const PRUNED: &str = "pruned";

/// An audit record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Sequence number, from 1.
    pub seq: u64,
    /// Its hash.
    pub hash: [u8; 32],
    /// The entry.
    pub entry: AuditEntry,
}

/// Which audit records to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this user's.
    pub user: Option<String>,
    /// Only this action, or those under it (`nodes` matches `nodes.edit`).
    pub action: Option<String>,
    /// Only this resource kind.
    pub resource_kind: Option<String>,
    /// Only resource ids starting with this.
    pub resource_id: Option<String>,
    /// From this time, unix ms.
    pub since_ms: Option<i64>,
    /// Before this time, unix ms.
    pub until_ms: Option<i64>,
    /// Only denied and failed.
    pub failed: bool,
    /// At most this many.
    pub limit: usize,
    /// Only the record with this sequence number.
    pub seq: Option<u64>,
}

impl AuditFilter {
    fn matches(&self, entry: &AuditEntry) -> bool {
        self.user.as_ref().is_none_or(|u| &entry.user == u)
            && self.action.as_ref().is_none_or(|a| {
                entry.action == *a
                    || entry
                        .action
                        .strip_prefix(a.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            })
            && self
                .resource_kind
                .as_ref()
                .is_none_or(|k| &entry.resource_kind == k)
            && self.resource_id.as_ref().is_none_or(|id| {
                entry
                    .resource_id
                    .as_deref()
                    .is_some_and(|r| r.starts_with(id.as_str()))
            })
            && self.since_ms.is_none_or(|t| entry.time_ms >= t)
            && self.until_ms.is_none_or(|t| entry.time_ms < t)
            && (!self.failed || entry.result != AuditResult::Ok)
    }
}

/// The hash of record `seq` with entry bytes `entry` after a record hashed `prev`.
pub fn audit_hash(seq: u64, prev: &[u8; 32], entry: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(seq.to_be_bytes());
    hasher.update(prev);
    hasher.update(entry);
    hasher.finalize().into()
}

fn link(bytes: &[u8]) -> Option<(u64, [u8; 32])> {
    let seq = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let hash = bytes.get(8..40)?.try_into().ok()?;
    Some((seq, hash))
}

fn link_bytes(seq: u64, hash: &[u8; 32]) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..8].copy_from_slice(&seq.to_be_bytes());
    out[8..].copy_from_slice(hash);
    out
}

/// A stored value split: (hash, previous hash, entry bytes).
fn split(value: &[u8]) -> Option<([u8; 32], [u8; 32], &[u8])> {
    let hash = value.get(..32)?.try_into().ok()?;
    let prev = value.get(32..64)?.try_into().ok()?;
    Some((hash, prev, value.get(64..)?))
}

fn read_link(txn: &WriteTransaction, key: &str) -> Result<Option<(u64, [u8; 32])>, StoreError> {
    let chain = txn.open_table(AUDIT_CHAIN)?;
    let value = chain.get(key)?;
    value
        .map(|v| link(v.value()).ok_or_else(|| StoreError::Corrupt(format!("audit {key}"))))
        .transpose()
}

impl Store {
    /// Appends a record at the end of the chain; its sequence number and hash. Appends queued
    /// together share a transaction and are chained in queue order.
    pub async fn append_audit(&self, entry: AuditEntry) -> Result<(u64, [u8; 32]), StoreError> {
        self.write(move |txn| {
            let (last, prev) = read_link(txn, HEAD)?
                .or(read_link(txn, PRUNED)?)
                .unwrap_or((0, [0; 32]));
            let seq = last + 1;
            let bytes = codec::encode(&entry);
            let hash = audit_hash(seq, &prev, &bytes);
            let mut value = Vec::with_capacity(64 + bytes.len());
            value.extend_from_slice(&hash);
            value.extend_from_slice(&prev);
            value.extend_from_slice(&bytes);
            txn.open_table(AUDIT)?.insert(seq, value.as_slice())?;
            txn.open_table(AUDIT_CHAIN)?
                .insert(HEAD, link_bytes(seq, &hash).as_slice())?;
            Ok((seq, hash))
        })
        .await
    }

    /// Audit records matching `filter`, newest first. Records that do not decode are passed
    /// over (`verify_audit` names them).
    pub fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        let rows = match filter.seq {
            Some(seq) => table.range(seq..=seq)?,
            None => table.range(0..)?,
        };
        for row in rows.rev() {
            if out.len() >= filter.limit {
                break;
            }
            let (key, value) = row?;
            let Some((hash, _, bytes)) = split(value.value()) else {
                continue;
            };
            let Ok(entry) = codec::decode::<AuditEntry>(bytes) else {
                continue;
            };
            // Records are appended in time order give or take the moments between deciding and
            // writing: well before `since`, nothing older can match.
            if filter
                .since_ms
                .is_some_and(|since| entry.time_ms < since.saturating_sub(60_000))
            {
                break;
            }
            if filter.matches(&entry) {
                out.push(AuditRecord {
                    seq: key.value(),
                    hash,
                    entry,
                });
            }
        }
        Ok(out)
    }

    /// Recomputes the chain from its first kept record to its head and says where it breaks:
    /// an edited record (its hash does not match), a removed one (a gap in the sequence, or a
    /// record that does not follow its predecessor), a cut end (the head is missing).
    pub fn verify_audit(&self) -> Result<AuditVerifyReport, StoreError> {
        let txn = self.read()?;
        let chain = txn.open_table(AUDIT_CHAIN)?;
        let read = |key: &str| -> Result<Option<(u64, [u8; 32])>, StoreError> {
            let value = chain.get(key)?;
            Ok(value.and_then(|v| link(v.value())))
        };
        let head = read(HEAD)?;
        let pruned = read(PRUNED)?;
        let table = txn.open_table(AUDIT)?;
        let mut report = AuditVerifyReport {
            records: 0,
            first_seq: None,
            last_seq: None,
            head_hash: None,
            pruned_before: pruned.map(|(seq, _)| seq + 1),
            broken: None,
        };
        let (mut expected_seq, mut prev) = match pruned {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, [0; 32]),
        };
        let broken = |seq: u64, reason: String| Some(AuditBreak { seq, reason });
        for row in table.iter()? {
            let (key, value) = row?;
            let seq = key.value();
            report.first_seq.get_or_insert(seq);
            if seq != expected_seq {
                report.broken = broken(
                    expected_seq,
                    if seq > expected_seq {
                        format!(
                            "record {expected_seq} is missing (the next one kept is {seq}): \
                             records were deleted"
                        )
                    } else {
                        format!("record {seq} is out of place")
                    },
                );
                return Ok(report);
            }
            let Some((hash, stored_prev, bytes)) = split(value.value()) else {
                report.broken = broken(seq, format!("record {seq} is cut short"));
                return Ok(report);
            };
            if stored_prev != prev {
                report.broken = broken(
                    seq,
                    format!(
                        "record {seq} does not follow record {}: the one before it was \
                         changed or replaced",
                        seq - 1
                    ),
                );
                return Ok(report);
            }
            if audit_hash(seq, &prev, bytes) != hash {
                report.broken = broken(
                    seq,
                    format!("record {seq} does not match its hash: it was edited"),
                );
                return Ok(report);
            }
            if codec::decode::<AuditEntry>(bytes).is_err() {
                report.broken = broken(seq, format!("record {seq} does not decode"));
                return Ok(report);
            }
            report.records += 1;
            report.last_seq = Some(seq);
            report.head_hash = Some(hex::encode(hash));
            prev = hash;
            expected_seq = seq + 1;
        }
        match head {
            Some((seq, hash)) if report.last_seq != Some(seq) || hash != prev => {
                report.broken = broken(
                    report.last_seq.map_or(seq, |last| last + 1),
                    format!(
                        "the log ends at record {} but its head is record {seq}: records \
                         were removed from the end",
                        report.last_seq.unwrap_or(0)
                    ),
                );
            }
            None if report.records > 0 => {
                report.broken = broken(
                    report.last_seq.unwrap_or(0),
                    "the log's head is missing".into(),
                );
            }
            _ => {}
        }
        Ok(report)
    }

    /// Removes records written before `before_ms`, and the oldest beyond `max_records`, from
    /// the old end, at most a batch, keeping the last removed one's hash as the chain's new
    /// start.
    pub async fn prune_audit(
        &self,
        before_ms: i64,
        max_records: u64,
    ) -> Result<Pruned, StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(AUDIT)?;
            let excess = table.len()?.saturating_sub(max_records);
            let mut old: Vec<(u64, [u8; 32])> = Vec::new();
            for row in table.iter()? {
                let (key, value) = row?;
                let Some((hash, _, bytes)) = split(value.value()) else {
                    break;
                };
                let Ok(entry) = codec::decode::<AuditEntry>(bytes) else {
                    break;
                };
                if old.len() >= BATCH || (entry.time_ms >= before_ms && old.len() as u64 >= excess)
                {
                    break;
                }
                old.push((key.value(), hash));
            }
            let Some(&(last_seq, last_hash)) = old.last() else {
                return Ok(Pruned::default());
            };
            for (seq, _) in &old {
                table.remove(*seq)?;
            }
            txn.open_table(AUDIT_CHAIN)?
                .insert(PRUNED, link_bytes(last_seq, &last_hash).as_slice())?;
            Ok(Pruned {
                records: old.len(),
                ..Default::default()
            })
        })
        .await
    }

    /// Records in the audit log.
    pub fn audit_len(&self) -> Result<u64, StoreError> {
        let txn = self.read()?;
        Ok(txn.open_table(AUDIT)?.len()?)
    }

    /// Test support: overwrites record `seq`'s entry bytes as stored (an attacker's edit).
    #[doc(hidden)]
    pub async fn tamper_audit(&self, seq: u64, edit: AuditTamper) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(AUDIT)?;
            match edit {
                AuditTamper::Delete => {
                    table.remove(seq)?;
                }
                AuditTamper::Replace(entry) => {
                    let old = table
                        .get(seq)?
                        .map(|v| v.value().to_vec())
                        .ok_or_else(|| StoreError::Database(format!("no audit record {seq}")))?;
                    let mut value = old[..64].to_vec();
                    value.extend_from_slice(&codec::encode(&entry));
                    table.insert(seq, value.as_slice())?;
                }
            }
            Ok(())
        })
        .await
    }
}

/// How [`Store::tamper_audit`] damages a record (tests of `audit verify`).
#[doc(hidden)]
#[derive(Debug, Clone)]
pub enum AuditTamper {
    /// Remove the record.
    Delete,
    /// Replace its entry, keeping its stored hashes.
    Replace(AuditEntry),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(time_ms: i64, action: &str) -> AuditEntry {
        AuditEntry {
            time_ms,
            user: "alice".into(),
            role: Some(tether_wire::admin::Role::Admin),
            action: action.into(),
            request: "LabelNode".into(),
            resource_kind: "node".into(),
            resource_id: Some("1234".into()),
            details: vec![("set".into(), "env=prod".into())],
            source_addr: Some("127.0.0.1:5000".into()),
            client_addr: None,
            user_agent: None,
            result: AuditResult::Ok,
            error: None,
        }
    }

    async fn store_with(n: i64) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        for i in 1..=n {
            store
                .append_audit(entry(i * 1000, "nodes.edit"))
                .await
                .unwrap();
        }
        (dir, store)
    }

    #[tokio::test]
    async fn a_whole_chain_verifies_and_queries_filter() {
        let (_dir, store) = store_with(5).await;
        let report = store.verify_audit().unwrap();
        assert_eq!(report.records, 5);
        assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(5)));
        assert!(report.broken.is_none(), "{report:?}");
        store
            .append_audit(entry(6000, "users.manage"))
            .await
            .unwrap();
        let users = store
            .audit(&AuditFilter {
                action: Some("users".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].seq, 6);
        let recent = store
            .audit(&AuditFilter {
                since_ms: Some(4000),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            recent.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![6, 5, 4]
        );
    }

    #[tokio::test]
    async fn an_edited_record_is_named() {
        let (_dir, store) = store_with(5).await;
        let mut forged = entry(3000, "nodes.edit");
        forged.user = "mallory".into();
        store
            .tamper_audit(3, AuditTamper::Replace(forged))
            .await
            .unwrap();
        let report = store.verify_audit().unwrap();
        let broken = report.broken.unwrap();
        assert_eq!(broken.seq, 3);
        assert!(broken.reason.contains("edited"), "{}", broken.reason);
        assert_eq!(report.records, 2);
    }

    #[tokio::test]
    async fn a_deleted_record_is_named_in_the_middle_and_at_the_end() {
        let (_dir, store) = store_with(5).await;
        store.tamper_audit(2, AuditTamper::Delete).await.unwrap();
        let broken = store.verify_audit().unwrap().broken.unwrap();
        assert_eq!(broken.seq, 2);
        assert!(broken.reason.contains("missing"), "{}", broken.reason);

        let (_dir, store) = store_with(5).await;
        store.tamper_audit(5, AuditTamper::Delete).await.unwrap();
        let broken = store.verify_audit().unwrap().broken.unwrap();
        assert_eq!(broken.seq, 5);
        assert!(broken.reason.contains("end"), "{}", broken.reason);
    }

    #[tokio::test]
    async fn pruning_keeps_the_chain_verifiable_from_its_new_start() {
        let (_dir, store) = store_with(6).await;
        let pruned = store.prune_audit(3500, u64::MAX).await.unwrap();
        assert_eq!(pruned.records, 3);
        let report = store.verify_audit().unwrap();
        assert!(report.broken.is_none(), "{report:?}");
        assert_eq!(report.first_seq, Some(4));
        assert_eq!(report.pruned_before, Some(4));
        // Appends go on from the head, and the first kept record must still follow the pruned.
        let (seq, _) = store.append_audit(entry(7000, "nodes.edit")).await.unwrap();
        assert_eq!(seq, 7);
        store.tamper_audit(4, AuditTamper::Delete).await.unwrap();
        let broken = store.verify_audit().unwrap().broken.unwrap();
        assert_eq!(broken.seq, 4);
        // Pruning everything still leaves a chain appends continue.
        let (_dir, store) = store_with(2).await;
        store.prune_audit(i64::MAX, u64::MAX).await.unwrap();
        let (seq, _) = store.append_audit(entry(9000, "nodes.edit")).await.unwrap();
        assert_eq!(seq, 3);
        assert!(store.verify_audit().unwrap().broken.is_none());
        // A count bound cuts the oldest beyond it, whatever their age.
        let (_dir, store) = store_with(5).await;
        store.prune_audit(0, 2).await.unwrap();
        let report = store.verify_audit().unwrap();
        assert_eq!((report.first_seq, report.records), (Some(4), 2));
        assert!(report.broken.is_none());
    }
}

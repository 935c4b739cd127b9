//! Enrollment: submitting an application (with its nonce) and deciding it, each atomic.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use tether_wire::admin::{ApplicationStatus, NodeStatus};
use tether_wire::{ApplicationId, NodeId};

use crate::records::{ApplicationRecord, NodeRecord, StatusEvent};
use crate::tables::*;
use crate::{Store, StoreError, codec};

/// A verified enrollment request, as core hands it to the store.
#[derive(Debug, Clone)]
pub struct NewApplication {
    /// The node's UUID.
    pub node_id: NodeId,
    /// Hostname.
    pub hostname: String,
    /// Public key, SPKI PEM.
    pub public_key_pem: String,
    /// SHA-256 of the key, hex.
    pub key_fingerprint: String,
    /// Agent version.
    pub agent_version: String,
    /// Where it came from.
    pub remote_addr: Option<String>,
    /// The request's nonce: recorded, and refused if already recorded.
    pub nonce: Vec<u8>,
    /// Forget the nonce after this time, unix seconds (when its timestamp leaves the window).
    pub nonce_expires_secs: u64,
    /// Now, unix ms.
    pub now_ms: i64,
    /// Refuse a new application when this many are pending.
    pub max_pending: u64,
    /// Approve at once with this agent secret (core's `auto_approve`).
    pub auto_approve_secret: Option<[u8; 32]>,
}

/// What became of a submitted application.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Submission {
    /// Waiting for an admin (new, or the same node asking again with the same key).
    Pending(ApplicationRecord),
    /// The node is approved (now, by auto-approval, or earlier); here is its secret to send.
    Approved {
        /// The node.
        node: NodeRecord,
        /// Its agent secret.
        secret: [u8; 32],
    },
    /// An admin rejected this node's application.
    Rejected(ApplicationRecord),
    /// The nonce was used before.
    ReplayedNonce,
    /// The node id is known with a different public key.
    KeyMismatch,
    /// The node was deleted.
    NodeRemoved,
    /// Too many applications are pending.
    TooManyPending {
        /// The limit.
        limit: u64,
    },
}

/// An admin's decision.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Approve, creating the node with this agent secret.
    Approve {
        /// Admin name.
        by: String,
        /// The node's new agent secret.
        secret: [u8; 32],
        /// Now, unix ms.
        now_ms: i64,
    },
    /// Reject.
    Reject {
        /// Admin name.
        by: String,
        /// Reason, kept and told to the node.
        reason: String,
        /// Now, unix ms.
        now_ms: i64,
    },
}

/// What became of a decision.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DecisionOutcome {
    /// Approved (now or before): the node and the secret to push to it.
    Approved {
        /// The application.
        application: ApplicationRecord,
        /// The node.
        node: NodeRecord,
        /// Its agent secret.
        secret: [u8; 32],
    },
    /// Rejected (now or before).
    Rejected(ApplicationRecord),
    /// No such application.
    NotFound,
    /// Already decided the other way.
    Conflict(ApplicationRecord),
}

fn load_app(txn: &WriteTransaction, id: u128) -> Result<Option<ApplicationRecord>, StoreError> {
    let table = txn.open_table(APPLICATIONS)?;
    let value = table.get(id)?;
    value.map(|v| codec::decode(v.value())).transpose()
}

pub(crate) fn load_node_w(
    txn: &WriteTransaction,
    id: u128,
) -> Result<Option<NodeRecord>, StoreError> {
    let table = txn.open_table(NODES)?;
    let value = table.get(id)?;
    value.map(|v| codec::decode(v.value())).transpose()
}

fn load_secret_w(txn: &WriteTransaction, id: u128) -> Result<Option<[u8; 32]>, StoreError> {
    let table = txn.open_table(SECRETS)?;
    let value = table.get(id)?;
    Ok(value.and_then(|v| v.value().try_into().ok()))
}

fn save_app(txn: &WriteTransaction, app: &ApplicationRecord) -> Result<(), StoreError> {
    let id = app.id.0.as_u128();
    txn.open_table(APPLICATIONS)?
        .insert(id, codec::encode(app).as_slice())?;
    let mut pending = txn.open_table(PENDING)?;
    if app.status == ApplicationStatus::Pending {
        pending.insert(id, ())?;
    } else {
        pending.remove(id)?;
    }
    if app.status == ApplicationStatus::Rejected {
        txn.open_table(REJECTED_BY_TIME)?
            .insert((crate::retention::rejected_at(app), id), ())?;
    }
    Ok(())
}

/// Writes a node record, keeping the hostname index in step.
pub(crate) fn save_node(txn: &WriteTransaction, node: &NodeRecord) -> Result<(), StoreError> {
    crate::writer::nodes_touched();
    let key = node.id.0.as_u128();
    let before: Option<String> = txn
        .open_table(NODES)?
        .insert(key, codec::encode(node).as_slice())?
        .map(|old| codec::decode::<NodeRecord>(old.value()).map(|old| old.hostname))
        .transpose()?;
    if before.as_deref() != Some(node.hostname.as_str()) {
        let mut index = txn.open_table(NODE_BY_HOSTNAME)?;
        if let Some(before) = before {
            index.remove((before.as_str(), key))?;
        }
        index.insert((node.hostname.as_str(), key), ())?;
    }
    Ok(())
}

pub(crate) fn log_status(txn: &WriteTransaction, event: &StatusEvent) -> Result<(), StoreError> {
    let mut log = txn.open_table(STATUS_LOG)?;
    // Several events in the same millisecond get increasing sequence numbers.
    let next = log
        .range((event.at_ms, 0)..=(event.at_ms, u64::MAX))?
        .next_back()
        .transpose()?
        .map_or(0, |(key, _)| key.value().1 + 1);
    log.insert((event.at_ms, next), codec::encode(event).as_slice())?;
    Ok(())
}

/// Approves `app` inside `txn`: node record, secret, application status, status log.
fn approve(
    txn: &WriteTransaction,
    app: &mut ApplicationRecord,
    by: &str,
    secret: [u8; 32],
    now_ms: i64,
) -> Result<NodeRecord, StoreError> {
    app.status = ApplicationStatus::Approved;
    app.decided_at_ms = Some(now_ms);
    app.decided_by = Some(by.to_string());
    save_app(txn, app)?;
    let node = NodeRecord {
        id: app.node_id,
        hostname: app.hostname.clone(),
        public_key_pem: app.public_key_pem.clone(),
        labels: Default::default(),
        maintenance: false,
        deleted: false,
        application_id: app.id,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
        connectivity: NodeStatus::Offline,
        connectivity_changed_ms: now_ms,
        public_addr: app.remote_addr.clone(),
        agent_version: app.agent_version.clone(),
        clock_skew_ms: None,
        deleted_at_ms: None,
    };
    save_node(txn, &node)?;
    txn.open_table(SECRETS)?
        .insert(node.id.0.as_u128(), secret.as_slice())?;
    log_status(
        txn,
        &StatusEvent {
            node_id: node.id,
            status: NodeStatus::Offline,
            reason: format!("approved by {by}"),
            at_ms: now_ms,
        },
    )?;
    Ok(node)
}

impl Store {
    /// Records a verified enrollment request atomically: the nonce is consumed, and the node gets
    /// at most one application — asking again with the same key returns the existing one (the
    /// seed's duplicate-entry bug cannot happen), asking with another key is refused.
    pub async fn submit_application(&self, new: NewApplication) -> Result<Submission, StoreError> {
        self.write(move |txn| {
            {
                let mut nonces = txn.open_table(NONCES)?;
                if nonces.get(new.nonce.as_slice())?.is_some() {
                    return Ok(Submission::ReplayedNonce);
                }
                nonces.insert(new.nonce.as_slice(), new.nonce_expires_secs)?;
                txn.open_table(NONCE_EXPIRY)?
                    .insert((new.nonce_expires_secs, new.nonce.as_slice()), ())?;
            }
            let node_key = new.node_id.0.as_u128();
            if let Some(node) = load_node_w(txn, node_key)? {
                if node.deleted {
                    return Ok(Submission::NodeRemoved);
                }
                if node.public_key_pem != new.public_key_pem {
                    return Ok(Submission::KeyMismatch);
                }
                // Approved earlier and the node lost its secret file: the same key proves the same
                // node, and only that key can unwrap the secret.
                return match load_secret_w(txn, node_key)? {
                    Some(secret) => Ok(Submission::Approved { node, secret }),
                    None => Ok(Submission::NodeRemoved),
                };
            }
            let existing = txn
                .open_table(APPLICATION_BY_NODE)?
                .get(node_key)?
                .map(|v| v.value());
            if let Some(app_id) = existing
                && let Some(app) = load_app(txn, app_id)?
            {
                if app.public_key_pem != new.public_key_pem {
                    return Ok(Submission::KeyMismatch);
                }
                return Ok(match app.status {
                    ApplicationStatus::Pending => Submission::Pending(app),
                    ApplicationStatus::Rejected => Submission::Rejected(app),
                    // Approved always has a node record, handled above.
                    ApplicationStatus::Approved => Submission::KeyMismatch,
                });
            }
            if new.auto_approve_secret.is_none()
                && txn.open_table(PENDING)?.len()? >= new.max_pending
            {
                return Ok(Submission::TooManyPending {
                    limit: new.max_pending,
                });
            }
            let mut app = ApplicationRecord {
                id: ApplicationId::random(),
                node_id: new.node_id,
                hostname: new.hostname,
                public_key_pem: new.public_key_pem,
                key_fingerprint: new.key_fingerprint,
                agent_version: new.agent_version,
                status: ApplicationStatus::Pending,
                created_at_ms: new.now_ms,
                decided_at_ms: None,
                decided_by: None,
                reason: None,
                remote_addr: new.remote_addr,
            };
            txn.open_table(APPLICATION_BY_NODE)?
                .insert(node_key, app.id.0.as_u128())?;
            if let Some(secret) = new.auto_approve_secret {
                let node = approve(txn, &mut app, "auto-approve", secret, new.now_ms)?;
                return Ok(Submission::Approved { node, secret });
            }
            save_app(txn, &app)?;
            Ok(Submission::Pending(app))
        })
        .await
    }

    /// Approves or rejects an application. Deciding again the same way is harmless and returns
    /// the same outcome; deciding the other way is a conflict.
    pub async fn decide_application(
        &self,
        id: ApplicationId,
        decision: Decision,
    ) -> Result<DecisionOutcome, StoreError> {
        self.write(move |txn| {
            let Some(mut app) = load_app(txn, id.0.as_u128())? else {
                return Ok(DecisionOutcome::NotFound);
            };
            match (&decision, app.status) {
                (Decision::Approve { by, secret, now_ms }, ApplicationStatus::Pending) => {
                    let node = approve(txn, &mut app, by, *secret, *now_ms)?;
                    Ok(DecisionOutcome::Approved {
                        application: app,
                        node,
                        secret: *secret,
                    })
                }
                (Decision::Approve { .. }, ApplicationStatus::Approved) => {
                    let key = app.node_id.0.as_u128();
                    match (load_node_w(txn, key)?, load_secret_w(txn, key)?) {
                        (Some(node), Some(secret)) if !node.deleted => {
                            Ok(DecisionOutcome::Approved {
                                application: app,
                                node,
                                secret,
                            })
                        }
                        _ => Ok(DecisionOutcome::Conflict(app)),
                    }
                }
                (Decision::Reject { by, reason, now_ms }, ApplicationStatus::Pending) => {
                    app.status = ApplicationStatus::Rejected;
                    app.decided_at_ms = Some(*now_ms);
                    app.decided_by = Some(by.clone());
                    app.reason = Some(reason.clone());
                    save_app(txn, &app)?;
                    Ok(DecisionOutcome::Rejected(app))
                }
                (Decision::Reject { .. }, ApplicationStatus::Rejected) => {
                    Ok(DecisionOutcome::Rejected(app))
                }
                _ => Ok(DecisionOutcome::Conflict(app)),
            }
        })
        .await
    }

    /// Forgets nonces whose timestamps have left the acceptance window; returns how many.
    pub async fn expire_nonces(&self, now_secs: u64) -> Result<usize, StoreError> {
        self.write(move |txn| {
            let mut index = txn.open_table(NONCE_EXPIRY)?;
            let mut nonces = txn.open_table(NONCES)?;
            let expired: Vec<(u64, Vec<u8>)> = index
                .range(..(now_secs, &[][..]))?
                .map(|entry| entry.map(|(key, _)| (key.value().0, key.value().1.to_vec())))
                .collect::<Result<_, _>>()?;
            for (expiry, nonce) in &expired {
                index.remove((*expiry, nonce.as_slice()))?;
                nonces.remove(nonce.as_slice())?;
            }
            Ok(expired.len())
        })
        .await
    }

    /// Whether a nonce is currently recorded.
    pub fn nonce_known(&self, nonce: &[u8]) -> Result<bool, StoreError> {
        let txn = self.read()?;
        Ok(txn.open_table(NONCES)?.get(nonce)?.is_some())
    }

    /// Applications, newest first, optionally only those in `status`.
    pub fn applications(
        &self,
        status: Option<ApplicationStatus>,
    ) -> Result<Vec<ApplicationRecord>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(APPLICATIONS)?;
        let mut apps = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            let app: ApplicationRecord = codec::decode(value.value())?;
            if status.is_none_or(|s| s == app.status) {
                apps.push(app);
            }
        }
        apps.sort_by_key(|a| std::cmp::Reverse(a.created_at_ms));
        Ok(apps)
    }

    /// One application.
    pub fn application(&self, id: ApplicationId) -> Result<Option<ApplicationRecord>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(APPLICATIONS)?;
        let value = table.get(id.0.as_u128())?;
        value.map(|v| codec::decode(v.value())).transpose()
    }

    /// Applications waiting for a decision.
    pub fn pending_count(&self) -> Result<u64, StoreError> {
        let txn = self.read()?;
        Ok(txn.open_table(PENDING)?.len()?)
    }
}

//! Deploys of agent releases (seed 002's `update_records`): each deploy with its counts by
//! state, each node's record under it, and which deploy a node is in while its update has
//! not ended (one at a time). Counts change in the transaction that changes a node, so a
//! listing never walks a deploy's nodes.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use tether_wire::NodeId;
use tether_wire::deploys::{
    DEPLOYS_KEPT, Deploy, DeployCounts, DeployKind, DeploySpec, DeployState, DeployView, NodeUpdate,
};

use crate::codec::{self, Stored};
use crate::tables::{DEPLOY_NODES, DEPLOYS, DEPLOYS_NEXT_ID, META, NODE_DEPLOY};
use crate::{Store, StoreError};

impl Stored for DeployView {}
impl Stored for NodeUpdate {}

/// Why a deploy was not created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeployRefusal {
    /// A node is in a deploy that has not ended for it.
    #[error(
        "node {hostname} ({node}) is in deploy {deploy}, which has not finished with it; \
         wait for it, or cancel that deploy"
    )]
    Busy {
        /// The node.
        node: NodeId,
        /// Its hostname.
        hostname: String,
        /// The deploy it is in.
        deploy: u64,
    },
    /// No such deploy.
    #[error("no deploy {0}")]
    NotFound(u64),
}

fn load(txn: &WriteTransaction, id: u64) -> Result<Option<DeployView>, StoreError> {
    txn.open_table(DEPLOYS)?
        .get(id)?
        .map(|v| codec::decode::<DeployView>(v.value()))
        .transpose()
}

fn save(txn: &WriteTransaction, view: &DeployView) -> Result<(), StoreError> {
    txn.open_table(DEPLOYS)?
        .insert(view.deploy.id, codec::encode(view).as_slice())?;
    Ok(())
}

/// Deletes the oldest ended deploys past [`DEPLOYS_KEPT`], with their nodes' records.
fn prune(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut deploys = txn.open_table(DEPLOYS)?;
    let mut excess = deploys.len()?.saturating_sub(DEPLOYS_KEPT as u64);
    let mut gone = Vec::new();
    for entry in deploys.iter()? {
        if excess == 0 {
            break;
        }
        let (id, value) = entry?;
        if codec::decode::<DeployView>(value.value())?
            .deploy
            .state
            .ended()
        {
            gone.push(id.value());
            excess -= 1;
        }
    }
    let mut nodes = txn.open_table(DEPLOY_NODES)?;
    for id in gone {
        deploys.remove(id)?;
        nodes
            .extract_from_if((id, 0)..=(id, u128::MAX), |_, _| true)?
            .for_each(drop);
    }
    Ok(())
}

impl Store {
    /// Creates a deploy of `nodes` (their records as they start: pending, or already ended
    /// when skipped). Refused if one of the nodes not ended is in another deploy.
    pub async fn create_deploy(
        &self,
        spec: DeploySpec,
        kind: DeployKind,
        by: String,
        now_ms: i64,
        waves: u32,
        nodes: Vec<NodeUpdate>,
    ) -> Result<Result<DeployView, DeployRefusal>, StoreError> {
        self.write(move |txn| {
            let mut node_deploy = txn.open_table(NODE_DEPLOY)?;
            for update in nodes.iter().filter(|u| !u.state.ended()) {
                if let Some(deploy) = node_deploy.get(update.node.0.as_u128())? {
                    return Ok(Err(DeployRefusal::Busy {
                        node: update.node,
                        hostname: update.hostname.clone(),
                        deploy: deploy.value(),
                    }));
                }
            }
            let mut meta = txn.open_table(META)?;
            let id = meta.get(DEPLOYS_NEXT_ID)?.map_or(1, |v| v.value());
            meta.insert(DEPLOYS_NEXT_ID, id + 1)?;
            let mut counts = DeployCounts::default();
            let mut table = txn.open_table(DEPLOY_NODES)?;
            for update in &nodes {
                counts.add(update.state);
                table.insert(
                    (id, update.node.0.as_u128()),
                    codec::encode(update).as_slice(),
                )?;
                if !update.state.ended() {
                    node_deploy.insert(update.node.0.as_u128(), id)?;
                }
            }
            let all_ended = counts.total() == counts.skipped + counts.success;
            let view = DeployView {
                deploy: Deploy {
                    id,
                    spec,
                    kind,
                    state: if all_ended {
                        DeployState::Done
                    } else {
                        DeployState::Running
                    },
                    reason: None,
                    created_by: by,
                    created_at_ms: now_ms,
                    finished_at_ms: all_ended.then_some(now_ms),
                    waves,
                    wave: 0,
                    accepted_failures: 0,
                },
                counts,
            };
            drop((table, node_deploy, meta));
            save(txn, &view)?;
            prune(txn)?;
            Ok(Ok(view))
        })
        .await
    }

    /// Changes deploy `id` (its state, wave, reason) with `change`, which sees it as stored.
    pub async fn update_deploy(
        &self,
        id: u64,
        change: impl FnOnce(&mut Deploy) + Send + 'static,
    ) -> Result<Result<DeployView, DeployRefusal>, StoreError> {
        self.write(move |txn| {
            let Some(mut view) = load(txn, id)? else {
                return Ok(Err(DeployRefusal::NotFound(id)));
            };
            change(&mut view.deploy);
            save(txn, &view)?;
            Ok(Ok(view))
        })
        .await
    }

    /// Writes node records of deploy `id`, keeping its counts and the index of nodes whose
    /// update has not ended. A record whose node is not in the deploy is ignored, and so is one
    /// that would change the state of a node that has ended (success, failed, ...): ends are
    /// final. Answers the deploy as it is then.
    pub async fn save_node_updates(
        &self,
        id: u64,
        updates: Vec<NodeUpdate>,
    ) -> Result<Option<DeployView>, StoreError> {
        self.write(move |txn| {
            let Some(mut view) = load(txn, id)? else {
                return Ok(None);
            };
            {
                let mut table = txn.open_table(DEPLOY_NODES)?;
                let mut node_deploy = txn.open_table(NODE_DEPLOY)?;
                for update in updates {
                    let key = (id, update.node.0.as_u128());
                    let before = match table.get(key)? {
                        Some(v) => codec::decode::<NodeUpdate>(v.value())?,
                        None => continue,
                    };
                    // An end is final: a late report (the old connection's, read after the new
                    // one authenticated) never turns it back. Only its reason may be refined.
                    if before.state.ended() && update.state != before.state {
                        continue;
                    }
                    let mut counts = view.counts;
                    remove_count(&mut counts, before.state);
                    counts.add(update.state);
                    view.counts = counts;
                    if update.state.ended() {
                        let here = node_deploy.get(key.1)?.map(|v| v.value());
                        if here == Some(id) {
                            node_deploy.remove(key.1)?;
                        }
                    }
                    table.insert(key, codec::encode(&update).as_slice())?;
                }
            }
            save(txn, &view)?;
            Ok(Some(view))
        })
        .await
    }

    /// Deploy `id`.
    pub fn deploy(&self, id: u64) -> Result<Option<DeployView>, StoreError> {
        let txn = self.read()?;
        txn.open_table(DEPLOYS)?
            .get(id)?
            .map(|v| codec::decode::<DeployView>(v.value()))
            .transpose()
    }

    /// Deploys, newest first, at most `limit`.
    pub fn deploys(&self, limit: usize) -> Result<Vec<DeployView>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(DEPLOYS)?;
        let mut out = Vec::new();
        for entry in table.iter()?.rev().take(limit) {
            out.push(codec::decode::<DeployView>(entry?.1.value())?);
        }
        Ok(out)
    }

    /// Deploys that have not ended (running, paused, halted), oldest first.
    pub fn open_deploys(&self) -> Result<Vec<DeployView>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(DEPLOYS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let view = codec::decode::<DeployView>(entry?.1.value())?;
            if !view.deploy.state.ended() {
                out.push(view);
            }
        }
        Ok(out)
    }

    /// Every node record of deploy `id`, by node id.
    pub fn deploy_nodes(&self, id: u64) -> Result<Vec<NodeUpdate>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(DEPLOY_NODES)?;
        let mut out = Vec::new();
        for entry in table.range((id, 0)..=(id, u128::MAX))? {
            out.push(codec::decode::<NodeUpdate>(entry?.1.value())?);
        }
        Ok(out)
    }

    /// The deploy node `node` is in while its update there has not ended, with its record.
    pub fn node_update(&self, node: NodeId) -> Result<Option<(u64, NodeUpdate)>, StoreError> {
        let txn = self.read()?;
        let Some(id) = txn
            .open_table(NODE_DEPLOY)?
            .get(node.0.as_u128())?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        Ok(txn
            .open_table(DEPLOY_NODES)?
            .get((id, node.0.as_u128()))?
            .map(|v| codec::decode::<NodeUpdate>(v.value()))
            .transpose()?
            .map(|update| (id, update)))
    }
}

fn remove_count(counts: &mut DeployCounts, state: tether_wire::deploys::UpdateState) {
    use tether_wire::deploys::UpdateState as S;
    let slot = match state {
        S::Pending => &mut counts.pending,
        S::Downloading | S::Verifying | S::Installing => &mut counts.active,
        S::Success => &mut counts.success,
        S::Failed => &mut counts.failed,
        S::Rollback => &mut counts.rollback,
        S::Skipped => &mut counts.skipped,
        S::Cancelled => &mut counts.cancelled,
    };
    *slot = slot.saturating_sub(1);
}

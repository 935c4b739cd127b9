//! Deploys: one driver task per deploy that has not ended, which sends update orders wave by
//! wave, halts past the failure threshold, pauses between batches, and ends when every node
//! has. Nodes tell how their update goes on their control stream (`on_status`); a node that
//! authenticates with the version it was to run has succeeded (`on_authenticated`), one that
//! comes back with the old version was put back by its watchdog. Progress in bytes is kept in
//! memory only; every change of state is written to the store, so a restarted core picks each
//! deploy up where it was (orders are sent again; nodes resume their downloads).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tether_wire::NodeId;
use tether_wire::control::CoreMessage;
use tether_wire::deploys::{
    DeployKind, DeployState, DeployView, NodeUpdate, OfflinePolicy, RollbackOrder, Strategy,
    UpdateOrder, UpdateState, UpdateStatus,
};
use tokio::sync::Notify;
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::presence::SessionCommand;
use crate::server::Shared;

/// How long a node may stay `installing` past its watchdog's deadline before it is failed
/// (it never came back, with either version).
const INSTALL_GRACE: Duration = Duration::from_secs(120);
/// The longest a driver sleeps without looking again.
const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// Deploys under way.
#[derive(Debug)]
pub(crate) struct Deploys {
    /// Wake-up calls of the drivers running, by deploy.
    drivers: Mutex<HashMap<u64, Arc<Notify>>>,
    /// Orders sent on a node's current connection, by deploy (sent again after a reconnect).
    sent: Mutex<HashSet<(u64, NodeId)>>,
    /// What is known of each node's update between the records the store keeps, until it ends.
    live: Mutex<HashMap<NodeId, Live>>,
    /// Release files being sent at once (`max_downloads`).
    pub(crate) downloads: Arc<tokio::sync::Semaphore>,
}

impl Deploys {
    /// With room for `max_downloads` downloads at once.
    pub(crate) fn new(max_downloads: usize) -> Self {
        Self {
            drivers: Mutex::default(),
            sent: Mutex::default(),
            live: Mutex::default(),
            downloads: Arc::new(tokio::sync::Semaphore::new(max_downloads)),
        }
    }

    /// Whether any deploy is under way (so that a node's authentication costs nothing more
    /// otherwise).
    pub(crate) fn any(&self) -> bool {
        !self.drivers.lock().expect("not poisoned").is_empty()
    }

    /// Wakes deploy `id`'s driver.
    pub(crate) fn wake(&self, id: u64) {
        if let Some(notify) = self.drivers.lock().expect("not poisoned").get(&id) {
            notify.notify_one();
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Live>> {
        self.live.lock().expect("not poisoned")
    }

    /// A node's update ended: what was known of it live goes.
    fn forget_live(&self, node: NodeId) {
        self.live().remove(&node);
    }

    /// Whether `node`, installing, has been so for longer than `grace_ms` (its clock starts now
    /// if this core had not seen it installing).
    fn installing_longer_than(&self, node: NodeId, now_ms: i64, grace_ms: i64) -> bool {
        let mut live = self.live();
        let since = live
            .entry(node)
            .or_default()
            .installing_since_ms
            .get_or_insert(now_ms);
        now_ms - *since > grace_ms
    }

    /// The bytes each downloading node has fetched, newer than its record's.
    pub(crate) fn show_progress(&self, nodes: &mut [NodeUpdate]) {
        let live = self.live();
        for update in nodes {
            if update.state == UpdateState::Downloading
                && let Some(now) = live.get(&update.node)
            {
                update.bytes = update.bytes.max(now.bytes);
            }
        }
    }

    fn forget_sent(&self, node: NodeId) {
        self.sent
            .lock()
            .expect("not poisoned")
            .retain(|(_, n)| *n != node);
    }
}

/// What core knows of a node's update between the records the store keeps.
#[derive(Debug, Default)]
struct Live {
    /// Bytes fetched, while it downloads (every report; the record keeps the state's first).
    bytes: u64,
    /// When it reported `installing` (unix ms), or when this core first saw it installing
    /// (after a restart): the install deadline runs from there, not from the node's start,
    /// which may have waited long for a download place.
    installing_since_ms: Option<i64>,
}

/// Starts the driver of deploy `id` unless it runs.
pub(crate) fn start_driver(shared: &Arc<Shared>, id: u64) {
    let notify = {
        let mut drivers = shared.deploys.drivers.lock().expect("not poisoned");
        if drivers.contains_key(&id) {
            return;
        }
        let notify = Arc::new(Notify::new());
        drivers.insert(id, notify.clone());
        notify
    };
    let shared = shared.clone();
    tokio::spawn(
        async move {
            drive(&shared, id, &notify).await;
            shared
                .deploys
                .drivers
                .lock()
                .expect("not poisoned")
                .remove(&id);
        }
        .instrument(info_span!("deploy", deploy = id)),
    );
}

/// Whether a deploy needs its driver: it has not ended, or it was cancelled with nodes still
/// fetching or installing, whose ends (a success when the node authenticates, the install
/// deadline) are still to be recorded.
fn needs_driver(view: &DeployView) -> bool {
    !view.deploy.state.ended() || view.counts.active > 0
}

/// At start-up: drivers for every deploy that needs one.
pub(crate) fn resume_all(shared: &Arc<Shared>) {
    match shared.store.deploys(tether_wire::deploys::DEPLOYS_KEPT) {
        Ok(all) => {
            for view in all.iter().filter(|v| needs_driver(v)) {
                start_driver(shared, view.deploy.id);
            }
        }
        Err(e) => warn!(error = %e, "reading deploys failed; they resume at the next change"),
    }
}

async fn drive(shared: &Arc<Shared>, id: u64, notify: &Notify) {
    // When the next wave may start (after a pause or a canary wait).
    let mut next_wave_at: Option<tokio::time::Instant> = None;
    loop {
        if shared.shutdown.is_cancelled() {
            return;
        }
        let view = match shared.store.deploy(id) {
            Ok(Some(view)) => view,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "reading the deploy failed");
                tokio::time::sleep(LOOK_AGAIN).await;
                continue;
            }
        };
        if !needs_driver(&view) {
            return;
        }
        let wait = match step(shared, &view, &mut next_wave_at).await {
            Ok(wait) => wait,
            Err(e) => {
                warn!(error = %e, "a deploy step failed");
                LOOK_AGAIN
            }
        };
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shared.shutdown.cancelled() => return,
        }
    }
}

/// One look at a deploy: halt, send orders, time out installs, move to the next wave, or end.
/// Answers how long to sleep at most.
async fn step(
    shared: &Arc<Shared>,
    view: &DeployView,
    next_wave_at: &mut Option<tokio::time::Instant>,
) -> Result<Duration, tether_store::StoreError> {
    let deploy = &view.deploy;
    let id = deploy.id;
    let nodes = shared.store.deploy_nodes(id)?;
    let total = nodes.len();
    let now_ms = shared.now_ms();

    // Installs that never came back, either way, counted from when each began installing.
    let grace =
        i64::try_from((Duration::from_millis(deploy.spec.watchdog_ms) + INSTALL_GRACE).as_millis())
            .unwrap_or(i64::MAX);
    let lost: Vec<NodeUpdate> = nodes
        .iter()
        .filter(|u| {
            u.state == UpdateState::Installing
                && shared.deploys.installing_longer_than(u.node, now_ms, grace)
        })
        .map(|u| NodeUpdate {
            state: UpdateState::Failed,
            error: Some(format!(
                "the node did not come back within {} s of installing, with either version",
                grace / 1000
            )),
            finished_at_ms: Some(now_ms),
            ..u.clone()
        })
        .collect();
    if !lost.is_empty() {
        for update in &lost {
            shared.deploys.forget_live(update.node);
        }
        shared.store.save_node_updates(id, lost).await?;
        return Ok(Duration::ZERO);
    }

    if deploy.state != DeployState::Running {
        return Ok(LOOK_AGAIN * 5);
    }

    // Too many failures: halt. A canary's failure halts whatever the threshold.
    let allowed = deploy.spec.max_failures.map_or(0, |a| a.of(total));
    let failures: Vec<&NodeUpdate> = nodes.iter().filter(|u| u.state.is_failure()).collect();
    let accepted = deploy.accepted_failures as usize;
    let canary_failed = deploy.spec.strategy == Strategy::Canary
        && accepted == 0
        && failures.iter().any(|u| u.wave == 0);
    if failures.len().saturating_sub(accepted) > allowed || canary_failed {
        let first = failures
            .iter()
            .take(3)
            .map(|u| {
                format!(
                    "{}: {}",
                    u.hostname,
                    u.error.as_deref().unwrap_or(u.state.as_str())
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let reason = if canary_failed {
            format!("a canary failed ({first})")
        } else {
            let n = failures.len() - accepted;
            format!(
                "{n} {}, more than the {allowed} allowed ({first})",
                if n == 1 { "failure" } else { "failures" }
            )
        };
        warn!(%reason, "deploy halted");
        shared
            .store
            .update_deploy(id, move |d| {
                if d.state == DeployState::Running {
                    d.state = DeployState::Halted;
                    d.reason = Some(reason);
                }
            })
            .await?
            .ok();
        return Ok(LOOK_AGAIN);
    }

    // Orders for the nodes whose turn has come.
    let mut skipped = Vec::new();
    for update in nodes.iter().filter(|u| {
        // Fetching or checking on a connection that went: ordered again on the new one,
        // where the download resumes.
        u.wave <= deploy.wave
            && matches!(
                u.state,
                UpdateState::Pending | UpdateState::Downloading | UpdateState::Verifying
            )
    }) {
        match shared.presence.get(update.node) {
            Some(session) => {
                let first = shared
                    .deploys
                    .sent
                    .lock()
                    .expect("not poisoned")
                    .insert((id, update.node));
                if first {
                    let order = match order(shared, view, update) {
                        Ok(order) => order,
                        Err(why) => {
                            skipped.push(NodeUpdate {
                                state: UpdateState::Failed,
                                error: Some(why),
                                finished_at_ms: Some(now_ms),
                                ..update.clone()
                            });
                            continue;
                        }
                    };
                    if session
                        .commands
                        .send(SessionCommand::Send(Box::new(order)))
                        .await
                        .is_err()
                    {
                        shared.deploys.forget_sent(update.node);
                    }
                }
            }
            None if update.state == UpdateState::Pending
                && deploy.spec.offline == OfflinePolicy::Skip =>
            {
                skipped.push(NodeUpdate {
                    state: UpdateState::Skipped,
                    error: Some("offline when its turn came".into()),
                    finished_at_ms: Some(now_ms),
                    ..update.clone()
                });
            }
            None => {}
        }
    }
    if !skipped.is_empty() {
        shared.store.save_node_updates(id, skipped).await?;
        return Ok(Duration::ZERO);
    }

    // Is the wave done? Offline nodes waiting for their return do not hold it up.
    let waiting =
        |u: &&NodeUpdate| u.state == UpdateState::Pending && shared.presence.get(u.node).is_none();
    let wave_done = nodes
        .iter()
        .filter(|u| u.wave <= deploy.wave)
        .all(|u| u.state.ended() || waiting(&u));
    if !wave_done {
        return Ok(LOOK_AGAIN);
    }
    if deploy.wave + 1 < deploy.waves {
        let pause = if deploy.spec.strategy == Strategy::Canary && deploy.wave == 0 {
            deploy.spec.canary_wait_ms
        } else {
            deploy.spec.pause_ms
        };
        let at = *next_wave_at
            .get_or_insert_with(|| tokio::time::Instant::now() + Duration::from_millis(pause));
        let now = tokio::time::Instant::now();
        if now < at {
            return Ok((at - now).min(LOOK_AGAIN * 5));
        }
        *next_wave_at = None;
        let wave = deploy.wave + 1;
        info!(wave, of = deploy.waves, "next wave");
        shared
            .store
            .update_deploy(id, move |d| {
                if d.wave + 1 == wave {
                    d.wave = wave;
                }
            })
            .await?
            .ok();
        return Ok(Duration::ZERO);
    }
    if nodes.iter().all(|u| u.state.ended()) {
        info!(
            success = view.counts.success,
            failed = view.counts.failures(),
            "deploy done"
        );
        shared
            .store
            .update_deploy(id, move |d| {
                if d.state == DeployState::Running {
                    d.state = DeployState::Done;
                    d.finished_at_ms = Some(now_ms);
                }
            })
            .await?
            .ok();
        return Ok(Duration::ZERO);
    }
    Ok(LOOK_AGAIN * 5)
}

/// The order for `update`: the release for its platform, or its kept agent for a rollback.
/// An error when there is no build for the node's platform (it changed since the deploy
/// started).
fn order(shared: &Shared, view: &DeployView, update: &NodeUpdate) -> Result<CoreMessage, String> {
    let watchdog_ms = view.deploy.spec.watchdog_ms;
    match view.deploy.kind {
        DeployKind::Rollback { .. } => Ok(CoreMessage::Rollback(RollbackOrder {
            deploy: view.deploy.id,
            to_version: update.to_version.clone(),
            watchdog_ms,
        })),
        DeployKind::Update => {
            let arch = shared
                .store
                .node(update.node)
                .ok()
                .flatten()
                .and_then(|n| n.facts)
                .map(|f| f.arch)
                .unwrap_or_default();
            shared
                .store
                .release_for(&update.to_version, "linux", &arch)
                .ok()
                .flatten()
                .map(|r| {
                    CoreMessage::Update(UpdateOrder {
                        deploy: view.deploy.id,
                        manifest: r.manifest,
                        watchdog_ms,
                    })
                })
                .ok_or_else(|| format!("no build of {} for linux/{arch}", update.to_version))
        }
    }
}

/// A node authenticated with `version`: the end of its update if it runs the version it was
/// to run (success) or the one it ran (its watchdog put it back); otherwise its order is sent
/// again by the driver (a reconnect mid-download resumes it).
pub(crate) async fn on_authenticated(shared: &Arc<Shared>, node: NodeId, version: &str) {
    if !shared.deploys.any() {
        return;
    }
    shared.deploys.forget_sent(node);
    let Ok(Some((id, update))) = shared.store.node_update(node) else {
        return;
    };
    let now_ms = shared.now_ms();
    // Running the version it is to run: done, however it got there.
    let ended = if version == update.to_version {
        info!(deploy = id, %version, "node updated");
        Some(NodeUpdate {
            state: UpdateState::Success,
            error: None,
            finished_at_ms: Some(now_ms),
            ..update
        })
    } else if update.state == UpdateState::Installing && version == update.from_version {
        Some(NodeUpdate {
            state: UpdateState::Rollback,
            error: Some(format!(
                "the node came back running {version}: its watchdog put the old agent back"
            )),
            finished_at_ms: Some(now_ms),
            ..update
        })
    } else {
        None
    };
    if let Some(ended) = ended {
        shared.deploys.forget_live(node);
        if let Err(e) = shared.store.save_node_updates(id, vec![ended]).await {
            warn!(error = %e, "recording an update's end failed");
        }
    }
    shared.deploys.wake(id);
}

/// A node's report on its update.
pub(crate) async fn on_status(shared: &Arc<Shared>, node: NodeId, status: UpdateStatus) {
    let Ok(Some((id, update))) = shared.store.node_update(node) else {
        // Ended already: a rollback's reason may still refine the record.
        if status.state == UpdateState::Rollback {
            refine_rollback(shared, node, status).await;
        }
        return;
    };
    if id != status.deploy {
        debug!(
            deploy = status.deploy,
            current = id,
            "a report for another deploy"
        );
        return;
    }
    if status.state == UpdateState::Downloading {
        shared.deploys.live().entry(node).or_default().bytes = status.bytes;
    }
    // Success is core's to say, when the new agent authenticates.
    if status.state == update.state || status.state == UpdateState::Success {
        return;
    }
    let now_ms = shared.now_ms();
    let ended = status.state.ended();
    let next = NodeUpdate {
        state: status.state,
        bytes: status.bytes.max(update.bytes),
        error: status.error.clone(),
        started_at_ms: update.started_at_ms.or(Some(now_ms)),
        finished_at_ms: ended.then_some(now_ms),
        ..update
    };
    if status.state == UpdateState::Installing {
        shared
            .deploys
            .live()
            .entry(node)
            .or_default()
            .installing_since_ms = Some(now_ms);
    }
    if ended {
        shared.deploys.forget_live(node);
        warn!(deploy = id, state = %status.state, error = ?status.error, "update ended on the node");
    }
    if let Err(e) = shared.store.save_node_updates(id, vec![next]).await {
        warn!(error = %e, "recording an update's progress failed");
    }
    shared.deploys.wake(id);
}

/// The old agent's own account of a rollback, after core recorded it from the version.
async fn refine_rollback(shared: &Arc<Shared>, node: NodeId, status: UpdateStatus) {
    let Ok(nodes) = shared.store.deploy_nodes(status.deploy) else {
        return;
    };
    if let Some(update) = nodes.into_iter().find(|u| u.node == node)
        && update.state == UpdateState::Rollback
        && status.error.is_some()
    {
        let refined = NodeUpdate {
            error: status.error,
            ..update
        };
        let _ = shared
            .store
            .save_node_updates(status.deploy, vec![refined])
            .await;
    }
}

//! Deploys (`tether release deploy|status|pause|resume|cancel|rollback`): which nodes get
//! which build in which wave, decided when the deploy starts; the driver is
//! `crate::releases::deploy`.

use std::collections::HashMap;
use std::sync::Arc;

use tether_store::DeployRefusal;
use tether_wire::ErrorCode;
use tether_wire::admin::AdminResponse;
use tether_wire::deploys::{
    Amount, DeployAction, DeployKind, DeploySpec, DeployState, DeployView, NodeUpdate,
    OfflinePolicy, Strategy, UpdateState,
};

use super::{Refusal, Reply, internal, invalid};
use crate::auth::Caller;
use crate::exec::{Selection, select_nodes};
use crate::releases::deploy::start_driver;
use crate::server::Shared;

/// Node records per `DeployNodes` frame.
const NODES_PER_FRAME: usize = 2_000;
/// Deploys `release status` lists at most.
const LIST_MAX: u32 = 500;

fn refused(refusal: DeployRefusal) -> Refusal {
    let code = match refusal {
        DeployRefusal::NotFound(_) => ErrorCode::NOT_FOUND,
        DeployRefusal::Busy { .. } => ErrorCode::CONFLICT,
        _ => ErrorCode::INVALID_ARGUMENT,
    };
    (code, refusal.to_string())
}

/// Splits `count` pending nodes into waves: the canaries (if any), then batches.
fn waves(spec: &DeploySpec, count: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(count);
    let mut wave = 0u32;
    let mut rest = count;
    if spec.strategy == Strategy::Canary {
        let canaries = spec
            .canary
            .unwrap_or(Amount::Count(1))
            .of(count)
            .max(1)
            .min(count);
        out.extend(std::iter::repeat_n(0, canaries));
        rest -= canaries;
        wave = 1;
    }
    let batch = match spec.strategy {
        Strategy::All => count.max(1),
        Strategy::Rolling => spec.batch.unwrap_or(Amount::Percent(10)).of(count).max(1),
        Strategy::Canary => spec.batch.map_or(rest.max(1), |b| b.of(count).max(1)),
    };
    while rest > 0 {
        let n = batch.min(rest);
        out.extend(std::iter::repeat_n(wave, n));
        rest -= n;
        wave += 1;
    }
    out
}

/// `ReleaseDeploy`.
pub(crate) async fn deploy(shared: &Arc<Shared>, caller: &Caller, spec: DeploySpec) -> Reply {
    spec.check().map_err(invalid)?;
    let builds = shared.store.releases_of(&spec.version).map_err(internal)?;
    if builds.is_empty() {
        return Err((
            ErrorCode::NOT_FOUND,
            format!(
                "no release {}: upload it first (tether release upload)",
                spec.version
            ),
        ));
    }
    let selected = select_nodes(
        shared,
        &Selection {
            targets: &spec.targets.nodes,
            labels: &spec.targets.labels,
            groups: &spec.targets.groups,
            all: spec.targets.all,
        },
    )?;
    if selected.is_empty() {
        return Err(invalid("the selection matches no node".into()));
    }
    let details: HashMap<_, _> = shared
        .store
        .nodes()
        .map_err(internal)?
        .into_iter()
        .map(|n| (n.record.id, n))
        .collect();
    let now_ms = shared.now_ms();
    let mut pending = Vec::new();
    let mut skipped = Vec::new();
    for (id, hostname) in selected {
        let detail = details.get(&id);
        let from_version = detail
            .map(|d| d.record.agent_version.clone())
            .unwrap_or_default();
        let arch = detail
            .and_then(|d| d.facts.as_ref())
            .map(|f| f.arch.clone());
        let build = arch.as_ref().and_then(|arch| {
            builds
                .iter()
                .find(|b| b.manifest.os == "linux" && &b.manifest.arch == arch)
        });
        let mut update = NodeUpdate {
            node: id,
            hostname,
            wave: 0,
            from_version: from_version.clone(),
            to_version: spec.version.clone(),
            state: UpdateState::Pending,
            bytes: 0,
            size: build.map_or(0, |b| b.manifest.size),
            error: None,
            started_at_ms: None,
            finished_at_ms: None,
        };
        let skip = match (&arch, build) {
            (None, _) => Some("core has no facts from it yet (it never connected)".to_string()),
            (Some(arch), None) => Some(format!("no build of {} for linux/{arch}", spec.version)),
            _ if from_version == spec.version => Some(format!("it runs {} already", spec.version)),
            _ => None,
        };
        match skip {
            Some(why) => {
                update.state = UpdateState::Skipped;
                update.error = Some(why);
                update.finished_at_ms = Some(now_ms);
                skipped.push(update);
            }
            None => pending.push(update),
        }
    }
    // Online nodes first, so that canaries and first batches are nodes that can answer.
    pending.sort_by_key(|u| shared.presence.get(u.node).is_none());
    let plan = waves(&spec, pending.len());
    for (update, wave) in pending.iter_mut().zip(&plan) {
        update.wave = *wave;
    }
    let wave_count = plan.last().map_or(1, |w| w + 1);
    let mut nodes = pending;
    nodes.extend(skipped);
    let view = shared
        .store
        .create_deploy(
            spec,
            DeployKind::Update,
            caller.user.clone(),
            now_ms,
            wave_count,
            nodes,
        )
        .await
        .map_err(internal)?
        .map_err(refused)?;
    start_driver(shared, view.deploy.id);
    Ok(vec![AdminResponse::Deploy(view)])
}

fn find(shared: &Shared, id: u64) -> Result<DeployView, Refusal> {
    shared
        .store
        .deploy(id)
        .map_err(internal)?
        .ok_or_else(|| refused(DeployRefusal::NotFound(id)))
}

/// `DeployStatus`: the deploy, then its nodes with live download progress.
pub(crate) fn status(shared: &Shared, id: u64) -> Reply {
    let view = find(shared, id)?;
    let mut nodes = shared.store.deploy_nodes(id).map_err(internal)?;
    shared.deploys.show_progress(&mut nodes);
    let mut out = vec![AdminResponse::Deploy(view)];
    out.extend(
        nodes
            .chunks(NODES_PER_FRAME)
            .map(|chunk| AdminResponse::DeployNodes(chunk.to_vec())),
    );
    Ok(out)
}

/// `DeployList`.
pub(crate) fn list(shared: &Shared, limit: u32) -> Reply {
    let all = shared
        .store
        .deploys(limit.clamp(1, LIST_MAX) as usize)
        .map_err(internal)?;
    Ok(vec![AdminResponse::Deploys(all)])
}

/// `DeployControl`: pause, resume, cancel.
pub(crate) async fn control(
    shared: &Arc<Shared>,
    caller: &Caller,
    id: u64,
    action: DeployAction,
) -> Reply {
    let before = find(shared, id)?;
    let state = before.deploy.state;
    let failures = before.counts.failures();
    let allowed = match action {
        DeployAction::Pause => state == DeployState::Running,
        DeployAction::Resume => matches!(state, DeployState::Paused | DeployState::Halted),
        DeployAction::Cancel => !state.ended(),
    };
    if !allowed {
        return Err((
            ErrorCode::CONFLICT,
            format!("deploy {id} is {state}: it cannot {action}"),
        ));
    }
    let now_ms = shared.now_ms();
    let who = caller.user.clone();
    let view = shared
        .store
        .update_deploy(id, move |d| match action {
            DeployAction::Pause => {
                d.state = DeployState::Paused;
                d.reason = Some(format!("paused by {who}"));
            }
            DeployAction::Resume => {
                // Resuming a halted deploy accepts the failures that halted it.
                if d.state == DeployState::Halted {
                    d.accepted_failures = failures;
                }
                d.state = DeployState::Running;
                d.reason = None;
            }
            DeployAction::Cancel => {
                d.state = DeployState::Cancelled;
                d.reason = Some(format!("cancelled by {who}"));
                d.finished_at_ms = Some(now_ms);
            }
        })
        .await
        .map_err(internal)?
        .map_err(refused)?;
    let view = if action == DeployAction::Cancel {
        cancel_pending(shared, id, now_ms).await?.unwrap_or(view)
    } else {
        view
    };
    if action == DeployAction::Resume {
        start_driver(shared, id);
    }
    shared.deploys.wake(id);
    Ok(vec![AdminResponse::Deploy(view)])
}

/// Marks a deploy's nodes that have not started cancelled (those under way finish).
async fn cancel_pending(
    shared: &Shared,
    id: u64,
    now_ms: i64,
) -> Result<Option<DeployView>, Refusal> {
    let cancelled: Vec<NodeUpdate> = shared
        .store
        .deploy_nodes(id)
        .map_err(internal)?
        .into_iter()
        .filter(|u| u.state == UpdateState::Pending)
        .map(|u| NodeUpdate {
            state: UpdateState::Cancelled,
            finished_at_ms: Some(now_ms),
            ..u
        })
        .collect();
    shared
        .store
        .save_node_updates(id, cancelled)
        .await
        .map_err(internal)
}

/// `DeployRollback`: a new deploy that puts back, on every node deploy `id` updated, the agent
/// it ran before (each node kept it). A deploy still going is cancelled first; one with nodes
/// mid-update is refused until they end.
pub(crate) async fn rollback(shared: &Arc<Shared>, caller: &Caller, id: u64) -> Reply {
    let original = find(shared, id)?;
    if let DeployKind::Rollback { of } = original.deploy.kind {
        return Err(invalid(format!(
            "deploy {id} is a rollback of deploy {of}; deploy the version again instead"
        )));
    }
    let nodes = shared.store.deploy_nodes(id).map_err(internal)?;
    if let Some(busy) = nodes.iter().find(|u| {
        matches!(
            u.state,
            UpdateState::Downloading | UpdateState::Verifying | UpdateState::Installing
        )
    }) {
        return Err((
            ErrorCode::CONFLICT,
            format!(
                "deploy {id} is still updating {} (and maybe others): pause it, wait for them, \
                 then roll back",
                busy.hostname
            ),
        ));
    }
    let now_ms = shared.now_ms();
    if !original.deploy.state.ended() {
        let who = caller.user.clone();
        shared
            .store
            .update_deploy(id, move |d| {
                d.state = DeployState::Cancelled;
                d.reason = Some(format!("cancelled by {who} to roll back"));
                d.finished_at_ms = Some(now_ms);
            })
            .await
            .map_err(internal)?
            .map_err(refused)?;
        cancel_pending(shared, id, now_ms).await?;
    }
    let back: Vec<NodeUpdate> = nodes
        .into_iter()
        .filter(|u| u.state == UpdateState::Success)
        .map(|u| NodeUpdate {
            wave: 0,
            from_version: u.to_version,
            to_version: u.from_version,
            state: UpdateState::Pending,
            bytes: 0,
            size: 0,
            error: None,
            started_at_ms: None,
            finished_at_ms: None,
            ..u
        })
        .collect();
    if back.is_empty() {
        return Err(invalid(format!(
            "deploy {id} updated no node: there is nothing to roll back"
        )));
    }
    let spec = DeploySpec {
        strategy: Strategy::All,
        batch: None,
        pause_ms: 0,
        canary: None,
        canary_wait_ms: 0,
        max_failures: None,
        offline: OfflinePolicy::Wait,
        ..original.deploy.spec
    };
    let view = shared
        .store
        .create_deploy(
            spec,
            DeployKind::Rollback { of: id },
            caller.user.clone(),
            now_ms,
            1,
            back,
        )
        .await
        .map_err(internal)?
        .map_err(refused)?;
    start_driver(shared, view.deploy.id);
    Ok(vec![AdminResponse::Deploy(view)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_wire::tasks::TaskTargets;

    fn spec(strategy: Strategy, batch: Option<&str>, canary: Option<&str>) -> DeploySpec {
        DeploySpec {
            version: "1".into(),
            targets: TaskTargets {
                all: true,
                ..Default::default()
            },
            strategy,
            batch: batch.map(|b| b.parse().unwrap()),
            pause_ms: 0,
            canary: canary.map(|c| c.parse().unwrap()),
            canary_wait_ms: 0,
            max_failures: None,
            offline: OfflinePolicy::Wait,
            watchdog_ms: 60_000,
            rate_limit: None,
        }
    }

    #[test]
    fn waves_follow_the_strategy() {
        assert_eq!(waves(&spec(Strategy::All, None, None), 4), [0, 0, 0, 0]);
        assert_eq!(
            waves(&spec(Strategy::Rolling, Some("2"), None), 5),
            [0, 0, 1, 1, 2]
        );
        // 10% of 25 is 3 (rounded up).
        let rolling = waves(&spec(Strategy::Rolling, None, None), 25);
        assert_eq!(rolling.iter().filter(|w| **w == 0).count(), 3);
        assert_eq!(rolling.last(), Some(&8));
        assert_eq!(waves(&spec(Strategy::Canary, None, None), 4), [0, 1, 1, 1]);
        assert_eq!(
            waves(&spec(Strategy::Canary, Some("50%"), Some("2")), 6),
            [0, 0, 1, 1, 1, 2]
        );
        assert_eq!(waves(&spec(Strategy::Canary, None, Some("5")), 2), [0, 0]);
        assert!(waves(&spec(Strategy::Canary, None, None), 0).is_empty());
    }
}

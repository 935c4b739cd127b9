//! One run of a task: select its nodes when it starts, run it as an execution (the machinery
//! of `tether exec`: streams, timeouts, kept output, history), then try the nodes that failed
//! again after the retry interval, up to the retry count. Each try is an execution of its own,
//! marked with the task, run, try and trigger ([`ExecOrigin`]).
//!
//! A run goes in the name of the task's owner — whoever last added, changed, enabled or
//! disabled it, and so decided what runs — and only while that user may still run commands:
//! disabling a user, or taking away the role, stops their tasks too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tether_wire::admin::{ExecCounts, ExecStatus, NodeExecView};
use tether_wire::tasks::{
    ExecOrigin, RunNodeResult, RunState, RunView, Task, TaskCommand, TaskRun, Trigger,
};
use tether_wire::{ErrorCode, ExecutionId, NodeId};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::admin::{Refusal, internal};
use crate::exec::{Plan, Selection, Spread, run_detached, select_nodes};
use crate::server::Shared;

/// Nodes running a task's command at once (as `tether exec`'s default).
const CONCURRENCY: u32 = 2048;

/// Statuses worth another try: the command failed, or never got to run. Not a refusal (the
/// node's policy will refuse again) nor a cancel.
fn retried(status: ExecStatus) -> bool {
    matches!(
        status,
        ExecStatus::Failed | ExecStatus::Timeout | ExecStatus::Offline | ExecStatus::Error
    )
}

/// Releases a task's claim however its run ends (a panic included), so later runs are not
/// skipped for ever.
struct Claim {
    shared: Arc<Shared>,
    task: u64,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.shared.tasks.release(self.task);
    }
}

fn running_refusal(shared: &Shared, task: &Task) -> Refusal {
    (
        ErrorCode::CONFLICT,
        format!(
            "task {:?} is running (run {}); wait for it to end",
            task.spec.name,
            shared.tasks.running(task.id).unwrap_or_default()
        ),
    )
}

/// Starts a run of `task` now: records it (moving the task's next due time on, when given)
/// and drives it in the background, with the task as stored at that moment. `by`: who asked
/// (none: the task's owner). `due`: the due time a scheduled run is for; such a run is not
/// started (NOT_FOUND) if the task was changed, disabled or deleted since it was read.
/// Refused (CONFLICT) while a run of the task is going on.
pub(crate) async fn start(
    shared: &Arc<Shared>,
    task: &Task,
    trigger: Trigger,
    by: Option<String>,
    due: Option<i64>,
    next_run_ms: Option<Option<i64>>,
) -> Result<TaskRun, Refusal> {
    let cancel = CancellationToken::new();
    if !shared.tasks.claim(task.id, cancel.clone()) {
        return Err(running_refusal(shared, task));
    }
    let claim = Claim {
        shared: shared.clone(),
        task: task.id,
    };
    let run = TaskRun {
        task_id: task.id,
        run: 0,
        trigger,
        by: by.unwrap_or_default(),
        due_at_ms: due,
        started_at_ms: shared.now_ms(),
        finished_at_ms: None,
        state: RunState::Running,
        error: None,
        executions: Vec::new(),
        nodes: 0,
        counts: ExecCounts::default(),
    };
    let (task, run) = match shared
        .store
        .start_task_run(task.id, run, due, next_run_ms)
        .await
    {
        Ok(Some(started)) => started,
        Ok(None) => {
            return Err((
                ErrorCode::NOT_FOUND,
                format!(
                    "task {:?} was deleted, disabled or changed meanwhile",
                    task.spec.name
                ),
            ));
        }
        Err(e) => return Err(internal(e)),
    };
    shared.tasks.numbered(task.id, run.run);
    let span = info_span!("task", task = %task.spec.name, run = run.run);
    let (shared, started) = (shared.clone(), run.clone());
    tokio::spawn(
        async move {
            let _claim = claim;
            info!(trigger = %started.trigger, by = %started.by, "run started");
            let ended = drive(&shared, &task, started, cancel).await;
            info!(state = %ended.state, ok = ended.counts.ok, nodes = ended.nodes, error = ?ended.error, "run ended");
        }
        .instrument(span),
    );
    Ok(run)
}

/// Records a run that was due while the one before was still going, and moves the due time
/// on (unless the task changed meanwhile: then nothing, and the scheduler looks again).
pub(crate) async fn skipped(
    shared: &Shared,
    task: &Task,
    due: Option<i64>,
    next_run_ms: Option<i64>,
) -> Result<(), tether_store::StoreError> {
    let now = shared.now_ms();
    let before = shared.tasks.running(task.id).unwrap_or_default();
    let run = TaskRun {
        task_id: task.id,
        run: 0,
        trigger: Trigger::Schedule,
        by: String::new(),
        due_at_ms: due,
        started_at_ms: now,
        finished_at_ms: Some(now),
        state: RunState::Skipped,
        error: Some(format!("run {before} was still going")),
        executions: Vec::new(),
        nodes: 0,
        counts: ExecCounts::default(),
    };
    shared
        .store
        .start_task_run(task.id, run, due, Some(next_run_ms))
        .await?;
    Ok(())
}

/// Whether `user` may still run commands: exists, enabled, and a role that may.
fn owner_may_run(shared: &Shared, user: &str) -> Result<(), String> {
    let record = shared
        .store
        .user(user)
        .map_err(|e| format!("core's database failed: {e}"))?;
    match record {
        None => Err(format!("its owner {user:?} no longer exists")),
        Some(u) if !u.enabled => Err(format!("its owner {user:?} is disabled")),
        Some(u)
            if crate::admin::roles::cell(u.role, "exec.run") == crate::admin::roles::Cell::No =>
        {
            Err(format!(
                "its owner {user:?} is now {} and may not run commands",
                u.role
            ))
        }
        Some(_) => Ok(()),
    }
}

/// The run to its end; answers it as recorded last.
async fn drive(
    shared: &Arc<Shared>,
    task: &Task,
    mut run: TaskRun,
    cancel: CancellationToken,
) -> TaskRun {
    match tries(shared, task, &mut run, &cancel).await {
        Ok(()) => {}
        Err(why) => {
            run.state = RunState::Failed;
            run.error = Some(why);
        }
    }
    if cancel.is_cancelled() && run.state == RunState::Running {
        run.state = RunState::Cancelled;
        run.error.get_or_insert_with(|| "cancelled".into());
    }
    run.finished_at_ms = Some(shared.now_ms());
    if let Err(e) = shared.store.update_task_run(run.clone()).await {
        warn!(error = %e, "recording the end of the run failed");
    }
    run
}

/// The first try and the retries; leaves the run's state, counts and executions set.
async fn tries(
    shared: &Arc<Shared>,
    task: &Task,
    run: &mut TaskRun,
    cancel: &CancellationToken,
) -> Result<(), String> {
    owner_may_run(shared, &task.updated_by).map_err(|why| format!("not run: {why}"))?;
    let spec = &task.spec;
    let selection = Selection {
        targets: &spec.targets.nodes,
        labels: &spec.targets.labels,
        groups: &spec.targets.groups,
        all: spec.targets.all,
    };
    let targets = select_nodes(shared, &selection).map_err(|(_, why)| why)?;
    run.nodes = u32::try_from(targets.len()).unwrap_or(u32::MAX);
    let mut last: BTreeMap<NodeId, ExecStatus> = BTreeMap::new();
    let mut remaining = targets;
    let spread = (spec.spread_ms > 0).then_some(Spread {
        salt: task.id,
        window: Duration::from_millis(spec.spread_ms),
    });
    for attempt in 0..=spec.retries {
        if attempt > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(spec.retry_interval_ms)) => {}
                _ = cancel.cancelled() => break,
                _ = shared.shutdown.cancelled() => break,
            }
            // The owner may have lost the right since the run started: no more tries then.
            if let Err(why) = owner_may_run(shared, &task.updated_by) {
                run.error = Some(format!("not retried: {why}"));
                break;
            }
            info!(
                attempt,
                nodes = remaining.len(),
                "trying the failed nodes again"
            );
        }
        let (command, script) = match &spec.command {
            TaskCommand::Command(argv) => (argv.clone(), None),
            TaskCommand::Script { name, body } => (vec![name.clone()], Some(body.clone())),
        };
        let plan = Plan {
            command,
            script,
            env: Vec::new(),
            cwd: None,
            timeout_ms: Some(spec.timeout_ms),
            selector: spec.targets.describe(),
            origin: Some(ExecOrigin {
                task: spec.name.clone(),
                run: run.run,
                attempt,
                trigger: run.trigger,
            }),
        };
        let (exec_id, results) = run_detached(
            shared,
            &task.updated_by,
            plan,
            remaining,
            CONCURRENCY,
            spread,
            cancel.clone(),
        )
        .await
        .map_err(|(_, why)| why)?;
        run.executions.push(exec_id);
        for view in &results {
            last.insert(view.node_id, view.status);
        }
        run.counts = count(&last);
        if let Err(e) = shared.store.update_task_run(run.clone()).await {
            warn!(error = %e, "recording the run's progress failed");
        }
        remaining = results
            .iter()
            .filter(|v| retried(v.status))
            .map(|v| (v.node_id, v.hostname.clone()))
            .collect();
        if remaining.is_empty() || cancel.is_cancelled() {
            break;
        }
    }
    if !cancel.is_cancelled() {
        run.state = if run.counts.ok == run.nodes {
            RunState::Success
        } else {
            RunState::Failed
        };
    }
    Ok(())
}

fn count(last: &BTreeMap<NodeId, ExecStatus>) -> ExecCounts {
    let mut counts = ExecCounts::default();
    for status in last.values() {
        counts.add(*status);
    }
    counts
}

/// A run with each node's result: its status in the last execution that included it, and how
/// many tries it had. Executions pruned since are left out.
pub(crate) fn view(shared: &Shared, run: TaskRun) -> Result<RunView, Refusal> {
    let mut nodes: BTreeMap<NodeId, RunNodeResult> = BTreeMap::new();
    for exec_id in &run.executions {
        let Some((_, records)) = shared.store.execution(*exec_id).map_err(internal)? else {
            continue;
        };
        for record in records {
            let view: NodeExecView = crate::exec::node_view(record, None);
            let tries = nodes.get(&view.node_id).map_or(0, |r| r.tries) + 1;
            nodes.insert(view.node_id, result(view, tries, *exec_id));
        }
    }
    let mut nodes: Vec<RunNodeResult> = nodes.into_values().collect();
    nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    Ok(RunView { run, nodes })
}

fn result(view: NodeExecView, tries: u32, execution: ExecutionId) -> RunNodeResult {
    RunNodeResult {
        node_id: view.node_id,
        hostname: view.hostname,
        status: view.status,
        exit_code: view.exit_code,
        error: view.error,
        tries,
        execution,
    }
}

//! Scheduled tasks (`tether task ...`): add, edit, list, show, enable, disable, delete, run now,
//! history, and the preview of a cron expression's next times. The scheduler and the runs are
//! `crate::tasks`.

use tether_store::TaskRefusal;
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::tasks::{RunView, Task, TaskSpec, TaskTargets, TaskView, Trigger};

use super::{Refusal, Reply, internal, invalid, resolve};
use crate::auth::Caller;
use crate::server::Shared;
use crate::tasks::runs;
use crate::tasks::schedule::Schedule;

/// Due times a view shows.
const UPCOMING: usize = 5;
/// Runs `task history` shows at most.
const HISTORY_MAX: u32 = 1000;
/// Tasks per `Tasks` frame: with the largest scripts, 4 MiB of the 8 MiB a frame may hold.
const TASKS_PER_FRAME: usize = 16;
/// Node results per `TaskRuns` frame: under 4 MiB even with 2 KiB of error text each (refusals
/// name a node's allow-list).
const NODES_PER_FRAME: usize = 2_000;

fn refused(refusal: TaskRefusal) -> Refusal {
    let code = match refusal {
        TaskRefusal::NotFound(_) => ErrorCode::NOT_FOUND,
        TaskRefusal::Exists(_) => ErrorCode::CONFLICT,
        TaskRefusal::Limit(_) => ErrorCode::LIMIT_REACHED,
        _ => ErrorCode::INVALID_ARGUMENT,
    };
    (code, refusal.to_string())
}

/// Every task request.
pub(crate) async fn handle(shared: &Shared, caller: &Caller, request: AdminRequest) -> Reply {
    let store = &shared.store;
    match request {
        AdminRequest::TaskAdd(spec) => {
            let schedule = check(shared, &spec)?;
            let next = spec
                .enabled
                .then(|| schedule.next_after(shared.now_ms()))
                .flatten();
            let task = store
                .add_task(spec, caller.user.clone(), shared.now_ms(), next)
                .await
                .map_err(internal)?
                .map_err(refused)?;
            shared.tasks.wake();
            Ok(vec![AdminResponse::Task(view(shared, task)?)])
        }
        AdminRequest::TaskEdit { name, changes } => {
            if changes.is_empty() {
                return Err(invalid(
                    "nothing to change: give at least one option (tether task edit --help)".into(),
                ));
            }
            let before = find(shared, &name)?;
            let spec = changes.apply(before.spec.clone());
            let schedule = check(shared, &spec)?;
            let now = shared.now_ms();
            let by = caller.user.clone();
            let rescheduled =
                spec.cron != before.spec.cron || spec.timezone != before.spec.timezone;
            let task = store
                .update_task(name, move |mut task| {
                    // The schedule as it is now, not as it was read: enable may have raced.
                    if rescheduled || task.next_run_ms.is_none() {
                        task.next_run_ms = task
                            .spec
                            .enabled
                            .then(|| schedule.next_after(now))
                            .flatten();
                    }
                    let enabled = task.spec.enabled;
                    task.spec = TaskSpec { enabled, ..spec };
                    task.updated_by = by;
                    task.updated_at_ms = now;
                    Ok(task)
                })
                .await
                .map_err(internal)?
                .map_err(refused)?;
            shared.tasks.wake();
            Ok(vec![AdminResponse::Task(view(shared, task)?)])
        }
        AdminRequest::TaskList => {
            let tasks = store.tasks().map_err(internal)?;
            let views: Vec<TaskView> = tasks
                .into_iter()
                .map(|t| view(shared, t))
                .collect::<Result<_, _>>()?;
            if views.is_empty() {
                return Ok(vec![AdminResponse::Tasks(Vec::new())]);
            }
            // A task carries its script (up to 256 KiB): a few per frame stay under the
            // frame limit whatever they hold.
            Ok(views
                .chunks(TASKS_PER_FRAME)
                .map(|c| AdminResponse::Tasks(c.to_vec()))
                .collect())
        }
        AdminRequest::TaskShow { name } => Ok(vec![AdminResponse::Task(view(
            shared,
            find(shared, &name)?,
        )?)]),
        AdminRequest::TaskEnable { name, enabled } => {
            let now = shared.now_ms();
            let by = caller.user.clone();
            let task = store
                .update_task(name, move |mut task| {
                    let schedule = Schedule::parse(&task.spec.cron, &task.spec.timezone)?;
                    if task.spec.enabled != enabled {
                        task.spec.enabled = enabled;
                        task.next_run_ms = enabled.then(|| schedule.next_after(now)).flatten();
                        task.updated_by = by;
                        task.updated_at_ms = now;
                    }
                    Ok(task)
                })
                .await
                .map_err(internal)?
                .map_err(refused)?;
            shared.tasks.wake();
            Ok(vec![AdminResponse::Task(view(shared, task)?)])
        }
        AdminRequest::TaskDelete { name } => {
            let before = view(shared, find(shared, &name)?)?;
            let task = store
                .delete_task(name)
                .await
                .map_err(internal)?
                .map_err(refused)?;
            shared.tasks.cancel(task.id);
            shared.tasks.wake();
            Ok(vec![AdminResponse::Task(before)])
        }
        AdminRequest::TaskHistory { name, limit, run } => {
            let task = find(shared, &name)?;
            let limit = if limit == 0 {
                20
            } else {
                limit.min(HISTORY_MAX)
            };
            let runs = match run {
                Some(number) => vec![
                    store
                        .task_run(task.id, number)
                        .map_err(internal)?
                        .ok_or_else(|| {
                            (
                                ErrorCode::NOT_FOUND,
                                format!("task {name:?} keeps no run {number}"),
                            )
                        })?,
                ],
                None => store.task_runs(task.id, limit as usize).map_err(internal)?,
            };
            let mut frames = Vec::new();
            for run in runs {
                let view = runs::view(shared, run)?;
                // One run per frame; a run of many nodes over several.
                if view.nodes.len() <= NODES_PER_FRAME {
                    frames.push(AdminResponse::TaskRuns(vec![view]));
                    continue;
                }
                for nodes in view.nodes.chunks(NODES_PER_FRAME) {
                    frames.push(AdminResponse::TaskRuns(vec![RunView {
                        run: view.run.clone(),
                        nodes: nodes.to_vec(),
                    }]));
                }
            }
            if frames.is_empty() {
                frames.push(AdminResponse::TaskRuns(Vec::new()));
            }
            Ok(frames)
        }
        AdminRequest::CronPreview {
            cron,
            timezone,
            count,
        } => {
            let schedule = Schedule::parse(&cron, &timezone).map_err(invalid)?;
            let times_ms = schedule.upcoming(shared.now_ms(), count.clamp(1, 20) as usize);
            Ok(vec![AdminResponse::CronTimes {
                cron,
                timezone,
                times_ms,
            }])
        }
        _ => Err((ErrorCode::UNEXPECTED_MESSAGE, "not a task request".into())),
    }
}

/// `TaskRun`: needs the shared state itself, to start the run in the background.
pub(crate) async fn run_now(shared: &std::sync::Arc<Shared>, caller: &Caller, name: &str) -> Reply {
    let task = find(shared, name)?;
    let run = runs::start(
        shared,
        &task,
        Trigger::Manual,
        Some(caller.user.clone()),
        None,
        None,
    )
    .await?;
    Ok(vec![AdminResponse::TaskRun(run)])
}

fn find(shared: &Shared, name: &str) -> Result<Task, Refusal> {
    shared
        .store
        .task(name)
        .map_err(internal)?
        .ok_or_else(|| refused(TaskRefusal::NotFound(name.to_string())))
}

/// Checks a task as given: its own rules, its schedule, and its targets (each node name must
/// name a node, each group must exist; labels and `--all` may match nothing yet).
fn check(shared: &Shared, spec: &TaskSpec) -> Result<Schedule, Refusal> {
    spec.check().map_err(invalid)?;
    let schedule = Schedule::parse(&spec.cron, &spec.timezone).map_err(invalid)?;
    check_targets(shared, &spec.targets)?;
    Ok(schedule)
}

fn check_targets(shared: &Shared, targets: &TaskTargets) -> Result<(), Refusal> {
    for node in &targets.nodes {
        if crate::exec::is_glob(node) {
            continue;
        }
        resolve::node(shared, node)?;
    }
    for (key, value) in &targets.labels {
        tether_wire::admin::check_label(key, value).map_err(invalid)?;
    }
    crate::admin::groups::select(shared, &targets.groups)?;
    Ok(())
}

fn view(shared: &Shared, task: Task) -> Result<TaskView, Refusal> {
    let last = shared
        .store
        .task_runs(task.id, 1)
        .map_err(internal)?
        .into_iter()
        .next();
    let upcoming_ms = match (task.next_run_ms, task.spec.enabled) {
        (Some(next), true) => {
            let mut times = vec![next];
            if let Ok(schedule) = Schedule::parse(&task.spec.cron, &task.spec.timezone) {
                times.extend(schedule.upcoming(next, UPCOMING - 1));
            }
            times
        }
        _ => Vec::new(),
    };
    Ok(TaskView {
        task,
        last,
        upcoming_ms,
    })
}

//! Scheduled tasks and their runs (seed 002's `tasks` and `task_executions`). A task's next due
//! time is kept with it, so a restarted core knows what it missed; a run's number comes from
//! its task, in the transaction that records the run. Each task keeps its last
//! [`RUNS_KEPT`] runs. Runs still going when core stops are marked interrupted at start-up,
//! as executions are.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use tether_wire::tasks::{MAX_TASKS, RUNS_KEPT, RunState, Task, TaskRun, TaskSpec};

use crate::codec::{self, Stored};
use crate::tables::{META, TASK_BY_NAME, TASK_RUNNING, TASK_RUNS, TASKS, TASKS_NEXT_ID};
use crate::{Store, StoreError};

impl Stored for Task {}
impl Stored for TaskRun {}

/// Why a change to tasks was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskRefusal {
    /// No task of that name.
    #[error("no task {0:?}")]
    NotFound(String),
    /// The name is taken.
    #[error("task {0:?} exists already")]
    Exists(String),
    /// Core keeps at most [`MAX_TASKS`].
    #[error("at most {0} tasks may exist; delete one first")]
    Limit(usize),
    /// The change itself is refused (the caller's reason).
    #[error("{0}")]
    Invalid(String),
}

/// A change's outcome: done, or refused with the reason.
pub type TaskOutcome<T> = Result<T, TaskRefusal>;

fn task_id(txn: &WriteTransaction, name: &str) -> Result<Option<u64>, StoreError> {
    Ok(txn.open_table(TASK_BY_NAME)?.get(name)?.map(|v| v.value()))
}

fn load(txn: &WriteTransaction, id: u64) -> Result<Option<Task>, StoreError> {
    txn.open_table(TASKS)?
        .get(id)?
        .map(|v| codec::decode::<Task>(v.value()))
        .transpose()
}

fn save(txn: &WriteTransaction, task: &Task) -> Result<(), StoreError> {
    txn.open_table(TASKS)?
        .insert(task.id, codec::encode(task).as_slice())?;
    Ok(())
}

impl Store {
    /// Adds a task. `next_run_ms` is its first due time (none while disabled).
    pub async fn add_task(
        &self,
        spec: TaskSpec,
        by: String,
        now_ms: i64,
        next_run_ms: Option<i64>,
    ) -> Result<TaskOutcome<Task>, StoreError> {
        self.write(move |txn| {
            if task_id(txn, &spec.name)?.is_some() {
                return Ok(Err(TaskRefusal::Exists(spec.name)));
            }
            if txn.open_table(TASKS)?.len()? >= MAX_TASKS as u64 {
                return Ok(Err(TaskRefusal::Limit(MAX_TASKS)));
            }
            let mut meta = txn.open_table(META)?;
            let id = meta.get(TASKS_NEXT_ID)?.map_or(1, |v| v.value());
            meta.insert(TASKS_NEXT_ID, id + 1)?;
            let task = Task {
                id,
                spec,
                created_by: by.clone(),
                created_at_ms: now_ms,
                updated_by: by,
                updated_at_ms: now_ms,
                next_run_ms,
                last_run: 0,
            };
            save(txn, &task)?;
            txn.open_table(TASK_BY_NAME)?
                .insert(task.spec.name.as_str(), id)?;
            Ok(Ok(task))
        })
        .await
    }

    /// Changes task `name` with `change`, in one transaction (it sees the task as stored and
    /// may refuse). The name cannot change.
    pub async fn update_task(
        &self,
        name: String,
        change: impl FnOnce(Task) -> Result<Task, String> + Send + 'static,
    ) -> Result<TaskOutcome<Task>, StoreError> {
        self.write(move |txn| {
            let Some(id) = task_id(txn, &name)? else {
                return Ok(Err(TaskRefusal::NotFound(name)));
            };
            let Some(task) = load(txn, id)? else {
                return Ok(Err(TaskRefusal::NotFound(name)));
            };
            let mut changed = match change(task) {
                Ok(changed) => changed,
                Err(why) => return Ok(Err(TaskRefusal::Invalid(why))),
            };
            changed.id = id;
            changed.spec.name = name;
            save(txn, &changed)?;
            Ok(Ok(changed))
        })
        .await
    }

    /// Moves a task's next due time from `due` on to `next_run_ms` (the scheduler, after a run
    /// was due). Nothing changes when the task was deleted, disabled or rescheduled meanwhile
    /// (its due time is no longer `due`): the scheduler reads it again. Answers whether it
    /// changed.
    pub async fn set_task_next_run(
        &self,
        id: u64,
        due: Option<i64>,
        next_run_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.write(move |txn| match load(txn, id)? {
            Some(mut task) if task.spec.enabled && task.next_run_ms == due => {
                task.next_run_ms = next_run_ms;
                save(txn, &task)?;
                Ok(true)
            }
            _ => Ok(false),
        })
        .await
    }

    /// Deletes task `name` and its runs' records (their executions stay). Answers the task as
    /// it was.
    pub async fn delete_task(&self, name: String) -> Result<TaskOutcome<Task>, StoreError> {
        self.write(move |txn| {
            let Some(id) = task_id(txn, &name)? else {
                return Ok(Err(TaskRefusal::NotFound(name)));
            };
            let task = load(txn, id)?;
            txn.open_table(TASKS)?.remove(id)?;
            txn.open_table(TASK_BY_NAME)?.remove(name.as_str())?;
            txn.open_table(TASK_RUNS)?
                .extract_from_if((id, 0)..=(id, u64::MAX), |_, _| true)?
                .for_each(drop);
            txn.open_table(TASK_RUNNING)?
                .extract_from_if((id, 0)..=(id, u64::MAX), |_, _| true)?
                .for_each(drop);
            Ok(task.ok_or(TaskRefusal::NotFound(name)))
        })
        .await
    }

    /// Every task, by name.
    pub fn tasks(&self) -> Result<Vec<Task>, StoreError> {
        let txn = self.read()?;
        let by_name = txn.open_table(TASK_BY_NAME)?;
        let tasks = txn.open_table(TASKS)?;
        let mut out = Vec::new();
        for entry in by_name.iter()? {
            let (_, id) = entry?;
            if let Some(v) = tasks.get(id.value())? {
                out.push(codec::decode::<Task>(v.value())?);
            }
        }
        Ok(out)
    }

    /// Task `name`.
    pub fn task(&self, name: &str) -> Result<Option<Task>, StoreError> {
        let txn = self.read()?;
        let Some(id) = txn.open_table(TASK_BY_NAME)?.get(name)?.map(|v| v.value()) else {
            return Ok(None);
        };
        txn.open_table(TASKS)?
            .get(id)?
            .map(|v| codec::decode::<Task>(v.value()))
            .transpose()
    }

    /// Records a new run of task `task_id`, numbering it, and moves the task's next due time
    /// on when `next_run_ms` is given, in one transaction; answers the task as it is in that
    /// transaction (what the run must run) and the run. A run that was due (`due` given: the
    /// scheduler's) is recorded only if the task is still enabled and still due then: an edit,
    /// a disable or a delete that committed meanwhile wins, and the answer is None, as for a
    /// task that is gone. Runs beyond [`RUNS_KEPT`] are deleted, oldest first, never one still
    /// going. A run without `by` is the owner's (`updated_by`).
    pub async fn start_task_run(
        &self,
        task_id: u64,
        mut run: TaskRun,
        due: Option<i64>,
        next_run_ms: Option<Option<i64>>,
    ) -> Result<Option<(Task, TaskRun)>, StoreError> {
        self.write(move |txn| {
            let Some(mut task) = load(txn, task_id)? else {
                return Ok(None);
            };
            if due.is_some() && !(task.spec.enabled && task.next_run_ms == due) {
                return Ok(None);
            }
            task.last_run += 1;
            if let Some(next) = next_run_ms {
                task.next_run_ms = next;
            }
            save(txn, &task)?;
            run.task_id = task_id;
            run.run = task.last_run;
            if run.by.is_empty() {
                run.by = task.updated_by.clone();
            }
            let mut runs = txn.open_table(TASK_RUNS)?;
            runs.insert((task_id, run.run), codec::encode(&run).as_slice())?;
            let mut running = txn.open_table(TASK_RUNNING)?;
            if run.state == RunState::Running {
                running.insert((task_id, run.run), ())?;
            }
            if let Some(oldest_kept) = run.run.checked_sub(RUNS_KEPT as u64) {
                let mut going = Vec::new();
                for entry in running.range((task_id, 0)..=(task_id, oldest_kept))? {
                    going.push(entry?.0.value().1);
                }
                runs.extract_from_if((task_id, 0)..=(task_id, oldest_kept), |(_, n), _| {
                    !going.contains(&n)
                })?
                .for_each(drop);
            }
            Ok(Some((task, run)))
        })
        .await
    }

    /// Run `run` of a task, if it is still kept.
    pub fn task_run(&self, task_id: u64, run: u64) -> Result<Option<TaskRun>, StoreError> {
        let txn = self.read()?;
        txn.open_table(TASK_RUNS)?
            .get((task_id, run))?
            .map(|v| codec::decode::<TaskRun>(v.value()))
            .transpose()
    }

    /// Records a run's new state (a run of a deleted task is dropped).
    pub async fn update_task_run(&self, run: TaskRun) -> Result<(), StoreError> {
        self.write(move |txn| {
            let key = (run.task_id, run.run);
            let mut runs = txn.open_table(TASK_RUNS)?;
            if runs.get(key)?.is_none() {
                return Ok(());
            }
            runs.insert(key, codec::encode(&run).as_slice())?;
            if run.state != RunState::Running {
                txn.open_table(TASK_RUNNING)?.remove(key)?;
            }
            Ok(())
        })
        .await
    }

    /// A task's runs, newest first, at most `limit`.
    pub fn task_runs(&self, task_id: u64, limit: usize) -> Result<Vec<TaskRun>, StoreError> {
        let txn = self.read()?;
        let runs = txn.open_table(TASK_RUNS)?;
        let mut out = Vec::new();
        for entry in runs.range((task_id, 0)..=(task_id, u64::MAX))?.rev() {
            if out.len() >= limit {
                break;
            }
            out.push(codec::decode::<TaskRun>(entry?.1.value())?);
        }
        Ok(out)
    }

    /// Marks runs still going (core stopped under them) interrupted. Answers how many.
    pub async fn interrupt_running_task_runs(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.write(move |txn| {
            let running: Vec<(u64, u64)> = txn
                .open_table(TASK_RUNNING)?
                .iter()?
                .map(|e| e.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            let mut runs = txn.open_table(TASK_RUNS)?;
            for key in &running {
                let Some(mut run) = runs
                    .get(*key)?
                    .map(|v| codec::decode::<TaskRun>(v.value()))
                    .transpose()?
                else {
                    continue;
                };
                run.state = RunState::Interrupted;
                run.finished_at_ms = Some(now_ms);
                run.error = Some("core stopped while it ran".into());
                runs.insert(*key, codec::encode(&run).as_slice())?;
            }
            drop(runs);
            let mut table = txn.open_table(TASK_RUNNING)?;
            for key in &running {
                table.remove(*key)?;
            }
            Ok(running.len())
        })
        .await
    }
}

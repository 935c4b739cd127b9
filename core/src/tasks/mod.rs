//! Scheduled tasks: the scheduler that starts runs when they are due ([`run`]), and the runs
//! themselves ([`runs`]). Seed 002's `tasks` and `task_executions`; the admin requests are in
//! `crate::admin::tasks`.
//!
//! ```text
//! store (tasks, each with its next due time) ──▶ scheduler: sleep until the earliest is due,
//!   or until a task changes ──▶ decide (schedule.rs: run / skip / pass; next due time)
//!   ──▶ start a run: record it (numbered) and the next due time in one transaction
//!   ──▶ runs.rs: select nodes, execution (as `tether exec`), retries for failed nodes
//! ```
//!
//! Due times live in the store, so a restarted core misses nothing and repeats nothing: a
//! due time in the past at start-up was missed while core was down (one catch-up run, or none).
//! The scheduler never scans on a fixed tick: it sleeps until the earliest due time (at most a
//! minute, so a wall-clock jump is noticed), or until a task is added, changed or deleted.

pub(crate) mod runs;
pub(crate) mod schedule;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_wire::ErrorCode;
use tether_wire::tasks::Task;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::server::Shared;
use schedule::{Action, Schedule, decide};

/// The longest the scheduler sleeps without looking again.
const LONGEST_SLEEP: Duration = Duration::from_secs(60);

/// Tasks' state in memory: which have a run going, and the scheduler's wake-up call.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    /// Task number → the run going on and its cancel.
    running: Mutex<HashMap<u64, (u64, CancellationToken)>>,
    /// Rung when a task is added, changed or deleted.
    wake: Notify,
}

impl Tasks {
    /// Tells the scheduler to look again (a task changed).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// The run of task `id` going on, if any.
    pub(crate) fn running(&self, id: u64) -> Option<u64> {
        self.running
            .lock()
            .expect("not poisoned")
            .get(&id)
            .map(|(run, _)| *run)
    }

    /// Claims task `id` for a new run; false if one is going on.
    fn claim(&self, id: u64, cancel: CancellationToken) -> bool {
        let mut running = self.running.lock().expect("not poisoned");
        if running.contains_key(&id) {
            return false;
        }
        running.insert(id, (0, cancel));
        true
    }

    fn numbered(&self, id: u64, run: u64) {
        if let Some(entry) = self.running.lock().expect("not poisoned").get_mut(&id) {
            entry.0 = run;
        }
    }

    fn release(&self, id: u64) {
        self.running.lock().expect("not poisoned").remove(&id);
    }

    /// Cancels the run of task `id` going on, if any (the task was deleted).
    pub(crate) fn cancel(&self, id: u64) {
        if let Some((_, cancel)) = self.running.lock().expect("not poisoned").get(&id) {
            cancel.cancel();
        }
    }
}

/// How soon the scheduler tries again a task whose due run could not be recorded (the store
/// failed), rather than at once in a loop.
const RETRY_FAILED: i64 = 5_000;

/// The scheduler: until core stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    // Until a look has read the tasks, a due time in the past was missed while core was down.
    let mut starting = true;
    loop {
        let now = shared.now_ms();
        let earliest = match look(&shared, now, starting).await {
            Ok(earliest) => {
                starting = false;
                earliest
            }
            Err(e) => {
                warn!(error = %e, "the scheduler could not read the tasks; trying again");
                Some(now + RETRY_FAILED)
            }
        };
        let wait = earliest.map_or(LONGEST_SLEEP, |at| {
            Duration::from_millis(u64::try_from(at - now).unwrap_or(0)).min(LONGEST_SLEEP)
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.tasks.wake.notified() => {}
            _ = shared.shutdown.cancelled() => return,
        }
    }
}

/// Starts what is due at `now`; answers the earliest due time left. One task's failure is
/// logged and tried again shortly; it never holds up the others.
async fn look(
    shared: &Arc<Shared>,
    now: i64,
    starting: bool,
) -> Result<Option<i64>, tether_store::StoreError> {
    let mut earliest: Option<i64> = None;
    for task in shared.store.tasks()? {
        let schedule = match Schedule::parse(&task.spec.cron, &task.spec.timezone) {
            Ok(schedule) => schedule,
            Err(why) => {
                // Checked when stored: only a newer zone database could make it so.
                warn!(task = %task.spec.name, "not scheduled: {why}");
                continue;
            }
        };
        let running = shared.tasks.running(task.id).is_some();
        let mut next = task.next_run_ms.filter(|_| task.spec.enabled);
        if let Some((action, after)) = decide(&task, &schedule, now, starting, running) {
            next = match act(shared, &task, action, after).await {
                Ok(()) => after,
                Err(why) => {
                    warn!(task = %task.spec.name, "{why}; trying again shortly");
                    Some(now + RETRY_FAILED)
                }
            };
        }
        if let Some(next) = next {
            earliest = Some(earliest.map_or(next, |e| e.min(next)));
        }
    }
    Ok(earliest)
}

/// Does what [`decide`] said about a due task. Every write is guarded by the due time read,
/// so a task changed, disabled or deleted meanwhile is left as its change made it (and the
/// scheduler, woken by that change, reads it again).
async fn act(
    shared: &Arc<Shared>,
    task: &Task,
    action: Action,
    after: Option<i64>,
) -> Result<(), String> {
    let due = task.next_run_ms;
    let failed = |e: tether_store::StoreError| format!("core's database failed: {e}");
    match action {
        Action::Run(trigger) => {
            match runs::start(shared, task, trigger, None, due, Some(after)).await {
                Ok(_) => Ok(()),
                // A run by hand began since the look: this one is skipped, as any overlap.
                Err((ErrorCode::CONFLICT, _)) => {
                    info!(task = %task.spec.name, "skipped: a run is going on");
                    runs::skipped(shared, task, due, after)
                        .await
                        .map_err(failed)
                }
                Err((ErrorCode::NOT_FOUND, _)) => Ok(()),
                Err((_, why)) => Err(format!("the run could not start: {why}")),
            }
        }
        Action::Skip => {
            info!(task = %task.spec.name, "skipped: the run before is still going");
            runs::skipped(shared, task, due, after)
                .await
                .map_err(failed)
        }
        Action::Pass => {
            info!(task = %task.spec.name, "runs missed while core was down are not made up (catch-up none)");
            shared
                .store
                .set_task_next_run(task.id, due, after)
                .await
                .map(drop)
                .map_err(failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::config::CoreConfig;
    use crate::data_dir::DataDir;
    use chrono::TimeZone;
    use tether_store::Store;
    use tether_wire::tasks::{CatchUp, Trigger};

    /// Wall-clock time that moves with tokio's (paused) clock.
    #[derive(Debug)]
    struct TokioClock {
        base_ms: i64,
        start: tokio::time::Instant,
    }

    impl Clock for TokioClock {
        fn now_ms(&self) -> i64 {
            self.base_ms + crate::clock::millis(self.start.elapsed())
        }
    }

    fn berlin(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        chrono_tz::Europe::Berlin
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .earliest()
            .unwrap()
            .timestamp_millis()
    }

    /// The scheduler itself, on tokio's paused clock, across the spring daylight-saving change
    /// in Europe/Berlin: a run each day, the one in the gap at 03:00 CEST.
    #[tokio::test(start_paused = true)]
    async fn the_scheduler_runs_on_time_across_a_daylight_saving_change() {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = DataDir::new(tmp.path().join("core"));
        data_dir.open_or_init("127.0.0.1:1").unwrap();
        let store = Store::open(&data_dir.database_path()).unwrap();
        let base_ms = berlin(2026, 3, 28, 12, 0);
        let clock = Arc::new(TokioClock {
            base_ms,
            start: tokio::time::Instant::now(),
        });
        let shared = Shared::for_tests(
            CoreConfig::with_data_dir(tmp.path().into()),
            store.clone(),
            data_dir,
            clock,
        );
        let mut spec =
            schedule::tests::task("30 2 * * *", "Europe/Berlin", None, CatchUp::One).spec;
        spec.name = "nightly".into();
        let first = Schedule::parse(&spec.cron, &spec.timezone)
            .unwrap()
            .next_after(base_ms);
        let task = store
            .add_task(spec, "alice".into(), base_ms, first)
            .await
            .unwrap()
            .unwrap();
        let scheduler = tokio::spawn(run(shared.clone()));
        // Three days, five seconds at a time (the store's writes are real I/O: small steps keep
        // tokio's clock from running far ahead while one is under way).
        for _ in 0..3 * 86_400 / 5 {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        shared.shutdown.cancel();
        scheduler.await.unwrap();
        let mut runs = store.task_runs(task.id, 10).unwrap();
        runs.reverse();
        let due: Vec<Option<i64>> = runs.iter().map(|r| r.due_at_ms).collect();
        assert_eq!(
            due,
            [
                Some(berlin(2026, 3, 29, 3, 0)), // 02:30 does not exist that night
                Some(berlin(2026, 3, 30, 2, 30)),
                Some(berlin(2026, 3, 31, 2, 30)),
            ]
        );
        assert!(runs.iter().all(|r| r.trigger == Trigger::Schedule));
        // No user "alice" exists here: each run is recorded as failed, saying why.
        assert!(
            runs[0]
                .error
                .as_deref()
                .unwrap()
                .contains("no longer exists"),
            "{:?}",
            runs[0].error
        );
    }
}

//! Scheduled tasks in the store: unique names, numbered runs with the next due time written in
//! the same transaction, the last runs kept, runs going on marked interrupted on reopen, and a
//! deleted task leaving no runs behind.

use tether_store::{Store, TaskRefusal};
use tether_wire::admin::ExecCounts;
use tether_wire::tasks::{
    CatchUp, RUNS_KEPT, RunState, TaskCommand, TaskRun, TaskSpec, TaskTargets, Trigger,
};

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("tether.redb")).unwrap()
}

fn spec(name: &str) -> TaskSpec {
    TaskSpec {
        name: name.into(),
        description: String::new(),
        cron: "0 3 * * *".into(),
        timezone: "UTC".into(),
        targets: TaskTargets {
            all: true,
            ..Default::default()
        },
        command: TaskCommand::Command(vec!["/bin/true".into()]),
        timeout_ms: 1000,
        retries: 0,
        retry_interval_ms: 0,
        spread_ms: 0,
        catch_up: CatchUp::One,
        enabled: true,
    }
}

fn run(state: RunState) -> TaskRun {
    TaskRun {
        task_id: 0,
        run: 0,
        trigger: Trigger::Schedule,
        by: "alice".into(),
        due_at_ms: Some(1),
        started_at_ms: 2,
        finished_at_ms: None,
        state,
        error: None,
        executions: vec![],
        nodes: 0,
        counts: ExecCounts::default(),
    }
}

#[tokio::test]
async fn tasks_are_unique_by_name_and_changes_are_checked_in_the_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a = store
        .add_task(spec("a"), "alice".into(), 10, Some(100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.id, a.next_run_ms, a.last_run), (1, Some(100), 0));
    assert_eq!(
        store
            .add_task(spec("a"), "bob".into(), 11, None)
            .await
            .unwrap(),
        Err(TaskRefusal::Exists("a".into()))
    );
    // A refused change changes nothing.
    let refused = store
        .update_task("a".into(), |_| Err("no".into()))
        .await
        .unwrap();
    assert_eq!(refused, Err(TaskRefusal::Invalid("no".into())));
    assert_eq!(store.task("a").unwrap().unwrap(), a);
    // A change cannot rename or renumber.
    let changed = store
        .update_task("a".into(), |mut t| {
            t.spec.name = "renamed".into();
            t.id = 99;
            t.spec.cron = "@hourly".into();
            Ok(t)
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!((changed.id, changed.spec.name.as_str()), (1, "a"));
    assert_eq!(store.task("a").unwrap().unwrap().spec.cron, "@hourly");
    assert_eq!(
        store.update_task("zz".into(), Ok).await.unwrap(),
        Err(TaskRefusal::NotFound("zz".into()))
    );
    store
        .add_task(spec("b"), "alice".into(), 10, None)
        .await
        .unwrap()
        .unwrap();
    let names: Vec<String> = store
        .tasks()
        .unwrap()
        .into_iter()
        .map(|t| t.spec.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
}

#[tokio::test]
async fn runs_are_numbered_the_last_ones_kept_and_running_ones_interrupted_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let task = store
        .add_task(spec("t"), "alice".into(), 10, Some(100))
        .await
        .unwrap()
        .unwrap();
    // A run that was due starts only while the task is still due then: a scheduler holding
    // an older copy (due at 99) loses to the change that moved it.
    assert!(
        store
            .start_task_run(task.id, run(RunState::Running), Some(99), Some(Some(200)))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !store
            .set_task_next_run(task.id, Some(99), Some(300))
            .await
            .unwrap()
    );
    assert_eq!(store.task("t").unwrap().unwrap().next_run_ms, Some(100));
    // The run and the next due time in one transaction, with the task as it is then.
    let (as_run, first) = store
        .start_task_run(task.id, run(RunState::Running), Some(100), Some(Some(200)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.task_id, first.run), (task.id, 1));
    assert_eq!((as_run.last_run, as_run.next_run_ms), (1, Some(200)));
    assert_eq!(store.task("t").unwrap().unwrap().next_run_ms, Some(200));
    // Still going while more than RUNS_KEPT others are recorded (skips): it is never deleted.
    for _ in 0..RUNS_KEPT + 5 {
        store
            .start_task_run(task.id, run(RunState::Skipped), None, None)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        store.task_run(task.id, 1).unwrap().unwrap().state,
        RunState::Running
    );
    let mut done = first.clone();
    done.state = RunState::Success;
    store.update_task_run(done.clone()).await.unwrap();
    let (_, going) = store
        .start_task_run(task.id, run(RunState::Running), None, None)
        .await
        .unwrap()
        .unwrap();
    let runs = store.task_runs(task.id, usize::MAX).unwrap();
    assert_eq!(runs.len(), RUNS_KEPT, "the oldest were deleted once ended");
    assert!(store.task_run(task.id, 1).unwrap().is_none());
    assert_eq!(runs[0].run, going.run, "newest first");
    assert_eq!(store.task("t").unwrap().unwrap().last_run, going.run);
    store.close().await;

    let store = open(&dir);
    assert_eq!(store.interrupt_running_task_runs(500).await.unwrap(), 1);
    let newest = &store.task_runs(task.id, 1).unwrap()[0];
    assert_eq!(newest.state, RunState::Interrupted);
    assert_eq!(newest.finished_at_ms, Some(500));
    assert_eq!(store.interrupt_running_task_runs(600).await.unwrap(), 0);

    // A deleted task takes its runs along; a late update of one of them is dropped.
    let deleted = store.delete_task("t".into()).await.unwrap().unwrap();
    assert_eq!(deleted.id, task.id);
    assert!(store.task_runs(task.id, 10).unwrap().is_empty());
    store.update_task_run(done).await.unwrap();
    assert!(store.task_runs(task.id, 10).unwrap().is_empty());
    assert!(
        store
            .start_task_run(task.id, run(RunState::Running), None, None)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.delete_task("t".into()).await.unwrap(),
        Err(TaskRefusal::NotFound("t".into()))
    );
}

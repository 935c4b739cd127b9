//! Scheduled tasks with a real core and real agents: runs on schedule through two levels of
//! groups, marked with their trigger in the execution history; retries of failed nodes; the
//! overlap skip; one catch-up run after a real core restart (or none); scripts, and a node's
//! policy refusing them; bad input refused with nothing changed; the CLI end to end.

use crate::support;

use std::time::Duration;

use support::*;
use tether_client::ClientError;
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminRequest, AdminResponse, ExecStatus, Role};
use tether_wire::bytes::ByteBuf;
use tether_wire::policy::{ExecPolicy, NodePolicy};
use tether_wire::tasks::{
    CatchUp, RunState, RunView, TaskChanges, TaskCommand, TaskRun, TaskSpec, TaskTargets, TaskView,
    Trigger,
};

fn spec(name: &str, cron: &str, targets: TaskTargets, command: &[&str]) -> TaskSpec {
    TaskSpec {
        name: name.into(),
        description: String::new(),
        cron: cron.into(),
        timezone: "UTC".into(),
        targets,
        command: TaskCommand::Command(command.iter().map(|s| s.to_string()).collect()),
        timeout_ms: 30_000,
        retries: 0,
        retry_interval_ms: 0,
        spread_ms: 0,
        catch_up: CatchUp::One,
        enabled: true,
    }
}

fn all() -> TaskTargets {
    TaskTargets {
        all: true,
        ..Default::default()
    }
}

async fn add(admin: &Admin, spec: TaskSpec) -> TaskView {
    match admin
        .request(AdminRequest::TaskAdd(spec))
        .await
        .unwrap()
        .pop()
    {
        Some(AdminResponse::Task(view)) => view,
        other => panic!("unexpected {other:?}"),
    }
}

async fn history(admin: &Admin, name: &str) -> Vec<RunView> {
    let mut frames = Vec::new();
    for response in admin
        .request(AdminRequest::TaskHistory {
            name: name.into(),
            limit: 100,
            run: None,
        })
        .await
        .unwrap()
    {
        match response {
            AdminResponse::TaskRuns(runs) => frames.extend(runs),
            other => panic!("unexpected {other:?}"),
        }
    }
    tether_wire::tasks::join_runs(frames)
}

async fn run_now(admin: &Admin, name: &str) -> Result<TaskRun, ClientError> {
    match admin
        .request(AdminRequest::TaskRun { name: name.into() })
        .await?
        .pop()
    {
        Some(AdminResponse::TaskRun(run)) => Ok(run),
        other => panic!("unexpected {other:?}"),
    }
}

/// Waits for run `number` of task `name` to end.
async fn ended(admin: &Admin, name: &str, number: u64) -> RunView {
    eventually(&format!("run {number} of {name} to end"), || async {
        history(admin, name)
            .await
            .into_iter()
            .find(|r| r.run.run == number && r.run.state != RunState::Running)
    })
    .await
}

fn refused_with(result: Result<Vec<AdminResponse>, ClientError>, code: ErrorCode, says: &str) {
    match result {
        Err(ClientError::Core { code: c, message }) => {
            assert_eq!(c, code, "{message}");
            assert!(message.contains(says), "{message:?} should say {says:?}");
        }
        other => panic!("expected a refusal saying {says:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_runs_on_schedule_through_two_levels_of_groups_and_is_marked_so() {
    let (core, admin, nodes, _tmp) = start_fleet(3, |_| {}, |_| {}).await;
    for (name, parent) in [("prod", None), ("web", Some("prod"))] {
        admin
            .request(AdminRequest::GroupAdd {
                name: name.into(),
                parent: parent.map(Into::into),
                description: String::new(),
                sort_order: 0,
            })
            .await
            .unwrap();
    }
    // host-00 in prod/web (two levels below the group the task names), host-01 in prod,
    // host-02 in no group.
    for (i, group) in [(0, "web"), (1, "prod")] {
        admin
            .request(AdminRequest::NodeGroup {
                node: nodes[i].0.to_string(),
                group: Some(group.into()),
            })
            .await
            .unwrap();
    }
    let targets = TaskTargets {
        groups: vec!["prod".into()],
        ..Default::default()
    };
    let added = add(
        &admin,
        spec("tick", "*/2 * * * * *", targets, &["/bin/echo", "tick"]),
    )
    .await;
    assert_eq!(added.upcoming_ms.len(), 5);
    assert!(added.upcoming_ms.windows(2).all(|w| w[1] - w[0] == 2000));

    let run = eventually("a scheduled run to succeed", || async {
        history(&admin, "tick")
            .await
            .into_iter()
            .find(|r| r.run.state == RunState::Success)
    })
    .await;
    assert_eq!(run.run.trigger, Trigger::Schedule);
    assert!(run.run.due_at_ms.is_some());
    assert_eq!(run.run.by, "admin");
    let mut hosts: Vec<&str> = run.nodes.iter().map(|n| n.hostname.as_str()).collect();
    hosts.sort_unstable();
    assert_eq!(hosts, ["host-00", "host-01"]);
    assert!(
        run.nodes
            .iter()
            .all(|n| n.status == ExecStatus::Ok && n.tries == 1)
    );

    // The run is an execution like any other, marked with its task, run and trigger.
    let executions = admin.executions(50).await;
    let execution = executions
        .iter()
        .find(|e| e.id == run.run.executions[0])
        .expect("the run's execution is in the history");
    let origin = execution.origin.as_ref().expect("marked with its task");
    assert_eq!(
        (origin.task.as_str(), origin.run, origin.attempt),
        ("tick", run.run.run, 0)
    );
    assert_eq!(origin.trigger, Trigger::Schedule);
    assert_eq!(execution.selector, "--group prod");

    // Disabled: the schedule stops (a run already going may end), and the view says so.
    let disabled = match admin
        .request(AdminRequest::TaskEnable {
            name: "tick".into(),
            enabled: false,
        })
        .await
        .unwrap()
        .pop()
    {
        Some(AdminResponse::Task(view)) => view,
        other => panic!("unexpected {other:?}"),
    };
    assert!(disabled.upcoming_ms.is_empty());
    assert_eq!(disabled.task.next_run_ms, None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = history(&admin, "tick").await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        history(&admin, "tick").await.len(),
        settled,
        "no run while disabled"
    );

    // A manual run still works, marked manual, by the user who asked.
    let manual = run_now(&admin, "tick").await.unwrap();
    let manual = ended(&admin, "tick", manual.run).await;
    assert_eq!(manual.run.trigger, Trigger::Manual);
    assert_eq!(manual.run.state, RunState::Success);
    assert_eq!(manual.run.due_at_ms, None);

    // Deleted: gone, with its run records (the executions stay).
    admin
        .request(AdminRequest::TaskDelete {
            name: "tick".into(),
        })
        .await
        .unwrap();
    refused_with(
        admin
            .request(AdminRequest::TaskHistory {
                name: "tick".into(),
                limit: 1,
                run: None,
            })
            .await,
        ErrorCode::NOT_FOUND,
        "no task \"tick\"",
    );
    assert!(
        admin
            .executions(100)
            .await
            .iter()
            .any(|e| e.id == run.run.executions[0])
    );
    drop(core);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_nodes_are_tried_again_up_to_the_count() {
    let (_core, admin, _nodes, tmp) = start_fleet(1, |_| {}, |_| {}).await;
    // Fails the first time (exit 3), succeeds the second.
    let mark = tmp.path().join("mark");
    let script = format!(
        "if [ -e {0} ]; then echo second; else touch {0}; echo first; exit 3; fi",
        mark.display()
    );
    let mut flaky = spec("flaky", "@yearly", all(), &["/bin/sh", "-c", &script]);
    flaky.retries = 2;
    flaky.retry_interval_ms = 300;
    flaky.enabled = false;
    add(&admin, flaky).await;
    let run = run_now(&admin, "flaky").await.unwrap();
    // While it runs, a second manual run is refused, naming the run going on.
    refused_with(
        admin
            .request(AdminRequest::TaskRun {
                name: "flaky".into(),
            })
            .await,
        ErrorCode::CONFLICT,
        "is running (run 1)",
    );
    let run = ended(&admin, "flaky", run.run).await;
    assert_eq!(run.run.state, RunState::Success, "{run:?}");
    assert_eq!(run.run.executions.len(), 2, "a first try and one retry");
    assert_eq!(run.nodes.len(), 1);
    assert_eq!(
        (run.nodes[0].status, run.nodes[0].tries),
        (ExecStatus::Ok, 2)
    );
    assert_eq!(run.nodes[0].execution, run.run.executions[1]);
    let retry = admin
        .executions(10)
        .await
        .into_iter()
        .find(|e| e.id == run.run.executions[1])
        .unwrap();
    assert_eq!(retry.origin.unwrap().attempt, 1);

    // Always failing: tried 1 + 2 times, then the run fails with the last exit code.
    let mut broken = spec("broken", "@yearly", all(), &["/bin/sh", "-c", "exit 7"]);
    broken.retries = 2;
    broken.retry_interval_ms = 100;
    add(&admin, broken).await;
    let run = run_now(&admin, "broken").await.unwrap();
    let run = ended(&admin, "broken", run.run).await;
    assert_eq!(run.run.state, RunState::Failed);
    assert_eq!(run.run.executions.len(), 3);
    assert_eq!(
        (
            run.nodes[0].status,
            run.nodes[0].exit_code,
            run.nodes[0].tries
        ),
        (ExecStatus::Failed, Some(7), 3)
    );
    assert_eq!((run.run.counts.failed, run.run.counts.ok), (1, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_still_going_makes_the_next_one_skip() {
    let (_core, admin, _nodes, _tmp) = start_fleet(1, |_| {}, |_| {}).await;
    add(
        &admin,
        spec("slow", "* * * * * *", all(), &["/bin/sleep", "3"]),
    )
    .await;
    let skipped = eventually("a skipped run", || async {
        history(&admin, "slow")
            .await
            .into_iter()
            .find(|r| r.run.state == RunState::Skipped)
    })
    .await;
    assert!(
        skipped
            .run
            .error
            .as_deref()
            .unwrap()
            .contains("was still going"),
        "{skipped:?}"
    );
    assert!(skipped.run.executions.is_empty() && skipped.nodes.is_empty());
    // Never two going at once.
    let runs = history(&admin, "slow").await;
    assert!(
        runs.iter()
            .filter(|r| r.run.state == RunState::Running)
            .count()
            <= 1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_missed_while_core_was_down_make_one_catch_up_run() {
    let mut core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let mut every = spec("every", "* * * * * *", all(), &["/bin/true"]);
    every.timeout_ms = 5_000;
    add(&admin, every.clone()).await;
    let mut quiet = every;
    quiet.name = "quiet".into();
    quiet.catch_up = CatchUp::None;
    add(&admin, quiet).await;
    eventually("a scheduled run", || async {
        (!history(&admin, "every").await.is_empty()).then_some(())
    })
    .await;
    drop(admin);

    // A real restart: the core stops, seconds pass (several due times), a new one starts on
    // the same data directory.
    let addr = core.addr;
    core.stop().await;
    let stopped_at = tether_wire::units::unix_ms(std::time::SystemTime::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut config = test_config(&core.data());
    config.listen = addr;
    let restarted = tether_core::Core::start(config)
        .await
        .expect("core restarts");
    let admin = core.admin().await;

    let catch_up = eventually("the catch-up run", || async {
        history(&admin, "every")
            .await
            .into_iter()
            .find(|r| r.run.trigger == Trigger::CatchUp)
    })
    .await;
    let due = catch_up.run.due_at_ms.unwrap();
    assert!(
        due > stopped_at - 1500,
        "due while core was down: {due} vs {stopped_at}"
    );
    // Then the schedule goes on, and there was exactly one catch-up: never a burst.
    eventually("a scheduled run after the restart", || async {
        history(&admin, "every").await.into_iter().find(|r| {
            r.run.trigger == Trigger::Schedule && r.run.started_at_ms > catch_up.run.started_at_ms
        })
    })
    .await;
    let runs = history(&admin, "every").await;
    assert_eq!(
        runs.iter()
            .filter(|r| r.run.trigger == Trigger::CatchUp)
            .count(),
        1
    );
    // Catch-up none: no run for what was missed, and the schedule goes on.
    let restarted_at = tether_wire::units::unix_ms(std::time::SystemTime::now()) - 1000;
    eventually("quiet's schedule after the restart", || async {
        history(&admin, "quiet")
            .await
            .into_iter()
            .find(|r| r.run.trigger == Trigger::Schedule && r.run.started_at_ms > restarted_at)
    })
    .await;
    let quiet = history(&admin, "quiet").await;
    assert!(
        quiet.iter().all(|r| r.run.trigger != Trigger::CatchUp),
        "{quiet:?}"
    );
    drop(admin);
    restarted.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scripts_run_by_their_interpreter_line_where_the_policy_allows() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let tmp = tempfile::tempdir().unwrap();
    let open = LibNode::start(
        &tmp.path().join("open"),
        core.addr,
        Some(core.token()),
        |c| {
            c.hostname = Some("open".into());
        },
    );
    let strict = LibNode::start(
        &tmp.path().join("strict"),
        core.addr,
        Some(core.token()),
        |c| {
            c.hostname = Some("strict".into());
            c.policy = NodePolicy {
                exec: ExecPolicy::AllowList,
                allow: vec!["/bin/echo".into()],
                tty: false,
            };
        },
    );
    for dir in ["open", "strict"] {
        let id = node_id_in(&tmp.path().join(dir)).await;
        wait_status(&admin, id, tether_wire::admin::NodeStatus::Online).await;
    }
    let mut task = spec("report", "@yearly", all(), &[]);
    task.command = TaskCommand::Script {
        name: "report.sh".into(),
        body: ByteBuf(b"#!/bin/sh\necho from a script\n".to_vec()),
    };
    add(&admin, task).await;
    let run = run_now(&admin, "report").await.unwrap();
    let run = ended(&admin, "report", run.run).await;
    assert_eq!(
        run.run.state,
        RunState::Failed,
        "the strict node refuses: {run:?}"
    );
    let by_host = |h: &str| run.nodes.iter().find(|n| n.hostname == h).unwrap().clone();
    assert_eq!(by_host("open").status, ExecStatus::Ok);
    let strict_result = by_host("strict");
    assert_eq!(strict_result.status, ExecStatus::Refused);
    assert!(
        strict_result.error.as_deref().unwrap().contains("a script"),
        "{strict_result:?}"
    );
    // The output is kept as for any execution.
    let shown = admin
        .request(AdminRequest::ShowExec {
            id: run.run.executions[0].to_string(),
        })
        .await
        .unwrap();
    let Some(AdminResponse::Execution(detail)) = shown.into_iter().next() else {
        panic!("no execution")
    };
    let open_output = detail
        .nodes
        .iter()
        .find(|n| n.hostname == "open")
        .and_then(|n| n.stdout.clone())
        .unwrap();
    assert!(
        String::from_utf8_lossy(&open_output.0).starts_with("from a script"),
        "{open_output:?}"
    );
    // The script's file is gone once it has run.
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("open/scripts"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    open.stop().await.unwrap();
    strict.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tasks_are_clear_errors_and_change_nothing() {
    let (core, admin, nodes, _tmp) = start_fleet(1, |_| {}, |_| {}).await;
    add(&admin, spec("kept", "0 3 * * *", all(), &["/bin/true"])).await;
    let before = history(&admin, "kept").await;
    let list = || async {
        match admin.request(AdminRequest::TaskList).await.unwrap().pop() {
            Some(AdminResponse::Tasks(tasks)) => tasks,
            other => panic!("unexpected {other:?}"),
        }
    };
    let tasks_before = list().await;

    let cases: Vec<(TaskSpec, ErrorCode, &str)> = vec![
        (
            spec("a", "61 * * * *", all(), &["/bin/true"]),
            ErrorCode::INVALID_ARGUMENT,
            "invalid cron expression \"61 * * * *\"",
        ),
        (
            spec("a", "* * *", all(), &["/bin/true"]),
            ErrorCode::INVALID_ARGUMENT,
            "five fields",
        ),
        (
            TaskSpec {
                timezone: "Mars/Olympus".into(),
                ..spec("a", "0 3 * * *", all(), &["/bin/true"])
            },
            ErrorCode::INVALID_ARGUMENT,
            "unknown time zone \"Mars/Olympus\"",
        ),
        (
            spec(
                "a",
                "0 3 * * *",
                TaskTargets {
                    groups: vec!["nowhere".into()],
                    ..Default::default()
                },
                &["/bin/true"],
            ),
            ErrorCode::NOT_FOUND,
            "no group \"nowhere\"",
        ),
        (
            spec(
                "a",
                "0 3 * * *",
                TaskTargets {
                    nodes: vec!["no-such-host".into()],
                    ..Default::default()
                },
                &["/bin/true"],
            ),
            ErrorCode::NOT_FOUND,
            "no-such-host",
        ),
        (
            spec("a", "0 3 * * *", TaskTargets::default(), &["/bin/true"]),
            ErrorCode::INVALID_ARGUMENT,
            "needs targets",
        ),
        (
            spec("a", "0 3 * * *", all(), &[]),
            ErrorCode::INVALID_ARGUMENT,
            "empty",
        ),
        (
            TaskSpec {
                command: TaskCommand::Script {
                    name: "big.sh".into(),
                    body: ByteBuf([b"#!/bin/sh\n".as_slice(), &vec![b'#'; 300 * 1024]].concat()),
                },
                ..spec("a", "0 3 * * *", all(), &[])
            },
            ErrorCode::INVALID_ARGUMENT,
            "the limit is 262144",
        ),
        (
            TaskSpec {
                command: TaskCommand::Script {
                    name: "plain.sh".into(),
                    body: ByteBuf(b"echo hi\n".to_vec()),
                },
                ..spec("a", "0 3 * * *", all(), &[])
            },
            ErrorCode::INVALID_ARGUMENT,
            "interpreter line",
        ),
        (
            spec("kept", "0 4 * * *", all(), &["/bin/false"]),
            ErrorCode::CONFLICT,
            "task \"kept\" exists already",
        ),
    ];
    for (bad, code, says) in cases {
        refused_with(admin.request(AdminRequest::TaskAdd(bad)).await, code, says);
    }
    // An edit with a bad expression leaves the task as it was.
    refused_with(
        admin
            .request(AdminRequest::TaskEdit {
                name: "kept".into(),
                changes: TaskChanges {
                    cron: Some("0 0 30 2 *".into()),
                    ..Default::default()
                },
            })
            .await,
        ErrorCode::INVALID_ARGUMENT,
        "never comes due",
    );
    refused_with(
        admin
            .request(AdminRequest::TaskEdit {
                name: "kept".into(),
                changes: TaskChanges::default(),
            })
            .await,
        ErrorCode::INVALID_ARGUMENT,
        "nothing to change",
    );
    assert_eq!(list().await, tasks_before, "nothing changed");
    assert_eq!(history(&admin, "kept").await, before);

    // A good edit: the schedule moves, the rest stays.
    let edited = match admin
        .request(AdminRequest::TaskEdit {
            name: "kept".into(),
            changes: TaskChanges {
                cron: Some("30 4 * * *".into()),
                timezone: Some("Asia/Tokyo".into()),
                ..Default::default()
            },
        })
        .await
        .unwrap()
        .pop()
    {
        Some(AdminResponse::Task(view)) => view,
        other => panic!("unexpected {other:?}"),
    };
    // 04:30 in Tokyo is 19:30 UTC.
    let next = edited.upcoming_ms[0];
    assert_eq!(next.rem_euclid(86_400_000), (19 * 3600 + 30 * 60) * 1000);
    assert_eq!(edited.task.spec.command, tasks_before[0].task.spec.command);

    // A viewer may look, not add or run.
    let viewer = core.user(&admin.0, "vera", Role::Viewer).await;
    assert!(viewer.1.request(&AdminRequest::TaskList).await.is_ok());
    refused_with(
        viewer
            .1
            .request(&AdminRequest::TaskRun {
                name: "kept".into(),
            })
            .await,
        ErrorCode::PERMISSION_DENIED,
        "tasks.execute",
    );
    refused_with(
        viewer
            .1
            .request(&AdminRequest::TaskAdd(spec(
                "v",
                "0 3 * * *",
                all(),
                &["/bin/true"],
            )))
            .await,
        ErrorCode::PERMISSION_DENIED,
        "tasks.create",
    );
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_whose_owner_is_disabled_does_not_run() {
    let (core, admin, _nodes, _tmp) = start_fleet(1, |_| {}, |_| {}).await;
    let olga = core.user(&admin.0, "olga", Role::Operator).await;
    olga.1
        .request(&AdminRequest::TaskAdd(spec(
            "olgas",
            "@yearly",
            all(),
            &["/bin/true"],
        )))
        .await
        .unwrap();
    admin
        .request(AdminRequest::UserEnable {
            name: "olga".into(),
            enabled: false,
        })
        .await
        .unwrap();
    let run = run_now(&admin, "olgas").await.unwrap();
    let run = ended(&admin, "olgas", run.run).await;
    assert_eq!(run.run.state, RunState::Failed);
    assert!(
        run.run
            .error
            .as_deref()
            .unwrap()
            .contains("its owner \"olga\" is disabled"),
        "{run:?}"
    );
    assert!(run.run.executions.is_empty(), "nothing ran");

    // An admin who changes it takes it over: it runs in their name from then on.
    let edited = match admin
        .request(AdminRequest::TaskEdit {
            name: "olgas".into(),
            changes: TaskChanges {
                description: Some("taken over".into()),
                ..Default::default()
            },
        })
        .await
        .unwrap()
        .pop()
    {
        Some(AdminResponse::Task(view)) => view,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        (
            edited.task.created_by.as_str(),
            edited.task.updated_by.as_str()
        ),
        ("olga", "admin")
    );
    let run = run_now(&admin, "olgas").await.unwrap();
    let run = ended(&admin, "olgas", run.run).await;
    assert_eq!(run.run.state, RunState::Success, "{run:?}");
    let execution = admin
        .executions(10)
        .await
        .into_iter()
        .find(|e| e.id == run.run.executions[0])
        .unwrap();
    assert_eq!(execution.admin, "admin");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_adds_runs_and_shows_tasks() {
    let (core, _admin, _nodes, tmp) = start_fleet(1, |_| {}, |_| {}).await;
    let identity = core.data().join("admin.identity");
    let addr = core.addr.to_string();
    let added = tether_json(
        &identity,
        &addr,
        &[
            "task",
            "add",
            "hello",
            "--cron",
            "0 3 * * *",
            "--timezone",
            "Europe/Berlin",
            "--all",
            "--retries",
            "1",
            "--retry-interval",
            "2s",
            "--timeout",
            "1m",
            "--json",
            "--",
            "/bin/echo",
            "hello",
        ],
    );
    assert_eq!(added["task"]["spec"]["retries"], 1);
    assert_eq!(added["task"]["spec"]["retry_interval_ms"], 2000);
    assert_eq!(added["task"]["spec"]["timeout_ms"], 60_000);
    assert_eq!(added["upcoming_ms"].as_array().unwrap().len(), 5);

    let list = tether(&identity, &addr, &["task", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("hello") && text.contains("0 3 * * * Europe/Berlin"),
        "{text}"
    );

    let run = tether(&identity, &addr, &["task", "run", "hello", "--wait"]);
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(text.contains("run 1  success  manual"), "{text}");
    assert!(text.contains("host-00") && text.contains("ok"), "{text}");

    let history = tether_json(&identity, &addr, &["task", "history", "hello", "--json"]);
    assert_eq!(history[0]["state"], "success");
    assert_eq!(history[0]["trigger"], "manual");
    assert_eq!(history[0]["results"][0]["hostname"], "host-00");
    assert_eq!(history[0]["results"][0]["status"], "ok");

    // exec history says which task ran it.
    let exec = tether(&identity, &addr, &["exec", "history"]);
    let text = String::from_utf8_lossy(&exec.stdout);
    assert!(text.contains("(task hello run 1 (manual))"), "{text}");

    // A script from a file.
    let script = tmp.path().join("hi.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi from a script\n").unwrap();
    let out = tether(
        &identity,
        &addr,
        &[
            "task",
            "add",
            "scripted",
            "--cron",
            "@daily",
            "--all",
            "--script",
            script.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let shown = tether(&identity, &addr, &["task", "show", "scripted"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("script hi.sh (32 bytes)"), "{text}");
    assert!(text.contains("next runs"), "{text}");

    // Bad input: a clear error, exit status 1, nothing added.
    let bad = tether(
        &identity,
        &addr,
        &[
            "task",
            "add",
            "bad",
            "--cron",
            "nope",
            "--all",
            "--",
            "/bin/true",
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("invalid cron expression \"nope\""), "{err}");
    let no_targets = tether(
        &identity,
        &addr,
        &["task", "add", "bad", "--cron", "@daily", "--", "/bin/true"],
    );
    assert!(String::from_utf8_lossy(&no_targets.stderr).contains("a task needs targets"));
    let list = tether_json(&identity, &addr, &["task", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 2);

    let disabled = tether(&identity, &addr, &["task", "disable", "hello"]);
    assert!(String::from_utf8_lossy(&disabled.stdout).contains("Disabled task hello"));
    let deleted = tether(&identity, &addr, &["task", "delete", "hello"]);
    assert!(String::from_utf8_lossy(&deleted.stdout).contains("Deleted task hello"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spread_scatters_the_nodes_starts_over_its_window() {
    let (_core, admin, _nodes, _tmp) = start_fleet(8, |_| {}, |_| {}).await;
    let mut spread = spec("spread", "@yearly", all(), &["/bin/true"]);
    spread.spread_ms = 4_000;
    add(&admin, spread).await;
    let run = run_now(&admin, "spread").await.unwrap();
    let run = ended(&admin, "spread", run.run).await;
    assert_eq!(run.run.state, RunState::Success, "{run:?}");
    let shown = admin
        .request(AdminRequest::ShowExec {
            id: run.run.executions[0].to_string(),
        })
        .await
        .unwrap();
    let Some(AdminResponse::Execution(detail)) = shown.into_iter().next() else {
        panic!("no execution")
    };
    let offsets: Vec<i64> = detail
        .nodes
        .iter()
        .map(|n| n.started_at_ms.unwrap() - run.run.started_at_ms)
        .collect();
    // Each node waits its share of the window: not all at once (eight shares all in the first
    // quarter would be a chance of 1 in 65,000; no start takes a second by itself), none long
    // past its end.
    assert!(offsets.iter().any(|o| *o >= 1_000), "{offsets:?}");
    assert!(offsets.iter().all(|o| *o < 30_000), "{offsets:?}");
}

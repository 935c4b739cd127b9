//! The store on real redb files in temp dirs.

use tether_store::*;
use tether_wire::admin::{ApplicationStatus, NodeStatus};
use tether_wire::facts::StaticFacts;
use tether_wire::tty::{TtyStatus, WindowSize};
use tether_wire::{ApplicationId, NodeId, TtySessionId};

fn new_app(node_id: NodeId, key: &str, nonce: u8) -> NewApplication {
    NewApplication {
        node_id,
        hostname: "web-1".into(),
        public_key_pem: key.into(),
        key_fingerprint: "ff".into(),
        agent_version: "0.1.0".into(),
        remote_addr: Some("127.0.0.1:5000".into()),
        nonce: vec![nonce; 64],
        nonce_expires_secs: 1_000,
        now_ms: 10,
        max_pending: 3,
        auto_approve_secret: None,
    }
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("tether.redb")).unwrap()
}

fn approve(secret: u8) -> Decision {
    Decision::Approve {
        by: "alice".into(),
        secret: [secret; 32],
        now_ms: 20,
    }
}

#[tokio::test]
async fn enrollment_is_idempotent_and_nonces_are_single_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let node = NodeId::random();

    let Submission::Pending(first) = store
        .submit_application(new_app(node, "K", 1))
        .await
        .unwrap()
    else {
        panic!("expected pending");
    };
    // Same node, same key, fresh nonce: the same application, no duplicate, no error.
    let Submission::Pending(again) = store
        .submit_application(new_app(node, "K", 2))
        .await
        .unwrap()
    else {
        panic!("expected pending again");
    };
    assert_eq!(first.id, again.id);
    assert_eq!(store.applications(None).unwrap().len(), 1);
    assert_eq!(store.pending_count().unwrap(), 1);

    // The same nonce twice is a replay, whatever else the request says.
    assert!(matches!(
        store
            .submit_application(new_app(node, "K", 2))
            .await
            .unwrap(),
        Submission::ReplayedNonce
    ));
    assert!(matches!(
        store
            .submit_application(new_app(NodeId::random(), "K", 1))
            .await
            .unwrap(),
        Submission::ReplayedNonce
    ));
    // Same node id, another key: refused.
    assert!(matches!(
        store
            .submit_application(new_app(node, "OTHER", 3))
            .await
            .unwrap(),
        Submission::KeyMismatch
    ));
    assert_eq!(
        store.applications(None).unwrap().len(),
        1,
        "nothing added by refusals"
    );
}

#[tokio::test]
async fn approval_creates_node_and_secret_and_is_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let node = NodeId::random();
    let Submission::Pending(app) = store
        .submit_application(new_app(node, "K", 1))
        .await
        .unwrap()
    else {
        panic!()
    };

    let DecisionOutcome::Approved {
        node: record,
        secret,
        ..
    } = store.decide_application(app.id, approve(7)).await.unwrap()
    else {
        panic!("expected approval")
    };
    assert_eq!(record.id, node);
    assert!(record.labels.is_empty() && !record.deleted && !record.maintenance);
    assert_eq!(secret, [7; 32]);
    assert_eq!(store.secret(node).unwrap(), Some([7; 32]));
    assert_eq!(store.pending_count().unwrap(), 0);
    assert_eq!(
        store.application(app.id).unwrap().unwrap().status,
        ApplicationStatus::Approved
    );

    // Approving again returns the same secret; it does not mint a new one.
    let DecisionOutcome::Approved { secret, .. } =
        store.decide_application(app.id, approve(9)).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(secret, [7; 32]);
    // Rejecting an approved application is a conflict.
    assert!(matches!(
        store
            .decide_application(
                app.id,
                Decision::Reject {
                    by: "bob".into(),
                    reason: "x".into(),
                    now_ms: 30
                }
            )
            .await
            .unwrap(),
        DecisionOutcome::Conflict(_)
    ));
    // The node asking again (it lost its secret file) gets the same secret back.
    let Submission::Approved { secret, .. } = store
        .submit_application(new_app(node, "K", 4))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(secret, [7; 32]);
    // With another key it is refused.
    assert!(matches!(
        store
            .submit_application(new_app(node, "OTHER", 5))
            .await
            .unwrap(),
        Submission::KeyMismatch
    ));
    assert!(matches!(
        store
            .decide_application(ApplicationId::random(), approve(1))
            .await
            .unwrap(),
        DecisionOutcome::NotFound
    ));
}

#[tokio::test]
async fn rejection_sticks_and_deleted_nodes_stay_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);

    let rejected = NodeId::random();
    let Submission::Pending(app) = store
        .submit_application(new_app(rejected, "K", 1))
        .await
        .unwrap()
    else {
        panic!()
    };
    let reject = Decision::Reject {
        by: "bob".into(),
        reason: "unknown machine".into(),
        now_ms: 5,
    };
    assert!(matches!(
        store
            .decide_application(app.id, reject.clone())
            .await
            .unwrap(),
        DecisionOutcome::Rejected(_)
    ));
    let Submission::Rejected(again) = store
        .submit_application(new_app(rejected, "K", 2))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(again.reason.as_deref(), Some("unknown machine"));
    assert!(matches!(
        store.decide_application(app.id, approve(1)).await.unwrap(),
        DecisionOutcome::Conflict(_)
    ));

    let deleted = NodeId::random();
    let Submission::Pending(app) = store
        .submit_application(new_app(deleted, "K2", 3))
        .await
        .unwrap()
    else {
        panic!()
    };
    store.decide_application(app.id, approve(2)).await.unwrap();
    let record = store
        .delete_node(deleted, "alice".into(), 50)
        .await
        .unwrap()
        .unwrap();
    assert!(record.deleted);
    assert_eq!(store.secret(deleted).unwrap(), None, "secret revoked");
    assert!(matches!(
        store
            .submit_application(new_app(deleted, "K2", 4))
            .await
            .unwrap(),
        Submission::NodeRemoved
    ));
    // Still listed, marked deleted.
    assert!(store.node(deleted).unwrap().unwrap().record.deleted);
}

#[tokio::test]
async fn pending_applications_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for i in 0..3 {
        assert!(matches!(
            store
                .submit_application(new_app(NodeId::random(), "K", i))
                .await
                .unwrap(),
            Submission::Pending(_)
        ));
    }
    assert!(matches!(
        store
            .submit_application(new_app(NodeId::random(), "K", 10))
            .await
            .unwrap(),
        Submission::TooManyPending { limit: 3 }
    ));
    // Auto-approval does not queue, so the cap does not apply to it.
    let mut auto = new_app(NodeId::random(), "K", 11);
    auto.auto_approve_secret = Some([1; 32]);
    assert!(matches!(
        store.submit_application(auto).await.unwrap(),
        Submission::Approved { .. }
    ));
}

#[tokio::test]
async fn nonces_expire_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut early = new_app(NodeId::random(), "K", 1);
    early.nonce_expires_secs = 100;
    let mut late = new_app(NodeId::random(), "K", 2);
    late.nonce_expires_secs = 200;
    store.submit_application(early).await.unwrap();
    store.submit_application(late).await.unwrap();

    assert_eq!(
        store.expire_nonces(100).await.unwrap(),
        0,
        "expiry is exclusive"
    );
    assert_eq!(store.expire_nonces(150).await.unwrap(), 1);
    assert!(!store.nonce_known(&[1; 64]).unwrap());
    assert!(store.nonce_known(&[2; 64]).unwrap());
    assert_eq!(store.expire_nonces(1_000).await.unwrap(), 1);
    assert!(!store.nonce_known(&[2; 64]).unwrap());
}

#[tokio::test]
async fn everything_acknowledged_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeId::random();
    {
        let store = open(&dir);
        let Submission::Pending(app) = store
            .submit_application(new_app(node, "K", 1))
            .await
            .unwrap()
        else {
            panic!()
        };
        store.decide_application(app.id, approve(3)).await.unwrap();
        store
            .update_node(node, 40, |n| {
                n.labels.insert("env".into(), "prod".into());
                true
            })
            .await
            .unwrap();
        store
            .record_connectivity(ConnectivityChange {
                node_id: node,
                status: NodeStatus::Online,
                reason: "connected".into(),
                at_ms: 50,
                public_addr: Some("10.0.0.1:999".into()),
                agent_version: Some("0.2.0".into()),
                last_seen_ms: Some(50),
                clock_skew_ms: None,
            })
            .await
            .unwrap();
        let facts = StaticFacts {
            hostname: "renamed".into(),
            cpu_count: 8,
            ..Default::default()
        };
        store.set_static_facts(node, facts, 60).await.unwrap();
        store.close().await;
    }
    let store = open(&dir);
    let detail = store.node(node).unwrap().unwrap();
    assert_eq!(
        detail.record.labels.get("env").map(String::as_str),
        Some("prod")
    );
    assert_eq!(detail.record.hostname, "renamed");
    assert_eq!(detail.record.connectivity, NodeStatus::Online);
    assert_eq!(detail.record.agent_version, "0.2.0");
    assert_eq!(detail.facts.unwrap().cpu_count, 8);
    assert_eq!(detail.last_seen_ms, Some(50));
    assert_eq!(store.secret(node).unwrap(), Some([3; 32]));

    // After a restart nothing is online.
    assert_eq!(
        store
            .mark_all_offline(70, "core restarted".into())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.node(node).unwrap().unwrap().record.connectivity,
        NodeStatus::Offline
    );
    let log = store.status_log(Some(node), 10).unwrap();
    assert_eq!(log[0].reason, "core restarted");
    assert_eq!(log.len(), 3, "approved, online, restarted");
}

#[tokio::test]
async fn the_database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let _store = open(&dir);
    let mode = std::fs::metadata(dir.path().join("tether.redb"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn second_open_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(&dir);
    let err = Store::open(&dir.path().join("tether.redb")).unwrap_err();
    assert!(matches!(err, StoreError::InUse(_)), "{err}");
    assert!(err.to_string().contains("another tether-core"));
}

#[tokio::test]
async fn many_concurrent_writes_all_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut tasks = Vec::new();
    for i in 0..500u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut app = new_app(NodeId::random(), "K", 0);
            app.nonce = i.to_be_bytes().repeat(16);
            app.auto_approve_secret = Some([5; 32]);
            store.submit_application(app).await.unwrap()
        }));
    }
    for task in tasks {
        assert!(matches!(task.await.unwrap(), Submission::Approved { .. }));
    }
    assert_eq!(store.nodes().unwrap().len(), 500);
}

#[tokio::test]
async fn ids_resolve_by_unique_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a: NodeId = "aaaa1111-0000-4000-8000-000000000000".parse().unwrap();
    let b: NodeId = "aaaa2222-0000-4000-8000-000000000000".parse().unwrap();
    for (i, id) in [a, b].into_iter().enumerate() {
        let mut app = new_app(id, "K", i as u8);
        app.auto_approve_secret = Some([1; 32]);
        store.submit_application(app).await.unwrap();
    }
    assert_eq!(store.resolve_node("aaaa1").unwrap(), Resolved::One(a));
    assert_eq!(
        store.resolve_node(&b.to_string()).unwrap(),
        Resolved::One(b)
    );
    assert_eq!(store.resolve_node("AAAA-2").unwrap(), Resolved::One(b));
    assert!(matches!(store.resolve_node("aaaa").unwrap(), Resolved::Ambiguous(v) if v.len() == 2));
    assert_eq!(store.resolve_node("b").unwrap(), Resolved::NotFound);
    assert!(matches!(
        store.resolve_node("zz").unwrap(),
        Resolved::Invalid(_)
    ));
}

#[tokio::test]
async fn nodes_are_found_by_exact_hostname_through_renames_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (NodeId::random(), NodeId::random());
    {
        let store = open(&dir);
        for (i, id) in [a, b].into_iter().enumerate() {
            let mut app = new_app(id, "K", i as u8);
            app.auto_approve_secret = Some([1; 32]);
            store.submit_application(app).await.unwrap();
        }
        let ids = |records: Vec<tether_store::NodeRecord>| {
            let mut ids: Vec<NodeId> = records.into_iter().map(|r| r.id).collect();
            ids.sort();
            ids
        };
        let mut both = vec![a, b];
        both.sort();
        assert_eq!(ids(store.nodes_by_hostname("web-1").unwrap()), both);
        assert!(
            store.nodes_by_hostname("web").unwrap().is_empty(),
            "exact only"
        );
        let facts = StaticFacts {
            hostname: "db-1".into(),
            ..Default::default()
        };
        store.set_static_facts(b, facts, 10).await.unwrap();
        assert_eq!(ids(store.nodes_by_hostname("web-1").unwrap()), vec![a]);
        assert_eq!(ids(store.nodes_by_hostname("db-1").unwrap()), vec![b]);
        store.delete_node(a, "admin".into(), 20).await.unwrap();
        let kept = store.nodes_by_hostname("web-1").unwrap();
        assert!(kept[0].deleted, "deleted nodes stay findable");
        store.close().await;
    }
    let store = open(&dir);
    assert_eq!(store.nodes_by_hostname("db-1").unwrap()[0].id, b);
    assert!(store.nodes_by_hostname("web-1").unwrap()[0].deleted);
}

fn execution(id: tether_wire::ExecutionId, at: i64) -> ExecutionRecord {
    ExecutionRecord {
        id,
        admin: "alice".into(),
        command: vec!["true".into()],
        env_keys: vec![],
        cwd: None,
        timeout_ms: None,
        selector: "--all".into(),
        created_at_ms: at,
        finished_at_ms: None,
        state: tether_wire::admin::ExecutionState::Running,
        node_count: 0,
        counts: Default::default(),
        output_pruned_at_ms: None,
        origin: None,
    }
}

#[tokio::test]
async fn executions_keep_counts_and_running_ones_are_interrupted_on_reopen() {
    use tether_wire::admin::{ExecStatus, ExecutionState};
    use tether_wire::exec::OutputStream;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (NodeId::random(), NodeId::random());
    let finished = tether_wire::ExecutionId::random();
    let running = tether_wire::ExecutionId::random();
    {
        let store = open(&dir);
        for (id, at) in [(finished, 10), (running, 20)] {
            store
                .create_execution(execution(id, at), vec![(a, "a".into()), (b, "b".into())])
                .await
                .unwrap();
        }
        let mut done = NodeExecRecord::pending(a, "a".into());
        done.status = ExecStatus::Ok;
        store
            .update_exec_node(finished, done.clone())
            .await
            .unwrap();
        done.node_id = b;
        done.status = ExecStatus::Failed;
        store.update_exec_node(finished, done).await.unwrap();
        store
            .finish_execution(finished, ExecutionState::Finished, 30)
            .await
            .unwrap();
        store
            .append_exec_output(finished, a, 0, OutputStream::Stdout, b"out ".to_vec())
            .await
            .unwrap();
        store
            .append_exec_output(finished, a, 1, OutputStream::Stderr, b"err".to_vec())
            .await
            .unwrap();
        store
            .append_exec_output(finished, a, 2, OutputStream::Stdout, b"more".to_vec())
            .await
            .unwrap();

        let mut started = NodeExecRecord::pending(a, "a".into());
        started.status = ExecStatus::Running;
        store.update_exec_node(running, started).await.unwrap();
        let (record, _) = store.execution(running).unwrap().unwrap();
        assert_eq!(record.counts.unfinished, 2);
        store.close().await;
    }
    let store = open(&dir);
    assert_eq!(store.interrupt_running_executions(40).await.unwrap(), 1);
    let (record, nodes) = store.execution(running).unwrap().unwrap();
    assert_eq!(record.state, ExecutionState::Interrupted);
    assert_eq!(
        (record.counts.interrupted, record.counts.unfinished),
        (2, 0)
    );
    assert!(nodes.iter().all(|n| n.status == ExecStatus::Interrupted));

    let (record, _) = store.execution(finished).unwrap().unwrap();
    assert_eq!(record.state, ExecutionState::Finished);
    assert_eq!(
        (
            record.counts.ok,
            record.counts.failed,
            record.counts.unfinished
        ),
        (1, 1, 0)
    );
    assert_eq!(
        store.exec_output(finished, a).unwrap(),
        (b"out more".to_vec(), b"err".to_vec())
    );

    let newest_first: Vec<_> = store
        .executions(None, 10)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(newest_first, vec![running, finished]);
    assert_eq!(store.executions(Some(b), 1).unwrap()[0].id, running);
    assert!(
        store
            .executions(Some(NodeId::random()), 10)
            .unwrap()
            .is_empty()
    );
}

fn session(node: NodeId, at_ms: i64) -> TtySessionRecord {
    TtySessionRecord {
        id: TtySessionId::random(),
        node_id: node,
        hostname: "web-1".into(),
        user: "alice".into(),
        status: TtyStatus::Pending,
        command: "/bin/bash --login".into(),
        size: WindowSize::DEFAULT,
        created_at_ms: at_ms,
        connected_at_ms: None,
        closed_at_ms: None,
        client_addr: None,
        node_addr: None,
        recording: None,
        recording_note: None,
        error: None,
        exit: None,
        output_bytes: 0,
        input_bytes: 0,
    }
}

#[tokio::test]
async fn sessions_are_listed_updated_and_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.redb");
    let store = Store::open(&path).unwrap();
    let (a, b) = (NodeId::random(), NodeId::random());
    let first = session(a, 1_000);
    let second = session(b, 2_000);
    let third = session(a, 3_000);
    for record in [&first, &second, &third] {
        store.create_tty_session(record.clone()).await.unwrap();
    }
    // The first one closes; its record is final afterwards.
    store
        .update_tty_session(first.id, |r| {
            r.status = TtyStatus::Closed;
            r.closed_at_ms = Some(1_500);
        })
        .await
        .unwrap();
    let after = store
        .update_tty_session(first.id, |r| r.status = TtyStatus::Connected)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.status, TtyStatus::Closed, "an ended record is final");

    let ids = |list: Vec<TtySessionRecord>| list.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.tty_sessions(None, false, 10).unwrap()),
        [third.id, second.id, first.id]
    );
    assert_eq!(
        ids(store.tty_sessions(Some(a), false, 10).unwrap()),
        [third.id, first.id]
    );
    assert_eq!(
        ids(store.tty_sessions(None, true, 10).unwrap()),
        [third.id, second.id]
    );
    assert_eq!(ids(store.tty_sessions(None, false, 1).unwrap()), [third.id]);

    store.close().await;
    let store = Store::open(&path).unwrap();
    let interrupted = store
        .interrupt_live_tty_sessions(9_000, "core restarted".into())
        .await
        .unwrap();
    assert_eq!(interrupted, 2);
    let record = store.tty_session(second.id).unwrap().unwrap();
    assert_eq!(record.status, TtyStatus::Error);
    assert_eq!(record.error.as_deref(), Some("core restarted"));
    assert_eq!(record.closed_at_ms, Some(9_000));
    assert!(store.tty_sessions(None, true, 10).unwrap().is_empty());
    assert_eq!(
        store.tty_session(first.id).unwrap().unwrap().status,
        TtyStatus::Closed
    );
}

#[tokio::test]
async fn allowed_users_change_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("core.redb")).unwrap();
    let missing = NodeId::random();
    assert_eq!(
        store
            .change_allowed_users(missing, vec!["bob".into()], vec![], 4)
            .await
            .unwrap(),
        AccessChange::NoNode
    );
    let node = NodeId::random();
    let Submission::Pending(app) = store
        .submit_application(new_app(node, "K", 1))
        .await
        .unwrap()
    else {
        panic!()
    };
    store.decide_application(app.id, approve(7)).await.unwrap();
    let change = |add: &[&str], remove: &[&str]| {
        store.change_allowed_users(
            node,
            add.iter().map(|s| s.to_string()).collect(),
            remove.iter().map(|s| s.to_string()).collect(),
            3,
        )
    };
    assert_eq!(
        change(&["carol", "bob", "bob"], &[]).await.unwrap(),
        AccessChange::Updated(vec!["bob".into(), "carol".into()])
    );
    assert_eq!(
        change(&["dave", "erin"], &[]).await.unwrap(),
        AccessChange::TooMany
    );
    assert_eq!(store.allowed_users(node).unwrap(), ["bob", "carol"]);
    assert_eq!(
        change(&[], &["bob"]).await.unwrap(),
        AccessChange::Updated(vec!["carol".into()])
    );
    assert_eq!(store.node(node).unwrap().unwrap().allowed_users, ["carol"]);
}

/// An execution at `at` on `nodes` nodes, finished, each node with `output` bytes kept.
async fn finished_execution(
    store: &Store,
    at: i64,
    nodes: usize,
    output: usize,
) -> ExecutionRecord {
    use tether_wire::admin::{ExecStatus, ExecutionState};
    let record = execution(tether_wire::ExecutionId::random(), at);
    let targets: Vec<(NodeId, String)> = (0..nodes)
        .map(|i| (NodeId::random(), format!("host-{i}")))
        .collect();
    store
        .create_execution(record.clone(), targets.clone())
        .await
        .unwrap();
    for (node, hostname) in targets {
        let mut done = NodeExecRecord::pending(node, hostname);
        done.status = ExecStatus::Ok;
        store.update_exec_node(record.id, done).await.unwrap();
        if output > 0 {
            store
                .append_exec_output(
                    record.id,
                    node,
                    0,
                    tether_wire::exec::OutputStream::Stdout,
                    vec![b'x'; output],
                )
                .await
                .unwrap();
        }
    }
    store
        .finish_execution(record.id, ExecutionState::Finished, at + 1)
        .await
        .unwrap();
    record
}

#[tokio::test]
async fn executions_are_pruned_by_age_and_by_results_kept_and_running_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let old = finished_execution(&store, 100, 3, 10).await;
    let middle = finished_execution(&store, 200, 3, 10).await;
    let running = execution(tether_wire::ExecutionId::random(), 50);
    store
        .create_execution(running.clone(), vec![(NodeId::random(), "r".into())])
        .await
        .unwrap();
    let new = finished_execution(&store, 300, 3, 10).await;
    assert_eq!(store.exec_results().unwrap(), 10);
    assert_eq!(
        store.exec_output_bytes().unwrap(),
        9 * 11,
        "tag byte + 10 per chunk"
    );

    // By age: only `old` started before 150 (the older running one stays).
    let pruned = store.prune_executions(150, u64::MAX).await.unwrap();
    assert_eq!((pruned.records, pruned.bytes), (1, 33));
    assert!(store.execution(old.id).unwrap().is_none());
    assert!(
        store
            .exec_output(old.id, NodeId::random())
            .unwrap()
            .0
            .is_empty()
    );
    assert!(store.execution(running.id).unwrap().is_some());
    assert_eq!(store.exec_output_bytes().unwrap(), 6 * 11);
    // By count: at most 5 results kept → the oldest finished one goes.
    let pruned = store.prune_executions(0, 5).await.unwrap();
    assert_eq!(pruned.records, 1);
    assert!(store.execution(middle.id).unwrap().is_none());
    assert!(store.execution(new.id).unwrap().is_some());
    assert_eq!(store.exec_results().unwrap(), 4);
    let history = store.executions(None, 10).unwrap();
    assert_eq!(history.len(), 2, "the indexes went with them");
    assert_eq!(
        store.prune_executions(0, 5).await.unwrap(),
        Pruned::default()
    );
}

#[tokio::test]
async fn kept_output_is_bounded_oldest_first_and_the_results_stay() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        let silent = finished_execution(&store, 50, 2, 0).await;
        let first = finished_execution(&store, 100, 2, 1000).await;
        let second = finished_execution(&store, 200, 2, 1000).await;
        assert_eq!(store.exec_output_bytes().unwrap(), 4 * 1001);
        let pruned = store.prune_exec_output(2500, 999).await.unwrap();
        assert_eq!((pruned.records, pruned.bytes), (1, 2002));
        let (record, nodes) = store.execution(first.id).unwrap().unwrap();
        assert_eq!(record.output_pruned_at_ms, Some(999));
        assert_eq!(nodes.len(), 2, "results are kept");
        assert!(
            store
                .exec_output(first.id, nodes[0].node_id)
                .unwrap()
                .0
                .is_empty()
        );
        let (_, nodes) = store.execution(second.id).unwrap().unwrap();
        assert_eq!(
            store
                .exec_output(second.id, nodes[0].node_id)
                .unwrap()
                .0
                .len(),
            1000
        );
        assert_eq!(store.exec_output_bytes().unwrap(), 2002);
        let (silent, _) = store.execution(silent.id).unwrap().unwrap();
        assert_eq!(
            silent.output_pruned_at_ms, None,
            "an execution that kept no output has none deleted"
        );
        // Below the bound, nothing more goes.
        assert_eq!(
            store.prune_exec_output(2500, 1000).await.unwrap().records,
            0
        );
        // The next call goes on to the next execution with output, past those already done.
        let pruned = store.prune_exec_output(1, 1001).await.unwrap();
        assert_eq!(pruned.records, 1);
        assert_eq!(store.exec_output_bytes().unwrap(), 0);
        store.close().await;
    }
    // The counter is kept on disk with the data.
    assert_eq!(open(&dir).exec_output_bytes().unwrap(), 0);
}

#[tokio::test]
async fn the_status_log_is_bounded_by_age_and_by_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let node = NodeId::random();
    let mut app = new_app(node, "K", 1);
    app.auto_approve_secret = Some([1; 32]);
    store.submit_application(app).await.unwrap();
    for at in 0..20 {
        store
            .record_connectivity(ConnectivityChange {
                node_id: node,
                status: NodeStatus::Online,
                reason: format!("event {at}"),
                at_ms: 1000 + at,
                public_addr: None,
                agent_version: None,
                last_seen_ms: None,
                clock_skew_ms: None,
            })
            .await
            .unwrap();
    }
    assert_eq!(store.status_log(None, 100).unwrap().len(), 21);
    // The approval (at 10) is older than 500.
    assert_eq!(
        store.prune_status_log(500, u64::MAX).await.unwrap().records,
        1
    );
    // At most 5 entries: the 15 oldest go.
    assert_eq!(store.prune_status_log(0, 5).await.unwrap().records, 15);
    let log = store.status_log(None, 100).unwrap();
    assert_eq!(log.len(), 5);
    assert_eq!(log[0].reason, "event 19");
    assert_eq!(log[4].reason, "event 15");
}

#[tokio::test]
async fn rejected_applications_are_forgotten_after_their_time_and_may_apply_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (rejected, pending) = (NodeId::random(), NodeId::random());
    let Submission::Pending(app) = store
        .submit_application(new_app(rejected, "K", 1))
        .await
        .unwrap()
    else {
        panic!()
    };
    let reject = Decision::Reject {
        by: "alice".into(),
        reason: "not ours".into(),
        now_ms: 100,
    };
    store.decide_application(app.id, reject).await.unwrap();
    store
        .submit_application(new_app(pending, "K", 2))
        .await
        .unwrap();
    assert_eq!(
        store
            .prune_rejected_applications(100)
            .await
            .unwrap()
            .records,
        0,
        "decided at 100: not before 100"
    );
    assert_eq!(
        store
            .prune_rejected_applications(101)
            .await
            .unwrap()
            .records,
        1
    );
    assert!(store.application(app.id).unwrap().is_none());
    assert_eq!(
        store
            .applications(Some(ApplicationStatus::Pending))
            .unwrap()
            .len(),
        1,
        "pending ones stay"
    );
    // The machine may apply again; an admin decides again.
    assert!(matches!(
        store
            .submit_application(new_app(rejected, "K", 3))
            .await
            .unwrap(),
        Submission::Pending(_)
    ));
}

#[tokio::test]
async fn old_terminal_sessions_go_with_their_recordings_and_live_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let node = NodeId::random();
    let mut ended = session(node, 100);
    ended.status = TtyStatus::Closed;
    ended.recording = Some(format!("recordings/{}.cast.zst", ended.id));
    let live = session(node, 50);
    let young = session(node, 900);
    for record in [&ended, &live, &young] {
        store.create_tty_session(record.clone()).await.unwrap();
    }
    let pruned = store.prune_tty_sessions(500).await.unwrap();
    assert_eq!(pruned.records, 1);
    assert_eq!(pruned.recordings, vec![ended.recording.clone().unwrap()]);
    assert!(store.tty_session(ended.id).unwrap().is_none());
    assert!(
        store.tty_session(live.id).unwrap().is_some(),
        "live sessions stay"
    );
    assert_eq!(store.tty_sessions(Some(node), false, 10).unwrap().len(), 2);

    // A note on a session's recording, whatever its state.
    let mut closed = session(node, 950);
    closed.status = TtyStatus::Closed;
    store.create_tty_session(closed.clone()).await.unwrap();
    assert!(
        store
            .note_tty_recording(closed.id, "deleted: too old".into())
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .tty_session(closed.id)
            .unwrap()
            .unwrap()
            .recording_note
            .as_deref(),
        Some("deleted: too old")
    );
    assert!(
        !store
            .note_tty_recording(TtySessionId::random(), "x".into())
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_holds_every_acknowledged_write_and_passes_its_check() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    // Writes go on while the copy is made.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..300u32 {
                let id = NodeId::random();
                let mut app = new_app(id, "K", 0);
                app.nonce = i.to_be_bytes().repeat(16);
                app.auto_approve_secret = Some([7; 32]);
                store.submit_application(app).await.unwrap();
                acknowledged.push((id, std::time::Instant::now()));
            }
            acknowledged
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let began = std::time::Instant::now();
    let copy = dir.path().join("copy.redb");
    let summary = {
        let store = store.clone();
        let copy = copy.clone();
        tokio::task::spawn_blocking(move || store.snapshot(&copy))
            .await
            .unwrap()
            .unwrap()
    };
    let acknowledged = writer.await.unwrap();
    assert!(summary.bytes > 0 && summary.rows > 0);
    assert!(
        store.snapshot(&copy).is_err(),
        "an existing file is never overwritten"
    );
    let checked = Store::verify(&copy).unwrap();
    assert_eq!(checked.nodes, summary.nodes);
    let restored = Store::open(&copy).unwrap();
    for (id, at) in &acknowledged {
        if *at < began {
            assert!(
                restored.node(*id).unwrap().is_some(),
                "acknowledged before the copy began, so in it"
            );
            assert_eq!(restored.secret(*id).unwrap(), Some([7; 32]));
        }
    }
    assert_eq!(restored.nodes().unwrap().len() as u64, summary.nodes);
    assert!(summary.nodes < 300 || acknowledged.iter().all(|(_, at)| *at < began));

    // A damaged file fails its check, clearly.
    let damaged = dir.path().join("damaged.redb");
    let mut bytes = std::fs::read(&copy).unwrap();
    for byte in &mut bytes[4096..] {
        *byte ^= 0x5a;
    }
    std::fs::write(&damaged, bytes).unwrap();
    assert!(Store::verify(&damaged).is_err());
    assert!(Store::verify(&dir.path().join("absent.redb")).is_err());
}

#[tokio::test]
async fn node_records_are_shared_until_a_node_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let node = NodeId::random();
    let Submission::Pending(app) = store
        .submit_application(new_app(node, "K", 1))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(store.node_records_shared().unwrap().is_empty());
    store.decide_application(app.id, approve(3)).await.unwrap();
    let first = store.node_records_shared().unwrap();
    assert_eq!(first.len(), 1, "an approval is seen at once");
    // Writes that touch no node record leave the shared copy as it is.
    store.flush_last_seen(vec![(node, 99)]).await.unwrap();
    let again = store.node_records_shared().unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    assert_eq!(store.last_seen_all().unwrap().get(&node), Some(&99));
    // A label is a node record change: the next look reads it.
    store
        .update_node(node, 30, |n| {
            n.labels.insert("env".into(), "prod".into());
            true
        })
        .await
        .unwrap();
    let changed = store.node_records_shared().unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &changed));
    assert_eq!(
        changed[0].labels.get("env").map(String::as_str),
        Some("prod")
    );
    store.close().await;
}

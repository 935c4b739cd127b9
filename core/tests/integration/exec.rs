//! Remote execution end to end: real agents running real processes over real QUIC.

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;
use tether_client::ClientError;
use tether_wire::admin::{AdminRequest, AdminResponse, ExecStatus, ExecutionState, NodeStatus};
use tether_wire::control::{CoreMessage, NodeMessage};
use tether_wire::exec::ExecFrame;
use tether_wire::{ErrorCode, NodeId};

/// A core with `n` real agents, online; a short kill grace keeps timeout tests quick.
async fn fleet(
    n: usize,
    tweak: impl FnOnce(&mut tether_core::config::CoreConfig),
) -> (TestCore, Admin, Vec<(NodeId, LibNode)>, tempfile::TempDir) {
    start_fleet(
        n,
        |c| {
            c.exec_kill_grace = Duration::from_millis(500);
            tweak(c);
        },
        |_| {},
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_signals_and_separate_streams() {
    let (core, admin, nodes, _tmp) = fleet(1, |_| {}).await;
    let id = nodes[0].0;

    let run = admin
        .exec(spec(
            &["host-00"],
            &["sh", "-c", "echo to-out; echo to-err >&2; exit 7"],
        ))
        .await
        .unwrap();
    let result = run.single();
    assert_eq!(result.status, ExecStatus::Failed);
    assert_eq!(result.exit_code, Some(7));
    assert_eq!(run.stdout_of(id), "to-out\n");
    assert_eq!(run.stderr_of(id), "to-err\n");

    let run = admin
        .exec(spec(&[&id.to_string()[..6]], &["sh", "-c", "kill -9 $$"]))
        .await
        .unwrap();
    assert_eq!(
        (
            run.single().status,
            run.single().signal,
            run.single().exit_code
        ),
        (ExecStatus::Failed, Some(9), None)
    );

    let mut with_env = spec(
        &["host-00"],
        &["sh", "-c", "echo \"$GREETING from $(pwd)\""],
    );
    with_env.env = vec![("GREETING".into(), "hello".into())];
    with_env.cwd = Some("/tmp".into());
    let run = admin.exec(with_env).await.unwrap();
    assert_eq!(run.stdout_of(id), "hello from /tmp\n");
    assert_eq!(run.single().status, ExecStatus::Ok);

    // No shell unless asked: the glob reaches the program as is.
    let run = admin
        .exec(spec(&["host-00"], &["echo", "*", "$HOME"]))
        .await
        .unwrap();
    assert_eq!(run.stdout_of(id), "* $HOME\n");
    // Stdin is closed.
    let run = admin.exec(spec(&["host-00"], &["cat"])).await.unwrap();
    assert_eq!(
        (run.single().status, run.stdout_of(id).as_str()),
        (ExecStatus::Ok, "")
    );

    let run = admin
        .exec(spec(&["host-00"], &["/no/such/program"]))
        .await
        .unwrap();
    // A command that cannot start has the shell's status (127 not found, 126 not executable),
    // with the reason: it failed; the agent did not.
    assert_eq!(
        (run.single().status, run.single().exit_code),
        (ExecStatus::Failed, Some(127))
    );
    assert!(
        run.single()
            .error
            .as_deref()
            .unwrap()
            .contains("command not found: /no/such/program"),
        "{:?}",
        run.single().error
    );
    let run = admin
        .exec(spec(&["host-00"], &["/etc/hostname"]))
        .await
        .unwrap();
    assert_eq!(
        (run.single().status, run.single().exit_code),
        (ExecStatus::Failed, Some(126)),
        "{:?}",
        run.single()
    );
    let mut bad_dir = spec(&["host-00"], &["true"]);
    bad_dir.cwd = Some("/no/such/dir".into());
    let run = admin.exec(bad_dir).await.unwrap();
    assert_eq!(run.single().exit_code, Some(126));
    assert!(
        run.single()
            .error
            .as_deref()
            .unwrap()
            .contains("/no/such/dir")
    );

    // The real CLI, one node: streams as is and exits with the remote code.
    let identity = core.data().join("admin.identity");
    let addr = core.addr.to_string();
    let output = tether(
        &identity,
        &addr,
        &[
            "exec",
            "host-00",
            "--",
            "sh",
            "-c",
            "printf out; printf err >&2; exit 42",
        ],
    );
    assert_eq!(output.status.code(), Some(42));
    assert_eq!(output.stdout, b"out");
    assert_eq!(output.stderr, b"err");
    let output = tether(
        &identity,
        &addr,
        &["exec", "host-00", "--", "sh", "-c", "kill -TERM $$"],
    );
    assert_eq!(output.status.code(), Some(128 + 15));
    // 127 and 126 with the reason, as `ssh host cmd` and every POSIX shell report them.
    for (command, code, reason) in [
        ("no-such-cmd", 127, "command not found: no-such-cmd"),
        (
            "/no/such/program",
            127,
            "command not found: /no/such/program",
        ),
        ("/etc/hostname", 126, "cannot execute /etc/hostname"),
    ] {
        let output = tether(&identity, &addr, &["exec", "host-00", "--", command]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{command}: {stderr}");
        assert!(stderr.contains(reason), "{command}: {stderr}");
    }
    let output = tether(
        &identity,
        &addr,
        &["exec", "host-00", "--json", "--", "no-such-cmd"],
    );
    assert_eq!(output.status.code(), Some(127));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json[0]["exit_code"], 127);
    assert!(
        json[0]["exec_id"].is_string(),
        "scripts can follow up with exec show"
    );
    assert_eq!(json[0]["status"], "failed");
    assert_eq!(json[0]["error"], "command not found: no-such-cmd");

    // JSON never loses bytes: output that is not UTF-8 is also given exactly, in base64, live
    // and from history.
    let decode = |value: &serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(value.as_str().expect("a base64 string"))
            .unwrap()
    };
    let live = tether_json(
        &identity,
        &addr,
        &["exec", "host-00", "--json", "--", "printf", "caf\\351"],
    );
    assert_eq!(decode(&live[0]["stdout_base64"]), [0x63, 0x61, 0x66, 0xe9]);
    assert_eq!(live[0]["stdout"], "caf\u{FFFD}");
    assert!(
        live[0].get("stderr_base64").is_none(),
        "valid UTF-8 stays text only"
    );
    let history = tether_json(
        &identity,
        &addr,
        &["exec", "history", "--json", "--limit", "1"],
    );
    let id = history[0]["id"].as_str().unwrap();
    let shown = tether_json(&identity, &addr, &["exec", "show", id, "--json"]);
    assert_eq!(
        decode(&shown["results"][0]["stdout_base64"]),
        [0x63, 0x61, 0x66, 0xe9]
    );
    let text = tether_json(
        &identity,
        &addr,
        &["exec", "host-00", "--json", "--", "printf", "caf\\303\\251"],
    );
    assert_eq!(text[0]["stdout"], "caf\u{e9}");
    assert!(text[0].get("stdout_base64").is_none());

    // A reader that goes away (`| head`) ends tether quietly, as SIGPIPE would.
    let mut cli = Command::new(binary("tether"))
        .arg("--identity")
        .arg(&identity)
        .args([
            "--core", &addr, "exec", "host-00", "--", "seq", "1", "2000000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(cli.stdout.take());
    let ended = cli.wait_with_output().unwrap();
    assert_eq!(ended.status.code(), Some(141));
    assert!(
        ended.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&ended.stderr)
    );

    // 255 is Tether's own failure: here, no core answering.
    let nobody = format!("127.0.0.1:{}", free_udp_port());
    let output = tether(&identity, &nobody, &["exec", "host-00", "--", "true"]);
    assert_eq!(
        output.status.code(),
        Some(255),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_kills_the_whole_group_even_a_child_that_ignores_sigterm() {
    let (core, admin, nodes, tmp) = fleet(1, |_| {}).await;
    let id = nodes[0].0;
    let pidfile = tmp.path().join("child.pid");
    let script = format!(
        "sh -c 'trap \"\" TERM; echo $$ > {}; exec sleep 300' & wait",
        pidfile.display()
    );
    let mut timed = spec(&["host-00"], &["sh", "-c", &script]);
    timed.timeout_ms = Some(1000);
    let run = admin.exec(timed).await.unwrap();
    assert_eq!(
        run.single().status,
        ExecStatus::Timeout,
        "{:?}",
        run.single()
    );
    let child: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eventually("the SIGTERM-ignoring child to be killed", || async {
        (!process_alive(child)).then_some(())
    })
    .await;

    // Through the CLI: exit status 124, like timeout(1).
    let output = tether(
        &core.data().join("admin.identity"),
        &core.addr.to_string(),
        &["exec", "host-00", "--timeout", "500ms", "--", "sleep", "30"],
    );
    assert_eq!(output.status.code(), Some(124));
    let _ = id;
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_cancels_and_kills_the_remote_process_group() {
    let (core, admin, _nodes, tmp) = fleet(1, |_| {}).await;
    let pidfile = tmp.path().join("sleeper.pid");
    let script = format!("echo $$ > {}; sleep 300", pidfile.display());
    let cli = Command::new(binary("tether"))
        .args(["--identity"])
        .arg(core.data().join("admin.identity"))
        .args([
            "--core",
            &core.addr.to_string(),
            "exec",
            "host-00",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let remote: u32 = eventually("the remote command to start", || async {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
    })
    .await;
    assert!(process_alive(remote));
    assert!(
        Command::new("kill")
            .args(["-INT", &cli.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let output = tokio::task::spawn_blocking(move || cli.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eventually("the remote process to be gone", || async {
        (!process_alive(remote)).then_some(())
    })
    .await;

    let executions = admin.executions(1).await;
    assert_eq!(executions[0].state, ExecutionState::Cancelled);
    assert_eq!(executions[0].counts.cancelled, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_skips_nodes_not_yet_reached() {
    let (_core, admin, _nodes, _tmp) = fleet(3, |_| {}).await;
    let mut one_at_a_time = spec(&["host-*"], &["sleep", "300"]);
    one_at_a_time.concurrency = 1;
    let mut session = admin.0.exec(one_at_a_time).await.unwrap();
    assert!(matches!(
        session.next().await.unwrap(),
        Some(AdminResponse::ExecStarted { .. })
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    session.cancel().await.unwrap();
    let run = collect(&mut session).await.unwrap();
    let statuses: Vec<_> = run
        .results
        .values()
        .map(|r| (r.status, r.error.clone().unwrap_or_default()))
        .collect();
    assert_eq!(run.results.len(), 3);
    assert!(
        statuses.iter().all(|(s, _)| *s == ExecStatus::Cancelled),
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|(_, e)| e.contains("before it was sent"))
            .count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(run.finished.unwrap().state, ExecutionState::Cancelled);
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_nodes_answer_at_once_and_unknown_targets_are_named() {
    let (core, admin, mut nodes, _tmp) = fleet(2, |_| {}).await;
    let (gone, node) = nodes.remove(1);
    node.stop().await.unwrap();
    wait_status(&admin, gone, NodeStatus::Offline).await;

    let started = std::time::Instant::now();
    let run = admin
        .exec(spec(&["host-*"], &["echo", "hi"]))
        .await
        .unwrap();
    assert!(started.elapsed() < PATIENCE);
    assert_eq!(run.results[&gone].status, ExecStatus::Offline);
    assert_eq!(run.results[&nodes[0].0].status, ExecStatus::Ok);
    assert_eq!(run.finished.unwrap().counts.offline, 1);

    match admin
        .exec(spec(&["host-00", "web-9", "zz*"], &["true"]))
        .await
    {
        Err(ClientError::Core { code, message }) => {
            assert_eq!(code, ErrorCode::NOT_FOUND);
            assert!(
                message.contains("\"web-9\"")
                    && message.contains("\"zz*\"")
                    && !message.contains("host-00"),
                "{message}"
            );
        }
        other => panic!("expected an error naming the unmatched targets, got {other:?}"),
    }
    match admin.exec(spec(&["host-00"], &[])).await {
        Err(ClientError::Core { code, .. }) => assert_eq!(code, ErrorCode::INVALID_ARGUMENT),
        other => panic!("{other:?}"),
    }
    // The CLI: an empty command is a usage error.
    let output = tether(
        &core.data().join("admin.identity"),
        &core.addr.to_string(),
        &["exec", "host-00", "--"],
    );
    assert_eq!(output.status.code(), Some(2));
    let executions = admin.executions(10).await;
    assert_eq!(
        executions.len(),
        1,
        "refused requests are not recorded as executions"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_executions_on_one_node_do_not_wait_for_each_other() {
    let (_core, admin, nodes, _tmp) = fleet(1, |_| {}).await;
    let id = nodes[0].0;
    let admin = std::sync::Arc::new(admin);
    // Six executions that each finish only once all six have started: they fail (timing out after
    // ten seconds) unless the node runs them, and streams their output, at the same time.
    let barrier = tempfile::tempdir().unwrap();
    let barrier_dir = barrier.path().to_str().unwrap().to_string();
    let script = "touch \"$DIR/$N\"; i=0; \
        while [ \"$(ls \"$DIR\" | wc -l)\" -lt 6 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; \
        [ \"$(ls \"$DIR\" | wc -l)\" -ge 6 ] && echo $N";
    let mut runs = Vec::new();
    for i in 0..6 {
        let admin = admin.clone();
        let dir = barrier_dir.clone();
        runs.push(tokio::spawn(async move {
            let mut s = spec(&["host-00"], &["sh", "-c", script]);
            s.env = vec![("N".into(), i.to_string()), ("DIR".into(), dir)];
            admin.exec(s).await.unwrap()
        }));
    }
    // A flood on another execution at the same time.
    let flood = admin.exec(spec(
        &["host-00"],
        &["sh", "-c", "head -c 20000000 /dev/zero"],
    ));
    let flood = flood.await.unwrap();
    assert_eq!(flood.stdout[&id].len(), 20_000_000);
    for (i, run) in runs.into_iter().enumerate() {
        let run = run.await.unwrap();
        assert_eq!(run.single().status, ExecStatus::Ok);
        assert_eq!(run.stdout_of(id), format!("{i}\n"));
    }
    // The node stayed online throughout (heartbeats never waited for the flood).
    assert_eq!(admin.node(id).await.unwrap().status, NodeStatus::Online);
}

#[tokio::test(flavor = "multi_thread")]
async fn fan_out_to_many_nodes_with_labels_globs_and_all() {
    let (core, admin, nodes, _tmp) = fleet(12, |_| {}).await;
    for (id, _) in nodes.iter().take(4) {
        admin
            .request(AdminRequest::LabelNode {
                id: id.to_string(),
                set: vec![("role".into(), "db".into())],
                remove: vec![],
            })
            .await
            .unwrap();
    }
    let mut everyone = spec(&[], &["sh", "-c", "echo ready"]);
    everyone.all = true;
    let run = admin.exec(everyone).await.unwrap();
    assert_eq!(run.results.len(), 12);
    assert!(run.results.values().all(|r| r.status == ExecStatus::Ok));
    assert!(nodes.iter().all(|(id, _)| run.stdout_of(*id) == "ready\n"));
    let finished = run.finished.unwrap();
    assert_eq!(
        (finished.counts.ok, finished.nodes, finished.state),
        (12, 12, ExecutionState::Finished)
    );

    // Through the CLI, a command not found everywhere: status 1, and the summary says why.
    let output = tether(
        &core.data().join("admin.identity"),
        &core.addr.to_string(),
        &["exec", "host-0[01]", "--", "no-such-cmd"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("2 failed (host-00: exit 127 (command not found: no-such-cmd)"),
        "{stderr}"
    );

    let mut by_label = spec(&["host-1?"], &["true"]);
    by_label.labels = vec![("role".into(), "db".into())];
    let run = admin.exec(by_label).await.unwrap();
    assert_eq!(
        run.results.len(),
        4 + 2,
        "4 labelled (host-00..03) and host-10, host-11"
    );

    // Many nodes through the CLI: lines prefixed with the hostname, a summary, status 1 if any fails.
    let output = tether(
        &core.data().join("admin.identity"),
        &core.addr.to_string(),
        &[
            "exec",
            "host-0*",
            "--",
            "sh",
            "-c",
            "echo hello; test $(hostname) = nobody",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 10);
    assert!(
        stdout
            .lines()
            .all(|l| l.starts_with("host-0") && l.ends_with(": hello")),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("10 nodes: 10 failed (host-00: exit 1"),
        "{stderr}"
    );

    let json = tether_json(
        &core.data().join("admin.identity"),
        &core.addr.to_string(),
        &["exec", "--all", "--json", "--", "echo", "x"],
    );
    let results = json.as_array().unwrap();
    assert_eq!(results.len(), 12);
    for r in results {
        for key in [
            "node_id",
            "hostname",
            "status",
            "exit_code",
            "signal",
            "stdout",
            "stderr",
            "started_at",
            "finished_at",
            "duration_ms",
            "error",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        assert_eq!(r["stdout"], "x\n");
        assert_eq!(r["status"], "ok");
    }
}

/// Peak RSS of our own process, to show that relaying output through an in-process core and
/// agent does not hold it.
fn own_peak_rss_kib() -> u64 {
    peak_rss_kib(std::process::id())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_mebibytes_of_output_with_bounded_memory_and_capped_history() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("core");
    let port = free_udp_port();
    let addr = format!("127.0.0.1:{port}");
    let mut core = spawn_core(&data, port, &["--auto-approve"]);
    let token = join_token_of(&data);
    let state = tmp.path().join("node");
    let mut node = spawn_node(&state, &addr, Some(&token));
    let identity = data.join("admin.identity");
    eventually("the node online", || async {
        let output = tether(
            &identity,
            &addr,
            &["node", "list", "--status", "online", "--json"],
        );
        let list: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        (list.as_array()?.len() == 1).then_some(())
    })
    .await;
    let core_before = peak_rss_kib(core.0.as_ref().unwrap().id());

    const SIZE: u64 = 128 * 1024 * 1024;
    let sink = tmp.path().join("out");
    let status = Command::new(binary("tether"))
        .arg("--identity")
        .arg(&identity)
        .args([
            "--core",
            &addr,
            "exec",
            "--all",
            "--",
            "head",
            "-c",
            &SIZE.to_string(),
            "/dev/zero",
        ])
        .stdout(std::fs::File::create(&sink).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::metadata(&sink).unwrap().len(),
        SIZE,
        "every byte arrived"
    );

    let core_peak = peak_rss_kib(core.0.as_ref().unwrap().id());
    let node_peak = peak_rss_kib(node.0.as_ref().unwrap().id());
    // 128 MiB went through; neither side held a meaningful part of it.
    assert!(
        core_peak < core_before + 64 * 1024,
        "core grew from {core_before} KiB to {core_peak} KiB"
    );
    assert!(node_peak < 96 * 1024, "the agent peaked at {node_peak} KiB");

    let shown = tether_json(
        &identity,
        &addr,
        &[
            "exec",
            "show",
            "--json",
            &history_first_id(&identity, &addr),
        ],
    );
    let result = &shown["results"][0];
    assert_eq!(result["stdout_bytes"], SIZE);
    assert_eq!(result["truncated"], true);
    assert_eq!(
        result["stdout"].as_str().unwrap().len(),
        1024 * 1024,
        "the default cap keeps 1 MiB"
    );
    node.kill9();
    core.kill9();
    let _ = own_peak_rss_kib();
}

fn history_first_id(identity: &Path, addr: &str) -> String {
    let history = tether_json(
        identity,
        addr,
        &["exec", "history", "--json", "--limit", "1"],
    );
    history[0]["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn history_survives_a_restart_and_a_killed_core_leaves_interrupted_runs() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("core");
    let port = free_udp_port();
    let addr = format!("127.0.0.1:{port}");
    let mut core = spawn_core(&data, port, &["--auto-approve"]);
    let token = tether_wire::token::JoinToken::parse(&join_token_of(&data)).unwrap();
    let state = tmp.path().join("node");
    let node = LibNode::start(&state, addr.parse().unwrap(), Some(token), |c| {
        c.hostname = Some("survivor".into())
    });
    let id = node_id_in(&state).await;
    let identity = data.join("admin.identity");
    let connect = || async {
        let identity = tether_certs::identity::AdminIdentity::load(&identity).unwrap();
        Admin(
            tether_client::AdminClient::connect(&identity, Some(&addr))
                .await
                .unwrap(),
        )
    };
    let admin = connect().await;
    wait_status(&admin, id, NodeStatus::Online).await;

    let done = admin
        .exec(spec(&["survivor"], &["echo", "kept"]))
        .await
        .unwrap();
    let done_id = done.exec_id.unwrap();
    let pidfile = tmp.path().join("long.pid");
    let script = format!("echo $$ > {}; sleep 300", pidfile.display());
    let mut running = admin
        .0
        .exec(spec(&["survivor"], &["sh", "-c", &script]))
        .await
        .unwrap();
    let Some(AdminResponse::ExecStarted {
        exec_id: running_id,
        ..
    }) = running.next().await.unwrap()
    else {
        panic!()
    };
    let remote: u32 = eventually("the long command to start", || async {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
    })
    .await;

    core.kill9();
    let _core = spawn_core(&data, port, &["--auto-approve"]);
    // The agent learns its connection is gone (the new core resets it) and stops what it was
    // running for the old one: nobody could receive its result.
    eventually("the orphaned command to be stopped", || async {
        (!process_alive(remote)).then_some(())
    })
    .await;
    let admin = eventually("core back", || async {
        let identity = tether_certs::identity::AdminIdentity::load(&identity).ok()?;
        let client = tether_client::AdminClient::connect(&identity, Some(&addr))
            .await
            .ok()?;
        client.request(&AdminRequest::Ping).await.ok()?;
        Some(Admin(client))
    })
    .await;

    let show = |id: tether_wire::ExecutionId| {
        let admin = &admin;
        async move {
            match admin
                .request(AdminRequest::ShowExec { id: id.to_string() })
                .await
                .unwrap()
                .pop()
            {
                Some(AdminResponse::Execution(detail)) => detail,
                other => panic!("{other:?}"),
            }
        }
    };
    let kept = show(done_id).await;
    assert_eq!(kept.execution.state, ExecutionState::Finished);
    assert_eq!(kept.nodes[0].stdout.as_ref().unwrap().0, b"kept\n");
    assert_eq!(kept.nodes[0].status, ExecStatus::Ok);

    let interrupted = show(running_id).await;
    assert_eq!(interrupted.execution.state, ExecutionState::Interrupted);
    assert_eq!(interrupted.nodes[0].status, ExecStatus::Interrupted);
    assert!(
        interrupted.nodes[0]
            .error
            .as_deref()
            .unwrap()
            .contains("core stopped")
    );
    assert_eq!(interrupted.execution.counts.interrupted, 1);

    // The CLI reads the same history.
    let history = tether_json(
        &identity,
        &addr,
        &["exec", "history", "--node", &id.to_string()[..8], "--json"],
    );
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[0]["state"], "interrupted");
    assert_eq!(history[1]["state"], "finished");
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_output_stream_that_breaks_the_rules_fails_that_run_only() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let (id, mut raw) = enrolled_node(&core).await;
    let heartbeat = tether_wire::heartbeat::Heartbeat {
        seq: 1,
        timestamp_ms: now_secs() * 1000,
        ..Default::default()
    };
    raw.connection
        .send_datagram(
            tether_wire::heartbeat::encode_datagram(&tether_wire::heartbeat::Datagram::Heartbeat(
                heartbeat,
            ))
            .into(),
        )
        .unwrap();

    let exec = tokio::spawn({
        let admin = core.admin().await;
        async move {
            admin
                .exec(spec(&[&id.to_string()], &["anything"]))
                .await
                .unwrap()
        }
    });
    let request = match raw.recv().await {
        Some(CoreMessage::Exec(request)) => request,
        other => panic!("{other:?}"),
    };
    let mut stream = raw.connection.open_uni().await.unwrap();
    let open = tether_wire::frame::encode_frame(
        &ExecFrame::Open {
            exec_id: request.exec_id,
        },
        1 << 20,
    )
    .unwrap();
    stream.write_all(&open).await.unwrap();
    stream
        .write_all(&(64u32 << 20).to_be_bytes())
        .await
        .unwrap(); // a 64 MiB frame: over the limit

    let run = exec.await.unwrap();
    assert_eq!(run.single().status, ExecStatus::Error);
    assert!(
        run.single()
            .error
            .as_deref()
            .unwrap()
            .contains("broke the protocol"),
        "{:?}",
        run.single().error
    );
    assert!(
        raw.connection.close_reason().is_none(),
        "the node's connection is untouched"
    );
    assert_eq!(admin.node(id).await.unwrap().status, NodeStatus::Online);
    raw.send(&NodeMessage::StaticFacts(Default::default()))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_drops_mid_run_answers_error_with_the_reason() {
    let (_core, admin, mut nodes, _tmp) = fleet(1, |_| {}).await;
    let (id, node) = nodes.remove(0);
    let mut session = admin
        .0
        .exec(spec(&["host-00"], &["sleep", "300"]))
        .await
        .unwrap();
    assert!(matches!(
        session.next().await.unwrap(),
        Some(AdminResponse::ExecStarted { .. })
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.stop().await.unwrap(); // the agent goes away while the command runs
    let run = collect(&mut session).await.unwrap();
    let result = &run.results[&id];
    assert_eq!(result.status, ExecStatus::Error);
    let reason = result.error.as_deref().unwrap();
    assert!(
        reason.contains("disconnected while it ran") && reason.contains("node shutting down"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminal_gets_a_progress_bar_for_many_nodes() {
    let (core, _admin, _nodes, _tmp) = fleet(3, |_| {}).await;
    // `script` gives the CLI a pseudo-terminal, as an operator's shell would.
    let command = format!(
        "{} --identity {} --core {} exec --all -- sh -c 'sleep 1; echo done'",
        binary("tether").display(),
        core.data().join("admin.identity").display(),
        core.addr
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("TERM", "xterm")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("nodes done"),
        "the progress bar is drawn on a terminal: {text}"
    );
    assert!(
        text.contains("host-01: done") && text.contains("3 nodes: 3 ok"),
        "{text}"
    );

    // Not on a terminal (the other tests): no bar.
    let output = tether(
        &core.data().join("admin.identity"),
        &core.addr.to_string(),
        &["exec", "--all", "--", "true"],
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains("nodes done"));
}

#[tokio::test(flavor = "multi_thread")]
async fn history_is_kept_within_its_count_and_its_kept_output_within_its_total() {
    let (core, admin, _nodes, _tmp) = fleet(1, |c| {
        c.exec_max_results = 3;
        c.exec_output_cap = 4096;
        c.exec_output_max_total = 8192;
        c.prune_interval = Duration::from_millis(200);
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let run = admin
            .exec(spec(
                &["host-00"],
                &["sh", "-c", "head -c 4000 /dev/zero | tr '\\0' x"],
            ))
            .await
            .unwrap();
        ids.push(run.exec_id.unwrap());
    }
    // One node per execution and three results at most: the oldest execution goes whole.
    let kept = eventually(
        "the oldest execution to go, and the next one's output",
        || async {
            let kept = admin.executions(10).await;
            (kept.len() == 3 && kept.iter().any(|e| e.output_pruned_at_ms.is_some()))
                .then_some(kept)
        },
    )
    .await;
    let kept_ids: Vec<_> = kept.iter().map(|e| e.id).collect();
    assert!(!kept_ids.contains(&ids[0]), "{kept_ids:?}");
    // 4,001 bytes each (with a stream tag): three do not fit in 8,192, two do. The oldest of
    // the three loses its output and keeps its result.
    let pruned: Vec<_> = kept
        .iter()
        .filter(|e| e.output_pruned_at_ms.is_some())
        .map(|e| e.id)
        .collect();
    assert_eq!(pruned, vec![ids[1]]);
    let identity = core.data().join("admin.identity");
    let addr = core.addr.to_string();
    let shown = tether_json(
        &identity,
        &addr,
        &["exec", "show", &ids[1].to_string(), "--json"],
    );
    assert!(shown["output_pruned_at"].is_string());
    assert_eq!(shown["results"][0]["status"], "ok");
    assert_eq!(shown["results"][0]["stdout"], "");
    let text = tether(&identity, &addr, &["exec", "show", &ids[1].to_string()]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("output:     deleted"));
    let newest = tether_json(
        &identity,
        &addr,
        &["exec", "show", &ids[3].to_string(), "--json"],
    );
    assert_eq!(newest["results"][0]["stdout"].as_str().unwrap().len(), 4000);
}

//! The command lines as scripts use them: flags, files, JSON, stdout vs stderr, exit codes.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use support::*;
use tether_wire::NodeId;
use tether_wire::admin::NodeStatus;
use tether_wire::control::{CoreMessage, NodeMessage};

#[tokio::test(flavor = "multi_thread")]
async fn json_output_carries_the_documented_fields() {
    let core = TestCore::start(|_| {}).await;
    let admin = core.admin().await;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("node");
    let node = LibNode::start(&state, core.addr, Some(core.token()), |c| {
        c.hostname = Some("json-node".into())
    });
    let identity = core.data().join("admin.identity");
    let addr = core.addr.to_string();

    let apps = eventually("a pending application", || async {
        let apps = tether_json(
            &identity,
            &addr,
            &["enroll", "list", "--status", "pending", "--json"],
        );
        (apps.as_array().unwrap().len() == 1).then_some(apps)
    })
    .await;
    let app = &apps[0];
    for key in ["id", "node_id", "hostname", "status", "created_at"] {
        assert!(!app[key].is_null(), "application JSON lacks {key}: {app}");
    }
    assert_eq!(app["status"], "pending");
    assert_eq!(app["hostname"], "json-node");
    let id: NodeId = app["node_id"].as_str().unwrap().parse().unwrap();
    let approve = tether(
        &identity,
        &addr,
        &["enroll", "approve", app["id"].as_str().unwrap()],
    );
    assert!(approve.status.success());
    assert!(
        approve.stdout.is_empty(),
        "without --json, confirmations go to stderr"
    );
    assert!(String::from_utf8_lossy(&approve.stderr).contains("approved application"));
    wait_status(&admin, id, NodeStatus::Online).await;
    eventually("facts", || async {
        admin.node(id).await.and_then(|n| n.static_facts)
    })
    .await;
    tether(
        &identity,
        &addr,
        &["node", "label", &id.to_string(), "env=prod", "tier=web"],
    );

    let list = tether_json(
        &identity,
        &addr,
        &["node", "list", "--label", "env=prod", "--json"],
    );
    let listed = &list.as_array().unwrap()[0];
    let shown = tether_json(
        &identity,
        &addr,
        &["node", "show", &id.to_string()[..5], "--json"],
    );
    for node in [listed, &shown] {
        for key in [
            "id",
            "hostname",
            "status",
            "last_seen",
            "labels",
            "static",
            "metrics",
            "created_at",
            "agent_version",
        ] {
            assert!(!node[key].is_null(), "node JSON lacks {key}: {node}");
        }
        assert_eq!(node["status"], "online");
        assert_eq!(node["labels"]["env"], "prod");
        let last_seen = node["last_seen"].as_str().unwrap();
        assert!(
            last_seen.ends_with('Z') && last_seen.contains('T'),
            "RFC 3339: {last_seen}"
        );
        for key in [
            "hostname",
            "os_name",
            "os_version",
            "kernel_version",
            "arch",
            "boot_time",
            "cpu_model",
            "cpu_count",
            "cpu_frequency_mhz",
            "memory_total",
            "swap_total",
            "disks",
            "nics",
            "gpus",
            "agent_version",
        ] {
            assert!(node["static"].get(key).is_some(), "static lacks {key}");
        }
        for key in [
            "cpu_percent",
            "memory_used",
            "memory_total",
            "swap_used",
            "disks",
            "net_rx_bytes_per_sec",
            "net_tx_bytes_per_sec",
            "net_rx_total",
            "net_tx_total",
            "load1",
            "load5",
            "load15",
            "processes",
            "tcp_connections",
            "udp_connections",
            "uptime_secs",
            "tty_sessions",
            "at",
        ] {
            assert!(node["metrics"].get(key).is_some(), "metrics lacks {key}");
        }
    }
    let none = tether_json(
        &identity,
        &addr,
        &["node", "list", "--label", "env=dev", "--json"],
    );
    assert_eq!(
        none,
        serde_json::json!([]),
        "an empty list is an empty JSON array"
    );
    let human = tether(&identity, &addr, &["node", "list"]);
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(
        text.starts_with("ID") && text.contains("json-node") && text.contains("env=prod,tier=web"),
        "{text}"
    );
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_errors_are_clear_and_exit_non_zero() {
    let core = TestCore::start(|_| {}).await;
    let identity = core.data().join("admin.identity");
    let addr = core.addr.to_string();

    let output = tether(&identity, &addr, &["node", "show", "deadbeef"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no node matches \"deadbeef\"") && stderr.contains("not_found"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());

    let missing = Command::new(binary("tether"))
        .args(["--identity", "/nonexistent/identity", "node", "list"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("TETHER_IDENTITY"), "{stderr}");
    // The OS's reason, once (it was printed twice, as message and as cause).
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );

    // A readable-by-others identity is refused, with the fix.
    let tmp = tempfile::tempdir().unwrap();
    let loose = tmp.path().join("identity");
    std::fs::copy(&identity, &loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = tether(&loose, &addr, &["ping"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("chmod 600"));

    // Nothing listening there.
    let port = free_udp_port();
    let output = tether(&identity, &format!("127.0.0.1:{port}"), &["ping"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect to core"));

    let usage = tether(&identity, &addr, &["node", "label", "abc"]);
    assert_eq!(usage.status.code(), Some(1));
    let usage = tether(&identity, &addr, &["node", "list", "--status", "sleeping"]);
    assert_eq!(usage.status.code(), Some(2), "clap usage errors exit 2");
}

#[tokio::test(flavor = "multi_thread")]
async fn key_show_prints_only_the_token_and_admin_issue_makes_a_working_identity() {
    let core = TestCore::start(|_| {}).await;
    let output = Command::new(binary("tether-core"))
        .args(["key", "show", "--data"])
        .arg(core.data())
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("tether1-"));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("tether-node run"),
        "explanations on stderr"
    );

    let tmp = tempfile::tempdir().unwrap();
    let bob = tmp.path().join("bob.identity");
    let data = core.data();
    let issue = || {
        Command::new(binary("tether-core"))
            .args(["admin", "issue", "bob", "--out"])
            .arg(&bob)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap()
    };
    // While core runs it holds the database: the way is `tether user cert`.
    let refused = issue();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("tether user cert"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!bob.exists(), "nothing written");
    // With core stopped, it makes the user and registers the certificate (the way back in).
    let mut core = core;
    let addr = core.addr;
    core.stop().await;
    let output = issue();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::metadata(&bob).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut config = test_config(&core.data());
    config.listen = addr;
    let _restarted = tether_core::Core::start(config).await.unwrap();
    let pong = tether_json(&bob, &core.addr.to_string(), &["ping", "--json"]);
    assert_eq!(pong["admin"], "bob");
    // Made behind core's back, and in the audit log all the same (as was the bootstrap admin).
    let records = tether_json(
        &bob,
        &core.addr.to_string(),
        &["audit", "--json", "--limit", "1000"],
    );
    let requests: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request"].as_str().unwrap())
        .collect();
    assert!(
        requests.contains(&"AdminIssue") && requests.contains(&"Bootstrap"),
        "{requests:?}"
    );

    let uninitialised = Command::new(binary("tether-core"))
        .args(["key", "show", "--data"])
        .arg(tmp.path().join("none"))
        .output()
        .unwrap();
    assert_eq!(uninitialised.status.code(), Some(1));
    assert!(uninitialised.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&uninitialised.stderr)
            .contains("not an initialised data directory")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn config_file_then_flags_and_bad_values_are_refused() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("core");
    let config = tmp.path().join("core.toml");
    std::fs::write(&config, "auto_approve = true\nheartbeat_interval = \"7s\"\nmax_clock_skew = \"60s\"\noffline_after = \"30s\"\n").unwrap();
    let port = free_udp_port();
    let mut core = spawn_core(
        &data,
        port,
        &[
            "--config",
            &config.to_string_lossy(),
            "--heartbeat-interval",
            "2s",
            "--offline-after",
            "30s",
        ],
    );
    let token = tether_wire::token::JoinToken::parse(&join_token_of(&data)).unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let id = NodeId::random();
    let secret = eventually("core to answer", || async {
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            enroll_raw(addr, &token, id),
        )
        .await
        .ok()
    })
    .await;
    let mut raw = RawNode::connect(addr, token.ca_fingerprint).await;
    let auth = raw.auth(id, &secret, now_secs());
    raw.send(&auth).await;
    match raw.recv().await {
        Some(CoreMessage::AuthOk(params)) => {
            assert_eq!(
                params.heartbeat_interval_ms, 2000,
                "the flag overrides the file"
            );
            assert_eq!(
                params.max_clock_skew_secs, 60,
                "the file overrides the default"
            );
        }
        other => panic!("{other:?}"),
    }

    // A second core on the same data directory is refused, clearly.
    let mut second = spawn_core(&data, free_udp_port(), &[]);
    let (code, log) = second.wait_exit(PATIENCE);
    assert_eq!(code, Some(1));
    assert!(log.contains("in use by another process"), "{log}");
    assert!(core.is_running());

    for (contents, expected) in [
        ("hearbeat_interval = \"5s\"\n", "unknown field"),
        ("offline_after = \"90\"\n", "needs a unit"),
        (
            "heartbeat_interval = \"30s\"\noffline_after = \"10s\"\n",
            "offline_after",
        ),
    ] {
        std::fs::write(&config, contents).unwrap();
        let output = Command::new(binary("tether-core"))
            .args(["serve", "--data"])
            .arg(tmp.path().join("other"))
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{contents}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{contents}: {stderr}");
    }
    let output = Command::new(binary("tether-core"))
        .args(["serve", "--heartbeat-interval", "5"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("needs a unit"));
    let _ = NodeMessage::StaticFacts(Default::default());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_start_runs_core_and_a_node_and_stops_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tether-dev");
    let port = free_udp_port();
    let addr = format!("127.0.0.1:{port}");
    let log = tmp.path().join("dev.log");
    let child = Command::new(binary("tether-core"))
        .args(["dev", "--data"])
        .arg(&root)
        .args([
            "--listen",
            &addr,
            "--heartbeat-interval",
            "1s",
            "--offline-after",
            "3s",
            "--web-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut dev = Proc(Some(child), log);
    let identity = root.join("core/admin.identity");
    eventually("the local node online with metrics", || async {
        let output = tether(
            &identity,
            &addr,
            &["node", "list", "--status", "online", "--json"],
        );
        let list: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        list.as_array()
            .and_then(|l| l.first().cloned())
            .filter(|n| !n["metrics"].is_null())
    })
    .await;
    // Said once the web UI is set up too (its admin password is hashed first).
    eventually("the quick start saying what to try next", || async {
        dev.log().contains("TETHER_IDENTITY").then_some(())
    })
    .await;
    // The web UI runs too, and its address and the admin's password are printed once.
    let text = dev.log();
    let url = text
        .split_whitespace()
        .skip_while(|w| *w != "UI:")
        .nth(1)
        .expect("the web UI's address")
        .trim_end_matches('/')
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(text.contains("log in as admin with the password"), "{text}");
    let health = {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
        write!(
            stream,
            "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    assert!(health.contains("\"core\":\"connected\""), "{health}");
    // Core's own metrics and health listener, on in dev.
    let metrics = text
        .split_whitespace()
        .skip_while(|w| *w != "Prometheus:")
        .nth(1)
        .expect("the metrics address")
        .to_string();
    let scraped = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    assert!(scraped.contains("tether_nodes_connected 1"), "{scraped}");
    let core_health = reqwest::get(metrics.replace("/metrics", "/health"))
        .await
        .unwrap();
    assert_eq!(core_health.status().as_u16(), 200);
    assert_eq!(
        std::fs::metadata(&root).unwrap().permissions().mode() & 0o077,
        0,
        "private data"
    );
    assert!(root.join("node/node.key").exists());

    let pid = dev.0.as_ref().unwrap().id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (code, log) = dev.wait_exit(PATIENCE);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("core stopped"), "{log}");
    // The node said goodbye before core went: its status log ends with a clean close.
    assert!(log.contains("node offline"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn core_logs_json_lines_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("core.log");
    let port = free_udp_port();
    let child = Command::new(binary("tether-core"))
        .args(["serve", "--log-format", "json", "--data"])
        .arg(tmp.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("TETHER_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let core = Proc(Some(child), log);
    let line = eventually("core's listening line", || async {
        core.log()
            .lines()
            .find(|l| l.contains("core listening"))
            .map(str::to_string)
    })
    .await;
    let record: serde_json::Value = serde_json::from_str(&line).expect("a JSON object");
    assert_eq!(record["level"], "INFO");
    assert_eq!(record["message"], "core listening");
    assert_eq!(record["local_addr"], format!("127.0.0.1:{port}"));
    assert!(record["timestamp"].is_string(), "{record}");
    // A bad format is refused by name.
    let output = Command::new(binary("tether-core"))
        .args(["serve", "--log-format", "xml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("json"));
}

#[test]
fn help_says_what_the_exit_statuses_and_formats_are() {
    let help = |args: &[&str]| {
        let output = std::process::Command::new(binary("tether"))
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    };
    let exec = help(&["exec", "--help"]);
    for says in [
        "127 if the command was not found",
        "126 if it was found but could not be executed",
        "255 for Tether's own failures",
        "stdout_base64",
    ] {
        assert!(
            exec.contains(says),
            "exec --help must say {says:?}:\n{exec}"
        );
    }
    let tty = help(&["tty", "--help"]);
    assert!(tty.contains("128+N"), "{tty}");
    let backup = help(&["backup", "--help"]);
    assert!(backup.contains("tether-core restore"), "{backup}");
}

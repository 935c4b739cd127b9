//! Deploys of agent releases with real binaries: real `tether-node` processes (each from a
//! copy of the binary it may replace) and a second agent version built for the test
//! (`TETHER_VERSION`). A canary, then the rest; a rollback of the finished deploy; a release
//! that exits at once, which the node's watchdog undoes and which halts the deploy; a file
//! tampered with on core's disk and a key the node does not trust, both refused by the node
//! with nothing touched.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest as _;
use support::*;
use tether_certs::release::{ReleaseSigningKey, format_public_key};
use tether_wire::admin::{AdminRequest, AdminResponse, NodeStatus};
use tether_wire::bytes::FixedBytes;
use tether_wire::deploys::{
    Amount, DeployKind, DeploySpec, DeployState, DeployView, NodeUpdate, OfflinePolicy, Strategy,
    UpdateState,
};
use tether_wire::releases::Manifest;
use tether_wire::tasks::TaskTargets;

/// The version the test builds; the agents start at the workspace's.
const NEXT: &str = "9.1.0-test";
const CURRENT: &str = env!("CARGO_PKG_VERSION");

struct Agent {
    proc: Proc,
    binary: PathBuf,
    hostname: String,
}

/// An agent run from its own copy of the binary, trusting `keys`.
fn start_agent(core: &TestCore, root: &Path, name: &str, keys: &[&ReleaseSigningKey]) -> Agent {
    let (binary, args) = agent_command(core, root, name, keys);
    let dir = root.join(name);
    let mut n = 0;
    let log = loop {
        let log = dir.join(if n == 0 {
            "node.log".to_string()
        } else {
            format!("node-{n}.log")
        });
        if !log.exists() {
            break log;
        }
        n += 1;
    };
    let proc = spawn(&binary, &args, &log);
    Agent {
        proc,
        binary,
        hostname: name.into(),
    }
}

/// The binary (the agent's own copy, under `root/name/bin`) and arguments of agent `name`.
fn agent_command(
    core: &TestCore,
    root: &Path,
    name: &str,
    keys: &[&ReleaseSigningKey],
) -> (PathBuf, Vec<String>) {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let binary = dir.join("bin/tether-node");
    // A restart runs what is there.
    if !binary.exists() {
        std::fs::copy(binary_path("tether-node"), &binary).unwrap();
    }
    let mut args: Vec<String> = [
        "run",
        "--state-dir",
        dir.join("state").to_str().unwrap(),
        "--core",
        &core.addr.to_string(),
        "--token",
        &core.token().encode(),
        "--hostname",
        name,
        "--reconnect-max",
        "1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for key in keys {
        args.extend(["--release-key".into(), format_public_key(&key.public())]);
    }
    (binary, args)
}

fn binary_path(name: &str) -> PathBuf {
    binary(name)
}

/// Kills every process under its directory when dropped, a failed test's too.
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        kill_all_under(&self.0);
    }
}

/// Kills every process started from under `root` (agents the watchdog started again are not
/// the test's children).
fn kill_all_under(root: &Path) {
    for (pid, _) in processes_under(root) {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
}

/// Every process but this one whose command line names a path under `root`, with its
/// arguments.
fn processes_under(root: &Path) -> Vec<(i32, Vec<String>)> {
    let root = root.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<i32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            (String::from_utf8_lossy(&cmdline).contains(&root) && pid != std::process::id() as i32)
                .then(|| {
                    let args = cmdline
                        .split(|b| *b == 0)
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect();
                    (pid, args)
                })
        })
        .collect()
}

fn sign(key: &ReleaseSigningKey, version: &str, arch: &str, body: &[u8]) -> Manifest {
    let mut manifest = Manifest {
        version: version.into(),
        os: "linux".into(),
        arch: arch.into(),
        size: body.len() as u64,
        sha256: FixedBytes(sha2::Sha256::digest(body).into()),
        key: key.public(),
        signature: FixedBytes([0; 64]),
    };
    key.sign(&mut manifest);
    manifest
}

async fn upload(admin: &Admin, manifest: Manifest, body: &[u8]) {
    let request = AdminRequest::ReleaseUpload {
        manifest,
        notes: String::new(),
    };
    admin.0.upload(&request, body, |_| {}).await.unwrap();
}

fn spec(version: &str, strategy: Strategy) -> DeploySpec {
    DeploySpec {
        version: version.into(),
        targets: TaskTargets {
            all: true,
            ..Default::default()
        },
        strategy,
        batch: None,
        pause_ms: 0,
        canary: None,
        canary_wait_ms: 0,
        max_failures: None,
        offline: OfflinePolicy::Wait,
        watchdog_ms: 30_000,
        rate_limit: None,
    }
}

async fn deploy(admin: &Admin, request: AdminRequest) -> DeployView {
    match admin.request(request).await.unwrap().pop() {
        Some(AdminResponse::Deploy(view)) => view,
        other => panic!("unexpected {other:?}"),
    }
}

async fn status(admin: &Admin, id: u64) -> (DeployView, Vec<NodeUpdate>) {
    let mut view = None;
    let mut nodes = Vec::new();
    for response in admin
        .request(AdminRequest::DeployStatus { id })
        .await
        .unwrap()
    {
        match response {
            AdminResponse::Deploy(v) => view = Some(v),
            AdminResponse::DeployNodes(chunk) => nodes.extend(chunk),
            other => panic!("unexpected {other:?}"),
        }
    }
    (view.unwrap(), nodes)
}

/// Waits (longer than most: agents restart) until deploy `id` is in `state`.
async fn wait_deploy(
    admin: &Admin,
    root: &Path,
    id: u64,
    state: DeployState,
) -> (DeployView, Vec<NodeUpdate>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (view, nodes) = status(admin, id).await;
        if view.deploy.state == state {
            return (view, nodes);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deploy {id} never became {state}: {view:?} {nodes:#?}\n{}",
            logs(root)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the agent named `hostname` is online with `version`.
async fn wait_version(admin: &Admin, root: &Path, hostname: &str, version: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let found = admin.nodes().await.into_iter().any(|n| {
            n.hostname == hostname && n.status == NodeStatus::Online && n.agent_version == version
        });
        if found {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{hostname} never came online with {version}\n{}",
            logs(root)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every agent's log, for a failure's message.
fn logs(root: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(root).unwrap().flatten() {
        for n in 0..4 {
            let log = entry.path().join(if n == 0 {
                "node.log".to_string()
            } else {
                format!("node-{n}.log")
            });
            if let Ok(text) = std::fs::read_to_string(&log) {
                out.push_str(&format!("--- {}\n{text}\n", log.display()));
            }
        }
    }
    out
}

fn arch() -> String {
    std::env::consts::ARCH.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_then_the_rest_then_a_rollback() {
    let tmp = tempfile::tempdir().unwrap();
    let _reaper = Reaper(tmp.path().to_path_buf());
    let key = ReleaseSigningKey::generate();
    let public = key.public();
    let core = TestCore::start(|c| {
        c.auto_approve = true;
        c.release_keys = vec![public];
    })
    .await;
    let admin = core.admin().await;
    let next = tmp.path().join("tether-node-next");
    agent_with_version(NEXT, &next);
    let body = std::fs::read(&next).unwrap();
    upload(&admin, sign(&key, NEXT, &arch(), &body), &body).await;

    let mut agents: Vec<Agent> = (0..3)
        .map(|i| start_agent(&core, tmp.path(), &format!("agent-{i}"), &[&key]))
        .collect();
    for agent in &agents {
        wait_version(&admin, tmp.path(), &agent.hostname, CURRENT).await;
    }
    let original = std::fs::read(&agents[0].binary).unwrap();

    let mut canary = spec(NEXT, Strategy::Canary);
    canary.canary = Some(Amount::Count(1));
    canary.canary_wait_ms = 500;
    let started = deploy(&admin, AdminRequest::ReleaseDeploy(canary)).await;
    assert_eq!(started.counts.pending, 3);
    assert_eq!(started.deploy.waves, 2);
    let (done, nodes) = wait_deploy(&admin, tmp.path(), started.deploy.id, DeployState::Done).await;
    assert_eq!(done.counts.success, 3, "{nodes:#?}");
    // The canary finished before the others began.
    let canary_node = nodes.iter().find(|u| u.wave == 0).unwrap();
    for other in nodes.iter().filter(|u| u.wave == 1) {
        assert!(
            other.started_at_ms.unwrap() >= canary_node.finished_at_ms.unwrap(),
            "{nodes:#?}"
        );
        assert_eq!(other.bytes, body.len() as u64, "{nodes:#?}");
    }
    for agent in &agents {
        wait_version(&admin, tmp.path(), &agent.hostname, NEXT).await;
        assert_eq!(std::fs::read(&agent.binary).unwrap(), body);
        // The old agent is kept beside it, and the agent runs in the same process.
        assert_eq!(
            std::fs::read(agent.binary.with_file_name("tether-node.prev")).unwrap(),
            original
        );
        assert!(agents_running(agent));
    }
    let _ = &mut agents;

    // Deploying the same version again, with the CLI: every node runs it already.
    let identity = core.data().join("admin.identity");
    let addr = core.addr.to_string();
    let again = tether_json(
        &identity,
        &addr,
        &["release", "deploy", NEXT, "--all", "--json"],
    );
    assert_eq!(again["counts"]["skipped"], 3, "{again}");
    assert_eq!(again["state"], "done");
    // Status as JSON: each node with its versions and wave.
    let shown = tether_json(
        &identity,
        &addr,
        &[
            "release",
            "status",
            &started.deploy.id.to_string(),
            "--json",
        ],
    );
    assert_eq!(shown["deploy"]["state"], "done");
    assert_eq!(shown["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(shown["nodes"][0]["to_version"], NEXT);
    let watched = tether(
        &identity,
        &addr,
        &[
            "release",
            "status",
            &started.deploy.id.to_string(),
            "--watch",
        ],
    );
    assert!(watched.status.success(), "{watched:?}");
    assert!(String::from_utf8_lossy(&watched.stdout).contains("3 success"));
    let listed = tether_json(&identity, &addr, &["release", "status", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);

    // Roll the finished deploy back: each node puts back the agent it kept.
    let back = deploy(
        &admin,
        AdminRequest::DeployRollback {
            id: started.deploy.id,
        },
    )
    .await;
    assert_eq!(
        back.deploy.kind,
        DeployKind::Rollback {
            of: started.deploy.id
        }
    );
    let (done, nodes) = wait_deploy(&admin, tmp.path(), back.deploy.id, DeployState::Done).await;
    assert_eq!(done.counts.success, 3, "{nodes:#?}");
    for agent in &agents {
        wait_version(&admin, tmp.path(), &agent.hostname, CURRENT).await;
        assert_eq!(std::fs::read(&agent.binary).unwrap(), original);
    }
    drop(agents);
    kill_all_under(tmp.path());
}

/// Whether the agent's process (started by the test) still runs: an update keeps its pid.
fn agents_running(agent: &Agent) -> bool {
    let pid = agent.proc.0.as_ref().unwrap().id();
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == agent.binary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_exits_at_once_is_undone_by_the_watchdog_and_halts_the_deploy() {
    let tmp = tempfile::tempdir().unwrap();
    let _reaper = Reaper(tmp.path().to_path_buf());
    let key = ReleaseSigningKey::generate();
    let public = key.public();
    let core = TestCore::start(|c| {
        c.auto_approve = true;
        c.release_keys = vec![public];
    })
    .await;
    let admin = core.admin().await;
    let broken = b"#!/bin/sh\necho broken release >&2\nexit 1\n".to_vec();
    upload(
        &admin,
        sign(&key, "6.6.6-broken", &arch(), &broken),
        &broken,
    )
    .await;
    let agents: Vec<Agent> = (0..2)
        .map(|i| start_agent(&core, tmp.path(), &format!("agent-{i}"), &[&key]))
        .collect();
    for agent in &agents {
        wait_version(&admin, tmp.path(), &agent.hostname, CURRENT).await;
    }
    let original = std::fs::read(&agents[0].binary).unwrap();

    let mut rolling = spec("6.6.6-broken", Strategy::Rolling);
    rolling.batch = Some(Amount::Count(1));
    rolling.watchdog_ms = 3_000;
    let started = deploy(&admin, AdminRequest::ReleaseDeploy(rolling)).await;
    let (halted, nodes) =
        wait_deploy(&admin, tmp.path(), started.deploy.id, DeployState::Halted).await;
    assert_eq!(halted.counts.rollback, 1, "{nodes:#?}");
    assert_eq!(
        halted.counts.pending, 1,
        "the second batch never started: {nodes:#?}"
    );
    let undone = nodes
        .iter()
        .find(|u| u.state == UpdateState::Rollback)
        .unwrap();
    // Core records the rollback when the old agent authenticates; the agent's own report (the
    // watchdog's reason) follows on its control stream.
    wait_node(&admin, started.deploy.id, |u| {
        u.error
            .as_deref()
            .is_some_and(|e| e.contains("did not authenticate"))
    })
    .await;
    assert!(
        halted
            .deploy
            .reason
            .as_deref()
            .unwrap()
            .contains("1 failure,"),
        "{halted:?}"
    );
    // The old agent is back, from the same file, online.
    let agent = agents
        .iter()
        .find(|a| a.hostname == undone.hostname)
        .unwrap();
    wait_version(&admin, tmp.path(), &agent.hostname, CURRENT).await;
    assert_eq!(std::fs::read(&agent.binary).unwrap(), original);
    let log = std::fs::read_to_string(
        agent
            .binary
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("node.log"),
    )
    .unwrap();
    assert!(log.contains("broken release"), "{log}");

    // Cancelling the halted deploy cancels the node that never started.
    let cancelled = deploy(
        &admin,
        AdminRequest::DeployControl {
            id: started.deploy.id,
            action: tether_wire::deploys::DeployAction::Cancel,
        },
    )
    .await;
    assert_eq!(cancelled.deploy.state, DeployState::Cancelled);
    assert_eq!(cancelled.counts.cancelled, 1);
    drop(agents);
    kill_all_under(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_file_and_an_untrusted_key_are_refused_by_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let _reaper = Reaper(tmp.path().to_path_buf());
    let key = ReleaseSigningKey::generate();
    let other = ReleaseSigningKey::generate();
    let public = key.public();
    let core = TestCore::start(|c| {
        c.auto_approve = true;
        c.release_keys = vec![public];
    })
    .await;
    let admin = core.admin().await;
    let next = tmp.path().join("tether-node-next");
    agent_with_version(NEXT, &next);
    let body = std::fs::read(&next).unwrap();
    let manifest = sign(&key, NEXT, &arch(), &body);
    upload(&admin, manifest.clone(), &body).await;
    // Corrupted on core's disk after the upload.
    let stored = core
        .data()
        .join("releases")
        .join(hex::encode(manifest.sha256.as_bytes()));
    let mut tampered = std::fs::read(&stored).unwrap();
    tampered[4096] ^= 0xff;
    std::fs::write(&stored, &tampered).unwrap();

    let trusting = start_agent(&core, tmp.path(), "trusting", &[&key]);
    let stranger = start_agent(&core, tmp.path(), "stranger", &[&other]);
    for agent in [&trusting, &stranger] {
        wait_version(&admin, tmp.path(), &agent.hostname, CURRENT).await;
    }
    let original = std::fs::read(&trusting.binary).unwrap();
    let mut all = spec(NEXT, Strategy::All);
    all.max_failures = Some(Amount::Percent(100));
    let started = deploy(&admin, AdminRequest::ReleaseDeploy(all)).await;
    let (done, nodes) = wait_deploy(&admin, tmp.path(), started.deploy.id, DeployState::Done).await;
    assert_eq!(done.counts.failed, 2, "{nodes:#?}");
    let error_of = |name: &str| {
        nodes
            .iter()
            .find(|u| u.hostname == name)
            .and_then(|u| u.error.clone())
            .unwrap()
    };
    assert!(error_of("trusting").contains("SHA-256"), "{nodes:#?}");
    assert!(error_of("stranger").contains("not trusted"), "{nodes:#?}");
    for agent in [&trusting, &stranger] {
        assert_eq!(std::fs::read(&agent.binary).unwrap(), original);
        assert!(!agent.binary.with_file_name("tether-node.prev").exists());
        wait_version(&admin, tmp.path(), &agent.hostname, CURRENT).await;
    }
    // Nothing half-fetched is left: the corrupt download was removed.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("trusting/state/update"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The release cannot be deleted while... the deploy has ended: it can.
    drop((trusting, stranger));
    kill_all_under(tmp.path());
}

fn code(
    result: Result<Vec<AdminResponse>, tether_client::ClientError>,
) -> (tether_wire::ErrorCode, String) {
    match result {
        Err(tether_client::ClientError::Core { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// With agents running inside the test (which cannot replace themselves): bad requests are
/// refused with clear errors and nothing is started; a node's refusal halts a deploy; a node
/// in a deploy that has not ended cannot join another; a release in use cannot be deleted;
/// viewers may look but not deploy; pause, resume and cancel follow the deploy's state.
#[tokio::test]
async fn refusals_halts_and_controls() {
    let key = ReleaseSigningKey::generate();
    let public = key.public();
    let (core, admin, nodes, _tmp) =
        start_fleet(2, |c| c.release_keys = vec![public], |_| {}).await;
    let body = b"not really an agent".to_vec();
    upload(&admin, sign(&key, "2.0.0", &arch(), &body), &body).await;

    // Bad requests: nothing is created.
    let mut unknown = spec("3.0.0", Strategy::All);
    let (c, m) = code(
        admin
            .0
            .request(&AdminRequest::ReleaseDeploy(unknown.clone()))
            .await,
    );
    assert_eq!(c, tether_wire::ErrorCode::NOT_FOUND, "{m}");
    assert!(m.contains("upload it first"), "{m}");
    unknown.version = "2.0.0".into();
    unknown.targets = TaskTargets::default();
    let (_, m) = code(
        admin
            .0
            .request(&AdminRequest::ReleaseDeploy(unknown.clone()))
            .await,
    );
    assert!(m.contains("no nodes selected"), "{m}");
    unknown.targets.nodes = vec!["no-such-node".into()];
    let (c, m) = code(
        admin
            .0
            .request(&AdminRequest::ReleaseDeploy(unknown.clone()))
            .await,
    );
    assert!(m.contains("no-such-node"), "{c}: {m}");
    let mut mixed = spec("2.0.0", Strategy::All);
    mixed.canary = Some(Amount::Count(1));
    let (_, m) = code(admin.0.request(&AdminRequest::ReleaseDeploy(mixed)).await);
    assert!(m.contains("--strategy canary"), "{m}");
    let mut quick = spec("2.0.0", Strategy::All);
    quick.watchdog_ms = 10;
    let (_, m) = code(admin.0.request(&AdminRequest::ReleaseDeploy(quick)).await);
    assert!(m.contains("--watchdog"), "{m}");
    let listed = match admin
        .request(AdminRequest::DeployList { limit: 10 })
        .await
        .unwrap()
        .pop()
    {
        Some(AdminResponse::Deploys(all)) => all,
        other => panic!("unexpected {other:?}"),
    };
    assert!(listed.is_empty());

    // Viewers look, never deploy.
    let (_, viewer) = core
        .user(&admin.0, "vera", tether_wire::admin::Role::Viewer)
        .await;
    let (c, _) = code(
        viewer
            .request(&AdminRequest::ReleaseDeploy(spec("2.0.0", Strategy::All)))
            .await,
    );
    assert_eq!(c, tether_wire::ErrorCode::PERMISSION_DENIED);

    // One node at a time, an hour apart: the first refuses (it cannot replace itself) and the
    // deploy halts with the second still pending.
    let mut rolling = spec("2.0.0", Strategy::Rolling);
    rolling.batch = Some(Amount::Count(1));
    rolling.pause_ms = 3_600_000;
    let started = deploy(&admin, AdminRequest::ReleaseDeploy(rolling)).await;
    let tmp = tempfile::tempdir().unwrap();
    let (halted, updates) =
        wait_deploy(&admin, tmp.path(), started.deploy.id, DeployState::Halted).await;
    assert_eq!(
        (halted.counts.failed, halted.counts.pending),
        (1, 1),
        "{updates:#?}"
    );
    let failed = updates
        .iter()
        .find(|u| u.state == UpdateState::Failed)
        .unwrap();
    assert!(
        failed
            .error
            .as_deref()
            .unwrap()
            .contains("cannot replace itself"),
        "{failed:?}"
    );
    assert_eq!(
        viewer
            .request(&AdminRequest::DeployStatus {
                id: started.deploy.id
            })
            .await
            .unwrap()
            .len(),
        2
    );

    // The pending node cannot join another deploy; the release cannot be deleted.
    let (c, m) = code(
        admin
            .0
            .request(&AdminRequest::ReleaseDeploy(spec("2.0.0", Strategy::All)))
            .await,
    );
    assert_eq!(c, tether_wire::ErrorCode::CONFLICT, "{m}");
    assert!(m.contains(&format!("deploy {}", started.deploy.id)), "{m}");
    let delete = AdminRequest::ReleaseDelete {
        version: "2.0.0".into(),
        os: None,
        arch: None,
    };
    let (_, m) = code(admin.0.request(&delete).await);
    assert!(m.contains("used by deploy"), "{m}");

    // Controls follow the state: a halted deploy resumes, not pauses; a cancelled one nothing.
    let control = |action| AdminRequest::DeployControl {
        id: started.deploy.id,
        action,
    };
    let (c, m) = code(
        admin
            .0
            .request(&control(tether_wire::deploys::DeployAction::Pause))
            .await,
    );
    assert_eq!(c, tether_wire::ErrorCode::CONFLICT, "{m}");
    let resumed = deploy(&admin, control(tether_wire::deploys::DeployAction::Resume)).await;
    assert_eq!(resumed.deploy.state, DeployState::Running);
    let paused = deploy(&admin, control(tether_wire::deploys::DeployAction::Pause)).await;
    assert_eq!(paused.deploy.state, DeployState::Paused);
    let cancelled = deploy(&admin, control(tether_wire::deploys::DeployAction::Cancel)).await;
    assert_eq!(cancelled.deploy.state, DeployState::Cancelled);
    assert_eq!(cancelled.counts.cancelled, 1);
    let (c, _) = code(
        admin
            .0
            .request(&control(tether_wire::deploys::DeployAction::Resume))
            .await,
    );
    assert_eq!(c, tether_wire::ErrorCode::CONFLICT);
    // Nothing to roll back: no node was updated.
    let (_, m) = code(
        admin
            .0
            .request(&AdminRequest::DeployRollback {
                id: started.deploy.id,
            })
            .await,
    );
    assert!(m.contains("nothing to roll back"), "{m}");
    admin.request(delete).await.unwrap();

    // Every deploy request is audited.
    let audit = format!(
        "{:?}",
        admin
            .request(AdminRequest::Audit(tether_wire::users::AuditQuery {
                action: Some("versions".into()),
                limit: 100,
                ..Default::default()
            }))
            .await
            .unwrap()
    );
    for wanted in [
        "ReleaseDeploy",
        "DeployControl",
        "DeployRollback",
        "strategy",
    ] {
        assert!(audit.contains(wanted), "{wanted}");
    }
    // With --offline skip, a node away at its turn is skipped, and the deploy ends.
    let mut nodes = nodes;
    let (away, node) = nodes.pop().unwrap();
    node.stop().await.unwrap();
    wait_status(&admin, away, NodeStatus::Offline).await;
    upload(&admin, sign(&key, "2.0.0", &arch(), &body), &body).await;
    let mut skip = spec("2.0.0", Strategy::All);
    skip.offline = OfflinePolicy::Skip;
    skip.max_failures = Some(Amount::Percent(100));
    let started = deploy(&admin, AdminRequest::ReleaseDeploy(skip)).await;
    let (done, updates) =
        wait_deploy(&admin, tmp.path(), started.deploy.id, DeployState::Done).await;
    assert_eq!(
        (done.counts.skipped, done.counts.failed),
        (1, 1),
        "{updates:#?}"
    );
    let skipped = updates.iter().find(|u| u.node == away).unwrap();
    assert_eq!(skipped.error.as_deref(), Some("offline when its turn came"));
    for (_, node) in nodes {
        node.stop().await.unwrap();
    }
}

/// A download broken off by the agent's death resumes from where it stopped; a node offline
/// when its turn comes is updated when it returns (and the deploy waits for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_resume_and_offline_nodes_are_updated_when_they_return() {
    let tmp = tempfile::tempdir().unwrap();
    let _reaper = Reaper(tmp.path().to_path_buf());
    let key = ReleaseSigningKey::generate();
    let public = key.public();
    let core = TestCore::start(|c| {
        c.auto_approve = true;
        c.release_keys = vec![public];
    })
    .await;
    let admin = core.admin().await;
    let next = tmp.path().join("tether-node-next");
    agent_with_version(NEXT, &next);
    let body = std::fs::read(&next).unwrap();
    upload(&admin, sign(&key, NEXT, &arch(), &body), &body).await;
    let mut busy = start_agent(&core, tmp.path(), "busy", &[&key]);
    let mut away = start_agent(&core, tmp.path(), "away", &[&key]);
    for agent in [&busy, &away] {
        wait_version(&admin, tmp.path(), &agent.hostname, CURRENT).await;
    }
    away.proc.kill9();
    let away_id = admin
        .nodes()
        .await
        .into_iter()
        .find(|n| n.hostname == "away")
        .unwrap()
        .id;
    wait_status(&admin, away_id, NodeStatus::Offline).await;

    // Slow enough to be caught mid-way: about 6 s for the whole file.
    let mut slow = spec(NEXT, Strategy::All);
    slow.rate_limit = Some(8 << 20);
    let started = deploy(&admin, AdminRequest::ReleaseDeploy(slow)).await;
    let id = started.deploy.id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, nodes) = status(&admin, id).await;
        let fetched = nodes.iter().find(|u| u.hostname == "busy").unwrap().bytes;
        if fetched > 10 << 20 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{nodes:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    busy.proc.kill9();
    let busy_again = start_agent(&core, tmp.path(), "busy", &[&key]);
    wait_version(&admin, tmp.path(), "busy", NEXT).await;
    let log = std::fs::read_to_string(tmp.path().join("busy/node-1.log")).unwrap();
    let resumed = log
        .lines()
        .find(|l| l.contains("downloading an agent release"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(!resumed.contains("from=0 "), "{resumed}");

    // The deploy waits for the node that is away.
    let (view, nodes) = status(&admin, id).await;
    assert_eq!(view.deploy.state, DeployState::Running, "{nodes:#?}");
    assert_eq!(
        (view.counts.success, view.counts.pending),
        (1, 1),
        "{nodes:#?}"
    );
    let away_again = start_agent(&core, tmp.path(), "away", &[&key]);
    let (done, nodes) = wait_deploy(&admin, tmp.path(), id, DeployState::Done).await;
    assert_eq!(done.counts.success, 2, "{nodes:#?}");
    wait_version(&admin, tmp.path(), "away", NEXT).await;

    // A deploy cancelled while its nodes fetch: they finish, and their ends are recorded.
    const LATER: &str = "9.2.0-test";
    let later = tmp.path().join("tether-node-later");
    agent_with_version(LATER, &later);
    let body = std::fs::read(&later).unwrap();
    upload(&admin, sign(&key, LATER, &arch(), &body), &body).await;
    let mut slow = spec(LATER, Strategy::All);
    slow.rate_limit = Some(8 << 20);
    let started = deploy(&admin, AdminRequest::ReleaseDeploy(slow)).await;
    let id = started.deploy.id;
    loop {
        let (view, _) = status(&admin, id).await;
        if view.counts.active == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cancelled = deploy(
        &admin,
        AdminRequest::DeployControl {
            id,
            action: tether_wire::deploys::DeployAction::Cancel,
        },
    )
    .await;
    assert_eq!(cancelled.deploy.state, DeployState::Cancelled);
    assert_eq!(cancelled.counts.active, 2, "nothing under way is cancelled");
    for name in ["busy", "away"] {
        wait_version(&admin, tmp.path(), name, LATER).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (view, nodes) = status(&admin, id).await;
        if view.counts.success == 2 {
            assert_eq!(view.deploy.state, DeployState::Cancelled);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{view:?} {nodes:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop((busy, away, busy_again, away_again));
    kill_all_under(tmp.path());
}

/// The state `node` has in deploy `id`, once `check` holds for it.
async fn wait_node(admin: &Admin, id: u64, check: impl Fn(&NodeUpdate) -> bool) -> NodeUpdate {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (view, nodes) = status(admin, id).await;
        if let Some(update) = nodes.iter().find(|u| check(u)) {
            return update.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{view:?} {nodes:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node that waited long for a download place has the whole install deadline once it
/// installs: the deadline runs from `installing`, not from the node's start. (At 10,000 nodes
/// and 200 downloads at once, nodes that waited over the deadline were failed the moment they
/// reported `installing`.) Past the deadline the node is failed, and the deploy halts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_deadline_runs_from_installing_not_from_the_start() {
    use tether_core::clock::ManualClock;
    use tether_wire::control::{CoreMessage, NodeMessage};
    use tether_wire::deploys::UpdateStatus;

    let key = ReleaseSigningKey::generate();
    let public = key.public();
    let start_ms = tether_core::clock::unix_ms(std::time::SystemTime::now());
    let clock = std::sync::Arc::new(ManualClock::at(start_ms));
    let core = TestCore::start_with_clock(
        |c| {
            c.auto_approve = true;
            c.release_keys = vec![public];
        },
        clock.clone(),
    )
    .await;
    let admin = core.admin().await;
    let (node, mut raw) = enrolled_node(&core).await;
    raw.send(&NodeMessage::StaticFacts(tether_wire::facts::StaticFacts {
        hostname: "raw".into(),
        arch: arch(),
        ..Default::default()
    }))
    .await;
    eventually("the node's facts", || async {
        admin.node(node).await.and_then(|n| n.static_facts)
    })
    .await;
    let body = b"an agent that never comes back".to_vec();
    upload(&admin, sign(&key, "2.0.0", &arch(), &body), &body).await;
    let mut quick = spec("2.0.0", Strategy::All);
    quick.watchdog_ms = 1_000;
    let id = deploy(&admin, AdminRequest::ReleaseDeploy(quick))
        .await
        .deploy
        .id;
    loop {
        match raw.recv().await {
            Some(CoreMessage::Update(order)) => {
                assert_eq!(order.deploy, id);
                break;
            }
            Some(_) => {}
            None => panic!("the connection ended before the order"),
        }
    }
    let report = |state| {
        NodeMessage::UpdateStatus(UpdateStatus {
            deploy: id,
            state,
            bytes: 0,
            error: None,
        })
    };
    raw.send(&report(UpdateState::Downloading)).await;
    wait_node(&admin, id, |u| u.state == UpdateState::Downloading).await;

    // Ten minutes waiting for a download place, then the install begins.
    clock.set(start_ms + 600_000);
    raw.send(&report(UpdateState::Installing)).await;
    wait_node(&admin, id, |u| u.state == UpdateState::Installing).await;
    // Each report wakes the deploy's driver, and it looks again every second besides: after
    // three looks the node is still installing, within its 121 s.
    for _ in 0..3 {
        raw.send(&report(UpdateState::Installing)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (view, nodes) = status(&admin, id).await;
    assert_eq!(nodes[0].state, UpdateState::Installing, "{nodes:#?}");
    assert_eq!(view.deploy.state, DeployState::Running);

    // Past the watchdog and the grace: failed, and the deploy halts (no failure tolerated).
    clock.set(start_ms + 600_000 + 122_000);
    let failed = wait_node(&admin, id, |u| u.state == UpdateState::Failed).await;
    let error = failed.error.unwrap_or_default();
    assert!(error.contains("did not come back within 121 s"), "{error}");
    let (view, _) = wait_deploy(&admin, Path::new("/nonexistent"), id, DeployState::Halted).await;
    assert_eq!(view.counts.failed, 1);
}

/// Every agent process (`tether-node run`) started from under `root`.
fn agent_pids_under(root: &Path) -> Vec<i32> {
    let prefix = root.to_string_lossy().into_owned();
    processes_under(root)
        .into_iter()
        .filter(|(_, args)| {
            args.first().is_some_and(|a| a.starts_with(&prefix))
                && args.get(1).is_some_and(|a| a == "run")
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// Under a service manager (systemd sets `INVOCATION_ID`; here the test plays systemd with
/// `Restart=always`, `RestartSec=1` and `KillMode=process`): a release that exits at once is
/// restarted by the manager until the watchdog puts the old binary back; the watchdog then
/// leaves the start to the manager, so exactly one agent runs afterwards, the manager's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_service_manager_the_watchdog_leaves_the_restart_to_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

    let tmp = tempfile::tempdir().unwrap();
    let _reaper = Reaper(tmp.path().to_path_buf());
    let key = ReleaseSigningKey::generate();
    let public = key.public();
    let core = TestCore::start(|c| {
        c.auto_approve = true;
        c.release_keys = vec![public];
    })
    .await;
    let admin = core.admin().await;
    let broken = b"#!/bin/sh\necho broken release >&2\nexit 1\n".to_vec();
    upload(
        &admin,
        sign(&key, "6.6.7-broken", &arch(), &broken),
        &broken,
    )
    .await;

    // The manager: starts the unit's command, and again a second after each exit.
    let dir = tmp.path().join("managed");
    let (binary, args) = agent_command(&core, tmp.path(), "managed", &[&key]);
    let stop = Arc::new(AtomicBool::new(false));
    let starts = Arc::new(AtomicUsize::new(0));
    let unit_pid = Arc::new(AtomicU32::new(0));
    let manager = {
        let (stop, starts, unit_pid, binary, log) = (
            stop.clone(),
            starts.clone(),
            unit_pid.clone(),
            binary.clone(),
            dir.join("unit.log"),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap();
                starts.fetch_add(1, Ordering::SeqCst);
                let mut child = std::process::Command::new(&binary)
                    .args(&args)
                    .env("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
                    .env("TETHER_LOG", "info")
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(log)
                    .spawn()
                    .unwrap();
                unit_pid.store(child.id(), Ordering::SeqCst);
                // Stopped by the test: the unit's own process is killed (KillMode=process).
                loop {
                    if stop.load(Ordering::SeqCst) {
                        let _ = child.kill();
                        let _ = child.wait();
                        return;
                    }
                    if child.try_wait().unwrap().is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let log = || std::fs::read_to_string(dir.join("unit.log")).unwrap_or_default();
    wait_version(&admin, tmp.path(), "managed", CURRENT).await;
    let original = std::fs::read(&binary).unwrap();

    let mut quick = spec("6.6.7-broken", Strategy::All);
    quick.watchdog_ms = 4_000;
    let started = deploy(&admin, AdminRequest::ReleaseDeploy(quick)).await;
    let (halted, nodes) =
        wait_deploy(&admin, tmp.path(), started.deploy.id, DeployState::Halted).await;
    assert_eq!(halted.counts.rollback, 1, "{nodes:#?}\n{}", log());
    // Core records the rollback when the old agent authenticates; the agent's own report (the
    // watchdog's reason) follows on its control stream.
    wait_node(&admin, started.deploy.id, |u| {
        u.error
            .as_deref()
            .is_some_and(|e| e.contains("did not authenticate"))
    })
    .await;

    // The old agent is back in place, started by the manager, and alone.
    wait_version(&admin, tmp.path(), "managed", CURRENT).await;
    assert_eq!(std::fs::read(&binary).unwrap(), original);
    let unit_log = log();
    assert!(unit_log.contains("broken release"), "{unit_log}");
    assert!(
        starts.load(Ordering::SeqCst) >= 2,
        "the manager restarted the unit"
    );
    // Had the watchdog started the old agent itself, that one would run (outside the unit) and
    // the manager's would keep failing to take the state directory.
    let pids = agent_pids_under(tmp.path());
    let unit = unit_pid.load(Ordering::SeqCst) as i32;
    assert_eq!(pids, vec![unit], "one agent, the manager's\n{unit_log}");

    stop.store(true, Ordering::SeqCst);
    manager.join().unwrap();
    kill_all_under(tmp.path());
}

//! One identity, one machine: a state directory copied to a second machine (a cloned VM, a copied
//! disk image) must not take the node over in turns. Real `tether-node` processes sharing one
//! identity, real QUIC, the real CLI.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;
use tether_wire::NodeId;
use tether_wire::admin::{NodeStatus, NodeView};

/// A copy of an enrolled node's state directory, as a disk image would carry it.
fn copy_state(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["node.id", "node.key", "agent.secret", "core.toml"] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// A machine-id file for a pretend second machine.
fn machine_id(dir: &Path, name: &str, id: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{id}\n")).unwrap();
    path
}

/// Watches the node for a while: it must stay online under one hostname the whole time.
async fn stays(admin: &Admin, id: NodeId, hostname: &str) -> NodeView {
    let mut last = None;
    for _ in 0..15 {
        let node = admin.node(id).await.unwrap();
        assert_eq!(node.status, NodeStatus::Online, "{node:?}");
        assert_eq!(node.hostname, hostname, "the hostname must not flip");
        last = Some(node);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last.unwrap()
}

async fn enrolled(core: &TestCore, admin: &Admin, state: &Path, hostname: &str) -> (Proc, NodeId) {
    let token = core.token().encode();
    let node = spawn_node_with(
        state,
        &core.addr.to_string(),
        Some(&token),
        &["--hostname", hostname],
    );
    let id = node_id_in(state).await;
    let view = wait_status(admin, id, NodeStatus::Online).await;
    assert_eq!(view.hostname, hostname);
    (node, id)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copied_identity_on_another_machine_is_refused_and_the_first_keeps_it() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let tmp = tempfile::tempdir().unwrap();
    let (first_state, copy_state_dir) = (tmp.path().join("alpha"), tmp.path().join("beta"));
    let (mut first, id) = enrolled(&core, &admin, &first_state, "alpha").await;
    let first_addr = admin.node(id).await.unwrap().public_addr.unwrap();

    // The copy, on "another machine" (its own machine id), while the first is connected.
    copy_state(&first_state, &copy_state_dir);
    let other = machine_id(
        tmp.path(),
        "beta-machine-id",
        "0123456789abcdef0123456789abcdef",
    );
    let mut copy = spawn_node_with(
        &copy_state_dir,
        &core.addr.to_string(),
        None,
        &[
            "--hostname",
            "beta",
            "--machine-id-file",
            other.to_str().unwrap(),
        ],
    );
    let (code, log) = tokio::task::spawn_blocking(move || {
        let ended = copy.wait_exit(Duration::from_secs(30));
        drop(copy);
        ended
    })
    .await
    .unwrap();
    assert_eq!(code, Some(7), "the copy exits with its own status: {log}");
    assert!(
        log.contains("in use by another machine") && log.contains("enroll it as a new node"),
        "the copy is told what to do: {log}"
    );
    assert!(first.is_running());
    let node = stays(&admin, id, "alpha").await;
    assert_eq!(
        node.public_addr.as_deref(),
        Some(first_addr.as_str()),
        "never taken over"
    );
    let conflict = node.conflict.expect("the node is flagged");
    assert_eq!(conflict.hostname, "beta");
    assert!(conflict.address.starts_with("127.0.0.1:"));
    assert_ne!(conflict.address, first_addr);
    assert!(
        conflict.reason.contains("machine fingerprint"),
        "{}",
        conflict.reason
    );
    assert_eq!(conflict.attempts, 1);

    // Admins see it in the list and the detail, and scripts in the JSON.
    let identity = core.data().join("admin.identity");
    let listed = tether_json(
        &identity,
        &core.addr.to_string(),
        &["node", "list", "--json"],
    );
    assert_eq!(listed[0]["conflict"]["hostname"], "beta");
    let shown = tether(
        &identity,
        &core.addr.to_string(),
        &["node", "show", "alpha"],
    );
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("online, conflict") && text.contains("connected: beta from"),
        "{text}"
    );
    let list = tether(&identity, &core.addr.to_string(), &["node", "list"]);
    assert!(String::from_utf8_lossy(&list.stderr).contains("1 node with an identity conflict"));

    // The first machine's own reconnects still work: a crash and a restart...
    first.kill9();
    let mut first = spawn_node_with(
        &first_state,
        &core.addr.to_string(),
        None,
        &["--hostname", "alpha"],
    );
    eventually(
        "the restarted agent to replace its dead connection",
        || async {
            admin.node(id).await.filter(|n| {
                n.status == NodeStatus::Online && n.public_addr.as_deref() != Some(&first_addr)
            })
        },
    )
    .await;
    assert!(first.is_running());
    // ...and a reboot, which changes the boot id and so the fingerprint: the old connection is
    // dead (probed), so the new one takes over at once.
    let before = admin.node(id).await.unwrap().public_addr.unwrap();
    first.kill9();
    let rebooted = machine_id(tmp.path(), "rebooted", "fedcba9876543210fedcba9876543210");
    let mut first = spawn_node_with(
        &first_state,
        &core.addr.to_string(),
        None,
        &[
            "--hostname",
            "alpha",
            "--machine-id-file",
            rebooted.to_str().unwrap(),
        ],
    );
    eventually("the rebooted machine to take its identity back", || async {
        admin
            .node(id)
            .await
            .filter(|n| n.status == NodeStatus::Online && n.public_addr.as_deref() != Some(&before))
    })
    .await;
    assert!(first.is_running(), "{}", first.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_copies_taking_turns_are_stopped() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let tmp = tempfile::tempdir().unwrap();
    let (first_state, copy_state_dir) = (tmp.path().join("alpha"), tmp.path().join("beta"));
    let (first, id) = enrolled(&core, &admin, &first_state, "alpha").await;
    // A perfect copy: same machine id, same boot (as two containers of one host): fingerprints
    // cannot tell them apart, the pattern of their connections can.
    copy_state(&first_state, &copy_state_dir);
    let copy = spawn_node_with(
        &copy_state_dir,
        &core.addr.to_string(),
        None,
        &["--hostname", "beta"],
    );
    let mut agents = vec![("alpha", first), ("beta", copy)];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (stopped, code, log) = loop {
        if let Some(i) = agents.iter_mut().position(|(_, p)| !p.is_running()) {
            let (name, mut proc) = agents.remove(i);
            let (code, log) = proc.wait_exit(Duration::from_secs(1));
            break (name, code, log);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no copy was stopped within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(code, Some(7), "{stopped}: {log}");
    assert!(log.contains("in use by another machine"), "{log}");
    let (survivor, mut running) = agents.pop().unwrap();
    // The survivor has the node, under its own hostname, steadily.
    eventually("the survivor's facts to be in place", || async {
        admin
            .node(id)
            .await
            .filter(|n| n.status == NodeStatus::Online && n.hostname == survivor)
    })
    .await;
    let node = stays(&admin, id, survivor).await;
    let conflict = node.conflict.expect("flagged");
    assert_eq!(conflict.hostname, stopped);
    assert!(
        conflict.reason.contains("replaced each other"),
        "{}",
        conflict.reason
    );
    assert!(running.is_running());
}

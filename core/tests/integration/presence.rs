//! Presence end to end: online, offline, back again, replaced, deleted, skewed, in maintenance.

use crate::support;

use std::time::Duration;

use support::*;
use tether_wire::admin::{AdminRequest, NodeStatus};
use tether_wire::control::CoreMessage;
use tether_wire::heartbeat::{Datagram, Heartbeat, encode_datagram};
use tether_wire::{ErrorCode, NodeId};

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_node_goes_offline_and_returns_when_restarted() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("node");
    let token = core.token().encode();
    let mut node = spawn_node(&state, &core.addr.to_string(), Some(&token));
    let id = node_id_in(&state).await;
    let online = wait_status(&admin, id, NodeStatus::Online).await;
    assert!(online.connected);

    node.kill9();
    // No goodbye, no heartbeat: offline after `offline_after` (3 s here), connection or not.
    let offline = wait_status(&admin, id, NodeStatus::Offline).await;
    assert!(offline.last_seen_ms.is_some());

    let _node = spawn_node(&state, &core.addr.to_string(), None);
    wait_status(&admin, id, NodeStatus::Online).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_node_says_goodbye_and_is_offline_at_once() {
    let core = TestCore::start(|c| {
        c.auto_approve = true;
        c.offline_after = Duration::from_secs(600); // only the goodbye can explain a quick offline
    })
    .await;
    let admin = core.admin().await;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("node");
    let node = LibNode::start(&state, core.addr, Some(core.token()), |_| {});
    let id = node_id_in(&state).await;
    wait_status(&admin, id, NodeStatus::Online).await;
    node.stop().await.unwrap();
    let view = wait_status(&admin, id, NodeStatus::Offline).await;
    assert!(!view.connected);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_core_restart_every_node_comes_back_by_itself() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("core");
    let port = free_udp_port();
    let addr = format!("127.0.0.1:{port}");
    let mut core = spawn_core(&data, port, &["--auto-approve"]);
    let token = join_token_of(&data);
    let identity = data.join("admin.identity");

    let states: Vec<_> = (0..3)
        .map(|i| tmp.path().join(format!("node-{i}")))
        .collect();
    let _nodes: Vec<_> = states
        .iter()
        .map(|s| spawn_node(s, &addr, Some(&token)))
        .collect();
    let online = |expect: usize| {
        let identity = identity.clone();
        let addr = addr.clone();
        move || {
            let identity = identity.clone();
            let addr = addr.clone();
            async move {
                let output = tether(
                    &identity,
                    &addr,
                    &["node", "list", "--status", "online", "--json"],
                );
                if !output.status.success() {
                    return None;
                }
                let list: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
                (list.as_array()?.len() == expect).then_some(())
            }
        }
    };
    eventually("three nodes online", online(3)).await;

    core.kill9();
    let mut core = spawn_core(&data, port, &["--auto-approve"]);
    eventually("all three back online after the restart", online(3)).await;
    assert!(core.is_running());
    assert!(
        core.log()
            .contains("nodes recorded online by the previous run"),
        "{}",
        core.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_come_at_the_interval_core_dictates() {
    let slow = TestCore::start(|c| {
        c.auto_approve = true;
        c.heartbeat_interval = Duration::from_secs(30);
        c.offline_after = Duration::from_secs(90);
    })
    .await;
    let fast = TestCore::start(|c| c.auto_approve = true).await; // 1 s
    let tmp = tempfile::tempdir().unwrap();
    let slow_node = LibNode::start(&tmp.path().join("a"), slow.addr, Some(slow.token()), |_| {});
    let fast_node = LibNode::start(&tmp.path().join("b"), fast.addr, Some(fast.token()), |_| {});
    let (slow_admin, fast_admin) = (slow.admin().await, fast.admin().await);
    let slow_id = node_id_in(&tmp.path().join("a")).await;
    let fast_id = node_id_in(&tmp.path().join("b")).await;

    eventually("four heartbeats at 1 s", || async {
        fast_admin
            .node(fast_id)
            .await
            .filter(|n| n.heartbeats_received >= 4)
    })
    .await;
    // Meanwhile the node told "30 s" sent its first heartbeat and no other.
    let view = wait_status(&slow_admin, slow_id, NodeStatus::Online).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let view_later = slow_admin.node(slow_id).await.unwrap();
    assert_eq!(view.heartbeats_received, 1);
    assert_eq!(view_later.heartbeats_received, 1);
    slow_node.stop().await.unwrap();
    fast_node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn static_facts_travel_only_when_core_lacks_them() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("node");
    let node = LibNode::start(&state, core.addr, Some(core.token()), |c| {
        c.hostname = Some("facts-1".into())
    });
    let id = node_id_in(&state).await;
    let first = eventually("facts on the first connection", || async {
        admin
            .node(id)
            .await
            .filter(|n| n.static_facts_received == 1)
    })
    .await;
    assert_eq!(first.static_facts.as_ref().unwrap().hostname, "facts-1");
    assert_eq!(first.hostname, "facts-1");
    node.stop().await.unwrap();

    // Same facts: the reconnected node learns core's digest and sends nothing.
    let node = LibNode::start(&state, core.addr, None, |c| {
        c.hostname = Some("facts-1".into())
    });
    let again = wait_status(&admin, id, NodeStatus::Online).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again_later = admin.node(id).await.unwrap();
    assert_eq!(again.static_facts_received, 0);
    assert_eq!(again_later.static_facts_received, 0);
    assert!(again_later.static_facts.is_some(), "core still holds them");
    node.stop().await.unwrap();

    // Changed facts (a new hostname): sent, and the record follows.
    let node = LibNode::start(&state, core.addr, None, |c| {
        c.hostname = Some("facts-2".into())
    });
    let changed = eventually("the changed facts", || async {
        admin
            .node(id)
            .await
            .filter(|n| n.static_facts_received == 1)
    })
    .await;
    assert_eq!(changed.hostname, "facts-2");
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_connection_replaces_the_older_one() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let token = core.token();
    let id = NodeId::random();
    let secret = enroll_raw(core.addr, &token, id).await;

    let old = RawNode::authenticated(core.addr, token.ca_fingerprint, id, &secret).await;

    let new = RawNode::authenticated(core.addr, token.ca_fingerprint, id, &secret).await;

    assert_eq!(old.closed().await.0, ErrorCode::REPLACED);
    let view = admin.node(id).await.unwrap();
    assert_eq!(
        view.status,
        NodeStatus::Online,
        "the replaced connection's end does not take the node offline"
    );
    assert_eq!(
        view.public_addr,
        Some(new.endpoint.local_addr().unwrap().to_string())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_node_is_told_exits_and_cannot_come_back() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("node");
    let token = core.token().encode();
    let mut node = spawn_node(&state, &core.addr.to_string(), Some(&token));
    let id = node_id_in(&state).await;
    wait_status(&admin, id, NodeStatus::Online).await;

    let identity = core.data().join("admin.identity");
    let deleted = tether_json(
        &identity,
        &core.addr.to_string(),
        &["node", "delete", &id.to_string()[..6], "--json"],
    );
    assert_eq!(deleted["deleted"], true);
    let (code, stderr) = node.wait_exit(PATIENCE);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("deleted"), "{stderr}");

    // Restarted with its secret: refused, exits again.
    let mut again = spawn_node(&state, &core.addr.to_string(), Some(&token));
    let (code, stderr) = again.wait_exit(PATIENCE);
    assert_eq!(code, Some(4), "{stderr}");
    // Enrolling again under the same id: refused.
    let mut raw = RawNode::connect(core.addr, core.token().ca_fingerprint).await;
    raw.enroll(&core.token(), id).await;
    assert!(matches!(
        raw.recv().await,
        Some(CoreMessage::Refused {
            code: ErrorCode::NODE_REMOVED,
            ..
        })
    ));

    // The record stays, marked deleted, hidden from the default list.
    let view = admin.node(id).await.unwrap();
    assert!(view.deleted && !view.connected);
    let listed = tether_json(
        &identity,
        &core.addr.to_string(),
        &["node", "list", "--json"],
    );
    assert_eq!(listed.as_array().unwrap().len(), 0);
    let listed = tether_json(
        &identity,
        &core.addr.to_string(),
        &["node", "list", "--deleted", "--json"],
    );
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_skewed_clock_is_refused_and_shown() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("node");
    let node = LibNode::start(&state, core.addr, Some(core.token()), |_| {});
    let id = node_id_in(&state).await;
    wait_status(&admin, id, NodeStatus::Online).await;
    node.stop().await.unwrap();

    // The node's clock runs five minutes fast: its proof is authentic but its time is refused.
    let node = LibNode::start(&state, core.addr, None, |c| c.clock_offset_ms = 300_000);
    let view = eventually("the skew to be recorded", || async {
        admin
            .node(id)
            .await
            .filter(|n| n.clock_skew_ms.is_some_and(|s| s > 290_000))
    })
    .await;
    assert_eq!(view.status, NodeStatus::Offline);
    assert!(!view.connected);
    assert!(
        !node.task.is_finished(),
        "a skewed node keeps retrying until its clock is fixed"
    );
    node.stop().await.unwrap();

    // Fixed clock: back online, skew cleared.
    let node = LibNode::start(&state, core.addr, None, |_| {});
    let view = wait_status(&admin, id, NodeStatus::Online).await;
    assert_eq!(view.clock_skew_ms, None);
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn skewed_and_malformed_datagrams_are_dropped_and_counted() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let (id, raw) = enrolled_node(&core).await;

    raw.connection
        .send_datagram(vec![0xff, 0x00, 0x13].into())
        .unwrap();
    raw.connection
        .send_datagram(vec![0u8; 1000].into())
        .unwrap();
    let skewed = Heartbeat {
        seq: 1,
        timestamp_ms: (now_secs() + 3600) * 1000,
        ..Default::default()
    };
    raw.connection
        .send_datagram(encode_datagram(&Datagram::Heartbeat(skewed)).into())
        .unwrap();
    let good = Heartbeat {
        seq: 2,
        timestamp_ms: now_secs() * 1000,
        ..Default::default()
    };
    raw.connection
        .send_datagram(encode_datagram(&Datagram::Heartbeat(good)).into())
        .unwrap();

    let view = eventually("the datagrams to be counted", || async {
        admin.node(id).await.filter(|n| {
            n.malformed_datagrams == 2 && n.skewed_heartbeats == 1 && n.heartbeats_received == 1
        })
    })
    .await;
    assert_eq!(
        view.status,
        NodeStatus::Online,
        "bad datagrams do not close the connection"
    );
    assert!(raw.connection.close_reason().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_is_a_status_of_its_own() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("node");
    let node = LibNode::start(&state, core.addr, Some(core.token()), |_| {});
    let id = node_id_in(&state).await;
    wait_status(&admin, id, NodeStatus::Online).await;

    admin
        .request(AdminRequest::SetMaintenance {
            id: id.to_string(),
            on: true,
        })
        .await
        .unwrap();
    let view = admin.node(id).await.unwrap();
    assert_eq!(view.status, NodeStatus::Maintenance);
    assert!(view.connected && view.maintenance);
    let listed = admin
        .request(AdminRequest::ListNodes {
            status: Some(NodeStatus::Maintenance),
            labels: vec![],
            group: None,
            include_deleted: false,
        })
        .await
        .unwrap();
    assert!(matches!(&listed[..], [tether_wire::admin::AdminResponse::Nodes(n)] if n.len() == 1));

    admin
        .request(AdminRequest::SetMaintenance {
            id: id.to_string(),
            on: false,
        })
        .await
        .unwrap();
    assert_eq!(admin.node(id).await.unwrap().status, NodeStatus::Online);
    node.stop().await.unwrap();
}

/// Sends heartbeat `seq` on the raw node's connection.
fn beat(raw: &RawNode, seq: u32) {
    let heartbeat = Heartbeat {
        seq,
        timestamp_ms: now_secs() * 1000,
        ..Default::default()
    };
    raw.connection
        .send_datagram(encode_datagram(&Datagram::Heartbeat(heartbeat)).into())
        .unwrap();
}

/// Heartbeats every 500 ms for `duration`; the node must be online at every look.
async fn beat_and_stay_online(
    admin: &Admin,
    raw: &RawNode,
    id: NodeId,
    seq: &mut u32,
    duration: Duration,
) {
    let until = tokio::time::Instant::now() + duration;
    while tokio::time::Instant::now() < until {
        *seq += 1;
        beat(raw, *seq);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let status = admin.node(id).await.unwrap().status;
        assert_eq!(
            status,
            NodeStatus::Online,
            "a node heartbeating every 500 ms (offline_after 3 s) went {status:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_heartbeating_node_stays_online_and_silence_on_a_live_connection_is_offline_until_it_beats_again()
 {
    // Core's offline timer is only moved when it fires, not on every heartbeat: this checks it
    // is moved (no flapping past `offline_after`), and armed again after a resumption.
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let (id, raw) = enrolled_node(&core).await;
    let mut seq = 0;
    beat_and_stay_online(&admin, &raw, id, &mut seq, Duration::from_secs(8)).await;

    // Silence, with the connection open: offline after `offline_after`.
    wait_status(&admin, id, NodeStatus::Offline).await;
    assert!(raw.connection.close_reason().is_none());
    // One heartbeat brings it back on the same connection, and the timer works again.
    beat_and_stay_online(&admin, &raw, id, &mut seq, Duration::from_secs(5)).await;
    wait_status(&admin, id, NodeStatus::Offline).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_connections_sessions_and_counters_of_the_running_core() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let identity = core.data().join("admin.identity");
    let addr = core.addr.to_string();
    let status = || tether_json(&identity, &addr, &["status", "--json"]);
    let fresh = status();
    assert_eq!(fresh["core_version"], env!("CARGO_PKG_VERSION"));
    assert!(fresh["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(fresh["connections"].as_u64().unwrap() >= 1, "the CLI's own");
    for counter in [
        "nodes_connected",
        "nodes_online",
        "heartbeats_received",
        "datagrams_malformed",
        "enrollments_approved",
    ] {
        assert_eq!(fresh[counter], 0, "{counter} of a fresh core");
    }

    let (id, raw) = enrolled_node(&core).await;
    beat(&raw, 1);
    raw.connection
        .send_datagram(vec![0xff; 8].into())
        .expect("datagrams allowed");
    let seen = eventually(
        "the heartbeat and the bad datagram to be counted",
        || async {
            let seen = status();
            (seen["heartbeats_received"] == 1 && seen["datagrams_malformed"] == 1).then_some(seen)
        },
    )
    .await;
    assert_eq!(seen["nodes_connected"], 1);
    assert_eq!(seen["nodes_online"], 1);
    assert_eq!(seen["enrollments_approved"], 1);
    assert!(seen["connections"].as_u64().unwrap() >= 2, "node and CLI");

    // Silent on a live connection: still connected, no longer online.
    wait_status(&core.admin().await, id, NodeStatus::Offline).await;
    let silent = status();
    assert_eq!(silent["nodes_connected"], 1);
    assert_eq!(silent["nodes_online"], 0);

    raw.connection.close(0u32.into(), b"bye");
    eventually("the closed session to leave the count", || async {
        (status()["nodes_connected"] == 0).then_some(())
    })
    .await;

    let text = tether(&identity, &addr, &["status"]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("0 connected, 0 online"), "{text}");
    assert!(
        text.contains("1 heartbeats, 1 malformed datagrams, 1 enrollments approved"),
        "{text}"
    );
}

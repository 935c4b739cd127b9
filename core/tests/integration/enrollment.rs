//! Enrollment end to end: real QUIC on 127.0.0.1, real redb, real `tether-node` processes.

use crate::support;

use std::time::Duration;

use support::*;
use tether_wire::admin::{ApplicationStatus, NodeStatus};
use tether_wire::control::{CoreMessage, NodeMessage};
use tether_wire::token::Fingerprint;
use tether_wire::{ErrorCode, NodeId};

#[tokio::test(flavor = "multi_thread")]
async fn enroll_pending_approve_then_online_with_metrics_on_the_same_connection() {
    let core = TestCore::start(|_| {}).await;
    let admin = core.admin().await;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("node");
    let mut node = spawn_node(&state, &core.addr.to_string(), Some(&core.token().encode()));
    let node_id = node_id_in(&state).await;

    let app = eventually("a pending application", || async {
        admin
            .applications()
            .await
            .into_iter()
            .find(|a| a.node_id == node_id)
    })
    .await;
    assert_eq!(app.status, ApplicationStatus::Pending);
    assert!(
        admin.node(node_id).await.is_none(),
        "no node before approval"
    );
    eventually("the node to print its application id", || async {
        node.log()
            .contains(&format!("tether enroll approve {}", app.id))
            .then_some(())
    })
    .await;

    // Approve through the real CLI, by a prefix of the id.
    let identity = core.data().join("admin.identity");
    let approved = tether_json(
        &identity,
        &core.addr.to_string(),
        &["enroll", "approve", &app.id.to_string()[..8], "--json"],
    );
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["node_id"], node_id.to_string());

    let view = wait_status(&admin, node_id, NodeStatus::Online).await;
    let facts = eventually("static facts", || async {
        admin.node(node_id).await.and_then(|n| n.static_facts)
    })
    .await;
    assert!(facts.cpu_count >= 1 && facts.memory_total > 0);
    assert!(view.metrics.unwrap().memory_total > 0);
    // Approval was pushed over the connection the application came on: no reconnect.
    assert_eq!(
        view.public_addr, app.remote_addr,
        "same connection before and after approval"
    );
    assert!(node.is_running());
    let application = admin.applications().await.pop().unwrap();
    assert_eq!(application.decided_by.as_deref(), Some("admin"));
}

#[tokio::test(flavor = "multi_thread")]
async fn re_enrollment_while_pending_is_idempotent() {
    let core = TestCore::start(|_| {}).await;
    let admin = core.admin().await;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("node");
    let token = core.token().encode();

    let mut node = spawn_node(&state, &core.addr.to_string(), Some(&token));
    let node_id = node_id_in(&state).await;
    let first = eventually("a pending application", || async {
        admin.applications().await.pop()
    })
    .await;
    node.kill9();

    // The same machine starts again (same id, same key): the same application, no duplicate.
    let again = spawn_node(&state, &core.addr.to_string(), Some(&token));
    eventually(
        "the restarted node to be told the same application",
        || async {
            again
                .log()
                .contains(&format!("tether enroll approve {}", first.id))
                .then_some(())
        },
    )
    .await;
    let apps = admin.applications().await;
    assert_eq!(apps.len(), 1, "no duplicate application");
    let second = apps[0].clone();
    assert_eq!(second.id, first.id);
    assert_eq!(second.node_id, node_id);
    assert_eq!(second.status, ApplicationStatus::Pending);

    let mut raw = RawNode::connect(core.addr, core.token().ca_fingerprint).await;
    raw.enroll(&core.token(), NodeId::random()).await;
    assert!(matches!(
        raw.recv().await,
        Some(CoreMessage::EnrollPending { .. })
    ));
    assert_eq!(
        admin.applications().await.len(),
        2,
        "a different id is a different application"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_node_is_told_why_and_stops_for_good() {
    let core = TestCore::start(|_| {}).await;
    let admin = core.admin().await;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("node");
    let token = core.token().encode();
    let mut node = spawn_node(&state, &core.addr.to_string(), Some(&token));
    let app = eventually("a pending application", || async {
        admin.applications().await.pop()
    })
    .await;

    let identity = core.data().join("admin.identity");
    let output = tether(
        &identity,
        &core.addr.to_string(),
        &[
            "enroll",
            "reject",
            &app.id.to_string(),
            "--reason",
            "unknown machine",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let (code, stderr) = node.wait_exit(PATIENCE);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("rejected") && stderr.contains("unknown machine"),
        "{stderr}"
    );

    // Starting it again does not loop: it is told again and exits.
    let mut again = spawn_node(&state, &core.addr.to_string(), Some(&token));
    let (code, stderr) = again.wait_exit(PATIENCE);
    assert_eq!(code, Some(3), "{stderr}");
    let apps = admin.applications().await;
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].status, ApplicationStatus::Rejected);
    assert_eq!(apps[0].reason.as_deref(), Some("unknown machine"));

    // Approving a rejected application is a conflict, reported clearly.
    let output = tether(
        &identity,
        &core.addr.to_string(),
        &["enroll", "approve", &app.id.to_string()],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("already rejected"));
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_enrollment_is_refused() {
    let core = TestCore::start(|_| {}).await;
    let token = core.token();
    let request = enroll_request(NodeId::random(), &token, now_secs(), random_nonce());

    let mut first = RawNode::connect(core.addr, token.ca_fingerprint).await;
    first.send(&NodeMessage::Enroll(request.clone())).await;
    assert!(matches!(
        first.recv().await,
        Some(CoreMessage::EnrollPending { .. })
    ));

    // The captured request, sent again on another connection.
    let mut replay = RawNode::connect(core.addr, token.ca_fingerprint).await;
    replay.send(&NodeMessage::Enroll(request)).await;
    let (code, message) = replay.refusal().await;
    assert_eq!(code, ErrorCode::REPLAYED_NONCE);
    assert!(message.contains("replay"), "{message}");
    assert_eq!(core.admin().await.applications().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_bad_enrollment_gets_its_own_clear_error_and_changes_nothing() {
    let core = TestCore::start(|c| c.max_pending_applications = 2).await;
    let token = core.token();
    let admin = core.admin().await;

    async fn refused(
        core: &TestCore,
        request: tether_wire::control::EnrollRequest,
    ) -> (ErrorCode, String) {
        let mut raw = RawNode::connect(core.addr, core.token().ca_fingerprint).await;
        raw.send(&NodeMessage::Enroll(request)).await;
        raw.refusal().await
    }

    let mut wrong_token = token.clone();
    wrong_token.secret = tether_wire::bytes::FixedBytes([0xee; 32]);
    let (code, message) = refused(
        &core,
        enroll_request(NodeId::random(), &wrong_token, now_secs(), random_nonce()),
    )
    .await;
    assert_eq!(code, ErrorCode::WRONG_JOIN_TOKEN);
    assert!(message.contains("key show"), "{message}");

    let (code, message) = refused(
        &core,
        enroll_request(NodeId::random(), &token, now_secs() + 300, random_nonce()),
    )
    .await;
    assert_eq!(code, ErrorCode::CLOCK_SKEW);
    // 300 s, or 299 if core's clock passed a second boundary after the request was made.
    assert!(
        message.contains("300 s ahead") || message.contains("299 s ahead"),
        "{message}"
    );
    let (code, _) = refused(
        &core,
        enroll_request(NodeId::random(), &token, now_secs() - 121, random_nonce()),
    )
    .await;
    assert_eq!(code, ErrorCode::CLOCK_SKEW);

    let mut forged = enroll_request(NodeId::random(), &token, now_secs(), random_nonce());
    forged.hostname = "someone-else".into();
    assert_eq!(refused(&core, forged).await.0, ErrorCode::BAD_SIGNATURE);

    let mut bad_key = enroll_request(NodeId::random(), &token, now_secs(), random_nonce());
    bad_key.public_key_pem = "not a key".into();
    assert_eq!(refused(&core, bad_key).await.0, ErrorCode::BAD_PUBLIC_KEY);

    let mut no_host = enroll_request(NodeId::random(), &token, now_secs(), random_nonce());
    no_host.hostname = String::new();
    assert_eq!(refused(&core, no_host).await.0, ErrorCode::INVALID_REQUEST);
    assert!(
        admin.applications().await.is_empty(),
        "refused requests leave no application"
    );

    // Same node id, different key: refused clearly.
    let id = NodeId::random();
    let mut raw = RawNode::connect(core.addr, token.ca_fingerprint).await;
    raw.enroll(&token, id).await;
    assert!(matches!(
        raw.recv().await,
        Some(CoreMessage::EnrollPending { .. })
    ));
    let other_key = tether_certs::node_key::NodeKey::generate().unwrap();
    let mut impostor = enroll_request(id, &token, now_secs(), random_nonce());
    impostor.public_key_pem = other_key.public().to_pem();
    impostor.signature = tether_wire::bytes::ByteBuf(other_key.sign(&impostor.signed_bytes()));
    let (code, message) = refused(&core, impostor).await;
    assert_eq!(code, ErrorCode::KEY_MISMATCH);
    assert!(message.contains(&id.to_string()), "{message}");

    // The pending cap (2): one more is fine, then refused.
    let mut second = RawNode::connect(core.addr, token.ca_fingerprint).await;
    second.enroll(&token, NodeId::random()).await;
    assert!(matches!(
        second.recv().await,
        Some(CoreMessage::EnrollPending { .. })
    ));
    let (code, message) = refused(
        &core,
        enroll_request(NodeId::random(), &token, now_secs(), random_nonce()),
    )
    .await;
    assert_eq!(code, ErrorCode::TOO_MANY_PENDING);
    assert!(message.contains("2 applications"), "{message}");
    assert_eq!(admin.applications().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_core_with_another_ca_is_refused_showing_both_fingerprints() {
    let core = TestCore::start(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let mut token = core.token();
    let real = token.ca_fingerprint;
    let pinned = Fingerprint([0x42; 32]);
    token.ca_fingerprint = pinned;
    let mut node = spawn_node(
        &tmp.path().join("node"),
        &core.addr.to_string(),
        Some(&token.encode()),
    );
    let (code, stderr) = node.wait_exit(PATIENCE);
    assert_eq!(code, Some(5), "{stderr}");
    assert!(
        stderr.contains(&pinned.to_string()),
        "expected fingerprint shown: {stderr}"
    );
    assert!(
        stderr.contains(&real.to_string()),
        "presented fingerprint shown: {stderr}"
    );
    assert!(core.admin().await.applications().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_join_token_stops_the_node_with_a_clear_message() {
    let core = TestCore::start(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let mut token = core.token();
    token.secret = tether_wire::bytes::FixedBytes([1; 32]);
    let mut node = spawn_node(
        &tmp.path().join("node"),
        &core.addr.to_string(),
        Some(&token.encode()),
    );
    let (code, stderr) = node.wait_exit(PATIENCE);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(
        stderr.contains("wrong_join_token") && stderr.contains("key show"),
        "{stderr}"
    );

    // A node with no token and no enrollment says what it needs.
    let mut bare = spawn_node(&tmp.path().join("bare"), &core.addr.to_string(), None);
    let (code, stderr) = bare.wait_exit(PATIENCE);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(stderr.contains("--token"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_approve_and_a_lost_secret_file_is_recovered_with_the_same_key() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("node");
    let token = core.token();

    let node = LibNode::start(&state, core.addr, Some(token.clone()), |_| {});
    let id = node_id_in(&state).await;
    wait_status(&admin, id, NodeStatus::Online).await;
    let apps = admin.applications().await;
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].decided_by.as_deref(), Some("auto-approve"));
    node.stop().await.unwrap();
    let secret_before = std::fs::read(state.join("agent.secret")).unwrap();

    std::fs::remove_file(state.join("agent.secret")).unwrap();
    let node = LibNode::start(&state, core.addr, Some(token), |_| {});
    wait_status(&admin, id, NodeStatus::Online).await;
    assert_eq!(
        std::fs::read(state.join("agent.secret")).unwrap(),
        secret_before,
        "same secret sent again"
    );
    assert_eq!(admin.applications().await.len(), 1, "no new application");
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_the_enrollment_secret_retires_old_tokens() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let old = core.token();
    let status = std::process::Command::new(binary("tether-core"))
        .args(["key", "rotate", "--data"])
        .arg(core.data())
        .status()
        .unwrap();
    assert!(status.success());
    let new = join_token_of(&core.data());
    let new = tether_wire::token::JoinToken::parse(&new).unwrap();
    assert_ne!(new.secret, old.secret);
    assert_eq!(
        new.ca_fingerprint, old.ca_fingerprint,
        "the CA does not change"
    );

    let mut raw = RawNode::connect(core.addr, old.ca_fingerprint).await;
    raw.enroll(&old, NodeId::random()).await;
    assert!(matches!(
        raw.recv().await,
        Some(CoreMessage::Refused {
            code: ErrorCode::WRONG_JOIN_TOKEN,
            ..
        })
    ));
    enroll_raw(core.addr, &new, NodeId::random()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_application_id_is_printed_and_approval_needs_no_polling() {
    // The node waits on its open connection; approval arrives without the node asking again.
    let core = TestCore::start(|_| {}).await;
    let admin = core.admin().await;
    let token = core.token();
    let id = NodeId::random();
    let mut raw = RawNode::connect(core.addr, token.ca_fingerprint).await;
    raw.enroll(&token, id).await;
    let Some(CoreMessage::EnrollPending { application_id }) = raw.recv().await else {
        panic!()
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    admin.approve(&application_id.to_string()).await;
    match raw.recv().await {
        Some(CoreMessage::EnrollApproved {
            node_id,
            encrypted_secret,
        }) => {
            assert_eq!(node_id, id);
            let secret: [u8; 32] = test_key()
                .decrypt(&encrypted_secret.0)
                .unwrap()
                .try_into()
                .unwrap();
            // And the secret works on this very connection.
            let auth = raw.auth(id, &secret, now_secs());
            raw.send(&auth).await;
            assert!(matches!(raw.recv().await, Some(CoreMessage::AuthOk(_))));
        }
        other => panic!("expected approval, got {other:?}"),
    }
}

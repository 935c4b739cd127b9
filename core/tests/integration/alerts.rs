//! Alerting end to end: rules evaluated on real heartbeats (from raw nodes whose metrics the
//! test chooses), alerts firing and resolving, acknowledged, silent in maintenance, damped when
//! they flap, the offline kind; a real HTTP receiver on loopback for webhooks (signed, retried,
//! every attempt recorded); bad input refused with nothing changed.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::Mac;
use support::*;
use tether_client::ClientError;
use tether_wire::ErrorCode;
use tether_wire::NodeId;
use tether_wire::admin::{AdminRequest, AdminResponse, Role};
use tether_wire::alerts::{
    Alert, AlertDetail, AlertQuery, AlertRule, AlertState, Channel, ChannelKind, Condition, Field,
    Op, Severity, Targets,
};
use tether_wire::heartbeat::{Datagram, Heartbeat, Metrics, encode_datagram};
use tether_wire::history::Metric;

const SECRET: &str = "webhook-secret-1";

/// What the receiver got: the signature header and the body.
type Received = Arc<Mutex<Vec<(Option<String>, serde_json::Value)>>>;

/// A webhook receiver on 127.0.0.1: answers 500 to the first `fail_first` requests, then 200.
async fn receiver(fail_first: usize) -> (String, Received) {
    let got: Received = Arc::default();
    let failures = Arc::new(Mutex::new(fail_first));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let got = got.clone();
            move |headers: HeaderMap, body: Bytes| {
                let got = got.clone();
                let failures = failures.clone();
                async move {
                    let signature = headers
                        .get("x-tether-signature")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    if let Some(signature) = &signature {
                        let mut mac =
                            hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
                        mac.update(&body);
                        let expected =
                            format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                        assert_eq!(signature, &expected, "the signature is the body's HMAC");
                    }
                    let mut left = failures.lock().unwrap();
                    if *left > 0 {
                        *left -= 1;
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    got.lock()
                        .unwrap()
                        .push((signature, serde_json::from_slice(&body).unwrap()));
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

fn beat(raw: &RawNode, seq: u32, cpu: f32) {
    let heartbeat = Heartbeat {
        seq,
        timestamp_ms: now_secs() * 1000,
        metrics: Metrics {
            cpu_percent: cpu,
            memory_used: 1 << 30,
            memory_total: 4 << 30,
            ..Default::default()
        },
    };
    raw.connection
        .send_datagram(encode_datagram(&Datagram::Heartbeat(heartbeat)).into())
        .unwrap();
}

fn cpu_rule(name: &str, threshold: f64, channels: &[&str]) -> AlertRule {
    AlertRule {
        name: name.into(),
        condition: Condition::Threshold {
            field: Field::Series(Metric::Cpu),
            op: Op::Gt,
            threshold,
        },
        for_ms: 0,
        severity: Severity::Critical,
        targets: Targets {
            labels: vec![("env".into(), "prod".into())],
            nodes: vec![],
            groups: vec![],
        },
        channels: channels.iter().map(|c| c.to_string()).collect(),
        enabled: true,
        created_by: String::new(),
        created_at_ms: 0,
    }
}

async fn add_rule(admin: &Admin, rule: AlertRule) -> Result<AlertRule, ClientError> {
    match admin
        .request(AdminRequest::AlertRuleAdd {
            rule,
            nodes: vec![],
        })
        .await?
        .remove(0)
    {
        AdminResponse::AlertRule(rule) => Ok(rule),
        other => panic!("{other:?}"),
    }
}

async fn add_webhook(
    admin: &Admin,
    name: &str,
    url: &str,
    secret: Option<&str>,
) -> Result<Channel, ClientError> {
    let channel = Channel {
        name: name.into(),
        kind: ChannelKind::Webhook {
            url: url.into(),
            secret: secret.map(str::to_string),
        },
        created_by: String::new(),
        created_at_ms: 0,
    };
    match admin
        .request(AdminRequest::AlertChannelAdd(channel))
        .await?
        .remove(0)
    {
        AdminResponse::AlertChannel(channel) => Ok(channel),
        other => panic!("{other:?}"),
    }
}

async fn alerts(admin: &Admin, firing: bool) -> Vec<Alert> {
    let mut out = Vec::new();
    for response in admin
        .request(AdminRequest::AlertList(AlertQuery {
            firing,
            node: None,
            limit: None,
        }))
        .await
        .unwrap()
    {
        match response {
            AdminResponse::Alerts(chunk) => out.extend(chunk),
            other => panic!("{other:?}"),
        }
    }
    out
}

async fn detail(admin: &Admin, id: u64) -> AlertDetail {
    match admin
        .request(AdminRequest::AlertShow { id })
        .await
        .unwrap()
        .remove(0)
    {
        AdminResponse::AlertDetail(d) => d,
        other => panic!("{other:?}"),
    }
}

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> (ErrorCode, String) {
    match result {
        Err(ClientError::Core { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A raw node labelled env=prod, authenticated and online.
async fn prod_node(core: &TestCore, admin: &Admin) -> (NodeId, RawNode) {
    let (id, raw, _) = prod_node_with_secret(core, admin).await;
    (id, raw)
}

/// The same, with its secret (to connect again).
async fn prod_node_with_secret(core: &TestCore, admin: &Admin) -> (NodeId, RawNode, [u8; 32]) {
    let token = core.token();
    let id = NodeId::random();
    let secret = enroll_raw(core.addr, &token, id).await;
    let raw = RawNode::authenticated(core.addr, token.ca_fingerprint, id, &secret).await;
    admin
        .request(AdminRequest::LabelNode {
            id: id.to_string(),
            set: vec![("env".into(), "prod".into())],
            remove: vec![],
        })
        .await
        .unwrap();
    (id, raw, secret)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_fires_resolves_and_tells_a_signed_webhook_with_retries() {
    let core = TestCore::start(|c| {
        c.auto_approve = true;
        c.alert_retry_backoff = Duration::from_millis(50);
    })
    .await;
    let admin = core.admin().await;
    let (url, got) = receiver(1).await;
    let (id, raw) = prod_node(&core, &admin).await;
    let shown = add_webhook(&admin, "ops", &url, Some(SECRET))
        .await
        .unwrap();
    // The secret is never shown back.
    assert!(!format!("{shown:?}").contains(SECRET));
    let rule = add_rule(&admin, cpu_rule("cpu-high", 90.0, &["ops"]))
        .await
        .unwrap();
    assert_eq!(rule.created_by, "admin");

    let mut seq = 0;
    // Below the threshold: nothing.
    seq += 1;
    beat(&raw, seq, 50.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(alerts(&admin, true).await.is_empty());

    seq += 1;
    beat(&raw, seq, 95.5);
    let fired = eventually("the alert firing", || async {
        alerts(&admin, true).await.into_iter().next()
    })
    .await;
    assert_eq!((fired.node_id, fired.rule.as_str()), (id, "cpu-high"));
    assert_eq!(fired.state, AlertState::Firing);
    assert_eq!(fired.value, Some(95.5));
    assert_eq!(fired.severity, Severity::Critical);
    assert!(fired.notified);
    // The receiver failed once; the retry got through, and both attempts are on record.
    let first = eventually("the webhook delivered", || async {
        got.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(
        first.0.as_deref().map(|s| s.starts_with("sha256=")),
        Some(true)
    );
    assert_eq!(first.1["event"], "firing");
    assert_eq!(first.1["alert"]["rule"], "cpu-high");
    assert_eq!(first.1["alert"]["value"], 95.5);
    let attempts = eventually("both attempts recorded", || async {
        let d = detail(&admin, fired.id).await;
        (d.deliveries.len() == 2).then_some(d.deliveries)
    })
    .await;
    assert!(!attempts[0].ok);
    assert!(
        attempts[0].error.as_deref().unwrap().contains("500"),
        "{attempts:?}"
    );
    assert!(attempts[1].ok && attempts[1].attempt == 2);

    // Still above: no second alert.
    seq += 1;
    beat(&raw, seq, 97.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(alerts(&admin, false).await.len(), 1);

    // A viewer may read alerts but not acknowledge them; an operator may.
    let (_, viewer) = core.user(&admin.0, "val", Role::Viewer).await;
    let viewer = Admin(viewer);
    assert_eq!(alerts(&viewer, true).await.len(), 1);
    let (denied, _) = code(
        viewer
            .request(AdminRequest::AlertAck { id: fired.id })
            .await,
    );
    assert_eq!(denied, ErrorCode::PERMISSION_DENIED);
    let (_, operator) = core.user(&admin.0, "ola", Role::Operator).await;
    let acked = match Admin(operator)
        .request(AdminRequest::AlertAck { id: fired.id })
        .await
        .unwrap()
        .remove(0)
    {
        AdminResponse::Alert(a) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(acked.acked_by.as_deref(), Some("ola"));
    assert_eq!(
        acked.state,
        AlertState::Firing,
        "acknowledged, still firing"
    );

    // Back below: resolved, with the value seen, and the receiver is told.
    seq += 1;
    beat(&raw, seq, 12.0);
    let resolved = eventually("the alert resolved", || async {
        let all = alerts(&admin, false).await;
        all.into_iter().find(|a| a.state == AlertState::Resolved)
    })
    .await;
    assert_eq!(resolved.id, fired.id);
    assert!(
        resolved.resolution.as_deref().unwrap().contains("cpu 12"),
        "{resolved:?}"
    );
    assert!(alerts(&admin, true).await.is_empty());
    let resolved_body = eventually("the resolution delivered", || async {
        got.lock().unwrap().get(1).cloned()
    })
    .await;
    assert_eq!(resolved_body.1["event"], "resolved");

    // A test through the channel: delivered at once, signed, marked as a test.
    let tested = match admin
        .request(AdminRequest::AlertChannelTest { name: "ops".into() })
        .await
        .unwrap()
        .remove(0)
    {
        AdminResponse::AlertDelivery(d) => d,
        other => panic!("{other:?}"),
    };
    assert!(tested.ok && tested.attempt == 1, "{tested:?}");
    let test_body = got
        .lock()
        .unwrap()
        .get(2)
        .cloned()
        .expect("the test arrived");
    assert_eq!(test_body.1["event"], "test");
    assert_eq!(test_body.1["alert"]["rule"], "tether-test");
    assert!(test_body.0.unwrap().starts_with("sha256="));
    let (c, m) = code(
        admin
            .request(AdminRequest::AlertChannelTest {
                name: "nope".into(),
            })
            .await,
    );
    assert_eq!(c, ErrorCode::NOT_FOUND);
    assert!(m.contains("no channel \"nope\""), "{m}");
    // A viewer may not send one.
    let (denied, _) = code(
        viewer
            .request(AdminRequest::AlertChannelTest { name: "ops".into() })
            .await,
    );
    assert_eq!(denied, ErrorCode::PERMISSION_DENIED);
    // The audit log has the rule, the channel (never its secret) and the acknowledgement.
    let audit = admin
        .request(AdminRequest::Audit(tether_wire::users::AuditQuery {
            limit: 50,
            ..Default::default()
        }))
        .await
        .unwrap();
    let text = format!("{audit:?}");
    for wanted in [
        "AlertRuleAdd",
        "AlertChannelAdd",
        "AlertAck",
        "signed",
        "AlertChannelTest",
    ] {
        assert!(text.contains(wanted), "{wanted} in the audit log");
    }
    assert!(
        !text.contains(SECRET),
        "the webhook secret is in the audit log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_is_silent_flaps_are_told_once_and_disabling_resolves() {
    let core = TestCore::start(|c| {
        c.auto_approve = true;
        c.alert_retry_backoff = Duration::from_millis(50);
        c.alert_flap_window = Duration::from_secs(3600);
    })
    .await;
    let admin = core.admin().await;
    let (url, got) = receiver(0).await;
    let (id, raw) = prod_node(&core, &admin).await;
    add_webhook(&admin, "ops", &url, None).await.unwrap();
    add_rule(&admin, cpu_rule("cpu-high", 90.0, &["ops"]))
        .await
        .unwrap();

    // Flapping: fire, resolve, fire again within the window.
    let mut seq = 0;
    for (cpu, firing) in [(95.0, 1), (10.0, 0), (96.0, 1)] {
        seq += 1;
        beat(&raw, seq, cpu);
        eventually("the alert's state", || async {
            (alerts(&admin, true).await.len() == firing).then_some(())
        })
        .await;
    }
    let all = alerts(&admin, false).await;
    assert_eq!(all.len(), 2);
    assert!(
        all[1].notified && !all[0].notified,
        "the second firing is damped: {all:?}"
    );
    // Told: the first firing and its resolution; not the second firing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events: Vec<String> = got
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events, ["firing", "resolved"]);

    // Disabling the rule resolves its firing alert; the damped alert's end is not announced.
    admin
        .request(AdminRequest::AlertRuleEnable {
            name: "cpu-high".into(),
            enabled: false,
        })
        .await
        .unwrap();
    let ended = eventually("resolved by disabling", || async {
        alerts(&admin, false).await.into_iter().find(|a| {
            a.state == AlertState::Resolved
                && a.resolution
                    .as_deref()
                    .is_some_and(|r| r.contains("disabled"))
        })
    })
    .await;
    assert_eq!(ended.node_id, id);
    seq += 1;
    beat(&raw, seq, 99.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        alerts(&admin, true).await.is_empty(),
        "a disabled rule is not evaluated"
    );

    // In maintenance a node is silent.
    add_rule(&admin, cpu_rule("cpu-very-high", 98.0, &[]))
        .await
        .unwrap();
    admin
        .request(AdminRequest::SetMaintenance {
            id: id.to_string(),
            on: true,
        })
        .await
        .unwrap();
    // The rules' view of nodes may be a few seconds old.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for _ in 0..3 {
        seq += 1;
        beat(&raw, seq, 99.5);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        alerts(&admin, true).await.is_empty(),
        "maintenance is silent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offline_rule_fires_after_its_duration_and_resolves_when_the_node_returns() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let (id, raw, secret) = prod_node_with_secret(&core, &admin).await;
    let token = core.token();
    let mut rule = cpu_rule("node-down", 0.0, &[]);
    rule.condition = Condition::Offline;
    rule.for_ms = 1000;
    add_rule(&admin, rule).await.unwrap();
    beat(&raw, 1, 5.0);
    // Gone without a word: offline after `offline_after` (3 s), then the rule's second.
    raw.connection.close(0u32.into(), b"bye");
    drop(raw);
    let fired = eventually("the offline alert", || async {
        alerts(&admin, true).await.into_iter().next()
    })
    .await;
    assert_eq!((fired.node_id, fired.condition.as_str()), (id, "offline"));
    assert!(fired.fired_at_ms - fired.since_ms >= 1000, "{fired:?}");
    assert!(fired.value.unwrap() >= 1.0, "seconds offline: {fired:?}");

    let raw = RawNode::authenticated(core.addr, token.ca_fingerprint, id, &secret).await;
    beat(&raw, 1, 5.0);
    let resolved = eventually("resolved when back", || async {
        alerts(&admin, false)
            .await
            .into_iter()
            .find(|a| a.state == AlertState::Resolved)
    })
    .await;
    assert_eq!(resolved.resolution.as_deref(), Some("the node is back"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_rules_and_channels_are_refused_and_a_dead_receiver_is_recorded() {
    let core = TestCore::start(|c| {
        c.auto_approve = true;
        c.alert_retries = 2;
        c.alert_retry_backoff = Duration::from_millis(20);
        c.alert_timeout = Duration::from_millis(500);
    })
    .await;
    let admin = core.admin().await;
    let (_, raw) = prod_node(&core, &admin).await;

    let (c, m) = code(add_rule(&admin, cpu_rule("x", f64::NAN, &[])).await);
    assert_eq!(c, ErrorCode::INVALID_ARGUMENT);
    assert!(m.contains("must be a number"), "{m}");
    let mut offline = cpu_rule("down", 0.0, &[]);
    offline.condition = Condition::Offline;
    let (c, m) = code(add_rule(&admin, offline).await);
    assert_eq!(c, ErrorCode::INVALID_ARGUMENT);
    assert!(m.contains("greater than zero"), "{m}");
    let (c, m) = code(add_rule(&admin, cpu_rule("cpu", 90.0, &["nope"])).await);
    assert_eq!(c, ErrorCode::INVALID_ARGUMENT);
    assert!(m.contains("no channel \"nope\""), "{m}");
    let (c, m) = code(add_webhook(&admin, "bad", "not a url", None).await);
    assert_eq!(c, ErrorCode::INVALID_ARGUMENT);
    assert!(m.contains("http://"), "{m}");
    let rules = match admin
        .request(AdminRequest::AlertRuleList)
        .await
        .unwrap()
        .remove(0)
    {
        AdminResponse::AlertRules(r) => r,
        other => panic!("{other:?}"),
    };
    assert!(rules.is_empty(), "nothing was added: {rules:?}");

    // A receiver nobody listens on: every attempt fails and is recorded; nothing else stops.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    add_webhook(&admin, "dead", &format!("http://{dead}/hook"), None)
        .await
        .unwrap();
    add_rule(&admin, cpu_rule("cpu", 90.0, &["dead"]))
        .await
        .unwrap();
    let (c, _) = code(add_rule(&admin, cpu_rule("cpu", 80.0, &[])).await);
    assert_eq!(c, ErrorCode::CONFLICT);
    let (c, m) = code(
        admin
            .request(AdminRequest::AlertChannelDelete {
                name: "dead".into(),
            })
            .await,
    );
    assert_eq!(c, ErrorCode::CONFLICT);
    assert!(m.contains("used by rule \"cpu\""), "{m}");
    // Testing it says why at once, after one attempt, and records nothing.
    let tested = match admin
        .request(AdminRequest::AlertChannelTest {
            name: "dead".into(),
        })
        .await
        .unwrap()
        .remove(0)
    {
        AdminResponse::AlertDelivery(d) => d,
        other => panic!("{other:?}"),
    };
    assert!(!tested.ok && tested.attempt == 1, "{tested:?}");
    assert_eq!(tested.error.as_deref(), Some("could not connect"));
    beat(&raw, 1, 99.0);
    let fired = eventually("the alert firing", || async {
        alerts(&admin, true).await.into_iter().next()
    })
    .await;
    let attempts = eventually("three failed attempts", || async {
        let d = detail(&admin, fired.id).await;
        (d.deliveries.len() == 3).then_some(d.deliveries)
    })
    .await;
    assert!(
        attempts
            .iter()
            .all(|d| !d.ok && d.error.as_deref() == Some("could not connect")),
        "{attempts:?}"
    );
    // Core still answers and evaluates.
    beat(&raw, 2, 10.0);
    eventually("resolved regardless", || async {
        alerts(&admin, true).await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_report_their_own_state_and_a_restart_loop_is_an_alert() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let mut rule = cpu_rule("agent-loop", 0.0, &[]);
    rule.condition = Condition::AgentRestarts { max: 1 };
    rule.targets = Targets::default();
    rule.for_ms = 600_000;
    add_rule(&admin, rule).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("node");

    // First start: its state, no restart yet, nothing fires.
    let node = LibNode::start(&state, core.addr, Some(core.token()), |_| {});
    let id = node_id_in(&state).await;
    let agent = eventually("the agent's state", || async {
        admin.node(id).await.and_then(|n| n.agent)
    })
    .await;
    assert_eq!(agent.pid, std::process::id(), "in-process agent");
    assert_eq!(agent.restarts, 0);
    assert!(!agent.version.is_empty());
    assert!(agent.rss_bytes > 0);
    let overview = match admin
        .request(AdminRequest::Overview)
        .await
        .unwrap()
        .remove(0)
    {
        AdminResponse::Overview(o) => o,
        other => panic!("{other:?}"),
    };
    assert_eq!(overview.agents_running, 1);
    node.stop().await.unwrap();
    // Offline, its last state is still shown (kept in the store).
    let offline = wait_status(&admin, id, tether_wire::admin::NodeStatus::Offline).await;
    assert_eq!(offline.agent.map(|a| a.pid), Some(std::process::id()));

    // Two restarts within the window: more than one, so it fires, with the count.
    for _ in 0..2 {
        let node = LibNode::start(&state, core.addr, None, |_| {});
        eventually("the agent back", || async {
            admin
                .node(id)
                .await
                .and_then(|n| n.agent)
                .filter(|a| a.restarts > 0)
        })
        .await;
        node.stop().await.unwrap();
    }
    let _node = LibNode::start(&state, core.addr, None, |_| {});
    let fired = eventually("the restart-loop alert", || async {
        alerts(&admin, true).await.into_iter().next()
    })
    .await;
    assert_eq!(fired.rule, "agent-loop");
    assert_eq!(fired.condition, "agent restarts > 1");
    assert!(fired.value.unwrap() >= 2.0, "{fired:?}");
    eventually("the third restart reported", || async {
        admin
            .node(id)
            .await
            .and_then(|n| n.agent)
            .filter(|a| a.restarts == 3)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_on_a_group_watches_its_nodes_and_those_below_as_they_move() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
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
    let (inside, raw_inside) = prod_node(&core, &admin).await;
    let (outside, raw_outside) = prod_node(&core, &admin).await;
    // One node in prod/web (below the group the rule names), the other in no group.
    admin
        .request(AdminRequest::NodeGroup {
            node: inside.to_string(),
            group: Some("web".into()),
        })
        .await
        .unwrap();
    let mut rule = cpu_rule("prod-cpu", 90.0, &[]);
    rule.targets = Targets {
        groups: vec!["prod".into()],
        ..Targets::default()
    };
    let added = add_rule(&admin, rule.clone()).await.unwrap();
    assert_eq!(added.targets.groups, ["prod"]);

    beat(&raw_inside, 1, 95.0);
    beat(&raw_outside, 1, 95.0);
    let fired = eventually("the node in the group firing", || async {
        alerts(&admin, true).await.into_iter().next()
    })
    .await;
    assert_eq!(fired.node_id, inside);
    tokio::time::sleep(Duration::from_millis(500)).await;
    beat(&raw_outside, 2, 96.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        alerts(&admin, true)
            .await
            .iter()
            .all(|a| a.node_id != outside),
        "a node in no group is not watched"
    );

    // Moved into the group, it is watched from its next heartbeat.
    admin
        .request(AdminRequest::NodeGroup {
            node: outside.to_string(),
            group: Some("web".into()),
        })
        .await
        .unwrap();
    beat(&raw_outside, 3, 97.0);
    eventually("the moved node firing", || async {
        alerts(&admin, true)
            .await
            .into_iter()
            .find(|a| a.node_id == outside)
    })
    .await;

    // A group that does not exist is refused, naming it; nothing is added.
    rule.name = "nowhere-cpu".into();
    rule.targets.groups = vec!["nowhere".into()];
    match add_rule(&admin, rule).await {
        Err(ClientError::Core { code, message }) => {
            assert_eq!(code, ErrorCode::NOT_FOUND);
            assert!(message.contains("no group \"nowhere\""), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let rules = match admin
        .request(AdminRequest::AlertRuleList)
        .await
        .unwrap()
        .remove(0)
    {
        AdminResponse::AlertRules(rules) => rules,
        other => panic!("{other:?}"),
    };
    assert_eq!(rules.len(), 1);
}

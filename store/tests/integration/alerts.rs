//! Alert rules, channels, alerts and deliveries on a real redb file: names unique, a channel a
//! rule uses kept, numbers increasing, the firing index, and pruning that keeps firing alerts.

use tether_store::*;
use tether_wire::NodeId;
use tether_wire::alerts::{
    Alert, AlertRule, AlertState, Channel, ChannelKind, Condition, Delivery, Severity, Targets,
};

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("tether.redb")).unwrap()
}

fn rule(name: &str, channels: &[&str]) -> AlertRule {
    AlertRule {
        name: name.into(),
        condition: Condition::Offline,
        for_ms: 60_000,
        severity: Severity::Critical,
        targets: Targets::default(),
        channels: channels.iter().map(|c| c.to_string()).collect(),
        enabled: true,
        created_by: "a".into(),
        created_at_ms: 1,
    }
}

fn alert(node: NodeId, fired_at_ms: i64) -> Alert {
    Alert {
        id: 0,
        rule: "down".into(),
        severity: Severity::Critical,
        node_id: node,
        hostname: "h".into(),
        condition: "offline".into(),
        state: AlertState::Firing,
        value: Some(61.0),
        since_ms: fired_at_ms - 60_000,
        fired_at_ms,
        resolved_at_ms: None,
        resolution: None,
        acked_by: None,
        acked_at_ms: None,
        notified: true,
    }
}

#[tokio::test]
async fn rules_and_channels_keep_their_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert!(matches!(
        store.add_alert_rule(rule("down", &["ops"])).await.unwrap(),
        Err(AlertRefusal::UnknownChannel(c)) if c == "ops"
    ));
    let ops = Channel {
        name: "ops".into(),
        kind: ChannelKind::Webhook {
            url: "http://127.0.0.1/x".into(),
            secret: Some("s".into()),
        },
        created_by: "a".into(),
        created_at_ms: 1,
    };
    store.add_alert_channel(ops.clone()).await.unwrap().unwrap();
    assert!(matches!(
        store.add_alert_channel(ops).await.unwrap(),
        Err(AlertRefusal::Exists(_))
    ));
    store
        .add_alert_rule(rule("down", &["ops"]))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        store.add_alert_rule(rule("down", &[])).await.unwrap(),
        Err(AlertRefusal::Exists(_))
    ));
    assert!(matches!(
        store.delete_alert_channel("ops").await.unwrap(),
        Err(AlertRefusal::ChannelInUse { rule, .. }) if rule == "down"
    ));
    let disabled = store
        .set_alert_rule_enabled("down", false)
        .await
        .unwrap()
        .unwrap();
    assert!(!disabled.enabled);
    assert_eq!(store.alert_rule("down").unwrap(), Some(disabled));
    store.delete_alert_rule("down").await.unwrap().unwrap();
    store.delete_alert_channel("ops").await.unwrap().unwrap();
    assert!(store.alert_rules().unwrap().is_empty());
    assert!(store.alert_channels().unwrap().is_empty());
}

#[tokio::test]
async fn alerts_are_numbered_resolved_and_pruned_but_never_while_firing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let node = NodeId::random();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(store.open_alert(alert(node, 1_000 * i)).await.unwrap().id);
    }
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    assert_eq!(store.firing_count().unwrap(), 5);
    for id in &ids[..4] {
        let resolved = store
            .resolve_alert(*id, 10_000 + *id as i64, "back".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resolved.state, AlertState::Resolved);
    }
    // Resolving twice changes nothing.
    assert!(
        store
            .resolve_alert(1, 99, "again".into())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.firing_count().unwrap(), 1);
    assert_eq!(
        store
            .alerts(true, None, 10)
            .unwrap()
            .iter()
            .map(|a| a.id)
            .collect::<Vec<_>>(),
        [5]
    );
    assert_eq!(
        store
            .alerts(false, None, 2)
            .unwrap()
            .iter()
            .map(|a| a.id)
            .collect::<Vec<_>>(),
        [5, 4],
        "newest first"
    );
    store
        .record_delivery(Delivery {
            alert_id: 1,
            event: AlertState::Firing,
            channel: "ops".into(),
            at_ms: 5,
            attempt: 1,
            ok: false,
            error: Some("could not connect".into()),
        })
        .await
        .unwrap();
    assert_eq!(store.alert(1).unwrap().unwrap().deliveries.len(), 1);
    let acked = store.ack_alert(5, "ola".into(), 7).await.unwrap().unwrap();
    assert_eq!(acked.acked_by.as_deref(), Some("ola"));
    assert!(matches!(
        store.ack_alert(99, "ola".into(), 7).await.unwrap(),
        Err(AlertRefusal::NotFound(_))
    ));

    // By age: alerts resolved before 10,003 go (1 and 2), with their deliveries.
    assert_eq!(store.prune_alerts(10_003, 100).await.unwrap(), 2);
    assert!(store.alert(1).unwrap().is_none());
    // By count: at most 1 kept, but the firing one is never pruned.
    assert_eq!(store.prune_alerts(0, 1).await.unwrap(), 2);
    assert_eq!(
        store
            .alerts(false, None, 10)
            .unwrap()
            .iter()
            .map(|a| a.id)
            .collect::<Vec<_>>(),
        [5]
    );
}

//! Deploys in the store: counts kept with each node's change, the index of nodes in a deploy
//! that has not ended for them (a second deploy refused), and ends that are final whatever
//! report comes late.

use tether_store::{DeployRefusal, Store};
use tether_wire::NodeId;
use tether_wire::deploys::{
    DeployKind, DeploySpec, NodeUpdate, OfflinePolicy, Strategy, UpdateState,
};
use tether_wire::tasks::TaskTargets;

fn spec() -> DeploySpec {
    DeploySpec {
        version: "2.0".into(),
        targets: TaskTargets {
            all: true,
            ..Default::default()
        },
        strategy: Strategy::All,
        batch: None,
        pause_ms: 0,
        canary: None,
        canary_wait_ms: 0,
        max_failures: None,
        offline: OfflinePolicy::Wait,
        watchdog_ms: 60_000,
        rate_limit: None,
    }
}

fn update(node: NodeId, state: UpdateState) -> NodeUpdate {
    NodeUpdate {
        node,
        hostname: "n".into(),
        wave: 0,
        from_version: "1.0".into(),
        to_version: "2.0".into(),
        state,
        bytes: 0,
        size: 10,
        error: None,
        started_at_ms: None,
        finished_at_ms: None,
    }
}

#[tokio::test]
async fn counts_busy_nodes_and_final_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("tether.redb")).unwrap();
    let (a, b) = (NodeId::random(), NodeId::random());
    let view = store
        .create_deploy(
            spec(),
            DeployKind::Update,
            "alice".into(),
            1,
            1,
            vec![
                update(a, UpdateState::Pending),
                update(b, UpdateState::Pending),
            ],
        )
        .await
        .unwrap()
        .unwrap();
    let id = view.deploy.id;
    assert_eq!(view.counts.pending, 2);

    // Both nodes are busy: another deploy of either is refused.
    let refused = store
        .create_deploy(
            spec(),
            DeployKind::Update,
            "bob".into(),
            2,
            1,
            vec![update(b, UpdateState::Pending)],
        )
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(refused, DeployRefusal::Busy { deploy, .. } if deploy == id),
        "{refused}"
    );

    // A succeeds; a late "installing" report from its old connection changes nothing.
    let view = store
        .save_node_updates(id, vec![update(a, UpdateState::Success)])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((view.counts.success, view.counts.pending), (1, 1));
    let view = store
        .save_node_updates(id, vec![update(a, UpdateState::Installing)])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((view.counts.success, view.counts.active), (1, 0));
    let nodes = store.deploy_nodes(id).unwrap();
    assert_eq!(
        nodes.iter().find(|u| u.node == a).unwrap().state,
        UpdateState::Success
    );
    assert!(store.node_update(a).unwrap().is_none(), "A is free again");
    assert_eq!(store.node_update(b).unwrap().unwrap().0, id);

    // A reason may still be refined in the same state.
    store
        .save_node_updates(id, vec![update(b, UpdateState::Rollback)])
        .await
        .unwrap();
    let mut refined = update(b, UpdateState::Rollback);
    refined.error = Some("the watchdog's account".into());
    store.save_node_updates(id, vec![refined]).await.unwrap();
    let nodes = store.deploy_nodes(id).unwrap();
    let b_now = nodes.iter().find(|u| u.node == b).unwrap();
    assert_eq!(b_now.error.as_deref(), Some("the watchdog's account"));
    let view = store.deploy(id).unwrap().unwrap();
    assert_eq!(
        (
            view.counts.success,
            view.counts.rollback,
            view.counts.total()
        ),
        (1, 1, 2)
    );

    // Both free: a new deploy of both is taken.
    store
        .create_deploy(
            spec(),
            DeployKind::Update,
            "bob".into(),
            3,
            1,
            vec![
                update(a, UpdateState::Pending),
                update(b, UpdateState::Pending),
            ],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.deploys(10).unwrap().len(), 2);
    assert_eq!(store.open_deploys().unwrap().len(), 2);
}

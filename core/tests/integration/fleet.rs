//! The fleet for pages: a node list cut, searched and sorted by core (`NodePage`), the
//! dashboard's figures (`Overview`), and live figures on one stream (`Watch`) that ends when
//! the caller no longer counts.

use crate::support;

use support::*;
use tether_client::ClientError;
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminRequest, AdminResponse, NodeStatus, Role};
use tether_wire::fleet::{EventKind, NodePage, NodeQuery, NodeSort, Overview, WatchSpec};

async fn page(client: &tether_client::AdminClient, query: NodeQuery) -> NodePage {
    match client
        .request(&AdminRequest::NodePage(query))
        .await
        .unwrap()
        .remove(0)
    {
        AdminResponse::NodePage(page) => page,
        other => panic!("{other:?}"),
    }
}

fn hostnames(page: &NodePage) -> Vec<&str> {
    page.nodes.iter().map(|n| n.hostname.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_of_nodes_are_searched_sorted_and_cut_by_core() {
    let (_core, admin, nodes, _tmp) = start_fleet(5, |_| {}, |_| {}).await;
    let client = &admin.0;
    let (first, _) = &nodes[0];
    admin
        .request(AdminRequest::LabelNode {
            id: first.to_string(),
            set: vec![("env".into(), "prod".into())],
            remove: vec![],
        })
        .await
        .unwrap();
    admin
        .request(AdminRequest::SetMaintenance {
            id: nodes[4].0.to_string(),
            on: true,
        })
        .await
        .unwrap();

    let all = page(
        client,
        NodeQuery {
            limit: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all.total, 5);
    assert_eq!(hostnames(&all), ["host-00", "host-01"]);
    assert!(
        all.nodes
            .iter()
            .all(|n| n.static_facts.is_none() && n.path.is_none())
    );
    let next = page(
        client,
        NodeQuery {
            offset: 4,
            limit: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!((next.total, hostnames(&next)), (5, vec!["host-04"]));
    let backwards = page(
        client,
        NodeQuery {
            descending: true,
            limit: 5,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(hostnames(&backwards)[0], "host-04");
    // A page in the middle, either way (core selects the first offset + limit, then sorts them).
    for (descending, wanted) in [
        (false, ["host-01", "host-02"]),
        (true, ["host-03", "host-02"]),
    ] {
        let middle = page(
            client,
            NodeQuery {
                offset: 1,
                limit: 2,
                descending,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(hostnames(&middle), wanted, "descending: {descending}");
    }
    let by_status = page(
        client,
        NodeQuery {
            sort: NodeSort::Status,
            descending: true,
            limit: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(hostnames(&by_status), ["host-04"], "maintenance sorts last");

    // Search: hostname, label, id prefix, address; and filters.
    for (search, wanted) in [
        ("HOST-03", vec!["host-03"]),
        ("env=prod", vec!["host-00"]),
        (&first.to_string()[..8], vec!["host-00"]),
    ] {
        let found = page(
            client,
            NodeQuery {
                search: search.to_string(),
                limit: 10,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(hostnames(&found), wanted, "search {search:?}");
    }
    let by_address = page(
        client,
        NodeQuery {
            search: "127.0.0.1".into(),
            limit: 10,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_address.total, 5);
    let in_maintenance = page(
        client,
        NodeQuery {
            status: Some(NodeStatus::Maintenance),
            limit: 10,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(hostnames(&in_maintenance), ["host-04"]);
    let labelled = page(
        client,
        NodeQuery {
            labels: vec![("env".into(), "prod".into())],
            limit: 10,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(hostnames(&labelled), ["host-00"]);

    // Bad queries are refused in words.
    for (query, words) in [
        (
            NodeQuery {
                limit: 0,
                ..Default::default()
            },
            "page size",
        ),
        (
            NodeQuery {
                limit: 501,
                ..Default::default()
            },
            "page size",
        ),
        (
            NodeQuery {
                search: "x".repeat(300),
                limit: 10,
                ..Default::default()
            },
            "search text",
        ),
    ] {
        match client.request(&AdminRequest::NodePage(query)).await {
            Err(ClientError::Core { code, message }) => {
                assert_eq!(code, ErrorCode::INVALID_ARGUMENT);
                assert!(message.contains(words), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_counts_the_fleet_and_its_recent_events() {
    let (_core, admin, nodes, _tmp) = start_fleet(3, |_| {}, |_| {}).await;
    admin
        .request(AdminRequest::SetMaintenance {
            id: nodes[2].0.to_string(),
            on: true,
        })
        .await
        .unwrap();
    let overview = match admin
        .request(AdminRequest::Overview)
        .await
        .unwrap()
        .remove(0)
    {
        AdminResponse::Overview(overview) => overview,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (
            overview.nodes.total,
            overview.nodes.online,
            overview.nodes.maintenance
        ),
        (3, 2, 1)
    );
    assert_eq!(overview.pending_applications, 0);
    assert_eq!(overview.versions.len(), 1);
    assert_eq!(overview.versions[0].count, 3);
    let enrolled = overview
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Enrolled)
        .count();
    assert_eq!(enrolled, 3, "{:?}", overview.events);
    assert!(
        overview
            .events
            .iter()
            .all(|e| e.hostname.starts_with("host-")),
        "events name their nodes"
    );
    assert!(overview.events.windows(2).all(|w| w[0].at_ms >= w[1].at_ms));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_sends_changes_and_ends_when_its_user_is_disabled() {
    let (core, admin, nodes, _tmp) = start_fleet(2, |_| {}, |_| {}).await;
    let (_, viewer) = core.user(&admin.0, "vera", Role::Viewer).await;
    let id = nodes[0].0;
    let mut watch = viewer
        .stream(&AdminRequest::Watch(WatchSpec {
            overview: true,
            nodes: Some(NodeQuery {
                limit: 10,
                ..Default::default()
            }),
            node: Some(id.to_string()),
            interval_ms: 500,
        }))
        .await
        .unwrap();
    // At once: each of the three.
    let mut first: Vec<&str> = Vec::new();
    let mut overview: Option<Overview> = None;
    for _ in 0..3 {
        match watch.next().await.unwrap().unwrap() {
            AdminResponse::Overview(o) => {
                overview = Some(o);
                first.push("overview");
            }
            AdminResponse::NodePage(_) => first.push("nodes"),
            AdminResponse::Node(_) => first.push("node"),
            other => panic!("{other:?}"),
        }
    }
    first.sort_unstable();
    assert_eq!(first, ["node", "nodes", "overview"]);
    assert_eq!(overview.unwrap().nodes.total, 2);

    // A change comes by itself.
    admin
        .request(AdminRequest::SetMaintenance {
            id: id.to_string(),
            on: true,
        })
        .await
        .unwrap();
    let changed = tokio::time::timeout(PATIENCE, async {
        loop {
            if let AdminResponse::Overview(o) = watch.next().await.unwrap().unwrap()
                && o.nodes.maintenance == 1
            {
                return o;
            }
        }
    })
    .await
    .expect("the overview with the node in maintenance");
    assert_eq!(changed.nodes.online, 1);

    // The viewer is disabled: the watch ends with an error, not silence.
    admin
        .request(AdminRequest::UserEnable {
            name: "vera".into(),
            enabled: false,
        })
        .await
        .unwrap();
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match watch.next().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the watch ends");
    assert!(ended.is_err(), "{ended:?}");

    // A watch with a bad interval is refused at once.
    match admin
        .0
        .request(&AdminRequest::Watch(WatchSpec {
            overview: true,
            interval_ms: 10,
            ..Default::default()
        }))
        .await
    {
        Err(ClientError::Core { code, message }) => {
            assert_eq!(code, ErrorCode::INVALID_ARGUMENT);
            assert!(message.contains("interval"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

//! Node groups on a real core with real agents: the tree (add, move, cycles refused, delete
//! refused while it holds something, `--force` moving it to the parent), nodes in groups, and
//! `--group` selecting a group and everything below it for `exec` and `node list`, through the
//! API and the CLI.

use crate::support;

use support::*;
use tether_client::ClientError;
use tether_wire::ErrorCode;
use tether_wire::NodeId;
use tether_wire::admin::{AdminRequest, AdminResponse, ExecStatus, NodeView};
use tether_wire::groups::GroupView;

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (ErrorCode, String) {
    match result {
        Err(ClientError::Core { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn add(admin: &Admin, name: &str, parent: Option<&str>) -> Result<GroupView, ClientError> {
    match admin
        .request(AdminRequest::GroupAdd {
            name: name.into(),
            parent: parent.map(str::to_string),
            description: format!("the {name} servers"),
            sort_order: 0,
        })
        .await?
        .remove(0)
    {
        AdminResponse::Group(g) => Ok(g),
        other => panic!("{other:?}"),
    }
}

async fn list(admin: &Admin) -> Vec<GroupView> {
    match admin
        .request(AdminRequest::GroupList)
        .await
        .unwrap()
        .remove(0)
    {
        AdminResponse::Groups(g) => g,
        other => panic!("{other:?}"),
    }
}

async fn put(admin: &Admin, node: NodeId, group: Option<&str>) -> NodeView {
    match admin
        .request(AdminRequest::NodeGroup {
            node: node.to_string(),
            group: group.map(str::to_string),
        })
        .await
        .unwrap()
        .remove(0)
    {
        AdminResponse::Node(n) => n,
        other => panic!("{other:?}"),
    }
}

fn shape(groups: &[GroupView]) -> Vec<(String, u32, u64, u64)> {
    groups
        .iter()
        .map(|g| (g.path.clone(), g.depth, g.nodes, g.nodes_total))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tree_of_groups_selects_nodes_through_two_levels() {
    let (core, admin, nodes, _tmp) = start_fleet(5, |_| {}, |_| {}).await;
    let ids: Vec<NodeId> = nodes.iter().map(|(id, _)| *id).collect();

    // prod > eu > web, and a second top-level group.
    add(&admin, "prod", None).await.unwrap();
    add(&admin, "eu", Some("prod")).await.unwrap();
    let web = add(&admin, "web", Some("eu")).await.unwrap();
    assert_eq!((web.path.as_str(), web.depth), ("prod/eu/web", 3));
    add(&admin, "lab", None).await.unwrap();

    // Bad input: each a clear error, nothing changed.
    let before = list(&admin).await;
    let (c, m) = code(add(&admin, "prod", None).await);
    assert_eq!(c, ErrorCode::CONFLICT);
    assert!(m.contains("\"prod\" exists already"), "{m}");
    let (c, m) = code(add(&admin, "x", Some("nope")).await);
    assert_eq!(c, ErrorCode::NOT_FOUND);
    assert!(m.contains("no group \"nope\""), "{m}");
    let (c, m) = code(add(&admin, "no/slash", None).await);
    assert_eq!(c, ErrorCode::INVALID_ARGUMENT);
    assert!(m.contains("group name"), "{m}");
    for parent in ["web", "prod"] {
        let (c, m) = code(
            admin
                .request(AdminRequest::GroupMove {
                    name: "prod".into(),
                    parent: Some(parent.into()),
                })
                .await,
        );
        assert_eq!(c, ErrorCode::INVALID_ARGUMENT, "{m}");
        assert!(m.contains("cannot go below"), "{m}");
    }
    assert_eq!(list(&admin).await, before, "nothing changed");

    // Nodes: two in web, one in eu, one in lab, one in none.
    put(&admin, ids[0], Some("web")).await;
    put(&admin, ids[1], Some("web")).await;
    let in_eu = put(&admin, ids[2], Some("eu")).await;
    assert_eq!(in_eu.group.as_deref(), Some("prod/eu"));
    put(&admin, ids[3], Some("lab")).await;
    assert_eq!(
        shape(&list(&admin).await),
        [
            ("lab".into(), 1, 1, 1),
            ("prod".into(), 1, 0, 3),
            ("prod/eu".into(), 2, 1, 3),
            ("prod/eu/web".into(), 3, 2, 2),
        ],
        "depth first, siblings by name, counts direct and below"
    );

    // exec --group prod: the three nodes two levels down and one down, nobody else.
    let mut by_group = spec(&[], &["hostname"]);
    by_group.groups = vec!["prod".into()];
    let run = admin.exec(by_group).await.unwrap();
    let mut ran: Vec<NodeId> = run.results.keys().copied().collect();
    ran.sort();
    let mut wanted = ids[..3].to_vec();
    wanted.sort();
    assert_eq!(ran, wanted);
    assert!(run.results.values().all(|r| r.status == ExecStatus::Ok));
    let mut unknown = spec(&[], &["true"]);
    unknown.groups = vec!["nope".into()];
    let (c, m) = code(admin.exec(unknown).await);
    assert_eq!(c, ErrorCode::NOT_FOUND);
    assert!(m.contains("no group \"nope\""), "{m}");

    // A page of the node list (what the web UI asks) filters by group the same way.
    let page = match admin
        .request(AdminRequest::NodePage(tether_wire::fleet::NodeQuery {
            limit: 10,
            group: Some("eu".into()),
            ..Default::default()
        }))
        .await
        .unwrap()
        .remove(0)
    {
        AdminResponse::NodePage(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(page.total, 3);
    let (c, m) = code(
        admin
            .request(AdminRequest::NodePage(tether_wire::fleet::NodeQuery {
                limit: 10,
                group: Some("no/such".into()),
                ..Default::default()
            }))
            .await,
    );
    assert_eq!(c, ErrorCode::INVALID_ARGUMENT);
    assert!(m.contains("group name"), "{m}");
    assert!(
        page.nodes
            .iter()
            .all(|n| n.group.as_deref().is_some_and(|g| g.starts_with("prod/eu")))
    );

    // node list --group eu, and the node's own record says where it is.
    let identity = core.data().join("admin.identity");
    let addr = core.addr.to_string();
    let listed = tether_json(
        &identity,
        &addr,
        &["node", "list", "--group", "eu", "--json"],
    );
    let mut hosts: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["hostname"].as_str().unwrap())
        .collect();
    hosts.sort_unstable();
    assert_eq!(hosts, ["host-00", "host-01", "host-02"]);
    let shown = tether_json(&identity, &addr, &["node", "show", "host-00", "--json"]);
    assert_eq!(shown["group"], "prod/eu/web");

    // The CLI's tree.
    let tree = tether(&identity, &addr, &["group", "list"]);
    let text = String::from_utf8_lossy(&tree.stdout);
    assert!(tree.status.success(), "{tree:?}");
    let web_line = text.lines().find(|l| l.contains("web")).unwrap();
    assert!(web_line.starts_with("  └ web"), "{text}");

    // Deleting eu: refused while it holds web and a node; --force moves both to prod.
    let (c, m) = code(
        admin
            .request(AdminRequest::GroupDelete {
                name: "eu".into(),
                force: false,
            })
            .await,
    );
    assert_eq!(c, ErrorCode::CONFLICT);
    assert!(
        m.contains("holds 1 node(s) and 1 group(s)") && m.contains("--force"),
        "{m}"
    );
    let deleted = tether(&identity, &addr, &["group", "delete", "eu", "--force"]);
    assert!(deleted.status.success(), "{deleted:?}");
    assert_eq!(
        shape(&list(&admin).await),
        [
            ("lab".into(), 1, 1, 1),
            ("prod".into(), 1, 1, 3),
            ("prod/web".into(), 2, 2, 2),
        ]
    );
    assert_eq!(
        admin.node(ids[2]).await.unwrap().group.as_deref(),
        Some("prod")
    );

    // Out of any group; a top-level group deleted with --force leaves its nodes in none.
    assert_eq!(put(&admin, ids[2], None).await.group, None);
    let moved = tether(&identity, &addr, &["group", "move", "web", "--top"]);
    assert!(moved.status.success(), "{moved:?}");
    admin
        .request(AdminRequest::GroupDelete {
            name: "lab".into(),
            force: true,
        })
        .await
        .unwrap();
    assert_eq!(admin.node(ids[3]).await.unwrap().group, None);
    assert_eq!(
        shape(&list(&admin).await),
        [("prod".into(), 1, 0, 0), ("web".into(), 1, 2, 2)]
    );

    // A deleted node leaves its group: prod, holding only it, is then empty and goes without
    // --force.
    put(&admin, ids[4], Some("prod")).await;
    admin
        .request(AdminRequest::DeleteNode {
            id: ids[4].to_string(),
        })
        .await
        .unwrap();
    admin
        .request(AdminRequest::GroupDelete {
            name: "prod".into(),
            force: false,
        })
        .await
        .unwrap();

    // Every change is in the audit log.
    let audit = format!(
        "{:?}",
        admin
            .request(AdminRequest::Audit(tether_wire::users::AuditQuery {
                limit: 100,
                ..Default::default()
            }))
            .await
            .unwrap()
    );
    for wanted in ["GroupAdd", "GroupMove", "GroupDelete", "NodeGroup"] {
        assert!(audit.contains(wanted), "{wanted} in the audit log");
    }
    for (id, node) in nodes {
        let stopped = node.stop().await;
        // The deleted one was told so and stopped by itself.
        if id != ids[4] {
            stopped.unwrap();
        }
    }
}

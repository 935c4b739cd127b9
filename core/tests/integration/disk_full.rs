//! A full disk under the data directory: writes are refused with a clear error, core and the
//! fleet go on, nothing already stored is lost, and writing resumes once there is room. On a
//! real (small) filesystem, where the test may mount one.

use crate::support;

use std::time::Duration;

use support::*;
use tether_client::ClientError;
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminRequest, AdminResponse, NodeStatus};

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_writes_clearly_and_they_resume_when_there_is_room() {
    let mut disk = None;
    let (core, admin, nodes, _tmp) = start_fleet(
        1,
        |c| {
            c.min_free_space = 2 * 1024 * 1024;
            disk = SmallDisk::mount(&c.data_dir, "24m");
        },
        |_| {},
    )
    .await;
    let Some(disk) = disk else { return };
    let id = nodes[0].0;
    let label = |value: &str| AdminRequest::LabelNode {
        id: id.to_string(),
        set: vec![("stage".into(), value.into())],
        remove: vec![],
    };
    admin.request(label("before")).await.unwrap();

    disk.fill();
    match admin.request(label("while-full")).await {
        Err(ClientError::Core { code, message }) => {
            assert_eq!(code, ErrorCode::INTERNAL);
            assert!(
                message.contains("min_free_space") && message.contains("nothing was written"),
                "{message}"
            );
        }
        other => panic!("a write on a full disk must be refused, got {other:?}"),
    }
    // Commands need a record first: refused too, clearly, and nothing runs.
    match admin.exec(spec(&["host-00"], &["true"])).await {
        Err(ClientError::Core { message, .. }) => assert!(message.contains("min_free_space")),
        other => panic!("{other:?}"),
    }
    // Reads cannot be recorded in the audit log either: refused, saying why; the status
    // still answers, and core and the fleet go on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    match admin
        .request(AdminRequest::ShowNode { id: id.to_string() })
        .await
    {
        Err(ClientError::Core { message, .. }) => {
            assert!(message.contains("audit log"), "{message}")
        }
        other => panic!("an unrecorded read must be refused, got {other:?}"),
    }
    let status = admin.request(AdminRequest::Status).await.unwrap();
    assert!(
        matches!(&status[0], AdminResponse::Status(s) if s.nodes_online == 1),
        "{status:?}"
    );

    std::fs::remove_file(disk.0.join("filler")).unwrap();
    let node = admin.node(id).await.unwrap();
    assert_eq!(node.status, NodeStatus::Online);
    assert_eq!(node.labels.get("stage").map(String::as_str), Some("before"));
    admin.request(label("after")).await.unwrap();
    let node = admin.node(id).await.unwrap();
    assert_eq!(node.labels.get("stage").map(String::as_str), Some("after"));
    let run = admin
        .exec(spec(&["host-00"], &["echo", "room again"]))
        .await
        .unwrap();
    assert_eq!(run.stdout_of(id), "room again\n");
    drop(core);
}

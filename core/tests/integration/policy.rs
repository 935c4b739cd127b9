//! A node's own policy (`[policy]` in node.toml) with real agents: core asks, the node refuses
//! what its policy does not allow, and the refusal comes back as its own status, in history
//! and in the audit log; `node show` says what policy each node runs.

use crate::support;

use support::*;
use tether_client::ClientError;
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminRequest, AdminResponse, ExecStatus, ExecutionView};
use tether_wire::policy::{ExecPolicy, NodePolicy};
use tether_wire::tty::{TtyAuthorize, TtyStatus, WindowSize};

/// The allowed program: an absolute path that exists on any Linux.
const ECHO: &str = "/bin/echo";

#[tokio::test(flavor = "multi_thread")]
async fn a_node_refuses_what_its_policy_does_not_allow() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let tmp = tempfile::tempdir().unwrap();
    let strict = LibNode::start(
        &tmp.path().join("strict"),
        core.addr,
        Some(core.token()),
        |c| {
            c.hostname = Some("strict".into());
            c.shell = Some("/bin/sh".into());
            c.policy = NodePolicy {
                exec: ExecPolicy::AllowList,
                allow: vec![ECHO.into()],
                tty: false,
            };
        },
    );
    let closed = LibNode::start(
        &tmp.path().join("closed"),
        core.addr,
        Some(core.token()),
        |c| {
            c.hostname = Some("closed".into());
            c.policy = NodePolicy {
                exec: ExecPolicy::Off,
                ..NodePolicy::open()
            };
        },
    );
    let open = LibNode::start(
        &tmp.path().join("open"),
        core.addr,
        Some(core.token()),
        |c| {
            c.hostname = Some("open".into());
        },
    );
    let strict_id = node_id_in(&tmp.path().join("strict")).await;
    let closed_id = node_id_in(&tmp.path().join("closed")).await;
    let open_id = node_id_in(&tmp.path().join("open")).await;
    for id in [strict_id, closed_id, open_id] {
        wait_status(&admin, id, tether_wire::admin::NodeStatus::Online).await;
    }

    // Each node says what it runs.
    let shown = eventually("the strict node's policy", || async {
        admin.node(strict_id).await.and_then(|n| n.policy)
    })
    .await;
    assert_eq!(shown.summary(), "exec allow-list (/bin/echo), tty off");
    let identity = core.data().join("admin.identity");
    let addr = core.addr.to_string();
    let text = tether(&identity, &addr, &["node", "show", "strict"]);
    assert!(
        String::from_utf8_lossy(&text.stdout)
            .contains("policy:         exec allow-list (/bin/echo), tty off"),
        "{text:?}"
    );
    eventually("the open node's policy", || async {
        admin
            .node(open_id)
            .await
            .and_then(|n| n.policy)
            .filter(|p| *p == NodePolicy::open())
    })
    .await;
    let json = tether_json(&identity, &addr, &["node", "show", "closed", "--json"]);
    assert_eq!(json["policy"]["exec"], "off");

    // The allowed program runs; anything else is refused by the node, with the reason.
    let run = admin
        .exec(spec(&["strict"], &[ECHO, "allowed"]))
        .await
        .unwrap();
    assert_eq!(run.single().status, ExecStatus::Ok);
    assert_eq!(run.stdout_of(strict_id), "allowed\n");
    for command in [&["echo", "bare name"][..], &["/bin/sh", "-c", "id"]] {
        let run = admin.exec(spec(&["strict"], command)).await.unwrap();
        let result = run.single();
        assert_eq!(
            result.status,
            ExecStatus::Refused,
            "{command:?}: {result:?}"
        );
        let why = result.error.as_deref().unwrap();
        assert!(why.contains("allows only /bin/echo"), "{why}");
        assert!(run.stdout_of(strict_id).is_empty());
    }

    // An allowed program with environment variables (LD_PRELOAD and the like) is refused too.
    let mut with_env = spec(&["strict"], &[ECHO, "x"]);
    with_env.env = vec![("LD_PRELOAD".into(), "/tmp/evil.so".into())];
    let run = admin.exec(with_env).await.unwrap();
    assert_eq!(run.single().status, ExecStatus::Refused);
    assert!(
        run.single()
            .error
            .as_deref()
            .unwrap()
            .contains("no environment variables")
    );

    // Across the fleet: refused where the policy says so, run where it does not.
    let run = admin
        .exec(spec(&["strict", "closed", "open"], &[ECHO, "hi"]))
        .await
        .unwrap();
    let status = |id| run.results[&id].status;
    assert_eq!(
        (status(strict_id), status(closed_id), status(open_id)),
        (ExecStatus::Ok, ExecStatus::Refused, ExecStatus::Ok)
    );
    assert!(
        run.results[&closed_id]
            .error
            .as_deref()
            .unwrap()
            .contains("exec = \"off\"")
    );
    let finished: ExecutionView = run.finished.clone().unwrap();
    assert_eq!((finished.counts.ok, finished.counts.refused), (2, 1));

    // History keeps the refusal, and the CLI exits 126 for it (not allowed to execute).
    let shown = match admin
        .request(AdminRequest::ShowExec {
            id: run.exec_id.unwrap().to_string(),
        })
        .await
        .unwrap()
        .pop()
    {
        Some(AdminResponse::Execution(detail)) => detail,
        other => panic!("{other:?}"),
    };
    assert_eq!(shown.execution.counts.refused, 1);
    let kept = shown.nodes.iter().find(|n| n.node_id == closed_id).unwrap();
    assert_eq!(kept.status, ExecStatus::Refused);
    let cli = tether(&identity, &addr, &["exec", "closed", "--", ECHO, "x"]);
    assert_eq!(cli.status.code(), Some(126), "{cli:?}");
    assert!(
        String::from_utf8_lossy(&cli.stderr).contains("refused on closed"),
        "{cli:?}"
    );

    // Terminals: refused by the strict node, recorded as refused.
    let client = &admin.0;
    let grant = client
        .authorize_tty(TtyAuthorize {
            node: "strict".into(),
            command: None,
            size: WindowSize { cols: 80, rows: 24 },
            term: None,
            record: None,
        })
        .await
        .unwrap();
    let refused = match client.open_tty(&grant.token).await {
        Ok(mut session) => session.output.next().await.err(),
        Err(e) => Some(e),
    };
    match refused {
        Some(ClientError::Core { code, message }) => {
            assert_eq!(code, ErrorCode::POLICY_REFUSED);
            assert!(message.contains("tty = \"off\""), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let session = eventually("the refused session's record", || async {
        let listed = client
            .request(&AdminRequest::ListTty {
                active: false,
                node: None,
                limit: 10,
            })
            .await
            .unwrap();
        listed.into_iter().find_map(|r| match r {
            AdminResponse::TtySessions(s) => s
                .into_iter()
                .find(|s| s.id == grant.session_id && !s.status.is_live()),
            _ => None,
        })
    })
    .await;
    assert_eq!(session.status, TtyStatus::Refused);

    // The audit log has each refusal, denied, with the node's reason.
    let audit = tether_json(
        &identity,
        &addr,
        &["audit", "--failed", "--limit", "50", "--json"],
    );
    let refusals: Vec<&serde_json::Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["error"]
                .as_str()
                .is_some_and(|e| e.contains("policy_refused"))
        })
        .collect();
    assert!(
        refusals.iter().any(|r| r["request"] == "OpenTty"),
        "{refusals:?}"
    );
    assert!(
        refusals.iter().filter(|r| r["request"] == "Exec").count() >= 5,
        "{refusals:?}"
    );

    for node in [strict, closed, open] {
        node.stop().await.unwrap();
    }
}

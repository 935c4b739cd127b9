//! Users, roles, certificates, login sessions and the audit log, on a real core on loopback:
//! the whole role matrix, revocation and disable with open connections and terminals, session
//! expiry, throttling, bad input, and a tampered audit chain.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use tether_client::{AdminClient, ClientError, TtyEvent};
use tether_core::clock::ManualClock;
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminRequest, AdminResponse, ExecSpec, Role};
use tether_wire::bytes::ByteBuf;
use tether_wire::tty::{TtyAuthorize, WindowSize};
use tether_wire::users::{
    AuditEntry, AuditQuery, AuditResult, AuditView, ClientInfo, NewUser, Secret,
};

const PASSWORD: &str = "correct horse battery staple";

fn code_of<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (ErrorCode, String) {
    match result {
        Err(ClientError::Core { code, message }) => (code, message),
        other => panic!("expected an error from core, got {other:?}"),
    }
}

async fn audit(admin: &AdminClient, query: AuditQuery) -> Vec<AuditView> {
    let mut out = Vec::new();
    for response in admin
        .request(&AdminRequest::Audit(AuditQuery {
            limit: if query.limit == 0 { 1000 } else { query.limit },
            ..query
        }))
        .await
        .expect("audit")
    {
        if let AdminResponse::AuditRecords(chunk) = response {
            out.extend(chunk);
        }
    }
    out
}

/// The newest audit record.
async fn last_record(admin: &AdminClient) -> AuditEntry {
    // The request reading the log is itself recorded after it answers: skip our own reads.
    audit(admin, AuditQuery::default())
        .await
        .into_iter()
        .find(|r| r.entry.action != "audit.view")
        .expect("a record")
        .entry
}

fn ask(node: &str) -> TtyAuthorize {
    TtyAuthorize {
        node: node.into(),
        command: None,
        size: WindowSize { cols: 80, rows: 24 },
        term: Some("xterm".into()),
        record: Some(false),
    }
}

/// The role table as `docs/security.md` shows it (a unit test ties that table to the code):
/// action → cells for admin, operator, viewer, bridge (`✓`, `✓*`, `✗`).
fn doc_table() -> Vec<(String, [String; 4])> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/security.md"))
        .unwrap();
    let from = doc.find("<!-- role table").unwrap();
    let to = doc.find("<!-- end of role table -->").unwrap();
    doc[from..to]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|line| {
            let cells: Vec<String> = line.split('|').map(|c| c.trim().to_string()).collect();
            let action = cells[1].trim_matches('`').to_string();
            (
                action,
                [
                    cells[3].clone(),
                    cells[4].clone(),
                    cells[5].clone(),
                    cells[6].clone(),
                ],
            )
        })
        .collect()
}

/// One request of every kind, with the action the table files it under.
fn every_request(node: &str) -> Vec<(&'static str, AdminRequest)> {
    let id = "0000ffff".to_string();
    vec![
        ("self", AdminRequest::Ping),
        ("status", AdminRequest::Status),
        (
            "enroll.view",
            AdminRequest::ListApplications {
                status: None,
                limit: None,
            },
        ),
        (
            "enroll.decide",
            AdminRequest::ApproveApplication { id: id.clone() },
        ),
        (
            "enroll.decide",
            AdminRequest::RejectApplication {
                id: id.clone(),
                reason: "no".into(),
            },
        ),
        (
            "nodes.view",
            AdminRequest::ListNodes {
                status: None,
                labels: vec![],
                group: None,
                include_deleted: false,
            },
        ),
        ("nodes.view", AdminRequest::ShowNode { id: node.into() }),
        (
            "nodes.view",
            AdminRequest::NodePage(tether_wire::fleet::NodeQuery {
                limit: 10,
                ..Default::default()
            }),
        ),
        ("nodes.view", AdminRequest::Overview),
        (
            // A node that does not exist: an allowed watch ends at once with not_found.
            "nodes.view",
            AdminRequest::Watch(tether_wire::fleet::WatchSpec {
                overview: true,
                nodes: None,
                node: Some(id.clone()),
                interval_ms: 1000,
            }),
        ),
        ("tty.view", AdminRequest::ShowTty { id: id.clone() }),
        (
            "nodes.edit",
            AdminRequest::LabelNode {
                id: node.into(),
                set: vec![("env".into(), "test".into())],
                remove: vec![],
            },
        ),
        (
            "nodes.edit",
            AdminRequest::SetMaintenance {
                id: id.clone(),
                on: true,
            },
        ),
        ("nodes.delete", AdminRequest::DeleteNode { id: id.clone() }),
        (
            "nodes.access",
            AdminRequest::SetAllowedUsers {
                id: id.clone(),
                add: vec!["x".into()],
                remove: vec![],
            },
        ),
        (
            "exec.run",
            AdminRequest::Exec(ExecSpec {
                targets: vec!["no-such-host".into()],
                labels: vec![],
                groups: vec![],
                all: false,
                command: vec!["true".into()],
                env: vec![],
                cwd: None,
                timeout_ms: None,
                concurrency: 1,
            }),
        ),
        ("exec.run", AdminRequest::CancelExec),
        (
            "exec.view",
            AdminRequest::ExecHistory {
                node: None,
                limit: 5,
            },
        ),
        ("exec.view", AdminRequest::ShowExec { id: id.clone() }),
        ("tty.open", AdminRequest::AuthorizeTty(ask("no-such-host"))),
        (
            "tty.open",
            AdminRequest::OpenTty {
                token: "not-a-token".into(),
            },
        ),
        (
            "tty.view",
            AdminRequest::ListTty {
                active: false,
                node: None,
                limit: 5,
            },
        ),
        ("tty.kill", AdminRequest::KillTty { id: id.clone() }),
        (
            "recordings.view",
            AdminRequest::TtyRecording { id: id.clone() },
        ),
        ("backup", AdminRequest::Backup { recordings: false }),
        (
            "users.manage",
            AdminRequest::UserAdd(NewUser {
                name: "matrix-made".into(),
                role: Role::Viewer,
                email: None,
                password: None,
            }),
        ),
        ("users.manage", AdminRequest::UserList),
        (
            "users.manage",
            AdminRequest::UserShow {
                name: "nobody".into(),
            },
        ),
        (
            "users.manage",
            AdminRequest::UserRole {
                name: "nobody".into(),
                role: Role::Viewer,
            },
        ),
        (
            "users.manage",
            AdminRequest::UserEnable {
                name: "nobody".into(),
                enabled: true,
            },
        ),
        (
            "users.manage",
            AdminRequest::UserDelete {
                name: "nobody".into(),
            },
        ),
        (
            "users.manage",
            AdminRequest::UserCert {
                name: "nobody".into(),
                public_key: ByteBuf(vec![1, 2, 3]),
                lifetime_secs: 60,
            },
        ),
        (
            "users.manage",
            AdminRequest::UserCerts {
                name: "nobody".into(),
            },
        ),
        (
            "users.manage",
            AdminRequest::RevokeCert {
                serial: "abcdef".into(),
            },
        ),
        (
            "users.manage",
            AdminRequest::UserSessions {
                name: "nobody".into(),
            },
        ),
        (
            "users.manage",
            AdminRequest::UserLogout {
                name: "nobody".into(),
                session: None,
            },
        ),
        (
            "self",
            AdminRequest::UserPasswd {
                name: "nobody".into(),
                password: Secret::new(PASSWORD),
                current: None,
            },
        ),
        (
            "audit.view",
            AdminRequest::Audit(AuditQuery {
                limit: 1,
                ..Default::default()
            }),
        ),
        ("audit.view", AdminRequest::AuditVerify),
        ("alerts.view", AdminRequest::AlertRuleList),
        (
            "alerts.view",
            AdminRequest::AlertRuleShow {
                name: "none".into(),
            },
        ),
        (
            "alerts.view",
            AdminRequest::AlertList(tether_wire::alerts::AlertQuery::default()),
        ),
        ("alerts.view", AdminRequest::AlertShow { id: 999 }),
        ("alerts.view", AdminRequest::AlertChannelList),
        ("alerts.ack", AdminRequest::AlertAck { id: 999 }),
        (
            // An invalid rule: where allowed, refused for what it says, nothing added.
            "alerts.manage",
            AdminRequest::AlertRuleAdd {
                rule: tether_wire::alerts::AlertRule {
                    name: String::new(),
                    condition: tether_wire::alerts::Condition::Offline,
                    for_ms: 0,
                    severity: tether_wire::alerts::Severity::Info,
                    targets: Default::default(),
                    channels: vec![],
                    enabled: true,
                    created_by: String::new(),
                    created_at_ms: 0,
                },
                nodes: vec![],
            },
        ),
        (
            "alerts.manage",
            AdminRequest::AlertRuleEnable {
                name: "none".into(),
                enabled: false,
            },
        ),
        (
            "alerts.manage",
            AdminRequest::AlertRuleDelete {
                name: "none".into(),
            },
        ),
        (
            "alerts.manage",
            AdminRequest::AlertChannelAdd(tether_wire::alerts::Channel {
                name: String::new(),
                kind: tether_wire::alerts::ChannelKind::Webhook {
                    url: "x".into(),
                    secret: None,
                },
                created_by: String::new(),
                created_at_ms: 0,
            }),
        ),
        (
            "alerts.manage",
            AdminRequest::AlertChannelDelete {
                name: "none".into(),
            },
        ),
        (
            "alerts.manage",
            AdminRequest::AlertChannelTest {
                name: "none".into(),
            },
        ),
        ("nodes.view", AdminRequest::GroupList),
        (
            "nodes.view",
            AdminRequest::GroupShow {
                name: "none".into(),
            },
        ),
        (
            "groups.manage",
            AdminRequest::GroupAdd {
                name: "bad name".into(),
                parent: None,
                description: String::new(),
                sort_order: 0,
            },
        ),
        (
            "groups.manage",
            AdminRequest::GroupMove {
                name: "none".into(),
                parent: None,
            },
        ),
        (
            "groups.manage",
            AdminRequest::GroupDelete {
                name: "none".into(),
                force: false,
            },
        ),
        (
            "nodes.edit",
            AdminRequest::NodeGroup {
                node: "no-such-node".into(),
                group: None,
            },
        ),
        (
            "sessions.login",
            AdminRequest::Login {
                user: "nobody".into(),
                password: Secret::new("wrong password!!"),
                client: ClientInfo::default(),
            },
        ),
        (
            "sessions.login",
            AdminRequest::Logout {
                token: Secret::new("nothing"),
            },
        ),
        (
            "sessions.forward",
            AdminRequest::as_user(
                Secret::new("nothing"),
                ClientInfo::default(),
                &AdminRequest::Ping,
            ),
        ),
    ]
}

/// Whether core's answer is the role table's refusal (not a handler's).
fn refused_by_table(result: &Result<Vec<AdminResponse>, ClientError>) -> bool {
    matches!(result, Err(ClientError::Core { code, message })
        if *code == ErrorCode::PERMISSION_DENIED
            && (message.contains(" needs the ") || message.contains("only admins may set")))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_kind_for_every_role_is_allowed_or_refused_as_the_table_says() {
    let (core, admin, _nodes, _tmp) = start_fleet(1, |_| {}, |_| {}).await;
    let table = doc_table();
    let mut clients = Vec::new();
    for (name, role) in [
        ("ann", Role::Admin),
        ("otto", Role::Operator),
        ("vera", Role::Viewer),
        ("web", Role::Bridge),
    ] {
        clients.push((role, core.user(&admin.0, name, role).await.1));
    }
    // Every action of the table is exercised, and every request kind has a row.
    let requests = every_request("host-00");
    for (action, _) in &table {
        let tried = requests.iter().any(|(a, _)| a == action);
        let future = action.starts_with("versions.") || action.starts_with("tasks.");
        assert!(tried || future, "no request exercises {action}");
    }
    for (column, (role, client)) in clients.iter().enumerate() {
        for (action, request) in every_request("host-00") {
            let row = table
                .iter()
                .find(|(a, _)| a == action)
                .unwrap_or_else(|| panic!("{action} is not in docs/security.md"));
            let cell = row.1[column].as_str();
            let result = client.request(&request).await;
            let refused = refused_by_table(&result);
            let own_password = matches!(&request, AdminRequest::UserPasswd { .. });
            match cell {
                "✓" => assert!(!refused, "{role} may {action} ({request:?}): {result:?}"),
                "✗" => assert!(refused, "{role} may not {action} ({request:?}): {result:?}"),
                // Narrowed: the table lets it through to the handler, except another's password.
                "✓*" if own_password => {
                    assert!(refused || *role == Role::Bridge, "{role}: {result:?}")
                }
                "✓*" => {}
                other => panic!("unknown cell {other:?}"),
            }
            if *role == Role::Bridge && action == "self" && !own_password {
                assert!(!refused, "the bridge may ping");
            }
        }
    }
    // Each was recorded, allowed or refused, under its user and action.
    let records = audit(
        &admin.0,
        AuditQuery {
            limit: 10_000,
            ..Default::default()
        },
    )
    .await;
    for name in ["ann", "otto", "vera", "web"] {
        let mine = records.iter().filter(|r| r.entry.user == name).count();
        // The bridge's login attempt is recorded under the name it tried.
        let expected = every_request("x").len() - usize::from(name == "web");
        assert!(mine >= expected, "{name} has {mine} audit records");
    }
    assert!(records.iter().any(|r| r.entry.user == "nobody"
        && r.entry.action == "sessions.login"
        && r.entry.details.contains(&("bridge".into(), "web".into()))));
    let denied = records
        .iter()
        .find(|r| r.entry.user == "vera" && r.entry.action == "nodes.delete")
        .expect("vera's refused delete is recorded");
    assert_eq!(denied.entry.result, AuditResult::Denied);
    assert_eq!(denied.entry.role, Some(Role::Viewer));
    assert!(
        denied
            .entry
            .error
            .as_deref()
            .unwrap()
            .contains("needs the admin role")
    );
    // Secrets never reach the log.
    for record in &records {
        let text = format!("{:?}", record.entry);
        assert!(
            !text.contains(PASSWORD) && !text.contains("wrong password!!"),
            "{text}"
        );
    }
    let verified = match &admin.0.request(&AdminRequest::AuditVerify).await.unwrap()[0] {
        AdminResponse::AuditVerified(report) => report.clone(),
        other => panic!("{other:?}"),
    };
    assert!(verified.broken.is_none(), "{verified:?}");
    assert!(verified.records as usize >= records.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disable_a_revocation_and_a_role_change_apply_to_open_connections_and_terminals() {
    let (core, admin, _nodes, _tmp) =
        start_fleet(1, |_| {}, |c| c.shell = Some("/bin/sh".into())).await;
    let (_, otto) = core.user(&admin.0, "otto", Role::Operator).await;
    admin
        .0
        .request(&AdminRequest::SetAllowedUsers {
            id: "host-00".into(),
            add: vec!["otto".into()],
            remove: vec![],
        })
        .await
        .unwrap();

    // A role change applies to the next request on the open connection.
    let label = AdminRequest::LabelNode {
        id: "host-00".into(),
        set: vec![("k".into(), "v".into())],
        remove: vec![],
    };
    otto.request(&label).await.expect("an operator may label");
    admin
        .0
        .request(&AdminRequest::UserRole {
            name: "otto".into(),
            role: Role::Viewer,
        })
        .await
        .unwrap();
    let (code, message) = code_of(otto.request(&label).await);
    assert_eq!(code, ErrorCode::PERMISSION_DENIED, "{message}");
    admin
        .0
        .request(&AdminRequest::UserRole {
            name: "otto".into(),
            role: Role::Operator,
        })
        .await
        .unwrap();

    // A disable ends the live terminal and closes the connection.
    let grant = otto
        .authorize_tty(ask("host-00"))
        .await
        .expect("authorized");
    let mut session = otto.open_tty(&grant.token).await.expect("opened");
    session.input.write(b"echo ready\n").await.unwrap();
    admin
        .0
        .request(&AdminRequest::UserEnable {
            name: "otto".into(),
            enabled: false,
        })
        .await
        .unwrap();
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match session.output.next().await {
                Ok(Some(TtyEvent::Output(_))) => continue,
                other => break other,
            }
        }
    })
    .await
    .expect("the terminal ends");
    assert!(
        !matches!(ended, Ok(Some(TtyEvent::Exited(_)))),
        "ended by core, not by the shell: {ended:?}"
    );
    let record = eventually("the session record says why", || async {
        let sessions = admin
            .0
            .request(&AdminRequest::ListTty {
                active: false,
                node: None,
                limit: 1,
            })
            .await
            .ok()?;
        let AdminResponse::TtySessions(list) = &sessions[0] else {
            return None;
        };
        let s = list.first()?.clone();
        (!s.status.is_live()).then_some(s)
    })
    .await;
    assert!(
        record
            .error
            .as_deref()
            .unwrap_or("")
            .contains("otto disabled"),
        "{record:?}"
    );
    let after = otto.request(&AdminRequest::Ping).await;
    assert!(after.is_err(), "the disabled user's connection is closed");
    let again = AdminClient::connect(&core.identity_of("otto"), Some(&core.addr.to_string())).await;
    let refused = match again {
        Ok(client) => client.request(&AdminRequest::Ping).await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(
        format!("{refused:?}").contains("disabled"),
        "a disabled user cannot connect: {refused:?}"
    );

    // A revocation closes that certificate's connection; the user's other certificate works.
    let (first, dev) = core.user(&admin.0, "dev", Role::Admin).await;
    let second = core.another_cert(&admin.0, "dev").await;
    let dev2 = AdminClient::connect(&second, Some(&core.addr.to_string()))
        .await
        .unwrap();
    let grant = dev.authorize_tty(ask("host-00")).await.expect("authorized");
    let mut session = dev.open_tty(&grant.token).await.expect("opened");
    let serial = first_serial(&first);
    let revoked = admin
        .0
        .request(&AdminRequest::RevokeCert {
            serial: serial.clone(),
        })
        .await
        .unwrap();
    assert!(matches!(&revoked[0], AdminResponse::Cert(c) if c.revoked_at_ms.is_some()));
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match session.output.next().await {
                Ok(Some(TtyEvent::Output(_))) => continue,
                other => break other,
            }
        }
    })
    .await
    .expect("the terminal on the revoked certificate's connection ends");
    assert!(!matches!(ended, Ok(Some(TtyEvent::Exited(_)))), "{ended:?}");
    assert!(dev.request(&AdminRequest::Ping).await.is_err());
    dev2.request(&AdminRequest::Ping)
        .await
        .expect("the other certificate still works");
    let again = AdminClient::connect(&first, Some(&core.addr.to_string())).await;
    let refused = match again {
        Ok(client) => client.request(&AdminRequest::Ping).await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(format!("{refused:?}").contains("revoked"), "{refused:?}");
    let record = last_record(&admin.0).await;
    assert_eq!(record.result, AuditResult::Denied, "{record:?}");
    assert_eq!(record.user, "dev");
}

fn first_serial(identity: &tether_certs::identity::AdminIdentity) -> String {
    let der = tether_certs::ca::parse_cert_pem(&identity.cert).unwrap();
    tether_certs::ca::user_cert_info(&der).unwrap().serial
}

async fn login(bridge: &AdminClient, user: &str, password: &str) -> Result<String, ClientError> {
    let answer = bridge
        .request(&AdminRequest::Login {
            user: user.into(),
            password: Secret::new(password),
            client: ClientInfo {
                addr: Some("198.51.100.7".into()),
                user_agent: Some("Mozilla/5.0 (test)".into()),
            },
        })
        .await?;
    match &answer[0] {
        AdminResponse::LoggedIn { token, .. } => Ok(token.expose().to_string()),
        other => panic!("{other:?}"),
    }
}

async fn as_user(
    bridge: &AdminClient,
    token: &str,
    request: AdminRequest,
) -> Result<Vec<AdminResponse>, ClientError> {
    bridge
        .request(&AdminRequest::as_user(
            Secret::new(token),
            ClientInfo {
                addr: Some("198.51.100.7".into()),
                user_agent: Some("Mozilla/5.0 (test)".into()),
            },
            &request,
        ))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_act_as_their_user_and_end_when_idle_or_old() {
    let clock = Arc::new(ManualClock::at(1_800_000_000_000));
    let core = TestCore::start_with_clock(
        |c| {
            c.session_idle_timeout = Duration::from_secs(2 * 3600);
            c.session_lifetime = Duration::from_secs(7 * 86_400);
            // Throttling is tested on its own; here wrong passwords must not make us wait.
            c.login_delay = Duration::from_millis(1);
            c.login_max_failures = 100;
        },
        clock.clone(),
    )
    .await;
    let admin = core.admin().await;
    let (_, bridge) = core.user(&admin.0, "web", Role::Bridge).await;
    core.add_user(&admin.0, "vera", Role::Viewer, Some(PASSWORD))
        .await;

    let token = login(&bridge, "vera", PASSWORD).await.expect("logged in");
    assert_eq!(token.len(), 43, "256 bits, URL-safe base64");
    let pong = as_user(&bridge, &token, AdminRequest::Ping).await.unwrap();
    assert!(
        matches!(&pong[0], AdminResponse::Pong { admin, role, .. } if admin == "vera" && *role == Role::Viewer)
    );
    // The user's role applies, not the bridge's.
    let (code, _) =
        code_of(as_user(&bridge, &token, AdminRequest::DeleteNode { id: "x".into() }).await);
    assert_eq!(code, ErrorCode::PERMISSION_DENIED);
    // Audited as the user, with the browser.
    let record = last_record(&admin.0).await;
    assert_eq!(record.user, "vera");
    assert_eq!(record.client_addr.as_deref(), Some("198.51.100.7"));
    assert_eq!(record.user_agent.as_deref(), Some("Mozilla/5.0 (test)"));
    assert!(record.details.contains(&("bridge".into(), "web".into())));
    // The bridge alone can do nothing else.
    let (code, _) = code_of(
        bridge
            .request(&AdminRequest::ListNodes {
                status: None,
                labels: vec![],
                group: None,
                include_deleted: false,
            })
            .await,
    );
    assert_eq!(code, ErrorCode::PERMISSION_DENIED);
    // The token is kept only as a hash: core's sessions list shows ids.
    let sessions = admin
        .0
        .request(&AdminRequest::UserSessions {
            name: "vera".into(),
        })
        .await
        .unwrap();
    let AdminResponse::Sessions(list) = &sessions[0] else {
        panic!()
    };
    assert_eq!(list.len(), 1);
    assert_ne!(list[0].id, token);
    assert_eq!(list[0].user_agent.as_deref(), Some("Mozilla/5.0 (test)"));

    // Used within the idle timeout, it lives on; idle past it, it ends.
    clock.set(1_800_000_000_000 + 3_600_000);
    as_user(&bridge, &token, AdminRequest::Ping)
        .await
        .expect("an hour later, still in");
    clock.set(1_800_000_000_000 + 3_600_000 + 2 * 3_600_000 + 1);
    let (code, message) = code_of(as_user(&bridge, &token, AdminRequest::Ping).await);
    assert_eq!(code, ErrorCode::SESSION_EXPIRED, "{message}");
    assert!(message.contains("without use"), "{message}");
    let record = last_record(&admin.0).await;
    assert_eq!(record.result, AuditResult::Denied);

    // Used every hour, it still ends after its lifetime.
    let token = login(&bridge, "vera", PASSWORD).await.unwrap();
    let start = tether_core::clock::Clock::now_ms(&*clock);
    let mut t = start;
    while t < start + 7 * 86_400_000 - 3_600_000 {
        t += 3_600_000;
        clock.set(t);
        as_user(&bridge, &token, AdminRequest::Ping)
            .await
            .expect("in use");
    }
    clock.set(start + 7 * 86_400_000);
    let (code, message) = code_of(as_user(&bridge, &token, AdminRequest::Ping).await);
    assert_eq!(code, ErrorCode::SESSION_EXPIRED);
    assert!(message.contains("session_lifetime"), "{message}");

    // Through a session, a new password of one's own needs the current one.
    let token = login(&bridge, "vera", PASSWORD).await.unwrap();
    let passwd = |current: Option<&str>| AdminRequest::UserPasswd {
        name: "vera".into(),
        password: Secret::new("a brand new password"),
        current: current.map(Secret::new),
    };
    let (code, message) = code_of(as_user(&bridge, &token, passwd(None)).await);
    assert_eq!(code, ErrorCode::INVALID_ARGUMENT, "{message}");
    let (code, _) = code_of(as_user(&bridge, &token, passwd(Some("not my password"))).await);
    assert_eq!(code, ErrorCode::LOGIN_FAILED);
    login(&bridge, "vera", PASSWORD)
        .await
        .expect("the password is unchanged");
    as_user(&bridge, &token, passwd(Some(PASSWORD)))
        .await
        .expect("changed with the current password");
    let (code, _) = code_of(as_user(&bridge, &token, AdminRequest::Ping).await);
    assert_eq!(
        code,
        ErrorCode::SESSION_EXPIRED,
        "a new password ends the sessions"
    );
    let (code, _) = code_of(login(&bridge, "vera", PASSWORD).await);
    assert_eq!(code, ErrorCode::LOGIN_FAILED);
    let _ = login(&bridge, "vera", "a brand new password")
        .await
        .unwrap();
    // Logout, and an admin's logout of a user, end sessions at once.
    let token = login(&bridge, "vera", "a brand new password")
        .await
        .unwrap();
    bridge
        .request(&AdminRequest::Logout {
            token: Secret::new(&token),
        })
        .await
        .unwrap();
    let (code, _) = code_of(as_user(&bridge, &token, AdminRequest::Ping).await);
    assert_eq!(code, ErrorCode::SESSION_EXPIRED);
    let token = login(&bridge, "vera", "a brand new password")
        .await
        .unwrap();
    admin
        .0
        .request(&AdminRequest::UserLogout {
            name: "vera".into(),
            session: None,
        })
        .await
        .unwrap();
    let (code, _) = code_of(as_user(&bridge, &token, AdminRequest::Ping).await);
    assert_eq!(code, ErrorCode::SESSION_EXPIRED);
    // Disabling the user ends their sessions and refuses their logins.
    let token = login(&bridge, "vera", "a brand new password")
        .await
        .unwrap();
    admin
        .0
        .request(&AdminRequest::UserEnable {
            name: "vera".into(),
            enabled: false,
        })
        .await
        .unwrap();
    let (code, _) = code_of(as_user(&bridge, &token, AdminRequest::Ping).await);
    assert_eq!(code, ErrorCode::SESSION_EXPIRED);
    let (code, message) = code_of(login(&bridge, "vera", "a brand new password").await);
    assert_eq!(code, ErrorCode::CREDENTIALS_REVOKED);
    assert!(message.contains("disabled"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_throttled_and_say_the_same_for_unknown_users() {
    let core = TestCore::start(|c| {
        c.login_max_failures = 3;
        c.login_delay = Duration::from_millis(200);
        c.login_lockout = Duration::from_secs(3);
    })
    .await;
    let admin = core.admin().await;
    let (_, bridge) = core.user(&admin.0, "web", Role::Bridge).await;
    core.add_user(&admin.0, "vera", Role::Viewer, Some(PASSWORD))
        .await;

    let (code, wrong) = code_of(login(&bridge, "vera", "not the password").await);
    assert_eq!(code, ErrorCode::LOGIN_FAILED);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, unknown) = code_of(login(&bridge, "nobody", "not the password").await);
    assert_eq!(code, ErrorCode::LOGIN_FAILED);
    assert_eq!(
        wrong, unknown,
        "one answer for an unknown user and a wrong password"
    );
    // Right away, the address is made to wait (growing delays).
    let (code, message) = code_of(login(&bridge, "vera", PASSWORD).await);
    assert_eq!(code, ErrorCode::RATE_LIMITED, "{message}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, _) = code_of(login(&bridge, "vera", "still wrong!!").await);
    assert_eq!(code, ErrorCode::LOGIN_FAILED);
    // Three failures: locked, even with the right password.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (code, message) = code_of(login(&bridge, "vera", PASSWORD).await);
    assert_eq!(code, ErrorCode::RATE_LIMITED, "{message}");
    assert!(message.contains("locked"), "{message}");
    // After the lockout, the right password works.
    tokio::time::sleep(Duration::from_secs(3)).await;
    login(&bridge, "vera", PASSWORD)
        .await
        .expect("in after the lockout");
    let records = audit(
        &admin.0,
        AuditQuery {
            action: Some("sessions.login".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(records.len() >= 5, "{records:?}");
    assert!(
        records
            .iter()
            .any(|r| r.entry.user == "nobody" && r.entry.result == AuditResult::Failed)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_a_clear_error_an_audit_record_and_no_change() {
    let core = TestCore::start(|_| {}).await;
    let admin = core.admin().await;
    core.add_user(&admin.0, "vera", Role::Viewer, Some(PASSWORD))
        .await;
    let users_before = admin.0.request(&AdminRequest::UserList).await.unwrap();

    let add = |name: &str, password: Option<&str>, email: Option<&str>| {
        AdminRequest::UserAdd(NewUser {
            name: name.into(),
            role: Role::Operator,
            email: email.map(Into::into),
            password: password.map(Secret::new),
        })
    };
    for (request, want, says) in [
        (
            add("vera", Some(PASSWORD), None),
            ErrorCode::CONFLICT,
            "already exists",
        ),
        (
            add("short", Some("elevenchars"), None),
            ErrorCode::INVALID_ARGUMENT,
            "at least 12",
        ),
        (
            add("bad name", Some(PASSWORD), None),
            ErrorCode::INVALID_ARGUMENT,
            "letters, digits",
        ),
        (
            add("mail", Some(PASSWORD), Some("no-at-sign")),
            ErrorCode::INVALID_ARGUMENT,
            "email",
        ),
        (
            AdminRequest::UserRole {
                name: "admin".into(),
                role: Role::Viewer,
            },
            ErrorCode::CONFLICT,
            "only enabled admin",
        ),
        (
            AdminRequest::UserDelete {
                name: "admin".into(),
            },
            ErrorCode::CONFLICT,
            "cannot delete yourself",
        ),
        (
            AdminRequest::UserPasswd {
                name: "vera".into(),
                password: Secret::new("short"),
                current: None,
            },
            ErrorCode::INVALID_ARGUMENT,
            "at least 12",
        ),
        (
            AdminRequest::RevokeCert {
                serial: "zz".into(),
            },
            ErrorCode::INVALID_ARGUMENT,
            "serial",
        ),
        (
            AdminRequest::RevokeCert {
                serial: "abc123".into(),
            },
            ErrorCode::NOT_FOUND,
            "no certificate",
        ),
    ] {
        let (code, message) = code_of(admin.0.request(&request).await);
        assert_eq!(code, want, "{request:?}: {message}");
        assert!(message.contains(says), "{request:?}: {message}");
        let record = last_record(&admin.0).await;
        assert_eq!(record.result, AuditResult::Failed, "{request:?}");
        assert!(record.error.as_deref().unwrap().contains(says));
        assert!(!format!("{record:?}").contains(PASSWORD));
    }
    assert_eq!(
        admin.0.request(&AdminRequest::UserList).await.unwrap(),
        users_before,
        "nothing changed"
    );

    // An expired certificate is refused with its reason, and recorded.
    let short = core
        .cert_lasting(&admin.0, "vera", Duration::from_secs(1))
        .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let refused = match AdminClient::connect(&short, Some(&core.addr.to_string())).await {
        Ok(client) => client.request(&AdminRequest::Ping).await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(format!("{refused:?}").contains("expired"), "{refused:?}");
    let record = last_record(&admin.0).await;
    assert_eq!(
        (record.user.as_str(), record.result),
        ("vera", AuditResult::Denied)
    );
    assert!(
        record.error.as_deref().unwrap().contains("expired"),
        "{record:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_verify_names_an_edited_and_a_deleted_record() {
    let mut core = TestCore::start(|_| {}).await;
    {
        let admin = core.admin().await;
        for i in 0..5 {
            admin
                .0
                .request(&AdminRequest::UserShow {
                    name: format!("u{i}"),
                })
                .await
                .ok();
        }
    }
    let addr = core.addr;
    core.stop().await;
    // An attacker with the database edits record 3 and deletes record 5.
    let db = tether_core::data_dir::DataDir::new(core.data()).database_path();
    {
        // The stopped core's last handles go within moments.
        let store = eventually("the database is free", || async {
            tether_store::Store::open(&db).ok()
        })
        .await;
        let mut entry = store
            .audit(&tether_store::AuditFilter {
                limit: 100,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .find(|r| r.seq == 3)
            .unwrap()
            .entry;
        entry.user = "nobody".into();
        store
            .tamper_audit(3, tether_store::AuditTamper::Replace(entry))
            .await
            .unwrap();
        store.close().await;
    }
    let mut config = test_config(&core.data());
    config.listen = addr;
    let restarted = tether_core::Core::start(config).await.unwrap();
    let admin = AdminClient::connect(&core.identity(), Some(&addr.to_string()))
        .await
        .unwrap();
    let report = match &admin.request(&AdminRequest::AuditVerify).await.unwrap()[0] {
        AdminResponse::AuditVerified(report) => report.clone(),
        other => panic!("{other:?}"),
    };
    let broken = report.broken.expect("the edit is found");
    assert_eq!(broken.seq, 3, "{}", broken.reason);
    assert!(broken.reason.contains("edited"), "{}", broken.reason);
    restarted.shutdown().await;
    drop(admin);
    {
        let store = eventually("the database is free", || async {
            tether_store::Store::open(&db).ok()
        })
        .await;
        let original = store.verify_audit().unwrap();
        assert_eq!(original.broken.unwrap().seq, 3);
        store
            .tamper_audit(3, tether_store::AuditTamper::Delete)
            .await
            .unwrap();
        let report = store.verify_audit().unwrap();
        let broken = report.broken.unwrap();
        assert_eq!(broken.seq, 3);
        assert!(broken.reason.contains("missing"), "{}", broken.reason);
        store.close().await;
    }
}

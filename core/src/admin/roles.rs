//! Who may ask what: one table, consulted before any handler runs. It is seed 002's matrix
//! (§6.1.2) row for row, plus rows for what Tether has beyond the seed. Handlers check only
//! what depends on the target: a "limited" cell is narrowed there (an operator's own sessions,
//! the nodes that allow the user).
//!
//! `docs/security.md` shows this table; a test fails when the two disagree.

use tether_wire::ErrorCode;
use tether_wire::admin::{AdminRequest, Role};

use super::Refusal;

/// What a role may do with an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cell {
    /// Yes.
    Yes,
    /// Yes, narrowed by the handler (see the row's note).
    Limited,
    /// No.
    No,
}

use Cell::{Limited as L, No as N, Yes as Y};

/// One row: action name, what it covers, then admin, operator, viewer, bridge.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code))] // `covers` and `note` are for the docs' table.
pub(crate) struct Row {
    /// Name, as the audit log records it.
    pub action: &'static str,
    /// What it covers.
    pub covers: &'static str,
    /// admin, operator, viewer, bridge.
    pub cells: [Cell; 4],
    /// How a limited cell is narrowed.
    pub note: &'static str,
}

const fn row(action: &'static str, covers: &'static str, cells: [Cell; 4]) -> Row {
    Row {
        action,
        covers,
        cells,
        note: "",
    }
}

/// The table. Columns: admin, operator, viewer, bridge.
pub(crate) const TABLE: &[Row] = &[
    // Seed 002 §6.1.2, row for row.
    row("nodes.view", "list and show nodes and groups", [Y, Y, Y, N]),
    row("nodes.edit", "labels, maintenance, group", [Y, Y, N, N]),
    row("nodes.delete", "delete a node", [Y, N, N, N]),
    row("versions.view", "agent releases: list, show", [Y, Y, Y, N]),
    row("versions.upload", "agent releases: upload", [Y, Y, N, N]),
    row("versions.deploy", "agent releases: deploy", [Y, Y, N, N]),
    row("versions.delete", "agent releases: delete", [Y, N, N, N]),
    row(
        "tasks.view",
        "scheduled tasks: list, show, history",
        [Y, Y, Y, N],
    ),
    row(
        "tasks.create",
        "scheduled tasks: add, edit, enable, disable",
        [Y, Y, N, N],
    ),
    row("tasks.execute", "scheduled tasks: run now", [Y, Y, N, N]),
    row("tasks.delete", "scheduled tasks: delete", [Y, N, N, N]),
    row(
        "users.manage",
        "users, their certificates and sessions",
        [Y, N, N, N],
    ),
    row("audit.view", "the audit log: list, verify", [Y, N, N, N]),
    // Beyond the seed.
    row("enroll.view", "enrollment applications: list", [Y, Y, Y, N]),
    row("enroll.decide", "enrollment: approve, reject", [Y, N, N, N]),
    row(
        "groups.manage",
        "node groups: add, move, delete",
        [Y, Y, N, N],
    ),
    row(
        "nodes.access",
        "who may open terminals on a node",
        [Y, N, N, N],
    ),
    row("exec.run", "run commands, cancel them", [Y, Y, N, N]),
    row("exec.view", "command history and output", [Y, Y, Y, N]),
    Row {
        action: "tty.open",
        covers: "open a terminal",
        cells: [Y, L, N, N],
        note: "operators: only on nodes that allow them (`node allow`)",
    },
    row("tty.view", "terminal sessions: list", [Y, Y, Y, N]),
    Row {
        action: "tty.kill",
        covers: "end a live terminal session",
        cells: [Y, L, N, N],
        note: "operators: only their own",
    },
    Row {
        action: "recordings.view",
        covers: "terminal recordings: play, export",
        cells: [Y, L, L, N],
        note: "operators and viewers: only their own sessions'",
    },
    row(
        "backup",
        "take a backup (it holds the CA key)",
        [Y, N, N, N],
    ),
    row("status", "core's status", [Y, Y, Y, N]),
    row(
        "alerts.view",
        "alerts, alert rules, channels (secrets hidden)",
        [Y, Y, Y, N],
    ),
    row("alerts.ack", "acknowledge an alert", [Y, Y, N, N]),
    row(
        "alerts.manage",
        "alert rules and channels: add, enable, delete; test a channel",
        [Y, N, N, N],
    ),
    Row {
        action: "self",
        covers: "who am I (ping); change my own password",
        cells: [Y, L, L, L],
        note: "a password only their own; the bridge: ping only",
    },
    row(
        "sessions.login",
        "log users in by password, log them out",
        [N, N, N, Y],
    ),
    row(
        "sessions.forward",
        "make requests as a logged-in user (then that user's row applies)",
        [N, N, N, Y],
    ),
];

/// The action a request is, by the table's name.
pub(crate) fn action(request: &AdminRequest) -> &'static str {
    match request {
        AdminRequest::ListNodes { .. }
        | AdminRequest::ShowNode { .. }
        | AdminRequest::NodePage(_)
        | AdminRequest::NodeMetrics(_)
        | AdminRequest::FleetMetrics(_)
        | AdminRequest::Overview
        | AdminRequest::Watch(_)
        | AdminRequest::GroupList
        | AdminRequest::GroupShow { .. } => "nodes.view",
        AdminRequest::LabelNode { .. }
        | AdminRequest::SetMaintenance { .. }
        | AdminRequest::NodeGroup { .. } => "nodes.edit",
        AdminRequest::GroupAdd { .. }
        | AdminRequest::GroupMove { .. }
        | AdminRequest::GroupDelete { .. } => "groups.manage",
        AdminRequest::DeleteNode { .. } => "nodes.delete",
        AdminRequest::TaskList
        | AdminRequest::TaskShow { .. }
        | AdminRequest::TaskHistory { .. }
        | AdminRequest::CronPreview { .. } => "tasks.view",
        AdminRequest::TaskAdd(_)
        | AdminRequest::TaskEdit { .. }
        | AdminRequest::TaskEnable { .. } => "tasks.create",
        AdminRequest::TaskRun { .. } => "tasks.execute",
        AdminRequest::TaskDelete { .. } => "tasks.delete",
        AdminRequest::ReleaseList
        | AdminRequest::ReleaseShow { .. }
        | AdminRequest::DeployList { .. }
        | AdminRequest::DeployStatus { .. } => "versions.view",
        AdminRequest::ReleaseDeploy(_)
        | AdminRequest::DeployControl { .. }
        | AdminRequest::DeployRollback { .. } => "versions.deploy",
        AdminRequest::ReleaseUpload { .. } => "versions.upload",
        AdminRequest::ReleaseDelete { .. } => "versions.delete",
        AdminRequest::UserAdd(_)
        | AdminRequest::UserList
        | AdminRequest::UserShow { .. }
        | AdminRequest::UserRole { .. }
        | AdminRequest::UserEnable { .. }
        | AdminRequest::UserDelete { .. }
        | AdminRequest::UserCert { .. }
        | AdminRequest::UserCerts { .. }
        | AdminRequest::RevokeCert { .. }
        | AdminRequest::UserSessions { .. }
        | AdminRequest::UserLogout { .. } => "users.manage",
        AdminRequest::Audit(_) | AdminRequest::AuditVerify => "audit.view",
        AdminRequest::ListApplications { .. } => "enroll.view",
        AdminRequest::ApproveApplication { .. } | AdminRequest::RejectApplication { .. } => {
            "enroll.decide"
        }
        AdminRequest::SetAllowedUsers { .. } => "nodes.access",
        AdminRequest::Exec(_) | AdminRequest::CancelExec => "exec.run",
        AdminRequest::ExecHistory { .. } | AdminRequest::ShowExec { .. } => "exec.view",
        AdminRequest::AuthorizeTty(_) | AdminRequest::OpenTty { .. } => "tty.open",
        AdminRequest::ListTty { .. } | AdminRequest::ShowTty { .. } => "tty.view",
        AdminRequest::KillTty { .. } => "tty.kill",
        AdminRequest::TtyRecording { .. } => "recordings.view",
        AdminRequest::Backup { .. } => "backup",
        AdminRequest::Status => "status",
        AdminRequest::AlertRuleList
        | AdminRequest::AlertRuleShow { .. }
        | AdminRequest::AlertList(_)
        | AdminRequest::AlertShow { .. }
        | AdminRequest::AlertChannelList => "alerts.view",
        AdminRequest::AlertAck { .. } => "alerts.ack",
        AdminRequest::AlertRuleAdd { .. }
        | AdminRequest::AlertRuleEnable { .. }
        | AdminRequest::AlertRuleDelete { .. }
        | AdminRequest::AlertChannelAdd(_)
        | AdminRequest::AlertChannelDelete { .. }
        | AdminRequest::AlertChannelTest { .. } => "alerts.manage",
        AdminRequest::Ping | AdminRequest::UserPasswd { .. } => "self",
        AdminRequest::Login { .. } | AdminRequest::Logout { .. } => "sessions.login",
        AdminRequest::AsUser { .. } => "sessions.forward",
        // A request this table does not know is refused to everyone: a new request must get
        // its row before anyone can use it.
        _ => "unknown",
    }
}

fn column(role: Role) -> usize {
    match role {
        Role::Admin => 0,
        Role::Operator => 1,
        Role::Viewer => 2,
        Role::Bridge => 3,
    }
}

/// The actions `role` may use, wholly or limited, in the table's order (what `Ping` tells a
/// page, so it can leave out buttons that would be refused).
pub(crate) fn permissions(role: Role) -> Vec<String> {
    TABLE
        .iter()
        .filter(|row| row.cells[column(role)] != Cell::No)
        .map(|row| row.action.to_string())
        .collect()
}

/// What `role` may do with `action`.
pub(crate) fn cell(role: Role, action: &str) -> Cell {
    TABLE
        .iter()
        .find(|row| row.action == action)
        .map_or(Cell::No, |row| row.cells[column(role)])
}

/// Refuses a request the caller's role does not allow. Requests narrowed by a limited cell
/// that the table can decide alone (the bridge's ping-only `self`, a password that is not the
/// caller's own) are decided here too.
pub(crate) fn permit(role: Role, user: &str, request: &AdminRequest) -> Result<(), Refusal> {
    let action = action(request);
    let allowed = match (cell(role, action), request) {
        (Cell::No, _) => false,
        (Cell::Yes, _) => true,
        (Cell::Limited, AdminRequest::UserPasswd { name, .. }) => {
            role != Role::Bridge && name == user
        }
        (Cell::Limited, _) => true,
    };
    if allowed {
        return Ok(());
    }
    let who = TABLE
        .iter()
        .find(|row| row.action == action)
        .map(|row| {
            Role::ALL
                .iter()
                .filter(|r| row.cells[column(**r)] != Cell::No)
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        })
        .unwrap_or_default();
    let message = match request {
        AdminRequest::UserPasswd { name, .. } if name != user && role != Role::Bridge => {
            format!(
                "only admins may set another user's password; you are {}",
                article(role)
            )
        }
        _ if who.is_empty() => format!("no role may make this request ({action})"),
        _ => format!("{action} needs the {who} role; you are {}", article(role)),
    };
    Err((ErrorCode::PERMISSION_DENIED, message))
}

fn article(role: Role) -> String {
    match role {
        Role::Admin | Role::Operator => format!("an {role}"),
        Role::Viewer | Role::Bridge => format!("a {role}"),
    }
}

/// The table as Markdown, as `docs/security.md` shows it.
#[cfg(test)]
pub(crate) fn markdown() -> String {
    let mark = |cell: Cell| match cell {
        Cell::Yes => "✓",
        Cell::Limited => "✓*",
        Cell::No => "✗",
    };
    let mut out = String::from(
        "| action | covers | admin | operator | viewer | bridge | * |\n|---|---|---|---|---|---|---|\n",
    );
    for row in TABLE {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} |\n",
            row.action,
            row.covers,
            mark(row.cells[0]),
            mark(row.cells[1]),
            mark(row.cells[2]),
            mark(row.cells[3]),
            row.note
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_may_read_the_status_and_only_admins_decide_enrollments() {
        for role in Role::PEOPLE {
            assert!(permit(role, "x", &AdminRequest::Status).is_ok(), "{role}");
        }
        assert!(permit(Role::Bridge, "x", &AdminRequest::Status).is_err());
        let approve = AdminRequest::ApproveApplication { id: "x".into() };
        assert!(permit(Role::Viewer, "x", &approve).is_err());
        assert!(permit(Role::Operator, "x", &approve).is_err());
        assert!(permit(Role::Admin, "x", &approve).is_ok());
        let refused = permit(
            Role::Viewer,
            "x",
            &AdminRequest::DeleteNode { id: "x".into() },
        );
        assert_eq!(
            refused.unwrap_err().1,
            "nodes.delete needs the admin role; you are a viewer"
        );
    }

    #[test]
    fn a_password_is_ones_own_unless_admin() {
        let passwd = |name: &str| AdminRequest::UserPasswd {
            name: name.into(),
            password: tether_wire::users::Secret::new("x"),
            current: None,
        };
        assert!(permit(Role::Viewer, "vera", &passwd("vera")).is_ok());
        assert!(permit(Role::Viewer, "vera", &passwd("alice")).is_err());
        assert!(permit(Role::Admin, "root", &passwd("alice")).is_ok());
        assert!(permit(Role::Bridge, "web", &passwd("web")).is_err());
        assert!(permit(Role::Bridge, "web", &AdminRequest::Ping).is_ok());
    }

    #[test]
    fn the_table_has_one_row_per_action_and_every_request_a_row() {
        let mut names: Vec<_> = TABLE.iter().map(|r| r.action).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len(), "duplicate rows");
        for row in TABLE {
            let limited = row.cells.contains(&Cell::Limited);
            assert_eq!(
                limited,
                !row.note.is_empty(),
                "{}: a limited cell needs a note",
                row.action
            );
        }
    }

    /// `docs/security.md` shows the table between two markers, exactly as [`markdown`] makes
    /// it: change one, change the other.
    #[test]
    fn the_security_doc_shows_this_table() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/security.md"))
                .expect("docs/security.md");
        let start = "<!-- role table: generated from core/src/admin/roles.rs -->\n";
        let end = "<!-- end of role table -->";
        let from = doc.find(start).expect("start marker in docs/security.md") + start.len();
        let to = from
            + doc[from..]
                .find(end)
                .expect("end marker in docs/security.md");
        assert_eq!(
            &doc[from..to],
            markdown(),
            "docs/security.md's role table differs from core's; paste this:\n{}",
            markdown()
        );
    }
}

//! Who may ask what: one table, consulted before any handler runs (seed 002 §6.1.2). Handlers
//! check only what depends on the target (whose session, which node allows whom).

use tether_wire::ErrorCode;
use tether_wire::admin::{AdminRequest, Role};

use super::Refusal;

/// The least role a request needs: viewers read; operators also edit nodes, run commands and
/// open terminals (where allowed); admins also decide enrollments, delete nodes, grant access
/// and take backups (which hold the CA's key).
pub(crate) fn needed(request: &AdminRequest) -> Role {
    match request {
        AdminRequest::Ping
        | AdminRequest::Status
        | AdminRequest::ListApplications { .. }
        | AdminRequest::ListNodes { .. }
        | AdminRequest::ShowNode { .. }
        | AdminRequest::ExecHistory { .. }
        | AdminRequest::ShowExec { .. }
        | AdminRequest::ListTty { .. }
        | AdminRequest::TtyRecording { .. } => Role::Viewer,
        AdminRequest::LabelNode { .. }
        | AdminRequest::SetMaintenance { .. }
        | AdminRequest::Exec(_)
        | AdminRequest::CancelExec
        | AdminRequest::AuthorizeTty(_)
        | AdminRequest::OpenTty { .. }
        | AdminRequest::KillTty { .. } => Role::Operator,
        _ => Role::Admin,
    }
}

/// Refuses a request the caller's role does not allow.
pub(crate) fn permit(role: Role, request: &AdminRequest) -> Result<(), Refusal> {
    let needed = needed(request);
    if role >= needed {
        Ok(())
    } else {
        Err((
            ErrorCode::PERMISSION_DENIED,
            format!("this needs the {needed} role; you are {}", article(role)),
        ))
    }
}

fn article(role: Role) -> String {
    match role {
        Role::Admin | Role::Operator => format!("an {role}"),
        Role::Viewer => format!("a {role}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_may_read_the_status_and_only_admins_decide_enrollments() {
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            assert!(permit(role, &AdminRequest::Status).is_ok(), "{role}");
        }
        let approve = AdminRequest::ApproveApplication { id: "x".into() };
        assert!(permit(Role::Viewer, &approve).is_err());
        assert!(permit(Role::Operator, &approve).is_err());
        assert!(permit(Role::Admin, &approve).is_ok());
        let refused = permit(Role::Viewer, &AdminRequest::DeleteNode { id: "x".into() });
        assert_eq!(
            refused.unwrap_err().1,
            "this needs the admin role; you are a viewer"
        );
    }
}

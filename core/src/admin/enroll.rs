//! Enrollment applications: list, approve, reject. A decision reaches a waiting node at once.

use tether_store::{Decision, DecisionOutcome};
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminResponse, ApplicationStatus};
use tether_wire::limits::MAX_REASON_LEN;
use tracing::info;

use super::{Reply, chunks, internal, resolve};
use crate::presence::Notice;
use crate::server::Shared;
use crate::views::application_view;

/// `ListApplications`.
pub(crate) fn list(
    shared: &Shared,
    status: Option<ApplicationStatus>,
    limit: Option<u32>,
) -> Reply {
    let apps = shared.store.applications(status).map_err(internal)?;
    let limit = limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let views: Vec<_> = apps.into_iter().take(limit).map(application_view).collect();
    Ok(chunks(views, AdminResponse::Applications))
}

/// `ApproveApplication`: creates the node and its secret, and pushes the secret to the node.
pub(crate) async fn approve(shared: &Shared, admin: &str, text: &str) -> Reply {
    let id = resolve::application(shared, text)?;
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    let decision = Decision::Approve {
        by: admin.to_string(),
        secret,
        now_ms: shared.now_ms(),
    };
    match shared
        .store
        .decide_application(id, decision)
        .await
        .map_err(internal)?
    {
        DecisionOutcome::Approved {
            application,
            secret,
            ..
        } => {
            let pushed = shared
                .presence
                .notify(application.node_id, Notice::Approved { secret });
            info!(application = %id, node_id = %application.node_id, pushed, "approved");
            Ok(vec![AdminResponse::Application(application_view(
                application,
            ))])
        }
        DecisionOutcome::Conflict(application) => Err((
            ErrorCode::CONFLICT,
            format!("application {id} is already {}", application.status),
        )),
        _ => Err((
            ErrorCode::NOT_FOUND,
            format!("application {id} does not exist"),
        )),
    }
}

/// `RejectApplication`: the node is told why and stops.
pub(crate) async fn reject(shared: &Shared, admin: &str, text: &str, reason: String) -> Reply {
    if reason.len() > MAX_REASON_LEN {
        return Err((
            ErrorCode::INVALID_ARGUMENT,
            format!("the reason is longer than {MAX_REASON_LEN} bytes"),
        ));
    }
    let id = resolve::application(shared, text)?;
    let decision = Decision::Reject {
        by: admin.to_string(),
        reason: reason.clone(),
        now_ms: shared.now_ms(),
    };
    match shared
        .store
        .decide_application(id, decision)
        .await
        .map_err(internal)?
    {
        DecisionOutcome::Rejected(application) => {
            let pushed = shared
                .presence
                .notify(application.node_id, Notice::Rejected { reason });
            info!(application = %id, node_id = %application.node_id, pushed, "rejected");
            Ok(vec![AdminResponse::Application(application_view(
                application,
            ))])
        }
        DecisionOutcome::Conflict(application) => Err((
            ErrorCode::CONFLICT,
            format!(
                "application {id} is already {}; to remove an approved node use `tether node delete`",
                application.status
            ),
        )),
        _ => Err((
            ErrorCode::NOT_FOUND,
            format!("application {id} does not exist"),
        )),
    }
}

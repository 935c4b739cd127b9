//! Nodes: list, show, labels, maintenance, deletion, and who may open terminals on them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tether_store::AccessChange;
use tether_wire::admin::{AdminResponse, NodeStatus, check_label, check_user_name};
use tether_wire::limits::{MAX_ALLOWED_USERS, MAX_LABELS};
use tether_wire::{ErrorCode, NodeId};
use tracing::info;

use super::{Reply, chunks, internal, resolve};
use crate::node_conn::close;
use crate::presence::SessionCommand;
use crate::server::Shared;
use crate::views::{node_view, status};

fn not_found(id: NodeId) -> (ErrorCode, String) {
    (ErrorCode::NOT_FOUND, format!("node {id} does not exist"))
}

/// One node as admins see it.
pub(crate) fn show_id(shared: &Shared, id: NodeId) -> Reply {
    let detail = shared
        .store
        .node(id)
        .map_err(internal)?
        .ok_or_else(|| not_found(id))?;
    let session = shared.presence.get(id);
    Ok(vec![AdminResponse::Node(node_view(
        detail,
        session.as_deref(),
    ))])
}

/// `ShowNode`.
pub(crate) fn show(shared: &Shared, text: &str) -> Reply {
    show_id(shared, resolve::node(shared, text)?)
}

/// `ListNodes`.
pub(crate) fn list(
    shared: &Shared,
    wanted: Option<NodeStatus>,
    labels: &[(String, String)],
    group: Option<String>,
    include_deleted: bool,
) -> Reply {
    for (key, value) in labels {
        check_label(key, value).map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
    }
    let in_group = match &group {
        Some(name) => Some(super::groups::select(shared, std::slice::from_ref(name))?),
        None => None,
    };
    let nodes = shared.store.nodes().map_err(internal)?;
    let views: Vec<_> = nodes
        .into_iter()
        .filter(|d| include_deleted || !d.record.deleted)
        .filter(|d| in_group.as_ref().is_none_or(|g| g.contains(&d.record.id)))
        .filter(|d| {
            labels
                .iter()
                .all(|(k, v)| d.record.labels.get(k) == Some(v))
        })
        .filter_map(|d| {
            let session = shared.presence.get(d.record.id);
            let current = status(d.record.maintenance, session.as_deref());
            wanted
                .is_none_or(|w| w == current)
                .then(|| node_view(d, session.as_deref()))
        })
        .collect();
    Ok(chunks(views, AdminResponse::Nodes))
}

/// `LabelNode`.
pub(crate) async fn label(
    shared: &Shared,
    text: &str,
    set: Vec<(String, String)>,
    remove: Vec<String>,
) -> Reply {
    let id = resolve::node(shared, text)?;
    for (key, value) in &set {
        check_label(key, value).map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
    }
    for key in &remove {
        check_label(key, "").map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
    }
    if set.is_empty() && remove.is_empty() {
        return Err((
            ErrorCode::INVALID_ARGUMENT,
            "give labels to set (KEY=VALUE) or --remove KEY".into(),
        ));
    }
    let too_many = Arc::new(AtomicBool::new(false));
    let flag = too_many.clone();
    let (set_log, remove_log) = (set.clone(), remove.clone());
    let updated = shared
        .store
        .update_node(id, shared.now_ms(), move |node| {
            let mut labels = node.labels.clone();
            for key in &remove {
                labels.remove(key);
            }
            labels.extend(set);
            if labels.len() > MAX_LABELS {
                flag.store(true, Ordering::Relaxed);
                return false;
            }
            let changed = labels != node.labels;
            node.labels = labels;
            changed
        })
        .await
        .map_err(internal)?;
    if too_many.load(Ordering::Relaxed) {
        return Err((
            ErrorCode::INVALID_ARGUMENT,
            format!("a node may carry at most {MAX_LABELS} labels"),
        ));
    }
    if updated.is_none() {
        return Err(not_found(id));
    }
    info!(node_id = %id, set = ?set_log, remove = ?remove_log, "labels changed");
    show_id(shared, id)
}

/// `SetMaintenance`.
pub(crate) async fn maintenance(shared: &Shared, text: &str, on: bool) -> Reply {
    let id = resolve::node(shared, text)?;
    let updated = shared
        .store
        .update_node(id, shared.now_ms(), move |node| {
            let changed = node.maintenance != on;
            node.maintenance = on;
            changed
        })
        .await
        .map_err(internal)?;
    if updated.is_none() {
        return Err(not_found(id));
    }
    info!(node_id = %id, on, "maintenance");
    show_id(shared, id)
}

/// `DeleteNode`: the record stays (marked deleted), the secret goes, the node is told and exits.
pub(crate) async fn delete(shared: &Shared, admin: &str, text: &str) -> Reply {
    let id = resolve::node(shared, text)?;
    let deleted = shared
        .store
        .delete_node(id, admin.to_string(), shared.now_ms())
        .await
        .map_err(internal)?;
    if deleted.is_none() {
        return Err(not_found(id));
    }
    // It left its group.
    shared.alerts.groups_changed();
    if let Some(session) = shared.presence.get(id) {
        let reason = format!("deleted by admin {admin}");
        if session
            .commands
            .send(SessionCommand::Remove { reason })
            .await
            .is_err()
        {
            close(
                &session.connection,
                ErrorCode::NODE_REMOVED,
                "this node was deleted",
            );
        }
    }
    info!(node_id = %id, "node deleted");
    show_id(shared, id)
}

/// `SetAllowedUsers`.
pub(crate) async fn allowed_users(
    shared: &Shared,
    text: &str,
    add: Vec<String>,
    remove: Vec<String>,
) -> Reply {
    let id = resolve::node(shared, text)?;
    if add.is_empty() && remove.is_empty() {
        return Err((
            ErrorCode::INVALID_ARGUMENT,
            "give at least one user to allow or disallow".into(),
        ));
    }
    for user in add.iter().chain(&remove) {
        check_user_name(user).map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
    }
    let (added, removed) = (add.clone(), remove.clone());
    match shared
        .store
        .change_allowed_users(id, add, remove, MAX_ALLOWED_USERS)
        .await
        .map_err(internal)?
    {
        AccessChange::Updated(users) => {
            info!(node_id = %id, ?added, ?removed, now = ?users, "allowed users changed");
            show_id(shared, id)
        }
        AccessChange::TooMany => Err((
            ErrorCode::INVALID_ARGUMENT,
            format!("a node may allow at most {MAX_ALLOWED_USERS} users"),
        )),
        _ => Err(not_found(id)),
    }
}

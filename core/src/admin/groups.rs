//! Node groups (`tether group ...`, `tether node group`), and [`select`]: the nodes a group
//! selects, itself and every group below it, for whatever selects nodes (`exec`, `node list`).

use std::collections::{HashMap, HashSet};

use tether_store::{GroupRefusal, GroupTree, NewGroup};
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::groups::{GroupView, check_description, check_name};
use tether_wire::{ErrorCode, NodeId};

use super::{Refusal, Reply, internal, invalid, resolve};
use crate::auth::Caller;
use crate::server::Shared;

fn refused(refusal: GroupRefusal) -> Refusal {
    let code = match refusal {
        GroupRefusal::NotFound(_) => ErrorCode::NOT_FOUND,
        GroupRefusal::Limit(_) => ErrorCode::LIMIT_REACHED,
        GroupRefusal::Cycle { .. } | GroupRefusal::TooDeep(_) => ErrorCode::INVALID_ARGUMENT,
        _ => ErrorCode::CONFLICT,
    };
    (code, refusal.to_string())
}

/// Every group request.
pub(crate) async fn handle(shared: &Shared, caller: &Caller, request: AdminRequest) -> Reply {
    let changes = !matches!(
        request,
        AdminRequest::GroupList | AdminRequest::GroupShow { .. }
    );
    let reply = change(shared, caller, request).await;
    if changes && reply.is_ok() {
        // Alert rules that target groups read memberships afresh.
        shared.alerts.groups_changed();
    }
    reply
}

async fn change(shared: &Shared, caller: &Caller, request: AdminRequest) -> Reply {
    let store = &shared.store;
    match request {
        AdminRequest::GroupAdd {
            name,
            parent,
            description,
            sort_order,
        } => {
            check_name(&name).map_err(invalid)?;
            check_description(&description).map_err(invalid)?;
            let group = store
                .add_group(NewGroup {
                    name,
                    parent,
                    description,
                    sort_order,
                    by: caller.user.clone(),
                    now_ms: shared.now_ms(),
                })
                .await
                .map_err(internal)?
                .map_err(refused)?;
            one(shared, &group.name)
        }
        AdminRequest::GroupList => {
            let views = Views::read(shared)?;
            let all = views
                .tree
                .depth_first()
                .into_iter()
                .map(|(id, depth)| views.view(id, depth))
                .collect();
            Ok(vec![AdminResponse::Groups(all)])
        }
        AdminRequest::GroupShow { name } => one(shared, &name),
        AdminRequest::GroupMove { name, parent } => {
            store
                .move_group(&name, parent)
                .await
                .map_err(internal)?
                .map_err(refused)?;
            one(shared, &name)
        }
        AdminRequest::GroupDelete { name, force } => {
            let before = one(shared, &name)?;
            store
                .delete_group(&name, force)
                .await
                .map_err(internal)?
                .map_err(refused)?;
            Ok(before)
        }
        AdminRequest::NodeGroup { node, group } => {
            let id = resolve::node(shared, &node)?;
            store
                .set_node_group(id, group)
                .await
                .map_err(internal)?
                .map_err(refused)?;
            super::nodes::show_id(shared, id)
        }
        _ => Err((ErrorCode::UNEXPECTED_MESSAGE, "not a group request".into())),
    }
}

fn one(shared: &Shared, name: &str) -> Reply {
    let views = Views::read(shared)?;
    let group = views
        .tree
        .by_name(name)
        .ok_or_else(|| refused(GroupRefusal::NotFound(format!("group {name:?}"))))?;
    let depth = views.tree.path(group.id).split('/').count() as u32;
    Ok(vec![AdminResponse::Group(views.view(group.id, depth))])
}

/// The tree and its nodes, read once to show groups.
struct Views {
    tree: GroupTree,
    /// Live (not deleted) nodes directly in each group.
    counts: HashMap<u64, u64>,
}

impl Views {
    fn read(shared: &Shared) -> Result<Self, Refusal> {
        let tree = shared.store.group_tree().map_err(internal)?;
        let deleted: HashSet<NodeId> = shared
            .store
            .node_records_shared()
            .map_err(internal)?
            .iter()
            .filter(|r| r.deleted)
            .map(|r| r.id)
            .collect();
        let mut counts: HashMap<u64, u64> = HashMap::new();
        for (node, group) in shared.store.node_groups().map_err(internal)? {
            if !deleted.contains(&node) {
                *counts.entry(group).or_default() += 1;
            }
        }
        Ok(Views { tree, counts })
    }

    fn view(&self, id: u64, depth: u32) -> GroupView {
        let g = &self.tree.groups[&id];
        let name_of = |i: &u64| self.tree.groups[i].name.clone();
        GroupView {
            name: g.name.clone(),
            description: g.description.clone(),
            parent: g.parent.as_ref().map(name_of),
            path: self.tree.path(id),
            depth,
            sort_order: g.sort_order,
            children: self
                .tree
                .children
                .get(&id)
                .map(|kids| kids.iter().map(name_of).collect())
                .unwrap_or_default(),
            nodes: self.counts.get(&id).copied().unwrap_or(0),
            nodes_total: self
                .tree
                .subtree(id)
                .iter()
                .map(|g| self.counts.get(g).copied().unwrap_or(0))
                .sum(),
            created_by: g.created_by.clone(),
            created_at_ms: g.created_at_ms,
        }
    }
}

/// The nodes in the groups named `names` and every group below them (deleted nodes included:
/// callers filter). An unknown name is refused, naming it.
pub(crate) fn select(shared: &Shared, names: &[String]) -> Result<HashSet<NodeId>, Refusal> {
    if names.is_empty() {
        return Ok(HashSet::new());
    }
    let tree = shared.store.group_tree().map_err(internal)?;
    let mut ids = Vec::new();
    for name in names {
        let group = tree.by_name(name).ok_or_else(|| {
            (
                ErrorCode::NOT_FOUND,
                format!("no group {name:?} (tether group list)"),
            )
        })?;
        ids.extend(tree.subtree(group.id));
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(shared
        .store
        .group_members(&ids)
        .map_err(internal)?
        .into_iter()
        .collect())
}

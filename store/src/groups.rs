//! Node groups: a tree of named groups, each node in at most one (seed 002's `node_groups` and
//! `nodes.group_id`). Names are unique; a parent must exist; no group may end up below itself;
//! a group that holds nodes or groups is deleted only by moving them to its parent. Each change
//! is one transaction.

use std::collections::HashMap;

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use tether_wire::NodeId;
use tether_wire::groups::{Group, MAX_DEPTH, MAX_GROUPS};

use crate::codec::{self, Stored};
use crate::tables::{
    GROUP_BY_NAME, GROUP_MEMBERS, GROUPS, GROUPS_NEXT_ID, META, NODE_GROUP, NODES,
};
use crate::{Store, StoreError};

impl Stored for Group {}
impl Stored for tether_wire::policy::NodePolicy {}

/// Why a change to groups was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupRefusal {
    /// No group of that name (or no such node).
    #[error("no {0}")]
    NotFound(String),
    /// The name is taken.
    #[error("group {0:?} exists already")]
    Exists(String),
    /// Core keeps at most this many.
    #[error("at most {0} groups may exist; delete one first")]
    Limit(usize),
    /// The move would put a group below itself.
    #[error("group {group:?} cannot go below {parent:?}: {parent:?} is {group:?} or below it")]
    Cycle {
        /// The group moved.
        group: String,
        /// The parent asked for.
        parent: String,
    },
    /// The tree would be deeper than [`MAX_DEPTH`].
    #[error("groups nest at most {MAX_DEPTH} deep; {0:?} would be deeper")]
    TooDeep(String),
    /// The group holds nodes or groups.
    #[error(
        "group {name:?} holds {nodes} node(s) and {groups} group(s); move them first, or delete with --force to move them to {}",
        parent.as_deref().map_or("no group".to_string(), |p| format!("{p:?}"))
    )]
    NotEmpty {
        /// The group.
        name: String,
        /// Nodes directly in it.
        nodes: u64,
        /// Groups directly below it.
        groups: u64,
        /// Where `--force` would move them.
        parent: Option<String>,
    },
}

/// A change's outcome: done, or refused with the reason.
pub type GroupOutcome<T> = Result<T, GroupRefusal>;

/// A group to add.
#[derive(Debug, Clone)]
pub struct NewGroup {
    /// Its name (checked by the caller).
    pub name: String,
    /// Its parent's name.
    pub parent: Option<String>,
    /// Free text.
    pub description: String,
    /// Order among siblings.
    pub sort_order: i64,
    /// Who adds it.
    pub by: String,
    /// Now, unix ms.
    pub now_ms: i64,
}

/// Every group, by number, with the tree's shape worked out.
#[derive(Debug, Clone, Default)]
pub struct GroupTree {
    /// By number.
    pub groups: HashMap<u64, Group>,
    /// Children's numbers by parent number (0: the top), each list in listing order.
    pub children: HashMap<u64, Vec<u64>>,
}

impl GroupTree {
    fn new(groups: HashMap<u64, Group>) -> Self {
        let mut children: HashMap<u64, Vec<u64>> = HashMap::new();
        for g in groups.values() {
            children
                .entry(g.parent.unwrap_or(0))
                .or_default()
                .push(g.id);
        }
        for list in children.values_mut() {
            list.sort_by(|a, b| {
                let (a, b) = (&groups[a], &groups[b]);
                (a.sort_order, &a.name).cmp(&(b.sort_order, &b.name))
            });
        }
        GroupTree { groups, children }
    }

    /// The group named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Group> {
        self.groups.values().find(|g| g.name == name)
    }

    /// Names from the top down to group `id`, `/`-separated.
    pub fn path(&self, id: u64) -> String {
        let found = |i| {
            let g = self.groups.get(&i);
            Ok::<_, std::convert::Infallible>(g.map(|g| (g.name.as_str(), g.parent)))
        };
        walk_path(id, found).unwrap_or_else(|never| match never {})
    }

    /// Group `id` and every group below it.
    pub fn subtree(&self, id: u64) -> Vec<u64> {
        let mut out = vec![id];
        let mut i = 0;
        while i < out.len() && out.len() <= self.groups.len() {
            if let Some(kids) = self.children.get(&out[i]) {
                out.extend(kids);
            }
            i += 1;
        }
        out
    }

    /// Every group, depth first, siblings in listing order, with its depth (1 at the top).
    pub fn depth_first(&self) -> Vec<(u64, u32)> {
        let mut out = Vec::with_capacity(self.groups.len());
        let mut stack: Vec<(u64, u32)> = self
            .children
            .get(&0)
            .map(|top| top.iter().rev().map(|&id| (id, 1)).collect())
            .unwrap_or_default();
        while let Some((id, depth)) = stack.pop() {
            out.push((id, depth));
            if out.len() > self.groups.len() {
                break;
            }
            if let Some(kids) = self.children.get(&id) {
                stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
            }
        }
        out
    }
}

/// Names from the top down to group `id`, `/`-separated, each group's name and parent found by
/// `get` (in the tree in memory, or in the table). Bounded: a damaged database could hold a
/// loop.
fn walk_path<N: AsRef<str>, E>(
    id: u64,
    mut get: impl FnMut(u64) -> Result<Option<(N, Option<u64>)>, E>,
) -> Result<String, E> {
    let mut names = Vec::new();
    let mut at = Some(id);
    for _ in 0..=MAX_DEPTH {
        let Some((name, parent)) = at.map(&mut get).transpose()?.flatten() else {
            break;
        };
        at = parent;
        names.push(name);
    }
    let names: Vec<&str> = names.iter().rev().map(AsRef::as_ref).collect();
    Ok(names.join("/"))
}

/// The path of the group node `node` is in, read from the tables of `txn` (a node's own
/// lookup: its group and that group's parents, not the whole tree).
pub(crate) fn node_group_path_in(
    txn: &redb::ReadTransaction,
    node: u128,
) -> Result<Option<String>, StoreError> {
    let Some(id) = txn.open_table(NODE_GROUP)?.get(node)?.map(|v| v.value()) else {
        return Ok(None);
    };
    let groups = txn.open_table(GROUPS)?;
    walk_path(id, |i| {
        let group = groups
            .get(i)?
            .map(|v| codec::decode::<Group>(v.value()))
            .transpose()?;
        Ok::<_, StoreError>(group.map(|g| (g.name, g.parent)))
    })
    .map(Some)
}

/// Every group in `table`, with the tree's shape.
pub(crate) fn read_groups(
    table: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<GroupTree, StoreError> {
    let mut groups = HashMap::new();
    for entry in table.iter()? {
        let (key, value) = entry?;
        groups.insert(key.value(), codec::decode::<Group>(value.value())?);
    }
    Ok(GroupTree::new(groups))
}

/// The number of the group named `name`.
fn id_of(txn: &WriteTransaction, name: &str) -> Result<Option<u64>, StoreError> {
    Ok(txn.open_table(GROUP_BY_NAME)?.get(name)?.map(|v| v.value()))
}

/// How far group `id`'s subtree reaches below it (0: no children).
fn reach_below(tree: &GroupTree, id: u64) -> usize {
    let depth = tree.path(id).split('/').count();
    tree.subtree(id)
        .into_iter()
        .map(|g| tree.path(g).split('/').count() - depth)
        .max()
        .unwrap_or(0)
}

impl Store {
    /// Adds a group.
    pub async fn add_group(&self, new: NewGroup) -> Result<GroupOutcome<Group>, StoreError> {
        self.write(move |txn| {
            if id_of(txn, &new.name)?.is_some() {
                return Ok(Err(GroupRefusal::Exists(new.name)));
            }
            let mut groups = txn.open_table(GROUPS)?;
            if groups.len()? >= MAX_GROUPS as u64 {
                return Ok(Err(GroupRefusal::Limit(MAX_GROUPS)));
            }
            let parent = match &new.parent {
                None => None,
                Some(name) => match id_of(txn, name)? {
                    Some(id) => Some(id),
                    None => return Ok(Err(GroupRefusal::NotFound(format!("group {name:?}")))),
                },
            };
            if let Some(parent) = parent {
                let tree = read_groups(&groups)?;
                if tree.path(parent).split('/').count() >= MAX_DEPTH {
                    return Ok(Err(GroupRefusal::TooDeep(new.name)));
                }
            }
            let mut meta = txn.open_table(META)?;
            let id = meta.get(GROUPS_NEXT_ID)?.map_or(1, |v| v.value());
            meta.insert(GROUPS_NEXT_ID, id + 1)?;
            let group = Group {
                id,
                name: new.name,
                description: new.description,
                parent,
                sort_order: new.sort_order,
                created_by: new.by,
                created_at_ms: new.now_ms,
            };
            groups.insert(id, codec::encode(&group).as_slice())?;
            txn.open_table(GROUP_BY_NAME)?
                .insert(group.name.as_str(), id)?;
            Ok(Ok(group))
        })
        .await
    }

    /// Every group, with the tree's shape.
    pub fn group_tree(&self) -> Result<GroupTree, StoreError> {
        let txn = self.read()?;
        read_groups(&txn.open_table(GROUPS)?)
    }

    /// The nodes directly in the groups numbered `ids`.
    pub fn group_members(&self, ids: &[u64]) -> Result<Vec<NodeId>, StoreError> {
        let txn = self.read()?;
        let members = txn.open_table(GROUP_MEMBERS)?;
        let mut out = Vec::new();
        for &id in ids {
            for entry in members.range((id, 0u128)..=(id, u128::MAX))? {
                out.push(NodeId(uuid::Uuid::from_u128(entry?.0.value().1)));
            }
        }
        Ok(out)
    }

    /// Node → the number of its group, for every node in one.
    pub fn node_groups(&self) -> Result<HashMap<NodeId, u64>, StoreError> {
        let txn = self.read()?;
        let mut out = HashMap::new();
        for entry in txn.open_table(NODE_GROUP)?.iter()? {
            let (node, group) = entry?;
            out.insert(NodeId(uuid::Uuid::from_u128(node.value())), group.value());
        }
        Ok(out)
    }

    /// Gives group `name` another parent (none: the top). Refused if the parent is the group
    /// or below it, or the tree would grow too deep.
    pub async fn move_group(
        &self,
        name: &str,
        parent: Option<String>,
    ) -> Result<GroupOutcome<Group>, StoreError> {
        let name = name.to_string();
        self.write(move |txn| {
            let Some(id) = id_of(txn, &name)? else {
                return Ok(Err(GroupRefusal::NotFound(format!("group {name:?}"))));
            };
            let parent_id = match &parent {
                None => None,
                Some(p) => match id_of(txn, p)? {
                    Some(pid) => Some(pid),
                    None => return Ok(Err(GroupRefusal::NotFound(format!("group {p:?}")))),
                },
            };
            let mut groups = txn.open_table(GROUPS)?;
            let tree = read_groups(&groups)?;
            if let Some(pid) = parent_id {
                if tree.subtree(id).contains(&pid) {
                    return Ok(Err(GroupRefusal::Cycle {
                        group: name,
                        parent: parent.unwrap_or_default(),
                    }));
                }
                if tree.path(pid).split('/').count() + 1 + reach_below(&tree, id) > MAX_DEPTH {
                    return Ok(Err(GroupRefusal::TooDeep(name)));
                }
            }
            let mut group = tree.groups[&id].clone();
            group.parent = parent_id;
            groups.insert(id, codec::encode(&group).as_slice())?;
            Ok(Ok(group))
        })
        .await
    }

    /// Deletes group `name`. While it holds nodes or groups it is refused, unless `force`:
    /// then they move to its parent (or out of any group, at the top). The group as it was.
    pub async fn delete_group(
        &self,
        name: &str,
        force: bool,
    ) -> Result<GroupOutcome<Group>, StoreError> {
        let name = name.to_string();
        self.write(move |txn| {
            let Some(id) = id_of(txn, &name)? else {
                return Ok(Err(GroupRefusal::NotFound(format!("group {name:?}"))));
            };
            let mut groups = txn.open_table(GROUPS)?;
            let tree = read_groups(&groups)?;
            let group = tree.groups[&id].clone();
            let kids = tree.children.get(&id).cloned().unwrap_or_default();
            let mut members = txn.open_table(GROUP_MEMBERS)?;
            let nodes: Vec<u128> = members
                .range((id, 0u128)..=(id, u128::MAX))?
                .map(|e| e.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()?;
            if !force && (!nodes.is_empty() || !kids.is_empty()) {
                return Ok(Err(GroupRefusal::NotEmpty {
                    name,
                    nodes: nodes.len() as u64,
                    groups: kids.len() as u64,
                    parent: group.parent.map(|p| tree.groups[&p].name.clone()),
                }));
            }
            for kid in kids {
                let mut child = tree.groups[&kid].clone();
                child.parent = group.parent;
                groups.insert(kid, codec::encode(&child).as_slice())?;
            }
            let mut node_group = txn.open_table(NODE_GROUP)?;
            for node in nodes {
                members.remove((id, node))?;
                match group.parent {
                    Some(parent) => {
                        members.insert((parent, node), ())?;
                        node_group.insert(node, parent)?;
                    }
                    None => {
                        node_group.remove(node)?;
                    }
                }
            }
            groups.remove(id)?;
            txn.open_table(GROUP_BY_NAME)?.remove(name.as_str())?;
            Ok(Ok(group))
        })
        .await
    }

    /// Puts `node` in group `group`, or in none. The group it is in now.
    pub async fn set_node_group(
        &self,
        node: NodeId,
        group: Option<String>,
    ) -> Result<GroupOutcome<Option<Group>>, StoreError> {
        self.write(move |txn| {
            let key = node.0.as_u128();
            if txn.open_table(NODES)?.get(key)?.is_none() {
                return Ok(Err(GroupRefusal::NotFound(format!("node {node}"))));
            }
            let target = match &group {
                None => None,
                Some(name) => match id_of(txn, name)? {
                    Some(id) => Some(id),
                    None => return Ok(Err(GroupRefusal::NotFound(format!("group {name:?}")))),
                },
            };
            let mut node_group = txn.open_table(NODE_GROUP)?;
            let mut members = txn.open_table(GROUP_MEMBERS)?;
            let before = node_group.get(key)?.map(|v| v.value());
            if let Some(before) = before {
                members.remove((before, key))?;
            }
            match target {
                Some(id) => {
                    node_group.insert(key, id)?;
                    members.insert((id, key), ())?;
                }
                None => {
                    node_group.remove(key)?;
                }
            }
            let groups = txn.open_table(GROUPS)?;
            let group = match target {
                Some(id) => groups
                    .get(id)?
                    .map(|v| codec::decode::<Group>(v.value()))
                    .transpose()?,
                None => None,
            };
            Ok(Ok(group))
        })
        .await
    }
}

//! Node groups (seed 002's `node_groups`): a tree of named groups, each node in at most one.
//! Selecting a group selects it and everything below it, wherever nodes are selected (`exec`,
//! `node list`, and later tasks and alert targets).

use serde::{Deserialize, Serialize};

/// Groups core keeps at most.
pub const MAX_GROUPS: usize = 10_000;
/// How deep the tree may go: a group at depth 1 has no parent.
pub const MAX_DEPTH: usize = 16;
/// A description's length at most, bytes.
pub const MAX_DESCRIPTION: usize = 1024;

/// A group as core stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Core's number for it; names can be shown, numbers are what nodes and children point to.
    pub id: u64,
    /// Unique: 1 to 64 letters, digits, `-`, `_` or `.` ([`check_name`]).
    pub name: String,
    /// Free text.
    pub description: String,
    /// The parent group's number; none at the top.
    pub parent: Option<u64>,
    /// Siblings are listed by this, then by name.
    pub sort_order: i64,
    /// Who added it.
    pub created_by: String,
    /// When, unix ms.
    pub created_at_ms: i64,
}

/// A group as the admin API shows it: names instead of numbers, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    /// Its name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The parent's name; none at the top.
    pub parent: Option<String>,
    /// Names from the top down to this one, `/`-separated (`prod/eu/web`).
    pub path: String,
    /// 1 at the top.
    pub depth: u32,
    /// Siblings are listed by this, then by name.
    pub sort_order: i64,
    /// Its children's names, in listing order.
    pub children: Vec<String>,
    /// Nodes directly in it (deleted nodes not counted).
    pub nodes: u64,
    /// Nodes in it and every group below.
    pub nodes_total: u64,
    /// Who added it.
    pub created_by: String,
    /// When, unix ms.
    pub created_at_ms: i64,
}

/// Checks a group's name: 1 to 64 letters, digits, `-`, `_` or `.`.
pub fn check_name(name: &str) -> Result<(), String> {
    crate::alerts::check_name("group", name)
}

/// Checks a description's length.
pub fn check_description(description: &str) -> Result<(), String> {
    if description.len() > MAX_DESCRIPTION {
        return Err(format!(
            "the description is {} bytes; at most {MAX_DESCRIPTION}",
            description.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_descriptions_are_checked() {
        assert!(check_name("prod-eu.web_1").is_ok());
        for bad in ["", "a/b", "with space", &"x".repeat(65)] {
            let e = check_name(bad).unwrap_err();
            assert!(e.contains("group name"), "{e}");
        }
        assert!(check_description(&"d".repeat(MAX_DESCRIPTION)).is_ok());
        assert!(check_description(&"d".repeat(MAX_DESCRIPTION + 1)).is_err());
    }
}

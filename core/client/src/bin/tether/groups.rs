//! `tether group ...`: node groups, a tree. `--group NAME` elsewhere (`exec`, `node list`)
//! selects a group and every group below it.

use clap::Subcommand;
use tether_client::AdminClient;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::groups::GroupView;

use crate::output::{self, print_json};

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Add a group, at the top or below another.
    Add {
        /// Its name: 1 to 64 letters, digits, '-', '_' or '.'.
        name: String,
        /// The group it goes below.
        #[arg(long, value_name = "GROUP")]
        parent: Option<String>,
        /// Free text.
        #[arg(long, value_name = "TEXT", default_value = "")]
        description: String,
        /// Order among its siblings (then by name).
        #[arg(
            long,
            value_name = "N",
            default_value_t = 0,
            allow_negative_numbers = true
        )]
        sort_order: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every group, as a tree, with how many nodes each holds (directly, and with the groups
    /// below it).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One group.
    Show {
        /// Its name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give a group another parent, or move it to the top (--top). A group cannot go below
    /// itself.
    Move {
        /// Its name.
        name: String,
        /// The new parent.
        #[arg(long, value_name = "GROUP", required_unless_present = "top")]
        parent: Option<String>,
        /// Move it to the top.
        #[arg(long, conflicts_with = "parent")]
        top: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a group. Refused while it holds nodes or groups, unless --force, which moves them
    /// to its parent (or out of any group, for a group at the top).
    Delete {
        /// Its name.
        name: String,
        /// Move what it holds to its parent.
        #[arg(long)]
        force: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn one(responses: Vec<AdminResponse>) -> anyhow::Result<GroupView> {
    crate::single(responses, |r| match r {
        AdminResponse::Group(g) => Some(g),
        _ => None,
    })
}

/// Runs a group command; the exit status.
pub async fn run(client: &AdminClient, command: GroupCommand) -> anyhow::Result<u8> {
    match command {
        GroupCommand::Add {
            name,
            parent,
            description,
            sort_order,
            json,
        } => {
            let group = one(client
                .request(&AdminRequest::GroupAdd {
                    name,
                    parent,
                    description,
                    sort_order,
                })
                .await?)?;
            if json {
                print_json(&group)?;
            } else {
                println!("Added group {}.", group.path);
            }
        }
        GroupCommand::List { json } => {
            let groups = crate::single(
                client.request(&AdminRequest::GroupList).await?,
                |r| match r {
                    AdminResponse::Groups(g) => Some(g),
                    _ => None,
                },
            )?;
            if json {
                print_json(&groups)?;
            } else if groups.is_empty() {
                eprintln!("No groups. Add one with `tether group add NAME [--parent GROUP]`.");
            } else {
                output::table(
                    &["GROUP", "NODES", "WITH BELOW", "DESCRIPTION"],
                    groups
                        .iter()
                        .map(|g| {
                            vec![
                                tree_name(g),
                                g.nodes.to_string(),
                                g.nodes_total.to_string(),
                                g.description.clone(),
                            ]
                        })
                        .collect(),
                )?;
            }
        }
        GroupCommand::Show { name, json } => {
            let group = one(client.request(&AdminRequest::GroupShow { name }).await?)?;
            if json {
                print_json(&group)?;
            } else {
                let rows = [
                    ("name", group.name.clone()),
                    ("path", group.path.clone()),
                    ("parent", group.parent.clone().unwrap_or_else(|| "-".into())),
                    ("children", group.children.join(", ")),
                    ("nodes", group.nodes.to_string()),
                    ("nodes with below", group.nodes_total.to_string()),
                    ("description", group.description.clone()),
                    ("sort order", group.sort_order.to_string()),
                    ("added by", group.created_by.clone()),
                    ("added", output::ago(Some(group.created_at_ms))),
                ];
                for (k, v) in rows {
                    println!("{k:<17} {v}");
                }
            }
        }
        GroupCommand::Move {
            name,
            parent,
            top: _,
            json,
        } => {
            let group = one(client
                .request(&AdminRequest::GroupMove { name, parent })
                .await?)?;
            if json {
                print_json(&group)?;
            } else {
                println!("Group {} is now {}.", group.name, group.path);
            }
        }
        GroupCommand::Delete { name, force, json } => {
            let group = one(client
                .request(&AdminRequest::GroupDelete { name, force })
                .await?)?;
            if json {
                print_json(&group)?;
            } else {
                let moved = match (&group.parent, group.nodes, group.children.len()) {
                    (_, 0, 0) => String::new(),
                    (Some(parent), n, g) => {
                        format!(" ({n} node(s) and {g} group(s) moved to {parent})")
                    }
                    (None, n, g) => {
                        format!(" ({n} node(s) now in no group, {g} group(s) now at the top)")
                    }
                };
                println!("Deleted group {}{moved}.", group.path);
            }
        }
    }
    Ok(0)
}

/// The name indented by depth, as a tree.
fn tree_name(group: &GroupView) -> String {
    if group.depth <= 1 {
        group.name.clone()
    } else {
        format!("{}└ {}", "  ".repeat(group.depth as usize - 2), group.name)
    }
}

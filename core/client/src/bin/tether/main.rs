//! `tether`: the admin CLI. Talks to core over QUIC with an admin identity file.

mod alerts;
mod audit;
mod backup;
mod exec;
mod generate;
mod groups;
mod keys;
mod metrics;
mod output;
mod releases;
mod stdout;
mod tasks;
mod terminal;
mod tty;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use tether_certs::identity::AdminIdentity;
use tether_client::{AdminClient, ClientError};
use tether_wire::admin::{AdminRequest, AdminResponse, ApplicationStatus, NodeStatus, parse_label};

/// Manage a Tether fleet: enrollments, nodes, commands, terminals, backups, users, audit.
///
/// The identity comes from --identity, else $TETHER_IDENTITY, else ~/.config/tether/identity;
/// core's address from the identity unless --core is given. Data goes to stdout (tables, or one
/// JSON document with --json); messages for people go to stderr. `tether completions SHELL` and
/// `tether man` need neither an identity nor a core.
#[derive(Debug, Parser)]
#[command(name = "tether", version)]
struct Cli {
    /// Your identity file (the first admin's is made by `tether-core serve`, others by
    /// `tether user cert`).
    #[arg(long, global = true, env = "TETHER_IDENTITY", value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Core's address, HOST:PORT, instead of the one in the identity.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    core: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enrollment applications from new nodes.
    #[command(subcommand)]
    Enroll(EnrollCommand),
    /// Nodes in the fleet.
    #[command(subcommand)]
    Node(NodeCommand),
    // These three take their help from their arguments' own documentation (exit statuses,
    // formats): a comment here would replace it.
    Exec(exec::ExecArgs),
    Tty(tty::TtyArgs),
    Backup(backup::BackupArgs),
    /// Check the identity works and core answers.
    Ping {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// What the running core holds now: open connections, nodes connected and online, and
    /// heartbeats, malformed datagrams and enrollments since it started.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Users, their certificates and login sessions (admins; `user passwd` also for yourself).
    #[command(subcommand)]
    User(users::UserCommand),
    // Help from its arguments' documentation, as for exec, tty and backup.
    Audit(audit::AuditArgs),
    /// Alerts, their rules and notification channels: `alert list --firing`, `alert ack ID`,
    /// `alert rule add NAME --metric cpu --op gt --threshold 90 --for 5m`, `alert channel add
    /// NAME --webhook URL`.
    #[command(subcommand)]
    Alert(alerts::AlertCommand),
    /// Node groups, a tree: `group add prod`, `group add web --parent prod`, `group list`,
    /// `node group NODE web`; `--group prod` on exec and node list selects prod and every group
    /// below it.
    #[command(subcommand)]
    Group(groups::GroupCommand),
    /// Scheduled tasks: `task add backup --cron '0 3 * * *' --group db -- /usr/local/bin/backup`,
    /// `task list`, `task run NAME --wait`, `task history NAME`. Runs are executions: their
    /// output is in `exec history` and `exec show` too.
    #[command(subcommand)]
    Task(tasks::TaskCommandLine),
    /// Agent releases, signed with a key core never holds: `release keygen --out release.key`,
    /// `release sign tether-node --key release.key --version 1.2.0 --out m.toml`, `release
    /// upload tether-node --manifest m.toml`, `release list`.
    #[command(subcommand)]
    Release(releases::ReleaseCommand),
    // Help from their arguments' documentation, as for exec, tty and backup.
    Completions(generate::CompletionsArgs),
    Man(generate::ManArgs),
}

#[derive(Debug, Subcommand)]
enum EnrollCommand {
    /// List applications, newest first.
    List {
        /// Only applications in this status: pending, approved or rejected.
        #[arg(long)]
        status: Option<ApplicationStatus>,
        /// At most this many, newest first [default: all].
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve an application; the node is told at once and comes online.
    Approve {
        /// Application id or unique prefix.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reject an application; the node is told why and stops.
    Reject {
        /// Application id or unique prefix.
        id: String,
        /// Told to the node and kept on the record.
        #[arg(long, default_value = "")]
        reason: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// List nodes.
    List {
        /// Only nodes in this status: online, offline or maintenance.
        #[arg(long)]
        status: Option<NodeStatus>,
        /// Only nodes with this label (repeat for several; all must match).
        #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label)]
        label: Vec<(String, String)>,
        /// Only nodes in this group or a group below it.
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
        /// Include deleted nodes.
        #[arg(long)]
        deleted: bool,
        /// Only nodes flagged with an identity conflict (another machine tried to use their
        /// identity in the last day).
        #[arg(long)]
        conflict: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One node's metrics over time (sparklines, a table, or JSON).
    Metrics(metrics::MetricsArgs),
    /// Every static fact and the latest metrics of one node.
    Show {
        /// The node: its id, a unique beginning of its id, or its exact hostname.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set labels (KEY=VALUE) and remove them (--remove KEY).
    Label {
        /// The node: its id, a unique beginning of its id, or its exact hostname.
        id: String,
        /// Labels to set.
        #[arg(value_name = "KEY=VALUE", value_parser = parse_label)]
        set: Vec<(String, String)>,
        /// Label keys to remove.
        #[arg(long, value_name = "KEY")]
        remove: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put a node in a group (each node is in at most one), or in none (--none).
    Group {
        /// The node: its id, a unique beginning of its id, or its exact hostname.
        id: String,
        /// The group.
        #[arg(required_unless_present = "none")]
        group: Option<String>,
        /// Take it out of its group.
        #[arg(long, conflicts_with = "group")]
        none: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Switch maintenance mode on or off.
    Maintenance {
        /// The node: its id, a unique beginning of its id, or its exact hostname.
        id: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        mode: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Allow users (besides admins, who always may) to open terminals on a node.
    Allow {
        /// The node: its id, a unique beginning of its id, or its exact hostname.
        id: String,
        /// User names, as in their identity certificates.
        #[arg(required = true, value_name = "USER")]
        users: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take users off a node's allowed list (their live sessions go on; `tether tty kill` ends
    /// them).
    Disallow {
        /// The node: its id, a unique beginning of its id, or its exact hostname.
        id: String,
        /// User names.
        #[arg(required = true, value_name = "USER")]
        users: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a node: its record is kept (marked deleted), its secret revoked, its connection
    /// closed; the agent is told and exits. It cannot come back with the same identity.
    Delete {
        /// The node: its id, a unique beginning of its id, or its exact hostname.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn identity_path(cli: &Cli) -> anyhow::Result<PathBuf> {
    if let Some(path) = &cli.identity {
        return Ok(path.clone());
    }
    let home = std::env::var_os("HOME").context("no --identity, no TETHER_IDENTITY and no HOME")?;
    Ok(PathBuf::from(home).join(".config/tether/identity"))
}

/// The exit status on success.
async fn run(cli: Cli) -> anyhow::Result<u8> {
    // These two answer from the CLI's own definition, without an identity or a core.
    match &cli.command {
        Command::Completions(args) => return generate::completions(args),
        Command::Man(args) => return generate::man(args),
        Command::Release(command) if command.is_offline() => {
            let Command::Release(command) = cli.command else {
                unreachable!("matched above")
            };
            return releases::run_offline(command);
        }
        _ => {}
    }
    let path = identity_path(&cli)?;
    let identity = AdminIdentity::load(&path).with_context(|| {
        format!(
            "cannot use the admin identity {} (pass --identity FILE or set TETHER_IDENTITY; \
             core writes DATA/admin.identity on first start)",
            path.display()
        )
    })?;
    let client = AdminClient::connect(&identity, cli.core.as_deref()).await?;
    let result = match cli.command {
        Command::User(command) => users::run(&client, &identity, command).await,
        command => dispatch(&client, command).await,
    };
    client.close().await;
    result
}

pub(crate) fn single<T>(
    mut responses: Vec<AdminResponse>,
    pick: fn(AdminResponse) -> Option<T>,
) -> anyhow::Result<T> {
    match responses.pop().and_then(pick) {
        Some(value) if responses.is_empty() => Ok(value),
        _ => bail!("core sent an unexpected answer"),
    }
}

async fn dispatch(client: &AdminClient, command: Command) -> anyhow::Result<u8> {
    let node = |r| match r {
        AdminResponse::Node(node) => Some(node),
        _ => None,
    };
    let application = |r| match r {
        AdminResponse::Application(app) => Some(app),
        _ => None,
    };
    match command {
        Command::Exec(args) => return exec::run(client, args).await,
        Command::Tty(args) => return tty::run(client, args).await,
        Command::Backup(args) => return backup::run(client, args).await,
        Command::Audit(args) => return audit::run(client, args).await,
        Command::Alert(command) => return alerts::run(client, command).await,
        Command::Group(command) => return groups::run(client, command).await,
        Command::Task(command) => return tasks::run(client, command).await,
        Command::Release(command) => return releases::run(client, command).await,
        Command::User(_) => bail!("user commands need the identity; this is a bug"),
        // Answered in `run` before connecting; the same answer here.
        Command::Completions(args) => return generate::completions(&args),
        Command::Man(args) => return generate::man(&args),
        Command::Ping { json } => {
            let (core_version, admin, role) =
                single(client.request(&AdminRequest::Ping).await?, |r| match r {
                    AdminResponse::Pong {
                        core_version,
                        admin,
                        role,
                        ..
                    } => Some((core_version, admin, role)),
                    _ => None,
                })?;
            if json {
                output::print_json(&serde_json::json!({
                    "core_version": core_version,
                    "admin": admin,
                    "role": role.as_str(),
                }))?;
            } else {
                println!("core {core_version} answers; you are {admin:?} ({role})");
            }
        }
        Command::Status { json } => {
            let status = single(client.request(&AdminRequest::Status).await?, |r| match r {
                AdminResponse::Status(status) => Some(status),
                _ => None,
            })?;
            output::core_status(&status, json)?;
        }
        Command::Node(NodeCommand::Allow { id, users, json }) => {
            let request = AdminRequest::SetAllowedUsers {
                id,
                add: users,
                remove: Vec::new(),
            };
            let view = single(client.request(&request).await?, node)?;
            allowed_users_changed(&view, json)?;
        }
        Command::Node(NodeCommand::Disallow { id, users, json }) => {
            let request = AdminRequest::SetAllowedUsers {
                id,
                add: Vec::new(),
                remove: users,
            };
            let view = single(client.request(&request).await?, node)?;
            allowed_users_changed(&view, json)?;
        }
        Command::Enroll(EnrollCommand::List {
            status,
            limit,
            json,
        }) => {
            let mut apps = Vec::new();
            for response in client
                .request(&AdminRequest::ListApplications { status, limit })
                .await?
            {
                if let AdminResponse::Applications(chunk) = response {
                    apps.extend(chunk);
                }
            }
            output::applications(&apps, json)?;
        }
        Command::Enroll(EnrollCommand::Approve { id, json }) => {
            let app = single(
                client
                    .request(&AdminRequest::ApproveApplication { id })
                    .await?,
                application,
            )?;
            if json {
                output::print_json(&output::application_json(&app))?;
            }
            eprintln!(
                "approved application {}: node {} ({})",
                app.id, app.node_id, app.hostname
            );
        }
        Command::Enroll(EnrollCommand::Reject { id, reason, json }) => {
            let app = single(
                client
                    .request(&AdminRequest::RejectApplication { id, reason })
                    .await?,
                application,
            )?;
            if json {
                output::print_json(&output::application_json(&app))?;
            }
            eprintln!(
                "rejected application {} from {} ({})",
                app.id, app.hostname, app.node_id
            );
        }
        Command::Node(NodeCommand::List {
            status,
            label,
            group,
            deleted,
            conflict,
            json,
        }) => {
            let request = AdminRequest::ListNodes {
                status,
                labels: label,
                group,
                include_deleted: deleted,
            };
            let mut nodes = Vec::new();
            for response in client.request(&request).await? {
                if let AdminResponse::Nodes(chunk) = response {
                    nodes.extend(chunk);
                }
            }
            if conflict {
                nodes.retain(|n| n.conflict.is_some());
            }
            output::nodes(&nodes, json)?;
        }
        Command::Node(NodeCommand::Metrics(args)) => return metrics::run(client, args).await,
        Command::Node(NodeCommand::Show { id, json }) => {
            let view = single(client.request(&AdminRequest::ShowNode { id }).await?, node)?;
            output::node_detail(&view, json)?;
        }
        Command::Node(NodeCommand::Label {
            id,
            set,
            remove,
            json,
        }) => {
            if set.is_empty() && remove.is_empty() {
                bail!("give labels to set (KEY=VALUE ...) or --remove KEY");
            }
            let view = single(
                client
                    .request(&AdminRequest::LabelNode { id, set, remove })
                    .await?,
                node,
            )?;
            if json {
                output::print_json(&output::node_json(&view))?;
            }
            eprintln!(
                "labels of {} ({}): {}",
                view.id,
                view.hostname,
                output::labels_text(&view.labels)
            );
        }
        Command::Node(NodeCommand::Group {
            id,
            group,
            none: _,
            json,
        }) => {
            let view = single(
                client
                    .request(&AdminRequest::NodeGroup { node: id, group })
                    .await?,
                node,
            )?;
            if json {
                output::print_json(&output::node_json(&view))?;
            }
            eprintln!(
                "{} ({}) is in {}",
                view.id,
                view.hostname,
                view.group
                    .as_deref()
                    .map_or("no group".to_string(), |g| format!("group {g}"))
            );
        }
        Command::Node(NodeCommand::Maintenance { id, mode, json }) => {
            let on = mode == "on";
            let view = single(
                client
                    .request(&AdminRequest::SetMaintenance { id, on })
                    .await?,
                node,
            )?;
            if json {
                output::print_json(&output::node_json(&view))?;
            }
            eprintln!(
                "maintenance {mode} for {} ({}); status: {}",
                view.id, view.hostname, view.status
            );
        }
        Command::Node(NodeCommand::Delete { id, json }) => {
            let view = single(
                client.request(&AdminRequest::DeleteNode { id }).await?,
                node,
            )?;
            if json {
                output::print_json(&output::node_json(&view))?;
            }
            eprintln!(
                "deleted node {} ({}); its secret is revoked",
                view.id, view.hostname
            );
        }
    }
    Ok(0)
}

fn allowed_users_changed(view: &tether_wire::admin::NodeView, json: bool) -> anyhow::Result<()> {
    if json {
        output::print_json(&output::node_json(view))?;
    }
    eprintln!(
        "terminals on {} ({}): admins{}",
        view.id,
        view.hostname,
        if view.allowed_users.is_empty() {
            " only".to_string()
        } else {
            format!(" and {}", view.allowed_users.join(", "))
        }
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tether: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `exec` and `tty` answer like ssh: the remote status, so their own failures are 255.
    let own_failure = match &cli.command {
        Command::Exec(args) if args.runs_a_command() => 255,
        Command::Tty(args) if args.opens_a_terminal() => 255,
        _ => 1,
    };
    let result = runtime.block_on(run(cli));
    // A thread may still block reading stdin (terminal sessions): do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`tether node list | head`): nothing to say, as for SIGPIPE.
        Err(e)
            if e.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::from(141)
        }
        Err(e) => {
            match e.downcast_ref::<ClientError>() {
                Some(ClientError::Core { code, message }) => {
                    eprintln!("tether: {message} [{}]", code.name())
                }
                _ => eprintln!("tether: {e:#}"),
            }
            ExitCode::from(own_failure)
        }
    }
}

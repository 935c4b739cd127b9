//! `tether task ...`: scheduled tasks. A task runs a command (or a script kept by core) on a
//! selection of nodes on a cron schedule; each run is one or more executions, so its output is
//! also in `tether exec history` and `tether exec show`.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use tether_client::AdminClient;
use tether_wire::admin::{AdminRequest, AdminResponse, ExecCounts, ExecStatus, parse_label};
use tether_wire::bytes::ByteBuf;
use tether_wire::tasks::{
    CatchUp, DEFAULT_RETRY_INTERVAL_MS, DEFAULT_TIMEOUT_MS, RunState, RunView, TaskChanges,
    TaskCommand, TaskRun, TaskSpec, TaskTargets, TaskView,
};
use tether_wire::units::{duration_ms, parse_duration};

use crate::output::{self, print_json, rfc3339};

#[derive(Debug, Subcommand)]
pub enum TaskCommandLine {
    /// Add a task: `task add backup --cron '0 3 * * *' --timezone Europe/Berlin --group db --
    /// /usr/local/bin/backup`. Cron: five fields (minute hour day-of-month month day-of-week),
    /// an optional leading seconds field, or @hourly, @daily, @weekly, @monthly, @yearly.
    Add {
        /// Its name: 1 to 64 letters, digits, '-', '_' or '.'.
        name: String,
        /// When it runs.
        #[arg(long, value_name = "EXPR")]
        cron: String,
        #[command(flatten)]
        options: TaskOptions,
        /// Add it disabled (enable later with `task enable`).
        #[arg(long)]
        disabled: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// The command and its arguments, after `--` (or --script).
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Change a task: what is given replaces what was (targets all together when any is given).
    Edit {
        /// Its name.
        name: String,
        /// When it runs.
        #[arg(long, value_name = "EXPR")]
        cron: Option<String>,
        #[command(flatten)]
        options: TaskOptions,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// A new command and its arguments, after `--`.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Every task: schedule, next run, last run.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One task, with its next five run times.
    Show {
        /// Its name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Let a task run on its schedule again.
    Enable {
        /// Its name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a task's schedule (a run going on finishes).
    Disable {
        /// Its name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a task and its run history (its executions stay in `exec history`); a run going
    /// on is cancelled.
    Delete {
        /// Its name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a task now, by hand, whatever its schedule. Refused while a run is going on.
    Run {
        /// Its name.
        name: String,
        /// Wait for the run to end and print each node's result; exit status 1 unless every
        /// node ended ok.
        #[arg(long)]
        wait: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A task's runs, newest first, with each node's result.
    History {
        /// Its name.
        name: String,
        /// At most this many runs.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Options shared by `task add` and `task edit`.
#[derive(Debug, Args)]
pub struct TaskOptions {
    /// IANA time zone the schedule is read in [add's default: UTC].
    #[arg(long, value_name = "TZ")]
    timezone: Option<String>,
    /// Every node in this group or below it (repeat for several).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// Every node with this label (repeat: all must match).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// This node: id, unique id prefix, hostname or hostname pattern (repeat).
    #[arg(long = "node", value_name = "NODE")]
    nodes: Vec<String>,
    /// Every node.
    #[arg(long)]
    all: bool,
    /// Kill a node's run after this long [add's default: 5m].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    timeout: Option<Duration>,
    /// Try nodes that failed again, up to this many times [add's default: 0].
    #[arg(long, value_name = "N")]
    retries: Option<u32>,
    /// Wait this long before each retry [add's default: 60s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    retry_interval: Option<Duration>,
    /// Scatter the nodes' starts over this window, so a large fleet never starts at once
    /// [add's default: 0].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    spread: Option<Duration>,
    /// Runs missed while core was down: one catch-up run at start, or none [add's default:
    /// one].
    #[arg(long, value_name = "one|none")]
    catch_up: Option<CatchUp>,
    /// Free text.
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// Run this script instead of a command: core keeps it, sends it with each run, and the
    /// node runs it with its interpreter line ('#!/bin/sh'). Nodes run scripts only with
    /// exec = "on" in their policy.
    #[arg(long, value_name = "FILE", conflicts_with = "command")]
    script: Option<std::path::PathBuf>,
}

impl TaskOptions {
    fn targets(&self) -> Option<TaskTargets> {
        let targets = TaskTargets {
            nodes: self.nodes.clone(),
            labels: self.labels.clone(),
            groups: self.groups.clone(),
            all: self.all,
        };
        (!targets.is_empty()).then_some(targets)
    }

    fn command(&self, argv: Vec<String>) -> anyhow::Result<Option<TaskCommand>> {
        match &self.script {
            Some(path) if !argv.is_empty() => bail!(
                "give either --script {} or a command after --, not both",
                path.display()
            ),
            Some(path) => {
                let body = std::fs::read(path)
                    .with_context(|| format!("cannot read the script {}", path.display()))?;
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "script".into());
                Ok(Some(TaskCommand::Script {
                    name,
                    body: ByteBuf(body),
                }))
            }
            None if argv.is_empty() => Ok(None),
            None => Ok(Some(TaskCommand::Command(argv))),
        }
    }
}

fn one(responses: Vec<AdminResponse>) -> anyhow::Result<TaskView> {
    crate::single(responses, |r| match r {
        AdminResponse::Task(t) => Some(t),
        _ => None,
    })
}

/// Runs a task command; the exit status.
pub async fn run(client: &AdminClient, command: TaskCommandLine) -> anyhow::Result<u8> {
    match command {
        TaskCommandLine::Add {
            name,
            cron,
            options,
            disabled,
            json,
            command,
        } => {
            let targets = options.targets().context(
                "a task needs targets: --group GROUP, --label KEY=VALUE, --node NODE or --all",
            )?;
            let command = options
                .command(command)?
                .context("a task needs a command after -- (or --script FILE)")?;
            let spec = TaskSpec {
                name,
                description: options.description.clone().unwrap_or_default(),
                cron,
                timezone: options.timezone.clone().unwrap_or_else(|| "UTC".into()),
                targets,
                command,
                timeout_ms: options.timeout.map_or(DEFAULT_TIMEOUT_MS, duration_ms),
                retries: options.retries.unwrap_or(0),
                retry_interval_ms: options
                    .retry_interval
                    .map_or(DEFAULT_RETRY_INTERVAL_MS, duration_ms),
                spread_ms: options.spread.map_or(0, duration_ms),
                catch_up: options.catch_up.unwrap_or_default(),
                enabled: !disabled,
            };
            let task = one(client.request(&AdminRequest::TaskAdd(spec)).await?)?;
            if json {
                print_json(&task)?;
            } else {
                println!("Added task {}.", task.task.spec.name);
                print_next(&task);
            }
        }
        TaskCommandLine::Edit {
            name,
            cron,
            options,
            json,
            command,
        } => {
            let changes = TaskChanges {
                description: options.description.clone(),
                cron,
                timezone: options.timezone.clone(),
                targets: options.targets(),
                command: options.command(command)?,
                timeout_ms: options.timeout.map(duration_ms),
                retries: options.retries,
                retry_interval_ms: options.retry_interval.map(duration_ms),
                spread_ms: options.spread.map(duration_ms),
                catch_up: options.catch_up,
            };
            let task = one(client
                .request(&AdminRequest::TaskEdit { name, changes })
                .await?)?;
            if json {
                print_json(&task)?;
            } else {
                println!("Changed task {}.", task.task.spec.name);
                print_next(&task);
            }
        }
        TaskCommandLine::List { json } => {
            let mut tasks = Vec::new();
            for response in client.request(&AdminRequest::TaskList).await? {
                match response {
                    AdminResponse::Tasks(chunk) => tasks.extend(chunk),
                    _ => bail!("core sent an unexpected answer"),
                }
            }
            if json {
                print_json(&tasks)?;
            } else if tasks.is_empty() {
                eprintln!(
                    "No tasks. Add one with `tether task add NAME --cron EXPR --all -- COMMAND`."
                );
            } else {
                output::table(
                    &["TASK", "SCHEDULE", "TARGETS", "NEXT", "LAST", "COMMAND"],
                    tasks
                        .iter()
                        .map(|t| {
                            let spec = &t.task.spec;
                            vec![
                                spec.name.clone(),
                                format!("{} {}", spec.cron, spec.timezone),
                                spec.targets.describe(),
                                if spec.enabled {
                                    t.upcoming_ms.first().map_or("-".into(), |n| rfc3339(*n))
                                } else {
                                    "disabled".into()
                                },
                                t.last.as_ref().map_or("never".into(), run_summary),
                                spec.command.summary(),
                            ]
                        })
                        .collect(),
                )?;
            }
        }
        TaskCommandLine::Show { name, json } => {
            let task = one(client.request(&AdminRequest::TaskShow { name }).await?)?;
            if json {
                print_json(&task)?;
            } else {
                print_task(&task);
            }
        }
        TaskCommandLine::Enable { name, json } => enable(client, name, true, json).await?,
        TaskCommandLine::Disable { name, json } => enable(client, name, false, json).await?,
        TaskCommandLine::Delete { name, json } => {
            let task = one(client.request(&AdminRequest::TaskDelete { name }).await?)?;
            if json {
                print_json(&task)?;
            } else {
                println!("Deleted task {}.", task.task.spec.name);
            }
        }
        TaskCommandLine::Run { name, wait, json } => {
            let run = crate::single(
                client
                    .request(&AdminRequest::TaskRun { name: name.clone() })
                    .await?,
                |r| match r {
                    AdminResponse::TaskRun(run) => Some(run),
                    _ => None,
                },
            )?;
            if !wait {
                if json {
                    print_json(&run)?;
                } else {
                    println!(
                        "Started run {} of task {name}; see `tether task history {name}`.",
                        run.run
                    );
                }
                return Ok(0);
            }
            if !json {
                eprintln!(
                    "Run {} of task {name} started; waiting for it to end.",
                    run.run
                );
            }
            let ended = wait_for(client, &name, run.run).await?;
            if json {
                print_json(&run_json(&ended))?;
            } else {
                print_runs(std::slice::from_ref(&ended));
            }
            return Ok(u8::from(ended.run.state != RunState::Success));
        }
        TaskCommandLine::History { name, limit, json } => {
            let runs = history(client, &name, limit, None).await?;
            if json {
                print_json(&runs.iter().map(run_json).collect::<Vec<_>>())?;
            } else if runs.is_empty() {
                eprintln!("Task {name} has not run yet.");
            } else {
                print_runs(&runs);
            }
        }
    }
    Ok(0)
}

async fn enable(
    client: &AdminClient,
    name: String,
    enabled: bool,
    json: bool,
) -> anyhow::Result<()> {
    let task = one(client
        .request(&AdminRequest::TaskEnable { name, enabled })
        .await?)?;
    if json {
        print_json(&task)
    } else {
        let name = &task.task.spec.name;
        if enabled {
            println!("Enabled task {name}.");
            print_next(&task);
        } else {
            println!("Disabled task {name}: it runs only by hand until enabled again.");
        }
        Ok(())
    }
}

/// Runs of a task (`run`: only that one), each joined from the frames it came in.
async fn history(
    client: &AdminClient,
    name: &str,
    limit: u32,
    run: Option<u64>,
) -> anyhow::Result<Vec<RunView>> {
    let mut frames = Vec::new();
    for response in client
        .request(&AdminRequest::TaskHistory {
            name: name.to_string(),
            limit,
            run,
        })
        .await?
    {
        match response {
            AdminResponse::TaskRuns(runs) => frames.extend(runs),
            _ => bail!("core sent an unexpected answer"),
        }
    }
    Ok(tether_wire::tasks::join_runs(frames))
}

/// Polls run `number` of the task until it has ended.
async fn wait_for(client: &AdminClient, name: &str, number: u64) -> anyhow::Result<RunView> {
    let mut pause = Duration::from_millis(200);
    loop {
        let run = history(client, name, 1, Some(number))
            .await?
            .into_iter()
            .next()
            .with_context(|| format!("run {number} of task {name} is gone from its history"))?;
        if run.run.state != RunState::Running {
            return Ok(run);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

fn print_next(task: &TaskView) {
    match task.upcoming_ms.first() {
        Some(next) if task.task.spec.enabled => println!("Next run: {}.", rfc3339(*next)),
        _ => println!("It is disabled: it runs only by hand (`tether task run`)."),
    }
}

fn other(c: &ExecCounts) -> u32 {
    c.failed + c.timeout + c.offline + c.cancelled + c.error + c.interrupted + c.refused
}

fn run_summary(run: &TaskRun) -> String {
    format!(
        "#{} {} {} ({}/{} ok)",
        run.run,
        run.state,
        output::ago(Some(run.started_at_ms)),
        run.counts.ok,
        run.nodes
    )
}

fn print_task(view: &TaskView) {
    let task = &view.task;
    let spec = &task.spec;
    let d = |ms: u64| humantime::format_duration(Duration::from_millis(ms)).to_string();
    let mut rows = vec![
        ("name", spec.name.clone()),
        ("enabled", spec.enabled.to_string()),
        ("schedule", spec.cron.clone()),
        ("time zone", spec.timezone.clone()),
        ("targets", spec.targets.describe()),
        ("command", spec.command.summary()),
        ("timeout", d(spec.timeout_ms)),
        (
            "retries",
            if spec.retries == 0 {
                "0".into()
            } else {
                format!("{} after {}", spec.retries, d(spec.retry_interval_ms))
            },
        ),
        ("spread", d(spec.spread_ms)),
        ("catch-up", spec.catch_up.to_string()),
        ("description", spec.description.clone()),
        ("owner", task.updated_by.clone()),
        (
            "added",
            format!(
                "{} by {}",
                output::ago(Some(task.created_at_ms)),
                task.created_by
            ),
        ),
        (
            "changed",
            format!(
                "{} by {}",
                output::ago(Some(task.updated_at_ms)),
                task.updated_by
            ),
        ),
        (
            "last run",
            view.last.as_ref().map_or("never".into(), run_summary),
        ),
    ];
    for (i, next) in view.upcoming_ms.iter().enumerate() {
        rows.push((if i == 0 { "next runs" } else { "" }, rfc3339(*next)));
    }
    for (k, v) in rows {
        println!("{k:<12} {v}");
    }
}

fn print_runs(runs: &[RunView]) {
    for view in runs {
        let run = &view.run;
        let took = run
            .finished_at_ms
            .map(|end| {
                humantime::format_duration(Duration::from_millis(
                    u64::try_from(end - run.started_at_ms).unwrap_or(0),
                ))
                .to_string()
            })
            .unwrap_or_else(|| "-".into());
        println!(
            "run {}  {}  {}  started {} by {}  took {}  nodes {}  ok {}  not ok {}{}",
            run.run,
            run.state,
            run.trigger,
            rfc3339(run.started_at_ms),
            run.by,
            took,
            run.nodes,
            run.counts.ok,
            other(&run.counts),
            run.error
                .as_deref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        );
        for node in &view.nodes {
            if node.status == ExecStatus::Ok && view.nodes.len() > 20 {
                continue; // Large runs: only the nodes that need a look.
            }
            println!(
                "  {:<24} {:<11} exit {:<4} tries {}  exec {}{}",
                node.hostname,
                node.status.as_str(),
                node.exit_code.map_or("-".into(), |c| c.to_string()),
                node.tries,
                node.execution
                    .to_string()
                    .chars()
                    .take(8)
                    .collect::<String>(),
                node.error
                    .as_deref()
                    .map(|e| format!("  {e}"))
                    .unwrap_or_default()
            );
        }
    }
}

#[derive(Serialize)]
struct RunJson<'a> {
    run: u64,
    state: &'static str,
    trigger: &'static str,
    by: &'a str,
    due_at: Option<String>,
    started_at: String,
    finished_at: Option<String>,
    error: Option<&'a str>,
    executions: Vec<String>,
    nodes: u32,
    counts: &'a ExecCounts,
    results: Vec<NodeJson<'a>>,
}

#[derive(Serialize)]
struct NodeJson<'a> {
    node_id: String,
    hostname: &'a str,
    status: &'static str,
    exit_code: Option<i32>,
    error: Option<&'a str>,
    tries: u32,
    execution: String,
}

fn run_json(view: &RunView) -> RunJson<'_> {
    let run = &view.run;
    RunJson {
        run: run.run,
        state: run.state.as_str(),
        trigger: run.trigger.as_str(),
        by: &run.by,
        due_at: run.due_at_ms.map(rfc3339),
        started_at: rfc3339(run.started_at_ms),
        finished_at: run.finished_at_ms.map(rfc3339),
        error: run.error.as_deref(),
        executions: run.executions.iter().map(|e| e.to_string()).collect(),
        nodes: run.nodes,
        counts: &run.counts,
        results: view
            .nodes
            .iter()
            .map(|n| NodeJson {
                node_id: n.node_id.to_string(),
                hostname: &n.hostname,
                status: n.status.as_str(),
                exit_code: n.exit_code,
                error: n.error.as_deref(),
                tries: n.tries,
                execution: n.execution.to_string(),
            })
            .collect(),
    }
}

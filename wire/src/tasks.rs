//! Scheduled tasks (seed 002's `tasks` and `task_executions`): a command or a script, a cron
//! schedule in a time zone, and a selection of nodes. Each run is one or more executions (the
//! first, then one per retry of the nodes that failed), so a run's output, timeouts and history
//! are those of `tether exec`; each execution names the task and run it belongs to
//! ([`ExecOrigin`]).
//!
//! The schedule itself (cron expressions, time zones, next-run times) is core's business: this
//! module only carries the text and checks what it can without a cron parser.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::admin::{ExecCounts, ExecStatus};
use crate::bytes::ByteBuf;
use crate::ids::ExecutionId;

/// Tasks core keeps at most.
pub const MAX_TASKS: usize = 10_000;
/// A stored script's size at most, bytes (it travels in one control frame).
pub const MAX_SCRIPT_LEN: usize = 256 * 1024;
/// A description's length at most, bytes.
pub const MAX_DESCRIPTION: usize = 1024;
/// Retries at most.
pub const MAX_RETRIES: u32 = 10;
/// The longest timeout, retry interval or spread: a day, milliseconds.
pub const MAX_DURATION_MS: u64 = 24 * 3600 * 1000;
/// Default timeout (seed 002: 300 s), milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 300_000;
/// Default interval before a retry (seed 002: 60 s), milliseconds.
pub const DEFAULT_RETRY_INTERVAL_MS: u64 = 60_000;
/// Runs kept per task; older ones are deleted as new ones start.
pub const RUNS_KEPT: usize = 200;

/// Which nodes a task runs on: the union of all that is given, checked when each run starts
/// (a node enrolled since is included; a name that matches nothing fails that run).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TaskTargets {
    /// Node ids, unique id prefixes, or hostnames (globs allowed).
    pub nodes: Vec<String>,
    /// Every node carrying all of these labels.
    pub labels: Vec<(String, String)>,
    /// Every node in these groups or below them.
    pub groups: Vec<String>,
    /// Every node.
    pub all: bool,
}

impl TaskTargets {
    /// Whether nothing is selected.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.labels.is_empty() && self.groups.is_empty() && !self.all
    }

    /// The selection as it would be written on the command line.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.nodes.iter().map(|n| format!("--node {n}")).collect();
        parts.extend(self.labels.iter().map(|(k, v)| format!("--label {k}={v}")));
        parts.extend(self.groups.iter().map(|g| format!("--group {g}")));
        if self.all {
            parts.push("--all".into());
        }
        parts.join(" ")
    }
}

/// What a task runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskCommand {
    /// A program and its arguments, run directly (as `tether exec`).
    Command(Vec<String>),
    /// A script kept by core, sent to the node with each run and run there by its interpreter
    /// line (`#!/bin/sh`, `#!/usr/bin/env python3`).
    Script {
        /// The file's name when it was given (shown in listings and as the process's name).
        name: String,
        /// Its bytes.
        body: ByteBuf,
    },
}

impl TaskCommand {
    /// One line for listings: the command, or `script NAME (N bytes)`.
    pub fn summary(&self) -> String {
        match self {
            TaskCommand::Command(argv) => argv.join(" "),
            TaskCommand::Script { name, body } => format!("script {name} ({} bytes)", body.0.len()),
        }
    }

    /// Checks a script: not empty, within [`MAX_SCRIPT_LEN`], starting with an interpreter line.
    /// Commands are checked as `tether exec`'s are.
    pub fn check(&self) -> Result<(), String> {
        match self {
            TaskCommand::Command(argv) => crate::exec::check_command(argv, &[], None),
            TaskCommand::Script { name, body } => check_script(name, &body.0),
        }
    }
}

/// Checks a script: 1 to [`MAX_SCRIPT_LEN`] bytes, starting with `#!` and an absolute
/// interpreter path (the kernel runs it so, as cron and systemd do), and a usable name.
pub fn check_script(name: &str, body: &[u8]) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 || name.contains(['/', '\0']) {
        return Err(format!(
            "script name {name:?}: 1 to 255 bytes, no '/' (the file's own name)"
        ));
    }
    if body.is_empty() {
        return Err(format!("script {name:?} is empty"));
    }
    if body.len() > MAX_SCRIPT_LEN {
        return Err(format!(
            "script {name:?} is {} bytes; the limit is {MAX_SCRIPT_LEN}",
            body.len()
        ));
    }
    let first = body.split(|b| *b == b'\n').next().unwrap_or_default();
    let interpreter = first
        .strip_prefix(b"#!")
        .map(|rest| String::from_utf8_lossy(rest).trim().to_string());
    match interpreter {
        Some(line) if line.starts_with('/') => Ok(()),
        _ => Err(format!(
            "script {name:?} must start with an interpreter line such as '#!/bin/sh' (the node runs it with that program)"
        )),
    }
}

/// Whether missed runs are made up when core starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// One run at start if any were missed, however many (never a burst).
    #[default]
    One,
    /// None: the next run is the next due after start.
    None,
}

/// How a run started (seed 002's "triggered by").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Its time came.
    Schedule,
    /// Made up at start for runs missed while core was down.
    CatchUp,
    /// A user asked (`tether task run`, or the web UI's button).
    Manual,
}

/// What became of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Running, or waiting to retry.
    Running,
    /// Every node ended `ok`.
    Success,
    /// At least one node did not, after every retry; or the run could not start (`error`).
    Failed,
    /// Not run: the run before was still going when this one was due.
    Skipped,
    /// Cancelled before its end.
    Cancelled,
    /// Core stopped while it ran.
    Interrupted,
}

text_enum!(CatchUp "catch-up" { One = "one", None = "none" });
text_enum!(Trigger "trigger" { Schedule = "schedule", CatchUp = "catch-up", Manual = "manual" });
text_enum!(RunState "run state" { Running = "running", Success = "success", Failed = "failed", Skipped = "skipped", Cancelled = "cancelled", Interrupted = "interrupted" });

/// A task as an admin gives it (`tether task add`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Unique: 1 to 64 letters, digits, `-`, `_` or `.`.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Cron expression: five fields, an optional leading seconds field, or `@hourly`-style
    /// names.
    pub cron: String,
    /// IANA time zone the expression is read in (`Europe/Berlin`); `UTC` by default.
    pub timezone: String,
    /// Which nodes.
    pub targets: TaskTargets,
    /// What runs.
    pub command: TaskCommand,
    /// Kill after this long, milliseconds.
    pub timeout_ms: u64,
    /// Times a failed node is tried again.
    pub retries: u32,
    /// Wait before each retry, milliseconds.
    pub retry_interval_ms: u64,
    /// Scatter nodes' starts over this window, milliseconds (0: all at once).
    pub spread_ms: u64,
    /// Runs missed while core was down.
    pub catch_up: CatchUp,
    /// Whether it runs on schedule.
    pub enabled: bool,
}

impl TaskSpec {
    /// Checks everything but the cron expression, time zone and targets (core's to check).
    pub fn check(&self) -> Result<(), String> {
        crate::groups::check_name(&self.name).map_err(|e| format!("task name: {e}"))?;
        if self.description.len() > MAX_DESCRIPTION {
            return Err(format!(
                "the description is {} bytes; the limit is {MAX_DESCRIPTION}",
                self.description.len()
            ));
        }
        if self.targets.is_empty() {
            return Err("a task needs targets: --group, --label, --node or --all".into());
        }
        self.command.check()?;
        if self.timeout_ms == 0 || self.timeout_ms > MAX_DURATION_MS {
            return Err("the timeout must be between 1 ms and 24 h".into());
        }
        if self.retries > MAX_RETRIES {
            return Err(format!("at most {MAX_RETRIES} retries"));
        }
        if self.retry_interval_ms > MAX_DURATION_MS || self.spread_ms > MAX_DURATION_MS {
            return Err("the retry interval and the spread are at most 24 h".into());
        }
        Ok(())
    }
}

/// Changes to a task (`tether task edit`): what is given replaces what was.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TaskChanges {
    /// New description.
    pub description: Option<String>,
    /// New cron expression.
    pub cron: Option<String>,
    /// New time zone.
    pub timezone: Option<String>,
    /// New targets (all of them).
    pub targets: Option<TaskTargets>,
    /// New command or script.
    pub command: Option<TaskCommand>,
    /// New timeout.
    pub timeout_ms: Option<u64>,
    /// New retry count.
    pub retries: Option<u32>,
    /// New retry interval.
    pub retry_interval_ms: Option<u64>,
    /// New spread.
    pub spread_ms: Option<u64>,
    /// New catch-up.
    pub catch_up: Option<CatchUp>,
}

impl TaskChanges {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        *self == TaskChanges::default()
    }

    /// `spec` with these changes made.
    pub fn apply(self, mut spec: TaskSpec) -> TaskSpec {
        let TaskChanges {
            description,
            cron,
            timezone,
            targets,
            command,
            timeout_ms,
            retries,
            retry_interval_ms,
            spread_ms,
            catch_up,
        } = self;
        spec.description = description.unwrap_or(spec.description);
        spec.cron = cron.unwrap_or(spec.cron);
        spec.timezone = timezone.unwrap_or(spec.timezone);
        spec.targets = targets.unwrap_or(spec.targets);
        spec.command = command.unwrap_or(spec.command);
        spec.timeout_ms = timeout_ms.unwrap_or(spec.timeout_ms);
        spec.retries = retries.unwrap_or(spec.retries);
        spec.retry_interval_ms = retry_interval_ms.unwrap_or(spec.retry_interval_ms);
        spec.spread_ms = spread_ms.unwrap_or(spec.spread_ms);
        spec.catch_up = catch_up.unwrap_or(spec.catch_up);
        spec
    }
}

/// A task as core keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Core's number for it.
    pub id: u64,
    /// What the admin gave.
    pub spec: TaskSpec,
    /// Who added it.
    pub created_by: String,
    /// When, unix ms.
    pub created_at_ms: i64,
    /// Who added, changed, enabled or disabled it last: its owner. Runs go in this user's name,
    /// and fail while the user may not run commands.
    pub updated_by: String,
    /// When, unix ms.
    pub updated_at_ms: i64,
    /// When it is next due, unix ms; kept so a restart changes nothing. None while disabled.
    pub next_run_ms: Option<i64>,
    /// The last run's number (runs are numbered from 1).
    pub last_run: u64,
}

/// Which task run an execution belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOrigin {
    /// The task's name.
    pub task: String,
    /// The run's number.
    pub run: u64,
    /// 0 for the first try, then one per retry.
    pub attempt: u32,
    /// How the run started.
    pub trigger: Trigger,
}

impl fmt::Display for ExecOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {} run {} ({}", self.task, self.run, self.trigger)?;
        if self.attempt > 0 {
            write!(f, ", retry {}", self.attempt)?;
        }
        f.write_str(")")
    }
}

/// One run of a task as core keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRun {
    /// The task's number.
    pub task_id: u64,
    /// The run's number, from 1.
    pub run: u64,
    /// How it started.
    pub trigger: Trigger,
    /// Who started it: the user for `manual`, the task's owner otherwise.
    /// (Its executions go in the owner's name either way.)
    pub by: String,
    /// The time it was due, for scheduled runs, unix ms.
    pub due_at_ms: Option<i64>,
    /// When it started (or was skipped), unix ms.
    pub started_at_ms: i64,
    /// When it ended, unix ms.
    pub finished_at_ms: Option<i64>,
    /// What became of it.
    pub state: RunState,
    /// Why it failed to start, was skipped or cancelled.
    pub error: Option<String>,
    /// Its executions: the first try, then each retry.
    pub executions: Vec<ExecutionId>,
    /// Nodes selected.
    pub nodes: u32,
    /// Each node's final status, counted (a node retried counts once, as it ended).
    pub counts: ExecCounts,
}

/// A task as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// The task.
    pub task: Task,
    /// Its last run, if any.
    pub last: Option<TaskRun>,
    /// The next due times (up to five), unix ms; empty while disabled.
    pub upcoming_ms: Vec<i64>,
}

/// One node's result in a run: its status in the last execution that included it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunNodeResult {
    /// Node id.
    pub node_id: crate::NodeId,
    /// Hostname at the time.
    pub hostname: String,
    /// Its final status.
    pub status: ExecStatus,
    /// Exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Why, when not `ok`.
    pub error: Option<String>,
    /// Tries: 1, or more when retried.
    pub tries: u32,
    /// The execution of its last try (for `tether exec show`).
    pub execution: ExecutionId,
}

/// A run with each node's result (`tether task history`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunView {
    /// The run.
    pub run: TaskRun,
    /// Each node's result, by hostname.
    pub nodes: Vec<RunNodeResult>,
}

/// Joins `TaskRuns` frames into runs: core sends a large run's nodes over several frames, the
/// same run repeated in each.
pub fn join_runs(frames: impl IntoIterator<Item = RunView>) -> Vec<RunView> {
    let mut out: Vec<RunView> = Vec::new();
    for view in frames {
        match out.last_mut() {
            Some(last) if last.run.task_id == view.run.task_id && last.run.run == view.run.run => {
                last.nodes.extend(view.nodes);
            }
            _ => out.push(view),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TaskSpec {
        TaskSpec {
            name: "nightly".into(),
            description: String::new(),
            cron: "0 3 * * *".into(),
            timezone: "UTC".into(),
            targets: TaskTargets {
                all: true,
                ..Default::default()
            },
            command: TaskCommand::Command(vec!["/bin/true".into()]),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            retries: 0,
            retry_interval_ms: DEFAULT_RETRY_INTERVAL_MS,
            spread_ms: 0,
            catch_up: CatchUp::One,
            enabled: true,
        }
    }

    #[test]
    fn a_task_needs_targets_a_command_and_sane_numbers() {
        assert!(spec().check().is_ok());
        let no_targets = TaskSpec {
            targets: TaskTargets::default(),
            ..spec()
        };
        assert!(no_targets.check().unwrap_err().contains("targets"));
        let empty = TaskSpec {
            command: TaskCommand::Command(vec![]),
            ..spec()
        };
        assert!(empty.check().is_err());
        let retries = TaskSpec {
            retries: 11,
            ..spec()
        };
        assert!(retries.check().unwrap_err().contains("retries"));
        let bad_name = TaskSpec {
            name: "a b".into(),
            ..spec()
        };
        assert!(bad_name.check().unwrap_err().contains("task name"));
    }

    #[test]
    fn scripts_need_an_interpreter_line_and_a_bounded_size() {
        assert!(check_script("a.sh", b"#!/bin/sh\necho hi\n").is_ok());
        assert!(check_script("a.py", b"#! /usr/bin/env python3\n").is_ok());
        assert!(
            check_script("a.sh", b"echo hi\n")
                .unwrap_err()
                .contains("interpreter line")
        );
        assert!(check_script("a.sh", b"#!sh\n").is_err());
        assert!(check_script("a.sh", b"").unwrap_err().contains("empty"));
        let big = [b"#!/bin/sh\n".as_slice(), &vec![b'#'; MAX_SCRIPT_LEN]].concat();
        assert!(check_script("a.sh", &big).unwrap_err().contains("limit"));
        assert!(check_script("../a.sh", b"#!/bin/sh\n").is_err());
    }

    #[test]
    fn changes_replace_only_what_is_given() {
        let changed = TaskChanges {
            cron: Some("@hourly".into()),
            retries: Some(2),
            ..Default::default()
        }
        .apply(spec());
        assert_eq!(changed.cron, "@hourly");
        assert_eq!(changed.retries, 2);
        assert_eq!(changed.timezone, "UTC");
        assert!(TaskChanges::default().is_empty());
    }

    #[test]
    fn a_run_sent_in_parts_is_joined() {
        let run = |n: u64| TaskRun {
            task_id: 1,
            run: n,
            trigger: Trigger::Manual,
            by: "a".into(),
            due_at_ms: None,
            started_at_ms: 0,
            finished_at_ms: None,
            state: RunState::Success,
            error: None,
            executions: vec![],
            nodes: 3,
            counts: ExecCounts::default(),
        };
        let node = |h: &str| RunNodeResult {
            node_id: crate::NodeId::random(),
            hostname: h.into(),
            status: ExecStatus::Ok,
            exit_code: Some(0),
            error: None,
            tries: 1,
            execution: ExecutionId::random(),
        };
        let frames = vec![
            RunView {
                run: run(2),
                nodes: vec![node("a"), node("b")],
            },
            RunView {
                run: run(2),
                nodes: vec![node("c")],
            },
            RunView {
                run: run(1),
                nodes: vec![node("a")],
            },
        ];
        let joined = join_runs(frames);
        assert_eq!(joined.len(), 2);
        assert_eq!(joined[0].nodes.len(), 3);
        assert_eq!(joined[1].run.run, 1);
    }

    #[test]
    fn names_round_trip() {
        for t in [Trigger::Schedule, Trigger::CatchUp, Trigger::Manual] {
            assert_eq!(t.as_str().parse::<Trigger>().unwrap(), t);
        }
        assert_eq!(Trigger::CatchUp.to_string(), "catch-up");
        assert!(
            "sometimes"
                .parse::<CatchUp>()
                .unwrap_err()
                .contains("one, none")
        );
    }
}

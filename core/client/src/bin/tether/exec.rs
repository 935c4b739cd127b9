//! `tether exec`: run a command on one node or many, streaming output; and its history.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tether_client::AdminClient;
use tether_wire::admin::{
    AdminRequest, AdminResponse, ExecSpec, ExecStatus, ExecTarget, ExecutionView, NodeExecView,
    parse_label,
};
use tether_wire::exec::OutputStream;
use tether_wire::{ExecutionId, NodeId};

use crate::output::{self, print_json, rfc3339};

/// Run a command on nodes (`tether exec web-1 -- uptime`), or look at past runs.
///
/// The command runs directly, not through a shell: pass `sh -c '...'` for pipes and globs. Its
/// stdin is closed. With one node, output streams as is and `tether` exits with the remote exit
/// status, as `ssh host cmd` does: 128+N if signal N killed it, 127 if the command was not found,
/// 126 if it was found but could not be executed (or --cwd cannot be entered, or the node's own
/// policy refuses it: `[policy]` in its node.toml), 124 after
/// --timeout, 130 if cancelled, and 255 for Tether's own failures (core or node unreachable, the
/// node offline or unable to start anything). With several nodes, each line is prefixed with
/// the hostname, a summary follows on stderr, and the exit status is 1 if any node did not
/// succeed (255 if core could not be reached). Ctrl-C cancels everywhere.
///
/// With --json, output that is valid UTF-8 is given as text (`stdout`, `stderr`); output that
/// is not is also given exactly, base64-encoded (`stdout_base64`, `stderr_base64`).
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ExecArgs {
    #[command(subcommand)]
    stored: Option<StoredCommand>,
    /// Node ids, unique id prefixes, exact hostnames, or hostname patterns (quote them:
    /// 'web-*'). A name that fits several nodes is refused, listing them.
    #[arg(value_name = "TARGET")]
    targets: Vec<String>,
    /// Also every node with this label (repeat: all must match).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Also every node in this group or a group below it (repeat for several).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// Also every node.
    #[arg(long)]
    all: bool,
    /// Kill the command's process group after this long (SIGTERM, then SIGKILL), e.g. 30s.
    #[arg(long, value_parser = tether_wire::units::parse_duration, value_name = "DURATION")]
    timeout: Option<Duration>,
    /// Nodes running the command at once.
    #[arg(long, default_value_t = 2048, value_name = "N")]
    concurrency: u32,
    /// Print one JSON array (per node: execution id, status, exit code, stdout, stderr, times)
    /// at the end.
    #[arg(long)]
    json: bool,
    /// Environment variable for the command (repeat).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Working directory on the node.
    #[arg(long, value_name = "DIR")]
    cwd: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
enum StoredCommand {
    /// Past executions, newest first.
    History {
        /// Only executions on this node (id, unique id prefix, or exact hostname).
        #[arg(long)]
        node: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One execution: who, what, when, and each node's result and kept output.
    Show {
        /// Execution id or unique prefix.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl ExecArgs {
    /// Runs a command (rather than looking at history): exits like `ssh host cmd`.
    pub fn runs_a_command(&self) -> bool {
        self.stored.is_none()
    }
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("{text:?} has an empty name"));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Exit status for `tether` after an execution.
pub async fn run(client: &AdminClient, args: ExecArgs) -> anyhow::Result<u8> {
    match args.stored {
        Some(StoredCommand::History { node, limit, json }) => {
            history(client, node, limit, json).await.map(|()| 0)
        }
        Some(StoredCommand::Show { id, json }) => show(client, id, json).await.map(|()| 0),
        None => execute(client, args).await,
    }
}

struct NodeState {
    hostname: String,
    partial: [Vec<u8>; 2],
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    result: Option<NodeExecView>,
}

async fn execute(client: &AdminClient, args: ExecArgs) -> anyhow::Result<u8> {
    let spec = ExecSpec {
        targets: args.targets,
        labels: args.labels,
        groups: args.groups,
        all: args.all,
        command: args.command,
        env: args.env,
        cwd: args.cwd,
        timeout_ms: args.timeout.map(tether_wire::units::duration_ms),
        concurrency: args.concurrency,
    };
    let mut session = client.exec(spec).await?;
    let (exec_id, targets) = match session.next().await? {
        Some(AdminResponse::ExecStarted { exec_id, nodes }) => (exec_id, nodes),
        other => bail!("core answered {other:?} instead of starting the execution"),
    };
    let single = targets.len() == 1;
    let width = targets
        .iter()
        .map(|t| t.hostname.chars().count())
        .max()
        .unwrap_or(0)
        .min(32);
    let mut nodes: HashMap<NodeId, NodeState> = targets
        .iter()
        .map(|ExecTarget { node_id, hostname }| {
            let state = NodeState {
                hostname: hostname.clone(),
                partial: [Vec::new(), Vec::new()],
                stdout: Vec::new(),
                stderr: Vec::new(),
                result: None,
            };
            (*node_id, state)
        })
        .collect();
    let bar = (!args.json && !single && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(targets.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {pos}/{len} nodes done [{elapsed}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    if !single && !args.json {
        eprintln!("execution {exec_id} on {} nodes", targets.len());
    }

    let mut cancelled_by_user = false;
    let mut finished: Option<ExecutionView> = None;
    loop {
        let answer = tokio::select! {
            answer = session.next() => answer?,
            _ = tokio::signal::ctrl_c() => {
                if cancelled_by_user {
                    eprintln!("tether: stopped waiting; the execution may still be cancelling");
                    return Ok(130);
                }
                cancelled_by_user = true;
                eprintln!("tether: cancelling on every node… (Ctrl-C again to stop waiting)");
                session.cancel().await?;
                continue;
            }
        };
        let Some(answer) = answer else { break };
        match answer {
            AdminResponse::ExecOutput {
                node_id,
                stream,
                data,
            } => {
                let Some(node) = nodes.get_mut(&node_id) else {
                    continue;
                };
                if args.json {
                    match stream {
                        OutputStream::Stdout => node.stdout.extend_from_slice(&data.0),
                        OutputStream::Stderr => node.stderr.extend_from_slice(&data.0),
                    }
                } else if single {
                    write_raw(stream, &data.0)?;
                } else {
                    let lines = take_lines(&mut node.partial[stream_index(stream)], &data.0);
                    write_prefixed(bar.as_ref(), stream, &node.hostname, width, &lines)?;
                }
            }
            AdminResponse::ExecNodeDone(view) => {
                if let Some(node) = nodes.get_mut(&view.node_id) {
                    if !args.json && !single {
                        for stream in [OutputStream::Stdout, OutputStream::Stderr] {
                            let rest = std::mem::take(&mut node.partial[stream_index(stream)]);
                            if !rest.is_empty() {
                                write_prefixed(
                                    bar.as_ref(),
                                    stream,
                                    &node.hostname,
                                    width,
                                    &[rest],
                                )?;
                            }
                        }
                    }
                    node.result = Some(view);
                }
                if let Some(bar) = &bar {
                    bar.inc(1);
                }
            }
            AdminResponse::ExecFinished(view) => finished = Some(view),
            _ => {}
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let results: Vec<(&ExecTarget, &NodeState)> = targets
        .iter()
        .filter_map(|t| nodes.get(&t.node_id).map(|n| (t, n)))
        .collect();
    if results.iter().any(|(_, n)| n.result.is_none()) && finished.is_none() {
        bail!(
            "the connection to core ended before every node reported; see `tether exec show {exec_id}`"
        );
    }
    if args.json {
        print_json(
            &results
                .iter()
                .map(|(t, n)| node_result_json(exec_id, t, n))
                .collect::<Vec<_>>(),
        )?;
    } else if !single {
        summary(&results);
    }
    if cancelled_by_user {
        return Ok(130);
    }
    if single {
        let result = results.first().and_then(|(_, n)| n.result.as_ref());
        return Ok(match result {
            Some(view) => single_exit_code(view, args.json),
            None => 255,
        });
    }
    let all_ok = results.iter().all(|(_, n)| {
        n.result
            .as_ref()
            .is_some_and(|r| r.status == ExecStatus::Ok)
    });
    Ok(if all_ok { 0 } else { 1 })
}

fn stream_index(stream: OutputStream) -> usize {
    match stream {
        OutputStream::Stdout => 0,
        OutputStream::Stderr => 1,
    }
}

fn write_raw(stream: OutputStream, data: &[u8]) -> anyhow::Result<()> {
    match stream {
        OutputStream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(data)?;
            out.flush()?;
        }
        OutputStream::Stderr => {
            let mut err = std::io::stderr().lock();
            err.write_all(data)?;
            err.flush()?;
        }
    }
    Ok(())
}

/// Appends `data` to `partial` and returns the complete lines (without their newline).
fn take_lines(partial: &mut Vec<u8>, data: &[u8]) -> Vec<Vec<u8>> {
    partial.extend_from_slice(data);
    let mut lines = Vec::new();
    while let Some(end) = partial.iter().position(|b| *b == b'\n') {
        let mut line: Vec<u8> = partial.drain(..=end).collect();
        line.pop();
        lines.push(line);
    }
    // A runaway line without newlines is shown in pieces rather than held forever.
    if partial.len() > 64 * 1024 {
        lines.push(std::mem::take(partial));
    }
    lines
}

fn write_prefixed(
    bar: Option<&ProgressBar>,
    stream: OutputStream,
    hostname: &str,
    width: usize,
    lines: &[Vec<u8>],
) -> anyhow::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut text = Vec::new();
    for line in lines {
        write!(text, "{hostname:<width$}: ")?;
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    let write = || write_raw(stream, &text);
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

fn single_exit_code(view: &NodeExecView, json: bool) -> u8 {
    if !json && view.status != ExecStatus::Ok {
        match (&view.error, view.status) {
            (Some(why), ExecStatus::Failed) => eprintln!("tether: {}: {why}", view.hostname),
            (why, ExecStatus::Failed) => debug_assert!(why.is_none()),
            (why, status) => eprintln!(
                "tether: {status} on {}: {}",
                view.hostname,
                why.as_deref().unwrap_or("")
            ),
        }
    }
    match view.status {
        ExecStatus::Ok => 0,
        ExecStatus::Failed => match (view.exit_code, view.signal) {
            (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
            (None, Some(signal)) => u8::try_from(128 + (signal & 0x7f)).unwrap_or(1),
            _ => 1,
        },
        ExecStatus::Timeout => 124,
        ExecStatus::Cancelled => 130,
        // Not allowed to execute, as a shell says of a file it may not run.
        ExecStatus::Refused => 126,
        _ => 255,
    }
}

fn describe(view: &NodeExecView) -> String {
    match (view.status, view.exit_code, view.signal) {
        (ExecStatus::Failed, Some(code), _) => match &view.error {
            Some(why) => format!("{}: exit {code} ({why})", view.hostname),
            None => format!("{}: exit {code}", view.hostname),
        },
        (ExecStatus::Failed, None, Some(signal)) => format!("{}: signal {signal}", view.hostname),
        _ => match &view.error {
            Some(error) => format!("{}: {}", view.hostname, error.lines().next().unwrap_or("")),
            None => view.hostname.clone(),
        },
    }
}

fn summary(results: &[(&ExecTarget, &NodeState)]) {
    let mut groups: Vec<(ExecStatus, Vec<String>)> = Vec::new();
    for (_, node) in results {
        let Some(view) = &node.result else { continue };
        match groups.iter_mut().find(|(status, _)| *status == view.status) {
            Some((_, names)) => names.push(describe(view)),
            None => groups.push((view.status, vec![describe(view)])),
        }
    }
    groups.sort_by_key(|(status, _)| *status as u8);
    for (_, names) in &mut groups {
        names.sort();
    }
    let mut parts = Vec::new();
    for (status, names) in &groups {
        let label = match status {
            ExecStatus::Timeout => "timed out".to_string(),
            ExecStatus::Cancelled => "not reached or cancelled".to_string(),
            other => other.to_string(),
        };
        if *status == ExecStatus::Ok {
            parts.push(format!("{} {label}", names.len()));
        } else {
            let shown: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
            let more = if names.len() > 8 {
                format!(", and {} more", names.len() - 8)
            } else {
                String::new()
            };
            parts.push(format!(
                "{} {label} ({}{more})",
                names.len(),
                shown.join("; ")
            ));
        }
    }
    eprintln!("{} nodes: {}", results.len(), parts.join(", "));
}

#[derive(Serialize)]
struct NodeResultJson<'a> {
    /// The execution, for `tether exec show`.
    exec_id: String,
    node_id: String,
    hostname: &'a str,
    status: &'static str,
    exit_code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    /// Present when stdout is not valid UTF-8: its exact bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    stdout_base64: Option<String>,
    stderr: String,
    /// Present when stderr is not valid UTF-8: its exact bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    stderr_base64: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
    duration_ms: Option<i64>,
    error: Option<&'a str>,
}

fn node_result_json<'a>(
    exec_id: ExecutionId,
    target: &'a ExecTarget,
    node: &'a NodeState,
) -> NodeResultJson<'a> {
    let view = node.result.as_ref();
    let (stdout, stderr) = match view {
        Some(NodeExecView {
            stdout: Some(out),
            stderr: Some(err),
            ..
        }) => (&out.0[..], &err.0[..]),
        _ => (&node.stdout[..], &node.stderr[..]),
    };
    let (stdout, stdout_base64) = output::text_and_base64(stdout);
    let (stderr, stderr_base64) = output::text_and_base64(stderr);
    NodeResultJson {
        exec_id: exec_id.to_string(),
        node_id: target.node_id.to_string(),
        hostname: &target.hostname,
        status: view.map_or("error", |v| v.status.as_str()),
        exit_code: view.and_then(|v| v.exit_code),
        signal: view.and_then(|v| v.signal),
        stdout,
        stdout_base64,
        stderr,
        stderr_base64,
        started_at: view.and_then(|v| v.started_at_ms).map(rfc3339),
        finished_at: view.and_then(|v| v.finished_at_ms).map(rfc3339),
        duration_ms: view.and_then(|v| Some(v.finished_at_ms? - v.started_at_ms?)),
        error: view.and_then(|v| v.error.as_deref()),
    }
}

#[derive(Serialize)]
struct ExecutionJson<'a> {
    id: String,
    admin: &'a str,
    command: &'a [String],
    env_keys: &'a [String],
    cwd: Option<&'a str>,
    timeout_ms: Option<u64>,
    selector: &'a str,
    created_at: String,
    finished_at: Option<String>,
    state: &'static str,
    nodes: u32,
    counts: &'a tether_wire::admin::ExecCounts,
    /// When the kept output was deleted to stay within exec_output_max_total.
    output_pruned_at: Option<String>,
    /// The scheduled task run it belongs to: task, run, attempt, trigger.
    task: Option<&'a tether_wire::tasks::ExecOrigin>,
}

fn execution_json(view: &ExecutionView) -> ExecutionJson<'_> {
    ExecutionJson {
        id: view.id.to_string(),
        admin: &view.admin,
        command: &view.command,
        env_keys: &view.env_keys,
        cwd: view.cwd.as_deref(),
        timeout_ms: view.timeout_ms,
        selector: &view.selector,
        created_at: rfc3339(view.created_at_ms),
        finished_at: view.finished_at_ms.map(rfc3339),
        state: view.state.as_str(),
        nodes: view.nodes,
        counts: &view.counts,
        output_pruned_at: view.output_pruned_at_ms.map(rfc3339),
        task: view.origin.as_ref(),
    }
}

/// Who ran it: the admin, and the task run when a task did.
pub fn ran_by(view: &ExecutionView) -> String {
    match &view.origin {
        Some(origin) => format!("{} ({origin})", view.admin),
        None => view.admin.clone(),
    }
}

fn command_text(command: &[String]) -> String {
    command
        .iter()
        .map(|arg| {
            if !arg.is_empty()
                && arg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
            {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn history(
    client: &AdminClient,
    node: Option<String>,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    let mut executions = Vec::new();
    for response in client
        .request(&AdminRequest::ExecHistory { node, limit })
        .await?
    {
        if let AdminResponse::Executions(chunk) = response {
            executions.extend(chunk);
        }
    }
    if json {
        return print_json(&executions.iter().map(execution_json).collect::<Vec<_>>());
    }
    if executions.is_empty() {
        eprintln!("no executions");
        return Ok(());
    }
    let rows = executions
        .iter()
        .map(|e| {
            let c = e.counts;
            let other = c.timeout
                + c.offline
                + c.cancelled
                + c.error
                + c.interrupted
                + c.unfinished
                + c.refused;
            vec![
                e.id.to_string().chars().take(8).collect(),
                output::ago(Some(e.created_at_ms)),
                ran_by(e),
                e.state.to_string(),
                e.nodes.to_string(),
                c.ok.to_string(),
                c.failed.to_string(),
                other.to_string(),
                command_text(&e.command),
            ]
        })
        .collect();
    output::table(
        &[
            "ID", "STARTED", "ADMIN", "STATE", "NODES", "OK", "FAILED", "OTHER", "COMMAND",
        ],
        rows,
    )
}

async fn show(client: &AdminClient, id: String, json: bool) -> anyhow::Result<()> {
    let mut execution = None;
    let mut nodes = Vec::new();
    for response in client.request(&AdminRequest::ShowExec { id }).await? {
        if let AdminResponse::Execution(detail) = response {
            execution = Some(detail.execution);
            nodes.extend(detail.nodes);
        }
    }
    let execution = execution.context("core sent no execution")?;
    if json {
        #[derive(Serialize)]
        struct Detail<'a> {
            #[serde(flatten)]
            execution: ExecutionJson<'a>,
            results: Vec<serde_json::Value>,
        }
        let results = nodes
            .iter()
            .map(|n| {
                let target = ExecTarget {
                    node_id: n.node_id,
                    hostname: n.hostname.clone(),
                };
                let state = NodeState {
                    hostname: n.hostname.clone(),
                    partial: Default::default(),
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    result: Some(n.clone()),
                };
                let mut value =
                    serde_json::to_value(node_result_json(execution.id, &target, &state))
                        .unwrap_or_default();
                value["truncated"] = serde_json::Value::Bool(n.truncated);
                value["stdout_bytes"] = n.stdout_bytes.into();
                value["stderr_bytes"] = n.stderr_bytes.into();
                value
            })
            .collect();
        return print_json(&Detail {
            execution: execution_json(&execution),
            results,
        });
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "execution:  {}", execution.id)?;
    writeln!(out, "command:    {}", command_text(&execution.command))?;
    writeln!(out, "by:         {}", ran_by(&execution))?;
    writeln!(out, "selection:  {}", execution.selector)?;
    writeln!(out, "started:    {}", rfc3339(execution.created_at_ms))?;
    if let Some(finished) = execution.finished_at_ms {
        writeln!(
            out,
            "ended:      {} ({})",
            rfc3339(finished),
            execution.state
        )?;
    } else {
        writeln!(out, "state:      {}", execution.state)?;
    }
    if let Some(at) = execution.output_pruned_at_ms {
        writeln!(
            out,
            "output:     deleted {} to keep all kept output within core's exec_output_max_total",
            rfc3339(at)
        )?;
    }
    if !execution.env_keys.is_empty() {
        writeln!(
            out,
            "env:        {} (values not stored)",
            execution.env_keys.join(", ")
        )?;
    }
    for node in &nodes {
        let duration = match (node.started_at_ms, node.finished_at_ms) {
            (Some(start), Some(end)) => format!(" in {:.1}s", (end - start) as f64 / 1000.0),
            _ => String::new(),
        };
        let code = match (node.exit_code, node.signal) {
            (Some(code), _) => format!(" exit {code}"),
            (None, Some(signal)) => format!(" signal {signal}"),
            _ => String::new(),
        };
        writeln!(
            out,
            "\n== {} ({}) {}{code}{duration}",
            node.hostname,
            &node.node_id.to_string()[..8],
            node.status
        )?;
        if let Some(error) = &node.error {
            writeln!(out, "   {error}")?;
        }
        for (name, kept, total) in [
            ("stdout", &node.stdout, node.stdout_bytes),
            ("stderr", &node.stderr, node.stderr_bytes),
        ] {
            let Some(kept) = kept else { continue };
            if kept.0.is_empty() {
                continue;
            }
            writeln!(
                out,
                "-- {name} ({total} bytes{})",
                if node.truncated && (kept.0.len() as u64) < total {
                    ", only the first part kept"
                } else {
                    ""
                }
            )?;
            out.write_all(&kept.0)?;
            if !kept.0.ends_with(b"\n") {
                writeln!(out)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_partials_kept() {
        let mut partial = Vec::new();
        assert_eq!(take_lines(&mut partial, b"a\nb"), vec![b"a".to_vec()]);
        assert_eq!(
            take_lines(&mut partial, b"c\n\nd"),
            vec![b"bc".to_vec(), Vec::new()]
        );
        assert_eq!(partial, b"d");
    }

    #[test]
    fn commands_are_quoted_for_display() {
        let command: Vec<String> = ["sh", "-c", "echo 'hi' | wc -l"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(command_text(&command), r"sh -c 'echo '\''hi'\'' | wc -l'");
    }
}

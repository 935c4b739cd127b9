//! Scheduled tasks: what the tasks pages show and change, and the preview of a cron
//! expression's next run times for the form. Core decides who may (`tasks.view`,
//! `tasks.create`, `tasks.execute`, `tasks.delete`), checks every field and audits each request.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::bytes::ByteBuf;
use tether_wire::tasks::{
    CatchUp, DEFAULT_RETRY_INTERVAL_MS, DEFAULT_TIMEOUT_MS, TaskCommand, TaskSpec, TaskTargets,
    TaskView,
};

use super::{ApiError, AppState, Enabled, QueryOf, User, first, gather, json_body, ok};

/// Runs per history answer unless asked otherwise, and at most.
const DEFAULT_RUNS: u32 = 20;
const MAX_RUNS: u32 = 200;

/// `GET /api/v1/tasks`: every task with its next run times and last run.
pub(crate) async fn list(State(state): State<AppState>, user: User) -> Result<Response, ApiError> {
    let answer = state.ask(&user, &AdminRequest::TaskList).await?;
    Ok(ok(gather(answer, |r| match r {
        AdminResponse::Tasks(tasks) => Some(tasks),
        _ => None,
    })?))
}

fn one(answer: Vec<AdminResponse>) -> Result<TaskView, ApiError> {
    first(answer, |r| match r {
        AdminResponse::Task(task) => Some(task),
        _ => None,
    })
}

/// `POST /api/v1/tasks`'s body: the CLI's flags as fields, durations in seconds. The command
/// is a shell command line (`command`, run with `/bin/sh -c`), a program and its arguments
/// (`argv`), or a script (`script`, starting with an interpreter line; `script_name` names it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTask {
    name: String,
    cron: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    argv: Option<Vec<String>>,
    #[serde(default)]
    script: Option<String>,
    #[serde(default)]
    script_name: Option<String>,
    #[serde(default)]
    nodes: Vec<String>,
    #[serde(default)]
    labels: Vec<(String, String)>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    timeout_s: Option<u64>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    retry_interval_s: Option<u64>,
    #[serde(default)]
    spread_s: Option<u64>,
    /// `one` (default) or `none`.
    #[serde(default)]
    catch_up: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// The non-empty items, trimmed (comma-separated form fields).
pub(crate) fn trimmed(items: Vec<String>) -> Vec<String> {
    items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

impl NewTask {
    fn spec(self) -> Result<TaskSpec, ApiError> {
        let command = match (self.command, self.argv, self.script) {
            // An absolute shell: a node's allow-list names programs by path.
            (Some(line), None, None) if !line.trim().is_empty() => {
                TaskCommand::Command(vec!["/bin/sh".into(), "-c".into(), line])
            }
            (None, Some(argv), None) if !argv.is_empty() => TaskCommand::Command(argv),
            (None, None, Some(script)) if !script.is_empty() => TaskCommand::Script {
                name: self
                    .script_name
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or_else(|| "script".into()),
                body: ByteBuf(script.into_bytes()),
            },
            _ => {
                return Err(ApiError::bad_request(
                    "give one of: \"command\" (a shell command line), \"argv\" (a program and \
                     its arguments) or \"script\" (starting with an interpreter line)",
                ));
            }
        };
        let catch_up: CatchUp = self
            .catch_up
            .as_deref()
            .unwrap_or("one")
            .parse()
            .map_err(ApiError::bad_request)?;
        let seconds = |s: u64| s.saturating_mul(1000);
        Ok(TaskSpec {
            name: self.name.trim().to_string(),
            description: self.description.unwrap_or_default(),
            cron: self.cron.trim().to_string(),
            timezone: self
                .timezone
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "UTC".into()),
            targets: TaskTargets {
                nodes: trimmed(self.nodes),
                labels: self.labels,
                groups: trimmed(self.groups),
                all: self.all,
            },
            command,
            timeout_ms: self.timeout_s.map_or(DEFAULT_TIMEOUT_MS, seconds),
            retries: self.retries.unwrap_or(0),
            retry_interval_ms: self
                .retry_interval_s
                .map_or(DEFAULT_RETRY_INTERVAL_MS, seconds),
            spread_ms: self.spread_s.map_or(0, seconds),
            catch_up,
            enabled: self.enabled.unwrap_or(true),
        })
    }
}

/// `POST /api/v1/tasks`.
pub(crate) async fn add(
    State(state): State<AppState>,
    user: User,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let spec = json_body::<NewTask>(body)?.spec()?;
    spec.check().map_err(ApiError::bad_request)?;
    Ok(ok(one(state
        .ask(&user, &AdminRequest::TaskAdd(spec))
        .await?)?))
}

/// `GET /api/v1/tasks/{name}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    user: User,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(ok(one(state
        .ask(&user, &AdminRequest::TaskShow { name })
        .await?)?))
}

/// `DELETE /api/v1/tasks/{name}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    user: User,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(ok(one(state
        .ask(&user, &AdminRequest::TaskDelete { name })
        .await?)?))
}

/// `POST /api/v1/tasks/{name}/enabled`.
pub(crate) async fn enable(
    State(state): State<AppState>,
    user: User,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Enabled { enabled } = json_body(body)?;
    let request = AdminRequest::TaskEnable { name, enabled };
    Ok(ok(one(state.ask(&user, &request).await?)?))
}

/// `POST /api/v1/tasks/{name}/run`: a run now, by hand; answers the run as started.
pub(crate) async fn run(
    State(state): State<AppState>,
    user: User,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let answer = state.ask(&user, &AdminRequest::TaskRun { name }).await?;
    Ok(ok(first(answer, |r| match r {
        AdminResponse::TaskRun(run) => Some(run),
        _ => None,
    })?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryParams {
    #[serde(default)]
    limit: Option<u32>,
    /// Only this run.
    #[serde(default)]
    run: Option<u64>,
}

/// `GET /api/v1/tasks/{name}/runs?limit=N`: newest first, with each node's result.
pub(crate) async fn runs(
    State(state): State<AppState>,
    user: User,
    Path(name): Path<String>,
    QueryOf(params): QueryOf<HistoryParams>,
) -> Result<Response, ApiError> {
    let limit = super::limit(params.limit, DEFAULT_RUNS, MAX_RUNS)?;
    let request = AdminRequest::TaskHistory {
        name,
        limit,
        run: params.run,
    };
    let answer = state.ask(&user, &request).await?;
    let frames = gather(answer, |r| match r {
        AdminResponse::TaskRuns(runs) => Some(runs),
        _ => None,
    })?;
    Ok(ok(tether_wire::tasks::join_runs(frames)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreviewParams {
    cron: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    count: Option<u32>,
}

/// `GET /api/v1/cron-preview?cron=EXPR&timezone=TZ&count=N`: the next run times as core
/// reads the expression, or a 400 saying what is wrong with it.
pub(crate) async fn preview(
    State(state): State<AppState>,
    user: User,
    QueryOf(params): QueryOf<PreviewParams>,
) -> Result<Response, ApiError> {
    let request = AdminRequest::CronPreview {
        cron: params.cron,
        timezone: params
            .timezone
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| "UTC".into()),
        count: params.count.unwrap_or(5),
    };
    let answer = state.ask(&user, &request).await?;
    Ok(ok(first(answer, |r| match r {
        AdminResponse::CronTimes {
            cron,
            timezone,
            times_ms,
        } => Some(serde_json::json!({"cron": cron, "timezone": timezone, "times_ms": times_ms})),
        _ => None,
    })?))
}

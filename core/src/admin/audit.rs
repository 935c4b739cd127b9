//! The audit log: one record per admin request, allowed or refused, written through the store's
//! batching writer before the answer is finished; and the `audit` requests that read and
//! verify it.
//!
//! A record names the request, the resource it acts on and its parameters; never a password, a
//! token, a key or an environment variable's value ([`describe`] decides, request by request).

use std::sync::Arc;

use tether_store::AuditFilter;
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminRequest, AdminResponse, Role};
use tether_wire::users::{AuditEntry, AuditQuery, AuditResult, AuditView};
use tracing::error;

use super::{Refusal, Reply, chunks, internal};
use crate::auth::Caller;
use crate::server::Shared;

/// How a request ended, for its record.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome<'a> {
    /// Done (or started, for requests that take a stream).
    Ok,
    /// Refused before any handler ran.
    Denied(&'a Refusal),
    /// Refused or failed in its handler.
    Failed(&'a Refusal),
}

/// The resource a request acts on and its parameters.
/// A node page's query as audit details (only what narrows it).
fn query_details(query: &tether_wire::fleet::NodeQuery) -> Vec<(String, String)> {
    let mut details = Vec::new();
    if !query.search.is_empty() {
        details.push(("search".to_string(), query.search.clone()));
    }
    if let Some(status) = query.status {
        details.push(("status".to_string(), status.to_string()));
    }
    if !query.labels.is_empty() {
        let labels: Vec<String> = query
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        details.push(("labels".to_string(), labels.join(",")));
    }
    details.push(("sort".to_string(), query.sort.as_str().to_string()));
    details.push((
        "page".to_string(),
        format!("{}+{}", query.offset, query.limit),
    ));
    details
}

fn describe(request: &AdminRequest) -> (&'static str, Option<String>, Vec<(String, String)>) {
    let d = |k: &str, v: String| (k.to_string(), v);
    let list = |items: &[String]| items.join(",");
    let labels = |items: &[(String, String)]| {
        items
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    match request {
        AdminRequest::Ping | AdminRequest::Status => ("core", None, vec![]),
        AdminRequest::Backup { recordings } => {
            ("core", None, vec![d("recordings", recordings.to_string())])
        }
        AdminRequest::ListApplications { status, limit } => (
            "application",
            None,
            status
                .iter()
                .map(|s| d("status", s.to_string()))
                .chain(limit.iter().map(|n| d("limit", n.to_string())))
                .collect(),
        ),
        AdminRequest::ApproveApplication { id } => ("application", Some(id.clone()), vec![]),
        AdminRequest::RejectApplication { id, reason } => (
            "application",
            Some(id.clone()),
            vec![d("reason", reason.clone())],
        ),
        AdminRequest::ListNodes {
            status,
            labels: wanted,
            group,
            include_deleted,
        } => {
            let mut details: Vec<_> = status.iter().map(|s| d("status", s.to_string())).collect();
            if !wanted.is_empty() {
                details.push(d("labels", labels(wanted)));
            }
            if let Some(group) = group {
                details.push(d("group", group.clone()));
            }
            if *include_deleted {
                details.push(d("include_deleted", "true".into()));
            }
            ("node", None, details)
        }
        AdminRequest::NodePage(query) => ("node", None, query_details(query)),
        AdminRequest::Overview => ("node", None, vec![]),
        AdminRequest::NodeMetrics(query) => {
            let mut details = vec![d("range_ms", query.range_ms.to_string())];
            if let Some(step) = query.step_ms {
                details.push(d("step_ms", step.to_string()));
            }
            if !query.metrics.is_empty() {
                let names: Vec<&str> = query.metrics.iter().map(|m| m.as_str()).collect();
                details.push(d("metrics", names.join(",")));
            }
            ("node", Some(query.node.clone()), details)
        }
        AdminRequest::FleetMetrics(query) => {
            let mut details = vec![d("range_ms", query.range_ms.to_string())];
            if let Some(step) = query.step_ms {
                details.push(d("step_ms", step.to_string()));
            }
            ("node", None, details)
        }
        AdminRequest::Watch(spec) => {
            let mut details = vec![d("interval_ms", spec.interval_ms.to_string())];
            if spec.overview {
                details.push(d("overview", "true".into()));
            }
            if let Some(query) = &spec.nodes {
                details.extend(query_details(query));
            }
            ("node", spec.node.clone(), details)
        }
        AdminRequest::ShowNode { id } | AdminRequest::DeleteNode { id } => {
            ("node", Some(id.clone()), vec![])
        }
        AdminRequest::LabelNode { id, set, remove } => (
            "node",
            Some(id.clone()),
            vec![d("set", labels(set)), d("remove", list(remove))],
        ),
        AdminRequest::SetMaintenance { id, on } => (
            "node",
            Some(id.clone()),
            vec![d("maintenance", on.to_string())],
        ),
        AdminRequest::SetAllowedUsers { id, add, remove } => (
            "node",
            Some(id.clone()),
            vec![d("add", list(add)), d("remove", list(remove))],
        ),
        AdminRequest::Exec(spec) => {
            let mut details = vec![d("command", spec.command.join(" "))];
            if !spec.targets.is_empty() {
                details.push(d("targets", list(&spec.targets)));
            }
            if !spec.labels.is_empty() {
                details.push(d("labels", labels(&spec.labels)));
            }
            if !spec.groups.is_empty() {
                details.push(d("groups", list(&spec.groups)));
            }
            if spec.all {
                details.push(d("all", "true".into()));
            }
            if let Some(cwd) = &spec.cwd {
                details.push(d("cwd", cwd.clone()));
            }
            if let Some(ms) = spec.timeout_ms {
                details.push(d("timeout_ms", ms.to_string()));
            }
            if !spec.env.is_empty() {
                // Names only: values may be secrets.
                let names: Vec<String> = spec.env.iter().map(|(k, _)| k.clone()).collect();
                details.push(d("env", list(&names)));
            }
            ("exec", None, details)
        }
        AdminRequest::CancelExec => ("exec", None, vec![]),
        AdminRequest::ExecHistory { node, limit } => {
            ("exec", None, node_and_limit(node.as_deref(), *limit))
        }
        AdminRequest::ShowExec { id } => ("exec", Some(id.clone()), vec![]),
        AdminRequest::AuthorizeTty(ask) => {
            let mut details = Vec::new();
            if let Some(command) = &ask.command {
                details.push(d("command", command.clone()));
            }
            if let Some(record) = ask.record {
                details.push(d("record", record.to_string()));
            }
            ("node", Some(ask.node.clone()), details)
        }
        // Never the token.
        AdminRequest::OpenTty { .. } => ("tty", None, vec![]),
        AdminRequest::ListTty {
            active,
            node,
            limit,
        } => {
            let mut details = node_and_limit(node.as_deref(), *limit);
            if *active {
                details.push(d("active", "true".into()));
            }
            ("tty", None, details)
        }
        AdminRequest::KillTty { id }
        | AdminRequest::ShowTty { id }
        | AdminRequest::TtyRecording { id } => ("tty", Some(id.clone()), vec![]),
        AdminRequest::UserAdd(new) => {
            let mut details = vec![d("role", new.role.to_string())];
            if let Some(email) = &new.email {
                details.push(d("email", email.clone()));
            }
            details.push(d(
                "password",
                if new.password.is_some() {
                    "set"
                } else {
                    "none"
                }
                .into(),
            ));
            ("user", Some(new.name.clone()), details)
        }
        AdminRequest::UserList => ("user", None, vec![]),
        AdminRequest::UserShow { name }
        | AdminRequest::UserDelete { name }
        | AdminRequest::UserCerts { name }
        | AdminRequest::UserSessions { name }
        | AdminRequest::UserPasswd { name, .. } => ("user", Some(name.clone()), vec![]),
        AdminRequest::UserRole { name, role } => (
            "user",
            Some(name.clone()),
            vec![d("role", role.to_string())],
        ),
        AdminRequest::UserEnable { name, enabled } => (
            "user",
            Some(name.clone()),
            vec![d("enabled", enabled.to_string())],
        ),
        AdminRequest::UserCert {
            name,
            lifetime_secs,
            ..
        } => (
            "user",
            Some(name.clone()),
            vec![d("lifetime_secs", lifetime_secs.to_string())],
        ),
        AdminRequest::RevokeCert { serial } => ("cert", Some(serial.clone()), vec![]),
        AdminRequest::UserLogout { name, session } => (
            "user",
            Some(name.clone()),
            session.iter().map(|s| d("session", s.clone())).collect(),
        ),
        AdminRequest::Login { user, .. } => ("user", Some(user.clone()), vec![]),
        AdminRequest::Logout { .. } | AdminRequest::AsUser { .. } => ("session", None, vec![]),
        AdminRequest::Audit(query) => {
            let mut details = Vec::new();
            for (key, value) in [
                ("user", &query.user),
                ("action", &query.action),
                ("resource", &query.resource),
            ] {
                if let Some(value) = value {
                    details.push(d(key, value.clone()));
                }
            }
            if query.failed {
                details.push(d("failed", "true".into()));
            }
            ("audit", None, details)
        }
        AdminRequest::AuditVerify => ("audit", None, vec![]),
        AdminRequest::AlertRuleAdd { rule, nodes } => {
            let mut details = vec![
                d("condition", rule.condition.to_string()),
                d("for_ms", rule.for_ms.to_string()),
                d("severity", rule.severity.to_string()),
            ];
            if !rule.targets.labels.is_empty() {
                details.push(d("labels", labels(&rule.targets.labels)));
            }
            if !nodes.is_empty() {
                details.push(d("nodes", list(nodes)));
            }
            if !rule.channels.is_empty() {
                details.push(d("channels", list(&rule.channels)));
            }
            ("alert_rule", Some(rule.name.clone()), details)
        }
        AdminRequest::AlertRuleList => ("alert_rule", None, vec![]),
        AdminRequest::AlertRuleShow { name } | AdminRequest::AlertRuleDelete { name } => {
            ("alert_rule", Some(name.clone()), vec![])
        }
        AdminRequest::AlertRuleEnable { name, enabled } => (
            "alert_rule",
            Some(name.clone()),
            vec![d("enabled", enabled.to_string())],
        ),
        AdminRequest::AlertList(query) => {
            let mut details = vec![d("firing", query.firing.to_string())];
            if let Some(node) = &query.node {
                details.push(d("node", node.clone()));
            }
            ("alert", None, details)
        }
        AdminRequest::AlertShow { id } | AdminRequest::AlertAck { id } => {
            ("alert", Some(id.to_string()), vec![])
        }
        // Where a channel sends, never its secret or password.
        AdminRequest::AlertChannelAdd(channel) => {
            let details = match &channel.kind {
                tether_wire::alerts::ChannelKind::Webhook { url, secret } => vec![
                    d(
                        "webhook",
                        url.split(['?', '#']).next().unwrap_or_default().to_string(),
                    ),
                    d("signed", secret.is_some().to_string()),
                ],
                tether_wire::alerts::ChannelKind::Smtp { host, port, to, .. } => {
                    vec![d("smtp", format!("{host}:{port}")), d("to", list(to))]
                }
            };
            ("alert_channel", Some(channel.name.clone()), details)
        }
        AdminRequest::AlertChannelList => ("alert_channel", None, vec![]),
        AdminRequest::AlertChannelDelete { name } | AdminRequest::AlertChannelTest { name } => {
            ("alert_channel", Some(name.clone()), vec![])
        }
        AdminRequest::GroupAdd {
            name,
            parent,
            description,
            sort_order,
        } => {
            let mut details = vec![];
            if let Some(parent) = parent {
                details.push(d("parent", parent.clone()));
            }
            if !description.is_empty() {
                details.push(d("description", description.clone()));
            }
            if *sort_order != 0 {
                details.push(d("sort_order", sort_order.to_string()));
            }
            ("group", Some(name.clone()), details)
        }
        AdminRequest::GroupList => ("group", None, vec![]),
        AdminRequest::GroupShow { name } => ("group", Some(name.clone()), vec![]),
        AdminRequest::GroupMove { name, parent } => (
            "group",
            Some(name.clone()),
            vec![d(
                "parent",
                parent.clone().unwrap_or_else(|| "(top)".into()),
            )],
        ),
        AdminRequest::GroupDelete { name, force } => (
            "group",
            Some(name.clone()),
            if *force {
                vec![d("force", "true".into())]
            } else {
                vec![]
            },
        ),
        AdminRequest::NodeGroup { node, group } => (
            "node",
            Some(node.clone()),
            vec![d("group", group.clone().unwrap_or_else(|| "(none)".into()))],
        ),
        AdminRequest::TaskAdd(spec) => ("task", Some(spec.name.clone()), task_details(spec)),
        AdminRequest::TaskEdit { name, changes } => {
            let mut details = vec![];
            if let Some(cron) = &changes.cron {
                details.push(d("cron", cron.clone()));
            }
            if let Some(tz) = &changes.timezone {
                details.push(d("timezone", tz.clone()));
            }
            if let Some(targets) = &changes.targets {
                details.push(d("targets", targets.describe()));
            }
            if let Some(command) = &changes.command {
                details.extend(command_details(command));
            }
            for (key, value) in [
                ("timeout_ms", changes.timeout_ms),
                ("retry_interval_ms", changes.retry_interval_ms),
                ("spread_ms", changes.spread_ms),
                ("retries", changes.retries.map(u64::from)),
            ] {
                if let Some(value) = value {
                    details.push(d(key, value.to_string()));
                }
            }
            if let Some(catch_up) = changes.catch_up {
                details.push(d("catch_up", catch_up.to_string()));
            }
            if let Some(description) = &changes.description {
                details.push(d("description", description.clone()));
            }
            ("task", Some(name.clone()), details)
        }
        AdminRequest::TaskList => ("task", None, vec![]),
        AdminRequest::TaskShow { name }
        | AdminRequest::TaskDelete { name }
        | AdminRequest::TaskRun { name } => ("task", Some(name.clone()), vec![]),
        AdminRequest::TaskEnable { name, enabled } => (
            "task",
            Some(name.clone()),
            vec![d("enabled", enabled.to_string())],
        ),
        AdminRequest::TaskHistory { name, limit, run } => (
            "task",
            Some(name.clone()),
            match run {
                Some(run) => vec![d("run", run.to_string())],
                None => vec![d("limit", limit.to_string())],
            },
        ),
        AdminRequest::CronPreview { cron, timezone, .. } => (
            "task",
            None,
            vec![d("cron", cron.clone()), d("timezone", timezone.clone())],
        ),
        AdminRequest::ReleaseUpload { manifest, notes } => (
            "release",
            Some(manifest.describe()),
            vec![
                d("size", manifest.size.to_string()),
                d("sha256", hex::encode(manifest.sha256.as_bytes())),
                d("key", tether_wire::releases::key_id(&manifest.key)),
                d("notes", notes.clone()),
            ],
        ),
        AdminRequest::ReleaseList => ("release", None, vec![]),
        AdminRequest::ReleaseShow { version } => ("release", Some(version.clone()), vec![]),
        AdminRequest::ReleaseDelete { version, os, arch } => (
            "release",
            Some(version.clone()),
            [("os", os), ("arch", arch)]
                .into_iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| d(k, v.clone())))
                .collect(),
        ),
        AdminRequest::ReleaseDeploy(spec) => {
            let mut details = vec![
                d("targets", spec.targets.describe()),
                d("strategy", spec.strategy.to_string()),
                d("offline", spec.offline.to_string()),
                d("watchdog_ms", spec.watchdog_ms.to_string()),
            ];
            for (key, amount) in [
                ("batch", spec.batch),
                ("canary", spec.canary),
                ("max_failures", spec.max_failures),
            ] {
                if let Some(amount) = amount {
                    details.push(d(key, amount.to_string()));
                }
            }
            for (key, ms) in [
                ("pause_ms", spec.pause_ms),
                ("canary_wait_ms", spec.canary_wait_ms),
            ] {
                if ms > 0 {
                    details.push(d(key, ms.to_string()));
                }
            }
            if let Some(rate) = spec.rate_limit {
                details.push(d("rate_limit", rate.to_string()));
            }
            ("release", Some(spec.version.clone()), details)
        }
        AdminRequest::DeployList { .. } => ("deploy", None, vec![]),
        AdminRequest::DeployStatus { id } | AdminRequest::DeployRollback { id } => {
            ("deploy", Some(id.to_string()), vec![])
        }
        AdminRequest::DeployControl { id, action } => (
            "deploy",
            Some(id.to_string()),
            vec![d("action", action.to_string())],
        ),
        _ => ("unknown", None, vec![]),
    }
}

/// A task's record in the audit log: what runs where and when. A script is recorded by name,
/// size and SHA-256 (its text can be long; the digest says which one ran).
fn task_details(spec: &tether_wire::tasks::TaskSpec) -> Vec<(String, String)> {
    let mut details = vec![
        ("cron".to_string(), spec.cron.clone()),
        ("timezone".to_string(), spec.timezone.clone()),
        ("targets".to_string(), spec.targets.describe()),
    ];
    details.extend(command_details(&spec.command));
    details.push(("timeout_ms".into(), spec.timeout_ms.to_string()));
    if spec.retries > 0 {
        details.push(("retries".into(), spec.retries.to_string()));
        details.push((
            "retry_interval_ms".into(),
            spec.retry_interval_ms.to_string(),
        ));
    }
    if spec.spread_ms > 0 {
        details.push(("spread_ms".into(), spec.spread_ms.to_string()));
    }
    details.push(("catch_up".into(), spec.catch_up.to_string()));
    if !spec.enabled {
        details.push(("enabled".into(), "false".into()));
    }
    details
}

fn command_details(command: &tether_wire::tasks::TaskCommand) -> Vec<(String, String)> {
    use sha2::Digest;
    match command {
        tether_wire::tasks::TaskCommand::Command(argv) => {
            vec![("command".to_string(), argv.join(" "))]
        }
        tether_wire::tasks::TaskCommand::Script { name, body } => vec![
            ("script".to_string(), name.clone()),
            ("script_bytes".to_string(), body.0.len().to_string()),
            (
                "script_sha256".to_string(),
                hex::encode(sha2::Sha256::digest(&body.0)),
            ),
        ],
    }
}

fn node_and_limit(node: Option<&str>, limit: u32) -> Vec<(String, String)> {
    let mut details = vec![("limit".to_string(), limit.to_string())];
    if let Some(node) = node {
        details.push(("node".into(), node.to_string()));
    }
    details
}

/// The record of a request.
fn entry(shared: &Shared, caller: &Caller, request: &AdminRequest) -> AuditEntry {
    let (resource_kind, resource_id, mut details) = describe(request);
    // A login is recorded under the name tried; the bridge that asked is a detail.
    let login = matches!(request, AdminRequest::Login { .. }) && caller.role == Role::Bridge;
    let user = match request {
        AdminRequest::Login { user, .. } if login => {
            details.push(("bridge".into(), caller.user.clone()));
            user.clone()
        }
        _ => caller.user.clone(),
    };
    if let Some(bridge) = &caller.bridge {
        details.push(("bridge".into(), bridge.clone()));
    }
    if let Some(serial) = &caller.serial {
        details.push(("cert".into(), serial.clone()));
    }
    if let Some(session) = &caller.session {
        details.push(("session".into(), session.clone()));
    }
    let (client_addr, user_agent) = match request {
        AdminRequest::Login { client, .. } => {
            let client = crate::auth::clean_client(client.clone());
            (client.addr, client.user_agent)
        }
        _ => (caller.client.addr.clone(), caller.client.user_agent.clone()),
    };
    AuditEntry {
        time_ms: shared.now_ms(),
        user,
        role: (!login).then_some(caller.role),
        action: super::roles::action(request).to_string(),
        request: request.name().to_string(),
        resource_kind: resource_kind.to_string(),
        resource_id,
        details,
        source_addr: Some(caller.addr.to_string()),
        client_addr,
        user_agent,
        result: AuditResult::Ok,
        error: None,
    }
}

/// Writes the record of a request; whether it was written. One that cannot be written is
/// logged loudly, and the caller does not answer a request it could not record.
pub(crate) async fn record(
    shared: &Shared,
    caller: &Caller,
    request: &AdminRequest,
    outcome: Outcome<'_>,
) -> bool {
    record_with(shared, caller, request, outcome, Vec::new()).await
}

/// [`record`], with details only the answer knows (the serial of a certificate issued, the id of
/// a session made).
pub(crate) async fn record_with(
    shared: &Shared,
    caller: &Caller,
    request: &AdminRequest,
    outcome: Outcome<'_>,
    more: Vec<(String, String)>,
) -> bool {
    let mut entry = finish(entry(shared, caller, request), outcome, None);
    // The resource as core knows it (a node's id, a serial as recorded), so that a search by
    // id finds it however it was typed; what was typed stays in the details.
    let canonical =
        more.iter().find_map(
            |(key, value)| match (key.as_str(), entry.resource_kind.as_str()) {
                ("node_id", "node") | ("serial", "cert") => Some(value.clone()),
                _ => None,
            },
        );
    if let Some(id) = canonical
        && entry.resource_id.as_deref() != Some(id.as_str())
        && let Some(asked) = entry.resource_id.replace(id)
    {
        entry.details.push(("asked".into(), asked));
    }
    entry.details.extend(
        more.into_iter()
            .filter(|(k, _)| k != "node_id" || entry.resource_kind != "node"),
    );
    write(shared, entry).await
}

/// What a node's own policy refused of what `user` asked (`request`: `Exec`, `OpenTty`): a
/// record of its own, denied with the node's reason, written when the node answers (after the
/// request's own record, which says it started).
pub(crate) async fn policy_refusal(
    shared: &Shared,
    user: &str,
    request: &'static str,
    node: tether_wire::NodeId,
    details: Vec<(String, String)>,
    reason: &str,
) {
    let action = match request {
        "OpenTty" | "AuthorizeTty" => "tty.open",
        _ => "exec.run",
    };
    let entry = AuditEntry {
        time_ms: shared.now_ms(),
        user: user.to_string(),
        role: None,
        action: action.into(),
        request: request.into(),
        resource_kind: "node".into(),
        resource_id: Some(node.to_string()),
        details,
        source_addr: None,
        client_addr: None,
        user_agent: None,
        result: AuditResult::Denied,
        error: Some(format!("{}: {reason}", ErrorCode::POLICY_REFUSED)),
    };
    if let Err(e) = shared.store.append_audit(entry).await {
        error!(error = %e, %user, "the audit record of a policy refusal could not be written");
    }
}

/// Details of an answer worth keeping in its record.
pub(crate) fn answer_details(responses: &[AdminResponse]) -> Vec<(String, String)> {
    responses
        .iter()
        .filter_map(|response| match response {
            AdminResponse::CertIssued { cert, .. } | AdminResponse::Cert(cert) => {
                Some(("serial".into(), cert.serial.clone()))
            }
            AdminResponse::LoggedIn { session, .. } => Some(("session".into(), session.id.clone())),
            AdminResponse::Node(node) => Some(("node_id".into(), node.id.to_string())),
            AdminResponse::TaskRun(run) => Some(("run".into(), run.run.to_string())),
            AdminResponse::Deploy(view) => Some(("deploy".into(), view.deploy.id.to_string())),
            _ => None,
        })
        .collect()
}

/// Refuses to run a request whose record could not be written: while the disk is below
/// `min_free_space` every database write, the audit record's included, is refused. `Ping` and
/// `Status` still answer (and are logged by core instead), so that an operator can see what is
/// wrong; nothing else does.
pub(crate) fn writable(shared: &Shared, request: &AdminRequest) -> Result<(), Refusal> {
    if matches!(request, AdminRequest::Ping | AdminRequest::Status) {
        return Ok(());
    }
    shared.store.check_room().map_err(|full| {
        (
            ErrorCode::INTERNAL,
            format!(
                "{full}. Core answers no request until then, since it cannot record them in \
                 the audit log (`tether status` still answers)"
            ),
        )
    })
}

fn finish(mut entry: AuditEntry, outcome: Outcome<'_>, resource_id: Option<String>) -> AuditEntry {
    match outcome {
        Outcome::Ok => {}
        Outcome::Denied((code, message)) => {
            entry.result = AuditResult::Denied;
            entry.error = Some(format!("{code}: {message}"));
        }
        Outcome::Failed((code, message)) => {
            entry.result = AuditResult::Failed;
            entry.error = Some(format!("{code}: {message}"));
        }
    }
    if resource_id.is_some() {
        entry.resource_id = resource_id;
    }
    entry
}

async fn write(shared: &Shared, entry: AuditEntry) -> bool {
    let result = match entry.result {
        AuditResult::Ok => "ok",
        AuditResult::Denied => "denied",
        AuditResult::Failed => "failed",
    };
    shared
        .telemetry
        .admin_requests
        .get_or_create(&crate::telemetry::AdminLabels {
            request: entry.request.clone(),
            result: result.to_string(),
        })
        .inc();
    match shared.store.append_audit(entry.clone()).await {
        Ok(_) => true,
        Err(e) => {
            error!(error = %e, user = %entry.user, action = %entry.action, "the audit record could not be written");
            false
        }
    }
}

/// The record of a request that takes its stream over (a command, a terminal, a backup): the
/// handler finishes it once it knows whether the request started.
#[derive(Debug)]
pub(crate) struct Pending {
    shared: Arc<Shared>,
    entry: Option<AuditEntry>,
}

impl Pending {
    pub(crate) fn new(shared: &Arc<Shared>, caller: &Caller, request: &AdminRequest) -> Self {
        Self {
            shared: shared.clone(),
            entry: Some(entry(shared, caller, request)),
        }
    }

    /// Writes the record: started (naming what was made, an execution or session id), or
    /// refused; whether it was written.
    pub(crate) async fn done(mut self, outcome: Result<Option<String>, &Refusal>) -> bool {
        let Some(entry) = self.entry.take() else {
            return true;
        };
        let entry = match outcome {
            Ok(id) => finish(entry, Outcome::Ok, id),
            Err(refusal) => finish(entry, Outcome::Failed(refusal), None),
        };
        write(&self.shared, entry).await
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // A handler that ended without saying: the record is still written.
        if let Some(entry) = self.entry.take() {
            let shared = self.shared.clone();
            tokio::spawn(async move {
                write(&shared, entry).await;
            });
        }
    }
}

/// `Audit`: records matching the query, newest first.
pub(crate) async fn list(shared: &Shared, query: AuditQuery) -> Reply {
    let (resource_kind, resource_id) = match query.resource.as_deref() {
        None => (None, None),
        Some(text) => match text.split_once(':') {
            Some((kind, id)) => (Some(kind.to_string()), Some(id.to_string())),
            None => (Some(text.to_string()), None),
        },
    };
    if let Some(action) = &query.action {
        let known = super::roles::TABLE.iter().any(|row| {
            row.action == action
                || row
                    .action
                    .strip_prefix(action.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
        });
        if !known {
            let mut families: Vec<&str> = super::roles::TABLE
                .iter()
                .map(|row| row.action.split('.').next().unwrap_or(row.action))
                .collect();
            families.dedup();
            return Err((
                ErrorCode::INVALID_ARGUMENT,
                format!(
                    "no action {action:?}; actions are those of the role table (docs/security.md), \
                     e.g. nodes.edit, or a family: {}",
                    families.join(", ")
                ),
            ));
        }
    }
    if query
        .since_ms
        .zip(query.until_ms)
        .is_some_and(|(s, u)| s >= u)
    {
        return Err((
            ErrorCode::INVALID_ARGUMENT,
            "--since must be before --until".into(),
        ));
    }
    let filter = AuditFilter {
        user: query.user,
        action: query.action,
        resource_kind,
        resource_id,
        since_ms: query.since_ms,
        until_ms: query.until_ms,
        failed: query.failed,
        limit: usize::try_from(query.limit.clamp(1, 100_000)).unwrap_or(1000),
        seq: query.seq,
    };
    let store = shared.store.clone();
    let records = tokio::task::spawn_blocking(move || store.audit(&filter))
        .await
        .map_err(|e| (ErrorCode::INTERNAL, e.to_string()))?
        .map_err(internal)?;
    let views = records
        .into_iter()
        .map(|r| AuditView {
            seq: r.seq,
            hash: hex::encode(r.hash),
            entry: r.entry,
        })
        .collect();
    Ok(chunks(views, AdminResponse::AuditRecords))
}

/// `AuditVerify`: the chain recomputed.
pub(crate) async fn verify(shared: &Shared) -> Reply {
    let store = shared.store.clone();
    let report = tokio::task::spawn_blocking(move || store.verify_audit())
        .await
        .map_err(|e| (ErrorCode::INTERNAL, e.to_string()))?
        .map_err(internal)?;
    Ok(vec![AdminResponse::AuditVerified(report)])
}

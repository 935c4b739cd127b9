//! Running a command on many nodes for an admin (seeds 002 and 004).
//!
//! ```text
//! admin stream ──Exec──▶ select nodes ─▶ store (execution + every node, pending) ─▶ ExecStarted
//!                        for each node, at most `concurrency` at once:
//!                          offline? ─▶ result `offline`, nothing sent
//!                          Exec on its control stream ─▶ its own output stream ─▶ ExecOutput…
//!                          Finished ─▶ store ─▶ ExecNodeDone
//!                        ExecFinished (counts), stream finished
//! ```
//!
//! Output travels node → core → admin through one bounded channel per execution, so a slow admin
//! slows the nodes (QUIC flow control all the way back to each process's pipe) instead of growing
//! core's memory. Each node's output is also kept for history up to `exec_output_cap`, written in
//! chunks as it arrives. A CancelExec frame on the admin's stream, or the admin going away, cancels:
//! nodes not yet sent the command are `cancelled` at once, the others kill their process groups and
//! report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use quinn::VarInt;
use tether_store::{ExecutionRecord, NodeExecRecord};
use tether_wire::admin::{
    AdminRequest, AdminResponse, ExecSpec, ExecStatus, ExecTarget, ExecutionDetail, ExecutionState,
    ExecutionView, NodeExecView,
};
use tether_wire::bytes::ByteBuf;
use tether_wire::control::CoreMessage;
use tether_wire::exec::{ExecFrame, ExecOutcome, ExecRequest, OutputStream, check_command};
use tether_wire::limits::{EXEC_CHUNK, MAX_EXEC_TARGETS};
use tether_wire::stream::{FramedRecv, FramedSend};
use tether_wire::{ErrorCode, ExecutionId, NodeId};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::presence::SessionCommand;
use crate::server::Shared;

/// Events from the node tasks to the admin's stream.
enum Event {
    Output {
        node_id: NodeId,
        stream: OutputStream,
        data: Vec<u8>,
    },
    Done(NodeExecView),
}

/// How long a node may take to open the output stream after being sent a command.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Beyond timeout and grace, how long core waits for a node's verdict before giving up on it.
const VERDICT_SLACK: Duration = Duration::from_secs(30);

type Refusal = (ErrorCode, String);

/// Serves one `Exec` request to its end.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    admin: String,
    spec: ExecSpec,
    mut send: FramedSend,
    mut recv: FramedRecv,
    audit: crate::admin::Pending,
) {
    let started = match start(&shared, &admin, &spec).await {
        Ok(started) => started,
        Err(refusal) => {
            audit.done(Err(&refusal)).await;
            let (code, message) = refusal;
            let _ = send.send(&AdminResponse::Error { code, message }).await;
            send.finish();
            return;
        }
    };
    let exec_id = started.record.id;
    shared.telemetry.commands.inc();
    audit.done(Ok(Some(exec_id.to_string()))).await;
    let span = info_span!("exec", %exec_id);
    async move {
        info!(%admin, command = ?spec.command, nodes = started.targets.len(), selector = %started.record.selector, "execution started");
        let targets: Vec<ExecTarget> = started
            .targets
            .iter()
            .map(|(node_id, hostname)| ExecTarget { node_id: *node_id, hostname: hostname.clone() })
            .collect();
        let mut admin_present = send.send(&AdminResponse::ExecStarted { exec_id, nodes: targets }).await.is_ok();

        let cancel = CancellationToken::new();
        let (events_tx, mut events) = mpsc::channel::<Event>(64);
        let job = Arc::new(Job { request: started.request, script: started.script });
        let fan_out = tokio::spawn(
            fan_out(shared.clone(), Arc::from(admin.as_str()), job, started.targets, spec.concurrency, None, cancel.clone(), events_tx).in_current_span(),
        );
        let mut reading_admin = true;
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    let response = match event {
                        Event::Output { node_id, stream, data } => AdminResponse::ExecOutput { node_id, stream, data: ByteBuf(data) },
                        Event::Done(view) => AdminResponse::ExecNodeDone(view),
                    };
                    if admin_present && send.send(&response).await.is_err() {
                        info!("the admin went away; cancelling");
                        admin_present = false;
                        cancel.cancel();
                    }
                }
                frame = recv.next::<AdminRequest>(), if reading_admin => match frame {
                    Ok(Some(AdminRequest::CancelExec)) => {
                        info!("cancelled by the admin");
                        cancel.cancel();
                    }
                    Ok(Some(_)) => debug!("ignoring a request other than CancelExec on an exec stream"),
                    Ok(None) => reading_admin = false,
                    Err(e) => {
                        info!(error = %e, "the admin went away; cancelling");
                        reading_admin = false;
                        admin_present = false;
                        cancel.cancel();
                    }
                },
            }
        }
        let _ = fan_out.await;
        let state = if cancel.is_cancelled() { ExecutionState::Cancelled } else { ExecutionState::Finished };
        if let Err(e) = shared.store.finish_execution(exec_id, state, shared.now_ms()).await {
            warn!(error = %e, "recording the end of the execution failed");
        }
        let view = match shared.store.execution(exec_id) {
            Ok(Some((record, _))) => execution_view(record),
            _ => return,
        };
        info!(state = %view.state, ok = view.counts.ok, failed = view.counts.failed, "execution finished");
        if admin_present {
            let _ = send.send(&AdminResponse::ExecFinished(view)).await;
            send.finish();
        }
    }
    .instrument(span)
    .await
}

struct Started {
    record: ExecutionRecord,
    targets: Vec<(NodeId, String)>,
    request: ExecRequest,
    script: Option<ByteBuf>,
}

/// What an execution runs, however it was asked for (an admin's `Exec`, a task's run).
pub(crate) struct Plan {
    /// Program and arguments; for a script, its name alone.
    pub command: Vec<String>,
    /// A script to send with the request (then the node runs it, not `command`).
    pub script: Option<ByteBuf>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Kill after this long.
    pub timeout_ms: Option<u64>,
    /// The selection as written, for history.
    pub selector: String,
    /// The task run it belongs to.
    pub origin: Option<tether_wire::tasks::ExecOrigin>,
}

/// What goes to every node of an execution.
struct Job {
    request: ExecRequest,
    script: Option<ByteBuf>,
}

impl Job {
    fn message(&self) -> CoreMessage {
        match &self.script {
            None => CoreMessage::Exec(self.request.clone()),
            Some(script) => CoreMessage::ExecScript {
                request: self.request.clone(),
                script: script.clone(),
            },
        }
    }
}

/// Scatters nodes' starts over a window: each node waits a fixed share of it, the same for the
/// same node and salt (a task's number), so a large fleet never starts at once and a node's
/// place in the window does not wander from run to run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spread {
    /// Mixed into each node's share.
    pub salt: u64,
    /// The window.
    pub window: Duration,
}

impl Spread {
    /// How long `node` waits.
    pub(crate) fn delay(&self, node: NodeId) -> Duration {
        // splitmix64 of the node id folded with the salt: well spread, no state.
        let id = node.0.as_u128();
        let mut x =
            (id as u64) ^ ((id >> 64) as u64) ^ self.salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        let share = x as f64 / u64::MAX as f64;
        self.window.mul_f64(share)
    }
}

/// Checks the request, selects the nodes and records the execution before anything runs.
async fn start(shared: &Shared, admin: &str, spec: &ExecSpec) -> Result<Started, Refusal> {
    check_command(&spec.command, &spec.env, spec.cwd.as_deref())
        .map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
    if spec.concurrency == 0 {
        return Err((
            ErrorCode::INVALID_ARGUMENT,
            "concurrency must be at least 1".into(),
        ));
    }
    let targets = select_nodes(
        shared,
        &Selection {
            targets: &spec.targets,
            labels: &spec.labels,
            groups: &spec.groups,
            all: spec.all,
        },
    )?;
    let plan = Plan {
        command: spec.command.clone(),
        script: None,
        env: spec.env.clone(),
        cwd: spec.cwd.clone(),
        timeout_ms: spec.timeout_ms,
        selector: describe_selection(spec),
        origin: None,
    };
    record_execution(shared, admin, plan, targets).await
}

/// Records an execution of `plan` on `targets`, every node pending, before anything runs.
async fn record_execution(
    shared: &Shared,
    admin: &str,
    plan: Plan,
    targets: Vec<(NodeId, String)>,
) -> Result<Started, Refusal> {
    let exec_id = ExecutionId::random();
    let record = ExecutionRecord {
        id: exec_id,
        admin: admin.to_string(),
        command: plan.command.clone(),
        env_keys: plan.env.iter().map(|(k, _)| k.clone()).collect(),
        cwd: plan.cwd.clone(),
        timeout_ms: plan.timeout_ms,
        selector: plan.selector,
        created_at_ms: shared.now_ms(),
        finished_at_ms: None,
        state: ExecutionState::Running,
        node_count: 0,
        counts: Default::default(),
        output_pruned_at_ms: None,
        origin: plan.origin,
    };
    shared
        .store
        .create_execution(record.clone(), targets.clone())
        .await
        .map_err(|e| {
            (
                ErrorCode::INTERNAL,
                format!("core could not record the execution: {e}"),
            )
        })?;
    let request = ExecRequest {
        exec_id,
        command: plan.command,
        env: plan.env,
        cwd: plan.cwd,
        timeout_ms: plan.timeout_ms,
        kill_grace_ms: u64::try_from(shared.config.exec_kill_grace.as_millis()).unwrap_or(u64::MAX),
    };
    Ok(Started {
        record,
        targets,
        request,
        script: plan.script,
    })
}

/// Runs `plan` on `targets` with no admin watching (a task's run). Output is kept as for any
/// execution; the answer is the execution's id and each node's result. Cancelling `cancel`
/// cancels as an admin's cancel does.
pub(crate) async fn run_detached(
    shared: &Arc<Shared>,
    admin: &str,
    plan: Plan,
    targets: Vec<(NodeId, String)>,
    concurrency: u32,
    spread: Option<Spread>,
    cancel: CancellationToken,
) -> Result<(ExecutionId, Vec<NodeExecView>), Refusal> {
    let started = record_execution(shared, admin, plan, targets).await?;
    let exec_id = started.record.id;
    shared.telemetry.commands.inc();
    let (events_tx, mut events) = mpsc::channel::<Event>(64);
    let job = Arc::new(Job {
        request: started.request,
        script: started.script,
    });
    let fan_out = tokio::spawn(
        fan_out(
            shared.clone(),
            Arc::from(admin),
            job,
            started.targets,
            concurrency,
            spread,
            cancel.clone(),
            events_tx,
        )
        .in_current_span(),
    );
    let mut results = Vec::new();
    while let Some(event) = events.recv().await {
        if let Event::Done(view) = event {
            results.push(view);
        }
    }
    let _ = fan_out.await;
    let state = if cancel.is_cancelled() {
        ExecutionState::Cancelled
    } else {
        ExecutionState::Finished
    };
    if let Err(e) = shared
        .store
        .finish_execution(exec_id, state, shared.now_ms())
        .await
    {
        warn!(error = %e, "recording the end of the execution failed");
    }
    Ok((exec_id, results))
}

fn describe_selection(spec: &ExecSpec) -> String {
    let mut parts: Vec<String> = spec.targets.clone();
    parts.extend(spec.labels.iter().map(|(k, v)| format!("--label {k}={v}")));
    parts.extend(spec.groups.iter().map(|g| format!("--group {g}")));
    if spec.all {
        parts.push("--all".into());
    }
    parts.join(" ")
}

/// What selects nodes, wherever nodes are selected (`Exec`, a task's run): the union of all
/// that is given.
pub(crate) struct Selection<'a> {
    /// Node ids, unique id prefixes, hostnames or hostname globs.
    pub targets: &'a [String],
    /// Every node carrying all of these labels.
    pub labels: &'a [(String, String)],
    /// Every node in these groups or below them.
    pub groups: &'a [String],
    /// Every node.
    pub all: bool,
}

/// The nodes a selection selects, by id, id prefix, hostname glob, labels, groups (and the groups
/// below them) and `--all`; every target must match something.
pub(crate) fn select_nodes(
    shared: &Shared,
    selection: &Selection<'_>,
) -> Result<Vec<(NodeId, String)>, Refusal> {
    let internal =
        |e: tether_store::StoreError| (ErrorCode::INTERNAL, format!("core's database failed: {e}"));
    let nodes: Vec<_> = shared
        .store
        .nodes()
        .map_err(internal)?
        .into_iter()
        .filter(|n| !n.record.deleted)
        .collect();
    let mut selected: BTreeMap<NodeId, String> = BTreeMap::new();
    let mut unmatched = Vec::new();
    for target in selection.targets {
        if !is_glob(target) {
            // One node, named as every request names nodes. Every unknown name is reported
            // together, below.
            let id = match crate::admin::resolve::node(shared, target) {
                Ok(id) => id,
                Err((ErrorCode::NOT_FOUND, _)) => {
                    unmatched.push(target.clone());
                    continue;
                }
                Err(refusal) => return Err(refusal),
            };
            match nodes.iter().find(|n| n.record.id == id) {
                Some(node) => {
                    selected.insert(id, node.record.hostname.clone());
                }
                None => {
                    return Err((
                        ErrorCode::NOT_FOUND,
                        format!("node {id} ({target}) was deleted"),
                    ));
                }
            }
            continue;
        }
        let mut matched = false;
        for node in nodes
            .iter()
            .filter(|n| glob_match(target, &n.record.hostname))
        {
            selected.insert(node.record.id, node.record.hostname.clone());
            matched = true;
        }
        if !matched {
            unmatched.push(target.clone());
        }
    }
    if !selection.labels.is_empty() {
        let mut matched = false;
        for node in nodes.iter().filter(|n| {
            selection
                .labels
                .iter()
                .all(|(k, v)| n.record.labels.get(k) == Some(v))
        }) {
            selected.insert(node.record.id, node.record.hostname.clone());
            matched = true;
        }
        if !matched {
            let labels: Vec<String> = selection
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            unmatched.push(format!("--label {}", labels.join(" --label ")));
        }
    }
    if !selection.groups.is_empty() {
        let members = crate::admin::groups::select(shared, selection.groups)?;
        let mut matched = false;
        for node in nodes.iter().filter(|n| members.contains(&n.record.id)) {
            selected.insert(node.record.id, node.record.hostname.clone());
            matched = true;
        }
        if !matched {
            unmatched.push(format!("--group {}", selection.groups.join(" --group ")));
        }
    }
    if selection.all {
        for node in &nodes {
            selected.insert(node.record.id, node.record.hostname.clone());
        }
    }
    if !unmatched.is_empty() {
        return Err((
            ErrorCode::NOT_FOUND,
            format!(
                "no node matches {} (targets are node ids, unique id prefixes, hostnames, or hostname patterns such as 'web-*')",
                unmatched
                    .iter()
                    .map(|u| format!("{u:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if selected.is_empty() {
        return Err((
            ErrorCode::INVALID_ARGUMENT,
            "no nodes selected: give targets, --label, --group or --all".into(),
        ));
    }
    if selected.len() > MAX_EXEC_TARGETS {
        return Err((
            ErrorCode::INVALID_ARGUMENT,
            format!(
                "{} nodes selected; the limit is {MAX_EXEC_TARGETS}",
                selected.len()
            ),
        ));
    }
    Ok(selected.into_iter().collect())
}

/// Whether a target is a hostname pattern (it has `*`, `?` or `[`) rather than one node's name.
pub(crate) fn is_glob(target: &str) -> bool {
    target.contains(['*', '?', '['])
}

/// Shell-style glob: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    fn class(set: &[char], c: char) -> bool {
        let (negate, set) = match set.first() {
            Some('!') | Some('^') => (true, &set[1..]),
            _ => (false, set),
        };
        let mut i = 0;
        let mut hit = false;
        while i < set.len() {
            if i + 2 < set.len() && set[i + 1] == '-' {
                hit |= set[i] <= c && c <= set[i + 2];
                i += 3;
            } else {
                hit |= set[i] == c;
                i += 1;
            }
        }
        hit != negate
    }
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|skip| go(&p[1..], &t[skip..])),
            Some('?') => !t.is_empty() && go(&p[1..], &t[1..]),
            Some('[') => match p.iter().position(|c| *c == ']') {
                Some(end) if end > 1 => {
                    !t.is_empty() && class(&p[1..end], t[0]) && go(&p[end + 1..], &t[1..])
                }
                _ => t.first() == Some(&'[') && go(&p[1..], &t[1..]),
            },
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

/// Runs the job on every target, at most `concurrency` at once, each node after its share of
/// the spread.
#[allow(clippy::too_many_arguments)]
async fn fan_out(
    shared: Arc<Shared>,
    admin: Arc<str>,
    job: Arc<Job>,
    targets: Vec<(NodeId, String)>,
    concurrency: u32,
    spread: Option<Spread>,
    cancel: CancellationToken,
    events: mpsc::Sender<Event>,
) {
    let slots = Arc::new(Semaphore::new(concurrency as usize));
    let mut tasks = tokio::task::JoinSet::new();
    for (node_id, hostname) in targets {
        let (shared, admin, job, cancel, events, slots) = (
            shared.clone(),
            admin.clone(),
            job.clone(),
            cancel.clone(),
            events.clone(),
            slots.clone(),
        );
        tasks.spawn(
            async move {
                let waited = match spread {
                    Some(spread) => tokio::select! {
                        _ = tokio::time::sleep(spread.delay(node_id)) => true,
                        _ = cancel.cancelled() => false,
                    },
                    None => true,
                };
                let permit = if waited {
                    tokio::select! {
                        permit = slots.acquire_owned() => permit.ok(),
                        _ = cancel.cancelled() => None,
                    }
                } else {
                    None
                };
                let exec_id = job.request.exec_id;
                let mut run = NodeRun::new(&shared, &admin, exec_id, node_id, hostname);
                let record = match permit {
                    Some(_permit) => run.run(&job, &cancel, &events).await,
                    None => run.finish_without_sending(
                        ExecStatus::Cancelled,
                        "cancelled before it was sent",
                    ),
                };
                if let Err(e) = shared.store.update_exec_node(exec_id, record.clone()).await {
                    warn!(error = %e, "recording a node's result failed");
                }
                let _ = events.send(Event::Done(node_view(record, None))).await;
            }
            .instrument(info_span!("node", %node_id)),
        );
    }
    drop(events);
    while tasks.join_next().await.is_some() {}
}

/// One node's part in an execution.
struct NodeRun<'a> {
    shared: &'a Shared,
    /// Who ran it.
    admin: &'a str,
    exec_id: ExecutionId,
    record: NodeExecRecord,
    kept: Kept,
}

impl<'a> NodeRun<'a> {
    fn new(
        shared: &'a Shared,
        admin: &'a str,
        exec_id: ExecutionId,
        node_id: NodeId,
        hostname: String,
    ) -> Self {
        Self {
            shared,
            admin,
            exec_id,
            record: NodeExecRecord::pending(node_id, hostname),
            kept: Kept::new(usize::try_from(shared.config.exec_output_cap).unwrap_or(usize::MAX)),
        }
    }

    fn finish_without_sending(&mut self, status: ExecStatus, why: &str) -> NodeExecRecord {
        self.record.status = status;
        self.record.error = Some(why.to_string());
        self.record.finished_at_ms = Some(self.shared.now_ms());
        self.record.clone()
    }

    fn finish(&mut self, status: ExecStatus, error: Option<String>) -> NodeExecRecord {
        self.record.status = status;
        self.record.error = error;
        self.record.finished_at_ms = Some(self.shared.now_ms());
        self.record.truncated = self.kept.truncated;
        self.record.clone()
    }

    async fn run(
        &mut self,
        job: &Job,
        cancel: &CancellationToken,
        events: &mpsc::Sender<Event>,
    ) -> NodeExecRecord {
        let node_id = self.record.node_id;
        let session = self
            .shared
            .presence
            .get(node_id)
            .filter(|s| s.live.lock().expect("not poisoned").heartbeat_ok);
        let Some(session) = session else {
            return self.finish_without_sending(ExecStatus::Offline, "the node is not connected");
        };
        if !session
            .exec_streams_raised
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            session
                .connection
                .set_max_concurrent_uni_streams(crate::server::EXEC_UNI_STREAMS);
        }
        let stream = self
            .shared
            .presence
            .expect_exec_stream(node_id, self.exec_id);
        if session
            .commands
            .send(SessionCommand::Send(Box::new(job.message())))
            .await
            .is_err()
        {
            self.shared
                .presence
                .forget_exec_stream(node_id, self.exec_id);
            return self.finish_without_sending(ExecStatus::Offline, "the node disconnected");
        }
        self.record.status = ExecStatus::Running;
        self.record.started_at_ms = Some(self.shared.now_ms());
        if let Err(e) = self
            .shared
            .store
            .update_exec_node(self.exec_id, self.record.clone())
            .await
        {
            warn!(error = %e, "recording the start failed");
        }
        let connection = session.connection.clone();
        let lost =
            |error: quinn::ConnectionError| format!("the node disconnected while it ran: {error}");

        let mut stream = tokio::select! {
            stream = stream => match stream {
                Ok(stream) => stream,
                Err(_) => return self.finish(ExecStatus::Error, Some("the node's output stream was not delivered".into())),
            },
            error = connection.closed() => {
                self.shared.presence.forget_exec_stream(node_id, self.exec_id);
                return self.finish(ExecStatus::Error, Some(lost(error)));
            }
            _ = tokio::time::sleep(OPEN_TIMEOUT) => {
                self.shared.presence.forget_exec_stream(node_id, self.exec_id);
                return self.finish(ExecStatus::Error, Some("the node did not start the command in time".into()));
            }
        };

        let grace = self.shared.config.exec_kill_grace;
        let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let request = &job.request;
        let mut verdict_by = request.timeout_ms.map(|ms| {
            tokio::time::Instant::now() + Duration::from_millis(ms) + grace + VERDICT_SLACK
        });
        let mut cancel_sent = false;
        loop {
            tokio::select! {
                frame = stream.next::<ExecFrame>() => match frame {
                    Ok(Some(ExecFrame::Stdout(data))) => self.output(OutputStream::Stdout, data.0, events).await,
                    Ok(Some(ExecFrame::Stderr(data))) => self.output(OutputStream::Stderr, data.0, events).await,
                    Ok(Some(ExecFrame::Finished(outcome))) => {
                        self.kept.flush(self.shared, self.exec_id, node_id).await;
                        let (status, error) = verdict(&outcome, cancel_sent);
                        self.record.exit_code = outcome.exit_code;
                        self.record.signal = outcome.signal;
                        return self.finish(status, error);
                    }
                    Ok(Some(ExecFrame::Refused { reason })) => {
                        warn!(%reason, "refused by the node's policy");
                        crate::admin::audit::policy_refusal(
                            self.shared,
                            self.admin,
                            "Exec",
                            node_id,
                            vec![
                                ("execution".into(), self.exec_id.to_string()),
                                ("command".into(), request.command.join(" ")),
                            ],
                            &reason,
                        )
                        .await;
                        return self.finish(ExecStatus::Refused, Some(reason));
                    }
                    Ok(Some(_)) => {
                        let _ = stream.stream_mut().stop(VarInt::from_u32(ErrorCode::UNEXPECTED_MESSAGE.close_code()));
                        self.kept.flush(self.shared, self.exec_id, node_id).await;
                        return self.finish(ExecStatus::Error, Some("the output stream broke the protocol: unexpected frame".into()));
                    }
                    Ok(None) => {
                        self.kept.flush(self.shared, self.exec_id, node_id).await;
                        return self.finish(ExecStatus::Error, Some("the output stream ended without a result".into()));
                    }
                    Err(e) => {
                        self.kept.flush(self.shared, self.exec_id, node_id).await;
                        if let Some(code) = e.protocol_code() {
                            warn!(error = %e, "an output stream broke the protocol; stopping it");
                            let _ = stream.stream_mut().stop(VarInt::from_u32(code.close_code()));
                            return self.finish(ExecStatus::Error, Some(format!("the output stream broke the protocol: {e}")));
                        }
                        let why = connection.close_reason().map_or_else(|| e.to_string(), lost);
                        return self.finish(ExecStatus::Error, Some(why));
                    }
                },
                _ = cancel.cancelled(), if !cancel_sent => {
                    cancel_sent = true;
                    let _ = session.commands.send(SessionCommand::Send(Box::new(CoreMessage::CancelExec { exec_id: self.exec_id }))).await;
                    verdict_by = Some(tokio::time::Instant::now() + grace + VERDICT_SLACK);
                }
                _ = tokio::time::sleep_until(verdict_by.unwrap_or(far)), if verdict_by.is_some() => {
                    let _ = stream.stream_mut().stop(VarInt::from_u32(ErrorCode::OK.close_code()));
                    self.kept.flush(self.shared, self.exec_id, node_id).await;
                    let status = if cancel_sent { ExecStatus::Cancelled } else { ExecStatus::Error };
                    return self.finish(status, Some("the node did not report an end in time".into()));
                }
            }
        }
    }

    async fn output(&mut self, stream: OutputStream, data: Vec<u8>, events: &mpsc::Sender<Event>) {
        match stream {
            OutputStream::Stdout => self.record.stdout_bytes += data.len() as u64,
            OutputStream::Stderr => self.record.stderr_bytes += data.len() as u64,
        }
        self.kept
            .push(
                self.shared,
                self.exec_id,
                self.record.node_id,
                stream,
                &data,
            )
            .await;
        // Waiting here is the back-pressure: a slow admin slows this node's stream.
        let _ = events
            .send(Event::Output {
                node_id: self.record.node_id,
                stream,
                data,
            })
            .await;
    }
}

/// Maps a node's outcome to a status.
fn verdict(outcome: &ExecOutcome, cancel_sent: bool) -> (ExecStatus, Option<String>) {
    if let Some(error) = &outcome.error {
        // A command that could not start has the shell's status (127, 126): it failed, and
        // the reason goes with it. Without a status, the agent failed, not the command.
        let status = match outcome.exit_code {
            Some(_) => ExecStatus::Failed,
            None => ExecStatus::Error,
        };
        return (status, Some(error.clone()));
    }
    if outcome.cancelled || cancel_sent {
        return (ExecStatus::Cancelled, Some("cancelled".into()));
    }
    if outcome.timed_out {
        return (ExecStatus::Timeout, Some("killed after its timeout".into()));
    }
    match (outcome.exit_code, outcome.signal) {
        (Some(0), _) => (ExecStatus::Ok, None),
        (Some(_), _) | (None, Some(_)) => (ExecStatus::Failed, None),
        (None, None) => (
            ExecStatus::Error,
            Some("the process ended without an exit status".into()),
        ),
    }
}

/// Output kept for history: up to the cap, written to the store in chunks as it arrives.
struct Kept {
    cap: usize,
    kept: usize,
    truncated: bool,
    pending: Vec<u8>,
    pending_stream: OutputStream,
    chunk: u32,
}

impl Kept {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            kept: 0,
            truncated: false,
            pending: Vec::new(),
            pending_stream: OutputStream::Stdout,
            chunk: 0,
        }
    }

    async fn push(
        &mut self,
        shared: &Shared,
        exec_id: ExecutionId,
        node_id: NodeId,
        stream: OutputStream,
        data: &[u8],
    ) {
        let room = self.cap - self.kept;
        if data.len() > room {
            self.truncated = true;
        }
        let take = &data[..data.len().min(room)];
        if take.is_empty() {
            return;
        }
        if stream != self.pending_stream || self.pending.len() + take.len() > EXEC_CHUNK {
            self.flush(shared, exec_id, node_id).await;
            self.pending_stream = stream;
        }
        self.pending.extend_from_slice(take);
        self.kept += take.len();
    }

    async fn flush(&mut self, shared: &Shared, exec_id: ExecutionId, node_id: NodeId) {
        if self.pending.is_empty() {
            return;
        }
        let data = std::mem::take(&mut self.pending);
        if let Err(e) = shared
            .store
            .append_exec_output(exec_id, node_id, self.chunk, self.pending_stream, data)
            .await
        {
            warn!(error = %e, "keeping output failed");
        }
        self.chunk += 1;
    }
}

/// Streams a stored execution: `Execution` frames that repeat the header, each with as many nodes
/// (and their kept output) as fit in about 4 MiB.
pub(crate) async fn show(
    shared: &Shared,
    text: &str,
    send: &mut FramedSend,
) -> Result<(), Refusal> {
    use crate::admin::{internal, resolve};
    let id = resolve(
        "execution",
        text,
        shared.store.resolve_execution(text).map_err(internal)?,
    )?;
    let (record, nodes) = shared
        .store
        .execution(id)
        .map_err(internal)?
        .ok_or_else(|| {
            (
                ErrorCode::NOT_FOUND,
                format!("execution {id} does not exist"),
            )
        })?;
    let execution = execution_view(record);
    let mut batch = Vec::new();
    let mut batch_bytes = 0usize;
    let mut sent_any = false;
    for node in nodes {
        let output = shared
            .store
            .exec_output(id, node.node_id)
            .map_err(internal)?;
        let size = output.0.len() + output.1.len() + 512;
        if !batch.is_empty() && batch_bytes + size > SHOW_FRAME_BUDGET {
            let detail = ExecutionDetail {
                execution: execution.clone(),
                nodes: std::mem::take(&mut batch),
            };
            if send.send(&AdminResponse::Execution(detail)).await.is_err() {
                return Ok(());
            }
            sent_any = true;
            batch_bytes = 0;
        }
        batch_bytes += size;
        batch.push(node_view(node, Some(output)));
    }
    if !batch.is_empty() || !sent_any {
        let _ = send
            .send(&AdminResponse::Execution(ExecutionDetail {
                execution,
                nodes: batch,
            }))
            .await;
    }
    Ok(())
}

/// Bytes of output per `Execution` frame (the frame limit is 8 MiB; one node keeps at most 4).
const SHOW_FRAME_BUDGET: usize = 4 * 1024 * 1024;

pub(crate) fn node_view(
    record: NodeExecRecord,
    output: Option<(Vec<u8>, Vec<u8>)>,
) -> NodeExecView {
    let (stdout, stderr) = match output {
        Some((stdout, stderr)) => (Some(ByteBuf(stdout)), Some(ByteBuf(stderr))),
        None => (None, None),
    };
    NodeExecView {
        node_id: record.node_id,
        hostname: record.hostname,
        status: record.status,
        exit_code: record.exit_code,
        signal: record.signal,
        started_at_ms: record.started_at_ms,
        finished_at_ms: record.finished_at_ms,
        error: record.error,
        stdout_bytes: record.stdout_bytes,
        stderr_bytes: record.stderr_bytes,
        stdout,
        stderr,
        truncated: record.truncated,
    }
}

pub(crate) fn execution_view(record: ExecutionRecord) -> ExecutionView {
    ExecutionView {
        id: record.id,
        admin: record.admin,
        command: record.command,
        env_keys: record.env_keys,
        cwd: record.cwd,
        timeout_ms: record.timeout_ms,
        selector: record.selector,
        created_at_ms: record.created_at_ms,
        finished_at_ms: record.finished_at_ms,
        state: record.state,
        nodes: record.node_count,
        counts: record.counts,
        output_pruned_at_ms: record.output_pruned_at_ms,
        origin: record.origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spread_scatters_nodes_over_its_window_the_same_way_each_time() {
        let spread = Spread {
            salt: 7,
            window: Duration::from_secs(60),
        };
        let nodes: Vec<NodeId> = (0..1000).map(|_| NodeId::random()).collect();
        let delays: Vec<Duration> = nodes.iter().map(|n| spread.delay(*n)).collect();
        assert!(delays.iter().all(|d| *d <= spread.window));
        // The same node waits the same each run; another task (salt) places it elsewhere.
        assert_eq!(spread.delay(nodes[0]), delays[0]);
        let other = Spread { salt: 8, ..spread };
        assert_ne!(other.delay(nodes[0]), delays[0]);
        // Spread out: each sixth of the window holds roughly a sixth of the nodes.
        let mut sixths = [0usize; 6];
        for d in &delays {
            sixths[((d.as_secs_f64() / 10.0) as usize).min(5)] += 1;
        }
        assert!(sixths.iter().all(|n| (100..=250).contains(n)), "{sixths:?}");
    }

    #[test]
    fn globs() {
        assert!(glob_match("web-*", "web-01"));
        assert!(glob_match("web-0?", "web-01"));
        assert!(!glob_match("web-0?", "web-012"));
        assert!(glob_match("db[12]", "db2"));
        assert!(!glob_match("db[12]", "db3"));
        assert!(glob_match("db[1-3]", "db3"));
        assert!(glob_match("db[!1]", "db3"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("a*b*c", "a-xx-b-yy-c"));
        assert!(glob_match("[oops", "[oops"));
    }

    #[test]
    fn verdicts() {
        let outcome = |code, signal| ExecOutcome {
            exit_code: code,
            signal,
            ..Default::default()
        };
        assert_eq!(verdict(&outcome(Some(0), None), false).0, ExecStatus::Ok);
        assert_eq!(
            verdict(&outcome(Some(3), None), false).0,
            ExecStatus::Failed
        );
        assert_eq!(
            verdict(&outcome(None, Some(9)), false).0,
            ExecStatus::Failed
        );
        assert_eq!(
            verdict(
                &ExecOutcome {
                    timed_out: true,
                    signal: Some(15),
                    ..Default::default()
                },
                false
            )
            .0,
            ExecStatus::Timeout
        );
        assert_eq!(
            verdict(&outcome(None, Some(15)), true).0,
            ExecStatus::Cancelled
        );
        assert_eq!(
            verdict(
                &ExecOutcome {
                    error: Some("no such file".into()),
                    ..Default::default()
                },
                false
            )
            .0,
            ExecStatus::Error
        );
        let not_found = ExecOutcome {
            exit_code: Some(127),
            error: Some("command not found: x".into()),
            ..Default::default()
        };
        assert_eq!(
            verdict(&not_found, false),
            (ExecStatus::Failed, Some("command not found: x".into()))
        );
    }
}

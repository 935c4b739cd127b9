//! The admin API: what the `tether` CLI and the web bridge ask core, and what core answers.
//!
//! Each request opens its own bidirectional stream on an [`ADMIN_ALPN`](crate::ADMIN_ALPN)
//! connection, sends one [`AdminRequest`] frame and finishes its side; core answers with one or
//! more [`AdminResponse`] frames (lists come in chunks) and finishes. Frames are at most
//! [`MAX_ADMIN_FRAME_LEN`](crate::limits::MAX_ADMIN_FRAME_LEN) bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::alerts::{Alert, AlertDetail, AlertQuery, AlertRule, Channel, Delivery};
use crate::bytes::ByteBuf;
use crate::error::ErrorCode;
use crate::exec::OutputStream;
use crate::facts::StaticFacts;
use crate::fleet::{NodePage, NodeQuery, Overview, PathView, WatchSpec};
use crate::groups::GroupView;
use crate::heartbeat::Metrics;
use crate::history::{FleetMetricsAnswer, FleetMetricsQuery, MetricsAnswer, MetricsQuery};
use crate::ids::{ApplicationId, ExecutionId, NodeId};
use crate::limits;
use crate::tty::{TtyAuthorize, TtyGrant, TtySessionView};
use crate::users::{
    AuditQuery, AuditVerifyReport, AuditView, CertView, ClientInfo, NewUser, Secret, SessionView,
    UserView,
};

/// A request from an admin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AdminRequest {
    /// Who am I, and is core there?
    Ping,
    /// Enrollment applications, optionally only those in one status.
    ListApplications {
        /// Filter.
        status: Option<ApplicationStatus>,
        /// At most this many, newest first (a fleet of 100,000 has as many decided
        /// applications); none for all.
        limit: Option<u32>,
    },
    /// Approve an application (id or unique prefix).
    ApproveApplication {
        /// Application id or unique prefix.
        id: String,
    },
    /// Reject an application (id or unique prefix).
    RejectApplication {
        /// Application id or unique prefix.
        id: String,
        /// Told to the node and kept on the record.
        reason: String,
    },
    /// Nodes, filtered.
    ListNodes {
        /// Only nodes in this status.
        status: Option<NodeStatus>,
        /// Only nodes that carry all of these labels.
        labels: Vec<(String, String)>,
        /// Only nodes in this group or a group below it.
        group: Option<String>,
        /// Include soft-deleted nodes.
        include_deleted: bool,
    },
    /// One page of nodes, searched, filtered and sorted by core. Answer: `NodePage`.
    NodePage(NodeQuery),
    /// The fleet at a glance: counts, versions, recent events. Answer: `Overview`.
    Overview,
    /// One node's metrics history over a range, at a step. Answer: `Metrics`.
    NodeMetrics(MetricsQuery),
    /// The fleet's trend: each series' median and 95th percentile across nodes over a range.
    /// Answer: `FleetMetrics`.
    FleetMetrics(FleetMetricsQuery),
    /// Live figures for a page: `Overview`, `NodePage` and `Node` frames as they change (see
    /// [`WatchSpec`]); the request takes its stream.
    Watch(WatchSpec),
    /// One node, every fact and the latest metrics.
    ShowNode {
        /// Node id or unique prefix.
        id: String,
    },
    /// Set and remove labels.
    LabelNode {
        /// Node id or unique prefix.
        id: String,
        /// Labels to set (replacing any value a key had).
        set: Vec<(String, String)>,
        /// Label keys to remove.
        remove: Vec<String>,
    },
    /// Switch maintenance mode.
    SetMaintenance {
        /// Node id or unique prefix.
        id: String,
        /// On or off.
        on: bool,
    },
    /// Soft-delete a node: record kept, secret revoked, connection closed, node told to exit.
    DeleteNode {
        /// Node id or unique prefix.
        id: String,
    },
    /// Run a command on the selected nodes. The client keeps its side of the stream open: a later
    /// `CancelExec` frame on it cancels the run. Answers: `ExecStarted`, then `ExecOutput` and
    /// `ExecNodeDone` as they happen, then `ExecFinished`.
    Exec(ExecSpec),
    /// Cancel the execution running on this stream (sent after `Exec`).
    CancelExec,
    /// Stored executions, newest first.
    ExecHistory {
        /// Only executions that ran on this node (id or unique prefix).
        node: Option<String>,
        /// At most this many.
        limit: u32,
    },
    /// One stored execution with each node's result and kept output.
    ShowExec {
        /// Execution id or unique prefix.
        id: String,
    },
    /// Add users to, or remove them from, a node's allowed list (admins only). Answer: `Node`.
    SetAllowedUsers {
        /// Node id or unique prefix.
        id: String,
        /// Users to allow.
        add: Vec<String>,
        /// Users to remove.
        remove: Vec<String>,
    },
    /// Step one of a terminal: answer `TtyGrant` (see [`crate::tty`]).
    AuthorizeTty(TtyAuthorize),
    /// Step two: present the token; the stream then carries terminal frames (see [`crate::tty`]).
    OpenTty {
        /// The token from `TtyGrant`.
        token: String,
    },
    /// Terminal session records, newest first. Answer: `TtySessions` chunks.
    ListTty {
        /// Only pending and connected sessions.
        active: bool,
        /// Only sessions on this node (id or unique prefix).
        node: Option<String>,
        /// At most this many.
        limit: u32,
    },
    /// One terminal session's record. Answer: `TtySession`.
    ShowTty {
        /// Session id or unique prefix.
        id: String,
    },
    /// End a live session (admins only). Answer: `TtySession`.
    KillTty {
        /// Session id or unique prefix.
        id: String,
    },
    /// A session's recording (admins, or the session's own user). Answer: `TtySession`, then
    /// the recording file in `Recording` chunks, as stored (see [`AdminResponse::Recording`]).
    TtyRecording {
        /// Session id or unique prefix.
        id: String,
    },
    /// What this core process holds right now: connections, sessions, counters since start.
    Status,
    /// A consistent backup of the running core, for a new core to take over from (admins
    /// only). Answer: `BackupStarted`, the archive in `BackupChunk`s, then `BackupDone`.
    Backup {
        /// Include the terminal recordings.
        recordings: bool,
    },
    /// Create a user (admins). Answer: `User`.
    UserAdd(NewUser),
    /// Every user. Answer: `Users` chunks.
    UserList,
    /// One user. Answer: `User`.
    UserShow {
        /// User name.
        name: String,
    },
    /// Change a user's role; applies to open connections and sessions at once. Answer: `User`.
    UserRole {
        /// User name.
        name: String,
        /// The new role.
        role: Role,
    },
    /// Enable or disable a user. Disabling closes the user's connections, ends their
    /// terminals and logs out their sessions. Answer: `User`.
    UserEnable {
        /// User name.
        name: String,
        /// Enabled or not.
        enabled: bool,
    },
    /// Set a user's password (admins, or the user for themself); the user's login sessions
    /// end. Answer: `User`.
    UserPasswd {
        /// User name.
        name: String,
        /// The new password.
        password: Secret,
        /// The current password: required when users change their own through a browser
        /// session (a stolen session must not take the account over).
        current: Option<Secret>,
    },
    /// Delete a user: certificates revoked, sessions ended, connections closed. Answer: `User`
    /// (as it was).
    UserDelete {
        /// User name.
        name: String,
    },
    /// Issue a certificate for a user's public key (the client makes the key pair; the private
    /// key never travels). Answer: `CertIssued`.
    UserCert {
        /// User name.
        name: String,
        /// DER SubjectPublicKeyInfo (ECDSA P-256).
        public_key: ByteBuf,
        /// How long it lasts, seconds.
        lifetime_secs: u64,
    },
    /// A user's certificates, revoked and expired ones too. Answer: `Certs`.
    UserCerts {
        /// User name.
        name: String,
    },
    /// Revoke a certificate: connections using it close at once. Answer: `Cert`.
    RevokeCert {
        /// Serial number, hex (as `user certs` shows it).
        serial: String,
    },
    /// A user's login sessions. Answer: `Sessions`.
    UserSessions {
        /// User name.
        name: String,
    },
    /// End a user's login sessions, or one of them. Answer: `LoggedOut`.
    UserLogout {
        /// User name.
        name: String,
        /// Only this session (its public id).
        session: Option<String>,
    },
    /// Log a user in by password (the bridge's identity only). Answer: `LoggedIn`. Unknown
    /// user, wrong password and disabled user get one answer.
    Login {
        /// User name.
        user: String,
        /// Password.
        password: Secret,
        /// The browser.
        client: ClientInfo,
    },
    /// End the session of this token (the bridge's identity only). Answer: `LoggedOut`.
    Logout {
        /// The session token.
        token: Secret,
    },
    /// A request made by a logged-in user through the bridge (the bridge's identity only):
    /// core checks the session, then authorizes and audits the inner request as that user.
    /// Build it with [`AdminRequest::as_user`].
    AsUser {
        /// The session token.
        token: Secret,
        /// The browser.
        client: ClientInfo,
        /// What the user asks: an encoded `AdminRequest`, decoded by core on its own. Bytes,
        /// not a nested request, so that decoding a frame never recurses: a frame of nested
        /// requests could otherwise exhaust the decoder's stack.
        request: ByteBuf,
    },
    /// Audit records, newest first (admins). Answer: `AuditRecords` chunks.
    Audit(AuditQuery),
    /// Recompute the audit chain (admins). Answer: `AuditVerified`.
    AuditVerify,
    /// Add an alert rule (its `created_by` and `created_at_ms` are core's to set). Answer:
    /// `AlertRule`.
    AlertRuleAdd {
        /// The rule; its `targets.nodes` are core's to fill from `nodes`.
        rule: AlertRule,
        /// Nodes it watches by id, unique id prefix or hostname, besides its labels.
        nodes: Vec<String>,
    },
    /// Every alert rule, by name. Answer: `AlertRules`.
    AlertRuleList,
    /// One rule. Answer: `AlertRule`.
    AlertRuleShow {
        /// Its name.
        name: String,
    },
    /// Enable or disable a rule (disabling resolves its firing alerts). Answer: `AlertRule`.
    AlertRuleEnable {
        /// Its name.
        name: String,
        /// On or off.
        enabled: bool,
    },
    /// Delete a rule; its firing alerts resolve. Answer: `AlertRule` (as it was).
    AlertRuleDelete {
        /// Its name.
        name: String,
    },
    /// Alerts, newest first. Answer: `Alerts`.
    AlertList(AlertQuery),
    /// One alert and its deliveries. Answer: `AlertDetail`.
    AlertShow {
        /// Its number.
        id: u64,
    },
    /// Acknowledge an alert: someone is on it (it stays firing until its condition ends).
    /// Answer: `Alert`.
    AlertAck {
        /// Its number.
        id: u64,
    },
    /// Add a notification channel. Answer: `AlertChannel` (secrets redacted).
    AlertChannelAdd(Channel),
    /// Every channel, secrets redacted. Answer: `AlertChannels`.
    AlertChannelList,
    /// Delete a channel (refused while a rule names it). Answer: `AlertChannel`.
    AlertChannelDelete {
        /// Its name.
        name: String,
    },
    /// Send a test notification through a channel now: one attempt, no retries, recorded under
    /// no alert. Answer: `AlertDelivery` (whether the receiver took it, and if not why).
    AlertChannelTest {
        /// Its name.
        name: String,
    },
    /// Add a node group. Answer: `Group`.
    GroupAdd {
        /// Its name ([`crate::groups::check_name`]).
        name: String,
        /// The group it goes below; none: the top.
        parent: Option<String>,
        /// Free text.
        description: String,
        /// Order among siblings (then by name).
        sort_order: i64,
    },
    /// Every group, depth first, siblings in order. Answer: `Groups`.
    GroupList,
    /// One group. Answer: `Group`.
    GroupShow {
        /// Its name.
        name: String,
    },
    /// Give a group another parent (none: the top); a group cannot go below itself.
    /// Answer: `Group`.
    GroupMove {
        /// Its name.
        name: String,
        /// The new parent's name.
        parent: Option<String>,
    },
    /// Delete a group: refused while it holds nodes or groups, unless `force`, which moves them
    /// to its parent (or out of any group). Answer: `Group` (as it was).
    GroupDelete {
        /// Its name.
        name: String,
        /// Move what it holds to its parent.
        force: bool,
    },
    /// Put a node in a group, or in none. Answer: `Node`.
    NodeGroup {
        /// Node id, unique prefix or hostname.
        node: String,
        /// The group's name; none: out of any group.
        group: Option<String>,
    },
    /// Add a scheduled task. Answer: `Task`.
    TaskAdd(crate::tasks::TaskSpec),
    /// Change a task; what is given replaces what was. Answer: `Task`.
    TaskEdit {
        /// Its name.
        name: String,
        /// The changes.
        changes: crate::tasks::TaskChanges,
    },
    /// Every task, by name. Answer: `Tasks` frames (a few tasks each: scripts are large).
    TaskList,
    /// One task. Answer: `Task`.
    TaskShow {
        /// Its name.
        name: String,
    },
    /// Enable or disable a task (a run going on is left to finish). Answer: `Task`.
    TaskEnable {
        /// Its name.
        name: String,
        /// On or off.
        enabled: bool,
    },
    /// Delete a task and its runs' records (the executions stay in `exec history`); a run
    /// going on is cancelled. Answer: `Task` (as it was).
    TaskDelete {
        /// Its name.
        name: String,
    },
    /// Run a task now, whatever its schedule; refused while a run is going on.
    /// Answer: `TaskRun` (started).
    TaskRun {
        /// Its name.
        name: String,
    },
    /// A task's runs, newest first, with each node's result. Answer: `TaskRuns` frames, one
    /// run per frame, a large run's nodes over several (the same run repeated: join them).
    TaskHistory {
        /// Its name.
        name: String,
        /// At most this many runs.
        limit: u32,
        /// Only this run.
        run: Option<u64>,
    },
    /// The next times a cron expression is due in a time zone (the web form's preview), without
    /// changing anything. Answer: `CronTimes`.
    CronPreview {
        /// The expression.
        cron: String,
        /// IANA time zone.
        timezone: String,
        /// How many times (at most 20).
        count: u32,
    },
    /// Upload an agent release: the file follows on the stream as
    /// [`UploadFrame`](crate::releases::UploadFrame)s, then the stream ends. Core checks size,
    /// SHA-256 and signature (against the release keys it trusts) before keeping it.
    /// Answer: `Releases` with the one kept.
    ReleaseUpload {
        /// The signed manifest.
        manifest: crate::releases::Manifest,
        /// Release notes.
        notes: String,
    },
    /// Every release, newest first. Answer: `Releases`.
    ReleaseList,
    /// A version's builds (one per OS and architecture). Answer: `Releases`.
    ReleaseShow {
        /// The version.
        version: String,
    },
    /// Delete a version's builds (only one OS/architecture's when given); refused while a
    /// deploy that has not ended uses one. Answer: `Releases` (those deleted).
    ReleaseDelete {
        /// The version.
        version: String,
        /// Only this OS's build.
        os: Option<String>,
        /// Only this architecture's build.
        arch: Option<String>,
    },
    /// Deploy a release. Answer: `Deploy` (started).
    ReleaseDeploy(crate::deploys::DeploySpec),
    /// Deploys, newest first. Answer: `Deploys`.
    DeployList {
        /// At most this many.
        limit: u32,
    },
    /// A deploy and each node's state and progress. Answer: `Deploy`, then `DeployNodes`
    /// frames (a few thousand nodes each).
    DeployStatus {
        /// The deploy.
        id: u64,
    },
    /// Pause, resume or cancel a deploy. Answer: `Deploy`.
    DeployControl {
        /// The deploy.
        id: u64,
        /// What to do.
        action: crate::deploys::DeployAction,
    },
    /// Put every node deploy `id` updated back to the agent it ran before (a new deploy).
    /// Answer: `Deploy` (the rollback's).
    DeployRollback {
        /// The deploy to undo.
        id: u64,
    },
}

impl AdminRequest {
    /// `request`, made by the user of session `token` through the bridge.
    pub fn as_user(token: Secret, client: ClientInfo, request: &AdminRequest) -> AdminRequest {
        AdminRequest::AsUser {
            token,
            client,
            request: ByteBuf(crate::codec::encode(request)),
        }
    }

    /// The request inside an `AsUser`, decoded; an error if the bytes are not a request.
    pub fn decode_inner(bytes: &[u8]) -> Result<AdminRequest, crate::codec::DecodeError> {
        crate::codec::decode(bytes)
    }

    /// The request's name, as the audit log records it (`ListNodes`, `UserAdd`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            AdminRequest::Ping => "Ping",
            AdminRequest::ListApplications { .. } => "ListApplications",
            AdminRequest::ApproveApplication { .. } => "ApproveApplication",
            AdminRequest::RejectApplication { .. } => "RejectApplication",
            AdminRequest::ListNodes { .. } => "ListNodes",
            AdminRequest::NodePage(_) => "NodePage",
            AdminRequest::Overview => "Overview",
            AdminRequest::NodeMetrics(_) => "NodeMetrics",
            AdminRequest::FleetMetrics(_) => "FleetMetrics",
            AdminRequest::Watch(_) => "Watch",
            AdminRequest::ShowNode { .. } => "ShowNode",
            AdminRequest::LabelNode { .. } => "LabelNode",
            AdminRequest::SetMaintenance { .. } => "SetMaintenance",
            AdminRequest::DeleteNode { .. } => "DeleteNode",
            AdminRequest::Exec(_) => "Exec",
            AdminRequest::CancelExec => "CancelExec",
            AdminRequest::ExecHistory { .. } => "ExecHistory",
            AdminRequest::ShowExec { .. } => "ShowExec",
            AdminRequest::SetAllowedUsers { .. } => "SetAllowedUsers",
            AdminRequest::AuthorizeTty(_) => "AuthorizeTty",
            AdminRequest::OpenTty { .. } => "OpenTty",
            AdminRequest::ListTty { .. } => "ListTty",
            AdminRequest::ShowTty { .. } => "ShowTty",
            AdminRequest::KillTty { .. } => "KillTty",
            AdminRequest::TtyRecording { .. } => "TtyRecording",
            AdminRequest::Status => "Status",
            AdminRequest::Backup { .. } => "Backup",
            AdminRequest::UserAdd(_) => "UserAdd",
            AdminRequest::UserList => "UserList",
            AdminRequest::UserShow { .. } => "UserShow",
            AdminRequest::UserRole { .. } => "UserRole",
            AdminRequest::UserEnable { .. } => "UserEnable",
            AdminRequest::UserPasswd { .. } => "UserPasswd",
            AdminRequest::UserDelete { .. } => "UserDelete",
            AdminRequest::UserCert { .. } => "UserCert",
            AdminRequest::UserCerts { .. } => "UserCerts",
            AdminRequest::RevokeCert { .. } => "RevokeCert",
            AdminRequest::UserSessions { .. } => "UserSessions",
            AdminRequest::UserLogout { .. } => "UserLogout",
            AdminRequest::Login { .. } => "Login",
            AdminRequest::Logout { .. } => "Logout",
            AdminRequest::AsUser { .. } => "AsUser",
            AdminRequest::Audit(_) => "Audit",
            AdminRequest::AuditVerify => "AuditVerify",
            AdminRequest::AlertRuleAdd { .. } => "AlertRuleAdd",
            AdminRequest::AlertRuleList => "AlertRuleList",
            AdminRequest::AlertRuleShow { .. } => "AlertRuleShow",
            AdminRequest::AlertRuleEnable { .. } => "AlertRuleEnable",
            AdminRequest::AlertRuleDelete { .. } => "AlertRuleDelete",
            AdminRequest::AlertList(_) => "AlertList",
            AdminRequest::AlertShow { .. } => "AlertShow",
            AdminRequest::AlertAck { .. } => "AlertAck",
            AdminRequest::AlertChannelAdd(_) => "AlertChannelAdd",
            AdminRequest::AlertChannelList => "AlertChannelList",
            AdminRequest::AlertChannelDelete { .. } => "AlertChannelDelete",
            AdminRequest::AlertChannelTest { .. } => "AlertChannelTest",
            AdminRequest::GroupAdd { .. } => "GroupAdd",
            AdminRequest::GroupList => "GroupList",
            AdminRequest::GroupShow { .. } => "GroupShow",
            AdminRequest::GroupMove { .. } => "GroupMove",
            AdminRequest::GroupDelete { .. } => "GroupDelete",
            AdminRequest::NodeGroup { .. } => "NodeGroup",
            AdminRequest::TaskAdd(_) => "TaskAdd",
            AdminRequest::TaskEdit { .. } => "TaskEdit",
            AdminRequest::TaskList => "TaskList",
            AdminRequest::TaskShow { .. } => "TaskShow",
            AdminRequest::TaskEnable { .. } => "TaskEnable",
            AdminRequest::TaskDelete { .. } => "TaskDelete",
            AdminRequest::TaskRun { .. } => "TaskRun",
            AdminRequest::TaskHistory { .. } => "TaskHistory",
            AdminRequest::CronPreview { .. } => "CronPreview",
            AdminRequest::ReleaseUpload { .. } => "ReleaseUpload",
            AdminRequest::ReleaseList => "ReleaseList",
            AdminRequest::ReleaseShow { .. } => "ReleaseShow",
            AdminRequest::ReleaseDelete { .. } => "ReleaseDelete",
            AdminRequest::ReleaseDeploy(_) => "ReleaseDeploy",
            AdminRequest::DeployList { .. } => "DeployList",
            AdminRequest::DeployStatus { .. } => "DeployStatus",
            AdminRequest::DeployControl { .. } => "DeployControl",
            AdminRequest::DeployRollback { .. } => "DeployRollback",
        }
    }
}

/// What to run, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// Node ids, unique id prefixes, or hostnames (globs `*`, `?`, `[...]` allowed).
    pub targets: Vec<String>,
    /// Also every node carrying all of these labels.
    pub labels: Vec<(String, String)>,
    /// Also every node in these groups or any group below them.
    pub groups: Vec<String>,
    /// Also every node.
    pub all: bool,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Kill after this long.
    pub timeout_ms: Option<u64>,
    /// Nodes running at once.
    pub concurrency: u32,
}

/// A response frame from core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AdminResponse {
    /// Answer to `Ping`.
    Pong {
        /// Core's version.
        core_version: String,
        /// The admin name in the client certificate.
        admin: String,
        /// That user's role.
        role: Role,
        /// The actions of core's role table this user may use (`nodes.view`, `exec.run`, ...),
        /// so a page can leave out what would be refused.
        permissions: Vec<String>,
    },
    /// A chunk of applications; a list may come in several.
    Applications(Vec<ApplicationView>),
    /// One application after a decision.
    Application(ApplicationView),
    /// A chunk of nodes; a list may come in several.
    Nodes(Vec<NodeView>),
    /// Answer to `NodePage`.
    NodePage(NodePage),
    /// Answer to `Overview`.
    Overview(Overview),
    /// Answer to `NodeMetrics`.
    Metrics(MetricsAnswer),
    /// Answer to `FleetMetrics`.
    FleetMetrics(FleetMetricsAnswer),
    /// One node.
    Node(NodeView),
    /// The execution started: its id and the nodes it targets.
    ExecStarted {
        /// Execution id.
        exec_id: ExecutionId,
        /// Every node selected, in the order results may arrive.
        nodes: Vec<ExecTarget>,
    },
    /// Output from one node.
    ExecOutput {
        /// From which node.
        node_id: NodeId,
        /// Which stream.
        stream: OutputStream,
        /// The bytes, as the process wrote them.
        data: ByteBuf,
    },
    /// One node is done.
    ExecNodeDone(NodeExecView),
    /// Every node is done; the execution as stored.
    ExecFinished(ExecutionView),
    /// A chunk of stored executions.
    Executions(Vec<ExecutionView>),
    /// One stored execution; a large one comes as several frames, each repeating the header with
    /// the next nodes.
    Execution(ExecutionDetail),
    /// A terminal token (step one of a terminal).
    TtyGrant(TtyGrant),
    /// A chunk of terminal session records.
    TtySessions(Vec<TtySessionView>),
    /// One terminal session record.
    TtySession(TtySessionView),
    /// A piece of a recording file, as stored: a zstd stream of asciicast v2 (or, for
    /// recordings made before they were compressed, plain asciicast v2; the first bytes tell).
    Recording(ByteBuf),
    /// The request failed.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// A sentence for the admin.
        message: String,
    },
    /// Answer to `Status`.
    Status(CoreStatus),
    /// A backup began: what it holds.
    BackupStarted(BackupInfo),
    /// A piece of the backup archive (a zstd-compressed tar, see `docs/operations.md`).
    BackupChunk(ByteBuf),
    /// The backup archive is complete.
    BackupDone {
        /// Its length, bytes.
        bytes: u64,
        /// SHA-256 of the whole archive as sent.
        sha256: crate::control::Digest,
    },
    /// One user.
    User(UserView),
    /// A chunk of users.
    Users(Vec<UserView>),
    /// A certificate was issued.
    CertIssued {
        /// The certificate, PEM.
        cert_pem: String,
        /// As core records it.
        cert: CertView,
    },
    /// Certificates.
    Certs(Vec<CertView>),
    /// One certificate.
    Cert(CertView),
    /// Login sessions.
    Sessions(Vec<SessionView>),
    /// A login succeeded.
    LoggedIn {
        /// The session token: 256 random bits, URL-safe base64. Shown only here; core keeps
        /// its SHA-256.
        token: Secret,
        /// The session.
        session: SessionView,
    },
    /// Sessions ended.
    LoggedOut {
        /// How many.
        sessions: u32,
    },
    /// A chunk of audit records.
    AuditRecords(Vec<AuditView>),
    /// What `AuditVerify` found.
    AuditVerified(AuditVerifyReport),
    /// One alert rule.
    AlertRule(AlertRule),
    /// Alert rules.
    AlertRules(Vec<AlertRule>),
    /// A chunk of alerts.
    Alerts(Vec<Alert>),
    /// One alert.
    Alert(Alert),
    /// One alert with its deliveries.
    AlertDetail(AlertDetail),
    /// One channel, secrets redacted.
    AlertChannel(Channel),
    /// Channels, secrets redacted.
    AlertChannels(Vec<Channel>),
    /// How one attempt to tell a channel went (`AlertChannelTest`).
    AlertDelivery(Delivery),
    /// One group.
    Group(GroupView),
    /// Groups, depth first.
    Groups(Vec<GroupView>),
    /// One task.
    Task(crate::tasks::TaskView),
    /// Tasks, by name.
    Tasks(Vec<crate::tasks::TaskView>),
    /// A run just started (`TaskRun`).
    TaskRun(crate::tasks::TaskRun),
    /// Runs, newest first, with per-node results.
    TaskRuns(Vec<crate::tasks::RunView>),
    /// Due times, unix ms, with the expression as core reads it (`CronPreview`).
    CronTimes {
        /// The expression, as given.
        cron: String,
        /// The time zone.
        timezone: String,
        /// The next due times, unix ms.
        times_ms: Vec<i64>,
    },
    /// Agent releases.
    Releases(Vec<crate::releases::ReleaseView>),
    /// One deploy.
    Deploy(crate::deploys::DeployView),
    /// Deploys, newest first.
    Deploys(Vec<crate::deploys::DeployView>),
    /// Nodes of the deploy in the `Deploy` frame before.
    DeployNodes(Vec<crate::deploys::NodeUpdate>),
}

/// What a backup holds, said before it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// Core's version.
    pub core_version: String,
    /// The address core advertises (nodes dial it).
    pub core_addr: String,
    /// Nodes in the database (deleted ones included).
    pub nodes: u64,
    /// Size of the database copy, bytes (before compression).
    pub database_bytes: u64,
    /// Recordings included.
    pub recordings: u32,
    /// Their size, bytes.
    pub recordings_bytes: u64,
}

/// The running core process at a glance. Counters start at zero when the process starts; the
/// stored fleet (every node ever enrolled) is `ListNodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreStatus {
    /// Core's version.
    pub core_version: String,
    /// When this process started (Unix ms).
    pub started_at_ms: i64,
    /// QUIC connections open now: nodes, admins, and handshakes under way.
    pub connections: u64,
    /// Nodes authenticated on this process now.
    pub nodes_connected: u64,
    /// Of those, the ones not silent: online from authentication until no heartbeat has come
    /// for `offline_after` (then offline on a live connection, until the next one).
    pub nodes_online: u64,
    /// Heartbeats accepted since start.
    pub heartbeats_received: u64,
    /// Datagrams that did not decode since start.
    pub datagrams_malformed: u64,
    /// Enrollments approved and answered since start (automatic or by an admin).
    pub enrollments_approved: u64,
    /// First packets of new connections answered with a retry or left unanswered since start,
    /// because core had many handshakes under way (their nodes retry).
    pub handshakes_deferred: u64,
}

/// A node's status (seed 001's `assets.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeStatus {
    /// Connected, authenticated, heartbeats arriving.
    Online,
    /// Not connected, or no heartbeat within `offline_after`.
    Offline,
    /// Put in maintenance by an admin (whatever its connection).
    Maintenance,
}

/// An application's status (seed 001's `agent_register_apply.apply_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ApplicationStatus {
    /// Waiting for an admin.
    Pending,
    /// Approved: a node record exists.
    Approved,
    /// Rejected.
    Rejected,
}

/// What became of an execution on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExecStatus {
    /// Not sent yet (waiting for a concurrency slot).
    Pending,
    /// Sent, not finished.
    Running,
    /// Exited with code 0.
    Ok,
    /// Exited with another code, or was killed by a signal.
    Failed,
    /// Killed because its timeout passed.
    Timeout,
    /// The node was not connected: nothing was sent.
    Offline,
    /// Cancelled by an admin (or the admin went away).
    Cancelled,
    /// Could not run, or the node or its stream failed mid-run.
    Error,
    /// Core stopped while it ran: its end is unknown.
    Interrupted,
    /// The node's policy refused it: nothing ran.
    Refused,
}

impl ExecStatus {
    /// Whether this is a final state.
    pub fn is_final(self) -> bool {
        !matches!(self, ExecStatus::Pending | ExecStatus::Running)
    }
}

/// The state of a whole execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExecutionState {
    /// Some nodes are not done.
    Running,
    /// Every node is done.
    Finished,
    /// Cancelled before every node was done.
    Cancelled,
    /// Core stopped while it ran.
    Interrupted,
}

text_enum!(ExecStatus "execution status" {
    Pending = "pending", Running = "running", Ok = "ok", Failed = "failed", Timeout = "timeout",
    Offline = "offline", Cancelled = "cancelled", Error = "error", Interrupted = "interrupted",
    Refused = "refused"
});
text_enum!(ExecutionState "execution state" { Running = "running", Finished = "finished", Cancelled = "cancelled", Interrupted = "interrupted" });

/// A node an execution targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecTarget {
    /// Node id.
    pub node_id: NodeId,
    /// Its hostname.
    pub hostname: String,
}

/// One node's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeExecView {
    /// Node id.
    pub node_id: NodeId,
    /// Hostname at the time.
    pub hostname: String,
    /// What became of it.
    pub status: ExecStatus,
    /// Exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Terminating signal, if killed by one.
    pub signal: Option<i32>,
    /// When it started, unix ms.
    pub started_at_ms: Option<i64>,
    /// When it finished, unix ms.
    pub finished_at_ms: Option<i64>,
    /// Why it is `error`, `offline`, `cancelled` or `interrupted`.
    pub error: Option<String>,
    /// Bytes written to standard output in all.
    pub stdout_bytes: u64,
    /// Bytes written to standard error in all.
    pub stderr_bytes: u64,
    /// Kept standard output (in `ShowExec` answers).
    pub stdout: Option<ByteBuf>,
    /// Kept standard error (in `ShowExec` answers).
    pub stderr: Option<ByteBuf>,
    /// Output beyond the kept cap was not stored.
    pub truncated: bool,
}

/// Per-status counts of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExecCounts {
    /// Exit code 0.
    pub ok: u32,
    /// Non-zero exit or signal.
    pub failed: u32,
    /// Timed out.
    pub timeout: u32,
    /// Not connected.
    pub offline: u32,
    /// Cancelled.
    pub cancelled: u32,
    /// Failed to run or lost mid-run.
    pub error: u32,
    /// Unknown end (core stopped).
    pub interrupted: u32,
    /// Not done yet.
    pub unfinished: u32,
    /// Refused by the node's policy.
    pub refused: u32,
}

impl ExecCounts {
    /// Counts one more node in `status`.
    pub fn add(&mut self, status: ExecStatus) {
        *self.slot(status) += 1;
    }

    /// Counts one node fewer in `status` (it moved on).
    pub fn remove(&mut self, status: ExecStatus) {
        let slot = self.slot(status);
        *slot = slot.saturating_sub(1);
    }

    fn slot(&mut self, status: ExecStatus) -> &mut u32 {
        match status {
            ExecStatus::Ok => &mut self.ok,
            ExecStatus::Failed => &mut self.failed,
            ExecStatus::Timeout => &mut self.timeout,
            ExecStatus::Offline => &mut self.offline,
            ExecStatus::Cancelled => &mut self.cancelled,
            ExecStatus::Error => &mut self.error,
            ExecStatus::Interrupted => &mut self.interrupted,
            ExecStatus::Refused => &mut self.refused,
            ExecStatus::Pending | ExecStatus::Running => &mut self.unfinished,
        }
    }
}

/// An execution as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionView {
    /// Execution id.
    pub id: ExecutionId,
    /// Who ran it.
    pub admin: String,
    /// What ran.
    pub command: Vec<String>,
    /// Names of the environment variables given (values are not stored).
    pub env_keys: Vec<String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Timeout.
    pub timeout_ms: Option<u64>,
    /// The selection as the admin wrote it (targets, labels, `--all`).
    pub selector: String,
    /// When it started, unix ms.
    pub created_at_ms: i64,
    /// When the last node finished, unix ms.
    pub finished_at_ms: Option<i64>,
    /// State of the whole execution.
    pub state: ExecutionState,
    /// Nodes targeted.
    pub nodes: u32,
    /// Per-status counts.
    pub counts: ExecCounts,
    /// When its kept output was deleted to keep all kept output within `exec_output_max_total`
    /// (the results stay), unix ms.
    pub output_pruned_at_ms: Option<i64>,
    /// The task run it belongs to, if a task started it.
    pub origin: Option<crate::tasks::ExecOrigin>,
}

/// An execution with each node's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionDetail {
    /// The execution.
    pub execution: ExecutionView,
    /// Each node's result.
    pub nodes: Vec<NodeExecView>,
}

/// What a user may do (seed 002 §6.1.2), kept on the user's record; core's role table says
/// which requests each may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Reads only.
    Viewer,
    /// Reads, edits nodes, runs commands, opens terminals where allowed.
    Operator,
    /// Everything.
    Admin,
    /// A web bridge's identity: logs users in by password and forwards their requests within
    /// their sessions; alone it can do nothing else.
    Bridge,
}

text_enum!(Role "role" { Viewer = "viewer", Operator = "operator", Admin = "admin", Bridge = "bridge" });

impl Role {
    /// The roles people have (the bridge's is a service's).
    pub const PEOPLE: [Role; 3] = [Role::Admin, Role::Operator, Role::Viewer];
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Viewer, Role::Bridge];
}

/// User names: 1–64 of letters, digits, `-`, `_`, `.`, not starting with `.`.
pub fn check_user_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "user name {name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        ))
    }
}

text_enum!(NodeStatus "node status" { Online = "online", Offline = "offline", Maintenance = "maintenance" });
text_enum!(ApplicationStatus "application status" { Pending = "pending", Approved = "approved", Rejected = "rejected" });

/// A node as an admin sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// Node id.
    pub id: NodeId,
    /// Hostname (from its latest facts, else from enrollment).
    pub hostname: String,
    /// Status.
    pub status: NodeStatus,
    /// Whether an authenticated connection is open right now.
    pub connected: bool,
    /// Maintenance mode.
    pub maintenance: bool,
    /// Soft-deleted.
    pub deleted: bool,
    /// Last heartbeat or connection event, unix ms.
    pub last_seen_ms: Option<i64>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Users (besides admins) allowed to open terminals on it.
    pub allowed_users: Vec<String>,
    /// When the node was approved, unix ms.
    pub created_at_ms: i64,
    /// When the record last changed, unix ms.
    pub updated_at_ms: i64,
    /// Address core sees the connection coming from (the public address).
    pub public_addr: Option<String>,
    /// Node clock minus core clock, from the last refused or accepted timestamp, when beyond
    /// one second.
    pub clock_skew_ms: Option<i64>,
    /// Agent version.
    pub agent_version: String,
    /// Static facts, once received.
    pub static_facts: Option<StaticFacts>,
    /// Latest metrics, once received since core started.
    pub metrics: Option<Metrics>,
    /// When those metrics arrived, unix ms.
    pub metrics_at_ms: Option<i64>,
    /// Heartbeats accepted on the current connection.
    pub heartbeats_received: u64,
    /// Static facts messages received on the current connection (the node sends them only when
    /// they differ from what core holds).
    pub static_facts_received: u64,
    /// Datagrams on the current connection that did not decode.
    pub malformed_datagrams: u64,
    /// Heartbeats on the current connection refused for clock skew.
    pub skewed_heartbeats: u64,
    /// Another machine tried to use this node's identity (within the last day).
    pub conflict: Option<IdentityConflictView>,
    /// The QUIC path core sees to the node, while connected.
    pub path: Option<PathView>,
    /// The agent's own state: as it last reported it, live while connected, else as kept from
    /// its last connection (seed 002's `agents`).
    pub agent: Option<crate::heartbeat::AgentState>,
    /// The path of the group it is in (`prod/eu/web`), if any.
    pub group: Option<String>,
    /// The policy the node reported it runs (none: not reported, an older agent).
    pub policy: Option<crate::policy::NodePolicy>,
}

/// Another machine's attempt to use a node's identity while the node was connected: its
/// connections are refused, and this flag says who it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityConflictView {
    /// Address its connection came from.
    pub address: String,
    /// Hostname it reported.
    pub hostname: String,
    /// How core told the machines apart.
    pub reason: String,
    /// First attempt, unix ms.
    pub first_at_ms: i64,
    /// Latest attempt, unix ms.
    pub last_at_ms: i64,
    /// Attempts refused.
    pub attempts: u32,
}

/// An enrollment application as an admin sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplicationView {
    /// Application id.
    pub id: ApplicationId,
    /// The node's UUID.
    pub node_id: NodeId,
    /// Hostname the node sent.
    pub hostname: String,
    /// Status.
    pub status: ApplicationStatus,
    /// When the application arrived, unix ms.
    pub created_at_ms: i64,
    /// When an admin decided, unix ms.
    pub decided_at_ms: Option<i64>,
    /// Who decided (admin name, or `auto-approve`).
    pub decided_by: Option<String>,
    /// Rejection reason.
    pub reason: Option<String>,
    /// SHA-256 of the node's public key (DER), hex, so an admin can compare with the node's log.
    pub key_fingerprint: String,
    /// Address the application came from.
    pub remote_addr: Option<String>,
}

/// Checks one label key and value.
pub fn check_label(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > limits::MAX_LABEL_KEY_LEN {
        return Err(format!(
            "label key {key:?} must be 1 to {} characters",
            limits::MAX_LABEL_KEY_LEN
        ));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
    {
        return Err(format!(
            "label key {key:?} may only contain letters, digits, '-', '_', '.' and '/'"
        ));
    }
    if value.len() > limits::MAX_LABEL_VALUE_LEN {
        return Err(format!(
            "label value for {key:?} is longer than {} bytes",
            limits::MAX_LABEL_VALUE_LEN
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("label value for {key:?} has control characters"));
    }
    Ok(())
}

/// Parses `KEY=VALUE`.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("label {text:?} is not KEY=VALUE"))?;
    check_label(key, value)?;
    Ok((key.to_string(), value.to_string()))
}

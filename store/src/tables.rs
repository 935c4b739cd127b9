//! Table definitions. Ids are stored as `u128` (big-endian UUID value), so key order is the order
//! of their hex text and a prefix search is a range scan.

use redb::{Database, TableDefinition};

use crate::StoreError;

/// node id → encoded [`crate::NodeRecord`].
pub(crate) const NODES: TableDefinition<'_, u128, &[u8]> = TableDefinition::new("nodes");
/// node id → 32-byte agent secret. Separate so listing nodes never reads a secret.
pub(crate) const SECRETS: TableDefinition<'_, u128, &[u8]> = TableDefinition::new("secrets");
/// node id → encoded static facts.
pub(crate) const FACTS: TableDefinition<'_, u128, &[u8]> = TableDefinition::new("facts");
/// node id → last heartbeat, unix ms. Small, so periodic flushes are cheap.
pub(crate) const LAST_SEEN: TableDefinition<'_, u128, i64> = TableDefinition::new("last_seen");
/// application id → encoded [`crate::ApplicationRecord`].
pub(crate) const APPLICATIONS: TableDefinition<'_, u128, &[u8]> =
    TableDefinition::new("applications");
/// node id → its latest application id: one application per node id.
pub(crate) const APPLICATION_BY_NODE: TableDefinition<'_, u128, u128> =
    TableDefinition::new("application_by_node");
/// application id → (), for the pending ones only: counts them in O(1).
pub(crate) const PENDING: TableDefinition<'_, u128, ()> = TableDefinition::new("pending");
/// nonce → expiry, unix seconds.
pub(crate) const NONCES: TableDefinition<'_, &[u8], u64> = TableDefinition::new("nonces");
/// (expiry, nonce) → (): expiry index.
pub(crate) const NONCE_EXPIRY: TableDefinition<'_, (u64, &[u8]), ()> =
    TableDefinition::new("nonce_expiry");
/// (hostname, node id) → (): nodes by hostname, deleted ones included. Kept by `save_node`.
pub(crate) const NODE_BY_HOSTNAME: TableDefinition<'_, (&str, u128), ()> =
    TableDefinition::new("node_by_hostname");
/// node id → encoded [`crate::IdentityConflict`].
pub(crate) const NODE_CONFLICTS: TableDefinition<'_, u128, &[u8]> =
    TableDefinition::new("node_conflicts");
/// (node, tier, window start in unix seconds) → the tier's open chunk of metrics history.
/// One per node and tier; see `history::codec`.
pub(crate) const METRICS_OPEN: TableDefinition<'_, (u128, u8), &[u8]> =
    TableDefinition::new("metrics_open");
/// (node, tier, block start in unix seconds) → a sealed block of metrics history.
pub(crate) const METRICS_CHUNKS: TableDefinition<'_, (u128, u8, i64), &[u8]> =
    TableDefinition::new("metrics_chunks");
/// (unix ms, sequence) → encoded [`crate::StatusEvent`].
pub(crate) const STATUS_LOG: TableDefinition<'_, (i64, u64), &[u8]> =
    TableDefinition::new("status_log");

/// node id → the agent's latest [`tether_wire::heartbeat::AgentState`].
pub(crate) const AGENTS: TableDefinition<'_, u128, &[u8]> = TableDefinition::new("agents");
/// rule name → encoded [`tether_wire::alerts::AlertRule`].
pub(crate) const ALERT_RULES: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("alert_rules");
/// channel name → encoded [`tether_wire::alerts::Channel`] (secrets included).
pub(crate) const ALERT_CHANNELS: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("alert_channels");
/// alert number → encoded [`tether_wire::alerts::Alert`].
pub(crate) const ALERTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("alerts");
/// alert number → (), for the firing ones only.
pub(crate) const ALERTS_FIRING: TableDefinition<'_, u64, ()> =
    TableDefinition::new("alerts_firing");
/// (alert number, attempt sequence) → encoded [`tether_wire::alerts::Delivery`].
pub(crate) const ALERT_DELIVERIES: TableDefinition<'_, (u64, u32), &[u8]> =
    TableDefinition::new("alert_deliveries");

/// node id → the encoded [`tether_wire::policy::NodePolicy`] it last reported.
pub(crate) const NODE_POLICY: TableDefinition<'_, u128, &[u8]> =
    TableDefinition::new("node_policy");
/// group number → encoded [`tether_wire::groups::Group`].
pub(crate) const GROUPS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("groups");
/// group name → its number.
pub(crate) const GROUP_BY_NAME: TableDefinition<'_, &str, u64> =
    TableDefinition::new("group_by_name");
/// node id → the number of the group it is in (at most one).
pub(crate) const NODE_GROUP: TableDefinition<'_, u128, u64> = TableDefinition::new("node_group");
/// (group number, node id) → (): a group's nodes, kept with [`NODE_GROUP`].
pub(crate) const GROUP_MEMBERS: TableDefinition<'_, (u64, u128), ()> =
    TableDefinition::new("group_members");
/// task number → encoded [`tether_wire::tasks::Task`].
pub(crate) const TASKS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("tasks");
/// task name → its number.
pub(crate) const TASK_BY_NAME: TableDefinition<'_, &str, u64> =
    TableDefinition::new("task_by_name");
/// (task number, run number) → encoded [`tether_wire::tasks::TaskRun`].
pub(crate) const TASK_RUNS: TableDefinition<'_, (u64, u64), &[u8]> =
    TableDefinition::new("task_runs");
/// (task number, run number) → (), for runs still going: marked interrupted at start-up.
pub(crate) const TASK_RUNNING: TableDefinition<'_, (u64, u64), ()> =
    TableDefinition::new("task_running");

/// release number → encoded [`tether_wire::releases::Release`].
pub(crate) const RELEASES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("releases");
/// (version, OS, architecture) → release number: one build of a version per platform.
pub(crate) const RELEASE_BY_BUILD: TableDefinition<'_, (&str, &str, &str), u64> =
    TableDefinition::new("release_by_build");

/// deploy number → encoded [`tether_wire::deploys::DeployView`] (the deploy with its counts).
pub(crate) const DEPLOYS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("deploys");
/// (deploy number, node id) → encoded [`tether_wire::deploys::NodeUpdate`].
pub(crate) const DEPLOY_NODES: TableDefinition<'_, (u64, u128), &[u8]> =
    TableDefinition::new("deploy_nodes");
/// node id → the deploy it is in while its update there has not ended.
pub(crate) const NODE_DEPLOY: TableDefinition<'_, u128, u64> = TableDefinition::new("node_deploy");

/// name → number: counters kept in step with the tables they count, in the same transactions,
/// and markers of indexes built for databases written before them.
pub(crate) const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
/// [`META`] key: the next group's number.
pub(crate) const GROUPS_NEXT_ID: &str = "groups_next_id";
/// [`META`] key: the next task's number.
pub(crate) const TASKS_NEXT_ID: &str = "tasks_next_id";
/// [`META`] key: the next release's number.
pub(crate) const RELEASES_NEXT_ID: &str = "releases_next_id";
/// [`META`] key: the next deploy's number.
pub(crate) const DEPLOYS_NEXT_ID: &str = "deploys_next_id";
/// [`META`] key: the next alert's number.
pub(crate) const ALERTS_NEXT_ID: &str = "alerts_next_id";
/// [`META`] key: bytes of kept execution output (the values of [`EXEC_OUTPUT`]).
pub(crate) const EXEC_OUTPUT_BYTES: &str = "exec_output_bytes";
/// [`META`] key, present once [`EXEC_WITH_OUTPUT`] covers the database.
pub(crate) const EXEC_WITH_OUTPUT_BUILT: &str = "exec_with_output_built";
/// [`META`] key, present once [`REJECTED_BY_TIME`] covers the database.
pub(crate) const REJECTED_BY_TIME_BUILT: &str = "rejected_by_time_built";
/// (created unix ms, execution id) → (): executions that still keep output, oldest first.
pub(crate) const EXEC_WITH_OUTPUT: TableDefinition<'_, (i64, u128), ()> =
    TableDefinition::new("exec_with_output");
/// (decided unix ms, application id) → (): rejected applications, oldest first.
pub(crate) const REJECTED_BY_TIME: TableDefinition<'_, (i64, u128), ()> =
    TableDefinition::new("rejected_by_time");

/// Calls `$each!(TABLE)` for every table: the one list, so that creating them all and copying
/// them all (backups) can never miss one.
macro_rules! every_table {
    ($each:ident) => {
        $each!(NODES);
        $each!(SECRETS);
        $each!(METRICS_OPEN);
        $each!(METRICS_CHUNKS);
        $each!(FACTS);
        $each!(LAST_SEEN);
        $each!(NODE_BY_HOSTNAME);
        $each!(NODE_CONFLICTS);
        $each!(APPLICATIONS);
        $each!(APPLICATION_BY_NODE);
        $each!(PENDING);
        $each!(NONCES);
        $each!(NONCE_EXPIRY);
        $each!(STATUS_LOG);
        $each!(EXECUTIONS);
        $each!(EXEC_BY_TIME);
        $each!(EXEC_BY_NODE);
        $each!(EXEC_NODES);
        $each!(EXEC_OUTPUT);
        $each!(EXEC_RUNNING);
        $each!(TTY_SESSIONS);
        $each!(TTY_BY_TIME);
        $each!(TTY_BY_NODE);
        $each!(TTY_LIVE);
        $each!(NODE_ACCESS);
        $each!(META);
        $each!(NODE_POLICY);
        $each!(GROUPS);
        $each!(GROUP_BY_NAME);
        $each!(NODE_GROUP);
        $each!(GROUP_MEMBERS);
        $each!(TASKS);
        $each!(TASK_BY_NAME);
        $each!(TASK_RUNS);
        $each!(TASK_RUNNING);
        $each!(RELEASES);
        $each!(RELEASE_BY_BUILD);
        $each!(DEPLOYS);
        $each!(DEPLOY_NODES);
        $each!(NODE_DEPLOY);
        $each!(EXEC_WITH_OUTPUT);
        $each!(REJECTED_BY_TIME);
        $each!(USERS);
        $each!(USER_EMAILS);
        $each!(CERTS);
        $each!(CERTS_BY_USER);
        $each!(SESSIONS);
        $each!(SESSIONS_BY_USER);
        $each!(AUDIT);
        $each!(AUDIT_CHAIN);
        $each!(ALERT_RULES);
        $each!(ALERT_CHANNELS);
        $each!(ALERTS);
        $each!(ALERTS_FIRING);
        $each!(ALERT_DELIVERIES);
        $each!(AGENTS);
    };
}
pub(crate) use every_table;

/// Creates every table so readers never meet a missing one.
pub(crate) fn create_all(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    macro_rules! create {
        ($table:ident) => {
            txn.open_table($table)?;
        };
    }
    every_table!(create);
    crate::nodes::index_hostnames(&txn)?;
    crate::retention::count_exec_output(&txn)?;
    crate::retention::index_rejected(&txn)?;
    txn.commit()?;
    Ok(())
}

/// execution id → encoded [`crate::ExecutionRecord`].
pub(crate) const EXECUTIONS: TableDefinition<'_, u128, &[u8]> = TableDefinition::new("executions");
/// (created unix ms, execution id) → (): newest-first listing.
pub(crate) const EXEC_BY_TIME: TableDefinition<'_, (i64, u128), ()> =
    TableDefinition::new("exec_by_time");
/// (node id, created unix ms, execution id) → (): a node's history.
pub(crate) const EXEC_BY_NODE: TableDefinition<'_, (u128, i64, u128), ()> =
    TableDefinition::new("exec_by_node");
/// (execution id, node id) → encoded [`crate::NodeExecRecord`].
pub(crate) const EXEC_NODES: TableDefinition<'_, (u128, u128), &[u8]> =
    TableDefinition::new("exec_nodes");
/// (execution id, node id, chunk number) → stream tag byte, then output bytes.
pub(crate) const EXEC_OUTPUT: TableDefinition<'_, (u128, u128, u32), &[u8]> =
    TableDefinition::new("exec_output");
/// execution id → (), for executions still running: marked interrupted at start-up.
pub(crate) const EXEC_RUNNING: TableDefinition<'_, u128, ()> = TableDefinition::new("exec_running");

/// session id → encoded [`crate::TtySessionRecord`].
pub(crate) const TTY_SESSIONS: TableDefinition<'_, u128, &[u8]> =
    TableDefinition::new("tty_sessions");
/// (created unix ms, session id) → (): newest-first listing.
pub(crate) const TTY_BY_TIME: TableDefinition<'_, (i64, u128), ()> =
    TableDefinition::new("tty_by_time");
/// (node id, created unix ms, session id) → (): a node's sessions.
pub(crate) const TTY_BY_NODE: TableDefinition<'_, (u128, i64, u128), ()> =
    TableDefinition::new("tty_by_node");
/// session id → (), for pending and connected sessions: marked `error` at start-up.
pub(crate) const TTY_LIVE: TableDefinition<'_, u128, ()> = TableDefinition::new("tty_live");
/// node id → encoded list of users allowed to open terminals on it.
pub(crate) const NODE_ACCESS: TableDefinition<'_, u128, &[u8]> =
    TableDefinition::new("node_access");

/// user name → encoded [`crate::UserRecord`].
pub(crate) const USERS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("users");
/// lower-case email → user name: one user per email.
pub(crate) const USER_EMAILS: TableDefinition<'_, &str, &str> = TableDefinition::new("user_emails");
/// certificate serial (hex) → encoded [`crate::CertRecord`]. Kept after revocation.
pub(crate) const CERTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("certs");
/// (user name, serial) → (): a user's certificates.
pub(crate) const CERTS_BY_USER: TableDefinition<'_, (&str, &str), ()> =
    TableDefinition::new("certs_by_user");
/// SHA-256 of a session token → encoded [`crate::SessionRecord`]. The token itself is never
/// stored.
pub(crate) const SESSIONS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("sessions");
/// (user name, token hash) → (): a user's sessions.
pub(crate) const SESSIONS_BY_USER: TableDefinition<'_, (&str, &[u8]), ()> =
    TableDefinition::new("sessions_by_user");
/// sequence number → hash ‖ previous hash ‖ encoded entry (see `audit.rs`).
pub(crate) const AUDIT: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("audit");
/// `head` / `pruned` → sequence number (8 bytes, big-endian) ‖ hash.
pub(crate) const AUDIT_CHAIN: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("audit_chain");

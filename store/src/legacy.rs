//! The shapes older releases stored, and how each becomes today's. A record keeps its old
//! version byte until it is next written; reading it goes through here.

use serde::Deserialize;
use tether_wire::admin::{ExecCounts, ExecutionState};
use tether_wire::tty::{TtyExit, TtyStatus, WindowSize};
use tether_wire::{ExecutionId, NodeId, TtySessionId};

use crate::records::{ExecutionRecord, TtySessionRecord};
use tether_wire::alerts::{AlertRule, Condition, Severity, Targets};

/// [`Targets`] before groups could be targeted (alert rule version 1).
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct TargetsV1 {
    labels: Vec<(String, String)>,
    nodes: Vec<NodeId>,
}

/// [`AlertRule`] version 1: before groups could be targeted.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct AlertRuleV1 {
    name: String,
    condition: Condition,
    for_ms: u64,
    severity: Severity,
    targets: TargetsV1,
    channels: Vec<String>,
    enabled: bool,
    created_by: String,
    created_at_ms: i64,
}

impl From<AlertRuleV1> for AlertRule {
    fn from(v1: AlertRuleV1) -> Self {
        AlertRule {
            name: v1.name,
            condition: v1.condition,
            for_ms: v1.for_ms,
            severity: v1.severity,
            targets: Targets {
                labels: v1.targets.labels,
                nodes: v1.targets.nodes,
                groups: Vec::new(),
            },
            channels: v1.channels,
            enabled: v1.enabled,
            created_by: v1.created_by,
            created_at_ms: v1.created_at_ms,
        }
    }
}

/// [`ExecCounts`] before refusals by a node's policy were counted (execution records versions
/// 1 and 2).
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct ExecCountsV1 {
    ok: u32,
    failed: u32,
    timeout: u32,
    offline: u32,
    cancelled: u32,
    error: u32,
    interrupted: u32,
    unfinished: u32,
}

impl From<ExecCountsV1> for ExecCounts {
    fn from(v1: ExecCountsV1) -> Self {
        ExecCounts {
            ok: v1.ok,
            failed: v1.failed,
            timeout: v1.timeout,
            offline: v1.offline,
            cancelled: v1.cancelled,
            error: v1.error,
            interrupted: v1.interrupted,
            unfinished: v1.unfinished,
            refused: 0,
        }
    }
}

/// [`ExecutionRecord`] version 3: before scheduled tasks named their executions.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct ExecutionRecordV3 {
    id: ExecutionId,
    admin: String,
    command: Vec<String>,
    env_keys: Vec<String>,
    cwd: Option<String>,
    timeout_ms: Option<u64>,
    selector: String,
    created_at_ms: i64,
    finished_at_ms: Option<i64>,
    state: ExecutionState,
    node_count: u32,
    counts: ExecCounts,
    output_pruned_at_ms: Option<i64>,
}

impl From<ExecutionRecordV3> for ExecutionRecord {
    fn from(v3: ExecutionRecordV3) -> Self {
        ExecutionRecord {
            id: v3.id,
            admin: v3.admin,
            command: v3.command,
            env_keys: v3.env_keys,
            cwd: v3.cwd,
            timeout_ms: v3.timeout_ms,
            selector: v3.selector,
            created_at_ms: v3.created_at_ms,
            finished_at_ms: v3.finished_at_ms,
            state: v3.state,
            node_count: v3.node_count,
            counts: v3.counts,
            output_pruned_at_ms: v3.output_pruned_at_ms,
            origin: None,
        }
    }
}

/// [`ExecutionRecord`] version 2: before refusals were counted.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct ExecutionRecordV2 {
    id: ExecutionId,
    admin: String,
    command: Vec<String>,
    env_keys: Vec<String>,
    cwd: Option<String>,
    timeout_ms: Option<u64>,
    selector: String,
    created_at_ms: i64,
    finished_at_ms: Option<i64>,
    state: ExecutionState,
    node_count: u32,
    counts: ExecCountsV1,
    output_pruned_at_ms: Option<i64>,
}

impl From<ExecutionRecordV2> for ExecutionRecord {
    fn from(v2: ExecutionRecordV2) -> Self {
        ExecutionRecord {
            id: v2.id,
            admin: v2.admin,
            command: v2.command,
            env_keys: v2.env_keys,
            cwd: v2.cwd,
            timeout_ms: v2.timeout_ms,
            selector: v2.selector,
            created_at_ms: v2.created_at_ms,
            finished_at_ms: v2.finished_at_ms,
            state: v2.state,
            node_count: v2.node_count,
            counts: v2.counts.into(),
            output_pruned_at_ms: v2.output_pruned_at_ms,
            origin: None,
        }
    }
}

/// [`ExecutionRecord`] version 1: before output pruning was recorded.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct ExecutionRecordV1 {
    id: ExecutionId,
    admin: String,
    command: Vec<String>,
    env_keys: Vec<String>,
    cwd: Option<String>,
    timeout_ms: Option<u64>,
    selector: String,
    created_at_ms: i64,
    finished_at_ms: Option<i64>,
    state: ExecutionState,
    node_count: u32,
    counts: ExecCountsV1,
}

impl From<ExecutionRecordV1> for ExecutionRecord {
    fn from(v1: ExecutionRecordV1) -> Self {
        ExecutionRecord {
            id: v1.id,
            admin: v1.admin,
            command: v1.command,
            env_keys: v1.env_keys,
            cwd: v1.cwd,
            timeout_ms: v1.timeout_ms,
            selector: v1.selector,
            created_at_ms: v1.created_at_ms,
            finished_at_ms: v1.finished_at_ms,
            state: v1.state,
            node_count: v1.node_count,
            counts: v1.counts.into(),
            output_pruned_at_ms: None,
            origin: None,
        }
    }
}

/// [`TtySessionRecord`] version 1: an incomplete recording was marked by a suffix on its path.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct TtySessionRecordV1 {
    id: TtySessionId,
    node_id: NodeId,
    hostname: String,
    user: String,
    status: TtyStatus,
    command: String,
    size: WindowSize,
    created_at_ms: i64,
    connected_at_ms: Option<i64>,
    closed_at_ms: Option<i64>,
    client_addr: Option<String>,
    node_addr: Option<String>,
    recording: Option<String>,
    error: Option<String>,
    exit: Option<TtyExit>,
    output_bytes: u64,
    input_bytes: u64,
}

/// How version 1 marked an incomplete recording.
const V1_INCOMPLETE: &str = " (incomplete)";

impl From<TtySessionRecordV1> for TtySessionRecord {
    fn from(v1: TtySessionRecordV1) -> Self {
        let (recording, recording_note) = match v1.recording {
            Some(path) => match path.strip_suffix(V1_INCOMPLETE) {
                Some(path) => (
                    Some(path.to_string()),
                    Some("incomplete: writing it failed".to_string()),
                ),
                None => (Some(path), None),
            },
            None => (None, None),
        };
        TtySessionRecord {
            id: v1.id,
            node_id: v1.node_id,
            hostname: v1.hostname,
            user: v1.user,
            status: v1.status,
            command: v1.command,
            size: v1.size,
            created_at_ms: v1.created_at_ms,
            connected_at_ms: v1.connected_at_ms,
            closed_at_ms: v1.closed_at_ms,
            client_addr: v1.client_addr,
            node_addr: v1.node_addr,
            recording,
            recording_note,
            error: v1.error,
            exit: v1.exit,
            output_bytes: v1.output_bytes,
            input_bytes: v1.input_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    /// Bytes as an older release wrote them: its version byte, then its shape.
    fn written_by_version_1(record: &impl serde::Serialize) -> Vec<u8> {
        let mut bytes = vec![1u8];
        tether_wire::codec::encode_into(record, &mut bytes);
        bytes
    }

    #[test]
    fn a_version_1_terminal_record_is_read() {
        let bytes = written_by_version_1(&TtySessionRecordV1 {
            id: TtySessionId::random(),
            node_id: NodeId::random(),
            hostname: "web-1".into(),
            user: "alice".into(),
            status: TtyStatus::Closed,
            command: "bash".into(),
            size: WindowSize::DEFAULT,
            created_at_ms: 1,
            connected_at_ms: Some(2),
            closed_at_ms: Some(3),
            client_addr: None,
            node_addr: None,
            recording: Some("recordings/x.cast (incomplete)".into()),
            error: None,
            exit: None,
            output_bytes: 10,
            input_bytes: 20,
        });
        let record: TtySessionRecord = codec::decode(&bytes).unwrap();
        assert_eq!(record.recording.as_deref(), Some("recordings/x.cast"));
        assert!(
            record
                .recording_note
                .as_deref()
                .unwrap()
                .contains("incomplete")
        );
        assert_eq!((record.output_bytes, record.input_bytes), (10, 20));
        // Written back, it is version 2.
        assert_eq!(codec::encode(&record)[0], 2);
    }

    #[test]
    fn a_version_1_execution_record_is_read() {
        let bytes = written_by_version_1(&ExecutionRecordV1 {
            id: ExecutionId::random(),
            admin: "alice".into(),
            command: vec!["uptime".into()],
            env_keys: vec![],
            cwd: None,
            timeout_ms: Some(5),
            selector: "--all".into(),
            created_at_ms: 7,
            finished_at_ms: Some(8),
            state: ExecutionState::Finished,
            node_count: 3,
            counts: ExecCountsV1 {
                ok: 2,
                failed: 1,
                ..Default::default()
            },
        });
        let record: ExecutionRecord = codec::decode(&bytes).unwrap();
        assert_eq!((record.node_count, record.timeout_ms), (3, Some(5)));
        assert_eq!(record.output_pruned_at_ms, None);
        assert_eq!(
            (
                record.counts.ok,
                record.counts.failed,
                record.counts.refused
            ),
            (2, 1, 0)
        );
        assert_eq!(codec::encode(&record)[0], 4);
    }

    #[test]
    fn a_version_2_execution_record_is_read() {
        let mut bytes = vec![2u8];
        tether_wire::codec::encode_into(
            &ExecutionRecordV2 {
                id: ExecutionId::random(),
                admin: "alice".into(),
                command: vec!["uptime".into()],
                env_keys: vec![],
                cwd: None,
                timeout_ms: None,
                selector: "--all".into(),
                created_at_ms: 7,
                finished_at_ms: Some(8),
                state: ExecutionState::Finished,
                node_count: 4,
                counts: ExecCountsV1 {
                    ok: 3,
                    interrupted: 1,
                    ..Default::default()
                },
                output_pruned_at_ms: Some(9),
            },
            &mut bytes,
        );
        let record: ExecutionRecord = codec::decode(&bytes).unwrap();
        assert_eq!((record.counts.ok, record.counts.interrupted), (3, 1));
        assert_eq!(record.output_pruned_at_ms, Some(9));
    }

    #[test]
    fn a_version_1_alert_rule_is_read() {
        let id = NodeId::random();
        let bytes = written_by_version_1(&AlertRuleV1 {
            name: "down".into(),
            condition: Condition::Offline,
            for_ms: 60_000,
            severity: Severity::Critical,
            targets: TargetsV1 {
                labels: vec![("env".into(), "prod".into())],
                nodes: vec![id],
            },
            channels: vec!["ops".into()],
            enabled: true,
            created_by: "alice".into(),
            created_at_ms: 5,
        });
        let rule: AlertRule = codec::decode(&bytes).unwrap();
        assert_eq!(rule.targets.nodes, [id]);
        assert_eq!(
            rule.targets.labels,
            [("env".to_string(), "prod".to_string())]
        );
        assert!(rule.targets.groups.is_empty());
        assert_eq!((rule.for_ms, rule.channels.len()), (60_000, 1));
        assert_eq!(codec::encode(&rule)[0], 2);
    }

    #[test]
    fn a_version_3_execution_record_is_read() {
        let mut bytes = vec![3u8];
        tether_wire::codec::encode_into(
            &ExecutionRecordV3 {
                id: ExecutionId::random(),
                admin: "alice".into(),
                command: vec!["uptime".into()],
                env_keys: vec![],
                cwd: None,
                timeout_ms: None,
                selector: "--all".into(),
                created_at_ms: 7,
                finished_at_ms: Some(8),
                state: ExecutionState::Finished,
                node_count: 2,
                counts: ExecCounts {
                    ok: 1,
                    refused: 1,
                    ..Default::default()
                },
                output_pruned_at_ms: None,
            },
            &mut bytes,
        );
        let record: ExecutionRecord = codec::decode(&bytes).unwrap();
        assert_eq!((record.counts.ok, record.counts.refused), (1, 1));
        assert_eq!(record.origin, None);
        assert_eq!(codec::encode(&record)[0], 4);
    }
}

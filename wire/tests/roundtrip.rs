//! Property tests: every message survives encode → decode unchanged, every strict prefix of a
//! frame is "incomplete", every strict prefix of a payload is refused, and garbage never panics.

use std::collections::BTreeMap;
use std::net::IpAddr;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use tether_wire::admin::*;
use tether_wire::alerts::{
    Alert, AlertDetail, AlertQuery, AlertRule, AlertState, Channel, ChannelKind, Condition,
    Delivery, Field, Op, Severity, Targets,
};
use tether_wire::bytes::{ByteBuf, FixedBytes};
use tether_wire::control::*;
use tether_wire::exec::*;
use tether_wire::facts::*;
use tether_wire::fleet::*;
use tether_wire::frame::{Decoded, FrameError, decode_frame, encode_frame};
use tether_wire::groups::GroupView;
use tether_wire::heartbeat::*;
use tether_wire::history::{
    FleetMetricsAnswer, FleetMetricsQuery, Metric, MetricSeries, MetricsAnswer, MetricsQuery,
    Resolution,
};
use tether_wire::limits::{
    MAX_ADMIN_FRAME_LEN, MAX_CONTROL_FRAME_LEN, MAX_EXEC_FRAME_LEN, MAX_TTY_FRAME_LEN,
};
use tether_wire::policy::{ExecPolicy, NodePolicy};
use tether_wire::tasks::{
    CatchUp, RunNodeResult, RunState, RunView, Task, TaskChanges, TaskCommand, TaskRun, TaskSpec,
    TaskTargets, TaskView, Trigger,
};
use tether_wire::token::{Fingerprint, JoinToken};
use tether_wire::tty::*;
use tether_wire::users::*;
use tether_wire::{ApplicationId, ErrorCode, ExecutionId, NodeId, TtySessionId, codec};

fn text() -> impl Strategy<Value = String> {
    "[ -~]{0,24}|\\PC{0,8}"
}
fn float() -> impl Strategy<Value = f32> {
    -1.0e6f32..1.0e6f32
}
fn node_id() -> impl Strategy<Value = NodeId> {
    any::<[u8; 16]>().prop_map(NodeId::from_bytes)
}
fn app_id() -> impl Strategy<Value = ApplicationId> {
    any::<[u8; 16]>().prop_map(ApplicationId::from_bytes)
}
fn fixed32() -> impl Strategy<Value = FixedBytes<32>> {
    any::<[u8; 32]>().prop_map(FixedBytes)
}
fn bytes() -> impl Strategy<Value = ByteBuf> {
    vec(any::<u8>(), 0..300).prop_map(ByteBuf)
}
fn code() -> impl Strategy<Value = ErrorCode> {
    any::<u16>().prop_map(ErrorCode)
}

fn disk_info() -> impl Strategy<Value = DiskInfo> {
    (
        text(),
        text(),
        vec(text(), 0..4),
        text(),
        text(),
        any::<u64>(),
    )
        .prop_map(
            |(name, mount, mounts, filesystem, kind, total_bytes)| DiskInfo {
                name,
                mount,
                mounts,
                filesystem,
                kind,
                total_bytes,
            },
        )
}

fn nic() -> impl Strategy<Value = NicInfo> {
    (
        text(),
        text(),
        vec(any::<IpAddr>(), 0..4),
        option::of(any::<u32>()),
    )
        .prop_map(|(name, mac, addresses, speed_mbps)| NicInfo {
            name,
            mac,
            addresses,
            speed_mbps,
        })
}

prop_compose! {
    fn facts()(
        strings in vec(text(), 8),
        numbers in vec(any::<u64>(), 5),
        cpu_count in any::<u32>(),
        virtualization in option::of(text()),
        disks in vec(disk_info(), 0..4),
        nics in vec(nic(), 0..4),
        gpus in vec(text(), 0..2),
    ) -> StaticFacts {
        StaticFacts {
            hostname: strings[0].clone(),
            os_name: strings[1].clone(),
            os_version: strings[2].clone(),
            kernel_version: strings[3].clone(),
            arch: strings[4].clone(),
            cpu_model: strings[5].clone(),
            agent_version: strings[6].clone(),
            boot_time: numbers[0],
            cpu_frequency_mhz: numbers[1],
            memory_total: numbers[2],
            swap_total: numbers[3],
            cpu_count,
            virtualization,
            disks,
            nics,
            gpus,
        }
    }
}

prop_compose! {
    fn metrics()(
        floats in vec(float(), 4),
        numbers in vec(any::<u64>(), 9),
        counts in vec(any::<u32>(), 4),
        temperature_c in option::of(float()),
        disks in vec((text(), any::<u64>(), any::<u64>()), 0..4),
    ) -> Metrics {
        Metrics {
            cpu_percent: floats[0],
            load1: floats[1],
            load5: floats[2],
            load15: floats[3],
            memory_used: numbers[0],
            memory_total: numbers[1],
            swap_used: numbers[2],
            swap_total: numbers[3],
            net_rx_bytes_per_sec: numbers[4],
            net_tx_bytes_per_sec: numbers[5],
            net_rx_total: numbers[6],
            net_tx_total: numbers[7],
            uptime_secs: numbers[8],
            processes: counts[0],
            tcp_connections: counts[1],
            udp_connections: counts[2],
            tty_sessions: counts[3],
            temperature_c,
            disks: disks.into_iter().map(|(mount, used_bytes, total_bytes)| DiskUsage { mount, used_bytes, total_bytes }).collect(),
        }
    }
}

fn heartbeat() -> impl Strategy<Value = Heartbeat> {
    (any::<u32>(), any::<i64>(), metrics()).prop_map(|(seq, timestamp_ms, metrics)| Heartbeat {
        seq,
        timestamp_ms,
        metrics,
    })
}

prop_compose! {
    fn enroll()(
        nonce in vec(any::<u8>(), 64),
        timestamp in any::<i64>(),
        node_id in node_id(),
        public_key_pem in text(),
        hostname in text(),
        secret in any::<[u8; 32]>(),
        agent_version in text(),
        signature in bytes(),
    ) -> EnrollRequest {
        EnrollRequest {
            nonce: FixedBytes(nonce.try_into().unwrap()),
            timestamp, node_id, public_key_pem, hostname,
            join_secret: FixedBytes(secret), agent_version, signature,
        }
    }
}

fn node_message() -> impl Strategy<Value = NodeMessage> {
    prop_oneof![
        enroll().prop_map(NodeMessage::Enroll),
        (
            node_id(),
            any::<i64>(),
            fixed32(),
            text(),
            fixed32(),
            text()
        )
            .prop_map(
                |(node_id, timestamp, proof, agent_version, machine, hostname)| {
                    NodeMessage::Auth(AuthRequest {
                        node_id,
                        timestamp,
                        proof,
                        agent_version,
                        machine,
                        hostname,
                    })
                }
            ),
        facts().prop_map(NodeMessage::StaticFacts),
        node_policy().prop_map(NodeMessage::Policy),
        update_status().prop_map(NodeMessage::UpdateStatus),
    ]
}

fn node_policy() -> impl Strategy<Value = NodePolicy> {
    (
        prop_oneof![
            Just(ExecPolicy::On),
            Just(ExecPolicy::Off),
            Just(ExecPolicy::AllowList)
        ],
        vec(text(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(exec, allow, tty)| NodePolicy { exec, allow, tty })
}

fn core_message() -> impl Strategy<Value = CoreMessage> {
    prop_oneof![
        app_id().prop_map(|application_id| CoreMessage::EnrollPending { application_id }),
        (node_id(), bytes()).prop_map(|(node_id, encrypted_secret)| {
            CoreMessage::EnrollApproved {
                node_id,
                encrypted_secret,
            }
        }),
        (app_id(), text()).prop_map(|(application_id, reason)| CoreMessage::EnrollRejected {
            application_id,
            reason
        }),
        (
            node_id(),
            any::<u32>(),
            any::<i64>(),
            any::<u32>(),
            option::of(fixed32())
        )
            .prop_map(|(node_id, hb, t, skew, digest)| CoreMessage::AuthOk(
                SessionParams {
                    node_id,
                    heartbeat_interval_ms: hb,
                    core_time_ms: t,
                    max_clock_skew_secs: skew,
                    static_facts_digest: digest,
                }
            )),
        (code(), text()).prop_map(|(code, message)| CoreMessage::Refused { code, message }),
        text().prop_map(|reason| CoreMessage::Removed { reason }),
        exec_request().prop_map(CoreMessage::Exec),
        exec_id().prop_map(|exec_id| CoreMessage::CancelExec { exec_id }),
        (exec_request(), bytes())
            .prop_map(|(request, script)| CoreMessage::ExecScript { request, script }),
        (any::<u64>(), manifest(), any::<u64>()).prop_map(|(deploy, manifest, watchdog_ms)| {
            CoreMessage::Update(tether_wire::deploys::UpdateOrder {
                deploy,
                manifest,
                watchdog_ms,
            })
        }),
        (any::<u64>(), text(), any::<u64>()).prop_map(|(deploy, to_version, watchdog_ms)| {
            CoreMessage::Rollback(tether_wire::deploys::RollbackOrder {
                deploy,
                to_version,
                watchdog_ms,
            })
        }),
    ]
}

fn exec_id() -> impl Strategy<Value = ExecutionId> {
    any::<[u8; 16]>().prop_map(ExecutionId::from_bytes)
}

fn exec_request() -> impl Strategy<Value = ExecRequest> {
    (
        exec_id(),
        vec(text(), 1..4),
        labels(),
        option::of(text()),
        option::of(any::<u64>()),
        any::<u64>(),
    )
        .prop_map(
            |(exec_id, command, env, cwd, timeout_ms, kill_grace_ms)| ExecRequest {
                exec_id,
                command,
                env,
                cwd,
                timeout_ms,
                kill_grace_ms,
            },
        )
}

fn exec_outcome() -> impl Strategy<Value = ExecOutcome> {
    (
        option::of(any::<i32>()),
        option::of(any::<i32>()),
        any::<(bool, bool)>(),
        option::of(text()),
        any::<(i64, i64)>(),
    )
        .prop_map(|(exit_code, signal, flags, error, times)| ExecOutcome {
            exit_code,
            signal,
            timed_out: flags.0,
            cancelled: flags.1,
            error,
            started_at_ms: times.0,
            finished_at_ms: times.1,
        })
}

fn exec_frame() -> impl Strategy<Value = ExecFrame> {
    prop_oneof![
        exec_id().prop_map(|exec_id| ExecFrame::Open { exec_id }),
        bytes().prop_map(ExecFrame::Stdout),
        bytes().prop_map(ExecFrame::Stderr),
        exec_outcome().prop_map(ExecFrame::Finished),
        text().prop_map(|reason| ExecFrame::Refused { reason }),
    ]
}

fn exec_status() -> impl Strategy<Value = ExecStatus> {
    prop_oneof![
        Just(ExecStatus::Pending),
        Just(ExecStatus::Running),
        Just(ExecStatus::Ok),
        Just(ExecStatus::Failed),
        Just(ExecStatus::Timeout),
        Just(ExecStatus::Offline),
        Just(ExecStatus::Cancelled),
        Just(ExecStatus::Error),
        Just(ExecStatus::Interrupted),
        Just(ExecStatus::Refused),
    ]
}

prop_compose! {
    fn node_exec_view()(
        node_id in node_id(), hostname in text(), status in exec_status(),
        codes in (option::of(any::<i32>()), option::of(any::<i32>())),
        times in (option::of(any::<i64>()), option::of(any::<i64>())),
        error in option::of(text()),
        sizes in any::<(u64, u64)>(),
        output in (option::of(bytes()), option::of(bytes())),
        truncated in any::<bool>(),
    ) -> NodeExecView {
        NodeExecView {
            node_id, hostname, status, exit_code: codes.0, signal: codes.1,
            started_at_ms: times.0, finished_at_ms: times.1, error,
            stdout_bytes: sizes.0, stderr_bytes: sizes.1, stdout: output.0, stderr: output.1, truncated,
        }
    }
}

prop_compose! {
    fn execution_view()(
        id in exec_id(), admin in text(), command in vec(text(), 1..3), env_keys in vec(text(), 0..2),
        cwd in option::of(text()), timeout_ms in option::of(any::<u64>()), selector in text(),
        times in (any::<i64>(), option::of(any::<i64>())),
        state in prop_oneof![Just(ExecutionState::Running), Just(ExecutionState::Finished), Just(ExecutionState::Cancelled), Just(ExecutionState::Interrupted)],
        nodes in any::<u32>(), counts in vec(any::<u32>(), 9),
        output_pruned_at_ms in option::of(any::<i64>()),
    ) -> ExecutionView {
        ExecutionView {
            id, admin, command, env_keys, cwd, timeout_ms, selector,
            created_at_ms: times.0, finished_at_ms: times.1, state, nodes,
            counts: ExecCounts {
                ok: counts[0], failed: counts[1], timeout: counts[2], offline: counts[3],
                cancelled: counts[4], error: counts[5], interrupted: counts[6], unfinished: counts[7],
                refused: counts[8],
            },
            output_pruned_at_ms, origin: None,
        }
    }
}

fn exec_spec() -> impl Strategy<Value = ExecSpec> {
    (
        vec(text(), 0..3),
        labels(),
        any::<bool>(),
        vec(text(), 0..3),
        labels(),
        option::of(text()),
        option::of(any::<u64>()),
        any::<u32>(),
        vec(text(), 0..3),
    )
        .prop_map(
            |(targets, labels, all, command, env, cwd, timeout_ms, concurrency, groups)| ExecSpec {
                targets,
                labels,
                groups,
                all,
                command,
                env,
                cwd,
                timeout_ms,
                concurrency,
            },
        )
}

fn node_status() -> impl Strategy<Value = NodeStatus> {
    prop_oneof![
        Just(NodeStatus::Online),
        Just(NodeStatus::Offline),
        Just(NodeStatus::Maintenance)
    ]
}
fn app_status() -> impl Strategy<Value = ApplicationStatus> {
    prop_oneof![
        Just(ApplicationStatus::Pending),
        Just(ApplicationStatus::Approved),
        Just(ApplicationStatus::Rejected)
    ]
}
fn labels() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((text(), text()), 0..4)
}

prop_compose! {
    fn node_view()(
        id in node_id(), hostname in text(), status in node_status(),
        flags in any::<(bool, bool, bool)>(),
        times in (option::of(any::<i64>()), any::<i64>(), any::<i64>(), option::of(any::<i64>()), option::of(any::<i64>())),
        labels in labels(),
        public_addr in option::of(text()),
        agent_version in text(),
        static_facts in option::of(facts()),
        metrics in option::of(metrics()),
        counters in any::<(u64, u64, u64, u64)>(),
        allowed_users in vec(text(), 0..3),
        conflict in option::of(conflict()),
        path in option::of(path_view()),
        agent in option::of(agent_state()),
        group in option::of(text()),
        policy in option::of(node_policy()),
    ) -> NodeView {
        NodeView {
            id, hostname, status,
            connected: flags.0, maintenance: flags.1, deleted: flags.2,
            last_seen_ms: times.0, created_at_ms: times.1, updated_at_ms: times.2,
            clock_skew_ms: times.3, metrics_at_ms: times.4,
            labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
            allowed_users,
            public_addr, agent_version, static_facts, metrics,
            malformed_datagrams: counters.0, skewed_heartbeats: counters.1,
            heartbeats_received: counters.2, static_facts_received: counters.3,
            conflict,
            path,
            agent,
            group,
            policy,
        }
    }
}

prop_compose! {
    fn group_view()(
        names in (text(), text(), option::of(text()), text()),
        numbers in any::<(u32, i64, u64, u64, i64)>(),
        children in vec(text(), 0..3),
        created_by in text(),
    ) -> GroupView {
        GroupView {
            name: names.0, description: names.1, parent: names.2, path: names.3,
            depth: numbers.0, sort_order: numbers.1, nodes: numbers.2, nodes_total: numbers.3,
            created_at_ms: numbers.4, children, created_by,
        }
    }
}

prop_compose! {
    fn agent_state()(
        version in text(), pid in any::<u32>(), started_at_ms in any::<i64>(),
        restarts in any::<u32>(), recent_starts_ms in vec(any::<i64>(), 0..16),
        last_error in option::of(text()), cpu_percent in float(), rss_bytes in any::<u64>(),
    ) -> AgentState {
        AgentState { version, pid, started_at_ms, restarts, recent_starts_ms, last_error, cpu_percent, rss_bytes }
    }
}

fn path_view() -> impl Strategy<Value = PathView> {
    (0.0..1e6f64, any::<[u64; 4]>(), any::<u16>()).prop_map(|(rtt_ms, n, current_mtu)| PathView {
        rtt_ms,
        congestion_window: n[0],
        sent_packets: n[1],
        lost_packets: n[2],
        lost_bytes: n[3],
        current_mtu,
    })
}

fn node_sort() -> impl Strategy<Value = NodeSort> {
    prop_oneof![
        Just(NodeSort::Hostname),
        Just(NodeSort::Status),
        Just(NodeSort::LastSeen),
        Just(NodeSort::Version),
        Just(NodeSort::Created),
    ]
}

prop_compose! {
    fn node_query()(
        search in text(), status in option::of(node_status()), labels in labels(),
        sort in node_sort(), descending in any::<bool>(), offset in any::<u32>(), limit in any::<u32>(),
        group in option::of(text()),
    ) -> NodeQuery {
        NodeQuery { search, status, labels, sort, descending, offset, limit, group }
    }
}

fn event_kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![Just(EventKind::Status), Just(EventKind::Enrolled)]
}

prop_compose! {
    fn overview()(
        counts in any::<[u64; 7]>(),
        versions in vec((text(), any::<u64>()), 0..4),
        events in vec((any::<i64>(), event_kind(), node_id(), text(), option::of(node_status()), text()), 0..4),
    ) -> Overview {
        Overview {
            nodes: StatusCounts { total: counts[0], online: counts[1], offline: counts[2], maintenance: counts[3] },
            pending_applications: counts[4],
            alerts_firing: counts[5],
            agents_running: counts[6],
            versions: versions.into_iter().map(|(version, count)| VersionCount { version, count }).collect(),
            events: events
                .into_iter()
                .map(|(at_ms, kind, node_id, hostname, status, detail)| FleetEvent { at_ms, kind, node_id, hostname, status, detail })
                .collect(),
        }
    }
}

fn conflict() -> impl Strategy<Value = IdentityConflictView> {
    (text(), text(), text(), any::<(i64, i64, u32)>()).prop_map(
        |(address, hostname, reason, (first_at_ms, last_at_ms, attempts))| IdentityConflictView {
            address,
            hostname,
            reason,
            first_at_ms,
            last_at_ms,
            attempts,
        },
    )
}

prop_compose! {
    fn app_view()(
        id in app_id(), node_id in node_id(), hostname in text(), status in app_status(),
        created_at_ms in any::<i64>(), decided_at_ms in option::of(any::<i64>()),
        decided_by in option::of(text()), reason in option::of(text()),
        key_fingerprint in text(), remote_addr in option::of(text()),
    ) -> ApplicationView {
        ApplicationView { id, node_id, hostname, status, created_at_ms, decided_at_ms, decided_by, reason, key_fingerprint, remote_addr }
    }
}

fn metric() -> impl Strategy<Value = Metric> {
    proptest::sample::select(Metric::ALL.to_vec())
}

prop_compose! {
    fn metrics_query()(
        node in text(), range_ms in any::<u64>(), until_ms in option::of(any::<i64>()),
        step_ms in option::of(any::<u64>()), metrics in vec(metric(), 0..4),
    ) -> MetricsQuery {
        MetricsQuery { node, range_ms, until_ms, step_ms, metrics }
    }
}

fn point() -> impl Strategy<Value = Option<f64>> {
    option::of(-1e15f64..1e15)
}

prop_compose! {
    fn metrics_answer()(
        node_id in node_id(), hostname in text(), from_ms in any::<i64>(), step_ms in any::<u64>(),
        resolution in proptest::sample::select(vec![Resolution::Raw, Resolution::Minute, Resolution::Hour]),
        samples in vec(any::<u32>(), 0..5),
        series in vec((metric(), vec(point(), 0..5), vec(point(), 0..5), vec(point(), 0..5)), 0..3),
    ) -> MetricsAnswer {
        MetricsAnswer {
            node_id, hostname, from_ms, step_ms, resolution, samples,
            series: series.into_iter().map(|(metric, avg, min, max)| MetricSeries { metric, avg, min, max }).collect(),
        }
    }
}

fn admin_request() -> impl Strategy<Value = AdminRequest> {
    prop_oneof![
        Just(AdminRequest::Ping),
        metrics_query().prop_map(AdminRequest::NodeMetrics),
        metrics_query().prop_map(|q| AdminRequest::FleetMetrics(FleetMetricsQuery {
            range_ms: q.range_ms,
            until_ms: q.until_ms,
            step_ms: q.step_ms,
            metrics: q.metrics,
        })),
        Just(AdminRequest::Overview),
        node_query().prop_map(AdminRequest::NodePage),
        text().prop_map(|id| AdminRequest::ShowTty { id }),
        (
            any::<bool>(),
            option::of(node_query()),
            option::of(text()),
            any::<u32>()
        )
            .prop_map(|(overview, nodes, node, interval_ms)| AdminRequest::Watch(
                WatchSpec {
                    overview,
                    nodes,
                    node,
                    interval_ms
                }
            )),
        Just(AdminRequest::Status),
        any::<bool>().prop_map(|recordings| AdminRequest::Backup { recordings }),
        (option::of(app_status()), option::of(any::<u32>()))
            .prop_map(|(status, limit)| AdminRequest::ListApplications { status, limit }),
        text().prop_map(|id| AdminRequest::ApproveApplication { id }),
        (text(), text()).prop_map(|(id, reason)| AdminRequest::RejectApplication { id, reason }),
        (
            option::of(node_status()),
            labels(),
            option::of(text()),
            any::<bool>()
        )
            .prop_map(
                |(status, labels, group, include_deleted)| AdminRequest::ListNodes {
                    status,
                    labels,
                    group,
                    include_deleted
                }
            ),
        text().prop_map(|id| AdminRequest::ShowNode { id }),
        (text(), labels(), vec(text(), 0..3))
            .prop_map(|(id, set, remove)| AdminRequest::LabelNode { id, set, remove }),
        (text(), any::<bool>()).prop_map(|(id, on)| AdminRequest::SetMaintenance { id, on }),
        text().prop_map(|id| AdminRequest::DeleteNode { id }),
        exec_spec().prop_map(AdminRequest::Exec),
        Just(AdminRequest::CancelExec),
        (option::of(text()), any::<u32>())
            .prop_map(|(node, limit)| AdminRequest::ExecHistory { node, limit }),
        text().prop_map(|id| AdminRequest::ShowExec { id }),
        (text(), vec(text(), 0..3), vec(text(), 0..3))
            .prop_map(|(id, add, remove)| AdminRequest::SetAllowedUsers { id, add, remove }),
        tty_authorize().prop_map(AdminRequest::AuthorizeTty),
        text().prop_map(|token| AdminRequest::OpenTty { token }),
        (any::<bool>(), option::of(text()), any::<u32>()).prop_map(|(active, node, limit)| {
            AdminRequest::ListTty {
                active,
                node,
                limit,
            }
        }),
        text().prop_map(|id| AdminRequest::KillTty { id }),
        text().prop_map(|id| AdminRequest::TtyRecording { id }),
    ]
}

fn session_id() -> impl Strategy<Value = TtySessionId> {
    any::<[u8; 16]>().prop_map(TtySessionId::from_bytes)
}
fn window_size() -> impl Strategy<Value = WindowSize> {
    any::<(u16, u16)>().prop_map(|(cols, rows)| WindowSize { cols, rows })
}
fn tty_exit() -> impl Strategy<Value = TtyExit> {
    (option::of(any::<i32>()), option::of(any::<i32>()))
        .prop_map(|(exit_code, signal)| TtyExit { exit_code, signal })
}
fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Viewer),
        Just(Role::Operator),
        Just(Role::Admin),
        Just(Role::Bridge)
    ]
}
fn tty_status() -> impl Strategy<Value = TtyStatus> {
    prop_oneof![
        Just(TtyStatus::Pending),
        Just(TtyStatus::Connected),
        Just(TtyStatus::Closed),
        Just(TtyStatus::Error),
        Just(TtyStatus::Refused)
    ]
}

prop_compose! {
    fn tty_authorize()(
        node in text(), command in option::of(text()), size in window_size(),
        term in option::of(text()), record in option::of(any::<bool>()),
    ) -> TtyAuthorize {
        TtyAuthorize { node, command, size, term, record }
    }
}

prop_compose! {
    fn tty_grant()(
        session_id in session_id(), token in text(), expires_at_ms in any::<i64>(),
        node_id in node_id(), hostname in text(), command in text(), recorded in any::<bool>(),
    ) -> TtyGrant {
        TtyGrant { session_id, token, expires_at_ms, node_id, hostname, command, recorded }
    }
}

prop_compose! {
    fn tty_session()(
        id in session_id(), node_id in node_id(), names in (text(), text(), text()),
        status in tty_status(), size in window_size(),
        times in (any::<i64>(), option::of(any::<i64>()), option::of(any::<i64>())),
        addrs in (option::of(text()), option::of(text()), option::of(text()), option::of(text())),
        exit in option::of(tty_exit()), counts in any::<(u64, u64)>(),
        recording_note in option::of(text()),
    ) -> TtySessionView {
        TtySessionView {
            id, node_id, hostname: names.0, user: names.1, status, command: names.2, size,
            created_at_ms: times.0, connected_at_ms: times.1, closed_at_ms: times.2,
            client_addr: addrs.0, node_addr: addrs.1, recording: addrs.2, recording_note, error: addrs.3,
            exit, output_bytes: counts.0, input_bytes: counts.1,
        }
    }
}

fn tty_input() -> impl Strategy<Value = TtyInput> {
    prop_oneof![
        bytes().prop_map(TtyInput::Data),
        window_size().prop_map(TtyInput::Resize),
        Just(TtyInput::Eof),
    ]
}

fn tty_output() -> impl Strategy<Value = TtyOutput> {
    prop_oneof![
        (session_id(), node_id(), text(), any::<bool>()).prop_map(
            |(session_id, node_id, hostname, recorded)| TtyOutput::Connected {
                session_id,
                node_id,
                hostname,
                recorded
            }
        ),
        (any::<u32>(), vec(text(), 0..3))
            .prop_map(|(pid, command)| TtyOutput::Started { pid, command }),
        bytes().prop_map(TtyOutput::Data),
        tty_exit().prop_map(TtyOutput::Exited),
        (code(), text()).prop_map(|(code, message)| TtyOutput::Error { code, message }),
    ]
}

fn tty_open() -> impl Strategy<Value = TtyOpen> {
    (session_id(), option::of(text()), window_size(), text()).prop_map(
        |(session_id, command, size, term)| TtyOpen {
            session_id,
            command,
            size,
            term,
        },
    )
}

fn admin_response() -> impl Strategy<Value = AdminResponse> {
    prop_oneof![
        (text(), text(), role(), vec(text(), 0..4)).prop_map(
            |(core_version, admin, role, permissions)| AdminResponse::Pong {
                core_version,
                admin,
                role,
                permissions,
            }
        ),
        overview().prop_map(AdminResponse::Overview),
        metrics_answer().prop_map(AdminResponse::Metrics),
        metrics_answer().prop_map(|a| AdminResponse::FleetMetrics(FleetMetricsAnswer {
            from_ms: a.from_ms,
            step_ms: a.step_ms,
            resolution: a.resolution,
            samples: a.samples,
            median: a.series.clone(),
            p95: a.series,
        })),
        (any::<(u64, u32, u32)>(), vec(node_view(), 0..3)).prop_map(
            |((total, offset, limit), nodes)| {
                AdminResponse::NodePage(NodePage {
                    total,
                    offset,
                    limit,
                    nodes,
                })
            }
        ),
        tty_grant().prop_map(AdminResponse::TtyGrant),
        (text(), any::<i64>(), any::<[u64; 7]>()).prop_map(|(core_version, started_at_ms, n)| {
            AdminResponse::Status(CoreStatus {
                core_version,
                started_at_ms,
                connections: n[0],
                nodes_connected: n[1],
                nodes_online: n[2],
                heartbeats_received: n[3],
                datagrams_malformed: n[4],
                enrollments_approved: n[5],
                handshakes_deferred: n[6],
            })
        }),
        vec(tty_session(), 0..3).prop_map(AdminResponse::TtySessions),
        tty_session().prop_map(AdminResponse::TtySession),
        bytes().prop_map(AdminResponse::Recording),
        vec(app_view(), 0..3).prop_map(AdminResponse::Applications),
        app_view().prop_map(AdminResponse::Application),
        vec(node_view(), 0..3).prop_map(AdminResponse::Nodes),
        node_view().prop_map(AdminResponse::Node),
        (code(), text()).prop_map(|(code, message)| AdminResponse::Error { code, message }),
        (exec_id(), vec((node_id(), text()), 0..3)).prop_map(|(exec_id, nodes)| {
            AdminResponse::ExecStarted {
                exec_id,
                nodes: nodes
                    .into_iter()
                    .map(|(node_id, hostname)| ExecTarget { node_id, hostname })
                    .collect(),
            }
        }),
        (node_id(), any::<bool>(), bytes()).prop_map(|(node_id, out, data)| {
            AdminResponse::ExecOutput {
                node_id,
                stream: if out {
                    OutputStream::Stdout
                } else {
                    OutputStream::Stderr
                },
                data,
            }
        }),
        node_exec_view().prop_map(AdminResponse::ExecNodeDone),
        execution_view().prop_map(AdminResponse::ExecFinished),
        vec(execution_view(), 0..3).prop_map(AdminResponse::Executions),
        (execution_view(), vec(node_exec_view(), 0..3)).prop_map(|(execution, nodes)| {
            AdminResponse::Execution(ExecutionDetail { execution, nodes })
        }),
        (text(), text(), any::<(u64, u64, u32, u64)>()).prop_map(|(core_version, core_addr, n)| {
            AdminResponse::BackupStarted(BackupInfo {
                core_version,
                core_addr,
                nodes: n.0,
                database_bytes: n.1,
                recordings: n.2,
                recordings_bytes: n.3,
            })
        }),
        bytes().prop_map(AdminResponse::BackupChunk),
        (any::<u64>(), fixed32())
            .prop_map(|(bytes, sha256)| AdminResponse::BackupDone { bytes, sha256 }),
    ]
}

/// Round trip through a frame, plus the truncation properties.
fn check_frame<T>(message: &T, max: usize) -> Result<(), TestCaseError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let frame = encode_frame(message, max).expect("fits");
    match decode_frame::<T>(&frame, max).expect("decodes") {
        Decoded::Complete {
            message: back,
            consumed,
        } => {
            prop_assert_eq!(&back, message);
            prop_assert_eq!(consumed, frame.len());
        }
        Decoded::Incomplete { .. } => prop_assert!(false, "whole frame reported incomplete"),
    }
    // Any strict prefix of the frame is incomplete, never an error and never a message.
    let cut = frame.len() / 2;
    let incomplete = matches!(
        decode_frame::<T>(&frame[..cut], max),
        Ok(Decoded::Incomplete { .. })
    );
    prop_assert!(incomplete, "strict prefix not incomplete");
    // A payload cut short is refused.
    let payload = codec::encode(message);
    for cut in [0, payload.len() / 3, payload.len().saturating_sub(1)] {
        if cut < payload.len() {
            prop_assert!(codec::decode::<T>(&payload[..cut]).is_err());
        }
    }
    // A limit one byte below the frame's size refuses it, on both sides.
    let len = frame.len() - 4;
    let refused_in = matches!(
        decode_frame::<T>(&frame, len - 1),
        Err(FrameError::TooLarge { .. })
    );
    let refused_out = matches!(
        encode_frame(message, len - 1),
        Err(FrameError::TooLarge { .. })
    );
    prop_assert!(refused_in && refused_out, "limit not enforced");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn node_messages(message in node_message()) {
        check_frame(&message, MAX_CONTROL_FRAME_LEN)?;
    }

    #[test]
    fn core_messages(message in core_message()) {
        check_frame(&message, MAX_CONTROL_FRAME_LEN)?;
    }

    #[test]
    fn admin_requests(message in admin_request()) {
        check_frame(&message, MAX_ADMIN_FRAME_LEN)?;
    }

    #[test]
    fn user_requests(message in user_request()) {
        check_frame(&message, MAX_ADMIN_FRAME_LEN)?;
    }

    #[test]
    fn admin_responses(message in admin_response()) {
        check_frame(&message, MAX_ADMIN_FRAME_LEN)?;
    }

    #[test]
    fn user_responses(message in user_response()) {
        check_frame(&message, MAX_ADMIN_FRAME_LEN)?;
    }

    #[test]
    fn task_requests(message in task_request()) {
        check_frame(&message, MAX_ADMIN_FRAME_LEN)?;
    }

    #[test]
    fn task_responses(message in task_response()) {
        check_frame(&message, MAX_ADMIN_FRAME_LEN)?;
    }

    #[test]
    fn alert_requests(message in alert_request()) {
        check_frame(&message, MAX_ADMIN_FRAME_LEN)?;
    }

    #[test]
    fn alert_responses(message in alert_response()) {
        check_frame(&message, MAX_ADMIN_FRAME_LEN)?;
    }

    #[test]
    fn exec_frames(frame in exec_frame()) {
        check_frame(&frame, MAX_EXEC_FRAME_LEN)?;
    }

    #[test]
    fn tty_frames(input in tty_input(), output in tty_output(), open in tty_open()) {
        check_frame(&input, MAX_TTY_FRAME_LEN)?;
        check_frame(&output, MAX_TTY_FRAME_LEN)?;
        check_frame(&open, MAX_TTY_FRAME_LEN)?;
    }

    #[test]
    fn agent_states(state in agent_state()) {
        let state = state.trimmed();
        let bytes = encode_datagram(&Datagram::AgentState(state.clone()));
        prop_assert!(bytes.len() <= tether_wire::limits::MAX_HEARTBEAT_LEN, "{} bytes", bytes.len());
        match decode_datagram(&bytes).unwrap() {
            Datagram::AgentState(back) => prop_assert_eq!(&back, &state),
            other => prop_assert!(false, "unexpected datagram {:?}", other),
        }
        for cut in [0, bytes.len() / 2, bytes.len() - 1] {
            prop_assert!(decode_datagram(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn heartbeats(hb in heartbeat()) {
        let (bytes, dropped) = encode_heartbeat(hb.clone());
        prop_assert_eq!(dropped, 0);
        match decode_datagram(&bytes).unwrap() {
            Datagram::Heartbeat(back) => prop_assert_eq!(&back, &hb),
            other => prop_assert!(false, "unexpected datagram {:?}", other),
        }
        for cut in [0, bytes.len() / 2, bytes.len() - 1] {
            prop_assert!(decode_datagram(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn facts_digest_is_stable(f in facts()) {
        prop_assert_eq!(f.digest(), f.clone().digest());
        let mut changed = f.clone();
        changed.cpu_count = changed.cpu_count.wrapping_add(1);
        prop_assert_ne!(f.digest(), changed.digest());
    }

    #[test]
    fn join_tokens(fp in any::<[u8; 32]>(), secret in any::<[u8; 32]>(), addr in "[a-z0-9.:-]{0,60}") {
        let token = JoinToken { core_addr: addr, ca_fingerprint: Fingerprint(fp), secret: FixedBytes(secret) };
        prop_assert_eq!(JoinToken::parse(&token.encode()).unwrap(), token);
    }

    #[test]
    fn garbage_never_panics(data in vec(any::<u8>(), 0..2048)) {
        let _ = decode_frame::<NodeMessage>(&data, MAX_CONTROL_FRAME_LEN);
        let _ = decode_frame::<CoreMessage>(&data, MAX_CONTROL_FRAME_LEN);
        let _ = decode_frame::<AdminRequest>(&data, MAX_ADMIN_FRAME_LEN);
        let _ = decode_frame::<ExecFrame>(&data, MAX_EXEC_FRAME_LEN);
        let _ = decode_frame::<TtyInput>(&data, MAX_TTY_FRAME_LEN);
        let _ = decode_frame::<TtyOutput>(&data, MAX_TTY_FRAME_LEN);
        let _ = decode_frame::<TtyOpen>(&data, MAX_TTY_FRAME_LEN);
        let _ = decode_datagram(&data);
        let _ = JoinToken::parse(&String::from_utf8_lossy(&data));
    }

    #[test]
    fn signed_bytes_cover_every_field(a in enroll(), b in enroll()) {
        // Different requests (ignoring the signature) never share signed bytes.
        let mut b2 = b.clone();
        b2.signature = a.signature.clone();
        if a != b2 {
            prop_assert_ne!(a.signed_bytes(), b.signed_bytes());
        }
    }
}

#[test]
fn huge_length_claim_inside_a_message_does_not_allocate() {
    // A heartbeat whose disk list claims 2^32 entries: refused by the codec's limit, not by OOM.
    let mut bytes = vec![0u8]; // Datagram::Heartbeat
    bytes.extend_from_slice(&[1, 2]); // seq, timestamp
    bytes.extend_from_slice(&[0, 0, 0, 0]); // cpu_percent
    bytes.extend_from_slice(&[0, 0, 0, 0]); // memory used/total, swap used/total
    bytes.extend_from_slice(&[0xfc, 0xff, 0xff, 0xff, 0xff]); // disks: len = u32::MAX
    assert!(decode_datagram(&bytes).is_err());
}

proptest! {
    /// The request inside `AsUser` comes back whole.
    #[test]
    fn as_user_carries_its_request(request in admin_request()) {
        let outer = AdminRequest::as_user(Secret::new("t"), ClientInfo::default(), &request);
        let AdminRequest::AsUser { request: inner, .. } = outer else { unreachable!() };
        prop_assert_eq!(AdminRequest::decode_inner(&inner.0).unwrap(), request);
    }
}

fn secret() -> impl Strategy<Value = Secret> {
    text().prop_map(Secret::new)
}

fn client_info() -> impl Strategy<Value = ClientInfo> {
    (option::of(text()), option::of(text()))
        .prop_map(|(addr, user_agent)| ClientInfo { addr, user_agent })
}

fn user_request() -> impl Strategy<Value = AdminRequest> {
    prop_oneof![
        (text(), role(), option::of(text()), option::of(secret())).prop_map(
            |(name, role, email, password)| AdminRequest::UserAdd(NewUser {
                name,
                role,
                email,
                password
            })
        ),
        Just(AdminRequest::UserList),
        text().prop_map(|name| AdminRequest::UserShow { name }),
        (text(), role()).prop_map(|(name, role)| AdminRequest::UserRole { name, role }),
        (text(), any::<bool>())
            .prop_map(|(name, enabled)| AdminRequest::UserEnable { name, enabled }),
        (text(), secret(), option::of(secret())).prop_map(|(name, password, current)| {
            AdminRequest::UserPasswd {
                name,
                password,
                current,
            }
        }),
        text().prop_map(|name| AdminRequest::UserDelete { name }),
        (text(), bytes(), any::<u64>()).prop_map(|(name, public_key, lifetime_secs)| {
            AdminRequest::UserCert {
                name,
                public_key,
                lifetime_secs,
            }
        }),
        text().prop_map(|name| AdminRequest::UserCerts { name }),
        text().prop_map(|serial| AdminRequest::RevokeCert { serial }),
        text().prop_map(|name| AdminRequest::UserSessions { name }),
        (text(), option::of(text()))
            .prop_map(|(name, session)| AdminRequest::UserLogout { name, session }),
        (text(), secret(), client_info()).prop_map(|(user, password, client)| {
            AdminRequest::Login {
                user,
                password,
                client,
            }
        }),
        secret().prop_map(|token| AdminRequest::Logout { token }),
        (secret(), client_info(), admin_request()).prop_map(|(token, client, request)| {
            AdminRequest::as_user(token, client, &request)
        }),
        (
            (option::of(text()), option::of(text()), option::of(text())),
            (option::of(any::<i64>()), option::of(any::<i64>())),
            any::<bool>(),
            (any::<u32>(), option::of(any::<u64>()))
        )
            .prop_map(
                |((user, action, resource), (since_ms, until_ms), failed, (limit, seq))| {
                    AdminRequest::Audit(AuditQuery {
                        user,
                        action,
                        resource,
                        since_ms,
                        until_ms,
                        failed,
                        limit,
                        seq,
                    })
                }
            ),
        Just(AdminRequest::AuditVerify),
    ]
}

prop_compose! {
    fn user_view()(
        names in (text(), option::of(text())), role in role(), flags in any::<(bool, bool)>(),
        times in (any::<i64>(), any::<i64>(), option::of(any::<i64>())),
        last_login_addr in option::of(text()), counts in any::<(u32, u32)>(),
    ) -> UserView {
        UserView {
            name: names.0, email: names.1, role, enabled: flags.0, has_password: flags.1,
            created_at_ms: times.0, updated_at_ms: times.1, last_login_ms: times.2,
            last_login_addr, active_certs: counts.0, sessions: counts.1,
        }
    }
}

prop_compose! {
    fn cert_view()(
        names in (text(), text(), text()), times in (any::<i64>(), any::<i64>(), option::of(any::<i64>())),
        revoked_by in option::of(text()),
    ) -> CertView {
        CertView {
            serial: names.0, user: names.1, issued_by: names.2, issued_at_ms: times.0,
            expires_at_ms: times.1, revoked_at_ms: times.2, revoked_by,
        }
    }
}

prop_compose! {
    fn session_view()(
        names in (text(), text()), times in any::<(i64, i64, i64, i64)>(),
        client in client_info(),
    ) -> SessionView {
        SessionView {
            id: names.0, user: names.1, created_at_ms: times.0, last_used_ms: times.1,
            idle_expires_at_ms: times.2, expires_at_ms: times.3, client_addr: client.addr,
            user_agent: client.user_agent,
        }
    }
}

fn audit_result() -> impl Strategy<Value = AuditResult> {
    prop_oneof![
        Just(AuditResult::Ok),
        Just(AuditResult::Denied),
        Just(AuditResult::Failed)
    ]
}

prop_compose! {
    fn audit_view()(
        seq in any::<u64>(), hash in text(), time_ms in any::<i64>(),
        names in (text(), text(), text(), text()), role in option::of(role()),
        resource_id in option::of(text()), details in vec((text(), text()), 0..3),
        addrs in (option::of(text()), option::of(text()), option::of(text())),
        result in audit_result(), error in option::of(text()),
    ) -> AuditView {
        AuditView {
            seq, hash,
            entry: AuditEntry {
                time_ms, user: names.0, role, action: names.1, request: names.2,
                resource_kind: names.3, resource_id, details, source_addr: addrs.0,
                client_addr: addrs.1, user_agent: addrs.2, result, error,
            },
        }
    }
}

fn user_response() -> impl Strategy<Value = AdminResponse> {
    prop_oneof![
        user_view().prop_map(AdminResponse::User),
        vec(user_view(), 0..3).prop_map(AdminResponse::Users),
        (text(), cert_view())
            .prop_map(|(cert_pem, cert)| AdminResponse::CertIssued { cert_pem, cert }),
        vec(cert_view(), 0..3).prop_map(AdminResponse::Certs),
        cert_view().prop_map(AdminResponse::Cert),
        vec(session_view(), 0..3).prop_map(AdminResponse::Sessions),
        (secret(), session_view())
            .prop_map(|(token, session)| AdminResponse::LoggedIn { token, session }),
        any::<u32>().prop_map(|sessions| AdminResponse::LoggedOut { sessions }),
        vec(audit_view(), 0..3).prop_map(AdminResponse::AuditRecords),
        (
            any::<u64>(),
            (
                option::of(any::<u64>()),
                option::of(any::<u64>()),
                option::of(any::<u64>())
            ),
            option::of(text()),
            option::of((any::<u64>(), text()))
        )
            .prop_map(
                |(records, (first_seq, last_seq, pruned_before), head_hash, broken)| {
                    AdminResponse::AuditVerified(AuditVerifyReport {
                        records,
                        first_seq,
                        last_seq,
                        head_hash,
                        pruned_before,
                        broken: broken.map(|(seq, reason)| AuditBreak { seq, reason }),
                    })
                }
            ),
    ]
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        metric().prop_map(Field::Series),
        Just(Field::Swap),
        Just(Field::Temperature),
        Just(Field::Udp),
        text().prop_map(Field::DiskAt),
        text().prop_map(Field::DiskUsedAt),
    ]
}

fn severity() -> impl Strategy<Value = Severity> {
    prop_oneof![
        Just(Severity::Critical),
        Just(Severity::Warning),
        Just(Severity::Info)
    ]
}

fn condition() -> impl Strategy<Value = Condition> {
    prop_oneof![
        (
            field(),
            0..6usize,
            any::<f64>().prop_filter("NaN never equals itself", |x| !x.is_nan())
        )
            .prop_map(|(field, op, threshold)| Condition::Threshold {
                field,
                op: Op::ALL[op],
                threshold,
            }),
        Just(Condition::Offline),
        any::<u64>().prop_map(|max_ms| Condition::ClockSkew { max_ms }),
        any::<u32>().prop_map(|max| Condition::AgentRestarts { max }),
    ]
}

prop_compose! {
    fn alert_rule()(
        name in text(), condition in condition(), for_ms in any::<u64>(), severity in severity(),
        targets in (labels(), vec(node_id(), 0..3), vec(text(), 0..2)), channels in vec(text(), 0..3),
        enabled in any::<bool>(), created in (text(), any::<i64>()),
    ) -> AlertRule {
        AlertRule {
            name, condition, for_ms, severity,
            targets: Targets { labels: targets.0, nodes: targets.1, groups: targets.2 },
            channels, enabled, created_by: created.0, created_at_ms: created.1,
        }
    }
}

fn alert_state() -> impl Strategy<Value = AlertState> {
    prop_oneof![Just(AlertState::Firing), Just(AlertState::Resolved)]
}

prop_compose! {
    fn alert()(
        id in any::<u64>(), names in (text(), text(), text()), severity in severity(),
        node_id in node_id(), state in alert_state(),
        value in option::of(any::<f64>().prop_filter("NaN never equals itself", |x| !x.is_nan())),
        times in (any::<i64>(), any::<i64>(), option::of(any::<i64>()), option::of(any::<i64>())),
        resolution in option::of(text()), acked_by in option::of(text()), notified in any::<bool>(),
    ) -> Alert {
        Alert {
            id, rule: names.0, severity, node_id, hostname: names.1, condition: names.2, state,
            value, since_ms: times.0, fired_at_ms: times.1, resolved_at_ms: times.2, resolution,
            acked_by, acked_at_ms: times.3, notified,
        }
    }
}

fn channel() -> impl Strategy<Value = Channel> {
    let kind = prop_oneof![
        (text(), option::of(text())).prop_map(|(url, secret)| ChannelKind::Webhook { url, secret }),
        (
            (text(), any::<u16>(), option::of(text()), option::of(text())),
            (text(), vec(text(), 0..3), any::<bool>())
        )
            .prop_map(|((host, port, username, password), (from, to, plain))| {
                ChannelKind::Smtp {
                    host,
                    port,
                    username,
                    password,
                    from,
                    to,
                    plain,
                }
            }),
    ];
    (text(), kind, text(), any::<i64>()).prop_map(|(name, kind, created_by, created_at_ms)| {
        Channel {
            name,
            kind,
            created_by,
            created_at_ms,
        }
    })
}

prop_compose! {
    fn delivery()(
        alert_id in any::<u64>(), event in alert_state(), channel in text(),
        at_ms in any::<i64>(), attempt in any::<u32>(), ok in any::<bool>(),
        error in option::of(text()),
    ) -> Delivery {
        Delivery { alert_id, event, channel, at_ms, attempt, ok, error }
    }
}

fn alert_request() -> impl Strategy<Value = AdminRequest> {
    prop_oneof![
        (alert_rule(), vec(text(), 0..3))
            .prop_map(|(rule, nodes)| AdminRequest::AlertRuleAdd { rule, nodes }),
        Just(AdminRequest::AlertRuleList),
        text().prop_map(|name| AdminRequest::AlertRuleShow { name }),
        (text(), any::<bool>())
            .prop_map(|(name, enabled)| AdminRequest::AlertRuleEnable { name, enabled }),
        text().prop_map(|name| AdminRequest::AlertRuleDelete { name }),
        (any::<bool>(), option::of(text()), option::of(any::<u32>())).prop_map(
            |(firing, node, limit)| AdminRequest::AlertList(AlertQuery {
                firing,
                node,
                limit
            })
        ),
        any::<u64>().prop_map(|id| AdminRequest::AlertShow { id }),
        any::<u64>().prop_map(|id| AdminRequest::AlertAck { id }),
        channel().prop_map(AdminRequest::AlertChannelAdd),
        Just(AdminRequest::AlertChannelList),
        text().prop_map(|name| AdminRequest::AlertChannelDelete { name }),
        text().prop_map(|name| AdminRequest::AlertChannelTest { name }),
        (text(), option::of(text()), text(), any::<i64>()).prop_map(
            |(name, parent, description, sort_order)| AdminRequest::GroupAdd {
                name,
                parent,
                description,
                sort_order
            }
        ),
        Just(AdminRequest::GroupList),
        text().prop_map(|name| AdminRequest::GroupShow { name }),
        (text(), option::of(text()))
            .prop_map(|(name, parent)| AdminRequest::GroupMove { name, parent }),
        (text(), any::<bool>()).prop_map(|(name, force)| AdminRequest::GroupDelete { name, force }),
        (text(), option::of(text()))
            .prop_map(|(node, group)| AdminRequest::NodeGroup { node, group }),
    ]
}

fn task_targets() -> impl Strategy<Value = TaskTargets> {
    (
        vec(text(), 0..3),
        labels(),
        vec(text(), 0..2),
        any::<bool>(),
    )
        .prop_map(|(nodes, labels, groups, all)| TaskTargets {
            nodes,
            labels,
            groups,
            all,
        })
}

fn task_command() -> impl Strategy<Value = TaskCommand> {
    prop_oneof![
        vec(text(), 1..3).prop_map(TaskCommand::Command),
        (text(), bytes()).prop_map(|(name, body)| TaskCommand::Script { name, body }),
    ]
}

fn catch_up() -> impl Strategy<Value = CatchUp> {
    prop_oneof![Just(CatchUp::One), Just(CatchUp::None)]
}

fn trigger() -> impl Strategy<Value = Trigger> {
    prop_oneof![
        Just(Trigger::Schedule),
        Just(Trigger::CatchUp),
        Just(Trigger::Manual)
    ]
}

prop_compose! {
    fn task_spec()(
        names in (text(), text(), text(), text()), targets in task_targets(),
        command in task_command(), numbers in any::<(u64, u32, u64, u64)>(),
        catch_up in catch_up(), enabled in any::<bool>(),
    ) -> TaskSpec {
        TaskSpec {
            name: names.0, description: names.1, cron: names.2, timezone: names.3, targets,
            command, timeout_ms: numbers.0, retries: numbers.1, retry_interval_ms: numbers.2,
            spread_ms: numbers.3, catch_up, enabled,
        }
    }
}

prop_compose! {
    fn task_run()(
        ids in any::<(u64, u64)>(), trigger in trigger(), by in text(),
        times in (option::of(any::<i64>()), any::<i64>(), option::of(any::<i64>())),
        state in prop_oneof![Just(RunState::Running), Just(RunState::Success), Just(RunState::Failed), Just(RunState::Skipped), Just(RunState::Cancelled), Just(RunState::Interrupted)],
        error in option::of(text()), executions in vec(exec_id(), 0..3), nodes in any::<u32>(),
        ok in any::<u32>(),
    ) -> TaskRun {
        TaskRun {
            task_id: ids.0, run: ids.1, trigger, by, due_at_ms: times.0, started_at_ms: times.1,
            finished_at_ms: times.2, state, error, executions, nodes,
            counts: ExecCounts { ok, ..Default::default() },
        }
    }
}

prop_compose! {
    fn task_view()(
        spec in task_spec(), id in any::<u64>(), people in (text(), text()),
        times in any::<(i64, i64)>(), next_run_ms in option::of(any::<i64>()),
        last_run in any::<u64>(), last in option::of(task_run()),
        upcoming_ms in vec(any::<i64>(), 0..5),
    ) -> TaskView {
        TaskView {
            task: Task {
                id, spec, created_by: people.0, created_at_ms: times.0, updated_by: people.1,
                updated_at_ms: times.1, next_run_ms, last_run,
            },
            last, upcoming_ms,
        }
    }
}

prop_compose! {
    fn run_view()(
        run in task_run(), node_id in node_id(), hostname in text(), exit_code in option::of(any::<i32>()),
        error in option::of(text()), tries in any::<u32>(), execution in exec_id(),
    ) -> RunView {
        RunView {
            run,
            nodes: vec![RunNodeResult {
                node_id, hostname, status: ExecStatus::Failed, exit_code, error, tries, execution,
            }],
        }
    }
}

fn task_request() -> impl Strategy<Value = AdminRequest> {
    prop_oneof![
        task_spec().prop_map(AdminRequest::TaskAdd),
        (
            text(),
            option::of(text()),
            option::of(text()),
            option::of(task_targets()),
            option::of(task_command()),
            option::of(any::<u32>()),
            option::of(catch_up()),
        )
            .prop_map(
                |(name, cron, timezone, targets, command, retries, catch_up)| {
                    AdminRequest::TaskEdit {
                        name,
                        changes: TaskChanges {
                            cron,
                            timezone,
                            targets,
                            command,
                            retries,
                            catch_up,
                            ..Default::default()
                        },
                    }
                }
            ),
        Just(AdminRequest::TaskList),
        text().prop_map(|name| AdminRequest::TaskShow { name }),
        (text(), any::<bool>())
            .prop_map(|(name, enabled)| AdminRequest::TaskEnable { name, enabled }),
        text().prop_map(|name| AdminRequest::TaskDelete { name }),
        text().prop_map(|name| AdminRequest::TaskRun { name }),
        (text(), any::<u32>(), option::of(any::<u64>()))
            .prop_map(|(name, limit, run)| AdminRequest::TaskHistory { name, limit, run }),
        (text(), text(), any::<u32>()).prop_map(|(cron, timezone, count)| {
            AdminRequest::CronPreview {
                cron,
                timezone,
                count,
            }
        }),
    ]
}

fn task_response() -> impl Strategy<Value = AdminResponse> {
    prop_oneof![
        task_view().prop_map(AdminResponse::Task),
        vec(task_view(), 0..3).prop_map(AdminResponse::Tasks),
        task_run().prop_map(AdminResponse::TaskRun),
        vec(run_view(), 0..3).prop_map(AdminResponse::TaskRuns),
        (text(), text(), vec(any::<i64>(), 0..5)).prop_map(|(cron, timezone, times_ms)| {
            AdminResponse::CronTimes {
                cron,
                timezone,
                times_ms,
            }
        }),
    ]
}

fn alert_response() -> impl Strategy<Value = AdminResponse> {
    prop_oneof![
        alert_rule().prop_map(AdminResponse::AlertRule),
        vec(alert_rule(), 0..3).prop_map(AdminResponse::AlertRules),
        vec(alert(), 0..3).prop_map(AdminResponse::Alerts),
        alert().prop_map(AdminResponse::Alert),
        (alert(), vec(delivery(), 0..3)).prop_map(
            |(alert, deliveries)| AdminResponse::AlertDetail(AlertDetail { alert, deliveries })
        ),
        channel().prop_map(AdminResponse::AlertChannel),
        vec(channel(), 0..3).prop_map(AdminResponse::AlertChannels),
        delivery().prop_map(AdminResponse::AlertDelivery),
        group_view().prop_map(AdminResponse::Group),
        vec(group_view(), 0..3).prop_map(AdminResponse::Groups),
    ]
}

prop_compose! {
    fn manifest()(
        names in (text(), text(), text()), size in any::<u64>(),
        sha256 in any::<[u8; 32]>(), key in any::<[u8; 32]>(),
        signature in vec(any::<u8>(), 64),
    ) -> tether_wire::releases::Manifest {
        tether_wire::releases::Manifest {
            version: names.0, os: names.1, arch: names.2, size,
            sha256: FixedBytes(sha256), key: FixedBytes(key),
            signature: FixedBytes(signature.try_into().unwrap()),
        }
    }
}

prop_compose! {
    fn release_view()(
        id in any::<u64>(), manifest in manifest(), texts in (text(), text()),
        uploaded_at_ms in any::<i64>(), active_deploys in vec(any::<u64>(), 0..3),
    ) -> tether_wire::releases::ReleaseView {
        tether_wire::releases::ReleaseView {
            release: tether_wire::releases::Release {
                id, manifest, notes: texts.0, uploaded_by: texts.1, uploaded_at_ms,
            },
            active_deploys,
        }
    }
}

fn release_message() -> impl Strategy<Value = AdminRequest> {
    prop_oneof![
        (manifest(), text())
            .prop_map(|(manifest, notes)| AdminRequest::ReleaseUpload { manifest, notes }),
        Just(AdminRequest::ReleaseList),
        text().prop_map(|version| AdminRequest::ReleaseShow { version }),
        (text(), option::of(text()), option::of(text()))
            .prop_map(|(version, os, arch)| AdminRequest::ReleaseDelete { version, os, arch }),
    ]
}

proptest! {
    #[test]
    fn release_requests(message in release_message()) {
        check_frame(&message, MAX_ADMIN_FRAME_LEN)?;
    }

    #[test]
    fn release_responses(views in vec(release_view(), 0..3)) {
        check_frame(&AdminResponse::Releases(views), MAX_ADMIN_FRAME_LEN)?;
    }

    #[test]
    fn upload_frames(bytes in vec(any::<u8>(), 0..512)) {
        check_frame(&tether_wire::releases::UploadFrame::Data(ByteBuf(bytes)), MAX_ADMIN_FRAME_LEN)?;
    }

    /// The signed bytes tell every field apart: no two manifests that differ in a covered
    /// field sign the same bytes.
    #[test]
    fn signed_bytes_are_unambiguous(a in manifest(), b in manifest()) {
        let covered = |m: &tether_wire::releases::Manifest| (m.version.clone(), m.os.clone(), m.arch.clone(), m.size, m.sha256);
        prop_assert_eq!(a.signed_bytes() == b.signed_bytes(), covered(&a) == covered(&b));
    }
}

use tether_wire::deploys as dep;

fn update_state() -> impl Strategy<Value = dep::UpdateState> {
    prop_oneof![
        Just(dep::UpdateState::Pending),
        Just(dep::UpdateState::Downloading),
        Just(dep::UpdateState::Verifying),
        Just(dep::UpdateState::Installing),
        Just(dep::UpdateState::Success),
        Just(dep::UpdateState::Failed),
        Just(dep::UpdateState::Rollback),
        Just(dep::UpdateState::Skipped),
        Just(dep::UpdateState::Cancelled),
    ]
}

prop_compose! {
    fn update_status()(
        deploy in any::<u64>(), state in update_state(), bytes in any::<u64>(),
        error in option::of(text()),
    ) -> dep::UpdateStatus {
        dep::UpdateStatus { deploy, state, bytes, error }
    }
}

fn amount() -> impl Strategy<Value = dep::Amount> {
    prop_oneof![
        any::<u32>().prop_map(dep::Amount::Count),
        any::<u8>().prop_map(dep::Amount::Percent),
    ]
}

prop_compose! {
    fn deploy_spec()(
        version in text(), nodes in vec(text(), 0..3), labels in labels_vec(), all in any::<bool>(),
        strategy in prop_oneof![Just(dep::Strategy::All), Just(dep::Strategy::Rolling), Just(dep::Strategy::Canary)],
        amounts in (option::of(amount()), option::of(amount()), option::of(amount())),
        times in any::<(u64, u64, u64)>(), skip in any::<bool>(), rate_limit in option::of(any::<u64>()),
    ) -> dep::DeploySpec {
        dep::DeploySpec {
            version,
            targets: TaskTargets { nodes, labels, groups: vec![], all },
            strategy, batch: amounts.0, pause_ms: times.0, canary: amounts.1,
            canary_wait_ms: times.1, max_failures: amounts.2,
            offline: if skip { dep::OfflinePolicy::Skip } else { dep::OfflinePolicy::Wait },
            watchdog_ms: times.2, rate_limit,
        }
    }
}

fn labels_vec() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((text(), text()), 0..3)
}

prop_compose! {
    fn deploy_view()(
        id in any::<u64>(), spec in deploy_spec(), of in option::of(any::<u64>()),
        state in prop_oneof![Just(dep::DeployState::Running), Just(dep::DeployState::Paused), Just(dep::DeployState::Halted), Just(dep::DeployState::Cancelled), Just(dep::DeployState::Done)],
        reason in option::of(text()), created_by in text(), times in (any::<i64>(), option::of(any::<i64>())),
        waves in any::<(u32, u32)>(), counts in any::<[u32; 7]>(),
    ) -> dep::DeployView {
        dep::DeployView {
            deploy: dep::Deploy {
                id, spec,
                kind: of.map_or(dep::DeployKind::Update, |of| dep::DeployKind::Rollback { of }),
                state, reason, created_by, created_at_ms: times.0, finished_at_ms: times.1,
                waves: waves.0, wave: waves.1, accepted_failures: counts[0],
            },
            counts: dep::DeployCounts {
                pending: counts[0], active: counts[1], success: counts[2], failed: counts[3],
                rollback: counts[4], skipped: counts[5], cancelled: counts[6],
            },
        }
    }
}

prop_compose! {
    fn node_update()(
        node in node_id(), texts in (text(), text(), text()), wave in any::<u32>(),
        state in update_state(), sizes in any::<(u64, u64)>(), error in option::of(text()),
        times in (option::of(any::<i64>()), option::of(any::<i64>())),
    ) -> dep::NodeUpdate {
        dep::NodeUpdate {
            node, hostname: texts.0, wave, from_version: texts.1, to_version: texts.2, state,
            bytes: sizes.0, size: sizes.1, error, started_at_ms: times.0, finished_at_ms: times.1,
        }
    }
}

fn deploy_request() -> impl Strategy<Value = AdminRequest> {
    prop_oneof![
        deploy_spec().prop_map(AdminRequest::ReleaseDeploy),
        any::<u32>().prop_map(|limit| AdminRequest::DeployList { limit }),
        any::<u64>().prop_map(|id| AdminRequest::DeployStatus { id }),
        (
            any::<u64>(),
            prop_oneof![
                Just(dep::DeployAction::Pause),
                Just(dep::DeployAction::Resume),
                Just(dep::DeployAction::Cancel)
            ]
        )
            .prop_map(|(id, action)| AdminRequest::DeployControl { id, action }),
        any::<u64>().prop_map(|id| AdminRequest::DeployRollback { id }),
    ]
}

fn deploy_response() -> impl Strategy<Value = AdminResponse> {
    prop_oneof![
        deploy_view().prop_map(AdminResponse::Deploy),
        vec(deploy_view(), 0..3).prop_map(AdminResponse::Deploys),
        vec(node_update(), 0..3).prop_map(AdminResponse::DeployNodes),
    ]
}

proptest! {
    #[test]
    fn deploy_requests(message in deploy_request()) {
        check_frame(&message, MAX_ADMIN_FRAME_LEN)?;
    }

    #[test]
    fn deploy_responses(message in deploy_response()) {
        check_frame(&message, MAX_ADMIN_FRAME_LEN)?;
    }

    #[test]
    fn download_frames(
        deploy in any::<u64>(), sha in any::<[u8; 32]>(), offset in any::<u64>(),
        size in any::<u64>(), data in vec(any::<u8>(), 0..512), message in text(),
    ) {
        let max = dep::MAX_DOWNLOAD_FRAME_LEN;
        check_frame(&dep::DownloadRequest { deploy, sha256: FixedBytes(sha), offset }, max)?;
        check_frame(&dep::DownloadFrame::Start { size }, max)?;
        check_frame(&dep::DownloadFrame::Data(ByteBuf(data)), max)?;
        check_frame(&dep::DownloadFrame::Refused { message }, max)?;
    }

    /// `N` and `P%` read back as written; a share rounds up.
    #[test]
    fn amounts(n in any::<u32>(), p in 1u8..=100, total in 0usize..100_000) {
        let count: dep::Amount = n.to_string().parse().unwrap();
        prop_assert_eq!(count, dep::Amount::Count(n));
        let share: dep::Amount = format!("{p}%").parse().unwrap();
        prop_assert_eq!(share.to_string(), format!("{p}%"));
        let of = share.of(total);
        prop_assert!(of * 100 >= total * usize::from(p) && of <= total);
    }
}

#[test]
fn amounts_refuse_nonsense() {
    for bad in ["", "0%", "101%", "-1", "ten", "5 %"] {
        assert!(bad.parse::<dep::Amount>().is_err(), "{bad:?}");
    }
}

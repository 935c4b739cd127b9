//! Core's own figures for Prometheus (`/metrics`, OpenMetrics text through the
//! `prometheus-client` crate) and its health check (`/health`), on an HTTP listener of their own
//! (`metrics_listen`, off by default). See [`http`] for the listener.
//!
//! Counters that only core's handlers know (admin requests, commands, terminals, store commits)
//! are instruments kept in [`Telemetry`]; figures core already keeps (connections, nodes by
//! status, heartbeats) are read when scraped. Per-node series only with `metrics_per_node`:
//! 100,000 nodes are a million series.

pub(crate) mod http;

use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tether_wire::admin::NodeStatus;
use tether_wire::heartbeat::Metrics;

use crate::server::Shared;
use crate::views::status;

/// Every series' name starts `tether_`.
const PREFIX: &str = "tether";

/// The instruments core's handlers update, and the registry that holds them.
#[derive(Debug)]
pub(crate) struct Telemetry {
    registry: Registry,
    /// Admin requests by kind (`NodePage`, `Exec`...) and result (`ok`, `denied`, `failed`),
    /// counted as their audit records are written.
    pub admin_requests: Family<AdminLabels, Counter>,
    /// Executions started (one per `tether exec`, however many nodes).
    pub commands: Counter,
    /// Terminal sessions authorized.
    pub terminal_sessions: Counter,
    /// The store's batches: seconds from the space check to the durable commit.
    pub store_commit: Histogram,
}

/// Labels of `tether_admin_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub(crate) struct AdminLabels {
    /// The request's kind as the audit log names it.
    pub request: String,
    /// `ok`, `denied` or `failed`.
    pub result: String,
}

impl Default for Telemetry {
    fn default() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let admin_requests = Family::<AdminLabels, Counter>::default();
        registry.register(
            "admin_requests",
            "Admin requests (CLI and web) by kind and result, since start",
            admin_requests.clone(),
        );
        let commands = Counter::default();
        registry.register(
            "commands",
            "Executions started (tether exec, web commands), since start",
            commands.clone(),
        );
        let terminal_sessions = Counter::default();
        registry.register(
            "terminal_sessions",
            "Terminal sessions authorized, since start",
            terminal_sessions.clone(),
        );
        // 100 µs to about 6.5 s.
        let store_commit = Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        registry.register_with_unit(
            "store_commit_duration",
            "Store write batches: space check, writes and durable commit",
            Unit::Seconds,
            store_commit.clone(),
        );
        Self {
            registry,
            admin_requests,
            commands,
            terminal_sessions,
            store_commit,
        }
    }
}

/// `/metrics`: the instruments, then what core holds now (and, when configured, every node's
/// latest heartbeat), in the OpenMetrics text format.
pub(crate) fn render(shared: &Shared) -> Result<String, std::fmt::Error> {
    let mut now = Registry::with_prefix(PREFIX);
    now.register_collector(Box::new(Now::read(shared)));
    if shared.config.metrics_per_node {
        now.register_collector(Box::new(PerNode::read(shared)));
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode_registry(&mut text, &shared.telemetry.registry)?;
    prometheus_client::encoding::text::encode(&mut text, &now)?;
    Ok(text)
}

/// The same series in Prometheus's classic text format (0.0.4), for scrapers and tools that do
/// not ask for OpenMetrics (`curl`, `promtool check metrics`): a counter's `# HELP` and `# TYPE`
/// name it with its `_total` suffix, and OpenMetrics' `# UNIT` and `# EOF` lines go.
/// (`prometheus-client` writes only OpenMetrics; see its issue #51.)
pub(crate) fn to_classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len() + 1024);
    // A family's `# HELP` waits for its `# TYPE`, which says whether it is a counter.
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some(waiting) = help.replace(rest) {
                push_line(&mut out, "# HELP ", waiting);
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if kind == "counter" { "_total" } else { "" };
            if let Some(waiting) = help.take() {
                let (help_name, text) = waiting.split_once(' ').unwrap_or((waiting, ""));
                if help_name == name {
                    out.push_str(&format!("# HELP {name}{suffix} {text}\n"));
                } else {
                    push_line(&mut out, "# HELP ", waiting);
                }
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            if let Some(waiting) = help.take() {
                push_line(&mut out, "# HELP ", waiting);
            }
            push_line(&mut out, "", line);
        }
    }
    out
}

fn push_line(out: &mut String, prefix: &str, text: &str) {
    out.push_str(prefix);
    out.push_str(text);
    out.push('\n');
}

/// What core holds at a scrape.
#[derive(Debug)]
struct Now {
    version: &'static str,
    started_at_s: f64,
    connections: u64,
    nodes_connected: u64,
    nodes: [(NodeStatus, u64); 3],
    heartbeats: u64,
    malformed: u64,
    enrollments: u64,
    handshakes_deferred: u64,
    terminals_live: u64,
    history_dropped: u64,
    alerts_firing: [(tether_wire::alerts::Severity, u64); 3],
    alert_pairs: u64,
    alert_offline_queued: u64,
    alert_dropped: u64,
}

impl Now {
    fn read(shared: &Shared) -> Self {
        let mut nodes = [
            (NodeStatus::Online, 0),
            (NodeStatus::Offline, 0),
            (NodeStatus::Maintenance, 0),
        ];
        // A store that cannot be read shows no nodes; `/health` says why.
        if let Ok(records) = shared.store.node_records_shared() {
            shared.presence.with_sessions(|sessions| {
                for record in records.iter().filter(|r| !r.deleted) {
                    let session = sessions.get(&record.id).map(std::sync::Arc::as_ref);
                    let current = status(record.maintenance, session);
                    if let Some(slot) = nodes.iter_mut().find(|(s, _)| *s == current) {
                        slot.1 += 1;
                    }
                }
            });
        }
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let mut alerts_firing = tether_wire::alerts::Severity::ALL.map(|s| (s, 0));
        if let Ok(firing) = shared.store.alerts(true, None, usize::MAX) {
            for alert in firing {
                if let Some(slot) = alerts_firing.iter_mut().find(|(s, _)| *s == alert.severity) {
                    slot.1 += 1;
                }
            }
        }
        let (pairs, _, queued) = shared.alerts.sizes();
        let presence = &shared.presence;
        Self {
            version: env!("CARGO_PKG_VERSION"),
            started_at_s: shared.started_at_ms as f64 / 1000.0,
            connections: count(shared.endpoint.open_connections()),
            nodes_connected: count(presence.connected()),
            nodes,
            heartbeats: presence.heartbeats_total.load(Ordering::Relaxed),
            malformed: presence.malformed_total.load(Ordering::Relaxed),
            enrollments: presence.enrollments_total.load(Ordering::Relaxed),
            handshakes_deferred: shared.handshakes_deferred.load(Ordering::Relaxed),
            terminals_live: count(shared.terminals.live_sessions().len()),
            history_dropped: shared.history.dropped.load(Ordering::Relaxed),
            alerts_firing,
            alert_pairs: count(pairs),
            alert_offline_queued: count(queued),
            alert_dropped: shared.alerts.dropped.load(Ordering::Relaxed),
        }
    }
}

/// A gauge with no labels.
fn gauge<N: prometheus_client::encoding::EncodeGaugeValue + std::fmt::Debug + Send + Sync>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: N,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

/// A counter with no labels (the name without `_total`, which the encoder adds).
fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for Now {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        {
            let mut family = encoder.encode_descriptor(
                "build_info",
                "Always 1; the version of this core",
                None,
                MetricType::Gauge,
            )?;
            let labels = [("version", self.version)];
            ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        }
        gauge(
            &mut encoder,
            "start_time",
            "When this core process started, Unix time",
            Some(&Unit::Seconds),
            self.started_at_s,
        )?;
        gauge(
            &mut encoder,
            "connections",
            "QUIC connections open now: nodes, admins, bridges and handshakes under way",
            None,
            self.connections,
        )?;
        gauge(
            &mut encoder,
            "nodes_connected",
            "Nodes authenticated on this core now",
            None,
            self.nodes_connected,
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "nodes",
                "Enrolled nodes by status (online, offline, maintenance)",
                None,
                MetricType::Gauge,
            )?;
            for (state, n) in &self.nodes {
                let labels = [("status", state.to_string())];
                ConstGauge::new(*n).encode(family.encode_family(&labels)?)?;
            }
        }
        counter(
            &mut encoder,
            "heartbeats",
            "Heartbeats accepted from nodes, since start",
            self.heartbeats,
        )?;
        counter(
            &mut encoder,
            "datagrams_malformed",
            "Datagrams from nodes that did not decode, since start",
            self.malformed,
        )?;
        counter(
            &mut encoder,
            "enrollments",
            "Enrollments approved and answered, since start",
            self.enrollments,
        )?;
        counter(
            &mut encoder,
            "handshakes_deferred",
            "New connections answered with a retry or left unanswered while many handshakes were under way, since start",
            self.handshakes_deferred,
        )?;
        gauge(
            &mut encoder,
            "terminal_sessions_live",
            "Terminal sessions pending or connected now",
            None,
            self.terminals_live,
        )?;
        counter(
            &mut encoder,
            "history_samples_dropped",
            "Heartbeats not written to the metrics history because its queue was full, since start",
            self.history_dropped,
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "alerts_firing",
                "Alerts firing now, by severity",
                None,
                MetricType::Gauge,
            )?;
            for (severity, n) in &self.alerts_firing {
                let labels = [("severity", severity.as_str())];
                ConstGauge::new(*n).encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut encoder,
            "alert_pairs_tracked",
            "Rule and node pairs whose condition holds or whose alert fires",
            None,
            self.alert_pairs,
        )?;
        gauge(
            &mut encoder,
            "alert_offline_deadlines",
            "Offline rules' deadlines queued for nodes that went offline",
            None,
            self.alert_offline_queued,
        )?;
        counter(
            &mut encoder,
            "alert_decisions_dropped",
            "Alert decisions dropped because the alert writer was far behind, since start",
            self.alert_dropped,
        )?;
        Ok(())
    }
}

/// Every node's latest heartbeat (`metrics_per_node`).
#[derive(Debug)]
struct PerNode(Vec<(NodeLabels, Metrics)>);

/// A node's series' labels.
#[derive(Debug, Clone)]
struct NodeLabels {
    node_id: String,
    hostname: String,
}

impl EncodeLabelSet for NodeLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        [
            ("node_id", self.node_id.as_str()),
            ("hostname", self.hostname.as_str()),
        ]
        .encode(encoder)
    }
}

impl PerNode {
    fn read(shared: &Shared) -> Self {
        let mut nodes = Vec::new();
        if let Ok(records) = shared.store.node_records_shared() {
            for record in records.iter().filter(|r| !r.deleted) {
                let Some(session) = shared.presence.get(record.id) else {
                    continue;
                };
                let Some(metrics) = session.live.lock().expect("not poisoned").metrics.clone()
                else {
                    continue;
                };
                let labels = NodeLabels {
                    node_id: record.id.to_string(),
                    hostname: record.hostname.clone(),
                };
                nodes.push((labels, metrics));
            }
        }
        Self(nodes)
    }

    /// One gauge family with a series per node.
    fn family(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        value: impl Fn(&Metrics) -> f64,
    ) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
        for (labels, metrics) in &self.0 {
            ConstGauge::new(value(metrics)).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

impl Collector for PerNode {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        self.family(
            e,
            "node_cpu_usage_ratio",
            "CPU in use over the node's last interval, all CPUs (0 to 1)",
            None,
            |m| f64::from(m.cpu_percent) / 100.0,
        )?;
        self.family(
            e,
            "node_memory_used",
            "Memory in use",
            Some(&Unit::Bytes),
            |m| m.memory_used as f64,
        )?;
        self.family(
            e,
            "node_memory_size",
            "Physical memory",
            Some(&Unit::Bytes),
            |m| m.memory_total as f64,
        )?;
        self.family(
            e,
            "node_network_receive_bytes_per_second",
            "Bytes received per second over the node's last interval, all interfaces but loopback",
            None,
            |m| m.net_rx_bytes_per_sec as f64,
        )?;
        self.family(
            e,
            "node_network_transmit_bytes_per_second",
            "Bytes sent per second over the node's last interval, all interfaces but loopback",
            None,
            |m| m.net_tx_bytes_per_sec as f64,
        )?;
        self.family(e, "node_load1", "Load average over 1 minute", None, |m| {
            f64::from(m.load1)
        })?;
        self.family(e, "node_load5", "Load average over 5 minutes", None, |m| {
            f64::from(m.load5)
        })?;
        self.family(
            e,
            "node_load15",
            "Load average over 15 minutes",
            None,
            |m| f64::from(m.load15),
        )?;
        for (name, help, bytes) in [
            (
                "node_filesystem_used",
                "Bytes in use per filesystem, as df counts them",
                true,
            ),
            ("node_filesystem_size", "Filesystem size", false),
        ] {
            let mut family =
                e.encode_descriptor(name, help, Some(&Unit::Bytes), MetricType::Gauge)?;
            for (labels, metrics) in &self.0 {
                for disk in &metrics.disks {
                    let with_mount = [
                        ("node_id", labels.node_id.as_str()),
                        ("hostname", labels.hostname.as_str()),
                        ("mountpoint", disk.mount.as_str()),
                    ];
                    let value = if bytes {
                        disk.used_bytes
                    } else {
                        disk.total_bytes
                    };
                    ConstGauge::new(value as f64).encode(family.encode_family(&with_mount)?)?;
                }
            }
        }
        for (name, help, rx) in [
            (
                "node_network_receive_bytes",
                "Bytes received since the node booted, all interfaces but loopback",
                true,
            ),
            (
                "node_network_transmit_bytes",
                "Bytes sent since the node booted, all interfaces but loopback",
                false,
            ),
        ] {
            let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, metrics) in &self.0 {
                let value = if rx {
                    metrics.net_rx_total
                } else {
                    metrics.net_tx_total
                };
                ConstCounter::new(value).encode(family.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_format_names_counters_with_their_suffix() {
        let openmetrics = "# HELP tether_heartbeats Heartbeats accepted.\n\
# TYPE tether_heartbeats counter\n\
tether_heartbeats_total 7\n\
# HELP tether_store_commit_duration_seconds Batches.\n\
# TYPE tether_store_commit_duration_seconds histogram\n\
# UNIT tether_store_commit_duration_seconds seconds\n\
tether_store_commit_duration_seconds_sum 0.5\n\
# HELP tether_connections Open.\n\
# TYPE tether_connections gauge\n\
tether_connections 3\n\
# EOF\n";
        assert_eq!(
            to_classic(openmetrics),
            "# HELP tether_heartbeats_total Heartbeats accepted.\n\
# TYPE tether_heartbeats_total counter\n\
tether_heartbeats_total 7\n\
# HELP tether_store_commit_duration_seconds Batches.\n\
# TYPE tether_store_commit_duration_seconds histogram\n\
tether_store_commit_duration_seconds_sum 0.5\n\
# HELP tether_connections Open.\n\
# TYPE tether_connections gauge\n\
tether_connections 3\n"
        );
    }
}

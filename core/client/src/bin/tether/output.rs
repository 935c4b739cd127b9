//! What the CLI prints: tables for people, one JSON document for scripts.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tether_wire::admin::{ApplicationView, CoreStatus, NodeView};
use tether_wire::facts::StaticFacts;
use tether_wire::heartbeat::Metrics;

/// RFC 3339 (UTC, milliseconds) of unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

pub fn ago(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "never".into() };
    let now = tether_wire::units::unix_ms(SystemTime::now());
    let secs = (now - ms).max(0) / 1000;
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86_399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn labels_text(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Bytes as JSON without losing any: valid UTF-8 is the text alone; anything else is the text
/// (with U+FFFD where bytes were not UTF-8), for people, plus the exact bytes in standard base64
/// (RFC 4648), for scripts.
pub fn text_and_base64(bytes: &[u8]) -> (String, Option<String>) {
    use base64::Engine as _;
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), None),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    }
}

pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

#[derive(Serialize)]
struct MetricsJson<'a> {
    at: Option<String>,
    #[serde(flatten)]
    metrics: &'a Metrics,
}

#[derive(Serialize)]
pub struct NodeJson<'a> {
    id: String,
    hostname: &'a str,
    status: &'static str,
    connected: bool,
    maintenance: bool,
    deleted: bool,
    last_seen: Option<String>,
    labels: &'a BTreeMap<String, String>,
    group: Option<&'a str>,
    policy: Option<&'a tether_wire::policy::NodePolicy>,
    allowed_users: &'a [String],
    created_at: String,
    updated_at: String,
    public_addr: Option<&'a str>,
    clock_skew_ms: Option<i64>,
    agent_version: &'a str,
    #[serde(rename = "static")]
    static_facts: Option<&'a StaticFacts>,
    metrics: Option<MetricsJson<'a>>,
    heartbeats_received: u64,
    static_facts_received: u64,
    malformed_datagrams: u64,
    skewed_heartbeats: u64,
    conflict: Option<ConflictJson<'a>>,
    agent: Option<AgentJson<'a>>,
}

#[derive(Serialize)]
struct AgentJson<'a> {
    version: &'a str,
    pid: u32,
    started_at: String,
    restarts: u32,
    last_error: Option<&'a str>,
    cpu_percent: f32,
    rss_bytes: u64,
}

#[derive(Serialize)]
struct ConflictJson<'a> {
    address: &'a str,
    hostname: &'a str,
    reason: &'a str,
    first_at: String,
    last_at: String,
    attempts: u32,
}

pub fn node_json(node: &NodeView) -> NodeJson<'_> {
    NodeJson {
        id: node.id.to_string(),
        hostname: &node.hostname,
        status: node.status.as_str(),
        connected: node.connected,
        maintenance: node.maintenance,
        deleted: node.deleted,
        last_seen: node.last_seen_ms.map(rfc3339),
        labels: &node.labels,
        group: node.group.as_deref(),
        policy: node.policy.as_ref(),
        allowed_users: &node.allowed_users,
        created_at: rfc3339(node.created_at_ms),
        updated_at: rfc3339(node.updated_at_ms),
        public_addr: node.public_addr.as_deref(),
        clock_skew_ms: node.clock_skew_ms,
        agent_version: &node.agent_version,
        static_facts: node.static_facts.as_ref(),
        metrics: node.metrics.as_ref().map(|metrics| MetricsJson {
            at: node.metrics_at_ms.map(rfc3339),
            metrics,
        }),
        heartbeats_received: node.heartbeats_received,
        static_facts_received: node.static_facts_received,
        malformed_datagrams: node.malformed_datagrams,
        skewed_heartbeats: node.skewed_heartbeats,
        conflict: node.conflict.as_ref().map(|c| ConflictJson {
            address: &c.address,
            hostname: &c.hostname,
            reason: &c.reason,
            first_at: rfc3339(c.first_at_ms),
            last_at: rfc3339(c.last_at_ms),
            attempts: c.attempts,
        }),
        agent: node.agent.as_ref().map(|a| AgentJson {
            version: &a.version,
            pid: a.pid,
            started_at: rfc3339(a.started_at_ms),
            restarts: a.restarts,
            last_error: a.last_error.as_deref(),
            cpu_percent: a.cpu_percent,
            rss_bytes: a.rss_bytes,
        }),
    }
}

/// The status column: deleted, or the status, marked when another machine uses the identity.
fn status_text(node: &NodeView) -> String {
    let status = if node.deleted {
        "deleted".to_string()
    } else {
        node.status.to_string()
    };
    if node.conflict.is_some() {
        format!("{status}, conflict")
    } else {
        status
    }
}

#[derive(Serialize)]
pub struct ApplicationJson<'a> {
    id: String,
    node_id: String,
    hostname: &'a str,
    status: &'static str,
    created_at: String,
    decided_at: Option<String>,
    decided_by: Option<&'a str>,
    reason: Option<&'a str>,
    key_fingerprint: &'a str,
    remote_addr: Option<&'a str>,
}

pub fn application_json(app: &ApplicationView) -> ApplicationJson<'_> {
    ApplicationJson {
        id: app.id.to_string(),
        node_id: app.node_id.to_string(),
        hostname: &app.hostname,
        status: app.status.as_str(),
        created_at: rfc3339(app.created_at_ms),
        decided_at: app.decided_at_ms.map(rfc3339),
        decided_by: app.decided_by.as_deref(),
        reason: app.reason.as_deref(),
        key_fingerprint: &app.key_fingerprint,
        remote_addr: app.remote_addr.as_deref(),
    }
}

/// Prints rows with columns padded to their widest cell.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(
        out,
        "{}",
        line(header.iter().map(|h| h.to_string()).collect())
    )?;
    for row in rows {
        writeln!(out, "{}", line(row))?;
    }
    Ok(())
}

fn short(id: &impl ToString) -> String {
    id.to_string().chars().take(8).collect()
}

pub fn applications(apps: &[ApplicationView], json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&apps.iter().map(application_json).collect::<Vec<_>>());
    }
    if apps.is_empty() {
        eprintln!("no applications");
        return Ok(());
    }
    let rows = apps
        .iter()
        .map(|a| {
            vec![
                short(&a.id),
                short(&a.node_id),
                a.hostname.clone(),
                a.status.to_string(),
                ago(Some(a.created_at_ms)),
                a.remote_addr.clone().unwrap_or_else(|| "-".into()),
                a.key_fingerprint.chars().take(16).collect(),
            ]
        })
        .collect();
    table(
        &["ID", "NODE", "HOSTNAME", "STATUS", "CREATED", "FROM", "KEY"],
        rows,
    )
}

pub fn nodes(nodes: &[NodeView], json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&nodes.iter().map(node_json).collect::<Vec<_>>());
    }
    if nodes.is_empty() {
        eprintln!("no nodes");
        return Ok(());
    }
    let rows = nodes
        .iter()
        .map(|n| {
            let status = status_text(n);
            let (cpu, mem) = n.metrics.as_ref().map_or(("-".into(), "-".into()), |m| {
                let mem = if m.memory_total > 0 {
                    format!(
                        "{:.0}%",
                        m.memory_used as f64 * 100.0 / m.memory_total as f64
                    )
                } else {
                    "-".into()
                };
                (format!("{:.1}%", m.cpu_percent), mem)
            });
            vec![
                short(&n.id),
                n.hostname.clone(),
                status,
                ago(n.last_seen_ms),
                n.public_addr.clone().unwrap_or_else(|| "-".into()),
                cpu,
                mem,
                labels_text(&n.labels),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "HOSTNAME",
            "STATUS",
            "LAST SEEN",
            "ADDRESS",
            "CPU",
            "MEM",
            "LABELS",
        ],
        rows,
    )?;
    let conflicts = nodes.iter().filter(|n| n.conflict.is_some()).count();
    if conflicts > 0 {
        eprintln!(
            "{conflicts} node{} with an identity conflict: another machine uses the same identity \
             (see `tether node show`)",
            if conflicts == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

pub fn node_detail(node: &NodeView, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&node_json(node));
    }
    let mut out = std::io::stdout().lock();
    let status = status_text(node);
    writeln!(out, "id:             {}", node.id)?;
    writeln!(out, "hostname:       {}", node.hostname)?;
    writeln!(
        out,
        "status:         {status}{}",
        if node.connected { " (connected)" } else { "" }
    )?;
    if let Some(c) = &node.conflict {
        writeln!(
            out,
            "conflict:       a second machine tried to use this node's identity while it was \
             connected: {} from {}, refused {} time{} (first {}, last {})\n                {}\n                \
             One of the two has a copy of the other's state directory: give the one that is not \
             this node a fresh state directory and enroll it as a node of its own.",
            c.hostname,
            c.address,
            c.attempts,
            if c.attempts == 1 { "" } else { "s" },
            ago(Some(c.first_at_ms)),
            ago(Some(c.last_at_ms)),
            c.reason
        )?;
    }
    writeln!(
        out,
        "last seen:      {}",
        node.last_seen_ms.map_or("never".into(), |ms| format!(
            "{} ({})",
            rfc3339(ms),
            ago(Some(ms))
        ))
    )?;
    writeln!(
        out,
        "address:        {}",
        node.public_addr.as_deref().unwrap_or("-")
    )?;
    writeln!(out, "labels:         {}", labels_text(&node.labels))?;
    writeln!(
        out,
        "group:          {}",
        node.group.as_deref().unwrap_or("-")
    )?;
    writeln!(
        out,
        "policy:         {}",
        node.policy.as_ref().map_or_else(
            || "not reported (an agent older than policies)".to_string(),
            |p| p.summary()
        )
    )?;
    writeln!(
        out,
        "allowed users:  {}",
        if node.allowed_users.is_empty() {
            "(admins only)".to_string()
        } else {
            node.allowed_users.join(", ")
        }
    )?;
    writeln!(out, "agent version:  {}", node.agent_version)?;
    if let Some(a) = &node.agent {
        writeln!(
            out,
            "agent:          pid {}, up since {} ({}), {} restart{} since enrollment, CPU {:.1} %, memory {}",
            a.pid,
            rfc3339(a.started_at_ms),
            ago(Some(a.started_at_ms)),
            a.restarts,
            if a.restarts == 1 { "" } else { "s" },
            a.cpu_percent,
            bytes(a.rss_bytes)
        )?;
        if let Some(error) = &a.last_error {
            writeln!(out, "agent error:    {error}")?;
        }
    }
    if let Some(skew) = node.clock_skew_ms {
        writeln!(
            out,
            "clock skew:     {:+.1} s (node minus core){}",
            skew as f64 / 1000.0,
            if node.skewed_heartbeats > 0 {
                format!(", {} heartbeats refused", node.skewed_heartbeats)
            } else {
                String::new()
            }
        )?;
    }
    if node.malformed_datagrams > 0 {
        writeln!(
            out,
            "malformed:      {} datagrams dropped",
            node.malformed_datagrams
        )?;
    }
    writeln!(out, "enrolled:       {}", rfc3339(node.created_at_ms))?;
    if let Some(f) = &node.static_facts {
        writeln!(out, "\nsystem")?;
        writeln!(out, "  os:           {} {}", f.os_name, f.os_version)?;
        writeln!(out, "  kernel:       {} ({})", f.kernel_version, f.arch)?;
        writeln!(
            out,
            "  booted:       {}",
            rfc3339(i64::try_from(f.boot_time).unwrap_or(0) * 1000)
        )?;
        writeln!(
            out,
            "  cpu:          {} × {} @ {} MHz",
            f.cpu_count, f.cpu_model, f.cpu_frequency_mhz
        )?;
        writeln!(
            out,
            "  memory:       {}, swap {}",
            bytes(f.memory_total),
            bytes(f.swap_total)
        )?;
        writeln!(
            out,
            "  virtualization: {}",
            f.virtualization.as_deref().unwrap_or("none detected")
        )?;
        for gpu in &f.gpus {
            writeln!(out, "  gpu:          {gpu}")?;
        }
        for d in &f.disks {
            let also: Vec<&str> = d
                .mounts
                .iter()
                .map(String::as_str)
                .filter(|m| *m != d.mount)
                .collect();
            let also = if also.is_empty() {
                String::new()
            } else {
                format!(" (also on {})", also.join(", "))
            };
            writeln!(
                out,
                "  disk:         {} on {}{also} ({}, {}, {})",
                d.name,
                d.mount,
                d.filesystem,
                d.kind,
                bytes(d.total_bytes)
            )?;
        }
        for n in &f.nics {
            let addrs: Vec<String> = n.addresses.iter().map(ToString::to_string).collect();
            let speed = n
                .speed_mbps
                .map_or(String::new(), |s| format!(", {s} Mbps"));
            writeln!(
                out,
                "  nic:          {} {} [{}]{speed}",
                n.name,
                n.mac,
                addrs.join(" ")
            )?;
        }
    }
    if let Some(m) = &node.metrics {
        writeln!(out, "\nmetrics ({})", ago(node.metrics_at_ms))?;
        writeln!(
            out,
            "  cpu:          {:.1}%   load {:.2} {:.2} {:.2}",
            m.cpu_percent, m.load1, m.load5, m.load15
        )?;
        writeln!(
            out,
            "  memory:       {} / {}   swap {} / {}",
            bytes(m.memory_used),
            bytes(m.memory_total),
            bytes(m.swap_used),
            bytes(m.swap_total)
        )?;
        for d in &m.disks {
            let percent = if d.total_bytes > 0 {
                format!(
                    " ({:.0}%)",
                    d.used_bytes as f64 * 100.0 / d.total_bytes as f64
                )
            } else {
                String::new()
            };
            writeln!(
                out,
                "  disk:         {} / {} used on {}{percent}",
                bytes(d.used_bytes),
                bytes(d.total_bytes),
                d.mount
            )?;
        }
        writeln!(
            out,
            "  network:      rx {}/s tx {}/s (total rx {} tx {})",
            bytes(m.net_rx_bytes_per_sec),
            bytes(m.net_tx_bytes_per_sec),
            bytes(m.net_rx_total),
            bytes(m.net_tx_total)
        )?;
        if let Some(t) = m.temperature_c {
            writeln!(out, "  temperature:  {t:.1} °C")?;
        }
        writeln!(
            out,
            "  processes:    {}   tcp {}   udp {}",
            m.processes, m.tcp_connections, m.udp_connections
        )?;
        writeln!(
            out,
            "  uptime:       {}",
            humantime::format_duration(Duration::from_secs(m.uptime_secs))
        )?;
        writeln!(out, "  tty sessions: {}", m.tty_sessions)?;
    }
    Ok(())
}

pub fn core_status(status: &CoreStatus, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&serde_json::json!({
            "core_version": status.core_version,
            "started_at": rfc3339(status.started_at_ms),
            "started_at_ms": status.started_at_ms,
            "connections": status.connections,
            "nodes_connected": status.nodes_connected,
            "nodes_online": status.nodes_online,
            "heartbeats_received": status.heartbeats_received,
            "datagrams_malformed": status.datagrams_malformed,
            "enrollments_approved": status.enrollments_approved,
            "handshakes_deferred": status.handshakes_deferred,
        }));
    }
    let started = rfc3339(status.started_at_ms);
    let up = ago(Some(status.started_at_ms));
    println!(
        "core {}, started {started} (up {})",
        status.core_version,
        up.trim_end_matches(" ago")
    );
    println!("connections  {}", status.connections);
    println!(
        "nodes        {} connected, {} online",
        status.nodes_connected, status.nodes_online
    );
    println!(
        "since start  {} heartbeats, {} malformed datagrams, {} enrollments approved, {} handshakes deferred",
        status.heartbeats_received,
        status.datagrams_malformed,
        status.enrollments_approved,
        status.handshakes_deferred
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_utf8_are_also_given_exactly() {
        assert_eq!(
            text_and_base64(b"caf\xc3\xa9"),
            ("caf\u{e9}".to_string(), None)
        );
        let (text, exact) = text_and_base64(b"caf\xe9");
        assert_eq!(text, "caf\u{FFFD}");
        assert_eq!(exact.as_deref(), Some("Y2Fm6Q=="));
    }
}

//! Metrics history: what `tether node metrics` and the node page's charts ask core for
//! (`AdminRequest::NodeMetrics`) and what comes back. The series are seed 002's `node_metrics`
//! columns; core keeps them at three resolutions (every heartbeat for the last hour, 1-minute
//! and 1-hour aggregates after that) and answers at the step asked, with the average, minimum
//! and maximum of each step.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// The most points one answer holds (a step is widened to stay under it).
pub const MAX_POINTS: u32 = 2000;

/// The longest range one query may ask for, milliseconds (a year).
pub const MAX_RANGE_MS: u64 = 366 * 24 * 3600 * 1000;

/// One series kept in history (seed 002's `node_metrics` columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// CPU use, percent of all CPUs (`cpu_usage`).
    Cpu,
    /// Memory in use, percent (`memory_usage`).
    Mem,
    /// Memory in use, bytes (`memory_used`).
    MemUsed,
    /// The fullest filesystem's use, percent (`disk_usage`).
    Disk,
    /// Bytes in use on all filesystems (`disk_used`).
    DiskUsed,
    /// Bytes received per second, all interfaces but loopback (`network_rx`).
    NetRx,
    /// Bytes sent per second (`network_tx`).
    NetTx,
    /// Load average over 1 minute (`load_avg_1`).
    Load1,
    /// Load average over 5 minutes (`load_avg_5`).
    Load5,
    /// Load average over 15 minutes (`load_avg_15`).
    Load15,
    /// Processes (`process_count`).
    Procs,
    /// TCP sockets (`tcp_connections`).
    Tcp,
}

impl Metric {
    /// Every series, in the order history stores them.
    pub const ALL: [Metric; 12] = [
        Metric::Cpu,
        Metric::Mem,
        Metric::MemUsed,
        Metric::Disk,
        Metric::DiskUsed,
        Metric::NetRx,
        Metric::NetTx,
        Metric::Load1,
        Metric::Load5,
        Metric::Load15,
        Metric::Procs,
        Metric::Tcp,
    ];

    /// Its name on the command line and in JSON (`mem_used`).
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Mem => "mem",
            Metric::MemUsed => "mem_used",
            Metric::Disk => "disk",
            Metric::DiskUsed => "disk_used",
            Metric::NetRx => "net_rx",
            Metric::NetTx => "net_tx",
            Metric::Load1 => "load1",
            Metric::Load5 => "load5",
            Metric::Load15 => "load15",
            Metric::Procs => "procs",
            Metric::Tcp => "tcp",
        }
    }

    /// The unit of its values: `percent`, `bytes`, `bytes_per_second` or `count` (load
    /// averages are counts of runnable tasks).
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Cpu | Metric::Mem | Metric::Disk => "percent",
            Metric::MemUsed | Metric::DiskUsed => "bytes",
            Metric::NetRx | Metric::NetTx => "bytes_per_second",
            Metric::Load1 | Metric::Load5 | Metric::Load15 | Metric::Procs | Metric::Tcp => "count",
        }
    }

    /// Its place in [`Metric::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Its value in a heartbeat, in [`Metric::unit`]: percentages 0–100 (0 where the total is
    /// unknown), `disk` the fullest filesystem's, `disk_used` the sum of all.
    pub fn of(self, m: &crate::heartbeat::Metrics) -> f64 {
        match self {
            Metric::Cpu => f64::from(m.cpu_percent),
            Metric::Mem => percent(m.memory_used, m.memory_total),
            Metric::MemUsed => m.memory_used as f64,
            Metric::Disk => m
                .disks
                .iter()
                .map(|d| percent(d.used_bytes, d.total_bytes))
                .fold(0.0, f64::max),
            Metric::DiskUsed => m.disks.iter().map(|d| d.used_bytes as f64).sum(),
            Metric::NetRx => m.net_rx_bytes_per_sec as f64,
            Metric::NetTx => m.net_tx_bytes_per_sec as f64,
            Metric::Load1 => f64::from(m.load1),
            Metric::Load5 => f64::from(m.load5),
            Metric::Load15 => f64::from(m.load15),
            Metric::Procs => f64::from(m.processes),
            Metric::Tcp => f64::from(m.tcp_connections),
        }
    }

    /// Parses `cpu,mem,net_rx`; empty means every series.
    pub fn parse_list(text: &str) -> Result<Vec<Metric>, String> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let metric: Metric = part.parse()?;
            if !out.contains(&metric) {
                out.push(metric);
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Metric::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown metric {s:?}; expected one of: {}",
                    Metric::ALL.map(Metric::as_str).join(", ")
                )
            })
    }
}

/// `used` as a percentage of `total`; 0 where the total is unknown (0).
pub fn percent(used: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        used as f64 * 100.0 / total as f64
    }
}

/// Which stored resolution an answer was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resolution {
    /// Every heartbeat (the last hour by default).
    #[serde(rename = "raw")]
    Raw,
    /// 1-minute aggregates (the last 48 hours by default).
    #[serde(rename = "1m")]
    Minute,
    /// 1-hour aggregates (the last 90 days by default).
    #[serde(rename = "1h")]
    Hour,
}

impl Resolution {
    /// `raw`, `1m` or `1h`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Raw => "raw",
            Resolution::Minute => "1m",
            Resolution::Hour => "1h",
        }
    }
}

/// A request for one node's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsQuery {
    /// Node id, unique prefix or hostname.
    pub node: String,
    /// How far back from `until_ms` (or now), milliseconds; at most [`MAX_RANGE_MS`].
    pub range_ms: u64,
    /// The end of the range, unix ms; none for now.
    pub until_ms: Option<i64>,
    /// The width of one point, milliseconds; none lets core choose (about 200 points). Widened
    /// to the stored resolution it reads and to at most [`MAX_POINTS`] points.
    pub step_ms: Option<u64>,
    /// The series wanted; empty for all.
    pub metrics: Vec<Metric>,
}

impl MetricsQuery {
    /// The reasons a query is refused, as text for the user: an empty or too long range.
    pub fn check(&self) -> Result<(), String> {
        check_range(self.range_ms, self.step_ms)
    }
}

/// Why a range and step are refused, if they are.
fn check_range(range_ms: u64, step_ms: Option<u64>) -> Result<(), String> {
    if range_ms == 0 {
        return Err("the range must be longer than zero".into());
    }
    if range_ms > MAX_RANGE_MS {
        return Err(format!(
            "a range of at most {} days can be asked for",
            MAX_RANGE_MS / 86_400_000
        ));
    }
    if step_ms == Some(0) {
        return Err("the step must be longer than zero".into());
    }
    Ok(())
}

/// A request for the fleet's trend: each series' median and 95th percentile across the nodes'
/// heartbeats, as core records them with every history write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetMetricsQuery {
    /// How far back from `until_ms` (or now), milliseconds; at most [`MAX_RANGE_MS`].
    pub range_ms: u64,
    /// The end of the range, unix ms; none for now.
    pub until_ms: Option<i64>,
    /// The width of one point, milliseconds; none lets core choose.
    pub step_ms: Option<u64>,
    /// The series wanted; empty for all.
    pub metrics: Vec<Metric>,
}

impl FleetMetricsQuery {
    /// As [`MetricsQuery::check`].
    pub fn check(&self) -> Result<(), String> {
        check_range(self.range_ms, self.step_ms)
    }
}

/// The fleet's trend over a range: per point, the median and the 95th percentile of each
/// series across the nodes (averaged over the point's width).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetMetricsAnswer {
    /// The first point's start, unix ms.
    pub from_ms: i64,
    /// The width of each point, milliseconds.
    pub step_ms: u64,
    /// The coarsest stored resolution the answer was read from.
    pub resolution: Resolution,
    /// Measurements behind each point (0 where core recorded none).
    pub samples: Vec<u32>,
    /// The medians, in the order asked (only `avg` is meaningful as a trend; `min` and `max` are
    /// the lowest and highest median within the point).
    pub median: Vec<MetricSeries>,
    /// The 95th percentiles, likewise.
    pub p95: Vec<MetricSeries>,
}

/// One series of an answer: per point, the average, minimum and maximum (none where the node
/// reported nothing in that step), in the metric's [`Metric::unit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSeries {
    /// Which series.
    pub metric: Metric,
    /// Average per point.
    pub avg: Vec<Option<f64>>,
    /// Minimum per point.
    pub min: Vec<Option<f64>>,
    /// Maximum per point.
    pub max: Vec<Option<f64>>,
}

/// One node's history over a range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsAnswer {
    /// The node.
    pub node_id: NodeId,
    /// Its hostname.
    pub hostname: String,
    /// The first point's start, unix ms.
    pub from_ms: i64,
    /// The width of each point, milliseconds.
    pub step_ms: u64,
    /// The coarsest stored resolution the answer was read from.
    pub resolution: Resolution,
    /// Heartbeats behind each point (0 where the node reported nothing).
    pub samples: Vec<u32>,
    /// The series asked for, in the order asked.
    pub series: Vec<MetricSeries>,
}

impl MetricsAnswer {
    /// The start of point `i`, unix ms.
    pub fn point_ms(&self, i: usize) -> i64 {
        self.from_ms.saturating_add(
            i64::try_from(self.step_ms)
                .unwrap_or(i64::MAX)
                .saturating_mul(i as i64),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_round_trip_and_lists_parse() {
        for m in Metric::ALL {
            assert_eq!(m.as_str().parse::<Metric>().unwrap(), m);
            assert_eq!(Metric::ALL[m.index()], m);
        }
        assert_eq!(
            Metric::parse_list("cpu, mem,cpu,,net_rx").unwrap(),
            vec![Metric::Cpu, Metric::Mem, Metric::NetRx]
        );
        let err = Metric::parse_list("cpu,ram").unwrap_err();
        assert!(err.contains("\"ram\"") && err.contains("mem_used"), "{err}");
    }

    #[test]
    fn bad_ranges_are_refused() {
        let q = |range_ms, step_ms| MetricsQuery {
            node: "n".into(),
            range_ms,
            until_ms: None,
            step_ms,
            metrics: vec![],
        };
        assert!(q(0, None).check().is_err());
        assert!(q(MAX_RANGE_MS + 1, None).check().is_err());
        assert!(q(1000, Some(0)).check().is_err());
        assert!(q(3_600_000, Some(60_000)).check().is_ok());
    }
}

//! `tether node metrics`: one node's metrics history, as sparklines on a terminal, a table
//! when piped (or with --table), or JSON.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use serde_json::{Map, Value, json};
use tether_client::AdminClient;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::history::{Metric, MetricSeries, MetricsAnswer, MetricsQuery};

use crate::output::{print_json, rfc3339};

/// One node's metrics over time: every heartbeat for the last hour, 1-minute aggregates for
/// 48 hours, 1-hour aggregates for 90 days (core's defaults), at the step asked.
///
/// On a terminal each metric is one sparkline with its lowest, average, highest and latest
/// value; piped (or with --table) one row per step. Metrics: cpu, mem, mem_used, disk,
/// disk_used, net_rx, net_tx, load1, load5, load15, procs, tcp. Percentages are of all CPUs,
/// of memory, and of the fullest filesystem; network rates are bytes per second.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// The node: its id, a unique beginning of its id, or its exact hostname.
    id: String,
    /// How far back: `1h`, `24h`, `7days`, `90days`.
    #[arg(long, default_value = "24h", value_parser = tether_wire::units::parse_duration, value_name = "DURATION")]
    since: Duration,
    /// The width of one step (`30s`, `5m`, `1h`); by default as many steps as fit the terminal
    /// (or about 200). Never finer than what is kept for that age.
    #[arg(long, value_parser = tether_wire::units::parse_duration, value_name = "DURATION")]
    step: Option<Duration>,
    /// Which metrics, comma-separated (default: all).
    #[arg(long, value_name = "M,M,...", value_parser = parse_metrics)]
    metric: Option<MetricList>,
    /// One row per step even on a terminal.
    #[arg(long, conflicts_with = "json")]
    table: bool,
    /// Print JSON: one object per step with each metric's avg, min and max.
    #[arg(long)]
    json: bool,
}

/// `--metric cpu,mem`: one value holding the list.
#[derive(Debug, Clone)]
struct MetricList(Vec<Metric>);

fn parse_metrics(text: &str) -> Result<MetricList, String> {
    let metrics = Metric::parse_list(text)?;
    if metrics.is_empty() {
        return Err("name at least one metric".into());
    }
    Ok(MetricList(metrics))
}

/// Characters of a sparkline, lowest to highest.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Columns left of a sparkline (name) and right of it (figures).
const LABEL: usize = 10;
const FIGURES: usize = 44;

pub async fn run(client: &AdminClient, args: MetricsArgs) -> anyhow::Result<u8> {
    let sparklines = !args.json && !args.table && std::io::stdout().is_terminal();
    let range_ms = tether_wire::units::duration_ms(args.since);
    let step_ms = match args.step {
        Some(step) => Some(tether_wire::units::duration_ms(step)),
        // As many points as the terminal has room for.
        None if sparklines => {
            let cols = crate::terminal::window_size().map_or(100, |s| usize::from(s.cols));
            let width = cols.saturating_sub(LABEL + FIGURES).max(20) as u64;
            Some(range_ms.div_ceil(width))
        }
        None => None,
    };
    let query = MetricsQuery {
        node: args.id,
        range_ms,
        until_ms: None,
        step_ms,
        metrics: args.metric.map(|m| m.0).unwrap_or_default(),
    };
    let answer = client
        .request(&AdminRequest::NodeMetrics(query))
        .await?
        .into_iter()
        .find_map(|r| match r {
            AdminResponse::Metrics(answer) => Some(answer),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("core answered without metrics"))?;
    if args.json {
        print_json(&as_json(&answer))?;
    } else if sparklines {
        print_sparklines(&answer)?;
    } else {
        print_table(&answer)?;
    }
    Ok(0)
}

fn heading(answer: &MetricsAnswer) -> String {
    let points = answer.samples.len();
    format!(
        "{} ({}) from {} in {} steps of {} ({} data), {} heartbeats",
        answer.hostname,
        answer.node_id,
        rfc3339(answer.from_ms),
        points,
        humantime::format_duration(Duration::from_millis(answer.step_ms)),
        answer.resolution.as_str(),
        answer.samples.iter().map(|&n| u64::from(n)).sum::<u64>(),
    )
}

fn print_sparklines(answer: &MetricsAnswer) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", heading(answer))?;
    for series in &answer.series {
        let values: Vec<Option<f64>> = series.avg.clone();
        let present: Vec<f64> = values.iter().flatten().copied().collect();
        let Some(last) = present.last().copied() else {
            writeln!(out, "{:<LABEL$}(no data)", series.metric.as_str())?;
            continue;
        };
        let low = series
            .min
            .iter()
            .flatten()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let high = series.max.iter().flatten().copied().fold(0.0, f64::max);
        let mean = present.iter().sum::<f64>() / present.len() as f64;
        writeln!(
            out,
            "{:<LABEL$}{}  min {} avg {} max {} now {}",
            series.metric.as_str(),
            sparkline(&values),
            value(series.metric, low),
            value(series.metric, mean),
            value(series.metric, high),
            value(series.metric, last),
        )?;
    }
    Ok(())
}

/// One character per point, scaled between the lowest and highest average; a space where
/// there is no data.
pub fn sparkline(values: &[Option<f64>]) -> String {
    let present = values.iter().flatten().copied();
    let low = present.clone().fold(f64::INFINITY, f64::min);
    let high = present.fold(f64::NEG_INFINITY, f64::max);
    values
        .iter()
        .map(|v| match v {
            None => ' ',
            Some(v) if high - low <= f64::EPSILON => BARS[0],
            Some(v) => {
                let i = ((v - low) / (high - low) * (BARS.len() - 1) as f64).round() as usize;
                BARS[i.min(BARS.len() - 1)]
            }
        })
        .collect()
}

fn print_table(answer: &MetricsAnswer) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    write!(out, "{:<24} {:>5}", "TIME", "BEATS")?;
    for s in &answer.series {
        write!(out, " {:>12}", s.metric.as_str().to_uppercase())?;
    }
    writeln!(out)?;
    for (i, &samples) in answer.samples.iter().enumerate() {
        write!(out, "{:<24} {:>5}", rfc3339(answer.point_ms(i)), samples)?;
        for s in &answer.series {
            let text = s.avg[i].map_or_else(|| "-".to_string(), |v| value(s.metric, v));
            write!(out, " {text:>12}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// A value for people, in the metric's unit.
pub fn value(metric: Metric, v: f64) -> String {
    match metric.unit() {
        "percent" => format!("{v:.1}%"),
        "bytes" => human_bytes(v),
        "bytes_per_second" => format!("{}/s", human_bytes(v)),
        _ if matches!(metric, Metric::Load1 | Metric::Load5 | Metric::Load15) => format!("{v:.2}"),
        _ => format!("{v:.0}"),
    }
}

fn human_bytes(v: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = v;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn as_json(answer: &MetricsAnswer) -> Value {
    let points: Vec<Value> = (0..answer.samples.len())
        .map(|i| {
            let mut point = Map::new();
            point.insert("at".into(), json!(rfc3339(answer.point_ms(i))));
            point.insert("at_ms".into(), json!(answer.point_ms(i)));
            point.insert("samples".into(), json!(answer.samples[i]));
            for MetricSeries {
                metric,
                avg,
                min,
                max,
            } in &answer.series
            {
                point.insert(
                    metric.as_str().into(),
                    json!({"avg": avg[i], "min": min[i], "max": max[i]}),
                );
            }
            Value::Object(point)
        })
        .collect();
    json!({
        "node_id": answer.node_id,
        "hostname": answer.hostname,
        "from_ms": answer.from_ms,
        "step_ms": answer.step_ms,
        "resolution": answer.resolution.as_str(),
        "units": answer.series.iter().map(|s| (s.metric.as_str(), s.metric.unit())).collect::<std::collections::BTreeMap<_, _>>(),
        "points": points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_between_lowest_and_highest_and_show_gaps() {
        assert_eq!(
            sparkline(&[Some(0.0), Some(50.0), None, Some(100.0)]),
            "▁▅ █"
        );
        assert_eq!(sparkline(&[Some(3.0), Some(3.0)]), "▁▁");
        assert_eq!(sparkline(&[None, None]), "  ");
    }

    #[test]
    fn values_read_in_their_units() {
        assert_eq!(value(Metric::Cpu, 12.345), "12.3%");
        assert_eq!(
            value(Metric::MemUsed, 3.0 * 1024.0 * 1024.0 * 1024.0),
            "3.0 GiB"
        );
        assert_eq!(value(Metric::NetRx, 1536.0), "1.5 KiB/s");
        assert_eq!(value(Metric::Load1, 0.5), "0.50");
        assert_eq!(value(Metric::Tcp, 17.0), "17");
    }
}

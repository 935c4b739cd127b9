//! The agent's own state (seed 002's `agents`): its version, process, starts since enrollment,
//! last error, CPU and memory; reported to core as a datagram after connecting and every
//! [`AGENT_STATE_EVERY`](tether_wire::heartbeat::AGENT_STATE_EVERY) heartbeats.
//!
//! Starts are counted in the state directory (`starts`: the count, then the latest
//! [`KEPT_STARTS`] start times), so that a restart loop shows in core however the agent is run.

use std::path::Path;

use tether_certs::files;
use tether_wire::heartbeat::AgentState;

/// Start times kept in `STATE/starts` (core counts the ones within a rule's window).
pub const KEPT_STARTS: usize = 16;

/// This process, as reported.
#[derive(Debug)]
pub(crate) struct Agent {
    state: AgentState,
    /// CPU seconds (user + system) and the time they were read, for the next report's share.
    last_cpu: Option<(f64, std::time::Instant)>,
}

impl Agent {
    /// Counts this start in `STATE/starts` and reads what is known at start. A file that cannot
    /// be read or written costs only the count (logged), never the start.
    pub fn start(state_dir: &Path, version: &str, now_ms: i64) -> Agent {
        let path = state_dir.join("starts");
        let (mut total, mut recent) = std::fs::read_to_string(&path)
            .map(|text| parse_starts(&text))
            .unwrap_or_default();
        total = total.saturating_add(1);
        recent.push(now_ms);
        if recent.len() > KEPT_STARTS {
            recent.drain(..recent.len() - KEPT_STARTS);
        }
        let text = std::iter::once(total.to_string())
            .chain(recent.iter().map(i64::to_string))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
        if let Err(e) = files::write_public_file(&path, text.as_bytes()) {
            tracing::warn!(error = %e, "counting agent starts failed");
        }
        Agent {
            state: AgentState {
                version: version.to_string(),
                pid: std::process::id(),
                started_at_ms: now_ms,
                restarts: total.saturating_sub(1),
                recent_starts_ms: recent,
                ..Default::default()
            },
            last_cpu: cpu_seconds().map(|s| (s, std::time::Instant::now())),
        }
    }

    /// Remembers the last error met (reported with the next state).
    pub fn error(&mut self, message: impl std::fmt::Display) {
        self.state.last_error = Some(message.to_string());
    }

    /// The state now: CPU since the previous report, resident memory.
    pub fn report(&mut self) -> AgentState {
        let now = std::time::Instant::now();
        if let Some(cpu) = cpu_seconds() {
            if let Some((before, at)) = self.last_cpu {
                let wall = now.duration_since(at).as_secs_f64();
                if wall > 0.0 {
                    self.state.cpu_percent = ((cpu - before) / wall * 100.0) as f32;
                }
            }
            self.last_cpu = Some((cpu, now));
        }
        self.state.rss_bytes = rss_bytes().unwrap_or(0);
        self.state.clone().trimmed()
    }
}

/// `STATE/starts`: the count on the first line, then start times (unix ms), oldest first.
fn parse_starts(text: &str) -> (u32, Vec<i64>) {
    let mut lines = text.lines();
    let total = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    let recent = lines.filter_map(|l| l.trim().parse().ok()).collect();
    (total, recent)
}

/// This process's user + system CPU time, seconds (`/proc/self/stat`, fields 14 and 15).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields are counted after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks())
}

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on every Linux architecture the agent ships for.
    100.0
}

/// Resident memory, bytes (`/proc/self/statm`, pages).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_are_counted_in_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = Agent::start(dir.path(), "1.0", 1000);
        assert_eq!(first.state.restarts, 0);
        for i in 0..20 {
            Agent::start(dir.path(), "1.0", 2000 + i);
        }
        let mut later = Agent::start(dir.path(), "1.0", 9999);
        assert_eq!(later.state.restarts, 21);
        assert_eq!(later.state.recent_starts_ms.len(), KEPT_STARTS);
        assert_eq!(later.state.recent_starts_ms.last(), Some(&9999));
        let report = later.report();
        assert_eq!(report.pid, std::process::id());
        assert!(report.rss_bytes > 0);
        later.error("x".repeat(1000));
        assert_eq!(later.report().last_error.unwrap().len(), 256);
    }
}

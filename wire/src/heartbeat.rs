//! Datagrams. Node → core: heartbeats with dynamic metrics, sent every heartbeat interval as one
//! unreliable QUIC datagram that a retransmission can never hold up; each fits in
//! [`MAX_HEARTBEAT_LEN`](crate::limits::MAX_HEARTBEAT_LEN) bytes. Core → node: probes
//! ([`CoreDatagram`]), which nodes need not read at all.

use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError};
use crate::limits;

/// Every datagram a node sends. The variant index is the first byte, so new kinds can be added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Datagram {
    /// Periodic liveness and metrics.
    Heartbeat(Heartbeat),
    /// The agent's own state, after connecting and every [`AGENT_STATE_EVERY`] heartbeats. (A
    /// core older than this kind counts it as malformed and goes on.)
    AgentState(AgentState),
}

/// Heartbeats between two [`AgentState`] reports.
pub const AGENT_STATE_EVERY: u32 = 10;

/// Longest `last_error` an agent reports, bytes (longer ones are cut at a character boundary).
pub const MAX_AGENT_ERROR: usize = 256;

/// The agent process itself (seed 002's `agents`): what it runs, since when, how it fares.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AgentState {
    /// The agent's version.
    pub version: String,
    /// Its process id.
    pub pid: u32,
    /// When this process started, unix ms.
    pub started_at_ms: i64,
    /// Times the agent started again since it enrolled (its state directory counts them).
    pub restarts: u32,
    /// The latest start times, unix ms, oldest first (at most 16, this one last): how many
    /// fell within a window is a restart loop's measure.
    pub recent_starts_ms: Vec<i64>,
    /// The last error it met (a failed connection, a refused command), at most
    /// [`MAX_AGENT_ERROR`] bytes.
    pub last_error: Option<String>,
    /// The agent's CPU use since its previous report, percent of one CPU.
    pub cpu_percent: f32,
    /// Its resident memory, bytes.
    pub rss_bytes: u64,
}

impl AgentState {
    /// Restarts within `window_ms` before `now_ms`: the starts in it, less the first start
    /// since enrollment if it is among them.
    pub fn restarts_within(&self, window_ms: u64, now_ms: i64) -> u32 {
        let since = now_ms.saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX));
        let starts = self
            .recent_starts_ms
            .iter()
            .filter(|t| **t >= since)
            .count();
        // The list holds the first start while there have been fewer starts than it keeps.
        let first_kept = (self.restarts as usize) < self.recent_starts_ms.len();
        let first_in_window =
            first_kept && self.recent_starts_ms.first().is_some_and(|t| *t >= since);
        u32::try_from(starts - usize::from(first_in_window && starts > 0)).unwrap_or(u32::MAX)
    }

    /// Cuts `last_error` to [`MAX_AGENT_ERROR`] bytes, the version to 64 and the start times
    /// to 16: a report always fits in a datagram.
    pub fn trimmed(mut self) -> Self {
        if self.version.len() > 64 {
            let mut end = 64;
            while !self.version.is_char_boundary(end) {
                end -= 1;
            }
            self.version.truncate(end);
        }
        if self.recent_starts_ms.len() > 16 {
            self.recent_starts_ms
                .drain(..self.recent_starts_ms.len() - 16);
        }
        if let Some(error) = &mut self.last_error
            && error.len() > MAX_AGENT_ERROR
        {
            let mut end = MAX_AGENT_ERROR;
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            error.truncate(end);
        }
        self
    }
}

/// One heartbeat.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Increments with every heartbeat of a connection; lets core count losses.
    pub seq: u32,
    /// The node's clock when it was sent, unix milliseconds.
    pub timestamp_ms: i64,
    /// The measurements.
    pub metrics: Metrics,
}

/// Dynamic metrics (seed 003's report fields).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Metrics {
    /// CPU use over the last interval, percent of all CPUs (0–100).
    pub cpu_percent: f32,
    /// Memory in use, bytes.
    pub memory_used: u64,
    /// Physical memory, bytes.
    pub memory_total: u64,
    /// Swap in use, bytes.
    pub swap_used: u64,
    /// Swap, bytes.
    pub swap_total: u64,
    /// Per filesystem of the static facts' `disks` (one each, however often mounted): used and
    /// total bytes.
    pub disks: Vec<DiskUsage>,
    /// Bytes received per second over the last interval, all interfaces but loopback.
    pub net_rx_bytes_per_sec: u64,
    /// Bytes sent per second over the last interval.
    pub net_tx_bytes_per_sec: u64,
    /// Bytes received since boot.
    pub net_rx_total: u64,
    /// Bytes sent since boot.
    pub net_tx_total: u64,
    /// Load average over 1 minute.
    pub load1: f32,
    /// Load average over 5 minutes.
    pub load5: f32,
    /// Load average over 15 minutes.
    pub load15: f32,
    /// Highest temperature sensor reading in °C, where the machine has sensors.
    pub temperature_c: Option<f32>,
    /// Processes.
    pub processes: u32,
    /// TCP sockets (IPv4 and IPv6).
    pub tcp_connections: u32,
    /// UDP sockets (IPv4 and IPv6).
    pub udp_connections: u32,
    /// Seconds since boot.
    pub uptime_secs: u64,
    /// Terminal sessions the agent is serving.
    pub tty_sessions: u32,
}

/// One disk's usage.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DiskUsage {
    /// Primary mount point (matches [`crate::facts::DiskInfo::mount`]).
    pub mount: String,
    /// Bytes in use, as `df` counts them (size less free blocks).
    pub used_bytes: u64,
    /// Size in bytes.
    pub total_bytes: u64,
}

/// A datagram core sends a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CoreDatagram {
    /// Is this connection alive? The node's QUIC stack acknowledges the packet within its ACK
    /// delay, which is the whole answer: nothing in the node reads it. Core sends it when a
    /// connection claims an identity whose current connection may be dead (a rebooted machine)
    /// or alive (another machine with a copy of the identity).
    Probe,
}

/// Encodes a datagram core sends.
pub fn encode_core_datagram(datagram: &CoreDatagram) -> Vec<u8> {
    codec::encode(datagram)
}

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// Larger than any datagram a node builds.
    #[error("datagram of {0} bytes exceeds {max}", max = limits::MAX_HEARTBEAT_LEN)]
    TooLarge(usize),
    /// Not a valid datagram.
    #[error(transparent)]
    Malformed(#[from] DecodeError),
}

/// Encodes a datagram.
pub fn encode_datagram(datagram: &Datagram) -> Vec<u8> {
    codec::encode(datagram)
}

/// Encodes a heartbeat, dropping disks from the end until it fits in
/// [`MAX_HEARTBEAT_LEN`](limits::MAX_HEARTBEAT_LEN) (a machine with dozens of mounts). Returns the
/// bytes and how many disks were left out.
pub fn encode_heartbeat(mut heartbeat: Heartbeat) -> (Vec<u8>, usize) {
    let mut dropped = 0;
    loop {
        let bytes = encode_datagram(&Datagram::Heartbeat(heartbeat.clone()));
        if bytes.len() <= limits::MAX_HEARTBEAT_LEN || heartbeat.metrics.disks.is_empty() {
            return (bytes, dropped);
        }
        heartbeat.metrics.disks.pop();
        dropped += 1;
    }
}

/// Decodes a datagram, refusing anything larger than a node would send.
pub fn decode_datagram(bytes: &[u8]) -> Result<Datagram, DatagramError> {
    if bytes.len() > limits::MAX_HEARTBEAT_LEN {
        return Err(DatagramError::TooLarge(bytes.len()));
    }
    Ok(codec::decode_small(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_disks_are_trimmed_to_fit() {
        let mut heartbeat = Heartbeat::default();
        heartbeat.metrics.disks = (0..200)
            .map(|i| DiskUsage {
                mount: format!("/srv/volumes/volume-number-{i:04}"),
                used_bytes: u64::MAX,
                total_bytes: u64::MAX,
            })
            .collect();
        let (bytes, dropped) = encode_heartbeat(heartbeat);
        assert!(bytes.len() <= limits::MAX_HEARTBEAT_LEN);
        assert!(dropped > 150);
        let Datagram::Heartbeat(back) = decode_datagram(&bytes).unwrap() else {
            panic!("a heartbeat")
        };
        assert_eq!(back.metrics.disks.len(), 200 - dropped);
    }

    #[test]
    fn oversized_datagram_refused() {
        let bytes = vec![0u8; limits::MAX_HEARTBEAT_LEN + 1];
        assert_eq!(
            decode_datagram(&bytes),
            Err(DatagramError::TooLarge(limits::MAX_HEARTBEAT_LEN + 1))
        );
    }
}

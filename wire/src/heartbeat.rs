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
        let datagram = Datagram::Heartbeat(heartbeat);
        let bytes = encode_datagram(&datagram);
        let Datagram::Heartbeat(back) = datagram;
        heartbeat = back;
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
        let Datagram::Heartbeat(back) = decode_datagram(&bytes).unwrap();
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

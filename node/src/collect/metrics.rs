//! Heartbeat metrics.

use std::time::Instant;

use sysinfo::System;
use tether_wire::heartbeat::{DiskUsage, Metrics};

use super::{Collector, linux, mounts};

impl Collector {
    /// Takes a sample; rates are over the time since the previous one.
    pub fn metrics(&mut self) -> Metrics {
        let elapsed = self.last_sample.elapsed().as_secs_f64().max(0.001);
        self.last_sample = Instant::now();
        if let Some(system) = &mut self.system {
            system.refresh_cpu_usage();
            system.refresh_memory();
        }
        if let Some(networks) = &mut self.networks {
            networks.refresh(true);
        }

        let (mut rx, mut tx, mut rx_total, mut tx_total) = (0u64, 0u64, 0u64, 0u64);
        for (name, data) in self.networks.iter().flat_map(|n| n.iter()) {
            if name.as_os_str() == "lo" {
                continue;
            }
            rx = rx.saturating_add(data.received());
            tx = tx.saturating_add(data.transmitted());
            rx_total = rx_total.saturating_add(data.total_received());
            tx_total = tx_total.saturating_add(data.total_transmitted());
        }
        let per_second = |bytes: u64| (bytes as f64 / elapsed).round() as u64;

        let temperature_c = self.components.as_mut().and_then(|components| {
            components.refresh(false);
            components
                .iter()
                .filter_map(|c| c.temperature())
                .filter(|t| t.is_finite())
                .reduce(f32::max)
        });
        let load = System::load_average().unwrap_or(sysinfo::LoadAvg {
            one: 0.0,
            five: 0.0,
            fifteen: 0.0,
        });

        let system = self.system.as_ref();
        Metrics {
            cpu_percent: system.map_or(0.0, System::global_cpu_usage),
            memory_used: system.map_or(0, System::used_memory),
            memory_total: system.map_or(0, System::total_memory),
            swap_used: system.map_or(0, System::used_swap),
            swap_total: system.map_or(0, System::total_swap),
            // Read afresh each time: mounts come and go. One entry per filesystem, as in the
            // static facts.
            disks: mounts::read()
                .iter()
                .filter_map(|fs| {
                    let (total_bytes, used_bytes) = mounts::usage(fs.primary())?;
                    Some(DiskUsage {
                        mount: fs.primary().to_string(),
                        used_bytes,
                        total_bytes,
                    })
                })
                .collect(),
            net_rx_bytes_per_sec: per_second(rx),
            net_tx_bytes_per_sec: per_second(tx),
            net_rx_total: rx_total,
            net_tx_total: tx_total,
            load1: load.one as f32,
            load5: load.five as f32,
            load15: load.fifteen as f32,
            temperature_c,
            processes: linux::process_count(),
            tcp_connections: linux::socket_count("tcp"),
            udp_connections: linux::socket_count("udp"),
            uptime_secs: System::uptime().unwrap_or_default(),
            // Filled in by the session, which knows its terminals.
            tty_sessions: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_this_machine_fit_a_datagram() {
        let mut collector = Collector::new();
        let metrics = collector.metrics();
        assert!(metrics.memory_total > 0 && metrics.memory_used <= metrics.memory_total);
        assert!(metrics.processes > 0);
        assert!(metrics.uptime_secs > 0);
        assert!((0.0..=100.0).contains(&metrics.cpu_percent));
        let heartbeat = tether_wire::heartbeat::Heartbeat {
            seq: 1,
            timestamp_ms: 0,
            metrics,
        };
        let (bytes, _) = tether_wire::heartbeat::encode_heartbeat(heartbeat);
        assert!(bytes.len() <= tether_wire::limits::MAX_HEARTBEAT_LEN);
    }
}

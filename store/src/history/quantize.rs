//! From a heartbeat's metrics to the integers history keeps, and back. Each series has a
//! stored unit chosen to lose nothing a chart shows while keeping deltas small (every bit of
//! noise kept costs disk at 100,000 nodes): quarters of a percent, hundredths of a load, and for
//! sizes and byte rates (which span many orders of magnitude) the upper bits of an IEEE-754
//! single: within 0.4 % for sizes, 3 % for rates.

use tether_wire::heartbeat::Metrics;
use tether_wire::history::Metric;

use super::codec::SERIES;

/// Byte rates keep an f32's sign, exponent and top 4 mantissa bits: within 3 % (a rate wanders by
/// more than that from one heartbeat to the next, and a chart cannot show less), in 13 bits.
const RATE_SHIFT: u32 = 19;
/// Sizes in use (memory, disk) keep 7 mantissa bits: within 0.4 %, in 16 bits.
const SIZE_SHIFT: u32 = 16;

/// The stored values of one heartbeat, in [`Metric::ALL`] order.
pub(crate) fn sample(m: &Metrics) -> [u32; SERIES] {
    let mut out = [0u32; SERIES];
    for metric in Metric::ALL {
        out[metric.index()] = encode(metric, metric.of(m));
    }
    out
}

/// `value` (in the metric's unit) as stored; out-of-range and NaN values are clamped.
pub(crate) fn encode(metric: Metric, value: f64) -> u32 {
    let value = if value.is_nan() { 0.0 } else { value.max(0.0) };
    let scaled = match metric {
        Metric::Cpu | Metric::Mem | Metric::Disk => (value * 4.0).min(400.0),
        Metric::MemUsed | Metric::DiskUsed => {
            let bits = (value as f32).to_bits();
            return bits.saturating_add(1 << (SIZE_SHIFT - 1)) >> SIZE_SHIFT;
        }
        Metric::NetRx | Metric::NetTx => {
            // Round to nearest on the bits kept (the top bits of the f32).
            let bits = (value as f32).to_bits();
            return bits.saturating_add(1 << (RATE_SHIFT - 1)) >> RATE_SHIFT;
        }
        Metric::Load1 | Metric::Load5 | Metric::Load15 => value * 100.0,
        Metric::Procs | Metric::Tcp => value,
    };
    // `as` saturates at u32::MAX.
    scaled.round() as u32
}

/// A stored value in the metric's unit.
pub(crate) fn decode(metric: Metric, stored: u32) -> f64 {
    let v = f64::from(stored);
    match metric {
        Metric::Cpu | Metric::Mem | Metric::Disk => v / 4.0,
        Metric::MemUsed | Metric::DiskUsed => f64::from(f32::from_bits(stored << SIZE_SHIFT)),
        Metric::NetRx | Metric::NetTx => f64::from(f32::from_bits(stored << RATE_SHIFT)),
        Metric::Load1 | Metric::Load5 | Metric::Load15 => v / 100.0,
        Metric::Procs | Metric::Tcp => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_wire::heartbeat::DiskUsage;

    const MIB: f64 = 1024.0 * 1024.0;

    #[test]
    fn values_survive_within_their_precision() {
        let cases: [(Metric, f64, f64); 8] = [
            (Metric::Cpu, 12.34, 0.125),
            (Metric::Mem, 99.99, 0.125),
            (Metric::MemUsed, 3.5e9, 3.5e9 * 0.004),
            (Metric::NetRx, 123_456.0, 123_456.0 * 0.031),
            (Metric::NetTx, 0.0, 0.0),
            (Metric::NetTx, 9.9e9, 9.9e9 * 0.031),
            (Metric::Load5, 2.71, 0.005),
            (Metric::Tcp, 42.0, 0.0),
        ];
        for (metric, value, within) in cases {
            let back = decode(metric, encode(metric, value));
            assert!(
                (back - value).abs() <= within,
                "{metric}: {value} came back {back}"
            );
        }
    }

    #[test]
    fn nonsense_is_clamped_not_stored() {
        assert_eq!(encode(Metric::Cpu, f64::NAN), 0);
        assert_eq!(encode(Metric::Cpu, -5.0), 0);
        assert_eq!(decode(Metric::Cpu, encode(Metric::Cpu, 400.0)), 100.0);
        assert_eq!(encode(Metric::Procs, 1e20), u32::MAX);
        assert!(decode(Metric::NetRx, encode(Metric::NetRx, f64::INFINITY)).is_infinite());
    }

    #[test]
    fn a_heartbeat_becomes_one_row() {
        let m = Metrics {
            cpu_percent: 50.0,
            memory_used: 1 << 30,
            memory_total: 4 << 30,
            disks: vec![
                DiskUsage {
                    mount: "/".into(),
                    used_bytes: 10 << 30,
                    total_bytes: 100 << 30,
                },
                DiskUsage {
                    mount: "/var".into(),
                    used_bytes: 90 << 30,
                    total_bytes: 100 << 30,
                },
            ],
            load1: 1.5,
            processes: 200,
            tcp_connections: 17,
            ..Metrics::default()
        };
        let row = sample(&m);
        let get = |metric: Metric| decode(metric, row[metric.index()]);
        assert_eq!(get(Metric::Cpu), 50.0);
        assert_eq!(get(Metric::Mem), 25.0);
        assert_eq!(get(Metric::Disk), 90.0, "the fullest filesystem");
        assert_eq!(
            get(Metric::DiskUsed),
            100.0 * 1024.0 * MIB,
            "all filesystems"
        );
        assert_eq!(get(Metric::Load1), 1.5);
        assert_eq!(get(Metric::Procs), 200.0);
        assert_eq!(get(Metric::Tcp), 17.0);
    }
}

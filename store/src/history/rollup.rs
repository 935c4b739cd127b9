//! Aggregating rows into wider buckets: what history does as it downsamples (heartbeats into
//! minutes, minutes into hours) and what a query does to reach the step asked. Pure.

use tether_wire::history::Metric;

use super::codec::{Row, SERIES};
use super::quantize::{decode, encode};

/// A bucket being filled.
#[derive(Debug, Clone)]
pub(crate) struct Acc {
    pub count: u64,
    pub min: [u32; SERIES],
    pub max: [u32; SERIES],
    /// Sum of averages times counts, in each series' own unit (byte rates are stored on a
    /// log-like scale, so averaging their stored integers would be wrong).
    pub sum: [f64; SERIES],
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            count: 0,
            min: [u32::MAX; SERIES],
            max: [0; SERIES],
            sum: [0.0; SERIES],
        }
    }
}

impl Acc {
    /// Adds one row.
    pub fn add(&mut self, row: &Row) {
        if row.count == 0 {
            return;
        }
        self.count += u64::from(row.count);
        for metric in Metric::ALL {
            let s = metric.index();
            self.min[s] = self.min[s].min(row.min[s]);
            self.max[s] = self.max[s].max(row.max[s]);
            self.sum[s] += decode(metric, row.avg[s]) * f64::from(row.count);
        }
    }

    /// The average of series `metric`, in its unit.
    pub fn average(&self, metric: Metric) -> f64 {
        self.sum[metric.index()] / self.count.max(1) as f64
    }

    /// The bucket as a stored row starting at `at_s`.
    pub fn row(&self, at_s: i64) -> Row {
        let mut row = Row {
            at_s,
            count: u32::try_from(self.count).unwrap_or(u32::MAX),
            min: self.min,
            max: self.max,
            avg: [0; SERIES],
        };
        for metric in Metric::ALL {
            let s = metric.index();
            // Rounding may step just outside [min, max]; the codec relies on neither.
            row.avg[s] = encode(metric, self.average(metric)).clamp(row.min[s], row.max[s]);
        }
        row
    }
}

/// The start of the bucket of width `width_s` holding `at_s` (buckets align to multiples of
/// the width since the epoch, so minutes start at :00 and hours on the hour, in UTC).
pub(crate) fn bucket(at_s: i64, width_s: i64) -> i64 {
    at_s.div_euclid(width_s) * width_s
}

/// `rows` (in time order) in buckets of `width_s`: count summed, minimum of minimums, maximum of
/// maximums, average weighted by count. Empty buckets are left out.
pub(crate) fn rollup(rows: &[Row], width_s: i64) -> Vec<Row> {
    let mut out = Vec::new();
    let mut current: Option<(i64, Acc)> = None;
    for row in rows {
        let start = bucket(row.at_s, width_s);
        match &mut current {
            Some((at, acc)) if *at == start => acc.add(row),
            _ => {
                if let Some((at, acc)) = current.take()
                    && acc.count > 0
                {
                    out.push(acc.row(at));
                }
                let mut acc = Acc::default();
                acc.add(row);
                current = Some((start, acc));
            }
        }
    }
    if let Some((at, acc)) = current
        && acc.count > 0
    {
        out.push(acc.row(at));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(row: &Row) -> (u32, u32, u32) {
        let s = Metric::Cpu.index();
        (row.min[s], row.avg[s], row.max[s])
    }

    #[test]
    fn heartbeats_become_minutes() {
        let s = Metric::Cpu.index();
        let mut rows = Vec::new();
        for (i, value) in [100, 300, 200, 400].into_iter().enumerate() {
            let mut values = [0; SERIES];
            values[s] = value;
            rows.push(Row::sample(1_800_000_000 + 30 * i as i64, values));
        }
        let minutes = rollup(&rows, 60);
        assert_eq!(minutes.len(), 2);
        assert_eq!(minutes[0].at_s, 1_800_000_000, "on the minute");
        assert_eq!((minutes[0].count, cpu(&minutes[0])), (2, (100, 200, 300)));
        assert_eq!((minutes[1].count, cpu(&minutes[1])), (2, (200, 300, 400)));
        // Minutes into an hour: weighted by how many heartbeats each holds.
        let mut uneven = minutes.clone();
        uneven[1].count = 6;
        let hour = rollup(&uneven, 3600);
        assert_eq!(hour.len(), 1);
        assert_eq!((hour[0].count, cpu(&hour[0])), (8, (100, 275, 400)));
    }

    #[test]
    fn byte_rates_average_as_rates_not_as_their_stored_bits() {
        let s = Metric::NetRx.index();
        let rows: Vec<Row> = [1000.0, 1_000_000.0]
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let mut values = [0; SERIES];
                values[s] = encode(Metric::NetRx, v);
                Row::sample(i as i64, values)
            })
            .collect();
        let avg = decode(Metric::NetRx, rollup(&rows, 60)[0].avg[s]);
        assert!((avg - 500_500.0).abs() < 500_500.0 * 0.031, "{avg}");
    }

    #[test]
    fn gaps_leave_buckets_out() {
        let rows = [Row::sample(0, [1; SERIES]), Row::sample(7200, [2; SERIES])];
        let hours = rollup(&rows, 3600);
        assert_eq!(hours.iter().map(|r| r.at_s).collect::<Vec<_>>(), [0, 7200]);
    }
}

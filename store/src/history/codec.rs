//! How history rows are laid out on disk. Pure: bytes in, rows out.
//!
//! A tier's newest rows sit in an *open chunk*. The raw tier's (in memory, written out only on a
//! clean close) are rows of fixed width appended as heartbeats come; a coarser tier's gets a
//! row per finer window (every 10 minutes or every hour), so it is kept sealed, as below, and
//! rewritten whole at each row. When its window ends the chunk is *sealed*: columns instead of
//! rows, each column delta-coded as zigzag varints (slow-moving series become runs of zeros),
//! and the whole compressed with zstd when that is smaller. This is the "compressed blocks" way
//! of Prometheus's and Gorilla's chunks, with the general-purpose compressor doing the
//! bit-level work.

use crate::StoreError;

/// Series per row (`tether_wire::history::Metric::ALL`).
pub(crate) const SERIES: usize = 12;

/// One stored point: a heartbeat's values (`count` 1, min = max = avg) or a bucket's
/// aggregates. Values are in each series' stored unit (see `quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Row {
    /// The heartbeat's time, or the bucket's start, unix seconds.
    pub at_s: i64,
    /// Heartbeats behind it.
    pub count: u32,
    /// Minimum per series.
    pub min: [u32; SERIES],
    /// Maximum per series.
    pub max: [u32; SERIES],
    /// Average per series (rounded).
    pub avg: [u32; SERIES],
}

impl Row {
    /// A single heartbeat's values.
    pub fn sample(at_s: i64, values: [u32; SERIES]) -> Row {
        Row {
            at_s,
            count: 1,
            min: values,
            max: values,
            avg: values,
        }
    }
}

/// An open chunk's header: format byte, window start (unix seconds).
const OPEN_HEADER: usize = 1 + 8;
const OPEN_RAW: u8 = 0;
/// Aggregate rows of fixed width: read, no longer written (a 1-minute chunk of an hour took
/// 9.4 KB, the sealed form about a sixth of that).
const OPEN_AGG: u8 = 1;
/// Aggregate rows as a sealed chunk ([`seal`]) after the header.
const OPEN_SEALED: u8 = 2;
const RAW_ROW: usize = 8 + 4 * SERIES;
const AGG_ROW: usize = 8 + 4 + 3 * 4 * SERIES;

/// An empty open chunk whose window starts at `start_s`; `raw` rows keep one value per series.
pub(crate) fn open_new(start_s: i64, raw: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(OPEN_HEADER + 16 * RAW_ROW);
    out.push(if raw { OPEN_RAW } else { OPEN_AGG });
    out.extend_from_slice(&start_s.to_le_bytes());
    out
}

/// An open chunk of aggregate rows (time-ordered) whose window starts at `start_s`, sealed at
/// zstd `level`.
pub(crate) fn open_sealed(start_s: i64, rows: &[Row], level: i32) -> Vec<u8> {
    let sealed = seal(rows, level);
    let mut out = Vec::with_capacity(OPEN_HEADER + sealed.len());
    out.push(OPEN_SEALED);
    out.extend_from_slice(&start_s.to_le_bytes());
    out.extend_from_slice(&sealed);
    out
}

/// The window start of an open chunk.
pub(crate) fn open_start(chunk: &[u8]) -> Result<i64, StoreError> {
    let bytes: [u8; 8] = chunk
        .get(1..OPEN_HEADER)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("open chunk shorter than its header"))?;
    Ok(i64::from_le_bytes(bytes))
}

/// Appends `row` to an open chunk of fixed-width rows (not a sealed one: see [`open_sealed`]).
pub(crate) fn open_push(chunk: &mut Vec<u8>, row: &Row) {
    debug_assert_ne!(
        chunk.first(),
        Some(&OPEN_SEALED),
        "sealed open chunks are rewritten"
    );
    chunk.extend_from_slice(&row.at_s.to_le_bytes());
    if chunk.first() == Some(&OPEN_RAW) {
        for v in row.min {
            chunk.extend_from_slice(&v.to_le_bytes());
        }
    } else {
        chunk.extend_from_slice(&row.count.to_le_bytes());
        for column in [&row.min, &row.max, &row.avg] {
            for v in column {
                chunk.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
}

/// The rows of an open chunk.
pub(crate) fn open_rows(chunk: &[u8]) -> Result<Vec<Row>, StoreError> {
    let body = chunk
        .get(OPEN_HEADER..)
        .ok_or_else(|| corrupt("open chunk shorter than its header"))?;
    let raw = match chunk[0] {
        OPEN_RAW => true,
        OPEN_AGG => false,
        OPEN_SEALED => return unseal(body),
        _ => return Err(corrupt("open chunk of an unknown format")),
    };
    let width = if raw { RAW_ROW } else { AGG_ROW };
    if body.len() % width != 0 {
        return Err(corrupt("open chunk with a partial row"));
    }
    let rows = body
        .chunks_exact(width)
        .map(|bytes| {
            let at_s = i64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
            let word = |i: usize| {
                let at = 8 + 4 * i;
                u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
            };
            let column = |first: usize| std::array::from_fn(|s| word(first + s));
            if raw {
                Row::sample(at_s, column(0))
            } else {
                Row {
                    at_s,
                    count: word(0),
                    min: column(1),
                    max: column(1 + SERIES),
                    avg: column(1 + 2 * SERIES),
                }
            }
        })
        .collect();
    Ok(rows)
}

/// A sealed chunk's first byte: the column layout, and whether zstd compressed it. Layout 1
/// (`0x10`, `0x11`) is read, no longer written.
const SEALED_V1_PLAIN: u8 = 0x10;
const SEALED_V1_ZSTD: u8 = 0x11;
const SEALED_PLAIN: u8 = 0x12;
const SEALED_ZSTD: u8 = 0x13;
/// The largest column data a sealed chunk may claim (a week of 1-second rows fits).
const MAX_SEALED_PAYLOAD: usize = 64 << 20;

/// Rows as a sealed chunk: `[format][varint rows][varint payload length][payload]`, the payload
/// being columns of zigzag varints, zstd-compressed at `level` when that is smaller. `rows` are
/// in time order. Columns: time as delta-of-delta; count as deltas; then per series its
/// average, how far the minimum lies below it and how far the maximum above, each in whichever
/// [`Coding`] looks cheapest for that column of that block. Offsets from the average rather than
/// the values themselves because a bucket of two heartbeats has its average in the middle
/// (above ≈ below: next to nothing to store), and averages move less than extremes.
pub(crate) fn seal(rows: &[Row], level: i32) -> Vec<u8> {
    let mut payload = Vec::with_capacity(rows.len() * (2 + 3 * SERIES));
    let (mut last_at, mut last_gap) = (0i64, 0i64);
    for (i, row) in rows.iter().enumerate() {
        let value = match i {
            0 => row.at_s,
            1 => row.at_s.wrapping_sub(last_at),
            _ => row.at_s.wrapping_sub(last_at).wrapping_sub(last_gap),
        };
        if i > 0 {
            last_gap = row.at_s.wrapping_sub(last_at);
        }
        last_at = row.at_s;
        put_signed(&mut payload, value);
    }
    let mut last = 0i64;
    for row in rows {
        put_signed(&mut payload, i64::from(row.count) - last);
        last = i64::from(row.count);
    }
    let mut avg = Vec::with_capacity(rows.len());
    let mut below = Vec::with_capacity(rows.len());
    let mut above = Vec::with_capacity(rows.len());
    for s in 0..SERIES {
        avg.clear();
        below.clear();
        above.clear();
        for r in rows {
            let (min, max, mean) = (
                i64::from(r.min[s]),
                i64::from(r.max[s]),
                i64::from(r.avg[s]),
            );
            avg.push(mean);
            below.push(mean - min);
            above.push(max - mean);
        }
        put_column(&mut payload, &avg, None);
        put_column(&mut payload, &below, None);
        put_column(&mut payload, &above, Some(&below));
    }
    let mut out = Vec::with_capacity(payload.len() / 3 + 16);
    let compressed = zstd::bulk::compress(&payload, level)
        .ok()
        .filter(|c| c.len() < payload.len());
    out.push(if compressed.is_some() {
        SEALED_ZSTD
    } else {
        SEALED_PLAIN
    });
    put_unsigned(&mut out, rows.len() as u64);
    put_unsigned(&mut out, payload.len() as u64);
    out.extend_from_slice(compressed.as_deref().unwrap_or(&payload));
    out
}

/// The rows of a sealed chunk (either layout).
pub(crate) fn unseal(chunk: &[u8]) -> Result<Vec<Row>, StoreError> {
    let (&format, mut rest) = chunk
        .split_first()
        .ok_or_else(|| corrupt("empty sealed chunk"))?;
    let rows = usize::try_from(get_unsigned(&mut rest)?).map_err(|_| corrupt("row count"))?;
    let length = usize::try_from(get_unsigned(&mut rest)?).map_err(|_| corrupt("length"))?;
    if length > MAX_SEALED_PAYLOAD {
        return Err(corrupt("sealed chunk larger than any core writes"));
    }
    let inflated;
    let mut payload = match format {
        SEALED_PLAIN | SEALED_V1_PLAIN => rest,
        SEALED_ZSTD | SEALED_V1_ZSTD => {
            inflated = zstd::bulk::decompress(rest, length)
                .map_err(|e| corrupt(&format!("sealed chunk does not decompress: {e}")))?;
            &inflated[..]
        }
        _ => return Err(corrupt("sealed chunk of an unknown format")),
    };
    if payload.len() != length {
        return Err(corrupt("sealed chunk of the wrong length"));
    }
    // Every row takes at least one byte in each of its columns (time, count and three per
    // series), so a block cannot claim rows it does not hold (and make us allocate for them).
    if rows.saturating_mul(2 + 3 * SERIES) > payload.len() {
        return Err(corrupt("sealed chunk claims more rows than it holds"));
    }
    let mut out = vec![Row::default(); rows];
    let (mut last_at, mut last_gap) = (0i64, 0i64);
    for (i, row) in out.iter_mut().enumerate() {
        let value = get_signed(&mut payload)?;
        row.at_s = match i {
            0 => value,
            1 => last_at.wrapping_add(value),
            _ => last_at.wrapping_add(last_gap).wrapping_add(value),
        };
        if i > 0 {
            last_gap = row.at_s.wrapping_sub(last_at);
        }
        last_at = row.at_s;
    }
    let mut last = 0i64;
    for row in out.iter_mut() {
        last = last.wrapping_add(get_signed(&mut payload)?);
        row.count = to_u32(last)?;
    }
    if matches!(format, SEALED_V1_PLAIN | SEALED_V1_ZSTD) {
        series_v1(&mut payload, &mut out)?;
    } else {
        let mut below = vec![0i64; rows];
        let mut column = vec![0i64; rows];
        for s in 0..SERIES {
            get_column(&mut payload, &mut column, None)?;
            for (row, v) in out.iter_mut().zip(&column) {
                row.avg[s] = to_u32(*v)?;
            }
            get_column(&mut payload, &mut below, None)?;
            for (row, v) in out.iter_mut().zip(&below) {
                row.min[s] = to_u32(i64::from(row.avg[s]).wrapping_sub(*v))?;
            }
            get_column(&mut payload, &mut column, Some(&below))?;
            for (row, v) in out.iter_mut().zip(&column) {
                row.max[s] = to_u32(i64::from(row.avg[s]).wrapping_add(*v))?;
            }
        }
    }
    if !payload.is_empty() {
        return Err(corrupt("sealed chunk with bytes after its columns"));
    }
    Ok(out)
}

/// Layout 1's series: each minimum and spread `max - min` as deltas from the row before, the
/// average as its offset from the spread's middle.
fn series_v1(payload: &mut &[u8], out: &mut [Row]) -> Result<(), StoreError> {
    let middle = |min: u32, max: u32| (i64::from(min) + i64::from(max)) / 2;
    for s in 0..SERIES {
        let mut last = 0i64;
        for row in out.iter_mut() {
            last = last.wrapping_add(get_signed(payload)?);
            row.min[s] = to_u32(last)?;
        }
        let mut last = 0i64;
        for row in out.iter_mut() {
            last = last.wrapping_add(get_signed(payload)?);
            row.max[s] = to_u32(i64::from(row.min[s]).wrapping_add(last))?;
        }
        for row in out.iter_mut() {
            let offset = get_signed(payload)?;
            row.avg[s] = to_u32(middle(row.min[s], row.max[s]).wrapping_add(offset))?;
        }
    }
    Ok(())
}

/// How a column's values are written, chosen per column and block: as they are (noise around
/// a level), less the same row's value of a reference column (two columns that move together),
/// or less the value before (a series that wanders).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    AsIs = 0,
    LessReference = 1,
    LessPrevious = 2,
}

impl Coding {
    fn residual(self, values: &[i64], reference: Option<&[i64]>, i: usize) -> i64 {
        match self {
            Coding::AsIs => values[i],
            Coding::LessReference => values[i].wrapping_sub(reference.map_or(0, |r| r[i])),
            Coding::LessPrevious => values[i].wrapping_sub(if i == 0 { 0 } else { values[i - 1] }),
        }
    }
}

/// Writes `values` as a coding byte and varints, in the coding whose residuals have the fewest
/// significant bits in all (a cheap stand-in for what zstd will make of them).
fn put_column(out: &mut Vec<u8>, values: &[i64], reference: Option<&[i64]>) {
    let bits = |coding: Coding| -> u64 {
        (0..values.len())
            .map(|i| u64::from(64 - zigzag(coding.residual(values, reference, i)).leading_zeros()))
            .sum()
    };
    let mut candidates = vec![Coding::AsIs, Coding::LessPrevious];
    if reference.is_some() {
        candidates.push(Coding::LessReference);
    }
    let coding = candidates
        .into_iter()
        .min_by_key(|&c| bits(c))
        .unwrap_or(Coding::AsIs);
    out.push(coding as u8);
    for i in 0..values.len() {
        put_signed(out, coding.residual(values, reference, i));
    }
}

/// Reads a column [`put_column`] wrote into `values` (its length is the block's rows).
fn get_column(
    input: &mut &[u8],
    values: &mut [i64],
    reference: Option<&[i64]>,
) -> Result<(), StoreError> {
    let (&coding, rest) = input
        .split_first()
        .ok_or_else(|| corrupt("sealed chunk cut short"))?;
    *input = rest;
    for i in 0..values.len() {
        let v = get_signed(input)?;
        values[i] = match coding {
            0 => v,
            1 => {
                let r = reference.ok_or_else(|| corrupt("column coding without a reference"))?;
                v.wrapping_add(r[i])
            }
            2 => v.wrapping_add(if i == 0 { 0 } else { values[i - 1] }),
            _ => return Err(corrupt("column of an unknown coding")),
        };
    }
    Ok(())
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn to_u32(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt("value out of range"))
}

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("metrics history: {what}"))
}

fn put_unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_signed(out: &mut Vec<u8>, value: i64) {
    put_unsigned(out, zigzag(value));
}

fn get_unsigned(input: &mut &[u8]) -> Result<u64, StoreError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input
            .split_first()
            .ok_or_else(|| corrupt("sealed chunk cut short"))?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(corrupt("varint longer than 64 bits"))
}

fn get_signed(input: &mut &[u8]) -> Result<i64, StoreError> {
    let v = get_unsigned(input)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row() -> impl Strategy<Value = Row> {
        (
            any::<i64>(),
            any::<u32>(),
            proptest::array::uniform12(any::<u32>()),
            proptest::array::uniform12(any::<u32>()),
            proptest::array::uniform12(any::<u32>()),
        )
            .prop_map(|(at_s, count, a, b, c)| {
                let mut row = Row {
                    at_s,
                    count,
                    ..Row::default()
                };
                for s in 0..SERIES {
                    let mut v = [a[s], b[s], c[s]];
                    v.sort_unstable();
                    (row.min[s], row.avg[s], row.max[s]) = (v[0], v[1], v[2]);
                }
                row
            })
    }

    proptest! {
        #[test]
        fn sealed_chunks_round_trip(rows in proptest::collection::vec(row(), 0..40)) {
            prop_assert_eq!(unseal(&seal(&rows, 3)).unwrap(), rows);
        }

        #[test]
        fn open_chunks_round_trip(rows in proptest::collection::vec(row(), 0..20), start in any::<i64>()) {
            let mut agg = open_new(start, false);
            for r in &rows {
                open_push(&mut agg, r);
            }
            prop_assert_eq!(open_start(&agg).unwrap(), start);
            prop_assert_eq!(open_rows(&agg).unwrap(), rows.clone());
            let mut raw = open_new(start, true);
            let samples: Vec<Row> = rows.iter().map(|r| Row::sample(r.at_s, r.min)).collect();
            for r in &samples {
                open_push(&mut raw, r);
            }
            prop_assert_eq!(open_rows(&raw).unwrap(), samples);
            let sealed = open_sealed(start, &rows, 1);
            prop_assert_eq!(open_start(&sealed).unwrap(), start);
            prop_assert_eq!(open_rows(&sealed).unwrap(), rows.clone());
        }

        #[test]
        fn damaged_chunks_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = unseal(&bytes);
            let _ = open_rows(&bytes);
        }
    }

    /// Layout 1's writer as it was, to prove its blocks still read.
    fn seal_v1(rows: &[Row], level: i32) -> Vec<u8> {
        let mut payload = Vec::with_capacity(rows.len() * (2 + 3 * SERIES));
        let (mut last_at, mut last_gap) = (0i64, 0i64);
        for (i, row) in rows.iter().enumerate() {
            let value = match i {
                0 => row.at_s,
                1 => row.at_s.wrapping_sub(last_at),
                _ => row.at_s.wrapping_sub(last_at).wrapping_sub(last_gap),
            };
            if i > 0 {
                last_gap = row.at_s.wrapping_sub(last_at);
            }
            last_at = row.at_s;
            put_signed(&mut payload, value);
        }
        let mut last = 0i64;
        for row in rows {
            put_signed(&mut payload, i64::from(row.count) - last);
            last = i64::from(row.count);
        }
        for s in 0..SERIES {
            let mut last = 0i64;
            for row in rows {
                put_signed(&mut payload, i64::from(row.min[s]) - last);
                last = i64::from(row.min[s]);
            }
            let mut last = 0i64;
            for row in rows {
                let spread = i64::from(row.max[s].saturating_sub(row.min[s]));
                put_signed(&mut payload, spread - last);
                last = spread;
            }
            for row in rows {
                put_signed(
                    &mut payload,
                    i64::from(row.avg[s]) - (i64::from(row.min[s]) + i64::from(row.max[s])) / 2,
                );
            }
        }
        let mut out = Vec::with_capacity(payload.len() / 3 + 16);
        let compressed = zstd::bulk::compress(&payload, level)
            .ok()
            .filter(|c| c.len() < payload.len());
        out.push(if compressed.is_some() {
            SEALED_V1_ZSTD
        } else {
            SEALED_V1_PLAIN
        });
        put_unsigned(&mut out, rows.len() as u64);
        put_unsigned(&mut out, payload.len() as u64);
        out.extend_from_slice(compressed.as_deref().unwrap_or(&payload));
        out
    }

    proptest! {
        #[test]
        fn layout_1_blocks_still_read(rows in proptest::collection::vec(row(), 0..40)) {
            prop_assert_eq!(unseal(&seal_v1(&rows, 3)).unwrap(), rows);
        }
    }

    #[test]
    fn two_heartbeat_buckets_cost_about_two_values() {
        // A 1-minute row of two heartbeats has its average in the middle: storing the
        // maximum's distance above it next to the minimum's below costs next to nothing.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % 64) as u32
        };
        let rows: Vec<Row> = (0..360)
            .map(|i| {
                let (a, b): ([u32; SERIES], [u32; SERIES]) = (
                    std::array::from_fn(|_| 200 + next()),
                    std::array::from_fn(|_| 200 + next()),
                );
                let mut row = Row {
                    at_s: 60 * i,
                    count: 2,
                    ..Row::default()
                };
                for s in 0..SERIES {
                    let (x, y): (u32, u32) = (a[s], b[s]);
                    (row.min[s], row.max[s], row.avg[s]) = (x.min(y), x.max(y), (x + y) / 2);
                }
                row
            })
            .collect();
        let both = seal(&rows, 3).len();
        let averages_only: Vec<Row> = rows.iter().map(|r| Row::sample(r.at_s, r.avg)).collect();
        let one = seal(&averages_only, 3).len();
        assert!(
            both < 2 * one + one / 4,
            "{both} bytes with extremes, {one} without"
        );
        assert_eq!(unseal(&seal(&rows, 3)).unwrap(), rows);
    }

    #[test]
    fn steady_series_cost_almost_nothing() {
        // An hour of 1-minute rows of a node that does not change: a few bytes per row.
        let rows: Vec<Row> = (0..60)
            .map(|i| Row::sample(1_800_000_000 + 60 * i, [37; SERIES]))
            .collect();
        let sealed = seal(&rows, 3);
        assert!(sealed.len() < 60, "{} bytes", sealed.len());
        assert_eq!(unseal(&sealed).unwrap(), rows);
    }

    #[test]
    fn a_cut_chunk_is_corrupt() {
        let rows: Vec<Row> = (0..10)
            .map(|i| Row::sample(i * 30, [i as u32 * 1000; SERIES]))
            .collect();
        let sealed = seal(&rows, 0);
        for end in 0..sealed.len() {
            assert!(unseal(&sealed[..end]).is_err(), "cut at {end}");
        }
    }
}

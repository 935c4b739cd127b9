//! Units every process writes and reads the same way: durations in flags and configuration files
//! (`500ms`, `30s`, `2m`), and wall-clock times as unix milliseconds.
//!
//! Pure conversions: nothing here reads a clock; callers pass the time in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses `500ms`, `30s`, `2m`, `1h` (a unit is required: a bare `30` is refused, with the
/// suggestion `30s`). The same rules for core's and the node's flags and files, and the CLI's.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("duration {text:?} needs a unit, e.g. \"{text}s\""));
    }
    humantime::parse_duration(text).map_err(|e| format!("duration {text:?}: {e}"))
}

/// A duration in whole milliseconds, as flags are sent to core (saturating far out).
pub fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Unix milliseconds of a system time (negative before 1970; saturating far out).
pub fn unix_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Parses a byte size: `1048576`, `64MiB`, `10 GiB`, `1GB` (units as the `bytesize` crate
/// reads them: IEC and SI).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u64>() {
        return Ok(n);
    }
    text.parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|_| format!("size {text:?} is not a number of bytes or a size like 64MiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration(" 2m ").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("30").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1048576"), Ok(1_048_576));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert!(parse_bytes("lots").unwrap_err().contains("64MiB"));
    }

    #[test]
    fn unix_milliseconds() {
        assert_eq!(unix_ms(UNIX_EPOCH), 0);
        assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1_500)), 1_500);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(2)), -2_000);
    }
}

//! How `tether-core`, `tether-node` and `tether-bridge` log: one line per event on stderr, as
//! text for people (the default) or as JSON for log shippers (`--log-format json`, seed 002
//! §9.3's structured records). Filtered by `TETHER_LOG` (`RUST_LOG` syntax: `info`,
//! `tether_core=debug`...), `info` when unset.
//!
//! A JSON line holds `timestamp` (RFC 3339, UTC), `level`, `message`, the event's own fields
//! (`node_id`, `user`, `addr`, `duration_ms`...), `target`, and `span` and `spans`: the
//! fields of the spans it happened in (an execution's `exec_id`, a session's `session_id`, a
//! connection's `node_id`), so that one request can be followed across lines.
//!
//! This crate only sets up the subscriber; it must never decide what is logged.

use std::io::IsTerminal;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    /// `text` or `json`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format {other:?}: text or json")),
        }
    }
}

/// The filter from `TETHER_LOG`, else `info`.
fn filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// Installs the process's subscriber. Call once, early in `main`; a second call does nothing.
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name_and_refuse_others_clearly() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        let error = "xml".parse::<LogFormat>().unwrap_err();
        assert!(error.contains("text or json"), "{error}");
    }
}

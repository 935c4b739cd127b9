//! Terminal recordings in asciicast v2: a JSON header line, then one JSON array per event —
//! `[seconds, "o", text]` for output and `[seconds, "r", "COLSxROWS"]` for a resize — written as the
//! bytes pass through core. Files live under `DATA/recordings/` (0700), one per session (0600).
//!
//! asciicast stores output as text, but a terminal's bytes may split a UTF-8 character across two
//! reads: [`Utf8Carry`] keeps an incomplete tail for the next event, so no character is broken
//! and none is lost; bytes that are not UTF-8 at all become U+FFFD, as a terminal would show them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tether_wire::TtySessionId;
use tether_wire::tty::WindowSize;

/// Turns a byte stream into text, never splitting a character across events.
#[derive(Debug, Default)]
pub struct Utf8Carry {
    tail: Vec<u8>,
}

impl Utf8Carry {
    /// The text of `bytes` (after any tail kept from before), keeping an incomplete final
    /// character for next time.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        let mut input = std::mem::take(&mut self.tail);
        input.extend_from_slice(bytes);
        let mut out = String::with_capacity(input.len());
        let mut rest = &input[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(text);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).expect("checked valid"));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        None => {
                            // An incomplete character at the end: wait for the rest of it.
                            self.tail = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    /// Whatever is left at the end of the stream, as text.
    pub fn finish(&mut self) -> String {
        let tail = std::mem::take(&mut self.tail);
        String::from_utf8_lossy(&tail).into_owned()
    }
}

#[derive(Serialize)]
struct Header<'a> {
    version: u8,
    width: u16,
    height: u16,
    timestamp: i64,
    command: &'a str,
    title: &'a str,
    env: Env<'a>,
}

#[derive(Serialize)]
struct Env<'a> {
    #[serde(rename = "TERM")]
    term: &'a str,
}

/// What the header of a recording says.
#[derive(Debug, Clone)]
pub struct RecordingInfo<'a> {
    /// Initial size.
    pub size: WindowSize,
    /// Unix seconds at the start.
    pub started_at_secs: i64,
    /// What runs.
    pub command: &'a str,
    /// Title shown by players: user and host.
    pub title: &'a str,
    /// The client's `TERM`.
    pub term: &'a str,
}

/// An open recording.
#[derive(Debug)]
pub struct Recorder {
    out: BufWriter<File>,
    utf8: Utf8Carry,
    last_flush: Instant,
    failed: bool,
}

/// A recording's file name under the recordings directory.
pub fn file_name(session: TtySessionId) -> String {
    format!("{session}.cast")
}

/// Events are flushed to the file at least this often, so a crash loses little.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

impl Recorder {
    /// Creates the file (owner-only; an existing file is never overwritten) and writes the header.
    pub fn create(path: &Path, info: &RecordingInfo<'_>) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        let header = Header {
            version: 2,
            width: info.size.cols,
            height: info.size.rows,
            timestamp: info.started_at_secs,
            command: info.command,
            title: info.title,
            env: Env { term: info.term },
        };
        serde_json::to_writer(&mut out, &header)?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(Self {
            out,
            utf8: Utf8Carry::default(),
            last_flush: Instant::now(),
            failed: false,
        })
    }

    fn event(&mut self, at: Duration, kind: &str, data: &str) {
        if self.failed {
            return;
        }
        let result = serde_json::to_writer(&mut self.out, &(at.as_secs_f64(), kind, data))
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .and_then(|()| {
                if self.last_flush.elapsed() >= FLUSH_EVERY {
                    self.last_flush = Instant::now();
                    self.out.flush()
                } else {
                    Ok(())
                }
            });
        if let Err(e) = result {
            // A full disk must not end the session; the record says the recording is incomplete.
            tracing::warn!(error = %e, "writing the recording failed; recording stops here");
            self.failed = true;
        }
    }

    /// Output, `at` after the start.
    pub fn output(&mut self, at: Duration, bytes: &[u8]) {
        let text = self.utf8.push(bytes);
        if !text.is_empty() {
            self.event(at, "o", &text);
        }
    }

    /// A resize, `at` after the start.
    pub fn resize(&mut self, at: Duration, size: WindowSize) {
        self.event(at, "r", &format!("{}x{}", size.cols, size.rows));
    }

    /// Writes what is buffered (called when the session is idle, so a crash loses nothing seen).
    pub fn flush(&mut self) {
        if !self.failed && self.out.flush().is_err() {
            self.failed = true;
        }
    }

    /// Ends the recording; false if any write failed.
    pub fn finish(mut self, at: Duration) -> bool {
        let tail = self.utf8.finish();
        if !tail.is_empty() {
            self.event(at, "o", &tail);
        }
        self.flush();
        !self.failed
    }
}

/// The recordings directory under the data directory, created owner-only.
pub fn recordings_dir(data_dir: &Path) -> std::io::Result<PathBuf> {
    let dir = data_dir.join("recordings");
    std::fs::create_dir_all(&dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn split_characters_are_kept_whole() {
        let mut carry = Utf8Carry::default();
        let text = "héllo → 世界";
        let bytes = text.as_bytes();
        // Split inside the three-byte arrow.
        let cut = text.find('→').unwrap() + 1;
        let mut out = carry.push(&bytes[..cut]);
        assert!(!out.contains('\u{FFFD}'));
        out += &carry.push(&bytes[cut..]);
        out += &carry.finish();
        assert_eq!(out, text);
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut carry = Utf8Carry::default();
        assert_eq!(carry.push(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(carry.push(b"\xe2\x86"), "");
        assert_eq!(carry.finish(), "\u{FFFD}");
    }

    proptest! {
        #[test]
        fn any_split_of_valid_text_round_trips(text in "\\PC{0,64}", cuts in proptest::collection::vec(0usize..256, 0..6)) {
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut carry = Utf8Carry::default();
            let mut out = String::new();
            let mut start = 0;
            for cut in cuts {
                out += &carry.push(&bytes[start..cut]);
                start = cut;
            }
            out += &carry.push(&bytes[start..]);
            out += &carry.finish();
            prop_assert_eq!(out, text);
        }
    }

    #[test]
    fn a_recording_is_asciicast_v2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.cast");
        let info = RecordingInfo {
            size: WindowSize {
                cols: 100,
                rows: 30,
            },
            started_at_secs: 1_700_000_000,
            command: "/bin/bash --login",
            title: "alice@web-1",
            term: "xterm-256color",
        };
        let mut recorder = Recorder::create(&path, &info).unwrap();
        recorder.output(Duration::from_millis(10), b"$ ");
        recorder.resize(
            Duration::from_millis(20),
            WindowSize {
                cols: 120,
                rows: 40,
            },
        );
        recorder.output(Duration::from_millis(1500), b"\"quoted\"\r\n");
        assert!(recorder.finish(Duration::from_secs(2)));
        assert!(Recorder::create(&path, &info).is_err(), "never overwritten");

        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(lines[0]["width"], 100);
        assert_eq!(lines[0]["height"], 30);
        assert_eq!(lines[0]["env"]["TERM"], "xterm-256color");
        assert_eq!(lines[1], serde_json::json!([0.01, "o", "$ "]));
        assert_eq!(lines[2], serde_json::json!([0.02, "r", "120x40"]));
        assert_eq!(lines[3], serde_json::json!([1.5, "o", "\"quoted\"\r\n"]));
        assert_eq!(lines.len(), 4);
    }
}

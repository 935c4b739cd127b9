//! Terminal recordings in asciicast v2: a JSON header line, then one JSON array per event —
//! `[seconds, "o", text]` for output, `[seconds, "r", "COLSxROWS"]` for a resize and
//! `[seconds, "m", label]` for a marker — written as the bytes pass through core, compressed as
//! they are written (a zstd stream, `.cast.zst`): a terminal's output repeats itself, and `yes`
//! for a minute costs kilobytes instead of hundreds of megabytes. Files live under
//! `DATA/recordings/` (0700), one per session (0600).
//!
//! Bounded: a session's recording stops, with a marker saying so, after
//! `tty_recording_max` bytes of output ([`Outcome::Capped`]); a write that fails (a full disk)
//! stops it too ([`Outcome::Failed`]); neither stops the session, unless core requires
//! recordings. The recordings directory as a whole is bounded by the chores (total size, age).
//!
//! The stream is flushed every half second and whenever the session is idle, so a crash loses
//! at most that much; a reader of a stream cut short (`tether_client::recording::open`, the one
//! reader of recordings) gets everything before the cut.
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

/// How a recording ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything the session showed is in it.
    Complete,
    /// It stopped after `limit` bytes of output; a marker at the end says so.
    Capped {
        /// The limit, bytes of terminal output.
        limit: u64,
    },
    /// A write failed (a full disk): it holds what came before.
    Failed(String),
}

impl Outcome {
    /// What the session record says about the recording, if anything is worth saying.
    pub fn note(&self) -> Option<String> {
        match self {
            Outcome::Complete => None,
            Outcome::Capped { limit } => Some(format!(
                "stopped after {} of output (tty_recording_max)",
                bytesize::ByteSize(*limit)
            )),
            Outcome::Failed(why) => Some(format!("incomplete: writing it failed ({why})")),
        }
    }
}

/// An open recording.
pub struct Recorder {
    out: Option<zstd::stream::write::Encoder<'static, BufWriter<File>>>,
    utf8: Utf8Carry,
    last_flush: Instant,
    /// Output bytes recorded so far.
    recorded: u64,
    limit: u64,
    stopped: Option<Outcome>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("open", &self.out.is_some())
            .field("recorded", &self.recorded)
            .field("limit", &self.limit)
            .field("stopped", &self.stopped)
            .finish()
    }
}

/// A recording's file name under the recordings directory.
pub fn file_name(session: TtySessionId) -> String {
    format!("{session}.cast.zst")
}

/// The file name recordings had before they were compressed (still read).
pub fn plain_file_name(session: TtySessionId) -> String {
    format!("{session}.cast")
}

/// The session a recording file belongs to, from its name.
pub fn session_of(file_name: &str) -> Option<TtySessionId> {
    let stem = file_name
        .strip_suffix(".cast.zst")
        .or_else(|| file_name.strip_suffix(".cast"))?;
    stem.parse().ok()
}

/// Events are flushed to the file at least this often, so a crash loses little.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// zstd's level: fast (a terminal's output is cheap to compress well).
const LEVEL: i32 = 3;

impl Recorder {
    /// Creates the file (owner-only; an existing file is never overwritten) and writes the
    /// header. At most `limit` bytes of output will be recorded.
    pub fn create(path: &Path, info: &RecordingInfo<'_>, limit: u64) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        let mut out =
            zstd::stream::write::Encoder::new(BufWriter::with_capacity(64 * 1024, file), LEVEL)?;
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
            out: Some(out),
            utf8: Utf8Carry::default(),
            last_flush: Instant::now(),
            recorded: 0,
            limit,
            stopped: None,
        })
    }

    fn event(&mut self, at: Duration, kind: &str, data: &str) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let result = serde_json::to_writer(&mut *out, &(at.as_secs_f64(), kind, data))
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| {
                if self.last_flush.elapsed() >= FLUSH_EVERY {
                    self.last_flush = Instant::now();
                    out.flush()
                } else {
                    Ok(())
                }
            });
        if let Err(e) = result {
            self.fail(e);
        }
    }

    /// A write failed: the recording stops here (the session does not).
    fn fail(&mut self, error: std::io::Error) {
        tracing::warn!(%error, "writing the recording failed; recording stops here");
        self.out = None;
        self.stopped = Some(Outcome::Failed(error.to_string()));
    }

    /// Output, `at` after the start. Past the limit, the part that fits is recorded, then a
    /// marker, and nothing more.
    pub fn output(&mut self, at: Duration, bytes: &[u8]) {
        if self.out.is_none() {
            return;
        }
        let room = usize::try_from(self.limit - self.recorded).unwrap_or(usize::MAX);
        let take = &bytes[..bytes.len().min(room)];
        self.recorded += take.len() as u64;
        let text = self.utf8.push(take);
        if !text.is_empty() {
            self.event(at, "o", &text);
        }
        if take.len() < bytes.len() {
            let tail = self.utf8.finish();
            if !tail.is_empty() {
                self.event(at, "o", &tail);
            }
            let label = format!(
                "recording stopped: this session reached {} of output (tty_recording_max)",
                bytesize::ByteSize(self.limit)
            );
            self.event(at, "m", &label);
            self.close();
            if self.stopped.is_none() {
                self.stopped = Some(Outcome::Capped { limit: self.limit });
            }
        }
    }

    /// A resize, `at` after the start.
    pub fn resize(&mut self, at: Duration, size: WindowSize) {
        self.event(at, "r", &format!("{}x{}", size.cols, size.rows));
    }

    /// Writes what is buffered (called when the session is idle, so a crash loses nothing seen).
    pub fn flush(&mut self) {
        if let Some(out) = self.out.as_mut()
            && let Err(e) = out.flush()
        {
            self.fail(e);
        }
    }

    /// Stops recording for `why` (the disk is nearly full), keeping what was recorded.
    pub fn give_up(&mut self, why: String) {
        if self.out.is_none() {
            return;
        }
        tracing::warn!(%why, "recording stops here");
        self.close();
        self.stopped.get_or_insert(Outcome::Failed(why));
    }

    /// Why it stopped before the session ended, if it did.
    pub fn stopped(&self) -> Option<&Outcome> {
        self.stopped.as_ref()
    }

    /// Ends the zstd frame and the file.
    fn close(&mut self) {
        if let Some(out) = self.out.take() {
            let closed = out
                .finish()
                .and_then(|mut file| file.flush().map(|()| file))
                .and_then(|file| file.into_inner().map_err(|e| e.into_error()))
                .and_then(|file| file.sync_data());
            if let Err(e) = closed {
                self.fail(e);
            }
        }
    }

    /// Ends the recording: how it went.
    pub fn finish(mut self, at: Duration) -> Outcome {
        if self.out.is_some() {
            let tail = self.utf8.finish();
            if !tail.is_empty() {
                self.event(at, "o", &tail);
            }
            self.close();
        }
        self.stopped.take().unwrap_or(Outcome::Complete)
    }
}

impl Drop for Recorder {
    /// A recorder dropped without [`Recorder::finish`] still ends its file properly.
    fn drop(&mut self) {
        self.close();
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

    fn info() -> RecordingInfo<'static> {
        RecordingInfo {
            size: WindowSize {
                cols: 100,
                rows: 30,
            },
            started_at_secs: 1_700_000_000,
            command: "/bin/bash --login",
            title: "alice@web-1",
            term: "xterm-256color",
        }
    }

    fn read_back(path: &Path) -> Vec<serde_json::Value> {
        use std::io::Read;
        let mut text = String::new();
        tether_client::recording::open(std::fs::File::open(path).unwrap())
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_recording_is_compressed_asciicast_v2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.cast.zst");
        let mut recorder = Recorder::create(&path, &info(), 1 << 20).unwrap();
        recorder.output(Duration::from_millis(10), b"$ ");
        recorder.resize(
            Duration::from_millis(20),
            WindowSize {
                cols: 120,
                rows: 40,
            },
        );
        recorder.output(Duration::from_millis(1500), b"\"quoted\"\r\n");
        assert_eq!(recorder.finish(Duration::from_secs(2)), Outcome::Complete);
        assert!(
            Recorder::create(&path, &info(), 1 << 20).is_err(),
            "never overwritten"
        );

        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(raw[..4], [0x28, 0xb5, 0x2f, 0xfd], "a zstd frame");
        let lines = read_back(&path);
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(lines[0]["width"], 100);
        assert_eq!(lines[0]["height"], 30);
        assert_eq!(lines[0]["env"]["TERM"], "xterm-256color");
        assert_eq!(lines[1], serde_json::json!([0.01, "o", "$ "]));
        assert_eq!(lines[2], serde_json::json!([0.02, "r", "120x40"]));
        assert_eq!(lines[3], serde_json::json!([1.5, "o", "\"quoted\"\r\n"]));
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn a_flood_of_repeated_output_costs_little() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("yes.cast.zst");
        let mut recorder = Recorder::create(&path, &info(), 1 << 30).unwrap();
        let chunk = b"y\r\n".repeat(8 * 1024);
        for i in 0..1000u64 {
            recorder.output(Duration::from_micros(i * 100), &chunk);
        }
        assert_eq!(recorder.finish(Duration::from_secs(1)), Outcome::Complete);
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(
            size < 24 * 1024 * 1024 / 100,
            "24 MiB of `yes` took {size} bytes on disk"
        );
        assert_eq!(read_back(&path).len(), 1001);
    }

    #[test]
    fn past_its_limit_a_recording_stops_with_a_marker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cap.cast.zst");
        let mut recorder = Recorder::create(&path, &info(), 10).unwrap();
        recorder.output(Duration::from_millis(1), b"12345");
        assert_eq!(recorder.stopped(), None);
        recorder.output(Duration::from_millis(2), b"67890abc");
        assert_eq!(recorder.stopped(), Some(&Outcome::Capped { limit: 10 }));
        recorder.output(Duration::from_millis(3), b"not recorded");
        recorder.resize(Duration::from_millis(4), WindowSize::DEFAULT);
        let outcome = recorder.finish(Duration::from_millis(5));
        assert_eq!(outcome, Outcome::Capped { limit: 10 });
        assert!(outcome.note().unwrap().contains("10 B"));
        let lines = read_back(&path);
        assert_eq!(lines[1][2], "12345");
        assert_eq!(lines[2][2], "67890", "the part that fits");
        assert_eq!(lines[3][1], "m");
        assert!(lines[3][2].as_str().unwrap().contains("tty_recording_max"));
        assert_eq!(lines.len(), 4, "nothing after the marker");
    }

    #[test]
    fn a_recording_cut_short_reads_up_to_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.cast.zst");
        let mut recorder = Recorder::create(&path, &info(), 1 << 20).unwrap();
        recorder.output(Duration::from_millis(1), b"before the crash\r\n");
        recorder.flush();
        recorder.output(Duration::from_millis(2), b"lost");
        // Core dies: the frame is never finished, the last events never flushed.
        std::mem::forget(recorder);
        let lines = read_back(&path);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1][2], "before the crash\r\n");
    }

    #[test]
    fn recordings_are_named_by_session() {
        assert_eq!(
            session_of("67e55044-10b1-426f-9247-bb680e5fe0c8.cast.zst").map(|s| s.to_string()),
            Some("67e55044-10b1-426f-9247-bb680e5fe0c8".into())
        );
        assert!(session_of("67e55044-10b1-426f-9247-bb680e5fe0c8.cast").is_some());
        assert_eq!(session_of(".x.tmp"), None);
    }
}

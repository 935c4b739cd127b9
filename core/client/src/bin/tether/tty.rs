//! `tether tty`: an interactive terminal on a node, like `ssh host`; and session records,
//! replays and kills.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;
use tether_client::{AdminClient, ClientError, TtyEvent};
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::tty::{TtyAuthorize, TtySessionView};
use tokio::io::AsyncWriteExt;

use crate::keys::Keys;
use crate::output::{self, print_json, rfc3339};
use crate::stdout::StdoutWriter;
use crate::terminal::{RawMode, window_size};

/// Open a terminal on a node (`tether tty web-1`), or look at terminal sessions.
///
/// `tether tty NODE` is like `ssh NODE`: the local terminal goes into raw mode (restored on
/// exit), the window size follows every resize, TERM is passed on, and `tether` exits with the
/// shell's exit status (128+N if signal N killed it, 255 if the session failed or core could not
/// be reached). Input may also come from a pipe: `echo 'uname -a; exit' | tether tty web-1`.
/// Sessions are recorded unless core's configuration says otherwise; replay them with `tether
/// tty play`.
///
/// A node whose hostname is also a subcommand name (list, play, export, kill) is reached by its
/// id.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TtyArgs {
    #[command(subcommand)]
    records: Option<RecordCommand>,
    /// Node id, unique id prefix, or hostname.
    #[arg(value_name = "NODE", required = true)]
    node: Option<String>,
    /// Run this command line with the node's shell (SHELL -c COMMAND) instead of a login shell.
    #[arg(long, value_name = "COMMAND")]
    command: Option<String>,
    /// Ask core to record this session.
    #[arg(long, conflicts_with = "no_record")]
    record: bool,
    /// Ask core not to record this session (refused if core requires recordings).
    #[arg(long)]
    no_record: bool,
}

#[derive(Debug, clap::Subcommand)]
enum RecordCommand {
    /// Terminal session records, newest first.
    List {
        /// Only pending and connected sessions.
        #[arg(long)]
        active: bool,
        /// Only sessions on this node (id, unique id prefix, or exact hostname).
        #[arg(long)]
        node: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replay a recorded session in this terminal.
    Play {
        /// Session id or unique prefix.
        session: String,
        /// Play faster (2 = twice as fast) or slower (0.5).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Shorten every pause to at most this many seconds.
        #[arg(long, value_name = "SECONDS")]
        idle_limit: Option<f64>,
    },
    /// Write a recording as a plain asciicast v2 file, which `asciinema play FILE` replays.
    Export {
        /// Session id or unique prefix.
        session: String,
        /// Where to write it, `-` for standard output (a file gets mode 0600: terminal output may
        /// hold secrets). An existing file is replaced only once the whole recording is written.
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
    },
    /// End a live session (admins; users may end their own).
    Kill {
        /// Session id or unique prefix.
        session: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl TtyArgs {
    /// Opens a terminal (rather than looking at records): exits like `ssh host`.
    pub fn opens_a_terminal(&self) -> bool {
        self.records.is_none()
    }
}

pub async fn run(client: &AdminClient, args: TtyArgs) -> anyhow::Result<u8> {
    match args.records {
        Some(RecordCommand::List {
            active,
            node,
            limit,
            json,
        }) => list(client, active, node, limit, json).await,
        Some(RecordCommand::Play {
            session,
            speed,
            idle_limit,
        }) => play(client, &session, speed, idle_limit).await,
        Some(RecordCommand::Export { session, out }) => export(client, &session, &out).await,
        Some(RecordCommand::Kill { session, json }) => {
            let responses = client
                .request(&AdminRequest::KillTty { id: session })
                .await?;
            let Some(AdminResponse::TtySession(view)) = responses.into_iter().next() else {
                bail!("core sent an unexpected answer");
            };
            if json {
                print_json(&session_json(&view))?;
            }
            eprintln!(
                "session {} on {} is {}{}",
                view.id,
                view.hostname,
                view.status,
                view.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
            Ok(0)
        }
        None => {
            let node = args.node.context("give a NODE")?;
            let record = match (args.record, args.no_record) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            interactive(client, node, args.command, record).await
        }
    }
}

async fn interactive(
    client: &AdminClient,
    node: String,
    command: Option<String>,
    record: Option<bool>,
) -> anyhow::Result<u8> {
    let size = window_size().unwrap_or(tether_wire::tty::WindowSize::DEFAULT);
    let term = std::env::var("TERM")
        .ok()
        .filter(|t| tether_wire::tty::check_term(t).is_ok());
    let grant = client
        .authorize_tty(TtyAuthorize {
            node,
            command,
            size,
            term,
            record,
        })
        .await?;
    let session = client.open_tty(&grant.token).await?;
    let (mut input, mut output) = (session.input, session.output);

    let raw = RawMode::enable().context("cannot put the terminal in raw mode")?;
    let interactive = raw.is_some();
    let mut keys = Keys::start();
    let mut stdin_open = true;
    let mut resized =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stdout = StdoutWriter::start();
    let mut last_size = size;

    let outcome: Result<u8, ClientError> = loop {
        tokio::select! {
            event = output.next() => match event {
                Ok(Some(TtyEvent::Output(bytes))) => {
                    if stdout.write(bytes).await.is_err() {
                        // Nobody reads our output any more: leave.
                        input.close();
                        break Ok(255);
                    }
                }
                Ok(Some(TtyEvent::Exited(exit))) => {
                    break Ok(u8::try_from(exit.status().clamp(0, 255)).unwrap_or(255));
                }
                Ok(None) => break Err(ClientError::Transport("core ended the session without an exit status".into())),
                Err(e) => break Err(e),
            },
            chunk = keys.next(), if stdin_open => match chunk {
                // Input that cannot be sent (the shell already exited and core stopped the
                // stream) is not the end: the end, and its status, come on the output side.
                Some(bytes) => {
                    if input.write(&bytes).await.is_err() {
                        stdin_open = false;
                    }
                }
                None => {
                    stdin_open = false;
                    // A pipe ended: the shell sees end of file, as after Ctrl-D. A terminal's
                    // stdin only ends if it went away: nothing more to send either way.
                    if !interactive {
                        let _ = input.eof().await;
                    }
                }
            },
            _ = resized.recv() => {
                if let Some(size) = window_size()
                    && size != last_size
                {
                    last_size = size;
                    if let Err(e) = input.resize(size).await {
                        break Err(e);
                    }
                }
            }
            _ = hangup.recv() => { input.close(); break Ok(129); }
            _ = terminate.recv() => { input.close(); break Ok(143); }
        }
    };
    // All output reaches the terminal before it leaves raw mode; after a signal, not for long.
    let limit = matches!(outcome, Ok(129 | 143)).then_some(Duration::from_secs(1));
    stdout.finish(limit);
    drop(raw);
    match outcome {
        Ok(status) => Ok(status),
        Err(e) => {
            let message = match &e {
                ClientError::Core { code, message } => format!("{message} [{}]", code.name()),
                other => other.to_string(),
            };
            eprintln!(
                "\r\ntether: terminal session {}: {message}",
                grant.session_id
            );
            Ok(255)
        }
    }
}

#[derive(Serialize)]
struct SessionJson<'a> {
    id: String,
    node_id: String,
    hostname: &'a str,
    user: &'a str,
    status: &'static str,
    command: &'a str,
    cols: u16,
    rows: u16,
    created_at: String,
    connected_at: Option<String>,
    closed_at: Option<String>,
    client_addr: Option<&'a str>,
    node_addr: Option<&'a str>,
    recording: Option<&'a str>,
    recording_note: Option<&'a str>,
    error: Option<&'a str>,
    exit_code: Option<i32>,
    signal: Option<i32>,
    output_bytes: u64,
    input_bytes: u64,
}

fn session_json(view: &TtySessionView) -> SessionJson<'_> {
    SessionJson {
        id: view.id.to_string(),
        node_id: view.node_id.to_string(),
        hostname: &view.hostname,
        user: &view.user,
        status: view.status.as_str(),
        command: &view.command,
        cols: view.size.cols,
        rows: view.size.rows,
        created_at: rfc3339(view.created_at_ms),
        connected_at: view.connected_at_ms.map(rfc3339),
        closed_at: view.closed_at_ms.map(rfc3339),
        client_addr: view.client_addr.as_deref(),
        node_addr: view.node_addr.as_deref(),
        recording: view.recording.as_deref(),
        recording_note: view.recording_note.as_deref(),
        error: view.error.as_deref(),
        exit_code: view.exit.and_then(|e| e.exit_code),
        signal: view.exit.and_then(|e| e.signal),
        output_bytes: view.output_bytes,
        input_bytes: view.input_bytes,
    }
}

/// The REC column: whether there is a recording to replay, and if not all of it, why.
fn recording_column(view: &TtySessionView) -> &'static str {
    match (&view.recording, view.recording_note.as_deref()) {
        (None, _) => "no",
        (Some(_), None) => "yes",
        (Some(_), Some(note)) if note.starts_with("deleted") => "deleted",
        (Some(_), Some(note)) if note.starts_with("stopped") => "cut",
        (Some(_), Some(_)) => "partial",
    }
}

async fn list(
    client: &AdminClient,
    active: bool,
    node: Option<String>,
    limit: u32,
    json: bool,
) -> anyhow::Result<u8> {
    let mut sessions = Vec::new();
    for response in client
        .request(&AdminRequest::ListTty {
            active,
            node,
            limit,
        })
        .await?
    {
        if let AdminResponse::TtySessions(chunk) = response {
            sessions.extend(chunk);
        }
    }
    if json {
        print_json(&sessions.iter().map(session_json).collect::<Vec<_>>())?;
        return Ok(0);
    }
    let rows = sessions
        .iter()
        .map(|s| {
            let duration = match (s.connected_at_ms, s.closed_at_ms) {
                (Some(from), Some(to)) => humantime::format_duration(Duration::from_secs(
                    u64::try_from((to - from) / 1000).unwrap_or(0),
                ))
                .to_string(),
                (Some(_), None) => "live".into(),
                _ => "-".into(),
            };
            let end = match (s.exit, &s.error) {
                (_, Some(error)) => error.clone(),
                (Some(exit), None) => format!("exit {}", exit.status()),
                (None, None) => String::new(),
            };
            vec![
                s.id.to_string()[..8].to_string(),
                s.hostname.clone(),
                s.user.clone(),
                s.status.to_string(),
                s.command.clone(),
                format!("{}x{}", s.size.cols, s.size.rows),
                output::ago(Some(s.created_at_ms)),
                duration,
                recording_column(s).into(),
                end,
            ]
        })
        .collect();
    output::table(
        &[
            "ID", "NODE", "USER", "STATUS", "COMMAND", "SIZE", "CREATED", "DURATION", "REC", "END",
        ],
        rows,
    )?;
    Ok(0)
}

/// One asciicast v2 event.
#[derive(Debug, PartialEq)]
pub struct Event {
    pub at: f64,
    pub kind: String,
    pub data: String,
}

/// Parses an asciicast v2 file: the header's width and height, and the events.
pub fn parse_cast(text: &str) -> anyhow::Result<((u64, u64), Vec<Event>)> {
    let mut lines = text.lines();
    let header: serde_json::Value =
        serde_json::from_str(lines.next().context("the recording is empty")?)
            .context("the recording's header is not JSON")?;
    if header["version"] != 2 {
        bail!("not an asciicast v2 recording");
    }
    let size = (
        header["width"].as_u64().unwrap_or(80),
        header["height"].as_u64().unwrap_or(24),
    );
    let mut events = Vec::new();
    for (number, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (at, kind, data): (f64, String, String) = serde_json::from_str(line)
            .with_context(|| format!("event {} of the recording is malformed", number + 1))?;
        events.push(Event { at, kind, data });
    }
    Ok((size, events))
}

/// The pause before each event: time since the previous one, divided by `speed`, capped at
/// `idle_limit`.
pub fn pauses(events: &[Event], speed: f64, idle_limit: Option<f64>) -> Vec<Duration> {
    let mut last = 0.0;
    events
        .iter()
        .map(|event| {
            let mut gap = ((event.at - last) / speed).max(0.0);
            last = event.at;
            if let Some(limit) = idle_limit {
                gap = gap.min(limit);
            }
            Duration::from_secs_f64(gap)
        })
        .collect()
}

/// A session's record and its recording as asciicast v2 text.
async fn fetch_recording(
    client: &AdminClient,
    session: &str,
) -> anyhow::Result<(TtySessionView, String)> {
    let mut file = Vec::new();
    let mut view = None;
    for response in client
        .request(&AdminRequest::TtyRecording {
            id: session.to_string(),
        })
        .await?
    {
        match response {
            AdminResponse::TtySession(v) => view = Some(v),
            AdminResponse::Recording(chunk) => file.extend_from_slice(&chunk.0),
            _ => {}
        }
    }
    let view = view.context("core sent no session record")?;
    let mut text = Vec::new();
    tether_client::recording::open(std::io::Cursor::new(file))
        .and_then(|mut reader| std::io::Read::read_to_end(&mut reader, &mut text))
        .context("the recording does not decompress")?;
    let text = String::from_utf8(text).context("the recording is not UTF-8")?;
    if let Some(note) = &view.recording_note {
        eprintln!("tether: session {}'s recording: {note}", view.id);
    }
    Ok((view, text))
}

async fn play(
    client: &AdminClient,
    session: &str,
    speed: f64,
    idle_limit: Option<f64>,
) -> anyhow::Result<u8> {
    if !(speed.is_finite() && speed > 0.0) {
        bail!("--speed must be a positive number");
    }
    if idle_limit.is_some_and(|l| !(l.is_finite() && l >= 0.0)) {
        bail!("--idle-limit must be zero or more seconds");
    }
    let (view, text) = fetch_recording(client, session).await?;
    let ((width, height), events) = parse_cast(&text)?;
    if std::io::stderr().is_terminal() {
        eprintln!(
            "replaying session {} ({} on {}, {width}x{height}); Ctrl-C stops",
            view.id, view.user, view.hostname
        );
    }
    let mut stdout = tokio::io::stdout();
    for (event, pause) in events.iter().zip(pauses(&events, speed, idle_limit)) {
        tokio::time::sleep(pause).await;
        match event.kind.as_str() {
            "o" => {
                stdout.write_all(event.data.as_bytes()).await?;
                stdout.flush().await?;
            }
            "m" => eprintln!("\r\ntether: [{}]", event.data),
            _ => {}
        }
    }
    Ok(0)
}

async fn export(client: &AdminClient, session: &str, out: &std::path::Path) -> anyhow::Result<u8> {
    let (view, text) = fetch_recording(client, session).await?;
    // Checked before anything is written: what is exported replays.
    let (_, events) = parse_cast(&text)?;
    if out == std::path::Path::new("-") {
        let mut stdout = std::io::stdout().lock();
        std::io::Write::write_all(&mut stdout, text.as_bytes())?;
        std::io::Write::flush(&mut stdout)?;
        return Ok(0);
    }
    let mut file = tether_certs::files::AtomicFile::create(out, 0o600)?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    file.commit()?;
    eprintln!(
        "wrote session {} ({} on {}, {} events, {} bytes) to {} as asciicast v2; replay it with \
         `asciinema play {}`",
        view.id,
        view.user,
        view.hostname,
        events.len(),
        text.len(),
        out.display(),
        out.display()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recordings_parse_and_pauses_follow_speed_and_idle_limit() {
        let cast = "{\"version\":2,\"width\":100,\"height\":30}\n[0.5,\"o\",\"a\"]\n[4.5,\"r\",\"90x20\"]\n[5.0,\"o\",\"b\"]\n";
        let ((w, h), events) = parse_cast(cast).unwrap();
        assert_eq!((w, h), (100, 30));
        assert_eq!(events.len(), 3);
        assert_eq!(events[2].data, "b");
        let secs = |v: Vec<Duration>| v.iter().map(Duration::as_secs_f64).collect::<Vec<_>>();
        assert_eq!(secs(pauses(&events, 1.0, None)), [0.5, 4.0, 0.5]);
        assert_eq!(secs(pauses(&events, 2.0, None)), [0.25, 2.0, 0.25]);
        assert_eq!(secs(pauses(&events, 1.0, Some(1.0))), [0.5, 1.0, 0.5]);
        assert!(parse_cast("{\"version\":1}\n").is_err());
        assert!(parse_cast("{\"version\":2}\n[1,\"o\"]\n").is_err());
    }
}

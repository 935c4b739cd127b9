//! `tty-latency`: keystroke-to-echo latency of an interactive terminal client, measured the way a
//! person at a keyboard sees it.
//!
//! Runs a client command line (`ssh -tt HOST 'stty raw -echo; ...; exec cat'`, `tether tty NODE
//! --command '...'`) inside a real PTY, as a terminal emulator would. The remote side must put its
//! terminal in raw mode without echo, print the ready marker, then echo every byte back (`cat`).
//! After the marker and a short warm-up, it types one key at a time, times until that byte comes
//! back through the client, waits a small random gap, and types the next. Prints a summary on
//! stderr and one JSON document on stdout.
//!
//! ```text
//! tty-latency --keys 1000 -- ssh -tt -p 2222 root@127.0.0.1 "stty raw -echo; echo LAT-READY; exec cat"
//! ```
//!
//! The local PTY is the client's own terminal: the client puts it in raw mode. Were it left in
//! cooked mode with echo, the local line discipline would echo every key at once and the figures
//! would be meaningless; so every byte that comes back is accounted for, and a run that sees more
//! (or other) bytes than it typed fails.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use portable_pty::CommandBuilder;
use rand::Rng as _;
use serde::Serialize;
use tether_benches::pty::PtyProcess;

#[derive(Debug, Parser)]
#[command(name = "tty-latency", version, about)]
struct Cli {
    /// Keystrokes to time.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Untimed keystrokes first (connection and caches warm up).
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Shortest pause between an echo and the next key, in milliseconds.
    #[arg(long, default_value_t = 5)]
    gap_min_ms: u64,
    /// Longest pause between an echo and the next key, in milliseconds.
    #[arg(long, default_value_t = 20)]
    gap_max_ms: u64,
    /// What the remote side prints once its terminal is raw and `cat` is about to run.
    #[arg(long, default_value = "LAT-READY")]
    ready: String,
    /// How long the session may take to become ready, in seconds.
    #[arg(long, default_value_t = 30)]
    ready_timeout: u64,
    /// How long one echo may take before the run fails, in seconds.
    #[arg(long, default_value_t = 5)]
    echo_timeout: u64,
    /// A name for the JSON (e.g. "ssh", "tether").
    #[arg(long, default_value = "")]
    label: String,
    /// The client command line.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    label: String,
    command: Vec<String>,
    keys: usize,
    warmup: usize,
    gap_ms: [u64; 2],
    ready_after_ms: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    max_us: f64,
    min_us: f64,
    mean_us: f64,
    samples_us: Vec<f64>,
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.gap_min_ms > cli.gap_max_ms {
        bail!("--gap-min-ms must not exceed --gap-max-ms");
    }
    let mut command = CommandBuilder::new(&cli.command[0]);
    command.args(&cli.command[1..]);
    command.env("TERM", "xterm-256color");
    let started = Instant::now();
    let PtyProcess {
        master: _master,
        mut child,
        output: mut reader,
        input: mut writer,
    } = tether_benches::pty::spawn(command, &cli.command[0])?;

    // The reader thread stamps every chunk the moment `read` returns.
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let result = measure(&cli, &rx, &mut *writer, started);
    // SIGHUP, then SIGKILL if need be: both clients leave on a hang-up.
    let _ = child.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = result?;
    eprintln!(
        "{}: {} keys, p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, max {:.0} µs (ready after {:.0} ms)",
        if report.label.is_empty() {
            "latency"
        } else {
            &report.label
        },
        report.keys,
        report.p50_us,
        report.p90_us,
        report.p99_us,
        report.max_us,
        report.ready_after_ms
    );
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn measure(
    cli: &Cli,
    rx: &mpsc::Receiver<(Instant, Vec<u8>)>,
    writer: &mut dyn Write,
    started: Instant,
) -> anyhow::Result<Report> {
    // Wait for the marker: the remote terminal is raw and `cat` runs (or is about to).
    let ready_by = started + Duration::from_secs(cli.ready_timeout);
    let mut seen = Vec::new();
    loop {
        let left = ready_by.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, bytes)) => {
                seen.extend_from_slice(&bytes);
                if let Some(at) = find(&seen, cli.ready.as_bytes()) {
                    let rest = &seen[at + cli.ready.len()..];
                    // Only the marker's line end may follow it.
                    if rest.iter().any(|b| !matches!(b, b'\r' | b'\n')) {
                        bail!("unexpected output after the ready marker: {rest:?}");
                    }
                    break;
                }
            }
            Err(_) => bail!(
                "the session did not become ready within {} s; it printed: {}",
                cli.ready_timeout,
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    let ready_after = started.elapsed();
    // `cat` may not have started reading yet; and the marker's line end may still be on its way.
    std::thread::sleep(Duration::from_millis(300));
    while let Ok((_, bytes)) = rx.try_recv() {
        if bytes.iter().any(|b| !matches!(b, b'\r' | b'\n')) {
            bail!("unexpected output after the ready marker: {bytes:?}");
        }
    }

    let mut rng = rand::thread_rng();
    let mut samples = Vec::with_capacity(cli.keys);
    let echo_timeout = Duration::from_secs(cli.echo_timeout);
    for i in 0..cli.warmup + cli.keys {
        // Printable keys a-z; never a control character the line disciplines would act on.
        let key = b'a' + (i % 26) as u8;
        let sent = Instant::now();
        writer.write_all(&[key])?;
        writer.flush()?;
        let (at, bytes) = rx.recv_timeout(echo_timeout).with_context(|| {
            format!(
                "key {i} ({}) not echoed within {echo_timeout:?}",
                key as char
            )
        })?;
        if bytes != [key] {
            bail!(
                "key {i}: expected exactly {:?} back, got {:?} (is the local terminal echoing?)",
                key as char,
                String::from_utf8_lossy(&bytes)
            );
        }
        if i >= cli.warmup {
            samples.push(at.duration_since(sent).as_secs_f64() * 1e6);
        }
        let gap = rng.gen_range(cli.gap_min_ms * 1000..=cli.gap_max_ms * 1000);
        std::thread::sleep(Duration::from_micros(gap));
        // Anything extra (a double echo) shows up here.
        if let Ok((_, extra)) = rx.try_recv() {
            bail!(
                "key {i}: extra output {:?} (is the local terminal echoing?)",
                String::from_utf8_lossy(&extra)
            );
        }
    }

    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(Report {
        label: cli.label.clone(),
        command: cli.command.clone(),
        keys: cli.keys,
        warmup: cli.warmup,
        gap_ms: [cli.gap_min_ms, cli.gap_max_ms],
        ready_after_ms: ready_after.as_secs_f64() * 1e3,
        p50_us: percentile(&sorted, 50.0),
        p90_us: percentile(&sorted, 90.0),
        p99_us: percentile(&sorted, 99.0),
        max_us: sorted[sorted.len() - 1],
        min_us: sorted[0],
        mean_us: sorted.iter().sum::<f64>() / sorted.len() as f64,
        samples_us: samples,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

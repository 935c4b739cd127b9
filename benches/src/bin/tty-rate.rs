//! `tty-rate`: count what arrives on stdin and how fast, for terminal throughput runs.
//!
//! ```text
//! ssh -tt HOST 'head -c 200M /dev/zero | base64' | tty-rate --label ssh
//! ```
//!
//! Prints one JSON document: bytes, seconds from its own start to the first byte (the client's
//! connection and session setup) and to end of file, and the rate in MB/s (10^6 bytes per second)
//! from the first byte to end of file, which leaves the session setup out.

use std::io::Read;
use std::time::Instant;

use clap::Parser;
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(name = "tty-rate", version, about)]
struct Cli {
    /// A name for the JSON (e.g. "ssh", "tether").
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Debug, Serialize)]
struct Report {
    label: String,
    bytes: u64,
    first_byte_s: f64,
    total_s: f64,
    transfer_s: f64,
    mb_per_s: f64,
    /// Including the session setup: bytes over `total_s`.
    mb_per_s_with_setup: f64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let start = Instant::now();
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    let mut first = None;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if first.is_none() {
            first = Some(Instant::now());
        }
        bytes += n as u64;
    }
    let end = Instant::now();
    let first = first.unwrap_or(end);
    let transfer_s = end.duration_since(first).as_secs_f64();
    let total_s = end.duration_since(start).as_secs_f64();
    let report = Report {
        label: cli.label,
        bytes,
        first_byte_s: first.duration_since(start).as_secs_f64(),
        total_s,
        transfer_s,
        mb_per_s: if transfer_s > 0.0 {
            bytes as f64 / transfer_s / 1e6
        } else {
            0.0
        },
        mb_per_s_with_setup: if total_s > 0.0 {
            bytes as f64 / total_s / 1e6
        } else {
            0.0
        },
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

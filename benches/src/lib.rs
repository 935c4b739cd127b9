//! # tether-benches
//!
//! Criterion micro-benchmarks (`benches/`) and [`sim`], simulated nodes that speak the real node
//! protocol over real QUIC without the agent's collectors, so one process can stand in for many
//! machines. Results and the commands that produce them are in `docs/benchmarks.md`.
//!
//! Nothing here is used by the shipped binaries; it must never be a dependency of them.

pub mod loadgen;
pub mod pty;
pub mod sim;

/// Logs to stderr at the level `TETHER_LOG` asks for, `warn` by default (the benchmark binaries).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// This process's CPU time so far (all threads, user and system), seconds, from
/// `/proc/self/stat`: utime and stime, in Linux's USER_HZ (100 per second).
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

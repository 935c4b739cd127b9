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

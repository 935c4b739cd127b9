//! # tether-benches
//!
//! Criterion micro-benchmarks (`benches/`) and [`sim`], simulated nodes that speak the real node
//! protocol over real QUIC without the agent's collectors, so one process can stand in for many
//! machines. Results and the commands that produce them are in `docs/benchmarks.md`.
//!
//! Nothing here is used by the shipped binaries; it must never be a dependency of them.

pub mod loadgen;
pub mod sim;

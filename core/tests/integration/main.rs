//! Core's end-to-end tests, as one test binary: real QUIC on loopback, real `tether-core`,
//! `tether` and `tether-node` processes, real redb files. One module per concern; they share
//! `support`. One binary rather than one per file, because each test binary links all of core
//! again: 24 of them were most of the workspace's build time in CI. Run one concern with
//! `cargo test -p tether-core --test integration tty::`.
//!
//! `connection_memory` stays a binary of its own: it counts heap bytes with its own global
//! allocator, which other tests running alongside would disturb.

mod support;

mod alerts;
mod alerts_cli;
mod backup;
mod cli;
mod deploys;
mod disk_full;
mod durability;
mod enrollment;
mod exec;
mod files;
mod fleet;
mod groups;
mod identity;
mod metrics;
mod naming;
mod policy;
mod presence;
mod protocol;
mod releases;
mod tasks;
mod telemetry;
mod tty;
mod users;
mod users_cli;

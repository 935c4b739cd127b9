//! # tether-core
//!
//! The server every node dials and every admin talks to: one QUIC endpoint with two ALPNs.
//! Nodes enroll, authenticate, heartbeat and receive commands over their one connection; admins
//! (the `tether` CLI, later the web bridge) send requests on streams of their own.
//!
//! Entry point: [`server::Core::start`] runs a core. The binary `tether-core` (server, local
//! admin tasks, `dev`) is a thin command-line shell over it. The admin side — the client library
//! and the `tether` CLI — is the package `tether-client` (`core/client/`), which never links this
//! crate; this crate uses it only to read what it writes (backup archives, recordings), so that
//! there is one reader of each.
//!
//! This crate never touches redb (that is `tether-store`) and never defines what crosses a process
//! boundary (that is `tether-wire`); JSON appears only in the `tether` CLI's `--json` output.

pub mod backup;
pub mod cid;
pub mod clock;
pub mod config;
pub mod data_dir;
pub mod presence;
pub mod server;
pub mod udp;

mod admin;
#[doc(hidden)] // Public for the benchmarks only.
pub mod alerts;
pub mod auth;
mod enroll;
mod exec;
mod history;
mod mailbox;
mod node_conn;
mod probe;
mod releases;
mod retention;
mod tasks;
mod telemetry;
mod tty;
mod views;

pub mod recording;

pub use server::{Core, StartError};

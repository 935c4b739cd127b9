//! # tether-core
//!
//! The server every node dials and every admin talks to: one QUIC endpoint with two ALPNs.
//! Nodes enroll, authenticate, heartbeat and receive commands over their one connection; admins
//! (the `tether` CLI, later the web bridge) send requests on streams of their own.
//!
//! Entry points: [`server::Core::start`] runs a core; [`client::AdminClient`] is the admin side.
//! The binaries `tether-core` (server, local admin tasks, `dev`) and
//! `tether` are thin command-line shells over these.
//!
//! This crate never touches redb (that is `tether-store`) and never defines what crosses a process
//! boundary (that is `tether-wire`); JSON appears only in the `tether` CLI's `--json` output.

pub mod backup;
pub mod cid;
pub mod client;
pub mod clock;
pub mod config;
pub mod data_dir;
pub mod presence;
pub mod server;
pub mod udp;

mod admin;
mod enroll;
mod exec;
mod mailbox;
mod node_conn;
mod probe;
mod retention;
mod tty;
mod views;

pub mod recording;

pub use server::{Core, StartError};

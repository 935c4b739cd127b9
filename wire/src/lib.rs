//! # tether-wire
//!
//! Every message that crosses a Tether process boundary — node ↔ core, admin CLI ↔ core, and the
//! join token a human carries from one machine to another — with its encoding, framing, limits and
//! error codes.
//!
//! This crate is a pure state machine in the spirit of `quinn-proto`: it turns bytes into messages
//! and messages into bytes, and answers "incomplete" when it needs more. It must never open a
//! socket, spawn a task, read a clock or depend on tokio; callers pass time and bytes in. Every
//! encode/decode call lives in [`codec`], so the encoding (bincode 2 today) can be swapped without
//! touching anything else.

/// `as_str`, `Display` and `FromStr` for a plain enum from its lower-case names (as flags and
/// JSON write them); `FromStr`'s error lists them. Before the modules, so every module can use it.
macro_rules! text_enum {
    ($ty:ident $what:literal { $($variant:ident = $text:expr),* }) => {
        impl $ty {
            /// Lower-case name, as used on the command line and in JSON.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),* }
            }
        }
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl ::std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($ty::$variant),)*
                    other => Err(format!(
                        "unknown {} {other:?}; expected one of: {}",
                        $what,
                        [$($text),*].join(", ")
                    )),
                }
            }
        }
    };
}

pub mod admin;
pub mod alerts;
pub mod bytes;
pub mod codec;
pub mod control;
pub mod deploys;
pub mod error;
pub mod exec;
pub mod facts;
pub mod fleet;
pub mod frame;
pub mod groups;
pub mod heartbeat;
pub mod history;
pub mod ids;
pub mod limits;
pub mod policy;
pub mod releases;
pub mod tasks;
pub mod token;
pub mod tty;
pub mod units;
pub mod users;

pub use error::ErrorCode;
pub use ids::{ApplicationId, ExecutionId, NodeId, TtySessionId};

/// ALPN a node speaks on its one connection to core.
pub const NODE_ALPN: &[u8] = b"tether-node/1";
/// ALPN the admin CLI (and later the web bridge) speaks to core.
pub const ADMIN_ALPN: &[u8] = b"tether-admin/1";
/// The TLS server name every client asks for. Nodes pin core's CA by fingerprint, so the name only
/// has to match what core's own CA put in the server certificate, whatever address was dialled.
pub const TLS_SERVER_NAME: &str = "tether-core";
/// Label of the TLS exporter value that binds a node's proof to one connection (RFC 5705/8446).
pub const AUTH_EXPORTER_LABEL: &[u8] = b"EXPORTER-tether-node-auth-v1";
/// Length of that exporter value.
pub const AUTH_EXPORTER_LEN: usize = 32;

#[cfg(feature = "quinn")]
pub mod quic;
#[cfg(feature = "quinn")]
pub mod stream;

//! Limits enforced on both sides of every boundary. Exceeding one is a clear error, never a
//! silent truncation.

/// Largest frame on a node's control stream (static facts are the biggest message).
pub const MAX_CONTROL_FRAME_LEN: usize = 1024 * 1024;
/// Largest frame on an admin stream (node lists are sent in chunks well under this).
pub const MAX_ADMIN_FRAME_LEN: usize = 8 * 1024 * 1024;
/// Largest UDP payload core and the CLI accept, and the ceiling of their path MTU discovery
/// (quinn's default ceiling is 1,452 bytes, for Ethernet). Where the path allows it (loopback,
/// jumbo frames) terminal output reaches the CLI in a tenth of the packets: each costs a system
/// call, a decryption and a wake-up. On an Ethernet path discovery settles where it did, after
/// a few lost probes. Nodes keep quinn's defaults both ways: they accept 1,472 bytes, so core's
/// packets to a node, and the buffer core keeps for sending them, stay small on every one of
/// thousands of connections; and they do not search past 1,452 (see the node's `transport`).
pub const MAX_UDP_PAYLOAD: u16 = 16 * 1024;
/// Largest heartbeat datagram a node will build: comfortably under quinn's 1162-byte
/// `max_datagram_size()` at the minimum QUIC MTU of 1200.
pub const MAX_HEARTBEAT_LEN: usize = 1100;
/// Enrollment nonce length (seed 000: 64 random bytes).
pub const NONCE_LEN: usize = 64;
/// Length of the node's agent secret and of the join token's enrollment secret.
pub const SECRET_LEN: usize = 32;
/// Length of the HMAC-SHA256 connection proof.
pub const PROOF_LEN: usize = 32;
/// Longest hostname (DNS limit).
pub const MAX_HOSTNAME_LEN: usize = 253;
/// Longest public key PEM accepted in an enrollment request (RSA-4096 is about 800 bytes).
pub const MAX_PUBLIC_KEY_PEM_LEN: usize = 4096;
/// Longest RSA signature accepted (RSA-4096).
pub const MAX_SIGNATURE_LEN: usize = 512;
/// Longest agent version string.
pub const MAX_VERSION_LEN: usize = 64;
/// Most labels on one node.
pub const MAX_LABELS: usize = 64;
/// Longest label key.
pub const MAX_LABEL_KEY_LEN: usize = 63;
/// Longest label value.
pub const MAX_LABEL_VALUE_LEN: usize = 253;
/// Longest rejection reason.
pub const MAX_REASON_LEN: usize = 1024;
/// Most nodes per admin list chunk.
pub const ADMIN_LIST_CHUNK: usize = 256;
/// Largest frame on an execution's output stream.
pub const MAX_EXEC_FRAME_LEN: usize = 256 * 1024;
/// Output is sent in chunks of at most this many bytes.
pub const EXEC_CHUNK: usize = 64 * 1024;
/// Command, environment and directory together.
pub const MAX_COMMAND_BYTES: usize = 128 * 1024;
/// Arguments of one command.
pub const MAX_COMMAND_ARGS: usize = 4096;
/// Environment variables of one command.
pub const MAX_ENV_VARS: usize = 256;
/// Executions running at once on one node.
pub const MAX_EXECS_PER_NODE: usize = 64;
/// Nodes one execution may target.
pub const MAX_EXEC_TARGETS: usize = 100_000;
/// Largest frame on a terminal stream.
pub const MAX_TTY_FRAME_LEN: usize = 256 * 1024;
/// Terminal output and input travel in chunks of at most this many bytes.
pub const TTY_CHUNK: usize = 32 * 1024;
/// Longest command line for a terminal.
pub const MAX_TTY_COMMAND_LEN: usize = 4096;
/// Widest and tallest terminal accepted.
pub const MAX_TTY_DIMENSION: u16 = 1000;
/// Terminal sessions one node runs at once, whatever core's configuration says.
pub const MAX_TTYS_PER_NODE: usize = 64;
/// Users in one node's allowed list.
pub const MAX_ALLOWED_USERS: usize = 256;
/// Longest terminal token text.
pub const MAX_TTY_TOKEN_LEN: usize = 128;

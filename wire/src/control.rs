//! Messages on a node's control stream: the one bidirectional stream the node opens on its
//! connection to core. Both directions carry [`crate::frame`]s of at most
//! [`MAX_CONTROL_FRAME_LEN`](crate::limits::MAX_CONTROL_FRAME_LEN) bytes.
//!
//! The conversation:
//!
//! ```text
//! node                                   core
//!  ── Enroll ─────────────────────────▶          (first run: no secret yet)
//!  ◀───────────────────── EnrollPending          (waits for an admin, connection stays open)
//!  ◀──────────────────── EnrollApproved          (pushed the moment an admin approves)
//!  ── Auth ───────────────────────────▶          (every later connection starts here)
//!  ◀──────────────────────────── AuthOk          (heartbeat interval, facts digest core holds)
//!  ── StaticFacts ────────────────────▶          (only if the digest differs)
//!  ◀─────────────────────────── Removed          (admin deleted the node: exit, do not retry)
//!  ◀────────────────────────────── Exec          (run a command; output on a new uni stream)
//!  ◀──────────────────────── CancelExec          (kill it; the stream still ends with Finished)
//! ```
//! Any refusal is a [`CoreMessage::Refused`] frame followed by a connection close with the same
//! [`ErrorCode`].

use serde::{Deserialize, Serialize};

use crate::bytes::{ByteBuf, FixedBytes};
use crate::error::ErrorCode;
use crate::facts::StaticFacts;
use crate::ids::{ApplicationId, NodeId};
use crate::limits;

/// 64 random bytes that make an enrollment request unique (replay protection).
pub type Nonce = FixedBytes<{ limits::NONCE_LEN }>;
/// The enrollment secret carried in the join token.
pub type JoinSecret = FixedBytes<{ limits::SECRET_LEN }>;
/// HMAC-SHA256 proof of a node's agent secret, bound to one connection.
pub type Proof = FixedBytes<{ limits::PROOF_LEN }>;
/// SHA-256 digest.
pub type Digest = FixedBytes<32>;

/// A frame sent by a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum NodeMessage {
    /// Ask to join the fleet (first frame of a connection without a secret).
    Enroll(EnrollRequest),
    /// Prove possession of the agent secret (first frame of every later connection, or the frame
    /// after `EnrollApproved`).
    Auth(AuthRequest),
    /// The node's static host facts, sent after `AuthOk` only if core's digest differs, and again
    /// whenever they change.
    StaticFacts(StaticFacts),
    /// The node's own policy ([`crate::policy`]), sent after `AuthOk`: what core may ask of it.
    /// Reported only; the node enforces it.
    Policy(crate::policy::NodePolicy),
    /// How an update (or a rollback) core asked for goes ([`crate::deploys`]).
    UpdateStatus(crate::deploys::UpdateStatus),
}

/// Seed 000's registration request, signed with the node's RSA key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// 64 random bytes, never reused.
    pub nonce: Nonce,
    /// Unix seconds when the request was made.
    pub timestamp: i64,
    /// The node's UUID, created on its first start.
    pub node_id: NodeId,
    /// The node's RSA public key, SubjectPublicKeyInfo PEM.
    pub public_key_pem: String,
    /// The node's hostname.
    pub hostname: String,
    /// The enrollment secret from the join token.
    pub join_secret: JoinSecret,
    /// The agent's version.
    pub agent_version: String,
    /// RSA PKCS#1 v1.5 SHA-256 signature over [`EnrollRequest::signed_bytes`].
    pub signature: ByteBuf,
}

/// Appends a length-prefixed field, so that no two different field lists share an encoding.
fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    let len = u32::try_from(field.len()).expect("fields are far below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

impl EnrollRequest {
    /// The exact bytes the signature covers: a domain tag, then every field but the signature,
    /// each length-prefixed.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.public_key_pem.len());
        out.extend_from_slice(b"tether-enroll-v1\0");
        push_field(&mut out, self.nonce.as_bytes());
        push_field(&mut out, &self.timestamp.to_be_bytes());
        push_field(&mut out, self.node_id.as_bytes());
        push_field(&mut out, self.public_key_pem.as_bytes());
        push_field(&mut out, self.hostname.as_bytes());
        push_field(&mut out, self.join_secret.as_bytes());
        push_field(&mut out, self.agent_version.as_bytes());
        out
    }

    /// Checks sizes and shapes that need no key or clock; the first problem found, with the code
    /// to refuse it with.
    pub fn check_shape(&self) -> Result<(), (ErrorCode, String)> {
        check_hostname(&self.hostname).map_err(|m| (ErrorCode::INVALID_REQUEST, m))?;
        check_version(&self.agent_version).map_err(|m| (ErrorCode::INVALID_REQUEST, m))?;
        if self.public_key_pem.len() > limits::MAX_PUBLIC_KEY_PEM_LEN {
            return Err((
                ErrorCode::BAD_PUBLIC_KEY,
                format!(
                    "public key PEM is {} bytes, the limit is {}",
                    self.public_key_pem.len(),
                    limits::MAX_PUBLIC_KEY_PEM_LEN
                ),
            ));
        }
        if self.signature.0.is_empty() || self.signature.0.len() > limits::MAX_SIGNATURE_LEN {
            return Err((
                ErrorCode::BAD_SIGNATURE,
                format!("signature is {} bytes", self.signature.0.len()),
            ));
        }
        Ok(())
    }
}

/// A node proving it holds its agent secret, on this connection and no other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthRequest {
    /// The node's id.
    pub node_id: NodeId,
    /// Unix seconds when the proof was made.
    pub timestamp: i64,
    /// HMAC-SHA256(agent secret, [`auth_proof_input`]).
    pub proof: Proof,
    /// The agent's version.
    pub agent_version: String,
    /// Which machine (and which boot of it) the agent runs on: [`machine_fingerprint`]. An
    /// identity belongs to one machine; core refuses a second machine using one that is in use.
    pub machine: Digest,
    /// The hostname the agent reports, so that a refused second machine can be named.
    pub hostname: String,
}

impl AuthRequest {
    /// Checks sizes and shapes; the first problem found.
    pub fn check_shape(&self) -> Result<(), String> {
        check_version(&self.agent_version)?;
        check_hostname(&self.hostname)
    }
}

/// The machine fingerprint an agent sends in [`AuthRequest::machine`]: SHA-256 over a domain
/// tag, the machine id (`/etc/machine-id`, else `/var/lib/dbus/machine-id`, as
/// `machine-id(5)` describes; empty when there is none) and the boot id
/// (`/proc/sys/kernel/random/boot_id`), each length-prefixed and trimmed of whitespace.
///
/// The machine id tells machines apart; the boot id tells apart copies of one disk image that
/// kept its machine id (a cloned VM). A reboot changes the boot id too: core then finds the
/// old connection dead, which a clone's is not. The ids themselves never leave the machine.
pub fn machine_fingerprint(machine_id: &[u8], boot_id: &[u8]) -> Digest {
    use sha2::Digest as _;
    let mut input = Vec::with_capacity(64);
    input.extend_from_slice(b"tether-machine-v1\0");
    push_field(&mut input, machine_id.trim_ascii());
    push_field(&mut input, boot_id.trim_ascii());
    Digest::from(<[u8; 32]>::from(sha2::Sha256::digest(&input)))
}

/// The bytes a connection proof covers: node id ‖ timestamp ‖ the connection's TLS exporter value
/// (label [`AUTH_EXPORTER_LABEL`](crate::AUTH_EXPORTER_LABEL)), after a domain tag. A proof
/// captured on one connection is worthless on any other, because the exporter differs.
pub fn auth_proof_input(
    node_id: NodeId,
    timestamp: i64,
    exporter: &[u8; crate::AUTH_EXPORTER_LEN],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 16 + 8 + exporter.len());
    out.extend_from_slice(b"tether-auth-v1\0");
    out.extend_from_slice(node_id.as_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(exporter);
    out
}

/// A frame sent by core on a node's control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CoreMessage {
    /// The application is waiting for an admin. Stay connected: the decision is pushed.
    EnrollPending {
        /// The application's id, for the admin's `tether enroll approve`.
        application_id: ApplicationId,
    },
    /// Approved: the agent secret, encrypted to the node's RSA key with RSA-OAEP (SHA-256).
    EnrollApproved {
        /// The node's id (the UUID it enrolled with).
        node_id: NodeId,
        /// RSA-OAEP-SHA256 ciphertext of the 32-byte agent secret.
        encrypted_secret: ByteBuf,
    },
    /// Rejected by an admin. The node must stop and not retry.
    EnrollRejected {
        /// The application that was rejected.
        application_id: ApplicationId,
        /// The admin's reason, possibly empty.
        reason: String,
    },
    /// Authenticated: the node is online.
    AuthOk(SessionParams),
    /// The request was refused; the connection closes with the same code.
    Refused {
        /// What went wrong.
        code: ErrorCode,
        /// A sentence for the node's operator.
        message: String,
    },
    /// An admin deleted this node. Exit, do not retry.
    Removed {
        /// Why, for the node's log.
        reason: String,
    },
    /// Run a command; its output comes back on a unidirectional stream the node opens for it.
    Exec(crate::exec::ExecRequest),
    /// Kill an execution's process group; its stream still ends with `Finished`.
    CancelExec {
        /// Which one.
        exec_id: crate::ids::ExecutionId,
    },
    /// Run a script (a scheduled task's): the node writes it to a private file and runs that
    /// file, so its interpreter line chooses the program. Output and end as for `Exec`;
    /// `request.command` holds the script's name only. Only a node whose policy is
    /// `exec = "on"` runs one: a script is any program.
    ExecScript {
        /// The run, as for `Exec`.
        request: crate::exec::ExecRequest,
        /// The script's bytes (at most [`crate::tasks::MAX_SCRIPT_LEN`]).
        script: crate::bytes::ByteBuf,
    },
    /// Install an agent release ([`crate::deploys`]): check the manifest against the keys
    /// this node trusts, fetch the file on a stream of its own, check it, replace the binary,
    /// start the new agent under a watchdog.
    Update(crate::deploys::UpdateOrder),
    /// Put back the agent kept from the last update.
    Rollback(crate::deploys::RollbackOrder),
}

/// What core tells an authenticated node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionParams {
    /// The node's id, echoed.
    pub node_id: NodeId,
    /// Send a heartbeat datagram this often.
    pub heartbeat_interval_ms: u32,
    /// Core's clock, unix milliseconds, so the node can log its own skew.
    pub core_time_ms: i64,
    /// Timestamps further than this from core's clock are refused.
    pub max_clock_skew_secs: u32,
    /// Digest of the static facts core holds for this node, if any.
    pub static_facts_digest: Option<Digest>,
}

/// Checks a hostname: 1..=253 printable ASCII characters without whitespace.
pub fn check_hostname(hostname: &str) -> Result<(), String> {
    if hostname.is_empty() {
        return Err("hostname is empty".into());
    }
    if hostname.len() > limits::MAX_HOSTNAME_LEN {
        return Err(format!(
            "hostname is {} bytes, the limit is {}",
            hostname.len(),
            limits::MAX_HOSTNAME_LEN
        ));
    }
    if !hostname.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "hostname {hostname:?} has characters other than printable ASCII"
        ));
    }
    Ok(())
}

/// Checks an agent version string: at most 64 printable ASCII characters.
pub fn check_version(version: &str) -> Result<(), String> {
    if version.len() > limits::MAX_VERSION_LEN || !version.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("agent version {version:?} is not acceptable"));
    }
    Ok(())
}

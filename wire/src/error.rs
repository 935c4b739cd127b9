//! Error codes shared by refusal frames, admin errors and QUIC application close codes.
//!
//! A code is a number, not a Rust enum, so that a peer running a newer version can send a code this
//! one does not know and still be understood as "an error, number N" (quinn's `VarInt` codes work
//! the same way).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A protocol error code. Also used, unchanged, as the QUIC application close code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ErrorCode(pub u16);

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $value:expr, $text:expr;)*) => {
        impl ErrorCode {
            $($(#[$doc])* pub const $name: ErrorCode = ErrorCode($value);)*

            /// Every code this version knows, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),*];

            /// Short stable name, e.g. `clock_skew`.
            pub fn name(self) -> &'static str {
                match self.0 {
                    $($value => $text,)*
                    _ => "unknown",
                }
            }
        }
    };
}

codes! {
    /// Normal close: nothing went wrong.
    OK = 0, "ok";
    /// A frame or datagram did not decode.
    MALFORMED = 1, "malformed";
    /// A frame was larger than the limit for its stream.
    FRAME_TOO_LARGE = 2, "frame_too_large";
    /// A valid message arrived where the protocol does not allow it.
    UNEXPECTED_MESSAGE = 3, "unexpected_message";
    /// The peer did not say hello in time.
    HELLO_TIMEOUT = 4, "hello_timeout";
    /// The peer spoke an ALPN or version this core does not serve.
    UNSUPPORTED = 5, "unsupported";

    /// The join token's enrollment secret is wrong (or was rotated).
    WRONG_JOIN_TOKEN = 10, "wrong_join_token";
    /// The timestamp is outside the allowed window: the clocks disagree.
    CLOCK_SKEW = 11, "clock_skew";
    /// The enrollment signature does not verify against the public key sent with it.
    BAD_SIGNATURE = 12, "bad_signature";
    /// The enrollment nonce was seen before: a replay.
    REPLAYED_NONCE = 13, "replayed_nonce";
    /// The public key is not an acceptable RSA key.
    BAD_PUBLIC_KEY = 14, "bad_public_key";
    /// This node id is already known with a different public key.
    KEY_MISMATCH = 15, "key_mismatch";
    /// Too many applications are waiting for a decision.
    TOO_MANY_PENDING = 16, "too_many_pending";
    /// The application was rejected by an admin.
    APPLICATION_REJECTED = 17, "application_rejected";
    /// The node was deleted by an admin: it may not come back.
    NODE_REMOVED = 18, "node_removed";
    /// An invalid field in an enrollment request (hostname, version, ...).
    INVALID_REQUEST = 19, "invalid_request";

    /// No approved node has this id.
    UNKNOWN_NODE = 30, "unknown_node";
    /// The connection proof (HMAC over the TLS exporter) does not verify.
    BAD_PROOF = 31, "bad_proof";
    /// A newer connection of the same node replaced this one.
    REPLACED = 32, "replaced";
    /// This node identity is in use by another machine (a copied state directory: a cloned VM
    /// or disk image). The agent must get a fresh state directory and enroll.
    IDENTITY_IN_USE = 33, "identity_in_use";

    /// Admin: nothing matches the given id or prefix.
    NOT_FOUND = 40, "not_found";
    /// Admin: the prefix matches more than one thing.
    AMBIGUOUS = 41, "ambiguous";
    /// Admin: an argument is not acceptable.
    INVALID_ARGUMENT = 42, "invalid_argument";
    /// Admin: the request conflicts with the current state (e.g. approving a rejected application).
    CONFLICT = 43, "conflict";
    /// Admin: a client certificate is required and was not presented or not accepted.
    FORBIDDEN = 44, "forbidden";
    /// Admin: the node is offline or in maintenance.
    NODE_UNAVAILABLE = 45, "node_unavailable";
    /// Admin: this user's role or the node's allowed users do not permit the request.
    PERMISSION_DENIED = 46, "permission_denied";
    /// A concurrency limit (sessions per node, per user, ...) is reached.
    LIMIT_REACHED = 47, "limit_reached";
    /// Too many requests of this kind in a short time.
    RATE_LIMITED = 48, "rate_limited";
    /// A terminal token is unknown, was already used, or belongs to someone else.
    TOKEN_INVALID = 49, "token_invalid";
    /// A terminal token's five minutes are over.
    TOKEN_EXPIRED = 50, "token_expired";
    /// A terminal session was ended by an admin.
    SESSION_KILLED = 51, "session_killed";
    /// Admin: a password login failed: unknown user or wrong password (one answer for both).
    LOGIN_FAILED = 52, "login_failed";
    /// Admin: the credentials were good and are no more: certificate revoked or expired or
    /// unknown to core, user disabled or deleted.
    CREDENTIALS_REVOKED = 53, "credentials_revoked";
    /// Admin: a login session ended (idle timeout, lifetime, logout) or is unknown.
    SESSION_EXPIRED = 54, "session_expired";
    /// The node's own policy (`[policy]` in its node.toml) refuses this: a command not on its
    /// allow-list, commands or terminals switched off.
    POLICY_REFUSED = 55, "policy_refused";

    /// Core failed internally (storage, ...). Details are in core's log.
    INTERNAL = 60, "internal";
    /// Core is shutting down.
    SHUTTING_DOWN = 61, "shutting_down";
}

impl ErrorCode {
    /// The QUIC application close code for this error.
    pub fn close_code(self) -> u32 {
        u32::from(self.0)
    }

    /// Interprets a QUIC application close code.
    pub fn from_close_code(code: u64) -> ErrorCode {
        ErrorCode(u16::try_from(code).unwrap_or(u16::MAX))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ErrorCode({}={})", self.0, self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_named() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.0), "duplicate code {}", code.0);
            assert_ne!(code.name(), "unknown");
        }
        assert_eq!(ErrorCode(9999).name(), "unknown");
    }
}

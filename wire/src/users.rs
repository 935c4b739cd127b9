//! Users, their certificates and login sessions, and the audit log, as the admin API carries them
//! (requests in [`crate::admin::AdminRequest`]).
//!
//! Seed 002's `users` and `audit_logs` tables, with what Tether adds: certificates that belong to
//! users and can be revoked, server-side login sessions, and a hash chain over the audit log.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::admin::Role;

/// Shortest password accepted, in characters (NIST SP 800-63B asks for at least 8; Tether's
/// users can open root shells on whole fleets).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted, in bytes (argon2 would take more; a bound keeps hashing cheap to
/// refuse).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest email address, bytes (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest user agent kept, bytes; longer ones are cut.
pub const MAX_USER_AGENT_BYTES: usize = 512;

/// A secret a person typed (a password) or core handed out (a session token). Its `Debug` never
/// shows it, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }
    /// The secret itself, for hashing or comparing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Checks a new password: [`MIN_PASSWORD_CHARS`] characters at least, [`MAX_PASSWORD_BYTES`]
/// bytes at most, no control characters.
pub fn check_password(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password has {chars} characters; at least {MIN_PASSWORD_CHARS} are required"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    if password.chars().any(char::is_control) {
        return Err("the password has control characters (a pasted newline?)".into());
    }
    Ok(())
}

/// Checks an email address: one `@` with something on both sides, no spaces, at most
/// [`MAX_EMAIL_BYTES`] bytes. (Whether mail arrives is for the mail server to say.)
pub fn check_email(email: &str) -> Result<(), String> {
    let ok = email.len() <= MAX_EMAIL_BYTES
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && email.matches('@').count() == 1
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!("{email:?} is not an email address"))
    }
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    /// Unique name (see [`crate::admin::check_user_name`]).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Optional email, unique among users.
    pub email: Option<String>,
    /// Password for logging in through a browser; `None`: certificate only.
    pub password: Option<Secret>,
}

/// Where a request came from beyond core's view of the connection: the browser behind the web
/// bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The browser's address, as the bridge saw it.
    pub addr: Option<String>,
    /// The browser's `User-Agent`.
    pub user_agent: Option<String>,
}

/// A user as an admin sees it (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    /// Name.
    pub name: String,
    /// Email.
    pub email: Option<String>,
    /// Role.
    pub role: Role,
    /// Enabled (a disabled user can neither connect nor log in).
    pub enabled: bool,
    /// Whether a password is set (password login possible).
    pub has_password: bool,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// Last changed, unix ms.
    pub updated_at_ms: i64,
    /// Last successful password login, unix ms.
    pub last_login_ms: Option<i64>,
    /// Address of that login.
    pub last_login_addr: Option<String>,
    /// Certificates neither revoked nor expired.
    pub active_certs: u32,
    /// Login sessions open.
    pub sessions: u32,
}

/// A user certificate as core records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertView {
    /// Serial number, lower-case hex.
    pub serial: String,
    /// Its user.
    pub user: String,
    /// Issued, unix ms.
    pub issued_at_ms: i64,
    /// Who issued it (`core` for the bootstrap admin's).
    pub issued_by: String,
    /// Not after, unix ms.
    pub expires_at_ms: i64,
    /// Revoked, unix ms.
    pub revoked_at_ms: Option<i64>,
    /// Who revoked it (or why: `user deleted`).
    pub revoked_by: Option<String>,
}

/// A login session (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// Public id (for `user logout NAME --session ID`); not the token.
    pub id: String,
    /// Its user.
    pub user: String,
    /// Created at login, unix ms.
    pub created_at_ms: i64,
    /// Last request, unix ms (to the minute: core records use at most once a minute).
    pub last_used_ms: i64,
    /// When it ends unless used again, unix ms (idle timeout).
    pub idle_expires_at_ms: i64,
    /// When it ends whatever happens, unix ms (absolute lifetime).
    pub expires_at_ms: i64,
    /// The browser's address at login.
    pub client_addr: Option<String>,
    /// The browser's user agent at login.
    pub user_agent: Option<String>,
}

/// How an audited request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditResult {
    /// Done (for requests that take a stream: started).
    Ok,
    /// Refused before anything ran: role, revoked or expired credentials, throttling.
    Denied,
    /// Allowed, and failed (not found, bad input, a conflict, core's error).
    Failed,
}

impl AuditResult {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Ok => "ok",
            AuditResult::Denied => "denied",
            AuditResult::Failed => "failed",
        }
    }
}

impl fmt::Display for AuditResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audited request, as written (seed 002's `audit_logs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When core decided, unix ms.
    pub time_ms: i64,
    /// Who asked (the certificate's or session's user; for a failed login, the name tried).
    pub user: String,
    /// Their role at the time, when known.
    pub role: Option<Role>,
    /// What was asked, as in the role table (`nodes.edit`, `users.manage`, ...).
    pub action: String,
    /// The request's own name (`LabelNode`, `UserAdd`, ...).
    pub request: String,
    /// Kind of thing acted on (`node`, `user`, `cert`, ...).
    pub resource_kind: String,
    /// Which one, as asked.
    pub resource_id: Option<String>,
    /// Parameters, never passwords, tokens or other secrets.
    pub details: Vec<(String, String)>,
    /// The connection's address as core sees it.
    pub source_addr: Option<String>,
    /// The browser's address, for requests through the web bridge.
    pub client_addr: Option<String>,
    /// The browser's user agent.
    pub user_agent: Option<String>,
    /// How it ended.
    pub result: AuditResult,
    /// Why it was denied or failed.
    pub error: Option<String>,
}

/// A stored audit record: the entry, its place in the chain and the hashes that link it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditView {
    /// Sequence number, from 1, without gaps.
    pub seq: u64,
    /// SHA-256 of this record (see `docs/security.md`), hex.
    pub hash: String,
    /// The record.
    pub entry: AuditEntry,
}

/// Which audit records to list, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Only this user's.
    pub user: Option<String>,
    /// Only this action, or actions starting with it followed by `.` (`nodes` = `nodes.*`).
    pub action: Option<String>,
    /// Only this resource: `KIND` or `KIND:ID` (an id prefix matches).
    pub resource: Option<String>,
    /// From this time, unix ms.
    pub since_ms: Option<i64>,
    /// Before this time, unix ms.
    pub until_ms: Option<i64>,
    /// Only denied and failed requests.
    pub failed: bool,
    /// At most this many.
    pub limit: u32,
    /// Only the record with this sequence number.
    pub seq: Option<u64>,
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerifyReport {
    /// Records checked.
    pub records: u64,
    /// The first record kept.
    pub first_seq: Option<u64>,
    /// The last.
    pub last_seq: Option<u64>,
    /// The hash of the last record (the head): note it elsewhere to detect a rewrite of the
    /// whole log later.
    pub head_hash: Option<String>,
    /// Records before `first_seq` were pruned by retention; the first kept one is checked
    /// against the hash of the last pruned one.
    pub pruned_before: Option<u64>,
    /// The first record that does not fit, and why; `None` when the chain is whole.
    pub broken: Option<AuditBreak>,
}

/// Where an audit chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditBreak {
    /// The record's sequence number (for a missing record: the one expected there).
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_checked_and_never_printed() {
        assert!(check_password("short").is_err());
        assert!(check_password("twelve chars").is_ok());
        assert!(check_password("exactly 11c").is_err());
        assert!(check_password("pasted\nnewline!!").is_err());
        assert!(check_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
        let secret = Secret::new("hunter2hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[test]
    fn emails_are_checked() {
        assert!(check_email("ops@example.com").is_ok());
        for bad in [
            "",
            "ops",
            "@example.com",
            "ops@",
            "a@b@c",
            "o ps@example.com",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }
}

//! Password hashing: argon2id with the `argon2` crate's defaults (19 MiB, 2 passes, 1 lane: the
//! OWASP recommendation), hashes kept in PHC string format so parameters can be raised later
//! without breaking stored ones. Hashing takes tens of milliseconds on purpose, so it runs on a
//! blocking thread.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Hashes a password (PHC string).
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("hashing the password failed: {e}"))
}

/// Whether `password` matches `stored`. Without a stored hash (unknown user, or no password
/// set) a dummy hash is verified instead, so the answer takes as long either way and the time
/// tells nothing about which user names exist. The comparison inside is constant-time.
pub fn verify(stored: Option<&str>, password: &str) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("no user has this password, ever").unwrap_or_default());
    let (text, real) = match stored {
        Some(text) => (text, true),
        None => (dummy.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(text) else {
        return false;
    };
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    matches && real
}

/// [`hash`] on a blocking thread.
pub(crate) async fn hash_blocking(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(|e| format!("hashing the password failed: {e}"))?
}

/// [`verify`] on a blocking thread.
pub(crate) async fn verify_blocking(stored: Option<String>, password: String) -> bool {
    tokio::task::spawn_blocking(move || verify(stored.as_deref(), &password))
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse battery").unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(verify(Some(&stored), "correct horse battery"));
        assert!(!verify(Some(&stored), "correct horse batterx"));
        assert!(!verify(None, "correct horse battery"));
        assert!(!verify(Some("not a hash"), "anything"));
        // Salted: the same password hashes differently each time.
        assert_ne!(stored, hash("correct horse battery").unwrap());
    }
}

//! The join token: what a node needs to find core, trust it, and be allowed to apply.
//!
//! `tether1-` followed by unpadded base64url of: the SHA-256 fingerprint of core's CA certificate
//! (32 bytes), the enrollment secret (32 bytes), and core's address hint (UTF-8, the rest). It is a
//! secret: whoever holds it may apply to join (an admin still approves).

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::control::JoinSecret;
use crate::limits::SECRET_LEN;

const PREFIX: &str = "tether1-";
const MAX_ADDR_LEN: usize = 255;

/// SHA-256 of a CA certificate (DER).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let hex_part = s.strip_prefix("sha256:").unwrap_or(s);
        let bytes = hex::decode(hex_part).map_err(|e| format!("fingerprint {s:?}: {e}"))?;
        let array = bytes
            .try_into()
            .map_err(|_| format!("fingerprint {s:?} is not 32 bytes"))?;
        Ok(Fingerprint(array))
    }
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Where core can be reached, `HOST:PORT` (a hint; `--core` overrides it).
    pub core_addr: String,
    /// Fingerprint of core's CA: the only CA the node will trust.
    pub ca_fingerprint: Fingerprint,
    /// The enrollment secret.
    pub secret: JoinSecret,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("core_addr", &self.core_addr)
            .field("ca_fingerprint", &self.ca_fingerprint)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why a join token did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// It does not start with `tether1-`.
    #[error(
        "not a Tether join token (it should start with \"{PREFIX}\"; print one with `tether-core key show`)"
    )]
    BadPrefix,
    /// The body is not base64url.
    #[error("join token is damaged (not base64url): {0}")]
    BadEncoding(String),
    /// The body is too short or the address is not text.
    #[error("join token is damaged (wrong length or address)")]
    BadBody,
}

impl JoinToken {
    /// The token as text.
    pub fn encode(&self) -> String {
        let mut body = Vec::with_capacity(64 + self.core_addr.len());
        body.extend_from_slice(&self.ca_fingerprint.0);
        body.extend_from_slice(self.secret.as_bytes());
        body.extend_from_slice(self.core_addr.as_bytes());
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(body))
    }

    /// Parses a token, ignoring surrounding whitespace.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let body = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(TokenError::BadPrefix)?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|e| TokenError::BadEncoding(e.to_string()))?;
        if body.len() < 32 + SECRET_LEN || body.len() > 32 + SECRET_LEN + MAX_ADDR_LEN {
            return Err(TokenError::BadBody);
        }
        let fingerprint: [u8; 32] = body[..32].try_into().expect("32 bytes");
        let secret: [u8; SECRET_LEN] = body[32..32 + SECRET_LEN].try_into().expect("32 bytes");
        let core_addr = std::str::from_utf8(&body[32 + SECRET_LEN..])
            .map_err(|_| TokenError::BadBody)?
            .to_string();
        Ok(JoinToken {
            core_addr,
            ca_fingerprint: Fingerprint(fingerprint),
            secret: JoinSecret::from(secret),
        })
    }
}

impl FromStr for JoinToken {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, TokenError> {
        JoinToken::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JoinToken {
        JoinToken {
            core_addr: "core.example.net:4433".into(),
            ca_fingerprint: Fingerprint([7; 32]),
            secret: JoinSecret::from([9; 32]),
        }
    }

    #[test]
    fn round_trip() {
        let token = sample();
        let text = token.encode();
        assert!(text.starts_with("tether1-"));
        assert_eq!(JoinToken::parse(&format!("  {text}\n")).unwrap(), token);
    }

    #[test]
    fn damaged_tokens_refused() {
        assert_eq!(JoinToken::parse("hello"), Err(TokenError::BadPrefix));
        assert!(matches!(
            JoinToken::parse("tether1-***"),
            Err(TokenError::BadEncoding(_))
        ));
        assert_eq!(JoinToken::parse("tether1-AAAA"), Err(TokenError::BadBody));
        let text = sample().encode();
        assert!(JoinToken::parse(&text[..text.len() - 30]).is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", sample());
        assert!(shown.contains("redacted"));
        assert!(!shown.contains("0909"));
    }

    #[test]
    fn fingerprint_text_round_trip() {
        let fp = Fingerprint([0xab; 32]);
        assert_eq!(fp.to_string().parse::<Fingerprint>().unwrap(), fp);
        assert!("sha256:abcd".parse::<Fingerprint>().is_err());
    }
}

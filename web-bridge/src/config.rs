//! What the bridge is told, and what follows from it: the origins browsers may come from, the
//! cookie's name and flags, the limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tether_certs::identity::AdminIdentity;
use tracing::warn;

use crate::BridgeError;

/// How to start a bridge.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Core's QUIC address (`HOST:PORT`); `None` takes the identity's.
    pub core: Option<String>,
    /// The bridge's own identity (role `bridge`).
    pub identity: AdminIdentity,
    /// Where browsers connect (`127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// HTTPS instead of plain HTTP.
    pub tls: Option<Tls>,
    /// Origins (`https://tether.example.com`) besides the bridge's own that pages may come
    /// from: the address browsers use behind a reverse proxy.
    pub allowed_origins: Vec<String>,
    /// How often live pages are refreshed.
    pub watch_interval: Duration,
    /// WebSockets one login session may hold open at once.
    pub max_sockets_per_session: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the browser (core throttles logins and
    /// records requests by the browser's address; behind a proxy every browser would otherwise
    /// share the proxy's).
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl BridgeConfig {
    /// Defaults for an identity: plain HTTP on `127.0.0.1:8080`, live pages every 2 s, 16
    /// WebSockets per session.
    pub fn new(identity: AdminIdentity) -> Self {
        Self {
            core: None,
            identity,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            allowed_origins: Vec::new(),
            watch_interval: Duration::from_secs(2),
            max_sockets_per_session: 16,
            trusted_proxies: Vec::new(),
        }
    }
}

/// A certificate chain and its key, PEM files.
#[derive(Debug, Clone)]
pub struct Tls {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// The session cookie's name over HTTPS (and on loopback, where browsers treat plain HTTP as
/// secure): the `__Host-` prefix makes the browser refuse it unless it is `Secure`, has
/// `Path=/` and no `Domain`, so no other host or path can set or shadow it.
pub(crate) const SECURE_COOKIE: &str = "__Host-tether_session";
/// Its name over plain HTTP on a non-loopback address (a browser refuses `__Host-` there).
pub(crate) const PLAIN_COOKIE: &str = "tether_session";

/// What the handlers consult.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Allowed origins, normalized (`scheme://host[:port]`, lower case, no default port).
    pub origins: Vec<String>,
    /// The session cookie's name.
    pub cookie_name: &'static str,
    /// Whether the cookie is marked `Secure`.
    pub cookie_secure: bool,
    pub watch_interval: Duration,
    pub max_sockets_per_session: usize,
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Settings {
    /// What follows from `config` for a bridge bound to `bound`.
    pub(crate) fn new(
        config: &BridgeConfig,
        bound: SocketAddr,
    ) -> Result<Arc<Settings>, BridgeError> {
        let tls = config.tls.is_some();
        let scheme = if tls { "https" } else { "http" };
        let port = bound.port();
        let ip = bound.ip();
        let mut origins = Vec::new();
        for origin in &config.allowed_origins {
            origins.push(normalize_origin(origin).ok_or_else(|| {
                BridgeError::Config(format!(
                    "--allowed-origin {origin:?} is not an origin; write it as \
                     https://host[:port], as the browser's address bar shows it"
                ))
            })?);
        }
        if ip.is_loopback() {
            for host in ["127.0.0.1", "localhost", "[::1]"] {
                origins
                    .push(normalize_origin(&format!("{scheme}://{host}:{port}")).expect("valid"));
            }
        } else if ip.is_unspecified() {
            if config.allowed_origins.is_empty() {
                return Err(BridgeError::Config(format!(
                    "listening on every address ({}) needs --allowed-origin with the address \
                     browsers use (e.g. https://tether.example.com): the bridge accepts \
                     state-changing requests and WebSockets only from origins it knows",
                    config.listen
                )));
            }
        } else {
            let host = match ip {
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            };
            origins.push(normalize_origin(&format!("{scheme}://{host}:{port}")).expect("valid"));
        }
        // Browsers treat loopback as a secure context: `Secure` cookies work there over HTTP.
        let secure = tls || ip.is_loopback();
        if !secure {
            warn!(
                listen = %config.listen,
                "serving plain HTTP on a non-loopback address: passwords and session cookies \
                 cross the network unencrypted; use --tls-cert/--tls-key or a TLS reverse proxy"
            );
        }
        Ok(Arc::new(Settings {
            origins,
            cookie_name: if secure { SECURE_COOKIE } else { PLAIN_COOKIE },
            cookie_secure: secure,
            watch_interval: config.watch_interval,
            max_sockets_per_session: config.max_sockets_per_session,
            trusted_proxies: config.trusted_proxies.clone(),
        }))
    }
}

/// `scheme://host[:port]` in lower case without a default port, or `None` if `text` is not an
/// http(s) origin (a path, a query or user info make it not one).
pub(crate) fn normalize_origin(text: &str) -> Option<String> {
    let text = text.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest) = text.split_once("://")?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let rest = rest.strip_suffix(default_port).unwrap_or(rest);
    Some(format!("{scheme}://{rest}"))
}

/// rustls server settings from PEM files (the workspace's one crypto provider, ring).
pub(crate) fn tls_config(tls: &Tls) -> Result<rustls::ServerConfig, BridgeError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| BridgeError::Tls(format!("{}: {e}", tls.cert.display())))?;
    if certs.is_empty() {
        return Err(BridgeError::Tls(format!(
            "{}: no certificate in the file",
            tls.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| BridgeError::Tls(format!("{}: {e}", tls.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BridgeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| BridgeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::normalize_origin;

    #[test]
    fn origins_are_compared_in_one_shape() {
        assert_eq!(
            normalize_origin("HTTPS://Tether.Example.com:443/").as_deref(),
            Some("https://tether.example.com")
        );
        assert_eq!(
            normalize_origin("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(normalize_origin("tether.example.com"), None);
        assert_eq!(normalize_origin("https://a.example/path"), None);
        assert_eq!(normalize_origin("ftp://a.example"), None);
        assert_eq!(normalize_origin("https://user@a.example"), None);
    }
}

//! rustls configurations for every party, all built on one explicit `ring` provider and TLS 1.3
//! only (QUIC requires it).
//!
//! - Core: presents its server certificate; accepts connections without a client certificate
//!   (nodes prove themselves inside the connection) and verifies one when presented (admins).
//!   Whether an admin certificate was presented is checked per ALPN by core.
//! - Node: trusts exactly the CA whose SHA-256 fingerprint is pinned (from the join token), taking
//!   the CA certificate from the chain core presents. A mismatch is remembered so the node can show
//!   both fingerprints.
//! - Admin: trusts core's CA from its identity file and presents its client certificate.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tether_wire::{ADMIN_ALPN, NODE_ALPN};

use crate::ca::{CertifiedKey, parse_cert_pem};
use crate::identity::AdminIdentity;
use crate::{CertError, Fingerprint, fingerprint};

/// The one crypto provider Tether uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(e: impl std::fmt::Display) -> CertError {
    CertError::Tls(e.to_string())
}

/// Core's TLS configuration for both ALPNs.
pub fn server_config(
    ca_der: &CertificateDer<'static>,
    server: CertifiedKey,
) -> Result<ServerConfig, CertError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots.add(ca_der.clone()).map_err(tls_err)?;
    let client_verifier = Arc::new(ExpiryToCore {
        inner: WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(tls_err)?,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(server.chain, server.key)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![NODE_ALPN.to_vec(), ADMIN_ALPN.to_vec()];
    // 0-RTT data could be replayed; nothing in Tether needs it.
    config.max_early_data_size = 0;
    // No session tickets: no Tether client resumes (a node keeps one connection for days, and
    // every `tether` command is a new process), so each ticket was wasted work and bytes in
    // every handshake, and a slot in a server-side session cache.
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// What a node saw when core's CA did not match the pinned fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaMismatch {
    /// The fingerprint from the join token.
    pub expected: Fingerprint,
    /// Fingerprints of the certificates core presented above its leaf.
    pub presented: Vec<Fingerprint>,
}

impl std::fmt::Display for CaMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let presented: Vec<String> = self.presented.iter().map(ToString::to_string).collect();
        write!(
            f,
            "core's CA certificate does not match the join token: expected {}, core presented {}",
            self.expected,
            if presented.is_empty() {
                "no CA certificate".to_string()
            } else {
                presented.join(", ")
            }
        )
    }
}

/// Verifies core's certificate against the CA pinned by fingerprint.
#[derive(Debug)]
pub struct PinnedCaVerifier {
    pinned: Fingerprint,
    provider: Arc<CryptoProvider>,
    last_mismatch: Mutex<Option<CaMismatch>>,
}

impl PinnedCaVerifier {
    /// A verifier that trusts only the CA with this fingerprint.
    pub fn new(pinned: Fingerprint) -> Self {
        Self {
            pinned,
            provider: provider(),
            last_mismatch: Mutex::new(None),
        }
    }

    /// The mismatch seen by the most recent failed handshake, if that was the reason.
    pub fn take_mismatch(&self) -> Option<CaMismatch> {
        self.last_mismatch.lock().expect("not poisoned").take()
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|cert| fingerprint(cert) == self.pinned)
        else {
            let mismatch = CaMismatch {
                expected: self.pinned,
                presented: intermediates.iter().map(|c| fingerprint(c)).collect(),
            };
            let message = mismatch.to_string();
            *self.last_mismatch.lock().expect("not poisoned") = Some(mismatch);
            return Err(rustls::Error::General(message));
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| rustls::Error::General(format!("pinned CA unusable: {e}")))?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A node's TLS configuration, and its verifier (to read a CA mismatch after a failed handshake).
pub fn node_client_config(
    pinned: Fingerprint,
) -> Result<(ClientConfig, Arc<PinnedCaVerifier>), CertError> {
    let verifier = Arc::new(PinnedCaVerifier::new(pinned));
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![NODE_ALPN.to_vec()];
    Ok((config, verifier))
}

/// An admin's TLS configuration, from its identity file.
pub fn admin_client_config(identity: &AdminIdentity) -> Result<ClientConfig, CertError> {
    let ca = parse_cert_pem(&identity.ca_cert)?;
    let cert = parse_cert_pem(&identity.cert)?;
    let key = private_key_from_pem(&identity.key)?;
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(tls_err)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert], key)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![ADMIN_ALPN.to_vec()];
    Ok(config)
}

fn private_key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| CertError::Key(format!("not a PEM private key: {e}")))?;
    if parsed.label != "PRIVATE KEY" {
        return Err(CertError::Key(format!(
            "expected a PKCS#8 PRIVATE KEY, found {}",
            parsed.label
        )));
    }
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        parsed.contents,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::CoreCa;

    #[test]
    fn configs_build() {
        let ca = CoreCa::generate("t").unwrap();
        let server = ca.issue_server(&[]).unwrap();
        let config = server_config(ca.cert_der(), server).unwrap();
        assert_eq!(config.send_tls13_tickets, 0, "no client resumes");
        assert_eq!(config.max_early_data_size, 0, "no replayable 0-RTT");
        node_client_config(ca.fingerprint()).unwrap();
        let issued = ca
            .issue_admin("root", tether_wire::admin::Role::Admin)
            .unwrap();
        let identity = AdminIdentity::new("root", "127.0.0.1:1", ca.cert_pem(), issued).unwrap();
        admin_client_config(&identity).unwrap();
    }

    #[test]
    fn pinned_verifier_accepts_own_ca_and_reports_a_stranger() {
        let ca = CoreCa::generate("right").unwrap();
        let other = CoreCa::generate("wrong").unwrap();
        let server = ca.issue_server(&[]).unwrap();
        let name = ServerName::try_from(tether_wire::TLS_SERVER_NAME).unwrap();
        let now = UnixTime::now();

        let good = PinnedCaVerifier::new(ca.fingerprint());
        good.verify_server_cert(&server.chain[0], &server.chain[1..], &name, &[], now)
            .unwrap();

        let bad = PinnedCaVerifier::new(other.fingerprint());
        let err = bad
            .verify_server_cert(&server.chain[0], &server.chain[1..], &name, &[], now)
            .unwrap_err();
        let mismatch = bad.take_mismatch().unwrap();
        assert_eq!(mismatch.expected, other.fingerprint());
        assert_eq!(mismatch.presented, vec![ca.fingerprint()]);
        let text = err.to_string();
        assert!(text.contains(&other.fingerprint().to_string()));
        assert!(text.contains(&ca.fingerprint().to_string()));

        // A leaf signed by another CA but presented with the pinned CA in the chain is refused.
        let forged = other.issue_server(&[]).unwrap();
        assert!(
            good.verify_server_cert(&forged.chain[0], &server.chain[1..], &name, &[], now)
                .is_err()
        );
    }
}

/// Core's client-certificate verifier: WebPKI's, except that an expired certificate that is
/// otherwise valid (issued by core's CA, signature and chain intact) passes the handshake, so
/// that core itself refuses it with a sentence and an audit record instead of a bare TLS alert
/// nobody sees. Core refuses every request on a certificate past its record's expiry
/// (`tether_core::auth::check_cert`); a certificate not yet valid is still refused here.
#[derive(Debug)]
struct ExpiryToCore {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl rustls::server::danger::ClientCertVerifier for ExpiryToCore {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. },
            )) => {
                // Checked again as of its last valid second: everything but the time.
                let not_after = x509_parser::parse_x509_certificate(end_entity)
                    .map_err(|_| {
                        rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
                    })?
                    .1
                    .validity()
                    .not_after
                    .timestamp();
                let then = rustls::pki_types::UnixTime::since_unix_epoch(
                    std::time::Duration::from_secs(u64::try_from(not_after).unwrap_or(0)),
                );
                self.inner
                    .verify_client_cert(end_entity, intermediates, then)
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

//! Core's certificate authority and the certificates it issues.
//!
//! The CA (ECDSA P-256, ten years) is created on core's first start and kept in the data
//! directory. Its SHA-256 fingerprint travels in the join token; nodes trust nothing else. At every
//! start core issues itself a fresh server certificate for [`TLS_SERVER_NAME`]; admins get client
//! certificates (extended key usage `clientAuth`, common name = admin name).

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tether_wire::TLS_SERVER_NAME;
use tether_wire::admin::Role;
use time::OffsetDateTime;

use crate::{CertError, Fingerprint, fingerprint};

const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const SERVER_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 3600);
const ADMIN_VALIDITY: Duration = Duration::from_secs(5 * 365 * 24 * 3600);
/// Certificates start an hour in the past so a peer whose clock is a little behind accepts them.
const BACKDATE: Duration = Duration::from_secs(3600);

fn cert_err(e: rcgen::Error) -> CertError {
    CertError::Certificate(e.to_string())
}

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
}

fn random_serial(params: &mut CertificateParams) {
    let mut serial = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut serial);
    serial[0] &= 0x7f; // positive
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

/// Core's certificate authority.
pub struct CoreCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key: KeyPair,
}

impl std::fmt::Debug for CoreCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CoreCa({})", self.fingerprint())
    }
}

/// A certificate chain with its private key, ready for rustls.
#[derive(Debug)]
pub struct CertifiedKey {
    /// Leaf first, then the CA.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

/// An issued certificate in PEM, with its key.
#[derive(Debug, Clone)]
pub struct IssuedPem {
    /// Certificate PEM.
    pub cert_pem: String,
    /// PKCS#8 private key PEM.
    pub key_pem: String,
}

impl CoreCa {
    /// Creates a new CA named after `core_name`.
    pub fn generate(core_name: &str) -> Result<Self, CertError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Tether CA ({core_name})"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, CA_VALIDITY);
        random_serial(&mut params);
        let issuer = CertifiedIssuer::self_signed(params, &key).map_err(cert_err)?;
        let cert_pem = issuer.pem();
        let cert_der = issuer.der().clone();
        drop(issuer);
        Ok(Self {
            cert_pem,
            cert_der,
            key,
        })
    }

    /// Loads a CA from its certificate and key PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem).map_err(cert_err)?;
        let cert_der = parse_cert_pem(cert_pem)?;
        // Fail now, not at the first issuance, if the pair does not belong together.
        Issuer::from_ca_cert_der(&cert_der, &key).map_err(cert_err)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| CertError::Certificate(e.to_string()))?;
        if parsed.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
        {
            return Err(CertError::Key(
                "the CA key does not match the CA certificate".into(),
            ));
        }
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            cert_der,
            key,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA private key, PKCS#8 PEM (store with mode 0600).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// SHA-256 of the CA certificate: what the join token pins.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint(&self.cert_der)
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, CertError> {
        Issuer::from_ca_cert_der(&self.cert_der, &self.key).map_err(cert_err)
    }

    /// Issues core's server certificate (see [`CoreCa::issue_server`]) as PEM, to keep on disk.
    pub fn issue_server_pem(&self, extra_names: &[String]) -> Result<IssuedPem, CertError> {
        let (cert, key) = self.server_cert(extra_names)?;
        Ok(IssuedPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A server certificate kept as PEM, ready for rustls — if it was issued by this CA and stays
    /// valid for at least `margin`; `None` means "issue a new one".
    pub fn reuse_server(&self, issued: &IssuedPem, margin: Duration) -> Option<CertifiedKey> {
        let leaf = parse_cert_pem(&issued.cert_pem).ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf).ok()?;
        let (_, ca) = x509_parser::parse_x509_certificate(&self.cert_der).ok()?;
        cert.verify_signature(Some(ca.public_key())).ok()?;
        let not_after = cert.validity().not_after.timestamp();
        let deadline = OffsetDateTime::now_utc() + margin;
        if not_after < deadline.unix_timestamp() {
            return None;
        }
        let key = KeyPair::from_pem(&issued.key_pem).ok()?;
        if cert.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice() {
            return None;
        }
        Some(CertifiedKey {
            chain: vec![leaf, self.cert_der.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }

    fn server_cert(
        &self,
        extra_names: &[String],
    ) -> Result<(rcgen::Certificate, KeyPair), CertError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
        let mut names = vec![TLS_SERVER_NAME.to_string()];
        names.extend(extra_names.iter().cloned());
        let mut params = CertificateParams::new(names).map_err(cert_err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, TLS_SERVER_NAME);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, SERVER_VALIDITY);
        random_serial(&mut params);
        let cert = params.signed_by(&key, &self.issuer()?).map_err(cert_err)?;
        Ok((cert, key))
    }

    /// Issues core's server certificate for [`TLS_SERVER_NAME`] plus `extra_names` (DNS names or
    /// IP addresses), with a fresh key.
    pub fn issue_server(&self, extra_names: &[String]) -> Result<CertifiedKey, CertError> {
        let (cert, key) = self.server_cert(extra_names)?;
        Ok(CertifiedKey {
            chain: vec![cert.der().clone(), self.cert_der.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }

    /// Issues a user's client certificate with a fresh key made here (the bootstrap admin's,
    /// written by core itself): common name `name`, organizational unit the role.
    pub fn issue_admin(&self, name: &str, role: Role) -> Result<IssuedPem, CertError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
        let cert_pem = self.sign_user(name, role, &key, ADMIN_VALIDITY)?.cert_pem;
        Ok(IssuedPem {
            cert_pem,
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a user's client certificate for a public key the user made (a DER
    /// SubjectPublicKeyInfo, as [`UserKey::public_key_der`] gives), valid for `lifetime`
    /// (at most [`MAX_USER_CERT_LIFETIME`]). The private key never reaches core.
    pub fn issue_user_cert(
        &self,
        name: &str,
        role: Role,
        public_key_der: &[u8],
        lifetime: Duration,
    ) -> Result<UserCert, CertError> {
        if lifetime.is_zero() || lifetime > MAX_USER_CERT_LIFETIME {
            return Err(CertError::Certificate(format!(
                "a user certificate lasts from a second to {} days",
                MAX_USER_CERT_LIFETIME.as_secs() / 86_400
            )));
        }
        let key = rcgen::SubjectPublicKeyInfo::from_der(public_key_der)
            .map_err(|e| CertError::Certificate(format!("not a public key core can sign: {e}")))?;
        self.sign_user(name, role, &key, lifetime)
    }

    fn sign_user(
        &self,
        name: &str,
        role: Role,
        key: &impl rcgen::PublicKeyData,
        lifetime: Duration,
    ) -> Result<UserCert, CertError> {
        check_admin_name(name)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, role.as_str());
        params.subject_alt_names = vec![SanType::DnsName(
            format!("{name}.admin.tether")
                .try_into()
                .map_err(cert_err)?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, lifetime);
        random_serial(&mut params);
        let cert = params.signed_by(key, &self.issuer()?).map_err(cert_err)?;
        let info = user_cert_info(cert.der()).ok_or_else(|| {
            CertError::Certificate("the certificate just issued does not parse".into())
        })?;
        Ok(UserCert {
            cert_pem: cert.pem(),
            info,
        })
    }
}

/// The longest a user certificate may last: certificates are revocable, but a short life
/// limits what a lost, forgotten file can do.
pub const MAX_USER_CERT_LIFETIME: Duration = Duration::from_secs(5 * 365 * 24 * 3600);

/// A user certificate core issued, and what core records of it.
#[derive(Debug, Clone)]
pub struct UserCert {
    /// Certificate PEM.
    pub cert_pem: String,
    /// Its serial, names and validity.
    pub info: UserCertInfo,
}

/// What core reads from a user certificate on every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCertInfo {
    /// The user name (common name).
    pub user: String,
    /// The role written at issue (organizational unit); informational since users are records
    /// of their own: core takes the role from the user record. `None` for certificates issued
    /// before roles existed.
    pub role: Option<Role>,
    /// Serial number, lower-case hex without leading zero bytes (as `openssl x509 -serial`
    /// prints it, in lower case).
    pub serial: String,
    /// Not before, unix seconds.
    pub not_before: i64,
    /// Not after, unix seconds.
    pub not_after: i64,
}

/// Reads a user certificate's names, serial and validity; `None` if it is not one.
pub fn user_cert_info(der: &[u8]) -> Option<UserCertInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let user = cert.subject().iter_common_name().next()?.as_str().ok()?;
    let role = match cert.subject().iter_organizational_unit().next() {
        None => None,
        Some(unit) => Some(unit.as_str().ok()?.parse().ok()?),
    };
    Some(UserCertInfo {
        user: user.to_string(),
        role,
        serial: serial_hex(cert.raw_serial()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// A serial number's bytes as lower-case hex, leading zero bytes dropped.
fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[start..])
}

/// A user's new key pair, made on the user's side: only its public half goes to core.
pub struct UserKey(KeyPair);

impl std::fmt::Debug for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserKey(..)")
    }
}

impl UserKey {
    /// A fresh ECDSA P-256 key.
    pub fn generate() -> Result<Self, CertError> {
        Ok(Self(
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err)?,
        ))
    }
    /// The public key as DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.0)
    }
    /// The private key, PKCS#8 PEM.
    pub fn private_key_pem(&self) -> String {
        self.0.serialize_pem()
    }
}

/// Admin names: 1–64 of letters, digits, `-`, `_`, `.`.
pub fn check_admin_name(name: &str) -> Result<(), CertError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(CertError::Certificate(format!(
            "admin name {name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        )))
    }
}

/// The first certificate in a PEM text, as DER.
pub fn parse_cert_pem(pem: &str) -> Result<CertificateDer<'static>, CertError> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| CertError::Certificate(format!("not a PEM certificate: {e}")))?;
    if parsed.label != "CERTIFICATE" {
        return Err(CertError::Certificate(format!(
            "expected a CERTIFICATE, found {}",
            parsed.label
        )));
    }
    Ok(CertificateDer::from(parsed.contents))
}

/// The common name of a certificate (the admin name of an admin certificate).
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// The user name and role of a user certificate. Certificates issued before roles existed carry
/// no organizational unit: they were full admins and stay so. An unknown role gives `None`.
pub fn user_identity(der: &[u8]) -> Option<(String, Role)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let name = cert.subject().iter_common_name().next()?.as_str().ok()?;
    let role = match cert.subject().iter_organizational_unit().next() {
        None => Role::Admin,
        Some(unit) => unit.as_str().ok()?.parse().ok()?,
    };
    Some((name.to_string(), role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_reloads_and_issues() {
        let ca = CoreCa::generate("test").unwrap();
        let again = CoreCa::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(ca.fingerprint(), again.fingerprint());

        let server = again.issue_server(&["127.0.0.1".into()]).unwrap();
        assert_eq!(server.chain.len(), 2);
        assert_eq!(
            common_name(&server.chain[0]).as_deref(),
            Some(TLS_SERVER_NAME)
        );

        let admin = again.issue_admin("alice", Role::Operator).unwrap();
        let der = parse_cert_pem(&admin.cert_pem).unwrap();
        assert_eq!(common_name(&der).as_deref(), Some("alice"));
        assert_eq!(
            user_identity(&der),
            Some(("alice".to_string(), Role::Operator))
        );
    }

    #[test]
    fn kept_server_certificates_are_reused_only_when_fit() {
        let ca = CoreCa::generate("test").unwrap();
        let issued = ca.issue_server_pem(&[]).unwrap();
        let reused = ca
            .reuse_server(&issued, Duration::from_secs(30 * 24 * 3600))
            .unwrap();
        assert_eq!(reused.chain[1], *ca.cert_der());
        // Too close to expiry (it lives two years): issue anew.
        assert!(
            ca.reuse_server(&issued, Duration::from_secs(3 * 365 * 24 * 3600))
                .is_none()
        );
        // Issued by another CA: issue anew.
        let other = CoreCa::generate("other").unwrap();
        assert!(other.reuse_server(&issued, Duration::ZERO).is_none());
        // A key that does not belong to the certificate: issue anew.
        let stranger = ca.issue_server_pem(&[]).unwrap();
        let mixed = IssuedPem {
            cert_pem: issued.cert_pem.clone(),
            key_pem: stranger.key_pem,
        };
        assert!(ca.reuse_server(&mixed, Duration::ZERO).is_none());
    }

    #[test]
    fn mismatched_ca_key_refused() {
        let a = CoreCa::generate("a").unwrap();
        let b = CoreCa::generate("b").unwrap();
        assert!(CoreCa::from_pem(a.cert_pem(), &b.key_pem()).is_err());
    }

    #[test]
    fn admin_names_checked() {
        assert!(check_admin_name("ops-1.bob_x").is_ok());
        for bad in ["", ".hidden", "a b", "x/y", &"n".repeat(65)] {
            assert!(check_admin_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_user_certificate_is_issued_for_the_users_own_key() {
        let ca = CoreCa::generate("test").unwrap();
        let key = UserKey::generate().unwrap();
        let issued = ca
            .issue_user_cert(
                "carol",
                Role::Viewer,
                &key.public_key_der(),
                Duration::from_secs(90 * 86_400),
            )
            .unwrap();
        let der = parse_cert_pem(&issued.cert_pem).unwrap();
        let info = user_cert_info(&der).unwrap();
        assert_eq!(info, issued.info);
        assert_eq!(info.user, "carol");
        assert_eq!(info.role, Some(Role::Viewer));
        assert!(!info.serial.starts_with("00") && info.serial.len() <= 32);
        let days = (info.not_after - info.not_before - 3600) / 86_400;
        assert_eq!(days, 90);
        // The certificate is for the user's key: its public key is the one sent.
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(cert.public_key().raw, key.public_key_der().as_slice());

        let too_long = ca.issue_user_cert(
            "carol",
            Role::Viewer,
            &key.public_key_der(),
            MAX_USER_CERT_LIFETIME + Duration::from_secs(1),
        );
        assert!(too_long.is_err());
        assert!(
            ca.issue_user_cert("carol", Role::Viewer, b"junk", Duration::from_secs(60))
                .is_err()
        );
    }
}

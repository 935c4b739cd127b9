//! Core's data directory: what is in it, creating it on first start, and the local admin tasks
//! that only read or write its files (`key show`, `key rotate`, `admin issue`), which therefore work
//! while core runs.
//!
//! ```text
//! DIR/                  0700
//!   ca.crt              core's CA certificate (its fingerprint is pinned by every node)
//!   ca.key              0600  the CA's private key
//!   server.crt          core's server certificate, issued by the CA (renewed within 30 days of expiry)
//!   server.key          0600  its private key
//!   enrollment.secret   0600  the secret in the join token (`key rotate` replaces it)
//!   admin.identity      0600  the first admin's identity for the `tether` CLI
//!   core.addr           the address advertised in join tokens
//!   quic-reset.key      0600  QUIC stateless-reset key: kept across restarts so that, after a
//!                       crash, nodes learn at their next packet that their connection is gone
//!   tether.redb         the database
//! ```

use std::path::{Path, PathBuf};

use rand::RngCore;
use std::time::Duration;

use tether_certs::ca::{CertifiedKey, CoreCa, IssuedPem};
use tether_certs::identity::AdminIdentity;
use tether_certs::{CertError, files};
use tether_wire::admin::Role;
use tether_wire::control::JoinSecret;
use tether_wire::token::JoinToken;

/// Errors about the data directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// `serve` never ran here.
    #[error("{0} is not an initialised data directory (start `tether-core serve --data {0}` once)")]
    NotInitialized(String),
    /// A key or certificate problem.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// Something else is wrong with a file.
    #[error("{0}: {1}")]
    Invalid(String, String),
    /// The admin identity file already exists.
    #[error("{0} already exists; choose another --out or remove it first")]
    Exists(String),
}

/// Core's data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The directory at `root` (nothing is created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// CA certificate.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.root.join("ca.crt")
    }
    /// CA private key.
    pub fn ca_key_path(&self) -> PathBuf {
        self.root.join("ca.key")
    }
    /// The enrollment secret.
    pub fn enrollment_secret_path(&self) -> PathBuf {
        self.root.join("enrollment.secret")
    }
    /// Core's server certificate.
    pub fn server_cert_path(&self) -> PathBuf {
        self.root.join("server.crt")
    }
    /// Core's server key.
    pub fn server_key_path(&self) -> PathBuf {
        self.root.join("server.key")
    }
    /// The first admin's identity.
    pub fn admin_identity_path(&self) -> PathBuf {
        self.root.join("admin.identity")
    }
    /// The advertised address.
    pub fn address_path(&self) -> PathBuf {
        self.root.join("core.addr")
    }
    /// The QUIC stateless-reset key.
    pub fn reset_key_path(&self) -> PathBuf {
        self.root.join("quic-reset.key")
    }
    /// The database.
    pub fn database_path(&self) -> PathBuf {
        self.root.join("tether.redb")
    }

    /// Whether `serve` has initialised this directory.
    pub fn is_initialized(&self) -> bool {
        self.ca_cert_path().exists() && self.ca_key_path().exists()
    }

    /// Loads the directory, creating what is missing: on first start the CA, the enrollment secret
    /// and the admin identity. Records `advertised` as the address for join tokens. Returns the CA
    /// and whether this was the first start.
    pub fn open_or_init(&self, advertised: &str) -> Result<(CoreCa, bool), DataDirError> {
        files::create_private_dir(&self.root)?;
        let first_start = !self.is_initialized();
        let ca = if first_start {
            let name = advertised.split(':').next().unwrap_or("core");
            let ca = CoreCa::generate(name)?;
            files::write_private_file(&self.ca_key_path(), ca.key_pem().as_bytes())?;
            files::write_public_file(&self.ca_cert_path(), ca.cert_pem().as_bytes())?;
            ca
        } else {
            self.load_ca()?
        };
        if !self.enrollment_secret_path().exists() {
            self.rotate_enrollment_secret()?;
        }
        if !self.reset_key_path().exists() {
            let mut key = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut key);
            files::write_private_file(&self.reset_key_path(), &key)?;
        }
        files::write_public_file(&self.address_path(), format!("{advertised}\n").as_bytes())?;
        if !self.admin_identity_path().exists() {
            let issued = ca.issue_admin("admin", Role::Admin)?;
            AdminIdentity::new("admin", advertised, ca.cert_pem(), issued)?
                .save(&self.admin_identity_path())?;
        }
        Ok((ca, first_start))
    }

    /// Core's server certificate: the kept one while it is fit (issued by this CA, valid for 30 more
    /// days), else a new one, kept for next time.
    pub fn server_certificate(&self, ca: &CoreCa) -> Result<CertifiedKey, DataDirError> {
        const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
        let kept = std::fs::read_to_string(self.server_cert_path())
            .ok()
            .zip(files::read_private_text(&self.server_key_path()).ok())
            .map(|(cert_pem, key_pem)| IssuedPem { cert_pem, key_pem });
        if let Some(server) = kept.and_then(|issued| ca.reuse_server(&issued, RENEW_BEFORE)) {
            return Ok(server);
        }
        let issued = ca.issue_server_pem(&[])?;
        files::write_private_file(&self.server_key_path(), issued.key_pem.as_bytes())?;
        files::write_public_file(&self.server_cert_path(), issued.cert_pem.as_bytes())?;
        ca.reuse_server(&issued, Duration::ZERO).ok_or_else(|| {
            DataDirError::Invalid(
                self.server_cert_path().display().to_string(),
                "just issued, yet unusable".into(),
            )
        })
    }

    /// Loads the CA.
    pub fn load_ca(&self) -> Result<CoreCa, DataDirError> {
        if !self.is_initialized() {
            return Err(DataDirError::NotInitialized(
                self.root.display().to_string(),
            ));
        }
        let cert = std::fs::read_to_string(self.ca_cert_path()).map_err(|e| {
            DataDirError::Invalid(self.ca_cert_path().display().to_string(), e.to_string())
        })?;
        let key = files::read_private_text(&self.ca_key_path())?;
        Ok(CoreCa::from_pem(&cert, &key)?)
    }

    /// The QUIC stateless-reset key.
    pub fn reset_key(&self) -> Result<[u8; 32], DataDirError> {
        let path = self.reset_key_path();
        files::read_private_file(&path)?
            .try_into()
            .map_err(|_| DataDirError::Invalid(path.display().to_string(), "not 32 bytes".into()))
    }

    /// The current enrollment secret.
    pub fn enrollment_secret(&self) -> Result<JoinSecret, DataDirError> {
        let path = self.enrollment_secret_path();
        let text = files::read_private_text(&path)?;
        let bytes = hex::decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                DataDirError::Invalid(path.display().to_string(), "not 32 bytes of hex".into())
            })?;
        Ok(JoinSecret::from(bytes))
    }

    /// Replaces the enrollment secret. Tokens printed before stop working for new enrollments;
    /// enrolled nodes are not affected.
    pub fn rotate_enrollment_secret(&self) -> Result<(), DataDirError> {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        files::write_private_file(
            &self.enrollment_secret_path(),
            format!("{}\n", hex::encode(secret)).as_bytes(),
        )?;
        Ok(())
    }

    /// The advertised address recorded by the last `serve`.
    pub fn advertised_addr(&self) -> Result<String, DataDirError> {
        let path = self.address_path();
        let text = std::fs::read_to_string(&path)
            .map_err(|_| DataDirError::NotInitialized(self.root.display().to_string()))?;
        Ok(text.trim().to_string())
    }

    /// The join token nodes need.
    pub fn join_token(&self) -> Result<JoinToken, DataDirError> {
        let ca = self.load_ca()?;
        Ok(JoinToken {
            core_addr: self.advertised_addr()?,
            ca_fingerprint: ca.fingerprint(),
            secret: self.enrollment_secret()?,
        })
    }

    /// Issues another user identity and writes it to `out` (refusing to overwrite).
    pub fn issue_admin(
        &self,
        name: &str,
        role: Role,
        out: &Path,
    ) -> Result<AdminIdentity, DataDirError> {
        if out.exists() {
            return Err(DataDirError::Exists(out.display().to_string()));
        }
        let ca = self.load_ca()?;
        let issued = ca.issue_admin(name, role)?;
        let identity = AdminIdentity::new(name, &self.advertised_addr()?, ca.cert_pem(), issued)?;
        identity.save(out)?;
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn first_start_creates_private_files_and_later_starts_keep_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("data"));
        assert!(matches!(
            dir.join_token(),
            Err(DataDirError::NotInitialized(_))
        ));

        let (ca, first) = dir.open_or_init("127.0.0.1:4433").unwrap();
        assert!(first);
        assert_eq!(mode(dir.root()), 0o700);
        for secret in [
            dir.ca_key_path(),
            dir.enrollment_secret_path(),
            dir.admin_identity_path(),
            dir.reset_key_path(),
        ] {
            assert_eq!(mode(&secret), 0o600, "{}", secret.display());
        }
        let token = dir.join_token().unwrap();
        assert_eq!(token.ca_fingerprint, ca.fingerprint());
        assert_eq!(token.core_addr, "127.0.0.1:4433");

        let (again, first) = dir.open_or_init("core.example:4433").unwrap();
        assert!(!first);
        assert_eq!(again.fingerprint(), ca.fingerprint(), "CA kept");
        let reset_key = dir.reset_key().unwrap();
        let server = dir.server_certificate(&again).unwrap();
        assert_eq!(mode(&dir.server_key_path()), 0o600);
        assert_eq!(
            dir.server_certificate(&again).unwrap().chain,
            server.chain,
            "kept, not reissued"
        );
        std::fs::write(
            dir.server_cert_path(),
            CoreCa::generate("x")
                .unwrap()
                .issue_server_pem(&[])
                .unwrap()
                .cert_pem,
        )
        .unwrap();
        assert_ne!(
            dir.server_certificate(&again).unwrap().chain,
            server.chain,
            "a foreign one is replaced"
        );
        assert_eq!(
            dir.join_token().unwrap().secret,
            token.secret,
            "secret kept"
        );
        assert_eq!(dir.join_token().unwrap().core_addr, "core.example:4433");
        dir.open_or_init("core.example:4433").unwrap();
        assert_eq!(
            dir.reset_key().unwrap(),
            reset_key,
            "reset key kept across starts"
        );

        dir.rotate_enrollment_secret().unwrap();
        assert_ne!(dir.join_token().unwrap().secret, token.secret);

        let out = tmp.path().join("bob.identity");
        let bob = dir.issue_admin("bob", Role::Admin, &out).unwrap();
        assert_eq!(bob.name, "bob");
        assert_eq!(mode(&out), 0o600);
        assert!(matches!(
            dir.issue_admin("bob", Role::Admin, &out),
            Err(DataDirError::Exists(_))
        ));
        assert!(
            dir.issue_admin("no spaces", Role::Admin, &tmp.path().join("x"))
                .is_err()
        );
    }
}

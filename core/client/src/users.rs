//! Users' certificates from the client's side: the key pair is made here and only its public
//! half goes to core, which signs a certificate for it; the identity file is assembled here.

use std::time::Duration;

use tether_certs::ca::{IssuedPem, UserKey};
use tether_certs::identity::AdminIdentity;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::bytes::ByteBuf;
use tether_wire::users::CertView;

use crate::{AdminClient, ClientError};

/// A new random password for a user: 144 random bits as 24 URL-safe characters (well past
/// the 12-character minimum), for whoever creates a user without choosing one.
pub fn generate_password() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 18];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl AdminClient {
    /// Issues a certificate for user `name`, valid for `lifetime`, for a key pair made here, and
    /// returns the identity file's contents (core's address and CA taken from `base`, the
    /// identity this client connected with) with what core recorded. The private key never
    /// leaves this process.
    pub async fn issue_identity(
        &self,
        base: &AdminIdentity,
        name: &str,
        lifetime: Duration,
    ) -> Result<(AdminIdentity, CertView), ClientError> {
        let key = UserKey::generate().map_err(|e| ClientError::Setup(e.to_string()))?;
        let answers = self
            .request(&AdminRequest::UserCert {
                name: name.to_string(),
                public_key: ByteBuf(key.public_key_der()),
                lifetime_secs: lifetime.as_secs(),
            })
            .await?;
        let Some(AdminResponse::CertIssued { cert_pem, cert }) = answers.into_iter().next() else {
            return Err(ClientError::Transport(
                "core sent an unexpected answer to UserCert".into(),
            ));
        };
        let identity = AdminIdentity::new(
            name,
            &base.core,
            &base.ca_cert,
            IssuedPem {
                cert_pem,
                key_pem: key.private_key_pem(),
            },
        )
        .map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok((identity, cert))
    }
}

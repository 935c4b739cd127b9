//! Checking an enrollment request before anything is stored (seed 000's server side): join
//! token, timestamp window, public key, signature. The nonce and the one-application-per-node rule
//! are enforced atomically by the store.

use tether_certs::node_key::NodePublicKey;
use tether_certs::proof::secrets_equal;
use tether_wire::ErrorCode;
use tether_wire::control::{EnrollRequest, JoinSecret};

/// A refusal: the code for the node, and a sentence for its operator.
pub(crate) type Refusal = (ErrorCode, String);

/// Describes a clock difference for humans: "300 s ahead of", "45 s behind".
pub(crate) fn describe_skew(skew_secs: i64) -> String {
    if skew_secs >= 0 {
        format!("{skew_secs} s ahead of")
    } else {
        format!("{} s behind", -skew_secs)
    }
}

/// Everything that can be checked without the store, in the order that costs least first.
pub(crate) fn check_request(
    request: &EnrollRequest,
    current_secret: &JoinSecret,
    now_secs: i64,
    max_skew_secs: i64,
) -> Result<NodePublicKey, Refusal> {
    request.check_shape()?;
    if !secrets_equal(request.join_secret.as_bytes(), current_secret.as_bytes()) {
        return Err((
            ErrorCode::WRONG_JOIN_TOKEN,
            "the join token's enrollment secret is not core's current one (was it rotated?); \
             print the current token with `tether-core key show`"
                .into(),
        ));
    }
    let skew = request.timestamp.saturating_sub(now_secs);
    if skew.abs() > max_skew_secs {
        return Err((
            ErrorCode::CLOCK_SKEW,
            format!(
                "the enrollment timestamp is {} core's clock (±{max_skew_secs} s allowed); fix this machine's clock (NTP)",
                describe_skew(skew)
            ),
        ));
    }
    let key = NodePublicKey::from_pem(&request.public_key_pem)
        .map_err(|e| (ErrorCode::BAD_PUBLIC_KEY, e.to_string()))?;
    if !key.verify(&request.signed_bytes(), &request.signature.0) {
        return Err((
            ErrorCode::BAD_SIGNATURE,
            "the enrollment signature does not verify with the public key sent".into(),
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;
    use tether_certs::node_key::NodeKey;
    use tether_wire::NodeId;
    use tether_wire::bytes::{ByteBuf, FixedBytes};

    fn key() -> &'static NodeKey {
        static KEY: OnceLock<NodeKey> = OnceLock::new();
        KEY.get_or_init(|| NodeKey::generate().unwrap())
    }

    fn signed(timestamp: i64, secret: [u8; 32]) -> EnrollRequest {
        let mut request = EnrollRequest {
            nonce: FixedBytes([1; 64]),
            timestamp,
            node_id: NodeId::random(),
            public_key_pem: key().public().to_pem(),
            hostname: "h".into(),
            join_secret: FixedBytes(secret),
            agent_version: "1".into(),
            signature: ByteBuf::default(),
        };
        request.signature = ByteBuf(key().sign(&request.signed_bytes()));
        request
    }

    #[test]
    fn each_failure_has_its_own_code() {
        let secret = FixedBytes([5; 32]);
        let now = 1_000_000;
        assert!(check_request(&signed(now, [5; 32]), &secret, now, 120).is_ok());
        assert!(check_request(&signed(now - 120, [5; 32]), &secret, now, 120).is_ok());

        let code = |r: EnrollRequest| check_request(&r, &secret, now, 120).unwrap_err().0;
        assert_eq!(code(signed(now, [6; 32])), ErrorCode::WRONG_JOIN_TOKEN);
        assert_eq!(code(signed(now + 121, [5; 32])), ErrorCode::CLOCK_SKEW);
        assert_eq!(code(signed(now - 500, [5; 32])), ErrorCode::CLOCK_SKEW);

        let mut tampered = signed(now, [5; 32]);
        tampered.hostname = "other".into();
        assert_eq!(code(tampered), ErrorCode::BAD_SIGNATURE);

        let mut bad_key = signed(now, [5; 32]);
        bad_key.public_key_pem =
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into();
        assert_eq!(code(bad_key), ErrorCode::BAD_PUBLIC_KEY);

        let mut no_name = signed(now, [5; 32]);
        no_name.hostname = String::new();
        assert_eq!(code(no_name), ErrorCode::INVALID_REQUEST);
    }

    #[test]
    fn skew_is_described_for_humans() {
        let secret = FixedBytes([5; 32]);
        let (_, message) = check_request(&signed(1300, [5; 32]), &secret, 1000, 120).unwrap_err();
        assert!(message.contains("300 s ahead of core's clock"), "{message}");
        assert_eq!(describe_skew(-45), "45 s behind");
    }
}

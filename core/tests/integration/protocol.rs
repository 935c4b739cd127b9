//! Bad input on the wire: each gets its own error code, closes what it must and nothing more.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::crypto::rustls::QuicClientConfig;
use support::*;
use tether_wire::control::{CoreMessage, NodeMessage};
use tether_wire::facts::StaticFacts;
use tether_wire::{ErrorCode, NodeId, TLS_SERVER_NAME};

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_that_never_says_hello_is_closed() {
    let core = TestCore::start(|c| c.hello_timeout = Duration::from_millis(500)).await;
    let (connection, _endpoint) = RawNode::dial(core.addr, core.token().ca_fingerprint)
        .await
        .unwrap();
    let started = Instant::now();
    let error = tokio::time::timeout(PATIENCE, connection.closed())
        .await
        .unwrap();
    let quinn::ConnectionError::ApplicationClosed(close) = error else {
        panic!("{error}")
    };
    assert_eq!(
        ErrorCode::from_close_code(close.error_code.into_inner()),
        ErrorCode::HELLO_TIMEOUT
    );
    assert!(started.elapsed() < PATIENCE);

    // Opening the stream but sending only half a frame is no better.
    let mut raw = RawNode::connect(core.addr, core.token().ca_fingerprint).await;
    raw.send.stream_mut().write_all(&[0, 0, 1]).await.unwrap();
    assert_eq!(raw.closed().await.0, ErrorCode::HELLO_TIMEOUT);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_frames_close_with_protocol_codes() {
    let core = TestCore::start(|_| {}).await;
    let fingerprint = core.token().ca_fingerprint;

    let mut garbage = RawNode::connect(core.addr, fingerprint).await;
    garbage
        .send
        .stream_mut()
        .write_all(&[0, 0, 0, 3, 0xff, 0xfe, 0xfd])
        .await
        .unwrap();
    let (code, reason) = garbage.closed().await;
    assert_eq!(code, ErrorCode::MALFORMED, "{reason}");

    let mut oversized = RawNode::connect(core.addr, fingerprint).await;
    oversized
        .send
        .stream_mut()
        .write_all(&(64u32 * 1024 * 1024).to_be_bytes())
        .await
        .unwrap();
    let (code, reason) = oversized.closed().await;
    assert_eq!(code, ErrorCode::FRAME_TOO_LARGE, "{reason}");
    assert!(reason.contains("exceeds the limit"), "{reason}");

    let mut empty = RawNode::connect(core.addr, fingerprint).await;
    empty
        .send
        .stream_mut()
        .write_all(&[0, 0, 0, 0])
        .await
        .unwrap();
    assert_eq!(empty.closed().await.0, ErrorCode::MALFORMED);

    // A valid message in the wrong place.
    let mut early = RawNode::connect(core.addr, fingerprint).await;
    early
        .send(&NodeMessage::StaticFacts(StaticFacts::default()))
        .await;
    assert!(matches!(
        early.recv().await,
        Some(CoreMessage::Refused {
            code: ErrorCode::UNEXPECTED_MESSAGE,
            ..
        })
    ));

    // Core is unharmed.
    let mut fine = RawNode::connect(core.addr, fingerprint).await;
    fine.enroll(&core.token(), NodeId::random()).await;
    assert!(matches!(
        fine.recv().await,
        Some(CoreMessage::EnrollPending { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_that_breaks_the_protocol_is_closed_and_goes_offline() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let (id, mut raw) = enrolled_node(&core).await;
    // Enrolling again inside an authenticated session is not allowed.
    raw.enroll(&core.token(), id).await;
    assert_eq!(raw.closed().await.0, ErrorCode::UNEXPECTED_MESSAGE);
    wait_status(&admin, id, tether_wire::admin::NodeStatus::Offline).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn proofs_are_bound_to_their_connection() {
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let token = core.token();
    let id = NodeId::random();
    let secret = enroll_raw(core.addr, &token, id).await;

    // A proof made on one connection and replayed on another fails.
    let first = RawNode::connect(core.addr, token.ca_fingerprint).await;
    let captured = first.auth(id, &secret, now_secs());
    let mut second = RawNode::connect(core.addr, token.ca_fingerprint).await;
    second.send(&captured).await;
    let (code, message) = second.refusal().await;
    assert_eq!(code, ErrorCode::BAD_PROOF);
    assert!(message.contains("proof"), "{message}");

    // A wrong secret fails the same way; an unknown node has its own code.
    let mut wrong = RawNode::connect(core.addr, token.ca_fingerprint).await;
    let auth = wrong.auth(id, &[0u8; 32], now_secs());
    wrong.send(&auth).await;
    assert!(matches!(
        wrong.recv().await,
        Some(CoreMessage::Refused {
            code: ErrorCode::BAD_PROOF,
            ..
        })
    ));
    let mut stranger = RawNode::connect(core.addr, token.ca_fingerprint).await;
    let auth = stranger.auth(NodeId::random(), &secret, now_secs());
    stranger.send(&auth).await;
    assert!(matches!(
        stranger.recv().await,
        Some(CoreMessage::Refused {
            code: ErrorCode::UNKNOWN_NODE,
            ..
        })
    ));

    // A skewed timestamp with a valid proof: CLOCK_SKEW, not BAD_PROOF.
    let mut skewed = RawNode::connect(core.addr, token.ca_fingerprint).await;
    let auth = skewed.auth(id, &secret, now_secs() - 600);
    skewed.send(&auth).await;
    let (code, message) = skewed.refusal().await;
    assert_eq!(code, ErrorCode::CLOCK_SKEW);
    assert!(
        message.contains("600 s behind") || message.contains("599 s behind"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_protocol_requires_an_admin_certificate() {
    let core = TestCore::start(|_| {}).await;
    // Speak the admin ALPN without a client certificate.
    let (tls, _) = tether_certs::tls::node_client_config(core.token().ca_fingerprint).unwrap();
    let mut tls = tls;
    tls.alpn_protocols = vec![tether_wire::ADMIN_ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(Arc::new(tls)).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let connection = endpoint
        .connect(core.addr, TLS_SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let error = tokio::time::timeout(PATIENCE, connection.closed())
        .await
        .unwrap();
    let quinn::ConnectionError::ApplicationClosed(close) = error else {
        panic!("{error}")
    };
    assert_eq!(
        ErrorCode::from_close_code(close.error_code.into_inner()),
        ErrorCode::FORBIDDEN
    );

    // An admin certificate from another core's CA does not even complete the handshake.
    let other = TestCore::start(|_| {}).await;
    let mut foreign = other.identity();
    foreign.ca_cert = core.identity().ca_cert;
    foreign.ca_fingerprint = core.identity().ca_fingerprint;
    // (TLS 1.3: the client finishes its side first; the server's refusal arrives right after.)
    let result =
        match tether_client::AdminClient::connect(&foreign, Some(&core.addr.to_string())).await {
            Ok(client) => client
                .request(&tether_wire::admin::AdminRequest::Ping)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
    let error = result
        .expect_err("a certificate from another CA is refused")
        .to_string();
    assert!(error.contains("certificate"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_requests_with_bad_arguments_get_clear_errors() {
    use tether_client::ClientError;
    use tether_wire::admin::AdminRequest;
    let core = TestCore::start(|c| c.auto_approve = true).await;
    let admin = core.admin().await;
    let a: NodeId = "abcd0000-0000-4000-8000-000000000001".parse().unwrap();
    let b: NodeId = "abcd0000-0000-4000-8000-000000000002".parse().unwrap();
    enroll_raw(core.addr, &core.token(), a).await;
    enroll_raw(core.addr, &core.token(), b).await;

    let code = |r: Result<_, ClientError>| match r {
        Err(ClientError::Core { code, message }) => (code, message),
        other => panic!("expected an error, got {other:?}"),
    };
    let (c, m) = code(
        admin
            .request(AdminRequest::ShowNode { id: "abcd".into() })
            .await,
    );
    assert_eq!(c, ErrorCode::AMBIGUOUS);
    assert!(
        m.contains(&a.to_string()) && m.contains(&b.to_string()),
        "{m}"
    );
    let (c, _) = code(
        admin
            .request(AdminRequest::ShowNode { id: "ffff".into() })
            .await,
    );
    assert_eq!(c, ErrorCode::NOT_FOUND);
    // Not an id: it may be a hostname, so it is not found rather than malformed.
    let (c, m) = code(
        admin
            .request(AdminRequest::ShowNode {
                id: "not-hex!".into(),
            })
            .await,
    );
    assert_eq!(c, ErrorCode::NOT_FOUND);
    assert!(m.contains("hostname"), "{m}");
    let (c, _) = code(
        admin
            .request(AdminRequest::ShowNode { id: String::new() })
            .await,
    );
    assert_eq!(c, ErrorCode::INVALID_ARGUMENT);
    let (c, _) = code(
        admin
            .request(AdminRequest::LabelNode {
                id: a.to_string(),
                set: vec![("bad key".into(), "v".into())],
                remove: vec![],
            })
            .await,
    );
    assert_eq!(c, ErrorCode::INVALID_ARGUMENT);
    let too_many: Vec<_> = (0..65)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    let (c, m) = code(
        admin
            .request(AdminRequest::LabelNode {
                id: a.to_string(),
                set: too_many,
                remove: vec![],
            })
            .await,
    );
    assert_eq!(c, ErrorCode::INVALID_ARGUMENT);
    assert!(m.contains("64"), "{m}");
    assert!(
        admin.node(a).await.unwrap().labels.is_empty(),
        "a refused change changes nothing"
    );
    let (c, _) = code(
        admin
            .request(AdminRequest::RejectApplication {
                id: "0".into(),
                reason: "x".repeat(2000),
            })
            .await,
    );
    assert_eq!(c, ErrorCode::INVALID_ARGUMENT);
}

#[tokio::test(flavor = "multi_thread")]
async fn handshakes_beyond_the_limit_wait_for_a_retry_and_none_is_lost() {
    // Three times the limit at once: a third is answered, the rest retransmit (after about a
    // second, then two) and are answered then.
    const DIALS: usize = 12;
    let core = TestCore::start(|c| {
        c.max_handshakes = 4;
        c.hello_timeout = Duration::from_secs(30);
    })
    .await;
    let ca = core.token().ca_fingerprint;
    let mut dials = tokio::task::JoinSet::new();
    for _ in 0..DIALS {
        dials.spawn(RawNode::dial(core.addr, ca));
    }
    let connections = dials.join_all().await;
    assert!(
        connections.iter().all(Result::is_ok),
        "every connection is made in the end"
    );
    let status = match core
        .admin()
        .await
        .request(tether_wire::admin::AdminRequest::Status)
        .await
        .unwrap()
        .pop()
    {
        Some(tether_wire::admin::AdminResponse::Status(status)) => status,
        other => panic!("{other:?}"),
    };
    assert!(
        status.handshakes_deferred > 0,
        "{DIALS} at once with room for four: some first packets were left for later"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_handshakes_give_their_slot_back() {
    // Room for two handshakes, and a hello timeout longer than the test, so that a slot kept by
    // a failed handshake would stay taken throughout.
    let core = TestCore::start(|c| {
        c.max_handshakes = 2;
        c.hello_timeout = Duration::from_secs(300);
    })
    .await;
    let right = core.token().ca_fingerprint;
    let wrong = tether_certs::ca::CoreCa::generate("stranger")
        .unwrap()
        .fingerprint();
    for attempt in 0..6 {
        let refused = tokio::time::timeout(PATIENCE, RawNode::dial(core.addr, wrong))
            .await
            .unwrap_or_else(|_| {
                panic!("attempt {attempt} was never answered: earlier failures kept their slots")
            });
        assert!(
            refused.is_err(),
            "attempt {attempt}: a node pinning another CA does not connect"
        );
    }
    // Had the six failed handshakes kept their slots, this first packet would be left unanswered
    // every time it was sent.
    tokio::time::timeout(PATIENCE, RawNode::dial(core.addr, right))
        .await
        .expect("a good node is answered while the failed ones are gone")
        .expect("and connects");
}

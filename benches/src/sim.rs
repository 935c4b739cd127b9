//! Simulated nodes: real QUIC connections speaking the node protocol (enroll, authenticate,
//! heartbeat), without the agent's collectors.

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, Endpoint};
use tether_certs::node_key::NodeKey;
use tether_wire::bytes::{ByteBuf, FixedBytes};
use tether_wire::control::{
    AuthRequest, CoreMessage, EnrollRequest, NodeMessage, SessionParams, auth_proof_input,
};
use tether_wire::heartbeat::{DiskUsage, Heartbeat, Metrics, encode_heartbeat};
use tether_wire::limits::MAX_CONTROL_FRAME_LEN;
use tether_wire::stream::{FramedRecv, FramedSend};
use tether_wire::token::JoinToken;
use tether_wire::{AUTH_EXPORTER_LABEL, NodeId, TLS_SERVER_NAME};

/// What went wrong for a simulated node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// QUIC or TLS failed.
    #[error("connection: {0}")]
    Connection(String),
    /// Core answered something else than expected.
    #[error("core answered {0}")]
    Unexpected(String),
}

fn conn_err(e: impl std::fmt::Display) -> SimError {
    SimError::Connection(e.to_string())
}

/// A client endpoint configured to trust core's CA by fingerprint, like a real node.
pub fn client_endpoint(token: &JoinToken) -> Result<Endpoint, SimError> {
    let (tls, _) = tether_certs::tls::node_client_config(token.ca_fingerprint).map_err(conn_err)?;
    let quic = QuicClientConfig::try_from(Arc::new(tls)).map_err(conn_err)?;
    let mut endpoint = Endpoint::client("0.0.0.0:0".parse().expect("valid")).map_err(conn_err)?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    Ok(endpoint)
}

async fn control(
    endpoint: &Endpoint,
    addr: SocketAddr,
) -> Result<(Connection, FramedSend, FramedRecv), SimError> {
    let connection = endpoint
        .connect(addr, TLS_SERVER_NAME)
        .map_err(conn_err)?
        .await
        .map_err(conn_err)?;
    let (send, recv) = connection.open_bi().await.map_err(conn_err)?;
    Ok((
        connection,
        FramedSend::new(send, MAX_CONTROL_FRAME_LEN),
        FramedRecv::new(recv, MAX_CONTROL_FRAME_LEN),
    ))
}

async fn answer(recv: &mut FramedRecv) -> Result<CoreMessage, SimError> {
    recv.next::<CoreMessage>()
        .await
        .map_err(conn_err)?
        .ok_or_else(|| SimError::Unexpected("nothing (stream closed)".into()))
}

/// Enrolls `id` with `key` and returns its agent secret. Core must auto-approve.
pub async fn enroll(
    endpoint: &Endpoint,
    addr: SocketAddr,
    token: &JoinToken,
    key: &NodeKey,
    id: NodeId,
    now_secs: i64,
) -> Result<[u8; 32], SimError> {
    let (connection, mut send, mut recv) = control(endpoint, addr).await?;
    let mut nonce = [0u8; 64];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
    let mut request = EnrollRequest {
        nonce: FixedBytes(nonce),
        timestamp: now_secs,
        node_id: id,
        public_key_pem: key.public().to_pem(),
        hostname: format!("sim-{}", &id.to_string()[..8]),
        join_secret: token.secret,
        agent_version: "sim".into(),
        signature: ByteBuf::default(),
    };
    request.signature = ByteBuf(key.sign(&request.signed_bytes()));
    send.send(&NodeMessage::Enroll(request))
        .await
        .map_err(conn_err)?;
    let result = match answer(&mut recv).await? {
        CoreMessage::EnrollApproved {
            encrypted_secret, ..
        } => key
            .decrypt(&encrypted_secret.0)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| SimError::Unexpected("an undecryptable secret".into())),
        other => Err(SimError::Unexpected(format!("{other:?}"))),
    };
    connection.close(0u32.into(), b"");
    result
}

/// An authenticated simulated node.
#[derive(Debug)]
pub struct SimNode {
    /// Its id.
    pub id: NodeId,
    /// Its one connection.
    pub connection: Connection,
    /// What core said on authentication.
    pub params: SessionParams,
    seq: u32,
    _control: (FramedSend, FramedRecv),
}

impl SimNode {
    /// Connects and authenticates with the agent secret.
    pub async fn connect(
        endpoint: &Endpoint,
        addr: SocketAddr,
        id: NodeId,
        secret: &[u8; 32],
        now_secs: i64,
    ) -> Result<SimNode, SimError> {
        let (connection, mut send, mut recv) = control(endpoint, addr).await?;
        let mut exporter = [0u8; 32];
        connection
            .export_keying_material(&mut exporter, AUTH_EXPORTER_LABEL, b"")
            .map_err(|_| SimError::Connection("no exporter".into()))?;
        let proof =
            tether_certs::proof::compute(secret, &auth_proof_input(id, now_secs, &exporter));
        let auth = AuthRequest {
            node_id: id,
            timestamp: now_secs,
            proof: FixedBytes(proof),
            agent_version: "sim".into(),
        };
        send.send(&NodeMessage::Auth(auth))
            .await
            .map_err(conn_err)?;
        match answer(&mut recv).await? {
            CoreMessage::AuthOk(params) => Ok(SimNode {
                id,
                connection,
                params,
                seq: 0,
                _control: (send, recv),
            }),
            other => Err(SimError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Sends one heartbeat datagram.
    pub fn heartbeat(&mut self, timestamp_ms: i64) -> Result<(), SimError> {
        self.seq = self.seq.wrapping_add(1);
        let (bytes, _) = encode_heartbeat(Heartbeat {
            seq: self.seq,
            timestamp_ms,
            metrics: sample_metrics(),
        });
        self.connection
            .send_datagram(bytes.into())
            .map_err(conn_err)
    }
}

/// Metrics shaped like a typical server's: four disks, plausible values.
pub fn sample_metrics() -> Metrics {
    Metrics {
        cpu_percent: 12.5,
        memory_used: 6 << 30,
        memory_total: 16 << 30,
        swap_used: 0,
        swap_total: 2 << 30,
        disks: ["/", "/boot", "/var", "/srv/data"]
            .iter()
            .enumerate()
            .map(|(i, mount)| DiskUsage {
                mount: (*mount).to_string(),
                used_bytes: (40 + i as u64) << 30,
                total_bytes: 500 << 30,
            })
            .collect(),
        net_rx_bytes_per_sec: 1_250_000,
        net_tx_bytes_per_sec: 310_000,
        net_rx_total: 1 << 40,
        net_tx_total: 1 << 38,
        load1: 0.52,
        load5: 0.61,
        load15: 0.58,
        temperature_c: Some(48.0),
        processes: 312,
        tcp_connections: 87,
        udp_connections: 9,
        uptime_secs: 3_456_789,
        tty_sessions: 0,
    }
}

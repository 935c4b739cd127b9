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
use tether_wire::exec::{ExecFrame, ExecOutcome, ExecRequest};
use tether_wire::heartbeat::{DiskUsage, Heartbeat, Metrics, encode_heartbeat};
use tether_wire::limits::{MAX_CONTROL_FRAME_LEN, MAX_EXEC_FRAME_LEN};
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
    /// Core refused.
    #[error("core refused: {1} [{0}]")]
    Refused(tether_wire::ErrorCode, String),
}

fn conn_err(e: impl std::fmt::Display) -> SimError {
    SimError::Connection(e.to_string())
}

/// Like `conn_err`, with the causes (a lost stream says why the connection was lost).
fn conn_err_chain(e: impl std::error::Error) -> SimError {
    SimError::Connection(tether_wire::stream::with_causes(&e))
}

/// A client endpoint configured to trust core's CA by fingerprint, like a real node.
pub fn client_endpoint(token: &JoinToken) -> Result<Endpoint, SimError> {
    let (tls, _) = tether_certs::tls::node_client_config(token.ca_fingerprint).map_err(conn_err)?;
    let quic = QuicClientConfig::try_from(Arc::new(tls)).map_err(conn_err)?;
    // Thousands of connections share this socket: a large buffer, as core has.
    let (socket, _) = tether_core::udp::bind("0.0.0.0:0".parse().expect("valid"), 8 * 1024 * 1024)
        .map_err(conn_err)?;
    let mut endpoint = Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(conn_err)?;
    // The same transport settings as the real agent: keep-alive 15 s, idle timeout 60 s.
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(std::time::Duration::from_secs(15)));
    transport.max_idle_timeout(Some(quinn::VarInt::from_u32(60_000).into()));
    transport.stream_receive_window(quinn::VarInt::from_u32(256 * 1024));
    transport.receive_window(quinn::VarInt::from_u32(1024 * 1024));
    transport.send_window(1024 * 1024);
    transport.datagram_receive_buffer_size(Some(8 * 1024));
    transport.datagram_send_buffer_size(8 * 1024);
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(client);
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
        .map_err(conn_err_chain)?
        .ok_or_else(|| SimError::Unexpected("nothing (stream closed)".into()))
}

/// A signed enrollment request for `id`, with a fresh nonce.
pub fn enroll_request(
    token: &JoinToken,
    key: &NodeKey,
    id: NodeId,
    now_secs: i64,
) -> EnrollRequest {
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
    request
}

/// Sends `Enroll` and returns the agent secret from the approval. Core must auto-approve.
async fn enroll_on(
    send: &mut FramedSend,
    recv: &mut FramedRecv,
    token: &JoinToken,
    key: &NodeKey,
    id: NodeId,
    now_secs: i64,
) -> Result<[u8; 32], SimError> {
    let encrypted_secret = approval(send, recv, enroll_request(token, key, id, now_secs)).await?;
    key.decrypt(&encrypted_secret.0)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| SimError::Unexpected("an undecryptable secret".into()))
}

/// Sends `request` and waits for the approval; the encrypted agent secret it carries.
async fn approval(
    send: &mut FramedSend,
    recv: &mut FramedRecv,
    request: EnrollRequest,
) -> Result<ByteBuf, SimError> {
    send.send(&NodeMessage::Enroll(request))
        .await
        .map_err(conn_err)?;
    match answer(recv).await? {
        CoreMessage::EnrollApproved {
            encrypted_secret, ..
        } => Ok(encrypted_secret),
        CoreMessage::Refused { code, message } => Err(SimError::Refused(code, message)),
        other => Err(SimError::Unexpected(format!("{other:?}"))),
    }
}

/// Sends an already signed enrollment request on a connection of its own and waits for the
/// approval, without decrypting the secret or authenticating: core's whole share of an
/// enrollment, and as little as possible of the node's. Core must auto-approve.
pub async fn enroll_only(
    endpoint: &Endpoint,
    addr: SocketAddr,
    request: EnrollRequest,
) -> Result<(), SimError> {
    let (connection, mut send, mut recv) = control(endpoint, addr).await?;
    let result = approval(&mut send, &mut recv, request).await.map(drop);
    connection.close(0u32.into(), b"");
    result
}

/// Enrolls `id` with `key` on a connection of its own and returns its agent secret. Core must
/// auto-approve.
pub async fn enroll(
    endpoint: &Endpoint,
    addr: SocketAddr,
    token: &JoinToken,
    key: &NodeKey,
    id: NodeId,
    now_secs: i64,
) -> Result<[u8; 32], SimError> {
    let (connection, mut send, mut recv) = control(endpoint, addr).await?;
    let result = enroll_on(&mut send, &mut recv, token, key, id, now_secs).await;
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
    send: FramedSend,
    recv: FramedRecv,
}

impl SimNode {
    /// Enrolls and authenticates on one connection, as a real agent does on its first start.
    pub async fn join(
        endpoint: &Endpoint,
        addr: SocketAddr,
        token: &JoinToken,
        key: &NodeKey,
        id: NodeId,
        clock: fn() -> i64,
    ) -> Result<(SimNode, [u8; 32]), SimError> {
        let (connection, mut send, mut recv) = control(endpoint, addr).await?;
        let secret = enroll_on(&mut send, &mut recv, token, key, id, clock()).await?;
        let node =
            Self::authenticate(connection, send, recv, id, &secret, clock(), SIM_VERSION).await?;
        Ok((node, secret))
    }

    /// Connects and authenticates with the agent secret, stamped once the handshake is done (as
    /// the agent does: a handshake queued in a storm can take longer than core's clock window).
    pub async fn connect(
        endpoint: &Endpoint,
        addr: SocketAddr,
        id: NodeId,
        secret: &[u8; 32],
        clock: fn() -> i64,
    ) -> Result<SimNode, SimError> {
        Self::connect_as(endpoint, addr, id, secret, clock, SIM_VERSION).await
    }

    /// [`SimNode::connect`], reporting agent version `version` (after a simulated update).
    pub async fn connect_as(
        endpoint: &Endpoint,
        addr: SocketAddr,
        id: NodeId,
        secret: &[u8; 32],
        clock: fn() -> i64,
        version: &str,
    ) -> Result<SimNode, SimError> {
        let (connection, send, recv) = control(endpoint, addr).await?;
        Self::authenticate(connection, send, recv, id, secret, clock(), version).await
    }

    /// Sends a frame on the control stream.
    pub async fn send(&mut self, message: &NodeMessage) -> Result<(), SimError> {
        self.send.send(message).await.map_err(conn_err)
    }

    /// Finishes the control stream and waits (a little) until core has read it: what an agent
    /// does before it leaves to run its new version.
    pub async fn finish(&mut self) {
        self.send.finish();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            self.send.stream_mut().stopped(),
        )
        .await;
    }

    /// Connects without enrolling or authenticating, for a bare quinn server that only reads
    /// datagrams (`tether-bench-server --mode bare`).
    pub async fn connect_bare(
        endpoint: &Endpoint,
        addr: SocketAddr,
        id: NodeId,
        heartbeat_interval_ms: u32,
    ) -> Result<SimNode, SimError> {
        // The stream is opened but never written, so the bare server never sees it.
        let (connection, send, recv) = control(endpoint, addr).await?;
        Ok(SimNode {
            id,
            connection,
            params: SessionParams {
                node_id: id,
                heartbeat_interval_ms,
                core_time_ms: 0,
                max_clock_skew_secs: 0,
                static_facts_digest: None,
            },
            seq: 0,
            send,
            recv,
        })
    }

    async fn authenticate(
        connection: Connection,
        mut send: FramedSend,
        mut recv: FramedRecv,
        id: NodeId,
        secret: &[u8; 32],
        now_secs: i64,
        version: &str,
    ) -> Result<SimNode, SimError> {
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
            agent_version: version.into(),
            // Each simulated node is a machine of its own, the same one at every reconnect.
            machine: tether_wire::control::machine_fingerprint(id.as_bytes(), b"sim"),
            hostname: format!("sim-{}", &id.to_string()[..8]),
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
                send,
                recv,
            }),
            CoreMessage::Refused { code, message } => Err(SimError::Refused(code, message)),
            other => Err(SimError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The next frame core sends on the control stream; `None` when it finished the stream.
    pub async fn next_message(&mut self) -> Result<Option<CoreMessage>, SimError> {
        self.recv
            .next::<CoreMessage>()
            .await
            .map_err(conn_err_chain)
    }

    /// A per-node seed for [`metrics_at`].
    fn noise_seed(&self) -> u64 {
        self.id.0.as_u64_pair().0
    }

    /// Sends one heartbeat datagram.
    pub fn heartbeat(&mut self, timestamp_ms: i64) -> Result<(), SimError> {
        self.seq = self.seq.wrapping_add(1);
        let (bytes, _) = encode_heartbeat(Heartbeat {
            seq: self.seq,
            timestamp_ms,
            metrics: metrics_at(self.seq, self.noise_seed()),
        });
        self.connection
            .send_datagram(bytes.into())
            .map_err(conn_err)
    }
}

/// [`sample_metrics`] moved a little from heartbeat to heartbeat, differently per node (`seed`):
/// CPU, network rates, load and sockets wander as a busy server's do, so that what core stores
/// (the metrics history) sees data that does not compress to nothing. Cheap: a few
/// multiplications per heartbeat.
pub fn metrics_at(seq: u32, seed: u64) -> Metrics {
    let noise = |salt: u64| {
        // splitmix64 of (seed, seq, salt): uniform in [0, 1).
        let mut z = seed ^ (u64::from(seq) << 8) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let base = (seed % 40) as f64;
    let mut m = sample_metrics();
    m.cpu_percent = (5.0 + base + 20.0 * noise(1) * noise(2)) as f32;
    m.memory_used = (4u64 << 30) + ((seed % 4096) << 20) + ((noise(3) * 64.0) as u64) * (1 << 20);
    m.net_rx_bytes_per_sec = (50_000.0 * (1.0 + 20.0 * noise(4) * noise(5))) as u64;
    m.net_tx_bytes_per_sec = (20_000.0 * (1.0 + 10.0 * noise(6) * noise(7))) as u64;
    m.load1 = (m.cpu_percent / 50.0) + noise(8) as f32 * 0.3;
    m.load5 = m.load1 * 0.9;
    m.load15 = m.load1 * 0.8;
    m.processes = 250 + (noise(9) * 20.0) as u32;
    m.tcp_connections = 60 + (noise(10) * 60.0) as u32;
    m
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

/// Answers an execution as a node would, without running anything: `true` exits 0, `false`
/// exits 1, `echo ARGS` prints them; anything else exits 127 with a note on stderr.
pub async fn answer_exec(
    connection: &Connection,
    request: &ExecRequest,
    now_ms: i64,
) -> Result<(), SimError> {
    let stream = connection.open_uni().await.map_err(conn_err)?;
    let mut out = FramedSend::new(stream, MAX_EXEC_FRAME_LEN);
    out.send(&ExecFrame::Open {
        exec_id: request.exec_id,
    })
    .await
    .map_err(conn_err)?;
    let program = request.command.first().map_or("", String::as_str);
    let (code, stdout, stderr) = match program {
        "true" => (0, String::new(), String::new()),
        "false" => (1, String::new(), String::new()),
        "echo" => (
            0,
            format!("{}\n", request.command[1..].join(" ")),
            String::new(),
        ),
        other => (
            127,
            String::new(),
            format!("tether-loadgen: {other}: only true, false and echo are simulated\n"),
        ),
    };
    if !stdout.is_empty() {
        out.send(&ExecFrame::Stdout(ByteBuf(stdout.into_bytes())))
            .await
            .map_err(conn_err)?;
    }
    if !stderr.is_empty() {
        out.send(&ExecFrame::Stderr(ByteBuf(stderr.into_bytes())))
            .await
            .map_err(conn_err)?;
    }
    let outcome = ExecOutcome {
        exit_code: Some(code),
        started_at_ms: now_ms,
        finished_at_ms: now_ms,
        ..Default::default()
    };
    out.send(&ExecFrame::Finished(outcome))
        .await
        .map_err(conn_err)?;
    out.finish();
    let _ = out.stream_mut().stopped().await;
    Ok(())
}

/// The version simulated agents report until a deploy gives them another.
pub const SIM_VERSION: &str = "sim";

/// A simulated machine's static facts: what core needs to pick a release build (the
/// architecture) and little else.
pub fn sim_facts(id: NodeId, version: &str) -> tether_wire::facts::StaticFacts {
    tether_wire::facts::StaticFacts {
        hostname: format!("sim-{}", &id.to_string()[..8]),
        os_name: "Simulated Linux".into(),
        arch: "x86_64".into(),
        cpu_count: 1,
        memory_total: 1 << 30,
        agent_version: version.into(),
        ..Default::default()
    }
}

/// Fetches the release of `order` as an agent does (one stream, from the start) and throws
/// the bytes away; the bytes received.
pub async fn download(
    connection: &Connection,
    order: &tether_wire::deploys::UpdateOrder,
) -> Result<u64, SimError> {
    use tether_wire::deploys::{DownloadFrame, DownloadRequest, MAX_DOWNLOAD_FRAME_LEN};
    let (send, recv) = connection
        .open_bi()
        .await
        .map_err(|e| SimError::Connection(e.to_string()))?;
    let mut send = FramedSend::new(send, MAX_DOWNLOAD_FRAME_LEN);
    let mut recv = FramedRecv::new(recv, MAX_DOWNLOAD_FRAME_LEN);
    send.send(&DownloadRequest {
        deploy: order.deploy,
        sha256: order.manifest.sha256,
        offset: 0,
    })
    .await
    .map_err(conn_err)?;
    send.finish();
    let mut bytes = 0u64;
    loop {
        match recv.next::<DownloadFrame>().await.map_err(conn_err_chain)? {
            Some(DownloadFrame::Start { .. }) => {}
            Some(DownloadFrame::Data(data)) => bytes += data.0.len() as u64,
            Some(DownloadFrame::Refused { message }) => {
                return Err(SimError::Unexpected(format!("download refused: {message}")));
            }
            Some(_) => return Err(SimError::Unexpected("unexpected download frame".into())),
            None => return Ok(bytes),
        }
    }
}

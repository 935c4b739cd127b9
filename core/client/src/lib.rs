//! # tether-client
//!
//! The admin side of Tether: [`AdminClient`] speaks the admin API (ALPN `tether-admin/1`) to
//! core over QUIC with an admin identity, one request per stream; terminals ([`TtyConnection`])
//! and executions ([`ExecSession`]) get streams of their own. The `tether` CLI (`src/bin/tether`)
//! is a thin shell over it, and so will be the web bridge; core's tests drive core through it.
//!
//! It also reads what core hands admins as files: backup archives ([`archive`]: the manifest,
//! every entry, the zstd checksum) and terminal recordings ([`recording`]: asciicast, compressed
//! or not, cut short or not). Core writes both and reads them only through this crate (a restore
//! reads the archive here), so there is one reader of each.
//!
//! What it must never do: link the store or the server. It depends on `tether-wire` (every
//! message), `tether-certs` (identities, rustls configs), quinn/rustls/tokio and ordinary crates
//! only — never `tether-store`, `tether-core`, `tether-node` or redb — so that the CLI and the
//! bridge stay small and never carry the server's code or its database. Anything both sides need
//! belongs in `tether-wire` (or `tether-certs`), or here if only a reader needs it; check with
//! `cargo tree -p tether-client`.

pub mod archive;
pub mod recording;
mod users;

pub use users::generate_password;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{ClientConfig, Connection, Endpoint, EndpointConfig, TransportConfig, VarInt};
use tether_certs::identity::AdminIdentity;
use tether_wire::admin::{AdminRequest, AdminResponse, ExecSpec};
use tether_wire::bytes::ByteBuf;
use tether_wire::limits::{MAX_ADMIN_FRAME_LEN, MAX_TTY_FRAME_LEN, TTY_CHUNK};
use tether_wire::stream::{FramedRecv, FramedSend};
use tether_wire::tty::{TtyAuthorize, TtyExit, TtyGrant, TtyInput, TtyOutput, WindowSize};
use tether_wire::{ErrorCode, TLS_SERVER_NAME};
use tether_wire::{NodeId, TtySessionId};

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The address does not resolve.
    #[error("cannot resolve core address {0:?}: {1}")]
    Resolve(String, String),
    /// TLS or endpoint setup failed.
    #[error("setting up the connection: {0}")]
    Setup(String),
    /// Core could not be reached or refused the connection.
    #[error("cannot connect to core at {addr}: {reason}")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The request or its answer failed in transit.
    #[error("talking to core: {0}")]
    Transport(String),
    /// Core answered with an error.
    #[error("{message}")]
    Core {
        /// The code.
        code: ErrorCode,
        /// Core's sentence.
        message: String,
    },
}

/// A connection to core as an admin.
#[derive(Debug)]
pub struct AdminClient {
    endpoint: Endpoint,
    connection: Connection,
}

/// Resolves `HOST:PORT`, preferring what the system lists first.
pub async fn resolve(addr: &str) -> Result<SocketAddr, ClientError> {
    let with_port = with_default_port(addr);
    let addr = with_port.as_str();
    let mut addrs = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| ClientError::Resolve(addr.to_string(), e.to_string()))?;
    addrs
        .next()
        .ok_or_else(|| ClientError::Resolve(addr.to_string(), "no addresses".into()))
}

/// Core's UDP port unless told otherwise.
pub const DEFAULT_PORT: u16 = 4433;

/// `addr` with core's default port if it names none: `core.example` → `core.example:4433`,
/// `::1` → `[::1]:4433`; `host:5000` and `[::1]:5000` stay.
fn with_default_port(addr: &str) -> String {
    if let Ok(ip) = addr.parse::<std::net::IpAddr>() {
        return SocketAddr::new(ip, DEFAULT_PORT).to_string();
    }
    let has_port = addr
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    if has_port {
        addr.to_string()
    } else {
        format!("{addr}:{DEFAULT_PORT}")
    }
}

impl AdminClient {
    /// Connects to core (at `core_addr`, else the identity's address) with an admin identity.
    pub async fn connect(
        identity: &AdminIdentity,
        core_addr: Option<&str>,
    ) -> Result<Self, ClientError> {
        let addr_text = core_addr.unwrap_or(&identity.core);
        let addr = resolve(addr_text).await?;
        let tls = tether_certs::tls::admin_client_config(identity)
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        let quic = QuicClientConfig::try_from(Arc::new(tls))
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        let mut config = ClientConfig::new(Arc::new(quic));
        let mut transport = TransportConfig::default();
        transport.max_idle_timeout(Some(VarInt::from_u32(30_000).into()));
        transport.keep_alive_interval(Some(Duration::from_secs(10)));
        transport.mtu_discovery_config(Some(tether_wire::quic::mtu_discovery()));
        config.transport_config(Arc::new(transport));
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        }
        .parse()
        .expect("valid");
        // Accepts core's large packets (terminal output) where the path allows them.
        let mut endpoint_config = EndpointConfig::default();
        tether_wire::quic::accept_large_packets(&mut endpoint_config);
        let socket_error =
            |e: std::io::Error| ClientError::Setup(format!("cannot open a UDP socket: {e}"));
        let socket = std::net::UdpSocket::bind(bind).map_err(socket_error)?;
        let mut endpoint =
            Endpoint::new(endpoint_config, None, socket, Arc::new(quinn::TokioRuntime))
                .map_err(socket_error)?;
        endpoint.set_default_client_config(config);
        let connect_error = |reason: String| ClientError::Connect {
            addr: addr_text.to_string(),
            reason,
        };
        let connecting = endpoint
            .connect(addr, TLS_SERVER_NAME)
            .map_err(|e| connect_error(e.to_string()))?;
        let connection = tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .map_err(|_| {
                connect_error("no answer within 10 s (is core running and UDP reachable?)".into())
            })?
            .map_err(|e| connect_error(e.to_string()))?;
        Ok(Self {
            endpoint,
            connection,
        })
    }

    /// The largest UDP payload this connection sends now, as path MTU discovery found it (up
    /// to [`tether_wire::limits::MAX_UDP_PAYLOAD`]).
    pub fn path_mtu(&self) -> u16 {
        self.connection.stats().path.current_mtu
    }

    /// Sends one request and collects every response frame. An error answer becomes
    /// [`ClientError::Core`].
    pub async fn request(&self, request: &AdminRequest) -> Result<Vec<AdminResponse>, ClientError> {
        let mut answers = self.stream(request).await?;
        let mut responses = Vec::new();
        while let Some(response) = answers.next().await? {
            responses.push(response);
        }
        if responses.is_empty() {
            return Err(ClientError::Transport(
                "core closed the stream without answering".into(),
            ));
        }
        Ok(responses)
    }

    /// Sends one request; its answers are read one frame at a time from what is returned (for
    /// answers too large to hold at once: backups, recordings).
    pub async fn stream(&self, request: &AdminRequest) -> Result<Answers, ClientError> {
        let (mut send, recv) = self.send(request).await?;
        send.finish();
        Ok(Answers {
            recv,
            connection: self.connection.clone(),
        })
    }

    /// Opens a stream for one request and sends it.
    async fn send(&self, request: &AdminRequest) -> Result<(FramedSend, FramedRecv), ClientError> {
        let (send, recv) = self
            .connection
            .open_bi()
            .await
            .map_err(|e| describe_close(&e))?;
        let mut send = FramedSend::new(send, MAX_ADMIN_FRAME_LEN);
        send.send(request)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok((send, FramedRecv::new(recv, MAX_ADMIN_FRAME_LEN)))
    }

    /// Uploads an agent release: `request` is, or wraps, `ReleaseUpload`; the file is read from
    /// `file` in chunks of [`tether_wire::releases::UPLOAD_CHUNK`] and `progress` is told the
    /// bytes sent so far after each. Core may refuse before the file is all sent (a bad
    /// signature, a duplicate): its answer is returned as soon as it comes.
    pub async fn upload(
        &self,
        request: &AdminRequest,
        mut file: impl tokio::io::AsyncRead + Unpin,
        mut progress: impl FnMut(u64),
    ) -> Result<Vec<AdminResponse>, ClientError> {
        use tether_wire::releases::{UPLOAD_CHUNK, UploadFrame};
        use tokio::io::AsyncReadExt as _;
        let (mut send, mut recv) = self.send(request).await?;
        let mut buf = vec![0u8; UPLOAD_CHUNK];
        let mut sent = 0u64;
        // Core's answer may come early (a refusal); it is read while the file goes out.
        let early = loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| ClientError::Transport(format!("reading the file: {e}")))?;
            if n == 0 {
                break None;
            }
            let frame = UploadFrame::Data(tether_wire::bytes::ByteBuf(buf[..n].to_vec()));
            tokio::select! {
                biased;
                answer = next_answer(&mut recv, &self.connection) => break Some(answer),
                written = send.send(&frame) => if written.is_err() {
                    // Core stopped reading: its answer says why.
                    break Some(next_answer(&mut recv, &self.connection).await);
                },
            }
            sent += n as u64;
            progress(sent);
        };
        let mut responses = Vec::new();
        match early {
            Some(answer) => {
                if let Some(response) = answer? {
                    responses.push(response);
                }
            }
            None => send.finish(),
        }
        while let Some(response) = next_answer(&mut recv, &self.connection).await? {
            responses.push(response);
        }
        if responses.is_empty() {
            return Err(ClientError::Transport(
                "core closed the stream without answering".into(),
            ));
        }
        Ok(responses)
    }

    /// Starts an execution; its answers are read from the returned session as they come.
    pub async fn exec(&self, spec: ExecSpec) -> Result<ExecSession, ClientError> {
        self.exec_request(&AdminRequest::Exec(spec)).await
    }

    /// Starts an execution from a request that is, or wraps, `Exec` (the bridge sends one
    /// inside `AsUser`).
    pub async fn exec_request(&self, request: &AdminRequest) -> Result<ExecSession, ClientError> {
        // The send side stays open: a CancelExec may follow.
        let (send, recv) = self.send(request).await?;
        Ok(ExecSession {
            send,
            recv,
            connection: self.connection.clone(),
            cancelled: false,
        })
    }

    /// Step one of a terminal: a one-time token for a session on a node.
    pub async fn authorize_tty(&self, request: TtyAuthorize) -> Result<TtyGrant, ClientError> {
        let responses = self.request(&AdminRequest::AuthorizeTty(request)).await?;
        match responses.into_iter().next() {
            Some(AdminResponse::TtyGrant(grant)) => Ok(grant),
            _ => Err(ClientError::Transport(
                "core answered a terminal authorization with something else".into(),
            )),
        }
    }

    /// Step two: presents a token on a new stream and waits until the shell runs.
    pub async fn open_tty(&self, token: &str) -> Result<TtyConnection, ClientError> {
        self.open_tty_request(&AdminRequest::OpenTty {
            token: token.to_string(),
        })
        .await
    }

    /// Step two from a request that is, or wraps, `OpenTty` (the bridge sends one inside
    /// `AsUser`).
    pub async fn open_tty_request(
        &self,
        request: &AdminRequest,
    ) -> Result<TtyConnection, ClientError> {
        let (send, recv) = self
            .connection
            .open_bi()
            .await
            .map_err(|e| describe_close(&e))?;
        let mut send = FramedSend::new(send, MAX_ADMIN_FRAME_LEN);
        let recv = FramedRecv::new(recv, MAX_TTY_FRAME_LEN);
        send.send(request)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        send.set_max_len(MAX_TTY_FRAME_LEN);
        let mut output = TtyOutputs {
            recv,
            connection: self.connection.clone(),
        };
        match output.next_frame().await? {
            Some(TtyOutput::Connected {
                session_id,
                node_id,
                hostname,
                recorded,
            }) => Ok(TtyConnection {
                session_id,
                node_id,
                hostname,
                recorded,
                input: TtyInputs { send },
                output,
            }),
            _ => Err(ClientError::Transport(
                "core did not start the terminal session".into(),
            )),
        }
    }

    /// Moves the connection to a new UDP socket (the client's address changes; QUIC migrates
    /// the connection and every stream on it carries on).
    pub fn rebind(&self, socket: std::net::UdpSocket) -> std::io::Result<()> {
        self.endpoint.rebind(socket)
    }

    /// Whether the connection has closed (core went away, or closed it): a long-lived client
    /// such as the bridge connects again.
    pub fn is_closed(&self) -> bool {
        self.connection.close_reason().is_some()
    }

    /// Waits until the connection closes, and says why.
    pub async fn closed(&self) -> ClientError {
        describe_close(&self.connection.closed().await)
    }

    /// The local UDP address in use.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        self.connection.close(VarInt::from_u32(0), b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// Turns the way core closed the connection into something an admin can act on.
fn describe_close(error: &quinn::ConnectionError) -> ClientError {
    match error {
        quinn::ConnectionError::ApplicationClosed(close) => ClientError::Core {
            code: ErrorCode::from_close_code(close.error_code.into_inner()),
            message: String::from_utf8_lossy(&close.reason).into_owned(),
        },
        quinn::ConnectionError::ConnectionClosed(close) => {
            let code = u64::from(close.error_code);
            // TLS alerts travel as 0x100 + alert number.
            let certificate_alert = matches!(code.checked_sub(0x100), Some(42..=46 | 48 | 116));
            if certificate_alert {
                ClientError::Connect {
                    addr: "core".into(),
                    reason: format!(
                        "core does not accept this identity's certificate (TLS alert {}); \
                         is the identity file for this core, and still valid?",
                        code - 0x100
                    ),
                }
            } else {
                ClientError::Transport(format!("core closed the connection: {close}"))
            }
        }
        other => ClientError::Transport(other.to_string()),
    }
}

/// The answers to one request, as they arrive.
#[derive(Debug)]
pub struct Answers {
    recv: FramedRecv,
    connection: Connection,
}

impl Answers {
    /// The next answer; `None` after the last. An error answer becomes [`ClientError::Core`].
    pub async fn next(&mut self) -> Result<Option<AdminResponse>, ClientError> {
        next_answer(&mut self.recv, &self.connection).await
    }
}

/// One answer frame from `recv`: an error answer becomes [`ClientError::Core`], a lost
/// connection says why.
async fn next_answer(
    recv: &mut FramedRecv,
    connection: &Connection,
) -> Result<Option<AdminResponse>, ClientError> {
    match recv.next::<AdminResponse>().await {
        Ok(Some(AdminResponse::Error { code, message })) => {
            Err(ClientError::Core { code, message })
        }
        Ok(other) => Ok(other),
        Err(e) => Err(match connection.close_reason() {
            Some(reason) => describe_close(&reason),
            None => ClientError::Transport(e.to_string()),
        }),
    }
}

/// A running execution, from the admin's side.
#[derive(Debug)]
pub struct ExecSession {
    send: FramedSend,
    recv: FramedRecv,
    connection: Connection,
    cancelled: bool,
}

impl ExecSession {
    /// The next answer (`ExecStarted`, `ExecOutput`, `ExecNodeDone`, `ExecFinished`); `None` after
    /// the last. An error answer becomes [`ClientError::Core`].
    pub async fn next(&mut self) -> Result<Option<AdminResponse>, ClientError> {
        next_answer(&mut self.recv, &self.connection).await
    }

    /// Asks core to cancel: nodes not yet reached are skipped, running commands are killed. Keep
    /// reading to get every node's final result.
    pub async fn cancel(&mut self) -> Result<(), ClientError> {
        if !self.cancelled {
            self.cancelled = true;
            self.send
                .send(&AdminRequest::CancelExec)
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?;
            self.send.finish();
        }
        Ok(())
    }
}

/// A live terminal session, from the client's side: two halves that can be driven from
/// different tasks.
#[derive(Debug)]
pub struct TtyConnection {
    /// The session.
    pub session_id: TtySessionId,
    /// The node.
    pub node_id: NodeId,
    /// Its hostname.
    pub hostname: String,
    /// Whether core records it.
    pub recorded: bool,
    /// Keystrokes and resizes go here.
    pub input: TtyInputs,
    /// Output and the end come from here.
    pub output: TtyOutputs,
}

/// The sending half of a terminal session.
#[derive(Debug)]
pub struct TtyInputs {
    send: FramedSend,
}

impl TtyInputs {
    /// Sends keystrokes (or piped input), in chunks of at most [`TTY_CHUNK`] bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        for chunk in bytes.chunks(TTY_CHUNK) {
            self.frame(&TtyInput::Data(ByteBuf(chunk.to_vec()))).await?;
        }
        Ok(())
    }

    /// Tells the shell the window's new size.
    pub async fn resize(&mut self, size: WindowSize) -> Result<(), ClientError> {
        self.frame(&TtyInput::Resize(size)).await
    }

    /// The input ended (a pipe closed): the terminal gets its end-of-file character.
    pub async fn eof(&mut self) -> Result<(), ClientError> {
        self.frame(&TtyInput::Eof).await
    }

    /// Leaves the session: core hangs up the shell.
    pub fn close(&mut self) {
        self.send.finish();
    }

    async fn frame(&mut self, frame: &TtyInput) -> Result<(), ClientError> {
        self.send
            .send(frame)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))
    }
}

/// What a terminal session sends the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TtyEvent {
    /// Bytes the shell wrote.
    Output(Vec<u8>),
    /// The shell exited: the session is over.
    Exited(TtyExit),
}

/// The receiving half of a terminal session.
#[derive(Debug)]
pub struct TtyOutputs {
    recv: FramedRecv,
    connection: Connection,
}

impl TtyOutputs {
    async fn next_frame(&mut self) -> Result<Option<TtyOutput>, ClientError> {
        match self.recv.next::<TtyOutput>().await {
            Ok(Some(TtyOutput::Error { code, message })) => {
                Err(ClientError::Core { code, message })
            }
            Ok(other) => Ok(other),
            Err(tether_wire::stream::RecvError::Read(quinn::ReadError::Reset(code))) => {
                let code = ErrorCode::from_close_code(code.into_inner());
                Err(ClientError::Core {
                    code,
                    message: format!("core ended the session ({code})"),
                })
            }
            Err(e) => Err(match self.connection.close_reason() {
                Some(reason) => describe_close(&reason),
                None => ClientError::Transport(e.to_string()),
            }),
        }
    }

    /// The next output or the exit; `None` if core ended the stream without either. An error
    /// frame (the session was killed, the node was lost, ...) becomes [`ClientError::Core`].
    pub async fn next(&mut self) -> Result<Option<TtyEvent>, ClientError> {
        loop {
            return match self.next_frame().await? {
                Some(TtyOutput::Data(bytes)) => Ok(Some(TtyEvent::Output(bytes.0))),
                Some(TtyOutput::Exited(exit)) => Ok(Some(TtyEvent::Exited(exit))),
                Some(_) => continue,
                None => Ok(None),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_core_address_without_a_port_gets_the_default_one() {
        assert_eq!(with_default_port("core.example"), "core.example:4433");
        assert_eq!(with_default_port("127.0.0.1"), "127.0.0.1:4433");
        assert_eq!(with_default_port("::1"), "[::1]:4433");
        assert_eq!(with_default_port("core.example:5000"), "core.example:5000");
        assert_eq!(with_default_port("[::1]:5000"), "[::1]:5000");
    }
}

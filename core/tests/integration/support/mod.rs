//! Shared helpers for the end-to-end tests: real QUIC on 127.0.0.1, real redb files in temp dirs,
//! real `tether-core`, `tether-node` and `tether` processes where a test needs them.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, Endpoint};
use tether_certs::identity::AdminIdentity;
use tether_certs::node_key::NodeKey;
use tether_client::AdminClient;
use tether_core::Core;
use tether_core::config::CoreConfig;
use tether_wire::admin::{AdminRequest, AdminResponse, ApplicationView, NodeView};
use tether_wire::bytes::{ByteBuf, FixedBytes};
use tether_wire::control::{
    AuthRequest, CoreMessage, EnrollRequest, NodeMessage, auth_proof_input,
};
use tether_wire::limits::MAX_CONTROL_FRAME_LEN;
use tether_wire::stream::{FramedRecv, FramedSend};
use tether_wire::token::{Fingerprint, JoinToken};
use tether_wire::{AUTH_EXPORTER_LABEL, ErrorCode, NodeId, TLS_SERVER_NAME};

/// Generous bound for things that should happen within a second or two.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("TETHER_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// Polls `check` until it returns `Some`, or panics after `PATIENCE` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Settings that make tests quick: 1 s heartbeats, 3 s to offline.
pub fn test_config(data_dir: &Path) -> CoreConfig {
    let mut config = CoreConfig::with_data_dir(data_dir.to_path_buf());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.heartbeat_interval = Duration::from_secs(1);
    config.offline_after = Duration::from_secs(3);
    config.hello_timeout = Duration::from_secs(2);
    config.last_seen_flush = Duration::from_secs(1);
    config.history_flush = Duration::from_millis(200);
    config
}

/// A core running in this process.
pub struct TestCore {
    pub core: Option<Core>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TestCore {
    pub async fn start(tweak: impl FnOnce(&mut CoreConfig)) -> Self {
        Self::start_with_clock(tweak, std::sync::Arc::new(tether_core::clock::SystemClock)).await
    }

    /// A core whose wall clock is `clock` (sessions and certificates expire by it).
    pub async fn start_with_clock(
        tweak: impl FnOnce(&mut CoreConfig),
        clock: std::sync::Arc<dyn tether_core::clock::Clock>,
    ) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&dir.path().join("core"));
        tweak(&mut config);
        let core = Core::start_with_clock(config, clock)
            .await
            .expect("core starts");
        let addr = core.local_addr();
        Self {
            core: Some(core),
            addr,
            dir,
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("core")
    }

    pub fn token(&self) -> JoinToken {
        let mut token = self.core.as_ref().unwrap().data_dir().join_token().unwrap();
        token.core_addr = self.addr.to_string();
        token
    }

    pub fn identity(&self) -> AdminIdentity {
        AdminIdentity::load(&self.data().join("admin.identity")).unwrap()
    }

    pub async fn admin(&self) -> Admin {
        Admin(
            AdminClient::connect(&self.identity(), Some(&self.addr.to_string()))
                .await
                .unwrap(),
        )
    }

    /// Creates user `name` (no password) and gives them a certificate for 90 days, as
    /// `tether user add` and `tether user cert` do; the identity (also saved as
    /// `NAME.identity` in the test's directory) and a client connected with it.
    pub async fn user(
        &self,
        admin: &AdminClient,
        name: &str,
        role: tether_wire::admin::Role,
    ) -> (AdminIdentity, AdminClient) {
        self.add_user(admin, name, role, None).await;
        let identity = self
            .cert_lasting(admin, name, Duration::from_secs(90 * 86_400))
            .await;
        identity
            .save(&self.dir.path().join(format!("{name}.identity")))
            .unwrap();
        let client = AdminClient::connect(&identity, Some(&self.addr.to_string()))
            .await
            .unwrap();
        (identity, client)
    }

    /// Creates a user.
    pub async fn add_user(
        &self,
        admin: &AdminClient,
        name: &str,
        role: tether_wire::admin::Role,
        password: Option<&str>,
    ) {
        admin
            .request(&tether_wire::admin::AdminRequest::UserAdd(
                tether_wire::users::NewUser {
                    name: name.into(),
                    role,
                    email: None,
                    password: password.map(tether_wire::users::Secret::new),
                },
            ))
            .await
            .expect("user added");
    }

    /// Another certificate for an existing user.
    pub async fn another_cert(&self, admin: &AdminClient, name: &str) -> AdminIdentity {
        self.cert_lasting(admin, name, Duration::from_secs(86_400))
            .await
    }

    /// A certificate for an existing user, lasting `lifetime`.
    pub async fn cert_lasting(
        &self,
        admin: &AdminClient,
        name: &str,
        lifetime: Duration,
    ) -> AdminIdentity {
        admin
            .issue_identity(&self.identity(), name, lifetime)
            .await
            .expect("certificate issued")
            .0
    }

    /// The identity saved by [`TestCore::user`].
    pub fn identity_of(&self, name: &str) -> AdminIdentity {
        AdminIdentity::load(&self.dir.path().join(format!("{name}.identity"))).unwrap()
    }

    pub async fn stop(&mut self) {
        if let Some(core) = self.core.take() {
            core.shutdown().await;
        }
    }
}

/// An admin client with typed helpers.
pub struct Admin(pub AdminClient);

impl Admin {
    pub async fn request(
        &self,
        request: AdminRequest,
    ) -> Result<Vec<AdminResponse>, tether_client::ClientError> {
        self.0.request(&request).await
    }

    pub async fn nodes(&self) -> Vec<NodeView> {
        let mut out = Vec::new();
        for r in self
            .request(AdminRequest::ListNodes {
                status: None,
                labels: vec![],
                group: None,
                include_deleted: true,
            })
            .await
            .unwrap()
        {
            if let AdminResponse::Nodes(chunk) = r {
                out.extend(chunk);
            }
        }
        out
    }

    pub async fn node(&self, id: NodeId) -> Option<NodeView> {
        self.nodes().await.into_iter().find(|n| n.id == id)
    }

    pub async fn applications(&self) -> Vec<ApplicationView> {
        let mut out = Vec::new();
        for r in self
            .request(AdminRequest::ListApplications {
                status: None,
                limit: None,
            })
            .await
            .unwrap()
        {
            if let AdminResponse::Applications(chunk) = r {
                out.extend(chunk);
            }
        }
        out
    }

    pub async fn executions(&self, limit: u32) -> Vec<tether_wire::admin::ExecutionView> {
        let mut out = Vec::new();
        for r in self
            .request(AdminRequest::ExecHistory { node: None, limit })
            .await
            .unwrap()
        {
            if let AdminResponse::Executions(chunk) = r {
                out.extend(chunk);
            }
        }
        out
    }

    pub async fn approve(&self, id: &str) -> ApplicationView {
        match self
            .request(AdminRequest::ApproveApplication { id: id.into() })
            .await
            .unwrap()
            .pop()
        {
            Some(AdminResponse::Application(app)) => app,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// One RSA key for all raw test nodes: generating one per test is slow, and different node ids
/// may share a key.
pub fn test_key() -> &'static NodeKey {
    static KEY: OnceLock<NodeKey> = OnceLock::new();
    KEY.get_or_init(|| NodeKey::generate().unwrap())
}

pub fn now_secs() -> i64 {
    tether_wire::units::unix_ms(std::time::SystemTime::now()) / 1000
}

/// A node speaking the wire protocol by hand, to send what a real node never would.
pub struct RawNode {
    pub endpoint: Endpoint,
    pub connection: Connection,
    pub send: FramedSend,
    pub recv: FramedRecv,
}

impl RawNode {
    /// Connects and opens the control stream (nothing sent yet).
    pub async fn connect(addr: SocketAddr, ca: Fingerprint) -> RawNode {
        let (connection, endpoint) = Self::dial(addr, ca).await.expect("connects");
        let (send, recv) = connection.open_bi().await.unwrap();
        RawNode {
            endpoint,
            connection,
            send: FramedSend::new(send, MAX_CONTROL_FRAME_LEN),
            recv: FramedRecv::new(recv, MAX_CONTROL_FRAME_LEN),
        }
    }

    pub async fn dial(
        addr: SocketAddr,
        ca: Fingerprint,
    ) -> Result<(Connection, Endpoint), quinn::ConnectionError> {
        let (tls, _) = tether_certs::tls::node_client_config(ca).unwrap();
        let quic = QuicClientConfig::try_from(Arc::new(tls)).unwrap();
        let mut endpoint = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let connection = endpoint.connect(addr, TLS_SERVER_NAME).unwrap().await?;
        Ok((connection, endpoint))
    }

    /// Connects and authenticates as `id`, expecting `AuthOk`.
    pub async fn authenticated(
        addr: SocketAddr,
        ca: Fingerprint,
        id: NodeId,
        secret: &[u8; 32],
    ) -> RawNode {
        let mut raw = RawNode::connect(addr, ca).await;
        let auth = raw.auth(id, secret, now_secs());
        raw.send(&auth).await;
        match raw.recv().await {
            Some(CoreMessage::AuthOk(params)) => assert_eq!(params.node_id, id),
            other => panic!("expected AuthOk, got {other:?}"),
        }
        raw
    }

    /// Sends a fresh signed enrollment request for `id` (current time, new nonce).
    pub async fn enroll(&mut self, token: &JoinToken, id: NodeId) {
        self.send(&NodeMessage::Enroll(enroll_request(
            id,
            token,
            now_secs(),
            random_nonce(),
        )))
        .await;
    }

    pub async fn send(&mut self, message: &NodeMessage) {
        self.send.send(message).await.unwrap();
    }

    pub async fn recv(&mut self) -> Option<CoreMessage> {
        tokio::time::timeout(PATIENCE, self.recv.next::<CoreMessage>())
            .await
            .expect("core answers in time")
            .ok()
            .flatten()
    }

    /// The refusal core answers with (the frame), checked against the close code that follows.
    pub async fn refusal(&mut self) -> (ErrorCode, String) {
        let answer = self.recv().await;
        let (close_code, _) = self.closed().await;
        match answer {
            Some(CoreMessage::Refused { code, message }) => {
                assert_eq!(code, close_code, "the close code repeats the refusal");
                (code, message)
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// The code and reason core closed the connection with.
    pub async fn closed(&self) -> (ErrorCode, String) {
        let error = tokio::time::timeout(PATIENCE, self.connection.closed())
            .await
            .expect("closed in time");
        match error {
            quinn::ConnectionError::ApplicationClosed(close) => (
                ErrorCode::from_close_code(close.error_code.into_inner()),
                String::from_utf8_lossy(&close.reason).into_owned(),
            ),
            other => panic!("closed without an application code: {other}"),
        }
    }

    pub fn auth(&self, node_id: NodeId, secret: &[u8; 32], timestamp: i64) -> NodeMessage {
        let mut exporter = [0u8; 32];
        self.connection
            .export_keying_material(&mut exporter, AUTH_EXPORTER_LABEL, b"")
            .unwrap();
        let proof =
            tether_certs::proof::compute(secret, &auth_proof_input(node_id, timestamp, &exporter));
        NodeMessage::Auth(AuthRequest {
            node_id,
            timestamp,
            proof: FixedBytes(proof),
            agent_version: "test".into(),
            machine: tether_wire::control::machine_fingerprint(node_id.as_bytes(), b"test"),
            hostname: "raw-node".into(),
        })
    }
}

/// A signed enrollment request.
pub fn enroll_request(
    node_id: NodeId,
    token: &JoinToken,
    timestamp: i64,
    nonce: [u8; 64],
) -> EnrollRequest {
    let key = test_key();
    let mut request = EnrollRequest {
        nonce: FixedBytes(nonce),
        timestamp,
        node_id,
        public_key_pem: key.public().to_pem(),
        hostname: "raw-node".into(),
        join_secret: token.secret,
        agent_version: "test".into(),
        signature: ByteBuf::default(),
    };
    request.signature = ByteBuf(key.sign(&request.signed_bytes()));
    request
}

pub fn random_nonce() -> [u8; 64] {
    let mut nonce = [0u8; 64];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
    nonce
}

/// Enrolls a raw node with auto-approval (or pending approval by `admin`), returning its secret.
pub async fn enroll_raw(addr: SocketAddr, token: &JoinToken, node_id: NodeId) -> [u8; 32] {
    let mut raw = RawNode::connect(addr, token.ca_fingerprint).await;
    raw.send(&NodeMessage::Enroll(enroll_request(
        node_id,
        token,
        now_secs(),
        random_nonce(),
    )))
    .await;
    match raw.recv().await {
        Some(CoreMessage::EnrollApproved {
            encrypted_secret, ..
        }) => {
            let secret = test_key().decrypt(&encrypted_secret.0).unwrap();
            raw.connection.close(0u32.into(), b"");
            secret.try_into().unwrap()
        }
        other => panic!("expected approval, got {other:?}"),
    }
}

/// A new node enrolled on an auto-approving core and authenticated on a connection of its own.
pub async fn enrolled_node(core: &TestCore) -> (NodeId, RawNode) {
    let token = core.token();
    let id = NodeId::random();
    let secret = enroll_raw(core.addr, &token, id).await;
    (
        id,
        RawNode::authenticated(core.addr, token.ca_fingerprint, id, &secret).await,
    )
}

// ---- real processes ----

/// Path of a workspace binary next to this test's own binaries; builds it if missing.
///
/// Only `tether-core` is a binary of this package (`CARGO_BIN_EXE_*`); the others belong to
/// packages of their own (`tether` to tether-client, `tether-node` to tether-node), which
/// `cargo test --workspace` builds with every binary and `cargo test -p tether-core` does not.
pub fn binary(name: &str) -> PathBuf {
    if name == "tether-core" {
        return PathBuf::from(env!("CARGO_BIN_EXE_tether-core"));
    }
    let package = match name {
        "tether" => "tether-client",
        "tether-node" => "tether-node",
        other => panic!("no workspace binary {other:?}"),
    };
    // One build at a time: tests that start at once all wait for the first one's.
    static BUILDING: Mutex<()> = Mutex::new(());
    let dir = PathBuf::from(env!("CARGO_BIN_EXE_tether-core"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = dir.join(name);
    let _building = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--quiet", "-p", package, "--bin", name])
            .status()
            .expect("running cargo");
        assert!(status.success(), "building {name} ({package})");
    }
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// The agent built again with `TETHER_VERSION=version` (the `tether-node-next` example, so that
/// neither the agent's library nor `target/debug/tether-node` is rebuilt), copied to `to`.
pub fn agent_with_version(version: &str, to: &Path) {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _building = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--quiet",
            "-p",
            "tether-node",
            "--example",
            "tether-node-next",
        ])
        .env("TETHER_VERSION", version)
        .status()
        .expect("running cargo");
    assert!(status.success(), "building tether-node {version}");
    let built = PathBuf::from(env!("CARGO_BIN_EXE_tether-core"))
        .parent()
        .unwrap()
        .join("examples/tether-node-next");
    std::fs::copy(&built, to).unwrap();
    let out = Command::new(to).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("tether-node {version}")
    );
}

/// Waits until a core (a process just spawned) completes a QUIC handshake on `addr`.
pub async fn wait_for_core(addr: SocketAddr, ca: Fingerprint) {
    eventually("core to answer", || async {
        let (connection, endpoint) = RawNode::dial(addr, ca).await.ok()?;
        connection.close(0u32.into(), b"");
        endpoint.wait_idle().await;
        Some(())
    })
    .await;
}

/// A free UDP port on 127.0.0.1 (for processes that must come back on the same address).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped, with the file its stderr goes to.
pub struct Proc(pub Option<Child>, pub PathBuf);

impl Proc {
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit; its code and stderr.
    pub fn wait_exit(&mut self, timeout: Duration) -> (Option<i32>, String) {
        let mut child = self.0.take().expect("running");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status.code(), self.log());
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("process did not exit in {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts `binary` with `args`, its stderr to `log`.
pub fn spawn(binary: &Path, args: &[String], log: &Path) -> Proc {
    let log_file = std::fs::File::create(log).unwrap();
    let child = Command::new(binary)
        .args(args)
        .env("TETHER_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap();
    Proc(Some(child), log.to_path_buf())
}

/// The real `tether-core serve` on a fixed port with quick test timings (flags in `extra` win).
pub fn spawn_core(data: &Path, port: u16, extra: &[&str]) -> Proc {
    let mut args: Vec<String> = [
        "serve",
        "--data",
        &data.to_string_lossy(),
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (flag, value) in [
        ("--heartbeat-interval", "1s"),
        ("--offline-after", "3s"),
        ("--last-seen-flush", "1s"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let log = data.with_extension("core.log");
    let core = spawn(&binary("tether-core"), &args, &log);
    // The first start initialises the data directory; callers want it (and the token) ready.
    let deadline = std::time::Instant::now() + PATIENCE;
    // admin.identity is the last file the first start writes.
    while !data.join("admin.identity").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    core
}

/// The real `tether-node run`, its stderr captured for `wait_exit`.
pub fn spawn_node(state: &Path, core: &str, token: Option<&str>) -> Proc {
    spawn_node_with(state, core, token, &[])
}

/// [`spawn_node`] with more flags.
pub fn spawn_node_with(state: &Path, core: &str, token: Option<&str>, extra: &[&str]) -> Proc {
    let mut args = vec![
        "run".to_string(),
        "--state-dir".into(),
        state.to_string_lossy().into(),
        "--core".into(),
        core.into(),
    ];
    if let Some(token) = token {
        args.push("--token".into());
        args.push(token.into());
    }
    args.extend(["--reconnect-max".into(), "2s".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    // A new log per start, so a test reads what this run said.
    let mut n = 0;
    let log = loop {
        let candidate = state.with_extension(format!("node-{n}.log"));
        if !candidate.exists() {
            break candidate;
        }
        n += 1;
    };
    spawn(&binary("tether-node"), &args, &log)
}

/// Runs the `tether` CLI.
pub fn tether(identity: &Path, core: &str, args: &[&str]) -> Output {
    Command::new(binary("tether"))
        .arg("--identity")
        .arg(identity)
        .arg("--core")
        .arg(core)
        .args(args)
        .output()
        .unwrap()
}

/// Runs the `tether` CLI and parses its JSON stdout.
pub fn tether_json(identity: &Path, core: &str, args: &[&str]) -> serde_json::Value {
    let output = tether(identity, core, args);
    assert!(
        output.status.success(),
        "tether {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The join token, as `tether-core key show` prints it.
pub fn join_token_of(data: &Path) -> String {
    let output = Command::new(binary("tether-core"))
        .args(["key", "show", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

// ---- in-process nodes ----

/// A real agent (the `tether-node` library) running as a task in this process.
pub struct LibNode {
    pub cancel: tokio_util::sync::CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), tether_node::NodeError>>,
}

impl LibNode {
    pub fn start(
        state: &Path,
        core: SocketAddr,
        token: Option<JoinToken>,
        tweak: impl FnOnce(&mut tether_node::NodeConfig),
    ) -> LibNode {
        let mut config = tether_node::NodeConfig::with_state_dir(state.to_path_buf());
        config.core_addr = Some(core.to_string());
        config.token = token;
        config.reconnect_max = Duration::from_secs(1);
        tweak(&mut config);
        let cancel = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(tether_node::run(config, cancel.clone().cancelled_owned()));
        LibNode { cancel, task }
    }

    /// Stops the agent gracefully and returns how it ended.
    pub async fn stop(self) -> Result<(), tether_node::NodeError> {
        self.cancel.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("node stops")
            .expect("no panic")
    }
}

/// A core (tweaked by `tweak_core`, auto-approving) with `n` in-process agents named host-00,
/// host-01, ... (then tweaked by `tweak_node`), all online.
pub async fn start_fleet(
    n: usize,
    tweak_core: impl FnOnce(&mut CoreConfig),
    tweak_node: impl Fn(&mut tether_node::NodeConfig),
) -> (TestCore, Admin, Vec<(NodeId, LibNode)>, tempfile::TempDir) {
    let core = TestCore::start(|c| {
        c.auto_approve = true;
        tweak_core(c);
    })
    .await;
    let admin = core.admin().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for i in 0..n {
        let state = tmp.path().join(format!("node-{i}"));
        let node = LibNode::start(&state, core.addr, Some(core.token()), |c| {
            c.hostname = Some(format!("host-{i:02}"));
            tweak_node(c);
        });
        nodes.push((node_id_in(&state).await, node));
    }
    for (id, _) in &nodes {
        wait_status(&admin, *id, tether_wire::admin::NodeStatus::Online).await;
    }
    (core, admin, nodes, tmp)
}

/// The node id an agent created in its state directory.
pub async fn node_id_in(state: &Path) -> NodeId {
    let path = state.join("node.id");
    eventually("the node to create its id", || {
        let path = path.clone();
        async move {
            std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| t.trim().parse().ok())
        }
    })
    .await
}

/// Waits until the node is listed with `status` (and, when online, with metrics).
pub async fn wait_status(
    admin: &Admin,
    id: NodeId,
    status: tether_wire::admin::NodeStatus,
) -> NodeView {
    eventually(&format!("node {id} to be {status}"), || async move {
        admin.node(id).await.filter(|n| {
            n.status == status
                && (status != tether_wire::admin::NodeStatus::Online || n.metrics.is_some())
        })
    })
    .await
}

// ---- executions ----

/// Everything an execution answered.
#[derive(Debug, Default)]
pub struct ExecRun {
    pub exec_id: Option<tether_wire::ExecutionId>,
    pub targets: Vec<tether_wire::admin::ExecTarget>,
    pub results: std::collections::HashMap<NodeId, tether_wire::admin::NodeExecView>,
    pub stdout: std::collections::HashMap<NodeId, Vec<u8>>,
    pub stderr: std::collections::HashMap<NodeId, Vec<u8>>,
    pub finished: Option<tether_wire::admin::ExecutionView>,
}

impl ExecRun {
    /// The only node's result.
    pub fn single(&self) -> &tether_wire::admin::NodeExecView {
        assert_eq!(self.results.len(), 1, "{:?}", self.results);
        self.results.values().next().unwrap()
    }
    pub fn stdout_of(&self, id: NodeId) -> String {
        String::from_utf8_lossy(self.stdout.get(&id).map_or(&[][..], |v| v)).into_owned()
    }
    pub fn stderr_of(&self, id: NodeId) -> String {
        String::from_utf8_lossy(self.stderr.get(&id).map_or(&[][..], |v| v)).into_owned()
    }
}

pub fn spec(targets: &[&str], command: &[&str]) -> tether_wire::admin::ExecSpec {
    tether_wire::admin::ExecSpec {
        targets: targets.iter().map(|s| s.to_string()).collect(),
        labels: vec![],
        groups: vec![],
        all: false,
        command: command.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        cwd: None,
        timeout_ms: None,
        concurrency: 1000,
    }
}

impl Admin {
    /// Runs an execution to its end.
    pub async fn exec(
        &self,
        spec: tether_wire::admin::ExecSpec,
    ) -> Result<ExecRun, tether_client::ClientError> {
        let mut session = self.0.exec(spec).await?;
        collect(&mut session).await
    }
}

/// Reads an execution's answers to the end.
pub async fn collect(
    session: &mut tether_client::ExecSession,
) -> Result<ExecRun, tether_client::ClientError> {
    let mut run = ExecRun::default();
    while let Some(answer) = tokio::time::timeout(Duration::from_secs(120), session.next())
        .await
        .expect("answers in time")?
    {
        match answer {
            AdminResponse::ExecStarted { exec_id, nodes } => {
                run.exec_id = Some(exec_id);
                run.targets = nodes;
            }
            AdminResponse::ExecOutput {
                node_id,
                stream,
                data,
            } => {
                let map = match stream {
                    tether_wire::exec::OutputStream::Stdout => &mut run.stdout,
                    tether_wire::exec::OutputStream::Stderr => &mut run.stderr,
                };
                map.entry(node_id).or_default().extend_from_slice(&data.0);
            }
            AdminResponse::ExecNodeDone(view) => {
                run.results.insert(view.node_id, view);
            }
            AdminResponse::ExecFinished(view) => run.finished = Some(view),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    Ok(run)
}

/// A field of `/proc/PID/status` given in kB (`VmRSS`, `VmHWM`, ...), in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Peak resident memory of a process, KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM")
}

/// Whether a process is alive (a zombie is not).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

// ---- disks ----

/// A small filesystem mounted over a directory for the length of a test (tests run as root in
/// CI; elsewhere the test says it is skipped).
pub struct SmallDisk(pub std::path::PathBuf);

impl SmallDisk {
    pub fn mount(dir: &std::path::Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("SKIPPED: cannot mount a small filesystem here (needs root)");
            return None;
        }
        Some(SmallDisk(dir.to_path_buf()))
    }

    /// Fills it to the last byte.
    pub fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let _ = file.write_all(&[0]);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

//! Core's QUIC endpoint: one UDP socket, two ALPNs (nodes and admins), the accept loop and the
//! background chores (last-seen flushes, nonce expiry, status-log pruning).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Endpoint, EndpointConfig, IdleTimeout, TransportConfig, VarInt};
use tether_store::Store;
use tether_wire::quic::{accept_large_packets, mtu_discovery};
use tether_wire::{ADMIN_ALPN, ErrorCode, NODE_ALPN};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, CoreConfig};
use crate::data_dir::{DataDir, DataDirError};
use crate::presence::Presence;
use crate::{admin, node_conn};

/// Why core could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory is unusable.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The database could not be opened.
    #[error(transparent)]
    Store(tether_store::StoreError),
    /// The database is damaged.
    #[error(
        "the database is damaged ({detail}). Restore the latest backup into a new data directory \
         and start core there: `tether-core restore --from BACKUP --data NEWDIR`, then \
         `tether-core serve --data NEWDIR`; keep the damaged directory for inspection"
    )]
    CorruptDatabase {
        /// What the database said.
        detail: String,
    },
    /// TLS setup failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The metrics listener's TCP socket could not be bound.
    #[error("cannot serve metrics on {addr}: {error}")]
    MetricsBind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The UDP socket could not be bound.
    // The OS error is in the message and deliberately not a `source`: `{:#}` printed it twice.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

impl From<tether_store::StoreError> for StartError {
    fn from(e: tether_store::StoreError) -> Self {
        match e {
            tether_store::StoreError::Corrupt(detail) => StartError::CorruptDatabase { detail },
            other => StartError::Store(other),
        }
    }
}

/// State every connection task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: CoreConfig,
    pub store: Store,
    pub data_dir: DataDir,
    pub presence: Presence,
    pub clock: Arc<dyn Clock>,
    pub shutdown: CancellationToken,
    pub terminals: crate::tty::Terminals,
    /// For `Status`: the connections open now.
    pub endpoint: Endpoint,
    pub started_at_ms: i64,
    /// Handshakes under way (bounded by `max_handshakes`).
    pub handshakes: AtomicUsize,
    /// First packets left unanswered because `max_handshakes` were under way, since start.
    pub handshakes_deferred: AtomicU64,
    /// A backup is being taken (one at a time).
    pub backups: std::sync::atomic::AtomicBool,
    /// Admin connections open now (closed at once on a revocation or disable).
    pub admin_connections: Arc<crate::auth::Connections>,
    /// Failed password logins, per user name and address.
    pub login_throttle: std::sync::Mutex<crate::auth::throttle::Throttle>,
    /// Heartbeats waiting to be written to the metrics history.
    pub history: crate::history::HistoryQueue,
    /// Counters for Prometheus (`/metrics`).
    pub telemetry: crate::telemetry::Telemetry,
    /// Alert rules' state.
    pub alerts: crate::alerts::Alerting,
    /// Notifications under way.
    pub deliveries: crate::alerts::notify::Deliveries,
    /// Scheduled tasks' runs going on, and the scheduler's wake-up call.
    pub tasks: crate::tasks::Tasks,
    /// Agent release files.
    pub release_files: crate::releases::ReleaseFiles,
    /// Deploys under way.
    pub deploys: crate::releases::deploy::Deploys,
}

/// Holds one of `max_handshakes` until the handshake has finished, either way.
struct HandshakeSlot<'a>(&'a AtomicUsize);

impl Drop for HandshakeSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    /// Core's state without a running core (unit tests): no connections, nothing spawned.
    #[cfg(test)]
    pub(crate) fn for_tests(
        config: CoreConfig,
        store: Store,
        data_dir: DataDir,
        clock: Arc<dyn Clock>,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            deploys: crate::releases::deploy::Deploys::new(config.max_downloads),
            config,
            store,
            release_files: crate::releases::ReleaseFiles::new(data_dir.root()),
            data_dir,
            presence: Presence::default(),
            started_at_ms: clock.now_ms(),
            clock,
            shutdown: CancellationToken::new(),
            terminals: Default::default(),
            endpoint: Endpoint::client("127.0.0.1:0".parse().expect("an address"))
                .expect("a client endpoint"),
            handshakes: AtomicUsize::new(0),
            handshakes_deferred: AtomicU64::new(0),
            backups: Default::default(),
            admin_connections: Default::default(),
            history: Default::default(),
            telemetry: Default::default(),
            alerts: Default::default(),
            deliveries: Default::default(),
            tasks: Default::default(),
            login_throttle: std::sync::Mutex::new(crate::auth::throttle::Throttle::new(
                10,
                std::time::Duration::from_secs(60),
                std::time::Duration::from_secs(1),
            )),
        })
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// A running core.
#[derive(Debug)]
pub struct Core {
    shared: Arc<Shared>,
    endpoint: Endpoint,
    tasks: Vec<JoinHandle<()>>,
    metrics_addr: Option<SocketAddr>,
}

/// QUIC transport settings for core (public so that benchmarks can give a bare quinn server the
/// same). Windows are limits, not allocations; they are kept modest
/// because one core holds very many connections. Keep-alives are the nodes' job.
pub fn transport_config(config: &CoreConfig) -> Result<TransportConfig, StartError> {
    let mut transport = TransportConfig::default();
    transport.max_idle_timeout(Some(
        IdleTimeout::try_from(config.idle_timeout).map_err(|e| StartError::Tls(e.to_string()))?,
    ));
    transport.keep_alive_interval(None);
    // Few streams to begin with: quinn sets aside state for every stream the peer may open, on
    // every connection, and most connections are idle nodes with one control stream. Admin
    // connections get more once their ALPN says what they are (`ADMIN_BIDI_STREAMS`), a node
    // more unidirectional ones once it is sent a command (`EXEC_UNI_STREAMS`).
    transport.max_concurrent_bidi_streams(VarInt::from_u32(2));
    transport.max_concurrent_uni_streams(VarInt::from_u32(2));
    transport.stream_receive_window(VarInt::from_u32(256 * 1024));
    transport.receive_window(VarInt::from_u32(2 * 1024 * 1024));
    transport.send_window(2 * 1024 * 1024);
    transport.datagram_receive_buffer_size(Some(64 * 1024));
    transport.datagram_send_buffer_size(16 * 1024);
    // Segmentation offload (quinn's default) sends up to ten datagrams per system call: release
    // downloads and terminal output. quinn kept each connection's batch buffer (14 KiB) for its
    // whole life, over a gigabyte across 100,000 idle nodes, so offload was off; the patched quinn
    // (`vendor/quinn/TETHER.md`) gives the buffer back once a connection has sent everything.
    transport.mtu_discovery_config(Some(mtu_discovery()));
    Ok(transport)
}

/// How long the address token of a QUIC retry stays good. quinn's 15 s is shorter than a storm:
/// a node sent a retry while core was busy resends its first packet with the token, and while
/// core stays at `max_handshakes` that packet goes unanswered and is resent with backoff (1, 2,
/// 4, 8 s...); past 15 s core refused the token and the attempt failed (6,258 times while
/// 100,000 nodes connected). Tokens are bound to the node's address, so a longer life gives a
/// forger nothing.
const RETRY_TOKEN_LIFETIME: Duration = Duration::from_secs(120);

/// QUIC server settings: core's TLS, its transport, migration allowed (a node's or client's
/// address may change mid-session), and retry tokens that outlast a storm.
fn quic_server_config(
    tls: rustls::ServerConfig,
    config: &CoreConfig,
) -> Result<quinn::ServerConfig, StartError> {
    let quic_tls =
        QuicServerConfig::try_from(Arc::new(tls)).map_err(|e| StartError::Tls(e.to_string()))?;
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(quic_tls));
    server_config.transport_config(Arc::new(transport_config(config)?));
    server_config.migration(true);
    server_config.retry_token_lifetime(RETRY_TOKEN_LIFETIME);
    Ok(server_config)
}

/// No floor between stateless resets (see `endpoint_config`).
const MIN_RESET_INTERVAL: Duration = Duration::ZERO;

/// Endpoint settings that survive restarts. After a crash the new process must (1) accept the
/// connection ids the old one issued as its own, and (2) answer them with stateless resets the
/// nodes recognise; then every node learns at its next packet that its connection is gone and
/// reconnects, instead of waiting out its idle timeout. Both keys derive from one persistent key.
fn endpoint_config(reset_key: &[u8; 32]) -> EndpointConfig {
    let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset_key);
    let tag = ring::hmac::sign(&hmac, b"tether connection id generator");
    let cid_key: [u8; 32] = tag.as_ref().try_into().expect("32 bytes");
    let mut config = EndpointConfig::new(Arc::new(hmac));
    let cids = crate::cid::PersistentCidGenerator::new(&cid_key);
    config.cid_generator(move || Box::new(cids.clone()));
    // quinn sends at most one stateless reset per 20 ms by default: 50 a second, so after a
    // restart 10,000 nodes would mostly wait out their idle timeout instead. Any floor at all
    // is too much: quinn reads the clock once per receive cycle, so a floor means one reset per
    // cycle, and under a storm a cycle holds hundreds of packets. No floor is safe here: a
    // reset is always smaller than the packet that caused it (no amplification, and reset loops
    // shrink away), and the generator drops any packet whose connection id core did not issue
    // (a 48-bit keyed tag, see `cid`) before a reset is considered, so garbage never earns one.
    config.min_reset_interval(MIN_RESET_INTERVAL);
    accept_large_packets(&mut config);
    config
}

impl Core {
    /// Starts core with the system clock.
    pub async fn start(config: CoreConfig) -> Result<Core, StartError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Starts core with a given wall clock (tests skew it).
    pub async fn start_with_clock(
        config: CoreConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Core, StartError> {
        config.validate()?;
        let data_dir = DataDir::new(&config.data_dir);
        let advertised = advertised_addr(&config, &data_dir);
        let (ca, first_start) = data_dir.open_or_init(&advertised)?;
        if first_start {
            info!(data_dir = %data_dir.root().display(), ca = %ca.fingerprint(), "initialised a new data directory");
        }
        remove_backup_leftovers(&data_dir);
        let store = Store::open_keeping_free(&data_dir.database_path(), config.min_free_space)?;
        let went_offline = store
            .mark_all_offline(clock.now_ms(), "core restarted".into())
            .await?;
        if went_offline > 0 {
            info!(
                nodes = went_offline,
                "nodes recorded online by the previous run are offline until they reconnect"
            );
        }
        let interrupted = store.interrupt_running_executions(clock.now_ms()).await?;
        if interrupted > 0 {
            warn!(
                executions = interrupted,
                "executions running when core stopped are marked interrupted"
            );
        }
        let runs = store.interrupt_running_task_runs(clock.now_ms()).await?;
        if runs > 0 {
            warn!(
                runs,
                "task runs going on when core stopped are marked interrupted"
            );
        }
        let cut = store
            .interrupt_live_tty_sessions(
                clock.now_ms(),
                "core stopped while the session was live".into(),
            )
            .await?;
        if cut > 0 {
            warn!(
                sessions = cut,
                "terminal sessions live when core stopped are marked error"
            );
        }
        crate::auth::bootstrap(&store, &data_dir.admin_identity_path(), clock.now_ms()).await?;

        let server_cert = data_dir.server_certificate(&ca)?;
        let tls = tether_certs::tls::server_config(ca.cert_der(), server_cert)
            .map_err(|e| StartError::Tls(e.to_string()))?;
        let server_config = quic_server_config(tls, &config)?;
        let endpoint_config = endpoint_config(&data_dir.reset_key()?);
        let bind_error = |error| StartError::Bind {
            addr: config.listen,
            error,
        };
        let socket =
            crate::udp::bind_logged(config.listen, config.udp_buffer).map_err(bind_error)?;
        let endpoint = Endpoint::new(
            endpoint_config,
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_error)?;
        let local_addr = endpoint.local_addr().map_err(bind_error)?;
        info!(%local_addr, advertised = %advertised, "core listening");

        // Bound before anything runs, so that a taken port stops core at once.
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|error| StartError::MetricsBind { addr, error })?,
            ),
            None => None,
        };
        let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
        let telemetry = crate::telemetry::Telemetry::default();
        let commits = telemetry.store_commit.clone();
        store.observe_commits(Box::new(move |took, _| commits.observe(took.as_secs_f64())));
        let config_login = (
            config.login_max_failures,
            config.login_lockout,
            config.login_delay,
        );
        let release_files = crate::releases::ReleaseFiles::new(data_dir.root());
        release_files.clear_leftovers();
        let deploys = crate::releases::deploy::Deploys::new(config.max_downloads);
        let shared = Arc::new(Shared {
            config,
            store,
            release_files,
            deploys,
            data_dir,
            presence: Presence::default(),
            started_at_ms: clock.now_ms(),
            clock,
            shutdown: CancellationToken::new(),
            terminals: Default::default(),
            endpoint: endpoint.clone(),
            handshakes: AtomicUsize::new(0),
            handshakes_deferred: AtomicU64::new(0),
            backups: Default::default(),
            admin_connections: Default::default(),
            history: Default::default(),
            telemetry,
            alerts: Default::default(),
            deliveries: Default::default(),
            tasks: Default::default(),
            login_throttle: std::sync::Mutex::new(crate::auth::throttle::Throttle::new(
                config_login.0,
                config_login.1,
                config_login.2,
            )),
        });
        let mut tasks = vec![
            tokio::spawn(accept_loop(shared.clone(), endpoint.clone())),
            tokio::spawn(chores(shared.clone())),
            tokio::spawn(pruning(shared.clone())),
            tokio::spawn(crate::alerts::run(shared.clone())),
            tokio::spawn(crate::tasks::run(shared.clone())),
        ];
        crate::releases::deploy::resume_all(&shared);
        if let Some(listener) = metrics_listener {
            tasks.push(tokio::spawn(crate::telemetry::http::serve(
                shared.clone(),
                listener,
            )));
        }
        Ok(Core {
            shared,
            endpoint,
            tasks,
            metrics_addr,
        })
    }

    /// The TCP address of the metrics and health listener, when `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The UDP address core is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_addr().expect("bound endpoint")
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.shared.data_dir
    }

    /// Nodes connected and authenticated right now.
    pub fn connected_nodes(&self) -> usize {
        self.shared.presence.connected()
    }

    /// Heartbeats accepted from all nodes since start.
    pub fn heartbeats_received(&self) -> u64 {
        self.shared
            .presence
            .heartbeats_total
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Datagrams from all nodes that did not decode, since start.
    pub fn malformed_datagrams(&self) -> u64 {
        self.shared
            .presence
            .malformed_total
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops accepting, tells every connection core is going away, flushes last-seen times and
    /// closes the database.
    pub async fn shutdown(self) {
        let Core {
            shared,
            endpoint,
            tasks,
            ..
        } = self;
        shared.shutdown.cancel();
        endpoint.close(
            VarInt::from_u32(ErrorCode::SHUTTING_DOWN.close_code()),
            b"core is shutting down",
        );
        for task in tasks {
            let _ = task.await;
        }
        // Connection tasks record their nodes offline as they end; give them a moment.
        let _ = tokio::time::timeout(Duration::from_secs(5), endpoint.wait_idle()).await;
        for _ in 0..50 {
            if shared.presence.connected() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        flush_last_seen(&shared).await;
        crate::history::flush(&shared).await;
        // The database is released when the last task holding core's state has ended: wait
        // for them (briefly), so that a stopped core's data directory is free for the next
        // process (`tether-core admin issue`, a restore, a new core).
        for _ in 0..250 {
            if Arc::strong_count(&shared) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let store = shared.store.clone();
        drop(shared);
        // Its writer ends once every handle is gone (a straggler could hold one: not forever).
        let _ = tokio::time::timeout(Duration::from_secs(5), store.close()).await;
        info!("core stopped");
    }
}

/// Removes database copies a backup left behind when core stopped in the middle of it.
fn remove_backup_leftovers(data_dir: &DataDir) {
    let Ok(entries) = std::fs::read_dir(data_dir.root()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.starts_with(crate::admin::BACKUP_COPY_PREFIX))
        {
            info!(file = %entry.path().display(), "removing a backup's leftover database copy");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The address to advertise: `public_addr` if given; else, when listening on every address, the
/// one recorded in the data directory if its port is the one listened on (so a restored core, or
/// one once started with `--public-addr`, keeps telling nodes the name they know); else one
/// derived from the listening address.
fn advertised_addr(config: &CoreConfig, data_dir: &DataDir) -> String {
    if config.public_addr.is_none() && config.listen.ip().is_unspecified() {
        let port = config.listen.port().to_string();
        if let Ok(recorded) = data_dir.advertised_addr()
            && recorded.rsplit_once(':').is_some_and(|(_, p)| p == port)
        {
            return recorded;
        }
    }
    config.advertised_addr()
}

/// Concurrent requests (and terminals) on one admin connection.
const ADMIN_BIDI_STREAMS: VarInt = VarInt::from_u32(64);
/// Output streams a node may have open at once, raised on its first command; twice the limit of
/// running commands, so that streams still closing do not hold up new ones.
pub(crate) const EXEC_UNI_STREAMS: VarInt =
    VarInt::from_u32(2 * tether_wire::limits::MAX_EXECS_PER_NODE as u32);

async fn accept_loop(shared: Arc<Shared>, endpoint: Endpoint) {
    loop {
        let incoming = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            incoming = endpoint.accept() => incoming,
        };
        let Some(incoming) = incoming else { return };
        let under_way = shared.handshakes.load(Ordering::Relaxed);
        let limit = shared.config.max_handshakes;
        if under_way >= limit.div_ceil(2) && !incoming.remote_address_validated() {
            // Busy: a sender must first show it owns its address (a QUIC retry, one round trip,
            // no state kept), so forged first packets cannot take the slots from real nodes.
            shared.handshakes_deferred.fetch_add(1, Ordering::Relaxed);
            if let Err(refused) = incoming.retry() {
                refused.into_incoming().ignore();
            }
            continue;
        }
        if under_way >= limit {
            // No answer at all, which costs core nothing: the node sends its first packet again
            // after its probe timeout, and each time a little later, so a storm queues itself.
            incoming.ignore();
            shared.handshakes_deferred.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let remote = incoming.remote_address();
        // Accepted here rather than in the task: `Incoming` is large, and a task keeps its
        // captured values for life.
        let connecting = match incoming.accept() {
            Ok(connecting) => connecting,
            Err(e) => {
                debug!(%remote, error = %e, "could not accept a connection");
                continue;
            }
        };
        shared.handshakes.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        tokio::spawn(async move {
            let slot = HandshakeSlot(&shared.handshakes);
            // A peer that stops answering mid-handshake gives its slot back after this.
            let handshake = tokio::time::timeout(shared.config.hello_timeout, connecting).await;
            drop(slot);
            let connection = match handshake {
                Ok(Ok(connection)) => connection,
                Ok(Err(e)) => {
                    debug!(%remote, error = %e, "handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%remote, "handshake not finished in time");
                    return;
                }
            };
            let alpn = connection
                .handshake_data()
                .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                .and_then(|data| data.protocol);
            match alpn.as_deref() {
                Some(NODE_ALPN) => {
                    node_conn::serve(shared, connection)
                        .instrument(info_span!("node_conn", %remote))
                        .await
                }
                Some(ADMIN_ALPN) => {
                    connection.set_max_concurrent_bi_streams(ADMIN_BIDI_STREAMS);
                    // Boxed: rare, and larger than a node's connection, whose size this task has.
                    Box::pin(admin::serve(shared, connection))
                        .instrument(info_span!("admin_conn", %remote))
                        .await
                }
                _ => {
                    warn!(%remote, "connection without a known ALPN");
                    connection.close(
                        VarInt::from_u32(ErrorCode::UNSUPPORTED.close_code()),
                        b"unsupported protocol",
                    );
                }
            }
        });
    }
}

async fn flush_last_seen(shared: &Shared) {
    let seen: Vec<_> = shared
        .presence
        .all()
        .iter()
        .filter_map(|s| {
            let live = s.live.lock().expect("not poisoned");
            live.last_heartbeat_ms.map(|at| (s.node_id, at))
        })
        .collect();
    if let Err(e) = shared.store.flush_last_seen(seen).await {
        warn!(error = %e, "could not record last-seen times");
    }
}

/// How often silent nodes' history windows are sealed and deleted nodes' history dropped.
const HISTORY_SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Cuts what is kept on disk back to its bounds, every `prune_interval` (the first pass at
/// start-up). A task of its own, so that a long pass never holds up the other chores.
async fn pruning(shared: Arc<Shared>) {
    let mut prune = tokio::time::interval(shared.config.prune_interval);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The history sweep reads a key per node: every 10 minutes at most is plenty, since it only
    // seals windows of nodes silent for a whole window and forgets deleted ones.
    let mut swept: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = prune.tick() => {
                crate::retention::prune(&shared).await;
                if swept.is_none_or(|at| at.elapsed() >= HISTORY_SWEEP_EVERY) {
                    crate::history::sweep(&shared).await;
                    swept = Some(tokio::time::Instant::now());
                }
            }
        }
    }
}

/// How long a node stays flagged after the last attempt by another machine to use its identity.
pub const CONFLICTS_KEPT: Duration = Duration::from_secs(24 * 3600);

/// Periodic work: last-seen flushes, nonce expiry, keeping what is stored within its bounds.
async fn chores(shared: Arc<Shared>) {
    let mut flush = tokio::time::interval(shared.config.last_seen_flush);
    let mut history = tokio::time::interval(shared.config.history_flush);
    history.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweep = tokio::time::interval(Duration::from_secs(60));
    // Tokens expire on their own when presented; this ends the records of those never presented.
    let mut tty_sweep = tokio::time::interval(Duration::from_secs(5));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = flush.tick() => flush_last_seen(&shared).await,
            _ = history.tick() => crate::history::flush(&shared).await,
            _ = tty_sweep.tick() => shared.terminals.sweep(&shared).await,
            _ = sweep.tick() => {
                let now_secs = u64::try_from(shared.clock.now_secs()).unwrap_or(0);
                match shared.store.expire_nonces(now_secs).await {
                    Ok(0) => {}
                    Ok(n) => debug!(nonces = n, "expired enrollment nonces"),
                    Err(e) => warn!(error = %e, "nonce expiry failed"),
                }
                shared.presence.sweep_turns(tokio::time::Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use tether_store::NewApplication;
    use tether_wire::NodeId;

    #[test]
    fn the_recorded_address_is_kept_unless_told_otherwise() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        dir.open_or_init("core.example.net:4433").unwrap();
        let mut config = CoreConfig::with_data_dir(tmp.path().to_path_buf());
        // Listening everywhere on the same port: the recorded name stays (a restored core).
        assert_eq!(advertised_addr(&config, &dir), "core.example.net:4433");
        // Another port: derived anew.
        config.listen = "0.0.0.0:5000".parse().unwrap();
        assert!(advertised_addr(&config, &dir).ends_with(":5000"));
        // A specific address: that one.
        config.listen = "127.0.0.1:4433".parse().unwrap();
        assert_eq!(advertised_addr(&config, &dir), "127.0.0.1:4433");
        // --public-addr wins.
        config.public_addr = Some("new.example.net:4433".into());
        assert_eq!(advertised_addr(&config, &dir), "new.example.net:4433");
    }

    #[test]
    fn retry_tokens_outlast_a_storm_and_addresses_may_change() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tether_certs::ca::CoreCa::generate("t").unwrap();
        let tls =
            tether_certs::tls::server_config(ca.cert_der(), ca.issue_server(&[]).unwrap()).unwrap();
        let config = quic_server_config(tls, &CoreConfig::with_data_dir(tmp.path().into()));
        // quinn offers no getters; its Debug output names every setting.
        let shown = format!("{:?}", config.unwrap());
        assert!(
            shown.contains("retry_token_lifetime: 120s"),
            "quinn's 15 s refused tokens in a storm: {shown}"
        );
        assert!(shown.contains("migration: true"), "{shown}");
    }

    #[tokio::test(start_paused = true)]
    async fn nonces_are_forgotten_once_their_window_has_passed() {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = DataDir::new(tmp.path().join("core"));
        data_dir.open_or_init("127.0.0.1:1").unwrap();
        let store = Store::open(&data_dir.database_path()).unwrap();
        let clock = Arc::new(ManualClock::at(1_000_000));
        let shared = Shared::for_tests(
            CoreConfig::with_data_dir(tmp.path().into()),
            store.clone(),
            data_dir,
            clock.clone(),
        );
        store
            .submit_application(NewApplication {
                node_id: NodeId::random(),
                hostname: "h".into(),
                public_key_pem: "k".into(),
                key_fingerprint: "f".into(),
                agent_version: "v".into(),
                remote_addr: None,
                nonce: vec![7; 64],
                nonce_expires_secs: 1_121, // a request stamped 1000 s, ±120 s window
                now_ms: 1_000_000,
                max_pending: 10,
                auto_approve_secret: None,
            })
            .await
            .unwrap();
        let chores = tokio::spawn(chores(shared.clone()));

        // Inside the window the nonce is kept, however often the sweep runs.
        clock.set(1_120_000);
        tokio::time::sleep(Duration::from_secs(125)).await;
        assert!(store.nonce_known(&[7; 64]).unwrap());
        // Past it, the next sweep (at most a minute later) forgets it.
        clock.set(1_122_000);
        tokio::time::sleep(Duration::from_secs(61)).await;
        // The sweep's write commits on the store's own thread: give it real time to land.
        let mut forgotten = false;
        for _ in 0..200 {
            tokio::task::yield_now().await;
            if !store.nonce_known(&[7; 64]).unwrap() {
                forgotten = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(forgotten, "the sweep after the window forgot the nonce");

        shared.shutdown.cancel();
        chores.await.unwrap();
    }
}

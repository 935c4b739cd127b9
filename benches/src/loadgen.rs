//! The load generator: N simulated nodes from one process, each with its own QUIC connection,
//! spread over several UDP endpoints so the simulator is not the bottleneck. Real enrollment
//! (core must auto-approve), real authentication, real heartbeats, answers to exec requests.
//!
//! Identities are cached in the state directory (one shared RSA key, and each node's id and
//! secret), so a second run skips key generation and enrollment. Nodes that core no longer knows
//! enroll again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quinn::Endpoint;
use serde::Serialize;
use tether_certs::node_key::NodeKey;
use tether_wire::control::CoreMessage;
use tether_wire::token::JoinToken;
use tether_wire::{ErrorCode, NodeId};
use tokio_util::sync::CancellationToken;

use crate::sim::{self, SimError, SimNode};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct LoadgenConfig {
    /// Core's address.
    pub core: SocketAddr,
    /// The join token.
    pub token: JoinToken,
    /// How many nodes.
    pub nodes: usize,
    /// New connections per second while ramping up.
    pub ramp: u32,
    /// Heartbeat interval; default: what core dictates.
    pub heartbeat_interval: Option<Duration>,
    /// Stop after this long; default: when cancelled.
    pub duration: Option<Duration>,
    /// Where identities are cached.
    pub state_dir: PathBuf,
    /// UDP endpoints to spread the connections over.
    pub endpoints: usize,
    /// Connect without enrolling or authenticating: the server is a bare quinn server
    /// (`tether-bench-server --mode bare`) that only reads datagrams.
    pub bare: bool,
    /// Send no heartbeats before this long after the start (so that a fast heartbeat rate
    /// does not compete with the ramp).
    pub heartbeats_after: Duration,
}

/// Counters, shared by every simulated node.
#[derive(Debug, Default)]
pub struct Counters {
    /// Nodes enrolled by this run.
    pub enrolled: AtomicU64,
    /// Nodes connected and authenticated now.
    pub online: AtomicU64,
    /// Successful authentications (first connections and reconnections).
    pub authentications: AtomicU64,
    /// Connections lost after authentication.
    pub disconnects: AtomicU64,
    /// Heartbeat datagrams sent.
    pub heartbeats: AtomicU64,
    /// Exec requests answered.
    pub execs: AtomicU64,
    /// Agent releases fetched to the end (simulated updates).
    pub updates: AtomicU64,
    /// Bytes of release files received.
    pub update_bytes: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
    /// Why sessions ended, by reason.
    disconnect_reasons: Mutex<BTreeMap<String, u64>>,
    connect_ms: Mutex<Vec<u32>>,
}

impl Counters {
    fn disconnected(&self, reason: &str) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
        *self
            .disconnect_reasons
            .lock()
            .expect("not poisoned")
            .entry(reason.to_string())
            .or_default() += 1;
    }

    fn failure(&self, reason: &str) {
        *self
            .failures
            .lock()
            .expect("not poisoned")
            .entry(reason.to_string())
            .or_default() += 1;
    }
}

/// What a run saw, as printed and written with `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Nodes simulated.
    pub nodes: usize,
    /// Nodes online at the end.
    pub online: u64,
    /// Seconds until every node was online the first time (if they all were).
    pub all_online_after_secs: Option<f64>,
    /// Nodes enrolled by this run (the rest came from the cache).
    pub enrolled: u64,
    /// Authentications, reconnections included.
    pub authentications: u64,
    /// Connections lost after authentication.
    pub disconnects: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Exec requests answered.
    pub execs_answered: u64,
    /// Agent releases fetched to the end (each then reconnects as the new version).
    pub updates: u64,
    /// Bytes of release files received.
    pub update_bytes: u64,
    /// Failed attempts by reason.
    pub failures: BTreeMap<String, u64>,
    /// Connect + authenticate latency, milliseconds: p50, p90, p99, max.
    pub connect_ms: Option<[u32; 4]>,
    /// How long the run lasted.
    pub elapsed_secs: f64,
}

/// The cached identities.
struct Identities {
    key: NodeKey,
    path: PathBuf,
    entries: Mutex<Vec<(NodeId, Option<[u8; 32]>)>>,
}

/// The simulated nodes' RSA key, `sim.key` in the state directory (0700), made the first time.
pub fn load_or_create_key(dir: &Path) -> anyhow::Result<NodeKey> {
    tether_certs::files::create_private_dir(dir)?;
    let key_path = dir.join("sim.key");
    if key_path.exists() {
        return Ok(NodeKey::from_pem(&tether_certs::files::read_private_text(
            &key_path,
        )?)?);
    }
    let key = NodeKey::generate()?;
    tether_certs::files::write_private_file(&key_path, key.to_pem().as_bytes())?;
    Ok(key)
}

impl Identities {
    fn load(dir: &Path, nodes: usize) -> anyhow::Result<Self> {
        let key = load_or_create_key(dir)?;
        let path = dir.join("identities");
        let mut entries: Vec<(NodeId, Option<[u8; 32]>)> = Vec::new();
        if path.exists() {
            for line in tether_certs::files::read_private_text(&path)?.lines() {
                let mut parts = line.split_whitespace();
                let (Some(id), Some(secret)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let secret = hex::decode(secret)
                    .ok()
                    .and_then(|s| <[u8; 32]>::try_from(s).ok());
                if let (Ok(id), Some(secret)) = (id.parse(), secret) {
                    entries.push((id, Some(secret)));
                }
            }
        }
        while entries.len() < nodes {
            entries.push((NodeId::random(), None));
        }
        Ok(Self {
            key,
            path,
            entries: Mutex::new(entries),
        })
    }

    fn get(&self, index: usize) -> (NodeId, Option<[u8; 32]>) {
        self.entries.lock().expect("not poisoned")[index]
    }

    fn set(&self, index: usize, secret: Option<[u8; 32]>) {
        self.entries.lock().expect("not poisoned")[index].1 = secret;
    }

    fn save(&self) -> anyhow::Result<()> {
        let text: String = self
            .entries
            .lock()
            .expect("not poisoned")
            .iter()
            .filter_map(|(id, secret)| secret.map(|s| format!("{id} {}\n", hex::encode(s))))
            .collect();
        tether_certs::files::write_private_file(&self.path, text.as_bytes())?;
        Ok(())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn now_secs() -> i64 {
    now_ms() / 1000
}

fn failure_reason(error: &SimError) -> String {
    match error {
        SimError::Refused(code, _) => code.name().to_string(),
        SimError::Connection(text) => text.clone(),
        SimError::Unexpected(_) => "unexpected answer".into(),
    }
}

/// Enrollments under way at once. Each costs the generator two RSA private-key operations; when
/// it starts more than its CPUs finish, every one of them misses core's hello timeout, is
/// retried, and the ramp collapses (seen at 50,000 nodes: 60 a second and falling). Nodes on
/// real machines each have their own CPU.
fn enrollment_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 8
}

/// Runs the simulation until `stop` or `duration`; prints progress to stderr every few seconds.
pub async fn run(config: LoadgenConfig, stop: CancellationToken) -> anyhow::Result<Report> {
    let started = Instant::now();
    let heartbeats_from = tokio::time::Instant::now() + config.heartbeats_after;
    let identities = Arc::new(Identities::load(&config.state_dir, config.nodes)?);
    let counters = Arc::new(Counters::default());
    let enrolling = Arc::new(tokio::sync::Semaphore::new(enrollment_slots()));
    let endpoints: Vec<Endpoint> = (0..config.endpoints.max(1))
        .map(|_| sim::client_endpoint(&config.token))
        .collect::<Result<_, _>>()?;
    if let Some(duration) = config.duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.cancel();
        });
    }

    let all_online = Arc::new(Mutex::new(None::<f64>));
    let progress = {
        let (counters, stop, all_online) = (counters.clone(), stop.clone(), all_online.clone());
        let nodes = config.nodes as u64;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let online = counters.online.load(Ordering::Relaxed);
                let mut first = all_online.lock().expect("not poisoned");
                if online == nodes && first.is_none() {
                    *first = Some(started.elapsed().as_secs_f64());
                    eprintln!(
                        "tether-loadgen: all {nodes} nodes online after {:.1}s",
                        started.elapsed().as_secs_f64()
                    );
                }
                eprintln!(
                    "tether-loadgen: [{:.1}s] {online}/{nodes} online, {} disconnects {:?}, {} enrolled, {} heartbeats, {} execs answered, failures {:?}",
                    started.elapsed().as_secs_f64(),
                    counters.disconnects.load(Ordering::Relaxed),
                    counters.disconnect_reasons.lock().expect("not poisoned"),
                    counters.enrolled.load(Ordering::Relaxed),
                    counters.heartbeats.load(Ordering::Relaxed),
                    counters.execs.load(Ordering::Relaxed),
                    counters.failures.lock().expect("not poisoned"),
                );
            }
        })
    };

    let mut tasks = tokio::task::JoinSet::new();
    let pace = Duration::from_secs_f64(1.0 / f64::from(config.ramp.max(1)));
    let mut next_start = tokio::time::Instant::now();
    for index in 0..config.nodes {
        tokio::select! {
            _ = tokio::time::sleep_until(next_start) => {}
            _ = stop.cancelled() => break,
        }
        next_start += pace;
        let endpoint = endpoints[index % endpoints.len()].clone();
        let simulated = Simulated {
            index,
            endpoint,
            config: config.clone(),
            heartbeats_from,
            identities: identities.clone(),
            counters: counters.clone(),
            enrolling: enrolling.clone(),
            stop: stop.clone(),
        };
        tasks.spawn(simulate(simulated));
    }
    stop.cancelled().await;
    while tasks.join_next().await.is_some() {}
    progress.abort();
    identities.save()?;
    for endpoint in &endpoints {
        endpoint.close(0u32.into(), b"loadgen done");
    }
    let mut latencies = counters.connect_ms.lock().expect("not poisoned").clone();
    latencies.sort_unstable();
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let all_online_after_secs = *all_online.lock().expect("not poisoned");
    Ok(Report {
        nodes: config.nodes,
        online: counters.online.load(Ordering::Relaxed),
        all_online_after_secs,
        enrolled: counters.enrolled.load(Ordering::Relaxed),
        authentications: counters.authentications.load(Ordering::Relaxed),
        disconnects: counters.disconnects.load(Ordering::Relaxed),
        heartbeats: counters.heartbeats.load(Ordering::Relaxed),
        execs_answered: counters.execs.load(Ordering::Relaxed),
        updates: counters.updates.load(Ordering::Relaxed),
        update_bytes: counters.update_bytes.load(Ordering::Relaxed),
        failures: counters.failures.lock().expect("not poisoned").clone(),
        connect_ms: (!latencies.is_empty()).then(|| {
            [
                pick(0.5),
                pick(0.9),
                pick(0.99),
                *latencies.last().expect("not empty"),
            ]
        }),
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

/// What one simulated node works with.
struct Simulated {
    index: usize,
    endpoint: Endpoint,
    config: LoadgenConfig,
    heartbeats_from: tokio::time::Instant,
    identities: Arc<Identities>,
    counters: Arc<Counters>,
    enrolling: Arc<tokio::sync::Semaphore>,
    stop: CancellationToken,
}

/// One simulated node, reconnecting with jittered backoff until stopped.
async fn simulate(simulated: Simulated) {
    let Simulated {
        index,
        endpoint,
        config,
        heartbeats_from,
        identities,
        counters,
        enrolling,
        stop,
    } = simulated;
    let mut attempt: u32 = 0;
    // The version this node reports: a deploy changes it.
    let mut version = sim::SIM_VERSION.to_string();
    while !stop.is_cancelled() {
        let (id, secret) = identities.get(index);
        let attempt_once = async {
            let begun = Instant::now();
            let node = match secret {
                _ if config.bare => {
                    let interval = config.heartbeat_interval.unwrap_or(Duration::from_secs(30));
                    let interval_ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX);
                    SimNode::connect_bare(&endpoint, config.core, id, interval_ms).await?
                }
                Some(secret) => {
                    SimNode::connect_as(&endpoint, config.core, id, &secret, now_secs, &version)
                        .await?
                }
                None => {
                    let _slot = enrolling.acquire().await.expect("never closed");
                    let (node, secret) = SimNode::join(
                        &endpoint,
                        config.core,
                        &config.token,
                        &identities.key,
                        id,
                        now_secs,
                    )
                    .await?;
                    identities.set(index, Some(secret));
                    counters.enrolled.fetch_add(1, Ordering::Relaxed);
                    node
                }
            };
            let elapsed = u32::try_from(begun.elapsed().as_millis()).unwrap_or(u32::MAX);
            counters
                .connect_ms
                .lock()
                .expect("not poisoned")
                .push(elapsed);
            Ok::<_, SimError>(node)
        };
        let result = tokio::select! {
            result = attempt_once => result,
            _ = stop.cancelled() => return,
        };
        match result {
            Ok(node) => {
                attempt = 0;
                counters.authentications.fetch_add(1, Ordering::Relaxed);
                counters.online.fetch_add(1, Ordering::Relaxed);
                let reason = session(
                    node,
                    &config,
                    heartbeats_from,
                    &counters,
                    &stop,
                    &mut version,
                )
                .await;
                counters.online.fetch_sub(1, Ordering::Relaxed);
                if stop.is_cancelled() {
                    return;
                }
                counters.disconnected(&reason);
                if reason == UPDATED {
                    // Back at once, as the new version, as a restarted agent is.
                    attempt = 0;
                    continue;
                }
            }
            Err(error) => {
                counters.failure(&failure_reason(&error));
                if let SimError::Refused(ErrorCode::UNKNOWN_NODE | ErrorCode::BAD_PROOF, _) = error
                {
                    identities.set(index, None); // core forgot us: enroll again
                }
            }
        }
        attempt = attempt.saturating_add(1);
        let bound = Duration::from_millis(500)
            .saturating_mul(1 << attempt.min(6))
            .min(Duration::from_secs(30));
        let delay = Duration::from_millis(rand::random::<u64>() % (bound.as_millis() as u64 + 1));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Why a session ended when its node installed a release.
const UPDATED: &str = "updated to a new agent version";

/// Heartbeats (none before `heartbeats_from`), exec answers and release updates until the
/// connection ends or the run stops; why it ended. An update fetches the file (and throws it
/// away), reports as an agent does, sets `version` and ends the session with [`UPDATED`].
async fn session(
    mut node: SimNode,
    config: &LoadgenConfig,
    heartbeats_from: tokio::time::Instant,
    counters: &Counters,
    stop: &CancellationToken,
    version: &mut String,
) -> String {
    use tether_wire::control::NodeMessage;
    use tether_wire::deploys::{UpdateState, UpdateStatus};
    if !config.bare {
        let facts = sim::sim_facts(node.id, version);
        if node.params.static_facts_digest != Some(facts.digest())
            && let Err(error) = node.send(&NodeMessage::StaticFacts(facts)).await
        {
            return failure_reason(&error);
        }
    }
    let mut fetching: Option<(
        tether_wire::deploys::UpdateOrder,
        tokio::task::JoinHandle<Result<u64, sim::SimError>>,
    )> = None;
    let interval = config
        .heartbeat_interval
        .unwrap_or(Duration::from_millis(u64::from(
            node.params.heartbeat_interval_ms,
        )));
    // Spread first heartbeats over the interval, as independent machines would.
    let offset = Duration::from_millis(rand::random::<u64>() % (interval.as_millis() as u64 + 1));
    let first = (tokio::time::Instant::now() + offset).max(heartbeats_from + offset);
    let mut heartbeats = tokio::time::interval_at(first, interval);
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                node.connection.close(0u32.into(), b"loadgen stopping");
                return "stopped".into();
            }
            _ = heartbeats.tick() => {
                if node.heartbeat(now_ms()).is_ok() {
                    counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                }
            }
            fetched = async { (&mut fetching.as_mut().expect("guarded").1).await }, if fetching.is_some() => {
                let (order, _) = fetching.take().expect("guarded");
                let status = |state, bytes, error| NodeMessage::UpdateStatus(UpdateStatus { deploy: order.deploy, state, bytes, error });
                match fetched {
                    Ok(Ok(bytes)) => {
                        counters.updates.fetch_add(1, Ordering::Relaxed);
                        counters.update_bytes.fetch_add(bytes, Ordering::Relaxed);
                        let _ = node.send(&status(UpdateState::Verifying, bytes, None)).await;
                        let _ = node.send(&status(UpdateState::Installing, bytes, None)).await;
                        node.finish().await;
                        node.connection.close(0u32.into(), b"node updating");
                        *version = order.manifest.version.clone();
                        return UPDATED.into();
                    }
                    Ok(Err(error)) => return failure_reason(&error),
                    Err(_) => return "download task failed".into(),
                }
            }
            message = node.next_message() => match message {
                Ok(Some(CoreMessage::Update(order))) => {
                    if order.manifest.version == *version {
                        let skipped = NodeMessage::UpdateStatus(UpdateStatus { deploy: order.deploy, state: UpdateState::Skipped, bytes: 0, error: Some("runs it already".into()) });
                        let _ = node.send(&skipped).await;
                    } else if fetching.is_none() {
                        let downloading = NodeMessage::UpdateStatus(UpdateStatus { deploy: order.deploy, state: UpdateState::Downloading, bytes: 0, error: None });
                        let _ = node.send(&downloading).await;
                        let connection = node.connection.clone();
                        let fetch_order = order.clone();
                        let task = tokio::spawn(async move { sim::download(&connection, &fetch_order).await });
                        fetching = Some((order, task));
                    }
                }
                Ok(Some(CoreMessage::Exec(request))) => {
                    let connection = node.connection.clone();
                    if sim::answer_exec(&connection, &request, now_ms()).await.is_ok() {
                        counters.execs.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return "core finished the control stream".into(),
                Err(error) => return failure_reason(&error),
            },
        }
    }
}

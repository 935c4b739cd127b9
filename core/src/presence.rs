//! Who is connected right now, and what their latest heartbeat said. In memory only: after a
//! restart every node is offline until it reconnects.
//!
//! The global map is locked only when a session starts, ends or is listed; a heartbeat touches only
//! its own session's small mutex, so heartbeats from different nodes never contend.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;
use tether_wire::heartbeat::{Datagram, DatagramError, Metrics, decode_datagram};
use tether_wire::{ExecutionId, NodeId};

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::mailbox::Mailbox;

/// Commands another task can give a node's session.
#[derive(Debug)]
pub(crate) enum SessionCommand {
    /// The node was deleted: tell it, then close.
    Remove {
        /// For the node's log.
        reason: String,
    },
    /// Send a frame on the control stream (exec requests and cancels). Boxed: the message is
    /// large, and the queue holds up to `COMMAND_QUEUE` of them.
    Send(Box<tether_wire::control::CoreMessage>),
}

/// Commands a session queues before senders wait.
pub(crate) const COMMAND_QUEUE: usize = 4;

/// One authenticated node connection.
#[derive(Debug)]
pub(crate) struct Session {
    pub node_id: NodeId,
    /// The machine it runs on ([`tether_wire::control::machine_fingerprint`]).
    pub machine: tether_wire::control::Digest,
    /// Distinguishes this session from older or newer ones of the same node.
    pub generation: u64,
    pub connection: quinn::Connection,
    /// Commands for the session task; closed when it ends.
    pub commands: Mailbox<SessionCommand>,
    pub live: Mutex<Live>,
    /// Whether the node may open as many output streams as it may run commands (it starts with
    /// few: see `server::transport_config`).
    pub exec_streams_raised: std::sync::atomic::AtomicBool,
}

/// What the latest heartbeats said.
#[derive(Debug, Default, Clone)]
pub struct Live {
    /// Latest metrics.
    pub metrics: Option<Metrics>,
    /// When they arrived (core's clock), unix ms.
    pub metrics_at_ms: Option<i64>,
    /// Last accepted heartbeat (core's clock), unix ms.
    pub last_heartbeat_ms: Option<i64>,
    /// False once `offline_after` passed without a heartbeat.
    pub heartbeat_ok: bool,
    /// Heartbeats accepted on this connection.
    pub heartbeats: u64,
    /// Static facts messages received on this connection.
    pub facts_received: u64,
    /// Datagrams that did not decode on this connection.
    pub malformed: u64,
    /// Heartbeats refused for clock skew on this connection.
    pub skewed: u64,
    /// Node clock minus core clock at the last heartbeat, when beyond a second.
    pub clock_skew_ms: Option<i64>,
    /// The agent's own state, as last reported on this connection.
    pub agent: Option<tether_wire::heartbeat::AgentState>,
}

/// What became of one datagram.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingested {
    /// A heartbeat was accepted; `resumed` if the node had been marked offline for silence.
    Accepted {
        /// The node had gone silent before this one.
        resumed: bool,
    },
    /// The agent reported its own state (kept in [`Live::agent`]); `news` when it is the
    /// connection's first report or the agent restarted since the previous one.
    Agent {
        /// Worth keeping in the store.
        news: bool,
    },
    /// A valid datagram of a kind core does not act on.
    Ignored,
    /// Not a valid datagram: dropped and counted.
    Malformed(DatagramError),
    /// A heartbeat whose timestamp is too far from core's clock: refused and counted.
    Skewed {
        /// Node clock minus core clock.
        skew_ms: i64,
    },
}

/// Skew below this is network delay, not a wrong clock.
const NOTABLE_SKEW_MS: i64 = 1000;

/// Decodes one datagram and updates `live`: the whole of core's per-heartbeat work.
pub fn ingest_datagram(
    live: &Mutex<Live>,
    bytes: &[u8],
    now_ms: i64,
    max_skew_ms: i64,
) -> Ingested {
    let heartbeat = match decode_datagram(bytes) {
        Ok(Datagram::Heartbeat(heartbeat)) => heartbeat,
        Ok(Datagram::AgentState(state)) => {
            let state = state.trimmed();
            let mut live = live.lock().expect("not poisoned");
            let news = live
                .agent
                .as_ref()
                .is_none_or(|had| had.pid != state.pid || had.restarts != state.restarts);
            live.agent = Some(state);
            return Ingested::Agent { news };
        }
        #[allow(unreachable_patterns)] // `Datagram` is non-exhaustive: kinds to come.
        Ok(_) => {
            // A datagram kind this version does not use: not an error of the node's, just ignored.
            return Ingested::Ignored;
        }
        Err(e) => {
            live.lock().expect("not poisoned").malformed += 1;
            return Ingested::Malformed(e);
        }
    };
    let skew_ms = heartbeat.timestamp_ms.saturating_sub(now_ms);
    let mut live = live.lock().expect("not poisoned");
    live.clock_skew_ms = (skew_ms.abs() > NOTABLE_SKEW_MS).then_some(skew_ms);
    if skew_ms.abs() > max_skew_ms {
        live.skewed += 1;
        return Ingested::Skewed { skew_ms };
    }
    let resumed = !live.heartbeat_ok;
    live.heartbeat_ok = true;
    live.heartbeats += 1;
    live.last_heartbeat_ms = Some(now_ms);
    live.metrics = Some(heartbeat.metrics);
    live.metrics_at_ms = Some(now_ms);
    Ingested::Accepted { resumed }
}

/// When a silent node becomes offline. Pure: the caller passes the time, so it is tested with
/// tokio's paused clock.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    offline_after: Duration,
    deadline: Instant,
}

impl Liveness {
    /// A node just heard from at `now`.
    pub fn new(offline_after: Duration, now: Instant) -> Self {
        Self {
            offline_after,
            deadline: now + offline_after,
        }
    }

    /// A heartbeat arrived at `now`.
    pub fn heard(&mut self, now: Instant) {
        self.deadline = now + self.offline_after;
    }

    /// When the node is offline unless heard from before.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the node has been silent for `offline_after` at `now`.
    pub fn is_silent(&self, now: Instant) -> bool {
        now >= self.deadline
    }
}

/// How long replacements of a node's connection are remembered.
pub const TURNS_WINDOW: Duration = Duration::from_secs(60);
/// Replacements between the same two addresses within [`TURNS_WINDOW`] after which the next is
/// refused: two machines taking turns, not a network.
pub const TURNS_LIMIT: usize = 2;

/// The recent replacements of one node's connection. A real network changes a node's address
/// without a new connection (QUIC migration), and a restarted agent comes from a new port; two
/// copies of one machine, each reconnecting when the other replaces it, take turns between
/// the same two addresses within seconds. Pure: the caller passes the time.
#[derive(Debug, Default, Clone)]
pub struct Turns {
    recent: std::collections::VecDeque<(Instant, std::net::SocketAddr, std::net::SocketAddr)>,
}

impl Turns {
    /// A connection from `new` is about to replace the node's connection from `old`: false to
    /// let it (and remember it), true to hold the established one because the two addresses
    /// have already replaced each other [`TURNS_LIMIT`] times within [`TURNS_WINDOW`].
    pub fn hold(
        &mut self,
        now: Instant,
        old: std::net::SocketAddr,
        new: std::net::SocketAddr,
    ) -> bool {
        self.forget_before(now);
        if old == new {
            // The same address again (a restart that got its port back, a reconnect through the
            // same mapping): the old connection is simply dead.
            return false;
        }
        let between = self
            .recent
            .iter()
            .filter(|(_, a, b)| (*a == old && *b == new) || (*a == new && *b == old))
            .count();
        if between >= TURNS_LIMIT {
            return true;
        }
        self.recent.push_back((now, old, new));
        if self.recent.len() > 8 {
            self.recent.pop_front();
        }
        false
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) > TURNS_WINDOW)
        {
            self.recent.pop_front();
        }
    }

    /// Nothing remembered any more.
    pub fn is_empty(&mut self, now: Instant) -> bool {
        self.forget_before(now);
        self.recent.is_empty()
    }
}

/// What an admin decided about a node waiting for enrollment.
#[derive(Debug)]
pub(crate) enum Notice {
    Approved { secret: [u8; 32] },
    Rejected { reason: String },
}

/// An execution's output stream, once its node opened it.
pub(crate) type ExecStream = tether_wire::stream::FramedRecv;

/// The registry.
#[derive(Debug, Default)]
pub(crate) struct Presence {
    sessions: Mutex<HashMap<NodeId, Arc<Session>>>,
    exec_streams: Mutex<HashMap<(NodeId, ExecutionId), oneshot::Sender<ExecStream>>>,
    waiting: Mutex<HashMap<NodeId, (u64, oneshot::Sender<Notice>)>>,
    /// Recent replacements, only of nodes that had some within [`TURNS_WINDOW`].
    turns: Mutex<HashMap<NodeId, Turns>>,
    next_generation: AtomicU64,
    /// Malformed datagrams from all nodes since start.
    pub malformed_total: AtomicU64,
    /// Heartbeats accepted from all nodes since start.
    pub heartbeats_total: AtomicU64,
    /// Enrollments approved and answered since start.
    pub enrollments_total: AtomicU64,
}

impl Presence {
    pub fn next_generation(&self) -> u64 {
        self.next_generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Makes `session` the node's current one; returns the one it replaces.
    pub fn register(&self, session: Arc<Session>) -> Option<Arc<Session>> {
        self.sessions
            .lock()
            .expect("not poisoned")
            .insert(session.node_id, session)
    }

    /// Removes the node's session if it is still `generation`; true if it was.
    pub fn unregister(&self, node_id: NodeId, generation: u64) -> bool {
        let mut sessions = self.sessions.lock().expect("not poisoned");
        match sessions.get(&node_id) {
            Some(current) if current.generation == generation => {
                sessions.remove(&node_id);
                true
            }
            _ => false,
        }
    }

    pub fn get(&self, node_id: NodeId) -> Option<Arc<Session>> {
        self.sessions
            .lock()
            .expect("not poisoned")
            .get(&node_id)
            .cloned()
    }

    /// Runs `f` on every session at once under one lock: for a look at the whole fleet, one lock
    /// instead of one per node. `f` must be quick and take no other presence lock (a session's
    /// own `live` is fine).
    pub fn with_sessions<T>(&self, f: impl FnOnce(&HashMap<NodeId, Arc<Session>>) -> T) -> T {
        f(&self.sessions.lock().expect("not poisoned"))
    }

    pub fn all(&self) -> Vec<Arc<Session>> {
        self.sessions
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect()
    }

    pub fn connected(&self) -> usize {
        self.sessions.lock().expect("not poisoned").len()
    }

    /// Sessions whose heartbeats arrive in time.
    pub fn online(&self) -> usize {
        // Copied out first so that no heartbeat waits on the registry while each is looked at.
        self.all()
            .iter()
            .filter(|session| session.live.lock().expect("not poisoned").heartbeat_ok)
            .count()
    }

    /// Registers a connection waiting for a decision on its application. A newer waiter of the
    /// same node replaces the older one (whose receiver then fails).
    pub fn wait_for_decision(&self, node_id: NodeId) -> (u64, oneshot::Receiver<Notice>) {
        let generation = self.next_generation();
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .expect("not poisoned")
            .insert(node_id, (generation, tx));
        (generation, rx)
    }

    pub fn stop_waiting(&self, node_id: NodeId, generation: u64) {
        let mut waiting = self.waiting.lock().expect("not poisoned");
        if waiting.get(&node_id).is_some_and(|(g, _)| *g == generation) {
            waiting.remove(&node_id);
        }
    }

    /// Announces that `node` will open an output stream for `exec_id`.
    pub fn expect_exec_stream(
        &self,
        node: NodeId,
        exec_id: ExecutionId,
    ) -> oneshot::Receiver<ExecStream> {
        let (tx, rx) = oneshot::channel();
        self.exec_streams
            .lock()
            .expect("not poisoned")
            .insert((node, exec_id), tx);
        rx
    }

    /// Hands a stream `node` opened to the execution waiting for it; gives it back if none is.
    pub fn deliver_exec_stream(
        &self,
        node: NodeId,
        exec_id: ExecutionId,
        stream: ExecStream,
    ) -> Result<(), ExecStream> {
        let waiter = self
            .exec_streams
            .lock()
            .expect("not poisoned")
            .remove(&(node, exec_id));
        match waiter {
            Some(tx) => tx.send(stream),
            None => Err(stream),
        }
    }

    /// The execution no longer waits for that stream.
    pub fn forget_exec_stream(&self, node: NodeId, exec_id: ExecutionId) {
        self.exec_streams
            .lock()
            .expect("not poisoned")
            .remove(&(node, exec_id));
    }

    /// See [`Turns::hold`].
    pub fn hold_established(
        &self,
        node_id: NodeId,
        now: Instant,
        old: std::net::SocketAddr,
        new: std::net::SocketAddr,
    ) -> bool {
        self.turns
            .lock()
            .expect("not poisoned")
            .entry(node_id)
            .or_default()
            .hold(now, old, new)
    }

    /// Forgets replacements older than [`TURNS_WINDOW`] (memory only for nodes replaced lately).
    pub fn sweep_turns(&self, now: Instant) {
        self.turns
            .lock()
            .expect("not poisoned")
            .retain(|_, turns| !turns.is_empty(now));
    }

    /// Pushes a decision to the waiting connection, if there is one.
    pub fn notify(&self, node_id: NodeId, notice: Notice) -> bool {
        let waiter = self.waiting.lock().expect("not poisoned").remove(&node_id);
        waiter.is_some_and(|(_, tx)| tx.send(notice).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_wire::heartbeat::{Heartbeat, encode_datagram};

    fn datagram(timestamp_ms: i64, cpu: f32) -> Vec<u8> {
        let mut hb = Heartbeat {
            seq: 1,
            timestamp_ms,
            ..Default::default()
        };
        hb.metrics.cpu_percent = cpu;
        encode_datagram(&Datagram::Heartbeat(hb))
    }

    #[test]
    fn heartbeats_update_live_state() {
        let live = Mutex::new(Live {
            heartbeat_ok: true,
            ..Default::default()
        });
        assert_eq!(
            ingest_datagram(&live, &datagram(10_000, 12.5), 10_050, 120_000),
            Ingested::Accepted { resumed: false }
        );
        let state = live.lock().unwrap().clone();
        assert_eq!(state.metrics.unwrap().cpu_percent, 12.5);
        assert_eq!(state.last_heartbeat_ms, Some(10_050));
        assert_eq!(state.clock_skew_ms, None, "50 ms is network delay");
    }

    #[test]
    fn malformed_datagrams_are_counted_and_change_nothing() {
        let live = Mutex::new(Live {
            heartbeat_ok: true,
            ..Default::default()
        });
        assert!(matches!(
            ingest_datagram(&live, &[0xff, 1, 2], 0, 1000),
            Ingested::Malformed(_)
        ));
        assert!(matches!(
            ingest_datagram(&live, &[], 0, 1000),
            Ingested::Malformed(_)
        ));
        let state = live.lock().unwrap().clone();
        assert_eq!(state.malformed, 2);
        assert!(state.metrics.is_none());
    }

    #[test]
    fn skewed_heartbeats_are_refused_and_shown() {
        let live = Mutex::new(Live {
            heartbeat_ok: true,
            ..Default::default()
        });
        let now = 1_000_000;
        assert_eq!(
            ingest_datagram(&live, &datagram(now + 300_000, 1.0), now, 120_000),
            Ingested::Skewed { skew_ms: 300_000 }
        );
        let state = live.lock().unwrap().clone();
        assert_eq!(state.skewed, 1);
        assert_eq!(state.clock_skew_ms, Some(300_000));
        assert!(state.metrics.is_none(), "refused heartbeat not used");
        // Within the window, but notable: accepted and shown.
        assert_eq!(
            ingest_datagram(&live, &datagram(now - 5_000, 1.0), now, 120_000),
            Ingested::Accepted { resumed: false }
        );
        assert_eq!(live.lock().unwrap().clock_skew_ms, Some(-5_000));
    }

    #[test]
    fn a_heartbeat_after_silence_resumes() {
        let live = Mutex::new(Live {
            heartbeat_ok: false,
            ..Default::default()
        });
        assert_eq!(
            ingest_datagram(&live, &datagram(0, 1.0), 0, 1000),
            Ingested::Accepted { resumed: true }
        );
        assert_eq!(
            ingest_datagram(&live, &datagram(0, 1.0), 0, 1000),
            Ingested::Accepted { resumed: false }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn silence_for_offline_after_means_offline() {
        let offline_after = Duration::from_secs(90);
        let start = Instant::now();
        let mut liveness = Liveness::new(offline_after, start);
        // Heartbeats every 30 s keep it alive however long it runs.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(30)).await;
            assert!(!liveness.is_silent(Instant::now()));
            liveness.heard(Instant::now());
        }
        let last = Instant::now();
        tokio::time::sleep(Duration::from_secs(89)).await;
        assert!(
            !liveness.is_silent(Instant::now()),
            "89 s of silence is not yet offline"
        );
        tokio::time::sleep_until(liveness.deadline()).await;
        assert!(liveness.is_silent(Instant::now()));
        assert_eq!(Instant::now() - last, offline_after);
        assert_eq!(Instant::now() - start, Duration::from_secs(300 + 90));
    }

    #[tokio::test(start_paused = true)]
    async fn two_machines_taking_turns_are_told_from_a_network() {
        let a: std::net::SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let b: std::net::SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let c: std::net::SocketAddr = "10.0.0.1:4001".parse().unwrap();
        let mut turns = Turns::default();
        // a and b replace each other twice; the third time the established one is held.
        assert!(!turns.hold(Instant::now(), a, b));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!turns.hold(Instant::now(), b, a));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(turns.hold(Instant::now(), a, b), "a third turn is refused");
        assert!(turns.hold(Instant::now(), b, a), "either way round");
        // A restart of the agent comes from a new port: a real replacement.
        assert!(!turns.hold(Instant::now(), a, c));
        // The same address again: the old connection is dead, whatever the history.
        assert!(!turns.hold(Instant::now(), a, a));
        // After the window, the pair starts afresh.
        tokio::time::sleep(TURNS_WINDOW + Duration::from_secs(1)).await;
        assert!(!turns.hold(Instant::now(), a, b));
        tokio::time::sleep(TURNS_WINDOW + Duration::from_secs(1)).await;
        assert!(turns.is_empty(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_reconnecting_through_a_changing_nat_is_never_held() {
        // Every reconnect from a new address, a minute apart or seconds apart: never two
        // machines.
        let mut turns = Turns::default();
        for port in 0..20u16 {
            let old: std::net::SocketAddr = format!("192.0.2.1:{}", 5000 + port).parse().unwrap();
            let new: std::net::SocketAddr = format!("192.0.2.1:{}", 5001 + port).parse().unwrap();
            assert!(!turns.hold(Instant::now(), old, new));
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }

    #[test]
    fn decisions_reach_only_the_newest_waiter() {
        let presence = Presence::default();
        let node = NodeId::random();
        let (old_gen, mut old) = presence.wait_for_decision(node);
        let (_, new) = presence.wait_for_decision(node);
        presence.stop_waiting(node, old_gen); // must not remove the newer waiter
        assert!(presence.notify(
            node,
            Notice::Rejected {
                reason: "no".into()
            }
        ));
        assert!(old.try_recv().is_err());
        assert!(matches!(
            new.blocking_recv().unwrap(),
            Notice::Rejected { .. }
        ));
        assert!(!presence.notify(
            node,
            Notice::Rejected {
                reason: "again".into()
            }
        ));
    }
}

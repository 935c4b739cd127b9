//! Alerting: rules evaluated as heartbeats arrive (never by walking the fleet on a timer), the
//! offline kind on a queue of the nodes that went offline, and one task that writes alerts in
//! the order they were decided and hands them to the channels ([`notify`]).
//!
//! The decisions are [`engine::Engine`]'s; this module feeds it what a heartbeat or a status
//! change says, for the nodes a rule targets and that are not in maintenance (silent).

pub mod engine;
mod mail;
pub(crate) mod notify;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tether_store::{NodeRecord, Store, StoreError};
use tether_wire::NodeId;
use tether_wire::admin::NodeStatus;
use tether_wire::alerts::{Alert, AlertRule, AlertState, Condition};
use tether_wire::heartbeat::{AgentState, Metrics};
use tokio::sync::{Notify, mpsc};
use tracing::{info, warn};

use self::engine::{Decision, Engine, Key};
use crate::server::Shared;

/// Decisions waiting to be written before heartbeats' evaluations drop new ones.
const QUEUE: usize = 10_000;
/// How stale the node index (labels, maintenance, hostnames) may be: rebuilding it reads every
/// node record, so not on every heartbeat while nodes connect.
const INDEX_AGE: Duration = Duration::from_secs(5);

/// A rule as evaluated: its name shared by every pair's key.
#[derive(Debug)]
pub struct Rule {
    name: Arc<str>,
    rule: AlertRule,
}

impl Rule {
    /// A stored rule, ready to evaluate.
    pub fn new(rule: AlertRule) -> Arc<Rule> {
        Arc::new(Rule {
            name: Arc::from(rule.name.as_str()),
            rule,
        })
    }
}

/// What the enabled rules among `rules` that target a node (id `node`, carrying `labels`, not
/// in maintenance) decide about one of its heartbeats (`metrics`; none when it was refused for
/// its clock, `skew_ms`), pushed onto `out`. No I/O and no locks: core calls it under its
/// engine's lock; the benchmarks call it alone.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    engine: &mut Engine,
    rules: &[Arc<Rule>],
    node: NodeId,
    labels: &std::collections::BTreeMap<String, String>,
    ancestry: &[String],
    metrics: Option<&Metrics>,
    skew_ms: Option<i64>,
    now_ms: i64,
    flap_ms: u64,
    out: &mut Vec<(Arc<Rule>, Decision)>,
) {
    for rule in rules {
        if !rule.rule.enabled || !rule.rule.targets.matches(node, labels, ancestry) {
            continue;
        }
        let (holds, value) = match &rule.rule.condition {
            Condition::Threshold {
                field,
                op,
                threshold,
            } => {
                let Some(metrics) = metrics else { continue };
                match field.value(metrics) {
                    Some(v) => (op.holds(v, *threshold), Some(v)),
                    None => (false, None),
                }
            }
            Condition::ClockSkew { max_ms } => {
                let skew = skew_ms.unwrap_or(0).unsigned_abs();
                (skew > *max_ms, Some(skew as f64))
            }
            Condition::Offline | Condition::AgentRestarts { .. } => continue,
        };
        let key: Key = (rule.name.clone(), node);
        if let Some(decision) =
            engine.observe(&key, holds, value, now_ms, rule.rule.for_ms, flap_ms)
        {
            out.push((rule.clone(), decision));
        }
    }
}

/// What the writer task does, in order.
#[derive(Debug)]
enum Action {
    Fire {
        rule: Arc<Rule>,
        node: NodeId,
        hostname: String,
        since_ms: i64,
        at_ms: i64,
        value: Option<f64>,
        notify: bool,
    },
    Resolve {
        rule: Arc<str>,
        node: NodeId,
        at_ms: i64,
        why: String,
    },
}

/// Nodes by id, from the store's shared copy of node records.
#[derive(Debug, Default)]
struct NodeIndex {
    records: Option<Arc<Vec<NodeRecord>>>,
    by_id: HashMap<NodeId, usize>,
    built: Option<Instant>,
}

/// Offline rules' deadlines: (due unix ms, node, rule), with the ones still meant.
#[derive(Debug, Default)]
struct OfflineQueue {
    heap: BinaryHeap<Reverse<(i64, NodeId, Arc<str>)>>,
    scheduled: HashMap<NodeId, Vec<(i64, Arc<str>)>>,
}

/// Core's alerting state.
#[derive(Debug)]
pub(crate) struct Alerting {
    rules: RwLock<Arc<Vec<Arc<Rule>>>>,
    engine: Mutex<Engine>,
    nodes: Mutex<NodeIndex>,
    offline: Mutex<OfflineQueue>,
    wake: Notify,
    actions: mpsc::Sender<Action>,
    queue: Mutex<Option<mpsc::Receiver<Action>>>,
    /// Decisions dropped because the writer was `QUEUE` behind, since start.
    pub dropped: AtomicU64,
    /// Each grouped node's group and the groups above it, for rules that target groups; built
    /// when first needed, dropped at every change to groups.
    groups: Mutex<Option<Arc<GroupIndex>>>,
}

/// Each grouped node's group name and the names of the groups above it, nearest first.
type GroupIndex = HashMap<NodeId, Vec<String>>;

impl Default for Alerting {
    fn default() -> Self {
        let (actions, queue) = mpsc::channel(QUEUE);
        Self {
            rules: RwLock::default(),
            engine: Mutex::default(),
            nodes: Mutex::default(),
            offline: Mutex::default(),
            wake: Notify::new(),
            actions,
            queue: Mutex::new(Some(queue)),
            dropped: AtomicU64::new(0),
            groups: Mutex::default(),
        }
    }
}

impl Alerting {
    /// Reads the rules from the store again (after a change).
    pub fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let rules: Vec<Arc<Rule>> = store.alert_rules()?.into_iter().map(Rule::new).collect();
        *self.rules.write().expect("not poisoned") = Arc::new(rules);
        Ok(())
    }

    fn rules(&self) -> Arc<Vec<Arc<Rule>>> {
        self.rules.read().expect("not poisoned").clone()
    }

    fn queue(&self, action: Action) {
        if self.actions.try_send(action).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            warn!("an alert decision was dropped: the alert writer is far behind");
        }
    }

    /// The names of `node`'s group and every group above it, when one of `rules` targets
    /// groups (empty otherwise: nothing is read for fleets whose rules do not).
    fn ancestry(&self, shared: &Shared, node: NodeId, rules: &[Arc<Rule>]) -> Vec<String> {
        if !rules
            .iter()
            .any(|r| r.rule.enabled && !r.rule.targets.groups.is_empty())
        {
            return Vec::new();
        }
        self.group_index(shared)
            .get(&node)
            .cloned()
            .unwrap_or_default()
    }

    /// Every grouped node's group and the groups above it, built from the store when first
    /// asked after a change to groups or memberships ([`Alerting::groups_changed`]).
    fn group_index(&self, shared: &Shared) -> Arc<GroupIndex> {
        let mut cached = self.groups.lock().expect("not poisoned");
        if let Some(index) = cached.as_ref() {
            return index.clone();
        }
        let built = match (shared.store.group_tree(), shared.store.node_groups()) {
            (Ok(tree), Ok(members)) => {
                let mut paths: HashMap<u64, Vec<String>> = HashMap::new();
                let index: GroupIndex = members
                    .into_iter()
                    .map(|(node, group)| {
                        let path = paths.entry(group).or_insert_with(|| {
                            tree.path(group).rsplit('/').map(str::to_string).collect()
                        });
                        (node, path.clone())
                    })
                    .collect();
                Arc::new(index)
            }
            (Err(e), _) | (_, Err(e)) => {
                // Not cached: the next heartbeat tries again.
                warn!(error = %e, "reading groups for alert rules failed");
                return Arc::new(HashMap::new());
            }
        };
        *cached = Some(built.clone());
        built
    }

    /// Groups or memberships changed: rules that target groups see it from the next event.
    pub(crate) fn groups_changed(&self) {
        *self.groups.lock().expect("not poisoned") = None;
    }

    /// Runs `f` on a node's record, from an index at most [`INDEX_AGE`] old.
    fn with_node<T>(
        &self,
        shared: &Shared,
        node: NodeId,
        f: impl FnOnce(&NodeRecord) -> T,
    ) -> Option<T> {
        let mut index = self.nodes.lock().expect("not poisoned");
        if index.built.is_none_or(|at| at.elapsed() >= INDEX_AGE) {
            match shared.store.node_records_shared() {
                Ok(records) => {
                    let same = index
                        .records
                        .as_ref()
                        .is_some_and(|had| Arc::ptr_eq(had, &records));
                    if !same {
                        index.by_id = records
                            .iter()
                            .enumerate()
                            .filter(|(_, r)| !r.deleted)
                            .map(|(i, r)| (r.id, i))
                            .collect();
                        index.records = Some(records);
                    }
                    index.built = Some(Instant::now());
                }
                Err(e) => warn!(error = %e, "reading node records for alert rules failed"),
            }
        }
        let i = *index.by_id.get(&node)?;
        index.records.as_ref().map(|records| f(&records[i]))
    }

    /// A heartbeat was accepted (`metrics`), or refused for its clock (`None`): evaluates every
    /// enabled rule that targets the node, unless it is in maintenance.
    pub fn heartbeat(
        &self,
        shared: &Shared,
        node: NodeId,
        metrics: Option<&Metrics>,
        skew_ms: Option<i64>,
        now_ms: i64,
    ) {
        let rules = self.rules();
        if !rules.iter().any(|r| r.rule.enabled) {
            return;
        }
        let flap_ms = millis(shared.config.alert_flap_window);
        let ancestry = self.ancestry(shared, node, &rules);
        self.decide(shared, node, now_ms, |engine, record, decisions| {
            evaluate(
                engine,
                &rules,
                node,
                &record.labels,
                &ancestry,
                metrics,
                skew_ms,
                now_ms,
                flap_ms,
                decisions,
            );
        });
    }

    /// Runs `judge` for a node that is not in maintenance, under the engine's lock, and queues
    /// what it decided.
    fn decide(
        &self,
        shared: &Shared,
        node: NodeId,
        now_ms: i64,
        judge: impl FnOnce(&mut Engine, &NodeRecord, &mut Vec<(Arc<Rule>, Decision)>),
    ) {
        let mut decisions = Vec::new();
        let hostname = self.with_node(shared, node, |record| {
            if record.maintenance {
                return None;
            }
            judge(
                &mut self.engine.lock().expect("not poisoned"),
                record,
                &mut decisions,
            );
            (!decisions.is_empty()).then(|| record.hostname.clone())
        });
        let Some(Some(hostname)) = hostname else {
            return;
        };
        for (rule, decision) in decisions {
            self.queue(action(rule, node, &hostname, now_ms, decision));
        }
    }

    /// The agent reported its state: restart rules count its restarts within their window.
    pub fn agent(&self, shared: &Shared, node: NodeId, agent: &AgentState, now_ms: i64) {
        let rules = self.rules();
        if !rules
            .iter()
            .any(|r| r.rule.enabled && matches!(r.rule.condition, Condition::AgentRestarts { .. }))
        {
            return;
        }
        let flap_ms = millis(shared.config.alert_flap_window);
        let ancestry = self.ancestry(shared, node, &rules);
        self.decide(shared, node, now_ms, |engine, record, decisions| {
            for rule in rules.iter() {
                let Condition::AgentRestarts { max } = rule.rule.condition else {
                    continue;
                };
                if !rule.rule.enabled || !rule.rule.targets.matches(node, &record.labels, &ancestry)
                {
                    continue;
                }
                let restarts = agent.restarts_within(rule.rule.for_ms, now_ms);
                let key: Key = (rule.name.clone(), node);
                let value = Some(f64::from(restarts));
                if let Some(decision) =
                    engine.observe(&key, restarts > max, value, now_ms, 0, flap_ms)
                {
                    decisions.push((rule.clone(), decision));
                }
            }
        });
    }

    /// A node went online or offline: offline rules start counting, or its offline alerts
    /// resolve.
    pub fn status(&self, shared: &Shared, node: NodeId, status: NodeStatus, at_ms: i64) {
        let rules = self.rules();
        let offline_rules: Vec<&Arc<Rule>> = rules
            .iter()
            .filter(|r| r.rule.enabled && r.rule.condition == Condition::Offline)
            .collect();
        if offline_rules.is_empty() {
            return;
        }
        match status {
            NodeStatus::Online => {
                self.offline
                    .lock()
                    .expect("not poisoned")
                    .scheduled
                    .remove(&node);
                let mut engine = self.engine.lock().expect("not poisoned");
                for rule in offline_rules {
                    let key: Key = (rule.name.clone(), node);
                    if engine.forget(&key) {
                        self.queue(Action::Resolve {
                            rule: rule.name.clone(),
                            node,
                            at_ms,
                            why: "the node is back".into(),
                        });
                    }
                }
            }
            NodeStatus::Offline => {
                let ancestry = self.ancestry(shared, node, &rules);
                let targeted = self
                    .with_node(shared, node, |record| {
                        (!record.maintenance).then(|| {
                            offline_rules
                                .iter()
                                .filter(|r| r.rule.targets.matches(node, &record.labels, &ancestry))
                                .map(|r| (r.name.clone(), r.rule.for_ms))
                                .collect::<Vec<_>>()
                        })
                    })
                    .flatten()
                    .unwrap_or_default();
                self.schedule(node, at_ms, targeted);
            }
            NodeStatus::Maintenance => {}
        }
    }

    /// Offline rules fire for `node` at `since_ms` plus each rule's duration.
    fn schedule(&self, node: NodeId, since_ms: i64, rules: Vec<(Arc<str>, u64)>) {
        if rules.is_empty() {
            return;
        }
        let mut queue = self.offline.lock().expect("not poisoned");
        let mut entries = Vec::new();
        for (rule, for_ms) in rules {
            let due = since_ms.saturating_add(i64::try_from(for_ms).unwrap_or(i64::MAX));
            queue.heap.push(Reverse((due, node, rule.clone())));
            entries.push((due, rule));
        }
        queue.scheduled.insert(node, entries);
        drop(queue);
        self.wake.notify_one();
    }

    /// A rule was disabled or deleted: its pairs are forgotten and its firing alerts resolve.
    pub fn retire(&self, rule: &str, at_ms: i64, why: &str) {
        let nodes = self.engine.lock().expect("not poisoned").forget_rule(rule);
        let name: Arc<str> = Arc::from(rule);
        for node in nodes {
            self.queue(Action::Resolve {
                rule: name.clone(),
                node,
                at_ms,
                why: why.to_string(),
            });
        }
    }

    /// An offline rule was added or enabled: nodes offline now start counting from when they
    /// were last seen (one read of every node, at the change, not on a timer).
    pub fn watch_offline(&self, shared: &Shared, rule: &AlertRule) -> Result<(), StoreError> {
        if rule.condition != Condition::Offline || !rule.enabled {
            return Ok(());
        }
        let seen = shared.store.last_seen_all()?;
        let name: Arc<str> = Arc::from(rule.name.as_str());
        let now_ms = shared.now_ms();
        let groups = if rule.targets.groups.is_empty() {
            None
        } else {
            Some(self.group_index(shared))
        };
        let no_group = Vec::new();
        for record in shared.store.node_records_shared()?.iter() {
            let ancestry = groups
                .as_ref()
                .and_then(|g| g.get(&record.id))
                .unwrap_or(&no_group);
            if record.deleted
                || record.maintenance
                || !rule.targets.matches(record.id, &record.labels, ancestry)
            {
                continue;
            }
            let online = shared
                .presence
                .get(record.id)
                .is_some_and(|s| s.live.lock().expect("not poisoned").heartbeat_ok);
            if online {
                continue;
            }
            let since = seen.get(&record.id).copied().unwrap_or(now_ms);
            let mut queue = self.offline.lock().expect("not poisoned");
            let due = since.saturating_add(i64::try_from(rule.for_ms).unwrap_or(i64::MAX));
            queue.heap.push(Reverse((due, record.id, name.clone())));
            queue
                .scheduled
                .entry(record.id)
                .or_default()
                .push((due, name.clone()));
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Forgets announcement times that no longer damp anything (from the pruning task).
    pub fn sweep(&self, now_ms: i64, flap_ms: u64) {
        self.engine
            .lock()
            .expect("not poisoned")
            .sweep(now_ms, flap_ms);
    }

    /// Pairs holding or firing, announcement times kept, offline deadlines queued.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let (tracks, announced) = self.engine.lock().expect("not poisoned").sizes();
        let queued = self.offline.lock().expect("not poisoned").heap.len();
        (tracks, announced, queued)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn action(rule: Arc<Rule>, node: NodeId, hostname: &str, at_ms: i64, d: Decision) -> Action {
    match d {
        Decision::Fire {
            since_ms,
            value,
            notify,
        } => Action::Fire {
            rule,
            node,
            hostname: hostname.to_string(),
            since_ms,
            at_ms,
            value,
            notify,
        },
        Decision::Resolve { value } => Action::Resolve {
            rule: rule.name.clone(),
            node,
            at_ms,
            why: match (&rule.rule.condition, value) {
                (Condition::Threshold { field, .. }, Some(v)) => format!("{field} {v}"),
                (Condition::ClockSkew { .. }, Some(v)) => format!("clock skew {v} ms"),
                (Condition::AgentRestarts { .. }, Some(v)) => {
                    format!("{v} restarts within the window")
                }
                _ => "the condition ended".into(),
            },
        },
    }
}

/// Loads rules and firing alerts, then runs the writer and the offline queue until core stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let alerting = &shared.alerts;
    if let Err(e) = alerting.reload(&shared.store) {
        warn!(error = %e, "reading alert rules failed; none are evaluated");
    }
    let mut firing = Firing::new();
    match shared.store.firing_alerts() {
        Ok(alerts) => {
            let mut engine = alerting.engine.lock().expect("not poisoned");
            for alert in alerts {
                let key: Key = (Arc::from(alert.rule.as_str()), alert.node_id);
                let announced = alert.notified.then_some(alert.fired_at_ms);
                engine.restore(key.clone(), alert.since_ms, announced);
                firing.entry(key).or_default().push(alert.id);
            }
        }
        Err(e) => warn!(error = %e, "reading firing alerts failed"),
    }
    // After a restart every node is offline until it reconnects: offline rules count from when
    // each was last seen, so a restart does not put an alert off.
    for rule in alerting.rules().iter() {
        if let Err(e) = alerting.watch_offline(&shared, &rule.rule) {
            warn!(error = %e, rule = %rule.name, "watching offline nodes failed");
        }
    }
    let Some(queue) = alerting.queue.lock().expect("not poisoned").take() else {
        return;
    };
    tokio::join!(
        write(shared.clone(), queue, firing),
        offline(shared.clone())
    );
}

/// The firing alerts' numbers by (rule, node): only the writer task opens and resolves alerts,
/// so it knows them without reading the store.
type Firing = HashMap<Key, Vec<u64>>;

/// Writes decisions in order, and hands them to the channels.
async fn write(shared: Arc<Shared>, mut queue: mpsc::Receiver<Action>, mut firing: Firing) {
    loop {
        let action = tokio::select! {
            action = queue.recv() => match action {
                Some(action) => action,
                None => return,
            },
            () = shared.shutdown.cancelled() => return,
        };
        if let Err(e) = apply(&shared, action, &mut firing).await {
            warn!(error = %e, "writing an alert failed");
        }
    }
}

async fn apply(
    shared: &Arc<Shared>,
    action: Action,
    firing: &mut Firing,
) -> Result<(), StoreError> {
    match action {
        Action::Fire {
            rule,
            node,
            hostname,
            since_ms,
            at_ms,
            value,
            notify,
        } => {
            let alert = shared
                .store
                .open_alert(Alert {
                    id: 0,
                    rule: rule.rule.name.clone(),
                    severity: rule.rule.severity,
                    node_id: node,
                    hostname,
                    condition: rule.rule.condition.to_string(),
                    state: AlertState::Firing,
                    value,
                    since_ms,
                    fired_at_ms: at_ms,
                    resolved_at_ms: None,
                    resolution: None,
                    acked_by: None,
                    acked_at_ms: None,
                    notified: notify && !rule.rule.channels.is_empty(),
                })
                .await?;
            info!(alert = alert.id, rule = %alert.rule, node_id = %node, severity = %alert.severity, value = ?value, notify, "alert firing");
            firing
                .entry((rule.name.clone(), node))
                .or_default()
                .push(alert.id);
            if alert.notified {
                notify::announce(shared, &alert, AlertState::Firing, &rule.rule.channels);
            }
        }
        Action::Resolve {
            rule,
            node,
            at_ms,
            why,
        } => {
            // Its own numbers, not a read of every firing alert of the node: a fleet coming back
            // from an outage resolves one alert per node.
            let ids = firing.remove(&(rule.clone(), node)).unwrap_or_default();
            let channels = shared
                .alerts
                .rules()
                .iter()
                .find(|r| r.name == rule)
                .map(|r| r.rule.channels.clone())
                .unwrap_or_default();
            for id in ids {
                if let Some(resolved) = shared.store.resolve_alert(id, at_ms, why.clone()).await? {
                    info!(alert = resolved.id, rule = %resolved.rule, node_id = %node, %why, "alert resolved");
                    if resolved.notified {
                        notify::announce(shared, &resolved, AlertState::Resolved, &channels);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Fires offline rules whose deadline passed for nodes still offline.
async fn offline(shared: Arc<Shared>) {
    let alerting = &shared.alerts;
    loop {
        let now_ms = shared.now_ms();
        let mut due = Vec::new();
        let next = {
            let mut queue = alerting.offline.lock().expect("not poisoned");
            while let Some(Reverse((at, _, _))) = queue.heap.peek() {
                if *at > now_ms {
                    break;
                }
                let Some(Reverse((at, node, rule))) = queue.heap.pop() else {
                    break;
                };
                // Still meant: the node has not come back (or gone offline again since).
                let meant = queue.scheduled.get_mut(&node).is_some_and(|entries| {
                    let before = entries.len();
                    entries.retain(|(d, r)| !(*d == at && *r == rule));
                    entries.len() < before
                });
                if queue.scheduled.get(&node).is_some_and(Vec::is_empty) {
                    queue.scheduled.remove(&node);
                }
                if meant {
                    due.push((node, rule, at));
                }
            }
            queue.heap.peek().map(|Reverse((at, _, _))| *at)
        };
        for (node, rule, at) in due {
            fire_offline(&shared, node, &rule, at, now_ms);
        }
        let wait = next.map_or(Duration::from_secs(3600), |at| {
            Duration::from_millis(u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0))
        });
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = alerting.wake.notified() => {}
            () = shared.shutdown.cancelled() => return,
        }
    }
}

fn fire_offline(shared: &Shared, node: NodeId, rule_name: &Arc<str>, due_ms: i64, now_ms: i64) {
    let alerting = &shared.alerts;
    let online = shared
        .presence
        .get(node)
        .is_some_and(|s| s.live.lock().expect("not poisoned").heartbeat_ok);
    if online {
        return;
    }
    let Some(rule) = alerting
        .rules()
        .iter()
        .find(|r| r.name == *rule_name && r.rule.enabled)
        .cloned()
    else {
        return;
    };
    let Some(Some(hostname)) = alerting.with_node(shared, node, |record| {
        (!record.maintenance).then(|| record.hostname.clone())
    }) else {
        return;
    };
    let since_ms = due_ms.saturating_sub(i64::try_from(rule.rule.for_ms).unwrap_or(0));
    let offline_s = (now_ms.saturating_sub(since_ms)) as f64 / 1000.0;
    let decision = alerting.engine.lock().expect("not poisoned").observe(
        &(rule.name.clone(), node),
        true,
        Some(offline_s),
        now_ms,
        0,
        millis(shared.config.alert_flap_window),
    );
    if let Some(Decision::Fire { notify, value, .. }) = decision {
        alerting.queue(Action::Fire {
            rule,
            node,
            hostname,
            since_ms,
            at_ms: now_ms,
            value,
            notify,
        });
    }
}

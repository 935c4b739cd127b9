//! Alert rules, notification channels, alerts and their deliveries (seed 002's `alert_rules`
//! and `alerts`). Names are unique; a rule may only name channels that exist, and a channel a
//! rule names cannot be deleted; each in one transaction. When a rule fires is core's business.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use tether_wire::NodeId;
use tether_wire::alerts::{
    Alert, AlertDetail, AlertRule, AlertState, Channel, Delivery, MAX_CHANNELS, MAX_RULES,
};

use crate::codec::{self, Stored};
use crate::tables::{
    ALERT_CHANNELS, ALERT_DELIVERIES, ALERT_RULES, ALERTS, ALERTS_FIRING, ALERTS_NEXT_ID, META,
};
use crate::{Store, StoreError};

impl Stored for AlertRule {
    const VERSION: u8 = 2;

    fn upgrade(version: u8, bytes: &[u8]) -> Result<Self, StoreError> {
        match version {
            1 => Ok(codec::decode_as::<crate::legacy::AlertRuleV1>(bytes)?.into()),
            _ => Err(StoreError::Corrupt(format!(
                "alert rule version {version} is unknown"
            ))),
        }
    }
}
impl Stored for Channel {}
impl Stored for Alert {}
impl Stored for Delivery {}
impl Stored for tether_wire::heartbeat::AgentState {}

/// Why a change to rules or channels was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AlertRefusal {
    /// No rule, channel or alert of that name or number.
    #[error("no {0}")]
    NotFound(String),
    /// The name is taken.
    #[error("{0} exists already")]
    Exists(String),
    /// Core keeps at most this many.
    #[error("at most {0} {1} may exist; delete one first")]
    Limit(usize, &'static str),
    /// A rule names a channel that does not exist.
    #[error("no channel {0:?} (tether alert channel list)")]
    UnknownChannel(String),
    /// A rule names the channel.
    #[error("channel {channel:?} is used by rule {rule:?}; remove it there first")]
    ChannelInUse {
        /// The channel.
        channel: String,
        /// A rule that names it.
        rule: String,
    },
}

/// A change's outcome: done, or refused for a reason the caller shows.
pub type AlertOutcome<T> = Result<T, AlertRefusal>;

fn get<T: Stored>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<Option<T>, StoreError> {
    table
        .get(name)?
        .map(|v| codec::decode(v.value()))
        .transpose()
}

fn get_alert(txn: &WriteTransaction, id: u64) -> Result<Option<Alert>, StoreError> {
    txn.open_table(ALERTS)?
        .get(id)?
        .map(|v| codec::decode(v.value()))
        .transpose()
}

fn put_alert(txn: &WriteTransaction, alert: &Alert) -> Result<(), StoreError> {
    txn.open_table(ALERTS)?
        .insert(alert.id, codec::encode(alert).as_slice())?;
    let mut firing = txn.open_table(ALERTS_FIRING)?;
    match alert.state {
        AlertState::Firing => {
            firing.insert(alert.id, ())?;
        }
        AlertState::Resolved => {
            firing.remove(alert.id)?;
        }
    }
    Ok(())
}

impl Store {
    /// Adds a rule: refused if its name is taken, a channel it names does not exist, or
    /// [`MAX_RULES`] exist.
    pub async fn add_alert_rule(
        &self,
        rule: AlertRule,
    ) -> Result<AlertOutcome<AlertRule>, StoreError> {
        self.write(move |txn| {
            let mut rules = txn.open_table(ALERT_RULES)?;
            if rules.get(rule.name.as_str())?.is_some() {
                return Ok(Err(AlertRefusal::Exists(format!("rule {:?}", rule.name))));
            }
            if rules.len()? >= MAX_RULES as u64 {
                return Ok(Err(AlertRefusal::Limit(MAX_RULES, "rules")));
            }
            let channels = txn.open_table(ALERT_CHANNELS)?;
            for name in &rule.channels {
                if channels.get(name.as_str())?.is_none() {
                    return Ok(Err(AlertRefusal::UnknownChannel(name.clone())));
                }
            }
            rules.insert(rule.name.as_str(), codec::encode(&rule).as_slice())?;
            Ok(Ok(rule))
        })
        .await
    }

    /// Every rule, by name.
    pub fn alert_rules(&self) -> Result<Vec<AlertRule>, StoreError> {
        let txn = self.read()?;
        let rules = txn.open_table(ALERT_RULES)?;
        rules
            .iter()?
            .map(|row| codec::decode(row?.1.value()))
            .collect()
    }

    /// One rule.
    pub fn alert_rule(&self, name: &str) -> Result<Option<AlertRule>, StoreError> {
        let txn = self.read()?;
        get(&txn.open_table(ALERT_RULES)?, name)
    }

    /// Enables or disables a rule; the rule as it is now.
    pub async fn set_alert_rule_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<AlertOutcome<AlertRule>, StoreError> {
        let name = name.to_string();
        self.write(move |txn| {
            let mut rules = txn.open_table(ALERT_RULES)?;
            let Some(mut rule) = get::<AlertRule>(&rules, &name)? else {
                return Ok(Err(AlertRefusal::NotFound(format!("rule {name:?}"))));
            };
            rule.enabled = enabled;
            rules.insert(name.as_str(), codec::encode(&rule).as_slice())?;
            Ok(Ok(rule))
        })
        .await
    }

    /// Deletes a rule; the rule as it was. Its alerts stay (resolving them is core's).
    pub async fn delete_alert_rule(
        &self,
        name: &str,
    ) -> Result<AlertOutcome<AlertRule>, StoreError> {
        let name = name.to_string();
        self.write(move |txn| {
            let mut rules = txn.open_table(ALERT_RULES)?;
            let Some(rule) = get::<AlertRule>(&rules, &name)? else {
                return Ok(Err(AlertRefusal::NotFound(format!("rule {name:?}"))));
            };
            rules.remove(name.as_str())?;
            Ok(Ok(rule))
        })
        .await
    }

    /// Adds a channel: refused if its name is taken or [`MAX_CHANNELS`] exist.
    pub async fn add_alert_channel(
        &self,
        channel: Channel,
    ) -> Result<AlertOutcome<Channel>, StoreError> {
        self.write(move |txn| {
            let mut channels = txn.open_table(ALERT_CHANNELS)?;
            if channels.get(channel.name.as_str())?.is_some() {
                return Ok(Err(AlertRefusal::Exists(format!(
                    "channel {:?}",
                    channel.name
                ))));
            }
            if channels.len()? >= MAX_CHANNELS as u64 {
                return Ok(Err(AlertRefusal::Limit(MAX_CHANNELS, "channels")));
            }
            channels.insert(channel.name.as_str(), codec::encode(&channel).as_slice())?;
            Ok(Ok(channel))
        })
        .await
    }

    /// Every channel, by name, secrets included (redact before showing).
    pub fn alert_channels(&self) -> Result<Vec<Channel>, StoreError> {
        let txn = self.read()?;
        let channels = txn.open_table(ALERT_CHANNELS)?;
        channels
            .iter()?
            .map(|row| codec::decode(row?.1.value()))
            .collect()
    }

    /// One channel, secrets included.
    pub fn alert_channel(&self, name: &str) -> Result<Option<Channel>, StoreError> {
        let txn = self.read()?;
        get(&txn.open_table(ALERT_CHANNELS)?, name)
    }

    /// Deletes a channel no rule names; the channel as it was.
    pub async fn delete_alert_channel(
        &self,
        name: &str,
    ) -> Result<AlertOutcome<Channel>, StoreError> {
        let name = name.to_string();
        self.write(move |txn| {
            let mut channels = txn.open_table(ALERT_CHANNELS)?;
            let Some(channel) = get::<Channel>(&channels, &name)? else {
                return Ok(Err(AlertRefusal::NotFound(format!("channel {name:?}"))));
            };
            for row in txn.open_table(ALERT_RULES)?.iter()? {
                let rule: AlertRule = codec::decode(row?.1.value())?;
                if rule.channels.contains(&name) {
                    return Ok(Err(AlertRefusal::ChannelInUse {
                        channel: name,
                        rule: rule.name,
                    }));
                }
            }
            channels.remove(name.as_str())?;
            Ok(Ok(channel))
        })
        .await
    }

    /// Records a new alert; its `id` is set here (the next number) and returned with it.
    pub async fn open_alert(&self, mut alert: Alert) -> Result<Alert, StoreError> {
        self.write(move |txn| {
            let mut meta = txn.open_table(META)?;
            let id = meta.get(ALERTS_NEXT_ID)?.map_or(1, |v| v.value());
            meta.insert(ALERTS_NEXT_ID, id + 1)?;
            drop(meta);
            alert.id = id;
            put_alert(txn, &alert)?;
            Ok(alert)
        })
        .await
    }

    /// Resolves a firing alert at `at_ms`, saying why; the alert as it is now, or none if it
    /// does not exist or was resolved already.
    pub async fn resolve_alert(
        &self,
        id: u64,
        at_ms: i64,
        resolution: String,
    ) -> Result<Option<Alert>, StoreError> {
        self.write(move |txn| {
            let Some(mut alert) = get_alert(txn, id)? else {
                return Ok(None);
            };
            if alert.state == AlertState::Resolved {
                return Ok(None);
            }
            alert.state = AlertState::Resolved;
            alert.resolved_at_ms = Some(at_ms);
            alert.resolution = Some(resolution);
            put_alert(txn, &alert)?;
            Ok(Some(alert))
        })
        .await
    }

    /// Acknowledges an alert (again: the latest acknowledgement counts); the alert as it is
    /// now.
    pub async fn ack_alert(
        &self,
        id: u64,
        by: String,
        at_ms: i64,
    ) -> Result<AlertOutcome<Alert>, StoreError> {
        self.write(move |txn| {
            let Some(mut alert) = get_alert(txn, id)? else {
                return Ok(Err(AlertRefusal::NotFound(format!("alert {id}"))));
            };
            alert.acked_by = Some(by);
            alert.acked_at_ms = Some(at_ms);
            put_alert(txn, &alert)?;
            Ok(Ok(alert))
        })
        .await
    }

    /// Alerts, newest first: only firing ones if asked, only one node's if given, at most
    /// `limit`.
    pub fn alerts(
        &self,
        firing: bool,
        node: Option<NodeId>,
        limit: usize,
    ) -> Result<Vec<Alert>, StoreError> {
        let txn = self.read()?;
        let alerts = txn.open_table(ALERTS)?;
        let mut out = Vec::new();
        let wanted = |alert: &Alert| node.is_none_or(|n| alert.node_id == n);
        if firing {
            for row in txn.open_table(ALERTS_FIRING)?.iter()?.rev() {
                let id = row?.0.value();
                if let Some(value) = alerts.get(id)? {
                    let alert: Alert = codec::decode(value.value())?;
                    if wanted(&alert) {
                        out.push(alert);
                    }
                }
                if out.len() >= limit {
                    break;
                }
            }
        } else {
            for row in alerts.iter()?.rev() {
                let alert: Alert = codec::decode(row?.1.value())?;
                if wanted(&alert) {
                    out.push(alert);
                }
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Every firing alert (core rebuilds its state from them at start).
    pub fn firing_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        self.alerts(true, None, usize::MAX)
    }

    /// How many alerts are firing.
    pub fn firing_count(&self) -> Result<u64, StoreError> {
        let txn = self.read()?;
        Ok(txn.open_table(ALERTS_FIRING)?.len()?)
    }

    /// One alert with its deliveries, oldest first.
    pub fn alert(&self, id: u64) -> Result<Option<AlertDetail>, StoreError> {
        let txn = self.read()?;
        let Some(alert) = txn
            .open_table(ALERTS)?
            .get(id)?
            .map(|v| codec::decode::<Alert>(v.value()))
            .transpose()?
        else {
            return Ok(None);
        };
        let deliveries = txn
            .open_table(ALERT_DELIVERIES)?
            .range((id, 0)..=(id, u32::MAX))?
            .map(|row| codec::decode(row?.1.value()))
            .collect::<Result<Vec<Delivery>, StoreError>>()?;
        Ok(Some(AlertDetail { alert, deliveries }))
    }

    /// Records one attempt to tell a channel about an alert.
    pub async fn record_delivery(&self, delivery: Delivery) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(ALERT_DELIVERIES)?;
            let next = table
                .range((delivery.alert_id, 0)..=(delivery.alert_id, u32::MAX))?
                .next_back()
                .transpose()?
                .map_or(0, |(k, _)| k.value().1 + 1);
            table.insert(
                (delivery.alert_id, next),
                codec::encode(&delivery).as_slice(),
            )?;
            Ok(())
        })
        .await
    }
}

/// Most alerts one pruning call removes.
const PRUNE_BATCH: usize = 10_000;

impl Store {
    /// Removes resolved alerts that resolved before `before_ms`, and the oldest resolved ones
    /// beyond `max` alerts in all, with their deliveries: at most a batch per call (call again
    /// while it returns [`PRUNE_BATCH`]); how many.
    pub async fn prune_alerts(&self, before_ms: i64, max: u64) -> Result<usize, StoreError> {
        self.write(move |txn| prune_alerts(txn, before_ms, max))
            .await
    }
}

fn prune_alerts(txn: &WriteTransaction, before_ms: i64, max: u64) -> Result<usize, StoreError> {
    let mut alerts = txn.open_table(ALERTS)?;
    let firing = txn.open_table(ALERTS_FIRING)?;
    let mut deliveries = txn.open_table(ALERT_DELIVERIES)?;
    let mut excess = alerts.len()?.saturating_sub(max);
    let mut doomed = Vec::new();
    for row in alerts.iter()? {
        let (key, value) = row?;
        let id = key.value();
        if firing.get(id)?.is_some() {
            continue;
        }
        let alert: Alert = codec::decode(value.value())?;
        let old = alert.resolved_at_ms.is_some_and(|at| at < before_ms);
        if doomed.len() >= PRUNE_BATCH {
            break;
        }
        if old || excess > 0 {
            doomed.push(id);
            excess = excess.saturating_sub(1);
        } else {
            // Oldest first: once one is young and the count is within bounds, so are the rest
            // (ids grow with time, near enough for pruning).
            break;
        }
    }
    for id in &doomed {
        alerts.remove(*id)?;
        let keys: Vec<(u64, u32)> = deliveries
            .range((*id, 0)..=(*id, u32::MAX))?
            .map(|row| row.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()?;
        for key in keys {
            deliveries.remove(key)?;
        }
    }
    Ok(doomed.len())
}

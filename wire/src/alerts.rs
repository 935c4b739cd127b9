//! Alerting: rules (`tether alert rule add`), the alerts they raise, and the channels that are
//! told (seed 002's `alert_rules` and `alerts`). A rule compares one report field of each
//! heartbeat with a threshold and fires when the comparison has held for its duration (as a
//! Prometheus rule's `for:`); the built-in kinds watch a node's silence and its clock.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::heartbeat::Metrics;
use crate::history::Metric;

/// Longest rule, channel or label text, bytes.
pub const MAX_NAME: usize = 64;
/// Most rules core keeps.
pub const MAX_RULES: usize = 1000;
/// Most channels core keeps.
pub const MAX_CHANNELS: usize = 100;
/// Longest duration a rule may ask a condition to hold (a week), milliseconds.
pub const MAX_FOR_MS: u64 = 7 * 24 * 3600 * 1000;

/// How a value is compared with a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
}

impl Op {
    /// Every operator, as named on the command line.
    pub const ALL: [Op; 6] = [Op::Gt, Op::Gte, Op::Lt, Op::Lte, Op::Eq, Op::Ne];

    /// `gt`, `gte`...
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Eq => "eq",
            Op::Ne => "ne",
        }
    }

    /// `>`, `>=`...
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Gte => ">=",
            Op::Lt => "<",
            Op::Lte => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    /// Whether `value OP threshold` holds.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Gte => value >= threshold,
            Op::Lt => value < threshold,
            Op::Lte => value <= threshold,
            Op::Eq => value == threshold,
            Op::Ne => value != threshold,
        }
    }
}

impl FromStr for Op {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Op::ALL
            .into_iter()
            .find(|op| op.as_str() == s || op.symbol() == s)
            .ok_or_else(|| {
                format!("unknown operator {s:?}; expected one of: gt, gte, lt, lte, eq, ne")
            })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Someone should act now.
    Critical,
    /// Someone should look soon.
    Warning,
    /// Worth knowing.
    Info,
}

impl Severity {
    /// Every severity, most urgent first.
    pub const ALL: [Severity; 3] = [Severity::Critical, Severity::Warning, Severity::Info];

    /// `critical`, `warning` or `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown severity {s:?}; expected critical, warning or info"))
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A report field a rule watches: a history series, or one filesystem's use by mount point.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// One of the history series (`cpu`, `mem`, `disk` — the fullest filesystem —, `load1`...).
    Series(Metric),
    /// Swap in use, percent (`swap`).
    Swap,
    /// The highest temperature sensor, °C (`temperature`); nodes without sensors never match.
    Temperature,
    /// UDP sockets (`udp`).
    Udp,
    /// One filesystem's use, percent (`disk:/var`).
    DiskAt(String),
    /// One filesystem's bytes in use (`disk_used:/var`).
    DiskUsedAt(String),
}

impl Field {
    /// The value in a heartbeat, or none where the heartbeat has no such field (no sensor, no
    /// such mount).
    pub fn value(&self, m: &Metrics) -> Option<f64> {
        use crate::history::percent;
        match self {
            Field::Series(metric) => Some(metric.of(m)),
            Field::Swap => Some(percent(m.swap_used, m.swap_total)),
            Field::Temperature => m.temperature_c.map(f64::from),
            Field::Udp => Some(f64::from(m.udp_connections)),
            Field::DiskAt(mount) => m
                .disks
                .iter()
                .find(|d| &d.mount == mount)
                .map(|d| percent(d.used_bytes, d.total_bytes)),
            Field::DiskUsedAt(mount) => m
                .disks
                .iter()
                .find(|d| &d.mount == mount)
                .map(|d| d.used_bytes as f64),
        }
    }

    /// The unit of its values (as [`Metric::unit`]).
    pub fn unit(&self) -> &'static str {
        match self {
            Field::Series(metric) => metric.unit(),
            Field::Swap | Field::DiskAt(_) => "percent",
            Field::Temperature => "celsius",
            Field::Udp => "count",
            Field::DiskUsedAt(_) => "bytes",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Series(metric) => f.write_str(metric.as_str()),
            Field::Swap => f.write_str("swap"),
            Field::Temperature => f.write_str("temperature"),
            Field::Udp => f.write_str("udp"),
            Field::DiskAt(mount) => write!(f, "disk:{mount}"),
            Field::DiskUsedAt(mount) => write!(f, "disk_used:{mount}"),
        }
    }
}

impl FromStr for Field {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mount = |m: &str| {
            if m.starts_with('/') && m.len() <= 256 && !m.contains(char::is_control) {
                Ok(m.to_string())
            } else {
                Err(format!(
                    "{s:?}: a mount point is an absolute path, e.g. disk:/var"
                ))
            }
        };
        if let Some(m) = s.strip_prefix("disk:") {
            return Ok(Field::DiskAt(mount(m)?));
        }
        if let Some(m) = s.strip_prefix("disk_used:") {
            return Ok(Field::DiskUsedAt(mount(m)?));
        }
        match s {
            "swap" => Ok(Field::Swap),
            "temperature" | "temp" => Ok(Field::Temperature),
            "udp" => Ok(Field::Udp),
            _ => s.parse::<Metric>().map(Field::Series).map_err(|_| {
                format!(
                    "unknown metric {s:?}; expected one of: {}, swap, temperature, udp, \
                     disk:MOUNT, disk_used:MOUNT",
                    Metric::ALL.map(Metric::as_str).join(", ")
                )
            }),
        }
    }
}

/// What a rule watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// A report field compared with a threshold, at every heartbeat.
    Threshold {
        /// The field.
        field: Field,
        /// The comparison.
        op: Op,
        /// The threshold, in the field's unit (finite).
        threshold: f64,
    },
    /// No heartbeat (node disconnected or silent): fires once the node has been offline for
    /// the rule's duration.
    Offline,
    /// The node's clock differs from core's by more than this many milliseconds.
    ClockSkew {
        /// The largest difference tolerated.
        max_ms: u64,
    },
    /// The agent restarted more than `max` times within the rule's duration: a restart loop.
    /// Evaluated when the agent reports its state (after connecting, then every few minutes).
    AgentRestarts {
        /// Restarts tolerated within the window.
        max: u32,
    },
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Threshold {
                field,
                op,
                threshold,
            } => write!(f, "{field} {} {threshold}", op.symbol()),
            Condition::Offline => f.write_str("offline"),
            Condition::ClockSkew { max_ms } => write!(f, "clock skew > {max_ms} ms"),
            Condition::AgentRestarts { max } => write!(f, "agent restarts > {max}"),
        }
    }
}

/// Which nodes a rule watches: every node, or those listed, carrying every label, or in a listed
/// group (or a group below it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    /// Labels a node must all carry (`key=value`); empty: no label condition.
    pub labels: Vec<(String, String)>,
    /// Nodes watched by id; empty: no id condition.
    pub nodes: Vec<NodeId>,
    /// Groups, by name, whose nodes (and those of every group below) are watched; empty: no
    /// group condition.
    pub groups: Vec<String>,
}

impl Targets {
    /// Whether a node is watched: no condition means every node; otherwise a listed node, one
    /// carrying every label, or one whose group or any group above it is listed. `ancestry`:
    /// the names of the node's group and every group above it (empty: in no group).
    pub fn matches(
        &self,
        id: NodeId,
        labels: &std::collections::BTreeMap<String, String>,
        ancestry: &[String],
    ) -> bool {
        if self.labels.is_empty() && self.nodes.is_empty() && self.groups.is_empty() {
            return true;
        }
        self.nodes.contains(&id)
            || (!self.labels.is_empty()
                && self
                    .labels
                    .iter()
                    .all(|(k, v)| labels.get(k).is_some_and(|have| have == v)))
            || self.groups.iter().any(|g| ancestry.contains(g))
    }
}

/// An alert rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    /// Its name (letters, digits, `-`, `_`, `.`), unique.
    pub name: String,
    /// What it watches.
    pub condition: Condition,
    /// How long the condition must hold before the alert fires, milliseconds (0: at once;
    /// for `offline`, how long the node has been offline).
    pub for_ms: u64,
    /// How urgent its alerts are.
    pub severity: Severity,
    /// Which nodes it watches.
    pub targets: Targets,
    /// Channels told when one of its alerts fires or resolves, by name.
    pub channels: Vec<String>,
    /// Whether it is evaluated.
    pub enabled: bool,
    /// Who made it.
    pub created_by: String,
    /// When, unix ms.
    pub created_at_ms: i64,
}

impl AlertRule {
    /// Checks what a client sent: the name, a finite threshold, a duration within bounds, names
    /// of channels and labels. The error names the field.
    pub fn check(&self) -> Result<(), String> {
        check_name("rule", &self.name)?;
        if let Condition::Threshold { threshold, .. } = &self.condition
            && !threshold.is_finite()
        {
            return Err(format!("the threshold must be a number, not {threshold}"));
        }
        if self.for_ms > MAX_FOR_MS {
            return Err("the duration (--for) is at most 7 days".into());
        }
        match self.condition {
            Condition::Offline if self.for_ms == 0 => {
                return Err("an offline rule needs a duration (--for) greater than zero".into());
            }
            Condition::AgentRestarts { .. } if self.for_ms == 0 => {
                return Err(
                    "a restart rule needs a window (--for) greater than zero, e.g. 10m".into(),
                );
            }
            Condition::ClockSkew { max_ms: 0 } => {
                return Err("the clock skew tolerated must be greater than zero".into());
            }
            _ => {}
        }
        for channel in &self.channels {
            check_name("channel", channel)?;
        }
        for group in &self.targets.groups {
            crate::groups::check_name(group).map_err(|e| format!("group {group:?}: {e}"))?;
        }
        for (k, v) in &self.targets.labels {
            if k.is_empty() || k.len() > MAX_NAME || v.len() > MAX_NAME {
                return Err(format!(
                    "label {k}={v}: keys are 1 to {MAX_NAME} bytes, values at most {MAX_NAME}"
                ));
            }
        }
        Ok(())
    }
}

/// Checks a rule's or channel's name.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_NAME
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{what} name {name:?}: 1 to {MAX_NAME} letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

/// An alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds.
    Firing,
    /// It held, and no longer does (or the node, or the rule, went away).
    Resolved,
}

impl AlertState {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert: a rule's condition held on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Its number, increasing.
    pub id: u64,
    /// The rule that raised it.
    pub rule: String,
    /// Its severity (the rule's when it fired).
    pub severity: Severity,
    /// The node.
    pub node_id: NodeId,
    /// The node's hostname when it fired.
    pub hostname: String,
    /// What was watched, as text (`cpu > 90`, `offline`).
    pub condition: String,
    /// Firing or resolved.
    pub state: AlertState,
    /// The value that fired it (for thresholds; the skew in ms; the seconds offline).
    pub value: Option<f64>,
    /// When the condition began to hold, unix ms.
    pub since_ms: i64,
    /// When it fired (the condition had held for the rule's duration), unix ms.
    pub fired_at_ms: i64,
    /// When it resolved, unix ms.
    pub resolved_at_ms: Option<i64>,
    /// Why it resolved, in words (`cpu 42.5`, `the node is back`, `the rule was deleted`).
    pub resolution: Option<String>,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
    /// When, unix ms.
    pub acked_at_ms: Option<i64>,
    /// Whether channels were told it fired (false when it was damped as a flap, or silenced).
    pub notified: bool,
}

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// An HTTP(S) POST of the alert as JSON.
    Webhook {
        /// The URL.
        url: String,
        /// Signs each body with HMAC-SHA256: header `X-Tether-Signature: sha256=HEX`. Never
        /// shown back.
        secret: Option<String>,
    },
    /// An email through an SMTP server (STARTTLS unless `plain`).
    Smtp {
        /// Server host name.
        host: String,
        /// Server port (587 for STARTTLS, 25).
        port: u16,
        /// Log in as this user (with `password`).
        username: Option<String>,
        /// Password. Never shown back.
        password: Option<String>,
        /// The sender.
        from: String,
        /// The recipients.
        to: Vec<String>,
        /// No TLS (only for a server on loopback or a trusted network).
        plain: bool,
    },
}

/// A channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// Its name, unique.
    pub name: String,
    /// Where it sends.
    pub kind: ChannelKind,
    /// Who made it.
    pub created_by: String,
    /// When, unix ms.
    pub created_at_ms: i64,
}

impl Channel {
    /// The channel as shown to admins: secrets replaced by `(set)`.
    pub fn redacted(&self) -> Channel {
        let mut shown = self.clone();
        match &mut shown.kind {
            ChannelKind::Webhook { secret, .. } => {
                if secret.is_some() {
                    *secret = Some("(set)".into());
                }
            }
            ChannelKind::Smtp { password, .. } => {
                if password.is_some() {
                    *password = Some("(set)".into());
                }
            }
        }
        shown
    }

    /// Checks what a client sent: the name, an http(s) URL with a host, an SMTP host, port and
    /// addresses.
    pub fn check(&self) -> Result<(), String> {
        check_name("channel", &self.name)?;
        match &self.kind {
            ChannelKind::Webhook { url, secret } => {
                check_url(url)?;
                if secret
                    .as_ref()
                    .is_some_and(|s| s.is_empty() || s.len() > 1024)
                {
                    return Err("the webhook secret is 1 to 1024 bytes".into());
                }
            }
            ChannelKind::Smtp {
                host,
                port,
                from,
                to,
                ..
            } => {
                if host.is_empty() || host.len() > 253 || host.contains(char::is_whitespace) {
                    return Err(format!("SMTP server {host:?} is not a host name"));
                }
                if *port == 0 {
                    return Err("the SMTP port must not be 0".into());
                }
                for address in std::iter::once(from).chain(to) {
                    check_address(address)?;
                }
                if to.is_empty() {
                    return Err("an email channel needs at least one recipient (--to)".into());
                }
            }
        }
        Ok(())
    }
}

/// An http or https URL with a host, without parsing more than a webhook needs.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("webhook URL {url:?} must start with http:// or https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty()
        || url.len() > 2048
        || url.contains(char::is_whitespace)
        || url.contains(char::is_control)
    {
        return Err(format!(
            "webhook URL {url:?} has no host or contains spaces"
        ));
    }
    Ok(())
}

fn check_address(address: &str) -> Result<(), String> {
    let ok = address
        .split_once('@')
        .is_some_and(|(user, domain)| !user.is_empty() && !domain.is_empty())
        && address.len() <= 254
        && !address.contains(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(format!("{address:?} is not an email address"))
    }
}

/// One attempt to tell a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The alert.
    pub alert_id: u64,
    /// `firing` or `resolved`: which news it carried.
    pub event: AlertState,
    /// The channel.
    pub channel: String,
    /// When the attempt ended, unix ms.
    pub at_ms: i64,
    /// 1 for the first try.
    pub attempt: u32,
    /// Whether the receiver took it (2xx; the SMTP server accepted it).
    pub ok: bool,
    /// What went wrong (status, timeout, refusal), without secrets.
    pub error: Option<String>,
}

/// `AlertList`'s question.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertQuery {
    /// Only firing ones.
    pub firing: bool,
    /// Only this node's (id, unique prefix or hostname).
    pub node: Option<String>,
    /// At most this many, newest first (default 100).
    pub limit: Option<u32>,
}

/// An alert with its deliveries (`AlertShow`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertDetail {
    /// The alert.
    pub alert: Alert,
    /// Every attempt to tell a channel about it, oldest first.
    pub deliveries: Vec<Delivery>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_and_print_alike() {
        for text in [
            "cpu",
            "mem_used",
            "swap",
            "temperature",
            "udp",
            "disk:/var",
            "disk_used:/",
        ] {
            let field: Field = text.parse().unwrap();
            assert_eq!(field.to_string(), text);
        }
        let error = "cpux".parse::<Field>().unwrap_err();
        assert!(error.contains("unknown metric \"cpux\""), "{error}");
        assert!(
            "disk:var"
                .parse::<Field>()
                .unwrap_err()
                .contains("absolute path")
        );
        assert_eq!("temp".parse::<Field>(), Ok(Field::Temperature));
    }

    #[test]
    fn operators_by_name_or_symbol() {
        assert_eq!("gte".parse::<Op>(), Ok(Op::Gte));
        assert_eq!(">=".parse::<Op>(), Ok(Op::Gte));
        assert!("above".parse::<Op>().unwrap_err().contains("gt, gte"));
        assert!(Op::Gt.holds(2.0, 1.0) && !Op::Gt.holds(1.0, 1.0));
        assert!(Op::Ne.holds(1.0, 2.0) && Op::Eq.holds(2.0, 2.0));
    }

    #[test]
    fn a_rule_refuses_nan_and_durations_out_of_bounds() {
        let mut rule = AlertRule {
            name: "cpu-high".into(),
            condition: Condition::Threshold {
                field: Field::Series(Metric::Cpu),
                op: Op::Gt,
                threshold: f64::NAN,
            },
            for_ms: 60_000,
            severity: Severity::Warning,
            targets: Targets::default(),
            channels: vec![],
            enabled: true,
            created_by: "a".into(),
            created_at_ms: 0,
        };
        assert!(rule.check().unwrap_err().contains("must be a number"));
        rule.condition = Condition::Offline;
        rule.for_ms = 0;
        assert!(rule.check().unwrap_err().contains("greater than zero"));
        rule.for_ms = MAX_FOR_MS + 1;
        assert!(rule.check().unwrap_err().contains("at most 7 days"));
        rule.for_ms = 1000;
        rule.name = "bad name".into();
        assert!(rule.check().unwrap_err().contains("rule name"));
    }

    #[test]
    fn targets_match_labels_or_ids() {
        let id = NodeId::random();
        let labels: std::collections::BTreeMap<String, String> =
            [("env".to_string(), "prod".to_string())].into();
        assert!(Targets::default().matches(id, &labels, &[]));
        let prod = Targets {
            labels: vec![("env".into(), "prod".into())],
            ..Targets::default()
        };
        assert!(prod.matches(id, &labels, &[]));
        assert!(!prod.matches(id, &Default::default(), &[]));
        let listed = Targets {
            nodes: vec![id],
            ..Targets::default()
        };
        assert!(listed.matches(id, &Default::default(), &[]));
        assert!(!listed.matches(NodeId::random(), &labels, &[]));
        // A group watches its nodes and those of every group below it.
        let grouped = Targets {
            groups: vec!["prod".into()],
            ..Targets::default()
        };
        let below = ["web".to_string(), "prod".to_string()];
        assert!(grouped.matches(id, &Default::default(), &below));
        assert!(!grouped.matches(id, &labels, &["lab".to_string()]));
        assert!(!grouped.matches(id, &labels, &[]));
    }

    #[test]
    fn urls_and_channels_are_checked() {
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("ftp://x").unwrap_err().contains("http://"));
        assert!(check_url("http:///path").unwrap_err().contains("no host"));
        let channel = Channel {
            name: "ops".into(),
            kind: ChannelKind::Webhook {
                url: "https://hooks.example/x".into(),
                secret: Some("s3cret".into()),
            },
            created_by: "a".into(),
            created_at_ms: 0,
        };
        assert!(channel.check().is_ok());
        assert!(!format!("{:?}", channel.redacted()).contains("s3cret"));
    }
}

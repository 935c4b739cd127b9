//! `tether alert ...`: alerts, the rules that raise them and the channels that are told.

use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;
use serde_json::json;
use tether_client::AdminClient;
use tether_wire::admin::{AdminRequest, AdminResponse, parse_label};
use tether_wire::alerts::{
    Alert, AlertDetail, AlertQuery, AlertRule, AlertState, Channel, ChannelKind, Condition, Field,
    Op, Severity, Targets,
};
use tether_wire::units::parse_duration;

use crate::output::{self, ago, print_json, rfc3339};

/// Alerts: what fires, who is told, and who is on it.
#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Alerts, newest first: firing ones and recent resolved ones.
    List {
        /// Only firing alerts.
        #[arg(long)]
        firing: bool,
        /// Only this node's (id, unique prefix or hostname).
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// At most this many (1 to 10000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One alert, with every attempt to notify its channels.
    Show {
        /// The alert's number.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an alert: say someone is on it. It stays firing until its condition ends.
    Ack {
        /// The alert's number.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Alert rules (admins change them; everyone may read them).
    #[command(subcommand)]
    Rule(RuleCommand),
    /// Notification channels: webhooks and email (admins).
    #[command(subcommand)]
    Channel(ChannelCommand),
}

#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Add a rule. It is evaluated at every heartbeat of the nodes it targets (all nodes
    /// unless --label, --node or --group say otherwise) and fires once its condition has held for
    /// --for; nodes in maintenance are silent.
    ///
    /// A threshold rule: --metric M --op OP --threshold X. Metrics: cpu, mem, disk (percent;
    /// disk is the fullest filesystem), mem_used, disk_used (bytes), net_rx, net_tx (bytes per
    /// second), load1, load5, load15, procs, tcp, udp, swap (percent), temperature (°C),
    /// disk:MOUNT and disk_used:MOUNT for one filesystem (disk:/var). Operators: gt, gte, lt,
    /// lte, eq, ne.
    ///
    /// Built-in kinds: --offline (fires once a node has been offline for --for),
    /// --clock-skew D (fires when a node's clock is more than D off core's) and
    /// --agent-restarts N (fires when the agent restarted more than N times within --for).
    ///
    /// Example: tether alert rule add cpu-high --metric cpu --op gt --threshold 90 --for 5m
    /// --severity warning --label env=prod --channel ops
    Add {
        /// The rule's name: 1 to 64 letters, digits, '-', '_' or '.'.
        name: String,
        /// The report field watched.
        #[arg(long, value_name = "METRIC", conflicts_with_all = ["offline", "clock_skew"], requires_all = ["op", "threshold"])]
        metric: Option<Field>,
        /// How the value is compared with the threshold.
        #[arg(long, value_name = "OP")]
        op: Option<Op>,
        /// The threshold, in the metric's unit.
        #[arg(long, value_name = "X", allow_negative_numbers = true)]
        threshold: Option<f64>,
        /// Fire when a node has been offline for --for.
        #[arg(long, conflicts_with = "clock_skew")]
        offline: bool,
        /// Fire when a node's clock is more than this off core's (e.g. 30s).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "agent_restarts")]
        clock_skew: Option<Duration>,
        /// Fire when the agent restarted more than N times within --for (a restart loop).
        #[arg(long, value_name = "N", conflicts_with_all = ["offline", "metric"])]
        agent_restarts: Option<u32>,
        /// How long the condition must hold before the alert fires (e.g. 5m) [default: 0s,
        /// at the first heartbeat; offline rules need one].
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        for_: Option<Duration>,
        /// critical, warning or info.
        #[arg(long, default_value = "warning")]
        severity: Severity,
        /// Only nodes carrying this label (repeat: all of them).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// This node (id, unique prefix or hostname); repeat for several.
        #[arg(long = "node", value_name = "NODE")]
        nodes: Vec<String>,
        /// Every node in this group or a group below it, as they move in and out; repeat for
        /// several.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// A channel told when its alerts fire and resolve; repeat for several.
        #[arg(long = "channel", value_name = "CHANNEL")]
        channels: Vec<String>,
        /// Add it disabled.
        #[arg(long)]
        disabled: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every rule.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One rule.
    Show {
        /// Its name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a disabled rule again.
    Enable {
        /// Its name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop evaluating a rule; its firing alerts resolve.
    Disable {
        /// Its name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a rule; its firing alerts resolve, its alerts stay in the history.
    Delete {
        /// Its name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Add a channel.
    ///
    /// A webhook: --webhook URL [--secret S]. Core POSTs each alert as JSON; with a secret,
    /// the header X-Tether-Signature: sha256=HEX is the HMAC-SHA256 of the body under it.
    ///
    /// Email: --smtp HOST[:PORT] --from ADDR --to ADDR... [--username U] (the password from
    /// TETHER_SMTP_PASSWORD), STARTTLS on port 587 by default; --plain only for a relay on
    /// loopback or a trusted network.
    ///
    /// Failed deliveries are retried with backoff; every attempt is recorded (tether alert
    /// show ID).
    Add {
        /// The channel's name: 1 to 64 letters, digits, '-', '_' or '.'.
        name: String,
        /// The webhook's URL (http:// or https://).
        #[arg(
            long,
            value_name = "URL",
            conflicts_with = "smtp",
            required_unless_present = "smtp"
        )]
        webhook: Option<String>,
        /// Sign each webhook body with this secret (or TETHER_WEBHOOK_SECRET).
        #[arg(
            long,
            value_name = "SECRET",
            env = "TETHER_WEBHOOK_SECRET",
            hide_env_values = true,
            requires = "webhook"
        )]
        secret: Option<String>,
        /// The SMTP server, HOST or HOST:PORT [port: 587].
        #[arg(long, value_name = "HOST[:PORT]", requires_all = ["from", "to"])]
        smtp: Option<String>,
        /// The sender's address.
        #[arg(long, value_name = "ADDR")]
        from: Option<String>,
        /// A recipient; repeat for several.
        #[arg(long, value_name = "ADDR")]
        to: Vec<String>,
        /// Log in to the SMTP server as this user (password from TETHER_SMTP_PASSWORD).
        #[arg(long, value_name = "USER", requires = "smtp")]
        username: Option<String>,
        /// The SMTP password.
        #[arg(
            long,
            env = "TETHER_SMTP_PASSWORD",
            hide_env_values = true,
            hide = true
        )]
        smtp_password: Option<String>,
        /// No TLS to the SMTP server.
        #[arg(long, requires = "smtp")]
        plain: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every channel (secrets hidden).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a channel no rule uses.
    Delete {
        /// Its name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a test notification through a channel now, and say whether it arrived.
    ///
    /// One attempt, no retries: a webhook gets event "test" (signed like any other), an email
    /// a subject starting "[TEST". Exits 1 if the receiver did not take it.
    Test {
        /// Its name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn pick<T>(responses: Vec<AdminResponse>, f: fn(AdminResponse) -> Option<T>) -> anyhow::Result<T> {
    crate::single(responses, f)
}

fn one_rule(r: AdminResponse) -> Option<AlertRule> {
    match r {
        AdminResponse::AlertRule(rule) => Some(rule),
        _ => None,
    }
}

fn one_channel(r: AdminResponse) -> Option<Channel> {
    match r {
        AdminResponse::AlertChannel(channel) => Some(channel),
        _ => None,
    }
}

/// Runs an alert command; the exit status.
pub async fn run(client: &AdminClient, command: AlertCommand) -> anyhow::Result<u8> {
    match command {
        AlertCommand::List {
            firing,
            node,
            limit,
            json,
        } => {
            let mut alerts = Vec::new();
            for response in client
                .request(&AdminRequest::AlertList(AlertQuery {
                    firing,
                    node,
                    limit: Some(limit),
                }))
                .await?
            {
                match response {
                    AdminResponse::Alerts(chunk) => alerts.extend(chunk),
                    _ => bail!("core sent an unexpected answer"),
                }
            }
            print_alerts(&alerts, json)?;
        }
        AlertCommand::Show { id, json } => {
            let detail = pick(
                client.request(&AdminRequest::AlertShow { id }).await?,
                |r| match r {
                    AdminResponse::AlertDetail(d) => Some(d),
                    _ => None,
                },
            )?;
            print_detail(&detail, json)?;
        }
        AlertCommand::Ack { id, json } => {
            let alert = pick(
                client.request(&AdminRequest::AlertAck { id }).await?,
                |r| match r {
                    AdminResponse::Alert(a) => Some(a),
                    _ => None,
                },
            )?;
            if json {
                print_json(&alert)?;
            } else {
                println!(
                    "Alert {} ({} on {}) acknowledged by {}; it stays {} until its condition ends.",
                    alert.id,
                    alert.rule,
                    alert.hostname,
                    alert.acked_by.as_deref().unwrap_or("?"),
                    alert.state.as_str()
                );
            }
        }
        AlertCommand::Rule(command) => return rules(client, command).await,
        AlertCommand::Channel(command) => return channels(client, command).await,
    }
    Ok(0)
}

async fn rules(client: &AdminClient, command: RuleCommand) -> anyhow::Result<u8> {
    let (request, json, verb) = match command {
        RuleCommand::Add {
            name,
            metric,
            op,
            threshold,
            offline,
            clock_skew,
            agent_restarts,
            for_,
            severity,
            labels,
            nodes,
            groups,
            channels,
            disabled,
            json,
        } => {
            let condition = match (metric, offline, clock_skew, agent_restarts) {
                (Some(field), false, None, None) => Condition::Threshold {
                    field,
                    op: op.expect("clap requires --op"),
                    threshold: threshold.expect("clap requires --threshold"),
                },
                (None, true, None, None) => Condition::Offline,
                (None, false, Some(skew), None) => Condition::ClockSkew {
                    max_ms: tether_wire::units::duration_ms(skew),
                },
                (None, false, None, Some(max)) => Condition::AgentRestarts { max },
                _ => bail!(
                    "say what the rule watches: --metric M --op OP --threshold X, --offline, \
                     --clock-skew D, or --agent-restarts N"
                ),
            };
            let rule = AlertRule {
                name,
                condition,
                for_ms: for_.map_or(0, tether_wire::units::duration_ms),
                severity,
                targets: Targets {
                    labels,
                    nodes: Vec::new(),
                    groups,
                },
                channels,
                enabled: !disabled,
                created_by: String::new(),
                created_at_ms: 0,
            };
            rule.check().map_err(anyhow::Error::msg)?;
            (AdminRequest::AlertRuleAdd { rule, nodes }, json, "Added")
        }
        RuleCommand::List { json } => {
            let rules = pick(
                client.request(&AdminRequest::AlertRuleList).await?,
                |r| match r {
                    AdminResponse::AlertRules(rules) => Some(rules),
                    _ => None,
                },
            )?;
            print_rules(&rules, json)?;
            return Ok(0);
        }
        RuleCommand::Show { name, json } => (AdminRequest::AlertRuleShow { name }, json, ""),
        RuleCommand::Enable { name, json } => (
            AdminRequest::AlertRuleEnable {
                name,
                enabled: true,
            },
            json,
            "Enabled",
        ),
        RuleCommand::Disable { name, json } => (
            AdminRequest::AlertRuleEnable {
                name,
                enabled: false,
            },
            json,
            "Disabled (its firing alerts resolve)",
        ),
        RuleCommand::Delete { name, json } => (
            AdminRequest::AlertRuleDelete { name },
            json,
            "Deleted (its firing alerts resolve)",
        ),
    };
    let rule = pick(client.request(&request).await?, one_rule)?;
    if json {
        print_json(&rule)?;
    } else if verb.is_empty() {
        print_rule(&rule);
    } else {
        println!("{verb}: {}", rule_line(&rule));
    }
    Ok(0)
}

async fn channels(client: &AdminClient, command: ChannelCommand) -> anyhow::Result<u8> {
    match command {
        ChannelCommand::Add {
            name,
            webhook,
            secret,
            smtp,
            from,
            to,
            username,
            smtp_password,
            plain,
            json,
        } => {
            let kind = match (webhook, smtp) {
                (Some(url), None) => ChannelKind::Webhook { url, secret },
                (None, Some(server)) => {
                    let (host, port) = match server.rsplit_once(':') {
                        Some((host, port)) if !host.contains(':') || host.starts_with('[') => {
                            let port: u16 = port.parse().map_err(|_| {
                                anyhow::anyhow!("--smtp {server}: the port must be a number")
                            })?;
                            (host.trim_matches(['[', ']']).to_string(), port)
                        }
                        _ => (server.clone(), 587),
                    };
                    if username.is_some() != smtp_password.is_some() {
                        bail!(
                            "--username needs TETHER_SMTP_PASSWORD, and the password needs --username"
                        );
                    }
                    ChannelKind::Smtp {
                        host,
                        port,
                        username,
                        password: smtp_password,
                        from: from.unwrap_or_default(),
                        to,
                        plain,
                    }
                }
                _ => bail!("a channel is either --webhook URL or --smtp HOST"),
            };
            let channel = Channel {
                name,
                kind,
                created_by: String::new(),
                created_at_ms: 0,
            };
            channel.check().map_err(anyhow::Error::msg)?;
            let added = pick(
                client
                    .request(&AdminRequest::AlertChannelAdd(channel))
                    .await?,
                one_channel,
            )?;
            if json {
                print_json(&added)?;
            } else {
                println!("Added channel {}: {}", added.name, channel_target(&added));
            }
        }
        ChannelCommand::List { json } => {
            let channels = pick(
                client.request(&AdminRequest::AlertChannelList).await?,
                |r| match r {
                    AdminResponse::AlertChannels(c) => Some(c),
                    _ => None,
                },
            )?;
            if json {
                print_json(&channels)?;
            } else if channels.is_empty() {
                eprintln!(
                    "No channels. Add one with `tether alert channel add NAME --webhook URL`."
                );
            } else {
                output::table(
                    &["NAME", "KIND", "SENDS TO", "BY", "ADDED"],
                    channels
                        .iter()
                        .map(|c| {
                            vec![
                                c.name.clone(),
                                match c.kind {
                                    ChannelKind::Webhook { .. } => "webhook".into(),
                                    ChannelKind::Smtp { .. } => "email".into(),
                                },
                                channel_target(c),
                                c.created_by.clone(),
                                ago(Some(c.created_at_ms)),
                            ]
                        })
                        .collect(),
                )?;
            }
        }
        ChannelCommand::Delete { name, json } => {
            let deleted = pick(
                client
                    .request(&AdminRequest::AlertChannelDelete { name })
                    .await?,
                one_channel,
            )?;
            if json {
                print_json(&deleted)?;
            } else {
                println!("Deleted channel {}.", deleted.name);
            }
        }
        ChannelCommand::Test { name, json } => {
            let delivery = pick(
                client
                    .request(&AdminRequest::AlertChannelTest { name })
                    .await?,
                |r| match r {
                    AdminResponse::AlertDelivery(d) => Some(d),
                    _ => None,
                },
            )?;
            if json {
                print_json(&delivery)?;
            } else if delivery.ok {
                println!(
                    "Channel {}: the test notification was delivered.",
                    delivery.channel
                );
            } else {
                eprintln!(
                    "Channel {}: the test notification failed: {}",
                    delivery.channel,
                    delivery.error.as_deref().unwrap_or("no reason given")
                );
            }
            return Ok(if delivery.ok { 0 } else { 1 });
        }
    }
    Ok(0)
}

fn channel_target(channel: &Channel) -> String {
    match &channel.kind {
        ChannelKind::Webhook { url, secret } => {
            format!("{url}{}", if secret.is_some() { " (signed)" } else { "" })
        }
        ChannelKind::Smtp {
            host,
            port,
            to,
            plain,
            ..
        } => format!(
            "{} via {host}:{port}{}",
            to.join(", "),
            if *plain { " (no TLS)" } else { "" }
        ),
    }
}

fn duration(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

fn targets(rule: &AlertRule) -> String {
    let mut parts: Vec<String> = rule
        .targets
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    parts.extend(
        rule.targets
            .nodes
            .iter()
            .map(|n| n.to_string()[..8].to_string()),
    );
    parts.extend(rule.targets.groups.iter().map(|g| format!("group {g}")));
    if parts.is_empty() {
        "all nodes".into()
    } else {
        parts.join(", ")
    }
}

fn rule_line(rule: &AlertRule) -> String {
    format!(
        "{} [{}] {} for {} on {}{}",
        rule.name,
        rule.severity,
        rule.condition,
        duration(rule.for_ms),
        targets(rule),
        if rule.enabled { "" } else { " (disabled)" }
    )
}

fn print_rule(rule: &AlertRule) {
    println!("Rule:      {}", rule.name);
    println!("Condition: {}", rule.condition);
    println!("For:       {}", duration(rule.for_ms));
    println!("Severity:  {}", rule.severity);
    println!("Targets:   {}", targets(rule));
    println!(
        "Channels:  {}",
        if rule.channels.is_empty() {
            "none".into()
        } else {
            rule.channels.join(", ")
        }
    );
    println!("Enabled:   {}", if rule.enabled { "yes" } else { "no" });
    println!(
        "Added:     {} by {}",
        rfc3339(rule.created_at_ms),
        rule.created_by
    );
}

fn print_rules(rules: &[AlertRule], json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&rules);
    }
    if rules.is_empty() {
        eprintln!(
            "No alert rules. Add one with `tether alert rule add NAME --metric cpu --op gt --threshold 90 --for 5m`."
        );
        return Ok(());
    }
    output::table(
        &[
            "NAME",
            "SEVERITY",
            "CONDITION",
            "FOR",
            "TARGETS",
            "CHANNELS",
            "ENABLED",
        ],
        rules
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.severity.to_string(),
                    r.condition.to_string(),
                    duration(r.for_ms),
                    targets(r),
                    r.channels.join(","),
                    if r.enabled { "yes" } else { "no" }.into(),
                ]
            })
            .collect(),
    )
}

fn value(alert: &Alert) -> String {
    alert.value.map_or_else(String::new, |v| {
        if v.fract() == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    })
}

fn print_alerts(alerts: &[Alert], json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&alerts);
    }
    if alerts.is_empty() {
        eprintln!("No alerts.");
        return Ok(());
    }
    output::table(
        &[
            "ID",
            "STATE",
            "SEVERITY",
            "RULE",
            "NODE",
            "CONDITION",
            "VALUE",
            "FIRED",
            "ACK",
        ],
        alerts
            .iter()
            .map(|a| {
                vec![
                    a.id.to_string(),
                    match a.state {
                        AlertState::Firing => "firing".into(),
                        AlertState::Resolved => format!("resolved {}", ago(a.resolved_at_ms)),
                    },
                    a.severity.to_string(),
                    a.rule.clone(),
                    a.hostname.clone(),
                    a.condition.clone(),
                    value(a),
                    ago(Some(a.fired_at_ms)),
                    a.acked_by.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    )
}

fn print_detail(detail: &AlertDetail, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&json!({
            "alert": detail.alert,
            "deliveries": detail.deliveries,
        }));
    }
    let a = &detail.alert;
    println!("Alert:      {} ({})", a.id, a.state.as_str());
    println!("Rule:       {} [{}]", a.rule, a.severity);
    println!("Condition:  {}", a.condition);
    println!("Node:       {} ({})", a.hostname, a.node_id);
    println!("Value:      {}", value(a));
    println!("Since:      {}", rfc3339(a.since_ms));
    println!("Fired:      {}", rfc3339(a.fired_at_ms));
    if let Some(at) = a.resolved_at_ms {
        println!(
            "Resolved:   {} ({})",
            rfc3339(at),
            a.resolution.as_deref().unwrap_or("")
        );
    }
    if let (Some(by), Some(at)) = (&a.acked_by, a.acked_at_ms) {
        println!("Acked:      {} by {by}", rfc3339(at));
    }
    println!(
        "Notified:   {}",
        if a.notified {
            "yes"
        } else {
            "no (no channel, or damped as a flap)"
        }
    );
    if detail.deliveries.is_empty() {
        println!("Deliveries: none");
        return Ok(());
    }
    println!("Deliveries:");
    output::table(
        &["  AT", "EVENT", "CHANNEL", "ATTEMPT", "RESULT"],
        detail
            .deliveries
            .iter()
            .map(|d| {
                vec![
                    format!("  {}", rfc3339(d.at_ms)),
                    d.event.as_str().into(),
                    d.channel.clone(),
                    d.attempt.to_string(),
                    if d.ok {
                        "ok".into()
                    } else {
                        format!("failed: {}", d.error.as_deref().unwrap_or(""))
                    },
                ]
            })
            .collect(),
    )
}

//! Email channels, through `lettre`: STARTTLS to the server (its certificate checked against
//! the web's public roots) unless the channel is `plain` (a relay on loopback or a trusted
//! network), optionally logging in.

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tether_wire::alerts::{Alert, AlertState, Channel, ChannelKind};

use crate::server::Shared;

/// One attempt to mail `alert` to the channel's recipients; the error in words.
pub(crate) async fn send(
    shared: &Shared,
    channel: &Channel,
    alert: &Alert,
    event: &'static str,
) -> Result<(), String> {
    let ChannelKind::Smtp {
        host,
        port,
        username,
        password,
        from,
        to,
        plain,
    } = &channel.kind
    else {
        return Err("not an email channel".into());
    };
    let mut message = Message::builder()
        .from(from.parse().map_err(|e| format!("sender {from:?}: {e}"))?)
        .subject(subject(alert, event))
        .header(ContentType::TEXT_PLAIN);
    for recipient in to {
        message = message.to(recipient
            .parse()
            .map_err(|e| format!("recipient {recipient:?}: {e}"))?);
    }
    let message = message
        .body(text(alert, event, &shared.config.advertised_addr()))
        .map_err(|e| format!("building the message: {e}"))?;
    let mut transport = if *plain {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
    } else {
        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
            .map_err(|e| format!("TLS for {host}: {e}"))?
    }
    .port(*port)
    .timeout(Some(shared.config.alert_timeout));
    if let (Some(user), Some(password)) = (username, password) {
        transport = transport.credentials(Credentials::new(user.clone(), password.clone()));
    }
    transport
        .build()
        .send(message)
        .await
        .map(|_| ())
        // lettre's errors name the server's answer, never the password.
        .map_err(|e| format!("the SMTP server at {host}:{port}: {e}"))
}

/// `[FIRING critical] cpu-high on web-1: cpu > 90 (97.5)`.
pub(crate) fn subject(alert: &Alert, event: &str) -> String {
    let state = match (event, alert.state) {
        ("test", _) => "TEST".to_string(),
        (_, AlertState::Firing) => "FIRING".to_string(),
        (_, AlertState::Resolved) => "RESOLVED".to_string(),
    };
    let value = alert.value.map(|v| format!(" ({v})")).unwrap_or_default();
    format!(
        "[{state} {}] {} on {}: {}{value}",
        alert.severity, alert.rule, alert.hostname, alert.condition
    )
}

fn text(alert: &Alert, event: &str, core: &str) -> String {
    let time = |ms: i64| {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
        )
        .to_string()
    };
    let mut lines = vec![
        subject(alert, event),
        String::new(),
        format!("Alert:     {}", alert.id),
        format!("Rule:      {} ({})", alert.rule, alert.condition),
        format!("Severity:  {}", alert.severity),
        format!("Node:      {} ({})", alert.hostname, alert.node_id),
        format!("Since:     {}", time(alert.since_ms)),
        format!("Fired:     {}", time(alert.fired_at_ms)),
    ];
    if let Some(v) = alert.value {
        lines.push(format!("Value:     {v}"));
    }
    if let Some(at) = alert.resolved_at_ms {
        lines.push(format!("Resolved:  {}", time(at)));
    }
    if let Some(why) = &alert.resolution {
        lines.push(format!("Now:       {why}"));
    }
    lines.push(String::new());
    lines.push(format!(
        "From Tether core at {core}. `tether alert show {}`; `tether alert ack {}` to say someone is on it.",
        alert.id, alert.id
    ));
    lines.join("\n") + "\n"
}

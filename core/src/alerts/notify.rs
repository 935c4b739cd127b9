//! Telling channels: each delivery is a task of its own, retried with backoff, every attempt
//! recorded; a channel that fails or hangs holds only its own tasks (at most
//! [`PER_CHANNEL`] at once), never another channel, the alert writer, or core.
//!
//! Webhooks: `POST` of the JSON body below, `Content-Type: application/json`, and with a secret
//! `X-Tether-Signature: sha256=HEX`, the HMAC-SHA256 of the exact body under the secret (as
//! GitHub signs its webhooks). Body: `{"event": "firing"|"resolved"|"test", "alert": {...},
//! "core": "HOST:PORT", "sent_at_ms": N}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tether_wire::alerts::{Alert, AlertState, Channel, ChannelKind, Delivery};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::server::Shared;

/// Deliveries under way to one channel at most.
const PER_CHANNEL: usize = 4;

/// Per-channel limits on deliveries under way, by channel name.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    client: std::sync::OnceLock<reqwest::Client>,
}

impl Deliveries {
    fn limit(&self, channel: &str) -> Arc<Semaphore> {
        self.limits
            .lock()
            .expect("not poisoned")
            .entry(channel.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(PER_CHANNEL)))
            .clone()
    }

    fn client(&self, timeout: Duration) -> reqwest::Client {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .timeout(timeout)
                    .user_agent(concat!("tether-core/", env!("CARGO_PKG_VERSION")))
                    // A webhook that redirects elsewhere is not followed: the secret's
                    // signature is for the URL the admin gave.
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap_or_default()
            })
            .clone()
    }
}

/// What a webhook receives.
#[derive(Debug, Serialize)]
struct Body<'a> {
    event: &'static str,
    alert: &'a Alert,
    core: &'a str,
    sent_at_ms: i64,
}

/// Tells every named channel about `alert` (`event`: it fired or resolved), in the background.
pub(crate) fn announce(
    shared: &Arc<Shared>,
    alert: &Alert,
    event: AlertState,
    channels: &[String],
) {
    for name in channels {
        let shared = shared.clone();
        let alert = alert.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let channel = match shared.store.alert_channel(&name) {
                Ok(Some(channel)) => channel,
                Ok(None) => {
                    warn!(channel = %name, alert = alert.id, "the channel no longer exists; not told");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, channel = %name, "reading the channel failed");
                    return;
                }
            };
            deliver(&shared, &channel, &alert, event.as_str()).await;
        });
    }
}

/// One delivery with its retries; every attempt is recorded. The last attempt's outcome.
pub(crate) async fn deliver(
    shared: &Arc<Shared>,
    channel: &Channel,
    alert: &Alert,
    event: &'static str,
) -> Delivery {
    let limit = shared.deliveries.limit(&channel.name);
    let _permit = limit.acquire_owned().await.ok();
    let config = &shared.config;
    let attempts = config.alert_retries.saturating_add(1);
    let mut backoff = config.alert_retry_backoff;
    let mut last = None;
    for attempt in 1..=attempts {
        let result = send(shared, channel, alert, event).await;
        let delivery = Delivery {
            alert_id: alert.id,
            event: if event == "resolved" {
                AlertState::Resolved
            } else {
                AlertState::Firing
            },
            channel: channel.name.clone(),
            at_ms: shared.now_ms(),
            attempt,
            ok: result.is_ok(),
            error: result.err(),
        };
        // A test notification has no alert to record it under.
        if alert.id != 0
            && let Err(e) = shared.store.record_delivery(delivery.clone()).await
        {
            warn!(error = %e, "recording a delivery failed");
        }
        if delivery.ok {
            info!(channel = %channel.name, alert = alert.id, event, attempt, "notification delivered");
            return delivery;
        }
        warn!(channel = %channel.name, alert = alert.id, event, attempt, error = delivery.error.as_deref().unwrap_or(""), "notification failed");
        last = Some(delivery);
        if attempt < attempts {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shared.shutdown.cancelled() => break,
            }
            backoff = backoff.saturating_mul(2);
        }
    }
    last.expect("at least one attempt")
}

/// A test notification through `channel`: one attempt now (an admin is waiting), recorded under
/// no alert. The alert it carries is made up: number 0, rule `tether-test`, this core's node
/// id 0, and says so in its condition.
pub(crate) async fn test(shared: &Shared, channel: &Channel) -> Delivery {
    let now_ms = shared.now_ms();
    let alert = Alert {
        id: 0,
        rule: "tether-test".into(),
        severity: tether_wire::alerts::Severity::Info,
        node_id: tether_wire::NodeId(uuid::Uuid::nil()),
        hostname: shared.config.advertised_addr(),
        condition: "a test notification (tether alert channel test)".into(),
        state: AlertState::Firing,
        value: None,
        since_ms: now_ms,
        fired_at_ms: now_ms,
        resolved_at_ms: None,
        resolution: None,
        acked_by: None,
        acked_at_ms: None,
        notified: true,
    };
    let result = send(shared, channel, &alert, "test").await;
    match &result {
        Ok(()) => info!(channel = %channel.name, "test notification delivered"),
        Err(e) => warn!(channel = %channel.name, error = %e, "test notification failed"),
    }
    Delivery {
        alert_id: 0,
        event: AlertState::Firing,
        channel: channel.name.clone(),
        at_ms: shared.now_ms(),
        attempt: 1,
        ok: result.is_ok(),
        error: result.err(),
    }
}

/// One attempt; the error in words, without secrets.
async fn send(
    shared: &Shared,
    channel: &Channel,
    alert: &Alert,
    event: &'static str,
) -> Result<(), String> {
    match &channel.kind {
        ChannelKind::Webhook { url, secret } => {
            let body = serde_json::to_vec(&Body {
                event,
                alert,
                core: &shared.config.advertised_addr(),
                sent_at_ms: shared.now_ms(),
            })
            .map_err(|e| format!("encoding the body: {e}"))?;
            let client = shared.deliveries.client(shared.config.alert_timeout);
            let mut request = client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json");
            if let Some(secret) = secret {
                request = request.header("X-Tether-Signature", signature(secret, &body));
            }
            let response = request.body(body).send().await.map_err(|e| {
                if e.is_timeout() {
                    format!(
                        "no answer within {}",
                        humantime::format_duration(shared.config.alert_timeout)
                    )
                } else if e.is_connect() {
                    "could not connect".to_string()
                } else {
                    format!("request failed: {}", without_url(e))
                }
            })?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the receiver answered {status}"))
            }
        }
        ChannelKind::Smtp { .. } => super::mail::send(shared, channel, alert, event).await,
    }
}

/// An error's text without the URL (which may carry a token in its path or query).
fn without_url(e: reqwest::Error) -> String {
    let mut text = e.without_url().to_string();
    text.truncate(200);
    text
}

/// `sha256=HEX` of the body under the secret.
pub(crate) fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

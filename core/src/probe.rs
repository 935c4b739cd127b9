//! Is a node's connection still alive? Asked when another connection claims the node's identity
//! from another machine fingerprint: a rebooted machine (new boot id) left a dead connection
//! behind, which the new one may replace; a second machine with a copied identity did not, and
//! is refused.
//!
//! The question is asked of QUIC itself: a datagram ([`CoreDatagram::Probe`]) is
//! ack-eliciting, so a live peer's stack answers with an acknowledgement within its ACK delay
//! (25 ms by default) plus a round trip, without the agent doing anything. Any packet from the
//! peer in that time is the answer.

use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, SendDatagramError};
use tether_wire::heartbeat::{CoreDatagram, encode_core_datagram};
use tokio::time::Instant;

/// Shortest wait for an answer (covers the peer's ACK delay and a scheduling hiccup).
const MIN_WAIT: Duration = Duration::from_millis(500);
/// Longest wait, whatever the path's round trip.
const MAX_WAIT: Duration = Duration::from_secs(3);
/// A probe is sent again this often while there is no answer (one may be lost).
const RESEND: Duration = Duration::from_millis(150);
/// How often the connection's counters are looked at.
const POLL: Duration = Duration::from_millis(10);

/// How long to wait for an answer on a path with round-trip time `rtt`.
pub(crate) fn patience(rtt: Duration) -> Duration {
    (rtt * 4 + Duration::from_millis(100)).clamp(MIN_WAIT, MAX_WAIT)
}

/// Whether the peer answers within [`patience`]: true as soon as any packet arrives from it.
pub(crate) async fn alive(connection: &Connection) -> bool {
    if connection.close_reason().is_some() {
        return false;
    }
    let heard_before = connection.stats().udp_rx.datagrams;
    let deadline = Instant::now() + patience(connection.rtt());
    let probe = Bytes::from(encode_core_datagram(&CoreDatagram::Probe));
    let mut next_probe = Instant::now();
    loop {
        if connection.close_reason().is_some() {
            return false;
        }
        if connection.stats().udp_rx.datagrams > heard_before {
            // A peer whose agent restarted on the same port answers with a stateless reset,
            // which also arrives, and closes the connection: alive only if still open.
            tokio::time::sleep(POLL).await;
            return connection.close_reason().is_none();
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        if now >= next_probe {
            next_probe = now + RESEND;
            match connection.send_datagram(probe.clone()) {
                Ok(()) => {}
                Err(SendDatagramError::ConnectionLost(_)) => return false,
                // A peer that takes no datagrams still sends keep-alives: wait for one.
                Err(_) => {}
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patience_follows_the_round_trip_within_bounds() {
        assert_eq!(patience(Duration::ZERO), MIN_WAIT);
        assert_eq!(
            patience(Duration::from_millis(200)),
            Duration::from_millis(900)
        );
        assert_eq!(patience(Duration::from_secs(5)), MAX_WAIT);
    }
}

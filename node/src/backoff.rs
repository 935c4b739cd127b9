//! Reconnect delays: exponential with full jitter, so that a fleet reconnecting after a core
//! restart spreads itself out instead of arriving all at once.

use std::time::Duration;

use rand::Rng;

/// Delay generator.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// First delay drawn from `[0, initial]`, doubling the bound each time up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The current upper bound.
    pub fn bound(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next delay: uniformly random between zero and the bound (full jitter).
    pub fn next_delay(&mut self) -> Duration {
        let bound = self.bound();
        self.attempt = self.attempt.saturating_add(1);
        let millis = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
    }

    /// After a connection that worked: start again from the quick first retry.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_doubles_and_caps() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut bounds = Vec::new();
        for _ in 0..10 {
            bounds.push(backoff.bound().as_millis());
            let delay = backoff.next_delay();
            assert!(delay.as_millis() <= *bounds.last().unwrap());
        }
        assert_eq!(bounds[..7], [500, 1000, 2000, 4000, 8000, 16000, 30000]);
        assert_eq!(bounds[9], 30000);
        backoff.reset();
        assert_eq!(backoff.bound(), Duration::from_millis(500));
    }

    #[test]
    fn delays_are_spread() {
        let mut backoff = Backoff::new(Duration::from_secs(30), Duration::from_secs(30));
        let delays: std::collections::HashSet<_> = (0..50).map(|_| backoff.next_delay()).collect();
        assert!(delays.len() > 40, "full jitter spreads delays");
    }
}

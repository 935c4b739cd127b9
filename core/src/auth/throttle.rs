//! Password-login throttling, per user name and per source address: each failure makes the next
//! attempt wait longer (`login_delay`, doubling), and `login_max_failures` in a row lock logins
//! for `login_lockout`. A success clears the user name's count (not the address's: one good
//! account must not buy an address more guesses at others).
//!
//! Plain data with the time passed in (tokio's clock in core, so tests pause it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// Entries kept before old ones are swept (an attacker cycling names cannot grow memory
/// without bound: past this, the oldest are dropped).
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Addr(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    blocked_until: Instant,
}

/// Why a login may not be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blocked {
    /// How long until it may.
    pub wait: Duration,
    /// Whether that is a lockout (max failures reached), not a delay.
    pub locked: bool,
}

/// The throttle's state.
#[derive(Debug)]
pub(crate) struct Throttle {
    entries: HashMap<Key, Entry>,
    max_failures: u32,
    lockout: Duration,
    delay: Duration,
}

impl Throttle {
    pub(crate) fn new(max_failures: u32, lockout: Duration, delay: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            max_failures: max_failures.max(1),
            lockout,
            delay,
        }
    }

    fn keys(user: &str, addr: Option<IpAddr>) -> impl Iterator<Item = Key> {
        std::iter::once(Key::User(user.to_string())).chain(addr.map(Key::Addr))
    }

    /// Whether a login for `user` from `addr` may be tried at `now`.
    pub(crate) fn check(
        &self,
        user: &str,
        addr: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Blocked> {
        let mut worst: Option<Blocked> = None;
        for key in Self::keys(user, addr) {
            if let Some(entry) = self.entries.get(&key)
                && entry.blocked_until > now
            {
                let blocked = Blocked {
                    wait: entry.blocked_until - now,
                    locked: entry.failures >= self.max_failures,
                };
                if worst.is_none_or(|w| blocked.wait > w.wait) {
                    worst = Some(blocked);
                }
            }
        }
        worst.map_or(Ok(()), Err)
    }

    /// Counts a failed attempt.
    pub(crate) fn failed(&mut self, user: &str, addr: Option<IpAddr>, now: Instant) {
        if self.entries.len() >= MAX_ENTRIES {
            self.sweep(now);
        }
        if self.entries.len() >= MAX_ENTRIES {
            // Still full of live entries: drop the ones that unblock soonest.
            let mut by_end: Vec<(Instant, Key)> = self
                .entries
                .iter()
                .map(|(k, e)| (e.blocked_until, k.clone()))
                .collect();
            by_end.sort_by_key(|(end, _)| *end);
            for (_, key) in by_end.into_iter().take(MAX_ENTRIES / 10) {
                self.entries.remove(&key);
            }
        }
        for key in Self::keys(user, addr) {
            let entry = self.entries.entry(key).or_insert(Entry {
                failures: 0,
                blocked_until: now,
            });
            entry.failures = entry.failures.saturating_add(1);
            let wait = if entry.failures >= self.max_failures {
                self.lockout
            } else {
                let doubling = 1u32 << (entry.failures - 1).min(20);
                self.delay.saturating_mul(doubling).min(self.lockout)
            };
            entry.blocked_until = now + wait;
        }
    }

    /// Counts a success: the user name starts afresh.
    pub(crate) fn succeeded(&mut self, user: &str) {
        self.entries.remove(&Key::User(user.to_string()));
    }

    /// Forgets entries whose block ended a lockout ago (a failure long past no longer counts).
    pub(crate) fn sweep(&mut self, now: Instant) {
        let lockout = self.lockout;
        self.entries
            .retain(|_, entry| entry.blocked_until + lockout > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)));

    #[tokio::test(start_paused = true)]
    async fn delays_grow_then_lock_and_end_in_time() {
        let mut throttle = Throttle::new(4, Duration::from_secs(900), Duration::from_secs(1));
        let now = Instant::now();
        assert!(throttle.check("alice", ADDR, now).is_ok());
        throttle.failed("alice", ADDR, now);
        let blocked = throttle.check("alice", ADDR, now).unwrap_err();
        assert_eq!(blocked.wait, Duration::from_secs(1));
        assert!(!blocked.locked);
        let now = now + Duration::from_secs(1);
        assert!(throttle.check("alice", ADDR, now).is_ok());
        throttle.failed("alice", ADDR, now);
        assert_eq!(
            throttle.check("alice", ADDR, now).unwrap_err().wait,
            Duration::from_secs(2)
        );
        let now = now + Duration::from_secs(2);
        throttle.failed("alice", ADDR, now);
        assert_eq!(
            throttle.check("alice", ADDR, now).unwrap_err().wait,
            Duration::from_secs(4)
        );
        let now = now + Duration::from_secs(4);
        throttle.failed("alice", ADDR, now);
        let locked = throttle.check("alice", ADDR, now).unwrap_err();
        assert!(locked.locked);
        assert_eq!(locked.wait, Duration::from_secs(900));
        // The address is locked for other names too, and the name from other addresses.
        assert!(throttle.check("bob", ADDR, now).is_err());
        assert!(throttle.check("alice", None, now).is_err());
        assert!(throttle.check("bob", None, now).is_ok());
        let later = now + Duration::from_secs(900);
        assert!(throttle.check("alice", ADDR, later).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_clears_the_name_not_the_address() {
        let mut throttle = Throttle::new(10, Duration::from_secs(60), Duration::from_secs(1));
        let now = Instant::now();
        throttle.failed("alice", ADDR, now);
        throttle.succeeded("alice");
        assert!(throttle.check("alice", None, now).is_ok());
        assert!(
            throttle.check("alice", ADDR, now).is_err(),
            "address still waits"
        );
        throttle.sweep(now + Duration::from_secs(61));
        assert!(throttle.entries.is_empty());
    }
}

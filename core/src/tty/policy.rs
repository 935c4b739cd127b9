//! The policy parts of terminals as plain data, with time passed in: outstanding tokens, the
//! per-user authorization rate, and live sessions counted per node and per user.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tether_wire::tty::WindowSize;
use tether_wire::{ErrorCode, NodeId, TtySessionId};
use tokio_util::sync::CancellationToken;

use super::Refusal;

/// What a token was issued for.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub session_id: TtySessionId,
    pub user: String,
    pub node_id: NodeId,
    pub hostname: String,
    pub command: Option<String>,
    pub shown_command: String,
    pub size: WindowSize,
    pub term: String,
    pub recorded: bool,
    pub expires_at_ms: i64,
}

#[derive(Debug)]
enum Slot {
    Unused(Grant),
    Used {
        session_id: TtySessionId,
        expires_at_ms: i64,
    },
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenRefused {
    Unknown,
    AlreadyUsed(TtySessionId),
    Expired(TtySessionId),
}

/// Outstanding tokens, by the SHA-256 of their text.
#[derive(Debug, Default)]
pub(crate) struct Grants {
    slots: HashMap<[u8; 32], Slot>,
}

impl Grants {
    pub fn insert(&mut self, hash: [u8; 32], grant: Grant) {
        self.slots.insert(hash, Slot::Unused(grant));
    }

    /// Uses a token: the grant the first time within its validity, a refusal otherwise.
    pub fn take(&mut self, hash: &[u8; 32], now_ms: i64) -> Result<Grant, TokenRefused> {
        let slot = self.slots.get_mut(hash).ok_or(TokenRefused::Unknown)?;
        let (session_id, expires_at_ms) = match slot {
            Slot::Used { session_id, .. } => return Err(TokenRefused::AlreadyUsed(*session_id)),
            Slot::Unused(grant) => (grant.session_id, grant.expires_at_ms),
        };
        let Slot::Unused(grant) = std::mem::replace(
            slot,
            Slot::Used {
                session_id,
                expires_at_ms,
            },
        ) else {
            unreachable!("matched above")
        };
        if now_ms > expires_at_ms {
            return Err(TokenRefused::Expired(session_id));
        }
        Ok(grant)
    }

    /// Makes a session's unused token worthless.
    pub fn revoke(&mut self, session_id: TtySessionId) {
        for slot in self.slots.values_mut() {
            if let Slot::Unused(grant) = slot
                && grant.session_id == session_id
            {
                *slot = Slot::Used {
                    session_id,
                    expires_at_ms: grant.expires_at_ms,
                };
            }
        }
    }

    /// Forgets tokens past their expiry; returns the sessions whose token was never used.
    pub fn sweep(&mut self, now_ms: i64) -> Vec<TtySessionId> {
        let mut unused = Vec::new();
        self.slots.retain(|_, slot| match slot {
            Slot::Unused(grant) if now_ms > grant.expires_at_ms => {
                unused.push(grant.session_id);
                false
            }
            Slot::Used { expires_at_ms, .. } => now_ms <= *expires_at_ms,
            Slot::Unused(_) => true,
        });
        unused
    }
}

/// At most `per_minute` events per user in any 60-second window.
#[derive(Debug, Default)]
pub(crate) struct RateLimit {
    recent: HashMap<String, VecDeque<i64>>,
}

impl RateLimit {
    /// Counts an event for `user`, or says how many ms until one is allowed.
    pub fn check(&mut self, user: &str, now_ms: i64, per_minute: u32) -> Result<(), i64> {
        const WINDOW_MS: i64 = 60_000;
        let times = self.recent.entry(user.to_string()).or_default();
        while times.front().is_some_and(|t| *t <= now_ms - WINDOW_MS) {
            times.pop_front();
        }
        if times.len() >= per_minute as usize {
            let oldest = times.front().copied().unwrap_or(now_ms);
            return Err(oldest + WINDOW_MS - now_ms);
        }
        times.push_back(now_ms);
        Ok(())
    }

    /// Drops users with no recent events.
    pub fn sweep(&mut self, now_ms: i64) {
        self.recent
            .retain(|_, times| times.back().is_some_and(|t| *t > now_ms - 60_000));
    }
}

/// A live (pending or connected) session, for limits and kills.
#[derive(Debug)]
pub(super) struct LiveSession {
    pub(super) node_id: NodeId,
    pub(super) user: String,
    pub(super) kill: CancellationToken,
    pub(super) killed_by: Arc<Mutex<Option<String>>>,
}

/// Live sessions, counted per node and per user.
#[derive(Debug, Default)]
pub(crate) struct Occupancy {
    pub(super) live: HashMap<TtySessionId, LiveSession>,
}

impl Occupancy {
    /// Reserves a place for a new session, or says which limit is reached.
    pub(super) fn reserve(
        &mut self,
        session_id: TtySessionId,
        node_id: NodeId,
        user: &str,
        max_per_node: u32,
        max_per_user: u32,
    ) -> Result<(), Refusal> {
        let on_node = self.live.values().filter(|s| s.node_id == node_id).count();
        if on_node >= max_per_node as usize {
            return Err((
                ErrorCode::LIMIT_REACHED,
                format!(
                    "the node already has {on_node} terminal sessions, the most allowed \
                     (tty_max_per_node); wait for one to end"
                ),
            ));
        }
        let of_user = self.live.values().filter(|s| s.user == user).count();
        if of_user >= max_per_user as usize {
            return Err((
                ErrorCode::LIMIT_REACHED,
                format!(
                    "user {user} already has {of_user} terminal sessions, the most allowed \
                     (tty_max_per_user); end one first"
                ),
            ));
        }
        self.live.insert(
            session_id,
            LiveSession {
                node_id,
                user: user.to_string(),
                kill: CancellationToken::new(),
                killed_by: Arc::default(),
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{new_token, token_hash};

    fn grant(expires_at_ms: i64) -> Grant {
        Grant {
            session_id: TtySessionId::random(),
            user: "alice".into(),
            node_id: NodeId::random(),
            hostname: "web-1".into(),
            command: None,
            shown_command: "login shell".into(),
            size: WindowSize::DEFAULT,
            term: "xterm".into(),
            recorded: true,
            expires_at_ms,
        }
    }

    #[test]
    fn a_token_works_once_and_only_in_time() {
        let mut grants = Grants::default();
        let token = new_token();
        assert!(token.len() >= 43, "256 bits of randomness");
        let hash = token_hash(&token);
        let issued = grant(300_000);
        grants.insert(hash, issued.clone());
        assert_eq!(
            grants.take(&token_hash("guess"), 1_000).unwrap_err(),
            TokenRefused::Unknown
        );
        assert_eq!(
            grants.take(&hash, 1_000).unwrap().session_id,
            issued.session_id
        );
        assert_eq!(
            grants.take(&hash, 2_000).unwrap_err(),
            TokenRefused::AlreadyUsed(issued.session_id)
        );

        let late = grant(300_000);
        let late_hash = token_hash("late");
        grants.insert(late_hash, late.clone());
        assert_eq!(
            grants.take(&late_hash, 300_001).unwrap_err(),
            TokenRefused::Expired(late.session_id)
        );
        assert_eq!(
            grants.take(&late_hash, 300_002).unwrap_err(),
            TokenRefused::AlreadyUsed(late.session_id),
            "an expired token stays dead"
        );
    }

    #[test]
    fn sweeping_reports_unused_tokens_and_forgets_used_ones() {
        let mut grants = Grants::default();
        let unused = grant(1_000);
        grants.insert(token_hash("a"), unused.clone());
        grants.insert(token_hash("b"), grant(1_000));
        grants.take(&token_hash("b"), 500).unwrap();
        grants.insert(token_hash("c"), grant(5_000));
        assert!(grants.sweep(900).is_empty());
        assert_eq!(grants.sweep(1_001), vec![unused.session_id]);
        assert_eq!(grants.slots.len(), 1, "only the token still valid is kept");
    }

    #[test]
    fn authorizations_are_limited_per_user_per_minute() {
        let mut rate = RateLimit::default();
        for i in 0..3 {
            assert!(rate.check("alice", 1_000 + i, 3).is_ok());
        }
        let wait = rate.check("alice", 2_000, 3).unwrap_err();
        assert_eq!(wait, 59_000);
        assert!(rate.check("bob", 2_000, 3).is_ok(), "per user");
        assert!(rate.check("alice", 61_000, 3).is_ok(), "the window slides");
        rate.sweep(200_000);
        assert!(rate.recent.is_empty());
    }

    #[test]
    fn live_sessions_are_limited_per_node_and_per_user() {
        let mut occupancy = Occupancy::default();
        let (a, b) = (NodeId::random(), NodeId::random());
        let reserve = |o: &mut Occupancy, node, user: &str| {
            o.reserve(TtySessionId::random(), node, user, 2, 3)
        };
        reserve(&mut occupancy, a, "alice").unwrap();
        reserve(&mut occupancy, a, "bob").unwrap();
        let (code, message) = reserve(&mut occupancy, a, "carol").unwrap_err();
        assert_eq!(code, ErrorCode::LIMIT_REACHED);
        assert!(message.contains("tty_max_per_node"), "{message}");
        reserve(&mut occupancy, b, "alice").unwrap();
        reserve(&mut occupancy, b, "alice").unwrap();
        let (_, message) = reserve(&mut occupancy, NodeId::random(), "alice").unwrap_err();
        assert!(message.contains("tty_max_per_user"), "{message}");
    }
}

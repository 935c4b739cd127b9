//! When an alert fires and resolves, as plain data and no I/O: what each (rule, node) pair has
//! seen, and the decisions a new observation leads to. Only pairs whose condition holds (or
//! held recently enough to damp a flap) take memory, never the whole fleet.

use std::collections::HashMap;
use std::sync::Arc;

use tether_wire::NodeId;

/// A (rule, node) pair.
pub type Key = (Arc<str>, NodeId);

/// What a pair has seen.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Track {
    /// When the condition began to hold, unix ms.
    since_ms: i64,
    /// Whether its alert fired (and is not resolved).
    firing: bool,
}

/// A decision to carry out (write, notify).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The condition has held for the rule's duration: an alert fires.
    Fire {
        /// When it began to hold, unix ms.
        since_ms: i64,
        /// The value that fired it.
        value: Option<f64>,
        /// Whether channels are told (false: damped, the pair fired and was told within the
        /// flap window).
        notify: bool,
    },
    /// The condition no longer holds: the pair's firing alert resolves.
    Resolve {
        /// What was seen instead.
        value: Option<f64>,
    },
}

/// Every pair's state, and when each was last announced.
#[derive(Debug, Default)]
pub struct Engine {
    tracks: HashMap<Key, Track>,
    /// When each pair's last notified firing was (for flap damping), unix ms.
    announced: HashMap<Key, i64>,
}

impl Engine {
    /// Something was seen for a pair at `now_ms`: whether the condition `holds`, with the value.
    /// `for_ms` is the rule's duration, `flap_ms` the window within which a pair that fired and
    /// was announced fires again silently.
    pub fn observe(
        &mut self,
        key: &Key,
        holds: bool,
        value: Option<f64>,
        now_ms: i64,
        for_ms: u64,
        flap_ms: u64,
    ) -> Option<Decision> {
        if !holds {
            let track = self.tracks.remove(key)?;
            return track.firing.then_some(Decision::Resolve { value });
        }
        let track = self.tracks.entry(key.clone()).or_insert(Track {
            since_ms: now_ms,
            firing: false,
        });
        let held_ms = u64::try_from(now_ms.saturating_sub(track.since_ms)).unwrap_or(0);
        if track.firing || held_ms < for_ms {
            return None;
        }
        track.firing = true;
        let since_ms = track.since_ms;
        let recently = self
            .announced
            .get(key)
            .is_some_and(|at| u64::try_from(now_ms.saturating_sub(*at)).unwrap_or(0) < flap_ms);
        if !recently {
            self.announced.insert(key.clone(), now_ms);
        }
        Some(Decision::Fire {
            since_ms,
            value,
            notify: !recently,
        })
    }

    /// A pair fired before core started (its alert is still firing in the store).
    pub fn restore(&mut self, key: Key, since_ms: i64, announced_ms: Option<i64>) {
        self.tracks.insert(
            key.clone(),
            Track {
                since_ms,
                firing: true,
            },
        );
        if let Some(at) = announced_ms {
            self.announced.insert(key, at);
        }
    }

    /// Whether a pair's alert is firing.
    #[cfg(test)]
    pub fn firing(&self, key: &Key) -> bool {
        self.tracks.get(key).is_some_and(|t| t.firing)
    }

    /// Forgets a pair (its node went into maintenance or away); whether it was firing.
    pub fn forget(&mut self, key: &Key) -> bool {
        self.tracks.remove(key).is_some_and(|t| t.firing)
    }

    /// Forgets every pair of a rule (disabled or deleted); the nodes whose alerts were firing.
    pub fn forget_rule(&mut self, rule: &str) -> Vec<NodeId> {
        let mut firing = Vec::new();
        self.tracks.retain(|(name, node), track| {
            if &**name == rule {
                if track.firing {
                    firing.push(*node);
                }
                false
            } else {
                true
            }
        });
        self.announced.retain(|(name, _), _| &**name != rule);
        firing
    }

    /// Drops announcement times older than the flap window (they no longer damp anything).
    pub fn sweep(&mut self, now_ms: i64, flap_ms: u64) {
        self.announced
            .retain(|_, at| u64::try_from(now_ms.saturating_sub(*at)).unwrap_or(0) < flap_ms);
    }

    /// Pairs tracked (holding or firing), and announcement times kept.
    pub fn sizes(&self) -> (usize, usize) {
        (self.tracks.len(), self.announced.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn key() -> Key {
        (Arc::from("cpu-high"), NodeId::random())
    }

    #[test]
    fn fires_once_the_condition_held_for_the_duration_then_resolves() {
        let mut engine = Engine::default();
        let k = key();
        assert_eq!(engine.observe(&k, true, Some(95.0), 0, 2 * MIN, 0), None);
        assert_eq!(
            engine.observe(&k, true, Some(96.0), 60_000, 2 * MIN, 0),
            None
        );
        assert_eq!(
            engine.observe(&k, true, Some(97.0), 120_000, 2 * MIN, 0),
            Some(Decision::Fire {
                since_ms: 0,
                value: Some(97.0),
                notify: true
            })
        );
        assert!(engine.firing(&k));
        // Still holding: nothing new.
        assert_eq!(
            engine.observe(&k, true, Some(99.0), 150_000, 2 * MIN, 0),
            None
        );
        assert_eq!(
            engine.observe(&k, false, Some(40.0), 180_000, 2 * MIN, 0),
            Some(Decision::Resolve { value: Some(40.0) })
        );
        assert!(!engine.firing(&k));
        assert_eq!(engine.sizes().0, 0, "nothing kept for a pair that is fine");
    }

    #[test]
    fn a_dip_before_the_duration_starts_the_clock_again() {
        let mut engine = Engine::default();
        let k = key();
        engine.observe(&k, true, Some(95.0), 0, 2 * MIN, 0);
        assert_eq!(
            engine.observe(&k, false, Some(10.0), 90_000, 2 * MIN, 0),
            None
        );
        assert_eq!(
            engine.observe(&k, true, Some(95.0), 100_000, 2 * MIN, 0),
            None
        );
        assert_eq!(
            engine.observe(&k, true, Some(95.0), 200_000, 2 * MIN, 0),
            None
        );
        assert!(matches!(
            engine.observe(&k, true, Some(95.0), 220_000, 2 * MIN, 0),
            Some(Decision::Fire {
                since_ms: 100_000,
                ..
            })
        ));
    }

    #[test]
    fn a_flapping_pair_is_announced_once_per_window() {
        let mut engine = Engine::default();
        let k = key();
        let flap = 10 * MIN;
        let fire = |engine: &mut Engine, at: i64| match engine.observe(&k, true, None, at, 0, flap)
        {
            Some(Decision::Fire { notify, .. }) => notify,
            other => panic!("{other:?}"),
        };
        assert!(fire(&mut engine, 0));
        engine.observe(&k, false, None, 30_000, 0, flap);
        assert!(
            !fire(&mut engine, 60_000),
            "again within the window: damped"
        );
        engine.observe(&k, false, None, 90_000, 0, flap);
        assert!(!fire(&mut engine, 120_000));
        engine.observe(&k, false, None, 150_000, 0, flap);
        // The window counts from the last announcement.
        assert!(fire(&mut engine, 11 * 60_000));
        engine.sweep(30 * 60_000, flap);
        assert_eq!(engine.sizes(), (1, 0));
    }

    #[test]
    fn forgetting_a_rule_names_its_firing_nodes() {
        let mut engine = Engine::default();
        let (a, b) = (key(), key());
        engine.observe(&a, true, None, 0, 0, 0);
        engine.observe(&b, true, None, 0, MIN, 0);
        let other: Key = (Arc::from("disk-full"), a.1);
        engine.observe(&other, true, None, 0, 0, 0);
        assert_eq!(engine.forget_rule("cpu-high"), vec![a.1]);
        assert!(engine.firing(&other));
        assert_eq!(engine.sizes().0, 1);
    }
}

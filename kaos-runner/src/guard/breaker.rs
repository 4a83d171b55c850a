use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// When a circuit breaker opens and for how long.
///
/// A breaker counts consecutive failures of one tool (or one model); after
/// `failures_to_open` it opens for `cooldown`: the tool is withdrawn from the tools offered to
/// the model (and a call to it fails at once). After the cool-down it is half-open: one call is
/// let through as a probe; success closes it, failure opens it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker [5].
    pub failures_to_open: u32,
    /// How long it stays open before one probe is allowed [30 s].
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failures_to_open: 5, cooldown: Duration::from_secs(30) }
    }
}

impl BreakerConfig {
    /// A configuration opening after `failures` consecutive failures for `cooldown`.
    pub fn new(failures: u32, cooldown: Duration) -> Self {
        Self { failures_to_open: failures.max(1), cooldown }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, failures: u32 },
    HalfOpen,
}

/// Whether a guarded thing may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Availability {
    /// Closed: use it.
    Available,
    /// Half-open: this call is the one probe.
    Probe,
    /// Open (or its probe is in flight): do not use it for this long.
    Unavailable(Duration),
}

/// A breaker that just opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tripped {
    pub(crate) failures: u32,
    pub(crate) cooldown: Duration,
}

/// The breakers of one Runner, keyed by tool name or `model:provider:model`. Shared by all its
/// turns, so failures in one session protect the others.
#[derive(Debug, Default)]
pub(crate) struct Breakers {
    config: BreakerConfig,
    states: Mutex<HashMap<String, State>>,
}

impl Breakers {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self { config, states: Mutex::new(HashMap::new()) }
    }

    /// Whether `key` may be offered right now, without claiming the probe.
    pub(crate) fn is_open(&self, key: &str) -> bool {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        match states.get(key) {
            Some(State::Open { until, .. }) => Instant::now() < *until,
            Some(State::HalfOpen) => true,
            _ => false,
        }
    }

    /// Claims a use of `key`: available, the probe (moving an expired open breaker to
    /// half-open), or unavailable.
    pub(crate) fn acquire(&self, key: &str) -> Availability {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(state) = states.get_mut(key) else { return Availability::Available };
        match *state {
            State::Closed { .. } => Availability::Available,
            State::Open { until, .. } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::HalfOpen;
                    Availability::Probe
                } else {
                    Availability::Unavailable(until - now)
                }
            }
            State::HalfOpen => Availability::Unavailable(Duration::ZERO),
        }
    }

    /// Records the outcome of a use of `key`; returns the trip when this failure opened it.
    pub(crate) fn record(&self, key: &str, success: bool) -> Option<Tripped> {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if success {
            states.remove(key);
            return None;
        }
        let failures = match states.get(key) {
            Some(State::Closed { failures }) => failures + 1,
            Some(State::Open { failures, .. }) => failures + 1,
            Some(State::HalfOpen) => self.config.failures_to_open,
            None => 1,
        };
        if failures >= self.config.failures_to_open {
            states.insert(
                key.to_owned(),
                State::Open { until: Instant::now() + self.config.cooldown, failures },
            );
            Some(Tripped { failures, cooldown: self.config.cooldown })
        } else {
            states.insert(key.to_owned(), State::Closed { failures });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_n_failures_then_lets_one_probe_through_after_the_cooldown() {
        let breakers = Breakers::new(BreakerConfig::new(3, Duration::from_secs(30)));
        assert_eq!(breakers.record("t", false), None);
        assert_eq!(breakers.record("t", false), None);
        assert_eq!(
            breakers.record("t", false),
            Some(Tripped { failures: 3, cooldown: Duration::from_secs(30) })
        );
        assert!(breakers.is_open("t"));
        assert_eq!(breakers.acquire("t"), Availability::Unavailable(Duration::from_secs(30)));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!breakers.is_open("t"));
        assert_eq!(breakers.acquire("t"), Availability::Probe);
        assert_eq!(breakers.acquire("t"), Availability::Unavailable(Duration::ZERO), "one probe only");
        // A failed probe opens it again at once; a successful one closes it.
        assert!(breakers.record("t", false).is_some());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(breakers.acquire("t"), Availability::Probe);
        assert_eq!(breakers.record("t", true), None);
        assert_eq!(breakers.acquire("t"), Availability::Available);
        // A success resets the count.
        breakers.record("u", false);
        breakers.record("u", true);
        breakers.record("u", false);
        breakers.record("u", false);
        assert_eq!(breakers.acquire("u"), Availability::Available);
    }
}

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// When a circuit breaker opens and for how long.
///
/// A breaker watches one tool (or one model). It opens after `failures_to_open` consecutive
/// failures, or when the failure rate over the last `window` calls reaches `failure_rate`
/// (once the window is full); open, the tool is withdrawn from the tools offered to the model
/// (and a call to it fails at once) for `cooldown`. Then it is half-open: one call is let
/// through as a probe; success closes it, failure opens it again.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker [5].
    pub failures_to_open: u32,
    /// How long it stays open before one probe is allowed [30 s].
    pub cooldown: Duration,
    /// The failure rate (0 to 1) over the last `window` calls that opens it [0.5].
    pub failure_rate: f64,
    /// How many recent calls the failure rate is taken over [20].
    pub window: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failures_to_open: 5, cooldown: Duration::from_secs(30), failure_rate: 0.5, window: 20 }
    }
}

impl BreakerConfig {
    /// A configuration opening after `failures` consecutive failures for `cooldown` (and at
    /// the default failure rate over the default window).
    pub fn new(failures: u32, cooldown: Duration) -> Self {
        Self { failures_to_open: failures.max(1), cooldown, ..Self::default() }
    }

    /// With a failure-rate trigger: open when `rate` of the last `window` calls failed.
    pub fn with_failure_rate(mut self, rate: f64, window: u32) -> Self {
        self.failure_rate = rate.clamp(0.0, 1.0);
        self.window = window.max(1);
        self
    }
}

#[derive(Debug, Clone)]
enum State {
    /// Consecutive failures, and the outcomes of the last calls (true: failed).
    Closed {
        failures: u32,
        recent: VecDeque<bool>,
    },
    Open {
        until: Instant,
        failures: u32,
    },
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

/// The breakers of one Runner: one per tool name and one per model (`provider:model`). Shared
/// by all its turns, so failures in one session protect the others.
#[derive(Debug, Default)]
pub(crate) struct Breakers {
    config: BreakerConfig,
    states: Mutex<States>,
    /// How many tool breakers are open or half-open (kept with `states`, read without the
    /// lock): while none is, no tool is withdrawn, and the tools offered are not looked up one
    /// by one before every model call.
    tools_not_closed: AtomicUsize,
}

/// The states by tool name and by model: two maps, so a model's breaker is looked up by the
/// model's name as the request holds it, with no key built per call.
#[derive(Debug, Default)]
struct States {
    tools: foldhash::HashMap<String, State>,
    models: foldhash::HashMap<String, State>,
}

impl States {
    fn of(&mut self, model: bool) -> &mut foldhash::HashMap<String, State> {
        if model { &mut self.models } else { &mut self.tools }
    }
}

impl Breakers {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self { config, states: Mutex::default(), tools_not_closed: AtomicUsize::new(0) }
    }

    fn states(&self) -> std::sync::MutexGuard<'_, States> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether some tool's breaker is open or half-open (`false`: [`Breakers::is_open`] is
    /// `false` for every tool).
    pub(crate) fn any_tool_not_closed(&self) -> bool {
        self.tools_not_closed.load(Ordering::Acquire) > 0
    }

    /// Whether the tool `name` may be offered right now, without claiming the probe.
    pub(crate) fn is_open(&self, name: &str) -> bool {
        match self.states().tools.get(name) {
            Some(State::Open { until, .. }) => Instant::now() < *until,
            Some(State::HalfOpen) => true,
            _ => false,
        }
    }

    /// Claims a use of the tool `name`: available, the probe (moving an expired open breaker
    /// to half-open), or unavailable.
    pub(crate) fn acquire(&self, name: &str) -> Availability {
        acquire(self.states().of(false), name)
    }

    /// [`Breakers::acquire`] for a model (`provider:model`).
    pub(crate) fn acquire_model(&self, model: &str) -> Availability {
        acquire(self.states().of(true), model)
    }

    /// Records the outcome of a use of the tool `name`; returns the trip when this failure
    /// opened its breaker.
    pub(crate) fn record(&self, name: &str, success: bool) -> Option<Tripped> {
        let mut states = self.states();
        let (tripped, was_closed) = record(&self.config, states.of(false), name, success);
        // After a record the breaker is closed unless this failure opened it.
        match (was_closed, tripped.is_some()) {
            (true, true) => {
                self.tools_not_closed.fetch_add(1, Ordering::Release);
            }
            (false, false) => {
                self.tools_not_closed.fetch_sub(1, Ordering::Release);
            }
            _ => {}
        }
        tripped
    }

    /// [`Breakers::record`] for a model (`provider:model`).
    pub(crate) fn record_model(&self, model: &str, success: bool) -> Option<Tripped> {
        record(&self.config, self.states().of(true), model, success).0
    }
}

fn acquire(states: &mut foldhash::HashMap<String, State>, key: &str) -> Availability {
    let Some(state) = states.get_mut(key) else { return Availability::Available };
    match state {
        State::Closed { .. } => Availability::Available,
        State::Open { until, .. } => {
            let (now, until) = (Instant::now(), *until);
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

/// Updates the state in place: a key is allocated only the first time it is seen, and a
/// closed breaker's window keeps its buffer. Also says whether the breaker was closed before
/// (after, it is open exactly when a trip is returned).
fn record(
    config: &BreakerConfig,
    states: &mut foldhash::HashMap<String, State>,
    key: &str,
    success: bool,
) -> (Option<Tripped>, bool) {
    let state = match states.get_mut(key) {
        Some(state) => state,
        None => {
            states.entry(key.to_owned()).or_insert(State::Closed { failures: 0, recent: VecDeque::new() })
        }
    };
    let was_closed = matches!(state, State::Closed { .. });
    (record_in(config, state, success), was_closed)
}

fn record_in(config: &BreakerConfig, state: &mut State, success: bool) -> Option<Tripped> {
    let window = config.window as usize;
    let (failures, probe) = match state {
        State::Closed { failures, .. } => (*failures, false),
        State::Open { failures, .. } => {
            let failures = *failures;
            *state = State::Closed { failures, recent: VecDeque::new() };
            (failures, false)
        }
        State::HalfOpen => {
            *state = State::Closed { failures: 0, recent: VecDeque::new() };
            (config.failures_to_open.saturating_sub(1), true)
        }
    };
    let State::Closed { failures: held, recent } = state else { return None };
    recent.push_back(!success);
    while recent.len() > window {
        recent.pop_front();
    }
    if success {
        *held = 0;
        // A successful probe closes the breaker with a clean slate.
        if probe {
            recent.clear();
        }
        return None;
    }
    let failures = failures + 1;
    let failed = recent.iter().filter(|f| **f).count();
    let rate_tripped = recent.len() >= window && failed as f64 >= config.failure_rate * window as f64;
    if probe || failures >= config.failures_to_open || rate_tripped {
        *state = State::Open { until: Instant::now() + config.cooldown, failures };
        Some(Tripped { failures, cooldown: config.cooldown })
    } else {
        *held = failures;
        None
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

    #[tokio::test(start_paused = true)]
    async fn the_count_of_tool_breakers_not_closed_follows_every_change() {
        let breakers = Breakers::new(BreakerConfig::new(2, Duration::from_secs(30)));
        assert!(!breakers.any_tool_not_closed());
        breakers.record("t", false);
        breakers.record_model("m", false);
        breakers.record_model("m", false);
        assert!(!breakers.any_tool_not_closed(), "models are not counted");
        breakers.record("t", false);
        breakers.record("u", false);
        breakers.record("u", false);
        assert!(breakers.any_tool_not_closed());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(breakers.acquire("t"), Availability::Probe);
        assert!(breakers.any_tool_not_closed(), "half-open is not closed");
        breakers.record("t", true);
        assert!(breakers.any_tool_not_closed(), "`u` is still open");
        assert_eq!(breakers.acquire("u"), Availability::Probe);
        assert!(breakers.record("u", false).is_some(), "a failed probe opens it again");
        assert!(breakers.any_tool_not_closed());
        tokio::time::advance(Duration::from_secs(30)).await;
        breakers.record("u", true);
        assert!(!breakers.any_tool_not_closed());
        assert!(!breakers.is_open("t") && !breakers.is_open("u"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_high_failure_rate_opens_it_without_consecutive_failures() {
        let breakers =
            Breakers::new(BreakerConfig::new(5, Duration::from_secs(30)).with_failure_rate(0.5, 10));
        // Fail, succeed, fail, succeed…: never two failures in a row.
        let mut tripped = None;
        for i in 0..10 {
            tripped = breakers.record("t", i % 2 == 1);
            if tripped.is_some() {
                break;
            }
        }
        assert_eq!(tripped, None, "the window was not full until the 10th call");
        assert_eq!(breakers.record("t", false).map(|t| t.cooldown), Some(Duration::from_secs(30)));
        assert!(breakers.is_open("t"));
    }
}

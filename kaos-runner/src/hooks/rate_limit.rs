//! [`RateLimiter`]: token buckets per tool glob, checked before each tool call.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kaos_tools::ToolSelector;

use super::{Hook, HookContext, HookError, ToolCallInfo, ToolDecision};

/// A monotonic clock, injectable so rate limits can be tested without sleeping.
pub trait Clock: Send + Sync + Debug {
    /// Time elapsed since an arbitrary fixed origin; never decreases.
    fn now(&self) -> Duration;
}

/// The real monotonic clock ([`Instant`]), from when it was created.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self { origin: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told to ([`advance`](Self::advance)); for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: Mutex<Duration>,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now.saturating_add(by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One rate limit: the tools matching `glob` share a bucket of `capacity` calls that refills
/// at `refill_per_second` calls per second.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RateLimit {
    /// The tool-name glob (the syntax of [`ToolSelector`]: `*`, `?`, `[..]`, `{a,b}`).
    pub glob: String,
    /// The most calls in a burst (the bucket starts full). At least 1.
    pub capacity: u32,
    /// Calls regained per second (fractions allowed; 0 for a fixed allowance). Finite, ≥ 0.
    pub refill_per_second: f64,
}

impl RateLimit {
    /// A limit of `capacity` calls, refilled at `refill_per_second`, on the tools matching
    /// `glob`.
    pub fn new(glob: impl Into<String>, capacity: u32, refill_per_second: f64) -> Self {
        Self { glob: glob.into(), capacity, refill_per_second }
    }
}

/// What a rate-limited call becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimitAction {
    /// [`ToolDecision::Skip`]: the model gets `rate limited: try again in N ms` as the result.
    #[default]
    Skip,
    /// [`ToolDecision::Deny`] with the same text as the reason.
    Deny,
}

/// Why a [`RateLimiter`] could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// A glob does not compile.
    #[error("invalid tool glob {pattern:?}: {message}")]
    InvalidGlob {
        /// The glob.
        pattern: String,
        /// Why.
        message: String,
    },
    /// A capacity of 0, or a refill rate that is negative or not finite.
    #[error("invalid rate limit for {glob:?}: {message}")]
    InvalidLimit {
        /// The rule's glob.
        glob: String,
        /// Why.
        message: String,
    },
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Duration,
}

#[derive(Debug)]
struct Rule {
    limit: RateLimit,
    selector: ToolSelector,
    bucket: Mutex<Bucket>,
}

/// A hook that limits how often tools run: token buckets keyed by tool glob.
///
/// Each rule's glob is compiled once. For a tool call, the **first** rule whose glob matches
/// the tool's name applies (a call no rule matches is not limited); the tools a rule matches
/// share its bucket, across every session of the Runner. A call takes one token; with none
/// left, the call is skipped (or denied, see [`with_action`](Self::with_action)) with
/// `rate limited: try again in N ms`, N being when the next token comes. A skipped or denied
/// call takes no token.
///
/// ```
/// use kaos_runner::hooks::{RateLimit, RateLimiter};
/// let limiter = RateLimiter::new([
///     RateLimit::new("web-*", 5, 0.5),  // bursts of 5, then one call every 2 s
///     RateLimit::new("*", 100, 10.0),   // everything else
/// ])?;
/// # Ok::<(), kaos_runner::hooks::RateLimitError>(())
/// ```
#[derive(Debug)]
pub struct RateLimiter {
    rules: Vec<Rule>,
    clock: Arc<dyn Clock>,
    action: RateLimitAction,
}

impl RateLimiter {
    /// A limiter with these rules, in priority order, on the real clock, skipping limited
    /// calls. Errors on the first rule with a bad glob, a capacity of 0 or a refill rate that
    /// is negative or not finite.
    pub fn new(rules: impl IntoIterator<Item = RateLimit>) -> Result<Self, RateLimitError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let rules = rules
            .into_iter()
            .map(|limit| {
                if limit.capacity == 0 {
                    return Err(RateLimitError::InvalidLimit {
                        glob: limit.glob.clone(),
                        message: "capacity must be at least 1".into(),
                    });
                }
                if !limit.refill_per_second.is_finite() || limit.refill_per_second < 0.0 {
                    return Err(RateLimitError::InvalidLimit {
                        glob: limit.glob.clone(),
                        message: format!(
                            "refill rate must be finite and ≥ 0, not {}",
                            limit.refill_per_second
                        ),
                    });
                }
                let selector = ToolSelector::new([limit.glob.as_str()]).map_err(|err| {
                    RateLimitError::InvalidGlob { pattern: limit.glob.clone(), message: err.to_string() }
                })?;
                let bucket =
                    Mutex::new(Bucket { tokens: f64::from(limit.capacity), updated: Duration::ZERO });
                Ok(Rule { limit, selector, bucket })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let limiter = Self { rules, clock, action: RateLimitAction::default() };
        Ok(limiter.reset_buckets())
    }

    /// On this clock instead (every bucket starts full at the clock's current time).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self.reset_buckets()
    }

    /// Limited calls become this (the default is [`RateLimitAction::Skip`]).
    pub fn with_action(mut self, action: RateLimitAction) -> Self {
        self.action = action;
        self
    }

    /// The rules, in priority order.
    pub fn rules(&self) -> impl Iterator<Item = &RateLimit> {
        self.rules.iter().map(|rule| &rule.limit)
    }

    /// The rule that applies to `tool`, if any.
    pub fn rule_for(&self, tool: &str) -> Option<&RateLimit> {
        self.rules.iter().find(|rule| rule.selector.matches(tool)).map(|rule| &rule.limit)
    }

    fn reset_buckets(self) -> Self {
        let now = self.clock.now();
        for rule in &self.rules {
            let mut bucket = rule.bucket.lock().unwrap_or_else(PoisonError::into_inner);
            *bucket = Bucket { tokens: f64::from(rule.limit.capacity), updated: now };
        }
        self
    }

    /// Takes a token for a call of `tool`: `Ok(())` when the call may run (or no rule applies),
    /// else how long until the next token (`None`: never, the rule does not refill).
    pub fn try_acquire(&self, tool: &str) -> Result<(), Option<Duration>> {
        let Some(rule) = self.rules.iter().find(|rule| rule.selector.matches(tool)) else {
            return Ok(());
        };
        let now = self.clock.now();
        let mut bucket = rule.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_sub(bucket.updated).as_secs_f64();
        let capacity = f64::from(rule.limit.capacity);
        bucket.tokens = (bucket.tokens + elapsed * rule.limit.refill_per_second).min(capacity);
        bucket.updated = bucket.updated.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        if rule.limit.refill_per_second > 0.0 {
            Err(Some(Duration::from_secs_f64((1.0 - bucket.tokens) / rule.limit.refill_per_second)))
        } else {
            Err(None)
        }
    }
}

#[async_trait]
impl Hook for RateLimiter {
    fn name(&self) -> &str {
        "rate_limit"
    }

    async fn before_tool_call(
        &self,
        _ctx: &HookContext,
        call: &ToolCallInfo,
    ) -> Result<ToolDecision, HookError> {
        let Err(wait) = self.try_acquire(&call.name) else {
            return Ok(ToolDecision::Continue);
        };
        let text = match wait {
            Some(wait) => {
                // Round up, so waiting that long is always enough.
                let ms = wait.as_micros().div_ceil(1000);
                format!("rate limited: try again in {ms} ms")
            }
            None => "rate limited: no calls left for this tool".to_owned(),
        };
        tracing::debug!(target: "kaos::hooks", tool = %call.name, call_id = %call.call_id, "tool call rate limited");
        Ok(match self.action {
            RateLimitAction::Skip => ToolDecision::Skip { result: text },
            RateLimitAction::Deny => ToolDecision::Deny { reason: text },
        })
    }
}

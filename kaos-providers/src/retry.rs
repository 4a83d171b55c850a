use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::{StreamExt, stream};

use crate::{
    Capabilities, ModelClient, ModelRequest, ModelResponse, ModelStream, ProviderError, StreamEvent,
};

/// Waits between attempts. The default is `tokio::time::sleep`; tests inject one that
/// records the delays and returns at once, so no test sleeps for real.
pub trait Sleeper: Send + Sync + fmt::Debug {
    /// A future that completes after `delay`.
    fn sleep(&self, delay: Duration) -> BoxFuture<'static, ()>;
}

/// `tokio::time::sleep`.
#[derive(Debug, Clone, Copy, Default)]
struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, delay: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(delay))
    }
}

/// When and how long to wait before retrying a failed call.
///
/// Only [retryable](ProviderError::is_retryable) errors are retried (rate limits, 5xx,
/// connection failures and timeouts). The n-th retry (from 0) waits `base_delay · 2ⁿ`, capped
/// at `max_delay`, with "equal jitter" (a uniformly random point of its upper half) so that
/// many clients do not retry in lockstep; a vendor's `Retry-After` replaces that delay (still
/// capped at `max_delay`).
///
/// ```
/// use std::time::Duration;
/// use kaos_providers::RetryPolicy;
/// let policy = RetryPolicy::default().without_jitter();
/// assert_eq!(policy.max_retries, 3);
/// assert_eq!(policy.delay(0, None), Duration::from_millis(500));
/// assert_eq!(policy.delay(2, None), Duration::from_secs(2));
/// assert_eq!(policy.delay(20, None), Duration::from_secs(60)); // capped
/// assert_eq!(policy.delay(0, Some(Duration::from_secs(7))), Duration::from_secs(7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `max_retries + 1` calls).
    pub max_retries: u32,
    /// The delay before the first retry, doubled for each further one.
    pub base_delay: Duration,
    /// The longest wait, `Retry-After` included.
    pub max_delay: Duration,
    /// The time limit of one attempt (for a stream: until its first event); `None` for none.
    /// A timed-out attempt is a retryable [`ProviderError::Transport`].
    pub timeout: Option<Duration>,
    /// Whether delays are jittered.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// 3 retries, 0.5 s doubling up to 60 s, jittered, 10 minutes per attempt.
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            timeout: Some(Duration::from_secs(600)),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// With this many retries.
    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// With this first delay.
    pub fn with_base_delay(mut self, base_delay: Duration) -> Self {
        self.base_delay = base_delay;
        self
    }

    /// With this cap on delays.
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// With this time limit per attempt.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Without jitter (exact, reproducible delays).
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The wait before retry number `retry` (from 0), given the vendor's `Retry-After`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.max_delay);
        }
        let factor = 2u32.checked_pow(retry).unwrap_or(u32::MAX);
        let delay = self.base_delay.checked_mul(factor).unwrap_or(self.max_delay).min(self.max_delay);
        if self.jitter {
            let half = delay / 2;
            half + half.mul_f64(random_unit())
        } else {
            delay
        }
    }
}

/// A random number in `[0, 1)` from the standard library's per-process random hash keys
/// (jitter needs no cryptographic quality, nor a dependency).
fn random_unit() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// A client that retries another one's retryable failures according to a [`RetryPolicy`].
///
/// A stream is retried only while it has produced nothing: once an event went out, a later
/// error ends the stream (repeating deltas would corrupt what the caller has shown).
///
/// ```
/// # use std::sync::Arc;
/// use kaos_providers::{ModelClient, ModelRequest, Message, ProviderError, RetryClient, RetryPolicy, ScriptedClient, ScriptedReply};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let flaky = ScriptedClient::new()
///     .with_reply(ScriptedReply::Error(ProviderError::Overloaded { message: "busy".into() }))
///     .with_text("ok");
/// let policy = RetryPolicy::default().with_base_delay(std::time::Duration::from_millis(1));
/// let client = RetryClient::new(Arc::new(flaky.clone()), policy);
/// let response = client.complete(&ModelRequest::new("scripted:x", vec![Message::user("hi")])).await?;
/// assert_eq!(response.text, "ok");
/// # Ok::<(), ProviderError>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct RetryClient {
    inner: Arc<dyn ModelClient>,
    policy: RetryPolicy,
    sleeper: Arc<dyn Sleeper>,
}

impl RetryClient {
    /// Retries `inner` with `policy`, sleeping with tokio's timer.
    pub fn new(inner: Arc<dyn ModelClient>, policy: RetryPolicy) -> Self {
        Self { inner, policy, sleeper: Arc::new(TokioSleeper) }
    }

    /// With another way to wait (tests record the delays instead of sleeping).
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The wait before retry `retry` after `error`, or `None` when the error is final.
    fn next_delay(&self, retry: u32, error: &ProviderError) -> Option<Duration> {
        if !error.is_retryable() || retry >= self.policy.max_retries {
            return None;
        }
        let delay = self.policy.delay(retry, error.retry_after());
        tracing::warn!(
            error.kind = error.kind(),
            retry = retry + 1,
            delay_ms = delay.as_millis() as u64,
            "model call failed, retrying"
        );
        Some(delay)
    }

    /// Waits before retry `retry` after `error`, or returns `false` when the error is final.
    async fn backoff(&self, retry: u32, error: &ProviderError) -> bool {
        match self.next_delay(retry, error) {
            Some(delay) => {
                self.sleeper.sleep(delay).await;
                true
            }
            None => false,
        }
    }
}

fn timed_out(timeout: Duration) -> ProviderError {
    ProviderError::Transport { message: format!("no answer within {} s", timeout.as_secs_f64()) }
}

#[async_trait]
impl ModelClient for RetryClient {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn price(&self, model: &str) -> Option<crate::ModelPrice> {
        self.inner.price(model)
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        let mut retry = 0;
        loop {
            let attempt = self.inner.complete(request);
            let result = match self.policy.timeout {
                Some(limit) => {
                    tokio::time::timeout(limit, attempt).await.unwrap_or_else(|_| Err(timed_out(limit)))
                }
                None => attempt.await,
            };
            match result {
                Err(error) if self.backoff(retry, &error).await => retry += 1,
                result => return result,
            }
        }
    }

    /// Sends a [`StreamEvent::RetryScheduled`] before each wait, so a caller can tell a
    /// person what is happening.
    fn stream<'a>(&'a self, request: &'a ModelRequest) -> ModelStream<'a> {
        enum Phase<'a> {
            Attempt,
            Wait(Duration),
            Streaming(ModelStream<'a>),
            Done,
        }
        let start = (Phase::Attempt, 0u32);
        Box::pin(stream::unfold(start, move |(mut phase, mut retry)| async move {
            loop {
                match std::mem::replace(&mut phase, Phase::Done) {
                    Phase::Done => return None,
                    Phase::Streaming(mut events) => {
                        let item = events.next().await?;
                        return Some((item, (Phase::Streaming(events), retry)));
                    }
                    Phase::Wait(delay) => {
                        self.sleeper.sleep(delay).await;
                        phase = Phase::Attempt;
                    }
                    Phase::Attempt => {
                        let mut events = self.inner.stream(request);
                        let first = match self.policy.timeout {
                            Some(limit) => tokio::time::timeout(limit, events.next())
                                .await
                                .unwrap_or_else(|_| Some(Err(timed_out(limit)))),
                            None => events.next().await,
                        };
                        match first {
                            None => return None,
                            // Nothing follows an error: the failed stream is dropped, not drained.
                            Some(Err(error)) => match self.next_delay(retry, &error) {
                                Some(delay) => {
                                    retry += 1;
                                    let scheduled = StreamEvent::RetryScheduled {
                                        attempt: retry,
                                        wait_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                                        reason: error.kind().to_owned(),
                                        message: error.to_string(),
                                    };
                                    return Some((Ok(scheduled), (Phase::Wait(delay), retry)));
                                }
                                None => return Some((Err(error), (Phase::Done, retry))),
                            },
                            Some(Ok(event)) => return Some((Ok(event), (Phase::Streaming(events), retry))),
                        }
                    }
                }
            }
        }))
    }
}

//! Retries, timeouts and fallbacks, on the offline scripted model (no real sleeping).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use crate::support::RecordingSleeper;
use async_trait::async_trait;
use futures::StreamExt;
use kaos_providers::{
    Capabilities, FallbackClient, Message, ModelClient, ModelRequest, ModelResponse, ProviderError,
    RetryClient, RetryPolicy, ScriptedClient, ScriptedReply, StreamEvent,
};

fn request() -> ModelRequest {
    ModelRequest::new("scripted:test", vec![Message::user("hi")])
}

fn fail(error: ProviderError) -> ScriptedReply {
    ScriptedReply::Error(error)
}

fn overloaded() -> ProviderError {
    ProviderError::Overloaded { message: "busy".into() }
}

fn retrying(client: &ScriptedClient, policy: RetryPolicy) -> (RetryClient, Arc<RecordingSleeper>) {
    let sleeper = Arc::new(RecordingSleeper::default());
    (RetryClient::new(Arc::new(client.clone()), policy).with_sleeper(sleeper.clone()), sleeper)
}

#[tokio::test]
async fn retries_honour_retry_after_capped_and_stop_at_non_retryable_errors() {
    let model = ScriptedClient::new()
        .with_reply(fail(ProviderError::RateLimited {
            message: "slow".into(),
            retry_after: Some(Duration::from_secs(600)),
        }))
        .with_reply(fail(ProviderError::Transport { message: "reset".into() }))
        .with_text("ok")
        .with_reply(fail(ProviderError::InvalidRequest { message: "bad".into() }));
    let (client, sleeper) = retrying(&model, RetryPolicy::default().without_jitter());
    assert_eq!(client.complete(&request()).await.unwrap().text, "ok");
    assert_eq!(sleeper.delays(), vec![Duration::from_secs(60), Duration::from_secs(1)]);
    assert!(matches!(client.complete(&request()).await, Err(ProviderError::InvalidRequest { .. })));
    assert_eq!((sleeper.delays().len(), model.remaining()), (2, 0));
}

#[test]
fn jittered_delays_stay_in_the_upper_half_of_the_backoff() {
    let policy = RetryPolicy::default();
    for retry in 0..8 {
        let exact = policy.without_jitter().delay(retry, None);
        let jittered = policy.delay(retry, None);
        assert!(jittered >= exact / 2 && jittered <= exact, "{retry}: {jittered:?} vs {exact:?}");
    }
}

#[tokio::test]
async fn a_stream_is_retried_only_before_its_first_event() {
    let model = ScriptedClient::new().with_reply(fail(overloaded())).with_text("hello there");
    let (client, sleeper) = retrying(&model, RetryPolicy::default().without_jitter());
    let events: Vec<_> = client.stream(&request()).map(Result::unwrap).collect().await;
    // The retry is announced before the wait, then the answer streams.
    assert_eq!(
        events.first(),
        Some(&StreamEvent::RetryScheduled {
            attempt: 1,
            wait_ms: 500,
            reason: "overloaded".into(),
            message: overloaded().to_string(),
        })
    );
    assert_eq!(events.get(1), Some(&StreamEvent::TextDelta { text: "hello ".into() }));
    assert!(
        matches!(events.last(), Some(StreamEvent::Completed { response }) if response.text == "hello there")
    );
    assert_eq!(sleeper.delays(), vec![Duration::from_millis(500)]);
}

/// A model that never answers.
#[derive(Debug)]
struct Silent;

#[async_trait]
impl ModelClient for Silent {
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn complete(&self, _: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        futures::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn each_attempt_has_a_time_limit() {
    let sleeper = Arc::new(RecordingSleeper::default());
    let policy = RetryPolicy::default()
        .with_max_retries(1)
        .with_timeout(Some(Duration::from_secs(30)))
        .without_jitter();
    let client = RetryClient::new(Arc::new(Silent), policy).with_sleeper(sleeper.clone());
    let error = client.complete(&request()).await.unwrap_err();
    assert_eq!(error.to_string(), "transport error: no answer within 30 s");
    let stream_error: Vec<_> = client.stream(&request()).collect().await;
    assert!(
        matches!(
            stream_error.as_slice(),
            [Ok(StreamEvent::RetryScheduled { attempt: 1, .. }), Err(ProviderError::Transport { .. })]
        ),
        "{stream_error:?}"
    );
    assert_eq!(sleeper.delays(), vec![Duration::from_millis(500); 2]);
}

#[tokio::test]
async fn fallback_moves_on_for_fallbackable_errors_but_never_for_auth() {
    let first = ScriptedClient::new()
        .with_reply(fail(overloaded()))
        .with_reply(fail(ProviderError::Auth { message: "bad key".into() }))
        .with_reply(fail(ProviderError::ContextTooLong { message: "too long".into() }));
    let second = ScriptedClient::new().with_text("backup 1").with_reply(fail(overloaded()));
    let client = FallbackClient::new(vec![Arc::new(first.clone()), Arc::new(second.clone())]);

    assert_eq!(client.complete(&request()).await.unwrap().text, "backup 1");
    assert!(matches!(client.complete(&request()).await, Err(ProviderError::Auth { .. })));
    assert_eq!(second.requests_len(), 1, "an auth error must not fall back");
    let last = client.complete(&request()).await.unwrap_err();
    assert_eq!(last.to_string(), "provider overloaded: busy");
    assert_eq!((first.remaining(), second.remaining(), second.requests_len()), (0, 0, 2));
}

#[tokio::test]
async fn fallback_streams_from_the_first_client_that_starts() {
    let first = ScriptedClient::new().with_reply(fail(overloaded()));
    let second = ScriptedClient::new().with_text("from two");
    let client = FallbackClient::new(vec![Arc::new(first), Arc::new(second)]);
    let events: Vec<_> = client.stream(&request()).map(Result::unwrap).collect().await;
    assert!(
        matches!(events.last(), Some(StreamEvent::Completed { response }) if response.text == "from two")
    );
    let none = FallbackClient::new(vec![]);
    assert!(matches!(none.complete(&request()).await, Err(ProviderError::UnknownModel { .. })));
}

//! Helpers shared by the wire-level tests: a loopback vendor, SSE bodies, a sleeper that
//! records instead of sleeping.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use kaos_providers::{
    ModelClient, ModelRequest, ProviderError, RetryClient, RetryPolicy, Sleeper, StreamEvent,
};
use serde_json::Value;
use wiremock::{MockServer, ResponseTemplate};

/// Records every delay it is asked for and returns at once.
#[derive(Debug, Default)]
pub struct RecordingSleeper(pub Mutex<Vec<Duration>>);

impl Sleeper for RecordingSleeper {
    fn sleep(&self, delay: Duration) -> BoxFuture<'static, ()> {
        self.0.lock().unwrap().push(delay);
        Box::pin(async {})
    }
}

impl RecordingSleeper {
    pub fn delays(&self) -> Vec<Duration> {
        self.0.lock().unwrap().clone()
    }
}

/// `client` behind the default policy (3 retries, no jitter), sleeping into a recorder.
pub fn with_retries(client: impl ModelClient + 'static) -> (RetryClient, Arc<RecordingSleeper>) {
    let sleeper = Arc::new(RecordingSleeper::default());
    let retry = RetryClient::new(Arc::new(client), RetryPolicy::default().without_jitter())
        .with_sleeper(sleeper.clone());
    (retry, sleeper)
}

/// A `text/event-stream` answer made of `data:` events (already-serialized JSON or `[DONE]`).
pub fn sse(events: &[String]) -> ResponseTemplate {
    let body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    ResponseTemplate::new(200).set_body_raw(body.into_bytes(), "text/event-stream")
}

/// A `text/event-stream` answer of named events (`event:` + `data:`), Anthropic style.
pub fn named_sse(events: &[(&str, Value)]) -> ResponseTemplate {
    let body: String = events.iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect();
    ResponseTemplate::new(200).set_body_raw(body.into_bytes(), "text/event-stream")
}

/// The JSON bodies of every request the server received.
pub async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

/// The only request body the server received.
pub async fn only_body(server: &MockServer) -> Value {
    let mut all = bodies(server).await;
    assert_eq!(all.len(), 1, "expected exactly one request");
    all.remove(0)
}

/// Every item of a stream.
pub async fn collect(
    client: &dyn ModelClient,
    request: &ModelRequest,
) -> Vec<Result<StreamEvent, ProviderError>> {
    client.stream(request).collect().await
}

/// The events of a stream that must succeed.
pub async fn events(client: &dyn ModelClient, request: &ModelRequest) -> Vec<StreamEvent> {
    collect(client, request).await.into_iter().map(|e| e.unwrap()).collect()
}

use std::fmt::Debug;
use std::pin::Pin;

use async_trait::async_trait;
use futures::{Stream, StreamExt, stream};
use serde::{Deserialize, Serialize};

use crate::{ModelRequest, ModelResponse, ProviderError, StreamEvent};

/// A stream of [`StreamEvent`]s from one model call.
pub type ModelStream<'a> = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send + 'a>>;

/// How a model can be made to answer in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StructuredOutput {
    /// Not supported.
    #[default]
    None,
    /// Any JSON object, schema not enforced.
    JsonMode,
    /// JSON constrained by a schema.
    JsonSchema,
}

/// What a model (as served by a client) can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// Context window, in tokens.
    pub context_window: u32,
    /// Most output tokens per call.
    pub max_output_tokens: u32,
    /// Whether the model calls tools natively.
    pub native_tools: bool,
    /// Whether one response may hold several tool calls.
    pub parallel_tool_calls: bool,
    /// Structured output support.
    pub structured_output: StructuredOutput,
    /// Whether [`ModelClient::stream`] streams for real (rather than replaying `complete`).
    pub streaming: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            context_window: 128_000,
            max_output_tokens: 4_096,
            native_tools: true,
            parallel_tool_calls: true,
            structured_output: StructuredOutput::None,
            streaming: false,
        }
    }
}

/// A model client: one interface over every vendor, and over the offline models.
///
/// Implementations are shared behind `Arc<dyn ModelClient>` by many concurrent turns.
/// `complete` and `stream` must agree: the `Completed` event of a stream carries the response
/// `complete` would have returned for the same request.
#[async_trait]
pub trait ModelClient: Send + Sync + Debug {
    /// What the model can do.
    fn capabilities(&self) -> Capabilities;

    /// The price of `model` as this client would charge it, if known. Budgets use it to bound
    /// a call's cost *before* sending it; `None` means a cost cap cannot be guaranteed for it.
    fn price(&self, _model: &str) -> Option<crate::ModelPrice> {
        None
    }

    /// Sends `request` and waits for the whole response. The request is borrowed so that
    /// retries, fallbacks and recorders never need to copy it.
    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError>;

    /// Sends `request` and streams the response. The default implementation calls
    /// [`complete`](ModelClient::complete) and replays its text as one delta.
    fn stream<'a>(&'a self, request: &'a ModelRequest) -> ModelStream<'a> {
        let once = stream::once(async move { self.complete(request).await });
        Box::pin(once.flat_map(|result| {
            let events = match result {
                Ok(response) => completed_events(response),
                Err(e) => vec![Err(e)],
            };
            stream::iter(events)
        }))
    }
}

/// The events a stream of a finished `response` consists of: its thinking and text as
/// deltas, then `Completed`.
fn completed_events(response: ModelResponse) -> Vec<Result<StreamEvent, ProviderError>> {
    let mut events = Vec::with_capacity(3);
    if let Some(thinking) = response.thinking.clone().filter(|t| !t.is_empty()) {
        events.push(Ok(StreamEvent::ThinkingDelta { text: thinking }));
    }
    if !response.text.is_empty() {
        events.push(Ok(StreamEvent::TextDelta { text: response.text.clone() }));
    }
    events.push(Ok(StreamEvent::Completed { response }));
    events
}

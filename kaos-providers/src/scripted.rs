use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use futures::stream;
use serde_json::Value;

use crate::{
    Capabilities, FinishReason, ModelClient, ModelRequest, ModelResponse, ModelStream, ProviderError,
    StreamEvent, StructuredOutput, ToolCall, Usage, estimate_json_tokens, estimate_tokens,
};

/// One answer of a [`ScriptedClient`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ScriptedReply {
    /// A final text answer.
    Text(String),
    /// Tool calls as `(name, arguments)`, optionally with text; ids are assigned deterministically.
    ToolCalls {
        /// Text sent along with the calls.
        text: String,
        /// The calls.
        calls: Vec<(String, Value)>,
    },
    /// A complete response, used as is (usage and cost included).
    Response(ModelResponse),
    /// A failure.
    Error(ProviderError),
}

impl ScriptedReply {
    /// A final text answer.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    /// One tool call.
    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Self {
        Self::ToolCalls { text: String::new(), calls: vec![(name.into(), arguments)] }
    }

    /// Several tool calls in one response.
    pub fn tool_calls<I, S>(calls: I) -> Self
    where
        I: IntoIterator<Item = (S, Value)>,
        S: Into<String>,
    {
        Self::ToolCalls {
            text: String::new(),
            calls: calls.into_iter().map(|(n, a)| (n.into(), a)).collect(),
        }
    }
}

type ReplyFn = dyn Fn(&ModelRequest) -> ScriptedReply + Send + Sync;

enum Script {
    Queue(Mutex<VecDeque<ScriptedReply>>),
    Func(Box<ReplyFn>),
}

struct Inner {
    script: Script,
    record: bool,
    requests: Mutex<Vec<ModelRequest>>,
}

/// The offline model: deterministic, free, and recording every request.
///
/// It answers from a queue of [`ScriptedReply`]s ([`ScriptedClient::new`] + `with_*`), or from
/// a function of the request ([`ScriptedClient::from_fn`]); [`ScriptedClient::echo`] is the
/// default offline model (`scripted:echo`). Usage is estimated from the text (about four bytes
/// a token) and the cost is exactly zero. Clones share the script and the recorded requests, so
/// a test can keep a handle after giving one to a Runner.
///
/// Tool call ids are `call_{m}_{i}`: `m` is the number of messages in the request and `i` the
/// call's position, so they depend only on the conversation, not on timing.
#[derive(Clone)]
pub struct ScriptedClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for ScriptedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match &self.inner.script {
            Script::Queue(_) => "queue",
            Script::Func(_) => "function",
        };
        f.debug_struct("ScriptedClient").field("mode", &mode).field("recorded", &self.requests_len()).finish()
    }
}

impl Default for ScriptedClient {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedClient {
    /// A client answering from a queue, initially empty. A request when the queue is empty
    /// fails with [`ProviderError::Script`].
    pub fn new() -> Self {
        Self::with_script(Script::Queue(Mutex::new(VecDeque::new())))
    }

    /// A client answering each request with `reply(&request)`.
    pub fn from_fn(reply: impl Fn(&ModelRequest) -> ScriptedReply + Send + Sync + 'static) -> Self {
        Self::with_script(Script::Func(Box::new(reply)))
    }

    /// The default offline model: repeats the last user message and says how many user
    /// messages of history it saw, so memory across turns is visible without an API key.
    pub fn echo() -> Self {
        Self::from_fn(|request| {
            let seen = request.user_message_count();
            let last = request.last_user_message().unwrap_or_default();
            let plural = if seen == 1 { "" } else { "s" };
            ScriptedReply::text(format!(
                "You said: {last:?}. I have seen {seen} user message{plural} in this session."
            ))
        })
    }

    fn with_script(script: Script) -> Self {
        Self { inner: Arc::new(Inner { script, record: true, requests: Mutex::new(Vec::new()) }) }
    }

    /// Stops recording requests (for benchmarks and long-running processes). Call before
    /// cloning: clones made earlier keep recording.
    pub fn without_recording(self) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.record = false;
                Self { inner: Arc::new(inner) }
            }
            Err(inner) => Self { inner },
        }
    }

    /// Appends a reply to the queue (no effect on a function-driven client).
    pub fn push(&self, reply: ScriptedReply) {
        if let Script::Queue(queue) = &self.inner.script {
            queue.lock().unwrap_or_else(PoisonError::into_inner).push_back(reply);
        }
    }

    /// Queues a reply, builder style.
    pub fn with_reply(self, reply: ScriptedReply) -> Self {
        self.push(reply);
        self
    }

    /// Queues a text answer.
    pub fn with_text(self, text: impl Into<String>) -> Self {
        self.with_reply(ScriptedReply::text(text))
    }

    /// Queues one tool call.
    pub fn with_tool_call(self, name: impl Into<String>, arguments: Value) -> Self {
        self.with_reply(ScriptedReply::tool_call(name, arguments))
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<ModelRequest> {
        self.inner.requests.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How many requests were recorded.
    pub fn requests_len(&self) -> usize {
        self.inner.requests.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Replies left in the queue (0 for a function-driven client).
    pub fn remaining(&self) -> usize {
        match &self.inner.script {
            Script::Queue(queue) => queue.lock().unwrap_or_else(PoisonError::into_inner).len(),
            Script::Func(_) => 0,
        }
    }

    fn answer(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        let reply = match &self.inner.script {
            Script::Func(f) => f(request),
            Script::Queue(queue) => {
                let next = queue.lock().unwrap_or_else(PoisonError::into_inner).pop_front();
                next.ok_or_else(|| ProviderError::Script {
                    message: format!("no scripted reply left for request #{}", self.requests_len() + 1),
                })?
            }
        };
        let response = build_response(request, reply);
        if self.inner.record {
            self.inner.requests.lock().unwrap_or_else(PoisonError::into_inner).push(request.clone());
        }
        response
    }
}

fn build_response(request: &ModelRequest, reply: ScriptedReply) -> Result<ModelResponse, ProviderError> {
    let (text, calls) = match reply {
        ScriptedReply::Response(response) => return Ok(response),
        ScriptedReply::Error(error) => return Err(error),
        ScriptedReply::Text(text) => (text, Vec::new()),
        ScriptedReply::ToolCalls { text, calls } => (text, calls),
    };
    let m = request.messages.len();
    let tool_calls: Vec<ToolCall> = calls
        .into_iter()
        .enumerate()
        .map(|(i, (name, arguments))| ToolCall::new(format!("call_{m}_{i}"), name, arguments))
        .collect();
    let output_tokens = estimate_tokens(&text)
        + tool_calls
            .iter()
            .map(|c| estimate_tokens(&c.name) + estimate_json_tokens(&c.arguments))
            .sum::<u64>();
    Ok(ModelResponse {
        finish_reason: if tool_calls.is_empty() { FinishReason::Stop } else { FinishReason::ToolCalls },
        text,
        thinking: None,
        tool_calls,
        usage: Usage::new(request.estimated_input_tokens(), output_tokens),
        cost_usd: Some(0.0),
        usage_estimated: false,
        model: request.model.clone(),
        raw: None,
    })
}

#[async_trait]
impl ModelClient for ScriptedClient {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            context_window: 1_000_000,
            max_output_tokens: 100_000,
            native_tools: true,
            parallel_tool_calls: true,
            structured_output: StructuredOutput::JsonSchema,
            streaming: true,
        }
    }

    /// Free: every price is zero.
    fn price(&self, _model: &str) -> Option<crate::ModelPrice> {
        Some(crate::ModelPrice::new(0.0, 0.0, None))
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        self.answer(request)
    }

    /// Streams the scripted answer word by word, then each tool call's arguments, then
    /// `Completed`: the same shape a real vendor's stream has.
    fn stream<'a>(&'a self, request: &'a ModelRequest) -> ModelStream<'a> {
        Box::pin(stream::iter(Replay::new(self.answer(request))))
    }
}

/// A scripted answer as the events of its stream, made one at a time as they are polled.
struct Replay {
    answer: Option<Result<ModelResponse, ProviderError>>,
    /// Where the next word of the text starts.
    at: usize,
    /// The next tool call to stream.
    call: usize,
}

impl Replay {
    fn new(answer: Result<ModelResponse, ProviderError>) -> Self {
        Self { answer: Some(answer), at: 0, call: 0 }
    }
}

impl Iterator for Replay {
    type Item = Result<StreamEvent, ProviderError>;

    fn next(&mut self) -> Option<Self::Item> {
        let response = match self.answer.as_ref()? {
            Ok(response) => response,
            Err(_) => {
                return self
                    .answer
                    .take()
                    .map(|answer| answer.map(|response| StreamEvent::Completed { response }));
            }
        };
        if let Some(rest) = response.text.get(self.at..).filter(|rest| !rest.is_empty()) {
            let word = rest.find(' ').map_or(rest, |space| &rest[..=space]);
            self.at += word.len();
            return Some(Ok(StreamEvent::TextDelta { text: word.to_owned() }));
        }
        if let Some(call) = response.tool_calls.get(self.call) {
            self.call += 1;
            return Some(Ok(StreamEvent::ToolCallDelta {
                index: self.call - 1,
                id: Some(call.id.clone()),
                name: Some(call.name.clone()),
                // The same text as `to_string`, written straight into a buffer.
                arguments: serde_json::to_string(&call.arguments)
                    .unwrap_or_else(|_| call.arguments.to_string()),
            }));
        }
        self.answer.take().map(|answer| answer.map(|response| StreamEvent::Completed { response }))
    }
}

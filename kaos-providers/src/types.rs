use std::ops::{Add, AddAssign};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Conversation;

/// One message of a conversation, in vendor-neutral form. The system prompt is not a message:
/// it is [`ModelRequest::system`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Message {
    /// What the user said.
    User {
        /// The text.
        content: String,
    },
    /// What the model said, possibly with tool calls.
    Assistant {
        /// The text (may be empty when the model only called tools).
        content: String,
        /// Tool calls the model made, in order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    /// The result of one tool call, fed back to the model.
    Tool {
        /// The id of the call this answers.
        call_id: String,
        /// The tool's name.
        name: String,
        /// The result as text.
        content: String,
        /// Whether the tool failed.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

impl Message {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message::User { content: content.into() }
    }

    /// An assistant message without tool calls.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message::Assistant { content: content.into(), tool_calls: Vec::new() }
    }

    /// A tool result.
    pub fn tool(
        call_id: impl Into<String>,
        name: impl Into<String>,
        content: impl Into<String>,
        is_error: bool,
    ) -> Self {
        Message::Tool { call_id: call_id.into(), name: name.into(), content: content.into(), is_error }
    }

    /// Whether this is a user message.
    pub fn is_user(&self) -> bool {
        matches!(self, Message::User { .. })
    }

    /// The text content.
    pub fn content(&self) -> &str {
        match self {
            Message::User { content }
            | Message::Assistant { content, .. }
            | Message::Tool { content, .. } => content,
        }
    }

    /// A cheap token estimate of this message (see [`estimate_tokens`]).
    pub fn estimated_tokens(&self) -> u64 {
        let calls = match self {
            Message::Assistant { tool_calls, .. } => {
                tool_calls.iter().map(|c| estimate_tokens(&c.name) + estimate_json_tokens(&c.arguments)).sum()
            }
            _ => 0,
        };
        // Per-message framing overhead, as vendors charge it.
        4 + estimate_tokens(self.content()) + calls
    }
}

/// A fast token estimate: about four bytes of text per token, never zero for non-empty text.
/// Used for budgets and for offline usage; vendors report exact counts.
pub fn estimate_tokens(text: &str) -> u64 {
    if text.is_empty() { 0 } else { (text.len() as u64).div_ceil(4) }
}

/// [`estimate_tokens`] of `value` as compact JSON (`value.to_string()`), measured without
/// building the string: budgets estimate every request, and a long conversation holds many
/// tool calls.
pub fn estimate_json_tokens(value: &Value) -> u64 {
    struct Bytes(u64);
    impl std::io::Write for Bytes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut bytes = Bytes(0);
    // Serializing a `Value` into a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut bytes, value);
    bytes.0.div_ceil(4)
}

/// A tool call made by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The vendor's id for the call; tool results refer to it.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, as JSON (an object for well-behaved models; anything for the rest).
    pub arguments: Value,
}

impl ToolCall {
    /// A tool call.
    pub fn new(id: impl Into<String>, name: impl Into<String>, arguments: Value) -> Self {
        Self { id: id.into(), name: name.into(), arguments }
    }
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    /// The name the model calls it by.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: Value,
}

/// The tools offered in a request: shared (a clone is a reference count) and immutable, with
/// their token estimate computed once. A Runner builds its tool set once and every model call
/// offers it without copying the schemas or measuring them again.
///
/// ```
/// use kaos_providers::{ToolDefinition, ToolSet};
/// let tools: ToolSet = vec![ToolDefinition {
///     name: "add".into(),
///     description: "Adds two integers.".into(),
///     parameters: serde_json::json!({"type": "object"}),
/// }]
/// .into();
/// assert_eq!(tools.len(), 1);
/// assert_eq!(tools[0].name, "add");
/// // "add", "Adds two integers." and `{"type":"object"}`: a token per 4 bytes, rounded up.
/// assert_eq!(tools.estimated_tokens(), 1 + 5 + 5);
/// ```
#[derive(Debug, Clone)]
pub struct ToolSet(Arc<ToolSetInner>);

/// No tools: one shared empty set, so a request without tools allocates none.
impl Default for ToolSet {
    fn default() -> Self {
        static EMPTY: std::sync::LazyLock<ToolSet> =
            std::sync::LazyLock::new(|| ToolSet(Arc::new(ToolSetInner::default())));
        EMPTY.clone()
    }
}

#[derive(Debug, Default)]
struct ToolSetInner {
    tools: Box<[ToolDefinition]>,
    tokens: std::sync::OnceLock<u64>,
}

impl ToolSet {
    /// The tools' names, descriptions and compact JSON schemas in tokens (estimated as
    /// [`estimate_tokens`] does), computed on first use.
    pub fn estimated_tokens(&self) -> u64 {
        *self.0.tokens.get_or_init(|| {
            self.0
                .tools
                .iter()
                .map(|t| {
                    estimate_tokens(&t.name)
                        + estimate_tokens(&t.description)
                        + estimate_json_tokens(&t.parameters)
                })
                .sum()
        })
    }
}

impl std::ops::Deref for ToolSet {
    type Target = [ToolDefinition];
    fn deref(&self) -> &[ToolDefinition] {
        &self.0.tools
    }
}

impl From<Vec<ToolDefinition>> for ToolSet {
    fn from(tools: Vec<ToolDefinition>) -> Self {
        Self(Arc::new(ToolSetInner { tools: tools.into_boxed_slice(), tokens: std::sync::OnceLock::new() }))
    }
}

impl FromIterator<ToolDefinition> for ToolSet {
    fn from_iter<I: IntoIterator<Item = ToolDefinition>>(iter: I) -> Self {
        iter.into_iter().collect::<Vec<_>>().into()
    }
}

impl PartialEq for ToolSet {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.tools == other.0.tools
    }
}

impl Serialize for ToolSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.tools.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ToolSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<ToolDefinition>::deserialize(deserializer).map(Self::from)
    }
}

/// Whether and how the model must call tools.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// No tool calls.
    None,
    /// At least one tool call.
    Required,
    /// This tool.
    Tool(String),
}

/// Sampling settings; `None` leaves the vendor's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Sampling {
    /// Temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Most output tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

/// Everything a model call needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelRequest {
    /// The model name as the vendor knows it, or the full `provider:model` for offline clients.
    pub model: String,
    /// The system prompt.
    pub system: String,
    /// The conversation, oldest first (a `Vec<Message>` that keeps its token estimate).
    pub messages: Conversation,
    /// Tools offered: shared, so a Runner offers its tools to every model call without copying
    /// their schemas.
    #[serde(default, skip_serializing_if = "no_tools")]
    pub tools: ToolSet,
    /// Tool choice.
    #[serde(default)]
    pub tool_choice: ToolChoice,
    /// Sampling settings.
    #[serde(default)]
    pub sampling: Sampling,
    /// When set, the answer must be JSON matching this schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
}

fn no_tools(tools: &ToolSet) -> bool {
    tools.is_empty()
}

impl ModelRequest {
    /// A request with no system prompt and no tools.
    pub fn new(model: impl Into<String>, messages: impl Into<Conversation>) -> Self {
        Self {
            model: model.into(),
            system: String::new(),
            messages: messages.into(),
            tools: ToolSet::default(),
            tool_choice: ToolChoice::Auto,
            sampling: Sampling::default(),
            output_schema: None,
        }
    }

    /// With a system prompt.
    pub fn with_system(mut self, system: impl Into<String>) -> Self {
        self.system = system.into();
        self
    }

    /// With tools offered.
    pub fn with_tools(mut self, tools: impl Into<ToolSet>) -> Self {
        self.tools = tools.into();
        self
    }

    /// The last user message's text, if any.
    pub fn last_user_message(&self) -> Option<&str> {
        self.messages.iter().rev().find(|m| m.is_user()).map(Message::content)
    }

    /// How many user messages the conversation holds.
    pub fn user_message_count(&self) -> usize {
        self.messages.iter().filter(|m| m.is_user()).count()
    }

    /// A cheap estimate of the input tokens this request costs: O(1) in the length of the
    /// conversation, which keeps its own estimate ([`Conversation::estimated_tokens`]).
    pub fn estimated_input_tokens(&self) -> u64 {
        estimate_tokens(&self.system) + self.messages.estimated_tokens() + self.tools.estimated_tokens()
    }

    /// The most input tokens a server may count for this request, as budgets assume it: the
    /// [estimate](ModelRequest::estimated_input_tokens) with a 50% margin, because servers
    /// count prompts with their own tokenizer and chat template (a prompt counted up to 1.5×
    /// the estimate still fits). Budgets size a call's output so that this bound plus the
    /// output fits, and charge it for a call whose server reported no usage.
    ///
    /// ```
    /// use kaos_providers::{Message, ModelRequest};
    /// let request = ModelRequest::new("m", vec![Message::user("x".repeat(400))]);
    /// assert_eq!(request.estimated_input_tokens(), 104);
    /// assert_eq!(request.input_token_bound(), 156);
    /// ```
    pub fn input_token_bound(&self) -> u64 {
        prompt_token_bound(self.estimated_input_tokens())
    }
}

/// The most input tokens a server may count for a prompt estimated at `estimate` tokens: the
/// estimate plus half of it, rounded up (see [`ModelRequest::input_token_bound`]).
pub fn prompt_token_bound(estimate: u64) -> u64 {
    estimate.saturating_add(estimate.div_ceil(2))
}

/// Why the model stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FinishReason {
    /// A complete answer.
    #[default]
    Stop,
    /// The model wants tool results.
    ToolCalls,
    /// The output token limit was reached.
    Length,
    /// The vendor filtered the output.
    ContentFilter,
    /// Anything else the vendor said.
    Other(String),
}

/// Token usage of one or more calls, normalized across vendors so that each token is counted
/// exactly once: `input_tokens` excludes cached input (which is `cached_input_tokens`), and
/// `reasoning_tokens` are a part of `output_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Input tokens not served from a cache.
    pub input_tokens: u64,
    /// Output tokens (reasoning included).
    pub output_tokens: u64,
    /// Input tokens served from the vendor's prompt cache.
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// Of `output_tokens`, those spent reasoning.
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Usage with plain input and output counts.
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self { input_tokens, output_tokens, cached_input_tokens: 0, reasoning_tokens: 0 }
    }

    /// With this many cached input tokens (on top of `input_tokens`).
    pub fn with_cached_input(mut self, cached_input_tokens: u64) -> Self {
        self.cached_input_tokens = cached_input_tokens;
        self
    }

    /// With this many of the output tokens spent reasoning.
    pub fn with_reasoning(mut self, reasoning_tokens: u64) -> Self {
        self.reasoning_tokens = reasoning_tokens;
        self
    }

    /// All tokens: input (cached or not) plus output.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.cached_input_tokens + self.output_tokens
    }
}

impl Add for Usage {
    type Output = Usage;
    fn add(self, rhs: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens + rhs.input_tokens,
            output_tokens: self.output_tokens + rhs.output_tokens,
            cached_input_tokens: self.cached_input_tokens + rhs.cached_input_tokens,
            reasoning_tokens: self.reasoning_tokens + rhs.reasoning_tokens,
        }
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, rhs: Usage) {
        *self = *self + rhs;
    }
}

/// What a model call returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelResponse {
    /// The text answer (may be empty when the model only called tools).
    pub text: String,
    /// Visible reasoning, where the vendor returns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// Tool calls, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Why the model stopped.
    pub finish_reason: FinishReason,
    /// Normalized usage.
    pub usage: Usage,
    /// Cost in USD; `None` when the model's price is unknown (never silently zero).
    pub cost_usd: Option<f64>,
    /// Whether `usage` (and so `cost_usd`) is a conservative bound rather than the vendor's
    /// count: the server reported no usage, or streamed past the output limit it was sent and
    /// was cut off. The bound is the request's [input bound](ModelRequest::input_token_bound)
    /// plus the output limit sent (or, with no limit sent, an estimate of the output received).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_estimated: bool,
    /// The model that actually served the call.
    pub model: String,
    /// The vendor's raw response body, as an escape hatch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Value>,
}

impl ModelResponse {
    /// A text answer.
    pub fn text(model: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            thinking: None,
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
            cost_usd: None,
            usage_estimated: false,
            model: model.into(),
            raw: None,
        }
    }

    /// A response that calls tools (finish reason [`FinishReason::ToolCalls`], no text): what a
    /// custom [`ModelClient`](crate::ModelClient) returns when the model asks for tool results.
    ///
    /// ```
    /// use kaos_providers::{FinishReason, ModelResponse, ToolCall, Usage};
    ///
    /// let call = ToolCall::new("call-1", "kaos-vfs-read", serde_json::json!({"path": "notes.md"}));
    /// let response = ModelResponse::tool_calls("my-model", vec![call]).with_usage(Usage::new(120, 15));
    /// assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    /// assert_eq!(response.tool_calls[0].name, "kaos-vfs-read");
    /// ```
    pub fn tool_calls(model: impl Into<String>, calls: Vec<ToolCall>) -> Self {
        Self { tool_calls: calls, finish_reason: FinishReason::ToolCalls, ..Self::text(model, "") }
    }

    /// With this text (a model may say something and call tools in one response).
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = text.into();
        self
    }

    /// With this visible reasoning.
    pub fn with_thinking(mut self, thinking: impl Into<String>) -> Self {
        self.thinking = Some(thinking.into());
        self
    }

    /// With the usage the vendor reported.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }

    /// With this finish reason.
    pub fn with_finish_reason(mut self, finish_reason: FinishReason) -> Self {
        self.finish_reason = finish_reason;
        self
    }

    /// The assistant message to append to the conversation.
    pub fn to_message(&self) -> Message {
        Message::Assistant { content: self.text.clone(), tool_calls: self.tool_calls.clone() }
    }
}

/// One piece of a streamed model call. A well-formed stream ends with exactly one
/// [`StreamEvent::Completed`] carrying the whole response (the deltas folded, plus usage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StreamEvent {
    /// A chunk of answer text.
    TextDelta {
        /// The chunk.
        text: String,
    },
    /// A chunk of visible reasoning.
    ThinkingDelta {
        /// The chunk.
        text: String,
    },
    /// A chunk of a tool call's arguments (JSON text, possibly partial).
    ToolCallDelta {
        /// Position of the call in the response.
        index: usize,
        /// The call id, when this chunk carries it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The tool name, when this chunk carries it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The argument text chunk.
        arguments: String,
    },
    /// The attempt failed with a retryable error and another one starts after `wait_ms`
    /// (sent by [`RetryClient`](crate::RetryClient) before it waits; nothing was streamed yet).
    RetryScheduled {
        /// The retry about to be made, from 1.
        attempt: u32,
        /// How long it waits first, in milliseconds.
        wait_ms: u64,
        /// The failure's kind ([`ProviderError::kind`](crate::ProviderError::kind)).
        reason: String,
        /// The failure's message.
        message: String,
    },
    /// The call finished; the complete response.
    Completed {
        /// The response.
        response: ModelResponse,
    },
}

#[cfg(test)]
mod estimate_tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_estimates_match_the_estimate_of_the_serialized_text() {
        for value in [
            json!(null),
            json!({}),
            json!({"a": 2, "b": 3}),
            json!({"type": "object", "properties": {"q": {"type": "string", "description": "ünïcode"}}}),
            Value::Array(vec![json!("x"); 100]),
        ] {
            assert_eq!(estimate_json_tokens(&value), estimate_tokens(&value.to_string()), "{value}");
        }
    }
}

//! OpenAI Chat Completions: the wire format shared by [`OpenAiClient`] and the
//! OpenAI-compatible client, with the per-endpoint [`Quirks`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(feature = "openai")]
use std::time::Duration;

#[cfg(feature = "openai")]
use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::http::{self, Folded, KeyHeader, OutputMeter, Requested, StreamDecoder, Transport};
use crate::sse::SseEvent;
#[cfg(feature = "openai")]
use crate::{Capabilities, ModelClient, SecretString};
use crate::{
    FinishReason, Message, ModelRequest, ModelResponse, ModelStream, Pricing, ProviderError, StreamEvent,
    StructuredOutput, ToolCall, ToolChoice, Usage,
};

/// Which field carries the output token limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MaxTokensField {
    /// `max_completion_tokens` (OpenAI today; required by its reasoning models).
    MaxCompletionTokens,
    /// `max_tokens` (the original field, the one most compatible servers read).
    MaxTokens,
}

/// What a server speaking the Chat Completions wire format does differently from OpenAI.
///
/// ```
/// use kaos_providers::{MaxTokensField, Quirks, StructuredOutput};
/// let q = Quirks::for_base_url("http://localhost:11434/v1");
/// assert_eq!(q, Quirks::compatible());
/// assert!(q.stream_usage);
/// assert_eq!(q.max_tokens_field, MaxTokensField::MaxTokens);
/// assert!(!Quirks::compatible().with_stream_usage(false).stream_usage);
/// let custom = Quirks::compatible().with_structured_output(StructuredOutput::JsonMode);
/// assert_eq!(custom.structured_output, StructuredOutput::JsonMode);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Quirks {
    /// Whether to send `stream_options: {include_usage: true}`. On by default for every
    /// server: a server that rejects the field (a 4xx answer naming `stream_options`) is asked
    /// again without it, once per client. A stream that carries no usage is charged a
    /// conservative bound ([`ModelResponse::usage_estimated`]).
    pub stream_usage: bool,
    /// Which field carries the output token limit.
    pub max_tokens_field: MaxTokensField,
    /// How an output schema is sent: `JsonSchema` as `response_format: json_schema`,
    /// `JsonMode` as `json_object` (schema not enforced), `None` refuses such requests.
    pub structured_output: StructuredOutput,
}

impl Quirks {
    /// OpenAI itself.
    pub fn openai() -> Self {
        Self {
            stream_usage: true,
            max_tokens_field: MaxTokensField::MaxCompletionTokens,
            structured_output: StructuredOutput::JsonSchema,
        }
    }

    /// The default for other servers (Ollama, vLLM, llama.cpp server, LM Studio): streamed
    /// usage asked for, `max_tokens`, `json_schema` response format.
    pub fn compatible() -> Self {
        Self {
            stream_usage: true,
            max_tokens_field: MaxTokensField::MaxTokens,
            structured_output: StructuredOutput::JsonSchema,
        }
    }

    /// The known quirks of the server at `base_url`: today every server gets
    /// [`Quirks::compatible`] (Groq's usage in `x_groq.usage` is read without asking).
    pub fn for_base_url(base_url: &str) -> Self {
        let _ = base_url;
        Self::compatible()
    }

    /// With or without `stream_options.include_usage`.
    pub fn with_stream_usage(mut self, on: bool) -> Self {
        self.stream_usage = on;
        self
    }

    /// With the output token limit sent in `field`.
    pub fn with_max_tokens_field(mut self, field: MaxTokensField) -> Self {
        self.max_tokens_field = field;
        self
    }

    /// With this structured-output support.
    pub fn with_structured_output(mut self, mode: StructuredOutput) -> Self {
        self.structured_output = mode;
        self
    }
}

/// A Chat Completions endpoint: transport, pricing and quirks. Shared by the OpenAI and the
/// OpenAI-compatible clients.
#[derive(Debug, Clone)]
pub(crate) struct ChatCompletions {
    pub(crate) transport: Transport,
    pub(crate) pricing: Arc<Pricing>,
    pub(crate) quirks: Quirks,
    /// The `provider` prefix stripped from request models.
    pub(crate) provider: &'static str,
    /// Set once the server rejected `stream_options`: it is not sent again.
    stream_options_rejected: Arc<AtomicBool>,
    /// The output token limit sent when a request sets none.
    pub(crate) max_output_tokens: Option<u32>,
}

impl ChatCompletions {
    pub(crate) fn new(
        provider: &'static str,
        base_url: &str,
        api_key: Option<crate::SecretString>,
        quirks: Quirks,
    ) -> Self {
        Self {
            transport: Transport::new(base_url, api_key, KeyHeader::Bearer),
            pricing: Arc::new(Pricing::default()),
            quirks,
            provider,
            stream_options_rejected: Arc::new(AtomicBool::new(false)),
            max_output_tokens: None,
        }
    }

    /// The request body.
    pub(crate) fn body(&self, request: &ModelRequest, stream: bool) -> Result<Value, ProviderError> {
        let usage = self.quirks.stream_usage && !self.stream_options_rejected.load(Ordering::Relaxed);
        self.body_with(request, stream, usage)
    }

    fn body_with(&self, request: &ModelRequest, stream: bool, usage: bool) -> Result<Value, ProviderError> {
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        if !request.system.is_empty() {
            messages.push(json!({"role": "system", "content": request.system}));
        }
        for message in &request.messages {
            messages.push(match message {
                Message::User { content } => json!({"role": "user", "content": content}),
                Message::Assistant { content, tool_calls } if tool_calls.is_empty() => {
                    json!({"role": "assistant", "content": content})
                }
                Message::Assistant { content, tool_calls } => json!({
                    "role": "assistant",
                    "content": if content.is_empty() { Value::Null } else { json!(content) },
                    "tool_calls": tool_calls.iter().map(|c| json!({
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments.to_string()},
                    })).collect::<Vec<_>>(),
                }),
                Message::Tool { call_id, content, .. } => {
                    json!({"role": "tool", "tool_call_id": call_id, "content": content})
                }
            });
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(http::vendor_model(&request.model, self.provider)));
        body.insert("messages".into(), Value::Array(messages));
        if !request.tools.is_empty() {
            let tools = request
                .tools
                .iter()
                .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                .collect();
            body.insert("tools".into(), Value::Array(tools));
            body.insert(
                "tool_choice".into(),
                match &request.tool_choice {
                    ToolChoice::None => json!("none"),
                    ToolChoice::Required => json!("required"),
                    ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
                    _ => json!("auto"),
                },
            );
        }
        let sampling = &request.sampling;
        if let Some(t) = sampling.temperature {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(p) = sampling.top_p {
            body.insert("top_p".into(), json!(p));
        }
        if let Some(max) = sampling.max_output_tokens.or(self.max_output_tokens) {
            let field = match self.quirks.max_tokens_field {
                MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
                MaxTokensField::MaxTokens => "max_tokens",
            };
            body.insert(field.into(), json!(max));
        }
        if !sampling.stop.is_empty() {
            body.insert("stop".into(), json!(sampling.stop));
        }
        if let Some(schema) = &request.output_schema {
            let format = match self.quirks.structured_output {
                StructuredOutput::JsonSchema => {
                    let mut spec = json!({"name": "output", "schema": schema});
                    // Strict mode makes the server hold the answer to the schema; it accepts only
                    // schemas in its subset, so others are sent as they are.
                    if strict_compatible(schema) {
                        spec["strict"] = json!(true);
                    }
                    json!({"type": "json_schema", "json_schema": spec})
                }
                StructuredOutput::JsonMode => json!({"type": "json_object"}),
                _ => {
                    return Err(ProviderError::InvalidRequest {
                        message: format!("{} does not support structured output", self.provider),
                    });
                }
            };
            body.insert("response_format".into(), format);
        }
        if stream {
            body.insert("stream".into(), json!(true));
            if usage {
                body.insert("stream_options".into(), json!({"include_usage": true}));
            }
        }
        Ok(Value::Object(body))
    }

    pub(crate) async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        let body = self.body(request, false)?;
        let value = self.transport.post_json("/chat/completions", &body).await?;
        parse_response(value, &request.model).map(|f| f.into_response(&self.pricing, &Requested::of(request)))
    }

    pub(crate) fn stream<'a>(&'a self, request: &'a ModelRequest) -> ModelStream<'a> {
        let decoder = ChatStream::new(request, self.pricing.clone());
        let connect = async move {
            let body = self.body(request, true)?;
            match self.transport.post_sse("/chat/completions", &body).await {
                Err(ProviderError::InvalidRequest { message })
                    if body.get("stream_options").is_some() && message.contains("stream_options") =>
                {
                    // The server does not take `stream_options`: ask again without it, and
                    // never send it to this server again (its streams are then charged a bound).
                    tracing::warn!(%message, "the server rejects stream_options; streaming without usage");
                    self.stream_options_rejected.store(true, Ordering::Relaxed);
                    let body = self.body_with(request, true, false)?;
                    self.transport.post_sse("/chat/completions", &body).await
                }
                other => other,
            }
        };
        http::decode_stream(connect, decoder)
    }
}

/// Whether OpenAI's strict structured outputs accept `schema` as it is: every object lists all
/// of its properties as required and allows no others, and only keywords of the strict subset
/// appear.
pub(crate) fn strict_compatible(schema: &Value) -> bool {
    const KEYWORDS: &[&str] = &[
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "description",
        "title",
        "anyOf",
        "$defs",
        "$ref",
    ];
    let Value::Object(map) = schema else { return false };
    if !map.keys().all(|k| KEYWORDS.contains(&k.as_str())) {
        return false;
    }
    let is_object = map.get("type") == Some(&json!("object")) || map.contains_key("properties");
    if is_object {
        let properties = map.get("properties").and_then(Value::as_object);
        let required: Option<Vec<&str>> = map
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect());
        let names: Vec<&str> = properties.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
        let all_required =
            required.is_some_and(|r| r.len() == names.len() && names.iter().all(|n| r.contains(n)));
        if map.get("additionalProperties") != Some(&Value::Bool(false)) || !all_required {
            return false;
        }
    }
    let nested = map.get("properties").and_then(Value::as_object).into_iter().flat_map(|p| p.values());
    let defs = map.get("$defs").and_then(Value::as_object).into_iter().flat_map(|d| d.values());
    let any_of = map.get("anyOf").and_then(Value::as_array).into_iter().flatten();
    let mut children = nested.chain(defs).chain(any_of).chain(map.get("items"));
    children.all(strict_compatible)
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::Stop,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "length" => FinishReason::Length,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// Normalized usage: OpenAI's `prompt_tokens` include the cached ones, so they are moved
/// out of `input_tokens` into `cached_input_tokens`. Groq puts usage in `x_groq.usage`.
fn usage(value: &Value) -> Option<Usage> {
    let usage = value
        .get("usage")
        .filter(|u| u.is_object())
        .or_else(|| value.get("x_groq").and_then(|x| x.get("usage")).filter(|u| u.is_object()))?;
    let prompt = http::count(usage, "prompt_tokens");
    let cached =
        usage.get("prompt_tokens_details").map_or(0, |d| http::count(d, "cached_tokens")).min(prompt);
    let reasoning = usage.get("completion_tokens_details").map_or(0, |d| http::count(d, "reasoning_tokens"));
    Some(Usage {
        input_tokens: prompt - cached,
        output_tokens: http::count(usage, "completion_tokens"),
        cached_input_tokens: cached,
        reasoning_tokens: reasoning,
    })
}

/// An `error` object inside a 200 answer or a stream.
fn body_error(error: &Value) -> ProviderError {
    let message = error.get("message").and_then(Value::as_str).unwrap_or("unknown error").to_owned();
    let kind = [error.get("type"), error.get("code")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    let status = if kind.contains("rate_limit") {
        429
    } else if kind.contains("server_error") || kind.contains("overloaded") {
        500
    } else if kind.contains("context_length") {
        413
    } else if kind.contains("invalid_api_key") || kind.contains("authentication") {
        401
    } else {
        400
    };
    ProviderError::from_http_status(status, message, None)
}

fn parse_response(value: Value, requested: &str) -> Result<Folded, ProviderError> {
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        return Err(body_error(error));
    }
    let malformed =
        |what: &str| ProviderError::MalformedResponse { message: format!("chat completion without {what}") };
    let choice = value.get("choices").and_then(|c| c.get(0)).ok_or_else(|| malformed("choices"))?;
    let message = choice.get("message").ok_or_else(|| malformed("a message"))?;
    let text = message.get("content").and_then(Value::as_str).unwrap_or_default().to_owned();
    let thinking = ["reasoning_content", "reasoning"]
        .iter()
        .find_map(|k| message.get(*k).and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned();
    let mut tool_calls = Vec::new();
    for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let function = call.get("function").ok_or_else(|| malformed("a tool call function"))?;
        let name =
            function.get("name").and_then(Value::as_str).ok_or_else(|| malformed("a tool call name"))?;
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("call_{}", tool_calls.len()), str::to_owned);
        let arguments = match function.get("arguments") {
            Some(Value::String(text)) => http::parse_arguments(text),
            Some(other) => other.clone(),
            None => json!({}),
        };
        tool_calls.push(ToolCall::new(id, name, arguments));
    }
    let reason =
        choice.get("finish_reason").and_then(Value::as_str).map_or(FinishReason::Stop, finish_reason);
    Ok(Folded {
        text,
        thinking,
        tool_calls,
        finish_reason: reason,
        usage: usage(&value),
        model: value.get("model").and_then(Value::as_str).unwrap_or(requested).to_owned(),
        raw: Some(value),
    })
}

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// The fold of a Chat Completions stream. Output deltas past the limit sent are not read: the
/// stream is cut there and charged a bound.
struct ChatStream {
    pricing: Arc<Pricing>,
    requested: Requested,
    meter: OutputMeter,
    model: String,
    text: String,
    thinking: String,
    calls: Vec<PartialCall>,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
}

impl ChatStream {
    fn new(request: &ModelRequest, pricing: Arc<Pricing>) -> Self {
        let requested = Requested::of(request);
        Self {
            pricing,
            meter: OutputMeter::new(&requested),
            requested,
            model: request.model.clone(),
            text: String::new(),
            thinking: String::new(),
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
        }
    }
}

impl ChatStream {
    /// Stops reading at the output limit: the response ends here, as if the server had
    /// stopped at the limit (`length`). Returns `true`: the rest of the stream is not read.
    fn cut(&mut self) -> bool {
        tracing::warn!(model = %self.model, "the server streamed past the output limit it was sent; stopped reading at the limit");
        self.finish_reason = Some(FinishReason::Length);
        true
    }
}

impl StreamDecoder for ChatStream {
    fn on_event(&mut self, event: SseEvent, out: &mut Vec<StreamEvent>) -> Result<bool, ProviderError> {
        if event.data.trim() == "[DONE]" {
            return Ok(true);
        }
        let value = http::parse_event(&event)?;
        if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
            return Err(body_error(error));
        }
        if let Some(model) = value.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()) {
            self.model = model.to_owned();
        }
        if let Some(usage) = usage(&value) {
            self.usage = Some(usage);
        }
        let Some(choice) = value.get("choices").and_then(|c| c.get(0)) else { return Ok(false) };
        if let Some(delta) = choice.get("delta") {
            let thinking =
                ["reasoning_content", "reasoning"].iter().find_map(|k| delta.get(*k).and_then(Value::as_str));
            if let Some(text) = thinking.filter(|t| !t.is_empty()) {
                if !self.meter.admit() {
                    return Ok(self.cut());
                }
                self.thinking.push_str(text);
                out.push(StreamEvent::ThinkingDelta { text: text.to_owned() });
            }
            if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                if !self.meter.admit() {
                    return Ok(self.cut());
                }
                self.text.push_str(text);
                out.push(StreamEvent::TextDelta { text: text.to_owned() });
            }
            for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                if !self.meter.admit() {
                    return Ok(self.cut());
                }
                let id = call.get("id").and_then(Value::as_str).filter(|s| !s.is_empty());
                let index = match call.get("index").and_then(Value::as_u64) {
                    Some(i) => i as usize,
                    // Servers that omit the index send each call whole, or start one with its id.
                    None if id.is_some() || self.calls.is_empty() => self.calls.len(),
                    None => self.calls.len() - 1,
                };
                if self.calls.len() <= index {
                    self.calls.resize_with(index + 1, PartialCall::default);
                }
                let function = call.get("function");
                let name =
                    function.and_then(|f| f.get("name")).and_then(Value::as_str).filter(|s| !s.is_empty());
                let arguments = match function.and_then(|f| f.get("arguments")) {
                    Some(Value::String(text)) => text.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                let partial = &mut self.calls[index];
                if let Some(id) = id {
                    partial.id = id.to_owned();
                }
                if let Some(name) = name {
                    partial.name.push_str(name);
                }
                partial.arguments.push_str(&arguments);
                out.push(StreamEvent::ToolCallDelta {
                    index,
                    id: id.map(str::to_owned),
                    name: name.map(str::to_owned),
                    arguments,
                });
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(finish_reason(reason));
        }
        Ok(false)
    }

    fn finish(self) -> Result<ModelResponse, ProviderError> {
        let finish_reason = self.finish_reason.ok_or_else(http::truncated)?;
        // A cut stream's usage, if any came early, is not the whole call's: charge the bound.
        let usage = if self.meter.is_cut() { None } else { self.usage };
        let tool_calls = self
            .calls
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let id = if c.id.is_empty() { format!("call_{i}") } else { c.id };
                ToolCall::new(id, c.name, http::parse_arguments(&c.arguments))
            })
            .collect();
        let folded = Folded {
            text: self.text,
            thinking: self.thinking,
            tool_calls,
            finish_reason,
            usage,
            model: self.model,
            raw: None,
        };
        Ok(folded.into_response(&self.pricing, &self.requested))
    }
}

/// The OpenAI Chat Completions client (`openai:<model>`).
///
/// Streams over SSE with usage (`stream_options.include_usage`), sends tools with parallel
/// calls allowed, structured output as `response_format: json_schema`, and prices every
/// response with its [`Pricing`]. It does not retry: wrap it in a
/// [`RetryClient`](crate::RetryClient). The key is a [`SecretString`] and never printed.
///
/// ```
/// use kaos_providers::{OpenAiClient, SecretString};
/// let client = OpenAiClient::new(SecretString::from("sk-test")).with_base_url("http://127.0.0.1:9/v1");
/// assert!(!format!("{client:?}").contains("sk-test"));
/// ```
#[cfg(feature = "openai")]
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    chat: ChatCompletions,
}

#[cfg(feature = "openai")]
impl OpenAiClient {
    /// The default API base URL.
    pub const BASE_URL: &'static str = "https://api.openai.com/v1";

    /// A client of the OpenAI API with this key and the shipped prices.
    pub fn new(api_key: impl Into<SecretString>) -> Self {
        Self { chat: ChatCompletions::new("openai", Self::BASE_URL, Some(api_key.into()), Quirks::openai()) }
    }

    /// With another base URL (a proxy, a test server); `/chat/completions` is appended.
    pub fn with_base_url(mut self, base_url: &str) -> Self {
        self.chat.transport = self.chat.transport.with_base_url(base_url);
        self
    }

    /// With these prices (e.g. [`Pricing::merged_over`] the defaults).
    pub fn with_pricing(mut self, pricing: Pricing) -> Self {
        self.chat.pricing = Arc::new(pricing);
        self
    }

    /// With this time limit for a whole non-streaming call and for each read of a stream.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.chat.transport = self.chat.transport.with_timeout(timeout);
        self
    }

    /// With an `OpenAI-Organization` header.
    pub fn with_organization(mut self, organization: impl Into<String>) -> Self {
        self.chat.transport = self.chat.transport.with_header("openai-organization", organization);
        self
    }

    /// With an `OpenAI-Project` header.
    pub fn with_project(mut self, project: impl Into<String>) -> Self {
        self.chat.transport = self.chat.transport.with_header("openai-project", project);
        self
    }

    /// With this output token limit (`max_completion_tokens`) on requests that set none.
    pub fn with_max_output_tokens(mut self, max: u32) -> Self {
        self.chat.max_output_tokens = Some(max);
        self
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.chat.transport.base_url
    }
}

#[cfg(feature = "openai")]
#[async_trait]
impl ModelClient for OpenAiClient {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            context_window: 128_000,
            max_output_tokens: 16_384,
            native_tools: true,
            parallel_tool_calls: true,
            structured_output: StructuredOutput::JsonSchema,
            streaming: true,
        }
    }

    fn price(&self, model: &str) -> Option<crate::ModelPrice> {
        self.chat.pricing.price(http::vendor_model(model, self.chat.provider)).copied()
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        self.chat.complete(request).await
    }

    fn stream<'a>(&'a self, request: &'a ModelRequest) -> ModelStream<'a> {
        self.chat.stream(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_closed_fully_required_schemas_of_the_strict_subset_are_strict() {
        let closed = json!({
            "type": "object",
            "properties": {
                "answer": {"type": "string"},
                "claims": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"quote": {"type": "string"}, "source": {"type": ["string", "null"]}},
                    "required": ["quote", "source"],
                    "additionalProperties": false
                }}
            },
            "required": ["answer", "claims"],
            "additionalProperties": false
        });
        assert!(strict_compatible(&closed));
        let mut open_inner = closed.clone();
        open_inner["properties"]["claims"]["items"]["additionalProperties"] = json!(true);
        let mut optional = closed.clone();
        optional["required"] = json!(["answer"]);
        let mut unsupported = closed.clone();
        unsupported["properties"]["answer"]["minLength"] = json!(1);
        for schema in [open_inner, optional, unsupported, json!(true), json!({"type": "object"})] {
            assert!(!strict_compatible(&schema), "{schema}");
        }
        assert!(strict_compatible(&json!({"type": "string", "enum": ["a", "b"]})));
    }
}

//! Anthropic Messages API.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::http::{self, Folded, KeyHeader, Requested, StreamDecoder, Transport};
use crate::sse::SseEvent;
use crate::{
    Capabilities, FinishReason, Message, ModelClient, ModelRequest, ModelResponse, ModelStream, Pricing,
    ProviderError, SecretString, StreamEvent, StructuredOutput, ToolCall, ToolChoice, Usage,
};

/// The API version header value.
const API_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; this is sent when the request does not set one.
const DEFAULT_MAX_TOKENS: u32 = 4_096;
/// The tool that carries structured output (Anthropic answers in JSON through a forced tool).
const OUTPUT_TOOL: &str = "structured_output";

/// The Anthropic Messages client (`anthropic:<model>`).
///
/// The system prompt goes in `system`, tool calls and results become `tool_use` /
/// `tool_result` blocks (consecutive results merged into one user turn), thinking blocks
/// come back as [`ModelResponse::thinking`], and usage is normalized: cache reads are
/// `cached_input_tokens`, cache writes are priced as input. Structured output uses a forced
/// tool whose input is the answer, returned as the response text. It does not retry: wrap it in a
/// [`RetryClient`](crate::RetryClient).
///
/// ```
/// use kaos_providers::{AnthropicClient, SecretString};
/// let client = AnthropicClient::new(SecretString::from("sk-ant-test"));
/// assert!(!format!("{client:?}").contains("sk-ant-test"));
/// ```
#[derive(Debug, Clone)]
pub struct AnthropicClient {
    transport: Transport,
    pricing: Arc<Pricing>,
    max_output_tokens: u32,
}

impl AnthropicClient {
    /// The default API base URL.
    pub const BASE_URL: &'static str = "https://api.anthropic.com";

    /// A client of the Anthropic API with this key and the shipped prices.
    pub fn new(api_key: impl Into<SecretString>) -> Self {
        let transport = Transport::new(Self::BASE_URL, Some(api_key.into()), KeyHeader::Named("x-api-key"))
            .with_header("anthropic-version", API_VERSION);
        Self { transport, pricing: Arc::new(Pricing::default()), max_output_tokens: DEFAULT_MAX_TOKENS }
    }

    /// With another base URL; `/v1/messages` is appended.
    pub fn with_base_url(mut self, base_url: &str) -> Self {
        self.transport = self.transport.with_base_url(base_url);
        self
    }

    /// With this output token limit (`max_tokens`, which Anthropic requires) on requests
    /// that set none [4,096].
    pub fn with_max_output_tokens(mut self, max: u32) -> Self {
        self.max_output_tokens = max;
        self
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.transport.base_url
    }

    /// With these prices.
    pub fn with_pricing(mut self, pricing: Pricing) -> Self {
        self.pricing = Arc::new(pricing);
        self
    }

    /// With this time limit for a whole non-streaming call and for each read of a stream.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.transport = self.transport.with_timeout(timeout);
        self
    }

    fn body(&self, request: &ModelRequest, stream: bool) -> Value {
        let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
        for message in &request.messages {
            let (role, blocks) = match message {
                Message::User { content } => ("user", vec![json!({"type": "text", "text": content})]),
                Message::Assistant { content, tool_calls } => {
                    let mut blocks = Vec::new();
                    if !content.is_empty() {
                        blocks.push(json!({"type": "text", "text": content}));
                    }
                    blocks.extend(tool_calls.iter().map(
                        |c| json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}),
                    ));
                    ("assistant", blocks)
                }
                Message::Tool { call_id, content, is_error, .. } => {
                    let mut block =
                        json!({"type": "tool_result", "tool_use_id": call_id, "content": content});
                    if *is_error {
                        block["is_error"] = json!(true);
                    }
                    ("user", vec![block])
                }
            };
            // Roles must alternate: blocks of consecutive same-role messages form one turn.
            match turns.last_mut() {
                Some((last, existing)) if *last == role => existing.extend(blocks),
                _ => turns.push((role, blocks)),
            }
        }
        let messages: Vec<Value> =
            turns.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect();

        let mut body = Map::new();
        body.insert("model".into(), json!(http::vendor_model(&request.model, "anthropic")));
        body.insert(
            "max_tokens".into(),
            json!(request.sampling.max_output_tokens.unwrap_or(self.max_output_tokens)),
        );
        if !request.system.is_empty() {
            body.insert("system".into(), json!(request.system));
        }
        body.insert("messages".into(), Value::Array(messages));
        let mut tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
        let mut tool_choice = match &request.tool_choice {
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
            _ => json!({"type": "auto"}),
        };
        if let Some(schema) = &request.output_schema {
            tools.push(json!({"name": OUTPUT_TOOL, "description": "Give the final answer as this JSON.", "input_schema": schema}));
            if request.tools.is_empty() {
                tool_choice = json!({"type": "tool", "name": OUTPUT_TOOL});
            }
        }
        if !tools.is_empty() {
            body.insert("tools".into(), Value::Array(tools));
            body.insert("tool_choice".into(), tool_choice);
        }
        let sampling = &request.sampling;
        if let Some(t) = sampling.temperature {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(p) = sampling.top_p {
            body.insert("top_p".into(), json!(p));
        }
        if !sampling.stop.is_empty() {
            body.insert("stop_sequences".into(), json!(sampling.stop));
        }
        if stream {
            body.insert("stream".into(), json!(true));
        }
        Value::Object(body)
    }
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "tool_use" => FinishReason::ToolCalls,
        "max_tokens" => FinishReason::Length,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// Normalized usage: Anthropic's `input_tokens` exclude cache reads and writes. Reads are
/// `cached_input_tokens`; writes are counted (and priced) as input.
fn usage(usage: &Value) -> Usage {
    Usage {
        input_tokens: http::count(usage, "input_tokens") + http::count(usage, "cache_creation_input_tokens"),
        output_tokens: http::count(usage, "output_tokens"),
        cached_input_tokens: http::count(usage, "cache_read_input_tokens"),
        reasoning_tokens: 0,
    }
}

/// An `error` event or body: `{"type": "error", "error": {"type": "overloaded_error", "message": …}}`.
fn body_error(value: &Value) -> ProviderError {
    let error = value.get("error").unwrap_or(value);
    let message = error.get("message").and_then(Value::as_str).unwrap_or("unknown error").to_owned();
    let status = match error.get("type").and_then(Value::as_str).unwrap_or_default() {
        "authentication_error" => 401,
        "permission_error" => 403,
        "rate_limit_error" => 429,
        "request_too_large" => 413,
        "overloaded_error" => 529,
        "api_error" => 500,
        _ => 400,
    };
    ProviderError::from_http_status(status, message, None)
}

/// Text and calls of a response, with a structured-output tool call turned into the text.
fn fold_blocks(text: String, calls: Vec<ToolCall>) -> (String, Vec<ToolCall>) {
    let (output, calls): (Vec<ToolCall>, Vec<ToolCall>) =
        calls.into_iter().partition(|c| c.name == OUTPUT_TOOL);
    match output.into_iter().next() {
        Some(answer) => (answer.arguments.to_string(), calls),
        None => (text, calls),
    }
}

fn parse_response(value: Value, requested: &str) -> Result<Folded, ProviderError> {
    if value.get("type").and_then(Value::as_str) == Some("error") {
        return Err(body_error(&value));
    }
    let blocks = value
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::MalformedResponse { message: "message without content".into() })?;
    let (mut text, mut thinking, mut calls) = (String::new(), String::new(), Vec::new());
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("thinking") => {
                thinking.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or_default())
            }
            Some("tool_use") => calls.push(ToolCall::new(
                block.get("id").and_then(Value::as_str).unwrap_or_default(),
                block.get("name").and_then(Value::as_str).unwrap_or_default(),
                block.get("input").cloned().unwrap_or_else(|| json!({})),
            )),
            _ => {}
        }
    }
    let had_output_tool = calls.iter().any(|c| c.name == OUTPUT_TOOL);
    let (text, tool_calls) = fold_blocks(text, calls);
    let mut reason =
        value.get("stop_reason").and_then(Value::as_str).map_or(FinishReason::Stop, finish_reason);
    if had_output_tool && tool_calls.is_empty() {
        reason = FinishReason::Stop;
    }
    Ok(Folded {
        text,
        thinking,
        tool_calls,
        finish_reason: reason,
        usage: value.get("usage").map(usage),
        model: value.get("model").and_then(Value::as_str).unwrap_or(requested).to_owned(),
        raw: Some(value),
    })
}

enum Block {
    Text,
    Thinking,
    Tool { index: usize },
    Other,
}

/// The fold of a Messages stream.
struct MessagesStream {
    pricing: Arc<Pricing>,
    requested: Requested,
    model: String,
    text: String,
    thinking: String,
    blocks: Vec<Block>,
    calls: Vec<(String, String, String)>,
    usage: Option<Usage>,
    finish_reason: Option<FinishReason>,
    stopped: bool,
}

impl StreamDecoder for MessagesStream {
    fn on_event(&mut self, event: SseEvent, out: &mut Vec<StreamEvent>) -> Result<bool, ProviderError> {
        let value = http::parse_event(&event)?;
        let kind = value.get("type").and_then(Value::as_str).or(event.event.as_deref()).unwrap_or_default();
        let index = value.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
        match kind {
            "message_start" => {
                let message = value.get("message").cloned().unwrap_or_default();
                if let Some(model) = message.get("model").and_then(Value::as_str) {
                    self.model = model.to_owned();
                }
                self.usage = message.get("usage").map(usage);
            }
            "content_block_start" => {
                let block = value.get("content_block").cloned().unwrap_or_default();
                let kind = match block.get("type").and_then(Value::as_str) {
                    Some("text") => Block::Text,
                    Some("thinking") => Block::Thinking,
                    Some("tool_use") => {
                        let id = block.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                        let name = block.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
                        let call = self.calls.len();
                        if name != OUTPUT_TOOL {
                            out.push(StreamEvent::ToolCallDelta {
                                index: call,
                                id: Some(id.clone()),
                                name: Some(name.clone()),
                                arguments: String::new(),
                            });
                        }
                        self.calls.push((id, name, String::new()));
                        Block::Tool { index: call }
                    }
                    _ => Block::Other,
                };
                if self.blocks.len() <= index {
                    self.blocks.resize_with(index + 1, || Block::Other);
                }
                self.blocks[index] = kind;
            }
            "content_block_delta" => {
                let delta = value.get("delta").cloned().unwrap_or_default();
                let piece =
                    |field: &str| delta.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
                match (self.blocks.get(index), delta.get("type").and_then(Value::as_str)) {
                    (Some(Block::Text), Some("text_delta")) => {
                        let text = piece("text");
                        self.text.push_str(&text);
                        out.push(StreamEvent::TextDelta { text });
                    }
                    (Some(Block::Thinking), Some("thinking_delta")) => {
                        let text = piece("thinking");
                        self.thinking.push_str(&text);
                        out.push(StreamEvent::ThinkingDelta { text });
                    }
                    (Some(Block::Tool { index }), Some("input_json_delta")) => {
                        let chunk = piece("partial_json");
                        if let Some(call) = self.calls.get_mut(*index) {
                            call.2.push_str(&chunk);
                            if call.1 == OUTPUT_TOOL {
                                self.text.push_str(&chunk);
                                out.push(StreamEvent::TextDelta { text: chunk });
                            } else {
                                out.push(StreamEvent::ToolCallDelta {
                                    index: *index,
                                    id: None,
                                    name: None,
                                    arguments: chunk,
                                });
                            }
                        }
                    }
                    _ => {} // signature deltas, unknown block kinds
                }
            }
            "message_delta" => {
                if let Some(reason) =
                    value.get("delta").and_then(|d| d.get("stop_reason")).and_then(Value::as_str)
                {
                    self.finish_reason = Some(finish_reason(reason));
                }
                if let Some(delta_usage) = value.get("usage") {
                    let mut total = self.usage.unwrap_or_default();
                    total.output_tokens = http::count(delta_usage, "output_tokens");
                    // Newer API versions repeat the input counts in the final delta.
                    if delta_usage.get("input_tokens").is_some() {
                        let input = usage(delta_usage);
                        total.input_tokens = input.input_tokens;
                        total.cached_input_tokens = input.cached_input_tokens;
                    }
                    self.usage = Some(total);
                }
            }
            "message_stop" => {
                self.stopped = true;
                return Ok(true);
            }
            "error" => return Err(body_error(&value)),
            _ => {} // ping, content_block_stop
        }
        Ok(false)
    }

    fn finish(self) -> Result<ModelResponse, ProviderError> {
        if !self.stopped {
            return Err(http::truncated());
        }
        let calls: Vec<ToolCall> = self
            .calls
            .into_iter()
            .map(|(id, name, arguments)| ToolCall::new(id, name, http::parse_arguments(&arguments)))
            .collect();
        let had_output_tool = calls.iter().any(|c| c.name == OUTPUT_TOOL);
        let (text, tool_calls) = if had_output_tool {
            let (_, rest) = fold_blocks(String::new(), calls);
            (self.text, rest)
        } else {
            (self.text, calls)
        };
        let mut reason = self.finish_reason.unwrap_or_default();
        if had_output_tool && tool_calls.is_empty() {
            reason = FinishReason::Stop;
        }
        let folded = Folded {
            text,
            thinking: self.thinking,
            tool_calls,
            finish_reason: reason,
            usage: self.usage,
            model: self.model,
            raw: None,
        };
        Ok(folded.into_response(&self.pricing, &self.requested))
    }
}

#[async_trait]
impl ModelClient for AnthropicClient {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            context_window: 200_000,
            max_output_tokens: 64_000,
            native_tools: true,
            parallel_tool_calls: true,
            structured_output: StructuredOutput::JsonSchema,
            streaming: true,
        }
    }

    fn price(&self, model: &str) -> Option<crate::ModelPrice> {
        self.pricing.price(http::vendor_model(model, "anthropic")).copied()
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        let value = self.transport.post_json("/v1/messages", &self.body(request, false)).await?;
        parse_response(value, &request.model).map(|f| f.into_response(&self.pricing, &Requested::of(request)))
    }

    fn stream<'a>(&'a self, request: &'a ModelRequest) -> ModelStream<'a> {
        let decoder = MessagesStream {
            pricing: self.pricing.clone(),
            requested: Requested::of(request),
            model: request.model.clone(),
            text: String::new(),
            thinking: String::new(),
            blocks: Vec::new(),
            calls: Vec::new(),
            usage: None,
            finish_reason: None,
            stopped: false,
        };
        let connect = async move { self.transport.post_sse("/v1/messages", &self.body(request, true)).await };
        http::decode_stream(connect, decoder)
    }
}

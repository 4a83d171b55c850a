//! Google Gemini `generateContent` / `streamGenerateContent`.

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

/// The Google Gemini client (`gemini:<model>`), over the Generative Language API.
///
/// The system prompt is `systemInstruction`, tools are `functionDeclarations` (their JSON
/// Schema sent as `parametersJsonSchema`), tool results are `functionResponse` parts,
/// structured output is `responseMimeType: application/json` with `responseJsonSchema`, and
/// streaming uses `streamGenerateContent?alt=sse`. Usage is normalized: the cached part of
/// `promptTokenCount` is `cached_input_tokens`, and thinking tokens (reported apart from
/// the candidates) are added to the output as `reasoning_tokens`. The key is sent in the
/// `x-goog-api-key` header, never in the URL. Gemini gives calls no ids unless it sends
/// them, so calls are numbered `call_<i>`.
///
/// ```
/// use kaos_providers::{GeminiClient, SecretString};
/// let client = GeminiClient::new(SecretString::from("AIza-test"));
/// assert!(!format!("{client:?}").contains("AIza-test"));
/// ```
#[derive(Debug, Clone)]
pub struct GeminiClient {
    transport: Transport,
    pricing: Arc<Pricing>,
    max_output_tokens: Option<u32>,
}

impl GeminiClient {
    /// The default API base URL.
    pub const BASE_URL: &'static str = "https://generativelanguage.googleapis.com/v1beta";

    /// A client of the Gemini API with this key and the shipped prices.
    pub fn new(api_key: impl Into<SecretString>) -> Self {
        let transport =
            Transport::new(Self::BASE_URL, Some(api_key.into()), KeyHeader::Named("x-goog-api-key"));
        Self { transport, pricing: Arc::new(Pricing::default()), max_output_tokens: None }
    }

    /// With another base URL; `/models/<model>:generateContent` is appended.
    pub fn with_base_url(mut self, base_url: &str) -> Self {
        self.transport = self.transport.with_base_url(base_url);
        self
    }

    /// With this output token limit (`maxOutputTokens`) on requests that set none.
    pub fn with_max_output_tokens(mut self, max: u32) -> Self {
        self.max_output_tokens = Some(max);
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

    fn body(&self, request: &ModelRequest) -> Value {
        let mut contents: Vec<(&str, Vec<Value>)> = Vec::new();
        for message in &request.messages {
            let (role, parts) = match message {
                Message::User { content } => ("user", vec![json!({"text": content})]),
                Message::Assistant { content, tool_calls } => {
                    let mut parts = Vec::new();
                    if !content.is_empty() {
                        parts.push(json!({"text": content}));
                    }
                    parts.extend(
                        tool_calls
                            .iter()
                            .map(|c| json!({"functionCall": {"name": c.name, "args": c.arguments}})),
                    );
                    ("model", parts)
                }
                Message::Tool { name, content, is_error, .. } => {
                    let response =
                        if *is_error { json!({"error": content}) } else { json!({"content": content}) };
                    ("user", vec![json!({"functionResponse": {"name": name, "response": response}})])
                }
            };
            match contents.last_mut() {
                Some((last, existing)) if *last == role => existing.extend(parts),
                _ => contents.push((role, parts)),
            }
        }
        let mut body = Map::new();
        if !request.system.is_empty() {
            body.insert("systemInstruction".into(), json!({"parts": [{"text": request.system}]}));
        }
        body.insert(
            "contents".into(),
            Value::Array(
                contents.into_iter().map(|(role, parts)| json!({"role": role, "parts": parts})).collect(),
            ),
        );
        if !request.tools.is_empty() {
            let declarations: Vec<Value> = request
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "parametersJsonSchema": t.parameters}))
                .collect();
            body.insert("tools".into(), json!([{"functionDeclarations": declarations}]));
            let config = match &request.tool_choice {
                ToolChoice::None => json!({"mode": "NONE"}),
                ToolChoice::Required => json!({"mode": "ANY"}),
                ToolChoice::Tool(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
                _ => json!({"mode": "AUTO"}),
            };
            body.insert("toolConfig".into(), json!({"functionCallingConfig": config}));
        }
        let sampling = &request.sampling;
        let mut generation = Map::new();
        if let Some(t) = sampling.temperature {
            generation.insert("temperature".into(), json!(t));
        }
        if let Some(p) = sampling.top_p {
            generation.insert("topP".into(), json!(p));
        }
        if let Some(max) = sampling.max_output_tokens.or(self.max_output_tokens) {
            generation.insert("maxOutputTokens".into(), json!(max));
        }
        if !sampling.stop.is_empty() {
            generation.insert("stopSequences".into(), json!(sampling.stop));
        }
        if let Some(schema) = &request.output_schema {
            generation.insert("responseMimeType".into(), json!("application/json"));
            generation.insert("responseJsonSchema".into(), schema.clone());
        }
        if !generation.is_empty() {
            body.insert("generationConfig".into(), Value::Object(generation));
        }
        Value::Object(body)
    }

    fn path(request: &ModelRequest, method: &str) -> String {
        format!("/models/{}:{method}", http::vendor_model(&request.model, "gemini"))
    }
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// Normalized usage: `promptTokenCount` includes `cachedContentTokenCount`; thinking tokens
/// are reported apart from `candidatesTokenCount` and added to the output.
fn usage(metadata: &Value) -> Usage {
    let prompt = http::count(metadata, "promptTokenCount");
    let cached = http::count(metadata, "cachedContentTokenCount").min(prompt);
    let thoughts = http::count(metadata, "thoughtsTokenCount");
    Usage {
        input_tokens: prompt - cached,
        output_tokens: http::count(metadata, "candidatesTokenCount") + thoughts,
        cached_input_tokens: cached,
        reasoning_tokens: thoughts,
    }
}

/// A Gemini error body; an invalid key is a 400 there, classified as `Auth` here.
fn classify(error: ProviderError) -> ProviderError {
    match error {
        ProviderError::InvalidRequest { message }
            if message.contains("API key not valid") || message.contains("API_KEY_INVALID") =>
        {
            ProviderError::Auth { message }
        }
        other => other,
    }
}

/// The fold of one or more `GenerateContentResponse` chunks (a non-streaming answer is one).
struct Candidates {
    pricing: Arc<Pricing>,
    requested: Requested,
    model: String,
    text: String,
    thinking: String,
    calls: Vec<ToolCall>,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
}

impl Candidates {
    fn new(request: &ModelRequest, pricing: Arc<Pricing>) -> Self {
        Self {
            pricing,
            requested: Requested::of(request),
            model: request.model.clone(),
            text: String::new(),
            thinking: String::new(),
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
        }
    }

    fn absorb(&mut self, chunk: &Value, out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        if let Some(error) = chunk.get("error") {
            let message = error.get("message").and_then(Value::as_str).unwrap_or("unknown error").to_owned();
            let status = error.get("code").and_then(Value::as_u64).unwrap_or(500) as u16;
            return Err(classify(ProviderError::from_http_status(status, message, None)));
        }
        if let Some(model) = chunk.get("modelVersion").and_then(Value::as_str) {
            self.model = model.to_owned();
        }
        if let Some(metadata) = chunk.get("usageMetadata") {
            self.usage = Some(usage(metadata));
        }
        if let Some(reason) =
            chunk.get("promptFeedback").and_then(|f| f.get("blockReason")).and_then(Value::as_str)
        {
            self.finish_reason = Some(FinishReason::ContentFilter);
            tracing::warn!(reason, "Gemini blocked the prompt");
        }
        let Some(candidate) = chunk.get("candidates").and_then(|c| c.get(0)) else { return Ok(()) };
        let parts = candidate.get("content").and_then(|c| c.get("parts")).and_then(Value::as_array);
        for part in parts.into_iter().flatten() {
            if let Some(call) = part.get("functionCall") {
                let index = self.calls.len();
                let id = call
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("call_{index}"), str::to_owned);
                let name = call.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
                let arguments = call.get("args").cloned().unwrap_or_else(|| json!({}));
                out.push(StreamEvent::ToolCallDelta {
                    index,
                    id: Some(id.clone()),
                    name: Some(name.clone()),
                    arguments: arguments.to_string(),
                });
                self.calls.push(ToolCall::new(id, name, arguments));
            } else if let Some(text) = part.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                if part.get("thought").and_then(Value::as_bool) == Some(true) {
                    self.thinking.push_str(text);
                    out.push(StreamEvent::ThinkingDelta { text: text.to_owned() });
                } else {
                    self.text.push_str(text);
                    out.push(StreamEvent::TextDelta { text: text.to_owned() });
                }
            }
        }
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
            self.finish_reason = Some(finish_reason(reason));
        }
        Ok(())
    }

    fn into_response(self, raw: Option<Value>) -> Result<ModelResponse, ProviderError> {
        let finish_reason = self.finish_reason.ok_or_else(http::truncated)?;
        let folded = Folded {
            text: self.text,
            thinking: self.thinking,
            tool_calls: self.calls,
            finish_reason,
            usage: self.usage,
            model: self.model,
            raw,
        };
        Ok(folded.into_response(&self.pricing, &self.requested))
    }
}

impl StreamDecoder for Candidates {
    fn on_event(&mut self, event: SseEvent, out: &mut Vec<StreamEvent>) -> Result<bool, ProviderError> {
        let chunk = http::parse_event(&event)?;
        self.absorb(&chunk, out)?;
        Ok(false) // usage may follow the finish reason: read to the end
    }

    fn finish(self) -> Result<ModelResponse, ProviderError> {
        self.into_response(None)
    }
}

#[async_trait]
impl ModelClient for GeminiClient {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            context_window: 1_048_576,
            max_output_tokens: 65_536,
            native_tools: true,
            parallel_tool_calls: true,
            structured_output: StructuredOutput::JsonSchema,
            streaming: true,
        }
    }

    fn price(&self, model: &str) -> Option<crate::ModelPrice> {
        self.pricing.price(http::vendor_model(model, "gemini")).copied()
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        let value = self
            .transport
            .post_json(&Self::path(request, "generateContent"), &self.body(request))
            .await
            .map_err(classify)?;
        let mut folded = Candidates::new(request, self.pricing.clone());
        folded.absorb(&value, &mut Vec::new())?;
        if folded.finish_reason.is_none() {
            return Err(ProviderError::MalformedResponse {
                message: "generateContent answer without a finish reason".into(),
            });
        }
        folded.into_response(Some(value))
    }

    fn stream<'a>(&'a self, request: &'a ModelRequest) -> ModelStream<'a> {
        let decoder = Candidates::new(request, self.pricing.clone());
        let connect = async move {
            let path = format!("{}?alt=sse", Self::path(request, "streamGenerateContent"));
            self.transport.post_sse(&path, &self.body(request)).await.map_err(classify)
        };
        http::decode_stream(connect, decoder)
    }
}

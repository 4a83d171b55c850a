//! A KAOS [`ModelClient`] for Ollama's native chat API (`POST /api/chat`), a wire format KAOS
//! does not ship. Register it under the prefix `ollama` and any agent naming a model
//! `ollama:<model>` (in code or in an agent file) is served by it:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use kaos_agent::Agent;
//! use kaos_provider_ollama::OllamaClient;
//! use kaos_providers::ModelClient;
//! use kaos_runner::Runner;
//! use kaos_runtime::Runtime;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let ollama = OllamaClient::from_env()?; // $OLLAMA_HOST, or http://127.0.0.1:11434
//! let agent = Agent::from_toml(r#"model = "ollama:llama3""#)?;
//! let runner = Runner::builder(agent, Runtime::builder().build())
//!     .provider("ollama", move |_model| Ok(Arc::new(ollama.clone()) as Arc<dyn ModelClient>))
//!     .build()?;
//! println!("{}", runner.turn("Hello!", "s1").await?.text);
//! # Ok(()) }
//! ```
//!
//! What maps to what: the system prompt is the first `system` message; tool definitions are
//! `tools` (`type: "function"`); a tool result is a `tool` message naming its tool; sampling
//! goes into `options` (`temperature`, `top_p`, `num_predict`, `stop`); a structured output
//! schema is `format`. The answer's `prompt_eval_count` and `eval_count` are the usage (Ollama
//! leaves out `prompt_eval_count` when the whole prompt was cached: the input is then bounded
//! from the request and the usage marked estimated). Ollama runs models locally and charges
//! nothing, so no price is known: give one to `RunnerBuilder::pricing` if you want a cost.
//!
//! The client sends one request per call (`"stream": false`) and never retries: wrap it in a
//! `kaos_providers::RetryClient` for that.
#![deny(missing_docs)]

use std::time::Duration;

use async_trait::async_trait;
use kaos_providers::{
    Capabilities, FinishReason, Message, ModelClient, ModelRequest, ModelResponse, ProviderError, ToolCall,
    ToolChoice, Usage,
};
use serde_json::{Map, Value, json};

/// Where Ollama listens unless `OLLAMA_HOST` says otherwise.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:11434";

/// A client of one Ollama server. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct OllamaClient {
    http: reqwest::Client,
    base_url: String,
    prefix: String,
    context_window: u32,
}

impl OllamaClient {
    /// A client of the server at `base_url` (e.g. `http://127.0.0.1:11434`), waiting at most
    /// five minutes for an answer (a local model can be slow to load).
    pub fn new(base_url: impl Into<String>) -> Result<Self, ProviderError> {
        Self::with_timeout(base_url, Duration::from_secs(300))
    }

    /// Like [`OllamaClient::new`], waiting at most `timeout` for an answer.
    pub fn with_timeout(base_url: impl Into<String>, timeout: Duration) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder().timeout(timeout).build().map_err(|e| {
            ProviderError::Transport { message: format!("cannot build the HTTP client: {e}") }
        })?;
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        Ok(Self { http, base_url, prefix: "ollama".to_owned(), context_window: 8_192 })
    }

    /// The server `OLLAMA_HOST` names (as Ollama's own CLI reads it: `host:port` or a URL), or
    /// [`DEFAULT_BASE_URL`].
    pub fn from_env() -> Result<Self, ProviderError> {
        match std::env::var("OLLAMA_HOST") {
            Ok(host) if host.starts_with("http://") || host.starts_with("https://") => Self::new(host),
            Ok(host) if !host.is_empty() => Self::new(format!("http://{host}")),
            _ => Self::new(DEFAULT_BASE_URL),
        }
    }

    /// With the context window the models are run with (Ollama's `num_ctx`; 8192 unless set),
    /// which KAOS budgets the context against and which each request asks for.
    pub fn with_context_window(mut self, tokens: u32) -> Self {
        self.context_window = tokens;
        self
    }

    /// The provider prefix this client is registered under (`ollama` unless set): it is taken
    /// off the model's name, `ollama:llama3:8b` → `llama3:8b`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The server this client talks to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The model's name on the server: `ollama:llama3` → `llama3` (a tag such as `llama3:8b`
    /// is kept whole).
    fn model_name<'a>(&self, model: &'a str) -> &'a str {
        model.strip_prefix(self.prefix.as_str()).and_then(|rest| rest.strip_prefix(':')).unwrap_or(model)
    }

    /// The body of `POST /api/chat` for `request`.
    pub fn chat_body(&self, request: &ModelRequest) -> Value {
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        if !request.system.is_empty() {
            messages.push(json!({"role": "system", "content": request.system}));
        }
        messages.extend(request.messages.iter().filter_map(wire_message));

        let mut options = Map::new();
        options.insert("num_ctx".into(), self.context_window.into());
        let sampling = &request.sampling;
        if let Some(temperature) = sampling.temperature {
            options.insert("temperature".into(), json!(temperature));
        }
        if let Some(top_p) = sampling.top_p {
            options.insert("top_p".into(), json!(top_p));
        }
        if let Some(max) = sampling.max_output_tokens {
            options.insert("num_predict".into(), max.into());
        }
        if !sampling.stop.is_empty() {
            options.insert("stop".into(), json!(sampling.stop));
        }

        let mut body = json!({
            "model": self.model_name(&request.model),
            "messages": messages,
            "stream": false,
            "options": options,
        });
        // Ollama has no tool choice: "none" is sending no tools; "required" and a named tool
        // are left to the model (the Runner checks what it gets).
        if !request.tools.is_empty() && request.tool_choice != ToolChoice::None {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|tool| {
                    json!({"type": "function", "function": {
                        "name": tool.name, "description": tool.description, "parameters": tool.parameters,
                    }})
                })
                .collect();
            body["tools"] = tools.into();
        }
        if let Some(schema) = &request.output_schema {
            body["format"] = schema.clone();
        }
        body
    }
}

fn wire_message(message: &Message) -> Option<Value> {
    match message {
        Message::User { content } => Some(json!({"role": "user", "content": content})),
        Message::Assistant { content, tool_calls } => {
            let mut wire = json!({"role": "assistant", "content": content});
            if !tool_calls.is_empty() {
                let calls: Vec<Value> = tool_calls
                    .iter()
                    .map(|call| json!({"function": {"name": call.name, "arguments": call.arguments}}))
                    .collect();
                wire["tool_calls"] = calls.into();
            }
            Some(wire)
        }
        Message::Tool { name, content, .. } => {
            Some(json!({"role": "tool", "tool_name": name, "content": content}))
        }
        // `Message` may gain kinds; one this client does not know is not sent.
        _ => None,
    }
}

fn malformed(message: impl Into<String>) -> ProviderError {
    ProviderError::MalformedResponse { message: message.into() }
}

fn count(body: &Value, field: &str) -> Option<u64> {
    body.get(field).and_then(Value::as_u64)
}

/// A `/api/chat` answer (`"stream": false`) as a response to `request`.
fn parse_response(request: &ModelRequest, body: Value) -> Result<ModelResponse, ProviderError> {
    let message = body.get("message").ok_or_else(|| malformed("no `message` in the answer"))?;
    let text = message.get("content").and_then(Value::as_str).unwrap_or_default();
    let mut calls = Vec::new();
    for (i, call) in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let function = call.get("function").ok_or_else(|| malformed("a tool call without `function`"))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("a tool call without a name"))?;
        let arguments = match function.get("arguments") {
            // Some models put the arguments in a string of JSON.
            Some(Value::String(text)) => {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
            }
            Some(arguments) => arguments.clone(),
            None => json!({}),
        };
        // Ollama gives calls no id (newer servers may): number them, unique within the turn.
        let id =
            call.get("id").and_then(Value::as_str).map_or_else(|| format!("ollama-call-{i}"), str::to_owned);
        calls.push(ToolCall::new(id, name, arguments));
    }

    let output = count(&body, "eval_count");
    let input = count(&body, "prompt_eval_count");
    let estimated = input.is_none() || output.is_none();
    let usage = Usage::new(
        input.unwrap_or_else(|| request.input_token_bound()),
        output.or(request.sampling.max_output_tokens.map(u64::from)).unwrap_or_default(),
    );

    let model = body.get("model").and_then(Value::as_str).unwrap_or(&request.model);
    let mut response = if calls.is_empty() {
        ModelResponse::text(model, text)
    } else {
        ModelResponse::tool_calls(model, calls).with_text(text)
    };
    if let Some(thinking) = message.get("thinking").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        response = response.with_thinking(thinking);
    }
    if response.tool_calls.is_empty() {
        match body.get("done_reason").and_then(Value::as_str) {
            None | Some("stop") => {}
            Some("length") => response = response.with_finish_reason(FinishReason::Length),
            Some(other) => response = response.with_finish_reason(FinishReason::Other(other.to_owned())),
        }
    }
    response = response.with_usage(usage);
    response.usage_estimated = estimated;
    response.raw = Some(body);
    Ok(response)
}

#[async_trait]
impl ModelClient for OllamaClient {
    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::default();
        capabilities.context_window = self.context_window;
        capabilities
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        let url = format!("{}/api/chat", self.base_url);
        let answer =
            self.http.post(&url).json(&self.chat_body(request)).send().await.map_err(|e| {
                ProviderError::Transport { message: format!("POST {url}: {}", e.without_url()) }
            })?;
        let status = answer.status();
        let text = answer.text().await.map_err(|e| ProviderError::Transport {
            message: format!("reading the answer: {}", e.without_url()),
        })?;
        if !status.is_success() {
            // Ollama's errors are `{"error": "..."}`.
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|body| body.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or(text);
            return Err(ProviderError::from_http_status(status.as_u16(), message, None));
        }
        let body: Value =
            serde_json::from_str(&text).map_err(|e| malformed(format!("the answer is not JSON: {e}")))?;
        if let Some(error) = body.get("error").and_then(Value::as_str) {
            return Err(ProviderError::InvalidRequest { message: error.to_owned() });
        }
        parse_response(request, body)
    }
}

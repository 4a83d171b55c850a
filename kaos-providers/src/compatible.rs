//! Any server speaking the OpenAI Chat Completions wire format at a configured base URL.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::openai::ChatCompletions;
use crate::{
    Capabilities, ModelClient, ModelRequest, ModelResponse, ModelStream, Pricing, ProviderError, Quirks,
    SecretString,
};

/// A client of an OpenAI-compatible server (`openai-compatible:<model>`): Ollama, vLLM,
/// llama.cpp server, LM Studio, OpenRouter, Groq, …
///
/// The base URL is the one that ends before `/chat/completions` (e.g.
/// `http://localhost:11434/v1` for Ollama). The key is optional (local servers need none).
/// [`Quirks`] say what the server does differently; they default to
/// [`Quirks::for_base_url`]. Models are priced with the [`Pricing`] table like any other:
/// local models have no price (cost `None`) until you give them one, e.g. `0.0`.
///
/// ```
/// use kaos_providers::{OpenAiCompatibleClient, Quirks};
/// let client = OpenAiCompatibleClient::new("http://localhost:11434/v1", None)
///     .with_quirks(Quirks::compatible().with_stream_usage(true));
/// assert_eq!(client.base_url(), "http://localhost:11434/v1");
/// ```
#[derive(Debug, Clone)]
pub struct OpenAiCompatibleClient {
    chat: ChatCompletions,
    capabilities: Capabilities,
}

impl OpenAiCompatibleClient {
    /// A client of the server at `base_url`, with an optional API key.
    pub fn new(base_url: &str, api_key: Option<SecretString>) -> Self {
        let quirks = Quirks::for_base_url(base_url);
        let chat = ChatCompletions::new("openai-compatible", base_url, api_key, quirks);
        let capabilities = Capabilities {
            streaming: true,
            structured_output: quirks.structured_output,
            ..Capabilities::default()
        };
        Self { chat, capabilities }
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.chat.transport.base_url
    }

    /// With these quirks.
    pub fn with_quirks(mut self, quirks: Quirks) -> Self {
        self.chat.quirks = quirks;
        self.capabilities.structured_output = quirks.structured_output;
        self
    }

    /// With what the served model can do (context window, tools, …), when you know better
    /// than the defaults.
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// With these prices.
    pub fn with_pricing(mut self, pricing: Pricing) -> Self {
        self.chat.pricing = Arc::new(pricing);
        self
    }

    /// With this output token limit (`max_tokens`, or the field the [`Quirks`] name) on
    /// requests that set none.
    pub fn with_max_output_tokens(mut self, max: u32) -> Self {
        self.chat.max_output_tokens = Some(max);
        self
    }

    /// With this time limit for a whole non-streaming call and for each read of a stream.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.chat.transport = self.chat.transport.with_timeout(timeout);
        self
    }
}

#[async_trait]
impl ModelClient for OpenAiCompatibleClient {
    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn price(&self, model: &str) -> Option<crate::ModelPrice> {
        self.chat.pricing.price(crate::http::vendor_model(model, self.chat.provider)).copied()
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        self.chat.complete(request).await
    }

    fn stream<'a>(&'a self, request: &'a ModelRequest) -> ModelStream<'a> {
        self.chat.stream(request)
    }
}

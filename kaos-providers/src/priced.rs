//! A client whose calls are priced from a table of the user's, over the inner client's own.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt as _;

use crate::{
    Capabilities, ModelClient, ModelPrice, ModelRequest, ModelResponse, ModelStream, Pricing, ProviderError,
    StreamEvent,
};

/// Wraps a client so that the models `pricing` knows — matched on the request's whole
/// `provider:model`, e.g. `openai-compatible:llama3.2` — are priced from it; other models keep
/// the inner client's price (or none).
///
/// ```
/// use std::sync::Arc;
/// use kaos_providers::{Message, ModelClient, ModelPrice, ModelRequest, Pricing, PricedClient, ScriptedClient};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let prices = Pricing::empty("mine").with_price("scripted:local", ModelPrice::new(1.0, 2.0, None));
/// let client = PricedClient::new(Arc::new(ScriptedClient::new().with_text("hi")), Arc::new(prices));
/// let response = client.complete(&ModelRequest::new("scripted:local", vec![Message::user("x")])).await?;
/// assert!(response.cost_usd.is_some());
/// # Ok::<(), kaos_providers::ProviderError>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct PricedClient {
    inner: Arc<dyn ModelClient>,
    pricing: Arc<Pricing>,
}

impl PricedClient {
    /// `inner`, priced from `pricing` where it has a price.
    pub fn new(inner: Arc<dyn ModelClient>, pricing: Arc<Pricing>) -> Self {
        Self { inner, pricing }
    }

    fn reprice(&self, model: &str, mut response: ModelResponse) -> ModelResponse {
        if let Some(price) = self.pricing.price(model) {
            response.cost_usd = Some(price.cost(&response.usage));
        }
        response
    }
}

#[async_trait]
impl ModelClient for PricedClient {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn price(&self, model: &str) -> Option<ModelPrice> {
        self.pricing.price(model).copied().or_else(|| self.inner.price(model))
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        let response = self.inner.complete(request).await?;
        Ok(self.reprice(&request.model, response))
    }

    fn stream<'a>(&'a self, request: &'a ModelRequest) -> ModelStream<'a> {
        Box::pin(self.inner.stream(request).map(move |event| match event {
            Ok(StreamEvent::Completed { response }) => {
                Ok(StreamEvent::Completed { response: self.reprice(&request.model, response) })
            }
            other => other,
        }))
    }
}

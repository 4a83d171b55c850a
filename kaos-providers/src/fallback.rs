use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, stream};

use crate::{
    Capabilities, ModelClient, ModelRequest, ModelResponse, ModelStream, ProviderError, StreamEvent,
};

/// A client that tries an ordered list of clients until one answers.
///
/// It moves on to the next client only when the error [is fallbackable](ProviderError::is_fallbackable)
/// (rate limits, overload, transport, context too long, malformed answers); an auth error
/// or an invalid request is returned at once, never routed around. When every client
/// fails, the last error is returned. Put a [`RetryClient`](crate::RetryClient) around each
/// entry to retry a client before falling back from it. A stream falls back only while it
/// has produced nothing.
///
/// ```
/// # use std::sync::Arc;
/// use kaos_providers::{FallbackClient, Message, ModelClient, ModelRequest, ProviderError, ScriptedClient, ScriptedReply};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let busy = ScriptedClient::new().with_reply(ScriptedReply::Error(ProviderError::Overloaded { message: "busy".into() }));
/// let backup = ScriptedClient::new().with_text("from the backup");
/// let client = FallbackClient::new(vec![Arc::new(busy), Arc::new(backup)]);
/// let response = client.complete(&ModelRequest::new("scripted:x", vec![Message::user("hi")])).await?;
/// assert_eq!(response.text, "from the backup");
/// # Ok::<(), ProviderError>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct FallbackClient {
    clients: Vec<Arc<dyn ModelClient>>,
}

impl FallbackClient {
    /// Tries `clients` in order. An empty list fails every call with
    /// [`ProviderError::UnknownModel`].
    pub fn new(clients: Vec<Arc<dyn ModelClient>>) -> Self {
        Self { clients }
    }

    fn empty(request: &ModelRequest) -> ProviderError {
        ProviderError::UnknownModel {
            model: request.model.clone(),
            message: "the fallback list is empty".into(),
        }
    }
}

#[async_trait]
impl ModelClient for FallbackClient {
    /// The first client's capabilities (the one used when all is well).
    fn capabilities(&self) -> Capabilities {
        self.clients.first().map(|c| c.capabilities()).unwrap_or_default()
    }

    /// The dearest of the clients' prices (any of them may serve the call); `None` if any is
    /// unknown.
    fn price(&self, model: &str) -> Option<crate::ModelPrice> {
        let prices: Option<Vec<_>> = self.clients.iter().map(|c| c.price(model)).collect();
        prices?.into_iter().reduce(|a, b| {
            crate::ModelPrice::new(
                a.input.max(b.input),
                a.output.max(b.output),
                match (a.cached_input, b.cached_input) {
                    (Some(x), Some(y)) => Some(x.max(y)),
                    _ => None,
                },
            )
        })
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        let mut last = Self::empty(request);
        for (i, client) in self.clients.iter().enumerate() {
            match client.complete(request).await {
                Err(error) if error.is_fallbackable() => {
                    tracing::warn!(error.kind = error.kind(), client = i, "model call failed, falling back");
                    last = error;
                }
                result => return result,
            }
        }
        Err(last)
    }

    fn stream<'a>(&'a self, request: &'a ModelRequest) -> ModelStream<'a> {
        let started = async move {
            let mut last = Self::empty(request);
            // Retry notices of every client tried, passed on before what follows.
            let mut notices = Vec::new();
            for (i, client) in self.clients.iter().enumerate() {
                let mut events = client.stream(request);
                let first = loop {
                    match events.next().await {
                        Some(Ok(notice @ StreamEvent::RetryScheduled { .. })) => notices.push(Ok(notice)),
                        other => break other,
                    }
                };
                match first {
                    Some(Err(error)) if error.is_fallbackable() => {
                        tracing::warn!(
                            error.kind = error.kind(),
                            client = i,
                            "model stream failed, falling back"
                        );
                        last = error;
                    }
                    // Nothing follows an error: the failed stream is dropped, not drained.
                    Some(Err(error)) => {
                        notices.push(Err(error));
                        let failed: ModelStream<'a> = Box::pin(stream::iter(notices));
                        return failed;
                    }
                    first => {
                        notices.extend(first);
                        let rest: ModelStream<'a> = Box::pin(stream::iter(notices).chain(events));
                        return rest;
                    }
                }
            }
            notices.push(Err(last));
            let failed: ModelStream<'a> = Box::pin(stream::iter(notices));
            failed
        };
        Box::pin(stream::once(started).flatten())
    }
}

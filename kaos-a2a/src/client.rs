//! An A2A client over the JSON-RPC binding (feature `client`): reads a remote agent's card,
//! sends it messages (answered whole or streamed as server-sent events), gets and cancels its
//! tasks. HTTP is reqwest with rustls; server-sent events are parsed by `sse-stream`.
//!
//! A remote agent is not trusted to be well-formed: every answer is checked — the HTTP status,
//! the size of the body, the JSON, the JSON-RPC envelope and the id it echoes — and each way it
//! can be wrong is a [`ClientError`] variant. A bearer token is a [`SecretString`], sent only in
//! the `Authorization` header and never in an error.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::{
    AGENT_CARD_PATH, AgentCard, BINDING_JSONRPC, CancelTaskRequest, GetTaskRequest, JsonRpcError,
    JsonRpcRequest, JsonRpcResponse, Method, PROTOCOL_VERSION, RequestId, SendMessageRequest,
    SendMessageResponse, StreamResponse, SubscribeToTaskRequest, Task, VERSION_HEADER,
};

/// The largest body read from a remote agent (an answer, or one streamed event).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// How long connecting to a remote agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most characters of an error body kept in a [`ClientError::Status`].
const BODY_EXCERPT_CHARS: usize = 200;

/// Why a call to a remote A2A agent failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The endpoint URL is not an absolute `http://` or `https://` URL.
    #[error("invalid A2A endpoint {url:?}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request could not be sent or its answer not received (connection refused, reset,
    /// timed out, TLS).
    #[error("cannot reach {url}")]
    Transport {
        /// Where.
        url: String,
        /// The transport's error.
        #[source]
        source: reqwest::Error,
    },
    /// The remote answered with an HTTP error status.
    #[error("{url} answered HTTP {status}{}", excerpt(body))]
    Status {
        /// Where.
        url: String,
        /// The status code (401: the token is missing or wrong).
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer is larger than [`MAX_BODY_BYTES`].
    #[error("{url} sent more than {limit} bytes")]
    TooLarge {
        /// Where.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The answer is not the JSON the protocol defines here.
    #[error("{url} sent an invalid {what}: {message}")]
    InvalidResponse {
        /// Where.
        url: String,
        /// What was expected (`agent card`, `SendMessage response`, …).
        what: &'static str,
        /// Why it does not fit.
        message: String,
    },
    /// The JSON-RPC response answers another request (its `id` is not the request's).
    #[error("{url} answered request {expected} with the id {found}")]
    WrongId {
        /// Where.
        url: String,
        /// The request's id.
        expected: String,
        /// The id in the response.
        found: String,
    },
    /// The remote agent answered with a JSON-RPC error.
    #[error("the remote agent refused {method}")]
    Rpc {
        /// The method called.
        method: &'static str,
        /// The error it sent.
        #[source]
        error: JsonRpcError,
    },
    /// The agent card offers no JSON-RPC interface of protocol version 1.x.
    #[error("the agent card at {url} offers no JSON-RPC interface of A2A 1.x")]
    NoJsonRpcInterface {
        /// The card's URL.
        url: String,
    },
}

fn excerpt(body: &str) -> String {
    if body.is_empty() { String::new() } else { format!(": {body}") }
}

impl ClientError {
    /// Whether the remote itself failed (transport, HTTP 5xx or 429, a malformed answer) rather
    /// than refusing this request: what a circuit breaker counts.
    #[must_use]
    pub fn is_remote_failure(&self) -> bool {
        match self {
            ClientError::Transport { .. }
            | ClientError::TooLarge { .. }
            | ClientError::InvalidResponse { .. }
            | ClientError::WrongId { .. }
            | ClientError::NoJsonRpcInterface { .. } => true,
            ClientError::Status { status, .. } => *status >= 500 || *status == 429,
            ClientError::InvalidUrl { .. } | ClientError::Rpc { .. } => false,
        }
    }
}

/// The events of a streamed method, in order; the stream ends when the server closes it.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamResponse, ClientError>> + Send>>;

/// A client of one remote A2A agent, by the base URL its card is served under.
///
/// The card is read once, on the first call that needs the JSON-RPC endpoint; cheap to share
/// behind an `Arc` (reqwest pools connections).
pub struct A2aClient {
    http: reqwest::Client,
    base: String,
    token: Option<SecretString>,
    card: OnceCell<(AgentCard, String)>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for A2aClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("A2aClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl A2aClient {
    /// A client of the agent served under `base_url` (`http://` or `https://`), sending
    /// `token` as a bearer token when given.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] for a URL that is not absolute `http(s)`;
    /// [`ClientError::Transport`] when the HTTP client cannot be built.
    pub fn new(base_url: &str, token: Option<SecretString>) -> Result<Self, ClientError> {
        let invalid =
            |reason: &str| ClientError::InvalidUrl { url: base_url.to_owned(), reason: reason.to_owned() };
        let parsed = reqwest::Url::parse(base_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(invalid("must be an http:// or https:// URL with a host"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|source| ClientError::Transport { url: base_url.to_owned(), source })?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            token,
            card: OnceCell::new(),
            next_id: AtomicU64::new(1),
        })
    }

    /// The base URL.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The agent's card and its JSON-RPC endpoint, read on first use.
    ///
    /// # Errors
    /// Any [`ClientError`] of reading the card; [`ClientError::NoJsonRpcInterface`] when it
    /// offers no JSON-RPC interface of A2A 1.x.
    pub async fn card(&self) -> Result<&AgentCard, ClientError> {
        Ok(&self.resolved().await?.0)
    }

    async fn resolved(&self) -> Result<&(AgentCard, String), ClientError> {
        self.card
            .get_or_try_init(|| async {
                let url = format!("{}{AGENT_CARD_PATH}", self.base);
                let response = self.authorized(self.http.get(&url)).send().await;
                let bytes = read_body(&url, response).await?;
                let card: AgentCard = parse(&url, "agent card", &bytes)?;
                let major = PROTOCOL_VERSION.split('.').next().unwrap_or("1");
                let endpoint = card
                    .supported_interfaces
                    .iter()
                    .find(|i| {
                        i.protocol_binding == BINDING_JSONRPC
                            && i.protocol_version.split('.').next() == Some(major)
                    })
                    .map(|i| i.url.clone())
                    .ok_or(ClientError::NoJsonRpcInterface { url: url.clone() })?;
                Ok((card, endpoint))
            })
            .await
    }

    /// `SendMessage`: the task the message started or continued, or a direct answer.
    ///
    /// # Errors
    /// Any [`ClientError`].
    pub async fn send_message(
        &self,
        request: &SendMessageRequest,
    ) -> Result<SendMessageResponse, ClientError> {
        self.call(Method::SendMessage, request, "SendMessage response").await
    }

    /// `GetTask`.
    ///
    /// # Errors
    /// Any [`ClientError`].
    pub async fn get_task(&self, id: &str) -> Result<Task, ClientError> {
        let request = GetTaskRequest { tenant: None, id: id.to_owned(), history_length: None };
        self.call(Method::GetTask, &request, "GetTask response").await
    }

    /// `CancelTask`.
    ///
    /// # Errors
    /// Any [`ClientError`].
    pub async fn cancel_task(&self, id: &str) -> Result<Task, ClientError> {
        let request = CancelTaskRequest { tenant: None, id: id.to_owned(), metadata: None };
        self.call(Method::CancelTask, &request, "CancelTask response").await
    }

    /// `SendStreamingMessage`: the task's events as the server streams them.
    ///
    /// # Errors
    /// Any [`ClientError`] of starting the stream; each event may be one too.
    pub async fn send_streaming_message(
        &self,
        request: &SendMessageRequest,
    ) -> Result<EventStream, ClientError> {
        self.stream(Method::SendStreamingMessage, request).await
    }

    /// `SubscribeToTask`: the events of a task under way.
    ///
    /// # Errors
    /// Any [`ClientError`] of starting the stream; each event may be one too.
    pub async fn subscribe_to_task(&self, id: &str) -> Result<EventStream, ClientError> {
        self.stream(Method::SubscribeToTask, &SubscribeToTaskRequest { tenant: None, id: id.to_owned() })
            .await
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let request = request.header(VERSION_HEADER, PROTOCOL_VERSION);
        match &self.token {
            Some(token) => request.bearer_auth(token.expose_secret()),
            None => request,
        }
    }

    /// Posts a JSON-RPC request; returns the endpoint, the request id and the response.
    async fn post(
        &self,
        method: Method,
        params: &impl Serialize,
        accept: &str,
    ) -> Result<(String, RequestId, reqwest::Response), ClientError> {
        let endpoint = self.resolved().await?.1.clone();
        let id = RequestId::Number(self.next_id.fetch_add(1, Ordering::Relaxed) as i64);
        let body = JsonRpcRequest::new(id.clone(), method, params).map_err(|e| {
            ClientError::InvalidResponse { url: endpoint.clone(), what: "request", message: e.to_string() }
        })?;
        let sent = self
            .authorized(self.http.post(&endpoint))
            .header(reqwest::header::ACCEPT, accept)
            .json(&body)
            .send()
            .await
            .map_err(|source| ClientError::Transport { url: endpoint.clone(), source })?;
        let status = sent.status();
        if !status.is_success() {
            let bytes = read_limited(&endpoint, sent).await.unwrap_or_default();
            return Err(status_error(&endpoint, status.as_u16(), &bytes));
        }
        Ok((endpoint, id, sent))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        params: &impl Serialize,
        what: &'static str,
    ) -> Result<T, ClientError> {
        let (endpoint, id, response) = self.post(method, params, "application/json").await?;
        let bytes = read_limited(&endpoint, response).await?;
        let envelope: JsonRpcResponse<Value> = parse(&endpoint, what, &bytes)?;
        unwrap_envelope(&endpoint, method, &id, envelope, what)
    }

    async fn stream(&self, method: Method, params: &impl Serialize) -> Result<EventStream, ClientError> {
        let (endpoint, id, response) = self.post(method, params, "text/event-stream").await?;
        let is_sse = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if !is_sse {
            // A server may refuse a stream with a plain JSON-RPC error.
            let bytes = read_limited(&endpoint, response).await?;
            let envelope: JsonRpcResponse<Value> = parse(&endpoint, "streaming response", &bytes)?;
            let result: Result<StreamResponse, _> =
                unwrap_envelope(&endpoint, method, &id, envelope, "streaming response");
            return Ok(Box::pin(futures::stream::once(async move { result })));
        }
        let events = sse_stream::SseStream::from_bytes_stream(response.bytes_stream());
        let url = endpoint.clone();
        let stream = events.filter_map(move |event| {
            let url = url.clone();
            let id = id.clone();
            async move {
                let event = match event {
                    Ok(event) => event,
                    Err(error) => {
                        return Some(Err(ClientError::InvalidResponse {
                            url,
                            what: "event stream",
                            message: error.to_string(),
                        }));
                    }
                };
                // Comments, keep-alives and events without data carry nothing.
                let data = event.data.filter(|d| !d.trim().is_empty())?;
                if data.len() > MAX_BODY_BYTES {
                    return Some(Err(ClientError::TooLarge { url, limit: MAX_BODY_BYTES }));
                }
                let envelope: Result<JsonRpcResponse<Value>, _> =
                    parse(&url, "stream event", data.as_bytes());
                Some(
                    envelope
                        .and_then(|envelope| unwrap_envelope(&url, method, &id, envelope, "stream event")),
                )
            }
        });
        Ok(Box::pin(stream))
    }
}

/// Checks a JSON-RPC envelope: its id, its error, then its result as `T`.
fn unwrap_envelope<T: DeserializeOwned>(
    url: &str,
    method: Method,
    id: &RequestId,
    envelope: JsonRpcResponse<Value>,
    what: &'static str,
) -> Result<T, ClientError> {
    // An error about a request the server could not read may carry a null id.
    let id_ok = envelope.id.as_ref() == Some(id) || (envelope.id.is_none() && envelope.error.is_some());
    if !id_ok {
        let found = envelope.id.as_ref().map_or_else(|| "null".to_owned(), id_text);
        return Err(ClientError::WrongId { url: url.to_owned(), expected: id_text(id), found });
    }
    let value =
        envelope.into_result().map_err(|error| ClientError::Rpc { method: method.as_str(), error })?;
    serde_json::from_value(value).map_err(|e| ClientError::InvalidResponse {
        url: url.to_owned(),
        what,
        message: e.to_string(),
    })
}

fn id_text(id: &RequestId) -> String {
    match id {
        RequestId::Number(n) => n.to_string(),
        RequestId::String(s) => format!("{s:?}"),
    }
}

fn parse<T: DeserializeOwned>(url: &str, what: &'static str, bytes: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| ClientError::InvalidResponse {
        url: url.to_owned(),
        what,
        message: e.to_string(),
    })
}

fn status_error(url: &str, status: u16, bytes: &[u8]) -> ClientError {
    let body: String = String::from_utf8_lossy(bytes).chars().take(BODY_EXCERPT_CHARS).collect();
    ClientError::Status { url: url.to_owned(), status, body: body.trim().to_owned() }
}

/// A GET's body, after its status is checked.
async fn read_body(
    url: &str,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<Vec<u8>, ClientError> {
    let response = response.map_err(|source| ClientError::Transport { url: url.to_owned(), source })?;
    let status = response.status();
    let bytes = read_limited(url, response).await?;
    if !status.is_success() {
        return Err(status_error(url, status.as_u16(), &bytes));
    }
    Ok(bytes)
}

/// Reads a body of at most [`MAX_BODY_BYTES`].
async fn read_limited(url: &str, response: reqwest::Response) -> Result<Vec<u8>, ClientError> {
    let too_large = || ClientError::TooLarge { url: url.to_owned(), limit: MAX_BODY_BYTES };
    if response.content_length().is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|source| ClientError::Transport { url: url.to_owned(), source })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

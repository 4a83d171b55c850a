//! The HTTP transport shared by the vendor clients: JSON in, JSON or server-sent events out,
//! every failure classified as a [`ProviderError`] with the API key scrubbed from it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde_json::Value;

use crate::sse::{self, SseEvent};
use crate::{
    ExposeSecret, FinishReason, ModelRequest, ModelResponse, ModelStream, Pricing, ProviderError,
    SecretString, StreamEvent, ToolCall, Usage, estimate_tokens,
};

/// The time limit of a whole non-streaming call, and of each read of a stream, unless set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long to wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a vendor puts the API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyHeader {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// A header holding the bare key (`x-api-key`, `x-goog-api-key`).
    Named(&'static str),
}

/// One vendor endpoint: base URL, key and fixed headers.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    client: reqwest::Client,
    pub(crate) base_url: String,
    api_key: Option<SecretString>,
    key_header: KeyHeader,
    headers: Vec<(&'static str, String)>,
    pub(crate) timeout: Duration,
}

impl Transport {
    /// A transport with the default time limit ([`DEFAULT_TIMEOUT`]).
    pub(crate) fn new(base_url: &str, api_key: Option<SecretString>, key_header: KeyHeader) -> Self {
        Self {
            client: reqwest::Client::new(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.filter(|k| !k.expose_secret().is_empty()),
            key_header,
            headers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
        .with_timeout(DEFAULT_TIMEOUT)
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the time limit of a non-streaming call, and of each read of a stream.
    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .read_timeout(timeout)
            .build()
            .unwrap_or_default();
        self
    }

    /// Replaces the base URL.
    pub(crate) fn with_base_url(mut self, base_url: &str) -> Self {
        self.base_url = base_url.trim_end_matches('/').to_owned();
        self
    }

    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let mut map = HeaderMap::new();
        let invalid =
            |what: &str| ProviderError::InvalidRequest { message: format!("invalid header {what}") };
        for (name, value) in &self.headers {
            map.insert(*name, HeaderValue::from_str(value).map_err(|_| invalid(name))?);
        }
        if let Some(key) = &self.api_key {
            let (name, value) = match self.key_header {
                KeyHeader::Bearer => {
                    (reqwest::header::AUTHORIZATION, format!("Bearer {}", key.expose_secret()))
                }
                KeyHeader::Named(name) => (HeaderName::from_static(name), key.expose_secret().to_owned()),
            };
            let mut value = HeaderValue::from_str(&value).map_err(|_| invalid("for the API key"))?;
            value.set_sensitive(true);
            map.insert(name, value);
        }
        Ok(map)
    }

    /// POSTs `body` to `{base_url}{path}`; the error answer, if any, is classified by `classify`.
    async fn send(
        &self,
        path: &str,
        body: &Value,
        whole_call_timeout: bool,
    ) -> Result<reqwest::Response, ProviderError> {
        let mut request =
            self.client.post(format!("{}{path}", self.base_url)).headers(self.headers()?).json(body);
        if whole_call_timeout {
            request = request.timeout(self.timeout);
        }
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let header = retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        let retry_after = header.or_else(|| google_retry_delay(&text));
        Err(ProviderError::from_http_status(status, self.error_message(status, &text), retry_after))
    }

    /// POSTs `body` and parses the JSON answer.
    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ProviderError> {
        let response = self.send(path, body, true).await?;
        let bytes = response.bytes().await.map_err(|e| self.transport_error(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| ProviderError::MalformedResponse {
            message: format!("the response body is not JSON: {e}"),
        })
    }

    /// POSTs `body` and returns the server-sent events of the answer.
    pub(crate) async fn post_sse(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<impl Stream<Item = Result<SseEvent, ProviderError>> + Send + use<>, ProviderError> {
        let response = self.send(path, body, false).await?;
        let key = self.api_key.clone();
        let bytes = response.bytes_stream().map(move |chunk| {
            chunk.map_err(|e| {
                key.as_ref().map_or_else(|| e.to_string(), |k| crate::secret::scrub(k, &e.to_string()))
            })
        });
        Ok(sse::events(Box::pin(bytes)))
    }

    /// A readable message for an error answer: the vendor's `error.message` when the body is
    /// JSON shaped like the vendors' errors, else the body itself (cut short), key scrubbed.
    pub(crate) fn error_message(&self, status: u16, body: &str) -> String {
        let message = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| {
                let error = v.get("error")?;
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| error.as_str().map(str::to_owned))
            })
            .unwrap_or_else(|| body.chars().take(500).collect());
        self.scrub(&format!("HTTP {status}: {message}"))
    }

    pub(crate) fn scrub(&self, text: &str) -> String {
        match &self.api_key {
            Some(key) => crate::secret::scrub(key, text),
            None => text.to_owned(),
        }
    }

    fn transport_error(&self, error: &reqwest::Error) -> ProviderError {
        let what = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "cannot connect"
        } else {
            "failed"
        };
        ProviderError::Transport { message: self.scrub(&format!("request {what}: {error}")) }
    }
}

/// The delay a `Retry-After` (seconds) or OpenAI's `retry-after-ms` header asks for.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let read = |name: &str| {
        headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok())
    };
    let ms = read("retry-after-ms").map(|ms| ms / 1000.0);
    ms.or_else(|| read(RETRY_AFTER.as_str()))
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The delay of a Google-style error body: `error.details[].retryDelay` such as `"7s"`.
fn google_retry_delay(body: &str) -> Option<Duration> {
    let value: Value = serde_json::from_str(body).ok()?;
    let details = value.get("error")?.get("details")?.as_array()?;
    let delay = details.iter().find_map(|d| d.get("retryDelay").and_then(Value::as_str))?;
    let seconds: f64 = delay.strip_suffix('s')?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// A JSON value of a vendor stream event, or a typed error saying which event was bad.
pub(crate) fn parse_event(event: &SseEvent) -> Result<Value, ProviderError> {
    serde_json::from_str(&event.data).map_err(|e| ProviderError::MalformedResponse {
        message: format!(
            "stream event is not JSON ({e}): {}",
            event.data.chars().take(200).collect::<String>()
        ),
    })
}

/// The error of a stream that ended before the vendor said it was complete.
pub(crate) fn truncated() -> ProviderError {
    ProviderError::MalformedResponse { message: "the stream ended before the response was complete".into() }
}

/// The arguments of a tool call from the JSON text a vendor sent: the parsed value, `{}` for
/// empty text, and the text itself as a string when it is not JSON.
pub(crate) fn parse_arguments(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Object(Default::default());
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// `model` without the `provider:` prefix the runner's requests carry.
pub(crate) fn vendor_model<'a>(model: &'a str, provider: &str) -> &'a str {
    model.strip_prefix(provider).and_then(|rest| rest.strip_prefix(':')).unwrap_or(model)
}

/// A vendor's stream protocol: turns server-sent events into [`StreamEvent`]s and, at the
/// end, into the whole response.
pub(crate) trait StreamDecoder: Send {
    /// Handles one event, pushing what it streams to `out`. `Ok(true)` means the vendor said
    /// the response is complete: the rest of the body is not read.
    fn on_event(&mut self, event: SseEvent, out: &mut Vec<StreamEvent>) -> Result<bool, ProviderError>;

    /// The response, once the stream is over; an error when the stream was cut short.
    fn finish(self) -> Result<ModelResponse, ProviderError>;
}

/// The [`ModelStream`] of a streamed call: connect, decode every event, end with `Completed`
/// (or with the first error: nothing follows an error).
pub(crate) fn decode_stream<'a, F, S, D>(connect: F, decoder: D) -> ModelStream<'a>
where
    F: Future<Output = Result<S, ProviderError>> + Send + 'a,
    S: Stream<Item = Result<SseEvent, ProviderError>> + Send + 'a,
    D: StreamDecoder + 'a,
{
    type Connect<'a, S> = Pin<Box<dyn Future<Output = Result<S, ProviderError>> + Send + 'a>>;
    struct State<'a, S, D> {
        connect: Option<Connect<'a, S>>,
        events: Option<Pin<Box<S>>>,
        decoder: Option<D>,
        ready: VecDeque<Result<StreamEvent, ProviderError>>,
    }
    let state = State {
        connect: Some(Box::pin(connect)),
        events: None,
        decoder: Some(decoder),
        ready: VecDeque::new(),
    };
    Box::pin(stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.ready.pop_front() {
                return Some((item, state));
            }
            if let Some(connect) = state.connect.take() {
                match connect.await {
                    Ok(events) => state.events = Some(Box::pin(events)),
                    Err(e) => {
                        state.decoder = None;
                        return Some((Err(e), state));
                    }
                }
                continue;
            }
            let (Some(events), Some(decoder)) = (state.events.as_mut(), state.decoder.as_mut()) else {
                return None;
            };
            let next = events.next().await;
            let mut finished = false;
            match next {
                Some(Ok(event)) => {
                    let mut out = Vec::new();
                    let handled = decoder.on_event(event, &mut out);
                    state.ready.extend(out.into_iter().map(Ok));
                    match handled {
                        Ok(done) => finished = done,
                        Err(e) => {
                            state.decoder = None;
                            state.ready.push_back(Err(e));
                        }
                    }
                }
                Some(Err(e)) => {
                    state.decoder = None;
                    state.ready.push_back(Err(e));
                }
                None => finished = true,
            }
            if finished {
                state.events = None;
                if let Some(decoder) = state.decoder.take() {
                    state
                        .ready
                        .push_back(decoder.finish().map(|response| StreamEvent::Completed { response }));
                }
            }
        }
    }))
}

/// What a response's pricing and accounting need from its request.
#[derive(Debug, Clone)]
pub(crate) struct Requested {
    /// The model asked for (`provider:model`): it prices a response that names no model, or
    /// one the price table does not know.
    pub(crate) model: String,
    /// The most input tokens the server may count ([`ModelRequest::input_token_bound`]).
    input_bound: u64,
    /// The output limit sent, if any.
    max_output: Option<u32>,
}

impl Requested {
    pub(crate) fn of(request: &ModelRequest) -> Self {
        Self {
            model: request.model.clone(),
            input_bound: request.input_token_bound(),
            max_output: request.sampling.max_output_tokens,
        }
    }

    /// The output limit sent, if any.
    pub(crate) fn max_output(&self) -> Option<u32> {
        self.max_output
    }

    /// The usage charged for a call whose server reported none: the input bound plus the
    /// output limit sent (the model may have spent it unseen, reasoning), or with no limit
    /// sent the estimate of the output `received`.
    fn bound(&self, received: u64) -> Usage {
        Usage::new(self.input_bound, self.max_output.map_or(received, u64::from))
    }
}

/// Counts a stream's output deltas against the output limit sent, so that a server that
/// streams past it is cut off at the limit. Each delta counts as one token: a delta holds at
/// least one token, so a server that keeps to the limit is never cut.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutputMeter {
    limit: Option<u64>,
    received: u64,
    cut: bool,
}

impl OutputMeter {
    pub(crate) fn new(requested: &Requested) -> Self {
        Self { limit: requested.max_output().map(u64::from), received: 0, cut: false }
    }

    /// Admits one more output delta; `false` (and the meter is cut) when it would pass the limit.
    pub(crate) fn admit(&mut self) -> bool {
        if self.cut || self.limit.is_some_and(|limit| self.received >= limit) {
            self.cut = true;
            return false;
        }
        self.received += 1;
        true
    }

    /// Whether the stream passed the limit and was cut.
    pub(crate) fn is_cut(&self) -> bool {
        self.cut
    }
}

/// The response a vendor call folds into, priced with `pricing`. Without usage, the usage is
/// a conservative bound ([`Requested::bound`]) marked `usage_estimated`, never a silent zero.
pub(crate) struct Folded {
    pub(crate) text: String,
    pub(crate) thinking: String,
    pub(crate) tool_calls: Vec<ToolCall>,
    pub(crate) finish_reason: FinishReason,
    pub(crate) usage: Option<Usage>,
    pub(crate) model: String,
    pub(crate) raw: Option<Value>,
}

impl Folded {
    pub(crate) fn into_response(self, pricing: &Pricing, requested: &Requested) -> ModelResponse {
        let finish_reason = if !self.tool_calls.is_empty() && self.finish_reason == FinishReason::Stop {
            FinishReason::ToolCalls
        } else {
            self.finish_reason
        };
        let mut response = ModelResponse::text(self.model, self.text);
        response.thinking = Some(self.thinking).filter(|t| !t.is_empty());
        response.tool_calls = self.tool_calls;
        response.finish_reason = finish_reason;
        let (usage, estimated) = match self.usage {
            Some(usage) => (usage, false),
            None => {
                let received = estimate_tokens(&response.text)
                    + response.thinking.as_deref().map_or(0, estimate_tokens)
                    + response
                        .tool_calls
                        .iter()
                        .map(|c| estimate_tokens(&c.name) + estimate_tokens(&c.arguments.to_string()))
                        .sum::<u64>();
                (requested.bound(received), true)
            }
        };
        // Priced by the model the server named, else by the one asked for (a response that
        // names no model, or one the table does not know).
        response.cost_usd =
            pricing.cost(&response.model, &usage).or_else(|| pricing.cost(&requested.model, &usage));
        response.usage = usage;
        response.usage_estimated = estimated;
        response.raw = self.raw;
        response
    }
}

/// A `u64` field of a JSON object (0 when absent).
pub(crate) fn count(value: &Value, field: &str) -> u64 {
    value.get(field).and_then(Value::as_u64).unwrap_or(0)
}

//! The agent over A2A (the Agent2Agent protocol 1.0, JSON-RPC binding), with the wire types of
//! `kaos-a2a`: the agent card at `/.well-known/agent-card.json` and the JSON-RPC endpoint at
//! [`A2A_PATH`], behind the same Host check and bearer tokens as `/v1`.
//!
//! What maps to what: an A2A `contextId` is the caller's session (`{client}.{contextId}`, as
//! `/v1/sessions/{id}` names it), a task is one run (its id is the run id), a run paused for
//! approval is a task in `input-required` whose follow-up message (same `taskId`) approves or
//! denies the pending call and continues the same run. Text deltas stream as artifact updates;
//! usage and cost travel in the task's metadata under `kaos`.

mod card;
mod input;
mod tasks;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, StatusCode, header};
use kaos_a2a::{
    AGENT_CARD_PATH, CancelTaskRequest, ErrorCode, GetTaskRequest, JsonRpcError, JsonRpcRequest,
    JsonRpcResponse, ListTasksRequest, Method, PROTOCOL_VERSION, RequestId, SendMessageRequest,
    SendMessageResponse, StreamResponse, SubscribeToTaskRequest, VERSION_HEADER,
};
use kaos_runner::Runner;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use super::ClientId;

pub(crate) use tasks::Tasks;

/// Where the JSON-RPC endpoint is served.
pub const A2A_PATH: &str = "/a2a";

/// The default largest part of an A2A message, in bytes (1 MiB).
pub const DEFAULT_MAX_PART_BYTES: usize = 1024 * 1024;

/// The default number of finished tasks kept for `GetTask` (the oldest are forgotten first).
pub const DEFAULT_MAX_FINISHED_TASKS: usize = 1024;

/// Options of the A2A face of the HTTP server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct A2aOptions {
    /// The largest part of a message (text, file bytes or JSON data), in bytes (default
    /// 1 MiB); a larger one is refused with `-32602` (invalid params) and nothing runs.
    pub max_part_bytes: usize,
    /// How many finished tasks (completed, failed, canceled) stay readable with `GetTask`
    /// (default 1024); tasks live in the server's memory, sessions in its data directory.
    pub max_finished_tasks: usize,
}

impl Default for A2aOptions {
    fn default() -> Self {
        Self { max_part_bytes: DEFAULT_MAX_PART_BYTES, max_finished_tasks: DEFAULT_MAX_FINISHED_TASKS }
    }
}

impl A2aOptions {
    /// `self` with another part limit.
    pub fn with_max_part_bytes(mut self, bytes: usize) -> Self {
        self.max_part_bytes = bytes;
        self
    }
}

/// The runs of A2A tasks: tracked, so that shutdown lets them finish within its grace, and
/// stopped together after it (a dropped run stores nothing).
#[derive(Debug, Clone, Default)]
pub(crate) struct Drivers {
    tracker: tokio_util::task::TaskTracker,
    stop: tokio_util::sync::CancellationToken,
}

impl Drivers {
    /// Runs `driver` as one of the tracked runs.
    fn spawn(&self, driver: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(driver);
    }

    /// A token cancelled when the server stops waiting for the runs.
    fn token(&self) -> tokio_util::sync::CancellationToken {
        self.stop.child_token()
    }

    /// Lets the runs finish until `deadline`, then cancels those left and waits for them to
    /// drop their runs.
    pub(crate) async fn finish_by(&self, deadline: tokio::time::Instant) {
        self.tracker.close();
        if tokio::time::timeout_at(deadline, self.tracker.wait()).await.is_err() {
            tracing::warn!("A2A tasks still running after the shutdown grace; canceling them");
            self.stop.cancel();
            self.tracker.wait().await;
        }
    }
}

#[derive(Clone)]
struct A2aState {
    runner: Runner,
    tasks: Arc<Tasks>,
    options: A2aOptions,
}

/// The agent card route and the JSON-RPC route.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(
    runner: Runner,
    options: A2aOptions,
    drivers: Drivers,
) -> Router<S> {
    let tasks = Arc::new(Tasks::new(runner.clone(), options.max_finished_tasks, drivers));
    Router::new().route(AGENT_CARD_PATH, get(agent_card)).route(A2A_PATH, post(rpc)).with_state(A2aState {
        runner,
        tasks,
        options,
    })
}

/// The agent card, its interface URL on the host the client used (the Host check has passed).
async fn agent_card(State(state): State<A2aState>, headers: HeaderMap) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let card = card::agent_card(&state.runner, &format!("http://{host}{A2A_PATH}"));
    ([(header::CACHE_CONTROL, "max-age=60")], axum::Json(card)).into_response()
}

/// One JSON-RPC call. Every protocol error is a JSON-RPC error object in a `200` response,
/// as the binding has it; authentication failures are `401` before this runs.
async fn rpc(
    State(state): State<A2aState>,
    Extension(client): Extension<ClientId>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                None,
                JsonRpcError::new(ErrorCode::InvalidRequest, "the request body is too large"),
            );
        }
        Err(rejection) => {
            return error(None, JsonRpcError::new(ErrorCode::InvalidRequest, rejection.body_text()));
        }
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return error(
                None,
                JsonRpcError::new(ErrorCode::ParseError, format!("the body is not JSON: {e}")),
            );
        }
    };
    // The id is echoed when it can be read, even from an invalid request.
    let id = value.get("id").and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok());
    let request: JsonRpcRequest = match serde_json::from_value(value) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("not a JSON-RPC 2.0 request object: {e}");
            return error(id, JsonRpcError::new(ErrorCode::InvalidRequest, message));
        }
    };
    let Some(id) = request.id.clone() else {
        return error(None, JsonRpcError::new(ErrorCode::InvalidRequest, "an A2A request needs an `id`"));
    };
    let method = match request.method() {
        Ok(method) => method,
        Err(e) => return error(Some(id), e.into()),
    };
    if let Err(e) = check_version(&headers, query.as_deref()) {
        return error(Some(id), e);
    }
    match dispatch(&state, &client, method, &request).await {
        Ok(Answer::Json(result)) => json(&JsonRpcResponse::success(Some(id), result)),
        Ok(Answer::Stream(events)) => stream(id, events),
        Err(e) => error(Some(id), e),
    }
}

/// A method's answer: one result, or a stream of events.
enum Answer {
    Json(Value),
    Stream(mpsc::UnboundedReceiver<StreamResponse>),
}

fn result(value: &impl Serialize) -> Result<Answer, JsonRpcError> {
    serde_json::to_value(value)
        .map(Answer::Json)
        .map_err(|e| JsonRpcError::new(ErrorCode::InternalError, e.to_string()))
}

async fn dispatch(
    state: &A2aState,
    client: &ClientId,
    method: Method,
    request: &JsonRpcRequest,
) -> Result<Answer, JsonRpcError> {
    let tasks = &state.tasks;
    match method {
        Method::SendMessage => {
            let params: SendMessageRequest = request.params()?;
            let task = tasks.send(client, params, &state.options).await?;
            result(&SendMessageResponse::Task(task))
        }
        Method::SendStreamingMessage => {
            let params: SendMessageRequest = request.params()?;
            tasks.send_streaming(client, params, &state.options).await.map(Answer::Stream)
        }
        Method::GetTask => {
            let params: GetTaskRequest = request.params()?;
            result(&tasks.get(client, &params.id, params.history_length)?)
        }
        Method::ListTasks => {
            let params: ListTasksRequest = request.params()?;
            result(&tasks.list(client, &params)?)
        }
        Method::CancelTask => {
            let params: CancelTaskRequest = request.params()?;
            result(&tasks.cancel(client, &params.id).await?)
        }
        Method::SubscribeToTask => {
            let params: SubscribeToTaskRequest = request.params()?;
            tasks.subscribe(client, &params.id).map(Answer::Stream)
        }
        Method::CreateTaskPushNotificationConfig
        | Method::GetTaskPushNotificationConfig
        | Method::ListTaskPushNotificationConfigs
        | Method::DeleteTaskPushNotificationConfig => Err(JsonRpcError::new(
            ErrorCode::PushNotificationNotSupported,
            "push notifications are not supported; stream the task or poll it with GetTask",
        )),
        Method::GetExtendedAgentCard => {
            Err(JsonRpcError::new(ErrorCode::UnsupportedOperation, "this agent has no extended agent card"))
        }
    }
}

/// The `A2A-Version` service parameter (header or query parameter) must name this protocol's
/// `major.minor`; an absent one means 0.3, as the specification says.
fn check_version(headers: &HeaderMap, query: Option<&str>) -> Result<(), JsonRpcError> {
    let from_query = query.into_iter().flat_map(|q| q.split('&')).find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.eq_ignore_ascii_case(VERSION_HEADER).then(|| value.to_owned())
    });
    let version = headers
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(from_query)
        .unwrap_or_default();
    let version = version.trim();
    let major_minor: Vec<&str> = version.split('.').take(2).collect();
    if major_minor.join(".") == PROTOCOL_VERSION {
        return Ok(());
    }
    let asked = if version.is_empty() { "none (read as 0.3)" } else { version };
    Err(JsonRpcError::new(
        ErrorCode::VersionNotSupported,
        format!("A2A version {asked} is not supported; send `{VERSION_HEADER}: {PROTOCOL_VERSION}`"),
    )
    .with_metadata("supportedVersions", PROTOCOL_VERSION))
}

fn json(response: &impl Serialize) -> Response {
    match serde_json::to_vec(response) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn error(id: Option<RequestId>, error: JsonRpcError) -> Response {
    json(&JsonRpcResponse::<Value>::failure(id, error))
}

/// Server-sent events, one JSON-RPC response per event (`data: {...}`), until the task is
/// finished or waits for input. A client that goes away only stops its own stream: the task
/// goes on (`SubscribeToTask` reattaches, `CancelTask` stops it).
fn stream(id: RequestId, events: mpsc::UnboundedReceiver<StreamResponse>) -> Response {
    let frames = tokio_stream_from(events).map(move |event| {
        let response = JsonRpcResponse::success(Some(id.clone()), event);
        let data = serde_json::to_string(&response).unwrap_or_else(|e| {
            let failure = JsonRpcResponse::<Value>::failure(
                Some(id.clone()),
                JsonRpcError::new(ErrorCode::InternalError, e.to_string()),
            );
            serde_json::to_string(&failure).unwrap_or_default()
        });
        Ok::<_, Infallible>(Bytes::from(format!("data: {data}\n\n")))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(frames))
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

fn tokio_stream_from<T: Send + 'static>(
    mut receiver: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

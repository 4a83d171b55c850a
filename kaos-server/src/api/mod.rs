//! The HTTP API at `/v1`: turns streamed as server-sent events (or one JSON response),
//! approvals that continue the same run, sessions, memory, search and stored traces. Every
//! route is documented by the OpenAPI document at `/v1/openapi.json`, generated from the
//! handlers (`utoipa`), so the document and the routes cannot drift apart.

mod documents;
mod error;
pub(crate) mod trace;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{HeaderMap, StatusCode, header};
use kaos_agent::{PermissionRule, SectionKind};
use kaos_runner::{Approval, Event, RunError, RunOptions, RunState, RunStream, Runner, SessionId, fold};
use kaos_tools::ToolSelector;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use documents::{DEFAULT_MAX_CHUNKS_PER_SESSION, DocumentAdded, DocumentLimits, DocumentsAdded};
pub(crate) use error::ApiError;
pub use error::{ErrorBody, ErrorDetail};
pub use trace::{Trace, TraceSpan};

use super::ClientId;

/// What the API's handlers share.
#[derive(Clone)]
struct ApiState {
    runner: Runner,
    /// How uploaded documents are ingested.
    documents: DocumentLimits,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "KAOS HTTP API",
        description = "Run turns of a KAOS agent (streamed as server-sent events), approve paused tool calls, \
                       and read, search and delete sessions. Every route needs `Authorization: Bearer <token>`; \
                       each token is a caller, and a caller sees only its own sessions and runs."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(ErrorBody, ErrorDetail))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API's routes (under `/v1`) and their OpenAPI document.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(
    runner: Runner,
    documents: DocumentLimits,
) -> (axum::Router<S>, utoipa::openapi::OpenApi) {
    let api = OpenApiRouter::<ApiState>::new()
        .routes(routes!(post_turn))
        .routes(routes!(post_approval))
        .routes(routes!(get_run))
        .routes(routes!(list_sessions))
        .routes(routes!(get_session, delete_session))
        .routes(routes!(get_memory))
        .routes(routes!(documents::post_documents))
        .routes(routes!(search))
        .routes(routes!(get_trace));
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/v1", api)
        .with_state(ApiState { runner, documents })
        .split_for_parts();
    (router, openapi)
}

/// `404` for any path no route serves.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// `405` for a known path with another method.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take this method",
    )
}

/// The runner session of `client`'s session `public`: `{client}.{public}`.
pub(crate) fn scoped(client: &ClientId, public: &str) -> Result<SessionId, ApiError> {
    SessionId::new(public).map_err(|e| ApiError::invalid(e.to_string()))?;
    SessionId::new(&format!("{client}.{public}")).map_err(|e| ApiError::invalid(e.to_string()))
}

/// `stored` as `client` names it (without its namespace).
fn unscope(client: &ClientId, stored: &str) -> String {
    stored.strip_prefix(&format!("{client}.")).unwrap_or(stored).to_owned()
}

fn parse_json<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body?;
    serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("text/event-stream")))
}

/// A new turn.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TurnRequest {
    /// What the user says.
    pub message: String,
    /// Per-request guardrails.
    #[serde(default)]
    pub options: TurnOptions,
}

/// Per-request guardrails of a turn.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TurnOptions {
    /// Tool-name globs approved in advance for this turn (the agent's deny rules still apply).
    #[serde(default)]
    pub approve: Vec<String>,
    /// Most this turn may cost, in USD (positive); the tighter of it and the agent's budget
    /// applies.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
}

/// A person's answer to a paused tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Run this call.
    Approve,
    /// Run it, and further calls of the same tool in this run.
    Always,
    /// Do not run it; the model is told why.
    Deny,
}

/// The answer to a paused run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// approve, always or deny.
    pub decision: Decision,
    /// With `deny`: why, for the model.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A run paused for approval.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunView {
    /// The run.
    pub run_id: String,
    /// Its session.
    pub session_id: String,
    /// The paused turn's number.
    pub turn_number: u32,
    /// The tool waiting for approval.
    pub tool_name: String,
    /// The pending call's id.
    pub call_id: String,
    /// The arguments it would run with.
    #[schema(value_type = Object)]
    pub arguments: Value,
    /// Why approval is needed.
    pub reason: String,
    /// When it paused, in milliseconds since the Unix epoch.
    pub paused_at_ms: u64,
    /// Whether it was resumed already.
    pub resumed: bool,
}

/// One stored session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    /// The session, as the caller names it.
    pub id: String,
    /// Completed turns.
    pub turns: u32,
    /// Cost of all its turns in USD.
    pub cost_usd: f64,
    /// Tokens of all its turns.
    pub total_tokens: u64,
    /// When its last turn finished, in milliseconds since the Unix epoch.
    pub last_turn_at_ms: Option<u64>,
}

/// The caller's sessions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    /// Sorted by id.
    pub sessions: Vec<SessionView>,
}

/// A whole session: totals, every turn's record and the current memory.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionDetail {
    /// Totals.
    #[serde(flatten)]
    pub summary: SessionView,
    /// Every turn's record, oldest first (messages, tool calls, usage, cost, stop reason).
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<Value>,
    /// The current memory, by section.
    #[schema(value_type = Object)]
    pub memory: Value,
}

/// One section of a session's memory.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemorySectionView {
    /// The session.
    pub session_id: String,
    /// The section.
    pub section: String,
    /// Tokens its items take.
    pub tokens: u64,
    /// Its items, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
}

/// The query of a memory search.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// What to look for.
    pub q: String,
    /// How many items, 1 to 50 [5].
    #[serde(default)]
    pub k: Option<usize>,
}

/// One search hit.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    /// The section it is in.
    pub section: String,
    /// The item's id.
    pub id: u64,
    /// Its text.
    pub text: String,
}

/// Memory items relevant to a query (BM25 over the searchable sections), best first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchResults {
    /// The query.
    pub query: String,
    /// Best first.
    pub hits: Vec<SearchHit>,
}

/// Runs one turn of the agent in a session (created on first use).
#[utoipa::path(
    post,
    path = "/sessions/{id}/turns",
    tag = "turns",
    params(("id" = String, Path, description = "The session: 1 to 95 characters of A-Z, a-z, 0-9, '.', '_', '-'")),
    request_body = TurnRequest,
    responses(
        (status = 200, description = "With `Accept: text/event-stream`: the turn's events as server-sent events \
            (`event: <type>`, `id: <sequence>`, `data: <event JSON>`), ending with `turn_summary` (or \
            `tool_call_approval_required` when the run pauses; `error` when it fails). Otherwise the \
            `TurnResponse` as JSON. A client that disconnects cancels the turn: nothing of it is stored.",
            content((Object = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "Invalid session id, body or options", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 502, description = "The model failed", body = ErrorBody),
    )
)]
async fn post_turn(
    State(state): State<ApiState>,
    Extension(client): Extension<ClientId>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = path?;
    let session = scoped(&client, &id)?;
    let request: TurnRequest = parse_json(body)?;
    if request.message.trim().is_empty() {
        return Err(ApiError::invalid("`message` must not be empty"));
    }
    ToolSelector::new(&request.options.approve).map_err(|e| ApiError::invalid(e.to_string()))?;
    let mut options = RunOptions::default();
    for glob in &request.options.approve {
        options = options.with_permission(PermissionRule::allow(glob.clone()));
    }
    if let Some(cap) = request.options.max_cost_usd {
        if !(cap.is_finite() && cap > 0.0) {
            return Err(ApiError::invalid("`options.max_cost_usd` must be a positive number of USD"));
        }
        options = options.with_max_cost_usd(cap);
    }
    let recorder = trace::Recorder::fresh(state.runner.runtime().vfs().clone(), session.clone());
    let stream = state.runner.run_with(request.message, session.as_str(), options);
    respond(stream, recorder, client, wants_events(&headers)).await
}

/// Approves or denies a paused run's pending tool call; the same run continues.
#[utoipa::path(
    post,
    path = "/runs/{run_id}/approval",
    tag = "turns",
    params(("run_id" = String, Path, description = "The paused run")),
    request_body = ApprovalRequest,
    responses(
        (status = 200, description = "The rest of the run, like a turn: server-sent events with \
            `Accept: text/event-stream`, else the `TurnResponse` of the whole turn as JSON.",
            content((Object = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 404, description = "No paused run of this caller with this id", body = ErrorBody),
        (status = 409, description = "Resumed already, or its session moved on", body = ErrorBody),
    )
)]
async fn post_approval(
    State(state): State<ApiState>,
    Extension(client): Extension<ClientId>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(run_id) = path?;
    let request: ApprovalRequest = parse_json(body)?;
    let run = find_run(&state.runner, &client, &run_id).await?;
    if run.resumed {
        return Err(ApiError::conflict(format!("run {run_id} was resumed already")));
    }
    let approval = match request.decision {
        Decision::Approve => Approval::approve(),
        Decision::Always => Approval::approve_and_remember(),
        Decision::Deny => Approval::deny(request.reason.unwrap_or_else(|| "denied by the user".into())),
    };
    let session = SessionId::new(&run.session_id).map_err(|e| ApiError::internal(e.to_string()))?;
    let recorder = trace::Recorder::resumed(state.runner.runtime().vfs().clone(), session, run.turn_number);
    let stream = state.runner.resume(run, approval);
    respond(stream, recorder, client, wants_events(&headers)).await
}

/// A paused run and the call it waits on.
#[utoipa::path(
    get,
    path = "/runs/{run_id}",
    tag = "turns",
    params(("run_id" = String, Path, description = "The paused run")),
    responses(
        (status = 200, description = "The paused run", body = RunView),
        (status = 404, description = "No paused run of this caller with this id", body = ErrorBody),
    )
)]
async fn get_run(
    State(state): State<ApiState>,
    Extension(client): Extension<ClientId>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RunView>, ApiError> {
    let Path(run_id) = path?;
    let run = find_run(&state.runner, &client, &run_id).await?;
    Ok(Json(RunView {
        session_id: unscope(&client, &run.session_id),
        turn_number: run.turn_number,
        tool_name: run.pending.tool_name.clone(),
        call_id: run.pending.call_id.clone(),
        arguments: run.pending.arguments.clone(),
        reason: run.pending.reason.clone(),
        paused_at_ms: run.paused_at_ms,
        resumed: run.resumed,
        run_id: run.run_id,
    }))
}

/// The caller's paused run `run_id`; another caller's run is the same `404` as a missing one.
async fn find_run(runner: &Runner, client: &ClientId, run_id: &str) -> Result<RunState, ApiError> {
    let missing = || ApiError::not_found(format!("no paused run {run_id}"));
    if run_id.is_empty()
        || run_id.len() > 128
        || !run_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(missing());
    }
    match runner.run_state(run_id).await {
        Ok(run) if run.session_id.starts_with(&format!("{client}.")) => Ok(run),
        Ok(_) | Err(RunError::RunState(_)) => Err(missing()),
        Err(RunError::Vfs(e)) if e.is_not_found() => Err(missing()),
        Err(e) => Err(e.into()),
    }
}

/// The caller's sessions.
#[utoipa::path(
    get,
    path = "/sessions",
    tag = "sessions",
    responses((status = 200, description = "The caller's sessions, sorted by id", body = SessionList))
)]
async fn list_sessions(
    State(state): State<ApiState>,
    Extension(client): Extension<ClientId>,
) -> Result<Json<SessionList>, ApiError> {
    let sessions = state.runner.sessions();
    let prefix = format!("{client}.");
    let mut out = Vec::new();
    for id in sessions.ids().await? {
        let Some(public) = id.as_str().strip_prefix(&prefix) else { continue };
        let records = sessions.turns(id.as_str()).await?.unwrap_or_default();
        out.push(summarize(public.to_owned(), &records));
    }
    Ok(Json(SessionList { sessions: out }))
}

fn summarize(id: String, records: &[kaos_runner::TurnRecord]) -> SessionView {
    // Records without messages only changed memory; they are not turns.
    let turns: Vec<_> = records.iter().filter(|r| !r.messages.is_empty()).collect();
    SessionView {
        id,
        turns: u32::try_from(turns.len()).unwrap_or(u32::MAX),
        cost_usd: turns.iter().map(|r| r.cost_usd).sum(),
        total_tokens: turns.iter().map(|r| r.usage.total_tokens()).sum(),
        last_turn_at_ms: turns.last().map(|r| r.finished_at_ms),
    }
}

/// A whole session.
#[utoipa::path(
    get,
    path = "/sessions/{id}",
    tag = "sessions",
    params(("id" = String, Path, description = "The session")),
    responses(
        (status = 200, description = "Totals, records and memory", body = SessionDetail),
        (status = 404, description = "No such session", body = ErrorBody),
    )
)]
async fn get_session(
    State(state): State<ApiState>,
    Extension(client): Extension<ClientId>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<SessionDetail>, ApiError> {
    let Path(id) = path?;
    let session = scoped(&client, &id)?;
    let export = state.runner.export_session(session.as_str()).await?;
    let summary = summarize(id, &export.records);
    let records = export.records.iter().filter_map(|r| serde_json::to_value(r).ok()).collect();
    let memory = serde_json::to_value(&export.memory).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(SessionDetail { summary, records, memory }))
}

/// Deletes a session and everything stored under it (after a turn in progress on it).
#[utoipa::path(
    delete,
    path = "/sessions/{id}",
    tag = "sessions",
    params(("id" = String, Path, description = "The session")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such session", body = ErrorBody),
    )
)]
async fn delete_session(
    State(state): State<ApiState>,
    Extension(client): Extension<ClientId>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = path?;
    let session = scoped(&client, &id)?;
    if state.runner.sessions().delete(session.as_str()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no session {id}")))
    }
}

async fn existing(runner: &Runner, session: &SessionId, public: &str) -> Result<(), ApiError> {
    match runner.sessions().turns(session.as_str()).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!("no session {public}"))),
    }
}

/// One section of a session's memory, as the next turn would see it.
#[utoipa::path(
    get,
    path = "/sessions/{id}/memory/{section}",
    tag = "sessions",
    params(
        ("id" = String, Path, description = "The session"),
        ("section" = String, Path, description = "messages, actions, documents, findings, plan_history, reflection, lessons, …"),
    ),
    responses(
        (status = 200, description = "The section's items", body = MemorySectionView),
        (status = 400, description = "Unknown section", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
    )
)]
async fn get_memory(
    State(state): State<ApiState>,
    Extension(client): Extension<ClientId>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<MemorySectionView>, ApiError> {
    let Path((id, section)) = path?;
    let session = scoped(&client, &id)?;
    let kind: SectionKind = serde_json::from_value(json!(section))
        .map_err(|_| ApiError::invalid(format!("unknown memory section `{section}`")))?;
    existing(&state.runner, &session, &id).await?;
    let memory = state.runner.memory(session.as_str()).await?;
    let found = memory.section(kind);
    Ok(Json(MemorySectionView {
        session_id: id,
        section: kind.as_str().to_owned(),
        tokens: found.tokens(),
        items: found.items().iter().filter_map(|i| serde_json::to_value(i).ok()).collect(),
    }))
}

/// Searches a session's memory (BM25 over its searchable sections).
#[utoipa::path(
    get,
    path = "/sessions/{id}/search",
    tag = "sessions",
    params(("id" = String, Path, description = "The session"), SearchQuery),
    responses(
        (status = 200, description = "The best items first", body = SearchResults),
        (status = 400, description = "Missing or empty `q`", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
    )
)]
async fn search(
    State(state): State<ApiState>,
    Extension(client): Extension<ClientId>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<SearchResults>, ApiError> {
    let Path(id) = path?;
    let Query(query) = query?;
    if query.q.trim().is_empty() {
        return Err(ApiError::invalid("`q` must not be empty"));
    }
    let k = query.k.unwrap_or(5).clamp(1, 50);
    let session = scoped(&client, &id)?;
    existing(&state.runner, &session, &id).await?;
    let memory = state.runner.memory(session.as_str()).await?;
    let items: Vec<(&str, &kaos_runner::MemoryItem)> = memory
        .sections()
        .filter(|s| s.config().searchable)
        .flat_map(|s| s.items().iter().map(move |i| (s.kind().as_str(), i)))
        .collect();
    let texts: Vec<_> = items.iter().map(|(_, i)| i.text()).collect();
    let hits = kaos_session::bm25_top_k(&query.q, texts.iter().map(|t| t.as_ref()), k);
    let hits = hits
        .into_iter()
        .filter_map(|h| {
            let (section, item) = items.get(h)?;
            Some(SearchHit { section: (*section).to_owned(), id: item.id, text: texts.get(h)?.to_string() })
        })
        .collect();
    Ok(Json(SearchResults { query: query.q, hits }))
}

/// A turn's spans as a waterfall, with duration, tokens and cost per span and totals.
#[utoipa::path(
    get,
    path = "/sessions/{id}/turns/{n}/trace",
    tag = "sessions",
    params(("id" = String, Path, description = "The session"), ("n" = u32, Path, description = "The turn's number, from 1")),
    responses(
        (status = 200, description = "The turn's trace", body = Trace),
        (status = 404, description = "No trace stored for this turn (e.g. it ran outside the server)", body = ErrorBody),
    )
)]
async fn get_trace(
    State(state): State<ApiState>,
    Extension(client): Extension<ClientId>,
    path: Result<Path<(String, u32)>, PathRejection>,
) -> Result<Json<Trace>, ApiError> {
    let Path((id, n)) = path?;
    let session = scoped(&client, &id)?;
    let events = trace::read(state.runner.runtime().vfs(), &session, n)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no trace of turn {n} in session {id}")))?;
    Ok(Json(trace::waterfall(id, n, &events)))
}

/// The run as the client asked for it: its events as server-sent events, or its folded
/// `TurnResponse`. Either way the trace is recorded as the events pass.
async fn respond(
    stream: RunStream,
    recorder: trace::Recorder,
    client: ClientId,
    events: bool,
) -> Result<Response, ApiError> {
    let recorded = record(stream, recorder);
    if events {
        let frames = recorded.map(move |item| Ok::<_, Infallible>(Bytes::from(frame(&client, item))));
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .header("x-accel-buffering", "no")
            .body(Body::from_stream(frames))
            .map_err(|e| ApiError::internal(e.to_string()));
    }
    let mut response = fold(recorded).await?;
    response.session_id = unscope(&client, &response.session_id).into();
    Ok(Json(response).into_response())
}

/// The run's events, each seen by the recorder before it is passed on. Dropping this stream
/// drops the run (cancelled: nothing stored).
pub(crate) fn record(
    stream: RunStream,
    recorder: trace::Recorder,
) -> impl Stream<Item = Result<Event, RunError>> + Send {
    futures::stream::unfold((stream, recorder), |(mut stream, mut recorder)| async move {
        let item = stream.next().await?;
        if let Ok(event) = &item {
            recorder.observe(event).await;
        }
        Some((item, (stream, recorder)))
    })
}

/// One server-sent event: the event with the session as the caller names it, or the error.
fn frame(client: &ClientId, item: Result<Event, RunError>) -> String {
    match item {
        Ok(mut event) => {
            event.session_id = Arc::from(unscope(client, &event.session_id));
            event.to_sse().unwrap_or_else(|e| error_frame(&ApiError::internal(e.to_string())))
        }
        Err(error) => error_frame(&ApiError::from(error)),
    }
}

fn error_frame(error: &ApiError) -> String {
    let data = serde_json::to_string(&error.body()).unwrap_or_else(|_| "{}".into());
    format!("event: error\ndata: {data}\n\n")
}

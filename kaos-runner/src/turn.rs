//! The turn loop: hydrate → model call → tools → … → persist.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::future::join_all;
use kaos_providers::{Message, ModelRequest, ModelResponse, ProviderError, StreamEvent, ToolCall, Usage};
use kaos_tools::{ToolContext, ToolError, ToolResult, invoke_tool, tier_result};
use kaos_vfs::{ScopedVfs, Vfs};
use serde_json::{Map, Value, json};

use crate::events::{Emitter, OpenSpan};
use crate::runner::Shared;
use crate::session::{Hydrated, SESSION_LAYOUT_VERSION, SessionStore, TurnRecord};
use crate::{
    EventKind, MemoryEventKind, RunError, SessionId, SpanPhase, SpanSubject, StopReason, ToolCallRecord,
};

/// Runs one turn, reporting a failure as a `run_error` event before returning it.
pub(crate) async fn execute(
    shared: &Shared,
    session: &SessionId,
    message: String,
    emit: &Emitter,
) -> Result<(), RunError> {
    let result = turn(shared, session, message, emit).await;
    if let Err(error) = &result {
        emit.emit(EventKind::RunError { error_type: error.kind().to_owned(), message: error.to_string() });
    }
    result
}

async fn turn(shared: &Shared, session: &SessionId, message: String, emit: &Emitter) -> Result<(), RunError> {
    let _session = shared.locks.lock(session).await;
    let hydrated = hydrate(shared, session, emit).await?;
    let turn_number = u32::try_from(hydrated.records.len() + 1).unwrap_or(u32::MAX);
    let turn_span = emit.start(
        SpanSubject::Turn,
        format!("turn.{turn_number}"),
        None,
        attrs([("turn_number", json!(turn_number))]),
    );

    let outcome = drive(shared, session, &hydrated, message, emit, &turn_span).await;
    let (stop_reason, added, tool_calls, usage, cost_usd) = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            emit.end(turn_span, SpanPhase::Error, attrs([("error", json!(error.to_string()))]));
            return Err(error);
        }
    };

    let record = TurnRecord {
        v: SESSION_LAYOUT_VERSION,
        turn: turn_number,
        run_id: emit.run_id.to_string(),
        agent_fingerprint: shared.fingerprint.to_string(),
        messages: added,
        tool_calls,
        usage,
        cost_usd,
        stop_reason,
        finished_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default(),
    };
    if let Err(error) = shared.store.append(session, &record).await {
        emit.end(turn_span, SpanPhase::Error, attrs([("error", json!(error.to_string()))]));
        return Err(error);
    }
    let added = record.messages.len();
    emit.emit(memory(MemoryEventKind::Added, added, Map::new()));
    emit.emit(memory(MemoryEventKind::Persisted, added, Map::new()));
    emit.end(turn_span, SpanPhase::Complete, attrs([("turn_number", json!(turn_number))]));
    emit.emit(EventKind::TurnSummary { turn_number, stop_reason });
    Ok(())
}

async fn hydrate(shared: &Shared, session: &SessionId, emit: &Emitter) -> Result<Hydrated, RunError> {
    let hydrated = shared.store.load(session).await?;
    if let Some(bytes) = hydrated.dropped_tail {
        tracing::warn!(session = %session, bytes, "dropping a torn last line of the session log");
        shared.store.repair(session, &hydrated).await?;
        emit.emit(memory(
            MemoryEventKind::Warning,
            0,
            attrs([("reason", json!("torn last line dropped")), ("bytes", json!(bytes))]),
        ));
    }
    emit.emit(memory(MemoryEventKind::Hydrated, hydrated.messages().count(), Map::new()));
    Ok(hydrated)
}

type Outcome = (StopReason, Vec<Message>, Vec<ToolCallRecord>, Usage, f64);

/// The ReAct loop: model call, then the tools it asked for, until a final answer or the
/// iteration limit.
async fn drive(
    shared: &Shared,
    session: &SessionId,
    hydrated: &Hydrated,
    message: String,
    emit: &Emitter,
    turn_span: &OpenSpan,
) -> Result<Outcome, RunError> {
    let agent = &shared.agent;
    let mut request = ModelRequest::new(
        agent.model().as_str(),
        context(hydrated, agent.memory().messages_budget_tokens.get()),
    )
    .with_system(agent.instructions())
    .with_tools(shared.tool_definitions.clone());
    let first_new = request.messages.len();
    request.messages.push(Message::user(message));

    let mut tool_calls = Vec::new();
    let mut usage = Usage::default();
    let mut cost_usd = 0.0;
    let mut workspace: Option<Arc<dyn Vfs>> = None;
    let max_iterations = agent.limits().max_iterations.get();
    let mut stop_reason = StopReason::IterationLimit;
    for iteration in 1..=max_iterations {
        let response = call_model(shared, &request, iteration, emit, turn_span).await?;
        usage += response.usage;
        cost_usd += response.cost_usd.unwrap_or(0.0);
        request.messages.push(response.to_message());
        if response.tool_calls.is_empty() {
            stop_reason = StopReason::Completed;
            break;
        }
        if iteration == max_iterations {
            // Keep the history well-formed for the next turn: every call gets a result.
            for call in &response.tool_calls {
                let text = "Not run: the turn reached its iteration limit before this call could run.";
                request.messages.push(Message::tool(&call.id, &call.name, text, true));
            }
            break;
        }
        let vfs = match &workspace {
            Some(vfs) => vfs.clone(),
            None => workspace.insert(session_workspace(shared, session)?).clone(),
        };
        let records = run_tools(shared, session, &response.tool_calls, vfs, emit, turn_span).await;
        for record in records {
            request.messages.push(Message::tool(
                &record.call_id,
                &record.name,
                &record.result,
                record.is_error,
            ));
            tool_calls.push(record);
        }
    }
    let added = request.messages.split_off(first_new);
    Ok((stop_reason, added, tool_calls, usage, cost_usd))
}

/// The history the model sees: whole turns, newest first, while they fit the messages budget.
/// Turns are kept whole so a tool call is never separated from its result.
fn context(hydrated: &Hydrated, budget_tokens: u32) -> Vec<Message> {
    let mut remaining = u64::from(budget_tokens);
    let mut first = hydrated.records.len();
    for record in hydrated.records.iter().rev() {
        let cost: u64 = record.messages.iter().map(Message::estimated_tokens).sum();
        if cost > remaining {
            break;
        }
        remaining -= cost;
        first -= 1;
    }
    hydrated.records[first..].iter().flat_map(|r| r.messages.iter().cloned()).collect()
}

async fn call_model(
    shared: &Shared,
    request: &ModelRequest,
    iteration: u32,
    emit: &Emitter,
    turn_span: &OpenSpan,
) -> Result<ModelResponse, RunError> {
    let span = emit.start(
        SpanSubject::LlmCall,
        format!("llm.{}", request.model),
        Some(turn_span),
        attrs([("model", json!(request.model)), ("iteration", json!(iteration))]),
    );
    let mut streamed = String::new();
    let mut response = None;
    let mut stream = shared.model.stream(request);
    while let Some(item) = stream.next().await {
        match item {
            Ok(StreamEvent::TextDelta { text }) => {
                streamed.push_str(&text);
                emit.emit(EventKind::TextDelta { text });
            }
            Ok(StreamEvent::ThinkingDelta { text }) => emit.emit(EventKind::ThinkingDelta { text }),
            Ok(StreamEvent::ToolCallDelta { index, arguments, .. }) => {
                emit.emit(EventKind::ToolCallArgsDelta { index, text: arguments })
            }
            Ok(StreamEvent::Completed { response: r }) => response = Some(r),
            Ok(_) => {}
            Err(error) => {
                emit.end(span, SpanPhase::Error, attrs([("error", json!(error.to_string()))]));
                return Err(error.into());
            }
        }
    }
    let Some(response) = response else {
        let error = ProviderError::MalformedResponse {
            message: "the stream ended without a completed response".into(),
        };
        emit.end(span, SpanPhase::Error, attrs([("error", json!(error.to_string()))]));
        return Err(error.into());
    };
    // Events must add up to the response even for a client that streams less than it returns.
    match response.text.strip_prefix(streamed.as_str()) {
        Some(rest) if !rest.is_empty() => emit.emit(EventKind::TextDelta { text: rest.to_owned() }),
        Some(_) => {}
        None => tracing::warn!(model = %request.model, "streamed text disagrees with the completed response"),
    }
    emit.emit(EventKind::UsageObserved {
        model: response.model.clone(),
        usage: response.usage,
        cost_usd: response.cost_usd,
    });
    emit.end(
        span,
        SpanPhase::Complete,
        attrs([
            ("finish_reason", json!(response.finish_reason)),
            ("tool_calls", json!(response.tool_calls.len())),
        ]),
    );
    Ok(response)
}

/// The session's tool workspace: `sessions/{id}/files/`, nothing else reachable.
fn session_workspace(shared: &Shared, session: &SessionId) -> Result<Arc<dyn Vfs>, RunError> {
    let root = SessionStore::dir(session)?.join("files")?;
    Ok(Arc::new(ScopedVfs::new(shared.runtime.vfs().clone(), root)))
}

/// Runs one model response's tool calls. Read-only tools run concurrently when every call of
/// the response is read-only; otherwise calls run one after another, in order. Results are
/// always reported in call order.
async fn run_tools(
    shared: &Shared,
    session: &SessionId,
    calls: &[ToolCall],
    vfs: Arc<dyn Vfs>,
    emit: &Emitter,
    turn_span: &OpenSpan,
) -> Vec<ToolCallRecord> {
    let all_read_only =
        calls.iter().all(|c| shared.tools.get(&c.name).is_some_and(|t| t.spec().annotations.read_only));
    let context = ToolContext::new(session.as_arc().clone(), emit.run_id.clone(), "", vfs);
    if all_read_only && calls.len() > 1 {
        let spans: Vec<_> = calls.iter().map(|call| start_tool_span(call, emit, turn_span)).collect();
        let results = join_all(calls.iter().map(|call| run_tool(shared, call, context.clone()))).await;
        spans
            .into_iter()
            .zip(calls)
            .zip(results)
            .map(|((span, call), result)| finish(call, result, span, emit))
            .collect()
    } else {
        let mut records = Vec::with_capacity(calls.len());
        for call in calls {
            let span = start_tool_span(call, emit, turn_span);
            let result = run_tool(shared, call, context.clone()).await;
            records.push(finish(call, result, span, emit));
        }
        records
    }
}

fn start_tool_span(call: &ToolCall, emit: &Emitter, turn_span: &OpenSpan) -> OpenSpan {
    emit.start(
        SpanSubject::ToolCall,
        format!("tool.{}", call.name),
        Some(turn_span),
        attrs([
            ("tool_name", json!(call.name)),
            ("call_id", json!(call.id)),
            ("arguments", call.arguments.clone()),
        ]),
    )
}

async fn run_tool(shared: &Shared, call: &ToolCall, context: ToolContext) -> ToolResult {
    let Some(tool) = shared.tools.get(&call.name) else {
        return ToolError::NotFound(call.name.clone()).into_result();
    };
    let context = context.with_call_id(call.id.as_str());
    let vfs = context.vfs().clone();
    let default_timeout = shared.runtime.tools().default_timeout();
    let result =
        match invoke_tool(tool.as_ref(), call.arguments.clone(), context.clone(), default_timeout).await {
            Ok(result) => result,
            Err(error) => {
                if let Some(detail) = error.detail() {
                    tracing::warn!(tool = %call.name, %detail, "tool failed");
                }
                return error.into_result();
            }
        };
    let artifact_id = format!("{}-{}", context.run_id(), sanitize(&call.id));
    tier_result(result, vfs.as_ref(), &artifact_id).await.unwrap_or_else(ToolError::into_result)
}

/// Keeps `[A-Za-z0-9_-]` of a vendor's call id so it can name an artifact.
fn sanitize(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').take(64).collect()
}

fn finish(call: &ToolCall, result: ToolResult, span: OpenSpan, emit: &Emitter) -> ToolCallRecord {
    let text = result.to_model_text();
    emit.end(
        span,
        SpanPhase::Complete,
        attrs([
            ("tool_name", json!(call.name)),
            ("call_id", json!(call.id)),
            ("result", json!(text)),
            ("is_error", json!(result.is_error)),
        ]),
    );
    ToolCallRecord {
        call_id: call.id.clone(),
        name: call.name.clone(),
        arguments: call.arguments.clone(),
        result: text,
        is_error: result.is_error,
    }
}

fn memory(kind: MemoryEventKind, item_count: usize, attributes: Map<String, Value>) -> EventKind {
    EventKind::Memory { kind, section: "messages".into(), item_count, attributes }
}

fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

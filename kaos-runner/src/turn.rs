//! The turn loop: hydrate → assemble → model call → tools → … → remember → persist.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::future::join_all;
use kaos_agent::SectionKind;
use kaos_providers::{
    Message, ModelRequest, ModelResponse, ProviderError, StreamEvent, ToolCall, ToolDefinition, Usage,
};
use kaos_tools::{ToolContext, ToolError, ToolResult, invoke_tool, tier_result};
use kaos_vfs::{ScopedVfs, Vfs};
use serde_json::{Map, Value, json};

use crate::events::{Emitter, OpenSpan};
use crate::runner::Shared;
use crate::session::{
    Change, ExtractiveSummarizer, Hydrated, MEMORY_SEARCH_TOOL, NewItem, SESSION_LAYOUT_VERSION,
    SessionMemory, SessionStore, TurnRecord, assemble, bm25_top_k,
};
use crate::{
    EventKind, MemoryEventKind, RunError, SessionId, SpanPhase, SpanSubject, StopReason, ToolCallRecord,
};

/// Most characters of a tool result kept in the actions section.
const ACTION_RESULT_CHARS: usize = 500;

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
    // In-process first (cheap, fair), then the VFS lock that also excludes other processes.
    let _local = shared.locks.lock(session).await;
    let _shared = shared.store.lock(session).await?;
    let stamp = shared.store.stamp(session).await?;
    let (mut memory, position) = match shared.cache.take(session, stamp) {
        Some((memory, position)) => {
            let attributes = attrs([("cached", json!(true))]);
            let held = memory.section(SectionKind::Messages).items().len();
            emit.emit(memory_event(MemoryEventKind::Hydrated, "messages", held, attributes));
            (memory, position)
        }
        None => {
            let hydrated = hydrate(shared, session, emit).await?;
            (hydrated.memory, hydrated.position)
        }
    };
    let turn_number = memory.turn() + 1;
    let turn_span = emit.start(
        SpanSubject::Turn,
        format!("turn.{turn_number}"),
        None,
        attrs([("turn_number", json!(turn_number))]),
    );

    let outcome = drive(shared, session, &mut memory, message, emit, &turn_span).await;
    let (stop_reason, added, tool_calls, usage, cost_usd) = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            emit.end(turn_span, SpanPhase::Error, attrs([("error", json!(error.to_string()))]));
            return Err(error);
        }
    };
    remember(shared, &mut memory, &added, &tool_calls, emit).await;
    memory.end_turn(turn_number);

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
        memory: memory.take_ops(),
    };
    let committed = match shared.store.commit(session, &memory, &record, position).await {
        Ok(position) => shared.store.stamp(session).await.map(|stamp| (position, stamp)),
        Err(error) => Err(error),
    };
    match committed {
        Ok((position, stamp)) => shared.cache.put(session.clone(), memory, position, stamp),
        Err(error) => {
            emit.end(turn_span, SpanPhase::Error, attrs([("error", json!(error.to_string()))]));
            return Err(error);
        }
    }
    emit.emit(memory_event(MemoryEventKind::Persisted, "messages", record.messages.len(), Map::new()));
    emit.end(turn_span, SpanPhase::Complete, attrs([("turn_number", json!(turn_number))]));
    emit.emit(EventKind::TurnSummary { turn_number, stop_reason });
    Ok(())
}

async fn hydrate(shared: &Shared, session: &SessionId, emit: &Emitter) -> Result<Hydrated, RunError> {
    let hydrated =
        shared.store.load_for_write(session, shared.agent.memory(), shared.counter.clone()).await?;
    if let Some(bytes) = hydrated.dropped_tail {
        tracing::warn!(session = %session, bytes, "dropped a torn last line of the session log");
        let attributes = attrs([("reason", json!("torn last line dropped")), ("bytes", json!(bytes))]);
        emit.emit(memory_event(MemoryEventKind::Warning, "messages", 0, attributes));
    }
    if hydrated.bad_checkpoint {
        tracing::warn!(session = %session, "ignoring an unreadable checkpoint; replaying the whole log");
        let attributes = attrs([("reason", json!("unreadable checkpoint ignored"))]);
        emit.emit(memory_event(MemoryEventKind::Warning, "messages", 0, attributes));
    }
    let held = hydrated.memory.section(SectionKind::Messages).items().len();
    emit.emit(memory_event(MemoryEventKind::Hydrated, "messages", held, Map::new()));
    Ok(hydrated)
}

type Outcome = (StopReason, Vec<Message>, Vec<ToolCallRecord>, Usage, f64);

/// The ReAct loop: model call, then the tools it asked for, until a final answer or the
/// iteration limit.
async fn drive(
    shared: &Shared,
    session: &SessionId,
    memory: &mut SessionMemory,
    message: String,
    emit: &Emitter,
    turn_span: &OpenSpan,
) -> Result<Outcome, RunError> {
    let agent = &shared.agent;
    memory.begin_turn();
    memory.add(SectionKind::Messages, NewItem::message(Message::user(message.clone())))?;
    let top_k = agent.limits().retrieval_top_k.get() as usize;
    let assembly = assemble(memory, agent.memory(), top_k, agent.instructions(), &message)?;
    for (section, shown, held) in &assembly.searched {
        let attributes =
            attrs([("shown", json!(shown)), ("query_tokens", json!(shared.counter.count(&message)))]);
        emit.emit(memory_event(MemoryEventKind::Searched, section.as_str(), *held, attributes));
    }
    let mut tools = shared.tool_definitions.clone();
    if assembly.hidden_searchable > 0 && shared.offers_memory_search {
        tools.push(memory_search_definition());
    }
    let mut request = ModelRequest::new(agent.model().as_str(), assembly.messages)
        .with_system(assembly.system)
        .with_tools(tools);
    let first_new = request.messages.len() - 1;

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
        let records = run_tools(shared, session, memory, &response.tool_calls, vfs, emit, turn_span).await;
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

/// Adds what the turn produced to memory (the user message is already there), summarizes
/// what overflowing sections evicted, and reports the changes as events.
async fn remember(
    shared: &Shared,
    memory: &mut SessionMemory,
    added: &[Message],
    calls: &[ToolCallRecord],
    emit: &Emitter,
) {
    for message in added.iter().skip(1) {
        if let Err(error) = memory.add(SectionKind::Messages, NewItem::message(message.clone())) {
            warn_memory(emit, "messages", &error);
        }
    }
    for call in calls {
        let result: String = call.result.chars().take(ACTION_RESULT_CHARS).collect();
        let text = format!(
            "{}({}) → {}{}",
            call.name,
            call.arguments,
            if call.is_error { "error: " } else { "" },
            result
        );
        if let Err(error) = memory.add(SectionKind::Actions, NewItem::text(text)) {
            warn_memory(emit, "actions", &error);
        }
    }
    // One rolling summary per section: what was evicted, merged into the earlier summary.
    for (section, evicted) in memory.take_evicted() {
        if evicted.is_empty() {
            continue;
        }
        let earlier: Vec<_> = memory.section(section).items().iter().filter(|i| i.summary).cloned().collect();
        let summarized: u64 = earlier.iter().chain(&evicted).map(summarized_count).sum();
        let mut items = earlier.clone();
        items.extend(evicted);
        let budget = memory.section(section).config().budget_tokens.limit().unwrap_or(2_000);
        let target = (budget / 8).max(50);
        let summary = match shared.summarizer.summarize(section, &items, target).await {
            Ok(summary) => summary,
            Err(error) => {
                tracing::warn!(%section, %error, "summarizer failed; using the extractive summary");
                ExtractiveSummarizer::new(shared.counter.clone()).extract(&items, target)
            }
        };
        memory.remove(section, earlier.iter().map(|i| i.id).collect());
        let text = format!("[Summary of {summarized} earlier item(s)]\n{summary}");
        let mut item = NewItem::text(text).with_metadata("summarized", json!(summarized));
        item.summary = true;
        match memory.add(section, item) {
            Ok(_) => emit.emit(memory_event(
                MemoryEventKind::Summarized,
                section.as_str(),
                items.len(),
                Map::new(),
            )),
            Err(error) => warn_memory(emit, section.as_str(), &error),
        }
        // Whatever the summary itself pushed out is gone for good.
        memory.take_evicted();
    }
    let mut counts: BTreeMap<(bool, SectionKind), usize> = BTreeMap::new();
    for change in memory.take_changes() {
        let key = match change {
            Change::Added(kind) => (true, kind),
            Change::Evicted(kind) => (false, kind),
        };
        *counts.entry(key).or_default() += 1;
    }
    for ((added, section), n) in counts {
        let kind = if added { MemoryEventKind::Added } else { MemoryEventKind::Evicted };
        emit.emit(memory_event(kind, section.as_str(), n, Map::new()));
    }
}

/// How many original items an item stands for (a summary stands for those it summarized).
fn summarized_count(item: &crate::session::MemoryItem) -> u64 {
    if item.summary { item.metadata.get("summarized").and_then(Value::as_u64).unwrap_or(1) } else { 1 }
}

fn warn_memory(emit: &Emitter, section: &str, error: &crate::session::MemoryError) {
    tracing::warn!(section, %error, "memory refused an item");
    emit.emit(memory_event(
        MemoryEventKind::Warning,
        section,
        0,
        attrs([("reason", json!(error.to_string()))]),
    ));
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
    memory: &SessionMemory,
    calls: &[ToolCall],
    vfs: Arc<dyn Vfs>,
    emit: &Emitter,
    turn_span: &OpenSpan,
) -> Vec<ToolCallRecord> {
    let all_read_only = calls.iter().all(|c| {
        c.name == MEMORY_SEARCH_TOOL
            || shared.tools.get(&c.name).is_some_and(|t| t.spec().annotations.read_only)
    });
    let context = ToolContext::new(session.as_arc().clone(), emit.run_id.clone(), "", vfs);
    if all_read_only && calls.len() > 1 {
        let spans: Vec<_> = calls.iter().map(|call| start_tool_span(call, emit, turn_span)).collect();
        let results =
            join_all(calls.iter().map(|call| run_tool(shared, memory, call, context.clone()))).await;
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
            let result = run_tool(shared, memory, call, context.clone()).await;
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

async fn run_tool(
    shared: &Shared,
    memory: &SessionMemory,
    call: &ToolCall,
    context: ToolContext,
) -> ToolResult {
    if call.name == MEMORY_SEARCH_TOOL && shared.offers_memory_search {
        return search_memory(memory, &call.arguments);
    }
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

/// The built-in memory search: BM25 over the session's searchable sections.
fn memory_search_definition() -> ToolDefinition {
    ToolDefinition {
        name: MEMORY_SEARCH_TOOL.to_owned(),
        description: "Searches this session's memory (documents, findings, lessons, past tool actions) \
                      for items relevant to a query, including items not shown in the context."
            .to_owned(),
        parameters: json!({
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for."},
                "section": {
                    "type": "string",
                    "description": "Only this section (documents, findings, lessons, actions, …).",
                },
                "top_k": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5, "description": "How many items."}
            },
            "required": ["query"],
            "additionalProperties": false
        }),
    }
}

fn search_memory(memory: &SessionMemory, arguments: &Value) -> ToolResult {
    let Some(query) = arguments.get("query").and_then(Value::as_str) else {
        return ToolResult::error("`query` (a string) is required");
    };
    let section = arguments.get("section").and_then(Value::as_str);
    let top_k = arguments.get("top_k").and_then(Value::as_u64).unwrap_or(5).clamp(1, 50) as usize;
    let items: Vec<(&str, &crate::session::MemoryItem)> = memory
        .sections()
        .filter(|s| s.config().searchable && section.is_none_or(|name| name == s.kind().as_str()))
        .flat_map(|s| s.items().iter().map(move |i| (s.kind().as_str(), i)))
        .collect();
    if items.is_empty() {
        return ToolResult::text("No searchable items in this session's memory.");
    }
    let texts: Vec<_> = items.iter().map(|(_, i)| i.text()).collect();
    let hits = bm25_top_k(query, texts.iter().map(|t| t.as_ref()), top_k);
    let lines: Vec<String> = hits.into_iter().map(|h| format!("[{}] {}", items[h].0, texts[h])).collect();
    ToolResult::text(lines.join("\n\n"))
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

fn memory_event(
    kind: MemoryEventKind,
    section: &str,
    item_count: usize,
    attributes: Map<String, Value>,
) -> EventKind {
    EventKind::Memory { kind, section: section.to_owned(), item_count, attributes }
}

fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

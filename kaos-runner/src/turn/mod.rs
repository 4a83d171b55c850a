//! The turn: take the session → hydrate → assemble (or resume) → the loop (`step.rs`) →
//! remember (`remember.rs`) → commit, or pause for approval.

mod delegate;
mod memory_tool;
mod remember;
pub(crate) mod step;

use std::collections::{BTreeSet, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kaos_agent::SectionKind;
use kaos_providers::{Message, ModelRequest, Usage};
use serde_json::{Map, Value, json};
use tracing::Instrument;

use crate::events::{Emitter, OpenSpan};
use crate::guard::BudgetGuard;
use crate::hooks::HookContext;
use crate::patterns;
use crate::pause::{
    Approval, PendingApproval, Progress, RUN_STATE_VERSION, RunState, RunStateError, state_path,
};
use crate::runner::{RunOptions, Shared};
use crate::session::{Hydrated, NewItem, SESSION_LAYOUT_VERSION, SessionMemory, TurnRecord, assemble};
use crate::{
    EventKind, MemoryEventKind, RunError, SessionId, SpanPhase, SpanSubject, StopReason, ToolCallRecord,
    TurnResponse,
};

/// How a run begins: a new user message, or a paused run and a person's answer.
#[derive(Debug)]
pub(crate) enum Start {
    Fresh { message: String, options: RunOptions },
    Resume { state: Box<RunState>, approval: Approval },
}

/// How the loop ended.
#[derive(Debug)]
pub(crate) enum Ending {
    Done(StopReason),
    Paused(PendingApproval),
}

/// Runs one turn (or the rest of a paused one), reporting a failure as a `run_error` event
/// before returning it.
pub(crate) async fn execute(
    shared: &Shared,
    session: &SessionId,
    start: Start,
    emit: &Emitter,
) -> Result<(), RunError> {
    // The turn's tracing span: with a `tracing-opentelemetry` layer installed it becomes an
    // OpenTelemetry span, the parent of the model and tool call spans.
    let span = tracing::info_span!(
        "kaos.turn",
        otel.name = %format!("invoke_agent {}", shared.agent_name),
        gen_ai.operation.name = "invoke_agent",
        gen_ai.agent.name = %shared.agent_name,
        kaos.session_id = %session,
        kaos.run_id = %emit.run_id,
        kaos.turn_number = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        kaos.cost_usd = tracing::field::Empty,
    );
    let result = turn(shared, session, start, emit).instrument(span).await;
    if let Err(error) = &result {
        emit.emit(EventKind::RunError { error_type: error.kind().to_owned(), message: error.to_string() });
    }
    result
}

async fn turn(shared: &Shared, session: &SessionId, start: Start, emit: &Emitter) -> Result<(), RunError> {
    // In-process first (cheap, fair), then the VFS lock that also excludes other processes.
    let _local = shared.locks.lock(session.as_str()).await;
    let _shared = shared.store.lock(session).await?;
    let stamp = shared.store.stamp(session).await?;
    let (mut memory, position) = match shared.cache.take(session, stamp) {
        Some((memory, position)) => {
            let held = memory.section(SectionKind::Messages).items().len();
            emit.emit(memory_event(
                MemoryEventKind::Hydrated,
                "messages",
                held,
                attrs([("cached", json!(true))]),
            ));
            (memory, position)
        }
        None => {
            let hydrated = hydrate(shared, session, emit).await?;
            (hydrated.memory, hydrated.position)
        }
    };
    let turn_number = memory.turn() + 1;
    tracing::Span::current().record("kaos.turn_number", i64::from(turn_number));

    // The loop's starting point, and the permission policy of this run.
    let (mut progress, user_message, policy, budget) = match start {
        Start::Fresh { message, options } => {
            let progress = begin(shared, &mut memory, &message, emit)?;
            let policy = options.policy(&shared.policy, shared.agent.permissions())?;
            let caps = session_caps(options.budget(shared.agent.budget()), memory.spent());
            let budget = BudgetGuard::new(caps, Usage::default(), 0.0, 0, 0);
            (progress, message, policy, budget)
        }
        Start::Resume { state, approval } => {
            check_resumable(shared, &state, turn_number).await?;
            memory.begin_turn();
            memory.add(SectionKind::Messages, NewItem::message(Message::user(state.user_message.clone())))?;
            let mut progress = state.progress.clone();
            let answer = apply_approval(&mut progress, &state.pending, &approval);
            emit.emit(EventKind::RunResumed {
                tool_calls: progress.tool_calls.clone(),
                usage: progress.usage,
                cost_usd: progress.cost_usd,
                unpriced_model_calls: progress.unpriced_model_calls,
                model_calls: progress.model_calls,
                approval: answer.to_owned(),
            });
            let budget = BudgetGuard::new(
                session_caps(*shared.agent.budget(), memory.spent()),
                progress.usage,
                progress.cost_usd,
                progress.model_calls,
                progress.tool_calls.len() as u32,
            );
            (progress, state.user_message.clone(), shared.policy.clone(), budget)
        }
    };

    let turn_span = emit.start(
        SpanSubject::Turn,
        format!("turn.{turn_number}"),
        None,
        attrs([("turn_number", json!(turn_number))]),
    );
    let hook_cx = HookContext::new(session.as_arc().clone(), emit.run_id.clone(), turn_number)
        .with_agent(shared.agent_name.clone(), shared.fingerprint.clone());
    let started = shared.hooks.turn_start(&hook_cx).await;
    emit.faults(&started.faults, started.stop());
    if let Some(fault) = emit.take_hook_stop() {
        emit.end(turn_span, SpanPhase::Error, attrs([("error", json!(fault.to_string()))]));
        return Err(RunError::Hook { hook: fault.hook, message: fault.message });
    }
    let mut cx = step::Cx::new(shared, session, emit, &turn_span, &policy, budget, &hook_cx);
    let ending = match patterns::drive(&mut cx, &mut memory, &mut progress).await {
        Ok(ending) => ending,
        Err(error) => {
            emit.end(turn_span, SpanPhase::Error, attrs([("error", json!(error.to_string()))]));
            return Err(error);
        }
    };
    let stop_reason = match ending {
        Ending::Paused(pending) => {
            // Nothing of the turn enters the session yet: the memory is dropped, not cached.
            let result =
                pause(shared, session, turn_number, user_message, pending, progress, turn_span, emit).await;
            return result;
        }
        Ending::Done(stop_reason) => stop_reason,
    };

    let current = tracing::Span::current();
    current.record(
        "gen_ai.usage.input_tokens",
        as_i64(progress.usage.input_tokens + progress.usage.cached_input_tokens),
    );
    current.record("gen_ai.usage.output_tokens", as_i64(progress.usage.output_tokens));
    current.record("kaos.cost_usd", progress.cost_usd);
    let added = progress.request.messages.split_off(progress.first_new);
    remember::remember(shared, &mut memory, &added, &progress.tool_calls, emit).await;
    memory.add_spent(progress.cost_usd, progress.usage.total_tokens());
    memory.end_turn(turn_number);
    let record = TurnRecord {
        v: SESSION_LAYOUT_VERSION,
        turn: turn_number,
        run_id: emit.run_id.to_string(),
        agent_fingerprint: shared.fingerprint.to_string(),
        messages: added,
        tool_calls: std::mem::take(&mut progress.tool_calls),
        usage: progress.usage,
        cost_usd: progress.cost_usd,
        stop_reason,
        finished_at_ms: now_ms(),
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
    if !shared.hooks.is_empty() {
        let response = TurnResponse {
            text: record.messages.last().map(|m| m.content().to_owned()).unwrap_or_default(),
            stop_reason,
            tool_calls: record.tool_calls.clone(),
            usage: record.usage,
            cost_usd: record.cost_usd,
            unpriced_model_calls: progress.unpriced_model_calls,
            model_calls: progress.model_calls,
            turn_number,
            run_id: emit.run_id.clone(),
            session_id: session.as_arc().clone(),
            agent_fingerprint: shared.fingerprint.clone(),
            pending_approval: None,
        };
        let ended = shared.hooks.turn_end(&hook_cx, &response).await;
        emit.faults(&ended.faults, None);
    }
    emit.end(turn_span, SpanPhase::Complete, attrs([("turn_number", json!(turn_number))]));
    emit.emit(EventKind::TurnSummary { turn_number, stop_reason });
    Ok(())
}

/// The turn's caps, tightened by what is left of the session's: a session cap becomes a turn
/// cap of its remainder (possibly nothing left, which stops the turn before its first call).
fn session_caps(mut caps: kaos_agent::Budget, (spent_usd, spent_tokens): (f64, u64)) -> kaos_agent::Budget {
    if let Some(cap) = caps.session_max_cost_usd {
        let left = cap - spent_usd;
        caps.max_cost_usd = Some(caps.max_cost_usd.map_or(left, |turn| turn.min(left)));
    }
    if let Some(cap) = caps.session_max_tokens {
        let left = cap.saturating_sub(spent_tokens);
        caps.max_tokens = Some(caps.max_tokens.map_or(left, |turn| turn.min(left)));
    }
    caps
}

/// A fresh turn: the per-turn sections cleared, the user message added, the context assembled.
fn begin(
    shared: &Shared,
    memory: &mut SessionMemory,
    message: &str,
    emit: &Emitter,
) -> Result<Progress, RunError> {
    let agent = &shared.agent;
    memory.begin_turn();
    memory.add(SectionKind::Messages, NewItem::message(Message::user(message)))?;
    let top_k = agent.limits().retrieval_top_k.get() as usize;
    let assembly = assemble(memory, agent.memory(), top_k, agent.instructions(), message)?;
    for (section, shown, held) in &assembly.searched {
        let attributes =
            attrs([("shown", json!(shown)), ("query_tokens", json!(shared.counter.count(message)))]);
        emit.emit(memory_event(MemoryEventKind::Searched, section.as_str(), *held, attributes));
    }
    let mut offered = shared.tool_definitions.clone();
    offered.extend(delegate::definitions(shared));
    if assembly.hidden_searchable > 0 && shared.offers_memory_search {
        offered.push(memory_tool::memory_search_definition());
    }
    let base_system = assembly.system;
    let request =
        ModelRequest::new(agent.model().as_str(), assembly.messages).with_system(base_system.clone());
    Ok(Progress {
        first_new: request.messages.len() - 1,
        request,
        base_system,
        offered,
        pending: VecDeque::new(),
        tool_calls: Vec::new(),
        usage: Usage::default(),
        cost_usd: 0.0,
        unpriced_model_calls: 0,
        model_calls: 0,
        approved_tools: BTreeSet::new(),
        approved_calls: BTreeSet::new(),
        pattern: None,
        plan: None,
    })
}

/// Applies a person's answer to the pending call; returns `approved` or `denied`.
fn apply_approval(progress: &mut Progress, pending: &PendingApproval, approval: &Approval) -> &'static str {
    match approval {
        Approval::Approve { remember } => {
            progress.approved_calls.insert(pending.call_id.clone());
            if *remember {
                progress.approved_tools.insert(pending.tool_name.clone());
            }
            "approved"
        }
        Approval::Deny { reason } => {
            progress.pending.pop_front();
            let text = format!("Denied by a person: {reason}");
            progress.request.messages.push(Message::tool(&pending.call_id, &pending.tool_name, &text, true));
            progress.tool_calls.push(ToolCallRecord {
                call_id: pending.call_id.clone(),
                name: pending.tool_name.clone(),
                arguments: pending.arguments.clone(),
                result: text,
                is_error: true,
            });
            "denied"
        }
    }
}

/// Rejects a run state that cannot be resumed: unknown version, another agent, not the stored
/// one, already resumed, or a session that moved on. Marks the stored state resumed.
async fn check_resumable(shared: &Shared, state: &RunState, next_turn: u32) -> Result<(), RunError> {
    if state.v != RUN_STATE_VERSION {
        return Err(RunStateError::UnknownVersion { found: state.v }.into());
    }
    if state.agent_fingerprint != *shared.fingerprint {
        let (expected, found) = (shared.fingerprint.to_string(), state.agent_fingerprint.clone());
        return Err(RunStateError::AgentMismatch { expected, found }.into());
    }
    let mut stored = load_state(shared, &state.run_id).await?;
    if stored.resumed {
        return Err(RunStateError::AlreadyResumed { run_id: state.run_id.clone() }.into());
    }
    if stored != *state {
        return Err(RunStateError::Tampered { run_id: state.run_id.clone() }.into());
    }
    if state.turn_number != next_turn {
        let (expected, found) = (state.turn_number, next_turn);
        return Err(RunStateError::Stale { session_id: state.session_id.clone(), expected, found }.into());
    }
    stored.resumed = true;
    save_state(shared, &stored).await
}

pub(crate) async fn load_state(shared: &Shared, run_id: &str) -> Result<RunState, RunError> {
    let path = state_path(run_id)?;
    let bytes = match shared.runtime.vfs().read(&path).await {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => {
            return Err(RunStateError::NotFound { run_id: run_id.to_owned() }.into());
        }
        Err(e) => return Err(e.into()),
    };
    serde_json::from_slice(&bytes).map_err(|_| RunStateError::Tampered { run_id: run_id.to_owned() }.into())
}

async fn save_state(shared: &Shared, state: &RunState) -> Result<(), RunError> {
    let bytes =
        serde_json::to_vec(state).map_err(|e| RunError::Config(format!("cannot encode run state: {e}")))?;
    shared.runtime.vfs().write(&state_path(&state.run_id)?, Bytes::from(bytes)).await?;
    Ok(())
}

/// Stores the run state, then reports the pause.
#[allow(clippy::too_many_arguments)]
async fn pause(
    shared: &Shared,
    session: &SessionId,
    turn_number: u32,
    user_message: String,
    pending: PendingApproval,
    progress: Progress,
    turn_span: OpenSpan,
    emit: &Emitter,
) -> Result<(), RunError> {
    let run_id = emit.run_id.to_string();
    let run_state_ref = state_path(&run_id)?.to_string();
    // Numbering continues after the three events below.
    let (seq, span) = emit.position();
    let state = RunState {
        v: RUN_STATE_VERSION,
        run_id,
        session_id: session.to_string(),
        turn_number,
        agent_fingerprint: shared.fingerprint.to_string(),
        agent: shared.agent.config().clone(),
        user_message,
        pending: pending.clone(),
        resumed: false,
        paused_at_ms: now_ms(),
        progress,
        next_seq: seq + 3,
        next_span: span,
    };
    save_state(shared, &state).await?;
    emit.emit(EventKind::ToolCallApprovalRequired {
        call_id: pending.call_id,
        tool_name: pending.tool_name,
        arguments: pending.arguments,
        reason: pending.reason,
        run_state_ref,
    });
    emit.end(
        turn_span,
        SpanPhase::Complete,
        attrs([("turn_number", json!(turn_number)), ("paused", json!(true))]),
    );
    emit.emit(EventKind::TurnSummary { turn_number, stop_reason: StopReason::ApprovalRequired });
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

/// A count as a span attribute (OpenTelemetry integers are `i64`).
pub(super) fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

pub(super) fn memory_event(
    kind: MemoryEventKind,
    section: &str,
    item_count: usize,
    attributes: Map<String, Value>,
) -> EventKind {
    EventKind::Memory { kind, section: section.to_owned(), item_count, attributes }
}

pub(crate) fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

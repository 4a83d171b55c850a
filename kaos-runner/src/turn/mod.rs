//! The turn: take the session → hydrate → assemble (or resume) → the loop (`step.rs`) →
//! remember (`remember.rs`) → commit, or pause for approval.

mod delegate;
mod memory_tool;
mod remember;
pub(crate) mod step;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kaos_agent::SectionKind;
use kaos_providers::{Message, ModelRequest, ToolDefinition, Usage};
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
use crate::{
    EventKind, MemoryEventKind, RunError, SessionId, SpanPhase, SpanSubject, StopReason, ToolCallRecord,
};
use kaos_session::{
    Assembly, Hydration, NewItem, SESSION_LAYOUT_VERSION, SessionMemory, TakenSession, TurnRecord, assemble,
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
    /// The model called `handoff_to_<name>`: the named agent takes the conversation over.
    Handoff(String),
}

/// Runs one turn (or the rest of a paused one), reporting a failure as a `run_error` event
/// before returning it.
pub(crate) async fn execute(
    shared: &Arc<Shared>,
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

async fn turn(
    shared: &Arc<Shared>,
    session: &SessionId,
    start: Start,
    emit: &Emitter,
) -> Result<(), RunError> {
    // In-process first (cheap, fair), then the VFS lock that also excludes other processes,
    // then the memory (cached, or read from the store).
    let mut taken = shared.sessions.take(session, shared.agent.memory(), shared.counter.clone()).await?;
    report_hydration(&taken, session, emit);
    let memory = &mut taken.memory;
    let turn_number = memory.turn() + 1;
    tracing::Span::current().record("kaos.turn_number", i64::from(turn_number));

    // Who held the conversation when the turn began (a paused run may have handed it over
    // before its pause).
    let first_agent: Arc<str> = memory.active_agent().map_or_else(|| shared.agent_name.clone(), Into::into);
    // The agent that holds the conversation (a handoff target of an earlier turn, or the
    // Runner's agent), the loop's starting point, and the permission policy of this run.
    let (mut member, mut progress, user_message, options, budget) = match start {
        Start::Fresh { message, options } => {
            let member = active_member(shared, memory, emit);
            let progress = begin(shared, &member, memory, &message, emit)?;
            let caps = session_caps(options.budget(member.agent.budget()), memory.spent());
            let budget = BudgetGuard::new(caps, Usage::default(), 0.0, 0, 0);
            (member, progress, message, options, budget)
        }
        Start::Resume { state, approval } => {
            let member = check_resumable(shared, &state, turn_number).await?;
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
                session_caps(*member.agent.budget(), memory.spent()),
                progress.usage,
                progress.cost_usd,
                progress.model_calls,
                progress.tool_calls.len() as u32,
            );
            (member, progress, state.user_message.clone(), RunOptions::default(), budget)
        }
    };
    emit.set_agent(member.agent_name.clone(), member.fingerprint.clone());

    let turn_span = emit.start(
        SpanSubject::Turn,
        format!("turn.{turn_number}"),
        None,
        attrs([("turn_number", json!(turn_number))]),
    );
    let hook_cx = |member: &Shared| {
        HookContext::new(session.as_arc().clone(), emit.run_id.clone(), turn_number)
            .with_agent(member.agent_name.clone(), member.fingerprint.clone())
    };
    let started = shared.hooks.turn_start(&hook_cx(&member)).await;
    emit.faults(&started.faults, started.stop());
    if let Some(fault) = emit.take_hook_stop() {
        emit.end(turn_span, SpanPhase::Error, attrs([("error", json!(fault.to_string()))]));
        return Err(RunError::Hook { hook: fault.hook, message: fault.message });
    }
    // The loop, under the agent holding the conversation; a handoff passes the conversation,
    // the budget and the turn's progress to the next agent, inside a `handoff` span.
    let mut budget = budget;
    let mut handoff_span: Option<OpenSpan> = None;
    let ending = loop {
        let policy = options.policy(&member.policy, member.agent.permissions())?;
        let hooks = hook_cx(&member);
        let mut cx = step::Cx::new(&member, session, emit, &turn_span, &policy, budget, &hooks);
        let driven = patterns::drive(&mut cx, memory, &mut progress).await;
        budget = cx.into_budget();
        match driven {
            Ok(Ending::Done(stop_reason)) => break Ok(Ok(stop_reason)),
            Ok(Ending::Paused(pending)) => break Ok(Err(pending)),
            Err(error) => break Err(error),
            Ok(Ending::Handoff(target)) => {
                let Some(next) = shared.member(&target) else {
                    break Err(RunError::Config(format!("no agent {target:?} to hand the conversation to")));
                };
                if let Some(span) = handoff_span.take() {
                    emit.end(span, SpanPhase::Complete, Map::new());
                }
                let attributes = attrs([("from", json!(member.agent_name)), ("to", json!(target))]);
                handoff_span = Some(emit.start(
                    SpanSubject::Handoff,
                    format!("handoff.{target}"),
                    Some(&turn_span),
                    attributes,
                ));
                emit.set_agent(next.agent_name.clone(), next.fingerprint.clone());
                rebase(shared, &next, memory, &user_message, &mut progress)?;
                member = next;
            }
        }
    };
    if let Some(span) = handoff_span.take() {
        let phase = if ending.is_ok() { SpanPhase::Complete } else { SpanPhase::Error };
        emit.end(span, phase, Map::new());
    }
    let ending = match ending {
        Ok(ending) => ending,
        Err(error) => {
            emit.end(turn_span, SpanPhase::Error, attrs([("error", json!(error.to_string()))]));
            return Err(error);
        }
    };
    let stop_reason = match ending {
        Err(pending) => {
            // Nothing of the turn enters the session yet: the memory is dropped, not cached.
            let result =
                pause(&member, session, turn_number, user_message, pending, progress, turn_span, emit).await;
            return result;
        }
        Ok(stop_reason) => stop_reason,
    };

    let current = tracing::Span::current();
    current.record(
        "gen_ai.usage.input_tokens",
        as_i64(progress.usage.input_tokens + progress.usage.cached_input_tokens),
    );
    current.record("gen_ai.usage.output_tokens", as_i64(progress.usage.output_tokens));
    current.record("kaos.cost_usd", progress.cost_usd);
    let added = progress.request.messages.split_off(progress.first_new);
    remember::remember(shared, memory, &added, &progress.tool_calls, emit).await;
    memory.add_spent(progress.cost_usd, progress.usage.total_tokens());
    let handed_to = (member.agent_name != first_agent).then(|| member.agent_name.to_string());
    if let Some(name) = &handed_to {
        memory.set_active_agent(Some(name.clone()));
    }
    memory.end_turn(turn_number);
    let record = TurnRecord {
        v: SESSION_LAYOUT_VERSION,
        turn: turn_number,
        run_id: emit.run_id.to_string(),
        agent_fingerprint: member.fingerprint.to_string(),
        agent: handed_to,
        messages: added,
        tool_calls: std::mem::take(&mut progress.tool_calls),
        usage: progress.usage,
        cost_usd: progress.cost_usd,
        unpriced_model_calls: progress.unpriced_model_calls,
        stop_reason,
        finished_at_ms: now_ms(),
        memory: memory.take_ops(),
    };
    if let Err(error) = taken.commit(&record).await {
        let error = RunError::from(error);
        emit.end(turn_span, SpanPhase::Error, attrs([("error", json!(error.to_string()))]));
        return Err(error);
    }
    emit.emit(memory_event(MemoryEventKind::Persisted, "messages", record.messages.len(), Map::new()));
    if let Some(response) = emit.response_so_far(turn_number, stop_reason) {
        let ended = shared.hooks.turn_end(&hook_cx(&member), &response).await;
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

/// A fresh turn: the per-turn sections cleared, the user message added, the context assembled
/// for `member`, the agent holding the conversation.
fn begin(
    shared: &Shared,
    member: &Shared,
    memory: &mut SessionMemory,
    message: &str,
    emit: &Emitter,
) -> Result<Progress, RunError> {
    memory.begin_turn();
    memory.add(SectionKind::Messages, NewItem::message(Message::user(message)))?;
    let assembly = context(shared, member, memory, message)?;
    for (section, shown, held) in &assembly.searched {
        let attributes =
            attrs([("shown", json!(shown)), ("query_tokens", json!(shared.counter.count(message)))]);
        emit.emit(memory_event(MemoryEventKind::Searched, section.as_str(), *held, attributes));
    }
    let base_system = assembly.system;
    let request =
        ModelRequest::new(member.agent.model().as_str(), assembly.messages).with_system(base_system.clone());
    Ok(Progress {
        first_new: request.messages.len() - 1,
        request,
        base_system,
        offered: offered_tools(member, assembly.hidden_searchable > 0),
        pending: VecDeque::new(),
        tool_calls: Vec::new(),
        usage: Usage::default(),
        cost_usd: 0.0,
        unpriced_model_calls: 0,
        model_calls: 0,
        approved_tools: BTreeSet::new(),
        approved_calls: BTreeSet::new(),
        pattern: None,
        handoffs: 0,
        plan: None,
    })
}

/// The context `member` sees: its instructions with the session's memory, and the conversation.
/// The session's memory follows the Runner's agent's profile, whoever holds the conversation.
fn context(
    shared: &Shared,
    member: &Shared,
    memory: &mut SessionMemory,
    message: &str,
) -> Result<Assembly, RunError> {
    let top_k = member.agent.limits().retrieval_top_k.get() as usize;
    Ok(assemble(memory, shared.agent.memory(), top_k, member.agent.instructions(), message)?)
}

/// The tools `member` offers the model: its own, its delegates, its handoffs, and the memory
/// search tool when memory holds more than is shown.
fn offered_tools(member: &Shared, hidden_memory: bool) -> Vec<ToolDefinition> {
    let mut offered = member.tool_definitions.clone();
    offered.extend(delegate::definitions(member));
    offered.extend(member.handoffs.iter().map(|h| h.definition.clone()));
    if hidden_memory && member.offers_memory_search {
        offered.push(memory_tool::memory_search_definition());
    }
    offered
}

/// After a handoff: the conversation so far goes on under `next` — its instructions (with the
/// session's memory), tools, model and pattern.
fn rebase(
    shared: &Shared,
    next: &Shared,
    memory: &mut SessionMemory,
    message: &str,
    progress: &mut Progress,
) -> Result<(), RunError> {
    let assembly = context(shared, next, memory, message)?;
    progress.base_system = assembly.system;
    progress.request.system = progress.base_system.clone();
    progress.request.model = next.agent.model().as_str().to_owned();
    progress.request.output_schema = None;
    progress.offered = offered_tools(next, assembly.hidden_searchable > 0);
    // The next agent runs its own pattern from here.
    progress.pattern = None;
    progress.plan = None;
    Ok(())
}

/// The agent holding the session's conversation: the one it was last handed to, else the
/// Runner's own. A handoff target this Runner does not know (its agent changed) gives the
/// conversation back to the Runner's agent, with a warning.
fn active_member(shared: &Arc<Shared>, memory: &SessionMemory, emit: &Emitter) -> Arc<Shared> {
    let Some(name) = memory.active_agent() else { return shared.clone() };
    match shared.member(name) {
        Some(member) => member,
        None => {
            tracing::warn!(agent = name, "the session was handed to an agent this Runner does not know");
            let reason = format!(
                "the session was handed to {name:?}, not an agent of this Runner; {} continues",
                shared.agent_name
            );
            emit.emit(memory_event(
                MemoryEventKind::Warning,
                "messages",
                0,
                attrs([("reason", json!(reason))]),
            ));
            shared.clone()
        }
    }
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

/// Rejects a run state that cannot be resumed: unknown version, an agent not of this Runner's
/// team, not the stored one, already resumed, or a session that moved on. Marks the stored
/// state resumed; returns the agent that paused.
async fn check_resumable(
    shared: &Arc<Shared>,
    state: &RunState,
    next_turn: u32,
) -> Result<Arc<Shared>, RunError> {
    if state.v != RUN_STATE_VERSION {
        return Err(RunStateError::UnknownVersion { found: state.v }.into());
    }
    let Some(member) = shared.member_by_fingerprint(&state.agent_fingerprint) else {
        let (expected, found) = (shared.fingerprint.to_string(), state.agent_fingerprint.clone());
        return Err(RunStateError::AgentMismatch { expected, found }.into());
    };
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
    save_state(shared, &stored).await?;
    Ok(member)
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

/// Reports how the taken session's memory was found: from the cache, or read (with a warning
/// for a dropped torn tail or an ignored checkpoint).
fn report_hydration(taken: &TakenSession, session: &SessionId, emit: &Emitter) {
    let held = taken.memory.section(SectionKind::Messages).items().len();
    let Hydration::Loaded { dropped_tail, bad_checkpoint } = taken.hydration else {
        emit.emit(memory_event(
            MemoryEventKind::Hydrated,
            "messages",
            held,
            attrs([("cached", json!(true))]),
        ));
        return;
    };
    if let Some(bytes) = dropped_tail {
        tracing::warn!(session = %session, bytes, "dropped a torn last line of the session log");
        let attributes = attrs([("reason", json!("torn last line dropped")), ("bytes", json!(bytes))]);
        emit.emit(memory_event(MemoryEventKind::Warning, "messages", 0, attributes));
    }
    if bad_checkpoint {
        tracing::warn!(session = %session, "ignoring an unreadable checkpoint; replaying the whole log");
        let attributes = attrs([("reason", json!("unreadable checkpoint ignored"))]);
        emit.emit(memory_event(MemoryEventKind::Warning, "messages", 0, attributes));
    }
    emit.emit(memory_event(MemoryEventKind::Hydrated, "messages", held, Map::new()));
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

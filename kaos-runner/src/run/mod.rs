//! One run, from start to commit: take the session → hydrate → begin (a fresh turn) or resume
//! (a paused one) under one [`RunContext`] → the turn's pattern under the agent holding the
//! conversation (handoffs swap it) → commit (`commit.rs`), or pause (`state.rs`).
//! Sub-agents are runs too (`delegate.rs`), started under a child context.

pub(crate) mod commit;
pub(crate) mod delegate;
pub(crate) mod handoff;
#[cfg(feature = "a2a")]
pub(crate) mod remote;
pub(crate) mod state;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kaos_agent::SectionKind;
use kaos_providers::{Message, ModelRequest, Usage};
use serde_json::{Map, json};
use tracing::Instrument;

use crate::approval::{Approval, PendingApproval};
use crate::context::{RunContext, RunOptions};
use crate::emit::{Emitter, OpenSpan, attrs, memory_event};
use crate::engine::state::Progress;
use crate::engine::{Cx, Ending};
use crate::error::{RUN_STATE_VERSION, RunError, RunStateError};
use crate::events::{EventKind, MemoryEventKind, SpanPhase, SpanSubject};
use crate::guard::BudgetGuard;
use crate::hooks::HookContext;
use crate::member::Member;
use crate::patterns;
use crate::response::TurnResponse;
use crate::stream::{EventQueue, RunStream};
use commit::Finished;
use handoff::{active_member, context, offered_tools, rebase};
use kaos_session::{Hydration, NewItem, SessionId, SessionMemory, StopReason, TakenSession, ToolCallRecord};
use state::{RunState, state_path};

/// How a run begins: a new user message (under the request's options, or a parent's
/// context), or a paused run and a person's answer.
#[derive(Debug)]
pub(crate) enum Start {
    Fresh { message: String, bounds: Bounds },
    Resume { state: Box<RunState>, approval: Approval },
}

/// What bounds a fresh run besides its agent.
#[derive(Debug)]
pub(crate) enum Bounds {
    /// A user's request.
    Request(RunOptions),
    /// A sub-agent's run: the parent's policy, remaining budget and depth.
    Parent(RunContext),
}

/// Starts a run of `member` as a stream of events; the run progresses as the stream is polled.
pub(crate) fn stream(
    member: Arc<Member>,
    session_id: &str,
    run_id: Arc<str>,
    (seq, span): (u64, u64),
    start: Start,
) -> RunStream {
    let tx = EventQueue::new();
    let rx = tx.clone();
    let session = SessionId::new(session_id);
    let run = async move {
        let session = session?;
        let emit = emitter(&member, &session, run_id, (seq, span), Some(tx));
        execute(&member, &session, start, &emit).await
    };
    RunStream::new(boxed!(run), rx)
}

/// `Box::pin(future)`, with the future written straight into its box: `Box::pin` builds the
/// future on the stack and copies it in, the whole ~6 KB of a turn's future (most of it not yet
/// written) into memory just allocated, which a new session's turn had not touched: that
/// copy's cache misses were a twentieth of the turn's time at 1,000 sessions at once. A macro,
/// not a function: passed to a function, even one always inlined, the future is built on the
/// stack first again.
macro_rules! boxed {
    ($future:expr) => {{
        let boxed = Box::write(Box::new_uninit(), $future);
        Box::into_pin(boxed)
    }};
}
pub(crate) use boxed;

/// Runs `member`'s turn to its end and folds its events into the response, as
/// [`fold`](crate::fold) over [`stream`] would, without queuing them: the events are still
/// stamped, shown to hooks and folded.
pub(crate) async fn folded(
    member: Arc<Member>,
    session_id: &str,
    run_id: Arc<str>,
    (seq, span): (u64, u64),
    start: Start,
) -> Result<TurnResponse, RunError> {
    let session = SessionId::new(session_id)?;
    let emit = emitter(&member, &session, run_id, (seq, span), None);
    execute(&member, &session, start, &emit).await?;
    emit.into_response().ok_or(RunError::IncompleteRun)
}

/// The emitter of a run of `member`: into `queue` for a stream, or folding only (no queue),
/// numbering from `position` (a resumed run goes on where it paused), with the member's hooks.
fn emitter(
    member: &Member,
    session: &SessionId,
    run_id: Arc<str>,
    (seq, span): (u64, u64),
    queue: Option<EventQueue>,
) -> Emitter {
    let (session, agent, fingerprint) =
        (session.as_arc().clone(), member.agent_name.clone(), member.fingerprint.clone());
    match queue {
        Some(tx) => Emitter::new(tx, session, run_id, agent, fingerprint),
        None => Emitter::folding(session, run_id, agent, fingerprint),
    }
    .continuing(seq, span)
    .with_hooks(member.hooks.clone())
}

/// Runs one turn (or the rest of a paused one), reporting a failure as a `run_error` event
/// before returning it.
async fn execute(
    shared: &Arc<Member>,
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
        emit.emit(EventKind::RunError { error_type: error.kind().to_owned(), message: error.report() });
    }
    result
}

async fn turn(
    shared: &Arc<Member>,
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
    // Runner's agent), the loop's starting point, and the run's context: built here for a
    // fresh run, read back from the paused state for a resumed one.
    let (mut member, mut progress, user_message, context) = match start {
        Start::Fresh { message, bounds } => {
            let member = active_member(shared, memory, emit);
            let progress = begin(shared, &member, memory, &message, emit)?;
            let context = match bounds {
                Bounds::Request(options) => {
                    RunContext::new(*member.agent.budget(), shared.max_depth, options)
                }
                Bounds::Parent(context) => context,
            };
            (member, progress, message, context)
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
            (member, progress, state.user_message.clone(), state.context.clone())
        }
    };
    // The budget: the context's caps, tightened by what is left of the session's, with what
    // the run spent before a pause.
    let budget = BudgetGuard::new(
        session_caps(context.caps, memory.spent()),
        progress.usage,
        progress.cost_usd,
        progress.model_calls,
        progress.tool_calls.len() as u32,
    );
    emit.set_agent(member.agent_name.clone(), member.fingerprint.clone());

    let turn_span = emit.start(
        SpanSubject::Turn,
        format_args!("turn.{turn_number}"),
        None,
        [("turn_number", json!(turn_number))],
    );
    let hook_cx = |member: &Member| {
        HookContext::of_turn(
            session.as_arc().clone(),
            emit.run_id.clone(),
            turn_number,
            (member.agent_name.clone(), member.fingerprint.clone()),
        )
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
        let policy = context.policy(&member)?;
        let hooks = hook_cx(&member);
        let delegator = delegate::SubAgents;
        let mut cx =
            Cx::new(&member, session, emit, &turn_span, &context, &policy, budget, &hooks, &delegator);
        let driven = patterns::drive(&mut cx, memory, &mut progress).await;
        budget = cx.into_budget();
        match driven {
            Ok(Ending::Done(stop_reason)) => break Ok(Ok(stop_reason)),
            Ok(Ending::Paused(pending)) => break Ok(Err(pending)),
            Err(error) => break Err(error),
            Ok(Ending::Handoff(target)) => {
                let Some(next) = shared.named(&target) else {
                    break Err(RunError::Internal("a handoff target is not of this Runner's team"));
                };
                if let Some(span) = handoff_span.take() {
                    emit.end(span, SpanPhase::Complete, Map::new());
                }
                let attributes = attrs([("from", json!(member.agent_name)), ("to", json!(target))]);
                handoff_span = Some(emit.start(
                    SpanSubject::Handoff,
                    format_args!("handoff.{target}"),
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
            emit.end(turn_span, SpanPhase::Error, attrs([("error", json!(error.report()))]));
            return Err(error);
        }
    };
    let stop_reason = match ending {
        Err(pending) => {
            // Nothing of the turn enters the session yet: the memory is dropped, not cached.
            let paused = Paused { session, turn_number, user_message, pending, progress, context };
            return pause(&member, paused, turn_span, emit).await;
        }
        Ok(stop_reason) => stop_reason,
    };

    let finished = Finished { member: &member, first_agent, turn_number, stop_reason, progress };
    if let Err(error) = commit::commit(shared, taken, finished, emit).await {
        emit.end(turn_span, SpanPhase::Error, attrs([("error", json!(error.report()))]));
        return Err(error);
    }
    if let Some(response) = emit.response_so_far(turn_number, stop_reason) {
        let ended = shared.hooks.turn_end(&hook_cx(&member), &response).await;
        emit.faults(&ended.faults, None);
    }
    emit.end(turn_span, SpanPhase::Complete, [("turn_number", json!(turn_number))]);
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
    shared: &Member,
    member: &Member,
    memory: &mut SessionMemory,
    message: &str,
    emit: &Emitter,
) -> Result<Progress, RunError> {
    memory.begin_turn();
    memory.add(SectionKind::Messages, NewItem::message(Message::user(message)))?;
    let assembly = context(shared, member, memory, message)?;
    for (section, shown, held) in &assembly.searched {
        emit.emit_with(|| {
            let attributes =
                attrs([("shown", json!(shown)), ("query_tokens", json!(shared.counter.count(message)))]);
            memory_event(MemoryEventKind::Searched, section.as_str(), *held, attributes)
        });
    }
    let request =
        ModelRequest::new(member.agent.model().as_str(), assembly.messages).with_system(assembly.system);
    Ok(Progress {
        first_new: request.messages.len() - 1,
        request,
        base_system: None,
        offered: offered_tools(member, assembly.hidden_searchable > 0),
        pending: VecDeque::new(),
        tool_calls: Vec::new(),
        usage: Usage::default(),
        cost_usd: 0.0,
        unpriced_model_calls: 0,
        model_calls: 0,
        approved_tools: BTreeSet::new(),
        approved_calls: BTreeSet::new(),
        remote: Default::default(),
        pattern: None,
        handoffs: 0,
        plan: None,
    })
}

/// Applies a person's answer to the pending call; returns `approved` or `denied`. A remote
/// agent's question is answered either way: the call runs again to send the answer to the
/// remote task.
fn apply_approval(progress: &mut Progress, pending: &PendingApproval, approval: &Approval) -> &'static str {
    if let Some(remote) = progress.remote.get_mut(&pending.call_id) {
        remote.answer = Some(approval.clone());
        progress.approved_calls.insert(pending.call_id.clone());
        return match approval {
            Approval::Deny { .. } => "denied",
            _ => "approved",
        };
    }
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
    shared: &Arc<Member>,
    state: &RunState,
    next_turn: u32,
) -> Result<Arc<Member>, RunError> {
    if state.v != RUN_STATE_VERSION {
        return Err(RunStateError::UnknownVersion { found: state.v }.into());
    }
    let Some(member) = shared.member_by_fingerprint(&state.agent_fingerprint) else {
        let (expected, found) = (shared.fingerprint.to_string(), state.agent_fingerprint.clone());
        return Err(RunStateError::AgentMismatch { expected, found }.into());
    };
    let mut stored = state::load(shared.runtime.vfs().as_ref(), &state.run_id).await?;
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
    state::save(shared.runtime.vfs().as_ref(), &stored).await?;
    Ok(member)
}

/// A run stopped at a call that needs a person's approval.
struct Paused<'a> {
    session: &'a SessionId,
    turn_number: u32,
    user_message: String,
    pending: PendingApproval,
    progress: Progress,
    context: RunContext,
}

/// Stores the run state, then reports the pause.
async fn pause(
    member: &Member,
    paused: Paused<'_>,
    turn_span: OpenSpan,
    emit: &Emitter,
) -> Result<(), RunError> {
    let Paused { session, turn_number, user_message, pending, progress, context } = paused;
    let run_id = emit.run_id.to_string();
    let run_state_ref = state_path(&run_id)?.to_string();
    // Numbering continues after the three events below.
    let (seq, span) = emit.position();
    let state = RunState {
        v: RUN_STATE_VERSION,
        run_id,
        session_id: session.to_string(),
        turn_number,
        agent_fingerprint: member.fingerprint.to_string(),
        agent: member.agent.config().clone(),
        user_message,
        pending: pending.clone(),
        resumed: false,
        paused_at_ms: now_ms(),
        progress,
        context,
        next_seq: seq + 3,
        next_span: span,
    };
    state::save(member.runtime.vfs().as_ref(), &state).await?;
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
fn report_hydration(taken: &TakenSession, _session: &SessionId, emit: &Emitter) {
    let held = taken.memory.section(SectionKind::Messages).items().len();
    let Hydration::Loaded { dropped_tail, bad_checkpoint } = taken.hydration else {
        emit.emit_with(|| {
            memory_event(MemoryEventKind::Hydrated, "messages", held, attrs([("cached", json!(true))]))
        });
        return;
    };
    // Each repair is logged by kaos-session; here it becomes an event front ends show.
    for repair in &taken.repairs {
        let mut attributes = attrs([("reason", json!(repair))]);
        if let Some(bytes) = dropped_tail {
            attributes.insert("bytes".to_owned(), json!(bytes));
        }
        attributes.insert("checkpoint_ignored".to_owned(), json!(bad_checkpoint));
        emit.emit_with(|| memory_event(MemoryEventKind::Warning, "messages", 0, attributes));
    }
    emit.emit_with(|| memory_event(MemoryEventKind::Hydrated, "messages", held, Map::new()));
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

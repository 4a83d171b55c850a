//! The core loop every pattern drives: pending tool calls (each admitted by `admit.rs`, run by
//! `tools.rs`), then one guarded model call (`model_call.rs`), until a final answer, a pause, a
//! stop, or the iteration limit. It never names a pattern, and never starts a run: delegation
//! goes through the [`Delegator`] the run provides.

pub(crate) mod admit;
pub(crate) mod memory_tool;
pub(crate) mod model_call;
pub(crate) mod state;
pub(crate) mod tools;

use std::sync::Arc;

use kaos_agent::Delegate;
use kaos_providers::{Message, ToolCall};
use kaos_tools::ToolResult;
use kaos_vfs::Vfs;
use serde_json::Value;

use crate::approval::PendingApproval;
use crate::context::RunContext;
use crate::emit::{Emitter, OpenSpan};
use crate::error::RunError;
use crate::events::EventKind;
use crate::guard::{BudgetGuard, Exceeded, PermissionPolicy, Tripped};
use crate::hooks::{Dispatch, HookContext};
use crate::member::Member;
use kaos_session::{SessionId, SessionMemory, StopReason};
pub(crate) use model_call::{Called, Purpose, model_call};
use state::Progress;

/// How the loop (or a pattern) ended.
#[derive(Debug)]
pub(crate) enum Ending {
    Done(StopReason),
    Paused(PendingApproval),
    /// The model called `handoff_to_<name>`: the named agent takes the conversation over.
    Handoff(String),
}

/// What a delegate's call came to.
#[derive(Debug)]
pub(crate) enum Delegated {
    /// The call's result.
    Done(ToolResult),
    /// A remote agent asked for input: the run pauses for a person, for this reason (what to
    /// send the remote on resume is in the progress's `remote`).
    #[cfg_attr(not(feature = "a2a"), allow(dead_code))]
    Paused(String),
}

/// Runs a delegate's sub-agent for one call, within the calling run's policy and budget.
#[async_trait::async_trait]
pub(crate) trait Delegator: Send + Sync {
    /// Runs `delegate` for the call `call_id` with `arguments` (`{"task": …}`) inside
    /// `tool_span`; its usage and cost join `cx`'s budget and `progress`.
    async fn delegate(
        &self,
        cx: &mut Cx<'_>,
        progress: &mut Progress,
        delegate: &Delegate,
        call_id: &str,
        arguments: &Value,
        tool_span: &OpenSpan,
    ) -> Delegated;
}

/// What the loop needs besides the progress it advances.
pub(crate) struct Cx<'a> {
    /// The agent holding the conversation.
    pub(crate) member: &'a Member,
    pub(crate) session: &'a SessionId,
    pub(crate) emit: &'a Emitter,
    pub(crate) turn_span: &'a OpenSpan,
    /// The run's bounds (depth, caps as the run began).
    pub(crate) context: &'a RunContext,
    /// The run's policy under `member`.
    pub(crate) policy: &'a PermissionPolicy,
    pub(crate) budget: BudgetGuard,
    workspace: Option<Arc<dyn Vfs>>,
    pub(crate) hook_cx: &'a HookContext,
    /// Runs a delegate's sub-agent (provided by the run, which knows how to start one).
    pub(crate) delegator: &'a dyn Delegator,
    /// A pattern's span the turn is inside (a plan step), parent of model and tool call spans.
    scope: Option<OpenSpan>,
}

impl<'a> Cx<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        member: &'a Member,
        session: &'a SessionId,
        emit: &'a Emitter,
        turn_span: &'a OpenSpan,
        context: &'a RunContext,
        policy: &'a PermissionPolicy,
        budget: BudgetGuard,
        hook_cx: &'a HookContext,
        delegator: &'a dyn Delegator,
    ) -> Self {
        Self {
            member,
            session,
            emit,
            turn_span,
            context,
            policy,
            budget,
            workspace: None,
            hook_cx,
            delegator,
            scope: None,
        }
    }

    /// The span model and tool call spans start in: the pattern's current one, else the turn.
    pub(crate) fn parent(&self) -> &OpenSpan {
        self.scope.as_ref().unwrap_or(self.turn_span)
    }

    /// Starts model and tool call spans inside `span` until [`Cx::leave`].
    pub(crate) fn enter(&mut self, span: &OpenSpan) {
        self.scope = Some(span.clone());
    }

    /// Back to the turn span.
    pub(crate) fn leave(&mut self) {
        self.scope = None;
    }

    /// The turn's budget, to carry over to the next agent after a handoff.
    pub(crate) fn into_budget(self) -> BudgetGuard {
        self.budget
    }

    /// The agent running the turn.
    pub(crate) fn agent(&self) -> &kaos_agent::Agent {
        &self.member.agent
    }

    /// The model for `role` as a request's `model` (the agent's role model, else its main
    /// model). Every role is served by the Runner's client.
    pub(crate) fn model_for(&self, role: kaos_agent::ModelRole) -> String {
        self.member.agent.model_for(role).as_str().to_owned()
    }

    /// Reports hook faults; a fail-closed failure stops the turn with an error.
    pub(crate) fn hooks_ok<T>(&self, dispatch: &Dispatch<T>) -> Result<(), RunError> {
        self.emit.faults(&dispatch.faults, dispatch.stop());
        match self.emit.take_hook_stop() {
            Some(fault) => Err(RunError::Hook { hook: fault.hook, message: fault.message }),
            None => Ok(()),
        }
    }

    pub(crate) fn stop(&self, exceeded: Exceeded) -> Ending {
        self.emit.emit(EventKind::BudgetExceeded {
            kind: exceeded.kind.to_owned(),
            limit: exceeded.limit,
            actual: exceeded.actual,
            reason: exceeded.reason,
        });
        Ending::Done(StopReason::BudgetExceeded)
    }

    pub(crate) fn tripped(&self, scope: &str, name: &str, tripped: Option<Tripped>) {
        if let Some(t) = tripped {
            self.emit.emit(EventKind::CircuitBreakerTripped {
                scope: scope.to_owned(),
                name: name.to_owned(),
                failures: t.failures,
                cooldown_ms: t.cooldown.as_millis() as u64,
            });
        }
    }
}

/// Runs the loop until it ends.
pub(crate) async fn drive(
    cx: &mut Cx<'_>,
    memory: &SessionMemory,
    progress: &mut Progress,
) -> Result<Ending, RunError> {
    drive_from(cx, memory, progress, 0, Purpose::Answer).await
}

/// Runs the loop until it ends, counting `limits.max_iterations` from the turn's model call
/// number `first_call` (0: the whole turn). A pattern that runs the loop several times in one
/// turn (a plan, step by step) bounds each run on its own this way; the budget still spans the
/// whole turn. With [`Purpose::Internal`] the loop's replies are the pattern's own work (a
/// plan step's status), not the turn's answer, and are not streamed.
pub(crate) async fn drive_from(
    cx: &mut Cx<'_>,
    memory: &SessionMemory,
    progress: &mut Progress,
    first_call: u32,
    purpose: Purpose,
) -> Result<Ending, RunError> {
    let max_iterations = cx.agent().limits().max_iterations.get();
    loop {
        if let Some(ending) = tools::run_pending(cx, memory, progress).await? {
            return Ok(ending);
        }
        prepare_request(cx, progress);
        let iteration = progress.model_calls + 1;
        let response = match model_call(cx, &mut progress.request, iteration, purpose).await? {
            Called::Response(response) => response,
            Called::Stopped(ending) => return Ok(ending),
        };
        progress.record_model_call(&response);
        // The answer's text moves into the conversation; the calls are copied (they run next).
        let kaos_providers::ModelResponse { text, tool_calls, .. } = response;
        progress.request.messages.push(Message::Assistant { content: text, tool_calls: tool_calls.clone() });
        if tool_calls.is_empty() {
            return Ok(Ending::Done(StopReason::Completed));
        }
        if progress.model_calls.saturating_sub(first_call) >= max_iterations {
            // Keep the history well-formed for the next turn: every call gets a result.
            not_run(progress, tool_calls, "the turn reached its iteration limit");
            return Ok(Ending::Done(StopReason::IterationLimit));
        }
        progress.pending = tool_calls.into();
    }
}

/// Sets the tools offered for the next call: those of the turn whose breaker is not open, and
/// tells the model about the ones withdrawn.
pub(crate) fn prepare_request(cx: &Cx<'_>, progress: &mut Progress) {
    let breakers = &cx.member.breakers;
    let withdrawn: Vec<&kaos_providers::ToolDefinition> = if breakers.any_tool_not_closed() {
        progress.offered.iter().filter(|t| breakers.is_open(&t.name)).collect()
    } else {
        // No breaker is open: nothing to look up tool by tool.
        Vec::new()
    };
    progress.request.tools = if withdrawn.is_empty() {
        // The usual case: every tool of the turn, shared, not copied.
        progress.offered.clone()
    } else {
        progress.offered.iter().filter(|t| !breakers.is_open(&t.name)).cloned().collect()
    };
    if withdrawn.is_empty() {
        // The usual case: the request's system prompt is the assembled one (no copy of a
        // system prompt that may hold long summaries), or is put back to it.
        progress.restore_base_system();
        return;
    }
    let base = match progress.base_system.take() {
        Some(base) => base,
        None => std::mem::take(&mut progress.request.system),
    };
    let names: Vec<&str> = withdrawn.iter().map(|t| t.name.as_str()).collect();
    progress.request.system = format!(
        "{base}\n\n[Unavailable tools (they failed repeatedly and are paused for a while): {}]",
        names.join(", ")
    );
    progress.base_system = Some(base);
}

/// Gives every remaining call a result saying why it was not run.
pub(crate) fn not_run(progress: &mut Progress, calls: impl IntoIterator<Item = ToolCall>, why: &str) {
    for call in calls {
        let text = format!("Not run: {why}.");
        progress.request.messages.push(Message::tool(&call.id, &call.name, &text, true));
    }
}

/// Fakes for unit tests of the loop's parts: a member prepared from an agent and a runtime, an
/// emitter whose events are collected, a context, and a turn's progress — no Runner, no session.
#[cfg(test)]
pub(crate) mod fixture {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::{BTreeSet, VecDeque};
    use std::sync::Arc;

    use kaos_agent::Agent;
    use kaos_providers::{ModelClient, ModelRequest, Usage};
    use kaos_runtime::Runtime;

    use super::state::Progress;
    use crate::context::{RunContext, RunOptions};
    use crate::emit::Emitter;
    use crate::events::EventKind;
    use crate::guard::{BreakerConfig, Breakers};
    use crate::hooks::{HookContext, Hooks};
    use crate::member::{self, Member, Preparation};

    /// What a unit test of the loop drives.
    pub(crate) struct Fixture {
        pub(crate) member: Arc<Member>,
        pub(crate) emit: Emitter,
        pub(crate) events: crate::stream::EventQueue,
        pub(crate) context: RunContext,
        pub(crate) hook_cx: HookContext,
        pub(crate) session: kaos_session::SessionId,
    }

    impl Fixture {
        pub(crate) fn new(agent: Agent, runtime: Runtime, model: Arc<dyn ModelClient>, hooks: Hooks) -> Self {
            let member = member::prepare(
                &agent,
                Preparation {
                    runtime: &runtime,
                    model: Some(model),
                    counter: None,
                    summarizer: None,
                    cache: (0, 0),
                    breakers: Arc::new(Breakers::new(BreakerConfig::new(
                        1,
                        std::time::Duration::from_secs(60),
                    ))),
                    hooks: &hooks,
                    models: Default::default(),
                },
            )
            .unwrap();
            let tx = crate::stream::EventQueue::new();
            let events = tx.clone();
            let session = kaos_session::SessionId::new("unit").unwrap();
            let emit = Emitter::new(
                tx,
                session.as_arc().clone(),
                "run_unit".into(),
                member.agent_name.clone(),
                member.fingerprint.clone(),
            );
            let context = RunContext::new(*agent.budget(), member.max_depth, RunOptions::default());
            let hook_cx = HookContext::new(session.as_arc().clone(), "run_unit", 1);
            Self { member, emit, events, context, hook_cx, session }
        }

        /// The kinds of the events emitted so far.
        pub(crate) fn drain(&mut self) -> Vec<EventKind> {
            let mut kinds = Vec::new();
            while let Some(event) = self.events.pop() {
                kinds.push(event.kind);
            }
            kinds
        }
    }

    /// A turn's progress offering `offered` (names of the member's tools, delegates, …).
    pub(crate) fn progress(member: &Member, offered: &[&str]) -> Progress {
        let mut definitions = member.offered.to_vec();
        definitions.push(super::memory_tool::memory_search_definition());
        definitions.retain(|d| offered.contains(&d.name.as_str()));
        Progress {
            request: ModelRequest::new(member.agent.model().as_str(), Vec::new()),
            base_system: None,
            offered: definitions.into(),
            first_new: 0,
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
        }
    }
}

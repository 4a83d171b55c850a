//! The loop of a turn: pending tool calls (permissions → breaker → budget → run), then a model
//! call (breaker → budget → stream), until a final answer, a pause, a stop, or the limit.

use std::sync::Arc;

use futures::StreamExt;
use futures::future::join_all;
use kaos_agent::Decision;
use kaos_providers::{Message, ModelRequest, ModelResponse, ProviderError, StreamEvent, ToolCall};
use kaos_tools::{ToolAnnotations, ToolContext, ToolError, ToolResult, invoke_tool, tier_result};
use kaos_vfs::{ScopedVfs, Vfs};
use serde_json::{Value, json};
use tracing::Instrument;

use super::{Ending, as_i64, attrs, delegate, memory_tool};
use crate::events::{Emitter, OpenSpan};
use crate::guard::{Availability, BudgetGuard, Exceeded, Tripped};
use crate::hooks::{Dispatch, HookContext, ToolCallInfo, ToolDecision};
use crate::pause::{PendingApproval, Progress};
use crate::permissions::{PermissionPolicy, VerdictReason};
use crate::runner::Shared;
use crate::{EventKind, RunError, SessionId, SpanPhase, SpanSubject, StopReason, ToolCallRecord};
use kaos_session::{MEMORY_SEARCH_TOOL, SessionMemory};

/// What the loop needs besides the progress it advances.
pub(crate) struct Cx<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) session: &'a SessionId,
    pub(crate) emit: &'a Emitter,
    pub(crate) turn_span: &'a OpenSpan,
    pub(crate) policy: &'a PermissionPolicy,
    pub(crate) budget: BudgetGuard,
    workspace: Option<Arc<dyn Vfs>>,
    pub(crate) hook_cx: &'a HookContext,
    /// A pattern's span the turn is inside (a plan step), parent of model and tool call spans.
    scope: Option<OpenSpan>,
}

impl<'a> Cx<'a> {
    pub(super) fn new(
        shared: &'a Shared,
        session: &'a SessionId,
        emit: &'a Emitter,
        turn_span: &'a OpenSpan,
        policy: &'a PermissionPolicy,
        budget: BudgetGuard,
        hook_cx: &'a HookContext,
    ) -> Self {
        Self { shared, session, emit, turn_span, policy, budget, workspace: None, hook_cx, scope: None }
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
        &self.shared.agent
    }

    /// The model for `role` as a request's `model` (the agent's role model, else its main
    /// model). Every role is served by the Runner's client.
    pub(crate) fn model_for(&self, role: kaos_agent::ModelRole) -> String {
        self.shared.agent.model_for(role).as_str().to_owned()
    }

    /// Reports hook faults; a fail-closed failure stops the turn with an error.
    fn hooks_ok<T>(&self, dispatch: &Dispatch<T>) -> Result<(), RunError> {
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

    fn tripped(&self, scope: &str, name: &str, tripped: Option<Tripped>) {
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
        if let Some(ending) = run_pending(cx, memory, progress).await? {
            return Ok(ending);
        }
        prepare_request(cx, progress);
        let iteration = progress.model_calls + 1;
        let response = match model_call(cx, &mut progress.request, iteration, purpose).await? {
            Called::Response(response) => response,
            Called::Stopped(ending) => return Ok(ending),
        };
        progress.record_model_call(&response);
        progress.request.messages.push(response.to_message());
        if response.tool_calls.is_empty() {
            return Ok(Ending::Done(StopReason::Completed));
        }
        if progress.model_calls.saturating_sub(first_call) >= max_iterations {
            // Keep the history well-formed for the next turn: every call gets a result.
            not_run(progress, response.tool_calls, "the turn reached its iteration limit");
            return Ok(Ending::Done(StopReason::IterationLimit));
        }
        progress.pending = response.tool_calls.into();
    }
}

/// What a model call is for: its text is the turn's answer (streamed as `text_delta`s), or it
/// is the pattern's own work — a classification, a plan, an extraction — whose text is not
/// streamed (its `llm_call` span is marked `internal`, and the fold ignores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Answer,
    Internal,
}

/// How a guarded model call went.
pub(crate) enum Called {
    /// The model answered (its usage is recorded in the turn's budget; add it to the progress
    /// with [`Progress::record_model_call`]).
    Response(ModelResponse),
    /// A guard stopped the turn before the call: the model's breaker is open, or a budget
    /// would be exceeded.
    Stopped(Ending),
}

/// One model call under every guard of the turn, as each pattern makes them: the model's
/// circuit breaker, the budget (checked against the call's worst case, output capped to fit),
/// the model-call hooks, an `llm_call` span with streamed deltas and `usage_observed`, and the
/// wall-clock cap. `iteration` numbers the call within the turn (from 1).
///
/// When the request's model is unavailable — its breaker is open, or the call failed in a way
/// another model may not ([`ProviderError::is_fallbackable`]) — the agent's `fallback_models`
/// are tried in order (each under the same guards, its `llm_call` span marked `fallback_for`).
/// The request's model is left as it was, so the next call tries the first model again. With
/// no model left, an open breaker stops the turn (`ModelUnavailable`) and a failure is the
/// error (every failure counts against its model's breaker).
pub(crate) async fn model_call(
    cx: &mut Cx<'_>,
    request: &mut ModelRequest,
    iteration: u32,
    purpose: Purpose,
) -> Result<Called, RunError> {
    let first = request.model.clone();
    let fallbacks: Vec<String> =
        cx.agent().fallback_models().iter().map(|m| m.as_str().to_owned()).filter(|m| *m != first).collect();
    let mut outcome = Attempt::Unavailable(None);
    for (i, model) in std::iter::once(first.clone()).chain(fallbacks).enumerate() {
        request.model = model;
        let fallback_for = (i > 0).then_some(first.as_str());
        outcome = attempt(cx, request, iteration, purpose, fallback_for).await;
        if !matches!(outcome, Attempt::Unavailable(_)) {
            break;
        }
    }
    request.model = first;
    match outcome {
        Attempt::Done(called) => Ok(called),
        Attempt::Failed(error) | Attempt::Unavailable(Some(error)) => Err(error),
        Attempt::Unavailable(None) => Ok(Called::Stopped(Ending::Done(StopReason::ModelUnavailable))),
    }
}

/// How one model's attempt at a call went.
enum Attempt {
    /// Answered, or stopped by a guard that another model would not pass either (a budget).
    Done(Called),
    /// Failed in a way another model would not mend (or a hook failed closed).
    Failed(RunError),
    /// The model is unavailable: its breaker is open (`None`) or it failed in a way another
    /// model may not.
    Unavailable(Option<RunError>),
}

async fn attempt(
    cx: &mut Cx<'_>,
    request: &mut ModelRequest,
    iteration: u32,
    purpose: Purpose,
    fallback_for: Option<&str>,
) -> Attempt {
    let model_key = format!("model:{}", request.model);
    if let Availability::Unavailable(_) = cx.shared.breakers.acquire(&model_key) {
        return Attempt::Unavailable(None);
    }
    let client = cx.shared.client_for(&request.model);
    let capabilities = client.capabilities();
    let input = request.estimated_input_tokens();
    let price = client.price(&request.model);
    if let Err(exceeded) =
        cx.budget.before_model_call(request, input, u64::from(capabilities.max_output_tokens), price)
    {
        return Attempt::Done(Called::Stopped(cx.stop(exceeded)));
    }
    let before = cx.shared.hooks.before_model_call(cx.hook_cx, request).await;
    if let Err(error) = cx.hooks_ok(&before) {
        return Attempt::Failed(error);
    }
    let (provider, model) = request.model.split_once(':').unwrap_or(("", request.model.as_str()));
    let llm_span = tracing::info_span!(
        "kaos.llm_call",
        otel.name = %format!("chat {}", request.model),
        gen_ai.operation.name = "chat",
        gen_ai.system = provider,
        gen_ai.request.model = model,
        gen_ai.response.model = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        kaos.iteration = i64::from(iteration),
    );
    let call = call_model(cx, request, iteration, purpose, fallback_for).instrument(llm_span.clone());
    let outcome = match cx.budget.time_left() {
        Some(left) => match tokio::time::timeout(left, call).await {
            Ok(outcome) => outcome,
            Err(_) => return Attempt::Done(Called::Stopped(cx.stop(cx.budget.out_of_time()))),
        },
        None => call.await,
    };
    let response = match outcome {
        Ok(response) => {
            cx.shared.breakers.record(&model_key, true);
            response
        }
        Err(error) => {
            let tripped = cx.shared.breakers.record(&model_key, false);
            cx.tripped("model", &request.model, tripped);
            return match &error {
                RunError::Provider(e) if e.is_fallbackable() => Attempt::Unavailable(Some(error)),
                _ => Attempt::Failed(error),
            };
        }
    };
    llm_span.record("gen_ai.response.model", response.model.as_str());
    llm_span.record(
        "gen_ai.usage.input_tokens",
        as_i64(response.usage.input_tokens + response.usage.cached_input_tokens),
    );
    llm_span.record("gen_ai.usage.output_tokens", as_i64(response.usage.output_tokens));
    let after = cx.shared.hooks.after_model_call(cx.hook_cx, &response).await;
    if let Err(error) = cx.hooks_ok(&after) {
        return Attempt::Failed(error);
    }
    cx.budget.record_model_call(&response.usage, response.cost_usd);
    Attempt::Done(Called::Response(response))
}

/// Sets the tools offered for the next call: those of the turn whose breaker is not open, and
/// tells the model about the ones withdrawn.
fn prepare_request(cx: &Cx<'_>, progress: &mut Progress) {
    let (offered, withdrawn): (Vec<_>, Vec<_>) =
        progress.offered.iter().cloned().partition(|t| !cx.shared.breakers.is_open(&t.name));
    progress.request.tools = offered;
    progress.request.system = if withdrawn.is_empty() {
        progress.base_system.clone()
    } else {
        let names: Vec<&str> = withdrawn.iter().map(|t| t.name.as_str()).collect();
        format!(
            "{}\n\n[Unavailable tools (they failed repeatedly and are paused for a while): {}]",
            progress.base_system,
            names.join(", ")
        )
    };
}

/// Gives every remaining call a result saying why it was not run.
fn not_run(progress: &mut Progress, calls: impl IntoIterator<Item = ToolCall>, why: &str) {
    for call in calls {
        let text = format!("Not run: {why}.");
        progress.request.messages.push(Message::tool(&call.id, &call.name, &text, true));
    }
}

/// What the guards say about one pending call.
enum Gate {
    /// Run it with these arguments.
    Run(Value, bool),
    /// Do not run it; this is its result.
    Answer(ToolResult),
    /// Pause for approval.
    Pause(String),
    /// A budget stops the turn.
    Stop(Exceeded),
}

/// Handles the pending calls in order. Consecutive read-only calls run concurrently; results
/// are always recorded in call order.
async fn run_pending(
    cx: &mut Cx<'_>,
    memory: &SessionMemory,
    progress: &mut Progress,
) -> Result<Option<Ending>, RunError> {
    let mut batch: Vec<(ToolCall, Value, bool, OpenSpan)> = Vec::new();
    while let Some(call) = progress.pending.front().cloned() {
        if let Some(fault) = cx.emit.take_hook_stop() {
            return Err(RunError::Hook { hook: fault.hook, message: fault.message });
        }
        match gate(cx, progress, &call).await {
            Gate::Pause(reason) => {
                flush(cx, memory, progress, &mut batch).await?;
                let pending = PendingApproval {
                    call_id: call.id.clone(),
                    tool_name: call.name.clone(),
                    arguments: call.arguments.clone(),
                    reason,
                };
                return Ok(Some(Ending::Paused(pending)));
            }
            Gate::Stop(exceeded) => {
                flush(cx, memory, progress, &mut batch).await?;
                let rest = std::mem::take(&mut progress.pending);
                not_run(progress, rest, "the turn's budget is spent");
                return Ok(Some(cx.stop(exceeded)));
            }
            Gate::Answer(result) => {
                flush(cx, memory, progress, &mut batch).await?;
                progress.pending.pop_front();
                let span = start_tool_span(&call, &call.arguments, cx.emit, cx.parent());
                record(cx, progress, &call, &call.arguments, result, span).await?;
            }
            Gate::Run(arguments, read_only) => {
                progress.pending.pop_front();
                cx.budget.record_tool_call();
                let span = start_tool_span(&call, &arguments, cx.emit, cx.parent());
                if let Some(target) = handoff_target(cx.shared, progress, &call.name) {
                    flush(cx, memory, progress, &mut batch).await?;
                    let target = target.to_owned();
                    let result = ToolResult::text(format!("Handed the conversation to `{target}`."));
                    record(cx, progress, &call, &arguments, result, span).await?;
                    let rest = std::mem::take(&mut progress.pending);
                    not_run(progress, rest, "the conversation was handed to another agent");
                    progress.handoffs += 1;
                    return Ok(Some(Ending::Handoff(target)));
                }
                if is_delegate(cx.shared, progress, &call.name) {
                    flush(cx, memory, progress, &mut batch).await?;
                    let parent = delegate::Parent {
                        shared: cx.shared,
                        session: cx.session,
                        emit: cx.emit,
                        policy: cx.policy,
                    };
                    let result =
                        delegate::run(parent, &mut cx.budget, progress, &call, &arguments, &span).await;
                    record(cx, progress, &call, &arguments, result, span).await?;
                    continue;
                }
                if !read_only {
                    flush(cx, memory, progress, &mut batch).await?;
                }
                batch.push((call, arguments, read_only, span));
                if !read_only {
                    flush(cx, memory, progress, &mut batch).await?;
                }
            }
        }
    }
    flush(cx, memory, progress, &mut batch).await?;
    Ok(None)
}

/// Runs a batch of admitted calls (concurrently when there are several) and records them.
async fn flush(
    cx: &mut Cx<'_>,
    memory: &SessionMemory,
    progress: &mut Progress,
    batch: &mut Vec<(ToolCall, Value, bool, OpenSpan)>,
) -> Result<(), RunError> {
    if batch.is_empty() {
        return Ok(());
    }
    let vfs = match &cx.workspace {
        Some(vfs) => vfs.clone(),
        None => cx.workspace.insert(session_workspace(cx.shared, cx.session)?).clone(),
    };
    let context = ToolContext::new(cx.session.as_arc().clone(), cx.emit.run_id.clone(), "", vfs);
    let shared = cx.shared;
    let results = join_all(batch.iter().map(|(call, arguments, _, _)| {
        let span = tracing::info_span!(
            "kaos.tool_call",
            otel.name = %format!("execute_tool {}", call.name),
            gen_ai.operation.name = "execute_tool",
            gen_ai.tool.name = %call.name,
            gen_ai.tool.call.id = %call.id,
        );
        run_tool(shared, memory, call, arguments, context.clone()).instrument(span)
    }))
    .await;
    for ((call, arguments, _, span), (result, failed)) in batch.drain(..).zip(results) {
        if shared.tools.contains_key(&call.name) {
            let tripped = shared.breakers.record(&call.name, !failed);
            cx.tripped("tool", &call.name, tripped);
        }
        record(cx, progress, &call, &arguments, result, span).await?;
    }
    Ok(())
}

/// Permission policy, then hooks, then circuit breaker, then budget, for one call.
async fn gate(cx: &mut Cx<'_>, progress: &Progress, call: &ToolCall) -> Gate {
    let shared = cx.shared;
    if call.name == MEMORY_SEARCH_TOOL && progress.offered.iter().any(|t| t.name == MEMORY_SEARCH_TOOL) {
        return match cx.budget.before_tool_call() {
            Ok(()) => Gate::Run(call.arguments.clone(), true),
            Err(exceeded) => Gate::Stop(exceeded),
        };
    }
    let is_delegate = is_delegate(shared, progress, &call.name);
    let is_handoff = handoff_target(shared, progress, &call.name).is_some();
    let annotations: ToolAnnotations = match shared.tools.get(&call.name) {
        _ if is_delegate || is_handoff => ToolAnnotations::DEFAULT,
        Some(tool) => tool.spec().annotations,
        None => return Gate::Answer(ToolError::NotFound(call.name.clone()).into_result()),
    };
    let verdict = cx.policy.evaluate(&call.name, &call.arguments, &annotations);
    let approved = progress.approved_calls.contains(&call.id) || progress.approved_tools.contains(&call.name);
    let (decision, reason) = match (verdict.decision, approved) {
        (Decision::Ask, true) => (Decision::Allow, "approved by a person".to_owned()),
        (decision, _) => (decision, reason_text(verdict.reason)),
    };
    cx.emit.emit(EventKind::PermissionDecided {
        call_id: call.id.clone(),
        tool_name: call.name.clone(),
        decision,
        reason: reason.clone(),
    });
    match decision {
        Decision::Deny => {
            return Gate::Answer(ToolResult::error(format!(
                "Denied by the permission policy ({reason}); do not retry this call."
            )));
        }
        Decision::Ask => return Gate::Pause(format!("the permission policy asks for approval ({reason})")),
        _ => {}
    }
    let mut arguments = call.arguments.clone();
    if !cx.shared.hooks.is_empty() {
        let info = ToolCallInfo::new(&call.id, &call.name, arguments.clone()).with_annotations(annotations);
        let decided = cx.shared.hooks.before_tool_call(cx.hook_cx, info).await;
        cx.emit.faults(&decided.faults, None);
        match decided.value {
            ToolDecision::Continue => {}
            ToolDecision::Rewrite { arguments: rewritten } => arguments = rewritten,
            ToolDecision::Skip { result } => return Gate::Answer(ToolResult::text(result)),
            ToolDecision::RequireApproval { reason } if !approved => {
                return Gate::Pause(format!("a hook asks for approval: {reason}"));
            }
            ToolDecision::RequireApproval { .. } => {}
            ToolDecision::Deny { reason } => {
                return Gate::Answer(ToolResult::error(format!("Denied: {reason}")));
            }
        }
    }
    if is_delegate && let Err(result) = delegate::depth_check(shared) {
        return Gate::Answer(result);
    }
    if is_handoff && progress.handoffs >= shared.max_depth {
        return Gate::Answer(ToolResult::error(format!(
            "This turn already handed the conversation over {} time(s), the limit; answer yourself.",
            progress.handoffs
        )));
    }
    if let Availability::Unavailable(wait) = shared.breakers.acquire(&call.name) {
        return Gate::Answer(ToolResult::error(format!(
            "`{}` is unavailable: it failed repeatedly; try again in {} s or do without it.",
            call.name,
            wait.as_secs().max(1)
        )));
    }
    match cx.budget.before_tool_call() {
        Ok(()) => Gate::Run(arguments, annotations.read_only),
        Err(exceeded) => Gate::Stop(exceeded),
    }
}

/// The agent a `handoff_to_<name>` tool offered in this turn hands the conversation to.
fn handoff_target<'s>(shared: &'s Shared, progress: &Progress, name: &str) -> Option<&'s str> {
    shared.handoff_target(name).filter(|_| progress.offered.iter().any(|t| t.name == name))
}

/// Whether `name` is a delegate offered in this turn (handled by the runner, not a tool).
fn is_delegate(shared: &Shared, progress: &Progress, name: &str) -> bool {
    delegate::find(shared, name).is_some() && progress.offered.iter().any(|t| t.name == name)
}

fn reason_text(reason: VerdictReason) -> String {
    match reason {
        VerdictReason::RequiresConfirmation => "the tool requires confirmation".to_owned(),
        VerdictReason::Rule(i) => format!("permission rule {i}"),
        VerdictReason::ReadOnly => "read-only tool".to_owned(),
        VerdictReason::Destructive => "destructive tool".to_owned(),
        _ => "default".to_owned(),
    }
}

/// Records a call's result: the after-tool hooks, the span, the message for the model, the
/// record.
async fn record(
    cx: &Cx<'_>,
    progress: &mut Progress,
    call: &ToolCall,
    arguments: &Value,
    result: ToolResult,
    span: OpenSpan,
) -> Result<(), RunError> {
    if !cx.shared.hooks.is_empty() {
        let info = ToolCallInfo::new(&call.id, &call.name, arguments.clone());
        let after = cx.shared.hooks.after_tool_call(cx.hook_cx, &info, &result).await;
        cx.emit.faults(&after.faults, after.stop());
    }
    let text = result.to_model_text();
    cx.emit.end(
        span,
        SpanPhase::Complete,
        attrs([
            ("tool_name", json!(call.name)),
            ("call_id", json!(call.id)),
            ("result", json!(text)),
            ("is_error", json!(result.is_error)),
        ]),
    );
    progress.request.messages.push(Message::tool(&call.id, &call.name, &text, result.is_error));
    progress.tool_calls.push(ToolCallRecord {
        call_id: call.id.clone(),
        name: call.name.clone(),
        arguments: arguments.clone(),
        result: text,
        is_error: result.is_error,
    });
    Ok(())
}

async fn call_model(
    cx: &Cx<'_>,
    request: &ModelRequest,
    iteration: u32,
    purpose: Purpose,
    fallback_for: Option<&str>,
) -> Result<ModelResponse, RunError> {
    let (shared, emit) = (cx.shared, cx.emit);
    let internal = purpose == Purpose::Internal;
    let mut attributes = attrs([("model", json!(request.model)), ("iteration", json!(iteration))]);
    if internal {
        attributes.insert("internal".into(), json!(true));
    }
    if let Some(first) = fallback_for {
        attributes.insert("fallback_for".into(), json!(first));
    }
    let span =
        emit.start(SpanSubject::LlmCall, format!("llm.{}", request.model), Some(cx.parent()), attributes);
    let mut streamed = String::new();
    let mut response = None;
    let mut stream = shared.client_for(&request.model).stream(request);
    while let Some(item) = stream.next().await {
        match item {
            Ok(
                StreamEvent::TextDelta { .. }
                | StreamEvent::ThinkingDelta { .. }
                | StreamEvent::ToolCallDelta { .. },
            ) if internal => {}
            Ok(StreamEvent::TextDelta { text }) => {
                streamed.push_str(&text);
                emit.emit(EventKind::TextDelta { text });
            }
            Ok(StreamEvent::ThinkingDelta { text }) => emit.emit(EventKind::ThinkingDelta { text }),
            Ok(StreamEvent::ToolCallDelta { index, arguments, .. }) => {
                emit.emit(EventKind::ToolCallArgsDelta { index, text: arguments })
            }
            Ok(StreamEvent::Completed { response: r }) => response = Some(r),
            Ok(StreamEvent::RetryScheduled { attempt, wait_ms, reason, message }) => {
                emit.emit(EventKind::RetryScheduled {
                    model: request.model.clone(),
                    attempt,
                    wait_ms,
                    reason,
                    message,
                })
            }
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
        _ if internal => {}
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
    let root = kaos_session::files_dir(session)?;
    Ok(Arc::new(ScopedVfs::new(shared.runtime.vfs().clone(), root)))
}

fn start_tool_span(call: &ToolCall, arguments: &Value, emit: &Emitter, parent: &OpenSpan) -> OpenSpan {
    emit.start(
        SpanSubject::ToolCall,
        format!("tool.{}", call.name),
        Some(parent),
        attrs([
            ("tool_name", json!(call.name)),
            ("call_id", json!(call.id)),
            ("arguments", arguments.clone()),
        ]),
    )
}

/// Runs one admitted call; returns its result and whether the tool itself failed (what
/// breakers count: errors, timeouts and panics, not the model's bad arguments).
async fn run_tool(
    shared: &Shared,
    memory: &SessionMemory,
    call: &ToolCall,
    arguments: &Value,
    context: ToolContext,
) -> (ToolResult, bool) {
    if call.name == MEMORY_SEARCH_TOOL {
        return (memory_tool::search_memory(memory, arguments), false);
    }
    let Some(tool) = shared.tools.get(&call.name) else {
        return (ToolError::NotFound(call.name.clone()).into_result(), false);
    };
    let context = context.with_call_id(call.id.as_str());
    let vfs = context.vfs().clone();
    let default_timeout = shared.runtime.tools().default_timeout();
    let result = match invoke_tool(tool.as_ref(), arguments.clone(), context.clone(), default_timeout).await {
        Ok(result) => result,
        Err(error) => {
            if let Some(detail) = error.detail() {
                tracing::warn!(tool = %call.name, %detail, "tool failed");
            }
            let failed = matches!(
                error,
                ToolError::Timeout { .. } | ToolError::Panicked { .. } | ToolError::Failed { .. }
            );
            return (error.into_result(), failed);
        }
    };
    let artifact_id = format!("{}-{}", context.run_id(), sanitize(&call.id));
    let failed = result.is_error;
    (tier_result(result, vfs.as_ref(), &artifact_id).await.unwrap_or_else(ToolError::into_result), failed)
}

/// Keeps `[A-Za-z0-9_-]` of a vendor's call id so it can name an artifact.
fn sanitize(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').take(64).collect()
}

//! Delegation (agent-as-tool): the agent's delegates are offered to the model as tools taking
//! `{"task": string}`; calling one runs the sub-agent's turn and returns its final text.
//!
//! The sub-agent runs with the same runtime (its own model, or the client the parent's Runner
//! was given), under the parent run's permission policy, hooks, circuit breakers and remaining
//! budget, in the derived session `{parent_session}.sub.{delegate_name}`, one level deeper (at
//! the depth limit the call is an error result). Its usage and cost are added to the parent's turn. A tool call of the
//! sub-agent that asks for approval is denied (the sub-agent is told so and goes on). The
//! sub-agent's events are forwarded into the parent's stream, wrapped in `subagent` events.

use kaos_agent::{Agent, Delegate};
use kaos_providers::{ToolCall, ToolDefinition};
use kaos_tools::ToolResult;
use serde_json::{Value, json};

use super::attrs;
use crate::events::{Emitter, OpenSpan};
use crate::guard::BudgetGuard;
use crate::pause::Progress;
use crate::permissions::PermissionPolicy;
use crate::runner::{RunOptions, Shared};
use crate::{
    Approval, EventKind, RunError, RunStream, Runner, SessionId, SpanPhase, SpanSubject, StopReason,
    TurnFold, TurnResponse,
};
use futures::StreamExt;

/// Most characters of the sub-agent's answer in the span's `result_summary`.
const SUMMARY_CHARS: usize = 200;

/// The delegate the model calls by `name`, if any.
pub(super) fn find<'a>(shared: &'a Shared, name: &str) -> Option<&'a Delegate> {
    shared.agent.config().delegates.iter().find(|d| d.name == name)
}

/// The tools the model calls the agent's delegates with.
pub(super) fn definitions(shared: &Shared) -> impl Iterator<Item = ToolDefinition> + '_ {
    shared.agent.config().delegates.iter().map(|d| ToolDefinition {
        name: d.name.clone(),
        description: d.description.clone(),
        parameters: json!({
            "type": "object",
            "properties": {"task": {"type": "string", "description": "What the sub-agent should do."}},
            "required": ["task"],
            "additionalProperties": false
        }),
    })
}

/// Whether a delegate call may run at this depth; the error result for the model if not.
pub(super) fn depth_check(shared: &Shared) -> Result<(), ToolResult> {
    if shared.depth >= shared.max_depth {
        return Err(ToolResult::error(format!(
            "Delegation depth limit reached ({} nested sub-agent(s)); do the task yourself.",
            shared.max_depth
        )));
    }
    Ok(())
}

/// What the parent's loop lends a sub-agent.
pub(super) struct Parent<'a> {
    pub(super) shared: &'a Shared,
    pub(super) session: &'a SessionId,
    pub(super) emit: &'a Emitter,
    pub(super) policy: &'a PermissionPolicy,
}

/// Runs the sub-agent's turn for one call; its usage and cost join the parent's turn.
pub(super) async fn run(
    parent: Parent<'_>,
    budget: &mut BudgetGuard,
    progress: &mut Progress,
    call: &ToolCall,
    arguments: &Value,
    tool_span: &OpenSpan,
) -> ToolResult {
    let Some(delegate) = find(parent.shared, &call.name) else {
        return ToolResult::error(format!("unknown delegate `{}`", call.name));
    };
    let Some(task) = arguments.get("task").and_then(Value::as_str) else {
        return ToolResult::error("`task` (a string) is required");
    };
    let span = parent.emit.start(
        SpanSubject::Subagent,
        format!("subagent.{}", delegate.name),
        Some(tool_span),
        attrs([("subagent_name", json!(delegate.name)), ("task", json!(task))]),
    );
    let outcome = sub_turn(&parent, delegate, task, budget).await;
    let (phase, result, summary) = match outcome {
        Ok(response) => {
            budget.record_model_call(&response.usage, Some(response.cost_usd));
            progress.usage += response.usage;
            progress.cost_usd += response.cost_usd;
            parent.emit.emit(EventKind::UsageObserved {
                model: format!("subagent:{}", delegate.name),
                usage: response.usage,
                cost_usd: Some(response.cost_usd),
                usage_estimated: false,
            });
            let summary: String = response.text.chars().take(SUMMARY_CHARS).collect();
            let result = match response.stop_reason {
                StopReason::Completed => ToolResult::text(response.text),
                other => ToolResult::error(format!(
                    "The sub-agent stopped ({}): {}",
                    serde_json::to_value(other)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    response.text
                )),
            };
            (SpanPhase::Complete, result, summary)
        }
        Err(error) => {
            let text = format!("The sub-agent failed: {error}");
            (SpanPhase::Error, ToolResult::error(text.clone()), text)
        }
    };
    parent.emit.end(
        span,
        phase,
        attrs([
            ("subagent_name", json!(delegate.name)),
            ("task", json!(task)),
            ("result_summary", json!(summary)),
        ]),
    );
    result
}

async fn sub_turn(
    parent: &Parent<'_>,
    delegate: &Delegate,
    task: &str,
    budget: &BudgetGuard,
) -> Result<TurnResponse, RunError> {
    let shared = parent.shared;
    let agent = Agent::from_config(delegate.agent.clone()).map_err(|e| RunError::Config(e.to_string()))?;
    // The sub-agent's own model: the client the parent's Runner was given, else resolved from
    // the sub-agent's `provider:model` like any Runner's.
    let mut builder = Runner::builder(agent, shared.runtime.clone());
    if let Some(model) = &shared.custom_model {
        builder = builder.model(model.clone());
    }
    let runner = builder.sub_agent(shared).build()?;
    let session = format!("{}.sub.{}", parent.session, delegate.name);
    let options =
        RunOptions { inherited: Some((parent.policy.clone(), budget.remaining())), ..RunOptions::default() };
    let mut response = forward(parent, &delegate.name, runner.run_with(task, &session, options)).await?;
    // Approval cannot be asked from inside a sub-agent: the pending call is denied.
    while let (StopReason::ApprovalRequired, Some(_)) = (response.stop_reason, &response.pending_approval) {
        let state = runner.run_state(&response.run_id).await?;
        let reason = "approval is not available inside a sub-agent".to_owned();
        response = forward(parent, &delegate.name, runner.resume(state, Approval::Deny { reason })).await?;
    }
    Ok(response)
}

/// Folds a sub-agent's run while forwarding each of its events into the parent's stream.
async fn forward(parent: &Parent<'_>, name: &str, mut run: RunStream) -> Result<TurnResponse, RunError> {
    let mut fold = TurnFold::default();
    while let Some(event) = run.next().await {
        let event = event?;
        fold.push(&event);
        parent.emit.emit(EventKind::Subagent { subagent: name.to_owned(), event: Box::new(event) });
    }
    fold.finish().ok_or_else(|| RunError::Config("the sub-agent's run ended without a turn summary".into()))
}

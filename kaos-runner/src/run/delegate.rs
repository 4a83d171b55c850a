//! Delegation (agent-as-tool): the agent's delegates are offered to the model as tools taking
//! `{"task": string}`; calling one runs the sub-agent's turn and returns its final text.
//!
//! The sub-agent runs with the same runtime (its own model, or the client the parent's Runner
//! was given), the parent's hooks and circuit breakers, in the derived session
//! `{parent_session}.sub.{delegate_name}`, under a child [`RunContext`]: the parent run's
//! permission policy and remaining budget, one level deeper (at the depth limit the call is an
//! error result, decided in `engine/admit.rs`). The child context is stored with the
//! sub-agent's run state like any run's, so it holds after a pause too. Its usage and cost are
//! added to the parent's turn. A tool call of the sub-agent that asks for approval is denied
//! (the sub-agent is told so and goes on, under the same child context). The sub-agent's
//! events are forwarded into the parent's stream, wrapped in `subagent` events.

use std::sync::Arc;

use futures::StreamExt;
use kaos_agent::{Agent, Delegate, DelegateTarget};
use kaos_tools::ToolResult;
use serde_json::{Value, json};

use super::state::RunState;
use super::{Bounds, Start};
use crate::approval::Approval;
use crate::context::RunContext;
use crate::emit::{OpenSpan, attrs};
use crate::engine::state::Progress;
use crate::engine::{Cx, Delegated, Delegator};
use crate::error::RunError;
use crate::events::{EventKind, SpanPhase, SpanSubject};
use crate::member::{self, DEFAULT_SESSION_CACHE, DEFAULT_SESSION_CACHE_BYTES, Member, Preparation};
use crate::response::{TurnFold, TurnResponse};
use crate::stream::RunStream;
use kaos_session::StopReason;

/// Most characters of the sub-agent's answer in the span's `result_summary`.
const SUMMARY_CHARS: usize = 200;

/// Runs delegates' sub-agents for the engine.
pub(crate) struct SubAgents;

#[async_trait::async_trait]
impl Delegator for SubAgents {
    async fn delegate(
        &self,
        cx: &mut Cx<'_>,
        progress: &mut Progress,
        delegate: &Delegate,
        call_id: &str,
        arguments: &Value,
        tool_span: &OpenSpan,
    ) -> Delegated {
        let Some(task) = arguments.get("task").and_then(Value::as_str) else {
            return Delegated::Done(ToolResult::error("`task` (a string) is required"));
        };
        match delegate.target() {
            Some(DelegateTarget::Local(_)) => {
                Delegated::Done(local(cx, progress, delegate, task, tool_span).await)
            }
            #[cfg(feature = "a2a")]
            Some(DelegateTarget::Remote { .. }) => {
                super::remote::call(cx, progress, delegate, call_id, task, tool_span).await
            }
            _ => {
                let _ = call_id;
                Delegated::Done(ToolResult::error(format!(
                    "`{}` cannot be called: remote delegates need kaos-runner's `a2a` feature",
                    delegate.name
                )))
            }
        }
    }
}

/// A local sub-agent's call: its turn under a child context, its usage and cost added to the
/// parent's.
async fn local(
    cx: &mut Cx<'_>,
    progress: &mut Progress,
    delegate: &Delegate,
    task: &str,
    tool_span: &OpenSpan,
) -> ToolResult {
    let span = cx.emit.start(
        SpanSubject::Subagent,
        format_args!("subagent.{}", delegate.name),
        Some(tool_span),
        attrs([("subagent_name", json!(delegate.name)), ("task", json!(task))]),
    );
    let context = cx.context.child(cx.policy, cx.budget.remaining());
    let outcome = sub_turn(cx, delegate, task, context).await;
    let (phase, result, summary) = match outcome {
        Ok(response) => {
            cx.budget.record_model_call(&response.usage, Some(response.cost_usd));
            progress.usage += response.usage;
            progress.cost_usd += response.cost_usd;
            cx.emit.emit(EventKind::UsageObserved {
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
            let text = format!("The sub-agent failed: {}", error.report());
            (SpanPhase::Error, ToolResult::error(text.clone()), text)
        }
    };
    cx.emit.end(
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

/// The sub-agent's turn, under `context`; a call that needs approval is denied and the run
/// resumed (its stored state keeps `context`).
async fn sub_turn(
    cx: &Cx<'_>,
    delegate: &Delegate,
    task: &str,
    context: RunContext,
) -> Result<TurnResponse, RunError> {
    let parent = cx.member;
    let Some(DelegateTarget::Local(config)) = delegate.target() else {
        return Err(RunError::Internal("a remote delegate reached the local sub-agent path"));
    };
    let agent = Agent::from_config(config.clone())?;
    // The sub-agent's own model: the client the parent's Runner was given, else resolved from
    // the sub-agent's `provider:model` like any Runner's.
    let member = member::prepare(
        &agent,
        Preparation {
            runtime: &parent.runtime,
            model: parent.custom_model.clone(),
            counter: None,
            summarizer: None,
            cache: (DEFAULT_SESSION_CACHE, DEFAULT_SESSION_CACHE_BYTES),
            breakers: parent.breakers.clone(),
            hooks: &parent.hooks,
            models: parent.models.clone(),
        },
    )?;
    let session = format!("{}.sub.{}", cx.session, delegate.name);
    let run_id: Arc<str> = format!("run_{}", uuid::Uuid::now_v7().simple()).into();
    let start = Start::Fresh { message: task.to_owned(), bounds: Bounds::Parent(context) };
    let run = super::stream(member.clone(), &session, run_id, (0, 0), start);
    let mut response = forward(cx, &delegate.name, run).await?;
    // Approval cannot be asked from inside a sub-agent: the pending call is denied.
    while let (StopReason::ApprovalRequired, Some(_)) = (response.stop_reason, &response.pending_approval) {
        let state: RunState = super::state::load(member.runtime.vfs().as_ref(), &response.run_id).await?;
        let reason = "approval is not available inside a sub-agent".to_owned();
        response = forward(cx, &delegate.name, resume(&member, state, Approval::Deny { reason })).await?;
    }
    Ok(response)
}

/// Resumes a paused run of `member`.
fn resume(member: &Arc<Member>, state: RunState, approval: Approval) -> RunStream {
    let run_id: Arc<str> = state.run_id.as_str().into();
    let position = (state.next_seq, state.next_span);
    let session = state.session_id.clone();
    super::stream(
        member.clone(),
        &session,
        run_id,
        position,
        Start::Resume { state: Box::new(state), approval },
    )
}

/// Folds a sub-agent's run while forwarding each of its events into the parent's stream.
async fn forward(cx: &Cx<'_>, name: &str, mut run: RunStream) -> Result<TurnResponse, RunError> {
    let mut fold = TurnFold::default();
    while let Some(event) = run.next().await {
        let event = event?;
        fold.push(&event);
        cx.emit.emit(EventKind::Subagent { subagent: name.to_owned(), event: Box::new(event) });
    }
    fold.finish().ok_or(RunError::IncompleteRun)
}

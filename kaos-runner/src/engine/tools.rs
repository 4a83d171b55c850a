//! Runs admitted tool calls and records them: the pending calls of a model response in order
//! (each through [`admit`](super::admit)), consecutive read-only calls concurrently, a
//! delegate through the run's [`Delegator`](super::Delegator), a handoff as the loop's end;
//! every result goes through the after-tool hooks into a `tool_call` span, the conversation
//! and the turn's records.

use std::sync::Arc;

use futures::future::join_all;
use kaos_providers::{Message, ToolCall};
use kaos_tools::{Tier, ToolContext, ToolError, ToolResult, invoke_tool, tier_result};
use kaos_vfs::{ScopedVfs, Vfs};
use serde_json::{Value, json};
use tracing::Instrument;

use super::admit::{Callee, Gate, admit};
use super::state::Progress;
use super::{Cx, Delegated, Ending, memory_tool, not_run};
use crate::approval::PendingApproval;
use crate::emit::{Emitter, OpenSpan, ToolEnd, ToolStart, attrs};
use crate::error::RunError;
use crate::events::{SpanPhase, SpanSubject};
use crate::hooks::ToolCallInfo;
use crate::member::Member;
use kaos_session::{SessionId, SessionMemory, ToolCallRecord};

/// A call admitted to run in a batch.
struct Admitted<'m> {
    call: ToolCall,
    callee: Callee<'m>,
    /// The arguments a hook rewrote the call's to (`None`: the call's own).
    rewritten: Option<Value>,
    span: OpenSpan,
}

/// The arguments a call runs with: those a hook rewrote them to, else its own.
fn arguments<'a>(call: &'a ToolCall, rewritten: &'a Option<Value>) -> &'a Value {
    rewritten.as_ref().unwrap_or(&call.arguments)
}

/// Handles the pending calls in order. Consecutive read-only calls run concurrently; results
/// are always recorded in call order.
pub(crate) async fn run_pending(
    cx: &mut Cx<'_>,
    memory: &SessionMemory,
    progress: &mut Progress,
) -> Result<Option<Ending>, RunError> {
    let member = cx.member;
    let mut batch: Vec<Admitted<'_>> = Vec::new();
    while let Some(call) = progress.pending.pop_front() {
        if let Some(fault) = cx.emit.take_hook_stop() {
            progress.pending.push_front(call);
            return Err(RunError::Hook { hook: fault.hook, message: fault.message });
        }
        let callee = Callee::resolve(member, progress, &call.name);
        match admit(cx, progress, &call, &callee).await {
            Gate::Pause(reason) => {
                flush(cx, memory, progress, &mut batch).await?;
                let pending = PendingApproval {
                    call_id: call.id.clone(),
                    tool_name: call.name.clone(),
                    arguments: call.arguments.clone(),
                    reason,
                };
                // The call waits, first in line, for the person's answer.
                progress.pending.push_front(call);
                return Ok(Some(Ending::Paused(pending)));
            }
            Gate::Stop(exceeded) => {
                flush(cx, memory, progress, &mut batch).await?;
                progress.pending.push_front(call);
                let rest = std::mem::take(&mut progress.pending);
                not_run(progress, rest, "the turn's budget is spent");
                return Ok(Some(cx.stop(exceeded)));
            }
            Gate::Answer(result) => {
                flush(cx, memory, progress, &mut batch).await?;
                let span = start_tool_span(&call, &call.arguments, cx.emit, cx.parent());
                record(cx, progress, call, None, result, span).await?;
            }
            Gate::Run { arguments: rewritten, read_only } => {
                cx.budget.record_tool_call();
                let span = start_tool_span(&call, arguments(&call, &rewritten), cx.emit, cx.parent());
                match callee {
                    Callee::Handoff(target) => {
                        flush(cx, memory, progress, &mut batch).await?;
                        let result = ToolResult::text(format!("Handed the conversation to `{target}`."));
                        record(cx, progress, call, rewritten, result, span).await?;
                        let rest = std::mem::take(&mut progress.pending);
                        not_run(progress, rest, "the conversation was handed to another agent");
                        progress.handoffs += 1;
                        return Ok(Some(Ending::Handoff(target.to_owned())));
                    }
                    Callee::Delegate(delegate) => {
                        flush(cx, memory, progress, &mut batch).await?;
                        let delegator = cx.delegator;
                        let delegated = delegator
                            .delegate(cx, progress, delegate, &call.id, arguments(&call, &rewritten), &span)
                            .await;
                        match delegated {
                            Delegated::Done(result) => {
                                record(cx, progress, call, rewritten, result, span).await?
                            }
                            Delegated::Paused(reason) => {
                                // The remote agent asked a question: the call waits, first in
                                // line, for a person's answer, which resuming sends back.
                                cx.emit.end(
                                    span,
                                    SpanPhase::Complete,
                                    attrs([
                                        ("tool_name", json!(call.name)),
                                        ("call_id", json!(call.id)),
                                        ("paused", json!(true)),
                                    ]),
                                );
                                let pending = PendingApproval {
                                    call_id: call.id.clone(),
                                    tool_name: call.name.clone(),
                                    arguments: call.arguments.clone(),
                                    reason,
                                };
                                progress.pending.push_front(call);
                                return Ok(Some(Ending::Paused(pending)));
                            }
                        }
                    }
                    Callee::Tool(_) | Callee::MemorySearch | Callee::Unknown => {
                        if !read_only {
                            flush(cx, memory, progress, &mut batch).await?;
                        }
                        batch.push(Admitted { call, callee, rewritten, span });
                        if !read_only {
                            flush(cx, memory, progress, &mut batch).await?;
                        }
                    }
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
    batch: &mut Vec<Admitted<'_>>,
) -> Result<(), RunError> {
    if batch.is_empty() {
        return Ok(());
    }
    let vfs = match &cx.workspace {
        Some(vfs) => vfs.clone(),
        None => cx.workspace.insert(session_workspace(cx.member, cx.session)?).clone(),
    };
    let ids = (cx.session.as_arc(), &cx.emit.run_id);
    let member = cx.member;
    let run = |admitted| run_admitted(member, memory, admitted, ids, &vfs);
    if let [one] = batch.as_slice() {
        // One call (the usual batch): run as it is, without joining.
        let outcome = run(one).await;
        if let Some(admitted) = batch.pop() {
            finish(cx, progress, admitted, outcome).await?;
        }
        return Ok(());
    }
    let outcomes = join_all(batch.iter().map(run)).await;
    for (admitted, outcome) in batch.drain(..).zip(outcomes) {
        finish(cx, progress, admitted, outcome).await?;
    }
    Ok(())
}

/// Runs one admitted call inside its `kaos.tool_call` tracing span.
fn run_admitted<'a>(
    member: &'a Member,
    memory: &'a SessionMemory,
    admitted: &'a Admitted<'a>,
    ids: (&'a Arc<str>, &'a Arc<str>),
    vfs: &'a Arc<dyn Vfs>,
) -> impl Future<Output = (ToolResult, bool)> + 'a {
    let call = &admitted.call;
    let span = tracing::info_span!(
        "kaos.tool_call",
        otel.name = %format!("execute_tool {}", call.name),
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = %call.name,
        gen_ai.tool.call.id = %call.id,
    );
    let arguments = arguments(call, &admitted.rewritten);
    run_tool(member, memory, call, &admitted.callee, arguments, ids, vfs).instrument(span)
}

/// Counts a call's outcome against its tool's breaker and records it.
async fn finish(
    cx: &Cx<'_>,
    progress: &mut Progress,
    admitted: Admitted<'_>,
    (result, failed): (ToolResult, bool),
) -> Result<(), RunError> {
    let Admitted { call, callee, rewritten, span } = admitted;
    if let Callee::Tool(_) = callee {
        let tripped = cx.member.breakers.record(&call.name, !failed);
        cx.tripped("tool", &call.name, tripped);
    }
    record(cx, progress, call, rewritten, result, span).await
}

/// Records a call's result: the after-tool hooks, the span, the message for the model, the
/// record (which takes the call's arguments, or those a hook `rewritten` them to).
async fn record(
    cx: &Cx<'_>,
    progress: &mut Progress,
    call: ToolCall,
    rewritten: Option<Value>,
    result: ToolResult,
    span: OpenSpan,
) -> Result<(), RunError> {
    if !cx.member.hooks.is_empty() {
        let info = ToolCallInfo::new(&call.id, &call.name, arguments(&call, &rewritten).clone());
        let after = cx.member.hooks.after_tool_call(cx.hook_cx, &info, &result).await;
        cx.emit.faults(&after.faults, after.stop());
    }
    let is_error = result.is_error;
    let text = result.into_model_text();
    let end = ToolEnd { name: &call.name, call_id: &call.id, result: &text, is_error };
    cx.emit.end(span, SpanPhase::Complete, end);
    progress.request.messages.push(Message::tool(
        call.id.as_str(),
        call.name.as_str(),
        text.as_str(),
        is_error,
    ));
    progress.tool_calls.push(ToolCallRecord {
        call_id: call.id,
        name: call.name,
        arguments: rewritten.unwrap_or(call.arguments),
        result: text,
        is_error,
    });
    Ok(())
}

/// The session's tool workspace: `sessions/{id}/files/`, nothing else reachable.
fn session_workspace(member: &Member, session: &SessionId) -> Result<Arc<dyn Vfs>, RunError> {
    let root = kaos_session::files_dir(session)?;
    Ok(Arc::new(ScopedVfs::new(member.runtime.vfs().clone(), root)))
}

fn start_tool_span(call: &ToolCall, arguments: &Value, emit: &Emitter, parent: &OpenSpan) -> OpenSpan {
    emit.start(
        SpanSubject::ToolCall,
        format_args!("tool.{}", call.name),
        Some(parent),
        ToolStart { name: &call.name, call_id: &call.id, arguments },
    )
}

/// Runs one admitted call; returns its result and whether the tool itself failed (what
/// breakers count: errors, timeouts and panics, not the model's bad arguments).
async fn run_tool(
    member: &Member,
    memory: &SessionMemory,
    call: &ToolCall,
    callee: &Callee<'_>,
    arguments: &Value,
    (session, run_id): (&Arc<str>, &Arc<str>),
    vfs: &Arc<dyn Vfs>,
) -> (ToolResult, bool) {
    let tool = match callee {
        Callee::Tool(tool) => tool,
        Callee::MemorySearch => return (memory_tool::search_memory(memory, arguments), false),
        // Admission answers the others itself; they never reach a batch.
        Callee::Delegate(_) | Callee::Handoff(_) | Callee::Unknown => {
            return (ToolError::NotFound(call.name.clone()).into_result(), false);
        }
    };
    let context = ToolContext::new(session.clone(), run_id.clone(), call.id.as_str(), vfs.clone());
    let default_timeout = member.runtime.tools().default_timeout();
    let result = match invoke_tool(tool.as_ref(), arguments.clone(), context, default_timeout).await {
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
    let failed = result.is_error;
    if result.tier() == Tier::Inline {
        // Nothing to store: no artifact id to write out.
        return (result, failed);
    }
    let artifact_id = format!("{run_id}-{}", sanitize(&call.id));
    (tier_result(result, vfs.as_ref(), &artifact_id).await.unwrap_or_else(ToolError::into_result), failed)
}

/// Keeps `[A-Za-z0-9_-]` of a vendor's call id so it can name an artifact.
fn sanitize(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').take(64).collect()
}

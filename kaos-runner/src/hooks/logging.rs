//! [`LoggingHook`]: every lifecycle callback as a structured `tracing` event.

use async_trait::async_trait;
use kaos_providers::{ModelRequest, ModelResponse};
use kaos_tools::ToolResult;

use super::{Hook, HookContext, HookError, ToolCallInfo, ToolDecision, redact};
use crate::{Event, TurnResponse};

/// Logs every lifecycle callback as a `tracing` event with target `kaos::hooks`, with typed
/// fields (`session_id`, `turn_number`, `model`, `tool`, …) rather than formatted text:
///
/// | callback | level | fields |
/// |---|---|---|
/// | turn start | info | session, run, agent, turn number |
/// | turn end | info | + stop reason, model calls, tool calls, tokens, cost |
/// | before model call | debug | model, message count, tool count |
/// | after model call | debug | model, input/output/cached tokens, cost, tool calls, finish reason |
/// | before tool call | debug | tool, call id, arguments ([`redact`]ed) |
/// | after tool call | debug | tool, call id, is error, result size in bytes |
/// | every event | trace | event type, sequence number |
///
/// It never fails and never changes a decision ([`ToolDecision::Continue`]); the combined
/// decisions of all hooks are logged by [`Hooks`](super::Hooks) itself at debug level.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct LoggingHook;

impl LoggingHook {
    /// The logging hook.
    pub fn new() -> Self {
        Self
    }
}

const TARGET: &str = "kaos::hooks";

#[async_trait]
impl Hook for LoggingHook {
    fn name(&self) -> &str {
        "logging"
    }

    async fn on_turn_start(&self, ctx: &HookContext) -> Result<(), HookError> {
        tracing::info!(
            target: TARGET,
            session_id = %ctx.session_id,
            run_id = %ctx.run_id,
            agent = %ctx.agent,
            turn_number = ctx.turn_number,
            "turn started"
        );
        Ok(())
    }

    async fn on_turn_end(&self, ctx: &HookContext, response: &TurnResponse) -> Result<(), HookError> {
        tracing::info!(
            target: TARGET,
            session_id = %ctx.session_id,
            run_id = %ctx.run_id,
            agent = %ctx.agent,
            turn_number = response.turn_number,
            stop_reason = ?response.stop_reason,
            model_calls = response.model_calls,
            tool_calls = response.tool_calls.len(),
            input_tokens = response.usage.input_tokens,
            output_tokens = response.usage.output_tokens,
            cost_usd = response.cost_usd,
            "turn ended"
        );
        Ok(())
    }

    async fn before_model_call(&self, ctx: &HookContext, request: &ModelRequest) -> Result<(), HookError> {
        tracing::debug!(
            target: TARGET,
            session_id = %ctx.session_id,
            turn_number = ctx.turn_number,
            model = %request.model,
            messages = request.messages.len(),
            tools = request.tools.len(),
            "model call"
        );
        Ok(())
    }

    async fn after_model_call(&self, ctx: &HookContext, response: &ModelResponse) -> Result<(), HookError> {
        tracing::debug!(
            target: TARGET,
            session_id = %ctx.session_id,
            turn_number = ctx.turn_number,
            model = %response.model,
            input_tokens = response.usage.input_tokens,
            output_tokens = response.usage.output_tokens,
            cached_input_tokens = response.usage.cached_input_tokens,
            cost_usd = response.cost_usd,
            tool_calls = response.tool_calls.len(),
            finish_reason = ?response.finish_reason,
            "model call returned"
        );
        Ok(())
    }

    async fn before_tool_call(
        &self,
        ctx: &HookContext,
        call: &ToolCallInfo,
    ) -> Result<ToolDecision, HookError> {
        tracing::debug!(
            target: TARGET,
            session_id = %ctx.session_id,
            turn_number = ctx.turn_number,
            tool = %call.name,
            call_id = %call.call_id,
            arguments = %redact(&call.arguments),
            "tool call"
        );
        Ok(ToolDecision::Continue)
    }

    async fn after_tool_call(
        &self,
        ctx: &HookContext,
        call: &ToolCallInfo,
        result: &ToolResult,
    ) -> Result<(), HookError> {
        let result_bytes: usize = result.content.iter().map(|part| part.to_model_text().len()).sum();
        tracing::debug!(
            target: TARGET,
            session_id = %ctx.session_id,
            turn_number = ctx.turn_number,
            tool = %call.name,
            call_id = %call.call_id,
            is_error = result.is_error,
            result_bytes,
            "tool call returned"
        );
        Ok(())
    }

    fn on_event(&self, event: &Event) -> Result<(), HookError> {
        tracing::trace!(
            target: TARGET,
            session_id = %event.session_id,
            seq = event.seq,
            event_type = event.kind.type_name(),
            "event"
        );
        Ok(())
    }
}

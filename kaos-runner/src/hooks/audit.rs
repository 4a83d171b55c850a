//! [`AuditTrail`]: an append-only JSONL record of every lifecycle callback, secrets redacted.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use kaos_providers::{ModelRequest, ModelResponse};
use kaos_tools::ToolResult;
use kaos_vfs::{Vfs, VfsError, VfsPath};
use serde_json::{Map, Value, json};

use super::redact::redact_str;
use super::{Hook, HookContext, HookError, HookPoint, ToolCallInfo, ToolDecision, redact};
use crate::TurnResponse;

/// The folder [`AuditTrail`] writes to unless told otherwise.
pub const DEFAULT_AUDIT_PREFIX: &str = "audit";

/// A hook that appends one JSON line per lifecycle callback to `{prefix}/{session_id}.jsonl`
/// in a VFS (`audit/{session_id}.jsonl` by default), each line in one [`Vfs::append`], so
/// concurrent turns never interleave within a line.
///
/// Every line has `timestamp_ms`, `point` (`turn_start`, `turn_end`, `before_model_call`,
/// `after_model_call`, `before_tool_call`, `after_tool_call`), `session_id`, `run_id`,
/// `agent` and `turn_number`, then what the callback saw:
///
/// - `turn_end`: `stop_reason`, `model_calls`, `tool_calls` (names), `usage`, `cost_usd`;
/// - `before_model_call`: `model`, `messages` and `tools` (counts);
/// - `after_model_call`: `model`, `usage`, `cost_usd`, `finish_reason`, `tool_calls` (names
///   and ids);
/// - `before_tool_call`: `tool`, `call_id`, `arguments`;
/// - `after_tool_call`: `tool`, `call_id`, `arguments`, `is_error`, `result` (the text the
///   model sees).
///
/// Everything written goes through [`redact`]: secret-named fields and secret-looking values
/// become `"[redacted]"` at any depth. Message contents are not recorded. Events
/// ([`Hook::on_event`]) are not recorded either: they are the event stream's job.
///
/// A failed append is a hook error (a `hook_failed` event; fatal under
/// [`HookFailure::Closed`](super::HookFailure::Closed)). The audit trail never changes a
/// tool decision.
#[derive(Debug, Clone)]
pub struct AuditTrail {
    vfs: Arc<dyn Vfs>,
    prefix: VfsPath,
}

impl AuditTrail {
    /// An audit trail writing to `audit/{session_id}.jsonl` in `vfs`.
    pub fn new(vfs: Arc<dyn Vfs>) -> Self {
        let prefix = VfsPath::new(DEFAULT_AUDIT_PREFIX).unwrap_or_else(|_| VfsPath::root());
        Self { vfs, prefix }
    }

    /// Writing to `{prefix}/{session_id}.jsonl` instead (the root when `prefix` is empty).
    /// Errors when `prefix` is not a valid VFS path.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self, VfsError> {
        self.prefix = if prefix.is_empty() { VfsPath::root() } else { VfsPath::new(prefix)? };
        Ok(self)
    }

    /// The file a session's audit lines go to. Errors when the session id cannot be a file
    /// name.
    pub fn path_for(&self, session_id: &str) -> Result<VfsPath, VfsError> {
        self.prefix.join(&format!("{session_id}.jsonl"))
    }

    async fn record(&self, ctx: &HookContext, point: HookPoint, details: Value) -> Result<(), HookError> {
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        let mut line = Map::new();
        line.insert("timestamp_ms".into(), json!(timestamp_ms));
        line.insert("point".into(), json!(point.as_str()));
        line.insert("session_id".into(), json!(redact_str(&ctx.session_id)));
        line.insert("run_id".into(), json!(&*ctx.run_id));
        line.insert("agent".into(), json!(&*ctx.agent));
        line.insert("turn_number".into(), json!(ctx.turn_number));
        if let Value::Object(details) = redact(&details) {
            line.extend(details);
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        let path = self.path_for(&ctx.session_id).map_err(|err| {
            HookError::new(format!("no audit file for session {:?}: {err}", ctx.session_id))
        })?;
        self.vfs
            .append(&path, Bytes::from(text))
            .await
            .map_err(|err| HookError::new(format!("cannot append to {path}: {err}")))
    }
}

fn model_text(result: &ToolResult) -> String {
    result.content.iter().map(|part| part.to_model_text()).collect::<Vec<_>>().join("\n")
}

#[async_trait]
impl Hook for AuditTrail {
    fn name(&self) -> &str {
        "audit"
    }

    async fn on_turn_start(&self, ctx: &HookContext) -> Result<(), HookError> {
        self.record(ctx, HookPoint::TurnStart, json!({})).await
    }

    async fn on_turn_end(&self, ctx: &HookContext, response: &TurnResponse) -> Result<(), HookError> {
        let tools: Vec<&str> = response.tool_calls.iter().map(|call| call.name.as_str()).collect();
        let details = json!({
            "stop_reason": response.stop_reason,
            "model_calls": response.model_calls,
            "tool_calls": tools,
            "usage": response.usage,
            "cost_usd": response.cost_usd,
        });
        self.record(ctx, HookPoint::TurnEnd, details).await
    }

    async fn before_model_call(&self, ctx: &HookContext, request: &ModelRequest) -> Result<(), HookError> {
        let details = json!({
            "model": request.model,
            "messages": request.messages.len(),
            "tools": request.tools.len(),
        });
        self.record(ctx, HookPoint::BeforeModelCall, details).await
    }

    async fn after_model_call(&self, ctx: &HookContext, response: &ModelResponse) -> Result<(), HookError> {
        let calls: Vec<Value> =
            response.tool_calls.iter().map(|call| json!({"name": call.name, "call_id": call.id})).collect();
        let details = json!({
            "model": response.model,
            "usage": response.usage,
            "cost_usd": response.cost_usd,
            "finish_reason": response.finish_reason,
            "tool_calls": calls,
        });
        self.record(ctx, HookPoint::AfterModelCall, details).await
    }

    async fn before_tool_call(
        &self,
        ctx: &HookContext,
        call: &ToolCallInfo,
    ) -> Result<ToolDecision, HookError> {
        let details = json!({"tool": call.name, "call_id": call.call_id, "arguments": call.arguments});
        self.record(ctx, HookPoint::BeforeToolCall, details).await?;
        Ok(ToolDecision::Continue)
    }

    async fn after_tool_call(
        &self,
        ctx: &HookContext,
        call: &ToolCallInfo,
        result: &ToolResult,
    ) -> Result<(), HookError> {
        let details = json!({
            "tool": call.name,
            "call_id": call.call_id,
            "arguments": call.arguments,
            "is_error": result.is_error,
            "result": model_text(result),
        });
        self.record(ctx, HookPoint::AfterToolCall, details).await
    }
}

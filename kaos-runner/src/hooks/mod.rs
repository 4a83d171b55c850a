//! Hooks: typed callbacks the Runner calls at every step of every turn.
//!
//! A [`Hook`] sees a turn start and end, each model call before and after, each tool call
//! before and after, and every event. Before a tool call, a hook decides ([`ToolDecision`]):
//! continue, rewrite the arguments, skip the call with a result, require a person's approval,
//! or deny it. Across hooks the most restrictive decision wins ([`ToolDecision::combine`]).
//!
//! A hook that errors or panics never fails silently: the Runner emits a `hook_failed` event
//! and, per [`HookFailure`], carries on (fail open) or treats the failure as a denial / a
//! stopped turn (fail closed).
//!
//! [`Hooks`] is the ordered set of hooks a Runner calls, with its failure policy; its dispatch
//! methods call every hook, catch errors and panics, and return a [`Dispatch`]. The built-in
//! hooks are [`LoggingHook`] (tracing), [`CostTracker`], [`AuditTrail`] (JSONL with secrets
//! [`redact`]ed) and [`RateLimiter`] (token buckets per tool glob).

mod audit;
mod cost;
mod dispatch;
mod logging;
mod rate_limit;
mod redact;
#[cfg(test)]
mod tests;

pub use audit::{AuditTrail, DEFAULT_AUDIT_PREFIX};
pub use cost::{CostTotals, CostTracker};
pub use dispatch::{Dispatch, HookFault, HookPoint, Hooks};
pub use logging::LoggingHook;
pub use rate_limit::{
    Clock, ManualClock, RateLimit, RateLimitAction, RateLimitError, RateLimiter, SystemClock,
};
pub use redact::{REDACTED, is_secret_key, looks_like_secret, redact};

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use kaos_providers::{ModelRequest, ModelResponse};
use kaos_tools::{ToolAnnotations, ToolResult};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Event, TurnResponse};

/// Where a hook is called from: which session, run, turn and agent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookContext {
    /// The session.
    pub session_id: Arc<str>,
    /// The run.
    pub run_id: Arc<str>,
    /// The agent's name.
    pub agent: Arc<str>,
    /// The agent's fingerprint.
    pub agent_fingerprint: Arc<str>,
    /// The turn's number in the session.
    pub turn_number: u32,
}

impl HookContext {
    /// A context for turn `turn_number` of run `run_id` in session `session_id`, with an empty
    /// agent name and fingerprint (see [`with_agent`](Self::with_agent)).
    pub fn new(session_id: impl Into<Arc<str>>, run_id: impl Into<Arc<str>>, turn_number: u32) -> Self {
        Self {
            session_id: session_id.into(),
            run_id: run_id.into(),
            agent: empty(),
            agent_fingerprint: empty(),
            turn_number,
        }
    }

    /// [`HookContext::new`] with the agent, as the Runner makes one for each turn.
    pub(crate) fn of_turn(
        session_id: Arc<str>,
        run_id: Arc<str>,
        turn_number: u32,
        (agent, agent_fingerprint): (Arc<str>, Arc<str>),
    ) -> Self {
        Self { session_id, run_id, agent, agent_fingerprint, turn_number }
    }

    /// With this agent name and fingerprint.
    pub fn with_agent(mut self, agent: impl Into<Arc<str>>, fingerprint: impl Into<Arc<str>>) -> Self {
        self.agent = agent.into();
        self.agent_fingerprint = fingerprint.into();
        self
    }
}

/// An empty name, shared rather than allocated for each context.
fn empty() -> Arc<str> {
    static EMPTY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));
    EMPTY.clone()
}

/// A tool call as a before-tool hook sees it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ToolCallInfo {
    /// The call id.
    pub call_id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments (after earlier hooks' rewrites).
    pub arguments: Value,
    /// The tool's annotations (defaults for a tool the runtime does not know).
    pub annotations: ToolAnnotations,
}

impl ToolCallInfo {
    /// A call of tool `name` with `arguments`, with default annotations.
    pub fn new(call_id: impl Into<String>, name: impl Into<String>, arguments: Value) -> Self {
        Self {
            call_id: call_id.into(),
            name: name.into(),
            arguments,
            annotations: ToolAnnotations::default(),
        }
    }

    /// With these annotations.
    pub fn with_annotations(mut self, annotations: ToolAnnotations) -> Self {
        self.annotations = annotations;
        self
    }
}

/// What a before-tool hook decides about a call. Ordered from least to most restrictive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ToolDecision {
    /// Run the call as it is.
    Continue,
    /// Run the call with these arguments instead.
    Rewrite {
        /// The new arguments.
        arguments: Value,
    },
    /// Do not run the tool; give the model this result instead.
    Skip {
        /// The result the model sees.
        result: String,
    },
    /// Pause the run until a person approves or denies the call.
    RequireApproval {
        /// Why, for the person.
        reason: String,
    },
    /// Do not run the tool; the model is told it was denied.
    Deny {
        /// Why, for the model.
        reason: String,
    },
}

impl ToolDecision {
    /// How restrictive the decision is: continue 0, rewrite 1, skip 2, approval 3, deny 4.
    pub fn severity(&self) -> u8 {
        match self {
            ToolDecision::Continue => 0,
            ToolDecision::Rewrite { .. } => 1,
            ToolDecision::Skip { .. } => 2,
            ToolDecision::RequireApproval { .. } => 3,
            ToolDecision::Deny { .. } => 4,
        }
    }

    /// The more restrictive of two decisions (the earlier one on a tie).
    pub fn combine(self, other: ToolDecision) -> ToolDecision {
        if other.severity() > self.severity() { other } else { self }
    }
}

/// What the Runner does when a hook errors or panics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HookFailure {
    /// Report it (a `hook_failed` event) and carry on as if the hook had not been there.
    #[default]
    Open,
    /// Report it, and treat it as the most restrictive answer: a failing before-tool hook
    /// denies the call; a failure anywhere else stops the turn with an error.
    Closed,
}

/// Why a hook failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HookError {
    /// What went wrong.
    pub message: String,
}

impl HookError {
    /// A hook error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

/// A typed lifecycle callback. Every method has a default that does nothing, so a hook
/// implements only what it needs. Hooks are shared by every turn of a Runner: they must be
/// cheap and safe to call concurrently.
#[async_trait]
pub trait Hook: Send + Sync + Debug {
    /// A short name, for events and logs.
    fn name(&self) -> &str;

    /// A turn starts (after hydration, before the first model call).
    async fn on_turn_start(&self, _ctx: &HookContext) -> Result<(), HookError> {
        Ok(())
    }

    /// A turn ended with this response.
    async fn on_turn_end(&self, _ctx: &HookContext, _response: &TurnResponse) -> Result<(), HookError> {
        Ok(())
    }

    /// A model call is about to be sent.
    async fn before_model_call(&self, _ctx: &HookContext, _request: &ModelRequest) -> Result<(), HookError> {
        Ok(())
    }

    /// A model call returned.
    async fn after_model_call(&self, _ctx: &HookContext, _response: &ModelResponse) -> Result<(), HookError> {
        Ok(())
    }

    /// A tool call is about to run (after the permission policy allowed it).
    async fn before_tool_call(
        &self,
        _ctx: &HookContext,
        _call: &ToolCallInfo,
    ) -> Result<ToolDecision, HookError> {
        Ok(ToolDecision::Continue)
    }

    /// A tool call finished (or was skipped or denied) with this result.
    async fn after_tool_call(
        &self,
        _ctx: &HookContext,
        _call: &ToolCallInfo,
        _result: &ToolResult,
    ) -> Result<(), HookError> {
        Ok(())
    }

    /// Every event of the run, in order (synchronous: keep it quick).
    fn on_event(&self, _event: &Event) -> Result<(), HookError> {
        Ok(())
    }
}

/// A shared hook is a hook: keep an `Arc` to query it (e.g. a [`CostTracker`]) and give the
/// [`Hooks`] a clone.
#[async_trait]
impl<H: Hook + ?Sized> Hook for Arc<H> {
    fn name(&self) -> &str {
        (**self).name()
    }

    async fn on_turn_start(&self, ctx: &HookContext) -> Result<(), HookError> {
        (**self).on_turn_start(ctx).await
    }

    async fn on_turn_end(&self, ctx: &HookContext, response: &TurnResponse) -> Result<(), HookError> {
        (**self).on_turn_end(ctx, response).await
    }

    async fn before_model_call(&self, ctx: &HookContext, request: &ModelRequest) -> Result<(), HookError> {
        (**self).before_model_call(ctx, request).await
    }

    async fn after_model_call(&self, ctx: &HookContext, response: &ModelResponse) -> Result<(), HookError> {
        (**self).after_model_call(ctx, response).await
    }

    async fn before_tool_call(
        &self,
        ctx: &HookContext,
        call: &ToolCallInfo,
    ) -> Result<ToolDecision, HookError> {
        (**self).before_tool_call(ctx, call).await
    }

    async fn after_tool_call(
        &self,
        ctx: &HookContext,
        call: &ToolCallInfo,
        result: &ToolResult,
    ) -> Result<(), HookError> {
        (**self).after_tool_call(ctx, call, result).await
    }

    fn on_event(&self, event: &Event) -> Result<(), HookError> {
        (**self).on_event(event)
    }
}

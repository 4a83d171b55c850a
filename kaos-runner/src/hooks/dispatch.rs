//! [`Hooks`]: the ordered hooks of a Runner, and the dispatch of each lifecycle callback to
//! all of them, errors and panics caught.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use kaos_providers::{ModelRequest, ModelResponse};
use kaos_tools::ToolResult;
use serde::{Deserialize, Serialize};

use super::{Hook, HookContext, HookError, HookFailure, ToolCallInfo, ToolDecision};
use crate::{Event, TurnResponse};

/// Which lifecycle callback a [`HookFault`] happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HookPoint {
    /// [`Hook::on_turn_start`].
    TurnStart,
    /// [`Hook::on_turn_end`].
    TurnEnd,
    /// [`Hook::before_model_call`].
    BeforeModelCall,
    /// [`Hook::after_model_call`].
    AfterModelCall,
    /// [`Hook::before_tool_call`].
    BeforeToolCall,
    /// [`Hook::after_tool_call`].
    AfterToolCall,
    /// [`Hook::on_event`].
    Event,
}

impl HookPoint {
    /// The snake_case name it serializes as (`turn_start`, `before_tool_call`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            HookPoint::TurnStart => "turn_start",
            HookPoint::TurnEnd => "turn_end",
            HookPoint::BeforeModelCall => "before_model_call",
            HookPoint::AfterModelCall => "after_model_call",
            HookPoint::BeforeToolCall => "before_tool_call",
            HookPoint::AfterToolCall => "after_tool_call",
            HookPoint::Event => "event",
        }
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One hook that errored or panicked during a dispatch: what the Runner reports as a
/// `hook_failed` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HookFault {
    /// The hook's [`name`](Hook::name).
    pub hook: String,
    /// The callback that failed.
    pub point: HookPoint,
    /// The error's message, or the panic's message.
    pub message: String,
    /// Whether the hook panicked (rather than returning an error).
    pub panicked: bool,
}

impl HookFault {
    /// A fault of `hook` at `point`.
    pub fn new(
        hook: impl Into<String>,
        point: HookPoint,
        message: impl Into<String>,
        panicked: bool,
    ) -> Self {
        Self { hook: hook.into(), point, message: message.into(), panicked }
    }
}

impl fmt::Display for HookFault {
    /// `hook audit failed in after_tool_call: disk full` (or `panicked in`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.panicked { "panicked" } else { "failed" };
        write!(f, "hook {} {verb} in {}: {}", self.hook, self.point, self.message)
    }
}

impl std::error::Error for HookFault {}

/// What a dispatch produced: the combined `value` (the decision, for a before-tool call), the
/// hooks that failed, and whether the failure policy says the turn must stop.
///
/// The caller's whole job: emit one `hook_failed` event per fault, then stop the turn if
/// [`stop`](Self::stop) says so.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[must_use = "report the faults, and stop the turn when `stop()` says so"]
pub struct Dispatch<T> {
    /// The combined result (`()` for an observing callback).
    pub value: T,
    /// The hooks that errored or panicked, in hook order.
    pub faults: Vec<HookFault>,
    /// Whether a fault stops the turn (fail closed, outside `before_tool_call`).
    stops: bool,
}

impl<T> Dispatch<T> {
    fn new(value: T, faults: Vec<HookFault>, stops: bool) -> Self {
        Self { value, faults, stops }
    }

    /// The fault that must stop the turn, if any: the first fault when the policy is
    /// [`HookFailure::Closed`] and the callback is not `before_tool_call` (where a failure is
    /// a denial, already in the decision). Always `None` under [`HookFailure::Open`].
    pub fn stop(&self) -> Option<&HookFault> {
        if self.stops { self.faults.first() } else { None }
    }

    /// Whether every hook succeeded.
    pub fn is_clean(&self) -> bool {
        self.faults.is_empty()
    }
}

/// The hooks a Runner calls, in order, and what it does when one fails.
///
/// Cheap to clone (the hooks are shared). The default has no hooks and fails open.
///
/// Every dispatch method calls every hook in order (a failing hook does not keep the next ones
/// from being called), turns an error or a panic into a [`HookFault`], and returns a
/// [`Dispatch`]. None of them can fail or panic because of a hook.
#[derive(Clone, Default)]
pub struct Hooks {
    hooks: Vec<Arc<dyn Hook>>,
    failure: HookFailure,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("hooks", &self.hooks.iter().map(|h| h.name()).collect::<Vec<_>>())
            .field("failure", &self.failure)
            .finish()
    }
}

impl Hooks {
    /// No hooks, failing open.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `hook` called after the hooks already added.
    pub fn with(self, hook: impl Hook + 'static) -> Self {
        self.with_shared(Arc::new(hook))
    }

    /// With an already shared `hook` called after the hooks already added.
    pub fn with_shared(mut self, hook: Arc<dyn Hook>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// With this failure policy (the default is [`HookFailure::Open`]).
    pub fn with_failure(mut self, failure: HookFailure) -> Self {
        self.failure = failure;
        self
    }

    /// The failure policy.
    pub fn failure(&self) -> HookFailure {
        self.failure
    }

    /// Whether there are no hooks (every dispatch is then a no-op).
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// How many hooks.
    pub fn len(&self) -> usize {
        self.hooks.len()
    }

    /// The hooks' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.hooks.iter().map(|h| h.name())
    }

    /// Calls [`Hook::on_turn_start`] on every hook.
    pub async fn turn_start(&self, ctx: &HookContext) -> Dispatch<()> {
        self.observe(HookPoint::TurnStart, |hook| hook.on_turn_start(ctx)).await
    }

    /// Calls [`Hook::on_turn_end`] on every hook.
    pub async fn turn_end(&self, ctx: &HookContext, response: &TurnResponse) -> Dispatch<()> {
        self.observe(HookPoint::TurnEnd, |hook| hook.on_turn_end(ctx, response)).await
    }

    /// Calls [`Hook::before_model_call`] on every hook.
    pub async fn before_model_call(&self, ctx: &HookContext, request: &ModelRequest) -> Dispatch<()> {
        self.observe(HookPoint::BeforeModelCall, |hook| hook.before_model_call(ctx, request)).await
    }

    /// Calls [`Hook::after_model_call`] on every hook.
    pub async fn after_model_call(&self, ctx: &HookContext, response: &ModelResponse) -> Dispatch<()> {
        self.observe(HookPoint::AfterModelCall, |hook| hook.after_model_call(ctx, response)).await
    }

    /// Calls [`Hook::after_tool_call`] on every hook. `call` should carry the arguments the
    /// tool actually ran with.
    pub async fn after_tool_call(
        &self,
        ctx: &HookContext,
        call: &ToolCallInfo,
        result: &ToolResult,
    ) -> Dispatch<()> {
        self.observe(HookPoint::AfterToolCall, |hook| hook.after_tool_call(ctx, call, result)).await
    }

    /// Calls [`Hook::on_event`] on every hook (synchronously; panics caught).
    pub fn on_event(&self, event: &Event) -> Dispatch<()> {
        let mut faults = Vec::new();
        for hook in &self.hooks {
            let outcome = match catch_unwind(AssertUnwindSafe(|| hook.on_event(event))) {
                Ok(result) => result.map_err(|err| fault_from_error(hook.name(), HookPoint::Event, err)),
                Err(payload) => Err(fault_from_panic(hook.name(), HookPoint::Event, payload.as_ref())),
            };
            if let Err(fault) = outcome {
                faults.push(fault);
            }
        }
        self.finish((), faults, true)
    }

    /// Asks every hook about a tool call and combines the answers.
    ///
    /// - Each hook sees `call` with the arguments as rewritten by the hooks before it: rewrites
    ///   compose in hook order.
    /// - The decision is the most restrictive across hooks ([`ToolDecision::combine`]; the
    ///   earliest hook wins a tie, so its reason is the one given). When that is `Continue` or
    ///   `Rewrite`, the result is `Rewrite { arguments }` with the final arguments if any hook
    ///   rewrote them, else `Continue`.
    /// - A hook that fails is a fault. Under [`HookFailure::Closed`] it also counts as
    ///   `Deny { reason: "hook <name> failed: <message>" }`; under [`HookFailure::Open`] it
    ///   does not count. [`Dispatch::stop`] is always `None` here.
    ///
    /// Every hook is called even after one denied, so observers see every call.
    pub async fn before_tool_call(
        &self,
        ctx: &HookContext,
        mut call: ToolCallInfo,
    ) -> Dispatch<ToolDecision> {
        let mut faults = Vec::new();
        let mut decision = ToolDecision::Continue;
        let mut rewritten = false;
        for hook in &self.hooks {
            match guarded(hook.name(), HookPoint::BeforeToolCall, hook.before_tool_call(ctx, &call)).await {
                Ok(ToolDecision::Continue) => {}
                Ok(ToolDecision::Rewrite { arguments }) => {
                    tracing::debug!(
                        target: "kaos::hooks",
                        hook = hook.name(),
                        tool = %call.name,
                        call_id = %call.call_id,
                        "hook rewrote tool arguments"
                    );
                    call.arguments = arguments;
                    rewritten = true;
                }
                Ok(other) => {
                    tracing::debug!(
                        target: "kaos::hooks",
                        hook = hook.name(),
                        tool = %call.name,
                        call_id = %call.call_id,
                        decision = ?other,
                        "hook decided on tool call"
                    );
                    decision = decision.combine(other);
                }
                Err(fault) => {
                    if self.failure == HookFailure::Closed {
                        let reason = format!("hook {} failed: {}", fault.hook, fault.message);
                        decision = decision.combine(ToolDecision::Deny { reason });
                    }
                    faults.push(fault);
                }
            }
        }
        if decision.severity() == 0 && rewritten {
            decision = ToolDecision::Rewrite { arguments: call.arguments };
        }
        self.finish(decision, faults, false)
    }

    /// Calls `callback` on every hook in order, catching errors and panics.
    async fn observe<'a, F>(&'a self, point: HookPoint, callback: F) -> Dispatch<()>
    where
        F: Fn(&'a dyn Hook) -> BoxFuture<'a, Result<(), HookError>>,
    {
        let mut faults = Vec::new();
        for hook in &self.hooks {
            if let Err(fault) = guarded(hook.name(), point, callback(hook.as_ref())).await {
                faults.push(fault);
            }
        }
        self.finish((), faults, true)
    }

    fn finish<T>(&self, value: T, faults: Vec<HookFault>, can_stop: bool) -> Dispatch<T> {
        for fault in &faults {
            tracing::warn!(
                target: "kaos::hooks",
                hook = %fault.hook,
                point = fault.point.as_str(),
                panicked = fault.panicked,
                message = %fault.message,
                "hook failed"
            );
        }
        let stops = can_stop && self.failure == HookFailure::Closed && !faults.is_empty();
        Dispatch::new(value, faults, stops)
    }
}

/// Awaits one hook's callback, turning an error or a panic into a fault.
async fn guarded<T, F>(name: &str, point: HookPoint, future: F) -> Result<T, HookFault>
where
    F: Future<Output = Result<T, HookError>>,
{
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(result) => result.map_err(|err| fault_from_error(name, point, err)),
        Err(payload) => Err(fault_from_panic(name, point, payload.as_ref())),
    }
}

fn fault_from_error(name: &str, point: HookPoint, err: HookError) -> HookFault {
    HookFault::new(name, point, err.message, false)
}

fn fault_from_panic(name: &str, point: HookPoint, payload: &(dyn Any + Send)) -> HookFault {
    let message = if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-string payload".to_owned()
    };
    HookFault::new(name, point, message, true)
}

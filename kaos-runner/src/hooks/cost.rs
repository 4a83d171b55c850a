//! [`CostTracker`]: usage, cost and call counts per session and in total.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use kaos_providers::{ModelResponse, Usage};
use kaos_tools::ToolResult;
use serde::{Deserialize, Serialize};

use super::{Hook, HookContext, HookError, ToolCallInfo};

/// What a [`CostTracker`] has counted, for one session or in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CostTotals {
    /// Cost in USD of the priced model calls.
    pub cost_usd: f64,
    /// Usage summed over every model call.
    pub usage: Usage,
    /// Model calls.
    pub model_calls: u64,
    /// Model calls whose price was unknown (their cost is not in `cost_usd`).
    pub unpriced_model_calls: u64,
    /// Tool calls that finished (run, skipped or denied: every `after_tool_call`).
    pub tool_calls: u64,
    /// Of those, the ones whose result was an error.
    pub failed_tool_calls: u64,
}

impl CostTotals {
    fn add_model_call(&mut self, response: &ModelResponse) {
        self.model_calls += 1;
        self.usage += response.usage;
        match response.cost_usd {
            Some(cost) => self.cost_usd += cost,
            None => self.unpriced_model_calls += 1,
        }
    }

    fn add_tool_call(&mut self, result: &ToolResult) {
        self.tool_calls += 1;
        if result.is_error {
            self.failed_tool_calls += 1;
        }
    }
}

#[derive(Debug, Default)]
struct Ledger {
    total: CostTotals,
    sessions: HashMap<Arc<str>, CostTotals>,
}

/// A hook that sums every model call's usage and cost (from `after_model_call`) and counts
/// tool calls (from `after_tool_call`), per session and in total.
///
/// Clones share their counts: keep one, give a clone to [`Hooks`](super::Hooks), and query
/// it with [`total`](Self::total) and [`session`](Self::session) at any time. Updating is one
/// short critical section per callback; the total is always the sum of the sessions (minus
/// the ones [`forget_session`](Self::forget_session) dropped). Never fails.
#[derive(Debug, Clone, Default)]
pub struct CostTracker {
    ledger: Arc<Mutex<Ledger>>,
}

impl CostTracker {
    /// A tracker with nothing counted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything counted so far.
    pub fn total(&self) -> CostTotals {
        self.lock().total
    }

    /// What session `session_id` has counted, `None` for a session never seen.
    pub fn session(&self, session_id: &str) -> Option<CostTotals> {
        self.lock().sessions.get(session_id).copied()
    }

    /// Every session seen, sorted by id.
    pub fn sessions(&self) -> Vec<(String, CostTotals)> {
        let mut sessions: Vec<_> =
            self.lock().sessions.iter().map(|(id, totals)| (id.to_string(), *totals)).collect();
        sessions.sort_by(|a, b| a.0.cmp(&b.0));
        sessions
    }

    /// Drops a session's counts (the total keeps them), returning them. A long-lived tracker
    /// remembers every session it sees until it is told to forget it.
    pub fn forget_session(&self, session_id: &str) -> Option<CostTotals> {
        self.lock().sessions.remove(session_id)
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        // The critical sections cannot panic halfway through an update, so a poisoned ledger is
        // still consistent.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, session_id: &Arc<str>, apply: impl Fn(&mut CostTotals)) {
        let mut ledger = self.lock();
        apply(&mut ledger.total);
        apply(ledger.sessions.entry(Arc::clone(session_id)).or_default());
    }
}

#[async_trait]
impl Hook for CostTracker {
    fn name(&self) -> &str {
        "cost"
    }

    async fn after_model_call(&self, ctx: &HookContext, response: &ModelResponse) -> Result<(), HookError> {
        self.update(&ctx.session_id, |totals| totals.add_model_call(response));
        Ok(())
    }

    async fn after_tool_call(
        &self,
        ctx: &HookContext,
        _call: &ToolCallInfo,
        result: &ToolResult,
    ) -> Result<(), HookError> {
        self.update(&ctx.session_id, |totals| totals.add_tool_call(result));
        Ok(())
    }
}

//! What a turn leaves in its session beyond messages: why it stopped and the tool calls it made.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopReason {
    /// The model gave a final answer.
    Completed,
    /// The model still wanted tools after the agent's `limits.max_iterations` model calls.
    /// Tool calls it made in its last call were not run; the model's history says so.
    IterationLimit,
    /// A tool call needs a person's approval: the run is paused, nothing of the turn is in
    /// the session yet, and resuming the run (`Runner::resume`) continues it.
    ApprovalRequired,
    /// A budget would have been exceeded by the next call; the turn stopped before it.
    BudgetExceeded,
    /// The model's circuit breaker is open (it failed repeatedly); the turn stopped.
    ModelUnavailable,
    /// Research pattern: too few of the model's claims were supported by a verbatim quote
    /// from the cited document; the text is a refusal, not an unsupported answer.
    EvidenceInsufficient,
    /// Plan pattern: a step failed with no replan left, or the plan reached
    /// `limits.max_plan_steps`; the text reports the steps that were completed.
    PlanIncomplete,
}

/// A tool call made during a turn, with its arguments and result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    /// The call id.
    pub call_id: String,
    /// The tool.
    pub name: String,
    /// The arguments the model gave.
    pub arguments: Value,
    /// The result as the model saw it.
    pub result: String,
    /// Whether the call failed (including: denied, timed out, panicked, unknown tool).
    pub is_error: bool,
}

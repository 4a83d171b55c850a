//! [`Progress`]: what a turn has done so far — the conversation as sent to the model, the
//! calls made, what they cost, the pattern chosen and its data (a plan) — and what a paused
//! run resumes from. Plain serializable data; the loop and the patterns advance it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use kaos_providers::{ModelRequest, ToolCall, Usage};
use serde::{Deserialize, Serialize};

use crate::approval::Approval;
use kaos_session::ToolCallRecord;

/// What a turn has done so far; what a paused run resumes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// The conversation as sent to the model, with what the turn added so far.
    pub(crate) request: ModelRequest,
    /// The system prompt as assembled, kept only while the request's has a note added for a
    /// call (about withdrawn tools); `None`: the request's system prompt is it, not copied (it
    /// may hold long summaries).
    #[serde(default)]
    pub(crate) base_system: Option<String>,
    /// The tools offered this turn (less any whose breaker is open, per call).
    pub(crate) offered: kaos_providers::ToolSet,
    /// Where the turn's own messages start in `request.messages` (the user message).
    pub(crate) first_new: usize,
    /// Tool calls of the last model response not handled yet (the first may await approval).
    pub(crate) pending: VecDeque<ToolCall>,
    /// Tool calls made so far.
    pub(crate) tool_calls: Vec<ToolCallRecord>,
    pub(crate) usage: Usage,
    pub(crate) cost_usd: f64,
    pub(crate) unpriced_model_calls: u32,
    pub(crate) model_calls: u32,
    /// Tools approved for the rest of the run.
    pub(crate) approved_tools: BTreeSet<String>,
    /// Call ids approved once.
    pub(crate) approved_calls: BTreeSet<String>,
    /// The pattern the turn runs, once chosen (the agent's, or the router's choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pattern: Option<kaos_agent::Pattern>,
    /// Handoffs made in this turn.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) handoffs: u32,
    /// The plan pattern's state: the plan, the step running, the results so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) plan: Option<PlanState>,
    /// Remote (A2A) tasks waiting for a person's answer, by the call id that started them:
    /// the run paused on their `input-required`, and continues them when resumed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) remote: BTreeMap<String, RemoteTask>,
}

/// A remote agent's task that asked for input: what the answer is sent to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RemoteTask {
    /// The delegate.
    pub(crate) delegate: String,
    /// The remote task's id.
    pub(crate) task_id: String,
    /// The remote task's context (conversation) id.
    pub(crate) context_id: String,
    /// What the remote agent asked.
    pub(crate) question: String,
    /// The person's answer, once the run is resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) answer: Option<Approval>,
    /// The usage the remote reported so far, already charged (its reports are cumulative).
    #[serde(default)]
    pub(crate) charged_usage: Usage,
    /// The cost the remote reported so far, already charged.
    #[serde(default)]
    pub(crate) charged_cost_usd: f64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Progress {
    /// The system prompt as assembled (without a note added for one call).
    pub(crate) fn base_system(&self) -> &str {
        self.base_system.as_deref().unwrap_or(&self.request.system)
    }

    /// Sets the system prompt as assembled, the request's too.
    pub(crate) fn set_base_system(&mut self, system: String) {
        self.request.system = system;
        self.base_system = None;
    }

    /// Puts the request's system prompt back to the one assembled.
    pub(crate) fn restore_base_system(&mut self) {
        if let Some(base) = self.base_system.take() {
            self.request.system = base;
        }
    }

    /// Adds one model call's usage and cost.
    pub(crate) fn record_model_call(&mut self, response: &kaos_providers::ModelResponse) {
        self.model_calls += 1;
        self.usage += response.usage;
        match response.cost_usd {
            Some(cost) => self.cost_usd += cost,
            None => self.unpriced_model_calls += 1,
        }
    }
}

/// The plan of a turn and how far it got; kept in the run's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PlanState {
    /// The current plan's revision (1 for the first plan).
    pub(crate) revision: u32,
    /// The current plan's steps.
    pub(crate) steps: Vec<String>,
    /// The next step of `steps` to run (or the one running).
    pub(crate) next: usize,
    /// Steps cut from the current plan by `limits.max_plan_steps`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) cut: Vec<String>,
    /// Steps executed so far in this turn, over every revision.
    pub(crate) executed: Vec<StepResult>,
    /// Replans made so far.
    pub(crate) replans: u32,
    /// The step running now, if one is (it paused for approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) running: Option<Running>,
    /// Said to the model with the next step: the plan changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
}

/// A step under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Running {
    /// The turn's model calls when the step began: the step's iterations are counted from it.
    pub(crate) first_call: u32,
}

/// One executed step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StepResult {
    pub(crate) description: String,
    pub(crate) done: bool,
    pub(crate) result: String,
}

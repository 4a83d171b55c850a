//! Pausing a run for a person's approval, and resuming the same run later.

use std::collections::{BTreeSet, VecDeque};

use kaos_agent::AgentConfig;
use kaos_providers::{ModelRequest, ToolCall, ToolDefinition, Usage};
use kaos_vfs::VfsPath;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{RunError, ToolCallRecord};

/// Version of the [`RunState`] format.
pub const RUN_STATE_VERSION: u32 = 1;

/// A run paused for approval: everything needed to continue it — in this process or another,
/// now or after a restart — from the pending tool call, without redoing anything.
///
/// It is stored in the VFS at `runs/{run_id}/state.json` when the run pauses
/// ([`Runner::run_state`](crate::Runner::run_state) loads it). The stored copy is authoritative:
/// [`Runner::resume`](crate::Runner::resume) rejects a state that differs from it (tampered),
/// one already resumed, one from another agent, an unknown version, or one whose session has
/// moved on (another turn ran meanwhile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunState {
    /// Format version ([`RUN_STATE_VERSION`]).
    pub v: u32,
    /// The run (the resumed run keeps it).
    pub run_id: String,
    /// The session.
    pub session_id: String,
    /// The paused turn's number.
    pub turn_number: u32,
    /// The fingerprint of the agent that ran it.
    pub agent_fingerprint: String,
    /// That agent's configuration.
    pub agent: AgentConfig,
    /// The turn's user message.
    pub user_message: String,
    /// The call waiting for approval.
    pub pending: PendingApproval,
    /// Whether the run was resumed already.
    pub resumed: bool,
    /// When it paused, in milliseconds since the Unix epoch.
    pub paused_at_ms: u64,
    /// The run's progress (opaque).
    pub(crate) progress: Progress,
    /// Where the run's event numbering continues.
    pub(crate) next_seq: u64,
    pub(crate) next_span: u64,
}

/// The tool call a paused run waits on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingApproval {
    /// The call id.
    pub call_id: String,
    /// The tool.
    pub tool_name: String,
    /// The arguments it would run with.
    pub arguments: Value,
    /// Why approval is needed.
    pub reason: String,
}

/// A person's answer to a pending tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Approval {
    /// Run the call. With `remember`, calls to the same tool in the rest of this run are
    /// approved too.
    Approve {
        /// Approve this tool for the rest of the run.
        remember: bool,
    },
    /// Do not run it; the model gets a tool result saying so, with the reason.
    Deny {
        /// Why, for the model.
        reason: String,
    },
}

impl Approval {
    /// Approves this call only.
    pub fn approve() -> Self {
        Approval::Approve { remember: false }
    }

    /// Approves this call and further calls of the same tool in this run.
    pub fn approve_and_remember() -> Self {
        Approval::Approve { remember: true }
    }

    /// Denies the call.
    pub fn deny(reason: impl Into<String>) -> Self {
        Approval::Deny { reason: reason.into() }
    }
}

/// Why a run state cannot be resumed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunStateError {
    /// No run state is stored for this run.
    #[error("no paused run {run_id}")]
    NotFound {
        /// The run.
        run_id: String,
    },
    /// The state was written by a format this build does not know.
    #[error("run state version {found} is not supported (this build reads {RUN_STATE_VERSION})")]
    UnknownVersion {
        /// The version found.
        found: u32,
    },
    /// The state belongs to another agent configuration than this Runner's.
    #[error("run state is for agent {found}, this runner runs {expected}")]
    AgentMismatch {
        /// This Runner's agent fingerprint.
        expected: String,
        /// The state's.
        found: String,
    },
    /// The run was resumed already.
    #[error("run {run_id} was resumed already")]
    AlreadyResumed {
        /// The run.
        run_id: String,
    },
    /// The state differs from the stored one (changed by hand, or superseded by a later pause).
    #[error("run state {run_id} does not match the stored state (tampered with, or superseded)")]
    Tampered {
        /// The run.
        run_id: String,
    },
    /// The session moved on since the pause (another turn ran), so the run cannot continue.
    #[error("session {session_id} is at turn {found}, the paused run was turn {expected}")]
    Stale {
        /// The session.
        session_id: String,
        /// The paused turn's number.
        expected: u32,
        /// The turn the session would run next.
        found: u32,
    },
}

/// What a turn has done so far; what a paused run resumes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// The conversation as sent to the model, with what the turn added so far.
    pub(crate) request: ModelRequest,
    /// The system prompt as assembled (notes about withdrawn tools are added per call).
    pub(crate) base_system: String,
    /// The tools offered this turn (less any whose breaker is open, per call).
    pub(crate) offered: Vec<ToolDefinition>,
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
    pub(crate) plan: Option<crate::patterns::plan::PlanState>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Progress {
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

pub(crate) fn state_path(run_id: &str) -> Result<VfsPath, RunError> {
    let id: String = run_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
    if id.is_empty() || id.len() != run_id.len() {
        return Err(RunStateError::NotFound { run_id: run_id.to_owned() }.into());
    }
    Ok(VfsPath::new("runs")?.join(&id)?.join("state.json")?)
}

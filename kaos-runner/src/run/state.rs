//! A run paused for a person's approval: [`RunState`], everything needed to continue it, and
//! where it is stored (`runs/{run_id}/state.json`).

use bytes::Bytes;
use kaos_agent::AgentConfig;
use kaos_vfs::{Vfs, VfsPath};
use serde::{Deserialize, Serialize};

use crate::approval::PendingApproval;
use crate::context::RunContext;
use crate::engine::state::Progress;
use crate::error::{RUN_STATE_VERSION, RunError, RunStateError};

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
    /// The bounds the run started with (policy, caps, delegation depth); the resumed run keeps
    /// them (opaque).
    pub(crate) context: RunContext,
    /// Where the run's event numbering continues.
    pub(crate) next_seq: u64,
    pub(crate) next_span: u64,
}

impl RunState {
    /// The permission rules the run was started with on top of its agent's (a request's extra
    /// rules), or, for a sub-agent's run, the parent's rules that replace its own. The resumed
    /// run keeps them.
    pub fn permissions(&self) -> &[kaos_agent::PermissionRule] {
        &self.context.rules
    }

    /// The run's cost cap in USD (the agent's, tightened by the request's or bounded by a
    /// parent's remaining budget), if it has one. The resumed run keeps it.
    pub fn max_cost_usd(&self) -> Option<f64> {
        self.context.caps.max_cost_usd
    }
}

/// Where a run's state is stored.
pub(crate) fn state_path(run_id: &str) -> Result<VfsPath, RunError> {
    let id: String = run_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
    if id.is_empty() || id.len() != run_id.len() {
        return Err(RunStateError::NotFound { run_id: run_id.to_owned() }.into());
    }
    Ok(VfsPath::new("runs")?.join(&id)?.join("state.json")?)
}

/// The stored state of run `run_id`. A state of another format version is
/// [`RunStateError::UnknownVersion`] (read before the rest, so an older state whose fields
/// differ gets that error, not [`RunStateError::Tampered`]).
pub(crate) async fn load(vfs: &dyn Vfs, run_id: &str) -> Result<RunState, RunError> {
    let path = state_path(run_id)?;
    let bytes = match vfs.read(&path).await {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => {
            return Err(RunStateError::NotFound { run_id: run_id.to_owned() }.into());
        }
        Err(e) => return Err(e.into()),
    };
    let tampered = || RunError::from(RunStateError::Tampered { run_id: run_id.to_owned() });
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| tampered())?;
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(RUN_STATE_VERSION) => {}
        Some(found) => {
            return Err(
                RunStateError::UnknownVersion { found: u32::try_from(found).unwrap_or(u32::MAX) }.into()
            );
        }
        None => return Err(tampered()),
    }
    serde_json::from_value(value).map_err(|_| tampered())
}

/// Stores `state` (replacing an earlier one of the run).
pub(crate) async fn save(vfs: &dyn Vfs, state: &RunState) -> Result<(), RunError> {
    let bytes =
        serde_json::to_vec(state).map_err(|source| RunError::Encode { what: "a run state", source })?;
    vfs.write(&state_path(&state.run_id)?, Bytes::from(bytes)).await?;
    Ok(())
}

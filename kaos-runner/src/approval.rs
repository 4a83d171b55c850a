//! A run paused for a person: the call it waits on ([`PendingApproval`]) and the person's
//! answer ([`Approval`]). Protocol data, shared by the events, the response and the run state.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::AgentError;

/// How the Runner drives a turn. Switching pattern is a config change, never a rewrite:
/// every pattern shares the turn loop, memory, permissions, budgets and events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Pattern {
    /// Respond, or run a ReAct tool loop when the model calls tools. One model call per plain turn.
    #[default]
    Chat,
    /// Answer from the session's documents with verified citations, or refuse.
    Research,
    /// Propose a plan, execute its steps, replan within bounds.
    Plan,
    /// Extract → filter → synthesize across many documents.
    Findings,
    /// Classify the message, then dispatch to one of the other patterns.
    Router,
}

impl Pattern {
    /// Every pattern, in declaration order.
    pub const ALL: [Pattern; 5] =
        [Pattern::Chat, Pattern::Research, Pattern::Plan, Pattern::Findings, Pattern::Router];

    /// The lowercase name used in agent files.
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Chat => "chat",
            Pattern::Research => "research",
            Pattern::Plan => "plan",
            Pattern::Findings => "findings",
            Pattern::Router => "router",
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Pattern {
    type Err = AgentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| AgentError::UnknownPattern { value: s.to_owned() })
    }
}

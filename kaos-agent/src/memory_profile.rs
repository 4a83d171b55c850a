use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

/// How much of a session's memory is put in front of the model each turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MemoryProfile {
    /// Total tokens of assembled context (system prompt + history) [200 000].
    pub context_budget_tokens: NonZeroU32,
    /// Tokens of conversation history; the oldest messages are left out first [32 000].
    pub messages_budget_tokens: NonZeroU32,
}

impl Default for MemoryProfile {
    fn default() -> Self {
        Self {
            context_budget_tokens: NonZeroU32::new(200_000).unwrap_or(NonZeroU32::MAX),
            messages_budget_tokens: NonZeroU32::new(32_000).unwrap_or(NonZeroU32::MAX),
        }
    }
}

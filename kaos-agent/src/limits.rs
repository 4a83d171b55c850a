use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

/// Structural limits on a turn. Every limit is a positive number: zero is rejected when the
/// agent is built or parsed, never silently read as "unset".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Limits {
    /// Model calls in one turn's ReAct loop [50]. A turn that still wants tools after this many
    /// calls stops with the `IterationLimit` stop reason.
    pub max_iterations: NonZeroU32,
    /// Tools offered to the model in one call [100].
    pub max_tools: NonZeroU32,
    /// Steps in one plan (plan pattern) [100].
    pub max_plan_steps: NonZeroU32,
    /// Items retrieved per searchable section [25].
    pub retrieval_top_k: NonZeroU32,
    /// Nesting depth of delegation and handoff [3].
    pub max_delegation_depth: NonZeroU32,
}

const fn nz(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => NonZeroU32::MIN,
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_iterations: nz(50),
            max_tools: nz(100),
            max_plan_steps: nz(100),
            retrieval_top_k: nz(25),
            max_delegation_depth: nz(3),
        }
    }
}

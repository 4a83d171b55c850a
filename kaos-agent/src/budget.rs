use serde::{Deserialize, Serialize};

use crate::AgentError;

/// Caps on what one turn may spend. `None` means no cap; a cap that is set must be positive
/// (and finite, for money).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Budget {
    /// Most USD a turn may cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// Most tokens (input + output) a turn may use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Most model calls a turn may make.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_model_calls: Option<u32>,
    /// Most tool calls a turn may make.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tool_calls: Option<u32>,
    /// Most wall-clock milliseconds a turn may take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_wall_clock_ms: Option<u64>,
    /// Most USD a whole session may cost, over all its turns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_max_cost_usd: Option<f64>,
    /// Most tokens a whole session may use, over all its turns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_max_tokens: Option<u64>,
}

/// Largest integer cap accepted: agent files are also TOML, whose integers are `i64`.
const MAX_INT: u64 = i64::MAX as u64;

impl Budget {
    /// No caps at all.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// With a USD cap.
    pub fn with_max_cost_usd(mut self, usd: f64) -> Self {
        self.max_cost_usd = Some(usd);
        self
    }

    /// With a token cap.
    pub fn with_max_tokens(mut self, tokens: u64) -> Self {
        self.max_tokens = Some(tokens);
        self
    }

    /// With a cap on model calls.
    pub fn with_max_model_calls(mut self, calls: u32) -> Self {
        self.max_model_calls = Some(calls);
        self
    }

    /// With a cap on tool calls.
    pub fn with_max_tool_calls(mut self, calls: u32) -> Self {
        self.max_tool_calls = Some(calls);
        self
    }

    /// With a cap on the whole session's cost.
    pub fn with_session_max_cost_usd(mut self, usd: f64) -> Self {
        self.session_max_cost_usd = Some(usd);
        self
    }

    /// With a cap on the whole session's tokens.
    pub fn with_session_max_tokens(mut self, tokens: u64) -> Self {
        self.session_max_tokens = Some(tokens);
        self
    }

    /// With a wall-clock cap in milliseconds.
    pub fn with_max_wall_clock_ms(mut self, ms: u64) -> Self {
        self.max_wall_clock_ms = Some(ms);
        self
    }

    pub(crate) fn validate(&self, at: &str) -> Result<(), AgentError> {
        let bad = |field: &str, reason: &'static str| AgentError::InvalidBudget {
            field: format!("{at}budget.{field}"),
            reason,
        };
        for (field, usd) in
            [("max_cost_usd", self.max_cost_usd), ("session_max_cost_usd", self.session_max_cost_usd)]
        {
            if let Some(usd) = usd
                && !(usd.is_finite() && usd > 0.0)
            {
                return Err(bad(field, "must be a positive, finite number of USD"));
            }
        }
        let ints = [
            ("max_tokens", self.max_tokens),
            ("max_model_calls", self.max_model_calls.map(u64::from)),
            ("max_tool_calls", self.max_tool_calls.map(u64::from)),
            ("max_wall_clock_ms", self.max_wall_clock_ms),
            ("session_max_tokens", self.session_max_tokens),
        ];
        for (field, value) in ints {
            match value {
                Some(0) => return Err(bad(field, "must be positive (leave it out for no cap)")),
                Some(v) if v > MAX_INT => return Err(bad(field, "is too large")),
                _ => {}
            }
        }
        Ok(())
    }
}

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

/// Settings of the research pattern (`pattern = "research"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ResearchConfig {
    /// Claims whose quote must be found verbatim in the cited document for the answer to be
    /// given [1]; with fewer, the turn ends in a typed refusal (`evidence_insufficient`).
    pub min_verified_claims: NonZeroU32,
}

impl Default for ResearchConfig {
    fn default() -> Self {
        Self { min_verified_claims: NonZeroU32::MIN }
    }
}

impl ResearchConfig {
    /// Whether this is the default (left out of serialized agents, so the fingerprint of an
    /// agent that does not set it is unchanged).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// With a minimum number of verified claims.
    pub fn with_min_verified_claims(mut self, n: NonZeroU32) -> Self {
        self.min_verified_claims = n;
        self
    }
}

//! The JSON Schema of agent files (feature `schema`).
//!
//! Most config types derive `schemars::JsonSchema`; the two below are written by hand:
//! `ModelRef` (a validated string) and `MemoryProfile` (kept in step with its serde form by
//! the test at the bottom).

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::{AgentConfig, MemoryProfile, ModelRef};

/// The JSON Schema (draft 2020-12) of an agent file, generated from [`AgentConfig`]. The
/// checked-in copy is `schemas/agent.schema.json` (`cargo xtask codegen` writes it).
///
/// ```
/// let schema = kaos_agent::agent_file_schema();
/// assert_eq!(schema["title"], "KAOS agent file");
/// assert_eq!(schema["additionalProperties"], false);
/// ```
pub fn agent_file_schema() -> serde_json::Value {
    let mut schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<AgentConfig>();
    schema.insert("title".into(), "KAOS agent file".into());
    schema.into()
}

impl JsonSchema for ModelRef {
    fn schema_name() -> Cow<'static, str> {
        "ModelRef".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A model as `provider:model`, e.g. `openai:gpt-4.1-mini` or `scripted:echo` (offline).",
            "type": "string",
            "pattern": "^[a-z0-9_-]+:[^\\s]+$",
        })
    }
}

impl JsonSchema for MemoryProfile {
    fn schema_name() -> Cow<'static, str> {
        "MemoryProfile".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let defaults = MemoryProfile::default();
        json_schema!({
            "description": "How much of a session's memory is put in front of the model each turn.",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "context_budget_tokens": {
                    "description": "Total tokens of assembled context (system prompt + history).",
                    "type": "integer",
                    "minimum": 1,
                    "maximum": u32::MAX,
                    "default": defaults.context_budget_tokens.get(),
                },
                "messages_budget_tokens": {
                    "description": "Tokens of conversation history; the oldest messages are left out first.",
                    "type": "integer",
                    "minimum": 1,
                    "maximum": u32::MAX,
                    "default": defaults.messages_budget_tokens.get(),
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The hand-written `MemoryProfile` schema names exactly the fields serde writes.
    #[test]
    fn memory_profile_schema_matches_its_serde_form() {
        let serialized = serde_json::to_value(MemoryProfile::default()).unwrap();
        let schema = MemoryProfile::json_schema(&mut SchemaGenerator::default());
        let fields: BTreeSet<&String> = serialized.as_object().unwrap().keys().collect();
        let described: BTreeSet<&String> =
            schema.get("properties").unwrap().as_object().unwrap().keys().collect();
        assert_eq!(fields, described);
    }
}

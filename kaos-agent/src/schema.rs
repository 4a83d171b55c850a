//! The JSON Schema of agent files (feature `schema`).
//!
//! Most config types derive `schemars::JsonSchema`; the two below are written by hand:
//! `ModelRef` (a validated string) and `MemoryProfile` (kept in step with its serde form by
//! the test at the bottom).

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::{AgentConfig, Eviction, MemoryProfile, ModelRef, Persistence, SectionKind};

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

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let defaults = MemoryProfile::default();
        let eviction = generator.subschema_for::<Eviction>();
        let persistence = generator.subschema_for::<Persistence>();
        // A section in a file: any subset of its fields; the rest keep that section's defaults.
        let section = json_schema!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "budget_tokens": {
                    "description": "The most tokens the section holds: a positive number, or \"unbounded\".",
                    "oneOf": [
                        {"type": "integer", "minimum": 1, "maximum": u32::MAX},
                        {"const": "unbounded"}
                    ]
                },
                "priority": {"description": "Higher priority sections are kept first when the context is tight.", "type": "integer", "minimum": 0, "maximum": u32::MAX},
                "eviction": eviction,
                "persistence": persistence,
                "searchable": {"description": "Above the retrieval threshold, choose items by BM25 relevance.", "type": "boolean"},
                "summarize": {"description": "Condense evicted items into a rolling summary instead of dropping them.", "type": "boolean"},
                "in_context": {"description": "Put the section in front of the model at all.", "type": "boolean"},
                "cleared_each_turn": {"description": "Empty the section at the start of each turn.", "type": "boolean"},
                "max_items": {"description": "The most items the section holds.", "type": "integer", "minimum": 1, "maximum": u32::MAX}
            }
        });
        let sections: serde_json::Map<String, serde_json::Value> =
            SectionKind::ALL.iter().map(|kind| (kind.as_str().to_owned(), section.clone().into())).collect();
        json_schema!({
            "description": "What of a session's memory is kept, and what is put in front of the model each turn.",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "context_budget_tokens": {
                    "description": "Total tokens of assembled context: system prompt, sections and conversation.",
                    "type": "integer",
                    "minimum": 1,
                    "maximum": u32::MAX,
                    "default": defaults.context_budget_tokens.get(),
                },
                "retrieval_threshold": {
                    "description": "A searchable section with more items than this is assembled by BM25 relevance.",
                    "type": "integer",
                    "minimum": 1,
                    "maximum": u32::MAX,
                    "default": defaults.retrieval_threshold.get(),
                },
                "sections": {
                    "description": "Per-section settings; only the fields that differ from a section's defaults.",
                    "type": "object",
                    "additionalProperties": false,
                    "properties": sections,
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

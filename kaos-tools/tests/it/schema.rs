#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]

use kaos_tools::{NoInput, ToolContext, ToolError, ToolResult, input_schema_for, tool_fn};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How results are ordered. Defaults show in the schema only for types that implement
/// `Serialize` (schemars renders them through it).
#[derive(Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Order {
    Newest,
    Oldest,
}

#[derive(Debug, Deserialize, JsonSchema, PartialEq)]
struct Filter {
    /// Only notes with this tag.
    tag: String,
}

/// Search input (Rust-facing doc).
#[derive(Debug, Deserialize, JsonSchema, PartialEq)]
struct SearchInput {
    /// Words to look for.
    query: String,
    /// Maximum number of results.
    #[serde(default = "ten")]
    limit: u32,
    /// Result order.
    #[serde(default = "newest")]
    order: Order,
    /// Optional filter.
    filter: Option<Filter>,
}

fn ten() -> u32 {
    10
}

fn newest() -> Order {
    Order::Newest
}

#[test]
fn schema_keeps_descriptions_enums_and_defaults_and_inlines_subschemas() {
    let schema = input_schema_for::<SearchInput>();
    assert_eq!(
        schema,
        json!({
            "type": "object",
            "properties": {
                "query": { "type": "string", "description": "Words to look for." },
                "limit": {
                    "type": "integer",
                    "format": "uint32",
                    "minimum": 0,
                    "default": 10,
                    "description": "Maximum number of results."
                },
                "order": {
                    "type": "string",
                    "enum": ["newest", "oldest"],
                    "default": "newest",
                    "description": "Result order."
                },
                "filter": {
                    "type": ["object", "null"],
                    "properties": {
                        "tag": { "type": "string", "description": "Only notes with this tag." }
                    },
                    "required": ["tag"],
                    "description": "Optional filter."
                }
            },
            "required": ["query"]
        })
    );
}

#[test]
fn recursive_types_keep_working_references() {
    #[derive(Deserialize, JsonSchema)]
    struct Node {
        /// Children.
        children: Vec<Node>,
    }
    #[derive(Deserialize, JsonSchema)]
    struct Input {
        /// The tree.
        root: Node,
    }
    let schema = input_schema_for::<Input>();
    assert!(schema.get("$schema").is_none());
    // The first level is inlined; the recursion goes through `$defs`, the only case it is kept.
    assert_eq!(schema["properties"]["root"]["properties"]["children"]["items"]["$ref"], "#/$defs/Node");
    assert_eq!(schema["$defs"]["Node"]["properties"]["children"]["items"]["$ref"], "#/$defs/Node");
}

#[test]
fn tool_specs_carry_object_schemas() {
    let tool = tool_fn("nothing", "Does nothing.", |_: NoInput, _ctx: ToolContext| async {
        Ok(ToolResult::text("ok"))
    })
    .build()
    .unwrap();
    assert_eq!(tool.spec().input_schema, json!({"type": "object", "properties": {}}));

    #[derive(Deserialize, JsonSchema)]
    #[serde(tag = "op", rename_all = "snake_case")]
    enum Op {
        /// Add two numbers.
        Add { a: i64, b: i64 },
        /// Negate a number.
        Neg { x: i64 },
    }
    let tool =
        tool_fn("calc", "Calculates.", |_: Op, _ctx: ToolContext| async { Ok(ToolResult::text("ok")) })
            .build()
            .unwrap();
    let schema = &tool.spec().input_schema;
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["oneOf"].as_array().unwrap().len(), 2);
}

#[test]
fn non_object_inputs_are_rejected_when_the_tool_is_built() {
    let err = tool_fn("count", "Counts.", |_: u32, _ctx: ToolContext| async { Ok(ToolResult::text("ok")) })
        .build()
        .unwrap_err();
    assert!(matches!(&err, ToolError::InvalidSchema { tool, .. } if tool == "count"), "{err:?}");
    assert!(!err.is_call_error());
}

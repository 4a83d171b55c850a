//! The built-in `kaos-memory-search` tool: BM25 over the session's searchable sections.

use std::sync::LazyLock;

use kaos_providers::ToolDefinition;
use kaos_tools::ToolResult;
use serde_json::{Value, json};

use kaos_session::{MEMORY_SEARCH_TOOL, SessionMemory, bm25_top_k};

/// The built-in memory search: BM25 over the session's searchable sections (built once: it is
/// offered on every turn whose context leaves searchable items out).
pub(crate) fn memory_search_definition() -> ToolDefinition {
    static DEFINITION: LazyLock<ToolDefinition> = LazyLock::new(build_definition);
    DEFINITION.clone()
}

fn build_definition() -> ToolDefinition {
    ToolDefinition {
        name: MEMORY_SEARCH_TOOL.to_owned(),
        description: "Searches this session's memory (documents, findings, lessons, past tool actions) \
                      for items relevant to a query, including items not shown in the context."
            .to_owned(),
        parameters: json!({
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for."},
                "section": {
                    "type": "string",
                    "description": "Only this section (documents, findings, lessons, actions, …).",
                },
                "top_k": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5, "description": "How many items."}
            },
            "required": ["query"],
            "additionalProperties": false
        }),
    }
}

pub(crate) fn search_memory(memory: &SessionMemory, arguments: &Value) -> ToolResult {
    let Some(query) = arguments.get("query").and_then(Value::as_str) else {
        return ToolResult::error("`query` (a string) is required");
    };
    let section = arguments.get("section").and_then(Value::as_str);
    let top_k = arguments.get("top_k").and_then(Value::as_u64).unwrap_or(5).clamp(1, 50) as usize;
    let items: Vec<(&str, &kaos_session::MemoryItem)> = memory
        .sections()
        .filter(|s| s.config().searchable && section.is_none_or(|name| name == s.kind().as_str()))
        .flat_map(|s| s.items().iter().map(move |i| (s.kind().as_str(), i)))
        .collect();
    if items.is_empty() {
        return ToolResult::text("No searchable items in this session's memory.");
    }
    let texts: Vec<_> = items.iter().map(|(_, i)| i.text()).collect();
    let hits = bm25_top_k(query, texts.iter().map(|t| t.as_ref()), top_k);
    let lines: Vec<String> = hits.into_iter().map(|h| format!("[{}] {}", items[h].0, texts[h])).collect();
    ToolResult::text(lines.join("\n\n"))
}

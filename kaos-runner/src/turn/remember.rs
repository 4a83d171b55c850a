//! What a finished turn leaves in memory: its messages, its tool actions, and rolling
//! summaries of what sections evicted.

use std::collections::BTreeMap;

use kaos_agent::SectionKind;
use kaos_providers::Message;
use serde_json::{Map, Value, json};

use super::{attrs, memory_event};
use crate::events::Emitter;
use crate::runner::Shared;
use crate::{MemoryEventKind, ToolCallRecord};
use kaos_session::{Change, ExtractiveSummarizer, NewItem, SessionMemory};

/// Most characters of a tool result kept in the actions section.
const ACTION_RESULT_CHARS: usize = 500;

/// Adds what the turn produced to memory (the user message is already there), summarizes
/// what overflowing sections evicted, and reports the changes as events.
pub(super) async fn remember(
    shared: &Shared,
    memory: &mut SessionMemory,
    added: &[Message],
    calls: &[ToolCallRecord],
    emit: &Emitter,
) {
    for message in added.iter().skip(1) {
        if let Err(error) = memory.add(SectionKind::Messages, NewItem::message(message.clone())) {
            warn_memory(emit, "messages", &error);
        }
    }
    for call in calls {
        let result: String = call.result.chars().take(ACTION_RESULT_CHARS).collect();
        let text = format!(
            "{}({}) → {}{}",
            call.name,
            call.arguments,
            if call.is_error { "error: " } else { "" },
            result
        );
        if let Err(error) = memory.add(SectionKind::Actions, NewItem::text(text)) {
            warn_memory(emit, "actions", &error);
        }
    }
    // One rolling summary per section: what was evicted, merged into the earlier summary.
    for (section, evicted) in memory.take_evicted() {
        if evicted.is_empty() {
            continue;
        }
        let earlier: Vec<_> = memory.section(section).items().iter().filter(|i| i.summary).cloned().collect();
        let summarized: u64 = earlier.iter().chain(&evicted).map(summarized_count).sum();
        let mut items = earlier.clone();
        items.extend(evicted);
        let budget = memory.section(section).config().budget_tokens.limit().unwrap_or(2_000);
        let target = (budget / 8).max(50);
        let summary = match shared.summarizer.summarize(section, &items, target).await {
            Ok(summary) => summary,
            Err(error) => {
                tracing::warn!(%section, %error, "summarizer failed; using the extractive summary");
                ExtractiveSummarizer::new(shared.counter.clone()).extract(&items, target)
            }
        };
        memory.remove(section, earlier.iter().map(|i| i.id).collect());
        let text = format!("[Summary of {summarized} earlier item(s)]\n{summary}");
        let mut item = NewItem::text(text).with_metadata("summarized", json!(summarized));
        item.summary = true;
        match memory.add(section, item) {
            Ok(_) => emit.emit(memory_event(
                MemoryEventKind::Summarized,
                section.as_str(),
                items.len(),
                Map::new(),
            )),
            Err(error) => warn_memory(emit, section.as_str(), &error),
        }
        // Whatever the summary itself pushed out is gone for good.
        memory.take_evicted();
    }
    let mut counts: BTreeMap<(bool, SectionKind), usize> = BTreeMap::new();
    for change in memory.take_changes() {
        let key = match change {
            Change::Added(kind) => (true, kind),
            Change::Evicted(kind) => (false, kind),
        };
        *counts.entry(key).or_default() += 1;
    }
    for ((added, section), n) in counts {
        let kind = if added { MemoryEventKind::Added } else { MemoryEventKind::Evicted };
        emit.emit(memory_event(kind, section.as_str(), n, Map::new()));
    }
}

/// How many original items an item stands for (a summary stands for those it summarized).
fn summarized_count(item: &kaos_session::MemoryItem) -> u64 {
    if item.summary { item.metadata.get("summarized").and_then(Value::as_u64).unwrap_or(1) } else { 1 }
}

fn warn_memory(emit: &Emitter, section: &str, error: &kaos_session::MemoryError) {
    tracing::warn!(section, %error, "memory refused an item");
    emit.emit(memory_event(
        MemoryEventKind::Warning,
        section,
        0,
        attrs([("reason", json!(error.to_string()))]),
    ));
}

//! Committing a finished turn: what it leaves in memory (its messages, its tool actions, and
//! rolling summaries of what sections evicted), then one append of its record to the session
//! log, and the memory cached for the log's new stamp.

use std::collections::BTreeMap;

use kaos_agent::SectionKind;
use kaos_providers::Message;
use serde_json::{Map, Value, json};

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::emit::{Emitter, as_i64, attrs, memory_event};
use crate::engine::state::Progress;
use crate::error::RunError;
use crate::events::MemoryEventKind;
use crate::member::Member;
use kaos_session::{
    Change, ExtractiveSummarizer, NewItem, SESSION_LAYOUT_VERSION, SessionMemory, StopReason, TakenSession,
    ToolCallRecord, TurnRecord,
};

/// A finished turn, to commit.
pub(super) struct Finished<'a> {
    /// The agent holding the conversation at the end.
    pub(super) member: &'a Member,
    /// The agent that held it when the turn began.
    pub(super) first_agent: Arc<str>,
    pub(super) turn_number: u32,
    pub(super) stop_reason: StopReason,
    pub(super) progress: Progress,
}

/// Commits `finished` into the taken session: memory, then one append of the turn's record
/// (the session is released when this returns).
pub(super) async fn commit(
    shared: &Member,
    mut taken: TakenSession,
    finished: Finished<'_>,
    emit: &Emitter,
) -> Result<(), RunError> {
    let Finished { member, first_agent, turn_number, stop_reason, mut progress } = finished;
    let memory = &mut taken.memory;
    let current = tracing::Span::current();
    current.record(
        "gen_ai.usage.input_tokens",
        as_i64(progress.usage.input_tokens + progress.usage.cached_input_tokens),
    );
    current.record("gen_ai.usage.output_tokens", as_i64(progress.usage.output_tokens));
    current.record("kaos.cost_usd", progress.cost_usd);
    let added = progress.request.messages.split_off(progress.first_new);
    remember(shared, memory, &added, &progress.tool_calls, emit).await;
    memory.add_spent(progress.cost_usd, progress.usage.total_tokens());
    let handed_to = (member.agent_name != first_agent).then(|| member.agent_name.to_string());
    if let Some(name) = &handed_to {
        memory.set_active_agent(Some(name.clone()));
    }
    memory.end_turn(turn_number);
    let record = TurnRecord {
        v: SESSION_LAYOUT_VERSION,
        turn: turn_number,
        run_id: emit.run_id.clone(),
        agent_fingerprint: member.fingerprint.clone(),
        agent: handed_to,
        messages: added,
        tool_calls: std::mem::take(&mut progress.tool_calls),
        usage: progress.usage,
        cost_usd: progress.cost_usd,
        unpriced_model_calls: progress.unpriced_model_calls,
        stop_reason,
        finished_at_ms: now_ms(),
        memory: memory.take_ops(),
    };
    let persisted = record.messages.len();
    // Encoded first, so the record's messages can then be moved rather than copied.
    let prepared = taken.prepare(&record)?;
    // The request's conversation goes back to memory, so the next turn's assembly copies only
    // what changed.
    let mut conversation = std::mem::take(&mut progress.request.messages);
    conversation.extend(record.messages);
    let memory = &mut taken.memory;
    memory.keep_shown(conversation, progress.first_new + 1);
    // And its system prompt as assembled (a pattern's or a withdrawn-tools note's is not it).
    memory.keep_system(
        progress.base_system.take().unwrap_or_else(|| std::mem::take(&mut progress.request.system)),
    );
    taken.commit_prepared(prepared).await?;
    emit.emit_with(|| memory_event(MemoryEventKind::Persisted, "messages", persisted, Map::new()));
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

/// Most characters of a tool result kept in the actions section.
const ACTION_RESULT_CHARS: usize = 500;

/// How a tool call reads in the actions section: `name(arguments) → result`, the result cut to
/// [`ACTION_RESULT_CHARS`] characters and marked `error: ` for a failed call. Written into one
/// string (the arguments' JSON straight into it).
fn action_text(call: &ToolCallRecord) -> String {
    let cut = call.result.char_indices().nth(ACTION_RESULT_CHARS).map_or(call.result.len(), |(at, _)| at);
    let result = &call.result[..cut];
    let mut text = Vec::with_capacity(call.name.len() + 32 + result.len());
    text.extend_from_slice(call.name.as_bytes());
    text.push(b'(');
    if serde_json::to_writer(&mut text, &call.arguments).is_err() {
        // Writing JSON into memory does not fail; the same text the slow way if it did.
        text.extend_from_slice(call.arguments.to_string().as_bytes());
    }
    text.extend_from_slice(") → ".as_bytes());
    if call.is_error {
        text.extend_from_slice(b"error: ");
    }
    text.extend_from_slice(result.as_bytes());
    String::from_utf8(text).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Adds what the turn produced to memory (the user message is already there), summarizes
/// what overflowing sections evicted, and reports the changes as events.
pub(super) async fn remember(
    shared: &Member,
    memory: &mut SessionMemory,
    added: &[Message],
    calls: &[ToolCallRecord],
    emit: &Emitter,
) {
    // `added` becomes the record's `messages`: each change names its message by position there
    // rather than carrying a second copy of it.
    for (at, message) in added.iter().enumerate().skip(1) {
        let added = match u32::try_from(at) {
            Ok(at) => memory.add_record_message(message.clone(), at),
            Err(_) => memory.add(SectionKind::Messages, NewItem::message(message.clone())),
        };
        if let Err(error) = added {
            warn_memory(emit, "messages", &error);
        }
    }
    for call in calls {
        if let Err(error) = memory.add(SectionKind::Actions, NewItem::text(action_text(call))) {
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
            Ok(_) => emit.emit_with(|| {
                memory_event(MemoryEventKind::Summarized, section.as_str(), items.len(), Map::new())
            }),
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
        emit.emit_with(|| memory_event(kind, section.as_str(), n, Map::new()));
    }
}

/// How many original items an item stands for (a summary stands for those it summarized).
fn summarized_count(item: &kaos_session::MemoryItem) -> u64 {
    if item.summary { item.metadata.get("summarized").and_then(Value::as_u64).unwrap_or(1) } else { 1 }
}

fn warn_memory(emit: &Emitter, section: &str, error: &kaos_session::MemoryError) {
    tracing::warn!(section, %error, "memory refused an item");
    emit.emit_with(|| {
        memory_event(MemoryEventKind::Warning, section, 0, attrs([("reason", json!(error.to_string()))]))
    });
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_action_reads_name_arguments_and_the_cut_result() {
        let call = |arguments, result: String, is_error| ToolCallRecord {
            call_id: "c1".into(),
            name: "add".into(),
            arguments,
            result,
            is_error,
        };
        let cases = [
            call(json!({"a": 2, "b": "x\"y"}), "5".into(), false),
            call(json!(null), "no such file".into(), true),
            call(json!(["é", 1.5]), "ü".repeat(ACTION_RESULT_CHARS + 7), false),
            call(json!({}), "x".repeat(ACTION_RESULT_CHARS), true),
            call(json!("s"), String::new(), false),
        ];
        for call in cases {
            let result: String = call.result.chars().take(ACTION_RESULT_CHARS).collect();
            let error = if call.is_error { "error: " } else { "" };
            let expected = format!("{}({}) → {error}{result}", call.name, call.arguments);
            assert_eq!(action_text(&call), expected);
        }
    }
}

//! A turn's log line written field by field: exactly the bytes `serde_json` writes for a
//! [`TurnRecord`] (the tests check it, and every line is still read with `serde_json`), without
//! its cost for the record's own shape. `serde_json` escapes every key like any string, and its
//! internally tagged [`MemoryOp`] goes through the generic map path; here the keys are constant
//! bytes and numbers are written with `itoa`. String values, tool arguments and results,
//! metadata and messages of a kind this version does not know are still written by
//! `serde_json`.
//!
//! Each struct is destructured whole, so a field added to [`TurnRecord`], [`MemoryOp`],
//! [`MemoryItem`], a [`Message`] or a [`ToolCall`] does not compile until it is written here
//! too; `Usage` cannot be (it is `#[non_exhaustive]`), but `serde_json` writes all its fields,
//! so the test fails until a new one is written here.

use kaos_providers::{Message, ToolCall};
use serde::Serialize;

use kaos_agent::SectionKind;

use crate::memory::{MemoryItem, MemoryOp};
use crate::store::TurnRecord;
use crate::{StopReason, ToolCallRecord};

/// Appends `record` as one JSON object (no newline) to `out`.
pub(crate) fn write_record(out: &mut Vec<u8>, record: &TurnRecord) -> Result<(), serde_json::Error> {
    let TurnRecord {
        v,
        turn,
        run_id,
        agent_fingerprint,
        agent,
        messages,
        tool_calls,
        usage,
        cost_usd,
        unpriced_model_calls,
        stop_reason,
        finished_at_ms,
        memory,
    } = record;
    key(out, b"{\"v\":");
    number(out, *v);
    key(out, b",\"turn\":");
    number(out, *turn);
    key(out, b",\"run_id\":");
    string(out, run_id);
    key(out, b",\"agent_fingerprint\":");
    string(out, agent_fingerprint);
    if let Some(agent) = agent {
        key(out, b",\"agent\":");
        string(out, agent);
    }
    key(out, b",\"messages\":");
    array(out, messages, write_message)?;
    if !tool_calls.is_empty() {
        key(out, b",\"tool_calls\":");
        array(out, tool_calls, |out, call| {
            let ToolCallRecord { call_id, name, arguments, result, is_error } = call;
            write_call(out, b"{\"call_id\":", call_id, name, arguments)?;
            key(out, b",\"result\":");
            string(out, result);
            key(out, if *is_error { b",\"is_error\":true}" } else { b",\"is_error\":false}" });
            Ok(())
        })?;
    }
    key(out, b",\"usage\":{\"input_tokens\":");
    number(out, usage.input_tokens);
    key(out, b",\"output_tokens\":");
    number(out, usage.output_tokens);
    key(out, b",\"cached_input_tokens\":");
    number(out, usage.cached_input_tokens);
    key(out, b",\"reasoning_tokens\":");
    number(out, usage.reasoning_tokens);
    out.push(b'}');
    key(out, b",\"cost_usd\":");
    value(out, cost_usd)?;
    if *unpriced_model_calls != 0 {
        key(out, b",\"unpriced_model_calls\":");
        number(out, *unpriced_model_calls);
    }
    key(out, b",\"stop_reason\":");
    string(out, stop_reason_name(*stop_reason));
    key(out, b",\"finished_at_ms\":");
    number(out, *finished_at_ms);
    if !memory.is_empty() {
        key(out, b",\"memory\":");
        // An item adding one of the record's messages to the messages section names it by
        // position (`message_at`) rather than repeating it; the items add them in order, so
        // each is looked for after the last one found.
        let mut next = 0;
        array(out, memory, |out, op| write_op(out, op, messages, &mut next))?;
    }
    out.push(b'}');
    Ok(())
}

/// A message; a kind this version does not know is written by `serde_json`.
fn write_message(out: &mut Vec<u8>, message: &Message) -> Result<(), serde_json::Error> {
    match message {
        Message::User { content } => {
            key(out, b"{\"role\":\"user\",\"content\":");
            string(out, content);
        }
        Message::Assistant { content, tool_calls } => {
            key(out, b"{\"role\":\"assistant\",\"content\":");
            string(out, content);
            if !tool_calls.is_empty() {
                key(out, b",\"tool_calls\":");
                array(out, tool_calls, |out, call| {
                    let ToolCall { id, name, arguments } = call;
                    write_call(out, b"{\"id\":", id, name, arguments)?;
                    out.push(b'}');
                    Ok(())
                })?;
            }
        }
        Message::Tool { call_id, name, content, is_error } => {
            key(out, b"{\"role\":\"tool\",\"call_id\":");
            string(out, call_id);
            key(out, b",\"name\":");
            string(out, name);
            key(out, b",\"content\":");
            string(out, content);
            if *is_error {
                key(out, b",\"is_error\":true");
            }
        }
        other => return value(out, other),
    }
    out.push(b'}');
    Ok(())
}

/// A memory change; `messages` are the record's, `next` where to look for the next one an
/// item adds.
fn write_op(
    out: &mut Vec<u8>,
    op: &MemoryOp,
    messages: &[Message],
    next: &mut usize,
) -> Result<(), serde_json::Error> {
    match op {
        MemoryOp::Add { section, item } => {
            key(out, b"{\"op\":\"add\",\"section\":");
            string(out, section.as_str());
            key(out, b",\"item\":");
            let at = match (section, &item.message, item.message_at) {
                (SectionKind::Messages, Some(message), _) => (*next..messages.len())
                    .chain(0..*next)
                    .find(|&i| messages[i] == *message)
                    .and_then(|at| Some((at, u32::try_from(at).ok()?))),
                // Named by its position already (`SessionMemory::add_record_message`).
                (SectionKind::Messages, None, Some(position)) => match usize::try_from(position) {
                    Ok(at) if at < messages.len() => Some((at, position)),
                    _ => {
                        return Err(<serde_json::Error as serde::ser::Error>::custom(format_args!(
                            "a memory change names message {position} of a record of {} messages",
                            messages.len()
                        )));
                    }
                },
                _ => None,
            };
            if let Some((at, _)) = at {
                *next = at + 1;
            }
            write_item_at(out, item, at.map(|(_, position)| position))?;
        }
        MemoryOp::Remove { section, ids } => {
            key(out, b"{\"op\":\"remove\",\"section\":");
            string(out, section.as_str());
            key(out, b",\"ids\":");
            numbers(out, ids)?;
        }
        MemoryOp::Use { section, ids, turn } => {
            key(out, b"{\"op\":\"use\",\"section\":");
            string(out, section.as_str());
            key(out, b",\"ids\":");
            numbers(out, ids)?;
            key(out, b",\"turn\":");
            number(out, *turn);
        }
        MemoryOp::Replace { section, items } => {
            key(out, b"{\"op\":\"replace\",\"section\":");
            string(out, section.as_str());
            key(out, b",\"items\":");
            array(out, items, |out, item| write_item_at(out, item, None))?;
        }
    }
    out.push(b'}');
    Ok(())
}

/// An item; with `moved_to`, its message is one of the record's, written as its position
/// there (`message_at`) instead of itself.
fn write_item_at(
    out: &mut Vec<u8>,
    item: &MemoryItem,
    moved_to: Option<u32>,
) -> Result<(), serde_json::Error> {
    let MemoryItem {
        id,
        content,
        tokens,
        turn,
        priority,
        message,
        metadata,
        uses,
        last_used,
        summary,
        message_at,
    } = item;
    key(out, b"{\"id\":");
    number(out, *id);
    if !content.is_empty() {
        key(out, b",\"content\":");
        string(out, content);
    }
    key(out, b",\"tokens\":");
    number(out, *tokens);
    key(out, b",\"turn\":");
    number(out, *turn);
    if *priority != 0 {
        key(out, b",\"priority\":");
        number(out, *priority);
    }
    if let Some(message) = message.as_ref().filter(|_| moved_to.is_none()) {
        key(out, b",\"message\":");
        value(out, message)?;
    }
    if !metadata.is_empty() {
        key(out, b",\"metadata\":");
        value(out, metadata)?;
    }
    if *uses != 0 {
        key(out, b",\"uses\":");
        number(out, *uses);
    }
    if *last_used != 0 {
        key(out, b",\"last_used\":");
        number(out, *last_used);
    }
    if *summary {
        key(out, b",\"summary\":true");
    }
    if let Some(at) = moved_to.or(*message_at) {
        key(out, b",\"message_at\":");
        number(out, at);
    }
    out.push(b'}');
    Ok(())
}

/// The fields a tool call and its record share, from the opening `{` and the id's key
/// (`id_key`) to the arguments, without the closing `}`.
fn write_call(
    out: &mut Vec<u8>,
    id_key: &[u8],
    id: &str,
    name: &str,
    arguments: &serde_json::Value,
) -> Result<(), serde_json::Error> {
    key(out, id_key);
    string(out, id);
    key(out, b",\"name\":");
    string(out, name);
    key(out, b",\"arguments\":");
    value(out, arguments)
}

/// The name `serde` gives a stop reason.
fn stop_reason_name(reason: StopReason) -> &'static str {
    match reason {
        StopReason::Completed => "completed",
        StopReason::IterationLimit => "iteration_limit",
        StopReason::ApprovalRequired => "approval_required",
        StopReason::BudgetExceeded => "budget_exceeded",
        StopReason::ModelUnavailable => "model_unavailable",
        StopReason::EvidenceInsufficient => "evidence_insufficient",
        StopReason::PlanIncomplete => "plan_incomplete",
    }
}

/// Constant bytes: punctuation and keys, which never need escaping.
fn key(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
}

/// Writes `n` in decimal. Most numbers of a record (ids, positions, turns, token counts of a
/// message) have at most three digits: those are pushed byte by byte, without `itoa`'s
/// buffer and a copy out of it.
fn number(out: &mut Vec<u8>, n: impl itoa::Integer + TryInto<u16>) {
    let digit = |d: u16| b'0' + (d % 10) as u8;
    match n.try_into() {
        Ok(small @ 0..=9) => out.push(digit(small)),
        Ok(small @ 10..=99) => out.extend_from_slice(&[digit(small / 10), digit(small)]),
        Ok(small @ 100..=999) => {
            out.extend_from_slice(&[digit(small / 100), digit(small / 10), digit(small)])
        }
        _ => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
    }
}

fn numbers(out: &mut Vec<u8>, ns: &[u64]) -> Result<(), serde_json::Error> {
    array(out, ns, |out, n| {
        number(out, *n);
        Ok(())
    })
}

/// A JSON array of `items`, each written by `write`.
fn array<T>(
    out: &mut Vec<u8>,
    items: &[T],
    mut write: impl FnMut(&mut Vec<u8>, &T) -> Result<(), serde_json::Error>,
) -> Result<(), serde_json::Error> {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item)?;
    }
    out.push(b']');
    Ok(())
}

/// A JSON string, as `serde_json` writes it: a string with nothing to escape (no `"`, `\\` or
/// control character, which is nearly every one a turn writes) is copied whole; any other is
/// written by `serde_json`. The check looks at 16 bytes at a time without branching on each,
/// so the compiler can do it in a few vector instructions.
fn string(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        // Writing to a `Vec` cannot fail, and a `str` always serializes.
        let _ = serde_json::to_writer(&mut *out, s);
        return;
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

fn needs_escape(bytes: &[u8]) -> bool {
    let escaped = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    let mut chunks = bytes.chunks_exact(16);
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |any, &b| any | escaped(b)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| escaped(b))
}

fn value(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) -> Result<(), serde_json::Error> {
    serde_json::to_writer(&mut *out, value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use kaos_agent::SectionKind;
    use kaos_providers::Usage;
    use serde_json::json;

    use super::*;

    fn item(id: u64, message: Option<Message>) -> MemoryItem {
        MemoryItem {
            id,
            content: String::new(),
            tokens: 13,
            turn: 3,
            priority: 0,
            message,
            metadata: BTreeMap::new(),
            uses: 0,
            last_used: 0,
            summary: false,
            message_at: None,
        }
    }

    fn full_item() -> MemoryItem {
        MemoryItem {
            id: u64::MAX,
            content: "a \"quoted\"\nline\t\u{1}é 😀 \\ </script>".into(),
            tokens: 0,
            turn: u32::MAX,
            priority: -7,
            message: Some(Message::assistant("shown")),
            metadata: BTreeMap::from([("name".into(), json!("doc.md")), ("summarized".into(), json!(3))]),
            uses: 4,
            last_used: 9,
            summary: true,
            message_at: Some(2),
        }
    }

    fn record(memory: Vec<MemoryOp>) -> TurnRecord {
        let call = ToolCall::new("call_1", "add", json!({"a": 2, "b": [1, "x"]}));
        TurnRecord {
            v: 3,
            turn: 12,
            run_id: "run_0123456789abcdef".into(),
            agent_fingerprint: "sha256:ff".into(),
            agent: Some("triage \"agent\"".into()),
            messages: vec![
                Message::user("hi\u{0}there"),
                Message::Assistant { content: String::new(), tool_calls: vec![call] },
                Message::tool("call_1", "add", "5", false),
                Message::tool("call_2", "add", "no \"b\"", true),
                Message::assistant("The sum is 5."),
            ],
            tool_calls: vec![ToolCallRecord {
                call_id: "call_1".into(),
                name: "add".into(),
                arguments: json!({"a": 2}),
                result: "5".into(),
                is_error: false,
            }],
            usage: Usage::new(617, 24).with_cached_input(100).with_reasoning(7),
            cost_usd: 0.000_123_4,
            unpriced_model_calls: 2,
            stop_reason: StopReason::IterationLimit,
            finished_at_ms: 1_796_306_657_455,
            memory,
        }
    }

    fn same_as_serde(record: &TurnRecord) {
        let mut ours = Vec::new();
        write_record(&mut ours, record).unwrap();
        let theirs = serde_json::to_vec(record).unwrap();
        assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(theirs).unwrap());
    }

    #[test]
    fn a_record_is_written_exactly_as_serde_json_writes_it() {
        let mut ops = Vec::new();
        for section in SectionKind::ALL {
            ops.push(MemoryOp::Add { section, item: item(5, None) });
            ops.push(MemoryOp::Add { section, item: item(6, Some(Message::user("q"))) });
            ops.push(MemoryOp::Add { section, item: full_item() });
            ops.push(MemoryOp::Remove { section, ids: vec![] });
            ops.push(MemoryOp::Remove { section, ids: vec![1, 2, u64::MAX] });
            ops.push(MemoryOp::Use { section, ids: vec![3], turn: 7 });
            ops.push(MemoryOp::Replace { section, items: vec![] });
            ops.push(MemoryOp::Replace { section, items: vec![item(1, None), full_item()] });
        }
        same_as_serde(&record(ops));
        // Every optional field absent.
        let mut plain = record(vec![]);
        plain.agent = None;
        plain.tool_calls.clear();
        plain.unpriced_model_calls = 0;
        plain.cost_usd = 0.0;
        plain.stop_reason = StopReason::Completed;
        same_as_serde(&plain);
        plain.cost_usd = f64::NAN;
        same_as_serde(&plain);
        // Every stop reason; tool calls that failed, with text to escape and no arguments.
        let mut calls = record(vec![]);
        calls.tool_calls.push(ToolCallRecord {
            call_id: "call_\"2\"".into(),
            name: "read\\file".into(),
            arguments: json!(null),
            result: "denied:\n\u{7}".into(),
            is_error: true,
        });
        for reason in [
            StopReason::Completed,
            StopReason::IterationLimit,
            StopReason::ApprovalRequired,
            StopReason::BudgetExceeded,
            StopReason::ModelUnavailable,
            StopReason::EvidenceInsufficient,
            StopReason::PlanIncomplete,
        ] {
            calls.stop_reason = reason;
            same_as_serde(&calls);
        }
    }

    /// An item adding one of the record's messages to the messages section names it by position
    /// (found in order, after the last one found, wrapping around), exactly as `serde_json`
    /// writes the record with those items' messages replaced by their positions; an item of
    /// another section, or with a message the record does not have, keeps its message.
    #[test]
    fn items_adding_the_records_messages_name_them_by_position() {
        let answer = Message::assistant("The sum is 5.");
        let question = Message::user("hi\u{0}there");
        let add =
            |section, id, message: &Message| MemoryOp::Add { section, item: item(id, Some(message.clone())) };
        let ops = vec![
            add(SectionKind::Messages, 1, &question),
            add(SectionKind::Messages, 2, &answer),
            add(SectionKind::Documents, 3, &answer),
            add(SectionKind::Messages, 4, &Message::user("not in the record")),
            add(SectionKind::Messages, 5, &question),
        ];
        let mut ours = Vec::new();
        write_record(&mut ours, &record(ops.clone())).unwrap();
        let mut expected = record(ops);
        for (op, at) in expected.memory.iter_mut().zip([Some(0), Some(4), None, None, Some(0)]) {
            let MemoryOp::Add { item, .. } = op else { unreachable!() };
            if let Some(at) = at {
                item.message = None;
                item.message_at = Some(at);
            }
        }
        assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&expected).unwrap());
    }

    /// Numbers of every width, each side of the short forms' bounds, signed and unsigned, are
    /// written as `serde_json` writes them.
    #[test]
    fn numbers_are_written_exactly_as_serde_json_writes_them() {
        let mut values: Vec<i64> = (-1_100..=1_100).collect();
        values.extend([9_999, 10_000, 65_535, 65_536, i64::from(u32::MAX), i64::MAX, i64::MIN]);
        for v in values {
            let mut ours = Vec::new();
            number(&mut ours, v);
            assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&v).unwrap());
            if let Ok(unsigned) = u64::try_from(v) {
                let mut ours = Vec::new();
                number(&mut ours, unsigned);
                assert_eq!(String::from_utf8(ours).unwrap(), unsigned.to_string());
            }
        }
        let mut ours = Vec::new();
        number(&mut ours, u64::MAX);
        assert_eq!(String::from_utf8(ours).unwrap(), u64::MAX.to_string());
    }

    /// Strings of every length around the 16-byte chunks, with a byte that needs escaping (or
    /// none) anywhere, and arbitrary text, are written as `serde_json` writes them.
    #[test]
    fn strings_are_written_exactly_as_serde_json_writes_them() {
        let check = |s: &str| {
            let mut ours = Vec::new();
            string(&mut ours, s);
            assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(s).unwrap(), "{s:?}");
        };
        for len in 0..40 {
            check(&"é".repeat(len));
            for at in 0..len {
                for special in ['"', '\\', '\n', '\u{0}', '\u{1f}', '\u{7f}', '/', ' ', '~'] {
                    let mut s: String = "x".repeat(len);
                    s.replace_range(at..=at, &special.to_string());
                    check(&s);
                }
            }
        }
        proptest::proptest!(|(s in ".*")| check(&s));
    }
}

//! A session's memory packed into one compressed buffer, as the session cache keeps the
//! sessions that are not among the most recently used (see `crate::cache`).
//!
//! Materialized, a message costs its [`MemoryItem`] (176 bytes), its text in an allocation of
//! its own, and a share of its list's spare room: about 250 bytes of heap for a short message.
//! Packed, it costs a few bytes of header beside its text, and the whole session is
//! compressed with LZ4 (a conversation repeats itself: quoted text, names, tool output), in one
//! allocation of exactly its size. Unpacking costs a pass over those bytes and the
//! allocations of the materialized memory: far less than reading and parsing the session's
//! log, which is what a session the cache no longer holds costs.
//!
//! The format lives only in this process's memory (it is never stored): a plain text or
//! message item is a flag byte, its id (as the difference from the item before), tokens,
//! turn, and its texts; anything rarer (metadata, tool calls, a message beside its own
//! content, a message kind this build does not know) is the item as JSON, as the log has it,
//! and so are the changes held for the next record.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use kaos_agent::{MemoryProfile, SectionKind};
use kaos_providers::{Message, TokenCounter};

use super::{MemoryItem, MemoryOp, SessionMemory};

/// A packed session (see the module docs).
#[derive(Debug)]
pub(crate) struct PackedMemory {
    /// The encoding, LZ4-compressed when `raw_len` is not `None`.
    bytes: Box<[u8]>,
    /// The length of the encoding before compression, when compressed.
    raw_len: Option<u32>,
}

impl PackedMemory {
    /// The heap bytes it holds.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.len()
    }
}

// Item shapes (the low three bits of an item's flag byte).
const TEXT: u8 = 0;
const USER: u8 = 1;
const ASSISTANT: u8 = 2;
const TOOL: u8 = 3;
const JSON: u8 = 7;
// Flags beside the shape.
const SUMMARY: u8 = 1 << 3;
const PRIORITY: u8 = 1 << 4;
const USED: u8 = 1 << 5;
const IS_ERROR: u8 = 1 << 6;

/// Encodings shorter than this are kept as they are: LZ4 finds little to share in a few
/// hundred bytes, and clearing its table (8 KiB) would cost more than packing the rest (a
/// session of a turn or two).
const COMPRESS_MIN_BYTES: usize = 256;

/// The scratch buffers kept for packing and unpacking on a thread; their room is given back
/// above this size, so a thread keeps at most this much after one large session.
const SCRATCH_KEEP_BYTES: usize = 64 << 10;

thread_local! {
    /// The encoding and its compression, reused: packing a session allocates only its result.
    static SCRATCH: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// A reader over an encoding; every read is `None` past its end or on bad data.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.varint()?).ok()
    }

    fn bytes(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(head)
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.varint()?).ok()?;
        std::str::from_utf8(self.bytes(len)?).ok().map(str::to_owned)
    }
}

/// Writes one item (`prev`: the id of the item before it in its section).
fn put_item(out: &mut Vec<u8>, item: &MemoryItem, prev: u64) -> Option<()> {
    let shape = match &item.message {
        None if item.metadata.is_empty() => TEXT,
        Some(_) if !item.content.is_empty() || !item.metadata.is_empty() => JSON,
        Some(Message::User { .. }) => USER,
        Some(Message::Assistant { tool_calls, .. }) if tool_calls.is_empty() => ASSISTANT,
        Some(Message::Tool { .. }) => TOOL,
        _ => JSON,
    };
    if shape == JSON {
        out.push(JSON);
        let json = serde_json::to_vec(item).ok()?;
        put_varint(out, json.len() as u64);
        out.extend_from_slice(&json);
        return Some(());
    }
    let mut flags = shape;
    if item.summary {
        flags |= SUMMARY;
    }
    if item.priority != 0 {
        flags |= PRIORITY;
    }
    if item.uses != 0 || item.last_used != 0 {
        flags |= USED;
    }
    if let Some(Message::Tool { is_error: true, .. }) = &item.message {
        flags |= IS_ERROR;
    }
    out.push(flags);
    put_varint(out, zigzag(item.id.wrapping_sub(prev) as i64));
    put_varint(out, item.tokens);
    put_varint(out, u64::from(item.turn));
    if item.priority != 0 {
        put_varint(out, zigzag(i64::from(item.priority)));
    }
    if flags & USED != 0 {
        put_varint(out, u64::from(item.uses));
        put_varint(out, u64::from(item.last_used));
    }
    match &item.message {
        None => put_str(out, &item.content),
        Some(Message::User { content } | Message::Assistant { content, .. }) => put_str(out, content),
        Some(Message::Tool { call_id, name, content, .. }) => {
            put_str(out, call_id);
            put_str(out, name);
            put_str(out, content);
        }
        // Written as JSON above.
        Some(_) => return None,
    }
    Some(())
}

/// Reads one item written by [`put_item`].
fn item(r: &mut Reader<'_>, prev: u64) -> Option<MemoryItem> {
    let flags = r.byte()?;
    let shape = flags & 0b111;
    if shape == JSON {
        let len = usize::try_from(r.varint()?).ok()?;
        return serde_json::from_slice(r.bytes(len)?).ok();
    }
    let id = prev.wrapping_add(unzigzag(r.varint()?) as u64);
    let tokens = r.varint()?;
    let turn = r.u32()?;
    let priority = if flags & PRIORITY != 0 { i32::try_from(unzigzag(r.varint()?)).ok()? } else { 0 };
    let (uses, last_used) = if flags & USED != 0 { (r.u32()?, r.u32()?) } else { (0, 0) };
    let (content, message) = match shape {
        TEXT => (r.string()?, None),
        USER => (String::new(), Some(Message::User { content: r.string()? })),
        ASSISTANT => (String::new(), Some(Message::assistant(r.string()?))),
        TOOL => {
            let (call_id, name, content) = (r.string()?, r.string()?, r.string()?);
            (String::new(), Some(Message::tool(call_id, name, content, flags & IS_ERROR != 0)))
        }
        _ => return None,
    };
    Some(MemoryItem {
        id,
        content,
        tokens,
        turn,
        priority,
        message,
        metadata: BTreeMap::new(),
        uses,
        last_used,
        summary: flags & SUMMARY != 0,
        message_at: None,
    })
}

impl SessionMemory {
    /// This memory packed (see the module docs), with the changes it holds for the next
    /// record (a turn's last additions, logged with the next turn); `None` while it holds
    /// changes or evicted items not yet taken for events and summaries (a turn in progress).
    pub(crate) fn pack(&self) -> Option<PackedMemory> {
        if !self.evicted.is_empty() || !self.changes.is_empty() {
            return None;
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.try_borrow_mut().ok()?;
            let (raw, compressed) = &mut *scratch;
            raw.clear();
            let packed = self.encode(raw).and_then(|()| {
                if raw.len() < COMPRESS_MIN_BYTES {
                    return Some(PackedMemory { bytes: raw.as_slice().into(), raw_len: None });
                }
                let raw_len = u32::try_from(raw.len()).ok()?;
                compressed.clear();
                compressed.resize(lz4_flex::block::get_maximum_output_size(raw.len()), 0);
                let len = lz4_flex::block::compress_into(raw, compressed).ok()?;
                Some(if len < raw.len() {
                    PackedMemory { bytes: compressed[..len].into(), raw_len: Some(raw_len) }
                } else {
                    PackedMemory { bytes: raw.as_slice().into(), raw_len: None }
                })
            });
            for buffer in [raw, compressed] {
                if buffer.capacity() > SCRATCH_KEEP_BYTES {
                    *buffer = Vec::new();
                }
            }
            packed
        })
    }

    fn encode(&self, out: &mut Vec<u8>) -> Option<()> {
        put_varint(out, u64::from(self.turn));
        out.extend_from_slice(&self.spent.0.to_bits().to_le_bytes());
        put_varint(out, self.spent.1);
        match &self.active_agent {
            None => put_varint(out, 0),
            Some(agent) => {
                put_varint(out, agent.len() as u64 + 1);
                out.extend_from_slice(agent.as_bytes());
            }
        }
        put_varint(out, self.next_id);
        put_varint(out, self.dirty.len() as u64);
        for kind in &self.dirty {
            put_varint(out, SectionKind::ALL.iter().position(|k| k == kind)? as u64);
        }
        put_varint(out, self.ops.len() as u64);
        for op in &self.ops {
            let json = serde_json::to_vec(op).ok()?;
            put_varint(out, json.len() as u64);
            out.extend_from_slice(&json);
        }
        for section in self.sections.iter().filter(|s| !s.items.is_empty()) {
            let kind = SectionKind::ALL.iter().position(|k| *k == section.kind)?;
            put_varint(out, kind as u64);
            put_varint(out, section.items.len() as u64);
            let mut prev = 0;
            for item in &section.items {
                put_item(out, item, prev)?;
                prev = item.id;
            }
        }
        Some(())
    }

    /// Unpacks `packed` with the sections of `profile`: the memory that was packed, but for
    /// what is derived (the conversation last shown, the system prompt, search indexes: the
    /// next turn builds them again). `None` if it does not read back (never for what
    /// [`SessionMemory::pack`] made).
    pub(crate) fn unpack(
        packed: &PackedMemory,
        profile: &MemoryProfile,
        counter: Arc<dyn TokenCounter>,
    ) -> Option<SessionMemory> {
        let Some(raw_len) = packed.raw_len else {
            return Self::decode(&packed.bytes, profile, counter);
        };
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.try_borrow_mut().ok()?;
            let raw = &mut scratch.0;
            raw.clear();
            raw.resize(raw_len as usize, 0);
            let len = lz4_flex::block::decompress_into(&packed.bytes, raw).ok()?;
            let memory = (len == raw.len()).then(|| Self::decode(raw, profile, counter)).flatten();
            if raw.capacity() > SCRATCH_KEEP_BYTES {
                *raw = Vec::new();
            }
            memory
        })
    }

    fn decode(
        bytes: &[u8],
        profile: &MemoryProfile,
        counter: Arc<dyn TokenCounter>,
    ) -> Option<SessionMemory> {
        let mut r = Reader(bytes);
        let mut memory = SessionMemory::new(profile, counter);
        let turn = r.u32()?;
        let spent = f64::from_bits(u64::from_le_bytes(r.bytes(8)?.try_into().ok()?));
        memory.spent = (spent, r.varint()?);
        memory.active_agent = match usize::try_from(r.varint()?).ok()? {
            0 => None,
            len => Some(std::str::from_utf8(r.bytes(len - 1)?).ok()?.to_owned()),
        };
        let next_id = r.varint()?;
        for _ in 0..r.varint()? {
            memory.dirty.insert(*SectionKind::ALL.get(usize::try_from(r.varint()?).ok()?)?);
        }
        let ops = usize::try_from(r.varint()?).ok()?;
        memory.ops.reserve_exact(ops.min(r.0.len()));
        for _ in 0..ops {
            let len = usize::try_from(r.varint()?).ok()?;
            memory.ops.push(serde_json::from_slice(r.bytes(len)?).ok()?);
        }
        while !r.0.is_empty() {
            let kind = *SectionKind::ALL.get(usize::try_from(r.varint()?).ok()?)?;
            let count = usize::try_from(r.varint()?).ok()?;
            // Each item takes at least four bytes: a count past that is bad data.
            let mut items = Vec::with_capacity(count.min(r.0.len() / 4));
            let mut prev = 0;
            for _ in 0..count {
                let item = item(&mut r, prev)?;
                prev = item.id;
                items.push(item);
            }
            memory.apply(MemoryOp::Replace { section: kind, items });
        }
        memory.turn = turn;
        memory.next_id = next_id;
        Some(memory)
    }
}

#[cfg(test)]
mod tests {
    use kaos_agent::{Eviction, Persistence, SectionConfig};
    use kaos_providers::{Estimator, ToolCall};
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::NewItem;

    fn unpacked(memory: &SessionMemory, profile: &MemoryProfile) -> SessionMemory {
        let packed = memory.pack().expect("packs");
        SessionMemory::unpack(&packed, profile, Arc::new(Estimator)).expect("unpacks")
    }

    #[test]
    fn every_kind_of_item_and_the_changes_held_for_the_next_record_come_back() {
        let mut snapshot = SectionConfig::default_for(SectionKind::Lessons);
        snapshot.persistence = Persistence::Snapshot;
        let profile = MemoryProfile::default().with_section(SectionKind::Lessons, snapshot);
        let mut memory = SessionMemory::new(&profile, Arc::new(Estimator));
        let messages = SectionKind::Messages;
        let call = ToolCall::new("c1", "search", json!({"q": "école", "n": 3}));
        for message in [
            Message::user("Hi — ünïcode"),
            Message::Assistant { content: String::new(), tool_calls: vec![call] },
            Message::tool("c1", "search", "found", false),
            Message::tool("c2", "fetch", "timed out", true),
            Message::assistant("Done."),
        ] {
            memory.add(messages, NewItem::message(message)).unwrap();
        }
        let mut summary =
            NewItem::text("[Summary of 3 earlier item(s)]").with_metadata("summarized", json!(3));
        summary.summary = true;
        memory.add(messages, summary).unwrap();
        memory.add(SectionKind::Actions, NewItem::text("called search").with_priority(-7)).unwrap();
        memory.add(SectionKind::Working, NewItem::text("").with_priority(i32::MAX)).unwrap();
        let doc = NewItem::text("chunk one").with_metadata("name", json!("report.md"));
        let doc = memory.add(SectionKind::Documents, doc).unwrap();
        memory.mark_used(SectionKind::Actions, vec![memory.section(SectionKind::Actions).items()[0].id]);
        memory.remove(SectionKind::Documents, vec![doc]);
        memory.add(SectionKind::Lessons, NewItem::text("a lesson")).unwrap();
        memory.end_turn(7);
        memory.add_spent(0.125, 4_000);
        memory.set_active_agent(Some("writer".to_owned()));
        memory.take_changes();
        // What the last additions logged go with the next record: kept with the memory.
        let mut back = unpacked(&memory, &profile);
        assert_eq!(back, memory);
        assert_eq!(back.take_ops(), memory.clone().take_ops());
        memory.take_ops();
        let mut back = unpacked(&memory, &profile);
        assert!(back.take_ops().is_empty());
        assert_eq!(back, memory);
        // Ids go on from where they were (the removed document's id is not given again).
        assert_eq!(
            back.add(SectionKind::Documents, NewItem::text("x")),
            memory.add(SectionKind::Documents, NewItem::text("x"))
        );
        // Memory with changes not yet taken for events is not packed.
        assert!(memory.pack().is_none());
    }

    #[test]
    fn a_long_session_is_compressed_and_bad_bytes_are_refused() {
        let profile = MemoryProfile::default();
        let mut memory = SessionMemory::new(&profile, Arc::new(Estimator));
        for turn in 0..20 {
            let said = format!("turn {turn} of s1234");
            let reply =
                format!("You said: {said:?}. I have seen {} user messages in this session.", turn + 1);
            for message in [Message::user(said), Message::assistant(reply)] {
                memory.add(SectionKind::Messages, NewItem::message(message)).unwrap();
            }
        }
        memory.take_changes();
        memory.take_ops();
        let packed = memory.pack().unwrap();
        let text: usize = memory.messages().map(|m| m.content().len()).sum();
        assert!(
            packed.raw_len.is_some() && packed.heap_bytes() * 2 < text,
            "{} of {text}",
            packed.heap_bytes()
        );
        assert_eq!(SessionMemory::unpack(&packed, &profile, Arc::new(Estimator)).unwrap(), memory);
        // Cut short, or with a byte changed: refused (`None`), never a panic.
        for len in 0..packed.bytes.len() {
            let cut = PackedMemory { bytes: packed.bytes[..len].into(), raw_len: packed.raw_len };
            assert!(SessionMemory::unpack(&cut, &profile, Arc::new(Estimator)).is_none());
        }
        let raw = PackedMemory { bytes: vec![0xff; 40].into(), raw_len: None };
        assert!(SessionMemory::unpack(&raw, &profile, Arc::new(Estimator)).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever a section went through (additions by any policy, uses, evictions), it
        /// comes back from packing as it was.
        #[test]
        fn packing_keeps_the_memory_whatever_it_went_through(
            eviction in prop::sample::select(vec![Eviction::Fifo, Eviction::Lifo, Eviction::Lru, Eviction::Lfu, Eviction::Priority]),
            steps in prop::collection::vec((0usize..200, -3i32..3, prop::collection::vec(0usize..20, 0..4)), 1..40),
        ) {
            let kind = SectionKind::Actions;
            let mut config = SectionConfig::default_for(kind);
            config.budget_tokens = kaos_agent::TokenBudget::Limited(std::num::NonZeroU32::new(300).unwrap());
            config.eviction = eviction;
            let profile = MemoryProfile::default().with_section(kind, config);
            let mut memory = SessionMemory::new(&profile, Arc::new(Estimator));
            for (len, priority, picks) in steps {
                let _ = memory.add(kind, NewItem::text("é".repeat(len)).with_priority(priority));
                let ids = picks.iter().filter_map(|p| memory.section(kind).items().get(*p).map(|i| i.id)).collect();
                memory.mark_used(kind, ids);
                memory.end_turn(memory.turn() + 1);
            }
            memory.take_changes();
            memory.take_evicted();
            let back = unpacked(&memory, &profile);
            prop_assert_eq!(&back, &memory);
            prop_assert_eq!(back.clone().take_ops(), memory.clone().take_ops());
        }
    }
}

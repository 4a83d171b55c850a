//! `SessionMemory`: typed sections with budgets, eviction and change tracking.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use kaos_agent::{Eviction, MemoryProfile, Persistence, SectionConfig, SectionKind};
use kaos_providers::{Conversation, Message, TokenCounter};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::bm25;

mod packed;
pub(crate) use packed::PackedMemory;

/// What a section evicts down to once it must evict: three quarters of its budget.
pub fn low_water(budget: u64) -> u64 {
    budget - budget / 4
}

/// Tokens a message costs beyond its text (role and framing), as vendors charge it.
pub const MESSAGE_OVERHEAD_TOKENS: u64 = 4;

/// One item of a section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemoryItem {
    /// Unique within the session, increasing in the order items were added.
    pub id: u64,
    /// The text shown to the model and searched; empty for a message, whose text is
    /// [`MemoryItem::text`] (derived from the message, so it is not stored twice).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content: String,
    /// What the item costs in the context, in tokens.
    pub tokens: u64,
    /// The turn that added it.
    pub turn: u32,
    /// For the `priority` eviction policy: higher is kept longer.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub priority: i32,
    /// For the messages section: the message itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// Free-form details (e.g. a document's name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
    /// How many turns put the item in front of the model (for `lfu`).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub uses: u32,
    /// The last turn that put the item in front of the model (for `lru`).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub last_used: u32,
    /// Whether the item is a summary of evicted items.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub summary: bool,
    /// In a log line only (layout 3): the item's message is the record's `messages[i]`, not
    /// repeated here. Resolved when the line is read; always `None` in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) message_at: Option<u32>,
}

impl MemoryItem {
    /// The item's text: its content, or for a message, how the message reads.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match &self.message {
            Some(message) if self.content.is_empty() => std::borrow::Cow::Owned(render_message(message)),
            _ => std::borrow::Cow::Borrowed(&self.content),
        }
    }
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// What to add to a section: text, and optionally a priority, metadata or a message.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NewItem {
    /// The text.
    pub content: String,
    /// For the `priority` eviction policy.
    pub priority: i32,
    /// Free-form details.
    pub metadata: BTreeMap<String, Value>,
    /// The message, for an item of the messages section.
    pub message: Option<Message>,
    /// Whether the item is a rolling summary of evicted items.
    pub summary: bool,
}

impl NewItem {
    /// An item with this text.
    pub fn text(content: impl Into<String>) -> Self {
        Self { content: content.into(), ..Self::default() }
    }

    /// With a priority.
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// With a metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: Value) -> Self {
        self.metadata.insert(key.into(), value);
        self
    }

    /// An item holding one message of the conversation.
    pub fn message(message: Message) -> Self {
        Self { message: Some(message), ..Self::default() }
    }
}

/// How a message reads as section text (for search and summaries).
pub fn render_message(message: &Message) -> String {
    match message {
        Message::User { content } => format!("user: {content}"),
        Message::Assistant { content, tool_calls } if tool_calls.is_empty() => {
            format!("assistant: {content}")
        }
        Message::Assistant { content, tool_calls } => {
            let calls: Vec<String> =
                tool_calls.iter().map(|c| format!("{}({})", c.name, c.arguments)).collect();
            format!("assistant: {content} [calls {}]", calls.join(", "))
        }
        Message::Tool { name, content, .. } => format!("tool {name}: {content}"),
        _ => String::new(),
    }
}

/// Why memory refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// The section's policy (`refuse` or `none`) keeps what it has and the item does not fit.
    #[error("section {section} is full ({used} of {budget} tokens); it refuses items of {needed} tokens")]
    SectionFull {
        /// The section.
        section: SectionKind,
        /// Tokens in use.
        used: u64,
        /// The budget.
        budget: u64,
        /// The item's size.
        needed: u64,
    },
    /// One item is larger than the section's whole budget.
    #[error("an item of {needed} tokens can never fit section {section} (budget {budget})")]
    ItemTooLarge {
        /// The section.
        section: SectionKind,
        /// The budget.
        budget: u64,
        /// The item's size.
        needed: u64,
    },
    /// The instructions and the current message alone exceed the context budget.
    #[error("the context needs at least {needed} tokens but the budget is {budget}")]
    ContextTooLarge {
        /// What the pinned part needs.
        needed: u64,
        /// The context budget.
        budget: u64,
    },
}

/// One change to memory, as appended to the session log. Replaying a session's changes in
/// order rebuilds its memory exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MemoryOp {
    /// An item was added.
    Add {
        /// The section.
        section: SectionKind,
        /// The item.
        item: MemoryItem,
    },
    /// Items were evicted or deleted.
    Remove {
        /// The section.
        section: SectionKind,
        /// Their ids.
        ids: Vec<u64>,
    },
    /// Items were put in front of the model in `turn`.
    Use {
        /// The section.
        section: SectionKind,
        /// Their ids.
        ids: Vec<u64>,
        /// The turn.
        turn: u32,
    },
    /// A snapshot section's whole content.
    Replace {
        /// The section.
        section: SectionKind,
        /// Every item, in order.
        items: Vec<MemoryItem>,
    },
}

/// A section: its configuration and items in the order they were added.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    kind: SectionKind,
    config: SectionConfig,
    items: Vec<MemoryItem>,
    tokens: u64,
}

impl Section {
    fn new(kind: SectionKind, config: SectionConfig) -> Self {
        Self { kind, config, items: Vec::new(), tokens: 0 }
    }

    /// The item with this id (items are in id order: ids grow as items are added).
    pub(crate) fn item(&self, id: u64) -> Option<&MemoryItem> {
        self.position(id).map(|at| &self.items[at])
    }

    /// Where the item with this id is in `items`.
    pub(crate) fn position(&self, id: u64) -> Option<usize> {
        match self.items.binary_search_by_key(&id, |i| i.id) {
            Ok(at) => Some(at),
            // Not in id order (never made by this crate): a linear search is still right.
            Err(_) => self.items.iter().position(|i| i.id == id),
        }
    }

    /// Which section.
    pub fn kind(&self) -> SectionKind {
        self.kind
    }

    /// Its configuration.
    pub fn config(&self) -> &SectionConfig {
        &self.config
    }

    /// Items, oldest first.
    pub fn items(&self) -> &[MemoryItem] {
        &self.items
    }

    /// Tokens held.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// How many items the section's list has room for (tests of how it grows).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.items.capacity()
    }

    /// The items in the order this section's policy gives them up: lazily for `fifo` and
    /// `lifo`, sorted once by (key, age) for `lru`, `lfu` and `priority` (the same order as
    /// taking the oldest minimum again and again).
    fn eviction_order(&self) -> Box<dyn Iterator<Item = &MemoryItem> + '_> {
        let sorted = |key: fn(&MemoryItem) -> i64| -> Box<dyn Iterator<Item = &MemoryItem> + '_> {
            let mut order: Vec<usize> = (0..self.items.len()).collect();
            // Stable: equal keys stay oldest first.
            order.sort_by_key(|&i| key(&self.items[i]));
            Box::new(order.into_iter().map(move |i| &self.items[i]))
        };
        match self.config.eviction {
            Eviction::Fifo => Box::new(self.items.iter()),
            Eviction::Lifo => Box::new(self.items.iter().rev()),
            Eviction::Lru => sorted(|item| i64::from(item.last_used)),
            Eviction::Lfu => sorted(|item| i64::from(item.uses)),
            Eviction::Priority => sorted(|item| i64::from(item.priority)),
            // none, refuse, and policies this build does not know: give nothing up.
            _ => Box::new(std::iter::empty()),
        }
    }

    fn remove(&mut self, ids: &BTreeSet<u64>) -> Vec<MemoryItem> {
        let (gone, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.items).into_iter().partition(|i| ids.contains(&i.id));
        self.items = kept;
        self.tokens -= gone.iter().map(|i| i.tokens).sum::<u64>();
        gone
    }

    fn push(&mut self, item: MemoryItem) {
        self.tokens += item.tokens;
        self.items.push(item);
    }

    fn replace(&mut self, items: Vec<MemoryItem>) {
        self.tokens = items.iter().map(|i| i.tokens).sum();
        self.items = items;
    }
}

/// Conversations shorter than this are not kept between turns: a session's first turn shows
/// one message, and a session of one turn (most of a busy server's) would hold it twice for
/// nothing. From the second turn on the conversation is kept, however short: copying it into
/// each request was a fifth of a plain turn's instructions at turns 1–20 (callgrind), more
/// than holding its messages twice costs a cached session.
pub(crate) const SHOWN_MIN_MESSAGES: usize = 2;

/// The system prompt last assembled when every section fit whole, lent to the request and
/// handed back after the turn ([`SessionMemory::keep_system`]), so an unchanged prompt (one that
/// holds a long rolling summary, say) is not rebuilt and copied every turn. Dropped by any
/// change to a text item of a section it shows whole, in [`SessionMemory::apply`]. A searched
/// section's items are not looked at there: the next assembly compares the ids its searches
/// pick with those the prompt shows (items never change in place, and ids are not reused).
#[derive(Debug, Clone)]
pub(crate) struct KeptSystem {
    /// The agent instructions it starts with.
    pub(crate) instructions: String,
    /// Its token count.
    pub(crate) tokens: u64,
    /// The prompt; `None` while lent.
    pub(crate) system: Option<String>,
    /// The lent prompt's address and length: only that very string is taken back.
    pub(crate) lent: (usize, usize),
    /// The searched sections, in the order rendered, with the ids of the items shown of each.
    pub(crate) picked: Vec<(SectionKind, Vec<u64>)>,
    /// Where the note on hidden items starts (the prompt's length when there is none), and
    /// how many items it counts: the one part that changes while the items shown do not.
    pub(crate) note: (usize, usize),
}

impl KeptSystem {
    /// Whether the prompt shows this section's items by search rather than whole.
    fn searched(&self, section: SectionKind) -> Option<&[u64]> {
        self.picked.iter().find(|(kind, _)| *kind == section).map(|(_, ids)| ids.as_slice())
    }
}

/// The conversation the model was last shown, handed back by the engine when the turn
/// commits, so that the next assembly moves it into the next request and copies only what
/// changed: messages added since (at the end) and evicted since (at the front).
///
/// Invariant: `ids` ascend, and every `(ids[i], messages[i])` is a message item held in the
/// messages section, with no held message item between two of them missing (removals update
/// it in [`SessionMemory::apply`]; anything else drops it).
#[derive(Debug, Clone, Default)]
pub(crate) struct Shown {
    /// The items' ids.
    pub(crate) ids: VecDeque<u64>,
    /// The messages, or `None` while they are lent to a request.
    pub(crate) messages: Option<Conversation>,
    /// Entries dropped from the front of `ids` while the messages were lent.
    pub(crate) dropped_while_lent: usize,
}

impl Shown {
    /// Forgets removed items; `false` when they are not a prefix of the shown conversation
    /// (the conversation must then be rebuilt).
    fn forget(&mut self, removed: &BTreeSet<u64>) -> bool {
        let gone = self.ids.iter().take_while(|id| removed.contains(id)).count();
        let total = removed.iter().filter(|id| self.ids.binary_search(id).is_ok()).count();
        if gone != total {
            return false;
        }
        if gone > 0 {
            self.ids.drain(..gone);
            match &mut self.messages {
                Some(messages) => messages.drain_front(gone),
                None => self.dropped_while_lent += gone,
            }
        }
        true
    }
}

/// What changed in memory, for events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// An item was added to the section.
    Added(SectionKind),
    /// Items were evicted from the section.
    Evicted(SectionKind),
}

/// A session's memory: every section of the agent's profile, and what changed since it was
/// hydrated (to be persisted with the turn).
#[derive(Clone)]
pub struct SessionMemory {
    turn: u32,
    /// What the session's turns spent so far: USD and tokens.
    spent: (f64, u64),
    /// The agent the conversation was last handed to (none: the Runner's agent).
    active_agent: Option<String>,
    next_id: u64,
    /// Every section, sorted by kind (a flat list: a session kept in the cache costs a few
    /// hundred bytes for its sections, where a map of 13 entries cost about two kilobytes).
    sections: Vec<Section>,
    counter: Arc<dyn TokenCounter>,
    ops: Vec<MemoryOp>,
    changes: Vec<Change>,
    evicted: BTreeMap<SectionKind, Vec<MemoryItem>>,
    dirty: BTreeSet<SectionKind>,
    /// The conversation last shown to the model (see [`Shown`]); derived, never persisted.
    shown: Option<Box<Shown>>,
    /// The system prompt last assembled (see [`KeptSystem`]); derived, never persisted.
    pub(crate) system: Option<Box<KeptSystem>>,
    /// Ids of the messages section's items that are text, not messages (summaries, rendered in
    /// the system prompt), in order: assembly finds them without walking the conversation.
    message_texts: Vec<u64>,
    /// BM25 indexes of the searchable sections that passed their retrieval threshold (built by
    /// [`SessionMemory::index_searchable`], kept in step by [`SessionMemory::apply`]); derived,
    /// never persisted.
    indexes: Vec<(SectionKind, bm25::Index)>,
}

impl std::fmt::Debug for SessionMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: BTreeMap<_, _> = self.sections.iter().map(|s| (s.kind.as_str(), s.items.len())).collect();
        f.debug_struct("SessionMemory")
            .field("turn", &self.turn)
            .field("items", &sizes)
            .finish_non_exhaustive()
    }
}

impl PartialEq for SessionMemory {
    fn eq(&self, other: &Self) -> bool {
        self.turn == other.turn
            && self.spent == other.spent
            && self.active_agent == other.active_agent
            && self.next_id == other.next_id
            && self.sections == other.sections
    }
}

impl SessionMemory {
    /// Empty memory with every section of `profile`, counting tokens with `counter`.
    pub fn new(profile: &MemoryProfile, counter: Arc<dyn TokenCounter>) -> Self {
        // In the order of their kinds (sections are found by binary search).
        let sections: Vec<Section> =
            profile.each_section().map(|(k, config)| Section::new(k, config)).collect();
        debug_assert!(sections.is_sorted_by_key(|s| s.kind));
        Self {
            turn: 0,
            spent: (0.0, 0),
            active_agent: None,
            next_id: 1,
            sections,
            counter,
            ops: Vec::new(),
            changes: Vec::new(),
            evicted: BTreeMap::new(),
            dirty: BTreeSet::new(),
            shown: None,
            system: None,
            message_texts: Vec::new(),
            indexes: Vec::new(),
        }
    }

    /// Completed turns.
    pub fn turn(&self) -> u32 {
        self.turn
    }

    /// What the session's turns spent so far: USD (priced calls) and tokens.
    pub fn spent(&self) -> (f64, u64) {
        self.spent
    }

    /// Adds a turn's spending.
    pub fn add_spent(&mut self, cost_usd: f64, tokens: u64) {
        self.spent.0 += cost_usd;
        self.spent.1 += tokens;
    }

    /// Sets what the session has spent so far: USD and tokens.
    pub fn set_spent(&mut self, spent: (f64, u64)) {
        self.spent = spent;
    }

    /// The agent the conversation was last handed to; `None` for the Runner's own agent.
    pub fn active_agent(&self) -> Option<&str> {
        self.active_agent.as_deref()
    }

    /// Sets the agent holding the conversation (`None`: the Runner's own).
    pub fn set_active_agent(&mut self, agent: Option<String>) {
        self.active_agent = agent;
    }

    /// One section.
    pub fn section(&self, kind: SectionKind) -> &Section {
        // Every kind is inserted by `new`.
        &self.sections[self.position(kind)]
    }

    fn position(&self, kind: SectionKind) -> usize {
        self.sections.binary_search_by_key(&kind, |s| s.kind).unwrap_or_else(|at| at)
    }

    fn section_mut(&mut self, kind: SectionKind) -> Option<&mut Section> {
        let at = self.sections.binary_search_by_key(&kind, |s| s.kind).ok()?;
        self.sections.get_mut(at)
    }

    /// Every section, in the order of their kinds.
    pub fn sections(&self) -> impl Iterator<Item = &Section> {
        self.sections.iter()
    }

    /// The token counter the budgets are measured with.
    pub fn counter(&self) -> &Arc<dyn TokenCounter> {
        &self.counter
    }

    /// Begins a turn: empties the sections cleared each turn.
    pub fn begin_turn(&mut self) {
        let cleared: Vec<SectionKind> = self
            .sections
            .iter()
            .filter(|s| s.config.cleared_each_turn && !s.items.is_empty())
            .map(|s| s.kind)
            .collect();
        for kind in cleared {
            let ids = self.section(kind).items.iter().map(|i| i.id).collect();
            self.record(MemoryOp::Remove { section: kind, ids });
        }
    }

    /// Ends the current turn.
    pub fn end_turn(&mut self, turn: u32) {
        self.turn = turn;
    }

    /// Adds an item, evicting by the section's policy to make room. On error nothing changes.
    pub fn add(&mut self, kind: SectionKind, new: NewItem) -> Result<u64, MemoryError> {
        self.add_item(kind, new, None)
    }

    /// Adds `message` to the messages section, as [`SessionMemory::add`] does, when it is
    /// `messages[at]` of the [`TurnRecord`](crate::TurnRecord) whose `memory` will hold this
    /// change: the change names the message by that position (as the log writes it) instead
    /// of carrying a copy of it, so the message is copied once (into memory), not twice. The
    /// caller vouches for the position: the record's writer takes it as given.
    pub fn add_record_message(&mut self, message: Message, at: u32) -> Result<u64, MemoryError> {
        self.add_item(SectionKind::Messages, NewItem::message(message), Some(at))
    }

    /// [`SessionMemory::add`]; with `record_at`, see [`SessionMemory::add_record_message`].
    fn add_item(
        &mut self,
        kind: SectionKind,
        new: NewItem,
        record_at: Option<u32>,
    ) -> Result<u64, MemoryError> {
        let tokens = match &new.message {
            Some(m) => message_tokens(self.counter.as_ref(), m),
            None => self.counter.count(&new.content),
        };
        let section = self.section(kind);
        let config = section.config;
        let limit = config.budget_tokens.limit();
        if let Some(budget) = limit
            && tokens > budget
        {
            return Err(MemoryError::ItemTooLarge { section: kind, budget, needed: tokens });
        }
        // Choose victims without touching the section, so a refusal changes nothing. Once a
        // section must evict, it evicts down to its low-water mark, so evictions (and their
        // summaries) come in batches rather than on every addition.
        let mut victims = BTreeSet::new();
        let (mut used, mut count) = (section.tokens, section.items.len());
        let cap = config.max_items.map_or(usize::MAX, |m| m.get() as usize);
        let over = |used: u64| limit.is_some_and(|budget| used + tokens > budget);
        let target = limit.map_or(u64::MAX, low_water);
        let evicting = over(used);
        if (evicting && used + tokens > target) || count >= cap {
            let mut order = section.eviction_order();
            while (evicting && used + tokens > target) || count >= cap {
                let Some(victim) = order.next() else { break };
                used -= victim.tokens;
                count -= 1;
                victims.insert(victim.id);
            }
        }
        if over(used) || count >= cap {
            return Err(MemoryError::SectionFull {
                section: kind,
                used: section.tokens,
                budget: limit.unwrap_or(0),
                needed: tokens,
            });
        }
        if !victims.is_empty() {
            let gone = self
                .section(kind)
                .items
                .iter()
                .filter(|i| victims.contains(&i.id))
                .cloned()
                .collect::<Vec<_>>();
            if config.summarize {
                self.evicted.entry(kind).or_default().extend(gone.into_iter().filter(|i| !i.summary));
            }
            self.changes.push(Change::Evicted(kind));
            self.record(MemoryOp::Remove { section: kind, ids: victims.into_iter().collect() });
        }
        let mut item = MemoryItem {
            id: self.next_id,
            content: new.content,
            tokens,
            turn: self.turn + 1,
            priority: new.priority,
            message: new.message,
            metadata: new.metadata,
            uses: 0,
            last_used: 0,
            summary: new.summary,
            message_at: None,
        };
        let id = item.id;
        self.changes.push(Change::Added(kind));
        // The change as logged: the message named by its position in the record (the item is
        // copied without it: a message item's text and metadata are empty).
        let logged = match (record_at, item.message.take()) {
            (Some(at), Some(message)) => {
                let logged = MemoryItem { message_at: Some(at), ..item.clone() };
                item.message = Some(message);
                Some(MemoryOp::Add { section: kind, item: logged })
            }
            (_, message) => {
                item.message = message;
                None
            }
        };
        self.record_as(MemoryOp::Add { section: kind, item }, logged);
        Ok(id)
    }

    /// Removes items from a section.
    pub fn remove(&mut self, kind: SectionKind, ids: Vec<u64>) {
        if !ids.is_empty() {
            self.record(MemoryOp::Remove { section: kind, ids });
        }
    }

    /// Marks items as put in front of the model this turn (what `lru` and `lfu` go by).
    pub fn mark_used(&mut self, kind: SectionKind, ids: Vec<u64>) {
        let policy = self.section(kind).config.eviction;
        if !ids.is_empty() && matches!(policy, Eviction::Lru | Eviction::Lfu) {
            let turn = self.turn + 1;
            self.record(MemoryOp::Use { section: kind, ids, turn });
        }
    }

    /// [`SessionMemory::mark_used`] for the items at `positions` of the section, each once and
    /// in order, as assembly knows them: the same change and the same logged op, without
    /// looking each item up by id again or copying the ids for the log.
    pub(crate) fn mark_used_at(
        &mut self,
        kind: SectionKind,
        positions: impl ExactSizeIterator<Item = usize>,
    ) {
        let turn = self.turn + 1;
        let Some(section) = self.section_mut(kind) else { return };
        if positions.len() == 0 || !matches!(section.config.eviction, Eviction::Lru | Eviction::Lfu) {
            return;
        }
        let mut ids = Vec::with_capacity(positions.len());
        for at in positions {
            let Some(item) = section.items.get_mut(at) else { continue };
            item.uses += 1;
            item.last_used = turn;
            ids.push(item.id);
        }
        match section.config.persistence {
            Persistence::Streaming => self.ops.push(MemoryOp::Use { section: kind, ids, turn }),
            Persistence::Snapshot => {
                self.dirty.insert(kind);
            }
            _ => {}
        }
    }

    /// Applies `op` and remembers it for persistence (by the section's persistence mode).
    fn record(&mut self, op: MemoryOp) {
        self.record_as(op, None);
    }

    /// [`SessionMemory::record`], remembering `logged` for persistence instead of a copy of
    /// `op` when given (the same change, written differently). Only a streamed section's
    /// changes are kept, so only they are copied.
    fn record_as(&mut self, op: MemoryOp, logged: Option<MemoryOp>) {
        let kind = op_section(&op);
        match self.section(kind).config.persistence {
            Persistence::Streaming => {
                let logged = logged.unwrap_or_else(|| op.clone());
                self.apply(op);
                self.ops.push(logged);
            }
            Persistence::Snapshot => {
                self.apply(op);
                self.dirty.insert(kind);
            }
            _ => self.apply(op),
        }
    }

    /// A text item of `section` was added or removed: the kept system prompt is dropped when it
    /// shows the section whole. A searched section's picks are compared by the next assembly
    /// instead (an added item is shown only once picked, a removed one is never picked again).
    fn text_changed(&mut self, section: SectionKind) {
        if self.system.as_ref().is_none_or(|kept| kept.searched(section).is_none()) {
            self.system = None;
        }
    }

    /// Applies a change without recording it (hydration replays the log with this).
    pub fn apply(&mut self, op: MemoryOp) {
        match op {
            MemoryOp::Add { section, item } => {
                self.next_id = self.next_id.max(item.id + 1);
                if item.message.is_none() {
                    self.text_changed(section);
                }
                if section == SectionKind::Messages && item.message.is_none() {
                    self.message_texts.push(item.id);
                }
                if let Some(at) = self.indexes.iter().position(|(kind, _)| *kind == section) {
                    // An index ranks ties by id, so it serves only items kept in id order (always
                    // so, as ids grow; a log that says otherwise gets a search from scratch).
                    if self.section(section).items.last().is_some_and(|last| last.id >= item.id) {
                        self.indexes.swap_remove(at);
                    } else {
                        self.indexes[at].1.add(item.id, &item.text());
                    }
                }
                if let Some(s) = self.section_mut(section) {
                    s.push(item);
                }
            }
            MemoryOp::Remove { section, ids } => {
                let ids: BTreeSet<u64> = ids.into_iter().collect();
                if section == SectionKind::Messages {
                    if let Some(shown) = &mut self.shown
                        && !shown.forget(&ids)
                    {
                        self.shown = None;
                    }
                    self.message_texts.retain(|id| !ids.contains(id));
                }
                if let Some(s) = self.section_mut(section) {
                    let gone = s.remove(&ids);
                    if gone.iter().any(|i| i.message.is_none()) {
                        self.text_changed(section);
                    }
                    if let Some((_, index)) = self.indexes.iter_mut().find(|(kind, _)| *kind == section) {
                        for item in &gone {
                            index.remove(item.id, &item.text());
                        }
                    }
                }
            }
            MemoryOp::Use { section, mut ids, turn } => {
                if let Some(s) = self.section_mut(section) {
                    // Each item once, found by id: O(ids × log items), not a pass over the
                    // section (a searched section marks only what it showed).
                    ids.sort_unstable();
                    ids.dedup();
                    for id in ids {
                        if let Some(at) = s.position(id) {
                            let item = &mut s.items[at];
                            item.uses += 1;
                            item.last_used = turn;
                        }
                    }
                }
            }
            MemoryOp::Replace { section, items } => {
                self.system = None;
                let next = items.iter().map(|i| i.id + 1).max().unwrap_or(0);
                if section == SectionKind::Messages {
                    self.shown = None;
                    self.message_texts = items.iter().filter(|i| i.message.is_none()).map(|i| i.id).collect();
                }
                self.indexes.retain(|(kind, _)| *kind != section);
                if let Some(s) = self.section_mut(section) {
                    s.replace(items);
                    self.next_id = self.next_id.max(next);
                }
            }
        }
    }

    /// The changes to persist for this turn: streaming sections' operations, then a whole
    /// `Replace` for every snapshot section that changed. Clears the pending changes.
    pub fn take_ops(&mut self) -> Vec<MemoryOp> {
        let mut ops = std::mem::take(&mut self.ops);
        for kind in std::mem::take(&mut self.dirty) {
            ops.push(MemoryOp::Replace { section: kind, items: self.section(kind).items.clone() });
        }
        ops
    }

    /// Takes the section changes since the last call (for memory events).
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Takes the items evicted since the last call, by section (for summaries).
    pub fn take_evicted(&mut self) -> BTreeMap<SectionKind, Vec<MemoryItem>> {
        std::mem::take(&mut self.evicted)
    }

    /// The items of every persisted section, for a checkpoint.
    pub fn persisted_items(&self) -> BTreeMap<SectionKind, Vec<MemoryItem>> {
        self.sections
            .iter()
            .filter(|s| s.config.persistence != Persistence::None && !s.items.is_empty())
            .map(|s| (s.kind, s.items.clone()))
            .collect()
    }

    /// Restores a checkpoint (see [`SessionMemory::persisted_items`]).
    pub fn restore(&mut self, turn: u32, items: BTreeMap<SectionKind, Vec<MemoryItem>>) {
        self.turn = turn;
        for (section, items) in items {
            self.apply(MemoryOp::Replace { section, items });
        }
    }

    /// The items of `section` that are text rather than messages (rendered in the system
    /// prompt), in order: for the messages section without walking its conversation.
    pub(crate) fn text_items<'a>(
        &'a self,
        section: &'a Section,
    ) -> impl DoubleEndedIterator<Item = &'a MemoryItem> + 'a {
        let messages = section.kind == SectionKind::Messages;
        let texts = messages.then(|| self.message_texts.iter().filter_map(|id| section.item(*id)));
        let others = (!messages).then(|| section.items.iter().filter(|i| i.message.is_none()));
        texts.into_iter().flatten().chain(others.into_iter().flatten())
    }

    /// Builds the search index of every searchable section (other than the messages) holding
    /// more than `threshold` items that has none yet; once built, an index is kept in step with
    /// its section's items, so each search costs the postings of its query terms.
    pub(crate) fn index_searchable(&mut self, threshold: usize) {
        for section in &self.sections {
            if section.config.searchable
                && section.kind != SectionKind::Messages
                && section.items.len() > threshold
                && !self.indexes.iter().any(|(kind, _)| *kind == section.kind)
                && section.items.is_sorted_by(|a, b| a.id < b.id)
            {
                let index = bm25::Index::of(section.items.iter().map(|i| (i.id, i.text())));
                self.indexes.push((section.kind, index));
            }
        }
    }

    /// The positions of the `k` items of `section` most relevant to `query`, best first: BM25
    /// as [`bm25::top_k`] ranks the items' texts, through the section's index when it has one.
    pub(crate) fn search(&self, section: &Section, query: &str, k: usize) -> Vec<usize> {
        match self.indexes.iter().find(|(kind, _)| *kind == section.kind) {
            Some((_, index)) if index.len() == section.items.len() => {
                // The picked often follow each other (ties rank by id): each is looked for
                // right after the one before first.
                let mut next = 0;
                index.top_k(query, k, |id| {
                    let at = match section.items.get(next) {
                        Some(item) if item.id == id => next,
                        _ => section.position(id)?,
                    };
                    next = at + 1;
                    Some(at)
                })
            }
            _ => {
                let texts: Vec<_> = section.items.iter().map(|i| i.text()).collect();
                bm25::top_k(query, texts.iter().map(|t| t.as_ref()), k)
            }
        }
    }

    /// How many items of `section` are text rather than messages.
    pub(crate) fn text_count(&self, section: &Section) -> usize {
        if section.kind == SectionKind::Messages {
            self.message_texts.len()
        } else {
            section.items.iter().filter(|i| i.message.is_none()).count()
        }
    }

    /// Whether the conversation last shown is lent to a request now.
    pub(crate) fn shown_is_lent(&self) -> bool {
        self.shown.as_ref().is_some_and(|s| s.messages.is_none())
    }

    /// Takes the conversation last shown to the model, to be lent to the next request; `None`
    /// when there is none, or it is lent already (it stays lent).
    pub(crate) fn lend_shown(&mut self) -> Option<(VecDeque<u64>, Conversation)> {
        let shown = self.shown.as_mut()?;
        let messages = shown.messages.take()?;
        Some((std::mem::take(&mut shown.ids), messages))
    }

    /// Records what was lent to a request: the conversation with these ids (see
    /// [`SessionMemory::keep_shown`]). Short conversations are not kept.
    pub(crate) fn lent(&mut self, ids: VecDeque<u64>) {
        self.shown = (ids.len() >= SHOWN_MIN_MESSAGES)
            .then(|| Box::new(Shown { ids, messages: None, dropped_while_lent: 0 }));
    }

    /// Takes back the system prompt lent to the turn's request by assembly, so the next turn's
    /// assembly reuses it when nothing it renders changed. Anything else (a prompt a pattern
    /// rebuilt, say) is dropped.
    pub fn keep_system(&mut self, system: String) {
        if let Some(kept) = &mut self.system
            && kept.system.is_none()
            && kept.lent == (system.as_ptr() as usize, system.len())
        {
            kept.system = Some(system);
        }
    }

    /// Hands back the conversation of the request the turn ended with, so that the next turn's
    /// assembly copies only what changed. `lent` is how many of its leading messages the
    /// assembly lent (the turn's user message included), unchanged; the rest are the turn's
    /// new messages, kept as far as they match the messages section's items that follow (a
    /// message memory refused ends what is kept). A hand-back that does not fit what was lent
    /// (its length, its first and last message) is dropped, and the next assembly copies the
    /// conversation whole.
    pub fn keep_shown(&mut self, messages: impl Into<Conversation>, lent: usize) {
        let mut messages = messages.into();
        let Some(Shown { mut ids, messages: None, dropped_while_lent }) = self.shown.take().map(|s| *s)
        else {
            return;
        };
        if lent > messages.len() || dropped_while_lent > lent || ids.len() != lent - dropped_while_lent {
            return;
        }
        messages.drain_front(dropped_while_lent);
        let lent = ids.len();
        let section = self.section(SectionKind::Messages);
        let (Some(&first), Some(&last)) = (ids.front(), ids.back()) else { return };
        let same = |id: u64, message: &Message| {
            section.item(id).and_then(|i| i.message.as_ref()).is_some_and(|m| m == message)
        };
        if !same(first, &messages[0]) || !same(last, &messages[lent - 1]) {
            return;
        }
        let Some(at) = section.position(last) else { return };
        let mut next = lent;
        for item in &section.items[at + 1..] {
            let Some(message) = &item.message else { continue };
            if messages.get(next) != Some(message) {
                break;
            }
            ids.push_back(item.id);
            next += 1;
        }
        messages.truncate(next);
        if messages.len() >= SHOWN_MIN_MESSAGES {
            self.shown = Some(Box::new(Shown { ids, messages: Some(messages), dropped_while_lent: 0 }));
        }
    }

    /// The conversation held in the messages section (summaries excluded), oldest first.
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.section(SectionKind::Messages).items.iter().filter_map(|i| i.message.as_ref())
    }

    /// About how many heap bytes this memory holds: its sections and items as laid out (spare
    /// capacity included), their text at four bytes per token (the size the token estimate
    /// is made from), the conversation last shown when it is kept, and the search indexes.
    /// Costs O(sections), not O(items): the session cache bounds its size with it on every turn.
    pub fn approx_heap_bytes(&self) -> usize {
        const BYTES_PER_TOKEN: u64 = 4;
        let text =
            |tokens: u64| usize::try_from(tokens.saturating_mul(BYTES_PER_TOKEN)).unwrap_or(usize::MAX);
        let sections: usize = self
            .sections
            .iter()
            .map(|s| s.items.capacity() * std::mem::size_of::<MemoryItem>() + text(s.tokens))
            .sum();
        let shown = self.shown.as_ref().map_or(0, |shown| {
            std::mem::size_of::<Shown>()
                + shown.ids.capacity() * std::mem::size_of::<u64>()
                + shown
                    .messages
                    .as_ref()
                    .map_or(0, |m| m.capacity() * std::mem::size_of::<Message>() + text(m.estimated_tokens()))
        });
        std::mem::size_of::<Self>()
            + self.sections.capacity() * std::mem::size_of::<Section>()
            + sections
            + self.message_texts.capacity() * std::mem::size_of::<u64>()
            + self.active_agent.as_ref().map_or(0, String::capacity)
            + shown
            + self.system.as_ref().map_or(0, |kept| {
                std::mem::size_of::<KeptSystem>()
                    + kept.instructions.capacity()
                    + kept.system.as_ref().map_or(0, String::capacity)
                    + kept.picked.iter().map(|(_, ids)| 32 + ids.capacity() * 8).sum::<usize>()
            })
            + self.indexes.capacity() * std::mem::size_of::<(SectionKind, bm25::Index)>()
            + self.indexes.iter().map(|(_, index)| index.approx_heap_bytes()).sum::<usize>()
    }

    /// Makes room in each section for the items `ops` add, before they are replayed: a session
    /// read from its log then allocates each item list once, rather than growing it by doubling
    /// (each step a copy, each earlier list left as a hole between longer-lived allocations).
    /// A section that `ops` replace is left as it is (a `Replace` brings a list of its own).
    pub(crate) fn reserve_adds<'a>(&mut self, ops: impl IntoIterator<Item = &'a MemoryOp>) {
        let mut adds: Vec<Option<usize>> = vec![Some(0); self.sections.len()];
        for op in ops {
            let (MemoryOp::Add { section, .. } | MemoryOp::Replace { section, .. }) = op else { continue };
            if let Ok(at) = self.sections.binary_search_by_key(section, |s| s.kind) {
                adds[at] = adds[at].filter(|_| matches!(op, MemoryOp::Add { .. })).map(|n| n + 1);
            }
        }
        for (section, adds) in self.sections.iter_mut().zip(adds) {
            section.items.reserve_exact(adds.unwrap_or(0));
        }
    }

    /// Gives back the spare capacity of the item lists (a session replayed from its log grew
    /// them an item at a time, up to twice what they hold), before the memory is kept between
    /// turns.
    pub fn shrink_to_fit(&mut self) {
        for section in &mut self.sections {
            section.items.shrink_to_fit();
        }
        self.message_texts.shrink_to_fit();
    }
}

fn op_section(op: &MemoryOp) -> SectionKind {
    match op {
        MemoryOp::Add { section, .. }
        | MemoryOp::Remove { section, .. }
        | MemoryOp::Use { section, .. }
        | MemoryOp::Replace { section, .. } => *section,
    }
}

/// Tokens a message costs in a request.
pub fn message_tokens(counter: &dyn TokenCounter, message: &Message) -> u64 {
    let calls = match message {
        Message::Assistant { tool_calls, .. } => {
            // `to_string` writes the JSON straight into a buffer (`Display` goes through a
            // formatter, several times slower); the text is the same.
            let json = |v: &serde_json::Value| serde_json::to_string(v).unwrap_or_else(|_| v.to_string());
            tool_calls.iter().map(|c| counter.count(&c.name) + counter.count(&json(&c.arguments))).sum()
        }
        _ => 0,
    };
    MESSAGE_OVERHEAD_TOKENS + counter.count(message.content()) + calls
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use kaos_agent::TokenBudget;
    use kaos_providers::Estimator;
    use proptest::prelude::*;

    use super::*;

    fn profile(kind: SectionKind, budget: u32, eviction: Eviction, max_items: Option<u32>) -> MemoryProfile {
        let mut config = SectionConfig::default_for(kind);
        config.budget_tokens = TokenBudget::Limited(NonZeroU32::new(budget).unwrap());
        config.eviction = eviction;
        config.max_items = max_items.and_then(NonZeroU32::new);
        config.summarize = false;
        MemoryProfile::default().with_section(kind, config)
    }

    fn item_with_id(id: u64) -> MemoryItem {
        MemoryItem {
            id,
            content: String::new(),
            tokens: 0,
            turn: 0,
            priority: 0,
            message: None,
            metadata: BTreeMap::new(),
            uses: 0,
            last_used: 0,
            summary: false,
            message_at: None,
        }
    }

    proptest! {
        /// The position of an id is where a linear search finds it: ids in order with any
        /// gaps, or (never made by this crate) out of order.
        #[test]
        fn a_position_is_where_the_item_is(
            gaps in proptest::collection::vec(1u64..50, 0..200),
            shuffled in any::<bool>(),
            probes in proptest::collection::vec(0u64..6_000, 0..40),
        ) {
            let mut ids: Vec<u64> = gaps.iter().scan(0, |id, gap| { *id += gap; Some(*id) }).collect();
            if shuffled {
                ids.reverse();
            }
            let mut section = Section::new(SectionKind::Actions, SectionConfig::default_for(SectionKind::Actions));
            section.items = ids.iter().map(|&id| item_with_id(id)).collect();
            for id in ids.iter().copied().chain(probes) {
                prop_assert_eq!(section.position(id), ids.iter().position(|&i| i == id));
            }
        }
    }

    /// A reference model of one section: (id, tokens, priority, uses, last_used), oldest first.
    #[derive(Debug, Clone, Default)]
    struct Model {
        items: Vec<(u64, u64, i32, u32, u32)>,
    }

    impl Model {
        fn victim(&self, policy: Eviction) -> Option<usize> {
            let min_by = |key: fn(&(u64, u64, i32, u32, u32)) -> i64| {
                (0..self.items.len()).min_by_key(|&i| (key(&self.items[i]), i))
            };
            match policy {
                Eviction::Fifo => (!self.items.is_empty()).then_some(0),
                Eviction::Lifo => self.items.len().checked_sub(1),
                Eviction::Lru => min_by(|i| i64::from(i.4)),
                Eviction::Lfu => min_by(|i| i64::from(i.3)),
                Eviction::Priority => min_by(|i| i64::from(i.2)),
                _ => None,
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Add { len: usize, priority: i32 },
        Use { picks: Vec<usize> },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (1usize..400, -3i32..3).prop_map(|(len, priority)| Step::Add { len, priority }),
            1 => prop::collection::vec(0usize..20, 0..4).prop_map(|picks| Step::Use { picks }),
        ]
    }

    fn policy() -> impl Strategy<Value = Eviction> {
        prop::sample::select(vec![
            Eviction::None,
            Eviction::Fifo,
            Eviction::Lifo,
            Eviction::Lru,
            Eviction::Lfu,
            Eviction::Priority,
            Eviction::Refuse,
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Marking items used by position (as assembly does) is the same change, and logs the
        /// same op, as marking them by id, under every eviction policy and persistence mode.
        #[test]
        fn marking_used_by_position_is_marking_by_id(
            policy in policy(),
            persistence in prop::sample::select(vec![Persistence::Streaming, Persistence::Snapshot, Persistence::None]),
            items in 0usize..30,
            picks in prop::collection::btree_set(0usize..40, 0..12),
        ) {
            let kind = SectionKind::Findings;
            let mut profile = profile(kind, 100_000, policy, None);
            let mut config = profile.section(kind);
            config.persistence = persistence;
            profile = profile.with_section(kind, config);
            let mut by_id = SessionMemory::new(&profile, Arc::new(Estimator));
            for i in 0..items {
                by_id.add(kind, NewItem::text(format!("item {i}"))).unwrap();
            }
            by_id.take_ops();
            let mut by_position = by_id.clone();
            let positions: Vec<usize> = picks.into_iter().filter(|&p| p < items).collect();
            let ids = positions.iter().map(|&p| by_id.section(kind).items()[p].id).collect();
            by_id.mark_used(kind, ids);
            by_position.mark_used_at(kind, positions.into_iter());
            prop_assert_eq!(by_position.section(kind), by_id.section(kind));
            prop_assert_eq!(by_position.take_ops(), by_id.take_ops());
            prop_assert_eq!(&by_position.dirty, &by_id.dirty);
        }

        /// After any sequence of adds, no section exceeds its budget or item cap; a policy that
        /// gives nothing up refuses instead (leaving the section unchanged); and what is
        /// evicted is exactly what the policy names, in order.
        #[test]
        fn budgets_hold_and_eviction_follows_the_policy(
            policy in policy(),
            budget in 50u32..600,
            max_items in prop::option::of(1u32..6),
            steps in prop::collection::vec(step(), 1..60),
        ) {
            let kind = SectionKind::Findings;
            let mut memory = SessionMemory::new(&profile(kind, budget, policy, max_items), Arc::new(Estimator));
            let mut model = Model::default();
            for (turn, step) in steps.into_iter().enumerate() {
                match step {
                    Step::Use { picks } => {
                        let ids: Vec<u64> = picks.iter().filter_map(|p| model.items.get(*p).map(|i| i.0)).collect();
                        memory.turn = turn as u32;
                        memory.mark_used(kind, ids.clone());
                        if matches!(policy, Eviction::Lru | Eviction::Lfu) {
                            for item in model.items.iter_mut().filter(|i| ids.contains(&i.0)) {
                                item.3 += 1;
                                item.4 = turn as u32 + 1;
                            }
                        }
                    }
                    Step::Add { len, priority } => {
                        let before = memory.section(kind).clone();
                        let tokens = Estimator.count(&"x".repeat(len));
                        // Expected victims, from the model.
                        let mut expected = model.clone();
                        let budget = u64::from(budget);
                        let used = |m: &Model| m.items.iter().map(|i| i.1).sum::<u64>();
                        let cap = max_items.map_or(usize::MAX, |m| m as usize);
                        let evicting = used(&expected) + tokens > budget;
                        let low = budget - budget / 4;
                        while tokens <= budget
                            && ((evicting && used(&expected) + tokens > low) || expected.items.len() >= cap)
                        {
                            match expected.victim(policy) {
                                Some(v) => { expected.items.remove(v); }
                                None => break,
                            }
                        }
                        let fits = tokens <= budget && used(&expected) + tokens <= budget && expected.items.len() < cap;
                        let result = memory.add(kind, NewItem::text("x".repeat(len)).with_priority(priority));
                        match result {
                            Ok(id) => {
                                prop_assert!(fits, "added although the model says it cannot fit");
                                expected.items.push((id, tokens, priority, 0, 0));
                                model = expected;
                            }
                            Err(_) => {
                                prop_assert!(!fits, "refused although the model says it fits");
                                prop_assert_eq!(memory.section(kind), &before);
                            }
                        }
                    }
                }
                let section = memory.section(kind);
                prop_assert!(section.tokens() <= u64::from(budget));
                prop_assert_eq!(section.tokens(), section.items().iter().map(|i| i.tokens).sum::<u64>());
                if let Some(m) = max_items {
                    prop_assert!(section.items().len() <= m as usize);
                }
                let ids: Vec<u64> = section.items().iter().map(|i| i.id).collect();
                let expected: Vec<u64> = model.items.iter().map(|i| i.0).collect();
                prop_assert_eq!(ids, expected);
            }
        }

        /// Replaying the recorded changes rebuilds the same memory (what hydration relies on).
        #[test]
        fn replaying_recorded_ops_rebuilds_the_memory(
            policy in policy(),
            steps in prop::collection::vec(step(), 1..40),
        ) {
            let kind = SectionKind::Actions;
            let profile = profile(kind, 300, policy, None);
            let mut live = SessionMemory::new(&profile, Arc::new(Estimator));
            for step in steps {
                match step {
                    Step::Add { len, priority } => { let _ = live.add(kind, NewItem::text("y".repeat(len)).with_priority(priority)); }
                    Step::Use { picks } => {
                        let ids = picks.iter().filter_map(|p| live.section(kind).items().get(*p).map(|i| i.id)).collect();
                        live.mark_used(kind, ids);
                    }
                }
            }
            let mut replayed = SessionMemory::new(&profile, Arc::new(Estimator));
            for op in live.take_ops() {
                replayed.apply(op);
            }
            prop_assert_eq!(replayed.section(kind), live.section(kind));
        }
    }

    #[test]
    fn an_item_larger_than_the_budget_is_refused_whatever_the_policy() {
        let mut memory =
            SessionMemory::new(&profile(SectionKind::Lessons, 10, Eviction::Fifo, None), Arc::new(Estimator));
        let err = memory.add(SectionKind::Lessons, NewItem::text("z".repeat(100))).unwrap_err();
        assert_eq!(err, MemoryError::ItemTooLarge { section: SectionKind::Lessons, budget: 10, needed: 25 });
    }

    #[test]
    fn sections_cleared_each_turn_start_empty_and_are_never_persisted() {
        let mut memory = SessionMemory::new(&MemoryProfile::default(), Arc::new(Estimator));
        memory.add(SectionKind::Working, NewItem::text("scratch")).unwrap();
        assert_eq!(memory.section(SectionKind::Working).items().len(), 1);
        memory.begin_turn();
        assert!(memory.section(SectionKind::Working).items().is_empty());
        assert!(memory.take_ops().is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]

        /// A section's kept index searches exactly like scoring its items from scratch, through
        /// additions, evictions (by any policy), removals, restores and clones.
        #[test]
        fn the_kept_index_searches_like_scoring_from_scratch(
            budget in 30u32..300,
            eviction in policy(),
            steps in prop::collection::vec(
                (0u8..10, prop::collection::vec(prop::sample::select(vec!["add", "a", "b", "2", "3", "Sum", "sum", "école", "x"]), 1..8), 0usize..6),
                1..120,
            ),
        ) {
            let kind = SectionKind::Actions;
            let profile = profile(kind, budget, eviction, None);
            let mut memory = SessionMemory::new(&profile, Arc::new(Estimator));
            for (what, words, k) in steps {
                let text = words.join(" ");
                match what {
                    0 => {
                        let ids: Vec<u64> = memory.section(kind).items().iter().take(2).map(|i| i.id).collect();
                        memory.remove(kind, ids);
                    }
                    1 => {
                        let items = memory.persisted_items();
                        let mut restored = SessionMemory::new(&profile, Arc::new(Estimator));
                        restored.restore(memory.turn(), items);
                        memory = restored;
                    }
                    2 => memory = memory.clone(),
                    3 => {
                        let ids = memory.section(kind).items().iter().map(|i| i.id).take(k).collect();
                        memory.mark_used(kind, ids);
                    }
                    _ => {
                        let _ = memory.add(kind, NewItem::text(text.clone()));
                    }
                }
                memory.index_searchable(3);
                let section = memory.section(kind);
                let texts: Vec<String> = section.items().iter().map(|i| i.text().into_owned()).collect();
                let expected = bm25::top_k(&text, texts.iter().map(String::as_str), k);
                prop_assert_eq!(memory.search(section, &text, k), expected);
                if section.items().len() > 3 {
                    let indexed = memory.indexes.iter().find(|(s, _)| *s == kind).map(|(_, i)| i.len());
                    prop_assert_eq!(indexed, Some(section.items().len()));
                }
            }
        }
    }
}

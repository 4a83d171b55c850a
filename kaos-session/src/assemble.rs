//! Context assembly: what of a session's memory goes in front of the model this turn.

use kaos_agent::{Eviction, MemoryProfile, SectionKind};
use kaos_providers::{Conversation, Message};

use super::memory::{KeptSystem, MemoryError, Section, SessionMemory};

/// The tool the model is pointed at for content left out of the context.
pub const MEMORY_SEARCH_TOOL: &str = "kaos-memory-search";

/// Room kept for the note about items left out (it is about 40 tokens).
const HANDLE_RESERVE_TOKENS: u64 = 64;

/// The context of one model request.
#[derive(Debug, Clone, PartialEq)]
pub struct Assembly {
    /// Instructions followed by the rendered sections.
    pub system: String,
    /// The conversation, starting at a user message and ending with the current one.
    pub messages: Conversation,
    /// Sections chosen by relevance: (section, items shown, items held).
    pub searched: Vec<(SectionKind, usize, usize)>,
    /// Items of searchable sections that are held but not shown.
    pub hidden_searchable: usize,
    /// Tokens of the whole context, as counted.
    pub tokens: u64,
}

/// One trimmable piece of context.
struct Unit {
    kind: SectionKind,
    /// Rendered in the system prompt (under its section's header), not as a message.
    in_system: bool,
    priority: u32,
    id: u64,
    /// Where the item is in its section's items.
    index: usize,
    tokens: u64,
}

/// Assembles the context for the current turn, whose user message is already the last user
/// message of the messages section. Guarantees `tokens <= profile.context_budget_tokens`, or
/// fails with [`MemoryError::ContextTooLarge`] when the instructions and the current message
/// alone do not fit. Marks what it shows as used (for `lru`/`lfu` sections).
///
/// Cost: when every in-context section fits whole and none is searched (the common case: the
/// context budget is larger than the sections'), O(items rendered in the system prompt +
/// messages added or evicted since the last turn): the fit is decided from the sections'
/// token totals, and the conversation the model was last shown — handed back by the engine
/// with [`SessionMemory::keep_shown`] — is moved into this one, so only new messages are
/// copied. Otherwise one pass over the in-context items (their token counts are cached on the
/// items, never recounted), a sort only when something must be trimmed, and one copy of each
/// message shown.
pub fn assemble(
    memory: &mut SessionMemory,
    profile: &MemoryProfile,
    top_k: usize,
    instructions: &str,
    query: &str,
) -> Result<Assembly, MemoryError> {
    memory.index_searchable(profile.retrieval_threshold.get() as usize);
    match assemble_whole(memory, profile, top_k, instructions, query) {
        Some(assembly) => Ok(assembly),
        None => assemble_by_priority(memory, profile, top_k, instructions, query),
    }
}

/// The context when every in-context section fits whole — a searched section with the items
/// it picks — (`None` otherwise): the same result as [`assemble_by_priority`], without a pass
/// over the messages.
fn assemble_whole(
    memory: &mut SessionMemory,
    profile: &MemoryProfile,
    top_k: usize,
    instructions: &str,
    query: &str,
) -> Option<Assembly> {
    let counter = memory.counter().clone();
    let budget = u64::from(profile.context_budget_tokens.get());
    let threshold = profile.retrieval_threshold.get() as usize;
    // The system prompt assembled last turn, if handed back since and nothing it renders changed.
    let kept = memory.system.take();
    let messages = memory.section(SectionKind::Messages);
    let current = messages.items().iter().rposition(|i| matches!(i.message, Some(Message::User { .. })));
    let pinned_from = current.map_or(u64::MAX, |p| messages.items()[p].id);
    let mut total = counter.count(instructions);
    // Each section shown, with the positions of the items a search picked (`None`: all).
    let mut shown: Vec<(&Section, Option<Vec<usize>>)> = Vec::new();
    let mut searched = Vec::new();
    let mut hidden_searchable = 0;
    for section in memory.sections() {
        let (config, items) = (section.config(), section.items());
        if !config.in_context || items.is_empty() {
            continue;
        }
        let kind = section.kind();
        let texts = memory.text_count(section);
        // Messages outside the messages section, or a text item after the current message
        // (pinned, so its header is not counted): the general path decides.
        if (kind != SectionKind::Messages && texts != items.len())
            || (kind == SectionKind::Messages
                && memory.text_items(section).next_back().is_some_and(|i| i.id >= pinned_from))
        {
            return None;
        }
        if config.searchable && items.len() > threshold && kind != SectionKind::Messages {
            let mut picked = memory.search(section, query, top_k);
            picked.sort_unstable();
            searched.push((kind, picked.len(), items.len()));
            hidden_searchable += items.len() - picked.len();
            total += picked.iter().map(|&i| items[i].tokens + 1).sum::<u64>();
            if !picked.is_empty() {
                total += counter.count(&header(kind)) + 1;
            }
            shown.push((section, Some(picked)));
            continue;
        }
        total += section.tokens() + texts as u64;
        if texts > 0 {
            total += counter.count(&header(kind)) + 1;
        }
        shown.push((section, None));
    }
    if total + if hidden_searchable > 0 { HANDLE_RESERVE_TOKENS } else { 0 } > budget {
        return None;
    }

    // The system prompt: sections by priority, their text items in order. It depends only on
    // the instructions, the text items of the sections shown whole and the items the searches
    // picked, so the one kept from last turn is reused when they are unchanged (memory drops it
    // when a text item it may render changes); only the note on hidden items is written anew
    // when their number changed.
    shown.sort_by_key(|(s, _)| (std::cmp::Reverse(s.config().priority), s.kind()));
    let same_picks = |kept: &[(SectionKind, Vec<u64>)]| {
        let mut now = shown.iter().filter_map(|(section, picked)| Some((*section, picked.as_ref()?)));
        kept.len() == searched.len()
            && kept.iter().all(|(kind, ids)| {
                now.next().is_some_and(|(section, picked)| {
                    section.kind() == *kind
                        && ids.len() == picked.len()
                        && ids.iter().zip(picked).all(|(&id, &at)| section.items()[at].id == id)
                })
            })
    };
    let mut reused = None;
    let mut system = match kept.map(|kept| *kept) {
        Some(KeptSystem {
            instructions: kept_instructions,
            tokens,
            system: Some(mut system),
            picked,
            note,
            ..
        }) if kept_instructions == instructions && same_picks(&picked) => {
            let tokens = (note.1 == hidden_searchable).then_some(tokens);
            if tokens.is_none() {
                system.truncate(note.0);
            }
            reused = Some((kept_instructions, picked, tokens, note.0));
            system
        }
        _ => {
            let length: usize = shown
                .iter()
                .map(|(section, picked)| match picked {
                    Some(picked) => {
                        picked.iter().map(|&i| section.items()[i].content.len() + 3).sum::<usize>() + 64
                    }
                    None => memory.text_items(section).map(|i| i.content.len() + 3).sum::<usize>() + 64,
                })
                .sum();
            let mut system = String::with_capacity(instructions.len() + length + 160);
            system.push_str(instructions);
            system
        }
    };
    let render = reused.is_none();
    let mut text_tokens = 0;
    for (section, picked) in &shown {
        if !render && section.kind() != SectionKind::Messages {
            continue;
        }
        let items = section.items();
        // The picked items when the section was searched, else its text items (no box either way).
        let (picked, all) = match picked {
            Some(picked) => (Some(picked.iter().map(|&i| &items[i])), None),
            None => (None, Some(memory.text_items(section))),
        };
        let mut texts = picked.into_iter().flatten().chain(all.into_iter().flatten());
        let Some(first) = texts.next() else { continue };
        if render {
            system.push_str("\n\n");
            system.push_str(&header(section.kind()));
        }
        for item in std::iter::once(first).chain(texts) {
            if render {
                system.push_str("\n- ");
                system.push_str(&item.text());
            }
            if section.kind() == SectionKind::Messages {
                text_tokens += item.tokens;
            }
        }
    }
    let (kept_instructions, picked, kept_tokens, note_at) = reused.unwrap_or_else(|| {
        let picked = shown
            .iter()
            .filter_map(|(section, picked)| {
                let ids = picked.as_ref()?.iter().map(|&at| section.items()[at].id).collect();
                Some((section.kind(), ids))
            })
            .collect();
        (instructions.to_owned(), picked, None, system.len())
    });
    if hidden_searchable > 0 && kept_tokens.is_none() {
        hidden_note(&mut system, hidden_searchable);
    }

    // The conversation from its first user message: what was shown last turn, less what was
    // evicted since, plus what was added since.
    let in_context = shown.iter().any(|(s, _)| s.kind() == SectionKind::Messages);
    // What was shown of the sections whose eviction goes by use, by position (`None`: all).
    let used: Vec<(SectionKind, Option<Vec<usize>>)> = shown
        .into_iter()
        .filter(|(section, _)| matches!(section.config().eviction, Eviction::Lru | Eviction::Lfu))
        .map(|(section, picked)| (section.kind(), picked))
        .collect();
    let lending = in_context && !memory.shown_is_lent();
    let (mut ids, mut conversation) = if lending { memory.lend_shown() } else { None }.unwrap_or_default();
    let messages = memory.section(SectionKind::Messages);
    let items = if in_context { messages.items() } else { &[] };
    let start =
        items.iter().position(|i| matches!(i.message, Some(Message::User { .. }))).unwrap_or(items.len());
    let skipped: u64 = items[..start].iter().filter(|i| i.message.is_some()).map(|i| i.tokens).sum();
    let mut from = start;
    if let Some(first) = items.get(start) {
        let before = ids.partition_point(|&id| id < first.id);
        ids.drain(..before);
        conversation.drain_front(before);
        let last = ids.back().and_then(|&last| messages.position(last));
        match last {
            Some(at) if ids.front() == Some(&first.id) && at >= start => from = at + 1,
            _ => {
                ids.clear();
                conversation.clear();
            }
        }
    } else {
        ids.clear();
        conversation.clear();
    }
    for item in &items[from..] {
        if let Some(message) = &item.message {
            ids.push_back(item.id);
            conversation.push(message.clone());
        }
    }
    let held = if in_context { messages.tokens() } else { 0 };
    let system_tokens = kept_tokens.unwrap_or_else(|| counter.count(&system));
    let tokens = system_tokens + (held - text_tokens - skipped);
    if lending {
        memory.lent(ids);
    }
    for (kind, picked) in used {
        match picked {
            Some(picked) => memory.mark_used_at(kind, picked.into_iter()),
            None => memory.mark_used_at(kind, 0..memory.section(kind).items().len()),
        }
    }
    // Lent to the request; `SessionMemory::keep_system` takes it back after the turn.
    memory.system = Some(Box::new(KeptSystem {
        instructions: kept_instructions,
        tokens: system_tokens,
        system: None,
        lent: (system.as_ptr() as usize, system.len()),
        picked,
        note: (note_at, hidden_searchable),
    }));
    Some(Assembly { system, messages: conversation, searched, hidden_searchable, tokens })
}

/// The context by priority: every candidate unit (searchable sections above the threshold by
/// relevance), trimmed lowest priority and oldest first until it fits, then rendered. One pass
/// over the in-context items and one copy of each message shown.
fn assemble_by_priority(
    memory: &mut SessionMemory,
    profile: &MemoryProfile,
    top_k: usize,
    instructions: &str,
    query: &str,
) -> Result<Assembly, MemoryError> {
    let counter = memory.counter().clone();
    let budget = u64::from(profile.context_budget_tokens.get());
    let threshold = profile.retrieval_threshold.get() as usize;

    // 1. Candidates: every in-context section's items, by relevance above the threshold.
    let mut units = Vec::new();
    let mut searched = Vec::new();
    let mut hidden_searchable = 0;
    for section in memory.sections() {
        let config = section.config();
        if !config.in_context || section.items().is_empty() {
            continue;
        }
        let items = section.items();
        let unit = |index: usize| {
            let item = &items[index];
            let in_system = item.message.is_none();
            Unit {
                kind: section.kind(),
                in_system,
                priority: config.priority,
                id: item.id,
                index,
                tokens: if in_system { item.tokens + 1 } else { item.tokens },
            }
        };
        if config.searchable && items.len() > threshold && section.kind() != SectionKind::Messages {
            let mut picked = memory.search(section, query, top_k);
            picked.sort_unstable();
            searched.push((section.kind(), picked.len(), items.len()));
            hidden_searchable += items.len() - picked.len();
            units.extend(picked.into_iter().map(unit));
        } else {
            units.extend((0..items.len()).map(unit));
        }
    }

    // 2. The pinned part: instructions and the conversation from the current user message on.
    let messages = memory.section(SectionKind::Messages).items();
    let current = messages.iter().rposition(|i| matches!(i.message, Some(Message::User { .. })));
    let pinned_from = current.map_or(u64::MAX, |p| messages[p].id);
    let is_pinned = |u: &Unit| u.kind == SectionKind::Messages && u.id >= pinned_from;
    let header_tokens = |kind: SectionKind| counter.count(&header(kind)) + 1;
    let fixed = counter.count(instructions);
    let pinned: u64 = units.iter().filter(|u| is_pinned(u)).map(|u| u.tokens).sum();
    if fixed + pinned > budget {
        return Err(MemoryError::ContextTooLarge { needed: fixed + pinned, budget });
    }

    // 3. Trim: lowest priority first, oldest first within a section, until it fits. Headers
    //    are counted for every section present at the start, which only overestimates.
    let mut kinds: Vec<SectionKind> = Vec::new();
    for unit in units.iter().filter(|u| u.in_system && !is_pinned(u)) {
        if kinds.last() != Some(&unit.kind) {
            kinds.push(unit.kind);
        }
    }
    kinds.sort();
    kinds.dedup();
    let headers: u64 = kinds.into_iter().map(header_tokens).sum();
    let mut total = fixed + headers + units.iter().map(|u| u.tokens).sum::<u64>();
    let handle_reserve = |hidden: usize| if hidden > 0 { HANDLE_RESERVE_TOKENS } else { 0 };
    let mut kept = if total + handle_reserve(hidden_searchable) <= budget {
        // Everything fits: nothing to choose.
        units
    } else {
        let (pinned_units, mut units): (Vec<Unit>, Vec<Unit>) = units.into_iter().partition(is_pinned);
        units.sort_by_key(|u| (u.priority, u.id));
        let mut cut = 0;
        while cut < units.len() && total + handle_reserve(hidden_searchable) > budget {
            total -= units[cut].tokens;
            if memory.section(units[cut].kind).config().searchable {
                hidden_searchable += 1;
            }
            cut += 1;
        }
        let mut kept: Vec<Unit> = units.split_off(cut);
        kept.extend(pinned_units);
        kept
    };
    kept.sort_by_key(|u| (std::cmp::Reverse(u.priority), u.kind, u.id));
    let show_handle = hidden_searchable > 0 && total + HANDLE_RESERVE_TOKENS <= budget;

    // 4. Render: sections into the system prompt (highest priority first), messages as the
    //    conversation, starting at a user message.
    let mut system = instructions.to_owned();
    let mut conversation: Vec<(u64, &Message, u64)> = Vec::new();
    let mut last_kind = None;
    for unit in &kept {
        let item = &memory.section(unit.kind).items()[unit.index];
        if let Some(message) = &item.message {
            conversation.push((item.id, message, item.tokens));
            continue;
        }
        if last_kind != Some(unit.kind) {
            system.push_str("\n\n");
            system.push_str(&header(unit.kind));
            last_kind = Some(unit.kind);
        }
        system.push_str("\n- ");
        system.push_str(&item.text());
    }
    if show_handle {
        hidden_note(&mut system, hidden_searchable);
    }
    // Already in id order unless messages live in several sections (a stable sort of a sorted
    // list is one pass).
    conversation.sort_by_key(|(id, _, _)| *id);
    let start = conversation.iter().position(|(_, m, _)| m.is_user()).unwrap_or(conversation.len());
    let shown = &conversation[start..];
    let tokens = counter.count(&system) + shown.iter().map(|(_, _, tokens)| tokens).sum::<u64>();
    let messages: Conversation = shown.iter().map(|(_, m, _)| (*m).clone()).collect();

    for (kind, ids) in used_ids(memory, &kept) {
        memory.mark_used(kind, ids);
    }
    Ok(Assembly { system, messages, searched, hidden_searchable, tokens })
}

/// The note that `hidden` items are held but not shown, written onto the system prompt.
fn hidden_note(system: &mut String, hidden: usize) {
    // Written piece by piece rather than formatted: the count changes every turn a searched
    // section grows, so this runs while the rest of a kept prompt is reused.
    system.push_str("\n\n[");
    system.push_str(itoa::Buffer::new().format(hidden));
    system.push_str(" more item(s) are in this session's memory but not shown. Search them with the `");
    system.push_str(MEMORY_SEARCH_TOOL);
    system.push_str("` tool.]");
}

/// The ids shown, by section, for the sections whose eviction policy goes by use.
fn used_ids(memory: &SessionMemory, units: &[Unit]) -> Vec<(SectionKind, Vec<u64>)> {
    let mut groups: Vec<(SectionKind, Vec<u64>)> = Vec::new();
    for unit in units {
        match groups.last_mut() {
            Some((kind, ids)) if *kind == unit.kind => ids.push(unit.id),
            _ if matches!(memory.section(unit.kind).config().eviction, Eviction::Lru | Eviction::Lfu) => {
                groups.push((unit.kind, vec![unit.id]));
            }
            _ => {}
        }
    }
    groups
}

/// A section's heading in the system prompt.
fn header(kind: SectionKind) -> std::borrow::Cow<'static, str> {
    std::borrow::Cow::Borrowed(match kind {
        SectionKind::Messages => "## Earlier in this conversation (summary)",
        SectionKind::Role => "## Role",
        SectionKind::Playbooks => "## Playbooks",
        SectionKind::Actions => "## Recent tool actions",
        SectionKind::Documents => "## Documents",
        SectionKind::Findings => "## Findings",
        SectionKind::PlanHistory => "## Plan history",
        SectionKind::Reflection => "## Reflections",
        SectionKind::Lessons => "## Lessons learned",
        SectionKind::LastIntent => "## Last intent",
        SectionKind::Working => "## Working notes",
        SectionKind::Planning => "## Planning notes",
        _ => return std::borrow::Cow::Owned(format!("## {}", kind.as_str())),
    })
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::Arc;

    use kaos_providers::{Estimator, TokenCounter};
    use proptest::prelude::*;

    use super::*;
    use crate::memory::{NewItem, message_tokens};

    fn memory_with(
        budget: u32,
        threshold: u32,
        contents: &[(SectionKind, String)],
        turns: &[(String, String)],
    ) -> (SessionMemory, MemoryProfile) {
        let mut profile = MemoryProfile::default();
        profile.context_budget_tokens = NonZeroU32::new(budget).unwrap();
        profile.retrieval_threshold = NonZeroU32::new(threshold).unwrap();
        let mut memory = SessionMemory::new(&profile, Arc::new(Estimator));
        for (kind, text) in contents {
            let _ = memory.add(*kind, NewItem::text(text.clone()));
        }
        for (user, assistant) in turns {
            let _ = memory.add(SectionKind::Messages, NewItem::message(Message::user(user.clone())));
            let _ =
                memory.add(SectionKind::Messages, NewItem::message(Message::assistant(assistant.clone())));
        }
        (memory, profile)
    }

    fn section() -> impl Strategy<Value = SectionKind> {
        prop::sample::select(vec![
            SectionKind::Documents,
            SectionKind::Findings,
            SectionKind::Lessons,
            SectionKind::Actions,
            SectionKind::Reflection,
            SectionKind::Role,
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Assembly never exceeds the total budget, always ends with the current message, starts
        /// the conversation at a user message, and fails only when the pinned part cannot fit.
        #[test]
        fn assembly_never_exceeds_the_total_budget(
            budget in 20u32..3_000,
            threshold in 1u32..10,
            top_k in 1usize..8,
            contents in prop::collection::vec((section(), "[a-z ]{1,300}"), 0..40),
            turns in prop::collection::vec(("[a-z ]{1,200}", "[a-z ]{1,200}"), 0..15),
            current in "[a-z ]{1,200}",
            instructions in "[a-z ]{0,300}",
        ) {
            let (mut memory, profile) = memory_with(budget, threshold, &contents, &turns);
            memory.add(SectionKind::Messages, NewItem::message(Message::user(current.clone()))).unwrap();
            let counter = Estimator;
            match assemble(&mut memory, &profile, top_k, &instructions, &current) {
                Ok(assembly) => {
                    let actual = counter.count(&assembly.system)
                        + assembly.messages.iter().map(|m| message_tokens(&counter, m)).sum::<u64>();
                    prop_assert_eq!(actual, assembly.tokens);
                    prop_assert!(actual <= u64::from(budget), "{} > {}", actual, budget);
                    prop_assert_eq!(assembly.messages.last(), Some(&Message::user(current.clone())));
                    prop_assert!(assembly.messages[0].is_user());
                    prop_assert!(assembly.system.starts_with(&instructions));
                }
                Err(MemoryError::ContextTooLarge { needed, budget: b }) => {
                    prop_assert_eq!(b, u64::from(budget));
                    let pinned = counter.count(&instructions) + message_tokens(&counter, &Message::user(current));
                    prop_assert_eq!(needed, pinned);
                    prop_assert!(pinned > b);
                }
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }

    /// One step of a session, for the kept-conversation test.
    #[derive(Debug, Clone)]
    enum Step {
        /// A turn: the user message, the replies, and whether the conversation is handed back
        /// (a paused and resumed turn is not) and whether it holds a message memory refused.
        Turn { user: String, replies: Vec<String>, hand_back: bool, tamper: bool },
        /// A text item added to a section between turns.
        Note(SectionKind, String),
        /// The oldest message item removed between turns, or one from the middle.
        Forget { middle: bool },
        /// One item of a section removed between turns (shown by the last search or not).
        Drop(SectionKind, prop::sample::Index),
    }

    /// Text of a few words, some from a small shared vocabulary: searches over notes then
    /// match, and what they pick changes from turn to turn, or stays.
    const WORDS: &str = "((alpha|beta|gamma|delta|[a-z]{1,8}) ){1,8}";

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (WORDS, prop::collection::vec("[a-z ]{1,60}", 1..4), prop::bool::weighted(0.85), prop::bool::weighted(0.1))
                .prop_map(|(user, replies, hand_back, tamper)| Step::Turn { user, replies, hand_back, tamper }),
            3 => (section(), WORDS).prop_map(|(kind, text)| Step::Note(kind, text)),
            1 => (section(), any::<prop::sample::Index>()).prop_map(|(kind, at)| Step::Drop(kind, at)),
            1 => any::<bool>().prop_map(|middle| Step::Forget { middle }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(150))]

        /// Whatever happens between turns — evictions, summaries, notes, removals, a turn not
        /// handed back or handed back wrong — assembling with the conversation and the system
        /// prompt kept from the last turn gives exactly what assembling from scratch gives, and
        /// marks the same uses.
        #[test]
        fn the_kept_conversation_assembles_exactly_like_a_fresh_one(
            messages_budget in 60u32..1_500,
            budget in 200u32..4_000,
            threshold in 1u32..30,
            steps in prop::collection::vec(step(), 1..60),
        ) {
            let mut profile = MemoryProfile::default();
            profile.context_budget_tokens = NonZeroU32::new(budget).unwrap();
            profile.retrieval_threshold = NonZeroU32::new(threshold).unwrap();
            let mut messages = profile.section(SectionKind::Messages);
            messages.budget_tokens = kaos_agent::TokenBudget::Limited(NonZeroU32::new(messages_budget).unwrap());
            profile.sections.insert(SectionKind::Messages, messages);
            let mut memory = SessionMemory::new(&profile, Arc::new(Estimator));
            for step in steps {
                match step {
                    Step::Turn { user, replies, hand_back, tamper } => {
                        memory.begin_turn();
                        if memory.add(SectionKind::Messages, NewItem::message(Message::user(user.clone()))).is_err() {
                            continue;
                        }
                        let mut fresh = memory.clone();
                        let expected = assemble_by_priority(&mut fresh, &profile, 3, "sys", &user);
                        let got = assemble(&mut memory, &profile, 3, "sys", &user);
                        prop_assert_eq!(&got, &expected);
                        prop_assert_eq!(memory.take_ops(), fresh.take_ops());
                        let Ok(assembly) = got else { continue };
                        let mut conversation = assembly.messages;
                        let system = assembly.system;
                        let lent = conversation.len();
                        for reply in replies {
                            let message = Message::assistant(reply);
                            let _ = memory.add(SectionKind::Messages, NewItem::message(message.clone()));
                            conversation.push(message);
                        }
                        if tamper {
                            // A message memory did not take (refused), among the new ones.
                            conversation.insert(lent, Message::assistant("refused by memory"));
                        }
                        if hand_back {
                            memory.keep_shown(conversation, lent);
                            // A prompt changed after assembly (as a pattern does) is not kept.
                            memory.keep_system(if tamper { system.to_ascii_uppercase() } else { system });
                        }
                    }
                    Step::Note(kind, text) => {
                        let _ = memory.add(kind, NewItem::text(text));
                    }
                    Step::Drop(kind, at) => {
                        let items = memory.section(kind).items();
                        if !items.is_empty() {
                            let id = items[at.index(items.len())].id;
                            memory.remove(kind, vec![id]);
                        }
                    }
                    Step::Forget { middle } => {
                        let items = memory.section(SectionKind::Messages).items();
                        let at = if middle { items.len() / 2 } else { 0 };
                        if let Some(item) = items.get(at) {
                            memory.remove(SectionKind::Messages, vec![item.id]);
                        }
                    }
                }
                let _ = memory.take_ops();
            }
        }
    }

    #[test]
    fn above_the_threshold_documents_are_chosen_by_relevance_and_the_rest_get_a_handle() {
        let docs: Vec<(SectionKind, String)> = (0..30)
            .map(|i| (SectionKind::Documents, format!("document {i} about topic{i} and general filler text")))
            .collect();
        let (mut memory, profile) = memory_with(100_000, 5, &docs, &[]);
        memory.add(SectionKind::Messages, NewItem::message(Message::user("tell me about topic17"))).unwrap();
        let assembly = assemble(&mut memory, &profile, 3, "Be brief.", "tell me about topic17").unwrap();
        assert!(assembly.system.contains("document 17 about topic17"));
        assert_eq!(assembly.searched, vec![(SectionKind::Documents, 3, 30)]);
        assert_eq!(assembly.hidden_searchable, 27);
        assert!(assembly.system.contains("27 more item(s)"), "{}", assembly.system);
        assert!(assembly.system.contains(MEMORY_SEARCH_TOOL));
    }

    #[test]
    fn a_prompt_showing_the_same_picks_is_reused_with_its_note_rewritten() {
        let actions: Vec<(SectionKind, String)> =
            (0..30).map(|i| (SectionKind::Actions, format!("add({{\"a\":{i}}}) → {i}"))).collect();
        let (mut memory, profile) = memory_with(100_000, 5, &actions, &[]);
        let turn = |memory: &mut SessionMemory, text: &str| {
            memory.add(SectionKind::Messages, NewItem::message(Message::user(text))).unwrap();
            let mut fresh = memory.clone();
            let expected = assemble_by_priority(&mut fresh, &profile, 3, "sys", text).unwrap();
            let assembly = assemble(memory, &profile, 3, "sys", text).unwrap();
            assert_eq!(assembly, expected);
            let at = assembly.system.as_ptr();
            memory.keep_system(assembly.system);
            memory.add(SectionKind::Messages, NewItem::message(Message::assistant("ok"))).unwrap();
            (at, assembly.hidden_searchable)
        };
        let (first, hidden) = turn(&mut memory, "what is a");
        assert_eq!(hidden, 27);
        // A new action, not picked (ties go to the oldest): the same prompt, one more hidden.
        memory.add(SectionKind::Actions, NewItem::text("add({\"a\":30}) → 30")).unwrap();
        let (second, hidden) = turn(&mut memory, "what is a again");
        assert_eq!((second, hidden), (first, 28));
        // A search that picks other items renders the prompt anew.
        let (third, _) = turn(&mut memory, "what is 29");
        assert_ne!(third, first);
    }

    #[test]
    fn a_tight_budget_drops_low_priority_sections_then_old_messages() {
        let contents =
            vec![(SectionKind::Reflection, "r".repeat(400)), (SectionKind::Findings, "f".repeat(400))];
        let turns: Vec<(String, String)> =
            (0..5).map(|i| (format!("old question {i}"), format!("old answer {i}"))).collect();
        let assembled = |budget| {
            let (mut memory, profile) = memory_with(budget, 20, &contents, &turns);
            memory.add(SectionKind::Messages, NewItem::message(Message::user("current"))).unwrap();
            assemble(&mut memory, &profile, 5, "sys", "current").unwrap()
        };
        // Reflection (priority 30) goes first; findings (70) and every message (80) stay.
        let roomy = assembled(200);
        assert!(!roomy.system.contains("rrrr"));
        assert!(roomy.system.contains("ffff"));
        assert_eq!(roomy.messages.len(), 11);
        // Tighter: findings go before messages, then the oldest messages.
        let tight = assembled(60);
        assert!(!tight.system.contains("ffff"));
        assert!(tight.messages.len() < 11);
        assert!(tight.messages[0].is_user());
        assert_eq!(tight.messages.last(), Some(&Message::user("current")));
        assert!(tight.tokens <= 60);
    }
}

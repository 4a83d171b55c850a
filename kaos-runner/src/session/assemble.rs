//! Context assembly: what of a session's memory goes in front of the model this turn.

use kaos_agent::{MemoryProfile, SectionKind};
use kaos_providers::Message;

use super::bm25;
use super::memory::{MemoryError, SessionMemory, message_tokens};

/// The tool the model is pointed at for content left out of the context.
pub(crate) const MEMORY_SEARCH_TOOL: &str = "kaos-memory-search";

/// Room kept for the note about items left out (it is about 40 tokens).
const HANDLE_RESERVE_TOKENS: u64 = 64;

/// The context of one model request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Assembly {
    /// Instructions followed by the rendered sections.
    pub(crate) system: String,
    /// The conversation, starting at a user message and ending with the current one.
    pub(crate) messages: Vec<Message>,
    /// Sections chosen by relevance: (section, items shown, items held).
    pub(crate) searched: Vec<(SectionKind, usize, usize)>,
    /// Items of searchable sections that are held but not shown.
    pub(crate) hidden_searchable: usize,
    /// Tokens of the whole context, as counted.
    pub(crate) tokens: u64,
}

/// One trimmable piece of context.
struct Unit {
    kind: SectionKind,
    priority: u32,
    id: u64,
    tokens: u64,
}

/// Assembles the context for the current turn, whose user message is already the last user
/// message of the messages section. Guarantees `tokens <= profile.context_budget_tokens`, or
/// fails with [`MemoryError::ContextTooLarge`] when the instructions and the current message
/// alone do not fit. Marks what it shows as used (for `lru`/`lfu` sections).
pub(crate) fn assemble(
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
        let chosen: Vec<usize> =
            if config.searchable && items.len() > threshold && section.kind() != SectionKind::Messages {
                let mut picked = bm25::top_k(query, items.iter().map(|i| i.content.as_str()), top_k);
                picked.sort_unstable();
                searched.push((section.kind(), picked.len(), items.len()));
                picked
            } else {
                (0..items.len()).collect()
            };
        if config.searchable {
            hidden_searchable += items.len() - chosen.len();
        }
        for i in chosen {
            let item = &items[i];
            let tokens = if item.message.is_some() { item.tokens } else { item.tokens + 1 };
            units.push(Unit { kind: section.kind(), priority: config.priority, id: item.id, tokens });
        }
    }

    // 2. The pinned part: instructions and the conversation from the current user message on.
    let messages = memory.section(SectionKind::Messages).items();
    let current = messages.iter().rposition(|i| matches!(i.message, Some(Message::User { .. })));
    let pinned_from = current.map_or(u64::MAX, |p| messages[p].id);
    let header_tokens = |kind: SectionKind| counter.count(&header(kind)) + 1;
    let fixed = counter.count(instructions);
    let pinned: u64 = units
        .iter()
        .filter(|u| u.kind == SectionKind::Messages && u.id >= pinned_from)
        .map(|u| u.tokens)
        .sum();
    if fixed + pinned > budget {
        return Err(MemoryError::ContextTooLarge { needed: fixed + pinned, budget });
    }

    // 3. Trim: lowest priority first, oldest first within a section, until it fits. Headers
    //    are counted for every section present at the start, which only overestimates.
    let (pinned_units, mut units): (Vec<Unit>, Vec<Unit>) =
        units.into_iter().partition(|u| u.kind == SectionKind::Messages && u.id >= pinned_from);
    units.sort_by_key(|u| (u.priority, u.id));
    let mut kinds: Vec<SectionKind> = units.iter().map(|u| u.kind).collect();
    kinds.sort();
    kinds.dedup();
    let headers: u64 = kinds.into_iter().map(header_tokens).sum();
    let mut total = fixed + pinned + headers + units.iter().map(|u| u.tokens).sum::<u64>();
    let handle_reserve = |hidden: usize| if hidden > 0 { HANDLE_RESERVE_TOKENS } else { 0 };
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
    kept.sort_by_key(|u| (std::cmp::Reverse(u.priority), u.kind, u.id));
    let show_handle = hidden_searchable > 0 && total + HANDLE_RESERVE_TOKENS <= budget;

    // 4. Render: sections into the system prompt (highest priority first), messages as the
    //    conversation, starting at a user message.
    let mut system = instructions.to_owned();
    let mut conversation = Vec::new();
    let mut last_kind = None;
    for unit in &kept {
        let Some(item) = memory.section(unit.kind).items().iter().find(|i| i.id == unit.id) else { continue };
        if let Some(message) = &item.message {
            conversation.push((item.id, message.clone()));
            continue;
        }
        if last_kind != Some(unit.kind) {
            system.push_str("\n\n");
            system.push_str(&header(unit.kind));
            last_kind = Some(unit.kind);
        }
        system.push_str("\n- ");
        system.push_str(&item.content);
    }
    if show_handle {
        system.push_str(&format!(
            "\n\n[{hidden_searchable} more item(s) are in this session's memory but not shown. \
             Search them with the `{MEMORY_SEARCH_TOOL}` tool.]"
        ));
    }
    conversation.sort_by_key(|(id, _)| *id);
    let start = conversation.iter().position(|(_, m)| m.is_user()).unwrap_or(conversation.len());
    let messages: Vec<Message> = conversation.into_iter().skip(start).map(|(_, m)| m).collect();

    let tokens =
        counter.count(&system) + messages.iter().map(|m| message_tokens(counter.as_ref(), m)).sum::<u64>();
    for (kind, ids) in group_ids(&kept) {
        memory.mark_used(kind, ids);
    }
    Ok(Assembly { system, messages, searched, hidden_searchable, tokens })
}

fn group_ids(units: &[Unit]) -> Vec<(SectionKind, Vec<u64>)> {
    let mut groups: Vec<(SectionKind, Vec<u64>)> = Vec::new();
    for unit in units {
        match groups.iter_mut().find(|(k, _)| *k == unit.kind) {
            Some((_, ids)) => ids.push(unit.id),
            None => groups.push((unit.kind, vec![unit.id])),
        }
    }
    groups
}

fn header(kind: SectionKind) -> String {
    let title = match kind {
        SectionKind::Messages => "Earlier in this conversation (summary)",
        SectionKind::Role => "Role",
        SectionKind::Playbooks => "Playbooks",
        SectionKind::Actions => "Recent tool actions",
        SectionKind::Documents => "Documents",
        SectionKind::Findings => "Findings",
        SectionKind::PlanHistory => "Plan history",
        SectionKind::Reflection => "Reflections",
        SectionKind::Lessons => "Lessons learned",
        SectionKind::LastIntent => "Last intent",
        SectionKind::Working => "Working notes",
        SectionKind::Planning => "Planning notes",
        _ => kind.as_str(),
    };
    format!("## {title}")
}

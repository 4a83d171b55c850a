//! Handoff: which agent of the Runner's team holds a session's conversation, and what changes
//! when the model calls `handoff_to_<name>` — the conversation goes on under the next agent's
//! instructions, tools, model and pattern, with the same budget and progress.

use std::sync::Arc;

use serde_json::json;

use crate::emit::{Emitter, attrs, memory_event};
use crate::engine::memory_tool;
use crate::engine::state::Progress;
use crate::error::RunError;
use crate::events::MemoryEventKind;
use crate::member::Member;
use kaos_session::{Assembly, SessionMemory, assemble};

/// The context `member` sees: its instructions with the session's memory, and the conversation.
/// The session's memory follows the Runner's agent's profile, whoever holds the conversation.
pub(super) fn context(
    shared: &Member,
    member: &Member,
    memory: &mut SessionMemory,
    message: &str,
) -> Result<Assembly, RunError> {
    let top_k = member.agent.limits().retrieval_top_k.get() as usize;
    Ok(assemble(memory, shared.agent.memory(), top_k, member.agent.instructions(), message)?)
}

/// The tools `member` offers the model: its own, its delegates, its handoffs, and the memory
/// search tool when memory holds more than is shown (each list built once per member, shared).
pub(super) fn offered_tools(member: &Member, hidden_memory: bool) -> kaos_providers::ToolSet {
    if !(hidden_memory && member.offers_memory_search) {
        return member.offered.clone();
    }
    let with_search =
        || member.offered.iter().cloned().chain([memory_tool::memory_search_definition()]).collect();
    member.offered_with_search.get_or_init(with_search).clone()
}

/// After a handoff: the conversation so far goes on under `next` — its instructions (with the
/// session's memory), tools, model and pattern.
pub(super) fn rebase(
    shared: &Member,
    next: &Member,
    memory: &mut SessionMemory,
    message: &str,
    progress: &mut Progress,
) -> Result<(), RunError> {
    let assembly = context(shared, next, memory, message)?;
    progress.set_base_system(assembly.system);
    progress.request.model = next.agent.model().as_str().to_owned();
    progress.request.output_schema = None;
    progress.offered = offered_tools(next, assembly.hidden_searchable > 0);
    // The next agent runs its own pattern from here.
    progress.pattern = None;
    progress.plan = None;
    Ok(())
}

/// The agent holding the session's conversation: the one it was last handed to, else the
/// Runner's own. A handoff target this Runner does not know (its agent changed) gives the
/// conversation back to the Runner's agent, with a warning.
pub(super) fn active_member(shared: &Arc<Member>, memory: &SessionMemory, emit: &Emitter) -> Arc<Member> {
    let Some(name) = memory.active_agent() else { return shared.clone() };
    match shared.named(name) {
        Some(member) => member,
        None => {
            tracing::warn!(agent = name, "the session was handed to an agent this Runner does not know");
            let reason = format!(
                "the session was handed to {name:?}, not an agent of this Runner; {} continues",
                shared.agent_name
            );
            emit.emit_with(|| {
                memory_event(MemoryEventKind::Warning, "messages", 0, attrs([("reason", json!(reason))]))
            });
            shared.clone()
        }
    }
}

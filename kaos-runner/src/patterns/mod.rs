//! What a turn does beyond the plain chat loop, per [`Pattern`](kaos_agent::Pattern).
//!
//! Every pattern drives the same machinery: [`engine::drive`](crate::engine::drive) (the
//! ReAct loop with permissions, hooks, breakers and budgets) and
//! [`engine::model_call`](crate::engine::model_call) (one guarded model call). The pattern a
//! turn runs is fixed once (the agent's, or the router's choice) and kept in the turn's
//! [`Progress`](crate::engine::state::Progress), so a paused run resumes in the same pattern.

pub(crate) mod findings;
pub(crate) mod plan;
pub(crate) mod research;
pub(crate) mod router;

use kaos_agent::Pattern;

use crate::engine::state::Progress;
use crate::engine::{self, Cx, Ending};
use crate::error::RunError;
use kaos_session::SessionMemory;
use kaos_session::StopReason;

/// Runs the turn's pattern to its end (or a pause).
pub(crate) async fn drive(
    cx: &mut Cx<'_>,
    memory: &mut SessionMemory,
    progress: &mut Progress,
) -> Result<Ending, RunError> {
    let pattern = match progress.pattern {
        Some(pattern) => pattern,
        None => {
            let pattern = match cx.agent().pattern() {
                Pattern::Router => match router::route(cx, progress).await? {
                    Ok(pattern) => pattern,
                    Err(ending) => return Ok(ending),
                },
                pattern => pattern,
            };
            prepare(pattern, progress);
            progress.pattern = Some(pattern);
            pattern
        }
    };
    match pattern {
        Pattern::Research => {
            let ending = engine::drive(cx, memory, progress).await?;
            if !matches!(ending, Ending::Done(StopReason::Completed)) {
                return Ok(ending);
            }
            let required = cx.agent().research().min_verified_claims.get();
            Ok(Ending::Done(research::conclude(required, memory, progress, cx.turn_span, cx.emit)))
        }
        Pattern::Findings => findings::drive(cx, memory, progress).await,
        Pattern::Plan => plan::drive(cx, memory, progress).await,
        _ => engine::drive(cx, memory, progress).await,
    }
}

/// Sets up the turn's request for its pattern, before its first model call.
fn prepare(pattern: Pattern, progress: &mut Progress) {
    if pattern == Pattern::Research {
        let system = format!("{}\n\n{}", progress.base_system(), research::INSTRUCTION);
        progress.set_base_system(system);
        progress.request.output_schema = Some(research::output_schema());
    }
}

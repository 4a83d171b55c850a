//! What a turn does beyond the plain chat loop, per [`Pattern`](kaos_agent::Pattern).
//!
//! Every pattern drives the same machinery: [`step::drive`](crate::turn::step::drive) (the
//! ReAct loop with permissions, hooks, breakers and budgets) and
//! [`step::model_call`](crate::turn::step::model_call) (one guarded model call). The pattern a
//! turn runs is fixed once (the agent's, or the router's choice) and kept in the turn's
//! [`Progress`], so a paused run resumes in the same pattern.

pub(crate) mod findings;
pub(crate) mod plan;
pub(crate) mod research;
pub(crate) mod router;

use kaos_agent::Pattern;

use crate::pause::Progress;
use crate::turn::Ending;
use crate::turn::step::{self, Cx};
use crate::{RunError, StopReason};
use kaos_session::SessionMemory;

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
            let ending = step::drive(cx, memory, progress).await?;
            if !matches!(ending, Ending::Done(StopReason::Completed)) {
                return Ok(ending);
            }
            let required = cx.agent().research().min_verified_claims.get();
            Ok(Ending::Done(research::conclude(required, memory, progress, cx.turn_span, cx.emit)))
        }
        Pattern::Findings => findings::drive(cx, memory, progress).await,
        Pattern::Plan => plan::drive(cx, memory, progress).await,
        _ => step::drive(cx, memory, progress).await,
    }
}

/// Sets up the turn's request for its pattern, before its first model call.
fn prepare(pattern: Pattern, progress: &mut Progress) {
    if pattern == Pattern::Research {
        progress.base_system = format!("{}\n\n{}", progress.base_system, research::INSTRUCTION);
        progress.request.system = progress.base_system.clone();
        progress.request.output_schema = Some(research::output_schema());
    }
}

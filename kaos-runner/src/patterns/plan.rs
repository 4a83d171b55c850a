//! The plan-execute pattern: one planning call (the agent's `plan` role model) proposes the
//! steps (`plan_proposed`); each step runs the ordinary loop — tools, permissions, hooks,
//! breakers — inside a `step` span; a failed step may lead to a new plan for the remaining work
//! (at most `plan.max_replans` times, at most `limits.max_plan_steps` steps executed in all);
//! a last call answers the user from the steps' results. The turn's one budget covers every
//! call. When a limit stops the plan, the turn's text reports the steps completed so far.
//!
//! The plan's state lives in the turn's [`Progress`], so a step paused for approval resumes
//! where it stopped: no step runs twice and the plan is not made again.

use kaos_agent::{ModelRole, SectionKind};
use kaos_providers::{Message, ModelRequest};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::research::json_part;
use crate::emit::attrs;
use crate::engine::state::{PlanState, Progress, Running, StepResult};
use crate::engine::{self, Called, Cx, Ending, Purpose, model_call};
use crate::error::RunError;
use crate::events::{EventKind, MemoryEventKind, SpanPhase, SpanSubject};
use kaos_session::StopReason;
use kaos_session::{NewItem, SessionMemory};

/// Added to the system prompt of the planning call.
pub(crate) const INSTRUCTION: &str = "Before acting, break the user's request into a short plan: \
the steps to carry out, in order, each one a single instruction that can be done on its own \
(with the tools available, when needed). Do not carry out the steps now. Reply with JSON only, \
of the form {\"steps\": [\"...\", \"...\"]}.";

/// The JSON Schema of the planning call's answer.
pub(crate) fn output_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"steps": {"type": "array", "items": {"type": "string"}}},
        "required": ["steps"],
        "additionalProperties": false
    })
}

/// A proposed plan, read from the planning call's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proposal {
    pub(crate) steps: Vec<String>,
    /// Why it is not exactly what the model proposed (empty when it is).
    pub(crate) notes: Vec<String>,
    pub(crate) cut: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PlanAnswer {
    Object { steps: Vec<String> },
    List(Vec<String>),
}

/// Reads a planning answer (bare JSON or in a code fence; an object with `steps`, or a bare
/// list). Empty steps are dropped. `Err` says why nothing usable was found.
pub(crate) fn read_steps(text: &str) -> Result<Vec<String>, String> {
    let text = json_part(text);
    let text = match (text.find('['), text.rfind(']')) {
        (Some(start), Some(end)) if start < end && text.starts_with("```") => &text[start..=end],
        _ => text,
    };
    let steps = match serde_json::from_str(text) {
        Ok(PlanAnswer::Object { steps } | PlanAnswer::List(steps)) => steps,
        Err(error) => return Err(format!("the plan was not the required JSON ({error})")),
    };
    let steps: Vec<String> =
        steps.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    if steps.is_empty() { Err("the plan had no steps".to_owned()) } else { Ok(steps) }
}

/// The first plan from the planning answer: a malformed or empty one becomes a one-step plan
/// (the user's request itself); one longer than `room` steps is cut to fit.
pub(crate) fn first_plan(text: &str, request: &str, room: usize) -> Proposal {
    let (steps, mut notes) = match read_steps(text) {
        Ok(steps) => (steps, Vec::new()),
        Err(why) => (vec![request.trim().to_owned()], vec![format!("{why}; the request runs as one step")]),
    };
    cut(steps, &mut notes, room)
}

/// A plan for the remaining work after a failed step: a malformed answer retries the failed
/// step; an empty plan means nothing remains. Cut to `room` steps.
pub(crate) fn next_plan(text: &str, failed: &str, room: usize) -> Proposal {
    let (steps, mut notes) = match read_steps(text) {
        Ok(steps) => (steps, Vec::new()),
        Err(why) if why == "the plan had no steps" => (Vec::new(), vec!["nothing remains to do".to_owned()]),
        Err(why) => (vec![failed.to_owned()], vec![format!("{why}; the failed step is retried")]),
    };
    cut(steps, &mut notes, room)
}

fn cut(mut steps: Vec<String>, notes: &mut Vec<String>, room: usize) -> Proposal {
    let cut = if steps.len() > room {
        notes.push(format!(
            "the plan had {} steps; limits.max_plan_steps leaves room for {room}, the rest are cut",
            steps.len()
        ));
        steps.split_off(room)
    } else {
        Vec::new()
    };
    Proposal { steps, notes: std::mem::take(notes), cut }
}

#[derive(Deserialize)]
struct StepAnswer {
    status: String,
    #[serde(default)]
    result: Value,
}

/// Reads a step's final reply: `{"status": "done"|"failed", "result": "..."}`; any other text
/// counts as done, with the text as its result.
pub(crate) fn read_step_reply(text: &str) -> (bool, String) {
    match serde_json::from_str::<StepAnswer>(json_part(text)) {
        Ok(answer) => {
            let result = match answer.result {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (!answer.status.trim().eq_ignore_ascii_case("failed"), result.trim().to_owned())
        }
        Err(_) => (true, text.trim().to_owned()),
    }
}

/// The executed steps, one a line: `n. description — result` (`— failed: …` for a failure).
pub(crate) fn results_text(executed: &[StepResult]) -> String {
    let lines: Vec<String> = executed
        .iter()
        .enumerate()
        .map(|(i, s)| match s.done {
            true => format!("{}. {} — {}", i + 1, s.description, s.result),
            false => format!("{}. {} — failed: {}", i + 1, s.description, s.result),
        })
        .collect();
    lines.join("\n")
}

/// The partial report of a plan a limit stopped.
pub(crate) fn partial_text(why: &str, executed: &[StepResult]) -> String {
    if executed.iter().any(|s| s.done) {
        format!("Plan incomplete ({why}). Completed steps:\n{}", results_text(executed))
    } else if executed.is_empty() {
        format!("Plan incomplete ({why}). No step was completed.")
    } else {
        format!("Plan incomplete ({why}). No step was completed:\n{}", results_text(executed))
    }
}

fn numbered(steps: &[String]) -> String {
    steps.iter().enumerate().map(|(i, s)| format!("{}. {s}", i + 1)).collect::<Vec<_>>().join("\n")
}

/// How a plan run ends, before the turn's messages are tidied.
enum Outcome {
    /// Every step done: the final answer is the last message.
    Answered,
    /// A limit stopped the plan: report the partial results.
    Stopped(StopReason, String),
    /// The turn ends otherwise (a pause for approval): passed on as is.
    Ended(Ending),
}

/// Runs the plan pattern (or continues it after a pause).
pub(crate) async fn drive(
    cx: &mut Cx<'_>,
    memory: &mut SessionMemory,
    progress: &mut Progress,
) -> Result<Ending, RunError> {
    let outcome = run(cx, memory, progress).await?;
    let stop_reason = match outcome {
        Outcome::Ended(ending) => return Ok(ending),
        Outcome::Answered => StopReason::Completed,
        Outcome::Stopped(reason, why) => {
            let executed = progress.plan.as_ref().map(|p| p.executed.as_slice()).unwrap_or_default();
            let text = partial_text(&why, executed);
            let span = cx.emit.start(
                SpanSubject::Step,
                "plan.report".to_owned(),
                Some(cx.turn_span),
                attrs([("final_answer", json!(true))]),
            );
            cx.emit.emit(EventKind::TextDelta { text: text.clone() });
            progress.request.messages.push(Message::assistant(text));
            cx.emit.end(span, SpanPhase::Complete, attrs([("stop_reason", json!(reason))]));
            reason
        }
    };
    // The session keeps the user's message and the final text, not the step instructions (the
    // tool calls stay in the turn's record).
    let last = progress.request.messages.pop().unwrap_or_else(|| Message::assistant(""));
    progress.request.messages.truncate(progress.first_new + 1);
    progress.request.messages.push(last);
    remember_plan(cx, memory, progress);
    Ok(Ending::Done(stop_reason))
}

/// Stores the plan and its results in the session's plan history.
fn remember_plan(cx: &Cx<'_>, memory: &mut SessionMemory, progress: &Progress) {
    let Some(plan) = &progress.plan else { return };
    let request = progress.request.messages.get(progress.first_new).map(|m| m.content()).unwrap_or_default();
    let text = format!("Request: {request}\nSteps:\n{}", results_text(&plan.executed));
    match memory.add(SectionKind::PlanHistory, NewItem::text(text)) {
        Ok(_) => cx.emit.emit(EventKind::Memory {
            kind: MemoryEventKind::Added,
            section: SectionKind::PlanHistory.as_str().to_owned(),
            item_count: 1,
            attributes: Map::new(),
        }),
        Err(error) => tracing::warn!(%error, "the plan could not be stored in the plan history"),
    }
}

async fn run(cx: &mut Cx<'_>, memory: &SessionMemory, progress: &mut Progress) -> Result<Outcome, RunError> {
    let max_steps = cx.agent().limits().max_plan_steps.get() as usize;
    let max_replans = cx.agent().plan().max_replans;
    if progress.plan.is_none() {
        let request = user_request(progress);
        let room = max_steps;
        let text = match plan_call(cx, progress, &request).await? {
            Ok(text) => text,
            Err(ending) => return Ok(stopped(ending)),
        };
        let proposal = first_plan(&text, &request, room);
        propose(cx, 1, &proposal);
        // The plan, as the assistant's, so the step instructions that follow alternate with it.
        progress.request.messages.push(Message::assistant(format!("Plan:\n{}", numbered(&proposal.steps))));
        progress.plan = Some(PlanState {
            revision: 1,
            steps: proposal.steps,
            next: 0,
            cut: proposal.cut,
            executed: Vec::new(),
            replans: 0,
            running: None,
            note: None,
        });
    }
    loop {
        let plan = progress.plan.as_mut().ok_or(RunError::Internal("the plan is missing"))?;
        let Some(description) = plan.steps.get(plan.next).cloned() else {
            if !plan.cut.is_empty() {
                let why = format!(
                    "the plan reached limits.max_plan_steps ({max_steps}); not run: {}",
                    plan.cut.join("; ")
                );
                return Ok(Outcome::Stopped(StopReason::PlanIncomplete, why));
            }
            return answer(cx, progress).await;
        };
        let (index, of) = (plan.next + 1, plan.steps.len());
        let number = plan.executed.len() + 1;
        let resumed = plan.running.is_some();
        let first_call = match plan.running {
            Some(running) => running.first_call,
            None => {
                let note = plan.note.take().map(|n| format!("{n}\n\n")).unwrap_or_default();
                plan.running = Some(Running { first_call: progress.model_calls });
                progress.request.messages.push(Message::user(format!(
                    "{note}Step {index} of {of}: {description}\n\nCarry out this step only (use tools if \
                     needed). Then reply with JSON only: {{\"status\": \"done\" or \"failed\", \"result\": \
                     \"<what the step found or did, or why it failed>\"}}"
                )));
                progress.model_calls
            }
        };
        let mut attributes = attrs([("index", json!(number)), ("description", json!(description))]);
        if resumed {
            attributes.insert("resumed".into(), json!(true));
        }
        let span = cx.emit.start(
            SpanSubject::Step,
            format_args!("plan.step.{number}"),
            Some(cx.turn_span),
            attributes,
        );
        cx.enter(&span);
        let driven = engine::drive_from(cx, memory, progress, first_call, Purpose::Internal).await;
        cx.leave();
        let ending = match driven {
            Ok(ending) => ending,
            Err(error) => {
                cx.emit.end(span, SpanPhase::Error, attrs([("error", json!(error.report()))]));
                return Err(error);
            }
        };
        let (done, result) = match ending {
            Ending::Paused(pending) => {
                cx.emit.end(span, SpanPhase::Complete, attrs([("status", json!("paused"))]));
                return Ok(Outcome::Ended(Ending::Paused(pending)));
            }
            // Another agent takes the conversation over, and the plan ends here.
            Ending::Handoff(target) => {
                let attributes = attrs([("status", json!("handed_off")), ("to", json!(target))]);
                cx.emit.end(span, SpanPhase::Complete, attributes);
                return Ok(Outcome::Ended(Ending::Handoff(target)));
            }
            Ending::Done(StopReason::Completed) => {
                read_step_reply(progress.request.messages.last().map(|m| m.content()).unwrap_or_default())
            }
            Ending::Done(StopReason::IterationLimit) => {
                (false, "the step reached limits.max_iterations".to_owned())
            }
            Ending::Done(reason) => {
                cx.emit.end(span, SpanPhase::Complete, attrs([("status", json!("stopped"))]));
                return Ok(stopped(Ending::Done(reason)));
            }
        };
        let status = if done { "done" } else { "failed" };
        cx.emit.end(span, SpanPhase::Complete, attrs([("status", json!(status)), ("result", json!(result))]));
        let plan = progress.plan.as_mut().ok_or(RunError::Internal("the plan is missing"))?;
        plan.running = None;
        plan.next += 1;
        plan.executed.push(StepResult { description: description.clone(), done, result: result.clone() });
        if done {
            continue;
        }
        let failure = format!("step {number} failed: {result}");
        if plan.replans >= max_replans {
            let why = format!("{failure}; no replans left (plan.max_replans = {max_replans})");
            return Ok(Outcome::Stopped(StopReason::PlanIncomplete, why));
        }
        let room = max_steps.saturating_sub(plan.executed.len());
        if room == 0 {
            let why = format!("{failure}; the plan reached limits.max_plan_steps ({max_steps})");
            return Ok(Outcome::Stopped(StopReason::PlanIncomplete, why));
        }
        let done_so_far = results_text(&plan.executed);
        let context = format!(
            "{}\n\nSteps carried out so far:\n{done_so_far}\n\nStep {number} failed. Plan the remaining work only.",
            user_request(progress),
        );
        let text = match plan_call(cx, progress, &context).await? {
            Ok(text) => text,
            Err(ending) => return Ok(stopped(ending)),
        };
        let plan = progress.plan.as_mut().ok_or(RunError::Internal("the plan is missing"))?;
        plan.replans += 1;
        let mut proposal = next_plan(&text, &description, room);
        proposal.notes.insert(0, failure.clone());
        let revision = plan.revision + 1;
        propose(cx, revision, &proposal);
        plan.note = Some(format!(
            "The plan was revised ({failure}). The remaining steps:\n{}",
            numbered(&proposal.steps)
        ));
        plan.revision = revision;
        plan.steps = proposal.steps;
        plan.next = 0;
        plan.cut = proposal.cut;
    }
}

/// The turn's user message.
fn user_request(progress: &Progress) -> String {
    progress.request.messages.get(progress.first_new).map(|m| m.content().to_owned()).unwrap_or_default()
}

fn propose(cx: &Cx<'_>, revision: u32, proposal: &Proposal) {
    cx.emit.emit(EventKind::PlanProposed {
        revision,
        steps: proposal.steps.clone(),
        reason: proposal.notes.join("; "),
    });
}

/// A guard's ending as the plan's outcome: limits report the partial results.
fn stopped(ending: Ending) -> Outcome {
    match ending {
        Ending::Done(StopReason::BudgetExceeded) => {
            Outcome::Stopped(StopReason::BudgetExceeded, "the turn's budget is spent".into())
        }
        Ending::Done(StopReason::ModelUnavailable) => {
            Outcome::Stopped(StopReason::ModelUnavailable, "the model is unavailable".into())
        }
        Ending::Done(StopReason::IterationLimit) => {
            Outcome::Stopped(StopReason::IterationLimit, "the iteration limit was reached".into())
        }
        ending => Outcome::Ended(ending),
    }
}

/// One planning call (the `plan` role model, no tools): the conversation before this turn,
/// then `message`. Returns the answer's text, or the ending a guard stopped the turn with.
async fn plan_call(
    cx: &mut Cx<'_>,
    progress: &mut Progress,
    message: &str,
) -> Result<Result<String, Ending>, RunError> {
    let mut messages = progress.request.messages[..progress.first_new].to_vec();
    messages.push(Message::user(message));
    let mut request = ModelRequest::new(cx.model_for(ModelRole::Plan), messages)
        .with_system(format!("{}\n\n{INSTRUCTION}", progress.base_system()));
    request.output_schema = Some(output_schema());
    match model_call(cx, &mut request, progress.model_calls + 1, Purpose::Internal).await? {
        Called::Response(response) => {
            progress.record_model_call(&response);
            Ok(Ok(response.text))
        }
        Called::Stopped(ending) => Ok(Err(ending)),
    }
}

/// The final call: the answer to the user from the steps' results, no tools.
async fn answer(cx: &mut Cx<'_>, progress: &mut Progress) -> Result<Outcome, RunError> {
    let executed = progress.plan.as_ref().map(|p| results_text(&p.executed)).unwrap_or_default();
    progress.request.messages.push(Message::user(format!(
        "Every step of the plan is done. Their results:\n{executed}\n\nNow answer my request: {}",
        user_request(progress)
    )));
    progress.request.tools = kaos_providers::ToolSet::default();
    progress.restore_base_system();
    progress.request.output_schema = None;
    let mut request = progress.request.clone();
    match model_call(cx, &mut request, progress.model_calls + 1, Purpose::Answer).await? {
        Called::Response(response) => {
            progress.record_model_call(&response);
            // Tools were not offered: whatever calls came with the answer are not part of it.
            progress.request.messages.push(Message::assistant(response.text));
            Ok(Outcome::Answered)
        }
        Called::Stopped(ending) => Ok(stopped(ending)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_read_leniently_and_fall_back_to_one_step() {
        assert_eq!(read_steps(r#"{"steps": [" a ", "", "b"]}"#), Ok(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(read_steps("```json\n{\"steps\": [\"a\"]}\n```"), Ok(vec!["a".to_owned()]));
        assert_eq!(read_steps("```\n[\"a\", \"b\"]\n```"), Ok(vec!["a".to_owned(), "b".to_owned()]));
        let broken = first_plan("first I will look", "Do the thing", 10);
        assert_eq!(broken.steps, ["Do the thing"]);
        assert!(broken.notes[0].starts_with("the plan was not the required JSON"), "{:?}", broken.notes);
        let empty = first_plan(r#"{"steps": []}"#, "Do it", 10);
        assert_eq!(
            (empty.steps.as_slice(), empty.notes.as_slice()),
            (
                ["Do it".to_owned()].as_slice(),
                ["the plan had no steps; the request runs as one step".to_owned()].as_slice()
            )
        );
    }

    #[test]
    fn long_plans_are_cut_to_the_room_left() {
        let plan = first_plan(r#"{"steps": ["a", "b", "c", "d"]}"#, "r", 3);
        assert_eq!((plan.steps, plan.cut), (vec!["a".into(), "b".into(), "c".into()], vec!["d".to_owned()]));
        assert_eq!(
            plan.notes,
            ["the plan had 4 steps; limits.max_plan_steps leaves room for 3, the rest are cut"]
        );
        let fits = first_plan(r#"{"steps": ["a"]}"#, "r", 1);
        assert!(fits.notes.is_empty() && fits.cut.is_empty());
    }

    #[test]
    fn replans_retry_on_garbage_and_may_have_nothing_left() {
        assert_eq!(next_plan("hmm", "step two", 5).steps, ["step two"]);
        let done = next_plan(r#"{"steps": []}"#, "step two", 5);
        assert_eq!(
            (done.steps.len(), done.notes.as_slice()),
            (0, ["nothing remains to do".to_owned()].as_slice())
        );
    }

    #[test]
    fn step_replies_are_json_or_plain_text() {
        assert_eq!(read_step_reply(r#"{"status": "done", "result": "42"}"#), (true, "42".to_owned()));
        assert_eq!(
            read_step_reply(r#"{"status": "FAILED", "result": "no data"}"#),
            (false, "no data".to_owned())
        );
        assert_eq!(
            read_step_reply(r#"{"status": "done", "result": {"n": 1}}"#),
            (true, r#"{"n":1}"#.to_owned())
        );
        assert_eq!(read_step_reply(" It is 42. "), (true, "It is 42.".to_owned()));
    }

    #[test]
    fn partial_results_list_every_executed_step() {
        let step = |d: &str, done, r: &str| StepResult { description: d.into(), done, result: r.into() };
        let executed = [step("look", true, "found 3"), step("sum", false, "overflow")];
        assert_eq!(
            partial_text("budget", &executed),
            "Plan incomplete (budget). Completed steps:\n1. look — found 3\n2. sum — failed: overflow"
        );
        assert_eq!(partial_text("budget", &[]), "Plan incomplete (budget). No step was completed.");
    }
}

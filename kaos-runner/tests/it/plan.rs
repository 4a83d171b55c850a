//! The plan-execute pattern: plan, steps in spans, replanning, limits, budget, pause/resume.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::StreamExt;
use kaos_agent::{Agent, AgentBuilder, Budget, Decision, Pattern, PlanConfig, SectionKind};
use kaos_providers::{Message, ModelRequest, ModelResponse, ScriptedClient, ScriptedReply, ToolCall};
use kaos_runner::{
    Approval, Event, EventKind, Runner, SpanPhase, SpanSubject, StopReason, TurnFold, TurnResponse,
};
use kaos_runtime::Runtime;
use kaos_tools::{ToolResult, tool_fn};
use serde_json::{Value, json};

use crate::support::priced;

const FINAL: &str = "All done: the report is written.";
const PRICE: f64 = 0.01;

/// Whether the request is a planning call (the first plan or a replan).
fn is_planning(request: &ModelRequest) -> bool {
    request.output_schema.as_ref().is_some_and(|s| s["required"] == json!(["steps"]))
}

/// The description of the step a request asks for: `Step i of n: <description>`.
fn step_of(request: &ModelRequest) -> Option<String> {
    let message = request.last_user_message()?;
    let at = message.find("Step ")?;
    let rest = &message[at..];
    let start = rest.find(": ")? + 2;
    let end = rest.find("\n\n").unwrap_or(rest.len());
    Some(rest[start..end].to_owned())
}

fn text(text: impl Into<String>) -> ScriptedReply {
    priced(ModelResponse::text("scripted:plan", text), PRICE)
}

/// A model that plans `plan`, replans `replan`, fails the step `break` (with "broken"), calls
/// `lookup` in the step `fetch`, does every other step, and answers [`FINAL`].
fn model(plan: &'static [&'static str], replan: &'static [&'static str]) -> ScriptedClient {
    ScriptedClient::from_fn(move |request| {
        if is_planning(request) {
            let replanning = request.last_user_message().unwrap_or_default().contains("failed");
            return text(json!({"steps": if replanning { replan } else { plan }}).to_string());
        }
        if let Some(Message::Tool { content, .. }) = request.messages.last() {
            return text(json!({"status": "done", "result": format!("tool said: {content}")}).to_string());
        }
        if request.last_user_message().unwrap_or_default().starts_with("Every step of the plan is done") {
            return text(FINAL);
        }
        match step_of(request).as_deref() {
            Some("fetch") => {
                let mut response = ModelResponse::text("scripted:plan", "");
                let id = format!("call_{}", request.messages.len());
                response.tool_calls = vec![ToolCall::new(id, "lookup", json!({"key": "x"}))];
                priced(response, PRICE)
            }
            Some("break") => text(json!({"status": "failed", "result": "broken"}).to_string()),
            Some(step) => text(json!({"status": "done", "result": format!("did {step}")}).to_string()),
            None => text("?"),
        }
    })
}

fn runner(agent: AgentBuilder, model: &ScriptedClient, runs: Arc<AtomicU32>) -> Runner {
    let lookup = tool_fn("lookup", "Looks a key up.", move |input: Value, _ctx| {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(ToolResult::text(format!("value of {}", input["key"].as_str().unwrap_or("?"))))
        }
    })
    .build()
    .unwrap();
    let runtime = Runtime::test_mode().to_builder().tool(lookup).unwrap().build();
    let agent = agent.pattern(Pattern::Plan).build().unwrap();
    Runner::builder(agent, runtime).model(Arc::new(model.clone())).build().unwrap()
}

fn fold(events: &[Event]) -> TurnResponse {
    let mut fold = TurnFold::default();
    events.iter().for_each(|e| fold.push(e));
    fold.finish().unwrap()
}

async fn run(runner: &Runner, session: &str) -> (Vec<Event>, TurnResponse) {
    let events: Vec<Event> = runner.run("write the report", session).map(Result::unwrap).collect().await;
    let response = fold(&events);
    (events, response)
}

fn plans(events: &[Event]) -> Vec<(u32, Vec<String>, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PlanProposed { revision, steps, reason } => {
                Some((*revision, steps.clone(), reason.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The step spans' ends: (name, description, status, result).
fn steps(events: &[Event]) -> Vec<(String, String, String, String)> {
    let mut descriptions = std::collections::HashMap::new();
    let mut out = Vec::new();
    for event in events {
        let EventKind::Span(span) = &event.kind else { continue };
        if span.subject != SpanSubject::Step || !span.name.starts_with("plan.step.") {
            continue;
        }
        let attr = |k: &str| span.attributes.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        match span.phase {
            SpanPhase::Start => {
                descriptions.insert(span.span_id.clone(), attr("description"));
            }
            _ => out.push((
                span.name.clone(),
                descriptions.remove(&span.span_id).unwrap_or_default(),
                attr("status"),
                attr("result"),
            )),
        }
    }
    out
}

fn position(events: &[Event], found: impl Fn(&EventKind) -> bool) -> usize {
    events.iter().position(|e| found(&e.kind)).expect("event not found")
}

fn step_start(name: &'static str) -> impl Fn(&EventKind) -> bool {
    move |kind| matches!(kind, EventKind::Span(s) if s.subject == SpanSubject::Step && s.phase == SpanPhase::Start && s.name == name)
}

fn texts(history: &[Message]) -> Vec<(bool, String)> {
    history.iter().map(|m| (m.is_user(), m.content().to_owned())).collect()
}

fn row(name: &str, description: &str, status: &str, result: &str) -> (String, String, String, String) {
    (name.into(), description.into(), status.into(), result.into())
}

#[tokio::test]
async fn a_plan_runs_its_steps_in_spans_and_answers_from_their_results() {
    let runs = Arc::new(AtomicU32::new(0));
    let model = model(&["gather", "fetch", "write"], &[]);
    let runner = runner(Agent::builder(), &model, runs.clone());
    let (events, response) = run(&runner, "p").await;

    let steps_proposed = vec!["gather".to_owned(), "fetch".to_owned(), "write".to_owned()];
    assert_eq!(plans(&events), [(1, steps_proposed, String::new())]);
    assert_eq!(
        steps(&events),
        [
            row("plan.step.1", "gather", "done", "did gather"),
            row("plan.step.2", "fetch", "done", "tool said: value of x"),
            row("plan.step.3", "write", "done", "did write"),
        ]
    );
    // In order: the plan, the three steps, then the final answer's model call.
    let proposed = position(&events, |k| matches!(k, EventKind::PlanProposed { .. }));
    let (one, two, three) = (
        position(&events, step_start("plan.step.1")),
        position(&events, step_start("plan.step.2")),
        position(&events, step_start("plan.step.3")),
    );
    let last_call = events
        .iter()
        .rposition(|e| matches!(&e.kind, EventKind::Span(s) if s.subject == SpanSubject::LlmCall && s.phase == SpanPhase::Start))
        .unwrap();
    assert!(
        proposed < one && one < two && two < three && three < last_call,
        "{proposed} {one} {two} {three} {last_call}"
    );

    // A step's model and tool calls are spans inside the step's span; the planning call and the
    // answer are inside the turn's.
    let span_id = |name: &str| {
        events.iter().find_map(|e| match &e.kind {
            EventKind::Span(s) if s.name == name && s.phase == SpanPhase::Start => Some(s.span_id.clone()),
            _ => None,
        })
    };
    let parents = |subject: SpanSubject| -> Vec<Option<String>> {
        events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Span(s) if s.subject == subject && s.phase == SpanPhase::Start => {
                    Some(s.parent_span_id.clone())
                }
                _ => None,
            })
            .collect()
    };
    let (turn, step_1, step_2, step_3) =
        (span_id("turn.1"), span_id("plan.step.1"), span_id("plan.step.2"), span_id("plan.step.3"));
    assert_eq!(parents(SpanSubject::ToolCall), std::slice::from_ref(&step_2));
    assert_eq!(parents(SpanSubject::LlmCall), [turn.clone(), step_1, step_2.clone(), step_2, step_3, turn]);
    assert_eq!(response.stop_reason, StopReason::Completed);
    assert_eq!(response.text, FINAL);
    // Only the answer streams: the plan and the steps' status replies are the pattern's own.
    let streamed: String = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(streamed, FINAL);
    // plan, gather, fetch (tool call), fetch (result), write, final answer.
    assert_eq!(response.model_calls, 6);
    assert_eq!(model.requests().len(), 6);
    assert!((response.cost_usd - 6.0 * PRICE).abs() < 1e-9);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(response.tool_calls.len(), 1);
    // The planning call offered no tools, the steps did, the final answer did not.
    let requests = model.requests();
    assert!(requests[0].tools.is_empty() && !requests[1].tools.is_empty() && requests[5].tools.is_empty());
    // The session keeps the request and the answer, not the step instructions.
    let history = runner.history("p").await.unwrap();
    assert_eq!(texts(&history), [(true, "write the report".to_owned()), (false, FINAL.to_owned())]);
    let memory = runner.memory("p").await.unwrap();
    let plan_history: Vec<String> =
        memory.section(SectionKind::PlanHistory).items().iter().map(|i| i.text().into_owned()).collect();
    assert_eq!(
        plan_history,
        [
            "Request: write the report\nSteps:\n1. gather — did gather\n2. fetch — tool said: value of x\n3. write — did write"
        ]
    );
    // A next turn sees a well-formed history.
    let next = runner.turn("again", "p").await.unwrap();
    assert_eq!(next.stop_reason, StopReason::Completed);
}

#[tokio::test]
async fn a_failed_step_leads_to_a_new_plan_for_the_rest() {
    let model = model(&["gather", "break", "write"], &["mend", "write"]);
    let runner = runner(Agent::builder(), &model, Arc::new(AtomicU32::new(0)));
    let (events, response) = run(&runner, "r").await;
    let proposed = plans(&events);
    assert_eq!(proposed.len(), 2);
    assert_eq!(
        proposed[1],
        (2, vec!["mend".to_owned(), "write".to_owned()], "step 2 failed: broken".to_owned())
    );
    assert_eq!(
        steps(&events),
        [
            row("plan.step.1", "gather", "done", "did gather"),
            row("plan.step.2", "break", "failed", "broken"),
            row("plan.step.3", "mend", "done", "did mend"),
            row("plan.step.4", "write", "done", "did write"),
        ]
    );
    assert_eq!((response.stop_reason, response.text.as_str()), (StopReason::Completed, FINAL));
    // The replanning call was told what was done and what failed.
    let replan = model.requests().into_iter().filter(is_planning).nth(1).unwrap();
    let asked = replan.last_user_message().unwrap();
    assert!(asked.contains("1. gather — did gather\n2. break — failed: broken"), "{asked}");
}

#[tokio::test]
async fn without_replans_a_failed_step_ends_the_turn_with_the_partial_results() {
    let model = model(&["gather", "break", "write"], &["mend"]);
    let agent = Agent::builder().plan(PlanConfig::default().with_max_replans(0));
    let runner = runner(agent, &model, Arc::new(AtomicU32::new(0)));
    let (events, response) = run(&runner, "z").await;
    assert_eq!(plans(&events).len(), 1);
    assert_eq!(response.stop_reason, StopReason::PlanIncomplete);
    let expected = "Plan incomplete (step 2 failed: broken; no replans left (plan.max_replans = 0)). \
                    Completed steps:\n1. gather — did gather\n2. break — failed: broken";
    assert_eq!(response.text, expected);
    // No final answer call: plan, gather, break.
    assert_eq!(response.model_calls, 3);
    let history = runner.history("z").await.unwrap();
    assert_eq!(texts(&history), [(true, "write the report".to_owned()), (false, expected.to_owned())]);
}

#[tokio::test]
async fn the_budget_spans_the_whole_plan_and_a_stop_reports_what_was_done() {
    let runs = Arc::new(AtomicU32::new(0));
    let model = model(&["gather", "fetch", "write"], &[]);
    let agent = Agent::builder().budget(Budget::default().with_max_model_calls(3));
    let runner = runner(agent, &model, runs.clone());
    let (events, response) = run(&runner, "b").await;
    // plan, gather, fetch's tool call; the call after the tool result is over the budget.
    assert_eq!(response.stop_reason, StopReason::BudgetExceeded);
    assert!(events.iter().any(|e| matches!(e.kind, EventKind::BudgetExceeded { .. })));
    assert_eq!(response.model_calls, 3);
    assert_eq!(model.requests().len(), 3);
    assert!((response.cost_usd - 3.0 * PRICE).abs() < 1e-9, "{}", response.cost_usd);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        response.text,
        "Plan incomplete (the turn's budget is spent). Completed steps:\n1. gather — did gather"
    );
    assert_eq!(steps(&events)[1], row("plan.step.2", "fetch", "stopped", ""));
    let history = runner.history("b").await.unwrap();
    assert_eq!(texts(&history), [(true, "write the report".to_owned()), (false, response.text.clone())]);
}

#[tokio::test]
async fn a_plan_longer_than_max_plan_steps_is_cut_and_reported_incomplete() {
    let model = model(&["a", "b", "c", "d"], &[]);
    let runner = runner(Agent::builder().max_plan_steps(2), &model, Arc::new(AtomicU32::new(0)));
    let (events, response) = run(&runner, "m").await;
    let proposed = plans(&events);
    assert_eq!(proposed.len(), 1);
    assert_eq!(proposed[0].1, ["a", "b"]);
    assert_eq!(
        proposed[0].2,
        "the plan had 4 steps; limits.max_plan_steps leaves room for 2, the rest are cut"
    );
    assert_eq!(steps(&events).len(), 2);
    assert_eq!(response.stop_reason, StopReason::PlanIncomplete);
    assert_eq!(
        response.text,
        "Plan incomplete (the plan reached limits.max_plan_steps (2); not run: c; d). \
         Completed steps:\n1. a — did a\n2. b — did b"
    );
}

#[tokio::test]
async fn a_step_paused_for_approval_resumes_the_same_plan() {
    let runs = Arc::new(AtomicU32::new(0));
    let model = model(&["gather", "fetch", "write"], &[]);
    let runner = runner(Agent::builder().permit("lookup", Decision::Ask), &model, runs.clone());
    let (_, paused) = run(&runner, "s").await;
    assert_eq!(paused.stop_reason, StopReason::ApprovalRequired);
    assert_eq!(paused.pending_approval.as_ref().unwrap().tool_name, "lookup");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(model.requests().len(), 3, "plan, gather, fetch");

    let state = runner.run_state(&paused.run_id).await.unwrap();
    let events: Vec<Event> = runner.resume(state, Approval::approve()).map(Result::unwrap).collect().await;
    let done = fold(&events);
    assert_eq!((done.stop_reason, done.text.as_str()), (StopReason::Completed, FINAL));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // No second plan: the resumed run continued step 2, then step 3 and the answer.
    assert!(plans(&events).is_empty());
    assert_eq!(model.requests().iter().filter(|r| is_planning(r)).count(), 1);
    assert_eq!(model.requests().len(), 6);
    assert_eq!(done.model_calls, 6);
    // The step went on from its pending call: its instruction was not given again.
    let after_tool = &model.requests()[3];
    assert!(matches!(after_tool.messages.last(), Some(Message::Tool { .. })));
    let asked =
        after_tool.messages.iter().filter(|m| m.is_user() && m.content().starts_with("Step 2 of 3")).count();
    assert_eq!(asked, 1);
    assert_eq!(
        steps(&events),
        [
            row("plan.step.2", "fetch", "done", "tool said: value of x"),
            row("plan.step.3", "write", "done", "did write"),
        ]
    );
    let history = runner.history("s").await.unwrap();
    assert_eq!(texts(&history), [(true, "write the report".to_owned()), (false, FINAL.to_owned())]);
}

#[tokio::test]
async fn max_iterations_bounds_each_step_not_the_whole_plan() {
    // Each step takes at most two model calls; the turn takes six.
    let loose = model(&["gather", "fetch", "write"], &[]);
    let first = runner(Agent::builder().max_iterations(2), &loose, Arc::new(AtomicU32::new(0)));
    let (_, response) = run(&first, "i").await;
    assert_eq!((response.stop_reason, response.model_calls), (StopReason::Completed, 6));
    // With one call a step, the step that needs a tool fails at its limit.
    let strict = model(&["gather", "fetch", "write"], &[]);
    let agent = Agent::builder().max_iterations(1).plan(PlanConfig::default().with_max_replans(0));
    let runner = runner(agent, &strict, Arc::new(AtomicU32::new(0)));
    let (events, response) = run(&runner, "j").await;
    assert_eq!(response.stop_reason, StopReason::PlanIncomplete);
    assert_eq!(
        steps(&events)[1],
        row("plan.step.2", "fetch", "failed", "the step reached limits.max_iterations")
    );
    // The call it could not make is answered in the turn's record, and the history is tidy.
    let history = runner.history("j").await.unwrap();
    assert_eq!(history.len(), 2);
}

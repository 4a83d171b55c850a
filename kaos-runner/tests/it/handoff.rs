#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::StreamExt;
use kaos_agent::{Agent, Decision};
use kaos_providers::{Message, ModelRequest, ModelResponse, ScriptedClient, ScriptedReply, ToolCall};
use kaos_runner::{Approval, Event, EventKind, RunError, Runner, SpanPhase, SpanSubject, StopReason};
use kaos_runtime::Runtime;
use kaos_tools::{ToolResult, tool_fn};
use serde_json::{Value, json};

use crate::support::priced;

const TRIAGE: &str = "You are triage.";
const BILLING: &str = "You are billing.";

fn last_user(request: &ModelRequest) -> String {
    request
        .messages
        .iter()
        .rev()
        .find_map(|m| match m {
            Message::User { .. } => Some(m.content().to_owned()),
            _ => None,
        })
        .unwrap_or_default()
}

fn call(name: &str) -> ModelResponse {
    let mut response = ModelResponse::text("scripted:desk", "");
    response.tool_calls = vec![ToolCall::new(format!("c-{name}"), name, json!({"reason": "theirs"}))];
    response
}

/// Triage hands money questions to billing; billing answers them (refunding first when asked
/// to), and hands the conversation back when thanked.
fn desk() -> ScriptedClient {
    ScriptedClient::from_fn(|request| {
        let user = last_user(request);
        let answered = matches!(request.messages.last(), Some(Message::Tool { .. }));
        let last_tool = request.messages.iter().rev().find_map(|m| match m {
            Message::Tool { name, .. } => Some(name.clone()),
            _ => None,
        });
        let reply = if request.system.starts_with(TRIAGE) {
            if user.contains("refund") && !answered {
                call("handoff_to_billing")
            } else {
                ModelResponse::text("scripted:desk", format!("triage here: {user}"))
            }
        } else if user.contains("thanks") && !answered {
            call("handoff_to_triage")
        } else if user.contains("refund") && last_tool.as_deref() != Some("refund") {
            call("refund")
        } else {
            ModelResponse::text("scripted:desk", format!("billing here: {user}"))
        };
        priced(reply, 0.01)
    })
}

fn billing() -> Agent {
    Agent::builder().name("billing").instructions(BILLING).tools(["refund"]).build().unwrap()
}

fn triage(billing: &Agent) -> Agent {
    Agent::builder().name("triage").instructions(TRIAGE).tools(["none"]).handoff(billing).build().unwrap()
}

fn runtime(refunds: Arc<AtomicU32>) -> Runtime {
    let refund = tool_fn("refund", "Refunds the last order.", move |_: Value, _ctx| {
        let refunds = refunds.clone();
        async move {
            refunds.fetch_add(1, Ordering::SeqCst);
            Ok(ToolResult::text("refunded"))
        }
    })
    .build()
    .unwrap();
    Runtime::builder().tool(refund).unwrap().build()
}

fn handoff_spans(events: &[Event]) -> Vec<(SpanPhase, Value)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Span(s) if s.subject == SpanSubject::Handoff => {
                Some((s.phase, Value::Object(s.attributes.clone())))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_handoff_moves_the_conversation_until_it_is_handed_back() {
    let model = desk();
    let refunds = Arc::new(AtomicU32::new(0));
    let runtime = runtime(refunds.clone());
    let runner =
        Runner::builder(triage(&billing()), runtime.clone()).model(Arc::new(model.clone())).build().unwrap();

    // Turn 1: triage hands over; billing refunds and answers in the same turn.
    let events: Vec<Event> = runner.run("I want a refund", "s").map(Result::unwrap).collect().await;
    let mut fold = kaos_runner::TurnFold::default();
    events.iter().for_each(|e| fold.push(e));
    let response = fold.finish().unwrap();
    assert_eq!(response.text, "billing here: I want a refund");
    assert_eq!(&*response.agent, "billing");
    assert_eq!(&*response.agent_fingerprint, billing().fingerprint().as_str());
    assert_eq!(refunds.load(Ordering::SeqCst), 1);
    assert_eq!(response.model_calls, 3);
    assert!((response.cost_usd - 0.03).abs() < 1e-9);
    let spans = handoff_spans(&events);
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0], (SpanPhase::Start, json!({"from": "triage", "to": "billing"})));
    assert_eq!(spans[1].0, SpanPhase::Complete);
    // Events after the handoff are stamped with billing.
    let summary = events.last().unwrap();
    assert!(matches!(summary.kind, EventKind::TurnSummary { .. }));
    assert_eq!(&*summary.agent, "billing");
    // Billing saw the whole conversation, its own instructions and tools, and a way back.
    let requests = model.requests();
    let second = &requests[1];
    assert!(second.system.starts_with(BILLING), "{}", second.system);
    let tools: Vec<&str> = second.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tools, ["refund", "handoff_to_triage"]);
    assert_eq!(second.messages[0].content(), "I want a refund");
    assert_eq!(requests[0].tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["handoff_to_billing"]);

    // Turn 2 goes straight to billing: one model call.
    let before = model.requests_len();
    let second = runner.turn("what is my balance?", "s").await.unwrap();
    assert_eq!((second.text.as_str(), &*second.agent), ("billing here: what is my balance?", "billing"));
    assert_eq!(model.requests_len() - before, 1);

    // Another Runner over the same storage (another process) knows who holds the session.
    let other = Runner::builder(triage(&billing()), runtime.clone())
        .model(Arc::new(model.clone()))
        .session_cache(0)
        .build()
        .unwrap();
    let third = other.turn("and my address?", "s").await.unwrap();
    assert_eq!(&*third.agent, "billing");

    // Thanked, billing hands back; triage answers, and keeps the next turn.
    let fourth = other.turn("thanks", "s").await.unwrap();
    assert_eq!((fourth.text.as_str(), &*fourth.agent), ("triage here: thanks", "triage"));
    let fifth = runner.turn("hello again", "s").await.unwrap();
    assert_eq!((fifth.text.as_str(), &*fifth.agent), ("triage here: hello again", "triage"));
    // The history keeps the handoff calls, well-formed.
    let history = runner.history("s").await.unwrap();
    let handoffs = history
        .iter()
        .filter(|m| matches!(m, Message::Tool { name, .. } if name.starts_with("handoff_to_")))
        .count();
    assert_eq!(handoffs, 2);
}

#[tokio::test]
async fn the_permission_policy_decides_handoffs_like_any_tool() {
    let model = desk();
    let agent = triage(&billing()).to_builder().permit("handoff_to_*", Decision::Deny).build().unwrap();
    let runner = Runner::builder(agent, runtime(Arc::new(AtomicU32::new(0))))
        .model(Arc::new(model.clone()))
        .build()
        .unwrap();
    let response = runner.turn("I want a refund", "s").await.unwrap();
    assert_eq!(&*response.agent, "triage");
    assert_eq!(response.text, "triage here: I want a refund");
    assert!(response.tool_calls[0].is_error, "{:?}", response.tool_calls);
    assert!(model.requests().iter().all(|r| r.system.starts_with(TRIAGE)));
}

#[tokio::test]
async fn handoffs_in_one_turn_are_bounded_by_the_depth_limit() {
    // Two agents that always hand over to each other.
    let ping_pong = ScriptedClient::from_fn(|request| {
        let target =
            if request.system.starts_with(TRIAGE) { "handoff_to_billing" } else { "handoff_to_triage" };
        match request.messages.last() {
            Some(Message::Tool { content, .. }) if content.starts_with("Error:") => {
                ScriptedReply::text(format!("stuck: {content}"))
            }
            _ => ScriptedReply::Response(call(target)),
        }
    });
    let agent = triage(&billing()).to_builder().max_delegation_depth(2).build().unwrap();
    let runner = Runner::builder(agent, runtime(Arc::new(AtomicU32::new(0))))
        .model(Arc::new(ping_pong))
        .build()
        .unwrap();
    let response = runner.turn("hello", "s").await.unwrap();
    assert_eq!(&*response.agent, "triage");
    assert_eq!(
        response.text,
        "stuck: Error: This turn already handed the conversation over 2 time(s), the limit; answer yourself."
    );
}

#[tokio::test]
async fn a_handoff_target_pauses_and_the_root_runner_resumes_it() {
    let model = desk();
    let refunds = Arc::new(AtomicU32::new(0));
    let careful = billing().to_builder().permit("refund", Decision::Ask).build().unwrap();
    let runtime = runtime(refunds.clone());
    let runner =
        Runner::builder(triage(&careful), runtime.clone()).model(Arc::new(model.clone())).build().unwrap();
    let paused = runner.turn("I want a refund", "s").await.unwrap();
    assert_eq!(paused.stop_reason, StopReason::ApprovalRequired);
    assert_eq!(&*paused.agent, "billing");
    assert_eq!(refunds.load(Ordering::SeqCst), 0);
    let state = runner.run_state(&paused.run_id).await.unwrap();
    assert_eq!(state.agent_fingerprint, careful.fingerprint().as_str());

    // Another process resumes the same run with billing, from the pending call.
    let other = Runner::builder(triage(&careful), runtime).model(Arc::new(model.clone())).build().unwrap();
    let done = other.resume_turn(state, Approval::approve()).await.unwrap();
    assert_eq!((done.stop_reason, &*done.agent), (StopReason::Completed, "billing"));
    assert_eq!(done.text, "billing here: I want a refund");
    assert_eq!(refunds.load(Ordering::SeqCst), 1);
    let next = other.turn("one more", "s").await.unwrap();
    assert_eq!(&*next.agent, "billing");
}

#[tokio::test]
async fn two_different_handoff_agents_with_one_name_are_a_team_error() {
    let a = Agent::builder().name("billing").instructions("A").build().unwrap();
    let b = Agent::builder().name("billing").instructions("B").build().unwrap();
    let middle = Agent::builder().name("middle").handoff(&b).build().unwrap();
    let root = Agent::builder().name("root").handoff(&a).handoff(&middle).build().unwrap();
    match Runner::builder(root, Runtime::test_mode()).build() {
        Err(error @ RunError::Team { .. }) => {
            assert!(matches!(&error, RunError::Team { name } if name == "billing"));
            assert_eq!(error.kind(), "team");
            assert!(error.to_string().contains("\"billing\""), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

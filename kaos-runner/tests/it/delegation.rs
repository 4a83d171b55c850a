#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use kaos_agent::{Agent, Decision};
use kaos_providers::{Message, ModelRequest, ModelResponse, ScriptedClient, ScriptedReply, Usage};
use kaos_runner::{Event, EventKind, Runner, SpanPhase, SpanSubject, StopReason};
use kaos_runtime::Runtime;
use kaos_tools::{ToolResult, tool_fn};
use serde_json::{Value, json};

use crate::support::{events, priced};

const COORDINATOR: &str = "You coordinate.";
const HELPER: &str = "You help.";

fn last_tool_result(request: &ModelRequest) -> Option<String> {
    match request.messages.last() {
        Some(Message::Tool { content, .. }) => Some(content.clone()),
        _ => None,
    }
}

/// The coordinator delegates `task` to `helper` once, then answers with the helper's result;
/// the helper calls `helper_tool` once (if any), then answers with what it got.
fn model(helper_tool: Option<&'static str>) -> ScriptedClient {
    ScriptedClient::from_fn(move |request| {
        let result = last_tool_result(request);
        if request.system.starts_with(COORDINATOR) {
            let mut response = ModelResponse::text("scripted:team", "");
            match result {
                Some(result) => response.text = format!("helper said: {result}"),
                None => {
                    response.tool_calls =
                        vec![kaos_providers::ToolCall::new("d1", "helper", json!({"task": "summarize"}))]
                }
            }
            return priced(response, 0.01);
        }
        let mut response = ModelResponse::text("scripted:team", "");
        match (result, helper_tool) {
            (Some(result), _) => response.text = format!("done ({result})"),
            (None, Some(tool)) => {
                response.tool_calls = vec![kaos_providers::ToolCall::new("h1", tool, json!({"arg": 1}))]
            }
            (None, None) => response.text = "summary".into(),
        }
        priced(response, 0.02)
    })
}

fn runner(coordinator: Agent, runs: Arc<AtomicU32>, model: &ScriptedClient) -> Runner {
    let wipe = tool_fn("wipe", "Wipes everything.", move |_: Value, _ctx| {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(ToolResult::text("wiped"))
        }
    })
    .build()
    .unwrap();
    let runtime = Runtime::builder().tool(wipe).unwrap().build();
    Runner::builder(coordinator, runtime).model(Arc::new(model.clone())).build().unwrap()
}

fn helper() -> Agent {
    Agent::builder().name("helper").instructions(HELPER).build().unwrap()
}

#[tokio::test]
async fn a_sub_agent_cannot_run_a_tool_the_parent_policy_denies() {
    let runs = Arc::new(AtomicU32::new(0));
    let model = model(Some("wipe"));
    let coordinator = Agent::builder()
        .instructions(COORDINATOR)
        .permit("wipe", Decision::Deny)
        .delegate("helper", "Helps.", &helper())
        .build()
        .unwrap();
    let runner = runner(coordinator, runs.clone(), &model);
    let response = runner.turn("go", "p").await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let denial = "Error: Denied by the permission policy (permission rule 0); do not retry this call.";
    assert_eq!(response.text, format!("helper said: done ({denial})"));
    assert_eq!(response.tool_calls.len(), 1);
    assert_eq!(response.tool_calls[0].result, format!("done ({denial})"));
    // The sub-agent ran in its derived session.
    assert_eq!(runner.history("p.sub.helper").await.unwrap().len(), 4);
}

#[tokio::test]
async fn the_sub_agent_cost_rolls_up_into_the_parent_turn_with_subagent_spans() {
    let model = model(None);
    let coordinator =
        Agent::builder().instructions(COORDINATOR).delegate("helper", "Helps.", &helper()).build().unwrap();
    let runner = runner(coordinator, Arc::new(AtomicU32::new(0)), &model);
    let events = events(&runner, "go", "p").await;
    let mut fold = kaos_runner::TurnFold::default();
    events.iter().for_each(|e| fold.push(e));
    let response = fold.finish().unwrap();
    assert_eq!(response.text, "helper said: summary");
    assert_eq!(response.stop_reason, StopReason::Completed);
    // Two coordinator calls at $0.01, one helper call at $0.02.
    assert!((response.cost_usd - 0.04).abs() < 1e-9, "{}", response.cost_usd);
    assert_eq!(response.usage, Usage::new(300, 30));
    assert_eq!(response.model_calls, 2);
    assert_eq!(model.requests_len(), 3);
    let spans: Vec<(SpanPhase, Value)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Span(s) if s.subject == SpanSubject::Subagent => {
                Some((s.phase, Value::Object(s.attributes.clone())))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        spans,
        [
            (SpanPhase::Start, json!({"subagent_name": "helper", "task": "summarize"})),
            (
                SpanPhase::Complete,
                json!({"subagent_name": "helper", "task": "summarize", "result_summary": "summary"})
            ),
        ]
    );
    // The sub-agent's own events are forwarded inside the subagent span, wrapped (so they do
    // not count twice in the parent's response).
    let position = |phase: SpanPhase| {
        events
            .iter()
            .position(|e| matches!(&e.kind, EventKind::Span(s) if s.subject == SpanSubject::Subagent && s.phase == phase))
            .unwrap()
    };
    let (start, end) = (position(SpanPhase::Start), position(SpanPhase::Complete));
    let forwarded: Vec<(usize, &Event)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.kind {
            EventKind::Subagent { subagent, event } if subagent == "helper" => Some((i, event.as_ref())),
            _ => None,
        })
        .collect();
    assert!(forwarded.iter().all(|(i, e)| start < *i && *i < end && &*e.session_id == "p.sub.helper"));
    let inner: String = forwarded
        .iter()
        .filter_map(|(_, e)| match &e.kind {
            EventKind::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(inner, "summary");
    assert!(matches!(forwarded.last().unwrap().1.kind, EventKind::TurnSummary { .. }));
    // The persisted turn agrees with the fold.
    let memory = runner.export_session("p").await.unwrap();
    assert!((memory.records[0].cost_usd - 0.04).abs() < 1e-9);
}

#[tokio::test]
async fn at_the_depth_limit_a_delegate_call_is_an_error_result() {
    // The helper has a delegate of its own, but depth 1 allows only one level.
    let inner = Agent::builder().name("inner").instructions("You are inner.").build().unwrap();
    let nested_helper = Agent::builder()
        .name("helper")
        .instructions(HELPER)
        .delegate("inner", "Inner.", &inner)
        .build()
        .unwrap();
    let model = model(Some("inner"));
    let coordinator = Agent::builder()
        .instructions(COORDINATOR)
        .max_delegation_depth(1)
        .delegate("helper", "Helps.", &nested_helper)
        .build()
        .unwrap();
    let runner = runner(coordinator, Arc::new(AtomicU32::new(0)), &model);
    let response = runner.turn("go", "p").await.unwrap();
    let error = "Error: Delegation depth limit reached (1 nested sub-agent(s)); do the task yourself.";
    assert_eq!(response.text, format!("helper said: done ({error})"));
    // Nothing ran as `inner`: coordinator twice, helper twice.
    assert_eq!(model.requests_len(), 4);
    assert!(model.requests().iter().all(|r| !r.system.starts_with("You are inner.")));
}

#[tokio::test]
async fn a_plain_chat_turn_makes_exactly_one_model_request() {
    let model = ScriptedClient::new().with_text("hello");
    let agent = Agent::builder().delegate("helper", "Helps.", &helper()).build().unwrap();
    let runner = runner(agent, Arc::new(AtomicU32::new(0)), &model);
    let response = runner.turn("hi", "c").await.unwrap();
    assert_eq!(response.text, "hello");
    assert_eq!(model.requests_len(), 1);
    // The delegate is offered as a tool taking a task.
    let offered = &model.requests()[0].tools;
    let helper = offered.iter().find(|t| t.name == "helper").unwrap();
    assert_eq!(helper.parameters["required"], json!(["task"]));
}

/// A scripted model priced by the shipped table for the request's model, that honours
/// `max_output_tokens` as vendors do: each reply wants 2,000 output tokens.
#[derive(Debug)]
struct PricedScript {
    script: ScriptedClient,
    pricing: kaos_providers::Pricing,
}

impl PricedScript {
    fn new(script: ScriptedClient) -> Self {
        Self { script, pricing: kaos_providers::Pricing::default() }
    }

    fn vendor_model(model: &str) -> &str {
        model.split_once(':').map_or(model, |(_, name)| name)
    }
}

#[async_trait::async_trait]
impl kaos_providers::ModelClient for PricedScript {
    fn capabilities(&self) -> kaos_providers::Capabilities {
        kaos_providers::Capabilities::default()
    }

    fn price(&self, model: &str) -> Option<kaos_providers::ModelPrice> {
        self.pricing.price(Self::vendor_model(model)).copied()
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, kaos_providers::ProviderError> {
        let mut response = self.script.complete(request).await?;
        let out = request.sampling.max_output_tokens.map_or(2_000, |max| u64::from(max).min(2_000));
        response.usage = Usage::new(request.estimated_input_tokens(), out);
        response.cost_usd = self.pricing.cost(Self::vendor_model(&request.model), &response.usage);
        Ok(response)
    }
}

/// The coordinator delegates once, then answers; the helper calls `confirm`, then `wipe`,
/// then answers.
fn confirm_then_wipe() -> ScriptedClient {
    ScriptedClient::from_fn(move |request| {
        let result = last_tool_result(request);
        let mut response = ModelResponse::text("gpt-4.1-mini", "");
        if request.system.starts_with(COORDINATOR) {
            match result {
                Some(result) => response.text = format!("helper said: {result}"),
                None => {
                    response.tool_calls =
                        vec![kaos_providers::ToolCall::new("d1", "helper", json!({"task": "clean up"}))]
                }
            }
            return ScriptedReply::Response(response);
        }
        let calls = request.messages.iter().filter(|m| matches!(m, Message::Tool { .. })).count();
        match calls {
            0 => response.tool_calls = vec![kaos_providers::ToolCall::new("h1", "confirm", json!({}))],
            1 => response.tool_calls = vec![kaos_providers::ToolCall::new("h2", "wipe", json!({}))],
            _ => response.text = format!("done ({})", result.unwrap_or_default()),
        }
        ScriptedReply::Response(response)
    })
}

fn confirm_and_wipe_runtime(wipes: Arc<AtomicU32>) -> Runtime {
    let wipe = tool_fn("wipe", "Wipes everything.", move |_: Value, _ctx| {
        let wipes = wipes.clone();
        async move {
            wipes.fetch_add(1, Ordering::SeqCst);
            Ok(ToolResult::text("wiped"))
        }
    })
    .build()
    .unwrap();
    let confirm =
        tool_fn("confirm", "Confirms.", |_: Value, _ctx| async move { Ok(ToolResult::text("confirmed")) })
            .build()
            .unwrap();
    Runtime::builder().tool(wipe).unwrap().tool(confirm).unwrap().build()
}

fn openai_helper() -> Agent {
    Agent::builder().name("helper").model("openai:gpt-4.1-mini").instructions(HELPER).build().unwrap()
}

/// Issue 13, defect 2: a sub-agent's call that needs approval does not let the rest of its
/// run escape the parent's policy.
#[tokio::test]
async fn a_paused_sub_agent_stays_under_the_parent_policy() {
    let wipes = Arc::new(AtomicU32::new(0));
    let coordinator = Agent::builder()
        .model("openai:gpt-4.1-mini")
        .instructions(COORDINATOR)
        .permit("confirm", Decision::Ask)
        .permit("wipe", Decision::Deny)
        .delegate("helper", "Helps.", &openai_helper())
        .build()
        .unwrap();
    let model = PricedScript::new(confirm_then_wipe());
    let runner = Runner::builder(coordinator, confirm_and_wipe_runtime(wipes.clone()))
        .model(Arc::new(model))
        .build()
        .unwrap();
    let response = runner.turn("go", "p").await.unwrap();
    assert_eq!(wipes.load(Ordering::SeqCst), 0, "the sub-agent ran a tool the parent denies");
    assert_eq!(response.stop_reason, StopReason::Completed);
    let denial = "Error: Denied by the permission policy (permission rule 1); do not retry this call.";
    assert_eq!(response.text, format!("helper said: done ({denial})"));
}

/// Issue 13, defect 2: … nor the parent's remaining budget.
#[tokio::test]
async fn a_paused_sub_agent_stays_within_the_parent_budget() {
    let wipes = Arc::new(AtomicU32::new(0));
    // A reply costs about $0.0032 (2,000 output tokens at $1.60 per million); the cap allows
    // the coordinator's first call and part of one of the helper's.
    let cap = 0.006;
    let coordinator = Agent::builder()
        .model("openai:gpt-4.1-mini")
        .instructions(COORDINATOR)
        .permit("confirm", Decision::Ask)
        .delegate("helper", "Helps.", &openai_helper())
        .budget(kaos_agent::Budget::unlimited().with_max_cost_usd(cap))
        .build()
        .unwrap();
    let model = PricedScript::new(confirm_then_wipe());
    let runner = Runner::builder(coordinator, confirm_and_wipe_runtime(wipes.clone()))
        .model(Arc::new(model))
        .build()
        .unwrap();
    let response = runner.turn("go", "p").await.unwrap();
    assert!(response.cost_usd <= cap, "spent {} of {cap}", response.cost_usd);
    assert_eq!(wipes.load(Ordering::SeqCst), 0);
}

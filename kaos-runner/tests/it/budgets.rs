//! Budgets against real vendor clients: a Runner on the real OpenAI and OpenAI-compatible
//! clients, the shipped price table, and a loopback server speaking the Chat Completions wire
//! format that lies the ways real servers do — it reports no usage, counts the prompt up to
//! 1.5× higher than KAOS's estimate, or streams more output than the limit it was sent.
//!
//! What a call truly spent is counted on the server's side of the wire: the prompt as the
//! server counts it, plus every output token (one per streamed chunk) the client read.
#![cfg(all(feature = "openai", feature = "openai-compatible"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kaos_agent::{Agent, Budget};
use kaos_providers::{
    Message, ModelClient, ModelPrice, ModelRequest, OpenAiClient, OpenAiCompatibleClient, Pricing,
    SecretString, ToolCall, ToolDefinition,
};
use kaos_runner::{EventKind, Runner, StopReason, TurnFold, TurnResponse};
use kaos_runtime::Runtime;
use kaos_tools::{ToolAnnotations, ToolResult, tool_fn};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the server answers one call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Lie {
    /// Honest usage, output within the limit.
    None,
    /// No `usage` chunk although `stream_options.include_usage` asked for it.
    NoUsage,
    /// Streams more output tokens than the limit it was sent (its usage, at the very end,
    /// counts them all).
    PastLimit,
}

/// One planned answer.
#[derive(Debug, Clone, Copy)]
struct Plan {
    lie: Lie,
    /// The server counts the prompt as this many times KAOS's estimate (1.0..=1.5).
    prompt_factor: f64,
    /// Output tokens the model wants to produce.
    output: u64,
    /// Answer with a tool call (the turn goes on) rather than text.
    tool_call: bool,
    /// Name the model in the chunks (else the response names none).
    names_model: bool,
}

impl Plan {
    fn answer(output: u64) -> Self {
        Plan { lie: Lie::None, prompt_factor: 1.0, output, tool_call: false, names_model: true }
    }
}

/// What the server served for one call.
#[derive(Debug, Clone)]
struct Served {
    /// The prompt as the server counts it.
    prompt: u64,
    /// The output limit the request carried.
    limit: Option<u64>,
    /// The output tokens the server streamed.
    sent: u64,
    body: Value,
}

#[derive(Debug, Default)]
struct Script {
    plans: VecDeque<Plan>,
    served: Vec<Served>,
}

/// A Chat Completions server that follows a script of [`Plan`]s.
#[derive(Clone, Default)]
struct Liar {
    script: Arc<Mutex<Script>>,
}

impl Liar {
    fn load(&self, plans: impl IntoIterator<Item = Plan>) {
        let mut script = self.script.lock().unwrap();
        script.plans = plans.into_iter().collect();
        script.served.clear();
    }

    fn served(&self) -> Vec<Served> {
        self.script.lock().unwrap().served.clone()
    }

    /// Serves Chat Completions on a loopback port (HTTP/1.1, keep-alive, `TCP_NODELAY` so that
    /// thousands of calls take seconds); returns the base URL.
    async fn serve(self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                stream.set_nodelay(true).unwrap();
                let liar = self.clone();
                tokio::spawn(async move {
                    // A client that stops reading a stream closes the connection: that ends it.
                    let _ = liar.connection(stream).await;
                });
            }
        });
        format!("http://{addr}/v1")
    }

    async fn connection(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
            assert!(head.starts_with("post /v1/chat/completions "), "{head}");
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap();
            while buf.len() < head_end + length {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body: Value = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap();
            buf.drain(..head_end + length);
            let answer = self.answer(&body);
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n{answer}",
                answer.len()
            );
            stream.write_all(response.as_bytes()).await?;
        }
    }
}

/// KAOS's own estimate of the prompt a Chat Completions body carries, rebuilt from the wire.
fn estimate_of(body: &Value) -> u64 {
    let mut system = String::new();
    let mut messages = Vec::new();
    for m in body["messages"].as_array().unwrap() {
        let content = m["content"].as_str().unwrap_or_default().to_owned();
        match m["role"].as_str().unwrap() {
            "system" => system = content,
            "user" => messages.push(Message::user(content)),
            "tool" => messages.push(Message::tool(m["tool_call_id"].as_str().unwrap(), "", content, false)),
            "assistant" => {
                let tool_calls = m["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        let text = c["function"]["arguments"].as_str().unwrap();
                        let arguments =
                            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
                        ToolCall::new(
                            c["id"].as_str().unwrap(),
                            c["function"]["name"].as_str().unwrap(),
                            arguments,
                        )
                    })
                    .collect();
                messages.push(Message::Assistant { content, tool_calls });
            }
            other => panic!("unexpected role {other}"),
        }
    }
    let tools: Vec<ToolDefinition> = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| ToolDefinition {
            name: t["function"]["name"].as_str().unwrap().to_owned(),
            description: t["function"]["description"].as_str().unwrap().to_owned(),
            parameters: t["function"]["parameters"].clone(),
        })
        .collect();
    ModelRequest::new("x", messages).with_system(system).with_tools(tools).estimated_input_tokens()
}

impl Liar {
    /// The event stream answering `body`, as the next plan says.
    fn answer(&self, body: &Value) -> String {
        let mut script = self.script.lock().unwrap();
        let plan = script.plans.pop_front().unwrap_or(Plan::answer(5));
        let prompt = (estimate_of(body) as f64 * plan.prompt_factor).floor() as u64;
        let limit = ["max_completion_tokens", "max_tokens"].iter().find_map(|f| body[*f].as_u64());
        let sent = match (plan.lie, limit) {
            (Lie::PastLimit, Some(limit)) => limit + plan.output.max(1),
            (_, Some(limit)) => plan.output.min(limit),
            (_, None) => plan.output,
        }
        .max(1);
        let model = plan.names_model.then_some("gpt-4.1-mini-2025-04-14");
        let chunk = |delta: Value, finish: Value| {
            let mut chunk = json!({"id": "c", "object": "chat.completion.chunk",
                                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            if let Some(model) = model {
                chunk["model"] = json!(model);
            }
            chunk
        };
        // Every chunk of output is one token.
        let mut chunks = Vec::new();
        let finish = if plan.tool_call && sent >= 3 {
            let id = format!("call_{}", script.served.len());
            chunks.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": id, "type": "function",
                                       "function": {"name": "noop", "arguments": ""}}]}),
                Value::Null,
            ));
            let mut pieces = vec!["{\"a\":\"".to_owned()];
            pieces.extend((0..sent - 3).map(|i| ["x", "yz", "abc", " wxyz"][i as usize % 4].to_owned()));
            pieces.push("\"}".to_owned());
            for piece in pieces {
                chunks.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    Value::Null,
                ));
            }
            "tool_calls"
        } else {
            for i in 0..sent {
                let token = ["Hi", " a", " b", "c", " word"][i as usize % 5];
                chunks.push(chunk(json!({"content": token}), Value::Null));
            }
            if limit.is_some_and(|l| sent >= l) { "length" } else { "stop" }
        };
        chunks.push(chunk(json!({}), json!(finish)));
        if plan.lie != Lie::NoUsage {
            let mut usage = json!({"id": "c", "object": "chat.completion.chunk", "choices": [],
                                   "usage": {"prompt_tokens": prompt, "completion_tokens": sent,
                                             "total_tokens": prompt + sent}});
            if let Some(model) = model {
                usage["model"] = json!(model);
            }
            chunks.push(usage);
        }
        script.served.push(Served { prompt, limit, sent, body: body.clone() });
        chunks.iter().map(|c| format!("data: {c}\n\n")).chain(["data: [DONE]\n\n".to_owned()]).collect()
    }
}

fn runtime() -> Runtime {
    let noop =
        tool_fn("noop", "Does nothing.", |_input: Value, _ctx| async move { Ok(ToolResult::text("ok")) })
            .annotations(ToolAnnotations::read_only())
            .build()
            .unwrap();
    Runtime::test_mode().to_builder().tool(noop).unwrap().build()
}

fn runner(model: &str, budget: Budget, client: Arc<dyn ModelClient>, runtime: &Runtime) -> Runner {
    let agent = Agent::builder().name("budgeted").model(model).budget(budget).build().unwrap();
    Runner::builder(agent, runtime.clone()).model(client).build().unwrap()
}

fn openai(base_url: &str) -> Arc<dyn ModelClient> {
    Arc::new(OpenAiClient::new(SecretString::from("sk-test")).with_base_url(base_url))
}

fn compatible(base_url: &str) -> Arc<dyn ModelClient> {
    Arc::new(OpenAiCompatibleClient::new(base_url, None))
}

fn shipped_price() -> ModelPrice {
    *Pricing::default().price("gpt-4.1-mini").unwrap()
}

/// A turn's events, and how many output tokens (streamed deltas) its calls delivered.
async fn run(runner: &Runner, session: &str) -> (TurnResponse, Vec<Value>, u64) {
    let events: Vec<_> = runner.run("Go.", session).collect().await;
    let mut delivered = 0;
    let mut usage_events = Vec::new();
    let mut fold = TurnFold::default();
    for event in &events {
        let event = event.as_ref().unwrap();
        fold.push(event);
        match &event.kind {
            EventKind::TextDelta { .. } | EventKind::ToolCallArgsDelta { .. } => delivered += 1,
            EventKind::UsageObserved { .. } => usage_events.push(serde_json::to_value(event).unwrap()),
            _ => {}
        }
    }
    let response = fold.finish().unwrap();
    (response, usage_events, delivered)
}

/// Finding 1: a cost cap admits every priced vendor model, named `provider:model` as agents
/// name them; and a response that names no model is priced by the model asked for.
#[tokio::test]
async fn a_cost_cap_admits_priced_vendor_models_and_prices_a_response_naming_none() {
    let liar = Liar::default();
    let server = liar.clone().serve().await;
    let runtime = runtime();
    let price = shipped_price();
    for (model, client) in
        [("openai:gpt-4.1-mini", openai(&server)), ("openai-compatible:gpt-4.1-mini", compatible(&server))]
    {
        for names_model in [true, false] {
            liar.load([Plan { names_model, ..Plan::answer(8) }]);
            let runner = runner(model, Budget::unlimited().with_max_cost_usd(0.01), client.clone(), &runtime);
            let (response, _, delivered) = run(&runner, "s").await;
            assert_eq!(
                (response.stop_reason, response.model_calls, response.unpriced_model_calls),
                (StopReason::Completed, 1, 0),
                "{model} (names model: {names_model}): {response:?}"
            );
            let served = liar.served();
            let expected = (served[0].prompt as f64 * price.input + delivered as f64 * price.output) / 1e6;
            assert!(
                (response.cost_usd - expected).abs() < 1e-12,
                "{model}: {} != {expected}",
                response.cost_usd
            );
            assert!(served[0].limit.is_some(), "a capped call carries an output limit");
        }
    }
}

/// Finding 2: a server that reports no usage is charged a bound, said to be an estimate, and
/// the token cap holds (today: a cap of 2,000 was spent several times over, counted as 0).
#[tokio::test]
async fn a_token_cap_holds_when_the_server_reports_no_usage() {
    let liar = Liar::default();
    let server = liar.clone().serve().await;
    let runtime = runtime();
    let cap = 2_000;
    let plan =
        Plan { lie: Lie::NoUsage, prompt_factor: 1.5, output: 400, tool_call: true, names_model: true };
    liar.load(std::iter::repeat_n(plan, 20));
    let runner =
        runner("openai:gpt-4.1-mini", Budget::unlimited().with_max_tokens(cap), openai(&server), &runtime);
    let (response, usage_events, delivered) = run(&runner, "s").await;
    let served = liar.served();
    let spent: u64 = served.iter().map(|s| s.prompt).sum::<u64>() + delivered;
    assert!(spent <= cap, "spent {spent} of {cap} in {} calls", served.len());
    assert_eq!(response.stop_reason, StopReason::BudgetExceeded);
    assert!(response.usage.total_tokens() >= spent, "charged {:?} for {spent}", response.usage);
    assert!(!usage_events.is_empty());
    for event in &usage_events {
        assert_eq!(event["usage_estimated"], json!(true), "{event}");
    }
}

/// Finding 2: every OpenAI-format server is asked for streamed usage.
#[tokio::test]
async fn every_openai_format_server_is_asked_for_streamed_usage() {
    let liar = Liar::default();
    let server = liar.clone().serve().await;
    let runtime = runtime();
    for client in [openai(&server), compatible(&server)] {
        liar.load([Plan::answer(3)]);
        let (response, ..) =
            run(&runner("openai:gpt-4.1-mini", Budget::unlimited(), client, &runtime), "s").await;
        assert_eq!(response.stop_reason, StopReason::Completed);
        assert_eq!(liar.served()[0].body["stream_options"], json!({"include_usage": true}));
    }
}

/// Finding 2: a server that streams past the limit it was sent is cut off at the limit.
#[tokio::test]
async fn output_past_the_limit_is_not_read() {
    let liar = Liar::default();
    let server = liar.clone().serve().await;
    let runtime = runtime();
    liar.load([Plan {
        lie: Lie::PastLimit,
        prompt_factor: 1.0,
        output: 500,
        tool_call: false,
        names_model: true,
    }]);
    let runner =
        runner("openai:gpt-4.1-mini", Budget::unlimited().with_max_tokens(300), openai(&server), &runtime);
    let (response, _, delivered) = run(&runner, "s").await;
    let served = liar.served();
    let limit = served[0].limit.unwrap();
    assert!(served[0].sent > limit);
    assert!(delivered <= limit, "read {delivered} output tokens past the limit {limit}");
    assert!(served[0].prompt + delivered <= 300);
    assert!(response.usage.total_tokens() <= 300, "{:?}", response.usage);
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        prop_oneof![2 => Just(Lie::None), 1 => Just(Lie::NoUsage), 1 => Just(Lie::PastLimit)],
        prop_oneof![Just(1.0), Just(1.5), 1.0f64..=1.5],
        1u64..300,
        prop::bool::weighted(0.7),
        any::<bool>(),
    )
        .prop_map(|(lie, prompt_factor, output, tool_call, names_model)| Plan {
            lie,
            prompt_factor,
            output,
            tool_call,
            names_model,
        })
}

/// The property: over random sequences of calls to a server lying in each of these ways, the
/// tokens and dollars truly spent never pass the turn's caps. Trials share one server.
#[test]
fn caps_hold_against_a_lying_server_in_10_000_trials() {
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let liar = Liar::default();
    let server = tokio.block_on(liar.clone().serve());
    let runtime = runtime();
    let clients = [openai(&server), compatible(&server)];
    let price = shipped_price();
    let cases = std::env::var("KAOS_BUDGET_TRIALS").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let mut proptest = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let trial = std::sync::atomic::AtomicU64::new(0);
    let stats = Mutex::new([0u64; 5]); // trials, calls, stopped by the budget, unreported usage, cut streams
    let strategy = (
        prop::option::of(50u64..1_500),
        prop::option::of(0.00002f64..0.001),
        prop::collection::vec(plan(), 1..8),
        any::<bool>(),
    );
    let result = proptest.run(&strategy, |(tokens, usd, plans, compat)| {
        let mut budget = Budget::unlimited();
        budget.max_tokens = tokens.or(usd.is_none().then_some(1_000));
        budget.max_cost_usd = usd;
        let model = if compat { "openai-compatible:gpt-4.1-mini" } else { "openai:gpt-4.1-mini" };
        let runner = runner(model, budget, clients[usize::from(compat)].clone(), &runtime);
        liar.load(plans);
        let session = format!("trial-{}", trial.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let (response, usage_events, delivered) = tokio.block_on(run(&runner, &session));
        let served = liar.served();
        let prompt: u64 = served.iter().map(|s| s.prompt).sum();
        let spent_tokens = prompt + delivered;
        let spent_usd = (prompt as f64 * price.input + delivered as f64 * price.output) / 1e6;
        if let Some(cap) = budget.max_tokens {
            prop_assert!(spent_tokens <= cap, "spent {} tokens of {}: {:?}", spent_tokens, cap, served);
        }
        if let Some(cap) = budget.max_cost_usd {
            prop_assert!(spent_usd <= cap + 1e-12, "spent ${} of ${}: {:?}", spent_usd, cap, served);
        }
        prop_assert!(
            response.usage.total_tokens() >= spent_tokens,
            "charged {:?} for {}",
            response.usage,
            spent_tokens
        );
        let mut stats = stats.lock().map_err(|e| TestCaseError::fail(e.to_string()))?;
        stats[0] += 1;
        stats[1] += served.len() as u64;
        stats[2] += u64::from(response.stop_reason == StopReason::BudgetExceeded);
        stats[3] += usage_events.iter().filter(|e| e["usage_estimated"] == json!(true)).count() as u64;
        stats[4] += served.iter().filter(|s| s.limit.is_some_and(|l| s.sent > l)).count() as u64;
        Ok(())
    });
    let stats = *stats.lock().unwrap();
    eprintln!(
        "{} trials, {} calls, {} stopped by the budget, {} with usage estimated, {} streamed past the limit",
        stats[0], stats[1], stats[2], stats[3], stats[4]
    );
    result.unwrap();
    assert_eq!(stats[0], u64::from(cases));
    // Not vacuous: calls were made, budgets stopped turns, and the lies were told.
    assert!(
        stats[1] >= stats[0]
            && stats[2] > stats[0] / 10
            && stats[3] > stats[0] / 10
            && stats[4] > stats[0] / 20,
        "{stats:?}"
    );
}

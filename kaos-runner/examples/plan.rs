//! A plan-execute agent: the model proposes a plan, each step runs (with tools) in its own
//! span, a failed step leads to a new plan for the rest, and a last call answers from the
//! steps' results. Offline: a scripted model plays the LLM.
//!
//! `cargo run -p kaos-runner --example plan`

use std::sync::Arc;

use futures::StreamExt;
use kaos_agent::{Agent, Pattern};
use kaos_providers::{ModelResponse, ScriptedClient, ScriptedReply, ToolCall};
use kaos_runner::{EventKind, Runner, SpanPhase, SpanSubject, TurnFold};
use kaos_runtime::Runtime;
use kaos_tools::{ToolResult, tool_fn};
use serde_json::{Value, json};

const NOTES: &str = "Faster startup. New plugin API. Fixed two crashes on exit.";

/// A scripted reply costing $0.0010, as a real model's would.
fn priced(mut response: ModelResponse) -> ScriptedReply {
    response.usage.input_tokens = 300;
    response.usage.output_tokens = 40;
    response.cost_usd = Some(0.001);
    ScriptedReply::Response(response)
}

fn reply(value: Value) -> ScriptedReply {
    priced(ModelResponse::text("scripted:planner", value.to_string()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut count_call = ModelResponse::text("scripted:planner", "");
    count_call.tool_calls = vec![ToolCall::new("call_1", "word_count", json!({"text": NOTES}))];
    let model = ScriptedClient::new()
        // The plan.
        .with_reply(reply(json!({"steps": [
            "Read the release notes",
            "Count their words with word_count",
            "Compare with the previous release's notes"
        ]})))
        // Step 1, then step 2 (a tool call, then its result).
        .with_reply(reply(json!({"status": "done", "result": "two features and two crash fixes"})))
        .with_reply(priced(count_call))
        .with_reply(reply(json!({"status": "done", "result": "10 words"})))
        // Step 3 fails: a new plan for the rest, and its one step.
        .with_reply(reply(json!({"status": "failed", "result": "the previous notes are not available"})))
        .with_reply(reply(json!({"steps": ["Summarise this release on its own"]})))
        .with_reply(reply(json!({"status": "done", "result": "startup, plugins, crash fixes"})))
        // The answer from the steps' results.
        .with_reply(priced(ModelResponse::text(
            "scripted:planner",
            "This release (10 words of notes) brings faster startup, a plugin API and crash fixes.",
        )));

    let word_count = tool_fn("word_count", "Counts the words of a text.", |input: Value, _ctx| async move {
        let words = input["text"].as_str().unwrap_or_default().split_whitespace().count();
        Ok(ToolResult::text(format!("{words} words")))
    })
    .build()?;
    let runtime = Runtime::test_mode().to_builder().tool(word_count)?.build();
    let agent = Agent::builder().name("planner").pattern(Pattern::Plan).build()?;
    let runner = Runner::builder(agent, runtime).model(Arc::new(model)).build()?;

    let mut fold = TurnFold::default();
    let mut events = runner.run("Summarise the release notes and count their words.", "release");
    while let Some(event) = events.next().await {
        let event = event?;
        fold.push(&event);
        match &event.kind {
            EventKind::PlanProposed { revision, steps, reason } => {
                match reason.is_empty() {
                    true => println!("plan (revision {revision}):"),
                    false => println!("replan (revision {revision}, {reason}):"),
                }
                for (i, step) in steps.iter().enumerate() {
                    println!("  {}. {step}", i + 1);
                }
            }
            EventKind::Span(span) if span.subject == SpanSubject::Step && span.phase != SpanPhase::Start => {
                let attr =
                    |k: &str| span.attributes.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                println!("{} [{}]: {}", span.name, attr("status"), attr("result"));
            }
            _ => {}
        }
    }
    let response = fold.finish().ok_or("the run ended early")?;
    println!("answer: {}", response.text);
    println!("(stop: {:?}, model calls: {})", response.stop_reason, response.model_calls);
    println!("cost: ${:.4}", response.cost_usd);
    Ok(())
}

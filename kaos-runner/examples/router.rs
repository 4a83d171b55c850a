//! A router agent: each message is classified, then answered by the pattern it needs — chat
//! for small talk, research (verified citations) for questions about the documents. Shown with
//! both classifiers: keywords (no model call) and a cheap classifying model. Offline: a
//! scripted model plays the LLMs.
//!
//! `cargo run -p kaos-runner --example router`

use std::sync::Arc;

use futures::StreamExt;
use kaos_agent::{Agent, Classifier, ModelRole, Pattern, Route, RouterConfig, SectionKind};
use kaos_providers::{ModelRequest, ModelResponse, ScriptedClient, ScriptedReply};
use kaos_runner::{EventKind, NewItem, Runner, TurnFold};
use kaos_runtime::Runtime;
use serde_json::json;

/// The scripted LLM: a classifier (JSON route), a researcher (JSON claims) and a chatter.
fn reply(request: &ModelRequest) -> ScriptedReply {
    let schema = request.output_schema.as_ref();
    let question = request.messages.last().map(|m| m.content().to_lowercase()).unwrap_or_default();
    let (text, cost) = if schema.is_some_and(|s| s["properties"].get("route").is_some()) {
        let route = if question.contains("bridge") { "research" } else { "chat" };
        (json!({"route": route, "confidence": 0.9, "reason": "scripted"}).to_string(), 0.0001)
    } else if schema.is_some() {
        let answer = json!({
            "answer": "The bridge opened in 1932.",
            "claims": [{"claim": "Opened 1932.", "quote": "opened in 1932", "source": "bridge.md"}]
        });
        (answer.to_string(), 0.002)
    } else {
        ("Hello! Ask me about the bridge.".to_owned(), 0.001)
    };
    let mut response = ModelResponse::text("scripted:router", text);
    response.cost_usd = Some(cost);
    ScriptedReply::Response(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let by_keywords = RouterConfig::default()
        .with_classifier(Classifier::Rules)
        .with_route(Route::new(Pattern::Research, "questions about the documents").with_keywords(["bridge"]));
    let agents = [
        ("rules", Agent::builder().name("desk").pattern(Pattern::Router).router(by_keywords).build()?),
        (
            "model",
            Agent::builder()
                .name("desk")
                .pattern(Pattern::Router)
                .role_model(ModelRole::Classify, "scripted:small")
                .build()?,
        ),
    ];
    let mut cost = 0.0;
    for (classifier, agent) in agents {
        println!("== {classifier} classifier");
        let runner = Runner::builder(agent, Runtime::test_mode())
            .model(Arc::new(ScriptedClient::from_fn(reply)))
            .build()?;
        let doc = NewItem::text("The bridge opened in 1932.").with_metadata("name", json!("bridge.md"));
        runner.remember("visitor", SectionKind::Documents, [doc]).await?;
        for message in ["Hi!", "When did the bridge open?"] {
            let mut fold = TurnFold::default();
            let mut events = runner.run(message, "visitor");
            while let Some(event) = events.next().await {
                let event = event?;
                if let EventKind::IntentClassified { pattern, reason, .. } = &event.kind {
                    println!("> {message}\n  routed to {pattern} ({reason})");
                }
                fold.push(&event);
            }
            let response = fold.finish().ok_or("the run ended early")?;
            println!("  {}", response.text.replace('\n', "\n  "));
            cost += response.cost_usd;
        }
    }
    println!("cost: ${cost:.4}");
    Ok(())
}

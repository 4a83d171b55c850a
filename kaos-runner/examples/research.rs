//! A research agent: answers from loaded documents with verified citations, and refuses when
//! the documents do not support an answer. Offline: a scripted model plays the LLM.
//!
//! `cargo run -p kaos-runner --example research`

use std::sync::Arc;

use kaos_agent::{Agent, Pattern, SectionKind};
use kaos_providers::{ModelResponse, ScriptedClient, ScriptedReply};
use kaos_runner::{NewItem, Runner};
use kaos_runtime::Runtime;
use serde_json::json;

/// A scripted reply costing $0.0010, as a real model's would.
fn priced(answer: serde_json::Value) -> ScriptedReply {
    let mut response = ModelResponse::text("scripted:researcher", answer.to_string());
    response.usage.input_tokens = 400;
    response.usage.output_tokens = 60;
    response.cost_usd = Some(0.001);
    ScriptedReply::Response(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = ScriptedClient::new()
        .with_reply(priced(json!({
            "answer": "The Harbour Bridge opened in 1932.",
            "claims": [{
                "claim": "The bridge opened in 1932.",
                "quote": "opened in 1932 after six years of construction",
                "source": "bridge.md"
            }]
        })))
        .with_reply(priced(json!({
            "answer": "It was painted by Jane Doe.",
            "claims": [{"claim": "Jane Doe painted it.", "quote": "painted by Jane Doe", "source": "bridge.md"}]
        })));
    let agent = Agent::builder().name("researcher").pattern(Pattern::Research).build()?;
    let runner = Runner::builder(agent, Runtime::test_mode()).model(Arc::new(model)).build()?;
    let documents = [
        ("bridge.md", "The Harbour Bridge opened in 1932 after six years of construction."),
        ("ferry.md", "Tolls on the old ferry were abolished in 1990."),
    ];
    let items = documents.map(|(name, text)| NewItem::text(text).with_metadata("name", json!(name)));
    runner.remember("library", SectionKind::Documents, items).await?;

    let mut cost = 0.0;
    for question in ["When did the bridge open?", "Who painted the bridge?"] {
        let response = runner.turn(question, "library").await?;
        println!("Q: {question}\n{}\n(stop: {:?})\n", response.text, response.stop_reason);
        cost += response.cost_usd;
    }
    println!("cost: ${cost:.4}");
    Ok(())
}

//! A findings agent: reads the documents most relevant to a question one by one, keeps only
//! the findings whose quotes are really in their document, and writes an answer from them —
//! with a typed reason for every document or finding it refused. Offline: a scripted model
//! plays the LLM.
//!
//! `cargo run -p kaos-runner --example findings`

use std::num::NonZeroU32;
use std::sync::Arc;

use futures::StreamExt;
use kaos_agent::{Agent, FindingsConfig, Pattern, SectionKind};
use kaos_providers::{ModelRequest, ModelResponse, ScriptedClient, ScriptedReply};
use kaos_runner::{EventKind, NewItem, Runner, TurnFold};
use kaos_runtime::Runtime;
use serde_json::json;

const QUESTION: &str = "When did the Harbour Bridge open, and how was it paid for?";

/// A scripted reply costing `cost_usd`, as a real model's would.
fn priced(text: String, cost_usd: f64) -> ScriptedReply {
    let mut response = ModelResponse::text("scripted:gatherer", text);
    response.usage.input_tokens = 600;
    response.usage.output_tokens = 80;
    response.cost_usd = Some(cost_usd);
    ScriptedReply::Response(response)
}

fn findings(pairs: &[(&str, &str)]) -> String {
    let items: Vec<_> = pairs.iter().map(|(f, q)| json!({"finding": f, "quote": q})).collect();
    json!({ "findings": items }).to_string()
}

/// The scripted model: an extraction per document (the prompt names it), or the synthesis.
fn reply(request: &ModelRequest) -> ScriptedReply {
    let prompt = request.messages.first().map(|m| m.content()).unwrap_or_default();
    if request.output_schema.is_none() {
        let answer = "The Harbour Bridge opened in 1932; tolls introduced that year paid for it.";
        return priced(answer.to_owned(), 0.002);
    }
    let extraction = if prompt.contains("Document: bridge.md") {
        // Read after tolls.md (less relevant): its second finding was already kept.
        findings(&[
            ("The bridge opened in 1932.", "opened in 1932 after six years of construction"),
            ("Tolls paid for the bridge.", "The Harbour Bridge"),
            ("It was painted pink.", "the bridge was painted pink"),
        ])
    } else if prompt.contains("Document: tolls.md") {
        findings(&[("Tolls paid for the bridge.", "Tolls introduced in 1932 paid for the Harbour Bridge")])
    } else {
        findings(&[])
    };
    priced(extraction, 0.001)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = FindingsConfig::default()
        .with_max_documents(NonZeroU32::new(3).ok_or("zero")?)
        .with_max_tokens_per_document(NonZeroU32::new(2_000).ok_or("zero")?);
    let agent = Agent::builder().name("gatherer").pattern(Pattern::Findings).findings(config).build()?;
    let model = ScriptedClient::from_fn(reply);
    let runner = Runner::builder(agent, Runtime::test_mode()).model(Arc::new(model)).build()?;
    let archive = format!("The Harbour Bridge archive. {}", "Minutes of a bridge meeting. ".repeat(400));
    let documents = [
        ("bridge.md", "The Harbour Bridge opened in 1932 after six years of construction."),
        ("tolls.md", "Tolls introduced in 1932 paid for the Harbour Bridge."),
        ("archive.md", archive.as_str()),
        ("cats.md", "Cats nap most afternoons."),
    ];
    let items = documents.map(|(name, text)| NewItem::text(text).with_metadata("name", json!(name)));
    runner.remember("library", SectionKind::Documents, items).await?;

    println!("Q: {QUESTION}\n");
    let mut fold = TurnFold::default();
    let mut events = runner.run(QUESTION, "library");
    while let Some(event) = events.next().await {
        let event = event?;
        fold.push(&event);
        match &event.kind {
            EventKind::CitationFound { claim, source, .. } => println!("{source}: kept {claim:?}"),
            EventKind::FindingRefused { source, finding, reason, .. } => {
                let reason = serde_json::to_value(reason)?;
                let reason = reason.as_str().unwrap_or_default();
                match finding {
                    Some(finding) => println!("{source}: refused {finding:?} ({reason})"),
                    None => println!("{source}: refused the document ({reason})"),
                }
            }
            _ => {}
        }
    }
    let response = fold.finish().ok_or("the turn did not finish")?;
    println!("\n{}\n(stop: {:?})", response.text, response.stop_reason);
    println!("cost: ${:.4}", response.cost_usd);
    Ok(())
}

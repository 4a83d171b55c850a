//! A coordinator delegating to one sub-agent (agent-as-tool). Offline: a scripted model plays
//! both agents.
//!
//! `cargo run -p kaos-runner --example team`

use std::sync::Arc;

use kaos_agent::Agent;
use kaos_providers::{Message, ModelResponse, ScriptedClient, ScriptedReply, ToolCall};
use kaos_runner::Runner;
use kaos_runtime::Runtime;
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The coordinator asks the writer for a haiku, then passes it on; the writer writes it.
    let model = ScriptedClient::from_fn(|request| {
        let mut response = ModelResponse::text("scripted:team", "");
        let tool_result = match request.messages.last() {
            Some(Message::Tool { content, .. }) => Some(content.clone()),
            _ => None,
        };
        match (request.system.starts_with("You coordinate."), tool_result) {
            (true, None) => {
                response.tool_calls =
                    vec![ToolCall::new("c1", "writer", json!({"task": "a haiku about Rust"}))]
            }
            (true, Some(haiku)) => response.text = format!("The writer says:\n{haiku}"),
            (false, _) => {
                response.text =
                    "Borrowed, never lost /\nlifetimes end where scopes end /\nno data races".into()
            }
        }
        response.cost_usd = Some(0.0005);
        ScriptedReply::Response(response)
    });
    let writer = Agent::builder().name("writer").instructions("You write poems.").build()?;
    let coordinator = Agent::builder()
        .name("coordinator")
        .instructions("You coordinate.")
        .delegate("writer", "Writes poems on request.", &writer)
        .build()?;
    let runner = Runner::builder(coordinator, Runtime::test_mode()).model(Arc::new(model)).build()?;
    let response = runner.turn("Get me a haiku about Rust.", "team").await?;
    println!("{}", response.text);
    println!(
        "delegated: {}",
        response.tool_calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    println!("cost: ${:.4} (coordinator and writer)", response.cost_usd);
    Ok(())
}

//! Handoff: a triage agent hands the conversation to billing (`handoff_to_billing`); billing
//! answers in the same turn and keeps the session's next turns until it hands the
//! conversation back (`handoff_to_triage`). Offline: a scripted model plays both agents.
//!
//! `cargo run -p kaos-runner --example handoff`

use std::sync::Arc;

use kaos_agent::Agent;
use kaos_providers::{Message, ModelRequest, ModelResponse, ScriptedClient, ScriptedReply, ToolCall};
use kaos_runner::Runner;
use kaos_runtime::Runtime;
use serde_json::json;

/// The scripted LLM: triage sends money matters to billing; billing answers them and hands
/// back when the customer is done.
fn reply(request: &ModelRequest) -> ScriptedReply {
    let user = request
        .messages
        .iter()
        .rev()
        .find(|m| matches!(m, Message::User { .. }))
        .map(|m| m.content().to_lowercase())
        .unwrap_or_default();
    let just_handed = matches!(request.messages.last(), Some(Message::Tool { .. }));
    let handoff = |to: &str| {
        let mut response = ModelResponse::text("scripted:desk", "");
        response.tool_calls =
            vec![ToolCall::new("h1", format!("handoff_to_{to}"), json!({"reason": "theirs"}))];
        response
    };
    let mut response = if request.system.starts_with("You are triage") {
        match (user.contains("invoice"), just_handed) {
            (true, false) => handoff("billing"),
            _ => ModelResponse::text("scripted:desk", "Triage here. Anything else I can route for you?"),
        }
    } else {
        match (user.contains("that's all"), just_handed) {
            (true, false) => handoff("triage"),
            _ => ModelResponse::text("scripted:desk", "Billing here: invoice #42 is paid, nothing is due."),
        }
    };
    response.cost_usd = Some(0.0005);
    ScriptedReply::Response(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let billing = Agent::builder()
        .name("billing")
        .instructions("You are billing. You answer questions about invoices and payments.")
        .build()?;
    let triage = Agent::builder()
        .name("triage")
        .instructions("You are triage. Hand customers to the right desk.")
        .handoff(&billing)
        .build()?;
    let runner = Runner::builder(triage, Runtime::test_mode())
        .model(Arc::new(ScriptedClient::from_fn(reply)))
        .build()?;
    let mut cost = 0.0;
    for message in ["Is my invoice paid?", "And the one before?", "That's all, thanks."] {
        let response = runner.turn(message, "customer-7").await?;
        let handoffs: Vec<&str> = response
            .tool_calls
            .iter()
            .filter(|c| c.name.starts_with("handoff_to_"))
            .map(|c| c.name.as_str())
            .collect();
        println!("> {message}");
        if !handoffs.is_empty() {
            println!("  ({})", handoffs.join(", "));
        }
        println!("  [{}] {}", response.agent, response.text);
        cost += response.cost_usd;
    }
    println!("cost: ${cost:.4}");
    Ok(())
}

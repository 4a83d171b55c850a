//! Your first agent: offline, no API key, and it remembers across turns.
//!
//! ```sh
//! cargo run -p kaos-runner --example first_agent                       # in memory
//! cargo run -p kaos-runner --example first_agent -- --data-dir .kaos   # on disk: run it twice
//! ```
//!
//! With `--data-dir`, the session lives in that directory (`sessions/demo/turns.jsonl`), so a
//! second run continues the conversation of the first: its turns are 3 and 4.
//!
//! With `KAOS_MODEL` set (`openai:gpt-4.1-mini`, `anthropic:claude-haiku-4-5`,
//! `gemini:gemini-2.5-flash`, `openai-compatible:llama3.2`, …), the same agent talks to a
//! real model, configured from the environment (see `kaos_runner::resolve_model`); build it
//! with the provider's feature, e.g. `--features openai`.

use std::sync::Arc;

use kaos_agent::Agent;
use kaos_providers::{MemoryStore, ModelClient, RecordingStore, ReplayClient, ScriptedClient};
use kaos_runner::{Runner, resolve_model};
use kaos_runtime::Runtime;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match args.iter().position(|a| a == "--data-dir") {
        Some(i) => {
            let dir = args.get(i + 1).ok_or("--data-dir needs a directory")?;
            Runtime::on_disk(dir)?
        }
        None => Runtime::test_mode(),
    };

    let real_model = std::env::var("KAOS_MODEL").ok().filter(|m| !m.trim().is_empty());
    let mut agent =
        Agent::builder().name("first-agent").instructions("You are a helpful assistant. Be brief.");
    if let Some(model) = &real_model {
        agent = agent.model(model.clone());
    }
    let agent = agent.build()?;
    // The offline model (`scripted:echo`, the agent's default), or the real one KAOS_MODEL
    // names. Either way its calls are recorded in memory, to show what the model was sent.
    let model: Arc<dyn ModelClient> = match real_model {
        Some(_) => resolve_model(agent.model())?,
        None => Arc::new(ScriptedClient::echo()),
    };
    let sent = Arc::new(MemoryStore::new());
    let recorded = ReplayClient::record(model, sent.clone());
    let runner = Runner::builder(agent, runtime).model(Arc::new(recorded)).build()?;

    let mut cost = 0.0;
    for message in ["Hi! My name is Ada.", "What is my name?"] {
        let response = runner.turn(message, "demo").await?;
        let seen = sent.load()?.last().map_or(0, |call| call.request.user_message_count());
        println!("turn {}: saw {seen} user message(s) | model: {}", response.turn_number, response.text);
        cost += response.cost_usd;
    }
    println!("cost: ${cost:.4}");
    Ok(())
}

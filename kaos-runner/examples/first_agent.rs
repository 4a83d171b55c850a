//! Your first agent: offline, no API key, and it remembers across turns.
//!
//! ```sh
//! cargo run -p kaos-runner --example first_agent                       # in memory
//! cargo run -p kaos-runner --example first_agent -- --data-dir .kaos   # on disk: run it twice
//! ```
//!
//! With `--data-dir`, the session lives in that directory (`sessions/demo/turns.jsonl`), so a
//! second run continues the conversation of the first: its turns are 3 and 4.

use std::sync::Arc;

use kaos_agent::Agent;
use kaos_providers::ScriptedClient;
use kaos_runner::Runner;
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

    let agent = Agent::builder()
        .name("first-agent")
        .instructions("You are a helpful assistant. Be brief.")
        .build()?;
    // The offline model (`scripted:echo`, the agent's default). We keep a handle on it to show
    // what the model was sent.
    let model = ScriptedClient::echo();
    let runner = Runner::builder(agent, runtime).model(Arc::new(model.clone())).build()?;

    let mut cost = 0.0;
    for message in ["Hi! My name is Ada.", "What is my name?"] {
        let response = runner.turn(message, "demo").await?;
        let seen = model.requests().last().map_or(0, |request| request.user_message_count());
        println!("turn {}: saw {seen} user message(s) | model: {}", response.turn_number, response.text);
        cost += response.cost_usd;
    }
    println!("cost: ${cost:.4}");
    Ok(())
}

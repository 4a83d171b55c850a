//! Prints the JSON Schema of agent files (what `cargo xtask codegen` checks in as
//! `schemas/agent.schema.json`).
//!
//! ```sh
//! cargo run -p kaos-agent --features schema --example agent_schema
//! ```

fn main() -> Result<(), serde_json::Error> {
    println!("{}", serde_json::to_string_pretty(&kaos_agent::agent_file_schema())?);
    Ok(())
}

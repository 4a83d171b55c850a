#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kaos_agent::Agent;
use kaos_providers::{Message, ScriptedClient, ScriptedReply};
use kaos_runner::Runner;
use kaos_runtime::Runtime;

/// A model that answers `reply to <last user message>`.
pub fn echo_model() -> ScriptedClient {
    ScriptedClient::from_fn(|request| {
        ScriptedReply::text(format!("reply to {}", request.last_user_message().unwrap_or_default()))
    })
}

pub fn runner_with(runtime: Runtime, model: ScriptedClient) -> Runner {
    let agent = Agent::builder().name("tester").build().unwrap();
    Runner::builder(agent, runtime).model(Arc::new(model)).build().unwrap()
}

pub fn user_texts(history: &[Message]) -> Vec<String> {
    history.iter().filter(|m| m.is_user()).map(|m| m.content().to_owned()).collect()
}

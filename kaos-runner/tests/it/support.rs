#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use futures::StreamExt;
use kaos_agent::Agent;
use kaos_providers::{Message, ModelResponse, ScriptedClient, ScriptedReply, Usage};
use kaos_runner::{Event, Runner};
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

/// `response` as a scripted reply that used 100 input and 10 output tokens and cost `cost_usd`.
pub fn priced(mut response: ModelResponse, cost_usd: f64) -> ScriptedReply {
    response.usage = Usage::new(100, 10);
    response.cost_usd = Some(cost_usd);
    ScriptedReply::Response(response)
}

/// Every event of a turn that must not fail.
pub async fn events(runner: &Runner, message: &str, session: &str) -> Vec<Event> {
    runner.run(message, session).map(Result::unwrap).collect().await
}

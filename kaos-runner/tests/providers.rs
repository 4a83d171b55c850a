//! A Runner on a real vendor client, against a loopback server shaped like the OpenAI API:
//! the stream reaches the events, the cost reaches the response, the key reaches nothing.
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use futures::StreamExt;
use kaos_agent::Agent;
use kaos_providers::{OpenAiClient, SecretString, Usage};
use kaos_runner::{Runner, TurnResponse};
use kaos_runtime::Runtime;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-runner-test-secret";

async fn runner(server: &MockServer) -> Runner {
    let agent = Agent::builder()
        .name("vendor")
        .model("openai:gpt-4.1-mini")
        .instructions("Be brief.")
        .build()
        .unwrap();
    let client = OpenAiClient::new(SecretString::new(KEY)).with_base_url(&format!("{}/v1", server.uri()));
    Runner::builder(agent, Runtime::test_mode()).model(Arc::new(client)).build().unwrap()
}

#[tokio::test]
async fn a_streamed_turn_carries_the_vendor_usage_and_cost() {
    let server = MockServer::start().await;
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4.1-mini-2025-04-14",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let usage = json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4.1-mini-2025-04-14", "choices": [],
                       "usage": {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 500}}});
    let body: String = [
        chunk(json!({"content": "Hi "}), json!(null)),
        chunk(json!({"content": "Ada."}), json!("stop")),
        usage,
    ]
    .iter()
    .map(|e| format!("data: {e}\n\n"))
    .chain(["data: [DONE]\n\n".to_owned()])
    .collect();
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .mount(&server)
        .await;

    let response: TurnResponse = runner(&server).await.turn("I am Ada.", "s1").await.unwrap();
    assert_eq!(
        (response.text.as_str(), response.usage, response.cost_usd),
        (
            "Hi Ada.",
            Usage::new(500, 10).with_cached_input(500),
            (500.0 * 0.40 + 500.0 * 0.10 + 10.0 * 1.60) / 1_000_000.0
        )
    );
}

#[tokio::test]
async fn a_refused_key_fails_the_turn_and_appears_in_no_event() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {"message": format!("Incorrect API key provided: {KEY}."), "type": "invalid_request_error", "code": "invalid_api_key"}
        })))
        .mount(&server)
        .await;
    let runner = runner(&server).await;
    let items: Vec<_> = runner.run("hello", "s1").collect().await;
    let mut printed = format!("{runner:?}");
    for item in &items {
        match item {
            Ok(event) => printed.push_str(&serde_json::to_string(event).unwrap()),
            Err(error) => printed.push_str(&format!("{error} {error:?}")),
        }
    }
    assert!(matches!(items.last(), Some(Err(e)) if e.kind() == "auth"), "{items:?}");
    assert!(printed.contains("Incorrect API key provided: [redacted]"), "{printed}");
    assert!(!printed.contains(KEY), "{printed}");
}

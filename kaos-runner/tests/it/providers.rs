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
    let client = OpenAiClient::new(SecretString::from(KEY)).with_base_url(&format!("{}/v1", server.uri()));
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

/// A streamed OpenAI response: `calls` as tool calls (id, name), else `text`; the usage the
/// server reports.
fn stream_body(calls: &[(&str, &str)], text: &str, prompt_tokens: u64, completion_tokens: u64) -> String {
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4.1-mini-2025-04-14",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events: Vec<serde_json::Value> = calls
        .iter()
        .enumerate()
        .map(|(index, (id, name))| {
            chunk(
                json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                                       "function": {"name": name, "arguments": "{}"}}]}),
                json!(null),
            )
        })
        .collect();
    if calls.is_empty() {
        events.push(chunk(json!({"content": text}), json!(null)));
    }
    events.push(chunk(json!({}), json!(if calls.is_empty() { "stop" } else { "tool_calls" })));
    events.push(json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4.1-mini-2025-04-14", "choices": [],
                       "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}}));
    events.iter().map(|e| format!("data: {e}\n\n")).chain(["data: [DONE]\n\n".to_owned()]).collect()
}

/// Issue 13, defect 1: a resumed run keeps the caller's limits. The request's cost cap and its
/// extra deny rule hold after a pause for approval, priced by the shipped table through the
/// real OpenAI client.
#[tokio::test]
async fn a_resumed_run_keeps_the_request_cost_cap_and_deny_rules() {
    use kaos_agent::{Decision, PermissionRule};
    use kaos_runner::{Approval, EventKind, RunOptions, StopReason};
    use kaos_tools::{ToolResult, tool_fn};
    use std::sync::atomic::{AtomicU32, Ordering};

    let server = MockServer::start().await;
    // The first call asks for `confirm` and `wipe` and costs $0.012 (30,000 prompt tokens at
    // $0.40 per million); the second would answer.
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            stream_body(&[("c1", "confirm"), ("c2", "wipe")], "", 30_000, 5),
            "text/event-stream",
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(stream_body(&[], "done", 100, 5), "text/event-stream"),
        )
        .mount(&server)
        .await;
    let wiped = Arc::new(AtomicU32::new(0));
    let counter = wiped.clone();
    let wipe = tool_fn("wipe", "Wipes everything.", move |_: serde_json::Value, _ctx| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(ToolResult::text("wiped"))
        }
    })
    .build()
    .unwrap();
    let confirm = tool_fn("confirm", "Confirms.", |_: serde_json::Value, _ctx| async move {
        Ok(ToolResult::text("confirmed"))
    })
    .build()
    .unwrap();
    let runtime = Runtime::builder().tool(wipe).unwrap().tool(confirm).unwrap().build();
    let agent = Agent::builder()
        .name("vendor")
        .model("openai:gpt-4.1-mini")
        .permit("confirm", Decision::Ask)
        .build()
        .unwrap();
    let client = OpenAiClient::new(SecretString::from(KEY)).with_base_url(&format!("{}/v1", server.uri()));
    let runner = Runner::builder(agent, runtime).model(Arc::new(client)).build().unwrap();
    let options = RunOptions::default()
        .with_max_cost_usd(0.01)
        .with_permission(PermissionRule::new("wipe", Decision::Deny));

    let paused = runner.turn_with("go", "capped", options).await.unwrap();
    assert_eq!(paused.stop_reason, StopReason::ApprovalRequired);
    let state = runner.run_state(&paused.run_id).await.unwrap();
    let events: Vec<_> = runner.resume(state, Approval::approve()).map(Result::unwrap).collect().await;
    let decided: Vec<(String, Decision)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PermissionDecided { tool_name, decision, .. } => Some((tool_name.clone(), *decision)),
            _ => None,
        })
        .collect();
    assert_eq!(decided, [("confirm".to_owned(), Decision::Allow), ("wipe".to_owned(), Decision::Deny)]);
    assert_eq!(wiped.load(Ordering::SeqCst), 0, "the request's deny rule was dropped on resume");
    let response = kaos_runner::fold(futures::stream::iter(events.into_iter().map(Ok))).await.unwrap();
    // $0.012 is spent against a $0.01 cap: the resumed run makes no further model call.
    assert_eq!(response.stop_reason, StopReason::BudgetExceeded, "{response:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

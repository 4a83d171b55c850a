//! OpenAI-compatible servers (Ollama, vLLM, llama.cpp server, Groq, …) on the wire.
#![cfg(feature = "openai-compatible")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use crate::support::{bodies, collect, events, only_body, sse, with_retries};
use kaos_providers::{
    FinishReason, MaxTokensField, Message, ModelClient, ModelPrice, ModelRequest, ModelResponse,
    OpenAiCompatibleClient, Pricing, ProviderError, Quirks, SecretString, StreamEvent, ToolCall,
    ToolDefinition, Usage,
};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MODEL: &str = "llama3.2:3b";

async fn server(key: Option<&str>) -> (MockServer, OpenAiCompatibleClient) {
    let server = MockServer::start().await;
    let client = OpenAiCompatibleClient::new(&format!("{}/v1", server.uri()), key.map(SecretString::from));
    (server, client)
}

fn completions() -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(path("/v1/chat/completions"))
}

fn hello() -> ModelRequest {
    let mut request = ModelRequest::new(format!("openai-compatible:{MODEL}"), vec![Message::user("Hi")])
        .with_system("Be brief.");
    request.sampling.max_output_tokens = Some(64);
    request
}

fn completion(message: Value, finish_reason: &str, usage: Option<Value>) -> Value {
    let mut body = json!({
        "id": "chatcmpl-461", "object": "chat.completion", "created": 1731000000, "model": MODEL,
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}]
    });
    if let Some(usage) = usage {
        body["usage"] = usage;
    }
    body
}

fn chunk(delta: Value, finish_reason: Value) -> String {
    json!({"id": "chatcmpl-461", "object": "chat.completion.chunk", "created": 1731000000, "model": MODEL,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})
    .to_string()
}

#[tokio::test]
async fn local_server_without_key_gets_max_tokens_and_a_price_when_given_one() {
    let (server, client) = server(None).await;
    let body = completion(
        json!({"role": "assistant", "content": "Hello!"}),
        "stop",
        Some(json!({"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22})),
    );
    completions().respond_with(ResponseTemplate::new(200).set_body_json(&body)).mount(&server).await;

    let unpriced = client.complete(&hello()).await.unwrap();
    assert_eq!((unpriced.usage, unpriced.cost_usd), (Usage::new(20, 2), None));

    let free = client
        .clone()
        .with_pricing(Pricing::default().with_price("llama3.2", ModelPrice::new(0.0, 0.0, None)));
    let priced = free.complete(&hello()).await.unwrap();
    let mut expected = ModelResponse::text(MODEL, "Hello!");
    expected.usage = Usage::new(20, 2);
    expected.cost_usd = Some(0.0);
    expected.raw = Some(body);
    assert_eq!(priced, expected);

    let requests = server.received_requests().await.unwrap();
    assert!(requests.iter().all(|r| !r.headers.contains_key("authorization")));
    assert_eq!(
        bodies(&server).await[0],
        json!({
            "model": MODEL,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            "max_tokens": 64
        })
    );
}

#[tokio::test]
async fn a_key_is_sent_as_bearer_and_quirks_are_configurable() {
    let (server, client) = server(Some("gsk-secret")).await;
    completions()
        .and(wiremock::matchers::header("authorization", "Bearer gsk-secret"))
        .respond_with(sse(&[chunk(json!({"content": "ok"}), json!("stop")), "[DONE]".into()]))
        .mount(&server)
        .await;
    let client = client.with_quirks(
        Quirks::compatible()
            .with_stream_usage(true)
            .with_max_tokens_field(MaxTokensField::MaxCompletionTokens),
    );
    events(&client, &hello()).await;
    let body = only_body(&server).await;
    assert_eq!(
        (&body["stream_options"], &body["max_completion_tokens"], body.get("max_tokens")),
        (&json!({"include_usage": true}), &json!(64), None)
    );
}

#[tokio::test]
async fn a_stream_without_usage_is_charged_a_marked_bound_and_usage_was_asked_for() {
    let (server, client) = server(None).await;
    completions()
        .respond_with(sse(&[
            chunk(json!({"role": "assistant", "content": "Hel"}), Value::Null),
            chunk(json!({"content": "lo"}), Value::Null),
            chunk(json!({}), json!("stop")),
            "[DONE]".into(),
        ]))
        .mount(&server)
        .await;
    let got = events(&client, &hello()).await;
    // No usage came: the call is charged its prompt's bound plus the output limit sent.
    let mut expected = ModelResponse::text(MODEL, "Hello");
    expected.usage = Usage::new(hello().input_token_bound(), 64);
    expected.usage_estimated = true;
    assert_eq!(
        got,
        vec![
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::TextDelta { text: "lo".into() },
            StreamEvent::Completed { response: expected }
        ]
    );
    let body = only_body(&server).await;
    assert_eq!((&body["stream_options"], &body["stream"]), (&json!({"include_usage": true}), &json!(true)));
}

#[tokio::test]
async fn a_server_that_rejects_stream_options_is_asked_again_without_it_once_per_client() {
    let (server, client) = server(None).await;
    completions()
        .and(wiremock::matchers::body_string_contains("stream_options"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"message": "Unrecognized request argument supplied: stream_options", "type": "invalid_request_error"}
        })))
        .with_priority(1)
        .mount(&server)
        .await;
    completions()
        .respond_with(sse(&[chunk(json!({"content": "ok"}), json!("stop")), "[DONE]".into()]))
        .mount(&server)
        .await;
    for _ in 0..2 {
        let got = events(&client, &hello()).await;
        assert!(
            matches!(got.last(), Some(StreamEvent::Completed { response }) if response.text == "ok"),
            "{got:?}"
        );
    }
    let sent: Vec<bool> = bodies(&server).await.iter().map(|b| b.get("stream_options").is_some()).collect();
    assert_eq!(sent, [true, false, false]);
}

#[tokio::test]
async fn groq_usage_in_x_groq_is_read() {
    let (server, client) = server(None).await;
    let last = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": MODEL,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "x_groq": {"id": "req_01", "usage": {"prompt_tokens": 40, "completion_tokens": 4, "total_tokens": 44}}});
    completions()
        .respond_with(sse(&[chunk(json!({"content": "ok"}), Value::Null), last.to_string(), "[DONE]".into()]))
        .mount(&server)
        .await;
    let got = events(&client, &hello()).await;
    assert!(
        matches!(got.last(), Some(StreamEvent::Completed { response }) if response.usage == Usage::new(40, 4)),
        "{got:?}"
    );
}

#[tokio::test]
async fn streamed_parallel_tool_calls_with_split_arguments() {
    let (server, client) = server(None).await;
    let call = |index: u64, id: Option<&str>, args: &str| {
        let mut c = json!({"index": index, "function": {"arguments": args}});
        if let Some(id) = id {
            c["id"] = json!(id);
            c["type"] = json!("function");
            c["function"]["name"] = json!("add");
        }
        chunk(json!({"tool_calls": [c]}), Value::Null)
    };
    completions()
        .respond_with(sse(&[
            call(0, Some("c1"), "{\"a\": 1,"),
            call(0, None, " \"b\": 2}"),
            call(1, Some("c2"), "{\"a\": 3, \"b\": 4}"),
            chunk(json!({}), json!("tool_calls")),
            "[DONE]".into(),
        ]))
        .mount(&server)
        .await;
    let tool = ToolDefinition {
        name: "add".into(),
        description: "Adds".into(),
        parameters: json!({"type": "object"}),
    };
    let got = events(&client, &hello().with_tools(vec![tool])).await;
    let Some(StreamEvent::Completed { response }) = got.last() else { panic!("{got:?}") };
    assert_eq!(
        (&response.tool_calls, &response.finish_reason),
        (
            &vec![
                ToolCall::new("c1", "add", json!({"a": 1, "b": 2})),
                ToolCall::new("c2", "add", json!({"a": 3, "b": 4}))
            ],
            &FinishReason::ToolCalls
        )
    );
    assert_eq!(got.len(), 4);
}

#[tokio::test]
async fn parallel_tool_calls_in_one_response() {
    let (server, client) = server(None).await;
    let body = completion(
        json!({"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_x", "type": "function", "function": {"name": "add", "arguments": "{\"a\":1,\"b\":2}"}},
            {"id": "call_y", "type": "function", "function": {"name": "add", "arguments": "{\"a\":3,\"b\":4}"}}
        ]}),
        "tool_calls",
        None,
    );
    completions().respond_with(ResponseTemplate::new(200).set_body_json(&body)).mount(&server).await;
    let response = client.complete(&hello()).await.unwrap();
    assert_eq!(
        (response.tool_calls, response.cost_usd),
        (
            vec![
                ToolCall::new("call_x", "add", json!({"a": 1, "b": 2})),
                ToolCall::new("call_y", "add", json!({"a": 3, "b": 4}))
            ],
            None
        )
    );
}

#[tokio::test]
async fn rate_limit_then_success_unauthorized_and_exhausted_retries() {
    let (server, client) = server(Some("sk-or-secret")).await;
    completions()
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "2")
                .set_body_json(json!({"error": {"message": "Rate limit exceeded", "code": 429}})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    completions()
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(
            json!({"role": "assistant", "content": "ok"}),
            "stop",
            None,
        )))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    completions()
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": {"message": "No auth credentials found", "code": 401}})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    completions()
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream unavailable"))
        .mount(&server)
        .await;

    let (client, sleeper) = with_retries(client);
    assert_eq!(client.complete(&hello()).await.unwrap().text, "ok");
    assert_eq!(sleeper.delays(), vec![Duration::from_secs(2)]);
    let auth = client.complete(&hello()).await.unwrap_err();
    assert_eq!(auth.to_string(), "authentication failed: HTTP 401: No auth credentials found");
    let overloaded = client.complete(&hello()).await.unwrap_err();
    assert_eq!(overloaded.to_string(), "provider overloaded: HTTP 503: upstream unavailable");
    assert_eq!(bodies(&server).await.len(), 2 + 1 + 4);
}

#[tokio::test]
async fn a_truncated_stream_is_a_typed_error() {
    let (server, client) = server(None).await;
    completions().respond_with(sse(&[chunk(json!({"content": "Hel"}), Value::Null)])).mount(&server).await;
    let got = collect(&client, &hello()).await;
    assert!(matches!(got.last(), Some(Err(ProviderError::MalformedResponse { .. }))), "{got:?}");
}

//! Anthropic Messages on the wire, against a loopback server answering like the API.
#![cfg(feature = "anthropic")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use crate::support::{bodies, collect, events, named_sse, only_body, with_retries};
use kaos_providers::{
    AnthropicClient, FinishReason, Message, ModelClient, ModelRequest, ModelResponse, ProviderError,
    SecretString, StreamEvent, ToolCall, ToolChoice, ToolDefinition, Usage,
};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-ant-test-secret-42";
const MODEL: &str = "claude-sonnet-4-5-20250929";

async fn server() -> (MockServer, AnthropicClient) {
    let server = MockServer::start().await;
    let client = AnthropicClient::new(SecretString::from(KEY)).with_base_url(&server.uri());
    (server, client)
}

fn messages() -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", KEY))
        .and(header("anthropic-version", "2023-06-01"))
}

fn weather_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_weather".into(),
        description: "Weather in a city".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    }
}

fn hello() -> ModelRequest {
    ModelRequest::new("anthropic:claude-sonnet-4-5", vec![Message::user("Hi, I am Ada.")])
        .with_system("Be brief.")
}

fn message(content: Value, stop_reason: &str, usage: Value) -> Value {
    json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": MODEL,
        "content": content, "stop_reason": stop_reason, "stop_sequence": null, "usage": usage
    })
}

fn price(input: u64, cached: u64, output: u64) -> Option<f64> {
    Some((input as f64 * 3.0 + cached as f64 * 0.30 + output as f64 * 15.0) / 1_000_000.0)
}

#[tokio::test]
async fn text_and_thinking_with_cache_reads_and_writes_counted_once() {
    let (server, client) = server().await;
    let body = message(
        json!([
            {"type": "thinking", "thinking": "A greeting.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"},
            {"type": "text", "text": "Hello Ada!"}
        ]),
        "end_turn",
        json!({"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1800}),
    );
    messages().respond_with(ResponseTemplate::new(200).set_body_json(&body)).mount(&server).await;

    let response = client.complete(&hello()).await.unwrap();
    let mut expected = ModelResponse::text(MODEL, "Hello Ada!");
    expected.thinking = Some("A greeting.".into());
    expected.usage = Usage::new(2195, 503).with_cached_input(1800);
    expected.cost_usd = price(2195, 1800, 503);
    expected.raw = Some(body);
    assert_eq!(response, expected);
    assert_eq!(
        only_body(&server).await,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi, I am Ada."}]}]
        })
    );
}

#[tokio::test]
async fn request_maps_tool_use_tool_results_and_tool_choice() {
    let (server, client) = server().await;
    let body = message(
        json!([{"type": "text", "text": "Sunny in Paris."}]),
        "end_turn",
        json!({"input_tokens": 10, "output_tokens": 5}),
    );
    messages().respond_with(ResponseTemplate::new(200).set_body_json(&body)).mount(&server).await;

    let mut request = ModelRequest::new(
        "anthropic:claude-sonnet-4-5",
        vec![
            Message::user("Weather in Paris and Rome?"),
            Message::Assistant {
                content: "Let me look.".into(),
                tool_calls: vec![
                    ToolCall::new("toolu_1", "get_weather", json!({"city": "Paris"})),
                    ToolCall::new("toolu_2", "get_weather", json!({"city": "Rome"})),
                ],
            },
            Message::tool("toolu_1", "get_weather", "sunny", false),
            Message::tool("toolu_2", "get_weather", "city not found", true),
        ],
    )
    .with_system("You are a weather bot.")
    .with_tools(vec![weather_tool()]);
    request.tool_choice = ToolChoice::Required;
    request.sampling.max_output_tokens = Some(300);
    request.sampling.stop = vec!["END".into()];

    client.complete(&request).await.unwrap();
    assert_eq!(
        only_body(&server).await,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 300,
            "system": "You are a weather bot.",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "city not found", "is_error": true}
                ]}
            ],
            "tools": [{"name": "get_weather", "description": "Weather in a city",
                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
            "tool_choice": {"type": "any"},
            "stop_sequences": ["END"]
        })
    );
}

#[tokio::test]
async fn structured_output_goes_through_a_forced_tool_and_comes_back_as_text() {
    let (server, client) = server().await;
    let body = message(
        json!([{"type": "tool_use", "id": "toolu_9", "name": "structured_output", "input": {"answer": "sunny"}}]),
        "tool_use",
        json!({"input_tokens": 50, "output_tokens": 20}),
    );
    messages().respond_with(ResponseTemplate::new(200).set_body_json(&body)).mount(&server).await;
    let mut request = hello();
    request.output_schema = Some(json!({"type": "object", "properties": {"answer": {"type": "string"}}}));

    let response = client.complete(&request).await.unwrap();
    assert_eq!(
        (response.text.as_str(), response.tool_calls.len(), response.finish_reason),
        ("{\"answer\":\"sunny\"}", 0, FinishReason::Stop)
    );
    let sent = only_body(&server).await;
    assert_eq!(
        (&sent["tools"], &sent["tool_choice"]),
        (
            &json!([{"name": "structured_output", "description": "Give the final answer as this JSON.",
                     "input_schema": {"type": "object", "properties": {"answer": {"type": "string"}}}}]),
            &json!({"type": "tool", "name": "structured_output"})
        )
    );
}

fn message_start(input: u64, cache_read: u64) -> (&'static str, Value) {
    (
        "message_start",
        json!({"type": "message_start", "message": {
            "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [],
            "model": MODEL, "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": cache_read}
        }}),
    )
}

fn block_start(index: u64, block: Value) -> (&'static str, Value) {
    ("content_block_start", json!({"type": "content_block_start", "index": index, "content_block": block}))
}

fn block_delta(index: u64, delta: Value) -> (&'static str, Value) {
    ("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": delta}))
}

fn block_stop(index: u64) -> (&'static str, Value) {
    ("content_block_stop", json!({"type": "content_block_stop", "index": index}))
}

fn message_end(stop_reason: &str, output: u64) -> [(&'static str, Value); 2] {
    [
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": output}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ]
}

#[tokio::test]
async fn streaming_text_and_thinking() {
    let (server, client) = server().await;
    let mut stream = vec![
        message_start(25, 1000),
        block_start(0, json!({"type": "thinking", "thinking": ""})),
        block_delta(0, json!({"type": "thinking_delta", "thinking": "Greet."})),
        block_delta(0, json!({"type": "signature_delta", "signature": "EqQBCgIYAhIM"})),
        block_stop(0),
        block_start(1, json!({"type": "text", "text": ""})),
        ("ping", json!({"type": "ping"})),
        block_delta(1, json!({"type": "text_delta", "text": "Hello"})),
        block_delta(1, json!({"type": "text_delta", "text": " Ada!"})),
        block_stop(1),
    ];
    stream.extend(message_end("end_turn", 15));
    messages().respond_with(named_sse(&stream)).mount(&server).await;

    let got = events(&client, &hello()).await;
    let mut response = ModelResponse::text(MODEL, "Hello Ada!");
    response.thinking = Some("Greet.".into());
    response.usage = Usage::new(25, 15).with_cached_input(1000);
    response.cost_usd = price(25, 1000, 15);
    assert_eq!(
        got,
        vec![
            StreamEvent::ThinkingDelta { text: "Greet.".into() },
            StreamEvent::TextDelta { text: "Hello".into() },
            StreamEvent::TextDelta { text: " Ada!".into() },
            StreamEvent::Completed { response }
        ]
    );
    assert_eq!(only_body(&server).await["stream"], json!(true));
}

#[tokio::test]
async fn streamed_parallel_tool_use_with_arguments_split_across_deltas() {
    let (server, client) = server().await;
    let mut stream = vec![
        message_start(400, 0),
        block_start(0, json!({"type": "text", "text": ""})),
        block_delta(0, json!({"type": "text_delta", "text": "Checking."})),
        block_stop(0),
        block_start(1, json!({"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}})),
        block_delta(1, json!({"type": "input_json_delta", "partial_json": ""})),
        block_delta(1, json!({"type": "input_json_delta", "partial_json": "{\"city\": \"Pa"})),
        block_delta(1, json!({"type": "input_json_delta", "partial_json": "ris\"}"})),
        block_stop(1),
        block_start(2, json!({"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {}})),
        block_delta(2, json!({"type": "input_json_delta", "partial_json": "{\"city\": \"Rome\"}"})),
        block_stop(2),
    ];
    stream.extend(message_end("tool_use", 89));
    messages().respond_with(named_sse(&stream)).mount(&server).await;

    let got = events(&client, &hello().with_tools(vec![weather_tool()])).await;
    let delta = |index, id: Option<&str>, name: Option<&str>, arguments: &str| StreamEvent::ToolCallDelta {
        index,
        id: id.map(Into::into),
        name: name.map(Into::into),
        arguments: arguments.into(),
    };
    let mut response = ModelResponse::text(MODEL, "Checking.");
    response.tool_calls = vec![
        ToolCall::new("toolu_a", "get_weather", json!({"city": "Paris"})),
        ToolCall::new("toolu_b", "get_weather", json!({"city": "Rome"})),
    ];
    response.finish_reason = FinishReason::ToolCalls;
    response.usage = Usage::new(400, 89);
    response.cost_usd = price(400, 0, 89);
    assert_eq!(
        got,
        vec![
            StreamEvent::TextDelta { text: "Checking.".into() },
            delta(0, Some("toolu_a"), Some("get_weather"), ""),
            delta(0, None, None, ""),
            delta(0, None, None, "{\"city\": \"Pa"),
            delta(0, None, None, "ris\"}"),
            delta(1, Some("toolu_b"), Some("get_weather"), ""),
            delta(1, None, None, "{\"city\": \"Rome\"}"),
            StreamEvent::Completed { response }
        ]
    );
}

#[tokio::test]
async fn rate_limit_with_retry_after_then_success() {
    let (server, client) = server().await;
    messages()
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3").set_body_json(json!({
            "type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your per-minute rate limit"}
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let ok = message(
        json!([{"type": "text", "text": "ok"}]),
        "end_turn",
        json!({"input_tokens": 1, "output_tokens": 1}),
    );
    messages().respond_with(ResponseTemplate::new(200).set_body_json(&ok)).mount(&server).await;

    let (client, sleeper) = with_retries(client);
    let response = client.complete(&hello()).await.unwrap();
    assert_eq!(
        (response.text.as_str(), sleeper.delays(), bodies(&server).await.len()),
        ("ok", vec![Duration::from_secs(3)], 2)
    );
}

#[tokio::test]
async fn unauthorized_is_an_auth_error_never_retried() {
    let (server, client) = server().await;
    messages()
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})))
        .mount(&server)
        .await;
    let (client, sleeper) = with_retries(client);
    let error = client.complete(&hello()).await.unwrap_err();
    assert_eq!(error.to_string(), "authentication failed: HTTP 401: invalid x-api-key");
    assert!(!error.is_fallbackable());
    assert_eq!((sleeper.delays(), bodies(&server).await.len()), (vec![], 1));
    assert!(!format!("{error:?}{client:?}").contains(KEY));
}

#[tokio::test]
async fn overload_exhausts_the_retries() {
    let (server, client) = server().await;
    messages()
        .respond_with(ResponseTemplate::new(529).set_body_json(
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ))
        .mount(&server)
        .await;
    let (client, sleeper) = with_retries(client);
    let error = client.complete(&hello()).await.unwrap_err();
    assert_eq!(error.to_string(), "provider overloaded: HTTP 529: Overloaded");
    assert_eq!(
        (sleeper.delays(), bodies(&server).await.len()),
        (vec![Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2)], 4)
    );
}

#[tokio::test]
async fn truncated_streams_and_error_events_are_typed_errors() {
    let (server, client) = server().await;
    let truncated = vec![
        message_start(25, 0),
        block_start(0, json!({"type": "text", "text": ""})),
        block_delta(0, json!({"type": "text_delta", "text": "Hel"})),
    ];
    messages().respond_with(named_sse(&truncated)).up_to_n_times(1).mount(&server).await;
    let overloaded = vec![
        message_start(25, 0),
        ("error", json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})),
    ];
    messages().respond_with(named_sse(&overloaded)).mount(&server).await;

    let got = collect(&client, &hello()).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].as_ref().unwrap(), &StreamEvent::TextDelta { text: "Hel".into() });
    assert!(matches!(&got[1], Err(ProviderError::MalformedResponse { .. })), "{got:?}");

    let got = collect(&client, &hello()).await;
    assert!(
        matches!(got.as_slice(), [Err(ProviderError::Overloaded { message })] if message == "Overloaded"),
        "{got:?}"
    );
}

/// A cost cap needs the price before the call, asked by the `provider:model` name agents use;
/// a response that names no model is priced by the model asked for.
#[tokio::test]
async fn a_provider_qualified_model_has_its_price_and_a_response_naming_none_is_priced() {
    let (server, client) = server().await;
    assert_eq!(client.price("anthropic:claude-haiku-4-5"), client.price("claude-haiku-4-5"));
    assert!(client.price("anthropic:claude-haiku-4-5").is_some());
    let mut body = message(
        json!([{"type": "text", "text": "Hi"}]),
        "end_turn",
        json!({"input_tokens": 10, "output_tokens": 2}),
    );
    body.as_object_mut().unwrap().remove("model");
    messages().respond_with(ResponseTemplate::new(200).set_body_json(body)).mount(&server).await;
    let response = client.complete(&hello()).await.unwrap();
    assert_eq!((response.cost_usd, response.usage_estimated), (price(10, 0, 2), false));
}

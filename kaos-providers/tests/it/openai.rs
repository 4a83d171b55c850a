//! OpenAI Chat Completions on the wire, against a loopback server answering like the API.
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use crate::support::{bodies, collect, events, only_body, sse, with_retries};
use kaos_providers::{
    FinishReason, Message, ModelClient, ModelRequest, ModelResponse, OpenAiClient, ProviderError,
    SecretString, StreamEvent, ToolCall, ToolChoice, ToolDefinition, Usage,
};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-test-secret-0123";
const MODEL: &str = "gpt-4.1-mini-2025-04-14";

async fn server() -> (MockServer, OpenAiClient) {
    let server = MockServer::start().await;
    let client = OpenAiClient::new(SecretString::from(KEY)).with_base_url(&format!("{}/v1", server.uri()));
    (server, client)
}

fn completions() -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
}

fn weather_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_weather".into(),
        description: "Weather in a city".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    }
}

fn hello() -> ModelRequest {
    ModelRequest::new("openai:gpt-4.1-mini", vec![Message::user("Hi, I am Ada.")]).with_system("Be brief.")
}

fn completion(message: Value, finish_reason: &str, usage: Value) -> Value {
    json!({
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": "fp_b376dfbbd5"
    })
}

fn chunk(delta: Value, finish_reason: Value) -> String {
    json!({
        "id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190, "model": MODEL,
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]
    })
    .to_string()
}

fn usage_chunk(prompt: u64, completion: u64, cached: u64) -> String {
    json!({
        "id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190, "model": MODEL, "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                  "prompt_tokens_details": {"cached_tokens": cached}, "completion_tokens_details": {"reasoning_tokens": 0}}
    })
    .to_string()
}

fn price(input: u64, cached: u64, output: u64) -> Option<f64> {
    Some((input as f64 * 0.40 + cached as f64 * 0.10 + output as f64 * 1.60) / 1_000_000.0)
}

#[tokio::test]
async fn plain_text_with_cached_usage_normalized_and_priced() {
    let (server, client) = server().await;
    let body = completion(
        json!({"role": "assistant", "content": "Hello Ada!", "refusal": null, "annotations": []}),
        "stop",
        json!({"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
               "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 10, "audio_tokens": 0}}),
    );
    completions().respond_with(ResponseTemplate::new(200).set_body_json(&body)).mount(&server).await;

    let response = client.complete(&hello()).await.unwrap();

    let mut expected = ModelResponse::text(MODEL, "Hello Ada!");
    expected.usage = Usage::new(93, 46).with_cached_input(1024).with_reasoning(10);
    expected.cost_usd = price(93, 1024, 46);
    expected.raw = Some(body);
    assert_eq!(response, expected);
    assert_eq!(
        only_body(&server).await,
        json!({
            "model": "gpt-4.1-mini",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi, I am Ada."}]
        })
    );
}

#[tokio::test]
async fn request_maps_tools_tool_results_tool_choice_and_structured_output() {
    let (server, client) = server().await;
    let body = completion(
        json!({"role": "assistant", "content": "{\"answer\":\"sunny\"}"}),
        "stop",
        json!({"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}),
    );
    completions().respond_with(ResponseTemplate::new(200).set_body_json(&body)).mount(&server).await;

    let mut request = ModelRequest::new(
        "openai:gpt-4.1-mini",
        vec![
            Message::user("Weather in Paris and Rome?"),
            Message::Assistant {
                content: String::new(),
                tool_calls: vec![
                    ToolCall::new("call_1", "get_weather", json!({"city": "Paris"})),
                    ToolCall::new("call_2", "get_weather", json!({"city": "Rome"})),
                ],
            },
            Message::tool("call_1", "get_weather", "sunny", false),
            Message::tool("call_2", "get_weather", "city not found", true),
        ],
    )
    .with_system("You are a weather bot.")
    .with_tools(vec![weather_tool()]);
    request.tool_choice = ToolChoice::Tool("get_weather".into());
    request.output_schema = Some(json!({"type": "object", "properties": {"answer": {"type": "string"}}}));
    request.sampling.max_output_tokens = Some(200);
    request.sampling.temperature = Some(0.5);

    client.complete(&request).await.unwrap();
    assert_eq!(
        only_body(&server).await,
        json!({
            "model": "gpt-4.1-mini",
            "messages": [
                {"role": "system", "content": "You are a weather bot."},
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": "city not found"}
            ],
            "tools": [{"type": "function", "function": {
                "name": "get_weather", "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
            }}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "temperature": 0.5,
            "max_completion_tokens": 200,
            "response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object", "properties": {"answer": {"type": "string"}}}}}
        })
    );
}

#[tokio::test]
async fn a_closed_output_schema_is_sent_strict() {
    let (server, client) = server().await;
    let usage = json!({"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13});
    completions()
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(
            json!({"role": "assistant", "content": "{\"answer\": \"yes\"}"}),
            "stop",
            usage,
        )))
        .mount(&server)
        .await;
    let schema = json!({
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": false
    });
    let mut request = ModelRequest::new("openai:gpt-4.1-mini", vec![Message::user("Is it?")]);
    request.output_schema = Some(schema.clone());
    client.complete(&request).await.unwrap();
    assert_eq!(
        only_body(&server).await["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": true}})
    );
}

#[tokio::test]
async fn parallel_tool_calls_in_one_response() {
    let (server, client) = server().await;
    let body = completion(
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
        ]}),
        "tool_calls",
        json!({"prompt_tokens": 80, "completion_tokens": 40, "total_tokens": 120}),
    );
    completions().respond_with(ResponseTemplate::new(200).set_body_json(&body)).mount(&server).await;
    let response = client.complete(&hello().with_tools(vec![weather_tool()])).await.unwrap();
    assert_eq!(
        (response.tool_calls, response.finish_reason, response.usage),
        (
            vec![
                ToolCall::new("call_a", "get_weather", json!({"city": "Paris"})),
                ToolCall::new("call_b", "get_weather", json!({"city": "Rome"}))
            ],
            FinishReason::ToolCalls,
            Usage::new(80, 40)
        )
    );
}

#[tokio::test]
async fn streaming_text_asks_for_usage_and_ends_with_the_priced_response() {
    let (server, client) = server().await;
    completions()
        .respond_with(sse(&[
            chunk(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null),
            chunk(json!({"content": "Hel"}), Value::Null),
            chunk(json!({"content": "lo é"}), Value::Null),
            chunk(json!({}), json!("stop")),
            usage_chunk(2000, 3, 1536),
            "[DONE]".into(),
        ]))
        .mount(&server)
        .await;

    let got = events(&client, &hello()).await;
    let mut response = ModelResponse::text(MODEL, "Hello é");
    response.usage = Usage::new(464, 3).with_cached_input(1536);
    response.cost_usd = price(464, 1536, 3);
    assert_eq!(
        got,
        vec![
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::TextDelta { text: "lo é".into() },
            StreamEvent::Completed { response }
        ]
    );
    let body = only_body(&server).await;
    assert_eq!((&body["stream"], &body["stream_options"]), (&json!(true), &json!({"include_usage": true})));
}

#[tokio::test]
async fn streamed_parallel_tool_call_arguments_split_across_chunks() {
    let (server, client) = server().await;
    let call = |index: u64, id: Option<&str>, name: Option<&str>, args: &str| {
        let mut c = json!({"index": index, "function": {"arguments": args}});
        if let Some(id) = id {
            c["id"] = json!(id);
            c["type"] = json!("function");
        }
        if let Some(name) = name {
            c["function"]["name"] = json!(name);
        }
        chunk(json!({"tool_calls": [c]}), Value::Null)
    };
    completions()
        .respond_with(sse(&[
            chunk(json!({"role": "assistant", "content": null}), Value::Null),
            call(0, Some("call_a"), Some("get_weather"), ""),
            call(0, None, None, "{\"ci"),
            call(0, None, None, "ty\": \"Paris\"}"),
            call(1, Some("call_b"), Some("get_weather"), ""),
            call(1, None, None, "{\"city\": \"Rome\"}"),
            chunk(json!({}), json!("tool_calls")),
            usage_chunk(100, 30, 0),
            "[DONE]".into(),
        ]))
        .mount(&server)
        .await;

    let got = events(&client, &hello().with_tools(vec![weather_tool()])).await;
    let delta = |index, id: Option<&str>, name: Option<&str>, arguments: &str| StreamEvent::ToolCallDelta {
        index,
        id: id.map(Into::into),
        name: name.map(Into::into),
        arguments: arguments.into(),
    };
    let mut response = ModelResponse::text(MODEL, "");
    response.tool_calls = vec![
        ToolCall::new("call_a", "get_weather", json!({"city": "Paris"})),
        ToolCall::new("call_b", "get_weather", json!({"city": "Rome"})),
    ];
    response.finish_reason = FinishReason::ToolCalls;
    response.usage = Usage::new(100, 30);
    response.cost_usd = price(100, 0, 30);
    assert_eq!(
        got,
        vec![
            delta(0, Some("call_a"), Some("get_weather"), ""),
            delta(0, None, None, "{\"ci"),
            delta(0, None, None, "ty\": \"Paris\"}"),
            delta(1, Some("call_b"), Some("get_weather"), ""),
            delta(1, None, None, "{\"city\": \"Rome\"}"),
            StreamEvent::Completed { response }
        ]
    );
}

#[tokio::test]
async fn rate_limit_with_retry_after_then_success() {
    let (server, client) = server().await;
    completions()
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "7").set_body_json(json!({
            "error": {"message": "Rate limit reached for gpt-4.1-mini on requests per min (RPM)", "type": "requests", "param": null, "code": "rate_limit_exceeded"}
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let ok = completion(
        json!({"role": "assistant", "content": "ok"}),
        "stop",
        json!({"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}),
    );
    completions().respond_with(ResponseTemplate::new(200).set_body_json(&ok)).mount(&server).await;

    let (client, sleeper) = with_retries(client);
    let response = client.complete(&hello()).await.unwrap();
    assert_eq!(
        (response.text.as_str(), sleeper.delays(), bodies(&server).await.len()),
        ("ok", vec![Duration::from_secs(7)], 2)
    );
}

#[tokio::test]
async fn unauthorized_is_an_auth_error_never_retried_and_the_key_never_shows() {
    let (server, client) = server().await;
    completions()
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {"message": format!("Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com/account/api-keys."),
                      "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}
        })))
        .mount(&server)
        .await;
    let (retrying, sleeper) = with_retries(client.clone());
    let error = retrying.complete(&hello()).await.unwrap_err();
    assert!(matches!(error, ProviderError::Auth { .. }), "{error:?}");
    assert_eq!((sleeper.delays(), bodies(&server).await.len()), (vec![], 1));
    let printed = format!("{error} {error:?} {client:?} {retrying:?}");
    assert!(!printed.contains(KEY), "{printed}");
    assert!(printed.contains("Incorrect API key provided: [redacted]"), "{printed}");
}

#[tokio::test]
async fn server_errors_exhaust_the_retries_with_exponential_backoff() {
    let (server, client) = server().await;
    completions()
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}})))
        .mount(&server)
        .await;
    let (client, sleeper) = with_retries(client);
    let error = client.complete(&hello()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "provider overloaded: HTTP 500: The server had an error while processing your request."
    );
    assert_eq!(
        (sleeper.delays(), bodies(&server).await.len()),
        (vec![Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2)], 4)
    );
}

#[tokio::test]
async fn truncated_and_malformed_streams_are_typed_errors() {
    let (server, client) = server().await;
    completions()
        .respond_with(sse(&[chunk(json!({"content": "Hel"}), Value::Null)]))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    completions()
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw("data: {\"choices\": [{\"delta\": {\"content\": \"Hel", "text/event-stream"),
        )
        .mount(&server)
        .await;

    let truncated = collect(&client, &hello()).await;
    assert_eq!(truncated.len(), 2);
    assert_eq!(truncated[0].as_ref().unwrap(), &StreamEvent::TextDelta { text: "Hel".into() });
    assert!(
        matches!(&truncated[1], Err(ProviderError::MalformedResponse { message }) if message.contains("ended before")),
        "{truncated:?}"
    );

    let malformed = collect(&client, &hello()).await;
    assert!(matches!(malformed.as_slice(), [Err(ProviderError::MalformedResponse { .. })]), "{malformed:?}");
}

#[tokio::test]
async fn a_connection_refused_is_a_retryable_transport_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // closed again
    let client =
        OpenAiClient::new(SecretString::from(KEY)).with_base_url(&format!("http://127.0.0.1:{port}/v1"));
    let error = client.complete(&hello()).await.unwrap_err();
    assert!(matches!(error, ProviderError::Transport { .. }) && error.is_retryable(), "{error:?}");
}

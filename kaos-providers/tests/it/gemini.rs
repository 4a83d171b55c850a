//! Google Gemini on the wire, against a loopback server answering like the API.
#![cfg(feature = "gemini")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use crate::support::{bodies, collect, events, only_body, sse, with_retries};
use kaos_providers::{
    FinishReason, GeminiClient, Message, ModelClient, ModelRequest, ModelResponse, ProviderError,
    SecretString, StreamEvent, ToolCall, ToolChoice, ToolDefinition, Usage,
};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "AIzaSy-test-secret-77";
const MODEL: &str = "gemini-2.5-flash";

async fn server() -> (MockServer, GeminiClient) {
    let server = MockServer::start().await;
    let client =
        GeminiClient::new(SecretString::from(KEY)).with_base_url(&format!("{}/v1beta", server.uri()));
    (server, client)
}

fn generate() -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path(format!("/v1beta/models/{MODEL}:generateContent")))
        .and(header("x-goog-api-key", KEY))
}

fn stream_generate() -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path(format!("/v1beta/models/{MODEL}:streamGenerateContent")))
        .and(query_param("alt", "sse"))
        .and(header("x-goog-api-key", KEY))
}

fn weather_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_weather".into(),
        description: "Weather in a city".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    }
}

fn hello() -> ModelRequest {
    ModelRequest::new("gemini:gemini-2.5-flash", vec![Message::user("Hi, I am Ada.")])
        .with_system("Be brief.")
}

fn answer(parts: Value, finish_reason: Option<&str>, usage: Value) -> Value {
    let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    if let Some(reason) = finish_reason {
        candidate["finishReason"] = json!(reason);
    }
    json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": MODEL, "responseId": "mR5saKWbA6Wo1MkPqsnj6Qg"})
}

fn price(input: u64, cached: u64, output: u64) -> Option<f64> {
    Some((input as f64 * 0.30 + cached as f64 * 0.075 + output as f64 * 2.50) / 1_000_000.0)
}

#[tokio::test]
async fn text_with_cached_and_thinking_tokens_normalized_and_priced() {
    let (server, client) = server().await;
    let body = answer(
        json!([{"text": "Hello Ada!"}]),
        Some("STOP"),
        json!({"promptTokenCount": 1200, "candidatesTokenCount": 10, "totalTokenCount": 1250,
               "cachedContentTokenCount": 1024, "thoughtsTokenCount": 40,
               "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1200}]}),
    );
    generate().respond_with(ResponseTemplate::new(200).set_body_json(&body)).mount(&server).await;

    let response = client.complete(&hello()).await.unwrap();
    let mut expected = ModelResponse::text(MODEL, "Hello Ada!");
    expected.usage = Usage::new(176, 50).with_cached_input(1024).with_reasoning(40);
    expected.cost_usd = price(176, 1024, 50);
    expected.raw = Some(body);
    assert_eq!(response, expected);
    assert_eq!(
        only_body(&server).await,
        json!({
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [{"role": "user", "parts": [{"text": "Hi, I am Ada."}]}]
        })
    );
}

#[tokio::test]
async fn request_maps_function_calls_responses_tool_config_and_json_schema_output() {
    let (server, client) = server().await;
    let body = answer(
        json!([{"text": "{\"answer\": \"sunny\"}"}]),
        Some("STOP"),
        json!({"promptTokenCount": 5, "candidatesTokenCount": 5, "totalTokenCount": 10}),
    );
    generate().respond_with(ResponseTemplate::new(200).set_body_json(&body)).mount(&server).await;

    let mut request = ModelRequest::new(
        "gemini:gemini-2.5-flash",
        vec![
            Message::user("Weather in Paris and Rome?"),
            Message::Assistant {
                content: String::new(),
                tool_calls: vec![
                    ToolCall::new("call_0", "get_weather", json!({"city": "Paris"})),
                    ToolCall::new("call_1", "get_weather", json!({"city": "Rome"})),
                ],
            },
            Message::tool("call_0", "get_weather", "sunny", false),
            Message::tool("call_1", "get_weather", "city not found", true),
        ],
    )
    .with_system("You are a weather bot.")
    .with_tools(vec![weather_tool()]);
    request.tool_choice = ToolChoice::Tool("get_weather".into());
    request.output_schema = Some(json!({"type": "object", "properties": {"answer": {"type": "string"}}}));
    request.sampling.max_output_tokens = Some(256);
    request.sampling.temperature = Some(0.25);

    let response = client.complete(&request).await.unwrap();
    assert_eq!(response.text, "{\"answer\": \"sunny\"}");
    assert_eq!(
        only_body(&server).await,
        json!({
            "systemInstruction": {"parts": [{"text": "You are a weather bot."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}},
                    {"functionResponse": {"name": "get_weather", "response": {"error": "city not found"}}}
                ]}
            ],
            "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Weather in a city",
                "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
            "generationConfig": {
                "temperature": 0.25,
                "maxOutputTokens": 256,
                "responseMimeType": "application/json",
                "responseJsonSchema": {"type": "object", "properties": {"answer": {"type": "string"}}}
            }
        })
    );
}

#[tokio::test]
async fn streaming_text_and_thoughts_over_alt_sse() {
    let (server, client) = server().await;
    stream_generate()
        .respond_with(sse(&[
            answer(json!([{"text": "Greet.", "thought": true}]), None, json!({"promptTokenCount": 8, "totalTokenCount": 8})).to_string(),
            answer(json!([{"text": "Hel"}]), None, json!({"promptTokenCount": 8, "totalTokenCount": 8})).to_string(),
            answer(json!([{"text": "lo!"}]), Some("STOP"), json!({"promptTokenCount": 8, "candidatesTokenCount": 2, "thoughtsTokenCount": 3, "totalTokenCount": 13})).to_string(),
        ]))
        .mount(&server)
        .await;

    let got = events(&client, &hello()).await;
    let mut response = ModelResponse::text(MODEL, "Hello!");
    response.thinking = Some("Greet.".into());
    response.usage = Usage::new(8, 5).with_reasoning(3);
    response.cost_usd = price(8, 0, 5);
    assert_eq!(
        got,
        vec![
            StreamEvent::ThinkingDelta { text: "Greet.".into() },
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::TextDelta { text: "lo!".into() },
            StreamEvent::Completed { response }
        ]
    );
}

/// Gemini sends each function call whole (its arguments are never split), possibly one per
/// chunk; parallel calls get ids by position.
#[tokio::test]
async fn streamed_parallel_function_calls_across_chunks() {
    let (server, client) = server().await;
    stream_generate()
        .respond_with(sse(&[
            answer(
                json!([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]),
                None,
                json!({"promptTokenCount": 30}),
            )
            .to_string(),
            answer(
                json!([{"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]),
                Some("STOP"),
                json!({"promptTokenCount": 30, "candidatesTokenCount": 12, "totalTokenCount": 42}),
            )
            .to_string(),
        ]))
        .mount(&server)
        .await;

    let got = events(&client, &hello().with_tools(vec![weather_tool()])).await;
    let delta = |index: usize, city: &str| StreamEvent::ToolCallDelta {
        index,
        id: Some(format!("call_{index}")),
        name: Some("get_weather".into()),
        arguments: json!({"city": city}).to_string(),
    };
    let mut response = ModelResponse::text(MODEL, "");
    response.tool_calls = vec![
        ToolCall::new("call_0", "get_weather", json!({"city": "Paris"})),
        ToolCall::new("call_1", "get_weather", json!({"city": "Rome"})),
    ];
    response.finish_reason = FinishReason::ToolCalls;
    response.usage = Usage::new(30, 12);
    response.cost_usd = price(30, 0, 12);
    assert_eq!(got, vec![delta(0, "Paris"), delta(1, "Rome"), StreamEvent::Completed { response }]);
}

#[tokio::test]
async fn resource_exhausted_with_retry_delay_then_success() {
    let (server, client) = server().await;
    generate()
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {
            "code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]
        }})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let ok = answer(
        json!([{"text": "ok"}]),
        Some("STOP"),
        json!({"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2}),
    );
    generate().respond_with(ResponseTemplate::new(200).set_body_json(&ok)).mount(&server).await;

    let (client, sleeper) = with_retries(client);
    let response = client.complete(&hello()).await.unwrap();
    assert_eq!(
        (response.text.as_str(), sleeper.delays(), bodies(&server).await.len()),
        ("ok", vec![Duration::from_secs(7)], 2)
    );
}

#[tokio::test]
async fn an_invalid_key_is_an_auth_error_whether_401_or_gemini_400() {
    let (server, client) = server().await;
    generate()
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]
        }})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    generate()
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}})))
        .mount(&server)
        .await;
    let (client, sleeper) = with_retries(client);
    let first = client.complete(&hello()).await.unwrap_err();
    let second = client.complete(&hello()).await.unwrap_err();
    assert_eq!(
        (first.to_string(), second.kind()),
        (
            "authentication failed: HTTP 400: API key not valid. Please pass a valid API key.".to_owned(),
            "auth"
        )
    );
    assert_eq!((sleeper.delays(), bodies(&server).await.len()), (vec![], 2));
}

#[tokio::test]
async fn internal_errors_exhaust_the_retries() {
    let (server, client) = server().await;
    generate()
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"error": {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}})))
        .mount(&server)
        .await;
    let (client, sleeper) = with_retries(client);
    let error = client.complete(&hello()).await.unwrap_err();
    assert_eq!(error.to_string(), "provider overloaded: HTTP 500: An internal error has occurred.");
    assert_eq!(
        (sleeper.delays(), bodies(&server).await.len()),
        (vec![Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2)], 4)
    );
}

#[tokio::test]
async fn truncated_and_malformed_streams_are_typed_errors() {
    let (server, client) = server().await;
    stream_generate()
        .respond_with(sse(&[
            answer(json!([{"text": "Hel"}]), None, json!({"promptTokenCount": 8})).to_string()
        ]))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    stream_generate()
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw("data: {\"candidates\": [{\"content\"", "text/event-stream"),
        )
        .mount(&server)
        .await;

    let got = collect(&client, &hello()).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].as_ref().unwrap(), &StreamEvent::TextDelta { text: "Hel".into() });
    assert!(matches!(&got[1], Err(ProviderError::MalformedResponse { .. })), "{got:?}");

    let got = collect(&client, &hello()).await;
    assert!(matches!(got.as_slice(), [Err(ProviderError::MalformedResponse { .. })]), "{got:?}");
}

/// A cost cap needs the price before the call, asked by the `provider:model` name agents use.
#[tokio::test]
async fn a_provider_qualified_model_has_its_price() {
    let (_server, client) = server().await;
    assert!(client.price("gemini:gemini-2.5-flash").is_some());
    assert_eq!(client.price("gemini:gemini-2.5-flash"), client.price("gemini-2.5-flash"));
    assert_eq!(client.price("gemini:models/gemini-2.5-flash"), client.price("gemini-2.5-flash"));
}

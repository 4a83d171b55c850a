//! The Ollama client against a real HTTP server on loopback (wiremock) answering with bodies
//! shaped like Ollama's documented `/api/chat`, alone and through the Runner, registered under
//! `ollama` and named by an agent file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kaos_agent::Agent;
use kaos_provider_ollama::OllamaClient;
use kaos_providers::{FinishReason, Message, ModelClient, ModelRequest, ProviderError, ToolDefinition};
use kaos_runner::Runner;
use kaos_runtime::Runtime;
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// An answer as Ollama sends it with `"stream": false`.
fn answer(message: Value, done_reason: &str) -> Value {
    json!({
        "model": "llama3",
        "created_at": "2026-12-03T07:00:00.000000Z",
        "message": message,
        "done": true,
        "done_reason": done_reason,
        "total_duration": 4_883_583_458_u64,
        "load_duration": 1_334_875,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 342_546_000,
        "eval_count": 7,
        "eval_duration": 4_535_599_000_u64
    })
}

fn sent(server_requests: &[wiremock::Request], i: usize) -> Value {
    serde_json::from_slice(&server_requests[i].body).unwrap()
}

#[tokio::test]
async fn a_text_answer_and_the_request_as_ollama_expects_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(
            json!({"role": "assistant", "content": "Hello there.", "thinking": "A greeting."}),
            "stop",
        )))
        .mount(&server)
        .await;

    let client = OllamaClient::new(server.uri()).unwrap().with_context_window(4_096);
    let mut request =
        ModelRequest::new("ollama:llama3:8b", vec![Message::user("Hi")]).with_system("Be brief.");
    request.sampling.temperature = Some(0.5);
    request.sampling.max_output_tokens = Some(100);
    let response = client.complete(&request).await.unwrap();

    assert_eq!(response.text, "Hello there.");
    assert_eq!(response.thinking.as_deref(), Some("A greeting."));
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert_eq!((response.usage.input_tokens, response.usage.output_tokens), (26, 7));
    assert!(!response.usage_estimated);

    let body = sent(&server.received_requests().await.unwrap(), 0);
    assert_eq!(body["model"], "llama3:8b");
    assert_eq!(body["stream"], false);
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ])
    );
    assert_eq!(body["options"], json!({"num_ctx": 4096, "temperature": 0.5, "num_predict": 100}));
    assert!(body.get("tools").is_none());

    // Registered under another prefix, the client takes that one off.
    let local = OllamaClient::new(server.uri()).unwrap().with_prefix("local");
    local.complete(&ModelRequest::new("local:qwen3:4b", vec![Message::user("Hi")])).await.unwrap();
    assert_eq!(sent(&server.received_requests().await.unwrap(), 1)["model"], "qwen3:4b");
}

#[tokio::test]
async fn tool_calls_and_results_in_ollamas_shape() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(
            json!({"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
            ]}),
            "stop",
        )))
        .mount(&server)
        .await;

    let client = OllamaClient::new(server.uri()).unwrap();
    let weather = ToolDefinition {
        name: "get_weather".into(),
        description: "The weather in a city.".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    };
    let request = ModelRequest::new("ollama:llama3", vec![Message::user("Weather in Paris and Oslo?")])
        .with_tools(vec![weather]);
    let response = client.complete(&request).await.unwrap();
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    let calls: Vec<_> =
        response.tool_calls.iter().map(|c| (c.id.as_str(), c.arguments["city"].clone())).collect();
    assert_eq!(calls, [("ollama-call-0", json!("Paris")), ("ollama-call-1", json!("Oslo"))]);

    // The calls and their results go back as Ollama expects them.
    let mut followup = request.clone();
    followup.messages.push(response.to_message());
    followup.messages.push(Message::tool("ollama-call-0", "get_weather", "12°C, rain", false));
    followup.messages.push(Message::tool("ollama-call-1", "get_weather", "3°C, snow", false));
    client.complete(&followup).await.unwrap();
    let body = sent(&server.received_requests().await.unwrap(), 1);
    assert_eq!(
        body["tools"][0],
        json!({"type": "function", "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }})
    );
    assert_eq!(
        body["messages"][1]["tool_calls"][1],
        json!({"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}})
    );
    assert_eq!(
        body["messages"][2],
        json!({"role": "tool", "tool_name": "get_weather", "content": "12°C, rain"})
    );
}

#[tokio::test]
async fn errors_are_typed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("\"missing\""))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"error": "model \"missing\" not found, try pulling it first"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("\"busy\""))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(json!({"error": "server busy, please try again"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("\"broken\""))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"done\": tr"))
        .mount(&server)
        .await;
    let client = OllamaClient::new(server.uri()).unwrap();
    let ask = |model: &str| ModelRequest::new(format!("ollama:{model}"), vec![Message::user("Hi")]);

    match client.complete(&ask("missing")).await {
        Err(e @ ProviderError::InvalidRequest { .. }) => {
            assert!(e.to_string().contains("try pulling it first"), "{e}");
            assert!(!e.is_retryable());
        }
        other => panic!("{other:?}"),
    }
    let busy = client.complete(&ask("busy")).await.unwrap_err();
    assert!(matches!(busy, ProviderError::Overloaded { .. }) && busy.is_retryable(), "{busy:?}");
    let broken = client.complete(&ask("broken")).await.unwrap_err();
    assert!(matches!(broken, ProviderError::MalformedResponse { .. }), "{broken:?}");

    // Nothing listens on port 9 of loopback.
    let unreachable = OllamaClient::new("http://127.0.0.1:9").unwrap();
    let down = unreachable.complete(&ask("llama3")).await.unwrap_err();
    assert!(matches!(down, ProviderError::Transport { .. }) && down.is_fallbackable(), "{down:?}");
}

/// The agent file a user writes: the model is `ollama:llama3`, the prefix the client is
/// registered under.
const AGENT_FILE: &str = r#"
name = "notes"
instructions = "Keep notes in files."
model = "ollama:llama3"
tools = ["kaos-vfs-write"]

[[permissions]]                  # writing is destructive: allowed here without asking
tool = "kaos-vfs-write"
decision = "allow"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_file_runs_on_ollama_through_the_runner() {
    let server = MockServer::start().await;
    // Once the tool's result is in the conversation, the model answers.
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .and(body_string_contains("\"role\":\"tool\""))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(answer(json!({"role": "assistant", "content": "Noted in notes.md."}), "stop")),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    // Before that, it writes the note.
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(
            json!({"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "kaos-vfs-write", "arguments": {"path": "notes.md", "content": "buy milk"}}},
            ]}),
            "stop",
        )))
        .with_priority(2)
        .mount(&server)
        .await;

    let ollama = OllamaClient::new(server.uri()).unwrap();
    let agent = Agent::from_toml(AGENT_FILE).unwrap();
    let runtime = Runtime::builder().builtin_tools().unwrap().build();
    let runner = Runner::builder(agent, runtime.clone())
        .provider("ollama", move |_model| Ok(Arc::new(ollama.clone()) as Arc<dyn ModelClient>))
        .build()
        .unwrap();

    let response = runner.turn("Note: buy milk", "s1").await.unwrap();
    assert_eq!(response.text, "Noted in notes.md.", "{response:#?}");
    assert_eq!((response.usage.input_tokens, response.usage.output_tokens), (52, 14));

    // The tool really ran, in the session's files.
    let session = kaos_runner::session::SessionId::new("s1").unwrap();
    let note = kaos_runner::session::files_dir(&session).unwrap().join("notes.md").unwrap();
    assert_eq!(runtime.vfs().read(&note).await.unwrap(), "buy milk");

    // Ollama saw the agent's instructions, the model's name without the prefix, the tool the
    // agent file allows, and the tool's result.
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let first = sent(&requests, 0);
    assert_eq!(first["model"], "llama3");
    assert!(first["messages"][0]["content"].as_str().unwrap().contains("Keep notes in files."));
    let tools: Vec<&str> =
        first["tools"].as_array().unwrap().iter().filter_map(|t| t["function"]["name"].as_str()).collect();
    assert!(tools.contains(&"kaos-vfs-write"), "{tools:?}");
    let second = sent(&requests, 1);
    let result = second["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(result["role"], "tool");
    assert_eq!(result["tool_name"], "kaos-vfs-write");
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures::StreamExt;
use kaos_providers::{
    FinishReason, Message, ModelClient, ModelRequest, ProviderError, ScriptedClient, ScriptedReply,
    StreamEvent, ToolCall, Usage,
};
use serde_json::json;

fn request(messages: Vec<Message>) -> ModelRequest {
    ModelRequest::new("scripted:test", messages).with_system("Be brief.")
}

#[tokio::test]
async fn queue_answers_in_order_records_requests_and_then_fails_loudly() {
    let model = ScriptedClient::new().with_tool_call("add", json!({"a": 1, "b": 2})).with_text("3");
    let first = model.complete(&request(vec![Message::user("1+2?")])).await.unwrap();
    assert_eq!(first.tool_calls, vec![ToolCall::new("call_1_0", "add", json!({"a": 1, "b": 2}))]);
    assert_eq!(first.finish_reason, FinishReason::ToolCalls);
    let second = model.complete(&request(vec![Message::user("again")])).await.unwrap();
    assert_eq!(second.text, "3");
    assert_eq!(second.finish_reason, FinishReason::Stop);
    assert_eq!(second.cost_usd, Some(0.0));
    assert!(second.usage.input_tokens > 0 && second.usage.output_tokens > 0);
    assert_eq!(
        model.requests().iter().map(|r| r.last_user_message().unwrap()).collect::<Vec<_>>(),
        ["1+2?", "again"]
    );

    let err = model.complete(&request(vec![])).await.unwrap_err();
    assert!(matches!(err, ProviderError::Script { .. }), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn function_mode_sees_the_request() {
    let model =
        ScriptedClient::from_fn(|r| ScriptedReply::text(format!("{} user messages", r.user_message_count())));
    let r = model
        .complete(&request(vec![Message::user("a"), Message::assistant("b"), Message::user("c")]))
        .await
        .unwrap();
    assert_eq!(r.text, "2 user messages");
}

#[tokio::test]
async fn echo_counts_user_messages() {
    let model = ScriptedClient::echo();
    let r = model.complete(&request(vec![Message::user("hi")])).await.unwrap();
    assert_eq!(r.text, "You said: \"hi\". I have seen 1 user message in this session.");
}

#[tokio::test]
async fn stream_folds_to_the_same_response_as_complete() {
    let script = || {
        ScriptedClient::new().with_reply(ScriptedReply::ToolCalls {
            text: "Let me check the file.".into(),
            calls: vec![("read".into(), json!({"path": "a.txt"})), ("read".into(), json!({"path": "b.txt"}))],
        })
    };
    let expected = script().complete(&request(vec![Message::user("x")])).await.unwrap();
    let events: Vec<_> = script().stream(&request(vec![Message::user("x")])).collect().await;
    let events: Vec<StreamEvent> = events.into_iter().map(Result::unwrap).collect();
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, expected.text);
    let deltas: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallDelta { arguments, .. } => Some(arguments.as_str()),
            _ => None,
        })
        .collect();
    // Each call's arguments as compact JSON, and counted in the output at a token per 4 bytes.
    let texts: Vec<String> = expected.tool_calls.iter().map(|c| c.arguments.to_string()).collect();
    assert_eq!(deltas, texts);
    let output = kaos_providers::estimate_tokens(&expected.text)
        + expected
            .tool_calls
            .iter()
            .map(|c| {
                kaos_providers::estimate_tokens(&c.name)
                    + kaos_providers::estimate_tokens(&c.arguments.to_string())
            })
            .sum::<u64>();
    assert_eq!(expected.usage.output_tokens, output);
    assert_eq!(events.last(), Some(&StreamEvent::Completed { response: expected }));
}

#[test]
fn usage_counts_every_token_once() {
    let mut u = Usage::new(100, 20);
    u.cached_input_tokens = 50;
    assert_eq!(u.total_tokens(), 170);
    assert_eq!((u + u).total_tokens(), 340);
}

#[test]
fn error_classification() {
    let auth = ProviderError::Auth { message: "bad key".into() };
    assert!(!auth.is_retryable() && !auth.is_fallbackable());
    let limited = ProviderError::RateLimited { message: "slow down".into(), retry_after: None };
    assert!(limited.is_retryable() && limited.is_fallbackable());
    let long = ProviderError::ContextTooLong { message: "too long".into() };
    assert!(!long.is_retryable() && long.is_fallbackable());
}

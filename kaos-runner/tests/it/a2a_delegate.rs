//! Remote delegates over A2A (feature `a2a`): an agent served by the official Python SDK
//! (`tests/a2a/peer.py`, a2a-sdk installed by `tests/a2a/install.sh`) used as a KAOS delegate —
//! streamed and blocking, the input-required → approve/deny → completed round trip, its cost
//! charged — and remotes that lie (garbage JSON, wrong ids, HTTP errors, a dead server): a
//! typed error naming the delegate as the tool's result, the parent run intact.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kaos_agent::{Agent, Delegate};
use kaos_providers::{Message, ModelRequest, ModelResponse, ScriptedClient, ToolCall};
use kaos_runner::{
    Approval, Event, EventKind, RunError, Runner, SpanSubject, StopReason, TurnFold, TurnResponse,
};
use kaos_runtime::Runtime;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::priced;

const FRONT: &str = "You route billing questions.";

#[path = "../../../tests/a2a/peer.rs"]
mod peer;
use peer::Peer;

fn last_tool_result(request: &ModelRequest) -> Option<String> {
    match request.messages.last() {
        Some(Message::Tool { content, .. }) => Some(content.clone()),
        _ => None,
    }
}

/// The front agent's model: hands the user's message to `billing`, then reports what it said.
fn model() -> ScriptedClient {
    ScriptedClient::from_fn(|request| {
        let mut response = ModelResponse::text("scripted:front", "");
        match last_tool_result(request) {
            Some(result) => response.text = format!("billing said: {result}"),
            None => {
                let task = request.last_user_message().unwrap_or_default().to_owned();
                response.tool_calls = vec![ToolCall::new("c1", "billing", json!({ "task": task }))];
            }
        }
        priced(response, 0.01)
    })
}

fn runner_for(delegate: Delegate) -> Runner {
    let agent = Agent::builder().name("front").instructions(FRONT).remote_delegate(delegate).build().unwrap();
    Runner::builder(agent, Runtime::test_mode()).model(Arc::new(model())).build().unwrap()
}

fn billing(url: &str) -> Delegate {
    Delegate::a2a("billing", "Answers billing questions.", url)
}

async fn turn(runner: &Runner, message: &str, session: &str) -> (TurnResponse, Vec<Event>) {
    let events: Vec<Event> = runner.run(message, session).map(Result::unwrap).collect().await;
    (folded(&events), events)
}

fn folded(events: &[Event]) -> TurnResponse {
    let mut fold = TurnFold::default();
    for event in events {
        fold.push(event);
    }
    fold.finish().unwrap()
}

/// The remote's events, as forwarded into the parent's stream.
fn forwarded(events: &[Event]) -> Vec<&EventKind> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Subagent { subagent, event } if subagent == "billing" => Some(&event.kind),
            _ => None,
        })
        .collect()
}

fn tool_result(response: &TurnResponse) -> &str {
    &response.tool_calls.iter().find(|c| c.name == "billing").unwrap().result
}

#[tokio::test]
async fn an_agent_served_by_the_official_sdk_answers_as_a_delegate_with_its_stream_forwarded_and_its_cost_charged()
 {
    let peer = Peer::start(&[]);
    let runner = runner_for(billing(&peer.url));
    let (response, events) = turn(&runner, "hello there", "s1").await;

    assert_eq!(response.stop_reason, StopReason::Completed);
    assert_eq!(response.text, "billing said: echo: hello there");
    let call = response.tool_calls.iter().find(|c| c.name == "billing").unwrap();
    assert!(!call.is_error, "{}", call.result);
    // The two streamed chunks, wrapped as a sub-agent's text deltas; the task's states as spans.
    let forwarded = forwarded(&events);
    let deltas: Vec<&str> = forwarded
        .iter()
        .filter_map(|k| match k {
            EventKind::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, ["echo: ", "hello there"]);
    let states: Vec<&Value> = forwarded
        .iter()
        .filter_map(|k| match k {
            EventKind::Span(span) if span.subject == SpanSubject::Subagent => span.attributes.get("state"),
            _ => None,
        })
        .collect();
    assert_eq!(states, [&json!("submitted"), &json!("working"), &json!("completed")]);
    // The remote's reported cost (0.25) is the parent's, with its two model calls (0.01 each).
    assert!((response.cost_usd - 0.27).abs() < 1e-9, "{}", response.cost_usd);
    assert_eq!(response.usage.input_tokens, 300);
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::UsageObserved { model, cost_usd: Some(c), .. } if model == "a2a:billing" && (*c - 0.25).abs() < 1e-9)));
}

#[tokio::test]
async fn a_blocking_agent_without_streaming_answers_through_send_message() {
    let peer = Peer::start(&["--no-streaming"]);
    let runner = runner_for(billing(&peer.url));
    let (response, _) = turn(&runner, "plain call", "s1").await;
    assert_eq!(response.text, "billing said: echo: plain call");
    assert!((response.cost_usd - 0.27).abs() < 1e-9, "{}", response.cost_usd);
}

#[tokio::test]
async fn input_required_pauses_the_parent_and_the_answer_continues_the_same_remote_task() {
    let peer = Peer::start(&[]);
    let runner = runner_for(billing(&peer.url));

    // Approve: the remote task goes on and completes.
    let (paused, events) = turn(&runner, "please refund order 7", "approve").await;
    assert_eq!(paused.stop_reason, StopReason::ApprovalRequired);
    let pending = paused.pending_approval.clone().unwrap();
    assert_eq!(pending.tool_name, "billing");
    assert_eq!(pending.reason, "the remote agent `billing` asks: Refund 42 EUR to ACME?");
    let task_ids: Vec<&Value> = forwarded(&events)
        .iter()
        .filter_map(|k| match k {
            EventKind::Span(span) => span.attributes.get("task_id"),
            _ => None,
        })
        .collect();
    let task_id = task_ids.last().unwrap().as_str().unwrap().to_owned();
    let state = runner.run_state(&paused.run_id).await.unwrap();
    let resumed: Vec<Event> = runner.resume(state, Approval::approve()).map(Result::unwrap).collect().await;
    let response = folded(&resumed);
    assert_eq!(response.stop_reason, StopReason::Completed);
    assert_eq!(response.text, "billing said: Refund done.");
    // Continued on the remote's same task (the follow-up carried its id).
    let after: Vec<&Value> = forwarded(&resumed)
        .iter()
        .filter_map(|k| match k {
            EventKind::Span(span) => span.attributes.get("task_id"),
            _ => None,
        })
        .collect();
    assert!(!after.is_empty() && after.iter().all(|id| id.as_str() == Some(task_id.as_str())), "{after:?}");
    // The session holds the turn once: the user message, the call and the answer.
    let history = runner.history("approve").await.unwrap();
    assert_eq!(history.iter().filter(|m| m.is_user()).count(), 1);

    // Deny: the remote is told why, and says so.
    let (paused, _) = turn(&runner, "refund it all", "deny").await;
    let state = runner.run_state(&paused.run_id).await.unwrap();
    let response = runner.resume_turn(state, Approval::deny("not this month")).await.unwrap();
    assert_eq!(response.stop_reason, StopReason::Completed);
    assert_eq!(response.text, "billing said: Refund cancelled: not this month");
}

#[tokio::test]
async fn a_wrong_token_is_an_error_result_naming_the_delegate_and_the_parent_run_goes_on() {
    let peer = Peer::start(&["--token", "sekrit"]);
    let runner = runner_for(billing(&peer.url));
    let (response, _) = turn(&runner, "hello", "s1").await;
    assert_eq!(response.stop_reason, StopReason::Completed);
    let result = tool_result(&response);
    assert!(result.contains("remote delegate `billing` failed") && result.contains("HTTP 401"), "{result}");
}

#[test]
fn a_token_variable_that_is_not_set_is_a_typed_error_when_the_runner_is_built() {
    let delegate = billing("https://billing.example.com/").with_token_env("KAOS_TEST_A2A_TOKEN_NEVER_SET");
    let agent = Agent::builder().name("front").remote_delegate(delegate).build().unwrap();
    let error = Runner::builder(agent, Runtime::test_mode()).model(Arc::new(model())).build().unwrap_err();
    assert!(
        matches!(&error, RunError::RemoteDelegate { delegate, .. } if delegate == "billing"),
        "{error:?}"
    );
    assert_eq!(error.kind(), "remote_delegate");
    assert!(error.report().contains("KAOS_TEST_A2A_TOKEN_NEVER_SET"), "{}", error.report());
}

/// A card whose JSON-RPC endpoint is `{server}/rpc`.
fn card(server: &MockServer, streaming: bool) -> Value {
    json!({
        "name": "liar", "description": "Lies.", "version": "1",
        "supportedInterfaces": [{"url": format!("{}/rpc", server.uri()), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {"streaming": streaming},
        "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"], "skills": []
    })
}

async fn liar(card_body: ResponseTemplate, rpc: Option<ResponseTemplate>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/agent-card.json"))
        .respond_with(card_body)
        .mount(&server)
        .await;
    if let Some(rpc) = rpc {
        Mock::given(method("POST")).and(path("/rpc")).respond_with(rpc).mount(&server).await;
    }
    server
}

fn sse(events: &[Value]) -> ResponseTemplate {
    let body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
}

/// The call is an error result naming the delegate and containing `expected`; the parent
/// completes, and the session takes the next turn.
async fn assert_lie_is_contained(url: &str, expected: &str) {
    let runner = runner_for(billing(url));
    let (response, events) = turn(&runner, "hello", "s1").await;
    assert_eq!(response.stop_reason, StopReason::Completed, "{events:?}");
    let call = response.tool_calls.iter().find(|c| c.name == "billing").unwrap();
    assert!(call.is_error, "{}", call.result);
    assert!(
        call.result.starts_with("Error: remote delegate `billing` failed: ")
            && call.result.contains(expected),
        "{} (expected {expected:?})",
        call.result
    );
    assert!(response.text.starts_with("billing said: "));
    let (next, _) = turn(&runner, "again", "s1").await;
    assert_eq!(next.stop_reason, StopReason::Completed);
    assert_eq!(runner.history("s1").await.unwrap().iter().filter(|m| m.is_user()).count(), 2);
}

#[tokio::test]
async fn a_remote_that_lies_is_a_typed_error_naming_the_delegate_and_the_parent_run_is_intact() {
    // Garbage instead of a card.
    let server = liar(ResponseTemplate::new(200).set_body_string("<html>not json"), None).await;
    assert_lie_is_contained(&server.uri(), "invalid agent card").await;

    // A card, then garbage instead of a JSON-RPC response.
    let server = MockServer::start().await;
    let good_card = ResponseTemplate::new(200).set_body_json(card(&server, false));
    Mock::given(method("GET"))
        .and(path("/.well-known/agent-card.json"))
        .respond_with(good_card)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rpc"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("{\"jsonrpc\": \"2.0\", \"id\": 1, \"result\": {\"nonsense\""),
        )
        .mount(&server)
        .await;
    assert_lie_is_contained(&server.uri(), "invalid SendMessage response").await;

    // An answer to another request id.
    let server = MockServer::start().await;
    let good_card = ResponseTemplate::new(200).set_body_json(card(&server, false));
    Mock::given(method("GET"))
        .and(path("/.well-known/agent-card.json"))
        .respond_with(good_card)
        .mount(&server)
        .await;
    let answer = json!({"jsonrpc": "2.0", "id": 999, "result": {"message": {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "hi"}]}}});
    Mock::given(method("POST"))
        .and(path("/rpc"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .mount(&server)
        .await;
    assert_lie_is_contained(&server.uri(), "with the id 999").await;

    // An HTTP error.
    let server = MockServer::start().await;
    let good_card = ResponseTemplate::new(200).set_body_json(card(&server, false));
    Mock::given(method("GET"))
        .and(path("/.well-known/agent-card.json"))
        .respond_with(good_card)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rpc"))
        .respond_with(ResponseTemplate::new(503).set_body_string("overloaded"))
        .mount(&server)
        .await;
    assert_lie_is_contained(&server.uri(), "answered HTTP 503: overloaded").await;

    // A stream that switches to another task.
    let server = MockServer::start().await;
    let good_card = ResponseTemplate::new(200).set_body_json(card(&server, true));
    Mock::given(method("GET"))
        .and(path("/.well-known/agent-card.json"))
        .respond_with(good_card)
        .mount(&server)
        .await;
    let status = |task: &str, state: &str| json!({"jsonrpc": "2.0", "id": 1, "result": {"statusUpdate": {"taskId": task, "contextId": "c", "status": {"state": state}}}});
    let stream = sse(&[status("t1", "TASK_STATE_WORKING"), status("t2", "TASK_STATE_COMPLETED")]);
    Mock::given(method("POST")).and(path("/rpc")).respond_with(stream).mount(&server).await;
    assert_lie_is_contained(&server.uri(), "news of task \"t2\" while running task \"t1\"").await;

    // A stream that ends while the task works, and a task that cannot be found afterwards.
    let server = MockServer::start().await;
    let good_card = ResponseTemplate::new(200).set_body_json(card(&server, true));
    Mock::given(method("GET"))
        .and(path("/.well-known/agent-card.json"))
        .respond_with(good_card)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rpc"))
        .respond_with(sse(&[status("t1", "TASK_STATE_WORKING")]))
        .mount(&server)
        .await;
    assert_lie_is_contained(&server.uri(), "invalid GetTask response").await;

    // A negative cost.
    let server = MockServer::start().await;
    let good_card = ResponseTemplate::new(200).set_body_json(card(&server, true));
    Mock::given(method("GET"))
        .and(path("/.well-known/agent-card.json"))
        .respond_with(good_card)
        .mount(&server)
        .await;
    let cheat = json!({"jsonrpc": "2.0", "id": 1, "result": {"statusUpdate": {"taskId": "t1", "contextId": "c",
        "status": {"state": "TASK_STATE_COMPLETED"}, "metadata": {"kaos": {"cost_usd": -5.0}}}}});
    Mock::given(method("POST")).and(path("/rpc")).respond_with(sse(&[cheat])).mount(&server).await;
    assert_lie_is_contained(&server.uri(), "invalid cost -5.0").await;

    // A dead server: nothing listens on the port any more.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    assert_lie_is_contained(
        &format!("http://127.0.0.1:{port}"),
        &format!("cannot reach http://127.0.0.1:{port}"),
    )
    .await;
}

#[tokio::test]
async fn a_cost_reported_before_the_pause_is_charged_once_and_the_answer_names_the_remote_task() {
    let server = MockServer::start().await;
    let good_card = ResponseTemplate::new(200).set_body_json(card(&server, true));
    Mock::given(method("GET"))
        .and(path("/.well-known/agent-card.json"))
        .respond_with(good_card)
        .mount(&server)
        .await;
    let status = |id: u32, state: &str, text: Option<&str>, cost: f64| {
        let mut status = json!({"state": state});
        if let Some(text) = text {
            status["message"] = json!({"messageId": "q", "role": "ROLE_AGENT", "parts": [{"text": text}]});
        }
        json!({"jsonrpc": "2.0", "id": id, "result": {"statusUpdate": {"taskId": "t1", "contextId": "c1",
            "status": status, "metadata": {"kaos": {"cost_usd": cost, "usage": {"input_tokens": 10, "output_tokens": 1}}}}}})
    };
    // First the question (0.10 spent so far), then, for the follow-up, the end (0.30 in all).
    Mock::given(method("POST"))
        .and(path("/rpc"))
        .respond_with(sse(&[status(1, "TASK_STATE_INPUT_REQUIRED", Some("Really?"), 0.10)]))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let done = json!({"jsonrpc": "2.0", "id": 2, "result": {"artifactUpdate": {"taskId": "t1", "contextId": "c1",
        "artifact": {"artifactId": "a", "parts": [{"text": "done"}]}}}});
    Mock::given(method("POST"))
        .and(path("/rpc"))
        .respond_with(sse(&[done, status(2, "TASK_STATE_COMPLETED", None, 0.30)]))
        .mount(&server)
        .await;

    let runner = runner_for(billing(&server.uri()));
    let (paused, _) = turn(&runner, "do it", "s1").await;
    assert_eq!(paused.pending_approval.as_ref().unwrap().reason, "the remote agent `billing` asks: Really?");
    let state = runner.run_state(&paused.run_id).await.unwrap();
    let response = runner.resume_turn(state, Approval::approve()).await.unwrap();
    assert_eq!(response.text, "billing said: done");
    // 0.30 for the remote task, once, and 0.01 for each of the two model calls.
    assert!((response.cost_usd - 0.32).abs() < 1e-9, "{}", response.cost_usd);
    assert_eq!(response.usage.input_tokens, 200 + 10);

    // The follow-up continued task t1 in context c1, saying `approve`.
    let requests = server.received_requests().await.unwrap();
    let posts: Vec<Value> = requests
        .iter()
        .filter(|r| r.url.path() == "/rpc")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(posts.len(), 2);
    let follow_up = &posts[1]["params"]["message"];
    assert_eq!(posts[1]["method"], "SendStreamingMessage");
    assert_eq!((&follow_up["taskId"], &follow_up["contextId"]), (&json!("t1"), &json!("c1")));
    assert_eq!(follow_up["parts"][0]["text"], "approve");
    assert_eq!(follow_up["metadata"]["kaos"]["approval"]["answer"], "approve");
    let first = &posts[0]["params"]["message"];
    assert_eq!(first["parts"][0]["text"], "do it");
    assert!(first.get("taskId").is_none());
    let headers = &requests.iter().find(|r| r.url.path() == "/rpc").unwrap().headers;
    assert_eq!(headers.get("a2a-version").unwrap(), "1.0");
}

#[tokio::test]
async fn a_remote_that_keeps_failing_is_withdrawn_by_its_circuit_breaker() {
    let server = MockServer::start().await;
    let good_card = ResponseTemplate::new(200).set_body_json(card(&server, false));
    Mock::given(method("GET"))
        .and(path("/.well-known/agent-card.json"))
        .respond_with(good_card)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rpc"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let agent = Agent::builder()
        .name("front")
        .instructions(FRONT)
        .remote_delegate(billing(&server.uri()))
        .build()
        .unwrap();
    let runner = Runner::builder(agent, Runtime::test_mode())
        .model(Arc::new(model()))
        .breakers(kaos_runner::BreakerConfig::new(2, Duration::from_secs(60)))
        .build()
        .unwrap();
    let mut tripped = Vec::new();
    for _ in 0..2 {
        let (response, events) = turn(&runner, "hello", "s1").await;
        assert!(tool_result(&response).contains("answered HTTP 500"), "{}", tool_result(&response));
        tripped.extend(events.into_iter().filter(
            |e| matches!(&e.kind, EventKind::CircuitBreakerTripped { name, .. } if name == "billing"),
        ));
    }
    assert_eq!(tripped.len(), 1, "the second failure opens it");
    // Open: the next call is not sent.
    let (response, _) = turn(&runner, "hello", "s1").await;
    assert!(tool_result(&response).contains("`billing` is unavailable"), "{}", tool_result(&response));
    let posts = server.received_requests().await.unwrap().iter().filter(|r| r.url.path() == "/rpc").count();
    assert_eq!(posts, 2);
}

#[tokio::test]
async fn a_remote_task_still_working_when_the_turn_runs_out_of_time_is_canceled() {
    let peer = Peer::start(&[]);
    let agent = Agent::builder()
        .name("front")
        .instructions(FRONT)
        .budget(kaos_agent::Budget::default().with_max_wall_clock_ms(2_000))
        .remote_delegate(billing(&peer.url))
        .build()
        .unwrap();
    let runner = Runner::builder(agent, Runtime::test_mode()).model(Arc::new(model())).build().unwrap();
    let (response, events) = turn(&runner, "slow please", "s1").await;
    let result = tool_result(&response);
    assert!(
        result.contains("wall-clock budget ran out") && result.contains("its task was canceled"),
        "{result}"
    );
    let task_id = forwarded(&events)
        .iter()
        .find_map(|k| match k {
            EventKind::Span(span) => {
                span.attributes.get("task_id").and_then(Value::as_str).map(str::to_owned)
            }
            _ => None,
        })
        .unwrap();
    // The remote says so too.
    let client = kaos_a2a::client::A2aClient::new(&peer.url, None).unwrap();
    let task = client.get_task(&task_id).await.unwrap();
    assert_eq!(task.status.state, kaos_a2a::TaskState::Canceled);
}

#[tokio::test]
async fn a_stream_cut_while_the_task_works_is_followed_up_with_get_task_then_subscribe_to_task() {
    use wiremock::matchers::body_partial_json;
    let server = MockServer::start().await;
    let good_card = ResponseTemplate::new(200).set_body_json(card(&server, true));
    Mock::given(method("GET"))
        .and(path("/.well-known/agent-card.json"))
        .respond_with(good_card)
        .mount(&server)
        .await;
    let artifact = |id: u32, text: &str, append: bool| {
        json!({"jsonrpc": "2.0", "id": id, "result": {"artifactUpdate": {"taskId": "t1", "contextId": "c1",
            "artifact": {"artifactId": "a", "parts": [{"text": text}]}, "append": append}}})
    };
    let task = |id: u32, state: &str| {
        json!({"jsonrpc": "2.0", "id": id, "result": {"task": {"id": "t1", "contextId": "c1", "status": {"state": state},
            "artifacts": [{"artifactId": "a", "parts": [{"text": "part one, "}]}]}}})
    };
    let status = |id: u32, state: &str| json!({"jsonrpc": "2.0", "id": id, "result": {"statusUpdate": {"taskId": "t1", "contextId": "c1", "status": {"state": state}}}});
    let rpc = |name: &str| {
        Mock::given(method("POST")).and(path("/rpc")).and(body_partial_json(json!({"method": name})))
    };
    // The stream is cut after the first chunk; the task still works; the subscription ends it.
    rpc("SendStreamingMessage")
        .respond_with(sse(&[status(1, "TASK_STATE_WORKING"), artifact(1, "part one, ", false)]))
        .mount(&server)
        .await;
    let working = task(2, "TASK_STATE_WORKING")["result"]["task"].clone();
    rpc("GetTask")
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"jsonrpc": "2.0", "id": 2, "result": working})),
        )
        .mount(&server)
        .await;
    rpc("SubscribeToTask")
        .respond_with(sse(&[
            task(3, "TASK_STATE_WORKING"),
            artifact(3, "part two", true),
            status(3, "TASK_STATE_COMPLETED"),
        ]))
        .mount(&server)
        .await;

    let runner = runner_for(billing(&server.uri()));
    let (response, events) = turn(&runner, "hello", "s1").await;
    assert_eq!(response.text, "billing said: part one, part two");
    let deltas: Vec<&str> = forwarded(&events)
        .into_iter()
        .filter_map(|k| match k {
            EventKind::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, ["part one, ", "part two"]);
}

#[tokio::test]
async fn what_is_left_of_the_parents_cost_cap_is_sent_as_the_remote_turns_cap() {
    let server = MockServer::start().await;
    let good_card = ResponseTemplate::new(200).set_body_json(card(&server, false));
    Mock::given(method("GET"))
        .and(path("/.well-known/agent-card.json"))
        .respond_with(good_card)
        .mount(&server)
        .await;
    let answer = |id: u64| json!({"jsonrpc": "2.0", "id": id, "result": {"message": {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "ok"}]}}});
    Mock::given(method("POST"))
        .and(path("/rpc"))
        .respond_with(move |request: &wiremock::Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            ResponseTemplate::new(200).set_body_json(answer(body["id"].as_u64().unwrap()))
        })
        .mount(&server)
        .await;
    let agent = Agent::builder()
        .name("front")
        .instructions(FRONT)
        .budget(kaos_agent::Budget::default().with_max_cost_usd(1.0))
        .remote_delegate(billing(&server.uri()))
        .build()
        .unwrap();
    let runner = Runner::builder(agent, Runtime::test_mode()).model(Arc::new(model())).build().unwrap();
    let (response, _) = turn(&runner, "hello", "s1").await;
    assert_eq!(response.text, "billing said: ok");
    let requests = server.received_requests().await.unwrap();
    let post = requests.iter().find(|r| r.url.path() == "/rpc").unwrap();
    let body: Value = serde_json::from_slice(&post.body).unwrap();
    // 1.0, less the first model call's 0.01.
    let cap = body["params"]["metadata"]["kaos"]["max_cost_usd"].as_f64().unwrap();
    assert!((cap - 0.99).abs() < 1e-9, "{body}");
    assert_eq!(body["method"], "SendMessage");
}

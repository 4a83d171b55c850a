//! The HTTP API end to end over loopback: streamed turns, approvals continuing the same run,
//! traces, sessions, caller isolation, errors, cancellation on disconnect, graceful shutdown,
//! and the MCP fixes (any loopback address, MCP sessions tied to their caller).

use std::time::Duration;

use futures::StreamExt;
use kaos_server::{HttpOptions, serve_http};
use serde_json::{Value, json};

use super::support::{ALICE, Api, BOB, Frame, destructive_runner, destructive_runtime, parse_sse, serve};

fn types(frames: &[Frame]) -> Vec<&str> {
    frames.iter().map(|f| f.event.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_turn_pauses_for_a_destructive_tool_and_the_approval_continues_the_same_run() {
    let server = serve(destructive_runner(destructive_runtime())).await;
    let alice = Api::new(&server, ALICE);
    let bob = Api::new(&server, BOB);

    let (status, frames) = alice.post_sse("/sessions/work/turns", json!({"message": "clean up"})).await;
    assert_eq!(status, 200);
    // `id:` is the event's sequence number, from 0 without gaps; `event:` its type.
    let ids: Vec<u64> = frames.iter().map(|f| f.id.unwrap()).collect();
    assert_eq!(ids, (0..frames.len() as u64).collect::<Vec<_>>());
    for frame in &frames {
        assert_eq!(frame.data["type"], frame.event.as_str());
        assert_eq!(frame.data["session_id"], "work", "the caller's name for its session");
    }
    // A paused turn ends with its summary too, after the approval request.
    let last = frames.last().unwrap();
    assert_eq!(last.event, "turn_summary", "{:?}", types(&frames));
    assert_eq!(last.data["stop_reason"], "approval_required");
    let asked = frames.iter().find(|f| f.event == "tool_call_approval_required").unwrap();
    assert_eq!(asked.data["tool_name"], "delete_file");
    let run_id = asked.data["run_id"].as_str().unwrap().to_owned();

    let (status, run) = alice.get(&format!("/runs/{run_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(run["session_id"], "work");
    assert_eq!(run["tool_name"], "delete_file");
    assert_eq!(run["arguments"], json!({"path": "notes.txt"}));
    assert_eq!(run["turn_number"], 1);
    // Another caller: the same 404 as for a missing run, and it cannot answer it.
    assert_eq!(bob.get(&format!("/runs/{run_id}")).await.0, 404);
    let (status, error) =
        bob.post_json(&format!("/runs/{run_id}/approval"), json!({"decision": "approve"})).await;
    assert_eq!((status, error["error"]["type"].as_str()), (404, Some("not_found")));
    // Nothing committed while paused (the session shows, with its paused turn's trace only).
    let (status, detail) = alice.get("/sessions/work").await;
    assert_eq!((status, detail["turns"].as_u64()), (200, Some(0)), "{detail}");
    assert_eq!(detail["records"], json!([]));

    let (status, rest) =
        alice.post_sse(&format!("/runs/{run_id}/approval"), json!({"decision": "approve"})).await;
    assert_eq!(status, 200);
    let last = rest.last().unwrap();
    assert_eq!(last.event, "turn_summary", "{:?}", types(&rest));
    assert_eq!(last.data["turn_number"], 1);
    assert!(rest.iter().all(|f| f.data["run_id"] == run_id.as_str()), "the same run continues");
    assert!(rest.iter().any(|f| f.event == "run_resumed"), "{:?}", types(&rest));
    let text: String =
        rest.iter().filter(|f| f.event == "text_delta").map(|f| f.data["text"].as_str().unwrap()).collect();
    assert_eq!(text, "Done: deleted notes.txt (turn 1)");
    // Answered once: a second answer is a conflict or not found, never a second run.
    let (status, _) = alice.post_json(&format!("/runs/{run_id}/approval"), json!({"decision": "deny"})).await;
    assert!(status == 409 || status == 404, "{status}");

    // The session, its totals, and the trace of the turn as a waterfall.
    let (status, list) = alice.get("/sessions").await;
    assert_eq!(status, 200);
    assert_eq!(list["sessions"][0]["id"], "work");
    assert_eq!(list["sessions"][0]["turns"], 1);
    assert_eq!(bob.get("/sessions").await.1, json!({"sessions": []}));
    let (status, detail) = alice.get("/sessions/work").await;
    assert_eq!(status, 200);
    assert_eq!(detail["turns"], 1);
    let session_cost = detail["cost_usd"].as_f64().unwrap();
    assert!(session_cost > 0.0);

    let (status, trace) = alice.get("/sessions/work/turns/1/trace").await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["run_id"], run_id.as_str());
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans[0]["subject"], "turn");
    assert_eq!(spans[0]["depth"], 0);
    let tool = spans.iter().find(|s| s["subject"] == "tool_call").unwrap();
    assert_eq!(tool["name"], "tool.delete_file");
    assert_eq!(tool["status"], "complete");
    assert_eq!(tool["cost_usd"], 0.0);
    assert!(tool["depth"].as_u64().unwrap() >= 1);
    let llm: Vec<&Value> = spans.iter().filter(|s| s["subject"] == "llm_call").collect();
    assert_eq!(llm.len(), 2);
    assert!(
        llm.iter().all(|s| s["cost_usd"].as_f64().unwrap() > 0.0 && s["input_tokens"].as_u64().unwrap() > 0)
    );
    let span_cost: f64 = spans.iter().map(|s| s["cost_usd"].as_f64().unwrap()).sum();
    assert!((span_cost - trace["cost_usd"].as_f64().unwrap()).abs() < 1e-12);
    assert!((trace["cost_usd"].as_f64().unwrap() - session_cost).abs() < 1e-12);
    assert_eq!(bob.get("/sessions/work/turns/1/trace").await.0, 404);
    assert_eq!(alice.get("/sessions/work/turns/2/trace").await.0, 404);

    // Memory and search.
    let (status, messages) = alice.get("/sessions/work/memory/messages").await;
    assert_eq!(status, 200);
    assert!(!messages["items"].as_array().unwrap().is_empty());
    assert_eq!(alice.get("/sessions/work/memory/nonsense").await.0, 400);
    let (status, found) = alice.get("/sessions/work/search?q=deleted%20notes").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["query"], "deleted notes");

    // Delete: another caller cannot; the owner can, once.
    let delete = |api: &Api| api.request(reqwest::Method::DELETE, "/sessions/work").send();
    assert_eq!(delete(&bob).await.unwrap().status(), 404);
    assert_eq!(delete(&alice).await.unwrap().status(), 204);
    assert_eq!(delete(&alice).await.unwrap().status(), 404);
    assert_eq!(alice.get("/sessions/work/turns/1/trace").await.0, 404, "the trace went with the session");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_turns_always_approval_and_deny() {
    let server = serve(destructive_runner(destructive_runtime())).await;
    let alice = Api::new(&server, ALICE);
    let (status, paused) = alice.post_json("/sessions/j/turns", json!({"message": "go"})).await;
    assert_eq!(status, 200);
    assert_eq!(paused["stop_reason"], "approval_required", "{paused}");
    assert_eq!(paused["session_id"], "j");
    let run_id = paused["run_id"].as_str().unwrap();
    let (status, done) = alice
        .post_json(&format!("/runs/{run_id}/approval"), json!({"decision": "deny", "reason": "no"}))
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["turn_number"], 1);
    assert_eq!(done["stop_reason"], "completed");
    assert!(done["tool_calls"][0]["result"].as_str().unwrap().contains("no"), "{done}");

    // Pre-approved for this request: no pause.
    let (status, second) = alice
        .post_json("/sessions/j/turns", json!({"message": "go", "options": {"approve": ["delete_*"]}}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (second["turn_number"].as_u64(), second["stop_reason"].as_str()),
        (Some(2), Some("completed"))
    );
    let (_, third) = alice.post_json("/sessions/j/turns", json!({"message": "go"})).await;
    let run_id = third["run_id"].as_str().unwrap();
    let (status, done) =
        alice.post_json(&format!("/runs/{run_id}/approval"), json!({"decision": "always"})).await;
    assert_eq!((status, done["turn_number"].as_u64()), (200, Some(3)));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_typed_json_errors_with_the_right_status() {
    let runner = destructive_runner(destructive_runtime());
    let options = HttpOptions::new().with_token(ALICE, "alice").with_max_body_bytes(1024);
    let server = serve_http(runner, super::support::loopback(), options).await.unwrap();
    let alice = Api::new(&server, ALICE);
    let base = server.base_url();
    let http = reqwest::Client::new();

    let check = |status: u16, body: &Value, expected_status: u16, kind: &str| {
        assert_eq!(status, expected_status, "{body}");
        assert_eq!(body["error"]["type"], kind, "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    };
    // No token, a wrong token: 401 before anything else.
    let response = http.get(format!("{base}/v1/sessions")).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let status = response.status().as_u16();
    check(status, &response.json().await.unwrap(), 401, "unauthorized");
    let response =
        http.get(format!("{base}/v1/nope")).bearer_auth("wrong-token-0123456789").send().await.unwrap();
    check(response.status().as_u16(), &response.json().await.unwrap(), 401, "unauthorized");
    // Bad bodies, ids and options.
    let raw = |body: &'static str| {
        alice
            .request(reqwest::Method::POST, "/sessions/s/turns")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in ["{not json", "{}", r#"{"message": "hi", "extra": 1}"#, r#"{"message": "  "}"#] {
        let response = raw(body).await.unwrap();
        check(response.status().as_u16(), &response.json().await.unwrap(), 400, "invalid_request");
    }
    let (status, body) = alice.post_json("/sessions/..bad/turns", json!({"message": "hi"})).await;
    check(status, &body, 400, "invalid_request");
    let (status, body) =
        alice.post_json("/sessions/s/turns", json!({"message": "hi", "options": {"max_cost_usd": -1}})).await;
    check(status, &body, 400, "invalid_request");
    let (status, body) = alice
        .post_json("/sessions/s/turns", json!({"message": "hi", "options": {"approve": ["[bad"]}}))
        .await;
    check(status, &body, 400, "invalid_request");
    let (status, body) = alice.post_json("/runs/nope/approval", json!({"decision": "maybe"})).await;
    check(status, &body, 400, "invalid_request");
    let (status, body) = alice.post_json("/runs/run_nope/approval", json!({"decision": "approve"})).await;
    check(status, &body, 404, "not_found");
    let (status, body) = alice.get("/runs/..%2F..%2Fetc").await;
    check(status, &body, 404, "not_found");
    // Too large: 413, nothing run.
    let big = json!({"message": "x".repeat(4096)});
    let (status, body) = alice.post_json("/sessions/s/turns", big).await;
    check(status, &body, 413, "payload_too_large");
    assert_eq!(alice.get("/sessions").await.1, json!({"sessions": []}));
    // Unknown things.
    let (status, body) = alice.get("/sessions/missing").await;
    check(status, &body, 404, "not_found");
    let (status, body) = alice.get("/sessions/missing/memory/messages").await;
    check(status, &body, 404, "not_found");
    let (status, body) = alice.get("/sessions/missing/search").await;
    check(status, &body, 400, "invalid_request");
    let (status, body) = alice.get("/sessions/missing/turns/x/trace").await;
    check(status, &body, 400, "invalid_request");
    let (status, body) = alice.get("/no/such/route").await;
    check(status, &body, 404, "not_found");
    let response = alice.request(reqwest::Method::PUT, "/sessions").send().await.unwrap();
    check(response.status().as_u16(), &response.json().await.unwrap(), 405, "method_not_allowed");
    // A Host that does not name this server (DNS rebinding): 403 on every route.
    for path in ["/", "/v1/sessions", "/mcp"] {
        let response = http
            .get(format!("{base}{path}"))
            .header("host", "evil.example")
            .bearer_auth(ALICE)
            .send()
            .await
            .unwrap();
        check(response.status().as_u16(), &response.json().await.unwrap(), 403, "forbidden_host");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_turn_cancels_it_and_nothing_is_stored() {
    let server = serve(destructive_runner(destructive_runtime())).await;
    let alice = Api::new(&server, ALICE);
    let response = alice
        .request(reqwest::Method::POST, "/sessions/gone/turns")
        .header("accept", "text/event-stream")
        .json(&json!({"message": "wait 60000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Read until the tool is running, then hang up.
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("\"tool_name\":\"wait\"") {
        let chunk =
            tokio::time::timeout(Duration::from_secs(30), body.next()).await.unwrap().unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(body);
    // The session lock is released once the run is dropped: the next turn on the session runs
    // (it would wait for the 60 s tool otherwise) and is turn 1.
    let next = tokio::time::timeout(
        Duration::from_secs(20),
        alice.post_json("/sessions/gone/turns", json!({"message": "go", "options": {"approve": ["*"]}})),
    )
    .await
    .expect("the cancelled turn released its session");
    assert_eq!(next.0, 200);
    assert_eq!(next.1["turn_number"], 1, "the cancelled turn left nothing: {}", next.1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_running_turn_finish_and_commit() {
    let server = serve(destructive_runner(destructive_runtime())).await;
    let alice = Api::new(&server, ALICE);
    let running = {
        let alice = alice.clone();
        tokio::spawn(async move {
            alice
                .post_sse(
                    "/sessions/slow/turns",
                    json!({"message": "wait 1500", "options": {"approve": ["*"]}}),
                )
                .await
        })
    };
    // Let the turn start, then shut down while it runs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = server.base_url();
    server.shutdown().await;
    let (status, frames) = running.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(frames.last().unwrap().event, "turn_summary", "{:?}", types(&frames));
    // And the server is gone.
    assert!(reqwest::get(format!("{base}/")).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_on_another_loopback_address_with_sessions_tied_to_the_caller_that_opened_them() {
    // 127.0.0.2 is loopback too: it used to answer every request with 403.
    let runner = destructive_runner(destructive_runtime());
    let options = HttpOptions::new().with_token(ALICE, "alice").with_token(BOB, "bob");
    let server = serve_http(runner, "127.0.0.2:0".parse().unwrap(), options).await.unwrap();
    let url = server.url();
    let http = reqwest::Client::new();
    let post = |token: &'static str, session: Option<String>, body: Value| {
        let mut request = http
            .post(&url)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body);
        if let Some(id) = session {
            request = request.header("mcp-session-id", id);
        }
        request.send()
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let response = post(ALICE, None, init).await.unwrap();
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = response.text().await.unwrap();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert!(post(ALICE, Some(session.clone()), initialized).await.unwrap().status().is_success());
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});

    // Bob knows the id: he can neither use nor end Alice's MCP session.
    let response = post(BOB, Some(session.clone()), list.clone()).await.unwrap();
    assert_eq!(response.status(), 404);
    let response =
        http.delete(&url).bearer_auth(BOB).header("mcp-session-id", &session).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let response = post(ALICE, Some(session.clone()), list).await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let frames = parse_sse(&text);
    let tools = frames.iter().find_map(|f| f.data.get("result")).unwrap_or_else(|| panic!("{text}"));
    assert!(tools["tools"].as_array().unwrap().iter().any(|t| t["name"] == "delete_file"));
    let response =
        http.delete(&url).bearer_auth(ALICE).header("mcp-session-id", &session).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    server.shutdown().await;
}

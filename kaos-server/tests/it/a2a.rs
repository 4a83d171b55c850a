//! The agent over A2A (JSON-RPC at `/a2a`, the card at `/.well-known/agent-card.json`), end to
//! end over loopback with the scripted model of `support`: tasks that complete, stream, pause
//! for approval and continue, cancel; the protocol's error codes for bad input, with nothing
//! stored; the same tokens and caller isolation as `/v1`.

use kaos_a2a::{AgentCard, SecurityScheme, StreamResponse, Task, TaskState};
use kaos_server::HttpServer;
use kaos_server::a2a::A2aOptions;
use serde_json::{Value, json};

use crate::support::{ALICE, Api, BOB, destructive_runner, destructive_runtime, loopback, parse_sse, serve};

/// A2A at `server`, as the caller with `token`.
struct A2a {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl A2a {
    fn new(server: &HttpServer, token: &str) -> Self {
        Self { url: format!("{}/a2a", server.base_url()), token: token.into(), http: reqwest::Client::new() }
    }

    fn post(&self) -> reqwest::RequestBuilder {
        self.http.post(&self.url).bearer_auth(&self.token).header("A2A-Version", "1.0")
    }

    /// One call: the whole JSON-RPC response.
    async fn call(&self, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
        let response = self.post().json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let value: Value = response.json().await.unwrap();
        assert_eq!(value["jsonrpc"], "2.0");
        value
    }

    async fn result(&self, method: &str, params: Value) -> Value {
        let response = self.call(method, params).await;
        assert!(response["error"].is_null(), "{response}");
        response["result"].clone()
    }

    async fn error_code(&self, method: &str, params: Value) -> i64 {
        let response = self.call(method, params).await;
        assert!(response["result"].is_null(), "{response}");
        response["error"]["code"].as_i64().unwrap()
    }

    /// A streaming call: each event's result, typed.
    async fn stream(&self, method: &str, params: Value) -> Vec<StreamResponse> {
        let body = json!({"jsonrpc": "2.0", "id": "s", "method": method, "params": params});
        let response = self.post().header("accept", "text/event-stream").json(&body).send().await.unwrap();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let text = response.text().await.unwrap();
        parse_sse(&text)
            .into_iter()
            .map(|frame| {
                assert_eq!(frame.data["id"], "s", "{}", frame.data);
                serde_json::from_value(frame.data["result"].clone()).unwrap()
            })
            .collect()
    }

    async fn send(&self, message: Value) -> Task {
        let result = self.result("SendMessage", json!({"message": message})).await;
        serde_json::from_value(result["task"].clone()).unwrap()
    }
}

fn user(text: &str) -> Value {
    json!({"messageId": uuid(), "role": "ROLE_USER", "parts": [{"text": text}]})
}

fn uuid() -> String {
    format!("m-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

fn text_of(task: &Task) -> String {
    task.artifacts.iter().flat_map(|a| a.parts.iter()).filter_map(|p| p.as_text()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_card_describes_the_agent_its_skills_and_the_bearer_scheme() {
    let server = serve(destructive_runner(destructive_runtime())).await;
    // Discovery needs no token.
    let response = reqwest::get(format!("{}/.well-known/agent-card.json", server.base_url())).await.unwrap();
    assert_eq!(response.status(), 200);
    let card: AgentCard = response.json().await.unwrap();
    assert_eq!(card.name, "janitor");
    let interface = card.interface("JSONRPC").unwrap();
    assert_eq!(interface.url, format!("{}/a2a", server.base_url()));
    assert_eq!(interface.protocol_version, "1.0");
    assert_eq!(card.capabilities.streaming, Some(true));
    assert_eq!(card.capabilities.push_notifications, Some(false));
    assert!(matches!(
        card.security_schemes.get("bearer"),
        Some(SecurityScheme::HttpAuthSecurityScheme(s)) if s.scheme == "Bearer"
    ));
    assert!(card.security_requirements[0].schemes.contains_key("bearer"));
    let skills: Vec<(&str, &str)> =
        card.skills.iter().map(|s| (s.id.as_str(), s.description.as_str())).collect();
    assert_eq!(skills[0].0, "chat");
    assert!(skills.contains(&("tool:delete_file", "Deletes a file.")), "{skills:?}");
    assert!(skills.contains(&("tool:wait", "Waits a while.")), "{skills:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_runs_a_turn_in_the_callers_context_and_the_task_completes_with_its_cost() {
    let server = serve(destructive_runner(destructive_runtime())).await;
    let alice = A2a::new(&server, ALICE);
    let task = alice.send(user("wait 1")).await;
    assert_eq!(task.status.state, TaskState::Completed, "{task:?}");
    assert_eq!(text_of(&task), "Done: waited 1 ms (turn 1)");
    let kaos = &task.metadata.as_ref().unwrap()["kaos"];
    assert_eq!(kaos["run_id"], task.id.as_str(), "the task is the run");
    assert_eq!(kaos["stop_reason"], "completed");
    assert!(kaos["cost_usd"].as_f64().unwrap() > 0.0, "{kaos}");
    assert!(kaos["usage"]["input_tokens"].as_u64().unwrap() > 0, "{kaos}");
    assert_eq!(task.history.len(), 2, "the message and the answer: {:?}", task.history);
    // The context is Alice's session, as the /v1 API names it; Bob does not see it.
    let context = task.context_id.clone();
    let (status, session) = Api::new(&server, ALICE).get(&format!("/sessions/{context}")).await;
    assert_eq!((status, session["turns"].as_u64()), (200, Some(1)), "{session}");
    assert_eq!(Api::new(&server, BOB).get(&format!("/sessions/{context}")).await.0, 404);
    // The same context continues the session; GetTask reads a task with the history asked for.
    let mut next = user("wait 2");
    next["contextId"] = json!(context);
    let second = alice.send(next).await;
    assert_eq!(text_of(&second), "Done: waited 2 ms (turn 2)");
    let got: Task =
        serde_json::from_value(alice.result("GetTask", json!({"id": task.id, "historyLength": 1})).await)
            .unwrap();
    assert_eq!((got.status.state, got.history.len()), (TaskState::Completed, 1));
    let listed = alice.result("ListTasks", json!({"contextId": context})).await;
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed["tasks"][0]["id"], second.id.as_str(), "newest first");
    // Another caller's task is not found, exactly like a missing one.
    let bob = A2a::new(&server, BOB);
    assert_eq!(bob.error_code("GetTask", json!({"id": task.id})).await, -32001);
    assert_eq!(bob.error_code("GetTask", json!({"id": "run_missing"})).await, -32001);
    assert_eq!(bob.error_code("CancelTask", json!({"id": task.id})).await, -32001);
    assert_eq!(bob.error_code("SubscribeToTask", json!({"id": task.id})).await, -32001);
    let mut follow_up = user("approve");
    follow_up["taskId"] = json!(task.id);
    assert_eq!(bob.error_code("SendMessage", json!({"message": follow_up})).await, -32001);
    assert_eq!(bob.result("ListTasks", json!({})).await["tasks"], json!([]));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_sends_the_task_then_the_answer_as_artifact_updates_then_the_final_status() {
    let server = serve(destructive_runner(destructive_runtime())).await;
    let alice = A2a::new(&server, ALICE);
    let events = alice.stream("SendStreamingMessage", json!({"message": user("wait 3")})).await;
    let StreamResponse::Task(first) = &events[0] else { panic!("{events:?}") };
    assert_eq!(first.status.state, TaskState::Working);
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            StreamResponse::ArtifactUpdate(update) => {
                assert_eq!(update.task_id, first.id);
                update.artifact.parts[0].as_text().map(str::to_owned)
            }
            _ => None,
        })
        .collect();
    assert_eq!(text, "Done: waited 3 ms (turn 1)");
    let Some(StreamResponse::StatusUpdate(last)) = events.last() else { panic!("{events:?}") };
    assert_eq!(last.status.state, TaskState::Completed);
    assert!(last.metadata.as_ref().unwrap()["kaos"]["cost_usd"].as_f64().unwrap() > 0.0);
    // A finished task has nothing to subscribe to.
    assert_eq!(alice.error_code("SubscribeToTask", json!({"id": first.id})).await, -32004);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_run_is_an_input_required_task_whose_follow_up_approves_or_denies_it() {
    let server = serve(destructive_runner(destructive_runtime())).await;
    let alice = A2a::new(&server, ALICE);
    let paused = alice.send(user("clean up")).await;
    assert_eq!(paused.status.state, TaskState::InputRequired, "{paused:?}");
    let question = paused.status.message.as_ref().unwrap();
    let call = question.parts.iter().find_map(|p| match &p.content {
        kaos_a2a::PartContent::Data(data) => Some(data.clone()),
        _ => None,
    });
    assert_eq!(call.unwrap()["tool_name"], "delete_file");
    assert!(question.text().contains("approve"), "{}", question.text());
    // Nothing is stored while it waits.
    let (_, session) = Api::new(&server, ALICE).get(&format!("/sessions/{}", paused.context_id)).await;
    assert_eq!(session["turns"], 0, "{session}");
    // An answer that is not one changes nothing.
    let mut unclear = user("perhaps");
    unclear["taskId"] = json!(paused.id);
    assert_eq!(alice.error_code("SendMessage", json!({"message": unclear})).await, -32602);
    // The follow-up approves: the same run goes on and completes the same task, streamed.
    let mut approve = user("approve");
    approve["taskId"] = json!(paused.id);
    let events = alice.stream("SendStreamingMessage", json!({"message": approve})).await;
    let StreamResponse::Task(resumed) = &events[0] else { panic!("{events:?}") };
    assert_eq!((resumed.id.as_str(), resumed.status.state), (paused.id.as_str(), TaskState::Working));
    let Some(StreamResponse::StatusUpdate(last)) = events.last() else { panic!("{events:?}") };
    assert_eq!(last.status.state, TaskState::Completed);
    let done: Task = serde_json::from_value(alice.result("GetTask", json!({"id": paused.id})).await).unwrap();
    assert_eq!(text_of(&done), "Done: deleted notes.txt (turn 1)");
    assert_eq!(done.history.len(), 4, "message, question, answer, answer: {:?}", done.history);
    // Answered once only.
    let mut again = user("approve");
    again["taskId"] = json!(paused.id);
    assert_eq!(alice.error_code("SendMessage", json!({"message": again})).await, -32004);

    // Approved in advance by the request's guardrails (as /v1's turn options): no pause.
    let params = json!({"message": user("clean up"), "metadata": {"kaos": {"approve": ["delete_*"], "max_cost_usd": 1.0}}});
    let result = alice.result("SendMessage", params).await;
    let approved: Task = serde_json::from_value(result["task"].clone()).unwrap();
    assert_eq!(approved.status.state, TaskState::Completed, "{approved:?}");
    assert_eq!(text_of(&approved), "Done: deleted notes.txt (turn 1)");
    for bad in [json!({"approve": ["["]}), json!({"max_cost_usd": -1}), json!({"approve_all": true})] {
        let params = json!({"message": user("clean up"), "metadata": {"kaos": bad}});
        assert_eq!(alice.error_code("SendMessage", params).await, -32602, "{bad}");
    }

    // Denied with a data part: the tool does not run and the model is told why.
    let paused = alice.send(user("clean up")).await;
    let deny = json!({"messageId": "d", "role": "ROLE_USER", "taskId": paused.id, "contextId": paused.context_id,
        "parts": [{"data": {"decision": "deny", "reason": "keep the notes"}}]});
    let result = alice.result("SendMessage", json!({"message": deny})).await;
    let denied: Task = serde_json::from_value(result["task"].clone()).unwrap();
    assert_eq!(denied.status.state, TaskState::Completed);
    assert!(text_of(&denied).contains("keep the notes"), "{}", text_of(&denied));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_drops_the_running_turn_so_nothing_of_it_is_stored() {
    let server = serve(destructive_runner(destructive_runtime())).await;
    let alice = A2a::new(&server, ALICE);
    let started = alice
        .result(
            "SendMessage",
            json!({"message": user("wait 60000"), "configuration": {"returnImmediately": true}}),
        )
        .await;
    let task: Task = serde_json::from_value(started["task"].clone()).unwrap();
    assert_eq!(task.status.state, TaskState::Working);
    // A second stream of the same task, then the cancel: both see it end canceled.
    let subscribe = alice.stream("SubscribeToTask", json!({"id": task.id}));
    let cancel = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        alice.result("CancelTask", json!({"id": task.id})).await
    };
    let (events, canceled) = tokio::join!(subscribe, cancel);
    assert_eq!(canceled["status"]["state"], "TASK_STATE_CANCELED", "{canceled}");
    assert!(matches!(&events[0], StreamResponse::Task(t) if t.id == task.id));
    let Some(StreamResponse::StatusUpdate(last)) = events.last() else { panic!("{events:?}") };
    assert_eq!(last.status.state, TaskState::Canceled);
    // The turn was dropped whole, and its session released: the next task of the context runs
    // (it would wait for the 60 s tool otherwise) and is the session's turn 1.
    let mut next = user("wait 1");
    next["contextId"] = json!(task.context_id);
    let next = tokio::time::timeout(std::time::Duration::from_secs(20), alice.send(next))
        .await
        .expect("the cancelled turn released its session");
    assert_eq!(next.metadata.unwrap()["kaos"]["turn_number"], 1, "the cancelled turn left nothing");
    assert_eq!(alice.error_code("CancelTask", json!({"id": task.id})).await, -32002);
    let got = alice.result("GetTask", json!({"id": task.id})).await;
    assert_eq!(got["status"]["state"], "TASK_STATE_CANCELED");
    // A paused task cancels too, and its run is not resumed.
    let paused = alice.send(user("clean up")).await;
    assert_eq!(
        alice.result("CancelTask", json!({"id": paused.id})).await["status"]["state"],
        "TASK_STATE_CANCELED"
    );
    let mut approve = user("approve");
    approve["taskId"] = json!(paused.id);
    assert_eq!(alice.error_code("SendMessage", json!({"message": approve})).await, -32004);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_protocol_error_codes_and_stores_nothing() {
    let options = kaos_server::HttpOptions::new()
        .with_token(ALICE, "alice")
        .with_a2a(A2aOptions::default().with_max_part_bytes(64));
    let server = kaos_server::serve_http(destructive_runner(destructive_runtime()), loopback(), options)
        .await
        .unwrap();
    let alice = A2a::new(&server, ALICE);
    let raw = |body: &'static str| {
        let request = alice.post().header("content-type", "application/json").body(body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let parse = raw("{not json").await;
    assert_eq!((parse["error"]["code"].as_i64(), &parse["id"]), (Some(-32700), &Value::Null), "{parse}");
    assert_eq!(raw("[1, 2]").await["error"]["code"], -32600);
    let no_method = raw(r#"{"jsonrpc": "2.0", "id": 4}"#).await;
    assert_eq!((no_method["error"]["code"].as_i64(), &no_method["id"]), (Some(-32600), &json!(4)));
    assert_eq!(raw(r#"{"jsonrpc": "1.0", "id": 1, "method": "GetTask"}"#).await["error"]["code"], -32600);
    assert_eq!(alice.error_code("message/send", json!({})).await, -32601, "0.3 method names are not 1.0's");
    assert_eq!(alice.error_code("Nope", json!({})).await, -32601);
    assert_eq!(alice.error_code("SendMessage", json!({"message": {"role": "ROLE_USER"}})).await, -32602);
    assert_eq!(alice.error_code("SendMessage", json!({"message": user(&"x".repeat(65))})).await, -32602);
    let image = json!({"messageId": "i", "role": "ROLE_USER", "parts": [{"raw": "iVBORw0KGgo=", "mediaType": "image/png"}]});
    assert_eq!(alice.error_code("SendMessage", json!({"message": image})).await, -32005);
    let url = json!({"messageId": "u", "role": "ROLE_USER", "parts": [{"url": "https://x.test/a.pdf", "mediaType": "application/pdf"}]});
    assert_eq!(alice.error_code("SendMessage", json!({"message": url})).await, -32005);
    let mut unknown_task = user("approve");
    unknown_task["taskId"] = json!("run_nope");
    assert_eq!(alice.error_code("SendMessage", json!({"message": unknown_task})).await, -32001);
    let mut bad_context = user("hello");
    bad_context["contextId"] = json!("../etc");
    assert_eq!(alice.error_code("SendMessage", json!({"message": bad_context})).await, -32602);
    let push = json!({"taskId": "t", "url": "https://x.test/hook"});
    assert_eq!(alice.error_code("CreateTaskPushNotificationConfig", push).await, -32003);
    assert_eq!(alice.error_code("GetExtendedAgentCard", json!({})).await, -32004);
    // The version is a service parameter; none means 0.3.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}});
    let old: Value = alice
        .http
        .post(&alice.url)
        .bearer_auth(ALICE)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(old["error"]["code"], -32009, "{old}");
    let query: Value = alice
        .http
        .post(format!("{}?A2A-Version=1.0", alice.url))
        .bearer_auth(ALICE)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(query["error"]["code"], -32001, "the version may be a query parameter: {query}");
    // A wrong or missing token is 401 before anything is read.
    let wrong = A2a::new(&server, "wrong-token-0123456789abcdef");
    let response =
        wrong.post().json(&json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage"})).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    // Nothing of all that was stored, and no task was made.
    let (_, sessions) = Api::new(&server, ALICE).get("/sessions").await;
    assert_eq!(sessions["sessions"], json!([]), "{sessions}");
    assert_eq!(alice.result("ListTasks", json!({})).await["tasks"], json!([]));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_tasks_finish_within_its_grace_then_drops_them() {
    let runner = destructive_runner(destructive_runtime());
    let options = |grace_ms| {
        kaos_server::HttpOptions::new()
            .with_token(ALICE, "alice")
            .with_shutdown_grace(std::time::Duration::from_millis(grace_ms))
    };
    let start = |server: &HttpServer, message: &str| {
        let alice = A2a::new(server, ALICE);
        let params = json!({"message": user(message), "configuration": {"returnImmediately": true}});
        async move {
            let task: Task =
                serde_json::from_value(alice.result("SendMessage", params).await["task"].clone()).unwrap();
            assert_eq!(task.status.state, TaskState::Working);
            format!("alice.{}", task.context_id)
        }
    };
    let turns = |session: String| {
        let runner = runner.clone();
        async move { runner.sessions().turns(&session).await.unwrap().unwrap_or_default().len() }
    };

    // Within the grace: the task's turn finishes and commits although no request waits for it.
    let server = kaos_server::serve_http(runner.clone(), loopback(), options(30_000)).await.unwrap();
    let session = start(&server, "wait 300").await;
    server.shutdown().await;
    assert_eq!(turns(session).await, 1);

    // Past the grace: the run is dropped, and nothing of it is stored.
    let server = kaos_server::serve_http(runner.clone(), loopback(), options(200)).await.unwrap();
    let session = start(&server, "wait 60000").await;
    tokio::time::timeout(std::time::Duration::from_secs(20), server.shutdown())
        .await
        .expect("shutdown waits no longer than its grace for A2A tasks");
    assert_eq!(turns(session).await, 0);
}

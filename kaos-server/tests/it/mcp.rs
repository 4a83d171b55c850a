//! MCP both ways, against MCP implementations we did not write: the reference
//! `@modelcontextprotocol/server-everything` mounted as tools of an agent, and the official
//! TypeScript SDK (`@modelcontextprotocol/sdk`) as a client of our server over stdio and
//! streamable HTTP. They are pinned in `tests/mcp/package-lock.json`; install them with
//! `tests/mcp/install.sh` (`cargo xtask ci` does).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kaos_agent::Agent;
use kaos_providers::{Message, ScriptedClient, ScriptedReply};
use kaos_runner::{Runner, StopReason, ToolCallRecord};
use kaos_runtime::Runtime;
use kaos_server::client::{McpClient, McpError, McpServerConfig};
use kaos_server::{HttpOptions, ServeError, serve_http};
use kaos_tools::{ToolAnnotations, ToolRegistry, ToolResult, tool_fn};
use serde::Deserialize;
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `tests/mcp/node_modules`, or a clear failure saying how to install it.
fn node_modules() -> PathBuf {
    let dir = repo_root().join("tests/mcp/node_modules");
    assert!(
        dir.join("@modelcontextprotocol/sdk").is_dir()
            && dir.join("@modelcontextprotocol/server-everything").is_dir(),
        "the MCP interop packages are not installed: run tests/mcp/install.sh (needs node >= 20 and npm)"
    );
    dir
}

fn everything_server() -> McpServerConfig {
    let script = node_modules().join("@modelcontextprotocol/server-everything/dist/index.js");
    McpServerConfig::stdio("everything", "node", [script.to_str().unwrap(), "stdio"])
}

/// Calls `everything-echo`, then `everything-get-sum`, then answers with both results.
fn everything_model() -> ScriptedClient {
    ScriptedClient::from_fn(|request| {
        let results: Vec<&str> = request
            .messages
            .iter()
            .filter_map(|m| match m {
                Message::Tool { content, .. } => Some(content.as_str()),
                _ => None,
            })
            .collect();
        match results.as_slice() {
            [] => ScriptedReply::tool_call("everything-echo", json!({"message": "hi from kaos"})),
            [_] => ScriptedReply::tool_call("everything-get-sum", json!({"a": 2, "b": 40})),
            [echo, sum, ..] => ScriptedReply::text(format!("{echo} | {sum}")),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_calls_the_reference_servers_tools_through_its_turn() {
    let client = McpClient::connect(everything_server()).await.unwrap();
    let mut registry = ToolRegistry::new();
    let names = client.mount(&mut registry).unwrap();
    assert!(names.iter().any(|n| n == "everything-echo"), "{names:?}");
    let echo = registry.get("everything-echo").unwrap();
    assert_eq!(echo.spec().annotations, ToolAnnotations::read_only().with_open_world(false));
    assert_eq!(echo.spec().input_schema["properties"]["message"]["description"], "Message to echo");

    let runtime = Runtime::builder().tools(registry.list()).unwrap().build();
    let agent =
        Agent::builder().name("mounter").tools(["everything-echo", "everything-get-sum"]).build().unwrap();
    let runner = Runner::builder(agent, runtime).model(Arc::new(everything_model())).build().unwrap();
    let response = runner.turn("use the tools", "s").await.unwrap();

    assert_eq!(response.stop_reason, StopReason::Completed);
    assert_eq!(response.text, "Echo: hi from kaos | The sum of 2 and 40 is 42.");
    let ids: Vec<String> = response.tool_calls.iter().map(|c| c.call_id.clone()).collect();
    let calls = vec![
        ToolCallRecord {
            call_id: ids[0].clone(),
            name: "everything-echo".into(),
            arguments: json!({"message": "hi from kaos"}),
            result: "Echo: hi from kaos".into(),
            is_error: false,
        },
        ToolCallRecord {
            call_id: ids[1].clone(),
            name: "everything-get-sum".into(),
            arguments: json!({"a": 2, "b": 40}),
            result: "The sum of 2 and 40 is 42.".into(),
            is_error: false,
        },
    ];
    assert_eq!(response.tool_calls, calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_died_is_restarted_on_the_next_call() {
    let client = McpClient::connect(everything_server()).await.unwrap();
    let echo = client.tools().iter().find(|t| t.spec().name == "everything-echo").unwrap().clone();
    let ctx = kaos_tools::ToolContext::for_tests();

    let pid = client.process_id().await.unwrap();
    let killed = std::process::Command::new("kill").arg("-9").arg(pid.to_string()).status().unwrap();
    assert!(killed.success());
    // Poll the connection state (a readiness signal), not the clock.
    while client.is_connected().await {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let result = echo.call(json!({"message": "back"}), ctx).await.unwrap();
    assert_eq!(result, ToolResult::text("Echo: back"));
    assert_eq!(client.restarts(), 1);
    assert_ne!(client.process_id().await, Some(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_start_is_a_typed_error() {
    let config = McpServerConfig::stdio("ghost", "/nonexistent/kaos-mcp-server", Vec::<String>::new());
    assert!(matches!(McpClient::connect(config).await, Err(McpError::Spawn { .. })));
}

// ---- our server, driven by the official TypeScript SDK ----

/// What `tests/mcp/client.mjs` reports.
#[derive(Debug, Deserialize)]
struct ClientReport {
    server: String,
    tools: Vec<String>,
    greet: Value,
    agent_tool: Value,
    greeting: Vec<String>,
    turns: Vec<Turn>,
    bad_session: Value,
    resources: Vec<String>,
    session: Value,
    missing_session: Value,
    #[serde(default)]
    foreign_session: Option<Value>,
    #[serde(default)]
    unauthorized: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Turn {
    text: String,
    is_error: bool,
    structured: Value,
}

/// Runs `node tests/mcp/client.mjs args…` and parses its report.
async fn run_client(args: &[&str], env: &[(&str, &str)]) -> ClientReport {
    node_modules();
    let output = tokio::process::Command::new("node")
        .arg(repo_root().join("tests/mcp/client.mjs"))
        .args(args)
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .expect("node is not installed (the MCP interop tests need node >= 20)");
    assert!(output.status.success(), "client.mjs failed: {}", String::from_utf8_lossy(&output.stdout));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("bad report ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

/// What every run of client.mjs must have seen, whatever the transport.
fn check_common(report: &ClientReport, session: &str) {
    assert_eq!(report.server, "kaos");
    assert_eq!(
        report.tools,
        [
            "kaos-agent-turn",
            "kaos-agent-resume",
            "kaos-vfs-read",
            "kaos-vfs-write",
            "kaos-vfs-append",
            "kaos-vfs-list",
            "kaos-vfs-delete",
            "kaos-demo-greet"
        ]
    );
    let greet = json!({
        "description": "Greets someone by name.",
        "input_schema": {
            "type": "object",
            "properties": {
                "name": {"description": "Who to greet.", "type": "string"},
                "style": {
                    "description": "How formal the greeting is.",
                    "default": "casual",
                    "oneOf": [
                        {"const": "formal", "description": "A greeting for strangers.", "type": "string"},
                        {"const": "casual", "description": "A greeting for friends.", "type": "string"}
                    ]
                }
            },
            "required": ["name"]
        },
        "annotations": {"readOnlyHint": true, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false}
    });
    assert_eq!(report.greet, greet);
    assert_eq!(
        report.agent_tool,
        json!({"required": ["message", "session_id"], "properties": ["approve", "max_cost_usd", "message", "session_id"]})
    );
    assert_eq!(report.greeting, ["Good day, Ada."]);

    assert_eq!(report.turns.len(), 2);
    for (i, turn) in report.turns.iter().enumerate() {
        let n = i + 1;
        let said = ["hello", "again"][i];
        let plural = if n == 1 { "message" } else { "messages" };
        let text = format!("You said: \"{said}\". I have seen {n} user {plural} in this session.");
        assert!(!turn.is_error);
        assert_eq!(turn.text, text);
        let s = &turn.structured;
        assert!(s["run_id"].as_str().unwrap().starts_with("run_"));
        let guardrails = if n == 1 {
            json!({"approve": [], "max_cost_usd": null, "enforced": true})
        } else {
            json!({"approve": ["kaos-vfs-*"], "max_cost_usd": 0.5, "enforced": true})
        };
        let expected = json!({
            "text": text,
            "session_id": session,
            "run_id": s["run_id"],
            "turn_number": n,
            "stop_reason": "completed",
            // JSON from JavaScript: the integer 0.
            "cost_usd": 0,
            "usage": s["usage"],
            "model_calls": 1,
            "tool_calls": [],
            "approval_required": null,
            "guardrails": guardrails,
        });
        assert_eq!(s, &expected);
        assert!(s["usage"]["input_tokens"].as_u64().unwrap() > 0);
    }
    assert_eq!(report.bad_session, json!({"rejected": true, "code": -32602}));
    assert_eq!(report.resources, [format!("kaos://sessions/{session}")]);
    assert_eq!(
        report.session,
        json!({
            "mime_type": "application/json",
            "json": {
                "session_id": session,
                "messages": [
                    {"role": "user", "content": "hello"},
                    {"role": "assistant", "content": report.turns[0].text},
                    {"role": "user", "content": "again"},
                    {"role": "assistant", "content": report.turns[1].text},
                ]
            }
        })
    );
    assert_eq!(report.missing_session, json!({"found": false, "code": -32002}));
}

/// The example's binary, built next to this test by `cargo test --features mcp`.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join("examples").join("mcp_serve");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p kaos-server --example mcp_serve`",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_uses_our_server_over_stdio() {
    let dir = tempfile::tempdir().unwrap();
    let server = example_binary();
    let report = run_client(
        &["stdio", server.to_str().unwrap(), "--stdio", "--data-dir", dir.path().to_str().unwrap()],
        &[],
    )
    .await;
    check_common(&report, "interop");
    assert_eq!(report.unauthorized, None);
    // The session is the runner's own (stdio is unscoped) and persisted on disk.
    assert!(dir.path().join("sessions/interop/turns.jsonl").is_file());
}

/// The example's agent and tools, in memory.
fn example_like_runner(runtime: Runtime) -> Runner {
    let agent = Agent::builder().name("echo-agent").build().unwrap();
    Runner::builder(agent, runtime).build().unwrap()
}

#[derive(Debug, Default, serde::Serialize, Deserialize, kaos_tools::schemars::JsonSchema)]
#[schemars(crate = "kaos_tools::schemars")]
#[serde(rename_all = "snake_case")]
enum Style {
    /// A greeting for strangers.
    Formal,
    /// A greeting for friends.
    #[default]
    Casual,
}

/// Input of the greeting tool.
#[derive(Debug, Deserialize, kaos_tools::schemars::JsonSchema)]
#[schemars(crate = "kaos_tools::schemars")]
struct GreetInput {
    /// Who to greet.
    name: String,
    /// How formal the greeting is.
    #[serde(default)]
    style: Style,
}

fn runtime_with_greet() -> Runtime {
    let greet = tool_fn("kaos-demo-greet", "Greets someone by name.", |input: GreetInput, _ctx| async move {
        Ok(ToolResult::text(match input.style {
            Style::Formal => format!("Good day, {}.", input.name),
            Style::Casual => format!("Hi {}!", input.name),
        }))
    })
    .annotations(ToolAnnotations::read_only().with_open_world(false))
    .build()
    .unwrap();
    Runtime::builder().builtin_tools().unwrap().tool(greet).unwrap().build()
}

const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-0123456789abcdef";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_uses_our_server_over_http_and_callers_are_isolated() {
    let runtime = runtime_with_greet();
    let options = HttpOptions::new().with_token(ALICE, "alice").with_token(BOB, "bob");
    let server = serve_http(example_like_runner(runtime.clone()), loopback(), options).await.unwrap();
    let url = server.url();

    let alice = run_client(&["http", &url, ALICE], &[("KAOS_TEST_SESSION", "private")]).await;
    check_common(&alice, "private");
    assert_eq!(
        alice.unauthorized,
        Some(json!({"missing_token": 401, "wrong_token": 401, "www_authenticate": "Bearer"}))
    );

    // Bob cannot see Alice's session: the same "not found" as a session that does not exist.
    let bob = run_client(
        &["http", &url, BOB],
        &[("KAOS_TEST_SESSION", "mine"), ("KAOS_TEST_FOREIGN_SESSION", "private")],
    )
    .await;
    check_common(&bob, "mine");
    assert_eq!(bob.foreign_session, Some(json!({"found": false, "code": -32002})));

    // In the runner, each caller's sessions live in its own namespace.
    let runner = example_like_runner(runtime);
    assert_eq!(runner.history("alice.private").await.unwrap().len(), 4);
    assert_eq!(runner.history("bob.mine").await.unwrap().len(), 4);
    assert!(runner.history("private").await.unwrap().is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_mounts_our_http_server_with_its_token() {
    let runtime = runtime_with_greet();
    let options = HttpOptions::new().with_token(ALICE, "alice");
    let server = serve_http(example_like_runner(runtime), loopback(), options).await.unwrap();

    let config = McpServerConfig::http("kaos", server.url()).with_bearer_token(ALICE);
    let client = McpClient::connect(config).await.unwrap();
    let greet = client.tools().iter().find(|t| t.spec().name == "kaos-kaos-demo-greet").unwrap().clone();
    assert_eq!(greet.spec().annotations, ToolAnnotations::read_only().with_open_world(false));
    let result = greet.call(json!({"name": "Grace"}), kaos_tools::ToolContext::for_tests()).await.unwrap();
    assert_eq!(result, ToolResult::text("Hi Grace!"));

    let wrong = McpServerConfig::http("kaos", server.url()).with_bearer_token("not-the-token-0123456789");
    assert!(matches!(McpClient::connect(wrong).await, Err(McpError::Handshake { .. })));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_server_refuses_to_start_unsafely() {
    let runner = || example_like_runner(Runtime::test_mode());
    let no_token = serve_http(runner(), loopback(), HttpOptions::new()).await;
    assert!(matches!(no_token, Err(ServeError::MissingToken)));

    let public: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let exposed = serve_http(runner(), public, HttpOptions::new().with_token(ALICE, "alice")).await;
    assert!(matches!(exposed, Err(ServeError::NonLoopback(addr)) if addr == public));
}

/// A scripted model priced by the shipped table (`gpt-4.1-mini`), honouring
/// `max_output_tokens`: each reply wants 2,000 output tokens ($0.0032).
#[derive(Debug)]
struct PricedScript(ScriptedClient);

#[async_trait::async_trait]
impl kaos_providers::ModelClient for PricedScript {
    fn capabilities(&self) -> kaos_providers::Capabilities {
        kaos_providers::Capabilities::default()
    }

    fn price(&self, _model: &str) -> Option<kaos_providers::ModelPrice> {
        kaos_providers::Pricing::default().price("gpt-4.1-mini").copied()
    }

    async fn complete(
        &self,
        request: &kaos_providers::ModelRequest,
    ) -> Result<kaos_providers::ModelResponse, kaos_providers::ProviderError> {
        let mut response = self.0.complete(request).await?;
        let out = request.sampling.max_output_tokens.map_or(2_000, |max| u64::from(max).min(2_000));
        response.usage = kaos_providers::Usage::new(request.estimated_input_tokens(), out);
        response.cost_usd = Some(self.price(&request.model).unwrap().cost(&response.usage));
        Ok(response)
    }
}

/// Issue 13, defect 1, the way an MCP caller meets it: the cost cap of `kaos-agent-turn` still
/// holds after `kaos-agent-resume`, and the resumed turn says so in its guardrails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_turn_keeps_the_callers_cost_cap() {
    let confirm = tool_fn("confirm", "Confirms.", |_: Value, _ctx| async move { Ok(ToolResult::text("ok")) })
        .build()
        .unwrap();
    let runtime = Runtime::builder().tool(confirm).unwrap().build();
    // Calls `confirm` (which pauses), then answers.
    let script = ScriptedClient::from_fn(|request| {
        let results = request.messages.iter().filter(|m| matches!(m, Message::Tool { .. })).count();
        match results {
            0 => ScriptedReply::tool_call("confirm", json!({})),
            _ => ScriptedReply::text("done"),
        }
    });
    let agent = Agent::builder()
        .name("capped")
        .tools(["confirm"])
        .permit("confirm", kaos_agent::Decision::Ask)
        .build()
        .unwrap();
    let runner = Runner::builder(agent, runtime).model(Arc::new(PricedScript(script))).build().unwrap();
    let server = serve_http(runner, loopback(), HttpOptions::new().with_token(ALICE, "alice")).await.unwrap();
    let client = McpClient::connect(McpServerConfig::http("kaos", server.url()).with_bearer_token(ALICE))
        .await
        .unwrap();
    let tool = |name: &str| client.tools().iter().find(|t| t.spec().name == name).unwrap().clone();
    let context = kaos_tools::ToolContext::for_tests;

    // A full reply costs $0.0032: the first fits the $0.004 cap, the second only if its output
    // is capped to what is left — which happens only while the cap applies.
    let turn = json!({"message": "go", "session_id": "capped", "max_cost_usd": 0.004});
    let paused = tool("kaos-kaos-agent-turn").call(turn, context()).await.unwrap();
    let paused = paused.structured_content.unwrap();
    assert_eq!(paused["stop_reason"], "approval_required", "{paused}");
    let resume = json!({"run_id": paused["run_id"], "session_id": "capped", "approve": true});
    let done = tool("kaos-kaos-agent-resume").call(resume, context()).await.unwrap();
    let done = done.structured_content.unwrap();
    assert_eq!(done["guardrails"], json!({"approve": [], "max_cost_usd": 0.004, "enforced": true}));
    assert!(done["cost_usd"].as_f64().unwrap() <= 0.004, "{done}");
    assert_eq!((done["stop_reason"].as_str(), done["model_calls"].as_u64()), (Some("completed"), Some(2)));
    server.shutdown().await;
}

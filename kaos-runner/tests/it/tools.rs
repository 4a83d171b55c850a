#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kaos_agent::Agent;
use kaos_providers::{Message, ScriptedClient, ScriptedReply};
use kaos_runner::{Runner, StopReason, ToolCallRecord};
use kaos_runtime::Runtime;
use kaos_tools::{ToolAnnotations, ToolResult, tool_fn};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

/// Adds two numbers.
#[derive(Debug, Deserialize, JsonSchema)]
struct AddInput {
    /// The first addend.
    a: i64,
    /// The second addend.
    b: i64,
}

fn runtime() -> Runtime {
    let add = tool_fn("add", "Adds two integers.", |input: AddInput, _ctx| async move {
        Ok(ToolResult::text((input.a + input.b).to_string()))
    })
    .annotations(ToolAnnotations::read_only())
    .build()
    .unwrap();
    let boom = tool_fn("boom", "Always panics.", |_input: kaos_tools::NoInput, _ctx| async move {
        if true {
            panic!("kaboom");
        }
        Ok(ToolResult::text("unreachable"))
    })
    .build()
    .unwrap();
    Runtime::builder().tool(add).unwrap().tool(boom).unwrap().builtin_tools().unwrap().build()
}

/// Calls `add` until it sees a tool result, then answers with it.
fn adding_model() -> ScriptedClient {
    ScriptedClient::from_fn(|request| match request.messages.last() {
        Some(Message::Tool { content, .. }) => ScriptedReply::text(format!("The sum is {content}.")),
        _ => ScriptedReply::tool_call("add", json!({"a": 2, "b": 3})),
    })
}

fn runner(model: &ScriptedClient, agent: Agent) -> Runner {
    Runner::builder(agent, runtime()).model(Arc::new(model.clone())).build().unwrap()
}

#[tokio::test]
async fn the_model_calls_a_typed_tool_and_gets_its_result() {
    let model = adding_model();
    let runner = runner(&model, Agent::builder().tools(["add"]).build().unwrap());
    assert_eq!(runner.tool_names(), ["add"]);

    let response = runner.turn("What is 2 + 3?", "s").await.unwrap();
    assert_eq!(response.text, "The sum is 5.");
    assert_eq!(response.stop_reason, StopReason::Completed);
    assert_eq!(response.model_calls, 2);
    let record = ToolCallRecord {
        call_id: "call_1_0".into(),
        name: "add".into(),
        arguments: json!({"a": 2, "b": 3}),
        result: "5".into(),
        is_error: false,
    };
    assert_eq!(response.tool_calls, vec![record]);

    let requests = model.requests();
    let schema = &requests[0].tools[0].parameters;
    assert_eq!(schema["properties"]["a"]["description"], "The first addend.");
    assert_eq!(requests[1].messages.last(), Some(&Message::tool("call_1_0", "add", "5", false)));

    // The turn's messages, tool call and result included, are the session's history.
    let history = runner.history("s").await.unwrap();
    assert_eq!(history.len(), 4);
    assert_eq!(history[2], Message::tool("call_1_0", "add", "5", false));
}

#[tokio::test]
async fn the_iteration_limit_stops_the_turn_with_a_typed_reason() {
    let model = ScriptedClient::from_fn(|_| ScriptedReply::tool_call("add", json!({"a": 1, "b": 1})));
    let runner = runner(&model, Agent::builder().max_iterations(3).build().unwrap());
    let response = runner.turn("loop forever", "s").await.unwrap();
    assert_eq!(response.stop_reason, StopReason::IterationLimit);
    assert_eq!(response.model_calls, 3);
    assert_eq!(response.tool_calls.len(), 2, "the calls of the last model call are not run");
    // Every tool call in the stored history has a result, so the next turn is well-formed.
    let history = runner.history("s").await.unwrap();
    let calls: usize = history
        .iter()
        .map(|m| match m {
            Message::Assistant { tool_calls, .. } => tool_calls.len(),
            _ => 0,
        })
        .sum();
    let results = history.iter().filter(|m| matches!(m, Message::Tool { .. })).count();
    assert_eq!((calls, results), (3, 3));
    assert!(history.last().unwrap().content().contains("iteration limit"));
}

#[tokio::test]
async fn a_panicking_tool_is_an_error_result_not_a_crashed_turn() {
    let model = ScriptedClient::new().with_tool_call("boom", json!({})).with_text("It failed, sorry.");
    let runner = runner(&model, Agent::builder().build().unwrap());
    let response = runner.turn("go", "s").await.unwrap();
    assert_eq!(response.text, "It failed, sorry.");
    assert!(response.tool_calls[0].is_error);
    assert!(response.tool_calls[0].result.contains("internal error"), "{}", response.tool_calls[0].result);
}

#[tokio::test]
async fn tools_outside_the_agents_globs_are_neither_offered_nor_run() {
    let model = ScriptedClient::new().with_tool_call("boom", json!({})).with_text("ok");
    let runner = runner(&model, Agent::builder().tools(["add", "kaos-vfs-*"]).build().unwrap());
    assert!(!runner.tool_names().contains(&"boom"));
    let response = runner.turn("go", "s").await.unwrap();
    assert!(response.tool_calls[0].is_error);
    assert!(response.tool_calls[0].result.contains("boom"));
}

#[tokio::test]
async fn an_empty_tools_list_offers_no_tool_and_an_absent_one_every_tool() {
    let agent = |file: &str| Agent::from_toml(&format!("model = \"scripted:echo\"\n{file}")).unwrap();
    let every = [
        "add",
        "boom",
        "kaos-vfs-read",
        "kaos-vfs-write",
        "kaos-vfs-append",
        "kaos-vfs-list",
        "kaos-vfs-delete",
    ];
    let offered = |agent: Agent| {
        let mut names: Vec<String> =
            runner(&ScriptedClient::new(), agent).tool_names().iter().map(|n| n.to_string()).collect();
        names.sort();
        names
    };
    let mut all: Vec<String> = every.iter().map(|n| n.to_string()).collect();
    all.sort();
    assert_eq!(offered(agent("")), all, "no `tools` key: every tool of the runtime");
    assert_eq!(offered(agent("tools = [\"*\"]")), all, "`*` spells every tool");
    assert!(offered(agent("tools = []")).is_empty(), "an empty list is no tool");
    assert!(offered(Agent::builder().no_tools().build().unwrap()).is_empty());
    assert_eq!(offered(Agent::builder().tools(["add"]).all_tools().build().unwrap()), all);

    // A model asking for a tool the agent was not given gets an error result, nothing runs.
    let model = ScriptedClient::new().with_tool_call("add", json!({"a": 2, "b": 3})).with_text("ok");
    let runner = runner(&model, agent("tools = []"));
    let response = runner.turn("add 2 and 3", "s").await.unwrap();
    assert!(response.tool_calls[0].is_error, "{:?}", response.tool_calls[0]);
    assert!(model.requests()[0].tools.is_empty(), "no tool definition was sent");

    // The agent file keeps the difference: `tools = []` round-trips, an absent list stays absent.
    let tools_line =
        |agent: Agent| agent.to_toml().unwrap().lines().find(|l| l.starts_with("tools =")).map(str::to_owned);
    assert_eq!(tools_line(agent("tools = []")).as_deref(), Some("tools = []"));
    assert_eq!(tools_line(agent("")), None);
}

#[tokio::test]
async fn bad_arguments_reach_the_model_as_an_error_it_can_fix() {
    let model = ScriptedClient::new()
        .with_tool_call("add", json!({"a": "two", "b": 3}))
        .with_tool_call("add", json!({"a": 2, "b": 3}))
        .with_text("done");
    let runner = runner(&model, Agent::builder().build().unwrap());
    let response = runner.turn("go", "s").await.unwrap();
    assert!(response.tool_calls[0].is_error);
    assert!(response.tool_calls[0].result.contains("invalid type"), "{}", response.tool_calls[0].result);
    assert_eq!(response.tool_calls[1].result, "5");
}

#[tokio::test]
async fn builtin_vfs_tools_work_in_the_sessions_own_workspace() {
    let model = ScriptedClient::new()
        .with_tool_call("kaos-vfs-write", json!({"path": "notes.txt", "content": "remember me"}))
        .with_text("saved")
        .with_tool_call("kaos-vfs-read", json!({"path": "notes.txt"}))
        .with_text("read")
        .with_tool_call("kaos-vfs-read", json!({"path": "notes.txt"}))
        .with_text("other");
    let rt = runtime();
    // Writing is destructive: without this rule the policy would pause the run to ask.
    let agent = Agent::builder().permit("kaos-vfs-write", kaos_agent::Decision::Allow).build().unwrap();
    let runner = Runner::builder(agent, rt.clone()).model(Arc::new(model)).build().unwrap();
    runner.turn("save a note", "alice").await.unwrap();
    let read = runner.turn("read it back", "alice").await.unwrap();
    assert_eq!(read.tool_calls[0].result, "remember me");
    // Another session cannot see alice's file.
    let other = runner.turn("read alice's note", "bob").await.unwrap();
    assert!(other.tool_calls[0].is_error);
    let on_vfs = rt.vfs().read(&"sessions/alice/files/notes.txt".parse().unwrap()).await.unwrap();
    assert_eq!(&on_vfs[..], b"remember me");
}

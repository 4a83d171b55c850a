#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use kaos_agent::Agent;
use kaos_providers::ScriptedClient;
use kaos_runner::hooks::{
    AuditTrail, CostTracker, Hook, HookContext, HookError, HookFailure, ToolCallInfo, ToolDecision,
};
use kaos_runner::{EventKind, RunError, Runner};
use kaos_runtime::Runtime;
use kaos_tools::{ToolAnnotations, ToolResult, tool_fn};
use serde_json::json;

#[derive(Debug)]
struct Rewrite;

#[async_trait]
impl Hook for Rewrite {
    fn name(&self) -> &str {
        "rewrite"
    }
    async fn before_tool_call(
        &self,
        _ctx: &HookContext,
        call: &ToolCallInfo,
    ) -> Result<ToolDecision, HookError> {
        let mut arguments = call.arguments.clone();
        arguments["text"] = json!("rewritten");
        Ok(ToolDecision::Rewrite { arguments })
    }
}

#[derive(Debug)]
struct Panicky;

#[async_trait]
impl Hook for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    async fn before_model_call(
        &self,
        _ctx: &HookContext,
        _request: &kaos_providers::ModelRequest,
    ) -> Result<(), HookError> {
        panic!("hook bug");
    }
}

fn build(hooks: impl FnOnce(kaos_runner::RunnerBuilder) -> kaos_runner::RunnerBuilder) -> (Runner, Runtime) {
    let echo = tool_fn("echo", "Echoes.", |input: serde_json::Value, _ctx| async move {
        Ok(ToolResult::text(input["text"].as_str().unwrap_or_default().to_owned()))
    })
    .annotations(ToolAnnotations::read_only())
    .build()
    .unwrap();
    let runtime = Runtime::builder().tool(echo).unwrap().build();
    let model = ScriptedClient::new()
        .with_tool_call("echo", json!({"text": "original", "api_key": "sk-live-123456789"}))
        .with_text("done");
    let builder = Runner::builder(Agent::builder().build().unwrap(), runtime.clone()).model(Arc::new(model));
    (hooks(builder).build().unwrap(), runtime)
}

#[tokio::test]
async fn hooks_rewrite_arguments_track_cost_and_audit_with_secrets_redacted() {
    let cost = CostTracker::new();
    let (runtime_vfs, audit) = {
        let rt = Runtime::test_mode();
        (rt.vfs().clone(), AuditTrail::new(rt.vfs().clone()))
    };
    let (runner, _) = build(|b| b.hook(Rewrite).hook(cost.clone()).hook(audit));
    let response = runner.turn("go", "s").await.unwrap();
    assert_eq!(response.tool_calls[0].result, "rewritten");
    assert_eq!(response.tool_calls[0].arguments["text"], "rewritten");
    let totals = cost.session("s").unwrap();
    assert_eq!((totals.model_calls, totals.tool_calls), (2, 1));
    let audit = runtime_vfs.read(&"audit/s.jsonl".parse().unwrap()).await.unwrap();
    let text = String::from_utf8(audit.to_vec()).unwrap();
    assert!(text.lines().count() >= 5, "{text}");
    assert!(!text.contains("sk-live-123456789"), "{text}");
}

#[tokio::test]
async fn a_failing_hook_is_reported_and_fails_open_or_closed_by_setting() {
    let (runner, _) = build(|b| b.hook(Panicky));
    let events: Vec<_> = runner.run("go", "s").map(Result::unwrap).collect().await;
    let failed = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::HookFailed { hook, closed: false, .. } if hook == "panicky"))
        .count();
    assert_eq!(failed, 2, "one per model call");
    assert!(matches!(events.last().unwrap().kind, EventKind::TurnSummary { .. }));

    let (runner, _) = build(|b| b.hook(Panicky).hook_failure(HookFailure::Closed));
    let err = runner.turn("go", "s").await.unwrap_err();
    assert!(matches!(&err, RunError::Hook { hook, .. } if hook == "panicky"), "{err:?}");
    assert!(runner.history("s").await.unwrap().is_empty(), "a failed turn persists nothing");
}

/// Keeps the response the `turn_end` hook is shown.
#[derive(Debug, Default, Clone)]
struct LastTurn(Arc<std::sync::Mutex<Option<kaos_runner::TurnResponse>>>);

#[async_trait]
impl Hook for LastTurn {
    fn name(&self) -> &str {
        "last-turn"
    }
    async fn on_turn_end(
        &self,
        _ctx: &HookContext,
        response: &kaos_runner::TurnResponse,
    ) -> Result<(), HookError> {
        *self.0.lock().unwrap() = Some(response.clone());
        Ok(())
    }
}

#[tokio::test]
async fn the_turn_end_hook_sees_the_response_the_caller_gets() {
    let seen = LastTurn::default();
    let (runner, _) = build(|b| b.hook(Rewrite).hook(seen.clone()));
    let response = runner.turn("go", "s").await.unwrap();
    assert_eq!(response.tool_calls.len(), 1);
    assert_eq!(seen.0.lock().unwrap().clone(), Some(response));
}

/// Records the name of every call the before-tool hooks are asked about.
#[derive(Debug, Default, Clone)]
struct SeenCalls(Arc<std::sync::Mutex<Vec<String>>>);

#[async_trait]
impl Hook for SeenCalls {
    fn name(&self) -> &str {
        "seen-calls"
    }
    async fn before_tool_call(
        &self,
        _ctx: &HookContext,
        call: &ToolCallInfo,
    ) -> Result<ToolDecision, HookError> {
        self.0.lock().unwrap().push(call.name.clone());
        Ok(ToolDecision::Continue)
    }
}

/// A model that calls `tool` when it is offered (or, for a name never offered, always once),
/// then answers with the result it got.
fn calls_then_answers(tool: &'static str) -> ScriptedClient {
    ScriptedClient::from_fn(move |request| match request.messages.last() {
        Some(kaos_providers::Message::Tool { content, .. }) => {
            kaos_providers::ScriptedReply::text(format!("got: {content}"))
        }
        _ => {
            kaos_providers::ScriptedReply::tool_call(tool, json!({"query": "zebra", "section": "documents"}))
        }
    })
}

/// The permission decisions of a run, by tool name.
fn decisions(events: &[kaos_runner::Event]) -> Vec<(String, kaos_agent::Decision)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PermissionDecided { tool_name, decision, .. } => Some((tool_name.clone(), *decision)),
            _ => None,
        })
        .collect()
}

/// A Runner whose memory holds more documents than it shows, so memory search is offered.
async fn with_hidden_documents(agent: Agent, model: ScriptedClient, seen: &SeenCalls) -> Runner {
    let runner = Runner::builder(agent, Runtime::test_mode())
        .model(Arc::new(model))
        .hook(seen.clone())
        .build()
        .unwrap();
    let docs = (0..50).map(|i| kaos_runner::NewItem::text(format!("doc{i}: quarterly report number {i}")));
    runner.remember("m", kaos_agent::SectionKind::Documents, docs).await.unwrap();
    runner
}

/// Issue 13, defect 3: memory search goes through the policy and the before-tool hooks.
#[tokio::test]
async fn memory_search_is_permission_checked_and_seen_by_hooks() {
    use kaos_agent::Decision;
    let seen = SeenCalls::default();
    let agent = Agent::builder().retrieval_top_k(3).build().unwrap();
    let runner = with_hidden_documents(agent, calls_then_answers("kaos-memory-search"), &seen).await;
    let events: Vec<_> = runner.run("What about report 7?", "m").map(Result::unwrap).collect().await;
    assert_eq!(decisions(&events), [("kaos-memory-search".to_owned(), Decision::Allow)]);
    assert_eq!(*seen.0.lock().unwrap(), ["kaos-memory-search"]);

    let seen = SeenCalls::default();
    let agent =
        Agent::builder().retrieval_top_k(3).permit("kaos-memory-search", Decision::Deny).build().unwrap();
    let runner = with_hidden_documents(agent, calls_then_answers("kaos-memory-search"), &seen).await;
    let events: Vec<_> = runner.run("What about report 7?", "m").map(Result::unwrap).collect().await;
    assert_eq!(decisions(&events), [("kaos-memory-search".to_owned(), Decision::Deny)]);
    assert!(seen.0.lock().unwrap().is_empty(), "a denied call reaches no hook");
    let response = kaos_runner::fold(futures::stream::iter(events.into_iter().map(Ok))).await.unwrap();
    assert_eq!(
        response.text,
        "got: Error: Denied by the permission policy (permission rule 0); do not retry this call."
    );
}

/// Issue 13, defect 3: a call to a tool nobody offers is decided by the policy and seen by the
/// hooks, and only then answered with an error result.
#[tokio::test]
async fn an_unknown_tool_is_permission_checked_before_its_error_result() {
    use kaos_agent::Decision;
    let seen = SeenCalls::default();
    let runner = Runner::builder(Agent::builder().build().unwrap(), Runtime::test_mode())
        .model(Arc::new(calls_then_answers("no-such-tool")))
        .hook(seen.clone())
        .build()
        .unwrap();
    let events: Vec<_> = runner.run("go", "u").map(Result::unwrap).collect().await;
    assert_eq!(decisions(&events), [("no-such-tool".to_owned(), Decision::Allow)]);
    assert_eq!(*seen.0.lock().unwrap(), ["no-such-tool"]);
    let response = kaos_runner::fold(futures::stream::iter(events.into_iter().map(Ok))).await.unwrap();
    assert!(
        response.text.starts_with("got: Error:") && response.text.contains("no-such-tool"),
        "{}",
        response.text
    );

    let seen = SeenCalls::default();
    let agent = Agent::builder().permit("no-such-*", Decision::Deny).build().unwrap();
    let runner = Runner::builder(agent, Runtime::test_mode())
        .model(Arc::new(calls_then_answers("no-such-tool")))
        .hook(seen.clone())
        .build()
        .unwrap();
    let response = runner.turn("go", "u").await.unwrap();
    assert_eq!(
        response.text,
        "got: Error: Denied by the permission policy (permission rule 0); do not retry this call."
    );
    assert!(seen.0.lock().unwrap().is_empty());
}

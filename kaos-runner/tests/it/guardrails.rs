#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kaos_agent::{Agent, Budget, Decision, PermissionRule};
use kaos_providers::{Message, ModelResponse, ScriptedClient, ScriptedReply, Usage};
use kaos_runner::{
    Approval, BreakerConfig, EventKind, RunError, RunOptions, RunStateError, Runner, StopReason,
};
use kaos_runtime::Runtime;
use kaos_tools::{ToolAnnotations, ToolError, ToolResult, tool_fn};
use serde_json::json;

/// A destructive `delete` tool that counts its runs, and a model that calls it once and then
/// answers with whatever the tool said.
fn setup(dir: &std::path::Path, runs: Arc<AtomicU32>) -> (Runner, ScriptedClient) {
    let delete = tool_fn("delete", "Deletes a file.", move |input: serde_json::Value, _ctx| {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(ToolResult::text(format!("deleted {}", input["path"].as_str().unwrap_or("?"))))
        }
    })
    .annotations(ToolAnnotations::destructive())
    .build()
    .unwrap();
    let runtime = Runtime::on_disk(dir).unwrap().to_builder().tool(delete).unwrap().build();
    let model = ScriptedClient::from_fn(|request| match request.messages.last() {
        Some(Message::Tool { content, .. }) => ScriptedReply::text(format!("Tool said: {content}")),
        _ => ScriptedReply::tool_call("delete", json!({"path": "old.txt"})),
    });
    let runner = Runner::builder(Agent::builder().build().unwrap(), runtime)
        .model(Arc::new(model.clone()))
        .build()
        .unwrap();
    (runner, model)
}

#[tokio::test]
async fn an_approved_call_resumes_in_a_new_runner_and_runs_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let run_id = {
        let (runner, _) = setup(dir.path(), runs.clone());
        let paused = runner.turn("clean up", "s").await.unwrap();
        assert_eq!(paused.stop_reason, StopReason::ApprovalRequired);
        let pending = paused.pending_approval.clone().unwrap();
        assert_eq!((pending.tool_name.as_str(), &pending.arguments), ("delete", &json!({"path": "old.txt"})));
        assert_eq!(runs.load(Ordering::SeqCst), 0, "nothing ran before approval");
        // Nothing of the paused turn is in the session yet.
        assert!(runner.history("s").await.unwrap().is_empty());
        paused.run_id.to_string()
    }; // the first Runner is gone

    let (runner, model) = setup(dir.path(), runs.clone());
    let state = runner.run_state(&run_id).await.unwrap();
    let state_json = serde_json::to_string(&state).unwrap();
    let state = serde_json::from_str(&state_json).unwrap();
    let done = runner.resume_turn(state, Approval::approve()).await.unwrap();
    assert_eq!(done.stop_reason, StopReason::Completed);
    assert_eq!(done.text, "Tool said: deleted old.txt");
    assert_eq!(&*done.run_id, run_id.as_str(), "the same run continues");
    assert_eq!(done.turn_number, 1);
    assert_eq!(done.tool_calls.len(), 1);
    assert_eq!(done.model_calls, 2, "the first model call was not redone");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(model.requests().len(), 1, "the resumed run made one model call");
    let history = runner.history("s").await.unwrap();
    assert_eq!(history.len(), 4);

    // The same state cannot be resumed twice.
    let again = runner.run_state(&run_id).await.unwrap();
    let err = runner.resume_turn(again, Approval::approve()).await.unwrap_err();
    assert!(matches!(err, RunError::RunState(RunStateError::AlreadyResumed { .. })), "{err:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_denied_call_never_runs_and_the_model_is_told_why() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let (runner, model) = setup(dir.path(), runs.clone());
    let paused = runner.turn("clean up", "s").await.unwrap();
    let state = runner.run_state(&paused.run_id).await.unwrap();
    let done = runner.resume_turn(state, Approval::deny("that file is still needed")).await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let last = model.requests().pop().unwrap();
    let denial = last.messages.last().unwrap();
    assert!(matches!(denial, Message::Tool { is_error: true, .. }));
    assert_eq!(denial.content(), "Denied by a person: that file is still needed");
    assert_eq!(done.text, "Tool said: Denied by a person: that file is still needed");
    assert!(done.tool_calls[0].is_error);
}

#[tokio::test]
async fn stale_tampered_and_foreign_states_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let (runner, _) = setup(dir.path(), runs.clone());
    let paused = runner.turn("clean up", "s").await.unwrap();
    let state = runner.run_state(&paused.run_id).await.unwrap();

    let mut tampered = state.clone();
    tampered.pending.arguments = json!({"path": "/etc/passwd"});
    let err = runner.resume_turn(tampered, Approval::approve()).await.unwrap_err();
    assert!(matches!(err, RunError::RunState(RunStateError::Tampered { .. })), "{err:?}");

    let mut future = state.clone();
    future.v = 99;
    let err = runner.resume_turn(future, Approval::approve()).await.unwrap_err();
    assert!(matches!(err, RunError::RunState(RunStateError::UnknownVersion { found: 99 })), "{err:?}");

    let other_agent = Agent::builder().name("other").build().unwrap();
    let other = Runner::builder(other_agent, runner.runtime().clone()).build().unwrap();
    let err = other.resume_turn(state.clone(), Approval::approve()).await.unwrap_err();
    assert!(matches!(err, RunError::RunState(RunStateError::AgentMismatch { .. })), "{err:?}");

    // Another turn on the session makes the paused one stale.
    let allowing = RunOptions::default().with_permission(PermissionRule::allow("delete"));
    runner.turn_with("never mind, just do it", "s", allowing).await.unwrap();
    let err = runner.resume_turn(state, Approval::approve()).await.unwrap_err();
    assert!(matches!(err, RunError::RunState(RunStateError::Stale { .. })), "{err:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "only the allowed turn ran the tool");
}

#[tokio::test]
async fn remembered_approval_covers_the_rest_of_the_run_and_deny_rules_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let (runner, _) = setup(dir.path(), runs.clone());
    // Three deletes in one response.
    let model = ScriptedClient::new()
        .with_reply(ScriptedReply::tool_calls([
            ("delete", json!({"path": "a"})),
            ("delete", json!({"path": "b"})),
            ("delete", json!({"path": "c"})),
        ]))
        .with_text("done");
    let runner = Runner::builder(runner.agent().clone(), runner.runtime().clone())
        .model(Arc::new(model))
        .build()
        .unwrap();
    let paused = runner.turn("delete all", "s").await.unwrap();
    let state = runner.run_state(&paused.run_id).await.unwrap();
    let done = runner.resume_turn(state, Approval::approve_and_remember()).await.unwrap();
    assert_eq!(done.stop_reason, StopReason::Completed);
    assert_eq!(runs.load(Ordering::SeqCst), 3, "one approval covered all three calls");

    let deny = Agent::builder().permit("del*", Decision::Deny).build().unwrap();
    let model = ScriptedClient::new().with_tool_call("delete", json!({"path": "x"})).with_text("ok");
    let runner = Runner::builder(deny, runner.runtime().clone()).model(Arc::new(model)).build().unwrap();
    let r = runner.turn("delete x", "t").await.unwrap();
    assert!(r.tool_calls[0].is_error && r.tool_calls[0].result.contains("permission rule 0"));
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_failing_tool_is_withdrawn_after_five_failures_and_probed_after_the_cooldown() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let flaky = tool_fn("flaky", "Fails.", move |_: serde_json::Value, _ctx| {
        let calls = counted.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<ToolResult, _>(ToolError::failed("backend down"))
        }
    })
    .annotations(ToolAnnotations::read_only())
    .build()
    .unwrap();
    let runtime = Runtime::builder().tool(flaky).unwrap().build();
    // Call `flaky` whenever it is offered; otherwise answer.
    let model = ScriptedClient::from_fn(|request| {
        if request.tools.iter().any(|t| t.name == "flaky")
            && !matches!(request.messages.last(), Some(Message::Tool { .. }))
        {
            ScriptedReply::tool_call("flaky", json!({}))
        } else {
            ScriptedReply::text("ok")
        }
    });
    let runner = Runner::builder(Agent::builder().build().unwrap(), runtime)
        .model(Arc::new(model.clone()))
        .breakers(BreakerConfig::new(5, Duration::from_secs(30)))
        .build()
        .unwrap();
    let mut tripped = 0;
    for i in 0..5 {
        let events: Vec<_> = runner.run(format!("try {i}"), "s").map(Result::unwrap).collect().await;
        tripped +=
            events.iter().filter(|e| matches!(e.kind, EventKind::CircuitBreakerTripped { .. })).count();
    }
    assert_eq!((calls.load(Ordering::SeqCst), tripped), (5, 1));
    runner.turn("and now?", "s").await.unwrap();
    let request = model.requests().pop().unwrap();
    assert!(request.tools.iter().all(|t| t.name != "flaky"), "withdrawn from the tools offered");
    assert!(request.system.contains("Unavailable tools") && request.system.contains("flaky"));
    assert_eq!(calls.load(Ordering::SeqCst), 5);

    tokio::time::advance(Duration::from_secs(31)).await;
    runner.turn("after the cool-down", "s").await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 6, "one probe");
    runner.turn("again", "s").await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 6, "the failed probe opened it again");
}

#[tokio::test]
async fn budgets_stop_the_turn_before_they_are_exceeded() {
    // Every reply costs $0.01 and calls a tool, forever.
    let model = ScriptedClient::from_fn(|request| {
        let mut response = ModelResponse::text(request.model.clone(), "");
        response.tool_calls =
            vec![kaos_providers::ToolCall::new(format!("c{}", request.messages.len()), "noop", json!({}))];
        response.usage = Usage::new(10, 10);
        response.cost_usd = Some(0.01);
        ScriptedReply::Response(response)
    });
    let noop =
        tool_fn("noop", "Does nothing.", |_: serde_json::Value, _ctx| async { Ok(ToolResult::text("ok")) })
            .annotations(ToolAnnotations::read_only())
            .build()
            .unwrap();
    let runtime = Runtime::builder().tool(noop).unwrap().build();
    let agent = Agent::builder().budget(Budget::unlimited().with_max_model_calls(3)).build().unwrap();
    let runner = Runner::builder(agent, runtime.clone()).model(Arc::new(model.clone())).build().unwrap();
    let events: Vec<_> = runner.run("go", "s").map(Result::unwrap).collect().await;
    let exceeded = events.iter().find_map(|e| match &e.kind {
        EventKind::BudgetExceeded { kind, limit, .. } => Some((kind.clone(), *limit)),
        _ => None,
    });
    assert_eq!(exceeded, Some(("model_calls".to_owned(), 3.0)));
    let response = kaos_runner::fold(futures::stream::iter(events.into_iter().map(Ok))).await.unwrap();
    assert_eq!((response.stop_reason, response.model_calls), (StopReason::BudgetExceeded, 3));

    let agent = Agent::builder().budget(Budget::unlimited().with_max_tool_calls(2)).build().unwrap();
    let runner = Runner::builder(agent, runtime).model(Arc::new(model)).build().unwrap();
    let response = runner.turn("go", "t").await.unwrap();
    assert_eq!((response.stop_reason, response.tool_calls.len()), (StopReason::BudgetExceeded, 2));
    // The history stays well-formed: the refused call got a result.
    let history = runner.history("t").await.unwrap();
    assert!(history.last().unwrap().content().contains("budget"));
}

/// A model with a real price that honours `max_output_tokens`, as vendors do: it always wants
/// 400 output tokens, and each call's prompt is about 50 tokens.
#[derive(Debug)]
struct Priced {
    price: kaos_providers::ModelPrice,
}

#[async_trait::async_trait]
impl kaos_providers::ModelClient for Priced {
    fn capabilities(&self) -> kaos_providers::Capabilities {
        kaos_providers::Capabilities::default()
    }

    fn price(&self, _model: &str) -> Option<kaos_providers::ModelPrice> {
        Some(self.price)
    }

    async fn complete(
        &self,
        request: &kaos_providers::ModelRequest,
    ) -> Result<ModelResponse, kaos_providers::ProviderError> {
        let out = request.sampling.max_output_tokens.map_or(400, |max| u64::from(max).min(400));
        let mut response = ModelResponse::text(request.model.clone(), "x".repeat(out as usize));
        response.usage = Usage::new(request.estimated_input_tokens(), out);
        response.cost_usd = Some(self.price.cost(&response.usage));
        Ok(response)
    }
}

#[tokio::test]
async fn a_session_budget_holds_across_turns() {
    // $10 per million output tokens: a full answer costs about $0.004.
    let model = Priced { price: kaos_providers::ModelPrice::new(1.0, 10.0, None) };
    let cap = 0.01;
    let agent = Agent::builder().budget(Budget::unlimited().with_session_max_cost_usd(cap)).build().unwrap();
    let runner = Runner::builder(agent, Runtime::test_mode()).model(Arc::new(model)).build().unwrap();
    let mut spent = 0.0;
    let mut stops = 0;
    for i in 0..6 {
        let response = runner.turn(format!("question {i}"), "s").await.unwrap();
        spent += response.cost_usd;
        if response.stop_reason == StopReason::BudgetExceeded {
            stops += 1;
        }
        assert!(spent <= cap, "spent {spent} of {cap} after turn {i}");
    }
    assert!(stops >= 1, "the session ran out");
    let memory = runner.memory("s").await.unwrap();
    assert!((memory.spent().0 - spent).abs() < 1e-12);
}

/// A state stored by the format before a run's context was part of it (version 1) is a typed
/// error naming the version, not a "tampered" state.
#[tokio::test]
async fn a_run_state_of_the_previous_format_is_an_unknown_version() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, _) = setup(dir.path(), Arc::new(AtomicU32::new(0)));
    let paused = runner.turn("clean up", "s").await.unwrap();
    let state = runner.run_state(&paused.run_id).await.unwrap();
    assert_eq!(state.v, kaos_runner::RUN_STATE_VERSION);
    assert_eq!(kaos_runner::RUN_STATE_VERSION, 2);
    // The same state as version 1 wrote it: no context.
    let mut old = serde_json::to_value(&state).unwrap();
    old["v"] = json!(1);
    old.as_object_mut().unwrap().remove("context");
    let path = dir.path().join("runs").join(paused.run_id.as_ref()).join("state.json");
    std::fs::write(&path, serde_json::to_vec(&old).unwrap()).unwrap();
    let err = runner.run_state(&paused.run_id).await.unwrap_err();
    assert!(matches!(err, RunError::RunState(RunStateError::UnknownVersion { found: 1 })), "{err:?}");
    assert_eq!(err.kind(), "run_state");
    assert_eq!(err.report(), "cannot resume: run state version 1 is not supported (this build reads 2)");
}

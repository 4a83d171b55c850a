#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kaos_agent::Agent;
use kaos_providers::{ScriptedClient, ScriptedReply};
use kaos_runner::{Event, EventKind, Runner, SpanPhase, SpanSubject, TurnRecord, fold};
use kaos_runtime::Runtime;
use kaos_tools::{ToolResult, tool_fn};
use proptest::prelude::*;
use serde_json::json;

use crate::support::events;

fn runtime() -> Runtime {
    let echo = tool_fn("echo", "Echoes its input.", |input: serde_json::Value, _ctx| async move {
        Ok(ToolResult::text(input.to_string()))
    })
    .build()
    .unwrap();
    Runtime::builder().tool(echo).unwrap().build()
}

#[tokio::test]
async fn events_are_sequenced_stamped_and_well_nested() {
    let model = ScriptedClient::new().with_tool_call("echo", json!({"x": 1})).with_text("all done here");
    let runner =
        Runner::builder(Agent::builder().build().unwrap(), runtime()).model(Arc::new(model)).build().unwrap();
    let events = events(&runner, "hi", "s1").await;

    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
        assert_eq!(&*e.session_id, "s1");
        assert_eq!(e.run_id, events[0].run_id);
        assert_eq!(&*e.agent_fingerprint, runner.agent().fingerprint().as_str());
    }
    let spans: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Span(s) => Some((s.subject, s.phase)),
            _ => None,
        })
        .collect();
    use SpanPhase::*;
    use SpanSubject::*;
    assert_eq!(
        spans,
        [
            (Turn, Start),
            (LlmCall, Start),
            (LlmCall, Complete),
            (ToolCall, Start),
            (ToolCall, Complete),
            (LlmCall, Start),
            (LlmCall, Complete),
            (Turn, Complete)
        ]
    );
    assert!(matches!(events.last().unwrap().kind, EventKind::TurnSummary { turn_number: 1, .. }));
    let text: String = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "all done here");
}

#[tokio::test]
async fn events_round_trip_through_json_and_render_as_sse() {
    let model = ScriptedClient::new().with_tool_call("echo", json!({"x": 1})).with_text("ok");
    let runner =
        Runner::builder(Agent::builder().build().unwrap(), runtime()).model(Arc::new(model)).build().unwrap();
    for event in events(&runner, "hi", "s1").await {
        let text = serde_json::to_string(&event).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["type"], event.kind.type_name());
        let back: Event = serde_json::from_str(&text).unwrap();
        assert_eq!(back, event);
        let sse = event.to_sse().unwrap();
        assert!(sse.starts_with(&format!("event: {}\nid: {}\ndata: {{", event.kind.type_name(), event.seq)));
        assert!(sse.ends_with("}\n\n"));
    }
}

fn reply() -> impl Strategy<Value = ScriptedReply> {
    prop_oneof![
        "[a-z ]{0,30}".prop_map(ScriptedReply::text),
        prop::collection::vec(0u8..5, 1..4).prop_map(|xs| {
            ScriptedReply::tool_calls(
                xs.into_iter().map(|x| (if x == 4 { "missing" } else { "echo" }, json!({ "x": x }))),
            )
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Three views of one turn agree: the folded events, the persisted record, and what the
    /// model was actually sent and answered.
    #[test]
    fn the_event_fold_matches_the_persisted_turn_and_the_model(script in prop::collection::vec(reply(), 1..6), limit in 1u32..6) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let model = ScriptedClient::new();
            for r in &script {
                model.push(r.clone());
            }
            model.push(ScriptedReply::text("final"));
            let runtime = runtime();
            let agent = Agent::builder().max_iterations(limit).build().unwrap();
            let runner = Runner::builder(agent, runtime.clone()).model(Arc::new(model.clone())).build().unwrap();
            let response = fold(runner.run("go", "p")).await.unwrap();

            let log = runtime.vfs().read(&"sessions/p/turns.jsonl".parse().unwrap()).await.unwrap();
            let record: TurnRecord = serde_json::from_slice(log.strip_suffix(b"\n").unwrap()).unwrap();
            prop_assert_eq!(&record.tool_calls, &response.tool_calls);
            prop_assert_eq!(record.usage, response.usage);
            prop_assert_eq!(record.stop_reason, response.stop_reason);
            prop_assert_eq!(&*record.run_id, &*response.run_id);
            let last_assistant = record.messages.iter().rev().find(|m| matches!(m, kaos_providers::Message::Assistant { .. })).unwrap();
            prop_assert_eq!(last_assistant.content(), response.text.as_str());

            let requests = model.requests();
            prop_assert_eq!(requests.len() as u32, response.model_calls);
            prop_assert!(response.model_calls <= limit);
            let calls_made: usize = requests.iter().skip(1).map(|r| r.messages.iter().rev().take_while(|m| matches!(m, kaos_providers::Message::Tool { .. })).count()).sum();
            prop_assert_eq!(calls_made, response.tool_calls.len());
            Ok(())
        })?;
    }
}

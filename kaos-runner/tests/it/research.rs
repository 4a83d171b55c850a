#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use futures::StreamExt;
use kaos_agent::{Agent, Pattern, SectionKind};
use kaos_providers::{ScriptedClient, ScriptedReply};
use kaos_runner::{Event, EventKind, NewItem, Runner, StopReason, TurnFold, TurnResponse};
use kaos_runtime::Runtime;
use serde_json::{Value, json};

const BRIDGE: &str = "The Harbour Bridge opened in 1932\nafter six years of construction.";
const TOLLS: &str = "Tolls on the old ferry were abolished in 1990.";

/// A research runner over two documents whose model always replies `reply`.
async fn runner(reply: Value) -> (Runner, ScriptedClient) {
    let model = ScriptedClient::from_fn(move |_| ScriptedReply::text(reply.to_string()));
    let agent = Agent::builder().name("researcher").pattern(Pattern::Research).build().unwrap();
    let runner = Runner::builder(agent, Runtime::test_mode()).model(Arc::new(model.clone())).build().unwrap();
    let docs = [("bridge.md", BRIDGE), ("ferry.md", TOLLS)]
        .map(|(name, text)| NewItem::text(text).with_metadata("name", json!(name)));
    runner.remember("r", SectionKind::Documents, docs).await.unwrap();
    (runner, model)
}

async fn ask(runner: &Runner, question: &str) -> (Vec<EventKind>, TurnResponse) {
    let events: Vec<Event> = runner.run(question, "r").map(Result::unwrap).collect().await;
    let mut fold = TurnFold::default();
    events.iter().for_each(|e| fold.push(e));
    (events.into_iter().map(|e| e.kind).collect(), fold.finish().unwrap())
}

fn citations(events: &[EventKind]) -> Vec<EventKind> {
    events.iter().filter(|e| matches!(e, EventKind::CitationFound { .. })).cloned().collect()
}

fn insufficient(events: &[EventKind]) -> Vec<EventKind> {
    events.iter().filter(|e| matches!(e, EventKind::EvidenceInsufficient { .. })).cloned().collect()
}

fn one_claim(quote: &str, source: &str) -> Value {
    json!({"answer": "It opened in 1932.", "claims": [{"claim": "The bridge opened in 1932.", "quote": quote, "source": source}]})
}

#[tokio::test]
async fn a_correct_quote_from_the_right_document_is_accepted_and_kept_as_a_finding() {
    let (runner, model) = runner(one_claim("opened in 1932 after six years", "bridge.md")).await;
    let (events, response) = ask(&runner, "When did the bridge open?").await;
    assert_eq!(
        citations(&events),
        [EventKind::CitationFound {
            claim: "The bridge opened in 1932.".into(),
            source: "bridge.md".into(),
            quote: "opened in 1932 after six years".into(),
            verified: true,
            location: Some("bridge.md".into()),
        }]
    );
    assert_eq!(insufficient(&events), []);
    assert_eq!(response.stop_reason, StopReason::Completed);
    assert_eq!(
        response.text,
        "It opened in 1932.\n\nSources:\n- \"opened in 1932 after six years\" (bridge.md)"
    );
    // The model was asked for structured claims.
    let request = &model.requests()[0];
    assert!(request.system.contains("\"claims\""), "{}", request.system);
    assert_eq!(request.output_schema.as_ref().unwrap()["required"], json!(["answer", "claims"]));
    // The finding is in memory and the history holds the answer, not the raw JSON.
    let memory = runner.memory("r").await.unwrap();
    let findings: Vec<String> =
        memory.section(SectionKind::Findings).items().iter().map(|i| i.text().into_owned()).collect();
    assert_eq!(findings, ["The bridge opened in 1932. — \"opened in 1932 after six years\" (bridge.md)"]);
    let history = runner.history("r").await.unwrap();
    assert_eq!(history.last().unwrap().content(), response.text);
}

#[tokio::test]
async fn a_fabricated_quote_is_rejected_with_a_typed_refusal() {
    let (runner, _) = runner(one_claim("the bridge opened in 1932 to great fanfare", "bridge.md")).await;
    let (events, response) = ask(&runner, "When did the bridge open?").await;
    assert_eq!(
        citations(&events),
        [EventKind::CitationFound {
            claim: "The bridge opened in 1932.".into(),
            source: "bridge.md".into(),
            quote: "the bridge opened in 1932 to great fanfare".into(),
            verified: false,
            location: None,
        }]
    );
    let reason = "0 of 1 claim(s) were supported by a verbatim quote from the cited document; 1 required";
    assert_eq!(
        insufficient(&events),
        [EventKind::EvidenceInsufficient { reason: reason.into(), verified: 0, required: 1 }]
    );
    assert_eq!(response.stop_reason, StopReason::EvidenceInsufficient);
    assert_eq!(response.text, format!("I cannot answer this from the documents: {reason}."));
    assert!(runner.memory("r").await.unwrap().section(SectionKind::Findings).items().is_empty());
}

#[tokio::test]
async fn a_correct_quote_attributed_to_the_wrong_document_is_rejected() {
    let (runner, _) = runner(one_claim("opened in 1932", "ferry.md")).await;
    let (events, response) = ask(&runner, "When did the bridge open?").await;
    assert_eq!(
        citations(&events),
        [EventKind::CitationFound {
            claim: "The bridge opened in 1932.".into(),
            source: "ferry.md".into(),
            quote: "opened in 1932".into(),
            verified: false,
            location: None,
        }]
    );
    assert_eq!(response.stop_reason, StopReason::EvidenceInsufficient);
}

#[tokio::test]
async fn a_question_the_documents_cannot_answer_is_refused() {
    let (runner, _) = runner(json!({"answer": "The documents do not say.", "claims": []})).await;
    let (events, response) = ask(&runner, "Who painted the bridge?").await;
    assert_eq!(citations(&events), []);
    let reason = "0 of 0 claim(s) were supported by a verbatim quote from the cited document; 1 required";
    assert_eq!(
        insufficient(&events),
        [EventKind::EvidenceInsufficient { reason: reason.into(), verified: 0, required: 1 }]
    );
    assert_eq!(response.stop_reason, StopReason::EvidenceInsufficient);
    assert_eq!(response.text, format!("I cannot answer this from the documents: {reason}."));
}

#[tokio::test]
async fn malformed_json_is_a_refusal_not_a_crash() {
    let model = ScriptedClient::new().with_text("It opened in 1932, trust me.");
    let agent = Agent::builder().pattern(Pattern::Research).build().unwrap();
    let runner = Runner::builder(agent, Runtime::test_mode()).model(Arc::new(model)).build().unwrap();
    let response = runner.turn("When did the bridge open?", "m").await.unwrap();
    assert_eq!(response.stop_reason, StopReason::EvidenceInsufficient);
    assert!(
        response
            .text
            .starts_with("I cannot answer this from the documents: the answer was not the required JSON")
    );
}

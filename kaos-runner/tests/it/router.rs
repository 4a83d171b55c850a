#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use futures::StreamExt;
use kaos_agent::{Agent, Classifier, ModelRole, Pattern, Route, RouterConfig, SectionKind};
use kaos_providers::{ModelRequest, ModelResponse, ScriptedClient, ScriptedReply, Usage};
use kaos_runner::{Event, EventKind, NewItem, Runner, SpanPhase, SpanSubject, StopReason, TurnFold};
use kaos_runtime::Runtime;
use serde_json::{Value, json};

fn is_classification(request: &ModelRequest) -> bool {
    request.output_schema.as_ref().is_some_and(|s| s["properties"].get("route").is_some())
}

fn is_research(request: &ModelRequest) -> bool {
    request.output_schema.as_ref().is_some_and(|s| s["properties"].get("claims").is_some())
}

/// Classifies with `route` (a JSON reply) and answers research questions from `bridge.md`.
fn model(route: &'static str) -> ScriptedClient {
    ScriptedClient::from_fn(move |request| {
        let mut response = if is_classification(request) {
            ModelResponse::text("scripted:cheap", route)
        } else if is_research(request) {
            let answer = json!({
                "answer": "It opened in 1932.",
                "claims": [{"claim": "Opened 1932.", "quote": "opened in 1932", "source": "bridge.md"}]
            });
            ModelResponse::text("scripted:main", answer.to_string())
        } else {
            ModelResponse::text("scripted:main", "chatting")
        };
        response.usage = Usage::new(10, 5);
        response.cost_usd = Some(if is_classification(request) { 0.0001 } else { 0.01 });
        ScriptedReply::Response(response)
    })
}

async fn runner(agent: Agent, model: &ScriptedClient) -> Runner {
    let runner = Runner::builder(agent, Runtime::test_mode()).model(Arc::new(model.clone())).build().unwrap();
    let doc = NewItem::text("The bridge opened in 1932.").with_metadata("name", json!("bridge.md"));
    runner.remember("s", SectionKind::Documents, [doc]).await.unwrap();
    runner
}

async fn run(runner: &Runner, message: &str) -> (Vec<Event>, kaos_runner::TurnResponse) {
    let events: Vec<Event> = runner.run(message, "s").map(Result::unwrap).collect().await;
    let mut fold = TurnFold::default();
    events.iter().for_each(|e| fold.push(e));
    (events.clone(), fold.finish().unwrap())
}

fn intents(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::IntentClassified { .. }))
        .map(|e| {
            let mut value = serde_json::to_value(&e.kind).unwrap();
            value.as_object_mut().unwrap().remove("type");
            value
        })
        .collect()
}

#[tokio::test]
async fn the_rules_classifier_routes_without_a_model_call() {
    let router = RouterConfig::default()
        .with_classifier(Classifier::Rules)
        .with_route(Route::new(Pattern::Research, "documents").with_keywords(["according to"]));
    let agent = Agent::builder().pattern(Pattern::Router).router(router).build().unwrap();
    let model = model("unused");
    let runner = runner(agent, &model).await;

    let (events, chat) = run(&runner, "hello there").await;
    assert_eq!(
        intents(&events),
        [json!({"pattern": "chat", "classifier": "rules", "reason": "no keyword matched"})]
    );
    assert_eq!((chat.text.as_str(), chat.model_calls), ("chatting", 1));
    assert_eq!(model.requests_len(), 1);

    let (events, research) = run(&runner, "According to the docs, when did it open?").await;
    assert_eq!(
        intents(&events),
        [json!({"pattern": "research", "classifier": "rules", "reason": "keyword \"according to\""})]
    );
    assert_eq!(research.text, "It opened in 1932.\n\nSources:\n- \"opened in 1932\" (bridge.md)");
    assert_eq!((research.stop_reason, research.model_calls), (StopReason::Completed, 1));
    assert!(events.iter().any(|e| matches!(e.kind, EventKind::CitationFound { verified: true, .. })));
}

#[tokio::test]
async fn the_model_classifier_makes_one_cheap_internal_call_then_runs_the_chosen_pattern() {
    let agent = Agent::builder()
        .pattern(Pattern::Router)
        .role_model(ModelRole::Classify, "scripted:cheap")
        .build()
        .unwrap();
    let model = model(r#"{"route": "research", "confidence": 0.8, "reason": "asks about the documents"}"#);
    let runner = runner(agent, &model).await;
    let (events, response) = run(&runner, "When did the bridge open?").await;
    assert_eq!(
        intents(&events),
        [
            json!({"pattern": "research", "classifier": "model", "confidence": 0.8, "reason": "asks about the documents"})
        ]
    );
    // The classification's JSON is not the answer: the fold keeps the research answer.
    assert_eq!(response.text, "It opened in 1932.\n\nSources:\n- \"opened in 1932\" (bridge.md)");
    assert_eq!(response.model_calls, 2);
    assert!((response.cost_usd - 0.0101).abs() < 1e-9, "{}", response.cost_usd);
    let requests = model.requests();
    assert_eq!(requests[0].model, "scripted:cheap");
    assert!(requests[0].tools.is_empty());
    assert_eq!(requests[1].model, "scripted:echo");
    // A route span wraps the decision, and the classification call is marked internal with
    // no text of its own in the stream.
    let route: Vec<SpanPhase> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Span(s) if s.subject == SpanSubject::Route => Some(s.phase),
            _ => None,
        })
        .collect();
    assert_eq!(route, [SpanPhase::Start, SpanPhase::Complete]);
    let internal = events.iter().find_map(|e| match &e.kind {
        EventKind::Span(s) if s.subject == SpanSubject::LlmCall && s.phase == SpanPhase::Start => {
            Some(s.attributes.get("internal").cloned())
        }
        _ => None,
    });
    assert_eq!(internal, Some(Some(json!(true))));
    let streamed: String = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert!(!streamed.contains("confidence"), "{streamed}");
}

#[tokio::test]
async fn an_unusable_classification_goes_to_the_default_pattern_and_says_why() {
    let router = RouterConfig::default().with_default_pattern(Pattern::Chat);
    let agent = Agent::builder().pattern(Pattern::Router).router(router).build().unwrap();
    let model = model("research, I think");
    let runner = runner(agent, &model).await;
    let (events, response) = run(&runner, "When did the bridge open?").await;
    let EventKind::IntentClassified { pattern, reason, confidence, .. } =
        &events.iter().find(|e| matches!(e.kind, EventKind::IntentClassified { .. })).unwrap().kind
    else {
        unreachable!()
    };
    assert_eq!((*pattern, *confidence), (Pattern::Chat, None));
    assert!(reason.contains("not the required JSON"), "{reason}");
    assert_eq!(response.text, "chatting");
}

#[tokio::test]
async fn a_router_cannot_route_to_itself() {
    let router = RouterConfig::default().with_route(Route::new(Pattern::Router, "loops"));
    let error = Agent::builder().pattern(Pattern::Router).router(router).build().unwrap_err();
    assert_eq!(error.to_string(), "router.routes[0].pattern a router cannot route to the router pattern");
}

#[tokio::test]
async fn a_role_model_of_another_provider_is_resolved_with_its_own_client() {
    // The main model is offline; the classifier is a vendor's, so building resolves it (and,
    // without its key, says which setting is missing instead of failing at the first call).
    let agent = Agent::builder()
        .pattern(Pattern::Router)
        .role_model(ModelRole::Classify, "openai:gpt-4.1-nano")
        .build()
        .unwrap();
    let compiled = cfg!(feature = "openai");
    match (compiled, Runner::builder(agent, Runtime::test_mode()).build()) {
        (
            true,
            Err(kaos_runner::RunError::Provider(kaos_providers::ProviderError::MissingSetting {
                variable,
                ..
            })),
        ) => {
            assert_eq!(variable, "providers.openai_api_key (OPENAI_API_KEY)");
        }
        (
            false,
            Err(kaos_runner::RunError::Provider(kaos_providers::ProviderError::NotCompiled {
                feature, ..
            })),
        ) => {
            assert_eq!(feature, "openai");
        }
        (true, Ok(_)) => assert!(std::env::var("OPENAI_API_KEY").is_ok_and(|k| !k.trim().is_empty())),
        (_, other) => panic!("{other:?}"),
    }
}

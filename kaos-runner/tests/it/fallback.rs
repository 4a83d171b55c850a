#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kaos_agent::Agent;
use kaos_providers::{ModelResponse, ProviderError, ScriptedClient, ScriptedReply};
use kaos_runner::{BreakerConfig, Event, EventKind, RunError, Runner, SpanPhase, SpanSubject, StopReason};
use kaos_runtime::Runtime;

use crate::support;

/// The primary model is overloaded; the backup answers; `broken` fails with a bad key.
fn model() -> ScriptedClient {
    ScriptedClient::from_fn(|request| match request.model.as_str() {
        "scripted:primary" => ScriptedReply::Error(ProviderError::Overloaded { message: "busy".into() }),
        "scripted:broken" => ScriptedReply::Error(ProviderError::Auth { message: "bad key".into() }),
        other => {
            let mut response = ModelResponse::text(other, format!("answered by {other}"));
            response.cost_usd = Some(0.01);
            ScriptedReply::Response(response)
        }
    })
}

fn runner(agent: Agent, model: &ScriptedClient) -> Runner {
    Runner::builder(agent, Runtime::test_mode())
        .model(Arc::new(model.clone()))
        .breakers(BreakerConfig::new(2, Duration::from_secs(60)))
        .build()
        .unwrap()
}

fn llm_spans(events: &[Event]) -> Vec<(SpanPhase, Option<String>, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Span(s) if s.subject == SpanSubject::LlmCall => {
                let attr = |k: &str| s.attributes.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                Some((s.phase, attr("model"), attr("fallback_for")))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_unavailable_model_falls_back_and_an_open_breaker_skips_it() {
    let model = model();
    let agent = Agent::builder().model("scripted:primary").fallback_model("scripted:backup").build().unwrap();
    let runner = runner(agent, &model);

    let events: Vec<Event> = runner.run("hi", "s").map(Result::unwrap).collect().await;
    let starts: Vec<_> = llm_spans(&events).into_iter().filter(|(p, ..)| *p == SpanPhase::Start).collect();
    assert_eq!(
        starts,
        [
            (SpanPhase::Start, Some("scripted:primary".into()), None),
            (SpanPhase::Start, Some("scripted:backup".into()), Some("scripted:primary".into())),
        ]
    );
    let mut fold = kaos_runner::TurnFold::default();
    events.iter().for_each(|e| fold.push(e));
    let response = fold.finish().unwrap();
    assert_eq!(
        (response.text.as_str(), response.stop_reason),
        ("answered by scripted:backup", StopReason::Completed)
    );
    // The failed attempt is not a model call made, and costs nothing.
    assert_eq!(response.model_calls, 1);
    assert!((response.cost_usd - 0.01).abs() < 1e-9);
    assert_eq!(model.requests_len(), 2);

    // The second failure opens the primary's breaker (2 failures)…
    runner.turn("again", "s").await.unwrap();
    assert!(support::events(&runner, "third", "s").await.iter().any(|e| matches!(
        &e.kind,
        EventKind::Span(s) if s.subject == SpanSubject::LlmCall && s.attributes.get("fallback_for").is_some()
    )));
    // …so later turns go straight to the backup, without asking the primary.
    assert_eq!(model.requests_len(), 5);
    assert_eq!(model.requests().last().unwrap().model, "scripted:backup");
}

#[tokio::test]
async fn without_a_fallback_left_the_turn_fails_or_stops_with_a_typed_reason() {
    let model = model();
    // Every model unavailable: the last failure is the error.
    let agent = Agent::builder().model("scripted:primary").build().unwrap();
    let alone = runner(agent, &model);
    match alone.turn("hi", "s").await {
        Err(RunError::Provider(ProviderError::Overloaded { .. })) => {}
        other => panic!("{other:?}"),
    }
    alone.turn("hi", "s").await.unwrap_err();
    // Its breaker is open now: the turn stops before calling it.
    let before = model.requests_len();
    let stopped = alone.turn("hi", "s").await.unwrap();
    assert_eq!(stopped.stop_reason, StopReason::ModelUnavailable);
    assert_eq!(model.requests_len(), before);

    // A bad key is not routed around: the fallback is not tried.
    let agent = Agent::builder().model("scripted:broken").fallback_model("scripted:backup").build().unwrap();
    let careful = runner(agent, &model);
    let before = model.requests_len();
    match careful.turn("hi", "t").await {
        Err(RunError::Provider(ProviderError::Auth { .. })) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(model.requests_len() - before, 1);
}

//! The one guarded model call every pattern makes: the model's circuit breaker → the budget
//! (the call's worst case must fit; its output is capped to fit) → the model-call hooks → the
//! stream (an `llm_call` span, text deltas, `usage_observed`) under the wall-clock cap, then
//! the agent's `fallback_models` in order while the model is unavailable.

use futures::StreamExt;
use kaos_providers::{ModelRequest, ModelResponse, ProviderError, StreamEvent};
use serde_json::json;
use tracing::Instrument;

use super::{Cx, Ending};
use crate::emit::{LlmEnd, LlmStart, as_i64, attrs};
use crate::error::RunError;
use crate::events::{EventKind, SpanPhase, SpanSubject};
use crate::guard::Availability;
use kaos_session::StopReason;

/// What a model call is for: its text is the turn's answer (streamed as `text_delta`s), or it
/// is the pattern's own work — a classification, a plan, an extraction — whose text is not
/// streamed (its `llm_call` span is marked `internal`, and the fold ignores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Answer,
    Internal,
}

/// How a guarded model call went.
pub(crate) enum Called {
    /// The model answered (its usage is recorded in the turn's budget; add it to the progress
    /// with [`Progress::record_model_call`](super::state::Progress::record_model_call)).
    Response(ModelResponse),
    /// A guard stopped the turn before the call: the model's breaker is open, or a budget
    /// would be exceeded.
    Stopped(Ending),
}

/// One model call under every guard of the turn, as each pattern makes them: the model's
/// circuit breaker, the budget (checked against the call's worst case, output capped to fit),
/// the model-call hooks, an `llm_call` span with streamed deltas and `usage_observed`, and the
/// wall-clock cap. `iteration` numbers the call within the turn (from 1).
///
/// When the request's model is unavailable — its breaker is open, or the call failed in a way
/// another model may not ([`ProviderError::is_fallbackable`]) — the agent's `fallback_models`
/// are tried in order (each under the same guards, its `llm_call` span marked `fallback_for`).
/// The request's model is left as it was, so the next call tries the first model again. With
/// no model left, an open breaker stops the turn (`ModelUnavailable`) and a failure is the
/// error (every failure counts against its model's breaker).
pub(crate) async fn model_call(
    cx: &mut Cx<'_>,
    request: &mut ModelRequest,
    iteration: u32,
    purpose: Purpose,
) -> Result<Called, RunError> {
    let mut outcome = attempt(cx, request, iteration, purpose, None).await;
    let agent = &cx.member.agent;
    if matches!(outcome, Attempt::Unavailable(_)) && !agent.fallback_models().is_empty() {
        // Only now is the first model's name kept aside (the usual call copies nothing).
        let first = request.model.clone();
        let fallbacks = agent.fallback_models().iter().map(|m| m.as_str()).filter(|m| *m != first);
        for model in fallbacks {
            request.model = model.to_owned();
            outcome = attempt(cx, request, iteration, purpose, Some(first.as_str())).await;
            if !matches!(outcome, Attempt::Unavailable(_)) {
                break;
            }
        }
        request.model = first;
    }
    match outcome {
        Attempt::Done(called) => Ok(called),
        Attempt::Failed(error) | Attempt::Unavailable(Some(error)) => Err(error),
        Attempt::Unavailable(None) => Ok(Called::Stopped(Ending::Done(StopReason::ModelUnavailable))),
    }
}

/// How one model's attempt at a call went.
enum Attempt {
    /// Answered, or stopped by a guard that another model would not pass either (a budget).
    Done(Called),
    /// Failed in a way another model would not mend (or a hook failed closed).
    Failed(RunError),
    /// The model is unavailable: its breaker is open (`None`) or it failed in a way another
    /// model may not.
    Unavailable(Option<RunError>),
}

async fn attempt(
    cx: &mut Cx<'_>,
    request: &mut ModelRequest,
    iteration: u32,
    purpose: Purpose,
    fallback_for: Option<&str>,
) -> Attempt {
    if let Availability::Unavailable(_) = cx.member.breakers.acquire_model(&request.model) {
        return Attempt::Unavailable(None);
    }
    let client = cx.member.client_for(&request.model);
    let capabilities = client.capabilities();
    let input = request.estimated_input_tokens();
    let price = client.price(&request.model);
    if let Err(exceeded) =
        cx.budget.before_model_call(request, input, u64::from(capabilities.max_output_tokens), price)
    {
        return Attempt::Done(Called::Stopped(cx.stop(exceeded)));
    }
    let before = cx.member.hooks.before_model_call(cx.hook_cx, request).await;
    if let Err(error) = cx.hooks_ok(&before) {
        return Attempt::Failed(error);
    }
    let (provider, model) = request.model.split_once(':').unwrap_or(("", request.model.as_str()));
    let llm_span = tracing::info_span!(
        "kaos.llm_call",
        otel.name = %format!("chat {}", request.model),
        gen_ai.operation.name = "chat",
        gen_ai.system = provider,
        gen_ai.request.model = model,
        gen_ai.response.model = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        kaos.iteration = i64::from(iteration),
    );
    let call = call_model(cx, request, iteration, purpose, fallback_for).instrument(llm_span.clone());
    let outcome = match cx.budget.time_left() {
        Some(left) => match tokio::time::timeout(left, call).await {
            Ok(outcome) => outcome,
            Err(_) => return Attempt::Done(Called::Stopped(cx.stop(cx.budget.out_of_time()))),
        },
        None => call.await,
    };
    let response = match outcome {
        Ok(response) => {
            cx.member.breakers.record_model(&request.model, true);
            response
        }
        Err(error) => {
            let tripped = cx.member.breakers.record_model(&request.model, false);
            cx.tripped("model", &request.model, tripped);
            return match &error {
                RunError::Provider(e) if e.is_fallbackable() => Attempt::Unavailable(Some(error)),
                _ => Attempt::Failed(error),
            };
        }
    };
    llm_span.record("gen_ai.response.model", response.model.as_str());
    llm_span.record(
        "gen_ai.usage.input_tokens",
        as_i64(response.usage.input_tokens + response.usage.cached_input_tokens),
    );
    llm_span.record("gen_ai.usage.output_tokens", as_i64(response.usage.output_tokens));
    let after = cx.member.hooks.after_model_call(cx.hook_cx, &response).await;
    if let Err(error) = cx.hooks_ok(&after) {
        return Attempt::Failed(error);
    }
    cx.budget.record_model_call(&response.usage, response.cost_usd);
    Attempt::Done(Called::Response(response))
}

async fn call_model(
    cx: &Cx<'_>,
    request: &ModelRequest,
    iteration: u32,
    purpose: Purpose,
    fallback_for: Option<&str>,
) -> Result<ModelResponse, RunError> {
    let (member, emit) = (cx.member, cx.emit);
    let internal = purpose == Purpose::Internal;
    let attributes = LlmStart { model: &request.model, iteration, internal, fallback_for };
    let span = emit.start(
        SpanSubject::LlmCall,
        format_args!("llm.{}", request.model),
        Some(cx.parent()),
        attributes,
    );
    // Grown at the first delta (a call that only calls tools streams none).
    let mut streamed = String::new();
    // Seen by nobody but the fold, the streamed text is folded once, after the stream.
    let unobserved = emit.unobserved();
    let mut response = None;
    let mut stream = member.client_for(&request.model).stream(request);
    while let Some(item) = stream.next().await {
        match item {
            Ok(
                StreamEvent::TextDelta { .. }
                | StreamEvent::ThinkingDelta { .. }
                | StreamEvent::ToolCallDelta { .. },
            ) if internal => {}
            Ok(StreamEvent::TextDelta { text }) => {
                if streamed.capacity() == 0 {
                    // Room for a typical answer at once, rather than growing word by word.
                    streamed.reserve(256.max(text.len()));
                }
                streamed.push_str(&text);
                if !unobserved {
                    emit.emit(EventKind::TextDelta { text });
                }
            }
            Ok(StreamEvent::ThinkingDelta { text }) => emit.emit(EventKind::ThinkingDelta { text }),
            Ok(StreamEvent::ToolCallDelta { index, arguments, .. }) => {
                emit.emit(EventKind::ToolCallArgsDelta { index, text: arguments })
            }
            Ok(StreamEvent::Completed { response: r }) => response = Some(r),
            Ok(StreamEvent::RetryScheduled { attempt, wait_ms, reason, message }) => {
                emit.emit(EventKind::RetryScheduled {
                    model: request.model.clone(),
                    attempt,
                    wait_ms,
                    reason,
                    message,
                })
            }
            Ok(_) => {}
            Err(error) => {
                emit.end(span, SpanPhase::Error, attrs([("error", json!(error.to_string()))]));
                return Err(error.into());
            }
        }
    }
    let Some(response) = response else {
        let error = ProviderError::MalformedResponse {
            message: "the stream ended without a completed response".into(),
        };
        emit.end(span, SpanPhase::Error, attrs([("error", json!(error.to_string()))]));
        return Err(error.into());
    };
    // Events must add up to the response even for a client that streams less than it returns.
    let rest = match response.text.strip_prefix(streamed.as_str()) {
        _ if internal => None,
        Some(rest) if !rest.is_empty() => Some(rest.to_owned()),
        Some(_) => None,
        None => {
            tracing::warn!(model = %request.model, "streamed text disagrees with the completed response");
            None
        }
    };
    if unobserved && !internal && !streamed.is_empty() {
        emit.emit(EventKind::TextDelta { text: streamed });
    }
    if let Some(rest) = rest {
        emit.emit(EventKind::TextDelta { text: rest });
    }
    emit.emit_folding(
        |fold| fold.push_usage(response.usage, response.cost_usd),
        || EventKind::UsageObserved {
            model: response.model.clone(),
            usage: response.usage,
            cost_usd: response.cost_usd,
            usage_estimated: response.usage_estimated,
        },
    );
    emit.end(
        span,
        SpanPhase::Complete,
        LlmEnd { finish_reason: &response.finish_reason, tool_calls: response.tool_calls.len() },
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Arc;

    use kaos_agent::{Agent, Budget, Delegate};
    use kaos_providers::{Message, ScriptedClient};
    use kaos_runtime::Runtime;
    use kaos_tools::ToolResult;
    use serde_json::Value;

    use super::*;
    use crate::emit::OpenSpan;
    use crate::engine::fixture::{Fixture, progress};
    use crate::engine::{Delegator, state::Progress};
    use crate::guard::BudgetGuard;
    use crate::hooks::Hooks;

    struct NoDelegation;

    #[async_trait::async_trait]
    impl Delegator for NoDelegation {
        async fn delegate(
            &self,
            _cx: &mut Cx<'_>,
            _progress: &mut Progress,
            _delegate: &Delegate,
            _call_id: &str,
            _arguments: &Value,
            _tool_span: &OpenSpan,
        ) -> super::super::Delegated {
            super::super::Delegated::Done(ToolResult::error("no delegation here"))
        }
    }

    /// Makes one guarded call with `budget`; the outcome, the budget left, and the events.
    async fn call(
        agent: Agent,
        model: &ScriptedClient,
        budget: Budget,
        before: impl FnOnce(&Fixture),
    ) -> (Called, Budget, Vec<EventKind>) {
        let mut f = Fixture::new(agent, Runtime::test_mode(), Arc::new(model.clone()), Hooks::new());
        before(&f);
        let mut request = progress(&f.member, &[]).request;
        request.messages.push(Message::user("hi"));
        let policy = f.context.policy(&f.member).unwrap();
        let span = f.emit.start(SpanSubject::Turn, "turn.1", None, serde_json::Map::new());
        let guard = BudgetGuard::new(budget, Default::default(), 0.0, 0, 0);
        let delegator = NoDelegation;
        let (called, left) = {
            let mut cx = Cx::new(
                &f.member, &f.session, &f.emit, &span, &f.context, &policy, guard, &f.hook_cx, &delegator,
            );
            let called = model_call(&mut cx, &mut request, 1, Purpose::Answer).await.unwrap();
            (called, cx.budget.remaining())
        };
        (called, left, f.drain())
    }

    #[tokio::test]
    async fn a_budget_stops_the_call_before_it_is_sent() {
        let model = ScriptedClient::new().with_text("never");
        let agent = Agent::builder().model("scripted:main").build().unwrap();
        let (called, _, events) =
            call(agent, &model, Budget::unlimited().with_max_model_calls(0), |_| {}).await;
        assert!(matches!(called, Called::Stopped(Ending::Done(StopReason::BudgetExceeded))));
        assert_eq!(model.requests_len(), 0);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, EventKind::BudgetExceeded { kind, .. } if kind == "model_calls"))
        );
    }

    #[tokio::test]
    async fn an_answer_is_streamed_and_counted_against_the_budget() {
        let model = ScriptedClient::new().with_text("hello");
        let agent = Agent::builder().model("scripted:main").build().unwrap();
        let (called, left, events) =
            call(agent, &model, Budget::unlimited().with_max_model_calls(3), |_| {}).await;
        let Called::Response(response) = called else { panic!("stopped") };
        assert_eq!(response.text, "hello");
        assert_eq!(left.max_model_calls, Some(2));
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                EventKind::TextDelta { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "hello");
        assert!(events.iter().any(|e| matches!(e, EventKind::UsageObserved { .. })));
    }

    #[tokio::test]
    async fn an_open_breaker_hands_the_call_to_the_fallback_model_or_stops() {
        let model = ScriptedClient::from_fn(|request| {
            kaos_providers::ScriptedReply::text(format!("from {}", request.model))
        });
        let agent = Agent::builder().model("scripted:main").fallback_model("scripted:spare").build().unwrap();
        let open_main = |f: &Fixture| {
            let _ = f.member.breakers.record_model("scripted:main", false);
        };
        let (called, _, events) = call(agent, &model, Budget::unlimited(), open_main).await;
        let Called::Response(response) = called else { panic!("stopped") };
        assert_eq!(response.text, "from scripted:spare");
        assert!(events.iter().any(|e| matches!(e, EventKind::Span(s) if s.attributes.get("fallback_for") == Some(&serde_json::json!("scripted:main")))));
        // No fallback: the turn stops, nothing is sent.
        let lone = Agent::builder().model("scripted:main").build().unwrap();
        let (called, _, _) = call(lone, &model, Budget::unlimited(), open_main).await;
        assert!(matches!(called, Called::Stopped(Ending::Done(StopReason::ModelUnavailable))));
        assert_eq!(model.requests_len(), 1);
    }
}

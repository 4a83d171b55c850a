//! The router pattern: classify the user's message — with keywords (no model call) or with one
//! cheap model call (the agent's `classify` role model) — then run one of the other patterns
//! for the rest of the turn. A `route` span wraps the decision; an `intent_classified` event
//! reports it.

use kaos_agent::{Classifier, ModelRole, Pattern, Route, RouterConfig};
use kaos_providers::{Message, ModelRequest};
use serde::Deserialize;
use serde_json::{Value, json};

use super::research::json_part;
use crate::emit::attrs;
use crate::engine::state::Progress;
use crate::engine::{Called, Cx, Ending, Purpose, model_call};
use crate::error::RunError;
use crate::events::{EventKind, SpanPhase, SpanSubject};

/// The classification answer is short; this bounds what it may cost.
const CLASSIFY_MAX_OUTPUT_TOKENS: u32 = 256;

/// The routes of a router: its own, or every other pattern with a built-in description.
pub(crate) fn routes(config: &RouterConfig) -> Vec<Route> {
    if !config.routes.is_empty() {
        return config.routes.clone();
    }
    vec![
        Route::new(Pattern::Chat, "conversation, and requests answered directly or with tools"),
        Route::new(Pattern::Research, "questions to answer from the session's documents, with citations"),
        Route::new(Pattern::Plan, "tasks that take several steps and need a plan"),
        Route::new(Pattern::Findings, "questions that need evidence gathered across many documents"),
    ]
}

/// A route decision.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    pub(crate) pattern: Pattern,
    pub(crate) confidence: Option<f64>,
    pub(crate) reason: String,
}

/// The `rules` classifier: the first route with a keyword in the message (case-insensitive,
/// at word boundaries), else the default pattern.
pub(crate) fn by_rules(config: &RouterConfig, message: &str) -> Decision {
    let text = message.to_lowercase();
    for route in routes(config) {
        if let Some(keyword) = route.keywords.iter().find(|k| contains_word(&text, &k.to_lowercase())) {
            return Decision {
                pattern: route.pattern,
                confidence: None,
                reason: format!("keyword {keyword:?}"),
            };
        }
    }
    Decision { pattern: config.default_pattern, confidence: None, reason: "no keyword matched".into() }
}

/// Whether `needle` occurs in `haystack` with no letter or digit right before or after it.
fn contains_word(haystack: &str, needle: &str) -> bool {
    let needle = needle.trim();
    haystack.match_indices(needle).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[derive(Deserialize)]
struct Answer {
    route: String,
    #[serde(default)]
    confidence: Option<f64>,
    #[serde(default)]
    reason: String,
}

/// Reads the classifying model's answer; an unusable one routes to the default pattern, and
/// says why.
pub(crate) fn read_answer(config: &RouterConfig, text: &str) -> Decision {
    let default = |why: String| Decision { pattern: config.default_pattern, confidence: None, reason: why };
    let answer: Answer = match serde_json::from_str(json_part(text)) {
        Ok(answer) => answer,
        Err(error) => return default(format!("the classifier's answer was not the required JSON ({error})")),
    };
    let route = routes(config).into_iter().find(|r| r.pattern.as_str() == answer.route.trim());
    match route {
        Some(route) => Decision {
            pattern: route.pattern,
            confidence: answer.confidence.filter(|c| c.is_finite()).map(|c| c.clamp(0.0, 1.0)),
            reason: answer.reason,
        },
        None => default(format!("the classifier chose an unknown route {:?}", answer.route)),
    }
}

fn classify_request(config: &RouterConfig, model: String, message: &str) -> ModelRequest {
    let routes = routes(config);
    let names: Vec<&str> = routes.iter().map(|r| r.pattern.as_str()).collect();
    let listed: Vec<String> = routes.iter().map(|r| format!("- {}: {}", r.pattern, r.description)).collect();
    let system = format!(
        "Classify the user's message into exactly one route. Routes:\n{}\n\nReply with JSON only: \
         {{\"route\": \"<route>\", \"confidence\": <0 to 1>, \"reason\": \"<a few words>\"}}",
        listed.join("\n")
    );
    let mut request = ModelRequest::new(model, vec![Message::user(message)]).with_system(system);
    request.output_schema = Some(json!({
        "type": "object",
        "properties": {
            "route": {"type": "string", "enum": names},
            "confidence": {"type": "number"},
            "reason": {"type": "string"}
        },
        "required": ["route", "confidence", "reason"],
        "additionalProperties": false
    }));
    request.sampling.max_output_tokens = Some(CLASSIFY_MAX_OUTPUT_TOKENS);
    request
}

/// Classifies the turn's user message; `Err(ending)` when a guard stopped the turn first.
pub(crate) async fn route(
    cx: &mut Cx<'_>,
    progress: &mut Progress,
) -> Result<Result<Pattern, Ending>, RunError> {
    let config = cx.agent().router().clone();
    let message = progress.request.messages.get(progress.first_new).map(|m| m.content().to_owned());
    let message = message.unwrap_or_default();
    let classifier = match config.classifier {
        Classifier::Rules => "rules",
        _ => "model",
    };
    let span = cx.emit.start(
        SpanSubject::Route,
        "route",
        Some(cx.turn_span),
        attrs([("classifier", json!(classifier))]),
    );
    let decision = match config.classifier {
        Classifier::Rules => by_rules(&config, &message),
        _ => {
            let mut request = classify_request(&config, cx.model_for(ModelRole::Classify), &message);
            let called = model_call(cx, &mut request, progress.model_calls + 1, Purpose::Internal).await;
            match called {
                Ok(Called::Response(response)) => {
                    progress.record_model_call(&response);
                    read_answer(&config, &response.text)
                }
                Ok(Called::Stopped(ending)) => {
                    cx.emit.end(span, SpanPhase::Cancelled, attrs([("stopped", json!(true))]));
                    return Ok(Err(ending));
                }
                Err(error) => {
                    cx.emit.end(span, SpanPhase::Error, attrs([("error", json!(error.report()))]));
                    return Err(error);
                }
            }
        }
    };
    cx.emit.emit(EventKind::IntentClassified {
        pattern: decision.pattern,
        classifier: classifier.to_owned(),
        confidence: decision.confidence,
        reason: decision.reason.clone(),
    });
    let mut attributes = attrs([("pattern", json!(decision.pattern)), ("reason", json!(decision.reason))]);
    if let Some(confidence) = decision.confidence {
        attributes.insert("confidence".into(), Value::from(confidence));
    }
    cx.emit.end(span, SpanPhase::Complete, attributes);
    Ok(Ok(decision.pattern))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RouterConfig {
        RouterConfig::default()
            .with_classifier(Classifier::Rules)
            .with_route(Route::new(Pattern::Research, "docs").with_keywords(["cite", "according to"]))
            .with_route(Route::new(Pattern::Plan, "tasks").with_keywords(["plan", "steps"]))
    }

    #[test]
    fn rules_pick_the_first_route_with_a_whole_keyword() {
        let pick = |m: &str| by_rules(&config(), m).pattern;
        assert_eq!(pick("Please CITE the manual"), Pattern::Research);
        assert_eq!(pick("What, according to the memo, is due?"), Pattern::Research);
        assert_eq!(pick("plan a trip, and cite it"), Pattern::Research);
        assert_eq!(pick("Make a plan."), Pattern::Plan);
        // `planet` is not `plan`, `excite` is not `cite`.
        assert_eq!(pick("Name a planet that would excite you"), Pattern::Chat);
        assert_eq!(by_rules(&config(), "hello").reason, "no keyword matched");
    }

    #[test]
    fn unusable_model_answers_route_to_the_default_with_a_reason() {
        let config = config().with_default_pattern(Pattern::Research);
        let good = read_answer(&config, r#"{"route": "plan", "confidence": 1.7, "reason": "many steps"}"#);
        assert_eq!(
            (good.pattern, good.confidence, good.reason.as_str()),
            (Pattern::Plan, Some(1.0), "many steps")
        );
        let unknown = read_answer(&config, r#"{"route": "findings", "confidence": 0.9}"#);
        assert_eq!(unknown.pattern, Pattern::Research);
        assert!(unknown.reason.contains("unknown route"), "{}", unknown.reason);
        let broken = read_answer(&config, "plan, surely");
        assert_eq!(broken.pattern, Pattern::Research);
        assert!(broken.reason.contains("not the required JSON"), "{}", broken.reason);
    }
}

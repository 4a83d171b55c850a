#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::num::NonZeroU32;
use std::sync::Arc;

use futures::StreamExt;
use kaos_agent::{Agent, Budget, FindingsConfig, Pattern, SectionKind};
use kaos_providers::{
    Capabilities, ModelClient, ModelPrice, ModelRequest, ModelResponse, ProviderError, ScriptedClient,
    ScriptedReply,
};
use kaos_runner::{Event, EventKind, NewItem, RefusalReason, Runner, StopReason, TurnFold, TurnResponse};
use kaos_runtime::Runtime;
use serde_json::{Value, json};

const BRIDGE: &str = "The Harbour Bridge opened in 1932\nafter six years of construction.";
const TOLLS: &str = "Tolls on the Harbour Bridge were introduced in 1932 to pay for it.";
const CATS: &str = "Cats sleep for most of the day.";

/// The document an extraction request is about (`None` for the synthesis call).
fn document_of(request: &ModelRequest) -> Option<String> {
    request.output_schema.as_ref()?;
    let prompt = request.messages[0].content();
    let name = prompt.split("Document: ").nth(1)?.split('\n').next()?;
    Some(name.to_owned())
}

fn findings(pairs: &[(&str, &str)]) -> String {
    let items: Vec<Value> = pairs.iter().map(|(f, q)| json!({"finding": f, "quote": q})).collect();
    json!({ "findings": items }).to_string()
}

/// A reply costing `cost_usd`.
fn priced(text: String, cost_usd: f64) -> ScriptedReply {
    let mut response = ModelResponse::text("scripted:echo", text);
    response.usage.input_tokens = 100;
    response.usage.output_tokens = 20;
    response.cost_usd = Some(cost_usd);
    ScriptedReply::Response(response)
}

/// A client charging `price` for what the scripted client answers (output cut at the
/// request's `max_output_tokens`), and telling budgets its price.
#[derive(Debug)]
struct Priced {
    inner: ScriptedClient,
    price: ModelPrice,
}

#[async_trait::async_trait]
impl ModelClient for Priced {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn price(&self, _model: &str) -> Option<ModelPrice> {
        Some(self.price)
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        let mut response = self.inner.complete(request).await?;
        if let Some(max) = request.sampling.max_output_tokens {
            response.usage.output_tokens = response.usage.output_tokens.min(u64::from(max));
        }
        response.cost_usd = Some(self.price.cost(&response.usage));
        Ok(response)
    }
}

fn agent(config: FindingsConfig, budget: Budget) -> Agent {
    Agent::builder()
        .name("gatherer")
        .pattern(Pattern::Findings)
        .findings(config)
        .budget(budget)
        .build()
        .unwrap()
}

async fn runner(agent: Agent, model: Arc<dyn ModelClient>, docs: &[(&str, &str)]) -> Runner {
    let runner = Runner::builder(agent, Runtime::test_mode()).model(model).build().unwrap();
    let items: Vec<NewItem> =
        docs.iter().map(|(name, text)| NewItem::text(*text).with_metadata("name", json!(name))).collect();
    runner.remember("s", SectionKind::Documents, items).await.unwrap();
    runner
}

async fn ask(runner: &Runner, question: &str) -> (Vec<EventKind>, TurnResponse) {
    let events: Vec<Event> = runner.run(question, "s").map(Result::unwrap).collect().await;
    let mut fold = TurnFold::default();
    events.iter().for_each(|e| fold.push(e));
    (events.into_iter().map(|e| e.kind).collect(), fold.finish().unwrap())
}

/// `(source, finding, reason)` of every refusal.
fn refusals(events: &[EventKind]) -> Vec<(String, Option<String>, RefusalReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::FindingRefused { source, finding, reason, .. } => {
                Some((source.clone(), finding.clone(), *reason))
            }
            _ => None,
        })
        .collect()
}

fn refused_doc(source: &str, reason: RefusalReason) -> (String, Option<String>, RefusalReason) {
    (source.to_owned(), None, reason)
}

fn extracted(model: &ScriptedClient) -> Vec<String> {
    model.requests().iter().filter_map(document_of).collect()
}

const QUESTION: &str = "When did the Harbour Bridge open, and when did tolls begin?";

#[tokio::test]
async fn findings_are_extracted_per_document_filtered_and_synthesized_with_sources() {
    let model = ScriptedClient::from_fn(|request| match document_of(request).as_deref() {
        Some("tolls.md") => priced(
            findings(&[("Tolls began in 1932.", "Tolls on the Harbour Bridge were introduced in 1932")]),
            0.001,
        ),
        // Read after tolls.md: its second finding restates one already kept.
        Some("bridge.md") => priced(
            findings(&[
                ("The bridge opened in 1932.", "opened in 1932 after six years"),
                ("tolls  BEGAN in 1932.", "opened in 1932"),
                ("It was painted pink.", "the bridge was painted pink"),
            ]),
            0.001,
        ),
        Some(_) => priced(findings(&[]), 0.001),
        None => priced("The bridge opened in 1932, the year tolls began.".into(), 0.002),
    });
    let docs = [("cats.md", CATS), ("bridge.md", BRIDGE), ("tolls.md", TOLLS)];
    let runner =
        runner(agent(FindingsConfig::default(), Budget::default()), Arc::new(model.clone()), &docs).await;
    let (events, response) = ask(&runner, QUESTION).await;

    // One extraction per document (most relevant first), then one synthesis call.
    assert_eq!(extracted(&model), ["tolls.md", "bridge.md", "cats.md"]);
    let requests = model.requests();
    assert_eq!(requests.len(), 4);
    assert!(requests.iter().all(|r| r.tools.is_empty()));
    let synthesis = &requests[3];
    assert!(synthesis.output_schema.is_none());
    let prompt = synthesis.messages[0].content();
    assert!(prompt.contains("Tolls began in 1932.") && prompt.contains("(bridge.md)"), "{prompt}");
    assert!(!prompt.contains("painted pink"), "{prompt}");

    assert_eq!(
        refusals(&events),
        [
            ("bridge.md".into(), Some("tolls  BEGAN in 1932.".into()), RefusalReason::Duplicate),
            ("bridge.md".into(), Some("It was painted pink.".into()), RefusalReason::UnverifiedQuote),
        ]
    );
    let cited: Vec<(&str, bool)> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::CitationFound { claim, verified, .. } => Some((claim.as_str(), *verified)),
            _ => None,
        })
        .collect();
    assert_eq!(cited, [("Tolls began in 1932.", true), ("The bridge opened in 1932.", true)]);

    assert_eq!(response.stop_reason, StopReason::Completed);
    assert_eq!(
        response.text,
        "The bridge opened in 1932, the year tolls began.\n\nSources:\n\
         - \"Tolls on the Harbour Bridge were introduced in 1932\" (tolls.md)\n\
         - \"opened in 1932 after six years\" (bridge.md)"
    );
    assert!((response.cost_usd - 0.005).abs() < 1e-12, "{}", response.cost_usd);
    assert_eq!(response.model_calls, 4);

    let memory = runner.memory("s").await.unwrap();
    let stored: Vec<String> =
        memory.section(SectionKind::Findings).items().iter().map(|i| i.text().into_owned()).collect();
    assert_eq!(
        stored,
        [
            "Tolls began in 1932. — \"Tolls on the Harbour Bridge were introduced in 1932\" (tolls.md)",
            "The bridge opened in 1932. — \"opened in 1932 after six years\" (bridge.md)",
        ]
    );
    // The session keeps the question and the answer, none of the internal calls.
    let history: Vec<(bool, String)> =
        runner.history("s").await.unwrap().iter().map(|m| (m.is_user(), m.content().to_owned())).collect();
    assert_eq!(history, [(true, QUESTION.to_owned()), (false, response.text.clone())]);
}

#[tokio::test]
async fn a_document_over_the_per_document_cost_cap_is_refused_without_a_call() {
    let scripted = ScriptedClient::from_fn(|request| match document_of(request).as_deref() {
        Some("bridge.md") => ScriptedReply::text(findings(&[("Opened 1932.", "opened in 1932")])),
        Some(_) => ScriptedReply::text(findings(&[])),
        None => ScriptedReply::text("It opened in 1932."),
    });
    // $0.0001 per token: the big document's prompt alone (~5,000 tokens) costs $0.50.
    let model = Priced { inner: scripted.clone(), price: ModelPrice::new(100.0, 100.0, None) };
    let big = format!("The Harbour Bridge tolls. {}", "Nothing else here. ".repeat(1_000));
    let docs = [("bridge.md", BRIDGE), ("big.md", big.as_str()), ("tolls.md", TOLLS)];
    let config = FindingsConfig::default().with_max_cost_per_document_usd(0.05);
    let runner = runner(agent(config, Budget::default()), Arc::new(model), &docs).await;
    let (events, response) = ask(&runner, QUESTION).await;

    assert_eq!(refusals(&events), [refused_doc("big.md", RefusalReason::DocumentCostCap)]);
    let mut read = extracted(&scripted);
    read.sort();
    assert_eq!(read, ["bridge.md", "tolls.md"]);
    assert_eq!(scripted.requests_len(), 3);
    // The documents read had their output capped to fit $0.05 each.
    for request in scripted.requests().iter().filter(|r| document_of(r).is_some()) {
        let max = u64::from(request.sampling.max_output_tokens.unwrap());
        let worst = (request.estimated_input_tokens() + max) as f64 * 100.0 / 1e6;
        assert!(worst <= 0.05 * (1.0 + 1e-9), "worst case ${worst}");
    }
    assert_eq!(response.stop_reason, StopReason::Completed);
    assert_eq!(response.text, "It opened in 1932.\n\nSources:\n- \"opened in 1932\" (bridge.md)");
}

#[tokio::test]
async fn a_document_over_the_per_document_token_cap_is_refused_without_a_call() {
    let model = ScriptedClient::from_fn(|request| match document_of(request) {
        Some(_) => ScriptedReply::text(findings(&[("Opened 1932.", "opened in 1932")])),
        None => ScriptedReply::text("It opened in 1932."),
    });
    let big = format!("{BRIDGE} {}", "Harbour Bridge. ".repeat(500));
    let docs = [("bridge.md", BRIDGE), ("big.md", big.as_str())];
    let config = FindingsConfig::default().with_max_tokens_per_document(NonZeroU32::new(1_000).unwrap());
    let runner = runner(agent(config, Budget::default()), Arc::new(model.clone()), &docs).await;
    let (events, response) = ask(&runner, QUESTION).await;
    assert_eq!(refusals(&events), [refused_doc("big.md", RefusalReason::DocumentTokenCap)]);
    assert_eq!(extracted(&model), ["bridge.md"]);
    assert_eq!(response.stop_reason, StopReason::Completed);
}

#[tokio::test]
async fn only_the_most_relevant_documents_are_read() {
    let model = ScriptedClient::from_fn(|request| match document_of(request) {
        Some(_) => ScriptedReply::text(findings(&[("Opened 1932.", "opened in 1932")])),
        None => ScriptedReply::text("It opened in 1932."),
    });
    let docs = [("cats.md", CATS), ("tolls.md", TOLLS), ("bridge.md", BRIDGE)];
    let config = FindingsConfig::default().with_max_documents(NonZeroU32::new(1).unwrap());
    let runner = runner(agent(config, Budget::default()), Arc::new(model.clone()), &docs).await;
    let (events, response) = ask(&runner, "When did the bridge open? It opened after construction.").await;
    assert_eq!(extracted(&model), ["bridge.md"]);
    assert_eq!(model.requests_len(), 2);
    assert_eq!(
        refusals(&events),
        [
            refused_doc("tolls.md", RefusalReason::NotRelevantEnough),
            refused_doc("cats.md", RefusalReason::NotRelevantEnough),
        ]
    );
    assert_eq!(response.stop_reason, StopReason::Completed);
}

#[tokio::test]
async fn nothing_verifiable_is_a_typed_refusal_without_a_synthesis_call() {
    let model = ScriptedClient::from_fn(|request| match document_of(request).as_deref() {
        Some("bridge.md") => ScriptedReply::text(findings(&[("Opened 1931.", "opened in 1931")])),
        Some("tolls.md") => ScriptedReply::text("Tolls? No idea."),
        _ => ScriptedReply::text(findings(&[])),
    });
    let docs = [("bridge.md", BRIDGE), ("tolls.md", TOLLS), ("cats.md", CATS)];
    let runner =
        runner(agent(FindingsConfig::default(), Budget::default()), Arc::new(model.clone()), &docs).await;
    let (events, response) = ask(&runner, QUESTION).await;

    assert_eq!(model.requests_len(), 3, "one extraction per document and no synthesis");
    assert_eq!(
        refusals(&events),
        [
            refused_doc("tolls.md", RefusalReason::MalformedExtraction),
            ("bridge.md".into(), Some("Opened 1931.".into()), RefusalReason::UnverifiedQuote),
        ]
    );
    let reason = "0 verified finding(s) from 0 document(s) read; 1 required (refused documents: 1 \
                  malformed_extraction; refused findings: 1 unverified_quote)";
    let insufficient: Vec<&EventKind> =
        events.iter().filter(|e| matches!(e, EventKind::EvidenceInsufficient { .. })).collect();
    assert_eq!(
        insufficient,
        [&EventKind::EvidenceInsufficient { reason: reason.into(), verified: 0, required: 1 }]
    );
    assert_eq!(response.stop_reason, StopReason::EvidenceInsufficient);
    assert_eq!(response.text, format!("I cannot answer this from the documents: {reason}."));
    assert!(runner.memory("s").await.unwrap().section(SectionKind::Findings).items().is_empty());
    let history = runner.history("s").await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].content(), response.text);
}

#[tokio::test]
async fn when_the_turn_budget_runs_out_the_rest_is_refused_and_the_answer_uses_what_was_found() {
    let scripted = ScriptedClient::from_fn(|request| match document_of(request) {
        Some(name) => ScriptedReply::text(findings(&[(&format!("{name} says 1932."), "opened in 1932")])),
        None => ScriptedReply::text("It opened in 1932."),
    });
    let model = Priced { inner: scripted.clone(), price: ModelPrice::new(100.0, 100.0, None) };
    // Each extraction's prompt is ~400 tokens ($0.04): one fits a $0.06 turn, two do not.
    let padding = "More about the bridge. ".repeat(50);
    let texts: Vec<String> = (1..=3).map(|n| format!("Bridge {n} opened in 1932. {padding}")).collect();
    let docs: Vec<(String, &str)> =
        texts.iter().enumerate().map(|(i, t)| (format!("d{i}.md"), t.as_str())).collect();
    let docs: Vec<(&str, &str)> = docs.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    let cap = 0.06;
    let budget = Budget::unlimited().with_max_cost_usd(cap);
    let runner = runner(agent(FindingsConfig::default(), budget), Arc::new(model), &docs).await;
    let (events, response) = ask(&runner, "When did the bridge open?").await;

    let read = extracted(&scripted);
    assert_eq!(read.len(), 1);
    let refused = refusals(&events);
    assert_eq!(refused.len(), 2);
    assert!(
        refused.iter().all(|(_, f, r)| f.is_none() && *r == RefusalReason::BudgetExhausted),
        "{refused:?}"
    );
    assert!(refused.iter().all(|(s, _, _)| *s != read[0]));
    assert_eq!(events.iter().filter(|e| matches!(e, EventKind::BudgetExceeded { .. })).count(), 1);
    // The synthesis still ran, within what was left.
    assert_eq!(scripted.requests_len(), 2);
    assert_eq!(response.stop_reason, StopReason::BudgetExceeded);
    assert_eq!(
        response.text,
        format!(
            "It opened in 1932.\n\nThe turn's budget ran out: 2 document(s) were not read.\n\n\
             Sources:\n- \"opened in 1932\" ({})",
            read[0]
        )
    );
    assert!(response.cost_usd > 0.04 && response.cost_usd <= cap, "{}", response.cost_usd);
}

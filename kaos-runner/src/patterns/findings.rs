//! The findings pattern: extract → filter → synthesize across many documents.
//!
//! 1. **Select**: the session's documents ranked by BM25 relevance to the user's message; the
//!    first `findings.max_documents` are read, every other one is refused
//!    (`not_relevant_enough`, one `finding_refused` event per document).
//! 2. **Extract**: one internal model call per document (a `findings.extract` step span)
//!    asking for `{"findings": [{"finding", "quote"}]}`. Before the call its worst case is
//!    checked against the per-document caps (a [`BudgetGuard`] of its own, output capped to
//!    fit) and then against the turn's budget. A document over a per-document cap is refused
//!    without a call; once the turn's budget (or the model's breaker) stops a call, that
//!    document and every one after it are refused, and the turn goes on to synthesis with what
//!    it has.
//! 3. **Filter**: a finding's quote must be in its document verbatim (whitespace-normalized,
//!    as in research); a finding already kept (same text, whitespace- and case-normalized) is
//!    a duplicate. Kept findings are reported (`citation_found`) and stored in `findings`.
//! 4. **Synthesize**: with at least `findings.min_findings` kept, one answer call writes the
//!    answer from the kept findings; the final text is that answer and a `Sources:` list.
//!    With fewer, no call: an `evidence_insufficient` refusal that counts what was refused.
//!
//! The internal calls never enter the turn's messages: the session keeps the user's message
//! and the final text.

use std::collections::HashSet;

use kaos_agent::{Budget, FindingsConfig, ModelRole, SectionKind};
use kaos_providers::{Message, ModelRequest};
use serde::Deserialize;
use serde_json::{Value, json};

use super::research::{Claim, json_part, normalize, sources_text, store_findings};
use crate::emit::{Emitter, attrs};
use crate::engine::state::Progress;
use crate::engine::{Called, Cx, Ending, Purpose, model_call};
use crate::error::RunError;
use crate::events::{EventKind, RefusalReason, SpanPhase, SpanSubject};
use crate::guard::BudgetGuard;
use kaos_session::StopReason;
use kaos_session::{SessionMemory, bm25_top_k};

/// The system prompt of an extraction call.
pub(crate) const EXTRACT_INSTRUCTION: &str = "You read one document and extract the facts in it that \
help answer the user's question. Reply with JSON only, of the form \
{\"findings\": [{\"finding\": \"...\", \"quote\": \"...\"}]}. Each finding is one fact, stated \
briefly; its quote is copied word for word from the document. If the document says nothing \
relevant, reply {\"findings\": []}.";

/// Added to the agent's instructions for the synthesis call.
pub(crate) const SYNTHESIZE_INSTRUCTION: &str = "Answer the user's question using only the \
findings given, each taken from a named document. Be concise; do not add facts the findings do \
not state.";

/// The JSON Schema of an extraction.
pub(crate) fn extraction_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "findings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "finding": {"type": "string"},
                        "quote": {"type": "string"}
                    },
                    "required": ["finding", "quote"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["findings"],
        "additionalProperties": false
    })
}

/// A document of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Document {
    /// Its `name` metadata (or `document <id>` when it has none).
    pub(crate) name: String,
    pub(crate) text: String,
}

/// The session's documents, in memory order.
pub(crate) fn documents(memory: &SessionMemory) -> Vec<Document> {
    memory
        .section(SectionKind::Documents)
        .items()
        .iter()
        .map(|item| Document {
            name: item
                .metadata
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("document {}", item.id), str::to_owned),
            text: item.text().into_owned(),
        })
        .collect()
}

/// Ranks the documents by BM25 relevance to `question`: the positions of the `max` read (best
/// first) and of the others (in rank order).
pub(crate) fn select(question: &str, documents: &[Document], max: usize) -> (Vec<usize>, Vec<usize>) {
    let mut ranked = bm25_top_k(question, documents.iter().map(|d| d.text.as_str()), documents.len());
    let rest = ranked.split_off(max.min(ranked.len()));
    (ranked, rest)
}

#[derive(Deserialize)]
struct Extraction {
    findings: Vec<Extracted>,
}

#[derive(Deserialize)]
struct Extracted {
    finding: String,
    quote: String,
}

/// One finding refused by the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) finding: String,
    pub(crate) reason: RefusalReason,
    pub(crate) detail: String,
}

/// What the filter made of one document's extraction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Filtered {
    pub(crate) kept: Vec<Claim>,
    pub(crate) refused: Vec<Refused>,
}

/// Reads one document's extraction (bare JSON, or in a code fence) and filters its findings:
/// the quote must be in the document (whitespace-normalized, case-sensitive), and a finding
/// whose text is in `seen` (whitespace-normalized, lowercased) is a duplicate; kept findings
/// are added to `seen`. `Err` says why the extraction could not be read.
pub(crate) fn filter(
    reply: &str,
    document: &Document,
    seen: &mut HashSet<String>,
) -> Result<Filtered, String> {
    let extraction: Extraction = serde_json::from_str(json_part(reply))
        .map_err(|error| format!("the extraction was not the required JSON ({error})"))?;
    let text = normalize(&document.text);
    let mut filtered = Filtered::default();
    for Extracted { finding, quote } in extraction.findings {
        let quoted = normalize(&quote);
        let key = normalize(&finding).to_lowercase();
        let refused = |reason, detail: String| Refused { finding: finding.clone(), reason, detail };
        if quoted.is_empty() || !text.contains(&quoted) {
            let detail = format!("the quote {quote:?} is not in {}", document.name);
            filtered.refused.push(refused(RefusalReason::UnverifiedQuote, detail));
        } else if key.is_empty() || !seen.insert(key) {
            let detail = "the same finding was already kept".to_owned();
            filtered.refused.push(refused(RefusalReason::Duplicate, detail));
        } else {
            filtered.kept.push(Claim { claim: finding, quote, source: document.name.clone() });
        }
    }
    Ok(filtered)
}

/// The refusals of a turn, counted for its final text.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    documents: Vec<RefusalReason>,
    findings: Vec<RefusalReason>,
}

impl Tally {
    /// E.g. `refused documents: 2 not_relevant_enough, 1 document_cost_cap; refused findings:
    /// 1 unverified_quote`, or `nothing was refused`.
    pub(crate) fn summary(&self) -> String {
        let count = |reasons: &[RefusalReason]| {
            let mut counts: Vec<(RefusalReason, usize)> = Vec::new();
            for reason in reasons {
                match counts.iter_mut().find(|(r, _)| r == reason) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((*reason, 1)),
                }
            }
            let parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {}", r.as_str())).collect();
            parts.join(", ")
        };
        let mut parts = Vec::new();
        if !self.documents.is_empty() {
            parts.push(format!("refused documents: {}", count(&self.documents)));
        }
        if !self.findings.is_empty() {
            parts.push(format!("refused findings: {}", count(&self.findings)));
        }
        if parts.is_empty() { "nothing was refused".to_owned() } else { parts.join("; ") }
    }
}

/// The state of one findings turn.
struct Gathering<'e> {
    emit: &'e Emitter,
    tally: Tally,
    kept: Vec<Claim>,
    seen: HashSet<String>,
    /// Set once a guard of the turn stopped a call: no further document is read.
    stopped: Option<StopReason>,
    /// Documents not read because of `stopped`.
    unread: usize,
}

impl Gathering<'_> {
    fn refuse(&mut self, source: &str, finding: Option<String>, reason: RefusalReason, detail: String) {
        match finding {
            Some(_) => self.tally.findings.push(reason),
            None => self.tally.documents.push(reason),
        }
        self.emit.emit(EventKind::FindingRefused { source: source.to_owned(), finding, reason, detail });
    }

    /// Refuses a document the turn could not read any more.
    fn refuse_unread(&mut self, source: &str) {
        let (reason, detail) = match self.stopped {
            Some(StopReason::ModelUnavailable) => {
                (RefusalReason::ModelUnavailable, "the model is unavailable (its circuit breaker is open)")
            }
            _ => (RefusalReason::BudgetExhausted, "the turn's budget cannot pay for reading it"),
        };
        self.unread += 1;
        self.refuse(source, None, reason, detail.to_owned());
    }
}

/// Runs a findings turn to its end.
pub(crate) async fn drive(
    cx: &mut Cx<'_>,
    memory: &mut SessionMemory,
    progress: &mut Progress,
) -> Result<Ending, RunError> {
    let config = *cx.agent().findings();
    let question = progress.request.messages.get(progress.first_new).map(|m| m.content().to_owned());
    let question = question.unwrap_or_default();
    let documents = documents(memory);
    let max = config.max_documents.get() as usize;
    let (selected, rest) = select(&question, &documents, max);
    let mut run = Gathering {
        emit: cx.emit,
        tally: Tally::default(),
        kept: Vec::new(),
        seen: HashSet::new(),
        stopped: None,
        unread: 0,
    };
    for (j, &i) in rest.iter().enumerate() {
        let detail = format!(
            "ranked {} of {} by relevance to the question; findings.max_documents is {max}",
            max + j + 1,
            documents.len()
        );
        run.refuse(&documents[i].name, None, RefusalReason::NotRelevantEnough, detail);
    }
    for &i in &selected {
        let document = &documents[i];
        if run.stopped.is_some() {
            run.refuse_unread(&document.name);
            continue;
        }
        if let Some(paused) = extract(cx, progress, &config, &question, document, &mut run).await? {
            return Ok(paused);
        }
    }
    store_findings(memory, &run.kept, cx.emit);
    conclude(cx, progress, &config, &question, run).await
}

/// Reads one document: per-document caps, the extraction call, the filter. `Some` only for
/// an ending the turn must return as is (a pause, which no guard of a model call produces).
async fn extract(
    cx: &mut Cx<'_>,
    progress: &mut Progress,
    config: &FindingsConfig,
    question: &str,
    document: &Document,
    run: &mut Gathering<'_>,
) -> Result<Option<Ending>, RunError> {
    let span = cx.emit.start(
        SpanSubject::Step,
        "findings.extract",
        Some(cx.turn_span),
        attrs([("source", json!(document.name))]),
    );
    let prompt = format!("Question: {question}\n\nDocument: {}\n---\n{}\n---", document.name, document.text);
    let mut request = ModelRequest::new(cx.model_for(ModelRole::Research), vec![Message::user(prompt)])
        .with_system(EXTRACT_INSTRUCTION);
    request.output_schema = Some(extraction_schema());
    if let Err((reason, detail)) = check_document(cx, config, &mut request) {
        run.refuse(&document.name, None, reason, detail);
        cx.emit.end(span, SpanPhase::Complete, attrs([("refused", json!(reason.as_str()))]));
        return Ok(None);
    }
    cx.enter(&span);
    let called = model_call(cx, &mut request, progress.model_calls + 1, Purpose::Internal).await;
    cx.leave();
    let response = match called {
        Ok(Called::Response(response)) => response,
        Ok(Called::Stopped(Ending::Done(reason))) => {
            run.stopped = Some(reason);
            run.refuse_unread(&document.name);
            cx.emit.end(span, SpanPhase::Cancelled, attrs([("stopped", json!(true))]));
            return Ok(None);
        }
        Ok(Called::Stopped(paused)) => {
            cx.emit.end(span, SpanPhase::Cancelled, attrs([("stopped", json!(true))]));
            return Ok(Some(paused));
        }
        Err(error) => {
            cx.emit.end(span, SpanPhase::Error, attrs([("error", json!(error.report()))]));
            return Err(error);
        }
    };
    progress.record_model_call(&response);
    let filtered = match filter(&response.text, document, &mut run.seen) {
        Ok(filtered) => filtered,
        Err(why) => {
            run.refuse(&document.name, None, RefusalReason::MalformedExtraction, why);
            let attributes = attrs([("refused", json!(RefusalReason::MalformedExtraction.as_str()))]);
            cx.emit.end(span, SpanPhase::Complete, attributes);
            return Ok(None);
        }
    };
    for claim in &filtered.kept {
        cx.emit.emit(EventKind::CitationFound {
            claim: claim.claim.clone(),
            source: claim.source.clone(),
            quote: claim.quote.clone(),
            verified: true,
            location: None,
        });
    }
    for refused in &filtered.refused {
        run.refuse(&document.name, Some(refused.finding.clone()), refused.reason, refused.detail.clone());
    }
    let attributes =
        attrs([("kept", json!(filtered.kept.len())), ("refused", json!(filtered.refused.len()))]);
    run.kept.extend(filtered.kept);
    cx.emit.end(span, SpanPhase::Complete, attributes);
    Ok(None)
}

/// Checks an extraction's worst case (its prompt, plus the most output it may produce, at the
/// model's price) against the per-document caps, and caps its output to fit.
fn check_document(
    cx: &Cx<'_>,
    config: &FindingsConfig,
    request: &mut ModelRequest,
) -> Result<(), (RefusalReason, String)> {
    if config.max_cost_per_document_usd.is_none() && config.max_tokens_per_document.is_none() {
        return Ok(());
    }
    let mut caps = Budget::unlimited();
    caps.max_cost_usd = config.max_cost_per_document_usd;
    caps.max_tokens = config.max_tokens_per_document.map(|n| u64::from(n.get()));
    let mut guard = BudgetGuard::new(caps, Default::default(), 0.0, 0, 0);
    let input = request.estimated_input_tokens();
    let client = cx.member.client_for(&request.model);
    let max_output = u64::from(client.capabilities().max_output_tokens);
    let price = client.price(&request.model);
    guard.before_model_call(request, input, max_output, price).map_err(|exceeded| {
        let reason = match exceeded.kind {
            "tokens" => RefusalReason::DocumentTokenCap,
            _ => RefusalReason::DocumentCostCap,
        };
        (reason, format!("over the per-document cap: {}", exceeded.reason))
    })
}

/// Synthesizes the answer from the kept findings, or refuses; restates the final text inside a
/// `step` span marked `final_answer` and makes it the turn's last message.
async fn conclude(
    cx: &mut Cx<'_>,
    progress: &mut Progress,
    config: &FindingsConfig,
    question: &str,
    mut run: Gathering<'_>,
) -> Result<Ending, RunError> {
    let required = config.min_findings.get();
    let kept = u32::try_from(run.kept.len()).unwrap_or(u32::MAX);
    let budget_note = match run.stopped {
        Some(StopReason::ModelUnavailable) => {
            format!("The model became unavailable: {} document(s) were not read.", run.unread)
        }
        Some(_) => format!("The turn's budget ran out: {} document(s) were not read.", run.unread),
        None => String::new(),
    };
    let text = if kept >= required {
        let listed: Vec<String> = run
            .kept
            .iter()
            .enumerate()
            .map(|(n, c)| format!("{}. {} — \"{}\" ({})", n + 1, c.claim, c.quote, c.source))
            .collect();
        let prompt = format!("Question: {question}\n\nFindings:\n{}", listed.join("\n"));
        let instructions = cx.agent().instructions().trim();
        let system = if instructions.is_empty() {
            SYNTHESIZE_INSTRUCTION.to_owned()
        } else {
            format!("{instructions}\n\n{SYNTHESIZE_INSTRUCTION}")
        };
        let mut request = ModelRequest::new(cx.model_for(ModelRole::Respond), vec![Message::user(prompt)])
            .with_system(system);
        let answer = match model_call(cx, &mut request, progress.model_calls + 1, Purpose::Answer).await? {
            Called::Response(response) => {
                progress.record_model_call(&response);
                response.text.trim().to_owned()
            }
            Called::Stopped(Ending::Done(reason)) => {
                let first = run.stopped.get_or_insert(reason);
                let why = match first {
                    StopReason::ModelUnavailable => "the model is unavailable",
                    _ => "the turn's budget ran out",
                };
                format!("No answer could be written ({why}). The findings:\n{}", listed.join("\n"))
            }
            Called::Stopped(paused) => return Ok(paused),
        };
        let mut parts = vec![answer];
        if !budget_note.is_empty() {
            parts.push(budget_note);
        }
        parts.push(sources_text(&run.kept));
        parts.join("\n\n")
    } else {
        let mut reason = format!(
            "{kept} verified finding(s) from {} document(s) read; {required} required ({})",
            run.kept.iter().map(|c| &c.source).collect::<HashSet<_>>().len(),
            run.tally.summary()
        );
        if !budget_note.is_empty() {
            reason = format!("{reason}. {}", budget_note.trim_end_matches('.'));
        }
        cx.emit.emit(EventKind::EvidenceInsufficient { reason: reason.clone(), verified: kept, required });
        format!("I cannot answer this from the documents: {reason}.")
    };
    let stop_reason = run.stopped.unwrap_or(if kept >= required {
        StopReason::Completed
    } else {
        StopReason::EvidenceInsufficient
    });
    let span = cx.emit.start(
        SpanSubject::Step,
        "findings.answer",
        Some(cx.turn_span),
        attrs([("final_answer", json!(true))]),
    );
    cx.emit.emit(EventKind::TextDelta { text: text.clone() });
    progress.request.messages.truncate(progress.first_new + 1);
    progress.request.messages.push(Message::assistant(text));
    cx.emit.end(span, SpanPhase::Complete, attrs([("kept", json!(kept)), ("required", json!(required))]));
    Ok(Ending::Done(stop_reason))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use kaos_agent::MemoryProfile;
    use kaos_providers::counter_for;

    use super::*;
    use kaos_session::NewItem;

    fn doc(name: &str, text: &str) -> Document {
        Document { name: name.into(), text: text.into() }
    }

    fn reply(findings: &[(&str, &str)]) -> String {
        let findings: Vec<Value> = findings.iter().map(|(f, q)| json!({"finding": f, "quote": q})).collect();
        json!({ "findings": findings }).to_string()
    }

    #[test]
    fn quotes_must_be_verbatim_and_findings_are_kept_once() {
        let a = doc("a.md", "The  bridge opened\nin 1932 after six years.");
        let mut seen = HashSet::new();
        let filtered = filter(
            &reply(&[
                ("It opened in 1932.", "bridge opened in 1932"),
                ("It opened in 1933.", "bridge opened in 1933"),
                ("It  OPENED in 1932.", "after six years"),
                ("Empty.", "  "),
                ("Case matters.", "BRIDGE opened"),
            ]),
            &a,
            &mut seen,
        )
        .unwrap();
        let kept: Vec<&str> = filtered.kept.iter().map(|c| c.claim.as_str()).collect();
        assert_eq!(kept, ["It opened in 1932."]);
        assert_eq!(filtered.kept[0].source, "a.md");
        let refused: Vec<(&str, RefusalReason)> =
            filtered.refused.iter().map(|r| (r.finding.as_str(), r.reason)).collect();
        assert_eq!(
            refused,
            [
                ("It opened in 1933.", RefusalReason::UnverifiedQuote),
                ("It  OPENED in 1932.", RefusalReason::Duplicate),
                ("Empty.", RefusalReason::UnverifiedQuote),
                ("Case matters.", RefusalReason::UnverifiedQuote),
            ]
        );
        // Duplicates are found across documents too.
        let b = doc("b.md", "It opened in 1932, the bridge.");
        let again = filter(&reply(&[("it opened in 1932.", "opened in 1932")]), &b, &mut seen).unwrap();
        assert_eq!((again.kept.len(), again.refused[0].reason), (0, RefusalReason::Duplicate));
    }

    #[test]
    fn fenced_json_is_read_and_anything_else_is_malformed() {
        let a = doc("a.md", "Tolls were abolished in 1990.");
        let fenced = format!("```json\n{}\n```", reply(&[("No tolls.", "Tolls were abolished")]));
        assert_eq!(filter(&fenced, &a, &mut HashSet::new()).unwrap().kept.len(), 1);
        assert_eq!(filter(r#"{"findings": []}"#, &a, &mut HashSet::new()).unwrap(), Filtered::default());
        for bad in ["Tolls went away.", "{}", r#"{"findings": [{"finding": "x"}]}"#] {
            let error = filter(bad, &a, &mut HashSet::new()).unwrap_err();
            assert!(error.starts_with("the extraction was not the required JSON"), "{error}");
        }
    }

    #[test]
    fn documents_are_selected_by_relevance_and_named() {
        let mut memory = SessionMemory::new(&MemoryProfile::default(), counter_for("scripted", "echo"));
        for (name, text) in
            [("a.md", "cats and dogs"), ("b.md", "the bridge opened"), ("c.md", "bridge tolls and bridge")]
        {
            memory
                .add(SectionKind::Documents, NewItem::text(text).with_metadata("name", json!(name)))
                .unwrap();
        }
        memory.add(SectionKind::Documents, NewItem::text("unnamed")).unwrap();
        let docs = documents(&memory);
        assert_eq!(docs[1], doc("b.md", "the bridge opened"));
        assert!(docs[3].name.starts_with("document "), "{}", docs[3].name);
        assert_eq!(select("bridge tolls", &docs, 2), (vec![2, 1], vec![0, 3]));
        assert_eq!(select("bridge", &docs, 10).1, Vec::<usize>::new());
    }

    #[test]
    fn the_tally_counts_refusals_by_reason() {
        assert_eq!(Tally::default().summary(), "nothing was refused");
        let tally = Tally {
            documents: vec![
                RefusalReason::NotRelevantEnough,
                RefusalReason::DocumentCostCap,
                RefusalReason::NotRelevantEnough,
            ],
            findings: vec![RefusalReason::UnverifiedQuote],
        };
        assert_eq!(
            tally.summary(),
            "refused documents: 2 not_relevant_enough, 1 document_cost_cap; refused findings: 1 unverified_quote"
        );
    }
}

//! The research pattern: the model answers with claims, each quoting a document of the
//! session; every quote is checked verbatim against the document held in memory. Unverified
//! claims are dropped; with too few verified ones the turn ends in a typed refusal instead of
//! an unsupported answer.

use kaos_agent::SectionKind;
use kaos_providers::Message;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::emit::{Emitter, OpenSpan, attrs};
use crate::engine::state::Progress;
use crate::events::{EventKind, MemoryEventKind, SpanPhase, SpanSubject};
use kaos_session::StopReason;
use kaos_session::{NewItem, SessionMemory};

/// Added to the system prompt of a research agent.
pub(crate) const INSTRUCTION: &str = "Answer only from the documents above. Reply with JSON only, \
of the form {\"answer\": \"...\", \"claims\": [{\"claim\": \"...\", \"quote\": \"...\", \"source\": \"<document name>\"}]}. \
Every claim needs a quote copied word for word from the named document. If the documents do not \
answer the question, reply with an empty claims list.";

/// The JSON Schema of the answer a research agent asks for.
pub(crate) fn output_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "answer": {"type": "string"},
            "claims": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "claim": {"type": "string"},
                        "quote": {"type": "string"},
                        "source": {"type": "string"}
                    },
                    "required": ["claim", "quote", "source"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["answer", "claims"],
        "additionalProperties": false
    })
}

/// One claim of the model's answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Claim {
    pub(crate) claim: String,
    pub(crate) quote: String,
    pub(crate) source: String,
}

/// A claim and whether its quote was found in its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    pub(crate) claim: Claim,
    pub(crate) verified: bool,
    /// Where the quote was found, for a verified claim: the document's name and, for an
    /// ingested chunk, its page or chunk number ([`location`]).
    pub(crate) location: Option<String>,
}

/// The model's answer, its claims checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verification {
    pub(crate) answer: String,
    pub(crate) claims: Vec<Checked>,
    /// Why the answer could not be read, when it could not.
    pub(crate) malformed: Option<String>,
}

impl Verification {
    pub(crate) fn verified(&self) -> impl Iterator<Item = &Claim> {
        self.claims.iter().filter(|c| c.verified).map(|c| &c.claim)
    }

    pub(crate) fn verified_count(&self) -> u32 {
        u32::try_from(self.verified().count()).unwrap_or(u32::MAX)
    }
}

#[derive(Deserialize)]
struct Answer {
    answer: String,
    #[serde(default)]
    claims: Vec<Claim>,
}

/// Reads the model's JSON answer (bare, or in a code fence) and checks every claim: its quote
/// must appear in the text of the session document named by `source` — verbatim, after
/// collapsing runs of whitespace, case-sensitive. Malformed JSON verifies nothing.
pub(crate) fn verify(text: &str, memory: &SessionMemory) -> Verification {
    let parsed: Result<Answer, _> = serde_json::from_str(json_part(text));
    let answer = match parsed {
        Ok(answer) => answer,
        Err(error) => {
            return Verification {
                answer: String::new(),
                claims: Vec::new(),
                malformed: Some(format!("the answer was not the required JSON ({error})")),
            };
        }
    };
    let documents = memory.section(SectionKind::Documents).items();
    let claims = answer
        .claims
        .into_iter()
        .map(|claim| {
            let quote = normalize(&claim.quote);
            let found = documents.iter().find(|doc| {
                !quote.is_empty()
                    && doc.metadata.get("name").and_then(Value::as_str) == Some(claim.source.as_str())
                    && normalize(&doc.text()).contains(&quote)
            });
            let location = found.map(|doc| location(&claim.source, &doc.metadata));
            Checked { claim, verified: found.is_some(), location }
        })
        .collect();
    Verification { answer: answer.answer, claims, malformed: None }
}

/// Where in a document a quote was found: `name, p. 3`, `name, pp. 3–4` or `name, chunk 2`
/// from an ingested chunk's metadata (`page_first`/`page_last`, `chunk`, 0-based), else the
/// name alone.
pub(crate) fn location(name: &str, metadata: &std::collections::BTreeMap<String, Value>) -> String {
    let number = |key: &str| metadata.get(key).and_then(Value::as_u64);
    match (number("page_first"), number("page_last"), number("chunk")) {
        (Some(first), Some(last), _) if first == last => format!("{name}, p. {first}"),
        (Some(first), Some(last), _) => format!("{name}, pp. {first}–{last}"),
        (_, _, Some(chunk)) => format!("{name}, chunk {}", chunk + 1),
        _ => name.to_owned(),
    }
}

/// The JSON object in a reply: the reply itself, or the inside of a Markdown code fence.
pub(crate) fn json_part(text: &str) -> &str {
    let text = text.trim();
    match (text.find('{'), text.rfind('}')) {
        (Some(start), Some(end)) if start < end && text.starts_with("```") => &text[start..=end],
        _ => text,
    }
}

/// Collapses runs of whitespace to one space and trims.
pub(crate) fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The answer with its sources, as the turn's final text.
pub(crate) fn answer_text(verification: &Verification) -> String {
    let sources: Vec<String> = verification
        .claims
        .iter()
        .filter(|c| c.verified)
        .map(|c| format!("- \"{}\" ({})", c.claim.quote, c.location.as_deref().unwrap_or(&c.claim.source)))
        .collect();
    format!("{}\n\nSources:\n{}", verification.answer.trim(), sources.join("\n"))
}

/// A `Sources:` list, one line per claim: `- "quote" (source)`.
pub(crate) fn sources_text<'a>(claims: impl IntoIterator<Item = &'a Claim>) -> String {
    let sources: Vec<String> =
        claims.into_iter().map(|c| format!("- \"{}\" ({})", c.quote, c.source)).collect();
    format!("Sources:\n{}", sources.join("\n"))
}

/// Adds verified claims to the `findings` section (as [`finding_text`]) and reports them with
/// one `memory` event; returns how many were stored.
pub(crate) fn store_findings<'a>(
    memory: &mut SessionMemory,
    claims: impl IntoIterator<Item = &'a Claim>,
    emit: &Emitter,
) -> usize {
    let mut stored = 0;
    for claim in claims {
        match memory.add(SectionKind::Findings, NewItem::text(finding_text(claim))) {
            Ok(_) => stored += 1,
            Err(error) => tracing::warn!(%error, "a verified claim could not be stored as a finding"),
        }
    }
    if stored > 0 {
        emit.emit(EventKind::Memory {
            kind: MemoryEventKind::Added,
            section: SectionKind::Findings.as_str().to_owned(),
            item_count: stored,
            attributes: Map::new(),
        });
    }
    stored
}

/// A verified claim as a finding.
pub(crate) fn finding_text(claim: &Claim) -> String {
    format!("{} — \"{}\" ({})", claim.claim, claim.quote, claim.source)
}

/// Turns the model's final reply into a verified answer or a typed refusal: checks the
/// claims, reports each (`citation_found`), stores the verified ones as findings, and replaces
/// the reply (the last message of the turn) with the answer and its sources, or with the
/// refusal (`evidence_insufficient`). The text is re-emitted inside a `step` span marked
/// `final_answer`, which the fold treats as the start of the final text.
pub(crate) fn conclude(
    required: u32,
    memory: &mut SessionMemory,
    progress: &mut Progress,
    turn_span: &OpenSpan,
    emit: &Emitter,
) -> StopReason {
    let reply = progress.request.messages.last().map(|m| m.content().to_owned()).unwrap_or_default();
    let span = emit.start(
        SpanSubject::Step,
        "research.verify".to_owned(),
        Some(turn_span),
        attrs([("final_answer", json!(true))]),
    );
    let verification = verify(&reply, memory);
    for checked in &verification.claims {
        emit.emit(EventKind::CitationFound {
            claim: checked.claim.claim.clone(),
            source: checked.claim.source.clone(),
            quote: checked.claim.quote.clone(),
            verified: checked.verified,
            location: checked.location.clone(),
        });
    }
    let verified = verification.verified_count();
    let (text, stop_reason) = if verified >= required {
        store_findings(memory, verification.verified(), emit);
        (answer_text(&verification), StopReason::Completed)
    } else {
        let reason = match &verification.malformed {
            Some(why) => why.clone(),
            None => format!(
                "{verified} of {} claim(s) were supported by a verbatim quote from the cited document; {required} required",
                verification.claims.len()
            ),
        };
        emit.emit(EventKind::EvidenceInsufficient { reason: reason.clone(), verified, required });
        (format!("I cannot answer this from the documents: {reason}."), StopReason::EvidenceInsufficient)
    };
    emit.emit(EventKind::TextDelta { text: text.clone() });
    if let Some(last) = progress.request.messages.last_mut() {
        *last = Message::assistant(text);
    }
    emit.end(
        span,
        SpanPhase::Complete,
        attrs([("verified", json!(verified)), ("required", json!(required))]),
    );
    stop_reason
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use kaos_agent::MemoryProfile;
    use kaos_providers::counter_for;

    use super::*;

    fn memory() -> SessionMemory {
        let mut memory = SessionMemory::new(&MemoryProfile::default(), counter_for("scripted", "echo"));
        let doc = NewItem::text("The  bridge opened\nin 1932 after six years.")
            .with_metadata("name", json!("a.md"));
        memory.add(SectionKind::Documents, doc).unwrap();
        let other = NewItem::text("Tolls were abolished in 1990.").with_metadata("name", json!("b.md"));
        memory.add(SectionKind::Documents, other).unwrap();
        memory
    }

    fn claim(quote: &str, source: &str) -> Claim {
        Claim { claim: "c".into(), quote: quote.into(), source: source.into() }
    }

    fn reply(claims: &[Claim]) -> String {
        let claims: Vec<Value> =
            claims.iter().map(|c| json!({"claim": c.claim, "quote": c.quote, "source": c.source})).collect();
        json!({"answer": "A.", "claims": claims}).to_string()
    }

    #[test]
    fn quotes_are_checked_verbatim_against_the_named_document() {
        let claims = [
            claim("bridge opened in 1932", "a.md"),
            claim("bridge opened in 1933", "a.md"),
            claim("Tolls were abolished", "a.md"),
            claim("BRIDGE opened", "a.md"),
            claim("  ", "a.md"),
            claim("bridge opened", "missing.md"),
        ];
        let verification = verify(&reply(&claims), &memory());
        let expected: Vec<Checked> = claims
            .iter()
            .enumerate()
            // A verified quote points to where it came from: here a document without chunks.
            .map(|(i, c)| Checked {
                claim: c.clone(),
                verified: i == 0,
                location: (i == 0).then(|| "a.md".to_owned()),
            })
            .collect();
        assert_eq!(verification, Verification { answer: "A.".into(), claims: expected, malformed: None });
    }

    #[test]
    fn fenced_json_is_read_and_malformed_json_verifies_nothing() {
        let fenced = format!("```json\n{}\n```", reply(&[claim("Tolls were abolished in 1990.", "b.md")]));
        assert_eq!(verify(&fenced, &memory()).verified_count(), 1);
        let broken = verify("The bridge opened in 1932.", &memory());
        assert_eq!((broken.claims.len(), broken.malformed.is_some()), (0, true));
    }
}

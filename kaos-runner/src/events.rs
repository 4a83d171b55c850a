//! The events of a run: [`Event`], [`EventKind`], [`Span`]s. Protocol data (serde only): what
//! a caller of [`Runner::run`](crate::Runner::run) sees, and what the fold turns into a response.

use std::sync::Arc;

use kaos_providers::Usage;
use kaos_session::{StopReason, ToolCallRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One thing that happened during a run. Every event carries the session, run and agent it
/// belongs to, a sequence number (from 0, per run, without gaps) and a timestamp, and
/// serializes as tagged JSON (`"type": "span"`, `"type": "text_delta"`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// Position in the run, from 0.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The session.
    pub session_id: Arc<str>,
    /// The run (one turn).
    pub run_id: Arc<str>,
    /// The agent's name.
    pub agent: Arc<str>,
    /// The agent's fingerprint.
    pub agent_fingerprint: Arc<str>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// The event as one Server-Sent Events frame (`event:`, `id:`, `data:` lines).
    pub fn to_sse(&self) -> Result<String, serde_json::Error> {
        Ok(format!(
            "event: {}\nid: {}\ndata: {}\n\n",
            self.kind.type_name(),
            self.seq,
            serde_json::to_string(self)?
        ))
    }
}

/// What an [`Event`] reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A unit of work started, progressed, completed or failed.
    Span(Span),
    /// A chunk of the model's answer text.
    TextDelta {
        /// The chunk.
        text: String,
    },
    /// A chunk of the model's visible reasoning.
    ThinkingDelta {
        /// The chunk.
        text: String,
    },
    /// A chunk of a tool call's arguments as the model streams them.
    ToolCallArgsDelta {
        /// Position of the call in the model's response.
        index: usize,
        /// The chunk (JSON text, possibly partial).
        text: String,
    },
    /// One model call's usage and cost.
    UsageObserved {
        /// The model that served the call.
        model: String,
        /// Normalized usage.
        usage: Usage,
        /// Cost in USD; `None` when the model's price is unknown.
        cost_usd: Option<f64>,
        /// Whether `usage` and `cost_usd` are a conservative bound rather than the server's
        /// count: the server reported no usage (or streamed past the output limit and was cut
        /// off), so the call is charged its prompt's bound plus the output limit sent.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        usage_estimated: bool,
    },
    /// A model call failed with a retryable error and is retried after `wait_ms`.
    RetryScheduled {
        /// The model called.
        model: String,
        /// The retry about to be made, from 1.
        attempt: u32,
        /// How long it waits first, in milliseconds.
        wait_ms: u64,
        /// The failure's kind (`rate_limited`, `overloaded`, `transport`).
        reason: String,
        /// The failure's message.
        message: String,
    },
    /// Session memory changed.
    Memory {
        /// What happened.
        kind: MemoryEventKind,
        /// The section (`messages`, …).
        section: String,
        /// How many items.
        item_count: usize,
        /// Details (e.g. the reason for a warning).
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        attributes: Map<String, Value>,
    },
    /// The run failed; the stream ends with the error.
    RunError {
        /// A stable error class.
        error_type: String,
        /// The message.
        message: String,
    },
    /// A permission decision about a tool call (every call the model makes gets one).
    PermissionDecided {
        /// The call id.
        call_id: String,
        /// The tool.
        tool_name: String,
        /// allow, ask or deny.
        decision: kaos_agent::Decision,
        /// What decided it (a rule index, an annotation, a remembered approval, …).
        reason: String,
    },
    /// The run paused: a tool call needs a person's approval. Resume it with
    /// [`Runner::resume`](crate::Runner::resume) and the [`RunState`](crate::RunState) stored at
    /// `run_state_ref`.
    ToolCallApprovalRequired {
        /// The call id.
        call_id: String,
        /// The tool.
        tool_name: String,
        /// The arguments the call would run with.
        arguments: Value,
        /// Why approval is needed.
        reason: String,
        /// Where the run state is stored in the VFS (`runs/{run_id}/state.json`).
        run_state_ref: String,
    },
    /// A paused run continues (the same run id): what it had done before the pause, so the
    /// response folds over the whole turn.
    RunResumed {
        /// Tool calls made before the pause (and a denied pending call).
        tool_calls: Vec<ToolCallRecord>,
        /// Usage before the pause.
        usage: Usage,
        /// Cost before the pause.
        cost_usd: f64,
        /// Unpriced model calls before the pause.
        unpriced_model_calls: u32,
        /// Model calls before the pause.
        model_calls: u32,
        /// The approval given: `approved` or `denied`.
        approval: String,
    },
    /// A budget stopped the turn before it could be exceeded.
    BudgetExceeded {
        /// Which budget: `cost_usd`, `tokens`, `model_calls`, `tool_calls` or `wall_clock_ms`.
        kind: String,
        /// The cap.
        limit: f64,
        /// What was spent when the turn stopped.
        actual: f64,
        /// What would have gone over.
        reason: String,
    },
    /// A circuit breaker opened: the tool or model is withdrawn until its cool-down ends.
    CircuitBreakerTripped {
        /// `tool` or `model`.
        scope: String,
        /// The tool name or `provider:model`.
        name: String,
        /// Consecutive failures that opened it.
        failures: u32,
        /// How long it stays open, in milliseconds.
        cooldown_ms: u64,
    },
    /// A hook failed (returned an error or panicked); what the Runner did about it follows
    /// the hook failure policy.
    HookFailed {
        /// The hook's name.
        hook: String,
        /// Which callback.
        callback: String,
        /// The error or panic message.
        message: String,
        /// Whether the Runner treated it as the most restrictive answer (fail closed).
        closed: bool,
    },
    /// Research pattern: one claim of the model's answer, and whether its quote was found
    /// verbatim (whitespace-normalized) in the cited document.
    CitationFound {
        /// The claim.
        claim: String,
        /// The document it cites (its `name` metadata).
        source: String,
        /// The quote supporting it.
        quote: String,
        /// Whether the quote is in that document. Unverified claims are dropped.
        verified: bool,
        /// Where the quote was found (research): the document's name and, for an ingested
        /// chunk, its page or chunk (`report.pdf, p. 3`, `notes.md, chunk 2`). `None` when
        /// the quote was not found, and for findings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<String>,
    },
    /// Research pattern: too few claims were verified; the turn ends in a refusal.
    EvidenceInsufficient {
        /// Why.
        reason: String,
        /// Claims verified.
        verified: u32,
        /// Claims required (`research.min_verified_claims`).
        required: u32,
    },
    /// Router pattern: the message was classified and the turn goes on with `pattern`.
    IntentClassified {
        /// The chosen pattern (`chat`, `research`, `plan` or `findings`).
        pattern: kaos_agent::Pattern,
        /// `model` (one classification call) or `rules` (keywords, no model call).
        classifier: String,
        /// The model's confidence in `[0, 1]`, when it gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confidence: Option<f64>,
        /// Why this route: the keyword that matched, the model's reason, or why the default
        /// was used.
        reason: String,
    },
    /// Plan pattern: a plan (or a new plan for the remaining work, after a failed step).
    PlanProposed {
        /// 1 for the first plan, 2 for the first replan, …
        revision: u32,
        /// The steps, in order.
        steps: Vec<String>,
        /// Why a replan was made (the failed step and its error); empty for the first plan.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    /// Findings pattern: a document, or one finding of it, was not used, and why.
    FindingRefused {
        /// The document (its `name` metadata).
        source: String,
        /// The finding, when one finding was refused (not the whole document).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        finding: Option<String>,
        /// Why.
        reason: RefusalReason,
        /// Details for a person.
        detail: String,
    },
    /// An event of a sub-agent's run (delegation), forwarded into the parent's stream inside
    /// the `subagent` span. It does not count towards the parent's response: the sub-agent's
    /// cost reaches the parent as one `usage_observed` event when it finishes.
    Subagent {
        /// The delegate's name.
        subagent: String,
        /// The sub-agent's event, as its own run emitted it (its own session, run and numbering).
        event: Box<Event>,
    },
    /// The turn finished.
    TurnSummary {
        /// The turn's number in the session, from 1.
        turn_number: u32,
        /// Why it stopped.
        stop_reason: StopReason,
    },
}

impl EventKind {
    /// The `type` tag this kind serializes with.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::Span(_) => "span",
            EventKind::TextDelta { .. } => "text_delta",
            EventKind::ThinkingDelta { .. } => "thinking_delta",
            EventKind::ToolCallArgsDelta { .. } => "tool_call_args_delta",
            EventKind::UsageObserved { .. } => "usage_observed",
            EventKind::RetryScheduled { .. } => "retry_scheduled",
            EventKind::Memory { .. } => "memory",
            EventKind::RunError { .. } => "run_error",
            EventKind::PermissionDecided { .. } => "permission_decided",
            EventKind::ToolCallApprovalRequired { .. } => "tool_call_approval_required",
            EventKind::RunResumed { .. } => "run_resumed",
            EventKind::BudgetExceeded { .. } => "budget_exceeded",
            EventKind::CircuitBreakerTripped { .. } => "circuit_breaker_tripped",
            EventKind::HookFailed { .. } => "hook_failed",
            EventKind::CitationFound { .. } => "citation_found",
            EventKind::EvidenceInsufficient { .. } => "evidence_insufficient",
            EventKind::IntentClassified { .. } => "intent_classified",
            EventKind::PlanProposed { .. } => "plan_proposed",
            EventKind::FindingRefused { .. } => "finding_refused",
            EventKind::Subagent { .. } => "subagent",
            EventKind::TurnSummary { .. } => "turn_summary",
        }
    }
}

/// Why the findings pattern did not use a document or a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefusalReason {
    /// Beyond `findings.max_documents`: less relevant to the question than those read.
    NotRelevantEnough,
    /// Reading the document could cost more than `findings.max_cost_per_document_usd`.
    DocumentCostCap,
    /// Reading the document could use more than `findings.max_tokens_per_document`.
    DocumentTokenCap,
    /// The turn's budget could not pay for reading the document.
    BudgetExhausted,
    /// The model's extraction was not the required JSON.
    MalformedExtraction,
    /// The finding's quote is not in the document (verbatim, whitespace-normalized).
    UnverifiedQuote,
    /// The same finding was extracted before.
    Duplicate,
    /// The model could not be called to read the document: its circuit breaker is open.
    ModelUnavailable,
}

impl RefusalReason {
    /// Every reason.
    pub const ALL: [RefusalReason; 8] = [
        RefusalReason::NotRelevantEnough,
        RefusalReason::DocumentCostCap,
        RefusalReason::DocumentTokenCap,
        RefusalReason::BudgetExhausted,
        RefusalReason::MalformedExtraction,
        RefusalReason::UnverifiedQuote,
        RefusalReason::Duplicate,
        RefusalReason::ModelUnavailable,
    ];

    /// The snake_case name it serializes as.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::NotRelevantEnough => "not_relevant_enough",
            RefusalReason::DocumentCostCap => "document_cost_cap",
            RefusalReason::DocumentTokenCap => "document_token_cap",
            RefusalReason::BudgetExhausted => "budget_exhausted",
            RefusalReason::MalformedExtraction => "malformed_extraction",
            RefusalReason::UnverifiedQuote => "unverified_quote",
            RefusalReason::Duplicate => "duplicate",
            RefusalReason::ModelUnavailable => "model_unavailable",
        }
    }
}

/// What a memory event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MemoryEventKind {
    /// Items were added.
    Added,
    /// Items were evicted.
    Evicted,
    /// Items were summarized.
    Summarized,
    /// The session was loaded from the VFS.
    Hydrated,
    /// The session was written to the VFS.
    Persisted,
    /// A section was searched.
    Searched,
    /// Something was wrong but recovered from (e.g. a torn last line was dropped).
    Warning,
}

/// A unit of work, reported at its start and end (and optionally in between).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Span {
    /// What kind of work.
    pub subject: SpanSubject,
    /// Where in its life.
    pub phase: SpanPhase,
    /// Unique within the run.
    pub span_id: String,
    /// The enclosing span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    /// A readable name (`turn.3`, `tool.kaos-vfs-read`, `llm.scripted:echo`).
    pub name: String,
    /// On completion or error: how long it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// Subject-specific details.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
}

/// What kind of work a [`Span`] covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SpanSubject {
    /// A whole run.
    Run,
    /// A turn.
    Turn,
    /// A plan step.
    Step,
    /// A tool call.
    ToolCall,
    /// A sub-agent call.
    Subagent,
    /// A handoff.
    Handoff,
    /// A model call.
    LlmCall,
    /// A routing decision.
    Route,
}

/// Where a [`Span`] is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SpanPhase {
    /// Started.
    Start,
    /// Still running, with news.
    Progress,
    /// Finished.
    Complete,
    /// Failed.
    Error,
    /// Stopped before finishing.
    Cancelled,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn refusal_reasons_name_themselves_as_they_serialize() {
        for reason in RefusalReason::ALL {
            assert_eq!(Value::from(reason.as_str()), serde_json::to_value(reason).unwrap());
        }
    }
}

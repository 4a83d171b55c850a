use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kaos_providers::Usage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::mpsc::UnboundedSender;

use crate::response::StopReason;

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
            EventKind::Memory { .. } => "memory",
            EventKind::RunError { .. } => "run_error",
            EventKind::TurnSummary { .. } => "turn_summary",
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

/// Emits the events of one run into the run's channel, stamping the common fields.
#[derive(Debug)]
pub(crate) struct Emitter {
    tx: UnboundedSender<Event>,
    seq: AtomicU64,
    spans: AtomicU64,
    pub(crate) session_id: Arc<str>,
    pub(crate) run_id: Arc<str>,
    agent: Arc<str>,
    agent_fingerprint: Arc<str>,
}

/// A started span, to be completed or failed.
#[derive(Debug)]
pub(crate) struct OpenSpan {
    subject: SpanSubject,
    pub(crate) id: String,
    parent: Option<String>,
    name: String,
    started: Instant,
}

impl Emitter {
    pub(crate) fn new(
        tx: UnboundedSender<Event>,
        session_id: Arc<str>,
        run_id: Arc<str>,
        agent: Arc<str>,
        agent_fingerprint: Arc<str>,
    ) -> Self {
        Self {
            tx,
            seq: AtomicU64::new(0),
            spans: AtomicU64::new(0),
            session_id,
            run_id,
            agent,
            agent_fingerprint,
        }
    }

    pub(crate) fn emit(&self, kind: EventKind) {
        let timestamp_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default();
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            timestamp_ms,
            session_id: self.session_id.clone(),
            run_id: self.run_id.clone(),
            agent: self.agent.clone(),
            agent_fingerprint: self.agent_fingerprint.clone(),
            kind,
        };
        // A dropped receiver means nobody is listening any more; the run itself goes on
        // only as long as its stream is polled, so there is nothing to do here.
        let _ = self.tx.send(event);
    }

    pub(crate) fn start(
        &self,
        subject: SpanSubject,
        name: String,
        parent: Option<&OpenSpan>,
        attributes: Map<String, Value>,
    ) -> OpenSpan {
        let id = format!("s{}", self.spans.fetch_add(1, Ordering::Relaxed) + 1);
        let parent = parent.map(|p| p.id.clone());
        self.emit(EventKind::Span(Span {
            subject,
            phase: SpanPhase::Start,
            span_id: id.clone(),
            parent_span_id: parent.clone(),
            name: name.clone(),
            duration_ms: None,
            attributes,
        }));
        OpenSpan { subject, id, parent, name, started: Instant::now() }
    }

    pub(crate) fn end(&self, span: OpenSpan, phase: SpanPhase, attributes: Map<String, Value>) {
        self.emit(EventKind::Span(Span {
            subject: span.subject,
            phase,
            span_id: span.id,
            parent_span_id: span.parent,
            name: span.name,
            duration_ms: Some(millis(span.started.elapsed())),
            attributes,
        }));
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

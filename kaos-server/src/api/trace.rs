//! A turn's trace: its events as the server saw them stream, stored in the session at
//! `sessions/{id}/traces/{turn}.jsonl`, and read back as a waterfall of spans.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use kaos_runner::{Event, EventKind, SessionId, SpanPhase, SpanSubject};
use kaos_vfs::{Vfs, VfsPath};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::ApiError;

fn trace_path(session: &SessionId, turn: u32) -> Result<VfsPath, ApiError> {
    kaos_session::traces_dir(session)
        .and_then(|dir| Ok(dir.join(&format!("{turn}.jsonl"))?))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Writes a run's events (without the text chunks) to its turn's trace file: when the turn
/// finishes (before its summary reaches the client) or pauses. A fresh run replaces what a
/// run that paused and was never resumed left for the same turn number; a resumed run adds to
/// its turn's file. A run cancelled midway writes nothing, like the turn itself.
pub(crate) struct Recorder {
    vfs: Arc<dyn Vfs>,
    session: SessionId,
    append: bool,
    turn: Option<u32>,
    lines: String,
}

impl Recorder {
    /// For a new turn.
    pub(crate) fn fresh(vfs: Arc<dyn Vfs>, session: SessionId) -> Self {
        Self { vfs, session, append: false, turn: None, lines: String::new() }
    }

    /// For a resumed run of turn `turn`.
    pub(crate) fn resumed(vfs: Arc<dyn Vfs>, session: SessionId, turn: u32) -> Self {
        Self { vfs, session, append: true, turn: Some(turn), lines: String::new() }
    }

    pub(crate) async fn observe(&mut self, event: &Event) {
        let kept = match &event.kind {
            EventKind::TextDelta { .. }
            | EventKind::ThinkingDelta { .. }
            | EventKind::ToolCallArgsDelta { .. } => false,
            EventKind::Subagent { event, .. } => !matches!(
                event.kind,
                EventKind::TextDelta { .. }
                    | EventKind::ThinkingDelta { .. }
                    | EventKind::ToolCallArgsDelta { .. }
            ),
            EventKind::Span(span) if span.subject == SpanSubject::Turn && span.phase == SpanPhase::Start => {
                if self.turn.is_none() {
                    self.turn = span
                        .attributes
                        .get("turn_number")
                        .and_then(Value::as_u64)
                        .and_then(|n| u32::try_from(n).ok());
                }
                true
            }
            _ => true,
        };
        if kept && let Ok(line) = serde_json::to_string(event) {
            self.lines.push_str(&line);
            self.lines.push('\n');
        }
        match &event.kind {
            EventKind::TurnSummary { turn_number, .. } => {
                self.turn = Some(*turn_number);
                self.flush().await;
            }
            EventKind::ToolCallApprovalRequired { .. } => self.flush().await,
            _ => {}
        }
    }

    async fn flush(&mut self) {
        let Some(turn) = self.turn else { return };
        if self.lines.is_empty() {
            return;
        }
        let data = Bytes::from(std::mem::take(&mut self.lines));
        let written = match trace_path(&self.session, turn) {
            Ok(path) if self.append => self.vfs.append(&path, data).await.map_err(|e| e.to_string()),
            Ok(path) => self.vfs.write(&path, data).await.map_err(|e| e.to_string()),
            Err(e) => Err(format!("{e:?}")),
        };
        if let Err(error) = written {
            tracing::warn!(session = %self.session, turn, %error, "cannot store the turn's trace");
        }
        self.append = true;
    }
}

/// One span of a turn's waterfall.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TraceSpan {
    /// Unique within the run.
    pub span_id: String,
    /// The enclosing span.
    pub parent_span_id: Option<String>,
    /// `turn`, `llm_call`, `tool_call`, `subagent`, `handoff`, `step`, `route` or `run`.
    pub subject: String,
    /// A readable name (`tool.delete_file`, `llm.scripted:echo`).
    pub name: String,
    /// `complete`, `error`, `cancelled`, or `running` when no end was recorded.
    pub status: String,
    /// Depth under the turn (0 for the turn itself).
    pub depth: u32,
    /// When it started, in milliseconds after the turn started.
    pub offset_ms: f64,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
    /// Input tokens of the model calls it made (cached input included).
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost in USD of what it spent (model calls; a sub-agent's whole run).
    pub cost_usd: f64,
    /// The span's details (tool name and arguments, the model, the result, …).
    #[schema(value_type = Object)]
    pub attributes: Value,
}

/// A turn's trace: its spans in start order, with totals.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Trace {
    /// The session.
    pub session_id: String,
    /// The turn's number.
    pub turn: u32,
    /// The run.
    pub run_id: String,
    /// When the turn started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// From the first event to the last, in milliseconds.
    pub duration_ms: f64,
    /// Cost in USD of the turn.
    pub cost_usd: f64,
    /// Input tokens of the turn.
    pub input_tokens: u64,
    /// Output tokens of the turn.
    pub output_tokens: u64,
    /// Spans, parents before children, in start order.
    pub spans: Vec<TraceSpan>,
}

/// Reads the stored trace of `session`'s turn `turn`; `None` when none was stored.
pub(crate) async fn read(
    vfs: &Arc<dyn Vfs>,
    session: &SessionId,
    turn: u32,
) -> Result<Option<Vec<Event>>, ApiError> {
    let path = trace_path(session, turn)?;
    let bytes = match vfs.read(&path).await {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(ApiError::internal(e.to_string())),
    };
    let text = String::from_utf8_lossy(&bytes);
    // A torn last line (a crash mid-append) is left out.
    Ok(Some(text.lines().filter_map(|line| serde_json::from_str::<Event>(line).ok()).collect()))
}

fn subject_name(subject: SpanSubject) -> String {
    serde_json::to_value(subject).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Folds a turn's events into its waterfall.
pub(crate) fn waterfall(session_id: String, turn: u32, events: &[Event]) -> Trace {
    let started = events.first().map(|e| e.timestamp_ms).unwrap_or_default();
    let ended = events.last().map(|e| e.timestamp_ms).unwrap_or_default();
    let mut spans: Vec<TraceSpan> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    // Open spans, innermost last: a usage event belongs to the innermost open model call or
    // sub-agent.
    let mut open: Vec<String> = Vec::new();
    let mut totals = (0.0, 0u64, 0u64);
    for event in events {
        match &event.kind {
            EventKind::Span(span) => match span.phase {
                SpanPhase::Start => {
                    let depth = span
                        .parent_span_id
                        .as_ref()
                        .and_then(|p| index.get(p))
                        .and_then(|&i| spans.get(i))
                        .map_or(0, |parent| parent.depth + 1);
                    index.insert(span.span_id.clone(), spans.len());
                    open.push(span.span_id.clone());
                    spans.push(TraceSpan {
                        span_id: span.span_id.clone(),
                        parent_span_id: span.parent_span_id.clone(),
                        subject: subject_name(span.subject),
                        name: span.name.clone(),
                        status: "running".into(),
                        depth,
                        offset_ms: event.timestamp_ms.saturating_sub(started) as f64,
                        duration_ms: ended.saturating_sub(event.timestamp_ms) as f64,
                        input_tokens: 0,
                        output_tokens: 0,
                        cost_usd: 0.0,
                        attributes: Value::Object(span.attributes.clone()),
                    });
                }
                SpanPhase::Progress => {}
                SpanPhase::Complete | SpanPhase::Error | SpanPhase::Cancelled => {
                    open.retain(|id| *id != span.span_id);
                    if let Some(found) = index.get(&span.span_id).and_then(|&i| spans.get_mut(i)) {
                        found.status = subject_name_phase(span.phase);
                        if let Some(ms) = span.duration_ms {
                            found.duration_ms = ms;
                        }
                        if let (Value::Object(into), false) =
                            (&mut found.attributes, span.attributes.is_empty())
                        {
                            into.extend(span.attributes.clone());
                        }
                    }
                }
                _ => {}
            },
            EventKind::UsageObserved { usage, cost_usd, .. } => {
                let input = usage.input_tokens + usage.cached_input_tokens;
                let cost = cost_usd.unwrap_or(0.0);
                totals.0 += cost;
                totals.1 += input;
                totals.2 += usage.output_tokens;
                let owner = open.iter().rev().find_map(|id| {
                    let &i = index.get(id)?;
                    let s = spans.get(i)?;
                    (s.subject == "llm_call" || s.subject == "subagent").then_some(i)
                });
                if let Some(span) = owner
                    .or_else(|| open.first().and_then(|id| index.get(id).copied()))
                    .and_then(|i| spans.get_mut(i))
                {
                    span.cost_usd += cost;
                    span.input_tokens += input;
                    span.output_tokens += usage.output_tokens;
                }
            }
            _ => {}
        }
    }
    Trace {
        session_id,
        turn,
        run_id: events.first().map(|e| e.run_id.to_string()).unwrap_or_default(),
        started_at_ms: started,
        duration_ms: ended.saturating_sub(started) as f64,
        cost_usd: totals.0,
        input_tokens: totals.1,
        output_tokens: totals.2,
        spans,
    }
}

fn subject_name_phase(phase: SpanPhase) -> String {
    serde_json::to_value(phase).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

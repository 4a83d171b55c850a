//! [`TurnResponse`], what a turn produced, and [`fold`]: the response computed from a run's
//! events and nothing else (`Runner::turn` is `fold(Runner::run)`).

use std::sync::Arc;

use futures::{Stream, StreamExt};
use kaos_providers::Usage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::approval::PendingApproval;
use crate::error::RunError;
use crate::events::{Event, EventKind, SpanPhase, SpanSubject};

pub use kaos_session::{StopReason, ToolCallRecord};

/// The outcome of one turn: the fold of its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TurnResponse {
    /// The final answer (the text of the last model call).
    pub text: String,
    /// Why the turn stopped.
    pub stop_reason: StopReason,
    /// Tool calls, in the order they were made.
    pub tool_calls: Vec<ToolCallRecord>,
    /// Usage summed over every model call of the turn.
    pub usage: Usage,
    /// Cost in USD summed over every priced model call.
    pub cost_usd: f64,
    /// Model calls whose price was unknown (their cost is not in `cost_usd`).
    pub unpriced_model_calls: u32,
    /// Model calls made.
    pub model_calls: u32,
    /// The turn's number in its session, from 1.
    pub turn_number: u32,
    /// The run id.
    pub run_id: Arc<str>,
    /// The session.
    pub session_id: Arc<str>,
    /// The fingerprint of the agent that ended the turn.
    pub agent_fingerprint: Arc<str>,
    /// The name of the agent that ended the turn: the Runner's agent, or the agent the
    /// conversation was handed to.
    pub agent: Arc<str>,
    /// When the turn paused for approval: the pending call (its run state is stored at
    /// `runs/{run_id}/state.json`; see [`Runner::run_state`](crate::Runner::run_state)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_approval: Option<PendingApproval>,
}

/// Folds a run's events into its [`TurnResponse`]: the one function behind
/// [`Runner::turn`](crate::Runner::turn), so the response and the events never disagree.
///
/// Returns the run's error if the stream ends with one, and [`RunError::IncompleteRun`] if it ends
/// without a `TurnSummary` (a stream that was not a whole run).
pub async fn fold<S>(events: S) -> Result<TurnResponse, RunError>
where
    S: Stream<Item = Result<Event, RunError>>,
{
    let mut folder = TurnFold::default();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        folder.push(&event?);
    }
    folder.finish().ok_or(RunError::IncompleteRun)
}

/// One attribute of a span as [`TurnFold`] reads it: borrowed from an event's attribute map, or
/// from the typed attributes an emitter folds without building the map.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Attr<'a> {
    Str(&'a str),
    Bool(bool),
    U64(u64),
    Json(&'a Value),
}

impl<'a> Attr<'a> {
    pub(crate) fn as_str(self) -> Option<&'a str> {
        match self {
            Attr::Str(s) => Some(s),
            Attr::Json(v) => v.as_str(),
            _ => None,
        }
    }

    pub(crate) fn as_bool(self) -> Option<bool> {
        match self {
            Attr::Bool(b) => Some(b),
            Attr::Json(v) => v.as_bool(),
            _ => None,
        }
    }

    pub(crate) fn as_u64(self) -> Option<u64> {
        match self {
            Attr::U64(n) => Some(n),
            Attr::Json(v) => v.as_u64(),
            _ => None,
        }
    }

    /// The attribute as a JSON value (what the event's attribute map holds).
    pub(crate) fn to_value(self) -> Value {
        match self {
            Attr::Str(s) => Value::String(s.to_owned()),
            Attr::Bool(b) => Value::Bool(b),
            Attr::U64(n) => Value::from(n),
            Attr::Json(v) => v.clone(),
        }
    }
}

/// A span's attributes: what [`TurnFold::push_span`] reads, and the map a span event carries.
/// An event's map is one; the emitter's typed attributes of hot spans (a tool call's, a model
/// call's) are others, read by the fold as they are and made into the map only when a stream or
/// hooks see the span.
pub(crate) trait SpanAttrs {
    /// The attribute named `key`, if set. A typed set answers at least every key the fold reads
    /// (the emitter's tests check that it folds like its map).
    fn attr(&self, key: &str) -> Option<Attr<'_>>;
    /// The attributes as a span event carries them.
    fn into_map(self) -> Map<String, Value>
    where
        Self: Sized;
}

/// Pairs (`[("turn_number", json!(n))]`): no map, no key strings and no tree nodes when only
/// the fold reads them.
impl<const N: usize> SpanAttrs for [(&'static str, Value); N] {
    fn attr(&self, key: &str) -> Option<Attr<'_>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| Attr::Json(v))
    }

    fn into_map(self) -> Map<String, Value> {
        self.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

impl SpanAttrs for Map<String, Value> {
    fn attr(&self, key: &str) -> Option<Attr<'_>> {
        self.get(key).map(Attr::Json)
    }

    fn into_map(self) -> Map<String, Value> {
        self
    }
}

/// The incremental form of [`fold`], for callers that also act on each event (e.g. print
/// text as it streams).
#[derive(Debug, Default, Clone)]
pub struct TurnFold {
    text: String,
    tool_calls: Vec<ToolCallRecord>,
    /// Tool call spans started and not ended yet: span id, index in `tool_calls` (a few at a
    /// time, so a list).
    open_calls: Vec<(String, usize)>,
    usage: Usage,
    cost_usd: f64,
    unpriced: u32,
    model_calls: u32,
    turn_number: u32,
    summary: Option<(u32, StopReason)>,
    ids: Option<(Arc<str>, Arc<str>)>,
    agent: Option<(Arc<str>, Arc<str>)>,
    pending: Option<PendingApproval>,
}

impl TurnFold {
    /// Takes one event into account.
    pub fn push(&mut self, event: &Event) {
        self.note(&event.run_id, &event.session_id, (&event.agent, &event.agent_fingerprint));
        self.push_kind(&event.kind);
    }

    /// Notes the run, session and agent of an event (for an emitter that folds events without
    /// building them, with [`TurnFold::push_kind`] and [`TurnFold::push_span`]).
    pub(crate) fn note(
        &mut self,
        run_id: &Arc<str>,
        session_id: &Arc<str>,
        (agent, fingerprint): (&Arc<str>, &Arc<str>),
    ) {
        if self.ids.is_none() {
            self.ids = Some((run_id.clone(), session_id.clone()));
        }
        // The agent that ends the turn (a handoff changes it).
        if self.agent.as_ref().is_none_or(|(_, held)| !Arc::ptr_eq(held, fingerprint) && held != fingerprint)
        {
            self.agent = Some((agent.clone(), fingerprint.clone()));
        }
    }

    /// Whether the fold reads events of this kind (what [`TurnFold::push_kind`] does not
    /// ignore): the others need not be built when only the fold wants a run's events.
    pub(crate) fn folds(kind: &EventKind) -> bool {
        matches!(
            kind,
            EventKind::Span(_)
                | EventKind::TextDelta { .. }
                | EventKind::UsageObserved { .. }
                | EventKind::TurnSummary { .. }
                | EventKind::RunResumed { .. }
                | EventKind::ToolCallApprovalRequired { .. }
        )
    }

    /// [`TurnFold::push_kind`] of an event the fold may keep parts of: the first text of a
    /// model call is kept as it is rather than copied.
    pub(crate) fn push_owned(&mut self, kind: EventKind) {
        match kind {
            EventKind::TextDelta { text } if self.text.is_empty() => self.text = text,
            kind => self.push_kind(&kind),
        }
    }

    /// Folds what an event reports. A kind read here must be one [`TurnFold::folds`] names.
    pub(crate) fn push_kind(&mut self, kind: &EventKind) {
        match kind {
            EventKind::Span(span) => {
                self.push_span(span.subject, span.phase, &span.span_id, &span.attributes)
            }
            EventKind::TextDelta { text } => {
                if self.text.capacity() == 0 {
                    // Room for a typical answer at once, rather than growing word by word.
                    self.text.reserve(256.max(text.len()));
                }
                self.text.push_str(text)
            }
            EventKind::UsageObserved { usage, cost_usd, .. } => self.push_usage(*usage, *cost_usd),
            EventKind::TurnSummary { turn_number, stop_reason } => {
                self.summary = Some((*turn_number, *stop_reason))
            }
            EventKind::RunResumed {
                tool_calls, usage, cost_usd, unpriced_model_calls, model_calls, ..
            } => {
                self.tool_calls = tool_calls.clone();
                self.usage = *usage;
                self.cost_usd = *cost_usd;
                self.unpriced = *unpriced_model_calls;
                self.model_calls = *model_calls;
            }
            EventKind::ToolCallApprovalRequired { call_id, tool_name, arguments, reason, .. } => {
                self.pending = Some(PendingApproval {
                    call_id: call_id.clone(),
                    tool_name: tool_name.clone(),
                    arguments: arguments.clone(),
                    reason: reason.clone(),
                });
            }
            _ => {}
        }
    }

    /// Folds one model call's usage (a `usage_observed` event).
    pub(crate) fn push_usage(&mut self, usage: Usage, cost_usd: Option<f64>) {
        self.usage += usage;
        match cost_usd {
            Some(cost) => self.cost_usd += cost,
            None => self.unpriced += 1,
        }
    }

    /// The response as if the turn ended now with `stop_reason`.
    pub(crate) fn finish_as(mut self, turn_number: u32, stop_reason: StopReason) -> Option<TurnResponse> {
        self.summary = Some((turn_number, stop_reason));
        self.finish()
    }

    /// Folds a span's start or end.
    pub(crate) fn push_span<A: SpanAttrs + ?Sized>(
        &mut self,
        subject: SpanSubject,
        phase: SpanPhase,
        span_id: &str,
        attributes: &A,
    ) {
        let flag = |k: &str| attributes.attr(k).and_then(Attr::as_bool) == Some(true);
        let text = |k: &str| attributes.attr(k).and_then(Attr::as_str).unwrap_or_default().to_owned();
        match (subject, phase) {
            // A pattern's internal call (classify, plan, extract) streams no text.
            (SpanSubject::LlmCall, SpanPhase::Start) if !flag("internal") => {
                self.text.clear();
            }
            // A call that failed (and fell back to another model) is not a model call made.
            (SpanSubject::LlmCall, SpanPhase::Complete) => self.model_calls += 1,
            (SpanSubject::ToolCall, SpanPhase::Start) => {
                self.open_calls.push((span_id.to_owned(), self.tool_calls.len()));
                self.tool_calls.push(ToolCallRecord {
                    call_id: text("call_id"),
                    name: text("tool_name"),
                    arguments: attributes.attr("arguments").map(Attr::to_value).unwrap_or(Value::Null),
                    result: String::new(),
                    is_error: false,
                });
            }
            (SpanSubject::ToolCall, SpanPhase::Complete | SpanPhase::Error) => {
                let open = self.open_calls.iter().position(|(id, _)| id == span_id);
                if let Some((_, i)) = open.map(|at| self.open_calls.swap_remove(at))
                    && let Some(record) = self.tool_calls.get_mut(i)
                {
                    record.result = text("result");
                    record.is_error = phase == SpanPhase::Error || flag("is_error");
                }
            }
            // A step marked `final_answer` (the research pattern's verification) restates
            // the final text.
            (SpanSubject::Step, SpanPhase::Start) if flag("final_answer") => {
                self.text.clear();
            }
            (SpanSubject::Turn, SpanPhase::Start) => {
                let n = attributes.attr("turn_number").and_then(Attr::as_u64).unwrap_or_default();
                self.turn_number = u32::try_from(n).unwrap_or(u32::MAX);
            }
            _ => {}
        }
    }

    /// The response, once a `TurnSummary` was seen.
    pub fn finish(self) -> Option<TurnResponse> {
        let (turn_number, stop_reason) = self.summary?;
        let (run_id, session_id) = self.ids?;
        let (agent, agent_fingerprint) = self.agent?;
        Some(TurnResponse {
            text: self.text,
            stop_reason,
            tool_calls: self.tool_calls,
            usage: self.usage,
            cost_usd: self.cost_usd,
            unpriced_model_calls: self.unpriced,
            model_calls: self.model_calls,
            turn_number,
            run_id,
            session_id,
            agent_fingerprint,
            agent,
            pending_approval: self.pending,
        })
    }
}

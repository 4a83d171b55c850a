use std::collections::HashMap;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kaos_providers::Usage;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pause::PendingApproval;
use crate::{Event, EventKind, RunError, SpanPhase, SpanSubject};

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
/// Returns the run's error if the stream ends with one, and [`RunError::Config`] if it ends
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
    folder.finish().ok_or_else(|| RunError::Config("the event stream ended without a turn summary".into()))
}

/// The incremental form of [`fold`], for callers that also act on each event (e.g. print
/// text as it streams).
#[derive(Debug, Default, Clone)]
pub struct TurnFold {
    text: String,
    tool_calls: Vec<ToolCallRecord>,
    open_calls: HashMap<String, usize>,
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
        if self.ids.is_none() {
            self.ids = Some((event.run_id.clone(), event.session_id.clone()));
        }
        // The agent that ends the turn (a handoff changes it).
        if self.agent.as_ref().is_none_or(|(_, fingerprint)| *fingerprint != event.agent_fingerprint) {
            self.agent = Some((event.agent.clone(), event.agent_fingerprint.clone()));
        }
        match &event.kind {
            EventKind::Span(span) => match (span.subject, span.phase) {
                // A pattern's internal call (classify, plan, extract) streams no text.
                (SpanSubject::LlmCall, SpanPhase::Start)
                    if span.attributes.get("internal") != Some(&Value::Bool(true)) =>
                {
                    self.text.clear();
                }
                // A call that failed (and fell back to another model) is not a model call made.
                (SpanSubject::LlmCall, SpanPhase::Complete) => self.model_calls += 1,
                (SpanSubject::ToolCall, SpanPhase::Start) => {
                    let attr = |k: &str| span.attributes.get(k).cloned().unwrap_or(Value::Null);
                    self.open_calls.insert(span.span_id.clone(), self.tool_calls.len());
                    self.tool_calls.push(ToolCallRecord {
                        call_id: attr("call_id").as_str().unwrap_or_default().to_owned(),
                        name: attr("tool_name").as_str().unwrap_or_default().to_owned(),
                        arguments: attr("arguments"),
                        result: String::new(),
                        is_error: false,
                    });
                }
                (SpanSubject::ToolCall, SpanPhase::Complete | SpanPhase::Error) => {
                    if let Some(record) =
                        self.open_calls.remove(&span.span_id).and_then(|i| self.tool_calls.get_mut(i))
                    {
                        let attrs = &span.attributes;
                        record.result =
                            attrs.get("result").and_then(Value::as_str).unwrap_or_default().to_owned();
                        record.is_error = span.phase == SpanPhase::Error
                            || attrs.get("is_error").and_then(Value::as_bool).unwrap_or(false);
                    }
                }
                // A step marked `final_answer` (the research pattern's verification) restates
                // the final text.
                (SpanSubject::Step, SpanPhase::Start)
                    if span.attributes.get("final_answer") == Some(&Value::Bool(true)) =>
                {
                    self.text.clear();
                }
                (SpanSubject::Turn, SpanPhase::Start) => {
                    let n = span.attributes.get("turn_number").and_then(Value::as_u64).unwrap_or_default();
                    self.turn_number = u32::try_from(n).unwrap_or(u32::MAX);
                }
                _ => {}
            },
            EventKind::TextDelta { text } => self.text.push_str(text),
            EventKind::UsageObserved { usage, cost_usd, .. } => {
                self.usage += *usage;
                match cost_usd {
                    Some(cost) => self.cost_usd += cost,
                    None => self.unpriced += 1,
                }
            }
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

    /// The response as if the turn ended now with `stop_reason`.
    pub(crate) fn finish_as(mut self, turn_number: u32, stop_reason: StopReason) -> Option<TurnResponse> {
        self.summary = Some((turn_number, stop_reason));
        self.finish()
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

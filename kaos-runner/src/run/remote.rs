//! Remote delegates (feature `a2a`): a `[[delegates]]` entry with `a2a = "https://…"` is an
//! agent called over the Agent2Agent protocol with `kaos_a2a::client`.
//!
//! The call is admitted like any delegate's (`engine/admit.rs`: policy, hooks, depth, its own
//! circuit breaker, budget). It sends the task as a message — streamed when the agent's card
//! says it streams — and follows the remote task: text it streams is forwarded wrapped in
//! `subagent` events (`text_delta`, and a `subagent` span for each state it reports), like a
//! local sub-agent's; a stream that ends before the task does is followed up once with
//! `GetTask`, then `SubscribeToTask`. Each event must be about the one task the call started (or continues).
//! When the task completes, its artifacts' text (else its last message) is the tool result;
//! failed, rejected or canceled is an error result. `input-required` pauses the parent run for
//! a person (the question is the pause's reason); resuming sends the answer as the follow-up
//! message of the same remote task, which goes on. Usage and cost the remote reports in
//! metadata (`kaos_a2a::kaos`) are charged to the parent's budget; a remote that reports none
//! is an unpriced call. The call is bounded by what is left of the turn's wall-clock budget;
//! a remote task still running when it runs out is canceled (`CancelTask`).
//! Any failure — unreachable, an HTTP error, an answer the protocol does not allow — is an
//! error result naming the delegate, counted by its breaker: the parent run goes on.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use kaos_a2a::client::{A2aClient, ClientError};
use kaos_a2a::{
    Message, Metadata, Part, Role, SendMessageRequest, SendMessageResponse, StreamResponse, TaskState,
};
use kaos_agent::Delegate;
use kaos_providers::Usage;
use kaos_tools::ToolResult;
use serde_json::{Map, Value, json};

use crate::approval::Approval;
use crate::emit::{OpenSpan, attrs};
use crate::engine::state::{Progress, RemoteTask};
use crate::engine::{Cx, Delegated};
use crate::error::RunError;
use crate::events::{Event, EventKind, Span, SpanPhase, SpanSubject};

/// Most characters of the remote's answer in the span's `result_summary`.
const SUMMARY_CHARS: usize = 200;

/// How long canceling a remote task that ran out of time may take.
const CANCEL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Calls the remote agent of `delegate` for the call `call_id`: a new task with `task`, or
/// the answer to the question its task asked before the run paused.
pub(super) async fn call(
    cx: &mut Cx<'_>,
    progress: &mut Progress,
    delegate: &Delegate,
    call_id: &str,
    task: &str,
    tool_span: &OpenSpan,
) -> Delegated {
    let name = delegate.name.as_str();
    let Some(client) = cx.member.remotes.get(name).cloned() else {
        return Delegated::Done(ToolResult::error(format!("The remote agent `{name}` is not prepared.")));
    };
    let continuing = progress.remote.remove(call_id);
    let span = cx.emit.start(
        SpanSubject::Subagent,
        format_args!("subagent.{name}"),
        Some(tool_span),
        attrs([("subagent_name", json!(name)), ("task", json!(task)), ("a2a_url", json!(client.base_url()))]),
    );
    let request = match &continuing {
        Some(remote) => SendMessageRequest::new(follow_up(remote)),
        None => {
            let mut request =
                SendMessageRequest::new(Message::new(new_id(), Role::User, vec![Part::text(task)]));
            // What is left of the parent's cost cap travels as the remote turn's cap (KAOS
            // peers honour `metadata.kaos.max_cost_usd`; others ignore it).
            if let Some(left) = cx.budget.remaining().max_cost_usd.filter(|left| *left > 0.0) {
                let mut metadata = Metadata::new();
                metadata.insert(
                    kaos_a2a::kaos::METADATA_KEY.to_owned(),
                    json!({ kaos_a2a::kaos::MAX_COST_USD: left }),
                );
                request.metadata = Some(metadata);
            }
            request
        }
    };
    let expected = continuing.as_ref().map(|r| r.task_id.clone());
    let mut remote = Remote { cx, name, client: &client, tracker: Tracker::new(expected), seq: 0 };
    let exchanged = match remote.cx.budget.time_left() {
        Some(left) => match tokio::time::timeout(left, remote.exchange(request)).await {
            Ok(exchanged) => exchanged,
            Err(_) => {
                // Out of time: the remote task is canceled, so it does not go on unseen.
                if let Some(id) = remote.tracker.task_id.as_deref() {
                    let _ = tokio::time::timeout(CANCEL_TIMEOUT, client.cancel_task(id)).await;
                }
                Err("the turn's wall-clock budget ran out while the remote agent worked; its task was canceled".into())
            }
        },
        None => remote.exchange(request).await,
    };
    let tracker = remote.tracker;
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| RunError::RemoteDelegate {
        delegate: name.to_owned(),
        source,
    };
    let outcome = exchanged.map_err(failed);

    // The breaker counts the remote's failures, not its refusals of this request.
    let remote_failure = match &outcome {
        Err(RunError::RemoteDelegate { source, .. }) => {
            source.downcast_ref::<ClientError>().is_none_or(ClientError::is_remote_failure)
        }
        _ => false,
    };
    let tripped = cx.member.breakers.record(name, !remote_failure);
    cx.tripped("tool", name, tripped);
    let base = continuing.as_ref().map_or((Usage::default(), 0.0), |r| (r.charged_usage, r.charged_cost_usd));
    let (charged_usage, charged_cost_usd) = charge(cx, progress, name, &tracker, base);

    let (phase, delegated, summary) = match outcome {
        Err(error) => {
            let text = error.report();
            (SpanPhase::Error, Delegated::Done(ToolResult::error(text.clone())), text)
        }
        Ok(()) => match tracker.state {
            TaskState::InputRequired => {
                let question = tracker.question();
                progress.remote.insert(
                    call_id.to_owned(),
                    RemoteTask {
                        delegate: name.to_owned(),
                        task_id: tracker.task_id.clone().unwrap_or_default(),
                        context_id: tracker.context_id.clone().unwrap_or_default(),
                        question: question.clone(),
                        answer: None,
                        charged_usage,
                        charged_cost_usd,
                    },
                );
                let reason = format!("the remote agent `{name}` asks: {question}");
                (SpanPhase::Complete, Delegated::Paused(reason.clone()), reason)
            }
            TaskState::Completed => {
                let text = tracker.answer();
                let summary = text.chars().take(SUMMARY_CHARS).collect();
                (SpanPhase::Complete, Delegated::Done(ToolResult::text(text)), summary)
            }
            state => {
                let text = format!("The remote agent stopped ({}): {}", state_name(state), tracker.answer());
                (SpanPhase::Complete, Delegated::Done(ToolResult::error(text.clone())), text)
            }
        },
    };
    let mut attributes = attrs([
        ("subagent_name", json!(name)),
        ("task", json!(task)),
        ("result_summary", json!(summary)),
        ("state", json!(state_name(tracker.state))),
    ]);
    if let Some(id) = &tracker.task_id {
        attributes.insert("task_id".to_owned(), json!(id));
    }
    cx.emit.end(span, phase, attributes);
    delegated
}

/// The answer to a remote task's question, as its follow-up message.
fn follow_up(remote: &RemoteTask) -> Message {
    let approval = remote.answer.clone().unwrap_or_else(|| Approval::deny("no answer was given"));
    let text = match &approval {
        Approval::Deny { reason } => format!("deny: {reason}"),
        _ => "approve".to_owned(),
    };
    let mut message = Message::new(new_id(), Role::User, vec![Part::text(text)]);
    message.task_id = Some(remote.task_id.clone());
    message.context_id = Some(remote.context_id.clone());
    let mut metadata = Metadata::new();
    metadata.insert(
        kaos_a2a::kaos::METADATA_KEY.to_owned(),
        json!({ kaos_a2a::kaos::APPROVAL: serde_json::to_value(&approval).unwrap_or(Value::Null) }),
    );
    message.metadata = Some(metadata);
    message
}

/// Charges what the remote reported (usage and cost, in metadata) to the turn, less what was
/// charged before a pause (`base`: a remote reports the whole task's so far). Returns the
/// task's totals charged.
fn charge(
    cx: &mut Cx<'_>,
    progress: &mut Progress,
    name: &str,
    tracker: &Tracker,
    base: (Usage, f64),
) -> (Usage, f64) {
    let (base_usage, base_cost) = base;
    if tracker.task_id.is_none() && tracker.direct.is_none() {
        return base; // Nothing was answered: nothing was spent that we know of.
    }
    let total_usage = tracker.usage.unwrap_or(base_usage);
    let usage = Usage::new(
        total_usage.input_tokens.saturating_sub(base_usage.input_tokens),
        total_usage.output_tokens.saturating_sub(base_usage.output_tokens),
    )
    .with_cached_input(total_usage.cached_input_tokens.saturating_sub(base_usage.cached_input_tokens))
    .with_reasoning(total_usage.reasoning_tokens.saturating_sub(base_usage.reasoning_tokens));
    let cost = tracker.cost_usd.map(|total| (total - base_cost).max(0.0));
    cx.budget.record_model_call(&usage, cost);
    progress.usage += usage;
    match cost {
        Some(cost) => progress.cost_usd += cost,
        None => progress.unpriced_model_calls += 1,
    }
    cx.emit.emit(EventKind::UsageObserved {
        model: format!("a2a:{name}"),
        usage,
        cost_usd: cost,
        usage_estimated: false,
    });
    (total_usage, tracker.cost_usd.map_or(base_cost, |total| total.max(base_cost)))
}

/// One call's exchange with the remote agent.
struct Remote<'c, 'a> {
    cx: &'c Cx<'a>,
    name: &'c str,
    client: &'c Arc<A2aClient>,
    tracker: Tracker,
    /// Sequence of the wrapped events forwarded.
    seq: u64,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Remote<'_, '_> {
    /// Sends `message` and follows the task until it ends or asks for input.
    async fn exchange(&mut self, request: SendMessageRequest) -> Result<(), BoxError> {
        let client = self.client.clone();
        let card = client.card().await?;
        let streaming = card.capabilities.streaming == Some(true);
        if streaming {
            let events = client.send_streaming_message(&request).await?;
            self.follow(events).await?;
        } else {
            let event = match client.send_message(&request).await? {
                SendMessageResponse::Task(task) => StreamResponse::Task(task),
                SendMessageResponse::Message(message) => StreamResponse::Message(message),
            };
            let forwarded = self.tracker.apply(event)?;
            self.forward(forwarded);
        }
        // A stream that ended early (or a blocking answer still working): ask once how the
        // task stands, and if it still works, subscribe to it once.
        if !self.tracker.settled()
            && let Some(id) = self.tracker.task_id.clone()
        {
            let task = client.get_task(&id).await?;
            let forwarded = self.tracker.apply(StreamResponse::Task(task))?;
            self.forward(forwarded);
            if !self.tracker.settled() && streaming {
                let events = client.subscribe_to_task(&id).await?;
                self.follow(events).await?;
            }
        }
        if !self.tracker.settled() {
            return Err(format!(
                "the remote agent stopped answering while its task was {}",
                state_name(self.tracker.state)
            )
            .into());
        }
        Ok(())
    }

    /// Takes a stream's events in until the task ends or asks for input (or the stream ends).
    async fn follow(&mut self, mut events: kaos_a2a::client::EventStream) -> Result<(), BoxError> {
        while let Some(event) = events.next().await {
            let forwarded = self.tracker.apply(event?)?;
            self.forward(forwarded);
            if self.tracker.settled() {
                break;
            }
        }
        Ok(())
    }

    /// Forwards the remote's news into the parent's stream, wrapped as a sub-agent's events.
    fn forward(&mut self, news: Vec<EventKind>) {
        let cx = self.cx;
        for kind in news {
            let event = Event {
                seq: self.seq,
                timestamp_ms: now_ms(),
                session_id: cx.session.as_arc().clone(),
                run_id: self.tracker.task_id.as_deref().unwrap_or_default().into(),
                agent: self.name.into(),
                agent_fingerprint: format!("a2a:{}", self.client.base_url()).into(),
                kind,
            };
            self.seq += 1;
            cx.emit.emit(EventKind::Subagent { subagent: self.name.to_owned(), event: Box::new(event) });
        }
    }
}

/// What the remote task has said so far.
#[derive(Debug)]
struct Tracker {
    task_id: Option<String>,
    context_id: Option<String>,
    state: TaskState,
    /// Artifacts' text, by artifact id, in the order they first came.
    artifacts: Vec<(String, String)>,
    /// The text of the last status message.
    status_text: String,
    /// A direct answer (a message, no task).
    direct: Option<String>,
    usage: Option<Usage>,
    cost_usd: Option<f64>,
}

impl Tracker {
    fn new(task_id: Option<String>) -> Self {
        Self {
            task_id,
            context_id: None,
            state: TaskState::Unspecified,
            artifacts: Vec::new(),
            status_text: String::new(),
            direct: None,
            usage: None,
            cost_usd: None,
        }
    }

    /// Whether the task is over or waits for us.
    fn settled(&self) -> bool {
        self.direct.is_some() || self.state.is_terminal() || self.state.is_interrupted()
    }

    /// Takes one event in; returns what to forward. An event about another task, or a
    /// message after a task began, is a protocol violation.
    fn apply(&mut self, event: StreamResponse) -> Result<Vec<EventKind>, String> {
        let mut news = Vec::new();
        match event {
            StreamResponse::Message(message) => {
                if let Some(id) = &self.task_id {
                    return Err(format!(
                        "the remote agent answered with a message while its task {id} was under way"
                    ));
                }
                let text = message.text();
                news.push(EventKind::TextDelta { text: text.clone() });
                self.direct = Some(text);
                // A direct answer is the whole answer: nothing is left to do.
                self.state = TaskState::Completed;
                self.read_metadata(message.metadata.as_ref())?;
            }
            StreamResponse::Task(task) => {
                self.same_task(&task.id)?;
                self.context_id = Some(task.context_id.clone());
                self.read_metadata(task.metadata.as_ref())?;
                self.artifacts = Vec::new();
                for artifact in &task.artifacts {
                    self.artifacts.push((artifact.artifact_id.clone(), parts_text(&artifact.parts)));
                }
                news.extend(self.status_update(task.status.state, task.status.message.as_ref()));
            }
            StreamResponse::StatusUpdate(update) => {
                self.same_task(&update.task_id)?;
                self.context_id = Some(update.context_id.clone());
                self.read_metadata(update.metadata.as_ref())?;
                news.extend(self.status_update(update.status.state, update.status.message.as_ref()));
            }
            StreamResponse::ArtifactUpdate(update) => {
                self.same_task(&update.task_id)?;
                self.context_id = Some(update.context_id.clone());
                self.read_metadata(update.metadata.as_ref())?;
                let text = parts_text(&update.artifact.parts);
                let id = update.artifact.artifact_id;
                match self.artifacts.iter_mut().find(|(known, _)| *known == id) {
                    Some((_, known)) if update.append => known.push_str(&text),
                    Some((_, known)) => *known = text.clone(),
                    None => self.artifacts.push((id, text.clone())),
                }
                if !text.is_empty() {
                    news.push(EventKind::TextDelta { text });
                }
            }
        }
        Ok(news)
    }

    fn status_update(&mut self, state: TaskState, message: Option<&Message>) -> Vec<EventKind> {
        let text = message.map(Message::text).unwrap_or_default();
        let changed = state != self.state || (!text.is_empty() && text != self.status_text);
        self.state = state;
        if !text.is_empty() {
            self.status_text = text.clone();
        }
        if !changed {
            return Vec::new();
        }
        let phase = match state {
            TaskState::Completed => SpanPhase::Complete,
            TaskState::Failed | TaskState::Rejected => SpanPhase::Error,
            TaskState::Canceled => SpanPhase::Cancelled,
            _ => SpanPhase::Progress,
        };
        let mut attributes = Map::new();
        attributes.insert("state".to_owned(), json!(state_name(state)));
        if let Some(id) = &self.task_id {
            attributes.insert("task_id".to_owned(), json!(id));
        }
        if let Some(id) = &self.context_id {
            attributes.insert("context_id".to_owned(), json!(id));
        }
        if !text.is_empty() {
            attributes.insert("message".to_owned(), json!(text));
        }
        vec![EventKind::Span(Span {
            subject: SpanSubject::Subagent,
            phase,
            span_id: format!("a2a-{}", self.task_id.as_deref().unwrap_or("task")),
            parent_span_id: None,
            name: "a2a.task".to_owned(),
            duration_ms: None,
            attributes,
        })]
    }

    /// Takes the task id from the first event about a task; later ones must name it too.
    fn same_task(&mut self, id: &str) -> Result<(), String> {
        if self.direct.is_some() {
            return Err(format!("the remote agent sent news of task {id} after answering with a message"));
        }
        match &self.task_id {
            Some(known) if known != id => {
                Err(format!("the remote agent sent news of task {id:?} while running task {known:?}"))
            }
            Some(_) => Ok(()),
            None if id.is_empty() => Err("the remote agent sent a task without an id".to_owned()),
            None => {
                self.task_id = Some(id.to_owned());
                Ok(())
            }
        }
    }

    /// Reads the usage and cost KAOS peers report (the latest report wins: it is cumulative).
    fn read_metadata(&mut self, metadata: Option<&Metadata>) -> Result<(), String> {
        let Some(kaos) = metadata.and_then(|m| m.get(kaos_a2a::kaos::METADATA_KEY)) else { return Ok(()) };
        if let Some(cost) = kaos.get(kaos_a2a::kaos::COST_USD) {
            match cost.as_f64() {
                Some(cost) if cost.is_finite() && cost >= 0.0 => self.cost_usd = Some(cost),
                _ => return Err(format!("the remote agent reported an invalid cost {cost}")),
            }
        }
        if let Some(usage) = kaos.get(kaos_a2a::kaos::USAGE) {
            self.usage = Some(
                read_usage(usage)
                    .ok_or_else(|| format!("the remote agent reported invalid usage {usage}"))?,
            );
        }
        Ok(())
    }

    /// What the remote agent asked.
    fn question(&self) -> String {
        if self.status_text.is_empty() { "(no question given)".to_owned() } else { self.status_text.clone() }
    }

    /// The task's answer: its artifacts' text, else its last status message.
    fn answer(&self) -> String {
        if let Some(direct) = &self.direct {
            return direct.clone();
        }
        let text: Vec<&str> =
            self.artifacts.iter().map(|(_, text)| text.as_str()).filter(|t| !t.is_empty()).collect();
        if text.is_empty() { self.status_text.clone() } else { text.join("\n") }
    }
}

/// Usage as KAOS writes it (`input_tokens`, `output_tokens`, `cached_input_tokens`,
/// `reasoning_tokens`), each a whole number ≥ 0; read from any JSON number, since a
/// `google.protobuf.Struct` (the metadata of the official SDKs) holds every number as a double.
fn read_usage(value: &Value) -> Option<Usage> {
    let count = |field: &str| -> Option<u64> {
        match value.get(field) {
            None => Some(0),
            Some(n) => n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 2f64.powi(53))
                    .map(|f| f as u64)
            }),
        }
    };
    value.as_object()?;
    Some(
        Usage::new(count("input_tokens")?, count("output_tokens")?)
            .with_cached_input(count("cached_input_tokens")?)
            .with_reasoning(count("reasoning_tokens")?),
    )
}

/// The text of an artifact's parts, concatenated: chunks appended to an artifact become more
/// parts of it, so the whole artifact reads the same streamed or not.
fn parts_text(parts: &[Part]) -> String {
    parts.iter().filter_map(Part::as_text).collect()
}

fn state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Submitted => "submitted",
        TaskState::Working => "working",
        TaskState::Completed => "completed",
        TaskState::Failed => "failed",
        TaskState::Canceled => "canceled",
        TaskState::InputRequired => "input-required",
        TaskState::Rejected => "rejected",
        TaskState::AuthRequired => "auth-required",
        _ => "unspecified",
    }
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

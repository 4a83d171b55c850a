//! A2A tasks: one per run, kept in the server's memory while they run, wait for an approval,
//! or are finished (the newest `max_finished_tasks`).
//!
//! A task's run is driven by a task of its own (not by a client's request), so a client that
//! goes away leaves it running: `GetTask` reads it, `SubscribeToTask` streams it again, and
//! `CancelTask` stops it by dropping the run — the turn is then stored whole or not at all,
//! and the task says which (`canceled`, or `completed` when the commit won the race).

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt};
use kaos_a2a::{
    Artifact, ErrorCode, JsonRpcError, ListTasksRequest, ListTasksResponse, Message, Metadata, Part,
    PartContent, Role, SendMessageRequest, StreamResponse, Task, TaskArtifactUpdateEvent, TaskState,
    TaskStatus, TaskStatusUpdateEvent,
};
use kaos_runner::{Event, EventKind, RunError, Runner, SessionId, TurnFold, TurnResponse};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::super::ClientId;
use super::super::api::{self, trace};
use super::input::{self, HOW_TO_ANSWER};
use super::{A2aOptions, Drivers};

type Events = Pin<Box<dyn Stream<Item = Result<Event, RunError>> + Send>>;
type Subscriber = mpsc::UnboundedSender<StreamResponse>;

/// Every task of the server, by id (the run id).
pub(crate) struct Tasks {
    runner: Runner,
    drivers: Drivers,
    max_finished: usize,
    table: Mutex<Table>,
    order: AtomicU64,
}

#[derive(Default)]
struct Table {
    tasks: HashMap<String, Arc<Entry>>,
    /// Finished tasks, oldest first: forgotten beyond `max_finished`.
    finished: VecDeque<String>,
}

/// One task: whose it is, its session, and its state.
struct Entry {
    owner: ClientId,
    session: SessionId,
    /// When it was created, for `ListTasks` (newest first).
    order: u64,
    data: Mutex<TaskData>,
}

struct TaskData {
    task: Task,
    /// Open streams of this task; closed when it finishes or waits for input.
    subscribers: Vec<Subscriber>,
    /// Cancels the run being driven, while one is.
    cancel: Option<CancellationToken>,
    /// The artifact text deltas go to (one per model call that writes text).
    open_text: Option<usize>,
    /// The current run's events folded (a resumed run's first event carries what came before).
    fold: TurnFold,
    /// Cost of the model calls so far, for the metadata of a paused task.
    cost_usd: f64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn invalid(message: impl Into<String>) -> JsonRpcError {
    JsonRpcError::new(ErrorCode::InvalidParams, message)
}

fn not_found(id: &str) -> JsonRpcError {
    JsonRpcError::new(ErrorCode::TaskNotFound, format!("no task {id}")).with_metadata("taskId", id)
}

fn internal(message: impl Into<String>) -> JsonRpcError {
    JsonRpcError::new(ErrorCode::InternalError, message)
}

/// The JSON-RPC error of a run that could not start or resume.
fn run_error(error: &RunError) -> JsonRpcError {
    match error {
        RunError::InvalidSession { .. } => invalid(error.report()),
        _ => internal(error.report()),
    }
}

/// Now, as ISO 8601 in UTC with milliseconds (`2025-10-28T10:30:00.000Z`).
pub(super) fn now_iso8601() -> String {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    iso8601(since.as_secs(), since.subsec_millis())
}

/// `secs` after the Unix epoch and `millis`, as ISO 8601 in UTC.
fn iso8601(secs: u64, millis: u32) -> String {
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60,
        millis
    )
}

fn status(state: TaskState, message: Option<Message>) -> TaskStatus {
    TaskStatus { state, message, timestamp: Some(now_iso8601()) }
}

fn agent_message(task: &Task, parts: Vec<Part>) -> Message {
    Message {
        context_id: Some(task.context_id.clone()),
        task_id: Some(task.id.clone()),
        ..Message::new(uuid::Uuid::now_v7().to_string(), Role::Agent, parts)
    }
}

/// `{"kaos": {...}}`: what a finished turn cost and why it stopped, named as the `/v1` API's
/// `TurnResponse` names them.
fn turn_metadata(response: &TurnResponse) -> Metadata {
    let mut metadata = Metadata::new();
    metadata.insert(
        "kaos".to_owned(),
        json!({
            "run_id": response.run_id,
            "turn_number": response.turn_number,
            "stop_reason": response.stop_reason,
            "usage": response.usage,
            "cost_usd": response.cost_usd,
            "unpriced_model_calls": response.unpriced_model_calls,
            "model_calls": response.model_calls,
            "agent": response.agent,
        }),
    );
    metadata
}

fn kaos_metadata(value: Value) -> Metadata {
    let mut metadata = Metadata::new();
    metadata.insert("kaos".to_owned(), value);
    metadata
}

/// What the driver does after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Go,
    Paused,
    Done,
}

impl Entry {
    fn new(owner: ClientId, session: SessionId, order: u64, task: Task) -> Self {
        Self {
            owner,
            session,
            order,
            data: Mutex::new(TaskData {
                task,
                subscribers: Vec::new(),
                cancel: None,
                open_text: None,
                fold: TurnFold::default(),
                cost_usd: 0.0,
            }),
        }
    }

    fn id(&self) -> String {
        lock(&self.data).task.id.clone()
    }

    fn state(&self) -> TaskState {
        lock(&self.data).task.status.state
    }

    /// The task with at most `history_length` recent messages (0: none; absent: all).
    fn snapshot(&self, history_length: Option<i32>) -> Task {
        let mut task = lock(&self.data).task.clone();
        if let Some(length) = history_length {
            let keep = usize::try_from(length.max(0)).unwrap_or(0);
            let drop = task.history.len().saturating_sub(keep);
            task.history.drain(..drop);
        }
        task
    }

    /// A stream of this task: the task as it stands, then its updates until it finishes or
    /// waits for input (at once closed when it is not running).
    fn subscribe(&self) -> mpsc::UnboundedReceiver<StreamResponse> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut data = lock(&self.data);
        if sender.send(StreamResponse::Task(data.task.clone())).is_ok() && data.cancel.is_some() {
            data.subscribers.push(sender);
        }
        receiver
    }

    fn broadcast(data: &mut TaskData, event: &StreamResponse) {
        data.subscribers.retain(|subscriber| subscriber.send(event.clone()).is_ok());
    }

    /// A new status, sent to every stream; streams end when the task finishes or waits.
    fn set_status(
        data: &mut TaskData,
        state: TaskState,
        message: Option<Message>,
        metadata: Option<Metadata>,
    ) {
        data.task.status = status(state, message);
        if metadata.is_some() {
            data.task.metadata.clone_from(&metadata);
        }
        let update = StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
            task_id: data.task.id.clone(),
            context_id: data.task.context_id.clone(),
            status: data.task.status.clone(),
            metadata,
        });
        Self::broadcast(data, &update);
        if state.is_terminal() || state.is_interrupted() {
            data.subscribers.clear();
        }
    }

    /// Folds one event of the run into the task and sends what changed.
    fn apply(&self, event: &Event) -> Flow {
        let mut data = lock(&self.data);
        let data = &mut *data;
        data.fold.push(event);
        match &event.kind {
            EventKind::TextDelta { text } => {
                let (index, append) = match data.open_text {
                    Some(index) => (index, true),
                    None => {
                        let number = data.task.artifacts.len() + 1;
                        data.task.artifacts.push(Artifact {
                            artifact_id: format!("text-{number}"),
                            name: Some("answer".to_owned()),
                            description: None,
                            parts: vec![Part::text("")],
                            metadata: None,
                            extensions: Vec::new(),
                        });
                        let index = data.task.artifacts.len() - 1;
                        data.open_text = Some(index);
                        (index, false)
                    }
                };
                let Some(artifact) = data.task.artifacts.get_mut(index) else { return Flow::Go };
                if let Some(Part { content: PartContent::Text(whole), .. }) = artifact.parts.last_mut() {
                    whole.push_str(text);
                }
                let chunk = Artifact {
                    parts: vec![Part::text(text.clone())],
                    name: if append { None } else { artifact.name.clone() },
                    ..artifact.clone()
                };
                let update = StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
                    task_id: data.task.id.clone(),
                    context_id: data.task.context_id.clone(),
                    artifact: chunk,
                    append,
                    last_chunk: false,
                    metadata: None,
                });
                Self::broadcast(data, &update);
                Flow::Go
            }
            EventKind::UsageObserved { cost_usd, .. } => {
                // The next text is another model call's answer.
                data.open_text = None;
                data.cost_usd += cost_usd.unwrap_or(0.0);
                Flow::Go
            }
            EventKind::RunResumed { cost_usd, .. } => {
                data.cost_usd = *cost_usd;
                Flow::Go
            }
            EventKind::ToolCallApprovalRequired { call_id, tool_name, arguments, reason, .. } => {
                let question = agent_message(
                    &data.task,
                    vec![
                        Part::text(format!(
                            "The agent wants to call `{tool_name}` with {arguments}: {reason}. {HOW_TO_ANSWER}"
                        )),
                        Part::data(json!({
                            "call_id": call_id, "tool_name": tool_name, "arguments": arguments, "reason": reason,
                        })),
                    ],
                );
                data.task.history.push(question.clone());
                // The run is stored paused: an answer may resume it while this stream drains.
                data.cancel = None;
                let metadata = kaos_metadata(json!({
                    "run_id": event.run_id, "cost_usd": data.cost_usd,
                    "pending_approval": {"call_id": call_id, "tool_name": tool_name},
                }));
                Self::set_status(data, TaskState::InputRequired, Some(question), Some(metadata));
                Flow::Paused
            }
            // A paused run's summary: the task waits for its answer.
            EventKind::TurnSummary { .. } if data.task.status.state == TaskState::InputRequired => Flow::Done,
            EventKind::TurnSummary { .. } => {
                let Some(response) = data.fold.clone().finish() else { return Flow::Go };
                let answer = agent_message(&data.task, vec![Part::text(response.text.clone())]);
                data.task.history.push(answer);
                Self::set_status(data, TaskState::Completed, None, Some(turn_metadata(&response)));
                Flow::Done
            }
            _ => Flow::Go,
        }
    }

    fn fail(&self, error: &str, kind: &str) {
        let mut data = lock(&self.data);
        let message = agent_message(&data.task, vec![Part::text(error.to_owned())]);
        let metadata = kaos_metadata(json!({"error": {"type": kind, "message": error}}));
        Self::set_status(&mut data, TaskState::Failed, Some(message), Some(metadata));
    }
}

impl Tasks {
    pub(crate) fn new(runner: Runner, max_finished: usize, drivers: Drivers) -> Self {
        Self { runner, drivers, max_finished, table: Mutex::new(Table::default()), order: AtomicU64::new(0) }
    }

    /// The caller's task `id`; another caller's is the same `TaskNotFound` as a missing one.
    fn find(&self, client: &ClientId, id: &str) -> Result<Arc<Entry>, JsonRpcError> {
        let table = lock(&self.table);
        match table.tasks.get(id) {
            Some(entry) if entry.owner == *client => Ok(entry.clone()),
            _ => Err(not_found(id)),
        }
    }

    /// `SendMessage`: the task once it finished or waits for input (or at once with
    /// `returnImmediately`).
    pub(crate) async fn send(
        self: &Arc<Self>,
        client: &ClientId,
        params: SendMessageRequest,
        options: &A2aOptions,
    ) -> Result<Task, JsonRpcError> {
        let configuration = params.configuration.clone().unwrap_or_default();
        let (entry, mut events) = self.start(client, params, options).await?;
        if !configuration.return_immediately {
            while events.recv().await.is_some() {}
        }
        Ok(entry.snapshot(configuration.history_length))
    }

    /// `SendStreamingMessage`: the task, then its updates.
    pub(crate) async fn send_streaming(
        self: &Arc<Self>,
        client: &ClientId,
        params: SendMessageRequest,
        options: &A2aOptions,
    ) -> Result<mpsc::UnboundedReceiver<StreamResponse>, JsonRpcError> {
        self.start(client, params, options).await.map(|(_, events)| events)
    }

    /// Starts a new task, or continues the `input-required` task the message names.
    async fn start(
        self: &Arc<Self>,
        client: &ClientId,
        params: SendMessageRequest,
        options: &A2aOptions,
    ) -> Result<(Arc<Entry>, mpsc::UnboundedReceiver<StreamResponse>), JsonRpcError> {
        if let Some(task_id) = params.message.task_id.clone() {
            return self.answer(client, &task_id, params.message, options).await;
        }
        let text = input::turn_text(&params.message, params.configuration.as_ref(), options.max_part_bytes)?;
        let run_options = input::run_options(params.metadata.as_ref())?;
        let context = match &params.message.context_id {
            Some(context) => context.clone(),
            None => uuid::Uuid::now_v7().to_string(),
        };
        SessionId::new(&context).map_err(|e| invalid(format!("message.contextId: {e}")))?;
        let session = SessionId::new(&format!("{client}.{context}"))
            .map_err(|e| invalid(format!("message.contextId: {e}")))?;
        let recorder = trace::Recorder::fresh(self.runner.runtime().vfs().clone(), session.clone());
        let run = self.runner.run_with(text, session.as_str(), run_options);
        let mut events: Events = Box::pin(api::record(run, recorder));
        // The first event names the run, whose id is the task's.
        let first = match events.next().await {
            Some(Ok(event)) => event,
            Some(Err(error)) => return Err(run_error(&error)),
            None => return Err(internal("the run ended before it started")),
        };
        let id = first.run_id.to_string();
        let mut message = params.message;
        message.task_id = Some(id.clone());
        message.context_id = Some(context.clone());
        let task = Task {
            id: id.clone(),
            context_id: context,
            status: status(TaskState::Working, None),
            artifacts: Vec::new(),
            history: vec![message],
            metadata: None,
        };
        let order = self.order.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry::new(client.clone(), session, order, task));
        let cancel = self.drivers.token();
        lock(&entry.data).cancel = Some(cancel.clone());
        let subscription = entry.subscribe();
        lock(&self.table).tasks.insert(id, entry.clone());
        let flow = entry.apply(&first);
        self.drivers.spawn(self.clone().drive(entry.clone(), events, cancel, flow));
        Ok((entry, subscription))
    }

    /// A follow-up message to a paused task: its answer resumes the same run.
    async fn answer(
        self: &Arc<Self>,
        client: &ClientId,
        id: &str,
        mut message: Message,
        options: &A2aOptions,
    ) -> Result<(Arc<Entry>, mpsc::UnboundedReceiver<StreamResponse>), JsonRpcError> {
        let entry = self.find(client, id)?;
        let answer = input::answer(&message, options.max_part_bytes)?;
        let cancel = self.drivers.token();
        {
            let mut data = lock(&entry.data);
            if let Some(context) = &message.context_id
                && *context != data.task.context_id
            {
                return Err(invalid(format!("message.contextId {context} is not the context of task {id}")));
            }
            let state = data.task.status.state;
            if state != TaskState::InputRequired || data.cancel.is_some() {
                let why = if state.is_terminal() {
                    "it is finished; send a message without a taskId to start a new task"
                } else {
                    "it does not wait for input"
                };
                return Err(JsonRpcError::new(
                    ErrorCode::UnsupportedOperation,
                    format!("task {id} is {}: {why}", state_name(state)),
                ));
            }
            // Claimed: a second answer racing this one is refused above.
            data.cancel = Some(cancel.clone());
        }
        let release = |error: JsonRpcError| {
            lock(&entry.data).cancel = None;
            error
        };
        let run = self.runner.run_state(id).await.map_err(|e| release(run_error(&e)))?;
        if run.resumed || run.session_id != entry.session.as_str() {
            return Err(release(JsonRpcError::new(
                ErrorCode::UnsupportedOperation,
                format!("the run of task {id} was resumed already"),
            )));
        }
        let recorder = trace::Recorder::resumed(
            self.runner.runtime().vfs().clone(),
            entry.session.clone(),
            run.turn_number,
        );
        let events: Events = Box::pin(api::record(self.runner.resume(run, answer.approval()), recorder));
        {
            let mut data = lock(&entry.data);
            message.task_id = Some(id.to_owned());
            message.context_id = Some(data.task.context_id.clone());
            data.task.history.push(message);
            data.fold = TurnFold::default();
            data.open_text = None;
            data.task.status = status(TaskState::Working, None);
        }
        let subscription = entry.subscribe();
        self.drivers.spawn(self.clone().drive(entry.clone(), events, cancel, Flow::Go));
        Ok((entry, subscription))
    }

    /// Drives the run to its end (or its pause), or drops it when cancelled.
    async fn drive(
        self: Arc<Self>,
        entry: Arc<Entry>,
        mut events: Events,
        cancel: CancellationToken,
        flow: Flow,
    ) {
        let mut paused = flow == Flow::Paused;
        if flow != Flow::Done {
            loop {
                let item = tokio::select! {
                    biased;
                    () = cancel.cancelled() => {
                        drop(events);
                        if paused {
                            // The run is stored paused; an answer or a cancel of the task
                            // decides what becomes of it, not this draining stream.
                            return;
                        }
                        self.canceled(&entry).await;
                        self.finished(&entry);
                        return;
                    }
                    item = events.next() => item,
                };
                match item {
                    Some(Ok(event)) => match entry.apply(&event) {
                        Flow::Go => {}
                        // A paused run ends its stream after the pause is stored.
                        Flow::Paused => paused = true,
                        Flow::Done => break,
                    },
                    Some(Err(error)) => {
                        if !paused {
                            entry.fail(&error.report(), error.kind());
                        }
                        break;
                    }
                    None => {
                        if !paused {
                            entry.fail("the run ended without a summary", "incomplete_run");
                        }
                        break;
                    }
                }
            }
        }
        if !paused {
            lock(&entry.data).cancel = None;
        }
        if entry.state().is_terminal() {
            self.finished(&entry);
        }
    }

    /// After a run was dropped: the turn is stored whole or not at all; the task says which.
    async fn canceled(&self, entry: &Entry) {
        let id = entry.id();
        let committed = match self.runner.sessions().turns(entry.session.as_str()).await {
            Ok(records) => records.into_iter().flatten().find(|record| *record.run_id == *id),
            Err(e) => {
                tracing::warn!(error = %e, task = %id, "cannot read the session of a cancelled task");
                None
            }
        };
        let mut data = lock(&entry.data);
        data.cancel = None;
        if data.task.status.state.is_terminal() {
            return;
        }
        match committed {
            Some(record) => {
                let metadata = kaos_metadata(json!({
                    "run_id": record.run_id, "turn_number": record.turn, "stop_reason": record.stop_reason,
                    "usage": record.usage, "cost_usd": record.cost_usd,
                    "unpriced_model_calls": record.unpriced_model_calls,
                }));
                Entry::set_status(&mut data, TaskState::Completed, None, Some(metadata));
            }
            None => {
                let message =
                    agent_message(&data.task, vec![Part::text("Canceled: nothing of this turn was stored.")]);
                Entry::set_status(&mut data, TaskState::Canceled, Some(message), None);
            }
        }
    }

    /// Remembers that `entry` finished, forgetting the oldest finished tasks beyond the limit.
    fn finished(&self, entry: &Entry) {
        let id = entry.id();
        let mut table = lock(&self.table);
        if table.finished.contains(&id) {
            return;
        }
        table.finished.push_back(id);
        while table.finished.len() > self.max_finished {
            if let Some(old) = table.finished.pop_front() {
                table.tasks.remove(&old);
            }
        }
    }

    /// `GetTask`.
    pub(crate) fn get(
        &self,
        client: &ClientId,
        id: &str,
        history_length: Option<i32>,
    ) -> Result<Task, JsonRpcError> {
        Ok(self.find(client, id)?.snapshot(history_length))
    }

    /// `ListTasks`: the caller's tasks, newest first.
    pub(crate) fn list(
        &self,
        client: &ClientId,
        request: &ListTasksRequest,
    ) -> Result<ListTasksResponse, JsonRpcError> {
        let page_size = request.page_size.unwrap_or(50);
        if !(1..=100).contains(&page_size) {
            return Err(invalid("pageSize must be 1 to 100"));
        }
        let offset = match request.page_token.as_deref().filter(|t| !t.is_empty()) {
            Some(token) => {
                token.parse::<usize>().map_err(|_| invalid("pageToken is not one this server gave"))?
            }
            None => 0,
        };
        let mut entries: Vec<Arc<Entry>> =
            lock(&self.table).tasks.values().filter(|entry| entry.owner == *client).cloned().collect();
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.order));
        let mut tasks: Vec<Task> = entries
            .iter()
            .map(|entry| entry.snapshot(request.history_length))
            .filter(|task| request.context_id.as_ref().is_none_or(|context| *context == task.context_id))
            .filter(|task| request.status.is_none_or(|state| state == task.status.state))
            .collect();
        if !request.include_artifacts.unwrap_or(false) {
            for task in &mut tasks {
                task.artifacts.clear();
            }
        }
        let total = tasks.len();
        let size = usize::try_from(page_size).unwrap_or(50);
        let page: Vec<Task> = tasks.into_iter().skip(offset).take(size).collect();
        let next = offset + page.len();
        Ok(ListTasksResponse {
            tasks: page,
            next_page_token: if next < total { next.to_string() } else { String::new() },
            page_size,
            total_size: i32::try_from(total).unwrap_or(i32::MAX),
        })
    }

    /// `CancelTask`: drops the running turn (stored whole or not at all) or ends a paused task.
    pub(crate) async fn cancel(&self, client: &ClientId, id: &str) -> Result<Task, JsonRpcError> {
        let entry = self.find(client, id)?;
        let running = {
            let mut data = lock(&entry.data);
            let state = data.task.status.state;
            if state.is_terminal() {
                return Err(JsonRpcError::new(
                    ErrorCode::TaskNotCancelable,
                    format!("task {id} is {} already", state_name(state)),
                )
                .with_metadata("taskId", id));
            }
            match data.cancel.clone() {
                Some(token) => {
                    // Wait for the driver to settle the task (its stream closes then).
                    let (sender, receiver) = mpsc::unbounded_channel();
                    data.subscribers.push(sender);
                    Some((token, receiver))
                }
                None => {
                    // Paused: nothing runs and nothing of the turn was stored.
                    let message = agent_message(
                        &data.task,
                        vec![Part::text(
                            "Canceled: the paused call was not run and nothing of this turn was stored.",
                        )],
                    );
                    Entry::set_status(&mut data, TaskState::Canceled, Some(message), None);
                    None
                }
            }
        };
        match running {
            Some((token, mut settled)) => {
                token.cancel();
                while settled.recv().await.is_some() {}
            }
            None => self.finished(&entry),
        }
        let task = entry.snapshot(None);
        if task.status.state == TaskState::Canceled {
            Ok(task)
        } else {
            Err(JsonRpcError::new(
                ErrorCode::TaskNotCancelable,
                format!(
                    "task {id} is {}: it finished before it could be canceled",
                    state_name(task.status.state)
                ),
            )
            .with_metadata("taskId", id))
        }
    }

    /// `SubscribeToTask`.
    pub(crate) fn subscribe(
        &self,
        client: &ClientId,
        id: &str,
    ) -> Result<mpsc::UnboundedReceiver<StreamResponse>, JsonRpcError> {
        let entry = self.find(client, id)?;
        let state = entry.state();
        if state.is_terminal() {
            return Err(JsonRpcError::new(
                ErrorCode::UnsupportedOperation,
                format!(
                    "task {id} is {}: there is nothing to subscribe to; read it with GetTask",
                    state_name(state)
                ),
            ));
        }
        Ok(entry.subscribe())
    }
}

fn state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Unspecified => "unspecified",
        TaskState::Submitted => "submitted",
        TaskState::Working => "working",
        TaskState::Completed => "completed",
        TaskState::Failed => "failed",
        TaskState::Canceled => "canceled",
        TaskState::InputRequired => "input-required",
        TaskState::Rejected => "rejected",
        TaskState::AuthRequired => "auth-required",
    }
}

#[cfg(test)]
mod tests {
    use super::{iso8601, now_iso8601};

    #[test]
    fn timestamps_are_iso_8601_in_utc_with_milliseconds() {
        assert_eq!(iso8601(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(iso8601(1_761_647_433, 250), "2025-10-28T10:30:33.250Z");
        assert_eq!(iso8601(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
        let now = now_iso8601();
        assert_eq!(now.len(), "2025-10-28T10:30:00.000Z".len(), "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z') && now.as_bytes()[10] == b'T', "{now}");
    }
}

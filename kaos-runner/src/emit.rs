//! The [`Emitter`]: stamps a run's events (sequence, time, session, run, agent), sends them into
//! the run's channel, shows them to the hooks' `on_event`, and opens and ends spans.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::events::{Event, EventKind, MemoryEventKind, Span, SpanPhase, SpanSubject};
use crate::hooks::{HookFault, Hooks};
use crate::response::{StopReason, TurnFold, TurnResponse};
use crate::stream::EventQueue;

/// Emits the events of one run, stamping the common fields: into the run's queue for its
/// [`RunStream`](crate::RunStream), and folded into the turn's response for [`Runner::turn`]
/// (which needs no queue) or for the hooks.
///
/// [`Runner::turn`]: crate::Runner::turn
#[derive(Debug)]
pub(crate) struct Emitter {
    /// Where a stream reads the events from; `None` when only the fold wants them.
    tx: Option<EventQueue>,
    hooks: Hooks,
    /// A hook failure that, under the fail-closed policy, must stop the turn.
    hook_stop: std::sync::Mutex<Option<HookFault>>,
    seq: AtomicU64,
    spans: AtomicU64,
    pub(crate) session_id: Arc<str>,
    pub(crate) run_id: Arc<str>,
    /// The agent running the turn, and its fingerprint (a handoff changes them mid-run).
    agent: std::sync::Mutex<(Arc<str>, Arc<str>)>,
    /// The fold of the events so far: the response of `Runner::turn`, and with hooks the
    /// `turn_end` hook's response (the same fold, so the two agree).
    fold: Option<std::sync::Mutex<TurnFold>>,
}

/// A started span, to be completed or failed. A clone serves as a parent for spans started
/// inside it (only its id is used); only the original is ended.
#[derive(Debug, Clone)]
pub(crate) struct OpenSpan {
    subject: SpanSubject,
    pub(crate) id: String,
    parent: Option<String>,
    name: String,
    started: Instant,
}

impl Emitter {
    pub(crate) fn new(
        tx: EventQueue,
        session_id: Arc<str>,
        run_id: Arc<str>,
        agent: Arc<str>,
        agent_fingerprint: Arc<str>,
    ) -> Self {
        Self::with_sink(Some(tx), None, session_id, run_id, (agent, agent_fingerprint))
    }

    fn with_sink(
        tx: Option<EventQueue>,
        fold: Option<TurnFold>,
        session_id: Arc<str>,
        run_id: Arc<str>,
        agent: (Arc<str>, Arc<str>),
    ) -> Self {
        Self {
            tx,
            hooks: Hooks::new(),
            hook_stop: std::sync::Mutex::new(None),
            seq: AtomicU64::new(0),
            spans: AtomicU64::new(0),
            session_id,
            run_id,
            agent: std::sync::Mutex::new(agent),
            fold: fold.map(std::sync::Mutex::new),
        }
    }

    /// An emitter that only folds the events into the turn's response (see
    /// [`Emitter::into_response`]): they are shown to hooks, not queued for a stream.
    pub(crate) fn folding(
        session_id: Arc<str>,
        run_id: Arc<str>,
        agent: Arc<str>,
        agent_fingerprint: Arc<str>,
    ) -> Self {
        Self::with_sink(None, Some(TurnFold::default()), session_id, run_id, (agent, agent_fingerprint))
    }

    /// The turn's response as the events folded, once the run emitted its summary.
    pub(crate) fn into_response(self) -> Option<TurnResponse> {
        self.fold?.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner).finish()
    }

    /// The turn's response as its events so far fold, ending with `stop_reason`, when there
    /// are hooks to show it to.
    pub(crate) fn response_so_far(&self, turn_number: u32, stop_reason: StopReason) -> Option<TurnResponse> {
        if self.hooks.is_empty() {
            return None;
        }
        let fold = self.fold.as_ref()?.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        fold.clone().finish_as(turn_number, stop_reason)
    }

    /// Stamps the events from now on with another agent (after a handoff).
    pub(crate) fn set_agent(&self, agent: Arc<str>, agent_fingerprint: Arc<str>) {
        *self.agent.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = (agent, agent_fingerprint);
    }

    /// Calls `hooks`' `on_event` for every event from now on.
    pub(crate) fn with_hooks(mut self, hooks: Hooks) -> Self {
        if !hooks.is_empty() && self.fold.is_none() {
            self.fold = Some(std::sync::Mutex::new(TurnFold::default()));
        }
        self.hooks = hooks;
        self
    }

    /// Reports hook faults as `hook_failed` events; under the fail-closed policy the first
    /// one is kept for [`Emitter::take_hook_stop`].
    pub(crate) fn faults(&self, faults: &[HookFault], stop: Option<&HookFault>) {
        let closed = stop.is_some();
        for fault in faults {
            self.send(EventKind::HookFailed {
                hook: fault.hook.clone(),
                callback: fault.point.as_str().to_owned(),
                message: fault.message.clone(),
                closed,
            });
        }
        if let Some(stop) = stop {
            let mut slot = self.hook_stop.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            slot.get_or_insert_with(|| stop.clone());
        }
    }

    /// A fail-closed hook failure that must stop the turn, if one happened.
    pub(crate) fn take_hook_stop(&self) -> Option<HookFault> {
        self.hook_stop.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    /// Continues a run's numbering (sequence and span ids) after a pause.
    pub(crate) fn continuing(self, next_seq: u64, next_span: u64) -> Self {
        self.seq.store(next_seq, Ordering::Relaxed);
        self.spans.store(next_span, Ordering::Relaxed);
        self
    }

    /// The next sequence number and span counter, to continue the run after a pause.
    pub(crate) fn position(&self) -> (u64, u64) {
        (self.seq.load(Ordering::Relaxed), self.spans.load(Ordering::Relaxed))
    }

    pub(crate) fn emit(&self, kind: EventKind) {
        let event = self.send(kind);
        if let Some(event) = event
            && !self.hooks.is_empty()
        {
            let dispatch = self.hooks.on_event(&event);
            if !dispatch.faults.is_empty() {
                // Not dispatched to `on_event` again: a failing hook cannot loop.
                self.faults(&dispatch.faults, dispatch.stop());
            }
        }
    }

    /// Stamps and sends one event; returns it when hooks want to see it.
    fn send(&self, kind: EventKind) -> Option<Event> {
        let timestamp_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default();
        let (agent, agent_fingerprint) =
            self.agent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            timestamp_ms,
            session_id: self.session_id.clone(),
            run_id: self.run_id.clone(),
            agent,
            agent_fingerprint,
            kind,
        };
        if let Some(fold) = &self.fold {
            fold.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(&event);
        }
        let seen = (!self.hooks.is_empty()).then(|| event.clone());
        if let Some(tx) = &self.tx {
            tx.push(event);
        }
        seen
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

/// A memory event.
pub(crate) fn memory_event(
    kind: MemoryEventKind,
    section: &str,
    item_count: usize,
    attributes: Map<String, Value>,
) -> EventKind {
    EventKind::Memory { kind, section: section.to_owned(), item_count, attributes }
}

/// Span attributes from pairs.
pub(crate) fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A count as a span attribute (OpenTelemetry integers are `i64`).
pub(crate) fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

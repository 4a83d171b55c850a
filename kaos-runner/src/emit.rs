//! The [`Emitter`]: stamps a run's events (sequence, time, session, run, agent), sends them into
//! the run's channel, shows them to the hooks' `on_event`, and opens and ends spans.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::events::{Event, EventKind, MemoryEventKind, Span, SpanPhase, SpanSubject};
use crate::hooks::{HookFault, Hooks};
use crate::response::{Attr, SpanAttrs, StopReason, TurnFold, TurnResponse};
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
    /// The agent stamped on events, and the fold: one lock for both, taken once per event.
    state: std::sync::Mutex<Stamp>,
}

#[derive(Debug)]
struct Stamp {
    /// The agent running the turn, and its fingerprint (a handoff changes them mid-run).
    agent: (Arc<str>, Arc<str>),
    /// The fold of the events so far: the response of `Runner::turn`, and with hooks the
    /// `turn_end` hook's response (the same fold, so the two agree).
    fold: Option<TurnFold>,
}

/// A started span, to be completed or failed. A clone serves as a parent for spans started
/// inside it (only its id is used); only the original is ended.
#[derive(Debug, Clone)]
pub(crate) struct OpenSpan {
    subject: SpanSubject,
    /// Its number in the run: its id is `s{number}` ([`SpanId`]).
    number: u64,
    parent: Option<u64>,
    name: String,
    /// When it started; `None` when nobody sees its duration (only the fold wants the run's
    /// events, and it reads none), so the clock is not read.
    started: Option<Instant>,
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
            state: std::sync::Mutex::new(Stamp { agent, fold }),
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
        self.state.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner).fold?.finish()
    }

    /// The turn's response as its events so far fold, ending with `stop_reason`, when there
    /// are hooks to show it to.
    pub(crate) fn response_so_far(&self, turn_number: u32, stop_reason: StopReason) -> Option<TurnResponse> {
        if self.hooks.is_empty() {
            return None;
        }
        let state = self.state();
        state.fold.clone()?.finish_as(turn_number, stop_reason)
    }

    /// Stamps the events from now on with another agent (after a handoff).
    pub(crate) fn set_agent(&self, agent: Arc<str>, agent_fingerprint: Arc<str>) {
        self.state().agent = (agent, agent_fingerprint);
    }

    /// Calls `hooks`' `on_event` for every event from now on.
    pub(crate) fn with_hooks(mut self, hooks: Hooks) -> Self {
        let state = self.state.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !hooks.is_empty() && state.fold.is_none() {
            state.fold = Some(TurnFold::default());
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

    /// Emits an event the turn's response does not fold (a memory or permission event; see
    /// [`TurnFold::folds`]): built by `make` only when a stream or hooks see it.
    pub(crate) fn emit_with(&self, make: impl FnOnce() -> EventKind) {
        if self.fold_only(|_| {}) {
            return;
        }
        let kind = make();
        debug_assert!(!TurnFold::folds(&kind), "{} is folded: emit it with `emit`", kind.type_name());
        self.emit(kind);
    }

    /// Emits the event `make` builds, one the turn's response folds; when only the fold wants
    /// this run's events, `fold` folds what the event would report instead, and it is not built.
    /// `fold` must do to the fold what [`TurnFold::push_kind`] does with the event.
    pub(crate) fn emit_folding(&self, fold: impl FnOnce(&mut TurnFold), make: impl FnOnce() -> EventKind) {
        if self.fold_only(fold) {
            return;
        }
        self.emit(make());
    }

    /// Stamps and sends one event; returns it when hooks want to see it.
    fn send(&self, kind: EventKind) -> Option<Event> {
        if self.unobserved() {
            // Nobody but the fold (if any) wants it: the fold takes what it keeps.
            self.fold_only(|fold| fold.push_owned(kind));
            return None;
        }
        let timestamp_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default();
        // Under the lock, so events are numbered, folded and queued in one order.
        let mut state = self.state();
        let (agent, agent_fingerprint) = state.agent.clone();
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            timestamp_ms,
            session_id: self.session_id.clone(),
            run_id: self.run_id.clone(),
            agent,
            agent_fingerprint,
            kind,
        };
        if let Some(fold) = &mut state.fold {
            fold.push(&event);
        }
        let seen = (!self.hooks.is_empty()).then(|| event.clone());
        if let Some(tx) = &self.tx {
            tx.push(event);
        }
        seen
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Stamp> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether nobody but the fold sees this run's events (no stream, no hooks): then how they
    /// are split cannot be observed (a model's text may be folded as one delta, not word by word).
    pub(crate) fn unobserved(&self) -> bool {
        self.tx.is_none() && self.hooks.is_empty()
    }

    /// When only the fold wants this run's events (no stream, no hooks): counts one event and
    /// lets `push` fold it from its parts, without building it; `false` otherwise.
    fn fold_only(&self, push: impl FnOnce(&mut TurnFold)) -> bool {
        if !self.unobserved() {
            return false;
        }
        let mut state = self.state();
        let Stamp { agent, fold: Some(fold) } = &mut *state else { return false };
        self.seq.fetch_add(1, Ordering::Relaxed);
        fold.note(&self.run_id, &self.session_id, (&agent.0, &agent.1));
        push(fold);
        true
    }

    /// Starts a span. `name` is rendered only when the span's events are built (for a stream
    /// or hooks), so a caller passes `format_args!` rather than a `String`.
    pub(crate) fn start(
        &self,
        subject: SpanSubject,
        name: impl std::fmt::Display,
        parent: Option<&OpenSpan>,
        attributes: impl SpanAttrs,
    ) -> OpenSpan {
        let number = self.spans.fetch_add(1, Ordering::Relaxed) + 1;
        let parent = parent.map(|p| p.number);
        if self.fold_only(|fold| {
            fold.push_span(subject, SpanPhase::Start, SpanId::of(number).as_str(), &attributes)
        }) {
            // Nobody sees the span's name or duration: its end is folded the same way.
            return OpenSpan { subject, number, parent, name: String::new(), started: None };
        }
        let started = Some(Instant::now());
        let name = name.to_string();
        self.emit(EventKind::Span(Span {
            subject,
            phase: SpanPhase::Start,
            span_id: SpanId::of(number).as_str().to_owned(),
            parent_span_id: parent.map(|p| SpanId::of(p).as_str().to_owned()),
            name: name.clone(),
            duration_ms: None,
            attributes: attributes.into_map(),
        }));
        OpenSpan { subject, number, parent, name, started }
    }

    pub(crate) fn end(&self, span: OpenSpan, phase: SpanPhase, attributes: impl SpanAttrs) {
        let id = SpanId::of(span.number);
        if self.fold_only(|fold| fold.push_span(span.subject, phase, id.as_str(), &attributes)) {
            return;
        }
        self.emit(EventKind::Span(Span {
            subject: span.subject,
            phase,
            span_id: id.as_str().to_owned(),
            parent_span_id: span.parent.map(|p| SpanId::of(p).as_str().to_owned()),
            name: span.name,
            duration_ms: Some(span.started.map_or(0.0, |started| millis(started.elapsed()))),
            attributes: attributes.into_map(),
        }));
    }
}

/// A span's id, `s` and its number in the run, rendered without allocating.
struct SpanId {
    bytes: [u8; 21],
    start: usize,
}

impl SpanId {
    fn of(mut n: u64) -> Self {
        let mut bytes = [0u8; 21];
        let mut start = bytes.len();
        loop {
            start -= 1;
            bytes[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        start -= 1;
        bytes[start] = b's';
        Self { bytes, start }
    }

    fn as_str(&self) -> &str {
        // `s` and ASCII digits.
        std::str::from_utf8(&self.bytes[self.start..]).unwrap_or_default()
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

/// The map of a typed attribute set: each of `keys` it answers, as [`SpanAttrs::attr`] gives it
/// to the fold (so the map and the fold cannot disagree).
fn map_of(attributes: &impl SpanAttrs, keys: &[&str]) -> Map<String, Value> {
    keys.iter().filter_map(|&key| Some((key.to_owned(), attributes.attr(key)?.to_value()))).collect()
}

/// A tool call span's start attributes (`tool_name`, `call_id`, `arguments`), read by the fold
/// as they are: the map is built only when a stream or hooks see the span.
pub(crate) struct ToolStart<'a> {
    pub(crate) name: &'a str,
    pub(crate) call_id: &'a str,
    pub(crate) arguments: &'a Value,
}

impl SpanAttrs for ToolStart<'_> {
    fn attr(&self, key: &str) -> Option<Attr<'_>> {
        match key {
            "tool_name" => Some(Attr::Str(self.name)),
            "call_id" => Some(Attr::Str(self.call_id)),
            "arguments" => Some(Attr::Json(self.arguments)),
            _ => None,
        }
    }

    fn into_map(self) -> Map<String, Value> {
        map_of(&self, &["tool_name", "call_id", "arguments"])
    }
}

/// A tool call span's end attributes (`tool_name`, `call_id`, `result`, `is_error`), like
/// [`ToolStart`].
pub(crate) struct ToolEnd<'a> {
    pub(crate) name: &'a str,
    pub(crate) call_id: &'a str,
    pub(crate) result: &'a str,
    pub(crate) is_error: bool,
}

impl SpanAttrs for ToolEnd<'_> {
    fn attr(&self, key: &str) -> Option<Attr<'_>> {
        match key {
            "tool_name" => Some(Attr::Str(self.name)),
            "call_id" => Some(Attr::Str(self.call_id)),
            "result" => Some(Attr::Str(self.result)),
            "is_error" => Some(Attr::Bool(self.is_error)),
            _ => None,
        }
    }

    fn into_map(self) -> Map<String, Value> {
        map_of(&self, &["tool_name", "call_id", "result", "is_error"])
    }
}

/// A model call span's start attributes (`model`, `iteration`, and `internal` and
/// `fallback_for` when they apply), like [`ToolStart`].
pub(crate) struct LlmStart<'a> {
    pub(crate) model: &'a str,
    pub(crate) iteration: u32,
    pub(crate) internal: bool,
    pub(crate) fallback_for: Option<&'a str>,
}

impl SpanAttrs for LlmStart<'_> {
    fn attr(&self, key: &str) -> Option<Attr<'_>> {
        match key {
            "model" => Some(Attr::Str(self.model)),
            "iteration" => Some(Attr::U64(u64::from(self.iteration))),
            "internal" if self.internal => Some(Attr::Bool(true)),
            "fallback_for" => self.fallback_for.map(Attr::Str),
            _ => None,
        }
    }

    fn into_map(self) -> Map<String, Value> {
        map_of(&self, &["model", "iteration", "internal", "fallback_for"])
    }
}

/// A model call span's end attributes (`finish_reason`, `tool_calls`: how many), like
/// [`ToolStart`].
pub(crate) struct LlmEnd<'a> {
    pub(crate) finish_reason: &'a kaos_providers::FinishReason,
    pub(crate) tool_calls: usize,
}

impl SpanAttrs for LlmEnd<'_> {
    fn attr(&self, key: &str) -> Option<Attr<'_>> {
        match key {
            "tool_calls" => Some(Attr::U64(self.tool_calls as u64)),
            _ => None,
        }
    }

    fn into_map(self) -> Map<String, Value> {
        attrs([
            ("finish_reason", serde_json::json!(self.finish_reason)),
            ("tool_calls", Value::from(self.tool_calls)),
        ])
    }
}

/// A count as a span attribute (OpenTelemetry integers are `i64`).
pub(crate) fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kaos_providers::FinishReason;
    use serde_json::json;

    use super::*;
    use crate::response::StopReason;

    /// Folds one span from its typed attributes, or from the map a span event carries.
    fn push<A: SpanAttrs>(
        fold: &mut TurnFold,
        typed: bool,
        subject: SpanSubject,
        phase: SpanPhase,
        id: &str,
        a: A,
    ) {
        if typed {
            fold.push_span(subject, phase, id, &a);
        } else {
            fold.push_span(subject, phase, id, &a.into_map());
        }
    }

    #[test]
    fn typed_span_attributes_fold_like_the_maps_events_carry() {
        let arguments = json!({"a": 2, "b": [3]});
        let run = |typed: bool| {
            let mut fold = TurnFold::default();
            let id: Arc<str> = "x".into();
            fold.note(&id, &id, (&id, &id));
            let (llm, tool) = (SpanSubject::LlmCall, SpanSubject::ToolCall);
            let start =
                |internal, fallback_for| LlmStart { model: "m:a", iteration: 1, internal, fallback_for };
            let end = |n| LlmEnd { finish_reason: &FinishReason::ToolCalls, tool_calls: n };
            push(&mut fold, typed, llm, SpanPhase::Start, "s1", start(false, None));
            fold.push_kind(&EventKind::TextDelta { text: "thinking".into() });
            push(&mut fold, typed, llm, SpanPhase::Complete, "s1", end(2));
            for n in ["s2", "s3"] {
                let start = ToolStart { name: "add", call_id: n, arguments: &arguments };
                push(&mut fold, typed, tool, SpanPhase::Start, n, start);
            }
            for (n, is_error) in [("s3", true), ("s2", false)] {
                let end = ToolEnd { name: "add", call_id: n, result: n, is_error };
                push(&mut fold, typed, tool, SpanPhase::Complete, n, end);
            }
            push(&mut fold, typed, llm, SpanPhase::Start, "s4", start(false, Some("m:b")));
            fold.push_kind(&EventKind::TextDelta { text: "answer".into() });
            push(&mut fold, typed, llm, SpanPhase::Complete, "s4", end(0));
            // A pattern's internal call keeps the answer.
            push(&mut fold, typed, llm, SpanPhase::Start, "s5", start(true, None));
            push(&mut fold, typed, llm, SpanPhase::Complete, "s5", end(0));
            fold.finish_as(3, StopReason::Completed).unwrap()
        };
        let (typed, mapped) = (run(true), run(false));
        assert_eq!(typed, mapped);
        assert_eq!((typed.text.as_str(), typed.model_calls, typed.tool_calls.len()), ("answer", 3, 2));
        assert!(typed.tool_calls[1].is_error && !typed.tool_calls[0].is_error);
        assert_eq!(typed.tool_calls[0].arguments, arguments);
    }

    #[test]
    fn typed_span_attributes_make_the_maps_spans_always_carried() {
        let arguments = json!({"a": 2});
        let start = ToolStart { name: "add", call_id: "c1", arguments: &arguments };
        assert_eq!(
            Value::Object(start.into_map()),
            json!({"tool_name": "add", "call_id": "c1", "arguments": {"a": 2}})
        );
        let end = ToolEnd { name: "add", call_id: "c1", result: "5", is_error: false };
        assert_eq!(
            Value::Object(end.into_map()),
            json!({"tool_name": "add", "call_id": "c1", "result": "5", "is_error": false})
        );
        let llm = LlmStart { model: "m:a", iteration: 2, internal: false, fallback_for: None };
        assert_eq!(Value::Object(llm.into_map()), json!({"model": "m:a", "iteration": 2}));
        let llm = LlmStart { model: "m:b", iteration: 1, internal: true, fallback_for: Some("m:a") };
        assert_eq!(
            Value::Object(llm.into_map()),
            json!({"model": "m:b", "iteration": 1, "internal": true, "fallback_for": "m:a"})
        );
        let end = LlmEnd { finish_reason: &FinishReason::Other("odd".into()), tool_calls: 1 };
        assert_eq!(
            Value::Object(end.into_map()),
            json!({"finish_reason": {"other": "odd"}, "tool_calls": 1})
        );
    }

    /// Pairs (the turn span's) are read in place and make the map their pairs say.
    #[test]
    fn pairs_fold_in_place_and_make_their_map() {
        let pairs = [("turn_number", json!(7)), ("note", json!("x"))];
        assert_eq!(pairs.attr("turn_number").and_then(Attr::as_u64), Some(7));
        assert!(pairs.attr("internal").is_none());
        // The fold reads them: an internal model call keeps the answer, another clears it.
        let text_after = |internal: bool| {
            let mut fold = TurnFold::default();
            let id: Arc<str> = "x".into();
            fold.note(&id, &id, (&id, &id));
            fold.push_kind(&EventKind::TextDelta { text: "answer".into() });
            let start = [("model", json!("m:a")), ("internal", json!(internal))];
            fold.push_span(SpanSubject::LlmCall, SpanPhase::Start, "s2", &start);
            fold.finish_as(1, StopReason::Completed).unwrap().text
        };
        assert_eq!((text_after(true).as_str(), text_after(false).as_str()), ("answer", ""));
        assert_eq!(Value::Object(pairs.into_map()), json!({"turn_number": 7, "note": "x"}));
    }

    #[test]
    fn span_ids_are_s_and_the_number() {
        for (n, id) in [(1, "s1"), (10, "s10"), (907, "s907"), (u64::MAX, "s18446744073709551615")] {
            assert_eq!(SpanId::of(n).as_str(), id);
        }
    }
}

//! [`RunStream`], the events of a run as a stream; polling it drives the run.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::Stream;

use crate::error::RunError;
use crate::events::Event;

type RunFuture = Pin<Box<dyn Future<Output = Result<(), RunError>> + Send>>;

/// The event stream of one run, from [`Runner::run`](crate::Runner::run).
///
/// The run makes progress only while the stream is polled, and dropping the stream cancels
/// the run (nothing is persisted for a turn that did not finish). Items are events in order;
/// a failed run ends with one `Err` after its `run_error` event.
#[must_use = "a run does nothing unless its stream is polled"]
pub struct RunStream {
    run: Option<RunFuture>,
    events: EventQueue,
    error: Option<RunError>,
}

impl RunStream {
    pub(crate) fn new(run: RunFuture, events: EventQueue) -> Self {
        Self { run: Some(run), events, error: None }
    }
}

/// The events a run has emitted and its stream has not yielded yet.
///
/// Not a channel: a run emits only while its stream polls it (the run's [`Emitter`] lives in
/// the run's future, and nothing of it is spawned), so the stream finds every event in the
/// queue right after polling the run and needs no waker of its own. A turn's events cost a
/// push and a pop each, with no per-run allocation beyond the queue's buffer.
///
/// [`Emitter`]: crate::emit::Emitter
#[derive(Debug, Clone)]
pub(crate) struct EventQueue(Arc<Mutex<VecDeque<Event>>>);

impl EventQueue {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Mutex::new(VecDeque::with_capacity(8))))
    }

    pub(crate) fn push(&self, event: Event) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push_back(event);
    }

    pub(crate) fn pop(&self) -> Option<Event> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).pop_front()
    }
}

impl fmt::Debug for RunStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunStream").field("running", &self.run.is_some()).finish_non_exhaustive()
    }
}

impl Stream for RunStream {
    type Item = Result<Event, RunError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        // What the last poll of the run emitted first: the run is polled again only once
        // they are all out.
        if let Some(event) = this.events.pop() {
            return Poll::Ready(Some(Ok(event)));
        }
        let Some(run) = this.run.as_mut() else {
            // The run ended and every event is out: its error, if it failed, then the end.
            return Poll::Ready(this.error.take().map(Err));
        };
        if let Poll::Ready(result) = run.as_mut().poll(cx) {
            this.run = None;
            this.error = result.err();
        }
        match this.events.pop() {
            Some(event) => Poll::Ready(Some(Ok(event))),
            None if this.run.is_none() => Poll::Ready(this.error.take().map(Err)),
            // The run is still going, emitted nothing this time, and has registered its wakers.
            None => Poll::Pending,
        }
    }
}

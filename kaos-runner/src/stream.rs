//! [`RunStream`], the events of a run as a stream; polling it drives the run.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc::UnboundedReceiver;

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
    events: UnboundedReceiver<Event>,
    error: Option<RunError>,
}

impl RunStream {
    pub(crate) fn new(run: RunFuture, events: UnboundedReceiver<Event>) -> Self {
        Self { run: Some(run), events, error: None }
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
        if let Some(run) = this.run.as_mut()
            && let Poll::Ready(result) = run.as_mut().poll(cx)
        {
            // The run's sender is dropped with it: the channel now ends after what is buffered.
            this.run = None;
            this.error = result.err();
        }
        match this.events.poll_recv(cx) {
            Poll::Ready(Some(event)) => Poll::Ready(Some(Ok(event))),
            Poll::Ready(None) => Poll::Ready(this.error.take().map(Err)),
            // The run is still going and has registered its wakers.
            Poll::Pending => Poll::Pending,
        }
    }
}

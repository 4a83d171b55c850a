//! Ctrl-C (SIGINT) and SIGTERM while a command may hold a session.
//!
//! The command's work runs through [`Interrupts::block_on`]. The first signal drops that work:
//! a turn is stored whole or not at all (its record is one append), and dropping what holds the
//! session gives its lock back — an object-store lease by its conditional release, awaited
//! before the drop returns; a disk lock by closing its file and removing its queue entry. The
//! command then ends with [`Interrupted`], and `kaos` exits with 130 (SIGINT) or 143 (SIGTERM).
//! A second signal while that release is under way exits at once. A signal while no work is
//! under way (between two turns of `kaos chat`) exits at once: nothing is held then.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::runtime::Runtime;
use tokio::sync::watch;

/// The signals that stop a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Ctrl-C.
    Interrupt,
    /// `kill` (SIGTERM).
    Terminate,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
        }
    }

    /// The shell's convention: 128 + the signal's number.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
        }
    }
}

/// The command was stopped by a signal; what it held has been given back.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted by {}: stopped without storing anything half-written (a turn is stored whole \
     or not at all) and released the session",
    .0.name()
)]
pub(crate) struct Interrupted(pub(crate) Signal);

#[derive(Debug, Default)]
struct State {
    /// How many [`Interrupts::block_on`] calls are under way.
    busy: usize,
    /// The first signal, once it came.
    signal: Option<Signal>,
}

/// The process's signal handling, from [`Interrupts::install`] on.
#[derive(Debug)]
pub(crate) struct Interrupts {
    state: Arc<Mutex<State>>,
    signals: watch::Receiver<Option<Signal>>,
}

impl Interrupts {
    /// Takes over SIGINT and SIGTERM for the rest of the process: from now on they stop the
    /// work under [`block_on`](Self::block_on) instead of killing the process outright.
    pub(crate) fn install(runtime: &Runtime) -> std::io::Result<Self> {
        let _entered = runtime.enter();
        let mut listener = Listener::new()?;
        let state = Arc::new(Mutex::new(State::default()));
        let (sender, signals) = watch::channel(None);
        let shared = Arc::clone(&state);
        runtime.spawn(async move {
            let first = listener.next().await;
            {
                let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
                state.signal = Some(first);
                if state.busy == 0 {
                    // Nothing is held: end as the signal would have ended the process.
                    std::process::exit(i32::from(first.exit_code()));
                }
            }
            eprintln!(
                "kaos: {}: stopping and releasing the session (press Ctrl-C again to quit at once)",
                first.name()
            );
            let _ = sender.send(Some(first));
            let again = listener.next().await;
            eprintln!(
                "kaos: {} again: quitting at once (a lease not yet released is free once its time to live has passed)",
                again.name()
            );
            std::process::exit(i32::from(again.exit_code()));
        });
        Ok(Self { state, signals })
    }

    /// Runs `work` to its end, or until the first signal, which drops it (and what it holds)
    /// before this returns [`Interrupted`].
    pub(crate) fn block_on<F: Future>(&self, runtime: &Runtime, work: F) -> Result<F::Output, Interrupted> {
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(signal) = state.signal {
                return Err(Interrupted(signal));
            }
            state.busy += 1;
        }
        // Counted as busy until the work, and so its release, is dropped.
        let _busy = Busy(Arc::clone(&self.state));
        let mut signals = self.signals.clone();
        runtime.block_on(async move {
            let interrupted = async {
                match signals.wait_for(Option::is_some).await {
                    Ok(signal) => signal.unwrap_or(Signal::Interrupt),
                    // The listener is gone (the runtime is shutting down): no signal will come.
                    Err(_) => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                signal = interrupted => Err(Interrupted(signal)),
                done = work => Ok(done),
            }
        })
    }
}

struct Busy(Arc<Mutex<State>>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.busy = state.busy.saturating_sub(1);
    }
}

/// SIGINT and SIGTERM (Ctrl-C alone where there is no SIGTERM).
struct Listener {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Listener {
    #[cfg(unix)]
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
    }

    #[cfg(not(unix))]
    fn new() -> std::io::Result<Self> {
        Ok(Self {})
    }

    #[cfg(unix)]
    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::Interrupt,
            _ = self.terminate.recv() => Signal::Terminate,
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> Signal {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        Signal::Interrupt
    }
}

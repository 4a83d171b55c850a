//! A small pool of threads of its own that a [`DiskVfs`](crate::DiskVfs) runs its blocking file
//! operations on: at most `limit` threads, started when work waits and none is idle, ended
//! after [`IDLE`] without work. Jobs wait their turn in arrival order.
//!
//! Why not tokio's blocking pool: it starts a thread whenever a job arrives and no thread is
//! idle *at that instant*, so on a busy machine (a thread that just finished is not yet back
//! in the pool when the next job comes) it grows to far more threads than jobs ever ran at
//! once: over a soak of 100,000 turns, 160 threads for 32 sessions in flight. Each costs a
//! stack, and with glibc each group of threads gets malloc arenas of its own that keep what
//! they once held; a long-running process keeps all of it.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// How long a thread without work waits before it ends.
pub(crate) const IDLE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Debug)]
pub(crate) struct IoPool {
    limit: usize,
    state: Mutex<State>,
    work: Condvar,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    threads: usize,
    /// Threads waiting for work.
    idle: usize,
    /// Wake-ups sent to waiting threads and not yet taken: a job queued while as many are on
    /// their way as there are waiting threads needs a thread of its own.
    woken: usize,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("jobs", &self.jobs.len())
            .field("threads", &self.threads)
            .field("idle", &self.idle)
            .field("woken", &self.woken)
            .finish()
    }
}

impl IoPool {
    /// A pool of at most `limit` threads (at least one).
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { limit: limit.max(1), state: Mutex::default(), work: Condvar::new() })
    }

    /// How many threads the pool may run.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// How many threads it runs now.
    #[cfg(test)]
    pub(crate) fn threads(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).threads
    }

    /// Queues `job`; an idle thread takes it, or a new one when none is idle and fewer than
    /// the limit run. When no thread can be started (the OS refuses) and none runs, the job
    /// runs here, on the caller's thread, rather than never.
    pub(crate) fn submit(self: &Arc<Self>, job: impl FnOnce() + Send + 'static) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.jobs.push_back(Box::new(job));
        if state.idle > state.woken {
            state.woken += 1;
            drop(state);
            self.work.notify_one();
            return;
        }
        if state.threads >= self.limit {
            return;
        }
        state.threads += 1;
        drop(state);
        let pool = Arc::clone(self);
        let started = std::thread::Builder::new().name("kaos-vfs-io".to_owned()).spawn(move || pool.work());
        if started.is_err() {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.threads -= 1;
            if state.threads == 0 {
                let jobs: Vec<Job> = state.jobs.drain(..).collect();
                drop(state);
                for job in jobs {
                    job();
                }
            }
        }
    }

    /// A thread's life: jobs until none came for [`IDLE`].
    fn work(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(job) = state.jobs.pop_front() {
                drop(state);
                // A panicking job drops its result channel: its caller gets an error.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.idle += 1;
            let (next, waited) = self.work.wait_timeout(state, IDLE).unwrap_or_else(PoisonError::into_inner);
            state = next;
            state.idle -= 1;
            state.woken = state.woken.saturating_sub(1);
            if waited.timed_out() && state.jobs.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn no_more_threads_than_the_limit_run_and_every_job_runs_once() {
        let pool = IoPool::new(3);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (done, finished) = std::sync::mpsc::channel();
        for _ in 0..200 {
            let (running, most, done) = (Arc::clone(&running), Arc::clone(&most), done.clone());
            pool.submit(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_micros(200));
                running.fetch_sub(1, Ordering::SeqCst);
                done.send(()).unwrap();
            });
            assert!(pool.threads() <= 3);
        }
        for _ in 0..200 {
            finished.recv_timeout(Duration::from_secs(30)).unwrap();
        }
        assert!(finished.try_recv().is_err());
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert!(pool.threads() <= 3);
    }

    #[test]
    fn a_panicking_job_leaves_the_pool_working() {
        let pool = IoPool::new(1);
        let (done, finished) = std::sync::mpsc::channel::<u32>();
        let gone = done.clone();
        pool.submit(move || {
            let _keep = gone;
            panic!("a job that panics");
        });
        pool.submit(move || done.send(7).unwrap());
        assert_eq!(finished.recv_timeout(Duration::from_secs(30)).unwrap(), 7);
        assert_eq!(pool.threads(), 1);
    }
}

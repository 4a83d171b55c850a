//! [`Sessions`]: the sessions stored in a VFS — list, read, export, delete — and
//! [`Sessions::take`], the one place that takes a session for a change (in-process lock, then
//! the VFS lock, then hydration from the cache or the store).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use kaos_agent::{MemoryProfile, SectionKind};
use kaos_providers::{Message, TokenCounter};
use kaos_vfs::{LocalLocks, Vfs, VfsLock, VfsPath};
use serde::Serialize;

use crate::cache::{InFlight, SessionCache};
use crate::store::{Hydrated, LogPosition, Salvaged, SessionStore};
use crate::{MemoryItem, SESSION_LAYOUT_VERSION, SessionError, SessionId, SessionMemory, TurnRecord};

/// The sessions stored in a VFS (`sessions/{id}/turns.jsonl`): list them, read their turns and
/// memory, export and delete them, and take one for a turn.
///
/// A `Sessions` is cheap to clone; clones share the in-process locks and the cache of hydrated
/// sessions, so a delete through one waits for a turn taken through another. A Runner's
/// `sessions()` is such a clone. [`Sessions::new`] over a VFS needs no agent and caches nothing.
///
/// ```
/// use std::sync::Arc;
/// use kaos_session::Sessions;
/// use kaos_vfs::MemoryVfs;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let sessions = Sessions::new(Arc::new(MemoryVfs::new()));
/// assert!(sessions.list().await?.is_empty());
/// assert_eq!(sessions.turns("demo").await?, None);
/// assert!(!sessions.delete("demo").await?);
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Sessions {
    store: SessionStore,
    locks: LocalLocks,
    cache: Arc<SessionCache>,
}

/// What [`Sessions::list`] reports about one session.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SessionSummary {
    /// The session.
    pub id: SessionId,
    /// Completed turns.
    pub turns: u32,
    /// Cost of all its turns in USD (priced model calls only).
    pub cost_usd: f64,
    /// Model calls of its turns without a price (not in `cost_usd`).
    pub unpriced_model_calls: u32,
    /// Tokens used by all its turns.
    pub total_tokens: u64,
    /// When its last turn finished, in milliseconds since the Unix epoch (`None`: no turns).
    pub last_turn_at_ms: Option<u64>,
}

/// A whole session as JSON-ready data: its full log and its current memory.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SessionExport {
    /// The session.
    pub session_id: String,
    /// The layout version this build writes.
    pub layout_version: u32,
    /// Completed turns.
    pub turns: u32,
    /// Every turn's record, oldest first (the full transcript).
    pub records: Vec<TurnRecord>,
    /// The current memory, by section (empty sections left out).
    pub memory: BTreeMap<SectionKind, Vec<MemoryItem>>,
}

/// How a taken session's memory was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hydration {
    /// From the cache: the log had not changed since this process's last turn on it.
    Cached,
    /// Read from the store (checkpoint, then the log after it).
    Loaded {
        /// Bytes of a torn last line that were dropped and cut from the log.
        dropped_tail: Option<usize>,
        /// Whether an unreadable checkpoint was ignored (the whole log was replayed).
        bad_checkpoint: bool,
    },
}

/// A session taken for a change: its in-process and VFS locks are held and its memory is
/// hydrated. [`TakenSession::commit`] appends a record and keeps the memory for the next turn;
/// dropping it without committing changes nothing and releases the locks.
#[derive(Debug)]
#[must_use = "the session is released as soon as this is dropped"]
pub struct TakenSession {
    /// The session.
    pub id: SessionId,
    /// Its memory, to change.
    pub memory: SessionMemory,
    /// How the memory was found.
    pub hydration: Hydration,
    /// What loading it repaired or ignored, one sentence each (empty when cached or clean):
    /// a dropped torn last line, an ignored checkpoint. Already logged with `tracing`; a
    /// front end shows them.
    pub repairs: Vec<String>,
    position: LogPosition,
    /// The session's log ([`SessionStore::log_path`]), built once per turn.
    log: VfsPath,
    /// Whether the memory was replayed from the store (not cached, not new).
    replayed: bool,
    store: SessionStore,
    /// The cache the memory goes back to; it counts this turn in flight meanwhile.
    cache: InFlight,
    // Released in this order: the VFS lock, then the in-process one.
    _vfs: VfsLock,
    _local: Option<VfsLock>,
}

impl TakenSession {
    /// Commits `record` (one append: the commit point; a checkpoint when due) and keeps the
    /// memory in the cache for the log version it just wrote. On error nothing is cached and the
    /// stored session is as it was (a failed append writes nothing a reader would take).
    ///
    /// The VFS lock is then released and the release awaited (for a lease on object storage:
    /// stored), so a process that exits right after the turn leaves no lock behind.
    ///
    /// The commit runs to its end: a caller that stops waiting (a dropped run, Ctrl-C, an HTTP
    /// client that went away) cannot release the locks while a write it started is still
    /// landing (a disk append finishes on a blocking thread), which would let the next holder
    /// write the same turn number. Such a turn is stored whole. The commit is polled by its
    /// caller (no task, no thread hop) and moved to a task of its own only if the caller drops
    /// it before its end.
    pub async fn commit(self, record: TurnRecord) -> Result<(), SessionError> {
        let prepared = self.prepare(&record)?;
        drop(record);
        self.commit_prepared(prepared).await
    }

    /// Encodes `record` as the session's next log line, for [`TakenSession::commit_prepared`]:
    /// the record can then be taken apart (its messages moved into memory rather than copied)
    /// before the commit, which needs only the line.
    /// [`SessionError::Encode`] when the record cannot be written as JSON.
    pub fn prepare(&self, record: &TurnRecord) -> Result<PreparedRecord, SessionError> {
        let line = crate::store::encode(record).map_err(SessionError::Encode)?;
        let checkpoint =
            SessionStore::checkpoint_due(self.position, line.len() as u64).then(|| record.run_id.clone());
        Ok(PreparedRecord { line, checkpoint })
    }

    /// [`TakenSession::commit`] of a record encoded by [`TakenSession::prepare`] (of this
    /// taken session: its memory is what the record changed).
    pub async fn commit_prepared(self, prepared: PreparedRecord) -> Result<(), SessionError> {
        // Written straight into its box, not built on the stack and copied in (~1.3 KB).
        RunToEnd(Some(Box::into_pin(Box::write(Box::new_uninit(), self.finish(prepared))))).await
    }

    async fn finish(self, PreparedRecord { line, checkpoint }: PreparedRecord) -> Result<(), SessionError> {
        let (position, stamp) =
            self.store.commit((&self.id, &self.log), &self.memory, line, checkpoint, self.position).await?;
        let stamp = match stamp {
            Some(stamp) => stamp,
            None => self.store.stamp(&self.log).await?,
        };
        let mut memory = self.memory;
        if self.replayed {
            // Replayed from the log: its allocations were made between those of the replay
            // (the log's bytes, its parsed records), which are freed now. Cached as a fresh
            // copy, it is laid out together, every list exactly as long as it holds, so the
            // holes the replay leaves are whole and are reused, rather than pinned open by
            // cached pieces between them: over a soak of 100,000 turns on 10,000 sessions
            // (every turn a replay), resident memory after the last turn went from 22.3 to
            // 18.5 MB. (Shrinking the lists in place reached 22.3.) A cached session's lists
            // grow as usual.
            memory = memory.clone();
        } else if matches!(self.hydration, Hydration::Loaded { .. }) {
            // A new session: its lists were just made; kept exactly as long as they hold, a
            // cached session costs what it holds (copying it would cost its first turn more).
            memory.shrink_to_fit();
        }
        self.cache.cache().put(self.id.clone(), memory, position, stamp);
        // The turn is stored: a failed release only delays the next holder (expiry frees it).
        if let Err(error) = self._vfs.release().await {
            tracing::warn!(session = %self.id, %error, "could not release the session lock");
        }
        Ok(())
    }
}

/// A turn's record encoded as the session's next log line ([`TakenSession::prepare`]), to be
/// committed with [`TakenSession::commit_prepared`].
#[derive(Debug)]
#[must_use = "nothing is stored until it is committed"]
pub struct PreparedRecord {
    line: Vec<u8>,
    /// The record's run, when a checkpoint is due after this line.
    checkpoint: Option<Arc<str>>,
}

/// A future that runs to its end: polled by its owner, and, if the owner drops it before it
/// is done, spawned onto the current tokio runtime to finish there (without a runtime, as when
/// one shuts down, it is dropped).
struct RunToEnd<F: Future<Output = Result<(), SessionError>> + Send + 'static>(Option<Pin<Box<F>>>);

impl<F: Future<Output = Result<(), SessionError>> + Send + 'static> Future for RunToEnd<F> {
    type Output = Result<(), SessionError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.0.as_mut() else { return Poll::Ready(Err(SessionError::CommitInterrupted)) };
        let result = std::task::ready!(inner.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(result)
    }
}

impl<F: Future<Output = Result<(), SessionError>> + Send + 'static> Drop for RunToEnd<F> {
    fn drop(&mut self) {
        if let (Some(rest), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move {
                if let Err(error) = rest.await {
                    tracing::warn!(%error, "a commit whose caller went away failed");
                }
            });
        }
    }
}

impl Sessions {
    /// The sessions stored in `vfs`, with no cache of hydrated sessions.
    pub fn new(vfs: Arc<dyn Vfs>) -> Self {
        Self::with_cache(vfs, 0)
    }

    /// The sessions stored in `vfs`, keeping up to `capacity` hydrated sessions between turns
    /// (validated against the log on every take, so sessions shared with other processes stay
    /// correct), holding at most about [`DEFAULT_CACHE_BYTES`](crate::DEFAULT_CACHE_BYTES) of
    /// memory.
    pub fn with_cache(vfs: Arc<dyn Vfs>, capacity: usize) -> Self {
        Self::with_cache_limits(vfs, capacity, crate::DEFAULT_CACHE_BYTES)
    }

    /// [`Sessions::with_cache`] keeping at most `sessions` hydrated sessions and about `bytes`
    /// bytes of their memory ([`SessionMemory::approx_heap_bytes`]); the least recently used
    /// are evicted first, and a session bigger than `bytes` alone is not kept. `0` of either
    /// keeps nothing.
    pub fn with_cache_limits(vfs: Arc<dyn Vfs>, sessions: usize, bytes: usize) -> Self {
        Self {
            store: SessionStore::new(vfs),
            locks: LocalLocks::default(),
            cache: Arc::new(SessionCache::new(sessions, bytes)),
        }
    }

    /// How many hydrated sessions the cache keeps now, and about how many bytes of memory
    /// they hold ([`SessionMemory::approx_heap_bytes`] of each, as it was put).
    pub fn cache_usage(&self) -> (usize, usize) {
        self.cache.usage()
    }

    /// The VFS the sessions are stored in.
    pub fn vfs(&self) -> &Arc<dyn Vfs> {
        self.store.vfs()
    }

    /// Takes `id` for a change: the in-process lock (fair, in arrival order), then the VFS
    /// lock (across processes; in arrival order on a disk VFS), then its memory — cached when
    /// the log is exactly as this process left it, else loaded (a torn last line is cut from
    /// the log first; an inconsistent checkpoint is ignored; both are listed in
    /// [`TakenSession::repairs`]). A new session's log is created first, so a session that
    /// cannot be stored fails here ([`SessionError::Unwritable`]), before any model call.
    pub async fn take(
        &self,
        id: &SessionId,
        profile: &MemoryProfile,
        counter: Arc<dyn TokenCounter>,
    ) -> Result<TakenSession, SessionError> {
        let local = self.local_lock(id).await;
        let vfs = self.store.lock(id).await?;
        let log = SessionStore::log_path(id)?;
        let stamp = self.store.stamp(&log).await?;
        // A session with nothing stored at all (no directory: no log, no checkpoint, no files)
        // starts from empty memory without reading anything. One that has a directory but an
        // empty or missing log is loaded as usual (a checkpoint there is checked, and reported
        // when ignored).
        let fresh = stamp.len == 0 && !self.store.vfs().exists(&SessionStore::dir(id)?).await?;
        if stamp.len == 0 {
            // A new (or empty) session: fail now, before the turn spends anything, if its log
            // cannot be written (e.g. its directory is a symlink).
            self.store.ensure_writable(id, &log).await?;
        }
        let in_flight = self.cache.enter();
        let cached = if fresh { None } else { self.cache.take(id, stamp, profile, counter.clone()) };
        let replayed = cached.is_none() && !fresh;
        let (memory, position, hydration, repairs) = match cached {
            Some((memory, position)) => (memory, position, Hydration::Cached, Vec::new()),
            // What loading an absent session gives, without the reads.
            None if fresh => (
                SessionMemory::new(profile, counter),
                LogPosition::default(),
                Hydration::Loaded { dropped_tail: None, bad_checkpoint: false },
                Vec::new(),
            ),
            None => {
                let Hydrated { memory, position, dropped_tail, bad_checkpoint, repairs } =
                    self.store.load_for_write(id, profile, counter).await?;
                (memory, position, Hydration::Loaded { dropped_tail, bad_checkpoint }, repairs)
            }
        };
        Ok(TakenSession {
            id: id.clone(),
            memory,
            hydration,
            repairs,
            position,
            log,
            replayed,
            store: self.store.clone(),
            cache: in_flight,
            _vfs: vfs,
            _local: local,
        })
    }

    /// The ids of every stored session, sorted (cheap: reads no log).
    pub async fn ids(&self) -> Result<Vec<SessionId>, SessionError> {
        self.store.list().await
    }

    /// Every stored session, sorted by id. Reads every session's log (cost grows with the
    /// total size of the logs). Directories under `sessions/` that are not valid session ids
    /// are skipped.
    pub async fn list(&self) -> Result<Vec<SessionSummary>, SessionError> {
        let mut out = Vec::new();
        for id in self.store.list().await? {
            // Records without messages only changed memory; they are not turns.
            let records: Vec<TurnRecord> =
                self.store.records(&id).await?.into_iter().filter(|r| !r.messages.is_empty()).collect();
            out.push(SessionSummary {
                turns: u32::try_from(records.len()).unwrap_or(u32::MAX),
                cost_usd: records.iter().map(|r| r.cost_usd).sum(),
                unpriced_model_calls: records.iter().map(|r| r.unpriced_model_calls).sum(),
                total_tokens: records.iter().map(|r| r.usage.total_tokens()).sum(),
                last_turn_at_ms: records.last().map(|r| r.finished_at_ms),
                id,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The session's turns, oldest first; `None` when the session has no stored turns. A torn
    /// last line is left out (it is repaired by the next change, not by reading).
    pub async fn turns(&self, session_id: &str) -> Result<Option<Vec<TurnRecord>>, SessionError> {
        let id = SessionId::new(session_id)?;
        let records = self.store.records(&id).await?;
        Ok(if records.is_empty() { None } else { Some(records) })
    }

    /// What can still be read of a session whose log is corrupt (see
    /// [`SessionStore`](crate::Salvaged)): its intact records, and the lines left out. Changes
    /// nothing.
    pub async fn salvage(&self, session_id: &str) -> Result<Salvaged, SessionError> {
        let id = SessionId::new(session_id)?;
        self.store.salvage(&id).await
    }

    /// [`Sessions::export`] of a damaged session: its intact records (see
    /// [`Sessions::salvage`]) and the memory they rebuild (the checkpoint is not used), with
    /// the lines left out. Takes no lock, like [`Sessions::export`]: it never waits for a turn
    /// in progress (whose record, on a disk VFS, may show as a torn last line while it is being
    /// appended).
    pub async fn export_salvaged(
        &self,
        id: &SessionId,
        profile: &MemoryProfile,
        counter: Arc<dyn TokenCounter>,
    ) -> Result<(SessionExport, Vec<(usize, String)>), SessionError> {
        let Salvaged { records, skipped } = self.store.salvage(id).await?;
        if records.is_empty() {
            self.store.vfs().stat(&SessionStore::dir(id)?).await?;
        }
        let mut memory = SessionMemory::new(profile, counter);
        for record in records.iter().cloned() {
            crate::store::replay(&mut memory, record);
        }
        let export = SessionExport {
            session_id: id.to_string(),
            layout_version: SESSION_LAYOUT_VERSION,
            turns: memory.turn(),
            records,
            memory: memory
                .sections()
                .filter(|s| !s.items().is_empty())
                .map(|s| (s.kind(), s.items().to_vec()))
                .collect(),
        };
        Ok((export, skipped))
    }

    /// The full stored conversation of a session, oldest first (empty for an unknown session).
    /// This is the transcript, not what the model sees: memory may have evicted or summarized
    /// older messages (see [`Sessions::memory`]).
    pub async fn history(&self, id: &SessionId) -> Result<Vec<Message>, SessionError> {
        let records = self.store.records(id).await?;
        Ok(records.into_iter().flat_map(|r| r.messages).collect())
    }

    /// A session's memory as the next turn would see it (empty for an unknown session), under
    /// `profile`. Takes no lock (the log is append-only and every VFS write is atomic), so it
    /// never waits for a turn in progress, in this process or another.
    pub async fn memory(
        &self,
        id: &SessionId,
        profile: &MemoryProfile,
        counter: Arc<dyn TokenCounter>,
    ) -> Result<SessionMemory, SessionError> {
        Ok(self.store.load(id, profile, counter).await?.memory)
    }

    /// The whole session as JSON-ready data, its memory under `profile`. `NotFound`
    /// ([`SessionError::Vfs`]) for an unknown session. Takes no lock, like
    /// [`Sessions::memory`]: exporting never waits for a turn in progress.
    pub async fn export(
        &self,
        id: &SessionId,
        profile: &MemoryProfile,
        counter: Arc<dyn TokenCounter>,
    ) -> Result<SessionExport, SessionError> {
        let records = self.store.records(id).await?;
        if records.is_empty() {
            self.store.vfs().stat(&SessionStore::dir(id)?).await?;
        }
        let hydrated = self.store.load(id, profile, counter).await?;
        Ok(SessionExport {
            session_id: id.to_string(),
            layout_version: SESSION_LAYOUT_VERSION,
            turns: hydrated.memory.turn(),
            records,
            memory: hydrated
                .memory
                .sections()
                .filter(|s| !s.items().is_empty())
                .map(|s| (s.kind(), s.items().to_vec()))
                .collect(),
        })
    }

    /// The in-process lock of `id`, taken before the VFS's: cheap and fair while another task
    /// of this process holds the session, whatever the VFS's own lock costs. `None` when the
    /// VFS's lock starts with such a lock itself ([`Vfs::locks_in_process_first`]).
    async fn local_lock(&self, id: &SessionId) -> Option<VfsLock> {
        if self.store.vfs().locks_in_process_first() {
            return None;
        }
        Some(self.locks.lock(id.as_str()).await)
    }

    /// Deletes the session and everything stored under it (its files too), after the turn in
    /// progress on it (in this process or another) has finished. Returns whether there was
    /// anything to delete.
    pub async fn delete(&self, session_id: &str) -> Result<bool, SessionError> {
        let id = SessionId::new(session_id)?;
        let _local = self.local_lock(&id).await;
        let _lock = self.store.lock(&id).await?;
        self.cache.forget(&id);
        match self.store.delete(&id).await {
            Ok(()) => Ok(true),
            Err(SessionError::Vfs(e)) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::io_pool::IoPool;
use crate::{EntryKind, Metadata, Vfs, VfsEntry, VfsError, VfsLock, VfsPath};

/// Marks DiskVfs temp files: `.{name}.kaos-tmp-{pid}-{counter}`. Names holding it are reserved.
const TEMP_MARKER: &str = ".kaos-tmp-";
/// How much of the target name a temp name keeps (the full name could overflow 255 bytes).
const TEMP_NAME_KEEP: usize = 100;
/// Stripes of the in-process append lock (appends to different files rarely contend).
const APPEND_STRIPES: usize = 16;
/// How often a mutation is retried when a concurrent `delete` prunes a directory under it.
const PRUNE_RETRIES: usize = 8;
/// How many open append handles, and how many open lock handles, a `DiskVfs` keeps between
/// calls (when full, another is closed to make room); each append handle is one open file,
/// each lock handle two.
const HANDLE_CACHE: usize = 128;

/// The longest append [`DiskVfs`] writes in place, on the calling thread, into a file it keeps
/// open (a turn's log line is well under it); longer ones are written on the blocking pool.
const IN_PLACE_APPEND: usize = 64 * 1024;

/// Tells temp files apart within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A VFS rooted at a directory on the local disk.
///
/// - [`write`](Vfs::write) writes a temp file next to the target, fsyncs it, renames it over
///   the target and fsyncs the directory: readers and crashes see the old or the new bytes.
///   Temp files never show up in [`list`](Vfs::list); names containing `.kaos-tmp-` after a
///   leading `.` are reserved for them and rejected with [`VfsError::InvalidPath`].
/// - [`append`](Vfs::append) opens the file with `O_APPEND` and writes the buffer in one
///   `write_all` under an in-process lock, so appends from one process never interleave;
///   between processes, `O_APPEND` keeps each append whole in practice. Appends are not
///   fsynced unless [`with_synced_appends`](DiskVfs::with_synced_appends) says so: after a
///   machine crash the last appends may be lost or torn, and readers of logs must tolerate a
///   last line without its `\n`. Synced appends are committed in groups: appends that arrive
///   while an fsync is under way are made durable together by the next one (see
///   [`with_synced_appends`](DiskVfs::with_synced_appends)).
/// - Directories are implicit, as in every backend: `write` and `append` create parents, and
///   `delete` removes parents left empty.
/// - **Symlinks are never followed.** A path whose component (below the root) is a symlink, or
///   anything other than a regular file or directory, is treated as missing: `NotFound` for
///   reads, writes, appends, stat and delete; `false` for exists; empty for list. Such entries
///   are left out of listings. The error is the same as for a path that does not exist.
///   The checks walk the path before each operation; they do not defend against a process
///   that swaps directories for symlinks inside the root *during* an operation.
/// - [`truncate`](Vfs::truncate) cuts the file in place (`ftruncate`, then `fsync`); it and
///   `write` remove the temp files a dead process left in the directory of the file they
///   change (a temp name carries its writer's pid; on Linux a pid with no `/proc` entry is
///   dead; a live pid's temp files, and any elsewhere, are kept).
/// - [`lock`](Vfs::lock) is fair across processes: waiters queue on disk and are served in
///   arrival order (see [`Vfs::lock`] below).
/// - Every blocking call runs on the VFS's own IO threads (a few; see
///   [`with_io_threads`](DiskVfs::with_io_threads)), and a round of synced appends' fsyncs
///   on tokio's blocking pool, so a tokio runtime must be running. What cannot wait on the
///   disk for long runs in place: the uncontended lock, the `stat` of a file with an open
///   handle, and an append of up to 64 KiB to such a file (a copy into the page cache; a
///   synced one then waits for its commit round without holding a thread). Errors carry VFS
///   paths, never host paths.
/// - Open handles are kept between calls (up to 128 appended files and 128 locks; when full,
///   another is closed to make room): a session's log and lock files are not re-opened every
///   turn. Before each use a kept handle is checked with one `stat` of its path, so a file
///   deleted, replaced or re-created by anyone (another process included) is opened afresh.
///
/// Cloning is cheap and clones share the root, the append locks and the kept handles.
#[derive(Debug, Clone)]
pub struct DiskVfs {
    shared: Arc<Shared>,
    /// The threads its file operations run on (see [`DiskVfs::with_io_threads`]).
    io: Arc<IoPool>,
    sync_appends: bool,
    lock_timeout: Duration,
}

/// How long [`Vfs::lock`] waits for another holder by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Shared {
    root: PathBuf,
    append_locks: [Mutex<()>; APPEND_STRIPES],
    hasher: RandomState,
    commits: GroupCommit,
    handles: Handles,
    /// Fsyncs of directories given new entries by synced appends, started in the background
    /// as soon as the entries are made (see [`DirJob`]); the next commit, `write`, `sync` or
    /// `truncate` waits for them. So a new session's directory entries are made durable while
    /// its turn runs, alongside its first append's own `fdatasync`, not after it.
    dir_jobs: Mutex<Vec<Arc<DirJob>>>,
}

/// The fsync of one directory whose new entries must become durable before the next commit
/// returns: queued on tokio's blocking pool when the entry is made, and run by whoever gets to
/// it first — that pool, or a commit waiting for it (so a commit never waits on a pool that
/// is full of commits waiting).
#[derive(Debug)]
struct DirJob {
    dir: PathBuf,
    state: Mutex<JobState>,
    done: Condvar,
}

#[derive(Debug, Clone)]
enum JobState {
    /// Not started: an fsync run from now on covers every entry made so far.
    Queued,
    Running,
    Done(Result<(), (io::ErrorKind, String)>),
}

impl DirJob {
    fn new(dir: PathBuf) -> Self {
        Self { dir, state: Mutex::new(JobState::Queued), done: Condvar::new() }
    }

    fn state(&self) -> JobState {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Runs the fsync unless someone else has started it.
    fn run(&self) {
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if !matches!(*state, JobState::Queued) {
                return;
            }
            *state = JobState::Running;
        }
        let outcome = match sync_dir(&self.dir) {
            // Removed since (a session deleted before its first commit): nothing to keep.
            Err(e) if is_missing(&e) => Ok(()),
            other => other.map_err(|e| (e.kind(), e.to_string())),
        };
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = JobState::Done(outcome);
        self.done.notify_all();
    }

    /// Waits for the fsync (running it here when nobody has started it).
    fn wait(&self) -> io::Result<()> {
        self.run();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match &*state {
                JobState::Done(outcome) => {
                    return outcome.clone().map_err(|(kind, message)| io::Error::new(kind, message));
                }
                JobState::Queued | JobState::Running => {
                    state = self.done.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }
}

/// When `prepare_file` makes the directories it creates durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirSync {
    /// At once (each new directory's parent is fsynced): `write`.
    Now,
    /// Started in the background, waited for by the next commit: synced appends (see
    /// `Shared::dir_jobs`).
    Defer,
    /// Never: appends that are not synced, and lock files (a lock need not survive a crash).
    Skip,
}

/// Which file a handle is open on: (device, inode). A path still names the file a handle is
/// open on exactly when a `stat` of the path gives the same identity (an open file's inode
/// number cannot be reused while the handle keeps it).
type FileId = (u64, u64);

#[cfg(unix)]
fn file_id(meta: &fs::Metadata) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt as _;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &fs::Metadata) -> Option<FileId> {
    None
}

/// Open handles kept between calls, so a session's turn does not re-open its log and its lock
/// files: each is checked with one `stat` of its path before use (a file replaced, deleted or
/// re-created by anyone is opened afresh), and dropped by this VFS's own `write` and `delete`.
#[derive(Debug, Default)]
struct Handles {
    /// `O_APPEND` handles of appended files, by VFS path.
    appends: Mutex<HashMap<String, (Arc<File>, FileId)>>,
    /// Lock files with their lock's `waiters` file, by VFS path of the lock; taken out while
    /// the lock is held (an OS lock belongs to the open file, so two holders never share one).
    locks: Mutex<HashMap<String, LockFiles>>,
}

/// A lock's open files: the lock file and its lock's `waiters` file.
#[derive(Debug)]
struct LockFiles {
    lock: File,
    waiters: File,
    id: FileId,
}

/// Inserts into a bounded handle map, dropping another entry when it is full.
fn insert_bounded<V>(map: &mut HashMap<String, V>, key: String, value: V) {
    if map.len() >= HANDLE_CACHE
        && !map.contains_key(&key)
        && let Some(old) = map.keys().next().cloned()
    {
        map.remove(&old);
    }
    map.insert(key, value);
}

impl Handles {
    fn append(&self, key: &str) -> Option<(Arc<File>, FileId)> {
        self.appends.lock().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    fn keep_append(&self, key: &str, file: Arc<File>, id: FileId) {
        let mut map = self.appends.lock().unwrap_or_else(PoisonError::into_inner);
        insert_bounded(&mut map, key.to_owned(), (file, id));
    }

    fn take_lock(&self, key: &str) -> Option<LockFiles> {
        self.locks.lock().unwrap_or_else(PoisonError::into_inner).remove(key)
    }

    fn keep_lock(&self, key: &str, files: LockFiles) {
        let mut map = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        insert_bounded(&mut map, key.to_owned(), files);
    }

    /// Drops the handles of `path` and of everything below it.
    fn forget(&self, path: &VfsPath) {
        let prefix = path.as_str();
        let under = |key: &String| {
            prefix.is_empty()
                || key.as_str() == prefix
                || key.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
        };
        self.appends.lock().unwrap_or_else(PoisonError::into_inner).retain(|key, _| !under(key));
        self.locks.lock().unwrap_or_else(PoisonError::into_inner).retain(|key, _| !under(key));
    }
}

/// Group commit of synced appends: an append writes its bytes, queues its file and waits until
/// an fsync started after its write has finished. One blocking thread at a time leads: it takes
/// every queued file and makes them durable at once (see [`sync_files`]), then the files queued
/// meanwhile, and so on until none is left, while the appends wait asynchronously (a oneshot
/// channel each), holding no thread. So N sessions appending at once share fsyncs instead of
/// paying one each, a round wakes only the appends it committed, once each, and no append
/// returns before its bytes are durable.
#[derive(Debug, Default)]
struct GroupCommit {
    queue: Mutex<CommitQueue>,
}

#[derive(Debug, Default)]
struct CommitQueue {
    /// Files written and waiting for an fsync, with where their append waits.
    pending: Vec<Pending>,
    /// Whether a leader is syncing right now (it takes what is queued before it stops).
    leading: bool,
}

/// One append waiting for its commit.
#[derive(Debug)]
struct Pending {
    file: Arc<File>,
    path: VfsPath,
    done: tokio::sync::oneshot::Sender<Result<(), VfsError>>,
}

impl GroupCommit {
    /// Queues `file`'s written bytes to be made durable, together with whatever else is queued
    /// and the new directory entries of `shared` (the round's leader waits for the directory
    /// fsyncs after syncing its batch: every directory an append of the batch created had its
    /// fsync started before that append's write). The outcome goes to `done`. When no round is
    /// under way, the calling (blocking) thread leads rounds until the queue is empty.
    fn commit(&self, pending: Pending, shared: &Shared) {
        if self.enqueue(pending) {
            self.lead(shared);
        }
    }

    /// Queues `pending`; `true` when no round is under way, so the caller must lead (see
    /// [`GroupCommit::lead`]).
    fn enqueue(&self, pending: Pending) -> bool {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.pending.push(pending);
        !std::mem::replace(&mut queue.leading, true)
    }

    /// Fails every queued append and gives up the lead: what a leader that never ran (its
    /// blocking task dropped unrun, as a runtime shuts down) or that unwound leaves behind,
    /// so no append waits for a leader that is gone and a later append leads again.
    fn abdicate(&self, why: &str) {
        let batch = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.leading = false;
            std::mem::take(&mut queue.pending)
        };
        for Pending { path, done, .. } in batch {
            let _ = done.send(Err(gone(&path, why)));
        }
    }

    /// Leads rounds on the calling (blocking) thread until the queue is empty: each round
    /// makes everything queued so far durable at once, outside the queue's lock.
    fn lead(&self, shared: &Shared) {
        self.lead_rounds(shared, usize::MAX);
    }

    /// Leads at most `rounds` rounds (see [`GroupCommit::lead`]); `true` when it gave up the
    /// lead (the queue was empty), `false` when appends are still queued and it still leads.
    fn lead_rounds(&self, shared: &Shared, rounds: usize) -> bool {
        // Should a round ever unwind, the appends queued behind it fail instead of waiting
        // for a leader that is gone.
        struct Abdicate<'a>(&'a GroupCommit);
        impl Drop for Abdicate<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.abdicate("the commit round unwound");
                }
            }
        }
        let _abdicate = Abdicate(self);
        for round in 0.. {
            // Lead one round: sync everything queued so far, outside the queue's lock.
            let batch = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                if queue.pending.is_empty() {
                    queue.leading = false;
                    return true;
                }
                if round == rounds {
                    return false;
                }
                std::mem::take(&mut queue.pending)
            };
            let outcome = sync_files(&batch)
                .and_then(|()| shared.sync_deferred_dirs())
                .map_err(|e| (e.kind(), e.to_string()));
            for Pending { path, done, .. } in batch {
                let outcome =
                    outcome.clone().map_err(|(kind, message)| io_error(&path, io::Error::new(kind, message)));
                // An append whose caller went away: its bytes are durable all the same.
                let _ = done.send(outcome);
            }
        }
        false
    }
}

/// The leader of commit rounds, sent to the blocking pool by an append made in place that found
/// no round under way. Dropped without running (its runtime shutting down), it gives up the
/// lead, failing the appends queued, so none waits for it forever.
struct Leader(Option<Arc<Shared>>);

impl Leader {
    fn lead(mut self) {
        if let Some(shared) = self.0.take() {
            shared.commits.lead(&shared);
        }
    }

    /// Leads the round of the append that made it leader on the calling thread when that
    /// thread is one a multi-thread runtime does not run tasks on (the thread of a `block_on`,
    /// as in a program that waits for its turn): it is blocked until the turn ends anyway, and
    /// a lone durable append then costs its `fdatasync` and no thread hop (handing the fsync to
    /// the blocking pool and being woken after it cost 50–120 µs on this VM, up to half the
    /// `fdatasync` itself). A task's append, and any round after the first, is led on the
    /// blocking pool, so no worker blocks on a disk (which with many sessions committing at
    /// once cost more than it saved).
    fn lead_here_or_spawn(mut self) {
        let blocked_anyway = tokio::task::try_id().is_none()
            && tokio::runtime::Handle::try_current()
                .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if blocked_anyway && let Some(shared) = self.0.take() {
            if shared.commits.lead_rounds(&shared, 1) {
                return;
            }
            // Appends queued during the round: the pool leads on, this append's turn goes on.
            self.0 = Some(shared);
        }
        drop(tokio::task::spawn_blocking(move || self.lead()));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.commits.abdicate("the commit round never ran");
        }
    }
}

/// Makes the written bytes of every pending append durable. One append: one `fdatasync` of its
/// file. Several, on Linux: one `syncfs` of the filesystem (every file is under the one root),
/// which writes them all out and flushes the disk once. Measured on ext4 (shared, busy disk):
/// with 100 files one `syncfs` cost about two `fdatasync`s of one file, and 100 `fdatasync`s
/// one after the other 1.5 to 50 times as much; 100 at once, from 100 threads, took as long as
/// the `syncfs` but ten times its CPU. Elsewhere: an `fdatasync` of each file. (New directory
/// entries are not made durable here: see [`DirJob`].)
fn sync_files(batch: &[Pending]) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if let Some(first) = batch.first()
        && batch.len() > 1
    {
        return rustix::fs::syncfs(&*first.file).map_err(io::Error::from);
    }
    let mut synced: Vec<*const File> = Vec::with_capacity(batch.len());
    for pending in batch {
        let file = Arc::as_ptr(&pending.file);
        if !synced.contains(&file) {
            pending.file.sync_data()?;
            synced.push(file);
        }
    }
    Ok(())
}

impl DiskVfs {
    /// [`Vfs::append`], and with `stat` the file's metadata after an append written in place.
    async fn append_reporting(
        &self,
        path: &VfsPath,
        data: Bytes,
        stat: bool,
    ) -> Result<Option<Metadata>, VfsError> {
        check_reserved(path)?;
        let sync = self.sync_appends;
        // A short append to a file with a kept handle is written in place (see
        // `Shared::append_in_place`); a synced one is then queued for its commit, and only the
        // round's leader, when none is under way, goes to the blocking pool. So N sessions
        // appending at once cost one blocking thread per round, not one each.
        if data.len() <= IN_PLACE_APPEND
            && let Some(written) = self.shared.append_in_place(path, &data)
        {
            let file = written?;
            let meta = if stat {
                file.metadata().ok().map(|meta| Metadata::file(meta.len(), meta.modified().ok()))
            } else {
                None
            };
            if !sync || data.is_empty() {
                return Ok(meta);
            }
            let (done, outcome) = tokio::sync::oneshot::channel();
            if self.shared.commits.enqueue(Pending { file, path: path.clone(), done }) {
                Leader(Some(Arc::clone(&self.shared))).lead_here_or_spawn();
            }
            return outcome
                .await
                .unwrap_or_else(|_| Err(gone(path, "the commit round ended")))
                .map(|()| meta);
        }
        let shared = Arc::clone(&self.shared);
        let owned = path.clone();
        let (done, outcome) = tokio::sync::oneshot::channel();
        // The append runs to its end even if this future is dropped; its outcome comes back on
        // `done` (a synced one's once its commit round is over). A synced one runs on tokio's
        // blocking pool (it waits there for its group's fsync); the others on the IO threads.
        let append = move || {
            let path = owned;
            let written = (|| {
                let guard = shared.append_lock(&path).lock().unwrap_or_else(PoisonError::into_inner);
                let file = shared.append_handle(&path, sync)?;
                shared.write_appended(&path, file, &data, guard)
            })();
            match written {
                // Nothing written, nothing to make durable (a new file's directory entries
                // are made durable by the first commit after them).
                Ok(file) if sync && !data.is_empty() => {
                    shared.commits.commit(Pending { file, path, done }, &shared);
                }
                written => {
                    let _ = done.send(written.map(drop));
                }
            }
        };
        if sync {
            drop(tokio::task::spawn_blocking(append));
        } else {
            self.io.submit(append);
        }
        outcome.await.unwrap_or_else(|_| Err(gone(path, "the append's thread ended"))).map(|()| None)
    }

    /// A VFS rooted at `root`, which is created (with its parents) when missing and then
    /// canonicalized, so a symlink *above* the root is resolved once, here.
    ///
    /// Errors with [`VfsError::Io`] when the directory cannot be created or resolved, or is not
    /// a directory.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, VfsError> {
        let root = root.into();
        let io = |source| VfsError::Io { path: root.display().to_string(), source };
        fs::create_dir_all(&root).map_err(io)?;
        let root = fs::canonicalize(&root).map_err(io)?;
        if !fs::metadata(&root).map_err(io)?.is_dir() {
            return Err(io(io::Error::other("the VFS root is not a directory")));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                root,
                append_locks: std::array::from_fn(|_| Mutex::new(())),
                hasher: RandomState::new(),
                commits: GroupCommit::default(),
                handles: Handles::default(),
                dir_jobs: Mutex::default(),
            }),
            io: IoPool::new(default_io_threads()),
            sync_appends: false,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        })
    }

    /// How long [`lock`](Vfs::lock) waits for another holder before giving up with
    /// [`VfsError::LockTimeout`] (default [`DEFAULT_LOCK_TIMEOUT`]).
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The canonical directory everything lives under.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// Whether [`append`](Vfs::append) makes its bytes durable before returning (default
    /// `false`). Turning it on makes acknowledged appends survive a machine crash. Appends are
    /// committed in groups: every append waits for an fsync that started after its write, and
    /// appends made while one fsync runs (other sessions' turns) share the next one, so many
    /// concurrent appenders cost far fewer fsyncs than appends. Clones share the group.
    /// The entries of the files and directories such appends create are made durable too:
    /// each new entry's directory is fsynced in the background as soon as the entry is made,
    /// and the next commit returns only once that fsync is done (so a new session's
    /// directories are synced while its first turn runs, not after it).
    pub fn with_synced_appends(mut self, sync: bool) -> Self {
        self.sync_appends = sync;
        self
    }

    /// How many threads run this VFS's file operations (shared by its clones; default
    /// [`default_io_threads`]: two per core, at least 4). The threads are the VFS's own,
    /// started when an operation waits and none is idle, and ended after 10 s without work;
    /// more operations than threads wait their turn, in arrival order. A long-running process
    /// then keeps a few threads' stacks and malloc arenas, however bursty its sessions: on
    /// tokio's blocking pool, which starts a thread whenever none is idle at that instant, a
    /// soak of 32 sessions in flight grew to 160 threads. Synced appends wait for their fsync
    /// on tokio's blocking pool, as before. `0` is taken as `1`.
    ///
    /// Clones made before keep the threads they had; clones made after share these.
    pub fn with_io_threads(mut self, threads: usize) -> Self {
        self.io = IoPool::new(threads);
        self
    }

    /// How many threads may run this VFS's file operations.
    pub fn io_threads(&self) -> usize {
        self.io.limit()
    }

    /// Runs `op` on the VFS's IO threads after rejecting reserved names. It runs to its end
    /// even if this future is dropped.
    async fn run<T, F>(&self, path: &VfsPath, op: F) -> Result<T, VfsError>
    where
        T: Send + 'static,
        F: FnOnce(&Arc<Shared>, &VfsPath) -> Result<T, VfsError> + Send + 'static,
    {
        check_reserved(path)?;
        let shared = Arc::clone(&self.shared);
        let owned = path.clone();
        let (done, outcome) = tokio::sync::oneshot::channel();
        self.io.submit(move || {
            let _ = done.send(op(&shared, &owned));
        });
        outcome.await.unwrap_or_else(|_| Err(gone(path, "the file operation panicked")))
    }
}

/// How many threads run a [`DiskVfs`]'s file operations by default: two per core the process
/// may use, at least 4 (file operations that hit the page cache are short; more threads than
/// that mostly wait on the same disk).
pub fn default_io_threads() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get().saturating_mul(2)).max(4)
}

/// The error of an operation on `path` whose outcome never came back (`why`).
fn gone(path: &VfsPath, why: &str) -> VfsError {
    VfsError::Io { path: path.to_string(), source: io::Error::other(why) }
}

fn check_reserved(path: &VfsPath) -> Result<(), VfsError> {
    if path.segments().any(is_reserved_name) {
        return Err(VfsError::InvalidPath {
            path: path.as_str().to_owned(),
            reason: "names starting with '.' and containing '.kaos-tmp-' are reserved for temp files",
        });
    }
    Ok(())
}

fn is_reserved_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARKER)
}

fn temp_name(target: &str) -> String {
    let mut keep = target.len().min(TEMP_NAME_KEEP);
    while !target.is_char_boundary(keep) {
        keep -= 1;
    }
    let counter = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".{}{TEMP_MARKER}{}-{counter}", &target[..keep], std::process::id())
}

/// The start of the temp names `temp_name(target)` gives, without the pid and counter.
fn temp_prefix(target: &str) -> String {
    let mut keep = target.len().min(TEMP_NAME_KEEP);
    while !target.is_char_boundary(keep) {
        keep -= 1;
    }
    format!(".{}{TEMP_MARKER}", &target[..keep])
}

/// Whether the process `pid` may be alive on this machine: on Linux, whether `/proc/{pid}`
/// exists; elsewhere always (so a temp file is only ever removed when its writer is surely
/// gone).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") { Path::new("/proc").join(pid.to_string()).exists() } else { true }
}

/// Removes the temp files of dead writers in `target`'s directory (`.{name}.kaos-tmp-{pid}-{n}`
/// whose pid is no running process): what a writer killed between creating its temp file and
/// renaming it leaves. Best effort: a failure only leaves the stray file.
fn remove_stray_temps(target: &Path) {
    let Some(dir) = target.parent() else { return };
    let Ok(entries) = fs::read_dir(dir) else { return };
    let me = std::process::id();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else { continue };
        if !name.starts_with('.') {
            continue;
        }
        let Some((_, rest)) = name.rsplit_once(TEMP_MARKER) else { continue };
        let Some((pid, counter)) = rest.split_once('-') else { continue };
        let (Ok(pid), true) = (pid.parse::<u32>(), counter.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        if pid != me && !process_alive(pid) && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn not_found(path: &VfsPath) -> VfsError {
    VfsError::NotFound(path.to_string())
}

/// Whether `e` means "nothing there" (including a symlink refused by `O_NOFOLLOW`).
fn is_missing(e: &io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ELOOP) {
        return true;
    }
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

fn io_error(path: &VfsPath, source: io::Error) -> VfsError {
    if is_missing(&source) { not_found(path) } else { VfsError::Io { path: path.to_string(), source } }
}

/// The first `depth` segments of `path`.
fn ancestor(path: &VfsPath, depth: usize) -> VfsPath {
    VfsPath::from_normalized(path.segments().take(depth).collect::<Vec<_>>().join("/"))
}

/// What walking a path component by component (never following symlinks) found.
enum Walk {
    /// Every component exists; the last is a directory or a regular file.
    Found(fs::Metadata),
    /// Components before index `depth` are directories; component `depth` does not exist.
    Missing { depth: usize },
    /// Component `depth` is a regular file, but more components follow.
    FileInTheWay { depth: usize },
    /// A component is a symlink or a special file: treated as missing, never followed.
    Hidden,
}

impl Shared {
    fn host_path(&self, path: &VfsPath) -> PathBuf {
        let mut full = self.root.clone();
        full.extend(path.segments());
        full
    }

    fn walk(&self, path: &VfsPath) -> Result<Walk, VfsError> {
        let mut full = self.root.clone();
        let count = path.segments().count();
        if count == 0 {
            return fs::symlink_metadata(&full).map(Walk::Found).map_err(|e| io_error(path, e));
        }
        for (depth, segment) in path.segments().enumerate() {
            full.push(segment);
            let meta = match fs::symlink_metadata(&full) {
                Ok(meta) => meta,
                Err(e) if is_missing(&e) => return Ok(Walk::Missing { depth }),
                Err(e) => return Err(io_error(path, e)),
            };
            let kind = meta.file_type();
            let last = depth + 1 == count;
            if kind.is_dir() && !last {
                continue;
            }
            return Ok(match (kind.is_dir() || kind.is_file(), last) {
                (true, true) => Walk::Found(meta),
                (true, false) => Walk::FileInTheWay { depth },
                (false, _) => Walk::Hidden,
            });
        }
        Ok(Walk::Hidden) // unreachable: the loop returns at the last segment
    }

    /// Makes `path` ready to hold a file: creates missing parent directories and checks that
    /// nothing in the way is a file, a directory (at `path` itself) or a symlink.
    fn prepare_file(&self, path: &VfsPath, dir_sync: DirSync) -> Result<PathBuf, VfsError> {
        if path.is_root() {
            return Err(VfsError::WrongKind { path: path.clone(), expected: "file", found: "directory" });
        }
        let count = path.segments().count();
        match self.walk(path)? {
            Walk::Found(meta) if meta.is_dir() => {
                Err(VfsError::WrongKind { path: path.clone(), expected: "file", found: "directory" })
            }
            Walk::Found(_) => Ok(self.host_path(path)),
            Walk::FileInTheWay { depth } => Err(VfsError::WrongKind {
                path: ancestor(path, depth + 1),
                expected: "directory",
                found: "file",
            }),
            Walk::Hidden => Err(not_found(path)),
            Walk::Missing { depth } => {
                for created in depth..count - 1 {
                    let dir = self.host_path(&ancestor(path, created + 1));
                    match fs::create_dir(&dir) {
                        Ok(()) => match (dir_sync, dir.parent()) {
                            (DirSync::Now, Some(parent)) => {
                                sync_dir(parent).map_err(|e| io_error(path, e))?
                            }
                            (DirSync::Defer, Some(parent)) => self.defer_dir_sync(parent.to_path_buf()),
                            _ => {}
                        },
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            // Someone else made it; make sure it is a real directory.
                            let meta = fs::symlink_metadata(&dir).map_err(|e| io_error(path, e))?;
                            if meta.is_file() {
                                return Err(VfsError::WrongKind {
                                    path: ancestor(path, created + 1),
                                    expected: "directory",
                                    found: "file",
                                });
                            }
                            if !meta.is_dir() {
                                return Err(not_found(path));
                            }
                        }
                        Err(e) => return Err(io_error(path, e)),
                    }
                }
                Ok(self.host_path(path))
            }
        }
    }

    /// Starts making `dir`'s new entries durable: an fsync of it queued on the blocking pool
    /// (when a tokio runtime is there; else run by the next commit), unless one is queued and
    /// not started yet (it covers this entry too). One that is running may have missed this
    /// entry: the new fsync starts when it ends, so the fsyncs of a directory that many new
    /// sessions share (`sessions/`) come one at a time, each covering every entry made while
    /// the one before ran.
    fn defer_dir_sync(&self, dir: PathBuf) {
        let (job, after) = {
            let mut jobs = self.dir_jobs.lock().unwrap_or_else(PoisonError::into_inner);
            let last = jobs.iter().rev().find(|job| job.dir == dir);
            let after = match last.map(|job| (job, job.state())) {
                Some((_, JobState::Queued)) => return,
                Some((job, JobState::Running)) => Some(Arc::clone(job)),
                Some((_, JobState::Done(_))) | None => None,
            };
            let job = Arc::new(DirJob::new(dir));
            jobs.push(Arc::clone(&job));
            (job, after)
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            drop(runtime.spawn_blocking(move || {
                if let Some(before) = after {
                    // Its outcome is its waiters' concern.
                    let _ = before.wait();
                }
                job.run();
            }));
        }
    }

    /// Makes the entries of the directories created by synced appends durable: waits for
    /// every directory fsync started so far (running those not started yet). A failed one is
    /// queued again, so a later commit retries it.
    fn sync_deferred_dirs(&self) -> io::Result<()> {
        let jobs = self.dir_jobs.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if jobs.is_empty() {
            return Ok(());
        }
        let mut outcome = Ok(());
        let mut failed = Vec::new();
        for job in &jobs {
            if let Err(e) = job.wait() {
                failed.push(job.dir.clone());
                outcome = outcome.and(Err(e));
            }
        }
        // Every fsync done is dropped from the list (whoever waits for one holds it), and each
        // failed one that was waited for here is queued again: O(jobs), however many commits
        // and new directories come at once.
        let mut list = self.dir_jobs.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|job| match job.state() {
            JobState::Done(Ok(())) => false,
            JobState::Done(Err(_)) => !jobs.iter().any(|waited| Arc::ptr_eq(job, waited)),
            JobState::Queued | JobState::Running => true,
        });
        list.extend(failed.into_iter().map(|dir| Arc::new(DirJob::new(dir))));
        outcome
    }

    /// Retries `op` when a concurrent `delete` pruned a directory it had just checked.
    fn retry_pruned<T>(&self, mut op: impl FnMut() -> Result<T, VfsError>) -> Result<T, VfsError> {
        let mut attempt = 0;
        loop {
            match op() {
                Err(e) if e.is_not_found() && attempt < PRUNE_RETRIES => attempt += 1,
                other => return other,
            }
        }
    }

    /// The metadata of the file at `path` when a kept handle is open on it: one `stat` of
    /// the path instead of a walk (the handle's file was found by a walk when it was opened).
    fn stat_kept(&self, path: &VfsPath) -> Option<fs::Metadata> {
        let (_, id) = self.handles.append(path.as_str())?;
        let meta = fs::symlink_metadata(self.host_path(path)).ok()?;
        (meta.is_file() && file_id(&meta) == Some(id)).then_some(meta)
    }

    /// Whether the path still names the file whose identity is `id`.
    fn still_names(&self, path: &VfsPath, id: FileId) -> bool {
        fs::symlink_metadata(self.host_path(path)).is_ok_and(|m| m.is_file() && file_id(&m) == Some(id))
    }

    /// An `O_APPEND` handle on the file at `path`: the kept one while the path still names its
    /// file, else a new one (the file and its parents created when missing), kept for the next
    /// append. With `sync`, the directories it creates (the file's own included) are made
    /// durable by the next commit.
    fn append_handle(&self, path: &VfsPath, sync: bool) -> Result<Arc<File>, VfsError> {
        if let Some((file, id)) = self.handles.append(path.as_str()) {
            if self.still_names(path, id) {
                return Ok(file);
            }
            self.handles.forget(path);
        }
        let dir_sync = if sync { DirSync::Defer } else { DirSync::Skip };
        let file = self.retry_pruned(|| {
            let target = self.prepare_file(path, dir_sync)?;
            let file = match open_options().append(true).create_new(true).open(&target) {
                Ok(file) => {
                    if let (true, Some(dir)) = (sync, target.parent()) {
                        self.defer_dir_sync(dir.to_path_buf());
                    }
                    file
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    open_options().append(true).open(&target).map_err(|e| io_error(path, e))?
                }
                Err(e) => return Err(io_error(path, e)),
            };
            Ok(file)
        })?;
        let file = Arc::new(file);
        if let Some(id) = file.metadata().ok().as_ref().and_then(file_id) {
            self.handles.keep_append(path.as_str(), file.clone(), id);
        }
        Ok(file)
    }

    /// Appends `data` in place, on the calling thread, when a kept handle is open on the file
    /// the path still names: one `stat` of the path and one `write` of at most
    /// [`IN_PLACE_APPEND`] bytes into the page cache, under the file's append lock (the same
    /// cost as the `stat` of a kept file that [`Vfs::stat`] makes in place). `None` when there
    /// is no such handle: the caller appends on the blocking pool (which opens the file
    /// afresh). Some(file) once written.
    fn append_in_place(&self, path: &VfsPath, data: &[u8]) -> Option<Result<Arc<File>, VfsError>> {
        let guard = self.append_lock(path).lock().unwrap_or_else(PoisonError::into_inner);
        let (file, id) = self.handles.append(path.as_str())?;
        if !self.still_names(path, id) {
            return None;
        }
        Some(self.write_appended(path, file, data, guard))
    }

    /// Writes `data` at the end of `file` (`path`'s kept or fresh handle) under its append lock,
    /// then lets the lock go first, so other appends to the file can join the group this one
    /// is committed with. A failed write forgets the handle.
    fn write_appended(
        &self,
        path: &VfsPath,
        file: Arc<File>,
        data: &[u8],
        guard: std::sync::MutexGuard<'_, ()>,
    ) -> Result<Arc<File>, VfsError> {
        if let Err(e) = (&*file).write_all(data) {
            self.handles.forget(path);
            return Err(io_error(path, e));
        }
        drop(guard);
        Ok(file)
    }

    fn append_lock(&self, path: &VfsPath) -> &Mutex<()> {
        let stripe = self.hasher.hash_one(path.as_str()) as usize % APPEND_STRIPES;
        &self.append_locks[stripe]
    }

    /// Removes the now-empty ancestors of a deleted `path` (implicit directories), stopping at
    /// the first one that is not empty.
    fn prune_empty_parents(&self, path: &VfsPath) {
        let mut dir = path.parent();
        while let Some(current) = dir {
            if current.is_root() || fs::remove_dir(self.host_path(&current)).is_err() {
                break;
            }
            dir = current.parent();
        }
    }
}

fn open_options() -> OpenOptions {
    #[allow(unused_mut)]
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    options
}

/// Writes `data` to a fresh temp file next to `target`, fsyncs it, renames it over `target` and
/// fsyncs the directory. The temp file is removed on failure.
fn replace_atomically(target: &Path, data: &[u8]) -> io::Result<()> {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name().and_then(|n| n.to_str())) else {
        return Err(io::Error::other("target has no parent or name"));
    };
    // A stray temp file from a crashed process with a recycled pid may hold the name: pick another.
    let mut attempts = 0;
    let (temp, mut file) = loop {
        let temp = dir.join(temp_name(name));
        match open_options().write(true).create_new(true).open(&temp) {
            Ok(file) => break (temp, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 16 => attempts += 1,
            Err(e) => return Err(e),
        }
    };
    let result = file
        .write_all(data)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            fs::rename(&temp, target)
        })
        .and_then(|()| sync_dir(dir));
    if result.is_err() {
        // Best effort: after a successful rename there is nothing left to remove.
        let _ = fs::remove_file(&temp);
    } else {
        remove_stray_temps(target);
    }
    result
}

/// Makes a directory's entries (a rename, a new child) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    match File::open(dir).and_then(|d| d.sync_all()) {
        // Some filesystems cannot fsync a directory; the rename itself has still happened.
        Err(e) if matches!(e.kind(), io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported) => {}
        other => return other,
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The directory a lock's waiters queue in, next to the lock file: `.{name}.kaos-tmp-queue`
/// (a reserved name, so no VFS path reaches it and listings leave it out).
fn queue_dir(lock_file: &Path) -> Option<PathBuf> {
    let name = lock_file.file_name()?.to_str()?;
    Some(lock_file.with_file_name(format!("{}queue", temp_prefix(name))))
}

/// A place in a lock's queue: the entry file `{number:020}` in the queue directory, holding
/// an OS lock for as long as its owner waits or holds the lock, so a dead owner's entry is
/// recognised (its OS lock is gone) and removed by the waiter behind it.
#[derive(Debug)]
struct Ticket {
    number: u64,
    entry: PathBuf,
    dir: PathBuf,
    file: File,
    /// A shared OS lock on the lock's `waiters` file, held while the ticket lives, so a
    /// taker on the fast path sees that someone is queued (see [`try_uncontended`]).
    _waiting: File,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Removed before the OS lock is released (when `file` closes right after).
        let _ = fs::remove_file(&self.entry);
    }
}

/// What a held disk lock keeps: the OS lock on the lock file, released before the queue
/// entry, so the next in line finds the lock file free.
struct DiskLockHeld {
    _lock_file: File,
    _ticket: Ticket,
}

/// How long one step of taking a lock sleeps between attempts at most.
const LOCK_POLL_MAX: Duration = Duration::from_millis(10);

fn lock_io(path: &VfsPath) -> impl Fn(io::Error) -> VfsError + '_ {
    move |e| io_error(path, e)
}

/// Takes a ticket: the next number after every entry in the queue, under the queue's own
/// short OS lock (`mutex`), so numbers follow arrival order. `None` when the deadline passes.
fn enqueue(
    shared: &Shared,
    path: &VfsPath,
    deadline: std::time::Instant,
    announced: Option<File>,
) -> Result<Option<Ticket>, VfsError> {
    let target = shared.prepare_file(path, DirSync::Skip)?;
    let dir = queue_dir(&target).ok_or_else(|| not_found(path))?;
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if !fs::symlink_metadata(&dir).map_err(lock_io(path))?.is_dir() {
                return Err(not_found(path));
            }
        }
        Err(e) => return Err(io_error(path, e)),
    }
    // Queued from here on, as far as takers on the fast path are concerned (a taker that
    // tried the fast path first has been since before its try: `announced`). (Their
    // exclusive OS lock on `waiters` is only a probe, let go at once: the wait is short.)
    let waiting = match announced {
        Some(file) => file,
        None => {
            let file = open_waiters(&target).map_err(lock_io(path))?;
            if !poll_os_lock(deadline, || file.try_lock_shared()).map_err(lock_io(path))? {
                return Ok(None);
            }
            file
        }
    };
    let mutex = open_options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("mutex"))
        .map_err(lock_io(path))?;
    if !poll_os_lock(deadline, || mutex.try_lock()).map_err(lock_io(path))? {
        return Ok(None);
    }
    let last = queue_entries(&dir, path)?.into_iter().max().unwrap_or(0);
    let number = last + 1;
    let entry = dir.join(format!("{number:020}"));
    let file = open_options().write(true).create_new(true).open(&entry).map_err(lock_io(path))?;
    // A fresh file: nobody else has it open yet.
    let ticket = Ticket { number, entry, dir, file, _waiting: waiting };
    ticket.file.try_lock().map_err(|e| io_error(path, io::Error::other(e.to_string())))?;
    drop(mutex);
    Ok(Some(ticket))
}

/// Tries a non-blocking OS lock until it is taken (`true`) or `deadline` would pass before the
/// next try (`false`), sleeping 0.1 ms, then twice as long each time, up to [`LOCK_POLL_MAX`].
/// Its OS locks are short-held (a queue's `mutex`, a probe of `waiters`): the wait is short.
fn poll_os_lock(
    deadline: std::time::Instant,
    mut try_lock: impl FnMut() -> Result<(), fs::TryLockError>,
) -> io::Result<bool> {
    let mut pause = Duration::from_micros(100);
    loop {
        match try_lock() {
            Ok(()) => return Ok(true),
            Err(fs::TryLockError::WouldBlock) => {
                if std::time::Instant::now() + pause > deadline {
                    return Ok(false);
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(LOCK_POLL_MAX);
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// The numbers of the entries in a queue directory.
fn queue_entries(dir: &Path, path: &VfsPath) -> Result<Vec<u64>, VfsError> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir).map_err(lock_io(path))? {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if is_missing(&e) => continue,
            Err(e) => return Err(io_error(path, e)),
        };
        if let Some(n) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
            numbers.push(n);
        }
    }
    Ok(numbers)
}

/// Whether `ticket` is at the front of its queue: every entry before it is gone. Entries
/// whose owner died (their OS lock is free) are removed on the way.
fn at_front(ticket: &Ticket, path: &VfsPath) -> Result<bool, VfsError> {
    loop {
        let ahead = queue_entries(&ticket.dir, path)?.into_iter().filter(|n| *n < ticket.number).max();
        let Some(number) = ahead else { return Ok(true) };
        let entry = ticket.dir.join(format!("{number:020}"));
        let file = match open_options().read(true).open(&entry) {
            Ok(file) => file,
            Err(e) if is_missing(&e) => continue,
            Err(e) => return Err(io_error(path, e)),
        };
        match file.try_lock() {
            // Its owner is gone (died, or released and is removing it): clear it away.
            Ok(()) => match fs::remove_file(&entry) {
                Ok(()) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(io_error(path, e)),
            },
            Err(fs::TryLockError::WouldBlock) => return Ok(false),
            Err(fs::TryLockError::Error(e)) => return Err(io_error(path, e)),
        }
    }
}

/// The lock's `waiters` file next to the lock file, `.{name}.kaos-tmp-waiters` (a reserved
/// name), created when missing: every queued waiter holds a shared OS lock on it; a taker on
/// the fast path checks that nobody does. (Not in the queue's directory, so an uncontended
/// lock never makes that directory.)
fn open_waiters(lock_file: &Path) -> io::Result<File> {
    let name = lock_file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::other("lock file has no name"))?;
    open_options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_file.with_file_name(format!("{}waiters", temp_prefix(name))))
}

/// Opens the lock file at `path` (created when missing, with its parents); also returns its
/// path on disk.
fn open_lock_file(shared: &Shared, path: &VfsPath) -> Result<(PathBuf, File), VfsError> {
    let target = shared.prepare_file(path, DirSync::Skip)?;
    let file = open_options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&target)
        .map_err(|e| io_error(path, e))?;
    Ok((target, file))
}

/// Opens a lock's files: the lock file (created when missing, with its parents) and its
/// `waiters` file.
fn open_lock_files(shared: &Shared, path: &VfsPath) -> Result<LockFiles, VfsError> {
    let (target, lock) = open_lock_file(shared, path)?;
    let waiters = open_waiters(&target).map_err(lock_io(path))?;
    let meta = lock.metadata().map_err(|e| io_error(path, e))?;
    // Without a file identity (not unix) the handles cannot be checked later: never kept.
    let id = file_id(&meta).unwrap_or((u64::MAX, u64::MAX));
    Ok(LockFiles { lock, waiters, id })
}

/// What the fast path of [`Vfs::lock`] came to.
enum Uncontended {
    /// The lock, taken without a ticket.
    Held(FastHeld),
    /// Held or waited for: the caller queues, with the `waiters` file this taker has held a
    /// shared OS lock on since before it tried the lock file, when it has one.
    Queue(Option<File>),
}

/// The fast path of [`Vfs::lock`]: takes the lock at once when nobody holds it and nobody
/// else is queued for it, with the lock's `files`: a handful of system calls instead of a
/// ticket's dozens.
///
/// Every taker announces itself first, with a shared OS lock on the lock's `waiters` file
/// (every queued waiter keeps one), and only then tries the lock file; holding it, it turns
/// its shared lock into an exclusive one, which succeeds only when no one else has announced
/// themselves. So a taker never overtakes one that arrived before it: an earlier taker either
/// holds the lock file or has announced itself, and a taker that finds the lock file held
/// queues still announced, from before its try. A taker that got the lock file but found
/// others announced lets it go and queues behind them.
fn try_uncontended(shared: &Arc<Shared>, path: &VfsPath, files: LockFiles) -> Result<Uncontended, VfsError> {
    let key = path.as_str();
    match files.waiters.try_lock_shared() {
        Ok(()) => {}
        // Another taker is checking for waiters this very moment: queue.
        Err(fs::TryLockError::WouldBlock) => {
            shared.handles.keep_lock(key, files);
            return Ok(Uncontended::Queue(None));
        }
        Err(fs::TryLockError::Error(e)) => return Err(io_error(path, e)),
    }
    match files.lock.try_lock() {
        Ok(()) => {}
        // Held: queue, announced since before the try (the handles go with the ticket).
        Err(fs::TryLockError::WouldBlock) => return Ok(Uncontended::Queue(Some(files.waiters))),
        Err(fs::TryLockError::Error(e)) => return Err(io_error(path, e)),
    }
    // Held: is it still the file at the path (not deleted or replaced since it was opened)?
    if !shared.still_names(path, files.id) {
        // Opened afresh next time (closing the old handles releases their OS locks).
        drop(files);
        return Ok(Uncontended::Queue(None));
    }
    // Anyone else announced? Shared to exclusive fails while another shared lock is held.
    match files.waiters.try_lock() {
        Ok(()) => {
            files.waiters.unlock().map_err(|e| io_error(path, e))?;
            Ok(Uncontended::Held(FastHeld {
                shared: Arc::clone(shared),
                key: key.to_owned(),
                files: Some(files),
            }))
        }
        // Others announced themselves. A failed conversion may have dropped this taker's
        // shared lock (flock converts by unlocking first): it announces itself again while it
        // still holds the lock file (only a holder of the lock file probes `waiters`, so this
        // cannot block), and only then lets the lock file go, so a taker arriving after it
        // cannot take the lock on the fast path before it has queued. It queues announced.
        Err(fs::TryLockError::WouldBlock) if files.waiters.try_lock_shared().is_ok() => {
            files.lock.unlock().map_err(|e| io_error(path, e))?;
            Ok(Uncontended::Queue(Some(files.waiters)))
        }
        Err(e) => {
            files.waiters.unlock().map_err(|e| io_error(path, e))?;
            files.lock.unlock().map_err(|e| io_error(path, e))?;
            shared.handles.keep_lock(key, files);
            match e {
                fs::TryLockError::WouldBlock => Ok(Uncontended::Queue(None)),
                fs::TryLockError::Error(e) => Err(io_error(path, e)),
            }
        }
    }
}

/// A lock taken on the fast path: the OS lock on the kept lock file, released (and the
/// handles kept for the next taker) on drop.
struct FastHeld {
    shared: Arc<Shared>,
    key: String,
    files: Option<LockFiles>,
}

impl Drop for FastHeld {
    fn drop(&mut self) {
        if let Some(files) = self.files.take()
            && files.lock.unlock().is_ok()
        {
            self.shared.handles.keep_lock(&self.key, files);
        }
        // A failed unlock: closing the handles (dropped here) releases the OS lock.
    }
}

/// One attempt at taking the OS lock on the lock file itself (held by the queue's front, and
/// by processes of older versions that do not queue): `Some(file)` holds it.
fn try_lock_file(shared: &Shared, path: &VfsPath) -> Result<Option<File>, VfsError> {
    let (_, file) = open_lock_file(shared, path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(io_error(path, e)),
    }
}

#[async_trait]
impl Vfs for DiskVfs {
    /// An exclusive OS file lock (`flock`) on the file at `path`, created when missing, taken
    /// in arrival order. It excludes other processes and other `DiskVfs` handles alike.
    ///
    /// Waiters queue in a directory next to the lock file: each takes the next number (under
    /// a short OS lock on the queue) and an OS lock on its numbered entry, and waits until
    /// every entry before its own is gone, so no later arrival overtakes it, in this process
    /// or another. The kernel releases a dead process's OS locks, so a crash never leaves a
    /// session locked: the waiter behind a dead entry removes it. Waiting polls (0.1 ms to
    /// 10 ms) for at most the lock timeout; a waiter that gives up leaves the queue.
    ///
    /// A lock nobody holds or waits for is taken without a ticket: every taker first holds a
    /// shared OS lock on the lock's `waiters` file (a queued waiter keeps it), then tries the
    /// lock file; one that gets it and can turn its shared lock on `waiters` into an exclusive
    /// one (nobody else announced) holds the lock; otherwise it lets go and queues (see
    /// `try_uncontended`). The lock's files stay open between takes (checked by one `stat` that the path
    /// still names them), so an uncontended take and release cost four OS calls and one `stat`.
    async fn lock(&self, path: &VfsPath) -> Result<VfsLock, VfsError> {
        let timeout = self.lock_timeout;
        let deadline = std::time::Instant::now() + timeout;
        let timed_out = || VfsError::LockTimeout { path: path.clone(), after: timeout };
        // The fast path: with kept handles it only takes non-blocking OS locks and stats one
        // path, so it runs in place; opening the files runs on the blocking pool.
        check_reserved(path)?;
        let fast = match self.shared.handles.take_lock(path.as_str()) {
            Some(files) => try_uncontended(&self.shared, path, files)?,
            None => {
                self.run(path, |shared, path| {
                    let files = shared.retry_pruned(|| open_lock_files(shared, path))?;
                    try_uncontended(shared, path, files)
                })
                .await?
            }
        };
        let mut announced = match fast {
            Uncontended::Held(held) => return Ok(VfsLock::new(held)),
            Uncontended::Queue(announced) => announced,
        };
        let Some(ticket) = self
            .run(path, move |shared, path| {
                shared.retry_pruned(|| enqueue(shared, path, deadline, announced.take()))
            })
            .await?
        else {
            return Err(timed_out());
        };
        let mut ticket = Some(ticket);
        let mut pause = Duration::from_micros(100);
        loop {
            let mine = ticket.take().ok_or_else(timed_out)?;
            let (mine, held) = self
                .run(path, move |shared, path| {
                    if !at_front(&mine, path)? {
                        return Ok((mine, None));
                    }
                    let file = shared.retry_pruned(|| try_lock_file(shared, path))?;
                    Ok((mine, file))
                })
                .await?;
            if let Some(file) = held {
                return Ok(VfsLock::new(DiskLockHeld { _lock_file: file, _ticket: mine }));
            }
            ticket = Some(mine);
            if std::time::Instant::now() + pause > deadline {
                return Err(timed_out());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LOCK_POLL_MAX);
        }
    }

    async fn truncate(&self, path: &VfsPath, len: u64) -> Result<(), VfsError> {
        self.run(path, move |shared, path| match shared.walk(path)? {
            Walk::Found(meta) if meta.is_dir() => {
                Err(VfsError::WrongKind { path: path.clone(), expected: "file", found: "directory" })
            }
            Walk::Found(meta) => {
                let target = shared.host_path(path);
                if len < meta.len() {
                    let file = open_options().write(true).open(&target).map_err(|e| io_error(path, e))?;
                    file.set_len(len).map_err(|e| io_error(path, e))?;
                    file.sync_all().map_err(|e| io_error(path, e))?;
                }
                shared.sync_deferred_dirs().map_err(|e| io_error(path, e))?;
                remove_stray_temps(&target);
                Ok(())
            }
            Walk::Missing { .. } | Walk::FileInTheWay { .. } | Walk::Hidden => Err(not_found(path)),
        })
        .await
    }

    async fn sync(&self, path: &VfsPath) -> Result<(), VfsError> {
        self.run(path, |shared, path| match shared.walk(path)? {
            Walk::Found(meta) if meta.is_dir() => {
                Err(VfsError::WrongKind { path: path.clone(), expected: "file", found: "directory" })
            }
            Walk::Found(_) => {
                let file =
                    open_options().read(true).open(shared.host_path(path)).map_err(|e| io_error(path, e))?;
                file.sync_data().map_err(|e| io_error(path, e))?;
                shared.sync_deferred_dirs().map_err(|e| io_error(path, e))
            }
            Walk::Missing { .. } | Walk::FileInTheWay { .. } | Walk::Hidden => Err(not_found(path)),
        })
        .await
    }

    async fn read_from(&self, path: &VfsPath, offset: u64) -> Result<Bytes, VfsError> {
        self.run(path, move |shared, path| match shared.walk(path)? {
            Walk::Found(meta) if meta.is_dir() => {
                Err(VfsError::WrongKind { path: path.clone(), expected: "file", found: "directory" })
            }
            Walk::Found(meta) => {
                let mut file =
                    open_options().read(true).open(shared.host_path(path)).map_err(|e| io_error(path, e))?;
                let start = offset.min(meta.len());
                file.seek(SeekFrom::Start(start)).map_err(|e| io_error(path, e))?;
                let mut buf = Vec::with_capacity(usize::try_from(meta.len() - start).unwrap_or(0));
                file.read_to_end(&mut buf).map_err(|e| io_error(path, e))?;
                Ok(Bytes::from(buf))
            }
            Walk::Missing { .. } | Walk::FileInTheWay { .. } | Walk::Hidden => Err(not_found(path)),
        })
        .await
    }

    async fn read(&self, path: &VfsPath) -> Result<Bytes, VfsError> {
        self.run(path, |shared, path| match shared.walk(path)? {
            Walk::Found(meta) if meta.is_dir() => {
                Err(VfsError::WrongKind { path: path.clone(), expected: "file", found: "directory" })
            }
            Walk::Found(meta) => {
                let mut file =
                    open_options().read(true).open(shared.host_path(path)).map_err(|e| io_error(path, e))?;
                let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
                file.read_to_end(&mut buf).map_err(|e| io_error(path, e))?;
                Ok(Bytes::from(buf))
            }
            Walk::Missing { .. } | Walk::FileInTheWay { .. } | Walk::Hidden => Err(not_found(path)),
        })
        .await
    }

    async fn write(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        self.run(path, move |shared, path| {
            // The file is replaced: a handle kept on the old one would append to nothing.
            shared.handles.forget(path);
            shared.retry_pruned(|| {
                let target = shared.prepare_file(path, DirSync::Now)?;
                replace_atomically(&target, &data).map_err(|e| io_error(path, e))?;
                shared.sync_deferred_dirs().map_err(|e| io_error(path, e))
            })
        })
        .await
    }

    async fn append(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        self.append_reporting(path, data, false).await.map(drop)
    }

    /// Knows the metadata after an append written in place, from the kept handle (`fstat`, no
    /// walk of the path): the file the path was just seen to name.
    async fn append_and_stat(&self, path: &VfsPath, data: Bytes) -> Result<Option<Metadata>, VfsError> {
        self.append_reporting(path, data, true).await
    }

    async fn exists(&self, path: &VfsPath) -> Result<bool, VfsError> {
        self.run(path, |shared, path| Ok(matches!(shared.walk(path)?, Walk::Found(_)))).await
    }

    async fn stat(&self, path: &VfsPath) -> Result<Metadata, VfsError> {
        // A file with a kept handle costs one `stat` of its path, made in place.
        check_reserved(path)?;
        if let Some(meta) = self.shared.stat_kept(path) {
            return Ok(Metadata::file(meta.len(), meta.modified().ok()));
        }
        self.run(path, |shared, path| match shared.walk(path)? {
            Walk::Found(meta) if meta.is_dir() => Ok(Metadata::dir(meta.modified().ok())),
            Walk::Found(meta) => Ok(Metadata::file(meta.len(), meta.modified().ok())),
            Walk::Missing { .. } | Walk::FileInTheWay { .. } | Walk::Hidden => Err(not_found(path)),
        })
        .await
    }

    async fn list(&self, prefix: &VfsPath) -> Result<Vec<VfsEntry>, VfsError> {
        self.run(prefix, |shared, prefix| {
            match shared.walk(prefix)? {
                Walk::Found(meta) if meta.is_file() => {
                    return Err(VfsError::WrongKind {
                        path: prefix.clone(),
                        expected: "directory",
                        found: "file",
                    });
                }
                Walk::Found(_) => {}
                Walk::Missing { .. } | Walk::FileInTheWay { .. } | Walk::Hidden => return Ok(Vec::new()),
            }
            let dir = match fs::read_dir(shared.host_path(prefix)) {
                Ok(dir) => dir,
                Err(e) if is_missing(&e) => return Ok(Vec::new()),
                Err(e) => return Err(io_error(prefix, e)),
            };
            let mut entries = Vec::new();
            for entry in dir {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) if is_missing(&e) => continue,
                    Err(e) => return Err(io_error(prefix, e)),
                };
                // Names a VfsPath cannot express (non-UTF-8, backslash, control characters…)
                // and temp files are unreachable, so they are not listed either.
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
                if is_reserved_name(&name) {
                    continue;
                }
                let Ok(path) = prefix.join(&name) else { continue };
                if path.segments().count() != prefix.segments().count() + 1 {
                    continue;
                }
                let kind = match entry.file_type() {
                    Ok(kind) => kind,
                    Err(e) if is_missing(&e) => continue,
                    Err(e) => return Err(io_error(&path, e)),
                };
                if kind.is_dir() {
                    entries.push(VfsEntry::new(path, EntryKind::Dir, 0));
                } else if kind.is_file() {
                    let len = match entry.metadata() {
                        Ok(meta) => meta.len(),
                        Err(e) if is_missing(&e) => continue,
                        Err(e) => return Err(io_error(&path, e)),
                    };
                    entries.push(VfsEntry::new(path, EntryKind::File, len));
                }
            }
            entries.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(entries)
        })
        .await
    }

    async fn delete(&self, path: &VfsPath) -> Result<(), VfsError> {
        self.run(path, |shared, path| {
            // Kept handles would keep deleted files alive (and are stale anyway).
            shared.handles.forget(path);
            if path.is_root() {
                // Empties the root but keeps it. `remove_dir_all` does not follow symlinks.
                let dir = fs::read_dir(&shared.root).map_err(|e| io_error(path, e))?;
                for entry in dir {
                    let entry = entry.map_err(|e| io_error(path, e))?;
                    let is_dir = entry.file_type().map_err(|e| io_error(path, e))?.is_dir();
                    let removed =
                        if is_dir { fs::remove_dir_all(entry.path()) } else { fs::remove_file(entry.path()) };
                    match removed {
                        Err(e) if !is_missing(&e) => return Err(io_error(path, e)),
                        _ => {}
                    }
                }
                return Ok(());
            }
            let target = shared.host_path(path);
            match shared.walk(path)? {
                Walk::Found(meta) if meta.is_dir() => fs::remove_dir_all(&target),
                Walk::Found(_) => fs::remove_file(&target),
                Walk::Missing { .. } | Walk::FileInTheWay { .. } | Walk::Hidden => {
                    return Err(not_found(path));
                }
            }
            .map_err(|e| io_error(path, e))?;
            shared.prune_empty_parents(path);
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn jobs(vfs: &DiskVfs) -> usize {
        vfs.shared.dir_jobs.lock().unwrap().len()
    }

    /// The ordering a durable commit relies on: the fsyncs of the directories a synced append
    /// created start at once (in the background), and the commit of the first bytes returns
    /// only after every one of them is done.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_returns_after_its_new_directories_are_synced() {
        let dir = tempfile::tempdir().unwrap();
        let vfs = DiskVfs::new(dir.path()).unwrap().with_synced_appends(true);
        let log = VfsPath::new("sessions/s1/turns.jsonl").unwrap();
        // What a new session's take does: an empty append makes the file and its directories
        // and starts their fsyncs (root, `sessions`, `sessions/s1`), without waiting.
        vfs.append(&log, Bytes::new()).await.unwrap();
        assert_eq!(jobs(&vfs), 3);
        vfs.append(&log, Bytes::from_static(b"{}\n")).await.unwrap();
        assert_eq!(jobs(&vfs), 0, "the commit waited for every directory fsync");
        // A second session in the same parent: two new entries, two fsyncs, both awaited.
        vfs.append(&VfsPath::new("sessions/s2/turns.jsonl").unwrap(), Bytes::from_static(b"{}\n"))
            .await
            .unwrap();
        assert_eq!(jobs(&vfs), 0);
        // Appends that create nothing start no fsync of a directory.
        vfs.append(&log, Bytes::from_static(b"{}\n")).await.unwrap();
        assert_eq!(jobs(&vfs), 0);
        assert_eq!(&vfs.read(&log).await.unwrap()[..], b"{}\n{}\n");
    }

    /// An append whose caller stops waiting still lands whole and is committed: the write and
    /// the commit round run on the blocking pool whatever becomes of the future.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_synced_append_whose_caller_went_away_still_lands() {
        let dir = tempfile::tempdir().unwrap();
        let vfs = DiskVfs::new(dir.path()).unwrap().with_synced_appends(true);
        let log = VfsPath::new("s/turns.jsonl").unwrap();
        for i in 0..20u8 {
            let line = Bytes::from(vec![b'a' + i, b'\n']);
            // Polled once (the append starts), then dropped.
            let _ = tokio::time::timeout(Duration::ZERO, vfs.append(&log, line)).await;
        }
        // Appends to one file are ordered by its append lock; a last awaited one commits after
        // every earlier write has landed (each dropped one was written before it, or after
        // it and then committed by a round of its own).
        vfs.append(&log, Bytes::from_static(b"end\n")).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = vfs.read(&log).await.unwrap();
            if text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() == 21 {
                let mut lines: Vec<&[u8]> = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
                lines.sort();
                let mut expected: Vec<Vec<u8>> = (0..20u8).map(|i| vec![b'a' + i]).collect();
                expected.push(b"end".to_vec());
                expected.sort();
                assert_eq!(lines, expected.iter().map(Vec::as_slice).collect::<Vec<_>>());
                break;
            }
            assert!(std::time::Instant::now() < deadline, "dropped appends never landed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Nothing is left waiting for a round, and the leader stops once the queue is empty.
        loop {
            {
                let queue = vfs.shared.commits.queue.lock().unwrap();
                if queue.pending.is_empty() && !queue.leading {
                    break;
                }
            }
            assert!(std::time::Instant::now() < deadline, "the leader never stopped");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// A leader sent to the blocking pool that never runs (its task dropped as the runtime
    /// shuts down) fails the appends queued for it and gives up the lead, so the next append
    /// leads a round of its own instead of waiting for it.
    #[tokio::test]
    async fn a_leader_that_never_runs_fails_its_queue_and_gives_up_the_lead() {
        let dir = tempfile::tempdir().unwrap();
        let vfs = DiskVfs::new(dir.path()).unwrap().with_synced_appends(true);
        let log = VfsPath::new("s/turns.jsonl").unwrap();
        vfs.append(&log, Bytes::from_static(b"a\n")).await.unwrap();
        // The leader that committed `a` may still be looking at the (now empty) queue: wait
        // until it has given up the lead, so the queued append below is a leader's own.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while vfs.shared.commits.queue.lock().unwrap().leading {
            assert!(std::time::Instant::now() < deadline, "the first leader never stopped");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (file, _) = vfs.shared.handles.append(log.as_str()).unwrap();
        let (done, outcome) = tokio::sync::oneshot::channel();
        assert!(vfs.shared.commits.enqueue(Pending { file, path: log.clone(), done }));
        drop(Leader(Some(Arc::clone(&vfs.shared))));
        assert!(matches!(outcome.await, Ok(Err(VfsError::Io { .. }))));
        assert!(!vfs.shared.commits.queue.lock().unwrap().leading);
        // Written in place (a kept handle), committed by a leader of its own.
        vfs.append(&log, Bytes::from_static(b"b\n")).await.unwrap();
        assert_eq!(&vfs.read(&log).await.unwrap()[..], b"a\nb\n");
    }

    /// On the `block_on` thread of a multi-thread runtime a lone synced append leads its round
    /// there, so it is committed even while the blocking pool has no thread for it (its one
    /// thread busy here); a task's append is led on the pool, once it has a thread.
    #[test]
    fn a_lone_synced_append_from_block_on_commits_without_the_blocking_pool() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let vfs = DiskVfs::new(dir.path()).unwrap().with_synced_appends(true);
            let log = VfsPath::new("s/turns.jsonl").unwrap();
            // Opens the file and keeps its handle (on the pool), so the next appends are
            // written in place.
            vfs.append(&log, Bytes::from_static(b"a\n")).await.unwrap();
            let (release, wait) = std::sync::mpsc::channel::<()>();
            let busy = tokio::task::spawn_blocking(move || wait.recv());
            let here =
                tokio::time::timeout(Duration::from_secs(20), vfs.append(&log, Bytes::from_static(b"b\n")));
            let here = here.await;
            let from_task = {
                let (vfs, log) = (vfs.clone(), log.clone());
                tokio::spawn(async move { vfs.append(&log, Bytes::from_static(b"c\n")).await })
            };
            release.send(()).unwrap();
            busy.await.unwrap().unwrap();
            assert!(matches!(here, Ok(Ok(()))), "from block_on: {here:?}");
            from_task.await.unwrap().unwrap();
            assert_eq!(&vfs.read(&log).await.unwrap()[..], b"a\nb\nc\n");
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_directory_removed_before_its_fsync_does_not_fail_commits() {
        let dir = tempfile::tempdir().unwrap();
        let vfs = DiskVfs::new(dir.path()).unwrap().with_synced_appends(true);
        // As if a session were deleted before its first commit while its directory's fsync
        // was still queued.
        vfs.shared.dir_jobs.lock().unwrap().push(Arc::new(DirJob::new(dir.path().join("gone"))));
        vfs.append(&VfsPath::new("a.log").unwrap(), Bytes::from_static(b"x\n")).await.unwrap();
        assert_eq!(jobs(&vfs), 0);
    }

    /// A directory fsync nobody picked up (no runtime when it was queued, or a blocking pool
    /// busy with commits) is run by the commit that waits for it.
    #[test]
    fn a_queued_directory_fsync_is_run_by_its_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let vfs = DiskVfs::new(dir.path()).unwrap();
        vfs.shared.defer_dir_sync(dir.path().to_path_buf());
        assert_eq!(jobs(&vfs), 1);
        // A second entry while the first fsync has not started: covered by the same fsync.
        vfs.shared.defer_dir_sync(dir.path().to_path_buf());
        assert_eq!(jobs(&vfs), 1);
        vfs.shared.sync_deferred_dirs().unwrap();
        assert_eq!(jobs(&vfs), 0);
    }
}

use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{EntryKind, Metadata, Vfs, VfsEntry, VfsError, VfsLock, VfsPath};

/// Marks DiskVfs temp files: `.{name}.kaos-tmp-{pid}-{counter}`. Names holding it are reserved.
const TEMP_MARKER: &str = ".kaos-tmp-";
/// How much of the target name a temp name keeps (the full name could overflow 255 bytes).
const TEMP_NAME_KEEP: usize = 100;
/// Stripes of the in-process append lock (appends to different files rarely contend).
const APPEND_STRIPES: usize = 16;
/// How often a mutation is retried when a concurrent `delete` prunes a directory under it.
const PRUNE_RETRIES: usize = 8;

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
/// - Every blocking call runs on tokio's blocking pool (`spawn_blocking`), so a tokio runtime
///   must be running. Errors carry VFS paths, never host paths.
///
/// Cloning is cheap and clones share the root and the append locks.
#[derive(Debug, Clone)]
pub struct DiskVfs {
    shared: Arc<Shared>,
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
}

/// Group commit of synced appends: an append writes its bytes, queues its file and waits until
/// an fsync started after its write has finished. One waiter at a time leads: it takes every
/// queued file and makes them durable at once (one `fdatasync` for a single file; for several
/// files one `syncfs` of the filesystem on Linux, elsewhere one `fdatasync` each), while the
/// appends arriving meanwhile queue up for the next round. So N sessions appending at once
/// share fsyncs instead of paying one each, and no append returns before its bytes are durable.
#[derive(Debug, Default)]
struct GroupCommit {
    queue: Mutex<CommitQueue>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct CommitQueue {
    /// Files written and waiting for an fsync, with the slot their append waits on.
    pending: Vec<Pending>,
    /// Whether a leader is syncing right now.
    leading: bool,
}

/// One append waiting for its commit.
#[derive(Debug)]
struct Pending {
    file: File,
    /// Whether the append created the file (its directory entries must be made durable too).
    created: bool,
    slot: Arc<CommitSlot>,
}

/// The outcome of one append's commit, filled in by the leader that synced it.
#[derive(Debug, Default)]
struct CommitSlot(Mutex<Option<Result<(), (io::ErrorKind, String)>>>);

impl GroupCommit {
    /// Makes `file`'s written bytes durable, together with whatever else is queued.
    fn commit(&self, file: File, created: bool) -> io::Result<()> {
        let slot = Arc::new(CommitSlot::default());
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.pending.push(Pending { file, created, slot: slot.clone() });
        loop {
            if let Some(outcome) = slot.0.lock().unwrap_or_else(PoisonError::into_inner).take() {
                return outcome.map_err(|(kind, message)| io::Error::new(kind, message));
            }
            if queue.leading {
                queue = self.done.wait(queue).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Lead one round: sync everything queued so far, outside the queue's lock.
            queue.leading = true;
            let batch = std::mem::take(&mut queue.pending);
            drop(queue);
            let outcome = sync_files(&batch).map_err(|e| (e.kind(), e.to_string()));
            for waiter in batch.iter().map(|p| &p.slot) {
                *waiter.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome.clone());
            }
            drop(batch);
            queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.leading = false;
            self.done.notify_all();
        }
    }
}

/// Makes the written bytes of every pending append durable: several files, or a file just
/// created (whose new directory entries must survive too), take one `syncfs` of the filesystem
/// on Linux (every file is under the one root); one existing file takes one `fdatasync`.
/// Elsewhere each file takes an `fdatasync`.
fn sync_files(batch: &[Pending]) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if let Some(first) = batch.first()
        && (batch.len() > 1 || first.created)
    {
        return rustix::fs::syncfs(&first.file).map_err(io::Error::from);
    }
    batch.iter().try_for_each(|p| p.file.sync_data())
}

impl DiskVfs {
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
            }),
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
    pub fn with_synced_appends(mut self, sync: bool) -> Self {
        self.sync_appends = sync;
        self
    }

    /// Runs `op` on the blocking pool after rejecting reserved names.
    async fn run<T, F>(&self, path: &VfsPath, op: F) -> Result<T, VfsError>
    where
        T: Send + 'static,
        F: FnOnce(&Shared, &VfsPath) -> Result<T, VfsError> + Send + 'static,
    {
        check_reserved(path)?;
        let shared = Arc::clone(&self.shared);
        let owned = path.clone();
        tokio::task::spawn_blocking(move || op(&shared, &owned)).await.unwrap_or_else(|join| {
            Err(VfsError::Io { path: path.to_string(), source: io::Error::other(join) })
        })
    }
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
    fn prepare_file(&self, path: &VfsPath) -> Result<PathBuf, VfsError> {
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
                        Ok(()) => {
                            if let Some(parent) = dir.parent() {
                                sync_dir(parent).map_err(|e| io_error(path, e))?;
                            }
                        }
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
) -> Result<Option<Ticket>, VfsError> {
    let target = shared.prepare_file(path)?;
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
    let mutex = open_options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("mutex"))
        .map_err(lock_io(path))?;
    let mut pause = Duration::from_micros(100);
    loop {
        match mutex.try_lock() {
            Ok(()) => break,
            Err(fs::TryLockError::WouldBlock) => {
                if std::time::Instant::now() + pause > deadline {
                    return Ok(None);
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(LOCK_POLL_MAX);
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_error(path, e)),
        }
    }
    let last = queue_entries(&dir, path)?.into_iter().max().unwrap_or(0);
    let number = last + 1;
    let entry = dir.join(format!("{number:020}"));
    let file = open_options().write(true).create_new(true).open(&entry).map_err(lock_io(path))?;
    // A fresh file: nobody else has it open yet.
    let ticket = Ticket { number, entry, dir, file };
    ticket.file.try_lock().map_err(|e| io_error(path, io::Error::other(e.to_string())))?;
    drop(mutex);
    Ok(Some(ticket))
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

/// One attempt at taking the OS lock on the lock file itself (held by the queue's front, and
/// by processes of older versions that do not queue): `Some(file)` holds it.
fn try_lock_file(shared: &Shared, path: &VfsPath) -> Result<Option<File>, VfsError> {
    let target = shared.prepare_file(path)?;
    let file = open_options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&target)
        .map_err(|e| io_error(path, e))?;
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
    async fn lock(&self, path: &VfsPath) -> Result<VfsLock, VfsError> {
        let timeout = self.lock_timeout;
        let deadline = std::time::Instant::now() + timeout;
        let timed_out = || VfsError::LockTimeout { path: path.clone(), after: timeout };
        let Some(ticket) = self
            .run(path, move |shared, path| shared.retry_pruned(|| enqueue(shared, path, deadline)))
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
                file.sync_data().map_err(|e| io_error(path, e))
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
            shared.retry_pruned(|| {
                let target = shared.prepare_file(path)?;
                replace_atomically(&target, &data).map_err(|e| io_error(path, e))
            })
        })
        .await
    }

    async fn append(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        let sync = self.sync_appends;
        self.run(path, move |shared, path| {
            let guard = shared.append_lock(path).lock().unwrap_or_else(PoisonError::into_inner);
            shared
                .retry_pruned(|| {
                    let target = shared.prepare_file(path)?;
                    let created = sync && fs::symlink_metadata(&target).is_err();
                    let mut file = open_options()
                        .append(true)
                        .create(true)
                        .open(&target)
                        .map_err(|e| io_error(path, e))?;
                    file.write_all(&data).map_err(|e| io_error(path, e))?;
                    Ok((file, created))
                })
                .and_then(|(file, created)| {
                    // The append lock is released first, so other appends to this file can join the
                    // group this one is committed with.
                    drop(guard);
                    if sync {
                        shared.commits.commit(file, created).map_err(|e| io_error(path, e))
                    } else {
                        Ok(())
                    }
                })
        })
        .await
    }

    async fn exists(&self, path: &VfsPath) -> Result<bool, VfsError> {
        self.run(path, |shared, path| Ok(matches!(shared.walk(path)?, Walk::Found(_)))).await
    }

    async fn stat(&self, path: &VfsPath) -> Result<Metadata, VfsError> {
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

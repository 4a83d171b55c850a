use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{VfsError, VfsPath};

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EntryKind {
    /// A file holding bytes.
    File,
    /// A directory (a prefix under which files exist).
    Dir,
}

/// What [`Vfs::stat`] reports about a path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metadata {
    /// File or directory.
    pub kind: EntryKind,
    /// Size in bytes (0 for directories).
    pub len: u64,
    /// Last modification time, where the backend knows it.
    pub modified: Option<SystemTime>,
}

impl Metadata {
    /// Metadata for a file of `len` bytes.
    pub fn file(len: u64, modified: Option<SystemTime>) -> Self {
        Self { kind: EntryKind::File, len, modified }
    }

    /// Metadata for a directory.
    pub fn dir(modified: Option<SystemTime>) -> Self {
        Self { kind: EntryKind::Dir, len: 0, modified }
    }
}

/// One entry returned by [`Vfs::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VfsEntry {
    /// Full path of the entry (not relative to the listed prefix).
    pub path: VfsPath,
    /// File or directory.
    pub kind: EntryKind,
    /// Size in bytes (0 for directories).
    pub len: u64,
}

impl VfsEntry {
    /// A new entry.
    pub fn new(path: VfsPath, kind: EntryKind, len: u64) -> Self {
        Self { path, kind, len }
    }
}

/// A virtual filesystem: the only place KAOS keeps state.
///
/// Implementations must be cheap to share (`Arc<dyn Vfs>`) and safe to call from many tasks at
/// once. Contract for every backend:
///
/// - [`write`](Vfs::write) replaces a file atomically: a reader sees the old bytes or the new
///   bytes, never a mix, and a crash leaves one of the two. Parent directories are created.
/// - [`append`](Vfs::append) adds bytes at the end of a file (creating it and its parents), in one
///   piece: concurrent appends to the same file never interleave within one call.
/// - A missing path gives [`VfsError::NotFound`]; so does a path the caller may not see.
/// - Directories are implicit: they exist while a file exists below them.
#[async_trait]
pub trait Vfs: Send + Sync + Debug {
    /// Reads a whole file. Errors with `NotFound` for a missing file and `WrongKind` for a
    /// directory.
    async fn read(&self, path: &VfsPath) -> Result<Bytes, VfsError>;

    /// Atomically replaces (or creates) a file with `data`, creating its parents. Errors with
    /// `WrongKind` when `path` is a directory (the root included) or lies below a file.
    async fn write(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError>;

    /// Appends `data` to a file, creating it (and its parents) when missing. Same `WrongKind`
    /// cases as [`write`](Vfs::write).
    async fn append(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError>;

    /// [`append`](Vfs::append), and the file's metadata right after it when the backend knows
    /// them without another call (`None` otherwise: ask [`stat`](Vfs::stat)). A log's writer
    /// that remembers what version of the file it left (a session cache does) learns it here
    /// without a second round trip. The default appends and says `None`.
    async fn append_and_stat(&self, path: &VfsPath, data: Bytes) -> Result<Option<Metadata>, VfsError> {
        self.append(path, data).await.map(|()| None)
    }

    /// Whether a file or directory exists at `path`.
    async fn exists(&self, path: &VfsPath) -> Result<bool, VfsError>;

    /// Metadata of a file or directory.
    async fn stat(&self, path: &VfsPath) -> Result<Metadata, VfsError>;

    /// The direct children of the directory `prefix` (the root when `prefix` is the root),
    /// sorted by path. A missing directory lists as empty; a file gives `WrongKind`.
    async fn list(&self, prefix: &VfsPath) -> Result<Vec<VfsEntry>, VfsError>;

    /// Deletes a file, or a directory with everything below it. `NotFound` when missing.
    /// Deleting the root empties the VFS (the root itself always exists).
    async fn delete(&self, path: &VfsPath) -> Result<(), VfsError>;

    /// The bytes of a file from `offset` to its end (empty when `offset` is at or past the end).
    /// Lets a reader of an append-only log fetch only what it has not seen. The default reads
    /// the whole file; backends override it to read only the tail.
    async fn read_from(&self, path: &VfsPath, offset: u64) -> Result<Bytes, VfsError> {
        let bytes = self.read(path).await?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
        Ok(bytes.slice(start..))
    }

    /// Cuts a file to its first `len` bytes; a file not longer than `len` is left as it is.
    /// `NotFound` for a missing file, `WrongKind` for a directory.
    ///
    /// This is how a log drops a torn last line without rewriting what comes before it:
    /// [`DiskVfs`](crate::DiskVfs) and [`MemoryVfs`](crate::MemoryVfs) cut the file in place;
    /// a backend that cannot (an object store) replaces the file with its prefix, atomically.
    /// The caller excludes concurrent appends (e.g. by holding a [`lock`](Vfs::lock)). The
    /// default replaces the file with its prefix through [`read`](Vfs::read) and
    /// [`write`](Vfs::write).
    async fn truncate(&self, path: &VfsPath, len: u64) -> Result<(), VfsError> {
        let bytes = self.read(path).await?;
        let keep = usize::try_from(len).unwrap_or(usize::MAX);
        if keep < bytes.len() {
            self.write(path, bytes.slice(..keep)).await?;
        }
        Ok(())
    }

    /// Makes the bytes already appended to a file durable: after it returns they survive a
    /// machine crash ([`DiskVfs`](crate::DiskVfs): `fsync`). `NotFound` for a missing file.
    /// Backends whose writes are durable (or never durable, like
    /// [`MemoryVfs`](crate::MemoryVfs)) when they return do nothing, which is the default; a
    /// wrapper around a disk backend must forward it.
    async fn sync(&self, path: &VfsPath) -> Result<(), VfsError> {
        let _ = path;
        Ok(())
    }

    /// Takes the exclusive lock named by `path`, waiting while another holder has it; the lock
    /// is released when the returned [`VfsLock`] is dropped.
    ///
    /// How far the exclusion reaches depends on the backend and is part of its contract:
    /// [`MemoryVfs`](crate::MemoryVfs) excludes within the process; [`DiskVfs`](crate::DiskVfs)
    /// excludes across processes with an OS file lock, which the kernel releases if the holder
    /// dies. A backend gives up with [`VfsError::LockTimeout`] rather than wait forever.
    /// The lock file itself may be created at `path`.
    async fn lock(&self, path: &VfsPath) -> Result<VfsLock, VfsError>;

    /// Whether [`lock`](Vfs::lock) starts with a fair in-process lock of its own: tasks of
    /// this process wait for it in arrival order, without an OS call or a request while
    /// another task holds the name. A caller that would put such a lock in front of the
    /// backend's (a session store does) can then skip its own. `false` by default, which is
    /// always correct; a wrapper forwards it.
    fn locks_in_process_first(&self) -> bool {
        false
    }
}

/// A held lock from [`Vfs::lock`]; dropping it releases the lock.
///
/// Some backends hold a lock by a lease that is renewed in the background and can be lost
/// (an `ObjectStoreVfs` holder paused for longer than the lease's
/// time to live is taken over). For those, [`check`](VfsLock::check) says whether the lock is
/// still held, and [`release`](VfsLock::release) gives it back and waits until the release is
/// stored, so a process that exits right after it leaves no lock behind. Dropping a lock
/// without `release` still releases it, as well as the backend can from a destructor.
#[must_use = "the lock is released as soon as this is dropped"]
pub struct VfsLock {
    held: Held,
}

/// What a [`VfsLock`] holds.
enum Held {
    /// A guard released by dropping it: nothing to check, nothing to await.
    Plain(#[allow(dead_code)] Box<dyn Send + Sync>),
    /// A guard that can be checked and released explicitly (a lease).
    Checked(Box<dyn HeldLock>),
}

/// What keeps a backend's lock held: released on drop, and, for leases, checked and released
/// explicitly. Backends implement it for the guard they put in a [`VfsLock`].
#[async_trait]
pub trait HeldLock: Send + Sync {
    /// `Ok` while the lock is still held as far as the holder can tell; for a lease,
    /// [`VfsError::LockLost`] once it was taken over or has expired.
    fn check(&self) -> Result<(), VfsError> {
        Ok(())
    }

    /// Releases the lock and waits until the release is done. The default drops the guard.
    async fn release(self: Box<Self>) -> Result<(), VfsError> {
        Ok(())
    }
}

impl VfsLock {
    /// Wraps whatever keeps a backend's lock held until it is dropped (a lock that cannot be
    /// lost, such as an OS file lock).
    pub fn new(held: impl Send + Sync + 'static) -> Self {
        Self { held: Held::Plain(Box::new(held)) }
    }

    /// Wraps a guard that can be checked and released explicitly (a lease).
    pub fn from_held(held: impl HeldLock + 'static) -> Self {
        Self { held: Held::Checked(Box::new(held)) }
    }

    /// `Ok` while the lock is still held; [`VfsError::LockLost`] when a lease behind it was
    /// taken over or expired (no request is made: this is what the holder knows).
    pub fn check(&self) -> Result<(), VfsError> {
        match &self.held {
            Held::Plain(_) => Ok(()),
            Held::Checked(held) => held.check(),
        }
    }

    /// Releases the lock and waits until the release is done (for a lease: stored in the
    /// object store, so the next holder takes it at once). Prefer this to dropping the lock
    /// when the process may exit right after.
    pub async fn release(self) -> Result<(), VfsError> {
        match self.held {
            // Dropped here: no future to box for a release that is only a drop.
            Held::Plain(_) => Ok(()),
            Held::Checked(held) => held.release().await,
        }
    }
}

impl Debug for VfsLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VfsLock")
    }
}

/// Named in-process locks: what a backend without a cross-process lock (such as
/// [`MemoryVfs`](crate::MemoryVfs)) uses to implement [`Vfs::lock`], and what the Runner uses to
/// serialize turns of one session within a process. Waiters are served in arrival order. A
/// name is forgotten when its last holder or waiter lets go, so the map holds only the locks in
/// use and taking a lock costs the same however many there are. The names are spread over
/// [`LOCK_SHARDS`] separately locked maps, so threads taking different names rarely wait for
/// (or bounce the cache line of) the same mutex.
#[derive(Debug, Default, Clone)]
pub struct LocalLocks {
    shards: Arc<LockShards>,
}

/// How many separately locked maps [`LocalLocks`] spreads its names over.
const LOCK_SHARDS: usize = 16;

type LockMap = foldhash::HashMap<Arc<str>, Arc<tokio::sync::Mutex<()>>>;

#[derive(Debug, Default)]
struct LockShards {
    hasher: foldhash::fast::RandomState,
    maps: [Mutex<LockMap>; LOCK_SHARDS],
}

impl LockShards {
    fn index(&self, name: &str) -> usize {
        use std::hash::BuildHasher as _;
        (self.hasher.hash_one(name) % LOCK_SHARDS as u64) as usize
    }

    fn map(&self, index: usize) -> std::sync::MutexGuard<'_, LockMap> {
        self.maps[index % LOCK_SHARDS].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Holds one of [`LocalLocks`]' locks; forgets the name when nobody else wants it.
struct LocalGuard {
    shards: Arc<LockShards>,
    index: usize,
    /// The map's own key (shared, not copied).
    name: Arc<str>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        // Only the map's own reference left: no holder, no waiter. The clone in `lock` and this
        // check both run under the shard's mutex, so a concurrent taker keeps the entry alive.
        let mut map = self.shards.map(self.index);
        if let std::collections::hash_map::Entry::Occupied(entry) = map.entry(self.name.clone())
            && Arc::strong_count(entry.get()) == 1
        {
            entry.remove();
        }
    }
}

impl LocalLocks {
    /// Takes the lock named `name`, waiting (in arrival order) while it is held.
    pub async fn lock(&self, name: &str) -> VfsLock {
        let index = self.shards.index(name);
        let (name, mutex) = {
            let mut map = self.shards.map(index);
            let entry = map.entry(Arc::from(name));
            (entry.key().clone(), entry.or_default().clone())
        };
        let guard = mutex.lock_owned().await;
        VfsLock::new(LocalGuard { shards: self.shards.clone(), index, name, guard: Some(guard) })
    }

    /// How many names are held or waited for right now.
    pub fn in_use(&self) -> usize {
        (0..LOCK_SHARDS).map(|index| self.shards.map(index).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::LocalLocks;

    #[tokio::test]
    async fn idle_names_are_forgotten() {
        let locks = LocalLocks::default();
        let first = locks.lock("a").await;
        assert_eq!(locks.in_use(), 1);
        drop(first);
        assert_eq!(locks.in_use(), 0);
    }

    /// Names in every shard: each excludes its own takers only, and a name stays known while a
    /// waiter wants it.
    #[tokio::test]
    async fn names_exclude_their_own_takers_in_every_shard() {
        let locks = LocalLocks::default();
        let mut held = Vec::new();
        for i in 0..100 {
            held.push(locks.lock(&format!("s{i}")).await);
        }
        assert_eq!(locks.in_use(), 100);
        let waiter = tokio::spawn({
            let locks = locks.clone();
            async move { drop(locks.lock("s7").await) }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "s7 is held");
        // Releasing every other name leaves s7 known to its waiter.
        let s7 = held.remove(7);
        held.clear();
        assert_eq!(locks.in_use(), 1);
        drop(s7);
        waiter.await.unwrap();
        assert_eq!(locks.in_use(), 0);
    }
}

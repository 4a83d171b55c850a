use std::fmt::Debug;
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
}

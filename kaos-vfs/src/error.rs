use crate::VfsPath;

/// Everything that can go wrong in a VFS operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VfsError {
    /// The path does not exist, or is outside what the caller may see (the two are
    /// indistinguishable on purpose).
    #[error("not found: {0}")]
    NotFound(String),

    /// The path string breaks the VFS path rules (absolute, `..`, NUL, backslash, empty segment…).
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The rejected input, as given.
        path: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// A file operation was attempted on a directory or the other way round.
    #[error("{path} is a {found}, not a {expected}")]
    WrongKind {
        /// The path involved.
        path: VfsPath,
        /// What the operation needed ("file" or "directory").
        expected: &'static str,
        /// What is there.
        found: &'static str,
    },

    /// A lock stayed held by someone else for longer than the backend waits.
    #[error("gave up waiting for the lock {path} after {after:?}")]
    LockTimeout {
        /// The lock's path.
        path: VfsPath,
        /// How long the backend waited.
        after: std::time::Duration,
    },

    /// A lock held by a lease was lost (taken over by another process after the holder
    /// stopped renewing it for longer than its time to live, or released): the write made
    /// under it was refused, so a holder that lost its lock never commits.
    #[error("the lock {path} is no longer held (its lease was taken over or expired); the write was refused")]
    LockLost {
        /// The lock's path.
        path: VfsPath,
    },

    /// Another writer changed a file while this process held the lock that guards it and
    /// had read the file under that lock (a holder that lost its lease and wrote anyway, or a
    /// writer that does not take the lock). This write was refused rather than interleaved.
    #[error("{path} was changed by another writer while this process held its lock; the write was refused")]
    Conflict {
        /// The file's path.
        path: VfsPath,
    },

    /// The object store does not honour conditional writes (create-if-absent and
    /// compare-and-swap), which leases and segments rely on. Refused at first use unless the
    /// VFS runs in single-writer mode.
    #[error(
        "the object store {store} ignores conditional writes ({detail}); sharing sessions between \
         processes would be unsafe. Use a store that supports If-None-Match and If-Match on PUT, \
         or turn on single-writer mode (vfs.s3_single_writer) if only one process uses it"
    )]
    ConditionalWritesUnsupported {
        /// The store, as it describes itself.
        store: String,
        /// Which check failed.
        detail: String,
    },

    /// The backend failed (disk full, permission denied, I/O error…).
    #[error("storage error at {path}")]
    Io {
        /// The path involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl VfsError {
    /// Whether this is a `NotFound` (missing or out of scope).
    pub fn is_not_found(&self) -> bool {
        matches!(self, VfsError::NotFound(_))
    }
}

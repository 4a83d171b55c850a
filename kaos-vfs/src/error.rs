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

//! [`SessionError`]: why reading or changing a stored session failed.

use kaos_vfs::VfsError;

use crate::MemoryError;

/// Why reading or changing a stored session failed. A failed change leaves the stored session
/// exactly as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session id breaks the session-id rules.
    #[error("invalid session id {id:?}: {reason}")]
    InvalidId {
        /// The rejected id.
        id: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A stored session record is unreadable (not a torn last line, which is repaired).
    #[error("session {session} is corrupt at {path} line {line}: {message}")]
    Corrupt {
        /// The session.
        session: String,
        /// The file.
        path: String,
        /// The 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Session memory refused the change (e.g. a section that refuses evictions is full).
    #[error("memory refused the change")]
    Memory(#[from] MemoryError),
    /// The VFS failed.
    #[error("storage failed")]
    Vfs(#[from] VfsError),
    /// A record or checkpoint could not be encoded as JSON.
    #[error("cannot encode a session record")]
    Encode(#[from] serde_json::Error),
}

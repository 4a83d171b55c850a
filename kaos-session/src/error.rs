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
    /// The session's log cannot be written where it belongs (found before a turn spends
    /// anything): its directory is a symlink (never followed by a disk VFS) or a file is in
    /// the way.
    #[error(
        "session {session} cannot be stored: sessions/{session} is not a writable directory in the data directory (a symlink or a file in the way?)"
    )]
    Unwritable {
        /// The session.
        session: String,
        /// What the VFS said.
        #[source]
        source: VfsError,
    },
    /// Session memory refused the change (e.g. a section that refuses evictions is full).
    #[error("memory refused the change")]
    Memory(#[from] MemoryError),
    /// The VFS failed.
    #[error("storage failed")]
    Vfs(#[from] VfsError),
    /// The task committing a turn ended before it finished (the async runtime shut down): the
    /// turn may or may not be stored, whole either way.
    #[error("the commit was interrupted (the runtime shut down); the turn is stored whole or not at all")]
    CommitInterrupted,
    /// A record or checkpoint could not be encoded as JSON.
    #[error("cannot encode a session record")]
    Encode(#[from] serde_json::Error),
}

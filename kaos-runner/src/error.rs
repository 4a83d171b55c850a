use kaos_providers::ProviderError;
use kaos_vfs::VfsError;

use kaos_session::SessionError;

/// Why a turn (or building a Runner) failed. A failed turn persists nothing: the session is
/// left exactly as it was before the turn.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The session id breaks the session-id rules.
    #[error("invalid session id {id:?}: {reason}")]
    InvalidSession {
        /// The rejected id.
        id: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// The model call failed.
    #[error("model call failed: {0}")]
    Provider(#[from] ProviderError),
    /// The VFS failed.
    #[error("storage failed: {0}")]
    Vfs(#[from] VfsError),
    /// A stored session record is unreadable (not a torn last line, which is repaired).
    #[error("session {session} is corrupt at {path} line {line}: {message}")]
    CorruptSession {
        /// The session.
        session: String,
        /// The file.
        path: String,
        /// The 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Session memory refused the turn (e.g. the current message alone exceeds the context
    /// budget, or a section that refuses evictions is full).
    #[error("memory: {0}")]
    Memory(#[from] kaos_session::MemoryError),
    /// A paused run could not be resumed.
    #[error("cannot resume: {0}")]
    RunState(#[from] crate::pause::RunStateError),
    /// A record, checkpoint or run state could not be encoded as JSON.
    #[error("cannot encode {what}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A hook failed under the fail-closed policy.
    #[error("hook {hook} failed: {message}")]
    Hook {
        /// The hook.
        hook: String,
        /// What went wrong.
        message: String,
    },
    /// The Runner could not be configured (e.g. an invalid tool glob).
    #[error("invalid runner configuration: {0}")]
    Config(String),
}

impl RunError {
    /// A short, stable name of the error class, as carried by `RunError` events.
    pub fn kind(&self) -> &'static str {
        match self {
            RunError::InvalidSession { .. } => "invalid_session",
            RunError::Provider(e) => e.kind(),
            RunError::Vfs(_) => "storage",
            RunError::CorruptSession { .. } => "corrupt_session",
            RunError::Memory(_) => "memory",
            RunError::RunState(_) => "run_state",
            RunError::Hook { .. } => "hook",
            RunError::Encode { .. } => "encode",
            RunError::Config(_) => "config",
        }
    }
}

impl From<SessionError> for RunError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::InvalidId { id, reason } => RunError::InvalidSession { id, reason },
            SessionError::Corrupt { session, path, line, message } => {
                RunError::CorruptSession { session, path, line, message }
            }
            SessionError::Memory(e) => RunError::Memory(e),
            SessionError::Vfs(e) => RunError::Vfs(e),
            SessionError::Encode(source) => RunError::Encode { what: "a session record", source },
            // `SessionError` is non-exhaustive; a new kind is still a storage-side failure.
            other => RunError::Config(other.to_string()),
        }
    }
}

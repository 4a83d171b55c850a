//! [`RunError`], why a turn (or building a Runner) failed, and [`RunStateError`], why a paused
//! run cannot be resumed. The bottom layer of the crate: it imports nothing from it.
//!
//! An error's `Display` says what failed at its own level only; the cause is its
//! [`source`](std::error::Error::source), never repeated in the text. [`RunError::report`]
//! prints the whole chain, each cause once.

use kaos_agent::AgentError;
use kaos_providers::ProviderError;
use kaos_session::SessionError;
use kaos_vfs::VfsError;

/// Version of the [`RunState`](crate::RunState) format.
pub const RUN_STATE_VERSION: u32 = 2;

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
    #[error("model call failed")]
    Provider(#[from] ProviderError),
    /// The VFS failed.
    #[error("storage failed")]
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
    #[error("memory refused the turn")]
    Memory(#[from] kaos_session::MemoryError),
    /// The session store failed in a way not listed above.
    #[error("session storage failed")]
    Session(#[source] SessionError),
    /// A paused run could not be resumed.
    #[error("cannot resume")]
    RunState(#[from] RunStateError),
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
    /// An agent configuration (a delegate's, or one of the handoff team) is invalid.
    #[error("invalid agent configuration")]
    Agent(#[from] AgentError),
    /// A tool glob of the agent (a tool selection or a permission rule) does not compile.
    #[error("invalid tool glob {glob:?} at {field}: {message}")]
    InvalidToolGlob {
        /// The glob.
        glob: String,
        /// Where it is, as a field path (`tools[0]`, `permissions[1].tool`).
        field: String,
        /// Why it does not compile.
        message: String,
    },
    /// Two different agents of a handoff team have one name, so `handoff_to_<name>` cannot
    /// address both.
    #[error("two different handoff agents are named {name:?}; handoff targets need unique names")]
    Team {
        /// The name.
        name: String,
    },
    /// A run's event stream ended without a turn summary (and without an error).
    #[error("the run ended without a turn summary")]
    IncompleteRun,
    /// An invariant of the engine does not hold (a bug; please report it).
    #[error("internal error: {0}")]
    Internal(&'static str),
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
            RunError::Session(_) => "session",
            RunError::RunState(_) => "run_state",
            RunError::Hook { .. } => "hook",
            RunError::Encode { .. } => "encode",
            RunError::Agent(_) => "agent",
            RunError::InvalidToolGlob { .. } => "invalid_tool_glob",
            RunError::Team { .. } => "team",
            RunError::IncompleteRun => "incomplete_run",
            RunError::Internal(_) => "internal",
        }
    }

    /// The error and each of its causes, once, joined by `": "` (what `run_error` events
    /// carry as their message).
    ///
    /// ```
    /// use kaos_providers::ProviderError;
    /// use kaos_runner::RunError;
    ///
    /// let missing = ProviderError::MissingSetting { provider: "openai".into(), variable: "OPENAI_API_KEY".into() };
    /// let error = RunError::from(missing);
    /// assert_eq!(error.to_string(), "model call failed");
    /// assert_eq!(error.report(), "model call failed: provider \"openai\" needs OPENAI_API_KEY to be set");
    /// ```
    pub fn report(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
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
            // `SessionError` is non-exhaustive; a new kind keeps its own text as the source.
            other => RunError::Session(other),
        }
    }
}

/// Why a run state cannot be resumed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunStateError {
    /// No run state is stored for this run.
    #[error("no paused run {run_id}")]
    NotFound {
        /// The run.
        run_id: String,
    },
    /// The state was written by a format this build does not know (e.g. by an older version,
    /// before a run's context was part of its state).
    #[error("run state version {found} is not supported (this build reads {RUN_STATE_VERSION})")]
    UnknownVersion {
        /// The version found.
        found: u32,
    },
    /// The state belongs to another agent configuration than this Runner's.
    #[error("run state is for agent {found}, this runner runs {expected}")]
    AgentMismatch {
        /// This Runner's agent fingerprint.
        expected: String,
        /// The state's.
        found: String,
    },
    /// The run was resumed already.
    #[error(
        "run {run_id} was resumed already (a run resumes at most once, so an approved call never runs twice; send a new turn to its session instead)"
    )]
    AlreadyResumed {
        /// The run.
        run_id: String,
    },
    /// The state differs from the stored one (changed by hand, or superseded by a later pause).
    #[error("run state {run_id} does not match the stored state (tampered with, or superseded)")]
    Tampered {
        /// The run.
        run_id: String,
    },
    /// The session moved on since the pause (another turn ran), so the run cannot continue.
    #[error("session {session_id} is at turn {found}, the paused run was turn {expected}")]
    Stale {
        /// The session.
        session_id: String,
        /// The paused turn's number.
        expected: u32,
        /// The turn the session would run next.
        found: u32,
    },
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// No error's text repeats its cause's: each clause of a report appears once.
    #[test]
    fn no_error_repeats_its_source() {
        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let errors = [
            RunError::from(ProviderError::MissingSetting {
                provider: "openai".into(),
                variable: "OPENAI_API_KEY".into(),
            }),
            RunError::from(VfsError::NotFound("sessions/x".into())),
            RunError::from(RunStateError::NotFound { run_id: "run_1".into() }),
            RunError::Encode { what: "run state", source: json },
            RunError::from(SessionError::Vfs(VfsError::NotFound("sessions/y".into()))),
        ];
        for error in errors {
            let own = error.to_string();
            let cause = error.source().map(ToString::to_string).unwrap_or_default();
            assert!(cause.is_empty() || !own.contains(&cause), "{own:?} repeats {cause:?}");
            let report = error.report();
            let clauses: Vec<&str> = report.split(": ").collect();
            let mut unique = clauses.clone();
            unique.dedup();
            assert_eq!(clauses, unique, "{report}");
        }
    }
}

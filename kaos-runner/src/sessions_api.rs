//! Listing, reading and deleting the sessions stored in a VFS.

use std::sync::Arc;

use kaos_vfs::Vfs;
use serde::Serialize;

use crate::session::SessionStore;
use crate::{RunError, Runner, SessionId, TurnRecord};

/// The sessions stored in a VFS (`sessions/{id}/turns.jsonl`), for tools and operators:
/// list them, read their turns, delete them.
///
/// It needs no agent: it reads the session logs only (a torn last line is skipped here too; it
/// is repaired by the next turn, not by reading). For a session's memory, a full JSON export,
/// or a delete that waits for a turn in progress, use the Runner ([`Runner::memory`],
/// [`Runner::export_session`], [`Runner::delete_session`]).
///
/// ```
/// use kaos_agent::Agent;
/// use kaos_runner::Runner;
/// use kaos_runtime::Runtime;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let runner = Runner::builder(Agent::builder().build()?, Runtime::test_mode()).build()?;
/// runner.turn("Hello!", "demo").await?;
/// let sessions = runner.sessions();
/// let listed = sessions.list().await?;
/// assert_eq!((listed[0].id.as_str(), listed[0].turns), ("demo", 1));
/// assert_eq!(sessions.turns("demo").await?.map(|t| t.len()), Some(1));
/// assert!(sessions.delete("demo").await?);
/// assert_eq!(sessions.turns("demo").await?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Sessions {
    vfs: Arc<dyn Vfs>,
    store: SessionStore,
}

/// What [`Sessions::list`] reports about one session.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SessionSummary {
    /// The session.
    pub id: SessionId,
    /// Completed turns.
    pub turns: u32,
    /// Cost of all its turns in USD.
    pub cost_usd: f64,
    /// Tokens used by all its turns.
    pub total_tokens: u64,
    /// When its last turn finished, in milliseconds since the Unix epoch (`None`: no turns).
    pub last_turn_at_ms: Option<u64>,
}

impl Runner {
    /// The sessions stored in this Runner's VFS.
    pub fn sessions(&self) -> Sessions {
        Sessions::new(self.runtime().vfs().clone())
    }
}

impl Sessions {
    /// The sessions stored in `vfs`.
    pub fn new(vfs: Arc<dyn Vfs>) -> Self {
        Self { store: SessionStore::new(vfs.clone()), vfs }
    }

    /// The ids of every stored session, sorted (cheap: reads no log).
    pub async fn ids(&self) -> Result<Vec<SessionId>, RunError> {
        self.store.list().await
    }

    /// Every stored session, sorted by id. Reads every session's log (cost grows with the
    /// total size of the logs). Directories under `sessions/` that are not valid session ids
    /// are skipped.
    pub async fn list(&self) -> Result<Vec<SessionSummary>, RunError> {
        let mut out = Vec::new();
        for id in self.store.list().await? {
            // Records without messages only changed memory; they are not turns.
            let records: Vec<TurnRecord> =
                self.store.records(&id).await?.into_iter().filter(|r| !r.messages.is_empty()).collect();
            out.push(SessionSummary {
                turns: u32::try_from(records.len()).unwrap_or(u32::MAX),
                cost_usd: records.iter().map(|r| r.cost_usd).sum(),
                total_tokens: records.iter().map(|r| r.usage.total_tokens()).sum(),
                last_turn_at_ms: records.last().map(|r| r.finished_at_ms),
                id,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The session's turns, oldest first; `None` when the session has no stored turns.
    pub async fn turns(&self, session_id: &str) -> Result<Option<Vec<TurnRecord>>, RunError> {
        let id = SessionId::new(session_id)?;
        let records = self.store.records(&id).await?;
        Ok(if records.is_empty() { None } else { Some(records) })
    }

    /// Deletes the session and everything stored under it (its files too). Returns whether
    /// there was anything to delete.
    pub async fn delete(&self, session_id: &str) -> Result<bool, RunError> {
        let id = SessionId::new(session_id)?;
        match self.vfs.delete(&SessionStore::dir(&id)?).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

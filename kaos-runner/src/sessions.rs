//! The session API on [`Runner`]: history, memory, export, remember and delete, through the
//! Runner's [`Sessions`] (the same locks and cache its turns use) and its agent's memory profile.

use std::time::{SystemTime, UNIX_EPOCH};

use kaos_agent::SectionKind;
use kaos_providers::{Message, Usage};
use kaos_session::{NewItem, SESSION_LAYOUT_VERSION, SessionExport, SessionMemory, Sessions, TurnRecord};

use crate::error::RunError;
use crate::runner::Runner;
use kaos_session::{SessionId, StopReason};

impl Runner {
    /// The sessions stored in this Runner's VFS, sharing its locks and cache: a delete through
    /// it waits for a turn in progress on that session.
    pub fn sessions(&self) -> Sessions {
        self.member.sessions.clone()
    }

    /// The full stored conversation of a session, oldest first (empty for an unknown session).
    /// This is the transcript, not what the model sees: memory may have evicted or summarized
    /// older messages (see [`Runner::memory`]).
    pub async fn history(&self, session_id: impl AsRef<str>) -> Result<Vec<Message>, RunError> {
        let session = SessionId::new(session_id.as_ref())?;
        Ok(self.member.sessions.history(&session).await?)
    }

    /// A session's memory as the next turn would see it (empty for an unknown session).
    /// Reads without the session's lock, so it never waits for a turn in progress.
    pub async fn memory(&self, session_id: impl AsRef<str>) -> Result<SessionMemory, RunError> {
        let session = SessionId::new(session_id.as_ref())?;
        Ok(self.member.sessions.memory(&session, self.agent().memory(), self.member.counter.clone()).await?)
    }

    /// The whole session as JSON-ready data. `NotFound` ([`RunError::Vfs`]) for an unknown
    /// session. Reads without the session's lock (the log is append-only and every write is
    /// atomic), so it never waits for a turn in progress or a lease held by another process.
    pub async fn export_session(&self, session_id: impl AsRef<str>) -> Result<SessionExport, RunError> {
        let session = SessionId::new(session_id.as_ref())?;
        Ok(self.member.sessions.export(&session, self.agent().memory(), self.member.counter.clone()).await?)
    }

    /// Adds items to a section of a session's memory between turns (e.g. documents for the
    /// research pattern: `NewItem::text(body).with_metadata("name", json!("report.md"))`).
    /// The items are persisted at once, as a record with no messages; the next turns see them
    /// (searchable sections by relevance). Returns the new items' ids. All or nothing: if one
    /// item is refused (e.g. a full section whose policy refuses), nothing is stored.
    pub async fn remember(
        &self,
        session_id: impl AsRef<str>,
        section: SectionKind,
        items: impl IntoIterator<Item = NewItem>,
    ) -> Result<Vec<u64>, RunError> {
        let session = SessionId::new(session_id.as_ref())?;
        let shared = &self.member;
        let mut taken = shared.sessions.take(&session, self.agent().memory(), shared.counter.clone()).await?;
        // A refused item drops the taken session uncommitted: nothing is stored or cached.
        let ids =
            items.into_iter().map(|item| taken.memory.add(section, item)).collect::<Result<Vec<_>, _>>()?;
        let ops = taken.memory.take_ops();
        if ops.is_empty() {
            return Ok(ids);
        }
        let record = memory_record(taken.memory.turn(), "remember", &shared.fingerprint, ops);
        taken.commit(record).await?;
        Ok(ids)
    }

    /// Adds one document's chunks to a session's `documents` section, all or nothing, unless the
    /// section already holds a document with the same `sha256` (the items' `file_sha256`
    /// metadata; [`DocumentAdded::Unchanged`]) or the chunks would take it over `max_chunks`
    /// ([`DocumentAdded::OverLimit`]). The check and the write happen under the session's lock,
    /// so concurrent uploads of one file store it once and never pass the limit together.
    pub async fn add_document(
        &self,
        session_id: impl AsRef<str>,
        sha256: &str,
        chunks: Vec<NewItem>,
        max_chunks: u64,
    ) -> Result<DocumentAdded, RunError> {
        let session = SessionId::new(session_id.as_ref())?;
        let shared = &self.member;
        let mut taken = shared.sessions.take(&session, self.agent().memory(), shared.counter.clone()).await?;
        let held = taken.memory.section(SectionKind::Documents).items();
        if held.iter().any(|i| i.metadata.get("file_sha256").and_then(|v| v.as_str()) == Some(sha256)) {
            return Ok(DocumentAdded::Unchanged);
        }
        if (held.len() + chunks.len()) as u64 > max_chunks {
            return Ok(DocumentAdded::OverLimit { held: held.len(), limit: max_chunks });
        }
        let ids = chunks
            .into_iter()
            .map(|item| taken.memory.add(SectionKind::Documents, item))
            .collect::<Result<Vec<_>, _>>()?;
        let ops = taken.memory.take_ops();
        if !ops.is_empty() {
            let record = memory_record(taken.memory.turn(), "remember", &shared.fingerprint, ops);
            taken.commit(record).await?;
        }
        Ok(DocumentAdded::Added { ids })
    }

    /// Removes items from a section of a session's memory between turns (e.g. one document's
    /// chunks), persisted at once like [`Runner::remember`]. Ids not in the section are
    /// ignored; returns how many items were removed.
    pub async fn forget(
        &self,
        session_id: impl AsRef<str>,
        section: SectionKind,
        ids: impl IntoIterator<Item = u64>,
    ) -> Result<usize, RunError> {
        let session = SessionId::new(session_id.as_ref())?;
        let shared = &self.member;
        let mut taken = shared.sessions.take(&session, self.agent().memory(), shared.counter.clone()).await?;
        let wanted: std::collections::BTreeSet<u64> = ids.into_iter().collect();
        let present: Vec<u64> = taken
            .memory
            .section(section)
            .items()
            .iter()
            .map(|i| i.id)
            .filter(|id| wanted.contains(id))
            .collect();
        if present.is_empty() {
            return Ok(0);
        }
        let removed = present.len();
        taken.memory.remove(section, present);
        let ops = taken.memory.take_ops();
        let record = memory_record(taken.memory.turn(), "forget", &shared.fingerprint, ops);
        taken.commit(record).await?;
        Ok(removed)
    }

    /// Deletes a session: its log, checkpoint and files. Waits for a turn in progress on it.
    /// `NotFound` ([`RunError::Vfs`]) for an unknown session.
    pub async fn delete_session(&self, session_id: impl AsRef<str>) -> Result<(), RunError> {
        let session = SessionId::new(session_id.as_ref())?;
        if self.member.sessions.delete(session.as_str()).await? {
            Ok(())
        } else {
            Err(RunError::Vfs(kaos_vfs::VfsError::NotFound(format!("sessions/{session}"))))
        }
    }
}

/// What [`Runner::add_document`] did with a document.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DocumentAdded {
    /// Stored: the new items' ids, one per chunk.
    Added {
        /// The ids of the chunks' items.
        ids: Vec<u64>,
    },
    /// The session already holds a document with this hash; nothing was stored.
    Unchanged,
    /// Storing it would take the section over its chunk limit; nothing was stored.
    OverLimit {
        /// The chunks the section holds.
        held: usize,
        /// The limit it was given.
        limit: u64,
    },
}

/// The log record of a memory change made between turns (no messages): `kind` names it in the
/// run id (`remember_…`, `forget_…`).
fn memory_record(turn: u32, kind: &str, fingerprint: &str, ops: Vec<kaos_session::MemoryOp>) -> TurnRecord {
    TurnRecord {
        v: SESSION_LAYOUT_VERSION,
        turn,
        run_id: format!("{kind}_{}", uuid::Uuid::now_v7().simple()).into(),
        agent_fingerprint: fingerprint.into(),
        agent: None,
        messages: Vec::new(),
        tool_calls: Vec::new(),
        usage: Usage::default(),
        cost_usd: 0.0,
        unpriced_model_calls: 0,
        stop_reason: StopReason::Completed,
        finished_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default(),
        memory: ops,
    }
}

//! The session API: list, load, export and delete stored sessions.

use std::collections::BTreeMap;

use kaos_agent::SectionKind;
use std::time::{SystemTime, UNIX_EPOCH};

use kaos_providers::{Message, Usage};
use serde::Serialize;

use crate::session::{MemoryItem, NewItem, SESSION_LAYOUT_VERSION, SessionMemory, SessionStore, TurnRecord};
use crate::{RunError, Runner, SessionId, StopReason};

/// A whole session as JSON-ready data: its full log and its current memory.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SessionExport {
    /// The session.
    pub session_id: String,
    /// The layout version this build writes.
    pub layout_version: u32,
    /// Completed turns.
    pub turns: u32,
    /// Every turn's record, oldest first (the full transcript).
    pub records: Vec<TurnRecord>,
    /// The current memory, by section (empty sections left out).
    pub memory: BTreeMap<SectionKind, Vec<MemoryItem>>,
}

impl Runner {
    /// The full stored conversation of a session, oldest first (empty for an unknown session).
    /// This is the transcript, not what the model sees: memory may have evicted or summarized
    /// older messages (see [`Runner::memory`]).
    pub async fn history(&self, session_id: impl AsRef<str>) -> Result<Vec<Message>, RunError> {
        let session = SessionId::new(session_id.as_ref())?;
        let records = self.shared.store.records(&session).await?;
        Ok(records.into_iter().flat_map(|r| r.messages).collect())
    }

    /// A session's memory as the next turn would see it (empty for an unknown session).
    /// Reads without the session's lock, so it never waits for a turn in progress.
    pub async fn memory(&self, session_id: impl AsRef<str>) -> Result<SessionMemory, RunError> {
        let session = SessionId::new(session_id.as_ref())?;
        let hydrated =
            self.shared.store.load(&session, self.agent().memory(), self.shared.counter.clone()).await?;
        Ok(hydrated.memory)
    }

    /// The whole session as JSON-ready data. `NotFound` ([`RunError::Vfs`]) for an unknown
    /// session. Reads without the session's lock (the log is append-only and every write is
    /// atomic), so it never waits for a turn in progress or a lease held by another process.
    pub async fn export_session(&self, session_id: impl AsRef<str>) -> Result<SessionExport, RunError> {
        let session = SessionId::new(session_id.as_ref())?;
        let records = self.shared.store.records(&session).await?;
        if records.is_empty() {
            self.shared.store.vfs().stat(&SessionStore::dir(&session)?).await?;
        }
        let hydrated =
            self.shared.store.load(&session, self.agent().memory(), self.shared.counter.clone()).await?;
        Ok(SessionExport {
            session_id: session.to_string(),
            layout_version: SESSION_LAYOUT_VERSION,
            turns: hydrated.memory.turn(),
            records,
            memory: hydrated
                .memory
                .sections()
                .filter(|s| !s.items().is_empty())
                .map(|s| (s.kind(), s.items().to_vec()))
                .collect(),
        })
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
        let shared = &self.shared;
        let _local = shared.locks.lock(session.as_str()).await;
        let _lock = shared.store.lock(&session).await?;
        let hydrated =
            shared.store.load_for_write(&session, self.agent().memory(), shared.counter.clone()).await?;
        let mut memory = hydrated.memory;
        let ids = items.into_iter().map(|item| memory.add(section, item)).collect::<Result<Vec<_>, _>>()?;
        let ops = memory.take_ops();
        if ops.is_empty() {
            return Ok(ids);
        }
        let record = TurnRecord {
            v: SESSION_LAYOUT_VERSION,
            turn: memory.turn(),
            run_id: format!("remember_{}", uuid::Uuid::now_v7().simple()),
            agent_fingerprint: shared.fingerprint.to_string(),
            agent: None,
            messages: Vec::new(),
            tool_calls: Vec::new(),
            usage: Usage::default(),
            cost_usd: 0.0,
            stop_reason: StopReason::Completed,
            finished_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default(),
            memory: ops,
        };
        shared.cache.forget(&session);
        shared.store.commit(&session, &memory, &record, hydrated.position).await?;
        Ok(ids)
    }

    /// Deletes a session: its log, checkpoint and files. Waits for a turn in progress on it.
    /// `NotFound` ([`RunError::Vfs`]) for an unknown session.
    pub async fn delete_session(&self, session_id: impl AsRef<str>) -> Result<(), RunError> {
        let session = SessionId::new(session_id.as_ref())?;
        let _local = self.shared.locks.lock(session.as_str()).await;
        let _lock = self.shared.store.lock(&session).await?;
        self.shared.cache.forget(&session);
        self.shared.store.delete(&session).await
    }
}

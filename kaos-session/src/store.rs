//! How sessions are stored in a VFS: the `turns.jsonl` log, the checkpoint, and reading them back.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kaos_agent::{MemoryProfile, SectionKind};
use kaos_providers::{Message, TokenCounter, Usage};
use kaos_vfs::{Vfs, VfsError, VfsLock, VfsPath};
use serde::{Deserialize, Serialize};

use crate::memory::{MemoryItem, MemoryOp, NewItem, SessionMemory};
use crate::{SessionError, SessionId, StopReason, ToolCallRecord};

/// Version of the session layout in the VFS, written into every record and checkpoint.
///
/// Layout (version 3), under `sessions/{session_id}/`:
/// - `turns.jsonl` — one [`TurnRecord`] per completed turn, appended in one write: the turn's
///   messages, tool calls, usage, cost, and the memory changes of its streaming and snapshot
///   sections. This log is the session's source of truth and its full transcript. A message
///   is written once: the item that adds it to the messages section names its position in
///   the record's `messages` (`"message_at"`) instead of repeating it (new in version 3).
/// - `checkpoint.json` — the memory state after some turn and the log offset it covers,
///   written atomically once the log has grown past it by [`CHECKPOINT_MIN_TAIL_BYTES`] and by
///   eight times the checkpoint's own size. Hydration reads it and replays only the log after
///   it, so a cold hydration reads at most about nine checkpoints' worth of bytes however long
///   the session (memory budgets bound a checkpoint), and checkpoints cost at most an eighth
///   of the appends they follow:
///   persistence per turn stays flat. A missing or unreadable checkpoint only means a longer
///   replay.
/// - `files/` — the session's tool workspace.
///
/// Turns hold the lock `.locks/sessions/{session_id}.lock` (see [`Vfs::lock`]), outside the
/// session's directory so deleting a session never deletes a held lock.
///
/// Version 1 logs (no memory changes) are read as conversations in the messages section;
/// version 2 lines (every message also inside its memory item) are read as they are.
pub const SESSION_LAYOUT_VERSION: u32 = 3;

/// The least log growth, in bytes, after which a new checkpoint is written.
pub const CHECKPOINT_MIN_TAIL_BYTES: u64 = 512 * 1024;

/// A new checkpoint is also not written before the log has grown past the last one by this
/// many times its size, so checkpoints cost at most an eighth of the appends they follow.
const CHECKPOINT_TAIL_FACTOR: u64 = 8;

/// The directory of a session's tool workspace, `sessions/{id}/files` (deleted with the
/// session).
pub fn files_dir(id: &SessionId) -> Result<VfsPath, SessionError> {
    SessionStore::file(id, "/files")
}

/// The directory of a session's stored traces, `sessions/{id}/traces` (one `{turn}.jsonl` per
/// turn, written by a front end such as `kaos-server` from the turn's events; deleted with the
/// session).
pub fn traces_dir(id: &SessionId) -> Result<VfsPath, SessionError> {
    SessionStore::file(id, "/traces")
}

/// The directory all sessions are stored under, `sessions`.
pub fn sessions_root() -> Result<VfsPath, SessionError> {
    SessionStore::root()
}

/// What one completed turn added to its session: one line of `turns.jsonl`.
///
/// A record with no messages only changes memory (e.g. documents loaded between turns with
/// `Runner::remember`); its `turn` is the last completed turn.
///
/// Its fields are the stored layout (see [`SESSION_LAYOUT_VERSION`]): a new field comes with a
/// new layout version, so the engine can build records directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnRecord {
    /// Layout version ([`SESSION_LAYOUT_VERSION`]).
    pub v: u32,
    /// The turn's number in the session, from 1.
    pub turn: u32,
    /// The run that produced it.
    pub run_id: Arc<str>,
    /// The fingerprint of the agent that ran it (that ended it, after a handoff).
    pub agent_fingerprint: Arc<str>,
    /// The agent holding the conversation from this turn on, when the turn handed it over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Messages the turn added, in order: the user message, then the model's and tools'.
    pub messages: Vec<Message>,
    /// Tool calls with their results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallRecord>,
    /// Usage of the turn.
    pub usage: Usage,
    /// Cost of the turn in USD (priced calls only).
    pub cost_usd: f64,
    /// Model calls of the turn without a price (not in `cost_usd`). Absent in records written
    /// before it was recorded, read as 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unpriced_model_calls: u32,
    /// Why the turn stopped.
    pub stop_reason: StopReason,
    /// When the turn finished, in milliseconds since the Unix epoch.
    pub finished_at_ms: u64,
    /// The memory changes of the turn, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory: Vec<MemoryOp>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    v: u32,
    turn: u32,
    log_offset: u64,
    /// The session it was written for (a checkpoint copied from another session is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    /// The last record it covers, the line ending at `log_offset`: its length in bytes and
    /// its run id (checked on load, so a checkpoint over another log is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last: Option<(u64, String)>,
    /// What the session spent up to the checkpoint: USD and tokens.
    #[serde(default)]
    spent: (f64, u64),
    /// The agent holding the conversation at the checkpoint, when handed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    active_agent: Option<String>,
    sections: BTreeMap<SectionKind, Vec<MemoryItem>>,
}

/// What identifies a version of a session's log: its length and modification time. Appends
/// only grow a log, and any rewrite changes its modification time. A backend that reports no
/// modification time (allowed by [`kaos_vfs::Metadata`]) gives stamps that identify nothing,
/// and the session cache is not used for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStamp {
    /// The log's length in bytes.
    pub len: u64,
    /// Its modification time, when the backend reports one.
    pub modified: Option<std::time::SystemTime>,
}

impl LogStamp {
    /// Whether two equal stamps mean the same version of the log (an existing log with a
    /// modification time; a missing log is always the same empty version).
    pub fn identifies_version(&self) -> bool {
        self.modified.is_some() || self.len == 0
    }
}

/// Where a session's log and checkpoint stand after hydration.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogPosition {
    /// Length of the valid log (a dropped torn tail excluded).
    pub log_len: u64,
    /// The log offset the checkpoint covers (0 without one).
    pub checkpoint_offset: u64,
    /// The checkpoint's size in bytes (0 without one).
    pub checkpoint_len: u64,
}

/// A session as read from the VFS.
#[derive(Debug)]
pub struct Hydrated {
    pub memory: SessionMemory,
    /// Where the log and the checkpoint stand.
    pub position: LogPosition,
    /// Bytes of a torn last line (one without its `\n`) that was dropped, if any.
    pub dropped_tail: Option<usize>,
    /// Whether the checkpoint was ignored (unreadable, or inconsistent with the log).
    pub bad_checkpoint: bool,
    /// What was repaired or ignored, one sentence each (also logged with `tracing`).
    pub repairs: Vec<String>,
}

/// What [`SessionStore::salvage`] could read from a damaged log.
#[derive(Debug, Clone, Default)]
pub struct Salvaged {
    /// Every intact record, in log order (unreadable lines and repeats of the record before
    /// left out).
    pub records: Vec<TurnRecord>,
    /// What was left out: the 1-based line and why.
    pub skipped: Vec<(usize, String)>,
}

/// Reads and writes sessions in a VFS.
#[derive(Debug, Clone)]
pub struct SessionStore {
    vfs: Arc<dyn Vfs>,
}

impl SessionStore {
    pub fn new(vfs: Arc<dyn Vfs>) -> Self {
        Self { vfs }
    }

    pub fn vfs(&self) -> &Arc<dyn Vfs> {
        &self.vfs
    }

    pub fn root() -> Result<VfsPath, SessionError> {
        Ok(VfsPath::new("sessions")?)
    }

    pub fn dir(id: &SessionId) -> Result<VfsPath, SessionError> {
        Self::file(id, "")
    }

    pub(crate) fn log_path(id: &SessionId) -> Result<VfsPath, SessionError> {
        Self::file(id, "/turns.jsonl")
    }

    fn checkpoint_path(id: &SessionId) -> Result<VfsPath, SessionError> {
        Self::file(id, "/checkpoint.json")
    }

    /// `sessions/<id><suffix>`, built in one allocation (a turn asks for its log's path
    /// several times).
    fn file(id: &SessionId, suffix: &str) -> Result<VfsPath, SessionError> {
        Ok(VfsPath::try_from(["sessions/", id.as_str(), suffix].concat())?)
    }

    /// Takes the session's lock in the VFS (across processes, for a disk VFS).
    pub async fn lock(&self, id: &SessionId) -> Result<VfsLock, SessionError> {
        Ok(self.vfs.lock(&VfsPath::try_from([".locks/sessions/", id.as_str(), ".lock"].concat())?).await?)
    }

    /// Loads a session's memory: the checkpoint, then the log after it.
    ///
    /// The checkpoint is used only when it is consistent with the log: written for this
    /// session, covering no more than the log holds, ending on a line boundary after the record
    /// it names, and followed by the next turn's record (or the end of the log). Otherwise it is
    /// ignored (reported in `repairs`) and the whole log replayed. A last line without its `\n`
    /// (an interrupted append) is dropped and reported in `dropped_tail` (the caller cuts it with
    /// [`SessionStore::load_for_write`] before appending). Anything else that is wrong — an
    /// unreadable line, even the complete last one; a turn number repeated or skipped — is
    /// [`SessionError::Corrupt`], and nothing is changed.
    pub async fn load(
        &self,
        id: &SessionId,
        profile: &MemoryProfile,
        counter: Arc<dyn TokenCounter>,
    ) -> Result<Hydrated, SessionError> {
        let log = Self::log_path(id)?;
        let log_len = match self.vfs.stat(&log).await {
            Ok(meta) => meta.len,
            Err(e) if e.is_not_found() => 0,
            Err(e) => return Err(e.into()),
        };
        let mut repairs = Vec::new();
        let mut bad_checkpoint = false;
        let checkpoint = match self.vfs.read(&Self::checkpoint_path(id)?).await {
            Ok(bytes) => match serde_json::from_slice::<Checkpoint>(&bytes) {
                Ok(c) if c.v <= SESSION_LAYOUT_VERSION => Some((c, bytes.len() as u64)),
                Ok(c) => {
                    bad_checkpoint = true;
                    repairs.push(format!(
                        "ignored the checkpoint: written by a newer layout version {}; replayed the whole log",
                        c.v
                    ));
                    None
                }
                Err(e) => {
                    bad_checkpoint = true;
                    repairs.push(format!("ignored an unreadable checkpoint ({e}); replayed the whole log"));
                    None
                }
            },
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        let mut start = None;
        if let Some((c, len)) = checkpoint {
            match self.check_checkpoint(id, &log, &c, log_len).await? {
                Ok(tail) => start = Some((c, len, tail)),
                Err(why) => {
                    bad_checkpoint = true;
                    repairs.push(format!("ignored the checkpoint: {why}; replayed the whole log"));
                }
            }
        }
        let mut memory = SessionMemory::new(profile, counter);
        let (offset, checkpoint_len, tail, base_turn) = match start {
            Some((c, len, tail)) => {
                let turn = c.turn;
                let offset = c.log_offset;
                memory.restore(c.turn, c.sections);
                memory.set_spent(c.spent);
                memory.set_active_agent(c.active_agent);
                (offset, len, tail, turn)
            }
            None => {
                let tail = match self.vfs.read(&log).await {
                    Ok(bytes) => bytes,
                    Err(e) if e.is_not_found() => Bytes::new(),
                    Err(e) => return Err(e.into()),
                };
                (0, 0, tail, 0)
            }
        };
        let parsed = match parse_log(id, &log, &tail, offset, base_turn, Messages::InItems) {
            Ok(parsed) => parsed,
            // Line numbers count from the checkpoint: report the error as the whole log has it.
            Err(SessionError::Corrupt { .. }) if offset > 0 => {
                let whole = self.read_log_from(&log, 0).await?;
                parse_log(id, &log, &whole, 0, 0, Messages::InItems)?;
                return Err(SessionError::Corrupt {
                    session: id.to_string(),
                    path: log.to_string(),
                    line: 0,
                    message: "the log after the checkpoint is corrupt".to_owned(),
                });
            }
            Err(e) => return Err(e),
        };
        if let Some(bytes) = parsed.dropped_tail {
            repairs.push(format!(
                "dropped a torn last line of the log ({bytes} bytes without a newline: an interrupted append)"
            ));
        }
        for repair in &repairs {
            tracing::warn!(session = %id, "{repair}");
        }
        memory.reserve_adds(parsed.records.iter().flat_map(|r| &r.memory));
        for record in parsed.records {
            replay(&mut memory, record);
        }
        Ok(Hydrated {
            memory,
            position: LogPosition {
                log_len: offset + parsed.valid_len as u64,
                checkpoint_offset: offset,
                checkpoint_len,
            },
            dropped_tail: parsed.dropped_tail,
            bad_checkpoint,
            repairs,
        })
    }

    /// Whether checkpoint `c` is consistent with the log of `log_len` bytes: `Ok(Ok(tail))`
    /// with the log after it, `Ok(Err(why))` when it must be ignored.
    async fn check_checkpoint(
        &self,
        id: &SessionId,
        log: &VfsPath,
        c: &Checkpoint,
        log_len: u64,
    ) -> Result<Result<Bytes, String>, SessionError> {
        if let Some(session) = &c.session
            && session != id.as_str()
        {
            return Ok(Err(format!("it was written for session {session:?}")));
        }
        let offset = c.log_offset;
        if offset > log_len {
            return Ok(Err(format!("it covers {offset} bytes of the log but the log has {log_len}")));
        }
        if offset == 0 {
            if c.turn != 0 {
                return Ok(Err(format!("it names turn {} at the start of the log", c.turn)));
            }
            return self.read_log_from(log, 0).await.map(Ok);
        }
        // The line ending at the offset (its length when the checkpoint names it, else one
        // byte for the boundary), then what follows.
        let back = match &c.last {
            Some((len, _)) if *len > 0 && *len <= offset => *len,
            _ => 1,
        };
        let bytes = self.read_log_from(log, offset - back).await?;
        let back = usize::try_from(back).unwrap_or(usize::MAX);
        if bytes.len() < back || bytes[back - 1] != b'\n' {
            return Ok(Err(format!("its offset {offset} is not at the end of a line")));
        }
        if let Some((len, run_id)) = &c.last {
            let line = &bytes[..back];
            let record = decode(line, Messages::InRecord).ok();
            let matches = line[..back - 1].iter().all(|b| *b != b'\n')
                && record.is_some_and(|r| *r.run_id == **run_id && r.turn == c.turn);
            if back as u64 != *len || !matches {
                return Ok(Err(format!(
                    "the record before its offset {offset} is not turn {} of run {run_id}",
                    c.turn
                )));
            }
        }
        let tail = bytes.slice(back..);
        // The record right after it must continue the numbering (or be torn, or absent).
        if let Some(end) = tail.iter().position(|b| *b == b'\n')
            && let Ok(next) = decode(&tail[..end], Messages::InRecord)
            && !follows(c.turn, &next)
        {
            return Ok(Err(format!(
                "it covers up to turn {} but the log goes on with turn {}",
                c.turn, next.turn
            )));
        }
        Ok(Ok(tail))
    }

    async fn read_log_from(&self, log: &VfsPath, offset: u64) -> Result<Bytes, SessionError> {
        match self.vfs.read_from(log, offset).await {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.is_not_found() => Ok(Bytes::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Loads a session to change it: as [`SessionStore::load`], and a torn last line is cut
    /// from the log in place ([`Vfs::truncate`]) so the next append starts on a clean line.
    /// The caller holds the session's lock.
    pub async fn load_for_write(
        &self,
        id: &SessionId,
        profile: &MemoryProfile,
        counter: Arc<dyn TokenCounter>,
    ) -> Result<Hydrated, SessionError> {
        let hydrated = self.load(id, profile, counter).await?;
        if hydrated.dropped_tail.is_some() {
            self.vfs.truncate(&Self::log_path(id)?, hydrated.position.log_len).await?;
        }
        Ok(hydrated)
    }

    /// Commits an encoded record ([`encode`]): one append (the commit point), then, when
    /// `checkpoint` names the record's run (the log has grown enough past the last checkpoint:
    /// [`SessionStore::checkpoint_due`]), a checkpoint. The log is made durable ([`Vfs::sync`])
    /// before a checkpoint covering it is written, so a checkpoint never claims more than the
    /// log kept after a machine crash. A failed checkpoint is only logged: it means a longer
    /// replay next time, never lost data.
    pub(crate) async fn commit(
        &self,
        (id, log): (&SessionId, &VfsPath),
        memory: &SessionMemory,
        line: Vec<u8>,
        checkpoint: Option<Arc<str>>,
        position: LogPosition,
    ) -> Result<(LogPosition, Option<LogStamp>), SessionError> {
        let written = line.len() as u64;
        // The log's version after the append, when the backend knows it without a `stat`.
        let stamp = self
            .vfs
            .append_and_stat(log, Bytes::from(line))
            .await?
            .map(|meta| LogStamp { len: meta.len, modified: meta.modified });
        let log_len = position.log_len + written;
        let mut next = LogPosition { log_len, ..position };
        if let Some(run_id) = checkpoint {
            // Boxed: a checkpoint is rare, and its state would make every commit's future (kept
            // on the heap by `TakenSession::commit`) several times larger.
            match Box::pin(self.checkpoint_after(id, memory, log_len, Some((written, run_id.to_string()))))
                .await
            {
                Ok(len) => {
                    next.checkpoint_offset = log_len;
                    next.checkpoint_len = len;
                }
                Err(error) => tracing::warn!(session = %id, %error, "could not write a checkpoint"),
            }
        }
        Ok((next, stamp))
    }

    /// Whether a checkpoint is due after appending `written` bytes at `position`: once the log
    /// has grown past the last checkpoint by [`CHECKPOINT_MIN_TAIL_BYTES`] and by
    /// `CHECKPOINT_TAIL_FACTOR` times the checkpoint's own size.
    pub(crate) fn checkpoint_due(position: LogPosition, written: u64) -> bool {
        let due = CHECKPOINT_MIN_TAIL_BYTES.max(CHECKPOINT_TAIL_FACTOR * position.checkpoint_len);
        position.log_len + written - position.checkpoint_offset >= due
    }

    /// The current version of the session's log at `log` ([`SessionStore::log_path`]): its
    /// length and modification time.
    pub(crate) async fn stamp(&self, log: &VfsPath) -> Result<LogStamp, SessionError> {
        match self.vfs.stat(log).await {
            Ok(meta) => Ok(LogStamp { len: meta.len, modified: meta.modified }),
            Err(e) if e.is_not_found() => Ok(LogStamp { len: 0, modified: None }),
            Err(e) => Err(e.into()),
        }
    }

    /// Every record of the log (the full transcript), oldest first; a torn last line is left
    /// out. [`SessionError::Corrupt`] as for [`SessionStore::load`].
    pub async fn records(&self, id: &SessionId) -> Result<Vec<TurnRecord>, SessionError> {
        let log = Self::log_path(id)?;
        match self.vfs.read(&log).await {
            Ok(bytes) => Ok(parse_log(id, &log, &bytes, 0, 0, Messages::InRecord)?.records),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The intact records of a damaged log, for reading what can be read: every complete line
    /// that parses as a record, in order, leaving out unreadable lines, a torn last line and a
    /// record repeating the one before it. Changes nothing.
    pub async fn salvage(&self, id: &SessionId) -> Result<Salvaged, SessionError> {
        let bytes = match self.vfs.read(&Self::log_path(id)?).await {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return Ok(Salvaged::default()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Salvaged::default();
        for (i, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
            let Some(text) = line.strip_suffix(b"\n") else {
                out.skipped.push((i + 1, "torn last line (no newline)".to_owned()));
                continue;
            };
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match decode(text, Messages::InRecord) {
                Ok(r) if r.v > SESSION_LAYOUT_VERSION => {
                    out.skipped.push((i + 1, format!("written by a newer layout version {}", r.v)));
                }
                Ok(r) if out.records.last().is_some_and(|p| p.run_id == r.run_id && p.turn == r.turn) => {
                    out.skipped.push((i + 1, format!("repeats turn {} of run {}", r.turn, r.run_id)));
                }
                Ok(r) => out.records.push(r),
                Err(e) => out.skipped.push((i + 1, e.to_string())),
            }
        }
        Ok(out)
    }

    /// Makes sure the session's log can be written before a turn spends anything: creates an
    /// empty log for a new session. [`SessionError::Unwritable`] when the VFS refuses (e.g. the
    /// session's directory is a symlink, which a disk VFS never follows).
    /// `log` is the log's path, as [`SessionStore::log_path`] gives it.
    pub async fn ensure_writable(&self, id: &SessionId, log: &VfsPath) -> Result<(), SessionError> {
        match self.vfs.append(log, Bytes::new()).await {
            Ok(()) => Ok(()),
            Err(source @ (VfsError::NotFound(_) | VfsError::WrongKind { .. })) => {
                Err(SessionError::Unwritable { session: id.to_string(), source })
            }
            Err(e) => Err(e.into()),
        }
    }

    #[cfg(test)]
    /// Appends one turn's record to the log at `log` in a single append; returns the bytes
    /// written.
    pub(crate) async fn append(&self, log: &VfsPath, record: &mut TurnRecord) -> Result<u64, SessionError> {
        let line = encode(record)?;
        let len = line.len() as u64;
        self.vfs.append(log, Bytes::from(line)).await?;
        Ok(len)
    }

    /// Writes a checkpoint of `memory`, covering the log up to `log_offset`, after making
    /// the log durable up to there ([`Vfs::sync`]).
    #[cfg(test)]
    pub async fn checkpoint(
        &self,
        id: &SessionId,
        memory: &SessionMemory,
        log_offset: u64,
    ) -> Result<u64, SessionError> {
        self.checkpoint_after(id, memory, log_offset, None).await
    }

    /// [`SessionStore::checkpoint`], naming the last record it covers (its line's length and
    /// run id) when known.
    async fn checkpoint_after(
        &self,
        id: &SessionId,
        memory: &SessionMemory,
        log_offset: u64,
        last: Option<(u64, String)>,
    ) -> Result<u64, SessionError> {
        if log_offset > 0 {
            self.vfs.sync(&Self::log_path(id)?).await?;
        }
        let checkpoint = Checkpoint {
            v: SESSION_LAYOUT_VERSION,
            turn: memory.turn(),
            log_offset,
            session: Some(id.to_string()),
            last,
            spent: memory.spent(),
            active_agent: memory.active_agent().map(str::to_owned),
            sections: memory.persisted_items(),
        };
        let bytes = serde_json::to_vec(&checkpoint)?;
        let len = bytes.len() as u64;
        self.vfs.write(&Self::checkpoint_path(id)?, Bytes::from(bytes)).await?;
        Ok(len)
    }

    /// Ids of every stored session, sorted.
    pub async fn list(&self) -> Result<Vec<SessionId>, SessionError> {
        let entries = match self.vfs.list(&Self::root()?).await {
            Ok(entries) => entries,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        Ok(entries
            .into_iter()
            .filter(|e| e.kind == kaos_vfs::EntryKind::Dir)
            .filter_map(|e| e.path.file_name().and_then(|name| SessionId::new(name).ok()))
            .collect())
    }

    /// Deletes a session and everything under its directory. `NotFound` when missing.
    pub async fn delete(&self, id: &SessionId) -> Result<(), SessionError> {
        Ok(self.vfs.delete(&Self::dir(id)?).await?)
    }
}

/// Rebuilds memory from one record: its memory changes, or, for a version 1 record, its
/// messages added to the messages section.
pub(crate) fn replay(memory: &mut SessionMemory, record: TurnRecord) {
    if record.v == 1 && record.memory.is_empty() {
        for message in record.messages {
            // A message that can no longer fit is skipped, as it would be today.
            let _ = memory.add(SectionKind::Messages, NewItem::message(message));
        }
        memory.take_ops();
        memory.take_changes();
        memory.take_evicted();
    } else {
        for op in record.memory {
            memory.apply(op);
        }
    }
    memory.add_spent(record.cost_usd, record.usage.total_tokens());
    if let Some(agent) = record.agent {
        memory.set_active_agent(Some(agent));
    }
    memory.end_turn(record.turn);
}

struct ParsedLog {
    records: Vec<TurnRecord>,
    valid_len: usize,
    dropped_tail: Option<usize>,
}

/// Whether `record` may follow a log whose last turn is `last`: the next turn, or a record
/// without messages (memory changes between turns) that keeps the last turn's number.
/// A record as its log line (with the newline): each memory item that adds one of the record's
/// messages refers to it by position instead of repeating it (see `line::write_record`).
pub(crate) fn encode(record: &TurnRecord) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = Vec::with_capacity(1024);
    crate::line::write_record(&mut line, record)?;
    line.push(b'\n');
    Ok(line)
}

/// Where [`decode`] leaves a message that a memory item refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Messages {
    /// In the record and, copied, in the item (for reading the transcript).
    InRecord,
    /// Moved into the item; the record's `messages[i]` is left an empty user message (for
    /// replaying memory, which reads only the record's memory changes and how many messages
    /// it has): hydration then allocates each message once, not twice.
    InItems,
}

/// A log line as its record, with every message a memory item refers to by position put back
/// into the item. A position outside the record's messages is an error, like any bad line.
fn decode(line: &[u8], messages_go: Messages) -> Result<TurnRecord, serde_json::Error> {
    let mut record: TurnRecord = serde_json::from_slice(line)?;
    let TurnRecord { messages, memory, .. } = &mut record;
    // How many items still refer to each message: the last one takes it (when moving).
    let mut refers = match messages_go {
        Messages::InRecord => Vec::new(),
        Messages::InItems => {
            let mut refers = vec![0u32; messages.len()];
            for op in memory.iter() {
                if let MemoryOp::Add { item, .. } = op
                    && let Some(n) = item.message_at.and_then(|at| refers.get_mut(at as usize))
                {
                    *n += 1;
                }
            }
            refers
        }
    };
    for op in memory {
        let MemoryOp::Add { item, .. } = op else { continue };
        let Some(at) = item.message_at.take() else { continue };
        let count = messages.len();
        let message = usize::try_from(at).ok().and_then(|i| messages.get_mut(i)).ok_or_else(|| {
            <serde_json::Error as serde::de::Error>::custom(format!(
                "memory item {} refers to message {at}, but the record has {count}",
                item.id,
            ))
        })?;
        item.message = Some(match refers.get_mut(at as usize) {
            Some(1) => std::mem::replace(message, Message::user(String::new())),
            Some(n) => {
                *n -= 1;
                message.clone()
            }
            None => message.clone(),
        });
    }
    Ok(record)
}

fn follows(last: u32, record: &TurnRecord) -> bool {
    record.turn == last.saturating_add(1) || (record.turn == last && record.messages.is_empty())
}

/// Parses log bytes read from `offset`, after turn `base_turn`. Only a last piece without its
/// `\n` is a torn tail (an append never finishes a line it did not finish writing); every
/// complete line must be a record continuing the numbering.
fn parse_log(
    id: &SessionId,
    path: &VfsPath,
    bytes: &[u8],
    offset: u64,
    base_turn: u32,
    messages_go: Messages,
) -> Result<ParsedLog, SessionError> {
    let mut records: Vec<TurnRecord> = Vec::new();
    let mut lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
    let mut dropped_tail = None;
    // A last piece without its newline never finished being written.
    if let Some(last) = lines.last()
        && !last.ends_with(b"\n")
    {
        dropped_tail = Some(last.len());
        lines.pop();
    }
    let mut valid_len = 0;
    let mut last_turn = base_turn;
    for (i, line) in lines.into_iter().enumerate() {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if text.iter().all(u8::is_ascii_whitespace) {
            valid_len += line.len();
            continue;
        }
        let corrupt = |message: String| SessionError::Corrupt {
            session: id.to_string(),
            path: path.to_string(),
            line: i + 1,
            message: format!("{message} (at byte {})", offset + valid_len as u64),
        };
        match decode(text, messages_go) {
            Ok(record) if record.v > SESSION_LAYOUT_VERSION => {
                return Err(corrupt(format!(
                    "written by a newer layout version {} (this build reads up to {SESSION_LAYOUT_VERSION})",
                    record.v
                )));
            }
            Ok(record)
                if records.last().is_some_and(|p| p.run_id == record.run_id && p.turn == record.turn) =>
            {
                return Err(corrupt(format!(
                    "turn {} of run {} is recorded twice (a repeated record)",
                    record.turn, record.run_id
                )));
            }
            Ok(record) if !follows(last_turn, &record) => {
                return Err(corrupt(format!(
                    "turn {} follows turn {last_turn} (turn numbers must go up by one: a record is missing or repeated)",
                    record.turn
                )));
            }
            Ok(record) => {
                valid_len += line.len();
                last_turn = record.turn;
                records.push(record);
            }
            Err(e) => return Err(corrupt(e.to_string())),
        }
    }
    Ok(ParsedLog { records, valid_len, dropped_tail })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(turn: u32) -> TurnRecord {
        TurnRecord {
            v: SESSION_LAYOUT_VERSION,
            turn,
            run_id: format!("run-{turn}").into(),
            agent_fingerprint: "sha256:x".into(),
            agent: None,
            unpriced_model_calls: 0,
            messages: vec![Message::user(format!("m{turn}")), Message::assistant("ok")],
            tool_calls: Vec::new(),
            usage: Usage::new(1, 1),
            cost_usd: 0.0,
            stop_reason: StopReason::Completed,
            finished_at_ms: 0,
            memory: Vec::new(),
        }
    }

    fn log(records: &[TurnRecord]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            serde_json::to_writer(&mut out, r).unwrap();
            out.push(b'\n');
        }
        out
    }

    fn parse(bytes: &[u8]) -> Result<ParsedLog, SessionError> {
        let id = SessionId::new("s").unwrap();
        parse_log(&id, &SessionStore::log_path(&id).unwrap(), bytes, 0, 0, Messages::InRecord)
    }

    #[test]
    fn clean_log_round_trips() {
        let records = vec![record(1), record(2)];
        let bytes = log(&records);
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed.records, records);
        assert_eq!(parsed.dropped_tail, None);
        assert_eq!(parsed.valid_len, bytes.len());
    }

    /// A record whose memory changes add its messages, as a turn writes it.
    fn turn_record(turn: u32) -> TurnRecord {
        let counter: Arc<dyn TokenCounter> = Arc::new(kaos_providers::Estimator);
        let mut memory = SessionMemory::new(&MemoryProfile::default(), counter);
        memory.begin_turn();
        let messages = vec![Message::user(format!("question {turn}")), Message::assistant("a unique answer")];
        for message in &messages {
            memory.add(SectionKind::Messages, NewItem::message(message.clone())).unwrap();
        }
        memory.add(SectionKind::Actions, NewItem::text("an action")).unwrap();
        memory.end_turn(turn);
        TurnRecord { messages, memory: memory.take_ops(), ..record(turn) }
    }

    #[test]
    fn a_message_is_written_once_and_read_back_into_its_memory_item() {
        let original = turn_record(1);
        let line = encode(&original).unwrap();
        let text = std::str::from_utf8(&line).unwrap();
        assert_eq!(text.matches("a unique answer").count(), 1, "{text}");
        assert_eq!(text.matches("\"message_at\":").count(), 2, "{text}");
        assert!(text.ends_with('\n'));
        assert_eq!(decode(line.strip_suffix(b"\n").unwrap(), Messages::InRecord).unwrap(), original);
        assert_eq!(parse(&line).unwrap().records, vec![original]);
    }

    #[test]
    fn a_message_added_by_its_position_in_the_record_is_logged_as_one_found_by_equality() {
        let by_equality = turn_record(1);
        let counter: Arc<dyn TokenCounter> = Arc::new(kaos_providers::Estimator);
        let mut memory = SessionMemory::new(&MemoryProfile::default(), counter);
        memory.begin_turn();
        memory.add(SectionKind::Messages, NewItem::message(by_equality.messages[0].clone())).unwrap();
        memory.add_record_message(by_equality.messages[1].clone(), 1).unwrap();
        memory.add(SectionKind::Actions, NewItem::text("an action")).unwrap();
        memory.end_turn(1);
        // The change names the message; it carries no copy of it.
        let ops = memory.take_ops();
        assert!(ops.iter().any(|op| matches!(op, MemoryOp::Add { item, .. } if item.message.is_none() && item.message_at == Some(1))));
        let by_position = TurnRecord { memory: ops.clone(), ..by_equality.clone() };
        let line = encode(&by_position).unwrap();
        assert_eq!(line, encode(&by_equality).unwrap());
        // Read back, the item holds its message again.
        assert_eq!(parse(&line).unwrap().records, vec![by_equality.clone()]);
        // A position past the record's messages is an encoding error, never a line.
        let mut past = ops;
        for op in &mut past {
            if let MemoryOp::Add { item, .. } = op
                && item.message_at == Some(1)
            {
                item.message_at = Some(2);
            }
        }
        let error = encode(&TurnRecord { memory: past, ..by_equality }).unwrap_err();
        assert!(error.to_string().contains("names message 2 of a record of 2 messages"), "{error}");
    }

    #[test]
    fn replaying_moves_each_message_into_its_item_and_one_referred_to_twice_reaches_both() {
        let original = turn_record(1);
        let line = encode(&original).unwrap();
        let line = line.strip_suffix(b"\n").unwrap();
        let items = |record: &TurnRecord| -> Vec<Option<Message>> {
            record
                .memory
                .iter()
                .filter_map(|op| match op {
                    MemoryOp::Add { item, .. } => Some(item.message.clone()),
                    _ => None,
                })
                .collect()
        };
        // For replay the items get the messages; the record keeps how many it had.
        let moved = decode(line, Messages::InItems).unwrap();
        assert_eq!(items(&moved), items(&original));
        assert_eq!(moved.messages.len(), 2);
        assert!(moved.messages.iter().all(|m| m.content().is_empty()));
        // Two items naming the same message (never written by this crate, but readable): both
        // get it, whichever way the messages go.
        let twice = String::from_utf8(line.to_vec()).unwrap().replace("\"message_at\":1", "\"message_at\":0");
        let question = Some(Message::user("question 1"));
        for go in [Messages::InItems, Messages::InRecord] {
            let record = decode(twice.as_bytes(), go).unwrap();
            assert_eq!(items(&record), vec![question.clone(), question.clone(), None], "{go:?}");
        }
        // Hydration replays the same memory either way.
        let counter: Arc<dyn TokenCounter> = Arc::new(kaos_providers::Estimator);
        let replayed = |record: TurnRecord| {
            let mut memory = SessionMemory::new(&MemoryProfile::default(), counter.clone());
            replay(&mut memory, record);
            memory
        };
        assert_eq!(replayed(moved), replayed(decode(line, Messages::InRecord).unwrap()));
    }

    #[test]
    fn a_replayed_session_allocates_each_item_list_once() {
        let records: Vec<TurnRecord> = (1..=9).map(turn_record).collect();
        let counter: Arc<dyn TokenCounter> = Arc::new(kaos_providers::Estimator);
        let mut memory = SessionMemory::new(&MemoryProfile::default(), counter);
        memory.reserve_adds(records.iter().flat_map(|r| &r.memory));
        for record in records {
            replay(&mut memory, record);
        }
        for kind in [SectionKind::Messages, SectionKind::Actions] {
            let items = memory.section(kind).items();
            assert_eq!(items.len(), if kind == SectionKind::Messages { 18 } else { 9 });
            // Exactly the room reserved: the list never grew (by doubling it would hold 32 / 16).
            assert_eq!(memory.section(kind).capacity(), items.len(), "{kind}");
        }
    }

    #[test]
    fn a_layout_2_line_with_messages_in_its_items_still_reads() {
        let original = turn_record(1);
        let mut v2 = original.clone();
        v2.v = 2;
        // Version 2 wrote every message inside its memory item too.
        let line = serde_json::to_vec(&v2).unwrap();
        assert!(!std::str::from_utf8(&line).unwrap().contains("message_at"));
        assert_eq!(decode(&line, Messages::InRecord).unwrap(), v2);
    }

    #[test]
    fn a_message_position_outside_the_record_is_a_corrupt_line() {
        let record = turn_record(1);
        let line = encode(&record).unwrap();
        let bad = String::from_utf8(line).unwrap().replace("\"message_at\":1", "\"message_at\":7");
        let Err(error) = parse(bad.as_bytes()) else { panic!("a bad position was read") };
        assert!(
            matches!(&error, SessionError::Corrupt { line: 1, message, .. }
                if message.contains("refers to message 7, but the record has 2")),
            "{error}"
        );
    }

    #[test]
    fn every_torn_prefix_of_the_last_record_is_dropped_not_fatal() {
        let full = log(&[record(1), record(2)]);
        let first_len = log(&[record(1)]).len();
        for cut in first_len + 1..full.len() {
            let parsed = parse(&full[..cut]).unwrap();
            assert_eq!(parsed.records, vec![record(1)], "cut at {cut}");
            assert!(parsed.dropped_tail.is_some(), "cut at {cut}");
            assert_eq!(parsed.valid_len, first_len);
        }
    }

    #[test]
    fn corruption_before_the_last_line_is_a_typed_error() {
        let mut bytes = b"{not json}\n".to_vec();
        bytes.extend(log(&[record(2)]));
        let err = parse(&bytes).err().unwrap();
        assert!(matches!(err, SessionError::Corrupt { line: 1, .. }), "{err:?}");
    }

    mod save_load {
        use kaos_agent::Persistence;
        use kaos_providers::Estimator;
        use kaos_vfs::MemoryVfs;
        use proptest::prelude::*;

        use super::*;

        fn section() -> impl Strategy<Value = SectionKind> {
            prop::sample::select(SectionKind::ALL.to_vec())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// What a turn persists (its log line, and a checkpoint now and then) loads back as
            /// the same memory, for every persisted section.
            #[test]
            fn save_then_load_is_identity(
                turns in prop::collection::vec(
                    (prop::collection::vec((section(), "[a-z ]{1,800}"), 0..6), any::<bool>(), any::<bool>()),
                    1..12,
                ),
            ) {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    let store = SessionStore::new(Arc::new(MemoryVfs::new()));
                    let id = SessionId::new("p").unwrap();
                    let profile = MemoryProfile::default();
                    let counter: Arc<dyn TokenCounter> = Arc::new(Estimator);
                    let mut live = SessionMemory::new(&profile, counter.clone());
                    let mut log_len = 0;
                    for (n, (adds, use_all, checkpoint)) in turns.into_iter().enumerate() {
                        let turn = n as u32 + 1;
                        live.begin_turn();
                        for (kind, text) in adds {
                            let _ = live.add(kind, NewItem::text(text));
                        }
                        if use_all {
                            for kind in SectionKind::ALL {
                                let ids = live.section(kind).items().iter().map(|i| i.id).collect();
                                live.mark_used(kind, ids);
                            }
                        }
                        live.end_turn(turn);
                        let mut r = record(turn);
                        r.memory = live.take_ops();
                        log_len += store.append(&SessionStore::log_path(&id).unwrap(), &mut r).await.unwrap();
                        if checkpoint {
                            store.checkpoint(&id, &live, log_len).await.unwrap();
                        }
                    }
                    let loaded = store.load(&id, &profile, counter).await.unwrap();
                    prop_assert_eq!(loaded.position.log_len, log_len);
                    prop_assert_eq!(loaded.memory.turn(), live.turn());
                    for kind in SectionKind::ALL {
                        if live.section(kind).config().persistence != Persistence::None {
                            prop_assert_eq!(loaded.memory.section(kind), live.section(kind), "{:?}", kind);
                        }
                    }
                    Ok(())
                })?;
            }
        }
    }

    #[test]
    fn newer_layouts_are_refused() {
        let mut r = record(1);
        r.v = SESSION_LAYOUT_VERSION + 1;
        assert!(matches!(parse(&log(&[r])), Err(SessionError::Corrupt { .. })));
    }
}

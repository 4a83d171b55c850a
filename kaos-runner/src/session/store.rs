use std::sync::Arc;

use bytes::Bytes;
use kaos_providers::{Message, Usage};
use kaos_vfs::{Vfs, VfsPath};
use serde::{Deserialize, Serialize};

use super::SessionId;
use crate::{RunError, StopReason, ToolCallRecord};

/// Version of the session layout in the VFS, written into every record.
///
/// Layout (version 1): `sessions/{session_id}/turns.jsonl`, one [`TurnRecord`] per line, one
/// line appended per completed turn; tools see `sessions/{session_id}/files/` as their root.
pub const SESSION_LAYOUT_VERSION: u32 = 1;

/// What one completed turn added to its session: one line of `turns.jsonl`.
///
/// A turn is persisted with a single append, so a turn is either wholly in the log or not at
/// all; persistence cost per turn does not grow with the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TurnRecord {
    /// Layout version ([`SESSION_LAYOUT_VERSION`]).
    pub v: u32,
    /// The turn's number in the session, from 1.
    pub turn: u32,
    /// The run that produced it.
    pub run_id: String,
    /// The fingerprint of the agent that ran it.
    pub agent_fingerprint: String,
    /// Messages the turn added, in order: the user message, then the model's and tools'.
    pub messages: Vec<Message>,
    /// Tool calls with their results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallRecord>,
    /// Usage of the turn.
    pub usage: Usage,
    /// Cost of the turn in USD (priced calls only).
    pub cost_usd: f64,
    /// Why the turn stopped.
    pub stop_reason: StopReason,
    /// When the turn finished, in milliseconds since the Unix epoch.
    pub finished_at_ms: u64,
}

/// A session as read from the VFS.
#[derive(Debug, Default)]
pub(crate) struct Hydrated {
    pub(crate) records: Vec<TurnRecord>,
    /// Bytes of a torn or unreadable last line that was dropped, if any.
    pub(crate) dropped_tail: Option<usize>,
}

impl Hydrated {
    pub(crate) fn messages(&self) -> impl Iterator<Item = &Message> {
        self.records.iter().flat_map(|r| r.messages.iter())
    }
}

/// Reads and appends session records in a VFS.
#[derive(Debug, Clone)]
pub(crate) struct SessionStore {
    vfs: Arc<dyn Vfs>,
}

impl SessionStore {
    pub(crate) fn new(vfs: Arc<dyn Vfs>) -> Self {
        Self { vfs }
    }

    pub(crate) fn dir(id: &SessionId) -> Result<VfsPath, RunError> {
        Ok(VfsPath::new("sessions")?.join(id.as_str())?)
    }

    fn log_path(id: &SessionId) -> Result<VfsPath, RunError> {
        Ok(Self::dir(id)?.join("turns.jsonl")?)
    }

    /// Loads a session (empty when it does not exist). A torn or unreadable **last** line —
    /// what a crash in the middle of an append leaves — is dropped and reported in
    /// `dropped_tail`; the caller repairs it with [`SessionStore::repair`] before appending.
    /// An unreadable line anywhere else is [`RunError::CorruptSession`].
    pub(crate) async fn load(&self, id: &SessionId) -> Result<Hydrated, RunError> {
        let path = Self::log_path(id)?;
        let bytes = match self.vfs.read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return Ok(Hydrated::default()),
            Err(e) => return Err(e.into()),
        };
        parse_log(id, &path, &bytes)
    }

    /// Rewrites the log without its dropped tail, so the next append starts on a clean line.
    pub(crate) async fn repair(&self, id: &SessionId, hydrated: &Hydrated) -> Result<(), RunError> {
        let mut clean = Vec::new();
        for record in &hydrated.records {
            write_line(&mut clean, record)?;
        }
        self.vfs.write(&Self::log_path(id)?, Bytes::from(clean)).await?;
        Ok(())
    }

    /// Appends one turn's record in a single append.
    pub(crate) async fn append(&self, id: &SessionId, record: &TurnRecord) -> Result<(), RunError> {
        let mut line = Vec::with_capacity(512);
        write_line(&mut line, record)?;
        self.vfs.append(&Self::log_path(id)?, Bytes::from(line)).await?;
        Ok(())
    }
}

fn write_line(out: &mut Vec<u8>, record: &TurnRecord) -> Result<(), RunError> {
    serde_json::to_writer(&mut *out, record)
        .map_err(|e| RunError::Config(format!("cannot encode turn record: {e}")))?;
    out.push(b'\n');
    Ok(())
}

fn parse_log(id: &SessionId, path: &VfsPath, bytes: &[u8]) -> Result<Hydrated, RunError> {
    let mut hydrated = Hydrated::default();
    let mut lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
    // A last piece without its newline never finished being written.
    if let Some(last) = lines.last()
        && !last.ends_with(b"\n")
    {
        hydrated.dropped_tail = Some(last.len());
        lines.pop();
    }
    let count = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let corrupt = |message: String| RunError::CorruptSession {
            session: id.to_string(),
            path: path.to_string(),
            line: i + 1,
            message,
        };
        match serde_json::from_slice::<TurnRecord>(text) {
            Ok(record) if record.v > SESSION_LAYOUT_VERSION => {
                return Err(corrupt(format!(
                    "written by a newer layout version {} (this build reads up to {SESSION_LAYOUT_VERSION})",
                    record.v
                )));
            }
            Ok(record) => hydrated.records.push(record),
            // A complete but unreadable last line is also what an interrupted write can leave.
            Err(_) if i + 1 == count && hydrated.dropped_tail.is_none() => {
                hydrated.dropped_tail = Some(line.len())
            }
            Err(e) => return Err(corrupt(e.to_string())),
        }
    }
    Ok(hydrated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(turn: u32) -> TurnRecord {
        TurnRecord {
            v: SESSION_LAYOUT_VERSION,
            turn,
            run_id: format!("run-{turn}"),
            agent_fingerprint: "sha256:x".into(),
            messages: vec![Message::user(format!("m{turn}")), Message::assistant("ok")],
            tool_calls: Vec::new(),
            usage: Usage::new(1, 1),
            cost_usd: 0.0,
            stop_reason: StopReason::Completed,
            finished_at_ms: 0,
        }
    }

    fn log(records: &[TurnRecord]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            write_line(&mut out, r).unwrap();
        }
        out
    }

    fn parse(bytes: &[u8]) -> Result<Hydrated, RunError> {
        let id = SessionId::new("s").unwrap();
        parse_log(&id, &SessionStore::log_path(&id).unwrap(), bytes)
    }

    #[test]
    fn clean_log_round_trips() {
        let records = vec![record(1), record(2)];
        let h = parse(&log(&records)).unwrap();
        assert_eq!(h.records, records);
        assert_eq!(h.dropped_tail, None);
    }

    #[test]
    fn every_torn_prefix_of_the_last_record_is_dropped_not_fatal() {
        let full = log(&[record(1), record(2)]);
        let first_len = log(&[record(1)]).len();
        for cut in first_len + 1..full.len() {
            let h = parse(&full[..cut]).unwrap();
            assert_eq!(h.records, vec![record(1)], "cut at {cut}");
            assert!(h.dropped_tail.is_some(), "cut at {cut}");
        }
    }

    #[test]
    fn corruption_before_the_last_line_is_a_typed_error() {
        let mut bytes = b"{not json}\n".to_vec();
        bytes.extend(log(&[record(2)]));
        let err = parse(&bytes).unwrap_err();
        assert!(matches!(err, RunError::CorruptSession { line: 1, .. }), "{err:?}");
    }

    #[test]
    fn newer_layouts_are_refused() {
        let mut r = record(1);
        r.v = SESSION_LAYOUT_VERSION + 1;
        assert!(matches!(parse(&log(&[r])), Err(RunError::CorruptSession { .. })));
    }
}

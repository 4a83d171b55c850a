//! The log and its checkpoint through `Sessions::take`, on a disk VFS and on a recording VFS.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use kaos_agent::MemoryProfile;
use kaos_providers::{Estimator, Message, TokenCounter, Usage};
use kaos_session::{
    Hydration, NewItem, SESSION_LAYOUT_VERSION, SessionError, SessionId, Sessions, StopReason, TurnRecord,
};
use kaos_vfs::{DiskVfs, MemoryVfs, Metadata, Vfs, VfsEntry, VfsError, VfsLock, VfsPath};

fn counter() -> Arc<dyn TokenCounter> {
    Arc::new(Estimator)
}

/// Takes the session, adds one user message of `size` bytes and commits it as the next turn.
async fn turn(sessions: &Sessions, id: &SessionId, size: usize) -> Result<u32, SessionError> {
    let mut taken = sessions.take(id, &MemoryProfile::default(), counter()).await?;
    let number = taken.memory.turn() + 1;
    taken.memory.begin_turn();
    let message = Message::user("x".repeat(size));
    let _ = taken.memory.add(kaos_agent::SectionKind::Messages, NewItem::message(message.clone()));
    taken.memory.end_turn(number);
    let record = TurnRecord {
        v: SESSION_LAYOUT_VERSION,
        turn: number,
        run_id: format!("run-{number}").into(),
        agent_fingerprint: "sha256:test".into(),
        agent: None,
        messages: vec![message],
        tool_calls: Vec::new(),
        usage: Usage::new(1, 1),
        cost_usd: 0.0,
        unpriced_model_calls: 0,
        stop_reason: StopReason::Completed,
        finished_at_ms: 0,
        memory: taken.memory.take_ops(),
    };
    taken.commit(record).await?;
    Ok(number)
}

/// A torn last line is cut in place: same file (inode), the bytes before it untouched, and
/// the repair is reported.
#[tokio::test]
async fn a_torn_tail_is_cut_in_place() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempfile::tempdir().unwrap();
    let sessions = Sessions::new(Arc::new(DiskVfs::new(dir.path()).unwrap()));
    let id = SessionId::new("s").unwrap();
    turn(&sessions, &id, 100).await.unwrap();
    turn(&sessions, &id, 100).await.unwrap();
    let log = dir.path().join("sessions/s/turns.jsonl");
    let good = std::fs::read(&log).unwrap();
    std::fs::write(&log, [good.as_slice(), b"{\"v\":2,\"tu"].concat()).unwrap();
    let inode = std::fs::metadata(&log).unwrap().ino();

    let taken = sessions.take(&id, &MemoryProfile::default(), counter()).await.unwrap();
    assert_eq!(taken.repairs.len(), 1, "{:?}", taken.repairs);
    assert!(taken.repairs[0].contains("torn last line"), "{:?}", taken.repairs);
    drop(taken);
    assert_eq!(std::fs::read(&log).unwrap(), good);
    assert_eq!(std::fs::metadata(&log).unwrap().ino(), inode, "the log was rewritten, not cut");
}

/// A complete last line that does not parse is corruption, not a torn tail: an error, and
/// the file keeps every byte.
#[tokio::test]
async fn a_complete_bad_last_line_is_corrupt_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = Sessions::new(Arc::new(DiskVfs::new(dir.path()).unwrap()));
    let id = SessionId::new("s").unwrap();
    turn(&sessions, &id, 100).await.unwrap();
    let log = dir.path().join("sessions/s/turns.jsonl");
    let bad = [std::fs::read(&log).unwrap().as_slice(), b"{\"v\":2,\"turn\":2}\n"].concat();
    std::fs::write(&log, &bad).unwrap();
    let err = sessions.take(&id, &MemoryProfile::default(), counter()).await.unwrap_err();
    assert!(matches!(err, SessionError::Corrupt { line: 2, .. }), "{err:?}");
    assert_eq!(std::fs::read(&log).unwrap(), bad);
    let salvaged = sessions.salvage("s").await.unwrap();
    assert_eq!(salvaged.records.len(), 1);
    assert_eq!(salvaged.skipped.len(), 1);
}

/// The operations a VFS saw, in order: `(operation, path)`.
#[derive(Debug, Default)]
struct Recording {
    inner: MemoryVfs,
    ops: Mutex<Vec<(&'static str, String)>>,
}

impl Recording {
    fn note(&self, op: &'static str, path: &VfsPath) {
        self.ops.lock().unwrap().push((op, path.to_string()));
    }
}

#[async_trait]
impl Vfs for Recording {
    async fn read(&self, path: &VfsPath) -> Result<Bytes, VfsError> {
        self.inner.read(path).await
    }
    async fn write(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        self.note("write", path);
        self.inner.write(path, data).await
    }
    async fn append(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        if !data.is_empty() {
            self.note("append", path);
        }
        self.inner.append(path, data).await
    }
    async fn exists(&self, path: &VfsPath) -> Result<bool, VfsError> {
        self.inner.exists(path).await
    }
    async fn stat(&self, path: &VfsPath) -> Result<Metadata, VfsError> {
        self.inner.stat(path).await
    }
    async fn list(&self, prefix: &VfsPath) -> Result<Vec<VfsEntry>, VfsError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, path: &VfsPath) -> Result<(), VfsError> {
        self.inner.delete(path).await
    }
    async fn read_from(&self, path: &VfsPath, offset: u64) -> Result<Bytes, VfsError> {
        self.inner.read_from(path, offset).await
    }
    async fn truncate(&self, path: &VfsPath, len: u64) -> Result<(), VfsError> {
        self.note("truncate", path);
        self.inner.truncate(path, len).await
    }
    async fn sync(&self, path: &VfsPath) -> Result<(), VfsError> {
        self.note("sync", path);
        self.inner.sync(path).await
    }
    async fn lock(&self, path: &VfsPath) -> Result<VfsLock, VfsError> {
        self.inner.lock(path).await
    }
}

/// With appends that are not fsynced, the log is made durable before every checkpoint that
/// covers it, so a checkpoint never claims more than a machine crash keeps of the log.
#[tokio::test]
async fn the_log_is_synced_before_each_checkpoint() {
    let vfs = Arc::new(Recording::default());
    let sessions = Sessions::new(vfs.clone());
    let id = SessionId::new("s").unwrap();
    for _ in 0..12 {
        turn(&sessions, &id, 200_000).await.unwrap();
    }
    let ops = vfs.ops.lock().unwrap().clone();
    let checkpoints: Vec<usize> =
        (0..ops.len()).filter(|i| ops[*i] == ("write", "sessions/s/checkpoint.json".to_owned())).collect();
    assert!(!checkpoints.is_empty(), "no checkpoint written: {ops:?}");
    for at in checkpoints {
        let last_append = (0..at).rev().find(|i| ops[*i].0 == "append").unwrap();
        assert!(
            ops[last_append..at].contains(&("sync", "sessions/s/turns.jsonl".to_owned())),
            "checkpoint at op {at} without a sync of the log after the last append: {:?}",
            &ops[last_append..=at]
        );
    }
}

/// `Vfs::truncate` on every local backend: cuts a longer file, leaves a shorter one, refuses
/// a missing file and a directory.
#[tokio::test]
async fn truncate_on_every_local_backend() {
    let dir = tempfile::tempdir().unwrap();
    let backends: Vec<Arc<dyn Vfs>> = vec![
        Arc::new(MemoryVfs::new()),
        Arc::new(DiskVfs::new(dir.path()).unwrap()),
        Arc::new(kaos_vfs::ScopedVfs::new(Arc::new(MemoryVfs::new()), VfsPath::new("scope").unwrap())),
    ];
    for vfs in backends {
        let path = VfsPath::new("d/f").unwrap();
        vfs.append(&path, Bytes::from_static(b"hello ")).await.unwrap();
        vfs.append(&path, Bytes::from_static(b"world")).await.unwrap();
        vfs.truncate(&path, 5).await.unwrap();
        assert_eq!(vfs.read(&path).await.unwrap(), "hello", "{vfs:?}");
        vfs.truncate(&path, 50).await.unwrap();
        assert_eq!(vfs.read(&path).await.unwrap(), "hello", "{vfs:?}");
        vfs.append(&path, Bytes::from_static(b"!")).await.unwrap();
        assert_eq!(vfs.read(&path).await.unwrap(), "hello!", "{vfs:?}");
        assert!(vfs.truncate(&VfsPath::new("missing").unwrap(), 0).await.unwrap_err().is_not_found());
        assert!(matches!(
            vfs.truncate(&VfsPath::new("d").unwrap(), 0).await,
            Err(VfsError::WrongKind { .. })
        ));
        vfs.sync(&path).await.unwrap();
    }
}

/// A VFS whose first non-empty append, like a disk VFS's, is handed to a task that finishes
/// even when its caller is dropped (a disk append runs on a blocking thread), and lands late.
#[derive(Debug, Default)]
struct LateAppend {
    inner: Arc<MemoryVfs>,
    armed: std::sync::atomic::AtomicBool,
    started: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl Vfs for LateAppend {
    async fn read(&self, path: &VfsPath) -> Result<Bytes, VfsError> {
        self.inner.read(path).await
    }
    async fn write(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        self.inner.write(path, data).await
    }
    async fn append(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        if data.is_empty() || self.armed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return self.inner.append(path, data).await;
        }
        let (inner, path, started) = (self.inner.clone(), path.clone(), self.started.clone());
        tokio::spawn(async move {
            started.notify_one();
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            inner.append(&path, data).await
        })
        .await
        .unwrap()
    }
    async fn exists(&self, path: &VfsPath) -> Result<bool, VfsError> {
        self.inner.exists(path).await
    }
    async fn stat(&self, path: &VfsPath) -> Result<Metadata, VfsError> {
        self.inner.stat(path).await
    }
    async fn list(&self, prefix: &VfsPath) -> Result<Vec<VfsEntry>, VfsError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, path: &VfsPath) -> Result<(), VfsError> {
        self.inner.delete(path).await
    }
    async fn lock(&self, path: &VfsPath) -> Result<VfsLock, VfsError> {
        self.inner.lock(path).await
    }
}

/// A caller that goes away while its turn's append is still landing (a dropped run, Ctrl-C, a
/// client that disconnected) does not release the session before the append has landed: the
/// next turn sees it and takes the next number, never the same one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_commit_holds_the_session_until_its_append_has_landed() {
    let vfs = Arc::new(LateAppend::default());
    let sessions = Sessions::new(vfs.clone());
    let id = SessionId::new("s").unwrap();
    let first = tokio::spawn({
        let (sessions, id) = (sessions.clone(), id.clone());
        async move { turn(&sessions, &id, 10).await }
    });
    vfs.started.notified().await;
    first.abort();
    assert_eq!(turn(&sessions, &id, 10).await.unwrap(), 2, "the next turn must see the first");
    let log = vfs.inner.read(&VfsPath::new("sessions/s/turns.jsonl").unwrap()).await.unwrap();
    let numbers: Vec<u64> = String::from_utf8_lossy(&log)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["turn"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2]);
}

/// A session with nothing stored starts empty without reading anything, and its log exists
/// once it is taken; one whose directory holds a checkpoint but no log is still loaded, so the
/// checkpoint is checked (and reported when ignored), on every local backend.
#[tokio::test]
async fn a_new_session_starts_empty_but_a_stray_checkpoint_is_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let backends: [Arc<dyn Vfs>; 2] =
        [Arc::new(MemoryVfs::new()), Arc::new(DiskVfs::new(dir.path()).unwrap())];
    for vfs in backends {
        let sessions = Sessions::with_cache(vfs.clone(), 16);
        let id = SessionId::new("new").unwrap();
        let taken = sessions.take(&id, &MemoryProfile::default(), counter()).await.unwrap();
        assert_eq!(taken.hydration, Hydration::Loaded { dropped_tail: None, bad_checkpoint: false });
        assert!(taken.repairs.is_empty(), "{:?}", taken.repairs);
        assert_eq!(taken.memory.turn(), 0);
        assert!(taken.memory.sections().all(|s| s.items().is_empty()));
        drop(taken);
        let log = VfsPath::new("sessions/new/turns.jsonl").unwrap();
        assert_eq!(vfs.stat(&log).await.unwrap().len, 0, "the new session's log was created");
        assert_eq!(turn(&sessions, &id, 10).await.unwrap(), 1);
        assert_eq!(turn(&sessions, &id, 10).await.unwrap(), 2);

        let stray = SessionId::new("stray").unwrap();
        let checkpoint = VfsPath::new("sessions/stray/checkpoint.json").unwrap();
        vfs.write(&checkpoint, Bytes::from_static(b"{not json")).await.unwrap();
        let taken = sessions.take(&stray, &MemoryProfile::default(), counter()).await.unwrap();
        assert_eq!(taken.hydration, Hydration::Loaded { dropped_tail: None, bad_checkpoint: true });
        assert_eq!(taken.repairs.len(), 1, "{:?}", taken.repairs);
        assert!(taken.repairs[0].contains("unreadable checkpoint"), "{:?}", taken.repairs);
    }
}

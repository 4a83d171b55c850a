//! Cost per turn as sessions grow: the whole turn, and its persistence alone, at 10, 1,000
//! and 10,000 stored messages, on the memory and the disk VFS; and BM25 assembly over a
//! 10,000-document section. Run with `cargo xtask bench`, which also checks that persistence
//! cost does not grow with the session (10,000 messages against 10 on disk, against 1,000 — a
//! full memory — on the memory VFS; see `xtask/src/bench.rs`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use kaos_agent::{Agent, SectionKind};
use kaos_providers::{ScriptedClient, ScriptedReply};
use kaos_runner::{NewItem, Runner};
use kaos_runtime::Runtime;
use kaos_vfs::{DiskVfs, MemoryVfs, Metadata, Vfs, VfsEntry, VfsError, VfsLock, VfsPath};
use serde_json::json;

/// Times what a turn spends writing: appends and atomic writes (checkpoints).
#[derive(Debug)]
struct TimedWrites {
    inner: Arc<dyn Vfs>,
    nanos: AtomicU64,
}

impl TimedWrites {
    fn take(&self) -> Duration {
        Duration::from_nanos(self.nanos.swap(0, Ordering::Relaxed))
    }

    fn add(&self, since: Instant) {
        self.nanos.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

#[async_trait]
impl Vfs for TimedWrites {
    async fn read(&self, path: &VfsPath) -> Result<Bytes, VfsError> {
        self.inner.read(path).await
    }
    async fn write(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        let start = Instant::now();
        let result = self.inner.write(path, data).await;
        self.add(start);
        result
    }
    async fn append(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        let start = Instant::now();
        let result = self.inner.append(path, data).await;
        self.add(start);
        result
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
    async fn lock(&self, path: &VfsPath) -> Result<VfsLock, VfsError> {
        self.inner.lock(path).await
    }
}

fn model() -> ScriptedClient {
    ScriptedClient::from_fn(|r| {
        ScriptedReply::text(format!("Noted: {}", r.last_user_message().unwrap_or_default()))
    })
    .without_recording()
}

/// A runner over `vfs` whose session "s" already holds `messages` messages.
fn grown(rt: &tokio::runtime::Runtime, vfs: Arc<TimedWrites>, messages: usize) -> Runner {
    let runtime = Runtime::builder().vfs(vfs.clone()).build();
    let runner =
        Runner::builder(Agent::builder().build().unwrap(), runtime).model(Arc::new(model())).build().unwrap();
    rt.block_on(async {
        for i in 0..messages / 2 {
            runner.turn(format!("message number {i} with a little text"), "s").await.unwrap();
        }
    });
    vfs.take();
    runner
}

/// Puts session "s" back to its grown state, so every measured turn starts at the same length.
struct Reset {
    inner: Arc<dyn Vfs>,
    disk_root: Option<std::path::PathBuf>,
    log: Vec<u8>,
    checkpoint: Option<Vec<u8>>,
}

impl Reset {
    async fn capture(inner: Arc<dyn Vfs>, disk_root: Option<std::path::PathBuf>) -> Self {
        // Owned copies: the VFS must hold the only reference to what it appends to.
        let log = inner.read(&path("turns.jsonl")).await.unwrap().to_vec();
        let checkpoint = inner.read(&path("checkpoint.json")).await.ok().map(|b| b.to_vec());
        Self { inner, disk_root, log, checkpoint }
    }

    async fn apply(&self) {
        match &self.disk_root {
            // On disk, cut the log back rather than rewrite megabytes per iteration.
            Some(root) => {
                let dir = root.join("sessions/s");
                let log = std::fs::OpenOptions::new().write(true).open(dir.join("turns.jsonl")).unwrap();
                log.set_len(self.log.len() as u64).unwrap();
                match &self.checkpoint {
                    Some(bytes) => std::fs::write(dir.join("checkpoint.json"), bytes).unwrap(),
                    None => drop(std::fs::remove_file(dir.join("checkpoint.json"))),
                }
            }
            None => {
                self.inner.write(&path("turns.jsonl"), Bytes::from(self.log.clone())).await.unwrap();
                match &self.checkpoint {
                    Some(bytes) => {
                        self.inner.write(&path("checkpoint.json"), Bytes::from(bytes.clone())).await.unwrap()
                    }
                    None => drop(self.inner.delete(&path("checkpoint.json")).await),
                }
            }
        }
    }
}

/// Turns between two resets in the steady-state benchmarks.
const RUN: u64 = 64;

fn path(name: &str) -> VfsPath {
    VfsPath::new(&format!("sessions/s/{name}")).unwrap()
}

fn sessions(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mut group = c.benchmark_group("session");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20);
    let dirs = tempfile::tempdir().unwrap();
    // `cargo test` runs benchmarks once, as a smoke test: small sessions are enough there.
    let benching = std::env::args().any(|a| a == "--bench");
    let lengths: &[usize] = if benching { &[10, 1_000, 10_000] } else { &[10, 100] };
    let documents = if benching { 10_000 } else { 100 };
    for backend in ["memory", "disk"] {
        for &messages in lengths {
            let root = dirs.path().join(format!("{messages}"));
            let (inner, disk_root): (Arc<dyn Vfs>, _) = match backend {
                "memory" => (Arc::new(MemoryVfs::new()), None),
                _ => (Arc::new(DiskVfs::new(&root).unwrap()), Some(root)),
            };
            let vfs = Arc::new(TimedWrites { inner: inner.clone(), nanos: AtomicU64::new(0) });
            let runner = grown(&rt, vfs.clone(), messages);
            let reset = rt.block_on(Reset::capture(inner, disk_root));
            let grown_once = std::cell::RefCell::new(false);
            // Steady state: consecutive turns (the runner keeps the session cached). A small
            // session is put back to `messages` messages every RUN turns, so growth cannot
            // inflate the baseline; a large one is left to grow (it only gets longer, which
            // can only make it dearer), so the measurement covers whole checkpoint cycles
            // instead of always the same phase of one.
            let reset_every = if messages <= 10 { RUN } else { u64::MAX };
            group.bench_function(format!("turn/{backend}/{messages}"), |b| {
                b.iter_custom(|iterations| {
                    let mut total = Duration::ZERO;
                    for i in 0..iterations {
                        if i % reset_every == 0 && (messages <= 10 || !*grown_once.borrow()) {
                            rt.block_on(reset.apply());
                            grown_once.replace(true);
                        }
                        let start = Instant::now();
                        rt.block_on(runner.turn("and one more message", "s")).unwrap();
                        total += start.elapsed();
                    }
                    total
                })
            });
            // The same, timing only the writes: appends, and checkpoints when due (amortized).
            group.bench_function(format!("persist/{backend}/{messages}"), |b| {
                b.iter_custom(|iterations| {
                    let mut total = Duration::ZERO;
                    for i in 0..iterations {
                        if i % reset_every == 0 && (messages <= 10 || !*grown_once.borrow()) {
                            rt.block_on(reset.apply());
                            grown_once.replace(true);
                        }
                        vfs.take();
                        rt.block_on(runner.turn("and one more message", "s")).unwrap();
                        total += vfs.take();
                    }
                    total
                })
            });
            // A cold turn: the session is read from the VFS first (another process wrote it,
            // or it was not cached), at exactly `messages` messages every time.
            group.bench_function(format!("cold_turn/{backend}/{messages}"), |b| {
                b.iter_custom(|iterations| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        rt.block_on(reset.apply());
                        let start = Instant::now();
                        rt.block_on(runner.turn("and one more message", "s")).unwrap();
                        total += start.elapsed();
                    }
                    total
                })
            });
        }
    }

    // BM25 over 10,000 documents: the turn is dominated by choosing the top-k documents.
    let runner = Runner::builder(Agent::builder().build().unwrap(), Runtime::test_mode())
        .model(Arc::new(model()))
        .build()
        .unwrap();
    rt.block_on(async {
        let docs = (0..documents).map(|i| {
            NewItem::text(format!(
                "document {i}: notes on topic{} and subject{} with filler words",
                i % 97,
                i % 89
            ))
            .with_metadata("name", json!(format!("doc{i}.md")))
        });
        runner.remember("docs", SectionKind::Documents, docs).await.unwrap();
    });
    group.bench_function("bm25_assembly/10000_docs", |b| {
        b.iter(|| rt.block_on(runner.turn("what are the notes on topic42 and subject7?", "docs")).unwrap())
    });
    group.finish();
}

criterion_group!(benches, sessions);
criterion_main!(benches);

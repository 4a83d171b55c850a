//! Several processes on one session directory: crashes mid-write and concurrent writers.
//!
//! The test binary re-runs itself as the child process: `child_entry` does nothing unless
//! `KAOS_TEST_CHILD` is set, in which case it runs turns and prints `ACK <message>` after each
//! completed turn.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use kaos_agent::Agent;
use kaos_providers::{ScriptedClient, ScriptedReply};
use kaos_runner::Runner;
use kaos_runtime::Runtime;
use kaos_vfs::{DiskVfs, Metadata, Vfs, VfsEntry, VfsError, VfsLock, VfsPath};

const SESSION: &str = "shared";

/// A disk VFS whose appends reach the file in small pieces with pauses between them, like a
/// slow disk: a kill during an append leaves a torn last line, as a real crash can.
#[derive(Debug)]
struct SlowAppends(DiskVfs);

#[async_trait]
impl Vfs for SlowAppends {
    async fn read(&self, path: &VfsPath) -> Result<Bytes, VfsError> {
        self.0.read(path).await
    }
    async fn write(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        self.0.write(path, data).await
    }
    async fn append(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        for piece in data.chunks(512) {
            self.0.append(path, Bytes::copy_from_slice(piece)).await?;
            tokio::time::sleep(std::time::Duration::from_micros(100)).await;
        }
        Ok(())
    }
    async fn exists(&self, path: &VfsPath) -> Result<bool, VfsError> {
        self.0.exists(path).await
    }
    async fn stat(&self, path: &VfsPath) -> Result<Metadata, VfsError> {
        self.0.stat(path).await
    }
    async fn list(&self, prefix: &VfsPath) -> Result<Vec<VfsEntry>, VfsError> {
        self.0.list(prefix).await
    }
    async fn delete(&self, path: &VfsPath) -> Result<(), VfsError> {
        self.0.delete(path).await
    }
    async fn read_from(&self, path: &VfsPath, offset: u64) -> Result<Bytes, VfsError> {
        self.0.read_from(path, offset).await
    }
    async fn lock(&self, path: &VfsPath) -> Result<VfsLock, VfsError> {
        self.0.lock(path).await
    }
}

fn runner(dir: &str) -> Runner {
    let model = ScriptedClient::from_fn(|r| {
        ScriptedReply::text(format!("{} {}", r.last_user_message().unwrap_or_default(), "x".repeat(2_000)))
    })
    .without_recording();
    let vfs = Arc::new(SlowAppends(DiskVfs::new(dir).unwrap()));
    Runner::builder(Agent::builder().name("proc").build().unwrap(), Runtime::builder().vfs(vfs).build())
        .model(Arc::new(model))
        .build()
        .unwrap()
}

#[test]
fn child_entry() {
    let Ok(role) = std::env::var("KAOS_TEST_CHILD") else { return };
    let dir = std::env::var("KAOS_TEST_DIR").unwrap();
    let tag = std::env::var("KAOS_TEST_TAG").unwrap();
    let turns: usize = std::env::var("KAOS_TEST_TURNS").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let runner = runner(&dir);
        for i in 0..turns {
            let message = format!("{tag}-{i}");
            runner.turn(&message, SESSION).await.unwrap();
            println!("ACK {message}");
        }
    });
    assert!(role == "crash" || role == "writer");
}

fn spawn(role: &str, dir: &str, tag: &str, turns: usize) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "processes::child_entry", "--nocapture", "--test-threads=1"])
        .env("KAOS_TEST_CHILD", role)
        .env("KAOS_TEST_DIR", dir)
        .env("KAOS_TEST_TAG", tag)
        .env("KAOS_TEST_TURNS", turns.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The user messages of the session, in log order.
fn user_messages(dir: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let history = runner(dir).history(SESSION).await.unwrap();
        history.iter().filter(|m| m.is_user()).map(|m| m.content().to_owned()).collect()
    })
}

#[test]
fn a_session_killed_mid_write_always_reloads_as_a_prefix_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap().to_owned();
    let mut acknowledged: Vec<String> = Vec::new();
    let mut torn = 0;
    // Kill points: after 0..=3 acknowledged turns, then after a pause of 0 to 3 ms, so kills
    // land at different moments of a turn (hydrating, appending, checkpointing).
    let mut seed = 0x9e37_79b9_u32;
    for generation in 0..40 {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let after = (seed % 4) as usize;
        let pause = std::time::Duration::from_micros(u64::from(seed >> 8) % 2_000);
        let mut child = spawn("crash", &dir, &format!("g{generation}"), 1_000);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < after {
            let line = lines.next().unwrap().unwrap();
            if let Some(message) = line.strip_prefix("ACK ") {
                acknowledged.push(message.to_owned());
                seen += 1;
            }
        }
        std::thread::sleep(pause);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let log =
            std::fs::read(std::path::Path::new(&dir).join("sessions").join(SESSION).join("turns.jsonl"))
                .unwrap_or_default();
        if !log.is_empty() && !log.ends_with(b"\n") {
            torn += 1;
        }
        // Reload: succeeds, holds every acknowledged turn, in order, and nothing after a gap.
        let stored = user_messages(&dir);
        let mut expected_next = std::collections::HashMap::new();
        for message in &stored {
            let (tag, index) = message.rsplit_once('-').unwrap();
            let index: usize = index.parse().unwrap();
            let next = expected_next.entry(tag.to_owned()).or_insert(0);
            assert_eq!(index, *next, "gap or reorder in generation {tag}: {stored:?}");
            *next += 1;
        }
        let mut position = 0;
        for ack in &acknowledged {
            position +=
                stored[position..].iter().position(|m| m == ack).unwrap_or_else(|| panic!("{ack} lost")) + 1;
        }
    }
    assert!(torn > 0, "no kill landed in the middle of an append; the test proves nothing");
    // The session still takes new turns after all that.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let last = rt.block_on(runner(&dir).turn("after the crashes", SESSION)).unwrap();
    assert_eq!(last.turn_number as usize, user_messages(&dir).len());
}

#[test]
fn two_processes_on_one_session_keep_every_turn() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap().to_owned();
    let turns = 20;
    let children: Vec<_> = ["a", "b"].into_iter().map(|tag| spawn("writer", &dir, tag, turns)).collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let stored = user_messages(&dir);
    assert_eq!(stored.len(), 2 * turns);
    for tag in ["a", "b"] {
        let mine: Vec<&String> = stored.iter().filter(|m| m.starts_with(&format!("{tag}-"))).collect();
        let expected: Vec<String> = (0..turns).map(|i| format!("{tag}-{i}")).collect();
        assert_eq!(mine, expected.iter().collect::<Vec<_>>());
    }
    // Turn numbers are 1..=2n with no duplicate: the turns were serialized across processes.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let export = rt.block_on(runner(&dir).export_session(SESSION)).unwrap();
    let numbers: Vec<u32> = export.records.iter().map(|r| r.turn).collect();
    assert_eq!(numbers, (1..=2 * turns as u32).collect::<Vec<_>>());
}

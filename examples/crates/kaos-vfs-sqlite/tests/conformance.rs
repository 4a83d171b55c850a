//! The backend against `kaos_vfs::conformance` (the suite every KAOS backend passes), and what
//! the suite cannot see: bytes that are not text, the database owned by one opener, and
//! sessions that outlive the process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use bytes::Bytes;
use kaos_agent::Agent;
use kaos_runner::Runner;
use kaos_runtime::Runtime;
use kaos_vfs::{Vfs, VfsError, VfsPath};
use kaos_vfs_sqlite::SqliteVfs;

#[tokio::test(flavor = "multi_thread")]
async fn conforms_in_memory() {
    kaos_vfs::conformance::run(|| async { SqliteVfs::in_memory().unwrap() }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conforms_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut made = 0;
    kaos_vfs::conformance::run(|| {
        made += 1;
        std::future::ready(SqliteVfs::open(dir.path().join(format!("{made}.sqlite3"))).unwrap())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn any_bytes_round_trip_and_append() {
    let vfs = SqliteVfs::in_memory().unwrap();
    let path = VfsPath::new("blobs/raw.bin").unwrap();
    let first: Vec<u8> = vec![0, 159, 146, 150, 0, 255];
    vfs.write(&path, first.clone().into()).await.unwrap();
    vfs.append(&path, vec![0xC3, 0x28, 0].into()).await.unwrap();
    let expected = [first.as_slice(), &[0xC3, 0x28, 0]].concat();
    assert_eq!(vfs.read(&path).await.unwrap(), expected);
    assert_eq!(vfs.stat(&path).await.unwrap().len, 9);
    assert_eq!(vfs.read_from(&path, 5).await.unwrap(), expected[5..]);
    assert_eq!(vfs.read_from(&path, 9).await.unwrap(), "");
    assert_eq!(vfs.read_from(&path, 100).await.unwrap(), "");

    let empty = VfsPath::new("blobs/empty").unwrap();
    vfs.write(&empty, Bytes::new()).await.unwrap();
    assert_eq!(vfs.read(&empty).await.unwrap(), "");
    assert_eq!(vfs.stat(&empty).await.unwrap().len, 0);
    let listed: Vec<u64> =
        vfs.list(&VfsPath::new("blobs").unwrap()).await.unwrap().iter().map(|e| e.len).collect();
    assert_eq!(listed, [0, 9]);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_change_moves_the_modification_time_forward() {
    let vfs = SqliteVfs::in_memory().unwrap();
    let path = VfsPath::new("log.jsonl").unwrap();
    vfs.write(&path, "a".into()).await.unwrap();
    let mut last = vfs.stat(&path).await.unwrap().modified.unwrap();
    for _ in 0..20 {
        vfs.write(&path, "b".into()).await.unwrap();
        let now = vfs.stat(&path).await.unwrap().modified.unwrap();
        assert!(now > last, "{now:?} after {last:?}");
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_opener_owns_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kaos.sqlite3");
    let first = SqliteVfs::open(&file).unwrap();
    first.write(&VfsPath::new("a.txt").unwrap(), "x".into()).await.unwrap();
    match SqliteVfs::open(&file) {
        Err(VfsError::Io { source, .. }) => assert!(source.to_string().contains("locked"), "{source}"),
        other => panic!("a second opener got {other:?}"),
    }
    drop(first);
    let again = SqliteVfs::open(&file).unwrap();
    assert_eq!(again.read(&VfsPath::new("a.txt").unwrap()).await.unwrap(), "x");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_continues_after_the_database_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kaos.sqlite3");
    let agent = Agent::builder().model("scripted:echo").build().unwrap();
    for (turn, message) in ["remember the harbour", "and the bridge"].into_iter().enumerate() {
        // A fresh database handle (a new process would do the same), the same session.
        let vfs = Arc::new(SqliteVfs::open(&file).unwrap());
        let runtime = Runtime::builder().vfs(vfs).build();
        let runner = Runner::builder(agent.clone(), runtime).build().unwrap();
        let response = runner.turn(message, "s1").await.unwrap();
        assert_eq!(response.turn_number as usize, turn + 1);
        // Each turn stored a user and an assistant message.
        assert_eq!(runner.history("s1").await.unwrap().len(), 2 * (turn + 1));
    }
}

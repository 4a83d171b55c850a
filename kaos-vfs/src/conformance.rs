//! The behavioural suite every [`Vfs`] backend must pass (feature `testing`): the same
//! suite the built-in backends run, for a backend of your own.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use kaos_vfs::MemoryVfs;
//!
//! // Your backend instead of `MemoryVfs`; each call must return a fresh, empty VFS.
//! kaos_vfs::conformance::run(|| async { MemoryVfs::new() }).await;
//! # });
//! ```
//!
//! Call [`run`] from a test on tokio's multi-thread runtime
//! (`#[tokio::test(flavor = "multi_thread")]`): it spawns tasks to check that concurrent
//! appends stay whole, that concurrent writers leave one whole version, and that
//! [`Vfs::lock`] excludes. A failed behaviour panics (it is an assertion, like `assert!`),
//! after printing its name on stderr.
//!
//! What the suite checks is the trait's documented contract, nothing more: in particular
//! [`Metadata::modified`](crate::Metadata::modified) is optional and not required.
//!
//! A backend whose [`Vfs::lock`] is a lease shared by several processes (a store with
//! conditional writes, like `ObjectStoreVfs`) also runs [`run_leases`]: exclusion between
//! handles that share nothing but the store, a released lease taken at once, an expired one
//! taken over, and the old holder fenced.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{EntryKind, Vfs, VfsEntry, VfsError, VfsPath};

/// Every behaviour, by name, in the order [`run`] checks them.
pub const BEHAVIOURS: &[&str] = &[
    "write_read_overwrite",
    "append_creates_and_appends",
    "append_and_stat_tells_the_version_it_left",
    "exists_and_stat",
    "list_sorted_direct_children",
    "delete_file_and_recursive_dir",
    "not_found_cases",
    "wrong_kind_cases",
    "concurrent_appends_stay_whole",
    "concurrent_writers_leave_one_version",
    "read_from_returns_the_tail",
    "lock_excludes_until_released",
];

/// Runs every behaviour of the suite, each against a fresh VFS from `make_vfs`.
///
/// # Panics
///
/// When the backend breaks a behaviour; the panic message and the behaviour's name (printed
/// on stderr first) say which.
pub async fn run<F, Fut, V>(mut make_vfs: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = V>,
    V: Vfs + 'static,
{
    for name in BEHAVIOURS {
        eprintln!("kaos-vfs conformance: {name}");
        let vfs: Arc<dyn Vfs> = Arc::new(make_vfs().await);
        match *name {
            "write_read_overwrite" => write_read_overwrite(vfs).await,
            "append_creates_and_appends" => append_creates_and_appends(vfs).await,
            "append_and_stat_tells_the_version_it_left" => {
                append_and_stat_tells_the_version_it_left(vfs).await
            }
            "exists_and_stat" => exists_and_stat(vfs).await,
            "list_sorted_direct_children" => list_sorted_direct_children(vfs).await,
            "delete_file_and_recursive_dir" => delete_file_and_recursive_dir(vfs).await,
            "not_found_cases" => not_found_cases(vfs).await,
            "wrong_kind_cases" => wrong_kind_cases(vfs).await,
            "concurrent_appends_stay_whole" => concurrent_appends_stay_whole(vfs).await,
            "concurrent_writers_leave_one_version" => concurrent_writers_leave_one_version(vfs).await,
            "read_from_returns_the_tail" => read_from_returns_the_tail(vfs).await,
            "lock_excludes_until_released" => lock_excludes_until_released(vfs).await,
            other => unreachable!("{other} is listed in BEHAVIOURS but not run"),
        }
    }
}

fn p(s: &str) -> VfsPath {
    VfsPath::new(s).unwrap()
}

fn file(path: &str, len: u64) -> VfsEntry {
    VfsEntry::new(p(path), EntryKind::File, len)
}

fn dir(path: &str) -> VfsEntry {
    VfsEntry::new(p(path), EntryKind::Dir, 0)
}

async fn write_read_overwrite(vfs: Arc<dyn Vfs>) {
    vfs.write(&p("a.txt"), "one".into()).await.unwrap();
    assert_eq!(vfs.read(&p("a.txt")).await.unwrap(), "one");
    vfs.write(&p("a.txt"), "two, longer".into()).await.unwrap();
    assert_eq!(vfs.read(&p("a.txt")).await.unwrap(), "two, longer");
    vfs.write(&p("a.txt"), "3".into()).await.unwrap();
    assert_eq!(vfs.read(&p("a.txt")).await.unwrap(), "3");

    // Parents are created; empty files and binary data round-trip.
    vfs.write(&p("d/e/f.bin"), Bytes::from_static(&[0, 255, 10, 13])).await.unwrap();
    assert_eq!(vfs.read(&p("d/e/f.bin")).await.unwrap(), Bytes::from_static(&[0, 255, 10, 13]));
    vfs.write(&p("d/empty"), Bytes::new()).await.unwrap();
    assert_eq!(vfs.read(&p("d/empty")).await.unwrap(), "");

    // Normalized spellings name the same file.
    assert_eq!(vfs.read(&p("./d//e/f.bin/")).await.unwrap(), Bytes::from_static(&[0, 255, 10, 13]));
}

async fn append_creates_and_appends(vfs: Arc<dyn Vfs>) {
    let log = p("logs/s1/turns.jsonl");
    vfs.append(&log, "{\"n\":1}\n".into()).await.unwrap();
    assert_eq!(vfs.read(&log).await.unwrap(), "{\"n\":1}\n");
    vfs.append(&log, "{\"n\":2}\n".into()).await.unwrap();
    vfs.append(&log, Bytes::new()).await.unwrap();
    assert_eq!(vfs.read(&log).await.unwrap(), "{\"n\":1}\n{\"n\":2}\n");

    vfs.write(&p("w.txt"), "base".into()).await.unwrap();
    vfs.append(&p("w.txt"), "+more".into()).await.unwrap();
    assert_eq!(vfs.read(&p("w.txt")).await.unwrap(), "base+more");
    vfs.write(&p("w.txt"), "reset".into()).await.unwrap();
    assert_eq!(vfs.read(&p("w.txt")).await.unwrap(), "reset");
}

/// `append_and_stat` appends as `append` does, and the metadata it gives (when it gives any) are
/// what `stat` says right after: a log's writer may take them for the version it left.
async fn append_and_stat_tells_the_version_it_left(vfs: Arc<dyn Vfs>) {
    let log = p("logs/s1/turns.jsonl");
    let mut expected = String::new();
    for (n, line) in ["{\"n\":1}\n", "{\"n\":2}\n", "", "{\"n\":3}\n"].into_iter().enumerate() {
        let told = vfs.append_and_stat(&log, Bytes::from(line)).await.unwrap();
        expected.push_str(line);
        assert_eq!(vfs.read(&log).await.unwrap(), expected.as_str(), "append {n}");
        if let Some(told) = told {
            let stat = vfs.stat(&log).await.unwrap();
            assert_eq!((told.kind, told.len), (EntryKind::File, expected.len() as u64), "append {n}");
            assert_eq!(told, stat, "append {n}: what it told is not what stat says");
        }
    }
}

async fn exists_and_stat(vfs: Arc<dyn Vfs>) {
    vfs.write(&p("d/sub/f.txt"), "12345".into()).await.unwrap();

    assert!(vfs.exists(&p("d/sub/f.txt")).await.unwrap());
    let meta = vfs.stat(&p("d/sub/f.txt")).await.unwrap();
    assert_eq!((meta.kind, meta.len), (EntryKind::File, 5));
    // `modified` is optional in the trait's contract (a backend may not know it), so it is
    // not checked here.

    for implicit_dir in ["d", "d/sub", ""] {
        assert!(vfs.exists(&p(implicit_dir)).await.unwrap(), "{implicit_dir}");
        let meta = vfs.stat(&p(implicit_dir)).await.unwrap();
        assert_eq!((meta.kind, meta.len), (EntryKind::Dir, 0), "{implicit_dir}");
    }

    for missing in ["nope", "d/nope", "d/sub/f.txt/below", "d/su", "d/sub/f"] {
        assert!(!vfs.exists(&p(missing)).await.unwrap(), "{missing}");
        let err = vfs.stat(&p(missing)).await.unwrap_err();
        assert!(err.is_not_found(), "{missing}: {err:?}");
    }
}

async fn list_sorted_direct_children(vfs: Arc<dyn Vfs>) {
    for (path, body) in [
        ("dir/b.txt", "bb"),
        ("dir/a.txt", "a"),
        ("dir/sub/c.txt", "ccc"),
        ("dir/sub/deeper/d.txt", "d"),
        ("dir/sub-x.txt", "x"),
        ("dir-x/e.txt", "e"),
        ("dir.txt", "f"),
    ] {
        vfs.write(&p(path), body.into()).await.unwrap();
    }
    assert_eq!(
        vfs.list(&p("dir")).await.unwrap(),
        vec![file("dir/a.txt", 1), file("dir/b.txt", 2), dir("dir/sub"), file("dir/sub-x.txt", 1)]
    );
    assert_eq!(vfs.list(&p("dir/sub")).await.unwrap(), vec![file("dir/sub/c.txt", 3), dir("dir/sub/deeper")]);
    assert_eq!(vfs.list(&VfsPath::root()).await.unwrap(), vec![dir("dir"), dir("dir-x"), file("dir.txt", 1)]);

    assert_eq!(vfs.list(&p("missing")).await.unwrap(), vec![]);
    assert_eq!(vfs.list(&p("dir/a.txt/below")).await.unwrap(), vec![]);
    assert!(matches!(
        vfs.list(&p("dir/a.txt")).await,
        Err(VfsError::WrongKind { expected: "directory", found: "file", .. })
    ));
}

async fn delete_file_and_recursive_dir(vfs: Arc<dyn Vfs>) {
    for path in ["a/one.txt", "a/b/two.txt", "a/b/c/three.txt", "a-sibling/four.txt", "keep.txt"] {
        vfs.write(&p(path), "x".into()).await.unwrap();
    }

    vfs.delete(&p("a/one.txt")).await.unwrap();
    assert!(!vfs.exists(&p("a/one.txt")).await.unwrap());
    assert!(vfs.read(&p("a/one.txt")).await.unwrap_err().is_not_found());
    assert!(vfs.delete(&p("a/one.txt")).await.unwrap_err().is_not_found());

    vfs.delete(&p("a")).await.unwrap();
    for gone in ["a", "a/b", "a/b/two.txt", "a/b/c/three.txt"] {
        assert!(!vfs.exists(&p(gone)).await.unwrap(), "{gone}");
    }
    assert_eq!(vfs.list(&VfsPath::root()).await.unwrap(), vec![dir("a-sibling"), file("keep.txt", 1)]);

    // The last file of a directory takes its (implicit) directories with it.
    vfs.write(&p("x/y/z.txt"), "z".into()).await.unwrap();
    vfs.delete(&p("x/y/z.txt")).await.unwrap();
    assert!(!vfs.exists(&p("x/y")).await.unwrap());
    assert!(!vfs.exists(&p("x")).await.unwrap());

    assert!(vfs.delete(&p("never")).await.unwrap_err().is_not_found());
    assert!(vfs.delete(&p("keep.txt/below")).await.unwrap_err().is_not_found());

    // Deleting the root empties everything visible; the root still exists.
    vfs.delete(&VfsPath::root()).await.unwrap();
    assert_eq!(vfs.list(&VfsPath::root()).await.unwrap(), vec![]);
    assert!(vfs.exists(&VfsPath::root()).await.unwrap());
    vfs.delete(&VfsPath::root()).await.unwrap();
}

async fn not_found_cases(vfs: Arc<dyn Vfs>) {
    vfs.write(&p("f.txt"), "x".into()).await.unwrap();
    for missing in ["nope.txt", "dir/nope.txt", "f.txt/below", "f.tx"] {
        let path = p(missing);
        match vfs.read(&path).await {
            Err(VfsError::NotFound(message)) => assert_eq!(message, missing),
            other => panic!("{missing}: {other:?}"),
        }
        assert!(vfs.stat(&path).await.unwrap_err().is_not_found());
        assert!(vfs.delete(&path).await.unwrap_err().is_not_found());
        assert!(!vfs.exists(&path).await.unwrap());
    }
}

async fn wrong_kind_cases(vfs: Arc<dyn Vfs>) {
    vfs.write(&p("d/f.txt"), "x".into()).await.unwrap();

    // A file where a directory is.
    for err in [
        vfs.write(&p("d"), "x".into()).await.unwrap_err(),
        vfs.append(&p("d"), "x".into()).await.unwrap_err(),
        vfs.read(&p("d")).await.unwrap_err(),
    ] {
        match err {
            VfsError::WrongKind { path, expected: "file", found: "directory" } => assert_eq!(path, p("d")),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        vfs.write(&VfsPath::root(), "x".into()).await,
        Err(VfsError::WrongKind { expected: "file", found: "directory", .. })
    ));

    // A directory (or something below one) where a file is.
    for err in [
        vfs.write(&p("d/f.txt/g.txt"), "x".into()).await.unwrap_err(),
        vfs.append(&p("d/f.txt/g/h.txt"), "x".into()).await.unwrap_err(),
        vfs.list(&p("d/f.txt")).await.unwrap_err(),
    ] {
        match err {
            VfsError::WrongKind { path, expected: "directory", found: "file" } => {
                assert_eq!(path, p("d/f.txt"))
            }
            other => panic!("{other:?}"),
        }
    }

    // Nothing was changed by the failed calls.
    assert_eq!(vfs.read(&p("d/f.txt")).await.unwrap(), "x");
    assert_eq!(vfs.list(&p("d")).await.unwrap(), vec![file("d/f.txt", 1)]);
}

async fn concurrent_appends_stay_whole(vfs: Arc<dyn Vfs>) {
    const TASKS: usize = 50;
    const LINES: usize = 20;
    let log = p("logs/concurrent.jsonl");
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let vfs = Arc::clone(&vfs);
            let log = log.clone();
            tokio::spawn(async move {
                for line in 0..LINES {
                    // Long enough that a torn write would be visible.
                    let body = format!("task={task:02} line={line:02} {}\n", "#".repeat(200 + task));
                    vfs.append(&log, body.into()).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    let text = String::from_utf8(vfs.read(&log).await.unwrap().to_vec()).unwrap();
    assert!(text.ends_with('\n'));
    let mut next_line = BTreeMap::new();
    for line in text.lines() {
        let (task, rest) = line.strip_prefix("task=").unwrap().split_once(" line=").unwrap();
        let (line_no, padding) = rest.split_once(' ').unwrap();
        let task: usize = task.parse().unwrap();
        let line_no: usize = line_no.parse().unwrap();
        assert_eq!(padding, "#".repeat(200 + task), "torn line: {line:?}");
        // Each task appends in order, so its lines appear in order.
        let expected = next_line.entry(task).or_insert(0);
        assert_eq!(line_no, *expected);
        *expected += 1;
    }
    assert_eq!(next_line.len(), TASKS);
    assert!(next_line.values().all(|&n| n == LINES));
}

async fn concurrent_writers_leave_one_version(vfs: Arc<dyn Vfs>) {
    const WRITERS: u8 = 16;
    const SIZE: usize = 64 * 1024;
    let target = p("shared/state.bin");
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let vfs = Arc::clone(&vfs);
            let target = target.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    vfs.write(&target, Bytes::from(vec![writer; SIZE])).await.unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let vfs = Arc::clone(&vfs);
        let target = target.clone();
        tokio::spawn(async move {
            for _ in 0..50 {
                match vfs.read(&target).await {
                    Ok(bytes) => {
                        assert_eq!(bytes.len(), SIZE, "a reader saw a partial version");
                        assert!(bytes.iter().all(|&b| b == bytes[0]), "a reader saw mixed versions");
                    }
                    Err(e) => assert!(e.is_not_found(), "{e:?}"),
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    reader.await.unwrap();

    let bytes = vfs.read(&target).await.unwrap();
    assert_eq!(bytes.len(), SIZE);
    assert!(bytes[0] < WRITERS);
    assert!(bytes.iter().all(|&b| b == bytes[0]));
    assert_eq!(vfs.list(&p("shared")).await.unwrap(), vec![file("shared/state.bin", SIZE as u64)]);
}

async fn read_from_returns_the_tail(vfs: Arc<dyn Vfs>) {
    vfs.append(&p("log/a.jsonl"), "line one\n".into()).await.unwrap();
    vfs.append(&p("log/a.jsonl"), "line two\n".into()).await.unwrap();
    assert_eq!(vfs.read_from(&p("log/a.jsonl"), 0).await.unwrap(), "line one\nline two\n");
    assert_eq!(vfs.read_from(&p("log/a.jsonl"), 9).await.unwrap(), "line two\n");
    assert_eq!(vfs.read_from(&p("log/a.jsonl"), 18).await.unwrap(), "");
    assert_eq!(vfs.read_from(&p("log/a.jsonl"), 1_000).await.unwrap(), "");
    assert!(vfs.read_from(&p("log/missing"), 0).await.unwrap_err().is_not_found());
    assert!(matches!(vfs.read_from(&p("log"), 0).await, Err(VfsError::WrongKind { .. })));
}

async fn lock_excludes_until_released(vfs: Arc<dyn Vfs>) {
    let path = p("sessions/s/.lock");
    let first = vfs.lock(&path).await.unwrap();
    let acquired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waiter = {
        let (vfs, path, acquired) = (vfs.clone(), path.clone(), acquired.clone());
        tokio::spawn(async move {
            let guard = vfs.lock(&path).await.unwrap();
            acquired.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(guard);
        })
    };
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(!acquired.load(std::sync::atomic::Ordering::SeqCst), "the lock was taken twice");
    // Other names are independent.
    drop(vfs.lock(&p("sessions/t/.lock")).await.unwrap());
    drop(first);
    waiter.await.unwrap();
    assert!(acquired.load(std::sync::atomic::Ordering::SeqCst));
    drop(vfs.lock(&path).await.unwrap());
}

/// Every behaviour of the lease suite, by name, in the order [`run_leases`] checks them.
pub const LEASE_BEHAVIOURS: &[&str] = &[
    "leases_exclude_across_handles",
    "a_released_lease_is_taken_at_once",
    "an_expired_lease_is_taken_over_and_its_holder_fenced",
];

/// Runs the lease behaviours: for a backend whose [`Vfs::lock`] is a lease on a store that
/// several processes share (created only if absent, renewed and taken over by conditional
/// writes), such as `ObjectStoreVfs`.
///
/// `open(namespace)` returns a new handle on the store, as another process would open it:
/// handles opened with the same `namespace` share the store's files and locks and nothing
/// else (no in-process lock, no cache), handles of different namespaces are independent. Each
/// behaviour uses a namespace of its own. `ttl` is the lease time to live the handles use
/// (keep it short, a second or two: the suite waits for a lease to expire); their lock timeout
/// must be longer than three TTLs.
///
/// ```
/// # #[cfg(feature = "object-store")] {
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use kaos_vfs::ObjectStoreVfs;
/// use kaos_vfs::object_store::memory::InMemory;
///
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let ttl = Duration::from_millis(500);
/// let store = Arc::new(InMemory::new());
/// kaos_vfs::conformance::run_leases(ttl, |namespace| {
///     let vfs = ObjectStoreVfs::new(store.clone(), namespace).unwrap().with_lease_ttl(ttl);
///     std::future::ready(vfs.with_lock_timeout(Duration::from_secs(10)))
/// })
/// .await;
/// # });
/// # }
/// ```
///
/// # Panics
///
/// When the backend breaks a behaviour, like [`run`].
pub async fn run_leases<F, Fut, V>(ttl: Duration, mut open: F)
where
    F: FnMut(&str) -> Fut,
    Fut: Future<Output = V>,
    V: Vfs + 'static,
{
    for name in LEASE_BEHAVIOURS {
        eprintln!("kaos-vfs lease conformance: {name}");
        let namespace = format!("lease-conformance-{}-{name}", std::process::id());
        match *name {
            "leases_exclude_across_handles" => {
                let mut handles: Vec<Arc<dyn Vfs>> = Vec::new();
                for _ in 0..4 {
                    handles.push(Arc::new(open(&namespace).await));
                }
                leases_exclude_across_handles(handles).await;
            }
            "a_released_lease_is_taken_at_once" => {
                let (a, b) = (open(&namespace).await, open(&namespace).await);
                a_released_lease_is_taken_at_once(Arc::new(a), Arc::new(b), ttl).await;
            }
            "an_expired_lease_is_taken_over_and_its_holder_fenced" => {
                let (a, b) = (open(&namespace).await, open(&namespace).await);
                an_expired_lease_is_taken_over_and_its_holder_fenced(Arc::new(a), Arc::new(b), ttl).await;
            }
            other => unreachable!("{other} is listed in LEASE_BEHAVIOURS but not run"),
        }
    }
}

/// Four handles (four processes) increment a counter under the lock: nobody is ever inside at
/// the same time as another, and no increment is lost.
async fn leases_exclude_across_handles(handles: Vec<Arc<dyn Vfs>>) {
    const ROUNDS: usize = 4;
    let (lock, counter) = (p("locks/counter"), p("counter"));
    let inside = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = handles
        .iter()
        .map(|vfs| {
            let (vfs, lock, counter, inside) = (vfs.clone(), lock.clone(), counter.clone(), inside.clone());
            tokio::spawn(async move {
                for _ in 0..ROUNDS {
                    let held = vfs.lock(&lock).await.unwrap();
                    assert!(!inside.swap(true, Ordering::SeqCst), "two handles held the lease at once");
                    let n: usize = match vfs.read(&counter).await {
                        Ok(bytes) => String::from_utf8(bytes.to_vec()).unwrap().parse().unwrap(),
                        Err(e) if e.is_not_found() => 0,
                        Err(e) => panic!("reading the counter: {e}"),
                    };
                    tokio::task::yield_now().await;
                    vfs.write(&counter, (n + 1).to_string().into()).await.unwrap();
                    inside.store(false, Ordering::SeqCst);
                    held.release().await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let total = handles[0].read(&counter).await.unwrap();
    assert_eq!(total, (handles.len() * ROUNDS).to_string(), "an increment was lost");
}

/// A waiter gets a released lease without waiting for it to expire.
async fn a_released_lease_is_taken_at_once(a: Arc<dyn Vfs>, b: Arc<dyn Vfs>, ttl: Duration) {
    let lock = p("locks/session");
    let held = a.lock(&lock).await.unwrap();
    held.check().unwrap();
    let waiter = {
        let (b, lock) = (b.clone(), lock.clone());
        tokio::spawn(async move {
            let held = b.lock(&lock).await.unwrap();
            (Instant::now(), held)
        })
    };
    // The waiter is refused while the lease is held and renewed (past its TTL).
    tokio::time::sleep(ttl + ttl / 2).await;
    assert!(!waiter.is_finished(), "the lease was taken while its holder renewed it");
    held.check().unwrap();
    let released = Instant::now();
    held.release().await.unwrap();
    let (taken, held) = waiter.await.unwrap();
    assert!(
        taken.duration_since(released) < ttl,
        "a released lease was taken only after {:?} (TTL {ttl:?}): as if expired, not released",
        taken.duration_since(released)
    );
    held.release().await.unwrap();
}

/// A holder that stops renewing (a paused process: here its runtime's only thread is blocked)
/// loses its lease after a TTL; another handle takes it over; the old holder, resumed, is told
/// (`LockLost` from `check`) and its writes are refused, and the new holder's lease and writes
/// stay.
async fn an_expired_lease_is_taken_over_and_its_holder_fenced(
    a: Arc<dyn Vfs>,
    b: Arc<dyn Vfs>,
    ttl: Duration,
) {
    let (lock, log) = (p("locks/session"), p("log"));
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
    let (resume_tx, resume_rx) = std::sync::mpsc::channel::<()>();
    let paused = {
        let (lock, log) = (lock.clone(), log.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let held = a.lock(&lock).await.unwrap();
                locked_tx.send(()).unwrap();
                // Blocks the runtime's only thread: nothing of this handle runs, its lease is
                // not renewed, as in a process stopped by the OS.
                resume_rx.recv().unwrap();
                let check = held.check();
                let append = a.append(&log, "a\n".into()).await;
                let release = held.release().await;
                (check, append, release)
            })
        })
    };
    locked_rx.await.unwrap();
    let started = Instant::now();
    let held = b.lock(&lock).await.unwrap();
    // It was taken no sooner than the lease could have expired (with room for clocks).
    assert!(started.elapsed() >= ttl / 4, "the lease was taken over while it was live");
    b.append(&log, "b\n".into()).await.unwrap();

    resume_tx.send(()).unwrap();
    let (check, append, release) = tokio::task::spawn_blocking(move || paused.join().unwrap()).await.unwrap();
    assert!(matches!(check, Err(VfsError::LockLost { .. })), "the old holder's check: {check:?}");
    assert!(matches!(append, Err(VfsError::LockLost { .. })), "the old holder's write: {append:?}");
    assert!(
        matches!(release, Ok(()) | Err(VfsError::LockLost { .. })),
        "the old holder's release: {release:?}"
    );

    // The new holder's lease survived the old holder's release, and its writes go on.
    held.check().unwrap();
    b.append(&log, "b2\n".into()).await.unwrap();
    assert_eq!(b.read(&log).await.unwrap(), "b\nb2\n");
    held.release().await.unwrap();
}

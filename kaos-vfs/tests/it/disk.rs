//! DiskVfs specifics: hostile paths, symlinks that point out of the root, atomic writes and
//! temp files.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use kaos_vfs::{DiskVfs, EntryKind, Vfs, VfsEntry, VfsError, VfsPath};
use proptest::prelude::*;

fn p(s: &str) -> VfsPath {
    VfsPath::new(s).unwrap()
}

/// A tempdir holding `root/` (the VFS) and `outside/` (which must never change).
struct Sandbox {
    _dir: tempfile::TempDir,
    base: PathBuf,
    outside: PathBuf,
    vfs: DiskVfs,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let outside = base.join("outside");
        fs::create_dir(&outside).unwrap();
        let vfs = DiskVfs::new(base.join("root")).unwrap();
        Self { _dir: dir, base, outside, vfs }
    }

    fn with_secrets() -> Self {
        let sandbox = Self::new();
        fs::write(sandbox.outside.join("secret.txt"), "top secret").unwrap();
        fs::create_dir(sandbox.outside.join("sub")).unwrap();
        fs::write(sandbox.outside.join("sub/nested.txt"), "nested secret").unwrap();
        sandbox
    }

    fn root(&self) -> &Path {
        self.vfs.root()
    }
}

/// Every path below `dir` with its contents (`None` for directories), without following links.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            out.insert(entry.path(), None);
            out.extend(snapshot(&entry.path()));
        } else if kind.is_symlink() {
            out.insert(
                entry.path(),
                Some(fs::read_link(entry.path()).unwrap().into_os_string().into_encoded_bytes()),
            );
        } else {
            out.insert(entry.path(), Some(fs::read(entry.path()).unwrap()));
        }
    }
    out
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, VfsError>, path: &VfsPath) {
    match result {
        // Exactly the message a missing path gets: nothing hints that something is there.
        Err(VfsError::NotFound(message)) => assert_eq!(message, path.to_string()),
        other => panic!("{path}: expected NotFound, got {other:?}"),
    }
}

#[test]
fn hostile_path_strings_are_invalid() {
    let long = "x".repeat(5000);
    let long_segment = format!("a/{}", "y".repeat(300));
    let hostile = [
        "..",
        "../x",
        "../../etc/passwd",
        "a/../../x",
        "a/b/../../../x",
        "./../x",
        "a/..",
        "/etc/passwd",
        "/",
        "//server/share",
        "a\\..\\b",
        "..\\x",
        "\\\\server\\share",
        "a\0b",
        "\0",
        "a/\n/b",
        "a\u{7f}",
        "C:/x",
        "c:\\windows",
        "C:",
        long.as_str(),
        long_segment.as_str(),
    ];
    for input in hostile {
        match VfsPath::new(input) {
            Err(VfsError::InvalidPath { path, .. }) => assert_eq!(path, input),
            other => panic!("{input:?} was not rejected: {other:?}"),
        }
    }
}

#[tokio::test]
async fn reserved_temp_names_are_invalid() {
    let sandbox = Sandbox::new();
    for name in [".a.kaos-tmp-1-2", "dir/.x.kaos-tmp-", ".kaos-tmp-/f"] {
        let path = p(name);
        assert!(matches!(sandbox.vfs.write(&path, "x".into()).await, Err(VfsError::InvalidPath { .. })));
        assert!(matches!(sandbox.vfs.read(&path).await, Err(VfsError::InvalidPath { .. })));
        assert!(matches!(sandbox.vfs.exists(&path).await, Err(VfsError::InvalidPath { .. })));
    }
    // Only the reserved shape is taken: ordinary dot files and look-alikes are fine.
    for name in [".hidden", "a.kaos-tmp-1", ".kaos-tmp"] {
        sandbox.vfs.write(&p(name), "x".into()).await.unwrap();
    }
    assert_eq!(snapshot(&sandbox.outside), BTreeMap::new());
}

#[tokio::test]
async fn new_creates_and_canonicalizes_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = DiskVfs::new(dir.path().join("a/b/../c")).unwrap();
    assert_eq!(vfs.root(), fs::canonicalize(dir.path().join("a/c")).unwrap());
    assert!(vfs.root().is_dir());

    fs::write(dir.path().join("file"), "x").unwrap();
    assert!(matches!(DiskVfs::new(dir.path().join("file")), Err(VfsError::Io { .. })));
}

#[tokio::test]
async fn writes_leave_no_temp_files() {
    let sandbox = Sandbox::new();
    for round in 0..20 {
        sandbox.vfs.write(&p("state.json"), format!("{{\"round\":{round}}}").into()).await.unwrap();
        sandbox.vfs.write(&p("d/state.json"), Bytes::from(vec![b'x'; 10_000])).await.unwrap();
    }
    let names: Vec<_> = snapshot(sandbox.root()).into_keys().collect();
    assert_eq!(
        names,
        vec![
            sandbox.root().join("d"),
            sandbox.root().join("d/state.json"),
            sandbox.root().join("state.json")
        ]
    );
    assert_eq!(sandbox.vfs.read(&p("state.json")).await.unwrap(), "{\"round\":19}");
}

#[tokio::test]
async fn stray_temp_files_are_not_listed() {
    let sandbox = Sandbox::new();
    sandbox.vfs.write(&p("d/a.txt"), "a".into()).await.unwrap();
    // As if a process crashed between creating its temp file and renaming it.
    fs::write(sandbox.root().join(".a.txt.kaos-tmp-4242-7"), "partial").unwrap();
    fs::write(sandbox.root().join("d/.a.txt.kaos-tmp-4242-8"), "partial").unwrap();

    assert_eq!(
        sandbox.vfs.list(&VfsPath::root()).await.unwrap(),
        vec![VfsEntry::new(p("d"), EntryKind::Dir, 0)]
    );
    assert_eq!(
        sandbox.vfs.list(&p("d")).await.unwrap(),
        vec![VfsEntry::new(p("d/a.txt"), EntryKind::File, 1)]
    );
    sandbox.vfs.write(&p("d/a.txt"), "b".into()).await.unwrap();
    assert_eq!(sandbox.vfs.read(&p("d/a.txt")).await.unwrap(), "b");
}

#[tokio::test]
async fn unrepresentable_names_are_not_listed() {
    let sandbox = Sandbox::new();
    sandbox.vfs.write(&p("ok.txt"), "ok".into()).await.unwrap();
    fs::write(sandbox.root().join("back\\slash"), "x").unwrap();
    fs::write(sandbox.root().join("new\nline"), "x").unwrap();
    assert_eq!(
        sandbox.vfs.list(&VfsPath::root()).await.unwrap(),
        vec![VfsEntry::new(p("ok.txt"), EntryKind::File, 2)]
    );
}

#[tokio::test]
async fn appends_are_not_torn_by_other_writers_of_other_files() {
    let sandbox = Sandbox::new();
    let vfs = sandbox.vfs.clone().with_synced_appends(true);
    vfs.append(&p("l.jsonl"), "1\n".into()).await.unwrap();
    sandbox.vfs.append(&p("l.jsonl"), "2\n".into()).await.unwrap();
    assert_eq!(vfs.read(&p("l.jsonl")).await.unwrap(), "1\n2\n");
}

/// Synced appends from many tasks at once are committed in groups: every one returns, and
/// every byte of every append is in its file, whole and in order per file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_synced_appends_all_land_whole() {
    let sandbox = Sandbox::new();
    let vfs = sandbox.vfs.clone().with_synced_appends(true);
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let vfs = vfs.clone();
            tokio::spawn(async move {
                for n in 0..5 {
                    let line = format!("{{\"file\":{},\"n\":{n}}}\n", i % 10);
                    vfs.append(&p(&format!("s{}/turns.jsonl", i % 10)), line.into()).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for f in 0..10 {
        let text =
            String::from_utf8(vfs.read(&p(&format!("s{f}/turns.jsonl"))).await.unwrap().to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 20, "{text}");
        assert!(lines.iter().all(|l| l.starts_with(&format!("{{\"file\":{f},"))), "{text}");
        for n in 0..5 {
            assert_eq!(lines.iter().filter(|l| l.ends_with(&format!("\"n\":{n}}}"))).count(), 4, "{text}");
        }
    }
}

/// A `DiskVfs` keeps its append handle between appends; another handle on the same root (as
/// another process would) that deletes, replaces or re-creates the file makes it open the
/// file afresh: no append lands in a file that is no longer at the path.
#[tokio::test]
async fn appends_reach_the_file_now_at_the_path_after_others_replace_it() {
    let sandbox = Sandbox::new();
    let mine = sandbox.vfs.clone().with_synced_appends(true);
    let other = DiskVfs::new(sandbox.root()).unwrap();
    let log = p("sessions/s/turns.jsonl");
    mine.append(&log, "1\n".into()).await.unwrap();
    other.delete(&p("sessions/s")).await.unwrap();
    other.append(&log, "a\n".into()).await.unwrap();
    mine.append(&log, "2\n".into()).await.unwrap();
    assert_eq!(other.read(&log).await.unwrap(), "a\n2\n");
    assert_eq!(mine.stat(&log).await.unwrap().len, 4);
    other.write(&log, Bytes::from_static(b"b\n")).await.unwrap();
    assert_eq!(mine.stat(&log).await.unwrap().len, 2);
    mine.append(&log, "3\n".into()).await.unwrap();
    assert_eq!(other.read(&log).await.unwrap(), "b\n3\n");
    // Deleted under it: stat says so, and the next append creates the file again.
    other.delete(&log).await.unwrap();
    assert!(mine.stat(&log).await.unwrap_err().is_not_found());
    mine.append(&log, "4\n".into()).await.unwrap();
    assert_eq!(other.read(&log).await.unwrap(), "4\n");
}

/// A lock released by this handle keeps its files open for the next take; when someone else
/// deletes and re-creates the lock file meanwhile, the kept file is not taken for the lock:
/// the new file's holder still excludes this handle.
#[tokio::test]
async fn a_kept_lock_file_that_was_replaced_does_not_take_the_lock() {
    let sandbox = Sandbox::new();
    let mine = sandbox.vfs.clone().with_lock_timeout(std::time::Duration::from_millis(200));
    let other = DiskVfs::new(sandbox.root()).unwrap();
    let lock = p(".locks/sessions/s.lock");
    drop(mine.lock(&lock).await.unwrap());
    other.delete(&VfsPath::root()).await.unwrap();
    let held = other.lock(&lock).await.unwrap();
    assert!(matches!(mine.lock(&lock).await, Err(VfsError::LockTimeout { .. })));
    drop(held);
    drop(mine.lock(&lock).await.unwrap());
    // And the other way round: held by this handle through its kept files, it excludes others.
    let held = mine.lock(&lock).await.unwrap();
    let other = other.with_lock_timeout(std::time::Duration::from_millis(200));
    assert!(matches!(other.lock(&lock).await, Err(VfsError::LockTimeout { .. })));
    drop(held);
    drop(other.lock(&lock).await.unwrap());
}

#[cfg(unix)]
mod symlinks {
    use std::os::unix::fs::symlink;

    use super::*;

    /// Every operation through `path` fails exactly like a missing path and changes nothing outside.
    async fn assert_unreachable(sandbox: &Sandbox, path: &str) {
        let before = snapshot(&sandbox.outside);
        let vfs = &sandbox.vfs;
        let path = p(path);
        let missing = p("definitely/missing");

        assert_not_found(vfs.read(&path).await, &path);
        assert_not_found(vfs.stat(&path).await, &path);
        assert_not_found(vfs.write(&path, "pwned".into()).await, &path);
        assert_not_found(vfs.append(&path, "pwned\n".into()).await, &path);
        assert!(!vfs.exists(&path).await.unwrap());
        assert_eq!(vfs.list(&path).await.unwrap(), vfs.list(&missing).await.unwrap());
        assert_not_found(vfs.delete(&path).await, &path);

        assert_eq!(snapshot(&sandbox.outside), before, "{path}: something outside changed");
    }

    #[tokio::test]
    async fn symlink_to_an_outside_directory() {
        let sandbox = Sandbox::with_secrets();
        symlink(&sandbox.outside, sandbox.root().join("link")).unwrap();
        for path in [
            "link",
            "link/secret.txt",
            "link/sub",
            "link/sub/nested.txt",
            "link/new.txt",
            "link/new/deep.txt",
        ] {
            assert_unreachable(&sandbox, path).await;
        }
        // The link itself is still there, untouched, and not listed.
        assert!(fs::symlink_metadata(sandbox.root().join("link")).unwrap().file_type().is_symlink());
        assert_eq!(sandbox.vfs.list(&VfsPath::root()).await.unwrap(), vec![]);
    }

    #[tokio::test]
    async fn symlink_to_an_outside_file() {
        let sandbox = Sandbox::with_secrets();
        symlink(sandbox.outside.join("secret.txt"), sandbox.root().join("secret.txt")).unwrap();
        symlink(sandbox.outside.join("absent.txt"), sandbox.root().join("dangling.txt")).unwrap();
        assert_unreachable(&sandbox, "secret.txt").await;
        assert_unreachable(&sandbox, "dangling.txt").await;
        assert_unreachable(&sandbox, "secret.txt/below").await;
        assert!(!sandbox.outside.join("absent.txt").exists());
    }

    #[tokio::test]
    async fn symlink_to_the_filesystem_root() {
        let sandbox = Sandbox::with_secrets();
        symlink("/", sandbox.root().join("slash")).unwrap();
        let outside_rel = sandbox.outside.strip_prefix("/").unwrap().to_str().unwrap().to_owned();
        for path in [
            "slash".to_owned(),
            "slash/etc".to_owned(),
            "slash/etc/passwd".to_owned(),
            format!("slash/{outside_rel}/secret.txt"),
            format!("slash/{outside_rel}/planted.txt"),
        ] {
            assert_unreachable(&sandbox, &path).await;
        }
        assert!(!sandbox.outside.join("planted.txt").exists());
    }

    #[tokio::test]
    async fn symlinked_parent_directory() {
        let sandbox = Sandbox::with_secrets();
        sandbox.vfs.write(&p("real/mine.txt"), "mine".into()).await.unwrap();
        symlink(&sandbox.outside, sandbox.root().join("real/escape")).unwrap();
        // Even a link that stays inside the root is not followed.
        symlink(sandbox.root().join("real"), sandbox.root().join("alias")).unwrap();
        for path in ["real/escape/secret.txt", "real/escape/sub/x.txt", "alias/mine.txt", "alias/new.txt"] {
            assert_unreachable(&sandbox, path).await;
        }
        assert_eq!(
            sandbox.vfs.list(&p("real")).await.unwrap(),
            vec![VfsEntry::new(p("real/mine.txt"), EntryKind::File, 4)]
        );

        // Deleting the directory holding the link removes the link, not its target.
        let before = snapshot(&sandbox.outside);
        sandbox.vfs.delete(&p("real")).await.unwrap();
        assert!(!sandbox.root().join("real").exists());
        // And emptying the whole root does not reach through `alias` either.
        sandbox.vfs.delete(&VfsPath::root()).await.unwrap();
        assert_eq!(fs::read_dir(sandbox.root()).unwrap().count(), 0);
        assert_eq!(snapshot(&sandbox.outside), before);
    }
}

/// Segments that mix ordinary names, hostile spellings and a planted symlink.
fn hostile_path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        4 => prop::sample::select(vec![
            "", ".", "..", "a", "b", "link", "outside", "root", "~", "\\", "..\\..", "C:", "\0", "%2e%2e",
            ".a.kaos-tmp-1-1", "\u{202e}",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    (prop::collection::vec(segment, 0..6), any::<bool>()).prop_map(|(segments, lead)| {
        let joined = segments.join("/");
        if lead { format!("/{joined}") } else { joined }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_paths_never_touch_anything_outside_the_root(inputs in prop::collection::vec(hostile_path(), 1..8)) {
        let sandbox = Sandbox::new();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&sandbox.outside, sandbox.root().join("link")).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            for input in &inputs {
                let Ok(path) = VfsPath::new(input) else { continue };
                let vfs = &sandbox.vfs;
                let _ = vfs.write(&path, "w".into()).await;
                let _ = vfs.append(&path.join("x").unwrap_or(path.clone()), "a\n".into()).await;
                let _ = vfs.read(&path).await;
                let _ = vfs.stat(&path).await;
                let _ = vfs.exists(&path).await;
                let _ = vfs.list(&path).await;
                if let Ok(entries) = vfs.list(&path).await {
                    for entry in entries {
                        prop_assert!(entry.path.starts_with(&path));
                    }
                }
                let _ = vfs.delete(&path).await;
            }
            Ok(())
        })?;
        prop_assert_eq!(fs::read_dir(&sandbox.outside).unwrap().count(), 0);
        let mut siblings: Vec<_> =
            fs::read_dir(&sandbox.base).unwrap().map(|e| e.unwrap().file_name()).collect();
        siblings.sort();
        prop_assert_eq!(siblings, vec!["outside", "root"]);
    }
}

/// `DiskVfs::lock` across processes: waiters are served in arrival order. The test binary
/// re-runs itself as the waiting processes (`disk::fair_lock::child`, selected by its path in
/// the binary, does nothing unless `KAOS_VFS_LOCK_CHILD` is set).
mod fair_lock {
    use std::io::Write as _;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    use super::*;

    const LOCK: &str = ".locks/sessions/shared.lock";

    fn spawn(root: &Path, id: usize, rounds: usize, hold_ms: u64) -> Child {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "disk::fair_lock::child", "--nocapture", "--test-threads", "1"])
            .env("KAOS_VFS_LOCK_CHILD", id.to_string())
            .env("KAOS_VFS_LOCK_ROOT", root)
            .env("KAOS_VFS_LOCK_ROUNDS", rounds.to_string())
            .env("KAOS_VFS_LOCK_HOLD_MS", hold_ms.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// One waiting process: `rounds` times, takes the lock and appends `{id} {waited µs}` to
    /// `order` (under the lock, so the file's order is the order of acquisition).
    #[test]
    fn child() {
        let Ok(id) = std::env::var("KAOS_VFS_LOCK_CHILD") else { return };
        let root = PathBuf::from(std::env::var("KAOS_VFS_LOCK_ROOT").unwrap());
        let rounds: usize = std::env::var("KAOS_VFS_LOCK_ROUNDS").unwrap().parse().unwrap();
        let hold: u64 = std::env::var("KAOS_VFS_LOCK_HOLD_MS").unwrap().parse().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let vfs = DiskVfs::new(root.join("root")).unwrap().with_lock_timeout(Duration::from_secs(120));
            for _ in 0..rounds {
                let start = Instant::now();
                let held = vfs.lock(&p(LOCK)).await.unwrap();
                let waited = start.elapsed().as_micros();
                let mut order =
                    fs::OpenOptions::new().append(true).create(true).open(root.join("order")).unwrap();
                writeln!(order, "{id} {waited}").unwrap();
                drop(order);
                tokio::time::sleep(Duration::from_millis(hold)).await;
                drop(held);
            }
        });
    }

    /// The tickets in the queue (numbered entries; not its `mutex` and `waiters` files).
    fn queue_len(root: &Path) -> usize {
        fs::read_dir(root.join("root/.locks/sessions/.shared.lock.kaos-tmp-queue"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_str().is_some_and(|n| n.parse::<u64>().is_ok()))
                    .count()
            })
            .unwrap_or(0)
    }

    /// While one process holds the lock, eight more arrive one after another; they get it in
    /// the order they arrived.
    #[test]
    fn waiters_are_served_in_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let vfs = DiskVfs::new(dir.path().join("root")).unwrap();
        let held = rt.block_on(vfs.lock(&p(LOCK))).unwrap();
        let mut children = Vec::new();
        for id in 0..8 {
            children.push(spawn(dir.path(), id, 1, 0));
            // Arrived: its ticket is in the queue (the holder took the free lock on the fast
            // path, without a ticket).
            let deadline = Instant::now() + Duration::from_secs(2);
            while queue_len(dir.path()) < id + 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        drop(held);
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
        let order: Vec<usize> = fs::read_to_string(dir.path().join("order"))
            .unwrap()
            .lines()
            .map(|l| l.split(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(order, (0..8).collect::<Vec<_>>());
        assert_eq!(queue_len(dir.path()), 0, "queue entries were left behind");
    }

    /// Sixteen processes taking the lock in turn: between two acquisitions of one writer, no
    /// other writer acquires it more than twice (once from ahead of it in the queue, once more
    /// only if it queued again before this writer did). Prints the longest and median waits.
    ///
    /// A writer arrives when it takes its ticket, not when it calls `lock`: one descheduled
    /// between letting the lock go and taking its next ticket has not queued yet, and a writer
    /// that queues meanwhile is rightly served first. On a loaded machine (the whole suite in
    /// parallel on two cores) that happens once or twice in the 192 acquisitions, so up to 1 in
    /// 50 is allowed; a fast path that let later arrivals in ahead of queued waiters overtook
    /// 30 times under load.
    #[test]
    fn sixteen_writers_are_not_overtaken() {
        const WRITERS: usize = 16;
        const ROUNDS: usize = 12;
        let dir = tempfile::tempdir().unwrap();
        let children: Vec<Child> = (0..WRITERS).map(|id| spawn(dir.path(), id, ROUNDS, 2)).collect();
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
        let lines: Vec<(usize, u64)> = fs::read_to_string(dir.path().join("order"))
            .unwrap()
            .lines()
            .map(|l| {
                let (id, waited) = l.split_once(' ').unwrap();
                (id.parse().unwrap(), waited.parse().unwrap())
            })
            .collect();
        assert_eq!(lines.len(), WRITERS * ROUNDS);
        let mut overtaken = 0;
        let mut worst = 0;
        for w in 0..WRITERS {
            let mine: Vec<usize> = (0..lines.len()).filter(|i| lines[*i].0 == w).collect();
            for pair in mine.windows(2) {
                let mut counts = [0usize; WRITERS];
                for (other, _) in &lines[pair[0] + 1..pair[1]] {
                    counts[*other] += 1;
                }
                let most = counts.iter().copied().max().unwrap_or(0);
                worst = worst.max(most);
                overtaken += counts.iter().map(|c| c.saturating_sub(2)).sum::<usize>();
            }
        }
        let mut waits: Vec<u64> = lines.iter().map(|(_, w)| *w).collect();
        waits.sort_unstable();
        eprintln!(
            "16 writers × {ROUNDS} rounds (2 ms held): longest wait {:.1} ms, median {:.1} ms; \
             most acquisitions by one writer between two of another's: {worst}; overtakes: {overtaken}",
            *waits.last().unwrap() as f64 / 1000.0,
            waits[waits.len() / 2] as f64 / 1000.0,
        );
        assert!(overtaken <= WRITERS * ROUNDS / 50, "later arrivals overtook waiters {overtaken} times");
    }
}

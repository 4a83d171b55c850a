//! A disk VFS's IO threads, counted in a process of its own (the count is the process's: other
//! tests' VFSs would add theirs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;

use bytes::Bytes;
use kaos_vfs::{DiskVfs, Vfs, VfsPath};

fn p(s: &str) -> VfsPath {
    VfsPath::new(s).unwrap()
}

/// Threads of this process named as the disk VFS names its IO threads (Linux: `/proc`).
#[cfg(target_os = "linux")]
fn io_threads_running() -> usize {
    fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "kaos-vfs-io")
        .count()
}

/// However many operations are in flight, a disk VFS runs them on at most its IO threads
/// (so a long-running process does not grow a thread, with its stack and malloc arena, per
/// operation in flight), every one runs, and appends made by many at once all land.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_operations_in_flight_run_on_at_most_the_io_threads() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = DiskVfs::new(dir.path()).unwrap().with_io_threads(3);
    assert_eq!(vfs.io_threads(), 3);
    assert_eq!(DiskVfs::new(dir.path()).unwrap().with_io_threads(0).io_threads(), 1);
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (most, watching) = (most.clone(), watching.clone());
        std::thread::spawn(move || {
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                most.fetch_max(io_threads_running(), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let vfs = vfs.clone();
            tokio::spawn(async move {
                let path = p(&format!("s{}/log", i % 40));
                vfs.append(&path, Bytes::from(format!("{i}\n"))).await.unwrap();
                vfs.read(&path).await.unwrap();
                vfs.stat(&path).await.unwrap();
                vfs.exists(&p(&format!("s{i}/none"))).await.unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert!(!task.await.unwrap());
    }
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    let most = most.load(std::sync::atomic::Ordering::Relaxed);
    assert!((1..=3).contains(&most), "{most} IO threads at once");
    let mut lines = 0;
    for s in 0..40 {
        lines += vfs.read(&p(&format!("s{s}/log"))).await.unwrap().iter().filter(|b| **b == b'\n').count();
    }
    assert_eq!(lines, 400);
}

//! A stray temp file left under the exact name a write is about to use (a crashed process whose
//! pid was recycled) does not make the write fail.
//!
//! DiskVfs names a temp file `.{name}.kaos-tmp-{pid}-{counter}` with one counter per process,
//! which the other tests of this binary move on. So the check runs in a child process of its
//! own (this binary again, selecting `disk_temp_names::child` by its path): there the counter
//! starts at 0 and the next names are known.

use std::fs;
use std::process::Command;

use kaos_vfs::{DiskVfs, Vfs, VfsPath};

/// Set in the child's environment; without it [`child`] does nothing.
const CHILD: &str = "KAOS_VFS_TEMP_NAMES_CHILD";
/// What the child prints once its checks passed (a filter that selects no test prints nothing).
const PASSED: &str = "temp-names-child: passed";

#[test]
fn stray_temp_file_under_the_next_name_does_not_block_writes() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "disk_temp_names::child", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(PASSED), "the child ran no check:\n{stdout}\n{stderr}");
}

/// The check itself, in a fresh process (the first DiskVfs write of the process is its own).
#[test]
fn child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let vfs = DiskVfs::new(dir.path()).unwrap();
        let path = VfsPath::new("a.txt").unwrap();
        vfs.write(&path, "1".into()).await.unwrap(); // uses counter 0

        let pid = std::process::id();
        for counter in 1..=8 {
            fs::write(vfs.root().join(format!(".a.txt.kaos-tmp-{pid}-{counter}")), "stray").unwrap();
        }
        vfs.write(&path, "2".into()).await.unwrap();
        assert_eq!(vfs.read(&path).await.unwrap(), "2");
        // The strays are left alone (they are not ours to judge) and stay invisible.
        assert_eq!(fs::read_dir(vfs.root()).unwrap().count(), 9);
        assert_eq!(vfs.list(&VfsPath::root()).await.unwrap().len(), 1);
    });
    println!("{PASSED}");
}

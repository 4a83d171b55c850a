//! A stray temp file left under the exact name a write is about to use (a crashed process whose
//! pid was recycled) does not make the write fail. Alone in its binary so the temp counter is
//! predictable: it starts at 0 in every process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;

use kaos_vfs::{DiskVfs, Vfs, VfsPath};

#[tokio::test]
async fn stray_temp_file_under_the_next_name_does_not_block_writes() {
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
}

//! ScopedVfs isolation: nothing outside the prefix is reachable, visible or named in errors.

use std::sync::Arc;

use kaos_vfs::{DiskVfs, EntryKind, MemoryVfs, ScopedVfs, Vfs, VfsEntry, VfsError, VfsPath};

fn p(s: &str) -> VfsPath {
    VfsPath::new(s).unwrap()
}

async fn isolation(inner: Arc<dyn Vfs>) {
    for (path, body) in [
        ("tenants/acme/s1/log.jsonl", "mine\n"),
        ("tenants/acme-corp/secret.txt", "sibling with a shared string prefix"),
        ("tenants/other/secret.txt", "other tenant"),
        ("tenants/acme.txt", "file next to the scope"),
        ("secret.txt", "top level"),
    ] {
        inner.write(&p(path), body.into()).await.unwrap();
    }
    let acme = ScopedVfs::new(Arc::clone(&inner), p("tenants/acme"));
    assert_eq!(acme.prefix(), &p("tenants/acme"));

    // Paths resolve below the prefix and listings are relative to it.
    assert_eq!(acme.read(&p("s1/log.jsonl")).await.unwrap(), "mine\n");
    assert_eq!(acme.list(&VfsPath::root()).await.unwrap(), vec![VfsEntry::new(p("s1"), EntryKind::Dir, 0)]);
    assert_eq!(
        acme.list(&p("s1")).await.unwrap(),
        vec![VfsEntry::new(p("s1/log.jsonl"), EntryKind::File, 5)]
    );

    // Every outside file is out of reach, with the same error as a missing one.
    for outside in [
        "secret.txt",
        "other/secret.txt",
        "tenants/other/secret.txt",
        "tenants/acme/s1/log.jsonl",
        "acme-corp/secret.txt",
    ] {
        match acme.read(&p(outside)).await {
            Err(VfsError::NotFound(message)) => assert_eq!(message, outside),
            other => panic!("{outside}: {other:?}"),
        }
        assert!(!acme.exists(&p(outside)).await.unwrap());
    }
    // `..` cannot even be expressed.
    assert!(VfsPath::new("../other/secret.txt").is_err());
    assert!(p("s1").join("../../other").is_err());

    // Errors name the view's paths, never the prefix.
    acme.write(&p("f.txt"), "x".into()).await.unwrap();
    let err = acme.write(&p("f.txt/below"), "x".into()).await.unwrap_err();
    assert!(matches!(&err, VfsError::WrongKind { path, .. } if path == &p("f.txt")), "{err:?}");
    for err in [
        acme.read(&p("nope")).await.unwrap_err(),
        acme.read(&p("s1")).await.unwrap_err(),
        acme.stat(&p("nope")).await.unwrap_err(),
        err,
    ] {
        assert!(!err.to_string().contains("tenants"), "{err}");
    }

    // Deleting the scope's root empties the scope and nothing else.
    acme.delete(&VfsPath::root()).await.unwrap();
    assert_eq!(acme.list(&VfsPath::root()).await.unwrap(), vec![]);
    assert!(acme.exists(&VfsPath::root()).await.unwrap());
    acme.delete(&VfsPath::root()).await.unwrap();
    for survivor in
        ["tenants/acme-corp/secret.txt", "tenants/other/secret.txt", "tenants/acme.txt", "secret.txt"]
    {
        assert!(inner.exists(&p(survivor)).await.unwrap(), "{survivor}");
    }
}

async fn nested_and_empty_scopes(inner: Arc<dyn Vfs>) {
    // A scope with nothing in it yet still has a root.
    let empty = ScopedVfs::new(Arc::clone(&inner), p("nobody/here"));
    assert!(empty.exists(&VfsPath::root()).await.unwrap());
    assert_eq!(empty.stat(&VfsPath::root()).await.unwrap().kind, EntryKind::Dir);
    assert_eq!(empty.list(&VfsPath::root()).await.unwrap(), vec![]);

    // Scopes nest, and the root prefix is the whole inner VFS.
    let tenant: Arc<dyn Vfs> = Arc::new(ScopedVfs::new(Arc::clone(&inner), p("t1")));
    let session = ScopedVfs::new(Arc::clone(&tenant), p("sessions/s1"));
    session.append(&p("log"), "a\n".into()).await.unwrap();
    assert_eq!(inner.read(&p("t1/sessions/s1/log")).await.unwrap(), "a\n");
    assert_eq!(
        tenant.list(&p("sessions")).await.unwrap(),
        vec![VfsEntry::new(p("sessions/s1"), EntryKind::Dir, 0)]
    );
    let whole = ScopedVfs::new(Arc::clone(&inner), VfsPath::root());
    assert_eq!(whole.read(&p("t1/sessions/s1/log")).await.unwrap(), "a\n");
    match session.read(&p("missing")).await {
        Err(VfsError::NotFound(message)) => assert_eq!(message, "missing"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn memory_isolation() {
    isolation(Arc::new(MemoryVfs::new())).await;
    nested_and_empty_scopes(Arc::new(MemoryVfs::new())).await;
}

#[tokio::test]
async fn disk_isolation() {
    let dir = tempfile::tempdir().unwrap();
    isolation(Arc::new(DiskVfs::new(dir.path().join("a")).unwrap())).await;
    nested_and_empty_scopes(Arc::new(DiskVfs::new(dir.path().join("b")).unwrap())).await;
}

/// A scope says of its lock what the VFS it wraps says: the memory VFS's lock is an in-process
/// one (a session store puts none of its own in front of it), the disk VFS's is not.
#[tokio::test]
async fn a_scope_forwards_whether_its_lock_is_in_process_first() {
    let dir = tempfile::tempdir().unwrap();
    let memory: Arc<dyn Vfs> = Arc::new(MemoryVfs::new());
    let disk: Arc<dyn Vfs> = Arc::new(DiskVfs::new(dir.path()).unwrap());
    for (inner, expected) in [(memory, true), (disk, false)] {
        assert_eq!(inner.locks_in_process_first(), expected, "{inner:?}");
        let scoped = ScopedVfs::new(inner.clone(), p("sessions/s/files"));
        assert_eq!(scoped.locks_in_process_first(), expected, "{inner:?}");
    }
}

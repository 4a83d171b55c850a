//! The public conformance suite (`kaos_vfs::conformance`, feature `testing`), run against
//! every backend: MemoryVfs, DiskVfs (in a tempdir) and ScopedVfs over each of them (with
//! neighbours outside the scope that must stay invisible), and with the `object-store` feature
//! ObjectStoreVfs over object_store's InMemory store and over a real S3-compatible server on
//! loopback (tests/support/server.py, installed by the workspace's tests/s3/install.sh:
//! without it these tests fail, they do not skip); and the lease suite
//! (`conformance::run_leases`) against ObjectStoreVfs on both stores.

use std::sync::Arc;

use bytes::Bytes;
use kaos_vfs::conformance::run;
use kaos_vfs::{DiskVfs, MemoryVfs, ScopedVfs, Vfs, VfsError, VfsPath};

fn p(s: &str) -> VfsPath {
    VfsPath::new(s).unwrap()
}

/// Puts neighbours next to and above the scope, so a leak would show up in every behaviour.
async fn scoped_over(inner: Arc<dyn Vfs>) -> ScopedVfs {
    for neighbour in ["tenants/other/a.txt", "tenants/acme-2/a.txt", "tenants/acme.txt", "top.txt"] {
        inner.write(&p(neighbour), Bytes::from_static(b"neighbour")).await.unwrap();
    }
    ScopedVfs::new(inner, p("tenants/acme"))
}

/// A fresh DiskVfs per call, each in its own directory under `root`.
fn disk_in(root: &tempfile::TempDir) -> impl FnMut() -> DiskVfs + '_ {
    let mut made = 0;
    move || {
        made += 1;
        DiskVfs::new(root.path().join(made.to_string())).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory() {
    run(|| async { MemoryVfs::new() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disk() {
    let root = tempfile::tempdir().unwrap();
    let mut fresh = disk_in(&root);
    run(|| std::future::ready(fresh())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scoped_memory() {
    run(|| scoped_over(Arc::new(MemoryVfs::new()))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scoped_disk() {
    let root = tempfile::tempdir().unwrap();
    let mut fresh = disk_in(&root);
    run(|| scoped_over(Arc::new(fresh()))).await;
}

#[cfg(feature = "object-store")]
use crate::s3_server;

#[cfg(feature = "object-store")]
fn object_store_memory() -> kaos_vfs::ObjectStoreVfs {
    use kaos_vfs::{ObjectStoreVfs, object_store::memory::InMemory};
    ObjectStoreVfs::new(Arc::new(InMemory::new()), "some/prefix").unwrap()
}

#[cfg(feature = "object-store")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn object_store_memory_store() {
    run(|| std::future::ready(object_store_memory())).await;
}

#[cfg(feature = "object-store")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn object_store_s3() {
    use kaos_vfs::{ObjectStoreVfs, S3Config, SecretString};
    let server = s3_server::S3Server::shared();
    server.create_bucket("conformance");
    run(|| {
        let config = S3Config::new("conformance")
            .with_prefix(s3_server::unique("run"))
            .with_endpoint(&server.endpoint)
            .with_region("us-east-1")
            .with_credentials("test", SecretString::from("test"))
            .with_allow_http(true);
        std::future::ready(ObjectStoreVfs::s3(config).unwrap())
    })
    .await;
}

/// The lease TTL of the lease suite's handles: short, since the suite waits for one to expire.
#[cfg(feature = "object-store")]
const LEASE_TTL: std::time::Duration = std::time::Duration::from_millis(800);

#[cfg(feature = "object-store")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn object_store_memory_store_leases() {
    use kaos_vfs::{ObjectStoreVfs, object_store::memory::InMemory};
    let store = Arc::new(InMemory::new());
    kaos_vfs::conformance::run_leases(LEASE_TTL, |namespace| {
        let vfs = ObjectStoreVfs::new(store.clone(), namespace).unwrap();
        std::future::ready(
            vfs.with_lease_ttl(LEASE_TTL).with_lock_timeout(std::time::Duration::from_secs(30)),
        )
    })
    .await;
}

#[cfg(feature = "object-store")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn object_store_s3_leases() {
    use kaos_vfs::{ObjectStoreVfs, S3Config, SecretString};
    let server = s3_server::S3Server::shared();
    server.create_bucket("conformance");
    let run = s3_server::unique("leases");
    kaos_vfs::conformance::run_leases(LEASE_TTL, |namespace| {
        let config = S3Config::new("conformance")
            .with_prefix(format!("{run}/{namespace}"))
            .with_endpoint(&server.endpoint)
            .with_region("us-east-1")
            .with_credentials("test", SecretString::from("test"))
            .with_allow_http(true)
            .with_lease_ttl(LEASE_TTL)
            .with_lock_timeout(std::time::Duration::from_secs(30));
        std::future::ready(ObjectStoreVfs::s3(config).unwrap())
    })
    .await;
}

/// The suite fails a backend whose lock excludes only within one handle (each MemoryVfs is a
/// store of its own, so two "processes" both get the lock): it sees two handles inside at once
/// or, when the scheduler happened to run them one after another, the increments that handles
/// writing to different stores lose.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_lease_suite_fails_a_lock_that_does_not_reach_across_handles() {
    let suite =
        tokio::spawn(kaos_vfs::conformance::run_leases(std::time::Duration::from_millis(200), |_| async {
            MemoryVfs::new()
        }));
    let panic = suite.await.expect_err("the suite passed a lock that excludes within one handle only");
    let payload = panic.into_panic();
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default();
    assert!(
        message.contains("two handles held the lease at once") || message.contains("an increment was lost"),
        "the suite failed for another reason: {message}"
    );
}

#[cfg(feature = "object-store")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scoped_object_store() {
    run(|| scoped_over(Arc::new(object_store_memory()))).await;
}

#[tokio::test]
async fn a_disk_lock_held_elsewhere_times_out_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let holder = DiskVfs::new(dir.path()).unwrap();
    let other = DiskVfs::new(dir.path()).unwrap().with_lock_timeout(std::time::Duration::from_millis(20));
    let _held = holder.lock(&p("x/.lock")).await.unwrap();
    assert!(matches!(other.lock(&p("x/.lock")).await, Err(VfsError::LockTimeout { .. })));
}

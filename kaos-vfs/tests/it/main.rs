//! kaos-vfs's integration tests: every backend through the public API (the conformance suite,
//! DiskVfs's durability and hostile paths, ScopedVfs, path rules as properties, and
//! ObjectStoreVfs leases between processes on an S3-compatible server).
//!
//! One test binary for the whole crate (one link instead of one per file); each module is a
//! former `tests/<name>.rs`. `../support/` holds the S3 test server, shared by path with
//! kaos-runner's and kaos-cli's tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "testing")]
mod conformance;
mod disk;
mod disk_temp_names;
#[cfg(feature = "object-store")]
mod leases;
mod path_props;
#[cfg(feature = "object-store")]
#[path = "../support/s3_server.rs"]
mod s3_server;
mod scoped;

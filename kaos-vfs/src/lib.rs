//! The virtual filesystem (VFS) that KAOS sessions, artifacts and run states live in.
//!
//! One async trait, [`Vfs`], with interchangeable backends:
//!
//! - [`MemoryVfs`]: isolated and in-process; no disk side effects at all (tests, `Runtime::test_mode()`).
//! - [`DiskVfs`]: rooted at a directory; atomic replace (temp file, fsync, rename, fsync dir),
//!   newline-framed appends, and no path — hostile or not — ever reaches outside the root.
//! - [`ScopedVfs`]: a prefix view over another VFS, used for tenant and session isolation.
//! - `ObjectStoreVfs` (feature `object-store`): S3 or any `object_store` store, with leases
//!   for locks, so stateless processes on several machines can share sessions.
//!
//! Every path is a [`VfsPath`]: relative, `/`-separated and normalized. `..`, absolute paths,
//! NUL bytes and backslashes are rejected with a typed error before any backend sees them.
//! A missing path and a path outside the caller's scope give the same [`VfsError::NotFound`].
//!
//! This crate deliberately knows nothing about agents, sessions or tools: it stores bytes.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod conformance;
mod disk;
mod error;
mod io_pool;
mod memory;
#[cfg(feature = "object-store")]
mod objects;
mod path;
mod scoped;
mod vfs;

pub use disk::{DEFAULT_LOCK_TIMEOUT, DiskVfs, default_io_threads};
pub use error::VfsError;
pub use memory::MemoryVfs;
/// The `object_store` crate this backend is built on, so callers can build any store (such as
/// `object_store::memory::InMemory`) without depending on it themselves.
#[cfg(feature = "object-store")]
pub use object_store;
#[cfg(feature = "object-store")]
pub use objects::{DEFAULT_LEASE_TTL, DEFAULT_OBJECT_LOCK_TIMEOUT, LockWait, ObjectStoreVfs, S3Config};
pub use path::VfsPath;
pub use scoped::ScopedVfs;
/// The secret type of every KAOS crate (here: S3 credentials), from the `secrecy` crate.
#[cfg(feature = "object-store")]
pub use secrecy::{self, ExposeSecret, SecretString};
pub use vfs::{EntryKind, HeldLock, LocalLocks, Metadata, Vfs, VfsEntry, VfsLock};

/// This crate's README, compiled and run as a doctest (it ships in the package).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

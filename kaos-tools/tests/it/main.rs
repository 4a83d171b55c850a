//! kaos-tools' integration tests: the registry, typed tools, results, the built-in VFS tools.
//!
//! One test binary for the whole crate (one link of the tree instead of one per file);
//! each module is a former `tests/<name>.rs`, and `support` holds the shared helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod builtin_vfs;
mod registry;
mod result;
mod schema;
mod selector;
mod tier;
mod typed;

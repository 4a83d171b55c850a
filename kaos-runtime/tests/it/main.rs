//! kaos-runtime's integration tests: layered settings.
//!
//! One test binary for the whole crate (one link of the tree instead of one per file);
//! each module is a former `tests/<name>.rs`, and `support` holds the shared helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod settings;
mod settings_values;

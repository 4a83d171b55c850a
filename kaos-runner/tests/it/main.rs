//! kaos-runner's integration tests: the engine through the Runner facade (budgets, patterns, hooks, permissions, persistence, several processes, vendors on loopback, S3).
//!
//! One test binary for the whole crate (one link of the tree instead of one per file);
//! each module is a former `tests/<name>.rs`, and `support` holds the shared helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "a2a")]
mod a2a_delegate;
mod budgets;
mod concurrency;
mod delegation;
mod events;
mod fallback;
mod findings;
mod guardrails;
mod handoff;
mod hooks_api;
mod hooks_runner;
mod memory;
#[cfg(feature = "object-store")]
mod object_store;
mod otel;
mod permissions;
mod persistence;
mod plan;
mod processes;
mod providers;
mod research;
mod router;
mod send_sync;
mod support;
mod tools;

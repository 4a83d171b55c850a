//! kaos-providers' integration tests: every vendor client against a loopback server, retries, replay, the scripted model.
//!
//! One test binary for the whole crate (one link of the tree instead of one per file);
//! each module is a former `tests/<name>.rs`, and `support` holds the shared helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod anthropic;
mod compatible;
mod gemini;
mod openai;
mod replay;
mod resilience;
mod scripted;
mod support;

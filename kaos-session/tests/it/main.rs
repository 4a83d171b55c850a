//! kaos-session's integration tests: the session log on real backends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod log;

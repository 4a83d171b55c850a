//! kaos-runner

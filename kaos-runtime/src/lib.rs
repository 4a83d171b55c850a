//! kaos-runtime

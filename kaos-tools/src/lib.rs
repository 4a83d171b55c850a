//! kaos-tools

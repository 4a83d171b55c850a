//! kaos-providers

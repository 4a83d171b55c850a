//! kaos-agent

//! Built-in tools.
//!
//! The VFS tools work on [`ToolContext::vfs`](crate::ToolContext::vfs), the session's
//! workspace as scoped by the runner; they never see other sessions.

mod vfs;

use std::sync::Arc;

pub use vfs::{
    APPEND, AppendInput, DELETE, DeleteInput, LIST, ListInput, READ, ReadInput, VfsAppend, VfsDelete,
    VfsList, VfsRead, VfsWrite, WRITE, WriteInput,
};

use crate::{Tool, ToolError, typed};

/// The VFS tools, in this order: `kaos-vfs-read`, `kaos-vfs-write`, `kaos-vfs-append`,
/// `kaos-vfs-list`, `kaos-vfs-delete`.
///
/// ```
/// let names: Vec<String> =
///     kaos_tools::builtin::vfs_tools().iter().map(|t| t.spec().name.to_string()).collect();
/// assert_eq!(names, ["kaos-vfs-read", "kaos-vfs-write", "kaos-vfs-append", "kaos-vfs-list", "kaos-vfs-delete"]);
/// ```
pub fn vfs_tools() -> Vec<Arc<dyn Tool>> {
    let tools: [Result<Arc<dyn Tool>, ToolError>; 5] =
        [typed(VfsRead), typed(VfsWrite), typed(VfsAppend), typed(VfsList), typed(VfsDelete)];
    tools
        .into_iter()
        .filter_map(|tool| {
            // Names and schemas are fixed and covered by tests; this cannot fail in practice.
            tool.inspect_err(|err| tracing::error!(%err, "built-in tool rejected")).ok()
        })
        .collect()
}

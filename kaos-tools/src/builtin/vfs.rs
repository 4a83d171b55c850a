use async_trait::async_trait;
use bytes::Bytes;
use kaos_vfs::{EntryKind, VfsError, VfsPath};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::tier::{ceil_char_boundary, floor_char_boundary};
use crate::{ToolAnnotations, ToolContext, ToolError, ToolResult, TypedTool};

/// Name of [`VfsRead`].
pub const READ: &str = "kaos-vfs-read";
/// Name of [`VfsWrite`].
pub const WRITE: &str = "kaos-vfs-write";
/// Name of [`VfsAppend`].
pub const APPEND: &str = "kaos-vfs-append";
/// Name of [`VfsList`].
pub const LIST: &str = "kaos-vfs-list";
/// Name of [`VfsDelete`].
pub const DELETE: &str = "kaos-vfs-delete";

/// Hints shared by the VFS tools: they only touch the session's workspace.
const WORKSPACE: ToolAnnotations = ToolAnnotations::DEFAULT.with_open_world(false);

/// Arguments of `kaos-vfs-read`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadInput {
    /// Path of the file, relative to the workspace root, e.g. `notes/todo.md`.
    pub path: String,
    /// Byte offset to start reading at.
    #[serde(default)]
    pub offset: u64,
    /// Maximum number of bytes to return; omit to read to the end of the file.
    pub length: Option<u64>,
}

/// `kaos-vfs-read`: reads a UTF-8 text file, whole or a byte range of it.
///
/// Ranges are cut on character boundaries, and a partial read ends with a line giving the
/// range shown and the offset to continue from. Files that are not valid UTF-8 are refused
/// with an error rather than rendered lossily, so the model never works from mangled bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct VfsRead;

#[async_trait]
impl TypedTool for VfsRead {
    type Input = ReadInput;

    fn name(&self) -> &str {
        READ
    }

    fn description(&self) -> &str {
        "Read a text file from the workspace. Use offset and length (in bytes) to read a large file in parts."
    }

    fn annotations(&self) -> ToolAnnotations {
        WORKSPACE.with_read_only(true).with_idempotent(true)
    }

    async fn run(&self, input: ReadInput, ctx: ToolContext) -> Result<ToolResult, ToolError> {
        let path = file_path(READ, &input.path)?;
        let bytes = ctx.vfs().read(&path).await.map_err(|err| vfs_failure(READ, &path, err))?;
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return Err(ToolError::failed(format!(
                "{path} is not UTF-8 text ({} bytes); this tool reads text files only",
                bytes.len()
            )));
        };
        let len = text.len();
        let start = floor_char_boundary(text, usize::try_from(input.offset).unwrap_or(usize::MAX));
        let mut end = match input.length {
            Some(length) => {
                floor_char_boundary(text, start.saturating_add(usize::try_from(length).unwrap_or(usize::MAX)))
            }
            None => len,
        };
        if end <= start && start < len && input.length != Some(0) {
            // A length shorter than one character still makes progress.
            end = ceil_char_boundary(text, start + 1);
        }
        let slice = text.get(start..end).unwrap_or_default();
        if start == 0 && end == len {
            return Ok(ToolResult::text(if text.is_empty() { "(empty file)" } else { text }));
        }
        let position = if end < len {
            format!("[bytes {start}..{end} of {len}; continue with offset {end}]")
        } else {
            format!("[bytes {start}..{end} of {len}; end of file]")
        };
        Ok(ToolResult::text(format!("{slice}\n{position}")))
    }
}

/// Arguments of `kaos-vfs-write` and `kaos-vfs-append`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteInput {
    /// Path of the file, relative to the workspace root, e.g. `notes/todo.md`. Missing
    /// directories are created.
    pub path: String,
    /// The text to write.
    pub content: String,
}

/// `kaos-vfs-write`: creates or replaces a file atomically.
#[derive(Debug, Clone, Copy, Default)]
pub struct VfsWrite;

#[async_trait]
impl TypedTool for VfsWrite {
    type Input = WriteInput;

    fn name(&self) -> &str {
        WRITE
    }

    fn description(&self) -> &str {
        "Create or overwrite a text file in the workspace with the given content."
    }

    fn annotations(&self) -> ToolAnnotations {
        WORKSPACE.with_destructive(true).with_idempotent(true)
    }

    async fn run(&self, input: WriteInput, ctx: ToolContext) -> Result<ToolResult, ToolError> {
        let path = file_path(WRITE, &input.path)?;
        let len = input.content.len();
        ctx.vfs()
            .write(&path, Bytes::from(input.content.into_bytes()))
            .await
            .map_err(|err| vfs_failure(WRITE, &path, err))?;
        Ok(ToolResult::text(format!("wrote {len} bytes to {path}")))
    }
}

/// Arguments of `kaos-vfs-append` (the same as `kaos-vfs-write`).
pub type AppendInput = WriteInput;

/// `kaos-vfs-append`: adds text at the end of a file, creating it when missing.
#[derive(Debug, Clone, Copy, Default)]
pub struct VfsAppend;

#[async_trait]
impl TypedTool for VfsAppend {
    type Input = AppendInput;

    fn name(&self) -> &str {
        APPEND
    }

    fn description(&self) -> &str {
        "Append text to the end of a file in the workspace, creating the file if it does not exist. \
         No newline is added."
    }

    fn annotations(&self) -> ToolAnnotations {
        WORKSPACE
    }

    async fn run(&self, input: AppendInput, ctx: ToolContext) -> Result<ToolResult, ToolError> {
        let path = file_path(APPEND, &input.path)?;
        let len = input.content.len();
        ctx.vfs()
            .append(&path, Bytes::from(input.content.into_bytes()))
            .await
            .map_err(|err| vfs_failure(APPEND, &path, err))?;
        Ok(ToolResult::text(format!("appended {len} bytes to {path}")))
    }
}

/// Arguments of `kaos-vfs-list`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListInput {
    /// Directory to list, relative to the workspace root; empty for the root.
    #[serde(default)]
    pub path: String,
}

/// `kaos-vfs-list`: the direct children of a directory, one path per line, directories with a
/// trailing `/`. Paths are relative to the workspace root, so they can be passed to the other
/// VFS tools as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct VfsList;

#[async_trait]
impl TypedTool for VfsList {
    type Input = ListInput;

    fn name(&self) -> &str {
        LIST
    }

    fn description(&self) -> &str {
        "List the files and directories directly inside a workspace directory (the root by default). \
         Directories end with '/'."
    }

    fn annotations(&self) -> ToolAnnotations {
        WORKSPACE.with_read_only(true).with_idempotent(true)
    }

    async fn run(&self, input: ListInput, ctx: ToolContext) -> Result<ToolResult, ToolError> {
        let path = VfsPath::new(&input.path).map_err(|err| path_error(LIST, err))?;
        let entries = ctx.vfs().list(&path).await.map_err(|err| vfs_failure(LIST, &path, err))?;
        if entries.is_empty() {
            return Ok(ToolResult::text(format!("{path} is empty")));
        }
        let lines: Vec<String> = entries
            .iter()
            .map(|entry| match entry.kind {
                EntryKind::Dir => format!("{}/", entry.path.as_str()),
                _ => entry.path.as_str().to_owned(),
            })
            .collect();
        Ok(ToolResult::text(lines.join("\n")))
    }
}

/// Arguments of `kaos-vfs-delete`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteInput {
    /// Path of the file or directory to delete, relative to the workspace root. A directory is
    /// deleted with everything in it.
    pub path: String,
}

/// `kaos-vfs-delete`: deletes a file, or a directory with everything below it. Refuses the
/// workspace root.
#[derive(Debug, Clone, Copy, Default)]
pub struct VfsDelete;

#[async_trait]
impl TypedTool for VfsDelete {
    type Input = DeleteInput;

    fn name(&self) -> &str {
        DELETE
    }

    fn description(&self) -> &str {
        "Delete a file, or a directory with everything in it, from the workspace."
    }

    fn annotations(&self) -> ToolAnnotations {
        WORKSPACE.with_destructive(true).with_idempotent(true)
    }

    async fn run(&self, input: DeleteInput, ctx: ToolContext) -> Result<ToolResult, ToolError> {
        let path = file_path(DELETE, &input.path)?;
        ctx.vfs().delete(&path).await.map_err(|err| vfs_failure(DELETE, &path, err))?;
        Ok(ToolResult::text(format!("deleted {path}")))
    }
}

/// `input` as a path naming something below the root.
fn file_path(tool: &str, input: &str) -> Result<VfsPath, ToolError> {
    let path = VfsPath::new(input).map_err(|err| path_error(tool, err))?;
    if path.is_root() {
        return Err(ToolError::invalid_arguments(
            tool,
            "`path` must name a file below the workspace root, e.g. `notes/todo.md`",
        ));
    }
    Ok(path)
}

fn path_error(tool: &str, err: VfsError) -> ToolError {
    ToolError::invalid_arguments(
        tool,
        format!("{err}; paths are relative to the workspace root, like `notes/todo.md`"),
    )
}

/// A VFS failure, told in terms of the path the model used; the backend's own message (which
/// may name a scoped or on-disk path) goes to the operator detail.
fn vfs_failure(tool: &str, path: &VfsPath, err: VfsError) -> ToolError {
    match &err {
        VfsError::InvalidPath { .. } => path_error(tool, err),
        VfsError::NotFound(_) => ToolError::failed_with_detail(format!("not found: {path}"), err.to_string()),
        VfsError::WrongKind { expected, found, .. } => {
            ToolError::failed_with_detail(format!("{path} is a {found}, not a {expected}"), err.to_string())
        }
        _ => ToolError::failed_with_detail(format!("storage error at {path}"), chain(&err)),
    }
}

/// An error and its causes, joined by ": " (error types do not repeat their source).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text = format!("{text}: {error}");
        cause = error.source();
    }
    text
}

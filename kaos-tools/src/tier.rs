use bytes::Bytes;
use kaos_vfs::{Vfs, VfsError, VfsPath};

use crate::{Content, ToolError, ToolResult};

/// Results whose model text is shorter than this many bytes (16 KiB) go to the model as they are.
pub const INLINE_LIMIT: usize = 16 * 1024;

/// Results shorter than this many bytes (256 KiB) but not inline go as a head/tail summary plus
/// an artifact link; longer ones as the link alone.
pub const SUMMARY_LIMIT: usize = 256 * 1024;

/// The VFS directory artifacts are stored in.
pub const ARTIFACTS_DIR: &str = "artifacts";

/// The URI prefix of artifact links: `kaos://artifacts/{id}`.
pub const ARTIFACT_URI_PREFIX: &str = "kaos://artifacts/";

/// Bytes of the start of the output kept in a summary.
const SUMMARY_HEAD: usize = 8 * 1024;
/// Bytes of the end of the output kept in a summary.
const SUMMARY_TAIL: usize = 4 * 1024;

/// How a result of a given size reaches the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tier {
    /// As it is (under [`INLINE_LIMIT`]).
    Inline,
    /// Head and tail plus an artifact link (under [`SUMMARY_LIMIT`]).
    Summary,
    /// An artifact link only.
    LinkOnly,
}

impl Tier {
    /// The tier for model text of `len` bytes.
    ///
    /// ```
    /// use kaos_tools::{Tier, INLINE_LIMIT, SUMMARY_LIMIT};
    /// assert_eq!(Tier::for_len(INLINE_LIMIT - 1), Tier::Inline);
    /// assert_eq!(Tier::for_len(INLINE_LIMIT), Tier::Summary);
    /// assert_eq!(Tier::for_len(SUMMARY_LIMIT), Tier::LinkOnly);
    /// ```
    pub fn for_len(len: usize) -> Self {
        if len < INLINE_LIMIT {
            Tier::Inline
        } else if len < SUMMARY_LIMIT {
            Tier::Summary
        } else {
            Tier::LinkOnly
        }
    }
}

/// Where the artifact `id` is stored: `artifacts/{id}`.
///
/// Errors with [`VfsError::InvalidPath`] unless `id` is one non-empty path segment.
pub fn artifact_path(id: &str) -> Result<VfsPath, ToolError> {
    let segment = VfsPath::new(id)?;
    if segment.as_str() != id || id.is_empty() || id.contains('/') {
        return Err(VfsError::InvalidPath {
            path: id.to_owned(),
            reason: "an artifact id must be one non-empty path segment",
        }
        .into());
    }
    Ok(VfsPath::new(ARTIFACTS_DIR)?.join_path(&segment))
}

/// The link to the artifact `id`: `kaos://artifacts/{id}`.
pub fn artifact_uri(id: &str) -> String {
    format!("{ARTIFACT_URI_PREFIX}{id}")
}

/// Applies the size tiers to `result`, measured on its [model text](ToolResult::to_model_text)
/// (without the `Error: ` prefix, which the tiered result gets again).
///
/// - under [`INLINE_LIMIT`]: `result` unchanged, nothing stored;
/// - under [`SUMMARY_LIMIT`]: the full text is written to `artifacts/{artifact_id}` in `vfs`
///   and the result becomes the first 8 KiB and last 4 KiB (cut on character boundaries), a
///   note on how to read the rest, and a [`Content::ResourceLink`] to
///   `kaos://artifacts/{artifact_id}`;
/// - otherwise: the text is stored the same way and the result is the note and the link.
///
/// A tiered result keeps `is_error` and drops `structured_content` (it is what was too large).
/// Pass the session's scoped VFS so the model can read the artifact back with `kaos-vfs-read`
/// (which takes `offset` and `length`). Errors when `artifact_id` is not one path segment or
/// the write fails.
pub async fn tier_result(
    result: ToolResult,
    vfs: &dyn Vfs,
    artifact_id: &str,
) -> Result<ToolResult, ToolError> {
    let tier = result.tier();
    if tier == Tier::Inline {
        return Ok(result);
    }
    let text = result.body_text();
    let path = artifact_path(artifact_id)?;
    let total = text.len();
    let read_hint = format!(
        "The full output ({total} bytes) is stored at {path}; read it in parts with kaos-vfs-read \
         (path \"{path}\", offset, length)."
    );
    let summary = match tier {
        Tier::Summary => {
            let head_end = floor_char_boundary(&text, SUMMARY_HEAD);
            let tail_start = ceil_char_boundary(&text, total.saturating_sub(SUMMARY_TAIL).max(head_end));
            let omitted = tail_start - head_end;
            format!(
                "{}\n[... {omitted} bytes omitted ...]\n{}\n[Output truncated: showing the first {head_end} and \
                 last {} bytes. {read_hint}]",
                &text[..head_end],
                &text[tail_start..],
                total - tail_start,
            )
        }
        _ => format!("[Output too large to show ({total} bytes). {read_hint}]"),
    };
    vfs.write(&path, Bytes::from(text.into_bytes())).await?;
    let link = Content::resource_link(
        artifact_uri(artifact_id),
        format!("artifact {artifact_id}"),
        Some("text/plain".to_owned()),
    );
    Ok(ToolResult {
        content: vec![Content::text(summary), link],
        structured_content: None,
        is_error: result.is_error,
    })
}

/// The largest character boundary of `s` at or below `index`.
pub(crate) fn floor_char_boundary(s: &str, index: usize) -> usize {
    let mut i = index.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest character boundary of `s` at or above `index`.
pub(crate) fn ceil_char_boundary(s: &str, index: usize) -> usize {
    let mut i = index.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

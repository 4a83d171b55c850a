//! Typed tools for KAOS agents.
//!
//! A [`Tool`] has a validated [`ToolName`], a description, a JSON Schema for its input and
//! MCP-style [`ToolAnnotations`], all in its [`ToolSpec`]. Most tools are written against a Rust
//! input type, as a [`TypedTool`] or with [`tool_fn`]: the schema is derived with `schemars`
//! (field docs, enums and defaults kept) and arguments are parsed before the tool runs, bad ones
//! becoming [`ToolError::InvalidArguments`] the model can act on.
//!
//! A [`ToolRegistry`] holds tools by name in registration order, selects them by glob
//! ([`ToolSelector`]), searches them by keyword and invokes them safely: every call runs
//! under a time limit and a panicking tool becomes [`ToolError::Panicked`], never a crashed
//! turn ([`invoke_tool`]). Results have the MCP shape ([`ToolResult`], [`Content`]); large ones
//! are tiered into an inline part and a VFS-stored artifact by [`tier_result`]. Errors are split
//! into what the model sees ([`ToolError::model_message`]) and what the operator sees
//! (`Display`). [`builtin`] has the VFS tools (`kaos-vfs-read`, …).
//!
//! This crate deliberately does not decide *whether* a call may run (permissions,
//! confirmation, budgets and breakers belong to the runner; annotations only inform them),
//! does not talk to models, and keeps no session state: tools get the session's scoped VFS
//! through their [`ToolContext`].
//!
//! With the `mcp` feature, [`mcp_client`] mounts the tools of external MCP servers (stdio or
//! streamable HTTP) so they appear in a registry like any other tool.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod builtin;
mod error;
#[cfg(feature = "mcp")]
pub mod mcp_client;
mod name;
mod registry;
mod result;
mod selector;
mod tier;
mod tool;
mod typed;

pub use error::ToolError;
pub use name::{MAX_TOOL_NAME_LEN, ToolName};
pub use registry::{DEFAULT_TOOL_TIMEOUT, ToolRegistry, invoke_tool};
pub use result::{Content, ToolResult};
pub use selector::ToolSelector;
pub use tier::{
    ARTIFACT_URI_PREFIX, ARTIFACTS_DIR, INLINE_LIMIT, SUMMARY_LIMIT, Tier, artifact_path, artifact_uri,
    tier_result,
};
pub use tool::{Tool, ToolAnnotations, ToolContext, ToolSpec};
pub use typed::{
    FnTool, NoInput, ToolFnBuilder, Typed, TypedTool, input_schema_for, parse_arguments, tool_fn, typed,
};

/// Re-exported so tools can be written against the same version this crate uses.
pub use async_trait::async_trait;
/// Re-exported so input types can derive `JsonSchema` with the version this crate uses.
pub use schemars;

/// This crate's README, compiled and run as a doctest (it ships in the package).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

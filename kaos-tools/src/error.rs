use std::time::Duration;

use kaos_vfs::VfsError;

/// Everything that can go wrong defining, selecting or calling a tool.
///
/// Two audiences read these errors. [`Display`](std::fmt::Display) is for the operator and may
/// include internal detail; [`model_message`](ToolError::model_message) is what the model may see
/// and never carries operator-only detail. [`is_call_error`](ToolError::is_call_error) tells a
/// failed call (send it back to the model with [`into_result`](ToolError::into_result)) from a
/// setup mistake (bad name, duplicate, bad glob, bad schema).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// A tool name breaks the naming rules (see [`ToolName`](crate::ToolName)).
    #[error("invalid tool name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name, as given.
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// A tool with this name is already registered.
    #[error("a tool named `{0}` is already registered")]
    Duplicate(String),

    /// No tool with this name is registered.
    #[error("no tool named `{0}`")]
    NotFound(String),

    /// The arguments did not match the tool's input schema.
    #[error("invalid arguments for tool `{tool}`: {message}")]
    InvalidArguments {
        /// The tool that was called.
        tool: String,
        /// What is wrong, phrased so the model can fix its call (includes the serde error).
        message: String,
    },

    /// A typed tool's input type does not produce a usable object schema.
    #[error("tool `{tool}` has an unusable input schema: {message}")]
    InvalidSchema {
        /// The tool being defined.
        tool: String,
        /// What is wrong with the schema.
        message: String,
    },

    /// The tool did not finish within its time limit; its future was dropped.
    #[error("tool `{tool}` timed out after {}", format_duration(*.after))]
    Timeout {
        /// The tool that was called.
        tool: String,
        /// The limit that was exceeded.
        after: Duration,
    },

    /// The tool panicked; the panic was caught and did not reach the caller.
    #[error("tool `{tool}` panicked: {message}")]
    Panicked {
        /// The tool that was called.
        tool: String,
        /// The panic payload, when it was a string.
        message: String,
    },

    /// The tool ran and failed.
    #[error("{message}{}", fmt_detail(.detail.as_deref()))]
    Failed {
        /// What the model sees.
        message: String,
        /// What only the operator sees (logs, traces): internal paths, upstream errors, ….
        detail: Option<String>,
    },

    /// A tool selection glob does not compile.
    #[error("invalid tool glob {pattern:?}: {message}")]
    InvalidGlob {
        /// The rejected pattern.
        pattern: String,
        /// Why it was rejected.
        message: String,
    },

    /// A VFS operation failed.
    #[error(transparent)]
    Vfs(#[from] VfsError),
}

impl ToolError {
    /// A failure whose `message` the model may see, with no operator detail.
    pub fn failed(message: impl Into<String>) -> Self {
        ToolError::Failed { message: message.into(), detail: None }
    }

    /// A failure with a model-visible `message` and an operator-only `detail`.
    pub fn failed_with_detail(message: impl Into<String>, detail: impl Into<String>) -> Self {
        ToolError::Failed { message: message.into(), detail: Some(detail.into()) }
    }

    /// Arguments rejected by `tool`, explained by `message`.
    pub fn invalid_arguments(tool: impl Into<String>, message: impl Into<String>) -> Self {
        ToolError::InvalidArguments { tool: tool.into(), message: message.into() }
    }

    /// Whether this error is the outcome of one call (unknown tool, bad arguments, timeout,
    /// panic, failure, storage error) that should go back to the model as an error result,
    /// rather than a setup mistake (invalid name or schema, duplicate, bad glob).
    pub fn is_call_error(&self) -> bool {
        !matches!(
            self,
            ToolError::InvalidName { .. }
                | ToolError::Duplicate(_)
                | ToolError::InvalidSchema { .. }
                | ToolError::InvalidGlob { .. }
        )
    }

    /// The operator-only detail of a [`Failed`](ToolError::Failed) error, if any.
    pub fn detail(&self) -> Option<&str> {
        match self {
            ToolError::Failed { detail, .. } => detail.as_deref(),
            _ => None,
        }
    }

    /// A message that is safe to show the model: no operator detail, no storage internals.
    ///
    /// ```
    /// use kaos_tools::ToolError;
    /// let err = ToolError::failed_with_detail("upstream service unavailable", "10.0.0.7:443 refused");
    /// assert_eq!(err.model_message(), "upstream service unavailable");
    /// assert!(err.to_string().contains("10.0.0.7"));
    /// ```
    pub fn model_message(&self) -> String {
        match self {
            ToolError::Failed { message, .. } => message.clone(),
            ToolError::Vfs(err) => vfs_model_message(err),
            // The panic message may expose internals; the operator has it in the logs.
            ToolError::Panicked { tool, .. } => format!("tool `{tool}` failed with an internal error"),
            other => other.to_string(),
        }
    }

    /// This error as an `is_error` [`ToolResult`](crate::ToolResult) carrying
    /// [`model_message`](ToolError::model_message), ready to send back to the model.
    pub fn into_result(self) -> crate::ToolResult {
        crate::ToolResult::error(self.model_message())
    }
}

/// What the model may learn from a VFS error. Paths inside `NotFound`, `WrongKind` and `Io` may
/// be backend paths (with a tenant or session prefix), so they are left out.
fn vfs_model_message(err: &VfsError) -> String {
    match err {
        VfsError::NotFound(_) => "not found".to_owned(),
        // Carries only the path exactly as the caller gave it.
        VfsError::InvalidPath { .. } => err.to_string(),
        VfsError::WrongKind { expected, found, .. } => format!("the path is a {found}, not a {expected}"),
        _ => "storage error".to_owned(),
    }
}

fn fmt_detail(detail: Option<&str>) -> String {
    detail.map(|d| format!(" ({d})")).unwrap_or_default()
}

/// `1.5 s`, `250 ms`, `60 s`: short and exact enough for a message.
pub(crate) fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

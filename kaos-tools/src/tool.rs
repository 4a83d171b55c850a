use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kaos_vfs::{MemoryVfs, Vfs};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::{ToolError, ToolName, ToolResult};

/// Hints about a tool's behaviour, as in MCP. They guide permission policies and scheduling
/// (read-only tools may run in parallel); they are claims by the tool's author, not guarantees.
///
/// [`Default`] is the MCP default: not read-only, not destructive, not idempotent, open world,
/// no confirmation. Serialized with snake_case keys; MCP's camelCase `…Hint` keys are accepted
/// when deserializing, and missing keys take the default.
///
/// ```
/// use kaos_tools::ToolAnnotations;
/// let a = ToolAnnotations::read_only().with_open_world(false);
/// assert!(a.read_only && a.idempotent && !a.destructive && !a.open_world);
/// assert!(ToolAnnotations::default().open_world);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct ToolAnnotations {
    /// The tool does not modify its environment.
    #[serde(alias = "readOnlyHint")]
    pub read_only: bool,
    /// The tool may destroy or overwrite data (meaningful when not read-only).
    #[serde(alias = "destructiveHint")]
    pub destructive: bool,
    /// Calling it again with the same arguments has no further effect.
    #[serde(alias = "idempotentHint")]
    pub idempotent: bool,
    /// The tool reaches outside the session (network, other systems), not only its workspace.
    #[serde(alias = "openWorldHint")]
    pub open_world: bool,
    /// A human must confirm each call before it runs.
    pub requires_confirmation: bool,
}

impl ToolAnnotations {
    /// The MCP defaults (same as [`Default`]).
    pub const DEFAULT: Self = Self {
        read_only: false,
        destructive: false,
        idempotent: false,
        open_world: true,
        requires_confirmation: false,
    };

    /// The MCP defaults (same as [`Default`]), usable in `const` context.
    pub const fn new() -> Self {
        Self::DEFAULT
    }

    /// A read-only tool: `read_only` and `idempotent`, other hints at their defaults.
    pub const fn read_only() -> Self {
        Self { read_only: true, idempotent: true, ..Self::DEFAULT }
    }

    /// A destructive tool: `destructive`, other hints at their defaults.
    pub const fn destructive() -> Self {
        Self { destructive: true, ..Self::DEFAULT }
    }

    /// `self` with `read_only` set.
    pub const fn with_read_only(mut self, value: bool) -> Self {
        self.read_only = value;
        self
    }

    /// `self` with `destructive` set.
    pub const fn with_destructive(mut self, value: bool) -> Self {
        self.destructive = value;
        self
    }

    /// `self` with `idempotent` set.
    pub const fn with_idempotent(mut self, value: bool) -> Self {
        self.idempotent = value;
        self
    }

    /// `self` with `open_world` set.
    pub const fn with_open_world(mut self, value: bool) -> Self {
        self.open_world = value;
        self
    }

    /// `self` with `requires_confirmation` set.
    pub const fn with_requires_confirmation(mut self, value: bool) -> Self {
        self.requires_confirmation = value;
        self
    }
}

impl Default for ToolAnnotations {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Everything a model and a runner need to know about a tool without calling it.
///
/// ```
/// use kaos_tools::{ToolAnnotations, ToolName, ToolSpec};
/// use std::time::Duration;
/// let spec = ToolSpec::new(
///     ToolName::new("echo").unwrap(),
///     "Repeats its input.",
///     serde_json::json!({"type": "object", "properties": {}}),
/// )
/// .with_annotations(ToolAnnotations::read_only())
/// .with_timeout(Duration::from_secs(5));
/// assert_eq!(serde_json::to_value(&spec).unwrap()["timeout_ms"], 5000);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ToolSpec {
    /// The tool's name, unique in a registry.
    pub name: ToolName,
    /// What the tool does, written for the model.
    pub description: String,
    /// JSON Schema (an object schema) of the arguments.
    pub input_schema: Value,
    /// Behaviour hints.
    pub annotations: ToolAnnotations,
    /// This tool's own time limit; `None` uses the registry's default.
    #[serde(
        rename = "timeout_ms",
        serialize_with = "serialize_millis",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
}

impl ToolSpec {
    /// A spec with default annotations and no timeout of its own.
    pub fn new(name: ToolName, description: impl Into<String>, input_schema: Value) -> Self {
        Self {
            name,
            description: description.into(),
            input_schema,
            annotations: ToolAnnotations::default(),
            timeout: None,
        }
    }

    /// `self` with `annotations`.
    pub fn with_annotations(mut self, annotations: ToolAnnotations) -> Self {
        self.annotations = annotations;
        self
    }

    /// `self` with its own time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// `self` with its own time limit set or cleared.
    pub fn with_timeout_opt(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }
}

fn serialize_millis<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => serializer.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => serializer.serialize_none(),
    }
}

/// What a tool call knows about where it runs. Cheap to clone.
///
/// The VFS is the session's workspace, already scoped by the runner: a tool cannot see other
/// sessions through it.
#[derive(Clone)]
pub struct ToolContext {
    session_id: Arc<str>,
    run_id: Arc<str>,
    call_id: Arc<str>,
    vfs: Arc<dyn Vfs>,
}

impl ToolContext {
    /// A context for one call.
    pub fn new(
        session_id: impl Into<Arc<str>>,
        run_id: impl Into<Arc<str>>,
        call_id: impl Into<Arc<str>>,
        vfs: Arc<dyn Vfs>,
    ) -> Self {
        Self { session_id: session_id.into(), run_id: run_id.into(), call_id: call_id.into(), vfs }
    }

    /// A context over a fresh [`MemoryVfs`], with ids `test-session`, `test-run`, `test-call`.
    pub fn for_tests() -> Self {
        Self::new("test-session", "test-run", "test-call", Arc::new(MemoryVfs::new()))
    }

    /// The same context for another call of the same run.
    pub fn with_call_id(mut self, call_id: impl Into<Arc<str>>) -> Self {
        self.call_id = call_id.into();
        self
    }

    /// The session this call belongs to.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The run (one turn) this call belongs to.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The id of this tool call, as given by the model or the runner.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The session's workspace.
    pub fn vfs(&self) -> &Arc<dyn Vfs> {
        &self.vfs
    }
}

impl fmt::Debug for ToolContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolContext")
            .field("session_id", &self.session_id)
            .field("run_id", &self.run_id)
            .field("call_id", &self.call_id)
            .field("vfs", &self.vfs)
            .finish()
    }
}

/// A tool a model can call.
///
/// Most tools are written as a [`TypedTool`](crate::TypedTool) or with
/// [`tool_fn`](crate::tool_fn), which derive the spec and parse the arguments; implement this
/// trait directly for tools whose schema is only known at run time (e.g. mounted MCP tools).
///
/// `call` may return `Err` for any failure; the runner turns it into an error result for the
/// model with [`ToolError::into_result`]. Call tools through
/// [`ToolRegistry::invoke`](crate::ToolRegistry::invoke) or [`invoke_tool`](crate::invoke_tool),
/// which add the time limit and catch panics.
#[async_trait]
pub trait Tool: Send + Sync + fmt::Debug {
    /// The tool's name, description, input schema and annotations.
    fn spec(&self) -> &ToolSpec;

    /// Runs the tool with raw JSON arguments.
    async fn call(&self, args: Value, ctx: ToolContext) -> Result<ToolResult, ToolError>;
}

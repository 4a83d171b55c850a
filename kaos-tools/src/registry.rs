use std::any::Any;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;

use crate::{Tool, ToolContext, ToolError, ToolResult, ToolSelector};

/// Time limit for a tool call when neither the tool nor the registry sets one.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// The tools a runtime offers, by name, in registration order.
///
/// Cloning is cheap (one `Arc`), and a clone is a snapshot: registering on one clone does not
/// change the others (copy-on-write). Lookups take no lock.
///
/// ```
/// use kaos_tools::{builtin, ToolRegistry, ToolSelector};
/// let mut registry = ToolRegistry::new();
/// for tool in builtin::vfs_tools() {
///     registry.register(tool).unwrap();
/// }
/// assert!(registry.get("kaos-vfs-read").is_some());
/// let selector = ToolSelector::new(["kaos-vfs-r*"]).unwrap();
/// assert_eq!(registry.select(&selector, 10).len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct ToolRegistry {
    tools: Arc<Entries>,
    default_timeout: Duration,
}

#[derive(Debug, Clone, Default)]
struct Entries {
    ordered: Vec<Arc<dyn Tool>>,
    by_name: HashMap<String, usize>,
}

impl ToolRegistry {
    /// An empty registry with [`DEFAULT_TOOL_TIMEOUT`].
    pub fn new() -> Self {
        Self { tools: Arc::new(Entries::default()), default_timeout: DEFAULT_TOOL_TIMEOUT }
    }

    /// `self` with another time limit for tools that do not set their own.
    pub fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// The time limit for tools that do not set their own.
    pub fn default_timeout(&self) -> Duration {
        self.default_timeout
    }

    /// Adds `tool`. Errors with [`ToolError::Duplicate`] when its name is taken.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Result<(), ToolError> {
        let name = tool.spec().name.as_str().to_owned();
        if self.tools.by_name.contains_key(&name) {
            return Err(ToolError::Duplicate(name));
        }
        let entries = Arc::make_mut(&mut self.tools);
        entries.by_name.insert(name, entries.ordered.len());
        entries.ordered.push(tool);
        Ok(())
    }

    /// `self` with `tool` added; see [`register`](ToolRegistry::register).
    pub fn with(mut self, tool: Arc<dyn Tool>) -> Result<Self, ToolError> {
        self.register(tool)?;
        Ok(self)
    }

    /// Adds every tool of `tools`, stopping at the first duplicate (earlier ones stay added).
    pub fn register_all(&mut self, tools: impl IntoIterator<Item = Arc<dyn Tool>>) -> Result<(), ToolError> {
        tools.into_iter().try_for_each(|tool| self.register(tool))
    }

    /// The tool named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        self.tools.by_name.get(name).and_then(|&i| self.tools.ordered.get(i)).cloned()
    }

    /// Whether a tool named `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.tools.by_name.contains_key(name)
    }

    /// Every tool, in registration order.
    pub fn list(&self) -> Vec<Arc<dyn Tool>> {
        self.tools.ordered.clone()
    }

    /// Every tool name, in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.tools.ordered.iter().map(|t| t.spec().name.as_str()).collect()
    }

    /// How many tools are registered.
    pub fn len(&self) -> usize {
        self.tools.ordered.len()
    }

    /// Whether no tool is registered.
    pub fn is_empty(&self) -> bool {
        self.tools.ordered.is_empty()
    }

    /// The tools `selector` matches, in registration order, at most `max` of them.
    pub fn select(&self, selector: &ToolSelector, max: usize) -> Vec<Arc<dyn Tool>> {
        self.tools
            .ordered
            .iter()
            .filter(|t| selector.matches(t.spec().name.as_str()))
            .take(max)
            .cloned()
            .collect()
    }

    /// Tools whose name or description contain the words of `query`, case-insensitively.
    ///
    /// Words are split on whitespace and commas; a word matches when it occurs anywhere in the
    /// name or description. Ranked by the number of distinct matching words, then by how many
    /// of them occur in the name, then by registration order. Tools matching no word are left
    /// out; an empty query finds nothing.
    ///
    /// ```
    /// use kaos_tools::{builtin, ToolRegistry};
    /// let mut registry = ToolRegistry::new();
    /// registry.register_all(builtin::vfs_tools()).unwrap();
    /// let found = registry.search("delete file");
    /// assert_eq!(found[0].spec().name.as_str(), "kaos-vfs-delete");
    /// ```
    pub fn search(&self, query: &str) -> Vec<Arc<dyn Tool>> {
        let mut terms: Vec<String> = query
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
            .map(str::to_lowercase)
            .collect();
        terms.sort();
        terms.dedup();
        if terms.is_empty() {
            return Vec::new();
        }
        let mut scored: Vec<(usize, usize, usize)> = self
            .tools
            .ordered
            .iter()
            .enumerate()
            .filter_map(|(index, tool)| {
                let spec = tool.spec();
                let name = spec.name.as_str();
                let description = spec.description.to_lowercase();
                let in_name = terms.iter().filter(|t| name.contains(t.as_str())).count();
                let matched = terms
                    .iter()
                    .filter(|t| name.contains(t.as_str()) || description.contains(t.as_str()))
                    .count();
                (matched > 0).then_some((matched, in_name, index))
            })
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        scored.into_iter().filter_map(|(_, _, index)| self.tools.ordered.get(index).cloned()).collect()
    }

    /// Calls the tool named `name` through [`invoke_tool`] with this registry's default time
    /// limit. Errors with [`ToolError::NotFound`] for an unknown name.
    pub async fn invoke(&self, name: &str, args: Value, ctx: ToolContext) -> Result<ToolResult, ToolError> {
        let tool = self.get(name).ok_or_else(|| ToolError::NotFound(name.to_owned()))?;
        invoke_tool(tool.as_ref(), args, ctx, self.default_timeout).await
    }
}

impl Default for ToolRegistry {
    fn default() -> Self {
        Self::new()
    }
}

/// Calls `tool` safely: under its time limit (the spec's own, else `default_timeout`) and with
/// panics caught.
///
/// A call that runs out of time is dropped and gives [`ToolError::Timeout`]; a panic anywhere in
/// the tool (building or polling its future) gives [`ToolError::Panicked`] and never unwinds
/// into the caller (the panic hook still reports it as usual). Needs a Tokio runtime with
/// time enabled.
pub async fn invoke_tool(
    tool: &dyn Tool,
    args: Value,
    ctx: ToolContext,
    default_timeout: Duration,
) -> Result<ToolResult, ToolError> {
    let spec = tool.spec();
    let limit = spec.timeout.unwrap_or(default_timeout);
    let panicked = |payload: Box<dyn Any + Send>| {
        let message = panic_message(payload.as_ref());
        tracing::error!(tool = %spec.name, %message, "tool panicked");
        ToolError::Panicked { tool: spec.name.to_string(), message }
    };
    let future = std::panic::catch_unwind(AssertUnwindSafe(|| tool.call(args, ctx))).map_err(panicked)?;
    match tokio::time::timeout(limit, AssertUnwindSafe(future).catch_unwind()).await {
        Ok(Ok(result)) => result,
        Ok(Err(payload)) => Err(panicked(payload)),
        Err(_elapsed) => {
            tracing::warn!(tool = %spec.name, timeout = ?limit, "tool timed out");
            Err(ToolError::Timeout { tool: spec.name.to_string(), after: limit })
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic payload is not a string".to_owned()
    }
}

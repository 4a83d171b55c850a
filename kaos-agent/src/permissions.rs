use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the permission policy says about one tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Run the tool.
    Allow,
    /// Pause the run until a person approves or denies the call.
    Ask,
    /// Do not run the tool; the model is told why.
    Deny,
}

/// One permission rule: a glob over tool names, optional globs over named string arguments,
/// and the decision when it matches. Rules are evaluated in order and the first match wins.
///
/// Globs are shell-style and case-sensitive: `*` matches any run of characters (including `-`
/// and `/`), `?` one character, `[abc]` / `[!abc]` a class. They are validated when the agent
/// is built, so a bad glob is a build error, never a call-time surprise.
///
/// ```
/// use kaos_agent::{Decision, PermissionRule};
/// let rule = PermissionRule::new("kaos-vfs-write", Decision::Ask).with_arg("path", "secrets/**");
/// assert_eq!(rule.args["path"], "secrets/**");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PermissionRule {
    /// Glob over tool names.
    pub tool: String,
    /// Argument name → glob over that argument's string value. All must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    /// The decision when the rule matches.
    pub decision: Decision,
}

impl PermissionRule {
    /// A rule over tool names only.
    pub fn new(tool: impl Into<String>, decision: Decision) -> Self {
        Self { tool: tool.into(), args: BTreeMap::new(), decision }
    }

    /// `allow` for tools matching `tool`.
    pub fn allow(tool: impl Into<String>) -> Self {
        Self::new(tool, Decision::Allow)
    }

    /// `ask` for tools matching `tool`.
    pub fn ask(tool: impl Into<String>) -> Self {
        Self::new(tool, Decision::Ask)
    }

    /// `deny` for tools matching `tool`.
    pub fn deny(tool: impl Into<String>) -> Self {
        Self::new(tool, Decision::Deny)
    }

    /// Adds an argument condition: the call's `name` argument must be a string matching `glob`.
    pub fn with_arg(mut self, name: impl Into<String>, glob: impl Into<String>) -> Self {
        self.args.insert(name.into(), glob.into());
        self
    }
}

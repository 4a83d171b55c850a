//! The permission policy: which tool calls run, which ask a person, which are refused.

use globset::{GlobBuilder, GlobMatcher};
use kaos_agent::{Agent, Decision, PermissionRule};
use kaos_tools::ToolAnnotations;
use serde::Serialize;
use serde_json::Value;

use crate::error::RunError;

/// An agent's permission rules, compiled once, evaluated per tool call.
///
/// [`PermissionPolicy::evaluate`] decides in this order, the first step that applies wins:
///
/// 1. the tool's `requires_confirmation` annotation → [`Decision::Ask`];
/// 2. the agent's rules, in order: the first rule whose tool glob matches the tool name and
///    whose argument globs all match (each named argument must be a string matching its glob)
///    gives its decision;
/// 3. `read_only` → [`Decision::Allow`];
/// 4. `destructive` → [`Decision::Ask`];
/// 5. otherwise [`Decision::Allow`].
///
/// Globs are case-sensitive and `*` also matches `/` and `-` (so `secrets/*` covers
/// `secrets/a/b`).
///
/// ```
/// use kaos_agent::{Agent, Decision, PermissionRule};
/// use kaos_runner::{PermissionPolicy, Verdict, VerdictReason};
/// use kaos_tools::ToolAnnotations;
/// use serde_json::json;
///
/// let agent = Agent::builder()
///     .permit("*-delete", Decision::Deny)
///     .permission(PermissionRule::ask("kaos-vfs-write").with_arg("path", "secrets/*"))
///     .build()?;
/// let policy = PermissionPolicy::from_agent(&agent)?;
/// let write = ToolAnnotations::default();
///
/// let v = policy.evaluate("kaos-vfs-write", &json!({"path": "secrets/key"}), &write);
/// assert_eq!(v, Verdict::new(Decision::Ask, VerdictReason::Rule(1)));
/// let v = policy.evaluate("kaos-vfs-write", &json!({"path": "notes.md"}), &write);
/// assert_eq!(v, Verdict::new(Decision::Allow, VerdictReason::Default));
/// let v = policy.evaluate("kaos-vfs-delete", &json!({}), &ToolAnnotations::destructive());
/// assert_eq!(v, Verdict::new(Decision::Deny, VerdictReason::Rule(0)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct PermissionPolicy {
    rules: Vec<CompiledRule>,
    /// The rules as written, in order (a sub-agent's run inherits them).
    source: Vec<PermissionRule>,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    tool: GlobMatcher,
    args: Vec<(String, GlobMatcher)>,
    decision: Decision,
}

impl CompiledRule {
    fn matches(&self, tool_name: &str, arguments: &Value) -> bool {
        self.tool.is_match(tool_name)
            && self.args.iter().all(|(name, glob)| {
                arguments.get(name).and_then(Value::as_str).is_some_and(|value| glob.is_match(value))
            })
    }
}

/// The outcome of [`PermissionPolicy::evaluate`]: the decision and what decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Verdict {
    /// Allow, ask or deny.
    pub decision: Decision,
    /// What decided it.
    pub reason: VerdictReason,
}

impl Verdict {
    /// A verdict.
    pub fn new(decision: Decision, reason: VerdictReason) -> Self {
        Self { decision, reason }
    }
}

/// What decided a [`Verdict`]. Serializes as `{"rule": 2}` or `"read_only"`, ….
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum VerdictReason {
    /// The tool requires confirmation of every call.
    RequiresConfirmation,
    /// The agent's permission rule at this index (from 0) matched first.
    Rule(usize),
    /// No rule matched and the tool is read-only.
    ReadOnly,
    /// No rule matched and the tool is destructive.
    Destructive,
    /// No rule matched and no annotation decided.
    Default,
}

impl PermissionPolicy {
    /// Compiles `agent`'s permission rules.
    ///
    /// Errors with [`RunError::InvalidToolGlob`] when a glob does not compile, which a validated
    /// agent rules out.
    pub fn from_agent(agent: &Agent) -> Result<Self, RunError> {
        Self::from_rules(agent.permissions())
    }

    /// A cautious policy for agents whose tools are not annotated carefully: asks before any
    /// tool whose name says it deletes, removes, writes, moves, executes, runs a shell or
    /// sends something, and otherwise follows the annotations (see
    /// [`PermissionPolicy::default_safe_rules`] to combine them with your own).
    ///
    /// ```
    /// use kaos_agent::Decision;
    /// use kaos_runner::PermissionPolicy;
    /// use kaos_tools::ToolAnnotations;
    /// let policy = PermissionPolicy::default_safe();
    /// let plain = ToolAnnotations::default();
    /// assert_eq!(policy.evaluate("files-delete", &serde_json::json!({}), &plain).decision, Decision::Ask);
    /// assert_eq!(policy.evaluate("search", &serde_json::json!({}), &plain).decision, Decision::Allow);
    /// ```
    pub fn default_safe() -> Self {
        // The patterns are fixed and valid.
        Self::from_rules(&Self::default_safe_rules())
            .unwrap_or(Self { rules: Vec::new(), source: Vec::new() })
    }

    /// The rules of [`PermissionPolicy::default_safe`], to append to an agent's own.
    pub fn default_safe_rules() -> Vec<PermissionRule> {
        ["*delete*", "*remove*", "*write*", "*move*", "*exec*", "*shell*", "*run-command*", "*send*"]
            .into_iter()
            .map(PermissionRule::ask)
            .collect()
    }

    /// Compiles `rules` (evaluated in order).
    pub fn from_rules(rules: &[PermissionRule]) -> Result<Self, RunError> {
        let source = rules.to_vec();
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let args = rule
                    .args
                    .iter()
                    .map(|(name, glob)| {
                        Ok((name.clone(), compile(glob, &format!("permissions[{i}].args.{name}"))?))
                    })
                    .collect::<Result<_, RunError>>()?;
                Ok(CompiledRule {
                    tool: compile(&rule.tool, &format!("permissions[{i}].tool"))?,
                    args,
                    decision: rule.decision,
                })
            })
            .collect::<Result<_, RunError>>()?;
        Ok(Self { rules, source })
    }

    /// The rules, as written, in the order they are evaluated.
    pub fn rules(&self) -> &[PermissionRule] {
        &self.source
    }

    /// The decision for calling `tool_name` with `arguments` (a JSON object; anything else has
    /// no named arguments), given the tool's annotations. Costs one glob match per rule
    /// tried; never fails.
    pub fn evaluate(&self, tool_name: &str, arguments: &Value, annotations: &ToolAnnotations) -> Verdict {
        if annotations.requires_confirmation {
            return Verdict::new(Decision::Ask, VerdictReason::RequiresConfirmation);
        }
        if let Some((i, rule)) = self.rules.iter().enumerate().find(|(_, r)| r.matches(tool_name, arguments))
        {
            return Verdict::new(rule.decision, VerdictReason::Rule(i));
        }
        if annotations.read_only {
            Verdict::new(Decision::Allow, VerdictReason::ReadOnly)
        } else if annotations.destructive {
            Verdict::new(Decision::Ask, VerdictReason::Destructive)
        } else {
            Verdict::new(Decision::Allow, VerdictReason::Default)
        }
    }

    /// How many rules the policy holds.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the policy holds no rules (annotations alone decide).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn compile(glob: &str, field: &str) -> Result<GlobMatcher, RunError> {
    GlobBuilder::new(glob)
        .literal_separator(false)
        .case_insensitive(false)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| RunError::InvalidToolGlob {
            glob: glob.to_owned(),
            field: field.to_owned(),
            message: e.kind().to_string(),
        })
}

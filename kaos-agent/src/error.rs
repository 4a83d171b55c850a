/// Why an agent definition was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// An agent or delegate name is empty, too long or has characters outside `[A-Za-z0-9_-]`.
    #[error("invalid name {name:?} at {field}: {reason}")]
    InvalidName {
        /// Where the name is (`name`, `handoffs[0].name`, …).
        field: String,
        /// The rejected name.
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// A model reference is not `provider:model`.
    #[error("invalid model {value:?}: {reason}")]
    InvalidModelRef {
        /// The rejected text.
        value: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// A pattern name is not one of chat, research, plan, findings, router.
    #[error("unknown pattern {value:?} (expected chat, research, plan, findings or router)")]
    UnknownPattern {
        /// The rejected text.
        value: String,
    },

    /// A glob (tool selection or permission rule) does not compile.
    #[error("invalid glob {pattern:?} at {field}: {message}")]
    InvalidGlob {
        /// Where the glob is (`tools[2]`, `permissions[0].tool`, …).
        field: String,
        /// The rejected glob.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },

    /// A limit is zero. Zero is never read as "unset".
    #[error("{field} must be at least 1")]
    ZeroLimit {
        /// Which limit.
        field: String,
    },

    /// A budget cap is zero, negative, not finite or too large.
    #[error("{field} {reason}")]
    InvalidBudget {
        /// Which cap.
        field: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// A pattern's settings break a rule (e.g. a router routing to itself).
    #[error("{field} {reason}")]
    InvalidPatternConfig {
        /// Which setting.
        field: String,
        /// Which rule it broke.
        reason: String,
    },

    /// Two delegates or handoff targets of one agent share a name (their tool names would clash).
    #[error("duplicate {kind} name {name:?} at {field}")]
    DuplicateName {
        /// `delegate` or `handoff`.
        kind: &'static str,
        /// The repeated name.
        name: String,
        /// Where the second one is.
        field: String,
    },

    /// A delegate names neither or both of a local agent and a remote A2A endpoint, or its
    /// endpoint or token variable is malformed.
    #[error("invalid delegate at {field}: {reason}")]
    InvalidDelegate {
        /// Where (`delegates[0].a2a`, `delegates[1].token_env`, …).
        field: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// A chain of handoffs or delegates leads back to an agent already on the chain.
    #[error("agent {name:?} refers back to itself through {}", path.join(" → "))]
    Cycle {
        /// The repeated name.
        name: String,
        /// The chain of names, from the root to the repetition.
        path: Vec<String>,
    },

    /// An agent file could not be parsed (syntax, unknown field, wrong type). `field` names
    /// where (`budget.max_cost_usd`, `tools[1]`, `(top level)` outside every field), and
    /// `line` and `column` (1-based) where the parser reports them.
    #[error("invalid agent {format} in `{field}`{}: {message}", at(*.line, *.column))]
    Parse {
        /// `JSON` or `TOML`.
        format: &'static str,
        /// The field the error is in, as a path.
        field: String,
        /// The line of the error.
        line: Option<usize>,
        /// The column of the error, in characters.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },

    /// The agent could not be serialized (a value the format cannot represent).
    #[error("cannot write agent as {format}: {message}")]
    Serialize {
        /// `JSON` or `TOML`.
        format: &'static str,
        /// What failed.
        message: String,
    },
}

/// ` at line L, column C`, or nothing when the location is unknown.
fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

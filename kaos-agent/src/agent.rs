use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use globset::GlobBuilder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    AgentError, Budget, Decision, FindingsConfig, Limits, MemoryProfile, ModelRef, ModelRole, Pattern,
    PermissionRule, PlanConfig, ResearchConfig, RouterConfig,
};

const DEFAULT_NAME: &str = "assistant";
const DEFAULT_INSTRUCTIONS: &str = "You are a helpful assistant.";
const MAX_NAME_LEN: usize = 64;
const MAX_HANDOFF_NAME_LEN: usize = MAX_NAME_LEN - "handoff_to_".len();

/// The plain data behind an [`Agent`]: what agent files (JSON or TOML) contain.
///
/// Every field but `name`, `instructions`, `model` and `pattern` may be left out of a file and
/// takes the reference default. Unknown fields are an error (a typo must not be ignored).
/// An `AgentConfig` is not validated by itself; turn it into an [`Agent`] with
/// [`Agent::from_config`] (or parse an `Agent` directly) to validate it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AgentConfig {
    /// Name, `[A-Za-z0-9_-]{1,64}` (at most 53 characters in a handoff team, whose tool names
    /// are `handoff_to_<name>`): used in handoff tool names, spans and session scoping.
    #[serde(default = "default_name")]
    pub name: String,
    /// The system prompt.
    #[serde(default = "default_instructions")]
    pub instructions: String,
    /// The model, as `provider:model` [`scripted:echo`, the offline model].
    #[serde(default)]
    pub model: ModelRef,
    /// Models for specific roles (e.g. a cheap classifier); the main model otherwise.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub role_models: BTreeMap<ModelRole, ModelRef>,
    /// Models tried in order when a call's model is unavailable — its circuit breaker is open,
    /// or it failed in a way another model may not (rate limit, overload, server or network
    /// error, context too long, garbage) — for every role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback_models: Vec<ModelRef>,
    /// How turns are driven [chat].
    #[serde(default)]
    pub pattern: Pattern,
    /// Globs over tool names offered to the model. Without a `tools` key every tool of the
    /// runtime is offered; with one, only the tools a glob matches, so `tools = []` offers none
    /// (and `["*"]` spells every tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// Permission rules, evaluated in order (first match wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<PermissionRule>,
    /// Structural limits on a turn.
    #[serde(default)]
    pub limits: Limits,
    /// Spending caps on a turn.
    #[serde(default)]
    pub budget: Budget,
    /// What of the session's memory the model sees.
    #[serde(default)]
    pub memory: MemoryProfile,
    /// Settings of the research pattern.
    #[serde(default, skip_serializing_if = "ResearchConfig::is_default")]
    pub research: ResearchConfig,
    /// Settings of the plan pattern.
    #[serde(default, skip_serializing_if = "PlanConfig::is_default")]
    pub plan: PlanConfig,
    /// Settings of the findings pattern.
    #[serde(default, skip_serializing_if = "FindingsConfig::is_default")]
    pub findings: FindingsConfig,
    /// Settings of the router pattern.
    #[serde(default, skip_serializing_if = "RouterConfig::is_default")]
    pub router: RouterConfig,
    /// Sub-agents the model may call like tools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegates: Vec<Delegate>,
    /// Agents the conversation may be handed to (`handoff_to_<name>` tools).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handoffs: Vec<AgentConfig>,
    /// Free-form labels; not read by the engine.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// A sub-agent offered to the model as a tool (agent-as-tool): run in this process (`agent`),
/// or a remote agent called over the Agent2Agent protocol (`a2a`). Exactly one of the two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Delegate {
    /// The tool name the model calls, `[A-Za-z0-9_-]{1,64}`.
    pub name: String,
    /// What the tool is for, shown to the model.
    pub description: String,
    /// The sub-agent, run in this process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentConfig>,
    /// A remote agent's A2A endpoint: the base URL its agent card is served under
    /// (`/.well-known/agent-card.json`), `http://` or `https://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a2a: Option<String>,
    /// The environment variable holding the bearer token sent to the remote agent (only with
    /// `a2a`; sent over `https://`, or `http://` to a loopback host only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
}

/// What a validated [`Delegate`] calls.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum DelegateTarget<'a> {
    /// A sub-agent run in this process.
    Local(&'a AgentConfig),
    /// A remote agent called over A2A.
    Remote {
        /// The endpoint's base URL.
        url: &'a str,
        /// The environment variable holding its bearer token, if it takes one.
        token_env: Option<&'a str>,
    },
}

impl Delegate {
    /// A delegate calling `agent` through a tool named `name`.
    pub fn new(name: impl Into<String>, description: impl Into<String>, agent: &Agent) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            agent: Some(agent.config().clone()),
            a2a: None,
            token_env: None,
        }
    }

    /// A delegate calling the remote A2A agent at `url` through a tool named `name`.
    pub fn a2a(name: impl Into<String>, description: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            agent: None,
            a2a: Some(url.into()),
            token_env: None,
        }
    }

    /// Sends the bearer token held by the environment variable `var` to the remote agent.
    pub fn with_token_env(mut self, var: impl Into<String>) -> Self {
        self.token_env = Some(var.into());
        self
    }

    /// What the delegate calls; `None` when it names neither or both (a delegate of a
    /// validated [`Agent`] always has one).
    pub fn target(&self) -> Option<DelegateTarget<'_>> {
        match (&self.agent, &self.a2a) {
            (Some(agent), None) => Some(DelegateTarget::Local(agent)),
            (None, Some(url)) => Some(DelegateTarget::Remote { url, token_env: self.token_env.as_deref() }),
            _ => None,
        }
    }

    fn validate_at(&self, field: &str, chain: &mut Vec<String>) -> Result<(), AgentError> {
        let invalid = |at: &str, reason: &'static str| AgentError::InvalidDelegate {
            field: format!("{field}.{at}"),
            reason,
        };
        match (&self.agent, &self.a2a) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "a2a",
                    "a delegate is either a local `agent` or a remote `a2a` endpoint, not both",
                ));
            }
            (None, None) => {
                return Err(invalid("agent", "a delegate needs a local `agent` or a remote `a2a` endpoint"));
            }
            (Some(agent), None) => {
                if self.token_env.is_some() {
                    return Err(invalid("token_env", "only a remote (`a2a`) delegate takes a token"));
                }
                return agent.validate_at(&format!("{field}.agent."), chain);
            }
            (None, Some(url)) => {
                let loopback = validate_a2a_url(url).map_err(|reason| invalid("a2a", reason))?;
                if let Some(var) = &self.token_env {
                    let valid = var.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                        && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if !valid {
                        return Err(invalid(
                            "token_env",
                            "must be an environment variable name, [A-Za-z_][A-Za-z0-9_]*",
                        ));
                    }
                    if !loopback && url.starts_with("http://") {
                        return Err(invalid(
                            "token_env",
                            "a bearer token is sent only over https:// (or http:// to a loopback host)",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Checks an A2A endpoint URL: `http://` or `https://`, a host, no whitespace or control
/// characters, no user info or fragment. Returns whether the host is loopback.
fn validate_a2a_url(url: &str) -> Result<bool, &'static str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must be an http:// or https:// URL")?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters");
    }
    if url.contains('#') {
        return Err("must not have a fragment");
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("must not carry credentials (use token_env)");
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    if host.is_empty() {
        return Err("must name a host");
    }
    Ok(host.eq_ignore_ascii_case("localhost") || host == "::1" || host.starts_with("127."))
}

fn default_name() -> String {
    DEFAULT_NAME.to_owned()
}

fn default_instructions() -> String {
    DEFAULT_INSTRUCTIONS.to_owned()
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            name: default_name(),
            instructions: default_instructions(),
            model: ModelRef::default(),
            role_models: BTreeMap::new(),
            fallback_models: Vec::new(),
            pattern: Pattern::default(),
            tools: None,
            permissions: Vec::new(),
            limits: Limits::default(),
            budget: Budget::default(),
            memory: MemoryProfile::default(),
            research: ResearchConfig::default(),
            plan: PlanConfig::default(),
            findings: FindingsConfig::default(),
            router: RouterConfig::default(),
            delegates: Vec::new(),
            handoffs: Vec::new(),
            metadata: BTreeMap::new(),
        }
    }
}

impl AgentConfig {
    /// Parses (without validating) a configuration from JSON. A parse error names the field
    /// it is in, and the line and column ([`AgentError::Parse`]).
    pub fn from_json(text: &str) -> Result<Self, AgentError> {
        let parse = |field: String, e: serde_json::Error| {
            let message = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            AgentError::Parse {
                format: "JSON",
                field,
                line: Some(e.line()).filter(|l| *l > 0),
                column: Some(e.column()).filter(|_| e.line() > 0),
                message: message.strip_suffix(&suffix).unwrap_or(&message).to_owned(),
            }
        };
        // Where the path has a part serde cannot name (a syntax error between fields, a map
        // key of an enum type), the field is read from the text at the error's position.
        let at = |e: &serde_json::Error| json_field_at(text, e.line(), e.column());
        let mut de = serde_json::Deserializer::from_str(text);
        let config: AgentConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = Some(field_name(e.path()))
                .filter(|f| f != TOP_LEVEL && !f.contains('?'))
                .unwrap_or_else(|| at(e.inner()));
            parse(field, e.into_inner())
        })?;
        de.end().map_err(|e| parse(TOP_LEVEL.to_owned(), e))?;
        Ok(config)
    }

    /// Parses (without validating) a configuration from TOML, the agent-file format. A parse
    /// error names the field it is in, and the line and column ([`AgentError::Parse`]).
    pub fn from_toml(text: &str) -> Result<Self, AgentError> {
        Self::from_toml_skipping(text, &[])
    }

    /// Parses (without validating) an agent file that also holds tables meant for a front end
    /// (the `kaos` command reads `[providers]`, `[pricing]` and `[[mcp_servers]]` from the same
    /// file): the top-level keys named in `skip` are left out, and every error's line and column
    /// are still those of `text`.
    ///
    /// ```
    /// use kaos_agent::{AgentConfig, AgentError};
    ///
    /// let text = "[providers]\nopenai_base_url = \"http://127.0.0.1:9\"\n\n[agent]\n";
    /// let err = AgentConfig::from_toml_skipping(text, &["providers"]).unwrap_err();
    /// assert!(matches!(err, AgentError::Parse { line: Some(4), .. }), "{err}");
    /// ```
    pub fn from_toml_skipping(text: &str, skip: &[&str]) -> Result<Self, AgentError> {
        let parse = |field: String, e: toml::de::Error| {
            let (line, column) = e.span().map(|span| line_column(text, span.start)).unzip();
            AgentError::Parse {
                format: "TOML",
                field,
                line,
                column,
                message: e.message().trim_end().to_owned(),
            }
        };
        // A syntax error stops the parser before any field is read: its field is the key on
        // the line the error is on, inside the table above it.
        let mut table = toml::de::DeTable::parse(text)
            .map_err(|e| parse(toml_field_at(text, e.span().map_or(0, |s| s.start)), e))?;
        let kept = std::mem::take(table.get_mut())
            .into_iter()
            .filter(|(key, _)| !skip.contains(&key.get_ref().as_ref()))
            .collect();
        *table.get_mut() = kept;
        let de = toml::Deserializer::from(table);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let field = match field_name(e.path()) {
                unnamed if unnamed == TOP_LEVEL || unnamed.contains('?') => {
                    e.inner().span().map_or(unnamed, |span| toml_field_at(text, span.start))
                }
                field => field,
            };
            parse(field, e.into_inner())
        })
    }

    /// Checks every rule an agent must satisfy; the first violation is returned.
    pub fn validate(&self) -> Result<(), AgentError> {
        self.validate_at("", &mut Vec::new())
    }

    fn validate_at(&self, at: &str, chain: &mut Vec<String>) -> Result<(), AgentError> {
        validate_name(&format!("{at}name"), &self.name)?;
        if chain.contains(&self.name) {
            let mut path = chain.clone();
            path.push(self.name.clone());
            return Err(AgentError::Cycle { name: self.name.clone(), path });
        }
        for (i, glob) in self.tools.iter().flatten().enumerate() {
            validate_glob(&format!("{at}tools[{i}]"), glob)?;
        }
        for (i, rule) in self.permissions.iter().enumerate() {
            validate_glob(&format!("{at}permissions[{i}].tool"), &rule.tool)?;
            for (arg, glob) in &rule.args {
                validate_glob(&format!("{at}permissions[{i}].args.{arg}"), glob)?;
            }
        }
        self.budget.validate(at)?;
        self.findings.validate(at)?;
        self.router.validate(at)?;

        chain.push(self.name.clone());
        let mut seen = BTreeSet::new();
        for (i, d) in self.delegates.iter().enumerate() {
            let field = format!("{at}delegates[{i}]");
            validate_name(&format!("{field}.name"), &d.name)?;
            if !seen.insert(d.name.as_str()) {
                return Err(AgentError::DuplicateName { kind: "delegate", name: d.name.clone(), field });
            }
            d.validate_at(&field, chain)?;
        }
        let mut seen = BTreeSet::new();
        // Agents of a handoff team are named in tools `handoff_to_<name>`, which vendors cap at
        // 64 characters (the team's root is handed back to, so it counts too).
        let too_long = |field: String, name: &str| {
            (name.len() > MAX_HANDOFF_NAME_LEN).then(|| AgentError::InvalidName {
                field,
                name: name.to_owned(),
                reason: "must be at most 53 characters in a handoff team (tool names handoff_to_<name> are limited to 64)",
            })
        };
        if at.is_empty()
            && !self.handoffs.is_empty()
            && let Some(error) = too_long("name".to_owned(), &self.name)
        {
            return Err(error);
        }
        for (i, h) in self.handoffs.iter().enumerate() {
            let field = format!("{at}handoffs[{i}]");
            if let Some(error) = too_long(format!("{field}.name"), &h.name) {
                return Err(error);
            }
            if !seen.insert(h.name.as_str()) {
                return Err(AgentError::DuplicateName { kind: "handoff", name: h.name.clone(), field });
            }
            h.validate_at(&format!("{field}."), chain)?;
        }
        chain.pop();
        Ok(())
    }

    /// The canonical JSON form: keys sorted at every depth, no whitespace. Equal configs give
    /// equal text; this is what the [`Fingerprint`] hashes.
    pub fn canonical_json(&self) -> Result<String, AgentError> {
        let value = serde_json::to_value(self)
            .map_err(|e| AgentError::Serialize { format: "JSON", message: e.to_string() })?;
        let mut out = String::new();
        crate::canonical::write(&value, &mut out);
        Ok(out)
    }
}

fn validate_name(field: &str, name: &str) -> Result<(), AgentError> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("must be at most 64 characters")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Some("may only contain A-Z, a-z, 0-9, '-' and '_'")
    } else {
        None
    };
    match reason {
        Some(reason) => {
            Err(AgentError::InvalidName { field: field.to_owned(), name: name.to_owned(), reason })
        }
        None => Ok(()),
    }
}

fn validate_glob(field: &str, glob: &str) -> Result<(), AgentError> {
    let invalid = |message: String| AgentError::InvalidGlob {
        field: field.to_owned(),
        pattern: glob.to_owned(),
        message,
    };
    if glob.is_empty() {
        return Err(invalid("a glob must not be empty".to_owned()));
    }
    GlobBuilder::new(glob)
        .literal_separator(false)
        .build()
        .map(drop)
        .map_err(|e| invalid(e.kind().to_string()))
}

/// A stable identifier of an agent's configuration: `sha256:` + hex digest of its canonical JSON.
/// Equal configurations have equal fingerprints on every machine and in every process.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    fn of(canonical_json: &str) -> Self {
        let digest = Sha256::digest(canonical_json.as_bytes());
        let mut text = String::with_capacity(7 + 64);
        text.push_str("sha256:");
        for byte in digest {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        Self(text)
    }

    /// The `sha256:…` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.0)
    }
}

/// A validated, frozen agent definition. Cheap to clone and share across threads.
///
/// Build one with [`Agent::builder`], parse one with [`Agent::from_toml`] / [`Agent::from_json`]
/// (or serde), or validate an [`AgentConfig`] with [`Agent::from_config`]. Changing an agent
/// means building a new one ([`Agent::to_builder`]).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "AgentConfig", into = "AgentConfig")]
pub struct Agent {
    inner: Arc<Inner>,
}

#[derive(PartialEq)]
struct Inner {
    config: AgentConfig,
    fingerprint: Fingerprint,
}

impl Agent {
    /// A builder starting from the reference defaults.
    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }

    /// Validates `config` and freezes it.
    pub fn from_config(config: AgentConfig) -> Result<Self, AgentError> {
        config.validate()?;
        let fingerprint = Fingerprint::of(&config.canonical_json()?);
        Ok(Self { inner: Arc::new(Inner { config, fingerprint }) })
    }

    /// Parses and validates an agent from JSON. A parse error names the field it is in
    /// ([`AgentError::Parse`]).
    pub fn from_json(text: &str) -> Result<Self, AgentError> {
        Self::from_config(AgentConfig::from_json(text)?)
    }

    /// Parses and validates an agent from TOML (the agent-file format). A parse error names
    /// the field it is in, and the line and column ([`AgentError::Parse`]).
    pub fn from_toml(text: &str) -> Result<Self, AgentError> {
        Self::from_config(AgentConfig::from_toml(text)?)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> Result<String, AgentError> {
        serde_json::to_string_pretty(self.config())
            .map_err(|e| AgentError::Serialize { format: "JSON", message: e.to_string() })
    }

    /// TOML, as an agent file.
    pub fn to_toml(&self) -> Result<String, AgentError> {
        toml::to_string(self.config())
            .map_err(|e| AgentError::Serialize { format: "TOML", message: e.to_string() })
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.inner.config
    }

    /// The stable fingerprint of the configuration.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.inner.fingerprint
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The system prompt.
    pub fn instructions(&self) -> &str {
        &self.inner.config.instructions
    }

    /// The main model.
    pub fn model(&self) -> &ModelRef {
        &self.inner.config.model
    }

    /// The model for a role: its own if configured, else the main model.
    pub fn model_for(&self, role: ModelRole) -> &ModelRef {
        self.inner.config.role_models.get(&role).unwrap_or(&self.inner.config.model)
    }

    /// Models tried in order when a call's model is unavailable.
    pub fn fallback_models(&self) -> &[ModelRef] {
        &self.inner.config.fallback_models
    }

    /// The pattern.
    pub fn pattern(&self) -> Pattern {
        self.inner.config.pattern
    }

    /// Globs over the tool names offered to the model: `None` offers every tool of the
    /// runtime, `Some(globs)` the tools a glob matches (none for an empty list).
    pub fn tools(&self) -> Option<&[String]> {
        self.inner.config.tools.as_deref()
    }

    /// Permission rules, in evaluation order.
    pub fn permissions(&self) -> &[PermissionRule] {
        &self.inner.config.permissions
    }

    /// Limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.config.limits
    }

    /// Budget.
    pub fn budget(&self) -> &Budget {
        &self.inner.config.budget
    }

    /// Memory profile.
    pub fn memory(&self) -> &MemoryProfile {
        &self.inner.config.memory
    }

    /// Settings of the research pattern.
    pub fn research(&self) -> &ResearchConfig {
        &self.inner.config.research
    }

    /// Settings of the plan pattern.
    pub fn plan(&self) -> &PlanConfig {
        &self.inner.config.plan
    }

    /// Settings of the findings pattern.
    pub fn findings(&self) -> &FindingsConfig {
        &self.inner.config.findings
    }

    /// Settings of the router pattern.
    pub fn router(&self) -> &RouterConfig {
        &self.inner.config.router
    }

    /// A builder holding this agent's configuration, to derive a changed agent.
    pub fn to_builder(&self) -> AgentBuilder {
        AgentBuilder { config: self.config().clone(), ..AgentBuilder::default() }
    }
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.name())
            .field("model", &self.model())
            .field("pattern", &self.pattern())
            .field("fingerprint", self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl TryFrom<AgentConfig> for Agent {
    type Error = AgentError;
    fn try_from(config: AgentConfig) -> Result<Self, Self::Error> {
        Self::from_config(config)
    }
}

impl From<Agent> for AgentConfig {
    fn from(agent: Agent) -> Self {
        Arc::try_unwrap(agent.inner).map(|inner| inner.config).unwrap_or_else(|shared| shared.config.clone())
    }
}

/// Builds an [`Agent`]. Setters never fail; [`AgentBuilder::build`] validates everything and
/// reports the first problem as a typed [`AgentError`].
#[derive(Debug, Clone, Default)]
pub struct AgentBuilder {
    config: AgentConfig,
    model: Option<String>,
    role_models: Vec<(ModelRole, String)>,
    fallback_models: Vec<String>,
    limits: Vec<(&'static str, u32, LimitSlot)>,
}

type LimitSlot = fn(&mut Limits) -> &mut NonZeroU32;

impl AgentBuilder {
    /// The name (`[A-Za-z0-9_-]{1,64}`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// The system prompt.
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.config.instructions = instructions.into();
        self
    }

    /// The model as `provider:model`.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// A model for one role.
    pub fn role_model(mut self, role: ModelRole, model: impl Into<String>) -> Self {
        self.role_models.push((role, model.into()));
        self
    }

    /// Appends a fallback model (`provider:model`), tried when the ones before it are
    /// unavailable.
    pub fn fallback_model(mut self, model: impl Into<String>) -> Self {
        self.fallback_models.push(model.into());
        self
    }

    /// The pattern.
    pub fn pattern(mut self, pattern: Pattern) -> Self {
        self.config.pattern = pattern;
        self
    }

    /// Offers the model only the tools a glob matches (replaces earlier globs). An empty list
    /// offers no tool at all, like [`no_tools`](Self::no_tools); without a call, every tool of
    /// the runtime is offered.
    pub fn tools<I, S>(mut self, globs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.tools = Some(globs.into_iter().map(Into::into).collect());
        self
    }

    /// Offers the model no tool (`tools = []` in an agent file).
    pub fn no_tools(mut self) -> Self {
        self.config.tools = Some(Vec::new());
        self
    }

    /// Offers the model every tool of the runtime (the default; `tools` absent from an agent
    /// file).
    pub fn all_tools(mut self) -> Self {
        self.config.tools = None;
        self
    }

    /// Appends a permission rule (rules are evaluated in the order added).
    pub fn permission(mut self, rule: PermissionRule) -> Self {
        self.config.permissions.push(rule);
        self
    }

    /// Appends a rule over tool names: shorthand for [`AgentBuilder::permission`].
    pub fn permit(self, tool_glob: impl Into<String>, decision: Decision) -> Self {
        self.permission(PermissionRule::new(tool_glob, decision))
    }

    /// Model calls allowed in one turn's ReAct loop (must be ≥ 1).
    pub fn max_iterations(self, n: u32) -> Self {
        self.limit("limits.max_iterations", n, |l| &mut l.max_iterations)
    }

    /// Tools offered to the model per call (must be ≥ 1).
    pub fn max_tools(self, n: u32) -> Self {
        self.limit("limits.max_tools", n, |l| &mut l.max_tools)
    }

    /// Steps in one plan (must be ≥ 1).
    pub fn max_plan_steps(self, n: u32) -> Self {
        self.limit("limits.max_plan_steps", n, |l| &mut l.max_plan_steps)
    }

    /// Items retrieved per searchable section (must be ≥ 1).
    pub fn retrieval_top_k(self, n: u32) -> Self {
        self.limit("limits.retrieval_top_k", n, |l| &mut l.retrieval_top_k)
    }

    /// Nesting depth of delegation and handoff (must be ≥ 1).
    pub fn max_delegation_depth(self, n: u32) -> Self {
        self.limit("limits.max_delegation_depth", n, |l| &mut l.max_delegation_depth)
    }

    fn limit(mut self, field: &'static str, n: u32, slot: LimitSlot) -> Self {
        self.limits.push((field, n, slot));
        self
    }

    /// All limits at once.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// Spending caps.
    pub fn budget(mut self, budget: Budget) -> Self {
        self.config.budget = budget;
        self
    }

    /// Memory profile.
    pub fn memory(mut self, memory: MemoryProfile) -> Self {
        self.config.memory = memory;
        self
    }

    /// Settings of the research pattern.
    pub fn research(mut self, research: ResearchConfig) -> Self {
        self.config.research = research;
        self
    }

    /// Settings of the plan pattern.
    pub fn plan(mut self, plan: PlanConfig) -> Self {
        self.config.plan = plan;
        self
    }

    /// Settings of the findings pattern.
    pub fn findings(mut self, findings: FindingsConfig) -> Self {
        self.config.findings = findings;
        self
    }

    /// Settings of the router pattern.
    pub fn router(mut self, router: RouterConfig) -> Self {
        self.config.router = router;
        self
    }

    /// Adds a sub-agent the model may call as a tool named `name`.
    pub fn delegate(
        mut self,
        name: impl Into<String>,
        description: impl Into<String>,
        agent: &Agent,
    ) -> Self {
        self.config.delegates.push(Delegate::new(name, description, agent));
        self
    }

    /// Adds a remote A2A agent (see [`Delegate::a2a`]) the model may call as a tool.
    pub fn remote_delegate(mut self, delegate: Delegate) -> Self {
        self.config.delegates.push(delegate);
        self
    }

    /// Adds an agent the conversation may be handed to.
    pub fn handoff(mut self, agent: &Agent) -> Self {
        self.config.handoffs.push(agent.config().clone());
        self
    }

    /// Adds a metadata label.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.metadata.insert(key.into(), value.into());
        self
    }

    /// Validates and freezes the agent.
    pub fn build(self) -> Result<Agent, AgentError> {
        let mut config = self.config;
        if let Some(model) = self.model {
            config.model = ModelRef::new(&model)?;
        }
        for (role, model) in self.role_models {
            config.role_models.insert(role, ModelRef::new(&model)?);
        }
        for model in self.fallback_models {
            config.fallback_models.push(ModelRef::new(&model)?);
        }
        for (field, n, slot) in self.limits {
            *slot(&mut config.limits) =
                NonZeroU32::new(n).ok_or_else(|| AgentError::ZeroLimit { field: field.to_owned() })?;
        }
        Agent::from_config(config)
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// How a parse error outside every field names where it is.
const TOP_LEVEL: &str = "(top level)";

/// A field path as agent errors print it (`budget.max_cost_usd`, `tools[1]`).
fn field_name(path: &serde_path_to_error::Path) -> String {
    match path.to_string() {
        root if root == "." => TOP_LEVEL.to_owned(),
        path => path,
    }
}

/// The field of a JSON agent file at (1-based) `line` and `column`: the keys and array
/// indices open there.
fn json_field_at(text: &str, line: usize, column: usize) -> String {
    enum Frame {
        /// The key being read, and the one before it.
        Object(Option<String>, Option<String>),
        Array(usize),
    }
    let offset = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum::<usize>()
        .saturating_add(column.saturating_sub(1))
        .min(text.len());
    let mut stack: Vec<Frame> = Vec::new();
    let mut chars = text.char_indices().take_while(|(i, _)| *i < offset).peekable();
    let mut last_string: Option<String> = None;
    while let Some((_, c)) = chars.next() {
        match c {
            '"' => {
                let mut string = String::new();
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        c => string.push(c),
                    }
                }
                last_string = Some(string);
            }
            ':' => {
                if let Some(Frame::Object(key, _)) = stack.last_mut() {
                    *key = last_string.take();
                }
            }
            ',' => match stack.last_mut() {
                Some(Frame::Object(key, previous)) => *previous = key.take(),
                Some(Frame::Array(index)) => *index += 1,
                None => {}
            },
            '{' => stack.push(Frame::Object(None, None)),
            '[' => stack.push(Frame::Array(0)),
            '}' | ']' => {
                stack.pop();
            }
            _ => {}
        }
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            // Between fields, the one before names where the text went wrong.
            Frame::Object(Some(key), _) | Frame::Object(None, Some(key)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Object(None, None) => {}
            Frame::Array(index) => path.push_str(&format!("[{index}]")),
        }
    }
    if path.is_empty() { TOP_LEVEL.to_owned() } else { path }
}

/// The field of an agent file at byte `offset`: the key on that line (or the table header it
/// is), inside the last table header above it.
fn toml_field_at(text: &str, offset: usize) -> String {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or_default().trim();
    let header = |l: &str| {
        let l = l.trim();
        l.starts_with('[').then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned())
    };
    if let Some(table) = header(line) {
        return if table.is_empty() { TOP_LEVEL.to_owned() } else { table };
    }
    // The key of this line, or of the nearest line above that has one (an error at the end of
    // an unterminated value is on a later line than its key).
    let key_of = |l: &str| {
        l.split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_owned())
            .filter(|k| !k.is_empty() && !k.contains(char::is_whitespace))
    };
    let above = text[..line_start].lines().rev();
    let mut line_start = line_start;
    let key = key_of(line).or_else(|| {
        above.take_while(|l| header(l).is_none()).find_map(|l| {
            line_start -= l.len() + 1;
            key_of(l)
        })
    });
    let table = text[..line_start.min(text.len())].lines().rev().find_map(header).filter(|t| !t.is_empty());
    match (table, key) {
        (Some(table), Some(key)) => format!("{table}.{key}"),
        (Some(table), None) => table,
        (None, Some(key)) => key,
        (None, None) => TOP_LEVEL.to_owned(),
    }
}

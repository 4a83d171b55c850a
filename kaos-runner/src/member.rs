//! [`Member`]: one agent's prepared state — its tools, policy, clients, handoffs — shared by
//! every turn under that agent, and [`prepare`], which builds a Runner's agent and its handoff
//! team (the Runner's builder and a delegation both use it).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use kaos_agent::{Agent, AgentConfig, Delegate};
use kaos_providers::{ModelClient, TokenCounter, ToolDefinition, counter_for};
use kaos_runtime::Runtime;
use kaos_session::{ExtractiveSummarizer, MEMORY_SEARCH_TOOL, Sessions, Summarizer};
use kaos_tools::{Tool, ToolError, ToolSelector};

use crate::error::RunError;
use crate::guard::{Breakers, PermissionPolicy};
use crate::hooks::Hooks;
use crate::models::Models;

/// One agent's prepared state, fixed when the Runner is built: what every turn under that
/// agent reads.
pub(crate) struct Member {
    pub(crate) agent: Agent,
    pub(crate) runtime: Runtime,
    pub(crate) model: Arc<dyn ModelClient>,
    /// Clients of role and fallback models whose provider is not the main model's, by provider.
    pub(crate) role_clients: HashMap<String, Arc<dyn ModelClient>>,
    /// The client given to the builder, if any: sub-agents use it too.
    pub(crate) custom_model: Option<Arc<dyn ModelClient>>,
    /// The tools offered to the model, by name (selected once, at build time).
    pub(crate) tools: HashMap<String, Arc<dyn Tool>>,
    pub(crate) tool_definitions: kaos_providers::ToolSet,
    /// What every model call of a turn is offered: the tools, then the delegates and handoffs
    /// (shared by every request, never copied; `memory_search` is added per turn when needed).
    pub(crate) offered: kaos_providers::ToolSet,
    /// `offered` and then the memory search tool, built the first time a turn's context leaves
    /// searchable items out and shared by every such turn after.
    pub(crate) offered_with_search: OnceLock<kaos_providers::ToolSet>,
    /// The stored sessions: turns take a session through it (in-process lock, VFS lock,
    /// hydration from its cache or the log), so turns of a session run one after another in
    /// this process (in arrival order) and across processes, different sessions in parallel.
    pub(crate) sessions: Sessions,
    pub(crate) agent_name: Arc<str>,
    pub(crate) fingerprint: Arc<str>,
    /// Counts tokens for every memory and context budget decision.
    pub(crate) counter: Arc<dyn TokenCounter>,
    pub(crate) summarizer: Arc<dyn Summarizer>,
    /// Whether the agent's tool globs select the built-in memory search tool.
    pub(crate) offers_memory_search: bool,
    /// The agent's permission rules, compiled once.
    pub(crate) policy: PermissionPolicy,
    /// Circuit breakers of the tools and the model, shared by every turn (and sub-agents).
    pub(crate) breakers: Arc<Breakers>,
    /// The hooks every turn calls.
    pub(crate) hooks: Hooks,
    /// The delegation depth limit of runs this member starts (the outermost agent's).
    pub(crate) max_depth: u32,
    /// The `handoff_to_<name>` tools this agent offers.
    pub(crate) handoffs: Vec<Handoff>,
    /// Of the Runner's own agent only: every other agent of its handoff team, by name.
    pub(crate) team: HashMap<String, Arc<Member>>,
    /// Custom providers and the user's prices (sub-agents resolve their models with them).
    pub(crate) models: Models,
    /// Clients of the agent's remote (A2A) delegates, by delegate name.
    #[cfg(feature = "a2a")]
    pub(crate) remotes: HashMap<String, Arc<kaos_a2a::client::A2aClient>>,
}

impl Member {
    /// The agent of the team named `name` (this Runner's agent, or a handoff target).
    pub(crate) fn named(self: &Arc<Self>, name: &str) -> Option<Arc<Member>> {
        if *self.agent_name == *name { Some(self.clone()) } else { self.team.get(name).cloned() }
    }

    /// The agent of the team whose fingerprint is `fingerprint`.
    pub(crate) fn member_by_fingerprint(self: &Arc<Self>, fingerprint: &str) -> Option<Arc<Member>> {
        if *self.fingerprint == *fingerprint {
            return Some(self.clone());
        }
        self.team.values().find(|m| *m.fingerprint == *fingerprint).cloned()
    }

    /// The client serving a request for `model` (`provider:model`): the one of its provider.
    pub(crate) fn client_for(&self, model: &str) -> &Arc<dyn ModelClient> {
        model.split_once(':').and_then(|(provider, _)| self.role_clients.get(provider)).unwrap_or(&self.model)
    }

    /// The handoff target of a tool this agent offers, if `tool` is one.
    pub(crate) fn handoff_target(&self, tool: &str) -> Option<&str> {
        self.handoffs.iter().find(|h| h.definition.name == tool).map(|h| h.target.as_str())
    }

    /// The delegate the model calls by `name`, if any.
    pub(crate) fn delegate(&self, name: &str) -> Option<&Delegate> {
        self.agent.config().delegates.iter().find(|d| d.name == name)
    }
}

/// The tools the model calls `agent`'s delegates with (`{"task": string}`).
fn delegate_definitions(agent: &Agent) -> impl Iterator<Item = ToolDefinition> + '_ {
    agent.config().delegates.iter().map(|d| ToolDefinition {
        name: d.name.clone(),
        description: d.description.clone(),
        parameters: serde_json::json!({
            "type": "object",
            "properties": {"task": {"type": "string", "description": "What the sub-agent should do."}},
            "required": ["task"],
            "additionalProperties": false
        }),
    })
}

/// Sessions whose memory a Runner keeps between turns by default.
pub const DEFAULT_SESSION_CACHE: usize = 1024;

/// How much memory (about, in bytes) a Runner's session cache holds at most by default: 64 MiB.
pub const DEFAULT_SESSION_CACHE_BYTES: usize = kaos_session::DEFAULT_CACHE_BYTES;

/// What a Runner's team of members is prepared from.
pub(crate) struct Preparation<'a> {
    pub(crate) runtime: &'a Runtime,
    /// A client for every model (else each is resolved from its `provider:model`).
    pub(crate) model: Option<Arc<dyn ModelClient>>,
    pub(crate) counter: Option<Arc<dyn TokenCounter>>,
    pub(crate) summarizer: Option<Arc<dyn Summarizer>>,
    /// Sessions kept in the cache between turns, and the bytes of memory they may hold.
    pub(crate) cache: (usize, usize),
    pub(crate) breakers: Arc<Breakers>,
    pub(crate) hooks: &'a Hooks,
    /// Custom providers and the user's prices.
    pub(crate) models: Models,
}

/// Prepares `agent` and every agent reachable from it by handoff: tools selected, policies
/// compiled, clients resolved (API keys from the runtime's settings first, then the
/// environment). Two different agents of the team with one name are [`RunError::Team`].
pub(crate) fn prepare(agent: &Agent, prep: Preparation<'_>) -> Result<Arc<Member>, RunError> {
    let providers = &prep.runtime.settings().providers;
    let env = |name: &str| std::env::var(name).ok();
    // A custom provider's client, else a built-in vendor's configured by the runtime's settings
    // first (overrides, context, environment, `.env`), then by the vendor's own variables.
    let resolve = |model: &kaos_agent::ModelRef| prep.models.resolve(model, providers, &env);
    // The agent's client, and one per other provider its role models name. A client given
    // to the builder serves every model of every role.
    let clients = |agent: &Agent| -> Result<Clients, RunError> {
        if let Some(model) = &prep.model {
            return Ok((model.clone(), HashMap::new()));
        }
        let main = resolve(agent.model())?;
        let mut others = HashMap::new();
        for role_model in agent.config().role_models.values().chain(agent.fallback_models()) {
            let provider = role_model.provider();
            if provider != agent.model().provider() && !others.contains_key(provider) {
                others.insert(provider.to_owned(), resolve(role_model)?);
            }
        }
        Ok((main, others))
    };
    let counter =
        prep.counter.clone().unwrap_or_else(|| counter_for(agent.model().provider(), agent.model().model()));
    let summarizer =
        prep.summarizer.clone().unwrap_or_else(|| Arc::new(ExtractiveSummarizer::new(counter.clone())));
    let common = Common {
        runtime: prep.runtime,
        counter,
        summarizer,
        breakers: prep.breakers.clone(),
        hooks: prep.hooks,
        max_depth: agent.limits().max_delegation_depth.get(),
        models: prep.models.clone(),
    };
    let root_name = agent.name().to_owned();
    let mut team = HashMap::new();
    for config in team_of(agent.config())? {
        let agent = Agent::from_config(config)?;
        let agent_clients = clients(&agent)?;
        let mut member = common.member(agent, agent_clients, Some(&root_name), (0, 0))?;
        member.custom_model = prep.model.clone();
        team.insert(member.agent_name.to_string(), Arc::new(member));
    }
    let root_clients = clients(agent)?;
    let mut member = common.member(agent.clone(), root_clients, None, prep.cache)?;
    member.custom_model = prep.model.clone();
    member.team = team;
    Ok(Arc::new(member))
}

/// An agent's model client, and clients by provider for role models of other providers.
type Clients = (Arc<dyn ModelClient>, HashMap<String, Arc<dyn ModelClient>>);

/// What every agent of a Runner's team shares.
struct Common<'a> {
    runtime: &'a Runtime,
    counter: Arc<dyn TokenCounter>,
    summarizer: Arc<dyn Summarizer>,
    breakers: Arc<Breakers>,
    hooks: &'a Hooks,
    max_depth: u32,
    models: Models,
}

impl Common<'_> {
    /// The shared state of one agent of the team; `root` names the agent handoff targets hand
    /// back to (none for the root itself).
    fn member(
        &self,
        agent: Agent,
        (model, role_clients): Clients,
        root: Option<&str>,
        (cache, cache_bytes): (usize, usize),
    ) -> Result<Member, RunError> {
        // No `tools` list offers every tool; an empty one offers none.
        let globs = agent.tools();
        let selector =
            globs.map_or_else(|| Ok(ToolSelector::all()), ToolSelector::new).map_err(|e| match e {
                ToolError::InvalidGlob { pattern, message } => RunError::InvalidToolGlob {
                    field: globs
                        .into_iter()
                        .flatten()
                        .position(|g| *g == pattern)
                        .map_or_else(|| "tools".to_owned(), |i| format!("tools[{i}]")),
                    glob: pattern,
                    message,
                },
                _ => RunError::Internal("selecting tools failed other than by a glob"),
            })?;
        let max_tools = agent.limits().max_tools.get() as usize;
        let selected = self.runtime.tools().select(&selector, max_tools);
        let tool_definitions: kaos_providers::ToolSet = selected
            .iter()
            .map(|tool| {
                let spec = tool.spec();
                ToolDefinition {
                    name: spec.name.to_string(),
                    description: spec.description.clone(),
                    parameters: spec.input_schema.clone(),
                }
            })
            .collect::<Vec<_>>()
            .into();
        let tools = selected.into_iter().map(|tool| (tool.spec().name.to_string(), tool)).collect();
        #[cfg(feature = "a2a")]
        let remotes = remote_clients(&agent)?;
        #[cfg(not(feature = "a2a"))]
        refuse_remote_delegates(&agent)?;
        let mut handoffs: Vec<Handoff> = agent.config().handoffs.iter().map(Handoff::to).collect();
        if let Some(root) = root {
            handoffs.push(Handoff::back_to(root));
        }
        let offered = tool_definitions
            .iter()
            .cloned()
            .chain(delegate_definitions(&agent))
            .chain(handoffs.iter().map(|h| h.definition.clone()))
            .collect::<Vec<_>>()
            .into();
        Ok(Member {
            agent_name: agent.name().into(),
            fingerprint: agent.fingerprint().as_str().into(),
            offers_memory_search: selector.matches(MEMORY_SEARCH_TOOL),
            policy: PermissionPolicy::from_agent(&agent)?,
            agent,
            runtime: self.runtime.clone(),
            model,
            role_clients,
            custom_model: None,
            tools,
            tool_definitions,
            offered,
            offered_with_search: OnceLock::new(),
            sessions: Sessions::with_cache_limits(self.runtime.vfs().clone(), cache, cache_bytes),
            counter: self.counter.clone(),
            summarizer: self.summarizer.clone(),
            breakers: self.breakers.clone(),
            hooks: self.hooks.clone(),
            max_depth: self.max_depth,
            handoffs,
            team: HashMap::new(),
            models: self.models.clone(),
            #[cfg(feature = "a2a")]
            remotes,
        })
    }
}

/// Clients of `agent`'s remote (A2A) delegates, each with its bearer token read from the
/// environment variable its `token_env` names (unset or not Unicode: an error naming the
/// delegate and the variable).
#[cfg(feature = "a2a")]
fn remote_clients(agent: &Agent) -> Result<HashMap<String, Arc<kaos_a2a::client::A2aClient>>, RunError> {
    let mut clients = HashMap::new();
    for delegate in &agent.config().delegates {
        let Some(kaos_agent::DelegateTarget::Remote { url, token_env }) = delegate.target() else { continue };
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| RunError::RemoteDelegate {
            delegate: delegate.name.clone(),
            source,
        };
        let token = match token_env {
            Some(var) => match std::env::var(var) {
                Ok(token) if !token.is_empty() => Some(kaos_runtime::SecretString::from(token)),
                _ => {
                    return Err(failed(
                        format!("the environment variable {var} holding its token is not set").into(),
                    ));
                }
            },
            None => None,
        };
        let client = kaos_a2a::client::A2aClient::new(url, token).map_err(|e| failed(Box::new(e)))?;
        clients.insert(delegate.name.clone(), Arc::new(client));
    }
    Ok(clients)
}

/// Without the `a2a` feature, an agent with a remote delegate is refused.
#[cfg(not(feature = "a2a"))]
fn refuse_remote_delegates(agent: &Agent) -> Result<(), RunError> {
    match agent.config().delegates.iter().find(|d| d.a2a.is_some()) {
        Some(delegate) => Err(RunError::RemoteDelegate {
            delegate: delegate.name.clone(),
            source: "remote (A2A) delegates need kaos-runner's `a2a` feature".into(),
        }),
        None => Ok(()),
    }
}

/// A `handoff_to_<name>` tool an agent offers.
#[derive(Debug, Clone)]
pub(crate) struct Handoff {
    /// The agent it hands the conversation to.
    pub(crate) target: String,
    /// The tool offered to the model.
    pub(crate) definition: ToolDefinition,
}

/// The prefix of handoff tools.
pub(crate) const HANDOFF_PREFIX: &str = "handoff_to_";

impl Handoff {
    fn to(config: &AgentConfig) -> Self {
        let about = config.metadata.get("description").cloned().unwrap_or_else(|| {
            config.instructions.lines().next().unwrap_or_default().chars().take(200).collect()
        });
        Self::new(&config.name, &about)
    }

    fn back_to(root: &str) -> Self {
        Self::new(root, "the agent the conversation started with")
    }

    fn new(target: &str, about: &str) -> Self {
        let definition = ToolDefinition {
            name: format!("{HANDOFF_PREFIX}{target}"),
            description: format!(
                "Hand the conversation over to the agent `{target}` ({about}). It answers from \
                 now on, in this turn and the next ones, until it hands the conversation back."
            ),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {"reason": {"type": "string", "description": "Why, for the next agent."}},
                "additionalProperties": false
            }),
        };
        Self { target: target.to_owned(), definition }
    }
}

/// Every agent reachable from `root` through handoffs (not `root` itself), each once. Two
/// different configurations with one name cannot both be addressed by `handoff_to_<name>`.
fn team_of(root: &AgentConfig) -> Result<Vec<AgentConfig>, RunError> {
    let mut team: Vec<AgentConfig> = Vec::new();
    let mut queue: Vec<&AgentConfig> = root.handoffs.iter().collect();
    while let Some(config) = queue.pop() {
        if config.name == root.name {
            continue;
        }
        match team.iter().find(|known| known.name == config.name) {
            Some(known) if known == config => continue,
            Some(_) => return Err(RunError::Team { name: config.name.clone() }),
            None => {}
        }
        team.push(config.clone());
        queue.extend(config.handoffs.iter());
    }
    Ok(team)
}

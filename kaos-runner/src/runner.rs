use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use kaos_agent::{Agent, AgentConfig, Budget, ModelRef, PermissionRule};
use kaos_providers::{
    ModelClient, ProviderError, RetryClient, RetryPolicy, ScriptedClient, TokenCounter, ToolDefinition,
    counter_for,
};
use kaos_runtime::Runtime;
use kaos_tools::{Tool, ToolSelector};
use tokio::sync::mpsc;

use crate::events::Emitter;
use crate::guard::{BreakerConfig, Breakers};
use crate::hooks::{Hook, HookFailure, Hooks};
use crate::pause::{Approval, RunState};
use crate::permissions::PermissionPolicy;
use crate::turn::Start;
use crate::{RunError, RunStream, SessionId, TurnResponse, fold, turn};
use kaos_session::{ExtractiveSummarizer, MEMORY_SEARCH_TOOL, Sessions, Summarizer};

/// The engine: drives one [`Agent`] against one [`Runtime`] for any number of sessions.
///
/// Cheap to clone (clones share everything) and safe to use from many tasks at once: turns
/// on different sessions run in parallel, turns on the same session one after another.
#[derive(Clone)]
pub struct Runner {
    pub(crate) shared: Arc<Shared>,
}

/// What every turn of a Runner reads; fixed when the Runner is built.
pub(crate) struct Shared {
    pub(crate) agent: Agent,
    pub(crate) runtime: Runtime,
    pub(crate) model: Arc<dyn ModelClient>,
    /// Clients of role and fallback models whose provider is not the main model's, by provider.
    pub(crate) role_clients: HashMap<String, Arc<dyn ModelClient>>,
    /// The client given to the builder, if any: sub-agents use it too.
    pub(crate) custom_model: Option<Arc<dyn ModelClient>>,
    /// The tools offered to the model, by name (selected once, at build time).
    pub(crate) tools: HashMap<String, Arc<dyn Tool>>,
    pub(crate) tool_definitions: Vec<ToolDefinition>,
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
    /// How deep in delegation this Runner runs: 0 for a Runner built by a user, 1 for a
    /// sub-agent, …
    pub(crate) depth: u32,
    /// The delegation depth limit, from the outermost agent.
    pub(crate) max_depth: u32,
    /// The `handoff_to_<name>` tools this agent offers.
    pub(crate) handoffs: Vec<Handoff>,
    /// Of the Runner's own agent only: every other agent of its handoff team, by name.
    pub(crate) team: HashMap<String, Arc<Shared>>,
}

impl Shared {
    /// The agent of the team named `name` (this Runner's agent, or a handoff target).
    pub(crate) fn member(self: &Arc<Self>, name: &str) -> Option<Arc<Shared>> {
        if *self.agent_name == *name { Some(self.clone()) } else { self.team.get(name).cloned() }
    }

    /// The agent of the team whose fingerprint is `fingerprint`.
    pub(crate) fn member_by_fingerprint(self: &Arc<Self>, fingerprint: &str) -> Option<Arc<Shared>> {
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
}

/// Options of one request, on top of the agent's configuration.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RunOptions {
    /// Permission rules evaluated before the agent's own (e.g. a caller's approvals).
    pub permissions: Vec<PermissionRule>,
    /// A cost cap for this turn; the tighter of it and the agent's applies.
    pub max_cost_usd: Option<f64>,
    /// A sub-agent's turn: the parent's policy and remaining budget replace the agent's.
    pub(crate) inherited: Option<(PermissionPolicy, Budget)>,
}

impl RunOptions {
    /// With an extra permission rule, evaluated before the agent's rules.
    pub fn with_permission(mut self, rule: PermissionRule) -> Self {
        self.permissions.push(rule);
        self
    }

    /// With a cost cap for this turn.
    pub fn with_max_cost_usd(mut self, usd: f64) -> Self {
        self.max_cost_usd = Some(usd);
        self
    }

    /// The policy of a run: the agent's, or the extra rules followed by the agent's.
    pub(crate) fn policy(
        &self,
        agent_policy: &PermissionPolicy,
        agent_rules: &[PermissionRule],
    ) -> Result<PermissionPolicy, RunError> {
        if let Some((policy, _)) = &self.inherited {
            return Ok(policy.clone());
        }
        if self.permissions.is_empty() {
            return Ok(agent_policy.clone());
        }
        let rules: Vec<PermissionRule> = self.permissions.iter().chain(agent_rules).cloned().collect();
        PermissionPolicy::from_rules(&rules)
    }

    /// The caps of a run: the agent's, tightened by this request's.
    pub(crate) fn budget(&self, agent: &Budget) -> Budget {
        let mut budget = match &self.inherited {
            Some((_, budget)) => *budget,
            None => *agent,
        };
        if let Some(usd) = self.max_cost_usd {
            budget.max_cost_usd = Some(budget.max_cost_usd.map_or(usd, |cap| cap.min(usd)));
        }
        budget
    }
}

/// Sessions whose memory a Runner keeps between turns by default.
pub const DEFAULT_SESSION_CACHE: usize = 1024;

impl Runner {
    /// A builder for a Runner of `agent` in `runtime`.
    pub fn builder(agent: Agent, runtime: Runtime) -> RunnerBuilder {
        RunnerBuilder {
            breakers: BreakerConfig::default(),
            hooks: Hooks::new(),
            agent,
            runtime,
            model: None,
            counter: None,
            summarizer: None,
            cache: DEFAULT_SESSION_CACHE,
            parent: None,
        }
    }

    /// Runs one turn: `message` from the user in session `session_id`, until the model's
    /// final answer (or a stop, or a pause for approval). The same as folding [`Runner::run`]
    /// with [`fold`].
    pub async fn turn(
        &self,
        message: impl Into<String>,
        session_id: impl AsRef<str>,
    ) -> Result<TurnResponse, RunError> {
        fold(self.run(message, session_id)).await
    }

    /// [`Runner::turn`] with per-request options (extra permission rules, a tighter cost cap).
    pub async fn turn_with(
        &self,
        message: impl Into<String>,
        session_id: impl AsRef<str>,
        options: RunOptions,
    ) -> Result<TurnResponse, RunError> {
        fold(self.run_with(message, session_id, options)).await
    }

    /// Runs one turn as a stream of typed events. The turn progresses as the stream is polled;
    /// dropping the stream cancels the turn before it persists anything.
    pub fn run(&self, message: impl Into<String>, session_id: impl AsRef<str>) -> RunStream {
        self.run_with(message, session_id, RunOptions::default())
    }

    /// [`Runner::run`] with per-request options.
    pub fn run_with(
        &self,
        message: impl Into<String>,
        session_id: impl AsRef<str>,
        options: RunOptions,
    ) -> RunStream {
        let run_id: Arc<str> = format!("run_{}", uuid::Uuid::now_v7().simple()).into();
        self.start(session_id.as_ref(), run_id, (0, 0), Start::Fresh { message: message.into(), options })
    }

    /// Continues a run paused for approval — the same run, from the pending call — with a
    /// person's answer: approved, the call runs (once) and the turn goes on; denied, the model
    /// is told so and the turn goes on. Works in another process than the one that paused,
    /// given a Runner of the same agent over the same VFS. A stale, tampered or already
    /// resumed state fails with [`RunError::RunState`].
    pub fn resume(&self, state: RunState, approval: Approval) -> RunStream {
        let run_id: Arc<str> = state.run_id.as_str().into();
        let position = (state.next_seq, state.next_span);
        let session = state.session_id.clone();
        self.start(&session, run_id, position, Start::Resume { state: Box::new(state), approval })
    }

    /// [`Runner::resume`], folded into the turn's response.
    pub async fn resume_turn(&self, state: RunState, approval: Approval) -> Result<TurnResponse, RunError> {
        fold(self.resume(state, approval)).await
    }

    /// The stored state of a paused run (see [`RunState`]).
    pub async fn run_state(&self, run_id: &str) -> Result<RunState, RunError> {
        turn::load_state(&self.shared, run_id).await
    }

    fn start(&self, session_id: &str, run_id: Arc<str>, (seq, span): (u64, u64), start: Start) -> RunStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = self.shared.clone();
        let session = SessionId::new(session_id);
        let run = async move {
            let session = session?;
            let emit = Emitter::new(
                tx,
                session.as_arc().clone(),
                run_id,
                shared.agent_name.clone(),
                shared.fingerprint.clone(),
            )
            .continuing(seq, span)
            .with_hooks(shared.hooks.clone());
            turn::execute(&shared, &session, start, &emit).await
        };
        RunStream::new(Box::pin(run), rx)
    }

    /// The agent.
    pub fn agent(&self) -> &Agent {
        &self.shared.agent
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.shared.runtime
    }

    /// The names of the tools offered to the model, in registry order.
    pub fn tool_names(&self) -> Vec<&str> {
        self.shared.tool_definitions.iter().map(|d| d.name.as_str()).collect()
    }
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("agent", &self.shared.agent)
            .field("model", &self.shared.model)
            .field("tools", &self.tool_names())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Runner`].
#[derive(Debug)]
pub struct RunnerBuilder {
    agent: Agent,
    runtime: Runtime,
    model: Option<Arc<dyn ModelClient>>,
    counter: Option<Arc<dyn TokenCounter>>,
    summarizer: Option<Arc<dyn Summarizer>>,
    cache: usize,
    breakers: BreakerConfig,
    hooks: Hooks,
    /// For a sub-agent: the parent's breakers, and the depth and depth limit.
    parent: Option<(Arc<Breakers>, u32, u32)>,
}

impl RunnerBuilder {
    /// Uses this model client instead of resolving the agent's `provider:model` (tests pass a
    /// [`ScriptedClient`]; users may pass any client of their own).
    pub fn model(mut self, model: Arc<dyn ModelClient>) -> Self {
        self.model = Some(model);
        self
    }

    /// Like [`RunnerBuilder::model`], taking the client by value.
    pub fn model_client(self, model: impl ModelClient + 'static) -> Self {
        self.model(Arc::new(model))
    }

    /// Counts tokens with `counter` instead of the best counter for the agent's model
    /// ([`kaos_providers::counter_for`]).
    pub fn token_counter(mut self, counter: Arc<dyn TokenCounter>) -> Self {
        self.counter = Some(counter);
        self
    }

    /// Summarizes evicted memory with `summarizer` (e.g. a [`ModelSummarizer`](crate::ModelSummarizer))
    /// instead of the default [`ExtractiveSummarizer`], which never calls a model.
    pub fn summarizer(mut self, summarizer: Arc<dyn Summarizer>) -> Self {
        self.summarizer = Some(summarizer);
        self
    }

    /// Keeps the memory of up to `sessions` recently used sessions between turns
    /// [`DEFAULT_SESSION_CACHE`], so their next turn need not re-read them. A cached session is
    /// used only while its log is unchanged (checked with one `stat` per turn), so sessions
    /// shared with other processes stay correct. `0` turns the cache off.
    pub fn session_cache(mut self, sessions: usize) -> Self {
        self.cache = sessions;
        self
    }

    /// Adds a hook, called after those added before it (see [`crate::hooks`]).
    pub fn hook(mut self, hook: impl Hook + 'static) -> Self {
        self.hooks = self.hooks.with(hook);
        self
    }

    /// What a failing hook does: report and carry on ([`HookFailure::Open`], the default), or
    /// report and act as the most restrictive answer ([`HookFailure::Closed`]).
    pub fn hook_failure(mut self, failure: HookFailure) -> Self {
        self.hooks = self.hooks.with_failure(failure);
        self
    }

    /// Circuit breakers for tools and the model [5 consecutive failures, 30 s cool-down].
    pub fn breakers(mut self, config: BreakerConfig) -> Self {
        self.breakers = config;
        self
    }

    /// A sub-agent's Runner: the parent's hooks and breakers, one level deeper.
    pub(crate) fn sub_agent(mut self, parent: &Shared) -> Self {
        self.hooks = parent.hooks.clone();
        self.parent = Some((parent.breakers.clone(), parent.depth + 1, parent.max_depth));
        self
    }

    /// Selects the agent's tools from the runtime (globs, capped at `limits.max_tools`),
    /// resolves the model, and builds the Runner. Tools registered in the runtime later are
    /// not seen by this Runner. Every agent the conversation may be handed to (the agent's
    /// `handoffs`, and theirs, transitively) is prepared too; two different agents of that
    /// team with one name are a [`RunError::Config`].
    pub fn build(self) -> Result<Runner, RunError> {
        let providers = &self.runtime.settings().providers;
        // API keys come from the runtime's settings (overrides, context, environment, `.env`),
        // everything else from the environment.
        let from_settings = |name: &str| {
            let key = match name {
                "OPENAI_API_KEY" => &providers.openai_api_key,
                "ANTHROPIC_API_KEY" => &providers.anthropic_api_key,
                "GEMINI_API_KEY" | "GOOGLE_API_KEY" => &providers.gemini_api_key,
                _ => &None,
            };
            key.as_ref().map(|secret| secret.expose().to_owned()).or_else(|| std::env::var(name).ok())
        };
        // The agent's client, and one per other provider its role models name. A client given
        // to the builder serves every model of every role.
        let clients = |agent: &Agent| -> Result<Clients, RunError> {
            if let Some(model) = &self.model {
                return Ok((model.clone(), HashMap::new()));
            }
            let main = resolve_model_with(agent.model(), &from_settings)?;
            let mut others = HashMap::new();
            for role_model in agent.config().role_models.values().chain(agent.fallback_models()) {
                let provider = role_model.provider();
                if provider != agent.model().provider() && !others.contains_key(provider) {
                    others.insert(provider.to_owned(), resolve_model_with(role_model, &from_settings)?);
                }
            }
            Ok((main, others))
        };
        let counter = self
            .counter
            .clone()
            .unwrap_or_else(|| counter_for(self.agent.model().provider(), self.agent.model().model()));
        let summarizer =
            self.summarizer.clone().unwrap_or_else(|| Arc::new(ExtractiveSummarizer::new(counter.clone())));
        let (breakers, depth, max_depth) = match &self.parent {
            Some(parent) => parent.clone(),
            None => {
                (Arc::new(Breakers::new(self.breakers)), 0, self.agent.limits().max_delegation_depth.get())
            }
        };
        let common = Common {
            runtime: &self.runtime,
            counter,
            summarizer,
            breakers,
            hooks: &self.hooks,
            depth,
            max_depth,
        };
        let root_name = self.agent.name().to_owned();
        let mut team = HashMap::new();
        for config in team_of(self.agent.config())? {
            let agent = Agent::from_config(config).map_err(|e| RunError::Config(e.to_string()))?;
            let agent_clients = clients(&agent)?;
            let mut member = common.shared(agent, agent_clients, Some(&root_name), 0)?;
            member.custom_model = self.model.clone();
            team.insert(member.agent_name.to_string(), Arc::new(member));
        }
        let root_clients = clients(&self.agent)?;
        let mut shared = common.shared(self.agent.clone(), root_clients, None, self.cache)?;
        shared.custom_model = self.model.clone();
        shared.team = team;
        Ok(Runner { shared: Arc::new(shared) })
    }
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
    depth: u32,
    max_depth: u32,
}

impl Common<'_> {
    /// The shared state of one agent of the team; `root` names the agent handoff targets hand
    /// back to (none for the root itself).
    fn shared(
        &self,
        agent: Agent,
        (model, role_clients): Clients,
        root: Option<&str>,
        cache: usize,
    ) -> Result<Shared, RunError> {
        let selector = ToolSelector::new(agent.tools()).map_err(|e| RunError::Config(e.to_string()))?;
        let max_tools = agent.limits().max_tools.get() as usize;
        let selected = self.runtime.tools().select(&selector, max_tools);
        let tool_definitions = selected
            .iter()
            .map(|tool| {
                let spec = tool.spec();
                ToolDefinition {
                    name: spec.name.to_string(),
                    description: spec.description.clone(),
                    parameters: spec.input_schema.clone(),
                }
            })
            .collect();
        let tools = selected.into_iter().map(|tool| (tool.spec().name.to_string(), tool)).collect();
        let mut handoffs: Vec<Handoff> = agent.config().handoffs.iter().map(Handoff::to).collect();
        if let Some(root) = root {
            handoffs.push(Handoff::back_to(root));
        }
        Ok(Shared {
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
            sessions: Sessions::with_cache(self.runtime.vfs().clone(), cache),
            counter: self.counter.clone(),
            summarizer: self.summarizer.clone(),
            breakers: self.breakers.clone(),
            hooks: self.hooks.clone(),
            depth: self.depth,
            max_depth: self.max_depth,
            handoffs,
            team: HashMap::new(),
        })
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
            Some(_) => {
                return Err(RunError::Config(format!(
                    "two different handoff agents are named {:?}; handoff targets need unique names",
                    config.name
                )));
            }
            None => {}
        }
        team.push(config.clone());
        queue.extend(config.handoffs.iter());
    }
    Ok(team)
}

/// The client for a `provider:model` reference, configured from the environment.
///
/// | provider | Cargo feature | settings read |
/// |---|---|---|
/// | `scripted` (only `scripted:echo`) | always | none |
/// | `openai` | `openai` | `OPENAI_API_KEY` |
/// | `anthropic` | `anthropic` | `ANTHROPIC_API_KEY` |
/// | `gemini` | `gemini` | `GEMINI_API_KEY`, else `GOOGLE_API_KEY` |
/// | `openai-compatible` | `openai-compatible` | `KAOS_OPENAI_COMPATIBLE_BASE_URL`, optional `KAOS_OPENAI_COMPATIBLE_API_KEY` |
///
/// Vendor clients come wrapped in a [`RetryClient`](kaos_providers::RetryClient) with the
/// default [`RetryPolicy`](kaos_providers::RetryPolicy) (3 retries, backoff capped at 60 s,
/// honouring `Retry-After`). A provider whose feature is not compiled in is
/// [`ProviderError::NotCompiled`] naming the feature; a missing key is
/// [`ProviderError::MissingSetting`] naming the variable. Keys are held as
/// [`SecretString`](kaos_providers::SecretString)s and never printed.
///
/// ```
/// use kaos_agent::ModelRef;
/// use kaos_providers::ProviderError;
/// use kaos_runner::{RunError, resolve_model};
///
/// let echo = resolve_model(&ModelRef::new("scripted:echo")?)?;
/// assert_eq!(echo.capabilities().streaming, true);
/// match resolve_model(&ModelRef::new("acme:large")?) {
///     Err(RunError::Provider(ProviderError::UnknownModel { model, .. })) => assert_eq!(model, "acme:large"),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn resolve_model(model: &ModelRef) -> Result<Arc<dyn ModelClient>, RunError> {
    resolve_model_with(model, &|name| std::env::var(name).ok())
}

/// [`resolve_model`] reading settings through `env` (tests pass a map).
pub(crate) fn resolve_model_with(
    model: &ModelRef,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn ModelClient>, RunError> {
    let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    let client = match model.provider() {
        // Nobody can read a resolved client's recordings: keeping them would only grow a
        // long-running process (`kaos serve`) by every request it is sent.
        "scripted" if model.model() == "echo" => return Ok(Arc::new(ScriptedClient::echo().without_recording())),
        "scripted" => Err(ProviderError::UnknownModel {
            model: model.to_string(),
            message: format!(
                "the only built-in scripted model is 'scripted:echo'; pass a ScriptedClient for {:?} with RunnerBuilder::model",
                model.model()
            ),
        }),
        "openai" => vendors::openai(&env),
        "anthropic" => vendors::anthropic(&env),
        "gemini" => vendors::gemini(&env),
        "openai-compatible" => vendors::openai_compatible(&env),
        _ => Err(ProviderError::UnknownModel {
            model: model.to_string(),
            message: "unknown provider (known: scripted, openai, anthropic, gemini, openai-compatible); pass a client with RunnerBuilder::model".into(),
        }),
    }?;
    Ok(Arc::new(RetryClient::new(client, RetryPolicy::default())))
}

/// One constructor per vendor: the client when its feature is compiled, else `NotCompiled`.
mod vendors {
    #![allow(unused_imports)]
    use std::sync::Arc;

    use kaos_providers::{ModelClient, ProviderError, SecretString};

    type Env<'a> = dyn Fn(&str) -> Option<String> + 'a;
    type Built = Result<Arc<dyn ModelClient>, ProviderError>;

    #[allow(dead_code)]
    fn require(env: &Env<'_>, provider: &str, variables: &[&str]) -> Result<String, ProviderError> {
        variables.iter().find_map(|v| env(v)).ok_or_else(|| ProviderError::MissingSetting {
            provider: provider.into(),
            variable: variables.join(" or "),
        })
    }

    #[allow(dead_code)]
    fn not_compiled(provider: &str) -> Built {
        Err(ProviderError::NotCompiled { provider: provider.into(), feature: provider.into() })
    }

    pub(super) fn openai(env: &Env<'_>) -> Built {
        #[cfg(feature = "openai")]
        {
            let key = require(env, "openai", &["OPENAI_API_KEY"])?;
            Ok(Arc::new(kaos_providers::OpenAiClient::new(SecretString::new(key))))
        }
        #[cfg(not(feature = "openai"))]
        {
            let _ = env;
            not_compiled("openai")
        }
    }

    pub(super) fn anthropic(env: &Env<'_>) -> Built {
        #[cfg(feature = "anthropic")]
        {
            let key = require(env, "anthropic", &["ANTHROPIC_API_KEY"])?;
            Ok(Arc::new(kaos_providers::AnthropicClient::new(SecretString::new(key))))
        }
        #[cfg(not(feature = "anthropic"))]
        {
            let _ = env;
            not_compiled("anthropic")
        }
    }

    pub(super) fn gemini(env: &Env<'_>) -> Built {
        #[cfg(feature = "gemini")]
        {
            let key = require(env, "gemini", &["GEMINI_API_KEY", "GOOGLE_API_KEY"])?;
            Ok(Arc::new(kaos_providers::GeminiClient::new(SecretString::new(key))))
        }
        #[cfg(not(feature = "gemini"))]
        {
            let _ = env;
            not_compiled("gemini")
        }
    }

    pub(super) fn openai_compatible(env: &Env<'_>) -> Built {
        #[cfg(feature = "openai-compatible")]
        {
            let base_url = require(env, "openai-compatible", &["KAOS_OPENAI_COMPATIBLE_BASE_URL"])?;
            let key = env("KAOS_OPENAI_COMPATIBLE_API_KEY").map(SecretString::new);
            Ok(Arc::new(kaos_providers::OpenAiCompatibleClient::new(&base_url, key)))
        }
        #[cfg(not(feature = "openai-compatible"))]
        {
            let _ = env;
            not_compiled("openai-compatible")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(model: &str, vars: &[(&str, &str)]) -> Result<Arc<dyn ModelClient>, ProviderError> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let model = ModelRef::new(model).unwrap_or_else(|e| unreachable!("{e}"));
        resolve_model_with(&model, &|name| vars.get(name).cloned()).map_err(|e| match e {
            RunError::Provider(e) => e,
            other => unreachable!("{other}"),
        })
    }

    fn error(model: &str, vars: &[(&str, &str)]) -> ProviderError {
        match resolve(model, vars) {
            Err(e) => e,
            Ok(client) => unreachable!("{client:?}"),
        }
    }

    #[test]
    fn unknown_providers_and_scripted_models_are_typed_errors() {
        assert!(resolve("scripted:echo", &[]).is_ok());
        assert!(matches!(error("scripted:other", &[]), ProviderError::UnknownModel { .. }));
        assert!(matches!(error("acme:big", &[]), ProviderError::UnknownModel { .. }));
    }

    /// The default offline model answers a long-running process's turns without keeping a
    /// copy of each request (a `kaos serve` grew by every request it was ever sent).
    #[tokio::test]
    async fn the_resolved_echo_model_keeps_no_requests() {
        let client = resolve("scripted:echo", &[]).unwrap_or_else(|e| unreachable!("{e}"));
        for i in 0..3 {
            let message = kaos_providers::Message::user(format!("hi {i}"));
            let request = kaos_providers::ModelRequest::new("scripted:echo", vec![message]);
            let response = client.complete(&request).await.unwrap_or_else(|e| unreachable!("{e}"));
            assert!(response.text.contains(&format!("hi {i}")), "{response:?}");
        }
        let debug = format!("{client:?}");
        assert!(debug.contains("recorded: 0"), "{debug}");
    }

    /// Every vendor either names the missing variable (feature on) or the feature (off).
    #[test]
    fn each_vendor_names_its_missing_setting_or_its_feature() {
        let cases = [
            ("openai:gpt-4.1-mini", "openai", "OPENAI_API_KEY", cfg!(feature = "openai")),
            ("anthropic:claude-haiku-4-5", "anthropic", "ANTHROPIC_API_KEY", cfg!(feature = "anthropic")),
            (
                "gemini:gemini-2.5-flash",
                "gemini",
                "GEMINI_API_KEY or GOOGLE_API_KEY",
                cfg!(feature = "gemini"),
            ),
            (
                "openai-compatible:llama3.2",
                "openai-compatible",
                "KAOS_OPENAI_COMPATIBLE_BASE_URL",
                cfg!(feature = "openai-compatible"),
            ),
        ];
        for (model, provider, variable, compiled) in cases {
            let expected = if compiled {
                ProviderError::MissingSetting { provider: provider.into(), variable: variable.into() }
            } else {
                ProviderError::NotCompiled { provider: provider.into(), feature: provider.into() }
            };
            assert_eq!(format!("{:?}", error(model, &[("OPENAI_API_KEY", " ")])), format!("{expected:?}"));
        }
    }

    #[test]
    fn configured_vendors_resolve_and_never_print_their_keys() {
        let vars = [
            ("OPENAI_API_KEY", "sk-one"),
            ("ANTHROPIC_API_KEY", "sk-two"),
            ("GOOGLE_API_KEY", "sk-three"),
            ("KAOS_OPENAI_COMPATIBLE_BASE_URL", "http://localhost:11434/v1"),
            ("KAOS_OPENAI_COMPATIBLE_API_KEY", "sk-four"),
        ];
        for (model, compiled) in [
            ("openai:gpt-4.1-mini", cfg!(feature = "openai")),
            ("anthropic:claude-haiku-4-5", cfg!(feature = "anthropic")),
            ("gemini:gemini-2.5-flash", cfg!(feature = "gemini")),
            ("openai-compatible:llama3.2", cfg!(feature = "openai-compatible")),
        ] {
            match resolve(model, &vars) {
                Ok(client) => {
                    let printed = format!("{client:?}");
                    assert!(compiled && !printed.contains("sk-"), "{printed}");
                }
                Err(e) => assert!(!compiled && matches!(e, ProviderError::NotCompiled { .. }), "{e:?}"),
            }
        }
    }
}

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use kaos_agent::{Agent, ModelRef};
use kaos_providers::{ModelClient, ProviderError, ScriptedClient, TokenCounter, ToolDefinition, counter_for};
use kaos_runtime::Runtime;
use kaos_tools::{Tool, ToolSelector};
use tokio::sync::mpsc;

use crate::events::Emitter;
use crate::session::{
    ExtractiveSummarizer, MEMORY_SEARCH_TOOL, SessionCache, SessionLocks, SessionStore, Summarizer,
};
use crate::{RunError, RunStream, SessionId, TurnResponse, fold, turn};

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
    /// The tools offered to the model, by name (selected once, at build time).
    pub(crate) tools: HashMap<String, Arc<dyn Tool>>,
    pub(crate) tool_definitions: Vec<ToolDefinition>,
    pub(crate) locks: SessionLocks,
    pub(crate) store: SessionStore,
    pub(crate) agent_name: Arc<str>,
    pub(crate) fingerprint: Arc<str>,
    /// Counts tokens for every memory and context budget decision.
    pub(crate) counter: Arc<dyn TokenCounter>,
    pub(crate) summarizer: Arc<dyn Summarizer>,
    /// Whether the agent's tool globs select the built-in memory search tool.
    pub(crate) offers_memory_search: bool,
    pub(crate) cache: SessionCache,
}

/// Sessions whose memory a Runner keeps between turns by default.
pub const DEFAULT_SESSION_CACHE: usize = 1024;

impl Runner {
    /// A builder for a Runner of `agent` in `runtime`.
    pub fn builder(agent: Agent, runtime: Runtime) -> RunnerBuilder {
        RunnerBuilder {
            agent,
            runtime,
            model: None,
            counter: None,
            summarizer: None,
            cache: DEFAULT_SESSION_CACHE,
        }
    }

    /// Runs one turn: `message` from the user in session `session_id`, until the model's
    /// final answer (or a stop). The same as folding [`Runner::run`] with [`fold`].
    pub async fn turn(
        &self,
        message: impl Into<String>,
        session_id: impl AsRef<str>,
    ) -> Result<TurnResponse, RunError> {
        fold(self.run(message, session_id)).await
    }

    /// Runs one turn as a stream of typed events. The turn progresses as the stream is polled;
    /// dropping the stream cancels the turn before it persists anything.
    pub fn run(&self, message: impl Into<String>, session_id: impl AsRef<str>) -> RunStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = self.shared.clone();
        let message = message.into();
        let session = SessionId::new(session_id.as_ref());
        let run = async move {
            let session = session?;
            let run_id: Arc<str> = format!("run_{}", uuid::Uuid::now_v7().simple()).into();
            let emit = Emitter::new(
                tx,
                session.as_arc().clone(),
                run_id,
                shared.agent_name.clone(),
                shared.fingerprint.clone(),
            );
            turn::execute(&shared, &session, message, &emit).await
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

    /// Selects the agent's tools from the runtime (globs, capped at `limits.max_tools`),
    /// resolves the model, and builds the Runner. Tools registered in the runtime later are
    /// not seen by this Runner.
    pub fn build(self) -> Result<Runner, RunError> {
        let model = match self.model {
            Some(model) => model,
            None => resolve_model(self.agent.model())?,
        };
        let selector = ToolSelector::new(self.agent.tools()).map_err(|e| RunError::Config(e.to_string()))?;
        let max_tools = self.agent.limits().max_tools.get() as usize;
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
        let store = SessionStore::new(self.runtime.vfs().clone());
        let counter = self
            .counter
            .unwrap_or_else(|| counter_for(self.agent.model().provider(), self.agent.model().model()));
        let summarizer =
            self.summarizer.unwrap_or_else(|| Arc::new(ExtractiveSummarizer::new(counter.clone())));
        let offers_memory_search = selector.matches(MEMORY_SEARCH_TOOL);
        Ok(Runner {
            shared: Arc::new(Shared {
                agent_name: self.agent.name().into(),
                fingerprint: self.agent.fingerprint().as_str().into(),
                agent: self.agent,
                runtime: self.runtime,
                model,
                tools,
                tool_definitions,
                locks: SessionLocks::default(),
                store,
                counter,
                summarizer,
                offers_memory_search,
                cache: SessionCache::new(self.cache),
            }),
        })
    }
}

/// The client for a `provider:model` reference. Only the offline model is built in;
/// vendor clients come with their Cargo features.
fn resolve_model(model: &ModelRef) -> Result<Arc<dyn ModelClient>, RunError> {
    match (model.provider(), model.model()) {
        ("scripted", "echo") => Ok(Arc::new(ScriptedClient::echo())),
        ("scripted", other) => Err(ProviderError::UnknownModel {
            model: model.to_string(),
            message: format!(
                "the only built-in scripted model is 'scripted:echo'; pass a ScriptedClient for {other:?} with RunnerBuilder::model"
            ),
        }
        .into()),
        _ => Err(ProviderError::UnknownModel {
            model: model.to_string(),
            message: "no client for this provider is compiled in; pass one with RunnerBuilder::model".into(),
        }
        .into()),
    }
}

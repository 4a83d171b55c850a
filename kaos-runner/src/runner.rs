//! The [`Runner`] facade and its builder: the entry points of the engine. Everything below is
//! crate-internal: a run (`run/`) drives the turn's pattern (`patterns/`) over the core loop
//! (`engine/`).

use std::fmt;
use std::sync::Arc;

use kaos_agent::{Agent, ModelRef};
use kaos_providers::{ModelClient, Pricing, ProviderError, TokenCounter};
use kaos_runtime::Runtime;

use crate::approval::Approval;
use crate::context::RunOptions;
use crate::error::RunError;
use crate::guard::{BreakerConfig, Breakers};
use crate::hooks::{Hook, HookFailure, Hooks};
use crate::member::{self, DEFAULT_SESSION_CACHE, DEFAULT_SESSION_CACHE_BYTES, Member, Preparation};
use crate::models::Models;
use crate::response::TurnResponse;
use crate::run::state::RunState;
use crate::run::{self, Bounds, Start};
use crate::stream::RunStream;
use kaos_session::Summarizer;

/// The engine: drives one [`Agent`] against one [`Runtime`] for any number of sessions.
///
/// Cheap to clone (clones share everything) and safe to use from many tasks at once: turns
/// on different sessions run in parallel, turns on the same session one after another.
#[derive(Clone)]
pub struct Runner {
    pub(crate) member: Arc<Member>,
}

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
            cache_bytes: DEFAULT_SESSION_CACHE_BYTES,
            models: Models::default(),
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
        self.turn_with(message, session_id, RunOptions::default()).await
    }

    /// [`Runner::turn`] with per-request options (extra permission rules, a tighter cost cap).
    pub async fn turn_with(
        &self,
        message: impl Into<String>,
        session_id: impl AsRef<str>,
        options: RunOptions,
    ) -> Result<TurnResponse, RunError> {
        // The events `run_with` would stream, folded as they are emitted (the same response
        // as `fold(self.run_with(..))`, without a queue). The run is boxed (see `run::boxed`):
        // its future is ~6 KB, and an executor moves a spawned future several times before
        // polling it.
        let start = Start::Fresh { message: message.into(), bounds: Bounds::Request(options) };
        run::boxed!(run::folded(self.member.clone(), session_id.as_ref(), new_run_id(), (0, 0), start)).await
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
        self.start(
            session_id.as_ref(),
            new_run_id(),
            (0, 0),
            Start::Fresh { message: message.into(), bounds: Bounds::Request(options) },
        )
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
        let run_id: Arc<str> = state.run_id.as_str().into();
        let position = (state.next_seq, state.next_span);
        let session = state.session_id.clone();
        run::boxed!(run::folded(
            self.member.clone(),
            &session,
            run_id,
            position,
            Start::Resume { state: Box::new(state), approval },
        ))
        .await
    }

    /// The stored state of a paused run (see [`RunState`]).
    pub async fn run_state(&self, run_id: &str) -> Result<RunState, RunError> {
        run::state::load(self.member.runtime.vfs().as_ref(), run_id).await
    }

    fn start(&self, session_id: &str, run_id: Arc<str>, position: (u64, u64), start: Start) -> RunStream {
        run::stream(self.member.clone(), session_id, run_id, position, start)
    }

    /// The agent.
    pub fn agent(&self) -> &Agent {
        &self.member.agent
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.member.runtime
    }

    /// The names of the tools offered to the model, in registry order.
    pub fn tool_names(&self) -> Vec<&str> {
        self.member.tool_definitions.iter().map(|d| d.name.as_str()).collect()
    }
}

/// A new run's id: `run_` and a UUIDv7 (time-ordered).
fn new_run_id() -> Arc<str> {
    let uuid = uuid::Uuid::now_v7();
    let mut id = [0u8; 4 + uuid::fmt::Simple::LENGTH];
    id[..4].copy_from_slice(b"run_");
    uuid.simple().encode_lower(&mut id[4..]);
    // One allocation, no formatting machinery (the bytes are ASCII, so this never falls back).
    std::str::from_utf8(&id).map_or_else(|_| format!("run_{}", uuid.simple()).into(), Arc::from)
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("agent", &self.member.agent)
            .field("model", &self.member.model)
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
    cache_bytes: usize,
    breakers: BreakerConfig,
    hooks: Hooks,
    /// Custom providers and the user's prices.
    models: Models,
}

impl RunnerBuilder {
    /// Registers a custom provider: models named `prefix:…` (the agent's, its role and
    /// fallback models, its handoff agents' and sub-agents') get their client from `factory`,
    /// side by side with the built-in vendors. A prefix of a built-in vendor replaces it.
    /// [`RunnerBuilder::model`] still overrides every model.
    pub fn provider(
        mut self,
        prefix: impl Into<String>,
        factory: impl Fn(&ModelRef) -> Result<Arc<dyn ModelClient>, ProviderError> + Send + Sync + 'static,
    ) -> Self {
        self.models.custom.insert(prefix.into(), Arc::new(factory));
        self
    }

    /// Prices model calls from `pricing` where it has a price for the request's whole
    /// `provider:model` (e.g. `openai-compatible:llama3.2`), over the clients' own prices.
    pub fn pricing(mut self, pricing: Pricing) -> Self {
        self.models.pricing = Some(Arc::new(pricing));
        self
    }

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

    /// How much memory the session cache may hold, about, in bytes [64 MiB,
    /// [`DEFAULT_SESSION_CACHE_BYTES`]]: the least recently used sessions are evicted until
    /// the cached sessions' memory fits (each measured with
    /// [`SessionMemory::approx_heap_bytes`](kaos_session::SessionMemory::approx_heap_bytes)
    /// when its turn ends), and a session bigger than the bound alone is not kept. With
    /// [`session_cache`](Self::session_cache) this bounds what a long-running Runner (and
    /// `kaos serve`) keeps between turns, however long its sessions grow. `0` turns the cache
    /// off.
    pub fn session_cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
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

    /// Selects the agent's tools from the runtime (globs, capped at `limits.max_tools`),
    /// resolves the model, and builds the Runner. Tools registered in the runtime later are
    /// not seen by this Runner. Every agent the conversation may be handed to (the agent's
    /// `handoffs`, and theirs, transitively) is prepared too; two different agents of that
    /// team with one name are a [`RunError::Team`].
    pub fn build(self) -> Result<Runner, RunError> {
        let member = member::prepare(
            &self.agent,
            Preparation {
                runtime: &self.runtime,
                model: self.model,
                counter: self.counter,
                summarizer: self.summarizer,
                cache: (self.cache, self.cache_bytes),
                breakers: Arc::new(Breakers::new(self.breakers)),
                hooks: &self.hooks,
                models: self.models,
            },
        )?;
        Ok(Runner { member })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn run_ids_are_run_and_a_time_ordered_uuid() {
        let (first, second) = (super::new_run_id(), super::new_run_id());
        for id in [&first, &second] {
            let hex = id.strip_prefix("run_").unwrap();
            assert_eq!(hex.len(), 32, "{id}");
            assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{id}");
            assert_eq!(uuid::Uuid::parse_str(hex).unwrap().get_version_num(), 7, "{id}");
        }
        assert!(first < second, "{first} then {second}");
    }
}

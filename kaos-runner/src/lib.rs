//! The KAOS engine.
//!
//! A [`Runner`] drives a frozen [`Agent`](kaos_agent::Agent) against a
//! [`Runtime`](kaos_runtime::Runtime), one **turn** at a time, for any number of **sessions**.
//! Each turn it takes the session (turns on one session run one after another; different
//! sessions run in parallel), hydrates the session's history from the VFS, calls the model,
//! runs the tools the model asks for (a ReAct loop bounded by the agent's iteration limit),
//! appends what the turn added to the session log, and reports everything as typed [`Event`]s.
//!
//! [`Runner::run`] is the event stream; [`Runner::turn`] folds that same stream into a
//! [`TurnResponse`] with [`fold`], so the two can never disagree.
//!
//! What a turn does beyond the chat loop is the agent's `pattern` (research with verified
//! citations, plan-execute, findings, a router choosing among them), all on the same loop,
//! memory and guards; agents work together by delegation (a sub-agent as a tool) and handoff
//! (`handoff_to_<name>`). See `docs/concepts/patterns.md`.
//!
//! ```
//! use kaos_agent::Agent;
//! use kaos_runner::Runner;
//! use kaos_runtime::Runtime;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let agent = Agent::builder().name("helper").instructions("Be brief.").build()?; // offline model
//! let runner = Runner::builder(agent, Runtime::test_mode()).build()?;
//! runner.turn("Hello!", "demo").await?;
//! let second = runner.turn("What did I say?", "demo").await?;
//! assert_eq!(second.turn_number, 2);
//! assert!(second.text.contains("2 user messages"));
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
#![deny(missing_docs)]

mod error;
mod events;
mod guard;
pub mod hooks;
mod models;
mod patterns;
mod pause;
mod permissions;
mod response;
mod runner;
mod sessions;
mod stream;
#[cfg(feature = "otel")]
pub mod telemetry;
mod turn;

pub use error::RunError;
pub use events::{Event, EventKind, MemoryEventKind, RefusalReason, Span, SpanPhase, SpanSubject};
pub use guard::BreakerConfig;
pub use kaos_session::{
    CHECKPOINT_MIN_TAIL_BYTES, ExtractiveSummarizer, MemoryError, MemoryItem, MemoryOp, ModelSummarizer,
    NewItem, SESSION_LAYOUT_VERSION, Section, SessionError, SessionExport, SessionId, SessionMemory,
    SessionSummary, Sessions, Summarizer, TurnRecord,
};
pub use models::{ProviderFactory, resolve_model, vendor_config};
pub use pause::{Approval, PendingApproval, RUN_STATE_VERSION, RunState, RunStateError};
pub use permissions::{PermissionPolicy, Verdict, VerdictReason};
pub use response::{StopReason, ToolCallRecord, TurnFold, TurnResponse, fold};
pub use runner::{DEFAULT_SESSION_CACHE, RunOptions, Runner, RunnerBuilder};
pub use stream::RunStream;

/// The pages of `docs/`, compiled and run as doctests so the documentation cannot rot.
#[cfg(doctest)]
mod docs {
    #[doc = include_str!("../../README.md")]
    mod readme {}
    #[doc = include_str!("../../docs/concepts/agent-vs-runner.md")]
    mod agent_vs_runner {}
    #[doc = include_str!("../../docs/concepts/the-turn.md")]
    mod the_turn {}
    #[doc = include_str!("../../docs/concepts/memory.md")]
    mod memory {}
    #[doc = include_str!("../../docs/concepts/hooks.md")]
    mod hooks {}
    #[doc = include_str!("../../docs/concepts/guardrails.md")]
    mod guardrails {}
    #[cfg(feature = "object-store")]
    #[doc = include_str!("../../docs/concepts/scale-out.md")]
    mod scale_out {}
    #[doc = include_str!("../../docs/concepts/patterns.md")]
    mod patterns {}
    #[doc = include_str!("../../docs/concepts/settings-and-agent-files.md")]
    mod settings_and_agent_files {}
    #[doc = include_str!("../../docs/reference/cli.md")]
    mod cli_reference {}
    #[doc = include_str!("../../docs/concepts/providers-and-cost.md")]
    mod providers_and_cost {}
    #[doc = include_str!("../../docs/concepts/custom-providers.md")]
    mod custom_providers {}
    #[doc = include_str!("../../docs/tutorials/first-agent.md")]
    mod first_agent {}
    #[doc = include_str!("../../docs/tutorials/the-kaos-command.md")]
    mod the_kaos_command {}
}

pub use kaos_agent as agent;
pub use kaos_providers as providers;
pub use kaos_runtime as runtime;
pub use kaos_session as session;
pub use kaos_tools as tools;
pub use kaos_vfs as vfs;

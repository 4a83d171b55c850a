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
#![cfg_attr(docsrs, feature(doc_cfg))]

// The modules form layers, bottom first (checked by `cargo xtask tidy`, see ARCHITECTURE.md):
// protocol (error, events, approval, response, stream) → guards and hooks (guard, hooks,
// models) → emit → member → context → engine (the core loop, tool admission, the guarded
// model call) → patterns → run (one run: take, start or resume, drive, commit or pause) →
// the facade (runner, sessions).
mod approval;
mod context;
mod emit;
mod engine;
mod error;
mod events;
mod guard;
pub mod hooks;
mod member;
mod models;
mod patterns;
mod response;
mod run;
mod runner;
mod sessions;
mod stream;
#[cfg(feature = "otel")]
pub mod telemetry;

pub use approval::{Approval, PendingApproval};
pub use context::RunOptions;
pub use error::{RUN_STATE_VERSION, RunError, RunStateError};
pub use events::{Event, EventKind, MemoryEventKind, RefusalReason, Span, SpanPhase, SpanSubject};
pub use guard::{BreakerConfig, PermissionPolicy, Verdict, VerdictReason};
pub use kaos_session::{
    CHECKPOINT_MIN_TAIL_BYTES, ExtractiveSummarizer, MemoryError, MemoryItem, MemoryOp, ModelSummarizer,
    NewItem, SESSION_LAYOUT_VERSION, Section, SessionError, SessionExport, SessionId, SessionMemory,
    SessionSummary, Sessions, Summarizer, TurnRecord,
};
pub use member::{DEFAULT_SESSION_CACHE, DEFAULT_SESSION_CACHE_BYTES};
pub use models::{ProviderFactory, resolve_model, vendor_config};
pub use response::{StopReason, ToolCallRecord, TurnFold, TurnResponse, fold};
pub use run::state::RunState;
pub use runner::{Runner, RunnerBuilder};
pub use sessions::DocumentAdded;
pub use stream::RunStream;

pub use kaos_agent as agent;
pub use kaos_providers as providers;
pub use kaos_runtime as runtime;
pub use kaos_session as session;
pub use kaos_tools as tools;
pub use kaos_vfs as vfs;

/// This crate's README, compiled and run as a doctest (it ships in the package).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

//! The frozen KAOS [`Agent`]: configuration as plain, validated data.
//!
//! An `Agent` holds instructions, a model reference, a pattern, tool globs, permission rules,
//! limits, a budget and a memory profile. It holds no state and runs nothing: the `Runner` in
//! `kaos-runner` drives it. Once built it is immutable, cheap to clone (`Arc` inside),
//! `Send + Sync`, serializable to JSON and TOML, and identified by a stable
//! [`Fingerprint`] (`sha256:` of its canonical JSON form).
//!
//! This crate deliberately has **no async and no IO dependency** (checked by `cargo xtask tidy`):
//! depend on it alone to define, validate and ship agent definitions.
//!
//! ```
//! use kaos_agent::{Agent, Pattern};
//!
//! let agent = Agent::builder()
//!     .name("helper")
//!     .instructions("Be brief.")
//!     .model("anthropic:claude-haiku-4-5")
//!     .pattern(Pattern::Chat)
//!     .tools(["kaos-vfs-*"])
//!     .build()?;
//! assert!(agent.fingerprint().as_str().starts_with("sha256:"));
//!
//! // Zero is never "unset": it is an error.
//! assert!(Agent::builder().max_iterations(0).build().is_err());
//! # Ok::<(), kaos_agent::AgentError>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod agent;
mod budget;
mod canonical;
mod error;
mod limits;
mod memory_profile;
mod model_ref;
mod pattern;
mod pattern_config;
mod permissions;
mod research;
#[cfg(feature = "schema")]
mod schema;

pub use agent::{Agent, AgentBuilder, AgentConfig, Delegate, DelegateTarget, Fingerprint};
pub use budget::Budget;
pub use error::AgentError;
pub use limits::Limits;
pub use memory_profile::{Eviction, MemoryProfile, Persistence, SectionConfig, SectionKind, TokenBudget};
pub use model_ref::{ModelRef, ModelRole};
pub use pattern::Pattern;
pub use pattern_config::{Classifier, FindingsConfig, PlanConfig, Route, RouterConfig};
pub use permissions::{Decision, PermissionRule};
pub use research::ResearchConfig;
#[cfg(feature = "schema")]
pub use schema::agent_file_schema;

/// This crate's README, compiled and run as a doctest (it ships in the package).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

//! Session memory and its storage, for the KAOS engine and for anything that reads sessions.
//!
//! A session is named by a [`SessionId`] and lives in a VFS under `sessions/{id}/`: an
//! append-only log of [`TurnRecord`]s plus a checkpoint (see [`SESSION_LAYOUT_VERSION`]). Its
//! [`SessionMemory`] holds typed sections with budgets, eviction and rolling summaries;
//! [`assemble`] chooses what of it the model sees each turn (by priority within the context
//! budget, BM25 retrieval above a threshold). [`Sessions`] lists, reads, exports and deletes
//! stored sessions, and takes one for a turn ([`Sessions::take`]: the in-process lock, then the
//! VFS lock, then hydration).
//!
//! Does not own: what a turn does (the Runner in `kaos-runner`), where the VFS is.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod assemble;
mod bm25;
mod cache;
mod error;
mod id;
mod line;
mod memory;
mod record;
mod sessions;
mod store;
mod summarize;

pub use assemble::{Assembly, MEMORY_SEARCH_TOOL, assemble};
pub use bm25::top_k as bm25_top_k;
pub use cache::DEFAULT_CACHE_BYTES;
pub use error::SessionError;
pub use id::SessionId;
pub use memory::{Change, MemoryError, MemoryItem, MemoryOp, NewItem, Section, SessionMemory};
pub use record::{StopReason, ToolCallRecord};
pub use sessions::{Hydration, PreparedRecord, SessionExport, SessionSummary, Sessions, TakenSession};
pub use store::{
    CHECKPOINT_MIN_TAIL_BYTES, LogStamp, SESSION_LAYOUT_VERSION, Salvaged, TurnRecord, files_dir,
    sessions_root, traces_dir,
};
pub use summarize::{ExtractiveSummarizer, ModelSummarizer, Summarizer};

/// This crate's README, compiled and run as a doctest (it ships in the package).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

//! Sessions: ids, memory and its sections, context assembly, how sessions are stored in the
//! VFS, and per-session serialization of turns.

mod assemble;
mod bm25;
mod cache;
mod id;
mod memory;
mod store;
mod summarize;

pub(crate) use assemble::{Assembly, MEMORY_SEARCH_TOOL, assemble};
pub(crate) use bm25::top_k as bm25_top_k;
pub(crate) use cache::SessionCache;
pub use id::SessionId;
pub(crate) use memory::Change;
pub use memory::{MemoryError, MemoryItem, MemoryOp, NewItem, Section, SessionMemory};
pub use store::{CHECKPOINT_MIN_TAIL_BYTES, SESSION_LAYOUT_VERSION, TurnRecord};
pub(crate) use store::{Hydrated, SessionStore};
pub use summarize::{ExtractiveSummarizer, ModelSummarizer, Summarizer};

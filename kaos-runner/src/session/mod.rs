//! Sessions: ids, the per-turn record, how records are stored in the VFS, and per-session
//! serialization of turns.

mod id;
mod locks;
mod store;

pub use id::SessionId;
pub(crate) use locks::SessionLocks;
pub(crate) use store::{Hydrated, SessionStore};
pub use store::{SESSION_LAYOUT_VERSION, TurnRecord};

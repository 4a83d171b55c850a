//! Hydrated sessions kept between turns, so a busy session is not re-read every turn.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::SessionId;
use crate::memory::SessionMemory;
use crate::store::{LogPosition, LogStamp};

#[derive(Debug)]
struct Entry {
    memory: SessionMemory,
    position: LogPosition,
    stamp: LogStamp,
    used: u64,
}

/// A bounded map of recently used sessions' memory, each valid for one version of its log.
///
/// A turn takes its session's entry out (so a failed turn can never leave half-changed memory
/// behind) and puts it back after committing. An entry whose stamp no longer matches the log
/// — another process or runner wrote to the session — is dropped and the session re-read.
#[derive(Debug)]
pub struct SessionCache {
    capacity: usize,
    entries: Mutex<HashMap<SessionId, Entry>>,
    clock: std::sync::atomic::AtomicU64,
}

impl SessionCache {
    pub fn new(capacity: usize) -> Self {
        Self { capacity, entries: Mutex::new(HashMap::new()), clock: std::sync::atomic::AtomicU64::new(0) }
    }

    /// The cached memory of `id` if it was cached for exactly this version of the log. A log
    /// whose backend reports no modification time is never a hit: its length alone cannot tell
    /// a grown log from one deleted and re-created at the same length.
    pub fn take(&self, id: &SessionId, stamp: LogStamp) -> Option<(SessionMemory, LogPosition)> {
        let entry = self.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(id)?;
        (stamp.identifies_version() && entry.stamp == stamp).then_some((entry.memory, entry.position))
    }

    /// Keeps `memory` for the log version `stamp`, evicting the least recently used session
    /// when full.
    pub fn put(&self, id: SessionId, memory: SessionMemory, position: LogPosition, stamp: LogStamp) {
        if self.capacity == 0 || !stamp.identifies_version() {
            return;
        }
        let used = self.clock.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity
            && !entries.contains_key(&id)
            && let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(id, Entry { memory, position, stamp, used });
    }

    /// Forgets `id` (after a delete, or a change made outside a turn).
    pub fn forget(&self, id: &SessionId) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
    }
}

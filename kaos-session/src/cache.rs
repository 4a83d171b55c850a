//! Hydrated sessions kept between turns, so a busy session is not re-read every turn.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use crate::SessionId;
use crate::memory::SessionMemory;
use crate::store::{LogPosition, LogStamp};

/// How much memory a session cache keeps by default: 64 MiB (see [`SessionCache`]).
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// What a cache entry costs beyond its memory: the entry, its box, and its key in both maps.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>() + 2 * std::mem::size_of::<SessionId>() + 64;

#[derive(Debug)]
struct Entry {
    memory: SessionMemory,
    position: LogPosition,
    stamp: LogStamp,
    used: u64,
    /// What the entry was counted as when it was put.
    bytes: usize,
}

/// A bounded map of recently used sessions' memory, each valid for one version of its log.
///
/// Bounded twice: at most `sessions` sessions, and about `bytes` bytes of their memory
/// ([`SessionMemory::approx_heap_bytes`] of each, measured when it is put); the least
/// recently used sessions are evicted until both hold. A session bigger than `bytes` on its
/// own is not kept.
///
/// A turn takes its session's entry out (so a failed turn can never leave half-changed memory
/// behind) and puts it back after committing. An entry whose stamp no longer matches the log
/// — another process or runner wrote to the session — is dropped and the session re-read.
#[derive(Debug)]
pub struct SessionCache {
    capacity: usize,
    max_bytes: usize,
    entries: Mutex<Entries>,
    clock: std::sync::atomic::AtomicU64,
}

/// The cached sessions, and the same sessions by when they were last put (least recent
/// first), so evicting one costs a lookup rather than a scan of the whole cache.
#[derive(Debug, Default)]
struct Entries {
    /// Boxed: a map slot is then a key and a pointer, so the map's spare capacity is cheap.
    by_id: HashMap<SessionId, Box<Entry>>,
    by_use: BTreeMap<u64, SessionId>,
    /// The sum of the entries' `bytes`.
    bytes: usize,
}

impl Entries {
    fn remove(&mut self, id: &SessionId) -> Option<Box<Entry>> {
        let entry = self.by_id.remove(id)?;
        self.by_use.remove(&entry.used);
        self.bytes -= entry.bytes;
        Some(entry)
    }

    /// Removes the least recently put entry.
    fn pop_oldest(&mut self) -> Option<Box<Entry>> {
        let (_, oldest) = self.by_use.pop_first()?;
        let entry = self.by_id.remove(&oldest)?;
        self.bytes -= entry.bytes;
        Some(entry)
    }
}

impl SessionCache {
    /// A cache of at most `sessions` sessions and about `bytes` bytes of their memory; `0` of
    /// either keeps nothing.
    pub fn new(sessions: usize, bytes: usize) -> Self {
        Self {
            capacity: sessions,
            max_bytes: bytes,
            entries: Mutex::new(Entries::default()),
            clock: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The cached memory of `id` if it was cached for exactly this version of the log. A log
    /// whose backend reports no modification time is never a hit: its length alone cannot tell
    /// a grown log from one deleted and re-created at the same length.
    pub fn take(&self, id: &SessionId, stamp: LogStamp) -> Option<(SessionMemory, LogPosition)> {
        let entry = self.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(id)?;
        (stamp.identifies_version() && entry.stamp == stamp).then_some((entry.memory, entry.position))
    }

    /// Keeps `memory` for the log version `stamp`, evicting the least recently used sessions
    /// while more than `sessions` are kept or they hold more than `bytes`.
    pub fn put(&self, id: SessionId, memory: SessionMemory, position: LogPosition, stamp: LogStamp) {
        if self.capacity == 0 || !stamp.identifies_version() {
            return;
        }
        let bytes = memory.approx_heap_bytes().saturating_add(ENTRY_OVERHEAD);
        let used = self.clock.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Evicted memory is freed after the lock is released.
        let mut evicted = Vec::new();
        {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            evicted.extend(entries.remove(&id));
            if bytes > self.max_bytes {
                // Bigger than the whole cache: not kept (its next turn reads it from the store).
                drop(entries);
                drop(evicted);
                return;
            }
            while entries.by_id.len() >= self.capacity || entries.bytes + bytes > self.max_bytes {
                let Some(oldest) = entries.pop_oldest() else { break };
                evicted.push(oldest);
            }
            entries.bytes += bytes;
            entries.by_use.insert(used, id.clone());
            entries.by_id.insert(id, Box::new(Entry { memory, position, stamp, used, bytes }));
        }
        drop(evicted);
    }

    /// Forgets `id` (after a delete, or a change made outside a turn).
    pub fn forget(&self, id: &SessionId) {
        let entry = self.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
        drop(entry);
    }

    /// How many sessions are kept, and about how many bytes of memory they hold.
    pub fn usage(&self) -> (usize, usize) {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        (entries.by_id.len(), entries.bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use kaos_agent::MemoryProfile;
    use kaos_providers::Estimator;

    use super::*;

    fn id(name: &str) -> SessionId {
        SessionId::new(name).unwrap()
    }

    fn memory() -> SessionMemory {
        SessionMemory::new(&MemoryProfile::default(), Arc::new(Estimator))
    }

    #[test]
    fn a_full_cache_evicts_the_least_recently_put_session() {
        let stamp = LogStamp { len: 10, modified: Some(SystemTime::UNIX_EPOCH) };
        let cache = SessionCache::new(2, DEFAULT_CACHE_BYTES);
        cache.put(id("a"), memory(), LogPosition::default(), stamp);
        cache.put(id("b"), memory(), LogPosition::default(), stamp);
        // "a" is used again (taken by a turn and put back): "b" is now the oldest.
        assert!(cache.take(&id("a"), stamp).is_some());
        cache.put(id("a"), memory(), LogPosition::default(), stamp);
        cache.put(id("c"), memory(), LogPosition::default(), stamp);
        assert!(cache.take(&id("b"), stamp).is_none());
        assert!(cache.take(&id("a"), stamp).is_some());
        assert!(cache.take(&id("c"), stamp).is_some());
        // Putting a session twice keeps one entry, and a forgotten one is gone.
        cache.put(id("d"), memory(), LogPosition::default(), stamp);
        cache.put(id("d"), memory(), LogPosition::default(), stamp);
        cache.put(id("e"), memory(), LogPosition::default(), stamp);
        cache.forget(&id("e"));
        assert!(cache.take(&id("e"), stamp).is_none());
        assert!(cache.take(&id("d"), stamp).is_some());
        let entries = cache.entries.lock().unwrap();
        assert!(entries.by_id.is_empty() && entries.by_use.is_empty());
    }

    fn memory_with(text_bytes: usize) -> SessionMemory {
        let mut memory = memory();
        memory.add(kaos_agent::SectionKind::Working, crate::NewItem::text("x".repeat(text_bytes))).unwrap();
        memory
    }

    #[test]
    fn the_byte_bound_evicts_the_least_recently_put_sessions_and_refuses_one_too_big() {
        let stamp = LogStamp { len: 10, modified: Some(SystemTime::UNIX_EPOCH) };
        let one = memory_with(10_000).approx_heap_bytes() + ENTRY_OVERHEAD;
        // Room for three such sessions by bytes, a hundred by count.
        let cache = SessionCache::new(100, 3 * one + one / 2);
        for name in ["a", "b", "c", "d"] {
            cache.put(id(name), memory_with(10_000), LogPosition::default(), stamp);
            assert!(cache.usage().1 <= 3 * one + one / 2);
        }
        assert_eq!(cache.usage(), (3, 3 * one));
        assert!(cache.take(&id("a"), stamp).is_none());
        // A session twice the size pushes out the two least recent ones.
        cache.put(id("e"), memory_with(20_000), LogPosition::default(), stamp);
        assert!(cache.take(&id("b"), stamp).is_none() && cache.take(&id("c"), stamp).is_none());
        assert!(cache.take(&id("d"), stamp).is_some() && cache.take(&id("e"), stamp).is_some());
        assert_eq!(cache.usage(), (0, 0));
        // One bigger than the whole bound is not kept, and evicts nothing.
        cache.put(id("f"), memory_with(10_000), LogPosition::default(), stamp);
        cache.put(id("g"), memory_with(60_000), LogPosition::default(), stamp);
        assert_eq!(cache.usage(), (1, one));
        assert!(cache.take(&id("g"), stamp).is_none());
    }

    #[test]
    fn the_estimate_grows_with_what_memory_holds() {
        let empty = memory().approx_heap_bytes();
        let full = memory_with(60_000).approx_heap_bytes();
        assert!(full >= empty + 60_000, "{empty} → {full}");
        assert!(full <= empty + 65_000, "{empty} → {full}");
    }
}

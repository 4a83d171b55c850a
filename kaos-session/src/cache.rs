//! Hydrated sessions kept between turns, so a busy session is not re-read every turn.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use kaos_agent::MemoryProfile;
use kaos_providers::TokenCounter;

use crate::SessionId;
use crate::memory::{PackedMemory, SessionMemory};
use crate::store::{LogPosition, LogStamp};

/// How much memory a session cache keeps by default: 64 MiB (see [`SessionCache`]).
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// How many of the cached sessions, the most recently put, are kept as they are; the others
/// are kept packed (see [`SessionCache`]).
pub(crate) const HOT_SESSIONS: usize = 32;

/// What a cache entry costs beyond its memory: the entry, its box, and its key in both maps.
const fn overhead<T>() -> usize {
    std::mem::size_of::<Entry<T>>() + 2 * std::mem::size_of::<SessionId>() + 64
}
const HOT_OVERHEAD: usize = overhead::<SessionMemory>();
const COLD_OVERHEAD: usize = overhead::<PackedMemory>();

/// A cached session: its memory as the turn left it (hot), or packed (cold); each boxed on its
/// own, so a packed entry does not carry a materialized one's room.
#[derive(Debug)]
enum Slot {
    Hot(Box<Entry<SessionMemory>>),
    Cold(Box<Entry<PackedMemory>>),
}

impl Slot {
    fn used(&self) -> u64 {
        match self {
            Slot::Hot(entry) => entry.used,
            Slot::Cold(entry) => entry.used,
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Slot::Hot(entry) => entry.bytes,
            Slot::Cold(entry) => entry.bytes,
        }
    }
}

#[derive(Debug)]
struct Entry<T> {
    held: T,
    position: LogPosition,
    stamp: LogStamp,
    used: u64,
    /// What the entry was counted as when it was put (or packed).
    bytes: usize,
}

/// A bounded map of recently used sessions' memory, each valid for one version of its log.
///
/// Bounded twice: at most `sessions` sessions, and about `bytes` bytes of their memory
/// ([`SessionMemory::approx_heap_bytes`] of each, measured when it is put; the packed size of
/// a packed one); the least recently used sessions are evicted until both hold. A session
/// bigger than `bytes` on its own is not kept.
///
/// Two tiers: the [`HOT_SESSIONS`] most recently put sessions are kept as their turns left
/// them, ready for the next turn; older ones are packed into one compressed buffer each
/// (`crate::memory::packed`: a few bytes beside each item's text, LZ4-compressed), unpacked
/// when a turn takes them. A packed session costs several times less memory than a
/// materialized one, and unpacking it costs far less than reading and replaying its log (what
/// a session the cache no longer holds costs). Packing runs outside the cache's lock.
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
    by_id: HashMap<SessionId, Slot>,
    by_use: BTreeMap<u64, SessionId>,
    /// When the hot (materialized) entries were put, ascending: at most [`HOT_SESSIONS`] + 1,
    /// so a sorted list costs a turn less than a tree.
    hot: Vec<u64>,
    /// The sum of the entries' `bytes`.
    bytes: usize,
}

impl Entries {
    fn remove(&mut self, id: &SessionId) -> Option<Slot> {
        let slot = self.by_id.remove(id)?;
        self.by_use.remove(&slot.used());
        self.unmark_hot(&slot);
        self.bytes -= slot.bytes();
        Some(slot)
    }

    /// Removes the least recently put entry.
    fn pop_oldest(&mut self) -> Option<Slot> {
        let (_, oldest) = self.by_use.pop_first()?;
        let slot = self.by_id.remove(&oldest)?;
        self.unmark_hot(&slot);
        self.bytes -= slot.bytes();
        Some(slot)
    }

    fn mark_hot(&mut self, used: u64) {
        let at = self.hot.partition_point(|u| *u < used);
        self.hot.insert(at, used);
    }

    fn unmark_hot(&mut self, slot: &Slot) {
        if let Slot::Hot(entry) = slot
            && let Ok(at) = self.hot.binary_search(&entry.used)
        {
            self.hot.remove(at);
        }
    }

    /// Removes the least recently put hot entry.
    fn pop_oldest_hot(&mut self) -> Option<(SessionId, Box<Entry<SessionMemory>>)> {
        let used = *self.hot.first()?;
        self.hot.remove(0);
        let id = self.by_use.remove(&used)?;
        let slot = self.by_id.remove(&id)?;
        self.bytes -= slot.bytes();
        match slot {
            Slot::Hot(entry) => Some((id, entry)),
            Slot::Cold(_) => None,
        }
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

    /// The cached memory of `id` if it was cached for exactly this version of the log (a
    /// packed one is unpacked with the sections of `profile`, counting with `counter`). A log
    /// whose backend reports no modification time is never a hit: its length alone cannot tell
    /// a grown log from one deleted and re-created at the same length.
    pub fn take(
        &self,
        id: &SessionId,
        stamp: LogStamp,
        profile: &MemoryProfile,
        counter: Arc<dyn TokenCounter>,
    ) -> Option<(SessionMemory, LogPosition)> {
        let slot = self.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(id)?;
        match slot {
            Slot::Hot(entry) if stamp.identifies_version() && entry.stamp == stamp => {
                let Entry { held, position, .. } = *entry;
                Some((held, position))
            }
            Slot::Cold(entry) if stamp.identifies_version() && entry.stamp == stamp => {
                Some((SessionMemory::unpack(&entry.held, profile, counter)?, entry.position))
            }
            _ => None,
        }
    }

    /// Keeps `memory` for the log version `stamp`, evicting the least recently used sessions
    /// while more than `sessions` are kept or they hold more than `bytes`, and packing the
    /// least recently put hot session once more than [`HOT_SESSIONS`] are hot.
    pub fn put(&self, id: SessionId, memory: SessionMemory, position: LogPosition, stamp: LogStamp) {
        if self.capacity == 0 || !stamp.identifies_version() {
            return;
        }
        let bytes = memory.approx_heap_bytes().saturating_add(HOT_OVERHEAD);
        let used = self.clock.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Evicted memory is freed after the lock is released.
        let mut evicted = Vec::new();
        let demoted;
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
            entries.mark_hot(used);
            entries
                .by_id
                .insert(id, Slot::Hot(Box::new(Entry { held: memory, position, stamp, used, bytes })));
            demoted = if entries.hot.len() > HOT_SESSIONS { entries.pop_oldest_hot() } else { None };
        }
        drop(evicted);
        if let Some((id, entry)) = demoted {
            self.pack(id, entry);
        }
    }

    /// Puts `entry`, taken out of the hot tier, back packed. Packed outside the lock: a turn
    /// that takes the session meanwhile misses and reads it from the store, and a version put
    /// meanwhile is newer and stays.
    fn pack(&self, id: SessionId, hot: Box<Entry<SessionMemory>>) {
        // Memory holding changes not yet taken for events (never left by a committed turn) is
        // dropped.
        let Some(packed) = hot.held.pack() else { return };
        let bytes = packed.heap_bytes().saturating_add(COLD_OVERHEAD);
        let Entry { position, stamp, used, .. } = *hot;
        let cold = Box::new(Entry { held: packed, position, stamp, used, bytes });
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if !entries.by_id.contains_key(&id)
            && entries.by_id.len() < self.capacity
            && entries.bytes + bytes <= self.max_bytes
        {
            entries.bytes += bytes;
            entries.by_use.insert(used, id.clone());
            entries.by_id.insert(id, Slot::Cold(cold));
        }
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

    impl SessionCache {
        fn take_(&self, id: &SessionId, stamp: LogStamp) -> Option<(SessionMemory, LogPosition)> {
            self.take(id, stamp, &MemoryProfile::default(), Arc::new(Estimator))
        }

        /// How many sessions are hot, and how many packed.
        fn tiers(&self) -> (usize, usize) {
            let entries = self.entries.lock().unwrap();
            let hot = entries.by_id.values().filter(|slot| matches!(slot, Slot::Hot(_))).count();
            assert_eq!(hot, entries.hot.len());
            (hot, entries.by_id.len() - hot)
        }
    }

    /// A session of `turns` turns, each a user message and an assistant reply quoting it.
    fn conversation(name: &str, turns: u32) -> SessionMemory {
        let mut memory = memory();
        for turn in 0..turns {
            memory.begin_turn();
            let said = format!("turn {turn} of {name}");
            let reply = format!("You said: {said:?}. I have seen {} user messages.", turn + 1);
            for message in [kaos_providers::Message::user(said), kaos_providers::Message::assistant(reply)] {
                memory.add(kaos_agent::SectionKind::Messages, crate::NewItem::message(message)).unwrap();
            }
            memory.take_ops();
            memory.take_changes();
            memory.end_turn(turn + 1);
        }
        memory
    }

    #[test]
    fn sessions_past_the_most_recent_are_kept_packed_and_taken_back_whole() {
        let stamp = LogStamp { len: 10, modified: Some(SystemTime::UNIX_EPOCH) };
        let cache = SessionCache::new(1000, DEFAULT_CACHE_BYTES);
        let names: Vec<String> = (0..HOT_SESSIONS + 10).map(|i| format!("s{i}")).collect();
        for name in &names {
            cache.put(id(name), conversation(name, 10), LogPosition::default(), stamp);
        }
        assert_eq!(cache.tiers(), (HOT_SESSIONS, 10));
        // The ten least recently put are the packed ones, at several times less.
        for name in &names[..10] {
            let entries = cache.entries.lock().unwrap();
            assert!(matches!(entries.by_id[&id(name)], Slot::Cold(_)), "{name}");
        }
        let hot = conversation("s0", 10).approx_heap_bytes() + HOT_OVERHEAD;
        let (count, bytes) = cache.usage();
        assert_eq!(count, HOT_SESSIONS + 10);
        let packed = (bytes - HOT_SESSIONS * hot) / 10;
        assert!(packed * 4 < hot, "packed {packed} B, hot {hot} B");
        // Every session comes back as it was put, the packed ones too.
        for name in &names {
            let (memory, _) = cache.take_(&id(name), stamp).unwrap();
            assert_eq!(memory, conversation(name, 10), "{name}");
        }
        assert_eq!((cache.usage(), cache.tiers()), ((0, 0), (0, 0)));
        // A packed session put again is hot again (and another one is packed).
        for name in &names {
            cache.put(id(name), conversation(name, 2), LogPosition::default(), stamp);
        }
        cache.put(id("s0"), conversation("s0", 3), LogPosition::default(), stamp);
        assert_eq!(cache.tiers(), (HOT_SESSIONS, 10));
        assert!(matches!(cache.entries.lock().unwrap().by_id[&id("s0")], Slot::Hot(_)));
        assert_eq!(cache.take_(&id("s0"), stamp).unwrap().0, conversation("s0", 3));
        assert_eq!(cache.take_(&id("s1"), stamp).unwrap().0, conversation("s1", 2));
        // A stale stamp is still a miss, and drops the entry.
        let newer = LogStamp { len: 20, ..stamp };
        assert!(cache.take_(&id("s2"), newer).is_none());
        assert!(cache.take_(&id("s2"), stamp).is_none());
    }

    #[test]
    fn a_full_cache_evicts_the_least_recently_put_session() {
        let stamp = LogStamp { len: 10, modified: Some(SystemTime::UNIX_EPOCH) };
        let cache = SessionCache::new(2, DEFAULT_CACHE_BYTES);
        cache.put(id("a"), memory(), LogPosition::default(), stamp);
        cache.put(id("b"), memory(), LogPosition::default(), stamp);
        // "a" is used again (taken by a turn and put back): "b" is now the oldest.
        assert!(cache.take_(&id("a"), stamp).is_some());
        cache.put(id("a"), memory(), LogPosition::default(), stamp);
        cache.put(id("c"), memory(), LogPosition::default(), stamp);
        assert!(cache.take_(&id("b"), stamp).is_none());
        assert!(cache.take_(&id("a"), stamp).is_some());
        assert!(cache.take_(&id("c"), stamp).is_some());
        // Putting a session twice keeps one entry, and a forgotten one is gone.
        cache.put(id("d"), memory(), LogPosition::default(), stamp);
        cache.put(id("d"), memory(), LogPosition::default(), stamp);
        cache.put(id("e"), memory(), LogPosition::default(), stamp);
        cache.forget(&id("e"));
        assert!(cache.take_(&id("e"), stamp).is_none());
        assert!(cache.take_(&id("d"), stamp).is_some());
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
        let one = memory_with(10_000).approx_heap_bytes() + HOT_OVERHEAD;
        // Room for three such sessions by bytes, a hundred by count.
        let cache = SessionCache::new(100, 3 * one + one / 2);
        for name in ["a", "b", "c", "d"] {
            cache.put(id(name), memory_with(10_000), LogPosition::default(), stamp);
            assert!(cache.usage().1 <= 3 * one + one / 2);
        }
        assert_eq!(cache.usage(), (3, 3 * one));
        assert!(cache.take_(&id("a"), stamp).is_none());
        // A session twice the size pushes out the two least recent ones.
        cache.put(id("e"), memory_with(20_000), LogPosition::default(), stamp);
        assert!(cache.take_(&id("b"), stamp).is_none() && cache.take_(&id("c"), stamp).is_none());
        assert!(cache.take_(&id("d"), stamp).is_some() && cache.take_(&id("e"), stamp).is_some());
        assert_eq!(cache.usage(), (0, 0));
        // One bigger than the whole bound is not kept, and evicts nothing.
        cache.put(id("f"), memory_with(10_000), LogPosition::default(), stamp);
        cache.put(id("g"), memory_with(60_000), LogPosition::default(), stamp);
        assert_eq!(cache.usage(), (1, one));
        assert!(cache.take_(&id("g"), stamp).is_none());
    }

    #[test]
    fn the_estimate_grows_with_what_memory_holds() {
        let empty = memory().approx_heap_bytes();
        let full = memory_with(60_000).approx_heap_bytes();
        assert!(full >= empty + 60_000, "{empty} → {full}");
        assert!(full <= empty + 65_000, "{empty} → {full}");
    }
}

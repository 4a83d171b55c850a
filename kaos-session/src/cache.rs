//! Hydrated sessions kept between turns, so a busy session is not re-read every turn.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use kaos_agent::MemoryProfile;
use kaos_providers::TokenCounter;

use crate::SessionId;
use crate::memory::{PackedMemory, SessionMemory};
use crate::store::{LogPosition, LogStamp};

/// How much memory a session cache keeps by default: 64 MiB (see [`SessionCache`]).
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// How many of the cached sessions, the most recently put, are at least kept as they are; the
/// others are kept packed, unless more turns are in flight at once (see [`SessionCache`]).
pub(crate) const HOT_SESSIONS: usize = 32;

/// How many puts make one window of the in-flight peak the hot tier follows (see
/// [`SessionCache`]).
const PEAK_WINDOW: u64 = 1024;

/// At most how many hot sessions a put packs: a hot tier that has to shrink (a burst of turns
/// in flight is over) shrinks over the following puts, not all in one.
const MAX_PACKED_PER_PUT: usize = 2;

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
/// Two tiers: the most recently put sessions are kept as their turns left them (hot), ready for
/// the next turn; older ones are packed into one compressed buffer each
/// (`crate::memory::packed`: a few bytes beside each item's text, LZ4-compressed), unpacked
/// when a turn takes them. A packed session costs several times less memory than a
/// materialized one, and unpacking it costs far less than reading and replaying its log (what
/// a session the cache no longer holds costs), but far more than taking a hot one. Packing
/// runs outside the cache's lock.
///
/// The hot tier holds [`HOT_SESSIONS`] sessions, or twice as many as the most turns held
/// sessions at once in this window of [`PEAK_WINDOW`] puts or the last, whichever is more,
/// while the hot sessions hold at most half the byte bound (the first [`HOT_SESSIONS`] are
/// kept hot whatever they hold). So the sessions taking turns together stay hot (100 sessions taking turns at once
/// would otherwise each be unpacked and packed again every turn: on 200-message sessions that
/// was two thirds of a durable turn's CPU), and the memory they keep is what those turns held
/// at once anyway. Once fewer turns are in flight, the tier shrinks back over the next puts.
///
/// A turn takes its session's entry out (so a failed turn can never leave half-changed memory
/// behind) and puts it back after committing. An entry whose stamp no longer matches the log
/// — another process or runner wrote to the session — is dropped and the session re-read.
#[derive(Debug)]
pub struct SessionCache {
    capacity: usize,
    max_bytes: usize,
    entries: Mutex<Entries>,
    clock: AtomicU64,
    /// Turns holding a session's memory right now (see [`SessionCache::enter`]).
    in_flight: AtomicUsize,
    /// The most turns in flight at once since this window of puts began.
    peak: AtomicUsize,
}

/// A turn holding a session's memory, counted in [`SessionCache`]'s in-flight turns while it
/// lives; it is also how the turn reaches the cache to put the memory back.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<SessionCache>);

impl InFlight {
    /// The cache the turn is counted in.
    pub(crate) fn cache(&self) -> &SessionCache {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The cached sessions, and the same sessions by when they were last put (least recent
/// first), so evicting one costs a lookup rather than a scan of the whole cache.
#[derive(Debug, Default)]
struct Entries {
    /// Boxed: a map slot is then a key and a pointer, so the map's spare capacity is cheap.
    by_id: foldhash::HashMap<SessionId, Slot>,
    by_use: BTreeMap<u64, SessionId>,
    /// When the hot (materialized) entries were put, ascending: a few more than the hot
    /// tier holds at most, so a sorted list costs a turn less than a tree.
    hot: Vec<u64>,
    /// The sum of the entries' `bytes`.
    bytes: usize,
    /// The sum of the hot entries' `bytes`.
    hot_bytes: usize,
    /// The in-flight peak of the last window of puts.
    last_peak: usize,
    /// Puts so far, to know when a window ends.
    puts: u64,
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

    fn mark_hot(&mut self, used: u64, bytes: usize) {
        let at = self.hot.partition_point(|u| *u < used);
        self.hot.insert(at, used);
        self.hot_bytes += bytes;
    }

    fn unmark_hot(&mut self, slot: &Slot) {
        if let Slot::Hot(entry) = slot
            && let Ok(at) = self.hot.binary_search(&entry.used)
        {
            self.hot.remove(at);
            self.hot_bytes -= entry.bytes;
        }
    }

    /// Removes the least recently put hot entry.
    fn pop_oldest_hot(&mut self) -> Option<(SessionId, Box<Entry<SessionMemory>>)> {
        let used = *self.hot.first()?;
        let id = self.by_use.remove(&used)?;
        let slot = self.by_id.remove(&id)?;
        self.unmark_hot(&slot);
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
            clock: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Counts a turn that holds a session's memory (taken, from this cache or the store) until
    /// the returned guard is dropped: the hot tier follows how many do at once.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlight {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        // A load first: past the peak's first turns, a new high is rare, and a read-modify-write
        // of a line every worker touches costs more than a read.
        if now > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
        InFlight(Arc::clone(self))
    }

    /// How many sessions the hot tier holds now (see [`SessionCache`]).
    fn hot_limit(&self, entries: &Entries) -> usize {
        let peak = entries.last_peak.max(self.peak.load(Ordering::Relaxed));
        HOT_SESSIONS.max(peak.saturating_mul(2))
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
    /// least recently put hot sessions while more are hot than the hot tier holds.
    pub fn put(&self, id: SessionId, memory: SessionMemory, position: LogPosition, stamp: LogStamp) {
        if self.capacity == 0 || !stamp.identifies_version() {
            return;
        }
        let bytes = memory.approx_heap_bytes().saturating_add(HOT_OVERHEAD);
        let used = self.clock.fetch_add(1, Ordering::Relaxed);
        // Evicted memory is freed after the lock is released.
        let mut evicted = Vec::new();
        let mut demoted = Vec::new();
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
            entries.mark_hot(used, bytes);
            entries
                .by_id
                .insert(id, Slot::Hot(Box::new(Entry { held: memory, position, stamp, used, bytes })));
            entries.puts += 1;
            if entries.puts.is_multiple_of(PEAK_WINDOW) {
                entries.last_peak = self.peak.swap(self.in_flight.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            let limit = self.hot_limit(&entries);
            while demoted.len() < MAX_PACKED_PER_PUT
                && (entries.hot.len() > limit
                    || (entries.hot.len() > HOT_SESSIONS && entries.hot_bytes > self.max_bytes / 2))
            {
                let Some(oldest) = entries.pop_oldest_hot() else { break };
                demoted.push(oldest);
            }
        }
        drop(evicted);
        for (id, entry) in demoted {
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
    fn the_hot_tier_holds_the_sessions_whose_turns_run_at_once_then_shrinks_back() {
        let stamp = LogStamp { len: 10, modified: Some(SystemTime::UNIX_EPOCH) };
        let cache = Arc::new(SessionCache::new(1000, DEFAULT_CACHE_BYTES));
        let names: Vec<String> = (0..3 * HOT_SESSIONS).map(|i| format!("s{i}")).collect();
        // As many turns in flight at once as there are sessions: every one stays hot, round
        // after round (a tier of only HOT_SESSIONS would pack each one before its next turn).
        for round in 0..3 {
            let turns: Vec<InFlight> = names.iter().map(|_| cache.enter()).collect();
            for name in &names {
                if round > 0 {
                    let entries = cache.entries.lock().unwrap();
                    assert!(matches!(entries.by_id[&id(name)], Slot::Hot(_)), "{name} in round {round}");
                }
                cache.put(id(name), conversation(name, 3), LogPosition::default(), stamp);
            }
            drop(turns);
            assert_eq!(cache.tiers(), (names.len(), 0));
        }
        assert_eq!(cache.in_flight.load(Ordering::Relaxed), 0);
        // One turn at a time from now on: after two windows of puts the peak is forgotten and
        // the tier is back to HOT_SESSIONS, the least recently put sessions packed.
        for n in 0..2 * PEAK_WINDOW as usize {
            let _turn = cache.enter();
            let name = &names[n % 4];
            cache.put(id(name), conversation(name, 3), LogPosition::default(), stamp);
        }
        assert_eq!(cache.tiers(), (HOT_SESSIONS, names.len() - HOT_SESSIONS));
        for name in &names {
            assert_eq!(cache.take_(&id(name), stamp).unwrap().0, conversation(name, 3), "{name}");
        }
    }

    #[test]
    fn past_the_first_hot_sessions_the_hot_tier_holds_at_most_half_the_byte_bound() {
        let stamp = LogStamp { len: 10, modified: Some(SystemTime::UNIX_EPOCH) };
        let one = conversation("s0", 20).approx_heap_bytes() + HOT_OVERHEAD;
        // Room for 4 * HOT_SESSIONS such sessions: hot ones beyond HOT_SESSIONS only while
        // they hold at most half of it, however many turns are in flight.
        let cache = Arc::new(SessionCache::new(1000, 4 * HOT_SESSIONS * one));
        let names: Vec<String> = (0..3 * HOT_SESSIONS).map(|i| format!("s{i}")).collect();
        let turns: Vec<InFlight> = names.iter().map(|_| cache.enter()).collect();
        for name in &names {
            cache.put(id(name), conversation(name, 20), LogPosition::default(), stamp);
        }
        drop(turns);
        let (hot, packed) = cache.tiers();
        assert_eq!(hot + packed, names.len());
        assert!(hot > HOT_SESSIONS && hot <= 2 * HOT_SESSIONS + 1, "{hot} hot");
        assert!(cache.entries.lock().unwrap().hot_bytes <= 2 * HOT_SESSIONS * one + one);
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

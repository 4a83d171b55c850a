//! [`ObjectStoreVfs`]: a [`Vfs`] on S3 or any other [`ObjectStore`], so stateless runner
//! processes on several machines can share sessions (feature `object-store`).
//!
//! # Layout
//!
//! Under the configured prefix `P`, a VFS path `a/b/f` is stored as **segments**, immutable
//! objects that are only ever created with a conditional put (`PutMode::Create`, i.e.
//! `If-None-Match: *`), never overwritten:
//!
//! ```text
//! P/vfs/a/b/f~/{generation:020}-{sequence:020}     the file's segments
//! P/vfs/a/b/f~/c-{generation:020}-{sequence:020}   a compaction of them
//! P/leases/{path}                                   the lease behind Vfs::lock(path)
//! P/leases/{path}~q/{time:020}-{owner}              the tickets of its waiters
//! P/probe/{token}                                   the conditional-write probe (deleted)
//! ```
//!
//! Path segments are percent-encoded the way `object_store` encodes them, which never yields a
//! bare `~`, so the `~` that marks a file cannot collide with a user's name. Directories stay
//! implicit: a directory exists while some file's segment exists below it.
//!
//! - The content of a file is the concatenation, in sequence order, of the segments of its
//!   **newest generation**; older generations are garbage, ignored by readers.
//! - [`append`](Vfs::append) creates segment `(g, s + 1)` after the newest `(g, s)`. Two appenders
//!   that race for the same sequence number cannot both win (the store refuses the second
//!   create); the loser lists again and retries with the next number. No append is ever lost
//!   or torn, and a file's appends keep their order.
//! - [`write`](Vfs::write) creates segment `(g + 1, 0)`: one conditional put is the commit
//!   point, so a reader sees the old or the new content, never a mix. The older generations
//!   are then deleted (best effort; a reader that loses a segment it listed lists again).
//! - [`stat`](Vfs::stat) reports the newest generation's total size and, as `modified`, its
//!   newest segment's last-modified time **plus the generation in nanoseconds**: object stores
//!   keep whole seconds, and a rewrite of the same length within one second must still change
//!   the `(len, modified)` pair that callers use as a version stamp. An append always grows
//!   `len` (an empty append to an existing file changes nothing and writes nothing).
//!
//! Each instance remembers the segment index of the files it has seen. Listing only from the
//! last known segment (S3 `start-after`) and checking that it is still there with the same
//! ETag makes `stat`, `append` and `read_from` of a long log cost one small `LIST` however
//! many segments the log has; `read_from(offset)` then fetches only the segments past
//! `offset`.
//!
//! **Compaction.** Once more than 16 segments lie past a file's last compaction, the appender
//! writes `c-{g}-{s}`: the concatenation of generation `g`'s segments `0..=s`. A reader whose
//! listing holds a compaction whose covered segments are all listed and add up to its size
//! fetches it instead of them, so a cold read of a long log costs one listing, one compaction
//! and at most 16 segment `GET`s however many appends it has had. Segments are kept (a listing
//! costs one request per 1,000 of them); the superseded compaction is deleted.
//!
//! # Locks: leases
//!
//! [`Vfs::lock`] takes a **lease**: an object created with `PutMode::Create` holding an owner
//! token, its TTL and the holder's clock time. While the [`VfsLock`] lives, a background task
//! renews it every third of its TTL with a conditional update (`PutMode::Update`, `If-Match`
//! on the ETag), rewriting that time.
//!
//! - **Release** is a conditional update too, marking the lease released: a holder whose lease
//!   was taken over can never release (or delete) the new holder's. [`VfsLock::release`]
//!   awaits it; dropping the lock awaits it as well on tokio's multi-thread runtime (and
//!   spawns it on a current-thread runtime), so a process that exits after its turn leaves
//!   no lease behind. The process remembers the released version and takes the lease back
//!   with one request when nobody else is waiting.
//! - **Expiry** is judged from the lease's own record: a waiter takes over (by a conditional
//!   update, so two takers cannot both win) a released lease, or one whose holder's renewal
//!   time is more than a TTL ago by the waiter's clock, at once; whatever the clocks say, also
//!   a lease whose ETag it has seen unchanged for a whole TTL on its own clock.
//! - **Fairness**: a waiter holds a ticket in the lease's queue, refreshed while it waits; a
//!   release names the oldest live ticket's owner, and for half a second only that waiter may
//!   take it, so newcomers and faster pollers cannot keep overtaking a waiter.
//! - **Fencing**: while a lease this instance holds is lost (a renewal was refused) or past its
//!   TTL by its own clock less a quarter (it was paused), every write and append of the
//!   instance fails with [`VfsError::LockLost`]. Under a lease, an append uses the segment index
//!   listed since the lease was taken, and losing the race for its slot is an error
//!   (`LockLost` when the lease is gone, else [`VfsError::Conflict`]), never a retry into a
//!   later slot, so the late write of a paused ex-holder cannot make one turn number appear
//!   twice.
//! - **Probe**: before its first lock or write, an instance checks that the store refuses a
//!   second create-if-absent of one key and an update against a wrong ETag, and accepts one
//!   against the right ETag; otherwise every lock and write fails with
//!   [`VfsError::ConditionalWritesUnsupported`]. In **single-writer mode**
//!   ([`ObjectStoreVfs::with_single_writer`]) there is no probe and no lease: locks exclude
//!   within the process only.
//!
//! Failure mode: a process that dies holding a lease blocks that lock until a TTL
//! ([`DEFAULT_LEASE_TTL`], 15 s) after its last renewal. Expiry by the holder's record assumes
//! clocks that agree to well within a quarter of the TTL (NTP).
//!
//! # Consistency
//!
//! Everything relies on strong read-after-write and list-after-write consistency and on
//! conditional puts, which AWS S3 provides (and the S3-compatible servers that implement
//! `If-None-Match`/`If-Match` on `PutObject`). The existence checks of `write` and `append`
//! (no directory at the path, no file above it) are made before the put and are not atomic
//! with it across processes.
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt, stream};
use object_store::path::{Path, PathPart};
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};
use secrecy::{ExposeSecret, SecretString};

use crate::{EntryKind, HeldLock, LocalLocks, Metadata, Vfs, VfsEntry, VfsError, VfsLock, VfsPath};

/// How long a lease lives without renewal (see the [module docs](self)).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

/// How long [`Vfs::lock`] waits by default: four lease TTLs, so a lock left by a crashed
/// holder is taken over before the waiter gives up.
pub const DEFAULT_OBJECT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// Suffix of the key segment that holds a file's segments. `object_store` percent-encodes `~`
/// in path parts, so an encoded user name never ends with a bare one.
const FILE_MARK: char = '~';
/// Prefix of a compaction's key part: `c-{generation:020}-{sequence:020}`, the concatenation
/// of the generation's segments up to that sequence number. Sorts after every segment.
const COMPACTION_MARK: &str = "c-";
/// A file's segments are compacted once this many lie past its last compaction.
const COMPACT_AFTER: usize = 16;
/// How many times an operation lists again after losing a race before giving up.
const MAX_CONFLICTS: usize = 1_000;
/// How many requests one operation keeps in flight.
const PARALLEL_REQUESTS: usize = 16;
/// How many files' segment indexes an instance remembers.
const INDEX_CACHE_ENTRIES: usize = 4_096;
/// Longest pause between two polls of a held lease.
const MAX_LOCK_BACKOFF: Duration = Duration::from_millis(100);
/// How long a released lease stays reserved for the waiter its release names (the oldest in
/// the queue), so newcomers and faster pollers cannot keep overtaking it.
const HANDOVER_GRACE: Duration = Duration::from_millis(500);
/// How long past its last refresh a waiter's ticket still counts (beyond the lease TTL).
const TICKET_SLACK: Duration = Duration::from_secs(2);

/// How often a waiting [`Vfs::lock`] reports to the observer of
/// [`ObjectStoreVfs::with_wait_observer`] (the first report comes after this long too).
const WAIT_REPORT_EVERY: Duration = Duration::from_secs(1);

/// What a [`Vfs::lock`] that waits for another process's lease reports, about once a second,
/// to the observer set with [`ObjectStoreVfs::with_wait_observer`] (a CLI shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockWait {
    /// The lock waited for.
    pub path: VfsPath,
    /// How long this lock has waited so far.
    pub waited: Duration,
    /// When the holder's lease runs out by its own renewal record if it stops renewing
    /// (`None`: released, handed to an earlier waiter).
    pub expires_in: Option<Duration>,
    /// How long the lock waits at most.
    pub timeout: Duration,
}

type WaitObserver = Arc<dyn Fn(&LockWait) + Send + Sync>;

/// Where an [`ObjectStoreVfs::s3`] keeps its objects: an S3 bucket, or a bucket of an
/// S3-compatible server (which must support conditional puts, `If-None-Match` and `If-Match`).
///
/// Settings left unset are read from the standard `AWS_*` environment variables (access key,
/// secret, session token, region, endpoint), as the AWS tools do.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct S3Config {
    /// The bucket's name (it must exist).
    pub bucket: String,
    /// A key prefix under which everything is stored (`""` for the whole bucket), so several
    /// deployments can share a bucket. Validated like a [`VfsPath`].
    pub prefix: String,
    /// The endpoint URL of an S3-compatible server (`None` for AWS).
    pub endpoint: Option<String>,
    /// The region (`None`: from the environment, else `us-east-1`).
    pub region: Option<String>,
    /// The access key id (`None`: from the environment or the instance's role).
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<SecretString>,
    /// A session token, for temporary credentials.
    pub session_token: Option<SecretString>,
    /// Whether plain `http://` endpoints are allowed (a server on loopback); off by default.
    pub allow_http: bool,
    /// The lease TTL (`None`: [`DEFAULT_LEASE_TTL`]); see [`ObjectStoreVfs::with_lease_ttl`].
    pub lease_ttl: Option<Duration>,
    /// How long a lock waits (`None`: [`DEFAULT_OBJECT_LOCK_TIMEOUT`]).
    pub lock_timeout: Option<Duration>,
    /// Single-writer mode; see [`ObjectStoreVfs::with_single_writer`]. Off by default.
    pub single_writer: bool,
}

impl S3Config {
    /// A configuration for `bucket`, everything else unset.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            allow_http: false,
            lease_ttl: None,
            lock_timeout: None,
            single_writer: false,
        }
    }

    /// Stores everything under `prefix`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Talks to an S3-compatible server at `endpoint` (path-style requests).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets the region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets static credentials.
    pub fn with_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: SecretString,
    ) -> Self {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(secret_access_key);
        self
    }

    /// Allows (or not) a plain `http://` endpoint.
    pub fn with_allow_http(mut self, allow_http: bool) -> Self {
        self.allow_http = allow_http;
        self
    }

    /// Sets the lease TTL (every process sharing the bucket should use the same).
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl);
        self
    }

    /// Sets how long a lock waits before giving up.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = Some(timeout);
        self
    }

    /// Turns single-writer mode on or off.
    pub fn with_single_writer(mut self, single_writer: bool) -> Self {
        self.single_writer = single_writer;
        self
    }
}

/// A [`Vfs`] on an object store: S3 and S3-compatible servers through
/// [`ObjectStoreVfs::s3`], or any [`ObjectStore`] through [`ObjectStoreVfs::new`] (such as
/// `object_store::memory::InMemory`, which supports conditional puts too).
///
/// Its [`lock`](Vfs::lock) excludes across every process sharing the store, with a renewed
/// lease. See the [module docs](self) for the layout, the lease protocol and their costs.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use kaos_vfs::{ObjectStoreVfs, Vfs, VfsPath, object_store::memory::InMemory};
///
/// let vfs = ObjectStoreVfs::new(Arc::new(InMemory::new()), "tenant-a")?;
/// let log = VfsPath::new("sessions/s1/turns.jsonl")?;
/// vfs.append(&log, "{\"turn\":1}\n".into()).await?;
/// vfs.append(&log, "{\"turn\":2}\n".into()).await?;
/// assert_eq!(vfs.read_from(&log, 11).await?, "{\"turn\":2}\n");
/// let _held = vfs.lock(&VfsPath::new(".locks/s1")?).await?;
/// # Ok::<(), kaos_vfs::VfsError>(())
/// # }).unwrap();
/// ```
pub struct ObjectStoreVfs {
    store: Arc<dyn ObjectStore>,
    files: Path,
    leases: Path,
    /// Where the conditional-write probe writes its scratch objects.
    probes: Path,
    lease_ttl: Duration,
    lock_timeout: Duration,
    /// Only one process uses the store: no leases, no probe (see [`ObjectStoreVfs::with_single_writer`]).
    single_writer: bool,
    /// The outcome of the conditional-write probe, made once.
    conditional: tokio::sync::OnceCell<Result<(), Probe>>,
    /// The leases this process holds, which fence its writes.
    held: Mutex<Vec<Weak<LeaseShared>>>,
    /// Versions of the leases this process released last, so it takes them back in one request.
    released: Arc<Mutex<HashMap<String, UpdateVersion>>>,
    /// Told about lock waits.
    wait_observer: Option<WaitObserver>,
    /// Serializes this process's changes to one file, so its own tasks do not race each other
    /// for sequence numbers.
    mutations: LocalLocks,
    /// Serializes this process's waiters for one lock, so they queue here, not on the store.
    local_locks: LocalLocks,
    indexes: Mutex<HashMap<String, Arc<Index>>>,
}

impl fmt::Debug for ObjectStoreVfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreVfs")
            .field("store", &self.store.to_string())
            .field("files", &self.files.as_ref())
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
    }
}

/// One segment of a file, as listed.
#[derive(Debug, Clone)]
struct Segment {
    seq: u64,
    size: u64,
    modified: SystemTime,
    e_tag: Option<String>,
    location: Path,
}

/// The newest generation of a file as last seen: its segments in order.
#[derive(Debug, Clone, Default)]
struct Index {
    generation: u64,
    segments: Vec<Segment>,
    /// Keys of older generations seen in the same listing (garbage).
    stale: Vec<Path>,
    /// When the listing behind it was sent (it reflects every write made before).
    listed_at: Option<Instant>,
}

impl Index {
    fn exists(&self) -> bool {
        !self.segments.is_empty()
    }

    fn len(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    fn modified(&self) -> Option<SystemTime> {
        let newest = self.segments.iter().map(|s| s.modified).max()?;
        Some(newest + Duration::from_nanos(self.generation))
    }
}

/// Parses a segment key's last part, `{generation:020}-{sequence:020}`.
fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let (generation, seq) = name.split_once('-')?;
    Some((generation.parse().ok()?, seq.parse().ok()?))
}

fn segment_name(generation: u64, seq: u64) -> String {
    format!("{generation:020}-{seq:020}")
}

/// Decodes one percent-encoded key part back to a name.
fn decode_part(part: &str) -> Option<String> {
    percent_encoding::percent_decode_str(part).decode_utf8().ok().map(|s| s.into_owned())
}

/// `key` followed by the already encoded part `raw` (kept as it is, not encoded again).
fn child_raw(key: &Path, raw: &str) -> Result<Path, VfsError> {
    PathPart::parse(raw)
        .map(|part| key.clone().join(part))
        .map_err(|_| VfsError::InvalidPath { path: raw.to_owned(), reason: "not a valid object key part" })
}

fn not_found(path: &VfsPath) -> VfsError {
    VfsError::NotFound(path.to_string())
}

fn is_a_directory(path: &VfsPath) -> VfsError {
    VfsError::WrongKind { path: path.clone(), expected: "file", found: "directory" }
}

/// Maps a store error about `path` to a [`VfsError`].
fn store_error(path: &VfsPath, error: object_store::Error) -> VfsError {
    use std::io::ErrorKind;
    let kind = match &error {
        object_store::Error::NotFound { .. } => return not_found(path),
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            ErrorKind::PermissionDenied
        }
        object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented { .. } => {
            ErrorKind::Unsupported
        }
        object_store::Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
        _ => ErrorKind::Other,
    };
    VfsError::Io { path: path.to_string(), source: std::io::Error::new(kind, error) }
}

fn conflict_error(path: &VfsPath, what: &str) -> VfsError {
    VfsError::Io {
        path: path.to_string(),
        source: std::io::Error::other(format!("gave up after {MAX_CONFLICTS} conflicting {what}s")),
    }
}

/// A pseudo-random number for backoff jitter (no need for a real generator).
fn jitter() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let mut x = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) ^ u64::from(nanos);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// A token naming one acquisition of a lease.
fn owner_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{nanos:x}-{:x}-{:x}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), jitter())
}

/// A lease's body: who holds it, the renewal count, its TTL, when the holder wrote it (its
/// own clock, milliseconds since the epoch) and whether it was released.
fn lease_body(owner: &str, renewal: u64, ttl: Duration, released: bool) -> PutPayload {
    PutPayload::from(format!(
        "{{\"owner\":\"{owner}\",\"renewal\":{renewal},\"ttl_ms\":{},\"renewed_at_ms\":{},\"released\":{released}}}\n",
        ttl.as_millis(),
        wall_ms()
    ))
}

/// A released lease's body, naming the waiter it is handed to (if any).
fn released_body(owner: &str, ttl: Duration, next: Option<&str>) -> PutPayload {
    let next = next.map(|next| format!(",\"next\":\"{next}\"")).unwrap_or_default();
    PutPayload::from(format!(
        "{{\"owner\":\"{owner}\",\"ttl_ms\":{},\"renewed_at_ms\":{},\"released\":true{next}}}\n",
        ttl.as_millis(),
        wall_ms()
    ))
}

impl ObjectStoreVfs {
    /// A VFS on `store`, with everything under the key prefix `prefix` (`""` for none; validated
    /// like a [`VfsPath`]). The store must support conditional puts (`PutMode::Create` and
    /// `PutMode::Update`), as S3, `InMemory` and the local filesystem store do.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self, VfsError> {
        let prefix = VfsPath::new(prefix)?;
        let mut root = Path::default();
        for segment in prefix.segments() {
            root = root.join(segment);
        }
        Ok(Self {
            store,
            files: root.clone().join("vfs"),
            leases: root.clone().join("leases"),
            probes: root.join("probe"),
            lease_ttl: DEFAULT_LEASE_TTL,
            lock_timeout: DEFAULT_OBJECT_LOCK_TIMEOUT,
            single_writer: false,
            conditional: tokio::sync::OnceCell::new(),
            held: Mutex::new(Vec::new()),
            released: Arc::new(Mutex::new(HashMap::new())),
            wait_observer: None,
            mutations: LocalLocks::default(),
            local_locks: LocalLocks::default(),
            indexes: Mutex::new(HashMap::new()),
        })
    }

    /// A VFS on an S3 (or S3-compatible) bucket. Fails with `Io` (`InvalidInput`) when the
    /// configuration is incomplete; makes no request (a wrong bucket shows on first use).
    pub fn s3(config: S3Config) -> Result<Self, VfsError> {
        use object_store::aws::AmazonS3Builder;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&config.bucket);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose_secret());
        }
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token.expose_secret());
        }
        let store = builder.with_allow_http(config.allow_http).build().map_err(|e| VfsError::Io {
            path: format!("s3://{}", config.bucket),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        let mut vfs = Self::new(Arc::new(store), &config.prefix)?.with_single_writer(config.single_writer);
        if let Some(ttl) = config.lease_ttl {
            vfs = vfs.with_lease_ttl(ttl);
        }
        if let Some(timeout) = config.lock_timeout {
            vfs = vfs.with_lock_timeout(timeout);
        }
        Ok(vfs)
    }

    /// Sets the lease TTL (default [`DEFAULT_LEASE_TTL`]); every process sharing the store
    /// should use the same. Renewals happen every third of it.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(30));
        self
    }

    /// How long [`Vfs::lock`] waits before giving up with [`VfsError::LockTimeout`] (default
    /// [`DEFAULT_OBJECT_LOCK_TIMEOUT`]).
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Calls `observer` about once a second while a [`lock`](Vfs::lock) waits for another
    /// process's lease, with how long it has waited and when the holder's lease runs out.
    pub fn with_wait_observer(mut self, observer: impl Fn(&LockWait) + Send + Sync + 'static) -> Self {
        self.wait_observer = Some(Arc::new(observer));
        self
    }

    /// Single-writer mode: only this process uses the store, so [`lock`](Vfs::lock) excludes
    /// within the process only (no lease objects) and the conditional-write probe is skipped.
    /// For stores that ignore conditional writes; unsafe with several processes.
    pub fn with_single_writer(mut self, single_writer: bool) -> Self {
        self.single_writer = single_writer;
        self
    }

    /// The key prefix of the directory `path` (its files and subdirectories lie below it).
    fn dir_key(&self, path: &VfsPath) -> Path {
        path.segments().fold(self.files.clone(), |key, segment| key.join(segment))
    }

    /// The key prefix of the file `path`'s segments (`path` is not the root).
    fn file_key(&self, path: &VfsPath) -> Result<Path, VfsError> {
        let Some(parent) = path.parent() else { return Err(is_a_directory(path)) };
        let name = PathPart::from(path.file_name().unwrap_or_default());
        child_raw(&self.dir_key(&parent), &format!("{}{FILE_MARK}", name.as_ref()))
    }

    fn segment_key(&self, path: &VfsPath, generation: u64, seq: u64) -> Result<Path, VfsError> {
        child_raw(&self.file_key(path)?, &segment_name(generation, seq))
    }

    fn cached_index(&self, path: &VfsPath) -> Option<Arc<Index>> {
        self.indexes.lock().unwrap_or_else(PoisonError::into_inner).get(path.as_str()).cloned()
    }

    fn remember(&self, path: &VfsPath, index: &Index) {
        let mut indexes = self.indexes.lock().unwrap_or_else(PoisonError::into_inner);
        if !index.exists() {
            indexes.remove(path.as_str());
            return;
        }
        if indexes.len() >= INDEX_CACHE_ENTRIES && !indexes.contains_key(path.as_str()) {
            indexes.clear();
        }
        let kept = Index {
            generation: index.generation,
            segments: index.segments.clone(),
            stale: Vec::new(),
            listed_at: index.listed_at,
        };
        indexes.insert(path.as_str().to_owned(), Arc::new(kept));
    }

    fn forget(&self, path: &VfsPath) {
        self.indexes.lock().unwrap_or_else(PoisonError::into_inner).remove(path.as_str());
    }

    /// Builds an index from listed segment objects: the newest generation's segments in order
    /// (those a compaction covers replaced by the compaction), and the keys of older ones.
    fn index_of(metas: Vec<ObjectMeta>) -> Index {
        let mut parsed: Vec<(u64, Segment)> = Vec::new();
        let mut compactions: Vec<(u64, Segment)> = Vec::new();
        for meta in metas {
            let Some(name) = meta.location.filename() else { continue };
            let (list, (generation, seq)) = match name.strip_prefix(COMPACTION_MARK) {
                Some(rest) => match parse_segment_name(rest) {
                    Some(parsed_name) => (&mut compactions, parsed_name),
                    None => continue,
                },
                None => match parse_segment_name(name) {
                    Some(parsed_name) => (&mut parsed, parsed_name),
                    None => continue,
                },
            };
            let segment = Segment {
                seq,
                size: meta.size,
                modified: SystemTime::from(meta.last_modified),
                e_tag: meta.e_tag,
                location: meta.location,
            };
            list.push((generation, segment));
        }
        parsed.sort_by_key(|(generation, s)| (*generation, s.seq));
        let generation = parsed.last().map_or(0, |(generation, _)| *generation);
        let (current, older): (Vec<_>, Vec<_>) = parsed.into_iter().partition(|(g, _)| *g == generation);
        let mut segments: Vec<Segment> = current.into_iter().map(|(_, s)| s).collect();
        let mut stale: Vec<Path> = older.into_iter().map(|(_, s)| s.location).collect();
        // The newest compaction of this generation whose segments are all listed, unbroken
        // from 0, and add up to its size.
        compactions.sort_by_key(|(g, c)| (*g, c.seq));
        let mut usable = None;
        for (g, compaction) in compactions {
            let covered = segments.iter().take_while(|s| s.seq <= compaction.seq).collect::<Vec<_>>();
            let whole = g == generation
                && covered.len() as u64 == compaction.seq + 1
                && covered.iter().enumerate().all(|(i, s)| s.seq == i as u64)
                && covered.iter().map(|s| s.size).sum::<u64>() == compaction.size;
            if whole {
                let modified = covered.iter().map(|s| s.modified).max().unwrap_or(compaction.modified);
                if let Some(Segment { location, .. }) = usable.replace(Segment { modified, ..compaction }) {
                    stale.push(location);
                }
            } else if g < generation {
                stale.push(compaction.location);
            }
        }
        if let Some(compaction) = usable {
            segments.retain(|s| s.seq > compaction.seq);
            segments.insert(0, compaction);
        }
        Index { generation, segments, stale, listed_at: None }
    }

    /// Writes a compaction of `index` (the segments of `path` as this process just appended
    /// them): one object holding the concatenation of every segment, which readers fetch
    /// instead of the segments it covers, so a cold read costs the same however many appends
    /// the file has had. Best effort: a reader without it reads the segments.
    async fn compact(&self, path: &VfsPath, index: &Index) -> Result<(), VfsError> {
        let Some(last) = index.segments.last() else { return Ok(()) };
        let Some(bytes) = self.fetch(path, &index.segments, 0).await? else { return Ok(()) };
        let name = format!("{COMPACTION_MARK}{}", segment_name(index.generation, last.seq));
        let key = child_raw(&self.file_key(path)?, &name)?;
        let size = bytes.len() as u64;
        let e_tag =
            match self.store.put_opts(&key, PutPayload::from(bytes), PutOptions::from(PutMode::Create)).await
            {
                Ok(result) => result.e_tag,
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                    self.forget(path);
                    return Ok(());
                }
                Err(e) => return Err(store_error(path, e)),
            };
        // The compaction this one supersedes.
        let superseded: Vec<Path> = index
            .segments
            .first()
            .filter(|first| first.location.filename().is_some_and(|n| n.starts_with(COMPACTION_MARK)))
            .map(|first| first.location.clone())
            .into_iter()
            .collect();
        // From now on this process reads the compaction, not the segments it covers.
        let modified = index.segments.iter().map(|s| s.modified).max().unwrap_or_else(SystemTime::now);
        let compaction = Segment { seq: last.seq, size, modified, e_tag, location: key };
        self.remember(path, &Index { segments: vec![compaction], stale: Vec::new(), ..index.clone() });
        self.delete_keys(path, superseded).await
    }

    /// The file's current index: one listing of every segment.
    async fn full_index(&self, path: &VfsPath) -> Result<Index, VfsError> {
        let key = self.file_key(path)?;
        let sent = Instant::now();
        let metas: Vec<ObjectMeta> =
            self.store.list(Some(&key)).try_collect().await.map_err(|e| store_error(path, e))?;
        let index = Index { listed_at: Some(sent), ..Self::index_of(metas) };
        self.remember(path, &index);
        Ok(index)
    }

    /// The file's current index. With a remembered index, lists only from its last segment
    /// on, and trusts the rest when that segment is still there unchanged (segments are
    /// immutable; a deleted file loses them all).
    async fn index(&self, path: &VfsPath) -> Result<Index, VfsError> {
        let Some(known) = self.cached_index(path) else { return self.full_index(path).await };
        let Some(last) = known.segments.last() else { return self.full_index(path).await };
        let key = self.file_key(path)?;
        let offset = match last.seq.checked_sub(1) {
            Some(previous) => child_raw(&key, &segment_name(known.generation, previous))?,
            None => child_raw(&key, &format!("{:020}", known.generation))?,
        };
        let sent = Instant::now();
        let metas: Vec<ObjectMeta> = self
            .store
            .list_with_offset(Some(&key), &offset)
            .try_collect()
            .await
            .map_err(|e| store_error(path, e))?;
        let still_there =
            metas.iter().any(|m| m.location == last.location && m.e_tag == last.e_tag && m.size == last.size);
        if !still_there {
            return self.full_index(path).await;
        }
        let newer = Self::index_of(metas);
        let index = if newer.generation == known.generation {
            let mut segments = known.segments.clone();
            // The last segment as listed (this process may have recorded its own append with
            // its own clock), unless it is a compaction, which the listing does not rebuild.
            let compaction = last.location.filename().is_some_and(|n| n.starts_with(COMPACTION_MARK));
            let from = if compaction { last.seq + 1 } else { last.seq };
            segments.retain(|s| s.seq < from);
            segments.extend(newer.segments.into_iter().filter(|s| s.seq >= from));
            Index { generation: known.generation, segments, stale: newer.stale, listed_at: Some(sent) }
        } else {
            Index { listed_at: Some(sent), ..newer }
        };
        self.remember(path, &index);
        Ok(index)
    }

    /// Whether some segment of a file at `path` exists (one short listing).
    async fn file_exists(&self, path: &VfsPath) -> Result<bool, VfsError> {
        let key = self.file_key(path)?;
        let first = self.store.list(Some(&key)).next().await;
        first.transpose().map(|m| m.is_some()).map_err(|e| store_error(path, e))
    }

    /// Whether anything lies below the directory `path` (one short listing).
    async fn dir_exists(&self, path: &VfsPath) -> Result<bool, VfsError> {
        if path.is_root() {
            return Ok(true);
        }
        let first = self.store.list(Some(&self.dir_key(path))).next().await;
        first.transpose().map(|m| m.is_some()).map_err(|e| store_error(path, e))
    }

    /// Checks that a new file may be created at `path`: it is not a directory and no ancestor
    /// is a file (all checked at once).
    async fn check_file_slot(&self, path: &VfsPath) -> Result<(), VfsError> {
        let mut ancestors = Vec::new();
        let mut ancestor = path.parent();
        while let Some(dir) = ancestor {
            if dir.is_root() {
                break;
            }
            ancestor = dir.parent();
            ancestors.push(dir);
        }
        let files = futures::future::try_join_all(ancestors.iter().map(|dir| self.file_exists(dir)));
        let (is_dir, files) = futures::future::try_join(self.dir_exists(path), files).await?;
        if is_dir {
            return Err(is_a_directory(path));
        }
        if let Some((dir, _)) = ancestors.iter().zip(files).find(|(_, is_file)| *is_file) {
            return Err(VfsError::WrongKind { path: dir.clone(), expected: "directory", found: "file" });
        }
        Ok(())
    }

    /// The error for a read of a path that has no file.
    async fn missing_file(&self, path: &VfsPath) -> VfsError {
        match self.dir_exists(path).await {
            Ok(true) => is_a_directory(path),
            Ok(false) => not_found(path),
            Err(e) => e,
        }
    }

    /// Fetches the bytes of `segments` from `offset` on; `None` when a segment changed or
    /// vanished since it was listed (the caller lists again).
    async fn fetch(
        &self,
        path: &VfsPath,
        segments: &[Segment],
        offset: u64,
    ) -> Result<Option<Bytes>, VfsError> {
        let mut requests = Vec::new();
        let mut start = 0u64;
        for segment in segments {
            let end = start + segment.size;
            if end > offset && segment.size > 0 {
                let from = offset.saturating_sub(start);
                let mut options = GetOptions::default();
                options.if_match.clone_from(&segment.e_tag);
                if from > 0 {
                    options.range = Some(GetRange::Offset(from));
                }
                requests.push((segment.location.clone(), options));
            }
            start = end;
        }
        let pieces: Vec<Option<Bytes>> = stream::iter(requests)
            .map(|(location, options)| async move {
                let got = match self.store.get_opts(&location, options).await {
                    Ok(got) => got.bytes().await,
                    Err(e) => Err(e),
                };
                match got {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(object_store::Error::NotFound { .. } | object_store::Error::Precondition { .. }) => {
                        Ok(None)
                    }
                    Err(e) => Err(store_error(path, e)),
                }
            })
            .buffered(PARALLEL_REQUESTS)
            .try_collect()
            .await?;
        let Some(pieces) = pieces.into_iter().collect::<Option<Vec<Bytes>>>() else { return Ok(None) };
        Ok(Some(match pieces.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            _ => {
                let mut joined = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
                for piece in &pieces {
                    joined.extend_from_slice(piece);
                }
                joined.freeze()
            }
        }))
    }

    /// Creates the segment `(generation, seq)` of `path` (refused while a lease this process
    /// holds is lost: fencing); `None` when it already exists.
    async fn create_segment(
        &self,
        path: &VfsPath,
        generation: u64,
        seq: u64,
        data: &Bytes,
    ) -> Result<Option<Segment>, VfsError> {
        let key = self.segment_key(path, generation, seq)?;
        self.fence()?;
        let put =
            self.store.put_opts(&key, PutPayload::from(data.clone()), PutOptions::from(PutMode::Create));
        match put.await {
            Ok(result) => Ok(Some(Segment {
                seq,
                size: data.len() as u64,
                modified: SystemTime::now(),
                e_tag: result.e_tag,
                location: key,
            })),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Ok(None)
            }
            Err(e) => Err(store_error(path, e)),
        }
    }

    /// After losing the race for a segment: under a lease, with an index listed after the
    /// lease was taken, nobody else may have written, so the race is an error (`LockLost` if
    /// the lease is gone, else `Conflict`) rather than something to retry.
    async fn lost_race(
        &self,
        path: &VfsPath,
        index: &Index,
        leased: Option<Instant>,
    ) -> Result<(), VfsError> {
        let fresh = matches!((leased, index.listed_at), (Some(acquired), Some(listed)) if listed >= acquired);
        if fresh {
            self.verify_leases().await?;
            return Err(VfsError::Conflict { path: path.clone() });
        }
        Ok(())
    }

    /// Deletes `keys`, ignoring the ones already gone.
    async fn delete_keys(&self, path: &VfsPath, keys: Vec<Path>) -> Result<(), VfsError> {
        if keys.is_empty() {
            return Ok(());
        }
        let locations = stream::iter(keys.into_iter().map(Ok)).boxed();
        let results: Vec<Result<Path, object_store::Error>> =
            self.store.delete_stream(locations).collect().await;
        for result in results {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(path, e)),
            }
        }
        Ok(())
    }

    /// Every key under `prefix`.
    async fn keys_under(&self, path: &VfsPath, prefix: &Path) -> Result<Vec<Path>, VfsError> {
        self.store
            .list(Some(prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| store_error(path, e))
    }

    fn lease_key(&self, path: &VfsPath) -> Path {
        path.segments().fold(self.leases.clone(), |key, segment| key.join(segment))
    }

    /// The prefix of the waiters' tickets for the lease of `path`: a sibling of the lease
    /// object whose name ends in `~q` (a bare `~` never ends an encoded name).
    fn queue_key(&self, path: &VfsPath) -> Result<Path, VfsError> {
        let Some(parent) = path.parent() else { return Err(is_a_directory(path)) };
        let parent = parent.segments().fold(self.leases.clone(), |key, segment| key.join(segment));
        let name = PathPart::from(path.file_name().unwrap_or_default());
        child_raw(&parent, &format!("{}{FILE_MARK}q", name.as_ref()))
    }
}

#[async_trait]
impl Vfs for ObjectStoreVfs {
    async fn read(&self, path: &VfsPath) -> Result<Bytes, VfsError> {
        self.read_from(path, 0).await
    }

    async fn write(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        if path.is_root() {
            return Err(is_a_directory(path));
        }
        let _serial = self.mutations.lock(path.as_str()).await;
        self.check_conditional_writes().await?;
        let leased = self.fence()?;
        let mut index = self.index(path).await?;
        if !index.exists() {
            self.check_file_slot(path).await?;
        }
        for _ in 0..MAX_CONFLICTS {
            let generation = index.generation + 1;
            if self.create_segment(path, generation, 0, &data).await?.is_some() {
                self.forget(path);
                let mut garbage = index.stale;
                garbage.extend(index.segments.into_iter().map(|s| s.location));
                // Best effort: readers ignore older generations anyway.
                let _ = self.delete_keys(path, garbage).await;
                return Ok(());
            }
            self.lost_race(path, &index, leased).await?;
            index = self.full_index(path).await?;
        }
        Err(conflict_error(path, "write"))
    }

    async fn append(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        if path.is_root() {
            return Err(is_a_directory(path));
        }
        let _serial = self.mutations.lock(path.as_str()).await;
        self.check_conditional_writes().await?;
        let leased = self.fence()?;
        // Under a lease, an index listed since the lease was taken is current: nobody else
        // may append, and this process's own appends keep it up to date.
        let known = self.cached_index(path).filter(|known| {
            known.exists()
                && matches!((leased, known.listed_at), (Some(acquired), Some(listed)) if listed >= acquired)
        });
        let mut index = match known {
            Some(known) => Index::clone(&known),
            None => self.index(path).await?,
        };
        if !index.exists() {
            self.check_file_slot(path).await?;
        } else if data.is_empty() {
            return Ok(());
        }
        for _ in 0..MAX_CONFLICTS {
            let (generation, seq) = match index.segments.last() {
                Some(last) => (index.generation, last.seq + 1),
                None => (1, 0),
            };
            if let Some(segment) = self.create_segment(path, generation, seq, &data).await? {
                index.generation = generation;
                index.segments.push(segment);
                index.stale.clear();
                self.remember(path, &index);
                if index.segments.len() > COMPACT_AFTER {
                    // Best effort: the append itself is done.
                    let _ = self.compact(path, &index).await;
                }
                return Ok(());
            }
            self.lost_race(path, &index, leased).await?;
            // Another process appended first: list again and take the next number.
            tokio::time::sleep(Duration::from_micros(jitter() % 2_000)).await;
            index = self.index(path).await?;
        }
        Err(conflict_error(path, "append"))
    }

    /// Objects cannot be cut in place: a longer file is replaced by its prefix (one new
    /// generation, as [`write`](Vfs::write) makes). Puts are durable, so [`Vfs::sync`] does
    /// nothing.
    async fn truncate(&self, path: &VfsPath, len: u64) -> Result<(), VfsError> {
        let bytes = self.read(path).await?;
        let keep = usize::try_from(len).unwrap_or(usize::MAX);
        if keep < bytes.len() {
            self.write(path, bytes.slice(..keep)).await?;
        }
        Ok(())
    }

    async fn exists(&self, path: &VfsPath) -> Result<bool, VfsError> {
        if path.is_root() {
            return Ok(true);
        }
        let (file, dir) = futures::future::try_join(self.file_exists(path), self.dir_exists(path)).await?;
        Ok(file || dir)
    }

    async fn stat(&self, path: &VfsPath) -> Result<Metadata, VfsError> {
        if path.is_root() {
            return Ok(Metadata::dir(None));
        }
        let index = self.index(path).await?;
        if index.exists() {
            return Ok(Metadata::file(index.len(), index.modified()));
        }
        if self.dir_exists(path).await? { Ok(Metadata::dir(None)) } else { Err(not_found(path)) }
    }

    async fn list(&self, prefix: &VfsPath) -> Result<Vec<VfsEntry>, VfsError> {
        if !prefix.is_root() && self.file_exists(prefix).await? {
            return Err(VfsError::WrongKind { path: prefix.clone(), expected: "directory", found: "file" });
        }
        let listing = self
            .store
            .list_with_delimiter(Some(&self.dir_key(prefix)))
            .await
            .map_err(|e| store_error(prefix, e))?;
        let mut files = Vec::new();
        let mut entries = Vec::new();
        for child in &listing.common_prefixes {
            let Some(raw) = child.filename() else { continue };
            let (name, is_file) = match raw.strip_suffix(FILE_MARK) {
                Some(name) => (name, true),
                None => (raw, false),
            };
            let Some(path) = decode_part(name).and_then(|name| prefix.join(&name).ok()) else { continue };
            if is_file {
                files.push(path);
            } else {
                entries.push(VfsEntry::new(path, EntryKind::Dir, 0));
            }
        }
        let sized: Vec<VfsEntry> = stream::iter(files)
            .map(|path| async move {
                let index = self.index(&path).await?;
                Ok::<_, VfsError>(index.exists().then(|| VfsEntry::new(path, EntryKind::File, index.len())))
            })
            .buffered(PARALLEL_REQUESTS)
            .try_filter_map(|entry| async move { Ok(entry) })
            .try_collect()
            .await?;
        entries.extend(sized);
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    async fn delete(&self, path: &VfsPath) -> Result<(), VfsError> {
        self.fence()?;
        let keys = if path.is_root() {
            self.keys_under(path, &self.files).await?
        } else {
            let file_key = self.file_key(path)?;
            let (mut file, dir) = futures::future::try_join(
                self.keys_under(path, &file_key),
                self.keys_under(path, &self.dir_key(path)),
            )
            .await?;
            if file.is_empty() && dir.is_empty() {
                return Err(not_found(path));
            }
            file.extend(dir);
            file
        };
        self.indexes.lock().unwrap_or_else(PoisonError::into_inner).clear();
        self.delete_keys(path, keys).await
    }

    async fn read_from(&self, path: &VfsPath, offset: u64) -> Result<Bytes, VfsError> {
        if path.is_root() {
            return Err(is_a_directory(path));
        }
        for _ in 0..MAX_CONFLICTS {
            let index = self.index(path).await?;
            if !index.exists() {
                return Err(self.missing_file(path).await);
            }
            if let Some(bytes) = self.fetch(path, &index.segments, offset).await? {
                return Ok(bytes);
            }
            // A segment went away (the file was rewritten or deleted): look again.
            self.forget(path);
        }
        Err(conflict_error(path, "read"))
    }

    /// Excludes across every process sharing the store, with a renewed lease (see the
    /// [module docs](self)). In single-writer mode, excludes within this process only.
    async fn lock(&self, path: &VfsPath) -> Result<VfsLock, VfsError> {
        let local = self.local_locks.lock(path.as_str()).await;
        self.check_conditional_writes().await?;
        if self.single_writer {
            return Ok(local);
        }
        let key = self.lease_key(path);
        let queue = self.queue_key(path)?;
        let owner = owner_token();
        // Deleted when the wait ends, also when this future is dropped mid-wait (Ctrl-C).
        let mut ticket = Ticket { store: Arc::clone(&self.store), key: None };
        let taken = self.acquire(path, &key, &queue, &owner, &mut ticket.key).await;
        ticket.delete().await;
        Ok(self.hold(path, key, queue, owner, taken?, local))
    }

    /// The lease is taken behind an in-process lock of the same name (held with it).
    fn locks_in_process_first(&self) -> bool {
        true
    }
}

/// A waiter's ticket in a lease's queue, deleted when the wait ends: by [`Ticket::delete`], or
/// on drop when the wait was abandoned, so a release never hands the lease to a waiter that is
/// gone. Best effort: a ticket left behind (a killed process) stops counting after a TTL.
struct Ticket {
    store: Arc<dyn ObjectStore>,
    key: Option<Path>,
}

impl Ticket {
    async fn delete(mut self) {
        if let Some(key) = self.key.take() {
            let _ = self.store.delete(&key).await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let store = Arc::clone(&self.store);
        let delete = async move {
            let _ = tokio::time::timeout(TICKET_SLACK, store.delete(&key)).await;
        };
        if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            // Deleted before the drop returns, so a process that exits right after leaves none.
            tokio::task::block_in_place(|| runtime.block_on(delete));
        } else {
            runtime.spawn(delete);
        }
    }
}

impl ObjectStoreVfs {
    /// Waits for the lease at `key` and takes it. While it waits, it holds a ticket in the
    /// lease's queue (left in `ticket` for the caller to delete), so a release hands the lease
    /// to the oldest waiter.
    async fn acquire(
        &self,
        path: &VfsPath,
        key: &Path,
        queue: &Path,
        owner: &str,
        ticket: &mut Option<Path>,
    ) -> Result<Taken, VfsError> {
        let started = Instant::now();
        let deadline = started + self.lock_timeout;
        let mut ticket_written = started;
        let mut reported = Duration::ZERO;
        // Fast path: this process released the lease last; take it back against that version.
        let remembered = self.released.lock().unwrap_or_else(PoisonError::into_inner).remove(key.as_ref());
        if let Some(version) = remembered
            && let Some(taken) = self.take_lease(path, key, owner, PutMode::Update(version)).await?
        {
            return Ok(taken);
        }
        // The lease's ETag as first seen, and when (for a holder whose clock is off).
        let mut seen: Option<(Option<String>, Instant)> = None;
        let mut backoff = Duration::from_millis(2);
        loop {
            let mut pause_cap = MAX_LOCK_BACKOFF;
            match self.store.get(key).await {
                Err(object_store::Error::NotFound { .. }) => {
                    match self.take_lease(path, key, owner, PutMode::Create).await? {
                        Some(taken) => return Ok(taken),
                        None => continue,
                    }
                }
                Err(e) => return Err(store_error(path, e)),
                Ok(got) => {
                    let meta = got.meta.clone();
                    let body = got.bytes().await.unwrap_or_default();
                    let record = LeaseRecord::parse(&body);
                    let ttl = record.ttl.unwrap_or(self.lease_ttl);
                    let unchanged_for = match &seen {
                        Some((e_tag, since)) if *e_tag == meta.e_tag && meta.e_tag.is_some() => {
                            since.elapsed()
                        }
                        _ => {
                            seen = Some((meta.e_tag.clone(), Instant::now()));
                            Duration::ZERO
                        }
                    };
                    let left = record.time_left(ttl);
                    // Free: released by its holder, not renewed for a TTL by the holder's own
                    // record, or (whatever the clocks say) seen unchanged for a whole TTL here.
                    let free = record.released || left.is_zero() || unchanged_for >= ttl;
                    // A release names the oldest waiter; for a moment the lease is theirs.
                    let reserved = record.released
                        && record.next.as_deref().is_some_and(|next| next != owner)
                        && record.released_for() < HANDOVER_GRACE;
                    if free && !reserved {
                        let version = UpdateVersion { e_tag: meta.e_tag, version: meta.version };
                        match self.take_lease(path, key, owner, PutMode::Update(version)).await? {
                            Some(taken) => return Ok(taken),
                            None => {
                                seen = None;
                                continue;
                            }
                        }
                    }
                    if let Some(observer) = &self.wait_observer
                        && started.elapsed() >= reported + WAIT_REPORT_EVERY
                    {
                        reported = started.elapsed();
                        observer(&LockWait {
                            path: path.clone(),
                            waited: reported,
                            expires_in: (!reserved).then_some(left),
                            timeout: self.lock_timeout,
                        });
                    }
                    if reserved {
                        pause_cap = pause_cap.min(HANDOVER_GRACE.saturating_sub(record.released_for()));
                    } else {
                        // Look again when the holder's record says it expires, if sooner.
                        pause_cap = pause_cap.min(left + Duration::from_millis(1));
                    }
                    // Queue up (and keep the ticket fresh) while someone else holds it.
                    if ticket.is_none() || ticket_written.elapsed() >= self.lease_ttl / 3 {
                        let name =
                            ticket.get_or_insert(child_raw(queue, &format!("{:020}-{owner}", wall_ms()))?);
                        match self.store.put(name, PutPayload::from_static(b"waiting\n")).await {
                            Ok(_) => ticket_written = Instant::now(),
                            Err(e) => return Err(store_error(path, e)),
                        }
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(VfsError::LockTimeout { path: path.clone(), after: now - started });
            }
            let pause = backoff + Duration::from_micros(jitter() % (backoff.as_micros() as u64 + 1));
            tokio::time::sleep(pause.min(pause_cap).min(deadline - now)).await;
            backoff = (backoff * 2).min(MAX_LOCK_BACKOFF);
        }
    }
}

/// A lease object's body, as far as it can be read.
#[derive(Debug, Default)]
struct LeaseRecord {
    ttl: Option<Duration>,
    renewed_at_ms: Option<u64>,
    released: bool,
    /// The waiter a release hands the lease to.
    next: Option<String>,
}

impl LeaseRecord {
    fn parse(body: &[u8]) -> Self {
        let Ok(text) = std::str::from_utf8(body) else { return Self::default() };
        Self {
            ttl: number_field(text, "ttl_ms").map(Duration::from_millis),
            renewed_at_ms: number_field(text, "renewed_at_ms"),
            released: text.contains("\"released\":true"),
            next: text_field(text, "next"),
        }
    }

    /// How long ago the lease was written (released, for a released one) by its holder's
    /// record.
    fn released_for(&self) -> Duration {
        self.renewed_at_ms.map_or(Duration::MAX, |at| Duration::from_millis(wall_ms().saturating_sub(at)))
    }

    /// How long until the lease expires by its holder's own renewal record (zero: expired);
    /// a record without a renewal time (an older process's) never expires by it.
    fn time_left(&self, ttl: Duration) -> Duration {
        match self.renewed_at_ms {
            Some(renewed) => {
                let expires = renewed.saturating_add(ttl.as_millis() as u64);
                Duration::from_millis(expires.saturating_sub(wall_ms()))
            }
            None => ttl,
        }
    }
}

/// The unsigned number after `"name":` in a flat JSON object.
fn number_field(text: &str, name: &str) -> Option<u64> {
    let tag = format!("\"{name}\":");
    let rest = &text[text.find(&tag)? + tag.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The string after `"name":"` in a flat JSON object (no escapes: owner tokens have none).
fn text_field(text: &str, name: &str) -> Option<String> {
    let tag = format!("\"{name}\":\"");
    let rest = &text[text.find(&tag)? + tag.len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// Milliseconds since the Unix epoch on this machine's clock.
fn wall_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A lease just written by this process: its version and when the write was sent.
struct Taken {
    version: UpdateVersion,
    sent: Instant,
}

/// What a holder knows about its lease.
#[derive(Debug)]
struct LeaseState {
    version: UpdateVersion,
    /// Until when no one else can have taken the lease over (send time of the last successful
    /// create or renewal, plus the TTL).
    valid_until: Instant,
    /// The renewal was refused: someone else took the lease over.
    lost: bool,
    /// Released (or being released) by its holder: no longer fences anything.
    done: bool,
}

/// One held lease, shared by its guard, its renewer and the VFS's list of held leases (which
/// fences writes).
struct LeaseShared {
    path: VfsPath,
    key: Path,
    /// The prefix of the waiters' tickets.
    queue: Path,
    ttl: Duration,
    acquired: Instant,
    state: Mutex<LeaseState>,
}

impl LeaseShared {
    fn check(&self) -> Result<(), VfsError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // A margin for the write in flight and for clocks a little apart.
        if state.lost || Instant::now() + self.ttl / 4 >= state.valid_until {
            return Err(VfsError::LockLost { path: self.path.clone() });
        }
        Ok(())
    }

    fn is_live(&self) -> bool {
        !self.state.lock().unwrap_or_else(PoisonError::into_inner).done
    }
}

/// A held lease: renewed in the background, released by [`VfsLock::release`] or on drop.
struct Lease {
    store: Arc<dyn ObjectStore>,
    shared: Arc<LeaseShared>,
    owner: String,
    released: Arc<Mutex<HashMap<String, UpdateVersion>>>,
    renewer: Option<tokio::task::JoinHandle<()>>,
    local: Option<VfsLock>,
}

impl ObjectStoreVfs {
    /// Writes a lease for `owner` at `key` with `mode` (create, or update against a version);
    /// `None` when another process got there first.
    async fn take_lease(
        &self,
        path: &VfsPath,
        key: &Path,
        owner: &str,
        mode: PutMode,
    ) -> Result<Option<Taken>, VfsError> {
        let sent = Instant::now();
        let put =
            self.store.put_opts(key, lease_body(owner, 0, self.lease_ttl, false), PutOptions::from(mode));
        match put.await {
            Ok(result) => Ok(Some(Taken {
                version: UpdateVersion { e_tag: result.e_tag, version: result.version },
                sent,
            })),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotFound { .. },
            ) => Ok(None),
            Err(e) => Err(store_error(path, e)),
        }
    }

    fn hold(
        &self,
        path: &VfsPath,
        key: Path,
        queue: Path,
        owner: String,
        taken: Taken,
        local: VfsLock,
    ) -> VfsLock {
        let ttl = self.lease_ttl;
        let shared = Arc::new(LeaseShared {
            path: path.clone(),
            key,
            queue,
            ttl,
            acquired: taken.sent,
            state: Mutex::new(LeaseState {
                version: taken.version,
                valid_until: taken.sent + ttl,
                lost: false,
                done: false,
            }),
        });
        {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            held.retain(|lease| lease.upgrade().is_some_and(|lease| lease.is_live()));
            held.push(Arc::downgrade(&shared));
        }
        let renewer = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (store, shared, owner) = (Arc::clone(&self.store), Arc::clone(&shared), owner.clone());
            runtime.spawn(renew(store, shared, owner))
        });
        VfsLock::from_held(Lease {
            store: Arc::clone(&self.store),
            shared,
            owner,
            released: Arc::clone(&self.released),
            renewer,
            local: Some(local),
        })
    }

    /// The leases this process holds right now (not released).
    fn held_leases(&self) -> Vec<Arc<LeaseShared>> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.retain(|lease| lease.upgrade().is_some_and(|lease| lease.is_live()));
        held.iter().filter_map(Weak::upgrade).collect()
    }

    /// Fencing: refuses a write while a lease this process holds is lost or expired, so a
    /// holder that was paused past its TTL never commits. Returns when the oldest lease held
    /// was taken (`None`: no lease held).
    fn fence(&self) -> Result<Option<Instant>, VfsError> {
        let mut oldest: Option<Instant> = None;
        for lease in self.held_leases() {
            lease.check()?;
            oldest = Some(oldest.map_or(lease.acquired, |o| o.min(lease.acquired)));
        }
        Ok(oldest)
    }

    /// After a lost race under a lease: asks the store whether every lease held is still
    /// ours (its ETag unchanged); `LockLost` for the first one that is not.
    async fn verify_leases(&self) -> Result<(), VfsError> {
        for lease in self.held_leases() {
            let ours = lease.state.lock().unwrap_or_else(PoisonError::into_inner).version.e_tag.clone();
            let current = match self.store.head(&lease.key).await {
                Ok(meta) => meta.e_tag,
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => return Err(store_error(&lease.path, e)),
            };
            if current.is_none() || current != ours {
                lease.state.lock().unwrap_or_else(PoisonError::into_inner).lost = true;
                return Err(VfsError::LockLost { path: lease.path.clone() });
            }
        }
        Ok(())
    }

    /// Checks once per instance that the store honours conditional writes: a second
    /// create-if-absent of one key must be refused, and so must an update against a version
    /// that is not the current one (see [`ObjectStoreVfs::probe`]). Skipped in single-writer
    /// mode.
    async fn check_conditional_writes(&self) -> Result<(), VfsError> {
        if self.single_writer {
            return Ok(());
        }
        let outcome = self.conditional.get_or_init(|| async { self.probe_store().await }).await;
        match outcome {
            Ok(()) => Ok(()),
            Err(Probe::Unsupported(detail)) => Err(VfsError::ConditionalWritesUnsupported {
                store: self.store.to_string(),
                detail: detail.clone(),
            }),
            Err(Probe::Failed(message)) => Err(VfsError::Io {
                path: self.probes.to_string(),
                source: std::io::Error::other(message.clone()),
            }),
        }
    }

    /// Probes the store's conditional writes on a key of its own under the prefix; `Ok` when
    /// it honours both create-if-absent and compare-and-swap.
    async fn probe_store(&self) -> Result<(), Probe> {
        let key = self.probes.clone().join(owner_token());
        let failed = |e: object_store::Error| Probe::Failed(format!("probing conditional writes: {e}"));
        let created = self
            .store
            .put_opts(&key, PutPayload::from_static(b"1"), PutOptions::from(PutMode::Create))
            .await
            .map_err(failed)?;
        let outcome = async {
            match self
                .store
                .put_opts(&key, PutPayload::from_static(b"2"), PutOptions::from(PutMode::Create))
                .await
            {
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                }
                Ok(_) => {
                    return Err(Probe::Unsupported(
                        "a create-if-absent (If-None-Match: *) overwrote an existing object".to_owned(),
                    ));
                }
                Err(e) => return Err(failed(e)),
            }
            let wrong =
                UpdateVersion { e_tag: Some("\"kaos-probe-not-the-etag\"".to_owned()), version: None };
            match self
                .store
                .put_opts(&key, PutPayload::from_static(b"3"), PutOptions::from(PutMode::Update(wrong)))
                .await
            {
                Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {}
                Ok(_) => {
                    return Err(Probe::Unsupported(
                        "an update against a wrong ETag (If-Match) was applied".to_owned(),
                    ));
                }
                Err(e) => return Err(failed(e)),
            }
            let right = UpdateVersion { e_tag: created.e_tag, version: created.version };
            match self
                .store
                .put_opts(&key, PutPayload::from_static(b"4"), PutOptions::from(PutMode::Update(right)))
                .await
            {
                Ok(_) => Ok(()),
                Err(object_store::Error::Precondition { .. }) => Err(Probe::Unsupported(
                    "an update against the current ETag (If-Match) was refused".to_owned(),
                )),
                Err(e) => Err(failed(e)),
            }
        }
        .await;
        let _ = self.store.delete(&key).await;
        outcome
    }

    /// Checks that this store honours conditional writes (create-if-absent and
    /// compare-and-swap), as every [`lock`](Vfs::lock) and write does once per instance
    /// before anything else. [`VfsError::ConditionalWritesUnsupported`] for a store that ignores
    /// them; always `Ok` in single-writer mode.
    pub async fn probe(&self) -> Result<(), VfsError> {
        self.check_conditional_writes().await
    }
}

/// Why the conditional-write probe failed.
#[derive(Debug)]
enum Probe {
    /// The store answered, and ignored a condition.
    Unsupported(String),
    /// The probe itself failed (network, permissions).
    Failed(String),
}

/// Renews a lease every third of its TTL until aborted or lost.
async fn renew(store: Arc<dyn ObjectStore>, shared: Arc<LeaseShared>, owner: String) {
    let ttl = shared.ttl;
    let mut renewal = 0u64;
    loop {
        tokio::time::sleep(ttl / 3).await;
        renewal += 1;
        let version = {
            let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.done || state.lost {
                return;
            }
            state.version.clone()
        };
        let sent = Instant::now();
        let put = store.put_opts(
            &shared.key,
            lease_body(&owner, renewal, ttl, false),
            PutOptions::from(PutMode::Update(version)),
        );
        match put.await {
            Ok(result) => {
                let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
                state.version = UpdateVersion { e_tag: result.e_tag, version: result.version };
                state.valid_until = sent + ttl;
            }
            Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {
                shared.state.lock().unwrap_or_else(PoisonError::into_inner).lost = true;
                return;
            }
            // A transient failure: try again at the next tick (the lease is still ours until
            // `valid_until`).
            Err(_) => {}
        }
    }
}

/// The oldest waiter in a lease's queue whose ticket is still fresh.
async fn oldest_waiter(
    store: &Arc<dyn ObjectStore>,
    shared: &LeaseShared,
) -> Result<Option<String>, VfsError> {
    let tickets: Vec<ObjectMeta> =
        store.list(Some(&shared.queue)).try_collect().await.map_err(|e| store_error(&shared.path, e))?;
    let now = SystemTime::now();
    let fresh = |meta: &ObjectMeta| {
        now.duration_since(SystemTime::from(meta.last_modified))
            .map_or(true, |age| age < shared.ttl + TICKET_SLACK)
    };
    Ok(tickets
        .iter()
        .filter(|meta| fresh(meta))
        .filter_map(|meta| meta.location.filename().map(str::to_owned))
        .min()
        .and_then(|name| name.split_once('-').map(|(_, owner)| owner.to_owned())))
}

/// Marks a lease released, against the holder's own version: a holder that lost its lease
/// can never release someone else's. The release names the oldest waiter, who has it for a
/// moment before anyone else may take it. `Ok(Some((version, waiters)))` once stored;
/// `Ok(None)` when the lease was no longer ours to release.
async fn release_lease(
    store: &Arc<dyn ObjectStore>,
    shared: &LeaseShared,
    owner: &str,
) -> Result<Option<UpdateVersion>, VfsError> {
    let version = {
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.done {
            return Ok(None);
        }
        state.done = true;
        if state.lost || Instant::now() >= state.valid_until {
            return Ok(None);
        }
        state.version.clone()
    };
    let next = oldest_waiter(store, shared).await.unwrap_or_default();
    let put = store.put_opts(
        &shared.key,
        released_body(owner, shared.ttl, next.as_deref()),
        PutOptions::from(PutMode::Update(version)),
    );
    match put.await {
        // With a waiter, this process must not take the lease back by its fast path.
        Ok(_) if next.is_some() => Ok(None),
        Ok(result) => Ok(Some(UpdateVersion { e_tag: result.e_tag, version: result.version })),
        Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_error(&shared.path, e)),
    }
}

impl Lease {
    fn stop_renewing(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
    }

    fn remember_release(&self, version: Option<UpdateVersion>) {
        if let Some(version) = version {
            let key = self.shared.key.as_ref().to_owned();
            self.released.lock().unwrap_or_else(PoisonError::into_inner).insert(key, version);
        }
    }
}

#[async_trait]
impl HeldLock for Lease {
    fn check(&self) -> Result<(), VfsError> {
        self.shared.check()
    }

    async fn release(mut self: Box<Self>) -> Result<(), VfsError> {
        self.stop_renewing();
        let lost = self.shared.check().is_err();
        let released = release_lease(&self.store, &self.shared, &self.owner).await;
        let outcome = match released {
            Ok(Some(version)) => {
                self.remember_release(Some(version));
                Ok(())
            }
            Ok(None) if lost => Err(VfsError::LockLost { path: self.shared.path.clone() }),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        // This process's next waiter goes only once the release is stored.
        drop(self.local.take());
        outcome
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop_renewing();
        if self.shared.state.lock().unwrap_or_else(PoisonError::into_inner).done {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to release on: expiry frees the lease.
            self.shared.state.lock().unwrap_or_else(PoisonError::into_inner).done = true;
            return;
        };
        let (store, shared, owner) = (Arc::clone(&self.store), Arc::clone(&self.shared), self.owner.clone());
        let deadline = self.shared.ttl;
        let release =
            async move { tokio::time::timeout(deadline, release_lease(&store, &shared, &owner)).await };
        if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            // Wait for the release here, so a process that exits right after the guard is
            // dropped leaves no lease behind.
            let released = tokio::task::block_in_place(|| runtime.block_on(release));
            self.remember_release(released.ok().and_then(Result::ok).flatten());
            drop(self.local.take());
        } else {
            // A current-thread runtime cannot wait here: release in the background (the
            // local lock goes with it, so this process's next waiter finds the lease free).
            let local = self.local.take();
            let remembered = Arc::clone(&self.released);
            let key = self.shared.key.as_ref().to_owned();
            runtime.spawn(async move {
                if let Ok(Ok(Some(version))) = release.await {
                    remembered.lock().unwrap_or_else(PoisonError::into_inner).insert(key, version);
                }
                drop(local);
            });
        }
    }
}

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::{EntryKind, LocalLocks, Metadata, Vfs, VfsEntry, VfsError, VfsLock, VfsPath};

/// An in-process VFS: a sorted map from path to bytes.
///
/// Isolated (each `MemoryVfs::new()` is its own empty filesystem) and without any disk side
/// effect, which makes it the backend for tests and `Runtime::test_mode()`. Directories are
/// implicit: a directory exists while at least one file exists below it, and disappears with
/// its last file. Every operation takes a short, synchronous lock and never awaits while
/// holding it, so the type is safe to share between tasks (`Arc<MemoryVfs>`).
///
/// ```
/// # tokio_test_block_on(async {
/// use kaos_vfs::{MemoryVfs, Vfs, VfsPath};
/// let vfs = MemoryVfs::new();
/// let path = VfsPath::new("sessions/s1/turns.jsonl")?;
/// vfs.append(&path, "{\"turn\":1}\n".into()).await?;
/// assert!(vfs.exists(&VfsPath::new("sessions/s1")?).await?);
/// assert_eq!(vfs.read(&path).await?, "{\"turn\":1}\n");
/// # Ok::<(), kaos_vfs::VfsError>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Default)]
pub struct MemoryVfs {
    files: RwLock<BTreeMap<String, MemoryFile>>,
    locks: LocalLocks,
}

/// A file as the appends made it: its pieces in order. Appends only push a piece (no copy,
/// whatever the file's size); a read joins the pieces once and keeps the joined buffer.
struct MemoryFile {
    pieces: Vec<Bytes>,
    len: usize,
    modified: SystemTime,
}

impl MemoryFile {
    fn new(data: Bytes) -> Self {
        Self { len: data.len(), pieces: vec![data], modified: SystemTime::now() }
    }

    /// The whole content, if it is in one piece already.
    fn whole(&self) -> Option<Bytes> {
        match self.pieces.as_slice() {
            [] => Some(Bytes::new()),
            [one] => Some(one.clone()),
            _ => None,
        }
    }

    /// Joins the pieces into one and returns it.
    fn join(&mut self) -> Bytes {
        if let Some(whole) = self.whole() {
            return whole;
        }
        let mut joined = BytesMut::with_capacity(self.len);
        for piece in &self.pieces {
            joined.extend_from_slice(piece);
        }
        let joined = joined.freeze();
        self.pieces = vec![joined.clone()];
        joined
    }
}

/// Where a path stands in the map.
enum Lookup<'a> {
    File(&'a MemoryFile),
    Dir,
    Missing,
}

impl MemoryVfs {
    /// An empty filesystem.
    pub fn new() -> Self {
        Self::default()
    }

    /// The error a read of a path that is not a file gives.
    fn read_map_error(&self, map: &BTreeMap<String, MemoryFile>, path: &VfsPath) -> Result<Bytes, VfsError> {
        match lookup(map, path) {
            Lookup::Dir => {
                Err(VfsError::WrongKind { path: path.clone(), expected: "file", found: "directory" })
            }
            _ => Err(not_found(path)),
        }
    }

    fn read_map(&self) -> RwLockReadGuard<'_, BTreeMap<String, MemoryFile>> {
        // No operation can panic half-way through a mutation, so a poisoned map is still whole.
        self.files.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_map(&self) -> RwLockWriteGuard<'_, BTreeMap<String, MemoryFile>> {
        self.files.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryVfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryVfs").field("files", &self.read_map().len()).finish()
    }
}

/// The key prefix shared by everything strictly below `dir` (`""` for the root).
fn child_prefix(dir: &VfsPath) -> String {
    if dir.is_root() { String::new() } else { format!("{}/", dir.as_str()) }
}

/// Calls `f` with the key prefix shared by everything strictly below `dir` (as
/// [`child_prefix`]), built on the stack when the path is short: looking a path up allocates
/// nothing.
fn with_child_prefix<R>(dir: &str, f: impl FnOnce(&str) -> R) -> R {
    if dir.is_empty() {
        return f("");
    }
    let mut buf = [0u8; 256];
    let len = dir.len();
    if len < buf.len() {
        buf[..len].copy_from_slice(dir.as_bytes());
        buf[len] = b'/';
        if let Ok(prefix) = std::str::from_utf8(&buf[..=len]) {
            return f(prefix);
        }
    }
    f(&format!("{dir}/"))
}

/// Whether at least one file lies strictly below the directory `dir` (its key; `""` is the
/// root).
fn has_descendants(map: &BTreeMap<String, MemoryFile>, dir: &str) -> bool {
    with_child_prefix(dir, |prefix| {
        map.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .next()
            .is_some_and(|(key, _)| key.starts_with(prefix))
    })
}

fn lookup<'a>(map: &'a BTreeMap<String, MemoryFile>, path: &VfsPath) -> Lookup<'a> {
    if let Some(file) = map.get(path.as_str()) {
        return Lookup::File(file);
    }
    if path.is_root() || has_descendants(map, path.as_str()) { Lookup::Dir } else { Lookup::Missing }
}

/// Checks that `path` can hold a file: it is not a directory and no ancestor is a file.
fn check_file_slot(map: &BTreeMap<String, MemoryFile>, path: &VfsPath) -> Result<(), VfsError> {
    let key = path.as_str();
    if path.is_root() || has_descendants(map, key) {
        return Err(VfsError::WrongKind { path: path.clone(), expected: "file", found: "directory" });
    }
    // Every ancestor but the root is the key up to one of its separators (at most one of them
    // can be a file: a file has nothing below it).
    for (end, _) in key.match_indices('/') {
        if let Some(dir) = key.get(..end)
            && map.contains_key(dir)
        {
            return Err(VfsError::WrongKind {
                path: VfsPath::from_normalized(dir.to_owned()),
                expected: "directory",
                found: "file",
            });
        }
    }
    Ok(())
}

fn not_found(path: &VfsPath) -> VfsError {
    VfsError::NotFound(path.to_string())
}

#[async_trait]
impl Vfs for MemoryVfs {
    /// Excludes within the process (a `MemoryVfs` is never shared between processes).
    async fn lock(&self, path: &VfsPath) -> Result<VfsLock, VfsError> {
        Ok(self.locks.lock(path.as_str()).await)
    }

    async fn read(&self, path: &VfsPath) -> Result<Bytes, VfsError> {
        match lookup(&self.read_map(), path) {
            Lookup::File(file) => {
                if let Some(whole) = file.whole() {
                    return Ok(whole);
                }
            }
            Lookup::Dir => {
                return Err(VfsError::WrongKind { path: path.clone(), expected: "file", found: "directory" });
            }
            Lookup::Missing => return Err(not_found(path)),
        }
        // In pieces: join them under the write lock (the file may have changed meanwhile).
        let mut map = self.write_map();
        match map.get_mut(path.as_str()) {
            Some(file) => Ok(file.join()),
            None => self.read_map_error(&map, path),
        }
    }

    async fn write(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        let mut map = self.write_map();
        check_file_slot(&map, path)?;
        map.insert(path.as_str().to_owned(), MemoryFile::new(data));
        Ok(())
    }

    async fn append(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        let mut map = self.write_map();
        match map.get_mut(path.as_str()) {
            Some(file) => {
                file.len += data.len();
                file.pieces.push(data);
                file.modified = SystemTime::now();
            }
            None => {
                check_file_slot(&map, path)?;
                map.insert(path.as_str().to_owned(), MemoryFile::new(data));
            }
        }
        Ok(())
    }

    async fn truncate(&self, path: &VfsPath, len: u64) -> Result<(), VfsError> {
        let mut map = self.write_map();
        match map.get_mut(path.as_str()) {
            Some(file) => {
                let keep = usize::try_from(len).unwrap_or(usize::MAX);
                if keep < file.len {
                    let cut = file.join().slice(..keep);
                    *file = MemoryFile::new(cut);
                }
                Ok(())
            }
            None => self.read_map_error(&map, path).map(drop),
        }
    }

    async fn exists(&self, path: &VfsPath) -> Result<bool, VfsError> {
        Ok(!matches!(lookup(&self.read_map(), path), Lookup::Missing))
    }

    async fn stat(&self, path: &VfsPath) -> Result<Metadata, VfsError> {
        match lookup(&self.read_map(), path) {
            Lookup::File(file) => Ok(Metadata::file(file.len as u64, Some(file.modified))),
            Lookup::Dir => Ok(Metadata::dir(None)),
            Lookup::Missing => Err(not_found(path)),
        }
    }

    async fn list(&self, prefix: &VfsPath) -> Result<Vec<VfsEntry>, VfsError> {
        let map = self.read_map();
        if map.contains_key(prefix.as_str()) {
            return Err(VfsError::WrongKind { path: prefix.clone(), expected: "directory", found: "file" });
        }
        let base = child_prefix(prefix);
        let mut entries = Vec::new();
        let mut cursor = base.clone();
        // Visits each direct child once: after a subdirectory, jumps past all of its keys.
        while let Some((key, file)) =
            map.range::<str, _>((Bound::Included(cursor.as_str()), Bound::Unbounded)).next()
        {
            let Some(rest) = key.strip_prefix(&base) else { break };
            match rest.split_once('/') {
                None => {
                    let path = VfsPath::from_normalized(key.clone());
                    entries.push(VfsEntry::new(path, EntryKind::File, file.len as u64));
                    cursor = format!("{key}\0");
                }
                Some((dir, _)) => {
                    let dir_key = format!("{base}{dir}");
                    // '0' is the character right after '/', so this skips "{dir_key}/…".
                    cursor = format!("{dir_key}0");
                    entries.push(VfsEntry::new(VfsPath::from_normalized(dir_key), EntryKind::Dir, 0));
                }
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    async fn delete(&self, path: &VfsPath) -> Result<(), VfsError> {
        let mut map = self.write_map();
        if path.is_root() {
            map.clear();
            return Ok(());
        }
        if map.remove(path.as_str()).is_some() {
            return Ok(());
        }
        let prefix = child_prefix(path);
        let below: Vec<String> = map
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .map(|(key, _)| key)
            .take_while(|key| key.starts_with(&prefix))
            .cloned()
            .collect();
        if below.is_empty() {
            return Err(not_found(path));
        }
        for key in below {
            map.remove(&key);
        }
        Ok(())
    }
}

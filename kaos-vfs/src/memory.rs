use std::collections::BTreeSet;
use std::fmt;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::{EntryKind, LocalLocks, Metadata, Vfs, VfsEntry, VfsError, VfsLock, VfsPath};

/// An in-process VFS: a map from path to bytes, and the directories its paths make.
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
    tree: RwLock<Tree>,
    locks: LocalLocks,
}

/// The files by path, and the directories they make: looking a path up is a hash lookup
/// (whatever the number of files), and listing or deleting a directory visits only what is
/// below it.
#[derive(Default)]
struct Tree {
    /// Every file, by its path.
    files: foldhash::HashMap<String, MemoryFile>,
    /// Every directory with at least one file below it, by its path (`""`: the root), with the
    /// names of its direct children (files and directories), sorted. A directory is here
    /// exactly while it has children.
    dirs: foldhash::HashMap<String, BTreeSet<String>>,
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
        // An empty file (a new session's log) holds no piece, and allocates nothing.
        let pieces = if data.is_empty() { Vec::new() } else { vec![data] };
        Self { len: pieces.first().map_or(0, Bytes::len), pieces, modified: SystemTime::now() }
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

/// Where a path stands in the tree.
enum Lookup<'a> {
    File(&'a MemoryFile),
    Dir,
    Missing,
}

/// A key's parent directory (`""`: the root) and its own name.
fn split_key(key: &str) -> (&str, &str) {
    match key.rfind('/') {
        Some(at) => (&key[..at], &key[at + 1..]),
        None => ("", key),
    }
}

/// The key of `name` in the directory `dir` (`""`: the root).
fn child_key(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_owned() } else { [dir, "/", name].concat() }
}

impl Tree {
    fn lookup(&self, path: &VfsPath) -> Lookup<'_> {
        if let Some(file) = self.files.get(path.as_str()) {
            return Lookup::File(file);
        }
        if path.is_root() || self.dirs.contains_key(path.as_str()) { Lookup::Dir } else { Lookup::Missing }
    }

    /// The error a read of a path that is not a file gives.
    fn read_error(&self, path: &VfsPath) -> VfsError {
        match self.lookup(path) {
            Lookup::Dir => VfsError::WrongKind { path: path.clone(), expected: "file", found: "directory" },
            _ => not_found(path),
        }
    }

    /// Checks that `path` can hold a file: it is not a directory and no ancestor is a file.
    fn check_file_slot(&self, path: &VfsPath) -> Result<(), VfsError> {
        let key = path.as_str();
        if path.is_root() || self.dirs.contains_key(key) {
            return Err(VfsError::WrongKind { path: path.clone(), expected: "file", found: "directory" });
        }
        // Every ancestor but the root is the key up to one of its separators (at most one of
        // them can be a file: a file has nothing below it).
        for (end, _) in key.match_indices('/') {
            if let Some(dir) = key.get(..end)
                && self.files.contains_key(dir)
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

    /// Adds a file at `key`, whose slot was checked, and the directories it makes.
    fn insert_new(&mut self, key: &str, file: MemoryFile) {
        self.files.insert(key.to_owned(), file);
        let mut child = key;
        loop {
            let (parent, name) = split_key(child);
            if let Some(children) = self.dirs.get_mut(parent) {
                children.insert(name.to_owned());
                return;
            }
            let mut children = BTreeSet::new();
            children.insert(name.to_owned());
            self.dirs.insert(parent.to_owned(), children);
            if parent.is_empty() {
                return;
            }
            child = parent;
        }
    }

    /// Removes `key` (a removed file, or a removed directory) from its parent's children, and
    /// a directory left without children from its own parent's.
    fn unlink(&mut self, key: &str) {
        let mut child = key;
        loop {
            let (parent, name) = split_key(child);
            let Some(children) = self.dirs.get_mut(parent) else { return };
            children.remove(name);
            if !children.is_empty() {
                return;
            }
            self.dirs.remove(parent);
            if parent.is_empty() {
                return;
            }
            child = parent;
        }
    }

    /// Removes the directory `dir` (not the root) and everything below it; `false` when it
    /// does not exist.
    fn remove_dir(&mut self, dir: &str) -> bool {
        let Some(children) = self.dirs.remove(dir) else { return false };
        let mut stack = vec![(dir.to_owned(), children)];
        while let Some((parent, children)) = stack.pop() {
            for name in children {
                let key = child_key(&parent, &name);
                if self.files.remove(&key).is_none()
                    && let Some(below) = self.dirs.remove(&key)
                {
                    stack.push((key, below));
                }
            }
        }
        self.unlink(dir);
        true
    }
}

impl MemoryVfs {
    /// An empty filesystem.
    pub fn new() -> Self {
        Self::default()
    }

    fn read_tree(&self) -> RwLockReadGuard<'_, Tree> {
        // No operation can panic half-way through a mutation, so a poisoned tree is still whole.
        self.tree.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_tree(&self) -> RwLockWriteGuard<'_, Tree> {
        self.tree.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `data` (creating the file), and says the file's metadata after it.
    fn append_file(&self, path: &VfsPath, data: Bytes) -> Result<Metadata, VfsError> {
        let mut tree = self.write_tree();
        if let Some(file) = tree.files.get_mut(path.as_str()) {
            if !data.is_empty() {
                file.len += data.len();
                file.pieces.push(data);
            }
            file.modified = SystemTime::now();
            return Ok(Metadata::file(file.len as u64, Some(file.modified)));
        }
        tree.check_file_slot(path)?;
        let file = MemoryFile::new(data);
        let meta = Metadata::file(file.len as u64, Some(file.modified));
        tree.insert_new(path.as_str(), file);
        Ok(meta)
    }
}

impl fmt::Debug for MemoryVfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryVfs").field("files", &self.read_tree().files.len()).finish()
    }
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

    /// The memory VFS's lock is only an in-process one.
    fn locks_in_process_first(&self) -> bool {
        true
    }

    async fn read(&self, path: &VfsPath) -> Result<Bytes, VfsError> {
        {
            let tree = self.read_tree();
            match tree.lookup(path) {
                Lookup::File(file) => {
                    if let Some(whole) = file.whole() {
                        return Ok(whole);
                    }
                }
                _ => return Err(tree.read_error(path)),
            }
        }
        // In pieces: join them under the write lock (the file may have changed meanwhile).
        let mut tree = self.write_tree();
        match tree.files.get_mut(path.as_str()) {
            Some(file) => Ok(file.join()),
            None => Err(tree.read_error(path)),
        }
    }

    async fn write(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        let mut tree = self.write_tree();
        if let Some(file) = tree.files.get_mut(path.as_str()) {
            *file = MemoryFile::new(data);
            return Ok(());
        }
        tree.check_file_slot(path)?;
        tree.insert_new(path.as_str(), MemoryFile::new(data));
        Ok(())
    }

    async fn append(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        self.append_file(path, data).map(drop)
    }

    async fn append_and_stat(&self, path: &VfsPath, data: Bytes) -> Result<Option<Metadata>, VfsError> {
        self.append_file(path, data).map(Some)
    }

    async fn truncate(&self, path: &VfsPath, len: u64) -> Result<(), VfsError> {
        let mut tree = self.write_tree();
        match tree.files.get_mut(path.as_str()) {
            Some(file) => {
                let keep = usize::try_from(len).unwrap_or(usize::MAX);
                if keep < file.len {
                    let cut = file.join().slice(..keep);
                    *file = MemoryFile::new(cut);
                }
                Ok(())
            }
            None => Err(tree.read_error(path)),
        }
    }

    async fn exists(&self, path: &VfsPath) -> Result<bool, VfsError> {
        Ok(!matches!(self.read_tree().lookup(path), Lookup::Missing))
    }

    async fn stat(&self, path: &VfsPath) -> Result<Metadata, VfsError> {
        match self.read_tree().lookup(path) {
            Lookup::File(file) => Ok(Metadata::file(file.len as u64, Some(file.modified))),
            Lookup::Dir => Ok(Metadata::dir(None)),
            Lookup::Missing => Err(not_found(path)),
        }
    }

    async fn list(&self, prefix: &VfsPath) -> Result<Vec<VfsEntry>, VfsError> {
        let tree = self.read_tree();
        let dir = prefix.as_str();
        if tree.files.contains_key(dir) {
            return Err(VfsError::WrongKind { path: prefix.clone(), expected: "directory", found: "file" });
        }
        let Some(children) = tree.dirs.get(dir) else { return Ok(Vec::new()) };
        let mut entries: Vec<VfsEntry> = children
            .iter()
            .map(|name| {
                let key = child_key(dir, name);
                match tree.files.get(&key) {
                    Some(file) => {
                        VfsEntry::new(VfsPath::from_normalized(key), EntryKind::File, file.len as u64)
                    }
                    None => VfsEntry::new(VfsPath::from_normalized(key), EntryKind::Dir, 0),
                }
            })
            .collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    async fn delete(&self, path: &VfsPath) -> Result<(), VfsError> {
        let mut tree = self.write_tree();
        if path.is_root() {
            tree.files.clear();
            tree.dirs.clear();
            return Ok(());
        }
        let key = path.as_str();
        if tree.files.remove(key).is_some() {
            tree.unlink(key);
            return Ok(());
        }
        if tree.remove_dir(key) { Ok(()) } else { Err(not_found(path)) }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// What a tree's directories must be: every proper ancestor of a file, with its direct
    /// children's names.
    fn derived_dirs(
        files: &foldhash::HashMap<String, MemoryFile>,
    ) -> foldhash::HashMap<String, BTreeSet<String>> {
        let mut dirs: foldhash::HashMap<String, BTreeSet<String>> = foldhash::HashMap::default();
        for key in files.keys() {
            let mut child = key.as_str();
            loop {
                let (parent, name) = split_key(child);
                dirs.entry(parent.to_owned()).or_default().insert(name.to_owned());
                if parent.is_empty() {
                    break;
                }
                child = parent;
            }
        }
        dirs
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(String),
        Append(String),
        Delete(String),
    }

    fn path() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(vec!["a", "b", "a-b", "a.c"]), 1..4)
            .prop_map(|parts| parts.join("/"))
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![path().prop_map(Op::Write), path().prop_map(Op::Append), path().prop_map(Op::Delete)]
    }

    /// The model: a sorted map of files, directories derived from its keys, as the sorted map
    /// this VFS used to be.
    fn model_kind(model: &BTreeMap<String, usize>, key: &str) -> Option<EntryKind> {
        if model.contains_key(key) {
            return Some(EntryKind::File);
        }
        let prefix = format!("{key}/");
        (key.is_empty() || model.keys().any(|k| k.starts_with(&prefix))).then_some(EntryKind::Dir)
    }

    proptest! {
        /// Any sequence of writes, appends and deletes leaves the directories exactly those the
        /// files make, and lookups, lists and errors as a sorted map of files gives them.
        #[test]
        fn the_directories_follow_the_files(ops in proptest::collection::vec(op(), 1..60)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let vfs = MemoryVfs::new();
            let mut model: BTreeMap<String, usize> = BTreeMap::new();
            rt.block_on(async {
                for op in ops {
                    match op {
                        Op::Write(key) | Op::Append(key) => {
                            let path = VfsPath::new(&key).unwrap();
                            let slot_ok = model_kind(&model, &key) != Some(EntryKind::Dir)
                                && !key.match_indices('/').any(|(end, _)| model.contains_key(&key[..end]));
                            let result = vfs.append(&path, Bytes::from_static(b"xy")).await;
                            prop_assert_eq!(result.is_ok(), slot_ok, "{}", key);
                            if slot_ok {
                                *model.entry(key).or_default() += 2;
                            }
                        }
                        Op::Delete(key) => {
                            let path = VfsPath::new(&key).unwrap();
                            let existed = model_kind(&model, &key).is_some();
                            prop_assert_eq!(vfs.delete(&path).await.is_ok(), existed, "{}", key);
                            let prefix = format!("{key}/");
                            model.retain(|k, _| *k != key && !k.starts_with(&prefix));
                        }
                    }
                    let tree = vfs.read_tree();
                    prop_assert_eq!(&tree.dirs, &derived_dirs(&tree.files));
                    prop_assert_eq!(tree.files.len(), model.len());
                }
                for dir in ["", "a", "b", "a-b", "a/a", "a/b", "b/a.c", "a.c"] {
                    let path = if dir.is_empty() { VfsPath::root() } else { VfsPath::new(dir).unwrap() };
                    let kind = model_kind(&model, dir);
                    prop_assert_eq!(vfs.exists(&path).await.unwrap(), kind.is_some());
                    match vfs.list(&path).await {
                        Ok(entries) => {
                            let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
                            let mut expected: Vec<(String, EntryKind)> = Vec::new();
                            for key in model.keys() {
                                let Some(rest) = key.strip_prefix(&prefix) else { continue };
                                let (name, kind) = match rest.split_once('/') {
                                    Some((name, _)) => (name, EntryKind::Dir),
                                    None => (rest, EntryKind::File),
                                };
                                let entry = (format!("{prefix}{name}"), kind);
                                if !expected.contains(&entry) {
                                    expected.push(entry);
                                }
                            }
                            expected.sort_by(|a, b| a.0.cmp(&b.0));
                            let got: Vec<(String, EntryKind)> =
                                entries.into_iter().map(|e| (e.path.as_str().to_owned(), e.kind)).collect();
                            prop_assert_eq!(got, expected);
                        }
                        Err(_) => prop_assert_eq!(kind, Some(EntryKind::File)),
                    }
                }
                Ok(())
            })?;
        }
    }
}

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Metadata, Vfs, VfsEntry, VfsError, VfsLock, VfsPath};

/// A view of another VFS in which every path is resolved below a fixed prefix.
///
/// Used to isolate tenants and sessions: the view's root is `prefix` in the inner VFS, paths
/// and listed entries are relative to it, and nothing outside it can be named (a [`VfsPath`]
/// has no `..`, so prefixing is enough). Errors are re-expressed in the view's paths, so the
/// prefix never leaks to the caller.
///
/// The view's root always exists, even before anything is written below the prefix:
/// `exists(root)` is `true`, `stat(root)` is a directory, `list(root)` may be empty and
/// `delete(root)` empties the scope (and is not an error when it is already empty).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use kaos_vfs::{MemoryVfs, ScopedVfs, Vfs, VfsPath};
/// let inner = Arc::new(MemoryVfs::new());
/// let tenant = ScopedVfs::new(inner.clone(), VfsPath::new("tenants/acme")?);
/// tenant.write(&VfsPath::new("notes.md")?, "hi".into()).await?;
/// assert!(inner.exists(&VfsPath::new("tenants/acme/notes.md")?).await?);
/// # Ok::<(), kaos_vfs::VfsError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ScopedVfs {
    inner: Arc<dyn Vfs>,
    prefix: VfsPath,
}

impl ScopedVfs {
    /// A view of `inner` rooted at `prefix` (the whole of `inner` when `prefix` is the root).
    pub fn new(inner: Arc<dyn Vfs>, prefix: VfsPath) -> Self {
        Self { inner, prefix }
    }

    /// The prefix, in the inner VFS, that this view is rooted at.
    pub fn prefix(&self) -> &VfsPath {
        &self.prefix
    }

    fn inner_path(&self, path: &VfsPath) -> VfsPath {
        self.prefix.join_path(path)
    }

    /// Re-expresses an inner path relative to the scope (the scope root when it lies above).
    fn outer_path(&self, inner: &VfsPath) -> VfsPath {
        inner.strip_prefix(&self.prefix).unwrap_or_default()
    }

    /// Rewrites an inner error so it names `path` (a path of this view), never the prefix.
    fn outer_error(&self, path: &VfsPath, error: VfsError) -> VfsError {
        match error {
            VfsError::NotFound(_) => VfsError::NotFound(path.to_string()),
            VfsError::InvalidPath { reason, .. } => {
                VfsError::InvalidPath { path: path.as_str().to_owned(), reason }
            }
            VfsError::WrongKind { path: inner, expected, found } => {
                VfsError::WrongKind { path: self.outer_path(&inner), expected, found }
            }
            VfsError::Io { source, .. } => VfsError::Io { path: path.to_string(), source },
            VfsError::LockTimeout { after, .. } => VfsError::LockTimeout { path: path.clone(), after },
            VfsError::LockLost { path: inner } => VfsError::LockLost { path: self.outer_path(&inner) },
            VfsError::Conflict { path: inner } => VfsError::Conflict { path: self.outer_path(&inner) },
            VfsError::ConditionalWritesUnsupported { store, detail } => {
                VfsError::ConditionalWritesUnsupported { store, detail }
            }
        }
    }
}

#[async_trait]
impl Vfs for ScopedVfs {
    async fn read(&self, path: &VfsPath) -> Result<Bytes, VfsError> {
        self.inner.read(&self.inner_path(path)).await.map_err(|e| self.outer_error(path, e))
    }

    async fn read_from(&self, path: &VfsPath, offset: u64) -> Result<Bytes, VfsError> {
        self.inner.read_from(&self.inner_path(path), offset).await.map_err(|e| self.outer_error(path, e))
    }

    async fn lock(&self, path: &VfsPath) -> Result<VfsLock, VfsError> {
        self.inner.lock(&self.inner_path(path)).await.map_err(|e| self.outer_error(path, e))
    }

    fn locks_in_process_first(&self) -> bool {
        self.inner.locks_in_process_first()
    }

    async fn write(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        self.inner.write(&self.inner_path(path), data).await.map_err(|e| self.outer_error(path, e))
    }

    async fn append(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        self.inner.append(&self.inner_path(path), data).await.map_err(|e| self.outer_error(path, e))
    }

    async fn append_and_stat(&self, path: &VfsPath, data: Bytes) -> Result<Option<Metadata>, VfsError> {
        self.inner.append_and_stat(&self.inner_path(path), data).await.map_err(|e| self.outer_error(path, e))
    }

    async fn truncate(&self, path: &VfsPath, len: u64) -> Result<(), VfsError> {
        self.inner.truncate(&self.inner_path(path), len).await.map_err(|e| self.outer_error(path, e))
    }

    async fn sync(&self, path: &VfsPath) -> Result<(), VfsError> {
        self.inner.sync(&self.inner_path(path)).await.map_err(|e| self.outer_error(path, e))
    }

    async fn exists(&self, path: &VfsPath) -> Result<bool, VfsError> {
        if path.is_root() {
            return Ok(true);
        }
        self.inner.exists(&self.inner_path(path)).await.map_err(|e| self.outer_error(path, e))
    }

    async fn stat(&self, path: &VfsPath) -> Result<Metadata, VfsError> {
        match self.inner.stat(&self.inner_path(path)).await {
            Err(e) if e.is_not_found() && path.is_root() => Ok(Metadata::dir(None)),
            result => result.map_err(|e| self.outer_error(path, e)),
        }
    }

    async fn list(&self, prefix: &VfsPath) -> Result<Vec<VfsEntry>, VfsError> {
        let entries =
            self.inner.list(&self.inner_path(prefix)).await.map_err(|e| self.outer_error(prefix, e))?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| {
                let path = entry.path.strip_prefix(&self.prefix)?;
                Some(VfsEntry::new(path, entry.kind, entry.len))
            })
            .collect())
    }

    async fn delete(&self, path: &VfsPath) -> Result<(), VfsError> {
        match self.inner.delete(&self.inner_path(path)).await {
            Err(e) if e.is_not_found() && path.is_root() => Ok(()),
            result => result.map_err(|e| self.outer_error(path, e)),
        }
    }
}

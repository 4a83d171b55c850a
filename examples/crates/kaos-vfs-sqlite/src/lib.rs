//! A KAOS [`Vfs`] backend that keeps every file in one SQLite database: one row per file, its
//! bytes in a BLOB, directories implicit (a directory exists while a file exists below it).
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use kaos_vfs_sqlite::SqliteVfs;
//!
//! # fn main() -> Result<(), kaos_vfs::VfsError> {
//! let vfs = Arc::new(SqliteVfs::open("kaos.sqlite3")?);
//! // Runtime::builder().vfs(vfs).build(), then any Runner keeps its sessions there.
//! # let _ = vfs;
//! # Ok(())
//! # }
//! ```
//!
//! The contract of [`Vfs`] is checked by `kaos_vfs::conformance::run` in `tests/conformance.rs`.
//!
//! - `write` and `append` are single SQLite transactions, so atomic and durable when they
//!   return: a crash leaves the old or the new bytes, never a mix (write-ahead log,
//!   `synchronous = FULL`: one `fsync` per change).
//! - `stat` reports a modification time that grows with every change of a file (the session
//!   cache trusts a log whose length and modification time it has seen).
//! - `lock` excludes within the process ([`LocalLocks`]). The database is opened in SQLite's
//!   exclusive locking mode, so no second process can use it at the same time: one process owns
//!   a database, and the in-process lock is all the exclusion there is to have.
#![deny(missing_docs)]

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use kaos_vfs::{EntryKind, LocalLocks, Metadata, Vfs, VfsEntry, VfsError, VfsLock, VfsPath};
use rusqlite::{Connection, OptionalExtension, params};

/// Every file of a KAOS VFS in one SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteVfs {
    conn: Arc<Mutex<Connection>>,
    locks: LocalLocks,
}

const SCHEMA: &str = "
    PRAGMA locking_mode = EXCLUSIVE;
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = FULL;
    CREATE TABLE IF NOT EXISTS files (
        path TEXT PRIMARY KEY NOT NULL,
        data BLOB NOT NULL,
        -- Nanoseconds since the Unix epoch; strictly grows with every change of the file.
        modified INTEGER NOT NULL
    ) WITHOUT ROWID;
";

impl SqliteVfs {
    /// Opens (or creates) the database file at `path`. Fails when another process has it open.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, VfsError> {
        let path = path.as_ref();
        let conn = Connection::open(path).map_err(|e| storage(&path.display().to_string(), e))?;
        Self::with_connection(conn)
    }

    /// A database in memory, gone when the last clone is dropped (for tests).
    pub fn in_memory() -> Result<Self, VfsError> {
        let conn = Connection::open_in_memory().map_err(|e| storage(":memory:", e))?;
        Self::with_connection(conn)
    }

    fn with_connection(conn: Connection) -> Result<Self, VfsError> {
        conn.execute_batch(SCHEMA).map_err(|e| storage("", e))?;
        // The exclusive lock is taken by the first read: take it now, so a second process fails
        // here rather than at its first turn.
        conn.query_row("SELECT count(*) FROM files", [], |_| Ok(())).map_err(|e| storage("", e))?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), locks: LocalLocks::default() })
    }

    /// Runs `op` on the connection on tokio's blocking pool (SQLite calls block).
    async fn with<T, F>(&self, path: &VfsPath, op: F) -> Result<T, VfsError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, VfsError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || op(&mut conn.lock().unwrap_or_else(PoisonError::into_inner)))
            .await
            .map_err(|e| VfsError::Io { path: path.as_str().to_owned(), source: std::io::Error::other(e) })?
    }
}

/// A SQLite failure as the VFS's storage error.
fn storage(path: &str, error: rusqlite::Error) -> VfsError {
    VfsError::Io { path: path.to_owned(), source: std::io::Error::other(error) }
}

/// The keys of everything below `path`: from `low` to before `high` (no bound for the root).
fn below(path: &VfsPath) -> (String, Option<String>) {
    if path.is_root() {
        (String::new(), None)
    } else {
        // '0' is the character after '/': every key starting with "path/" sorts in between.
        (format!("{}/", path.as_str()), Some(format!("{}0", path.as_str())))
    }
}

/// The SQL condition for "below", `?1` and `?2` bound to [`below`]'s pair.
const BELOW: &str = "path >= ?1 AND (?2 IS NULL OR path < ?2)";

fn is_dir(conn: &Connection, path: &VfsPath) -> Result<bool, VfsError> {
    if path.is_root() {
        return Ok(true);
    }
    let (low, high) = below(path);
    conn.query_row(&format!("SELECT 1 FROM files WHERE {BELOW} LIMIT 1"), params![low, high], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
        .map_err(|e| storage(path.as_str(), e))
}

fn is_file(conn: &Connection, path: &VfsPath) -> Result<bool, VfsError> {
    conn.query_row("SELECT 1 FROM files WHERE path = ?1", [path.as_str()], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
        .map_err(|e| storage(path.as_str(), e))
}

/// A file can be written at `path` unless it is a directory or lies below a file.
fn check_writable(conn: &Connection, path: &VfsPath) -> Result<(), VfsError> {
    if is_dir(conn, path)? {
        return Err(VfsError::WrongKind { path: path.clone(), expected: "file", found: "directory" });
    }
    let mut parent = path.parent();
    while let Some(dir) = parent.filter(|dir| !dir.is_root()) {
        if is_file(conn, &dir)? {
            return Err(VfsError::WrongKind { path: dir, expected: "directory", found: "file" });
        }
        parent = dir.parent();
    }
    Ok(())
}

fn not_file(conn: &Connection, path: &VfsPath) -> VfsError {
    match is_dir(conn, path) {
        Ok(true) => VfsError::WrongKind { path: path.clone(), expected: "file", found: "directory" },
        Ok(false) => VfsError::NotFound(path.as_str().to_owned()),
        Err(e) => e,
    }
}

fn now_nanos() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
}

fn time_of(nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// `INSERT … ON CONFLICT` storing `?2` (replace) or appending it; `?3` is the time now, and a
/// file's time moves forward by at least a nanosecond with every change.
const WRITE: &str = "INSERT INTO files (path, data, modified) VALUES (?1, ?2, ?3)
    ON CONFLICT (path) DO UPDATE SET data = excluded.data, modified = max(excluded.modified, modified + 1)";
const APPEND: &str = "INSERT INTO files (path, data, modified) VALUES (?1, ?2, ?3)
    ON CONFLICT (path) DO UPDATE SET data = CAST(data || excluded.data AS BLOB),
        modified = max(excluded.modified, modified + 1)";

#[async_trait]
impl Vfs for SqliteVfs {
    async fn read(&self, path: &VfsPath) -> Result<Bytes, VfsError> {
        self.read_from(path, 0).await
    }

    async fn read_from(&self, path: &VfsPath, offset: u64) -> Result<Bytes, VfsError> {
        let key = path.clone();
        // `substr` counts bytes in a BLOB, from 1.
        let start = i64::try_from(offset).unwrap_or(i64::MAX).saturating_add(1);
        self.with(path, move |conn| {
            // `substr` of an empty file is NULL (SQLite gives a zero-length BLOB no bytes).
            let data: Option<Option<Vec<u8>>> = conn
                .query_row(
                    "SELECT substr(data, ?2) FROM files WHERE path = ?1",
                    params![key.as_str(), start],
                    |row| row.get(0),
                )
                .optional()
                .map_err(|e| storage(key.as_str(), e))?;
            data.map(|bytes| Bytes::from(bytes.unwrap_or_default())).ok_or_else(|| not_file(conn, &key))
        })
        .await
    }

    async fn write(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        let key = path.clone();
        self.with(path, move |conn| {
            let tx = conn.transaction().map_err(|e| storage(key.as_str(), e))?;
            check_writable(&tx, &key)?;
            tx.execute(WRITE, params![key.as_str(), data.as_ref(), now_nanos()])
                .and_then(|_| tx.commit())
                .map_err(|e| storage(key.as_str(), e))
        })
        .await
    }

    async fn append(&self, path: &VfsPath, data: Bytes) -> Result<(), VfsError> {
        let key = path.clone();
        self.with(path, move |conn| {
            let tx = conn.transaction().map_err(|e| storage(key.as_str(), e))?;
            check_writable(&tx, &key)?;
            tx.execute(APPEND, params![key.as_str(), data.as_ref(), now_nanos()])
                .and_then(|_| tx.commit())
                .map_err(|e| storage(key.as_str(), e))
        })
        .await
    }

    async fn exists(&self, path: &VfsPath) -> Result<bool, VfsError> {
        let key = path.clone();
        self.with(path, move |conn| Ok(is_file(conn, &key)? || is_dir(conn, &key)?)).await
    }

    async fn stat(&self, path: &VfsPath) -> Result<Metadata, VfsError> {
        let key = path.clone();
        self.with(path, move |conn| {
            let file: Option<(i64, i64)> = conn
                .query_row(
                    "SELECT length(data), modified FROM files WHERE path = ?1",
                    [key.as_str()],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(|e| storage(key.as_str(), e))?;
            match file {
                Some((len, modified)) => {
                    Ok(Metadata::file(u64::try_from(len).unwrap_or(0), Some(time_of(modified))))
                }
                None if is_dir(conn, &key)? => Ok(Metadata::dir(None)),
                None => Err(VfsError::NotFound(key.as_str().to_owned())),
            }
        })
        .await
    }

    async fn list(&self, prefix: &VfsPath) -> Result<Vec<VfsEntry>, VfsError> {
        let key = prefix.clone();
        self.with(prefix, move |conn| {
            if is_file(conn, &key)? {
                return Err(VfsError::WrongKind { path: key, expected: "directory", found: "file" });
            }
            let (low, high) = below(&key);
            let mut query = conn
                .prepare(&format!("SELECT path, length(data) FROM files WHERE {BELOW} ORDER BY path"))
                .map_err(|e| storage(key.as_str(), e))?;
            let rows = query
                .query_map(params![low, high], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
                .map_err(|e| storage(key.as_str(), e))?;
            let mut entries: Vec<VfsEntry> = Vec::new();
            for row in rows {
                let (path, len) = row.map_err(|e| storage(key.as_str(), e))?;
                let rest = &path[low.len()..];
                let (name, kind, len) = match rest.split_once('/') {
                    Some((dir, _)) => (format!("{low}{dir}"), EntryKind::Dir, 0),
                    None => (path.clone(), EntryKind::File, u64::try_from(len).unwrap_or(0)),
                };
                // Keys come in order, so the files below one child directory are consecutive.
                if entries.last().is_some_and(|last| last.path.as_str() == name) {
                    continue;
                }
                entries.push(VfsEntry::new(VfsPath::new(&name)?, kind, len));
            }
            // The key "a-c" sorts before "a/b" ('-' < '/'), the directory "a" before "a-c".
            entries.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
            Ok(entries)
        })
        .await
    }

    async fn delete(&self, path: &VfsPath) -> Result<(), VfsError> {
        let key = path.clone();
        self.with(path, move |conn| {
            let tx = conn.transaction().map_err(|e| storage(key.as_str(), e))?;
            let (low, high) = below(&key);
            let deleted = tx
                .execute(
                    &format!("DELETE FROM files WHERE path = ?3 OR ({BELOW})"),
                    params![low, high, key.as_str()],
                )
                .map_err(|e| storage(key.as_str(), e))?;
            tx.commit().map_err(|e| storage(key.as_str(), e))?;
            if deleted == 0 && !key.is_root() {
                return Err(VfsError::NotFound(key.as_str().to_owned()));
            }
            Ok(())
        })
        .await
    }

    async fn lock(&self, path: &VfsPath) -> Result<VfsLock, VfsError> {
        // One process owns the database (exclusive locking mode): in-process exclusion is all
        // there is to do.
        Ok(self.locks.lock(path.as_str()).await)
    }

    /// The lock is only an in-process one, so a session store puts none of its own before it.
    fn locks_in_process_first(&self) -> bool {
        true
    }
}

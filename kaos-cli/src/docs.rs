//! `kaos docs`: documents in a session's memory (the research and findings patterns' sources),
//! and the ingestion `kaos run --file` shares.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Subcommand;
use kaos_agent::SectionKind;
use kaos_ingest::{Document, IngestError, IngestOptions};
use kaos_runner::{DocumentAdded, Runner};
use kaos_runtime::Settings;
use kaos_session::NewItem;
use serde_json::{Value, json};

use crate::{GlobalArgs, error_chain, setup};

/// The default most document chunks in one session (`docs.max_chunks_per_session`).
const DEFAULT_MAX_CHUNKS_PER_SESSION: u64 = 10_000;

/// `kaos docs …`
#[derive(Debug, Subcommand)]
pub(crate) enum DocsCommand {
    /// Add files to a session's documents: files, directories (recursively) and globs. Each
    /// file goes in whole or not at all; re-adding the same content is a no-op.
    Add {
        /// The session.
        #[arg(long, short, default_value = "default")]
        session: String,
        /// Files, directories or globs (`'docs/**/*.md'`).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// List a session's documents with their chunks, tokens and hash.
    Ls {
        /// The session.
        #[arg(long, short, default_value = "default")]
        session: String,
    },
    /// Remove a document (all its chunks) from a session.
    Rm {
        /// The document's name, as `kaos docs ls` shows it.
        name: String,
        /// The session.
        #[arg(long, short, default_value = "default")]
        session: String,
    },
}

pub(crate) async fn docs(global: &GlobalArgs, command: DocsCommand) -> Result<std::process::ExitCode> {
    let settings = setup::settings(global)?;
    let runner = setup::session_runner(global)?;
    match command {
        DocsCommand::Add { session, paths } => {
            let files = expand(&paths)?;
            let results = add_files(&runner, &settings, &session, &files, true).await?;
            let failed = results.iter().filter(|r| matches!(r.outcome, Outcome::Failed(_))).count();
            if global.json {
                let rows: Vec<Value> = results.iter().map(Added::json).collect();
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for result in &results {
                    match &result.outcome {
                        Outcome::Added { chunks, tokens } => {
                            outln!("added {}: {chunks} chunk(s), {tokens} tokens", result.name)
                        }
                        Outcome::Unchanged => {
                            outln!("unchanged {}: already in session {session} (same sha256)", result.name)
                        }
                        Outcome::Failed(_) => {}
                    }
                }
                let added = results.iter().filter(|r| matches!(r.outcome, Outcome::Added { .. })).count();
                eprintln!("{added} added, {} unchanged, {failed} failed", results.len() - added - failed);
            }
            Ok(if failed > 0 { std::process::ExitCode::FAILURE } else { std::process::ExitCode::SUCCESS })
        }
        DocsCommand::Ls { session } => {
            let docs = list(&runner, &session).await?;
            if global.json {
                outln!("{}", serde_json::to_string_pretty(&docs)?);
            } else if docs.is_empty() {
                eprintln!("no documents in session {session} (add some with `kaos docs add PATH…`)");
            } else {
                for doc in docs {
                    outln!("{}\t{} chunk(s)\t{} tokens\t{}", doc.name, doc.chunks, doc.tokens, doc.sha256);
                }
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        DocsCommand::Rm { name, session } => {
            let memory = runner.memory(&session).await?;
            let ids: Vec<u64> = memory
                .section(SectionKind::Documents)
                .items()
                .iter()
                .filter(|item| item.metadata.get("name").and_then(Value::as_str) == Some(name.as_str()))
                .map(|item| item.id)
                .collect();
            if ids.is_empty() {
                bail!("no document {name:?} in session {session} (`kaos docs ls` lists them)");
            }
            let removed = runner.forget(&session, SectionKind::Documents, ids).await?;
            if global.json {
                outln!("{}", json!({"name": name, "removed_chunks": removed}));
            } else {
                outln!("removed {name}: {removed} chunk(s)");
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// One document of a session, as `kaos docs ls` shows it.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Listed {
    name: String,
    chunks: usize,
    tokens: u64,
    sha256: String,
}

/// A session's documents, in the order they were added, grouped by file hash (items added by
/// hand, without one, by name).
async fn list(runner: &Runner, session: &str) -> Result<Vec<Listed>> {
    let memory = runner.memory(session).await?;
    let mut docs: Vec<Listed> = Vec::new();
    for item in memory.section(SectionKind::Documents).items() {
        let text = |key: &str| item.metadata.get(key).and_then(Value::as_str).map(str::to_owned);
        let name = text("name").unwrap_or_else(|| format!("(item {})", item.id));
        let sha256 = text("file_sha256").unwrap_or_default();
        match docs.iter_mut().find(|d| d.name == name && d.sha256 == sha256) {
            Some(doc) => {
                doc.chunks += 1;
                doc.tokens += item.tokens;
            }
            None => docs.push(Listed { name, chunks: 1, tokens: item.tokens, sha256 }),
        }
    }
    Ok(docs)
}

/// What happened to one file.
pub(crate) enum Outcome {
    /// Its chunks were stored.
    Added { chunks: usize, tokens: u64 },
    /// The session already holds a file with the same hash.
    Unchanged,
    /// Nothing of it was stored.
    Failed(String),
}

/// One file's result.
pub(crate) struct Added {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) sha256: Option<String>,
    pub(crate) outcome: Outcome,
    /// The ids of the stored chunks.
    pub(crate) ids: Vec<u64>,
}

impl Added {
    fn json(&self) -> Value {
        let (status, chunks, tokens, error) = match &self.outcome {
            Outcome::Added { chunks, tokens } => ("added", Some(*chunks), Some(*tokens), None),
            Outcome::Unchanged => ("unchanged", None, None, None),
            Outcome::Failed(error) => ("failed", None, None, Some(error.clone())),
        };
        json!({
            "name": self.name,
            "path": self.path.display().to_string(),
            "status": status,
            "chunks": chunks,
            "tokens": tokens,
            "sha256": self.sha256,
            "error": error,
        })
    }
}

/// The ingestion options of the settings (`docs.max_file_bytes`, `docs.chunk_tokens`).
pub(crate) fn options(settings: &Settings) -> IngestOptions {
    let mut options = IngestOptions::default();
    if let Some(bytes) = settings.docs.max_file_bytes {
        options.limits.max_file_bytes = bytes;
    }
    if let Some(tokens) = settings.docs.chunk_tokens {
        options.chunk_tokens = tokens;
    }
    options
}

/// The most document chunks one session may hold (`docs.max_chunks_per_session`).
pub(crate) fn max_chunks_per_session(settings: &Settings) -> u64 {
    settings.docs.max_chunks_per_session.unwrap_or(DEFAULT_MAX_CHUNKS_PER_SESSION)
}

/// Why a file was refused without being parsed into the session.
#[derive(Debug, thiserror::Error)]
enum AddError {
    #[error(
        "{name}: {chunks} chunk(s) would take session {session} over docs.max_chunks_per_session ({held} held, limit {limit})"
    )]
    SessionFull { name: String, session: String, chunks: usize, held: usize, limit: u64 },
}

/// Ingests `files` one by one into the session's documents: each file whole or not at all
/// (a failure is printed on stderr, naming the file, and the others still go in), a file
/// whose hash the session already holds is left alone. With `progress`, a progress line on
/// stderr when it is a terminal and there are several files.
pub(crate) async fn add_files(
    runner: &Runner,
    settings: &Settings,
    session: &str,
    files: &[PathBuf],
    progress: bool,
) -> Result<Vec<Added>> {
    let options = options(settings);
    let limit = max_chunks_per_session(settings);
    let bar = progress && files.len() > 1 && std::io::stderr().is_terminal();
    let mut results = Vec::with_capacity(files.len());
    for (index, path) in files.iter().enumerate() {
        let shown = path.display().to_string();
        if bar {
            eprint!("\r\x1b[2K[{}/{}] {shown}", index + 1, files.len());
        }
        let name = path.file_name().map_or_else(|| shown.clone(), |n| n.to_string_lossy().into_owned());
        let mut added =
            Added { name, path: path.clone(), sha256: None, outcome: Outcome::Unchanged, ids: vec![] };
        let stored = match ingest(path, &options) {
            Err(error) => Err(error_chain(&error)),
            Ok(doc) => {
                added.name.clone_from(&doc.name);
                added.sha256 = Some(doc.sha256.clone());
                match runner.add_document(session, &doc.sha256, items(&doc), limit).await {
                    Ok(DocumentAdded::Added { ids }) => Ok(Some((ids, doc))),
                    Ok(DocumentAdded::OverLimit { held, limit }) => Err(AddError::SessionFull {
                        name: doc.name.clone(),
                        session: session.to_owned(),
                        chunks: doc.chunks.len(),
                        held,
                        limit,
                    }
                    .to_string()),
                    // Unchanged: the session holds this content already.
                    Ok(_) => Ok(None),
                    Err(error) => Err(format!("{}: {}", doc.name, error_chain(&error))),
                }
            }
        };
        added.outcome = match stored {
            Ok(None) => Outcome::Unchanged,
            Ok(Some((ids, doc))) => {
                added.ids = ids;
                Outcome::Added { chunks: doc.chunks.len(), tokens: doc.tokens }
            }
            Err(error) => {
                if bar {
                    eprint!("\r\x1b[2K");
                }
                eprintln!("error: {error} (nothing of it was stored)");
                Outcome::Failed(error)
            }
        };
        if !bar && progress && files.len() > 1 {
            eprintln!("[{}/{}] {shown}", index + 1, files.len());
        }
        results.push(added);
    }
    if bar {
        eprint!("\r\x1b[2K");
    }
    Ok(results)
}

/// Ingests one file; an error names it (from the path when the file could not be named).
fn ingest(path: &Path, options: &IngestOptions) -> Result<Document, IngestError> {
    kaos_ingest::ingest_file(path, options)
}

/// A document's chunks as memory items, with their metadata (`name`, `chunk`, pages, hashes).
fn items(doc: &Document) -> Vec<NewItem> {
    doc.chunks
        .iter()
        .map(|chunk| {
            chunk
                .metadata()
                .into_iter()
                .fold(NewItem::text(chunk.text.clone()), |item, (key, value)| item.with_metadata(key, value))
        })
        .collect()
}

/// The files the arguments name: a file itself, a directory's files recursively (hidden ones
/// left out), a glob's matches; sorted within each argument, each file once.
pub(crate) fn expand(args: &[String]) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = Vec::new();
    for arg in args {
        let path = Path::new(arg);
        let mut found = Vec::new();
        if path.is_dir() {
            walk(path, &mut found)?;
        } else if path.exists() {
            found.push(path.to_path_buf());
        } else if arg.contains(['*', '?', '[', '{']) {
            let glob = globset::GlobBuilder::new(arg).literal_separator(true).build()?.compile_matcher();
            let base: PathBuf = path
                .components()
                .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[', '{']))
                .collect();
            let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
            let mut all = Vec::new();
            if base.is_dir() {
                walk(&base, &mut all)?;
            }
            found.extend(all.into_iter().filter(|f| glob.is_match(f.strip_prefix("./").unwrap_or(f))));
            if found.is_empty() {
                bail!("{arg}: no file matches");
            }
        } else {
            bail!("{arg}: no such file or directory");
        }
        found.sort();
        for file in found {
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    Ok(files)
}

/// Every file under `dir`, recursively, leaving out hidden entries.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            entries.insert(name, entry.path());
        }
    }
    for path in entries.into_values() {
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

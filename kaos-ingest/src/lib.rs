#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
//! Turns file bytes into document chunks for KAOS sessions.
//!
//! [`ingest`] takes a file's name, where it came from and its bytes, and returns a
//! [`Document`]: the format, sniffed from the content ([`sniff`]: magic bytes and structure,
//! never the extension alone), the text extracted with a maintained parser crate per format,
//! and that text split into [`Chunk`]s that respect paragraph and sentence boundaries under a
//! token size ([`chunk_ranges`]). Each chunk carries its document's `name` and `source`, its
//! index, its byte range in the extracted text, its page range (PDF), its estimated tokens and
//! the SHA-256 of its text and of the whole file, so a citation can point to where a quote
//! came from and re-adding the same file can be recognized as a no-op.
//!
//! Bad input is a typed [`IngestError`] naming the file, never a panic: an unknown or binary
//! format, text that is not UTF-8, a corrupt PDF, DOCX or XLSX, a PDF without a text layer, a
//! file over the size limit (checked before parsing), a zip bomb inside a DOCX or XLSX or a
//! Flate bomb inside a PDF (compressed content is inflated with a bound before any parser
//! sees it). The limits are an [`IngestLimits`].
//!
//! ```
//! use kaos_ingest::{Format, IngestOptions, ingest};
//!
//! let text = b"# The Old Bridge\n\nThe bridge opened in 1932.\n\nTolls were abolished in 1990.\n";
//! let doc = ingest("bridge.md", "notes/bridge.md", text, &IngestOptions::default())?;
//! assert_eq!(doc.format, Format::Markdown);
//! assert_eq!(doc.chunks.len(), 1);
//! let chunk = &doc.chunks[0];
//! assert!(chunk.text.contains("opened in 1932"));
//! assert_eq!(chunk.location(), "bridge.md, chunk 1");
//!
//! // The same bytes give the same file hash: adding them again is a no-op for the caller.
//! let again = ingest("bridge.md", "elsewhere/bridge.md", text, &IngestOptions::default())?;
//! assert_eq!(again.sha256, doc.sha256);
//! # Ok::<(), kaos_ingest::IngestError>(())
//! ```
//!
//! This crate does no async and no IO beyond [`ingest_file`]'s read of one file; it knows
//! nothing of sessions: a caller turns each chunk into a memory item with [`Chunk::metadata`].

mod chunk;
mod error;
mod extract;
mod htmlguard;
mod pdfguard;
mod sniff;
mod zipguard;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read as _;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub use chunk::{chunk_ranges, estimate_tokens};
pub use error::IngestError;
pub use sniff::{Format, sniff};

/// The default chunk size, in estimated tokens.
pub const DEFAULT_CHUNK_TOKENS: u64 = 512;

/// Bounds on what one file may cost. Every field has a default ([`IngestLimits::default`]);
/// settings can override them one by one (`#[serde(default)]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestLimits {
    /// Largest file accepted, in bytes (default 64 MiB). Checked before parsing, and for a
    /// path before reading.
    pub max_file_bytes: u64,
    /// Most bytes decompressed from a DOCX or XLSX archive, all entries together, or from a
    /// PDF's Flate streams, all streams together (default 256 MiB).
    pub max_uncompressed_bytes: u64,
    /// Most entries in a DOCX or XLSX archive (default 10 000).
    pub max_archive_entries: usize,
    /// Most chunks one document may split into (default 10 000).
    pub max_chunks: usize,
    /// Deepest element nesting accepted in HTML (default 512, Chromium's parser cap): the HTML
    /// parser's time grows with tags times depth, so deeper documents are refused as corrupt.
    pub max_html_depth: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 64 << 20,
            max_uncompressed_bytes: 256 << 20,
            max_archive_entries: 10_000,
            max_chunks: 10_000,
            max_html_depth: 512,
        }
    }
}

impl IngestLimits {
    fn check_size(&self, name: &str, size: u64) -> Result<(), IngestError> {
        if size > self.max_file_bytes {
            return Err(IngestError::TooLarge { name: name.to_owned(), size, limit: self.max_file_bytes });
        }
        Ok(())
    }
}

/// How to ingest: the chunk size and the limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestOptions {
    /// Most estimated tokens in one chunk ([`estimate_tokens`]; default
    /// [`DEFAULT_CHUNK_TOKENS`]; 0 counts as 1).
    pub chunk_tokens: u64,
    /// The limits.
    pub limits: IngestLimits,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self { chunk_tokens: DEFAULT_CHUNK_TOKENS, limits: IngestLimits::default() }
    }
}

/// An ingested file: what it was, and its text in chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// The file's name, as citations show it (e.g. `report.pdf`).
    pub name: String,
    /// Where it came from (a path, a URL, …), as the caller gave it.
    pub source: String,
    /// Its format, sniffed from the content.
    pub format: Format,
    /// The file's size in bytes.
    pub size: u64,
    /// `sha256:<hex>` of the file's bytes: the same file gives the same hash, whatever its
    /// name.
    pub sha256: String,
    /// For a PDF, its number of pages.
    pub pages: Option<u32>,
    /// Bytes of extracted text.
    pub text_bytes: usize,
    /// Estimated tokens of all chunks together.
    pub tokens: u64,
    /// The chunks, in order (never empty).
    pub chunks: Vec<Chunk>,
}

/// An inclusive range of 1-based page numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRange {
    /// The first page.
    pub first: u32,
    /// The last page (equal to `first` for a chunk on one page).
    pub last: u32,
}

/// One piece of a document's text, small enough to be retrieved and quoted on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// The document's name.
    pub name: String,
    /// The document's source.
    pub source: String,
    /// The document's format.
    pub format: Format,
    /// This chunk's 0-based index in the document.
    pub chunk: usize,
    /// The text: exactly `byte_range` of the document's extracted text.
    pub text: String,
    /// Where the text lies in the document's extracted text. For plain text and Markdown the
    /// extracted text is the file itself (without a byte order mark).
    pub byte_range: Range<usize>,
    /// The pages the text is on (PDF only).
    pub pages: Option<PageRange>,
    /// Estimated tokens of `text` ([`estimate_tokens`]).
    pub tokens: u64,
    /// `sha256:<hex>` of `text`.
    pub sha256: String,
    /// `sha256:<hex>` of the whole file ([`Document::sha256`]).
    pub file_sha256: String,
}

impl Chunk {
    /// Where the chunk is, for a citation: `report.pdf, p. 3`, `report.pdf, pp. 3–4` or
    /// `notes.md, chunk 2` (1-based, as people count).
    pub fn location(&self) -> String {
        match self.pages {
            Some(PageRange { first, last }) if first == last => format!("{}, p. {first}", self.name),
            Some(PageRange { first, last }) => format!("{}, pp. {first}–{last}", self.name),
            None => format!("{}, chunk {}", self.name, self.chunk + 1),
        }
    }

    /// The chunk's details as memory-item metadata: `name`, `source`, `format`, `chunk`,
    /// `byte_start`, `byte_end`, `page_first` and `page_last` (PDF only), `tokens`, `sha256`,
    /// `file_sha256`. The research pattern matches a quote's `source` against `name`.
    pub fn metadata(&self) -> BTreeMap<String, Value> {
        let mut map = BTreeMap::from([
            ("name".to_owned(), json!(self.name)),
            ("source".to_owned(), json!(self.source)),
            ("format".to_owned(), json!(self.format)),
            ("chunk".to_owned(), json!(self.chunk)),
            ("byte_start".to_owned(), json!(self.byte_range.start)),
            ("byte_end".to_owned(), json!(self.byte_range.end)),
            ("tokens".to_owned(), json!(self.tokens)),
            ("sha256".to_owned(), json!(self.sha256)),
            ("file_sha256".to_owned(), json!(self.file_sha256)),
        ]);
        if let Some(pages) = self.pages {
            map.insert("page_first".to_owned(), json!(pages.first));
            map.insert("page_last".to_owned(), json!(pages.last));
        }
        map
    }
}

/// Ingests one file's bytes: checks the size, sniffs the format, extracts the text and splits
/// it into chunks of at most `options.chunk_tokens` estimated tokens. `name` is what citations
/// show (and its extension only breaks ties between text formats); `source` is recorded as
/// given.
///
/// # Errors
/// Every [`IngestError`] variant except `Io`; each names the file.
pub fn ingest(
    name: &str,
    source: &str,
    bytes: &[u8],
    options: &IngestOptions,
) -> Result<Document, IngestError> {
    let limits = &options.limits;
    let format = sniff(name, bytes, limits)?;
    let extracted = extract::extract(name, bytes, format, limits)?;
    let ranges = chunk_ranges(&extracted.text, &extracted.pages, options.chunk_tokens);
    if ranges.len() > limits.max_chunks {
        return Err(IngestError::TooManyChunks {
            name: name.to_owned(),
            chunks: ranges.len(),
            limit: limits.max_chunks,
        });
    }
    let file_sha256 = sha256(bytes);
    let chunks: Vec<Chunk> = ranges
        .into_iter()
        .enumerate()
        .map(|(index, range)| {
            let text = extracted.text[range.clone()].to_owned();
            Chunk {
                name: name.to_owned(),
                source: source.to_owned(),
                format,
                chunk: index,
                tokens: estimate_tokens(&text),
                sha256: sha256(text.as_bytes()),
                file_sha256: file_sha256.clone(),
                pages: page_range(&extracted.pages, &range),
                byte_range: range,
                text,
            }
        })
        .collect();
    Ok(Document {
        name: name.to_owned(),
        source: source.to_owned(),
        format,
        size: bytes.len() as u64,
        sha256: file_sha256,
        pages: (!extracted.pages.is_empty()).then_some(extracted.pages.len() as u32),
        text_bytes: extracted.text.len(),
        tokens: chunks.iter().map(|c| c.tokens).sum(),
        chunks,
    })
}

/// Ingests a file on disk: its name is the path's file name and its source the path as
/// given. The size is checked from the file's metadata before it is read (and again while
/// reading, in case it grows).
///
/// # Errors
/// As [`ingest`], and [`IngestError::Io`] when the file cannot be read (missing, a directory,
/// no permission).
pub fn ingest_file(path: &Path, options: &IngestOptions) -> Result<Document, IngestError> {
    let name =
        path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    let source = path.display().to_string();
    let io = |source| IngestError::Io { name: name.clone(), source };
    let limit = options.limits.max_file_bytes;
    let file = File::open(path).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if metadata.is_dir() {
        return Err(io(std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory")));
    }
    options.limits.check_size(&name, metadata.len())?;
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
    options.limits.check_size(&name, bytes.len() as u64)?;
    ingest(&name, &source, &bytes, options)
}

/// `sha256:<lower-case hex>` of `bytes`: the form of [`Document::sha256`] and
/// [`Chunk::sha256`].
pub fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The page range of a byte range, from the pages' byte ranges.
fn page_range(pages: &[Range<usize>], range: &Range<usize>) -> Option<PageRange> {
    let mut on = pages
        .iter()
        .enumerate()
        .filter(|(_, page)| page.start < range.end && range.start < page.end)
        .map(|(index, _)| index as u32 + 1);
    let first = on.next()?;
    Some(PageRange { first, last: on.next_back().unwrap_or(first) })
}

/// This crate's README, compiled and run as a doctest (it ships in the package).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

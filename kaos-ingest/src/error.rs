//! The typed errors of ingestion. Every variant names the file.

use std::io;

use thiserror::Error;

use crate::Format;

/// Why a file could not be ingested. Every variant carries the file's `name`, so a message
/// printed on its own says which file it is about; nothing is returned for a file that fails.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The file is larger than [`IngestLimits::max_file_bytes`](crate::IngestLimits). Checked
    /// before anything is parsed (for a path, before the file is read).
    #[error("{name}: {size} bytes is over the file size limit of {limit} bytes")]
    TooLarge {
        /// The file.
        name: String,
        /// Its size in bytes (at least `limit + 1` when read from a stream).
        size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The content is no format this crate reads (an image, an archive, an executable, a
    /// PowerPoint file, …), whatever its extension says.
    #[error("{name}: unsupported format: {detected}")]
    Unsupported {
        /// The file.
        name: String,
        /// What the content looks like (`image/png`, `binary data`, `ZIP archive`, …).
        detected: String,
    },
    /// The content looks like text but is not valid UTF-8 (e.g. Latin-1 or UTF-16).
    #[error("{name}: not valid UTF-8 (first invalid byte at offset {offset}); convert it to UTF-8 first")]
    NotUtf8 {
        /// The file.
        name: String,
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// The content is of a known format but cannot be parsed (a truncated PDF, a DOCX whose
    /// ZIP or XML is broken, invalid JSON, …). A parser that panics on the input is reported
    /// here too.
    #[error("{name}: corrupt {format}: {reason}")]
    Corrupt {
        /// The file.
        name: String,
        /// The format the content was recognized as.
        format: Format,
        /// What the parser said.
        reason: String,
    },
    /// A PDF whose pages carry no text (a scan or images): it would need OCR, which this
    /// crate does not do.
    #[error("{name}: the PDF has no text layer ({pages} page(s) of images or scans; OCR it first)")]
    NoTextLayer {
        /// The file.
        name: String,
        /// Its number of pages.
        pages: u32,
    },
    /// Compressed content over the limits: a DOCX or XLSX archive with too many entries or
    /// more uncompressed bytes than allowed (a zip bomb), or a PDF whose Flate streams inflate
    /// to more than allowed. Checked by decompressing with a bound before any parser sees the
    /// file, not by trusting the sizes the file declares.
    #[error("{name}: {format} over the decompression limit: {reason}")]
    DecompressionLimit {
        /// The file.
        name: String,
        /// DOCX, XLSX or PDF.
        format: Format,
        /// Which limit, and its value.
        reason: String,
    },
    /// The file was read and parsed but holds no text.
    #[error("{name}: no text in this {format} file")]
    Empty {
        /// The file.
        name: String,
        /// Its format.
        format: Format,
    },
    /// The document splits into more chunks than [`IngestLimits::max_chunks`](crate::IngestLimits).
    #[error("{name}: {chunks} chunks is over the limit of {limit} chunks per document")]
    TooManyChunks {
        /// The file.
        name: String,
        /// How many chunks it would have.
        chunks: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The file could not be read from disk.
    #[error("{name}: cannot read: {source}")]
    Io {
        /// The file.
        name: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl IngestError {
    /// The name of the file the error is about.
    pub fn name(&self) -> &str {
        match self {
            Self::TooLarge { name, .. }
            | Self::Unsupported { name, .. }
            | Self::NotUtf8 { name, .. }
            | Self::Corrupt { name, .. }
            | Self::NoTextLayer { name, .. }
            | Self::DecompressionLimit { name, .. }
            | Self::Empty { name, .. }
            | Self::TooManyChunks { name, .. }
            | Self::Io { name, .. } => name,
        }
    }
}

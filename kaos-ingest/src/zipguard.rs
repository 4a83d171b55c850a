//! Reading DOCX and XLSX archives within bounds (no zip bomb gets through).
//!
//! The sizes a ZIP archive declares can lie, so the check decompresses every entry through a
//! reader that stops one byte past what is left of the budget, and counts what really came
//! out. Only then is the archive handed to a parser.

use std::io::{self, Cursor, Read};

use zip::ZipArchive;
use zip::result::ZipError;

use crate::error::IngestError;
use crate::{Format, IngestLimits};

/// An archive over a byte slice.
pub(crate) type Archive<'a> = ZipArchive<Cursor<&'a [u8]>>;

/// Opens the central directory of `bytes`.
pub(crate) fn open(bytes: &[u8]) -> Result<Archive<'_>, ZipError> {
    ZipArchive::new(Cursor::new(bytes))
}

/// Checks the entry count and decompresses every entry, failing as soon as the total
/// uncompressed size is over [`IngestLimits::max_uncompressed_bytes`].
pub(crate) fn check(
    name: &str,
    format: Format,
    archive: &mut Archive<'_>,
    limits: &IngestLimits,
) -> Result<(), IngestError> {
    let over = |reason: String| IngestError::DecompressionLimit { name: name.to_owned(), format, reason };
    if archive.len() > limits.max_archive_entries {
        return Err(over(format!("{} entries, limit {}", archive.len(), limits.max_archive_entries)));
    }
    let mut left = limits.max_uncompressed_bytes;
    for index in 0..archive.len() {
        let entry = archive.by_index(index).map_err(|e| corrupt(name, format, &e))?;
        let entry_name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let read = io::copy(&mut entry.take(left.saturating_add(1)), &mut io::sink())
            .map_err(|e| corrupt(name, format, &format!("{entry_name}: {e}")))?;
        if read > left {
            return Err(over(format!(
                "more than {} bytes uncompressed (at entry {entry_name})",
                limits.max_uncompressed_bytes
            )));
        }
        left -= read;
    }
    Ok(())
}

/// The whole of one entry (after [`check`], so bounded), or `None` when there is no such entry.
pub(crate) fn read(
    name: &str,
    format: Format,
    archive: &mut Archive<'_>,
    path: &str,
    limits: &IngestLimits,
) -> Result<Option<Vec<u8>>, IngestError> {
    let entry = match archive.by_name(path) {
        Ok(entry) => entry,
        Err(ZipError::FileNotFound) => return Ok(None),
        Err(error) => return Err(corrupt(name, format, &error)),
    };
    let mut out = Vec::new();
    entry
        .take(limits.max_uncompressed_bytes)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(name, format, &format!("{path}: {e}")))?;
    Ok(Some(out))
}

fn corrupt(name: &str, format: Format, reason: &dyn std::fmt::Display) -> IngestError {
    IngestError::Corrupt { name: name.to_owned(), format, reason: reason.to_string() }
}

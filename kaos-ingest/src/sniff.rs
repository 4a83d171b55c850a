//! Content sniffing: which [`Format`] a file is, decided from its bytes.
//!
//! Binary formats are recognized by their structure only: `%PDF-` near the start for PDF; a
//! ZIP archive whose `[Content_Types].xml` declares a WordprocessingML or SpreadsheetML main
//! part for DOCX and XLSX; other binary signatures (images, archives, executables, …) by the
//! `infer` crate, and refused. Text must be UTF-8; within text, JSON is what parses as JSON,
//! HTML what the WHATWG sniffing rules call HTML, email what starts with an RFC 822 header
//! block with a `From:` field. The file name's extension is used only to break ties between
//! text formats (CSV, TSV and Markdown cannot be told from plain text by content, and a
//! `.md` file may start with an HTML comment).

use std::fmt;
use std::io::Read as _;

use serde::{Deserialize, Serialize};

use crate::IngestLimits;
use crate::error::IngestError;
use crate::zipguard;

/// A format this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Format {
    /// Plain UTF-8 text.
    Text,
    /// Markdown (kept as written).
    Markdown,
    /// HTML: the readable text, scripts and styles dropped.
    Html,
    /// PDF: the text layer, page by page.
    Pdf,
    /// Word (Office Open XML) document: paragraphs and tables of the main body.
    Docx,
    /// Excel (Office Open XML) workbook: every sheet as a table of text.
    Xlsx,
    /// Comma- (or, for `.tsv`, tab-) separated values, as a table of text.
    Csv,
    /// JSON, pretty-printed.
    Json,
    /// An email message (RFC 822 / MIME): its main headers and text body.
    Eml,
}

impl Format {
    /// A short upper-case label (`PDF`, `DOCX`, …) for messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Markdown => "Markdown",
            Self::Html => "HTML",
            Self::Pdf => "PDF",
            Self::Docx => "DOCX",
            Self::Xlsx => "XLSX",
            Self::Csv => "CSV",
            Self::Json => "JSON",
            Self::Eml => "EML",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The content type WordprocessingML declares for a document's main part.
pub(crate) const DOCX_MAIN: &str =
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml";
/// …for a macro-enabled document and a template (same body schema).
const DOCX_MAIN_OTHER: &[&str] = &[
    "application/vnd.ms-word.document.macroEnabled.main+xml",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
];
/// The content type SpreadsheetML declares for a workbook's main part.
const XLSX_MAIN: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml";
/// PresentationML: recognized only to be refused by name.
const PPTX_MAIN: &str = "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml";

/// `[Content_Types].xml` is small; more than this is not an Office file.
const CONTENT_TYPES_MAX: u64 = 1 << 20;

/// Decides the format of `bytes`. `name` is used for the error messages and for its extension,
/// which only breaks ties between text formats. Checks the size limit first.
///
/// # Errors
/// [`IngestError::TooLarge`], [`IngestError::Unsupported`] (binary or unknown content),
/// [`IngestError::NotUtf8`] (text in another encoding), [`IngestError::Corrupt`] (a broken
/// PDF header or a `.json` file that does not parse), [`IngestError::DecompressionLimit`].
pub fn sniff(name: &str, bytes: &[u8], limits: &IngestLimits) -> Result<Format, IngestError> {
    limits.check_size(name, bytes.len() as u64)?;
    let extension = extension(name);
    let head = &bytes[..bytes.len().min(1024)];
    if memchr_find(head, b"%PDF-").is_some() {
        return Ok(Format::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return sniff_zip(name, bytes, extension.as_deref(), limits);
    }
    if let Some(kind) = infer::get(bytes)
        && kind.matcher_type() != infer::MatcherType::Text
    {
        return Err(unsupported(name, kind.mime_type()));
    }
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        // A UTF-16 byte order mark: text, in an encoding this crate does not read.
        return Err(IngestError::NotUtf8 { name: name.to_owned(), offset: 0 });
    }
    let text = match std::str::from_utf8(strip_bom(bytes)) {
        Ok(text) => text,
        Err(error) => {
            if looks_binary(bytes) {
                return Err(unsupported(name, "binary data"));
            }
            // Mail is 7-bit headers over any body encoding: mail-parser decodes the charsets.
            if looks_like_email(&String::from_utf8_lossy(&bytes[..bytes.len().min(8192)])) {
                return Ok(Format::Eml);
            }
            return Err(IngestError::NotUtf8 { name: name.to_owned(), offset: error.valid_up_to() });
        }
    };
    if looks_binary(text.as_bytes()) {
        return Err(unsupported(name, "binary data"));
    }
    sniff_text(name, text, extension.as_deref())
}

fn sniff_text(name: &str, text: &str, extension: Option<&str>) -> Result<Format, IngestError> {
    let trimmed = text.trim_start();
    match extension {
        Some("csv" | "tsv") => return Ok(Format::Csv),
        Some("md" | "markdown") => return Ok(Format::Markdown),
        _ => {}
    }
    if trimmed.starts_with(['{', '[']) {
        match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => return Ok(Format::Json),
            Err(error) if extension == Some("json") => {
                return Err(IngestError::Corrupt {
                    name: name.to_owned(),
                    format: Format::Json,
                    reason: error.to_string(),
                });
            }
            Err(_) => {}
        }
    }
    if infer::text::is_html(text.as_bytes())
        || (matches!(extension, Some("html" | "htm" | "xhtml")) && trimmed.starts_with('<'))
    {
        return Ok(Format::Html);
    }
    if looks_like_email(text) {
        return Ok(Format::Eml);
    }
    Ok(Format::Text)
}

fn sniff_zip(
    name: &str,
    bytes: &[u8],
    extension: Option<&str>,
    limits: &IngestLimits,
) -> Result<Format, IngestError> {
    let office = match extension {
        Some("docx" | "docm" | "dotx") => Some(Format::Docx),
        Some("xlsx" | "xlsm") => Some(Format::Xlsx),
        _ => None,
    };
    let corrupt = |reason: String| match office {
        Some(format) => IngestError::Corrupt { name: name.to_owned(), format, reason },
        None => unsupported(name, &format!("ZIP archive that cannot be read ({reason})")),
    };
    let mut archive = zipguard::open(bytes).map_err(|e| corrupt(e.to_string()))?;
    if archive.len() > limits.max_archive_entries {
        return Err(IngestError::DecompressionLimit {
            name: name.to_owned(),
            format: office.unwrap_or(Format::Docx),
            reason: format!("{} entries, limit {}", archive.len(), limits.max_archive_entries),
        });
    }
    let content_types = match archive.by_name("[Content_Types].xml") {
        Ok(file) => {
            let mut text = String::new();
            file.take(CONTENT_TYPES_MAX)
                .read_to_string(&mut text)
                .map_err(|e| corrupt(format!("[Content_Types].xml: {e}")))?;
            text
        }
        Err(_) => return Err(unsupported(name, "ZIP archive")),
    };
    if content_types.contains(DOCX_MAIN) || DOCX_MAIN_OTHER.iter().any(|t| content_types.contains(t)) {
        Ok(Format::Docx)
    } else if content_types.contains(XLSX_MAIN) {
        Ok(Format::Xlsx)
    } else if content_types.contains(PPTX_MAIN) {
        Err(unsupported(name, "PowerPoint presentation (PPTX)"))
    } else {
        Err(unsupported(name, "Office Open XML package of an unsupported kind"))
    }
}

pub(crate) fn unsupported(name: &str, detected: &str) -> IngestError {
    IngestError::Unsupported { name: name.to_owned(), detected: detected.to_owned() }
}

/// The lower-cased extension of a file name, if any.
pub(crate) fn extension(name: &str) -> Option<String> {
    let file = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (stem, ext) = file.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// `bytes` without a leading UTF-8 byte order mark.
pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// A NUL byte, or more than one control character in ten, in the first 8 KiB. Text (even in
/// a legacy 8-bit encoding) has neither; UTF-16 has many NULs.
fn looks_binary(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(8192)];
    let control =
        head.iter().filter(|&&b| b == 0 || (b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0C))).count();
    head.contains(&0) || control * 10 > head.len()
}

/// An RFC 822 header block at the very start: every line up to the first empty line is a
/// `Field-Name: value` line or a folded continuation, there are at least two fields, and one
/// of them is `From`.
pub(crate) fn looks_like_email(text: &str) -> bool {
    let mut fields = 0;
    let mut from = false;
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if fields == 0 {
                return false;
            }
            continue;
        }
        let Some((field, _)) = line.split_once(':') else { return false };
        if field.is_empty() || !field.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return false;
        }
        fields += 1;
        from |= field.eq_ignore_ascii_case("from");
    }
    fields >= 2 && from
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniffed(name: &str, bytes: &[u8]) -> Result<Format, IngestError> {
        sniff(name, bytes, &IngestLimits::default())
    }

    #[test]
    fn extension_is_lower_cased_and_needs_a_stem() {
        assert_eq!(extension("dir/Report.PDF").as_deref(), Some("pdf"));
        assert_eq!(extension(".bashrc"), None);
        assert_eq!(extension("README"), None);
    }

    #[test]
    fn text_formats_by_content() {
        assert_eq!(sniffed("a", b"{\"a\": 1}").unwrap(), Format::Json);
        assert_eq!(sniffed("a", b"  [1, 2]\n").unwrap(), Format::Json);
        assert_eq!(sniffed("a", b"<!DOCTYPE html><p>hi</p>").unwrap(), Format::Html);
        assert_eq!(sniffed("a.txt", b"<html><body>x</body></html>").unwrap(), Format::Html);
        assert_eq!(sniffed("a", b"From: a@b.c\nSubject: hi\n\nbody").unwrap(), Format::Eml);
        assert_eq!(sniffed("a", b"Just words. {not json}").unwrap(), Format::Text);
        assert_eq!(sniffed("a", b"[link] is not json").unwrap(), Format::Text);
        assert_eq!(sniffed("a", b"Note: this is text\nwith a colon\n").unwrap(), Format::Text);
    }

    #[test]
    fn the_extension_only_breaks_ties_between_text_formats() {
        assert_eq!(sniffed("notes.md", b"<!-- c -->\n# Title").unwrap(), Format::Markdown);
        assert_eq!(sniffed("t.csv", b"a,b\n1,2\n").unwrap(), Format::Csv);
        assert_eq!(sniffed("t.txt", b"a,b\n1,2\n").unwrap(), Format::Text);
        // A PNG called .txt is still a PNG.
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";
        assert!(
            matches!(sniffed("a.txt", png), Err(IngestError::Unsupported { detected, .. }) if detected == "image/png")
        );
        // A text file called .pdf is text.
        assert_eq!(sniffed("a.pdf", b"plain words").unwrap(), Format::Text);
    }

    #[test]
    fn invalid_json_named_json_is_corrupt() {
        assert!(matches!(
            sniffed("d.json", b"{\"a\": "),
            Err(IngestError::Corrupt { format: Format::Json, .. })
        ));
    }

    #[test]
    fn latin1_and_utf16_are_not_utf8_and_utf16_without_a_bom_is_binary() {
        assert!(matches!(sniffed("l.txt", b"caf\xe9 au lait"), Err(IngestError::NotUtf8 { offset: 3, .. })));
        let utf16: Vec<u8> = "hello".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert!(matches!(sniffed("u.txt", &utf16), Err(IngestError::Unsupported { .. })));
        let with_bom = [&b"\xFF\xFE"[..], &utf16].concat();
        assert!(matches!(sniffed("u.txt", &with_bom), Err(IngestError::NotUtf8 { offset: 0, .. })));
    }

    #[test]
    fn email_detection_needs_a_header_block_with_from() {
        assert!(looks_like_email("From: a\nTo: b\n\nx"));
        assert!(looks_like_email("Received: x\n  folded\nFrom: a\n\nx"));
        assert!(!looks_like_email("Subject: a\nTo: b\n\nx"));
        assert!(!looks_like_email("From: a\nnot a header line\n"));
        assert!(!looks_like_email(" From: a\nTo: b\n"));
    }
}

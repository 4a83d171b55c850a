//! Bounding what a PDF's compressed streams inflate to (a Flate bomb), before the PDF parser
//! sees the file: lopdf inflates a stream whole, with no bound, so a few KiB of Flate data can
//! ask for gigabytes.
//!
//! This is not a PDF parser: it finds the `stream` … `endstream` segments of the file and
//! inflates each as lopdf would (zlib, else raw deflate) through a reader that stops one byte
//! past what is left of the budget. Data that is not Flate (images in DCT, JPX, …) fails to
//! inflate at once and counts nothing.

use std::io::Read;

use flate2::read::{DeflateDecoder, ZlibDecoder};

use crate::error::IngestError;
use crate::{Format, IngestLimits};

/// Fails when the file's Flate streams together inflate to more than
/// [`IngestLimits::max_uncompressed_bytes`].
pub(crate) fn check(name: &str, bytes: &[u8], limits: &IngestLimits) -> Result<(), IngestError> {
    let limit = limits.max_uncompressed_bytes;
    let mut left = limit;
    let mut pos = 0;
    while let Some(found) = find(&bytes[pos..], b"stream") {
        let keyword = pos + found;
        pos = keyword + b"stream".len();
        if bytes[..keyword].ends_with(b"end") {
            continue;
        }
        let start = if bytes[pos..].starts_with(b"\r\n") {
            pos + 2
        } else if bytes[pos..].starts_with(b"\n") || bytes[pos..].starts_with(b"\r") {
            pos + 1
        } else {
            continue;
        };
        let end = find(&bytes[start..], b"endstream").map_or(bytes.len(), |e| start + e);
        let data = &bytes[start..end];
        let budget = left.saturating_add(1);
        let inflated =
            inflated_len(ZlibDecoder::new(data), budget).max(inflated_len(DeflateDecoder::new(data), budget));
        if inflated > left {
            return Err(IngestError::DecompressionLimit {
                name: name.to_owned(),
                format: Format::Pdf,
                reason: format!("its streams inflate to more than {limit} bytes"),
            });
        }
        left -= inflated;
        pos = end;
    }
    Ok(())
}

/// Bytes a decoder yields before its end, its first error, or `budget`.
fn inflated_len(decoder: impl Read, budget: u64) -> u64 {
    let mut decoder = decoder.take(budget);
    let mut buffer = [0u8; 16 * 1024];
    let mut total = 0u64;
    while let Ok(read @ 1..) = decoder.read(&mut buffer) {
        total += read as u64;
    }
    total
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use flate2::Compression;
    use flate2::write::ZlibEncoder;

    use super::*;

    fn pdf_with_stream(data: &[u8]) -> Vec<u8> {
        let mut pdf =
            format!("%PDF-1.4\n1 0 obj << /Length {} /Filter /FlateDecode >>\nstream\r\n", data.len())
                .into_bytes();
        pdf.extend_from_slice(data);
        pdf.extend_from_slice(b"\r\nendstream\nendobj\n%%EOF\n");
        pdf
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn streams_are_counted_inflated() {
        let limits = IngestLimits { max_uncompressed_bytes: 1000, ..IngestLimits::default() };
        assert!(check("a.pdf", &pdf_with_stream(&zlib(&[b'x'; 1000])), &limits).is_ok());
        let error = check("a.pdf", &pdf_with_stream(&zlib(&[b'x'; 1001])), &limits).unwrap_err();
        assert!(matches!(error, IngestError::DecompressionLimit { format: Format::Pdf, .. }), "{error}");
        // Two streams share the budget.
        let mut two = pdf_with_stream(&zlib(&[b'x'; 600]));
        two.extend(pdf_with_stream(&zlib(&[b'y'; 600])));
        assert!(check("a.pdf", &two, &limits).is_err());
        // Raw deflate, which lopdf falls back to, is counted too.
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), Compression::best());
        raw.write_all(&[0u8; 5000]).unwrap();
        assert!(check("a.pdf", &pdf_with_stream(&raw.finish().unwrap()), &limits).is_err());
    }

    #[test]
    fn data_that_is_not_flate_counts_nothing() {
        let limits = IngestLimits { max_uncompressed_bytes: 10, ..IngestLimits::default() };
        assert!(check("a.pdf", &pdf_with_stream(&[0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3]), &limits).is_ok());
        assert!(check("a.pdf", b"%PDF-1.4 no streams at all, endstream", &limits).is_ok());
    }
}

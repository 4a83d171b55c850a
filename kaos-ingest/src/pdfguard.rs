//! Bounding what a PDF's compressed streams inflate to (a Flate bomb), before the PDF parser
//! sees the file: lopdf inflates a stream whole, with no bound, so a few KiB of Flate data can
//! ask for gigabytes.
//!
//! This is not a PDF parser: it finds the `stream` … `endstream` segments of the file and
//! inflates each as lopdf would (zlib, else raw deflate) through a reader that stops one byte
//! past what is left of the budget. Data that is not Flate (images in DCT, JPX, …) fails to
//! inflate at once and counts nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use flate2::read::{DeflateDecoder, ZlibDecoder};
use lopdf::content::Content;
use lopdf::{Dictionary, Document, Object, ObjectId};

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

/// Deepest chain of form XObjects drawing one another that is read.
const MAX_FORM_DEPTH: usize = 32;

/// Fails when form XObjects draw one another in a cycle, or in a chain deeper than
/// [`MAX_FORM_DEPTH`]: pdf-extract follows `Do` recursively with no guard, so a form that draws
/// itself overflows the stack, which aborts the process (no panic to catch).
///
/// The graph is over-approximated: a `Do` is resolved in the form's own resources, or, for a
/// form without any (which inherits its caller's), in every XObject resource dictionary of the
/// file. A file lopdf cannot load passes, for pdf-extract to report.
pub(crate) fn check_forms(name: &str, bytes: &[u8]) -> Result<(), IngestError> {
    let Ok(Ok(doc)) = std::panic::catch_unwind(|| Document::load_mem(bytes)) else { return Ok(()) };
    let mut everywhere: BTreeMap<Vec<u8>, BTreeSet<ObjectId>> = BTreeMap::new();
    for object in doc.objects.values() {
        let dict = match object {
            Object::Dictionary(dict) => dict,
            Object::Stream(stream) => &stream.dict,
            _ => continue,
        };
        for (key, id) in xobjects(&doc, dict) {
            everywhere.entry(key).or_default().insert(id);
        }
    }
    let mut draws: BTreeMap<ObjectId, BTreeSet<ObjectId>> = BTreeMap::new();
    for (&id, object) in &doc.objects {
        let Object::Stream(stream) = object else { continue };
        if stream.dict.get(b"Subtype").and_then(Object::as_name).ok() != Some(b"Form".as_slice()) {
            continue;
        }
        let own = stream.dict.has(b"Resources").then(|| xobjects(&doc, &stream.dict));
        let Ok(content) = stream.decompressed_content() else { continue };
        let Ok(content) = Content::decode(&content) else { continue };
        let targets = draws.entry(id).or_default();
        for operation in content.operations.iter().filter(|op| op.operator == "Do") {
            let Some(Ok(key)) = operation.operands.first().map(Object::as_name) else { continue };
            match &own {
                Some(own) => targets.extend(own.iter().filter(|(k, _)| k == key).map(|(_, id)| *id)),
                None => targets.extend(everywhere.get(key).into_iter().flatten()),
            }
        }
    }
    let mut depths: BTreeMap<ObjectId, usize> = BTreeMap::new();
    for &form in draws.keys() {
        let mut path = Vec::new();
        if depth(form, &draws, &mut depths, &mut path).is_none() {
            return Err(IngestError::Corrupt {
                name: name.to_owned(),
                format: Format::Pdf,
                reason: format!(
                    "form XObjects draw one another in a cycle or more than {MAX_FORM_DEPTH} deep (object {} {})",
                    form.0, form.1
                ),
            });
        }
    }
    Ok(())
}

/// The longest chain of forms `form` draws, counting itself; `None` on a cycle or past
/// [`MAX_FORM_DEPTH`]. `path` is the chain being followed (bounded by the depth limit).
fn depth(
    form: ObjectId,
    draws: &BTreeMap<ObjectId, BTreeSet<ObjectId>>,
    depths: &mut BTreeMap<ObjectId, usize>,
    path: &mut Vec<ObjectId>,
) -> Option<usize> {
    if let Some(&known) = depths.get(&form) {
        return Some(known);
    }
    if path.contains(&form) || path.len() >= MAX_FORM_DEPTH {
        return None;
    }
    path.push(form);
    let mut deepest = 0;
    for &next in draws.get(&form).into_iter().flatten() {
        if draws.contains_key(&next) {
            deepest = deepest.max(depth(next, draws, depths, path)?);
        }
    }
    path.pop();
    depths.insert(form, deepest + 1);
    Some(deepest + 1)
}

/// The `/Resources /XObject` entries of a dictionary: (name, referenced object).
fn xobjects(doc: &Document, dict: &Dictionary) -> Vec<(Vec<u8>, ObjectId)> {
    let Some(xobjects) = dict
        .get(b"Resources")
        .ok()
        .and_then(|r| resolve(doc, r))
        .and_then(|r| r.get(b"XObject").ok())
        .and_then(|x| resolve(doc, x))
    else {
        return Vec::new();
    };
    xobjects.iter().filter_map(|(key, value)| Some((key.clone(), value.as_reference().ok()?))).collect()
}

/// A dictionary, directly or through a reference.
fn resolve<'a>(doc: &'a Document, object: &'a Object) -> Option<&'a Dictionary> {
    doc.dereference(object).ok().and_then(|(_, o)| o.as_dict().ok())
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

    fn chain(edges: &[(u32, u32)]) -> BTreeMap<ObjectId, BTreeSet<ObjectId>> {
        let mut draws: BTreeMap<ObjectId, BTreeSet<ObjectId>> = BTreeMap::new();
        for &(from, to) in edges {
            draws.entry((from, 0)).or_default().insert((to, 0));
            draws.entry((to, 0)).or_default();
        }
        draws
    }

    fn deepest(draws: &BTreeMap<ObjectId, BTreeSet<ObjectId>>) -> Option<usize> {
        let mut depths = BTreeMap::new();
        draws
            .keys()
            .map(|&form| depth(form, draws, &mut depths, &mut Vec::new()))
            .try_fold(0, |a, d| Some(a.max(d?)))
    }

    #[test]
    fn form_chains_are_bounded_and_cycles_refused() {
        assert_eq!(deepest(&chain(&[(1, 2), (2, 3), (1, 3)])), Some(3));
        assert_eq!(deepest(&chain(&[(1, 2), (2, 3), (3, 1)])), None);
        assert_eq!(deepest(&chain(&[(1, 1)])), None);
        let long: Vec<(u32, u32)> = (1..MAX_FORM_DEPTH as u32).map(|i| (i, i + 1)).collect();
        assert_eq!(deepest(&chain(&long)), Some(MAX_FORM_DEPTH));
        let too_long: Vec<(u32, u32)> = (1..=MAX_FORM_DEPTH as u32).map(|i| (i, i + 1)).collect();
        assert_eq!(deepest(&chain(&too_long)), None);
        // A diamond drawn many times is computed once per form.
        let wide: Vec<(u32, u32)> = (2..200).flat_map(|i| [(1, i), (i, 500)]).collect();
        assert_eq!(deepest(&chain(&wide)), Some(3));
    }

    #[test]
    fn data_that_is_not_flate_counts_nothing() {
        let limits = IngestLimits { max_uncompressed_bytes: 10, ..IngestLimits::default() };
        assert!(check("a.pdf", &pdf_with_stream(&[0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3]), &limits).is_ok());
        assert!(check("a.pdf", b"%PDF-1.4 no streams at all, endstream", &limits).is_ok());
    }
}

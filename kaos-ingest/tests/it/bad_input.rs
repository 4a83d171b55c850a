//! Bad input: each case is a typed error naming the file, never a panic.

use std::fs::File;

use kaos_ingest::{Format, IngestError, IngestLimits, IngestOptions, ingest, ingest_file};
use proptest::prelude::*;

use crate::{
    DOCX_TYPES, XLSX_TYPES, data, docx_with_body, err, options, with_limits, xlsx_with_sheet, zip_of,
};

#[test]
fn binary_data_is_unsupported() {
    let bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let error = err("blob.txt", &bytes, &options());
    assert!(
        matches!(&error, IngestError::Unsupported { detected, .. } if detected == "binary data"),
        "{error}"
    );
}

#[test]
fn known_binary_formats_are_named_whatever_the_extension() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    let error = err("photo.pdf", png, &options());
    assert!(
        matches!(&error, IngestError::Unsupported { detected, .. } if detected == "image/png"),
        "{error}"
    );
    let gzip = b"\x1f\x8b\x08\0\0\0\0\0\0\x03\x03\0\0\0\0\0\0\0\0\0";
    let error = err("notes.md", gzip, &options());
    assert!(
        matches!(&error, IngestError::Unsupported { detected, .. } if detected == "application/gzip"),
        "{error}"
    );
}

#[test]
fn other_zip_archives_and_pptx_are_unsupported() {
    let plain = zip_of(&[("a.txt", b"hello")]);
    let error = err("archive.zip", &plain, &options());
    assert!(
        matches!(&error, IngestError::Unsupported { detected, .. } if detected == "ZIP archive"),
        "{error}"
    );
    let types =
        DOCX_TYPES.replace("wordprocessingml.document.main+xml", "presentationml.presentation.main+xml");
    let pptx = zip_of(&[("[Content_Types].xml", types.as_bytes()), ("ppt/presentation.xml", b"<p/>")]);
    let error = err("slides.pptx", &pptx, &options());
    assert!(error.to_string().contains("PowerPoint"), "{error}");
}

#[test]
fn text_that_is_not_utf8() {
    let error = err("latin1.txt", b"Caf\xe9 au lait", &options());
    assert!(matches!(error, IngestError::NotUtf8 { offset: 3, .. }), "{error}");
    let utf16: Vec<u8> =
        [0xFF, 0xFE].into_iter().chain("Hello".encode_utf16().flat_map(u16::to_le_bytes)).collect();
    let error = err("utf16.txt", &utf16, &options());
    assert!(matches!(error, IngestError::NotUtf8 { offset: 0, .. }), "{error}");
    // Named .csv: still checked.
    assert!(matches!(err("t.csv", b"a,\xff\n", &options()), IngestError::NotUtf8 { offset: 2, .. }));
}

#[test]
fn a_corrupt_pdf() {
    let error = err("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage", &options());
    assert!(matches!(error, IngestError::Corrupt { format: Format::Pdf, .. }), "{error}");
}

#[test]
fn a_truncated_pdf() {
    let pdf = data("bridge.pdf");
    let error = err("cut.pdf", &pdf[..pdf.len() / 3], &options());
    assert!(matches!(error, IngestError::Corrupt { format: Format::Pdf, .. }), "{error}");
}

#[test]
fn a_pdf_whose_form_draws_itself_is_corrupt_not_a_stack_overflow() {
    // A 700-byte file that aborted the whole process before the check.
    let error = err("loop.pdf", &crate::pdf_with_form("/X1 Do"), &options());
    assert!(matches!(error, IngestError::Corrupt { format: Format::Pdf, .. }), "{error}");
    assert!(error.to_string().contains("form XObjects draw one another in a cycle"), "{error}");
    // The same through inherited resources: the form has none of its own.
    let error = err("inherit.pdf", &crate::pdf_with_form_resources("/X1 Do", ""), &options());
    assert!(matches!(error, IngestError::Corrupt { format: Format::Pdf, .. }), "{error}");
}

#[test]
fn a_scanned_pdf_has_no_text_layer() {
    let error = err("scan.pdf", &data("scanned.pdf"), &options());
    assert!(matches!(error, IngestError::NoTextLayer { pages: 1, .. }), "{error}");
    assert!(error.to_string().contains("no text layer"), "{error}");
}

#[test]
fn a_corrupt_docx() {
    let docx = data("bridge.docx");
    // The central directory is at the end: a truncated file is no readable archive.
    let error = err("cut.docx", &docx[..docx.len() / 2], &options());
    assert!(matches!(error, IngestError::Corrupt { format: Format::Docx, .. }), "{error}");
    // Without an Office extension it is an unreadable ZIP archive.
    let error = err("cut", &docx[..docx.len() / 2], &options());
    assert!(matches!(error, IngestError::Unsupported { .. }), "{error}");
    // A readable archive whose main part is not XML.
    let error = err("bad.docx", &docx_with_body("<w:p><w:t>unclosed</w:p>"), &options());
    assert!(matches!(error, IngestError::Corrupt { format: Format::Docx, .. }), "{error}");
    // The main part is missing.
    let error = err("empty.docx", &zip_of(&[("[Content_Types].xml", DOCX_TYPES.as_bytes())]), &options());
    assert!(error.to_string().contains("main part word/document.xml is missing"), "{error}");
}

#[test]
fn a_corrupt_xlsx() {
    let xlsx = zip_of(&[("[Content_Types].xml", XLSX_TYPES.as_bytes()), ("xl/workbook.xml", b"<workbook")]);
    let error = err("bad.xlsx", &xlsx, &options());
    assert!(matches!(error, IngestError::Corrupt { format: Format::Xlsx, .. }), "{error}");
}

#[test]
fn an_xlsx_declaring_billions_of_shared_strings_is_corrupt_not_an_abort() {
    // calamine reserves room for `uniqueCount` strings up front: 10^10 of them would be a
    // 240 GB allocation, which aborts the process rather than panicking.
    let strings = r#"<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" uniqueCount="10000000000"><si><t>x</t></si></sst>"#;
    let file = xlsx_with_sheet("A1", r#"<row r="1"><c r="A1" t="s"><v>0</v></c></row>"#, Some(strings));
    let error = err("lying.xlsx", &file, &options());
    assert!(matches!(error, IngestError::Corrupt { format: Format::Xlsx, .. }), "{error}");
    assert!(error.to_string().contains("declares 10000000000 shared strings"), "{error}");
}

#[test]
fn invalid_json_named_json_is_corrupt() {
    let error = err("data.json", br#"{"bridge": [1932,"#, &options());
    assert!(matches!(error, IngestError::Corrupt { format: Format::Json, .. }), "{error}");
}

#[test]
fn a_file_over_the_size_limit_is_refused_before_parsing() {
    let limits = IngestLimits { max_file_bytes: 100, ..IngestLimits::default() };
    // Not even sniffed: the bytes would be an unsupported format.
    let error = err("big.bin", &[0u8; 101], &with_limits(limits.clone()));
    assert!(matches!(error, IngestError::TooLarge { size: 101, limit: 100, .. }), "{error}");
    assert!(ingest("small.txt", "s", &[b'a'; 100], &with_limits(limits)).is_ok());
}

#[test]
fn a_1_gib_file_is_refused_without_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.txt");
    // Sparse: takes no disk space, and would take seconds and a gigabyte of memory to read.
    File::create(&path).unwrap().set_len(1 << 30).unwrap();
    let error = ingest_file(&path, &options()).unwrap_err();
    assert!(matches!(error, IngestError::TooLarge { size: 1_073_741_824, .. }), "{error}");
    assert!(error.to_string().starts_with("huge.txt: "), "{error}");
}

#[test]
fn a_missing_file_and_a_directory_are_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let error = ingest_file(&dir.path().join("absent.pdf"), &options()).unwrap_err();
    assert!(matches!(error, IngestError::Io { ref name, .. } if name == "absent.pdf"), "{error}");
    assert!(matches!(ingest_file(dir.path(), &options()), Err(IngestError::Io { .. })));
}

/// One entry of `size` zero bytes: compresses about a thousand to one.
fn zeros(size: usize) -> Vec<u8> {
    vec![0u8; size]
}

#[test]
fn a_zip_bomb_inside_a_docx_is_stopped_at_the_uncompressed_limit() {
    let limits = IngestLimits { max_uncompressed_bytes: 1 << 20, ..IngestLimits::default() };
    let body = r#"<?xml version="1.0"?><w:document xmlns:w="w"><w:body><w:p><w:r><w:t>Hi</w:t></w:r></w:p></w:body></w:document>"#;
    let bomb = zip_of(&[
        ("[Content_Types].xml", DOCX_TYPES.as_bytes()),
        ("word/document.xml", body.as_bytes()),
        ("word/media/padding.bin", &zeros(4 << 20)),
    ]);
    assert!(bomb.len() < 64 << 10, "the bomb is small: {} bytes", bomb.len());
    let error = err("bomb.docx", &bomb, &with_limits(limits));
    assert!(matches!(error, IngestError::DecompressionLimit { format: Format::Docx, .. }), "{error}");
    assert!(error.to_string().contains("more than 1048576 bytes uncompressed"), "{error}");
    // Under the default limits the same file is fine.
    assert_eq!(crate::ok("bomb.docx", &bomb).chunks[0].text, "Hi");
}

#[test]
fn a_zip_bomb_inside_an_xlsx_is_stopped_before_the_parser_sees_it() {
    let limits = IngestLimits { max_uncompressed_bytes: 1 << 20, ..IngestLimits::default() };
    let bomb = zip_of(&[
        ("[Content_Types].xml", XLSX_TYPES.as_bytes()),
        ("xl/worksheets/sheet1.xml", &zeros(4 << 20)),
    ]);
    let error = err("bomb.xlsx", &bomb, &with_limits(limits));
    assert!(matches!(error, IngestError::DecompressionLimit { format: Format::Xlsx, .. }), "{error}");
}

#[test]
fn a_pdf_whose_streams_inflate_over_the_limit_is_stopped_before_the_parser() {
    // groff's PDF: its page and font streams inflate to some KiB.
    let limits = IngestLimits { max_uncompressed_bytes: 1024, ..IngestLimits::default() };
    let error = err("bridge.pdf", &data("bridge.pdf"), &with_limits(limits));
    assert!(matches!(error, IngestError::DecompressionLimit { format: Format::Pdf, .. }), "{error}");
    assert!(error.to_string().contains("inflate to more than 1024 bytes"), "{error}");
    // A Flate bomb: 16 MiB of zeros in a 16 KiB stream, against a 1 MiB limit (the default,
    // 256 MiB, would take a minute to build in a debug test).
    let limits = IngestLimits { max_uncompressed_bytes: 1 << 20, ..IngestLimits::default() };
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut encoder, &zeros(16 << 20)).unwrap();
    let stream = encoder.finish().unwrap();
    let mut bomb = format!("%PDF-1.4\n1 0 obj << /Length {} /Filter /FlateDecode >>\nstream\n", stream.len())
        .into_bytes();
    bomb.extend_from_slice(&stream);
    bomb.extend_from_slice(b"\nendstream\nendobj\n%%EOF\n");
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    let error = err("bomb.pdf", &bomb, &with_limits(limits));
    assert!(matches!(error, IngestError::DecompressionLimit { format: Format::Pdf, .. }), "{error}");
}

#[test]
fn html_nested_too_deep_is_refused_before_the_quadratic_parser() {
    // 100 000 nested divs (1.1 MiB) took html5ever 390 s in a debug build.
    let deep =
        format!("<html><body>{}deep{}</body></html>", "<div>".repeat(100_000), "</div>".repeat(100_000));
    let error = err("deep.html", deep.as_bytes(), &options());
    assert!(matches!(error, IngestError::Corrupt { format: Format::Html, .. }), "{error}");
    assert!(error.to_string().contains("nested 100000 deep, over the limit of 512"), "{error}");
    // At the limit it is read.
    let ok = format!("<div>{}deep{}</div>", "<section>".repeat(511), "</section>".repeat(511));
    assert_eq!(crate::text(&crate::ok("ok.html", ok.as_bytes())), "deep");
}

#[test]
fn too_many_archive_entries() {
    let limits = IngestLimits { max_archive_entries: 10, ..IngestLimits::default() };
    let names: Vec<String> = (0..20).map(|i| format!("word/part{i}.xml")).collect();
    let mut entries: Vec<(&str, &[u8])> = vec![("[Content_Types].xml", DOCX_TYPES.as_bytes())];
    entries.extend(names.iter().map(|n| (n.as_str(), &b"<x/>"[..])));
    let error = err("many.docx", &zip_of(&entries), &with_limits(limits));
    assert!(matches!(error, IngestError::DecompressionLimit { .. }), "{error}");
    assert!(error.to_string().contains("21 entries, limit 10"), "{error}");
}

#[test]
fn a_file_without_text_is_empty() {
    assert!(matches!(
        err("blank.txt", b"  \n\n\t\n", &options()),
        IngestError::Empty { format: Format::Text, .. }
    ));
    let doc = docx_with_body("<w:p></w:p>");
    assert!(matches!(err("blank.docx", &doc, &options()), IngestError::Empty { format: Format::Docx, .. }));
    assert!(matches!(err("none.txt", b"", &options()), IngestError::Empty { .. }));
}

#[test]
fn too_many_chunks() {
    let options =
        IngestOptions { chunk_tokens: 2, limits: IngestLimits { max_chunks: 3, ..IngestLimits::default() } };
    let error = err("long.txt", b"One.\n\nTwo.\n\nThree.\n\nFour.\n\nFive.", &options);
    assert!(matches!(error, IngestError::TooManyChunks { chunks: 5, limit: 3, .. }), "{error}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Damaged real documents never panic the caller: whatever the parser makes of them, the
    /// answer is a document or a typed error naming the file.
    #[test]
    fn damaged_documents_never_panic(
        file in prop::sample::select(&["bridge.pdf", "bridge.docx", "bridges.xlsx"][..]),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = data(file);
        for (at, byte) in flips {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        if cut.index(4) == 0 {
            bytes.truncate(cut.index(bytes.len()));
        }
        match ingest(file, file, &bytes, &options()) {
            Ok(doc) => prop_assert!(!doc.chunks.is_empty()),
            Err(error) => prop_assert_eq!(error.name(), file),
        }
    }

    /// Arbitrary bytes never panic either.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), name in "[a-z]{1,8}\\.(txt|pdf|docx|xlsx|csv|json|eml|html|md)") {
        match ingest(&name, &name, &bytes, &options()) {
            Ok(doc) => prop_assert!(!doc.chunks.is_empty()),
            Err(error) => prop_assert_eq!(error.name(), name.as_str()),
        }
    }
}

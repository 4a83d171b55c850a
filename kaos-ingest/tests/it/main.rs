//! Integration tests of `kaos-ingest`, through its public API only: every format on files from
//! real writers (`tests/data/`) or generated here, every bad-input case, and the chunks'
//! metadata.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bad_input;
mod chunks;
mod formats;

use std::io::Write as _;
use std::path::PathBuf;

use kaos_ingest::{Document, IngestError, IngestLimits, IngestOptions, ingest};
use zip::write::SimpleFileOptions;

/// A checked-in test document.
pub fn data(file: &str) -> Vec<u8> {
    std::fs::read(data_path(file)).unwrap()
}

pub fn data_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(file)
}

pub fn options() -> IngestOptions {
    IngestOptions::default()
}

pub fn with_limits(limits: IngestLimits) -> IngestOptions {
    IngestOptions { limits, ..IngestOptions::default() }
}

/// Ingests with the default options; panics with the error if it fails.
pub fn ok(name: &str, bytes: &[u8]) -> Document {
    ingest(name, &format!("test/{name}"), bytes, &options()).unwrap_or_else(|e| panic!("{e}"))
}

/// Ingests with `options`, expecting an error, and checks that its message names the file.
pub fn err(name: &str, bytes: &[u8], options: &IngestOptions) -> IngestError {
    let error = ingest(name, name, bytes, options).expect_err("ingest should fail");
    assert_eq!(error.name(), name);
    assert!(error.to_string().starts_with(&format!("{name}: ")), "{error}");
    error
}

/// All chunks' text, joined by blank lines.
pub fn text(doc: &Document) -> String {
    doc.chunks.iter().map(|c| c.text.as_str()).collect::<Vec<_>>().join("\n\n")
}

/// A ZIP archive of `entries`, deflated.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        writer.start_file(*name, options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

pub const DOCX_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;

pub const XLSX_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>"#;

/// A minimal DOCX whose body is `body` (WordprocessingML inside `<w:body>`).
pub fn docx_with_body(body: &str) -> Vec<u8> {
    let document = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
    );
    zip_of(&[("[Content_Types].xml", DOCX_TYPES.as_bytes()), ("word/document.xml", document.as_bytes())])
}

/// A minimal XLSX with one sheet `S` whose `<sheetData>` and extent are given, and optionally
/// a shared-strings part.
pub fn xlsx_with_sheet(dimension: &str, sheet_data: &str, shared_strings: Option<&str>) -> Vec<u8> {
    let package_rels = r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#;
    let workbook = r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>"#;
    let workbook_rels = r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#;
    let sheet = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><dimension ref="{dimension}"/><sheetData>{sheet_data}</sheetData></worksheet>"#
    );
    let mut entries: Vec<(&str, &[u8])> = vec![
        ("[Content_Types].xml", XLSX_TYPES.as_bytes()),
        ("_rels/.rels", package_rels.as_bytes()),
        ("xl/workbook.xml", workbook.as_bytes()),
        ("xl/_rels/workbook.xml.rels", workbook_rels.as_bytes()),
        ("xl/worksheets/sheet1.xml", sheet.as_bytes()),
    ];
    if let Some(strings) = shared_strings {
        entries.push(("xl/sharedStrings.xml", strings.as_bytes()));
    }
    zip_of(&entries)
}

/// A one-page PDF with a correct cross-reference table: `objects[i]` is object `i + 1`'s body
/// (catalog first).
pub fn pdf_of(objects: &[&str]) -> Vec<u8> {
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (index, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", index + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1)
            .as_bytes(),
    );
    pdf
}

/// A PDF page drawing the form XObject 4, whose content is `form` and whose resources name
/// itself `/X1`.
pub fn pdf_with_form(form: &str) -> Vec<u8> {
    pdf_with_form_resources(form, "/Resources << /Font << /F1 6 0 R >> /XObject << /X1 4 0 R >> >>")
}

/// As [`pdf_with_form`], with the form's `/Resources` entry given (empty: it inherits the
/// page's, where `/X1` is the form itself).
pub fn pdf_with_form_resources(form: &str, resources: &str) -> Vec<u8> {
    let page = "BT /F1 12 Tf 72 720 Td (Hello from the page.) Tj ET /X1 Do";
    pdf_of(&[
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 6 0 R >> /XObject << /X1 4 0 R >> >> /Contents 5 0 R >>",
        &format!(
            "<< /Type /XObject /Subtype /Form /BBox [0 0 10 10] {resources} /Length {} >>\nstream\n{form}\nendstream",
            form.len()
        ),
        &format!("<< /Length {} >>\nstream\n{page}\nendstream", page.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ])
}

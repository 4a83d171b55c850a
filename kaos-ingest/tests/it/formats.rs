//! Every format: the text that comes out, and where it came from.

use kaos_ingest::{Format, PageRange};

use crate::{data, docx_with_body, ok, pdf_with_form, text, xlsx_with_sheet};

#[test]
fn plain_text_is_kept_verbatim_and_byte_ranges_point_into_the_file() {
    let file = "The bridge opened in 1932.\n\nTolls were abolished in 1990.\n";
    let doc = ok("notes.txt", file.as_bytes());
    assert_eq!(doc.format, Format::Text);
    assert_eq!(doc.pages, None);
    let chunk = &doc.chunks[0];
    assert_eq!(&file[chunk.byte_range.clone()], chunk.text);
    assert_eq!(chunk.text, file.trim_end());
}

#[test]
fn markdown_is_told_from_text_by_its_extension_only() {
    let file = data("bridge.md");
    assert_eq!(ok("bridge.md", &file).format, Format::Markdown);
    assert_eq!(ok("bridge", &file).format, Format::Text);
    assert!(text(&ok("bridge.md", &file)).contains("| 1932 | Opened |"));
}

#[test]
fn a_utf8_byte_order_mark_is_dropped() {
    let doc = ok("bom.txt", b"\xEF\xBB\xBFHello.");
    assert_eq!(doc.chunks[0].text, "Hello.");
}

#[test]
fn html_keeps_readable_text_and_drops_scripts_and_styles() {
    let page = br#"<!DOCTYPE html>
<html><head><title>Bridges</title><style>p { color: red }</style>
<script>var secret = "do not index";</script></head>
<body><h1>The Old Bridge</h1>
<p>The bridge opened in <b>1932</b> after <a href="/history">four years</a> of work.</p>
<table><tr><td>Tolls</td><td>1990</td></tr></table>
<noscript>Enable JavaScript</noscript>
<script>alert("hidden")</script></body></html>"#;
    let doc = ok("bridge.html", page);
    assert_eq!(doc.format, Format::Html);
    let text = text(&doc);
    assert!(text.contains("The Old Bridge"), "{text}");
    assert!(text.contains("The bridge opened in 1932 after four years of work."), "{text}");
    assert!(text.contains("Tolls") && text.contains("1990"), "{text}");
    for hidden in ["secret", "do not index", "color", "alert", "hidden", "/history"] {
        assert!(!text.contains(hidden), "{hidden:?} in {text}");
    }
}

#[test]
fn html_is_sniffed_whatever_the_extension() {
    assert_eq!(ok("page.txt", b"<html><body><p>Hi there.</p></body></html>").format, Format::Html);
    assert_eq!(ok("page", b"  <p>Hi there.</p>").format, Format::Html);
}

#[test]
fn pdf_text_layer_with_page_numbers() {
    let doc = ok("bridge.pdf", &data("bridge.pdf"));
    assert_eq!(doc.format, Format::Pdf);
    assert_eq!(doc.pages, Some(2));
    let opened = doc.chunks.iter().find(|c| c.text.contains("opened in 1932")).expect("page 1 text");
    assert_eq!(opened.pages, Some(PageRange { first: 1, last: 1 }));
    assert_eq!(opened.location(), "bridge.pdf, p. 1");
    let tolls = doc.chunks.iter().find(|c| c.text.contains("abolished in 1990")).expect("page 2 text");
    assert_eq!(tolls.pages, Some(PageRange { first: 2, last: 2 }));
    assert_eq!(tolls.metadata()["page_first"], 2);
}

#[test]
fn pdf_text_in_a_form_xobject_is_read() {
    let doc = ok("form.pdf", &pdf_with_form("BT /F1 12 Tf 72 700 Td (Hello from the form.) Tj ET"));
    let text = text(&doc);
    assert!(text.contains("Hello from the page."), "{text}");
    assert!(text.contains("Hello from the form."), "{text}");
}

#[test]
fn pdf_is_sniffed_by_content_not_name() {
    assert_eq!(ok("bridge.bin", &data("bridge.pdf")).format, Format::Pdf);
}

#[test]
fn docx_from_a_real_writer_paragraphs_and_tables() {
    let doc = ok("bridge.docx", &data("bridge.docx"));
    assert_eq!(doc.format, Format::Docx);
    let text = text(&doc);
    assert!(text.contains("The Old Bridge"), "{text}");
    assert!(text.contains("The bridge opened in 1932 after four years of work."), "{text}");
    assert!(text.contains("Year | Event\n1932 | Opened\n1990 | Tolls abolished"), "{text}");
    // Sniffed by content: the same bytes under another name are still a DOCX.
    assert_eq!(ok("upload", &data("bridge.docx")).format, Format::Docx);
}

#[test]
fn docx_main_part_is_found_through_the_content_types() {
    let doc = docx_with_body(r#"<w:p><w:r><w:t>Fish &amp; chips &#8212; 5&#37;</w:t></w:r></w:p>"#);
    assert_eq!(text(&ok("menu.docx", &doc)), "Fish & chips — 5%");
}

#[test]
fn xlsx_from_a_real_writer_as_tables_of_text() {
    let doc = ok("bridges.xlsx", &data("bridges.xlsx"));
    assert_eq!(doc.format, Format::Xlsx);
    let text = text(&doc);
    assert!(text.contains("Sheet: Bridges\nName | Opened | Length (m) | Opened on\n"), "{text}");
    assert!(text.contains("Old Bridge | 1932 | 310.5 | 1932-05-14\n"), "{text}");
    assert!(text.contains("New Bridge | 1998 | 420 | 1998-09-01 10:30:00"), "{text}");
    assert!(text.contains("Sheet: Tolls\nBridge | Abolished\nOld Bridge | 1990"), "{text}");
}

#[test]
fn xlsx_rows_keep_their_columns_and_shared_strings() {
    let strings = r#"<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="2" uniqueCount="2"><si><t>Name</t></si><si><t>Old Bridge</t></si></sst>"#;
    let rows = r#"<row r="2"><c r="B2" t="s"><v>0</v></c><c r="D2"><v>1932</v></c></row>
        <row r="3"><c r="B3" t="s"><v>1</v></c><c r="C3" t="inlineStr"><is><t>stone</t></is></c><c r="D3"><v>310.5</v></c></row>"#;
    let doc = ok("t.xlsx", &xlsx_with_sheet("B2:D3", rows, Some(strings)));
    assert_eq!(text(&doc), "Sheet: S\nName |  | 1932\nOld Bridge | stone | 310.5");
}

#[test]
fn a_sparse_xlsx_spanning_the_whole_sheet_is_read_cell_by_cell() {
    // A range over A1:XFD1048576 would be 17 billion cells; the file is under 1 KiB.
    let rows = r#"<row r="1"><c r="A1" t="inlineStr"><is><t>first</t></is></c></row>
        <row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>last</t></is></c></row>"#;
    let file = xlsx_with_sheet("A1:XFD1048576", rows, None);
    assert!(file.len() < 2048, "{}", file.len());
    assert_eq!(text(&ok("sparse.xlsx", &file)), "Sheet: S\nfirst\nlast");
}

#[test]
fn csv_and_tsv_as_tables_of_text() {
    let doc = ok("bridges.csv", b"name,opened\n\"Old Bridge, east span\",1932\n\nNew Bridge,1998\n");
    assert_eq!(doc.format, Format::Csv);
    assert_eq!(text(&doc), "name | opened\nOld Bridge, east span | 1932\nNew Bridge | 1998");
    assert_eq!(text(&ok("bridges.tsv", b"name\topened\nOld\t1932\n")), "name | opened\nOld | 1932");
}

#[test]
fn json_is_validated_and_pretty_printed() {
    let doc = ok("bridge.json", br#"{"bridge":{"name":"Old Bridge","opened":1932,"tolls":[1932,1990]}}"#);
    assert_eq!(doc.format, Format::Json);
    let text = text(&doc);
    assert!(text.contains(r#""opened": 1932"#), "{text}");
    assert!(text.contains(r#""name": "Old Bridge""#), "{text}");
    assert!(text.lines().count() > 5, "{text}");
}

#[test]
fn eml_headers_and_text_body() {
    let mail = "From: Ada Lovelace <ada@example.com>\r\n\
To: bridges@example.com\r\n\
Subject: =?UTF-8?B?QnLDvGNrZSBvcGVuaW5n?=\r\n\
Date: Mon, 14 May 1932 10:00:00 +0000\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
The bridge opened today =E2=80=94 four years after work began.\r\n";
    let doc = ok("opening.eml", mail.as_bytes());
    assert_eq!(doc.format, Format::Eml);
    let text = text(&doc);
    assert!(text.contains("From: Ada Lovelace <ada@example.com>"), "{text}");
    assert!(text.contains("To: bridges@example.com"), "{text}");
    assert!(text.contains("Subject: Brücke opening"), "{text}");
    assert!(text.contains("Date: 1932-05-14T10:00:00Z"), "{text}");
    assert!(text.contains("The bridge opened today — four years after work began."), "{text}");
}

#[test]
fn eml_multipart_html_body_and_attachment_names() {
    let mail = "From: a@example.com\r\nTo: b@example.com\r\nSubject: Tolls\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
--XX\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<html><body><p>Tolls were <b>abolished</b> in 1990.</p><script>x()</script></body></html>\r\n\
--XX\r\nContent-Type: application/pdf; name=\"minutes.pdf\"\r\nContent-Disposition: attachment; filename=\"minutes.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n\
--XX--\r\n";
    let text = text(&ok("tolls", mail.as_bytes()));
    assert!(text.contains("Tolls were abolished in 1990."), "{text}");
    assert!(text.contains("Attachments (not read): minutes.pdf"), "{text}");
}

#[test]
fn eml_with_an_8bit_latin1_body_is_decoded_by_its_charset() {
    let mail = b"From: a@example.com\nTo: b@example.com\nSubject: Caf\xe9\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\nLe caf\xe9 du pont.\n";
    let doc = ok("cafe.eml", mail);
    assert_eq!(doc.format, Format::Eml);
    assert!(text(&doc).contains("Le café du pont."), "{}", text(&doc));
}

//! Text extraction, one function per [`Format`]. Each returns the document's text and, for
//! PDF, the byte range of every page in it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Cursor;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};

use calamine::{Data, Reader as _, Xlsx};
use mail_parser::{Address, MessageParser, MimeHeaders as _};
use quick_xml::Reader;
use quick_xml::events::Event;

use crate::error::IngestError;
use crate::sniff::{DOCX_MAIN, extension, strip_bom};
use crate::{Format, IngestLimits, htmlguard, pdfguard, zipguard};

/// A document's text.
#[derive(Debug, Default)]
pub(crate) struct Extracted {
    /// The readable text.
    pub text: String,
    /// For paged formats (PDF), the byte range in `text` of page 1, 2, …
    pub pages: Vec<Range<usize>>,
}

impl Extracted {
    fn text(text: String) -> Self {
        Self { text, pages: Vec::new() }
    }
}

/// The text of `bytes`, read as `format`.
pub(crate) fn extract(
    name: &str,
    bytes: &[u8],
    format: Format,
    limits: &IngestLimits,
) -> Result<Extracted, IngestError> {
    let corrupt = |reason: String| IngestError::Corrupt { name: name.to_owned(), format, reason };
    let extracted = match format {
        Format::Text | Format::Markdown => Extracted::text(utf8(name, bytes)?.to_owned()),
        Format::Html => {
            let text = utf8(name, bytes)?;
            let depth = htmlguard::max_depth(text);
            if depth > limits.max_html_depth {
                return Err(corrupt(format!(
                    "elements nested {depth} deep, over the limit of {}",
                    limits.max_html_depth
                )));
            }
            html(text).map(Extracted::text).map_err(corrupt)?
        }
        Format::Json => json(utf8(name, bytes)?).map(Extracted::text).map_err(corrupt)?,
        Format::Csv => {
            let tab = extension(name).as_deref() == Some("tsv");
            csv(utf8(name, bytes)?, tab).map(Extracted::text).map_err(corrupt)?
        }
        Format::Eml => guarded(|| eml(bytes)).map(Extracted::text).map_err(corrupt)?,
        Format::Pdf => {
            pdfguard::check(name, bytes, limits)?;
            pdfguard::check_forms(name, bytes)?;
            pdf(name, bytes)?
        }
        Format::Docx => Extracted::text(docx(name, bytes, limits)?),
        Format::Xlsx => Extracted::text(xlsx(name, bytes, limits)?),
    };
    if extracted.text.trim().is_empty() {
        return Err(IngestError::Empty { name: name.to_owned(), format });
    }
    Ok(extracted)
}

/// Runs a parser, turning a panic into an error: the parser crates are trusted to return
/// errors, but a malformed file must never take the caller down with it. (The panic hook still
/// runs, so a panic message may be printed on stderr.)
fn guarded<T>(parse: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(parse)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".to_owned());
        Err(format!("the parser failed on this file ({message})"))
    })
}

fn utf8<'a>(name: &str, bytes: &'a [u8]) -> Result<&'a str, IngestError> {
    std::str::from_utf8(strip_bom(bytes))
        .map_err(|e| IngestError::NotUtf8 { name: name.to_owned(), offset: e.valid_up_to() })
}

/// Readable text: block elements become paragraphs, links and emphasis keep their text only
/// (no Markdown-like markers, so quotes match the page as read), scripts, styles and other
/// non-rendered elements are dropped. Lines are wrapped at 200 columns.
fn html(text: &str) -> Result<String, String> {
    guarded(|| {
        html2text::config::with_decorator(html2text::render::TrivialDecorator::new())
            .no_table_borders()
            .no_link_wrapping()
            .allow_width_overflow()
            .string_from_read(text.as_bytes(), 200)
            .map_err(|e| e.to_string())
    })
    .map(|text| text.lines().map(str::trim_end).collect::<Vec<_>>().join("\n"))
}

/// Pretty-printed, so that chunks fall on line boundaries.
fn json(text: &str) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    serde_json::to_string_pretty(&value).map_err(|e| e.to_string())
}

/// One line per record, fields separated by ` | `.
fn csv(text: &str, tab: bool) -> Result<String, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(if tab { b'\t' } else { b',' })
        .from_reader(text.as_bytes());
    let mut out = String::new();
    for record in reader.records() {
        let record = record.map_err(|e| e.to_string())?;
        let fields: Vec<&str> = record.iter().map(str::trim).collect();
        if fields.iter().all(|f| f.is_empty()) {
            continue;
        }
        out.push_str(&fields.join(" | "));
        out.push('\n');
    }
    Ok(out)
}

/// From, To, Cc, Date and Subject, a blank line, then every text body (HTML bodies converted
/// to text by mail-parser) and the names of the attachments (which are not read).
fn eml(bytes: &[u8]) -> Result<String, String> {
    let message = MessageParser::default().parse(bytes).ok_or_else(|| "not an RFC 822 message".to_owned())?;
    let mut out = String::new();
    for (field, address) in [("From", message.from()), ("To", message.to()), ("Cc", message.cc())] {
        if let Some(address) = address {
            let _ = writeln!(out, "{field}: {}", addresses(address));
        }
    }
    if let Some(date) = message.date() {
        let _ = writeln!(out, "Date: {}", date.to_rfc3339());
    }
    if let Some(subject) = message.subject() {
        let _ = writeln!(out, "Subject: {subject}");
    }
    for index in 0..message.text_body_count() {
        if let Some(body) = message.body_text(index) {
            out.push('\n');
            out.push_str(body.trim_end());
            out.push('\n');
        }
    }
    let attachments: Vec<&str> = message.attachments().filter_map(|a| a.attachment_name()).collect();
    if !attachments.is_empty() {
        let _ = write!(out, "\nAttachments (not read): {}\n", attachments.join(", "));
    }
    Ok(out)
}

fn addresses(address: &Address<'_>) -> String {
    address
        .iter()
        .map(|addr| match (addr.name(), addr.address()) {
            (Some(name), Some(mail)) => format!("{name} <{mail}>"),
            (Some(only), None) | (None, Some(only)) => only.to_owned(),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text layer, page by page, pages separated by a blank line. No text on any page is
/// [`IngestError::NoTextLayer`].
fn pdf(name: &str, bytes: &[u8]) -> Result<Extracted, IngestError> {
    let pages = guarded(|| pdf_extract::extract_text_from_mem_by_pages(bytes).map_err(|e| e.to_string()))
        .map_err(|reason| IngestError::Corrupt { name: name.to_owned(), format: Format::Pdf, reason })?;
    if pages.is_empty() {
        return Err(IngestError::Corrupt {
            name: name.to_owned(),
            format: Format::Pdf,
            reason: "no readable page".to_owned(),
        });
    }
    if pages.iter().all(|page| page.trim().is_empty()) {
        return Err(IngestError::NoTextLayer { name: name.to_owned(), pages: pages.len() as u32 });
    }
    let mut out = Extracted::default();
    for page in &pages {
        if !out.text.is_empty() {
            out.text.push_str("\n\n");
        }
        let start = out.text.len();
        out.text.push_str(page.trim());
        out.pages.push(start..out.text.len());
    }
    Ok(out)
}

/// The main body: paragraphs separated by blank lines, table rows one per line with cells
/// separated by ` | `. Headers, footers, footnotes and comments are not read.
fn docx(name: &str, bytes: &[u8], limits: &IngestLimits) -> Result<String, IngestError> {
    let corrupt =
        |reason: String| IngestError::Corrupt { name: name.to_owned(), format: Format::Docx, reason };
    let mut archive = zipguard::open(bytes).map_err(|e| corrupt(e.to_string()))?;
    zipguard::check(name, Format::Docx, &mut archive, limits)?;
    let types = zipguard::read(name, Format::Docx, &mut archive, "[Content_Types].xml", limits)?
        .ok_or_else(|| corrupt("no [Content_Types].xml".to_owned()))?;
    let types = String::from_utf8(types).map_err(|e| corrupt(format!("[Content_Types].xml: {e}")))?;
    let main = main_part(&types).map_err(|e| corrupt(format!("[Content_Types].xml: {e}")))?;
    let xml = zipguard::read(name, Format::Docx, &mut archive, &main, limits)?
        .ok_or_else(|| corrupt(format!("the main part {main} is missing")))?;
    let xml = String::from_utf8(xml).map_err(|e| corrupt(format!("{main}: {e}")))?;
    wordprocessing_text(&xml).map_err(|e| corrupt(format!("{main}: {e}")))
}

/// The part name (without the leading `/`) whose content type is a Word main document.
fn main_part(content_types: &str) -> Result<String, String> {
    let mut reader = Reader::from_str(content_types);
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "Override" => {
                let mut part = None;
                let mut main = false;
                for attr in e.attributes() {
                    let attr = attr.map_err(|e| e.to_string())?;
                    match attr.key.local_name().as_ref() {
                        "PartName" => part = Some(attr.value.trim_start_matches('/').to_owned()),
                        "ContentType" => {
                            main = attr.value.ends_with(".main+xml")
                                && (attr.value.contains("wordprocessingml")
                                    || attr.value.contains("ms-word"));
                        }
                        _ => {}
                    }
                }
                if let (Some(part), true) = (part, main) {
                    return Ok(part);
                }
            }
            Event::Eof => return Err(format!("no part of type {DOCX_MAIN}")),
            _ => {}
        }
    }
}

/// The text of a WordprocessingML body.
fn wordprocessing_text(xml: &str) -> Result<String, String> {
    let mut reader = Reader::from_str(xml);
    let mut out = String::new();
    let mut in_text = false;
    // Nesting of tables (a cell may hold a table).
    let mut tables = 0usize;
    let mut cell = String::new();
    let mut row: Vec<String> = Vec::new();
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        let target = if tables > 0 { &mut cell } else { &mut out };
        match event {
            Event::Start(e) => match e.local_name().as_ref() {
                "t" => in_text = true,
                "tbl" => tables += 1,
                _ => {}
            },
            Event::Empty(e) => match e.local_name().as_ref() {
                "tab" => target.push('\t'),
                "br" | "cr" => target.push('\n'),
                _ => {}
            },
            Event::Text(t) if in_text => target.push_str(&t.xml10_content()),
            Event::CData(t) if in_text => target.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if in_text => {
                if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
                    target.push(c);
                } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&r) {
                    target.push_str(s);
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                "t" => in_text = false,
                "p" if tables > 0 && !cell.is_empty() && !cell.ends_with(' ') => cell.push(' '),
                "p" if tables > 0 => {}
                "p" => {
                    let trimmed = out.trim_end_matches([' ', '\t']).len();
                    out.truncate(trimmed);
                    out.push_str("\n\n");
                }
                "tc" => row.push(std::mem::take(&mut cell).split_whitespace().collect::<Vec<_>>().join(" ")),
                "tr" => {
                    let line = std::mem::take(&mut row).join(" | ");
                    if tables > 1 {
                        cell.push_str(&line);
                        cell.push(' ');
                    } else if !line.trim_matches([' ', '|']).is_empty() {
                        out.push_str(&line);
                        out.push('\n');
                    }
                }
                "tbl" => {
                    tables = tables.saturating_sub(1);
                    if tables == 0 {
                        out.push('\n');
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// Every sheet: its name on a line, then one line per row with cells separated by ` | `
/// (dates as `YYYY-MM-DD[ HH:MM:SS]`); sheets separated by blank lines.
///
/// Cells are streamed (calamine's cell reader) rather than read as a `Range`: a range is
/// allocated from the sheet's extent, so two cells at `A1` and `XFD1048576` in a 1 KiB file
/// would ask for hundreds of gigabytes. Empty cells between two cells of a row are kept as
/// empty fields when there are at most [`MAX_GAP`] of them, so columns stay aligned.
fn xlsx(name: &str, bytes: &[u8], limits: &IngestLimits) -> Result<String, IngestError> {
    let corrupt =
        |reason: String| IngestError::Corrupt { name: name.to_owned(), format: Format::Xlsx, reason };
    let mut archive = zipguard::open(bytes).map_err(|e| corrupt(e.to_string()))?;
    zipguard::check(name, Format::Xlsx, &mut archive, limits)?;
    check_shared_strings(name, &mut archive, limits)?;
    guarded(|| {
        let mut workbook = Xlsx::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
        let mut out = String::new();
        for sheet in workbook.sheet_names() {
            let mut rows: BTreeMap<u32, Vec<(u32, String)>> = BTreeMap::new();
            let mut reader =
                workbook.worksheet_cells_reader(&sheet).map_err(|e| format!("sheet {sheet}: {e}"))?;
            while let Some(cell) = reader.next_cell().map_err(|e| format!("sheet {sheet}: {e}"))? {
                let (row, column) = cell.get_position();
                let value = cell_text(&Data::from(cell.get_value().clone()));
                if !value.is_empty() {
                    rows.entry(row).or_default().push((column, value));
                }
            }
            let Some(first_column) = rows.values().flatten().map(|(column, _)| *column).min() else {
                continue;
            };
            if !out.is_empty() {
                out.push('\n');
            }
            let _ = writeln!(out, "Sheet: {sheet}");
            for cells in rows.values_mut() {
                cells.sort_by_key(|(column, _)| *column);
                let mut fields: Vec<&str> = Vec::new();
                let mut next = first_column;
                for (column, value) in cells.iter() {
                    let gap = column.saturating_sub(next) as usize;
                    if gap <= MAX_GAP {
                        fields.extend(std::iter::repeat_n("", gap));
                    }
                    fields.push(value);
                    next = column.saturating_add(1);
                }
                out.push_str(&fields.join(" | "));
                out.push('\n');
            }
        }
        Ok(out)
    })
    .map_err(corrupt)
}

/// Most empty fields written between two cells of a row.
const MAX_GAP: usize = 26;

/// calamine reserves room for as many shared strings as the `<sst uniqueCount>` attribute
/// declares, before reading any: a 1 KiB file declaring ten billion would abort the process
/// on the allocation. A shared string takes at least 5 bytes (`<si/>`), so a count above the
/// part's size / 5 is a lie.
fn check_shared_strings(
    name: &str,
    archive: &mut zipguard::Archive<'_>,
    limits: &IngestLimits,
) -> Result<(), IngestError> {
    let parts: Vec<String> = archive
        .file_names()
        .filter_map(Result::ok)
        .filter(|n| n.to_ascii_lowercase().ends_with("sharedstrings.xml"))
        .map(std::borrow::Cow::into_owned)
        .collect();
    for part in parts {
        let Some(xml) = zipguard::read(name, Format::Xlsx, archive, &part, limits)? else { continue };
        let mut reader = Reader::from_reader(xml.as_slice());
        let mut buf = Vec::new();
        let declared = loop {
            match reader.read_event_into(&mut buf) {
                Ok(Event::Start(e) | Event::Empty(e)) if e.local_name().as_ref() == "sst" => {
                    let mut most = 0u64;
                    for attr in e.attributes().flatten() {
                        if matches!(attr.key.local_name().as_ref(), "count" | "uniqueCount") {
                            most = most.max(attr.value.trim().parse::<u64>().unwrap_or(u64::MAX));
                        }
                    }
                    break most;
                }
                Ok(Event::Eof) | Err(_) => break 0,
                Ok(_) => buf.clear(),
            }
        };
        let possible = xml.len() as u64 / 5 + 1;
        if declared > possible {
            return Err(IngestError::Corrupt {
                name: name.to_owned(),
                format: Format::Xlsx,
                reason: format!("{part} declares {declared} shared strings in {} bytes", xml.len()),
            });
        }
    }
    Ok(())
}

fn cell_text(data: &Data) -> String {
    match data {
        Data::DateTime(date) if date.is_datetime() => {
            let (y, mo, d, h, mi, s, _) = date.to_ymd_hms_milli();
            if (h, mi, s) == (0, 0, 0) {
                format!("{y:04}-{mo:02}-{d:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
            }
        }
        Data::String(s) => s.split_whitespace().collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_paragraphs_tables_breaks_and_entities() {
        let xml = r#"<w:document xmlns:w="x"><w:body>
            <w:p><w:r><w:t>Fish &amp; chips</w:t></w:r><w:r><w:tab/><w:t xml:space="preserve"> at 5&#37;.</w:t></w:r></w:p>
            <w:p><w:r><w:t>Line one</w:t><w:br/><w:t>line two</w:t></w:r></w:p>
            <w:tbl><w:tr><w:tc><w:p><w:r><w:t>Year</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Event</w:t></w:r></w:p></w:tc></w:tr>
            <w:tr><w:tc><w:p><w:r><w:t>1932</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Opened</w:t></w:r></w:p><w:p><w:r><w:t>to traffic</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
            <w:p><w:r><w:instrText>PAGE</w:instrText><w:t>After</w:t></w:r></w:p>
        </w:body></w:document>"#;
        let text = wordprocessing_text(xml).unwrap();
        assert_eq!(
            text,
            "Fish & chips\t at 5%.\n\nLine one\nline two\n\nYear | Event\n1932 | Opened to traffic\n\nAfter\n\n"
        );
    }

    #[test]
    fn main_part_comes_from_the_content_types() {
        let types = format!(
            r#"<Types xmlns="t"><Default Extension="xml" ContentType="application/xml"/>
            <Override PartName="/word/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml"/>
            <Override PartName="/word/body.xml" ContentType="{DOCX_MAIN}"/></Types>"#
        );
        assert_eq!(main_part(&types).unwrap(), "word/body.xml");
        assert!(main_part("<Types/>").is_err());
    }

    #[test]
    fn csv_rows_become_lines_of_cells() {
        assert_eq!(csv("a, b,\"c, d\"\n\n1,2\n", false).unwrap(), "a | b | c, d\n1 | 2\n");
        assert_eq!(csv("a\tb\n", true).unwrap(), "a | b\n");
    }

    #[test]
    fn a_panicking_parser_is_an_error() {
        let result: Result<(), String> = guarded(|| panic!("boom"));
        assert_eq!(result.unwrap_err(), "the parser failed on this file (boom)");
    }
}

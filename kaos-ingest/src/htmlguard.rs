//! Bounding how deeply an HTML document nests before html5ever parses it: its tree builder
//! checks the stack of open elements on every tag, so parse time grows with the number of
//! tags times the depth (10 000 nested `<div>`s, 110 KiB, take seconds; 100 000 take minutes).
//! Browsers cap the depth their parser builds too (Chromium at 512).
//!
//! This is an estimate, not a parser: it counts start and end tags, skipping comments and the
//! raw text of `script`, `style` and the like, and ignoring void elements and elements whose
//! end tag is optional (`p`, `li`, `td`, …, which the parser closes by itself), so sloppy
//! but ordinary HTML does not look deep.

/// Elements that never have content.
const VOID: &[&str] = &[
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "img", "input", "keygen",
    "link", "meta", "param", "source", "track", "wbr",
];
/// Elements the parser closes implicitly (optional end tags), or that exist once.
const IMPLIED_END: &[&str] = &[
    "body", "caption", "colgroup", "dd", "dt", "head", "html", "li", "optgroup", "option", "p", "rp", "rt",
    "tbody", "td", "tfoot", "th", "thead", "tr",
];
/// Elements whose content is text up to their end tag.
const RAW_TEXT: &[&str] =
    &["iframe", "noembed", "noframes", "plaintext", "script", "style", "textarea", "title", "xmp"];

/// The estimated greatest nesting depth of `html`.
pub(crate) fn max_depth(html: &str) -> usize {
    let bytes = html.as_bytes();
    let (mut depth, mut max, mut at) = (0usize, 0usize, 0usize);
    while let Some(offset) = bytes[at..].iter().position(|&b| b == b'<') {
        at += offset + 1;
        if bytes[at..].starts_with(b"!--") {
            at = find(bytes, at + 3, b"-->").map_or(bytes.len(), |end| end + 3);
            continue;
        }
        let closing = bytes.get(at) == Some(&b'/');
        let name_start = at + usize::from(closing);
        let name_len = bytes[name_start..].iter().take_while(|b| b.is_ascii_alphanumeric()).count();
        if name_len == 0 || !bytes[name_start].is_ascii_alphabetic() {
            continue;
        }
        let name = html[name_start..name_start + name_len].to_ascii_lowercase();
        let Some(close) = find(bytes, name_start + name_len, b">") else { break };
        at = close + 1;
        let counted = !VOID.contains(&name.as_str()) && !IMPLIED_END.contains(&name.as_str());
        if closing {
            if counted {
                depth = depth.saturating_sub(1);
            }
        } else if RAW_TEXT.contains(&name.as_str()) {
            let end_tag = format!("</{name}");
            at = find_ignoring_case(bytes, at, end_tag.as_bytes()).unwrap_or(bytes.len());
        } else if counted && bytes[close - 1] != b'/' {
            depth += 1;
            max = max.max(depth);
        }
    }
    max
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| from + p)
}

fn find_ignoring_case(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes.get(from..)?.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle)).map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nesting_of_ordinary_elements() {
        assert_eq!(max_depth("<html><body><div><span>a</span></div><div>b</div></body></html>"), 2);
        assert_eq!(max_depth(&format!("{}x{}", "<DIV>".repeat(600), "</div>".repeat(600))), 600);
        assert_eq!(max_depth(&"<b>".repeat(50)), 50);
    }

    #[test]
    fn sloppy_but_ordinary_html_is_shallow() {
        let list = format!("<ul>{}</ul>", "<li>item".repeat(5000));
        assert_eq!(max_depth(&list), 1);
        let paragraphs = "<p>one<p>two<br><img src=x><hr/><input>".repeat(1000);
        assert_eq!(max_depth(&paragraphs), 0);
        let table = format!("<table>{}</table>", "<tr><td>a<td>b".repeat(1000));
        assert_eq!(max_depth(&table), 1);
    }

    #[test]
    fn comments_and_raw_text_are_skipped() {
        let html = format!(
            "<!-- {} --><script>if (a<b && c<d) {{ x = '<div>'; }}</SCRIPT><style>a<b{{}}</style><div>x</div>",
            "<div>".repeat(100)
        );
        assert_eq!(max_depth(&html), 1);
        assert_eq!(max_depth("a < b and 3<4, <3"), 0);
    }
}

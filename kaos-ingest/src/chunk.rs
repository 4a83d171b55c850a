//! Splitting text into chunks under a token size, on paragraph and sentence boundaries.
//!
//! A chunk is always a slice of the text (so its byte range points into it exactly) that
//! starts and ends on non-whitespace. Paragraphs (runs of non-blank lines) are packed greedily
//! into a chunk while the slice from the chunk's start to the paragraph's end stays within
//! the size; a paragraph larger than the size is cut at sentence boundaries (Unicode UAX #29,
//! where a line break also ends a sentence), a sentence larger than the size at word
//! boundaries, and a word larger than the size at character boundaries. Page boundaries are
//! hard: a chunk never spans two pages.

use std::ops::Range;

use unicode_segmentation::UnicodeSegmentation as _;

/// A fast token estimate: about four bytes of text per token, never zero for non-empty text.
/// The same estimate as `kaos_providers::estimate_tokens`, which session memory budgets with
/// by default (kept in step by a test).
pub fn estimate_tokens(text: &str) -> u64 {
    if text.is_empty() { 0 } else { (text.len() as u64).div_ceil(4) }
}

/// Splits `text` into chunks of at most `max_tokens` estimated tokens (at least 1), each a
/// byte range of `text`. `pages` are the byte ranges of the pages of a paged document (empty
/// for others); a chunk then lies within one page. Whitespace-only text gives no chunk.
pub fn chunk_ranges(text: &str, pages: &[Range<usize>], max_tokens: u64) -> Vec<Range<usize>> {
    let max_bytes = usize::try_from(max_tokens.max(1).saturating_mul(4)).unwrap_or(usize::MAX);
    let whole = 0..text.len();
    let segments = if pages.is_empty() { std::slice::from_ref(&whole) } else { pages };
    let mut chunks = Vec::new();
    for segment in segments {
        let mut current: Option<Range<usize>> = None;
        let mut atoms = Vec::new();
        for paragraph in paragraphs(text, segment.clone()) {
            atoms.clear();
            split_to_fit(text, paragraph, max_bytes, &mut atoms);
            for atom in atoms.drain(..) {
                current = match current {
                    Some(chunk) if atom.end - chunk.start <= max_bytes => Some(chunk.start..atom.end),
                    Some(chunk) => {
                        chunks.push(chunk);
                        Some(atom)
                    }
                    None => Some(atom),
                };
            }
        }
        chunks.extend(current);
    }
    chunks
}

/// The paragraphs of `text[range]`: maximal runs of non-blank lines, trimmed.
fn paragraphs(text: &str, range: Range<usize>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    let mut pos = range.start;
    for line in text[range.clone()].split_inclusive('\n') {
        let line_start = pos;
        pos += line.len();
        if line.trim().is_empty() {
            if let Some(start) = start.take() {
                out.extend(trimmed(text, start..line_start));
            }
        } else if start.is_none() {
            start = Some(line_start);
        }
    }
    if let Some(start) = start {
        out.extend(trimmed(text, start..range.end));
    }
    out
}

/// `range` as pieces of at most `max_bytes`: itself if it fits, else its sentences, words or
/// characters, each trimmed.
fn split_to_fit(text: &str, range: Range<usize>, max_bytes: usize, out: &mut Vec<Range<usize>>) {
    if range.len() <= max_bytes {
        out.push(range);
        return;
    }
    for (offset, sentence) in text[range.clone()].split_sentence_bound_indices() {
        let Some(sentence) = trimmed(text, range.start + offset..range.start + offset + sentence.len())
        else {
            continue;
        };
        if sentence.len() <= max_bytes {
            out.push(sentence);
            continue;
        }
        for (offset, word) in text[sentence.clone()].split_word_bound_indices() {
            let Some(word) = trimmed(text, sentence.start + offset..sentence.start + offset + word.len())
            else {
                continue;
            };
            // Words are packed here already, so that a long sentence is not one piece per word.
            match out.last_mut() {
                Some(last) if last.start >= sentence.start && word.end - last.start <= max_bytes => {
                    last.end = word.end;
                }
                _ if word.len() <= max_bytes => out.push(word),
                _ => hard_split(text, word, max_bytes, out),
            }
        }
    }
}

/// Cuts `range` at character boundaries into pieces of at most `max_bytes` (at least 4, the
/// longest UTF-8 character, so every piece holds at least one character).
fn hard_split(text: &str, range: Range<usize>, max_bytes: usize, out: &mut Vec<Range<usize>>) {
    let mut start = range.start;
    while start < range.end {
        let mut end = start.saturating_add(max_bytes).min(range.end);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        out.push(start..end);
        start = end;
    }
}

/// `range` without leading and trailing whitespace; `None` if nothing is left.
fn trimmed(text: &str, range: Range<usize>) -> Option<Range<usize>> {
    let slice = &text[range.clone()];
    let start = range.start + (slice.len() - slice.trim_start().len());
    let end = range.end - (slice.len() - slice.trim_end().len());
    (start < end).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn chunks(text: &str, max_tokens: u64) -> Vec<&str> {
        chunk_ranges(text, &[], max_tokens).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn paragraphs_are_packed_while_they_fit() {
        let text = "One two.\n\nThree four.\n\n\nFive six seven eight nine ten.";
        assert_eq!(chunks(text, 1000), vec![text]);
        // 32 bytes: the first two paragraphs (22 bytes with the blank line) fit together.
        assert_eq!(chunks(text, 8), vec!["One two.\n\nThree four.", "Five six seven eight nine ten."]);
    }

    #[test]
    fn a_long_paragraph_is_cut_at_sentences() {
        let text = "The bridge opened in 1932. Tolls were abolished in 1990. It is still in use.";
        let got = chunks(text, 8);
        assert_eq!(
            got,
            vec!["The bridge opened in 1932.", "Tolls were abolished in 1990.", "It is still in use."]
        );
    }

    #[test]
    fn a_long_sentence_is_cut_at_words_and_a_long_word_at_characters() {
        let text = "alpha beta gamma delta epsilon zeta eta theta";
        for chunk in chunks(text, 3) {
            assert!(chunk.len() <= 12, "{chunk:?}");
            assert!(!chunk.starts_with(' ') && !chunk.ends_with(' '));
        }
        assert_eq!(chunks(text, 3)[0], "alpha beta");
        // 4 bytes: two 2-byte characters, never half of one.
        let word = format!("{}x", "é".repeat(5));
        assert_eq!(chunks(&word, 1), vec!["éé", "éé", "éx"]);
    }

    #[test]
    fn pages_are_hard_boundaries() {
        let text = "Page one.\n\nPage two.";
        let pages = [0..9, 11..20];
        assert_eq!(chunk_ranges(text, &pages, 1000), vec![0..9, 11..20]);
    }

    #[test]
    fn crlf_blank_lines_separate_paragraphs() {
        let text = "First.\r\n\r\nSecond.\r\n";
        assert_eq!(chunks(text, 2), vec!["First.", "Second."]);
    }

    #[test]
    fn whitespace_gives_no_chunk() {
        assert!(chunks(" \n\n\t ", 10).is_empty());
        assert!(chunks("", 10).is_empty());
    }

    proptest! {
        /// Every chunk is within the size, trimmed, in order without overlap, and together the
        /// chunks cover every non-whitespace character of the text.
        #[test]
        fn chunks_fit_and_cover_the_text(text in "(\\PC|[ \n\t.!?]){0,400}", max_tokens in 1u64..40) {
            let ranges = chunk_ranges(&text, &[], max_tokens);
            let mut covered = vec![false; text.len()];
            let mut last_end = 0;
            for range in &ranges {
                let chunk = &text[range.clone()];
                prop_assert!(estimate_tokens(chunk) <= max_tokens, "{chunk:?} over {max_tokens}");
                prop_assert_eq!(chunk.trim(), chunk);
                prop_assert!(!chunk.is_empty());
                prop_assert!(range.start >= last_end);
                last_end = range.end;
                covered[range.clone()].iter_mut().for_each(|c| *c = true);
            }
            for (index, c) in text.char_indices() {
                prop_assert!(c.is_whitespace() || covered[index], "{c:?} at {index} not in a chunk");
            }
        }
    }
}

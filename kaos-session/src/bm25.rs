//! Okapi BM25 over section items: lexical relevance with no model. [`top_k`] scores a list of
//! documents from scratch; [`Index`] keeps a section's postings in step as items are added and
//! evicted, so a turn's search costs O(query terms + postings of those terms) rather than a pass
//! over every word held, with exactly the same ranking.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

const K1: f64 = 1.2;
/// Below this many occurrences of a term in a document, [`Index::top_k`] bounds the scores of
/// a term's postings (see there).
const BOUNDED_TF: u32 = 1 << 20;
const B: f64 = 0.75;

/// Lowercased alphanumeric words (Unicode-aware), the unit of matching.
pub fn terms(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase)
}

/// The positions of the `k` documents most relevant to `query`, best first (ties: earlier
/// document first). Documents with no query term score 0 and come last, in order, so a query
/// with no matching term degrades to "oldest first".
///
/// Cost: one pass over the documents' words, allocating only for a word that is not ASCII
/// (sections are searched on every turn, so this is on a turn's path).
pub fn top_k<'a>(query: &str, documents: impl ExactSizeIterator<Item = &'a str>, k: usize) -> Vec<usize> {
    let n = documents.len();
    let mut query_terms: Vec<String> = terms(query).collect();
    query_terms.sort();
    query_terms.dedup();
    let q = query_terms.len();
    // Term frequencies, document by document (`q` counts each), and document lengths.
    let mut tf: Vec<u32> = Vec::with_capacity(n * q);
    let mut lengths = Vec::with_capacity(n);
    let mut df = vec![0u32; q];
    let find = |word: &str| -> Option<usize> {
        if word.is_ascii() {
            query_terms.iter().position(|t| {
                t.len() == word.len() && t.bytes().zip(word.bytes()).all(|(t, w)| t == w.to_ascii_lowercase())
            })
        } else {
            let lower = word.to_lowercase();
            query_terms.iter().position(|t| *t == lower)
        }
    };
    for doc in documents {
        let at = tf.len();
        tf.resize(at + q, 0);
        let mut len = 0u32;
        for word in doc.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            len += 1;
            if let Some(i) = find(word) {
                tf[at + i] += 1;
            }
        }
        for (i, &count) in tf[at..].iter().enumerate() {
            if count > 0 {
                df[i] += 1;
            }
        }
        lengths.push(len);
    }
    let avg = (lengths.iter().map(|&l| f64::from(l)).sum::<f64>() / n.max(1) as f64).max(1.0);
    let idf: Vec<f64> = df
        .iter()
        .map(|&d| {
            let d = f64::from(d);
            ((n as f64 - d + 0.5) / (d + 0.5) + 1.0).ln()
        })
        .collect();
    let mut scored: Vec<(f64, usize)> = lengths
        .iter()
        .enumerate()
        .map(|(doc, &len)| {
            let norm = K1 * (1.0 - B + B * f64::from(len) / avg);
            let score = tf[doc * q..(doc + 1) * q]
                .iter()
                .zip(&idf)
                .filter(|(f, _)| **f > 0)
                .map(|(&f, idf)| {
                    let f = f64::from(f);
                    idf * f * (K1 + 1.0) / (f + norm)
                })
                .sum::<f64>();
            (score, doc)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, i)| i).collect()
}

/// A matching document's (score, id), ordered as [`top_k`] ranks documents: a better one
/// (higher score, or the same score and a lower id) is less, so a max-heap's top is the worst.
#[derive(Debug, Clone, Copy)]
struct Ranked(f64, u64);

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

/// The best `k` documents offered, offered in id order. The first `k` are kept as they come; a
/// heap whose top is the worst kept is made only when a later one must take a kept one's place.
/// A document offered later has a higher id, so it is kept only when it scores higher than the
/// worst kept (`floor`): most are turned away by one comparison.
struct Best {
    k: usize,
    kept: Vec<Ranked>,
    heap: BinaryHeap<Ranked>,
    floor: f64,
}

impl Best {
    fn new(k: usize) -> Self {
        Self { k, kept: Vec::with_capacity(k), heap: BinaryHeap::new(), floor: f64::NEG_INFINITY }
    }

    /// Whether a document scoring `score`, offered now, would not be kept.
    #[inline]
    fn rejects(&self, score: f64) -> bool {
        score.total_cmp(&self.floor).is_le() && self.full()
    }

    /// Whether `k` documents are kept: from now on a document must beat the worst of them.
    #[inline]
    fn full(&self) -> bool {
        self.kept.len() == self.k || !self.heap.is_empty()
    }

    /// Offers a document not [rejected](Best::rejects).
    fn offer(&mut self, score: f64, id: u64) {
        if self.heap.is_empty() && self.kept.len() < self.k {
            self.kept.push(Ranked(score, id));
            if self.kept.len() == self.k {
                self.floor =
                    self.kept.iter().map(|r| r.0).min_by(f64::total_cmp).unwrap_or(f64::NEG_INFINITY);
            }
            return;
        }
        if self.heap.is_empty() {
            self.heap = BinaryHeap::from(std::mem::take(&mut self.kept));
        }
        if let Some(mut worst) = self.heap.peek_mut() {
            *worst = Ranked(score, id);
        }
        self.floor = self.heap.peek().map_or(f64::NEG_INFINITY, |worst| worst.0);
    }

    /// The documents kept, best first.
    fn into_sorted(self) -> Vec<Ranked> {
        let mut kept = if self.heap.is_empty() { self.kept } else { self.heap.into_vec() };
        kept.sort_unstable();
        kept
    }
}

/// One document holding a term: its id, how often it holds the term, and its length in words.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Posting {
    id: u64,
    tf: u32,
    len: u32,
}

/// The documents holding one term, in id order, with what bounds their scores: no posting
/// holds the term more often than `max_tf` times, none is shorter than `min_len` words (and
/// how many postings are at each bound, so a removal rescans the list only when the last one
/// at a bound goes).
#[derive(Debug, Clone)]
struct Postings {
    list: VecDeque<Posting>,
    max_tf: u32,
    at_max_tf: usize,
    min_len: u32,
    at_min_len: usize,
}

impl Default for Postings {
    fn default() -> Self {
        Self { list: VecDeque::new(), max_tf: 0, at_max_tf: 0, min_len: u32::MAX, at_min_len: 0 }
    }
}

impl Postings {
    fn bound(&mut self, posting: Posting) {
        match posting.tf.cmp(&self.max_tf) {
            Ordering::Greater => (self.max_tf, self.at_max_tf) = (posting.tf, 1),
            Ordering::Equal => self.at_max_tf += 1,
            Ordering::Less => {}
        }
        match posting.len.cmp(&self.min_len) {
            Ordering::Less => (self.min_len, self.at_min_len) = (posting.len, 1),
            Ordering::Equal => self.at_min_len += 1,
            Ordering::Greater => {}
        }
    }

    /// Removes the posting at `at`, keeping the bounds exact.
    fn remove(&mut self, at: usize) {
        let Some(gone) = self.list.remove(at) else { return };
        let last_at_max = gone.tf == self.max_tf && self.at_max_tf == 1;
        let last_at_min = gone.len == self.min_len && self.at_min_len == 1;
        if last_at_max || last_at_min {
            let list = std::mem::take(&mut self.list);
            *self = Self::default();
            for &posting in &list {
                self.bound(posting);
            }
            self.list = list;
        } else {
            self.at_max_tf -= usize::from(gone.tf == self.max_tf);
            self.at_min_len -= usize::from(gone.len == self.min_len);
        }
    }
}

/// An incremental BM25 index over a section's items, keyed by item id: for every term, the
/// documents holding it (in id order), plus the number of documents and their total length.
/// [`Index::top_k`] ranks exactly as [`top_k`] over the same documents in the same order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Index {
    postings: foldhash::HashMap<Box<str>, Postings>,
    documents: usize,
    total_len: u64,
    /// Postings held, and bytes of the terms held (for [`Index::approx_heap_bytes`]).
    posting_count: usize,
    term_bytes: usize,
}

/// A document's distinct terms (lowercased) with their frequencies, and its length in words.
/// One list, sorted and merged in place (a short text costs one allocation).
fn document_terms(text: &str) -> (Vec<(Cow<'_, str>, u32)>, u32) {
    let mut counted: Vec<(Cow<'_, str>, u32)> = Vec::with_capacity(text.len() / 4 + 1);
    each_word(text, |word, lowercase| {
        counted.push((if lowercase { Cow::Borrowed(word) } else { Cow::Owned(word.to_lowercase()) }, 1));
    });
    let len = u32::try_from(counted.len()).unwrap_or(u32::MAX);
    counted.sort_unstable_by(|(a, _), (b, _)| a.as_ref().cmp(b.as_ref()));
    // `dedup_by` offers each word with the last one kept: an equal one adds its count to it.
    counted.dedup_by(|(word, count), (kept, total)| {
        let same = *word == *kept;
        if same {
            *total += *count;
        }
        same
    });
    (counted, len)
}

/// Whether `c` is in a block of punctuation, arrows or box drawing, where no character is a
/// letter or a digit: a quick answer for the non-ASCII characters a tool's output is full of
/// (`→` in every action), which `char::is_alphanumeric` looks up in its slow tables.
#[inline]
fn is_symbol(c: char) -> bool {
    matches!(c, '\u{2010}'..='\u{2027}' | '\u{2030}'..='\u{205E}' | '\u{2190}'..='\u{23FF}' | '\u{2500}'..='\u{25FF}')
}

/// Calls `f` with each word of `text` as [`terms`] splits it (runs of alphanumeric
/// characters), and whether the word is lowercase ASCII already. One pass over the bytes: a
/// character is decoded only where a byte is not ASCII.
fn each_word<'a>(text: &'a str, mut f: impl FnMut(&'a str, bool)) {
    let bytes = text.as_bytes();
    let (mut at, mut start, mut plain) = (0, None, true);
    while at < bytes.len() {
        let byte = bytes[at];
        let (alphanumeric, width, ascii_lower) = if byte.is_ascii() {
            (byte.is_ascii_alphanumeric(), 1, !byte.is_ascii_uppercase())
        } else {
            let c = text[at..].chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
            (!is_symbol(c) && c.is_alphanumeric(), c.len_utf8(), false)
        };
        if alphanumeric {
            if start.is_none() {
                (start, plain) = (Some(at), true);
            }
            plain &= ascii_lower;
        } else if let Some(from) = start.take() {
            f(&text[from..at], plain);
        }
        at += width;
    }
    if let Some(from) = start {
        f(&text[from..], plain);
    }
}

impl Index {
    /// An index of these documents, (id, text).
    pub(crate) fn of<'a>(documents: impl Iterator<Item = (u64, Cow<'a, str>)>) -> Self {
        let mut index = Self::default();
        for (id, text) in documents {
            index.add(id, &text);
        }
        index
    }

    /// Adds a document (ids are expected to grow, as item ids do; any order is kept right).
    pub(crate) fn add(&mut self, id: u64, text: &str) {
        let (terms, len) = document_terms(text);
        for (term, tf) in terms {
            let posting = Posting { id, tf, len };
            let list = match self.postings.get_mut(term.as_ref()) {
                Some(list) => list,
                None => {
                    self.term_bytes += term.len();
                    self.postings.entry(term.into_owned().into_boxed_str()).or_default()
                }
            };
            self.posting_count += 1;
            list.bound(posting);
            match list.list.back() {
                Some(last) if last.id >= id => {
                    let at = list.list.partition_point(|p| p.id < id);
                    list.list.insert(at, posting);
                }
                _ => list.list.push_back(posting),
            }
        }
        self.documents += 1;
        self.total_len += u64::from(len);
    }

    /// Removes a document added with this id and text.
    pub(crate) fn remove(&mut self, id: u64, text: &str) {
        let (terms, len) = document_terms(text);
        for (term, _) in terms {
            let Some(list) = self.postings.get_mut(term.as_ref()) else { continue };
            // Evictions usually take the oldest documents: look at the front first.
            let at = if list.list.front().is_some_and(|p| p.id == id) {
                Some(0)
            } else {
                list.list.binary_search_by_key(&id, |p| p.id).ok()
            };
            if let Some(at) = at {
                list.remove(at);
                self.posting_count -= 1;
            }
            if list.list.is_empty() {
                self.postings.remove(term.as_ref());
                self.term_bytes -= term.len();
            }
        }
        self.documents = self.documents.saturating_sub(1);
        self.total_len = self.total_len.saturating_sub(u64::from(len));
    }

    /// About how many heap bytes it holds: its table of terms as allocated, the terms, and
    /// the postings (not the lists' spare room). O(1).
    pub(crate) fn approx_heap_bytes(&self) -> usize {
        self.postings.capacity() * (std::mem::size_of::<(Box<str>, Postings)>() + 1)
            + self.term_bytes
            + self.posting_count * std::mem::size_of::<Posting>()
    }

    /// How many documents it holds.
    pub(crate) fn len(&self) -> usize {
        self.documents
    }

    /// The positions of the `k` documents most relevant to `query`, best first, exactly as
    /// [`top_k`] ranks the same documents in id order (ties go to the lower id, which is the
    /// earlier position); `position` maps an id to the document's position. Cost: the postings
    /// of the query's terms (a heap of the best `k` so far), and at most `2k` positions looked up.
    /// The postings are read only until no document left could be kept: once `k` are, a
    /// document must score above the worst of them, and no document scores above the bound of
    /// its terms' postings (their highest frequency, shortest length). So a term every document
    /// holds (an argument name in every tool call) costs `k` postings, not one per document.
    pub(crate) fn top_k(
        &self,
        query: &str,
        k: usize,
        mut position: impl FnMut(u64) -> Option<usize>,
    ) -> Vec<usize> {
        let n = self.documents;
        let k = k.min(n);
        if k == 0 {
            return Vec::new();
        }
        // The postings of the query's distinct terms that any document holds, in the terms'
        // sorted order (as `top_k` sorts them), with their idf. Each word is looked up as it
        // comes: only the few the index holds are sorted.
        let mut found: Vec<(Cow<'_, str>, &Postings)> = Vec::new();
        each_word(query, |word, lowercase| {
            let term = if lowercase { Cow::Borrowed(word) } else { Cow::Owned(word.to_lowercase()) };
            if let Some(list) = self.postings.get(term.as_ref()) {
                found.push((term, list));
            }
        });
        found.sort_unstable_by(|(a, _), (b, _)| a.as_ref().cmp(b.as_ref()));
        found.dedup_by(|(a, _), (b, _)| a == b);
        let avg = (self.total_len as f64 / n.max(1) as f64).max(1.0);
        let lists: Vec<(f64, &Postings)> = found
            .into_iter()
            .map(|(_, list)| {
                let d = f64::from(u32::try_from(list.list.len()).unwrap_or(u32::MAX));
                (((n as f64 - d + 0.5) / (d + 0.5) + 1.0).ln(), list)
            })
            .collect();
        // The same arithmetic as `top_k`, the terms added in the same order, so every score is
        // the same number to the last bit.
        let score = |idf: f64, posting: &Posting| {
            let norm = K1 * (1.0 - B + B * f64::from(posting.len) / avg);
            let f = f64::from(posting.tf);
            idf * f * (K1 + 1.0) / (f + norm)
        };
        // No document scores higher: each term's score grows with its frequency and shrinks
        // with the document's length, and the terms are added in the same order (a term a
        // document lacks adds nothing, and every term's score is positive). Every step of the
        // arithmetic rounds monotonically, so the computed scores keep that order too, except
        // that a frequency sits in both the numerator and the denominator: one more occurrence
        // raises the score by far more than the rounding error below a few million occurrences
        // of a term in one document, and past `BOUNDED_TF` no bound is used.
        let bound = if lists.iter().all(|(_, list)| list.max_tf < BOUNDED_TF) {
            lists
                .iter()
                .map(|(idf, list)| score(*idf, &Posting { id: 0, tf: list.max_tf, len: list.min_len }))
                .fold(None, |sum: Option<f64>, term| Some(sum.map_or(term, |s| s + term)))
                .unwrap_or(0.0)
        } else {
            f64::INFINITY
        };
        // The best `k` matching documents so far, as `top_k` ranks them: by score, ties by id
        // (ids are unique, so this is a total order). A document no better than the worst of
        // them costs one comparison, so a search costs the postings of its terms, not a sort
        // of every matching document.
        let mut best = Best::new(k);
        if let [(idf, list)] = lists[..] {
            // One matching term (the usual case for a short query): nothing to merge.
            // Postings alike (same frequency and length) score alike: computed once per run.
            let mut last: Option<(u32, u32, f64)> = None;
            for p in &list.list {
                if best.rejects(bound) {
                    break;
                }
                let value = match last {
                    Some((tf, len, value)) if tf == p.tf && len == p.len => value,
                    _ => score(idf, p),
                };
                last = Some((p.tf, p.len, value));
                if !best.rejects(value) {
                    best.offer(value, p.id);
                }
            }
        } else if lists.len() > 1 {
            // Merge the lists (each in id order), so every matching document is scored once.
            let mut heads = vec![0usize; lists.len()];
            while !best.rejects(bound) {
                let next = lists
                    .iter()
                    .zip(&heads)
                    .filter_map(|((_, list), &at)| list.list.get(at))
                    .map(|p| p.id)
                    .min();
                let Some(id) = next else { break };
                let mut sum: Option<f64> = None;
                for ((idf, list), at) in lists.iter().zip(heads.iter_mut()) {
                    let Some(posting) = list.list.get(*at).filter(|p| p.id == id) else { continue };
                    *at += 1;
                    let term = score(*idf, posting);
                    sum = Some(sum.map_or(term, |s| s + term));
                }
                if let Some(sum) = sum
                    && !best.rejects(sum)
                {
                    best.offer(sum, id);
                }
            }
        }
        let scored = best.into_sorted();
        let mut picked = Vec::with_capacity(k);
        picked.extend(scored.iter().filter_map(|&Ranked(_, id)| position(id)));
        if picked.len() < k {
            // Documents with no query term score 0 and come next, in order.
            let mut matched = picked.clone();
            matched.sort_unstable();
            let mut matched = matched.into_iter().peekable();
            for at in 0..n {
                if picked.len() == k {
                    break;
                }
                if matched.next_if_eq(&at).is_none() {
                    picked.push(at);
                }
            }
        }
        picked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_character_of_the_symbol_blocks_is_a_letter_or_a_digit() {
        let symbols: Vec<char> =
            (0..=0x10FFFF).filter_map(char::from_u32).filter(|c| is_symbol(*c)).collect();
        assert!(symbols.len() > 900 && symbols.contains(&'→'));
        for c in symbols {
            assert!(!c.is_alphanumeric(), "{c:?} U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn the_matching_document_ranks_first() {
        let docs = [
            "the cat sat on the mat",
            "dogs chase cats",
            "a treatise on Rust lifetimes",
            "Rust borrow checker",
        ];
        assert_eq!(top_k("rust lifetimes", docs.iter().copied(), 2), vec![2, 3]);
        assert_eq!(top_k("nothing matches", docs.iter().copied(), 2), vec![0, 1]);
        assert_eq!(top_k("cat", docs.iter().copied(), 10).len(), 4);
    }

    #[test]
    fn rare_terms_weigh_more_than_common_ones() {
        let docs = ["alpha common", "beta common", "gamma common", "common zeta"];
        assert_eq!(top_k("common zeta", docs.iter().copied(), 1), vec![3]);
    }

    #[test]
    fn words_match_whatever_their_case_in_any_script() {
        let docs = ["nothing here", "ÉCOLE and Rust", "rust"];
        assert_eq!(top_k("école", docs.iter().copied(), 1), vec![1]);
        assert_eq!(top_k("RUST", docs.iter().copied(), 3), vec![2, 1, 0]);
    }

    /// One change to the indexed documents.
    #[derive(Debug, Clone)]
    enum Step {
        Add(String),
        /// Removes the document at this position (modulo the count), or the oldest.
        Remove(usize),
        Search(String, usize),
    }

    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let word = prop::sample::select(vec![
            "alpha", "Beta", "GAMMA", "delta", "a", "b", "2", "3", "add", "école", "ÉCOLE", "straße",
            "Kelvin", "\u{212A}", "x1", "rust", "Rust", "the",
        ]);
        (
            prop::collection::vec(word, 0..12),
            prop::collection::vec(prop::sample::select(vec![" ", "-", ", ", "(", ") → ", "{\"", "\": "]), 12),
        )
            .prop_map(|(words, gaps)| {
                let mut text = String::new();
                for (word, gap) in words.iter().zip(gaps.iter().cycle()) {
                    text.push_str(word);
                    text.push_str(gap);
                }
                text
            })
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            4 => text().prop_map(Step::Add),
            2 => any::<usize>().prop_map(Step::Remove),
            3 => (text(), 0usize..12).prop_map(|(q, k)| Step::Search(q, k)),
        ]
    }

    proptest::proptest! {
        /// The one-pass word splitter finds the words `terms` finds, in any script, and says
        /// rightly which are lowercase ASCII already.
        #[test]
        fn words_are_split_as_terms_splits_them(text in "\\PC{0,40}", mixed in text()) {
            for text in [text, mixed] {
                let mut words = Vec::new();
                each_word(&text, |word, plain| {
                    assert_eq!(plain, word.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()));
                    words.push(word.to_lowercase());
                });
                proptest::prop_assert_eq!(words, terms(&text).collect::<Vec<_>>());
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Whatever documents come and go, the index ranks exactly as scoring from scratch.
        #[test]
        fn the_index_ranks_exactly_like_scoring_from_scratch(steps in proptest::collection::vec(step(), 1..80)) {
            let mut index = Index::default();
            let mut documents: Vec<(u64, String)> = Vec::new();
            let mut next = 1;
            for step in steps {
                match step {
                    Step::Add(text) => {
                        index.add(next, &text);
                        documents.push((next, text));
                        next += 1;
                    }
                    Step::Remove(at) => {
                        if !documents.is_empty() {
                            let at = if at % 3 == 0 { 0 } else { at % documents.len() };
                            let (id, text) = documents.remove(at);
                            index.remove(id, &text);
                        }
                    }
                    Step::Search(query, k) => {
                        let expected = top_k(&query, documents.iter().map(|(_, t)| t.as_str()), k);
                        let got = index.top_k(&query, k, |id| documents.iter().position(|(i, _)| *i == id));
                        proptest::prop_assert_eq!(got, expected);
                    }
                }
                proptest::prop_assert_eq!(index.len(), documents.len());
                for list in index.postings.values() {
                    let max_tf = list.list.iter().map(|p| p.tf).max();
                    let min_len = list.list.iter().map(|p| p.len).min();
                    proptest::prop_assert_eq!((Some(list.max_tf), Some(list.min_len)), (max_tf, min_len));
                    proptest::prop_assert_eq!(list.at_max_tf, list.list.iter().filter(|p| p.tf == list.max_tf).count());
                    proptest::prop_assert_eq!(list.at_min_len, list.list.iter().filter(|p| p.len == list.min_len).count());
                }
            }
            // Emptied, it holds nothing.
            for (id, text) in std::mem::take(&mut documents) {
                index.remove(id, &text);
            }
            proptest::prop_assert!(index.postings.is_empty());
            proptest::prop_assert_eq!(index.total_len, 0);
            proptest::prop_assert_eq!(index.posting_count, 0);
            proptest::prop_assert_eq!(index.term_bytes, 0);
        }
    }
}

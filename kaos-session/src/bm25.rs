//! Plain Okapi BM25 over section items: lexical relevance with no model and no index to keep.

const K1: f64 = 1.2;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

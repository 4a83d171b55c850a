//! The chunks: size, boundaries, hashes and metadata.

use std::fmt::Write as _;

use kaos_ingest::{IngestOptions, estimate_tokens, ingest, ingest_file, sha256};
use serde_json::json;

use crate::{data, data_path, ok};

/// A document of `paragraphs` paragraphs of numbered sentences.
fn long_document(paragraphs: usize) -> String {
    let mut text = String::new();
    for p in 0..paragraphs {
        for s in 0..(3 + p % 5) {
            let _ = write!(text, "Paragraph {p} sentence {s} says something about the bridge. ");
        }
        text.push_str("\n\n");
    }
    text
}

#[test]
fn chunks_stay_under_the_token_size_and_end_on_sentences() {
    let text = long_document(60);
    for tokens in [40, 100, 512] {
        let options = IngestOptions { chunk_tokens: tokens, ..IngestOptions::default() };
        let doc = ingest("long.txt", "long.txt", text.as_bytes(), &options).unwrap();
        assert!(doc.chunks.len() > 1, "{tokens}: one chunk");
        for (index, chunk) in doc.chunks.iter().enumerate() {
            assert_eq!(chunk.chunk, index);
            assert!(chunk.tokens <= tokens, "{tokens}: chunk {index} has {} tokens", chunk.tokens);
            assert!(
                chunk.text.starts_with("Paragraph ") && chunk.text.ends_with("bridge."),
                "{:?}",
                chunk.text
            );
            assert_eq!(&text[chunk.byte_range.clone()], chunk.text);
        }
        assert_eq!(doc.tokens, doc.chunks.iter().map(|c| c.tokens).sum::<u64>());
        assert_eq!(doc.text_bytes, text.len());
    }
}

#[test]
fn tokens_are_estimated_as_the_workspace_estimates_them() {
    for text in ["", "a", "abcd", "abcde", "héllo wörld", &long_document(3)] {
        assert_eq!(estimate_tokens(text), kaos_providers::estimate_tokens(text), "{text:?}");
    }
}

#[test]
fn hashes_identify_the_file_and_each_chunk() {
    let bytes = data("bridge.pdf");
    let first = ok("bridge.pdf", &bytes);
    assert_eq!(first.sha256, sha256(&bytes));
    assert!(first.sha256.starts_with("sha256:") && first.sha256.len() == 7 + 64);
    for chunk in &first.chunks {
        assert_eq!(chunk.sha256, sha256(chunk.text.as_bytes()));
        assert_eq!(chunk.file_sha256, first.sha256);
    }
    // The same file again, under another name: same hashes, so adding it again is a no-op.
    let again = ingest("copy.pdf", "elsewhere/copy.pdf", &bytes, &IngestOptions::default()).unwrap();
    assert_eq!(again.sha256, first.sha256);
    let hashes = |d: &kaos_ingest::Document| d.chunks.iter().map(|c| c.sha256.clone()).collect::<Vec<_>>();
    assert_eq!(hashes(&again), hashes(&first));
    // One byte different: another file.
    let other = ok("b.txt", b"The bridge opened in 1933.");
    assert_ne!(other.sha256, ok("b.txt", b"The bridge opened in 1932.").sha256);
}

#[test]
fn chunk_metadata_for_memory_items() {
    let doc = ok("bridge.pdf", &data("bridge.pdf"));
    let chunk = doc.chunks.last().unwrap();
    let metadata = chunk.metadata();
    assert_eq!(metadata["name"], json!("bridge.pdf"));
    assert_eq!(metadata["source"], json!("test/bridge.pdf"));
    assert_eq!(metadata["format"], json!("pdf"));
    assert_eq!(metadata["chunk"], json!(chunk.chunk));
    assert_eq!(metadata["byte_start"], json!(chunk.byte_range.start));
    assert_eq!(metadata["byte_end"], json!(chunk.byte_range.end));
    assert_eq!(metadata["page_first"], json!(2));
    assert_eq!(metadata["page_last"], json!(2));
    assert_eq!(metadata["sha256"], json!(chunk.sha256));
    assert_eq!(metadata["file_sha256"], json!(doc.sha256));
    assert_eq!(metadata["tokens"], json!(chunk.tokens));
    let text = ok("notes.md", b"Hello.").chunks[0].metadata();
    assert!(!text.contains_key("page_first"));
}

#[test]
fn documents_serialize_for_the_cli_and_api() {
    let doc = ok("bridge.pdf", &data("bridge.pdf"));
    let value = serde_json::to_value(&doc).unwrap();
    assert_eq!(value["format"], "pdf");
    assert_eq!(value["pages"], 2);
    assert_eq!(value["chunks"][0]["pages"], json!({"first": 1, "last": 1}));
    assert!(value["chunks"][0]["byte_range"]["start"].is_u64());
    let back: kaos_ingest::Document = serde_json::from_value(value).unwrap();
    assert_eq!(back, doc);
}

#[test]
fn ingest_file_names_the_document_after_the_file() {
    let path = data_path("bridge.docx");
    let doc = ingest_file(&path, &IngestOptions::default()).unwrap();
    assert_eq!(doc.name, "bridge.docx");
    assert_eq!(doc.source, path.display().to_string());
    assert_eq!(doc.size, std::fs::metadata(&path).unwrap().len());
    assert_eq!(doc.chunks[0].location(), "bridge.docx, chunk 1");
}

#[test]
fn options_and_limits_deserialize_from_partial_settings() {
    let options: IngestOptions =
        serde_json::from_value(json!({"chunk_tokens": 256, "limits": {"max_file_bytes": 1000}})).unwrap();
    assert_eq!(options.chunk_tokens, 256);
    assert_eq!(options.limits.max_file_bytes, 1000);
    assert_eq!(options.limits.max_chunks, kaos_ingest::IngestLimits::default().max_chunks);
}

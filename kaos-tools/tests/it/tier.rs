#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use kaos_tools::{Content, INLINE_LIMIT, SUMMARY_LIMIT, ToolError, ToolResult, tier_result};
use kaos_vfs::{MemoryVfs, Vfs, VfsPath};
use serde_json::json;

const KIB: usize = 1024;

/// `len` bytes of numbered lines, so head and tail are recognisable.
fn output(len: usize) -> String {
    let mut s = String::with_capacity(len + 16);
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!("line {i:06}\n"));
        i += 1;
    }
    s.truncate(len);
    s
}

async fn stored(vfs: &MemoryVfs, id: &str) -> Option<String> {
    let path = VfsPath::new(&format!("artifacts/{id}")).unwrap();
    match vfs.read(&path).await {
        Ok(bytes) => Some(String::from_utf8(bytes.to_vec()).unwrap()),
        Err(err) if err.is_not_found() => None,
        Err(err) => panic!("{err}"),
    }
}

fn link(id: &str) -> Content {
    Content::resource_link(
        format!("kaos://artifacts/{id}"),
        format!("artifact {id}"),
        Some("text/plain".into()),
    )
}

#[tokio::test]
async fn small_results_stay_inline() {
    let vfs = MemoryVfs::new();
    let result = ToolResult::text(output(15 * KIB)).with_structured_content(json!({"kept": true}));
    let tiered = tier_result(result.clone(), &vfs, "a1").await.unwrap();
    assert_eq!(tiered, result);
    assert_eq!(stored(&vfs, "a1").await, None);
}

#[tokio::test]
async fn medium_results_become_a_summary_and_a_stored_artifact() {
    let vfs = MemoryVfs::new();
    let text = output(100 * KIB);
    let result = ToolResult::json(json!({"big": text}));
    let full = result.to_model_text();
    let tiered = tier_result(result, &vfs, "a2").await.unwrap();

    assert_eq!(stored(&vfs, "a2").await.as_deref(), Some(full.as_str()));
    assert_eq!(tiered.structured_content, None);
    assert!(!tiered.is_error);
    assert_eq!(tiered.content.len(), 2);
    assert_eq!(tiered.content[1], link("a2"));
    let Content::Text { text: summary } = &tiered.content[0] else { panic!("{:?}", tiered.content) };
    assert!(summary.len() < INLINE_LIMIT, "{}", summary.len());
    assert!(summary.starts_with(&full[..1000]));
    assert!(summary.contains(&full[full.len() - 1000..]));
    assert!(summary.contains("bytes omitted"));
    assert!(summary.contains("artifacts/a2"), "{summary}");
    assert!(tiered.to_model_text().contains("kaos://artifacts/a2"));
}

#[tokio::test]
async fn huge_results_become_a_link_only() {
    let vfs = MemoryVfs::new();
    let text = output(300 * KIB);
    let tiered = tier_result(ToolResult::error(text.clone()), &vfs, "a3").await.unwrap();

    assert_eq!(stored(&vfs, "a3").await, Some(text.clone()));
    assert!(tiered.is_error);
    assert_eq!(tiered.content.len(), 2);
    assert_eq!(tiered.content[1], link("a3"));
    let Content::Text { text: note } = &tiered.content[0] else { panic!("{:?}", tiered.content) };
    assert!(!note.contains("line 000000"), "a link-only result shows none of the output");
    assert!(note.contains(&format!("{} bytes", text.len())), "{note}");
    assert!(tiered.to_model_text().starts_with("Error: "));
}

#[tokio::test]
async fn thresholds_are_exact_and_multibyte_text_is_cut_on_boundaries() {
    let vfs = MemoryVfs::new();
    let just_under = "x".repeat(INLINE_LIMIT - 1);
    assert_eq!(
        tier_result(ToolResult::text(just_under.clone()), &vfs, "b1").await.unwrap().to_model_text(),
        just_under
    );

    let at_limit = tier_result(ToolResult::text("x".repeat(INLINE_LIMIT)), &vfs, "b2").await.unwrap();
    assert!(at_limit.to_model_text().contains("bytes omitted"));

    let at_summary_limit =
        tier_result(ToolResult::text("x".repeat(SUMMARY_LIMIT)), &vfs, "b3").await.unwrap();
    assert!(!at_summary_limit.to_model_text().contains("xxx"));

    let wide = "é€😀".repeat(10 * KIB);
    let tiered = tier_result(ToolResult::text(wide.clone()), &vfs, "b4").await.unwrap();
    assert_eq!(stored(&vfs, "b4").await, Some(wide));
    assert!(tiered.to_model_text().contains("é€😀"));
}

#[tokio::test]
async fn artifact_ids_must_be_one_segment() {
    let vfs = MemoryVfs::new();
    for bad in ["", "../escape", "a/b", "/abs"] {
        let err = tier_result(ToolResult::text("x".repeat(INLINE_LIMIT)), &vfs, bad).await.unwrap_err();
        assert!(matches!(err, ToolError::Vfs(_)), "{bad:?}: {err:?}");
    }
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use kaos_tools::{NoInput, Tool, ToolContext, ToolError, ToolRegistry, ToolResult, ToolSelector, tool_fn};
use proptest::prelude::*;

/// Valid tool names (they contain no glob metacharacters).
fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,20}"
}

fn tool(name: &str) -> Arc<dyn Tool> {
    tool_fn(name, "x", |_: NoInput, _ctx: ToolContext| async { Ok(ToolResult::text("")) }).build().unwrap()
}

#[test]
fn glob_syntax() {
    let s = ToolSelector::new(["kaos-*-read", "web?", "[mn]ote", "[!a-y]ip"]).unwrap();
    assert!(s.matches("kaos-vfs-read"));
    assert!(s.matches("kaos-a-b-read"));
    assert!(!s.matches("kaos-vfs-write"));
    assert!(s.matches("web1"));
    assert!(!s.matches("web12"));
    assert!(s.matches("note") && s.matches("mote") && !s.matches("vote"));
    assert!(s.matches("zip") && !s.matches("yip"));
    // Case-sensitive, and `*` crosses `/`.
    assert!(!ToolSelector::new(["KAOS-*"]).unwrap().matches("kaos-vfs-read"));
    assert!(ToolSelector::new(["mcp*"]).unwrap().matches("mcp/server/tool"));
}

#[test]
fn bad_globs_are_reported() {
    let err = ToolSelector::new(["ok-*", "[unclosed"]).unwrap_err();
    assert!(matches!(&err, ToolError::InvalidGlob { pattern, .. } if pattern == "[unclosed"), "{err:?}");
}

#[test]
fn no_globs_select_nothing_and_all_selects_everything() {
    let empty: [&str; 0] = [];
    let none = ToolSelector::new(empty).unwrap();
    assert!(!none.is_all());
    assert!(!none.matches("anything-at-all"));
    assert!(!none.matches(""));
    let all = ToolSelector::all();
    assert!(all.is_all());
    assert!(all.matches("anything-at-all"));
    assert!(ToolSelector::new(["*"]).unwrap().matches("anything-at-all"));
    assert_eq!(ToolSelector::new(["a"]).unwrap().patterns(), ["a"]);
}

proptest! {
    #[test]
    fn a_plain_glob_matches_exactly_itself(glob in name(), other in name()) {
        let s = ToolSelector::new([&glob]).unwrap();
        prop_assert!(s.matches(&glob));
        prop_assert_eq!(s.matches(&other), other == glob);
    }

    #[test]
    fn star_matches_any_name(n in name()) {
        prop_assert!(ToolSelector::new(["*"]).unwrap().matches(&n));
    }

    #[test]
    fn selection_respects_max_and_order(
        names in proptest::collection::btree_set(name(), 0..20),
        picked in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
        max in 0usize..25,
    ) {
        let names: Vec<String> = names.into_iter().collect();
        let mut registry = ToolRegistry::new();
        for n in &names {
            registry.register(tool(n)).unwrap();
        }
        let globs: Vec<String> = if names.is_empty() {
            Vec::new()
        } else {
            picked.iter().map(|i| names[i.index(names.len())].clone()).collect()
        };
        let selector = ToolSelector::new(&globs).unwrap();
        let selected: Vec<String> =
            registry.select(&selector, max).iter().map(|t| t.spec().name.to_string()).collect();
        let expected: Vec<String> =
            names.iter().filter(|n| globs.contains(n)).take(max).cloned().collect();
        prop_assert_eq!(selected, expected);
    }
}

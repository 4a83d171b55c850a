#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use kaos_tools::{
    DEFAULT_TOOL_TIMEOUT, NoInput, Tool, ToolContext, ToolError, ToolRegistry, ToolResult, ToolSelector,
    invoke_tool, tool_fn,
};
use serde_json::json;

fn echo(name: &str, description: &str) -> Arc<dyn Tool> {
    let reply = name.to_owned();
    tool_fn(name, description, move |_: NoInput, _ctx: ToolContext| {
        let reply = reply.clone();
        async move { Ok(ToolResult::text(reply)) }
    })
    .build()
    .unwrap()
}

fn names(tools: &[Arc<dyn Tool>]) -> Vec<String> {
    tools.iter().map(|t| t.spec().name.to_string()).collect()
}

#[test]
fn duplicates_are_rejected_and_order_is_kept() {
    let mut registry =
        ToolRegistry::new().with(echo("b-tool", "B")).unwrap().with(echo("a-tool", "A")).unwrap();
    let err = registry.register(echo("b-tool", "again")).unwrap_err();
    assert!(matches!(&err, ToolError::Duplicate(name) if name == "b-tool"), "{err:?}");
    assert!(!err.is_call_error());
    assert_eq!(registry.len(), 2);
    assert_eq!(names(&registry.list()), ["b-tool", "a-tool"]);
    assert_eq!(registry.get("b-tool").unwrap().spec().description, "B");
    assert!(registry.get("c-tool").is_none());
    assert!(!registry.is_empty());
    assert!(ToolRegistry::new().is_empty());
}

#[test]
fn clones_are_snapshots() {
    let base = ToolRegistry::new().with(echo("one", "1")).unwrap();
    let mut extended = base.clone();
    extended.register(echo("two", "2")).unwrap();
    assert_eq!(base.names(), ["one"]);
    assert_eq!(extended.names(), ["one", "two"]);
}

#[test]
fn select_filters_caps_and_keeps_registration_order() {
    let mut registry = ToolRegistry::new();
    for name in ["kaos-vfs-write", "web-search", "kaos-vfs-read", "kaos-vfs-list"] {
        registry.register(echo(name, "x")).unwrap();
    }
    let vfs = ToolSelector::new(["kaos-vfs-*"]).unwrap();
    assert_eq!(names(&registry.select(&vfs, 10)), ["kaos-vfs-write", "kaos-vfs-read", "kaos-vfs-list"]);
    assert_eq!(names(&registry.select(&vfs, 2)), ["kaos-vfs-write", "kaos-vfs-read"]);
    assert_eq!(
        names(&registry.select(&ToolSelector::all(), 3)),
        ["kaos-vfs-write", "web-search", "kaos-vfs-read"]
    );
    assert!(registry.select(&ToolSelector::new(["nope"]).unwrap(), 10).is_empty());
}

#[test]
fn search_ranks_by_matching_terms() {
    let registry = ToolRegistry::new()
        .with(echo("web-search", "Search the web for pages."))
        .unwrap()
        .with(echo("memory-search", "Search the session's memory for notes."))
        .unwrap()
        .with(echo("note-write", "Write a NOTE to memory."))
        .unwrap();
    assert_eq!(names(&registry.search("memory notes")), ["memory-search", "note-write"]);
    assert_eq!(names(&registry.search("SEARCH")), ["web-search", "memory-search"]);
    assert_eq!(names(&registry.search("web, pages")), ["web-search"]);
    assert!(registry.search("").is_empty());
    assert!(registry.search("unrelated").is_empty());
}

#[tokio::test]
async fn invoke_finds_tools_by_name() {
    let registry = ToolRegistry::new().with(echo("hello", "Says its name.")).unwrap();
    let result = registry.invoke("hello", json!({}), ToolContext::for_tests()).await.unwrap();
    assert_eq!(result, ToolResult::text("hello"));
    let err = registry.invoke("missing", json!({}), ToolContext::for_tests()).await.unwrap_err();
    assert!(matches!(&err, ToolError::NotFound(name) if name == "missing"), "{err:?}");
    assert!(err.is_call_error());
    assert_eq!(err.into_result().to_model_text(), "Error: no tool named `missing`");
}

fn sleeper(name: &str, timeout: Option<Duration>) -> Arc<dyn Tool> {
    let builder = tool_fn(name, "Sleeps for an hour.", |_: NoInput, _ctx: ToolContext| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(ToolResult::text("woke up"))
    });
    match timeout {
        Some(t) => builder.timeout(t).build().unwrap(),
        None => builder.build().unwrap(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_tool_times_out() {
    let registry = ToolRegistry::new()
        .with(sleeper("own-limit", Some(Duration::from_secs(5))))
        .unwrap()
        .with(sleeper("registry-limit", None))
        .unwrap();
    assert_eq!(registry.default_timeout(), DEFAULT_TOOL_TIMEOUT);

    let err = registry.invoke("own-limit", json!({}), ToolContext::for_tests()).await.unwrap_err();
    assert!(
        matches!(&err, ToolError::Timeout { tool, after } if tool == "own-limit" && *after == Duration::from_secs(5)),
        "{err:?}"
    );
    assert_eq!(err.model_message(), "tool `own-limit` timed out after 5 s");

    let err = registry.invoke("registry-limit", json!({}), ToolContext::for_tests()).await.unwrap_err();
    assert!(matches!(&err, ToolError::Timeout { after, .. } if *after == DEFAULT_TOOL_TIMEOUT), "{err:?}");

    let quick = registry.clone().with_default_timeout(Duration::from_millis(250));
    let err = quick.invoke("registry-limit", json!({}), ToolContext::for_tests()).await.unwrap_err();
    assert!(
        matches!(&err, ToolError::Timeout { after, .. } if *after == Duration::from_millis(250)),
        "{err:?}"
    );
    assert_eq!(err.model_message(), "tool `registry-limit` timed out after 250 ms");
}

#[derive(Debug)]
struct PanicsWhenCalled {
    spec: kaos_tools::ToolSpec,
}

impl Tool for PanicsWhenCalled {
    fn spec(&self) -> &kaos_tools::ToolSpec {
        &self.spec
    }

    fn call<'a, 'b>(
        &'a self,
        _args: serde_json::Value,
        _ctx: ToolContext,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<ToolResult, ToolError>> + Send + 'b>>
    where
        'a: 'b,
    {
        panic!("panicked before returning a future")
    }
}

#[tokio::test]
async fn a_panicking_tool_becomes_an_error_and_the_registry_keeps_working() {
    let boom = tool_fn("boom", "Panics.", |_: NoInput, _ctx: ToolContext| async {
        let items: Vec<u8> = Vec::new();
        if items.is_empty() {
            panic!("secret internal state {}", 42);
        }
        Ok(ToolResult::text("unreachable"))
    })
    .build()
    .unwrap();
    let sync_boom: Arc<dyn Tool> = Arc::new(PanicsWhenCalled {
        spec: kaos_tools::ToolSpec::new(
            kaos_tools::ToolName::new("sync-boom").unwrap(),
            "Panics synchronously.",
            json!({"type": "object", "properties": {}}),
        ),
    });
    let registry = ToolRegistry::new()
        .with(boom)
        .unwrap()
        .with(sync_boom.clone())
        .unwrap()
        .with(echo("fine", "OK"))
        .unwrap();

    let err = registry.invoke("boom", json!({}), ToolContext::for_tests()).await.unwrap_err();
    assert!(
        matches!(&err, ToolError::Panicked { tool, message } if tool == "boom" && message == "secret internal state 42"),
        "{err:?}"
    );
    // The panic message is operator detail; the model only learns that the tool failed.
    assert_eq!(err.model_message(), "tool `boom` failed with an internal error");

    let err = invoke_tool(sync_boom.as_ref(), json!({}), ToolContext::for_tests(), DEFAULT_TOOL_TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ToolError::Panicked { message, .. } if message == "panicked before returning a future"),
        "{err:?}"
    );

    let again = registry.invoke("boom", json!({}), ToolContext::for_tests()).await.unwrap_err();
    assert!(matches!(again, ToolError::Panicked { .. }));
    let result = registry.invoke("fine", json!({}), ToolContext::for_tests()).await.unwrap();
    assert_eq!(result, ToolResult::text("fine"));
}

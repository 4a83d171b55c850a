#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use kaos_tools::{Content, ToolAnnotations, ToolError, ToolName, ToolResult, ToolSpec};
use kaos_vfs::VfsError;
use serde_json::json;

#[test]
fn results_serialize_in_the_mcp_shape() {
    let result = ToolResult::new(vec![
        Content::text("hi"),
        Content::json(json!({"a": 1})),
        Content::resource_link("kaos://artifacts/x", "artifact x", None),
    ])
    .with_structured_content(json!({"a": 1}));
    let value = serde_json::to_value(&result).unwrap();
    assert_eq!(
        value,
        json!({
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "json", "json": {"a": 1}},
                {"type": "resource_link", "uri": "kaos://artifacts/x", "name": "artifact x"}
            ],
            "structured_content": {"a": 1},
            "is_error": false
        })
    );
    assert_eq!(serde_json::from_value::<ToolResult>(value).unwrap(), result);
    assert_eq!(result.to_model_text(), "hi\n{\"a\":1}\n[resource artifact x: kaos://artifacts/x]");
}

#[test]
fn model_text_of_empty_and_structured_results() {
    assert_eq!(ToolResult::default().to_model_text(), "(no output)");
    let structured = ToolResult::new(Vec::new()).with_structured_content(json!([1, 2]));
    assert_eq!(structured.to_model_text(), "[1,2]");
}

#[test]
fn annotations_default_to_mcp_and_accept_mcp_keys() {
    let default = ToolAnnotations::default();
    assert_eq!(
        serde_json::to_value(default).unwrap(),
        json!({
            "read_only": false,
            "destructive": false,
            "idempotent": false,
            "open_world": true,
            "requires_confirmation": false
        })
    );
    let from_mcp: ToolAnnotations =
        serde_json::from_value(json!({"readOnlyHint": true, "openWorldHint": false})).unwrap();
    assert_eq!(from_mcp, ToolAnnotations::default().with_read_only(true).with_open_world(false));
    assert_eq!(serde_json::from_value::<ToolAnnotations>(json!({})).unwrap(), default);
}

#[test]
fn specs_serialize_with_names_as_strings() {
    let spec = ToolSpec::new(ToolName::new("echo").unwrap(), "Echoes.", json!({"type": "object"}))
        .with_timeout(Duration::from_millis(1500))
        .with_annotations(ToolAnnotations::destructive());
    assert_eq!(
        serde_json::to_value(&spec).unwrap(),
        json!({
            "name": "echo",
            "description": "Echoes.",
            "input_schema": {"type": "object"},
            "annotations": {
                "read_only": false,
                "destructive": true,
                "idempotent": false,
                "open_world": true,
                "requires_confirmation": false
            },
            "timeout_ms": 1500
        })
    );
    assert!(serde_json::from_value::<ToolName>(json!("Bad Name")).is_err());
    assert_eq!(serde_json::from_value::<ToolName>(json!("good")).unwrap(), "good");
}

#[test]
fn model_messages_hide_operator_detail() {
    let failed =
        ToolError::failed_with_detail("the search service is unavailable", "dial tcp 10.1.2.3:443: refused");
    assert_eq!(failed.model_message(), "the search service is unavailable");
    assert_eq!(failed.to_string(), "the search service is unavailable (dial tcp 10.1.2.3:443: refused)");
    assert_eq!(failed.detail(), Some("dial tcp 10.1.2.3:443: refused"));
    assert_eq!(failed.into_result(), ToolResult::error("the search service is unavailable"));

    let vfs = ToolError::from(VfsError::NotFound("tenants/acme/sessions/s1/x".into()));
    assert_eq!(vfs.model_message(), "not found");
    let io = ToolError::from(VfsError::Io {
        path: "/var/lib/kaos/x".into(),
        source: std::io::Error::other("disk on fire"),
    });
    assert_eq!(io.model_message(), "storage error");
    // The cause is the error's source, not repeated in its message.
    assert_eq!(io.to_string(), "storage error at /var/lib/kaos/x");
    let cause = std::error::Error::source(&io).map(ToString::to_string);
    assert_eq!(cause.as_deref(), Some("disk on fire"));
}

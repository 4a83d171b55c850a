#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use bytes::Bytes;
use kaos_tools::{ToolAnnotations, ToolContext, ToolError, ToolRegistry, ToolResult, builtin};
use kaos_vfs::{MemoryVfs, ScopedVfs, Vfs, VfsPath};
use serde_json::json;

fn registry() -> ToolRegistry {
    let mut registry = ToolRegistry::new();
    registry.register_all(builtin::vfs_tools()).unwrap();
    registry
}

async fn call(registry: &ToolRegistry, ctx: &ToolContext, name: &str, args: serde_json::Value) -> String {
    registry.invoke(name, args, ctx.clone()).await.unwrap().to_model_text()
}

#[test]
fn annotations_describe_the_tools() {
    let registry = registry();
    let annotations = |name: &str| registry.get(name).unwrap().spec().annotations;
    let workspace = ToolAnnotations::default().with_open_world(false);
    assert_eq!(annotations("kaos-vfs-read"), workspace.with_read_only(true).with_idempotent(true));
    assert_eq!(annotations("kaos-vfs-list"), workspace.with_read_only(true).with_idempotent(true));
    assert_eq!(annotations("kaos-vfs-write"), workspace.with_destructive(true).with_idempotent(true));
    assert_eq!(annotations("kaos-vfs-delete"), workspace.with_destructive(true).with_idempotent(true));
    assert_eq!(annotations("kaos-vfs-append"), workspace);
    let write = registry.get("kaos-vfs-write").unwrap();
    let schema = &write.spec().input_schema;
    assert_eq!(schema["required"], json!(["path", "content"]));
    assert_eq!(schema["additionalProperties"], false);
}

#[tokio::test]
async fn write_read_list_delete_round_trip() {
    let registry = registry();
    let ctx = ToolContext::for_tests();

    assert_eq!(call(&registry, &ctx, "kaos-vfs-list", json!({})).await, "/ is empty");
    assert_eq!(
        call(&registry, &ctx, "kaos-vfs-write", json!({"path": "notes/todo.md", "content": "- milk\n"}))
            .await,
        "wrote 7 bytes to notes/todo.md"
    );
    assert_eq!(
        call(&registry, &ctx, "kaos-vfs-append", json!({"path": "./notes//todo.md", "content": "- eggs\n"}))
            .await,
        "appended 7 bytes to notes/todo.md"
    );
    call(&registry, &ctx, "kaos-vfs-write", json!({"path": "readme.txt", "content": "hi"})).await;

    assert_eq!(
        call(&registry, &ctx, "kaos-vfs-read", json!({"path": "notes/todo.md"})).await,
        "- milk\n- eggs\n"
    );
    assert_eq!(call(&registry, &ctx, "kaos-vfs-list", json!({})).await, "notes/\nreadme.txt");
    assert_eq!(call(&registry, &ctx, "kaos-vfs-list", json!({"path": "notes"})).await, "notes/todo.md");

    assert_eq!(
        call(&registry, &ctx, "kaos-vfs-delete", json!({"path": "notes/todo.md"})).await,
        "deleted notes/todo.md"
    );
    assert_eq!(call(&registry, &ctx, "kaos-vfs-list", json!({})).await, "readme.txt");

    let err =
        registry.invoke("kaos-vfs-read", json!({"path": "notes/todo.md"}), ctx.clone()).await.unwrap_err();
    assert_eq!(err.model_message(), "not found: notes/todo.md");
    assert!(err.is_call_error());
}

#[tokio::test]
async fn ranged_reads_say_where_to_continue() {
    let registry = registry();
    let ctx = ToolContext::for_tests();
    call(&registry, &ctx, "kaos-vfs-write", json!({"path": "a.txt", "content": "0123456789"})).await;
    assert_eq!(
        call(&registry, &ctx, "kaos-vfs-read", json!({"path": "a.txt", "offset": 2, "length": 3})).await,
        "234\n[bytes 2..5 of 10; continue with offset 5]"
    );
    assert_eq!(
        call(&registry, &ctx, "kaos-vfs-read", json!({"path": "a.txt", "offset": 8})).await,
        "89\n[bytes 8..10 of 10; end of file]"
    );
    call(&registry, &ctx, "kaos-vfs-write", json!({"path": "wide.txt", "content": "é€"})).await;
    // A range that would split a character is cut at the character boundary before it.
    assert_eq!(
        call(&registry, &ctx, "kaos-vfs-read", json!({"path": "wide.txt", "offset": 0, "length": 3})).await,
        "é\n[bytes 0..2 of 5; continue with offset 2]"
    );
}

#[tokio::test]
async fn hostile_and_wrong_paths_are_model_visible_errors() {
    let registry = registry();
    let ctx = ToolContext::for_tests();
    for (tool, args) in [
        ("kaos-vfs-read", json!({"path": "../x"})),
        ("kaos-vfs-write", json!({"path": "../x", "content": "pwned"})),
        ("kaos-vfs-append", json!({"path": "/etc/passwd", "content": "pwned"})),
        ("kaos-vfs-list", json!({"path": "../"})),
        ("kaos-vfs-delete", json!({"path": "a\\..\\..\\b"})),
        ("kaos-vfs-delete", json!({"path": ""})),
        ("kaos-vfs-write", json!({"path": ".", "content": "x"})),
    ] {
        let err = registry.invoke(tool, args.clone(), ctx.clone()).await.unwrap_err();
        assert!(matches!(err, ToolError::InvalidArguments { .. }), "{tool} {args}: {err:?}");
        let result: ToolResult = err.into_result();
        assert!(result.is_error);
        assert!(result.to_model_text().starts_with("Error: invalid arguments for tool"), "{result:?}");
    }
    let err = registry.invoke("kaos-vfs-read", json!({"file": "a"}), ctx).await.unwrap_err();
    assert!(err.model_message().contains("unknown field `file`"), "{err}");
}

#[tokio::test]
async fn binary_files_are_refused() {
    let registry = registry();
    let ctx = ToolContext::for_tests();
    ctx.vfs()
        .write(&VfsPath::new("blob.bin").unwrap(), Bytes::from_static(&[0xff, 0xfe, 0x00]))
        .await
        .unwrap();
    let err = registry.invoke("kaos-vfs-read", json!({"path": "blob.bin"}), ctx).await.unwrap_err();
    assert_eq!(err.model_message(), "blob.bin is not UTF-8 text (3 bytes); this tool reads text files only");
}

#[tokio::test]
async fn tools_see_only_their_scoped_workspace() {
    let registry = registry();
    let shared: Arc<dyn Vfs> = Arc::new(MemoryVfs::new());
    let scope = |session: &str| {
        let vfs: Arc<dyn Vfs> =
            Arc::new(ScopedVfs::new(shared.clone(), VfsPath::new(&format!("sessions/{session}")).unwrap()));
        ToolContext::new(session, "run", "call", vfs)
    };
    let (alice, bob) = (scope("alice"), scope("bob"));
    call(&registry, &alice, "kaos-vfs-write", json!({"path": "secret.txt", "content": "alice's"})).await;
    assert_eq!(call(&registry, &alice, "kaos-vfs-list", json!({})).await, "secret.txt");
    assert_eq!(call(&registry, &bob, "kaos-vfs-list", json!({})).await, "/ is empty");
    let err = registry.invoke("kaos-vfs-read", json!({"path": "secret.txt"}), bob.clone()).await.unwrap_err();
    assert_eq!(err.model_message(), "not found: secret.txt");
    assert!(shared.exists(&VfsPath::new("sessions/alice/secret.txt").unwrap()).await.unwrap());
}

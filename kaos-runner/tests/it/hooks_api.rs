//! The hooks API as a library user sees it: built from outside the crate, all built-ins
//! together behind one `Hooks`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use kaos_runner::hooks::{
    AuditTrail, CostTracker, HookContext, HookFailure, Hooks, LoggingHook, ManualClock, RateLimit,
    RateLimiter, ToolCallInfo, ToolDecision,
};
use kaos_runner::providers::{ModelResponse, Usage};
use kaos_runner::tools::ToolResult;
use kaos_runner::vfs::{MemoryVfs, Vfs, VfsPath};
use serde_json::json;

#[tokio::test]
async fn every_builtin_behind_one_hooks() {
    let vfs = Arc::new(MemoryVfs::new());
    let clock = Arc::new(ManualClock::new());
    let cost = CostTracker::new();
    let hooks = Hooks::new()
        .with(LoggingHook::new())
        .with(cost.clone())
        .with(AuditTrail::new(vfs.clone()))
        .with(RateLimiter::new([RateLimit::new("web-*", 1, 1.0)]).unwrap().with_clock(clock.clone()))
        .with_failure(HookFailure::Closed);
    assert_eq!(hooks.len(), 4);
    let ctx = HookContext::new("s1", "run-1", 1).with_agent("helper", "sha256:0");

    let start = hooks.turn_start(&ctx).await;
    assert_eq!((start.faults.clone(), start.stop()), (vec![], None));

    let mut response = ModelResponse::text("scripted:echo", "ok");
    response.usage = Usage::new(10, 2);
    response.cost_usd = Some(0.01);
    assert!(hooks.after_model_call(&ctx, &response).await.is_clean());

    let call = ToolCallInfo::new("c1", "web-get", json!({"url": "https://x.test", "token": "t-1"}));
    let first = hooks.before_tool_call(&ctx, call.clone()).await;
    assert_eq!((first.value, first.faults), (ToolDecision::Continue, vec![]));
    let second = hooks.before_tool_call(&ctx, call.clone()).await;
    assert_eq!(second.value, ToolDecision::Skip { result: "rate limited: try again in 1000 ms".into() });
    clock.advance(Duration::from_secs(1));
    assert_eq!(hooks.before_tool_call(&ctx, call.clone()).await.value, ToolDecision::Continue);
    assert!(hooks.after_tool_call(&ctx, &call, &ToolResult::text("page")).await.is_clean());

    assert_eq!((cost.total().model_calls, cost.total().tool_calls, cost.total().cost_usd), (1, 1, 0.01));
    let audit = vfs.read(&VfsPath::new("audit/s1.jsonl").unwrap()).await.unwrap();
    let audit = String::from_utf8(audit.to_vec()).unwrap();
    assert_eq!(audit.lines().count(), 6);
    assert!(!audit.contains("t-1"));
}

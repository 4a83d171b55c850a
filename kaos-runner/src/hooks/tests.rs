//! Tests of the hooks: dispatch semantics and every built-in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kaos_providers::{FinishReason, Message, ModelRequest, ModelResponse, ToolCall, Usage};
use kaos_tools::ToolResult;
use kaos_vfs::{MemoryVfs, Vfs, VfsPath};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::{Event, EventKind, StopReason, ToolCallRecord, TurnResponse};

// ---------------------------------------------------------------------------------------------
// Helpers

type Decide = dyn Fn(&ToolCallInfo) -> Result<ToolDecision, HookError> + Send + Sync;

/// A hook whose every callback does what `decide` says (observers map a decision to `Ok(())`),
/// recording the arguments it saw before tool calls and counting its calls.
struct Scripted {
    name: String,
    decide: Box<Decide>,
    seen: Mutex<Vec<Value>>,
    calls: AtomicUsize,
}

impl std::fmt::Debug for Scripted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripted").field("name", &self.name).finish()
    }
}

impl Scripted {
    fn new(
        name: &str,
        decide: impl Fn(&ToolCallInfo) -> Result<ToolDecision, HookError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            decide: Box::new(decide),
            seen: Mutex::default(),
            calls: AtomicUsize::new(0),
        })
    }

    fn returning(name: &str, decision: ToolDecision) -> Arc<Self> {
        Self::new(name, move |_| Ok(decision.clone()))
    }

    fn failing(name: &str, message: &'static str) -> Arc<Self> {
        Self::new(name, move |_| Err(HookError::new(message)))
    }

    fn panicking(name: &str) -> Arc<Self> {
        Self::new(name, |call| panic!("kaboom in {}", call.name))
    }

    fn observe(&self) -> Result<(), HookError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        (self.decide)(&call()).map(|_| ())
    }
}

#[async_trait]
impl Hook for Scripted {
    fn name(&self) -> &str {
        &self.name
    }
    async fn on_turn_start(&self, _ctx: &HookContext) -> Result<(), HookError> {
        self.observe()
    }
    async fn after_model_call(&self, _ctx: &HookContext, _response: &ModelResponse) -> Result<(), HookError> {
        self.observe()
    }
    async fn before_tool_call(
        &self,
        _ctx: &HookContext,
        call: &ToolCallInfo,
    ) -> Result<ToolDecision, HookError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(call.arguments.clone());
        (self.decide)(call)
    }
    fn on_event(&self, _event: &Event) -> Result<(), HookError> {
        self.observe()
    }
}

fn ctx() -> HookContext {
    HookContext::new("s1", "run-1", 3).with_agent("helper", "sha256:abc")
}

fn call() -> ToolCallInfo {
    ToolCallInfo::new("call-1", "kaos-vfs-read", json!({"path": "notes.md"}))
}

fn hooks_of(hooks: &[Arc<Scripted>]) -> Hooks {
    hooks.iter().fold(Hooks::new(), |acc, hook| acc.with(Arc::clone(hook)))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn event() -> Event {
    Event {
        seq: 0,
        timestamp_ms: 0,
        session_id: "s1".into(),
        run_id: "run-1".into(),
        agent: "helper".into(),
        agent_fingerprint: "sha256:abc".into(),
        kind: EventKind::TextDelta { text: "hi".into() },
    }
}

fn fault(hook: &str, point: HookPoint, message: &str, panicked: bool) -> HookFault {
    HookFault::new(hook, point, message, panicked)
}

// ---------------------------------------------------------------------------------------------
// Dispatch

#[tokio::test]
async fn no_hooks_continue() {
    let hooks = Hooks::new();
    assert!(hooks.is_empty());
    let d = hooks.before_tool_call(&ctx(), call()).await;
    assert_eq!((d.value, d.faults), (ToolDecision::Continue, vec![]));
}

#[tokio::test]
async fn the_most_restrictive_decision_wins_and_the_earliest_on_a_tie() {
    let hooks = hooks_of(&[
        Scripted::returning("a", ToolDecision::Skip { result: "cached".into() }),
        Scripted::returning("b", ToolDecision::Deny { reason: "first".into() }),
        Scripted::returning("c", ToolDecision::RequireApproval { reason: "ask".into() }),
        Scripted::returning("d", ToolDecision::Deny { reason: "second".into() }),
    ]);
    let d = hooks.before_tool_call(&ctx(), call()).await;
    assert_eq!(d.value, ToolDecision::Deny { reason: "first".into() });
    assert_eq!(d.faults, vec![]);
    assert_eq!(d.stop(), None);
}

#[tokio::test]
async fn rewrites_compose_in_hook_order() {
    let add = |key: &'static str| {
        move |call: &ToolCallInfo| {
            let mut arguments = call.arguments.clone();
            arguments[key] = json!(true);
            Ok(ToolDecision::Rewrite { arguments })
        }
    };
    let first = Scripted::new("first", add("a"));
    let observer = Scripted::returning("observer", ToolDecision::Continue);
    let second = Scripted::new("second", add("b"));
    let hooks = hooks_of(&[Arc::clone(&first), Arc::clone(&observer), Arc::clone(&second)]);
    let d = hooks.before_tool_call(&ctx(), call()).await;
    assert_eq!(
        d.value,
        ToolDecision::Rewrite { arguments: json!({"path": "notes.md", "a": true, "b": true}) }
    );
    assert_eq!(*first.seen.lock().unwrap(), vec![json!({"path": "notes.md"})]);
    assert_eq!(*observer.seen.lock().unwrap(), vec![json!({"path": "notes.md", "a": true})]);
    assert_eq!(*second.seen.lock().unwrap(), vec![json!({"path": "notes.md", "a": true})]);
}

#[tokio::test]
async fn a_restrictive_decision_beats_a_rewrite() {
    let hooks = hooks_of(&[
        Scripted::returning("rewrite", ToolDecision::Rewrite { arguments: json!({}) }),
        Scripted::returning("skip", ToolDecision::Skip { result: "no".into() }),
    ]);
    let d = hooks.before_tool_call(&ctx(), call()).await;
    assert_eq!(d.value, ToolDecision::Skip { result: "no".into() });
}

#[tokio::test]
async fn errors_and_panics_are_faults_and_every_hook_is_still_called_fail_open() {
    let bad = Scripted::failing("bad", "boom");
    let wild = Scripted::panicking("wild");
    let good = Scripted::returning("good", ToolDecision::Continue);
    let hooks = hooks_of(&[Arc::clone(&bad), Arc::clone(&wild), Arc::clone(&good)]);
    assert_eq!(hooks.failure(), HookFailure::Open);

    let d = hooks.before_tool_call(&ctx(), call()).await;
    let expected = vec![
        fault("bad", HookPoint::BeforeToolCall, "boom", false),
        fault("wild", HookPoint::BeforeToolCall, "kaboom in kaos-vfs-read", true),
    ];
    assert_eq!((d.value.clone(), d.faults.clone(), d.stop()), (ToolDecision::Continue, expected, None));
    assert_eq!(good.calls.load(Ordering::SeqCst), 1);

    let d = hooks.turn_start(&ctx()).await;
    let expected = vec![
        fault("bad", HookPoint::TurnStart, "boom", false),
        fault("wild", HookPoint::TurnStart, "kaboom in kaos-vfs-read", true),
    ];
    assert_eq!((d.faults.clone(), d.stop()), (expected, None));

    let d = hooks.on_event(&event());
    assert_eq!(
        d.faults.iter().map(|f| (f.point, f.panicked)).collect::<Vec<_>>(),
        [(HookPoint::Event, false), (HookPoint::Event, true)]
    );
    assert_eq!(good.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn fail_closed_denies_tool_calls_and_stops_elsewhere() {
    let hooks = hooks_of(&[
        Scripted::returning("approve", ToolDecision::RequireApproval { reason: "ask".into() }),
        Scripted::failing("bad", "boom"),
        Scripted::panicking("wild"),
    ])
    .with_failure(HookFailure::Closed);

    let d = hooks.before_tool_call(&ctx(), call()).await;
    assert_eq!(d.value, ToolDecision::Deny { reason: "hook bad failed: boom".into() });
    assert_eq!(d.faults.len(), 2);
    assert_eq!(d.stop(), None, "a before-tool failure is a denial, not a stop");

    let response = ModelResponse::text("scripted:echo", "hi");
    let d = hooks.after_model_call(&ctx(), &response).await;
    assert_eq!(d.stop(), Some(&fault("bad", HookPoint::AfterModelCall, "boom", false)));
    assert_eq!(d.stop().unwrap().to_string(), "hook bad failed in after_model_call: boom");

    let d = hooks.on_event(&event());
    assert_eq!(d.stop(), Some(&fault("bad", HookPoint::Event, "boom", false)));

    let clean =
        hooks_of(&[Scripted::returning("ok", ToolDecision::Continue)]).with_failure(HookFailure::Closed);
    let d = clean.turn_start(&ctx()).await;
    assert!(d.is_clean());
    assert_eq!(d.stop(), None);
}

#[tokio::test]
async fn a_non_string_panic_payload_is_still_a_fault() {
    let hooks = hooks_of(&[Scripted::new("odd", |_| std::panic::panic_any(42_u8))]);
    let d = hooks.before_tool_call(&ctx(), call()).await;
    assert_eq!(
        d.faults,
        vec![fault("odd", HookPoint::BeforeToolCall, "panic with a non-string payload", true)]
    );
}

#[test]
fn hooks_debug_names_the_hooks_and_clones_share_them() {
    let hooks = Hooks::new().with(LoggingHook::new()).with_shared(Arc::new(CostTracker::new()));
    let clone = hooks.clone();
    assert_eq!(clone.len(), 2);
    assert_eq!(clone.names().collect::<Vec<_>>(), ["logging", "cost"]);
    assert_eq!(format!("{hooks:?}"), r#"Hooks { hooks: ["logging", "cost"], failure: Open }"#);
}

#[test]
fn a_fault_serializes_flat() {
    let value = serde_json::to_value(fault("audit", HookPoint::AfterToolCall, "disk full", false)).unwrap();
    assert_eq!(
        value,
        json!({"hook": "audit", "point": "after_tool_call", "message": "disk full", "panicked": false})
    );
}

fn decision_strategy() -> impl Strategy<Value = ToolDecision> {
    prop_oneof![
        Just(ToolDecision::Continue),
        (0..100_u32).prop_map(|n| ToolDecision::Rewrite { arguments: json!({"n": n}) }),
        "[a-z]{0,4}".prop_map(|result| ToolDecision::Skip { result }),
        "[a-z]{0,4}".prop_map(|reason| ToolDecision::RequireApproval { reason }),
        "[a-z]{0,4}".prop_map(|reason| ToolDecision::Deny { reason }),
    ]
}

/// What combining `decisions` in order must give.
fn expected(decisions: &[ToolDecision]) -> ToolDecision {
    let max = decisions.iter().map(ToolDecision::severity).max().unwrap_or(0);
    if max >= 2 {
        return decisions.iter().find(|d| d.severity() == max).cloned().unwrap();
    }
    match decisions.iter().rev().find(|d| d.severity() == 1) {
        Some(rewrite) => rewrite.clone(),
        None => ToolDecision::Continue,
    }
}

proptest! {
    #[test]
    fn dispatch_combines_any_decisions_to_the_most_restrictive(
        decisions in prop::collection::vec(decision_strategy(), 0..7),
        failing in prop::collection::vec(any::<bool>(), 7),
        closed in any::<bool>(),
    ) {
        let mut hooks = Vec::new();
        let mut effective = Vec::new();
        for (i, decision) in decisions.iter().enumerate() {
            if failing[i] {
                hooks.push(Scripted::failing(&format!("h{i}"), "boom"));
                if closed {
                    effective.push(ToolDecision::Deny { reason: format!("hook h{i} failed: boom") });
                }
            } else {
                hooks.push(Scripted::returning(&format!("h{i}"), decision.clone()));
                effective.push(decision.clone());
            }
        }
        let failure = if closed { HookFailure::Closed } else { HookFailure::Open };
        let d = rt().block_on(hooks_of(&hooks).with_failure(failure).before_tool_call(&ctx(), call()));
        prop_assert_eq!(&d.value, &expected(&effective));
        prop_assert_eq!(d.faults.len(), failing[..decisions.len()].iter().filter(|f| **f).count());
        // The severity does not depend on the order.
        let mut reversed = hooks.clone();
        reversed.reverse();
        let r = rt().block_on(hooks_of(&reversed).with_failure(failure).before_tool_call(&ctx(), call()));
        prop_assert_eq!(r.value.severity(), d.value.severity());
    }
}

// ---------------------------------------------------------------------------------------------
// CostTracker

fn priced(model: &str, input: u64, output: u64, cost: Option<f64>) -> ModelResponse {
    let mut response = ModelResponse::text(model, "ok");
    response.usage = Usage::new(input, output);
    response.cost_usd = cost;
    response
}

#[tokio::test]
async fn cost_tracker_sums_per_session_and_in_total() {
    let tracker = CostTracker::new();
    let hooks = Hooks::new().with(tracker.clone());
    let s1 = ctx();
    let s2 = HookContext::new("s2", "run-2", 1);

    let _ = hooks.after_model_call(&s1, &priced("m", 100, 10, Some(0.25))).await;
    let _ = hooks.after_model_call(&s1, &priced("m", 50, 5, None)).await;
    let _ = hooks.after_model_call(&s2, &priced("m", 1, 2, Some(0.5))).await;
    let _ = hooks.after_tool_call(&s1, &call(), &ToolResult::text("fine")).await;
    let mut failed = ToolResult::text("nope");
    failed.is_error = true;
    let _ = hooks.after_tool_call(&s2, &call(), &failed).await;

    let one = CostTotals {
        cost_usd: 0.25,
        usage: Usage::new(150, 15),
        model_calls: 2,
        unpriced_model_calls: 1,
        tool_calls: 1,
        failed_tool_calls: 0,
    };
    let two = CostTotals {
        cost_usd: 0.5,
        usage: Usage::new(1, 2),
        model_calls: 1,
        unpriced_model_calls: 0,
        tool_calls: 1,
        failed_tool_calls: 1,
    };
    assert_eq!(tracker.session("s1"), Some(one));
    assert_eq!(tracker.session("s2"), Some(two));
    assert_eq!(tracker.session("s3"), None);
    assert_eq!(tracker.sessions(), vec![("s1".to_owned(), one), ("s2".to_owned(), two)]);
    assert_eq!(
        tracker.total(),
        CostTotals {
            cost_usd: 0.75,
            usage: Usage::new(151, 17),
            model_calls: 3,
            unpriced_model_calls: 1,
            tool_calls: 2,
            failed_tool_calls: 1,
        }
    );
    assert_eq!(tracker.forget_session("s1"), Some(one));
    assert_eq!(tracker.session("s1"), None);
    assert_eq!(tracker.total().model_calls, 3);
}

#[tokio::test]
async fn cost_tracker_is_safe_to_share_across_tasks() {
    let tracker = CostTracker::new();
    let hooks = Hooks::new().with(tracker.clone());
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let hooks = hooks.clone();
            tokio::spawn(async move {
                let ctx = HookContext::new(format!("s{}", i % 2), "run", 1);
                for _ in 0..25 {
                    let _ = hooks.after_model_call(&ctx, &priced("m", 1, 1, Some(0.5))).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!((tracker.total().model_calls, tracker.total().cost_usd), (200, 100.0));
    assert_eq!(tracker.session("s0").map(|t| t.usage), Some(Usage::new(100, 100)));
}

// ---------------------------------------------------------------------------------------------
// AuditTrail

async fn audit_lines(vfs: &MemoryVfs, path: &str) -> Vec<Value> {
    let bytes = vfs.read(&VfsPath::new(path).unwrap()).await.unwrap();
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(text.ends_with('\n'));
    text.lines()
        .map(|line| {
            let mut value: Value = serde_json::from_str(line).unwrap();
            let ts = value.as_object_mut().unwrap().remove("timestamp_ms").unwrap();
            assert!(ts.as_u64().unwrap() > 0);
            value
        })
        .collect()
}

#[tokio::test]
async fn audit_trail_writes_one_redacted_line_per_callback() {
    let vfs = Arc::new(MemoryVfs::new());
    let hooks = Hooks::new().with(AuditTrail::new(vfs.clone())).with_failure(HookFailure::Closed);
    let ctx = ctx();
    let secret_call = ToolCallInfo::new(
        "call-1",
        "http-get",
        json!({"url": "https://x.test", "headers": {"Authorization": "Bearer abc123"}, "api_key": "k-123",
               "env": "OPENAI_API_KEY=sk-proj-aaaaaaaaaaaaaaaaaaaaaaaa make"}),
    );
    let request = ModelRequest::new("scripted:echo", vec![Message::user("hi")]);
    let mut response = ModelResponse::text("scripted:echo", "");
    response.tool_calls = vec![ToolCall::new("call-1", "http-get", json!({}))];
    response.finish_reason = FinishReason::ToolCalls;
    response.usage = Usage::new(3, 4);
    response.cost_usd = Some(0.5);
    let result = ToolResult::text("token=abc123 and AKIAIOSFODNN7EXAMPLE");
    let turn = TurnResponse {
        text: "done".into(),
        stop_reason: StopReason::Completed,
        tool_calls: vec![ToolCallRecord {
            call_id: "call-1".into(),
            name: "http-get".into(),
            arguments: json!({}),
            result: "x".into(),
            is_error: false,
        }],
        usage: Usage::new(3, 4),
        cost_usd: 0.5,
        unpriced_model_calls: 0,
        model_calls: 1,
        turn_number: 3,
        run_id: "run-1".into(),
        session_id: "s1".into(),
        agent: "assistant".into(),
        agent_fingerprint: "sha256:abc".into(),
        pending_approval: None,
    };

    let faults: Vec<HookFault> = [
        hooks.turn_start(&ctx).await.faults,
        hooks.before_model_call(&ctx, &request).await.faults,
        hooks.after_model_call(&ctx, &response).await.faults,
        hooks.before_tool_call(&ctx, secret_call.clone()).await.faults,
        hooks.after_tool_call(&ctx, &secret_call, &result).await.faults,
        hooks.turn_end(&ctx, &turn).await.faults,
        hooks.on_event(&event()).faults,
    ]
    .concat();
    assert_eq!(faults, vec![]);

    let base = json!({"session_id": "s1", "run_id": "run-1", "agent": "helper", "turn_number": 3});
    let with = |point: &str, details: Value| {
        let mut line = base.clone();
        line["point"] = json!(point);
        line.as_object_mut().unwrap().extend(details.as_object().unwrap().clone());
        line
    };
    let redacted_args = json!({"url": "https://x.test", "headers": {"Authorization": "[redacted]"},
                               "api_key": "[redacted]", "env": "OPENAI_API_KEY=[redacted] make"});
    let usage = serde_json::to_value(Usage::new(3, 4)).unwrap();
    assert_eq!(
        audit_lines(&vfs, "audit/s1.jsonl").await,
        vec![
            with("turn_start", json!({})),
            with("before_model_call", json!({"model": "scripted:echo", "messages": 1, "tools": 0})),
            with(
                "after_model_call",
                json!({"model": "scripted:echo", "usage": usage, "cost_usd": 0.5, "finish_reason": "tool_calls",
                   "tool_calls": [{"name": "http-get", "call_id": "call-1"}]})
            ),
            with(
                "before_tool_call",
                json!({"tool": "http-get", "call_id": "call-1", "arguments": redacted_args})
            ),
            with(
                "after_tool_call",
                json!({"tool": "http-get", "call_id": "call-1", "arguments": redacted_args, "is_error": false,
                   "result": "token=[redacted] and [redacted]"})
            ),
            with(
                "turn_end",
                json!({"stop_reason": "completed", "model_calls": 1, "tool_calls": ["http-get"], "usage": usage,
                   "cost_usd": 0.5})
            ),
        ]
    );
}

#[tokio::test]
async fn audit_trail_prefix_and_failures() {
    let vfs = Arc::new(MemoryVfs::new());
    let audit = AuditTrail::new(vfs.clone()).with_prefix("logs/audit").unwrap();
    assert_eq!(audit.path_for("s9").unwrap().as_str(), "logs/audit/s9.jsonl");
    assert!(AuditTrail::new(vfs.clone()).with_prefix("../up").is_err());
    let hooks = Hooks::new().with(audit).with_failure(HookFailure::Closed);
    assert!(hooks.turn_start(&HookContext::new("s9", "r", 1)).await.is_clean());
    assert_eq!(audit_lines(&vfs, "logs/audit/s9.jsonl").await.len(), 1);

    // A session id that cannot be a file name fails the hook; fail closed denies the call.
    let d = hooks.before_tool_call(&HookContext::new("../x", "r", 1), call()).await;
    assert_eq!(d.faults.len(), 1);
    assert_eq!(d.value.severity(), 4);
    // Appending below a file fails too.
    vfs.write(&VfsPath::new("blocked").unwrap(), "x".into()).await.unwrap();
    let blocked = Hooks::new().with(AuditTrail::new(vfs.clone()).with_prefix("blocked").unwrap());
    let d = blocked.turn_start(&ctx()).await;
    assert_eq!(d.faults.len(), 1);
    assert!(d.faults[0].message.starts_with("cannot append to blocked/s1.jsonl"), "{}", d.faults[0].message);
}

// ---------------------------------------------------------------------------------------------
// Redaction

#[test]
fn redaction_by_key_and_by_value() {
    let input = json!({
        "API_KEY": "plain",
        "nested": [{"password": {"deep": 1}}, {"max_tokens": 100, "token_count": 3}],
        "Cookie": "a=b",
        "client_secret": 12,
        "x-api-key": "v",
        "refresh_token": "r",
        "github": "ghp_abcdefghijklmnopqrstuvwxyz0123",
        "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXZhbHVl",
        "aws": "id AKIAIOSFODNN7EXAMPLE end",
        "header": "Authorization: Bearer tok-1",
        "auth_header": "x",
        "stringified": "{\"password\":\"p\"}",
        "prose": "Bearer with me: password is not set, sk-short",
        "n": 3,
        "path": "notes.md",
    });
    assert_eq!(
        redact(&input),
        json!({
            "API_KEY": "[redacted]",
            "nested": [{"password": "[redacted]"}, {"max_tokens": 100, "token_count": 3}],
            "Cookie": "[redacted]",
            "client_secret": "[redacted]",
            "x-api-key": "[redacted]",
            "refresh_token": "[redacted]",
            "github": "[redacted]",
            "jwt": "[redacted]",
            "aws": "id [redacted] end",
            "header": "Authorization: Bearer [redacted]",
            "auth_header": "x",
            "stringified": "{\"password\":\"[redacted]\"}",
            "prose": "Bearer [redacted] me: password is not set, sk-short",
            "n": 3,
            "path": "notes.md",
        })
    );
}

/// A JSON value with `secret` somewhere in it: under a secret-named key, or as (part of) a
/// string, at any depth.
fn with_secret(secret: String, recognizable: bool) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        "[a-z ]{0,8}".prop_map(Value::String),
        any::<i32>().prop_map(Value::from),
        Just(Value::Null),
    ];
    let noise = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let key =
        prop::sample::select(vec!["api_key", "Password", "AUTHORIZATION", "x-auth-token", "private_key"]);
    let mut placements = vec![
        Value::String(format!("Bearer {secret}")),
        Value::String(format!("TOKEN={secret}")),
        Value::String(format!("{{\"db_password\": \"{secret}\"}}")),
        Value::String(json!({"pwd": secret}).to_string()),
    ];
    if recognizable {
        placements.push(Value::String(secret.clone()));
        placements.push(Value::String(format!("see {secret} here")));
    }
    let placed =
        prop_oneof![key.prop_map(move |k| json!({ k: secret.clone() })), prop::sample::select(placements),];
    (noise, placed, prop::collection::vec((0..4_usize, "[a-z]{1,5}"), 0..5)).prop_map(
        |(noise, placed, path)| {
            // Wrap the secret in arrays and objects along a random path, then next to the noise.
            let mut value = placed;
            for (kind, key) in path {
                value = match kind {
                    0 => json!([value]),
                    1 => json!({ key: value }),
                    2 => json!([noise.clone(), value]),
                    _ => json!({ key: value, "noise_": noise.clone() }),
                };
            }
            json!([noise, value])
        },
    )
}

fn secret_strategy() -> impl Strategy<Value = (String, bool)> {
    prop_oneof![
        // Any value, found by its key or its context.
        "[A-Z0-9]{6,24}".prop_map(|s| (s, false)),
        // Values that look like secrets wherever they are.
        "[A-Za-z0-9]{20,30}".prop_map(|s| (format!("sk-{s}"), true)),
        "[A-Z0-9]{16}".prop_map(|s| (format!("AKIA{s}"), true)),
        "[A-Za-z0-9]{20}".prop_map(|s| (format!("ghp_{s}"), true)),
    ]
}

proptest! {
    #[test]
    fn a_secret_never_survives_redaction(
        (secret, value) in secret_strategy()
            .prop_flat_map(|(secret, recognizable)| (Just(secret.clone()), with_secret(secret, recognizable)))
    ) {
        let redacted = redact(&value).to_string();
        prop_assert!(value.to_string().contains(&secret));
        prop_assert!(!redacted.contains(&secret), "{} in {}", secret, redacted);
    }

    #[test]
    fn a_recognizable_secret_is_redacted_anywhere(
        (secret, _) in secret_strategy().prop_filter("recognizable", |(_, r)| *r),
        key in "[a-z]{1,6}",
        prefix in "[a-z ]{0,6}",
    ) {
        let value = json!({ key: [format!("{prefix} {secret}")] });
        prop_assert!(!redact(&value).to_string().contains(&secret));
    }
}

// ---------------------------------------------------------------------------------------------
// RateLimiter

fn limiter(clock: &Arc<ManualClock>) -> RateLimiter {
    RateLimiter::new([RateLimit::new("web-*", 2, 1.0), RateLimit::new("*", 1, 0.0)])
        .unwrap()
        .with_clock(clock.clone())
}

fn tool(name: &str) -> ToolCallInfo {
    ToolCallInfo::new("c", name, json!({}))
}

#[tokio::test]
async fn rate_limiter_refills_on_the_clock() {
    let clock = Arc::new(ManualClock::new());
    clock.advance(Duration::from_secs(100)); // buckets start full whenever the clock starts
    let hooks = Hooks::new().with(limiter(&clock));
    let decide = |name: &'static str| {
        let hooks = hooks.clone();
        async move { hooks.before_tool_call(&ctx(), tool(name)).await.value }
    };
    let skip = |ms: u64| ToolDecision::Skip { result: format!("rate limited: try again in {ms} ms") };

    assert_eq!(decide("web-get").await, ToolDecision::Continue);
    assert_eq!(decide("web-post").await, ToolDecision::Continue, "one bucket per rule, shared by its tools");
    assert_eq!(decide("web-get").await, skip(1000));
    clock.advance(Duration::from_millis(250));
    assert_eq!(decide("web-get").await, skip(750));
    clock.advance(Duration::from_millis(750));
    assert_eq!(decide("web-get").await, ToolDecision::Continue);
    assert_eq!(decide("web-get").await, skip(1000));
    // Refills stop at the capacity.
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        [decide("web-get").await, decide("web-get").await, decide("web-get").await],
        [ToolDecision::Continue, ToolDecision::Continue, skip(1000)]
    );
    // The first matching rule applies: everything else gets one call, never refilled.
    assert_eq!(decide("kaos-vfs-read").await, ToolDecision::Continue);
    assert_eq!(
        decide("kaos-vfs-write").await,
        ToolDecision::Skip { result: "rate limited: no calls left for this tool".into() }
    );
}

#[tokio::test]
async fn rate_limiter_can_deny_and_leaves_unmatched_tools_alone() {
    let clock = Arc::new(ManualClock::new());
    let limiter = RateLimiter::new([RateLimit::new("shell", 1, 2.0)])
        .unwrap()
        .with_clock(clock.clone())
        .with_action(RateLimitAction::Deny);
    assert_eq!(limiter.rule_for("shell"), Some(&RateLimit::new("shell", 1, 2.0)));
    assert_eq!(limiter.rule_for("other"), None);
    let hooks = Hooks::new().with(limiter);
    assert_eq!(hooks.before_tool_call(&ctx(), tool("shell")).await.value, ToolDecision::Continue);
    assert_eq!(
        hooks.before_tool_call(&ctx(), tool("shell")).await.value,
        ToolDecision::Deny { reason: "rate limited: try again in 500 ms".into() }
    );
    for _ in 0..10 {
        assert_eq!(hooks.before_tool_call(&ctx(), tool("other")).await.value, ToolDecision::Continue);
    }
}

#[test]
fn rate_limiter_rejects_bad_rules() {
    let err = |limit: RateLimit| RateLimiter::new([limit]).err().unwrap();
    assert_eq!(
        err(RateLimit::new("a", 0, 1.0)),
        RateLimitError::InvalidLimit { glob: "a".into(), message: "capacity must be at least 1".into() }
    );
    assert!(matches!(err(RateLimit::new("a", 1, -1.0)), RateLimitError::InvalidLimit { .. }));
    assert!(matches!(err(RateLimit::new("a", 1, f64::NAN)), RateLimitError::InvalidLimit { .. }));
    assert!(matches!(err(RateLimit::new("a[", 1, 1.0)), RateLimitError::InvalidGlob { .. }));
}

// ---------------------------------------------------------------------------------------------
// LoggingHook

#[tokio::test]
async fn logging_hook_never_fails_nor_decides() {
    let hooks = Hooks::new().with(LoggingHook::new()).with_failure(HookFailure::Closed);
    let request = ModelRequest::new("m", vec![Message::user("hi")]);
    assert!(hooks.turn_start(&ctx()).await.is_clean());
    assert!(hooks.before_model_call(&ctx(), &request).await.is_clean());
    assert!(hooks.after_model_call(&ctx(), &priced("m", 1, 1, None)).await.is_clean());
    let d = hooks.before_tool_call(&ctx(), call()).await;
    assert_eq!((d.value, d.faults), (ToolDecision::Continue, vec![]));
    assert!(hooks.after_tool_call(&ctx(), &call(), &ToolResult::text("ok")).await.is_clean());
    assert!(hooks.on_event(&event()).is_clean());
}

//! The permission policy's evaluation order, checked against an independent model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kaos_agent::{Agent, Decision, PermissionRule};
use kaos_runner::{PermissionPolicy, Verdict, VerdictReason};
use kaos_tools::ToolAnnotations;
use proptest::prelude::*;
use serde_json::{Value, json};

const TOOLS: &[&str] = &["kaos-vfs-read", "kaos-vfs-write", "kaos-vfs-delete", "web-fetch"];
const TOOL_GLOBS: &[&str] = &["kaos-vfs-read", "kaos-vfs-write", "web-fetch", "*", "kaos-vfs-*", "*-delete"];
const ARG_GLOBS: &[&str] = &["secrets/*", "*", "notes.md"];

/// What the globs above match, written without globset.
fn glob_matches(glob: &str, text: &str) -> bool {
    match (glob.strip_suffix('*'), glob.strip_prefix('*')) {
        _ if glob == "*" => true,
        (Some(prefix), _) => text.starts_with(prefix),
        (_, Some(suffix)) => text.ends_with(suffix),
        _ => glob == text,
    }
}

fn rule_matches(rule: &PermissionRule, tool: &str, args: &Value) -> bool {
    glob_matches(&rule.tool, tool)
        && rule
            .args
            .iter()
            .all(|(name, glob)| args.get(name).and_then(Value::as_str).is_some_and(|v| glob_matches(glob, v)))
}

/// The documented order: requires_confirmation → rules (first match) → read_only → destructive → allow.
fn model(rules: &[PermissionRule], tool: &str, args: &Value, a: &ToolAnnotations) -> Verdict {
    if a.requires_confirmation {
        return Verdict::new(Decision::Ask, VerdictReason::RequiresConfirmation);
    }
    if let Some(i) = rules.iter().position(|r| rule_matches(r, tool, args)) {
        return Verdict::new(rules[i].decision, VerdictReason::Rule(i));
    }
    match (a.read_only, a.destructive) {
        (true, _) => Verdict::new(Decision::Allow, VerdictReason::ReadOnly),
        (false, true) => Verdict::new(Decision::Ask, VerdictReason::Destructive),
        (false, false) => Verdict::new(Decision::Allow, VerdictReason::Default),
    }
}

fn decision() -> impl Strategy<Value = Decision> {
    prop_oneof![Just(Decision::Allow), Just(Decision::Ask), Just(Decision::Deny)]
}

fn rule() -> impl Strategy<Value = PermissionRule> {
    (prop::sample::select(TOOL_GLOBS), prop::option::of(prop::sample::select(ARG_GLOBS)), decision())
        .prop_map(|(tool, arg, decision)| {
            let rule = PermissionRule::new(tool, decision);
            match arg {
                Some(glob) => rule.with_arg("path", glob),
                None => rule,
            }
        })
}

fn arguments() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        Just(json!({"path": 7})),
        prop::sample::select(&["secrets/a", "secrets/b/c", "notes.md", "x"][..])
            .prop_map(|p| json!({"path": p})),
    ]
}

fn annotations() -> impl Strategy<Value = ToolAnnotations> {
    any::<(bool, bool, bool)>().prop_map(|(read_only, destructive, confirm)| {
        ToolAnnotations::default()
            .with_read_only(read_only)
            .with_destructive(destructive)
            .with_requires_confirmation(confirm)
    })
}

proptest! {
    #[test]
    fn evaluation_follows_the_documented_order(
        rules in prop::collection::vec(rule(), 0..6),
        tool in prop::sample::select(TOOLS),
        args in arguments(),
        annotations in annotations(),
    ) {
        let agent = rules.iter().cloned().fold(Agent::builder(), |b, r| b.permission(r)).build().unwrap();
        let policy = PermissionPolicy::from_agent(&agent).unwrap();
        prop_assert_eq!(policy.evaluate(tool, &args, &annotations), model(&rules, tool, &args, &annotations));
    }
}

#[test]
fn a_rule_with_argument_globs_needs_every_argument_to_be_a_matching_string() {
    let rule = PermissionRule::deny("kaos-vfs-write").with_arg("path", "secrets/*").with_arg("mode", "a*");
    let policy = PermissionPolicy::from_rules(&[rule]).unwrap();
    let default = ToolAnnotations::default();
    let eval = |args: Value| policy.evaluate("kaos-vfs-write", &args, &default);
    assert_eq!(
        eval(json!({"path": "secrets/x", "mode": "append"})),
        Verdict::new(Decision::Deny, VerdictReason::Rule(0))
    );
    assert_eq!(eval(json!({"path": "secrets/x"})), Verdict::new(Decision::Allow, VerdictReason::Default));
    assert_eq!(
        eval(json!({"path": "secrets/x", "mode": 1})),
        Verdict::new(Decision::Allow, VerdictReason::Default)
    );
    assert_eq!(eval(json!("not an object")), Verdict::new(Decision::Allow, VerdictReason::Default));
}

#[test]
fn globs_are_case_sensitive() {
    let policy = PermissionPolicy::from_rules(&[PermissionRule::deny("Kaos-*")]).unwrap();
    let verdict = policy.evaluate("kaos-vfs-read", &json!({}), &ToolAnnotations::default());
    assert_eq!(verdict, Verdict::new(Decision::Allow, VerdictReason::Default));
}

#[test]
fn verdicts_serialize_with_the_deciding_rule() {
    let verdicts = [
        Verdict::new(Decision::Deny, VerdictReason::Rule(2)),
        Verdict::new(Decision::Ask, VerdictReason::RequiresConfirmation),
    ];
    assert_eq!(
        serde_json::to_value(verdicts).unwrap(),
        json!([
            {"decision": "deny", "reason": {"rule": 2}},
            {"decision": "ask", "reason": "requires_confirmation"},
        ])
    );
}

//! **Where every tool call is admitted.** A call the model makes is resolved once into a
//! [`Callee`] — a registered or MCP-mounted tool, memory search, a delegate, a handoff, or a
//! name nobody offers — and every callee passes the same stages, in this order:
//!
//! 1. **policy**: the run's [`PermissionPolicy`] (a `permission_decided` event for every call);
//!    deny → an error result, ask → pause for a person (unless approved in this run);
//! 2. **hooks**: the before-tool hooks (rewrite, skip, deny, require approval);
//! 3. **limits**: what only a kind of callee has — an unknown name is answered with an error
//!    result here, *after* the policy and the hooks; a delegate at the depth limit, a handoff
//!    over the turn's handoff limit are error results;
//! 4. **breaker**: a registered tool or a remote (A2A) delegate whose circuit breaker is open
//!    is an error result;
//! 5. **budget**: the turn's tool-call and wall-clock caps (a stop, not a result).
//!
//! Only then does the call run ([`tools`](super::tools) runs and records it). The order is a
//! security property: it is fixed here, not composed by users (optional policies, such as
//! rate limits, are hooks).

use std::sync::Arc;

use kaos_agent::{Decision, Delegate};
use kaos_providers::ToolCall;
use kaos_tools::{Tool, ToolAnnotations, ToolError, ToolResult};
use serde_json::Value;

use super::Cx;
use super::state::Progress;
use crate::events::EventKind;
use crate::guard::{Availability, Exceeded, VerdictReason};
use crate::hooks::{ToolCallInfo, ToolDecision};
use crate::member::Member;
use kaos_session::MEMORY_SEARCH_TOOL;

/// What a call's name refers to in this turn.
#[derive(Clone)]
pub(crate) enum Callee<'a> {
    /// A tool selected for the agent (registered in the runtime, or mounted from MCP).
    Tool(&'a Arc<dyn Tool>),
    /// The built-in memory search, offered when memory holds more than the context shows.
    MemorySearch,
    /// A sub-agent offered as a tool.
    Delegate(&'a Delegate),
    /// `handoff_to_<name>`: the named agent takes the conversation over.
    Handoff(&'a str),
    /// Nothing offered in this turn has this name.
    Unknown,
}

impl<'a> Callee<'a> {
    /// What `name` refers to for `member` in this turn (`offered` is what the model was shown).
    pub(crate) fn resolve(member: &'a Member, progress: &Progress, name: &str) -> Self {
        let offered = progress.offered.iter().any(|t| t.name == name);
        if let Some(tool) = member.tools.get(name) {
            return Callee::Tool(tool);
        }
        if !offered {
            return Callee::Unknown;
        }
        if name == MEMORY_SEARCH_TOOL {
            return Callee::MemorySearch;
        }
        if let Some(delegate) = member.delegate(name) {
            return Callee::Delegate(delegate);
        }
        match member.handoff_target(name) {
            Some(target) => Callee::Handoff(target),
            None => Callee::Unknown,
        }
    }

    /// The hints the policy and the hooks judge the call by.
    pub(crate) fn annotations(&self) -> ToolAnnotations {
        match self {
            Callee::Tool(tool) => tool.spec().annotations,
            Callee::MemorySearch => ToolAnnotations::read_only(),
            Callee::Delegate(_) | Callee::Handoff(_) | Callee::Unknown => ToolAnnotations::DEFAULT,
        }
    }

    /// Whether a circuit breaker guards the callee: a registered tool, or a remote agent.
    pub(crate) fn has_breaker(&self) -> bool {
        match self {
            Callee::Tool(_) => true,
            Callee::Delegate(delegate) => delegate.a2a.is_some(),
            Callee::MemorySearch | Callee::Handoff(_) | Callee::Unknown => false,
        }
    }

    /// Whether the call may run alongside other read-only calls.
    fn read_only(&self) -> bool {
        matches!(self, Callee::Tool(_) | Callee::MemorySearch) && self.annotations().read_only
    }
}

/// What admission says about one call.
#[derive(Debug)]
pub(crate) enum Gate {
    /// Run it, with the call's arguments or those a hook rewrote them to.
    Run {
        /// The arguments a hook rewrote the call's to; `None`: the call's own (not copied).
        arguments: Option<Value>,
        /// Whether it may run concurrently with neighbouring read-only calls.
        read_only: bool,
    },
    /// Do not run it; this is its result.
    Answer(ToolResult),
    /// Pause for a person's approval, for this reason.
    Pause(String),
    /// A budget stops the turn.
    Stop(Exceeded),
}

/// Admits one call to `callee`: policy → hooks → limits → breaker → budget.
pub(crate) async fn admit(cx: &Cx<'_>, progress: &Progress, call: &ToolCall, callee: &Callee<'_>) -> Gate {
    let annotations = callee.annotations();

    // 1) Policy.
    let verdict = cx.policy.evaluate(&call.name, &call.arguments, &annotations);
    let approved = progress.approved_calls.contains(&call.id) || progress.approved_tools.contains(&call.name);
    let by_person = verdict.decision == Decision::Ask && approved;
    let decision = if by_person { Decision::Allow } else { verdict.decision };
    // Written out only for an event or an answer (an allowed call with no one watching has none).
    let reason = || if by_person { "approved by a person".to_owned() } else { reason_text(verdict.reason) };
    cx.emit.emit_with(|| EventKind::PermissionDecided {
        call_id: call.id.clone(),
        tool_name: call.name.clone(),
        decision,
        reason: reason(),
    });
    match decision {
        Decision::Deny => {
            return Gate::Answer(ToolResult::error(format!(
                "Denied by the permission policy ({}); do not retry this call.",
                reason()
            )));
        }
        Decision::Ask => {
            return Gate::Pause(format!("the permission policy asks for approval ({})", reason()));
        }
        _ => {}
    }

    // 2) Hooks.
    let mut arguments = None;
    if !cx.member.hooks.is_empty() {
        let info =
            ToolCallInfo::new(&call.id, &call.name, call.arguments.clone()).with_annotations(annotations);
        let decided = cx.member.hooks.before_tool_call(cx.hook_cx, info).await;
        cx.emit.faults(&decided.faults, None);
        match decided.value {
            ToolDecision::Continue => {}
            ToolDecision::Rewrite { arguments: rewritten } => arguments = Some(rewritten),
            ToolDecision::Skip { result } => return Gate::Answer(ToolResult::text(result)),
            ToolDecision::RequireApproval { reason } if !approved => {
                return Gate::Pause(format!("a hook asks for approval: {reason}"));
            }
            ToolDecision::RequireApproval { .. } => {}
            ToolDecision::Deny { reason } => {
                return Gate::Answer(ToolResult::error(format!("Denied: {reason}")));
            }
        }
    }

    // 3) Limits of the kind of callee.
    match callee {
        Callee::Unknown => return Gate::Answer(ToolError::NotFound(call.name.clone()).into_result()),
        Callee::Delegate(_) if !cx.context.may_delegate() => {
            return Gate::Answer(ToolResult::error(format!(
                "Delegation depth limit reached ({} nested sub-agent(s)); do the task yourself.",
                cx.context.max_depth
            )));
        }
        Callee::Handoff(_) if progress.handoffs >= cx.context.max_depth => {
            return Gate::Answer(ToolResult::error(format!(
                "This turn already handed the conversation over {} time(s), the limit; answer yourself.",
                progress.handoffs
            )));
        }
        _ => {}
    }

    // 4) Breaker (registered tools and remote agents: the others cannot fail the way a
    // breaker counts).
    if callee.has_breaker()
        && let Availability::Unavailable(wait) = cx.member.breakers.acquire(&call.name)
    {
        return Gate::Answer(ToolResult::error(format!(
            "`{}` is unavailable: it failed repeatedly; try again in {} s or do without it.",
            call.name,
            wait.as_secs().max(1)
        )));
    }

    // 5) Budget.
    match cx.budget.before_tool_call() {
        Ok(()) => Gate::Run { arguments, read_only: callee.read_only() },
        Err(exceeded) => Gate::Stop(exceeded),
    }
}

fn reason_text(reason: VerdictReason) -> String {
    match reason {
        VerdictReason::RequiresConfirmation => "the tool requires confirmation".to_owned(),
        VerdictReason::Rule(i) => format!("permission rule {i}"),
        VerdictReason::ReadOnly => "read-only tool".to_owned(),
        VerdictReason::Destructive => "destructive tool".to_owned(),
        _ => "default".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use kaos_agent::{Agent, Budget, Decision, Delegate};
    use kaos_providers::ScriptedClient;
    use kaos_runtime::Runtime;
    use kaos_tools::{ToolAnnotations, tool_fn};
    use serde_json::json;

    use super::*;
    use crate::emit::OpenSpan;
    use crate::engine::fixture::{Fixture, progress};
    use crate::engine::{Delegator, state::Progress};
    use crate::events::SpanSubject;
    use crate::guard::BudgetGuard;
    use crate::hooks::{Hook, HookContext, HookError, Hooks};

    /// The engine never delegates in these tests.
    struct NoDelegation;

    #[async_trait]
    impl Delegator for NoDelegation {
        async fn delegate(
            &self,
            _cx: &mut Cx<'_>,
            _progress: &mut Progress,
            _delegate: &Delegate,
            _call_id: &str,
            _arguments: &Value,
            _tool_span: &OpenSpan,
        ) -> super::super::Delegated {
            super::super::Delegated::Done(ToolResult::error("no delegation here"))
        }
    }

    /// Records the calls the before-tool hooks are asked about.
    #[derive(Debug, Default, Clone)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    #[async_trait]
    impl Hook for Seen {
        fn name(&self) -> &str {
            "seen"
        }
        async fn before_tool_call(
            &self,
            _ctx: &HookContext,
            call: &ToolCallInfo,
        ) -> Result<ToolDecision, HookError> {
            self.0.lock().unwrap().push(call.name.clone());
            Ok(ToolDecision::Continue)
        }
    }

    fn runtime() -> Runtime {
        let read = tool_fn("read", "Reads.", |_: Value, _ctx| async move { Ok(ToolResult::text("r")) })
            .annotations(ToolAnnotations::read_only())
            .build()
            .unwrap();
        let wipe = tool_fn("wipe", "Wipes.", |_: Value, _ctx| async move { Ok(ToolResult::text("w")) })
            .build()
            .unwrap();
        Runtime::builder().tool(read).unwrap().tool(wipe).unwrap().build()
    }

    fn fixture(agent: Agent, seen: &Seen) -> Fixture {
        Fixture::new(agent, runtime(), Arc::new(ScriptedClient::new()), Hooks::new().with(seen.clone()))
    }

    /// Admits `name` offered as `offered`, under `budget`; the gate, the permission decisions
    /// emitted, and the calls the hooks saw.
    async fn gate(
        agent: Agent,
        offered: &[&str],
        name: &str,
        budget: Budget,
        edit: impl FnOnce(&mut Progress),
    ) -> (Gate, Vec<(String, Decision)>, Vec<String>) {
        let seen = Seen::default();
        let mut f = fixture(agent, &seen);
        let mut progress = progress(&f.member, offered);
        edit(&mut progress);
        let policy = f.context.policy(&f.member).unwrap();
        let span = f.emit.start(SpanSubject::Turn, "turn.1", None, serde_json::Map::new());
        let guard = BudgetGuard::new(budget, Default::default(), 0.0, 0, 0);
        let delegator = NoDelegation;
        let gate = {
            let cx = Cx::new(
                &f.member, &f.session, &f.emit, &span, &f.context, &policy, guard, &f.hook_cx, &delegator,
            );
            let call = ToolCall::new("c1", name, json!({}));
            let callee = Callee::resolve(cx.member, &progress, name);
            admit(&cx, &progress, &call, &callee).await
        };
        let decided = f
            .drain()
            .into_iter()
            .filter_map(|k| match k {
                EventKind::PermissionDecided { tool_name, decision, .. } => Some((tool_name, decision)),
                _ => None,
            })
            .collect();
        let seen = seen.0.lock().unwrap().clone();
        (gate, decided, seen)
    }

    fn agent() -> kaos_agent::AgentBuilder {
        Agent::builder().name("unit")
    }

    #[tokio::test]
    async fn every_kind_of_callee_gets_a_permission_decision_and_the_hooks() {
        let helper = Agent::builder().name("helper").build().unwrap();
        let with_delegate = || agent().delegate("helper", "Helps.", &helper).build().unwrap();
        let cases: [(Agent, &[&str], &str); 4] = [
            (agent().build().unwrap(), &["read"], "read"),
            (agent().build().unwrap(), &["kaos-memory-search"], "kaos-memory-search"),
            (with_delegate(), &["helper"], "helper"),
            (agent().build().unwrap(), &[], "no-such-tool"),
        ];
        for (agent, offered, name) in cases {
            let (gate, decided, seen) = gate(agent, offered, name, Budget::unlimited(), |_| {}).await;
            assert_eq!(decided, [(name.to_owned(), Decision::Allow)], "{name}");
            assert_eq!(seen, [name], "{name}");
            match name {
                "no-such-tool" => {
                    assert!(
                        matches!(&gate, Gate::Answer(r) if r.is_error && r.to_model_text().contains(name)),
                        "{gate:?}"
                    )
                }
                "read" | "kaos-memory-search" => {
                    assert!(matches!(gate, Gate::Run { read_only: true, .. }), "{name}: {gate:?}")
                }
                _ => assert!(matches!(gate, Gate::Run { read_only: false, .. }), "{name}: {gate:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_deny_rule_answers_before_any_hook_for_every_kind_of_callee() {
        for name in ["read", "kaos-memory-search", "no-such-tool"] {
            let denying = agent().permit(name, Decision::Deny).build().unwrap();
            let (gate, decided, seen) =
                gate(denying, &["read", "kaos-memory-search"], name, Budget::unlimited(), |_| {}).await;
            assert_eq!(decided, [(name.to_owned(), Decision::Deny)]);
            assert!(seen.is_empty(), "{name}: {seen:?}");
            let Gate::Answer(result) = gate else { panic!("{gate:?}") };
            assert_eq!(
                result.to_model_text(),
                "Error: Denied by the permission policy (permission rule 0); do not retry this call."
            );
        }
    }

    #[tokio::test]
    async fn ask_pauses_unless_approved_in_this_run() {
        let asking = || agent().permit("wipe", Decision::Ask).build().unwrap();
        let (gate1, decided, _) = gate(asking(), &["wipe"], "wipe", Budget::unlimited(), |_| {}).await;
        assert!(matches!(gate1, Gate::Pause(_)), "{gate1:?}");
        assert_eq!(decided, [("wipe".to_owned(), Decision::Ask)]);
        let (gate2, decided, _) = gate(asking(), &["wipe"], "wipe", Budget::unlimited(), |p| {
            p.approved_calls.insert("c1".into());
        })
        .await;
        assert!(matches!(gate2, Gate::Run { read_only: false, .. }), "{gate2:?}");
        assert_eq!(decided, [("wipe".to_owned(), Decision::Allow)]);
    }

    #[tokio::test]
    async fn memory_search_not_offered_is_an_unknown_name() {
        let (gate, decided, seen) =
            gate(agent().build().unwrap(), &[], "kaos-memory-search", Budget::unlimited(), |_| {}).await;
        assert_eq!(decided.len(), 1);
        assert_eq!(seen, ["kaos-memory-search"]);
        assert!(matches!(&gate, Gate::Answer(r) if r.is_error), "{gate:?}");
    }

    #[tokio::test]
    async fn limits_breaker_and_budget_come_after_policy_and_hooks() {
        // The tool-call budget is spent: a stop, after the decision and the hooks.
        let (gate1, decided, seen) = gate(
            agent().build().unwrap(),
            &["read"],
            "read",
            Budget::unlimited().with_max_tool_calls(0),
            |_| {},
        )
        .await;
        assert!(matches!(gate1, Gate::Stop(_)), "{gate1:?}");
        assert_eq!((decided.len(), seen.len()), (1, 1));
        // A handoff over the turn's limit is an error result.
        let target = Agent::builder().name("billing").build().unwrap();
        let handing = agent().handoff(&target).max_delegation_depth(1).build().unwrap();
        let (gate2, _, seen) =
            gate(handing, &["handoff_to_billing"], "handoff_to_billing", Budget::unlimited(), |p| {
                p.handoffs = 1
            })
            .await;
        assert!(
            matches!(&gate2, Gate::Answer(r) if r.to_model_text().contains("handed the conversation over 1 time")),
            "{gate2:?}"
        );
        assert_eq!(seen, ["handoff_to_billing"]);
    }

    #[tokio::test]
    async fn an_open_breaker_answers_for_a_registered_tool() {
        let seen = Seen::default();
        let f = fixture(agent().build().unwrap(), &seen);
        // One failure opens a breaker in the fixture.
        let _ = f.member.breakers.record("wipe", false);
        let progress = progress(&f.member, &["wipe"]);
        let policy = f.context.policy(&f.member).unwrap();
        let span = f.emit.start(SpanSubject::Turn, "turn.1", None, serde_json::Map::new());
        let guard = BudgetGuard::new(Budget::unlimited(), Default::default(), 0.0, 0, 0);
        let delegator = NoDelegation;
        let cx = Cx::new(
            &f.member, &f.session, &f.emit, &span, &f.context, &policy, guard, &f.hook_cx, &delegator,
        );
        let call = ToolCall::new("c1", "wipe", json!({}));
        let callee = Callee::resolve(cx.member, &progress, "wipe");
        let gate = admit(&cx, &progress, &call, &callee).await;
        assert!(matches!(&gate, Gate::Answer(r) if r.to_model_text().contains("unavailable")), "{gate:?}");
    }
}

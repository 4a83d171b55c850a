//! [`RunContext`]: what a run may do — the agent's settings ⊕ the request's options ⊕ what a
//! parent run passes down (its policy, its remaining budget, the delegation depth). Built once
//! when a run begins, stored in the [`RunState`](crate::RunState) of a paused run, and read
//! back when it resumes, so a fresh run, a resumed run and a sub-agent's run are bounded by the
//! same value.

use kaos_agent::{Budget, PermissionRule};
use serde::{Deserialize, Serialize};

use crate::error::RunError;
use crate::guard::PermissionPolicy;
use crate::member::Member;

/// Options of one request, on top of the agent's configuration.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RunOptions {
    /// Permission rules evaluated before the agent's own (e.g. a caller's approvals).
    pub permissions: Vec<PermissionRule>,
    /// A cost cap for this turn; the tighter of it and the agent's applies.
    pub max_cost_usd: Option<f64>,
}

impl RunOptions {
    /// With an extra permission rule, evaluated before the agent's rules.
    pub fn with_permission(mut self, rule: PermissionRule) -> Self {
        self.permissions.push(rule);
        self
    }

    /// With a cost cap for this turn.
    pub fn with_max_cost_usd(mut self, usd: f64) -> Self {
        self.max_cost_usd = Some(usd);
        self
    }
}

/// The bounds of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunContext {
    /// Rules evaluated before the agent's own (the request's), or — for a sub-agent — the
    /// parent's whole policy, which replaces the agent's.
    pub(crate) rules: Vec<PermissionRule>,
    /// Whether `rules` replace the agent's rules (a sub-agent runs under its parent's policy).
    pub(crate) inherited: bool,
    /// The run's caps: the agent's, tightened by the request's, or what the parent had left.
    /// A session cap is applied on top when the run (re)starts.
    pub(crate) caps: Budget,
    /// How deep in delegation the run is: 0 for a user's run, 1 for a sub-agent, …
    pub(crate) depth: u32,
    /// The delegation depth limit, from the outermost agent.
    pub(crate) max_depth: u32,
}

impl RunContext {
    /// A user's run: the agent's `caps` tightened by the request's `options`, the team's
    /// delegation depth limit `max_depth`.
    pub(crate) fn new(mut caps: Budget, max_depth: u32, options: RunOptions) -> Self {
        if let Some(usd) = options.max_cost_usd {
            caps.max_cost_usd = Some(caps.max_cost_usd.map_or(usd, |cap| cap.min(usd)));
        }
        Self { rules: options.permissions, inherited: false, caps, depth: 0, max_depth }
    }

    /// A sub-agent's run under `policy` (the parent's) within `remaining` (the parent's budget
    /// left), one level deeper.
    pub(crate) fn child(&self, policy: &PermissionPolicy, remaining: Budget) -> Self {
        Self {
            rules: policy.rules().to_vec(),
            inherited: true,
            caps: remaining,
            depth: self.depth + 1,
            max_depth: self.max_depth,
        }
    }

    /// The permission policy of the run while `member` holds the conversation.
    pub(crate) fn policy(&self, member: &Member) -> Result<PermissionPolicy, RunError> {
        if self.inherited {
            return PermissionPolicy::from_rules(&self.rules);
        }
        if self.rules.is_empty() {
            return Ok(member.policy.clone());
        }
        let rules: Vec<PermissionRule> =
            self.rules.iter().chain(member.agent.permissions()).cloned().collect();
        PermissionPolicy::from_rules(&rules)
    }

    /// Whether a delegate may be called at this depth.
    pub(crate) fn may_delegate(&self) -> bool {
        self.depth < self.max_depth
    }
}

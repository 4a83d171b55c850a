//! Settings of the plan, findings and router patterns. Each is left out of a serialized agent
//! while it holds its defaults, so an agent that does not set it keeps its fingerprint.

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use crate::{AgentError, Pattern};

/// Settings of the plan-execute pattern (`pattern = "plan"`). The number of steps a turn may
/// execute, replans included, is `limits.max_plan_steps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct PlanConfig {
    /// How many times a failed step may lead to a new plan for the rest of the work [2];
    /// `0` never replans (the first failed step ends the turn with its partial results).
    pub max_replans: u32,
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self { max_replans: 2 }
    }
}

impl PlanConfig {
    /// Whether this is the default.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// With a replanning bound.
    pub fn with_max_replans(mut self, n: u32) -> Self {
        self.max_replans = n;
        self
    }
}

/// Settings of the findings pattern (`pattern = "findings"`): extract → filter → synthesize
/// over the session's documents.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct FindingsConfig {
    /// Documents read per turn, the most relevant to the question first [20]; the others are
    /// refused with the reason `not_relevant_enough`.
    pub max_documents: NonZeroU32,
    /// Most USD one document's extraction may cost, checked before the call against its worst
    /// case; a document that cannot fit is refused with `document_cost_cap` [no cap].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_per_document_usd: Option<f64>,
    /// Most tokens (prompt and answer) one document's extraction may use; a document that
    /// cannot fit is refused with `document_token_cap` [no cap].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_document: Option<NonZeroU32>,
    /// Verified findings needed to write an answer [1]; with fewer the turn ends in the typed
    /// refusal `evidence_insufficient`.
    pub min_findings: NonZeroU32,
}

impl Default for FindingsConfig {
    fn default() -> Self {
        Self {
            max_documents: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
            max_cost_per_document_usd: None,
            max_tokens_per_document: None,
            min_findings: NonZeroU32::MIN,
        }
    }
}

impl FindingsConfig {
    /// Whether this is the default.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// With a cap on the documents read per turn.
    pub fn with_max_documents(mut self, n: NonZeroU32) -> Self {
        self.max_documents = n;
        self
    }

    /// With a per-document cost cap.
    pub fn with_max_cost_per_document_usd(mut self, usd: f64) -> Self {
        self.max_cost_per_document_usd = Some(usd);
        self
    }

    /// With a per-document token cap.
    pub fn with_max_tokens_per_document(mut self, tokens: NonZeroU32) -> Self {
        self.max_tokens_per_document = Some(tokens);
        self
    }

    /// With a minimum number of verified findings.
    pub fn with_min_findings(mut self, n: NonZeroU32) -> Self {
        self.min_findings = n;
        self
    }

    pub(crate) fn validate(&self, at: &str) -> Result<(), AgentError> {
        if let Some(usd) = self.max_cost_per_document_usd
            && !(usd.is_finite() && usd > 0.0)
        {
            return Err(AgentError::InvalidPatternConfig {
                field: format!("{at}findings.max_cost_per_document_usd"),
                reason: "must be a positive, finite number of USD".into(),
            });
        }
        Ok(())
    }
}

/// How the router pattern classifies a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Classifier {
    /// One model call (the `classify` role model, else the main model) picks a route.
    #[default]
    Model,
    /// No model call: the first route with a keyword in the message wins (case-insensitive),
    /// else the default pattern.
    Rules,
}

/// One destination of the router pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Route {
    /// The pattern the turn runs when this route is chosen (not `router`).
    pub pattern: Pattern,
    /// What messages belong here, shown to the classifying model.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Words or phrases that select this route under the `rules` classifier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
}

impl Route {
    /// A route to `pattern`, described for the classifying model.
    pub fn new(pattern: Pattern, description: impl Into<String>) -> Self {
        Self { pattern, description: description.into(), keywords: Vec::new() }
    }

    /// With keywords for the `rules` classifier.
    pub fn with_keywords<I, S>(mut self, keywords: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.keywords = keywords.into_iter().map(Into::into).collect();
        self
    }
}

/// Settings of the router pattern (`pattern = "router"`): classify, then run one of the other
/// patterns for the rest of the turn.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RouterConfig {
    /// How messages are classified [model].
    pub classifier: Classifier,
    /// The destinations; empty means every other pattern, with built-in descriptions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Where a message goes when nothing matches or the classifier's answer is unusable [chat].
    pub default_pattern: Pattern,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self { classifier: Classifier::Model, routes: Vec::new(), default_pattern: Pattern::Chat }
    }
}

impl RouterConfig {
    /// Whether this is the default.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// With a classifier.
    pub fn with_classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// With one more route.
    pub fn with_route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// With a default pattern.
    pub fn with_default_pattern(mut self, pattern: Pattern) -> Self {
        self.default_pattern = pattern;
        self
    }

    pub(crate) fn validate(&self, at: &str) -> Result<(), AgentError> {
        let bad = |field: String| AgentError::InvalidPatternConfig {
            field,
            reason: "a router cannot route to the router pattern".into(),
        };
        if self.default_pattern == Pattern::Router {
            return Err(bad(format!("{at}router.default_pattern")));
        }
        for (i, route) in self.routes.iter().enumerate() {
            if route.pattern == Pattern::Router {
                return Err(bad(format!("{at}router.routes[{i}].pattern")));
            }
            if let Some(k) = route.keywords.iter().position(|k| k.trim().is_empty()) {
                return Err(AgentError::InvalidPatternConfig {
                    field: format!("{at}router.routes[{i}].keywords[{k}]"),
                    reason: "a keyword must not be empty".into(),
                });
            }
        }
        Ok(())
    }
}

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::AgentError;

/// A model named as `provider:model`, e.g. `anthropic:claude-haiku-4-5`, `openai:gpt-4.1-mini`
/// or `scripted:echo` (the offline model).
///
/// The provider part is `[a-z0-9_-]+`; the model part is any non-empty text without
/// whitespace or control characters (model names contain `/`, `.` and `:`, e.g.
/// `openai-compatible:meta-llama/Llama-3.1-8B`).
///
/// ```
/// use kaos_agent::ModelRef;
/// let m: ModelRef = "openai:gpt-4.1-mini".parse().unwrap();
/// assert_eq!((m.provider(), m.model()), ("openai", "gpt-4.1-mini"));
/// assert!("gpt-4.1-mini".parse::<ModelRef>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelRef {
    text: String,
    colon: usize,
}

impl ModelRef {
    /// The offline scripted model every example and test defaults to.
    pub const OFFLINE: &'static str = "scripted:echo";

    /// Parses and validates `provider:model`.
    pub fn new(text: &str) -> Result<Self, AgentError> {
        let invalid = |reason: &'static str| AgentError::InvalidModelRef { value: text.to_owned(), reason };
        let colon = text.find(':').ok_or_else(|| invalid("expected 'provider:model'"))?;
        let (provider, model) = (&text[..colon], &text[colon + 1..]);
        if provider.is_empty() {
            return Err(invalid("the provider is empty"));
        }
        if !provider.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
            return Err(invalid("the provider may only contain a-z, 0-9, '-' and '_'"));
        }
        if model.is_empty() {
            return Err(invalid("the model name is empty"));
        }
        if model.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("the model name contains whitespace or control characters"));
        }
        Ok(Self { text: text.to_owned(), colon })
    }

    /// The provider part (`anthropic`, `openai`, `scripted`, …).
    pub fn provider(&self) -> &str {
        &self.text[..self.colon]
    }

    /// The model part (`claude-haiku-4-5`, …).
    pub fn model(&self) -> &str {
        &self.text[self.colon + 1..]
    }

    /// The whole `provider:model` text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Default for ModelRef {
    fn default() -> Self {
        Self { text: Self::OFFLINE.to_owned(), colon: Self::OFFLINE.len() - "echo".len() - 1 }
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelRef({:?})", self.text)
    }
}

impl FromStr for ModelRef {
    type Err = AgentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for ModelRef {
    type Error = AgentError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<ModelRef> for String {
    fn from(m: ModelRef) -> String {
        m.text
    }
}

/// The roles a pattern may use a different model for (e.g. a cheap classifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ModelRole {
    /// Intent classification (router).
    Classify,
    /// Plain responses and the ReAct loop.
    Respond,
    /// Planning (plan-execute).
    Plan,
    /// Research and findings.
    Research,
    /// Evaluation and verification.
    Evaluate,
}

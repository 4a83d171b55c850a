//! Token counting for budget decisions.

use std::fmt::Debug;
use std::sync::Arc;

/// Counts the tokens a text costs for a model. Used for every memory and context budget
/// decision, so it must be fast; exactness is a per-model option.
pub trait TokenCounter: Send + Sync + Debug {
    /// Tokens in `text`.
    fn count(&self, text: &str) -> u64;

    /// A short name for reports (`estimate`, `o200k_base`, …).
    fn name(&self) -> &str;
}

/// The default counter: about four bytes of text per token (see [`estimate_tokens`]). Never
/// allocates; errs on the side of counting more for non-English text.
///
/// [`estimate_tokens`]: crate::estimate_tokens
#[derive(Debug, Clone, Copy, Default)]
pub struct Estimator;

impl TokenCounter for Estimator {
    fn count(&self, text: &str) -> u64 {
        crate::estimate_tokens(text)
    }

    fn name(&self) -> &str {
        "estimate"
    }
}

/// Exact counts for OpenAI-family models with the model's own BPE (`tiktoken-rs`, whose
/// vocabularies are compiled in: nothing is downloaded).
#[cfg(feature = "tiktoken")]
#[derive(Clone)]
pub struct Tiktoken {
    bpe: &'static tiktoken_rs::CoreBPE,
    model: String,
}

#[cfg(feature = "tiktoken")]
impl Tiktoken {
    /// The tokenizer of an OpenAI model name (`gpt-4.1-mini`, `gpt-4o`, `o3`, …), if known.
    pub fn for_model(model: &str) -> Option<Self> {
        tiktoken_rs::bpe_for_model(model).ok().map(|bpe| Self { bpe, model: model.to_owned() })
    }
}

#[cfg(feature = "tiktoken")]
impl Debug for Tiktoken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tiktoken").field("model", &self.model).finish()
    }
}

#[cfg(feature = "tiktoken")]
impl TokenCounter for Tiktoken {
    fn count(&self, text: &str) -> u64 {
        self.bpe.encode_ordinary(text).len() as u64
    }

    fn name(&self) -> &str {
        &self.model
    }
}

/// The best counter available for `provider:model`: exact for OpenAI-family models when the
/// `tiktoken` feature is on, the [`Estimator`] otherwise.
pub fn counter_for(provider: &str, model: &str) -> Arc<dyn TokenCounter> {
    #[cfg(feature = "tiktoken")]
    if matches!(provider, "openai" | "azure")
        && let Some(exact) = Tiktoken::for_model(model)
    {
        return Arc::new(exact);
    }
    let _ = (provider, model);
    Arc::new(Estimator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimator_is_the_default() {
        let counter = counter_for("scripted", "echo");
        assert_eq!(counter.name(), "estimate");
        assert_eq!(counter.count("abcdefgh"), 2);
        assert_eq!(counter.count(""), 0);
    }

    #[cfg(feature = "tiktoken")]
    #[test]
    fn openai_models_count_exactly() {
        let counter = counter_for("openai", "gpt-4o");
        assert_eq!(counter.name(), "gpt-4o");
        assert_eq!(counter.count("hello world"), 2);
    }
}

//! Summaries of evicted items, so a section that overflows keeps the gist of what it lost.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use kaos_agent::SectionKind;
use kaos_providers::{Message, ModelClient, ModelRequest, Sampling, TokenCounter};

use super::memory::MemoryItem;

/// Condenses items evicted from a section into one short text.
///
/// Called at the end of a turn for each section with `summarize = true` that evicted items.
/// An error is not fatal: the runner falls back to [`ExtractiveSummarizer`].
#[async_trait]
pub trait Summarizer: Send + Sync + Debug {
    /// A summary of `items` (oldest first) of at most about `target_tokens` tokens.
    async fn summarize(
        &self,
        section: SectionKind,
        items: &[MemoryItem],
        target_tokens: u64,
    ) -> Result<String, String>;
}

/// The default summarizer: deterministic, free, never calls a model. It keeps the first
/// sentence of each item (and the lines of an earlier summary), and when they do not all fit
/// the target size, the most recent ones.
#[derive(Debug, Clone)]
pub struct ExtractiveSummarizer {
    counter: Arc<dyn TokenCounter>,
}

impl ExtractiveSummarizer {
    /// A summarizer measuring its output with `counter`.
    pub fn new(counter: Arc<dyn TokenCounter>) -> Self {
        Self { counter }
    }

    /// The summary, synchronously.
    pub fn extract(&self, items: &[MemoryItem], target_tokens: u64) -> String {
        let mut lines = Vec::new();
        for item in items {
            let text = item.text();
            if item.summary {
                lines.extend(text.lines().filter(|l| l.starts_with("- ")).map(str::to_owned));
                continue;
            }
            let text = text.trim();
            let end = text.find(['.', '!', '?', '\n']).map_or(text.len(), |i| i + 1);
            let mut sentence: String = text[..end].chars().take(200).collect();
            if sentence.len() < text.len() && !sentence.ends_with(['.', '!', '?']) {
                sentence.push('…');
            }
            lines.push(format!("- {sentence}"));
        }
        let mut used = 0;
        let mut keep = lines.len();
        for line in lines.iter().rev() {
            let cost = self.counter.count(line) + 1;
            if used + cost > target_tokens {
                break;
            }
            used += cost;
            keep -= 1;
        }
        lines[keep..].join("\n")
    }
}

#[async_trait]
impl Summarizer for ExtractiveSummarizer {
    async fn summarize(
        &self,
        _section: SectionKind,
        items: &[MemoryItem],
        target_tokens: u64,
    ) -> Result<String, String> {
        Ok(self.extract(items, target_tokens))
    }
}

/// Asks a model for the summary. Costs a model call per summarized section; its usage is not
/// part of the turn's usage events (it is reported in the `summarized` memory event instead).
#[derive(Debug, Clone)]
pub struct ModelSummarizer {
    model: Arc<dyn ModelClient>,
    model_name: String,
}

impl ModelSummarizer {
    /// Summarizes with `model`, sending `model_name` in the request.
    pub fn new(model: Arc<dyn ModelClient>, model_name: impl Into<String>) -> Self {
        Self { model, model_name: model_name.into() }
    }
}

#[async_trait]
impl Summarizer for ModelSummarizer {
    async fn summarize(
        &self,
        section: SectionKind,
        items: &[MemoryItem],
        target_tokens: u64,
    ) -> Result<String, String> {
        let text: Vec<String> = items.iter().map(|i| i.text().into_owned()).collect();
        let mut request = ModelRequest::new(self.model_name.clone(), vec![Message::user(text.join("\n"))])
            .with_system(format!(
                "Summarize these {} item(s) of an agent's {} memory in at most {target_tokens} tokens. \
             Keep names, numbers, decisions and open questions. Answer with the summary only.",
                items.len(),
                section.as_str()
            ));
        let mut sampling = Sampling::default();
        sampling.max_output_tokens = u32::try_from(target_tokens).ok();
        request.sampling = sampling;
        let response = self.model.complete(&request).await.map_err(|e| e.to_string())?;
        Ok(response.text)
    }
}

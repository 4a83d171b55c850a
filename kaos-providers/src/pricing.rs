use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::Usage;

/// The default price table, a data file compiled into the crate.
const DEFAULT_TABLE: &str = include_str!("pricing.toml");

/// The price of one model, in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelPrice {
    /// Uncached input tokens.
    pub input: f64,
    /// Output tokens (reasoning included).
    pub output: f64,
    /// Input tokens served from the vendor's prompt cache; `input` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
}

impl ModelPrice {
    /// A price per million input, output and cached-input tokens.
    pub fn new(input: f64, output: f64, cached_input: Option<f64>) -> Self {
        Self { input, output, cached_input }
    }

    /// The cost of `usage` at this price, in USD. Each token is priced once (see [`Usage`]).
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = self.cached_input.unwrap_or(self.input);
        (usage.input_tokens as f64 * self.input
            + usage.cached_input_tokens as f64 * cached
            + usage.output_tokens as f64 * self.output)
            / 1_000_000.0
    }
}

/// Why a price table could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PricingError {
    /// The TOML is invalid or not shaped like `pricing.toml`.
    #[error("invalid pricing table: {message}")]
    Invalid {
        /// What is wrong.
        message: String,
    },
    /// A price is negative or not a finite number.
    #[error("invalid price for {model:?}: every price must be a finite number >= 0")]
    BadPrice {
        /// The model key.
        model: String,
    },
}

/// A versioned table of model prices, matched by the longest model-name prefix.
///
/// [`Pricing::default`] is the table shipped in `pricing.toml` (parsed once per process).
/// Users override or extend it with their own TOML of the same shape:
///
/// ```
/// use kaos_providers::{Pricing, Usage};
/// let mine = Pricing::from_toml(r#"
///     version = "my-contract"
///     [models."gpt-4.1-mini"]
///     input = 0.2
///     output = 0.8
///     [models."llama3.2"]
///     input = 0.0
///     output = 0.0
/// "#)?;
/// let pricing = mine.merged_over(&Pricing::default());
/// assert_eq!(pricing.version(), "my-contract");
/// assert_eq!(pricing.cost("gpt-4.1-mini-2025-04-14", &Usage::new(1_000_000, 1_000_000)), Some(1.0));
/// assert_eq!(pricing.cost("llama3.2:3b", &Usage::new(10, 10)), Some(0.0));
/// assert_eq!(pricing.cost("claude-sonnet-4-5", &Usage::new(1_000_000, 0)), Some(3.0)); // default kept
/// assert_eq!(pricing.cost("some-unknown-model", &Usage::new(10, 10)), None); // never a silent zero
/// # Ok::<(), kaos_providers::PricingError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pricing {
    version: String,
    models: BTreeMap<String, ModelPrice>,
}

impl Default for Pricing {
    /// The table shipped with this crate (`pricing.toml`).
    fn default() -> Self {
        static DEFAULT: OnceLock<Pricing> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                // The shipped table is checked by a unit test; an unreadable one prices nothing
                // (every cost is then `None`) rather than panicking at run time.
                Pricing::from_toml(DEFAULT_TABLE).unwrap_or_else(|_| Pricing::empty("invalid"))
            })
            .clone()
    }
}

impl Pricing {
    /// A table with no prices (every cost is `None`).
    pub fn empty(version: impl Into<String>) -> Self {
        Self { version: version.into(), models: BTreeMap::new() }
    }

    /// Reads a table shaped like `pricing.toml`: a `version` string and `[models."prefix"]`
    /// tables with `input`, `output` and optional `cached_input` (USD per million tokens).
    pub fn from_toml(text: &str) -> Result<Self, PricingError> {
        let table: Pricing =
            toml::from_str(text).map_err(|e| PricingError::Invalid { message: e.to_string() })?;
        Self::from_models(table.version, table.models)
    }

    /// A table of these prices, keyed by model-name prefix; a negative or non-finite price is
    /// [`PricingError::BadPrice`].
    pub fn from_models(
        version: impl Into<String>,
        models: BTreeMap<String, ModelPrice>,
    ) -> Result<Self, PricingError> {
        for (model, price) in &models {
            let prices = [Some(price.input), Some(price.output), price.cached_input];
            if prices.into_iter().flatten().any(|p| !p.is_finite() || p < 0.0) {
                return Err(PricingError::BadPrice { model: model.clone() });
            }
        }
        Ok(Self { version: version.into(), models })
    }

    /// Whether the table has no prices.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// This table over `base`: every model of `self` replaces or adds to those of `base`;
    /// the version is `self`'s.
    pub fn merged_over(&self, base: &Pricing) -> Pricing {
        let mut models = base.models.clone();
        models.extend(self.models.iter().map(|(k, v)| (k.clone(), *v)));
        Pricing { version: self.version.clone(), models }
    }

    /// Sets the price of every model starting with `prefix`.
    pub fn with_price(mut self, prefix: impl Into<String>, price: ModelPrice) -> Self {
        self.models.insert(prefix.into(), price);
        self
    }

    /// The table's version (the date its prices were taken, for the shipped table).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The price of `model`: the entry with the longest key that `model` starts with.
    ///
    /// A model is looked up by each of its names in turn, most specific first, and priced by
    /// the first that matches: the name as given (so a key such as
    /// `"openai-compatible:gpt-4.1-mini"` can price one provider's model apart), the vendor's
    /// model name without the `provider:` prefix the runner's requests carry
    /// (`openai:gpt-4.1-mini` → `gpt-4.1-mini`), and the name without a vendor path
    /// (`openai/gpt-4.1-mini` as OpenRouter names it, `models/gemini-2.5-flash`).
    ///
    /// ```
    /// use kaos_providers::Pricing;
    /// let shipped = Pricing::default();
    /// for name in ["gpt-4.1-mini", "openai:gpt-4.1-mini", "openai-compatible:gpt-4.1-mini-2025-04-14",
    ///              "openai-compatible:openai/gpt-4.1-mini"] {
    ///     assert_eq!(shipped.price(name), shipped.price("gpt-4.1-mini"), "{name}");
    /// }
    /// assert!(shipped.price("anthropic:claude-haiku-4-5").is_some());
    /// assert!(shipped.price("gemini:models/gemini-2.5-flash").is_some());
    /// assert!(shipped.price("openai-compatible:llama3.2:3b").is_none());
    /// ```
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        lookup_names(model).find_map(|name| self.longest_prefix(name))
    }

    fn longest_prefix(&self, name: &str) -> Option<&ModelPrice> {
        self.models
            .iter()
            .filter(|(prefix, _)| !prefix.is_empty() && name.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, price)| price)
    }

    /// The cost of `usage` on `model` in USD, or `None` when the model has no price.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        self.price(model).map(|price| price.cost(usage))
    }
}

/// The names `model` is priced by, most specific first: as given, without a `provider:`
/// prefix (a provider name is lowercase ASCII letters, digits and `-`, so `llama3.2:3b` keeps
/// its tag), and without a vendor path (`org/model`).
fn lookup_names(model: &str) -> impl Iterator<Item = &str> {
    let unqualified = match model.split_once(':') {
        Some((provider, rest))
            if !provider.is_empty()
                && provider.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            rest
        }
        _ => model,
    };
    let bare = unqualified.rsplit_once('/').map_or(unqualified, |(_, name)| name);
    let mut names = vec![model];
    for name in [unqualified, bare] {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_longest_prefix_wins() {
        let shipped = Pricing::from_toml(DEFAULT_TABLE).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(shipped, Pricing::default());
        assert_eq!(shipped.version(), "2025-11");
        assert_eq!(shipped.price("gpt-4o-mini-2024-07-18"), Some(&ModelPrice::new(0.15, 0.60, Some(0.075))));
        assert_eq!(shipped.price("gpt-4o-2024-08-06"), Some(&ModelPrice::new(2.50, 10.0, Some(1.25))));
        assert_eq!(shipped.price("claude-opus-4-5-20251101"), Some(&ModelPrice::new(5.0, 25.0, Some(0.50))));
        assert_eq!(shipped.price("claude-opus-4-1"), Some(&ModelPrice::new(15.0, 75.0, Some(1.50))));
        assert_eq!(shipped.price("llama3.2"), None);
    }

    #[test]
    fn cost_prices_each_token_class_once() {
        let price = ModelPrice::new(2.0, 8.0, Some(0.5));
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 500_000,
            cached_input_tokens: 2_000_000,
            reasoning_tokens: 100_000,
        };
        assert_eq!(price.cost(&usage), 2.0 + 4.0 + 1.0);
        assert_eq!(
            ModelPrice::new(1.0, 1.0, None)
                .cost(&Usage { cached_input_tokens: 1_000_000, ..Usage::default() }),
            1.0
        );
    }

    #[test]
    fn bad_tables_are_typed_errors() {
        assert!(matches!(Pricing::from_toml("version = 3"), Err(PricingError::Invalid { .. })));
        assert_eq!(
            Pricing::from_toml("version = \"x\"\n[models.m]\ninput = -1.0\noutput = 1.0"),
            Err(PricingError::BadPrice { model: "m".into() })
        );
    }
}

//! From `provider:model` to a client: providers registered on the builder first, then the
//! built-in vendors of `kaos-providers`, configured from the runtime's settings first and the
//! environment second.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kaos_agent::ModelRef;
use kaos_providers::{
    BUILT_IN_PROVIDERS, ModelClient, PricedClient, Pricing, ProviderError, VendorConfig, vendor_client,
};
use kaos_runtime::ProviderSettings;

use crate::RunError;

/// Makes the client of a model of a custom provider (see [`RunnerBuilder::provider`]).
///
/// [`RunnerBuilder::provider`]: crate::RunnerBuilder::provider
pub type ProviderFactory = dyn Fn(&ModelRef) -> Result<Arc<dyn ModelClient>, ProviderError> + Send + Sync;

/// The custom providers and the price table of a Runner (shared with its sub-agents).
#[derive(Clone, Default)]
pub(crate) struct Models {
    pub(crate) custom: BTreeMap<String, Arc<ProviderFactory>>,
    pub(crate) pricing: Option<Arc<Pricing>>,
}

impl fmt::Debug for Models {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Models")
            .field("custom", &self.custom.keys().collect::<Vec<_>>())
            .field("pricing", &self.pricing.as_ref().map(|p| p.version().to_owned()))
            .finish()
    }
}

impl Models {
    /// The client for `model`: a custom provider's, else a built-in vendor's configured by
    /// `settings`, then by the vendor's environment variables read through `env`; priced from
    /// the user's table where it has a price.
    pub(crate) fn resolve(
        &self,
        model: &ModelRef,
        settings: &ProviderSettings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Arc<dyn ModelClient>, RunError> {
        let client = match self.custom.get(model.provider()) {
            Some(factory) => factory(model)?,
            None => {
                let config = vendor_config(model.provider(), settings)
                    .or(VendorConfig::from_env(model.provider(), env));
                vendor_client(model.as_str(), &config).map_err(|e| self.name_custom(e))?
            }
        };
        Ok(match &self.pricing {
            Some(pricing) => Arc::new(PricedClient::new(client, pricing.clone())),
            None => client,
        })
    }

    /// An unknown-provider error that lists the custom providers too.
    fn name_custom(&self, error: ProviderError) -> ProviderError {
        match error {
            ProviderError::UnknownModel { model, message } if message.starts_with("unknown provider") => {
                let known: Vec<&str> = BUILT_IN_PROVIDERS
                    .iter()
                    .copied()
                    .chain(self.custom.keys().map(String::as_str))
                    .collect();
                let provider = model.split_once(':').map_or(model.as_str(), |(p, _)| p);
                ProviderError::UnknownModel {
                    message: format!("unknown provider {provider:?} (known: {})", known.join(", ")),
                    model,
                }
            }
            other => other,
        }
    }
}

/// The configuration of a built-in vendor from the runtime's settings (keys, endpoint,
/// headers, and the limits: output tokens, timeout, retries, each the vendor's own
/// `providers.<vendor>_*` setting else the vendor-wide one); what they leave unset is the vendor's
/// default or, when a Runner resolves it, its environment variable.
pub fn vendor_config(provider: &str, settings: &ProviderSettings) -> VendorConfig {
    let secret = |s: &Option<kaos_runtime::SecretString>| s.clone();
    let (key, base_url) = match provider {
        "openai" => (secret(&settings.openai_api_key), settings.openai_base_url.clone()),
        "anthropic" => (secret(&settings.anthropic_api_key), settings.anthropic_base_url.clone()),
        "gemini" => (secret(&settings.gemini_api_key), settings.gemini_base_url.clone()),
        "openai-compatible" => {
            (secret(&settings.openai_compatible_api_key), settings.openai_compatible_base_url.clone())
        }
        _ => (None, None),
    };
    let mut config = VendorConfig::new();
    if let Some(key) = key {
        config = config.with_api_key(key);
    }
    if let Some(url) = base_url {
        config = config.with_base_url(url);
    }
    if provider == "openai" {
        config.organization = settings.openai_organization.clone();
        config.project = settings.openai_project.clone();
    }
    // The vendor's own `providers.<vendor>_*` limits, else the vendor-wide ones.
    let limits = settings.limits(provider);
    config.max_output_tokens = limits.max_output_tokens;
    config.timeout = limits.timeout_secs.map(Duration::from_secs_f64);
    config.max_retries = limits.max_retries;
    config.max_retry_wait = limits.max_retry_wait_secs.map(Duration::from_secs_f64);
    config
}

/// The client for a `provider:model` reference, configured from the environment.
///
/// | provider | Cargo feature | environment |
/// |---|---|---|
/// | `scripted` (only `scripted:echo`) | always | none |
/// | `openai` | `openai` | `OPENAI_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_ORG_ID`, `OPENAI_PROJECT_ID` |
/// | `anthropic` | `anthropic` | `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL` |
/// | `gemini` | `gemini` | `GEMINI_API_KEY` (else `GOOGLE_API_KEY`), `GOOGLE_GEMINI_BASE_URL` |
/// | `openai-compatible` | `openai-compatible` | `KAOS_OPENAI_COMPATIBLE_BASE_URL`, optional `KAOS_OPENAI_COMPATIBLE_API_KEY` |
///
/// A Runner reads its runtime's [`Settings`](kaos_runtime::Settings) first (every
/// `providers.*` key, e.g. the CLI's `.env`, agent file and flags) and the environment for
/// what they leave unset; custom providers come from
/// [`RunnerBuilder::provider`](crate::RunnerBuilder::provider).
///
/// Vendor clients come wrapped in a [`RetryClient`](kaos_providers::RetryClient) with the
/// default [`RetryPolicy`](kaos_providers::RetryPolicy) (3 retries, waits capped at 60 s,
/// honouring `Retry-After`). A provider whose feature is not compiled in is
/// [`ProviderError::NotCompiled`] naming the feature; a missing key is
/// [`ProviderError::MissingSetting`] naming the setting and the variable. Keys are held as
/// [`SecretString`](kaos_providers::SecretString)s and never printed.
///
/// ```
/// use kaos_agent::ModelRef;
/// use kaos_providers::ProviderError;
/// use kaos_runner::{RunError, resolve_model};
///
/// let echo = resolve_model(&ModelRef::new("scripted:echo")?)?;
/// assert_eq!(echo.capabilities().streaming, true);
/// match resolve_model(&ModelRef::new("acme:large")?) {
///     Err(RunError::Provider(ProviderError::UnknownModel { model, .. })) => assert_eq!(model, "acme:large"),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn resolve_model(model: &ModelRef) -> Result<Arc<dyn ModelClient>, RunError> {
    Models::default().resolve(model, &ProviderSettings::default(), &|name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(model: &str, vars: &[(&str, &str)]) -> Result<Arc<dyn ModelClient>, ProviderError> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let model = ModelRef::new(model).unwrap_or_else(|e| unreachable!("{e}"));
        Models::default()
            .resolve(&model, &ProviderSettings::default(), &|name| vars.get(name).cloned())
            .map_err(|e| match e {
                RunError::Provider(e) => e,
                other => unreachable!("{other}"),
            })
    }

    fn error(model: &str, vars: &[(&str, &str)]) -> ProviderError {
        match resolve(model, vars) {
            Err(e) => e,
            Ok(client) => unreachable!("{client:?}"),
        }
    }

    #[test]
    fn unknown_providers_and_scripted_models_are_typed_errors() {
        assert!(resolve("scripted:echo", &[]).is_ok());
        assert!(matches!(error("scripted:other", &[]), ProviderError::UnknownModel { .. }));
        assert!(matches!(error("acme:big", &[]), ProviderError::UnknownModel { .. }));
    }

    /// Every vendor either names the missing setting and variable (feature on) or the feature.
    #[test]
    fn each_vendor_names_its_missing_setting_or_its_feature() {
        let cases = [
            (
                "openai:gpt-4.1-mini",
                "openai",
                "providers.openai_api_key (OPENAI_API_KEY)",
                cfg!(feature = "openai"),
            ),
            (
                "anthropic:claude-haiku-4-5",
                "anthropic",
                "providers.anthropic_api_key (ANTHROPIC_API_KEY)",
                cfg!(feature = "anthropic"),
            ),
            (
                "gemini:gemini-2.5-flash",
                "gemini",
                "providers.gemini_api_key (GEMINI_API_KEY or GOOGLE_API_KEY)",
                cfg!(feature = "gemini"),
            ),
            (
                "openai-compatible:llama3.2",
                "openai-compatible",
                "providers.openai_compatible_base_url (KAOS_OPENAI_COMPATIBLE_BASE_URL)",
                cfg!(feature = "openai-compatible"),
            ),
        ];
        for (model, provider, variable, compiled) in cases {
            let expected = if compiled {
                ProviderError::MissingSetting { provider: provider.into(), variable: variable.into() }
            } else {
                ProviderError::NotCompiled { provider: provider.into(), feature: provider.into() }
            };
            assert_eq!(format!("{:?}", error(model, &[("OPENAI_API_KEY", " ")])), format!("{expected:?}"));
        }
    }

    #[test]
    fn configured_vendors_resolve_and_never_print_their_keys() {
        let vars = [
            ("OPENAI_API_KEY", "sk-one"),
            ("ANTHROPIC_API_KEY", "sk-two"),
            ("GOOGLE_API_KEY", "sk-three"),
            ("KAOS_OPENAI_COMPATIBLE_BASE_URL", "http://localhost:11434/v1"),
            ("KAOS_OPENAI_COMPATIBLE_API_KEY", "sk-four"),
        ];
        for (model, compiled) in [
            ("openai:gpt-4.1-mini", cfg!(feature = "openai")),
            ("anthropic:claude-haiku-4-5", cfg!(feature = "anthropic")),
            ("gemini:gemini-2.5-flash", cfg!(feature = "gemini")),
            ("openai-compatible:llama3.2", cfg!(feature = "openai-compatible")),
        ] {
            match resolve(model, &vars) {
                Ok(client) => {
                    let printed = format!("{client:?}");
                    assert!(compiled && !printed.contains("sk-"), "{printed}");
                }
                Err(e) => assert!(!compiled && matches!(e, ProviderError::NotCompiled { .. }), "{e:?}"),
            }
        }
    }
}

//! The built-in vendors by name: from a `provider` prefix and a [`VendorConfig`] to a client.

use std::sync::Arc;
use std::time::Duration;

use crate::{ModelClient, ProviderError, RetryClient, RetryPolicy, ScriptedClient, SecretString};

/// The providers this crate knows, as they prefix a `provider:model` reference. Each vendor
/// needs its Cargo feature; `scripted` (only `scripted:echo`) is always there.
pub const BUILT_IN_PROVIDERS: &[&str] = &["scripted", "openai", "anthropic", "gemini", "openai-compatible"];

/// How to reach one vendor: everything a built-in client takes besides the model. Unset
/// fields keep the vendor's defaults.
///
/// A caller fills it from its own configuration (the runner: its settings) and then, for
/// what is still unset, from the environment with [`VendorConfig::or`] and
/// [`VendorConfig::from_env`].
///
/// ```
/// use kaos_providers::VendorConfig;
/// let env = |var: &str| (var == "OPENAI_BASE_URL").then(|| "http://127.0.0.1:9/v1".to_owned());
/// let config = VendorConfig::new().with_max_output_tokens(512).or(VendorConfig::from_env("openai", &env));
/// assert_eq!(config.base_url.as_deref(), Some("http://127.0.0.1:9/v1"));
/// assert_eq!(config.max_output_tokens, Some(512));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct VendorConfig {
    /// The API key (optional for `openai-compatible`).
    pub api_key: Option<SecretString>,
    /// The endpoint, instead of the vendor's public one (a gateway, a proxy, a local mock).
    pub base_url: Option<String>,
    /// OpenAI's `OpenAI-Organization` header (other vendors have none).
    pub organization: Option<String>,
    /// OpenAI's `OpenAI-Project` header (other vendors have none).
    pub project: Option<String>,
    /// The output token limit of requests that set none (Anthropic's default is 4,096; the
    /// others send none).
    pub max_output_tokens: Option<u32>,
    /// The time limit of one model call [600 s].
    pub timeout: Option<Duration>,
    /// Retries after a failed attempt [3].
    pub max_retries: Option<u32>,
    /// The longest wait between attempts, a vendor's `Retry-After` included [60 s].
    pub max_retry_wait: Option<Duration>,
}

impl VendorConfig {
    /// Nothing set: the vendor's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The vendor's own environment variables, read through `env` (empty values are unset):
    ///
    /// | provider | variables |
    /// |---|---|
    /// | `openai` | `OPENAI_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_ORG_ID`, `OPENAI_PROJECT_ID` |
    /// | `anthropic` | `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL` |
    /// | `gemini` | `GEMINI_API_KEY` (else `GOOGLE_API_KEY`), `GOOGLE_GEMINI_BASE_URL` |
    /// | `openai-compatible` | `KAOS_OPENAI_COMPATIBLE_BASE_URL`, `KAOS_OPENAI_COMPATIBLE_API_KEY` |
    pub fn from_env(provider: &str, env: &dyn Fn(&str) -> Option<String>) -> Self {
        let get = |names: &[&str]| names.iter().find_map(|n| env(n).filter(|v| !v.trim().is_empty()));
        let (key, url, org, project): (&[&str], &[&str], &[&str], &[&str]) = match provider {
            "openai" => {
                (&["OPENAI_API_KEY"], &["OPENAI_BASE_URL"], &["OPENAI_ORG_ID"], &["OPENAI_PROJECT_ID"])
            }
            "anthropic" => (&["ANTHROPIC_API_KEY"], &["ANTHROPIC_BASE_URL"], &[], &[]),
            "gemini" => (&["GEMINI_API_KEY", "GOOGLE_API_KEY"], &["GOOGLE_GEMINI_BASE_URL"], &[], &[]),
            "openai-compatible" => {
                (&["KAOS_OPENAI_COMPATIBLE_API_KEY"], &["KAOS_OPENAI_COMPATIBLE_BASE_URL"], &[], &[])
            }
            _ => (&[], &[], &[], &[]),
        };
        Self {
            api_key: get(key).map(SecretString::from),
            base_url: get(url),
            organization: get(org),
            project: get(project),
            ..Self::default()
        }
    }

    /// Every field of `self`, and those of `other` where `self` has none.
    pub fn or(self, other: VendorConfig) -> Self {
        Self {
            api_key: self.api_key.or(other.api_key),
            base_url: self.base_url.or(other.base_url),
            organization: self.organization.or(other.organization),
            project: self.project.or(other.project),
            max_output_tokens: self.max_output_tokens.or(other.max_output_tokens),
            timeout: self.timeout.or(other.timeout),
            max_retries: self.max_retries.or(other.max_retries),
            max_retry_wait: self.max_retry_wait.or(other.max_retry_wait),
        }
    }

    /// With this API key.
    pub fn with_api_key(mut self, key: impl Into<SecretString>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// With this base URL.
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// With this output token limit.
    pub fn with_max_output_tokens(mut self, max: u32) -> Self {
        self.max_output_tokens = Some(max);
        self
    }

    /// With this time limit per call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// With this many retries and this longest wait.
    pub fn with_retries(mut self, max_retries: u32, max_wait: Duration) -> Self {
        self.max_retries = Some(max_retries);
        self.max_retry_wait = Some(max_wait);
        self
    }

    /// The retry policy: the default with this configuration's attempts, longest wait and
    /// time limit.
    pub fn retry_policy(&self) -> RetryPolicy {
        let mut policy = RetryPolicy::default();
        if let Some(retries) = self.max_retries {
            policy = policy.with_max_retries(retries);
        }
        if let Some(wait) = self.max_retry_wait {
            policy = policy.with_max_delay(wait).with_base_delay(policy.base_delay.min(wait));
        }
        if let Some(timeout) = self.timeout {
            policy = policy.with_timeout(Some(timeout));
        }
        policy
    }
}

/// The client of a built-in provider for `model` (`provider:model`), configured by
/// `config`, wrapped in a [`RetryClient`] with [`VendorConfig::retry_policy`].
///
/// `scripted:echo` is the offline model; an unknown provider is
/// [`ProviderError::UnknownModel`], a vendor whose feature is not compiled is
/// [`ProviderError::NotCompiled`], a missing key (or `openai-compatible`'s base URL) is
/// [`ProviderError::MissingSetting`] naming `setting_names(provider)`'s names.
///
/// ```
/// use kaos_providers::{ProviderError, VendorConfig, vendor_client};
/// assert!(vendor_client("scripted:echo", &VendorConfig::new()).is_ok());
/// assert!(matches!(vendor_client("acme:big", &VendorConfig::new()), Err(ProviderError::UnknownModel { .. })));
/// ```
pub fn vendor_client(model: &str, config: &VendorConfig) -> Result<Arc<dyn ModelClient>, ProviderError> {
    let (provider, name) = model.split_once(':').unwrap_or((model, ""));
    let client = match provider {
        // Nobody can read a resolved client's recordings: keeping them would only grow a
        // long-running process (`kaos serve`) by every request it is sent.
        "scripted" if name == "echo" => return Ok(Arc::new(ScriptedClient::echo().without_recording())),
        "scripted" => {
            return Err(ProviderError::UnknownModel {
                model: model.to_owned(),
                message: "the only built-in scripted model is 'scripted:echo'".into(),
            });
        }
        "openai" => build::openai(config),
        "anthropic" => build::anthropic(config),
        "gemini" => build::gemini(config),
        "openai-compatible" => build::openai_compatible(config),
        _ => {
            return Err(ProviderError::UnknownModel {
                model: model.to_owned(),
                message: format!("unknown provider {provider:?} (known: {})", BUILT_IN_PROVIDERS.join(", ")),
            });
        }
    }?;
    Ok(Arc::new(RetryClient::new(client, config.retry_policy())))
}

/// One constructor per vendor: the client when its feature is compiled, else `NotCompiled`.
mod build {
    #![allow(unused_imports, dead_code)]
    use std::sync::Arc;

    use super::VendorConfig;
    use crate::{ModelClient, ProviderError, SecretString};

    type Built = Result<Arc<dyn ModelClient>, ProviderError>;

    fn key(config: &VendorConfig, provider: &str, names: &str) -> Result<SecretString, ProviderError> {
        config.api_key.clone().filter(|k| !crate::ExposeSecret::expose_secret(k).is_empty()).ok_or_else(
            || ProviderError::MissingSetting { provider: provider.into(), variable: names.into() },
        )
    }

    fn not_compiled(provider: &str) -> Built {
        Err(ProviderError::NotCompiled { provider: provider.into(), feature: provider.into() })
    }

    pub(super) fn openai(config: &VendorConfig) -> Built {
        #[cfg(feature = "openai")]
        {
            let mut client =
                crate::OpenAiClient::new(key(config, "openai", "providers.openai_api_key (OPENAI_API_KEY)")?);
            if let Some(url) = &config.base_url {
                client = client.with_base_url(url);
            }
            if let Some(org) = &config.organization {
                client = client.with_organization(org.clone());
            }
            if let Some(project) = &config.project {
                client = client.with_project(project.clone());
            }
            if let Some(max) = config.max_output_tokens {
                client = client.with_max_output_tokens(max);
            }
            if let Some(timeout) = config.timeout {
                client = client.with_timeout(timeout);
            }
            Ok(Arc::new(client))
        }
        #[cfg(not(feature = "openai"))]
        {
            let _ = config;
            not_compiled("openai")
        }
    }

    pub(super) fn anthropic(config: &VendorConfig) -> Built {
        #[cfg(feature = "anthropic")]
        {
            let mut client = crate::AnthropicClient::new(key(
                config,
                "anthropic",
                "providers.anthropic_api_key (ANTHROPIC_API_KEY)",
            )?);
            if let Some(url) = &config.base_url {
                client = client.with_base_url(url);
            }
            if let Some(max) = config.max_output_tokens {
                client = client.with_max_output_tokens(max);
            }
            if let Some(timeout) = config.timeout {
                client = client.with_timeout(timeout);
            }
            Ok(Arc::new(client))
        }
        #[cfg(not(feature = "anthropic"))]
        {
            let _ = config;
            not_compiled("anthropic")
        }
    }

    pub(super) fn gemini(config: &VendorConfig) -> Built {
        #[cfg(feature = "gemini")]
        {
            let mut client = crate::GeminiClient::new(key(
                config,
                "gemini",
                "providers.gemini_api_key (GEMINI_API_KEY or GOOGLE_API_KEY)",
            )?);
            if let Some(url) = &config.base_url {
                client = client.with_base_url(url);
            }
            if let Some(max) = config.max_output_tokens {
                client = client.with_max_output_tokens(max);
            }
            if let Some(timeout) = config.timeout {
                client = client.with_timeout(timeout);
            }
            Ok(Arc::new(client))
        }
        #[cfg(not(feature = "gemini"))]
        {
            let _ = config;
            not_compiled("gemini")
        }
    }

    pub(super) fn openai_compatible(config: &VendorConfig) -> Built {
        #[cfg(feature = "openai-compatible")]
        {
            let url = config.base_url.as_deref().filter(|u| !u.trim().is_empty()).ok_or_else(|| {
                ProviderError::MissingSetting {
                    provider: "openai-compatible".into(),
                    variable: "providers.openai_compatible_base_url (KAOS_OPENAI_COMPATIBLE_BASE_URL)".into(),
                }
            })?;
            let mut client = crate::OpenAiCompatibleClient::new(url, config.api_key.clone());
            if let Some(max) = config.max_output_tokens {
                client = client.with_max_output_tokens(max);
            }
            if let Some(timeout) = config.timeout {
                client = client.with_timeout(timeout);
            }
            Ok(Arc::new(client))
        }
        #[cfg(not(feature = "openai-compatible"))]
        {
            let _ = config;
            not_compiled("openai-compatible")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, ModelRequest};

    /// The default offline model answers a long-running process's turns without keeping a
    /// copy of each request (a `kaos serve` grew by every request it was ever sent).
    #[tokio::test]
    async fn the_resolved_echo_model_keeps_no_requests() {
        let client =
            vendor_client("scripted:echo", &VendorConfig::default()).unwrap_or_else(|e| unreachable!("{e}"));
        for i in 0..3 {
            let request = ModelRequest::new("scripted:echo", vec![Message::user(format!("hi {i}"))]);
            let response = client.complete(&request).await.unwrap_or_else(|e| unreachable!("{e}"));
            assert!(response.text.contains(&format!("hi {i}")), "{response:?}");
        }
        let debug = format!("{client:?}");
        assert!(debug.contains("recorded: 0"), "{debug}");
    }
}

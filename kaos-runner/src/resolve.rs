//! [`resolve_model`]: the client for a `provider:model` reference, configured from settings
//! and the environment; one constructor per vendor, each behind its Cargo feature.

use std::sync::Arc;

use kaos_agent::ModelRef;
use kaos_providers::{ModelClient, ProviderError, RetryClient, RetryPolicy, ScriptedClient};

use crate::error::RunError;

/// The client for a `provider:model` reference, configured from the environment.
///
/// | provider | Cargo feature | settings read |
/// |---|---|---|
/// | `scripted` (only `scripted:echo`) | always | none |
/// | `openai` | `openai` | `OPENAI_API_KEY` |
/// | `anthropic` | `anthropic` | `ANTHROPIC_API_KEY` |
/// | `gemini` | `gemini` | `GEMINI_API_KEY`, else `GOOGLE_API_KEY` |
/// | `openai-compatible` | `openai-compatible` | `KAOS_OPENAI_COMPATIBLE_BASE_URL`, optional `KAOS_OPENAI_COMPATIBLE_API_KEY` |
///
/// Vendor clients come wrapped in a [`RetryClient`](kaos_providers::RetryClient) with the
/// default [`RetryPolicy`](kaos_providers::RetryPolicy) (3 retries, backoff capped at 60 s,
/// honouring `Retry-After`). A provider whose feature is not compiled in is
/// [`ProviderError::NotCompiled`] naming the feature; a missing key is
/// [`ProviderError::MissingSetting`] naming the variable. Keys are held as
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
    resolve_model_with(model, &|name| std::env::var(name).ok())
}

/// [`resolve_model`] reading settings through `env` (tests pass a map).
pub(crate) fn resolve_model_with(
    model: &ModelRef,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn ModelClient>, RunError> {
    let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    let client = match model.provider() {
        "scripted" if model.model() == "echo" => return Ok(Arc::new(ScriptedClient::echo())),
        "scripted" => Err(ProviderError::UnknownModel {
            model: model.to_string(),
            message: format!(
                "the only built-in scripted model is 'scripted:echo'; pass a ScriptedClient for {:?} with RunnerBuilder::model",
                model.model()
            ),
        }),
        "openai" => vendors::openai(&env),
        "anthropic" => vendors::anthropic(&env),
        "gemini" => vendors::gemini(&env),
        "openai-compatible" => vendors::openai_compatible(&env),
        _ => Err(ProviderError::UnknownModel {
            model: model.to_string(),
            message: "unknown provider (known: scripted, openai, anthropic, gemini, openai-compatible); pass a client with RunnerBuilder::model".into(),
        }),
    }?;
    Ok(Arc::new(RetryClient::new(client, RetryPolicy::default())))
}

/// One constructor per vendor: the client when its feature is compiled, else `NotCompiled`.
mod vendors {
    #![allow(unused_imports)]
    use std::sync::Arc;

    use kaos_providers::{ModelClient, ProviderError, SecretString};

    type Env<'a> = dyn Fn(&str) -> Option<String> + 'a;
    type Built = Result<Arc<dyn ModelClient>, ProviderError>;

    #[allow(dead_code)]
    fn require(env: &Env<'_>, provider: &str, variables: &[&str]) -> Result<String, ProviderError> {
        variables.iter().find_map(|v| env(v)).ok_or_else(|| ProviderError::MissingSetting {
            provider: provider.into(),
            variable: variables.join(" or "),
        })
    }

    #[allow(dead_code)]
    fn not_compiled(provider: &str) -> Built {
        Err(ProviderError::NotCompiled { provider: provider.into(), feature: provider.into() })
    }

    pub(super) fn openai(env: &Env<'_>) -> Built {
        #[cfg(feature = "openai")]
        {
            let key = require(env, "openai", &["OPENAI_API_KEY"])?;
            Ok(Arc::new(kaos_providers::OpenAiClient::new(SecretString::new(key))))
        }
        #[cfg(not(feature = "openai"))]
        {
            let _ = env;
            not_compiled("openai")
        }
    }

    pub(super) fn anthropic(env: &Env<'_>) -> Built {
        #[cfg(feature = "anthropic")]
        {
            let key = require(env, "anthropic", &["ANTHROPIC_API_KEY"])?;
            Ok(Arc::new(kaos_providers::AnthropicClient::new(SecretString::new(key))))
        }
        #[cfg(not(feature = "anthropic"))]
        {
            let _ = env;
            not_compiled("anthropic")
        }
    }

    pub(super) fn gemini(env: &Env<'_>) -> Built {
        #[cfg(feature = "gemini")]
        {
            let key = require(env, "gemini", &["GEMINI_API_KEY", "GOOGLE_API_KEY"])?;
            Ok(Arc::new(kaos_providers::GeminiClient::new(SecretString::new(key))))
        }
        #[cfg(not(feature = "gemini"))]
        {
            let _ = env;
            not_compiled("gemini")
        }
    }

    pub(super) fn openai_compatible(env: &Env<'_>) -> Built {
        #[cfg(feature = "openai-compatible")]
        {
            let base_url = require(env, "openai-compatible", &["KAOS_OPENAI_COMPATIBLE_BASE_URL"])?;
            let key = env("KAOS_OPENAI_COMPATIBLE_API_KEY").map(SecretString::new);
            Ok(Arc::new(kaos_providers::OpenAiCompatibleClient::new(&base_url, key)))
        }
        #[cfg(not(feature = "openai-compatible"))]
        {
            let _ = env;
            not_compiled("openai-compatible")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(model: &str, vars: &[(&str, &str)]) -> Result<Arc<dyn ModelClient>, ProviderError> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let model = ModelRef::new(model).unwrap_or_else(|e| unreachable!("{e}"));
        resolve_model_with(&model, &|name| vars.get(name).cloned()).map_err(|e| match e {
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

    /// Every vendor either names the missing variable (feature on) or the feature (off).
    #[test]
    fn each_vendor_names_its_missing_setting_or_its_feature() {
        let cases = [
            ("openai:gpt-4.1-mini", "openai", "OPENAI_API_KEY", cfg!(feature = "openai")),
            ("anthropic:claude-haiku-4-5", "anthropic", "ANTHROPIC_API_KEY", cfg!(feature = "anthropic")),
            (
                "gemini:gemini-2.5-flash",
                "gemini",
                "GEMINI_API_KEY or GOOGLE_API_KEY",
                cfg!(feature = "gemini"),
            ),
            (
                "openai-compatible:llama3.2",
                "openai-compatible",
                "KAOS_OPENAI_COMPATIBLE_BASE_URL",
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

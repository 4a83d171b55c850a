use std::path::PathBuf;
use std::time::Duration;

use crate::RuntimeError;

/// Typed runtime settings.
///
/// Defaults suit a local developer; [`Settings::from_env`] applies `KAOS_*` environment
/// variables on top of them. Explicit values set in code win over both.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// Where a disk-backed runtime keeps its VFS [`.kaos`]. `KAOS_RUNTIME_DATA_DIR`.
    pub data_dir: PathBuf,
    /// The model to use when an agent does not name one explicitly. `KAOS_MODEL`.
    pub model: Option<String>,
    /// Time limit for tools that set none [60 s]. `KAOS_TOOLS_TIMEOUT_SECS`.
    pub tool_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self { data_dir: PathBuf::from(".kaos"), model: None, tool_timeout: kaos_tools::DEFAULT_TOOL_TIMEOUT }
    }
}

impl Settings {
    /// Defaults overridden by the process environment.
    pub fn from_env() -> Result<Self, RuntimeError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Defaults overridden by `lookup(key)` (an environment stand-in, for tests and embedding).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, RuntimeError> {
        let mut settings = Self::default();
        if let Some(dir) = lookup("KAOS_RUNTIME_DATA_DIR").filter(|v| !v.is_empty()) {
            settings.data_dir = PathBuf::from(dir);
        }
        if let Some(model) = lookup("KAOS_MODEL").filter(|v| !v.is_empty()) {
            settings.model = Some(model);
        }
        if let Some(secs) = lookup("KAOS_TOOLS_TIMEOUT_SECS") {
            let invalid = |message: &str| RuntimeError::Setting {
                key: "KAOS_TOOLS_TIMEOUT_SECS".into(),
                message: format!("{message} (got {secs:?})"),
            };
            let secs: f64 = secs.trim().parse().map_err(|_| invalid("expected a number of seconds"))?;
            if !(secs.is_finite() && secs > 0.0) {
                return Err(invalid("must be a positive number of seconds"));
            }
            settings.tool_timeout = Duration::from_secs_f64(secs);
        }
        Ok(settings)
    }
}

//! Typed settings, resolved in layers with `figment`.
//!
//! Every layer is a `Layer` provider holding raw text per dotted key; figment merges them
//! (later layers win), extracts the typed values and remembers, per value, which provider
//! supplied it, which is how [`Settings::source`] can name the layer and the variable.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

use crate::RuntimeError;
use crate::secret::{REDACTED, SecretString, serialize_redacted};

/// One setting KAOS knows: its dotted key, the environment variables that set it (the first
/// one set wins) and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SettingKey {
    /// The dotted key (`runtime.data_dir`), as used by [`SettingsLoader::set`] and
    /// [`SettingsLoader::context`].
    pub key: &'static str,
    /// The environment variables (and `.env` names) that set it, highest priority first.
    pub env: &'static [&'static str],
    /// Whether the value is a secret (shown redacted everywhere).
    pub secret: bool,
    /// What the setting does, with its default.
    pub doc: &'static str,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Number,
    Bool,
    Integer,
}

const fn key(key: &'static str, env: &'static [&'static str], kind: Kind, doc: &'static str) -> SettingKey {
    SettingKey { key, env, secret: false, doc, kind }
}

const fn secret(key: &'static str, env: &'static [&'static str], doc: &'static str) -> SettingKey {
    SettingKey { key, env, secret: true, doc, kind: Kind::Text }
}

/// Every setting, in the order `kaos config show` lists them.
const KEYS: &[SettingKey] = &[
    key(
        "runtime.data_dir",
        &["KAOS_RUNTIME_DATA_DIR"],
        Kind::Text,
        "Directory of a disk-backed runtime's VFS [.kaos].",
    ),
    key("model", &["KAOS_MODEL"], Kind::Text, "Model (`provider:model`) when an agent names none [none]."),
    key(
        "tools.timeout_secs",
        &["KAOS_TOOLS_TIMEOUT_SECS"],
        Kind::Number,
        "Time limit in seconds for tools that set none [60].",
    ),
    secret(
        "providers.openai_api_key",
        &["KAOS_PROVIDERS_OPENAI_API_KEY", "OPENAI_API_KEY"],
        "OpenAI API key [none].",
    ),
    secret(
        "providers.anthropic_api_key",
        &["KAOS_PROVIDERS_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"],
        "Anthropic API key [none].",
    ),
    secret(
        "providers.gemini_api_key",
        &["KAOS_PROVIDERS_GEMINI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"],
        "Google Gemini API key [none].",
    ),
    key(
        "vfs.sync",
        &["KAOS_VFS_SYNC"],
        Kind::Text,
        "Whether every session append is fsynced before the turn is acknowledged: `always` (acknowledged turns survive a machine crash) or `never` (they survive a process crash; a machine crash may lose the last turns) [never].",
    ),
    key(
        "providers.openai_base_url",
        &["KAOS_PROVIDERS_OPENAI_BASE_URL", "OPENAI_BASE_URL"],
        Kind::Text,
        "OpenAI endpoint (a gateway, proxy or mock; `/chat/completions` is appended) [https://api.openai.com/v1].",
    ),
    key(
        "providers.openai_organization",
        &["KAOS_PROVIDERS_OPENAI_ORGANIZATION", "OPENAI_ORG_ID"],
        Kind::Text,
        "OpenAI organization, sent as the OpenAI-Organization header [none].",
    ),
    key(
        "providers.openai_project",
        &["KAOS_PROVIDERS_OPENAI_PROJECT", "OPENAI_PROJECT_ID"],
        Kind::Text,
        "OpenAI project, sent as the OpenAI-Project header [none].",
    ),
    key(
        "providers.anthropic_base_url",
        &["KAOS_PROVIDERS_ANTHROPIC_BASE_URL", "ANTHROPIC_BASE_URL"],
        Kind::Text,
        "Anthropic endpoint (`/v1/messages` is appended) [https://api.anthropic.com].",
    ),
    key(
        "providers.gemini_base_url",
        &["KAOS_PROVIDERS_GEMINI_BASE_URL", "GOOGLE_GEMINI_BASE_URL"],
        Kind::Text,
        "Gemini endpoint (`/models/<model>:generateContent` is appended) [https://generativelanguage.googleapis.com/v1beta].",
    ),
    key(
        "providers.openai_compatible_base_url",
        &["KAOS_PROVIDERS_OPENAI_COMPATIBLE_BASE_URL", "KAOS_OPENAI_COMPATIBLE_BASE_URL"],
        Kind::Text,
        "Endpoint of `openai-compatible:` models, e.g. http://localhost:11434/v1 [none: required].",
    ),
    secret(
        "providers.openai_compatible_api_key",
        &["KAOS_PROVIDERS_OPENAI_COMPATIBLE_API_KEY", "KAOS_OPENAI_COMPATIBLE_API_KEY"],
        "API key of `openai-compatible:` models [none].",
    ),
    key(
        "docs.max_file_bytes",
        &["KAOS_DOCS_MAX_FILE_BYTES"],
        Kind::Integer,
        "Largest file `kaos docs add` accepts, in bytes [67108864 (64 MiB)].",
    ),
    key(
        "docs.chunk_tokens",
        &["KAOS_DOCS_CHUNK_TOKENS"],
        Kind::Integer,
        "Most estimated tokens in one document chunk [512].",
    ),
    key(
        "docs.max_chunks_per_session",
        &["KAOS_DOCS_MAX_CHUNKS_PER_SESSION"],
        Kind::Integer,
        "Most document chunks one session may hold; a file that would go over is refused whole [10000].",
    ),
    key(
        "providers.max_output_tokens",
        &["KAOS_PROVIDERS_MAX_OUTPUT_TOKENS"],
        Kind::Integer,
        "Output token limit of model calls that set none [OpenAI, Gemini: none; Anthropic: 4096].",
    ),
    key(
        "providers.timeout_secs",
        &["KAOS_PROVIDERS_TIMEOUT_SECS"],
        Kind::Number,
        "Time limit in seconds of one model call attempt [600].",
    ),
    key(
        "providers.max_retries",
        &["KAOS_PROVIDERS_MAX_RETRIES"],
        Kind::Integer,
        "Retries of a model call after a rate limit, overload or transport error [3].",
    ),
    key(
        "providers.max_retry_wait_secs",
        &["KAOS_PROVIDERS_MAX_RETRY_WAIT_SECS"],
        Kind::Number,
        "Longest wait in seconds between attempts, a vendor's Retry-After included [60].",
    ),
    key(
        "providers.openai_max_output_tokens",
        &["KAOS_PROVIDERS_OPENAI_MAX_OUTPUT_TOKENS"],
        Kind::Integer,
        "OpenAI's output token limit, over `providers.max_output_tokens` [that setting].",
    ),
    key(
        "providers.openai_timeout_secs",
        &["KAOS_PROVIDERS_OPENAI_TIMEOUT_SECS"],
        Kind::Number,
        "OpenAI's time limit in seconds of one attempt, over `providers.timeout_secs` [that setting].",
    ),
    key(
        "providers.openai_max_retries",
        &["KAOS_PROVIDERS_OPENAI_MAX_RETRIES"],
        Kind::Integer,
        "OpenAI's retries, over `providers.max_retries` [that setting].",
    ),
    key(
        "providers.openai_max_retry_wait_secs",
        &["KAOS_PROVIDERS_OPENAI_MAX_RETRY_WAIT_SECS"],
        Kind::Number,
        "OpenAI's longest wait in seconds between attempts, over `providers.max_retry_wait_secs` [that setting].",
    ),
    key(
        "providers.anthropic_max_output_tokens",
        &["KAOS_PROVIDERS_ANTHROPIC_MAX_OUTPUT_TOKENS"],
        Kind::Integer,
        "Anthropic's output token limit, over `providers.max_output_tokens` [that setting].",
    ),
    key(
        "providers.anthropic_timeout_secs",
        &["KAOS_PROVIDERS_ANTHROPIC_TIMEOUT_SECS"],
        Kind::Number,
        "Anthropic's time limit in seconds of one attempt, over `providers.timeout_secs` [that setting].",
    ),
    key(
        "providers.anthropic_max_retries",
        &["KAOS_PROVIDERS_ANTHROPIC_MAX_RETRIES"],
        Kind::Integer,
        "Anthropic's retries, over `providers.max_retries` [that setting].",
    ),
    key(
        "providers.anthropic_max_retry_wait_secs",
        &["KAOS_PROVIDERS_ANTHROPIC_MAX_RETRY_WAIT_SECS"],
        Kind::Number,
        "Anthropic's longest wait in seconds between attempts, over `providers.max_retry_wait_secs` [that setting].",
    ),
    key(
        "providers.gemini_max_output_tokens",
        &["KAOS_PROVIDERS_GEMINI_MAX_OUTPUT_TOKENS"],
        Kind::Integer,
        "Gemini's output token limit, over `providers.max_output_tokens` [that setting].",
    ),
    key(
        "providers.gemini_timeout_secs",
        &["KAOS_PROVIDERS_GEMINI_TIMEOUT_SECS"],
        Kind::Number,
        "Gemini's time limit in seconds of one attempt, over `providers.timeout_secs` [that setting].",
    ),
    key(
        "providers.gemini_max_retries",
        &["KAOS_PROVIDERS_GEMINI_MAX_RETRIES"],
        Kind::Integer,
        "Gemini's retries, over `providers.max_retries` [that setting].",
    ),
    key(
        "providers.gemini_max_retry_wait_secs",
        &["KAOS_PROVIDERS_GEMINI_MAX_RETRY_WAIT_SECS"],
        Kind::Number,
        "Gemini's longest wait in seconds between attempts, over `providers.max_retry_wait_secs` [that setting].",
    ),
    key(
        "providers.openai_compatible_max_output_tokens",
        &["KAOS_PROVIDERS_OPENAI_COMPATIBLE_MAX_OUTPUT_TOKENS"],
        Kind::Integer,
        "`openai-compatible:` models' output token limit, over `providers.max_output_tokens` [that setting].",
    ),
    key(
        "providers.openai_compatible_timeout_secs",
        &["KAOS_PROVIDERS_OPENAI_COMPATIBLE_TIMEOUT_SECS"],
        Kind::Number,
        "`openai-compatible:` models' time limit in seconds of one attempt, over `providers.timeout_secs` [that setting].",
    ),
    key(
        "providers.openai_compatible_max_retries",
        &["KAOS_PROVIDERS_OPENAI_COMPATIBLE_MAX_RETRIES"],
        Kind::Integer,
        "`openai-compatible:` models' retries, over `providers.max_retries` [that setting].",
    ),
    key(
        "providers.openai_compatible_max_retry_wait_secs",
        &["KAOS_PROVIDERS_OPENAI_COMPATIBLE_MAX_RETRY_WAIT_SECS"],
        Kind::Number,
        "`openai-compatible:` models' longest wait in seconds between attempts, over `providers.max_retry_wait_secs` [that setting].",
    ),
    key(
        "pricing.file",
        &["KAOS_PRICING_FILE"],
        Kind::Text,
        "TOML file of `[pricing.\"provider:model\"]` prices (input, output, cached_input per million tokens) over the shipped table [none].",
    ),
    key(
        "vfs.s3_bucket",
        &["KAOS_VFS_S3_BUCKET"],
        Kind::Text,
        "S3 bucket holding the sessions; set, the CLI uses the object-store VFS instead of the data directory [none].",
    ),
    key("vfs.s3_prefix", &["KAOS_VFS_S3_PREFIX"], Kind::Text, "Key prefix inside the bucket [none]."),
    key(
        "vfs.s3_endpoint",
        &["KAOS_VFS_S3_ENDPOINT", "AWS_ENDPOINT_URL"],
        Kind::Text,
        "S3-compatible endpoint URL (MinIO, R2, …) [AWS].",
    ),
    key("vfs.s3_region", &["KAOS_VFS_S3_REGION", "AWS_REGION"], Kind::Text, "Bucket region [us-east-1]."),
    secret(
        "vfs.s3_access_key_id",
        &["KAOS_VFS_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"],
        "S3 access key id [none].",
    ),
    secret(
        "vfs.s3_secret_access_key",
        &["KAOS_VFS_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"],
        "S3 secret access key [none].",
    ),
    key(
        "vfs.s3_lease_ttl_secs",
        &["KAOS_VFS_S3_LEASE_TTL_SECS"],
        Kind::Number,
        "Seconds a session lease lives without renewal; a holder that stops renewing (crashed, paused) is taken over after it, and every process sharing the bucket should use the same [15].",
    ),
    key(
        "vfs.s3_lock_timeout_secs",
        &["KAOS_VFS_S3_LOCK_TIMEOUT_SECS"],
        Kind::Number,
        "Seconds a turn waits for a session's lease before giving up [60].",
    ),
    key(
        "vfs.s3_single_writer",
        &["KAOS_VFS_S3_SINGLE_WRITER"],
        Kind::Bool,
        "Only this process uses the bucket: no leases and no check that the store honours conditional writes (for stores without If-Match/If-None-Match; unsafe with several processes) [false].",
    ),
    secret(
        "mcp.token",
        &["KAOS_MCP_TOKEN"],
        "Bearer token the MCP HTTP server (`kaos serve --http`) requires [none: it refuses to start].",
    ),
    secret(
        "mcp.tokens",
        &["KAOS_MCP_TOKENS"],
        "More callers of `kaos serve --http`, each with its bearer token: `CALLER=TOKEN,CALLER=TOKEN` [none].",
    ),
    key(
        "sessions.cache_sessions",
        &["KAOS_SESSIONS_CACHE_SESSIONS"],
        Kind::Integer,
        "Most sessions whose memory a runner keeps between turns; 0 turns the cache off [1024].",
    ),
    key(
        "sessions.cache_bytes",
        &["KAOS_SESSIONS_CACHE_BYTES"],
        Kind::Integer,
        "About how many bytes of memory the kept sessions may hold; 0 turns the cache off [67108864 (64 MiB)].",
    ),
    key(
        "vfs.io_threads",
        &["KAOS_VFS_IO_THREADS"],
        Kind::Integer,
        "Threads that run the data directory's file operations [2 per core, at least 4].",
    ),
];

/// Where a setting's value came from. Layers, highest precedence first: [`Override`],
/// [`Context`], [`Env`], [`DotEnv`], [`Default`].
///
/// [`Override`]: SettingSource::Override
/// [`Context`]: SettingSource::Context
/// [`Env`]: SettingSource::Env
/// [`DotEnv`]: SettingSource::DotEnv
/// [`Default`]: SettingSource::Default
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "layer", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SettingSource {
    /// Set explicitly in code (or on the command line) with [`SettingsLoader::set`].
    Override,
    /// Set by the per-request context with [`SettingsLoader::context`].
    Context,
    /// An environment variable.
    Env {
        /// The variable's name.
        var: String,
    },
    /// A line of a `.env` file.
    #[serde(rename = "dotenv")]
    DotEnv {
        /// The file.
        path: PathBuf,
        /// The variable's name.
        var: String,
    },
    /// A file of settings (the CLI: the agent file's `[providers]` and `[settings]` tables).
    File {
        /// The file.
        path: PathBuf,
    },
    /// The built-in default.
    Default,
}

impl fmt::Display for SettingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingSource::Override => f.write_str("override"),
            SettingSource::Context => f.write_str("request context"),
            SettingSource::Env { var } => write!(f, "environment variable {var}"),
            SettingSource::DotEnv { path, var } => write!(f, "{var} in {}", path.display()),
            SettingSource::File { path } => write!(f, "{}", path.display()),
            SettingSource::Default => f.write_str("default"),
        }
    }
}

/// One resolved setting, as `kaos config show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SettingEntry {
    /// The dotted key.
    pub key: &'static str,
    /// The value as text (`None` when unset); a secret's value is [`REDACTED`].
    pub value: Option<String>,
    /// Where the value came from.
    pub source: SettingSource,
    /// Whether the value is a secret.
    pub secret: bool,
}

/// How to reach the model vendors: keys (never printed), endpoints, headers, limits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ProviderSettings {
    /// `providers.openai_api_key`: `KAOS_PROVIDERS_OPENAI_API_KEY`, else `OPENAI_API_KEY`.
    #[serde(serialize_with = "serialize_redacted")]
    pub openai_api_key: Option<SecretString>,
    /// `providers.anthropic_api_key`: `KAOS_PROVIDERS_ANTHROPIC_API_KEY`, else `ANTHROPIC_API_KEY`.
    #[serde(serialize_with = "serialize_redacted")]
    pub anthropic_api_key: Option<SecretString>,
    /// `providers.gemini_api_key`: `KAOS_PROVIDERS_GEMINI_API_KEY`, else `GEMINI_API_KEY`,
    /// else `GOOGLE_API_KEY`.
    #[serde(serialize_with = "serialize_redacted")]
    pub gemini_api_key: Option<SecretString>,
    /// `providers.openai_base_url`: `KAOS_PROVIDERS_OPENAI_BASE_URL`, else `OPENAI_BASE_URL`.
    pub openai_base_url: Option<String>,
    /// `providers.openai_organization`: `KAOS_PROVIDERS_OPENAI_ORGANIZATION`, else `OPENAI_ORG_ID`.
    pub openai_organization: Option<String>,
    /// `providers.openai_project`: `KAOS_PROVIDERS_OPENAI_PROJECT`, else `OPENAI_PROJECT_ID`.
    pub openai_project: Option<String>,
    /// `providers.anthropic_base_url`: `KAOS_PROVIDERS_ANTHROPIC_BASE_URL`, else `ANTHROPIC_BASE_URL`.
    pub anthropic_base_url: Option<String>,
    /// `providers.gemini_base_url`: `KAOS_PROVIDERS_GEMINI_BASE_URL`, else `GOOGLE_GEMINI_BASE_URL`.
    pub gemini_base_url: Option<String>,
    /// `providers.openai_compatible_base_url`: `KAOS_PROVIDERS_OPENAI_COMPATIBLE_BASE_URL`,
    /// else `KAOS_OPENAI_COMPATIBLE_BASE_URL`.
    pub openai_compatible_base_url: Option<String>,
    /// `providers.openai_compatible_api_key`: `KAOS_PROVIDERS_OPENAI_COMPATIBLE_API_KEY`, else
    /// `KAOS_OPENAI_COMPATIBLE_API_KEY`.
    #[serde(serialize_with = "serialize_redacted")]
    pub openai_compatible_api_key: Option<SecretString>,
    /// `providers.max_output_tokens`: `KAOS_PROVIDERS_MAX_OUTPUT_TOKENS`.
    pub max_output_tokens: Option<u32>,
    /// `providers.timeout_secs`: `KAOS_PROVIDERS_TIMEOUT_SECS`.
    pub timeout_secs: Option<f64>,
    /// `providers.max_retries`: `KAOS_PROVIDERS_MAX_RETRIES`.
    pub max_retries: Option<u32>,
    /// `providers.max_retry_wait_secs`: `KAOS_PROVIDERS_MAX_RETRY_WAIT_SECS`.
    pub max_retry_wait_secs: Option<f64>,
    /// `providers.openai_max_output_tokens`: `KAOS_PROVIDERS_OPENAI_MAX_OUTPUT_TOKENS`; beats `max_output_tokens` for this vendor.
    pub openai_max_output_tokens: Option<u32>,
    /// `providers.openai_timeout_secs`: `KAOS_PROVIDERS_OPENAI_TIMEOUT_SECS`; beats `timeout_secs` for this vendor.
    pub openai_timeout_secs: Option<f64>,
    /// `providers.openai_max_retries`: `KAOS_PROVIDERS_OPENAI_MAX_RETRIES`; beats `max_retries` for this vendor.
    pub openai_max_retries: Option<u32>,
    /// `providers.openai_max_retry_wait_secs`: `KAOS_PROVIDERS_OPENAI_MAX_RETRY_WAIT_SECS`; beats `max_retry_wait_secs` for this vendor.
    pub openai_max_retry_wait_secs: Option<f64>,
    /// `providers.anthropic_max_output_tokens`: `KAOS_PROVIDERS_ANTHROPIC_MAX_OUTPUT_TOKENS`; beats `max_output_tokens` for this vendor.
    pub anthropic_max_output_tokens: Option<u32>,
    /// `providers.anthropic_timeout_secs`: `KAOS_PROVIDERS_ANTHROPIC_TIMEOUT_SECS`; beats `timeout_secs` for this vendor.
    pub anthropic_timeout_secs: Option<f64>,
    /// `providers.anthropic_max_retries`: `KAOS_PROVIDERS_ANTHROPIC_MAX_RETRIES`; beats `max_retries` for this vendor.
    pub anthropic_max_retries: Option<u32>,
    /// `providers.anthropic_max_retry_wait_secs`: `KAOS_PROVIDERS_ANTHROPIC_MAX_RETRY_WAIT_SECS`; beats `max_retry_wait_secs` for this vendor.
    pub anthropic_max_retry_wait_secs: Option<f64>,
    /// `providers.gemini_max_output_tokens`: `KAOS_PROVIDERS_GEMINI_MAX_OUTPUT_TOKENS`; beats `max_output_tokens` for this vendor.
    pub gemini_max_output_tokens: Option<u32>,
    /// `providers.gemini_timeout_secs`: `KAOS_PROVIDERS_GEMINI_TIMEOUT_SECS`; beats `timeout_secs` for this vendor.
    pub gemini_timeout_secs: Option<f64>,
    /// `providers.gemini_max_retries`: `KAOS_PROVIDERS_GEMINI_MAX_RETRIES`; beats `max_retries` for this vendor.
    pub gemini_max_retries: Option<u32>,
    /// `providers.gemini_max_retry_wait_secs`: `KAOS_PROVIDERS_GEMINI_MAX_RETRY_WAIT_SECS`; beats `max_retry_wait_secs` for this vendor.
    pub gemini_max_retry_wait_secs: Option<f64>,
    /// `providers.openai_compatible_max_output_tokens`: `KAOS_PROVIDERS_OPENAI_COMPATIBLE_MAX_OUTPUT_TOKENS`; beats `max_output_tokens` for this vendor.
    pub openai_compatible_max_output_tokens: Option<u32>,
    /// `providers.openai_compatible_timeout_secs`: `KAOS_PROVIDERS_OPENAI_COMPATIBLE_TIMEOUT_SECS`; beats `timeout_secs` for this vendor.
    pub openai_compatible_timeout_secs: Option<f64>,
    /// `providers.openai_compatible_max_retries`: `KAOS_PROVIDERS_OPENAI_COMPATIBLE_MAX_RETRIES`; beats `max_retries` for this vendor.
    pub openai_compatible_max_retries: Option<u32>,
    /// `providers.openai_compatible_max_retry_wait_secs`: `KAOS_PROVIDERS_OPENAI_COMPATIBLE_MAX_RETRY_WAIT_SECS`; beats `max_retry_wait_secs` for this vendor.
    pub openai_compatible_max_retry_wait_secs: Option<f64>,
}

/// The limits of one vendor's model calls: its own `providers.<vendor>_*` settings where set
/// (whatever their layer), else the vendor-wide `providers.*` ones. `None` keeps the
/// vendor's default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct VendorLimits {
    /// Output token limit of calls that set none.
    pub max_output_tokens: Option<u32>,
    /// Time limit in seconds of one attempt.
    pub timeout_secs: Option<f64>,
    /// Retries after a rate limit, overload or transport error.
    pub max_retries: Option<u32>,
    /// Longest wait in seconds between attempts.
    pub max_retry_wait_secs: Option<f64>,
}

impl ProviderSettings {
    /// The limits of `provider`'s calls (`openai`, `anthropic`, `gemini`,
    /// `openai-compatible`; any other provider gets the vendor-wide ones).
    ///
    /// ```
    /// use kaos_runtime::Settings;
    /// let settings = Settings::loader()
    ///     .set("providers.max_retries", "5")
    ///     .set("providers.anthropic_max_retries", "1")
    ///     .load()?;
    /// assert_eq!(settings.providers.limits("anthropic").max_retries, Some(1));
    /// assert_eq!(settings.providers.limits("openai").max_retries, Some(5));
    /// # Ok::<(), kaos_runtime::RuntimeError>(())
    /// ```
    pub fn limits(&self, provider: &str) -> VendorLimits {
        let own = match provider {
            "openai" => VendorLimits {
                max_output_tokens: self.openai_max_output_tokens,
                timeout_secs: self.openai_timeout_secs,
                max_retries: self.openai_max_retries,
                max_retry_wait_secs: self.openai_max_retry_wait_secs,
            },
            "anthropic" => VendorLimits {
                max_output_tokens: self.anthropic_max_output_tokens,
                timeout_secs: self.anthropic_timeout_secs,
                max_retries: self.anthropic_max_retries,
                max_retry_wait_secs: self.anthropic_max_retry_wait_secs,
            },
            "gemini" => VendorLimits {
                max_output_tokens: self.gemini_max_output_tokens,
                timeout_secs: self.gemini_timeout_secs,
                max_retries: self.gemini_max_retries,
                max_retry_wait_secs: self.gemini_max_retry_wait_secs,
            },
            "openai-compatible" => VendorLimits {
                max_output_tokens: self.openai_compatible_max_output_tokens,
                timeout_secs: self.openai_compatible_timeout_secs,
                max_retries: self.openai_compatible_max_retries,
                max_retry_wait_secs: self.openai_compatible_max_retry_wait_secs,
            },
            _ => VendorLimits::default(),
        };
        VendorLimits {
            max_output_tokens: own.max_output_tokens.or(self.max_output_tokens),
            timeout_secs: own.timeout_secs.or(self.timeout_secs),
            max_retries: own.max_retries.or(self.max_retries),
            max_retry_wait_secs: own.max_retry_wait_secs.or(self.max_retry_wait_secs),
        }
    }
}

/// Limits of documents ingested into sessions (`kaos docs add`, `kaos run --file`, the HTTP
/// API's document upload). `None` leaves the ingestion default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DocsSettings {
    /// `docs.max_file_bytes`: `KAOS_DOCS_MAX_FILE_BYTES` [64 MiB].
    pub max_file_bytes: Option<u64>,
    /// `docs.chunk_tokens`: `KAOS_DOCS_CHUNK_TOKENS` [512].
    pub chunk_tokens: Option<u64>,
    /// `docs.max_chunks_per_session`: `KAOS_DOCS_MAX_CHUNKS_PER_SESSION` [10 000].
    pub max_chunks_per_session: Option<u64>,
}

/// The session cache of runners built from the settings (`kaos serve`, `kaos run`). `None`
/// leaves the runner's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SessionsSettings {
    /// `sessions.cache_sessions`: `KAOS_SESSIONS_CACHE_SESSIONS` [1024].
    pub cache_sessions: Option<u64>,
    /// `sessions.cache_bytes`: `KAOS_SESSIONS_CACHE_BYTES` [64 MiB].
    pub cache_bytes: Option<u64>,
}

/// Where prices come from besides the shipped table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PricingSettings {
    /// `pricing.file`: `KAOS_PRICING_FILE`. A TOML file of `[pricing."provider:model"]` tables.
    pub file: Option<PathBuf>,
}

/// When a disk VFS makes appends durable (`vfs.sync`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum VfsSync {
    /// Every append is fsynced before it returns: an acknowledged turn survives a machine
    /// crash (one fsync per turn).
    Always,
    /// Appends reach the OS, not the disk, when they return: an acknowledged turn survives
    /// the process's crash but a machine crash may lose the last turns (never the ones before
    /// a checkpoint, which is written only after the log is fsynced). The default.
    #[default]
    Never,
}

impl VfsSync {
    /// The setting's text, `always` or `never`.
    pub fn as_str(self) -> &'static str {
        match self {
            VfsSync::Always => "always",
            VfsSync::Never => "never",
        }
    }
}

/// Where and how sessions are stored: the disk VFS's durability, or S3-compatible object
/// storage instead of the data directory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct VfsSettings {
    /// `vfs.sync`: `KAOS_VFS_SYNC`, `always` or `never` [never].
    pub sync: VfsSync,
    /// `vfs.s3_bucket`: `KAOS_VFS_S3_BUCKET`. Set, sessions live in this bucket.
    pub s3_bucket: Option<String>,
    /// `vfs.s3_prefix`: `KAOS_VFS_S3_PREFIX`.
    pub s3_prefix: Option<String>,
    /// `vfs.s3_endpoint`: `KAOS_VFS_S3_ENDPOINT`, else `AWS_ENDPOINT_URL`.
    pub s3_endpoint: Option<String>,
    /// `vfs.s3_region`: `KAOS_VFS_S3_REGION`, else `AWS_REGION`.
    pub s3_region: Option<String>,
    /// `vfs.s3_access_key_id`: `KAOS_VFS_S3_ACCESS_KEY_ID`, else `AWS_ACCESS_KEY_ID`.
    #[serde(serialize_with = "serialize_redacted")]
    pub s3_access_key_id: Option<SecretString>,
    /// `vfs.s3_secret_access_key`: `KAOS_VFS_S3_SECRET_ACCESS_KEY`, else `AWS_SECRET_ACCESS_KEY`.
    #[serde(serialize_with = "serialize_redacted")]
    pub s3_secret_access_key: Option<SecretString>,
    /// `vfs.s3_lease_ttl_secs`: `KAOS_VFS_S3_LEASE_TTL_SECS` (`None`: the VFS default, 15 s).
    pub s3_lease_ttl: Option<Duration>,
    /// `vfs.s3_lock_timeout_secs`: `KAOS_VFS_S3_LOCK_TIMEOUT_SECS` (`None`: the VFS default,
    /// 60 s).
    pub s3_lock_timeout: Option<Duration>,
    /// `vfs.s3_single_writer`: `KAOS_VFS_S3_SINGLE_WRITER` (`true`/`false`, `1`/`0`,
    /// `yes`/`no`, `on`/`off`) [false].
    pub s3_single_writer: bool,
    /// `vfs.io_threads`: `KAOS_VFS_IO_THREADS`, threads of the disk VFS's file operations
    /// (`None`: [`kaos_vfs::default_io_threads`]).
    pub io_threads: Option<u64>,
}

/// The `vfs` section as the layers give it (durations as seconds).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct VfsSection {
    sync: VfsSync,
    s3_bucket: Option<String>,
    s3_prefix: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_access_key_id: Option<SecretString>,
    s3_secret_access_key: Option<SecretString>,
    s3_lease_ttl_secs: Option<f64>,
    s3_lock_timeout_secs: Option<f64>,
    s3_single_writer: Option<bool>,
    io_threads: Option<u64>,
}

/// Settings of the MCP server (`kaos serve`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct McpSettings {
    /// `mcp.token`: `KAOS_MCP_TOKEN`, the caller `default`. The HTTP transport refuses to
    /// start without a token.
    #[serde(serialize_with = "serialize_redacted")]
    pub token: Option<SecretString>,
    /// `mcp.tokens`: `KAOS_MCP_TOKENS`, more callers as `CALLER=TOKEN,CALLER=TOKEN`.
    #[serde(serialize_with = "serialize_redacted")]
    pub tokens: Option<SecretString>,
}

/// Typed runtime settings.
///
/// Resolved by a [`SettingsLoader`] from layers with one precedence, highest first:
///
/// 1. explicit overrides in code ([`SettingsLoader::set`]; the CLI's flags),
/// 2. the per-request context ([`SettingsLoader::context`]),
/// 3. environment variables (`KAOS_<MODULE>_<NAME>`, plus the vendors' own names for API keys),
/// 4. a `.env` file (same names),
/// 5. the defaults.
///
/// Every value remembers its layer ([`Settings::source`]); secrets are [`SecretString`]s.
///
/// ```
/// use kaos_runtime::{SettingSource, Settings};
///
/// let settings = Settings::loader()
///     .env_vars([("KAOS_MODEL", "openai:gpt-4.1-mini"), ("OPENAI_API_KEY", "sk-123")])
///     .set("tools.timeout_secs", "5")
///     .load()?;
/// assert_eq!(settings.model.as_deref(), Some("openai:gpt-4.1-mini"));
/// assert_eq!(settings.tool_timeout.as_secs(), 5);
/// assert_eq!(settings.source("tools.timeout_secs"), Some(SettingSource::Override));
/// assert_eq!(settings.source("providers.openai_api_key"),
///            Some(SettingSource::Env { var: "OPENAI_API_KEY".into() }));
/// assert_eq!(settings.source("runtime.data_dir"), Some(SettingSource::Default));
/// assert_eq!(format!("{:?}", settings.providers.openai_api_key), "Some(SecretBox<str>([REDACTED]))");
/// # Ok::<(), kaos_runtime::RuntimeError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// Where a disk-backed runtime keeps its VFS [`.kaos`]. `runtime.data_dir`,
    /// `KAOS_RUNTIME_DATA_DIR`.
    pub data_dir: PathBuf,
    /// The model to use when an agent does not name one explicitly. `model`, `KAOS_MODEL`.
    pub model: Option<String>,
    /// Time limit for tools that set none [60 s]. `tools.timeout_secs`,
    /// `KAOS_TOOLS_TIMEOUT_SECS`.
    pub tool_timeout: Duration,
    /// The model vendors' API keys.
    pub providers: ProviderSettings,
    /// Object storage for sessions, if any.
    pub vfs: VfsSettings,
    /// The MCP server's settings.
    pub mcp: McpSettings,
    /// Prices over the shipped table.
    pub pricing: PricingSettings,
    /// Limits of ingested documents.
    pub docs: DocsSettings,
    /// The session cache.
    pub sessions: SessionsSettings,
    /// Key → layer, for every key not at its default.
    sources: BTreeMap<&'static str, SettingSource>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            model: None,
            tool_timeout: kaos_tools::DEFAULT_TOOL_TIMEOUT,
            providers: ProviderSettings::default(),
            vfs: VfsSettings::default(),
            mcp: McpSettings::default(),
            pricing: PricingSettings::default(),
            docs: DocsSettings::default(),
            sessions: SessionsSettings::default(),
            sources: BTreeMap::new(),
        }
    }
}

const DEFAULT_DATA_DIR: &str = ".kaos";

impl Settings {
    /// A loader with no layers but the defaults.
    pub fn loader() -> SettingsLoader {
        SettingsLoader::default()
    }

    /// Defaults, then `./.env` (when present), then the process environment.
    pub fn from_env() -> Result<Self, RuntimeError> {
        Self::loader().dotenv_file(".env").process_env().load()
    }

    /// Defaults overridden by `lookup(var)` (an environment stand-in, for tests and embedding).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, RuntimeError> {
        Self::loader().load_with(Some(&lookup))
    }

    /// The data directory as a disk VFS (created when missing), fsyncing appends when
    /// `vfs.sync` is `always`, on `vfs.io_threads` threads.
    pub fn disk_vfs(&self) -> Result<kaos_vfs::DiskVfs, RuntimeError> {
        let vfs =
            kaos_vfs::DiskVfs::new(&self.data_dir)?.with_synced_appends(self.vfs.sync == VfsSync::Always);
        Ok(match self.vfs.io_threads {
            Some(threads) => vfs.with_io_threads(usize::try_from(threads).unwrap_or(usize::MAX)),
            None => vfs,
        })
    }

    /// Every setting KAOS knows, in display order.
    pub fn keys() -> &'static [SettingKey] {
        KEYS
    }

    /// Which layer the value of `key` (a dotted key such as `runtime.data_dir`) came from;
    /// `None` for a key that is not a setting.
    pub fn source(&self, key: &str) -> Option<SettingSource> {
        let known = KEYS.iter().find(|k| k.key == key)?;
        Some(self.sources.get(known.key).cloned().unwrap_or(SettingSource::Default))
    }

    /// Every setting with its value (secrets redacted) and source, in [`Settings::keys`] order.
    pub fn entries(&self) -> Vec<SettingEntry> {
        let redacted = |s: &Option<SecretString>| s.as_ref().map(|_| REDACTED.to_owned());
        let p = &self.providers;
        KEYS.iter()
            .map(|k| {
                let value = match k.key {
                    "runtime.data_dir" => Some(self.data_dir.display().to_string()),
                    "model" => self.model.clone(),
                    "tools.timeout_secs" => Some(self.tool_timeout.as_secs_f64().to_string()),
                    "providers.openai_api_key" => redacted(&self.providers.openai_api_key),
                    "providers.anthropic_api_key" => redacted(&self.providers.anthropic_api_key),
                    "providers.gemini_api_key" => redacted(&self.providers.gemini_api_key),
                    "vfs.sync" => Some(self.vfs.sync.as_str().to_owned()),
                    "vfs.s3_bucket" => self.vfs.s3_bucket.clone(),
                    "vfs.s3_prefix" => self.vfs.s3_prefix.clone(),
                    "vfs.s3_endpoint" => self.vfs.s3_endpoint.clone(),
                    "vfs.s3_region" => self.vfs.s3_region.clone(),
                    "vfs.s3_access_key_id" => redacted(&self.vfs.s3_access_key_id),
                    "vfs.s3_secret_access_key" => redacted(&self.vfs.s3_secret_access_key),
                    "vfs.s3_lease_ttl_secs" => self.vfs.s3_lease_ttl.map(|d| d.as_secs_f64().to_string()),
                    "vfs.s3_lock_timeout_secs" => {
                        self.vfs.s3_lock_timeout.map(|d| d.as_secs_f64().to_string())
                    }
                    "vfs.s3_single_writer" => Some(self.vfs.s3_single_writer.to_string()),
                    "mcp.token" => redacted(&self.mcp.token),
                    "providers.openai_base_url" => p.openai_base_url.clone(),
                    "providers.openai_organization" => p.openai_organization.clone(),
                    "providers.openai_project" => p.openai_project.clone(),
                    "providers.anthropic_base_url" => p.anthropic_base_url.clone(),
                    "providers.gemini_base_url" => p.gemini_base_url.clone(),
                    "providers.openai_compatible_base_url" => p.openai_compatible_base_url.clone(),
                    "providers.openai_compatible_api_key" => redacted(&p.openai_compatible_api_key),
                    "providers.max_output_tokens" => p.max_output_tokens.map(|n| n.to_string()),
                    "providers.timeout_secs" => p.timeout_secs.map(|n| n.to_string()),
                    "providers.max_retries" => p.max_retries.map(|n| n.to_string()),
                    "providers.max_retry_wait_secs" => p.max_retry_wait_secs.map(|n| n.to_string()),
                    "providers.openai_max_output_tokens" => p.openai_max_output_tokens.map(|n| n.to_string()),
                    "providers.openai_timeout_secs" => p.openai_timeout_secs.map(|n| n.to_string()),
                    "providers.openai_max_retries" => p.openai_max_retries.map(|n| n.to_string()),
                    "providers.openai_max_retry_wait_secs" => {
                        p.openai_max_retry_wait_secs.map(|n| n.to_string())
                    }
                    "providers.anthropic_max_output_tokens" => {
                        p.anthropic_max_output_tokens.map(|n| n.to_string())
                    }
                    "providers.anthropic_timeout_secs" => p.anthropic_timeout_secs.map(|n| n.to_string()),
                    "providers.anthropic_max_retries" => p.anthropic_max_retries.map(|n| n.to_string()),
                    "providers.anthropic_max_retry_wait_secs" => {
                        p.anthropic_max_retry_wait_secs.map(|n| n.to_string())
                    }
                    "providers.gemini_max_output_tokens" => p.gemini_max_output_tokens.map(|n| n.to_string()),
                    "providers.gemini_timeout_secs" => p.gemini_timeout_secs.map(|n| n.to_string()),
                    "providers.gemini_max_retries" => p.gemini_max_retries.map(|n| n.to_string()),
                    "providers.gemini_max_retry_wait_secs" => {
                        p.gemini_max_retry_wait_secs.map(|n| n.to_string())
                    }
                    "providers.openai_compatible_max_output_tokens" => {
                        p.openai_compatible_max_output_tokens.map(|n| n.to_string())
                    }
                    "providers.openai_compatible_timeout_secs" => {
                        p.openai_compatible_timeout_secs.map(|n| n.to_string())
                    }
                    "providers.openai_compatible_max_retries" => {
                        p.openai_compatible_max_retries.map(|n| n.to_string())
                    }
                    "providers.openai_compatible_max_retry_wait_secs" => {
                        p.openai_compatible_max_retry_wait_secs.map(|n| n.to_string())
                    }
                    "pricing.file" => self.pricing.file.as_ref().map(|f| f.display().to_string()),
                    "mcp.tokens" => redacted(&self.mcp.tokens),
                    "docs.max_file_bytes" => self.docs.max_file_bytes.map(|n| n.to_string()),
                    "docs.chunk_tokens" => self.docs.chunk_tokens.map(|n| n.to_string()),
                    "docs.max_chunks_per_session" => self.docs.max_chunks_per_session.map(|n| n.to_string()),
                    "sessions.cache_sessions" => self.sessions.cache_sessions.map(|n| n.to_string()),
                    "sessions.cache_bytes" => self.sessions.cache_bytes.map(|n| n.to_string()),
                    "vfs.io_threads" => self.vfs.io_threads.map(|n| n.to_string()),
                    _ => None,
                };
                SettingEntry {
                    key: k.key,
                    value,
                    source: self.sources.get(k.key).cloned().unwrap_or(SettingSource::Default),
                    secret: k.secret,
                }
            })
            .collect()
    }
}

type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;
type EnvFn<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Resolves [`Settings`] from layers; see [`Settings`] for the precedence. Every method adds
/// to one layer; nothing is read until [`SettingsLoader::load`].
#[derive(Clone, Default)]
pub struct SettingsLoader {
    dotenv: Option<PathBuf>,
    env: Option<Lookup>,
    context: Vec<(String, String)>,
    overrides: Vec<(String, String)>,
    file: Option<(PathBuf, Vec<(String, String)>)>,
}

impl fmt::Debug for SettingsLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets: show keys only.
        f.debug_struct("SettingsLoader")
            .field("dotenv", &self.dotenv)
            .field("env", &self.env.is_some())
            .field("context", &self.context.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("overrides", &self.overrides.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("file", &self.file.as_ref().map(|(path, _)| path))
            .finish()
    }
}

impl SettingsLoader {
    /// Reads the `.env` file at `path` (same variable names as the environment). A missing
    /// file is skipped; an unreadable or malformed one is an error.
    pub fn dotenv_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.dotenv = Some(path.into());
        self
    }

    /// Reads the process environment.
    pub fn process_env(mut self) -> Self {
        self.env = Some(Arc::new(|var| std::env::var(var).ok()));
        self
    }

    /// Reads environment variables from `lookup` instead of the process.
    pub fn env_lookup(mut self, lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.env = Some(Arc::new(lookup));
        self
    }

    /// Reads environment variables from these pairs instead of the process.
    pub fn env_vars<K, V>(self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars: BTreeMap<String, String> = vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self.env_lookup(move |var| vars.get(var).cloned())
    }

    /// Sets dotted keys read from the file at `path` (e.g. an agent file's `[providers]`
    /// table): a layer above the environment and below the context and overrides. An unknown
    /// key is an error naming the file.
    pub fn file(mut self, path: impl Into<PathBuf>, pairs: Vec<(String, String)>) -> Self {
        self.file = Some((path.into(), pairs));
        self
    }

    /// Sets `key` (dotted, e.g. `model`) in the per-request context layer.
    pub fn context(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.context.push((key.into(), value.into()));
        self
    }

    /// Sets `key` (dotted, e.g. `runtime.data_dir`) as an explicit override: the highest layer.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides.push((key.into(), value.into()));
        self
    }

    /// Resolves the settings. Errors ([`RuntimeError::Setting`]) name the key or variable and
    /// the layer: an unknown key, a malformed `.env` file, a value of the wrong type.
    pub fn load(&self) -> Result<Settings, RuntimeError> {
        let env = self.env.clone();
        self.load_with(env.as_deref().map(|f| f as EnvFn<'_>))
    }

    fn load_with(&self, env: Option<EnvFn<'_>>) -> Result<Settings, RuntimeError> {
        let mut figment = Figment::new();
        if let Some(path) = &self.dotenv
            && let Some(vars) = read_dotenv(path)?
        {
            figment =
                figment.merge(Layer::from_vars(LayerKind::DotEnv, Some(path), &|v| vars.get(v).cloned()));
        }
        if let Some(env) = env {
            figment = figment.merge(Layer::from_vars(LayerKind::Env, None, env));
        }
        if let Some((path, pairs)) = &self.file {
            let mut layer = Layer::from_keys(LayerKind::File, pairs).map_err(|e| match e {
                RuntimeError::Setting { key, message } => {
                    RuntimeError::Setting { key, message: format!("{message}, in {}", path.display()) }
                }
                other => other,
            })?;
            layer.path = Some(path.clone());
            figment = figment.merge(layer);
        }
        figment = figment.merge(Layer::from_keys(LayerKind::Context, &self.context)?);
        figment = figment.merge(Layer::from_keys(LayerKind::Override, &self.overrides)?);

        let resolved: Resolved = figment.extract().map_err(|e| setting_error(&e))?;
        let mut sources = BTreeMap::new();
        for k in KEYS {
            if let Some(source) = figment.find_metadata(k.key).and_then(|md| source_of(md, k.key)) {
                sources.insert(k.key, source);
            }
        }
        let mut settings = Settings { sources, ..Settings::default() };
        if let Some(dir) = resolved.runtime.data_dir {
            settings.data_dir = dir;
        }
        settings.model = resolved.model;
        if let Some(secs) = resolved.tools.timeout_secs {
            settings.tool_timeout = seconds(&settings, "tools.timeout_secs", secs)?;
        }
        for (key, value) in [
            ("providers.timeout_secs", resolved.providers.timeout_secs),
            ("providers.max_retry_wait_secs", resolved.providers.max_retry_wait_secs),
            ("providers.openai_timeout_secs", resolved.providers.openai_timeout_secs),
            ("providers.openai_max_retry_wait_secs", resolved.providers.openai_max_retry_wait_secs),
            ("providers.anthropic_timeout_secs", resolved.providers.anthropic_timeout_secs),
            ("providers.anthropic_max_retry_wait_secs", resolved.providers.anthropic_max_retry_wait_secs),
            ("providers.gemini_timeout_secs", resolved.providers.gemini_timeout_secs),
            ("providers.gemini_max_retry_wait_secs", resolved.providers.gemini_max_retry_wait_secs),
            ("providers.openai_compatible_timeout_secs", resolved.providers.openai_compatible_timeout_secs),
            (
                "providers.openai_compatible_max_retry_wait_secs",
                resolved.providers.openai_compatible_max_retry_wait_secs,
            ),
        ] {
            if let Some(secs) = value
                && !(secs.is_finite() && secs > 0.0)
            {
                let source = settings.source(key).unwrap_or(SettingSource::Default);
                return Err(RuntimeError::Setting {
                    key: key.into(),
                    message: format!("must be a positive number of seconds (got {secs} from {source})"),
                });
            }
        }
        settings.providers = resolved.providers;
        settings.pricing = resolved.pricing;
        let vfs = resolved.vfs;
        let lease_ttl = vfs.s3_lease_ttl_secs.map(|secs| seconds(&settings, "vfs.s3_lease_ttl_secs", secs));
        let lock_timeout =
            vfs.s3_lock_timeout_secs.map(|secs| seconds(&settings, "vfs.s3_lock_timeout_secs", secs));
        settings.vfs = VfsSettings {
            sync: vfs.sync,
            s3_bucket: vfs.s3_bucket,
            s3_prefix: vfs.s3_prefix,
            s3_endpoint: vfs.s3_endpoint,
            s3_region: vfs.s3_region,
            s3_access_key_id: vfs.s3_access_key_id,
            s3_secret_access_key: vfs.s3_secret_access_key,
            s3_lease_ttl: lease_ttl.transpose()?,
            s3_lock_timeout: lock_timeout.transpose()?,
            s3_single_writer: vfs.s3_single_writer.unwrap_or(false),
            io_threads: vfs.io_threads,
        };
        settings.mcp = resolved.mcp;
        settings.docs = resolved.docs;
        settings.sessions = resolved.sessions;
        Ok(settings)
    }
}

/// A positive, finite number of seconds as a duration; else a typed error naming the key and
/// the layer it came from.
fn seconds(settings: &Settings, key: &'static str, secs: f64) -> Result<Duration, RuntimeError> {
    // Positive, and small enough to be a `Duration` (about 584 billion years).
    match Duration::try_from_secs_f64(secs) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => {
            let source = settings.source(key).unwrap_or(SettingSource::Default);
            Err(RuntimeError::Setting {
                key: key.into(),
                message: format!(
                    "must be a positive number of seconds no greater than {} (got {secs} from {source})",
                    u64::MAX
                ),
            })
        }
    }
}

/// The `.env` file's variables; `None` when the file does not exist.
fn read_dotenv(path: &Path) -> Result<Option<BTreeMap<String, String>>, RuntimeError> {
    let invalid = |message: String| RuntimeError::Setting { key: path.display().to_string(), message };
    let iter = match dotenvy::from_path_iter(path) {
        Ok(iter) => iter,
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(invalid(e.to_string())),
    };
    let mut vars = BTreeMap::new();
    for item in iter {
        let (var, value) = item.map_err(|e| invalid(e.to_string()))?;
        vars.insert(var, value);
    }
    Ok(Some(vars))
}

/// What the layers extract into; `None` leaves the default.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Resolved {
    runtime: RuntimeSection,
    model: Option<String>,
    tools: ToolsSection,
    providers: ProviderSettings,
    vfs: VfsSection,
    mcp: McpSettings,
    pricing: PricingSettings,
    docs: DocsSettings,
    sessions: SessionsSettings,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RuntimeSection {
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ToolsSection {
    timeout_secs: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayerKind {
    DotEnv,
    Env,
    File,
    Context,
    Override,
}

impl LayerKind {
    /// The figment metadata name; [`source_of`] reads it back.
    fn name(self) -> &'static str {
        match self {
            LayerKind::DotEnv => "dotenv",
            LayerKind::Env => "env",
            LayerKind::File => "file",
            LayerKind::Context => "context",
            LayerKind::Override => "override",
        }
    }
}

/// One layer as a figment provider: raw text per setting, and the variable that set it.
struct Layer {
    kind: LayerKind,
    path: Option<PathBuf>,
    /// (setting, variable name or key, raw value)
    values: Vec<(&'static SettingKey, String, String)>,
}

impl Layer {
    /// The settings set by variables: for each key, its first variable with a non-empty value.
    fn from_vars(kind: LayerKind, path: Option<&Path>, lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let values = KEYS
            .iter()
            .filter_map(|k| {
                k.env.iter().find_map(|var| {
                    lookup(var).filter(|v| !v.is_empty()).map(|value| (k, (*var).to_owned(), value))
                })
            })
            .collect();
        Self { kind, path: path.map(Path::to_path_buf), values }
    }

    /// The settings set by dotted keys; an unknown key is an error.
    fn from_keys(kind: LayerKind, pairs: &[(String, String)]) -> Result<Self, RuntimeError> {
        let mut values = Vec::new();
        for (key, value) in pairs {
            let known = KEYS.iter().find(|k| k.key == key).ok_or_else(|| RuntimeError::Setting {
                key: key.clone(),
                message: format!(
                    "unknown setting (known: {})",
                    KEYS.iter().map(|k| k.key).collect::<Vec<_>>().join(", ")
                ),
            })?;
            values.push((known, key.clone(), value.clone()));
        }
        Ok(Self { kind, path: None, values })
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let names: Arc<BTreeMap<String, String>> =
            Arc::new(self.values.iter().map(|(k, var, _)| (k.key.to_owned(), var.clone())).collect());
        let metadata = Metadata::named(self.kind.name()).interpolater(move |_: &Profile, path: &[&str]| {
            let key = path.join(".");
            names.get(&key).cloned().unwrap_or(key)
        });
        match &self.path {
            Some(path) => metadata.source(path.as_path()),
            None => metadata,
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (k, _, raw) in &self.values {
            let value = match k.kind {
                // Text that is not a number stays text and fails extraction with a typed error
                // naming the key and the layer.
                Kind::Number => {
                    raw.trim().parse::<f64>().map_or_else(|_| Value::from(raw.clone()), Value::from)
                }
                Kind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => Value::from(true),
                    "false" | "0" | "no" | "off" => Value::from(false),
                    _ => Value::from(raw.clone()),
                },
                Kind::Integer => {
                    raw.trim().parse::<u64>().map_or_else(|_| Value::from(raw.clone()), Value::from)
                }
                Kind::Text => Value::from(raw.clone()),
            };
            insert(&mut root, k.key, value);
        }
        Ok(Profile::Default.collect(root))
    }
}

/// Inserts `value` at the dotted `key`, creating the dictionaries on the way.
fn insert(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = dict.entry(head.to_owned()).or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

fn source_of(metadata: &Metadata, key: &str) -> Option<SettingSource> {
    let path: Vec<&str> = key.split('.').collect();
    let var = || metadata.interpolate(&Profile::Default, &path);
    Some(match metadata.name.as_ref() {
        "override" => SettingSource::Override,
        "context" => SettingSource::Context,
        "file" => SettingSource::File {
            path: metadata
                .source
                .as_ref()
                .and_then(|s| s.file_path())
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        },
        "env" => SettingSource::Env { var: var() },
        "dotenv" => SettingSource::DotEnv {
            path: metadata
                .source
                .as_ref()
                .and_then(|s| s.file_path())
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            var: var(),
        },
        _ => return None,
    })
}

fn setting_error(error: &figment::Error) -> RuntimeError {
    let path: Vec<&str> = error.path.iter().map(String::as_str).collect();
    let key = path.join(".");
    let message = match &error.metadata {
        Some(md) => {
            let layer = source_of(md, &key).map_or_else(|| md.name.to_string(), |s| s.to_string());
            format!("{} (from {layer})", error.kind)
        }
        None => error.kind.to_string(),
    };
    RuntimeError::Setting { key, message }
}

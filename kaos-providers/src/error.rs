use std::time::Duration;

/// Everything a model call can fail with, classified so callers can branch on it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The credentials were missing or refused. Never retried, never a reason to fall back.
    #[error("authentication failed: {message}")]
    Auth {
        /// The vendor's message (never contains the key).
        message: String,
    },
    /// Too many requests; retry after the given delay when the vendor said so.
    #[error("rate limited: {message}")]
    RateLimited {
        /// The vendor's message.
        message: String,
        /// The vendor's `Retry-After`, when present.
        retry_after: Option<Duration>,
    },
    /// The vendor is overloaded or failed on its side (5xx).
    #[error("provider overloaded: {message}")]
    Overloaded {
        /// The vendor's message.
        message: String,
    },
    /// The request does not fit the model's context window.
    #[error("context too long: {message}")]
    ContextTooLong {
        /// The vendor's message.
        message: String,
    },
    /// The vendor rejected the request as malformed.
    #[error("invalid request: {message}")]
    InvalidRequest {
        /// The vendor's message.
        message: String,
    },
    /// The connection failed or timed out.
    #[error("transport error: {message}")]
    Transport {
        /// What failed.
        message: String,
    },
    /// The vendor answered with something that is not a valid response.
    #[error("malformed response: {message}")]
    MalformedResponse {
        /// What was wrong with it.
        message: String,
    },
    /// An offline client was asked for more than it was scripted to answer.
    #[error("scripted model: {message}")]
    Script {
        /// What was missing.
        message: String,
    },
    /// A replay client has no recording for the request. The message names the closest
    /// recording and the first field where it differs.
    #[error("no recording for request {key}: {message}")]
    ReplayMiss {
        /// The request's canonical hash (`sha256:…`).
        key: String,
        /// The closest recording and how it differs, or why none is close.
        message: String,
    },
    /// A recording store could not be read or written.
    #[error("recording store: {message}")]
    Recording {
        /// What failed, with the path.
        message: String,
    },
    /// A provider is named whose Cargo feature is not compiled in.
    #[error("provider {provider:?} is not compiled in: enable the Cargo feature {feature:?}")]
    NotCompiled {
        /// The provider (`openai`, …).
        provider: String,
        /// The Cargo feature that enables it.
        feature: String,
    },
    /// A setting a client needs (an API key, a base URL) is missing.
    #[error("provider {provider:?} needs {variable} to be set")]
    MissingSetting {
        /// The provider (`openai`, …).
        provider: String,
        /// The environment variable (or setting) to set.
        variable: String,
    },
    /// No client is configured for the model reference.
    #[error("no model client for {model:?}: {message}")]
    UnknownModel {
        /// The requested `provider:model`.
        model: String,
        /// What is missing (e.g. which Cargo feature enables the provider).
        message: String,
    },
}

impl ProviderError {
    /// Whether the same request may succeed if retried after a backoff.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Overloaded { .. } | Self::Transport { .. })
    }

    /// Whether another model may succeed where this one failed. Auth errors never fall back:
    /// a bad key is a configuration error to fix, not to route around.
    pub fn is_fallbackable(&self) -> bool {
        self.is_retryable() || matches!(self, Self::ContextTooLong { .. } | Self::MalformedResponse { .. })
    }

    /// Classifies an HTTP error answer: 401/403 → `Auth`, 429 → `RateLimited`, 413 or a 400
    /// whose message says the context or prompt is too long → `ContextTooLong`, 408 →
    /// `Transport`, other 4xx → `InvalidRequest`, 5xx (and Anthropic's 529) → `Overloaded`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kaos_providers::ProviderError;
    /// let e = ProviderError::from_http_status(429, "slow down".into(), Some(Duration::from_secs(2)));
    /// assert!(e.is_retryable());
    /// assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
    /// assert!(!ProviderError::from_http_status(401, "bad key".into(), None).is_fallbackable());
    /// assert_eq!(ProviderError::from_http_status(400, "prompt is too long".into(), None).kind(), "context_too_long");
    /// ```
    pub fn from_http_status(status: u16, message: String, retry_after: Option<Duration>) -> Self {
        match status {
            401 | 403 => Self::Auth { message },
            429 => Self::RateLimited { message, retry_after },
            413 => Self::ContextTooLong { message },
            408 => Self::Transport { message },
            400 | 422 if says_context_too_long(&message) => Self::ContextTooLong { message },
            400..=499 => Self::InvalidRequest { message },
            _ => Self::Overloaded { message },
        }
    }

    /// The delay the vendor asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short, stable name of the error class (`auth`, `rate_limited`, …) for events and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Auth { .. } => "auth",
            Self::RateLimited { .. } => "rate_limited",
            Self::Overloaded { .. } => "overloaded",
            Self::ContextTooLong { .. } => "context_too_long",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Transport { .. } => "transport",
            Self::MalformedResponse { .. } => "malformed_response",
            Self::Script { .. } => "script",
            Self::ReplayMiss { .. } => "replay_miss",
            Self::Recording { .. } => "recording",
            Self::NotCompiled { .. } => "not_compiled",
            Self::MissingSetting { .. } => "missing_setting",
            Self::UnknownModel { .. } => "unknown_model",
        }
    }
}

/// Whether a vendor's 400 message is about the context window (each vendor words it its own way).
fn says_context_too_long(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "context length",
        "context_length",
        "context window",
        "prompt is too long",
        "too many tokens",
        "maximum context",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

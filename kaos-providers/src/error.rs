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
            Self::UnknownModel { .. } => "unknown_model",
        }
    }
}

//! The API's error body, `{"error": {"type", "message"}}`, with its status.

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use kaos_runner::{RunError, RunStateError, SessionError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every API error: `{"error": {"type": "...", "message": "..."}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error's class and message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable class: `invalid_request`, `unauthorized`, `forbidden_host`, `not_found`,
    /// `method_not_allowed`, `conflict`, `payload_too_large`, `model_error`, `internal`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// For a person.
    pub message: String,
}

/// An API error with its HTTP status.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into() }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The body as it is sent (also used for the error frame of an event stream).
    pub(crate) fn body(&self) -> ErrorBody {
        ErrorBody { error: ErrorDetail { kind: self.kind.to_owned(), message: self.message.clone() } }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<RunError> for ApiError {
    fn from(error: RunError) -> Self {
        let message = error.report();
        match &error {
            RunError::InvalidSession { .. } => Self::invalid(message),
            RunError::RunState(RunStateError::NotFound { .. }) => Self::not_found(message),
            RunError::RunState(_) => Self::conflict(message),
            RunError::Vfs(e) if e.is_not_found() => Self::not_found(message),
            RunError::Provider(_) => Self::new(StatusCode::BAD_GATEWAY, "model_error", message),
            RunError::Agent(_) | RunError::InvalidToolGlob { .. } | RunError::Team { .. } => {
                Self::invalid(message)
            }
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, error.kind(), message),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        match &error {
            SessionError::Vfs(e) if e.is_not_found() => Self::not_found(error.to_string()),
            SessionError::InvalidId { .. } => Self::invalid(error.to_string()),
            _ => Self::internal(error.to_string()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::invalid(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::invalid(rejection.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
        } else {
            Self::invalid(rejection.body_text())
        }
    }
}

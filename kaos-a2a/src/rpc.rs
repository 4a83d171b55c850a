//! The JSON-RPC 2.0 binding: the request and response envelope, the method names and the
//! error codes (A2A specification sections 5.4 and 9).

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The `jsonrpc` member of every request and response.
pub const JSONRPC_VERSION: &str = "2.0";

/// The `@type` of a `google.rpc.ErrorInfo` detail in [`JsonRpcError::data`].
pub const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";

/// A request's id: a number or a string, echoed in its response.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// A number.
    Number(i64),
    /// A string.
    String(String),
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(number) => write!(f, "{number}"),
            Self::String(text) => f.write_str(text),
        }
    }
}

/// The methods of the JSON-RPC binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `SendMessage`: params [`crate::SendMessageRequest`], result [`crate::SendMessageResponse`].
    SendMessage,
    /// `SendStreamingMessage`: params [`crate::SendMessageRequest`], a server-sent event stream
    /// of [`crate::StreamResponse`]s.
    SendStreamingMessage,
    /// `GetTask`: params [`crate::GetTaskRequest`], result [`crate::Task`].
    GetTask,
    /// `ListTasks`: params [`crate::ListTasksRequest`], result [`crate::ListTasksResponse`].
    ListTasks,
    /// `CancelTask`: params [`crate::CancelTaskRequest`], result [`crate::Task`].
    CancelTask,
    /// `SubscribeToTask`: params [`crate::SubscribeToTaskRequest`], a server-sent event stream
    /// of [`crate::StreamResponse`]s.
    SubscribeToTask,
    /// `CreateTaskPushNotificationConfig`.
    CreateTaskPushNotificationConfig,
    /// `GetTaskPushNotificationConfig`.
    GetTaskPushNotificationConfig,
    /// `ListTaskPushNotificationConfigs`.
    ListTaskPushNotificationConfigs,
    /// `DeleteTaskPushNotificationConfig`.
    DeleteTaskPushNotificationConfig,
    /// `GetExtendedAgentCard`: result [`crate::AgentCard`].
    GetExtendedAgentCard,
}

impl Method {
    /// Every method, in the specification's order.
    pub const ALL: [Self; 11] = [
        Self::SendMessage,
        Self::SendStreamingMessage,
        Self::GetTask,
        Self::ListTasks,
        Self::CancelTask,
        Self::SubscribeToTask,
        Self::CreateTaskPushNotificationConfig,
        Self::GetTaskPushNotificationConfig,
        Self::ListTaskPushNotificationConfigs,
        Self::DeleteTaskPushNotificationConfig,
        Self::GetExtendedAgentCard,
    ];

    /// The method's name on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendMessage => "SendMessage",
            Self::SendStreamingMessage => "SendStreamingMessage",
            Self::GetTask => "GetTask",
            Self::ListTasks => "ListTasks",
            Self::CancelTask => "CancelTask",
            Self::SubscribeToTask => "SubscribeToTask",
            Self::CreateTaskPushNotificationConfig => "CreateTaskPushNotificationConfig",
            Self::GetTaskPushNotificationConfig => "GetTaskPushNotificationConfig",
            Self::ListTaskPushNotificationConfigs => "ListTaskPushNotificationConfigs",
            Self::DeleteTaskPushNotificationConfig => "DeleteTaskPushNotificationConfig",
            Self::GetExtendedAgentCard => "GetExtendedAgentCard",
        }
    }

    /// Whether the method answers with a server-sent event stream.
    #[must_use]
    pub fn is_streaming(self) -> bool {
        matches!(self, Self::SendStreamingMessage | Self::SubscribeToTask)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = RpcParseError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|method| method.as_str() == name)
            .ok_or_else(|| RpcParseError::UnknownMethod(name.to_owned()))
    }
}

/// A JSON-RPC 2.0 request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonRpcRequest {
    /// Always [`JSONRPC_VERSION`].
    pub jsonrpc: String,
    /// The id its response echoes; absent in a notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RequestId>,
    /// The method's name.
    pub method: String,
    /// The method's parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

impl JsonRpcRequest {
    /// A request for `method` with these parameters.
    ///
    /// # Errors
    /// [`RpcParseError::InvalidParams`] when the parameters do not serialize to JSON.
    pub fn new(id: RequestId, method: Method, params: &impl Serialize) -> Result<Self, RpcParseError> {
        let params =
            serde_json::to_value(params).map_err(|error| RpcParseError::InvalidParams(error.to_string()))?;
        Ok(Self {
            jsonrpc: JSONRPC_VERSION.to_owned(),
            id: Some(id),
            method: method.as_str().to_owned(),
            params: Some(params),
        })
    }

    /// The method, checking the envelope first.
    ///
    /// # Errors
    /// [`RpcParseError::NotJsonRpc2`] when `jsonrpc` is not `"2.0"`,
    /// [`RpcParseError::UnknownMethod`] for a method the protocol does not define.
    pub fn method(&self) -> Result<Method, RpcParseError> {
        if self.jsonrpc != JSONRPC_VERSION {
            return Err(RpcParseError::NotJsonRpc2(self.jsonrpc.clone()));
        }
        self.method.parse()
    }

    /// The parameters as the method's request type (absent parameters read as `{}`).
    ///
    /// # Errors
    /// [`RpcParseError::InvalidParams`] naming the first field that does not fit.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, RpcParseError> {
        let params = self.params.clone().unwrap_or_else(|| json!({}));
        serde_json::from_value(params).map_err(|error| RpcParseError::InvalidParams(error.to_string()))
    }
}

/// A JSON-RPC 2.0 response: a result or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonRpcResponse<T = Value> {
    /// Always [`JSONRPC_VERSION`].
    pub jsonrpc: String,
    /// The request's id; `null` when the request could not be read.
    pub id: Option<RequestId>,
    /// The result, on success.
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub result: Option<T>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JsonRpcError>,
}

fn none<T>() -> Option<T> {
    None
}

impl<T> JsonRpcResponse<T> {
    /// A successful response.
    #[must_use]
    pub fn success(id: Option<RequestId>, result: T) -> Self {
        Self { jsonrpc: JSONRPC_VERSION.to_owned(), id, result: Some(result), error: None }
    }

    /// A failed response.
    #[must_use]
    pub fn failure(id: Option<RequestId>, error: JsonRpcError) -> Self {
        Self { jsonrpc: JSONRPC_VERSION.to_owned(), id, result: None, error: Some(error) }
    }

    /// The result, or the error.
    ///
    /// # Errors
    /// The response's error; an [`ErrorCode::InvalidAgentResponse`] when it has neither a
    /// result nor an error.
    pub fn into_result(self) -> Result<T, JsonRpcError> {
        match (self.result, self.error) {
            (_, Some(error)) => Err(error),
            (Some(result), None) => Ok(result),
            (None, None) => Err(JsonRpcError::new(
                ErrorCode::InvalidAgentResponse,
                "the response has neither a result nor an error",
            )),
        }
    }
}

/// The error codes of the JSON-RPC binding: JSON-RPC's own, and A2A's in `-32001..=-32099`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `-32700`: the body is not JSON.
    ParseError,
    /// `-32600`: the JSON is not a valid request object.
    InvalidRequest,
    /// `-32601`: no such method.
    MethodNotFound,
    /// `-32602`: the parameters are invalid.
    InvalidParams,
    /// `-32603`: the server failed.
    InternalError,
    /// `-32001`: no such task, or not this caller's.
    TaskNotFound,
    /// `-32002`: the task is in a terminal state.
    TaskNotCancelable,
    /// `-32003`: push notifications are not served.
    PushNotificationNotSupported,
    /// `-32004`: the operation, or an aspect of it, is not served.
    UnsupportedOperation,
    /// `-32005`: a media type of the request is not supported.
    ContentTypeNotSupported,
    /// `-32006`: an agent's response did not conform to the protocol.
    InvalidAgentResponse,
    /// `-32007`: no extended agent card is configured.
    ExtendedAgentCardNotConfigured,
    /// `-32008`: the client does not declare an extension the agent requires.
    ExtensionSupportRequired,
    /// `-32009`: the requested protocol version is not supported.
    VersionNotSupported,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [Self; 14] = [
        Self::ParseError,
        Self::InvalidRequest,
        Self::MethodNotFound,
        Self::InvalidParams,
        Self::InternalError,
        Self::TaskNotFound,
        Self::TaskNotCancelable,
        Self::PushNotificationNotSupported,
        Self::UnsupportedOperation,
        Self::ContentTypeNotSupported,
        Self::InvalidAgentResponse,
        Self::ExtendedAgentCardNotConfigured,
        Self::ExtensionSupportRequired,
        Self::VersionNotSupported,
    ];

    /// The numeric code.
    #[must_use]
    pub fn code(self) -> i32 {
        match self {
            Self::ParseError => -32700,
            Self::InvalidRequest => -32600,
            Self::MethodNotFound => -32601,
            Self::InvalidParams => -32602,
            Self::InternalError => -32603,
            Self::TaskNotFound => -32001,
            Self::TaskNotCancelable => -32002,
            Self::PushNotificationNotSupported => -32003,
            Self::UnsupportedOperation => -32004,
            Self::ContentTypeNotSupported => -32005,
            Self::InvalidAgentResponse => -32006,
            Self::ExtendedAgentCardNotConfigured => -32007,
            Self::ExtensionSupportRequired => -32008,
            Self::VersionNotSupported => -32009,
        }
    }

    /// The code for a number, when it is one of the protocol's.
    #[must_use]
    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|known| known.code() == code)
    }

    /// The specification's standard message.
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Self::ParseError => "Invalid JSON payload",
            Self::InvalidRequest => "Request payload validation error",
            Self::MethodNotFound => "Method not found",
            Self::InvalidParams => "Invalid parameters",
            Self::InternalError => "Internal error",
            Self::TaskNotFound => "Task not found",
            Self::TaskNotCancelable => "Task cannot be canceled",
            Self::PushNotificationNotSupported => "Push Notification is not supported",
            Self::UnsupportedOperation => "This operation is not supported",
            Self::ContentTypeNotSupported => "Incompatible content types",
            Self::InvalidAgentResponse => "Invalid agent response",
            Self::ExtendedAgentCardNotConfigured => "Extended agent card not configured",
            Self::ExtensionSupportRequired => "Extension support required",
            Self::VersionNotSupported => "Protocol version not supported",
        }
    }

    /// The `reason` of a `google.rpc.ErrorInfo` detail for this code
    /// (`TASK_NOT_FOUND`, `INVALID_PARAMS`, …).
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Self::ParseError => "PARSE_ERROR",
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::MethodNotFound => "METHOD_NOT_FOUND",
            Self::InvalidParams => "INVALID_PARAMS",
            Self::InternalError => "INTERNAL_ERROR",
            Self::TaskNotFound => "TASK_NOT_FOUND",
            Self::TaskNotCancelable => "TASK_NOT_CANCELABLE",
            Self::PushNotificationNotSupported => "PUSH_NOTIFICATION_NOT_SUPPORTED",
            Self::UnsupportedOperation => "UNSUPPORTED_OPERATION",
            Self::ContentTypeNotSupported => "CONTENT_TYPE_NOT_SUPPORTED",
            Self::InvalidAgentResponse => "INVALID_AGENT_RESPONSE",
            Self::ExtendedAgentCardNotConfigured => "EXTENDED_AGENT_CARD_NOT_CONFIGURED",
            Self::ExtensionSupportRequired => "EXTENSION_SUPPORT_REQUIRED",
            Self::VersionNotSupported => "VERSION_NOT_SUPPORTED",
        }
    }
}

/// The error object of a failed [`JsonRpcResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (JSON-RPC error {code})")]
pub struct JsonRpcError {
    /// The numeric code (see [`ErrorCode`]).
    pub code: i32,
    /// What went wrong, for a person.
    pub message: String,
    /// Structured details: A2A sends an array of objects, each with an `@type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl JsonRpcError {
    /// An error with this code and message, and a `google.rpc.ErrorInfo` detail naming the
    /// code's reason in the `a2a-protocol.org` domain.
    #[must_use]
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code.code(),
            message: message.into(),
            data: Some(json!([{
                "@type": ERROR_INFO_TYPE,
                "reason": code.reason(),
                "domain": "a2a-protocol.org",
            }])),
        }
    }

    /// The same error with this metadata in its `ErrorInfo` detail (values are strings, as
    /// `google.rpc.ErrorInfo` requires).
    #[must_use]
    pub fn with_metadata(mut self, key: &str, value: impl Into<String>) -> Self {
        if let Some(Value::Array(details)) = &mut self.data
            && let Some(Value::Object(info)) = details
                .iter_mut()
                .find(|detail| detail.get("@type").and_then(Value::as_str) == Some(ERROR_INFO_TYPE))
        {
            let metadata = info.entry("metadata").or_insert_with(|| json!({}));
            if let Value::Object(metadata) = metadata {
                metadata.insert(key.to_owned(), Value::String(value.into()));
            }
        }
        self
    }

    /// The protocol's code, when the number is one.
    #[must_use]
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.code)
    }
}

impl From<RpcParseError> for JsonRpcError {
    fn from(error: RpcParseError) -> Self {
        Self::new(error.code(), error.to_string())
    }
}

/// Why a [`JsonRpcRequest`] cannot be served as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcParseError {
    /// `jsonrpc` is not `"2.0"`.
    #[error("`jsonrpc` must be \"2.0\", not {0:?}")]
    NotJsonRpc2(String),
    /// The method is not one of the protocol's.
    #[error("no method `{0}`")]
    UnknownMethod(String),
    /// The parameters do not fit the method's request type.
    #[error("invalid params: {0}")]
    InvalidParams(String),
}

impl RpcParseError {
    /// The code to answer with.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotJsonRpc2(_) => ErrorCode::InvalidRequest,
            Self::UnknownMethod(_) => ErrorCode::MethodNotFound,
            Self::InvalidParams(_) => ErrorCode::InvalidParams,
        }
    }
}

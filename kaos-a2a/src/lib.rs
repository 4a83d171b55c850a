#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
//! Wire types of the Agent2Agent (A2A) protocol, version 1.0, with serde.
//!
//! A2A is how an agent built with one framework calls an agent built with another: an
//! [`AgentCard`] served at [`AGENT_CARD_PATH`] describes the agent, and JSON-RPC 2.0 methods
//! ([`Method`]) send it [`Message`]s, which it answers with a [`Message`] or with a [`Task`]
//! whose [`TaskState`] moves through `submitted`, `working`, `input-required`, `completed`,
//! `failed`, `canceled`. Streaming methods answer with server-sent events, each one
//! [`StreamResponse`] in a [`JsonRpcResponse`].
//!
//! The types follow the normative `specification/a2a.proto` of A2A 1.0 in its ProtoJSON form
//! (the JSON the official SDKs send): camelCase field names, enums as their
//! `SCREAMING_SNAKE_CASE` proto names (`TASK_STATE_INPUT_REQUIRED`, `ROLE_USER`), bytes in
//! base64, a `oneof` as an object with exactly one of its fields. Fields an SDK leaves at
//! their default are omitted when serializing and accepted when absent; unknown fields are
//! ignored, as the specification asks.
//!
//! Without features this crate is data only: no async runtime, no HTTP. The `kaos-server`
//! crate serves a KAOS agent over A2A with these types; the `client` feature adds
//! `client::A2aClient` (reqwest with rustls), what a KAOS agent calls a remote A2A agent
//! with.
//!
//! ```
//! use kaos_a2a::{JsonRpcRequest, Method, Part, Role, SendMessageRequest};
//!
//! let body = r#"{"jsonrpc":"2.0","id":"1","method":"SendMessage","params":
//!   {"message":{"messageId":"m1","role":"ROLE_USER","parts":[{"text":"hello"}]}}}"#;
//! let request: JsonRpcRequest = serde_json::from_str(body)?;
//! assert_eq!(request.method()?, Method::SendMessage);
//! let params: SendMessageRequest = request.params()?;
//! assert_eq!(params.message.role, Role::User);
//! assert_eq!(params.message.parts, vec![Part::text("hello")]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod card;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
pub mod kaos;
mod request;
mod rpc;
mod types;

pub use card::{
    AgentCapabilities, AgentCard, AgentCardSignature, AgentExtension, AgentInterface, AgentProvider,
    AgentSkill, ApiKeySecurityScheme, AuthorizationCodeOAuthFlow, ClientCredentialsOAuthFlow,
    DeviceCodeOAuthFlow, HttpAuthSecurityScheme, ImplicitOAuthFlow, MutualTlsSecurityScheme,
    OAuth2SecurityScheme, OAuthFlows, OpenIdConnectSecurityScheme, PasswordOAuthFlow, SecurityRequirement,
    SecurityScheme, StringList,
};
pub use request::{
    AuthenticationInfo, CancelTaskRequest, DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest, GetTaskPushNotificationConfigRequest, GetTaskRequest,
    ListTaskPushNotificationConfigsRequest, ListTaskPushNotificationConfigsResponse, ListTasksRequest,
    ListTasksResponse, SendMessageConfiguration, SendMessageRequest, SendMessageResponse, StreamResponse,
    SubscribeToTaskRequest, TaskPushNotificationConfig,
};
pub use rpc::{
    ERROR_INFO_TYPE, ErrorCode, JSONRPC_VERSION, JsonRpcError, JsonRpcRequest, JsonRpcResponse, Method,
    RequestId, RpcParseError,
};
pub use types::{
    Artifact, Message, Metadata, Part, PartContent, Role, Task, TaskArtifactUpdateEvent, TaskState,
    TaskStatus, TaskStatusUpdateEvent,
};

/// The A2A protocol version these types implement (`major.minor`, as sent in
/// [`AgentInterface::protocol_version`] and the [`VERSION_HEADER`]).
pub const PROTOCOL_VERSION: &str = "1.0";

/// Where an agent serves its [`AgentCard`], relative to the agent's base URL.
pub const AGENT_CARD_PATH: &str = "/.well-known/agent-card.json";

/// The HTTP header (an A2A service parameter) in which a client names the protocol version it
/// speaks; a server answers a version it does not support with
/// [`ErrorCode::VersionNotSupported`].
pub const VERSION_HEADER: &str = "A2A-Version";

/// The HTTP header in which a client names the extensions it supports, comma-separated.
pub const EXTENSIONS_HEADER: &str = "A2A-Extensions";

/// The `protocolBinding` of an [`AgentInterface`] served with JSON-RPC 2.0 over HTTP.
pub const BINDING_JSONRPC: &str = "JSONRPC";

/// The `protocolBinding` of an [`AgentInterface`] served with the HTTP+JSON (REST) binding.
pub const BINDING_HTTP_JSON: &str = "HTTP+JSON";

/// The `protocolBinding` of an [`AgentInterface`] served with gRPC.
pub const BINDING_GRPC: &str = "GRPC";

/// The README's sample, run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

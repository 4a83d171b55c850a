//! One interface over every model vendor.
//!
//! [`ModelClient`] is the contract the Runner calls: [`complete`](ModelClient::complete) a
//! [`ModelRequest`] into a [`ModelResponse`], or [`stream`](ModelClient::stream) it as typed
//! [`StreamEvent`]s ending in the same response. Responses carry normalized [`Usage`] (each
//! token counted once) and `cost_usd`.
//!
//! The offline [`ScriptedClient`] is always compiled: deterministic, free, it records every
//! request and answers from a queue or a function of the request. Every example and test in
//! KAOS runs on it. Real vendors come behind one Cargo feature each.
//!
//! This crate is the only one in KAOS that may speak HTTP to a model vendor; it knows nothing
//! about sessions, tools' implementations or the turn loop.
//!
//! ```
//! use kaos_providers::{Message, ModelClient, ModelRequest, ScriptedClient};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let model = ScriptedClient::new().with_text("Hello!");
//! let response = model.complete(&ModelRequest::new("scripted:test", vec![Message::user("Hi")])).await?;
//! assert_eq!(response.text, "Hello!");
//! assert_eq!(model.requests().len(), 1);
//! # Ok::<(), kaos_providers::ProviderError>(()) }).unwrap();
//! ```
#![deny(missing_docs)]

mod client;
mod error;
mod scripted;
mod tokens;
mod types;

pub use client::{Capabilities, ModelClient, ModelStream, StructuredOutput};
pub use error::ProviderError;
pub use scripted::{ScriptedClient, ScriptedReply};
#[cfg(feature = "tiktoken")]
pub use tokens::Tiktoken;
pub use tokens::{Estimator, TokenCounter, counter_for};
pub use types::{
    FinishReason, Message, ModelRequest, ModelResponse, Sampling, StreamEvent, ToolCall, ToolChoice,
    ToolDefinition, Usage, estimate_tokens,
};

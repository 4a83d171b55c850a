//! One interface over every model vendor.
//!
//! [`ModelClient`] is the contract the Runner calls: [`complete`](ModelClient::complete) a
//! [`ModelRequest`] into a [`ModelResponse`], or [`stream`](ModelClient::stream) it as typed
//! [`StreamEvent`]s ending in the same response. Responses carry normalized [`Usage`] (each
//! token counted once) and `cost_usd`.
//!
//! The cost comes from [`Pricing`], a versioned price table shipped as a data file and
//! overridable by the user; an unknown model costs `None`, never a silent zero.
//!
//! Always compiled, and offline: the [`ScriptedClient`] (deterministic, free, it records every
//! request and answers from a queue or a function of the request; every example and test in
//! KAOS runs on it), the [`ReplayClient`] (answers from recordings keyed by the request's
//! canonical hash, or records another client), and the wrappers [`RetryClient`] and
//! [`FallbackClient`].
//!
//! Real vendors come behind one Cargo feature each: `openai` (`OpenAiClient`, Chat
//! Completions), `anthropic` (`AnthropicClient`, Messages), `gemini` (`GeminiClient`,
//! `generateContent`) and `openai-compatible` (`OpenAiCompatibleClient`, any server speaking
//! the OpenAI wire format). Each streams over SSE, calls tools (several per response), asks
//! for structured output where the vendor can, and takes its key as a [`SecretString`].
//! Vendor clients never retry on their own: wrap them in a [`RetryClient`].
//!
//! This crate is the only one in KAOS that may speak HTTP to a model vendor; it knows nothing
//! about sessions, tools' implementations, the turn loop, or where keys are configured.
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
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "anthropic")]
mod anthropic;
mod client;
#[cfg(feature = "openai-compatible")]
mod compatible;
mod conversation;
mod error;
mod fallback;
#[cfg(feature = "gemini")]
mod gemini;
// Each vendor uses a part of the shared transport; with only some vendors compiled, the rest is unused.
#[cfg(feature = "_http")]
#[cfg_attr(
    not(all(feature = "openai", feature = "anthropic", feature = "gemini", feature = "openai-compatible")),
    allow(dead_code)
)]
mod http;
#[cfg(any(feature = "openai", feature = "openai-compatible"))]
mod openai;
mod priced;
mod pricing;
mod replay;
mod retry;
mod scripted;
mod secret;
#[cfg(feature = "_http")]
mod sse;
mod tokens;
mod types;
mod vendor;

#[cfg(feature = "anthropic")]
pub use anthropic::AnthropicClient;
pub use client::{Capabilities, ModelClient, ModelStream, StructuredOutput};
#[cfg(feature = "openai-compatible")]
pub use compatible::OpenAiCompatibleClient;
pub use conversation::Conversation;
pub use error::ProviderError;
pub use fallback::FallbackClient;
#[cfg(feature = "gemini")]
pub use gemini::GeminiClient;
#[cfg(feature = "openai")]
pub use openai::OpenAiClient;
#[cfg(any(feature = "openai", feature = "openai-compatible"))]
pub use openai::{MaxTokensField, Quirks};
pub use priced::PricedClient;
pub use pricing::{ModelPrice, Pricing, PricingError};
pub use replay::{DirectoryStore, MemoryStore, Recording, RecordingStore, ReplayClient, request_key};
pub use retry::{RetryClient, RetryPolicy, Sleeper};
pub use scripted::{ScriptedClient, ScriptedReply};
/// The `secrecy` crate, whose [`SecretString`] holds every key.
pub use secrecy;
pub use secret::{ExposeSecret, SecretString};
#[cfg(feature = "tiktoken")]
pub use tokens::Tiktoken;
pub use tokens::{Estimator, TokenCounter, counter_for};
pub use types::{
    FinishReason, Message, ModelRequest, ModelResponse, Sampling, StreamEvent, ToolCall, ToolChoice,
    ToolDefinition, ToolSet, Usage, estimate_json_tokens, estimate_tokens, prompt_token_bound,
};
pub use vendor::{BUILT_IN_PROVIDERS, VendorConfig, vendor_client};

/// This crate's README, compiled and run as a doctest (it ships in the package).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

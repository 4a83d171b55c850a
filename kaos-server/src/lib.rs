//! Serve a KAOS [`Runner`] to other programs: MCP over stdio, and one HTTP server with MCP,
//! an HTTP API and a web console.
//!
//! **HTTP.** [`serve_http`] starts one server (axum): MCP (streamable HTTP) at `/mcp`, the HTTP
//! API at `/v1` (turns streamed as server-sent events, approvals, sessions, memory, search,
//! traces; its OpenAPI document at `/v1/openapi.json`, see [`api`]) and the web console at `/`.
//! The same bearer tokens ([`HttpOptions::with_token`]) guard MCP and the API, each token a
//! caller with its own sessions; see `docs/concepts/http-api.md`. The same server serves the
//! agent over A2A (the Agent2Agent protocol 1.0, JSON-RPC binding, see [`a2a`]): its agent
//! card at `/.well-known/agent-card.json` and JSON-RPC at `/a2a`, behind the same tokens; see
//! `docs/concepts/a2a.md`.
//!
//! **Serving.** [`KaosMcpServer`] exposes a [`Runner`] to any MCP client:
//!
//! - every tool of the runner's runtime, with its full input schema (descriptions, enums,
//!   defaults) and its annotations as MCP `readOnlyHint`/`destructiveHint`/`idempotentHint`/
//!   `openWorldHint`; a direct call runs in the caller's workspace session
//!   [`DIRECT_SESSION`] (its files are under `sessions/{id}/files/` like any session's);
//! - the agent as the tool [`AGENT_TOOL`] (`message`, `session_id`, optional `approve` globs
//!   and `max_cost_usd`), which runs one turn and returns its text plus structured content
//!   ([`AgentTurnOutput`]);
//! - the caller's sessions as resources `kaos://sessions/{id}` (the stored conversation as
//!   JSON), listed by `resources/list`.
//!
//! [`serve_stdio`] serves one client over stdin/stdout; [`serve_http`] serves streamable HTTP
//! and refuses to start without a bearer token ([`HttpOptions`]).
//!
//! **Callers and sessions.** Each HTTP token maps to a client id ([`ClientId`]); a caller's
//! session `s` is stored as the runner session `{client_id}.{s}`, and a caller only ever sees
//! the sessions of its own namespace: another caller's session is the same "not found" as a
//! missing one. Over stdio the caller is the local user: unscoped by default (it sees the
//! runner's sessions as they are), or scoped with [`ServeOptions::client_id`].
//!
//! **Mounting.** [`client`] is [`kaos_tools::mcp_client`]: external servers' tools mounted into
//! a registry under a prefix.
//!
//! Approvals and budgets per request (`approve` globs become allow rules evaluated before the
//! agent's, `max_cost_usd` tightens the turn's cost cap) are enforced by the runner and echoed
//! in [`AgentTurnOutput::guardrails`]. A run that pauses for approval returns
//! [`AgentTurnOutput::approval_required`] with its run id; the tool [`RESUME_TOOL`] approves or
//! denies the pending call and continues the same run (another caller's run is not found).

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod a2a;
pub mod api;
mod console;
mod error;
mod http;
mod server;

pub use error::ServeError;
pub use http::{ClientId, DEFAULT_MAX_BODY_BYTES, HttpOptions, HttpServer, serve_http};
pub use kaos_tools::mcp_client as client;
pub use server::{
    AGENT_TOOL, AgentTurnOutput, ApprovalRequired, DIRECT_SESSION, Guardrails, KaosMcpServer, RESUME_TOOL,
    SESSION_URI_PREFIX, ServeOptions,
};

use kaos_runner::Runner;

/// Serves `runner` to one MCP client over this process's stdin and stdout until the client
/// disconnects. Nothing else may write to stdout meanwhile (logs go to stderr).
pub async fn serve_stdio(runner: Runner, options: ServeOptions) -> Result<(), ServeError> {
    use rmcp::ServiceExt;
    let server = KaosMcpServer::new(runner, options)?;
    let running =
        server.serve(rmcp::transport::stdio()).await.map_err(|e| ServeError::Protocol(e.to_string()))?;
    running.waiting().await.map_err(|e| ServeError::Protocol(e.to_string()))?;
    Ok(())
}

/// This crate's README, compiled and run as a doctest (it ships in the package).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

//! kaos-server's integration tests, one binary: MCP interop (`mcp`), the HTTP API end to end
//! (`api`), document uploads (`documents`), its OpenAPI document against the routes (`openapi`), 200 concurrent streamed turns
//! (`load`) and the console in a real Chromium (`browser`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod a2a;
mod api;
mod browser;
mod documents;
mod load;
mod mcp;
mod openapi;
mod support;

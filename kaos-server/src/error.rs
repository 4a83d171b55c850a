use std::net::SocketAddr;

/// Why an MCP server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The HTTP transport was asked to start without any bearer token. It never serves
    /// unauthenticated.
    #[error(
        "the HTTP server needs at least one bearer token (`kaos serve --token CALLER=TOKEN`, the setting mcp.token, or HttpOptions::with_token)"
    )]
    MissingToken,
    /// A bearer token is unusable (empty, or not a visible-ASCII header value).
    #[error("invalid bearer token for client `{client_id}`: {reason}")]
    InvalidToken {
        /// The client the token was for.
        client_id: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A client id breaks the client-id rules (see [`ClientId`](super::ClientId)).
    #[error("invalid client id {id:?}: {reason}")]
    InvalidClientId {
        /// The rejected id.
        id: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// The address is not a loopback address and
    /// [`HttpOptions::allow_non_loopback`](super::HttpOptions::allow_non_loopback) was not set.
    #[error(
        "refusing to listen on non-loopback address {0} (opt in with `kaos serve --allow-remote`, or HttpOptions::with_allow_remote)"
    )]
    NonLoopback(SocketAddr),
    /// The server's options are inconsistent (e.g. an invalid agent tool name).
    #[error("invalid MCP server options: {0}")]
    Options(String),
    /// Binding or accepting failed.
    #[error("MCP server I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The MCP session failed (handshake or transport).
    #[error("MCP protocol error: {0}")]
    Protocol(String),
}

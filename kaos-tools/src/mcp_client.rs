//! Mounting the tools of external MCP servers (feature `mcp`).
//!
//! An [`McpServerConfig`] names a server — a command run as a child process speaking MCP over
//! stdio, or a streamable HTTP URL — and the prefix its tools get. [`McpClient::connect`]
//! starts (or reaches) the server, performs the MCP handshake within
//! [`McpServerConfig::handshake_timeout`] and lists the server's tools once;
//! [`McpClient::tools`] gives them as ordinary [`Tool`]s named `{prefix}-{tool}`, with their
//! input schemas and MCP annotations kept, ready for a [`ToolRegistry`]. Everything the runner
//! applies to a tool (permissions, breakers, budgets, the registry's time limit) applies to them.
//!
//! A server that dies is restarted once, on the next call of one of its tools; if it cannot be
//! restarted, or dies during a call, that call returns a [`ToolError::Failed`] (an error result
//! for the model), never a crashed turn.
//!
//! ```no_run
//! use kaos_tools::ToolRegistry;
//! use kaos_tools::mcp_client::{McpClient, McpServerConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = McpServerConfig::stdio("everything", "npx", ["-y", "@modelcontextprotocol/server-everything"]);
//! let client = McpClient::connect(config).await?;
//! let mut registry = ToolRegistry::new();
//! client.mount(&mut registry)?; // everything-echo, everything-get-sum, …
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rmcp::model::{CallToolRequestParams, ContentBlock, ResourceContents};
use rmcp::service::{Peer, RoleClient, RunningServiceCancellationToken, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ServiceExt, model};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::{
    Content, MAX_TOOL_NAME_LEN, Tool, ToolAnnotations, ToolContext, ToolError, ToolName, ToolRegistry,
    ToolResult, ToolSpec,
};

/// How long connecting and the MCP handshake (initialize + tools/list) may take by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an MCP server could not be configured, reached or mounted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum McpError {
    /// The configuration cannot work (bad prefix, bad header, …).
    #[error("invalid MCP server configuration for `{prefix}`: {message}")]
    InvalidConfig {
        /// The server's prefix, as configured.
        prefix: String,
        /// What is wrong.
        message: String,
    },
    /// The server's process could not be started.
    #[error("cannot start MCP server `{prefix}` ({command})")]
    Spawn {
        /// The server's prefix.
        prefix: String,
        /// The command that failed to start.
        command: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The MCP handshake or the tool listing failed.
    #[error("MCP server `{prefix}` failed the handshake: {message}")]
    Handshake {
        /// The server's prefix.
        prefix: String,
        /// What went wrong, as reported by the SDK.
        message: String,
    },
    /// The handshake did not finish in time.
    #[error("MCP server `{prefix}` did not finish the handshake within {after:?}")]
    HandshakeTimeout {
        /// The server's prefix.
        prefix: String,
        /// The limit that was exceeded.
        after: Duration,
    },
    /// A mounted tool could not be named or registered (e.g. two remote names that map to the
    /// same KAOS name, or a name already taken in the registry).
    #[error("cannot mount a tool of MCP server `{prefix}`")]
    Tool {
        /// The server's prefix.
        prefix: String,
        /// The registry's or the name rules' error.
        #[source]
        source: ToolError,
    },
}

/// Where an MCP server is and how to reach it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum McpTransport {
    /// A command started as a child process, speaking MCP over its stdin/stdout. Its stderr is
    /// inherited (it shows up in this process's stderr).
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment variables (on top of this process's environment).
        env: BTreeMap<String, String>,
        /// Working directory; `None` keeps this process's.
        cwd: Option<PathBuf>,
    },
    /// A streamable HTTP endpoint.
    Http {
        /// The endpoint, e.g. `http://127.0.0.1:8080/mcp`.
        url: String,
        /// Sent as `Authorization: Bearer {token}` with every request.
        bearer_token: Option<String>,
        /// Extra headers sent with every request.
        headers: BTreeMap<String, String>,
    },
}

impl fmt::Debug for McpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            McpTransport::Stdio { command, args, env, cwd } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                // Values may be secrets (API keys); names are enough to debug.
                .field("env", &env.keys().collect::<Vec<_>>())
                .field("cwd", cwd)
                .finish(),
            McpTransport::Http { url, bearer_token, headers } => f
                .debug_struct("Http")
                .field("url", url)
                .field("bearer_token", &bearer_token.as_ref().map(|_| "<redacted>"))
                .field("headers", &headers.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// One external MCP server to mount.
///
/// ```
/// use kaos_tools::mcp_client::{McpServerConfig, McpTransport};
/// let config = McpServerConfig::http("docs", "http://127.0.0.1:9000/mcp").with_bearer_token("t0k3n");
/// assert_eq!(config.prefix, "docs");
/// assert!(matches!(config.transport, McpTransport::Http { .. }));
/// assert!(!format!("{config:?}").contains("t0k3n"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct McpServerConfig {
    /// Prefix of the mounted tools' names (`{prefix}-{tool}`): 1 to 32 characters of
    /// `[a-z0-9_-]` starting with a letter.
    pub prefix: String,
    /// How to reach the server.
    pub transport: McpTransport,
    /// Bound on connecting plus the handshake (initialize and tools/list)
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]; restarts are bounded by it too.
    pub handshake_timeout: Duration,
    /// Time limit of each mounted tool; `None` leaves the registry's default in force.
    pub call_timeout: Option<Duration>,
}

impl McpServerConfig {
    /// A server started as `command args…`, speaking MCP over stdio.
    pub fn stdio<I, S>(prefix: impl Into<String>, command: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(
            prefix,
            McpTransport::Stdio {
                command: command.into(),
                args: args.into_iter().map(Into::into).collect(),
                env: BTreeMap::new(),
                cwd: None,
            },
        )
    }

    /// A server at a streamable HTTP `url`.
    pub fn http(prefix: impl Into<String>, url: impl Into<String>) -> Self {
        Self::new(
            prefix,
            McpTransport::Http { url: url.into(), bearer_token: None, headers: BTreeMap::new() },
        )
    }

    /// A server reached through `transport`, with default timeouts.
    pub fn new(prefix: impl Into<String>, transport: McpTransport) -> Self {
        Self {
            prefix: prefix.into(),
            transport,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            call_timeout: None,
        }
    }

    /// `self` with an environment variable for a stdio server (ignored for HTTP).
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        if let McpTransport::Stdio { env, .. } = &mut self.transport {
            env.insert(key.into(), value.into());
        }
        self
    }

    /// `self` with a working directory for a stdio server (ignored for HTTP).
    pub fn with_cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        if let McpTransport::Stdio { cwd, .. } = &mut self.transport {
            *cwd = Some(dir.into());
        }
        self
    }

    /// `self` with a bearer token for an HTTP server (ignored for stdio).
    pub fn with_bearer_token(mut self, token: impl Into<String>) -> Self {
        if let McpTransport::Http { bearer_token, .. } = &mut self.transport {
            *bearer_token = Some(token.into());
        }
        self
    }

    /// `self` with an extra header for an HTTP server (ignored for stdio).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let McpTransport::Http { headers, .. } = &mut self.transport {
            headers.insert(name.into(), value.into());
        }
        self
    }

    /// `self` with another handshake bound.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// `self` with a time limit for every mounted tool.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }

    fn invalid(&self, message: impl Into<String>) -> McpError {
        McpError::InvalidConfig { prefix: self.prefix.clone(), message: message.into() }
    }
}

/// Longest accepted prefix, leaving room for the remote tool's name.
pub const MAX_PREFIX_LEN: usize = 32;

/// The KAOS name of remote tool `tool` mounted under `prefix`: `{prefix}-{tool}`, lowercased,
/// every character outside `[a-z0-9_-]` replaced by `_`, cut to [`MAX_TOOL_NAME_LEN`].
///
/// ```
/// use kaos_tools::mcp_client::mounted_name;
/// assert_eq!(mounted_name("everything", "get-sum").unwrap().as_str(), "everything-get-sum");
/// assert_eq!(mounted_name("gh", "Search Issues.v2").unwrap().as_str(), "gh-search_issues_v2");
/// assert!(mounted_name("9x", "echo").is_err());
/// ```
pub fn mounted_name(prefix: &str, tool: &str) -> Result<ToolName, ToolError> {
    let sanitized: String = format!("{prefix}-{tool}")
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' { c } else { '_' })
        .take(MAX_TOOL_NAME_LEN)
        .collect();
    ToolName::new(&sanitized)
}

fn validate_prefix(config: &McpServerConfig) -> Result<(), McpError> {
    let prefix = &config.prefix;
    let valid = prefix.len() <= MAX_PREFIX_LEN
        && prefix.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(config.invalid(format!(
            "the prefix must be 1 to {MAX_PREFIX_LEN} characters of [a-z0-9_-] starting with a letter"
        )))
    }
}

/// A connection to one external MCP server and the tools it offered at connection time.
/// Cheap to clone; clones share the connection. Dropping the last clone (and every tool taken
/// from it) stops the server's process.
#[derive(Clone)]
pub struct McpClient {
    connection: Arc<Connection>,
    tools: Vec<Arc<dyn Tool>>,
}

impl fmt::Debug for McpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpClient")
            .field("config", &self.connection.config)
            .field("tools", &self.tools.iter().map(|t| t.spec().name.to_string()).collect::<Vec<_>>())
            .field("restarts", &self.restarts())
            .finish()
    }
}

impl McpClient {
    /// Starts or reaches the server, performs the handshake and lists its tools, all within
    /// the config's `handshake_timeout`.
    pub async fn connect(config: McpServerConfig) -> Result<Self, McpError> {
        validate_prefix(&config)?;
        let live = Live::connect(&config).await?;
        let remote = tokio::time::timeout(config.handshake_timeout, live.peer.list_all_tools())
            .await
            .map_err(|_| McpError::HandshakeTimeout {
                prefix: config.prefix.clone(),
                after: config.handshake_timeout,
            })?
            .map_err(|e| McpError::Handshake {
                prefix: config.prefix.clone(),
                message: format!("tools/list: {e}"),
            })?;
        let connection =
            Arc::new(Connection { config, live: Mutex::new(Some(live)), restarts: AtomicU32::new(0) });
        let mut tools: Vec<Arc<dyn Tool>> = Vec::with_capacity(remote.len());
        let mut seen = HashMap::new();
        for tool in remote {
            let prefix = || connection.config.prefix.clone();
            let name = mounted_name(&connection.config.prefix, &tool.name)
                .map_err(|source| McpError::Tool { prefix: prefix(), source })?;
            if let Some(previous) = seen.insert(name.to_string(), tool.name.to_string()) {
                let source = ToolError::InvalidName {
                    name: tool.name.to_string(),
                    reason: "two remote tools map to the same KAOS name",
                };
                tracing::error!(%name, %previous, remote = %tool.name, "MCP tool name collision");
                return Err(McpError::Tool { prefix: prefix(), source });
            }
            let spec = ToolSpec::new(
                name,
                tool.description.as_deref().unwrap_or_default(),
                Value::Object((*tool.input_schema).clone()),
            )
            .with_annotations(annotations_from_mcp(tool.annotations.as_ref()))
            .with_timeout_opt(connection.config.call_timeout);
            tools.push(Arc::new(McpTool {
                spec,
                remote_name: tool.name.to_string(),
                connection: connection.clone(),
            }));
        }
        Ok(Self { connection, tools })
    }

    /// The server's tools, as listed at connection time, in the server's order.
    pub fn tools(&self) -> &[Arc<dyn Tool>] {
        &self.tools
    }

    /// Registers every tool of [`tools`](McpClient::tools) in `registry` and returns their
    /// names. Stops at the first name already taken (earlier ones stay registered).
    pub fn mount(&self, registry: &mut ToolRegistry) -> Result<Vec<ToolName>, McpError> {
        self.tools
            .iter()
            .map(|tool| {
                registry.register(tool.clone()).map(|()| tool.spec().name.clone()).map_err(|source| {
                    McpError::Tool { prefix: self.connection.config.prefix.clone(), source }
                })
            })
            .collect()
    }

    /// The configuration this client was built from.
    pub fn config(&self) -> &McpServerConfig {
        &self.connection.config
    }

    /// Whether the connection is believed up. It goes down when the server closes its side
    /// (e.g. its process exits) and comes up again with the next successful restart.
    pub async fn is_connected(&self) -> bool {
        self.connection.live.lock().await.as_ref().is_some_and(Live::is_alive)
    }

    /// The process id of a stdio server, while it runs.
    pub async fn process_id(&self) -> Option<u32> {
        self.connection.live.lock().await.as_ref().filter(|l| l.is_alive()).and_then(|l| l.pid)
    }

    /// How many times the server was restarted after dying.
    pub fn restarts(&self) -> u32 {
        self.connection.restarts.load(Ordering::Relaxed)
    }
}

/// MCP's hints, absent ones taking MCP's defaults (not read-only, destructive, not idempotent,
/// open world): an undeclared remote tool is treated as the riskiest kind.
fn annotations_from_mcp(a: Option<&model::ToolAnnotations>) -> ToolAnnotations {
    let hint = |h: Option<bool>, default| h.unwrap_or(default);
    ToolAnnotations::DEFAULT
        .with_read_only(hint(a.and_then(|a| a.read_only_hint), false))
        .with_destructive(hint(a.and_then(|a| a.destructive_hint), true))
        .with_idempotent(hint(a.and_then(|a| a.idempotent_hint), false))
        .with_open_world(hint(a.and_then(|a| a.open_world_hint), true))
}

/// The shared state of one server: its config and its current connection, if any.
struct Connection {
    config: McpServerConfig,
    /// `None` after a failed restart; the next call tries again.
    live: Mutex<Option<Live>>,
    restarts: AtomicU32,
}

/// One running MCP session with the server.
struct Live {
    peer: Peer<RoleClient>,
    cancel: Option<RunningServiceCancellationToken>,
    alive: Arc<AtomicBool>,
    pid: Option<u32>,
}

impl Drop for Live {
    fn drop(&mut self) {
        // Stops the service task, which drops the transport and so ends a child process.
        if let Some(cancel) = self.cancel.take() {
            cancel.cancel();
        }
    }
}

impl Live {
    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    async fn connect(config: &McpServerConfig) -> Result<Self, McpError> {
        let prefix = || config.prefix.clone();
        let limit = config.handshake_timeout;
        let timed_out = |_| McpError::HandshakeTimeout { prefix: prefix(), after: limit };
        let handshake = |e: rmcp::service::ClientInitializeError| McpError::Handshake {
            prefix: prefix(),
            message: e.to_string(),
        };
        let (service, pid) = match &config.transport {
            McpTransport::Stdio { command, args, env, cwd } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args).envs(env).kill_on_drop(true);
                if let Some(dir) = cwd {
                    cmd.current_dir(dir);
                }
                let (transport, _stderr) =
                    TokioChildProcess::builder(cmd).stderr(std::process::Stdio::inherit()).spawn().map_err(
                        |source| McpError::Spawn { prefix: prefix(), command: command.clone(), source },
                    )?;
                let pid = transport.id();
                let service = tokio::time::timeout(limit, ().serve(transport)).await.map_err(timed_out)?;
                (service.map_err(handshake)?, pid)
            }
            McpTransport::Http { url, bearer_token, headers } => {
                let mut transport_config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                if let Some(token) = bearer_token {
                    transport_config = transport_config.auth_header(token.clone());
                }
                let mut custom = HashMap::new();
                for (name, value) in headers {
                    let name = http_header_name(name).map_err(|m| config.invalid(m))?;
                    let value: http::HeaderValue = value
                        .parse()
                        .map_err(|_| config.invalid(format!("header {name} has an invalid value")))?;
                    custom.insert(name, value);
                }
                let transport =
                    StreamableHttpClientTransport::from_config(transport_config.custom_headers(custom));
                let service = tokio::time::timeout(limit, ().serve(transport)).await.map_err(timed_out)?;
                let service = service.map_err(|e| {
                    let what = http_handshake_error(e);
                    let message = if what.contains(url.as_str()) { what } else { format!("{url}: {what}") };
                    McpError::Handshake { prefix: prefix(), message }
                })?;
                (service, None)
            }
        };
        let peer = service.peer().clone();
        let cancel = Some(service.cancellation_token());
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        tokio::spawn(async move {
            let reason = service.waiting().await;
            tracing::debug!(?reason, "MCP client session ended");
            flag.store(false, Ordering::Release);
        });
        Ok(Self { peer, cancel, alive, pid })
    }
}

/// What went wrong in an HTTP handshake, as a user can act on it: rmcp's transport error names
/// its internal types (`Transport [rmcp::transport::worker::WorkerTransport<…>]`); the error it
/// wraps and that error's causes say what happened (`Auth required`, `connection refused`).
fn http_handshake_error(error: rmcp::service::ClientInitializeError) -> String {
    let rmcp::service::ClientInitializeError::TransportError { error, .. } = error else {
        return error.to_string();
    };
    let mut message = error.error.to_string();
    let mut cause = error.error.source();
    while let Some(next) = cause {
        let text = next.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = next.source();
    }
    message
}

fn http_header_name(name: &str) -> Result<http::HeaderName, String> {
    name.parse().map_err(|_| format!("{name:?} is not a valid HTTP header name"))
}

impl Connection {
    /// The peer of a live session, restarting the server first when it died.
    async fn peer(&self) -> Result<(Peer<RoleClient>, Arc<AtomicBool>), ToolError> {
        let mut live = self.live.lock().await;
        if let Some(current) = live.as_ref().filter(|l| l.is_alive()) {
            return Ok((current.peer.clone(), current.alive.clone()));
        }
        let was_connected = live.take().is_some();
        tracing::warn!(prefix = %self.config.prefix, "MCP server is down; restarting it");
        let fresh = Live::connect(&self.config).await.map_err(|e| {
            ToolError::failed_with_detail(
                format!("the MCP server `{}` is not running and could not be restarted", self.config.prefix),
                e.to_string(),
            )
        })?;
        if was_connected {
            self.restarts.fetch_add(1, Ordering::Relaxed);
        }
        let out = (fresh.peer.clone(), fresh.alive.clone());
        *live = Some(fresh);
        Ok(out)
    }
}

/// A tool of an external MCP server, mounted under a prefix.
struct McpTool {
    spec: ToolSpec,
    remote_name: String,
    connection: Arc<Connection>,
}

impl fmt::Debug for McpTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpTool")
            .field("name", &self.spec.name)
            .field("remote_name", &self.remote_name)
            .field("server", &self.connection.config.prefix)
            .finish()
    }
}

#[async_trait]
impl Tool for McpTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, args: Value, _ctx: ToolContext) -> Result<ToolResult, ToolError> {
        let arguments = match args {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            other => {
                return Err(ToolError::invalid_arguments(
                    self.spec.name.as_str(),
                    format!("expected a JSON object, got {other}"),
                ));
            }
        };
        let (peer, alive) = self.connection.peer().await?;
        let params = CallToolRequestParams::new(self.remote_name.clone()).with_arguments(arguments);
        let server = &self.connection.config.prefix;
        match peer.call_tool(params).await {
            Ok(result) => Ok(result_from_mcp(result)),
            Err(e @ (ServiceError::TransportClosed | ServiceError::TransportSend(_))) => {
                alive.store(false, Ordering::Release);
                Err(ToolError::failed_with_detail(
                    format!(
                        "the MCP server `{server}` stopped during the call; it will be restarted on the next call"
                    ),
                    e.to_string(),
                ))
            }
            Err(ServiceError::McpError(e)) => Err(ToolError::failed_with_detail(
                format!("the MCP server `{server}` rejected the call: {}", e.message),
                format!("{e:?}"),
            )),
            Err(e) => Err(ToolError::failed_with_detail(
                format!("the MCP server `{server}` failed the call"),
                e.to_string(),
            )),
        }
    }
}

/// A remote result in KAOS's shape. Images and audio become short text placeholders (KAOS
/// content has no binary parts); embedded resources become their text, or a link for blobs.
fn result_from_mcp(result: model::CallToolResult) -> ToolResult {
    let content = result
        .content
        .into_iter()
        .map(|block| match block {
            ContentBlock::Text(t) => Content::text(t.text.clone()),
            ContentBlock::Image(i) => {
                Content::text(format!("[image {} ({} bytes base64)]", i.mime_type, i.data.len()))
            }
            ContentBlock::Audio(a) => {
                Content::text(format!("[audio {} ({} bytes base64)]", a.mime_type, a.data.len()))
            }
            ContentBlock::ResourceLink(r) => {
                Content::resource_link(r.uri.clone(), r.name.clone(), r.mime_type.clone())
            }
            ContentBlock::Resource(embedded) => match &embedded.resource {
                ResourceContents::TextResourceContents { text, .. } => Content::text(text.clone()),
                ResourceContents::BlobResourceContents { uri, mime_type, .. } => {
                    Content::resource_link(uri.clone(), uri.clone(), mime_type.clone())
                }
                #[allow(unreachable_patterns)]
                _ => Content::text("[resource]"),
            },
            #[allow(unreachable_patterns)]
            _ => Content::text("[unsupported content]"),
        })
        .collect();
    ToolResult {
        content,
        structured_content: result.structured_content,
        is_error: result.is_error.unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_hints_take_mcp_defaults_and_present_ones_are_kept() {
        assert_eq!(annotations_from_mcp(None), ToolAnnotations::DEFAULT.with_destructive(true),);
        let remote = model::ToolAnnotations::from_raw(None, Some(true), Some(false), Some(true), Some(false));
        assert_eq!(annotations_from_mcp(Some(&remote)), ToolAnnotations::read_only().with_open_world(false));
    }

    #[test]
    fn mounted_names_follow_the_tool_name_rules() {
        let long = "x".repeat(100);
        assert_eq!(mounted_name("p", &long).unwrap().as_str().len(), MAX_TOOL_NAME_LEN);
        assert_eq!(mounted_name("p", "get_sum").unwrap().as_str(), "p-get_sum");
    }

    #[test]
    fn prefixes_are_validated() {
        for bad in ["", "Upper", "9lives", "has space", &"p".repeat(MAX_PREFIX_LEN + 1)] {
            let config = McpServerConfig::stdio(bad, "true", Vec::<String>::new());
            assert!(matches!(validate_prefix(&config), Err(McpError::InvalidConfig { .. })), "{bad:?}");
        }
        assert!(validate_prefix(&McpServerConfig::http("docs-2", "http://127.0.0.1:1/mcp")).is_ok());
    }
}

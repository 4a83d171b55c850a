use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::serve::ListenerExt as _;
use http::{HeaderValue, Method, StatusCode, header};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::api::{self, ApiError};
use super::server::Caller;
use super::{KaosMcpServer, ServeError, ServeOptions};
use kaos_runner::Runner;

const MAX_CLIENT_ID_LEN: usize = 32;

/// The default request body limit, 4 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The identity of an HTTP caller, derived from its bearer token: 1 to 32 characters of
/// `[a-z0-9_-]` starting with a letter (no `.`, so `{client_id}.{session}` splits one way).
///
/// ```
/// use kaos_server::ClientId;
/// assert!(ClientId::new("alice").is_ok());
/// assert!(ClientId::new("a.b").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(Arc<str>);

impl ClientId {
    /// Validates `id`.
    pub fn new(id: &str) -> Result<Self, ServeError> {
        let invalid = |reason| ServeError::InvalidClientId { id: id.to_owned(), reason };
        if id.is_empty() || id.len() > MAX_CLIENT_ID_LEN {
            return Err(invalid("must be 1 to 32 characters"));
        }
        if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(invalid("must start with a lowercase letter"));
        }
        if !id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
            return Err(invalid("may only contain a-z, 0-9, '-' and '_'"));
        }
        Ok(Self(id.into()))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({:?})", &*self.0)
    }
}

/// Options of the HTTP server (MCP at [`path`](Self::path), the API at `/v1`, the console at
/// `/`).
///
/// At least one bearer token is required; each token maps to the [`ClientId`] whose session
/// namespace its requests use. Tokens never appear in `Debug` output.
///
/// ```
/// use kaos_server::HttpOptions;
/// let options = HttpOptions::new().with_token("s3cret-token", "alice");
/// assert!(!format!("{options:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct HttpOptions {
    /// `(token, client id)` pairs, validated when the server starts.
    tokens: Vec<(SecretString, String)>,
    /// The endpoint path [`/mcp`].
    pub path: String,
    /// Allow listening on a non-loopback address [false]. It still needs a token.
    pub allow_non_loopback: bool,
    /// More accepted `Host` header values (DNS-rebinding protection), as names or
    /// `name:port`. `localhost`, every loopback IP address and the address the server is
    /// bound to are always accepted. `None` with [`allow_non_loopback`](Self::allow_non_loopback)
    /// accepts any `Host` (the bearer token is then the only protection).
    pub allowed_hosts: Option<Vec<String>>,
    /// The largest request body accepted, in bytes [4 MiB]; a larger one gets `413`.
    pub max_body_bytes: usize,
    /// How long [`HttpServer::shutdown`] waits for requests in progress (running turns) to
    /// finish and commit before it drops them [30 s].
    pub shutdown_grace: Duration,
    /// Options shared with the other transports.
    pub serve: ServeOptions,
    /// How documents uploaded to `POST /v1/sessions/{id}/documents` are ingested.
    pub documents: crate::api::DocumentLimits,
    /// The A2A face: limits of messages and of the tasks kept.
    pub a2a: crate::a2a::A2aOptions,
}

impl fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpOptions")
            .field("clients", &self.tokens.iter().map(|(_, c)| c.as_str()).collect::<Vec<_>>())
            .field("path", &self.path)
            .field("allow_non_loopback", &self.allow_non_loopback)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("serve", &self.serve)
            .field("documents", &self.documents)
            .field("a2a", &self.a2a)
            .finish()
    }
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpOptions {
    /// No token (the server will refuse to start until one is added), path `/mcp`, loopback
    /// only.
    pub fn new() -> Self {
        Self {
            tokens: Vec::new(),
            path: "/mcp".into(),
            allow_non_loopback: false,
            allowed_hosts: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            shutdown_grace: Duration::from_secs(30),
            serve: ServeOptions::default(),
            documents: crate::api::DocumentLimits::default(),
            a2a: crate::a2a::A2aOptions::default(),
        }
    }

    /// `self` accepting `token` as the identity `client_id`.
    pub fn with_token(mut self, token: impl Into<String>, client_id: impl Into<String>) -> Self {
        self.tokens.push((SecretString::from(token.into()), client_id.into()));
        self
    }

    /// `self` allowed to listen on a non-loopback address, accepting these `Host` values.
    pub fn with_non_loopback(mut self, allowed_hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.allow_non_loopback = true;
        self.allowed_hosts = Some(allowed_hosts.into_iter().map(Into::into).collect());
        self
    }

    /// `self` allowed to listen on a non-loopback address, accepting any `Host` header.
    pub fn with_allow_remote(mut self) -> Self {
        self.allow_non_loopback = true;
        self
    }

    /// `self` ingesting uploaded documents with these limits (the CLI's `docs.*` settings).
    pub fn with_documents(mut self, documents: crate::api::DocumentLimits) -> Self {
        self.documents = documents;
        self
    }

    /// `self` with other A2A options.
    pub fn with_a2a(mut self, a2a: crate::a2a::A2aOptions) -> Self {
        self.a2a = a2a;
        self
    }

    /// `self` with another request body limit.
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// `self` with another shutdown grace period.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// `self` with other transport-independent options.
    pub fn with_serve_options(mut self, serve: ServeOptions) -> Self {
        self.serve = serve;
        self
    }
}

/// A token, kept only as its SHA-256 digest so comparisons take the same time whatever the
/// presented token's length or content.
struct Credential {
    digest: [u8; 32],
    client: ClientId,
}

pub(crate) struct Credentials(Vec<Credential>);

impl Credentials {
    fn new(tokens: &[(SecretString, String)]) -> Result<Self, ServeError> {
        if tokens.is_empty() {
            return Err(ServeError::MissingToken);
        }
        tokens
            .iter()
            .map(|(token, client)| {
                let token = token.expose_secret();
                let client = ClientId::new(client)?;
                let invalid = |reason| ServeError::InvalidToken { client_id: client.to_string(), reason };
                if token.len() < 16 {
                    return Err(invalid("must be at least 16 characters"));
                }
                if !token.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(invalid("must be visible ASCII (no spaces or control characters)"));
                }
                Ok(Credential { digest: Sha256::digest(token.as_bytes()).into(), client })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Credentials)
    }

    /// The client whose token `header` (an `Authorization` value) carries, if any.
    pub(crate) fn authenticate(&self, header: Option<&HeaderValue>) -> Option<ClientId> {
        let value = header?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let presented: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        // Every credential is compared, so the time taken does not depend on which one matched.
        let mut found = None;
        for credential in &self.0 {
            if bool::from(credential.digest.ct_eq(&presented)) {
                found = Some(credential.client.clone());
            }
        }
        found
    }
}

/// A running HTTP server. Dropping it leaves the server running; call
/// [`shutdown`](HttpServer::shutdown) to stop it.
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    path: String,
    cancel: CancellationToken,
    /// The runs of A2A tasks, which outlive the requests that started them.
    a2a: crate::a2a::Drivers,
    grace: Duration,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The MCP endpoint URL, e.g. `http://127.0.0.1:8080/mcp`.
    pub fn url(&self) -> String {
        format!("{}{}", self.base_url(), self.path)
    }

    /// The server's root URL (the console), e.g. `http://127.0.0.1:8080`; the API is under
    /// `{base_url}/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Stops accepting connections, closes the MCP sessions, lets requests in progress
    /// (running turns) finish and commit for up to [`HttpOptions::shutdown_grace`], then drops
    /// what is left (a dropped turn stores nothing).
    pub async fn shutdown(mut self) {
        let deadline = tokio::time::Instant::now() + self.grace;
        self.cancel.cancel();
        match tokio::time::timeout(self.grace, &mut self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task ended abnormally"),
            Err(_) => {
                tracing::warn!(grace = ?self.grace, "requests still running after the shutdown grace; dropping them");
                self.task.abort();
            }
        }
        // A2A tasks run apart from requests: they get what is left of the same grace.
        self.a2a.finish_by(deadline).await;
    }
}

/// Which `Host` header values the server answers (DNS-rebinding protection).
#[derive(Debug, Clone)]
pub(crate) struct HostPolicy {
    bound: IpAddr,
    extra: Vec<String>,
    any: bool,
}

impl HostPolicy {
    fn new(bound: IpAddr, options: &HttpOptions) -> Self {
        let extra: Vec<String> =
            options.allowed_hosts.iter().flatten().map(|h| h.trim().to_ascii_lowercase()).collect();
        Self { bound, extra, any: options.allow_non_loopback && options.allowed_hosts.is_none() }
    }

    /// Whether `value` (a `Host` header) names this server: `localhost`, any loopback address,
    /// the bound address, or an allowed host.
    pub(crate) fn allows(&self, value: &str) -> bool {
        if self.any {
            return true;
        }
        let value = value.trim();
        let Ok(authority) = http::uri::Authority::try_from(value) else { return false };
        // A port that is not a number is a malformed Host, not this server.
        let port_part = match value.rfind(']') {
            Some(end) => value.get(end..).is_some_and(|rest| rest.contains(':')),
            None => value.contains(':'),
        };
        if port_part && authority.port_u16().is_none() {
            return false;
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        if host == "localhost" {
            return true;
        }
        if let Ok(ip) = host.parse::<IpAddr>()
            && (ip.is_loopback() || ip == self.bound || ip.to_canonical() == self.bound.to_canonical())
        {
            return true;
        }
        let with_port = authority.port_u16().map(|p| format!("{host}:{p}"));
        self.extra.iter().any(|allowed| *allowed == host || Some(allowed) == with_port.as_ref())
    }
}

type McpService = StreamableHttpService<KaosMcpServer, LocalSessionManager>;

/// What the request handlers share.
pub(crate) struct Shared {
    credentials: Credentials,
    hosts: HostPolicy,
    mcp: McpService,
    mcp_path: Arc<str>,
    /// Which caller opened each MCP session (its `Mcp-Session-Id`).
    mcp_owners: Mutex<HashMap<String, ClientId>>,
}

/// Serves `runner` over HTTP at `addr` (port 0 picks a free port) and returns once it
/// listens: MCP (streamable HTTP) at [`HttpOptions::path`], the HTTP API at `/v1` (its
/// OpenAPI document at `/v1/openapi.json`) and the web console at `/`.
///
/// Refuses to start without a bearer token ([`ServeError::MissingToken`]) and on a
/// non-loopback address unless [`HttpOptions::allow_non_loopback`] is set. Every MCP and API
/// request must carry `Authorization: Bearer {token}`; a missing or wrong token gets `401`
/// before anything else is looked at. The console's static files need no token (the page
/// asks for one). Needs a multi-threaded Tokio runtime with I/O and time.
pub async fn serve_http(
    runner: Runner,
    addr: SocketAddr,
    options: HttpOptions,
) -> Result<HttpServer, ServeError> {
    let credentials = Credentials::new(&options.tokens)?;
    if !addr.ip().is_loopback() && !options.allow_non_loopback {
        return Err(ServeError::NonLoopback(addr));
    }
    if !options.path.starts_with('/')
        || options.path == "/"
        || options.path.starts_with("/v1")
        || options.path == crate::a2a::A2A_PATH
        || options.path.starts_with("/.well-known")
    {
        return Err(ServeError::Options(format!(
            "the MCP path must start with '/' and not be '/', under /v1 or /.well-known, or {} (got {:?})",
            crate::a2a::A2A_PATH,
            options.path
        )));
    }
    let handler = KaosMcpServer::new(runner.clone(), options.serve.clone())?;
    let cancel = CancellationToken::new();
    // Our own Host check runs first, for every route (see `HostPolicy`).
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_max_request_body_bytes(options.max_body_bytes)
        .with_cancellation_token(cancel.child_token());
    let mcp = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        credentials,
        hosts: HostPolicy::new(local_addr.ip(), &options),
        mcp,
        mcp_path: options.path.clone().into(),
        mcp_owners: Mutex::new(HashMap::new()),
    });
    let a2a = crate::a2a::Drivers::default();
    let app = router(runner, shared, &options, a2a.clone());
    let shutdown = cancel.clone();
    let task = tokio::spawn(async move {
        // Events are small writes: send each at once (no Nagle delay behind a delayed ACK).
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let serving = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = serving.await {
            tracing::warn!(error = %e, "HTTP server stopped with an error");
        }
    });
    Ok(HttpServer { local_addr, path: options.path, cancel, a2a, grace: options.shutdown_grace, task })
}

fn router(runner: Runner, shared: Arc<Shared>, options: &HttpOptions, a2a: crate::a2a::Drivers) -> Router {
    let (api, openapi) = api::router(runner.clone(), options.documents.clone());
    Router::new()
        .route(&options.path, any(mcp))
        .merge(api)
        .merge(crate::a2a::router(runner, options.a2a.clone(), a2a))
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || std::future::ready(axum::Json(openapi.clone()))),
        )
        .merge(super::console::router())
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(middleware::from_fn_with_state(shared.clone(), authenticate))
        .layer(middleware::from_fn_with_state(shared.clone(), check_host))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError::internal("the server failed while handling the request").into_response()
        }))
        .with_state(shared)
}

/// Refuses a request whose `Host` does not name this server (`403`).
async fn check_host(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    match host {
        Some(host) if shared.hosts.allows(&host) => next.run(request).await,
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_host",
            "the Host header does not name this server",
        )
        .into_response(),
    }
}

/// Refuses an MCP, API or A2A request without a valid bearer token (`401`, whatever the path
/// under `/v1`); passes the caller on. The console's files, the OpenAPI document and the A2A
/// agent card (discovery) need none.
async fn authenticate(State(shared): State<Arc<Shared>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let guarded = path == shared.mcp_path.as_ref()
        || path == crate::a2a::A2A_PATH
        || ((path == "/v1" || path.starts_with("/v1/")) && path != "/v1/openapi.json");
    if !guarded {
        return next.run(request).await;
    }
    let Some(client) = shared.credentials.authenticate(request.headers().get(header::AUTHORIZATION)) else {
        let mut response =
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or invalid bearer token")
                .into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    };
    request.extensions_mut().insert(client);
    next.run(request).await
}

const MCP_SESSION_HEADER: &str = "mcp-session-id";

/// MCP over streamable HTTP, each MCP session tied to the caller that opened it: another
/// caller naming it gets the same `404` as for an unknown session.
async fn mcp(State(shared): State<Arc<Shared>>, mut request: Request) -> Response {
    let Some(client) = request.extensions().get::<ClientId>().cloned() else {
        return ApiError::internal("the request was not authenticated").into_response();
    };
    let session = request.headers().get(MCP_SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(id) = &session {
        let owner = shared.mcp_owners.lock().map(|owners| owners.get(id).cloned()).unwrap_or_default();
        if owner.is_some_and(|owner| owner != client) {
            return ApiError::not_found("no such MCP session").into_response();
        }
    }
    let delete = request.method() == Method::DELETE;
    request.extensions_mut().insert(Caller(Some(client.clone())));
    let response = shared.mcp.handle(request).await;
    if let Ok(mut owners) = shared.mcp_owners.lock() {
        match &session {
            None => {
                if let Some(id) = response.headers().get(MCP_SESSION_HEADER).and_then(|v| v.to_str().ok()) {
                    owners.insert(id.to_owned(), client);
                }
            }
            Some(id) if delete && response.status().is_success() => {
                owners.remove(id);
            }
            Some(_) => {}
        }
    }
    response.map(Body::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials::new(&[
            ("alice-token-0123456789".into(), "alice".into()),
            ("bob-token-0123456789ab".into(), "bob".into()),
        ])
        .unwrap()
    }

    fn header(value: &str) -> HeaderValue {
        HeaderValue::from_str(value).unwrap()
    }

    #[test]
    fn a_token_authenticates_as_its_client_and_nothing_else_does() {
        let c = credentials();
        assert_eq!(
            c.authenticate(Some(&header("Bearer alice-token-0123456789"))),
            Some(ClientId::new("alice").unwrap())
        );
        assert_eq!(
            c.authenticate(Some(&header("bearer bob-token-0123456789ab"))),
            Some(ClientId::new("bob").unwrap())
        );
        for wrong in [
            "Bearer alice-token-012345678",
            "Basic alice-token-0123456789",
            "alice-token-0123456789",
            "Bearer ",
        ] {
            assert_eq!(c.authenticate(Some(&header(wrong))), None, "{wrong}");
        }
        assert_eq!(c.authenticate(None), None);
    }

    #[test]
    fn every_loopback_address_and_the_bound_one_are_accepted_hosts() {
        let policy = HostPolicy::new("127.0.0.2".parse().unwrap(), &HttpOptions::new());
        for ok in ["127.0.0.2:8080", "127.0.0.2", "localhost:1", "127.0.0.1", "[::1]:80", "LOCALHOST"] {
            assert!(policy.allows(ok), "{ok}");
        }
        for bad in ["evil.example", "evil.example:8080", "10.0.0.1", "", "127.0.0.2:bad"] {
            assert!(!policy.allows(bad), "{bad}");
        }
        let public = HostPolicy::new(
            "0.0.0.0".parse().unwrap(),
            &HttpOptions::new().with_non_loopback(["kaos.example.com"]),
        );
        assert!(public.allows("kaos.example.com:443") && !public.allows("evil.example"));
        let any = HostPolicy::new("0.0.0.0".parse().unwrap(), &HttpOptions::new().with_allow_remote());
        assert!(any.allows("whatever.example"));
    }

    #[test]
    fn unusable_credentials_are_typed_errors() {
        assert!(matches!(Credentials::new(&[]), Err(ServeError::MissingToken)));
        assert!(matches!(
            Credentials::new(&[("short".into(), "alice".into())]),
            Err(ServeError::InvalidToken { .. })
        ));
        assert!(matches!(
            Credentials::new(&[("long-enough-token-123".into(), "Alice".into())]),
            Err(ServeError::InvalidClientId { .. })
        ));
    }
}

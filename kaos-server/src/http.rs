use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::server::Caller;
use super::{KaosMcpServer, ServeError, ServeOptions};
use kaos_runner::Runner;

const MAX_CLIENT_ID_LEN: usize = 32;

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

/// Options of the streamable HTTP transport.
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
    tokens: Vec<(String, String)>,
    /// The endpoint path [`/mcp`].
    pub path: String,
    /// Allow listening on a non-loopback address [false].
    pub allow_non_loopback: bool,
    /// Accepted `Host` header values (DNS-rebinding protection); `None` accepts the loopback
    /// names only (`localhost`, `127.0.0.1`, `::1`). Set it when serving on another address.
    pub allowed_hosts: Option<Vec<String>>,
    /// Options shared with the other transports.
    pub serve: ServeOptions,
}

impl fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpOptions")
            .field("clients", &self.tokens.iter().map(|(_, c)| c.as_str()).collect::<Vec<_>>())
            .field("path", &self.path)
            .field("allow_non_loopback", &self.allow_non_loopback)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("serve", &self.serve)
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
            serve: ServeOptions::default(),
        }
    }

    /// `self` accepting `token` as the identity `client_id`.
    pub fn with_token(mut self, token: impl Into<String>, client_id: impl Into<String>) -> Self {
        self.tokens.push((token.into(), client_id.into()));
        self
    }

    /// `self` allowed to listen on a non-loopback address, accepting these `Host` values.
    pub fn with_non_loopback(mut self, allowed_hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.allow_non_loopback = true;
        self.allowed_hosts = Some(allowed_hosts.into_iter().map(Into::into).collect());
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

struct Credentials(Vec<Credential>);

impl Credentials {
    fn new(tokens: &[(String, String)]) -> Result<Self, ServeError> {
        if tokens.is_empty() {
            return Err(ServeError::MissingToken);
        }
        tokens
            .iter()
            .map(|(token, client)| {
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
    fn authenticate(&self, header: Option<&HeaderValue>) -> Option<ClientId> {
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

/// A running MCP HTTP server. Dropping it leaves the server running; call
/// [`shutdown`](HttpServer::shutdown) to stop it.
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    path: String,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The endpoint URL, e.g. `http://127.0.0.1:8080/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.local_addr, self.path)
    }

    /// Stops accepting connections, closes the MCP sessions and waits for the accept loop.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "MCP HTTP accept loop ended abnormally");
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// Serves `runner` over streamable HTTP at `addr` (port 0 picks a free port) and returns once
/// it listens.
///
/// Refuses to start without a bearer token ([`ServeError::MissingToken`]) and on a
/// non-loopback address unless [`HttpOptions::allow_non_loopback`] is set. Every request
/// must carry `Authorization: Bearer {token}`; a missing or wrong token gets `401` before
/// anything else is looked at. Needs a multi-threaded Tokio runtime with I/O and time.
pub async fn serve_http(
    runner: Runner,
    addr: SocketAddr,
    options: HttpOptions,
) -> Result<HttpServer, ServeError> {
    let credentials = Arc::new(Credentials::new(&options.tokens)?);
    if !addr.ip().is_loopback() && !options.allow_non_loopback {
        return Err(ServeError::NonLoopback(addr));
    }
    if !options.path.starts_with('/') {
        return Err(ServeError::Options(format!(
            "the HTTP path must start with '/' (got {:?})",
            options.path
        )));
    }
    let handler = KaosMcpServer::new(runner, options.serve.clone())?;
    let mut config = StreamableHttpServerConfig::default();
    if let Some(hosts) = &options.allowed_hosts {
        config = config.with_allowed_hosts(hosts.clone());
    }
    let cancel = config.cancellation_token.clone();
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let path: Arc<str> = options.path.clone().into();
    let accept_cancel = cancel.clone();
    let task = tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = accept_cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "MCP HTTP accept failed");
                        continue;
                    }
                },
            };
            let (service, credentials, path) = (service.clone(), credentials.clone(), path.clone());
            let handle = service_fn(move |request: Request<Incoming>| {
                let (service, credentials, path) = (service.clone(), credentials.clone(), path.clone());
                async move { Ok::<_, Infallible>(route(&service, &credentials, &path, request).await) }
            });
            let connection_cancel = accept_cancel.clone();
            tokio::spawn(async move {
                let connection =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), handle);
                tokio::select! {
                    result = connection => if let Err(e) = result {
                        tracing::debug!(error = %e, "MCP HTTP connection ended with an error");
                    },
                    () = connection_cancel.cancelled() => {}
                }
            });
        }
    });
    Ok(HttpServer { local_addr, path: options.path, cancel, task })
}

async fn route(
    service: &StreamableHttpService<KaosMcpServer, LocalSessionManager>,
    credentials: &Credentials,
    path: &str,
    mut request: Request<Incoming>,
) -> Response<Body> {
    let Some(client) = credentials.authenticate(request.headers().get(header::AUTHORIZATION)) else {
        return plain(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
    };
    if request.uri().path() != path {
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    request.extensions_mut().insert(Caller(Some(client)));
    service.handle(request).await
}

fn plain(status: StatusCode, message: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(message.as_bytes())).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
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

//! The S3-compatible server the object-store tests run against: `kaos-vfs/tests/support/server.py` (moto,
//! installed by `tests/s3/install.sh`), started on an ephemeral loopback port, polled until it
//! answers, killed on drop (and it exits by itself when its stdin closes, i.e. when the test
//! process ends). Shared by kaos-vfs's and kaos-runner's tests and bench with `#[path]`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long the server may take to start and answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server; killed on drop.
#[derive(Debug)]
pub struct S3Server {
    /// `http://127.0.0.1:{port}`.
    pub endpoint: String,
    port: u16,
    child: Child,
    _stdin: ChildStdin,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn script() -> PathBuf {
    // This file is included by other crates' tests too (`#[path]`): find the script next to it,
    // in kaos-vfs, whichever crate compiled it (a packaged kaos-vfs has it under its own root).
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let in_workspace = manifest.join("../kaos-vfs/tests/support/server.py");
    if in_workspace.is_file() { in_workspace } else { manifest.join("tests/support/server.py") }
}

/// Sends one bare HTTP/1.0 request and returns the status code.
fn request(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))
}

impl S3Server {
    /// Starts a server, or explains why it could not (a failure, never a skip).
    pub fn start() -> Result<S3Server, String> {
        Self::start_with(&[])
    }

    /// Starts a server that ignores conditional writes (`If-Match`, `If-None-Match`).
    pub fn start_ignoring_conditions() -> Result<S3Server, String> {
        Self::start_with(&["--ignore-conditions"])
    }

    fn start_with(args: &[&str]) -> Result<S3Server, String> {
        let python = std::env::var("KAOS_S3_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let hint = "install it with `bash tests/s3/install.sh` (python3 with pip; `cargo xtask ci` does)";
        let mut child = Command::new(&python)
            .arg(script())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run `{python}` for the S3 test server: {e}; {hint}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        // The first line names the port; a server that cannot start closes stdout instead.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let fail = |mut child: Child, why: String| {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("the S3 test server (moto, {}) did not start: {why}; {hint}", script().display()))
        };
        let line = match receiver.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => return fail(child, format!("no port printed within {START_TIMEOUT:?}")),
        };
        let Some(port) = line.trim().strip_prefix("PORT ").and_then(|p| p.parse::<u16>().ok()) else {
            return fail(child, format!("it printed {line:?} instead of its port (is moto installed?)"));
        };
        // Poll until it answers (bounded).
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match request(port, "GET", "/") {
                Ok(_) => break,
                Err(e) if Instant::now() >= deadline => {
                    return fail(child, format!("it does not answer: {e}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        Ok(S3Server { endpoint: format!("http://127.0.0.1:{port}"), port, child, _stdin: stdin })
    }

    /// The server shared by every test of this process (started once).
    pub fn shared() -> &'static S3Server {
        static SERVER: OnceLock<S3Server> = OnceLock::new();
        SERVER.get_or_init(|| S3Server::start().unwrap_or_else(|why| panic!("{why}")))
    }

    /// The server's process id (to pause it with SIGSTOP: a store that stops answering).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Creates a bucket (idempotent).
    pub fn create_bucket(&self, bucket: &str) {
        let status = request(self.port, "PUT", &format!("/{bucket}")).unwrap();
        assert!(status == 200 || status == 409, "creating bucket {bucket}: HTTP {status}");
    }
}

/// A name no other test of any process uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

impl S3Server {
    /// The S3 requests served so far, by HTTP method (`GET`, `PUT`, `POST`, `DELETE`, `HEAD`).
    pub fn requests(&self) -> std::collections::BTreeMap<String, u64> {
        let body = http_body(self.port, "GET", "/_kaos/requests").unwrap();
        parse_counts(&body)
    }

    /// Sets the request counts back to zero.
    pub fn reset_requests(&self) {
        http_body(self.port, "DELETE", "/_kaos/requests").unwrap();
    }
}

fn http_body(port: u16, method: &str, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
}

/// Parses `{"GET": 3, "PUT": 2}` (flat, string keys, integer values).
fn parse_counts(body: &str) -> std::collections::BTreeMap<String, u64> {
    body.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once(':')?;
            Some((key.trim().trim_matches('"').to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

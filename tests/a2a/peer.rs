//! Starts `tests/a2a/peer.py` (an agent served by the official Python SDK, a2a-sdk, installed
//! by `tests/a2a/install.sh`) on an ephemeral loopback port for a test; killed on drop.
//! Included with `#[path]` by kaos-runner's and kaos-cli's tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The official SDK's server (`tests/a2a/peer.py`), on an ephemeral loopback port; killed on
/// drop.
#[derive(Debug)]
pub struct Peer {
    /// `http://127.0.0.1:{port}`.
    pub url: String,
    child: Child,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    /// Starts the peer, or fails the test saying how to install it (never a skip).
    pub fn start(args: &[&str]) -> Peer {
        let python = std::env::var("KAOS_A2A_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/a2a/peer.py");
        let hint = "install it with `bash tests/a2a/install.sh` (python3 with pip; `cargo xtask ci` does)";
        let mut child = Command::new(&python)
            .arg(&script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{python}` for the A2A peer: {e}; {hint}"));
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            panic!("the A2A peer ({}) did not start (it printed {line:?}); {hint}", script.display());
        };
        Peer { url: url.to_owned(), child }
    }
}

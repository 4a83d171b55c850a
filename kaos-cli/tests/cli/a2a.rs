//! `kaos serve --http` over A2A, driven by the official A2A Python SDK's client (a2a-sdk,
//! pinned in tests/a2a/requirements.txt, installed by tests/a2a/install.sh): card, send,
//! stream, input-required → approve → completed, get, subscribe, cancel, another caller's task
//! and a wrong token (tests/a2a/interop.py). The agent's model is a mock OpenAI-compatible
//! server on loopback.
#![cfg(all(feature = "mcp", feature = "openai-compatible"))]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::sse;

const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-0123456789abcdef";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A streamed answer in several chunks, as an OpenAI-compatible server sends it.
fn chunked(pieces: &[&str]) -> String {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "tiny",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut body = String::new();
    for (i, piece) in pieces.iter().enumerate() {
        let delta =
            if i == 0 { json!({"role": "assistant", "content": piece}) } else { json!({"content": piece}) };
        body.push_str(&format!("data: {}\n\n", chunk(delta, Value::Null)));
    }
    body.push_str(&format!("data: {}\n\ndata: [DONE]\n\n", chunk(json!({}), json!("stop"))));
    body
}

/// The agent's model: `echo: <message>`; `one two three` in chunks for "stream"; the message
/// written to note.txt with the destructive kaos-vfs-write tool for "write"; a minute for
/// "slow"; `tool said: <result>` after a tool.
async fn model() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let last = body["messages"].as_array().unwrap().last().unwrap().clone();
            let events = ResponseTemplate::new(200).insert_header("content-type", "text/event-stream");
            if last["role"] == "tool" {
                let text = format!("tool said: {}", last["content"]);
                return events.set_body_string(sse(json!({"role": "assistant", "content": text}), "stop"));
            }
            let message = last["content"].as_str().unwrap().to_owned();
            if message.contains("stream") {
                events.set_body_string(chunked(&["one ", "two ", "three"]))
            } else if message.contains("write") {
                let arguments = json!({"path": "note.txt", "content": message}).to_string();
                events.set_body_string(sse(
                    json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                        "function": {"name": "kaos-vfs-write", "arguments": arguments}}]}),
                    "tool_calls",
                ))
            } else if message.contains("slow") {
                events
                    .set_delay(Duration::from_secs(60))
                    .set_body_string(sse(json!({"role": "assistant", "content": "late"}), "stop"))
            } else {
                let text = format!("echo: {message}");
                events.set_body_string(sse(json!({"role": "assistant", "content": text}), "stop"))
            }
        })
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_a2a_python_client_drives_kaos_serve() {
    let python = std::env::var("KAOS_A2A_PYTHON").unwrap_or_else(|_| "python3".into());
    let sdk = std::process::Command::new(&python)
        .args(["-c", "import a2a.client"])
        .output()
        .unwrap_or_else(|e| panic!("{python} cannot run ({e}): the A2A interop test needs python3 >= 3.10"));
    assert!(
        sdk.status.success(),
        "the A2A Python SDK is not installed: run tests/a2a/install.sh ({})",
        String::from_utf8_lossy(&sdk.stderr)
    );
    let model = model().await;
    let dir = tempfile::tempdir().unwrap();
    let mut kaos = tokio::process::Command::new(env!("CARGO_BIN_EXE_kaos"))
        .args(["--model", "openai-compatible:tiny", "serve", "--http", "127.0.0.1:0"])
        .args(["--token", &format!("alice={ALICE}"), "--token", &format!("bob={BOB}")])
        .arg("--data-dir")
        .arg(dir.path())
        .current_dir(dir.path())
        .env_clear()
        .env("KAOS_OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", model.uri()))
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(kaos.stderr.take().unwrap()).lines();
    let mut line = String::new();
    while !line.starts_with("listening on ") {
        line = lines.next_line().await.unwrap().expect("kaos serve exited before listening");
    }
    let base = line
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(line.contains(&format!("A2A at {base}/a2a")), "{line}");

    let driver = tokio::process::Command::new(&python)
        .arg(repo_root().join("tests/a2a/interop.py"))
        .args([&base, ALICE, BOB])
        .output();
    let output =
        tokio::time::timeout(Duration::from_secs(120), driver).await.expect("the driver hangs").unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the A2A SDK driver failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    assert_eq!(
        report["checks"],
        json!([
            "card",
            "send",
            "stream",
            "input-required-approve",
            "get",
            "subscribe",
            "cancel",
            "isolation",
            "wrong-token-401"
        ])
    );

    // What the tasks left in the data directory: each context is Alice's session.
    let session = |key: &str| dir.path().join(format!("sessions/alice.{}", report[key].as_str().unwrap()));
    let turns = |key: &str| {
        std::fs::read_to_string(session(key).join("turns.jsonl")).unwrap_or_default().lines().count()
    };
    assert_eq!(turns("context"), 2, "send and stream continued one session");
    assert_eq!(turns("write_context"), 1, "the approved run committed once");
    let note = std::fs::read_to_string(session("write_context").join("files/note.txt")).unwrap();
    assert_eq!(note, "write first note");
    assert_eq!(turns("slow_context"), 0, "the canceled turn stored nothing");
    kaos.kill().await.unwrap();
}

//! `[[delegates]]` with `a2a = "http://…"` and `token_env`: the `kaos` binary calls an agent
//! served by the official Python SDK (`tests/a2a/peer.py`) with the bearer token from the
//! environment; the remote's question pauses the run (exit 4), `kaos resume --approve` sends the
//! answer to the same remote task, which completes.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::{kaos, sse, stderr, stdout_json};

#[path = "../../../tests/a2a/peer.rs"]
mod peer;

/// A model that hands the user's message to the `billing` delegate, then reports its answer.
async fn front() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let last = body["messages"].as_array().unwrap().last().unwrap().clone();
            let stream = if last["role"] == "tool" {
                sse(json!({"role": "assistant", "content": format!("billing said: {}", last["content"].as_str().unwrap())}), "stop")
            } else {
                let arguments = json!({"task": last["content"]}).to_string();
                sse(
                    json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                        "function": {"name": "billing", "arguments": arguments}}]}),
                    "tool_calls",
                )
            };
            ResponseTemplate::new(200).insert_header("content-type", "text/event-stream").set_body_string(stream)
        })
        .mount(&server)
        .await;
    server
}

async fn kaos_with(
    server: &MockServer,
    dir: &std::path::Path,
    token: Option<&str>,
    args: &[&str],
) -> std::process::Output {
    let mut command = kaos(dir);
    command.env("KAOS_OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.uri())).args(args);
    if let Some(token) = token {
        command.env("BILLING_TOKEN", token);
    }
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

#[tokio::test]
async fn a_remote_delegate_in_an_agent_file_is_called_with_its_token_and_its_question_is_a_pause() {
    let peer = peer::Peer::start(&["--token", "sekrit"]);
    let model = front().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("front.toml");
    std::fs::write(
        &agent,
        format!(
            "name = \"front\"\ninstructions = \"Route billing questions.\"\nmodel = \"openai-compatible:tiny\"\n\n\
             [[delegates]]\nname = \"billing\"\ndescription = \"Answers billing questions.\"\n\
             a2a = \"{}\"\ntoken_env = \"BILLING_TOKEN\"\n",
            peer.url
        ),
    )
    .unwrap();
    let agent = agent.to_str().unwrap();

    // Echo: the token from the environment is accepted, the remote's answer is the tool's.
    let echoed =
        kaos_with(&model, dir.path(), Some("sekrit"), &["--agent", agent, "run", "--json", "hello"]).await;
    assert!(echoed.status.success(), "{}", stderr(&echoed));
    assert_eq!(stdout_json(&echoed)["text"], "billing said: echo: hello");

    // The remote asks: the run pauses; --approve answers the same remote task.
    let paused =
        kaos_with(&model, dir.path(), Some("sekrit"), &["--agent", agent, "run", "please refund"]).await;
    assert_eq!(paused.status.code(), Some(4), "{}", stderr(&paused));
    let err = stderr(&paused);
    assert!(err.contains("the remote agent `billing` asks: Refund 42 EUR to ACME?"), "{err}");
    let run_id = err
        .lines()
        .find_map(|l| l.strip_prefix("resume with: kaos resume "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no resume command in: {err}"))
        .to_owned();
    let resumed = kaos_with(
        &model,
        dir.path(),
        Some("sekrit"),
        &["--agent", agent, "resume", &run_id, "--approve", "--json"],
    )
    .await;
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(stdout_json(&resumed)["text"], "billing said: Refund done.");

    // Without the variable, the agent is refused up front, naming the delegate and the variable.
    let refused = kaos_with(&model, dir.path(), None, &["--agent", agent, "run", "hello"]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let err = stderr(&refused);
    assert!(err.contains("remote delegate `billing` failed") && err.contains("BILLING_TOKEN"), "{err}");
    super::assert_each_cause_once(err.lines().last().unwrap());
}

/// The served agent's model: writes the message to `note.txt` with the destructive
/// `kaos-vfs-write` tool (its policy asks a person first), then reports what the tool said.
async fn writer() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let last = body["messages"].as_array().unwrap().last().unwrap().clone();
            let stream = if last["role"] == "tool" {
                let text = format!("tool said: {}", last["content"].as_str().unwrap());
                sse(json!({"role": "assistant", "content": text}), "stop")
            } else {
                let arguments = json!({"path": "note.txt", "content": last["content"]}).to_string();
                sse(
                    json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_w", "type": "function",
                        "function": {"name": "kaos-vfs-write", "arguments": arguments}}]}),
                    "tool_calls",
                )
            };
            ResponseTemplate::new(200).insert_header("content-type", "text/event-stream").set_body_string(stream)
        })
        .mount(&server)
        .await;
    server
}

/// KAOS to KAOS: one `kaos` delegates to another served with `kaos serve --http`; the served
/// run's approval travels as `input-required`, pauses the delegating run, and `kaos resume
/// --approve` there approves the served run's call, which then runs.
#[cfg(feature = "mcp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kaos_agent_served_over_a2a_is_a_delegate_whose_approval_pauses_the_caller() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    const TOKEN: &str = "front-desk-token-0123456789abcdef";
    let served_model = writer().await;
    let served_dir = tempfile::tempdir().unwrap();
    let mut served = tokio::process::Command::new(env!("CARGO_BIN_EXE_kaos"))
        .args(["--model", "openai-compatible:tiny", "serve", "--http", "127.0.0.1:0"])
        .args(["--token", &format!("front={TOKEN}")])
        .arg("--data-dir")
        .arg(served_dir.path())
        .current_dir(served_dir.path())
        .env_clear()
        .env("KAOS_OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", served_model.uri()))
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(served.stderr.take().unwrap()).lines();
    let mut line = String::new();
    while !line.starts_with("listening on ") {
        line = lines.next_line().await.unwrap().expect("kaos serve exited before listening");
    }
    let base = line
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();

    let model = front().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("front.toml");
    std::fs::write(
        &agent,
        format!(
            "name = \"front\"\ninstructions = \"Route billing questions.\"\nmodel = \"openai-compatible:tiny\"\n\n\
             [[delegates]]\nname = \"billing\"\ndescription = \"Keeps notes.\"\n\
             a2a = \"{base}\"\ntoken_env = \"BILLING_TOKEN\"\n"
        ),
    )
    .unwrap();
    let agent = agent.to_str().unwrap();

    let paused =
        kaos_with(&model, dir.path(), Some(TOKEN), &["--agent", agent, "run", "remember the milk"]).await;
    assert_eq!(paused.status.code(), Some(4), "{}", stderr(&paused));
    let err = stderr(&paused);
    assert!(err.contains("the remote agent `billing` asks: ") && err.contains("kaos-vfs-write"), "{err}");
    let run_id = err
        .lines()
        .find_map(|l| l.strip_prefix("resume with: kaos resume "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no resume command in: {err}"))
        .to_owned();
    // Nothing written yet on the served side.
    let note = served_dir.path().join("sessions");
    assert!(find_note(&note).is_none());

    let resumed = kaos_with(
        &model,
        dir.path(),
        Some(TOKEN),
        &["--agent", agent, "resume", &run_id, "--approve", "--json"],
    )
    .await;
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let text = stdout_json(&resumed)["text"].as_str().unwrap().to_owned();
    assert!(text.starts_with("billing said: tool said: ") && text.contains("note.txt"), "{text}");
    assert_eq!(std::fs::read_to_string(find_note(&note).unwrap()).unwrap(), "remember the milk");
}

/// The served side's `note.txt`, in whichever session the A2A context mapped to.
fn find_note(sessions: &std::path::Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(sessions).ok()?.flatten().map(|e| e.path().join("files/note.txt")).find(|p| p.is_file())
}
